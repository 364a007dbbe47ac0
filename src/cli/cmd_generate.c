/* cmd_generate.c — `kinema generate`: text-to-video (and video-to-video with --init-video) from
 * a diffusers pipeline folder. A cascade model (tsr/ and ssr/, model_index.json "kinema":
 * {"cascade"}) runs base -> temporal SR (times x) -> spatial SR -> decode unless --no-cascade. */
#include "cli/cli.h"
#include "cli/model_path.h"
#include "io/model_load.h"
#include "io/safetensors.h"
#include "io/tae_load.h"
#include "io/t2v_load.h"
#include "io/video.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: kinema generate [-p] PROMPT [options]\n"
            "  -p, --prompt TEXT       what to generate\n"
            "  -n, --negative TEXT     negative prompt (default \"\")\n"
            "  -m, --model DIR         diffusers text-to-video folder (model_index.json, unet/, vae/, ...);\n"
            "                          default: $KINEMA_MODEL, else the bundled model (models/default)\n"
            "  -o, --output FILE       .mp4 .webm .gif .webp .y4m, NAME%%d.png, DIR/ or *.sheet.png (default out.mp4)\n"
            "      --steps N           denoising steps (default 25)\n"
            "  -g, --guidance G        classifier-free guidance scale (default 9; <= 1 disables it)\n"
            "                          (--steps, -g, --frames, -H, -W: the base stage's; a cascade's SR stages\n"
            "                          take their steps and guidance from the model's model_index.json)\n"
            "      --frames N          frames (default: the model's, else 16)\n"
            "  -H, --height N          height in pixels (default: the model's sample_size x the VAE factor)\n"
            "  -W, --width N           width in pixels (default: the same)\n"
            "  -s, --seed N            noise seed (default 0); same seed, same video at any --threads\n"
            "      --scheduler NAME    ddim, ddpm, euler, euler_a, dpmpp_2m (default: the model's)\n"
            "      --karras            Karras sigmas (euler, euler_a, dpmpp_2m)\n"
            "      --weights-type T    f32 (default), f16, bf16 (AVX512-BF16 dot products, f32 accumulation) or\n"
            "                          q8 (8-bit blocks of 32): the UNets' matrix and conv weights, converted at load\n"
            "      --fps F             the base's frame rate: its fps conditioning when the UNet has one, and the\n"
            "                          output file's rate (times the temporal SR factors of a cascade);\n"
            "                          default: the model's, else 8\n"
            "      --no-cascade        a cascade model: stop after the base stage\n"
            "      --keep-stages DIR   a cascade model: also write every stage's video, DIR/0-base.mp4,\n"
            "                          DIR/1-tsr.mp4, ..., DIR/N-ssr.mp4\n"
            "      --sr-steps N        a cascade model: denoising steps of each SR stage (default: the model's)\n"
            "      --clip-skip K       use the text encoder's K-th last layer (default 0)\n"
            "      --latents FILE      initial latents (safetensors, one (1,C,F,h,w) tensor) instead of noise\n"
            "      --latents-tensor T  the tensor to read from --latents (default \"latents\" or the first)\n"
            "      --save-latents FILE write the final latents (safetensors; a cascade's last stage)\n"
            "      --init-video FILE   video-to-video: start from this clip (resized to --width/--height)\n"
            "      --strength S        video-to-video: how much to change it, 0..1 (default 0.6)\n"
            "      --decode-chunk N    frames per VAE decode batch (default 4; bounds memory)\n"
            "      --variant fp16      read the *.fp16.safetensors weights\n"
            "      --vae taesd|taehv   decode with a tiny autoencoder instead (weights: --vae-path FILE|DIR)\n"
            "  -t, --threads N         threads (default: all cores)\n");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct { double t0; } progress;

static void on_step(int i, int n, double t, const kn_tensor *in, const kn_tensor *out, const kn_tensor *lat, void *u) {
    (void)in; (void)out; (void)lat;
    progress *p = u;
    double el = now() - p->t0;
    fprintf(stderr, "\rstep %d/%d  t=%-6.0f %.2f s/step  ", i + 1, n, t, el / (i + 1));
    if (i + 1 == n)
        fputc('\n', stderr);
}

