/* misc.c — timestep embedding, dropout, losses and deterministic reductions.
 *
 * Reductions (kn_sum, kn_mean, the losses) cut the input into a fixed number of contiguous blocks
 * that depends only on n (never on the thread count), sum each block in double in index order,
 * then add the block sums in block order. kn_sum_dim sums every output element over its reduced
 * index in order. So every result is bitwise identical for any kn_set_threads(). */
#include "ops/ops.h"

#include <math.h>
#include <string.h>

static kn_status check_in(const char *op, const char *what, const kn_tensor *t) {
    return kn_op_in(op, what, t, -1);
}

static kn_status check_same(const char *op, const char *na, const kn_tensor *a, const char *nb,
                            const kn_tensor *b) {
    char s1[96], s2[96];
    KN_TRY(check_in(op, nb, b));
    if (!kn_tensor_same_shape(a, b))
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s and %s %s differ in shape", op, na, kn_shape_str(a, s1, sizeof s1),
                       nb, kn_shape_str(b, s2, sizeof s2));
    return KN_OK;
}

static kn_status prep_out(const char *op, kn_arena *A, int ndim, const int64_t *shape, kn_tensor *y) {
    return kn_op_out(op, A, ndim, shape, y);
}

/* ------------------------------------------------------ timestep embedding */

kn_status kn_timestep_embedding(kn_arena *A, const float *t, int64_t n, int dim, int flip_sin_to_cos,
                                float downscale_freq_shift, float max_period, kn_tensor *y) {
    if (!t && n > 0)
        return kn_fail(KN_ERR_ARG, "timestep_embedding: timesteps are missing");
    if (n < 0 || dim < 1)
        return kn_fail(KN_ERR_ARG, "timestep_embedding: bad size n = %lld, dim = %d", (long long)n, dim);
    int half = dim / 2;
    if (half > 0 && (float)half - downscale_freq_shift == 0.0f)
        return kn_fail(KN_ERR_ARG, "timestep_embedding: half dim %d minus shift %g is zero", half,
                       (double)downscale_freq_shift);
    if (!(max_period > 0.0f))
        return kn_fail(KN_ERR_ARG, "timestep_embedding: max_period must be > 0, got %g", (double)max_period);
    int64_t shape[2] = {n, dim};
    KN_TRY(prep_out("timestep_embedding", A, 2, shape, y));
    float *out = y->data; /* (n, dim) */
    /* diffusers: exponent = -log(max_period) * arange(half) / (half - shift), all in float32 */
    const float lmp = -(float)log((double)max_period);
    const float den = (float)half - downscale_freq_shift;
    for (int64_t r = 0; r < n; r++) {
        float *row = out + r * dim;
        for (int i = 0; i < half; i++) {
            float e = lmp * (float)i;
            e = e / den;
            float arg = t[r] * expf(e);
            float s = sinf(arg), c = cosf(arg);
            row[i] = flip_sin_to_cos ? c : s;
            row[half + i] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2)
            row[dim - 1] = 0.0f;
    }
    return KN_OK;
}

/* ---------------------------------------------------------------- dropout */

#define DROP_CHUNK 256

typedef struct {
    const float *x;
    float *y;
    int64_t n;
    float p, scale;
    uint64_t seed, offset;
    int accumulate;
} drop_ctx;

static void drop_task(int ith, int nth, void *pp) {
    drop_ctx *c = pp;
    int64_t nb = (c->n + DROP_CHUNK - 1) / DROP_CHUNK, b0, b1;
    kn_split_range(nb, ith, nth, &b0, &b1);
    float u[DROP_CHUNK];
    for (int64_t b = b0; b < b1; b++) {
        int64_t i0 = b * DROP_CHUNK, len = KN_MIN((int64_t)DROP_CHUNK, c->n - i0);
        kn_rand_fill(u, len, c->seed, c->offset + (uint64_t)i0);
        for (int64_t j = 0; j < len; j++) {
            float v = u[j] >= c->p ? c->x[i0 + j] * c->scale : 0.0f;
            if (c->accumulate)
                c->y[i0 + j] += v;
            else
                c->y[i0 + j] = v;
        }
    }
}

static kn_status drop_check_p(const char *op, float p) {
    if (!(p >= 0.0f && p <= 1.0f))
        return kn_fail(KN_ERR_ARG, "%s: p must be in [0, 1], got %g", op, (double)p);
    return KN_OK;
}

kn_status kn_dropout(kn_arena *A, const kn_tensor *x, float p, uint64_t seed, uint64_t offset, kn_tensor *y) {
    KN_TRY(drop_check_p("dropout", p));
    KN_TRY(check_in("dropout", "x", x));
    KN_TRY(prep_out("dropout", A, x->ndim, x->shape, y));
    drop_ctx c = {x->data, y->data, kn_tensor_numel(x), p, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f, seed, offset, 0};
    if (c.n)
        kn_parallel(drop_task, &c);
    return KN_OK;
}

