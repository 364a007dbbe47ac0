/* cmd_data.c — `kinema data`: the Shapes-T2V dataset (SHAPES.md) from the command line.
 *
 *   kinema data sample --split random|heldout|two --n N [--seed S] [--start I]
 *       prints N captions of the split, one per line (caption I+i of the seed's stream)
 *   kinema data render -p CAPTION [--seed S] [--size 128] [--frames 32] [--fps 16] -o FILE [--truth]
 *       renders one clip and writes it with the video writers (format from FILE's extension);
 *       --truth prints each object's ground truth (size, speed, centroid track) to stdout
 *   kinema data score CLIP -p CAPTION [--fps F]
 *       scores a clip against its caption: per-object attributes and "exact 1|0"
 *   kinema data eval --split S --n N [--seed S] [--size 128] [--frames 32] [--fps 16]
 *       renders and scores N captions of a split: exact-match and per-attribute accuracy of the
 *       ground-truth renderer under the scorer (1.0 everywhere when both agree) */
#include "cli/cli.h"
#include "io/video.h"
#include "train/shapes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: kinema data sample --split random|heldout|two --n N [--seed S] [--start I]\n"
               "       kinema data render -p CAPTION [--seed S] [--size 128] [--frames 32] [--fps 16] -o FILE "
               "[--truth]\n"
               "       kinema data score CLIP -p CAPTION [--fps F]\n"
               "       kinema data eval --split random|heldout|two --n N [--seed S] [--size 128] [--frames 32] "
               "[--fps 16]\n"
               "Shapes-T2V: captioned procedural clips (see SHAPES.md). Captions: "
               "\"a [small|large] COLOUR SHAPE MOTION[ and a ...]\".\n");
}

typedef struct {
    const char *split, *prompt, *out, *clip;
    long n, seed, start, size, frames, fps;
    int truth, fps_set;
} data_args;

static int parse_args(int argc, char **argv, data_args *a) {
    *a = (data_args){.n = 10, .seed = 0, .size = KN_SHAPES_NATIVE, .frames = 32, .fps = KN_SHAPES_NATIVE_FPS};
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 2;
        } else if (!strcmp(o, "--split")) {
            if (!val)
                return kn_cli_error("option --split needs a value"), 0;
            a->split = argv[++i];
        } else if (!strcmp(o, "-p") || !strcmp(o, "--prompt")) {
            if (!val)
                return kn_cli_error("option %s needs a value", o), 0;
            a->prompt = argv[++i];
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            if (!val)
                return kn_cli_error("option %s needs a value", o), 0;
            a->out = argv[++i];
        } else if (!strcmp(o, "--n")) {
            if (!kn_cli_int(o, val, 1, 100000000, &a->n))
                return 0;
            i++;
        } else if (!strcmp(o, "--seed")) {
            if (!kn_cli_int(o, val, 0, 0x7fffffffL, &a->seed))
                return 0;
            i++;
        } else if (!strcmp(o, "--start")) {
            if (!kn_cli_int(o, val, 0, 0x7fffffffL, &a->start))
                return 0;
            i++;
        } else if (!strcmp(o, "--size")) {
            if (!kn_cli_int(o, val, 8, 1024, &a->size))
                return 0;
            i++;
        } else if (!strcmp(o, "--frames")) {
            if (!kn_cli_int(o, val, 1, KN_SHAPES_MAX_FRAMES, &a->frames))
                return 0;
            i++;
        } else if (!strcmp(o, "--fps")) {
            if (!kn_cli_int(o, val, 1, KN_SHAPES_NATIVE_FPS, &a->fps))
                return 0;
            a->fps_set = 1;
            i++;
        } else if (!strcmp(o, "--truth")) {
            a->truth = 1;
        } else if (o[0] == '-' && o[1]) {
            return kn_cli_error("data: unknown option '%s' (try `kinema data --help`)", o), 0;
        } else if (!a->clip) {
            a->clip = o;
        } else {
            return kn_cli_error("data: unexpected argument '%s' (quote the caption)", o), 0;
        }
    }
    return 1;
}

