/* bench_train.c — `kinema bench-train`: seconds per training step (forward on a tape, MSE loss,
 * backward into every parameter) and peak memory of a ModelScope-structured UNet3D with random
 * weights. No optimizer update: the step is what PyTorch's forward + loss.backward() measures.
 *
 *   kinema bench-train [--widths 64,128,256,256] [--frames 16] [--size 32] [--batch 1]
 *                      [--threads N] [--repeat K] [--head-dim 64] [--text-dim 1024] [--layers 2]
 *                      [--text-len 77] [--checkpointing] [--save DIR]
 *
 * --save DIR writes the model and the batch once, before timing, so another implementation can
 * run the same numbers (dev/torch_unet3d.py, `kinema forward -c unet`):
 *   DIR/unet/config.json                            diffusers UNet3DConditionModel config
 *   DIR/unet/diffusion_pytorch_model.safetensors    the random weights (F32)
 *   DIR/inputs.safetensors                          sample (B,4,T,S,S), timestep (B) F32,
 *                                                   encoder_hidden_states (B,L,D), target (B,4,T,S,S)
 *
 * The last line is parseable: "RESULT kinema train key=value ...". */
#include "bench_common.h"
#include "cli/cli.h"
#include "io/export.h"
#include "io/safetensors.h"
#include "models/unet3d.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *block_name(kn_block_type t) {
    switch (t) {
    case KN_BLOCK_DOWN: return "DownBlock3D";
    case KN_BLOCK_CROSS_ATTN_DOWN: return "CrossAttnDownBlock3D";
    case KN_BLOCK_UP: return "UpBlock3D";
    default: return "CrossAttnUpBlock3D";
    }
}

/* FLOPs of one forward (2 per multiply-add) in the layers that dominate: 2-D convolutions,
 * temporal (3,1,1) convolutions, linear layers and the two attention matmuls; norms, activations
 * and adds are left out (memory-bound, < 1% of the arithmetic). Mirrors the module tree of
 * unet3d.c / diffusers UNet3DConditionModel. B samples, T frames, S x S latents, L text tokens. */
static double lin(double tokens, double in, double out) { return 2.0 * tokens * in * out; }

/* attention over `seqs` sequences of n queries and m keys of width d (QK^T and PV) */
static double attn(double seqs, double n, double m, double d) { return 4.0 * seqs * n * m * d; }

/* BasicTransformerBlock of width d on `tokens` tokens grouped into sequences of n; cross-attention
 * to L tokens of width D when D > 0, else self-attention twice. */
static double tblock(double tokens, double n, double d, double L, double D) {
    double f = lin(tokens, d, 3 * d) + lin(tokens, d, d) + attn(tokens / n, n, n, d); /* attn1 */
    if (D > 0)
        f += lin(tokens, d, d) + 2 * lin(tokens / n * L, D, d) + lin(tokens, d, d) + attn(tokens / n, n, L, d);
    else
        f += lin(tokens, d, 3 * d) + lin(tokens, d, d) + attn(tokens / n, n, n, d);
    return f + lin(tokens, d, 8 * d) + lin(tokens, 4 * d, d); /* GEGLU feed-forward */
}

