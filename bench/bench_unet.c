/* bench_unet.c — `kinema bench-unet`: seconds per denoising step and peak memory of a
 * ModelScope-structured UNet3D with random weights (no files needed).
 *
 *   kinema bench-unet [--widths 320,640,1280,1280] [--frames 16] [--size 32] [--batch 2]
 *                     [--threads N] [--repeat K] [--head-dim 64] [--text-dim 1024]
 *
 * A step is one UNet forward at --batch (2 = classifier-free guidance, as in generation). */
#include "bench_common.h"
#include "cli/cli.h"
#include "models/unet3d.h"

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

static int cmd_bench_unet(int argc, char **argv) {
    const char *widths = "320,640,1280,1280";
    long frames = 16, size = 32, batch = 2, threads = 0, repeat = 2, head = 64, text = 1024, layers = 2;
    const kn_cli_opt opts[] = {
        {"--widths", NULL, KN_OPT_STR, &widths},
        {"--frames", NULL, KN_OPT_INT, &frames, 1, 256},
        {"--size", NULL, KN_OPT_INT, &size, 1, 512},
        {"--batch", NULL, KN_OPT_INT, &batch, 1, 64},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {"--repeat", NULL, KN_OPT_INT, &repeat, 1, 1000},
        {"--head-dim", NULL, KN_OPT_INT, &head, 1, 1024},
        {"--text-dim", NULL, KN_OPT_INT, &text, 1, 8192},
        {"--layers", NULL, KN_OPT_INT, &layers, 1, 8},
    };
    const char *pos[1];
    int npos;
    int r = kn_cli_parse("bench-unet", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        printf("usage: kinema bench-unet [--widths 320,640,1280,1280] [--frames 16] [--size 32] [--batch 2]\n"
               "                         [--threads N] [--repeat K] [--head-dim 64] [--text-dim 1024] [--layers 2]\n");
        return 0;
    }
    if (!r)
        return 2;
    kn_unet3d_config cfg;
    if (!kn_bench_unet_config("bench-unet", widths, head, text, layers, &cfg))
        return 2;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
    double t0 = now();
    kn_unet3d *u = kn_unet3d_new(&cfg);
    if (!u)
        return kn_cli_error("%s", kn_last_error());
    kn_params_init_default(&u->P, 1);
    printf("UNet3D widths %s, %zu parameters (%.0f MiB f32), built in %.1f s\n", widths, u->P.numel,
           u->P.numel * 4.0 / 1048576.0, now() - t0);
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    kn_arena *A = kn_arena_new(phys);
    float *x = malloc(sizeof(float) * (size_t)(batch * 4 * frames * size * size));
    float *tx = malloc(sizeof(float) * (size_t)(batch * 77 * text));
    if (!A || !x || !tx)
        return kn_cli_error("bench-unet: out of memory");
    kn_randn_fill(x, batch * 4 * frames * size * size, 2, 0);
    kn_randn_fill(tx, batch * 77 * text, 3, 0);
    kn_tensor tin = kn_tensor_view(KN_F32, 5, (int64_t[]){batch, 4, frames, size, size}, x);
    kn_tensor ttx = kn_tensor_view(KN_F32, 3, (int64_t[]){batch, 77, text}, tx);
    float ts[64];
    for (int i = 0; i < 64; i++)
        ts[i] = 500.0f;
    double best = 1e30;
    for (long rep = 0; rep < repeat; rep++) {
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        double s = now();
        kn_var *y = kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tin), ts, kn_var_wrap(&c, &ttx), NULL, NULL);
        double dt = now() - s;
        if (!y)
            return kn_cli_error("%s", kn_last_error());
        if (dt < best)
            best = dt;
        printf("step %ld: %.2f s\n", rep + 1, dt);
    }
    printf("unet3d %s F=%ld %ldx%ld batch %ld threads %d: %.2f s/step (best of %ld), arena peak %.0f MiB, "
           "peak RSS %.0f MiB\n",
           widths, frames, size, size, batch, kn_get_threads(), best, repeat, kn_arena_peak(A) / 1048576.0,
           kn_peak_rss() / 1048576.0);
    kn_arena_free(A);
    free(x);
    free(tx);
    kn_unet3d_free(u);
    return 0;
}

KN_CLI_COMMAND(bench_unet, "bench-unet", "seconds per step and memory of a ModelScope-shaped UNet3D", cmd_bench_unet)
