/* norm.c — group norm (per sample, or pooled over T folded frames) and layer norm, with backward.
 *
 * Group norm is memory bound, so it reads x twice and no more: one pass for the statistics (sum
 * and sum of squares accumulated in double, which keeps E[x^2] - E[x]^2 exact enough for f32
 * data), one pass that writes y = x * a_c + b_c with a_c = rstd * gamma_c, b_c = beta_c - mean * a_c.
 * Work is split over (sample, group) items; each item is reduced by one thread in one fixed order
 * (16-lane double accumulators merged in a fixed tree), so results are bitwise identical for any
 * thread count.
 *
 * Layout: x (N, C, S) with S the product of the trailing dims. With frames = T the item
 * (b, g) covers samples b*T .. b*T+T-1, channels g*C/G .. (g+1)*C/G - 1: GroupNorm over the 5-D
 * (N/T, C, T, H, W) tensor of the same data, without a permute. */
#include "ops/ops.h"

#include <math.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* s += sum x[i], ss += sum x[i]^2 over n floats, in a fixed order. */
static void sum_sumsq(const float *x, int64_t n, double *s, double *ss) {
    int64_t i = 0;
    double a = 0.0, q = 0.0;
#if defined(__AVX512F__)
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), q0 = _mm512_setzero_pd(),
            q1 = _mm512_setzero_pd();
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        s0 = _mm512_add_pd(s0, lo);
        s1 = _mm512_add_pd(s1, hi);
        q0 = _mm512_fmadd_pd(lo, lo, q0);
        q1 = _mm512_fmadd_pd(hi, hi, q1);
    }
    a = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    q = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
#endif
    for (; i < n; i++) {
        double v = x[i];
        a += v;
        q += v * v;
    }
    *s += a;
    *ss += q;
}

/* y[i] = x[i] * a + b over n floats. */
static void affine_row(const float *x, float *y, int64_t n, float a, float b) {
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(x + i), va, vb));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), va, vb));
    }
#else
    for (; i < n; i++) y[i] = fmaf(x[i], a, b);
#endif
}

static kn_status check_in(const char *op, const char *what, const kn_tensor *t) {
    return kn_op_in(op, what, t, -1);
}

static kn_status check_vec(const char *op, const char *what, const kn_tensor *t, int64_t n) {
    char s[96];
    if (!t)
        return KN_OK;
    KN_TRY(check_in(op, what, t));
    if (t->ndim != 1 || t->shape[0] != n)
        return kn_fail(KN_ERR_SHAPE, "%s: %s is %s, expected (%lld)", op, what, kn_shape_str(t, s, sizeof s),
                       (long long)n);
    return KN_OK;
}

static kn_status prep_out(const char *op, kn_arena *A, const kn_tensor *like, kn_tensor *y) {
    return kn_op_out(op, A, like->ndim, like->shape, y);
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

/* ------------------------------------------------------------- group norm */

typedef struct {
    const float *x, *gamma, *beta, *dy, *mean_in, *rstd_in;
    float *y, *dx, *mean, *rstd;
    double *part; /* backward: (NB, C, 2) per-channel sums of dy and dy*x */
    int64_t NB, T, C, G, cg, S;
    float eps;
} gn_ctx;

static kn_status gn_check(const char *op, const kn_tensor *x, int groups, int64_t frames, int64_t *S) {
    char s[96];
    KN_TRY(check_in(op, "x", x));
    if (x->ndim < 2)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s must have at least 2 dims (N, C, ...)", op,
                       kn_shape_str(x, s, sizeof s));
    if (groups < 1 || x->shape[1] % groups != 0)
        return kn_fail(KN_ERR_SHAPE, "%s: %lld channels of x %s are not divisible into %d groups", op,
                       (long long)x->shape[1], kn_shape_str(x, s, sizeof s), groups);
    if (frames < 1 || x->shape[0] % frames != 0)
        return kn_fail(KN_ERR_SHAPE, "%s: batch %lld of x %s is not a multiple of frames %lld", op,
                       (long long)x->shape[0], kn_shape_str(x, s, sizeof s), (long long)frames);
    *S = 1;
    for (int k = 2; k < x->ndim; k++) *S *= x->shape[k];
    return KN_OK;
}

