/* stage_eval.h — baselines and measures for evaluating the super-resolution stages of the cascade
 * on Shapes-T2V (../shared/SHAPES.md "Scoring a generated clip": PSNR against the ground truth at
 * the higher resolution or frame rate, next to the simple baselines and to per-frame processing).
 *
 *     uint8_t *lo = ..., *up = malloc(F * 4 * H * W * 3);          // (F, H, W, 3) RGB8 clips
 *     kn_eval_upsample_clip(KN_RESAMPLE_BICUBIC, lo, F, H, W, 2, up);
 *     double db = kn_eval_psnr(up, truth, (size_t)F * 2 * H * 2 * W * 3);
 *
 * Layout: every clip here is (F, H, W, 3) RGB8, row-major — what kn_shapes_render writes, what
 * kn_shapes_score_clip reads and what kn_video holds — so a baseline's output is exactly what a
 * video file of it would hold (rounded to the nearest integer, clamped to 0..255). The float
 * resampler underneath works on planes (N, H, W) and is exposed for tests and for callers with
 * float data.
 *
 * Everything here is deterministic and independent of the thread count: work is split by output
 * row, each output value is computed by one fixed loop. */
#ifndef KN_STAGE_EVAL_H
#define KN_STAGE_EVAL_H

#include "train/shapes.h"

/* ------------------------------------------------------------ frame rate */

/* Frame blending, the x2 interpolation baseline: in (F, H, W, 3) -> out (2F, H, W, 3) with
 * out[2i] = in[i], out[2i+1] = the mean of in[i] and in[i+1] (rounded half up: (a + b + 1) / 2),
 * and out[2F-1] = in[F-1] (the last frame repeats: there is no right neighbour). F >= 1. */
kn_status kn_eval_blend_x2(const uint8_t *in, int F, int H, int W, uint8_t *out);

/* Every k-th frame: in (F, H, W, 3) -> out (ceil(F / k), H, W, 3), out[i] = in[i k] (a lower fps
 * per SHAPES.md). */
kn_status kn_eval_subsample_frames(const uint8_t *in, int F, int H, int W, int k, uint8_t *out);

/* ------------------------------------------------------------ resolution */

typedef enum {
    KN_RESAMPLE_BILINEAR = 0, /* triangle kernel: PyTorch bilinear, align_corners=False */
    KN_RESAMPLE_BICUBIC,      /* Keys cubic convolution with a = -0.5 (PIL / Matlab; PyTorch uses -0.75) */
    KN_RESAMPLE_LANCZOS3,     /* sinc(x) sinc(x/3) for |x| < 3, weights normalised to sum 1 */
    KN_RESAMPLE_COUNT
} kn_resample_kind;

extern const char *const kn_resample_names[KN_RESAMPLE_COUNT]; /* "bilinear", "bicubic", "lanczos3" */

/* Upsampling by an integer factor s (1..8) of planes x (N, H, W) -> y (N, sH, sW), separable.
 * Output pixel i samples the input at u = (i + 0.5) / s - 0.5 (pixel centres, as PyTorch with
 * align_corners=False); taps outside the image take the nearest edge pixel. For bilinear this is
 * exactly F.interpolate(mode='bilinear', align_corners=False). */
kn_status kn_eval_upsample_f32(kn_resample_kind kind, const float *x, int64_t N, int64_t H, int64_t W, int s,
                               float *y);
/* The same on a clip (F, H, W, 3) RGB8 -> (F, sH, sW, 3), rounded and clamped to 0..255. */
kn_status kn_eval_upsample_clip(kn_resample_kind kind, const uint8_t *in, int F, int H, int W, int s, uint8_t *out);

/* Area downsampling by k (H, W multiples of k): (F, H, W, 3) -> (F, H/k, W/k, 3), each output the
 * mean of its k x k block, rounded to nearest (half up). */
kn_status kn_eval_area_down(const uint8_t *in, int F, int H, int W, int k, uint8_t *out);

/* ------------------------------------------------------------ measures */

/* PSNR of a clip against the ground truth in dB, over all n bytes (every frame and channel), peak
 * 255: 10 log10(255^2 / MSE). INFINITY when identical. (kn_shapes_psnr; here so the evaluator
 * needs one header.) */
double kn_eval_psnr(const uint8_t *a, const uint8_t *truth, size_t n);

/* Temporal quality of a clip at fps against its caption (SHAPES.md): background flicker (mean
 * |frame t+1 - frame t| of background pixels, 0..255) and the mean over caption objects found in
 * some frame of their area coefficient of variation (NAN when none was found). */
typedef struct {
    double flicker;
    double area_cv;
    int exact; /* the scorer's exact match of the clip against cap */
} kn_eval_temporal;
kn_status kn_eval_temporal_scores(const uint8_t *clip, int F, int H, int W, int fps, const kn_shapes_caption *cap,
                                  kn_eval_temporal *out);

/* Difference map: out = min(255, gain * |a - b|) per byte, the same layout as a and b (n bytes). */
void kn_eval_diff(const uint8_t *a, const uint8_t *b, size_t n, float gain, uint8_t *out);

/* Temporal difference video, for showing flicker: out[t] = min(255, gain * |in[t] - in[t-1]|)
 * (per channel), out[0] = black. (F, H, W, 3) -> (F, H, W, 3). */
kn_status kn_eval_temporal_diff(const uint8_t *in, int F, int H, int W, float gain, uint8_t *out);

/* Tiles clips side by side: clips[r * cols + c] (each (F, H, W, 3), or NULL for a black panel)
 * -> out (F, rows H, cols W, 3). */
kn_status kn_eval_tile(const uint8_t *const *clips, int rows, int cols, int F, int H, int W, uint8_t *out);

/* The flicker panel: n clips (each (F, H, W, 3)) in a top row, their temporal difference videos
 * (kn_eval_temporal_diff with gain) below -> out (F, 2H, nW, 3). 1 <= n <= 8. */
kn_status kn_eval_flicker_panel(const uint8_t *const *clips, int n, int F, int H, int W, float gain, uint8_t *out);

#endif
