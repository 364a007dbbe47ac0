/* test_gemm_lowp.c — reduced-precision weights: kn_gemm_lowp (F16, BF16 native + fallback, Q8)
 * against its naive reference on odd shapes, every trans_b / trans_c / beta, bitwise identity
 * across thread counts, the quantisation round-trip bounds, linear and conv forward with lowp
 * weights against the F32 ops on the dequantised weights, backward refusal, the params
 * conversion, and `kinema forward --weights-type` on the fixture UNet. */
#include "kt.h"
#include "ops/gemm_lowp.h"
#include "ops/ops.h"
#include "io/safetensors.h"
#include "io/model_load.h"

#include <stdlib.h>
#include <string.h>

static float *rand_buf(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    kn_randn_fill(p, n, seed, 0);
    return p;
}

/* W (M x K) ~ N(0,1)/sqrt(K) converted to format t; caller frees. */
static void *rand_weight(kn_wtype t, int64_t M, int64_t K, uint64_t seed) {
    float *w = rand_buf(M * K, seed);
    float s = 1.0f / sqrtf((float)(K > 0 ? K : 1));
    for (int64_t i = 0; i < M * K; i++)
        w[i] *= s;
    void *q = malloc(kn_lowp_nbytes(t, M, K) + 1);
    kn_lowp_quantize(t, w, M, K, q);
    free(w);
    return q;
}

/* One case vs the reference; returns the max |diff| / (1 + |ref|). */
static double lowp_case(kn_wtype t, int tb, int tc, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                        int st) {
    int64_t ldb = (tb ? K : N) + 1, ldc = (tc ? M : N) + 2;
    int64_t nb = (tb ? N : K) * ldb, nc = (tc ? N : M) * ldc;
    void *W = rand_weight(t, M, K, 11);
    float *B = rand_buf(nb, 12), *C = rand_buf(nc, 13), *R = malloc((size_t)nc * 4);
    memcpy(R, C, (size_t)nc * 4);
    size_t rb = kn_lowp_row_bytes(t, K);
    if (st)
        kn_gemm_lowp_st(t, tb, tc, M, N, K, alpha, W, rb, B, ldb, beta, C, ldc);
    else
        kn_gemm_lowp(t, tb, tc, M, N, K, alpha, W, rb, B, ldb, beta, C, ldc);
    kn_gemm_lowp_ref(t, tb, tc, M, N, K, alpha, W, rb, B, ldb, beta, R, ldc);
    double err = 0;
    for (int64_t i = 0; i < nc; i++) {
        double d = fabs((double)C[i] - R[i]) / (1.0 + fabs((double)R[i]));
        if (!(d <= err))
            err = isnan(d) ? INFINITY : d;
    }
    free(W), free(B), free(C), free(R);
    return err;
}

static void lowp_sweep(kn_wtype t) {
    static const int64_t sizes[][3] = {{1, 1, 1},      {3, 5, 7},       {14, 32, 32},  {15, 33, 31},
                                       {13, 31, 45},   {29, 65, 257},   {113, 257, 397}, {7, 300, 33},
                                       {250, 3, 64},   {1, 129, 1000},  {20, 1100, 70}, {5, 5, 0}};
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {0, 0.25f}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int v = 0; v < 4; v++) {
            const float *p = ab[(s + v) % 4];
            int64_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
            double e = lowp_case(t, v & 1, v >> 1, M, N, K, p[0], p[1], (int)(s & 1));
            KT_CHECKF(e < 2e-6 * sqrt((double)K + 1) + 1e-6,
                      "%s trans_b=%d trans_c=%d M=%lld N=%lld K=%lld alpha=%g beta=%g: rel err %g", kn_wtype_name(t),
                      v & 1, v >> 1, (long long)M, (long long)N, (long long)K, p[0], p[1], e);
        }
}

KT_TEST(gemm_lowp_f16_vs_ref) { lowp_sweep(KN_WT_F16); }
KT_TEST(gemm_lowp_q8_vs_ref) { lowp_sweep(KN_WT_Q8); }
KT_TEST(gemm_lowp_f32_vs_ref) { lowp_sweep(KN_WT_F32); }

