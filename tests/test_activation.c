/* test_activation.c — every kn_act and GEGLU against PyTorch (tests/data/ops_act.safetensors from
 * dev/ref_ops.py), derivatives against finite differences, in-place use, errors. */
#include "kt.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

#define ACT_FX "tests/data/ops_act.safetensors"

static kn_tensor fx(kn_safetensors *st, const char *name) {
    kn_tensor t;
    memset(&t, 0, sizeof t);
    if (!st || kn_st_get(st, name, &t) != KN_OK || t.dtype != KN_F32) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing: %s", name, kn_last_error());
        memset(&t, 0, sizeof t);
    }
    return t;
}

static const struct { kn_act act; const char *name; } ACTS[] = {
    {KN_ACT_SILU, "silu"}, {KN_ACT_RELU, "relu"}, {KN_ACT_GELU, "gelu"}, {KN_ACT_GELU_TANH, "gelu_tanh"},
    {KN_ACT_QUICK_GELU, "quick_gelu"}, {KN_ACT_TANH, "tanh"}, {KN_ACT_SIGMOID, "sigmoid"},
};
#define NACTS ((int)(sizeof ACTS / sizeof ACTS[0]))

KT_TEST(activations_match_torch) {
    kn_safetensors *st = kn_st_open(ACT_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", ACT_FX, kn_last_error());
    if (!st) return;
    kn_tensor x = fx(st, "x"), dy = fx(st, "dy");
    if (!x.data || !dy.data) { kn_st_close(st); return; }
    int64_t n = kn_tensor_numel(&x);
    kn_tensor y, dx;
    KT_OK(kn_tensor_zeros(NULL, &y, KN_F32, 1, x.shape));
    KT_OK(kn_tensor_zeros(NULL, &dx, KN_F32, 1, x.shape));
    for (int a = 0; a < NACTS; a++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_y", ACTS[a].name);
        kn_tensor yr = fx(st, nm);
        snprintf(nm, sizeof nm, "%s_dx", ACTS[a].name);
        kn_tensor dxr = fx(st, nm);
        if (!yr.data || !dxr.data) continue;
        KT_OK(kn_activation(NULL, ACTS[a].act, &x, &y));
        double e = kt_max_abs_diff(y.data, yr.data, n);
        KT_CHECKF(e < 2e-6 * 6, "%s forward max diff %g", ACTS[a].name, e);
        memset(dx.data, 0, n * sizeof(float));
        KT_OK(kn_activation_backward(ACTS[a].act, &x, &dy, &dx));
        e = kt_max_abs_diff(dx.data, dxr.data, n);
        KT_CHECKF(e < 2e-5, "%s backward max diff %g", ACTS[a].name, e);
        /* scalar forms agree with the kernels bitwise */
        int same = 1;
        for (int64_t i = 0; i < n; i++)
            if (kn_act_f(ACTS[a].act, ((float *)x.data)[i]) != ((float *)y.data)[i]) same = 0;
        KT_CHECKF(same, "%s: kn_act_f differs from kn_activation", ACTS[a].name);
    }
    kn_tensor_free(&y);
    kn_tensor_free(&dx);
    kn_st_close(st);
}

KT_TEST(activation_derivatives_match_finite_differences) {
    const double h = 1e-3;
    for (int a = 0; a < NACTS; a++) {
        int bad = 0;
        for (int i = -80; i <= 80; i++) {
            float x = i * 0.0737f + 0.0123f; /* never exactly 0 (relu's kink) */
            double num = ((double)kn_act_f(ACTS[a].act, (float)(x + h)) - kn_act_f(ACTS[a].act, (float)(x - h))) / (2 * h);
            double an = kn_act_df(ACTS[a].act, x);
            if (fabs(num - an) > 2e-3 * (1 + fabs(an)) && bad++ < 3)
                kt_fail(__FILE__, __LINE__, "%s'(%g): analytic %g numeric %g", ACTS[a].name, x, an, num);
        }
        KT_CHECKF(bad == 0, "%s: %d derivative mismatches", ACTS[a].name, bad);
    }
    KT_CHECK(kn_act_f(KN_ACT_IDENTITY, 3.5f) == 3.5f && kn_act_df(KN_ACT_IDENTITY, 3.5f) == 1.0f);
    /* exact GELU at a known point: gelu(1) = 0.841344746 */
    KT_NEAR(kn_act_f(KN_ACT_GELU, 1.0f), 0.8413447460685429, 1e-6);
    KT_NEAR(kn_act_f(KN_ACT_QUICK_GELU, 1.0f), 1.0 / (1.0 + exp(-1.702)), 1e-6);
}

KT_TEST(geglu_matches_torch_and_finite_differences) {
    kn_safetensors *st = kn_st_open(ACT_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", ACT_FX, kn_last_error());
    if (!st) return;
    kn_tensor x = fx(st, "geglu_x"), yr = fx(st, "geglu_y"), dy = fx(st, "geglu_dy"), dxr = fx(st, "geglu_dx");
    if (x.data && yr.data && dy.data && dxr.data) {
        kn_arena *A = kn_arena_new(1 << 20);
        kn_tensor y = kn_tensor_view(KN_F32, 3, yr.shape, NULL), dx;
        KT_OK(kn_geglu(A, &x, &y));
        KT_CHECK(kn_tensor_same_shape(&y, &yr));
        double e = kt_max_abs_diff(y.data, yr.data, kn_tensor_numel(&yr));
        KT_CHECKF(e < 2e-5, "geglu forward max diff %g", e);
        KT_OK(kn_tensor_zeros(A, &dx, KN_F32, 3, x.shape));
        KT_OK(kn_geglu_backward(&x, &dy, &dx));
        e = kt_max_abs_diff(dx.data, dxr.data, kn_tensor_numel(&x));
        KT_CHECKF(e < 5e-5, "geglu backward max diff %g", e);
        /* finite differences of L = sum(y * dy) on the first 2 rows */
        int bad = 0;
        float *xv = x.data;
        int64_t D2 = x.shape[2];
        float *xc = malloc(kn_tensor_numel(&x) * sizeof(float));
        memcpy(xc, xv, kn_tensor_numel(&x) * sizeof(float));
        kn_tensor X = kn_tensor_view(KN_F32, 3, x.shape, xc);
        for (int64_t i = 0; i < 2 * D2; i++) {
            double L[2];
            float o = xc[i];
            for (int s = 0; s < 2; s++) {
                xc[i] = o + (s ? -1e-2f : 1e-2f);
                kn_tensor yy = kn_tensor_view(KN_F32, 3, yr.shape, NULL);
                KT_OK(kn_geglu(A, &X, &yy));
                L[s] = 0;
                for (int64_t j = 0; j < kn_tensor_numel(&yy); j++) L[s] += (double)((float *)yy.data)[j] * ((float *)dy.data)[j];
            }
            xc[i] = o;
            double num = (L[0] - L[1]) / 2e-2, an = ((float *)dx.data)[i];
            if (fabs(num - an) > 1e-2 * (1 + fabs(an)) && bad++ < 3)
                kt_fail(__FILE__, __LINE__, "geglu dx[%lld]: analytic %g numeric %g", (long long)i, an, num);
        }
        KT_CHECK(bad == 0);
        free(xc);
        kn_arena_free(A);
    }
    kn_st_close(st);
}

KT_TEST(activation_in_place_threads_and_errors) {
    enum { N = 100001 };
    float *a = malloc(N * 4), *b = malloc(N * 4), *c = malloc(N * 4);
    int64_t n = N;
    kn_randn_fill(a, N, 5, 0);
    kn_tensor A = kn_tensor_view(KN_F32, 1, &n, a), B = kn_tensor_view(KN_F32, 1, &n, b),
              Cc = kn_tensor_view(KN_F32, 1, &n, c);
    const kn_act acts[3] = {KN_ACT_GELU_TANH, KN_ACT_SILU, KN_ACT_QUICK_GELU}; /* scalar and AVX-512 paths */
    for (int k = 0; k < 3; k++) {
        memcpy(b, a, N * 4);
        int prev = kn_set_threads(1);
        KT_OK(kn_activation(NULL, acts[k], &A, &Cc));
        kn_set_threads(3);
        KT_OK(kn_activation(NULL, acts[k], &B, &B)); /* in place, 3 threads */
        kn_set_threads(prev);
        KT_CHECKF(memcmp(b, c, N * 4) == 0, "activation %d differs in place / at 3 threads", (int)acts[k]);
    }
    int64_t s2[2] = {3, 7};
    kn_tensor odd = kn_tensor_view(KN_F32, 2, s2, a), out = kn_tensor_view(KN_F32, 2, s2, c);
    KT_CHECK(kn_geglu(NULL, &odd, &out) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "geglu") && strstr(kn_last_error(), "(3,7)"), "msg: %s", kn_last_error());
    KT_CHECK(kn_activation_backward(KN_ACT_SILU, &A, &odd, &Cc) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "activation_backward"), "msg: %s", kn_last_error());
    KT_CHECK(kn_activation(NULL, (kn_act)99, &A, &Cc) == KN_ERR_ARG);
    kn_tensor h = A;
    h.dtype = KN_BF16;
    KT_CHECK(kn_activation(NULL, KN_ACT_SILU, &h, &Cc) == KN_ERR_DTYPE);
    free(a); free(b); free(c);
}

