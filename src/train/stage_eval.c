/* stage_eval.c — baselines (frame blending, bilinear / bicubic / Lanczos-3 upsampling, area
 * downsampling) and measures (PSNR, flicker, area stability, difference maps) for the cascade's
 * super-resolution stages. See stage_eval.h. */
#include "train/stage_eval.h"

#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const kn_resample_names[KN_RESAMPLE_COUNT] = {"bilinear", "bicubic", "lanczos3"};

static kn_status check_clip(const char *op, const void *in, const void *out, int F, int H, int W) {
    if (!in || !out)
        return kn_fail(KN_ERR_ARG, "%s: NULL clip", op);
    if (F < 1 || H < 1 || W < 1 || (int64_t)F * H * W > ((int64_t)1 << 34))
        return kn_fail(KN_ERR_ARG, "%s: bad clip size %d frames of %dx%d", op, F, H, W);
    return KN_OK;
}

static uint8_t round_u8(float v) {
    float r = floorf(v + 0.5f);
    return r <= 0.0f ? 0 : r >= 255.0f ? 255 : (uint8_t)r;
}

/* ------------------------------------------------------------ frame rate */

kn_status kn_eval_blend_x2(const uint8_t *in, int F, int H, int W, uint8_t *out) {
    KN_TRY(check_clip("blend x2", in, out, F, H, W));
    const size_t fb = (size_t)H * W * 3;
    for (int i = 0; i < F; i++) {
        const uint8_t *a = in + (size_t)i * fb;
        const uint8_t *b = i + 1 < F ? a + fb : a; /* the last frame repeats */
        uint8_t *o0 = out + (size_t)(2 * i) * fb, *o1 = o0 + fb;
        memcpy(o0, a, fb);
        for (size_t k = 0; k < fb; k++)
            o1[k] = (uint8_t)(((unsigned)a[k] + b[k] + 1) >> 1);
    }
    return KN_OK;
}

kn_status kn_eval_subsample_frames(const uint8_t *in, int F, int H, int W, int k, uint8_t *out) {
    KN_TRY(check_clip("subsample frames", in, out, F, H, W));
    if (k < 1)
        return kn_fail(KN_ERR_ARG, "subsample frames: step %d < 1", k);
    const size_t fb = (size_t)H * W * 3;
    for (int i = 0, t = 0; t < F; i++, t += k)
        memcpy(out + (size_t)i * fb, in + (size_t)t * fb, fb);
    return KN_OK;
}

/* ------------------------------------------------------------ resolution */

#define MAX_TAPS 6 /* 2 x the largest support (Lanczos-3) */

static int support(kn_resample_kind k) { return k == KN_RESAMPLE_BILINEAR ? 1 : k == KN_RESAMPLE_BICUBIC ? 2 : 3; }

static double sinc(double x) {
    if (x == 0)
        return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double kernel(kn_resample_kind k, double x) {
    x = fabs(x);
    switch (k) {
    case KN_RESAMPLE_BILINEAR:
        return x < 1 ? 1 - x : 0;
    case KN_RESAMPLE_BICUBIC: { /* Keys (1981), a = -0.5 */
        const double a = -0.5;
        if (x <= 1)
            return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2)
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0;
    }
    case KN_RESAMPLE_LANCZOS3:
        return x < 3 ? sinc(x) * sinc(x / 3) : 0;
    default:
        return 0;
    }
}

/* Tap table of one axis: n_in -> s n_in; idx/w (s n_in, MAX_TAPS), unused taps have weight 0. */
static void taps(kn_resample_kind kind, int64_t n, int s, int32_t *idx, float *w) {
    const int R = support(kind);
    for (int64_t i = 0; i < n * s; i++) {
        double u = (i + 0.5) / s - 0.5;
        int64_t j0 = (int64_t)floor(u) - R + 1;
        double ws[MAX_TAPS], sum = 0;
        for (int t = 0; t < MAX_TAPS; t++) {
            ws[t] = t < 2 * R ? kernel(kind, u - (double)(j0 + t)) : 0;
            sum += ws[t];
        }
        for (int t = 0; t < MAX_TAPS; t++) {
            int64_t j = KN_MIN(KN_MAX(j0 + t, 0), n - 1);
            idx[i * MAX_TAPS + t] = (int32_t)j;
            w[i * MAX_TAPS + t] = (float)(ws[t] / sum);
        }
    }
}

typedef struct {
    const float *x;  /* (N, H, W) */
    float *tmp;      /* (N, H, sW) after the horizontal pass */
    float *y;        /* (N, sH, sW) */
    int64_t H, W, s;
    const int32_t *ix, *iy;
    const float *wx, *wy;
} up_ctx;

