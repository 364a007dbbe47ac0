/* clip_train.c — the CLIP stage (see clip_train.h): a small video tower, the hand-differentiated
 * symmetric InfoNCE head, the training loop and the held-batch retrieval measure. Every draw is a
 * pure function of (seed, sample index), as in trainer.c, so a resumed run equals a straight one. */
#include "train/clip_train.h"

#include "ops/gemm_lowp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CLIP_MAX_SCALE 4.605170185988091 /* log(100): CLIP clamps the logit scale at 100 */

kn_clip_tower *kn_clip_tower_new(const kn_clip_tower_config *cfg) {
    if (cfg->frames < 1 || cfg->size < 4 || cfg->size % 4 || cfg->width < 1 || cfg->text_dim < 1 ||
        cfg->embed_dim < 1 || !(cfg->init_temperature > 0)) {
        kn_fail(KN_ERR_ARG, "clip tower: invalid config (frames %d, size %d (a multiple of 4), width %d, text %d, "
                "embed %d, temperature %g)", cfg->frames, cfg->size, cfg->width, cfg->text_dim, cfg->embed_dim,
                (double)cfg->init_temperature);
        return NULL;
    }
    kn_clip_tower *t = calloc(1, sizeof *t);
    if (!t) {
        kn_fail(KN_ERR_NOMEM, "clip tower: out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    int64_t w = cfg->width, in[3] = {3 * (int64_t)cfg->frames, w, 2 * w}, out[3] = {w, 2 * w, 2 * w};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "clip_tower.conv%d", i + 1);
        kn_conv_decl(&t->conv[i], &t->P, in[i], out[i], 3, i ? 2 : 1, 1, 1, name);
    }
    kn_linear_decl(&t->visual_proj, &t->P, 2 * w, cfg->embed_dim, 0, "clip_tower.visual_projection");
    kn_linear_decl(&t->text_proj, &t->P, cfg->text_dim, cfg->embed_dim, 0, "clip_tower.text_projection");
    t->logit_scale = kn_param_decl(&t->P, 1, (int64_t[]){1}, "clip_tower.logit_scale");
    if (kn_params_alloc(&t->P) != KN_OK) {
        kn_clip_tower_free(t);
        return NULL;
    }
    return t;
}

void kn_clip_tower_free(kn_clip_tower *t) {
    if (!t)
        return;
    kn_params_free(&t->P);
    free(t);
}

void kn_clip_tower_init(kn_clip_tower *t, uint64_t seed) {
    kn_params_init_default(&t->P, seed);
    *(float *)t->logit_scale->v.data = logf(1.0f / t->cfg.init_temperature);
}

kn_var *kn_clip_tower_video(kn_ctx *c, const kn_clip_tower *t, kn_var *x) {
    if (c->status != KN_OK)
        return NULL;
    int64_t s = t->cfg.size;
    if (x->v.ndim != 4 || x->v.shape[1] != 3 * (int64_t)t->cfg.frames || x->v.shape[2] != s || x->v.shape[3] != s) {
        kn_ctx_failf(c, KN_ERR_SHAPE, "clip tower: input must be (B, %d, %lld, %lld)", 3 * t->cfg.frames,
                     (long long)s, (long long)s);
        return NULL;
    }
    kn_var *h = x;
    for (int i = 0; i < 3; i++)
        h = kn_v_act(c, KN_ACT_SILU, kn_conv_fwd(c, &t->conv[i], h)); /* (B, w, s, s), (B, 2w, s/2, s/2), (B, 2w, s/4, s/4) */
    if (!h)
        return NULL;
    /* global mean over positions: (B, C, h, w) -> (B, h, w, C) -> rows (B*h*w, C) -> (B, C) */
    int64_t B = h->v.shape[0], C = h->v.shape[1], hw = h->v.shape[2] * h->v.shape[3];
    h = kn_v_permute(c, h, (const int[]){0, 2, 3, 1});
    h = h ? kn_var_reshape(c, h, 2, (int64_t[]){B * hw, C}) : NULL;
    h = h ? kn_v_mean_rows(c, h, hw) : NULL;
    return h ? kn_linear_fwd(c, &t->visual_proj, h) : NULL;
}

/* Pixels go to [0, 1] (black background = 0): the convs' biases start at zero and SiLU(0) = 0, so
 * the background adds nothing to the pooled features. On [-1, 1] the constant background made the
 * pooled features of every clip point the same way (mean cosine 0.999 between clips at init) and
 * the loss sat at log B. */
kn_status kn_clip_downsample(const float *clip, int64_t T, int64_t S, int64_t s, float *out) {
    if (s < 1 || S < s || S % s)
        return kn_fail(KN_ERR_SHAPE, "clip: %lld px clips cannot be area-downsampled to %lld px", (long long)S,
                       (long long)s);
    int64_t f = S / s;
    float inv = 0.5f / (float)(f * f);
    for (int64_t ct = 0; ct < 3 * T; ct++) /* plane (ch, t) of (3, T, S, S) is channel ch*T + t */
        for (int64_t y = 0; y < s; y++)
            for (int64_t x = 0; x < s; x++) {
                float acc = 0;
                for (int64_t dy = 0; dy < f; dy++)
                    for (int64_t dx = 0; dx < f; dx++)
                        acc += clip[(ct * S + y * f + dy) * S + x * f + dx];
                out[(ct * s + y) * s + x] = acc * inv + 0.5f;
            }
    return KN_OK;
}

kn_status kn_clip_infonce(const float *u, const float *v, int64_t B, int64_t E, float logit_scale, double *loss,
                          float *du, float *dv, float *dlogit_scale) {
    if (B < 1 || E < 1)
        return kn_fail(KN_ERR_ARG, "clip loss: batch %lld, embedding %lld", (long long)B, (long long)E);
    double *un = malloc((size_t)(2 * B * E + 2 * B + 3 * B * B) * sizeof(double));
    if (!un)
        return kn_fail(KN_ERR_NOMEM, "clip loss: out of memory");
    double *vn = un + B * E, *nu = vn + B * E, *nv = nu + B, *lg = nv + B, *pr = lg + B * B, *pc = pr + B * B;
    /* û = u / |u|, v̂ = v / |v| */
    for (int64_t i = 0; i < 2 * B; i++) {
        const float *x = i < B ? u + i * E : v + (i - B) * E;
        double *y = i < B ? un + i * E : vn + (i - B) * E, n2 = 0;
        for (int64_t k = 0; k < E; k++)
            n2 += (double)x[k] * x[k];
        if (!(n2 > 0) || !isfinite(n2)) {
            free(un);
            return kn_fail(KN_ERR_INTERNAL, "clip loss: %s embedding %lld has norm %g", i < B ? "text" : "video",
                           (long long)(i % B), sqrt(n2));
        }
        double n = sqrt(n2);
        (i < B ? nu : nv)[i % B] = n;
        for (int64_t k = 0; k < E; k++)
            y[k] = x[k] / n;
    }
    double sc = exp((double)logit_scale), L = 0;
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++) {
            double d = 0;
            for (int64_t k = 0; k < E; k++)
                d += un[i * E + k] * vn[j * E + k];
            lg[i * B + j] = sc * d;
        }
    /* row softmax (caption i over clips) and column softmax (clip j over captions) */
    for (int64_t i = 0; i < B; i++) {
        double mr = -INFINITY, mc = -INFINITY, zr = 0, zc = 0;
        for (int64_t j = 0; j < B; j++) {
            mr = fmax(mr, lg[i * B + j]);
            mc = fmax(mc, lg[j * B + i]);
        }
        for (int64_t j = 0; j < B; j++) {
            zr += (pr[i * B + j] = exp(lg[i * B + j] - mr));
            zc += (pc[j * B + i] = exp(lg[j * B + i] - mc));
        }
        for (int64_t j = 0; j < B; j++) {
            pr[i * B + j] /= zr;
            pc[j * B + i] /= zc;
        }
        L += (mr + log(zr) - lg[i * B + i]) + (mc + log(zc) - lg[i * B + i]);
    }
    *loss = L / (2.0 * B);
    if (du && dv) {
        /* G = d loss / d logits = ((P_row - I) + (P_col - I)) / 2B, kept in pr */
        double ds = 0;
        for (int64_t i = 0; i < B; i++)
            for (int64_t j = 0; j < B; j++) {
                double g = (pr[i * B + j] + pc[i * B + j] - 2.0 * (i == j)) / (2.0 * B);
                pr[i * B + j] = g;
                ds += g * lg[i * B + j]; /* logits = exp(ls) cos: d logits / d ls = logits */
            }
        if (dlogit_scale)
            *dlogit_scale = (float)ds;
        /* dû_i = s Σ_j G_ij v̂_j, dv̂_j = s Σ_i G_ij û_i; through the normalisation:
         * du = (dû - û (û·dû)) / |u| */
        double *gx = malloc((size_t)E * sizeof(double));
        if (!gx) {
            free(un);
            return kn_fail(KN_ERR_NOMEM, "clip loss: out of memory");
        }
        for (int64_t i = 0; i < 2 * B; i++) {
            int64_t r = i % B;
            const double *x = i < B ? un + r * E : vn + r * E, *o = i < B ? vn : un;
            double dot = 0;
            for (int64_t k = 0; k < E; k++) {
                double a = 0;
                for (int64_t j = 0; j < B; j++)
                    a += (i < B ? pr[r * B + j] : pr[j * B + r]) * o[j * E + k];
                gx[k] = sc * a;
                dot += gx[k] * x[k];
            }
            double n = (i < B ? nu : nv)[r];
            float *y = i < B ? du + r * E : dv + r * E;
            for (int64_t k = 0; k < E; k++)
                y[k] = (float)((gx[k] - x[k] * dot) / n);
        }
        free(gx);
    }
    free(un);
    return KN_OK;
}