/* GELU's erf is our own polynomial (activation.c): the erf it implies, 2 gelu(x) / x - 1, stays
 * within 1e-6 of libm's erff over a dense sweep of x / sqrt 2 in [-10, 10] (the float rounding of
 * gelu itself adds at most ~2.4e-7 to that figure); the AVX-512 body and the scalar tail agree
 * bitwise; gelu' matches the closed form in double. */
KT_TEST(gelu_erf_polynomial_matches_erff_on_a_dense_sweep) {
    enum { N = 1 << 20 };
    float *x = malloc(N * 4), *y = malloc(N * 4), *one = malloc(N * 4), *dx = calloc(N, 4);
    const double s2 = sqrt(2.0);
    for (int i = 0; i < N; i++) {
        x[i] = (float)(s2 * (-10.0 + 20.0 * i / (N - 1)));
        one[i] = 1.0f;
    }
    x[12345] = 0.0f, x[12346] = -0.0f, x[12347] = 1e-30f, x[12348] = -3e-5f; /* tiny ones */
    int64_t n = N;
    kn_tensor X = kn_tensor_view(KN_F32, 1, &n, x), Y = kn_tensor_view(KN_F32, 1, &n, y),
              O = kn_tensor_view(KN_F32, 1, &n, one), DX = kn_tensor_view(KN_F32, 1, &n, dx);
    KT_OK(kn_activation(NULL, KN_ACT_GELU, &X, &Y));
    KT_OK(kn_activation_backward(KN_ACT_GELU, &X, &O, &DX)); /* dx = 0 + 1 * gelu'(x) */
    double emax = 0, dmax = 0;
    float ex = 0;
    int same = 1, dsame = 1;
    for (int i = 0; i < N; i++) {
        float xv = x[i];
        if (kn_act_f(KN_ACT_GELU, xv) != y[i]) same = 0;
        if (kn_act_df(KN_ACT_GELU, xv) != dx[i]) dsame = 0;
        if (fabsf(xv) > 1e-3f) {
            double implied = 2.0 * y[i] / xv - 1.0;
            double e = fabs(implied - erff(xv * 0.70710678118654752440f));
            if (e > emax) emax = e, ex = xv;
        }
        double xd = xv, dref = 0.5 * (1.0 + erf(xd / s2)) + xd * exp(-0.5 * xd * xd) / sqrt(2.0 * M_PI);
        double de = fabs(dx[i] - dref) / (1.0 + fabs(dref));
        if (de > dmax) dmax = de;
    }
    KT_CHECKF(emax < 1e-6, "erf implied by gelu: max |err| vs erff %g at x = %g", emax, (double)ex);
    KT_CHECKF(dmax < 1e-6, "gelu' max rel err vs the closed form %g", dmax);
    KT_CHECKF(same, "gelu: kn_act_f differs from the vector kernel");
    KT_CHECKF(dsame, "gelu': kn_act_df differs from the vector kernel");
    /* exact values, the odd symmetry and the saturation */
    KT_CHECK(kn_act_f(KN_ACT_GELU, 0.0f) == 0.0f);
    KT_NEAR(kn_act_f(KN_ACT_GELU, -1.0f), -0.15865525393145707, 1e-7);
    KT_NEAR(kn_act_f(KN_ACT_GELU, 3.0f), 2.9959502164389230, 1e-6);
    KT_CHECK(kn_act_f(KN_ACT_GELU, 30.0f) == 30.0f && kn_act_f(KN_ACT_GELU, -30.0f) == -0.0f);
    KT_CHECK(kn_act_f(KN_ACT_GELU, INFINITY) == INFINITY);
    KT_CHECK(isnan(kn_act_f(KN_ACT_GELU, NAN)) && isnan(kn_act_df(KN_ACT_GELU, NAN)));
    KT_CHECK(kn_act_df(KN_ACT_GELU, 1e30f) == 1.0f && kn_act_df(KN_ACT_GELU, -1e30f) == 0.0f);
    free(x); free(y); free(one); free(dx);
}

