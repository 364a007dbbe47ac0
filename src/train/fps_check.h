/* fps_check.h — how far the captioned object moves per frame, for checking frame-rate
 * conditioning on Shapes-T2V (../shared/SHAPES.md: "at 8 fps an object moves twice as far between
 * frames as at 16 fps"; Make-A-Video's fps conditioning).
 *
 *     kn_shapes_caption caps[8];
 *     kn_fps_captions(7001, 8, caps);                 // the first 8 straight-motion captions
 *     kn_fps_measure m;
 *     kn_fps_measure_clip(clip, T, H, W, fps, &caps[0], &m);
 *     // m.found, m.disp (px per frame at H x W), m.speed (fitted), m.motion_ok
 *
 * The centroid is the scorer's own (kn_shapes_score_clip: the largest component of the named
 * palette colour). The scorer reports fitted slopes, not a track, so the per-frame displacement is
 * read from it one frame pair at a time: a two-frame clip (t, t+1) scored at 16 fps has the slope
 * c[t+1] - c[t] exactly (a least-squares line through two points). A pair counts when the object
 * is present in both of its frames. Deterministic; no thread-count dependence. */
#ifndef KN_FPS_CHECK_H
#define KN_FPS_CHECK_H

#include "train/shapes.h"

/* 1 for the straight motions (moving left/right/up/down and the four diagonals), else 0. */
int kn_fps_motion_is_straight(kn_motion m);

/* The first n single-object captions of the random split's stream (kn_shapes_sample(RANDOM, seed,
 * i) for i = 0, 1, ...) whose motion is straight: a pure function of (seed, n). n >= 1. */
kn_status kn_fps_captions(uint64_t seed, int n, kn_shapes_caption *caps);

typedef struct {
    int found;      /* the scorer's `present` for the caption's first object (>= 90 % of frames) */
    int pairs;      /* consecutive frame pairs with the object present in both */
    double disp;    /* mean |c[t+1] - c[t]| (Euclidean, px at H x W) over those pairs; NAN if none */
    double speed;   /* |fitted centroid slope| over the clip, px per clip frame at H x W; NAN if no fit */
    int motion_ok;  /* the scorer's motion verdict (direction of a straight move) */
} kn_fps_measure;

/* Measures clip (T, H, W, 3) RGB8 sampled at fps (a divisor of 16) against cap (its first object).
 * T >= 2. KN_ERR_ARG on bad arguments (the scorer's messages). */
kn_status kn_fps_measure_clip(const uint8_t *clip, int T, int H, int W, int fps, const kn_shapes_caption *cap,
                              kn_fps_measure *out);

#endif