/* The batch of samples index[0..B) of d: pixels area-downsampled into x (B, 3T, s, s), token ids
 * (B, L), and (optional) captions (B rows of cap bytes). Scratch from A, released. */
static kn_status load_batch(kn_arena *A, const kn_train_data *d, uint64_t seed, const uint64_t *index, int64_t B,
                            int64_t s, kn_tokenize_fn tok, void *tok_user, int64_t L, float *x, int32_t *ids,
                            char *captions, size_t cap) {
    size_t mark = kn_arena_mark(A);
    int64_t T = d->frames, S = d->size;
    kn_shapes_render_params rp = {d->size, d->frames, d->fps};
    uint8_t *rgb = kn_arena_alloc(A, kn_shapes_clip_bytes(&rp));
    float *clip = kn_arena_alloc(A, (size_t)(3 * T * S * S) * sizeof(float));
    if (!rgb || !clip)
        return kn_fail(KN_ERR_NOMEM, "clip: out of memory for a batch");
    kn_status st = KN_OK;
    for (int64_t b = 0; b < B && st == KN_OK; b++) {
        char text[512];
        if ((st = kn_train_draw_clip(d, seed, index[b], text, sizeof text, rgb, clip)) != KN_OK ||
            (st = kn_clip_downsample(clip, T, S, s, x + b * 3 * T * s * s)) != KN_OK ||
            (st = tok(text, ids + b * L, (int)L, tok_user)) != KN_OK)
            break;
        if (captions) { /* truncated to cap - 1 bytes (captions are far shorter) */
            size_t k = strlen(text) < cap ? strlen(text) : cap - 1;
            memcpy(captions + b * cap, text, k);
            captions[b * cap + k] = 0;
        }
    }
    kn_arena_reset(A, mark);
    return st;
}