/* GEGLU forward and backward: the vector body (D a multiple of 16) and the scalar tail (D = 37)
 * equal the scalar formula bitwise, and 1 and 3 threads give the same bits. */
KT_TEST(geglu_vector_and_scalar_paths_agree_bitwise_at_1_and_3_threads) {
    const int64_t Ds[2] = {64, 37};
    for (int c = 0; c < 2; c++) {
        int64_t R = 33, D = Ds[c];
        int64_t sx[2] = {R, 2 * D}, sy[2] = {R, D};
        float *x = malloc(R * 2 * D * 4), *dy = malloc(R * D * 4), *y1 = malloc(R * D * 4), *y3 = malloc(R * D * 4);
        float *dx1 = malloc(R * 2 * D * 4), *dx3 = malloc(R * 2 * D * 4);
        kn_randn_fill(x, R * 2 * D, 11 + c, 0);
        kn_randn_fill(dy, R * D, 21 + c, 0);
        for (int64_t i = 0; i < R * 2 * D; i++) x[i] *= 3.0f, dx1[i] = dx3[i] = 0.25f;
        kn_tensor X = kn_tensor_view(KN_F32, 2, sx, x), DY = kn_tensor_view(KN_F32, 2, sy, dy);
        kn_tensor Y1 = kn_tensor_view(KN_F32, 2, sy, y1), Y3 = kn_tensor_view(KN_F32, 2, sy, y3);
        kn_tensor DX1 = kn_tensor_view(KN_F32, 2, sx, dx1), DX3 = kn_tensor_view(KN_F32, 2, sx, dx3);
        int prev = kn_set_threads(1);
        KT_OK(kn_geglu(NULL, &X, &Y1));
        KT_OK(kn_geglu_backward(&X, &DY, &DX1));
        kn_set_threads(3);
        KT_OK(kn_geglu(NULL, &X, &Y3));
        KT_OK(kn_geglu_backward(&X, &DY, &DX3));
        kn_set_threads(prev);
        KT_CHECKF(memcmp(y1, y3, R * D * 4) == 0 && memcmp(dx1, dx3, R * 2 * D * 4) == 0,
                  "geglu D=%lld differs between 1 and 3 threads", (long long)D);
        int bad = 0;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < D; j++) {
                float h = x[r * 2 * D + j], g = x[r * 2 * D + D + j], d = dy[r * D + j];
                float yr = h * kn_act_f(KN_ACT_GELU, g);
                float dh = fmaf(d, kn_act_f(KN_ACT_GELU, g), 0.25f);
                float dg = fmaf(d * h, kn_act_df(KN_ACT_GELU, g), 0.25f);
                bad += y1[r * D + j] != yr || dx1[r * 2 * D + j] != dh || dx1[r * 2 * D + D + j] != dg;
            }
        KT_CHECKF(bad == 0, "geglu D=%lld: %d elements differ from the scalar formula", (long long)D, bad);
        free(x); free(dy); free(y1); free(y3); free(dx1); free(dx3);
    }
}

