/* cascade.c — the samplers of the cascade's super-resolution stages (diffusion/cascade.h).
 *
 * Every stage is the denoising loop of kn_t2v_run (scheduler init / set_timesteps /
 * scale_model_input / step, classifier-free guidance on a batch [neg, pos]) around
 * kn_unet3d_forward_ex with the stage's conditioning:
 *
 *   temporal (interpolate, extend): cond (B, C + 1, Fo, h, w) = [known * mask, mask], fps = the
 *     output rate (and, for a noise-augmentation conditioned UNet, the known frames noised to
 *     p->noise_aug as kn_train_sr does); the known frames are copied into the result unchanged.
 *   spatial (upscale): cond (B, C, F, H, W) = bilinear upsampling of the low-resolution latents,
 *     noised to level p->noise_aug (Imagen Video's conditioning augmentation), the level also
 *     being the UNet's noise_aug input; frames are denoised p->chunk at a time.
 *   Level 0 adds no noise at all (kn_train_sr noises to alphas_cumprod[0] = 1 - beta_0 there).
 *
 * Random numbers. Every draw is a Philox stream indexed by the element's position in the full
 * latent (1, C, F, H, W), N = C F H W elements, so that a chunked run draws exactly what the
 * full run draws for the same elements:
 *   sample noise x_T        stream (seed),              element j
 *   scheduler step i noise  stream (seed ^ STEP_SALT),  element i N + j   (DDPM, Euler a, DDIM eta > 0;
 *                           the same values kn_sched_step would draw itself in an unchunked run)
 *   augmentation noise      stream (seed ^ AUG_SALT),   element j
 * With same_noise, j is the element's index within one frame (C, 1, H, W): every frame gets the
 * same noise in all three streams.
 *
 * Memory: the per-run buffers come from A once, then every UNet call resets A to a mark, so the
 * steps (and the chunks) allocate nothing new; A is back at its entry mark on return. */
#include "diffusion/cascade.h"

#include "ops/ops.h"

#include <string.h>
#include <time.h>

#include <math.h>
#include <string.h>

#define STEP_SALT 0x5eed5eedULL /* kn_t2v_run's scheduler noise stream */
#define AUG_SALT 0xa06a06a06a0ULL

kn_stage_params kn_stage_params_default(void) {
    kn_stage_params p;
    memset(&p, 0, sizeof p);
    p.steps = 20;
    p.guidance_scale = 1.0f;
    p.sched_kind = KN_SCHED_DDIM;
    return p;
}

/* Fills frames [f0, f0 + n) of the (1, C, F, HW) stream (seed, base) into dst (C, n, HW).
 * same: one frame (C, 1, HW) at stream offsets base + c HW, repeated over the n frames. */
static void fill_noise(float *dst, int64_t C, int64_t F, int64_t f0, int64_t n, int64_t HW, uint64_t seed,
                       uint64_t base, int same) {
    for (int64_t c = 0; c < C; c++) {
        float *d = dst + c * n * HW;
        if (same) {
            kn_randn_fill(d, HW, seed, base + (uint64_t)(c * HW));
            for (int64_t f = 1; f < n; f++)
                memcpy(d + f * HW, d, (size_t)HW * sizeof(float));
        } else {
            kn_randn_fill(d, n * HW, seed, base + (uint64_t)((c * F + f0) * HW));
        }
    }
}

static int sched_needs_noise(const kn_scheduler *s) {
    return s->kind == KN_SCHED_DDPM || s->kind == KN_SCHED_EULER_A || (s->kind == KN_SCHED_DDIM && s->cfg.eta > 0);
}

/* One denoising run over frames [f0, f0 + n) of a (1, C, F, H, W) latent. */
typedef struct stage_run {
    const kn_unet3d *u;
    const kn_sched_config *sched;
    const kn_stage_params *p;
    kn_arena *A;
    int64_t C, F, H, W; /* the full latent */
    int64_t f0, n;      /* this run's frames */
    int64_t Bc, L;      /* CFG batch (1 or 2), text length */
    const float *text;  /* (Bc, L, D) */
    const float *cond;  /* (Bc, Cc, n, H, W) or NULL */
    int64_t Cc;
    const float *fps;   /* (Bc) or NULL */
    const float *aug;   /* (Bc) or NULL */
    /* buffers of the run, from A: */
    float *lat;         /* (1, C, n, H, W): result */
    float *unet_in;     /* (Bc, C, n, H, W) */
    float *eps;         /* (1, C, n, H, W) */
    float *nz;          /* (1, C, n, H, W) step noise */
} stage_run;