KT_TEST(gemm_lowp_bf16_vs_ref) {
    int prev = kn_gemm_lowp_bf16_native(1);
    KT_CHECKF(kn_gemm_lowp_bf16_native(-1) == (__builtin_cpu_supports("avx512bf16") != 0),
              "bf16 native mode does not follow the CPU flag");
    lowp_sweep(KN_WT_BF16);   /* vdpbf16ps where the CPU has it */
    kn_gemm_lowp_bf16_native(0);
    lowp_sweep(KN_WT_BF16);   /* the f32 fallback */
    kn_gemm_lowp_bf16_native(prev);
}

/* The BF16 reference rounds B: a B value that bf16 cannot hold changes the product. */
KT_TEST(gemm_lowp_bf16_rounds_b) {
    uint16_t w = kn_f32_to_bf16(1.0f);
    float b = 1.0f + 1.0f / 1024.0f, c = 0, r = 0; /* not representable in bf16 (8 mantissa bits) */
    kn_gemm_lowp(KN_WT_BF16, 0, 0, 1, 1, 1, 1.0f, &w, 2, &b, 1, 0.0f, &c, 1);
    kn_gemm_lowp_ref(KN_WT_BF16, 0, 0, 1, 1, 1, 1.0f, &w, 2, &b, 1, 0.0f, &r, 1);
    KT_CHECKF(c == 1.0f && r == 1.0f, "bf16: 1 * (1 + 2^-10) gave %.9g (ref %.9g), want 1", c, r);
}

KT_TEST(gemm_lowp_thread_invariance) {
    const int64_t M = 150, N = 700, K = 420;
    int prev_threads = kn_get_threads(), prev_bf = kn_gemm_lowp_bf16_native(-1);
    for (int ti = 0; ti < KN_WT_COUNT + 1; ti++) {
        kn_wtype t = ti == KN_WT_COUNT ? KN_WT_BF16 : (kn_wtype)ti;
        kn_gemm_lowp_bf16_native(ti == KN_WT_COUNT ? 0 : 1); /* last round: bf16 fallback */
        void *W = rand_weight(t, M, K, 21);
        float *B = rand_buf(K * N, 22);
        float *C[4];
        for (int r = 0; r < 4; r++) {
            C[r] = rand_buf(M * N, 23); /* beta = 1: C's start matters, the same for every run */
            if (r < 3) {
                kn_set_threads(r + 1);
                kn_gemm_lowp(t, r == 2, 0, M, N, K, 1.0f, W, kn_lowp_row_bytes(t, K), B, r == 2 ? K : N, 1.0f,
                             C[r], N);
            } else {
                kn_gemm_lowp_st(t, 0, 0, M, N, K, 1.0f, W, kn_lowp_row_bytes(t, K), B, N, 1.0f, C[r], N);
            }
        }
        /* run 2 used Bᵀ = a different B; redo it with the same operand for the comparison */
        free(C[2]);
        C[2] = rand_buf(M * N, 23);
        kn_set_threads(3);
        kn_gemm_lowp(t, 0, 0, M, N, K, 1.0f, W, kn_lowp_row_bytes(t, K), B, N, 1.0f, C[2], N);
        KT_CHECKF(!memcmp(C[0], C[1], (size_t)(M * N) * 4) && !memcmp(C[0], C[2], (size_t)(M * N) * 4) &&
                      !memcmp(C[0], C[3], (size_t)(M * N) * 4),
                  "%s%s: results differ across 1/2/3 threads or st", kn_wtype_name(t),
                  ti == KN_WT_COUNT ? " (fallback)" : "");
        for (int r = 0; r < 4; r++)
            free(C[r]);
        free(W), free(B);
    }
    kn_set_threads(prev_threads);
    kn_gemm_lowp_bf16_native(prev_bf);
}