static void gn_fwd_task(int ith, int nth, void *p) {
    gn_ctx *c = p;
    int64_t i0, i1;
    kn_split_range(c->NB * c->G, ith, nth, &i0, &i1);
    const int64_t seg = c->cg * c->S; /* contiguous floats of one group in one sample */
    for (int64_t it = i0; it < i1; it++) {
        int64_t b = it / c->G, g = it % c->G;
        double s = 0.0, ss = 0.0;
        for (int64_t t = 0; t < c->T; t++)
            sum_sumsq(c->x + ((b * c->T + t) * c->C + g * c->cg) * c->S, seg, &s, &ss);
        double m = (double)c->T * (double)seg;
        double mean = s / m, var = ss / m - mean * mean;
        if (var < 0.0)
            var = 0.0;
        float fmean = (float)mean, frstd = (float)(1.0 / sqrt(var + (double)c->eps));
        if (c->mean) c->mean[it] = fmean;
        if (c->rstd) c->rstd[it] = frstd;
        for (int64_t t = 0; t < c->T; t++) {
            for (int64_t j = 0; j < c->cg; j++) {
                int64_t ch = g * c->cg + j;
                float ga = c->gamma ? c->gamma[ch] : 1.0f, be = c->beta ? c->beta[ch] : 0.0f;
                float a = frstd * ga, bb = be - fmean * a;
                int64_t off = ((b * c->T + t) * c->C + ch) * c->S;
                affine_row(c->x + off, c->y + off, c->S, a, bb);
            }
        }
    }
}

kn_status kn_group_norm(kn_arena *A, const kn_tensor *x, int groups, int64_t frames, float eps,
                        const kn_tensor *gamma, const kn_tensor *beta, kn_tensor *y, float *mean_out,
                        float *rstd_out) {
    int64_t S;
    KN_TRY(gn_check("group_norm", x, groups, frames, &S));
    KN_TRY(check_vec("group_norm", "gamma", gamma, x->shape[1]));
    KN_TRY(check_vec("group_norm", "beta", beta, x->shape[1]));
    if (!(eps >= 0.0f))
        return kn_fail(KN_ERR_ARG, "group_norm: eps must be >= 0, got %g", (double)eps);
    KN_TRY(prep_out("group_norm", A, x, y));
    gn_ctx c = {0};
    c.x = x->data;
    c.gamma = gamma ? gamma->data : NULL;
    c.beta = beta ? beta->data : NULL;
    c.y = y->data;
    c.mean = mean_out;
    c.rstd = rstd_out;
    c.T = frames;
    c.NB = x->shape[0] / frames;
    c.C = x->shape[1];
    c.G = groups;
    c.cg = c.C / groups;
    c.S = S;
    c.eps = eps;
    if (c.NB * c.G > 0)
        kn_parallel(gn_fwd_task, &c);
    return KN_OK;
}

/* dot(a, b) and sum(a) over n floats in a fixed order (double). */
static void sum_dot(const float *dy, const float *x, int64_t n, double *sdy, double *sdyx) {
    int64_t i = 0;
    double a = 0.0, q = 0.0;
#if defined(__AVX512F__)
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), q0 = _mm512_setzero_pd(),
            q1 = _mm512_setzero_pd();
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(dy + i), w = _mm512_loadu_ps(x + i);
        __m512d vlo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d vhi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        __m512d wlo = _mm512_cvtps_pd(_mm512_castps512_ps256(w));
        __m512d whi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(w), 1)));
        s0 = _mm512_add_pd(s0, vlo);
        s1 = _mm512_add_pd(s1, vhi);
        q0 = _mm512_fmadd_pd(vlo, wlo, q0);
        q1 = _mm512_fmadd_pd(vhi, whi, q1);
    }
    a = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    q = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
