/* cascade.c — the super-resolution stages of the cascade (see cascade.h): temporal SR (frame
 * interpolation / extrapolation with a frame mask) and spatial SR (upsampled low-resolution
 * latents as the cond, optional noise conditioning augmentation), trained on the frozen VAE's
 * latents and the frozen text encoder's embeddings. Every random draw is a Philox stream indexed
 * by (seed, sample index), as in trainer.c, so resume and data parallelism are exact.
 *
 * Choices the header leaves open:
 *   - temporal with a clip source (d->source): the clips come at the source's rate, so the fps
 *     conditioning is d->fps (the drawn rate when d->fps is 0);
 *   - temporal with noise augmentation: the known frames' latents are noised, unknown frames stay
 *     0 (cond = m * (sqrt(ac) x0 + sqrt(1 - ac) n)), as the stage sampler does;
 *   - spatial with an fps-conditioned UNet: the conditioning is d->fps;
 *   - d->is_image (joint image-video batches) is honoured by the spatial stage only. */
#include "train/cascade.h"

#include "ops/gemm_lowp.h"

#include <math.h>
#include <string.h>

/* stream ids mixed into the seed, one per kind of draw (the first six as in trainer.c) */
enum { S_CAPTION = 1, S_CLIP, S_FRAME, S_TIME, S_NOISE, S_DROP, S_FPS, S_MASK, S_AUG, S_AUG_NOISE };

/* floor(u * n) clamped to [0, n) for a uniform draw u */
static int pick(float u, int n) {
    int k = (int)(u * (float)n);
    return k < 0 ? 0 : k >= n ? n - 1 : k;
}

static int valid_fps(int fps) { return fps == 1 || fps == 2 || fps == 4 || fps == 8 || fps == 16; }

