/* cmd_eval.c — `kinema eval`: text-video alignment of a model on Shapes-T2V (../shared/SHAPES.md).
 *
 *   kinema eval --model DIR [--split random|heldout|two|all] [--n N] [--seeds K] [--steps S]
 *               [--guidance G] [--frames F] [--size PX] [--fps FPS] [--json OUT] [--save-dir DIR]
 *   kinema eval --reference [...]      the same scoring on clips rendered by the dataset renderer
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
#include "train/shapes.h"

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
            "      --size PX           clip side (default: the model's sample size; 64 with --reference)\n"
            "      --fps FPS           16, 8, 4, 2 or 1: the frame rate the model was trained at (default 8)\n"
            "      --frames F          frames per clip (default 2 s: 2 x fps)\n"
            "      --json FILE         also write the numbers (and every clip's score) as JSON\n"
            "      --save-dir DIR      write each clip as DIR/SPLIT_INDEX_SEED.sheet.png\n"
            "  -t, --threads N         threads (default: all cores); results do not depend on it\n",
            EVAL_DEFAULT_CAPTION_SEED);
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
    kn_status st = kn_t2v_run(&mk->b.m, mk->A, mk->emb, mk->emb + mk->L * mk->D, mk->L, &mk->par, NULL, mk->video);
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
    if (size_opt <= 0)
        size_opt = mk->b.m.unet->cfg.sample_size > 0 ? (long)mk->b.m.unet->cfg.sample_size * f : 64;
    if (size_opt % f)
        return kn_cli_error("eval: --size must be a multiple of the VAE factor %d, got %ld", f, size_opt);
    mk->size = (int)size_opt;
    kn_t2v_params *p = &mk->par;
    *p = kn_t2v_params_default();
    p->steps = (int)steps;
    p->guidance_scale = (float)guidance;
    p->frames = mk->frames;
    p->height = p->width = mk->size;
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
    /* the arena reserves address space; pages are touched only as far as a run goes */
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    mk->A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!mk->ids || !mk->emb || !mk->video || !mk->A)
        return kn_cli_error("eval: out of memory");
    return 0;
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

static int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *split_name = "all", *json_path = NULL, *save_dir = NULL, *sched = NULL, *neg = "";
    long n = 20, seeds = 1, steps = 25, frames = 0, size = 0, fps = 8, threads = 0;
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
    if (KN_SHAPES_NATIVE_FPS % fps)
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
    if (!frames)
        frames = 2 * fps; /* two seconds, as the native 32 frames at 16 fps */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    clip_maker mk = {.reference = reference, .frames = (int)frames, .fps = (int)fps, .negative = neg};
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
        if (!(jf = fopen(json_path, "w"))) {
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
        char *text = cJSON_Print(js);
        errno = 0;
        int ok = text && fputs(text, jf) >= 0 && fputc('\n', jf) != EOF;
        free(text);
        if (fclose(jf) != 0)
            ok = 0;
        jf = NULL;
        if (!ok) {
            kn_cli_error("eval: cannot write --json %s: %s", json_path, errno ? strerror(errno) : "out of memory");
            remove(json_path);
            goto done;
        }
    }
    rc = 0;
done:
    if (jf) { /* failed before the numbers were written: leave no partial file */
        fclose(jf);
        remove(json_path);
    }
    cJSON_Delete(js);
    cJSON_Delete(jclips);
    free(rgb);
    free(ref_rgb);
    maker_free(&mk);
    return rc;
}

KN_CLI_COMMAND(eval, "eval", "score generated clips against their Shapes-T2V captions", cmd_eval)
