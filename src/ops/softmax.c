/* softmax.c — numerically stable softmax over the last dimension, and its backward.
 *
 * y[r, :] = exp(x[r, :] - max_r) / sum exp(x[r, :] - max_r), one row per work item, every sum in
 * index order (bitwise identical for any thread count). A row whose entries are all -inf has no
 * defined softmax; it yields zeros (matching kn_attention's fully masked rows).
 * Backward: dx += y * (dy - sum(dy * y)). */
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <math.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif


typedef struct {
    const float *x, *y, *dy;
    float *out;
    int64_t rows, n;
} sm_ctx;

/* y (n) = softmax(x (n)); y may alias x. */
static void softmax_row(const float *x, float *y, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = fmaxf(mx, x[i]);
    if (mx == -INFINITY) {
        memset(y, 0, (size_t)n * sizeof(float));
        return;
    }
    float sum = 0.0f;
    int64_t i = 0;
#ifdef __AVX512F__
    __m512 vs = _mm512_setzero_ps(), vm = _mm512_set1_ps(mx);
    for (; i + 16 <= n; i += 16) {
        __m512 e = kn_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(y + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (i < n) {
        __mmask16 t = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(t, kn_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, x + i), vm)));
        _mm512_mask_storeu_ps(y + i, t, e);
        vs = _mm512_add_ps(vs, e);
        i = n;
    }
    sum = _mm512_reduce_add_ps(vs);
#endif
    for (; i < n; i++) {
        y[i] = expf(x[i] - mx);
        sum += y[i];
    }
    float inv = 1.0f / sum;
    for (i = 0; i < n; i++)
        y[i] *= inv;
}

static void softmax_worker(int ith, int nth, void *p) {
    const sm_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->rows, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++)
        softmax_row(c->x + r * c->n, c->out + r * c->n, c->n);
}

static void softmax_bwd_worker(int ith, int nth, void *p) {
    const sm_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->rows, ith, nth, &b, &e);
    for (int64_t r = b; r < e; r++) {
        const float *y = c->y + r * c->n, *dy = c->dy + r * c->n;
        float *dx = c->out + r * c->n;
        double s = 0.0;
        for (int64_t i = 0; i < c->n; i++)
            s += (double)dy[i] * y[i];
        float sf = (float)s;
        for (int64_t i = 0; i < c->n; i++)
            dx[i] += y[i] * (dy[i] - sf);
    }
}

static kn_status check_contig(const char *op, const char *what, const kn_tensor *t) {
    char s[64];
    if (!t)
        return kn_fail(KN_ERR_ARG, "%s: %s is required", op, what);
    KN_TRY(kn_check_f32(op, what, t, t->ndim));
    if (t->ndim < 1 || !kn_tensor_is_contiguous(t) || !t->data)
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s must be contiguous, rank >= 1, with data", op, what,
                       kn_shape_str(t, s, sizeof s));
    return KN_OK;
}

static kn_status check_same(const char *op, const char *what, const kn_tensor *t, const kn_tensor *like) {
    char s1[64], s2[64];
    KN_TRY(check_contig(op, what, t));
    if (!kn_tensor_same_shape(t, like))
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s does not match %s", op, what, kn_shape_str(t, s1, sizeof s1),
                       kn_shape_str(like, s2, sizeof s2));
    return KN_OK;
}

kn_status kn_softmax(kn_arena *A, const kn_tensor *x, kn_tensor *y) {
    static const char *op = "softmax";
    KN_TRY(check_contig(op, "x", x));
    if (!y)
        return kn_fail(KN_ERR_ARG, "%s: y is required", op);
    if (!y->data) {
        if (!A)
            return kn_fail(KN_ERR_ARG, "%s: y has no data and no arena was given", op);
        KN_TRY(kn_tensor_alloc(A, y, KN_F32, x->ndim, x->shape));
    } else {
        KN_TRY(check_same(op, "y", y, x));
    }
    int64_t n = x->shape[x->ndim - 1];
    if (n == 0)
        return KN_OK;
    sm_ctx c = {x->data, NULL, NULL, y->data, kn_tensor_numel(x) / n, n};
    kn_parallel(softmax_worker, &c);
    return KN_OK;
}

kn_status kn_softmax_backward(const kn_tensor *y, const kn_tensor *dy, kn_tensor *dx) {
    static const char *op = "softmax_backward";
    KN_TRY(check_contig(op, "y", y));
    KN_TRY(check_same(op, "dy", dy, y));
    if (!dx)
        return KN_OK;
    KN_TRY(check_same(op, "dx", dx, y));
    int64_t n = y->shape[y->ndim - 1];
    if (n == 0)
        return KN_OK;
    sm_ctx c = {NULL, y->data, dy->data, dx->data, kn_tensor_numel(y) / n, n};
    kn_parallel(softmax_bwd_worker, &c);
    return KN_OK;
}
