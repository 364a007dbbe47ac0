/* Tests of the cascade's stage samplers (src/diffusion/cascade.c) on tiny random UNets:
 * shapes, known frames, determinism over threads and calls, same-noise and chunk equivalence,
 * noise augmentation, argument errors, arena reuse, and two closed-form checks of the loop
 * (a zero-output UNet under DDIM, and one DDIM step computed by hand). */
#include "diffusion/cascade.h"
#include "kt.h"

#include <stdlib.h>
#include <string.h>

#define TC 4  /* latent channels */
#define TD 8  /* cross-attention dim */
#define TL 3  /* text length */

typedef enum { NET_TSR, NET_SSR_MAV, NET_SSR_IMAGEN, NET_TSR_AUG } net_kind;

static kn_unet3d *tiny_net(net_kind k, uint64_t seed) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 4, 4, TD);
    c.in_channels = c.out_channels = TC;
    if (k == NET_TSR || k == NET_TSR_AUG) {
        c.cond_channels = TC + 1;
        c.fps_cond = 1;
        c.noise_aug_cond = k == NET_TSR_AUG;
    } else if (k == NET_SSR_MAV) {
        c.cond_channels = TC;
        c.spatial_only = 1;
    } else {
        c.cond_channels = TC;
        c.noise_aug_cond = 1;
        c.temporal_attention = 0;
    }
    kn_unet3d *u = kn_unet3d_new(&c);
    if (u)
        kn_params_init_default(&u->P, seed);
    return u;
}

static float *randn(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof(float));
    kn_randn_fill(x, n, seed, 0);
    return x;
}

/* One fixture: text embeddings, a low-resolution clip, an arena. */
typedef struct fx {
    float *pos, *neg, *lat;
    kn_sched_config sched;
    kn_arena *A;
} fx;

static fx fx_new(int64_t F, int64_t h, int64_t w) {
    fx f;
    f.pos = randn(TL * TD, 1);
    f.neg = randn(TL * TD, 2);
    f.lat = randn(TC * F * h * w, 3);
    f.sched = kn_sched_config_modelscope();
    f.A = kn_arena_new((size_t)64 << 20);
    return f;
}

static void fx_free(fx *f) {
    free(f->pos);
    free(f->neg);
    free(f->lat);
    kn_arena_free(f->A);
}

static kn_stage_params params(int steps, float g, float fps) {
    kn_stage_params p = kn_stage_params_default();
    p.steps = steps;
    p.guidance_scale = g;
    p.seed = 1234;
    p.fps = fps;
    return p;
}

static int all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

KT_TEST(cascade_defaults) {
    kn_stage_params p = kn_stage_params_default();
    KT_CHECK(p.steps == 20);
    KT_CHECK(p.guidance_scale == 1.0f);
    KT_CHECK(p.sched_kind == KN_SCHED_DDIM);
    KT_CHECK(p.noise_aug == 0 && p.same_noise == 0 && p.chunk == 0);
}