KT_TEST(gemm_lowp_quantise_round_trip) {
    const int64_t M = 7, K = 77; /* K not a multiple of 32: a partial last block */
    float *w = rand_buf(M * K, 31), *y = malloc((size_t)K * 4);
    w[5] = 0.0f;
    for (int64_t k = 32; k < 64; k++) /* an all-zero block */
        w[2 * K + k] = 0.0f;
    for (int t = KN_WT_F16; t < KN_WT_COUNT; t++) {
        void *q = malloc(kn_lowp_nbytes((kn_wtype)t, M, K));
        kn_lowp_quantize((kn_wtype)t, w, M, K, q);
        size_t rb = kn_lowp_row_bytes((kn_wtype)t, K);
        int bad = 0, exact = 0;
        for (int64_t i = 0; i < M; i++) {
            kn_lowp_dequantize_row((kn_wtype)t, (char *)q + i * rb, K, y);
            for (int64_t k = 0; k < K; k++) {
                float x = w[i * K + k], e = fabsf(y[k] - x), bound;
                if (t == KN_WT_Q8) {
                    float amax = 0;
                    for (int64_t j = k / 32 * 32; j < KN_MIN(K, k / 32 * 32 + 32); j++)
                        amax = fmaxf(amax, fabsf(w[i * K + j]));
                    bound = amax / 127.0f * 0.5f * (1 + 1e-5f) + 1e-30f;
                } else {
                    bound = fabsf(x) * (t == KN_WT_F16 ? 1.0f / 2048 : 1.0f / 256) + 1e-30f;
                }
                bad += !(e <= bound);
                exact += e == 0.0f;
            }
        }
        KT_CHECKF(bad == 0, "%s: %d weights beyond the round-trip bound", kn_wtype_name((kn_wtype)t), bad);
        KT_CHECKF(exact < M * K, "%s: every weight survived exactly (no rounding happened?)", kn_wtype_name((kn_wtype)t));
        free(q);
    }
    KT_CHECK(kn_lowp_row_bytes(KN_WT_Q8, 77) == 3 * sizeof(kn_q8_block));
    KT_CHECK(sizeof(kn_q8_block) == 36);
    free(w), free(y);
}

/* A lowp weight tensor over q with the logical shape of w (dtype per format). */
static kn_tensor lowp_tensor(kn_wtype t, const kn_tensor *w, void *q) {
    static const kn_dtype dt[] = {KN_F32, KN_F16, KN_BF16, KN_U8};
    return kn_tensor_view(dt[t], w->ndim, w->shape, q);
}

/* Replaces the f32 weight values by their dequantised ones (the exact values the lowp path uses). */
static void dequant_in_place(kn_wtype t, float *w, int64_t rows, int64_t K, void *q) {
    size_t rb = kn_lowp_row_bytes(t, K);
    kn_lowp_quantize(t, w, rows, K, q);
    for (int64_t i = 0; i < rows; i++)
        kn_lowp_dequantize_row(t, (char *)q + i * rb, K, w + i * K);
}