/* Every config mismatch, before any work. */
static kn_status check_config(const kn_unet3d *sr, const kn_sr_opts *so, const kn_clip_text *text, const kn_vae *vae,
                              const kn_sched_config *sched, const kn_train_opts *o, const kn_train_data *d) {
    if (!sr || !so || !text || !vae || !sched || !o || !d)
        return kn_fail(KN_ERR_ARG, "train_sr: a required argument is NULL");
    const kn_unet3d_config *u = &sr->cfg;
    const char *name = so->kind == KN_SR_TEMPORAL ? "tsr" : "ssr";
    int C = vae->cfg.latent_channels, f = 1 << (vae->cfg.nblocks - 1);
    if (so->kind != KN_SR_TEMPORAL && so->kind != KN_SR_SPATIAL)
        return kn_fail(KN_ERR_ARG, "train_sr: unknown SR kind %d", (int)so->kind);
    if (u->in_channels != C || u->out_channels != C)
        return kn_fail(KN_ERR_ARG, "train_sr %s: unet in/out channels %d/%d do not match the VAE's %d latent channels",
                       name, u->in_channels, u->out_channels, C);
    if (u->cross_attention_dim != text->cfg.hidden_size)
        return kn_fail(KN_ERR_ARG, "train_sr %s: unet cross_attention_dim %d != text hidden size %d", name,
                       u->cross_attention_dim, text->cfg.hidden_size);
    if (d->batch < 1 || d->frames < 1 || d->size < 1)
        return kn_fail(KN_ERR_ARG, "train_sr %s: batch %d, frames %d, size %d must be >= 1", name, d->batch, d->frames,
                       d->size);
    if (d->size % f)
        return kn_fail(KN_ERR_ARG, "train_sr %s: size %d is not divisible by the VAE factor %d", name, d->size, f);
    if (d->frames > KN_SHAPES_MAX_FRAMES)
        return kn_fail(KN_ERR_ARG, "train_sr %s: %d frames > %d", name, d->frames, KN_SHAPES_MAX_FRAMES);
    if (so->noise_aug_max < 0 || so->noise_aug_max > sched->num_train_timesteps)
        return kn_fail(KN_ERR_ARG, "train_sr %s: noise_aug_max %d is outside [0, %d]", name, so->noise_aug_max,
                       sched->num_train_timesteps);
    if (!!u->noise_aug_cond != (so->noise_aug_max > 0))
        return kn_fail(KN_ERR_ARG, "train_sr %s: the unet's noise_aug_cond (%d) needs noise_aug_max > 0 and vice versa (%d)",
                       name, u->noise_aug_cond, so->noise_aug_max);
    if (so->kind == KN_SR_TEMPORAL) {
        if (u->cond_channels != C + 1)
            return kn_fail(KN_ERR_ARG, "train_sr tsr: unet cond_channels %d != latent channels + 1 = %d (masked frames + mask)",
                           u->cond_channels, C + 1);
        if (!u->fps_cond)
            return kn_fail(KN_ERR_ARG, "train_sr tsr: the unet has no fps_cond (the temporal stage is fps-conditioned)");
        if (d->frames < 2)
            return kn_fail(KN_ERR_ARG, "train_sr tsr: %d frames (need >= 2)", d->frames);
        if (so->nfps < 1 || so->nfps > KN_SR_MAX_CHOICES)
            return kn_fail(KN_ERR_ARG, "train_sr tsr: nfps %d is outside [1, %d]", so->nfps, KN_SR_MAX_CHOICES);
        for (int i = 0; i < so->nfps; i++)
            if (!valid_fps(so->fps[i]))
                return kn_fail(KN_ERR_ARG, "train_sr tsr: fps %d is not one of 16, 8, 4, 2, 1", so->fps[i]);
        if (!(so->p_extrapolate >= 0 && so->p_extrapolate <= 1))
            return kn_fail(KN_ERR_ARG, "train_sr tsr: p_extrapolate %g is outside [0, 1]", (double)so->p_extrapolate);
        if (so->p_extrapolate < 1) {
            if (so->nskips < 1 || so->nskips > KN_SR_MAX_CHOICES)
                return kn_fail(KN_ERR_ARG, "train_sr tsr: nskips %d is outside [1, %d]", so->nskips, KN_SR_MAX_CHOICES);
            for (int i = 0; i < so->nskips; i++)
                if (so->skips[i] < 2 || so->skips[i] > d->frames)
                    return kn_fail(KN_ERR_ARG, "train_sr tsr: skip %d is outside [2, frames = %d]", so->skips[i],
                                   d->frames);
        }
    } else {
        if (u->cond_channels != C)
            return kn_fail(KN_ERR_ARG, "train_sr ssr: unet cond_channels %d != latent channels %d (upsampled low-res latents)",
                           u->cond_channels, C);
        if (so->scale < 2)
            return kn_fail(KN_ERR_ARG, "train_sr ssr: scale %d must be >= 2", so->scale);
        if (d->size % (f * so->scale))
            return kn_fail(KN_ERR_ARG, "train_sr ssr: size %d is not divisible by VAE factor x scale = %d", d->size,
                           f * so->scale);
        if (u->fps_cond && !valid_fps(d->fps))
            return kn_fail(KN_ERR_ARG, "train_sr ssr: the unet is fps-conditioned but data fps %d is not 16, 8, 4, 2 or 1",
                           d->fps);
    }
    return KN_OK;
}

/* Frames x (T, 3, S, S) in [-1, 1] -> scaled latents out (C, T, h, w), frozen VAE, no tape; with
 * up > 1 the latents are bilinearly upsampled by `up` first. Allocates from A (caller resets). */
static kn_status encode(const kn_vae *vae, kn_arena *A, kn_tensor *x, int64_t up, float *out) {
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_var *xv = kn_var_wrap(&c, x);
    kn_var *mean = NULL, *logvar = NULL;
    if (!xv)
        return kn_ctx_status(&c);
    KN_TRY(kn_vae_encode(&c, vae, xv, &mean, &logvar, NULL, NULL));
    kn_tensor m = mean->v;
    if (up > 1) {
        kn_tensor r = {0};
        KN_TRY(kn_resize_bilinear(A, &mean->v, m.shape[2] * up, m.shape[3] * up, &r));
        m = r;
    }
    int64_t T = m.shape[0], C = m.shape[1], hw = m.shape[2] * m.shape[3];
    float scale = vae->cfg.scaling_factor;
    const float *mv = m.data;
    for (int64_t t = 0; t < T; t++)
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t k = 0; k < hw; k++)
                out[(ch * T + t) * hw + k] = mv[(t * C + ch) * hw + k] * scale;
    return KN_OK;
}

