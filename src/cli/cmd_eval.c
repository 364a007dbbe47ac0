/* cmd_eval.c — `kinema eval`: text-video alignment of a model on Shapes-T2V (../shared/SHAPES.md).
 *
 *   kinema eval --model DIR [--split random|heldout|two|all] [--n N] [--seeds K] [--steps S]
 *               [--guidance G] [--frames F] [--size PX] [--fps FPS] [--json OUT] [--save-dir DIR]
 *   kinema eval --reference [...]      the same scoring on clips rendered by the dataset renderer
 *   kinema eval --stage tsr|ssr --model DIR [--n N] [--size PX] [--frames F] [--json OUT]
 *               [--diff-video FILE]        the cascade's super-resolution stages (see eval_stage)
 *   kinema eval --fps-check 4,8 (--model DIR | --reference) [--n N] [--seeds K] [--json OUT]
 *                                          frame-rate conditioning (see eval_fps_check)
 *
 * For each split, captions 0..N-1 of the split's stream (kn_shapes_sample with --caption-seed)
 * are generated with noise seeds 0..K-1 (so `kinema generate -p CAPTION -s k` with the same
 * settings reproduces one clip), and every clip is scored by kn_shapes_score_clip at the clip's
 * own resolution and fps: the scorer states its thresholds at 128x128 / 16 fps and scales them
 * to (H, W, fps), so it is given the true clip size and the fps the frames were sampled at (a
 * divisor of 16: frame t is the 16 fps trajectory's frame t*16/fps). With --reference the clip of
 * (caption, seed k) is kn_shapes_render's, which must score 100 % (a check of the scorer itself).
 *
 * Reported per split and overall:
 *   exact    fraction of clips where every stated attribute of every object is right
 *   colour, shape, motion   fraction of caption objects with that attribute right
 *   size     fraction of objects *whose caption states a size* with the size right (objects with
 *            no size word are always "right" for the scorer, so they are left out here)
 *   present  fraction of objects found in >= 90 % of frames
 *   flicker  mean background flicker over clips (0..255 units)
 *   area_cv  mean area coefficient of variation over objects that were found in some frame
 *            (n/a / null when none was)
 *   ref_exact  (model runs) exact-match of the renderer's clips of the same captions and seeds at
 *            the same size / frames / fps: the bound the scorer allows there (0.95 at 32x32) */
#include "cli/cli.h"
#include "core/core.h"
#include "io/t2v_load.h"
#include "io/video.h"
#include "train/fps_check.h"
#include "train/shapes.h"
#include "train/stage_eval.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EVAL_DEFAULT_CAPTION_SEED 7001 /* fixed: every eval of every model sees the same captions */
#define FPS_CHECK_MAX 4     /* --fps-check: at most this many fps values */
#define FPS_CHECK_FRAMES 8  /* --fps-check frames when the model records none (the bundled base's 8) */

static void usage(FILE *f) {
    fprintf(f,
            "usage: kinema eval --model DIR [options]\n"
            "       kinema eval --reference [options]\n"
            "Scores generated clips against their Shapes-T2V captions (see SHAPES.md): exact-match and\n"
            "per-attribute accuracy, background flicker and object area stability, per split.\n"
            "  -m, --model DIR         diffusers text-to-video folder to evaluate\n"
            "      --reference         score clips rendered by the dataset renderer instead (upper bound;\n"
            "                          must give 1.000)\n"
            "      --split NAME        random, heldout, two or all (default all)\n"
            "      --n N               captions per split (default 20)\n"
            "      --seeds K           noise seeds per caption, 0..K-1 (default 1)\n"
            "      --caption-seed S    caption stream seed (default %d)\n"
            "      --steps S           denoising steps (default 25)\n"
            "  -g, --guidance G        classifier-free guidance scale (default 9)\n"
            "  -n, --negative TEXT     negative prompt (default \"\")\n"
            "      --scheduler NAME    ddim, ddpm, euler, euler_a, dpmpp_2m (default: the model's)\n"
            "      --size PX           clip side (default: the model's output size; 64 with --reference)\n"
            "      --fps FPS           16, 8, 4, 2 or 1: the clip's frame rate (default: the model's, else 8)\n"
            "      --frames F          frames per clip (default 2 s: 2 x fps)\n"
            "      --no-cascade        score a cascade model's base stage alone\n"
            "  A cascade model's clips are its final output (base -> TSR -> SSR): --size, --frames and --fps\n"
            "  then describe the final clip, and the base runs at them divided by the SR factors.\n"
            "      --json FILE         also write the numbers (and every clip's score) as JSON\n"
            "      --save-dir DIR      write each clip as DIR/SPLIT_INDEX_SEED.sheet.png\n"
            "  -t, --threads N         threads (default: all cores); results do not depend on it\n"
            "      --stage tsr|ssr     evaluate a cascade's SR stage instead (kinema eval --stage tsr --help)\n"
            "      --fps-check LIST    frame-rate conditioning instead: LIST of up to %d fps (e.g. 4,8); the first\n"
            "                          --n straight-motion captions, each generated by the base model alone at\n"
            "                          every fps with the same seeds (model's size and frames), and the\n"
            "                          renderer's clips beside them: mean centroid displacement per frame of\n"
            "                          the captioned object, clips found, ratio to the highest fps (4 vs 8: ~2);\n"
            "                          --save-dir then writes DIR/fpsFPS_INDEX_SEED.sheet.png (model clips)\n",
            EVAL_DEFAULT_CAPTION_SEED, FPS_CHECK_MAX);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ tallies */

typedef struct {
    int clips, exact;
    int objects, present, colour, shape, motion;
    int sized, size; /* objects whose caption states a size; of them, right */
    double flicker_sum;
    int cv_n;
    double cv_sum;
} tally;

static void tally_add(tally *t, const kn_shapes_caption *cap, const kn_shapes_score *sc) {
    t->clips++;
    t->exact += sc->exact;
    t->flicker_sum += sc->flicker;
    for (int o = 0; o < cap->n; o++) {
        const kn_shapes_object_score *r = &sc->obj[o];
        t->objects++;
        t->present += r->present;
        t->colour += r->colour_ok;
        t->shape += r->shape_ok;
        t->motion += r->motion_ok;
        if (cap->obj[o].size != KN_SIZE_UNSPECIFIED) {
            t->sized++;
            t->size += r->size_ok;
        }
        if (r->presence > 0) {
            t->cv_n++;
            t->cv_sum += r->area_cv;
        }
    }
}

static void tally_merge(tally *a, const tally *b) {
    a->clips += b->clips, a->exact += b->exact, a->objects += b->objects, a->present += b->present;
    a->colour += b->colour, a->shape += b->shape, a->motion += b->motion, a->sized += b->sized;
    a->size += b->size, a->flicker_sum += b->flicker_sum, a->cv_n += b->cv_n, a->cv_sum += b->cv_sum;
}

static double frac(int k, int n) { return n ? (double)k / n : NAN; }

/* the reported numbers of a tally, in table / JSON order */
enum { M_EXACT, M_COLOUR, M_SHAPE, M_SIZE, M_MOTION, M_PRESENT, M_FLICKER, M_AREA_CV, M_COUNT };
static const char *const metric_names[M_COUNT] = {"exact",  "colour",  "shape",   "size",
                                                  "motion", "present", "flicker", "area_cv"};

static void tally_metrics(const tally *t, double m[M_COUNT]) {
    m[M_EXACT] = frac(t->exact, t->clips);
    m[M_COLOUR] = frac(t->colour, t->objects);
    m[M_SHAPE] = frac(t->shape, t->objects);
    m[M_SIZE] = frac(t->size, t->sized);
    m[M_MOTION] = frac(t->motion, t->objects);
    m[M_PRESENT] = frac(t->present, t->objects);
    m[M_FLICKER] = t->clips ? t->flicker_sum / t->clips : NAN;
    m[M_AREA_CV] = t->cv_n ? t->cv_sum / t->cv_n : NAN;
}

/* bound: the renderer's clips of the same captions and seeds (NULL with --reference) */
static void print_row(const char *name, const tally *t, const tally *bound) {
    double m[M_COUNT];
    tally_metrics(t, m);
    printf("%-8s %6d", name, t->clips);
    for (int k = 0; k < M_COUNT; k++) {
        if (isnan(m[k]))
            printf(" %8s", "n/a");
        else
            printf(" %8.3f", m[k]);
    }
    if (bound)
        printf(" %9.3f", frac(bound->exact, bound->clips));
    printf("\n");
}

static cJSON *tally_json(const tally *t, const tally *bound) {
    double m[M_COUNT];
    tally_metrics(t, m);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "clips", t->clips);
    cJSON_AddNumberToObject(o, "objects", t->objects);
    cJSON_AddNumberToObject(o, "sized_objects", t->sized);
    for (int k = 0; k < M_COUNT; k++) {
        if (isnan(m[k]))
            cJSON_AddNullToObject(o, metric_names[k]);
        else
            cJSON_AddNumberToObject(o, metric_names[k], m[k]);
    }
    if (bound)
        cJSON_AddNumberToObject(o, "reference_exact", frac(bound->exact, bound->clips));
    return o;
}