KT_TEST(cascade_interpolate_extend_shapes_known_frames) {
    const int64_t F = 3, h = 4, w = 4, HW = h * w;
    kn_unet3d *u = tiny_net(NET_TSR, 11);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (!u)
        return;
    fx f = fx_new(F, h, w);
    kn_stage_params p = params(3, 3.0f, 8.0f); /* with CFG */
    /* interpolate by 2 and by 3: out (1, C, factor F, h, w), guard cells after it untouched */
    for (int factor = 2; factor <= 3; factor++) {
        int64_t Fo = factor * F, n = TC * Fo * HW;
        float *out = malloc((size_t)(n + 16) * sizeof(float));
        for (int i = 0; i < 16; i++)
            out[n + i] = 777.0f;
        KT_OK(kn_cascade_interpolate(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, factor, &p, out));
        for (int i = 0; i < 16; i++)
            KT_CHECK(out[n + i] == 777.0f);
        KT_CHECK(all_finite(out, n));
        for (int64_t c = 0; c < TC; c++)
            for (int64_t t = 0; t < Fo; t++) {
                const float *o = out + (c * Fo + t) * HW;
                if (t % factor == 0)
                    KT_CHECKF(!memcmp(o, f.lat + (c * F + t / factor) * HW, (size_t)HW * sizeof(float)),
                              "factor %d: known frame %lld channel %lld changed", factor, (long long)t, (long long)c);
                else
                    KT_CHECKF(kt_max_abs(o, HW) > 0.05, "factor %d: generated frame %lld is empty", factor,
                              (long long)t);
            }
        free(out);
    }
    /* extend 3 -> 5: the first 3 frames known */
    {
        int64_t Fo = 5, n = TC * Fo * HW;
        float *out = calloc((size_t)n, sizeof(float));
        KT_OK(kn_cascade_extend(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, Fo, &p, out));
        KT_CHECK(all_finite(out, n));
        for (int64_t c = 0; c < TC; c++) {
            KT_CHECK(!memcmp(out + c * Fo * HW, f.lat + c * F * HW, (size_t)(F * HW) * sizeof(float)));
            KT_CHECK(kt_max_abs(out + (c * Fo + F) * HW, (Fo - F) * HW) > 0.05);
        }
        free(out);
    }
    fx_free(&f);
    kn_unet3d_free(u);
}

KT_TEST(cascade_upscale_shape) {
    const int64_t F = 3, h = 3, w = 5;
    kn_unet3d *u = tiny_net(NET_SSR_IMAGEN, 12);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (!u)
        return;
    fx f = fx_new(F, h, w);
    kn_stage_params p = params(2, 2.0f, 0);
    p.noise_aug = 100;
    for (int scale = 1; scale <= 3; scale += 2) {
        int64_t n = TC * F * h * w * scale * scale;
        float *out = malloc((size_t)(n + 8) * sizeof(float));
        for (int i = 0; i < 8; i++)
            out[n + i] = -5.0f;
        KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, scale, &p, out));
        KT_CHECK(all_finite(out, n));
        KT_CHECK(kt_max_abs(out, n) > 0.05);
        for (int i = 0; i < 8; i++)
            KT_CHECK(out[n + i] == -5.0f);
        free(out);
    }
    fx_free(&f);
    kn_unet3d_free(u);
}

/* Bitwise equality over 1/2/3 threads and over repeated calls, for every stage. */
KT_TEST(cascade_bitwise_across_threads_and_calls) {
    const int64_t F = 3, h = 4, w = 4;
    kn_unet3d *tsr = tiny_net(NET_TSR, 13), *ssr = tiny_net(NET_SSR_IMAGEN, 14);
    KT_CHECK(tsr && ssr);
    if (!tsr || !ssr)
        return;
    fx f = fx_new(F, h, w);
    int64_t ni = TC * 2 * F * h * w, nu = TC * F * 4 * h * w;
    float *ri = malloc((size_t)ni * sizeof(float)), *ru = malloc((size_t)nu * sizeof(float));
    float *oi = malloc((size_t)ni * sizeof(float)), *ou = malloc((size_t)nu * sizeof(float));
    kn_stage_params pi = params(3, 2.5f, 8.0f), pu = params(3, 2.5f, 0);
    pi.sched_kind = KN_SCHED_EULER_A; /* stochastic steps: the step noise must be deterministic too */
    pu.noise_aug = 250;
    pu.chunk = 2;
    int prev = kn_get_threads();
    for (int th = 1; th <= 3; th++) {
        kn_set_threads(th);
        for (int rep = 0; rep < (th == 1 ? 2 : 1); rep++) {
            float *di = (th == 1 && rep == 0) ? ri : oi, *du = (th == 1 && rep == 0) ? ru : ou;
            KT_OK(kn_cascade_interpolate(tsr, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &pi, di));
            KT_OK(kn_cascade_upscale(ssr, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &pu, du));
            if (di != ri) {
                KT_CHECKF(!memcmp(ri, oi, (size_t)ni * sizeof(float)),
                          "interpolate: threads %d rep %d differs (max %.3g)", th, rep, kt_max_abs_diff(ri, oi, ni));
                KT_CHECKF(!memcmp(ru, ou, (size_t)nu * sizeof(float)),
                          "upscale: threads %d rep %d differs (max %.3g)", th, rep, kt_max_abs_diff(ru, ou, nu));
            }
        }
    }
    kn_set_threads(prev);
    /* and the seed matters */
    pu.seed++;
    KT_OK(kn_cascade_upscale(ssr, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &pu, ou));
    KT_CHECK(kt_max_abs_diff(ru, ou, nu) > 1e-3);
    free(ri);
    free(ru);
    free(oi);
    free(ou);
    fx_free(&f);
    kn_unet3d_free(tsr);
    kn_unet3d_free(ssr);
}

