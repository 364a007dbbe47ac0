/* test_train_clip.c — the CLIP stage (src/train/clip_train.h): the hand-written InfoNCE head
 * against finite differences, a tiny text encoder + video tower that learn to retrieve held clips
 * from their captions, bitwise equality across thread counts, and `kinema train --until clip`
 * + `--resume` against a straight run. */
#include "kt.h"

#include "train/recipes.h"

#include <stdlib.h>
#include <string.h>

/* symmetric InfoNCE with L2 normalisation: gradients w.r.t. the unnormalised u, v and the
 * log-scale against central differences of the loss (double accumulation inside) */
KT_TEST(clip_infonce_gradient_matches_finite_differences) {
    enum { B = 4, E = 5 };
    float u[B * E], v[B * E], du[B * E], dv[B * E], dls = 0;
    kn_rand_fill(u, B * E, 11, 0);
    kn_rand_fill(v, B * E, 12, 0);
    for (int i = 0; i < B * E; i++) {
        u[i] = 2 * u[i] - 1;
        v[i] = 2 * v[i] - 1;
    }
    const float ls = 1.3f;
    double loss = 0;
    KT_OK(kn_clip_infonce(u, v, B, E, ls, &loss, du, dv, &dls));
    KT_CHECK(loss > 0 && isfinite(loss));
    double worst = 0;
    const float h = 2e-3f;
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < B * E; i++) {
            float *x = w ? v : u, x0 = x[i];
            double lp, lm;
            x[i] = x0 + h;
            KT_OK(kn_clip_infonce(u, v, B, E, ls, &lp, NULL, NULL, NULL));
            x[i] = x0 - h;
            KT_OK(kn_clip_infonce(u, v, B, E, ls, &lm, NULL, NULL, NULL));
            x[i] = x0;
            double fd = (lp - lm) / (2.0 * ((double)(x0 + h) - x0)), an = (w ? dv : du)[i];
            double e = fabs(fd - an) / (fabs(fd) + 1e-3);
            if (e > worst) worst = e;
        }
    KT_CHECKF(worst < 1e-3, "worst relative error of du/dv %.3g", worst);
    double lp, lm;
    KT_OK(kn_clip_infonce(u, v, B, E, ls + 1e-3f, &lp, NULL, NULL, NULL));
    KT_OK(kn_clip_infonce(u, v, B, E, ls - 1e-3f, &lm, NULL, NULL, NULL));
    double fd = (lp - lm) / (double)((ls + 1e-3f) - (ls - 1e-3f));
    KT_NEAR(dls, fd, 2e-3 * fabs(fd) + 1e-5);
    /* the loss of perfectly aligned, orthogonal pairs at a large scale is ~0; of identical rows
     * log(B) */
    float a[B * E], z[B * E];
    memset(a, 0, sizeof a);
    for (int i = 0; i < B * E; i++)
        z[i] = 1.0f;
    for (int i = 0; i < B; i++)
        a[i * E + i] = 1.0f + i;
    KT_OK(kn_clip_infonce(a, a, B, E, logf(100.0f), &loss, NULL, NULL, NULL));
    KT_CHECK(loss < 1e-6);
    KT_OK(kn_clip_infonce(z, z, B, E, logf(100.0f), &loss, NULL, NULL, NULL));
    KT_NEAR(loss, log((double)B), 1e-9);
    /* a zero embedding is refused with a message */
    for (int k = 0; k < E; k++)
        z[k] = 0.0f;
    KT_CHECK(kn_clip_infonce(z, a, B, E, 0, &loss, NULL, NULL, NULL) != KN_OK && strstr(kn_last_error(), "norm"));
}

typedef struct {
    kn_clip_text *text;
    kn_clip_tower *tower;
    kn_stage_state st, sw;
    kn_train_opts o;
    kn_train_data d;
} tiny_clip;

