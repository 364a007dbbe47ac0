/* test_stage_eval.c — the SR-stage baselines and measures (train/stage_eval.h): frame blending
 * against hand-computed bytes, bilinear against kn_resize_bilinear (PyTorch's), bicubic and
 * Lanczos-3 reproduce a linear ramp inside the image, area downsampling of the renderer's clip
 * equals its own low-resolution rendering, PSNR of a known MSE, difference maps, tiling,
 * thread-count independence, and the one-line errors. */
#include "kt.h"
#include "kt_models.h"

#include "ops/ops.h"
#include "train/stage_eval.h"

#include <stdlib.h>
#include <string.h>

KT_TEST(stage_eval_blend_x2_hand_computed) {
    /* 3 frames of 1x2 pixels */
    const uint8_t in[3 * 2 * 3] = {0, 10, 255, 1, 2, 3,   /* frame 0 */
                                   100, 11, 0, 2, 2, 4,   /* frame 1 */
                                   50, 50, 50, 7, 8, 9};  /* frame 2 */
    uint8_t out[6 * 6];
    KT_OK(kn_eval_blend_x2(in, 3, 1, 2, out));
    const uint8_t want[6 * 6] = {0, 10, 255, 1, 2, 3,     50, 11, 128, 2, 2, 4, /* (0+100+1)/2 = 50, (10+11+1)/2 = 11 */
                                 100, 11, 0, 2, 2, 4,     75, 31, 25, 5, 5, 7,  /* (100+50+1)/2 = 75 */
                                 50, 50, 50, 7, 8, 9,     50, 50, 50, 7, 8, 9}; /* the last frame repeats */
    KT_CHECK(memcmp(out, want, sizeof want) == 0);
    uint8_t sub[2 * 6];
    KT_OK(kn_eval_subsample_frames(in, 3, 1, 2, 2, sub));
    KT_CHECK(memcmp(sub, in, 6) == 0 && memcmp(sub + 6, in + 12, 6) == 0);
    /* blending every 2nd frame of a still clip gives the clip back */
    uint8_t still[4 * 6], b2[4 * 6];
    for (int t = 0; t < 4; t++)
        memcpy(still + 6 * t, in, 6);
    KT_OK(kn_eval_blend_x2(still, 2, 1, 2, b2));
    KT_CHECK(memcmp(b2, still, sizeof still) == 0);
}

KT_TEST(stage_eval_bilinear_equals_kn_resize_bilinear) {
    enum { N = 3, H = 5, W = 7 };
    static float x[N * H * W], y[N * 4 * H * W], r[N * 4 * H * W];
    kn_randn_fill(x, N * H * W, 5, 0);
    KT_OK(kn_eval_upsample_f32(KN_RESAMPLE_BILINEAR, x, N, H, W, 2, y));
    int64_t sh[4] = {N, 1, H, W};
    kn_tensor tx = kn_tensor_view(KN_F32, 4, sh, x);
    int64_t so[4] = {N, 1, 2 * H, 2 * W};
    kn_tensor ty = kn_tensor_view(KN_F32, 4, so, r);
    KT_OK(kn_resize_bilinear(NULL, &tx, 2 * H, 2 * W, &ty));
    KT_CHECKF(kt_max_abs_diff(y, r, N * 4 * H * W) < 1e-6, "max diff %g", kt_max_abs_diff(y, r, N * 4 * H * W));
    /* factor 3 too */
    static float y3[N * 9 * H * W], r3[N * 9 * H * W];
    KT_OK(kn_eval_upsample_f32(KN_RESAMPLE_BILINEAR, x, N, H, W, 3, y3));
    int64_t s3[4] = {N, 1, 3 * H, 3 * W};
    kn_tensor t3 = kn_tensor_view(KN_F32, 4, s3, r3);
    KT_OK(kn_resize_bilinear(NULL, &tx, 3 * H, 3 * W, &t3));
    /* weights of 1/3 steps are not exact in float: the two orders of operations differ by a few
     * ulps of the ~3-sized values (more where the compiler contracts differently, as at -O1) */
    KT_CHECKF(kt_max_abs_diff(y3, r3, N * 9 * H * W) < 1e-5, "max diff %g", kt_max_abs_diff(y3, r3, N * 9 * H * W));
}

