/* bench_lowp.c — `kinema bench-lowp`: reduced-precision weights (f16, bf16, q8) against f32.
 *
 *   kinema bench-lowp [--threads N] [--repeat K] [--quick] [--widths 64,128,128,128] [--frames 8]
 *                     [--size 16] [--no-unet]
 *
 * 1. GEMM GFLOP/s on UNet-like shapes: conv im2col products W (O, C*9) · col (C*9, P) and linear
 *    products y (R, out) = x (R, in) · Wᵀ. f32 runs kn_gemm (the engine's path for F32 weights);
 *    the others kn_gemm_lowp with the weight in that format.
 * 2. A ModelScope-structured UNet3D (random weights, see bench-unet) forward per weights type:
 *    time per step and the max / mean |error| of its output against the f32 run.
 * The machine is shared (a training run may be using it): every repetition runs the types one
 * after another (interleaved A/B) and the best time per type is kept, so the ratios are fair
 * even when the absolute numbers are noisy. */
#include "bench_common.h"
#include "cli/cli.h"
#include "io/model_load.h"
#include "models/unet3d.h"
#include "ops/gemm_lowp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    int64_t M, N, K; /* M = weight rows (out channels), K = weight columns, N = positions / tokens */
    int linear;      /* 1: y (N, M) = x (N, K) · Wᵀ; 0: C (M, N) = W · B (K, N) */
} gemm_shape;

static void bench_gemms(long repeat, int quick) {
    static const gemm_shape shapes[] = {
        {"conv3x3 320->320 @32x32", 320, 1024, 2880, 0},
        {"conv3x3 640->640 @16x16", 640, 256, 5760, 0},
        {"conv3x3 1280->1280 @8x8", 1280, 64, 11520, 0},
        {"linear 320->320 (4096 tok)", 320, 4096, 320, 1},
        {"linear ff 640->5120 (1024 tok)", 5120, 1024, 640, 1},
        {"linear 1280->1280 (256 tok)", 1280, 256, 1280, 1},
    };
    int nshape = quick ? 3 : (int)(sizeof shapes / sizeof shapes[0]);
    printf("GEMM GFLOP/s, %d threads, best of %ld interleaved rounds (bf16 on %s)\n", kn_get_threads(), repeat,
           kn_gemm_lowp_bf16_native(-1) ? "vdpbf16ps" : "the f32 fallback");
    printf("  %-32s %9s %9s %9s %9s   %s\n", "shape (M x N x K)", "f32", "bf16", "f16", "q8", "speed-up bf16/f16/q8");
    for (int s = 0; s < nshape; s++) {
        const gemm_shape *g = &shapes[s];
        int64_t M = g->M, N = g->N, K = g->K;
        float *W = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
        float *C = malloc(sizeof(float) * (size_t)(M * N));
        void *q[KN_WT_COUNT] = {0};
        if (!W || !B || !C) {
            fprintf(stderr, "bench-lowp: out of memory\n");
            return;
        }
        kn_randn_fill(W, M * K, 1, 0);
        kn_randn_fill(B, K * N, 2, 0);
        for (int t = 1; t < KN_WT_COUNT; t++) {
            q[t] = malloc(kn_lowp_nbytes((kn_wtype)t, M, K));
            kn_lowp_quantize((kn_wtype)t, W, M, K, q[t]);
        }
        double best[KN_WT_COUNT];
        for (int t = 0; t < KN_WT_COUNT; t++)
            best[t] = 1e30;
        for (long r = 0; r < repeat + 1; r++) /* round 0 warms up */
            for (int t = 0; t < KN_WT_COUNT; t++) {
                double t0 = now();
                if (t == KN_WT_F32) {
                    if (g->linear) /* y (N,M) = x (N,K) · Wᵀ, as kn_linear */
                        kn_gemm(0, 1, N, M, K, 1.0f, B, K, W, K, 0.0f, C, M);
                    else
                        kn_gemm(0, 0, M, N, K, 1.0f, W, K, B, N, 0.0f, C, N);
                } else {
                    size_t rb = kn_lowp_row_bytes((kn_wtype)t, K);
                    if (g->linear)
                        kn_gemm_lowp((kn_wtype)t, 1, 1, M, N, K, 1.0f, q[t], rb, B, K, 0.0f, C, M);
                    else
                        kn_gemm_lowp((kn_wtype)t, 0, 0, M, N, K, 1.0f, q[t], rb, B, N, 0.0f, C, N);
                }
                double dt = now() - t0;
                if (r > 0 && dt < best[t])
                    best[t] = dt;
            }
        double fl = 2.0 * (double)M * (double)N * (double)K * 1e-9;
        char shp[64];
        snprintf(shp, sizeof shp, "%s", g->name);
        printf("  %-32s %9.1f %9.1f %9.1f %9.1f   %.2fx / %.2fx / %.2fx\n", shp, fl / best[0], fl / best[2],
               fl / best[1], fl / best[3], best[0] / best[2], best[0] / best[1], best[0] / best[3]);
        printf("  %-32s (%lld x %lld x %lld)\n", "", (long long)M, (long long)N, (long long)K);
        for (int t = 1; t < KN_WT_COUNT; t++)
            free(q[t]);
        free(W), free(B), free(C);
    }
}