static int frames_identical(const float *x, int64_t C, int64_t F, int64_t HW) {
    for (int64_t c = 0; c < C; c++)
        for (int64_t t = 1; t < F; t++)
            if (memcmp(x + (c * F + t) * HW, x + c * F * HW, (size_t)HW * sizeof(float)))
                return 0;
    return 1;
}

/* Make-A-Video's spatial SR: with one noise frame for all frames, a spatial-only UNet and
 * identical input frames, every output frame is the same; with per-frame noise they are not. */
KT_TEST(cascade_same_noise_identical_frames) {
    const int64_t F = 4, h = 4, w = 4, hw = h * w, HW = 4 * hw;
    kn_unet3d *u = tiny_net(NET_SSR_MAV, 15);
    KT_CHECK(u != NULL);
    if (!u)
        return;
    fx f = fx_new(F, h, w);
    for (int64_t c = 0; c < TC; c++) /* every frame = frame 0 */
        for (int64_t t = 1; t < F; t++)
            memcpy(f.lat + (c * F + t) * hw, f.lat + c * F * hw, (size_t)hw * sizeof(float));
    int64_t n = TC * F * HW;
    float *out = malloc((size_t)n * sizeof(float));
    kn_stage_params p = params(3, 2.0f, 0);
    p.same_noise = 1;
    for (int k = 0; k < 2; k++) {
        p.sched_kind = k ? KN_SCHED_DDPM : KN_SCHED_DDIM; /* DDPM: the step noise is shared too */
        KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
        KT_CHECKF(frames_identical(out, TC, F, HW), "same_noise=1 (%s): frames differ",
                  kn_sched_kind_name(p.sched_kind));
        KT_CHECK(kt_max_abs(out, n) > 0.05);
    }
    p.same_noise = 0;
    p.sched_kind = KN_SCHED_DDIM;
    KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
    KT_CHECK(!frames_identical(out, TC, F, HW));
    KT_CHECK(kt_max_abs_diff(out, out + HW, HW) > 1e-2); /* frames 0 and 1 of channel 0 */
    free(out);
    fx_free(&f);
    kn_unet3d_free(u);
}

/* Chunked spatial SR: chunk = F is chunk = 0; for a spatial-only UNet any chunk (1, or a ragged
 * 2 of 3) gives bitwise the full result, also with stochastic steps and noise augmentation.
 * A UNet with temporal convolutions sees only its chunk, so there chunk = 1 must differ. */
