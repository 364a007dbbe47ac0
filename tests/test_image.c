/* test_image.c — PNG/JPEG decoding against FFmpeg's decoder, exact PNG round trips, atomic
 * writes, one-line errors on malformed images. */
#include "kt.h"

#include "io/image.h"
#include "io/video.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define KN_MAX_(a, b) ((a) > (b) ? (a) : (b))

static int one_line_error(void) {
    const char *e = kn_last_error();
    return e && *e && !strchr(e, '\n');
}

static void fill_smooth(uint8_t *p, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(255 * x / (w - 1));
            q[1] = (uint8_t)(255 * y / (h - 1));
            q[2] = (uint8_t)((x * 3 + y * 5) & 255);
        }
}

/* Decodes path with ffmpeg into RGBA and composites over black, the same rule as ours. */
static uint8_t *ffmpeg_rgb(const char *path, int h, int w) {
    char raw[1024], out[512];
    snprintf(raw, sizeof raw, "%s/ff.rgba", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "ffmpeg -v error -i '%s' -frames:v 1 -pix_fmt rgba -f rawvideo -y '%s'", path, raw);
    KT_CHECKF(rc == 0, "ffmpeg cannot decode %s: %s", path, out);
    uint8_t *d = NULL;
    size_t n = 0;
    if (rc != 0 || kn_read_file(raw, 1 << 26, &d, &n) != KN_OK || n != (size_t)h * w * 4) {
        KT_CHECKF(0, "ffmpeg output of %s has %zu bytes, want %d", path, n, h * w * 4);
        free(d);
        return NULL;
    }
    uint8_t *rgb = malloc((size_t)h * w * 3);
    for (size_t i = 0; i < (size_t)h * w; i++)
        for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)((d[4 * i + k] * d[4 * i + 3] + 127) / 255);
    free(d);
    return rgb;
}

KT_TEST(image_png_roundtrip_is_exact_and_atomic) {
    enum { H = 37, W = 53 };
    uint8_t *a = malloc(H * W * 3);
    for (int i = 0; i < H * W * 3; i++) a[i] = (uint8_t)(i * 7919 >> 3);
    char path[1024], out[256];
    snprintf(path, sizeof path, "%s/a.png", kt_tmpdir());
    KT_OK(kn_image_write_png(path, a, H, W));
    kn_image im;
    KT_OK(kn_image_read(path, &im));
    KT_CHECK(im.height == H && im.width == W && im.rgb && !memcmp(im.rgb, a, H * W * 3));
    kn_image_free(&im);
    /* ffmpeg agrees on the file we wrote */
    uint8_t *ff = ffmpeg_rgb(path, H, W);
    KT_CHECK(ff && !memcmp(ff, a, H * W * 3));
    free(ff);
    kt_run(out, sizeof out, "ls -A '%s' | grep -c kntmp", kt_tmpdir());
    KT_CHECK(atoi(out) == 0);
    /* failures: a missing directory, a bad size */
    snprintf(path, sizeof path, "%s/missing/a.png", kt_tmpdir());
    KT_CHECK(kn_image_write_png(path, a, H, W) == KN_ERR_IO && one_line_error());
    struct stat sb;
    KT_CHECK(stat(path, &sb) != 0);
    snprintf(path, sizeof path, "%s/b.png", kt_tmpdir());
    KT_CHECK(kn_image_write_png(path, a, 0, W) == KN_ERR_ARG && one_line_error());
    KT_CHECK(stat(path, &sb) != 0);
    free(a);
}

/* Every colour type and depth of the fuzz seeds (gray, gray+alpha, 1-bit, palette, RGBA,
 * 16-bit, interlaced) decodes like FFmpeg's PNG decoder. */