/* A ramp v = a + b x + c y is reproduced exactly inside the image (where no tap is clamped) by the
 * Keys cubic and to within its first moment (Lanczos is not linear-exact: its normalised weights
 * have a first moment of 0.0198 px at quarter-pixel offsets) by Lanczos-3; an upsampled constant stays constant everywhere. */
KT_TEST(stage_eval_bicubic_lanczos_reproduce_a_ramp) {
    enum { H = 12, W = 16, S = 2 };
    static float x[H * W], y[H * S * W * S];
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++)
            x[i * W + j] = 3.0f + 0.5f * j - 0.25f * i;
    for (int k = 0; k < KN_RESAMPLE_COUNT; k++) {
        KT_OK(kn_eval_upsample_f32((kn_resample_kind)k, x, 1, H, W, S, y));
        const int margin = 3 * S + 1; /* output pixels whose taps all lie inside */
        double worst = 0;
        for (int i = margin; i < H * S - margin; i++)
            for (int j = margin; j < W * S - margin; j++) {
                double u = (j + 0.5) / S - 0.5, v = (i + 0.5) / S - 0.5;
                double want = 3.0 + 0.5 * u - 0.25 * v;
                worst = fmax(worst, fabs(y[i * W * S + j] - want));
            }
        /* Lanczos-3's first moment at phase 1/4 is 0.0198 px (computed from the kernel), so the ramp
         * of slopes (0.5, -0.25) is off by at most 0.0198 * 0.75 = 0.01485 */
        double tol = k == KN_RESAMPLE_LANCZOS3 ? 0.0150 : 1e-5;
        KT_CHECKF(worst < tol, "%s: ramp error %g", kn_resample_names[k], worst);
    }
    for (int i = 0; i < H * W; i++)
        x[i] = 77.0f;
    for (int k = 0; k < KN_RESAMPLE_COUNT; k++) {
        KT_OK(kn_eval_upsample_f32((kn_resample_kind)k, x, 1, H, W, S, y));
        double worst = 0;
        for (int i = 0; i < H * S * W * S; i++)
            worst = fmax(worst, fabs(y[i] - 77.0));
        KT_CHECKF(worst < 1e-4, "%s: constant changed by %g", kn_resample_names[k], worst);
    }
}

/* The renderer draws a 64 px clip as the area downsampling of the 128 px one (SHAPES.md), so the
 * two agree to rounding; upsampling back gives a finite PSNR that ranks bicubic/Lanczos above
 * bilinear on sharp shapes; the clip version equals the float planes rounded. */
KT_TEST(stage_eval_area_down_and_upsample_on_rendered_clip) {
    kn_shapes_caption cap;
    KT_OK(kn_shapes_parse("a large red square moving right", &cap));
    kn_shapes_render_params hi = {128, 4, 16}, lo = {64, 4, 16};
    const size_t nh = kn_shapes_clip_bytes(&hi), nl = kn_shapes_clip_bytes(&lo);
    uint8_t *h = malloc(nh), *l = malloc(nl), *d = malloc(nl), *u = malloc(nh);
    KT_CHECK(h && l && d && u);
    if (!h || !l || !d || !u)
        goto out;
    KT_OK(kn_shapes_render(&cap, 3, &hi, h, NULL));
    KT_OK(kn_shapes_render(&cap, 3, &lo, l, NULL));
    KT_OK(kn_eval_area_down(h, 4, 128, 128, 2, d));
    int maxd = 0;
    for (size_t i = 0; i < nl; i++)
        maxd = KN_MAX(maxd, abs((int)d[i] - (int)l[i]));
    KT_CHECKF(maxd <= 1, "area downsampling vs 64 px render: max diff %d", maxd);
    double psnr[KN_RESAMPLE_COUNT];
    for (int k = 0; k < KN_RESAMPLE_COUNT; k++) {
        KT_OK(kn_eval_upsample_clip((kn_resample_kind)k, d, 4, 64, 64, 2, u));
        psnr[k] = kn_eval_psnr(u, h, nh);
        KT_CHECKF(psnr[k] > 20 && psnr[k] < 60, "%s PSNR %.2f", kn_resample_names[k], psnr[k]);
    }
    KT_CHECKF(psnr[KN_RESAMPLE_BICUBIC] > psnr[KN_RESAMPLE_BILINEAR], "bicubic %.2f vs bilinear %.2f",
              psnr[KN_RESAMPLE_BICUBIC], psnr[KN_RESAMPLE_BILINEAR]);
    /* one pixel of the clip path by hand: frame 2, channel 0, pixel (40, 61) of the output */
    {
        float *planes = malloc(sizeof(float) * 64 * 64), *up = malloc(sizeof(float) * 128 * 128);
        for (int i = 0; i < 64 * 64; i++)
            planes[i] = d[((size_t)2 * 64 * 64 + (size_t)i) * 3];
        KT_OK(kn_eval_upsample_f32(KN_RESAMPLE_LANCZOS3, planes, 1, 64, 64, 2, up));
        KT_OK(kn_eval_upsample_clip(KN_RESAMPLE_LANCZOS3, d, 4, 64, 64, 2, u));
        float v = up[40 * 128 + 61];
        int want = v < 0 ? 0 : v > 255 ? 255 : (int)floorf(v + 0.5f);
        KT_CHECK(u[(((size_t)2 * 128 + 40) * 128 + 61) * 3] == want);
        free(planes), free(up);
    }
out:
    free(h), free(l), free(d), free(u);
}

