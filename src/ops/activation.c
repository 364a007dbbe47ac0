/* activation.c — pointwise activations (forward and derivative) and diffusers' GEGLU.
 *
 * Every kernel evaluates kn_act_f / kn_act_df per element, so a fused loop elsewhere that calls the
 * scalar forms gets bitwise the same values. Formulas (PyTorch definitions):
 *   silu(x)       = x * s(x),                 s = sigmoid
 *   gelu(x)       = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))       (F.gelu, approximate='none')
 *   gelu_tanh(x)  = 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi)   (approximate='tanh')
 *   quick_gelu(x) = x * s(1.702 x)                                  (OpenAI CLIP)
 * erf is our own piecewise polynomial (erf_f / erf_v below), not libm's erff, so that GELU and GEGLU
 * run 16 lanes at a time and the scalar tail gives bitwise the same values as the vector body.
 * Work is split over elements; each element is computed on its own, so results do not depend on
 * the thread count. */
#include "ops/ops.h"

#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define KN_SQRT1_2 0.70710678118654752440f
#define KN_INV_SQRT_2PI 0.39894228040143267794f
#define KN_SQRT_2_PI 0.79788456080286535588f

/* exp(x) for the sigmoid family: Cody-Waite reduction x = n ln2 + r, a degree-7 Taylor polynomial
 * of e^r on |r| <= ln2/2 (truncation 5e-9, about 1 ulp overall), times 2^n. Written once with
 * explicit fmaf and once with AVX-512 intrinsics doing the same operations in the same order, so
 * the vector kernels and the scalar kn_act_f agree bitwise. */
#define EXP_LO -87.3f
#define EXP_HI 88.3f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.428606765330187045e-06f
static const float EXP_C[8] = {1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};

static inline float exp_f(float x) {
    x = fminf(fmaxf(x, EXP_LO), EXP_HI);
    float n = rintf(x * EXP_LOG2E);
    float r = fmaf(n, -EXP_LN2_HI, x);
    r = fmaf(n, -EXP_LN2_LO, r);
    float p = EXP_C[7];
    for (int k = 6; k >= 0; k--) p = fmaf(p, r, EXP_C[k]);
    union { uint32_t u; float f; } s = {(uint32_t)((int32_t)n + 127) << 23};
    return p * s.f;
}

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + exp_f(-x)); }

/* erf(x): |x| in [0, 4) is cut into 16 intervals of width 1/4; interval k holds a degree-6
 * polynomial in t = |x| - mid_k (mid_0 = 0 with a zero constant term, so erf keeps its relative
 * accuracy near 0; mid_k = k/4 + 1/8 otherwise), evaluated by Horner with fma. |x| >= 4 gives
 * +-1 (erff rounds to 1 from 3.92 on), NaN stays NaN. Coefficients: weighted (relative) least
 * squares on 200 Chebyshev nodes per interval against a 30-digit erf (numpy + mpmath), rounded to
 * float. Measured over every float in [-10, 10]: max |erf_f - erff| 6.0e-8, max 2.3 ulp against
 * the exact erf. The vector form looks the 16 coefficient sets up with one vpermps per degree. */
