/* test_folder_data.c — the folder clip source over a temp folder of synthetic clips: listing and
 * order, resampling + center crop + resize, frame repeat, images, captions, wrapping, errors. */
#include "kt.h"

#include "io/folder_data.h"
#include "io/image.h"
#include "io/video.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_file(const char *dir, const char *name, const char *text, size_t n) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    KT_CHECKF(f != NULL, "cannot write %s", p);
    if (!f) return;
    fwrite(text, 1, n, f);
    fclose(f);
}

static void put_text(const char *dir, const char *name, const char *text) { put_file(dir, name, text, strlen(text)); }

static void fill(kn_video *v, int t, int y0, int y1, int x0, int x1, int r, int g, int b) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            uint8_t *p = kn_video_frame(v, t) + ((size_t)y * v->width + x) * 3;
            p[0] = (uint8_t)r, p[1] = (uint8_t)g, p[2] = (uint8_t)b;
        }
}

static const int GIF_RGB[3][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};

/* a_clip.gif: 3 frames at 4 fps, 32x32, red / green / blue.
 * b_clip.y4m: 6 frames at 8 fps, 48 wide x 32 high: a gray 32x32 middle (level 20 + 40 t) between
 *             8-column red bands that the center crop must remove.
 * c_still.png: 20 wide x 40 high: black top, orange (200,100,50) middle 20 rows, white bottom.
 * d_nocap.gif: no caption (skipped). Plus non-media files and a sub-folder (ignored). */
static const char *make_folder(void) {
    static char dir[640];
    snprintf(dir, sizeof dir, "%s/clips", kt_tmpdir());
    mkdir(dir, 0755);
    char p[700];
    kn_video v;
    KT_OK(kn_video_alloc(&v, 3, 32, 32, 4));
    for (int t = 0; t < 3; t++) fill(&v, t, 0, 32, 0, 32, GIF_RGB[t][0], GIF_RGB[t][1], GIF_RGB[t][2]);
    snprintf(p, sizeof p, "%s/a_clip.gif", dir);
    KT_OK(kn_video_write(p, &v, NULL));
    snprintf(p, sizeof p, "%s/d_nocap.gif", dir);
    KT_OK(kn_video_write(p, &v, NULL));
    kn_video_free(&v);
    KT_OK(kn_video_alloc(&v, 6, 32, 48, 8));
    for (int t = 0; t < 6; t++) {
        fill(&v, t, 0, 32, 0, 48, 255, 0, 0);
        fill(&v, t, 0, 32, 8, 40, 20 + 40 * t, 20 + 40 * t, 20 + 40 * t);
    }
    snprintf(p, sizeof p, "%s/b_clip.y4m", dir);
    KT_OK(kn_video_write(p, &v, NULL));
    kn_video_free(&v);
    KT_OK(kn_video_alloc(&v, 1, 40, 20, 8));
    fill(&v, 0, 10, 30, 0, 20, 200, 100, 50);
    fill(&v, 0, 30, 40, 0, 20, 255, 255, 255);
    snprintf(p, sizeof p, "%s/c_still.png", dir);
    KT_OK(kn_image_write_png(p, v.rgb, 40, 20));
    kn_video_free(&v);
    put_text(dir, "a_clip.txt", "  a red\ngreen\r\n\tblue  clip \n");
    put_text(dir, "b_clip.txt", "gray fade");
    put_text(dir, "c_still.txt", "an orange square");
    put_text(dir, "notes.txt", "not a caption of anything");
    put_text(dir, "readme.md", "hello");
    snprintf(p, sizeof p, "%s/sub", dir);
    mkdir(p, 0755);
    put_text(p, "e.txt", "inside a sub-folder");
    return dir;
}

enum { S = 16, F = 8, FPS = 8 };
#define CLIP_N ((size_t)3 * F * S * S)

static float px(const float *clip, int c, int t, int y, int x) { return clip[(((size_t)c * F + t) * S + y) * S + x]; }

/* max |clip(c, t, :, :) - (v * 2/255 - 1)| */
static double frame_err(const float *clip, int t, int r, int g, int b) {
    double e = 0;
    int rgb[3] = {r, g, b};
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) e = fmax(e, fabs(px(clip, c, t, y, x) - (rgb[c] * 2.0f / 255 - 1.0f)));
    return e;
}