static double unet_flops(const kn_unet3d_config *c, double B, double T, double S, double L) {
    double N = B * T, f = 0, hd = c->attention_head_dim, D = c->cross_attention_dim;
    int nb = c->nblocks, lpb = c->layers_per_block;
    const int *boc = c->block_out_channels;
#define HW(lvl) ((double)((int)S >> (lvl)) * (double)((int)S >> (lvl)))
#define CONV(hw, ci, co, k) (2.0 * N * (hw) * (ci) * (co) * (k))
#define RESNET(hw, ci, co) (lin(N, 4.0 * boc[0], co) + CONV(hw, ci, co, 9) + CONV(hw, co, co, 9) + ((ci) != (co) ? CONV(hw, ci, co, 1) : 0))
#define TCONV(hw, C) (4 * CONV(hw, C, C, 3))
#define T2D(hw, C) (2 * lin(N * (hw), C, C) + tblock(N * (hw), hw, C, L, D))
#define TTEMP(hw, C, inner) (lin(N * (hw), C, inner) + lin(N * (hw), inner, C) + tblock(N * (hw), T, inner, 0, 0))
    f += lin(B, boc[0], 4.0 * boc[0]) + lin(B, 4.0 * boc[0], 4.0 * boc[0]); /* time embedding */
    f += CONV(HW(0), c->in_channels, boc[0], 9) + TTEMP(HW(0), boc[0], 8 * hd);
    int out = boc[0];
    for (int i = 0; i < nb; i++) {
        int cin = out;
        out = boc[i];
        int at = c->down_types[i] == KN_BLOCK_CROSS_ATTN_DOWN;
        for (int j = 0; j < lpb; j++)
            f += RESNET(HW(i), j ? out : cin, out) + TCONV(HW(i), out) + (at ? T2D(HW(i), out) + TTEMP(HW(i), out, out) : 0);
        if (i != nb - 1)
            f += CONV(HW(i + 1), out, out, 9);
    }
    int C = boc[nb - 1];
    f += 2 * RESNET(HW(nb - 1), C, C) + 2 * TCONV(HW(nb - 1), C) + T2D(HW(nb - 1), C) + TTEMP(HW(nb - 1), C, C);
    out = C;
    for (int i = 0; i < nb; i++) {
        int lvl = nb - 1 - i, prev = out, cin = boc[KN_MAX(lvl - 1, 0)];
        out = boc[lvl];
        int at = c->up_types[i] == KN_BLOCK_CROSS_ATTN_UP;
        for (int j = 0; j <= lpb; j++) {
            int rin = (j == 0 ? prev : out) + (j == lpb ? cin : out);
            f += RESNET(HW(lvl), rin, out) + TCONV(HW(lvl), out) + (at ? T2D(HW(lvl), out) + TTEMP(HW(lvl), out, out) : 0);
        }
        if (i != nb - 1)
            f += CONV(HW(lvl - 1), out, out, 9);
    }
    f += CONV(HW(0), boc[0], c->out_channels, 9);
#undef HW
#undef CONV
#undef RESNET
#undef TCONV
#undef T2D
#undef TTEMP
    return f;
}

static kn_status mkdir_p1(const char *p) {
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return kn_fail(KN_ERR_IO, "%s: cannot create the folder (%s)", p, strerror(errno));
    return KN_OK;
}

