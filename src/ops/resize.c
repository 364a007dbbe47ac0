/* resize.c — nearest / bilinear resize, linear resize along time, average pooling and strided
 * subsampling, each with backward, on (N, C, H, W) (frames folded into N).
 *
 * Source indices follow PyTorch's CPU kernels (aten/src/ATen/native/UpSample.h):
 *   nearest:  src = min(floor(dst * (in/out)), in - 1), scale computed in float;
 *   linear (align_corners=False): r = max((in/out) * (dst + 0.5) - 0.5, 0), i0 = floor(r),
 *             i1 = i0 + (i0 < in - 1), w1 = r - i0, w0 = 1 - w1.
 * Backward passes scatter into dx one (n, c) plane (or one time column) at a time, in output order,
 * so the accumulation order never depends on the thread count. */
#include "ops/ops.h"

#include <math.h>

static kn_status check_in(const char *op, const char *what, const kn_tensor *t, int ndim) {
    return kn_op_in(op, what, t, ndim);
}

static kn_status prep_out(const char *op, kn_arena *A, int ndim, const int64_t *shape, kn_tensor *y) {
    return kn_op_out(op, A, ndim, shape, y);
}

/* dy (N, C, Ho, Wo) and dx (N, C, H, W): same N, C. */
static kn_status check_pair(const char *op, const kn_tensor *dy, const kn_tensor *dx) {
    char s1[96], s2[96];
    KN_TRY(check_in(op, "dy", dy, 4));
    KN_TRY(check_in(op, "dx", dx, 4));
    if (dy->shape[0] != dx->shape[0] || dy->shape[1] != dx->shape[1])
        return kn_fail(KN_ERR_SHAPE, "%s: dy %s and dx %s differ in (N, C)", op, kn_shape_str(dy, s1, sizeof s1),
                       kn_shape_str(dx, s2, sizeof s2));
    return KN_OK;
}

static inline int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
    if (in == out)
        return dst;
    if (out == 2 * in)
        return dst >> 1;
    float scale = (float)in / (float)out;
    int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

static inline void linear_src(int64_t dst, int64_t in, int64_t out, int64_t *i0, int64_t *i1, float *w0,
                              float *w1) {
    float scale = (float)in / (float)out;
    float r = scale * ((float)dst + 0.5f) - 0.5f;
    if (r < 0.0f)
        r = 0.0f;
    int64_t i = (int64_t)r;
    if (i > in - 1)
        i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    float l = r - (float)i;
    l = l < 0.0f ? 0.0f : (l > 1.0f ? 1.0f : l);
    *w1 = l;
    *w0 = 1.0f - l;
}

typedef struct {
    const float *x;
    float *y;
    int64_t planes, H, W, Ho, Wo;
    int mode; /* 0 nearest, 1 bilinear, 2 avg pool, 3 stride */
    int k;
} rs_ctx;

static void rs_fwd_task(int ith, int nth, void *p) {
    rs_ctx *c = p;
    int64_t p0, p1;
    kn_split_range(c->planes, ith, nth, &p0, &p1);
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = p0; pl < p1; pl++) {
        const float *x = c->x + pl * H * W; /* (H, W) */
        float *y = c->y + pl * Ho * Wo;     /* (Ho, Wo) */
        for (int64_t i = 0; i < Ho; i++) {
            float *yr = y + i * Wo;
            switch (c->mode) {
            case 0: {
                const float *xr = x + nearest_src(i, H, Ho) * W;
                for (int64_t j = 0; j < Wo; j++) yr[j] = xr[nearest_src(j, W, Wo)];
                break;
            }
            case 1: {
                int64_t h0, h1;
                float a0, a1;
                linear_src(i, H, Ho, &h0, &h1, &a0, &a1);
                const float *r0 = x + h0 * W, *r1 = x + h1 * W;
                for (int64_t j = 0; j < Wo; j++) {
                    int64_t w0, w1;
                    float b0, b1;
                    linear_src(j, W, Wo, &w0, &w1, &b0, &b1);
                    yr[j] = a0 * (b0 * r0[w0] + b1 * r0[w1]) + a1 * (b0 * r1[w0] + b1 * r1[w1]);
                }
                break;
            }
            case 2: {
                const int k = c->k;
                const float inv = 1.0f / (float)(k * k);
                for (int64_t j = 0; j < Wo; j++) {
                    float s = 0.0f;
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) s += x[(i * k + u) * W + j * k + v];
                    yr[j] = s * inv;
                }
                break;
            }
            default: {
                const float *xr = x + i * c->k * W;
                for (int64_t j = 0; j < Wo; j++) yr[j] = xr[j * c->k];
            }
            }
        }
    }
}

