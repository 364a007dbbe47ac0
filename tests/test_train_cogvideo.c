/* test_train_cogvideo.c — CogVideo's option (freeze the spatial weights, train the temporal
 * layers: kn_adamw_freeze, kn_train_opts.freeze_spatial, recipe key "freeze_spatial") and
 * `kinema train --init MODEL` (fine-tuning from an exported folder). */
#include "kt.h"

#include "io/safetensors.h"
#include "train/recipes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ kn_adamw_freeze */

static int frozen_name(const char *name, void *user) {
    (void)user;
    return strstr(name, "spatial") != NULL;
}

/* Four parameters (two frozen, one of them > KN_OPTIM_CHUNK floats so it spans segments), with
 * weight decay and gradients everywhere, stepped 3 times at a given thread count. */
static void freeze_run(int threads, float *out, int64_t *n_out, double *norm_out, int *nfrozen) {
    kn_set_threads(threads);
    kn_params P = {0};
    kn_param_decl(&P, 2, (int64_t[]){3, 5}, "a.spatial.weight");
    kn_param_decl(&P, 2, (int64_t[]){7, 9}, "b.temporal.weight");
    kn_param_decl(&P, 2, (int64_t[]){70, 80}, "c.spatial.weight"); /* 5600 > 4096: two segments */
    kn_param_decl(&P, 1, (int64_t[]){11}, "d.temporal.bias");
    KT_OK(kn_params_alloc(&P));
    KT_OK(kn_params_alloc_grads(&P));
    kn_params_init_default(&P, 7);
    for (size_t i = 0; i < P.numel; i++)
        P.block[i] += 0.25f; /* biases too: nonzero, so decay would show */
    kn_adamw o;
    kn_adamw_config oc = kn_adamw_default_config();
    oc.weight_decay = 0.1;
    KT_OK(kn_adamw_init(&o, &oc, &P));
    KT_OK(kn_adamw_freeze(&o, frozen_name, NULL, nfrozen));
    KT_OK(kn_adamw_freeze(&o, frozen_name, NULL, nfrozen)); /* idempotent */
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < P.n; i++) {
            kn_tensor *g = &P.items[i]->var.g;
            kn_randn_fill(g->data, kn_tensor_numel(g), 99 + s, (uint64_t)i * 100000);
        }
        kn_adamw_zero_frozen_grads(&o);
        norm_out[s] = kn_clip_grad_norm(&P, 0.5);
        KT_OK(kn_adamw_step(&o, 1e-2));
    }
    /* moments of the frozen parameters were never touched */
    for (int i = 0; i < P.n; i++) {
        if (!frozen_name(P.items[i]->name, NULL))
            continue;
        int64_t off = (float *)P.items[i]->var.v.data - P.block, n = kn_tensor_numel(&P.items[i]->var.v);
        KT_CHECK(kt_max_abs(o.m + off, n) == 0 && kt_max_abs(o.v + off, n) == 0);
    }
    KT_CHECK(o.frozen_numel == 15 + 5600);
    memcpy(out, P.block, P.numel * sizeof(float));
    *n_out = (int64_t)P.numel;
    kn_adamw_free(&o);
    kn_params_free(&P);
}

