/* test_norm.c — group norm (frames = 1 and pooled over T frames) and layer norm against PyTorch
 * (dev/ref_ops.py -> tests/data/ops_norm.safetensors), finite differences, thread invariance,
 * error messages. */
#include "kt.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

#define NORM_FX "tests/data/ops_norm.safetensors"

/* Fetches an F32 fixture tensor (a zero-copy view); fails the test if absent. */
static kn_tensor fx(kn_safetensors *st, const char *name) {
    kn_tensor t;
    memset(&t, 0, sizeof t);
    if (!st || kn_st_get(st, name, &t) != KN_OK || t.dtype != KN_F32) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing: %s", name, kn_last_error());
        memset(&t, 0, sizeof t);
    }
    return t;
}

static kn_tensor heap_zeros(int ndim, const int64_t *shape) {
    kn_tensor t;
    if (kn_tensor_zeros(NULL, &t, KN_F32, ndim, shape) != KN_OK) abort();
    return t;
}

static void check_gn_case(kn_safetensors *st, const char *p, int groups, int64_t frames, float eps) {
    char nm[64];
#define F(s) (snprintf(nm, sizeof nm, "%s_%s", p, s), fx(st, nm))
    kn_tensor x = F("x"), g = F("gamma"), b = F("beta"), yr = F("y"), dy = F("dy"), dxr = F("dx"),
              dgr = F("dgamma"), dbr = F("dbeta");
#undef F
    if (!x.data || !yr.data || !dxr.data || !dgr.data || !dbr.data || !dy.data || !g.data || !b.data)
        return;
    int64_t nst = x.shape[0] / frames * groups;
    float *mean = malloc(nst * sizeof(float)), *rstd = malloc(nst * sizeof(float));
    kn_tensor y = heap_zeros(x.ndim, x.shape), dx = heap_zeros(x.ndim, x.shape);
    kn_tensor dg = heap_zeros(1, g.shape), db = heap_zeros(1, g.shape);
    KT_OK(kn_group_norm(NULL, &x, groups, frames, eps, &g, &b, &y, mean, rstd));
    double e = kt_max_abs_diff(y.data, yr.data, kn_tensor_numel(&y));
    KT_CHECKF(e < 2e-5, "%s: forward max diff %g", p, e);
    KT_OK(kn_group_norm_backward(&x, groups, frames, &g, mean, rstd, &dy, &dx, &dg, &db));
    e = kt_max_abs_diff(dx.data, dxr.data, kn_tensor_numel(&dx));
    KT_CHECKF(e < 5e-5, "%s: dx max diff %g", p, e);
    e = kt_max_abs_diff(dg.data, dgr.data, g.shape[0]);
    KT_CHECKF(e < 1e-4, "%s: dgamma max diff %g", p, e);
    e = kt_max_abs_diff(db.data, dbr.data, g.shape[0]);
    KT_CHECKF(e < 1e-4, "%s: dbeta max diff %g", p, e);
    /* backward accumulates: a second call doubles the gradients */
    KT_OK(kn_group_norm_backward(&x, groups, frames, &g, mean, rstd, &dy, &dx, &dg, &db));
    KT_NEAR(((float *)dg.data)[1], 2 * ((float *)dgr.data)[1], 2e-4);
    KT_NEAR(((float *)dx.data)[7], 2 * ((float *)dxr.data)[7], 1e-4);
    free(mean); free(rstd);
    kn_tensor_free(&y); kn_tensor_free(&dx); kn_tensor_free(&dg); kn_tensor_free(&db);
}

