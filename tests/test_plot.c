/* test_plot.c — loss-log parsing, the loss plot (read back from the PNG: size, stage colours,
 * direction of the curves, smoothing, log axis), the bitmap font, and `kinema plot-loss` errors. */
#include "kt.h"

#include "io/image.h"
#include "io/plot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    KT_CHECKF(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A log with a decreasing "vae" (0.5 -> 0.05), a decreasing "unet" (1.0 -> 0.2) and an increasing
 * "ramp" stage, rows interleaved as a resumed run might write them. Returns malloc'd text. */
static char *synthetic_log(void) {
    size_t cap = 1 << 16, n = 0;
    char *t = malloc(cap);
    n += (size_t)snprintf(t + n, cap - n, "stage,step,loss,seconds\n");
    for (int i = 0; i < 120; i++) {
        double wig = (i % 2) ? 0.01 : -0.01;
        n += (size_t)snprintf(t + n, cap - n, "vae,%d,%.6g,%.3f\n", i, 0.5 * pow(0.1, i / 119.0) + wig * 0.1, i * 0.1);
        n += (size_t)snprintf(t + n, cap - n, "unet,%d,%.6g,%.3f\n", i, 1.0 - 0.8 * i / 119.0 + wig, i * 0.1);
        if (i < 60) n += (size_t)snprintf(t + n, cap - n, "ramp,%d,%.6g,%.3f\n", i * 2, 0.1 + 0.5 * i / 59.0, i * 0.1);
    }
    return t;
}

static int is_col(const uint8_t *p, const uint8_t *c) { return p[0] == c[0] && p[1] == c[1] && p[2] == c[2]; }

/* Lit pixels of colour c inside the plot rectangle, outside the legend: count, and the mean row of
 * those in the left and right thirds of their own column extent. */
static int64_t colour_stats(const kn_image *im, const kn_plot_layout *L, const uint8_t *c, double *left_y,
                            double *right_y) {
    int xmin = 1 << 30, xmax = -1;
    int64_t n = 0;
    for (int y = L->y0; y < L->y1; y++)
        for (int x = L->x0; x < L->x1; x++) {
            if (x >= L->lx0 && x < L->lx1 && y >= L->ly0 && y < L->ly1) continue;
            if (!is_col(im->rgb + ((size_t)y * im->width + x) * 3, c)) continue;
            n++;
            if (x < xmin) xmin = x;
            if (x > xmax) xmax = x;
        }
    double sl = 0, sr = 0;
    int64_t nl = 0, nr = 0;
    int third = (xmax - xmin + 1) / 3;
    for (int y = L->y0; y < L->y1; y++)
        for (int x = L->x0; x < L->x1; x++) {
            if (x >= L->lx0 && x < L->lx1 && y >= L->ly0 && y < L->ly1) continue;
            if (!is_col(im->rgb + ((size_t)y * im->width + x) * 3, c)) continue;
            if (x < xmin + third) sl += y, nl++;
            else if (x > xmax - third) sr += y, nr++;
        }
    *left_y = nl ? sl / nl : NAN;
    *right_y = nr ? sr / nr : NAN;
    return n;
}