KT_TEST(folder_data_lists_sorted_captioned_media) {
    const char *dir = make_folder();
    kn_folder_source *src = kn_folder_source_open(dir, S, F, FPS);
    KT_CHECKF(src != NULL, "open: %s", kn_last_error());
    if (!src) return;
    KT_CHECK(kn_folder_source_count(src) == 3);
    KT_CHECK(kn_folder_source_skipped(src) == 1);
    KT_CHECK(!strcmp(kn_folder_source_name(src, 0), "a_clip.gif"));
    KT_CHECK(!strcmp(kn_folder_source_name(src, 1), "b_clip.y4m"));
    KT_CHECK(!strcmp(kn_folder_source_name(src, 2), "c_still.png"));
    KT_CHECK(!strcmp(kn_folder_source_name(src, 4), "b_clip.y4m"));
    KT_CHECK(!kn_folder_source_is_image(src, 0) && !kn_folder_source_is_image(src, 1));
    KT_CHECK(kn_folder_source_is_image(src, 2) && kn_folder_source_is_image(src, 3000002));
    kn_folder_source_close(src);
    /* a trailing slash names the same folder */
    char d2[700];
    snprintf(d2, sizeof d2, "%s/", dir);
    src = kn_folder_source_open(d2, S, F, FPS);
    KT_CHECK(src && kn_folder_source_count(src) == 3);
    kn_folder_source_close(src);
}

KT_TEST(folder_data_clips_and_captions) {
    const char *dir = make_folder();
    kn_folder_source *src = kn_folder_source_open(dir, S, F, FPS);
    KT_CHECKF(src != NULL, "open: %s", kn_last_error());
    if (!src) return;
    float *clip = malloc(CLIP_N * sizeof(float)), *again = malloc(CLIP_N * sizeof(float));
    char cap[256], cap2[256];

    /* the GIF (3 frames at 4 fps) read at 8 fps: kn_video_resample makes 3 * 8/4 = 6 frames, frame t
     * showing source frame min(floor(t * 4/8 + 0.5), 2) (nearest, ties up): red, green, green,
     * blue, blue, blue; frames 6 and 7 repeat the last (blue) */
    KT_OK(kn_folder_source_clip(0, clip, cap, sizeof cap, src));
    KT_CHECKF(!strcmp(cap, "a red green blue clip"), "caption '%s'", cap);
    static const int want[F] = {0, 1, 1, 2, 2, 2, 2, 2};
    for (int t = 0; t < F; t++) {
        int k = want[t];
        double e = frame_err(clip, t, GIF_RGB[k][0], GIF_RGB[k][1], GIF_RGB[k][2]);
        KT_CHECKF(e < 1e-6, "gif frame %d differs from source frame %d by %g", t, k, e);
    }

    /* the Y4M: center crop removes the red bands; 6 frames then 2 repeats of the last */
    KT_OK(kn_folder_source_clip(1, clip, cap, sizeof cap, src));
    KT_CHECK(!strcmp(cap, "gray fade"));
    for (int t = 0; t < F; t++) {
        int lv = 20 + 40 * (t < 6 ? t : 5);
        double e = frame_err(clip, t, lv, lv, lv);
        KT_CHECKF(e < 3.0 / 255, "y4m frame %d differs from gray %d by %g", t, lv, e);
    }
    KT_CHECK(!memcmp(clip + (size_t)6 * S * S, clip + (size_t)5 * S * S, (size_t)S * S * sizeof(float)));

    /* the PNG: the middle square is orange; every frame the same */
    KT_OK(kn_folder_source_clip(2, clip, cap, sizeof cap, src));
    KT_CHECK(!strcmp(cap, "an orange square"));
    for (int t = 0; t < F; t++) KT_CHECKF(frame_err(clip, t, 200, 100, 50) < 1e-6, "image frame %d", t);
    double lo = 1, hi = -1;
    for (size_t i = 0; i < CLIP_N; i++) lo = fmin(lo, clip[i]), hi = fmax(hi, clip[i]);
    KT_CHECK(lo >= -1 && hi <= 1);

    /* wrapping: clip n + i is clip i, bit for bit */
    for (int i = 0; i < 3; i++) {
        KT_OK(kn_folder_source_clip((uint64_t)i, clip, cap, sizeof cap, src));
        KT_OK(kn_folder_source_clip((uint64_t)i + 3 * 1000003ull, again, cap2, sizeof cap2, src));
        KT_CHECKF(!memcmp(clip, again, CLIP_N * sizeof(float)) && !strcmp(cap, cap2), "clip %d does not wrap", i);
    }

    /* a short caption buffer cuts the caption */
    char small[6];
    KT_OK(kn_folder_source_clip(0, clip, small, sizeof small, src));
    KT_CHECKF(!strcmp(small, "a red"), "'%s'", small);
    free(clip), free(again);
    kn_folder_source_close(src);
}