KT_TEST(stage_eval_psnr_of_a_known_mse) {
    enum { N = 1000 };
    static uint8_t a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = (uint8_t)(i % 200);
        b[i] = (uint8_t)(i % 2 ? a[i] + 4 : a[i] + 0); /* |diff| 4 on half the bytes */
    }
    /* MSE 8 -> 10 log10(65025 / 8) */
    KT_NEAR(kn_eval_psnr(a, b, N), 10 * log10(65025.0 / 8.0), 1e-9);
    KT_CHECK(isinf(kn_eval_psnr(a, a, N)));
    /* one byte off by 255 in 1000: MSE 65.025 -> 30 dB */
    memcpy(b, a, N);
    a[10] = 0, b[10] = 255;
    KT_NEAR(kn_eval_psnr(a, b, N), 30.0, 1e-9);
}

KT_TEST(stage_eval_diff_maps_tile_and_temporal_scores) {
    const uint8_t a[6] = {0, 10, 200, 255, 3, 3}, b[6] = {5, 0, 100, 0, 3, 4};
    uint8_t d[6];
    kn_eval_diff(a, b, 6, 4.0f, d);
    const uint8_t want[6] = {20, 40, 255, 255, 0, 4};
    KT_CHECK(memcmp(d, want, 6) == 0);
    /* temporal diff of 3 frames of 1x1 */
    const uint8_t clip[9] = {10, 20, 30, 12, 20, 0, 12, 20, 0};
    uint8_t td[9];
    KT_OK(kn_eval_temporal_diff(clip, 3, 1, 1, 2.0f, td));
    const uint8_t twant[9] = {0, 0, 0, 4, 0, 60, 0, 0, 0};
    KT_CHECK(memcmp(td, twant, 9) == 0);
    /* 2x2 grid of 1-frame 1x2 clips, one black */
    const uint8_t p0[6] = {1, 1, 1, 2, 2, 2}, p1[6] = {3, 3, 3, 4, 4, 4}, p2[6] = {5, 5, 5, 6, 6, 6};
    const uint8_t *cl[4] = {p0, p1, p2, NULL};
    uint8_t g[2 * 4 * 3];
    KT_OK(kn_eval_tile(cl, 2, 2, 1, 1, 2, g));
    const uint8_t gw[24] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 0, 0, 0, 0, 0, 0};
    KT_CHECK(memcmp(g, gw, sizeof gw) == 0);
    /* a rendered clip: no flicker, stable area, exact; noise on the background flickers */
    kn_shapes_caption cap;
    KT_OK(kn_shapes_parse("a large blue square moving left", &cap));
    kn_shapes_render_params p = {64, 8, 8};
    uint8_t *c = malloc(kn_shapes_clip_bytes(&p));
    KT_OK(kn_shapes_render(&cap, 1, &p, c, NULL));
    kn_eval_temporal ts;
    KT_OK(kn_eval_temporal_scores(c, 8, 64, 64, 8, &cap, &ts));
    KT_CHECK(ts.flicker == 0 && ts.area_cv >= 0 && ts.area_cv < 0.05 && ts.exact == 1);
    for (int t = 0; t < 8; t++)
        c[((size_t)t * 64 * 64 + 2 * 64 + 2) * 3] = (uint8_t)(t % 2 ? 20 : 0); /* a corner pixel blinks */
    KT_OK(kn_eval_temporal_scores(c, 8, 64, 64, 8, &cap, &ts));
    KT_CHECK(ts.flicker > 0);
    free(c);
}