KT_TEST(linear_conv_lowp_forward_match_f32_ops) {
    kn_arena *A = kn_arena_new(64 << 20);
    for (int t = KN_WT_F16; t < KN_WT_COUNT; t++) {
        /* linear: x (3, 37, 45), w (70, 45) */
        int64_t xs[3] = {3, 37, 45}, ws[2] = {70, 45}, bs[1] = {70};
        kn_tensor x = kn_tensor_view(KN_F32, 3, xs, rand_buf(3 * 37 * 45, 41));
        kn_tensor w = kn_tensor_view(KN_F32, 2, ws, rand_buf(70 * 45, 42));
        kn_tensor b = kn_tensor_view(KN_F32, 1, bs, rand_buf(70, 43));
        void *q = malloc(kn_lowp_nbytes((kn_wtype)t, 70, 45));
        dequant_in_place((kn_wtype)t, w.data, 70, 45, q);
        if (t == KN_WT_BF16) /* the bf16 path rounds x: compare against the rounded x */
            for (int64_t i = 0; i < kn_tensor_numel(&x); i++)
                ((float *)x.data)[i] = kn_bf16_to_f32(kn_f32_to_bf16(((float *)x.data)[i]));
        kn_tensor wq = lowp_tensor((kn_wtype)t, &w, q), y1 = {0}, y2 = {0};
        KT_OK(kn_linear(A, &x, &wq, &b, &y1));
        KT_OK(kn_linear(A, &x, &w, &b, &y2));
        double e = kt_max_abs_diff(y1.data, y2.data, kn_tensor_numel(&y2));
        KT_CHECKF(e < 1e-5 * (1 + kt_max_abs(y2.data, kn_tensor_numel(&y2))), "linear %s: max diff %g",
                  kn_wtype_name((kn_wtype)t), e);
        /* backward refuses a lowp weight with one line */
        kn_tensor dx = {0};
        KT_OK(kn_tensor_zeros(A, &dx, KN_F32, 3, xs));
        kn_status st = kn_linear_backward(&x, &wq, &y1, &dx, NULL, NULL);
        KT_CHECKF(st != KN_OK && strstr(kn_last_error(), "inference only"), "linear_backward: %s", kn_last_error());
        free(x.data), free(w.data), free(b.data), free(q);

        /* conv2d: x (2, 6, 9, 11), w (10, 3, 3, 3) groups 2, stride 2, asym pad */
        int64_t cxs[4] = {2, 6, 9, 11}, cws[4] = {10, 3, 3, 3}, cbs[1] = {10};
        kn_tensor cx = kn_tensor_view(KN_F32, 4, cxs, rand_buf(2 * 6 * 9 * 11, 44));
        kn_tensor cw = kn_tensor_view(KN_F32, 4, cws, rand_buf(10 * 27, 45));
        kn_tensor cb = kn_tensor_view(KN_F32, 1, cbs, rand_buf(10, 46));
        void *cq = malloc(kn_lowp_nbytes((kn_wtype)t, 10, 27));
        dequant_in_place((kn_wtype)t, cw.data, 10, 27, cq);
        if (t == KN_WT_BF16)
            for (int64_t i = 0; i < kn_tensor_numel(&cx); i++)
                ((float *)cx.data)[i] = kn_bf16_to_f32(kn_f32_to_bf16(((float *)cx.data)[i]));
        kn_conv2d_params p = {2, 2, 1, 0, 1, 2, 2};
        kn_tensor cwq = lowp_tensor((kn_wtype)t, &cw, cq), z1 = {0}, z2 = {0};
        KT_OK(kn_conv2d(A, &cx, &cwq, &cb, p, &z1));
        KT_OK(kn_conv2d(A, &cx, &cw, &cb, p, &z2));
        e = kt_max_abs_diff(z1.data, z2.data, kn_tensor_numel(&z2));
        KT_CHECKF(e < 1e-5 * (1 + kt_max_abs(z2.data, kn_tensor_numel(&z2))), "conv2d %s: max diff %g",
                  kn_wtype_name((kn_wtype)t), e);
        kn_tensor cdx = {0};
        KT_OK(kn_tensor_zeros(A, &cdx, KN_F32, 4, cxs));
        st = kn_conv2d_backward(&cx, &cwq, &z1, p, &cdx, NULL, NULL);
        KT_CHECKF(st != KN_OK && strstr(kn_last_error(), "inference only"), "conv2d_backward: %s", kn_last_error());

        /* temporal conv: x (2*4, 6, 3, 5) T = 4, w (7, 6, 3, 1, 1) */
        int64_t txs[4] = {8, 6, 3, 5}, tws[5] = {7, 6, 3, 1, 1};
        kn_tensor tx = kn_tensor_view(KN_F32, 4, txs, rand_buf(8 * 6 * 15, 47));
        kn_tensor tw = kn_tensor_view(KN_F32, 5, tws, rand_buf(7 * 18, 48));
        void *tq = malloc(kn_lowp_nbytes((kn_wtype)t, 7, 18));
        dequant_in_place((kn_wtype)t, tw.data, 7, 18, tq);
        if (t == KN_WT_BF16)
            for (int64_t i = 0; i < kn_tensor_numel(&tx); i++)
                ((float *)tx.data)[i] = kn_bf16_to_f32(kn_f32_to_bf16(((float *)tx.data)[i]));
        kn_tensor twq = lowp_tensor((kn_wtype)t, &tw, tq), u1 = {0}, u2 = {0};
        KT_OK(kn_conv_temporal(A, &tx, 4, &twq, NULL, 1, 1, &u1));
        KT_OK(kn_conv_temporal(A, &tx, 4, &tw, NULL, 1, 1, &u2));
        e = kt_max_abs_diff(u1.data, u2.data, kn_tensor_numel(&u2));
        KT_CHECKF(e < 1e-5 * (1 + kt_max_abs(u2.data, kn_tensor_numel(&u2))), "conv_temporal %s: max diff %g",
                  kn_wtype_name((kn_wtype)t), e);
        free(cx.data), free(cw.data), free(cb.data), free(cq), free(tx.data), free(tw.data), free(tq);
        kn_arena_reset(A, 0);
    }
    kn_arena_free(A);
}