static void tiny_clip_make(tiny_clip *m, int batch, int64_t steps) {
    memset(m, 0, sizeof *m);
    kn_clip_text_config tc = kn_clip_text_config_default();
    tc.vocab_size = 256;
    tc.hidden_size = 32;
    tc.intermediate_size = 64;
    tc.num_hidden_layers = 2;
    tc.num_attention_heads = 4;
    tc.max_position_embeddings = 64;
    tc.hidden_act = KN_ACT_GELU;
    tc.eos_token_id = 255; /* the toy tokenizer's padding */
    m->text = kn_clip_text_new(&tc);
    kn_clip_tower_config wc = {.frames = 4, .size = 16, .width = 16, .text_dim = 32, .embed_dim = 32,
                               .init_temperature = 0.07f, .learn_temperature = 1};
    m->tower = kn_clip_tower_new(&wc);
    KT_CHECKF(m->text && m->tower, "%s", kn_last_error());
    kn_params_init_default(&m->text->P, 5);
    kn_clip_tower_init(m->tower, 6);
    m->d = (kn_train_data){.size = 32, .frames = 4, .fps = 4, .batch = batch};
    m->o = (kn_train_opts){.steps = steps, .lr = 5e-3, .lr_min = 2e-4, .warmup = 5, .grad_clip = 1.0, .seed = 9};
    KT_OK(kn_stage_state_init(&m->st, &m->text->P, &m->o));
    KT_OK(kn_stage_state_init(&m->sw, &m->tower->P, &m->o));
}

static void tiny_clip_free(tiny_clip *m) {
    kn_stage_state_free(&m->st);
    kn_stage_state_free(&m->sw);
    kn_clip_text_free(m->text);
    kn_clip_tower_free(m->tower);
}

typedef struct { double first, last; int n; } loss_log; /* the first 5 steps */

static int log_loss(const char *stage, int64_t step, int64_t steps, double loss, void *user) {
    (void)steps;
    loss_log *l = user;
    KT_CHECK(!strcmp(stage, "clip"));
    if (step < 5) l->first += loss / 5;
    l->last = loss;
    l->n++;
    return step == 4; /* stop after 5 steps: the rest runs as a resumed call */
}

typedef struct { double sum; } tail_log; /* the mean of the last 5 */

static int tail_loss(const char *stage, int64_t step, int64_t steps, double loss, void *user) {
    (void)stage;
    tail_log *t = user;
    if (step >= steps - 5) t->sum += loss / 5;
    return 0;
}

/* on tiny settings the contrastive loss falls and held-out retrieval rises well above chance */
KT_TEST(clip_stage_learns_to_retrieve_held_clips) {
    kn_arena *A = kn_arena_new((size_t)512 << 20);
    KT_CHECK(A != NULL);
    tiny_clip m;
    const int nst = 80;
    tiny_clip_make(&m, 16, nst);
    const int held = 16;
    double acc0 = 0, acc1 = 0;
    KT_OK(kn_clip_retrieval(m.text, m.tower, &m.d, 77, held, kt_toy_tokenize, NULL, A, &acc0));
    loss_log ll = {0};
    KT_OK(kn_train_clip(m.text, m.tower, &m.st, &m.sw, &m.o, &m.d, kt_toy_tokenize, NULL, A, log_loss, &ll));
    tail_log tl = {0};
    KT_CHECK(m.st.step == 5 && m.sw.step == 5);
    KT_OK(kn_train_clip(m.text, m.tower, &m.st, &m.sw, &m.o, &m.d, kt_toy_tokenize, NULL, A, tail_loss, &tl));
    KT_CHECK(m.st.step == nst && m.sw.step == nst);
    KT_OK(kn_clip_retrieval(m.text, m.tower, &m.d, 77, held, kt_toy_tokenize, NULL, A, &acc1));
    fprintf(stderr, "  clip tiny: loss %.3f -> %.3f (log B = %.3f), retrieval %.2f -> %.2f (chance %.2f)\n", ll.first,
            tl.sum, log(16.0), acc0, acc1, 1.0 / held);
    KT_CHECKF(tl.sum < 0.75 * ll.first, "loss %.3f -> %.3f", ll.first, tl.sum);
    KT_CHECKF(acc1 >= 5.0 / held && acc1 > acc0, "retrieval %.2f -> %.2f", acc0, acc1);
    /* the tower names stay in their own table */
    for (int i = 0; i < m.tower->P.n; i++)
        KT_CHECK(!strncmp(m.tower->P.items[i]->name, "clip_tower.", 11));
    tiny_clip_free(&m);
    kn_arena_free(A);
}