static void rs_bwd_task(int ith, int nth, void *p) {
    rs_ctx *c = p; /* here x = dy (Ho, Wo planes) and y = dx (H, W planes) */
    int64_t p0, p1;
    kn_split_range(c->planes, ith, nth, &p0, &p1);
    const int64_t H = c->H, W = c->W, Ho = c->Ho, Wo = c->Wo;
    for (int64_t pl = p0; pl < p1; pl++) {
        const float *dy = c->x + pl * Ho * Wo;
        float *dx = c->y + pl * H * W;
        for (int64_t i = 0; i < Ho; i++) {
            const float *dr = dy + i * Wo;
            switch (c->mode) {
            case 0: {
                float *xr = dx + nearest_src(i, H, Ho) * W;
                for (int64_t j = 0; j < Wo; j++) xr[nearest_src(j, W, Wo)] += dr[j];
                break;
            }
            case 1: {
                int64_t h0, h1;
                float a0, a1;
                linear_src(i, H, Ho, &h0, &h1, &a0, &a1);
                float *r0 = dx + h0 * W, *r1 = dx + h1 * W;
                for (int64_t j = 0; j < Wo; j++) {
                    int64_t w0, w1;
                    float b0, b1;
                    linear_src(j, W, Wo, &w0, &w1, &b0, &b1);
                    float g = dr[j];
                    r0[w0] += a0 * b0 * g;
                    r0[w1] += a0 * b1 * g;
                    r1[w0] += a1 * b0 * g;
                    r1[w1] += a1 * b1 * g;
                }
                break;
            }
            case 2: {
                const int k = c->k;
                const float inv = 1.0f / (float)(k * k);
                for (int64_t j = 0; j < Wo; j++) {
                    float g = dr[j] * inv;
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) dx[(i * k + u) * W + j * k + v] += g;
                }
                break;
            }
            default: {
                float *xr = dx + i * c->k * W;
                for (int64_t j = 0; j < Wo; j++) xr[j * c->k] += dr[j];
            }
            }
        }
    }
}

static kn_status rs_forward(const char *op, int mode, int k, kn_arena *A, const kn_tensor *x, int64_t Ho,
                            int64_t Wo, kn_tensor *y) {
    char s[96];
    KN_TRY(check_in(op, "x", x, 4));
    if (Ho < 1 || Wo < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: cannot resize x %s to (%lld, %lld)", op, kn_shape_str(x, s, sizeof s),
                       (long long)Ho, (long long)Wo);
    int64_t shape[4] = {x->shape[0], x->shape[1], Ho, Wo};
    KN_TRY(prep_out(op, A, 4, shape, y));
    rs_ctx c = {x->data, y->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], Ho, Wo, mode, k};
    if (c.planes)
        kn_parallel(rs_fwd_task, &c);
    return KN_OK;
}

static kn_status rs_backward(const char *op, int mode, int k, const kn_tensor *dy, kn_tensor *dx) {
    rs_ctx c = {dy->data, dx->data, dx->shape[0] * dx->shape[1], dx->shape[2], dx->shape[3], dy->shape[2],
                dy->shape[3], mode, k};
    (void)op;
    if (c.planes && c.Ho > 0 && c.Wo > 0)
        kn_parallel(rs_bwd_task, &c);
    return KN_OK;
}

kn_status kn_resize_nearest(kn_arena *A, const kn_tensor *x, int64_t Ho, int64_t Wo, kn_tensor *y) {
    return rs_forward("resize_nearest", 0, 1, A, x, Ho, Wo, y);
}

kn_status kn_resize_nearest_backward(const kn_tensor *dy, kn_tensor *dx) {
    KN_TRY(check_pair("resize_nearest_backward", dy, dx));
    return rs_backward("resize_nearest_backward", 0, 1, dy, dx);
}