KT_TEST(adamw_freeze_leaves_frozen_params_bitwise_and_is_thread_invariant) {
    static float w1[16384], w2[16384], w3[16384];
    int64_t n1, n2, n3;
    double nm1[3], nm2[3], nm3[3];
    int nf = 0;
    freeze_run(1, w1, &n1, nm1, &nf);
    KT_CHECK(nf == 2);
    freeze_run(2, w2, &n2, nm2, &nf);
    freeze_run(3, w3, &n3, nm3, &nf);
    kn_set_threads(2);
    KT_CHECK(n1 == n2 && n1 == n3);
    KT_CHECKF(!memcmp(w1, w2, n1 * sizeof(float)) && !memcmp(w1, w3, n1 * sizeof(float)),
              "frozen AdamW differs across thread counts");
    KT_CHECK(!memcmp(nm1, nm2, sizeof nm1) && !memcmp(nm1, nm3, sizeof nm1));
    /* a fresh table with the same init tells which values moved */
    kn_params P = {0};
    kn_param_decl(&P, 2, (int64_t[]){3, 5}, "a.spatial.weight");
    kn_param_decl(&P, 2, (int64_t[]){7, 9}, "b.temporal.weight");
    kn_param_decl(&P, 2, (int64_t[]){70, 80}, "c.spatial.weight");
    kn_param_decl(&P, 1, (int64_t[]){11}, "d.temporal.bias");
    KT_OK(kn_params_alloc(&P));
    kn_params_init_default(&P, 7);
    for (size_t i = 0; i < P.numel; i++)
        P.block[i] += 0.25f;
    for (int i = 0; i < P.n; i++) {
        int64_t off = (float *)P.items[i]->var.v.data - P.block, n = kn_tensor_numel(&P.items[i]->var.v);
        int same = !memcmp(w1 + off, P.block + off, (size_t)n * sizeof(float));
        int64_t moved = 0;
        for (int64_t k = 0; k < n; k++)
            moved += w1[off + k] != P.block[off + k];
        if (frozen_name(P.items[i]->name, NULL))
            KT_CHECKF(same, "frozen %s changed", P.items[i]->name);
        else
            KT_CHECKF(moved == n, "trained %s: only %lld of %lld values moved", P.items[i]->name, (long long)moved,
                      (long long)n);
    }
    /* the clipping norm is that of the trained gradients only: sqrt(sum of g^2) over 63 + 11
     * standard normals is about sqrt(74) = 8.6, never the sqrt(5689) = 75 of the whole table */
    KT_CHECKF(nm1[0] > 4 && nm1[0] < 14, "grad norm %g includes frozen gradients?", nm1[0]);
    kn_params_free(&P);
}

/* ------------------------------------------------- trainer: freeze_spatial */

/* One fixed clip (a bright square moving right over a dark gradient), so that a few steps on the
 * temporal layers alone can lower the loss. (3, T, S, S) in [-1, 1]. */
typedef struct { int size, frames; } clip_src;

static kn_status fixed_clip(uint64_t index, float *clip, char *caption, size_t cap, void *user) {
    (void)index;
    const clip_src *c = user;
    int S = c->size, T = c->frames;
    for (int ch = 0; ch < 3; ch++)
        for (int t = 0; t < T; t++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    int x0 = 2 + t * (S - 8) / (T > 1 ? T - 1 : 1), in = x >= x0 && x < x0 + 5 && y >= 5 && y < 10;
                    float v = in ? (ch == 0 ? 0.9f : -0.6f) : -0.8f + 0.4f * (float)y / S;
                    clip[((ch * T + t) * S + y) * S + x] = v;
                }
    snprintf(caption, cap, "a small red square moving right");
    return KN_OK;
}

typedef struct { double sum; int n; } loss_acc;

static int add_loss(const char *stage, int64_t step, int64_t steps, double loss, void *user) {
    (void)stage, (void)step, (void)steps;
    loss_acc *a = user;
    a->sum += loss;
    a->n++;
    return 0;
}

/* Mean loss over the draws of `steps` steps of seed `seed`, with the learning rate at 0 (AdamW
 * with lr 0 leaves every value as it is: the trainer is the evaluator, draws included). */