/* --json FILE is written as FILE.tmp, opened before the work (a bad path fails early), and
 * renamed into place by json_finish: an interrupted or failed run leaves no FILE. */
static FILE *json_open(const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    return fopen(tmp, "w");
}

static void json_discard(FILE **jf, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (*jf)
        fclose(*jf);
    *jf = NULL;
    remove(tmp);
}

/* Writes js to jf (from json_open(path)), closes it and renames it to path; on failure removes
 * the temporary file. Returns 0, or 1 with the error printed. */
static int json_finish(const cJSON *js, FILE **jf, const char *path) {
    char *text = cJSON_Print(js);
    errno = 0;
    int ok = text && fputs(text, *jf) >= 0 && fputc('\n', *jf) != EOF;
    free(text);
    if (fclose(*jf) != 0)
        ok = 0;
    *jf = NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        kn_cli_error("eval: cannot write --json %s: %s", path, errno ? strerror(errno) : "out of memory");
        remove(tmp);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ clip sources */

typedef struct {
    int reference;
    int size, frames, fps;
    /* generation */
    kn_t2v_bundle b;
    int loaded;
    kn_arena *A;
    kn_t2v_params par;
    int64_t L, D;
    int32_t *ids;      /* (2, L) */
    float *emb;        /* (2, L, D): [prompt, negative] */
    float *video;      /* (1, 3, F, H, W) */
    const char *negative;
    /* a cascade: the base makes base latents (lat), the SR stages the final ones */
    int cascade, no_cascade;
    int frames_from_model; /* --fps-check: no --frames takes the model's recorded frame count */
    int64_t C, base_h, base_f;
    float *lat;
} clip_maker;

/* Encodes [prompt, negative] for the clips of one caption (generation only). */
static kn_status maker_set_prompt(clip_maker *mk, const char *prompt) {
    if (mk->reference)
        return KN_OK;
    KN_TRY(kn_tokenize_padded(mk->b.tok, prompt, mk->ids, (int)mk->L, mk->b.pad_id, NULL, NULL));
    KN_TRY(kn_tokenize_padded(mk->b.tok, mk->negative, mk->ids + mk->L, (int)mk->L, mk->b.pad_id, NULL, NULL));
    return kn_t2v_encode_text(&mk->b.m, mk->ids, 2, mk->L, mk->par.clip_skip, mk->emb);
}

/* One clip (T, H, W, 3) RGB8 of cap with seed into rgb. */
static kn_status maker_clip(clip_maker *mk, const kn_shapes_caption *cap, uint64_t seed, uint8_t *rgb) {
    if (mk->reference) {
        kn_shapes_render_params p = {mk->size, mk->frames, mk->fps};
        return kn_shapes_render(cap, seed, &p, rgb, NULL);
    }
    mk->par.seed = seed;
    size_t mark = kn_arena_mark(mk->A);
    kn_status st;
    if (mk->cascade) {
        const float *pos = mk->emb, *neg = mk->emb + mk->L * mk->D;
        int64_t F = mk->base_f, h = mk->base_h, w = mk->base_h;
        double fps = mk->par.fps;
        st = kn_t2v_run(&mk->b.m, mk->A, pos, neg, mk->L, &mk->par, mk->lat, NULL);
        if (st == KN_OK)
            st = kn_cascade_run(mk->b.tsr, mk->b.ssr, &mk->b.cascade, &mk->b.m.sched, mk->b.m.sched_kind, mk->A, pos,
                                neg, mk->L, seed, mk->lat, mk->C, &F, &h, &w, &fps, NULL, NULL);
        if (st == KN_OK)
            st = kn_t2v_decode(&mk->b.m, mk->A, mk->lat, F, h, w, 4, mk->video);
    } else {
        st = kn_t2v_run(&mk->b.m, mk->A, mk->emb, mk->emb + mk->L * mk->D, mk->L, &mk->par, NULL, mk->video);
    }
    kn_arena_reset(mk->A, mark);
    if (st != KN_OK)
        return st;
    kn_video_to_rgb8(mk->video, mk->frames, mk->size, mk->size, rgb);
    return KN_OK;
}

static void maker_free(clip_maker *mk) {
    free(mk->ids);
    free(mk->emb);
    free(mk->video);
    free(mk->lat);
    kn_arena_free(mk->A);
    if (mk->loaded)
        kn_t2v_unload(&mk->b);
}

/* Loads the model and sizes the buffers; *size == 0 takes the model's default side. */
static int maker_load(clip_maker *mk, const char *model, const char *sched, double guidance, long steps, long size_opt) {
    if (kn_t2v_load(model, NULL, &mk->b) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    mk->loaded = 1;
    if (sched) {
        int k = kn_sched_kind_parse(sched);
        if (k < 0)
            return kn_cli_error("eval: unknown scheduler '%s' (ddim, ddpm, euler, euler_a, dpmpp_2m)", sched);
        if (k != (int)mk->b.m.sched_kind && (k == KN_SCHED_EULER || k == KN_SCHED_EULER_A || k == KN_SCHED_DPMPP_2M))
            mk->b.m.sched.timestep_spacing = KN_SPACING_LINSPACE; /* as `kinema generate` does */
        mk->b.m.sched_kind = (kn_sched_kind)k;
    }
    int f = 1 << (mk->b.m.vae->cfg.nblocks - 1);
    const kn_cascade_info *ci = &mk->b.cascade;
    mk->cascade = (mk->b.tsr || mk->b.ssr) && !mk->no_cascade;
    int ft = 1, sc = mk->cascade && mk->b.ssr ? ci->ssr_scale : 1; /* the SR factors in time and space */
    for (int i = 0; mk->cascade && mk->b.tsr && i < ci->tsr_times; i++)
        ft *= ci->tsr_factor;
    if (mk->fps <= 0)
        mk->fps = mk->b.fps > 0 ? (int)lround(mk->b.fps * ft) : 8;
    if (mk->fps < 1 || KN_SHAPES_NATIVE_FPS % mk->fps)
        return kn_cli_error("eval: the clip's fps %d does not divide 16 (give --fps 16, 8, 4, 2 or 1)", mk->fps);
    if (mk->frames <= 0 && mk->frames_from_model)
        mk->frames = mk->b.frames > 0 ? mk->b.frames : FPS_CHECK_FRAMES;
    if (mk->frames <= 0)
        mk->frames = 2 * mk->fps; /* two seconds, as the native 32 frames at 16 fps */
    if (size_opt <= 0)
        size_opt = (mk->b.m.unet->cfg.sample_size > 0 ? (long)mk->b.m.unet->cfg.sample_size * f : 64) * sc;
    if (size_opt % (f * sc))
        return kn_cli_error("eval: --size must be a multiple of %d (the VAE factor x the SR scale), got %ld", f * sc,
                            size_opt);
    if (mk->frames % ft || mk->fps % ft)
        return kn_cli_error("eval: --frames %d and --fps %d must be multiples of the cascade's frame factor %d",
                            mk->frames, mk->fps, ft);
    mk->size = (int)size_opt;
    kn_t2v_params *p = &mk->par;
    *p = kn_t2v_params_default();
    p->steps = (int)steps;
    p->guidance_scale = (float)guidance;
    p->frames = mk->frames / ft;
    p->height = p->width = mk->size / sc;
    p->fps = (float)mk->fps / ft; /* the base's rate: its fps conditioning when it has one */
    mk->C = mk->b.m.unet->cfg.in_channels;
    mk->base_f = p->frames;
    mk->base_h = p->height / f;
    size_t est = kn_t2v_estimate_bytes(&mk->b.m, p), avail = kn_mem_available();
    if (avail && est > avail)
        return kn_cli_error("eval: one clip needs about %.0f MiB but %.0f MiB are available; lower --frames or --size",
                            est / 1048576.0, avail / 1048576.0);
    mk->L = 77;
    if (mk->b.m.text->cfg.max_position_embeddings < mk->L)
        mk->L = mk->b.m.text->cfg.max_position_embeddings;
    mk->D = mk->b.m.text->cfg.hidden_size;
    mk->ids = malloc((size_t)(2 * mk->L) * sizeof(int32_t));
    mk->emb = malloc((size_t)(2 * mk->L * mk->D) * sizeof(float));
    mk->video = malloc((size_t)3 * mk->frames * mk->size * mk->size * sizeof(float));
    mk->lat = malloc((size_t)mk->C * mk->frames * (mk->size / f) * (mk->size / f) * sizeof(float));
    if (!mk->lat)
        return kn_cli_error("eval: out of memory");
    /* the arena reserves address space; pages are touched only as far as a run goes */
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    mk->A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!mk->ids || !mk->emb || !mk->video || !mk->A)
        return kn_cli_error("eval: out of memory");
    return 0;
}

/* ------------------------------------------------------------ --stage tsr|ssr
 *
 * The super-resolution stages against the ground truth and the simple baselines (SHAPES.md,
 * "Temporal quality"). Clip i is caption i of the random split (--caption-seed) rendered with
 * seed i at --size px (128), --frames frames (32) at 16 fps: the truth T.
 *   tsr: truth = T area-downsampled by 2 (the base resolution, 64 px) at 16 fps; low = every k-th
 *        frame of it (k = the cascade's tsr factor, 2: 8 fps). The model: VAE encode of low,
 *        kn_cascade_interpolate by k (fps conditioning 16), VAE decode. Baseline: frame blending
 *        (k = 2; for k > 2, blending applied log2 k times). Both against the truth.
 *   ssr: truth = T; low = T area-downsampled by s (the cascade's ssr scale, 2). The model: VAE
 *        encode of low, kn_cascade_upscale with the cascade's chunk / same-noise / noise_aug (the
 *        video SR) and again with chunk 1 and independent noise per frame (the per-frame SR:
 *        Make-A-Video's flicker demonstration), VAE decode. Baselines: bilinear, bicubic (a = -0.5),
 *        Lanczos-3 upsampling of low.
 * Both also report vae_recon (truth encoded and decoded: what any latent stage can reach) and the
 * truth itself. Per method: mean PSNR over clips (dB, each clip over all frames and channels,
 * peak 255, capped at 100 dB so an exact clip does not make the mean infinite), mean background
 * flicker and mean object area CV (kn_shapes_score_clip at 16 fps) and the fraction of clips the
 * scorer finds exactly right. Noise: Philox stream --seed for every clip (the same seed for the
 * video and per-frame SR; only chunking and noise sharing differ). */

enum { SM_MAX = 8 };

typedef struct {
    const char *name;
    double psnr_sum, flicker_sum, cv_sum;
    int n, cv_n, exact;
} stage_row;

static void row_add(stage_row *r, const uint8_t *clip, const uint8_t *truth, int F, int H, int W,
                    const kn_shapes_caption *cap, double *psnr_out, kn_status *st) {
    if (*st != KN_OK)
        return;
    double p = kn_eval_psnr(clip, truth, (size_t)F * H * W * 3);
    if (!(p < 100.0))
        p = 100.0;
    kn_eval_temporal ts;
    *st = kn_eval_temporal_scores(clip, F, H, W, 16, cap, &ts);
    if (*st != KN_OK)
        return;
    r->n++;
    r->psnr_sum += p;
    r->flicker_sum += ts.flicker;
    r->exact += ts.exact;
    if (!isnan(ts.area_cv)) {
        r->cv_sum += ts.area_cv;
        r->cv_n++;
    }
    *psnr_out = p;
}

static void rgb8_to_video(const uint8_t *rgb, int F, int H, int W, float *v) { /* (F,H,W,3) -> (1,3,F,H,W) [-1,1] */
    const size_t hw = (size_t)H * W;
    for (int f = 0; f < F; f++)
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < hw; i++)
                v[((size_t)c * F + f) * hw + i] = rgb[((size_t)f * hw + i) * 3 + c] / 127.5f - 1.0f;
}

