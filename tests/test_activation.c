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
