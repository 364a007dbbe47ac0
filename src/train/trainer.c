/* trainer.c — the VAE and UNet training stages (see trainer.h). Every random draw (captions,
 * clips, frames, timesteps, noise, caption dropout) is a Philox stream indexed by
 * (seed, step), so a resumed run draws exactly what the uninterrupted run would. */
#include "train/trainer.h"

#include "ops/gemm_lowp.h"

#include <math.h>
#include <string.h>

/* stream ids mixed into the seed, one per kind of draw */
enum { S_CAPTION = 1, S_CLIP, S_FRAME, S_TIME, S_NOISE, S_DROP, S_FPS, S_IMAGE };

uint64_t kn_train_mix(uint64_t seed, uint64_t kind, uint64_t step) {
    uint64_t x = seed ^ (kind * 0x9E3779B97F4A7C15ULL) ^ (step * 0xBF58476D1CE4E5B9ULL);
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 29);
}

float kn_train_uniform(uint64_t seed, uint64_t i) {
    float u;
    kn_rand_fill(&u, 1, seed, i);
    return u;
}

float kn_train_noise(const kn_scheduler *sc, int t, const kn_train_opts *o, const float *x0, const float *eps,
                     int64_t n, float *xt, float *target) {
    float ac = sc->alphas_cumprod[t], sa = sqrtf(ac), sb = sqrtf(1.0f - ac);
    double snr = ac / (1.0 - ac), wgt = 1.0;
    for (int64_t j = 0; j < n; j++) {
        float e = eps[j], z = x0[j];
        xt[j] = sa * z + sb * e;
        target[j] = o->objective == KN_PRED_EPS ? e : o->objective == KN_PRED_V ? sa * e - sb * z : z;
    }
    if (o->min_snr_gamma > 0) {
        double m = snr < o->min_snr_gamma ? snr : o->min_snr_gamma;
        wgt = o->objective == KN_PRED_EPS ? m / snr : o->objective == KN_PRED_V ? m / (snr + 1) : m;
    }
    return (float)wgt;
}

kn_status kn_train_mse_backward(kn_ctx *c, kn_var *pred, const float *target, const float *wts, double *loss) {
    kn_tensor tt = kn_tensor_view(KN_F32, pred->v.ndim, pred->v.shape, (void *)target);
    KN_TRY(kn_mse_loss(&pred->v, &tt, wts, loss));
    KN_TRY(kn_tensor_zeros(c->A, &pred->g, KN_F32, pred->v.ndim, pred->v.shape));
    KN_TRY(kn_mse_loss_backward(&pred->v, &tt, wts, 1.0f, &pred->g));
    return kn_backward(c, pred, 1.0f);
}

kn_status kn_stage_state_init(kn_stage_state *s, kn_params *P, const kn_train_opts *o) {
    memset(s, 0, sizeof *s);
    if (!P->grad_block)
        KN_TRY(kn_params_alloc_grads(P));
    kn_adamw_config oc = kn_adamw_default_config();
    oc.lr = o->lr;
    oc.weight_decay = o->weight_decay;
    oc.no_decay_1d = 1;
    KN_TRY(kn_adamw_init(&s->opt, &oc, P));
    if (o->ema_decay > 0) {
        kn_status st = kn_ema_init(&s->ema, P, o->ema_decay, 1);
        if (st != KN_OK) {
            kn_adamw_free(&s->opt);
            return st;
        }
        s->have_ema = 1;
    }
    return KN_OK;
}

void kn_stage_state_free(kn_stage_state *s) {
    kn_adamw_free(&s->opt);
    if (s->have_ema)
        kn_ema_free(&s->ema);
    memset(s, 0, sizeof *s);
}

kn_status kn_train_opt_step(kn_stage_state *s, kn_params *P, const kn_train_opts *o) {
    kn_lr_schedule ls = {o->lr, o->lr_min, o->warmup, o->steps};
    if (o->grad_sync)
        KN_TRY(o->grad_sync(P, o->grad_sync_user));
    kn_adamw_zero_frozen_grads(&s->opt);
    if (o->grad_clip > 0)
        kn_clip_grad_norm(P, o->grad_clip);
    KN_TRY(kn_adamw_step(&s->opt, kn_lr_at(&ls, s->step)));
    if (s->have_ema)
        kn_ema_update(&s->ema);
    return KN_OK;
}

