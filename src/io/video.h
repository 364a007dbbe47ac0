/* video.h — clips in memory and in files.
 *
 *     kn_video v;
 *     kn_video_read_opts ro = kn_video_read_default_opts();
 *     ro.fps = 8; ro.width = 256; ro.height = 256;     // optional resampling (0 = keep)
 *     if (kn_video_read("in.mp4", &ro, &v) != KN_OK) { ... kn_last_error() ... }
 *     kn_video_write("out.gif", &v, NULL);              // format from the extension
 *     kn_video_free(&v);
 *
 * In memory a clip is (T, H, W, 3) RGB8, row-major, plus a frame rate. kn_video_to_tensor /
 * kn_video_from_tensor convert to and from the models' F32 (N=1, C=3, T, H, W) layout.
 *
 * Writers (by the output name, case-insensitive; all atomic: a temporary file in the same
 * directory renamed into place when complete, so a failure leaves no file):
 *   .mp4        H.264 (libx264) yuv420p, +faststart. yuv420p needs even sides: an odd side is
 *               padded by one replicated row/column (the file is then 1 px larger).
 *   .webm       VP9 (libvpx-vp9) yuv420p, same padding rule.
 *   .gif        giflib; one palette for the whole clip by median cut over all frames, optional
 *               4x4 Bayer dithering, delays from fps accumulated in 1/100 s, infinite loop.
 *   .webp       animated WebP (WebPAnimEncoder), timestamps accumulated in ms.
 *   .y4m        YUV4MPEG2, C444 (default) or C420jpeg, full-range BT.601, fps as a rational.
 *   *.sheet.png a contact sheet: all frames in a grid (kn_video_write_sheet for control).
 *   NAME%d.png  a PNG per frame (any printf %d / %0Nd pattern, frames numbered from 0);
 *   DIR/        (a trailing slash or an existing directory) DIR/frame_00000.png, ...
 *               Each frame carries the fps in a tEXt chunk "kinema:fps".
 * Readers: .gif (giflib, disposal modes, partial frames, transparency), .y4m (444/422/420/mono),
 * PNG sequences (pattern or directory), single PNG/JPEG images (a 1-frame clip), animated
 * .webp (own RIFF/ANMF parser over libwebp's frame decoder), anything else through libavformat. */
#ifndef KN_IO_VIDEO_H
#define KN_IO_VIDEO_H

#include "kinema.h"

#define KN_VIDEO_MAX_DIM 16384
#define KN_VIDEO_MAX_FRAMES 100000
#define KN_VIDEO_MAX_BYTES ((size_t)4 << 30) /* T*H*W*3 cap of a decoded clip */

typedef struct kn_video {
    int frames, height, width;
    double fps;
    uint8_t *rgb; /* (T, H, W, 3), malloc'd, owned */
} kn_video;

/* The cap on T*H*W*3 of any decoded or allocated clip (default KN_VIDEO_MAX_BYTES); the fuzzers
 * lower it. Returns the previous value. Not thread-safe: set it once at start-up. */
size_t kn_video_set_max_bytes(size_t nbytes);

/* Allocates a zeroed clip. Fails on sizes outside the caps above. */
kn_status kn_video_alloc(kn_video *v, int frames, int height, int width, double fps);
void kn_video_free(kn_video *v);
static inline uint8_t *kn_video_frame(const kn_video *v, int t) {
    return v->rgb + (size_t)t * v->height * v->width * 3;
}

/* ------------------------------------------------------------- reading */

typedef struct {
    double fps;      /* > 0: resample in time (nearest source frame to each output time) */
    int width, height; /* > 0: resize (area average when shrinking, bilinear when growing) */
    int max_frames;  /* > 0: stop after this many output frames */
    double default_fps; /* fps to report for inputs that carry none (PNG sequences); 0 -> 8 */
} kn_video_read_opts;

kn_video_read_opts kn_video_read_default_opts(void);
kn_status kn_video_read(const char *path, const kn_video_read_opts *o, kn_video *v);

/* From memory (used by the fuzzers, and by kn_video_read). */
kn_status kn_video_read_gif_mem(const uint8_t *data, size_t n, kn_video *v);
kn_status kn_video_read_y4m_mem(const uint8_t *data, size_t n, kn_video *v);
kn_status kn_video_read_webp_mem(const uint8_t *data, size_t n, kn_video *v);

/* Resamples in time (fps > 0) and/or space (width, height > 0) into a new clip. */
kn_status kn_video_resample(const kn_video *in, double fps, int width, int height, kn_video *out);

/* ------------------------------------------------------------- writing */

typedef struct {
    int quality;    /* 0..100, higher is better (x264/vp9 CRF and WebP quality are mapped from it) */
    int dither;     /* GIF: 1 = 4x4 ordered (Bayer) dithering */
    int y4m_420;    /* Y4M: 1 = C420jpeg instead of C444 */
    int webp_lossless;
    int sheet_cols; /* contact sheets: columns (0 = about sqrt(T)) */
} kn_video_write_opts;

kn_video_write_opts kn_video_write_default_opts(void);
/* o may be NULL (defaults). */
kn_status kn_video_write(const char *path, const kn_video *v, const kn_video_write_opts *o);
kn_status kn_video_write_sheet(const char *path, const kn_video *v, int cols);

/* GIF palette quantiser (exposed for tests): median cut over every pixel of the clip into at
 * most ncolors (<= 256) entries; palette (ncolors, 3). Returns the number of colours used. */
int kn_gif_palette(const kn_video *v, int ncolors, uint8_t *palette);

/* ------------------------------------------------------------- tensors */

/* v -> t: F32 (1, 3, T, H, W), contiguous; allocated from A (heap when A is NULL) if t->data is
 * NULL, else t must already have that shape. signed_range: [-1,1], else [0,1]. */
kn_status kn_video_to_tensor(kn_arena *A, const kn_video *v, int signed_range, kn_tensor *t);
/* t: F32 (1, 3, T, H, W) or (3, T, H, W), any strides -> a new clip (values clamped, rounded). */
kn_status kn_video_from_tensor(const kn_tensor *t, int signed_range, double fps, kn_video *v);

/* ------------------------------------------- internal: shared by video*.c only
 * Each writer writes the finished file to tmp (a name next to path with the same extension);
 * kn_video_write renames it into place or removes it. */
#define KN_RESAMPLE_MAX_TAPS 66
size_t kn_video_max_bytes(void);
kn_status kn_gif_write_file(const char *tmp, const char *path, const kn_video *v, const kn_video_write_opts *o);
kn_status kn_webp_write_file(const char *tmp, const char *path, const kn_video *v, const kn_video_write_opts *o);
kn_status kn_av_write_file(const char *tmp, const char *path, const char *ext, const kn_video *v,
                           const kn_video_write_opts *o);
kn_status kn_av_read_file(const char *path, int max_frames, kn_video *v); /* max_frames > 0 stops early */

#endif