static double eval_loss(kn_unet3d *u, kn_clip_text *text, kn_vae *vae, const kn_recipe *r, const kn_train_data *d,
                        kn_arena *A, int steps) {
    kn_train_opts o = r->unet_opts;
    o.lr = o.lr_min = 0;
    o.ema_decay = 0;
    o.steps = steps;
    o.seed = 4242;
    o.cond_dropout = 0;
    o.freeze_spatial = 0;
    kn_stage_state su, st;
    loss_acc acc = {0, 0};
    if (kn_stage_state_init(&su, &u->P, &o) != KN_OK || kn_stage_state_init(&st, &text->P, &o) != KN_OK)
        return NAN;
    kn_status s = kn_train_unet(u, text, vae, &r->sched, &su, &st, &o, d, kt_toy_tokenize, NULL, A, add_loss, &acc);
    kn_stage_state_free(&su);
    kn_stage_state_free(&st);
    return s == KN_OK && acc.n ? acc.sum / acc.n : NAN;
}

KT_TEST(train_freeze_spatial_trains_only_temporal_layers) {
    kn_set_threads(2);
    kn_recipe r;
    KT_OK(kn_recipe_get("smoke", &r));
    clip_src cs = {16, 4};
    kn_train_data d = r.data;
    d.size = cs.size;
    d.frames = cs.frames;
    d.batch = 1;
    d.source = fixed_clip;
    d.source_user = &cs;
    kn_vae *vae = kn_vae_new(&r.vae);
    kn_clip_text *text = kn_clip_text_new(&r.text);
    kn_unet3d *u = kn_unet3d_new(&r.unet);
    kn_arena *A = kn_arena_new((size_t)1 << 30);
    KT_CHECK(vae && text && u && A);
    if (!vae || !text || !u || !A)
        return;
    kn_params_init_default(&vae->P, 1);
    kn_params_init_default(&text->P, 2);
    kn_params_init_default(&u->P, 3);
    kn_unet3d_init_temporal_identity(u);
    float *u0 = malloc(u->P.numel * sizeof(float)), *t0 = malloc(text->P.numel * sizeof(float));
    memcpy(u0, u->P.block, u->P.numel * sizeof(float));
    memcpy(t0, text->P.block, text->P.numel * sizeof(float));
    double before = eval_loss(u, text, vae, &r, &d, A, 4);
    KT_CHECK(!memcmp(u0, u->P.block, u->P.numel * sizeof(float))); /* lr 0 really is a no-op */

    kn_train_opts o = r.unet_opts;
    o.steps = 12;
    o.warmup = 1;
    o.lr = 3e-3;
    o.lr_min = 1e-3;
    o.cond_dropout = 0;
    o.freeze_spatial = 1;
    kn_stage_state su, st;
    KT_OK(kn_stage_state_init(&su, &u->P, &o));
    KT_OK(kn_stage_state_init(&st, &text->P, &o));
    loss_acc acc = {0, 0};
    KT_OK(kn_train_unet(u, text, vae, &r.sched, &su, &st, &o, &d, kt_toy_tokenize, NULL, A, add_loss, &acc));
    KT_CHECK(acc.n == 12 && su.step == 12 && st.step == 12);
    KT_CHECKF(su.opt.nfrozen > 0 && st.opt.step == 0, "%d frozen, text optimiser steps %lld", su.opt.nfrozen,
              (long long)st.opt.step);
    /* spatial parameters and the text encoder: bitwise as they were; temporal ones moved */
    int nspatial = 0, ntemporal = 0, moved = 0;
    for (int i = 0; i < u->P.n; i++) {
        const kn_param *p = u->P.items[i];
        int64_t off = (float *)p->var.v.data - u->P.block, n = kn_tensor_numel(&p->var.v);
        int same = !memcmp(u0 + off, u->P.block + off, (size_t)n * sizeof(float));
        if (kn_unet3d_temporal_param(p->name)) {
            ntemporal++;
            moved += !same;
        } else {
            nspatial++;
            KT_CHECKF(same, "spatial parameter %s changed", p->name);
        }
    }
    KT_CHECKF(ntemporal > 0 && moved == ntemporal, "%d of %d temporal tensors changed", moved, ntemporal);
    KT_CHECK(nspatial > 0);
    KT_CHECKF(!memcmp(t0, text->P.block, text->P.numel * sizeof(float)), "the frozen text encoder changed");
    /* the EMA (what is exported) of a frozen parameter is its value */
    KT_CHECK(su.have_ema);
    for (int i = 0; su.have_ema && i < u->P.n; i++) {
        const kn_param *p = u->P.items[i];
        int64_t off = (float *)p->var.v.data - u->P.block, n = kn_tensor_numel(&p->var.v);
        if (!kn_unet3d_temporal_param(p->name))
            KT_CHECKF(!memcmp(u0 + off, su.ema.w + off, (size_t)n * sizeof(float)), "EMA of %s moved", p->name);
    }
    double after = eval_loss(u, text, vae, &r, &d, A, 4);
    KT_CHECKF(isfinite(before) && after < before, "loss on fixed draws did not fall: %.5f -> %.5f", before, after);
    printf("  freeze_spatial: %d spatial tensors frozen (%lld values), %d temporal trained; eval loss %.5f -> %.5f\n",
           su.opt.nfrozen, (long long)su.opt.frozen_numel, ntemporal, before, after);
    kn_stage_state_free(&su);
    kn_stage_state_free(&st);
    free(u0);
    free(t0);
    kn_arena_free(A);
    kn_unet3d_free(u);
    kn_clip_text_free(text);
    kn_vae_free(vae);
}