uint64_t kn_train_sample_index(const kn_train_opts *o, int64_t step, int64_t batch, int64_t b) {
    int world = o->world > 0 ? o->world : 1;
    return ((uint64_t)step * (uint64_t)world + (uint64_t)o->rank) * (uint64_t)batch + (uint64_t)b;
}

/* The frame rate of Shapes clip `index` (d->fps unless the recipe draws it). */
static int clip_fps(const kn_train_data *d, uint64_t seed, uint64_t index) {
    if (d->source || d->nfps <= 0)
        return d->fps;
    int k = (int)(kn_train_uniform(kn_train_mix(seed, S_FPS, 0), index) * d->nfps);
    return d->fps_choices[k < d->nfps ? k : d->nfps - 1];
}

/* 1 when Shapes clip `index` is drawn as a still image (joint image-video training); all are
 * during the image phase (d->images_only, set by the UNet stage for its first image_steps). */
static int clip_is_image(const kn_train_data *d, uint64_t seed, uint64_t index) {
    if (d->source)
        return d->is_image ? d->is_image(index, d->source_user) : 0;
    return d->images_only || (d->image_fraction > 0 && kn_train_uniform(kn_train_mix(seed, S_IMAGE, 0), index) < d->image_fraction);
}

/* Training clip number `index` as floats (3, T, H, W) in [-1, 1] and its caption text. An image
 * sample repeats one frame of its clip over T. */
kn_status kn_train_draw_clip(const kn_train_data *d, uint64_t seed, uint64_t index, char *caption, size_t cap,
                             uint8_t *rgb, float *out) {
    if (d->source)
        return d->source(index, out, caption, cap, d->source_user);
    kn_shapes_caption c;
    KN_TRY(kn_shapes_sample(KN_SPLIT_RANDOM, kn_train_mix(seed, S_CAPTION, 0), index, &c));
    KN_TRY(kn_shapes_format(&c, caption, cap));
    kn_shapes_render_params rp = {d->size, d->frames, clip_fps(d, seed, index)};
    KN_TRY(kn_shapes_render(&c, kn_train_mix(seed, S_CLIP, index), &rp, rgb, NULL));
    int64_t T = d->frames, HW = (int64_t)d->size * d->size;
    int still = clip_is_image(d, seed, index) ? (int)(kn_train_uniform(kn_train_mix(seed, S_IMAGE, 1), index) * T) : -1;
    if (still >= T)
        still = (int)T - 1;
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < HW; k++)
            for (int ch = 0; ch < 3; ch++)
                out[(ch * T + t) * HW + k] = rgb[((still >= 0 ? still : t) * HW + k) * 3 + ch] / 127.5f - 1.0f;
    return KN_OK;
}