static kn_status denoise(const stage_run *r) {
    const kn_stage_params *p = r->p;
    int64_t C = r->C, n = r->n, H = r->H, W = r->W, HW = H * W, m = C * n * HW;
    int64_t D = r->u->cfg.cross_attention_dim;
    uint64_t Nfull = (uint64_t)(C * r->F * HW);
    kn_scheduler s;
    KN_TRY(kn_sched_init(&s, r->sched, p->sched_kind));
    kn_status st = kn_sched_set_timesteps(&s, p->steps);
    if (st != KN_OK) {
        kn_sched_free(&s);
        return st;
    }
    fill_noise(r->lat, C, r->F, r->f0, n, HW, p->seed, 0, p->same_noise);
    for (int64_t j = 0; j < m; j++)
        r->lat[j] *= s.init_noise_sigma;
    int need_nz = sched_needs_noise(&s);
    size_t mark = kn_arena_mark(r->A);
    kn_tensor tin = kn_tensor_view(KN_F32, 5, (int64_t[]){r->Bc, C, n, H, W}, r->unet_in);
    kn_tensor ttext = kn_tensor_view(KN_F32, 3, (int64_t[]){r->Bc, r->L, D}, (void *)r->text);
    kn_tensor tcond = kn_tensor_view(KN_F32, 5, (int64_t[]){r->Bc, r->Cc, n, H, W}, (void *)r->cond);
    for (int i = 0; i < p->steps && st == KN_OK; i++) {
        kn_sched_scale_model_input(&s, i, r->lat, r->unet_in, m);
        if (r->Bc == 2)
            memcpy(r->unet_in + m, r->unet_in, (size_t)m * sizeof(float));
        float ts[2] = {(float)s.timesteps[i], (float)s.timesteps[i]};
        kn_arena_reset(r->A, mark);
        kn_ctx c;
        kn_ctx_init(&c, r->A, NULL);
        kn_unet3d_cond uc = {r->fps, r->aug, r->cond ? kn_var_wrap(&c, &tcond) : NULL, NULL};
        kn_var *y = kn_unet3d_forward_ex(&c, r->u, kn_var_wrap(&c, &tin), ts, kn_var_wrap(&c, &ttext), &uc, NULL,
                                         NULL);
        st = kn_ctx_status(&c);
        if (st != KN_OK)
            break;
        const float *yo = y->v.data;
        if (r->Bc == 2) {
            float g = p->guidance_scale;
            for (int64_t j = 0; j < m; j++)
                r->eps[j] = yo[j] + g * (yo[m + j] - yo[j]);
        } else {
            memcpy(r->eps, yo, (size_t)m * sizeof(float));
        }
        if (need_nz)
            fill_noise(r->nz, C, r->F, r->f0, n, HW, p->seed ^ STEP_SALT, (uint64_t)i * Nfull, p->same_noise);
        st = kn_sched_step(&s, i, r->eps, r->lat, m, need_nz ? r->nz : NULL);
    }
    kn_arena_reset(r->A, mark);
    kn_sched_free(&s);
    return st;
}