KT_TEST(stage_eval_results_do_not_depend_on_threads) {
    enum { F = 3, H = 17, W = 23 };
    static uint8_t in[F * H * W * 3];
    for (int i = 0; i < F * H * W * 3; i++)
        in[i] = (uint8_t)((i * 2654435761u) >> 24);
    static uint8_t out[4][KN_RESAMPLE_COUNT][F * 4 * H * W * 3];
    int prev = kn_get_threads();
    for (int n = 1; n <= 3; n++) {
        kn_set_threads(n);
        for (int k = 0; k < KN_RESAMPLE_COUNT; k++)
            KT_OK(kn_eval_upsample_clip((kn_resample_kind)k, in, F, H, W, 2, out[n][k]));
    }
    kn_set_threads(prev);
    for (int n = 2; n <= 3; n++)
        for (int k = 0; k < KN_RESAMPLE_COUNT; k++)
            KT_CHECKF(memcmp(out[1][k], out[n][k], sizeof out[1][k]) == 0, "%s differs at %d threads",
                      kn_resample_names[k], n);
}

KT_TEST(stage_eval_bad_inputs_give_errors) {
    uint8_t buf[64] = {0}, o[256];
    float f[4] = {0}, g[64];
    KT_CHECK(kn_eval_blend_x2(buf, 0, 1, 1, o) == KN_ERR_ARG && strstr(kn_last_error(), "blend"));
    KT_CHECK(kn_eval_blend_x2(NULL, 1, 1, 1, o) == KN_ERR_ARG);
    KT_CHECK(kn_eval_upsample_f32(KN_RESAMPLE_COUNT, f, 1, 2, 2, 2, g) == KN_ERR_ARG &&
             strstr(kn_last_error(), "unknown kind"));
    KT_CHECK(kn_eval_upsample_f32(KN_RESAMPLE_BICUBIC, f, 1, 2, 2, 9, g) == KN_ERR_ARG &&
             strstr(kn_last_error(), "factor 9"));
    KT_CHECK(kn_eval_upsample_clip(KN_RESAMPLE_BICUBIC, buf, 1, -2, 2, 2, o) == KN_ERR_ARG);
    KT_CHECK(kn_eval_area_down(buf, 1, 3, 4, 2, o) == KN_ERR_ARG && strstr(kn_last_error(), "multiple"));
    KT_CHECK(kn_eval_subsample_frames(buf, 2, 1, 1, 0, o) == KN_ERR_ARG);
    KT_CHECK(kn_eval_tile(NULL, 1, 1, 1, 1, 1, o) == KN_ERR_ARG);
    KT_CHECK(kn_eval_temporal_scores(buf, 1, 2, 2, 16, NULL, NULL) == KN_ERR_ARG);
}

/* ------------------------------------------------------------ kinema eval --stage
 * A tiny random cascade (VAE f = 2, latents C = 4, text width 8); the viz tests (test_viz.c) use
 * it too. */
#include "io/export.h"
#include "io/video.h"

#include <cJSON.h>

static kn_unet3d_config tiny_unet(void) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 2, 4, 8);
    c.sample_size = 8;
    return c;
}

/* Exports it into this test's temporary directory (removed with it); with_stages = 0: a plain
 * (base-only) folder. Returns the folder or NULL (after a failed check). */