kn_status kn_train_vae(kn_vae *vae, kn_stage_state *s, const kn_train_opts *o, const kn_train_data *d, kn_arena *A,
                       kn_train_progress_fn progress, void *user) {
    int64_t T = d->frames, S = d->size, HW = S * S, N = (int64_t)d->batch * d->vae_frames;
    kn_shapes_render_params rp = {d->size, d->frames, d->fps};
    kn_tape *tape = kn_tape_new();
    if (!tape)
        return KN_ERR_NOMEM;
    kn_status st = KN_OK;
    int prev_bf16 = kn_set_compute_bf16(o->bf16);
    for (; s->step < o->steps && st == KN_OK; s->step++) {
        kn_arena_reset(A, 0);
        kn_tape_clear(tape);
        kn_params_zero_grads(&vae->P);
        kn_ctx c;
        kn_ctx_init(&c, A, tape);
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){N, 3, S, S});
        uint8_t *rgb = kn_arena_alloc(A, kn_shapes_clip_bytes(&rp));
        float *clip = kn_arena_alloc(A, (size_t)(3 * T * HW) * sizeof(float));
        if (!x || !rgb || !clip) {
            st = KN_ERR_NOMEM;
            break;
        }
        for (int b = 0; b < d->batch && st == KN_OK; b++) {
            char cap[512];
            uint64_t si = kn_train_sample_index(o, s->step, d->batch, b);
            st = kn_train_draw_clip(d, o->seed, si, cap, sizeof cap, rgb, clip);
            for (int j = 0; j < d->vae_frames && st == KN_OK; j++) {
                uint64_t fi = si * (uint64_t)d->vae_frames + (uint64_t)j;
                int64_t t = (int64_t)(kn_train_uniform(kn_train_mix(o->seed, S_FRAME, 0), fi) * T);
                if (t >= T) t = T - 1;
                for (int ch = 0; ch < 3; ch++)
                    memcpy((float *)x->v.data + ((b * d->vae_frames + j) * 3 + ch) * HW, clip + (ch * T + t) * HW,
                           (size_t)HW * sizeof(float));
            }
        }
        if (st != KN_OK)
            break;
        kn_var *mean = NULL, *logvar = NULL;
        if ((st = kn_vae_encode(&c, vae, x, &mean, &logvar, NULL, NULL)) != KN_OK)
            break;
        kn_var *y = kn_vae_decode(&c, vae, mean, NULL, NULL);
        if ((st = kn_ctx_status(&c)) != KN_OK)
            break;
        /* losses and their gradients: recon on y, the latent penalty on mean */
        double rec = 0, pen = 0;
        if ((st = kn_mse_loss(&y->v, &x->v, NULL, &rec)) != KN_OK)
            break;
        if ((st = kn_tensor_zeros(A, &y->g, KN_F32, y->v.ndim, y->v.shape)) != KN_OK ||
            (st = kn_mse_loss_backward(&y->v, &x->v, NULL, 1.0f, &y->g)) != KN_OK ||
            (st = kn_tensor_zeros(A, &mean->g, KN_F32, mean->v.ndim, mean->v.shape)) != KN_OK)
            break;
        int64_t nm = kn_tensor_numel(&mean->v);
        const float *mv = mean->v.data;
        float *mg = mean->g.data;
        for (int64_t i = 0; i < nm; i++) {
            pen += (double)mv[i] * mv[i];
            mg[i] = (float)(2.0 * o->kl_weight * mv[i] / nm);
        }
        double loss = rec + o->kl_weight * pen / nm;
        if ((st = kn_backward(&c, y, 1.0f)) != KN_OK)
            break;
        if ((st = kn_train_opt_step(s, &vae->P, o)) != KN_OK)
            break;
        if (!isfinite(loss)) {
            st = kn_fail(KN_ERR_INTERNAL, "vae training diverged at step %lld (loss %g)", (long long)s->step, loss);
            break;
        }
        if (progress && progress("vae", s->step, o->steps, loss, user)) {
            s->step++;
            break;
        }
    }
    kn_set_compute_bf16(prev_bf16);
    kn_tape_free(tape);
    return st;
}

kn_status kn_vae_measure_scale(kn_vae *vae, const kn_train_data *d, uint64_t seed, int n, kn_arena *A, float *scale) {
    kn_shapes_render_params rp = {d->size, d->frames, d->fps};
    int64_t T = d->frames, HW = (int64_t)d->size * d->size;
    double s1 = 0, s2 = 0;
    int64_t cnt = 0;
    for (int i = 0; i < n; i++) {
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        uint8_t *rgb = kn_arena_alloc(A, kn_shapes_clip_bytes(&rp));
        float *clip = kn_arena_alloc(A, (size_t)(3 * T * HW) * sizeof(float));
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){T, 3, d->size, d->size});
        if (!rgb || !clip || !x)
            return KN_ERR_NOMEM;
        char cap[512];
        KN_TRY(kn_train_draw_clip(d, seed ^ 0xabcdefULL, (uint64_t)i, cap, sizeof cap, rgb, clip));
        for (int64_t t = 0; t < T; t++)
            for (int ch = 0; ch < 3; ch++)
                memcpy((float *)x->v.data + (t * 3 + ch) * HW, clip + (ch * T + t) * HW, (size_t)HW * sizeof(float));
        kn_var *mean = NULL, *logvar = NULL;
        KN_TRY(kn_vae_encode(&c, vae, x, &mean, &logvar, NULL, NULL));
        const float *m = mean->v.data;
        for (int64_t k = 0, e = kn_tensor_numel(&mean->v); k < e; k++) {
            s1 += m[k];
            s2 += (double)m[k] * m[k];
            cnt++;
        }
    }
    kn_arena_reset(A, 0);
    double var = s2 / cnt - (s1 / cnt) * (s1 / cnt);
    *scale = var > 1e-12 ? (float)(1.0 / sqrt(var)) : 1.0f;
    return KN_OK;
}

static int spatial_param(const char *name, void *user) {
    (void)user;
    return !kn_unet3d_temporal_param(name);
}