/* The data as the CLIP stage draws it: no still images (a motion caption on a still frame is a
 * false pair), whatever the base stage does. */
static kn_train_data clip_data(const kn_train_data *d) {
    kn_train_data dd = *d;
    dd.image_fraction = 0;
    dd.images_only = 0;
    return dd;
}

static kn_status check_shapes(const kn_clip_text *text, const kn_clip_tower *tower, const kn_train_data *d) {
    if (tower->cfg.frames != d->frames || tower->cfg.text_dim != text->cfg.hidden_size)
        return kn_fail(KN_ERR_ARG, "clip: the tower takes %d frames and %d-wide text, the data has %d frames and the "
                       "text encoder is %d wide", tower->cfg.frames, tower->cfg.text_dim, d->frames,
                       text->cfg.hidden_size);
    if (d->size < tower->cfg.size || d->size % tower->cfg.size)
        return kn_fail(KN_ERR_ARG, "clip: %d px clips cannot be area-downsampled to the tower's %d px", d->size,
                       tower->cfg.size);
    return KN_OK;
}

kn_status kn_train_clip(kn_clip_text *text, kn_clip_tower *tower, kn_stage_state *s_text, kn_stage_state *s_tower,
                        const kn_train_opts *o, const kn_train_data *d0, kn_tokenize_fn tok, void *tok_user,
                        kn_arena *A, kn_train_progress_fn progress, void *user) {
    KN_TRY(check_shapes(text, tower, d0));
    if (d0->batch < 2)
        return kn_fail(KN_ERR_ARG, "clip: a contrastive batch needs at least 2 clips (got %d)", d0->batch);
    const kn_train_data d = clip_data(d0);
    const int64_t B = d.batch, T = d.frames, s = tower->cfg.size, E = tower->cfg.embed_dim;
    const int64_t L = text->cfg.max_position_embeddings < 77 ? text->cfg.max_position_embeddings : 77;
    kn_tape *tape = kn_tape_new();
    if (!tape)
        return KN_ERR_NOMEM;
    kn_status st = KN_OK;
    int prev_bf16 = kn_set_compute_bf16(o->bf16);
    float *ls = tower->logit_scale->v.data, *gls = tower->logit_scale->g.data;
    if (!gls || !text->P.grad_block) {
        kn_tape_free(tape);
        kn_set_compute_bf16(prev_bf16);
        return kn_fail(KN_ERR_ARG, "clip: the stage states must be initialised (gradients allocated) first");
    }
    for (; s_text->step < o->steps && st == KN_OK; s_text->step++, s_tower->step = s_text->step) {
        int64_t step = s_text->step;
        kn_arena_reset(A, 0);
        kn_tape_clear(tape);
        kn_params_zero_grads(&text->P);
        kn_params_zero_grads(&tower->P);
        kn_ctx c;
        kn_ctx_init(&c, A, tape);
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){B, 3 * T, s, s});
        int32_t *ids = kn_arena_alloc(A, (size_t)(B * L) * sizeof(int32_t));
        uint64_t *index = kn_arena_alloc(A, (size_t)B * sizeof(uint64_t));
        if (!x || !ids || !index) {
            st = KN_ERR_NOMEM;
            break;
        }
        for (int64_t b = 0; b < B; b++)
            index[b] = kn_train_sample_index(o, step, B, b);
        if ((st = load_batch(A, &d, o->seed, index, B, s, tok, tok_user, L, x->v.data, ids, NULL, 0)) != KN_OK)
            break;
        kn_var *pooled = NULL;
        kn_clip_text_forward(&c, text, ids, B, L, 0, &pooled, NULL, NULL);
        kn_var *u = pooled ? kn_linear_fwd(&c, &tower->text_proj, pooled) : NULL;
        kn_var *v = kn_clip_tower_video(&c, tower, x);
        kn_var *uv = u && v ? kn_v_concat(&c, u, v, 0) : NULL; /* (2B, E): one root for backward */
        if ((st = kn_ctx_status(&c)) != KN_OK)
            break;
        if ((st = kn_tensor_alloc(A, &uv->g, KN_F32, 2, (int64_t[]){2 * B, E})) != KN_OK)
            break;
        double loss = 0;
        float dls = 0, *g = uv->g.data;
        const float *uvd = uv->v.data;
        if ((st = kn_clip_infonce(uvd, uvd + B * E, B, E, *ls, &loss, g, g + B * E, &dls)) != KN_OK ||
            (st = kn_backward(&c, uv, 1.0f)) != KN_OK)
            break;
        *gls = tower->cfg.learn_temperature ? dls : 0.0f; /* after backward: nothing on the tape reads it */
        if ((st = kn_train_opt_step(s_text, &text->P, o)) != KN_OK ||
            (st = kn_train_opt_step(s_tower, &tower->P, o)) != KN_OK)
            break;
        if (*ls > CLIP_MAX_SCALE)
            *ls = (float)CLIP_MAX_SCALE;
        if (*ls < 0)
            *ls = 0;
        if (!isfinite(loss)) {
            st = kn_fail(KN_ERR_INTERNAL, "clip training diverged at step %lld (loss %g)", (long long)step, loss);
            break;
        }
        if (progress && progress("clip", step, o->steps, loss, user)) {
            s_text->step++;
            s_tower->step = s_text->step;
            break;
        }
    }
    kn_set_compute_bf16(prev_bf16);
    kn_tape_free(tape);
    return st;
}