KT_TEST(folder_data_same_clip_for_any_thread_count) {
    const char *dir = make_folder();
    kn_folder_source *src = kn_folder_source_open(dir, 12, 4, FPS); /* 32 -> 12: a real area resize */
    KT_CHECKF(src != NULL, "open: %s", kn_last_error());
    if (!src) return;
    size_t n = (size_t)3 * 4 * 12 * 12;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    char cap[64];
    int prev = kn_set_threads(1);
    for (int i = 0; i < 3; i++) {
        kn_set_threads(1);
        KT_OK(kn_folder_source_clip((uint64_t)i, a, cap, sizeof cap, src));
        for (int t = 2; t <= 3; t++) {
            kn_set_threads(t);
            KT_OK(kn_folder_source_clip((uint64_t)i, b, cap, sizeof cap, src));
            KT_CHECKF(!memcmp(a, b, n * sizeof(float)), "item %d differs at %d threads", i, t);
        }
    }
    kn_set_threads(prev);
    free(a), free(b);
    kn_folder_source_close(src);
}

KT_TEST(folder_data_utf8_caption_cut) {
    char dir[640];
    snprintf(dir, sizeof dir, "%s/utf", kt_tmpdir());
    mkdir(dir, 0755);
    uint8_t rgb[8 * 8 * 3];
    memset(rgb, 128, sizeof rgb);
    char p[700];
    snprintf(p, sizeof p, "%s/x.png", dir);
    KT_OK(kn_image_write_png(p, rgb, 8, 8));
    put_text(dir, "x.txt", "h\xc3\xa9llo");
    kn_folder_source *src = kn_folder_source_open(dir, 8, 1, 8);
    KT_CHECKF(src != NULL, "open: %s", kn_last_error());
    if (!src) return;
    float clip[3 * 8 * 8];
    char cap[3], full[16];
    KT_OK(kn_folder_source_clip(0, clip, cap, sizeof cap, src));
    KT_CHECKF(!strcmp(cap, "h"), "cut inside a character: '%s'", cap);
    KT_OK(kn_folder_source_clip(0, clip, full, sizeof full, src));
    KT_CHECK(!strcmp(full, "h\xc3\xa9llo"));
    KT_NEAR(clip[0], 128 * 2.0f / 255 - 1.0f, 1e-7);
    kn_folder_source_close(src);
}