/* ------------------------------------------------------------ CLI: --init */

/* 1 when tensor `name` has the same bytes in both files (0 when absent from either). */
static int same_tensor(const kn_safetensors *a, const kn_safetensors *b, const char *name) {
    kn_tensor x, y;
    if (kn_st_get(a, name, &x) != KN_OK || kn_st_get(b, name, &y) != KN_OK)
        return 0;
    return x.dtype == y.dtype && kn_tensor_same_shape(&x, &y) && !memcmp(x.data, y.data, kn_tensor_nbytes(&x));
}

/* Compares component `sub` of two model folders: *nsame spatial tensors equal of *nsp, *ntmp_diff
 * temporal tensors that differ of *ntmp. */
static void compare_models(const char *ma, const char *mb, const char *sub, const char *file, int *nsp, int *nsame,
                           int *ntmp, int *ntmp_diff) {
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/%s/%s", ma, sub, file);
    snprintf(pb, sizeof pb, "%s/%s/%s", mb, sub, file);
    kn_safetensors *a = kn_st_open(pa), *b = kn_st_open(pb);
    KT_CHECKF(a && b, "cannot open %s or %s", pa, pb);
    *nsp = *nsame = *ntmp = *ntmp_diff = 0;
    if (a && b) {
        KT_CHECK(kn_st_count(a) == kn_st_count(b));
        for (int i = 0; i < kn_st_count(a); i++) {
            const char *name = kn_st_name(a, i);
            int same = same_tensor(a, b, name);
            if (!strcmp(sub, "unet") && kn_unet3d_temporal_param(name)) {
                (*ntmp)++;
                *ntmp_diff += !same;
            } else {
                (*nsp)++;
                *nsame += same;
            }
        }
    }
    if (a) kn_st_close(a);
    if (b) kn_st_close(b);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A smoke model to start from (a few steps: what matters is that it is not the fresh init). */
static int base_model(char *out, size_t n, const char *d) {
    return kt_run(out, n, "%s train --recipe smoke --steps 2 --out '%s/base' --tokenizer '%s/clip' --quiet --threads 2",
                  kt_bin(), d, kt_fixtures());
}

KT_TEST(train_init_from_model_with_frozen_spatial_layers) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    int rc = base_model(out, sizeof out, d);
    KT_CHECKF(rc == 0, "base run: %s", out);
    rc = kt_run(out, sizeof out,
                "printf '{\"base\": \"smoke\", \"freeze_spatial\": true}' > '%s/fz.json' && %s train --config '%s/fz.json' "
                "--init '%s/base/model' --steps 4 --out '%s/ft' --tokenizer '%s/clip' --threads 2 --quiet",
                d, kt_bin(), d, d, d, kt_fixtures());
    KT_CHECKF(rc == 0 && strstr(out, "init: ") && strstr(out, "from --init"), "rc %d: %s", rc, out);
    /* the VAE stage was skipped: no vae rows; 4 unet rows */
    rc = kt_run(out, sizeof out, "grep -c '^vae,' '%s/ft/log.csv'; grep -c '^unet,' '%s/ft/log.csv'", d, d);
    KT_CHECKF(!strncmp(out, "0\n4\n", 4), "log rows: %s", out);
    char ma[700], mb[700];
    snprintf(ma, sizeof ma, "%s/base/model", d);
    snprintf(mb, sizeof mb, "%s/ft/model", d);
    int nsp, nsame, ntmp, ndiff;
    compare_models(ma, mb, "unet", "diffusion_pytorch_model.safetensors", &nsp, &nsame, &ntmp, &ndiff);
    KT_CHECKF(nsp > 0 && nsame == nsp, "unet: %d of %d spatial tensors equal the init model's", nsame, nsp);
    KT_CHECKF(ntmp > 0 && ndiff == ntmp, "unet: %d of %d temporal tensors trained", ndiff, ntmp);
    compare_models(ma, mb, "text_encoder", "model.safetensors", &nsp, &nsame, &ntmp, &ndiff);
    KT_CHECKF(nsp > 0 && nsame == nsp, "text encoder: %d of %d tensors equal", nsame, nsp);
    compare_models(ma, mb, "vae", "diffusion_pytorch_model.safetensors", &nsp, &nsame, &ntmp, &ndiff);
    KT_CHECKF(nsp > 0 && nsame == nsp, "vae: %d of %d tensors equal", nsame, nsp);
    /* the folder's latent scaling factor is kept */
    rc = kt_run(out, sizeof out, "cd '%s' && grep -o '\"scaling_factor\": *[0-9.e+-]*' base/model/vae/config.json > sa && "
                "grep -o '\"scaling_factor\": *[0-9.e+-]*' ft/model/vae/config.json > sb && cat sa && diff sa sb", d);
    KT_CHECKF(rc == 0 && strstr(out, "scaling_factor"), "scaling factor: %s", out);
}