/* UNet3D forward per weights type: the parameter tensors are swapped between the f32 and the
 * converted views before each run, so the four types interleave within every round. */
static int bench_unet_types(const char *widths, long frames, long size, long repeat) {
    kn_unet3d_config cfg;
    if (!kn_bench_unet_config("bench-lowp", widths, 64, 1024, 2, &cfg))
        return 2;
    kn_unet3d *u = kn_unet3d_new(&cfg);
    if (!u)
        return kn_cli_error("%s", kn_last_error());
    kn_params_init_default(&u->P, 1);
    int np = u->P.n;
    kn_tensor *views[KN_WT_COUNT];
    void *store[KN_WT_COUNT] = {0};
    int nconv[KN_WT_COUNT] = {0};
    size_t bytes[KN_WT_COUNT] = {0};
    for (int t = 0; t < KN_WT_COUNT; t++) {
        views[t] = malloc(sizeof(kn_tensor) * (size_t)np);
        if (!views[t])
            return kn_cli_error("bench-lowp: out of memory");
    }
    for (int i = 0; i < np; i++)
        views[0][i] = u->P.items[i]->var.v;
    for (int t = 1; t < KN_WT_COUNT; t++) {
        if (kn_params_to_lowp(&u->P, (kn_wtype)t, &store[t], &nconv[t], &bytes[t]) != KN_OK)
            return kn_cli_error("%s", kn_last_error());
        for (int i = 0; i < np; i++) {
            views[t][i] = u->P.items[i]->var.v;
            u->P.items[i]->var.v = views[0][i];
        }
    }
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    kn_arena *A = kn_arena_new(phys / 2);
    long B = 2;
    int64_t nx = B * 4 * frames * size * size, ntx = B * 77 * 1024;
    float *x = malloc(sizeof(float) * (size_t)nx), *tx = malloc(sizeof(float) * (size_t)ntx);
    float *out[KN_WT_COUNT];
    for (int t = 0; t < KN_WT_COUNT; t++)
        out[t] = malloc(sizeof(float) * (size_t)nx);
    if (!A || !x || !tx || !out[0] || !out[1] || !out[2] || !out[3])
        return kn_cli_error("bench-lowp: out of memory");
    kn_randn_fill(x, nx, 2, 0);
    kn_randn_fill(tx, ntx, 3, 0);
    kn_tensor tin = kn_tensor_view(KN_F32, 5, (int64_t[]){B, 4, frames, size, size}, x);
    kn_tensor ttx = kn_tensor_view(KN_F32, 3, (int64_t[]){B, 77, 1024}, tx);
    float ts[2] = {500.0f, 500.0f};
    double best[KN_WT_COUNT];
    for (int t = 0; t < KN_WT_COUNT; t++)
        best[t] = 1e30;
    for (long r = 0; r < repeat; r++)
        for (int t = 0; t < KN_WT_COUNT; t++) {
            for (int i = 0; i < np; i++)
                u->P.items[i]->var.v = views[t][i];
            kn_arena_reset(A, 0);
            kn_ctx c;
            kn_ctx_init(&c, A, NULL);
            double t0 = now();
            kn_var *y = kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tin), ts, kn_var_wrap(&c, &ttx), NULL, NULL);
            double dt = now() - t0;
            if (!y)
                return kn_cli_error("%s", kn_last_error());
            memcpy(out[t], y->v.data, sizeof(float) * (size_t)nx);
            if (dt < best[t])
                best[t] = dt;
        }
    for (int i = 0; i < np; i++)
        u->P.items[i]->var.v = views[0][i];
    double omax = 0;
    for (int64_t i = 0; i < nx; i++)
        omax = fmax(omax, fabs(out[0][i]));
    printf("\nUNet3D widths %s, F=%ld %ldx%ld batch %ld, %zu parameters, %d threads, best of %ld interleaved "
           "rounds; random weights N(0,1)/sqrt(fan_in); max |out| (f32) %.3g\n",
           widths, frames, size, size, B, u->P.numel, kn_get_threads(), repeat, omax);
    printf("  %-6s %10s %9s %12s %12s %10s\n", "type", "s/step", "vs f32", "max |err|", "mean |err|", "weights MiB");
    for (int t = 0; t < KN_WT_COUNT; t++) {
        double mx = 0, s = 0;
        for (int64_t i = 0; i < nx; i++) {
            double d = fabs((double)out[t][i] - out[0][i]);
            mx = fmax(mx, d);
            s += d;
        }
        printf("  %-6s %10.3f %8.2fx %12.3g %12.3g %10.1f\n", kn_wtype_name((kn_wtype)t), best[t], best[0] / best[t], mx,
               s / (double)nx, t ? bytes[t] / 1048576.0 : u->P.numel * 4.0 / 1048576.0);
    }
    printf("  (%d matrix/conv tensors converted; f32 'weights MiB' counts every parameter)\n", nconv[1]);
    for (int t = 0; t < KN_WT_COUNT; t++) {
        free(views[t]);
        free(out[t]);
        kn_aligned_free(store[t]);
    }
    free(x), free(tx);
    kn_arena_free(A);
    kn_unet3d_free(u);
    return 0;
}