static const float ERF_MID[16] = {0.0f, 0.375f, 0.625f, 0.875f, 1.125f, 1.375f, 1.625f, 1.875f, 2.125f, 2.375f, 2.625f, 2.875f, 3.125f, 3.375f, 3.625f, 3.875f};
static const float ERF_C[7][16] = {
    {0.000000000e+00f, 4.041168988e-01f, 6.232408881e-01f, 7.840750813e-01f, 8.883882165e-01f, 9.481700659e-01f, 9.784437418e-01f, 9.919900298e-01f, 9.973459840e-01f, 9.992170334e-01f, 9.997946024e-01f, 9.999521375e-01f, 9.999901056e-01f, 9.999982119e-01f, 9.999997020e-01f, 9.999999404e-01f},
    {1.128379226e+00f, 9.803528190e-01f, 7.634995580e-01f, 5.247450471e-01f, 3.182739615e-01f, 1.703597754e-01f, 8.047225326e-02f, 3.354582563e-02f, 1.234081946e-02f, 4.006478004e-03f, 1.147875446e-03f, 2.902284905e-04f, 6.475879491e-05f, 1.275178329e-05f, 2.215933591e-06f, 3.398257888e-07f},
    {-8.589723848e-07f, -3.676322699e-01f, -4.771872163e-01f, -4.591519237e-01f, -3.580582142e-01f, -2.342446893e-01f, -1.307674199e-01f, -6.289842725e-02f, -2.622424252e-02f, -9.515384212e-03f, -3.013172187e-03f, -8.344064699e-04f, -2.023709967e-04f, -4.303717651e-05f, -8.032729966e-06f, -1.316817361e-06f},
    {-3.760861456e-01f, -2.348750383e-01f, -5.567479134e-02f, 9.291964024e-02f, 1.624502838e-01f, 1.579380035e-01f, 1.148419306e-01f, 6.744214147e-02f, 3.303780779e-02f, 1.373050921e-02f, 4.890281707e-03f, 1.502423198e-03f, 3.999627079e-04f, 9.256100020e-05f, 1.866695493e-05f, 3.286753554e-06f},
    {-6.907615461e-04f, 1.665773839e-01f, 1.764609367e-01f, 1.123994067e-01f, 2.797576599e-02f, -3.049935773e-02f, -4.971877858e-02f, -4.226034507e-02f, -2.636125311e-02f, -1.313339546e-02f, -5.414304789e-03f, -1.881718985e-03f, -5.575400428e-04f, -1.418712345e-04f, -3.116243170e-05f, -5.930710358e-06f},
    {1.182191521e-01f, 4.532653838e-02f, -2.703504823e-02f, -6.670898199e-02f, -6.106109545e-02f, -3.064392507e-02f, -2.303276677e-03f, 1.132801268e-02f, 1.244421024e-02f, 8.360578679e-03f, 4.236414097e-03f, 1.727707335e-03f, 5.842620158e-04f, 1.665797608e-04f, 4.045958849e-05f, 8.430415619e-06f},
    {-1.946366765e-02f, -4.964622855e-02f, -4.126955569e-02f, -1.052260585e-02f, 1.532188430e-02f, 2.203020267e-02f, 1.440053247e-02f, 4.150955938e-03f, -1.778079080e-03f, -3.095479216e-03f, -2.245707205e-03f, -1.144290785e-03f, -4.557895300e-04f, -1.481263462e-04f, -4.015933155e-05f, -9.205047718e-06f},
};

static inline float erf_f(float x) {
    float ax = fabsf(x);
    if (!(ax < 4.0f))
        return ax >= 4.0f ? copysignf(1.0f, x) : x;
    int k = (int)(ax * 4.0f);
    float t = ax - ERF_MID[k];
    float p = ERF_C[6][k];
    for (int j = 5; j >= 0; j--) p = fmaf(p, t, ERF_C[j][k]);
    return copysignf(fminf(p, 1.0f), x);
}

/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)); gelu'(x) = Phi(x) + x phi(x) */
static inline float gelu_f(float x) { return 0.5f * x * (1.0f + erf_f(x * KN_SQRT1_2)); }

static inline float gelu_df(float x) {
    float cdf = 0.5f * (1.0f + erf_f(x * KN_SQRT1_2));
    /* |x| >= 13.04 (x^2 >= 170): x phi(x) < 3e-36 is taken as 0 (exp_f stops at e^-87.3, not 0) */
    float xc = fminf(fmaxf(x, -16.0f), 16.0f), x2 = xc * xc;
    float pdf = x2 < 170.0f ? KN_INV_SQRT_2PI * exp_f(-0.5f * x2) : 0.0f;
    return fmaf(xc, pdf, cdf);
}

#if defined(__AVX512F__)
static inline __m512 exp_v(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-EXP_LN2_HI), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(EXP_C[7]);
    for (int k = 6; k >= 0; k--) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C[k]));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static inline __m512 erf_v(__m512 x) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 ax = _mm512_andnot_ps(sign, x);
    __m512i k = _mm512_cvttps_epi32(_mm512_mul_ps(ax, _mm512_set1_ps(4.0f))); /* only its low 4 bits */
    __m512 t = _mm512_sub_ps(ax, _mm512_permutexvar_ps(k, _mm512_loadu_ps(ERF_MID)));
    __m512 p = _mm512_permutexvar_ps(k, _mm512_loadu_ps(ERF_C[6]));
    for (int j = 5; j >= 0; j--) p = _mm512_fmadd_ps(p, t, _mm512_permutexvar_ps(k, _mm512_loadu_ps(ERF_C[j])));
    p = _mm512_min_ps(p, _mm512_set1_ps(1.0f));
    /* |x| >= 4: 1 (NaN fails the compare and keeps its NaN polynomial) */
    p = _mm512_mask_mov_ps(p, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(4.0f), _CMP_GE_OQ), _mm512_set1_ps(1.0f));
    return _mm512_or_ps(p, _mm512_and_ps(x, sign));
}