KT_TEST(image_png_color_types_match_ffmpeg) {
    static const char *names[] = {"gray", "ya8", "monob", "pal8", "rgba", "rgb48be", "interlaced_gray"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "fuzz/corpus/png/%s.png", names[i]);
        kn_image im;
        KT_OK(kn_image_read(path, &im));
        if (!im.rgb) continue;
        uint8_t *ff = ffmpeg_rgb(path, im.height, im.width);
        if (ff) {
            int m = 0;
            for (size_t k = 0; k < (size_t)im.height * im.width * 3; k++) m = KN_MAX_(m, abs(ff[k] - im.rgb[k]));
            KT_CHECKF(m <= 1, "%s: max diff %d vs ffmpeg", names[i], m);
        }
        free(ff);
        kn_image_free(&im);
    }
}
KT_TEST(image_jpeg_matches_ffmpeg) {
    enum { H = 48, W = 64 };
    uint8_t *a = malloc(H * W * 3);
    fill_smooth(a, H, W);
    char src[1024], path[1024], out[512];
    snprintf(src, sizeof src, "%s/src.png", kt_tmpdir());
    KT_OK(kn_image_write_png(src, a, H, W));
    static const char *fmts[] = {"yuvj420p", "yuvj444p", "yuvj422p"};
    for (int f = 0; f < 3; f++) {
        snprintf(path, sizeof path, "%s/a_%s.jpg", kt_tmpdir(), fmts[f]);
        int rc = kt_run(out, sizeof out, "ffmpeg -v error -i '%s' -pix_fmt %s -q:v 2 -y '%s'", src, fmts[f], path);
        KT_CHECKF(rc == 0, "ffmpeg jpeg encode: %s", out);
        kn_image im;
        KT_OK(kn_image_read(path, &im));
        KT_CHECK(im.height == H && im.width == W);
        uint8_t *ff = im.rgb ? ffmpeg_rgb(path, H, W) : NULL;
        if (ff) {
            double s = 0, sa = 0;
            for (int k = 0; k < H * W * 3; k++) s += abs(ff[k] - im.rgb[k]), sa += abs(a[k] - im.rgb[k]);
            s /= H * W * 3;
            sa /= H * W * 3;
            /* decoders differ in chroma upsampling (subsampled formats) and IDCT rounding */
            printf("    %s: mean abs diff %.3f vs ffmpeg's decode, %.3f vs the source\n", fmts[f], s, sa);
            KT_CHECKF(s < (f == 1 ? 1.0 : 3.0), "%s: mean diff %.3f vs ffmpeg", fmts[f], s);
            KT_CHECKF(sa < 3.0, "%s: mean diff %.3f vs the source", fmts[f], sa);
        }
        free(ff);
        kn_image_free(&im);
    }
    /* a still image reads as a one-frame clip */
    kn_video v;
    kn_video_read_opts o = kn_video_read_default_opts();
    o.default_fps = 5;
    KT_OK(kn_video_read(path, &o, &v));
    KT_CHECK(v.frames == 1 && v.width == W && v.height == H && v.fps == 5);
    kn_video_free(&v);
    free(a);
}

KT_TEST(image_malformed_inputs_give_one_line_errors) {
    enum { H = 16, W = 16 };
    uint8_t a[H * W * 3];
    fill_smooth(a, H, W);
    char path[1024], out[256];
    snprintf(path, sizeof path, "%s/a.png", kt_tmpdir());
    KT_OK(kn_image_write_png(path, a, H, W));
    uint8_t *d;
    size_t n;
    kn_image im;
    KT_OK(kn_read_file(path, 1 << 20, &d, &n));
    for (size_t cut = 0; cut < n; cut += n / 7 + 1) { /* truncated everywhere */
        kn_status st = kn_image_read_mem(d, cut, &im);
        KT_CHECKF(st != KN_OK && one_line_error() && im.rgb == NULL, "cut at %zu: %d '%s'", cut, st, kn_last_error());
    }
    /* IHDR says 100000 x 16 (over the limit), then 0 x 0; the CRC is fixed up each time so
     * that only the size is wrong */
    uint8_t *big = malloc(n);
    memcpy(big, d, n);
    big[16] = 0, big[17] = 1, big[18] = 0x86, big[19] = 0xa0;
    uint32_t crc = (uint32_t)crc32(0, big + 12, 17);
    big[29] = (uint8_t)(crc >> 24), big[30] = (uint8_t)(crc >> 16), big[31] = (uint8_t)(crc >> 8), big[32] = (uint8_t)crc;
    KT_CHECK(kn_image_read_png_mem(big, n, &im) == KN_ERR_FORMAT && one_line_error());
    KT_CHECKF(strstr(kn_last_error(), "100000x16"), "'%s'", kn_last_error());
    memset(big + 16, 0, 8);
    crc = (uint32_t)crc32(0, big + 12, 17);
    big[29] = (uint8_t)(crc >> 24), big[30] = (uint8_t)(crc >> 16), big[31] = (uint8_t)(crc >> 8), big[32] = (uint8_t)crc;
    KT_CHECK(kn_image_read_png_mem(big, n, &im) == KN_ERR_FORMAT && one_line_error());
    KT_CHECKF(strstr(kn_last_error(), "0x0"), "'%s'", kn_last_error());
    free(big);
    free(d);
    /* JPEG: truncated, and not an image at all */
    snprintf(path, sizeof path, "%s/a.jpg", kt_tmpdir());
    char src[1024];
    snprintf(src, sizeof src, "%s/a.png", kt_tmpdir());
    KT_CHECK(kt_run(out, sizeof out, "ffmpeg -v error -i '%s' -y '%s'", src, path) == 0);
    KT_OK(kn_read_file(path, 1 << 20, &d, &n));
    KT_CHECK(kn_image_read_mem(d, n / 2, &im) == KN_ERR_FORMAT && one_line_error());
    KT_CHECK(kn_image_read_mem(d, n - 40, &im) == KN_ERR_FORMAT && strstr(kn_last_error(), "Premature end"));
    KT_CHECK(kn_image_read_mem(d, 2, &im) == KN_ERR_FORMAT && one_line_error());
    free(d);
    KT_CHECK(kn_image_read_mem((const uint8_t *)"hello world", 11, &im) == KN_ERR_FORMAT && one_line_error());
    KT_CHECK(kn_image_read("/nonexistent/x.png", &im) == KN_ERR_IO && one_line_error());
}