KT_TEST(group_norm_matches_torch) {
    kn_safetensors *st = kn_st_open(NORM_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", NORM_FX, kn_last_error());
    if (!st) return;
    check_gn_case(st, "gn", 4, 1, 1e-5f);
    kn_st_close(st);
}

KT_TEST(group_norm_frames_matches_torch_5d) {
    kn_safetensors *st = kn_st_open(NORM_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", NORM_FX, kn_last_error());
    if (!st) return;
    check_gn_case(st, "gn5", 2, 3, 1e-6f); /* (N*T, C, H, W) with T = 3 == F.group_norm on (N,C,T,H,W) */
    kn_st_close(st);
}

KT_TEST(layer_norm_matches_torch) {
    kn_safetensors *st = kn_st_open(NORM_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", NORM_FX, kn_last_error());
    if (!st) return;
    const char *cases[] = {"ln", "ln33"};
    for (int c = 0; c < 2; c++) {
        char nm[64];
        const char *p = cases[c];
#define F(s) (snprintf(nm, sizeof nm, "%s_%s", p, s), fx(st, nm))
        kn_tensor x = F("x"), g = F("gamma"), b = F("beta"), yr = F("y"), dy = F("dy"), dxr = F("dx"),
                  dgr = F("dgamma"), dbr = F("dbeta");
#undef F
        if (!x.data || !g.data || !b.data || !yr.data || !dy.data || !dxr.data || !dgr.data || !dbr.data)
            continue;
        int64_t D = x.shape[x.ndim - 1], R = kn_tensor_numel(&x) / D;
        float *mean = malloc(R * sizeof(float)), *rstd = malloc(R * sizeof(float));
        kn_tensor y = heap_zeros(x.ndim, x.shape), dx = heap_zeros(x.ndim, x.shape);
        kn_tensor dg = heap_zeros(1, g.shape), db = heap_zeros(1, g.shape);
        KT_OK(kn_layer_norm(NULL, &x, 1e-5f, &g, &b, &y, mean, rstd));
        double e = kt_max_abs_diff(y.data, yr.data, kn_tensor_numel(&y));
        KT_CHECKF(e < 2e-5, "%s: forward max diff %g", p, e);
        KT_OK(kn_layer_norm_backward(&x, &g, mean, rstd, &dy, &dx, &dg, &db));
        e = kt_max_abs_diff(dx.data, dxr.data, kn_tensor_numel(&dx));
        KT_CHECKF(e < 5e-5, "%s: dx max diff %g", p, e);
        e = kt_max_abs_diff(dg.data, dgr.data, D);
        KT_CHECKF(e < 5e-5, "%s: dgamma max diff %g", p, e);
        e = kt_max_abs_diff(db.data, dbr.data, D);
        KT_CHECKF(e < 5e-5, "%s: dbeta max diff %g", p, e);
        /* without affine parameters: y = xhat; check row statistics */
        KT_OK(kn_layer_norm(NULL, &x, 1e-5f, NULL, NULL, &y, NULL, NULL));
        double s = 0, s2 = 0;
        for (int64_t d = 0; d < D; d++) { double v = ((float *)y.data)[d]; s += v; s2 += v * v; }
        KT_NEAR(s / D, 0.0, 1e-5);
        KT_NEAR(s2 / D, 1.0, 1e-3);
        free(mean); free(rstd);
        kn_tensor_free(&y); kn_tensor_free(&dx); kn_tensor_free(&dg); kn_tensor_free(&db);
    }
    kn_st_close(st);
}

/* L = sum(y * r) for group norm (which = 0) or layer norm (which = 1), in double. */
static double norm_loss(int which, kn_tensor *x, int groups, int64_t frames, kn_tensor *g, kn_tensor *b,
                        const float *r) {
    kn_tensor y = heap_zeros(x->ndim, x->shape);
    if (which == 0)
        KT_OK(kn_group_norm(NULL, x, groups, frames, 1e-5f, g, b, &y, NULL, NULL));
    else
        KT_OK(kn_layer_norm(NULL, x, 1e-5f, g, b, &y, NULL, NULL));
    double L = 0;
    for (int64_t i = 0; i < kn_tensor_numel(&y); i++) L += (double)((float *)y.data)[i] * r[i];
    kn_tensor_free(&y);
    return L;
}

/* Central differences on every input of x, gamma, beta against the analytic backward. */
static void fd_check(int which, int ndim, const int64_t *shape, int groups, int64_t frames) {
    kn_tensor x = heap_zeros(ndim, shape), y = heap_zeros(ndim, shape), dx = heap_zeros(ndim, shape);
    int64_t C = which == 0 ? shape[1] : shape[ndim - 1];
    kn_tensor g = heap_zeros(1, &C), b = heap_zeros(1, &C), dg = heap_zeros(1, &C), db = heap_zeros(1, &C);
    int64_t n = kn_tensor_numel(&x);
    float *r = malloc(n * sizeof(float));
    kn_randn_fill(x.data, n, 11, 0);
    kn_randn_fill(r, n, 12, 0);
    kn_randn_fill(g.data, C, 13, 0);
    kn_randn_fill(b.data, C, 14, 0);
    int64_t nst = which == 0 ? shape[0] / frames * groups : n / C;
    float *mean = malloc(nst * sizeof(float)), *rstd = malloc(nst * sizeof(float));
    kn_tensor dy = kn_tensor_view(KN_F32, ndim, shape, r);
    if (which == 0) {
        KT_OK(kn_group_norm(NULL, &x, groups, frames, 1e-5f, &g, &b, &y, mean, rstd));
        KT_OK(kn_group_norm_backward(&x, groups, frames, &g, mean, rstd, &dy, &dx, &dg, &db));
    } else {
        KT_OK(kn_layer_norm(NULL, &x, 1e-5f, &g, &b, &y, mean, rstd));
        KT_OK(kn_layer_norm_backward(&x, &g, mean, rstd, &dy, &dx, &dg, &db));
    }
    const float h = 1e-2f;
    kn_tensor *ts[3] = {&x, &g, &b}, *ds[3] = {&dx, &dg, &db};
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        float *v = ts[k]->data, *dv = ds[k]->data;
        for (int64_t i = 0; i < kn_tensor_numel(ts[k]); i++) {
            float o = v[i];
            v[i] = o + h;
            double lp = norm_loss(which, &x, groups, frames, &g, &b, r);
            v[i] = o - h;
            double lm = norm_loss(which, &x, groups, frames, &g, &b, r);
            v[i] = o;
            double num = (lp - lm) / (2 * h);
            if (fabs(num - dv[i]) > 1e-2 * (1 + fabs(num))) {
                if (bad++ < 5)
                    kt_fail(__FILE__, __LINE__, "%s grad of input %d elem %lld: analytic %g, numeric %g",
                            which ? "layer_norm" : "group_norm", k, (long long)i, dv[i], num);
            }
        }
    }
    KT_CHECKF(bad == 0, "%d gradient mismatches", bad);
    free(r); free(mean); free(rstd);
    kn_tensor *all[] = {&x, &y, &dx, &g, &b, &dg, &db};
    for (int i = 0; i < 7; i++) kn_tensor_free(all[i]);
}

KT_TEST(group_norm_finite_difference) {
    int64_t s1[4] = {2, 4, 3, 3};
    fd_check(0, 4, s1, 2, 1);
    int64_t s2[4] = {4, 6, 2, 3}; /* folded video, T = 2, 3 groups */
    fd_check(0, 4, s2, 3, 2);
}

KT_TEST(layer_norm_finite_difference) {
    int64_t s[3] = {2, 3, 19};
    fd_check(1, 3, s, 0, 1);
}

KT_TEST(norm_bitwise_same_for_1_2_3_threads) {
    int64_t shape[4] = {6, 64, 17, 19}; /* frames = 3; 17*19 = 323, not a multiple of 16 */
    int64_t C = 64, n = 6 * 64 * 17 * 19;
    float *x = malloc(n * 4), *dyv = malloc(n * 4), *g = malloc(C * 4), *b = malloc(C * 4);
    kn_randn_fill(x, n, 1, 0);
    kn_randn_fill(dyv, n, 2, 0);
    kn_randn_fill(g, C, 3, 0);
    kn_randn_fill(b, C, 4, 0);
    kn_tensor X = kn_tensor_view(KN_F32, 4, shape, x), DY = kn_tensor_view(KN_F32, 4, shape, dyv);
    kn_tensor G = kn_tensor_view(KN_F32, 1, &C, g), B = kn_tensor_view(KN_F32, 1, &C, b);
    float *res[3][4];
    float *lres[3][4];
    int64_t lshape[2] = {n / 323, 323};
    kn_tensor LX = kn_tensor_view(KN_F32, 2, lshape, x), LDY = kn_tensor_view(KN_F32, 2, lshape, dyv);
    int64_t D = 323;
    float *lg = malloc(D * 4);
    kn_randn_fill(lg, D, 5, 0);
    kn_tensor LG = kn_tensor_view(KN_F32, 1, &D, lg);
    int prev = kn_get_threads();
    for (int t = 0; t < 3; t++) {
        kn_set_threads(t + 1);
        kn_tensor y = heap_zeros(4, shape), dx = heap_zeros(4, shape), dg = heap_zeros(1, &C), db = heap_zeros(1, &C);
        float mean[2 * 32], rstd[2 * 32];
        KT_OK(kn_group_norm(NULL, &X, 32, 3, 1e-6f, &G, &B, &y, mean, rstd));
        KT_OK(kn_group_norm_backward(&X, 32, 3, &G, mean, rstd, &DY, &dx, &dg, &db));
        res[t][0] = y.data; res[t][1] = dx.data; res[t][2] = dg.data; res[t][3] = db.data;
        kn_tensor ly = heap_zeros(2, lshape), ldx = heap_zeros(2, lshape), ldg = heap_zeros(1, &D), ldb = heap_zeros(1, &D);
        float *lm = malloc(lshape[0] * 4), *lr = malloc(lshape[0] * 4);
        KT_OK(kn_layer_norm(NULL, &LX, 1e-5f, &LG, NULL, &ly, lm, lr));
        KT_OK(kn_layer_norm_backward(&LX, &LG, lm, lr, &LDY, &ldx, &ldg, &ldb));
        lres[t][0] = ly.data; lres[t][1] = ldx.data; lres[t][2] = ldg.data; lres[t][3] = ldb.data;
        free(lm); free(lr);
    }
    kn_set_threads(prev);
    int64_t sz[4] = {n, n, C, C}, lsz[4] = {n, n, D, D};
    for (int t = 1; t < 3; t++)
        for (int k = 0; k < 4; k++) {
            KT_CHECKF(memcmp(res[0][k], res[t][k], sz[k] * 4) == 0, "group norm output %d differs at %d threads", k, t + 1);
            KT_CHECKF(memcmp(lres[0][k], lres[t][k], lsz[k] * 4) == 0, "layer norm output %d differs at %d threads", k, t + 1);
        }
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++) { kn_aligned_free(res[t][k]); kn_aligned_free(lres[t][k]); }
    /* sanity: normalised group has mean ~0 (gamma, beta off) */
    free(x); free(dyv); free(g); free(b); free(lg);
}

KT_TEST(norm_errors_name_op_and_shapes) {
    int64_t shape[4] = {2, 6, 3, 3}, c5 = 5;
    float buf[108] = {0}, gb[6] = {0};
    kn_tensor x = kn_tensor_view(KN_F32, 4, shape, buf), y = kn_tensor_view(KN_F32, 4, shape, buf);
    KT_CHECK(kn_group_norm(NULL, &x, 4, 1, 1e-5f, NULL, NULL, &y, NULL, NULL) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "group_norm") && strstr(kn_last_error(), "(2,6,3,3)"), "msg: %s", kn_last_error());
    KT_CHECK(kn_group_norm(NULL, &x, 3, 4, 1e-5f, NULL, NULL, &y, NULL, NULL) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "frames"), "msg: %s", kn_last_error());
    kn_tensor g5 = kn_tensor_view(KN_F32, 1, &c5, gb);
    KT_CHECK(kn_group_norm(NULL, &x, 3, 1, 1e-5f, &g5, NULL, &y, NULL, NULL) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "gamma") && strstr(kn_last_error(), "(5)"), "msg: %s", kn_last_error());
    kn_tensor xi = x;
    xi.dtype = KN_F16;
    KT_CHECK(kn_group_norm(NULL, &xi, 3, 1, 1e-5f, NULL, NULL, &y, NULL, NULL) == KN_ERR_DTYPE);
    kn_tensor none = kn_tensor_view(KN_F32, 4, shape, NULL);
    KT_CHECK(kn_group_norm(NULL, &x, 3, 1, 1e-5f, NULL, NULL, &none, NULL, NULL) == KN_ERR_ARG);
    KT_CHECK(kn_layer_norm(NULL, &x, 1e-5f, &g5, NULL, &y, NULL, NULL) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "layer_norm"), "msg: %s", kn_last_error());
    KT_CHECK(kn_group_norm_backward(&x, 3, 1, NULL, NULL, NULL, &x, &y, NULL, NULL) == KN_ERR_ARG);
    /* arena allocation of the output */
    kn_arena *A = kn_arena_new(1 << 16);
    kn_tensor ya = kn_tensor_view(KN_F32, 4, shape, NULL);
    KT_OK(kn_group_norm(A, &x, 3, 1, 1e-5f, NULL, NULL, &ya, NULL, NULL));
    KT_CHECK(ya.data != NULL && kn_tensor_same_shape(&ya, &x));
    kn_arena_free(A);
}