static void up_rows_h(int64_t r, void *p) { /* one input row: (n, h) -> tmp row */
    const up_ctx *c = p;
    const float *src = c->x + r * c->W;
    float *dst = c->tmp + r * c->W * c->s;
    for (int64_t o = 0; o < c->W * c->s; o++) {
        float acc = 0;
        for (int t = 0; t < MAX_TAPS; t++)
            acc += c->wx[o * MAX_TAPS + t] * src[c->ix[o * MAX_TAPS + t]];
        dst[o] = acc;
    }
}

static void up_rows_v(int64_t r, void *p) { /* one output row (n, oy) */
    const up_ctx *c = p;
    const int64_t Ho = c->H * c->s, Wo = c->W * c->s, n = r / Ho, oy = r % Ho;
    const float *plane = c->tmp + n * c->H * Wo;
    float *dst = c->y + r * Wo;
    for (int64_t o = 0; o < Wo; o++)
        dst[o] = 0;
    for (int t = 0; t < MAX_TAPS; t++) {
        const float wt = c->wy[oy * MAX_TAPS + t];
        const float *src = plane + (int64_t)c->iy[oy * MAX_TAPS + t] * Wo;
        for (int64_t o = 0; o < Wo; o++)
            dst[o] += wt * src[o];
    }
}

kn_status kn_eval_upsample_f32(kn_resample_kind kind, const float *x, int64_t N, int64_t H, int64_t W, int s,
                               float *y) {
    if ((unsigned)kind >= KN_RESAMPLE_COUNT)
        return kn_fail(KN_ERR_ARG, "upsample: unknown kind %d", (int)kind);
    if (!x || !y)
        return kn_fail(KN_ERR_ARG, "upsample: NULL input or output");
    if (N < 1 || H < 1 || W < 1 || H > (1 << 20) || W > (1 << 20))
        return kn_fail(KN_ERR_ARG, "upsample: bad plane size (%lld, %lld, %lld)", (long long)N, (long long)H,
                       (long long)W);
    if (s < 1 || s > 8)
        return kn_fail(KN_ERR_ARG, "upsample: factor %d outside 1..8", s);
    /* tap tables and the intermediate: set-up of the call, not inside the loops */
    int32_t *ix = malloc(sizeof(int32_t) * MAX_TAPS * (size_t)(W * s + H * s));
    float *wx = malloc(sizeof(float) * MAX_TAPS * (size_t)(W * s + H * s));
    float *tmp = malloc(sizeof(float) * (size_t)(N * H * W * s));
    if (!ix || !wx || !tmp) {
        free(ix), free(wx), free(tmp);
        return kn_fail(KN_ERR_NOMEM, "upsample: out of memory for (%lld, %lld, %lld) x %d", (long long)N,
                       (long long)H, (long long)W, s);
    }
    int32_t *iy = ix + MAX_TAPS * W * s;
    float *wy = wx + MAX_TAPS * W * s;
    taps(kind, W, s, ix, wx);
    taps(kind, H, s, iy, wy);
    up_ctx c = {x, tmp, y, H, W, s, ix, iy, wx, wy};
    kn_parallel_for(N * H, up_rows_h, &c);
    kn_parallel_for(N * H * s, up_rows_v, &c);
    free(ix), free(wx), free(tmp);
    return KN_OK;
}

kn_status kn_eval_upsample_clip(kn_resample_kind kind, const uint8_t *in, int F, int H, int W, int s, uint8_t *out) {
    KN_TRY(check_clip("upsample", in, out, F, H, W));
    if (s < 1 || s > 8)
        return kn_fail(KN_ERR_ARG, "upsample: factor %d outside 1..8", s);
    const size_t hw = (size_t)H * W, HW = hw * s * s;
    float *x = malloc(sizeof(float) * 3 * (size_t)F * (hw + HW));
    if (!x)
        return kn_fail(KN_ERR_NOMEM, "upsample: out of memory for %d frames of %dx%d", F, H, W);
    float *y = x + 3 * (size_t)F * hw;
    for (int f = 0; f < F; f++) /* (F, H, W, 3) -> planes (F*3, H, W) */
        for (int ch = 0; ch < 3; ch++)
            for (size_t i = 0; i < hw; i++)
                x[((size_t)f * 3 + ch) * hw + i] = in[((size_t)f * hw + i) * 3 + ch];
    kn_status st = kn_eval_upsample_f32(kind, x, 3 * (int64_t)F, H, W, s, y);
    if (st == KN_OK)
        for (int f = 0; f < F; f++)
            for (int ch = 0; ch < 3; ch++)
                for (size_t i = 0; i < HW; i++)
                    out[((size_t)f * HW + i) * 3 + ch] = round_u8(y[((size_t)f * 3 + ch) * HW + i]);
    free(x);
    return st;
}

