/* bench_ops.c — `kinema bench ops [--threads N] [--json] [--quick]`.
 *
 * Measures the machine first — FP32 peak from an FMA loop with 12 independent zmm accumulators
 * per thread, and memory bandwidth from a STREAM-style triad a[i] = b[i] + s*c[i] over arrays much
 * larger than L3 — then times the kernels against those two numbers, for 1 and 2 threads (or only
 * N). Each case runs a few times and the best time is kept (the machine is shared).
 * Human output is a table; --json prints one object per line per case:
 *   {"name","shape","threads","gflops","peak_gflops"}  (memory-bound cases: "gbps","peak_gbps").
 * The kernels of other ops (conv, attention, norms) are in bench_ops_more.c. */
#include "cli/cli.h"
#include "ops/ops.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int kn_gemm_set_backend(int b); /* src/ops/gemm.c: 0 own, 1 OpenBLAS, -1 query */

typedef struct { int json, quick; } bench_opts;

/* Shared with bench_ops_more.c (declared there too; there is no bench header).
 * bench_t: best wall-clock seconds, and best process CPU seconds / threads. The second is what a
 * run would take with the cores to itself: on a shared machine (other builds running) the wall
 * figure measures the neighbours as much as the kernel, the CPU figure much less. */
typedef struct { double wall, cpu; } bench_t;
double bench_now(void);
bench_t bench_best(void (*fn)(void *), void *ctx, int reps, double min_time);
/* work: FLOP (or bytes when is_bw); peak: the machine's rates (GFLOP/s or GB/s, wall and cpu). */
void bench_report(int json, const char *name, const char *shape, int threads, double work, bench_t t, bench_t peak,
                  int is_bw);
bench_t bench_peak_gflops(int threads, int quick);
bench_t bench_triad_gbps(int threads, int quick);
/* The conv / attention / norm cases; weak so that this file links before they exist. */
void bench_ops_more(int json, int quick, int threads, bench_t peak_gflops, bench_t peak_gbps) __attribute__((weak));

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bench_t bench_best(void (*fn)(void *), void *ctx, int reps, double min_time) {
    fn(ctx); /* warm up: pages, caches, packing buffers */
    bench_t best = {1e30, 1e30};
    double total = 0;
    for (int r = 0; r < reps || total < min_time; r++) {
        double t0 = bench_now(), c0 = cpu_now();
        fn(ctx);
        double t = bench_now() - t0, c = (cpu_now() - c0) / kn_get_threads();
        best.wall = t < best.wall ? t : best.wall;
        best.cpu = c < best.cpu ? c : best.cpu;
        total += t;
        if (r > 50 * reps)
            break;
    }
    return best;
}

