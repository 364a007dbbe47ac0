/* test_video.c — every video format round-trips (frames, size, fps, pixels), ffprobe agrees on
 * the MP4, GIF banding is no worse than FFmpeg's palettegen, malformed files give one-line
 * errors, failed writes leave no file, resampling matches a naive reference on any thread count. */
#include "kt.h"

#include "io/image.h"
#include "io/video.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KN_MAX_(a, b) ((a) > (b) ? (a) : (b))

/* A smooth moving clip: gradients in x and y, a drift in t, and a soft moving disc. */
static void make_clip(kn_video *v, int T, int H, int W, double fps) {
    KT_OK(kn_video_alloc(v, T, H, W, fps));
    for (int t = 0; t < T; t++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *p = kn_video_frame(v, t) + ((size_t)y * W + x) * 3;
                double cx = W * (0.3 + 0.4 * t / T), cy = H * 0.5, d = hypot(x - cx, y - cy) / (0.25 * H);
                double disc = 80 * exp(-d * d);
                p[0] = (uint8_t)fmin(255, 20 + 200.0 * x / W + disc);
                p[1] = (uint8_t)fmin(255, 30 + 180.0 * y / H + 2 * t);
                p[2] = (uint8_t)fmin(255, 200 - 150.0 * x / W + disc * 0.5);
            }
}

static double max_err(const kn_video *a, const kn_video *b) {
    int m = 0;
    for (size_t i = 0; i < (size_t)a->frames * a->height * a->width * 3; i++) m = KN_MAX_(m, abs(a->rgb[i] - b->rgb[i]));
    return m;
}
static double mean_err(const kn_video *a, const kn_video *b) {
    size_t n = (size_t)a->frames * a->height * a->width * 3;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs(a->rgb[i] - b->rgb[i]);
    return s / n;
}

static double psnr(const kn_video *a, const kn_video *b) {
    size_t n = (size_t)a->frames * a->height * a->width * 3;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)(a->rgb[i] - b->rgb[i]) * (a->rgb[i] - b->rgb[i]);
    return s == 0 ? 99 : 10 * log10(255.0 * 255.0 / (s / n));
}

static int same_shape(const kn_video *a, const kn_video *b) {
    return a->frames == b->frames && a->height == b->height && a->width == b->width;
}

/* one line, non-empty */
static int one_line_error(void) {
    const char *e = kn_last_error();
    return e && *e && !strchr(e, '\n');
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* no leftover temporary files (".*.kntmp*") in dir */
static int no_tmp_files(const char *dir) {
    char out[4096];
    kt_run(out, sizeof out, "ls -A '%s' | grep -c kntmp", dir);
    return atoi(out) == 0;
}

KT_TEST(video_y4m_roundtrip_444_and_420) {
    kn_video v, r;
    make_clip(&v, 5, 24, 34, 30000.0 / 1001);
    char path[1024];
    snprintf(path, sizeof path, "%s/a.y4m", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r));
    KT_NEAR(r.fps, 30000.0 / 1001, 1e-12); /* written as F30000:1001 */
    if (same_shape(&v, &r)) KT_CHECKF(max_err(&v, &r) <= 2, "444 max err %g", max_err(&v, &r));
    kn_video_free(&r);
    /* 420jpeg, odd sizes: chroma is averaged 2x2, so a smooth clip stays close */
    kn_video_write_opts o = kn_video_write_default_opts();
    o.y4m_420 = 1;
    snprintf(path, sizeof path, "%s/b.y4m", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, &o));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r));
    if (same_shape(&v, &r)) KT_CHECKF(psnr(&v, &r) > 38, "420 psnr %g", psnr(&v, &r));
    kn_video_free(&r);
    /* FFmpeg reads our 444 file the same way (full range honoured) */
    char out[256];
    snprintf(path, sizeof path, "%s/a.y4m", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "ffmpeg -v error -i '%s' -pix_fmt rgb24 -f rawvideo -y '%s/ff.rgb'", path,
                    kt_tmpdir());
    KT_CHECK(rc == 0);
    char raw[1024];
    snprintf(raw, sizeof raw, "%s/ff.rgb", kt_tmpdir());
    uint8_t *d;
    size_t n;
    KT_OK(kn_read_file(raw, 1 << 26, &d, &n));
    KT_CHECK(n == (size_t)5 * 24 * 34 * 3);
    if (n == (size_t)5 * 24 * 34 * 3) {
        int m = 0;
        for (size_t i = 0; i < n; i++) m = KN_MAX_(m, abs(d[i] - v.rgb[i]));
        KT_CHECKF(m <= 3, "ffmpeg decode of our y4m differs by %d", m);
    }
    free(d);
    kn_video_free(&v);
}