#endif
    for (; i < n; i++) {
        a += dy[i];
        q += (double)dy[i] * x[i];
    }
    *sdy += a;
    *sdyx += q;
}

static void gn_bwd_task(int ith, int nth, void *p) {
    gn_ctx *c = p;
    int64_t i0, i1;
    kn_split_range(c->NB * c->G, ith, nth, &i0, &i1);
    const double m = (double)c->T * (double)c->cg * (double)c->S;
    for (int64_t it = i0; it < i1; it++) {
        int64_t b = it / c->G, g = it % c->G;
        double mean = c->mean_in[it], rstd = c->rstd_in[it];
        double A = 0.0, B = 0.0; /* sum gamma*dy, sum gamma*dy*xhat over the group */
        for (int64_t j = 0; j < c->cg; j++) {
            int64_t ch = g * c->cg + j;
            double sdy = 0.0, sdyx = 0.0;
            for (int64_t t = 0; t < c->T; t++) {
                int64_t off = ((b * c->T + t) * c->C + ch) * c->S;
                sum_dot(c->dy + off, c->x + off, c->S, &sdy, &sdyx);
            }
            double sdxh = rstd * (sdyx - mean * sdy); /* sum dy * xhat */
            c->part[(b * c->C + ch) * 2 + 0] = sdy;
            c->part[(b * c->C + ch) * 2 + 1] = sdxh;
            double ga = c->gamma ? c->gamma[ch] : 1.0;
            A += ga * sdy;
            B += ga * sdxh;
        }
        if (!c->dx)
            continue;
        /* dx = rstd * (gamma*dy - A/m - xhat * B/m) = k1*dy + k2*x + k3 */
        double k2 = -rstd * rstd * B / m;
        double k3 = -rstd * A / m - mean * k2;
        for (int64_t t = 0; t < c->T; t++) {
            for (int64_t j = 0; j < c->cg; j++) {
                int64_t ch = g * c->cg + j;
                float k1 = (float)(rstd * (c->gamma ? c->gamma[ch] : 1.0f));
                float fk2 = (float)k2, fk3 = (float)k3;
                int64_t off = ((b * c->T + t) * c->C + ch) * c->S;
                const float *dy = c->dy + off, *x = c->x + off;
                float *dx = c->dx + off;
                for (int64_t i = 0; i < c->S; i++) dx[i] += k1 * dy[i] + fk2 * x[i] + fk3;
            }
        }
    }
}

kn_status kn_group_norm_backward(const kn_tensor *x, int groups, int64_t frames, const kn_tensor *gamma,
                                 const float *mean, const float *rstd, const kn_tensor *dy, kn_tensor *dx,
                                 kn_tensor *dgamma, kn_tensor *dbeta) {
    int64_t S;
    KN_TRY(gn_check("group_norm_backward", x, groups, frames, &S));
    KN_TRY(check_same("group_norm_backward", "x", x, "dy", dy));
    if (dx)
        KN_TRY(check_same("group_norm_backward", "x", x, "dx", dx));
    int64_t C = x->shape[1];
    KN_TRY(check_vec("group_norm_backward", "gamma", gamma, C));
    KN_TRY(check_vec("group_norm_backward", "dgamma", dgamma, C));
    KN_TRY(check_vec("group_norm_backward", "dbeta", dbeta, C));
    if (!mean || !rstd)
        return kn_fail(KN_ERR_ARG, "group_norm_backward: mean and rstd from the forward are required");
    gn_ctx c = {0};
    c.x = x->data;
    c.gamma = gamma ? gamma->data : NULL;
    c.dy = dy->data;
    c.dx = dx ? dx->data : NULL;
    c.mean_in = mean;
    c.rstd_in = rstd;
    c.T = frames;
    c.NB = x->shape[0] / frames;
    c.C = C;
    c.G = groups;
    c.cg = C / groups;
    c.S = S;
    if (c.NB * C == 0)
        return KN_OK;
    c.part = kn_aligned_alloc((size_t)(c.NB * C * 2) * sizeof(double));
    if (!c.part)
        return kn_fail(KN_ERR_NOMEM, "group_norm_backward: no memory for %lld partial sums", (long long)(c.NB * C));
    kn_parallel(gn_bwd_task, &c);
    /* parameter gradients: sum over samples in sample order */
    for (int64_t ch = 0; ch < C; ch++) {
        double sdy = 0.0, sdxh = 0.0;
        for (int64_t b = 0; b < c.NB; b++) {
            sdy += c.part[(b * C + ch) * 2 + 0];
            sdxh += c.part[(b * C + ch) * 2 + 1];
        }
        if (dgamma) ((float *)dgamma->data)[ch] += (float)sdxh;
        if (dbeta) ((float *)dbeta->data)[ch] += (float)sdy;
    }
    kn_aligned_free(c.part);
    return KN_OK;
}

