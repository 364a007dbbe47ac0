/* plot.h — loss curves from the training log, drawn into an RGB8 image (no plotting library).
 *
 *     kn_loss_log log;
 *     if (kn_loss_log_read("run/log.csv", &log) != KN_OK) { ... kn_last_error() ... }
 *     kn_plot_opts po = kn_plot_default_opts();
 *     po.smooth = 20; po.log_y = 1;
 *     kn_plot_loss_png(&log, &po, "loss.png");       // atomic: a failure leaves no file
 *     kn_loss_log_free(&log);
 *
 * The log is the CSV `kinema train` writes: a header naming at least the columns stage, step and
 * loss (in any order; `stage,step,loss,seconds` in practice), then one row per step. Rows of
 * several stages may interleave; each stage becomes one series, in order of first appearance.
 * Blank lines and repeated header lines (concatenated logs) are skipped. A loss of nan/inf is
 * kept out of the plot (the line breaks there) and counted in nonfinite. Every other malformed
 * input is a one-line KN_ERR_FORMAT error naming the file and line.
 *
 * The picture: one line per stage in a fixed palette (kn_plot_color), a light grid, tick labels
 * on both axes (a built-in 5x7 bitmap font), axis titles "step" and "loss" (or "loss (log)"), and a
 * legend in the top right corner. Screen y grows downwards: a larger value is drawn higher.
 * With smoothing, each stage's raw curve is drawn in a pale tint of its colour and the trailing
 * moving average (mean of the last `smooth` finite points of that stage) on top in full colour. */
#ifndef KN_IO_PLOT_H
#define KN_IO_PLOT_H

#include "kinema.h"

#define KN_PLOT_MAX_SERIES 16
#define KN_PLOT_NAME_MAX 32
#define KN_PLOT_MAX_DIM 8192

typedef struct kn_loss_series {
    char stage[KN_PLOT_NAME_MAX];
    int64_t n;
    double *step, *loss; /* (n), malloc'd; loss may hold nan/inf (not drawn) */
} kn_loss_series;

typedef struct kn_loss_log {
    int nseries;
    kn_loss_series series[KN_PLOT_MAX_SERIES];
    int64_t rows;      /* data rows read */
    int64_t nonfinite; /* rows whose loss was nan or inf */
} kn_loss_log;

/* Parses a log from memory; name is used in error messages ("name:LINE: ..."). */
kn_status kn_loss_log_parse(const char *text, size_t n, const char *name, kn_loss_log *log);
/* Reads and parses a log file (at most 1 GiB). On failure *log is empty. */
kn_status kn_loss_log_read(const char *path, kn_loss_log *log);
void kn_loss_log_free(kn_loss_log *log);

typedef struct kn_plot_opts {
    int width, height; /* pixels, 160..KN_PLOT_MAX_DIM x 120..KN_PLOT_MAX_DIM (default 800 x 500) */
    int smooth;        /* > 1: trailing moving average over this many points */
    int log_y;         /* 1: logarithmic y axis (every drawn loss must then be > 0) */
} kn_plot_opts;

kn_plot_opts kn_plot_default_opts(void);

/* Colour of series i (RGB, 3 bytes); the palette has 8 entries and repeats. */
const uint8_t *kn_plot_color(int i);

/* Where things went (for tests and for callers that annotate the picture). */
typedef struct kn_plot_layout {
    int x0, y0, x1, y1;         /* plot rectangle [x0, x1) x [y0, y1); curves are clipped to it */
    int lx0, ly0, lx1, ly1;     /* legend box (all 0 when it did not fit) */
    double xmin, xmax;          /* step at pixel column x0 and x1 - 1 */
    double ymin, ymax;          /* axis value (log10(loss) on a log axis) at rows y1 - 1 and y0 */
} kn_plot_layout;

/* Draws the log into rgb (height, width, 3). Fails (KN_ERR_ARG / KN_ERR_FORMAT) on bad sizes, a
 * log with nothing finite to draw, or a non-positive loss on a log axis. lay may be NULL. */
kn_status kn_plot_render(const kn_loss_log *log, const kn_plot_opts *o, uint8_t *rgb, kn_plot_layout *lay);

/* Renders and writes a PNG atomically (src/io/image.h). */
kn_status kn_plot_loss_png(const kn_loss_log *log, const kn_plot_opts *o, const char *png_path);

/* ---- the bitmap font (exposed for tests) */

/* Pixel width of s drawn at the given scale (each glyph 5x7 plus one column of spacing). */
int kn_plot_text_width(const char *s, int scale);
/* Draws s with its top-left corner at (x, y); clipped to the image. Upper case is drawn as lower
 * case; characters without a glyph are drawn as '?'. */
void kn_plot_text(uint8_t *rgb, int height, int width, int x, int y, const char *s, int scale, const uint8_t color[3]);
/* Row bits of c's glyph (7 rows, bit 4 = leftmost column), or NULL if the font has none. */
const uint8_t *kn_plot_glyph(char c);

#endif
