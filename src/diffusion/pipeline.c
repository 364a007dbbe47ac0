/* pipeline.c — TextToVideoSDPipeline.__call__ and VideoToVideoSDPipeline.__call__ (diffusers
 * 0.25) over kinema's models: encode prompts, denoise with classifier-free guidance, decode the
 * frames with the VAE in chunks. */
#include "diffusion/pipeline.h"

#include <math.h>
#include <string.h>

kn_t2v_params kn_t2v_params_default(void) {
    kn_t2v_params p;
    memset(&p, 0, sizeof p);
    p.steps = 25;
    p.guidance_scale = 9.0f;
    p.frames = 16;
    p.height = 256;
    p.width = 256;
    p.seed = 0;
    p.decode_chunk = 4;
    p.strength = 1.0f;
    return p;
}

kn_status kn_t2v_encode_text(const kn_t2v_models *m, const int32_t *ids, int64_t B, int64_t L, int clip_skip,
                             float *embeds) {
    kn_arena *A = kn_arena_new((size_t)64 << 20);
    if (!A)
        return KN_ERR_NOMEM;
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_var *out = kn_clip_text_forward(&c, m->text, ids, B, L, clip_skip, NULL, NULL, NULL);
    kn_status st = kn_ctx_status(&c);
    if (st == KN_OK)
        memcpy(embeds, out->v.data, kn_tensor_nbytes(&out->v));
    kn_arena_free(A);
    return st;
}

static int vae_factor(const kn_vae *v) { return 1 << (v->cfg.nblocks - 1); }

size_t kn_t2v_estimate_bytes(const kn_t2v_models *m, const kn_t2v_params *p) {
    const kn_unet3d_config *u = &m->unet->cfg;
    int f = vae_factor(m->vae);
    double h = (double)p->height / f, w = (double)p->width / f;
    double B = p->guidance_scale > 1.0f ? 2 : 1;
    /* activations at the first level dominate: the skips of every level are kept, and a block's
     * scratch is a few times its input. Measured on the fixture-shaped and ModelScope-shaped
     * models this bounds the peak within ~30%. */
    double per_frame = 0;
    double hw = h * w;
    for (int i = 0; i < u->nblocks; i++) {
        per_frame += (u->layers_per_block + 1) * u->block_out_channels[i] * hw; /* skips */
        hw /= 4;
    }
    double C0 = u->block_out_channels[0], lvl0 = C0 * h * w;
    double attn = 8.0 * lvl0 + 4.0 * h * w * 77; /* q,k,v,o, GEGLU (8x), scores are not stored */
    double unet = B * p->frames * (per_frame + attn + 6 * lvl0) * 4.0;
    const kn_vae_config *vc = &m->vae->cfg;
    int chunk = p->decode_chunk > 0 ? p->decode_chunk : p->frames;
    double vae = (double)chunk * vc->block_out_channels[0] * p->height * p->width * 4.0 * 6.0 +
                 (double)chunk * vc->block_out_channels[vc->nblocks - 1] * h * w * 4.0 * 8.0;
    return (size_t)(unet > vae ? unet : vae) + ((size_t)64 << 20);
}

kn_status kn_t2v_decode(const kn_t2v_models *m, kn_arena *A, const float *latents, int64_t F, int64_t h, int64_t w,
                        int chunk, float *video) {
    const kn_vae *v = m->vae;
    int64_t C = v->cfg.latent_channels, f = vae_factor(v), H = h * f, W = w * f;
    if (chunk <= 0 || chunk > F)
        chunk = (int)F;
    size_t mark = kn_arena_mark(A);
    for (int64_t f0 = 0; f0 < F; f0 += chunk) {
        int64_t n = KN_MIN((int64_t)chunk, F - f0);
        kn_arena_reset(A, mark);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *z = kn_var_new(&c, 4, (int64_t[]){n, C, h, w});
        if (!z)
            return kn_ctx_status(&c);
        /* (1, C, F, h, w) frames f0..f0+n -> (n, C, h, w), divided by the scaling factor */
        float *zd = z->v.data;
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t k = 0; k < h * w; k++)
                    zd[(i * C + ch) * h * w + k] = latents[(ch * F + f0 + i) * h * w + k] / v->cfg.scaling_factor;
        kn_var *y = kn_vae_decode(&c, v, z, NULL, NULL);
        kn_status st = kn_ctx_status(&c);
        if (st != KN_OK)
            return st;
        const float *yd = y->v.data;
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < 3; ch++)
                memcpy(video + (ch * F + f0 + i) * H * W, yd + (i * 3 + ch) * H * W, (size_t)(H * W) * sizeof(float));
    }
    kn_arena_reset(A, mark);
    return KN_OK;
}

