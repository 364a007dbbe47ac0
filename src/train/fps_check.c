/* fps_check.c — per-frame motion of the captioned object (fps_check.h). */
#include "train/fps_check.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

int kn_fps_motion_is_straight(kn_motion m) { return m >= KN_MOTION_LEFT && m <= KN_MOTION_DOWN_RIGHT; }

kn_status kn_fps_captions(uint64_t seed, int n, kn_shapes_caption *caps) {
    if (n < 1 || !caps)
        return kn_fail(KN_ERR_ARG, "fps check: need at least one caption (got %d)", n);
    int k = 0;
    /* 8 of the 11 motions are straight: 1000 draws per caption is far more than ever needed */
    for (uint64_t i = 0; k < n && i < (uint64_t)n * 1000; i++) {
        kn_shapes_caption c;
        KN_TRY(kn_shapes_sample(KN_SPLIT_RANDOM, seed, i, &c));
        if (c.n == 1 && kn_fps_motion_is_straight(c.obj[0].motion))
            caps[k++] = c;
    }
    if (k < n)
        return kn_fail(KN_ERR_ARG, "fps check: only %d straight-motion captions in the stream of seed %llu", k,
                       (unsigned long long)seed);
    return KN_OK;
}

kn_status kn_fps_measure_clip(const uint8_t *clip, int T, int H, int W, int fps, const kn_shapes_caption *cap,
                              kn_fps_measure *out) {
    if (!clip || !cap || !out || cap->n < 1)
        return kn_fail(KN_ERR_ARG, "fps check: NULL clip, caption or output");
    if (T < 2)
        return kn_fail(KN_ERR_ARG, "fps check: a clip of %d frame(s) shows no motion (need >= 2)", T);
    /* the first object alone: a second one would only change the scorer's contact handling */
    kn_shapes_caption one = {.n = 1, .obj = {cap->obj[0]}};
    kn_shapes_score sc;
    KN_TRY(kn_shapes_score_clip(clip, T, H, W, fps, &one, &sc));
    memset(out, 0, sizeof *out);
    const kn_shapes_object_score *r = &sc.obj[0];
    out->found = r->present;
    out->motion_ok = r->motion_ok;
    /* slopes are native px (128 wide) per 16 fps frame; a clip frame is 16 / fps of those */
    double per = (double)(KN_SHAPES_NATIVE_FPS / fps);
    out->speed = r->present ? per * hypot(r->slope_x * (double)W / KN_SHAPES_NATIVE,
                                          r->slope_y * (double)H / KN_SHAPES_NATIVE)
                            : NAN;
    /* per-frame displacement: the slope of each two-frame clip (t, t+1) scored at 16 fps */
    const size_t frame = (size_t)H * W * 3;
    double sum = 0;
    for (int t = 0; t + 1 < T; t++) {
        KN_TRY(kn_shapes_score_clip(clip + (size_t)t * frame, 2, H, W, KN_SHAPES_NATIVE_FPS, &one, &sc));
        if (sc.obj[0].presence < 1.0f)
            continue;
        sum += hypot(sc.obj[0].slope_x * (double)W / KN_SHAPES_NATIVE, sc.obj[0].slope_y * (double)H / KN_SHAPES_NATIVE);
        out->pairs++;
    }
    out->disp = out->pairs ? sum / out->pairs : NAN;
    return KN_OK;
}