kn_status kn_clip_retrieval(const kn_clip_text *text, const kn_clip_tower *tower, const kn_train_data *d0,
                            uint64_t seed, int n, kn_tokenize_fn tok, void *tok_user, kn_arena *A, double *acc) {
    KN_TRY(check_shapes(text, tower, d0));
    if (n < 1)
        return kn_fail(KN_ERR_ARG, "clip retrieval: %d held clips", n);
    const kn_train_data d = clip_data(d0);
    const int64_t T = d.frames, s = tower->cfg.size, E = tower->cfg.embed_dim, cap = KN_SHAPES_CAPTION_MAX * 2;
    const int64_t L = text->cfg.max_position_embeddings < 77 ? text->cfg.max_position_embeddings : 77;
    size_t mark = kn_arena_mark(A);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_var *x = kn_var_new(&c, 4, (int64_t[]){n, 3 * T, s, s});
    int32_t *ids = kn_arena_alloc(A, (size_t)(n * L) * sizeof(int32_t));
    uint64_t *index = kn_arena_alloc(A, (size_t)n * sizeof(uint64_t));
    char *caps = kn_arena_alloc(A, (size_t)(n * cap));
    if (!x || !ids || !index || !caps) {
        kn_arena_reset(A, mark);
        return kn_fail(KN_ERR_NOMEM, "clip retrieval: out of memory");
    }
    for (int i = 0; i < n; i++)
        index[i] = (uint64_t)i;
    /* a stream of its own: training draws kn_train_draw_clip(d, o->seed, ...) */
    uint64_t hseed = kn_train_mix(seed, 0xC11F4E1DULL, 1);
    kn_status st = load_batch(A, &d, hseed, index, n, s, tok, tok_user, L, x->v.data, ids, caps, (size_t)cap);
    if (st != KN_OK) {
        kn_arena_reset(A, mark);
        return st;
    }
    kn_var *pooled = NULL;
    kn_clip_text_forward(&c, text, ids, n, L, 0, &pooled, NULL, NULL);
    kn_var *u = pooled ? kn_linear_fwd(&c, &tower->text_proj, pooled) : NULL;
    kn_var *v = kn_clip_tower_video(&c, tower, x);
    if ((st = kn_ctx_status(&c)) != KN_OK) {
        kn_arena_reset(A, mark);
        return st;
    }
    const float *U = u->v.data, *V = v->v.data;
    int right = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        double bs = -INFINITY;
        for (int j = 0; j < n; j++) {
            double dot = 0, nv = 0;
            for (int64_t k = 0; k < E; k++) {
                dot += (double)U[i * E + k] * V[j * E + k];
                nv += (double)V[j * E + k] * V[j * E + k];
            }
            double cs = dot / sqrt(nv > 0 ? nv : 1e-30); /* |u_i| is common to the row */
            if (cs > bs) {
                bs = cs;
                best = j;
            }
        }
        right += !strcmp(caps + (int64_t)best * cap, caps + (int64_t)i * cap);
    }
    *acc = (double)right / n;
    kn_arena_reset(A, mark);
    return KN_OK;
}
