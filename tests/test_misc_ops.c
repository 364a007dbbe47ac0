/* test_misc_ops.c — timestep embedding, dropout, losses, reductions and the elementwise ops against
 * PyTorch (tests/data/ops_misc.safetensors from dev/ref_ops.py) and naive loops; thread invariance. */
#include "kt.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

#define MISC_FX "tests/data/ops_misc.safetensors"

static kn_tensor fx(kn_safetensors *st, const char *name) {
    kn_tensor t;
    memset(&t, 0, sizeof t);
    if (!st || kn_st_get(st, name, &t) != KN_OK || t.dtype != KN_F32) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing: %s", name, kn_last_error());
        memset(&t, 0, sizeof t);
    }
    return t;
}

KT_TEST(timestep_embedding_matches_diffusers_formula) {
    kn_safetensors *st = kn_st_open(MISC_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", MISC_FX, kn_last_error());
    if (!st) return;
    kn_tensor t = fx(st, "t");
    struct { const char *name; int dim, flip; float shift, maxp; } cases[] = {
        {"temb_320_flip", 320, 1, 0.0f, 10000.0f},
        {"temb_33_noflip", 33, 0, 1.0f, 10000.0f},
        {"temb_64_flip_mp", 64, 1, 1.0f, 1000.0f},
    };
    kn_arena *A = kn_arena_new(1 << 20);
    for (int c = 0; c < 3 && t.data; c++) {
        kn_tensor ref = fx(st, cases[c].name);
        if (!ref.data) continue;
        kn_tensor y = kn_tensor_view(KN_F32, 2, ref.shape, NULL);
        KT_OK(kn_timestep_embedding(A, t.data, t.shape[0], cases[c].dim, cases[c].flip, cases[c].shift,
                                    cases[c].maxp, &y));
        KT_CHECK(kn_tensor_same_shape(&y, &ref));
        /* arguments reach 999 rad: one float ulp of the argument is 6e-5, hence the tolerance */
        double e = kt_max_abs_diff(y.data, ref.data, kn_tensor_numel(&ref));
        KT_CHECKF(e < 2e-4, "%s max diff %g", cases[c].name, e);
        /* the rows of t = 0 and t = 1 are exact to 1e-6 */
        e = kt_max_abs_diff(y.data, ref.data, 2 * cases[c].dim);
        KT_CHECKF(e < 1e-6, "%s small-t rows max diff %g", cases[c].name, e);
    }
    kn_tensor y = kn_tensor_view(KN_F32, 2, (int64_t[]){5, 4}, NULL);
    KT_CHECK(kn_timestep_embedding(A, t.data, 5, 2, 0, 1.0f, 10000.0f, &y) == KN_ERR_ARG); /* half - shift = 0 */
    KT_CHECKF(strstr(kn_last_error(), "timestep_embedding"), "msg: %s", kn_last_error());
    kn_arena_free(A);
    kn_st_close(st);
}

KT_TEST(dropout_mask_is_philox_and_reproducible) {
    enum { N = 50001 };
    int64_t n = N;
    float *x = malloc(N * 4), *y = malloc(N * 4), *u = malloc(N * 4), *dx = calloc(N, 4), *y2 = malloc(N * 4);
    for (int i = 0; i < N; i++) x[i] = 1.0f + (float)(i % 7);
    kn_tensor X = kn_tensor_view(KN_F32, 1, &n, x), Y = kn_tensor_view(KN_F32, 1, &n, y);
    const float p = 0.3f;
    KT_OK(kn_dropout(NULL, &X, p, 77, 1000, &Y));
    kn_rand_fill(u, N, 77, 1000);
    int bad = 0, kept = 0;
    for (int i = 0; i < N; i++) {
        float want = u[i] >= p ? x[i] / (1.0f - p) : 0.0f;
        if (fabsf(y[i] - want) > 1e-6f * fabsf(want)) bad++;
        kept += u[i] >= p;
    }
    KT_CHECKF(bad == 0, "%d elements differ from the kn_rand_fill mask", bad);
    KT_NEAR((double)kept / N, 0.7, 0.01);
    /* backward with the same (seed, offset) reproduces the mask, and accumulates */
    kn_tensor DX = kn_tensor_view(KN_F32, 1, &n, dx);
    KT_OK(kn_dropout_backward(&X, p, 77, 1000, &DX));
    KT_OK(kn_dropout_backward(&X, p, 77, 1000, &DX));
    bad = 0;
    for (int i = 0; i < N; i++) if (fabsf(dx[i] - 2 * y[i]) > 1e-5f * fabsf(y[i])) bad++;
    KT_CHECKF(bad == 0, "%d backward elements differ", bad);
    /* a split call (offset + i) and other thread counts give the same bits */
    int prev = kn_set_threads(3);
    kn_tensor Xa, Xb, Ya, Yb;
    KT_OK(kn_tensor_slice(&X, 0, 0, 777, &Xa));
    KT_OK(kn_tensor_slice(&X, 0, 777, N, &Xb));
    Ya = kn_tensor_view(KN_F32, 1, Xa.shape, y2);
    Yb = kn_tensor_view(KN_F32, 1, Xb.shape, y2 + 777);
    KT_OK(kn_dropout(NULL, &Xa, p, 77, 1000, &Ya));
    KT_OK(kn_dropout(NULL, &Xb, p, 77, 1000 + 777, &Yb));
    kn_set_threads(prev);
    KT_CHECK(memcmp(y, y2, N * 4) == 0);
    KT_CHECK(kn_dropout(NULL, &X, 1.5f, 1, 0, &Y) == KN_ERR_ARG);
    KT_OK(kn_dropout(NULL, &X, 1.0f, 1, 0, &Y));
    KT_CHECK(y[0] == 0.0f && y[N - 1] == 0.0f);
    free(x); free(y); free(u); free(dx); free(y2);
}

KT_TEST(losses_match_torch_with_gradients) {
    kn_safetensors *st = kn_st_open(MISC_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", MISC_FX, kn_last_error());
    if (!st) return;
    kn_tensor p = fx(st, "pred"), t = fx(st, "target"), w = fx(st, "weight");
    const char *names[3] = {"mse", "mse_w", "l1"};
    for (int c = 0; c < 3 && p.data && t.data && w.data; c++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_loss", names[c]);
        kn_tensor lr = fx(st, nm);
        snprintf(nm, sizeof nm, "%s_dpred", names[c]);
        kn_tensor dr = fx(st, nm);
        if (!lr.data || !dr.data) continue;
        double loss = -1;
        kn_tensor d;
        KT_OK(kn_tensor_zeros(NULL, &d, KN_F32, p.ndim, p.shape));
        if (c < 2) {
            const float *wt = c == 1 ? w.data : NULL;
            KT_OK(kn_mse_loss(&p, &t, wt, &loss));
            KT_OK(kn_mse_loss_backward(&p, &t, wt, 0.75f, &d));
        } else {
            KT_OK(kn_l1_loss(&p, &t, &loss));
            KT_OK(kn_l1_loss_backward(&p, &t, 0.75f, &d));
        }
        KT_NEAR(loss, ((float *)lr.data)[0], 2e-6 * (1 + fabs(loss)));
        double e = kt_max_abs_diff(d.data, dr.data, kn_tensor_numel(&p));
        KT_CHECKF(e < 1e-7, "%s dpred max diff %g", names[c], e);
        /* finite differences of the loss itself on a few elements */
        float *pv = malloc(kn_tensor_numel(&p) * 4);
        memcpy(pv, p.data, kn_tensor_numel(&p) * 4);
        kn_tensor P = kn_tensor_view(KN_F32, p.ndim, p.shape, pv);
        for (int i = 0; i < 300; i += 37) {
            double lp, lm;
            float o = pv[i];
            pv[i] = o + 1e-2f;
            if (c < 2) KT_OK(kn_mse_loss(&P, &t, c == 1 ? w.data : NULL, &lp)); else KT_OK(kn_l1_loss(&P, &t, &lp));
            pv[i] = o - 1e-2f;
            if (c < 2) KT_OK(kn_mse_loss(&P, &t, c == 1 ? w.data : NULL, &lm)); else KT_OK(kn_l1_loss(&P, &t, &lm));
            pv[i] = o;
            double num = 0.75 * (lp - lm) / 2e-2;
            KT_NEAR(((float *)d.data)[i], num, 1e-3 * (1 + fabs(num)));
        }
        free(pv);
        kn_tensor_free(&d);
    }
    int64_t s2[2] = {3, 4};
    float z[12] = {0};
    kn_tensor a = kn_tensor_view(KN_F32, 2, s2, z);
    double l;
    KT_CHECK(kn_mse_loss(&a, &p, NULL, &l) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "mse_loss") && strstr(kn_last_error(), "(3,4)"), "msg: %s", kn_last_error());
    kn_st_close(st);
}

KT_TEST(reductions_match_torch_and_naive) {
    kn_safetensors *st = kn_st_open(MISC_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", MISC_FX, kn_last_error());
    if (!st) return;
    kn_tensor x = fx(st, "sum_x");
    kn_arena *A = kn_arena_new(1 << 20);
    for (int d = 0; d < 4 && x.data; d++) {
        char nm[32];
        snprintf(nm, sizeof nm, "sum_dim%d", d);
        kn_tensor r = fx(st, nm);
        if (!r.data) continue;
        kn_tensor y = kn_tensor_view(KN_F32, 3, r.shape, NULL);
        KT_OK(kn_sum_dim(A, &x, d, &y));
        KT_CHECK(kn_tensor_same_shape(&y, &r));
        double e = kt_max_abs_diff(y.data, r.data, kn_tensor_numel(&r));
        KT_CHECKF(e < 2e-6, "sum_dim %d max diff %g", d, e);
    }
    if (x.data) {
        double s = 0;
        for (int64_t i = 0; i < kn_tensor_numel(&x); i++) s += ((float *)x.data)[i];
        KT_NEAR(kn_sum(&x), s, 1e-9);
        KT_NEAR(kn_mean(&x), s / kn_tensor_numel(&x), 1e-11);
        kn_tensor y = kn_tensor_view(KN_F32, 3, x.shape, NULL);
        KT_CHECK(kn_sum_dim(A, &x, 4, &y) == KN_ERR_ARG);
        KT_CHECKF(strstr(kn_last_error(), "sum_dim"), "msg: %s", kn_last_error());
    }
    kn_arena_free(A);
    kn_st_close(st);
}

KT_TEST(reductions_bitwise_same_for_1_2_3_threads) {
    enum { N = 7 * 1001 * 143 };
    int64_t n = N, sh[3] = {7, 1001, 143}; /* 1002001 elements, not a multiple of the block size */
    float *a = malloc(N * 4), *b = malloc(N * 4), *w = malloc(7 * 4);
    kn_randn_fill(a, N, 3, 0);
    kn_randn_fill(b, N, 4, 0);
    for (int i = 0; i < 7; i++) w[i] = 0.5f + i;
    kn_tensor A = kn_tensor_view(KN_F32, 1, &n, a), B = kn_tensor_view(KN_F32, 1, &n, b);
    kn_tensor A3 = kn_tensor_view(KN_F32, 3, sh, a), B3 = kn_tensor_view(KN_F32, 3, sh, b);
    double r[3][5];
    float *sd[3][2];
    int prev = kn_get_threads();
    for (int t = 0; t < 3; t++) {
        kn_set_threads(t + 1);
        r[t][0] = kn_sum(&A);
        r[t][1] = kn_mean(&B);
        KT_OK(kn_mse_loss(&A3, &B3, w, &r[t][2]));
        KT_OK(kn_l1_loss(&A, &B, &r[t][3]));
        r[t][4] = 0;
        kn_tensor y0 = {0}, y1 = {0};
        KT_CHECK(kn_sum_dim(NULL, &A3, 1, &y0) == KN_ERR_ARG); /* no data and no arena */
        int64_t s0[2] = {7, 143}, s1[2] = {1001, 143};
        KT_OK(kn_tensor_alloc(NULL, &y0, KN_F32, 2, s0));
        KT_OK(kn_tensor_alloc(NULL, &y1, KN_F32, 2, s1));
        KT_OK(kn_sum_dim(NULL, &A3, 1, &y0));
        KT_OK(kn_sum_dim(NULL, &A3, 0, &y1));
        sd[t][0] = y0.data;
        sd[t][1] = y1.data;
    }
    kn_set_threads(prev);
    for (int t = 1; t < 3; t++) {
        KT_CHECKF(memcmp(r[0], r[t], sizeof r[0]) == 0, "scalar reductions differ at %d threads", t + 1);
        KT_CHECK(memcmp(sd[0][0], sd[t][0], 7 * 143 * 4) == 0);
        KT_CHECK(memcmp(sd[0][1], sd[t][1], 1001 * 143 * 4) == 0);
    }
    /* and they are accurate: naive double sums */
    double s = 0, m = 0;
    for (int i = 0; i < N; i++) { s += a[i]; double d = (double)a[i] - b[i]; m += w[i / (1001 * 143)] * d * d; }
    KT_NEAR(r[0][0], s, 1e-8 * (1 + fabs(s)));
    KT_NEAR(r[0][2], m / N, 1e-12 * (1 + m));
    double c0 = 0;
    for (int k = 0; k < 1001; k++) c0 += a[k * 143 + 5];
    KT_NEAR(sd[0][0][5], c0, 1e-5);
    for (int t = 0; t < 3; t++) { kn_aligned_free(sd[t][0]); kn_aligned_free(sd[t][1]); }
    free(a); free(b); free(w);
}

KT_TEST(elementwise_broadcast_rules) {
    kn_arena *Ar = kn_arena_new(1 << 20);
    int64_t sa[4] = {2, 3, 4, 5};
    float a[120], y[120];
    for (int i = 0; i < 120; i++) a[i] = (float)i;
    kn_tensor A = kn_tensor_view(KN_F32, 4, sa, a), Y = kn_tensor_view(KN_F32, 4, sa, y);
    /* same shape */
    KT_OK(kn_add(NULL, &A, &A, &Y));
    KT_CHECK(y[119] == 238.0f);
    /* rule 1, trailing: (5) and (3,1,1) */
    float b5[5] = {1, 2, 3, 4, 5}, c3[3] = {10, 20, 30}, nc[6] = {1, 2, 3, 4, 5, 6};
    int64_t s5 = 5, s311[3] = {3, 1, 1}, s23[2] = {2, 3}, s3 = 3;
    kn_tensor B5 = kn_tensor_view(KN_F32, 1, &s5, b5), C311 = kn_tensor_view(KN_F32, 3, s311, c3);
    kn_tensor N23 = kn_tensor_view(KN_F32, 2, s23, nc), C3 = kn_tensor_view(KN_F32, 1, &s3, c3);
    int bad = 0;
    KT_OK(kn_add(NULL, &A, &B5, &Y));
    for (int i = 0; i < 120; i++) bad += y[i] != a[i] + b5[i % 5];
    KT_OK(kn_mul(NULL, &A, &C311, &Y));
    for (int i = 0; i < 120; i++) bad += y[i] != a[i] * c3[(i / 20) % 3];
    /* rule 2, prefix: (N, C) over (N, C, H, W) */
    KT_OK(kn_add(NULL, &A, &N23, &Y));
    for (int i = 0; i < 120; i++) bad += y[i] != a[i] + nc[i / 20];
    /* rule 3, per channel: (C) over (N, C, H, W) */
    KT_OK(kn_mul(NULL, &A, &C3, &Y));
    for (int i = 0; i < 120; i++) bad += y[i] != a[i] * c3[(i / 20) % 3];
    KT_CHECKF(bad == 0, "%d broadcast elements wrong", bad);
    /* incompatible */
    int64_t s4 = 4 + 3;
    kn_tensor B7 = kn_tensor_view(KN_F32, 1, &s4, a);
    KT_CHECK(kn_add(NULL, &A, &B7, &Y) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "add") && strstr(kn_last_error(), "(7)") && strstr(kn_last_error(), "(2,3,4,5)"),
              "msg: %s", kn_last_error());
    /* in place, arena output, axpby, scale */
    float z[120];
    memcpy(z, a, sizeof z);
    kn_tensor Z = kn_tensor_view(KN_F32, 4, sa, z);
    KT_OK(kn_add(NULL, &Z, &B5, &Z));
    KT_CHECK(z[7] == a[7] + b5[2]);
    kn_tensor S = kn_tensor_view(KN_F32, 4, sa, NULL);
    KT_OK(kn_scale(Ar, &A, -0.5f, &S));
    KT_CHECK(((float *)S.data)[9] == -4.5f);
    KT_OK(kn_axpby(2.0f, &A, 3.0f, &S));
    KT_CHECK(((float *)S.data)[9] == 2.0f * 9 + 3.0f * -4.5f);
    KT_CHECK(kn_axpby(1.0f, &B5, 1.0f, &S) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "axpby"), "msg: %s", kn_last_error());
    kn_arena_free(Ar);
}
