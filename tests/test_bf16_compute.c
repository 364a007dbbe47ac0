/* test_bf16_compute.c — mixed-precision (bf16) compute for training (ops/gemm_lowp.h):
 *   1. kn_gemm_bf16 against its naive reference (bf16-rounded inputs, double sums) on odd shapes,
 *      every trans_a / trans_b, alpha / beta, native vdpbf16ps and the f32 fallback, threaded and
 *      single-threaded; and against the f32 GEMM (the rounding really happens, within bf16 error);
 *   2. bitwise identity across 1/2/3 threads and between kn_gemm_bf16 and kn_gemm_bf16_st;
 *   3. the ops in bf16 mode (linear, matmul, conv2d, temporal conv, conv3d; forward and backward)
 *      equal the f32 ops on bf16-rounded operands (to f32 summation error), and are within bf16
 *      error of the f32 ops; with the switch off every op is bitwise what it was;
 *   4. a tiny UNet3D: gradients in bf16 mode vs f32 (relative ~1e-2), vs a directional finite
 *      difference of the bf16 forward, bitwise across threads in bf16 mode;
 *   5. 30 AdamW steps of the tiny UNet3D in bf16 mode: the loss falls and stays within a few % of
 *      the f32 run; f32 vs bf16 step times, interleaved. */
#include "kt.h"
#include "ops/gemm_lowp.h"
#include "ops/ops.h"
#include "models/unet3d.h"
#include "train/optim.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *rand_buf(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    kn_randn_fill(p, n, seed, 0);
    return p;
}

static float bf16r(float x) { return kn_bf16_to_f32(kn_f32_to_bf16(x)); }

static float *rounded_copy(const float *x, int64_t n) {
    float *y = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        y[i] = bf16r(x[i]);
    return y;
}

/* max |a - b| / max(max |b|, tiny) */
static double rel_err(const float *a, const float *b, int64_t n) {
    double m = kt_max_abs(b, n);
    return kt_max_abs_diff(a, b, n) / (m > 1e-30 ? m : 1e-30);
}

/* ------------------------------------------------------------ 1. GEMM vs reference */

typedef struct { double vs_ref, vs_f32; } gemm_errs;

/* One case: C = alpha op(A) op(B) + beta C through kn_gemm_bf16(_st), against kn_gemm_bf16_ref and
 * kn_gemm_ref (unrounded). Errors: max |diff| / (1 + |ref|) against the reference, max |diff| / max |C|
 * against the f32 GEMM. */
static gemm_errs bf16_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, int st) {
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
    float *A = rand_buf(na, 21), *B = rand_buf(nb, 22), *C = rand_buf(nc, 23);
    float *R = malloc((size_t)(nc > 0 ? nc : 1) * 4), *F = malloc((size_t)(nc > 0 ? nc : 1) * 4);
    memcpy(R, C, (size_t)nc * 4);
    memcpy(F, C, (size_t)nc * 4);
    if (st)
        kn_gemm_bf16_st(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        kn_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    kn_gemm_bf16_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    kn_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, F, ldc);
    gemm_errs e = {0, 0};
    double fmax_ = 0;
    for (int64_t i = 0; i < nc; i++) {
        double d = fabs((double)C[i] - R[i]) / (1.0 + fabs((double)R[i]));
        double f = fabs((double)C[i] - F[i]);
        if (!(d <= e.vs_ref))
            e.vs_ref = isnan(d) ? INFINITY : d;
        if (!(f <= e.vs_f32))
            e.vs_f32 = isnan(f) ? INFINITY : f;
        fmax_ = fmax(fmax_, fabs((double)F[i]));
    }
    e.vs_f32 /= fmax_ > 0 ? fmax_ : 1.0;
    free(A), free(B), free(C), free(R), free(F);
    return e;
}