static void check_plot(int log_y) {
    char *text = synthetic_log();
    char csv[600], png[600];
    snprintf(csv, sizeof csv, "%s/log%d.csv", kt_tmpdir(), log_y);
    snprintf(png, sizeof png, "%s/loss%d.png", kt_tmpdir(), log_y);
    write_text(csv, text);
    free(text);
    kn_loss_log log;
    KT_OK(kn_loss_log_read(csv, &log));
    KT_CHECK(log.nseries == 3 && log.rows == 300 && log.nonfinite == 0);
    KT_CHECK(!strcmp(log.series[0].stage, "vae") && !strcmp(log.series[1].stage, "unet") &&
             !strcmp(log.series[2].stage, "ramp"));
    KT_CHECK(log.series[2].n == 60 && log.series[2].step[59] == 118);
    kn_plot_opts po = kn_plot_default_opts();
    po.width = 640, po.height = 400, po.log_y = log_y;
    KT_OK(kn_plot_loss_png(&log, &po, png));
    /* the same picture in memory, for the layout */
    uint8_t *rgb = malloc((size_t)640 * 400 * 3);
    kn_plot_layout L;
    KT_OK(kn_plot_render(&log, &po, rgb, &L));
    kn_image im = {0};
    KT_OK(kn_image_read(png, &im));
    KT_CHECKF(im.width == 640 && im.height == 400, "png is %dx%d", im.width, im.height);
    if (im.rgb && im.width == 640 && im.height == 400) {
        KT_CHECK(!memcmp(im.rgb, rgb, (size_t)640 * 400 * 3));
        KT_CHECK(L.x0 > 20 && L.x1 <= 640 && L.y0 > 5 && L.y1 < 400 && L.x1 - L.x0 > 300);
        KT_CHECKF(L.lx1 > L.lx0 && L.ly1 > L.ly0, "no legend");
        for (int s = 0; s < 3; s++) {
            double yl, yr;
            int64_t n = colour_stats(&im, &L, kn_plot_color(s), &yl, &yr);
            KT_CHECKF(n > 100, "stage %d: only %lld pixels of its colour", s, (long long)n);
            /* screen rows grow downwards: a falling loss has a larger mean row on the right */
            if (s < 2) KT_CHECKF(yr > yl + 20, "stage %d should fall: mean row left %.1f right %.1f", s, yl, yr);
            else KT_CHECKF(yr < yl - 20, "ramp should rise: mean row left %.1f right %.1f", yl, yr);
            /* the legend holds a swatch of each colour */
            int64_t ln = 0;
            for (int y = L.ly0; y < L.ly1; y++)
                for (int x = L.lx0; x < L.lx1; x++) ln += is_col(im.rgb + ((size_t)y * 640 + x) * 3, kn_plot_color(s));
            KT_CHECKF(ln >= 20, "legend swatch of stage %d has %lld pixels", s, (long long)ln);
        }
        /* the first vae point lies where the axes say it should */
        const kn_loss_series *v = &log.series[0];
        double a = log_y ? log10(v->loss[0]) : v->loss[0];
        int px = L.x0 + (int)lround((v->step[0] - L.xmin) / (L.xmax - L.xmin) * (L.x1 - L.x0 - 1));
        int py = L.y1 - 1 - (int)lround((a - L.ymin) / (L.ymax - L.ymin) * (L.y1 - L.y0 - 1));
        KT_CHECKF(is_col(im.rgb + ((size_t)py * 640 + px) * 3, kn_plot_color(0)), "no vae pixel at (%d,%d)", px, py);
        /* the range covers every loss */
        for (int s = 0; s < 3; s++)
            for (int64_t i = 0; i < log.series[s].n; i++) {
                double b = log_y ? log10(log.series[s].loss[i]) : log.series[s].loss[i];
                KT_CHECK(b >= L.ymin && b <= L.ymax);
            }
    }
    kn_image_free(&im);
    free(rgb);
    kn_loss_log_free(&log);
}

KT_TEST(plot_loss_curves_linear) { check_plot(0); }
KT_TEST(plot_loss_curves_log_y) { check_plot(1); }

KT_TEST(plot_smoothing_flattens_noise) {
    /* loss alternates 1, 3: the 2-step moving average is 2 from the second point on, so the
     * full-colour (smoothed) pixels lie on one row; the pale raw curve spans both levels. */
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "stage,step,loss,seconds\n");
    for (int i = 0; i < 100; i++) n += (size_t)snprintf(text + n, sizeof text - n, "unet,%d,%d,0\n", i, i % 2 ? 3 : 1);
    kn_loss_log log;
    KT_OK(kn_loss_log_parse(text, n, "t.csv", &log));
    kn_plot_opts po = kn_plot_default_opts();
    po.width = 400, po.height = 300, po.smooth = 2;
    uint8_t *rgb = malloc((size_t)400 * 300 * 3);
    kn_plot_layout L;
    KT_OK(kn_plot_render(&log, &po, rgb, &L));
    const uint8_t *c = kn_plot_color(0);
    int ymin = 1 << 30, ymax = -1, pale = 0;
    int xstart = L.x0 + (L.x1 - L.x0) / 10;
    for (int y = L.y0; y < L.y1; y++)
        for (int x = xstart; x < L.x1; x++) {
            if (x >= L.lx0 && x < L.lx1 && y >= L.ly0 && y < L.ly1) continue;
            const uint8_t *p = rgb + ((size_t)y * 400 + x) * 3;
            if (is_col(p, c)) {
                if (y < ymin) ymin = y;
                if (y > ymax) ymax = y;
            } else if (p[0] > c[0] && p[1] > c[1] && p[2] > c[2] && !(p[0] == p[1] && p[1] == p[2])) {
                pale++;
            }
        }
    KT_CHECKF(ymax >= 0 && ymax - ymin <= 2, "smoothed curve spans rows %d..%d", ymin, ymax);
    KT_CHECKF(pale > 200, "only %d pale raw-curve pixels", pale);
    /* without smoothing, the raw curve in full colour spans the two levels */
    po.smooth = 0;
    KT_OK(kn_plot_render(&log, &po, rgb, &L));
    ymin = 1 << 30, ymax = -1;
    for (int y = L.y0; y < L.y1; y++)
        for (int x = xstart; x < L.x1; x++)
            if (!(x >= L.lx0 && x < L.lx1 && y >= L.ly0 && y < L.ly1) && is_col(rgb + ((size_t)y * 400 + x) * 3, c)) {
                if (y < ymin) ymin = y;
                if (y > ymax) ymax = y;
            }
    KT_CHECKF(ymax - ymin > (L.y1 - L.y0) / 2, "raw curve spans rows %d..%d only", ymin, ymax);
    free(rgb);
    kn_loss_log_free(&log);
}