/* max and mean |a - b| of two F32 tensors of the same size; returns 0 when they do not fit. */
static int err_stats(const kn_tensor *a, const kn_tensor *b, double *mx, double *mean, double *ref_max) {
    int64_t n = kn_tensor_numel(a);
    if (a->dtype != KN_F32 || b->dtype != KN_F32 || n != kn_tensor_numel(b) || n == 0)
        return 0;
    double s = 0;
    *mx = 0, *ref_max = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)((float *)a->data)[i] - ((float *)b->data)[i]);
        s += d;
        *mx = d > *mx || isnan(d) ? d : *mx;
        *ref_max = fmax(*ref_max, fabs((double)((float *)b->data)[i]));
    }
    *mean = s / (double)n;
    return 1;
}

/* `kinema forward --weights-type T` on the fixture UNet: runs, converts the weights, and its
 * output stays near the f32 run's (max error bounds per type; nonzero for the lossy types). */
KT_TEST(cli_forward_weights_type_unet) {
    char out[4096], in[700], o[700], ref[700];
    const char *fx = kt_fixtures();
    snprintf(in, sizeof in, "%s/diffusers/unet3d/io_case0.safetensors", fx);
    snprintf(ref, sizeof ref, "%s/f32.safetensors", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/unet3d -c unet -i %s -o %s --weights-type f32",
                    kt_bin(), fx, in, ref);
    KT_CHECKF(rc == 0, "%s", out);
    /* Bounds on max |err| relative to max |out|, about 2.5x what the fixture gives (f16 0.2%,
     * bf16 1.8%, q8 4%): rounding a weight costs ~2^-12 (f16), ~2^-9 (bf16, activations too) and
     * ~1/254 of its block's range (q8), and this tiny random-weight net (8 groups of 2..4 channels)
     * amplifies that about tenfold. The mean error must be well below the max. */
    static const char *types[] = {"f16", "bf16", "q8"};
    static const double max_rel[] = {5e-3, 4.5e-2, 1e-1}, min_abs[] = {1e-7, 1e-5, 1e-5};
    for (int t = 0; t < 3; t++) {
        snprintf(o, sizeof o, "%s/%s.safetensors", kt_tmpdir(), types[t]);
        rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/unet3d -c unet -i %s -o %s --weights-type %s",
                    kt_bin(), fx, in, o, types[t]);
        KT_CHECKF(rc == 0 && strstr(out, "tensors converted"), "%s: %s", types[t], out);
        kn_safetensors *a = kn_st_open(o), *b = kn_st_open(ref);
        KT_CHECKF(a && b, "%s", kn_last_error());
        if (!a || !b) {
            if (a) kn_st_close(a);
            if (b) kn_st_close(b);
            continue;
        }
        kn_tensor ta, tb;
        KT_OK(kn_st_get(a, "out.sample", &ta));
        KT_OK(kn_st_get(b, "out.sample", &tb));
        double mx = 0, mean = 0, rmax = 0;
        KT_CHECKF(err_stats(&ta, &tb, &mx, &mean, &rmax), "%s: outputs do not match in size", types[t]);
        printf("    weights %-4s: max |err| %.3g, mean |err| %.3g (max |out| %.3g)\n", types[t], mx, mean, rmax);
        KT_CHECKF(mx <= max_rel[t] * rmax && mx >= min_abs[t], "%s: max |err| %g vs max |out| %g (bound %g x)",
                  types[t], mx, rmax, max_rel[t]);
        KT_CHECKF(mean <= 0.25 * mx && mean > 0, "%s: mean |err| %g vs max %g", types[t], mean, mx);
        kn_st_close(a);
        kn_st_close(b);
    }
    rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/unet3d -c unet -i %s -o %s --weights-type int4", kt_bin(),
                fx, in, o);
    KT_CHECKF(rc != 0 && strstr(out, "not one of f32, f16, bf16, q8") && !strchr(strchr(out, '\n') ? strchr(out, '\n') + 1 : "", '\n'),
              "bad --weights-type: %s", out);
}