kn_status kn_eval_area_down(const uint8_t *in, int F, int H, int W, int k, uint8_t *out) {
    KN_TRY(check_clip("area downsample", in, out, F, H, W));
    if (k < 1 || H % k || W % k)
        return kn_fail(KN_ERR_ARG, "area downsample: %dx%d is not a multiple of the factor %d", H, W, k);
    const int h = H / k, w = W / k;
    const unsigned kk = (unsigned)(k * k);
    for (int f = 0; f < F; f++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < 3; ch++) {
                    unsigned sum = 0;
                    for (int dy = 0; dy < k; dy++)
                        for (int dx = 0; dx < k; dx++)
                            sum += in[(((size_t)f * H + (size_t)(y * k + dy)) * W + (size_t)(x * k + dx)) * 3 + ch];
                    out[(((size_t)f * h + y) * w + x) * 3 + ch] = (uint8_t)((2 * sum + kk) / (2 * kk));
                }
    return KN_OK;
}

/* ------------------------------------------------------------ measures */

double kn_eval_psnr(const uint8_t *a, const uint8_t *truth, size_t n) { return kn_shapes_psnr(a, truth, n); }

kn_status kn_eval_temporal_scores(const uint8_t *clip, int F, int H, int W, int fps, const kn_shapes_caption *cap,
                                  kn_eval_temporal *out) {
    if (!cap || !out)
        return kn_fail(KN_ERR_ARG, "temporal scores: NULL caption or output");
    kn_shapes_score sc;
    KN_TRY(kn_shapes_score_clip(clip, F, H, W, fps, cap, &sc));
    double cv = 0;
    int n = 0;
    for (int o = 0; o < cap->n; o++)
        if (sc.obj[o].presence > 0) {
            cv += sc.obj[o].area_cv;
            n++;
        }
    out->flicker = sc.flicker;
    out->area_cv = n ? cv / n : NAN;
    out->exact = sc.exact;
    return KN_OK;
}

void kn_eval_diff(const uint8_t *a, const uint8_t *b, size_t n, float gain, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        float d = gain * fabsf((float)a[i] - (float)b[i]);
        out[i] = d >= 255.0f ? 255 : (uint8_t)(d + 0.5f);
    }
}

kn_status kn_eval_temporal_diff(const uint8_t *in, int F, int H, int W, float gain, uint8_t *out) {
    KN_TRY(check_clip("temporal diff", in, out, F, H, W));
    const size_t fb = (size_t)H * W * 3;
    memset(out, 0, fb);
    for (int t = 1; t < F; t++)
        kn_eval_diff(in + (size_t)t * fb, in + (size_t)(t - 1) * fb, fb, gain, out + (size_t)t * fb);
    return KN_OK;
}

kn_status kn_eval_tile(const uint8_t *const *clips, int rows, int cols, int F, int H, int W, uint8_t *out) {
    KN_TRY(check_clip("tile", clips, out, F, H, W));
    if (rows < 1 || cols < 1 || rows > 64 || cols > 64)
        return kn_fail(KN_ERR_ARG, "tile: bad grid %dx%d", rows, cols);
    const size_t Wo = (size_t)cols * W, row = (size_t)W * 3;
    for (int f = 0; f < F; f++)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                const uint8_t *src = clips[r * cols + c];
                for (int y = 0; y < H; y++) {
                    uint8_t *dst = out + (((size_t)f * rows * H + (size_t)r * H + y) * Wo + (size_t)c * W) * 3;
                    if (src)
                        memcpy(dst, src + ((size_t)f * H + y) * row, row);
                    else
                        memset(dst, 0, row);
                }
            }
    return KN_OK;
}

kn_status kn_eval_flicker_panel(const uint8_t *const *clips, int n, int F, int H, int W, float gain, uint8_t *out) {
    KN_TRY(check_clip("flicker panel", clips, out, F, H, W));
    if (n < 1 || n > 8)
        return kn_fail(KN_ERR_ARG, "flicker panel: %d clips, want 1..8", n);
    const size_t cb = (size_t)F * H * W * 3;
    uint8_t *diff = malloc(cb * (size_t)n);
    if (!diff)
        return kn_fail(KN_ERR_NOMEM, "flicker panel: out of memory");
    const uint8_t *cells[16];
    kn_status st = KN_OK;
    for (int i = 0; i < n && st == KN_OK; i++) {
        if (!clips[i]) {
            st = kn_fail(KN_ERR_ARG, "flicker panel: clip %d is NULL", i);
            break;
        }
        cells[i] = clips[i];
        cells[n + i] = diff + cb * (size_t)i;
        st = kn_eval_temporal_diff(clips[i], F, H, W, gain, diff + cb * (size_t)i);
    }
    if (st == KN_OK)
        st = kn_eval_tile(cells, 2, n, F, H, W, out);
    free(diff);
    return st;
}