kn_status kn_train_unet(kn_unet3d *unet, kn_clip_text *text, const kn_vae *vae, const kn_sched_config *sched,
                        kn_stage_state *s_unet, kn_stage_state *s_text, const kn_train_opts *o, const kn_train_data *d,
                        kn_tokenize_fn tok, void *tok_user, kn_arena *A, kn_train_progress_fn progress, void *user) {
    if (o->freeze_spatial)
        KN_TRY(kn_adamw_freeze(&s_unet->opt, spatial_param, NULL, NULL));
    const int text_frozen = o->freeze_spatial || o->freeze_text;
    kn_scheduler sc;
    KN_TRY(kn_sched_init(&sc, sched, KN_SCHED_DDPM));
    int64_t T0 = d->frames, S = d->size, HW = S * S;
    int64_t C = unet->cfg.in_channels, f = (int64_t)1 << (vae->cfg.nblocks - 1), h = S / f, w = S / f;
    int64_t L = text->cfg.max_position_embeddings < 77 ? text->cfg.max_position_embeddings : 77;
    float scale = vae->cfg.scaling_factor;
    kn_shapes_render_params rp = {d->size, d->frames, d->fps};
    kn_tape *tape = kn_tape_new();
    if (!tape)
        return KN_ERR_NOMEM;
    /* frozen spatial weights need no gradient: backward skips their dW (the activations' gradients
     * flow on), which is where most of a frozen step's saving is; restored before returning */
    if (o->freeze_spatial)
        for (int i = 0; i < unet->P.n; i++)
            if (!kn_unet3d_temporal_param(unet->P.items[i]->name))
                unet->P.items[i]->var.requires_grad = 0;
    kn_status st = KN_OK;
    int prev_bf16 = kn_set_compute_bf16(o->bf16); /* (the frozen VAE's data encode too) */
    kn_train_data dd = *d; /* images_only follows the step */
    d = &dd;
    for (; s_unet->step < o->steps && st == KN_OK; s_unet->step++, s_text->step = s_unet->step) {
        int64_t step = s_unet->step;
        dd.images_only = step < o->image_steps && !dd.source;
        /* the image phase trains single frames (T = 1), o->image_batch of them per step */
        const int64_t B = dd.images_only && o->image_batch > 0 ? o->image_batch : d->batch;
        const int64_t T = dd.images_only ? 1 : T0, nl = C * T * h * w;
        kn_arena_reset(A, 0);
        kn_tape_clear(tape);
        kn_params_zero_grads(&unet->P);
        kn_params_zero_grads(&text->P);
        /* data: clips -> latents (frozen VAE, no tape), captions -> ids */
        uint8_t *rgb = kn_arena_alloc(A, kn_shapes_clip_bytes(&rp));
        float *clip = kn_arena_alloc(A, (size_t)(3 * T0 * HW) * sizeof(float));
        float *x0 = kn_arena_alloc(A, (size_t)(B * nl) * sizeof(float));
        int32_t *ids = kn_arena_alloc(A, (size_t)(B * L) * sizeof(int32_t));
        if (!rgb || !clip || !x0 || !ids) {
            st = KN_ERR_NOMEM;
            break;
        }
        size_t data_mark = kn_arena_mark(A);
        for (int64_t b = 0; b < B && st == KN_OK; b++) {
            char text_buf[512];
            uint64_t si = kn_train_sample_index(o, step, B, b);
            if ((st = kn_train_draw_clip(d, o->seed, si, text_buf, sizeof text_buf, rgb, clip)) != KN_OK)
                break;
            int drop = kn_train_uniform(kn_train_mix(o->seed, S_DROP, 0), si) < o->cond_dropout;
            if ((st = tok(drop ? "" : text_buf, ids + b * L, (int)L, tok_user)) != KN_OK)
                break;
            kn_ctx c;
            kn_ctx_init(&c, A, NULL);
            kn_var *x = kn_var_new(&c, 4, (int64_t[]){T, 3, S, S});
            if (!x) {
                st = kn_ctx_status(&c);
                break;
            }
            for (int64_t t = 0; t < T; t++)
                for (int ch = 0; ch < 3; ch++)
                    memcpy((float *)x->v.data + (t * 3 + ch) * HW, clip + (ch * T0 + t) * HW, (size_t)HW * sizeof(float));
            kn_var *mean = NULL, *logvar = NULL;
            if ((st = kn_vae_encode(&c, vae, x, &mean, &logvar, NULL, NULL)) != KN_OK)
                break;
            const float *m = mean->v.data; /* (T, C, h, w) -> (C, T, h, w) of sample b */
            for (int64_t t = 0; t < T; t++)
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t k = 0; k < h * w; k++)
                        x0[b * nl + (ch * T + t) * h * w + k] = m[(t * C + ch) * h * w + k] * scale;
            kn_arena_reset(A, data_mark);
        }
        if (st != KN_OK)
            break;
        /* diffusion: t ~ U[0, T_train), eps ~ N(0, 1), x_t = sqrt(ac) x0 + sqrt(1 - ac) eps */
        float *eps = kn_arena_alloc(A, (size_t)(B * nl) * sizeof(float));
        float *target = kn_arena_alloc(A, (size_t)(B * nl) * sizeof(float));
        float *wts = kn_arena_alloc(A, (size_t)B * sizeof(float));
        float *tsf = kn_arena_alloc(A, (size_t)B * sizeof(float));
        int *img = kn_arena_alloc(A, (size_t)B * sizeof(int));
        float *fps = kn_arena_alloc(A, (size_t)B * sizeof(float));
        int any_img = 0;
        for (int64_t b = 0; img && fps && b < B; b++) {
            uint64_t si = kn_train_sample_index(o, step, (int)B, (int)b);
            img[b] = clip_is_image(d, o->seed, si);
            fps[b] = (float)clip_fps(d, o->seed, si);
            any_img |= img[b];
        }
        kn_ctx c;
        kn_ctx_init(&c, A, tape);
        c.checkpointing = o->checkpointing;
        kn_var *xt = kn_var_new(&c, 5, (int64_t[]){B, C, T, h, w});
        if (!eps || !target || !wts || !tsf || !img || !fps || !xt) {
            st = KN_ERR_NOMEM;
            break;
        }
        for (int64_t b = 0; b < B; b++) /* noise of sample i is the stream's elements [i*nl, (i+1)*nl) */
            kn_randn_fill(eps + b * nl, nl, kn_train_mix(o->seed, S_NOISE, 0),
                          kn_train_sample_index(o, step, B, b) * (uint64_t)nl);
        for (int64_t b = 0; b < B; b++) {
            float u = kn_train_uniform(kn_train_mix(o->seed, S_TIME, 0), kn_train_sample_index(o, step, B, b));
            int t = (int)(u * sched->num_train_timesteps);
            if (t >= sched->num_train_timesteps) t = sched->num_train_timesteps - 1;
            tsf[b] = (float)t;
            wts[b] = kn_train_noise(&sc, t, o, x0 + b * nl, eps + b * nl, nl, (float *)xt->v.data + b * nl,
                                    target + b * nl);
        }
        kn_var *emb;
        if (text_frozen) { /* a frozen text encoder: its forward off the tape, a constant input */
            kn_ctx ct;
            kn_ctx_init(&ct, A, NULL);
            emb = kn_clip_text_forward(&ct, text, ids, B, L, 0, NULL, NULL, NULL);
            if ((st = kn_ctx_status(&ct)) != KN_OK)
                break;
            emb->requires_grad = 0;
        } else {
            emb = kn_clip_text_forward(&c, text, ids, B, L, 0, NULL, NULL, NULL);
        }
        kn_unet3d_cond uc = {0};
        uc.is_image = any_img ? img : NULL;
        uc.fps = unet->cfg.fps_cond ? fps : NULL;
        kn_var *pred = kn_unet3d_forward_ex(&c, unet, xt, tsf, emb, &uc, NULL, NULL);
        if ((st = kn_ctx_status(&c)) != KN_OK)
            break;
        double loss = 0;
        if ((st = kn_train_mse_backward(&c, pred, target, wts, &loss)) != KN_OK)
            break;
        if ((st = kn_train_opt_step(s_unet, &unet->P, o)) != KN_OK ||
            (!text_frozen && (st = kn_train_opt_step(s_text, &text->P, o)) != KN_OK))
            break;
        if (!isfinite(loss)) {
            st = kn_fail(KN_ERR_INTERNAL, "unet training diverged at step %lld (loss %g)", (long long)step, loss);
            break;
        }
        if (progress && progress("unet", step, o->steps, loss, user)) {
            s_unet->step++;
            s_text->step = s_unet->step;
            break;
        }
    }
    kn_set_compute_bf16(prev_bf16);
    if (o->freeze_spatial)
        for (int i = 0; i < unet->P.n; i++)
            unet->P.items[i]->var.requires_grad = unet->P.grad_block != NULL;
    kn_tape_free(tape);
    kn_sched_free(&sc);
    return st;
}