static void bf16_sweep(void) {
    static const int64_t sizes[][3] = {{1, 1, 1},     {3, 5, 7},      {14, 32, 32},  {15, 33, 31},
                                       {13, 31, 45},  {29, 65, 257},  {113, 257, 397}, {7, 300, 33},
                                       {250, 3, 64},  {1, 129, 1000}, {20, 1100, 70}, {5, 5, 0}};
    static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -2.0f}};
    double worst = 0, worst_f32 = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int st = 0; st < 2; st++) {
                    const float *p = ab[(s + (size_t)ta * 2 + (size_t)tb) % 3];
                    int64_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
                    gemm_errs e = bf16_case(ta, tb, M, N, K, p[0], p[1], st);
                    /* f32 sums of exact bf16 products: a few ulps of sqrt(K)-sized sums */
                    KT_CHECKF(e.vs_ref <= 2e-5, "bf16 gemm %s ta %d tb %d (%lld,%lld,%lld) st %d: err %.3g vs reference",
                              kn_gemm_lowp_bf16_native(-1) ? "native" : "fallback", ta, tb, (long long)M,
                              (long long)N, (long long)K, st, e.vs_ref);
                    /* inputs rounded to 8 mantissa bits: ~2^-9 relative per product */
                    KT_CHECKF(e.vs_f32 <= 1e-2, "bf16 gemm (%lld,%lld,%lld): err %.3g vs the f32 gemm", (long long)M,
                              (long long)N, (long long)K, e.vs_f32);
                    worst = fmax(worst, e.vs_ref);
                    worst_f32 = fmax(worst_f32, e.vs_f32);
                }
    /* the rounding happens: the f32 GEMM is clearly further away than the reference */
    KT_CHECKF(worst_f32 > 1e-3, "bf16 gemm is within %.3g of the f32 gemm: operands not rounded?", worst_f32);
    printf("    bf16 gemm (%s): max err %.2e vs bf16 reference, %.2e vs f32 gemm\n",
           kn_gemm_lowp_bf16_native(-1) ? "vdpbf16ps" : "f32 fallback", worst, worst_f32);
}

KT_TEST(bf16_gemm_matches_reference) {
    int prev = kn_gemm_lowp_bf16_native(-1);
    KT_CHECKF(prev == 1, "this CPU has no AVX512-BF16: only the fallback is tested");
    bf16_sweep();
    kn_gemm_lowp_bf16_native(0);
    bf16_sweep();
    kn_gemm_lowp_bf16_native(prev);
}

/* Exact products: with small integers every bf16 product and sum is exact, so fast == reference
 * bit for bit (checks the pairing of k and k+1 and the odd-K tail exactly). */
KT_TEST(bf16_gemm_exact_on_small_integers) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t M = 17, N = 35, K = 77;
            float *A = malloc(M * K * 4), *B = malloc(K * N * 4), *C = malloc(M * N * 4), *R = malloc(M * N * 4);
            for (int64_t i = 0; i < M * K; i++)
                A[i] = (float)((i * 7 + ta) % 9) - 4.0f;
            for (int64_t i = 0; i < K * N; i++)
                B[i] = (float)((i * 5 + tb) % 11) - 5.0f;
            kn_gemm_bf16(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
            kn_gemm_ref(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, R, N);
            KT_CHECKF(!memcmp(C, R, (size_t)(M * N) * 4), "ta %d tb %d: integer products differ (max %.3g)", ta, tb,
                      kt_max_abs_diff(C, R, M * N));
            free(A), free(B), free(C), free(R);
        }
}

/* ------------------------------------------------------------ 2. threads */