KT_TEST(video_png_sequences_and_sheet_are_exact) {
    kn_video v, r;
    make_clip(&v, 4, 10, 12, 12.5);
    char path[1024];
    snprintf(path, sizeof path, "%s/f%%03d.png", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r) && memcmp(v.rgb, r.rgb, (size_t)4 * 10 * 12 * 3) == 0);
    KT_NEAR(r.fps, 12.5, 1e-12); /* carried in a tEXt chunk */
    kn_video_free(&r);
    snprintf(path, sizeof path, "%s/seq/", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r) && memcmp(v.rgb, r.rgb, (size_t)4 * 10 * 12 * 3) == 0);
    kn_video_free(&r);
    /* contact sheet: 2x2 grid, frame 3 at the bottom right */
    snprintf(path, sizeof path, "%s/c.sheet.png", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    kn_image im;
    KT_OK(kn_image_read(path, &im));
    KT_CHECK(im.width == 24 && im.height == 20);
    if (im.width == 24 && im.height == 20)
        for (int y = 0; y < 10; y++)
            KT_CHECK(!memcmp(im.rgb + ((size_t)(10 + y) * 24 + 12) * 3, kn_video_frame(&v, 3) + (size_t)y * 12 * 3, 36));
    kn_image_free(&im);
    KT_CHECK(no_tmp_files(kt_tmpdir()));
    kn_video_free(&v);
}

KT_TEST(video_gif_roundtrip_timing_and_loop) {
    kn_video v, r;
    make_clip(&v, 16, 32, 40, 16); /* 16 fps = 6.25 cs per frame */
    char path[1024], out[512];
    snprintf(path, sizeof path, "%s/a.gif", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r));
    KT_NEAR(r.fps, 16.0, 1e-9); /* delays 6,7,6,6 x4 = 100 cs exactly */
    if (same_shape(&v, &r)) {
        KT_CHECKF(mean_err(&v, &r) < 5.0, "gif mean abs err %g", mean_err(&v, &r));
        KT_CHECKF(max_err(&v, &r) <= 24, "gif max err %g", max_err(&v, &r));
    }
    kn_video_free(&r);
    /* ffprobe: per-frame durations and the loop extension */
    int rc = kt_run(out, sizeof out,
                    "ffprobe -v error -show_entries frame=pkt_duration -of csv=p=0 '%s' | head -4 | tr '\\n' ' '", path);
    KT_CHECKF(rc == 0 && !strncmp(out, "6 7 6 6", 7), "gif delays: '%s'", out);
    rc = kt_run(out, sizeof out, "grep -c NETSCAPE2.0 '%s'", path);
    KT_CHECK(rc == 0 && atoi(out) == 1);
    /* dithered variant stays close on average */
    kn_video_write_opts o = kn_video_write_default_opts();
    o.dither = 1;
    KT_OK(kn_video_write(path, &v, &o));
    KT_OK(kn_video_read(path, NULL, &r));
    if (same_shape(&v, &r)) KT_CHECKF(mean_err(&v, &r) < 8.0, "dithered gif mean abs err %g", mean_err(&v, &r));
    kn_video_free(&r);
    kn_video_free(&v);
}

/* A horizontal gradient with more colours than a palette holds: our median cut against FFmpeg's
 * palettegen+paletteuse (dither=none), both measured against the source by mean abs error. */