KT_TEST(folder_data_errors) {
    char dir[640], p[700];
    /* empty folder */
    snprintf(dir, sizeof dir, "%s/empty", kt_tmpdir());
    mkdir(dir, 0755);
    KT_CHECK(kn_folder_source_open(dir, 16, 4, 8) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "no captioned") && strstr(kn_last_error(), "empty"), "'%s'", kn_last_error());
    /* only uncaptioned media */
    put_text(dir, "lonely.png", "not even a png");
    KT_CHECK(kn_folder_source_open(dir, 16, 4, 8) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "1 media file without"), "'%s'", kn_last_error());
    /* missing folder, bad arguments */
    KT_CHECK(kn_folder_source_open("/nonexistent/clips", 16, 4, 8) == NULL);
    KT_CHECK(strstr(kn_last_error(), "/nonexistent/clips") != NULL);
    KT_CHECK(kn_folder_source_open(dir, 4, 4, 8) == NULL && strstr(kn_last_error(), "size"));
    KT_CHECK(kn_folder_source_open(dir, 16, 0, 8) == NULL && strstr(kn_last_error(), "frames"));
    KT_CHECK(kn_folder_source_open(dir, 16, 4, 0) == NULL && strstr(kn_last_error(), "fps"));
    KT_CHECK(kn_folder_source_open(NULL, 16, 4, 8) == NULL);
    /* undecodable files name themselves */
    snprintf(dir, sizeof dir, "%s/bad", kt_tmpdir());
    mkdir(dir, 0755);
    put_text(dir, "a_bad.gif", "GIF89a garbage");
    put_text(dir, "a_bad.txt", "broken");
    put_text(dir, "b_bad.png", "\x89PNG\r\n\x1a\n truncated");
    put_text(dir, "b_bad.txt", "broken too");
    put_text(dir, "c_bad.mp4", "not a video at all");
    put_text(dir, "c_bad.txt", "still broken");
    put_text(dir, "d_gone.y4m", "YUV4MPEG2 W8 H8 F8:1 C444\nFRAME\n");
    put_text(dir, "d_gone.txt", "caption removed later");
    kn_folder_source *src = kn_folder_source_open(dir, 8, 2, 8);
    KT_CHECKF(src && kn_folder_source_count(src) == 4, "open: %s", kn_last_error());
    if (!src) return;
    float clip[3 * 2 * 8 * 8];
    char cap[64];
    const char *names[3] = {"a_bad.gif", "b_bad.png", "c_bad.mp4"};
    for (int i = 0; i < 3; i++) {
        kn_status st = kn_folder_source_clip((uint64_t)i, clip, cap, sizeof cap, src);
        KT_CHECKF(st != KN_OK, "%s decoded", names[i]);
        KT_CHECKF(strstr(kn_last_error(), names[i]) != NULL, "message '%s' does not name %s", kn_last_error(), names[i]);
        KT_CHECKF(strchr(kn_last_error(), '\n') == NULL, "multi-line message '%s'", kn_last_error());
    }
    snprintf(p, sizeof p, "%s/d_gone.txt", dir);
    unlink(p);
    KT_CHECK(kn_folder_source_clip(3, clip, cap, sizeof cap, src) == KN_ERR_IO);
    KT_CHECKF(strstr(kn_last_error(), "d_gone.txt") != NULL, "'%s'", kn_last_error());
    KT_CHECK(kn_folder_source_clip(3, NULL, cap, sizeof cap, src) == KN_ERR_ARG);
    KT_CHECK(kn_folder_source_clip(3, clip, cap, 0, src) == KN_ERR_ARG);
    kn_folder_source_close(src);
}

KT_TEST(folder_data_mp4_through_libav) {
    /* 8 frames at 16 fps read at 8 fps: 4 frames, showing source frames 0, 2, 4, 6 (levels
     * 30 + 25 t); frames 4 and 5 repeat the last. H.264 is lossy (and the libav round trip is
     * about 6 levels off here): a tolerance of 8 levels, far below the 50 levels between frames. */
    char dir[640], p[700];
    snprintf(dir, sizeof dir, "%s/mp4", kt_tmpdir());
    mkdir(dir, 0755);
    kn_video v;
    KT_OK(kn_video_alloc(&v, 8, 32, 64, 16));
    for (int t = 0; t < 8; t++) {
        fill(&v, t, 0, 32, 0, 64, 0, 0, 255);
        fill(&v, t, 0, 32, 16, 48, 30 + 25 * t, 30 + 25 * t, 30 + 25 * t);
    }
    snprintf(p, sizeof p, "%s/m.mp4", dir);
    KT_OK(kn_video_write(p, &v, NULL));
    kn_video_free(&v);
    put_text(dir, "m.txt", "fade\n");
    kn_folder_source *src = kn_folder_source_open(dir, 8, 6, 8);
    KT_CHECKF(src != NULL, "open: %s", kn_last_error());
    if (!src) return;
    float clip[3 * 6 * 8 * 8];
    char cap[16];
    KT_OK(kn_folder_source_clip(0, clip, cap, sizeof cap, src));
    KT_CHECK(!strcmp(cap, "fade"));
    for (int t = 0; t < 6; t++) {
        int lv = 30 + 25 * 2 * (t < 4 ? t : 3);
        double e = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 64; i++) e = fmax(e, fabs(clip[((size_t)c * 6 + t) * 64 + i] - (lv * 2.0f / 255 - 1.0f)));
        KT_CHECKF(e < 16.0 / 255, "mp4 frame %d differs from gray %d by %g", t, lv, e * 127.5);
    }
    kn_folder_source_close(src);
}