const char *kt_stage_eval_model(int with_stages);
const char *kt_stage_eval_model(int with_stages) {
    static char dirs[2][700];
    char *dir = dirs[with_stages != 0];
    kn_unet3d_config b = tiny_unet(), t = b, s = b;
    t.fps_cond = 1;
    t.cond_channels = 5;
    s.cond_channels = 4;
    s.noise_aug_cond = 1;
    s.temporal_attention = 0;
    kn_vae_config vc = kt_tiny_vae_config();
    kn_clip_text_config cc = kt_tiny_text_config(8);
    kn_unet3d *u = kn_unet3d_new(&b), *tu = kn_unet3d_new(&t), *su = kn_unet3d_new(&s);
    kn_vae *vae = kn_vae_new(&vc);
    kn_clip_text *text = kn_clip_text_new(&cc);
    kn_status st = KN_ERR_NOMEM;
    if (u && tu && su && vae && text) {
        kn_params_init_default(&u->P, 11);
        kn_params_init_default(&tu->P, 12);
        kn_params_init_default(&su->P, 13);
        kn_params_init_default(&vae->P, 14);
        kn_params_init_default(&text->P, 15);
        kn_sched_config sc = kn_sched_config_modelscope();
        kn_export_opts o = {KN_F32, 4, 8};
        if (with_stages) {
            o.tsr = tu;
            o.ssr = su;
            o.cascade = (kn_cascade_info){2, 2, 2, 1.0f, 2, 2, 100, 1, 0, 1.0f};
        }
        snprintf(dir, 700, "%s/stage_eval_%s", kt_tmpdir(), with_stages ? "cascade" : "plain");
        st = kn_export_t2v(dir, u, vae, text, &sc, "models/default/tokenizer", "<|endoftext|>", &o);
    }
    KT_CHECKF(st == KN_OK, "tiny cascade: %s", kn_last_error());
    kn_unet3d_free(u), kn_unet3d_free(tu), kn_unet3d_free(su);
    kn_vae_free(vae);
    kn_clip_text_free(text);
    if (st != KN_OK)
        dir[0] = 0;
    return st == KN_OK ? dir : NULL;
}

static char *slurp_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* the PSNR the table prints for a method */
static double table_psnr(const char *out, const char *method) {
    char key[64];
    snprintf(key, sizeof key, "\n%s ", method);
    const char *p = strstr(out, key);
    double v = NAN;
    if (!p || sscanf(p + strlen(key), "%lf", &v) != 1)
        return NAN;
    return v;
}

/* ssr on the tiny cascade: the table has every method with finite numbers, and the baselines'
 * PSNRs equal a direct render -> area downsampling -> upsampling here; --json and --diff-video
 * are written with the right content and size. */
KT_TEST(stage_eval_cli_ssr_on_a_tiny_cascade) {
    const char *dir = kt_stage_eval_model(1);
    if (!dir)
        return;
    char out[16384], js[800], dv[800];
    snprintf(js, sizeof js, "%s/ssr.json", kt_tmpdir());
    snprintf(dv, sizeof dv, "%s/ssr_diff.y4m", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s eval --stage ssr --model '%s' --n 2 --size 32 --frames 4 --steps 1 -t 2 "
                    "--json '%s' --diff-video '%s' 2>/dev/null", kt_bin(), dir, js, dv);
    KT_CHECKF(rc == 0, "eval --stage ssr failed: %s", out);
    static const char *const methods[] = {"bilinear", "bicubic", "lanczos3", "video_sr", "per_frame_sr", "vae_recon"};
    for (int m = 0; m < 6; m++) {
        double p = table_psnr(out, methods[m]);
        KT_CHECKF(p > 0 && p < 100, "%s: PSNR %g in %s", methods[m], p, out);
    }
    KT_CHECK(table_psnr(out, "truth") == 100.0);
    KT_CHECK(strstr(out, "best baseline:") && strstr(out, "flicker: per-frame SR"));
    /* the baselines by hand */
    double want[3] = {0, 0, 0};
    for (int i = 0; i < 2; i++) {
        kn_shapes_caption cap;
        KT_OK(kn_shapes_sample(KN_SPLIT_RANDOM, 7001, (uint64_t)i, &cap));
        kn_shapes_render_params rp = {32, 4, 16};
        static uint8_t hi[4 * 32 * 32 * 3], lo[4 * 16 * 16 * 3], up[4 * 32 * 32 * 3];
        KT_OK(kn_shapes_render(&cap, (uint64_t)i, &rp, hi, NULL));
        KT_OK(kn_eval_area_down(hi, 4, 32, 32, 2, lo));
        for (int k = 0; k < 3; k++) {
            KT_OK(kn_eval_upsample_clip((kn_resample_kind)k, lo, 4, 16, 16, 2, up));
            double p = kn_eval_psnr(up, hi, sizeof hi);
            want[k] += (p < 100 ? p : 100) / 2;
        }
    }
    for (int k = 0; k < 3; k++)
        KT_NEAR(table_psnr(out, kn_resample_names[k]), want[k], 0.006);
    char *j = slurp_text(js);
    cJSON *root = j ? cJSON_Parse(j) : NULL;
    KT_CHECKF(root != NULL, "no JSON in %s", js);
    if (root) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "methods");
        const cJSON *bic = cJSON_GetObjectItemCaseSensitive(m, "bicubic");
        const cJSON *vs = cJSON_GetObjectItemCaseSensitive(m, "video_sr");
        const cJSON *pf = cJSON_GetObjectItemCaseSensitive(m, "per_frame_sr");
        KT_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(bic, "psnr")));
        KT_NEAR(cJSON_GetObjectItemCaseSensitive(bic, "psnr")->valuedouble, want[1], 1e-9);
        KT_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(vs, "flicker")) &&
                 cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pf, "flicker")));
        KT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "clips")) == 2);
        KT_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "best_baseline")));
        cJSON_Delete(root);
    }
    kn_video v = {0};
    kn_video_read_opts ro = kn_video_read_default_opts();
    KT_OK(kn_video_read(dv, &ro, &v));
    KT_CHECKF(v.frames == 4 && v.height == 64 && v.width == 64, "diff video %dx%dx%d", v.frames, v.height, v.width);
    kn_video_free(&v);
}

