/* cmd_stage.c — the cascade's super-resolution stages as commands on any video file:
 *
 *   kinema interpolate IN --factor 2 -o OUT   temporal SR: factor x the frames, at factor x the rate
 *   kinema extend IN --frames N -o OUT        temporal SR: the clip continued to N frames, same rate
 *   kinema upscale IN --scale 2 -o OUT        spatial SR: scale x the width and height, same rate
 *
 * IN is read with io/video.h (any format it reads), resized when the stage needs it (the temporal
 * stage works at the model's base frame size; the spatial one at any multiple of the VAE factor),
 * VAE-encoded, run through the stage's sampler (diffusion/cascade.h) and decoded (the input frames
 * themselves are kept unchanged in the output of interpolate and extend); OUT is written
 * atomically (nothing is left behind on failure). */
#include "cli/cli.h"
#include "cli/model_path.h"
#include "io/t2v_load.h"
#include "io/video.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum { ST_INTERPOLATE, ST_EXTEND, ST_UPSCALE } stage_kind;

static const char *const stage_name[] = {"interpolate", "extend", "upscale"};

static void usage(FILE *f, stage_kind k) {
    static const char *what[] = {
        "interpolate IN --factor K -o OUT   K x the frames (frame interpolation), at K x the frame rate",
        "extend IN --frames N -o OUT        the clip continued to N frames (extrapolation), same rate",
        "upscale IN --scale S -o OUT        S x the width and height (spatial super-resolution), same rate",
    };
    fprintf(f,
            "usage: kinema %s\n"
            "%s"
            "  -o, --output FILE   the result (.mp4 .webm .gif .webp .y4m, NAME%%d.png, DIR/); required\n"
            "  -m, --model DIR     a cascade model folder with the %s stage; default: $KINEMA_MODEL,\n"
            "                      else the bundled model (models/default)\n"
            "  -p, --prompt TEXT   what the clip shows (default \"\")\n"
            "  -n, --negative TEXT negative prompt for guidance (default \"\")\n"
            "      --steps N       denoising steps (default: the model's cascade entry)\n"
            "  -g, --guidance G    classifier-free guidance scale (default: the model's; <= 1 disables it)\n"
            "  -s, --seed N        noise seed (default 0)\n"
            "  -t, --threads N     threads (default: all cores)\n",
            what[k],
            k == ST_INTERPOLATE ? "      --factor K      2..8 (default 2)\n"
            : k == ST_EXTEND    ? "      --frames N      output frames, more than the input has (required)\n"
                                : "      --scale S       2..8 (default: the model's, usually 2)\n",
            k == ST_UPSCALE ? "spatial SR (ssr/)" : "temporal SR (tsr/)");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* prompt and negative -> embeddings (2, L, D): [prompt, negative]. */
static kn_status encode_prompts(const kn_t2v_bundle *b, const char *prompt, const char *neg, int64_t L, float *emb) {
    int32_t *ids = malloc((size_t)(2 * L) * sizeof(int32_t));
    if (!ids)
        return kn_fail(KN_ERR_NOMEM, "out of memory");
    kn_status st = kn_tokenize_padded(b->tok, prompt, ids, (int)L, b->pad_id, NULL, NULL);
    if (st == KN_OK)
        st = kn_tokenize_padded(b->tok, neg, ids + L, (int)L, b->pad_id, NULL, NULL);
    if (st == KN_OK)
        st = kn_t2v_encode_text(&b->m, ids, 2, L, 0, emb);
    free(ids);
    return st;
}

static int run_stage(stage_kind k, int argc, char **argv) {
    const char *cmd = stage_name[k];
    const char *out = NULL, *model = NULL, *prompt = "", *neg = "";
    long factor = 2, frames = 0, scale = 0, steps = 0, threads = 0;
    uint64_t seed = 0;
    double guidance = -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_cli_opt opts[] = {
        {"--output", "-o", KN_OPT_STR, &out},
        {"--model", "-m", KN_OPT_STR, &model},
        {"--prompt", "-p", KN_OPT_STR, &prompt},
        {"--negative", "-n", KN_OPT_STR, &neg},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--guidance", "-g", KN_OPT_FLOAT, &guidance, 0, 100},
        {"--seed", "-s", KN_OPT_U64, &seed},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {0}, /* the stage's own option */
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    if (k == ST_INTERPOLATE)
        opts[nopts - 1] = (kn_cli_opt){"--factor", NULL, KN_OPT_INT, &factor, 2, 8};
    else if (k == ST_EXTEND)
        opts[nopts - 1] = (kn_cli_opt){"--frames", NULL, KN_OPT_INT, &frames, 2, 4096};
    else
        opts[nopts - 1] = (kn_cli_opt){"--scale", NULL, KN_OPT_INT, &scale, 2, 8};
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse(cmd, argc, argv, opts, nopts, pos, 1, &npos);
    if (r == 2) {
        usage(stdout, k);
        return 0;
    }
    if (!r)
        return 2;
    if (!npos)
        return kn_cli_error("%s: no input video given (kinema %s IN -o OUT)", cmd, cmd);
    if (!out)
        return kn_cli_error("%s: no output given (-o OUT)", cmd);
    if (k == ST_EXTEND && !frames)
        return kn_cli_error("%s: --frames N (the output length) is required", cmd);
    char bundled[2048];
    if (!(model = kn_cli_model_path(cmd, model, bundled, sizeof bundled)))
        return 1;
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    double t0 = now();
    kn_t2v_bundle b;
    if (kn_t2v_load(model, NULL, &b) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    int rc = 1;
    kn_video in = {0}, res = {0};
    kn_tensor vt = {0};
    float *emb = NULL, *lat = NULL, *lat_out = NULL, *video = NULL;
    kn_arena *A = NULL;
    const kn_unet3d *u = k == ST_UPSCALE ? b.ssr : b.tsr;
    if (!u) {
        kn_cli_error("%s: the model %s has no %s stage (%s/ and model_index.json \"kinema\": {\"cascade\": {\"%s\"}})",
                     cmd, model, k == ST_UPSCALE ? "spatial SR" : "temporal SR", k == ST_UPSCALE ? "ssr" : "tsr",
                     k == ST_UPSCALE ? "ssr" : "tsr");
        goto done;
    }
    int f = 1 << (b.m.vae->cfg.nblocks - 1);
    if (k == ST_UPSCALE && !scale)
        scale = b.cascade.ssr_scale;

    /* the input clip, at the size the stage works on */
    kn_video_read_opts ro = kn_video_read_default_opts();
    if (k != ST_UPSCALE && b.m.unet->cfg.sample_size > 0)
        ro.width = ro.height = b.m.unet->cfg.sample_size * f; /* the base's frame size */
    if (kn_video_read(pos[0], &ro, &in) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    if (in.width % f || in.height % f) {
        /* any size the VAE takes: round each side down to a multiple of its factor */
        int W = in.width / f * f, H = in.height / f * f;
        if (!W || !H) {
            kn_cli_error("%s: %s is %dx%d, smaller than the VAE factor %d", cmd, pos[0], in.width, in.height, f);
            goto done;
        }
        if (kn_video_resample(&in, 0, W, H, &res) != KN_OK) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        kn_video_free(&in);
        in = res;
        memset(&res, 0, sizeof res);
    }
    double fps_in = in.fps > 0 ? in.fps : 8.0;
    int64_t C = b.m.unet->cfg.in_channels, F = in.frames, H = in.height, W = in.width, h = H / f, w = W / f;
    int64_t Fo = k == ST_INTERPOLATE ? F * factor : k == ST_EXTEND ? frames : F;
    int64_t ho = k == ST_UPSCALE ? h * scale : h, wo = k == ST_UPSCALE ? w * scale : w;
    double fps_out = k == ST_INTERPOLATE ? fps_in * factor : fps_in;
    if (k == ST_EXTEND && frames <= F) {
        kn_cli_error("%s: --frames %ld must be more than the input's %lld frames", cmd, frames, (long long)F);
        goto done;
    }
    fprintf(stderr, "loaded %s in %.1f s; %s: %lld frames %lldx%lld at %g fps -> %lld frames %lldx%lld at %g fps\n",
            model, now() - t0, pos[0], (long long)F, (long long)W, (long long)H, fps_in, (long long)Fo,
            (long long)(wo * f), (long long)(ho * f), fps_out);

    int64_t L = KN_MIN(77, b.m.text->cfg.max_position_embeddings), D = b.m.text->cfg.hidden_size;
    emb = malloc((size_t)(2 * L * D) * sizeof(float));
    lat = malloc((size_t)(C * F * h * w) * sizeof(float));
    lat_out = malloc((size_t)(C * Fo * ho * wo) * sizeof(float));
    video = malloc((size_t)(3 * Fo * ho * f * wo * f) * sizeof(float));
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!emb || !lat || !lat_out || !video || !A) {
        kn_cli_error("%s: out of memory for a %lld-frame %lldx%lld clip", cmd, (long long)Fo, (long long)(wo * f),
                     (long long)(ho * f));
        goto done;
    }
    kn_stage_params p = kn_stage_params_default();
    p.seed = seed;
    p.sched_kind = b.m.sched_kind;
    if (k == ST_UPSCALE) {
        p.steps = steps > 0 ? (int)steps : b.cascade.ssr_steps;
        p.guidance_scale = guidance >= 0 ? (float)guidance : b.cascade.ssr_guidance;
        p.noise_aug = u->cfg.noise_aug_cond ? b.cascade.ssr_noise_aug : 0;
        p.same_noise = b.cascade.ssr_same_noise;
        p.chunk = b.cascade.ssr_chunk;
        p.fps = (float)fps_out; /* for an fps-conditioned ssr: the clip's rate */
    } else {
        p.steps = steps > 0 ? (int)steps : b.cascade.tsr_steps;
        p.guidance_scale = guidance >= 0 ? (float)guidance : b.cascade.tsr_guidance;
        p.fps = (float)fps_out;
    }
    double t1 = now();
    kn_status st = encode_prompts(&b, prompt, neg, L, emb);
    if (st == KN_OK)
        st = kn_video_to_tensor(NULL, &in, 1, &vt);
    if (st == KN_OK)
        st = kn_t2v_encode_video(&b.m, A, vt.data, F, H, W, 4, lat);
    if (st == KN_OK) {
        const float *pe = emb, *ne = emb + L * D;
        kn_sched_config ss = kn_cascade_stage_sched(&b.cascade, &b.m.sched, k != ST_UPSCALE);
        if (k == ST_INTERPOLATE)
            st = kn_cascade_interpolate(u, &ss, A, pe, ne, L, lat, C, F, h, w, (int)factor, &p, lat_out);
        else if (k == ST_EXTEND)
            st = kn_cascade_extend(u, &ss, A, pe, ne, L, lat, C, F, h, w, Fo, &p, lat_out);
        else
            st = kn_cascade_upscale(u, &ss, A, pe, ne, L, lat, C, F, h, w, (int)scale, &p, lat_out);
    }
    if (st == KN_OK)
        st = kn_t2v_decode(&b.m, A, lat_out, Fo, ho, wo, 4, video);
    if (st == KN_OK)
        st = kn_video_alloc(&res, (int)Fo, (int)(ho * f), (int)(wo * f), fps_out);
    if (st != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    kn_video_to_rgb8(video, Fo, ho * f, wo * f, res.rgb);
    /* the given frames are kept as they were (only the generated ones pass through the VAE):
     * input frame i is output frame factor * i (interpolate) or i (extend) */
    if (k != ST_UPSCALE) {
        size_t fb = (size_t)(H * W * 3);
        for (int64_t i = 0; i < F; i++)
            memcpy(res.rgb + (size_t)(k == ST_INTERPOLATE ? i * factor : i) * fb, in.rgb + (size_t)i * fb, fb);
    }
    if (kn_video_write(out, &res, NULL) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    fprintf(stderr, "wrote %s: %lld frames %lldx%lld at %g fps in %.1f s (peak RSS %.0f MiB)\n", out, (long long)Fo,
            (long long)(wo * f), (long long)(ho * f), fps_out, now() - t1, kn_peak_rss() / 1048576.0);
    rc = 0;
done:
    kn_tensor_free(&vt);
    kn_video_free(&in);
    kn_video_free(&res);
    free(emb);
    free(lat);
    free(lat_out);
    free(video);
    kn_arena_free(A);
    kn_t2v_unload(&b);
    return rc;
}

static int cmd_interpolate(int argc, char **argv) { return run_stage(ST_INTERPOLATE, argc, argv); }
static int cmd_extend(int argc, char **argv) { return run_stage(ST_EXTEND, argc, argv); }
static int cmd_upscale(int argc, char **argv) { return run_stage(ST_UPSCALE, argc, argv); }

KN_CLI_COMMAND(interpolate, "interpolate", "more frames in between (a cascade model's temporal SR stage)",
               cmd_interpolate)
KN_CLI_COMMAND(extend, "extend", "continue a clip to more frames (a cascade model's temporal SR stage)", cmd_extend)
KN_CLI_COMMAND(upscale, "upscale", "larger frames (a cascade model's spatial SR stage)", cmd_upscale)