void bench_report(int json, const char *name, const char *shape, int threads, double work, bench_t t, bench_t peak,
                  int is_bw) {
    double v = work / t.wall * 1e-9, vc = work / t.cpu * 1e-9;
    if (json) {
        const char *u = is_bw ? "gbps" : "gflops";
        printf("{\"name\":\"%s\",\"shape\":\"%s\",\"threads\":%d,\"%s\":%.2f,\"peak_%s\":%.2f,\"%s_cpu\":%.2f,"
               "\"peak_%s_cpu\":%.2f}\n",
               name, shape, threads, u, v, u, peak.wall, u, vc, u, peak.cpu);
    } else {
        printf("%-20s %-28s %3d %8.1f %5.1f%% %8.1f %5.1f%%  %s\n", name, shape, threads, v, 100.0 * v / peak.wall, vc,
               100.0 * vc / peak.cpu, is_bw ? "GB/s" : "GFLOP/s");
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------ peak */

typedef struct { int64_t iters; volatile float sink; } peak_ctx;

static void peak_task(int ith, int nth, void *p) {
    KN_UNUSED(ith);
    KN_UNUSED(nth);
    peak_ctx *c = p;
    /* 12 independent chains: FMA latency 4 x 2 pipes (256-bit halves) needs >= 8 in flight */
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
           a9 = a0, a10 = a0, a11 = a0;
    const __m512 m = _mm512_set1_ps(0.999999f), s = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < c->iters; i++) {
        /* opaque to the compiler: keeps the 12 chains distinct (no CSE) and the loop alive */
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
        __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
        a0 = _mm512_fmadd_ps(a0, m, s);
        a1 = _mm512_fmadd_ps(a1, m, s);
        a2 = _mm512_fmadd_ps(a2, m, s);
        a3 = _mm512_fmadd_ps(a3, m, s);
        a4 = _mm512_fmadd_ps(a4, m, s);
        a5 = _mm512_fmadd_ps(a5, m, s);
        a6 = _mm512_fmadd_ps(a6, m, s);
        a7 = _mm512_fmadd_ps(a7, m, s);
        a8 = _mm512_fmadd_ps(a8, m, s);
        a9 = _mm512_fmadd_ps(a9, m, s);
        a10 = _mm512_fmadd_ps(a10, m, s);
        a11 = _mm512_fmadd_ps(a11, m, s);
    }
    __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    t = _mm512_add_ps(t, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    c->sink = _mm512_reduce_add_ps(t);
}

static void peak_run(void *p) { kn_parallel(peak_task, p); }

static double peak_flop(int threads, int64_t iters) { return (double)threads * (double)iters * 12 * 16 * 2; }

bench_t bench_peak_gflops(int threads, int quick) {
    int prev = kn_set_threads(threads);
    /* many short runs, keep the best: robust to other processes taking the core for a while */
    peak_ctx c = {1000000, 0};
    bench_t t = bench_best(peak_run, &c, quick ? 10 : 40, 0);
    kn_set_threads(prev);
    double f = peak_flop(threads, c.iters) * 1e-9;
    return (bench_t){f / t.wall, f / t.cpu};
}

/* ----------------------------------------------------------------- triad */

typedef struct { float *a, *b, *c; int64_t n; } triad_ctx;

static void triad_task(int ith, int nth, void *p) {
    triad_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->n / 16, ith, nth, &b, &e);
    const __m512 s = _mm512_set1_ps(3.0f);
    for (int64_t i = b * 16; i < e * 16; i += 16)
        _mm512_stream_ps(c->a + i, _mm512_fmadd_ps(s, _mm512_load_ps(c->c + i), _mm512_load_ps(c->b + i)));
    _mm_sfence();
}

static void triad_run(void *p) { kn_parallel(triad_task, p); }

static int64_t triad_n(int quick) { return quick ? (int64_t)16 << 20 : (int64_t)32 << 20; }

/* GB/s counting 3 arrays x 4 bytes per element (STREAM convention; stores are non-temporal). */
bench_t bench_triad_gbps(int threads, int quick) {
    int64_t n = triad_n(quick); /* 64 or 128 MiB per array, L3 is 32 MiB */
    triad_ctx c = {kn_aligned_alloc((size_t)n * 4), kn_aligned_alloc((size_t)n * 4), kn_aligned_alloc((size_t)n * 4), n};
    if (!c.a || !c.b || !c.c) {
        kn_aligned_free(c.a), kn_aligned_free(c.b), kn_aligned_free(c.c);
        return (bench_t){0, 0};
    }
    for (int64_t i = 0; i < n; i++)
        c.a[i] = 0.0f, c.b[i] = 1.0f, c.c[i] = 2.0f;
    int prev = kn_set_threads(threads);
    bench_t t = bench_best(triad_run, &c, quick ? 3 : 8, 0);
    kn_set_threads(prev);
    kn_aligned_free(c.a), kn_aligned_free(c.b), kn_aligned_free(c.c);
    double gb = 3.0 * 4.0 * (double)n * 1e-9;
    return (bench_t){gb / t.wall, gb / t.cpu};
}

/* ------------------------------------------------------------------ GEMM */

typedef struct { int ta, tb; int64_t M, N, K; float *A, *B, *C; } gemm_ctx;

static void gemm_run(void *p) {
    gemm_ctx *g = p;
    kn_gemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, g->ta ? g->M : g->K, g->B, g->tb ? g->K : g->N, 0.0f,
            g->C, g->N);
}