kn_status kn_dropout_backward(const kn_tensor *dy, float p, uint64_t seed, uint64_t offset, kn_tensor *dx) {
    KN_TRY(drop_check_p("dropout_backward", p));
    KN_TRY(check_in("dropout_backward", "dy", dy));
    KN_TRY(check_same("dropout_backward", "dy", dy, "dx", dx));
    drop_ctx c = {dy->data, dx->data, kn_tensor_numel(dy), p, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f, seed, offset, 1};
    if (c.n)
        kn_parallel(drop_task, &c);
    return KN_OK;
}

/* ----------------------------------------------------- blocked reductions */

#define RED_MAX_BLOCKS 256
#define RED_MIN_BLOCK 8192

typedef struct {
    int kind; /* 0 sum x, 1 weighted squared error, 2 absolute error */
    const float *a, *b, *w;
    int64_t n, per_w; /* elements per weight (per sample of dim 0) */
    int64_t nblk;
    double part[RED_MAX_BLOCKS];
} red_ctx;

static void red_task(int ith, int nth, void *p) {
    red_ctx *c = p;
    int64_t k0, k1;
    kn_split_range(c->nblk, ith, nth, &k0, &k1);
    for (int64_t k = k0; k < k1; k++) {
        int64_t i0, i1;
        kn_split_range(c->n, (int)k, (int)c->nblk, &i0, &i1);
        double s = 0.0;
        /* 8 independent lanes (fixed) let the loop vectorise without reassociation */
        double l[8] = {0};
        int64_t i = i0;
        if (c->kind == 0) {
            for (; i + 8 <= i1; i += 8)
                for (int j = 0; j < 8; j++) l[j] += c->a[i + j];
            for (; i < i1; i++) s += c->a[i];
        } else if (c->kind == 2) {
            for (; i + 8 <= i1; i += 8)
                for (int j = 0; j < 8; j++) l[j] += fabs((double)c->a[i + j] - (double)c->b[i + j]);
            for (; i < i1; i++) s += fabs((double)c->a[i] - (double)c->b[i]);
        } else {
            for (; i < i1; i++) {
                double d = (double)c->a[i] - (double)c->b[i];
                double w = c->w ? c->w[i / c->per_w] : 1.0;
                s += w * d * d;
            }
        }
        c->part[k] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])) + s;
    }
}

static double red_run(red_ctx *c) {
    if (c->n <= 0)
        return 0.0;
    c->nblk = KN_MIN((int64_t)RED_MAX_BLOCKS, (c->n + RED_MIN_BLOCK - 1) / RED_MIN_BLOCK);
    if (c->nblk <= 1)
        red_task(0, 1, c);
    else
        kn_parallel(red_task, c);
    double s = 0.0;
    for (int64_t k = 0; k < c->nblk; k++) s += c->part[k];
    return s;
}

double kn_sum(const kn_tensor *x) {
    if (check_in("sum", "x", x) != KN_OK)
        return NAN;
    red_ctx c = {0};
    c.a = x->data;
    c.n = kn_tensor_numel(x);
    return red_run(&c);
}

double kn_mean(const kn_tensor *x) {
    if (check_in("mean", "x", x) != KN_OK)
        return NAN;
    int64_t n = kn_tensor_numel(x);
    if (n == 0) {
        kn_fail(KN_ERR_SHAPE, "mean: x is empty");
        return NAN;
    }
    return kn_sum(x) / (double)n;
}

static kn_status loss_check(const char *op, const kn_tensor *pred, const kn_tensor *target) {
    KN_TRY(check_in(op, "pred", pred));
    KN_TRY(check_same(op, "pred", pred, "target", target));
    if (kn_tensor_numel(pred) == 0)
        return kn_fail(KN_ERR_SHAPE, "%s: pred is empty", op);
    return KN_OK;
}

kn_status kn_mse_loss(const kn_tensor *pred, const kn_tensor *target, const float *weight, double *loss) {
    KN_TRY(loss_check("mse_loss", pred, target));
    if (!loss)
        return kn_fail(KN_ERR_ARG, "mse_loss: loss output is missing");
    red_ctx c = {0};
    c.kind = 1;
    c.a = pred->data;
    c.b = target->data;
    c.w = weight;
    c.n = kn_tensor_numel(pred);
    c.per_w = pred->ndim > 0 && pred->shape[0] > 0 ? c.n / pred->shape[0] : 1;
    *loss = red_run(&c) / (double)c.n;
    return KN_OK;
}

kn_status kn_l1_loss(const kn_tensor *pred, const kn_tensor *target, double *loss) {
    KN_TRY(loss_check("l1_loss", pred, target));
    if (!loss)
        return kn_fail(KN_ERR_ARG, "l1_loss: loss output is missing");
    red_ctx c = {0};
    c.kind = 2;
    c.a = pred->data;
    c.b = target->data;
    c.n = kn_tensor_numel(pred);
    *loss = red_run(&c) / (double)c.n;
    return KN_OK;
}