/* Checks shared by every stage. */
static kn_status check_common(const char *stage, const kn_unet3d *u, const kn_sched_config *sched, kn_arena *A,
                              const float *pos, const float *neg, int64_t L, const float *lat, int64_t C, int64_t F,
                              int64_t h, int64_t w, const kn_stage_params *p, const float *out) {
    if (!u || !sched || !A || !p)
        return kn_fail(KN_ERR_ARG, "%s: the UNet, scheduler config, arena and params are required", stage);
    if (!pos || !lat || !out)
        return kn_fail(KN_ERR_ARG, "%s: the text embeddings, input latents and output buffer are required", stage);
    if (L < 1)
        return kn_fail(KN_ERR_ARG, "%s: text length must be >= 1, got %lld", stage, (long long)L);
    if (C < 1 || F < 1 || h < 1 || w < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: latents (1, %lld, %lld, %lld, %lld) are empty", stage, (long long)C,
                       (long long)F, (long long)h, (long long)w);
    if (C != u->cfg.in_channels || C != u->cfg.out_channels)
        return kn_fail(KN_ERR_SHAPE, "%s: latents have %lld channels, the UNet takes %d and makes %d", stage,
                       (long long)C, u->cfg.in_channels, u->cfg.out_channels);
    if (p->steps < 1 || p->steps > KN_SCHED_MAX_STEPS)
        return kn_fail(KN_ERR_ARG, "%s: steps must be in [1, %d], got %d", stage, KN_SCHED_MAX_STEPS, p->steps);
    if (!(p->guidance_scale >= 0) || !isfinite(p->guidance_scale))
        return kn_fail(KN_ERR_ARG, "%s: guidance scale must be a finite number >= 0", stage);
    if (p->guidance_scale > 1.0f && !neg)
        return kn_fail(KN_ERR_ARG, "%s: classifier-free guidance needs the negative (or empty) prompt embeddings",
                       stage);
    if ((unsigned)p->sched_kind > (unsigned)KN_SCHED_DPMPP_2M)
        return kn_fail(KN_ERR_ARG, "%s: unknown scheduler kind %d", stage, (int)p->sched_kind);
    if (u->cfg.fps_cond && !(p->fps > 0 && isfinite(p->fps)))
        return kn_fail(KN_ERR_ARG, "%s: the UNet is fps-conditioned: fps must be a positive number, got %g", stage,
                       (double)p->fps);
    if (p->noise_aug < 0 || p->noise_aug >= sched->num_train_timesteps || p->noise_aug > 999)
        return kn_fail(KN_ERR_ARG, "%s: noise_aug must be a level in [0, %d], got %d", stage,
                       KN_MIN(999, sched->num_train_timesteps - 1), p->noise_aug);
    if (p->noise_aug > 0 && !u->cfg.noise_aug_cond)
        return kn_fail(KN_ERR_ARG, "%s: noise_aug %d given but the UNet is not noise-augmentation conditioned "
                       "(noise_aug_cond)", stage, p->noise_aug);
    return KN_OK;
}

/* alphas_cumprod of the augmentation level in the stage's own schedule (1 at level 0: none). */
static kn_status aug_alpha(const kn_sched_config *sched, const kn_stage_params *p, float *ac) {
    *ac = 1.0f;
    if (p->noise_aug > 0) {
        kn_scheduler s;
        KN_TRY(kn_sched_init(&s, sched, p->sched_kind));
        *ac = s.alphas_cumprod[p->noise_aug];
        kn_sched_free(&s);
    }
    return KN_OK;
}

/* Fills the CFG text batch: [neg, pos] or [pos]. */
static void fill_text(float *text, const float *pos, const float *neg, int64_t Bc, int64_t L, int64_t D) {
    if (Bc == 2) {
        memcpy(text, neg, (size_t)(L * D) * sizeof(float));
        memcpy(text + L * D, pos, (size_t)(L * D) * sizeof(float));
    } else {
        memcpy(text, pos, (size_t)(L * D) * sizeof(float));
    }
}