static void bench_gemm(const bench_opts *o, int threads, bench_t peak, const char *name, int ta, int tb, int64_t M,
                       int64_t N, int64_t K) {
    gemm_ctx g = {ta, tb, M, N, K, kn_aligned_alloc((size_t)(M * K) * 4), kn_aligned_alloc((size_t)(K * N) * 4),
                  kn_aligned_alloc((size_t)(M * N) * 4)};
    kn_randn_fill(g.A, M * K, 1, 0);
    kn_randn_fill(g.B, K * N, 2, 0);
    double flop = 2.0 * (double)M * (double)N * (double)K;
    int prev = kn_set_threads(threads);
    for (int backend = 0; backend < 2; backend++) {
        if (o->quick && backend == 1)
            break;
        int prevb = kn_gemm_set_backend(backend);
        bench_t t = bench_best(gemm_run, &g, o->quick ? 1 : 3, o->quick ? 0.0 : 0.3);
        kn_gemm_set_backend(prevb);
        char shape[96], full[64];
        snprintf(shape, sizeof shape, "%s M=%lld N=%lld K=%lld", ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"),
                 (long long)M, (long long)N, (long long)K);
        snprintf(full, sizeof full, "%s/%s", name, backend ? "openblas" : "own");
        bench_report(o->json, full, shape, threads, flop, t, peak, 0);
    }
    kn_set_threads(prev);
    kn_aligned_free(g.A), kn_aligned_free(g.B), kn_aligned_free(g.C);
}

/* ------------------------------------------------------------------ main */

static int usage(void) {
    fprintf(stderr, "usage: kinema bench ops [--threads N] [--json] [--quick]\n"
                    "  measures FP32 peak and triad bandwidth, then GEMM, conv, attention and norm kernels\n"
                    "  at 1 and 2 threads (or N), best of several runs\n");
    return 2;
}

static int cmd_bench(int argc, char **argv) {
    bench_opts o = {0};
    int only = 0;
    if (argc < 2 || strcmp(argv[1], "ops"))
        return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? (usage(), 0)
                                                                                    : (kn_cli_error("bench: unknown suite '%s' (want: ops)", argc >= 2 ? argv[1] : ""), usage());
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            o.json = 1;
        else if (!strcmp(argv[i], "--quick"))
            o.quick = 1;
        else if (!strcmp(argv[i], "--threads")) {
            long v;
            if (!kn_cli_int("--threads", i + 1 < argc ? argv[i + 1] : NULL, 1, 256, &v))
                return 2;
            only = (int)v;
            i++;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else {
            kn_cli_error("bench ops: unknown option '%s'", argv[i]);
            return usage();
        }
    }
    int tlist[2] = {1, 2}, nt = 2;
    if (only)
        tlist[0] = only, nt = 1;
    if (!o.json)
        printf("%-20s %-28s %3s %8s %6s %8s %6s  %s\n", "name", "shape", "thr", "wall", "peak", "cpu-time", "peak",
               "unit");
    int prev = kn_get_threads();
    for (int ti = 0; ti < nt; ti++) {
        int th = tlist[ti];
        bench_t peak = bench_peak_gflops(th, o.quick);
        bench_t bw = bench_triad_gbps(th, o.quick);
        /* report the machine rates as cases too: work 1 GFLOP (GB) at the measured rate */
        bench_report(o.json, "fma_peak", "12 zmm chains/thread", th, 1e9, (bench_t){1 / peak.wall, 1 / peak.cpu}, peak,
                     0);
        bench_report(o.json, "triad", o.quick ? "3 x 64 MiB" : "3 x 128 MiB", th, 1e9, (bench_t){1 / bw.wall, 1 / bw.cpu},
                     bw, 1);
        if (o.quick) {
            bench_gemm(&o, th, peak, "gemm", 0, 0, 256, 256, 256);
        } else {
            bench_gemm(&o, th, peak, "gemm", 0, 0, 512, 512, 512);
            bench_gemm(&o, th, peak, "gemm", 0, 0, 1024, 1024, 1024);
            bench_gemm(&o, th, peak, "gemm", 0, 0, 2048, 2048, 2048);
            bench_gemm(&o, th, peak, "gemm_conv", 0, 0, 320, 1024, 2880);
            bench_gemm(&o, th, peak, "gemm_linear", 0, 1, 4096, 320, 320);
            bench_gemm(&o, th, peak, "gemm_linear", 0, 1, 1024, 1280, 320);
            bench_gemm(&o, th, peak, "gemm_tn", 1, 0, 1024, 1024, 1024);
        }
        if (bench_ops_more) {
            kn_set_threads(th);
            bench_ops_more(o.json, o.quick, th, peak, bw);
        }
    }
    kn_set_threads(prev);
    return 0;
}

KN_CLI_COMMAND(bench, "bench", "benchmarks: `kinema bench ops` (kernels vs measured FP32 peak / bandwidth)",
               cmd_bench)