typedef struct {
    kn_t2v_bundle b;
    int loaded;
    kn_arena *A;
    int64_t L, D, C;
    int f; /* VAE factor */
    int32_t *ids;
    float *emb, *vid, *lat, *lat2;
} stage_ctx;

/* VAE round trip and the stage's own encode / decode: rgb (F,H,W,3) <-> latents (1,C,F,H/f,W/f) */
static kn_status st_encode(stage_ctx *c, const uint8_t *rgb, int F, int H, int W, float *lat) {
    rgb8_to_video(rgb, F, H, W, c->vid);
    size_t mark = kn_arena_mark(c->A);
    kn_status st = kn_t2v_encode_video(&c->b.m, c->A, c->vid, F, H, W, 4, lat);
    kn_arena_reset(c->A, mark);
    return st;
}

static kn_status st_decode(stage_ctx *c, const float *lat, int F, int H, int W, uint8_t *rgb) {
    size_t mark = kn_arena_mark(c->A);
    kn_status st = kn_t2v_decode(&c->b.m, c->A, lat, F, H / c->f, W / c->f, 4, c->vid);
    kn_arena_reset(c->A, mark);
    if (st == KN_OK)
        kn_video_to_rgb8(c->vid, F, H, W, rgb);
    return st;
}

static void stage_usage(FILE *f) {
    fprintf(f,
            "usage: kinema eval --stage tsr|ssr --model DIR [options]\n"
            "Evaluates a cascade's temporal (tsr) or spatial (ssr) super-resolution stage on Shapes-T2V\n"
            "ground truth: PSNR, background flicker and object area CV next to frame blending (tsr) or\n"
            "bilinear / bicubic / Lanczos-3 upsampling and per-frame SR (ssr).\n"
            "  -m, --model DIR         cascade model folder (with tsr/ or ssr/)\n"
            "      --n N               clips (random-split captions 0..N-1, default 4)\n"
            "      --caption-seed S    caption stream seed (default %d)\n"
            "      --seed K            noise seed of the stage sampler (default 0)\n"
            "      --size PX           ground-truth side (default 128; tsr runs at PX / 2)\n"
            "      --frames F          ground-truth frames at 16 fps (default 32)\n"
            "      --steps S           denoising steps (default: the cascade's)\n"
            "  -g, --guidance G        guidance scale (default: the cascade's)\n"
            "      --noise-aug L       ssr conditioning augmentation level (default: the cascade's)\n"
            "      --json FILE         also write the numbers as JSON\n"
            "      --diff-video FILE   ssr: per-frame vs video SR of the first clip with their frame-to-frame\n"
            "                          difference maps (x4) below, as a video (format from the extension)\n"
            "  -t, --threads N         threads (default: all cores)\n",
            EVAL_DEFAULT_CAPTION_SEED);
}