/* Temporal SR: output frame t is input frame src[t] when src[t] >= 0, else generated. */
static kn_status temporal(const char *stage, const kn_unet3d *u, const kn_sched_config *sched, kn_arena *A,
                          const float *pos, const float *neg, int64_t L, const float *lat, int64_t C, int64_t F,
                          int64_t h, int64_t w, int64_t Fo, int factor, const kn_stage_params *p, float *out) {
    KN_TRY(check_common(stage, u, sched, A, pos, neg, L, lat, C, F, h, w, p, out));
    if (u->cfg.spatial_only)
        return kn_fail(KN_ERR_ARG, "%s: the UNet is spatial_only (no temporal layers); temporal SR needs a tsr model",
                       stage);
    if (u->cfg.cond_channels != C + 1)
        return kn_fail(KN_ERR_ARG, "%s: the UNet has cond_channels %d, temporal SR of %lld-channel latents needs %lld",
                       stage, u->cfg.cond_channels, (long long)C, (long long)(C + 1));
    float ac;
    KN_TRY(aug_alpha(sched, p, &ac));
    int64_t HW = h * w, n = C * Fo * HW, Cc = C + 1;
    int64_t Bc = p->guidance_scale > 1.0f ? 2 : 1, D = u->cfg.cross_attention_dim;
    size_t mark0 = kn_arena_mark(A);
    float *text = kn_arena_alloc(A, (size_t)(Bc * L * D) * sizeof(float));
    float *cond = kn_arena_alloc(A, (size_t)(Bc * Cc * Fo * HW) * sizeof(float));
    float *xl = kn_arena_alloc(A, (size_t)n * sizeof(float));
    float *uin = kn_arena_alloc(A, (size_t)(Bc * n) * sizeof(float));
    float *eps = kn_arena_alloc(A, (size_t)n * sizeof(float));
    float *nz = kn_arena_alloc(A, (size_t)n * sizeof(float));
    if (!text || !cond || !xl || !uin || !eps || !nz) {
        kn_arena_reset(A, mark0);
        return KN_ERR_NOMEM;
    }
    fill_text(text, pos, neg, Bc, L, D);
    /* cond[0] (Cc, Fo, HW): channels 0..C-1 = known * mask, channel C = mask */
    for (int64_t t = 0; t < Fo; t++) {
        int64_t s = factor > 0 ? (t % factor == 0 ? t / factor : -1) : (t < F ? t : -1);
        for (int64_t c = 0; c < C; c++) {
            float *d = cond + (c * Fo + t) * HW;
            if (s >= 0)
                memcpy(d, lat + (c * F + s) * HW, (size_t)HW * sizeof(float));
            else
                memset(d, 0, (size_t)HW * sizeof(float));
        }
        float *mk = cond + (C * Fo + t) * HW;
        for (int64_t k = 0; k < HW; k++)
            mk[k] = s >= 0 ? 1.0f : 0.0f;
    }
    if (p->noise_aug > 0) {
        /* augmentation of the known frames as kn_train_sr does it: unknown frames stay 0 */
        float sa = sqrtf(ac), sb = sqrtf(1.0f - ac);
        fill_noise(eps, C, Fo, 0, Fo, HW, p->seed ^ AUG_SALT, 0, 0);
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < Fo * HW; j++) {
                float *v = cond + c * Fo * HW + j;
                *v = (sa * *v + sb * eps[c * Fo * HW + j]) * cond[C * Fo * HW + j];
            }
    }
    if (Bc == 2)
        memcpy(cond + Cc * Fo * HW, cond, (size_t)(Cc * Fo * HW) * sizeof(float));
    float fps[2] = {p->fps, p->fps}, aug[2] = {(float)p->noise_aug, (float)p->noise_aug};
    stage_run r = {u, sched, p, A, C, Fo, h, w, 0, Fo, Bc, L, text, cond, Cc, u->cfg.fps_cond ? fps : NULL,
                   u->cfg.noise_aug_cond ? aug : NULL, xl, uin, eps, nz};
    kn_status st = denoise(&r);
    if (st == KN_OK) {
        memcpy(out, xl, (size_t)n * sizeof(float));
        /* the known frames, unchanged */
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < F; s++) {
                int64_t t = factor > 0 ? s * factor : s;
                memcpy(out + (c * Fo + t) * HW, lat + (c * F + s) * HW, (size_t)HW * sizeof(float));
            }
    }
    kn_arena_reset(A, mark0);
    return st;
}

kn_status kn_cascade_interpolate(const kn_unet3d *tsr, const kn_sched_config *sched, kn_arena *A, const float *pos,
                                 const float *neg, int64_t L, const float *lat, int64_t C, int64_t F, int64_t h,
                                 int64_t w, int factor, const kn_stage_params *p, float *out) {
    if (factor < 2)
        return kn_fail(KN_ERR_ARG, "interpolate: factor must be >= 2, got %d", factor);
    if (F < 1 || F > INT64_MAX / factor)
        return kn_fail(KN_ERR_SHAPE, "interpolate: %lld frames cannot be interpolated by %d", (long long)F, factor);
    return temporal("interpolate", tsr, sched, A, pos, neg, L, lat, C, F, h, w, F * factor, factor, p, out);
}

kn_status kn_cascade_extend(const kn_unet3d *tsr, const kn_sched_config *sched, kn_arena *A, const float *pos,
                            const float *neg, int64_t L, const float *lat, int64_t C, int64_t F, int64_t h, int64_t w,
                            int64_t Fo, const kn_stage_params *p, float *out) {
    if (Fo <= F)
        return kn_fail(KN_ERR_ARG, "extend: the output must have more frames than the input, got %lld -> %lld",
                       (long long)F, (long long)Fo);
    return temporal("extend", tsr, sched, A, pos, neg, L, lat, C, F, h, w, Fo, 0, p, out);
}