static int write_latents(const char *path, const float *lat, const int64_t *shape) {
    kn_st_writer *w = kn_st_writer_new();
    kn_tensor t = kn_tensor_view(KN_F32, 5, shape, (void *)lat);
    kn_status st = w ? kn_st_writer_add(w, "latents", &t) : KN_ERR_NOMEM;
    if (st == KN_OK)
        st = kn_st_writer_write(w, path);
    kn_st_writer_free(w);
    return st == KN_OK ? 0 : kn_cli_error("%s", kn_last_error());
}

/* Decodes a stage's latents (1, C, F, h, w) and writes them as DIR/<idx>-<name>.mp4. */
static int write_stage(const kn_t2v_bundle *b, kn_arena *A, const char *dir, int idx, const char *name,
                       const float *lat, int64_t F, int64_t h, int64_t w, int chunk, double fps, float *video,
                       uint8_t *rgb, int decoded) {
    int f = 1 << (b->m.vae->cfg.nblocks - 1);
    if (!decoded && kn_t2v_decode(&b->m, A, lat, F, h, w, chunk, video) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    kn_video_to_rgb8(video, F, h * f, w * f, rgb);
    kn_video v = {(int)F, (int)(h * f), (int)(w * f), fps, rgb};
    char path[2200];
    snprintf(path, sizeof path, "%s/%d-%s.mp4", dir, idx, name);
    if (kn_video_write(path, &v, NULL) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    fprintf(stderr, "wrote %s\n", path);
    return 0;
}

/* The SR stages of a cascade after the base (kn_cascade_run), each stage's time printed and,
 * with keep, its output written (DIR/1-tsr.mp4, ...); the final latents replace *lat (which
 * must hold the final size) and are decoded into video. Returns 0 or 1 (error printed). */
typedef struct {
    const kn_t2v_bundle *b;
    kn_arena *A;
    const char *keep;
    int chunk, failed;
    float *video;
    uint8_t *rgb;
} stage_out;

static void on_stage(int s, const char *name, const float *lat, int64_t F, int64_t h, int64_t w, double fps,
                     double secs, void *user) {
    stage_out *o = user;
    int f = 1 << (o->b->m.vae->cfg.nblocks - 1);
    fprintf(stderr, "stage %d %s: %lld frames %lldx%lld at %g fps in %.1f s\n", s, name, (long long)F,
            (long long)(w * f), (long long)(h * f), fps, secs);
    if (o->keep && !o->failed)
        o->failed = write_stage(o->b, o->A, o->keep, s, name, lat, F, h, w, o->chunk, fps, o->video, o->rgb, 0);
}

static int run_cascade(const kn_t2v_bundle *b, kn_arena *A, const float *pos, const float *neg, int64_t L,
                       uint64_t seed, const char *keep, int chunk, float *lat, int64_t *F, int64_t *h, int64_t *w,
                       double *fps, float *video, uint8_t *rgb) {
    stage_out o = {b, A, keep, chunk, 0, video, rgb};
    if (kn_cascade_run(b->tsr, b->ssr, &b->cascade, &b->m.sched, b->m.sched_kind, A, pos, neg, L, seed, lat,
                       b->m.unet->cfg.in_channels, F, h, w, fps, on_stage, &o) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    if (o.failed)
        return 1;
    if (kn_t2v_decode(&b->m, A, lat, *F, *h, *w, chunk, video) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    return 0;
}

/* Activations of the SR stages (each stage's UNet at its output size, with its CFG batch and
 * frame chunk) and the cascade's heap buffers: the larger of that and the base's estimate is
 * what the run needs. */
static size_t cascade_estimate(const kn_t2v_bundle *b, const kn_t2v_params *base) {
    const kn_cascade_info *ci = &b->cascade;
    kn_t2v_models m = b->m;
    kn_t2v_params p = *base;
    size_t peak = 0;
    if (b->tsr) {
        m.unet = b->tsr;
        p.guidance_scale = ci->tsr_guidance;
        for (int i = 0; i < ci->tsr_times; i++) {
            p.frames *= ci->tsr_factor;
            size_t e = kn_t2v_estimate_bytes(&m, &p);
            peak = e > peak ? e : peak;
        }
    }
    if (b->ssr) {
        m.unet = b->ssr;
        p.guidance_scale = ci->ssr_guidance;
        p.height *= ci->ssr_scale;
        p.width *= ci->ssr_scale;
        int frames = p.frames;
        if (ci->ssr_chunk > 0 && ci->ssr_chunk < p.frames)
            p.frames = ci->ssr_chunk; /* the UNet sees one chunk; the decode below all frames */
        size_t e = kn_t2v_estimate_bytes(&m, &p);
        peak = e > peak ? e : peak;
        p.frames = frames;
    }
    int f = 1 << (b->m.vae->cfg.nblocks - 1);
    double lat = (double)b->m.unet->cfg.in_channels * p.frames * (p.height / f) * (p.width / f) * 4.0;
    double vid = (double)p.frames * p.height * p.width * 3.0 * (4.0 + 1.0);
    return peak + (size_t)(3 * lat + vid);
}

static int cmd_generate(int argc, char **argv) {
    const char *prompt = NULL, *neg = "", *model = NULL, *out = "out.mp4", *sched = NULL, *latents_path = NULL,
               *save_latents = NULL, *variant = NULL, *init_video = NULL, *latents_name = NULL, *vae_kind = NULL,
               *vae_path = NULL, *wtype_s = "f32";
    long steps = 25, frames = 0, height = 0, width = 0, clip_skip = 0, chunk = 4, threads = 0;
    uint64_t seed = 0;
    double guidance = 9.0, fps = 0, strength = 0.6;
    int karras = 0, no_cascade = 0;
    const char *keep_stages = NULL;
    long sr_steps = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const kn_cli_opt opts[] = {
        {"--prompt", "-p", KN_OPT_STR, &prompt},
        {"--negative", "-n", KN_OPT_STR, &neg},
        {"--negative-prompt", NULL, KN_OPT_STR, &neg},
        {"--model", "-m", KN_OPT_STR, &model},
        {"--output", "-o", KN_OPT_STR, &out},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--guidance", "-g", KN_OPT_FLOAT, &guidance, 0, 100},
        {"--cfg-scale", NULL, KN_OPT_FLOAT, &guidance, 0, 100},
        {"--frames", NULL, KN_OPT_INT, &frames, 1, 1024},
        {"--height", "-H", KN_OPT_INT, &height, 1, 8192},
        {"--width", "-W", KN_OPT_INT, &width, 1, 8192},
        {"--seed", "-s", KN_OPT_U64, &seed},
        {"--scheduler", NULL, KN_OPT_STR, &sched},
        {"--karras", NULL, KN_OPT_FLAG, &karras},
        {"--fps", NULL, KN_OPT_FLOAT, &fps, 0.01, 1000},
        {"--clip-skip", NULL, KN_OPT_INT, &clip_skip, 0, 64},
        {"--latents", NULL, KN_OPT_STR, &latents_path},
        {"--latents-tensor", NULL, KN_OPT_STR, &latents_name},
        {"--save-latents", NULL, KN_OPT_STR, &save_latents},
        {"--init-video", NULL, KN_OPT_STR, &init_video},
        {"--strength", NULL, KN_OPT_FLOAT, &strength, 0.0001, 1},
        {"--decode-chunk", NULL, KN_OPT_INT, &chunk, 0, 1 << 20},
        {"--variant", NULL, KN_OPT_STR, &variant},
        {"--vae", NULL, KN_OPT_STR, &vae_kind},
        {"--vae-path", NULL, KN_OPT_STR, &vae_path},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {"--no-cascade", NULL, KN_OPT_FLAG, &no_cascade},
        {"--keep-stages", NULL, KN_OPT_STR, &keep_stages},
        {"--sr-steps", NULL, KN_OPT_INT, &sr_steps, 1, KN_SCHED_MAX_STEPS},
        {"--weights-type", NULL, KN_OPT_STR, &wtype_s},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("generate", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 1, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (npos && prompt)
        return kn_cli_error("generate: give the prompt once (positional or -p)");
    if (npos)
        prompt = pos[0];
    if (!prompt)
        return kn_cli_error("generate: no prompt given (kinema generate \"a small red circle moving left\")");
    char bundled[2048];
    if (!(model = kn_cli_model_path("generate", model, bundled, sizeof bundled)))
        return 1;
    int vk = 0; /* 0: the model's VAE, 1: TAESD, 2: TAEHV */
    if (vae_kind) {
        if (!strcmp(vae_kind, "taesd")) vk = 1;
        else if (!strcmp(vae_kind, "taehv")) vk = 2;
        else if (strcmp(vae_kind, "vae")) return kn_cli_error("generate: --vae must be taesd, taehv or vae, got '%s'", vae_kind);
        if (vk && !vae_path) return kn_cli_error("generate: --vae %s needs --vae-path FILE|DIR", vae_kind);
    }
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    kn_wtype wtype;
    if (kn_wtype_parse(wtype_s, &wtype) != KN_OK)
        return kn_cli_error("generate: --weights-type: %s", kn_last_error());
    kn_t2v_bundle b;
    double t0 = now();
    if (kn_t2v_load(model, variant, &b) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    int rc = 1;
    void *lowp[3] = {NULL, NULL, NULL}; /* the UNets' converted weights */
    if (wtype != KN_WT_F32) {
        kn_unet3d *us[3] = {b.m.unet, b.tsr, b.ssr};
        size_t lb = 0;
        for (int i = 0; i < 3; i++) {
            size_t bytes = 0;
            if (us[i] && kn_params_to_lowp(&us[i]->P, wtype, &lowp[i], NULL, &bytes) != KN_OK) {
                kn_cli_error("%s", kn_last_error());
                for (int j = 0; j < i; j++)
                    kn_aligned_free(lowp[j]);
                kn_t2v_unload(&b);
                return 1;
            }
            lb += bytes;
        }
        fprintf(stderr, "UNet weights as %s: %.1f MiB\n", wtype_s, lb / 1048576.0);
    }
    kn_taesd *tsd = NULL;
    kn_taehv *thv = NULL;
    float *emb = NULL, *lat0 = NULL, *vlat = NULL, *latents = NULL, *video = NULL;
    uint8_t *rgb = NULL;
    kn_arena *A = NULL;
    int casc = !no_cascade && (b.tsr || b.ssr); /* run the SR stages after the base */
    if (casc && vk) {
        kn_cli_error("generate: --vae %s decodes only a single stage; add --no-cascade to this cascade model", vae_kind);
        goto done;
    }
    if (sr_steps > 0 && !casc) {
        kn_cli_error("generate: --sr-steps needs a cascade run (%s)",
                     no_cascade ? "--no-cascade was given" : "this model has no tsr/ or ssr/ stage");
        goto done;
    }
    if (sr_steps > 0)
        b.cascade.tsr_steps = b.cascade.ssr_steps = (int)sr_steps;
    if (keep_stages && !casc) {
        kn_cli_error("generate: --keep-stages needs a cascade run (%s)",
                     no_cascade ? "--no-cascade was given" : "this model has no tsr/ or ssr/ stage");
        goto done;
    }
    if (keep_stages && mkdir(keep_stages, 0755) != 0 && errno != EEXIST) {
        kn_cli_error("generate: %s: cannot create: %s", keep_stages, strerror(errno));
        goto done;
    }
    if (sched) {
        int k = kn_sched_kind_parse(sched);
        if (k < 0) {
            kn_cli_error("generate: unknown scheduler '%s' (ddim, ddpm, euler, euler_a, dpmpp_2m)", sched);
            goto done;
        }
        if (k != (int)b.m.sched_kind && (k == KN_SCHED_EULER || k == KN_SCHED_EULER_A || k == KN_SCHED_DPMPP_2M))
            b.m.sched.timestep_spacing = KN_SPACING_LINSPACE; /* those classes' default, as from_config gives */
        b.m.sched_kind = (kn_sched_kind)k;
    }
    b.m.sched.use_karras_sigmas = karras;
    if (vk == 1) {
        /* a TAESD decoder file, or the *decoder* file of a folder */
        char p[1200];
        struct stat sb;
        if (stat(vae_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(vae_path);
            struct dirent *e;
            p[0] = 0;
            while (d && (e = readdir(d)))
                if (strstr(e->d_name, "decoder") && strstr(e->d_name, ".safetensors"))
                    snprintf(p, sizeof p, "%s/%s", vae_path, e->d_name);
            if (d) closedir(d);
            if (!p[0]) {
                kn_cli_error("generate: %s holds no *decoder*.safetensors", vae_path);
                goto done;
            }
        } else {
            snprintf(p, sizeof p, "%s", vae_path);
        }
        if (!(tsd = kn_taesd_load(NULL, p))) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
    } else if (vk == 2 && !(thv = kn_taehv_load(vae_path))) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    if ((tsd && tsd->cfg.latent_channels != b.m.unet->cfg.out_channels) ||
        (thv && thv->cfg.latent_channels != b.m.unet->cfg.out_channels)) {
        kn_cli_error("generate: the %s decoder takes %lld latent channels, this model makes %d", vae_kind,
                     (long long)(tsd ? tsd->cfg.latent_channels : thv->cfg.latent_channels), b.m.unet->cfg.out_channels);
        goto done;
    }
    fprintf(stderr, "loaded %s in %.1f s (%.0f MiB of weights, %.0f MiB of them used in place from the files)\n",
            model, now() - t0, b.weight_bytes / 1048576.0, b.mapped_bytes / 1048576.0);

    kn_t2v_params par = kn_t2v_params_default();
    par.steps = (int)steps;
    par.guidance_scale = (float)guidance;
    par.frames = frames > 0 ? (int)frames : b.frames > 0 ? b.frames : 16;
    if (fps <= 0)
        fps = b.fps > 0 ? b.fps : 8.0;
    {
        /* diffusers' default: unet.config.sample_size * vae_scale_factor */
        int fct = 1 << (b.m.vae->cfg.nblocks - 1), def = b.m.unet->cfg.sample_size > 0 ? b.m.unet->cfg.sample_size * fct : 256;
        par.height = height > 0 ? (int)height : def;
        par.width = width > 0 ? (int)width : def;
    }
    par.seed = seed;
    par.clip_skip = (int)clip_skip;
    par.decode_chunk = (int)chunk;
    int f = 1 << (b.m.vae->cfg.nblocks - 1);
    int64_t C = b.m.unet->cfg.in_channels;
    if (latents_path) {
        kn_safetensors *ls = kn_st_open(latents_path);
        if (!ls) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        const char *name = latents_name ? latents_name : kn_st_find(ls, "latents") >= 0 ? "latents" : kn_st_name(ls, 0);
        kn_tensor lt;
        if (!name || kn_st_get_f32(ls, name, NULL, &lt) != KN_OK) {
            kn_cli_error("%s", name ? kn_last_error() : "latents file holds no tensor");
            kn_st_close(ls);
            goto done;
        }
        kn_st_close(ls);
        if (lt.ndim != 5 || lt.shape[0] != 1 || lt.shape[1] != C) {
            char s[96];
            kn_cli_error("%s: latents %s must be (1, %lld, F, h, w)", latents_path, kn_shape_str(&lt, s, sizeof s),
                         (long long)C);
            kn_tensor_free(&lt);
            goto done;
        }
        par.frames = (int)lt.shape[2];
        par.height = (int)lt.shape[3] * f;
        par.width = (int)lt.shape[4] * f;
        lat0 = lt.data;
        par.init_latents = lat0;
    }
    if (par.height % f || par.width % f) {
        kn_cli_error("generate: --height and --width must be multiples of %d, got %dx%d", f, par.width, par.height);
        goto done;
    }
    size_t est = kn_t2v_estimate_bytes(&b.m, &par), avail = kn_mem_available();
    if (casc) {
        size_t ce = cascade_estimate(&b, &par);
        est = ce > est ? ce : est;
    }
    fprintf(stderr, "memory: %.0f MiB of weights + about %.0f MiB of activations (%.0f MiB available)\n",
            b.weight_bytes / 1048576.0, est / 1048576.0, avail / 1048576.0);
    if (avail && est > avail) {
        kn_cli_error("generate: this run needs about %.0f MiB but %.0f MiB are available; lower --frames, "
                     "--height/--width or --decode-chunk", est / 1048576.0, avail / 1048576.0);
        goto done;
    }
    int64_t h = par.height / f, w = par.width / f, F = par.frames, L = 77, D = b.m.text->cfg.hidden_size;
    if (b.m.text->cfg.max_position_embeddings < L)
        L = b.m.text->cfg.max_position_embeddings;
    /* prompts -> ids -> embeddings ([prompt, negative]) */
    int32_t *ids = malloc((size_t)(2 * L) * sizeof(int32_t));
    emb = malloc((size_t)(2 * L * D) * sizeof(float));
    if (!ids || !emb) {
        free(ids);
        kn_cli_error("generate: out of memory");
        goto done;
    }
    if (kn_tokenize_padded(b.tok, prompt, ids, (int)L, b.pad_id, NULL, NULL) != KN_OK ||
        kn_tokenize_padded(b.tok, neg, ids + L, (int)L, b.pad_id, NULL, NULL) != KN_OK ||
        kn_t2v_encode_text(&b.m, ids, 2, L, par.clip_skip, emb) != KN_OK) {
        free(ids);
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    free(ids);
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!A) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    int64_t Fmax = vk == 2 ? 4 * F : F; /* TAEHV makes 4F-3 frames */
    int64_t smax = 1; /* the cascade's final size: Fmax frames, smax times the side */
    for (int i = 0; casc && b.tsr && i < b.cascade.tsr_times; i++)
        Fmax *= b.cascade.tsr_factor;
    if (casc && b.ssr)
        smax = b.cascade.ssr_scale;
    latents = malloc((size_t)(C * Fmax * h * w * smax * smax) * sizeof(float));
    video = malloc((size_t)(3 * Fmax * par.height * par.width * smax * smax) * sizeof(float));
    rgb = malloc((size_t)(3 * Fmax * par.height * par.width * smax * smax));
    if (!latents || !video || !rgb) {
        kn_cli_error("generate: out of memory for a %lldx%dx%d video", (long long)F, par.width, par.height);
        goto done;
    }
    if (init_video) {
        kn_video in;
        kn_video_read_opts ro = kn_video_read_default_opts();
        ro.width = par.width;
        ro.height = par.height;
        if (kn_video_read(init_video, &ro, &in) != KN_OK) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        if (in.frames < par.frames)
            par.frames = in.frames, F = in.frames;
        in.frames = (int)F; /* keep the first F frames: (T, H, W, 3) is contiguous in time */
        kn_tensor vt = {0};
        kn_status st = kn_video_to_tensor(NULL, &in, 1, &vt);
        kn_video_free(&in);
        vlat = malloc((size_t)(C * F * h * w) * sizeof(float));
        if (st != KN_OK || !vlat ||
            kn_t2v_encode_video(&b.m, A, vt.data, F, par.height, par.width, (int)chunk, vlat) != KN_OK) {
            kn_tensor_free(&vt);
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        /* the clip may have more frames than asked: keep the first F (contiguous per channel) */
        kn_tensor_free(&vt);
        par.init_video_latents = vlat;
        par.strength = (float)strength;
    }
    progress pr = {now()};
    par.on_step = on_step;
    par.user = &pr;
    par.fps = (float)fps;
    if (kn_t2v_run(&b.m, A, emb, emb + L * D, L, &par, latents, vk || (casc && !keep_stages) ? NULL : video) != KN_OK ||
        (vk == 1 && kn_t2v_decode_taesd(tsd, A, latents, C, F, h, w, (int)chunk, video) != KN_OK) ||
        (vk == 2 && kn_t2v_decode_taehv(thv, A, latents, C, F, h, w, video, &F) != KN_OK)) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    if (casc) {
        fprintf(stderr, "stage 0 base: %lld frames %dx%d at %g fps in %.1f s\n", (long long)F, par.width, par.height,
                fps, now() - pr.t0);
        if (keep_stages && write_stage(&b, A, keep_stages, 0, "base", latents, F, h, w, (int)chunk, fps, video, rgb, 1))
            goto done;
        if (run_cascade(&b, A, emb, emb + L * D, L, seed, keep_stages, (int)chunk, latents, &F, &h, &w, &fps, video,
                        rgb))
            goto done;
        par.height = (int)(h * f);
        par.width = (int)(w * f);
    }
    double gen_s = now() - pr.t0;
    if (save_latents && write_latents(save_latents, latents, (int64_t[]){1, C, F, h, w}))
        goto done;
    kn_video_to_rgb8(video, F, par.height, par.width, rgb);
    kn_video v = {(int)F, par.height, par.width, fps, rgb};
    if (kn_video_write(out, &v, NULL) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    fprintf(stderr, "wrote %s: %lld frames %dx%d at %g fps in %.1f s%s (peak RSS %.0f MiB)\n", out, (long long)F,
            par.width, par.height, fps, gen_s, casc ? " (total of the stages)" : "", kn_peak_rss() / 1048576.0);
    rc = 0;
done:
    free(emb);
    free(lat0);
    free(vlat);
    free(latents);
    free(video);
    free(rgb);
    kn_arena_free(A);
    kn_taesd_free(tsd);
    kn_taehv_free(thv);
    kn_t2v_unload(&b);
    for (int i = 0; i < 3; i++)
        kn_aligned_free(lowp[i]);
    return rc;
}

KN_CLI_COMMAND(generate, "generate", "generate a video from a text prompt", cmd_generate)