/* diffusers' config.json for cfg (only the keys kinema and dev/ref_unet3d_grad.py read). */
static kn_status write_config(const char *path, const kn_unet3d_config *cfg) {
    FILE *f = fopen(path, "w");
    if (!f)
        return kn_fail(KN_ERR_IO, "%s: cannot open for writing (%s)", path, strerror(errno));
    fprintf(f, "{\n  \"_class_name\": \"UNet3DConditionModel\",\n  \"in_channels\": %d,\n  \"out_channels\": %d,\n",
            cfg->in_channels, cfg->out_channels);
    fprintf(f, "  \"block_out_channels\": [");
    for (int i = 0; i < cfg->nblocks; i++)
        fprintf(f, "%s%d", i ? ", " : "", cfg->block_out_channels[i]);
    fprintf(f, "],\n  \"down_block_types\": [");
    for (int i = 0; i < cfg->nblocks; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", block_name(cfg->down_types[i]));
    fprintf(f, "],\n  \"up_block_types\": [");
    for (int i = 0; i < cfg->nblocks; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", block_name(cfg->up_types[i]));
    fprintf(f,
            "],\n  \"layers_per_block\": %d,\n  \"downsample_padding\": %d,\n  \"mid_block_scale_factor\": %g,\n"
            "  \"norm_num_groups\": %d,\n  \"norm_eps\": %g,\n  \"cross_attention_dim\": %d,\n"
            "  \"attention_head_dim\": %d\n}\n",
            cfg->layers_per_block, cfg->downsample_padding, (double)cfg->mid_block_scale_factor,
            cfg->norm_num_groups, (double)cfg->norm_eps, cfg->cross_attention_dim, cfg->attention_head_dim);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return kn_fail(KN_ERR_IO, "%s: write failed", path);
    return KN_OK;
}

static kn_status save_all(const char *dir, const kn_unet3d *u, const kn_tensor *sample, const kn_tensor *ts,
                          const kn_tensor *text, const kn_tensor *target) {
    char p[4200];
    KN_TRY(mkdir_p1(dir));
    snprintf(p, sizeof p, "%s/unet", dir);
    KN_TRY(mkdir_p1(p));
    snprintf(p, sizeof p, "%s/unet/config.json", dir);
    KN_TRY(write_config(p, &u->cfg));
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    KN_TRY(kn_params_save(&u->P, p, KN_F32));
    kn_st_writer *w = kn_st_writer_new();
    if (!w)
        return kn_fail(KN_ERR_NOMEM, "bench-train: out of memory");
    snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
    kn_status st;
    if ((st = kn_st_writer_add(w, "sample", sample)) == KN_OK && (st = kn_st_writer_add(w, "timestep", ts)) == KN_OK &&
        (st = kn_st_writer_add(w, "encoder_hidden_states", text)) == KN_OK &&
        (st = kn_st_writer_add(w, "target", target)) == KN_OK &&
        (st = kn_st_writer_meta(w, "generator", "kinema bench-train --save")) == KN_OK)
        st = kn_st_writer_write(w, p);
    kn_st_writer_free(w);
    return st;
}

static int cmd_bench_train(int argc, char **argv) {
    const char *widths = "64,128,256,256", *save = NULL;
    long frames = 16, size = 32, batch = 1, threads = 0, repeat = 2, head = 64, text = 1024, layers = 2, tlen = 77;
    int ckpt = 0;
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
        {"--text-len", NULL, KN_OPT_INT, &tlen, 1, 4096},
        {"--checkpointing", NULL, KN_OPT_FLAG, &ckpt},
        {"--save", NULL, KN_OPT_STR, &save},
    };
    const char *pos[1];
    int npos;
    int r = kn_cli_parse("bench-train", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        printf("usage: kinema bench-train [--widths 64,128,256,256] [--frames 16] [--size 32] [--batch 1]\n"
               "                          [--threads N] [--repeat K] [--head-dim 64] [--text-dim 1024] [--layers 2]\n"
               "                          [--text-len 77] [--checkpointing] [--save DIR]\n"
               "  one training step = forward on a tape + MSE loss + backward into all parameters (no update)\n"
               "  --save DIR  write DIR/unet/{config.json,diffusion_pytorch_model.safetensors} and\n"
               "              DIR/inputs.safetensors (sample, timestep, encoder_hidden_states, target)\n");
        return 0;
    }
    if (!r)
        return 2;
    kn_unet3d_config cfg;
    if (!kn_bench_unet_config("bench-train", widths, head, text, layers, &cfg))
        return 2;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    double t0 = now();
    kn_unet3d *u = kn_unet3d_new(&cfg);
    if (!u)
        return kn_cli_error("%s", kn_last_error());
    kn_params_init_default(&u->P, 1);
    if (kn_params_alloc_grads(&u->P) != KN_OK) {
        kn_unet3d_free(u);
        return kn_cli_error("%s", kn_last_error());
    }
    printf("UNet3D widths %s, %zu parameters (%.0f MiB f32 + the same for gradients), built in %.1f s\n", widths,
           u->P.numel, u->P.numel * 4.0 / 1048576.0, now() - t0);

    int rc = 1;
    int64_t nx = batch * 4 * frames * size * size, ntx = batch * tlen * text;
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    kn_arena *A = kn_arena_new(phys); /* reserved, committed as touched */
    kn_tape *tape = kn_tape_new();
    float *x = malloc(sizeof(float) * (size_t)nx), *tgt = malloc(sizeof(float) * (size_t)nx);
    float *tx = malloc(sizeof(float) * (size_t)ntx), *ts = malloc(sizeof(float) * (size_t)batch);
    if (!A || !tape || !x || !tgt || !tx || !ts) {
        kn_cli_error("bench-train: out of memory");
        goto done;
    }
    kn_randn_fill(x, nx, 2, 0);
    kn_randn_fill(tx, ntx, 3, 0);
    kn_randn_fill(tgt, nx, 4, 0);
    for (long b = 0; b < batch; b++)
        ts[b] = 500.0f;
    int64_t xs[5] = {batch, 4, frames, size, size};
    kn_tensor tin = kn_tensor_view(KN_F32, 5, xs, x);
    kn_tensor ttg = kn_tensor_view(KN_F32, 5, xs, tgt);
    kn_tensor ttx = kn_tensor_view(KN_F32, 3, (int64_t[]){batch, tlen, text}, tx);
    kn_tensor tts = kn_tensor_view(KN_F32, 1, (int64_t[]){batch}, ts);
    if (save) {
        if (save_all(save, u, &tin, &tts, &ttx, &ttg) != KN_OK) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        printf("wrote %s/unet and %s/inputs.safetensors\n", save, save);
    }

    double best = 1e30, bestf = 1e30, loss = 0;
    for (long rep = 0; rep < repeat; rep++) {
        kn_arena_reset(A, 0);
        kn_tape_clear(tape);
        kn_params_zero_grads(&u->P);
        kn_ctx c;
        kn_ctx_init(&c, A, tape);
        c.checkpointing = ckpt;
        double s = now();
        kn_var *y = kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tin), ts, kn_var_wrap(&c, &ttx), NULL, NULL);
        if (kn_ctx_status(&c) != KN_OK) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        double sf = now() - s;
        if (kn_mse_loss(&y->v, &ttg, NULL, &loss) != KN_OK ||
            kn_tensor_zeros(A, &y->g, KN_F32, y->v.ndim, y->v.shape) != KN_OK ||
            kn_mse_loss_backward(&y->v, &ttg, NULL, 1.0f, &y->g) != KN_OK || kn_backward(&c, y, 1.0f) != KN_OK) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        double dt = now() - s;
        if (dt < best)
            best = dt;
        if (sf < bestf)
            bestf = sf;
        printf("step %ld: %.3f s (forward on the tape %.3f s, backward %.3f s), loss %.6f\n", rep + 1, dt, sf,
               dt - sf, loss);
        fflush(stdout);
    }
    /* Backward costs about twice the forward (a gradient for the input and one for the weights of
     * every matmul), so a training step is counted as 3x the forward FLOPs. */
    double fl = unet_flops(&cfg, (double)batch, (double)frames, (double)size, (double)tlen);
    printf("forward %.1f GFLOP (convolutions, linear layers, attention), training step ~3x: %.1f GFLOP/s\n",
           fl * 1e-9, 3 * fl * 1e-9 / best);
    /* Gradient norm: a cheap check that backward reached the parameters. */
    double g2 = 0;
    for (size_t i = 0; i < u->P.numel; i++)
        g2 += (double)u->P.grad_block[i] * u->P.grad_block[i];
    printf("RESULT kinema train widths=%s frames=%ld size=%ld batch=%ld threads=%d checkpointing=%d "
           "s_per_step=%.4f fwd_on_tape_s=%.4f fwd_gflop=%.4f train_gflops=%.2f loss=%.6f grad_norm=%.6g arena_peak_mib=%.1f peak_rss_mib=%.1f\n",
           widths, frames, size, batch, kn_get_threads(), ckpt, best, bestf, fl * 1e-9, 3 * fl * 1e-9 / best, loss, sqrt(g2),
           kn_arena_peak(A) / 1048576.0, kn_peak_rss() / 1048576.0);
    rc = 0;
done:
    if (tape)
        kn_tape_free(tape);
    if (A)
        kn_arena_free(A);
    free(x);
    free(tgt);
    free(tx);
    free(ts);
    kn_unet3d_free(u);
    return rc;
}

KN_CLI_COMMAND(bench_train, "bench-train", "seconds per training step (forward+backward) and memory of a UNet3D",
               cmd_bench_train)
