/* bench_ops_more.c — the non-GEMM cases of `kinema bench ops`: conv3x3 at U-Net shapes, the
 * temporal conv, attention, group norm. Called from bench_ops.c once per thread count with the
 * FP32 peak and triad bandwidth measured there. */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>

/* From bench_ops.c (there is no bench header). */
typedef struct { double wall, cpu; } bench_t; /* best seconds (wall; CPU / threads) */
bench_t bench_best(void (*fn)(void *), void *ctx, int reps, double min_time);
void bench_report(int json, const char *name, const char *shape, int threads, double work, bench_t t, bench_t peak,
                  int is_bw);
void bench_ops_more(int json, int quick, int threads, bench_t peak_gflops, bench_t peak_gbps);

static kn_tensor heap_tensor(int ndim, const int64_t *shape, uint64_t seed) {
    kn_tensor t = {0};
    if (kn_tensor_alloc(NULL, &t, KN_F32, ndim, shape) == KN_OK)
        kn_randn_fill(t.data, kn_tensor_numel(&t), seed, 0);
    return t;
}

static int all_ok(kn_tensor *const *ts, int n) {
    for (int i = 0; i < n; i++)
        if (!ts[i]->data)
            return 0;
    return 1;
}

static void free_all(kn_tensor *const *ts, int n) {
    for (int i = 0; i < n; i++)
        if (ts[i]->data)
            kn_tensor_free(ts[i]);
}

/* ---------------------------------------------------------------- conv3x3 */

typedef struct { kn_tensor x, w, b, y; kn_status st; } conv_ctx;

static void conv_run(void *p) {
    conv_ctx *c = p;
    c->st = kn_conv2d(NULL, &c->x, &c->w, &c->b, kn_conv2d_params_make(1, 1), &c->y);
}

static void bench_conv3x3(int json, int quick, int th, bench_t peak, int64_t N, int64_t C, int64_t H) {
    int64_t xs[4] = {N, C, H, H}, ws[4] = {C, C, 3, 3}, bs[1] = {C};
    conv_ctx c = {heap_tensor(4, xs, 1), heap_tensor(4, ws, 2), heap_tensor(1, bs, 3), heap_tensor(4, xs, 4), KN_OK};
    kn_tensor *ts[4] = {&c.x, &c.w, &c.b, &c.y};
    char shape[96];
    snprintf(shape, sizeof shape, "N=%lld C=O=%lld %lldx%lld", (long long)N, (long long)C, (long long)H, (long long)H);
    if (all_ok(ts, 4)) {
        bench_t t = bench_best(conv_run, &c, quick ? 1 : 3, quick ? 0.0 : 0.3);
        if (c.st != KN_OK)
            fprintf(stderr, "kinema: bench conv3x3 %s: %s\n", shape, kn_last_error());
        else
            bench_report(json, "conv3x3", shape, th, 2.0 * N * C * C * 9 * H * H, t, peak, 0);
    }
    free_all(ts, 4);
}

/* -------------------------------------------------------- temporal conv */

typedef struct { kn_tensor x, w, b, y; int64_t T; kn_status st; } tconv_ctx;

static void tconv_run(void *p) {
    tconv_ctx *c = p;
    c->st = kn_conv_temporal(NULL, &c->x, c->T, &c->w, &c->b, 1, 1, &c->y);
}

static void bench_tconv(int json, int quick, int th, bench_t peak, int64_t N, int64_t T, int64_t C, int64_t H) {
    int64_t xs[4] = {N * T, C, H, H}, ws[5] = {C, C, 3, 1, 1}, bs[1] = {C};
    tconv_ctx c = {heap_tensor(4, xs, 1), heap_tensor(5, ws, 2), heap_tensor(1, bs, 3), heap_tensor(4, xs, 4), T, KN_OK};
    kn_tensor *ts[4] = {&c.x, &c.w, &c.b, &c.y};
    char shape[96];
    snprintf(shape, sizeof shape, "N=%lld T=%lld C=%lld %lldx%lld k=3", (long long)N, (long long)T, (long long)C,
             (long long)H, (long long)H);
    if (all_ok(ts, 4)) {
        bench_t t = bench_best(tconv_run, &c, quick ? 1 : 3, quick ? 0.0 : 0.3);
        if (c.st != KN_OK)
            fprintf(stderr, "kinema: bench conv_temporal %s: %s\n", shape, kn_last_error());
        else
            bench_report(json, "conv_temporal", shape, th, 2.0 * N * T * C * C * 3 * H * H, t, peak, 0);
    }
    free_all(ts, 4);
}