kn_status kn_cascade_upscale(const kn_unet3d *ssr, const kn_sched_config *sched, kn_arena *A, const float *pos,
                             const float *neg, int64_t L, const float *lat, int64_t C, int64_t F, int64_t h, int64_t w,
                             int scale, const kn_stage_params *p, float *out) {
    const char *stage = "upscale";
    KN_TRY(check_common(stage, ssr, sched, A, pos, neg, L, lat, C, F, h, w, p, out));
    if (scale < 1)
        return kn_fail(KN_ERR_ARG, "upscale: scale must be >= 1, got %d", scale);
    if (ssr->cfg.cond_channels != C)
        return kn_fail(KN_ERR_ARG, "upscale: the UNet has cond_channels %d, spatial SR of %lld-channel latents needs %lld",
                       ssr->cfg.cond_channels, (long long)C, (long long)C);
    if (p->chunk < 0)
        return kn_fail(KN_ERR_ARG, "upscale: chunk must be >= 0 (0 = all frames), got %d", p->chunk);
    int64_t H = h * scale, W = w * scale, HW = H * W, hw = h * w;
    int64_t chunk = p->chunk == 0 || p->chunk > F ? F : p->chunk;
    int64_t Bc = p->guidance_scale > 1.0f ? 2 : 1, D = ssr->cfg.cross_attention_dim;
    int64_t m = C * chunk * HW;
    float ac;
    KN_TRY(aug_alpha(sched, p, &ac));
    float sa = sqrtf(ac), sb = sqrtf(1.0f - ac);
    size_t mark0 = kn_arena_mark(A);
    float *text = kn_arena_alloc(A, (size_t)(Bc * L * D) * sizeof(float));
    float *cond = kn_arena_alloc(A, (size_t)(Bc * m) * sizeof(float));
    float *anz = kn_arena_alloc(A, (size_t)m * sizeof(float));
    float *xl = kn_arena_alloc(A, (size_t)m * sizeof(float));
    float *uin = kn_arena_alloc(A, (size_t)(Bc * m) * sizeof(float));
    float *eps = kn_arena_alloc(A, (size_t)m * sizeof(float));
    float *nz = kn_arena_alloc(A, (size_t)m * sizeof(float));
    if (!text || !cond || !anz || !xl || !uin || !eps || !nz) {
        kn_arena_reset(A, mark0);
        return KN_ERR_NOMEM;
    }
    fill_text(text, pos, neg, Bc, L, D);
    float fps[2] = {p->fps, p->fps}, aug[2] = {(float)p->noise_aug, (float)p->noise_aug};
    size_t mark1 = kn_arena_mark(A);
    kn_status st = KN_OK;
    for (int64_t f0 = 0; f0 < F && st == KN_OK; f0 += chunk) {
        int64_t n = KN_MIN(chunk, F - f0), mc = C * n * HW;
        /* cond = bilinear upsampling of frames f0..f0+n, folded (n, C, h, w) -> (n, C, H, W) */
        kn_arena_reset(A, mark1);
        kn_tensor lo, hi;
        st = kn_tensor_alloc(A, &lo, KN_F32, 4, (int64_t[]){n, C, h, w});
        if (st != KN_OK)
            break;
        float *lod = lo.data;
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < C; c++)
                memcpy(lod + (i * C + c) * hw, lat + (c * F + f0 + i) * hw, (size_t)hw * sizeof(float));
        memset(&hi, 0, sizeof hi);
        st = kn_resize_bilinear(A, &lo, H, W, &hi);
        if (st != KN_OK)
            break;
        const float *hid = hi.data;
        for (int64_t i = 0; i < n; i++) /* back to (1, C, n, H, W) */
            for (int64_t c = 0; c < C; c++)
                memcpy(cond + (c * n + i) * HW, hid + (i * C + c) * HW, (size_t)HW * sizeof(float));
        kn_arena_reset(A, mark1);
        if (p->noise_aug > 0) {
            fill_noise(anz, C, F, f0, n, HW, p->seed ^ AUG_SALT, 0, p->same_noise);
            for (int64_t j = 0; j < mc; j++)
                cond[j] = sa * cond[j] + sb * anz[j];
        }
        if (Bc == 2)
            memcpy(cond + mc, cond, (size_t)mc * sizeof(float));
        stage_run r = {ssr, sched, p, A, C, F, H, W, f0, n, Bc, L, text, cond, C,
                       ssr->cfg.fps_cond ? fps : NULL, ssr->cfg.noise_aug_cond ? aug : NULL, xl, uin, eps, nz};
        st = denoise(&r);
        if (st != KN_OK)
            break;
        for (int64_t c = 0; c < C; c++)
            memcpy(out + (c * F + f0) * HW, xl + c * n * HW, (size_t)(n * HW) * sizeof(float));
    }
    kn_arena_reset(A, mark0);
    return st;
}