KT_TEST(video_gif_banding_no_worse_than_ffmpeg_palettegen) {
    enum { T = 4, H = 16, W = 320 };
    kn_video v, ours, ff;
    KT_OK(kn_video_alloc(&v, T, H, W, 8));
    for (int t = 0; t < T; t++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *p = kn_video_frame(&v, t) + ((size_t)y * W + x) * 3;
                p[0] = (uint8_t)(x * 255 / (W - 1));
                p[1] = (uint8_t)(40 + x * 150 / (W - 1) + 10 * t);
                p[2] = (uint8_t)(255 - x * 200 / (W - 1));
            }
    const char *d = kt_tmpdir();
    char path[1024], out[512];
    snprintf(path, sizeof path, "%s/src.rgb", d);
    FILE *f = fopen(path, "wb");
    KT_CHECK(f && fwrite(v.rgb, 1, (size_t)T * H * W * 3, f) == (size_t)T * H * W * 3);
    if (f) fclose(f);
    /* rawvideo rgb24 (not y4m) so that FFmpeg's input is bit-identical to ours */
    int rc = kt_run(out, sizeof out,
                    "ffmpeg -v error -f rawvideo -pix_fmt rgb24 -s %dx%d -r 8 -i '%s/src.rgb' -vf "
                    "\"split[a][b];[a]palettegen[p];[b][p]paletteuse=dither=none\" -y '%s/ff.gif'",
                    W, H, d, d);
    KT_CHECKF(rc == 0, "ffmpeg failed: %s", out);
    snprintf(path, sizeof path, "%s/ff.gif", d);
    KT_OK(kn_video_read(path, NULL, &ff));
    snprintf(path, sizeof path, "%s/ours.gif", d);
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &ours));
    KT_CHECK(same_shape(&v, &ff) && same_shape(&v, &ours));
    if (same_shape(&v, &ff) && same_shape(&v, &ours)) {
        double eo = mean_err(&v, &ours), ef = mean_err(&v, &ff);
        printf("    gif gradient mean abs err: kinema %.3f, ffmpeg palettegen %.3f\n", eo, ef);
        KT_CHECKF(eo <= ef, "kinema GIF error %.3f > ffmpeg's %.3f", eo, ef);
    }
    kn_video_free(&v);
    kn_video_free(&ours);
    kn_video_free(&ff);
}

KT_TEST(video_mp4_h264_roundtrip_and_ffprobe) {
    kn_video v, r;
    make_clip(&v, 12, 48, 64, 12);
    char path[1024], out[512];
    snprintf(path, sizeof path, "%s/a.mp4", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    int rc = kt_run(out, sizeof out,
                    "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                    "stream=codec_name,pix_fmt,nb_read_frames,r_frame_rate -of csv=p=0 '%s'", path);
    KT_CHECKF(rc == 0 && !strncmp(out, "h264,yuv420p,12/1,12", 20), "ffprobe: '%s'", out);
    /* +faststart: the moov atom comes before mdat */
    rc = kt_run(out, sizeof out, "head -c 4096 '%s' | grep -c moov", path);
    KT_CHECKF(atoi(out) >= 1, "moov not at the start (faststart)");
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r));
    KT_NEAR(r.fps, 12, 1e-9);
    if (same_shape(&v, &r)) KT_CHECKF(psnr(&v, &r) > 35, "mp4 psnr %.2f dB", psnr(&v, &r));
    kn_video_free(&r);
    kn_video_free(&v);
    /* odd sizes are padded to even ones */
    make_clip(&v, 3, 15, 21, 7.5);
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(r.frames == 3 && r.width == 22 && r.height == 16);
    KT_NEAR(r.fps, 7.5, 1e-9);
    kn_video_free(&r);
    kn_video_free(&v);
}

KT_TEST(video_webm_vp9_roundtrip) {
    kn_video v, r;
    make_clip(&v, 8, 48, 64, 24);
    char path[1024], out[512];
    snprintf(path, sizeof path, "%s/a.webm", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    int rc = kt_run(out, sizeof out,
                    "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                    "stream=codec_name,nb_read_frames,r_frame_rate -of csv=p=0 '%s'", path);
    KT_CHECKF(rc == 0 && !strncmp(out, "vp9,24/1,8", 10), "ffprobe: '%s'", out);
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r));
    KT_NEAR(r.fps, 24, 1e-9);
    if (same_shape(&v, &r)) KT_CHECKF(psnr(&v, &r) > 33, "webm psnr %.2f dB", psnr(&v, &r));
    kn_video_free(&r);
    kn_video_free(&v);
}