KT_TEST(plot_nonfinite_and_repeated_header) {
    const char *t = "stage,step,loss,seconds\nvae,0,1,0\nvae,1,nan,0\n\nstage,step,loss,seconds\nvae,2,0.5,0\r\n";
    kn_loss_log log;
    KT_OK(kn_loss_log_parse(t, strlen(t), "x.csv", &log));
    KT_CHECK(log.nseries == 1 && log.rows == 3 && log.nonfinite == 1 && log.series[0].n == 3);
    KT_CHECK(log.series[0].loss[2] == 0.5);
    uint8_t *rgb = malloc((size_t)300 * 200 * 3);
    kn_plot_opts po = kn_plot_default_opts();
    po.width = 300, po.height = 200;
    KT_OK(kn_plot_render(&log, &po, rgb, NULL));
    /* a zero loss cannot go on a log axis */
    kn_loss_log_free(&log);
    const char *z = "stage,step,loss,seconds\nvae,0,1,0\nvae,1,0,0\n";
    KT_OK(kn_loss_log_parse(z, strlen(z), "z.csv", &log));
    po.log_y = 1;
    KT_CHECK(kn_plot_render(&log, &po, rgb, NULL) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "log") != NULL);
    po.log_y = 0;
    po.width = 50;
    KT_CHECK(kn_plot_render(&log, &po, rgb, NULL) == KN_ERR_ARG);
    free(rgb);
    kn_loss_log_free(&log);
}