/* tsr: the model's interpolation and frame blending, both against the 16 fps truth; blending's
 * PSNR equals a direct computation. */
KT_TEST(stage_eval_cli_tsr_on_a_tiny_cascade) {
    const char *dir = kt_stage_eval_model(1);
    if (!dir)
        return;
    char out[16384];
    int rc = kt_run(out, sizeof out, "%s eval --stage tsr --model '%s' --n 1 --size 32 --frames 4 --steps 1 -t 2 "
                    "2>/dev/null", kt_bin(), dir);
    KT_CHECKF(rc == 0, "eval --stage tsr failed: %s", out);
    double pm = table_psnr(out, "model"), pb = table_psnr(out, "blend");
    KT_CHECKF(pm > 0 && pm < 100 && pb > 0 && pb <= 100, "model %g blend %g: %s", pm, pb, out);
    kn_shapes_caption cap;
    KT_OK(kn_shapes_sample(KN_SPLIT_RANDOM, 7001, 0, &cap));
    kn_shapes_render_params rp = {32, 4, 16};
    static uint8_t hi[4 * 32 * 32 * 3], t[4 * 16 * 16 * 3], lo[2 * 16 * 16 * 3], bl[4 * 16 * 16 * 3];
    KT_OK(kn_shapes_render(&cap, 0, &rp, hi, NULL));
    KT_OK(kn_eval_area_down(hi, 4, 32, 32, 2, t));
    KT_OK(kn_eval_subsample_frames(t, 4, 16, 16, 2, lo));
    KT_OK(kn_eval_blend_x2(lo, 2, 16, 16, bl));
    double p = kn_eval_psnr(bl, t, sizeof t);
    KT_NEAR(pb, p < 100 ? p : 100, 0.006);
}

KT_TEST(stage_eval_cli_bad_inputs_are_one_line_errors) {
    const char *dir = kt_stage_eval_model(1), *plain = kt_stage_eval_model(0);
    if (!dir || !plain)
        return;
    char out[4096];
    struct { const char *args; const char *msg; } cases[] = {
        {"--stage foo --model '%s'", "--stage must be tsr or ssr"},
        {"--stage ssr --size 30 --model '%s'", "multiple of the VAE factor"},
        {"--stage tsr --frames 5 --model '%s'", "multiple of the tsr factor"},
        {"--stage tsr --diff-video x.gif --model '%s'", "--diff-video is for --stage ssr"},
        {"--stage ssr --n 0 --model '%s'", "--n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1200];
        snprintf(args, sizeof args, cases[i].args, dir);
        int rc = kt_run(out, sizeof out, "%s eval %s 2>&1", kt_bin(), args);
        KT_CHECKF(rc != 0 && strstr(out, cases[i].msg) && strchr(out, '\n') == out + strlen(out) - 1,
                  "'%s': rc %d, %s", args, rc, out);
    }
    int rc = kt_run(out, sizeof out, "%s eval --stage tsr --model '%s' 2>&1", kt_bin(), plain);
    KT_CHECKF(rc != 0 && strstr(out, "has no tsr stage"), "plain model: %s", out);
    rc = kt_run(out, sizeof out, "%s eval --stage ssr 2>&1", kt_bin());
    KT_CHECKF(rc != 0 && strstr(out, "needs --model"), "no model: %s", out);
}