KT_TEST(bf16_gemm_bitwise_across_threads) {
    int prev = kn_get_threads();
    int64_t M = 230, N = 1100, K = 450;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = rand_buf(M * K, 31), *B = rand_buf(K * N, 32), *ref = malloc(M * N * 4), *C = malloc(M * N * 4);
            kn_set_threads(1);
            kn_gemm_bf16(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, ref, N);
            for (int th = 2; th <= 3; th++) {
                kn_set_threads(th);
                kn_gemm_bf16(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
                KT_CHECKF(!memcmp(C, ref, (size_t)(M * N) * 4), "ta %d tb %d: %d threads differ from 1", ta, tb, th);
            }
            kn_gemm_bf16_st(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
            KT_CHECKF(!memcmp(C, ref, (size_t)(M * N) * 4), "ta %d tb %d: _st differs from the threaded gemm", ta, tb);
            free(A), free(B), free(C), free(ref);
        }
    kn_set_threads(prev);
}

/* ------------------------------------------------------------ 3. the ops in bf16 mode
 * Each op case runs forward (y) and backward (dx, dw, db from dy, gradients zeroed first) on raw
 * buffers of fixed shapes. */
typedef void (*op_fn)(const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
                      float *dw, float *db);
typedef struct {
    const char *name;
    op_fn fn;
    int64_t nx, nw, nb, ny;
} op_case;

#define T_(nd, ...) kn_tensor_view(KN_F32, nd, (int64_t[]){__VA_ARGS__}, NULL)
static kn_tensor on(kn_tensor t, const float *p) {
    t.data = (void *)p;
    return t;
}

static void op_linear(const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
                      float *dw, float *db) {
    kn_tensor X = on(T_(3, 6, 5, 37), x), W = on(T_(2, 29, 37), w), B = on(T_(1, 29), b);
    kn_tensor Y = on(T_(3, 6, 5, 29), y), DY = on(T_(3, 6, 5, 29), dy);
    kn_tensor DX = on(X, dx), DW = on(W, dw), DB = on(B, db);
    KT_OK(kn_linear(NULL, &X, &W, &B, &Y));
    KT_OK(kn_linear_backward(&X, &W, &DY, &DX, &DW, &DB));
}

static void op_matmul(const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
                      float *dw, float *db) {
    KN_UNUSED(b), KN_UNUSED(db);
    kn_tensor X = on(T_(3, 3, 13, 40), x), W = on(T_(3, 3, 40, 21), w);
    kn_tensor Y = on(T_(3, 3, 13, 21), y), DY = on(T_(3, 3, 13, 21), dy);
    kn_tensor DX = on(X, dx), DW = on(W, dw);
    KT_OK(kn_matmul(NULL, &X, &W, &Y));
    KT_OK(kn_matmul_backward(&X, &W, &DY, &DX, &DW));
}

static void op_conv2d(const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
                      float *dw, float *db) {
    kn_conv2d_params p = {2, 2, 1, 0, 1, 2, 2}; /* stride 2, pads (1,0,1,2), 2 groups */
    kn_tensor X = on(T_(4, 2, 6, 9, 11), x), W = on(T_(4, 8, 3, 3, 3), w), B = on(T_(1, 8), b);
    kn_tensor Y = on(T_(4, 2, 8, 4, 6), y), DY = on(T_(4, 2, 8, 4, 6), dy);
    kn_tensor DX = on(X, dx), DW = on(W, dw), DB = on(B, db);
    KT_OK(kn_conv2d(NULL, &X, &W, &B, p, &Y));
    KT_OK(kn_conv2d_backward(&X, &W, &DY, p, &DX, &DW, &DB));
}

static void op_temporal(const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
                        float *dw, float *db) {
    kn_tensor X = on(T_(4, 10, 6, 4, 3), x), W = on(T_(5, 7, 6, 3, 1, 1), w), B = on(T_(1, 7), b);
    kn_tensor Y = on(T_(4, 10, 7, 4, 3), y), DY = on(T_(4, 10, 7, 4, 3), dy);
    kn_tensor DX = on(X, dx), DW = on(W, dw), DB = on(B, db);
    KT_OK(kn_conv_temporal(NULL, &X, 5, &W, &B, 1, 1, &Y));
    KT_OK(kn_conv_temporal_backward(&X, 5, &W, &DY, 1, 1, &DX, &DW, &DB));
}

static void op_conv3d(const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
                      float *dw, float *db) {
    kn_conv3d_params p = {{1, 2, 1}, {1, 1, 1}};
    kn_tensor X = on(T_(5, 2, 4, 5, 6, 7), x), W = on(T_(5, 5, 4, 3, 3, 3), w), B = on(T_(1, 5), b);
    kn_tensor Y = on(T_(5, 2, 5, 5, 3, 7), y), DY = on(T_(5, 2, 5, 5, 3, 7), dy);
    kn_tensor DX = on(X, dx), DW = on(W, dw), DB = on(B, db);
    KT_OK(kn_conv3d(NULL, &X, &W, &B, p, &Y));
    KT_OK(kn_conv3d_backward(&X, &W, &DY, p, &DX, &DW, &DB));
}

static const op_case op_cases[] = {
    {"linear", op_linear, 6 * 5 * 37, 29 * 37, 29, 6 * 5 * 29},
    {"matmul", op_matmul, 3 * 13 * 40, 3 * 40 * 21, 0, 3 * 13 * 21},
    {"conv2d", op_conv2d, 2 * 6 * 9 * 11, 8 * 3 * 9, 8, 2 * 8 * 4 * 6},
    {"conv_temporal", op_temporal, 10 * 6 * 12, 7 * 6 * 3, 7, 10 * 7 * 12},
    {"conv3d", op_conv3d, 2 * 4 * 5 * 6 * 7, 5 * 4 * 27, 5, 2 * 5 * 5 * 3 * 7},
};

typedef struct { float *y, *dx, *dw, *db; } op_out;

static op_out op_run(const op_case *c, const float *x, const float *w, const float *b, const float *dy) {
    op_out o;
    o.y = calloc((size_t)c->ny, 4);
    o.dx = calloc((size_t)c->nx, 4);
    o.dw = calloc((size_t)c->nw, 4);
    o.db = calloc((size_t)(c->nb ? c->nb : 1), 4);
    c->fn(x, w, b, dy, o.y, o.dx, o.dw, o.db);
    return o;
}

static void op_free(op_out *o) { free(o->y), free(o->dx), free(o->dw), free(o->db); }

static int same(const float *a, const float *b, int64_t n) { return !memcmp(a, b, (size_t)n * sizeof(float)); }

KT_TEST(bf16_ops_forward_backward) {
    KT_CHECK(kn_compute_bf16() == 0); /* the default */
    for (size_t i = 0; i < sizeof op_cases / sizeof op_cases[0]; i++) {
        const op_case *c = &op_cases[i];
        float *x = rand_buf(c->nx, 41), *w = rand_buf(c->nw, 42), *b = rand_buf(c->nb, 43), *dy = rand_buf(c->ny, 44);
        float *xr = rounded_copy(x, c->nx), *wr = rounded_copy(w, c->nw), *dyr = rounded_copy(dy, c->ny);
        op_out f = op_run(c, x, w, b, dy);      /* f32 */
        op_out r = op_run(c, xr, wr, b, dyr);   /* f32 on bf16-rounded operands */
        int prev = kn_set_compute_bf16(1);
        KT_CHECK(prev == 0 && kn_compute_bf16() == 1);
        op_out h = op_run(c, x, w, b, dy);      /* bf16 mode */
        kn_set_compute_bf16(prev);
        op_out f2 = op_run(c, x, w, b, dy);     /* f32 again: bitwise the first run */
        double ey = rel_err(h.y, r.y, c->ny), edx = rel_err(h.dx, r.dx, c->nx), edw = rel_err(h.dw, r.dw, c->nw);
        KT_CHECKF(ey <= 1e-5 && edx <= 1e-5 && edw <= 1e-5,
                  "%s: bf16 mode vs f32 on rounded operands: y %.3g dx %.3g dw %.3g", c->name, ey, edx, edw);
        double fy = rel_err(h.y, f.y, c->ny), fdx = rel_err(h.dx, f.dx, c->nx), fdw = rel_err(h.dw, f.dw, c->nw);
        KT_CHECKF(fy <= 1e-2 && fdx <= 1e-2 && fdw <= 1e-2, "%s: bf16 vs f32: y %.3g dx %.3g dw %.3g", c->name, fy,
                  fdx, fdw);
        KT_CHECKF(fy > 1e-5 && fdx > 1e-5 && fdw > 1e-5, "%s: bf16 mode looks like f32: y %.3g dx %.3g dw %.3g",
                  c->name, fy, fdx, fdw);
        if (c->nb) /* the bias gradient stays f32 */
            KT_CHECKF(same(h.db, f.db, c->nb), "%s: db differs in bf16 mode", c->name);
        KT_CHECKF(same(f.y, f2.y, c->ny) && same(f.dx, f2.dx, c->nx) && same(f.dw, f2.dw, c->nw) &&
                      same(f.db, f2.db, c->nb),
                  "%s: f32 mode is not bitwise the same after a bf16 run", c->name);
        printf("    %-14s bf16 vs f32: y %.2e dx %.2e dw %.2e; vs rounded-operand f32: %.1e %.1e %.1e\n", c->name,
               fy, fdx, fdw, ey, edx, edw);
        op_free(&f), op_free(&r), op_free(&h), op_free(&f2);
        free(x), free(w), free(b), free(dy), free(xr), free(wr), free(dyr);
    }
}

/* The default path calls exactly the f32 GEMM: kn_linear == kn_gemm bit for bit. */
KT_TEST(bf16_default_mode_is_f32_gemm) {
    int64_t R = 30, in = 70, out = 50;
    float *x = rand_buf(R * in, 51), *w = rand_buf(out * in, 52), *y = malloc(R * out * 4), *g = malloc(R * out * 4);
    kn_tensor X = on(T_(2, 30, 70), x), W = on(T_(2, 50, 70), w), Y = on(T_(2, 30, 50), y);
    KT_OK(kn_linear(NULL, &X, &W, NULL, &Y));
    kn_gemm(0, 1, R, out, in, 1.0f, x, in, w, in, 0.0f, g, out);
    KT_CHECK(same(y, g, R * out));
    kn_set_compute_bf16(1);
    KT_OK(kn_linear(NULL, &X, &W, NULL, &Y));
    kn_gemm_bf16(0, 1, R, out, in, 1.0f, x, in, w, in, 0.0f, g, out);
    kn_set_compute_bf16(0);
    KT_CHECK(same(y, g, R * out));
    free(x), free(w), free(y), free(g);
}

/* ------------------------------------------------------------ 4. a tiny UNet3D */

static kn_unet3d_config tiny_cfg(void) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 4, 4, 8);
    return c;
}