KT_TEST(plot_log_parse_errors_name_the_line) {
    struct {
        const char *text, *want;
    } cases[] = {
        {"", "empty file"},
        {"\n  \n", "empty file"},
        {"vae,0,1.0,0\n", "t.csv:1: missing header"},
        {"stage,step,loss,seconds\n", "no data rows"},
        {"stage,step,loss,seconds\nvae,0,1.0,0\nvae,1,abc,0\n", "t.csv:3: loss 'abc' is not a number"},
        {"stage,step,loss,seconds\nvae,0,,0\n", "t.csv:2: loss '' is not a number"},
        {"stage,step,loss,seconds\nvae,x,1,0\n", "t.csv:2: step 'x'"},
        {"stage,step,loss,seconds\nvae,0,1\n", "t.csv:2: expected 4 columns"},
        {"stage,step,loss,seconds\n,0,1,0\n", "t.csv:2: empty stage"},
        {"stage,step,loss\nvae,0,1\nvae,1,2\x00,0\n", "t.csv:3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kn_loss_log log;
        size_t n = strlen(cases[i].text);
        if (i == sizeof cases / sizeof cases[0] - 1) n = 34; /* includes the NUL byte */
        kn_status st = kn_loss_log_parse(cases[i].text, n, "t.csv", &log);
        KT_CHECKF(st == KN_ERR_FORMAT, "case %zu: status %d", i, (int)st);
        KT_CHECKF(strstr(kn_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, kn_last_error(),
                  cases[i].want);
        KT_CHECKF(strchr(kn_last_error(), '\n') == NULL, "case %zu: message has a newline", i);
        KT_CHECK(log.nseries == 0 && log.rows == 0);
    }
    /* columns in another order work */
    const char *t = "seconds,loss,step,stage\n0,2.5,7,unet\n";
    kn_loss_log log;
    KT_OK(kn_loss_log_parse(t, strlen(t), "t.csv", &log));
    KT_CHECK(log.nseries == 1 && log.series[0].step[0] == 7 && log.series[0].loss[0] == 2.5);
    kn_loss_log_free(&log);
    KT_CHECK(kn_loss_log_read("/nonexistent/log.csv", &log) == KN_ERR_IO);
}

KT_TEST(plot_font_glyphs) {
    const char *need = "0123456789.-+abcdefghijklmnopqrstuvwxyz_:()";
    for (const char *p = need; *p; p++) {
        const uint8_t *g = kn_plot_glyph(*p);
        KT_CHECKF(g != NULL, "no glyph for '%c'", *p);
        if (!g) continue;
        int bits = 0;
        for (int r = 0; r < 7; r++) {
            bits += g[r] != 0;
            KT_CHECK(g[r] < 32);
        }
        KT_CHECKF(bits > 0, "glyph '%c' is blank", *p);
        for (const char *q = need; q < p; q++) {
            const uint8_t *h = kn_plot_glyph(*q);
            KT_CHECKF(!h || memcmp(g, h, 7), "glyphs '%c' and '%c' are identical", *p, *q);
        }
    }
    /* drawn pixels follow the glyph bits at scale 2 */
    uint8_t img[20 * 20 * 3];
    memset(img, 0, sizeof img);
    const uint8_t w[3] = {255, 255, 255};
    kn_plot_text(img, 20, 20, 1, 2, "4", 2, w);
    const uint8_t *g = kn_plot_glyph('4');
    int bad = 0;
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 20; x++) {
            int gx = (x - 1) / 2, gy = (y - 2) / 2, on = 0;
            if (x >= 1 && y >= 2 && gx < 5 && gy < 7) on = (g[gy] >> (4 - gx)) & 1;
            bad += (img[(y * 20 + x) * 3] == 255) != on;
        }
    KT_CHECKF(bad == 0, "%d pixels of '4' differ from its glyph", bad);
    KT_CHECK(kn_plot_text_width("12", 1) == 11 && kn_plot_text_width("", 3) == 0);
    /* upper case falls back to lower case; unknown characters to '?' */
    uint8_t a[20 * 20 * 3], b[20 * 20 * 3];
    memset(a, 0, sizeof a), memset(b, 0, sizeof b);
    kn_plot_text(a, 20, 20, 0, 0, "V", 1, w);
    kn_plot_text(b, 20, 20, 0, 0, "v", 1, w);
    KT_CHECK(!memcmp(a, b, sizeof a));
}

KT_TEST(plot_same_image_for_any_thread_count) {
    char *text = synthetic_log();
    kn_loss_log log;
    KT_OK(kn_loss_log_parse(text, strlen(text), "t.csv", &log));
    free(text);
    kn_plot_opts po = kn_plot_default_opts();
    po.smooth = 5;
    size_t nb = (size_t)po.width * po.height * 3;
    uint8_t *a = malloc(nb), *b = malloc(nb);
    int prev = kn_set_threads(1);
    KT_OK(kn_plot_render(&log, &po, a, NULL));
    for (int t = 2; t <= 3; t++) {
        kn_set_threads(t);
        memset(b, 0, nb);
        KT_OK(kn_plot_render(&log, &po, b, NULL));
        KT_CHECKF(!memcmp(a, b, nb), "image differs at %d threads", t);
    }
    kn_set_threads(prev);
    free(a), free(b);
    kn_loss_log_free(&log);
}

KT_TEST(cli_plot_loss) {
    char csv[600], png[600], out[4096];
    snprintf(csv, sizeof csv, "%s/log.csv", kt_tmpdir());
    snprintf(png, sizeof png, "%s/loss.png", kt_tmpdir());
    char *text = synthetic_log();
    write_text(csv, text);
    free(text);
    int rc = kt_run(out, sizeof out, "%s plot-loss '%s' -o '%s' --smooth 10 --log-y --width 500 --height 320", kt_bin(),
                    csv, png);
    KT_CHECKF(rc == 0, "plot-loss failed (%d): %s", rc, out);
    KT_CHECK(strstr(out, "3 stages") != NULL);
    kn_image im = {0};
    KT_OK(kn_image_read(png, &im));
    KT_CHECK(im.width == 500 && im.height == 320);
    kn_image_free(&im);
    /* malformed logs: non-zero exit, one line naming the line, no file written */
    const char *bad[] = {"stage,step,loss,seconds\nvae,0,1,0\nvae,1,oops,0\n", "", "stage,step,loss,seconds\n",
                         "step,loss\n0,1\n"};
    const char *want[] = {"log.csv:3: loss 'oops'", "empty file", "no data rows", "log.csv:1: missing header"};
    for (int i = 0; i < 4; i++) {
        char bpng[640];
        snprintf(bpng, sizeof bpng, "%s/bad%d.png", kt_tmpdir(), i);
        write_text(csv, bad[i]);
        rc = kt_run(out, sizeof out, "%s plot-loss '%s' -o '%s'", kt_bin(), csv, bpng);
        KT_CHECKF(rc != 0, "case %d: exit 0", i);
        KT_CHECKF(strstr(out, want[i]) != NULL, "case %d: '%s' lacks '%s'", i, out, want[i]);
        char *nl = strchr(out, '\n');
        KT_CHECKF(nl == NULL || nl[1] == 0, "case %d: more than one line: %s", i, out);
        KT_CHECKF(!file_exists(bpng), "case %d: %s was written", i, bpng);
    }
    rc = kt_run(out, sizeof out, "%s plot-loss '%s'", kt_bin(), csv);
    KT_CHECK(rc != 0 && strstr(out, "-o") != NULL);
}