static int do_sample(const data_args *a) {
    kn_shapes_split split;
    if (!a->split)
        return kn_cli_error("data sample: --split random|heldout|two is required");
    if (kn_shapes_split_from_name(a->split, &split) != KN_OK)
        return kn_cli_error("data sample: %s", kn_last_error());
    char buf[KN_SHAPES_CAPTION_MAX];
    for (long i = 0; i < a->n; i++) {
        kn_shapes_caption c;
        if (kn_shapes_sample(split, (uint64_t)a->seed, (uint64_t)(a->start + i), &c) != KN_OK ||
            kn_shapes_format(&c, buf, sizeof buf) != KN_OK)
            return kn_cli_error("data sample: %s", kn_last_error());
        puts(buf);
    }
    return 0;
}

static int do_render(const data_args *a) {
    if (!a->prompt)
        return kn_cli_error("data render: -p CAPTION is required");
    if (!a->out)
        return kn_cli_error("data render: -o FILE is required");
    kn_shapes_caption c;
    if (kn_shapes_parse(a->prompt, &c) != KN_OK)
        return kn_cli_error("data render: %s", kn_last_error());
    kn_shapes_render_params p = {(int)a->size, (int)a->frames, (int)a->fps};
    kn_video v;
    if (kn_video_alloc(&v, p.frames, p.size, p.size, p.fps) != KN_OK)
        return kn_cli_error("data render: %s", kn_last_error());
    kn_shapes_truth *tr = a->truth ? malloc(sizeof *tr) : NULL;
    if (a->truth && !tr) {
        kn_video_free(&v);
        return kn_cli_error("data render: out of memory");
    }
    int rc = 0;
    if (kn_shapes_render(&c, (uint64_t)a->seed, &p, v.rgb, tr) != KN_OK)
        rc = kn_cli_error("data render: %s", kn_last_error());
    else if (kn_video_write(a->out, &v, NULL) != KN_OK)
        rc = kn_cli_error("data render: %s", kn_last_error());
    if (!rc && tr)
        for (int o = 0; o < tr->n; o++) {
            const kn_shapes_truth_object *t = &tr->obj[o];
            printf("object %d: %s %s %s %s side %.2f speed %.3f track", o + 1, kn_size_names[t->obj.size],
                   kn_colour_names[t->obj.colour], kn_shape_names[t->obj.shape], kn_motion_names[t->obj.motion],
                   t->side, t->speed);
            for (int f = 0; f < p.frames; f++)
                printf(" %.2f,%.2f", t->cx[f], t->cy[f]);
            printf("\n");
        }
    free(tr);
    kn_video_free(&v);
    return rc;
}

static void print_score(const kn_shapes_caption *c, const kn_shapes_score *s) {
    for (int o = 0; o < s->n; o++) {
        const kn_shapes_object_score *r = &s->obj[o];
        printf("object %d (%s %s): colour %d (presence %.2f) shape %d (found %s, fill %.3f, asym %.3f) "
               "size %d (side %.1f) motion %d (slope %.2f,%.2f reversals %d,%d travel %.1f) area_cv %.4f\n",
               o + 1, kn_colour_names[c->obj[o].colour], kn_shape_names[c->obj[o].shape], r->colour_ok,
               r->presence, r->shape_ok, r->shape_found >= 0 ? kn_shape_names[r->shape_found] : "none", r->fill,
               r->asym, r->size_ok, r->side, r->motion_ok, r->slope_x, r->slope_y, r->reversals_x, r->reversals_y,
               r->travel, r->area_cv);
    }
    printf("extra_object %d flicker %.4f\nexact %d\n", s->extra_object, s->flicker, s->exact);
}