/* A model, a fixed batch (sample (B,4,T,H,W), text (B,5,8), timesteps) and loss weights R. */
typedef struct {
    kn_unet3d *u;
    kn_arena *A;
    kn_tape *tape;
    kn_tensor sample, text, target;
    float ts[2];
    float *R; /* NULL: the loss is the MSE against target; else sum(out * R) */
} unet_case;

static int unet_case_init(unet_case *c, kn_unet3d_config cfg, int64_t B, int64_t T, int64_t H, int64_t W,
                          uint64_t seed, int mse, size_t arena_mb) {
    memset(c, 0, sizeof *c);
    c->u = kn_unet3d_new(&cfg);
    KT_CHECKF(c->u != NULL, "%s", kn_last_error());
    if (!c->u)
        return 0;
    kn_params_init_default(&c->u->P, seed);
    /* biases and norm scales away from 0 / 1 so that every path carries a gradient */
    for (int i = 0; i < c->u->P.n; i++) {
        kn_var *v = &c->u->P.items[i]->var;
        if (v->v.ndim == 1) {
            float *d = v->v.data;
            int64_t n = kn_tensor_numel(&v->v);
            for (int64_t j = 0; j < n; j++)
                d[j] += 0.1f * (float)((j * 37 + i) % 7 - 3) / 3.0f;
        }
    }
    KT_OK(kn_params_alloc_grads(&c->u->P));
    c->A = kn_arena_new(arena_mb << 20);
    c->tape = kn_tape_new();
    int64_t ss[5] = {B, cfg.in_channels, T, H, W}, ts[3] = {B, 5, cfg.cross_attention_dim};
    KT_OK(kn_tensor_alloc(NULL, &c->sample, KN_F32, 5, ss));
    KT_OK(kn_tensor_alloc(NULL, &c->text, KN_F32, 3, ts));
    KT_OK(kn_tensor_alloc(NULL, &c->target, KN_F32, 5, ss));
    kn_randn_fill(c->sample.data, kn_tensor_numel(&c->sample), seed + 1, 0);
    kn_randn_fill(c->text.data, kn_tensor_numel(&c->text), seed + 2, 0);
    kn_randn_fill(c->target.data, kn_tensor_numel(&c->target), seed + 3, 0);
    c->ts[0] = 981.0f;
    c->ts[1] = 37.0f;
    if (!mse)
        c->R = rand_buf(kn_tensor_numel(&c->sample) * cfg.out_channels / cfg.in_channels, seed + 4);
    return 1;
}