/* ------------------------------------------------------------- layer norm */

typedef struct {
    const float *x, *gamma, *beta, *dy, *mean_in, *rstd_in;
    float *y, *dx, *dgamma, *dbeta, *mean, *rstd;
    int64_t R, D;
    float eps;
} ln_ctx;

static void ln_fwd_task(int ith, int nth, void *p) {
    ln_ctx *c = p;
    int64_t r0, r1;
    kn_split_range(c->R, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * c->D;
        float *y = c->y + r * c->D;
        double s = 0.0, ss = 0.0;
        sum_sumsq(x, c->D, &s, &ss);
        double mean = s / (double)c->D, var = ss / (double)c->D - mean * mean;
        if (var < 0.0)
            var = 0.0;
        float fm = (float)mean, fr = (float)(1.0 / sqrt(var + (double)c->eps));
        if (c->mean) c->mean[r] = fm;
        if (c->rstd) c->rstd[r] = fr;
        if (!c->gamma && !c->beta) {
            affine_row(x, y, c->D, fr, -fm * fr);
            continue;
        }
        for (int64_t d = 0; d < c->D; d++) {
            float v = (x[d] - fm) * fr;
            y[d] = v * (c->gamma ? c->gamma[d] : 1.0f) + (c->beta ? c->beta[d] : 0.0f);
        }
    }
}

kn_status kn_layer_norm(kn_arena *A, const kn_tensor *x, float eps, const kn_tensor *gamma,
                        const kn_tensor *beta, kn_tensor *y, float *mean_out, float *rstd_out) {
    char s[96];
    KN_TRY(check_in("layer_norm", "x", x));
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1)
        return kn_fail(KN_ERR_SHAPE, "layer_norm: x %s has no last dimension to normalise",
                       kn_shape_str(x, s, sizeof s));
    int64_t D = x->shape[x->ndim - 1];
    KN_TRY(check_vec("layer_norm", "gamma", gamma, D));
    KN_TRY(check_vec("layer_norm", "beta", beta, D));
    if (!(eps >= 0.0f))
        return kn_fail(KN_ERR_ARG, "layer_norm: eps must be >= 0, got %g", (double)eps);
    KN_TRY(prep_out("layer_norm", A, x, y));
    ln_ctx c = {0};
    c.x = x->data;
    c.gamma = gamma ? gamma->data : NULL;
    c.beta = beta ? beta->data : NULL;
    c.y = y->data;
    c.mean = mean_out;
    c.rstd = rstd_out;
    c.D = D;
    c.R = kn_tensor_numel(x) / D;
    c.eps = eps;
    if (c.R)
        kn_parallel(ln_fwd_task, &c);
    return KN_OK;
}