kn_status kn_train_sr(kn_unet3d *sr, const kn_sr_opts *so, const kn_clip_text *text, const kn_vae *vae,
                      const kn_sched_config *sched, kn_stage_state *s, const kn_train_opts *o,
                      const kn_train_data *d, kn_tokenize_fn tok, void *tok_user, kn_arena *A,
                      kn_train_progress_fn progress, void *user) {
    KN_TRY(check_config(sr, so, text, vae, sched, o, d));
    if (!s || !tok || !A)
        return kn_fail(KN_ERR_ARG, "train_sr: a required argument is NULL");
    kn_scheduler sc;
    KN_TRY(kn_sched_init(&sc, sched, KN_SCHED_DDPM));
    const int temporal = so->kind == KN_SR_TEMPORAL;
    const char *stage = temporal ? "tsr" : "ssr";
    int64_t B = d->batch, T = d->frames, S = d->size, HW = S * S;
    int64_t C = sr->cfg.in_channels, f = (int64_t)1 << (vae->cfg.nblocks - 1), h = S / f, w = S / f;
    int64_t L = text->cfg.max_position_embeddings < 77 ? text->cfg.max_position_embeddings : 77;
    int64_t nl = C * T * h * w, CC = sr->cfg.cond_channels, ncl = CC * T * h * w;
    int64_t sl = temporal ? 1 : so->scale;
    kn_tape *tape = kn_tape_new();
    if (!tape) {
        kn_sched_free(&sc);
        return kn_fail(KN_ERR_NOMEM, "train_sr: out of memory for the tape");
    }
    kn_status st = KN_OK;
    int prev_bf16 = kn_set_compute_bf16(o->bf16);
    for (; s->step < o->steps && st == KN_OK; s->step++) {
        int64_t step = s->step;
        kn_arena_reset(A, 0);
        kn_tape_clear(tape);
        kn_params_zero_grads(&sr->P);
        kn_shapes_render_params rp_max = {d->size, d->frames, 16};
        uint8_t *rgb = kn_arena_alloc(A, kn_shapes_clip_bytes(&rp_max));
        float *clip = kn_arena_alloc(A, (size_t)(3 * T * HW) * sizeof(float));
        float *x0 = kn_arena_alloc(A, (size_t)(B * nl) * sizeof(float));
        float *cnd = kn_arena_alloc(A, (size_t)(B * ncl) * sizeof(float));
        float *fpsv = kn_arena_alloc(A, (size_t)B * sizeof(float));
        float *augv = kn_arena_alloc(A, (size_t)B * sizeof(float));
        int32_t *ids = kn_arena_alloc(A, (size_t)(B * L) * sizeof(int32_t));
        if (!rgb || !clip || !x0 || !cnd || !fpsv || !augv || !ids) {
            st = KN_ERR_NOMEM;
            break;
        }
        size_t data_mark = kn_arena_mark(A);
        /* data: clip -> latents x0 and cond, caption -> ids (frozen VAE, no tape) */
        for (int64_t b = 0; b < B && st == KN_OK; b++) {
            uint64_t idx = kn_train_sample_index(o, step, B, b);
            char caption[512];
            int fps = temporal ? so->fps[pick(kn_train_uniform(kn_train_mix(o->seed, S_FPS, 0), idx), so->nfps)] : d->fps;
            if (d->source) {
                st = d->source(idx, clip, caption, sizeof caption, d->source_user);
                if (temporal && d->fps > 0)
                    fps = d->fps; /* a source's clips come at its own rate */
            } else {
                kn_shapes_caption cap;
                kn_shapes_render_params rp = {d->size, d->frames, temporal ? fps : d->fps};
                if ((st = kn_shapes_sample(KN_SPLIT_RANDOM, kn_train_mix(o->seed, S_CAPTION, 0), idx, &cap)) == KN_OK &&
                    (st = kn_shapes_format(&cap, caption, sizeof caption)) == KN_OK &&
                    (st = kn_shapes_render(&cap, kn_train_mix(o->seed, S_CLIP, idx), &rp, rgb, NULL)) == KN_OK)
                    for (int64_t t = 0; t < T; t++)
                        for (int64_t k = 0; k < HW; k++)
                            for (int ch = 0; ch < 3; ch++)
                                clip[(ch * T + t) * HW + k] = rgb[(t * HW + k) * 3 + ch] / 127.5f - 1.0f;
            }
            if (st != KN_OK)
                break;
            fpsv[b] = (float)fps;
            int drop = kn_train_uniform(kn_train_mix(o->seed, S_DROP, 0), idx) < o->cond_dropout;
            if ((st = tok(drop ? "" : caption, ids + b * L, (int)L, tok_user)) != KN_OK)
                break;
            kn_tensor x;
            if ((st = kn_tensor_alloc(A, &x, KN_F32, 4, (int64_t[]){T, 3, S, S})) != KN_OK)
                break;
            for (int64_t t = 0; t < T; t++)
                for (int ch = 0; ch < 3; ch++)
                    memcpy((float *)x.data + (t * 3 + ch) * HW, clip + (ch * T + t) * HW, (size_t)HW * sizeof(float));
            if ((st = encode(vae, A, &x, 1, x0 + b * nl)) != KN_OK)
                break;
            float *cb = cnd + b * ncl;
            int64_t thw = T * h * w, fhw = h * w;
            if (temporal) {
                /* mask: interpolation by k (t % k == 0) or extrapolation (first half known) */
                int extrap = kn_train_uniform(kn_train_mix(o->seed, S_MASK, 0), 2 * idx) < so->p_extrapolate;
                int k = extrap ? 0 : so->skips[pick(kn_train_uniform(kn_train_mix(o->seed, S_MASK, 0), 2 * idx + 1), so->nskips)];
                for (int64_t t = 0; t < T; t++) {
                    float m = extrap ? (float)(t < T / 2) : (float)(t % k == 0);
                    for (int64_t ch = 0; ch < C; ch++)
                        for (int64_t j = 0; j < fhw; j++)
                            cb[ch * thw + t * fhw + j] = x0[b * nl + ch * thw + t * fhw + j] * m;
                    for (int64_t j = 0; j < fhw; j++)
                        cb[C * thw + t * fhw + j] = m;
                }
            } else {
                /* low resolution: area downsampling of the pixels, encoded, upsampled to x0's size */
                kn_tensor lo = {0};
                if ((st = kn_avg_pool2d(A, &x, (int)sl, &lo)) != KN_OK ||
                    (st = encode(vae, A, &lo, sl, cb)) != KN_OK)
                    break;
            }
            augv[b] = 0;
            if (so->noise_aug_max > 0) {
                /* conditioning augmentation of the latent channels: level s ~ U[0, max) */
                int lev = pick(kn_train_uniform(kn_train_mix(o->seed, S_AUG, 0), idx), so->noise_aug_max);
                augv[b] = (float)lev;
                float ac = sc.alphas_cumprod[lev], sa = sqrtf(ac), sb = sqrtf(1.0f - ac);
                float *n = kn_arena_alloc(A, (size_t)(C * thw) * sizeof(float));
                if (!n) {
                    st = KN_ERR_NOMEM;
                    break;
                }
                kn_randn_fill(n, C * thw, kn_train_mix(o->seed, S_AUG_NOISE, 0), idx * (uint64_t)(C * thw));
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t j = 0; j < thw; j++) {
                        float v = sa * cb[ch * thw + j] + sb * n[ch * thw + j];
                        cb[ch * thw + j] = temporal ? v * cb[C * thw + j] : v; /* unknown frames stay 0 */
                    }
            }
            kn_arena_reset(A, data_mark);
        }
        if (st != KN_OK)
            break;
        /* text embeddings: the frozen encoder, no tape; a constant for the taped forward */
        kn_ctx tc;
        kn_ctx_init(&tc, A, NULL);
        kn_var *e = kn_clip_text_forward(&tc, text, ids, B, L, 0, NULL, NULL, NULL);
        if ((st = kn_ctx_status(&tc)) != KN_OK)
            break;
        /* diffusion: t ~ U[0, T_train), eps ~ N(0, 1), x_t = sqrt(ac) x0 + sqrt(1 - ac) eps */
        float *eps = kn_arena_alloc(A, (size_t)(B * nl) * sizeof(float));
        float *target = kn_arena_alloc(A, (size_t)(B * nl) * sizeof(float));
        float *wts = kn_arena_alloc(A, (size_t)B * sizeof(float));
        float *tsf = kn_arena_alloc(A, (size_t)B * sizeof(float));
        kn_ctx c;
        kn_ctx_init(&c, A, tape);
        c.checkpointing = o->checkpointing;
        kn_var *xt = kn_var_new(&c, 5, (int64_t[]){B, C, T, h, w});
        kn_tensor tcnd = kn_tensor_view(KN_F32, 5, (int64_t[]){B, CC, T, h, w}, cnd);
        kn_var *emb = kn_var_wrap(&c, &e->v), *cv = kn_var_wrap(&c, &tcnd);
        if (!eps || !target || !wts || !tsf || !xt || !emb || !cv) {
            st = KN_ERR_NOMEM;
            break;
        }
        emb->requires_grad = 0;
        cv->requires_grad = 0;
        for (int64_t b = 0; b < B; b++)
            kn_randn_fill(eps + b * nl, nl, kn_train_mix(o->seed, S_NOISE, 0),
                          kn_train_sample_index(o, step, B, b) * (uint64_t)nl);
        for (int64_t b = 0; b < B; b++) {
            float u = kn_train_uniform(kn_train_mix(o->seed, S_TIME, 0), kn_train_sample_index(o, step, B, b));
            int t = pick(u, sched->num_train_timesteps);
            tsf[b] = (float)t;
            wts[b] = kn_train_noise(&sc, t, o, x0 + b * nl, eps + b * nl, nl, (float *)xt->v.data + b * nl,
                                    target + b * nl);
        }
        /* joint image-video training (spatial stage only): temporal layers off for image samples */
        int *img = kn_arena_alloc(A, (size_t)B * sizeof(int));
        int any_img = 0;
        if (!img) {
            st = KN_ERR_NOMEM;
            break;
        }
        for (int64_t b = 0; b < B; b++) {
            img[b] = !temporal && d->is_image ? d->is_image(kn_train_sample_index(o, step, B, b), d->source_user) : 0;
            any_img |= img[b];
        }
        kn_unet3d_cond uc = {0};
        uc.is_image = any_img ? img : NULL;
        uc.cond = cv;
        uc.fps = sr->cfg.fps_cond ? fpsv : NULL;
        uc.noise_aug = sr->cfg.noise_aug_cond ? augv : NULL;
        kn_var *pred = kn_unet3d_forward_ex(&c, sr, xt, tsf, emb, &uc, NULL, NULL);
        if ((st = kn_ctx_status(&c)) != KN_OK)
            break;
        double loss = 0;
        if ((st = kn_train_mse_backward(&c, pred, target, wts, &loss)) != KN_OK)
            break;
        if ((st = kn_train_opt_step(s, &sr->P, o)) != KN_OK)
            break;
        if (!isfinite(loss)) {
            st = kn_fail(KN_ERR_INTERNAL, "%s training diverged at step %lld (loss %g)", stage, (long long)step, loss);
            break;
        }
        if (progress && progress(stage, step, o->steps, loss, user)) {
            s->step++;
            break;
        }
    }
    kn_set_compute_bf16(prev_bf16);
    kn_tape_free(tape);
    kn_sched_free(&sc);
    return st;
}