kn_status kn_resize_bilinear(kn_arena *A, const kn_tensor *x, int64_t Ho, int64_t Wo, kn_tensor *y) {
    return rs_forward("resize_bilinear", 1, 1, A, x, Ho, Wo, y);
}

kn_status kn_resize_bilinear_backward(const kn_tensor *dy, kn_tensor *dx) {
    KN_TRY(check_pair("resize_bilinear_backward", dy, dx));
    return rs_backward("resize_bilinear_backward", 1, 1, dy, dx);
}

/* Pool / stride output size and shape checks. */
static kn_status pool_check(const char *op, int mode, const kn_tensor *x, int k, int64_t *Ho, int64_t *Wo) {
    char s[96];
    if (k < 1)
        return kn_fail(KN_ERR_ARG, "%s: %s must be >= 1, got %d", op, mode == 2 ? "kernel" : "stride", k);
    if (mode == 2) {
        *Ho = x->shape[2] / k;
        *Wo = x->shape[3] / k;
    } else {
        *Ho = x->shape[2] > 0 ? (x->shape[2] - 1) / k + 1 : 0;
        *Wo = x->shape[3] > 0 ? (x->shape[3] - 1) / k + 1 : 0;
    }
    if (*Ho < 1 || *Wo < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s is smaller than the kernel %d", op, kn_shape_str(x, s, sizeof s), k);
    return KN_OK;
}

kn_status kn_avg_pool2d(kn_arena *A, const kn_tensor *x, int k, kn_tensor *y) {
    int64_t Ho, Wo;
    KN_TRY(check_in("avg_pool2d", "x", x, 4));
    KN_TRY(pool_check("avg_pool2d", 2, x, k, &Ho, &Wo));
    return rs_forward("avg_pool2d", 2, k, A, x, Ho, Wo, y);
}

kn_status kn_avg_pool2d_backward(const kn_tensor *dy, int k, kn_tensor *dx) {
    char s1[96], s2[96];
    int64_t Ho, Wo;
    KN_TRY(check_pair("avg_pool2d_backward", dy, dx));
    KN_TRY(pool_check("avg_pool2d_backward", 2, dx, k, &Ho, &Wo));
    if (dy->shape[2] != Ho || dy->shape[3] != Wo)
        return kn_fail(KN_ERR_SHAPE, "avg_pool2d_backward: dy %s does not fit dx %s with kernel %d",
                       kn_shape_str(dy, s1, sizeof s1), kn_shape_str(dx, s2, sizeof s2), k);
    return rs_backward("avg_pool2d_backward", 2, k, dy, dx);
}

kn_status kn_downsample_stride(kn_arena *A, const kn_tensor *x, int s, kn_tensor *y) {
    int64_t Ho, Wo;
    KN_TRY(check_in("downsample_stride", "x", x, 4));
    KN_TRY(pool_check("downsample_stride", 3, x, s, &Ho, &Wo));
    return rs_forward("downsample_stride", 3, s, A, x, Ho, Wo, y);
}

kn_status kn_downsample_stride_backward(const kn_tensor *dy, int s, kn_tensor *dx) {
    char s1[96], s2[96];
    int64_t Ho, Wo;
    KN_TRY(check_pair("downsample_stride_backward", dy, dx));
    KN_TRY(pool_check("downsample_stride_backward", 3, dx, s, &Ho, &Wo));
    if (dy->shape[2] != Ho || dy->shape[3] != Wo)
        return kn_fail(KN_ERR_SHAPE, "downsample_stride_backward: dy %s does not fit dx %s with stride %d",
                       kn_shape_str(dy, s1, sizeof s1), kn_shape_str(dx, s2, sizeof s2), s);
    return rs_backward("downsample_stride_backward", 3, s, dy, dx);
}

/* ------------------------------------------------------ linear resize in time
 * x (N*T, P...) -> y (N*To, P...), P = product of the trailing dims; output frame o of sample n is
 * w0 * x[n*T + t0] + w1 * x[n*T + t1]. */
typedef struct {
    const float *x;
    float *y;
    int64_t N, T, To, P, nchunk;
} tl_ctx;

#define TL_CHUNK 4096

static void tl_fwd_task(int ith, int nth, void *p) {
    tl_ctx *c = p;
    int64_t i0, i1;
    kn_split_range(c->N * c->To, ith, nth, &i0, &i1);
    for (int64_t it = i0; it < i1; it++) {
        int64_t n = it / c->To, o = it % c->To, t0, t1;
        float w0, w1;
        linear_src(o, c->T, c->To, &t0, &t1, &w0, &w1);
        const float *a = c->x + (n * c->T + t0) * c->P, *b = c->x + (n * c->T + t1) * c->P;
        float *y = c->y + it * c->P;
        for (int64_t i = 0; i < c->P; i++) y[i] = w0 * a[i] + w1 * b[i];
    }
}

static void tl_bwd_task(int ith, int nth, void *p) {
    tl_ctx *c = p; /* x = dy (N*To, P), y = dx (N*T, P) */
    int64_t i0, i1;
    kn_split_range(c->N * c->nchunk, ith, nth, &i0, &i1);
    for (int64_t it = i0; it < i1; it++) {
        int64_t n = it / c->nchunk, q0 = (it % c->nchunk) * TL_CHUNK, q1 = KN_MIN(q0 + TL_CHUNK, c->P);
        for (int64_t o = 0; o < c->To; o++) {
            int64_t t0, t1;
            float w0, w1;
            linear_src(o, c->T, c->To, &t0, &t1, &w0, &w1);
            const float *g = c->x + (n * c->To + o) * c->P;
            float *a = c->y + (n * c->T + t0) * c->P, *b = c->y + (n * c->T + t1) * c->P;
            for (int64_t i = q0; i < q1; i++) a[i] += w0 * g[i];
            for (int64_t i = q0; i < q1; i++) b[i] += w1 * g[i];
        }
    }
}

kn_status kn_resize_time_linear(kn_arena *A, const kn_tensor *x, int64_t T, int64_t To, kn_tensor *y) {
    char s[96];
    KN_TRY(check_in("resize_time_linear", "x", x, -1));
    if (x->ndim < 1 || T < 1 || To < 1 || x->shape[0] % T != 0)
        return kn_fail(KN_ERR_SHAPE, "resize_time_linear: x %s is not (N*T, ...) with T = %lld (to %lld frames)",
                       kn_shape_str(x, s, sizeof s), (long long)T, (long long)To);
    int64_t shape[KN_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = x->shape[k];
    int64_t N = x->shape[0] / T;
    shape[0] = N * To;
    KN_TRY(prep_out("resize_time_linear", A, x->ndim, shape, y));
    tl_ctx c = {x->data, y->data, N, T, To, 0, 0};
    c.P = x->shape[0] ? kn_tensor_numel(x) / x->shape[0] : 0;
    if (N && c.P)
        kn_parallel(tl_fwd_task, &c);
    return KN_OK;
}

kn_status kn_resize_time_linear_backward(const kn_tensor *dy, int64_t T, int64_t To, kn_tensor *dx) {
    char s1[96], s2[96];
    KN_TRY(check_in("resize_time_linear_backward", "dy", dy, -1));
    KN_TRY(check_in("resize_time_linear_backward", "dx", dx, dy->ndim));
    int ok = dy->ndim >= 1 && T >= 1 && To >= 1 && dx->shape[0] % T == 0 && dy->shape[0] % To == 0 &&
             dx->shape[0] / T == dy->shape[0] / To;
    for (int k = 1; ok && k < dy->ndim; k++) ok = dy->shape[k] == dx->shape[k];
    if (!ok)
        return kn_fail(KN_ERR_SHAPE, "resize_time_linear_backward: dy %s (To = %lld) does not fit dx %s (T = %lld)",
                       kn_shape_str(dy, s1, sizeof s1), (long long)To, kn_shape_str(dx, s2, sizeof s2), (long long)T);
    tl_ctx c = {dy->data, dx->data, dx->shape[0] / T, T, To, 0, 0};
    c.P = dx->shape[0] ? kn_tensor_numel(dx) / dx->shape[0] : 0;
    c.nchunk = (c.P + TL_CHUNK - 1) / TL_CHUNK;
    if (c.N && c.P)
        kn_parallel(tl_bwd_task, &c);
    return KN_OK;
}