/* An image model inflated: a folder whose UNet has no temporal tensors loads, those parameters are
 * reported new; a folder of another shape, or no folder at all, is a one-line error naming it. */
KT_TEST(train_init_reports_new_temporal_params_and_refuses_mismatches) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    int rc = base_model(out, sizeof out, d);
    KT_CHECKF(rc == 0, "base run: %s", out);
    /* base/model without the temporal tensors of its unet */
    rc = kt_run(out, sizeof out, "cp -r '%s/base/model' '%s/img'", d, d);
    KT_CHECK(rc == 0);
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/base/model/unet/diffusion_pytorch_model.safetensors", d);
    snprintf(dst, sizeof dst, "%s/img/unet/diffusion_pytorch_model.safetensors", d);
    kn_safetensors *st = kn_st_open(src);
    KT_CHECK(st != NULL);
    int ntemporal = 0;
    if (st) {
        kn_st_writer *w = kn_st_writer_new();
        for (int i = 0; i < kn_st_count(st); i++) {
            kn_tensor t;
            const char *name = kn_st_name(st, i);
            if (kn_unet3d_temporal_param(name)) {
                ntemporal++;
                continue;
            }
            KT_OK(kn_st_get(st, name, &t));
            KT_OK(kn_st_writer_add(w, name, &t));
        }
        KT_OK(kn_st_writer_write(w, dst));
        kn_st_writer_free(w);
        kn_st_close(st);
    }
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --init '%s/img' --steps 1 --out '%s/inflate' --tokenizer '%s/clip' "
                "--threads 2 --quiet", kt_bin(), d, d, kt_fixtures());
    char want[64];
    snprintf(want, sizeof want, "%d new temporal parameters", ntemporal);
    KT_CHECKF(rc == 0 && ntemporal > 0 && strstr(out, want), "rc %d, want '%s': %s", rc, want, out);
    /* a plain model into a cascade recipe's base UNet (fps-conditioned): the option embeddings
     * are new (zero output), the SR stages start from scratch */
    rc = kt_run(out, sizeof out, "%s train --recipe smoke-cascade --until base --init '%s/base/model' --steps 1 "
                "--out '%s/casc' --tokenizer '%s/clip' --threads 2 --quiet", kt_bin(), d, d, kt_fixtures());
    KT_CHECKF(rc == 0 && strstr(out, "new fps/noise-aug/text-pool embedding") && strstr(out, "tsr not in the folder"), "rc %d: %s",
              rc, out);
    /* a recipe of other sizes: the first tensor whose shape differs is named, on one line */
    rc = kt_run(out, sizeof out,
                "printf '{\"base\": \"smoke\", \"unet_channels\": [16, 32], \"unet_groups\": 8}' > '%s/small.json' && "
                "%s train --config '%s/small.json' --init '%s/base/model' --steps 1 --out '%s/bad' --tokenizer '%s/clip' "
                "--quiet 2>&1", d, kt_bin(), d, d, d, kt_fixtures());
    KT_CHECKF(rc != 0 && count_lines(out) == 1 && strstr(out, "conv_in.weight") && strstr(out, "shape"), "rc %d: %s", rc, out);
    /* a spatial tensor missing from the folder, and no folder at all: named, on one line */
    rc = kt_run(out, sizeof out, "cp -r '%s/base/model' '%s/cut' && cp '%s' '%s/cut/vae/diffusion_pytorch_model.safetensors'"
                " && %s train --recipe smoke --init '%s/cut' --steps 1 --out '%s/bad2' --tokenizer '%s/clip' --quiet 2>&1",
                d, d, dst, d, kt_bin(), d, d, kt_fixtures());
    KT_CHECKF(rc != 0 && count_lines(out) == 1 && strstr(out, "missing") && strstr(out, "cut/vae"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --init '%s/nope' --steps 1 --out '%s/bad3' --quiet 2>&1", kt_bin(),
                d, d);
    KT_CHECKF(rc != 0 && count_lines(out) == 1 && strstr(out, "nope"), "rc %d: %s", rc, out);
    /* a folder holding a VAE alone: a new model on that autoencoder (its VAE kept bitwise, the
     * VAE stage skipped); a text encoder without a UNet is a one-line error */
    rc = kt_run(out, sizeof out, "mkdir -p '%s/vonly' && cp -r '%s/base/model/vae' '%s/vonly/' && %s train --recipe smoke "
                "--init '%s/vonly' --steps 2 --out '%s/onvae' --tokenizer '%s/clip' --threads 2 --quiet 2>&1", d, d, d,
                kt_bin(), d, d, kt_fixtures());
    KT_CHECKF(rc == 0 && strstr(out, "VAE only"), "rc %d: %s", rc, out);
    {
        char ma[700], mb[700];
        snprintf(ma, sizeof ma, "%s/base/model", d);
        snprintf(mb, sizeof mb, "%s/onvae/model", d);
        int nsp, nsame, ntmp, ndiff;
        compare_models(ma, mb, "vae", "diffusion_pytorch_model.safetensors", &nsp, &nsame, &ntmp, &ndiff);
        KT_CHECKF(nsp > 0 && nsame == nsp, "vae: %d of %d tensors equal", nsame, nsp);
    }
    rc = kt_run(out, sizeof out, "grep -c '^vae,' '%s/onvae/log.csv'; grep -c '^unet,' '%s/onvae/log.csv'", d, d);
    KT_CHECKF(!strncmp(out, "0\n2\n", 4), "log rows (no vae stage, 2 unet steps): %s", out);
    rc = kt_run(out, sizeof out, "cp -r '%s/base/model/text_encoder' '%s/vonly/' && %s train --recipe smoke --init "
                "'%s/vonly' --steps 1 --out '%s/bad4' --tokenizer '%s/clip' --quiet 2>&1", d, d, kt_bin(), d, d,
                kt_fixtures());
    KT_CHECKF(rc != 0 && count_lines(out) == 1 && strstr(out, "unet"), "rc %d: %s", rc, out);
}