typedef struct {
    int kind; /* 1 mse, 2 l1 */
    const float *p, *t, *w;
    float *d;
    int64_t n, per_w;
    float k; /* dloss / n (times 2 for mse) */
} lossb_ctx;

static void lossb_task(int ith, int nth, void *pp) {
    lossb_ctx *c = pp;
    int64_t b, e;
    kn_split_range(c->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) {
        float diff = c->p[i] - c->t[i];
        if (c->kind == 1) {
            float w = c->w ? c->w[i / c->per_w] : 1.0f;
            c->d[i] += c->k * w * diff;
        } else {
            float sg = diff > 0.0f ? 1.0f : (diff < 0.0f ? -1.0f : 0.0f); /* torch.sign: 0 at 0 */
            c->d[i] += c->k * sg;
        }
    }
}

kn_status kn_mse_loss_backward(const kn_tensor *pred, const kn_tensor *target, const float *weight,
                               float dloss, kn_tensor *dpred) {
    KN_TRY(loss_check("mse_loss_backward", pred, target));
    KN_TRY(check_same("mse_loss_backward", "pred", pred, "dpred", dpred));
    lossb_ctx c = {1, pred->data, target->data, weight, dpred->data, kn_tensor_numel(pred), 1, 0.0f};
    c.per_w = pred->ndim > 0 && pred->shape[0] > 0 ? c.n / pred->shape[0] : 1;
    c.k = (float)(2.0 * (double)dloss / (double)c.n);
    kn_parallel(lossb_task, &c);
    return KN_OK;
}

kn_status kn_l1_loss_backward(const kn_tensor *pred, const kn_tensor *target, float dloss, kn_tensor *dpred) {
    KN_TRY(loss_check("l1_loss_backward", pred, target));
    KN_TRY(check_same("l1_loss_backward", "pred", pred, "dpred", dpred));
    lossb_ctx c = {2, pred->data, target->data, NULL, dpred->data, kn_tensor_numel(pred), 1, 0.0f};
    c.k = (float)((double)dloss / (double)c.n);
    kn_parallel(lossb_task, &c);
    return KN_OK;
}

/* -------------------------------------------------------------- sum over dim
 * x viewed as (outer, n, inner) -> y (outer, inner); y[o, i] = sum_k x[o, k, i] in k order (double).
 * Split over (o, block of 256 inner positions). */
#define SD_BLOCK 256

typedef struct {
    const float *x;
    float *y;
    int64_t outer, n, inner, nib;
} sd_ctx;

static void sd_task(int ith, int nth, void *p) {
    sd_ctx *c = p;
    int64_t i0, i1;
    kn_split_range(c->outer * c->nib, ith, nth, &i0, &i1);
    double acc[SD_BLOCK];
    for (int64_t it = i0; it < i1; it++) {
        int64_t o = it / c->nib, q0 = (it % c->nib) * SD_BLOCK, q1 = KN_MIN(q0 + SD_BLOCK, c->inner);
        int64_t len = q1 - q0;
        memset(acc, 0, sizeof acc);
        for (int64_t k = 0; k < c->n; k++) {
            const float *x = c->x + (o * c->n + k) * c->inner + q0;
            for (int64_t j = 0; j < len; j++) acc[j] += x[j];
        }
        float *y = c->y + o * c->inner + q0;
        for (int64_t j = 0; j < len; j++) y[j] = (float)acc[j];
    }
}

kn_status kn_sum_dim(kn_arena *A, const kn_tensor *x, int dim, kn_tensor *y) {
    char s[96];
    KN_TRY(check_in("sum_dim", "x", x));
    if (dim < 0)
        dim += x->ndim;
    if (dim < 0 || dim >= x->ndim)
        return kn_fail(KN_ERR_ARG, "sum_dim: dim %d out of range for x %s", dim, kn_shape_str(x, s, sizeof s));
    int64_t shape[KN_MAX_DIMS];
    int nd = 0;
    sd_ctx c = {x->data, NULL, 1, x->shape[dim], 1, 0};
    for (int k = 0; k < x->ndim; k++) {
        if (k < dim) c.outer *= x->shape[k];
        if (k > dim) c.inner *= x->shape[k];
        if (k != dim) shape[nd++] = x->shape[k];
    }
    if (nd == 0) { /* 1-D input: a 1-element result */
        shape[0] = 1;
        nd = 1;
    }
    KN_TRY(prep_out("sum_dim", A, nd, shape, y));
    c.y = y->data;
    c.nib = (c.inner + SD_BLOCK - 1) / SD_BLOCK;
    if (c.outer * c.inner > 0)
        kn_parallel(sd_task, &c);
    return KN_OK;
}