static void unet_case_free(unet_case *c) {
    kn_unet3d_free(c->u);
    kn_arena_free(c->A);
    kn_tape_free(c->tape);
    kn_tensor_free(&c->sample);
    kn_tensor_free(&c->text);
    kn_tensor_free(&c->target);
    free(c->R);
}

/* Forward (and with grad: zeroed parameter gradients, then backward into P.grad_block). */
static double unet_loss(unet_case *c, int with_grad) {
    kn_arena_reset(c->A, 0);
    kn_tape_clear(c->tape);
    kn_ctx ctx;
    kn_ctx_init(&ctx, c->A, with_grad ? c->tape : NULL);
    kn_var *x = kn_var_wrap(&ctx, &c->sample), *t = kn_var_wrap(&ctx, &c->text);
    kn_var *y = kn_unet3d_forward(&ctx, c->u, x, c->ts, t, NULL, NULL);
    if (kn_ctx_status(&ctx) != KN_OK || !y) {
        kt_fail(__FILE__, __LINE__, "unet3d forward: %s", kn_last_error());
        return NAN;
    }
    int64_t n = kn_tensor_numel(&y->v);
    const float *o = y->v.data, *tg = c->target.data;
    float *dy = NULL;
    if (with_grad) {
        if (kn_tensor_alloc(c->A, &y->g, KN_F32, y->v.ndim, y->v.shape) != KN_OK) {
            kt_fail(__FILE__, __LINE__, "%s", kn_last_error());
            return NAN;
        }
        dy = y->g.data;
    }
    double L = 0;
    for (int64_t i = 0; i < n; i++) {
        if (c->R) {
            L += (double)o[i] * c->R[i];
            if (dy)
                dy[i] = c->R[i];
        } else {
            double d = (double)o[i] - tg[i];
            L += d * d / (double)n;
            if (dy)
                dy[i] = (float)(2.0 * d / (double)n);
        }
    }
    if (with_grad) {
        kn_params_zero_grads(&c->u->P);
        if (kn_backward(&ctx, y, 0.0f) != KN_OK) {
            kt_fail(__FILE__, __LINE__, "unet3d backward: %s", kn_last_error());
            return NAN;
        }
    }
    return L;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* A small UNet3D (32/64 channels, 4 channels per norm group): the 8/16-channel test model with
 * 2-channel groups is so ill-conditioned that rounding its weights to bf16 alone (f32 compute)
 * moves its gradient by ~5-8%; at 4 channels per group that is ~1%, the scale bf16 is judged at. */
static kn_unet3d_config small_cfg(void) {
    kn_unet3d_config c = tiny_cfg();
    c.block_out_channels[0] = 32;
    c.block_out_channels[1] = 64;
    c.norm_num_groups = 8;
    c.attention_head_dim = 8;
    return c;
}

static double grad_rel_err(const kn_params *P, const float *g, const float *ref, double *worst, const char **wname) {
    size_t np = P->numel;
    double nf = sqrt(dot(ref, ref, np)), e2 = 0;
    for (size_t i = 0; i < np; i++)
        e2 += ((double)g[i] - ref[i]) * ((double)g[i] - ref[i]);
    *worst = 0;
    *wname = "";
    for (int i = 0; i < P->n; i++) {
        kn_var *v = &P->items[i]->var;
        size_t off = (size_t)((float *)v->g.data - P->grad_block), n = (size_t)kn_tensor_numel(&v->v);
        double pn = sqrt(dot(ref + off, ref + off, n)), pe = 0;
        if (pn < 1e-2 * nf) /* tiny gradients: bf16 noise relative to them says little */
            continue;
        for (size_t j = 0; j < n; j++)
            pe += ((double)g[off + j] - ref[off + j]) * ((double)g[off + j] - ref[off + j]);
        if (sqrt(pe) / pn > *worst) {
            *worst = sqrt(pe) / pn;
            *wname = P->items[i]->name;
        }
    }
    return sqrt(e2) / nf;
}

KT_TEST(bf16_unet3d_gradients) {
    unet_case c;
    if (!unet_case_init(&c, small_cfg(), 2, 3, 8, 8, 61, 1, 96))
        return;
    kn_params *P = &c.u->P;
    size_t np = P->numel;
    float *gf = malloc(np * 4), *gh = malloc(np * 4), *gw = malloc(np * 4), *p0 = malloc(np * 4);
    memcpy(p0, P->block, np * 4);
    double Lf = unet_loss(&c, 1);
    memcpy(gf, P->grad_block, np * 4);
    /* calibration: f32 compute with the weights rounded to bf16 */
    for (size_t i = 0; i < np; i++)
        P->block[i] = bf16r(p0[i]);
    unet_loss(&c, 1);
    memcpy(gw, P->grad_block, np * 4);
    memcpy(P->block, p0, np * 4);
    int prev = kn_set_compute_bf16(1);
    double Lh = unet_loss(&c, 1);
    memcpy(gh, P->grad_block, np * 4);
    kn_set_compute_bf16(prev);
    KT_CHECK(isfinite(Lf) && isfinite(Lh));
    KT_CHECKF(fabs(Lh - Lf) <= 1e-3 * fabs(Lf), "loss bf16 %.6g vs f32 %.6g", Lh, Lf);
    double worst, wworst;
    const char *wname, *wwname;
    double rel = grad_rel_err(P, gh, gf, &worst, &wname), relw = grad_rel_err(P, gw, gf, &wworst, &wwname);
    KT_CHECKF(rel <= 3e-2, "bf16 gradient vs f32: relative error %.3g", rel);
    KT_CHECKF(worst <= 8e-2, "bf16 gradient of %s vs f32: relative error %.3g", wname, worst);
    KT_CHECKF(rel <= 3 * relw, "bf16 gradient error %.3g is more than 3x that of bf16-rounded weights %.3g", rel, relw);
    KT_CHECKF(rel > 1e-6, "bf16 gradient equals f32 (%.3g): bf16 mode not in effect", rel);
    /* finite difference of the bf16 forward along d = the f32 gradient, scaled so that the largest
     * step changes the loss by ~5% (bf16 rounding noise of the loss is ~1e-4 of it); Richardson
     * extrapolation of h, h/2 removes the h^2 term */
    double g2 = dot(gf, gf, np), s = 0.05 * Lf / g2, fd[2];
    kn_set_compute_bf16(1);
    for (int k = 0; k < 2; k++) {
        double h = k ? 0.5 * s : s, L2[2];
        for (int sg = 0; sg < 2; sg++) {
            for (size_t i = 0; i < np; i++)
                P->block[i] = p0[i] + (float)(sg ? -h : h) * gf[i];
            L2[sg] = unet_loss(&c, 0);
        }
        fd[k] = (L2[0] - L2[1]) / (2 * h);
    }
    kn_set_compute_bf16(prev);
    memcpy(P->block, p0, np * 4);
    double fdr = (4 * fd[1] - fd[0]) / 3, an = dot(gh, gf, np);
    KT_CHECKF(fabs(fdr - an) <= 3e-2 * fabs(an), "directional derivative along the gradient: bf16 backward %.6g, "
              "finite difference of the bf16 forward %.6g (f32: %.6g)", an, fdr, g2);
    printf("    unet3d 32/64: loss bf16 %.6g f32 %.6g; grad rel err %.2e (worst %.2e %s), bf16-rounded weights "
           "alone %.2e; g.d bf16 %.6g, f32 %.6g, fd of bf16 forward %.6g\n", Lh, Lf, rel, worst, wname, relw, an, g2,
           fdr);
    free(gf), free(gh), free(gw), free(p0);
    unet_case_free(&c);
}

KT_TEST(bf16_unet3d_bitwise_across_threads) {
    unet_case c;
    if (!unet_case_init(&c, tiny_cfg(), 2, 4, 6, 6, 71, 0, 96))
        return;
    int prev_th = kn_get_threads(), prev = kn_set_compute_bf16(1);
    size_t np = c.u->P.numel;
    float *ref = malloc(np * 4);
    double Lref = 0;
    for (int th = 1; th <= 3; th++) {
        kn_set_threads(th);
        double L = unet_loss(&c, 1);
        if (th == 1) {
            Lref = L;
            memcpy(ref, c.u->P.grad_block, np * 4);
            KT_CHECK(isfinite(L) && kt_max_abs(ref, (int64_t)np) > 0);
        } else {
            KT_CHECKF(L == Lref, "threads %d: loss %.9g != %.9g", th, L, Lref);
            KT_CHECKF(same(ref, c.u->P.grad_block, (int64_t)np), "threads %d: bf16 gradients differ (max %.3g)", th,
                      kt_max_abs_diff(ref, c.u->P.grad_block, (int64_t)np));
        }
    }
    kn_set_compute_bf16(prev);
    kn_set_threads(prev_th);
    free(ref);
    unet_case_free(&c);
}

/* ------------------------------------------------------------ 5. training */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Two copies of one model (same init, same batch) trained side by side with AdamW, f32 and bf16
 * steps interleaved (so the machine's load hits both alike); losses[mode][step]. */
#define TRAIN_STEPS 30
static void train_pair(kn_unet3d_config cfg, int64_t B, int64_t T, int64_t H, int64_t W, int steps, size_t arena_mb,
                       double losses[2][TRAIN_STEPS], double med[2]) {
    unet_case c[2];
    kn_adamw opt[2];
    kn_adamw_config oc = kn_adamw_default_config();
    oc.lr = 3e-3;
    double times[2][TRAIN_STEPS];
    for (int m = 0; m < 2; m++) {
        if (!unet_case_init(&c[m], cfg, B, T, H, W, 81, 1, arena_mb))
            return;
        KT_OK(kn_adamw_init(&opt[m], &oc, &c[m].u->P));
    }
    for (int s = 0; s < steps; s++)
        for (int m = 0; m < 2; m++) {
            int prev = kn_set_compute_bf16(m);
            double t0 = now_s();
            losses[m][s] = unet_loss(&c[m], 1);
            KT_OK(kn_adamw_step(&opt[m], -1.0));
            times[m][s] = now_s() - t0;
            kn_set_compute_bf16(prev);
        }
    for (int m = 0; m < 2; m++) {
        qsort(times[m], (size_t)steps, sizeof(double), cmp_d);
        med[m] = times[m][steps / 2];
        kn_adamw_free(&opt[m]);
        unet_case_free(&c[m]);
    }
}

KT_TEST(bf16_unet3d_training_30_steps) {
    double L[2][TRAIN_STEPS], med[2];
    memset(L, 0, sizeof L);
    train_pair(tiny_cfg(), 2, 4, 8, 8, TRAIN_STEPS, 96, L, med);
    int n = TRAIN_STEPS;
    KT_CHECKF(L[0][0] == L[0][0] && fabs(L[1][0] - L[0][0]) <= 1e-3 * L[0][0], "step 0 loss bf16 %.6g vs f32 %.6g",
              L[1][0], L[0][0]);
    for (int m = 0; m < 2; m++) {
        KT_CHECKF(isfinite(L[m][n - 1]) && L[m][n - 1] < 0.7 * L[m][0], "%s: loss %.6g -> %.6g does not fall",
                  m ? "bf16" : "f32", L[m][0], L[m][n - 1]);
        for (int s = 0; s < n; s++) /* the whole curve, not just the end */
            KT_CHECKF(fabs(L[1][s] - L[0][s]) <= 0.03 * L[0][s] + 1e-4, "step %d: bf16 loss %.6g vs f32 %.6g", s,
                      L[1][s], L[0][s]);
    }
    printf("    tiny unet3d (8/16 ch, 2x4x8x8), AdamW lr 3e-3: loss f32 %.5f -> %.5f, bf16 %.5f -> %.5f; median step "
           "f32 %.1f ms, bf16 %.1f ms (interleaved, %d threads)\n", L[0][0], L[0][n - 1], L[1][0], L[1][n - 1],
           1e3 * med[0], 1e3 * med[1], kn_get_threads());
}

/* The speed comparison on a model whose GEMMs matter (32/64 channels, 1x4x16x16): 3 interleaved
 * steps per mode; the losses must still agree. */
KT_TEST(bf16_unet3d_step_time) {
    double L[2][TRAIN_STEPS], med[2];
    memset(L, 0, sizeof L);
    train_pair(small_cfg(), 1, 4, 16, 16, 3, 512, L, med);
    for (int s = 0; s < 3; s++)
        KT_CHECKF(isfinite(L[1][s]) && fabs(L[1][s] - L[0][s]) <= 1e-2 * L[0][s], "step %d: bf16 loss %.6g vs f32 %.6g",
                  s, L[1][s], L[0][s]);
    printf("    unet3d 32/64 ch, 1x4x16x16: median training step f32 %.1f ms, bf16 %.1f ms (x%.2f; interleaved, "
           "%d threads, shared machine)\n", 1e3 * med[0], 1e3 * med[1], med[0] / med[1], kn_get_threads());
}