static int cmd_bench_lowp(int argc, char **argv) {
    const char *widths = "64,128,128,128";
    long threads = 0, repeat = 3, frames = 8, size = 16;
    int quick = 0, no_unet = 0;
    const kn_cli_opt opts[] = {
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {"--repeat", NULL, KN_OPT_INT, &repeat, 1, 1000},
        {"--widths", NULL, KN_OPT_STR, &widths},
        {"--frames", NULL, KN_OPT_INT, &frames, 1, 256},
        {"--size", NULL, KN_OPT_INT, &size, 1, 512},
        {"--quick", NULL, KN_OPT_FLAG, &quick},
        {"--no-unet", NULL, KN_OPT_FLAG, &no_unet},
    };
    const char *pos[1];
    int npos;
    int r = kn_cli_parse("bench-lowp", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        printf("usage: kinema bench-lowp [--threads N] [--repeat K] [--quick] [--widths 64,128,128,128]\n"
               "                         [--frames 8] [--size 16] [--no-unet]\n");
        return 0;
    }
    if (!r)
        return 2;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
    bench_gemms(repeat, quick);
    return no_unet ? 0 : bench_unet_types(widths, frames, size, repeat);
}

KN_CLI_COMMAND(bench_lowp, "bench-lowp", "f32 vs bf16 / f16 / q8 weights: GEMM GFLOP/s and UNet3D time and error",
               cmd_bench_lowp)
