/* shapes.h — Shapes-T2V: the procedural captioned video dataset (docs: ../shared/SHAPES.md).
 *
 *     kn_shapes_caption cap;
 *     if (kn_shapes_parse("a small red circle moving left", &cap) != KN_OK) ...   // message names the word
 *     kn_shapes_render_params p = kn_shapes_default_params();     // 128x128, 32 frames, 16 fps
 *     uint8_t *clip = malloc(kn_shapes_clip_bytes(&p));           // (T,H,W,3) RGB8
 *     kn_shapes_render(&cap, seed, &p, clip, NULL);
 *     kn_shapes_score sc;
 *     kn_shapes_score_clip(clip, p.frames, p.size, p.size, p.fps, &cap, &sc);  // sc.exact == 1
 *
 * Everything here is deterministic: captions from (seed, index) through Philox streams, clips from
 * (caption, seed), and the result never depends on the thread count.
 *
 * Coordinates: "native" means the 128x128 / 16 fps clip. Pixel (x, y) covers [x, x+1) x [y, y+1);
 * y grows downwards ("up" is -y). */
#ifndef KN_SHAPES_H
#define KN_SHAPES_H

#include "kinema.h"

typedef enum { KN_SHAPE_CIRCLE = 0, KN_SHAPE_SQUARE, KN_SHAPE_TRIANGLE, KN_SHAPE_COUNT } kn_shape_kind;

typedef enum {
    KN_COLOUR_RED = 0, KN_COLOUR_GREEN, KN_COLOUR_BLUE, KN_COLOUR_YELLOW,
    KN_COLOUR_MAGENTA, KN_COLOUR_CYAN, KN_COLOUR_ORANGE, KN_COLOUR_WHITE, KN_COLOUR_COUNT
} kn_colour;

typedef enum { KN_SIZE_UNSPECIFIED = 0, KN_SIZE_SMALL, KN_SIZE_LARGE } kn_size;

typedef enum {
    KN_MOTION_LEFT = 0, KN_MOTION_RIGHT, KN_MOTION_UP, KN_MOTION_DOWN,
    KN_MOTION_UP_LEFT, KN_MOTION_UP_RIGHT, KN_MOTION_DOWN_LEFT, KN_MOTION_DOWN_RIGHT,
    KN_MOTION_BOUNCE_LR, KN_MOTION_BOUNCE_UD, KN_MOTION_STILL, KN_MOTION_COUNT
} kn_motion;

#define KN_SHAPES_MAX_OBJECTS 2
#define KN_SHAPES_MAX_FRAMES 256
#define KN_SHAPES_NATIVE 128     /* native side in px */
#define KN_SHAPES_NATIVE_FPS 16
#define KN_SHAPES_CAPTION_MAX 160 /* longest caption + NUL fits easily */

typedef struct {
    kn_shape_kind shape;
    kn_colour colour;
    kn_size size;     /* KN_SIZE_UNSPECIFIED: the caption has no size word */
    kn_motion motion;
} kn_shapes_object;

typedef struct {
    int n; /* 1 or 2 */
    kn_shapes_object obj[KN_SHAPES_MAX_OBJECTS];
} kn_shapes_caption;

/* Word tables ("circle", "red", "small", "moving up and left", ...); index by the enums. */
extern const char *const kn_shape_names[KN_SHAPE_COUNT];
extern const char *const kn_colour_names[KN_COLOUR_COUNT];
extern const char *const kn_size_names[3];  /* [0] = "" */
extern const char *const kn_motion_names[KN_MOTION_COUNT];
extern const uint8_t kn_shapes_palette[KN_COLOUR_COUNT][3];

/* Parses the exact grammar of SHAPES.md ("a [size] colour shape motion[ and a ...]"): lower-case,
 * single spaces, no leading/trailing space. Two objects must have different colours. On failure
 * returns KN_ERR_ARG with a message naming the offending word and its position. */
kn_status kn_shapes_parse(const char *text, kn_shapes_caption *out);
/* Writes the caption's text into buf (n bytes). KN_ERR_ARG if it does not fit or cap is invalid. */
kn_status kn_shapes_format(const kn_shapes_caption *cap, char *buf, size_t n);
/* 1 if any object of cap is a held-out composition (colour+shape or shape+motion), else 0. */
int kn_shapes_is_heldout(const kn_shapes_caption *cap);
/* 1 if this single object is a held-out composition. */
int kn_shapes_object_is_heldout(const kn_shapes_object *o);

typedef enum { KN_SPLIT_RANDOM = 0, KN_SPLIT_HELDOUT, KN_SPLIT_TWO, KN_SPLIT_COUNT } kn_shapes_split;
extern const char *const kn_split_names[KN_SPLIT_COUNT];
/* "random" | "heldout" | "two" -> split; KN_ERR_ARG naming the word otherwise. */
kn_status kn_shapes_split_from_name(const char *name, kn_shapes_split *out);