static int do_score(const data_args *a) {
    if (!a->clip)
        return kn_cli_error("data score: no CLIP file given");
    if (!a->prompt)
        return kn_cli_error("data score: -p CAPTION is required");
    kn_shapes_caption c;
    if (kn_shapes_parse(a->prompt, &c) != KN_OK)
        return kn_cli_error("data score: %s", kn_last_error());
    kn_video_read_opts ro = kn_video_read_default_opts();
    kn_video v;
    if (kn_video_read(a->clip, &ro, &v) != KN_OK)
        return kn_cli_error("data score: %s", kn_last_error());
    int fps = (int)a->fps;
    if (!a->fps_set) {
        fps = (int)lround(v.fps);
        if (fps < 1 || fps > KN_SHAPES_NATIVE_FPS || KN_SHAPES_NATIVE_FPS % fps || fabs(v.fps - fps) > 0.01) {
            kn_video_free(&v);
            return kn_cli_error("data score: the clip's %.3f fps is not 16, 8, 4, 2 or 1 (give --fps)", v.fps);
        }
    }
    if (v.frames > KN_SHAPES_MAX_FRAMES) {
        int n = v.frames;
        kn_video_free(&v);
        return kn_cli_error("data score: %d frames is more than the scorer's %d", n, KN_SHAPES_MAX_FRAMES);
    }
    kn_shapes_score s;
    kn_status st = kn_shapes_score_clip(v.rgb, v.frames, v.height, v.width, fps, &c, &s);
    kn_video_free(&v);
    if (st != KN_OK)
        return kn_cli_error("data score: %s", kn_last_error());
    print_score(&c, &s);
    return 0;
}

static int do_eval(const data_args *a) {
    kn_shapes_split split;
    if (!a->split)
        return kn_cli_error("data eval: --split random|heldout|two is required");
    if (kn_shapes_split_from_name(a->split, &split) != KN_OK)
        return kn_cli_error("data eval: %s", kn_last_error());
    kn_shapes_render_params p = {(int)a->size, (int)a->frames, (int)a->fps};
    uint8_t *clip = malloc(kn_shapes_clip_bytes(&p));
    if (!clip)
        return kn_cli_error("data eval: out of memory");
    long exact = 0, objs = 0, ok[4] = {0};
    double flicker = 0, cv = 0;
    for (long i = 0; i < a->n; i++) {
        kn_shapes_caption c;
        kn_shapes_score s;
        if (kn_shapes_sample(split, (uint64_t)a->seed, (uint64_t)i, &c) != KN_OK ||
            kn_shapes_render(&c, (uint64_t)a->seed * 1000003u + (uint64_t)i, &p, clip, NULL) != KN_OK ||
            kn_shapes_score_clip(clip, p.frames, p.size, p.size, p.fps, &c, &s) != KN_OK) {
            free(clip);
            return kn_cli_error("data eval: %s", kn_last_error());
        }
        exact += s.exact;
        flicker += s.flicker;
        for (int o = 0; o < s.n; o++) {
            ok[0] += s.obj[o].colour_ok, ok[1] += s.obj[o].shape_ok, ok[2] += s.obj[o].size_ok;
            ok[3] += s.obj[o].motion_ok, cv += s.obj[o].area_cv, objs++;
        }
    }
    free(clip);
    printf("split %s  clips %ld  %dx%d  %d frames @ %d fps\n", a->split, a->n, p.size, p.size, p.frames, p.fps);
    printf("exact %.4f  colour %.4f  shape %.4f  size %.4f  motion %.4f  flicker %.4f  area_cv %.4f\n",
           (double)exact / a->n, (double)ok[0] / objs, (double)ok[1] / objs, (double)ok[2] / objs,
           (double)ok[3] / objs, flicker / a->n, cv / objs);
    return 0;
}

static int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    data_args a;
    int r = parse_args(argc, argv, &a);
    if (r != 1)
        return r == 2 ? 0 : 1;
    const char *sub = argv[1];
    if (!strcmp(sub, "sample"))
        return do_sample(&a);
    if (!strcmp(sub, "render"))
        return do_render(&a);
    if (!strcmp(sub, "score"))
        return do_score(&a);
    if (!strcmp(sub, "eval"))
        return do_eval(&a);
    return kn_cli_error("data: unknown action '%s' (sample, render, score or eval)", sub);
}

KN_CLI_COMMAND(data, "data", "Shapes-T2V dataset: sample captions, render, score clips", cmd_data)