/* The vectorised backward kernels (GELU, SiLU) equal kn_act_df bitwise element by element, and the
 * split over 1 or 3 threads (which moves the vector/scalar-tail boundaries) changes no bit. */
KT_TEST(activation_backward_vector_paths_bitwise_scalar_and_threads) {
    enum { N = 10007 };
    float *x = malloc(N * 4), *dy = malloc(N * 4), *d1 = malloc(N * 4), *d3 = malloc(N * 4);
    kn_randn_fill(x, N, 31, 0);
    kn_randn_fill(dy, N, 32, 0);
    for (int i = 0; i < N; i++) x[i] *= 4.0f;
    int64_t n = N;
    kn_tensor X = kn_tensor_view(KN_F32, 1, &n, x), DY = kn_tensor_view(KN_F32, 1, &n, dy);
    kn_tensor D1 = kn_tensor_view(KN_F32, 1, &n, d1), D3 = kn_tensor_view(KN_F32, 1, &n, d3);
    const kn_act acts[2] = {KN_ACT_GELU, KN_ACT_SILU};
    for (int a = 0; a < 2; a++) {
        for (int i = 0; i < N; i++) d1[i] = d3[i] = 0.5f;
        int prev = kn_set_threads(1);
        KT_OK(kn_activation_backward(acts[a], &X, &DY, &D1));
        kn_set_threads(3);
        KT_OK(kn_activation_backward(acts[a], &X, &DY, &D3));
        kn_set_threads(prev);
        KT_CHECKF(memcmp(d1, d3, N * 4) == 0, "act %d backward differs at 3 threads", (int)acts[a]);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += d1[i] != fmaf(dy[i], kn_act_df(acts[a], x[i]), 0.5f);
        KT_CHECKF(bad == 0, "act %d backward: %d elements differ from dy * kn_act_df + dx", (int)acts[a], bad);
    }
    free(x); free(dy); free(d1); free(d3);
}