KT_TEST(cascade_chunk_equivalence) {
    const int64_t F = 3, h = 4, w = 4;
    kn_unet3d *mav = tiny_net(NET_SSR_MAV, 16), *img = tiny_net(NET_SSR_IMAGEN, 17);
    KT_CHECK(mav && img);
    if (!mav || !img)
        return;
    fx f = fx_new(F, h, w);
    int64_t n = TC * F * 4 * h * w;
    float *ref = malloc((size_t)n * sizeof(float)), *out = malloc((size_t)n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        kn_unet3d *u = k ? img : mav;
        kn_stage_params p = params(3, 2.0f, 0);
        p.sched_kind = KN_SCHED_DDPM;
        p.noise_aug = k ? 300 : 0;
        p.chunk = 0;
        KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, ref));
        p.chunk = (int)F;
        KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
        KT_CHECKF(!memcmp(ref, out, (size_t)n * sizeof(float)), "net %d: chunk=F differs from chunk=0", k);
        for (int ch = 1; ch <= 2; ch++) {
            p.chunk = ch;
            KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
            if (k == 0)
                KT_CHECKF(!memcmp(ref, out, (size_t)n * sizeof(float)),
                          "spatial-only: chunk=%d differs from chunk=0 (max %.3g)", ch, kt_max_abs_diff(ref, out, n));
            else if (ch == 1)
                KT_CHECKF(kt_max_abs_diff(ref, out, n) > 1e-4, "temporal convs: chunk=1 equals the full run");
        }
    }
    free(ref);
    free(out);
    fx_free(&f);
    kn_unet3d_free(mav);
    kn_unet3d_free(img);
}

/* PyTorch F.interpolate(bilinear, align_corners=False) on one plane, written out naively. */
static void naive_bilinear(const float *x, int64_t h, int64_t w, int64_t H, int64_t W, float *y) {
    for (int64_t i = 0; i < H; i++) {
        double sy = ((double)i + 0.5) * h / H - 0.5;
        if (sy < 0)
            sy = 0;
        int64_t y0 = (int64_t)sy, y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        double ly = sy - y0;
        for (int64_t j = 0; j < W; j++) {
            double sx = ((double)j + 0.5) * w / W - 0.5;
            if (sx < 0)
                sx = 0;
            int64_t x0 = (int64_t)sx, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
            double lx = sx - x0;
            y[i * W + j] = (float)((1 - ly) * ((1 - lx) * x[y0 * w + x0] + lx * x[y0 * w + x1]) +
                                   ly * ((1 - lx) * x[y1 * w + x0] + lx * x[y1 * w + x1]));
        }
    }
}

/* One DDIM step (trailing spacing: t = 999 -> final alpha) computed by hand around a direct
 * kn_unet3d_forward_ex call: x_T = Philox(seed) noise, cond = bilinear(lat) (level 0: no
 * augmentation noise), x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t), x = sqrt(a_p) x0 +
 * sqrt(1 - a_p) eps. Also: any level > 0 changes the result. */