/* 1 and 2 threads give the same bits (text encoder, tower, logit scale) after a few steps */
KT_TEST(clip_stage_bitwise_across_thread_counts) {
    kn_arena *A = kn_arena_new((size_t)256 << 20);
    KT_CHECK(A != NULL);
    tiny_clip m[2];
    int prev = kn_get_threads();
    for (int k = 0; k < 2; k++) {
        kn_set_threads(k + 1);
        tiny_clip_make(&m[k], 8, 3);
        KT_OK(kn_train_clip(m[k].text, m[k].tower, &m[k].st, &m[k].sw, &m[k].o, &m[k].d, kt_toy_tokenize, NULL, A,
                            NULL, NULL));
    }
    kn_set_threads(prev);
    KT_CHECK(m[0].text->P.numel == m[1].text->P.numel && m[0].tower->P.numel == m[1].tower->P.numel);
    KT_CHECK(!memcmp(m[0].text->P.block, m[1].text->P.block, m[0].text->P.numel * sizeof(float)));
    KT_CHECK(!memcmp(m[0].tower->P.block, m[1].tower->P.block, m[0].tower->P.numel * sizeof(float)));
    KT_CHECK(!memcmp(m[0].st.opt.v, m[1].st.opt.v, m[0].text->P.numel * sizeof(float)));
    /* and training changed them */
    tiny_clip fresh;
    tiny_clip_make(&fresh, 8, 3);
    KT_CHECK(memcmp(fresh.tower->P.block, m[0].tower->P.block, fresh.tower->P.numel * sizeof(float)));
    KT_CHECK(*(float *)fresh.tower->logit_scale->v.data != *(float *)m[0].tower->logit_scale->v.data);
    tiny_clip_free(&fresh);
    tiny_clip_free(&m[0]);
    tiny_clip_free(&m[1]);
    kn_arena_free(A);
}

/* `kinema train --until clip` then `--resume` writes the same checkpoint bytes (and log) as a
 * straight run; --init with a full model folder skips the clip stage, with a VAE-only folder it
 * runs it; --until clip on a recipe without the stage is refused */