kn_status kn_t2v_encode_video(const kn_t2v_models *m, kn_arena *A, const float *video, int64_t F, int64_t H,
                              int64_t W, int chunk, float *latents) {
    const kn_vae *v = m->vae;
    int64_t f = vae_factor(v);
    if (H % f || W % f)
        return kn_fail(KN_ERR_ARG, "video-to-video: %lldx%lld is not a multiple of the VAE factor %lld", (long long)W,
                       (long long)H, (long long)f);
    int64_t C = v->cfg.latent_channels, h = H / f, w = W / f;
    if (chunk <= 0 || chunk > F)
        chunk = (int)F;
    size_t mark = kn_arena_mark(A);
    for (int64_t f0 = 0; f0 < F; f0 += chunk) {
        int64_t n = KN_MIN((int64_t)chunk, F - f0);
        kn_arena_reset(A, mark);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){n, 3, H, W});
        if (!x)
            return kn_ctx_status(&c);
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < 3; ch++)
                memcpy((float *)x->v.data + (i * 3 + ch) * H * W, video + (ch * F + f0 + i) * H * W,
                       (size_t)(H * W) * sizeof(float));
        kn_var *mean = NULL, *logvar = NULL;
        kn_status st = kn_vae_encode(&c, v, x, &mean, &logvar, NULL, NULL);
        if (st != KN_OK)
            return st;
        const float *md = mean->v.data;
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t k = 0; k < h * w; k++)
                    latents[(ch * F + f0 + i) * h * w + k] = md[(i * C + ch) * h * w + k] * v->cfg.scaling_factor;
    }
    kn_arena_reset(A, mark);
    return KN_OK;
}