/* kn_params_to_lowp converts exactly the matrix / conv weights and keeps their values. */
KT_TEST(params_to_lowp_selects_matrix_weights) {
    kn_params P = {0};
    int64_t s2[2] = {8, 40}, s4[4] = {6, 4, 3, 3}, s1[1] = {8}, se[2] = {50, 8};
    kn_param_decl(&P, 2, s2, "blocks.0.attn.to_q.weight");
    kn_param_decl(&P, 4, s4, "blocks.0.conv1.weight");
    kn_param_decl(&P, 1, s1, "blocks.0.conv1.bias");
    kn_param_decl(&P, 1, s1, "blocks.0.norm1.weight");
    kn_param_decl(&P, 2, se, "text.token_embedding.weight");
    kn_param_decl(&P, 2, s2, "time_embedding.linear_1.weight");
    kn_param_decl(&P, 2, s2, "x.proj.weight_extra");
    KT_OK(kn_params_alloc(&P));
    kn_params_init_default(&P, 5);
    float ref[8 * 40], deq[40];
    memcpy(ref, P.items[0]->var.v.data, sizeof ref);
    void *store = NULL;
    int n = 0;
    size_t bytes = 0;
    KT_OK(kn_params_to_lowp(&P, KN_WT_Q8, &store, &n, &bytes));
    static const kn_dtype want[] = {KN_U8, KN_U8, KN_F32, KN_F32, KN_F32, KN_U8, KN_F32};
    for (int i = 0; i < P.n; i++)
        KT_CHECKF(P.items[i]->var.v.dtype == want[i], "%s: dtype %s, want %s", P.items[i]->name,
                  kn_dtype_name(P.items[i]->var.v.dtype), kn_dtype_name(want[i]));
    KT_CHECKF(n == 3 && store && bytes >= 2 * kn_lowp_nbytes(KN_WT_Q8, 8, 40), "n %d bytes %zu", n, bytes);
    KT_CHECK(P.items[1]->var.v.shape[3] == 3 && P.items[1]->var.v.ndim == 4); /* shape kept */
    double e = 0;
    for (int r = 0; r < 8; r++) {
        kn_lowp_dequantize_row(KN_WT_Q8, (char *)P.items[0]->var.v.data + r * kn_lowp_row_bytes(KN_WT_Q8, 40), 40, deq);
        for (int k = 0; k < 40; k++)
            e = fmax(e, fabs(deq[k] - ref[r * 40 + k]));
    }
    KT_CHECKF(e > 0 && e < 0.05, "q8 round trip of to_q: max err %g", e);
    void *none = (void *)1;
    KT_OK(kn_params_to_lowp(&P, KN_WT_F32, &none, NULL, NULL));
    KT_CHECK(none == NULL);
    KT_CHECK(kn_params_to_lowp(&P, (kn_wtype)9, &none, NULL, NULL) == KN_ERR_ARG);
    kn_params_free(&P);
    kn_aligned_free(store);
}