KT_TEST(train_clip_until_resume_equals_straight_run) {
    static char out[1 << 15];
    const char *d = kt_tmpdir();
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/r.json", d);
    FILE *f = fopen(cfg, "w");
    KT_CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f, "{\"base\": \"smoke-cascade\", \"vae_steps\": 2, \"clip_steps\": 3, \"clip_batch\": 4, \"unet_steps\": 2,"
               " \"image_steps\": 1, \"tsr_steps\": 1, \"ssr_steps\": 1}\n");
    fclose(f);
    char opts[1400];
    snprintf(opts, sizeof opts, "--config '%s' --quiet --tokenizer '%s/clip'", cfg, kt_fixtures());
    int rc = kt_run(out, sizeof out, "%s train %s --out '%s/a'", kt_bin(), opts, d);
    KT_CHECKF(rc == 0 && strstr(out, "clip done: caption->clip top-1 retrieval"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train %s --out '%s/b' --until clip && test ! -d '%s/b/model' && "
                "%s train %s --out '%s/b' --resume --threads 1", kt_bin(), opts, d, d, kt_bin(), opts, d);
    KT_CHECKF(rc == 0 && strstr(out, "clip step 3"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "cd '%s' && cmp a/last.safetensors b/last.safetensors && "
                "cut -d, -f1-3 a/log.csv > la && cut -d, -f1-3 b/log.csv > lb && diff la lb && "
                "grep -c '^clip,' a/log.csv && grep -n '^clip,\\|^unet,' a/log.csv | head -4 | cut -d, -f1-2", d);
    /* vae rows 1-2 after the header: clip rows are lines 4-6, then the base */
    KT_CHECKF(rc == 0 && !strcmp(out, "3\n4:clip,0\n5:clip,1\n6:clip,2\n7:unet,0\n"), "rc %d: %s", rc, out);
    /* the text encoder the base froze is the one the clip stage trained: exported as such */
    rc = kt_run(out, sizeof out, "%s train %s --out '%s/c' --init '%s/a/model' --until clip && "
                "grep -c '^clip,' '%s/c/log.csv'", kt_bin(), opts, d, d, d);
    KT_CHECKF(rc != 0 && strstr(out, "\n0\n"), "rc %d: %s", rc, out); /* grep -c finds none: exit 1 */
    rc = kt_run(out, sizeof out, "mkdir -p '%s/v' && cp -r '%s/a/model/vae' '%s/v/' && "
                "%s train %s --out '%s/e' --init '%s/v' --until clip && grep -c '^clip,' '%s/e/log.csv'", d, d, d,
                kt_bin(), opts, d, d, d);
    KT_CHECKF(rc == 0 && strstr(out, "\n3\n"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --out '%s/s' --until clip", kt_bin(), d);
    KT_CHECKF(rc != 0 && strstr(out, "no clip stage"), "rc %d: %s", rc, out);
}

/* freeze_text: the base stage leaves the text encoder bitwise as it was (and trains the UNet);
 * without it the text encoder moves */
KT_TEST(train_unet_freeze_text_keeps_text_encoder) {
    kn_arena *A = kn_arena_new((size_t)512 << 20);
    KT_CHECK(A != NULL);
    kn_recipe r;
    KT_OK(kn_recipe_get("smoke", &r));
    r.data.frames = 2;
    r.data.batch = 1;
    r.text.vocab_size = 256;
    r.text.eos_token_id = 255;
    for (int frozen = 1; frozen >= 0; frozen--) {
        kn_vae *vae = kn_vae_new(&r.vae);
        kn_clip_text *text = kn_clip_text_new(&r.text);
        kn_unet3d *unet = kn_unet3d_new(&r.unet);
        KT_CHECKF(vae && text && unet, "%s", kn_last_error());
        kn_params_init_default(&vae->P, 1);
        kn_params_init_default(&text->P, 2);
        kn_params_init_default(&unet->P, 3);
        kn_train_opts o = r.unet_opts;
        o.steps = 2;
        o.warmup = 1;
        o.cond_dropout = 0;
        o.freeze_text = frozen;
        kn_stage_state su, st;
        KT_OK(kn_stage_state_init(&su, &unet->P, &o));
        KT_OK(kn_stage_state_init(&st, &text->P, &o));
        float *t0 = malloc(text->P.numel * sizeof(float)), *u0 = malloc(unet->P.numel * sizeof(float));
        memcpy(t0, text->P.block, text->P.numel * sizeof(float));
        memcpy(u0, unet->P.block, unet->P.numel * sizeof(float));
        KT_OK(kn_train_unet(unet, text, vae, &r.sched, &su, &st, &o, &r.data, kt_toy_tokenize, NULL, A, NULL, NULL));
        KT_CHECK(su.step == 2);
        KT_CHECK(memcmp(u0, unet->P.block, unet->P.numel * sizeof(float)) != 0);
        KT_CHECKF((memcmp(t0, text->P.block, text->P.numel * sizeof(float)) == 0) == frozen, "freeze_text %d", frozen);
        free(t0);
        free(u0);
        kn_stage_state_free(&su);
        kn_stage_state_free(&st);
        kn_vae_free(vae);
        kn_clip_text_free(text);
        kn_unet3d_free(unet);
    }
    kn_arena_free(A);
}
