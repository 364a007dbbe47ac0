/* test_cascade_train.c — the SR stage trainer (train/cascade.h): the loss falls for the temporal
 * and spatial stages, runs are bitwise reproducible across thread counts and across a stop and
 * resume, config mismatches fail with one line before any work, gradients reach the cascade
 * inputs (fps embedding, cond slice of conv_in), and the noise conditioning augmentation really
 * noises the cond, the option draws and the rank reach the model, mixed image batches and
 * spatial-only UNets work. Tiny frozen VAE (8/16 channels) and text encoder, UNet 8/16 or 16/32
 * channels, 16-32 px.
 *
 * KINEMA_SR_BENCH=N (threads, 0: 2) adds a timing run (cascade_train_bench): seconds per step of a 48/96-channel
 * tsr (16 frames, 16x16 latents, batch 2) and ssr (4 frames, 32x32 latents, batch 2). */
#include "kt.h"

#include "train/cascade.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TXT_D 16
#define TXT_L 16

typedef struct {
    kn_vae *vae;
    kn_clip_text *text;
    kn_arena *A;
    kn_sched_config sched;
} env;

static int env_init_arena(env *e, int size, size_t arena_bytes) {
    memset(e, 0, sizeof *e);
    kn_vae_config v = kn_vae_config_default();
    v.nblocks = 2;
    v.block_out_channels[0] = 8;
    v.block_out_channels[1] = 16;
    v.layers_per_block = 1;
    v.norm_num_groups = 4;
    v.latent_channels = 4;
    v.scaling_factor = 1.0f;
    e->vae = kn_vae_new(&v);
    kn_clip_text_config t = kn_clip_text_config_default();
    t.vocab_size = 256;
    t.hidden_size = TXT_D;
    t.intermediate_size = 32;
    t.num_hidden_layers = 1;
    t.num_attention_heads = 2;
    t.max_position_embeddings = TXT_L;
    t.hidden_act = KN_ACT_GELU;
    t.eos_token_id = 255;
    e->text = kn_clip_text_new(&t);
    e->A = kn_arena_new(arena_bytes);
    e->sched = kn_sched_config_modelscope();
    KT_CHECKF(e->vae && e->text && e->A, "setup: %s", kn_last_error());
    if (!e->vae || !e->text || !e->A)
        return 0;
    kn_params_init_default(&e->vae->P, 11);
    kn_params_init_default(&e->text->P, 12);
    /* latents of unit scale, as a trained pipeline has them */
    kn_train_data d = {.size = size, .frames = 2, .fps = 8, .batch = 1};
    float sc = 1;
    KT_OK(kn_vae_measure_scale(e->vae, &d, 5, 2, e->A, &sc));
    e->vae->cfg.scaling_factor = sc;
    return 1;
}

static int env_init(env *e, int size) { return env_init_arena(e, size, (size_t)512 << 20); }

static void env_free(env *e) {
    if (e->vae) kn_vae_free(e->vae);
    if (e->text) kn_clip_text_free(e->text);
    if (e->A) kn_arena_free(e->A);
}

static kn_unet3d_config sr_config(kn_sr_kind kind, int noise_aug, int c0, int c1) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){c0, c1}, (const int[]){1, 0}, 4, 4, TXT_D);
    c.in_channels = c.out_channels = 4;
    if (kind == KN_SR_TEMPORAL) {
        c.fps_cond = 1;
        c.cond_channels = 5;
    } else {
        c.cond_channels = 4;
        c.temporal_attention = 0; /* Imagen Video's SR: temporal convs only */
    }
    c.noise_aug_cond = noise_aug;
    return c;
}