static inline __m512 gelu_v(__m512 x) {
    __m512 e = erf_v(_mm512_mul_ps(x, _mm512_set1_ps(KN_SQRT1_2)));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

static inline __m512 gelu_dv(__m512 x) {
    __m512 e = erf_v(_mm512_mul_ps(x, _mm512_set1_ps(KN_SQRT1_2)));
    __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-16.0f)), _mm512_set1_ps(16.0f));
    __m512 x2 = _mm512_mul_ps(xc, xc);
    __m512 pdf = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(x2, _mm512_set1_ps(170.0f), _CMP_LT_OQ),
                                     _mm512_set1_ps(KN_INV_SQRT_2PI),
                                     exp_v(_mm512_mul_ps(_mm512_set1_ps(-0.5f), x2)));
    return _mm512_fmadd_ps(xc, pdf, cdf);
}

/* x * sigmoid(k x) (k = 1: silu, 1.702: quick_gelu), or sigmoid(x) when mul_x = 0 */
static inline __m512 sig_v(__m512 x, float k, int mul_x) {
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 kx = k == 1.0f ? x : _mm512_mul_ps(x, _mm512_set1_ps(k));
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_v(_mm512_sub_ps(_mm512_setzero_ps(), kx))));
    return mul_x ? _mm512_mul_ps(x, s) : s;
}

/* silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) */
static inline __m512 silu_dv(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 s = sig_v(x, 1.0f, 0);
    return _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(one, s), one));
}
#endif

float kn_act_f(kn_act act, float x) {
    switch (act) {
    case KN_ACT_IDENTITY: return x;
    case KN_ACT_SILU: return x * sigmoidf_(x);
    case KN_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case KN_ACT_GELU: return gelu_f(x);
    case KN_ACT_GELU_TANH: {
        float u = KN_SQRT_2_PI * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case KN_ACT_QUICK_GELU: return x * sigmoidf_(1.702f * x);
    case KN_ACT_TANH: return tanhf(x);
    case KN_ACT_SIGMOID: return sigmoidf_(x);
    }
    return x;
}

float kn_act_df(kn_act act, float x) {
    switch (act) {
    case KN_ACT_IDENTITY: return 1.0f;
    case KN_ACT_SILU: {
        float s = sigmoidf_(x);
        return s * fmaf(x, 1.0f - s, 1.0f); /* as silu_dv, bit for bit */
    }
    case KN_ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case KN_ACT_GELU: return gelu_df(x);
    case KN_ACT_GELU_TANH: {
        float x2 = x * x;
        float u = KN_SQRT_2_PI * (x + 0.044715f * x2 * x);
        float t = tanhf(u);
        float du = KN_SQRT_2_PI * (1.0f + 3.0f * 0.044715f * x2);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case KN_ACT_QUICK_GELU: {
        float s = sigmoidf_(1.702f * x);
        return s + 1.702f * x * s * (1.0f - s);
    }
    case KN_ACT_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case KN_ACT_SIGMOID: {
        float s = sigmoidf_(x);
        return s * (1.0f - s);
    }
    }
    return 1.0f;
}

static kn_status check_in(const char *op, const char *what, const kn_tensor *t) {
    return kn_op_in(op, what, t, -1);
}

static kn_status prep_out(const char *op, kn_arena *A, int ndim, const int64_t *shape, kn_tensor *y) {
    return kn_op_out(op, A, ndim, shape, y);
}

static kn_status check_same(const char *op, const char *na, const kn_tensor *a, const char *nb,
                            const kn_tensor *b) {
    char s1[96], s2[96];
    if (!kn_tensor_same_shape(a, b))
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s and %s %s differ in shape", op, na, kn_shape_str(a, s1, sizeof s1),
                       nb, kn_shape_str(b, s2, sizeof s2));
    return KN_OK;
}

typedef struct {
    kn_act act;
    const float *x, *dy;
    float *y;
    int64_t n;
} act_ctx;

static void act_fwd_task(int ith, int nth, void *p) {
    act_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->n, ith, nth, &b, &e);
    const kn_act act = c->act;
    const float *x = c->x;
    float *y = c->y;
#if defined(__AVX512F__)
    if (act == KN_ACT_SILU || act == KN_ACT_QUICK_GELU || act == KN_ACT_SIGMOID) {
        float k = act == KN_ACT_QUICK_GELU ? 1.702f : 1.0f;
        int mul_x = act != KN_ACT_SIGMOID;
        for (; b + 16 <= e; b += 16) _mm512_storeu_ps(y + b, sig_v(_mm512_loadu_ps(x + b), k, mul_x));
    } else if (act == KN_ACT_GELU) {
        for (; b + 16 <= e; b += 16) _mm512_storeu_ps(y + b, gelu_v(_mm512_loadu_ps(x + b)));
    }
#endif
    switch (act) { /* hoisted switch for the common ones; the vector loop above leaves the tail */
    case KN_ACT_SILU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] * sigmoidf_(x[i]);
        break;
    case KN_ACT_RELU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    default:
        for (int64_t i = b; i < e; i++) y[i] = kn_act_f(act, x[i]);
    }
}