KT_TEST(video_webp_animated_roundtrip) {
    kn_video v, r;
    make_clip(&v, 6, 32, 40, 10);
    char path[1024];
    snprintf(path, sizeof path, "%s/a.webp", kt_tmpdir());
    KT_OK(kn_video_write(path, &v, NULL));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r));
    KT_NEAR(r.fps, 10, 1e-9);
    if (same_shape(&v, &r)) KT_CHECKF(psnr(&v, &r) > 33, "webp psnr %.2f dB", psnr(&v, &r));
    kn_video_free(&r);
    kn_video_write_opts o = kn_video_write_default_opts();
    o.webp_lossless = 1;
    KT_OK(kn_video_write(path, &v, &o));
    KT_OK(kn_video_read(path, NULL, &r));
    KT_CHECK(same_shape(&v, &r) && memcmp(v.rgb, r.rgb, (size_t)6 * 32 * 40 * 3) == 0);
    kn_video_free(&r);
    kn_video_free(&v);
}

/* ------------------------------------------------------------- malformed */

static void write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    KT_CHECK(f != NULL);
    if (!f) return;
    KT_CHECK(fwrite(d, 1, n, f) == n);
    fclose(f);
}

static void expect_read_error(const char *name, const void *d, size_t n, const char *needle) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", kt_tmpdir(), name);
    write_bytes(path, d, n);
    kn_video v;
    kn_status st = kn_video_read(path, NULL, &v);
    KT_CHECKF(st != KN_OK, "%s: read succeeded", name);
    KT_CHECKF(one_line_error(), "%s: error is not one line: '%s'", name, kn_last_error());
    KT_CHECKF(!needle || strstr(kn_last_error(), needle), "%s: '%s' does not mention '%s'", name, kn_last_error(),
              needle);
    if (st == KN_OK) kn_video_free(&v);
}