static void ln_bwd_dx_task(int ith, int nth, void *p) {
    ln_ctx *c = p;
    int64_t r0, r1;
    kn_split_range(c->R, ith, nth, &r0, &r1);
    const int64_t D = c->D;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * D, *dy = c->dy + r * D;
        float *dx = c->dx + r * D;
        float mean = c->mean_in[r], rstd = c->rstd_in[r];
        double A = 0.0, B = 0.0; /* sum g*dy, sum g*dy*xhat */
        for (int64_t d = 0; d < D; d++) {
            float g = c->gamma ? c->gamma[d] : 1.0f;
            float gdy = g * dy[d];
            A += gdy;
            B += (double)gdy * ((x[d] - mean) * rstd);
        }
        float a = (float)(A / (double)D), b = (float)(B / (double)D);
        for (int64_t d = 0; d < D; d++) {
            float g = c->gamma ? c->gamma[d] : 1.0f;
            float xh = (x[d] - mean) * rstd;
            dx[d] += rstd * (g * dy[d] - a - xh * b);
        }
    }
}

/* Parameter gradients: split over column blocks; every column sums its rows in row order. */
#define LN_COLS 64
static void ln_bwd_param_task(int ith, int nth, void *p) {
    ln_ctx *c = p;
    int64_t nb = (c->D + LN_COLS - 1) / LN_COLS, b0, b1;
    kn_split_range(nb, ith, nth, &b0, &b1);
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t d0 = blk * LN_COLS, d1 = KN_MIN(d0 + LN_COLS, c->D);
        double sg[LN_COLS] = {0}, sb[LN_COLS] = {0};
        for (int64_t r = 0; r < c->R; r++) {
            const float *x = c->x + r * c->D, *dy = c->dy + r * c->D;
            float mean = c->mean_in[r], rstd = c->rstd_in[r];
            for (int64_t d = d0; d < d1; d++) {
                sg[d - d0] += (double)dy[d] * ((x[d] - mean) * rstd);
                sb[d - d0] += dy[d];
            }
        }
        for (int64_t d = d0; d < d1; d++) {
            if (c->dgamma) c->dgamma[d] += (float)sg[d - d0];
            if (c->dbeta) c->dbeta[d] += (float)sb[d - d0];
        }
    }
}

kn_status kn_layer_norm_backward(const kn_tensor *x, const kn_tensor *gamma, const float *mean,
                                 const float *rstd, const kn_tensor *dy, kn_tensor *dx, kn_tensor *dgamma,
                                 kn_tensor *dbeta) {
    char s[96];
    KN_TRY(check_in("layer_norm_backward", "x", x));
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1)
        return kn_fail(KN_ERR_SHAPE, "layer_norm_backward: x %s has no last dimension",
                       kn_shape_str(x, s, sizeof s));
    KN_TRY(check_same("layer_norm_backward", "x", x, "dy", dy));
    if (dx)
        KN_TRY(check_same("layer_norm_backward", "x", x, "dx", dx));
    int64_t D = x->shape[x->ndim - 1];
    KN_TRY(check_vec("layer_norm_backward", "gamma", gamma, D));
    KN_TRY(check_vec("layer_norm_backward", "dgamma", dgamma, D));
    KN_TRY(check_vec("layer_norm_backward", "dbeta", dbeta, D));
    if (!mean || !rstd)
        return kn_fail(KN_ERR_ARG, "layer_norm_backward: mean and rstd from the forward are required");
    ln_ctx c = {0};
    c.x = x->data;
    c.gamma = gamma ? gamma->data : NULL;
    c.dy = dy->data;
    c.dx = dx ? dx->data : NULL;
    c.dgamma = dgamma ? dgamma->data : NULL;
    c.dbeta = dbeta ? dbeta->data : NULL;
    c.mean_in = mean;
    c.rstd_in = rstd;
    c.D = D;
    c.R = kn_tensor_numel(x) / D;
    if (!c.R)
        return KN_OK;
    if (c.dx)
        kn_parallel(ln_bwd_dx_task, &c);
    if (c.dgamma || c.dbeta)
        kn_parallel(ln_bwd_param_task, &c);
    return KN_OK;
}