static void act_bwd_task(int ith, int nth, void *p) {
    act_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->n, ith, nth, &b, &e);
    if (c->act == KN_ACT_GELU) { /* dx += dy * gelu'(x), one fma per element on both paths */
        const float *x = c->x, *dy = c->dy;
        float *dx = c->y;
#if defined(__AVX512F__)
        for (; b + 16 <= e; b += 16)
            _mm512_storeu_ps(dx + b, _mm512_fmadd_ps(_mm512_loadu_ps(dy + b), gelu_dv(_mm512_loadu_ps(x + b)),
                                                     _mm512_loadu_ps(dx + b)));
#endif
        for (int64_t i = b; i < e; i++) dx[i] = fmaf(dy[i], gelu_df(x[i]), dx[i]);
        return;
    }
    if (c->act == KN_ACT_SILU) {
        const float *x = c->x, *dy = c->dy;
        float *dx = c->y;
#if defined(__AVX512F__)
        for (; b + 16 <= e; b += 16)
            _mm512_storeu_ps(dx + b, _mm512_fmadd_ps(_mm512_loadu_ps(dy + b), silu_dv(_mm512_loadu_ps(x + b)),
                                                     _mm512_loadu_ps(dx + b)));
#endif
        for (int64_t i = b; i < e; i++) {
            float s = sigmoidf_(x[i]);
            dx[i] = fmaf(dy[i], s * fmaf(x[i], 1.0f - s, 1.0f), dx[i]);
        }
        return;
    }
    for (int64_t i = b; i < e; i++) c->y[i] += c->dy[i] * kn_act_df(c->act, c->x[i]);
}

kn_status kn_activation(kn_arena *A, kn_act act, const kn_tensor *x, kn_tensor *y) {
    if ((unsigned)act > KN_ACT_SIGMOID)
        return kn_fail(KN_ERR_ARG, "activation: unknown activation %d", (int)act);
    KN_TRY(check_in("activation", "x", x));
    KN_TRY(prep_out("activation", A, x->ndim, x->shape, y));
    act_ctx c = {act, x->data, NULL, y->data, kn_tensor_numel(x)};
    if (act == KN_ACT_IDENTITY) {
        if (c.y != c.x)
            for (int64_t i = 0; i < c.n; i++) c.y[i] = c.x[i];
        return KN_OK;
    }
    kn_parallel(act_fwd_task, &c);
    return KN_OK;
}

kn_status kn_activation_backward(kn_act act, const kn_tensor *x, const kn_tensor *dy, kn_tensor *dx) {
    if ((unsigned)act > KN_ACT_SIGMOID)
        return kn_fail(KN_ERR_ARG, "activation_backward: unknown activation %d", (int)act);
    KN_TRY(check_in("activation_backward", "x", x));
    KN_TRY(check_in("activation_backward", "dy", dy));
    KN_TRY(check_in("activation_backward", "dx", dx));
    KN_TRY(check_same("activation_backward", "x", x, "dy", dy));
    KN_TRY(check_same("activation_backward", "x", x, "dx", dx));
    act_ctx c = {act, x->data, dy->data, dx->data, kn_tensor_numel(x)};
    kn_parallel(act_bwd_task, &c);
    return KN_OK;
}