/* ------------------------------------------------------------------ the chain */

void kn_cascade_final_size(const kn_unet3d *tsr, const kn_unet3d *ssr, const kn_cascade_info *ci, int64_t F, int64_t h,
                           int64_t w, int64_t *Ff, int64_t *hf, int64_t *wf) {
    for (int i = 0; tsr && i < ci->tsr_times; i++)
        F *= ci->tsr_factor;
    if (ssr)
        h *= ci->ssr_scale, w *= ci->ssr_scale;
    *Ff = F, *hf = h, *wf = w;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

kn_sched_config kn_cascade_stage_sched(const kn_cascade_info *ci, const kn_sched_config *base, int temporal) {
    kn_sched_config c = *base;
    int p = ci ? (temporal ? ci->tsr_pred : ci->ssr_pred) : 0;
    if (p >= 1 && p <= 3)
        c.prediction_type = (kn_pred_type)(p - 1);
    return c;
}

kn_status kn_cascade_run(const kn_unet3d *tsr, const kn_unet3d *ssr, const kn_cascade_info *ci,
                         const kn_sched_config *sched, kn_sched_kind kind, kn_arena *A, const float *pos,
                         const float *neg, int64_t L, uint64_t seed, float *lat, int64_t C, int64_t *F, int64_t *h,
                         int64_t *w, double *fps, kn_cascade_stage_fn on_stage, void *user) {
    if (!ci || !A || !lat || !F || !h || !w || !fps)
        return kn_fail(KN_ERR_ARG, "cascade: missing argument");
    int64_t Ff, hf, wf;
    kn_cascade_final_size(tsr, ssr, ci, *F, *h, *w, &Ff, &hf, &wf);
    size_t mark = kn_arena_mark(A);
    float *next = kn_arena_alloc(A, (size_t)(C * Ff * hf * wf) * sizeof(float));
    if (!next)
        return kn_fail(KN_ERR_NOMEM, "cascade: out of memory for the %lld-frame latents", (long long)Ff);
    int nst = (tsr ? ci->tsr_times : 0) + (ssr ? 1 : 0);
    kn_sched_config tsched = kn_cascade_stage_sched(ci, sched, 1), ssched = kn_cascade_stage_sched(ci, sched, 0);
    kn_status st = KN_OK;
    for (int s = 0; s < nst && st == KN_OK; s++) {
        int temporal = tsr && s < ci->tsr_times;
        double t0 = now_s();
        kn_stage_params p = kn_stage_params_default();
        p.seed = seed + 1 + (uint64_t)s; /* each stage its own noise */
        p.sched_kind = kind;
        if (temporal) {
            p.steps = ci->tsr_steps;
            p.guidance_scale = ci->tsr_guidance;
            p.fps = (float)(*fps * ci->tsr_factor);
            st = kn_cascade_interpolate(tsr, &tsched, A, pos, neg, L, lat, C, *F, *h, *w, ci->tsr_factor, &p, next);
            if (st == KN_OK) {
                *F *= ci->tsr_factor;
                *fps *= ci->tsr_factor;
            }
        } else {
            p.steps = ci->ssr_steps;
            p.guidance_scale = ci->ssr_guidance;
            p.noise_aug = ssr->cfg.noise_aug_cond ? ci->ssr_noise_aug : 0;
            p.same_noise = ci->ssr_same_noise;
            p.chunk = ci->ssr_chunk;
            p.fps = (float)*fps; /* for an fps-conditioned ssr: the clip's rate */
            st = kn_cascade_upscale(ssr, &ssched, A, pos, neg, L, lat, C, *F, *h, *w, ci->ssr_scale, &p, next);
            if (st == KN_OK) {
                *h *= ci->ssr_scale;
                *w *= ci->ssr_scale;
            }
        }
        if (st != KN_OK)
            break;
        memcpy(lat, next, (size_t)(C * *F * *h * *w) * sizeof(float));
        if (on_stage)
            on_stage(s + 1, temporal ? "tsr" : "ssr", lat, *F, *h, *w, *fps, now_s() - t0, user);
    }
    kn_arena_reset(A, mark);
    return st;
}