kn_status kn_t2v_run(const kn_t2v_models *m, kn_arena *A, const float *pos, const float *neg, int64_t L,
                     const kn_t2v_params *p, float *latents_out, float *video_out) {
    const kn_unet3d_config *uc = &m->unet->cfg;
    int f = vae_factor(m->vae);
    if (p->steps < 1 || p->steps > KN_SCHED_MAX_STEPS)
        return kn_fail(KN_ERR_ARG, "steps must be in [1, %d], got %d", KN_SCHED_MAX_STEPS, p->steps);
    if (p->frames < 1)
        return kn_fail(KN_ERR_ARG, "frames must be >= 1, got %d", p->frames);
    if (p->height < f || p->width < f || p->height % f || p->width % f)
        return kn_fail(KN_ERR_ARG, "height and width must be positive multiples of %d, got %dx%d", f, p->width,
                       p->height);
    if (!(p->guidance_scale >= 0) || !isfinite(p->guidance_scale))
        return kn_fail(KN_ERR_ARG, "guidance scale must be a finite number >= 0");
    if (!(p->strength > 0 && p->strength <= 1))
        return kn_fail(KN_ERR_ARG, "strength must be in (0, 1], got %g", p->strength);
    int cfg = p->guidance_scale > 1.0f, uc_fps = uc->fps_cond;
    if (uc_fps && !(p->fps > 0))
        return kn_fail(KN_ERR_ARG, "this model is conditioned on the frame rate: give fps > 0");
    if (cfg && !neg)
        return kn_fail(KN_ERR_ARG, "classifier-free guidance needs the negative (or empty) prompt embeddings");
    int64_t C = uc->in_channels, F = p->frames, h = p->height / f, w = p->width / f, D = uc->cross_attention_dim;
    int64_t n = C * F * h * w;
    kn_scheduler s;
    KN_TRY(kn_sched_init(&s, &m->sched, m->sched_kind));
    kn_status st = kn_sched_set_timesteps(&s, p->steps);
    if (st != KN_OK)
        return st;
    s.noise_seed = p->seed ^ 0x5eed5eedULL;
    int first = 0;
    if (p->init_video_latents) {
        /* get_timesteps(strength): skip the first N - int(N * strength) steps */
        int init_t = (int)(p->steps * p->strength);
        if (init_t > p->steps) init_t = p->steps;
        first = p->steps - init_t;
        if (first >= p->steps)
            return kn_fail(KN_ERR_ARG, "strength %g leaves no denoising step", p->strength);
    }
    size_t mark0 = kn_arena_mark(A);
    /* persistent buffers: latents, the CFG batch input, text embeds, eps */
    float *lat = kn_arena_alloc(A, (size_t)n * sizeof(float));
    float *noise_pred = kn_arena_alloc(A, (size_t)n * sizeof(float));
    int64_t Bc = cfg ? 2 : 1;
    float *text = kn_arena_alloc(A, (size_t)(Bc * L * D) * sizeof(float));
    float *unet_in = kn_arena_alloc(A, (size_t)(Bc * n) * sizeof(float));
    if (!lat || !noise_pred || !text || !unet_in) {
        kn_sched_free(&s);
        kn_arena_reset(A, mark0);
        return KN_ERR_NOMEM;
    }
    if (cfg) {
        memcpy(text, neg, (size_t)(L * D) * sizeof(float));
        memcpy(text + L * D, pos, (size_t)(L * D) * sizeof(float));
    } else {
        memcpy(text, pos, (size_t)(L * D) * sizeof(float));
    }
    if (p->init_latents) {
        memcpy(lat, p->init_latents, (size_t)n * sizeof(float));
    } else {
        kn_randn_fill(lat, n, p->seed, 0);
    }
    if (p->init_video_latents) {
        /* scheduler.add_noise(init_latents, noise, timesteps[first]) */
        double t = s.timesteps[first];
        for (int64_t j = 0; j < n; j++) {
            float x0 = p->init_video_latents[j], e = lat[j];
            if (m->sched_kind == KN_SCHED_EULER || m->sched_kind == KN_SCHED_EULER_A) {
                lat[j] = x0 + (float)s.sigmas[first] * e;
            } else if (m->sched_kind == KN_SCHED_DPMPP_2M) {
                float sg = (float)s.sigmas[first], a = 1.0f / sqrtf(sg * sg + 1.0f);
                lat[j] = a * x0 + sg * a * e;
            } else {
                float ac = s.alphas_cumprod[(int)t];
                lat[j] = sqrtf(ac) * x0 + sqrtf(1.0f - ac) * e;
            }
        }
    } else {
        for (int64_t j = 0; j < n; j++)
            lat[j] *= s.init_noise_sigma;
    }
    size_t mark = kn_arena_mark(A);
    kn_tensor tin = kn_tensor_view(KN_F32, 5, (int64_t[]){Bc, C, F, h, w}, unet_in);
    kn_tensor ttext = kn_tensor_view(KN_F32, 3, (int64_t[]){Bc, L, D}, text);
    for (int i = first; i < p->steps; i++) {
        kn_sched_scale_model_input(&s, i, lat, unet_in, n);
        if (cfg)
            memcpy(unet_in + n, unet_in, (size_t)n * sizeof(float));
        float ts[2] = {(float)s.timesteps[i], (float)s.timesteps[i]};
        kn_arena_reset(A, mark);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        float fps[2] = {p->fps, p->fps};
        kn_unet3d_cond uc = {0};
        uc.fps = uc_fps ? fps : NULL;
        kn_var *y = kn_unet3d_forward_ex(&c, m->unet, kn_var_wrap(&c, &tin), ts, kn_var_wrap(&c, &ttext), &uc, NULL,
                                         NULL);
        st = kn_ctx_status(&c);
        if (st != KN_OK)
            break;
        const float *yo = y->v.data;
        if (cfg) {
            float g = p->guidance_scale;
            for (int64_t j = 0; j < n; j++)
                noise_pred[j] = yo[j] + g * (yo[n + j] - yo[j]);
        } else {
            memcpy(noise_pred, yo, (size_t)n * sizeof(float));
        }
        st = kn_sched_step(&s, i, noise_pred, lat, n, NULL);
        if (st != KN_OK)
            break;
        if (p->on_step) {
            kn_tensor tl = kn_tensor_view(KN_F32, 5, (int64_t[]){1, C, F, h, w}, lat);
            p->on_step(i, p->steps, s.timesteps[i], &tin, &y->v, &tl, p->user);
        }
    }
    kn_arena_reset(A, mark);
    if (st == KN_OK && latents_out)
        memcpy(latents_out, lat, (size_t)n * sizeof(float));
    if (st == KN_OK && video_out)
        st = kn_t2v_decode(m, A, lat, F, h, w, p->decode_chunk, video_out);
    kn_sched_free(&s);
    kn_arena_reset(A, mark0);
    return st;
}