static kn_unet3d *sr_model(const kn_unet3d_config *cfg, uint64_t seed) {
    kn_unet3d *u = kn_unet3d_new(cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (u)
        kn_params_init_default(&u->P, seed);
    return u;
}

static kn_sr_opts tsr_opts(void) {
    kn_sr_opts so = {.kind = KN_SR_TEMPORAL, .nfps = 2, .fps = {8, 16}, .nskips = 2, .skips = {2, 4},
                     .p_extrapolate = 0.25f};
    return so;
}

static kn_sr_opts ssr_opts(int noise_aug_max) {
    kn_sr_opts so = {.kind = KN_SR_SPATIAL, .scale = 2, .noise_aug_max = noise_aug_max};
    return so;
}

static kn_train_opts train_opts(int64_t steps) {
    kn_train_opts o = {.steps = steps, .lr = 2e-3, .lr_min = 2e-4, .weight_decay = 0.01, .grad_clip = 1.0,
                       .ema_decay = 0.9, .warmup = 5, .objective = KN_PRED_EPS, .min_snr_gamma = 5.0,
                       .cond_dropout = 0.2, .seed = 7};
    return o;
}

/* progress: records the losses, stops after step `stop` (-1: never) */
typedef struct {
    double loss[256];
    int64_t stop, last;
    char stage[8];
} rec;

static int on_progress(const char *stage, int64_t step, int64_t steps, double loss, void *user) {
    rec *r = user;
    (void)steps;
    if (step >= 0 && step < 256)
        r->loss[step] = loss;
    if (getenv("KINEMA_SR_VERBOSE"))
        fprintf(stderr, "%s %lld %.12f\n", stage, (long long)step, loss);
    r->last = step;
    snprintf(r->stage, sizeof r->stage, "%s", stage);
    return step == r->stop;
}

/* Trains `u` for o->steps from a fresh stage state; with stop >= 0, stops there and resumes. */
static kn_status train(env *e, kn_unet3d *u, const kn_sr_opts *so, const kn_train_opts *o, const kn_train_data *d,
                       int64_t stop, rec *r) {
    kn_stage_state s;
    memset(r, 0, sizeof *r);
    r->stop = stop;
    KN_TRY(kn_stage_state_init(&s, &u->P, o));
    kn_status st = kn_train_sr(u, so, e->text, e->vae, &e->sched, &s, o, d, kt_toy_tokenize, NULL, e->A, on_progress, r);
    if (st == KN_OK && stop >= 0) {
        if (s.step != stop + 1)
            st = kn_fail(KN_ERR_INTERNAL, "stopped at step counter %lld, expected %lld", (long long)s.step,
                         (long long)stop + 1);
        else {
            r->stop = -1;
            st = kn_train_sr(u, so, e->text, e->vae, &e->sched, &s, o, d, kt_toy_tokenize, NULL, e->A, on_progress, r);
        }
    }
    if (st == KN_OK && s.step != o->steps)
        st = kn_fail(KN_ERR_INTERNAL, "step counter %lld after the run, expected %lld", (long long)s.step,
                     (long long)o->steps);
    kn_stage_state_free(&s);
    return st;
}

static double mean_of(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s / n;
}

static double grad_abs_sum(const kn_unet3d *u, const char *name, int64_t lo, int64_t hi) {
    kn_param *p = kn_params_find(&u->P, name);
    if (!p || !p->var.g.data)
        return -1;
    double s = 0;
    const float *g = p->var.g.data;
    for (int64_t i = lo; i < hi; i++)
        s += fabs(g[i]);
    return s;
}

/* ---------------------------------------------------------------------------------------------- */

#define NSTEPS 40
KT_TEST(cascade_train_tsr_loss_falls_and_grads_reach_inputs) {
    env e;
    if (!env_init(&e, 16)) goto out;
    kn_unet3d_config cfg = sr_config(KN_SR_TEMPORAL, 0, 16, 32);
    kn_unet3d *u = sr_model(&cfg, 3);
    if (!u) goto out;
    kn_sr_opts so = tsr_opts();
    kn_train_opts o = train_opts(NSTEPS);
    o.min_snr_gamma = 0; /* uniform weighting: a less noisy curve */
    kn_train_data d = {.size = 16, .frames = 6, .batch = 2};
    rec r;
    KT_OK(train(&e, u, &so, &o, &d, -1, &r));
    KT_CHECK(!strcmp(r.stage, "tsr") && r.last == NSTEPS - 1);
    double a = mean_of(r.loss, 10), b = mean_of(r.loss + NSTEPS - 10, 10);
    KT_CHECKF(b < 0.85 * a, "tsr loss did not fall: first 10 %g, last 10 %g", a, b);
    /* the last step's gradients: fps embedding and every input slice of conv_in */
    KT_CHECK(grad_abs_sum(u, "fps_embedding.linear_1.weight", 0, 16 * 64) > 0);
    KT_CHECK(grad_abs_sum(u, "fps_embedding.linear_2.weight", 0, 64 * 64) > 0);
    kn_param *ci = kn_params_find(&u->P, "conv_in.weight"); /* (16, 4 + 5, 3, 3) */
    KT_CHECK(ci && ci->var.v.shape[1] == 9);
    double gx = 0, gc = 0, gm = 0;
    for (int oc = 0; ci && oc < 16; oc++) {
        gx += grad_abs_sum(u, "conv_in.weight", (oc * 9 + 0) * 9, (oc * 9 + 4) * 9);
        gc += grad_abs_sum(u, "conv_in.weight", (oc * 9 + 4) * 9, (oc * 9 + 8) * 9);
        gm += grad_abs_sum(u, "conv_in.weight", (oc * 9 + 8) * 9, (oc * 9 + 9) * 9);
    }
    KT_CHECKF(gx > 0 && gc > 0 && gm > 0, "conv_in grads: sample %g, masked frames %g, mask %g", gx, gc, gm);
    kn_unet3d_free(u);
out:
    env_free(&e);
}

KT_TEST(cascade_train_ssr_loss_falls) {
    env e;
    if (!env_init(&e, 32)) goto out;
    kn_unet3d_config cfg = sr_config(KN_SR_SPATIAL, 1, 16, 32);
    kn_unet3d *u = sr_model(&cfg, 4);
    if (!u) goto out;
    kn_sr_opts so = ssr_opts(250);
    kn_train_opts o = train_opts(40);
    o.min_snr_gamma = 0; /* uniform weighting: a less noisy curve */
    kn_train_data d = {.size = 32, .frames = 2, .fps = 8, .batch = 2};
    rec r;
    KT_OK(train(&e, u, &so, &o, &d, -1, &r));
    KT_CHECK(!strcmp(r.stage, "ssr") && r.last == 39);
    double a = mean_of(r.loss, 10), b = mean_of(r.loss + 30, 10);
    KT_CHECKF(b < 0.85 * a, "ssr loss did not fall: first 10 %g, last 10 %g", a, b);
    KT_CHECK(grad_abs_sum(u, "aug_embedding.linear_2.weight", 0, 64 * 64) > 0);
    kn_unet3d_free(u);
out:
    env_free(&e);
}

/* Same seed: bitwise the same weights and losses for 1 and 2 threads, and for a run at 3 threads
 * with gradient checkpointing toggled, stopped by the progress callback after step 2 and resumed
 * with the same stage state. */
static void check_reproducible(kn_sr_kind kind) {
    env e;
    int size = kind == KN_SR_TEMPORAL ? 16 : 32;
    if (!env_init(&e, size)) goto out;
    kn_unet3d_config cfg = sr_config(kind, kind == KN_SR_SPATIAL, 16, 32);
    kn_sr_opts so = kind == KN_SR_TEMPORAL ? tsr_opts() : ssr_opts(500);
    kn_train_opts o = train_opts(6);
    o.objective = kind == KN_SR_TEMPORAL ? KN_PRED_EPS : KN_PRED_V;
    o.checkpointing = kind == KN_SR_SPATIAL;
    kn_train_data d = {.size = size, .frames = kind == KN_SR_TEMPORAL ? 6 : 2, .fps = 8, .batch = 2};
    kn_unet3d *u[3] = {sr_model(&cfg, 9), sr_model(&cfg, 9), sr_model(&cfg, 9)};
    static rec r[3];
    if (!u[0] || !u[1] || !u[2]) goto out2;
    int prev = kn_set_threads(2);
    KT_OK(train(&e, u[0], &so, &o, &d, -1, &r[0]));
    kn_set_threads(1);
    KT_OK(train(&e, u[1], &so, &o, &d, -1, &r[1]));
    kn_set_threads(3);
    kn_train_opts o2 = o;
    o2.checkpointing = !o.checkpointing; /* recomputation in backward changes no bit either */
    KT_OK(train(&e, u[2], &so, &o2, &d, 2, &r[2])); /* steps 0..2, stop, resume 3..5 */
    kn_set_threads(prev);
    for (int k = 1; k < 3; k++) {
        KT_CHECKF(memcmp(r[0].loss, r[k].loss, 6 * sizeof(double)) == 0, "run %d: losses differ (%.9g vs %.9g at 5)", k,
                  r[0].loss[5], r[k].loss[5]);
        KT_CHECKF(u[0]->P.block_bytes == u[k]->P.block_bytes &&
                      memcmp(u[0]->P.block, u[k]->P.block, u[0]->P.block_bytes) == 0,
                  "run %d: weights differ", k);
    }
    /* and the weights did move */
    kn_unet3d *u0 = sr_model(&cfg, 9);
    if (u0) {
        KT_CHECK(memcmp(u0->P.block, u[0]->P.block, u0->P.block_bytes) != 0);
        kn_unet3d_free(u0);
    }
out2:
    for (int k = 0; k < 3; k++)
        if (u[k]) kn_unet3d_free(u[k]);
out:
    env_free(&e);
}

KT_TEST(cascade_train_tsr_reproducible_threads_and_resume) { check_reproducible(KN_SR_TEMPORAL); }
KT_TEST(cascade_train_ssr_reproducible_threads_and_resume) { check_reproducible(KN_SR_SPATIAL); }

/* Every mismatch fails at once with one line naming the problem, and trains nothing. */
KT_TEST(cascade_train_config_mismatches) {
    env e;
    if (!env_init(&e, 16)) goto out;
    kn_train_opts o = train_opts(2);
    kn_train_data d = {.size = 16, .frames = 8, .fps = 8, .batch = 1};
    struct {
        kn_sr_kind kind;
        int cond_channels, fps_cond, noise_aug_cond, noise_aug_max, size, scale, skip;
        const char *expect;
    } cases[] = {
        {KN_SR_TEMPORAL, 4, 1, 0, 0, 16, 0, 2, "cond_channels 4"},
        {KN_SR_TEMPORAL, 5, 0, 0, 0, 16, 0, 2, "fps_cond"},
        {KN_SR_TEMPORAL, 5, 1, 1, 0, 16, 0, 2, "noise_aug"},
        {KN_SR_TEMPORAL, 5, 1, 0, 100, 16, 0, 2, "noise_aug"},
        {KN_SR_TEMPORAL, 5, 1, 0, 0, 16, 0, 1, "skip 1"},
        {KN_SR_TEMPORAL, 5, 1, 0, 0, 15, 0, 2, "not divisible"},
        {KN_SR_SPATIAL, 5, 0, 0, 0, 16, 2, 0, "cond_channels 5"},
        {KN_SR_SPATIAL, 4, 0, 1, 0, 16, 2, 0, "noise_aug"},
        {KN_SR_SPATIAL, 4, 0, 0, 0, 18, 2, 0, "not divisible"},
        {KN_SR_SPATIAL, 4, 0, 0, 0, 16, 1, 0, "scale 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kn_unet3d_config cfg = sr_config(cases[i].kind, cases[i].noise_aug_cond, 8, 16);
        cfg.cond_channels = cases[i].cond_channels;
        cfg.fps_cond = cases[i].fps_cond;
        kn_unet3d *u = sr_model(&cfg, 1);
        if (!u) continue;
        kn_sr_opts so = cases[i].kind == KN_SR_TEMPORAL ? tsr_opts() : ssr_opts(cases[i].noise_aug_max);
        so.noise_aug_max = cases[i].noise_aug_max;
        so.skips[0] = so.skips[1] = cases[i].skip;
        if (cases[i].scale) so.scale = cases[i].scale;
        d.size = cases[i].size;
        kn_stage_state s;
        KT_OK(kn_stage_state_init(&s, &u->P, &o));
        rec r = {.stop = -1, .last = -1};
        kn_status st = kn_train_sr(u, &so, e.text, e.vae, &e.sched, &s, &o, &d, kt_toy_tokenize, NULL, e.A, on_progress, &r);
        const char *msg = kn_last_error();
        KT_CHECKF(st == KN_ERR_ARG && strstr(msg, cases[i].expect) && !strchr(msg, '\n'),
                  "case %zu: status %d, message '%s' (expected '%s')", i, (int)st, msg, cases[i].expect);
        KT_CHECKF(s.step == 0 && r.last == -1, "case %zu: trained before failing", i);
        kn_stage_state_free(&s);
        kn_unet3d_free(u);
    }
out:
    env_free(&e);
}

/* The augmentation noise reaches the UNet: with the level embedding zeroed (so the level itself
 * has no path to the output), the first loss still depends on noise_aug_max, through the cond. */
KT_TEST(cascade_train_ssr_noise_aug_applied) {
    env e;
    if (!env_init(&e, 32)) goto out;
    kn_unet3d_config cfg = sr_config(KN_SR_SPATIAL, 1, 16, 32);
    kn_train_opts o = train_opts(1);
    o.cond_dropout = 0;
    kn_train_data d = {.size = 32, .frames = 2, .fps = 8, .batch = 2};
    double loss[3] = {0};
    const int maxes[3] = {1, 999, 999};
    for (int k = 0; k < 3; k++) {
        kn_unet3d *u = sr_model(&cfg, 5);
        if (!u) goto out;
        kn_param *p = kn_params_find(&u->P, "aug_embedding.linear_2.weight");
        kn_param *pb = kn_params_find(&u->P, "aug_embedding.linear_2.bias");
        KT_CHECK(p && pb);
        if (p) memset(p->var.v.data, 0, kn_tensor_nbytes(&p->var.v));
        if (pb) memset(pb->var.v.data, 0, kn_tensor_nbytes(&pb->var.v));
        kn_sr_opts so = ssr_opts(maxes[k]);
        rec r;
        KT_OK(train(&e, u, &so, &o, &d, -1, &r));
        loss[k] = r.loss[0];
        kn_unet3d_free(u);
    }
    KT_CHECKF(loss[1] == loss[2], "same options, different losses: %.9g %.9g", loss[1], loss[2]);
    KT_CHECKF(fabs(loss[0] - loss[1]) > 1e-6 * fabs(loss[0]), "noise_aug_max 1 and 999 give the same loss %.9g",
              loss[0]);
out:
    env_free(&e);
}

/* The draws of the options reach the model: the first step's loss changes with the mask kind,
 * the skip, the fps, the rank; grad_sync runs once per step and its failure stops the run. */
typedef struct {
    int calls, fail_at;
} sync_rec;

static kn_status count_sync(kn_params *P, void *user) {
    sync_rec *r = user;
    (void)P;
    if (++r->calls == r->fail_at)
        return kn_fail(KN_ERR_IO, "grad sync: peer went away");
    return KN_OK;
}

KT_TEST(cascade_train_tsr_options_reach_the_model) {
    env e;
    if (!env_init(&e, 16)) goto out;
    kn_unet3d_config cfg = sr_config(KN_SR_TEMPORAL, 0, 8, 16);
    kn_train_data d = {.size = 16, .frames = 4, .batch = 1};
    enum { NV = 6 };
    double first[NV];
    for (int k = 0; k < NV; k++) {
        kn_unet3d *u = sr_model(&cfg, 5);
        if (!u) goto out;
        kn_sr_opts so = {.kind = KN_SR_TEMPORAL, .nfps = 1, .fps = {8}, .nskips = 1, .skips = {2}};
        kn_train_opts o = train_opts(2);
        o.cond_dropout = 0;
        sync_rec sr = {0, 0};
        o.grad_sync = count_sync;
        o.grad_sync_user = &sr;
        if (k == 1) so.p_extrapolate = 1;   /* extrapolation mask */
        if (k == 2) so.skips[0] = 4;        /* another skip */
        if (k == 3) so.fps[0] = 16;         /* another rate (clip and fps embedding) */
        if (k == 4) o.rank = 1, o.world = 2; /* another rank's samples */
        if (k == 5) sr.fail_at = 2;
        rec r;
        kn_status st = train(&e, u, &so, &o, &d, -1, &r);
        if (k == 5) {
            KT_CHECKF(st == KN_ERR_IO && strstr(kn_last_error(), "peer went away") && r.last == 0,
                      "grad_sync failure: status %d, last step %lld, '%s'", (int)st, (long long)r.last, kn_last_error());
        } else {
            KT_OK(st);
            KT_CHECKF(sr.calls == 2, "grad_sync called %d times in 2 steps", sr.calls);
        }
        first[k] = r.loss[0];
        kn_unet3d_free(u);
    }
    for (int k = 1; k < 5; k++)
        KT_CHECKF(first[k] != first[0], "variant %d: the first loss %.9g did not change", k, first[k]);
    KT_CHECK(first[5] == first[0]);
out:
    env_free(&e);
}

/* Data parallelism: rank r of 2 (batch 1 each) draws exactly the samples of one process with
 * batch 2, so at step 0 (same weights) the mean of the two ranks' losses is the batch-2 loss. */
KT_TEST(cascade_train_ranks_split_the_batch) {
    env e;
    if (!env_init(&e, 16)) goto out;
    for (int kind = 0; kind < 2; kind++) {
        kn_unet3d_config cfg = sr_config((kn_sr_kind)kind, kind == KN_SR_SPATIAL, 8, 16);
        kn_sr_opts so = kind == KN_SR_TEMPORAL ? tsr_opts() : ssr_opts(300);
        double l[3];
        for (int k = 0; k < 3; k++) {
            kn_unet3d *u = sr_model(&cfg, 8);
            if (!u) goto out;
            kn_train_opts o = train_opts(1);
            kn_train_data d = {.size = 16, .frames = 4, .fps = 8, .batch = k < 2 ? 1 : 2};
            if (k < 2)
                o.rank = k, o.world = 2;
            rec r;
            KT_OK(train(&e, u, &so, &o, &d, -1, &r));
            l[k] = r.loss[0];
            kn_unet3d_free(u);
        }
        KT_CHECKF(l[0] != l[1], "%s: both ranks drew the same samples", kind ? "ssr" : "tsr");
        KT_NEAR(0.5 * (l[0] + l[1]), l[2], 1e-5 * l[2]);
    }
out:
    env_free(&e);
}

/* A mixed batch of the spatial stage (joint image-video training): the image sample's temporal
 * layers are skipped, which changes the loss; the run stays reproducible. */
static int odd_is_image(uint64_t index, void *user) {
    (void)user;
    return (int)(index & 1);
}

KT_TEST(cascade_train_ssr_mixed_image_batch) {
    env e;
    if (!env_init(&e, 16)) goto out;
    kn_unet3d_config cfg = sr_config(KN_SR_SPATIAL, 0, 8, 16);
    double first[3];
    for (int k = 0; k < 3; k++) {
        kn_unet3d *u = sr_model(&cfg, 6);
        if (!u) goto out;
        kn_sr_opts so = ssr_opts(0);
        kn_train_opts o = train_opts(2);
        kn_train_data d = {.size = 16, .frames = 3, .fps = 8, .batch = 2, .is_image = k ? odd_is_image : NULL};
        rec r;
        KT_OK(train(&e, u, &so, &o, &d, -1, &r));
        first[k] = r.loss[0];
        kn_unet3d_free(u);
    }
    KT_CHECKF(first[1] != first[0] && first[1] == first[2], "losses: videos %.9g, mixed %.9g, mixed again %.9g",
              first[0], first[1], first[2]);
out:
    env_free(&e);
}

/* Make-A-Video's spatial SR: a spatial-only UNet (no temporal layers) trains, and since it has
 * no temporal layers, marking samples as images changes nothing, bit for bit. */
KT_TEST(cascade_train_ssr_spatial_only) {
    env e;
    if (!env_init(&e, 16)) goto out;
    kn_unet3d_config cfg = sr_config(KN_SR_SPATIAL, 0, 8, 16);
    cfg.spatial_only = 1;
    double loss[2][3];
    for (int k = 0; k < 2; k++) {
        kn_unet3d *u = sr_model(&cfg, 2);
        if (!u) goto out;
        KT_CHECK(!u->has_tconv && !u->has_tattn);
        kn_sr_opts so = ssr_opts(0);
        kn_train_opts o = train_opts(3);
        kn_train_data d = {.size = 16, .frames = 3, .fps = 8, .batch = 2, .is_image = k ? odd_is_image : NULL};
        rec r;
        KT_OK(train(&e, u, &so, &o, &d, -1, &r));
        memcpy(loss[k], r.loss, sizeof loss[k]);
        kn_unet3d_free(u);
    }
    KT_CHECK(isfinite(loss[0][2]) && loss[0][2] > 0);
    KT_CHECKF(memcmp(loss[0], loss[1], sizeof loss[0]) == 0, "image flags changed a spatial-only run: %.9g vs %.9g",
              loss[0][2], loss[1][2]);
out:
    env_free(&e);
}

/* Shapes of the stages at other sizes (small by default); with KINEMA_SR_BENCH=threads the
 * measured configs: 48/96-channel stages, batch 2, tsr 16 frames of 16x16 latents, ssr 4 frames of
 * 32x32 latents, 3 timed steps after 1 warm-up, seconds per step printed to stderr. */
KT_TEST(cascade_train_bench) {
    const char *bench = getenv("KINEMA_SR_BENCH");
    int prev = kn_set_threads(bench && atoi(bench) > 0 ? atoi(bench) : kn_get_threads());
    for (int kind = 0; kind < 2; kind++) {
        int size = kind == KN_SR_TEMPORAL ? (bench ? 32 : 16) : (bench ? 64 : 16); /* VAE f = 2 */
        int c0 = bench ? 48 : 8, c1 = bench ? 96 : 16;
        env e;
        if (!env_init_arena(&e, size, bench ? (size_t)6 << 30 : (size_t)256 << 20)) {
            env_free(&e);
            break;
        }
        kn_unet3d_config cfg = sr_config((kn_sr_kind)kind, kind == KN_SR_SPATIAL, c0, c1);
        if (bench) {
            cfg.norm_num_groups = 16;
            cfg.attention_head_dim = 8;
        }
        kn_unet3d *u = sr_model(&cfg, 1);
        kn_sr_opts so = kind == KN_SR_TEMPORAL ? tsr_opts() : ssr_opts(500);
        kn_train_opts o = train_opts(4);
        kn_train_data d = {.size = size, .frames = kind == KN_SR_TEMPORAL ? (bench ? 16 : 4) : (bench ? 4 : 1), .fps = 8,
                           .batch = 2};
        kn_stage_state s;
        rec r = {.stop = 0}; /* warm-up: stop after step 0 */
        if (u && kn_stage_state_init(&s, &u->P, &o) == KN_OK) {
            KT_OK(kn_train_sr(u, &so, e.text, e.vae, &e.sched, &s, &o, &d, kt_toy_tokenize, NULL, e.A, on_progress, &r));
            struct timespec t0, t1, c0t, c1t;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0t);
            r.stop = -1;
            KT_OK(kn_train_sr(u, &so, e.text, e.vae, &e.sched, &s, &o, &d, kt_toy_tokenize, NULL, e.A, on_progress, &r));
            clock_gettime(CLOCK_MONOTONIC, &t1);
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1t);
            KT_CHECKF(s.step == 4 && r.last == 3 && isfinite(r.loss[3]) && r.loss[3] > 0, "%s: step %lld, loss %g",
                      kind ? "ssr" : "tsr", (long long)s.step, r.loss[3]);
            double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            double cpu = (double)(c1t.tv_sec - c0t.tv_sec) + 1e-9 * (double)(c1t.tv_nsec - c0t.tv_nsec);
            if (bench) /* CPU seconds too: the machine may be shared */
                fprintf(stderr, "bench %s %d/%d batch 2, %d frames, %dx%d latents, %d threads: %.3f s/step wall, "
                        "%.3f CPU s/step, arena peak %.1f MB\n", kind == KN_SR_TEMPORAL ? "tsr" : "ssr", c0, c1,
                        d.frames, size / 2, size / 2, kn_get_threads(), sec / 3, cpu / 3, kn_arena_peak(e.A) / 1e6);
            kn_stage_state_free(&s);
        }
        if (u) kn_unet3d_free(u);
        env_free(&e);
    }
    kn_set_threads(prev);
}