/* --resume: a run started with --init resumes exactly (same model bytes as an uninterrupted run)
 * and only with the same --init. */
KT_TEST(train_init_resume_checks_the_init_folder) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    int rc = base_model(out, sizeof out, d);
    KT_CHECKF(rc == 0, "base run: %s", out);
    char opts[1200];
    snprintf(opts, sizeof opts,
             "--recipe smoke --freeze-spatial --init '%s/base/model' --steps 3 --save-every 1 --quiet --tokenizer '%s/clip'",
             d, kt_fixtures());
    rc = kt_run(out, sizeof out, "%s train %s --threads 2 --out '%s/a'", kt_bin(), opts, d);
    KT_CHECKF(rc == 0, "%s", out);
    rc = kt_run(out, sizeof out, "%s train %s --threads 2 --out '%s/b' & pid=$!; "
                "for i in $(seq 1 600); do [ -f '%s/b/last.safetensors' ] && break; sleep 0.05; done; "
                "kill -9 $pid; wait $pid; echo killed=$?", kt_bin(), opts, d, d);
    KT_CHECKF(strstr(out, "killed=") != NULL, "%s", out);
    /* without --init, with another folder, or without --freeze-spatial, the checkpoint is refused */
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --freeze-spatial --steps 3 --save-every 1 --quiet "
                "--tokenizer '%s/clip' --out '%s/b' --resume", kt_bin(), kt_fixtures(), d);
    KT_CHECKF(rc != 0 && strstr(out, "another recipe or options"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --freeze-spatial --init '%s/a/model' --steps 3 --save-every 1 "
                "--quiet --tokenizer '%s/clip' --out '%s/b' --resume", kt_bin(), d, kt_fixtures(), d);
    KT_CHECKF(rc != 0 && strstr(out, "another recipe or options"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --init '%s/base/model' --steps 3 --save-every 1 --quiet "
                "--tokenizer '%s/clip' --out '%s/b' --resume", kt_bin(), d, kt_fixtures(), d);
    KT_CHECKF(rc != 0 && strstr(out, "another recipe or options"), "rc %d: %s", rc, out);
    /* with the same --init (other threads) it finishes as the uninterrupted run did */
    rc = kt_run(out, sizeof out, "%s train %s --threads 1 --out '%s/b' --resume", kt_bin(), opts, d);
    KT_CHECKF(rc == 0 && strstr(out, "resumed from"), "resume: %s", out);
    rc = kt_run(out, sizeof out, "cd '%s' && cut -d, -f1-3 a/log.csv > la && cut -d, -f1-3 b/log.csv > lb && diff la lb && "
                "cmp a/model/unet/diffusion_pytorch_model.safetensors b/model/unet/diffusion_pytorch_model.safetensors && "
                "cmp a/model/text_encoder/model.safetensors b/model/text_encoder/model.safetensors && echo same", d);
    KT_CHECKF(rc == 0 && strstr(out, "same"), "resumed run differs: %s", out);
}

/* freeze_spatial skips the frozen weights' gradients in backward (requires_grad off) and the text
 * encoder's backward altogether; the reference does neither — every gradient computed, the
 * spatial UNet parameters and the whole text encoder frozen in the optimisers only. The trained
 * weights must agree bit for bit (with activation checkpointing as well). */
static int frozen_spatial_pred(const char *name, void *user) {
    (void)user;
    return !kn_unet3d_temporal_param(name);
}

static int all_pred(const char *name, void *user) {
    (void)name, (void)user;
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double run_frozen(int mode, float *uout, size_t un, double *secs) {
    kn_recipe r;
    if (kn_recipe_get("smoke", &r) != KN_OK)
        return NAN;
    static clip_src cs = {16, 4};
    kn_train_data d = r.data;
    d.size = cs.size;
    d.frames = cs.frames;
    d.batch = 2;
    d.source = fixed_clip;
    d.source_user = &cs;
    kn_vae *vae = kn_vae_new(&r.vae);
    kn_clip_text *text = kn_clip_text_new(&r.text);
    kn_unet3d *u = kn_unet3d_new(&r.unet);
    kn_arena *A = kn_arena_new((size_t)1 << 30);
    double loss = NAN;
    if (!vae || !text || !u || !A || u->P.numel != un)
        goto out;
    kn_params_init_default(&vae->P, 1);
    kn_params_init_default(&text->P, 2);
    kn_params_init_default(&u->P, 3);
    kn_unet3d_init_temporal_identity(u);
    kn_train_opts o = r.unet_opts;
    o.steps = 3;
    o.warmup = 1;
    o.freeze_spatial = mode != 0;
    o.checkpointing = mode == 2;
    kn_stage_state su, st;
    loss_acc acc = {0, 0};
    if (kn_stage_state_init(&su, &u->P, &o) != KN_OK || kn_stage_state_init(&st, &text->P, &o) != KN_OK)
        goto out;
    if (mode == 0) {
        KT_OK(kn_adamw_freeze(&su.opt, frozen_spatial_pred, NULL, NULL));
        KT_OK(kn_adamw_freeze(&st.opt, all_pred, NULL, NULL));
    }
    double t0 = now_s();
    if (kn_train_unet(u, text, vae, &r.sched, &su, &st, &o, &d, kt_toy_tokenize, NULL, A, add_loss, &acc) == KN_OK && acc.n)
        loss = acc.sum / acc.n;
    *secs = now_s() - t0;
    memcpy(uout, u->P.block, un * sizeof(float));
    for (int i = 0; i < u->P.n; i++) /* every parameter trainable again afterwards */
        KT_CHECK(u->P.items[i]->var.requires_grad == 1);
    kn_stage_state_free(&su);
    kn_stage_state_free(&st);
out:
    kn_arena_free(A);
    kn_unet3d_free(u);
    kn_clip_text_free(text);
    kn_vae_free(vae);
    return loss;
}

KT_TEST(train_freeze_spatial_skips_gradients_exactly) {
    kn_set_threads(2);
    kn_recipe r;
    KT_OK(kn_recipe_get("smoke", &r));
    kn_unet3d *probe = kn_unet3d_new(&r.unet);
    KT_CHECK(probe != NULL);
    if (!probe)
        return;
    size_t un = probe->P.numel;
    kn_unet3d_free(probe);
    float *ref = malloc(un * sizeof(float)), *fast = malloc(un * sizeof(float)), *ckpt = malloc(un * sizeof(float));
    double t_ref, t_fast, t_ckpt;
    double l_ref = run_frozen(0, ref, un, &t_ref);
    double l_fast = run_frozen(1, fast, un, &t_fast);
    double l_ckpt = run_frozen(2, ckpt, un, &t_ckpt);
    KT_CHECKF(isfinite(l_ref) && l_ref == l_fast && l_ref == l_ckpt, "losses %.9g %.9g %.9g", l_ref, l_fast, l_ckpt);
    KT_CHECKF(!memcmp(ref, fast, un * sizeof(float)), "freeze_spatial differs from freezing in the optimiser");
    KT_CHECKF(!memcmp(ref, ckpt, un * sizeof(float)), "freeze_spatial with checkpointing differs");
    printf("  3 steps: all gradients %.2f s, freeze_spatial %.2f s, with checkpointing %.2f s\n", t_ref, t_fast, t_ckpt);
    free(ref);
    free(fast);
    free(ckpt);
}