kn_status kn_t2v_decode_taesd(const kn_taesd *m, kn_arena *A, const float *latents, int64_t C, int64_t F, int64_t h,
                              int64_t w, int chunk, float *video) {
    if (!m->cfg.has_decoder)
        return kn_fail(KN_ERR_ARG, "taesd: these weights have no decoder");
    if (m->cfg.latent_channels != C)
        return kn_fail(KN_ERR_SHAPE, "taesd: the decoder takes %lld latent channels, the model makes %lld",
                       (long long)m->cfg.latent_channels, (long long)C);
    int64_t H = 8 * h, W = 8 * w;
    if (chunk <= 0 || chunk > F)
        chunk = (int)F;
    size_t mark = kn_arena_mark(A);
    for (int64_t f0 = 0; f0 < F; f0 += chunk) {
        int64_t n = KN_MIN((int64_t)chunk, F - f0);
        kn_arena_reset(A, mark);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *z = kn_var_new(&c, 4, (int64_t[]){n, C, h, w});
        if (!z)
            return kn_ctx_status(&c);
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < C; ch++)
                memcpy((float *)z->v.data + (i * C + ch) * h * w, latents + (ch * F + f0 + i) * h * w,
                       (size_t)(h * w) * sizeof(float));
        kn_var *y = kn_taesd_decode(&c, m, z, NULL, NULL);
        KN_TRY(kn_ctx_status(&c));
        const float *yd = y->v.data;
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < 3; ch++)
                for (int64_t k = 0; k < H * W; k++) /* [0, 1] -> [-1, 1] */
                    video[(ch * F + f0 + i) * H * W + k] = 2.0f * yd[(i * 3 + ch) * H * W + k] - 1.0f;
    }
    kn_arena_reset(A, mark);
    return KN_OK;
}

kn_status kn_t2v_decode_taehv(const kn_taehv *m, kn_arena *A, const float *latents, int64_t C, int64_t F, int64_t h,
                              int64_t w, float *video, int64_t *Fo) {
    if (!m->cfg.has_decoder)
        return kn_fail(KN_ERR_ARG, "taehv: these weights have no decoder");
    if (m->cfg.latent_channels != C)
        return kn_fail(KN_ERR_SHAPE, "taehv: the decoder takes %lld latent channels, the model makes %lld",
                       (long long)m->cfg.latent_channels, (long long)C);
    size_t mark = kn_arena_mark(A);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_var *z = kn_var_new(&c, 5, (int64_t[]){1, F, C, h, w}); /* NCTHW -> NTCHW */
    if (!z)
        return kn_ctx_status(&c);
    for (int64_t t = 0; t < F; t++)
        for (int64_t ch = 0; ch < C; ch++)
            memcpy((float *)z->v.data + (t * C + ch) * h * w, latents + (ch * F + t) * h * w,
                   (size_t)(h * w) * sizeof(float));
    kn_var *y = kn_taehv_decode(&c, m, z, NULL, NULL);
    kn_status st = kn_ctx_status(&c);
    if (st == KN_OK) {
        int64_t T = y->v.shape[1], H = y->v.shape[3], W = y->v.shape[4];
        const float *yd = y->v.data;
        for (int64_t t = 0; t < T; t++)
            for (int64_t ch = 0; ch < 3; ch++)
                for (int64_t k = 0; k < H * W; k++)
                    video[(ch * T + t) * H * W + k] = 2.0f * yd[(t * 3 + ch) * H * W + k] - 1.0f;
        *Fo = T;
    }
    kn_arena_reset(A, mark);
    return st;
}

void kn_video_to_rgb8(const float *video, int64_t F, int64_t H, int64_t W, uint8_t *rgb) {
    for (int64_t f = 0; f < F; f++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                for (int ch = 0; ch < 3; ch++) {
                    float v = video[((ch * F + f) * H + y) * W + x] / 2.0f + 0.5f;
                    v = v < 0 ? 0 : (v > 1 ? 1 : v);
                    rgb[((f * H + y) * W + x) * 3 + ch] = (uint8_t)(v * 255.0f);
                }
}