KT_TEST(video_malformed_inputs_give_one_line_errors) {
    kn_video v;
    make_clip(&v, 3, 16, 16, 8);
    char path[1024];
    uint8_t *d;
    size_t n;
    const char *formats[] = {"gif", "y4m", "mp4"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/good.%s", kt_tmpdir(), formats[k]);
        KT_OK(kn_video_write(path, &v, NULL));
        KT_OK(kn_read_file(path, 1 << 24, &d, &n));
        char name[64];
        snprintf(name, sizeof name, "trunc.%s", formats[k]);
        expect_read_error(name, d, n * 2 / 3, NULL);
        free(d);
    }
    static const char y0[] = "YUV4MPEG2 W0 H0 F25:1\nFRAME\n";
    expect_read_error("zero.y4m", y0, sizeof y0 - 1, "frame size");
    static const char yh[] = "YUV4MPEG2 W100000 H100000 F25:1 C444\nFRAME\n";
    expect_read_error("huge.y4m", yh, sizeof yh - 1, "outside");
    static const char yf[] = "YUV4MPEG2 W2 H2 F0:0\n";
    expect_read_error("badfps.y4m", yf, sizeof yf - 1, "frame rate");
    static const char yn[] = "YUV4MPEG2 W2 H2 F1:1 C444\nFRAMX\n123456789012";
    expect_read_error("badframe.y4m", yn, sizeof yn - 1, "FRAME");
    static const uint8_t g0[] = {'G', 'I', 'F', '8', '9', 'a', 0, 0, 0, 0, 0, 0, 0, 0x3b};
    expect_read_error("zero.gif", g0, sizeof g0, "screen size");
    static const uint8_t gh[] = {'G', 'I', 'F', '8', '9', 'a', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x3b};
    expect_read_error("huge.gif", gh, sizeof gh, NULL);
    static const uint8_t gn[] = {'G', 'I', 'F', '8', '9', 'a', 4, 0, 4, 0, 0, 0, 0, 0x3b};
    expect_read_error("noframes.gif", gn, sizeof gn, "no frames");
    expect_read_error("junk.mp4", "this is not a video at all", 26, NULL);
    /* a PNG whose IHDR says 0 x 0, and one whose data stops after the signature */
    static const uint8_t p0[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                 0, 0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    expect_read_error("zero.png", p0, sizeof p0, "png");
    expect_read_error("sig.png", p0, 8, "png");
    kn_video_free(&v);
}

KT_TEST(video_failed_write_leaves_no_file) {
    kn_video v;
    make_clip(&v, 3, 8, 8, 8);
    const char *d = kt_tmpdir();
    char path[1024];
    const char *exts[] = {"gif", "y4m", "mp4", "webm", "webp", "sheet.png"};
    for (int k = 0; k < 6; k++) {
        /* the target name is an existing directory: the final rename fails */
        snprintf(path, sizeof path, "%s/blocked.%s", d, exts[k]);
        KT_CHECK(mkdir(path, 0777) == 0);
        snprintf(path, sizeof path, "%s/blocked.%s/x", d, exts[k]);
        write_bytes(path, "x", 1); /* non-empty, so rename cannot replace it */
        snprintf(path, sizeof path, "%s/blocked.%s", d, exts[k]);
        KT_CHECKF(kn_video_write(path, &v, NULL) != KN_OK, "%s: write over a directory succeeded", exts[k]);
        KT_CHECK(one_line_error());
        /* into a directory that does not exist */
        snprintf(path, sizeof path, "%s/nodir/a.%s", d, exts[k]);
        KT_CHECK(kn_video_write(path, &v, NULL) != KN_OK);
        KT_CHECK(!exists(path));
    }
    KT_CHECK(no_tmp_files(d));
    /* a frame sequence that fails at frame 2 removes frames 0 and 1 */
    snprintf(path, sizeof path, "%s/s2/", d);
    KT_CHECK(mkdir(path, 0777) == 0);
    snprintf(path, sizeof path, "%s/s2/f2.png", d);
    KT_CHECK(mkdir(path, 0777) == 0);
    snprintf(path, sizeof path, "%s/s2/f2.png/x", d);
    write_bytes(path, "x", 1);
    snprintf(path, sizeof path, "%s/s2/f%%d.png", d);
    KT_CHECK(kn_video_write(path, &v, NULL) != KN_OK);
    snprintf(path, sizeof path, "%s/s2/f0.png", d);
    KT_CHECK(!exists(path));
    snprintf(path, sizeof path, "%s/s2", d);
    KT_CHECK(no_tmp_files(path));
    /* bad arguments */
    snprintf(path, sizeof path, "%s/a.avi2", d);
    KT_CHECK(kn_video_write(path, &v, NULL) == KN_ERR_UNSUPPORTED && one_line_error());
    snprintf(path, sizeof path, "%s/a%%d%%d.png", d);
    KT_CHECK(kn_video_write(path, &v, NULL) == KN_ERR_ARG && one_line_error());
    snprintf(path, sizeof path, "%s/a%%s.png", d);
    KT_CHECK(kn_video_write(path, &v, NULL) == KN_ERR_ARG && one_line_error());
    kn_video e = {0};
    KT_CHECK(kn_video_write(path, &e, NULL) == KN_ERR_ARG && one_line_error());
    KT_CHECK(kn_video_alloc(&e, 1, 0, 4, 8) == KN_ERR_ARG);
    KT_CHECK(kn_video_alloc(&e, 1, 20000, 4, 8) == KN_ERR_ARG);
    KT_CHECK(kn_video_alloc(&e, 1, 4, 4, 0) == KN_ERR_ARG);
    kn_video_free(&v);
}

/* ------------------------------------------------------ resampling, tensors */

KT_TEST(video_resample_matches_naive_and_is_thread_invariant) {
    kn_video v, a, b, c;
    make_clip(&v, 10, 36, 48, 20);
    /* halving = 2x2 box average, frames at 10 fps = every other source frame */
    kn_set_threads(1);
    KT_OK(kn_video_resample(&v, 10, 24, 18, &a));
    KT_CHECK(a.frames == 5 && a.width == 24 && a.height == 18);
    int bad = 0;
    for (int t = 0; t < a.frames; t++)
        for (int y = 0; y < 18; y++)
            for (int x = 0; x < 24; x++)
                for (int k = 0; k < 3; k++) {
                    const uint8_t *s = kn_video_frame(&v, 2 * t);
                    int sum = s[((2 * y) * 48 + 2 * x) * 3 + k] + s[((2 * y) * 48 + 2 * x + 1) * 3 + k] +
                              s[((2 * y + 1) * 48 + 2 * x) * 3 + k] + s[((2 * y + 1) * 48 + 2 * x + 1) * 3 + k];
                    int ref = (int)floor(sum / 4.0 + 0.5);
                    bad += abs(kn_video_frame(&a, t)[(y * 24 + x) * 3 + k] - ref) > 1;
                }
    KT_CHECKF(bad == 0, "%d pixels differ from the 2x2 average", bad);
    kn_video_free(&a);
    /* a non-integer shrink and a growth, on 1, 2 and 3 threads: identical bytes */
    kn_video_resample(&v, 7, 31, 53, &a);
    kn_set_threads(2);
    KT_OK(kn_video_resample(&v, 7, 31, 53, &b));
    kn_set_threads(3);
    KT_OK(kn_video_resample(&v, 7, 31, 53, &c));
    kn_set_threads(1);
    KT_CHECK(a.frames == 4 && same_shape(&a, &b) && same_shape(&a, &c));
    KT_CHECK(!memcmp(a.rgb, b.rgb, (size_t)a.frames * 53 * 31 * 3));
    KT_CHECK(!memcmp(a.rgb, c.rgb, (size_t)a.frames * 53 * 31 * 3));
    kn_video_free(&a);
    kn_video_free(&b);
    kn_video_free(&c);
    /* identity resize is exact; constant images stay constant when growing */
    KT_OK(kn_video_resample(&v, 0, 48, 36, &a));
    KT_CHECK(!memcmp(a.rgb, v.rgb, (size_t)10 * 36 * 48 * 3));
    kn_video_free(&a);
    kn_video_free(&v);
}

KT_TEST(video_tensor_roundtrip) {
    kn_video v, r;
    make_clip(&v, 3, 5, 7, 8);
    kn_tensor t = {0};
    KT_OK(kn_video_to_tensor(NULL, &v, 1, &t));
    KT_CHECK(t.ndim == 5 && t.shape[0] == 1 && t.shape[1] == 3 && t.shape[2] == 3 && t.shape[3] == 5 && t.shape[4] == 7);
    float *x = t.data;
    /* channel 1 of pixel (t=2, y=4, x=6) */
    size_t plane = 3 * 5 * 7, i = (size_t)2 * 35 + 4 * 7 + 6;
    KT_NEAR(x[plane + i], kn_video_frame(&v, 2)[(4 * 7 + 6) * 3 + 1] / 127.5 - 1, 1e-6);
    KT_OK(kn_video_from_tensor(&t, 1, 8, &r));
    KT_CHECK(same_shape(&v, &r) && !memcmp(v.rgb, r.rgb, (size_t)3 * 5 * 7 * 3));
    kn_video_free(&r);
    x[0] = 5.0f; /* clamped */
    x[1] = NAN;
    KT_OK(kn_video_from_tensor(&t, 1, 8, &r));
    KT_CHECK(r.rgb[0] == 255 && r.rgb[3] == 0);
    kn_video_free(&r);
    kn_tensor_free(&t);
    kn_tensor bad = {0};
    int64_t shape[5] = {1, 4, 3, 5, 7};
    KT_OK(kn_tensor_alloc(NULL, &bad, KN_F32, 5, shape));
    KT_CHECK(kn_video_from_tensor(&bad, 1, 8, &r) == KN_ERR_SHAPE && one_line_error());
    kn_tensor_free(&bad);
    kn_video_free(&v);
}

KT_TEST(video_convert_cli) {
    kn_video v;
    make_clip(&v, 8, 24, 32, 8);
    const char *d = kt_tmpdir();
    char path[1024], out[2048];
    snprintf(path, sizeof path, "%s/in.y4m", d);
    KT_OK(kn_video_write(path, &v, NULL));
    int rc = kt_run(out, sizeof out, "%s convert '%s' -o '%s/out.mp4' --fps 4 --size 16x12 2>&1", kt_bin(), path, d);
    KT_CHECKF(rc == 0, "convert failed: %s", out);
    rc = kt_run(out, sizeof out,
                "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                "stream=codec_name,width,height,nb_read_frames,r_frame_rate -of csv=p=0 '%s/out.mp4'", d);
    KT_CHECKF(rc == 0 && !strncmp(out, "h264,16,12,4/1,4", 16), "ffprobe: '%s'", out);
    rc = kt_run(out, sizeof out, "%s convert '%s/nonexistent.gif' -o '%s/x.gif' 2>&1", kt_bin(), d, d);
    KT_CHECK(rc != 0 && strstr(out, "kinema: ") && strchr(out, '\n') == out + strlen(out) - 1);
    rc = kt_run(out, sizeof out, "%s convert '%s' -o '%s/x.gif' --size 0x3 2>&1", kt_bin(), path, d);
    KT_CHECK(rc != 0 && strstr(out, "--size"));
    kn_video_free(&v);
}

/* A hand-made GIF exercising what our writer never emits: partial frames, disposal 3 (restore
 * previous) and 2 (clear to background), a transparent index, an interlaced frame. */
#include <gif_lib.h>
KT_TEST(video_gif_reader_disposal_partial_transparent_interlaced) {
    char path[1024];
    snprintf(path, sizeof path, "%s/hand.gif", kt_tmpdir());
    int err = 0;
    GifFileType *g = EGifOpenFileName(path, false, &err);
    KT_CHECK(g != NULL);
    if (!g) return;
    EGifSetGifVersion(g, true);
    GifColorType cols[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    ColorMapObject *cm = GifMakeMapObject(4, cols);
    KT_CHECK(EGifPutScreenDesc(g, 4, 4, 2, 0, cm) == GIF_OK);
    struct { int x, y, w, h, disposal, transp, interlace; GifByteType px[16]; } fr[5] = {
        {0, 0, 4, 4, DISPOSE_DO_NOT, -1, 0, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
        {1, 1, 2, 2, DISPOSE_PREVIOUS, -1, 0, {2, 2, 2, 2}},
        {0, 0, 2, 2, DISPOSE_BACKGROUND, -1, 0, {3, 3, 3, 3}},
        {2, 3, 2, 1, DISPOSE_DO_NOT, 0, 0, {0, 2}},
        /* interlaced: rows go out in the order 0, 2, 1, 3; row y has colour y */
        {0, 0, 4, 4, DISPOSE_DO_NOT, -1, 1, {0, 0, 0, 0, 2, 2, 2, 2, 1, 1, 1, 1, 3, 3, 3, 3}},
    };
    for (int i = 0; i < 5; i++) {
        GraphicsControlBlock gcb = {.DisposalMode = fr[i].disposal, .DelayTime = 10,
                                    .TransparentColor = fr[i].transp};
        GifByteType ext[4];
        EGifGCBToExtension(&gcb, ext);
        KT_CHECK(EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, 4, ext) == GIF_OK);
        KT_CHECK(EGifPutImageDesc(g, fr[i].x, fr[i].y, fr[i].w, fr[i].h, fr[i].interlace, NULL) == GIF_OK);
        for (int y = 0; y < fr[i].h; y++) KT_CHECK(EGifPutLine(g, fr[i].px + y * fr[i].w, fr[i].w) == GIF_OK);
    }
    KT_CHECK(EGifCloseFile(g, &err) == GIF_OK);
    GifFreeMapObject(cm);
    kn_video v;
    KT_OK(kn_video_read(path, NULL, &v));
    KT_CHECK(v.frames == 5 && v.width == 4 && v.height == 4);
    KT_NEAR(v.fps, 10, 1e-9);
    if (v.frames != 5) return;
    /* expected palette index per frame and pixel */
    static const int want[5][16] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {1, 1, 1, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 1, 1, 1},
        {3, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, /* frame 1 was undone (disposal 3) */
        {0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2}, /* frame 2's rect cleared; (2,3) transparent */
        {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
    };
    for (int t = 0; t < 5; t++)
        for (int i = 0; i < 16; i++) {
            const uint8_t *p = kn_video_frame(&v, t) + 3 * i;
            const GifColorType *c = &cols[want[t][i]];
            KT_CHECKF(p[0] == c->Red && p[1] == c->Green && p[2] == c->Blue, "frame %d pixel %d: %d,%d,%d", t, i,
                      p[0], p[1], p[2]);
        }
    kn_video_free(&v);
}