/* -------------------------------------------------------------- attention */

typedef struct { kn_tensor q, k, v, o; int heads; kn_status st; } attn_ctx;

static void attn_run(void *p) {
    attn_ctx *c = p;
    c->st = kn_attention(NULL, &c->q, &c->k, &c->v, c->heads, 1.0f / sqrtf(64.0f), NULL, &c->o, NULL);
}

/* B sequences of L tokens, `heads` heads of dim 64, self-attention (Lk = Lq = L). */
static void bench_attention(int json, int quick, int th, bench_t peak, int64_t B, int64_t L, int heads) {
    int64_t s[3] = {B, L, heads * 64};
    attn_ctx c = {heap_tensor(3, s, 1), heap_tensor(3, s, 2), heap_tensor(3, s, 3), heap_tensor(3, s, 4), heads, KN_OK};
    kn_tensor *ts[4] = {&c.q, &c.k, &c.v, &c.o};
    char shape[96];
    snprintf(shape, sizeof shape, "B=%lld L=%lld H=%d D=64", (long long)B, (long long)L, heads);
    if (all_ok(ts, 4)) {
        bench_t t = bench_best(attn_run, &c, quick ? 1 : 3, quick ? 0.0 : 0.3);
        if (c.st != KN_OK)
            fprintf(stderr, "kinema: bench attention %s: %s\n", shape, kn_last_error());
        else /* QKᵀ and PV: 2 x 2*L*L*D per head */
            bench_report(json, "attention", shape, th, 4.0 * B * heads * L * L * 64, t, peak, 0);
    }
    free_all(ts, 4);
}

/* ------------------------------------------------------------- group norm */

typedef struct { kn_tensor x, g, b, y; kn_status st; } gn_ctx;

static void gn_run(void *p) {
    gn_ctx *c = p;
    c->st = kn_group_norm(NULL, &c->x, 32, 1, 1e-5f, &c->g, &c->b, &c->y, NULL, NULL);
}

static void bench_group_norm(int json, int quick, int th, bench_t peak_bw, int64_t N, int64_t C, int64_t H) {
    int64_t xs[4] = {N, C, H, H}, cs[1] = {C};
    gn_ctx c = {heap_tensor(4, xs, 1), heap_tensor(1, cs, 2), heap_tensor(1, cs, 3), heap_tensor(4, xs, 4), KN_OK};
    kn_tensor *ts[4] = {&c.x, &c.g, &c.b, &c.y};
    char shape[96];
    snprintf(shape, sizeof shape, "N=%lld C=%lld %lldx%lld G=32", (long long)N, (long long)C, (long long)H, (long long)H);
    if (all_ok(ts, 4)) {
        bench_t t = bench_best(gn_run, &c, quick ? 1 : 3, quick ? 0.0 : 0.3);
        if (c.st != KN_OK)
            fprintf(stderr, "kinema: bench group_norm %s: %s\n", shape, kn_last_error());
        else /* the minimum traffic: read x once, write y once */
            bench_report(json, "group_norm", shape, th, 2.0 * 4.0 * kn_tensor_numel(&c.x), t, peak_bw, 1);
    }
    free_all(ts, 4);
}

void bench_ops_more(int json, int quick, int th, bench_t peak, bench_t bw) {
    if (quick) {
        bench_conv3x3(json, quick, th, peak, 2, 64, 16);
        bench_tconv(json, quick, th, peak, 1, 8, 64, 16);
        bench_attention(json, quick, th, peak, 2, 256, 2);
        bench_group_norm(json, quick, th, bw, 4, 64, 32);
        return;
    }
    bench_conv3x3(json, quick, th, peak, 16, 64, 64);
    bench_conv3x3(json, quick, th, peak, 16, 128, 32);
    bench_conv3x3(json, quick, th, peak, 8, 320, 32);
    bench_conv3x3(json, quick, th, peak, 32, 320, 16);
    bench_tconv(json, quick, th, peak, 1, 16, 320, 32);
    bench_tconv(json, quick, th, peak, 2, 8, 640, 16);
    bench_attention(json, quick, th, peak, 256, 64, 5);   /* temporal: (B*H*W, T, C) tokens */
    bench_attention(json, quick, th, peak, 8, 1024, 5);   /* spatial 32x32 */
    bench_attention(json, quick, th, peak, 1, 4096, 5);   /* spatial 64x64 */
    /* arrays larger than L3 (32 MiB), so that GB/s compares with the triad */
    bench_group_norm(json, quick, th, bw, 16, 320, 64);
    bench_group_norm(json, quick, th, bw, 32, 128, 64);
}