/* Caption number `index` of a split, a pure function of (split, seed, index):
 *   random:  one object, held-out compositions excluded, size omitted 30 % of the time;
 *   heldout: one object that is a held-out composition (size omitted 30 % of the time);
 *   two:     two objects of different colours, no held-out composition. */
kn_status kn_shapes_sample(kn_shapes_split split, uint64_t seed, uint64_t index, kn_shapes_caption *out);

/* ------------------------------------------------------------- renderer */

typedef struct {
    int size;   /* H = W in px (default 128). Geometry is defined at 128 and scaled. */
    int frames; /* T (default 32), <= KN_SHAPES_MAX_FRAMES */
    int fps;    /* 16, 8, 4, 2 or 1: frame t is frame t*16/fps of the 16 fps trajectory */
} kn_shapes_render_params;

kn_shapes_render_params kn_shapes_default_params(void);
/* Bytes of one clip: frames * size * size * 3. */
size_t kn_shapes_clip_bytes(const kn_shapes_render_params *p);

/* Ground truth of one rendered object, in the clip's own pixels (not native). */
typedef struct {
    kn_shapes_object obj;  /* as rendered: size resolved to SMALL/LARGE when unspecified */
    float side;            /* bounding-box width (native px, jitter included) */
    float height;          /* bounding-box height (native px; side*sqrt(3)/2 for a triangle) */
    float speed;           /* native px per 16 fps frame along the motion (0 when still) */
    float cx[KN_SHAPES_MAX_FRAMES], cy[KN_SHAPES_MAX_FRAMES]; /* area centroid per clip frame */
} kn_shapes_truth_object;

typedef struct {
    int n;
    kn_shapes_truth_object obj[KN_SHAPES_MAX_OBJECTS];
} kn_shapes_truth;

/* Renders cap into out (T, H, W, 3) uint8 RGB on black, shapes anti-aliased by area averaging
 * (4x4 samples per native pixel, more when rendering below 128 so that a 64x64 clip equals the
 * area downsampling of the 128x128 one). The second object is drawn over the first. truth may be
 * NULL. Straight motions keep the whole object inside the canvas for the whole clip; when a clip
 * is too long for the 1.5–2.25 px/frame range to fit, the speed is lowered so that it does.
 * Fails (KN_ERR_ARG) on a bad caption or parameters. Runs on the thread pool (frames). */
kn_status kn_shapes_render(const kn_shapes_caption *cap, uint64_t seed, const kn_shapes_render_params *p,
                           uint8_t *out, kn_shapes_truth *truth);

/* --------------------------------------------------------------- scorer */

typedef struct {
    int present;      /* colour component >= 25 % of expected area in >= 90 % of frames */
    int colour_ok;    /* present and no other palette colour holds a comparable object */
    int shape_ok, size_ok, motion_ok; /* size_ok = 1 when the caption states no size */
    int shape_found;  /* kn_shape_kind or -1 */
    int size_found;   /* KN_SIZE_SMALL / KN_SIZE_LARGE or 0 when not measured */
    float presence;   /* fraction of frames where present */
    float fill;       /* median bbox fill ratio over clean frames */
    float asym;       /* median (bottom-half - top-half) / area: +0.5 for an apex-up triangle */
    float side;       /* median bbox side, native px */
    float slope_x, slope_y; /* least-squares centroid slopes, native px per 16 fps frame */
    int reversals_x, reversals_y;
    float travel;     /* largest centroid distance from the first clean frame, native px */
    float area_cv;    /* coefficient of variation of the object's area over present frames */
} kn_shapes_object_score;

typedef struct {
    int n;
    kn_shapes_object_score obj[KN_SHAPES_MAX_OBJECTS];
    int extra_object; /* a palette colour not in the caption holds a comparable object */
    int exact;        /* every stated attribute of every object is right */
    float flicker;    /* mean |frame t+1 - frame t| of background pixels (0..255 units) */
} kn_shapes_score;

/* Scores clip (T, H, W, 3) RGB8 at fps against cap, per SHAPES.md "Scoring a generated clip".
 * Thresholds are stated in native units (128 px, 16 fps) and scaled to (H, W, fps). */
kn_status kn_shapes_score_clip(const uint8_t *clip, int T, int H, int W, int fps,
                               const kn_shapes_caption *cap, kn_shapes_score *out);

/* Background flicker alone: mean absolute frame-to-frame change (0..255) of pixels that are at
 * least 3 px away from any palette-coloured pixel in both frames. */
kn_status kn_shapes_flicker(const uint8_t *clip, int T, int H, int W, double *out);

/* PSNR (dB, peak 255) between two uint8 buffers of n bytes; INFINITY when identical. */
double kn_shapes_psnr(const uint8_t *a, const uint8_t *b, size_t n);

#endif