static int eval_stage(int argc, char **argv) {
    const char *model = NULL, *stage = NULL, *json_path = NULL, *diff_path = NULL, *neg = "";
    long n = 4, size = 128, frames = 32, steps = 0, threads = 0, noise_aug = -1;
    uint64_t caption_seed = EVAL_DEFAULT_CAPTION_SEED, seed = 0;
    double guidance = -1;
    const kn_cli_opt opts[] = {
        {"--stage", NULL, KN_OPT_STR, &stage},
        {"--model", "-m", KN_OPT_STR, &model},
        {"--n", NULL, KN_OPT_INT, &n, 1, 100000},
        {"--caption-seed", NULL, KN_OPT_U64, &caption_seed},
        {"--seed", NULL, KN_OPT_U64, &seed},
        {"--size", NULL, KN_OPT_INT, &size, 8, 1024},
        {"--frames", NULL, KN_OPT_INT, &frames, 2, KN_SHAPES_MAX_FRAMES},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--guidance", "-g", KN_OPT_FLOAT, &guidance, 0, 100},
        {"--negative", "-n", KN_OPT_STR, &neg},
        {"--noise-aug", NULL, KN_OPT_INT, &noise_aug, 0, 999},
        {"--json", NULL, KN_OPT_STR, &json_path},
        {"--diff-video", NULL, KN_OPT_STR, &diff_path},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("eval", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        stage_usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    int tsr;
    if (!strcmp(stage, "tsr"))
        tsr = 1;
    else if (!strcmp(stage, "ssr"))
        tsr = 0;
    else
        return kn_cli_error("eval: --stage must be tsr or ssr, got '%s'", stage);
    if (!model)
        return kn_cli_error("eval: --stage %s needs --model DIR (a cascade folder)", stage);
    if (diff_path && tsr)
        return kn_cli_error("eval: --diff-video is for --stage ssr (per-frame vs video SR)");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    stage_ctx c = {0};
    int rc = 1;
    uint8_t *buf = NULL;
    cJSON *js = NULL, *jclips = NULL;
    FILE *jf = NULL;
    if (kn_t2v_load(model, NULL, &c.b) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    c.loaded = 1;
    const kn_cascade_info *ci = &c.b.cascade;
    const kn_unet3d *net = tsr ? c.b.tsr : c.b.ssr;
    if (!net) {
        kn_cli_error("eval: %s has no %s stage (no %s/ folder and \"kinema\".\"cascade\".\"%s\" entry)", model, stage,
                     stage, stage);
        goto done;
    }
    const int k = tsr ? ci->tsr_factor : ci->ssr_scale; /* frame-rate factor / spatial scale */
    c.f = 1 << (c.b.m.vae->cfg.nblocks - 1);
    c.C = c.b.m.vae->cfg.latent_channels;
    /* the frames and pixels each stage sees: tsr at size/2 (the base resolution) */
    const int H = tsr ? (int)size / 2 : (int)size, F = (int)frames;
    const int lo_H = tsr ? H : H / k, lo_F = tsr ? (F + k - 1) / k : F;
    if (tsr && (k & (k - 1))) {
        kn_cli_error("eval: the tsr factor %d is not a power of 2 (frame blending doubles)", k);
        goto done;
    }
    if (size % 2 || H % c.f || (!tsr && (H % k || lo_H % c.f))) {
        kn_cli_error("eval: --size %ld does not fit the stage: the %s side %d must be a multiple of the VAE factor %d%s",
                     size, tsr ? "tsr" : "low-resolution", lo_H, c.f, tsr ? " (tsr runs at --size / 2)" : "");
        goto done;
    }
    if (tsr && F % k) {
        kn_cli_error("eval: --frames %d must be a multiple of the tsr factor %d", F, k);
        goto done;
    }
    kn_stage_params sp = kn_stage_params_default();
    kn_sched_config ssch = kn_cascade_stage_sched(ci, &c.b.m.sched, tsr);
    sp.steps = steps > 0 ? (int)steps : tsr ? ci->tsr_steps : ci->ssr_steps;
    sp.guidance_scale = guidance >= 0 ? (float)guidance : tsr ? ci->tsr_guidance : ci->ssr_guidance;
    sp.seed = seed;
    sp.sched_kind = c.b.m.sched_kind;
    sp.fps = 16.0f;
    if (!tsr) { /* the spatial stage's own settings */
        sp.noise_aug = noise_aug >= 0 ? (int)noise_aug : ci->ssr_noise_aug;
        sp.same_noise = ci->ssr_same_noise;
        sp.chunk = ci->ssr_chunk;
    } else if (noise_aug >= 0) {
        kn_cli_error("eval: --noise-aug is for --stage ssr");
        goto done;
    }

    c.L = KN_MIN(77, c.b.m.text->cfg.max_position_embeddings);
    c.D = c.b.m.text->cfg.hidden_size;
    const size_t nT = (size_t)F * H * H * 3, nlo = (size_t)lo_F * lo_H * lo_H * 3;
    const int64_t h = H / c.f;
    c.ids = malloc((size_t)(2 * c.L) * sizeof(int32_t));
    c.emb = malloc((size_t)(2 * c.L * c.D) * sizeof(float));
    c.vid = malloc((size_t)3 * F * H * H * sizeof(float) + (tsr ? 0 : 0));
    c.lat = malloc((size_t)c.C * F * h * h * sizeof(float));
    c.lat2 = malloc((size_t)c.C * F * h * h * sizeof(float));
    /* truth (at native size for tsr), truth, low, and up to SM_MAX method outputs */
    const size_t nnat = (size_t)F * size * size * 3;
    buf = malloc(nnat + nT + nlo + (size_t)SM_MAX * nT);
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    c.A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!c.ids || !c.emb || !c.vid || !c.lat || !c.lat2 || !buf || !c.A) {
        kn_cli_error("eval: out of memory for %d frames of %dx%d", F, H, H);
        goto done;
    }
    uint8_t *nat = buf, *truth = nat + nnat, *low = truth + nT, *outs = low + nlo;
    /* methods, in table order */
    enum { T_MODEL, T_BLEND, T_VAE, T_TRUTH, T_N };
    enum { S_BIL, S_BIC, S_LAN, S_VIDEO, S_FRAME, S_VAE, S_TRUTH, S_N };
    static const char *const tnames[T_N] = {"model", "blend", "vae_recon", "truth"};
    static const char *const snames[S_N] = {"bilinear", "bicubic", "lanczos3", "video_sr", "per_frame_sr",
                                            "vae_recon", "truth"};
    const int nm = tsr ? T_N : S_N;
    stage_row rows[SM_MAX] = {0};
    for (int m = 0; m < nm; m++)
        rows[m].name = tsr ? tnames[m] : snames[m];
    if (json_path) {
        js = cJSON_CreateObject();
        jclips = cJSON_CreateArray();
        jf = json_open(json_path);
        if (!js || !jclips || !jf) {
            kn_cli_error("eval: cannot write --json %s: %s", json_path, jf ? "out of memory" : strerror(errno));
            goto done;
        }
    }
    fprintf(stderr, "eval --stage %s: %ld clip(s), %s, %d steps, guidance %.2f\n", stage, n,
            tsr ? "frame interpolation" : "spatial upscaling", sp.steps, (double)sp.guidance_scale);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        kn_shapes_caption cap;
        char text[KN_SHAPES_CAPTION_MAX];
        kn_shapes_render_params rp = {(int)size, F, 16};
        kn_status st = kn_shapes_sample(KN_SPLIT_RANDOM, caption_seed, (uint64_t)i, &cap);
        if (st == KN_OK) st = kn_shapes_format(&cap, text, sizeof text);
        if (st == KN_OK) st = kn_shapes_render(&cap, (uint64_t)i, &rp, nat, NULL);
        if (st == KN_OK) st = kn_tokenize_padded(c.b.tok, text, c.ids, (int)c.L, c.b.pad_id, NULL, NULL);
        if (st == KN_OK) st = kn_tokenize_padded(c.b.tok, neg, c.ids + c.L, (int)c.L, c.b.pad_id, NULL, NULL);
        if (st == KN_OK) st = kn_t2v_encode_text(&c.b.m, c.ids, 2, c.L, 0, c.emb);
        const float *pe = c.emb, *ne = c.emb + c.L * c.D;
        double ps[SM_MAX] = {0};
        uint8_t *o[SM_MAX];
        for (int m = 0; m < nm; m++)
            o[m] = outs + (size_t)m * nT;
        if (tsr) {
            if (st == KN_OK) st = kn_eval_area_down(nat, F, (int)size, (int)size, 2, truth);
            if (st == KN_OK) st = kn_eval_subsample_frames(truth, F, H, H, k, low);
            /* model: encode the low-rate clip, interpolate, decode */
            if (st == KN_OK) st = st_encode(&c, low, lo_F, H, H, c.lat);
            if (st == KN_OK)
                st = kn_cascade_interpolate(net, &ssch, c.A, pe, ne, c.L, c.lat, c.C, lo_F, h, h, k, &sp, c.lat2);
            if (st == KN_OK) st = st_decode(&c, c.lat2, F, H, H, o[T_MODEL]);
            /* the input frames are kept as they were given, as `kinema interpolate` and frame
             * blending keep them: only the generated frames pass through the VAE */
            for (int j = 0; st == KN_OK && j < lo_F; j++)
                memcpy(o[T_MODEL] + (size_t)j * k * H * H * 3, low + (size_t)j * H * H * 3, (size_t)H * H * 3);
            /* blending, doubled log2 k times */
            if (st == KN_OK) {
                memcpy(o[T_BLEND], low, nlo);
                for (int g = lo_F; g < F && st == KN_OK; g *= 2) {
                    memcpy(o[T_VAE], o[T_BLEND], (size_t)g * H * H * 3); /* scratch */
                    st = kn_eval_blend_x2(o[T_VAE], g, H, H, o[T_BLEND]);
                }
            }
        } else {
            memcpy(truth, nat, nT);
            if (st == KN_OK) st = kn_eval_area_down(truth, F, H, H, k, low);
            for (int m = S_BIL; m <= S_LAN && st == KN_OK; m++)
                st = kn_eval_upsample_clip((kn_resample_kind)(m - S_BIL), low, F, lo_H, lo_H, k, o[m]);
            if (st == KN_OK) st = st_encode(&c, low, F, lo_H, lo_H, c.lat);
            if (st == KN_OK)
                st = kn_cascade_upscale(net, &ssch, c.A, pe, ne, c.L, c.lat, c.C, F, h / k, h / k, k, &sp, c.lat2);
            if (st == KN_OK) st = st_decode(&c, c.lat2, F, H, H, o[S_VIDEO]);
            kn_stage_params pf = sp;
            pf.chunk = 1;
            pf.same_noise = 0;
            if (st == KN_OK)
                st = kn_cascade_upscale(net, &ssch, c.A, pe, ne, c.L, c.lat, c.C, F, h / k, h / k, k, &pf, c.lat2);
            if (st == KN_OK) st = st_decode(&c, c.lat2, F, H, H, o[S_FRAME]);
            if (st == KN_OK && diff_path && i == 0) {
                const uint8_t *pan[2] = {o[S_FRAME], o[S_VIDEO]};
                uint8_t *panel = malloc(4 * nT);
                kn_video v = {F, 2 * H, 2 * H, 16.0, panel};
                st = panel ? kn_eval_flicker_panel(pan, 2, F, H, H, 4.0f, panel)
                           : kn_fail(KN_ERR_NOMEM, "eval: out of memory for --diff-video");
                if (st == KN_OK) st = kn_video_write(diff_path, &v, NULL);
                free(panel);
            }
        }
        int mv = tsr ? T_VAE : S_VAE, mt = tsr ? T_TRUTH : S_TRUTH;
        if (st == KN_OK) st = st_encode(&c, truth, F, H, H, c.lat);
        if (st == KN_OK) st = st_decode(&c, c.lat, F, H, H, o[mv]);
        if (st == KN_OK) memcpy(o[mt], truth, nT);
        for (int m = 0; m < nm; m++)
            row_add(&rows[m], o[m], truth, F, H, H, &cap, &ps[m], &st);
        if (st != KN_OK) {
            kn_cli_error("eval: clip %ld: %s", i, kn_last_error());
            goto done;
        }
        fprintf(stderr, "clip %-3ld %s %.2f dB vs %s %.2f dB  %s\n", i, rows[tsr ? T_MODEL : S_VIDEO].name,
                ps[tsr ? T_MODEL : S_VIDEO],
                tsr ? "blend" : "bicubic", ps[tsr ? T_BLEND : S_BIC], text);
        if (jclips) {
            cJSON *jc = cJSON_CreateObject();
            cJSON_AddStringToObject(jc, "caption", text);
            cJSON *jp = cJSON_AddObjectToObject(jc, "psnr");
            for (int m = 0; m < nm; m++)
                cJSON_AddNumberToObject(jp, rows[m].name, ps[m]);
            cJSON_AddItemToArray(jclips, jc);
        }
    }
    double secs = now() - t0;

    printf("stage %s: %ld clip(s) of %d frames at 16 fps, %dx%d; low: %d frames of %dx%d\n", stage, n, F, H, H, lo_F,
           lo_H, lo_H);
    printf("%-13s %8s %8s %8s %6s\n", "method", "psnr_db", "flicker", "area_cv", "exact");
    for (int m = 0; m < nm; m++) {
        const stage_row *rw = &rows[m];
        printf("%-13s %8.2f %8.3f ", rw->name, rw->psnr_sum / rw->n, rw->flicker_sum / rw->n);
        if (rw->cv_n)
            printf("%8.4f", rw->cv_sum / rw->cv_n);
        else
            printf("%8s", "n/a");
        printf(" %6.3f\n", (double)rw->exact / rw->n);
    }
    int best = tsr ? T_BLEND : S_BIL;
    if (!tsr)
        for (int m = S_BIC; m <= S_LAN; m++)
            if (rows[m].psnr_sum > rows[best].psnr_sum)
                best = m;
    int mm = tsr ? T_MODEL : S_VIDEO;
    printf("best baseline: %s %.2f dB; %s - best baseline: %+.2f dB\n", rows[best].name, rows[best].psnr_sum / n,
           rows[mm].name, (rows[mm].psnr_sum - rows[best].psnr_sum) / n);
    if (!tsr)
        printf("flicker: per-frame SR %.3f vs video SR %.3f\n", rows[S_FRAME].flicker_sum / n,
               rows[S_VIDEO].flicker_sum / n);
    fflush(stdout);
    fprintf(stderr, "%ld clip(s) in %.1f s\n", n, secs);

    if (js) {
        cJSON_AddStringToObject(js, "stage", stage);
        cJSON_AddStringToObject(js, "model", model);
        cJSON_AddNumberToObject(js, "n", (double)n);
        cJSON_AddNumberToObject(js, "caption_seed", (double)caption_seed);
        cJSON_AddNumberToObject(js, "seed", (double)seed);
        cJSON_AddNumberToObject(js, "size", H);
        cJSON_AddNumberToObject(js, "frames", F);
        cJSON_AddNumberToObject(js, "low_size", lo_H);
        cJSON_AddNumberToObject(js, "low_frames", lo_F);
        cJSON_AddNumberToObject(js, "factor", k);
        cJSON_AddNumberToObject(js, "steps", sp.steps);
        cJSON_AddNumberToObject(js, "guidance", sp.guidance_scale);
        cJSON *jm = cJSON_AddObjectToObject(js, "methods");
        for (int m = 0; m < nm && jm; m++) {
            cJSON *o = cJSON_AddObjectToObject(jm, rows[m].name);
            cJSON_AddNumberToObject(o, "psnr", rows[m].psnr_sum / rows[m].n);
            cJSON_AddNumberToObject(o, "flicker", rows[m].flicker_sum / rows[m].n);
            if (rows[m].cv_n)
                cJSON_AddNumberToObject(o, "area_cv", rows[m].cv_sum / rows[m].cv_n);
            else
                cJSON_AddNullToObject(o, "area_cv");
            cJSON_AddNumberToObject(o, "exact", (double)rows[m].exact / rows[m].n);
        }
        cJSON_AddStringToObject(js, "best_baseline", rows[best].name);
        cJSON_AddNumberToObject(js, "seconds", secs);
        cJSON_AddItemToObject(js, "clips", jclips);
        jclips = NULL;
        if (json_finish(js, &jf, json_path))
            goto done;
    }
    rc = 0;
done:
    if (jf)
        json_discard(&jf, json_path);
    cJSON_Delete(js);
    cJSON_Delete(jclips);
    free(buf);
    free(c.ids), free(c.emb), free(c.vid), free(c.lat), free(c.lat2);
    kn_arena_free(c.A);
    if (c.loaded)
        kn_t2v_unload(&c.b);
    return rc;
}

/* ------------------------------------------------------------------ command */

static int mkdir_p1(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? 0 : kn_cli_error("eval: --save-dir %s exists and is not a directory", dir);
    if (mkdir(dir, 0777) != 0)
        return kn_cli_error("eval: cannot create --save-dir %s: %s", dir, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------ --fps-check
 *
 * Frame-rate conditioning (Make-A-Video; SHAPES.md: "at 8 fps an object moves twice as far between
 * frames as at 16 fps"). Captions: the first N single-object captions of the random split's
 * stream (--caption-seed) whose motion is straight (moving left/right/up/down or diagonally; no
 * bounce, no still): kn_fps_captions. Each is generated with noise seeds 0..K-1, the same seed at
 * every fps of the list, by the base model alone (what --no-cascade gives: a cascade's TSR / SSR
 * are skipped) at the model's size and recorded frame count (--size / --frames override), with
 * the fps as its conditioning. The renderer's clips of the same (caption, seed) at the same size,
 * frames and fps are measured beside them: the ratio the dataset itself shows.
 *
 * Per clip (kn_fps_measure_clip, the scorer's centroid of the named colour): found (the scorer's
 * `present`), disp = mean |centroid(t+1) - centroid(t)| over frame pairs with the object in both
 * (px per frame at the generated resolution), speed = |fitted centroid slope| (px per frame; less
 * sensitive to jitter than disp), motion = the scorer's direction verdict. Per source and fps: the
 * means of disp and speed over the clips where the object was found, the number found, the
 * fraction with the right direction, and ratio = disp / disp at the highest fps of the list
 * (expected: highest fps / fps, so 2 for 4 vs 8); paired = the same ratio over only the clips
 * found at both rates (a model that finds the object at one rate and not at the other then
 * compares the same captions and seeds), with their number. */

typedef struct {
    int clips, found, motion, disp_n;
    double disp_sum, speed_sum;
    /* over the (caption, seed) clips found both at this fps and at the highest: their number and
     * the ratio of their disp sums (the same clips on both sides of the ratio) */
    int paired_n;
    double paired_ratio;
} fps_row;

static double fps_disp(const fps_row *r) { return r->disp_n ? r->disp_sum / r->disp_n : NAN; }
static double fps_speed(const fps_row *r) { return r->found ? r->speed_sum / r->found : NAN; }

static void fps_row_add(fps_row *r, const kn_fps_measure *m) {
    r->clips++;
    r->motion += m->motion_ok;
    if (!m->found)
        return;
    r->found++;
    r->speed_sum += m->speed;
    if (!isnan(m->disp))
        r->disp_sum += m->disp, r->disp_n++;
}

/* "4,8" -> distinct divisors of 16, ascending, at most FPS_CHECK_MAX. Returns 0, or 2 after a
 * one-line error (a bad list is a usage error). */
static int parse_fps_list(const char *s, int fps[FPS_CHECK_MAX], int *n) {
    *n = 0;
    for (const char *p = s;;) {
        if (*p < '0' || *p > '9') {
            kn_cli_error("eval: --fps-check '%s': expected a comma-separated list of frame rates (16, 8, 4, 2 or "
                         "1), e.g. 4,8", s);
            return 2;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || v < 1 || v > KN_SHAPES_NATIVE_FPS || KN_SHAPES_NATIVE_FPS % v) {
            kn_cli_error("eval: --fps-check '%s': %.*s is not a frame rate of the dataset (16, 8, 4, 2 or 1)", s,
                         (int)(end - p), p);
            return 2;
        }
        if (*n == FPS_CHECK_MAX) {
            kn_cli_error("eval: --fps-check '%s': at most %d frame rates", s, FPS_CHECK_MAX);
            return 2;
        }
        for (int k = 0; k < *n; k++)
            if (fps[k] == v) {
                kn_cli_error("eval: --fps-check '%s': %ld is given twice", s, v);
                return 2;
            }
        fps[(*n)++] = (int)v;
        if (!*end)
            break;
        if (*end != ',') {
            kn_cli_error("eval: --fps-check '%s': expected a comma-separated list of frame rates (16, 8, 4, 2 or "
                         "1), e.g. 4,8", s);
            return 2;
        }
        p = end + 1;
    }
    for (int i = 1; i < *n; i++) /* ascending */
        for (int k = i; k > 0 && fps[k - 1] > fps[k]; k--) {
            int t = fps[k];
            fps[k] = fps[k - 1], fps[k - 1] = t;
        }
    return 0;
}

typedef struct {
    const char *model, *sched, *neg, *json_path, *save_dir;
    int reference;
    long n, seeds, steps, frames, size;
    uint64_t caption_seed;
    double guidance;
    int fps[FPS_CHECK_MAX], nfps;
} fps_check_args;

static cJSON *fps_json_num(double v) { return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v); }

static cJSON *fps_rows_json(const fps_row *rows, const int *fps, int nfps) {
    cJSON *a = cJSON_CreateArray();
    double ref = fps_disp(&rows[nfps - 1]);
    for (int j = 0; j < nfps && a; j++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddNumberToObject(o, "fps", fps[j]);
        cJSON_AddNumberToObject(o, "clips", rows[j].clips);
        cJSON_AddNumberToObject(o, "found", rows[j].found);
        cJSON_AddItemToObject(o, "disp", fps_json_num(fps_disp(&rows[j])));
        cJSON_AddItemToObject(o, "speed", fps_json_num(fps_speed(&rows[j])));
        cJSON_AddItemToObject(o, "motion", fps_json_num(frac(rows[j].motion, rows[j].clips)));
        cJSON_AddItemToObject(o, "ratio", fps_json_num(fps_disp(&rows[j]) / ref));
        cJSON_AddNumberToObject(o, "paired_clips", rows[j].paired_n);
        cJSON_AddItemToObject(o, "paired_ratio", fps_json_num(rows[j].paired_ratio));
        cJSON_AddNumberToObject(o, "expected_ratio", (double)fps[nfps - 1] / fps[j]);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static void fps_print_row(const char *src, const fps_row *r, int fps, double ref_disp, int ref_fps) {
    double d = fps_disp(r), sp = fps_speed(r), m = frac(r->motion, r->clips), q = d / ref_disp;
    printf("%-9s %4d %6d %6d", src, fps, r->clips, r->found);
    if (isnan(d))
        printf(" %7s", "n/a");
    else
        printf(" %7.3f", d);
    if (isnan(sp))
        printf(" %7s", "n/a");
    else
        printf(" %7.3f", sp);
    printf(" %7.3f", m);
    if (isnan(q))
        printf(" %7s", "n/a");
    else
        printf(" %7.3f", q);
    if (isnan(r->paired_ratio))
        printf(" %7s", "n/a");
    else
        printf(" %7.3f", r->paired_ratio);
    printf(" %6d %9.3f\n", r->paired_n, (double)ref_fps / fps);
}

static int eval_fps_check(const fps_check_args *a) {
    const int nfps = a->nfps, *fps = a->fps, ref_fps = fps[nfps - 1];
    clip_maker mk = {.reference = a->reference, .frames = (int)a->frames, .fps = fps[0], .negative = a->neg,
                     .no_cascade = 1, .frames_from_model = 1};
    int rc = 1;
    uint8_t *rgb = NULL;
    kn_shapes_caption *caps = NULL;
    cJSON *js = NULL, *jclips = NULL;
    FILE *jf = NULL;
    fps_row rows[2][FPS_CHECK_MAX] = {{{0}}}; /* [model, renderer][fps] */
    const size_t nclips = (size_t)a->n * (size_t)a->seeds;
    double *cd = NULL; /* (2, nclips, nfps): each clip's disp, NAN when the object was not found */
    double t0 = now();
    if (a->reference) {
        if (a->sched) {
            kn_cli_error("eval: --scheduler needs --model");
            goto done;
        }
        mk.size = a->size > 0 ? (int)a->size : 64;
        mk.frames = a->frames > 0 ? (int)a->frames : FPS_CHECK_FRAMES;
    } else if (maker_load(&mk, a->model, a->sched, a->guidance, a->steps, a->size)) {
        goto done;
    }
    if (mk.frames < 2) {
        kn_cli_error("eval: --fps-check needs clips of at least 2 frames (got --frames %d)", mk.frames);
        goto done;
    }
    if (a->save_dir && mkdir_p1(a->save_dir))
        goto done;
    caps = malloc((size_t)a->n * sizeof *caps);
    rgb = malloc((size_t)mk.frames * mk.size * mk.size * 3);
    cd = malloc(2 * nclips * (size_t)nfps * sizeof *cd);
    if (!caps || !rgb || !cd) {
        kn_cli_error("eval: out of memory for %ld captions and a %dx%d clip of %d frames", a->n, mk.size, mk.size,
                     mk.frames);
        goto done;
    }
    for (size_t c = 0; c < 2 * nclips * (size_t)nfps; c++)
        cd[c] = NAN;
    if (kn_fps_captions(a->caption_seed, (int)a->n, caps) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    if (a->json_path) {
        if (!(jf = json_open(a->json_path))) {
            kn_cli_error("eval: cannot write --json %s: %s", a->json_path, strerror(errno));
            goto done;
        }
        js = cJSON_CreateObject();
        jclips = cJSON_CreateArray();
        if (!js || !jclips) {
            kn_cli_error("eval: out of memory");
            goto done;
        }
    }
    fprintf(stderr, "eval --fps-check %s: %ld caption(s) x %ld seed(s), %dx%d, %d frames at", a->reference ? "--reference" : a->model,
            a->n, a->seeds, mk.size, mk.size, mk.frames);
    for (int j = 0; j < nfps; j++)
        fprintf(stderr, "%s %d", j ? "," : "", fps[j]);
    fprintf(stderr, " fps");
    if (!a->reference) {
        fprintf(stderr, ", the base alone, %ld steps, guidance %g", a->steps, a->guidance);
        if (!mk.b.m.unet->cfg.fps_cond)
            fprintf(stderr, " (its UNet has no fps conditioning)");
    }
    fputc('\n', stderr);

    for (long i = 0; i < a->n; i++) {
        char text[KN_SHAPES_CAPTION_MAX];
        if (kn_shapes_format(&caps[i], text, sizeof text) != KN_OK || maker_set_prompt(&mk, text) != KN_OK) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        for (long k = 0; k < a->seeds; k++)
            for (int j = 0; j < nfps; j++)
                for (int src = a->reference ? 1 : 0; src < 2; src++) {
                    double tc = now();
                    kn_fps_measure m;
                    kn_status st;
                    if (src == 0) {
                        mk.fps = fps[j];
                        mk.par.fps = (float)fps[j];
                        st = maker_clip(&mk, &caps[i], (uint64_t)k, rgb);
                    } else {
                        kn_shapes_render_params rp = {mk.size, mk.frames, fps[j]};
                        st = kn_shapes_render(&caps[i], (uint64_t)k, &rp, rgb, NULL);
                    }
                    if (st == KN_OK)
                        st = kn_fps_measure_clip(rgb, mk.frames, mk.size, mk.size, fps[j], &caps[i], &m);
                    if (st != KN_OK) {
                        kn_cli_error("%s", kn_last_error());
                        goto done;
                    }
                    fps_row_add(&rows[src][j], &m);
                    cd[((size_t)src * nclips + (size_t)(i * a->seeds + k)) * nfps + j] = m.found ? m.disp : NAN;
                    const char *sname = src ? "renderer" : "model";
                    if (src == 0 && a->save_dir) {
                        char path[1200];
                        snprintf(path, sizeof path, "%s/fps%d_%ld_%ld.sheet.png", a->save_dir, fps[j], i, k);
                        kn_video v = {mk.frames, mk.size, mk.size, (double)fps[j], rgb};
                        if (kn_video_write_sheet(path, &v, 0) != KN_OK) {
                            kn_cli_error("%s", kn_last_error());
                            goto done;
                        }
                    }
                    char dtxt[32] = "-", stxt[32] = "-";
                    if (!isnan(m.disp))
                        snprintf(dtxt, sizeof dtxt, "%.3f", m.disp);
                    if (!isnan(m.speed))
                        snprintf(stxt, sizeof stxt, "%.3f", m.speed);
                    fprintf(stderr, "%4ld seed %-3ld %2d fps %-8s %s disp %6s speed %6s px/frame  %.1f s  %s\n", i, k,
                            fps[j], sname, m.found ? "found  " : "missing", dtxt, stxt, now() - tc, text);
                    if (jclips) {
                        cJSON *c = cJSON_CreateObject();
                        if (!c) {
                            kn_cli_error("eval: out of memory");
                            goto done;
                        }
                        cJSON_AddStringToObject(c, "source", sname);
                        cJSON_AddNumberToObject(c, "index", (double)i);
                        cJSON_AddNumberToObject(c, "seed", (double)k);
                        cJSON_AddNumberToObject(c, "fps", fps[j]);
                        cJSON_AddStringToObject(c, "caption", text);
                        cJSON_AddBoolToObject(c, "found", m.found);
                        cJSON_AddNumberToObject(c, "pairs", m.pairs);
                        cJSON_AddItemToObject(c, "disp", fps_json_num(m.disp));
                        cJSON_AddItemToObject(c, "speed", fps_json_num(m.speed));
                        cJSON_AddBoolToObject(c, "motion", m.motion_ok);
                        cJSON_AddItemToArray(jclips, c);
                    }
                }
    }
    double secs = now() - t0;
    for (int src = 0; src < 2; src++)
        for (int j = 0; j < nfps; j++) {
            double sj = 0, sr = 0;
            int np = 0;
            for (size_t c = 0; c < nclips; c++) {
                const double *d = cd + ((size_t)src * nclips + c) * nfps;
                if (!isnan(d[j]) && !isnan(d[nfps - 1]))
                    sj += d[j], sr += d[nfps - 1], np++;
            }
            rows[src][j].paired_n = np;
            rows[src][j].paired_ratio = np && sr > 0 ? sj / sr : NAN;
        }

    printf("fps check: %ld caption(s) x %ld seed(s), %dx%d, %d frames%s; disp and speed in px per frame at %dx%d;\n"
           "ratio = disp / disp at %d fps (expected: %d / fps)\n",
           a->n, a->seeds, mk.size, mk.size, mk.frames, a->reference ? "" : ", the base model alone", mk.size, mk.size,
           ref_fps, ref_fps);
    printf("%-9s %4s %6s %6s %7s %7s %7s %7s %7s %6s %9s\n", "source", "fps", "clips", "found", "disp", "speed",
           "motion", "ratio", "paired", "n_pair", "expected");
    for (int src = a->reference ? 1 : 0; src < 2; src++)
        for (int j = 0; j < nfps; j++)
            fps_print_row(src ? "renderer" : "model", &rows[src][j], fps[j], fps_disp(&rows[src][nfps - 1]), ref_fps);
    for (int j = 0; j + 1 < nfps; j++) {
        printf("ratio %d vs %d fps:", fps[j], ref_fps);
        for (int src = a->reference ? 1 : 0; src < 2; src++) {
            double q = fps_disp(&rows[src][j]) / fps_disp(&rows[src][nfps - 1]);
            if (isnan(q))
                printf(" %s n/a,", src ? "renderer" : "model");
            else
                printf(" %s %.3f,", src ? "renderer" : "model", q);
        }
        printf(" expected %.3f\n", (double)ref_fps / fps[j]);
    }
    fflush(stdout);
    fprintf(stderr, "%ld clip(s) in %.1f s\n", a->n * a->seeds * nfps * (a->reference ? 1 : 2), secs);

    if (js) {
        cJSON_AddStringToObject(js, "mode", "fps_check");
        cJSON_AddStringToObject(js, "source", a->reference ? "reference" : "model");
        if (a->model)
            cJSON_AddStringToObject(js, "model", a->model);
        else
            cJSON_AddNullToObject(js, "model");
        cJSON_AddNumberToObject(js, "n", (double)a->n);
        cJSON_AddNumberToObject(js, "seeds", (double)a->seeds);
        cJSON_AddNumberToObject(js, "caption_seed", (double)a->caption_seed);
        cJSON_AddNumberToObject(js, "size", mk.size);
        cJSON_AddNumberToObject(js, "frames", mk.frames);
        cJSON_AddItemToObject(js, "fps", cJSON_CreateIntArray(fps, nfps));
        cJSON_AddNumberToObject(js, "reference_fps", ref_fps);
        if (!a->reference) {
            cJSON_AddNumberToObject(js, "steps", (double)a->steps);
            cJSON_AddNumberToObject(js, "guidance", a->guidance);
            cJSON_AddStringToObject(js, "negative", a->neg);
            cJSON_AddBoolToObject(js, "fps_cond", mk.b.m.unet->cfg.fps_cond);
        }
        cJSON *res = cJSON_AddObjectToObject(js, "results");
        if (res && !a->reference)
            cJSON_AddItemToObject(res, "model", fps_rows_json(rows[0], fps, nfps));
        if (res)
            cJSON_AddItemToObject(res, "renderer", fps_rows_json(rows[1], fps, nfps));
        cJSON_AddNumberToObject(js, "seconds", secs);
        cJSON_AddItemToObject(js, "clips", jclips);
        jclips = NULL;
        if (json_finish(js, &jf, a->json_path))
            goto done;
    }
    rc = 0;
done:
    if (jf)
        json_discard(&jf, a->json_path);
    cJSON_Delete(js);
    cJSON_Delete(jclips);
    free(rgb);
    free(caps);
    free(cd);
    maker_free(&mk);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--stage") || !strncmp(argv[i], "--stage=", 8))
            return eval_stage(argc, argv);
    const char *model = NULL, *split_name = "all", *json_path = NULL, *save_dir = NULL, *sched = NULL, *neg = "";
    long n = 20, seeds = 1, steps = 25, frames = 0, size = 0, fps = 0, threads = 0;
    int no_cascade = 0;
    const char *fps_check = NULL;
    uint64_t caption_seed = EVAL_DEFAULT_CAPTION_SEED;
    double guidance = 9.0;
    int reference = 0;
    const kn_cli_opt opts[] = {
        {"--model", "-m", KN_OPT_STR, &model},
        {"--reference", NULL, KN_OPT_FLAG, &reference},
        {"--split", NULL, KN_OPT_STR, &split_name},
        {"--n", NULL, KN_OPT_INT, &n, 1, 1000000},
        {"--seeds", NULL, KN_OPT_INT, &seeds, 1, 10000},
        {"--caption-seed", NULL, KN_OPT_U64, &caption_seed},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--guidance", "-g", KN_OPT_FLOAT, &guidance, 0, 100},
        {"--negative", "-n", KN_OPT_STR, &neg},
        {"--scheduler", NULL, KN_OPT_STR, &sched},
        {"--frames", NULL, KN_OPT_INT, &frames, 1, KN_SHAPES_MAX_FRAMES},
        {"--size", NULL, KN_OPT_INT, &size, 8, 1024},
        {"--fps", NULL, KN_OPT_INT, &fps, 1, KN_SHAPES_NATIVE_FPS},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {"--json", NULL, KN_OPT_STR, &json_path},
        {"--save-dir", NULL, KN_OPT_STR, &save_dir},
        {"--no-cascade", NULL, KN_OPT_FLAG, &no_cascade},
        {"--fps-check", NULL, KN_OPT_STR, &fps_check},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("eval", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (fps_check) {
        fps_check_args fa = {model, sched, neg, json_path, save_dir, reference, n, seeds, steps, frames, size,
                             caption_seed, guidance, {0}, 0};
        int e = parse_fps_list(fps_check, fa.fps, &fa.nfps);
        if (e)
            return e;
        if (fps) {
            kn_cli_error("eval: give --fps-check LIST or --fps, not both (the list holds the frame rates)");
            return 2;
        }
        if (strcmp(split_name, "all")) {
            kn_cli_error("eval: --fps-check takes its captions from the random split (no --split)");
            return 2;
        }
        if (reference && model)
            return kn_cli_error("eval: give --model DIR or --reference, not both");
        if (!reference && !model)
            return kn_cli_error("eval: no --model DIR given (or --reference to measure the renderer's own clips)");
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
        return eval_fps_check(&fa);
    }
    if (fps && KN_SHAPES_NATIVE_FPS % fps)
        return kn_cli_error("eval: --fps %ld must divide 16 (16, 8, 4, 2, 1)", fps);
    if (reference && model)
        return kn_cli_error("eval: give --model DIR or --reference, not both");
    if (!reference && !model)
        return kn_cli_error("eval: no --model DIR given (or --reference to score the renderer's own clips)");
    int split_lo = 0, split_hi = KN_SPLIT_COUNT;
    if (strcmp(split_name, "all")) {
        kn_shapes_split s;
        if (kn_shapes_split_from_name(split_name, &s) != KN_OK)
            return kn_cli_error("eval: --split: unknown split '%s' (random, heldout, two or all)", split_name);
        split_lo = (int)s, split_hi = (int)s + 1;
    }
    if (reference && !fps)
        fps = 8;
    if (reference && !frames)
        frames = 2 * fps; /* two seconds, as the native 32 frames at 16 fps */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    clip_maker mk = {.reference = reference, .frames = (int)frames, .fps = (int)fps, .negative = neg,
                     .no_cascade = no_cascade};
    int rc = 1;
    uint8_t *rgb = NULL, *ref_rgb = NULL;
    cJSON *js = NULL, *jclips = NULL;
    FILE *jf = NULL;
    double t0 = now();
    if (reference) {
        if (sched)
            return kn_cli_error("eval: --scheduler needs --model");
        mk.size = size > 0 ? (int)size : 64;
    } else if (maker_load(&mk, model, sched, guidance, steps, size)) {
        goto done;
    }
    if (save_dir && mkdir_p1(save_dir))
        goto done;
    rgb = malloc((size_t)mk.frames * mk.size * mk.size * 3);
    ref_rgb = reference ? NULL : malloc((size_t)mk.frames * mk.size * mk.size * 3);
    if (!rgb || (!reference && !ref_rgb)) {
        kn_cli_error("eval: out of memory for a %dx%d clip of %d frames", mk.size, mk.size, mk.frames);
        goto done;
    }
    if (json_path) {
        /* opened now, so that an unwritable path fails before the generation, not after it */
        if (!(jf = json_open(json_path))) {
            kn_cli_error("eval: cannot write --json %s: %s", json_path, strerror(errno));
            goto done;
        }
        js = cJSON_CreateObject();
        jclips = cJSON_CreateArray();
        if (!js || !jclips) {
            cJSON_Delete(jclips), jclips = NULL;
            kn_cli_error("eval: out of memory");
            goto done;
        }
    }
    fprintf(stderr, "eval %s: %ld caption(s) x %ld seed(s) per split, %dx%d, %d frames at %d fps", reference ? "--reference" : model,
            n, seeds, mk.size, mk.size, mk.frames, mk.fps);
    if (!reference)
        fprintf(stderr, ", %ld steps, guidance %g", steps, guidance);
    fputc('\n', stderr);

    /* ref: the renderer's clip of every (caption, seed) at the same size / frames / fps, scored
     * the same way: the upper bound the scorer allows at these settings (below 1 at 32x32) */
    tally per[KN_SPLIT_COUNT] = {0}, all = {0}, ref[KN_SPLIT_COUNT] = {0}, ref_all = {0};
    kn_shapes_render_params rp = {mk.size, mk.frames, mk.fps};
    for (int s = split_lo; s < split_hi; s++) {
        for (long i = 0; i < n; i++) {
            kn_shapes_caption cap;
            char text[KN_SHAPES_CAPTION_MAX];
            if (kn_shapes_sample((kn_shapes_split)s, caption_seed, (uint64_t)i, &cap) != KN_OK ||
                kn_shapes_format(&cap, text, sizeof text) != KN_OK || maker_set_prompt(&mk, text) != KN_OK) {
                kn_cli_error("%s", kn_last_error());
                goto done;
            }
            for (long k = 0; k < seeds; k++) {
                kn_shapes_score sc;
                double tc = now();
                if (maker_clip(&mk, &cap, (uint64_t)k, rgb) != KN_OK ||
                    kn_shapes_score_clip(rgb, mk.frames, mk.size, mk.size, mk.fps, &cap, &sc) != KN_OK) {
                    kn_cli_error("%s", kn_last_error());
                    goto done;
                }
                tally_add(&per[s], &cap, &sc);
                if (!reference) {
                    kn_shapes_score rs;
                    if (kn_shapes_render(&cap, (uint64_t)k, &rp, ref_rgb, NULL) != KN_OK ||
                        kn_shapes_score_clip(ref_rgb, mk.frames, mk.size, mk.size, mk.fps, &cap, &rs) != KN_OK) {
                        kn_cli_error("%s", kn_last_error());
                        goto done;
                    }
                    tally_add(&ref[s], &cap, &rs);
                }
                if (save_dir) {
                    char path[1200];
                    snprintf(path, sizeof path, "%s/%s_%ld_%ld.sheet.png", save_dir, kn_split_names[s], i, k);
                    kn_video v = {mk.frames, mk.size, mk.size, (double)mk.fps, rgb};
                    if (kn_video_write_sheet(path, &v, 0) != KN_OK) {
                        kn_cli_error("%s", kn_last_error());
                        goto done;
                    }
                }
                /* one line per clip: which attributes each object got right (c s z m; z '-' = no size word) */
                char marks[2][8];
                for (int o = 0; o < cap.n; o++) {
                    const kn_shapes_object_score *ro = &sc.obj[o];
                    snprintf(marks[o], sizeof marks[o], "%c%c%c%c", ro->colour_ok ? 'c' : '.', ro->shape_ok ? 's' : '.',
                             cap.obj[o].size == KN_SIZE_UNSPECIFIED ? '-' : ro->size_ok ? 'z' : '.',
                             ro->motion_ok ? 'm' : '.');
                }
                fprintf(stderr, "%-7s %4ld seed %-3ld %s %s%s%s  %.1f s  %s\n", kn_split_names[s], i, k,
                        sc.exact ? "EXACT" : "     ", marks[0], cap.n > 1 ? " " : "", cap.n > 1 ? marks[1] : "",
                        now() - tc, text);
                if (jclips) {
                    cJSON *c = cJSON_CreateObject();
                    cJSON *objs = cJSON_CreateArray();
                    if (!c || !objs) {
                        cJSON_Delete(c), cJSON_Delete(objs);
                        kn_cli_error("eval: out of memory");
                        goto done;
                    }
                    cJSON_AddStringToObject(c, "split", kn_split_names[s]);
                    cJSON_AddNumberToObject(c, "index", (double)i);
                    cJSON_AddNumberToObject(c, "seed", (double)k);
                    cJSON_AddStringToObject(c, "caption", text);
                    cJSON_AddBoolToObject(c, "exact", sc.exact);
                    cJSON_AddNumberToObject(c, "flicker", sc.flicker);
                    cJSON_AddBoolToObject(c, "extra_object", sc.extra_object);
                    for (int o = 0; o < cap.n; o++) {
                        const kn_shapes_object_score *ro = &sc.obj[o];
                        cJSON *jo = cJSON_CreateObject();
                        if (!jo)
                            continue;
                        cJSON_AddBoolToObject(jo, "present", ro->present);
                        cJSON_AddBoolToObject(jo, "colour", ro->colour_ok);
                        cJSON_AddBoolToObject(jo, "shape", ro->shape_ok);
                        if (cap.obj[o].size == KN_SIZE_UNSPECIFIED)
                            cJSON_AddNullToObject(jo, "size");
                        else
                            cJSON_AddBoolToObject(jo, "size", ro->size_ok);
                        cJSON_AddBoolToObject(jo, "motion", ro->motion_ok);
                        cJSON_AddNumberToObject(jo, "presence", ro->presence);
                        cJSON_AddNumberToObject(jo, "area_cv", ro->area_cv);
                        cJSON_AddItemToArray(objs, jo);
                    }
                    cJSON_AddItemToObject(c, "objects", objs);
                    cJSON_AddItemToArray(jclips, c);
                }
            }
        }
        tally_merge(&all, &per[s]);
        tally_merge(&ref_all, &ref[s]);
    }
    double secs = now() - t0;

    printf("%-8s %6s", "split", "clips");
    for (int k = 0; k < M_COUNT; k++)
        printf(" %8s", metric_names[k]);
    printf(reference ? "\n" : " ref_exact\n");
    for (int s = split_lo; s < split_hi; s++)
        print_row(kn_split_names[s], &per[s], reference ? NULL : &ref[s]);
    print_row("overall", &all, reference ? NULL : &ref_all);
    fflush(stdout);
    fprintf(stderr, "%d clip(s) in %.1f s (%.2f s per clip)\n", all.clips, secs, all.clips ? secs / all.clips : 0.0);

    if (js) {
        cJSON_AddStringToObject(js, "source", reference ? "reference" : "model");
        if (model)
            cJSON_AddStringToObject(js, "model", model);
        else
            cJSON_AddNullToObject(js, "model");
        cJSON_AddNumberToObject(js, "n", (double)n);
        cJSON_AddNumberToObject(js, "seeds", (double)seeds);
        cJSON_AddNumberToObject(js, "caption_seed", (double)caption_seed);
        cJSON_AddNumberToObject(js, "size", mk.size);
        cJSON_AddNumberToObject(js, "frames", mk.frames);
        cJSON_AddNumberToObject(js, "fps", mk.fps);
        if (!reference) {
            cJSON_AddNumberToObject(js, "steps", (double)steps);
            cJSON_AddNumberToObject(js, "guidance", guidance);
            cJSON_AddStringToObject(js, "negative", neg);
        }
        cJSON *jsplits = cJSON_AddObjectToObject(js, "splits");
        for (int s = split_lo; s < split_hi && jsplits; s++)
            cJSON_AddItemToObject(jsplits, kn_split_names[s], tally_json(&per[s], reference ? NULL : &ref[s]));
        cJSON_AddItemToObject(js, "overall", tally_json(&all, reference ? NULL : &ref_all));
        cJSON_AddNumberToObject(js, "seconds", secs);
        cJSON_AddItemToObject(js, "clips", jclips);
        jclips = NULL;
        if (json_finish(js, &jf, json_path))
            goto done;
    }
    rc = 0;
done:
    if (jf) /* failed before the numbers were written: leave no partial file */
        json_discard(&jf, json_path);
    cJSON_Delete(js);
    cJSON_Delete(jclips);
    free(rgb);
    free(ref_rgb);
    maker_free(&mk);
    return rc;
}

KN_CLI_COMMAND(eval, "eval", "score generated clips against their Shapes-T2V captions", cmd_eval)