KT_TEST(cascade_upscale_one_step_by_hand_and_noise_aug) {
    const int64_t F = 2, h = 3, w = 4, hw = h * w, H = 6, W = 8, HW = H * W, n = TC * F * HW;
    kn_unet3d *u = tiny_net(NET_SSR_IMAGEN, 18);
    KT_CHECK(u != NULL);
    if (!u)
        return;
    fx f = fx_new(F, h, w);
    f.sched.timestep_spacing = KN_SPACING_TRAILING;
    f.sched.steps_offset = 0;
    kn_stage_params p = params(1, 1.0f, 0);
    float *out = malloc((size_t)n * sizeof(float));
    KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &p, out));
    /* by hand */
    float *x = malloc((size_t)n * sizeof(float)), *cond = malloc((size_t)n * sizeof(float));
    kn_randn_fill(x, n, p.seed, 0);
    for (int64_t c = 0; c < TC; c++)
        for (int64_t t = 0; t < F; t++)
            naive_bilinear(f.lat + (c * F + t) * hw, h, w, H, W, cond + (c * F + t) * HW);
    kn_scheduler s;
    KT_OK(kn_sched_init(&s, &f.sched, KN_SCHED_DDIM));
    KT_OK(kn_sched_set_timesteps(&s, 1));
    KT_CHECK(s.timesteps[0] == 999);
    float a_t = s.alphas_cumprod[999], a_p = s.alphas_cumprod[0]; /* set_alpha_to_one = 0 */
    kn_sched_free(&s);
    kn_ctx c;
    kn_ctx_init(&c, f.A, NULL);
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){1, TC, F, H, W}, x);
    kn_tensor tc = kn_tensor_view(KN_F32, 5, (int64_t[]){1, TC, F, H, W}, cond);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){1, TL, TD}, f.pos);
    float ts = 999.0f, lvl = 0.0f;
    kn_unet3d_cond uc = {NULL, &lvl, kn_var_wrap(&c, &tc), NULL};
    kn_var *y = kn_unet3d_forward_ex(&c, u, kn_var_wrap(&c, &tx), &ts, kn_var_wrap(&c, &tt), &uc, NULL, NULL);
    KT_OK(kn_ctx_status(&c));
    if (y) {
        const float *e = y->v.data;
        double md = 0;
        for (int64_t j = 0; j < n; j++) {
            float x0 = (x[j] - sqrtf(1 - a_t) * e[j]) / sqrtf(a_t);
            float ref = sqrtf(a_p) * x0 + sqrtf(1 - a_p) * e[j];
            double d = fabs(ref - out[j]) / (1 + fabs(ref));
            md = d > md ? d : md;
        }
        KT_CHECKF(md < 1e-4, "one DDIM step differs from the hand computation: max rel diff %.3g", md);
    }
    kn_arena_reset(f.A, 0);
    /* augmentation changes the result */
    float *o2 = malloc((size_t)n * sizeof(float));
    p.noise_aug = 500;
    KT_OK(kn_cascade_upscale(u, &f.sched, f.A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &p, o2));
    KT_CHECK(kt_max_abs_diff(out, o2, n) > 1e-3);
    free(o2);
    free(x);
    free(cond);
    free(out);
    fx_free(&f);
    kn_unet3d_free(u);
}

static void zero_param(kn_unet3d *u, const char *name) {
    kn_param *q = kn_params_find(&u->P, name);
    KT_CHECKF(q != NULL, "no parameter %s", name);
    if (q)
        memset(q->var.v.data, 0, kn_tensor_nbytes(&q->var.v));
}

/* A UNet whose conv_out is zero predicts eps = 0 everywhere; DDIM then only rescales:
 * x <- sqrt(a_prev / a_t) x per step, so after every step x = x_T sqrt(a_final / a_{t_0})
 * (telescoping). For interpolate, the generated frames equal that; v-prediction at one step:
 * x = (sqrt(a_p) sqrt(a_t) + sqrt(1 - a_p) sqrt(1 - a_t)) x_T. */