/* ------------------------------------------------------------------ GEGLU
 * x (R, 2D) -> y (R, D): y[r, j] = x[r, j] * gelu(x[r, D + j]) (diffusers GEGLU: hidden, gate =
 * proj(x).chunk(2, dim=-1); hidden * gelu(gate)). */
typedef struct {
    const float *x, *dy;
    float *y, *dx;
    int64_t rows, D;
} geglu_ctx;

static void geglu_fwd_task(int ith, int nth, void *p) {
    geglu_ctx *c = p;
    int64_t r0, r1;
    kn_split_range(c->rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *h = c->x + r * 2 * c->D, *g = h + c->D; /* (D), (D) */
        float *y = c->y + r * c->D;
        int64_t j = 0;
#if defined(__AVX512F__)
        for (; j + 16 <= c->D; j += 16)
            _mm512_storeu_ps(y + j, _mm512_mul_ps(_mm512_loadu_ps(h + j), gelu_v(_mm512_loadu_ps(g + j))));
#endif
        for (; j < c->D; j++) y[j] = h[j] * gelu_f(g[j]);
    }
}

static void geglu_bwd_task(int ith, int nth, void *p) {
    geglu_ctx *c = p;
    int64_t r0, r1;
    kn_split_range(c->rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *h = c->x + r * 2 * c->D, *g = h + c->D;
        const float *dy = c->dy + r * c->D;
        float *dh = c->dx + r * 2 * c->D, *dg = dh + c->D;
        int64_t j = 0;
#if defined(__AVX512F__)
        for (; j + 16 <= c->D; j += 16) {
            __m512 gv = _mm512_loadu_ps(g + j), dyv = _mm512_loadu_ps(dy + j);
            _mm512_storeu_ps(dh + j, _mm512_fmadd_ps(dyv, gelu_v(gv), _mm512_loadu_ps(dh + j)));
            _mm512_storeu_ps(dg + j, _mm512_fmadd_ps(_mm512_mul_ps(dyv, _mm512_loadu_ps(h + j)), gelu_dv(gv),
                                                     _mm512_loadu_ps(dg + j)));
        }
#endif
        for (; j < c->D; j++) {
            dh[j] = fmaf(dy[j], gelu_f(g[j]), dh[j]);
            dg[j] = fmaf(dy[j] * h[j], gelu_df(g[j]), dg[j]);
        }
    }
}

kn_status kn_geglu(kn_arena *A, const kn_tensor *x, kn_tensor *y) {
    char s[96];
    KN_TRY(check_in("geglu", "x", x));
    if (x->ndim < 1 || x->shape[x->ndim - 1] % 2 != 0)
        return kn_fail(KN_ERR_SHAPE, "geglu: x %s must have an even last dimension", kn_shape_str(x, s, sizeof s));
    int64_t shape[KN_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = x->shape[k];
    shape[x->ndim - 1] /= 2;
    KN_TRY(prep_out("geglu", A, x->ndim, shape, y));
    geglu_ctx c = {x->data, NULL, y->data, NULL, 0, shape[x->ndim - 1]};
    c.rows = c.D ? kn_tensor_numel(x) / (2 * c.D) : 0;
    if (c.rows)
        kn_parallel(geglu_fwd_task, &c);
    return KN_OK;
}

kn_status kn_geglu_backward(const kn_tensor *x, const kn_tensor *dy, kn_tensor *dx) {
    char s1[96], s2[96];
    KN_TRY(check_in("geglu_backward", "x", x));
    KN_TRY(check_in("geglu_backward", "dy", dy));
    KN_TRY(check_in("geglu_backward", "dx", dx));
    KN_TRY(check_same("geglu_backward", "x", x, "dx", dx));
    int ok = x->ndim >= 1 && dy->ndim == x->ndim && x->shape[x->ndim - 1] == 2 * dy->shape[dy->ndim - 1];
    for (int k = 0; ok && k < x->ndim - 1; k++) ok = x->shape[k] == dy->shape[k];
    if (!ok)
        return kn_fail(KN_ERR_SHAPE, "geglu_backward: dy %s does not fit x %s", kn_shape_str(dy, s1, sizeof s1),
                       kn_shape_str(x, s2, sizeof s2));
    geglu_ctx c = {x->data, dy->data, NULL, dx->data, 0, dy->shape[dy->ndim - 1]};
    c.rows = c.D ? kn_tensor_numel(dy) / c.D : 0;
    if (c.rows)
        kn_parallel(geglu_bwd_task, &c);
    return KN_OK;
}