KT_TEST(cascade_zero_unet_closed_form) {
    const int64_t F = 2, h = 4, w = 4, HW = h * w, Fo = 4, n = TC * Fo * HW;
    kn_unet3d *u = tiny_net(NET_TSR, 19);
    KT_CHECK(u != NULL);
    if (!u)
        return;
    zero_param(u, "conv_out.weight");
    zero_param(u, "conv_out.bias");
    fx f = fx_new(F, h, w);
    kn_stage_params p = params(5, 4.0f, 16.0f); /* CFG of zeros is zero */
    float *out = malloc((size_t)n * sizeof(float)), *xT = malloc((size_t)n * sizeof(float));
    kn_randn_fill(xT, n, p.seed, 0);
    KT_OK(kn_cascade_interpolate(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
    kn_scheduler s;
    KT_OK(kn_sched_init(&s, &f.sched, KN_SCHED_DDIM));
    KT_OK(kn_sched_set_timesteps(&s, p.steps));
    int t0 = (int)s.timesteps[0];
    float a0 = s.alphas_cumprod[t0], af = s.alphas_cumprod[0];
    double ratio = sqrt((double)af / a0);
    double md = 0;
    for (int64_t c = 0; c < TC; c++)
        for (int64_t t = 1; t < Fo; t += 2)
            for (int64_t k = 0; k < HW; k++) {
                int64_t j = (c * Fo + t) * HW + k;
                double d = fabs(out[j] - xT[j] * ratio);
                md = d > md ? d : md;
            }
    KT_CHECKF(md < 1e-4, "zero UNet, DDIM eps: generated frames differ from x_T sqrt(a_final/a_t0) by %.3g", md);
    kn_sched_free(&s);
    /* v-prediction, one step, trailing spacing: t = 999, prev < 0 -> final alpha a_0 */
    f.sched.prediction_type = KN_PRED_V;
    f.sched.timestep_spacing = KN_SPACING_TRAILING;
    f.sched.steps_offset = 0;
    p.steps = 1;
    KT_OK(kn_cascade_interpolate(u, &f.sched, f.A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
    KT_OK(kn_sched_init(&s, &f.sched, KN_SCHED_DDIM));
    KT_OK(kn_sched_set_timesteps(&s, 1));
    KT_CHECK(s.timesteps[0] == 999);
    float at = s.alphas_cumprod[(int)s.timesteps[0]], ap = s.alphas_cumprod[0];
    double k1 = sqrt(ap) * sqrt(at) + sqrt(1 - ap) * sqrt(1 - at);
    md = 0;
    for (int64_t c = 0; c < TC; c++)
        for (int64_t t = 1; t < Fo; t += 2)
            for (int64_t k = 0; k < HW; k++) {
                int64_t j = (c * Fo + t) * HW + k;
                double d = fabs(out[j] - xT[j] * k1);
                md = d > md ? d : md;
            }
    KT_CHECKF(md < 1e-5, "zero UNet, DDIM v: generated frames differ from the closed form by %.3g", md);
    kn_sched_free(&s);
    free(out);
    free(xT);
    fx_free(&f);
    kn_unet3d_free(u);
}

/* The arena ends where it started, and a second identical call needs no more than the first. */
KT_TEST(cascade_arena_reuse) {
    const int64_t F = 4, h = 4, w = 4;
    kn_unet3d *tsr = tiny_net(NET_TSR, 20), *ssr = tiny_net(NET_SSR_MAV, 21);
    KT_CHECK(tsr && ssr);
    if (!tsr || !ssr)
        return;
    fx f = fx_new(F, h, w);
    float *out = malloc((size_t)(TC * 2 * F * 4 * h * w) * sizeof(float));
    kn_stage_params pi = params(3, 2.0f, 8.0f), pu = params(3, 2.0f, 0);
    pu.chunk = 1;
    size_t peaks[2][2];
    for (int stage = 0; stage < 2; stage++) {
        kn_arena *A = kn_arena_new((size_t)64 << 20);
        void *pre = kn_arena_alloc(A, 1000); /* start from a non-zero mark */
        KT_CHECK(pre != NULL);
        size_t m0 = kn_arena_mark(A);
        for (int rep = 0; rep < 2; rep++) {
            if (stage == 0)
                KT_OK(kn_cascade_interpolate(tsr, &f.sched, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &pi, out));
            else
                KT_OK(kn_cascade_upscale(ssr, &f.sched, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &pu, out));
            KT_CHECK(kn_arena_mark(A) == m0);
            peaks[stage][rep] = kn_arena_peak(A);
        }
        KT_CHECKF(peaks[stage][1] == peaks[stage][0], "stage %d: peak grew %zu -> %zu", stage, peaks[stage][0],
                  peaks[stage][1]);
        KT_CHECK(peaks[stage][0] > m0);
        /* chunking bounds the memory: chunk=1 peaks lower than all frames at once */
        if (stage == 1) {
            kn_arena *B = kn_arena_new((size_t)64 << 20);
            pu.chunk = 0;
            KT_OK(kn_cascade_upscale(ssr, &f.sched, B, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &pu, out));
            KT_CHECKF(kn_arena_peak(B) > peaks[1][0] - m0, "chunk=0 peak %zu not above chunk=1 peak %zu",
                      kn_arena_peak(B), peaks[1][0] - m0);
            kn_arena_free(B);
        }
        kn_arena_free(A);
    }
    free(out);
    fx_free(&f);
    kn_unet3d_free(tsr);
    kn_unet3d_free(ssr);
}

static void expect_fail(kn_status st, const char *what, const char *needle) {
    const char *e = kn_last_error();
    KT_CHECKF(st != KN_OK, "%s: accepted", what);
    KT_CHECKF(e[0] && !strchr(e, '\n'), "%s: message not one line: '%s'", what, e);
    KT_CHECKF(strstr(e, needle) != NULL, "%s: message '%s' lacks '%s'", what, e, needle);
}

KT_TEST(cascade_argument_errors) {
    const int64_t F = 2, h = 4, w = 4;
    kn_unet3d *tsr = tiny_net(NET_TSR, 22), *mav = tiny_net(NET_SSR_MAV, 23), *img = tiny_net(NET_SSR_IMAGEN, 24);
    KT_CHECK(tsr && mav && img);
    if (!tsr || !mav || !img)
        return;
    fx f = fx_new(F, h, w);
    float *out = malloc((size_t)(TC * 8 * F * 9 * h * w) * sizeof(float));
    kn_sched_config *sc = &f.sched;
    kn_arena *A = f.A;
    kn_stage_params p = params(2, 1.0f, 8.0f), q;
#define TI(u, pp, factor) kn_cascade_interpolate(u, sc, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, factor, pp, out)
#define TU(u, pp, scale) kn_cascade_upscale(u, sc, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, scale, pp, out)
    expect_fail(TI(tsr, &p, 1), "factor 1", "factor");
    expect_fail(TI(tsr, &p, 0), "factor 0", "factor");
    expect_fail(kn_cascade_extend(tsr, sc, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, F, &p, out), "extend Fo = F",
                "more frames");
    q = p;
    q.fps = 0;
    expect_fail(TI(tsr, &q, 2), "no fps", "fps");
    q.fps = NAN;
    expect_fail(TI(tsr, &q, 2), "NaN fps", "fps");
    expect_fail(TI(mav, &p, 2), "spatial-only tsr", "spatial_only");
    expect_fail(TI(img, &p, 2), "tsr cond_channels", "cond_channels");
    expect_fail(TU(tsr, &p, 2), "ssr cond_channels", "cond_channels");
    expect_fail(TU(mav, &p, 0), "scale 0", "scale");
    q = p;
    q.noise_aug = 100;
    expect_fail(TU(mav, &q, 2), "noise_aug without noise_aug_cond", "noise_aug");
    q.noise_aug = 1000;
    expect_fail(TU(img, &q, 2), "noise_aug 1000", "noise_aug");
    q.noise_aug = -1;
    expect_fail(TU(img, &q, 2), "noise_aug -1", "noise_aug");
    q = p;
    q.chunk = -1;
    expect_fail(TU(mav, &q, 2), "chunk -1", "chunk");
    q = p;
    q.steps = 0;
    expect_fail(TU(mav, &q, 2), "steps 0", "steps");
    q = p;
    q.guidance_scale = 3;
    expect_fail(kn_cascade_upscale(mav, sc, A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &q, out), "CFG without neg",
                "negative");
    q.guidance_scale = INFINITY;
    expect_fail(TU(mav, &q, 2), "infinite guidance", "guidance");
    q = p;
    q.sched_kind = (kn_sched_kind)17;
    expect_fail(TU(mav, &q, 2), "scheduler kind", "scheduler");
    expect_fail(kn_cascade_upscale(mav, sc, A, f.pos, NULL, TL, f.lat, 3, F, h, w, 2, &p, out), "3 channels",
                "channels");
    expect_fail(kn_cascade_upscale(mav, sc, A, NULL, NULL, TL, f.lat, TC, F, h, w, 2, &p, out), "NULL text",
                "required");
    expect_fail(kn_cascade_upscale(mav, sc, A, f.pos, NULL, 0, f.lat, TC, F, h, w, 2, &p, out), "L = 0", "text");
    expect_fail(kn_cascade_upscale(mav, sc, A, f.pos, NULL, TL, f.lat, TC, 0, h, w, 2, &p, out), "F = 0", "empty");
    expect_fail(kn_cascade_upscale(NULL, sc, A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &p, out), "NULL UNet",
                "required");
    /* a failed call leaves the arena as it was */
    KT_CHECK(kn_arena_used(A) == 0);
#undef TI
#undef TU
    free(out);
    fx_free(&f);
    kn_unet3d_free(tsr);
    kn_unet3d_free(mav);
    kn_unet3d_free(img);
}

/* A noise-augmentation conditioned temporal SR model (kn_train_sr trains those too): the level
 * changes the generated frames, the known frames stay exact, level 0 is deterministic. */
KT_TEST(cascade_interpolate_noise_aug) {
    const int64_t F = 2, h = 4, w = 4, HW = h * w, Fo = 4, n = TC * Fo * HW;
    kn_unet3d *u = tiny_net(NET_TSR_AUG, 25);
    KT_CHECK(u != NULL);
    if (!u)
        return;
    fx f = fx_new(F, h, w);
    kn_stage_params p = params(2, 1.0f, 4.0f);
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    KT_OK(kn_cascade_interpolate(u, &f.sched, f.A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &p, a));
    KT_OK(kn_cascade_interpolate(u, &f.sched, f.A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &p, b));
    KT_CHECK(!memcmp(a, b, (size_t)n * sizeof(float)));
    p.noise_aug = 400;
    KT_OK(kn_cascade_interpolate(u, &f.sched, f.A, f.pos, NULL, TL, f.lat, TC, F, h, w, 2, &p, b));
    KT_CHECK(kt_max_abs_diff(a, b, n) > 1e-3);
    for (int64_t c = 0; c < TC; c++)
        for (int64_t t = 0; t < Fo; t += 2)
            KT_CHECK(!memcmp(b + (c * Fo + t) * HW, f.lat + (c * F + t / 2) * HW, (size_t)HW * sizeof(float)));
    free(a);
    free(b);
    fx_free(&f);
    kn_unet3d_free(u);
}

/* The denoising loop reuses its memory: 1 step and 4 steps reach the same arena peak. */
KT_TEST(cascade_steps_allocate_nothing_new) {
    const int64_t F = 2, h = 4, w = 4;
    kn_unet3d *tsr = tiny_net(NET_TSR, 26), *ssr = tiny_net(NET_SSR_IMAGEN, 27);
    KT_CHECK(tsr && ssr);
    if (!tsr || !ssr)
        return;
    fx f = fx_new(F, h, w);
    float *out = malloc((size_t)(TC * 4 * F * h * w) * sizeof(float));
    for (int stage = 0; stage < 2; stage++) {
        size_t peak[2];
        for (int k = 0; k < 2; k++) {
            kn_arena *A = kn_arena_new((size_t)64 << 20);
            kn_stage_params p = params(k ? 4 : 1, 2.0f, 8.0f);
            p.sched_kind = KN_SCHED_DPMPP_2M; /* multistep: history lives in the scheduler, not the arena */
            if (stage == 0)
                KT_OK(kn_cascade_interpolate(tsr, &f.sched, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
            else
                KT_OK(kn_cascade_upscale(ssr, &f.sched, A, f.pos, f.neg, TL, f.lat, TC, F, h, w, 2, &p, out));
            peak[k] = kn_arena_peak(A);
            KT_CHECK(kn_arena_used(A) == 0);
            kn_arena_free(A);
        }
        KT_CHECKF(peak[0] == peak[1] && peak[0] > 0, "stage %d: arena peak 1 step %zu, 4 steps %zu", stage, peak[0],
                  peak[1]);
    }
    free(out);
    fx_free(&f);
    kn_unet3d_free(tsr);
    kn_unet3d_free(ssr);
}
