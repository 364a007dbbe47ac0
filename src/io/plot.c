/* plot.c — the training log's loss curves as a PNG: CSV parser, tick layout, a 5x7 bitmap font,
 * Bresenham lines. See plot.h for the picture's contents. */
#include "io/plot.h"

#include "core/core.h"
#include "io/image.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ log parsing */

void kn_loss_log_free(kn_loss_log *log) {
    if (!log) return;
    for (int i = 0; i < log->nseries; i++) {
        free(log->series[i].step);
        free(log->series[i].loss);
    }
    memset(log, 0, sizeof *log);
}

/* Splits line (modified in place) at commas into at most maxf trimmed fields; returns the count
 * (which may exceed maxf: the extra fields are counted, not stored). */
static int split_fields(char *line, char **f, int maxf) {
    int nf = 0;
    char *p = line;
    for (;;) {
        char *e = strchr(p, ',');
        if (e) *e = 0;
        while (*p == ' ' || *p == '\t') p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = 0;
        if (nf < maxf) f[nf] = p;
        nf++;
        if (!e) break;
        p = e + 1;
    }
    return nf;
}

static int parse_number(const char *s, double *v) {
    if (!*s) return 0;
    char *end;
    *v = strtod(s, &end);
    return *end == 0;
}

static kn_status push_point(kn_loss_series *s, int64_t *cap, double step, double loss) {
    if (s->n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 256;
        double *a = realloc(s->step, (size_t)nc * sizeof(double));
        if (!a) return kn_fail(KN_ERR_NOMEM, "loss log: out of memory at %lld rows", (long long)s->n);
        s->step = a;
        double *b = realloc(s->loss, (size_t)nc * sizeof(double));
        if (!b) return kn_fail(KN_ERR_NOMEM, "loss log: out of memory at %lld rows", (long long)s->n);
        s->loss = b;
        *cap = nc;
    }
    s->step[s->n] = step;
    s->loss[s->n] = loss;
    s->n++;
    return KN_OK;
}

#define KN_LOG_LINE_MAX 4096
#define KN_LOG_MAX_FIELDS 64

static kn_status parse_log(const char *text, size_t n, const char *name, kn_loss_log *log) {
    int64_t cap[KN_PLOT_MAX_SERIES] = {0};
    char line[KN_LOG_LINE_MAX];
    char *f[KN_LOG_MAX_FIELDS];
    int have_header = 0, ci_stage = -1, ci_step = -1, ci_loss = -1, ncols = 0;
    size_t pos = 0;
    int64_t lineno = 0;
    while (pos < n) {
        size_t e = pos;
        while (e < n && text[e] != '\n') e++;
        lineno++;
        size_t len = e - pos;
        if (len >= sizeof line)
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: line longer than %d bytes", name, (long long)lineno,
                           KN_LOG_LINE_MAX - 1);
        memcpy(line, text + pos, len);
        line[len] = 0;
        pos = e + 1;
        if (memchr(line, 0, len))
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: NUL byte in a text file", name, (long long)lineno);
        int blank = 1;
        for (size_t i = 0; i < len && blank; i++) blank = isspace((unsigned char)line[i]) != 0;
        if (blank) continue;
        char raw[64]; /* the start of the line, for the header error */
        size_t rl = KN_MIN(len, sizeof raw - 1);
        memcpy(raw, line, rl);
        raw[rl] = 0;
        for (char *q = raw; *q; q++)
            if ((unsigned char)*q < 0x20) *q = ' ';
        int nf = split_fields(line, f, KN_LOG_MAX_FIELDS);
        if (nf > KN_LOG_MAX_FIELDS)
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: more than %d columns", name, (long long)lineno, KN_LOG_MAX_FIELDS);
        if (!have_header) {
            for (int i = 0; i < nf; i++) {
                if (!strcmp(f[i], "stage") && ci_stage < 0) ci_stage = i;
                else if (!strcmp(f[i], "step") && ci_step < 0) ci_step = i;
                else if (!strcmp(f[i], "loss") && ci_loss < 0) ci_loss = i;
            }
            if (ci_stage < 0 || ci_step < 0 || ci_loss < 0)
                return kn_fail(KN_ERR_FORMAT,
                               "%s:%lld: missing header: expected columns stage,step,loss(,seconds), got '%s'",
                               name, (long long)lineno, raw);
            have_header = 1;
            ncols = nf;
            continue;
        }
        if (nf != ncols)
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: expected %d columns like the header, got %d", name,
                           (long long)lineno, ncols, nf);
        const char *stage = f[ci_stage];
        if (!strcmp(stage, "stage") && !strcmp(f[ci_step], "step") && !strcmp(f[ci_loss], "loss"))
            continue; /* a repeated header (concatenated logs) */
        if (!*stage) return kn_fail(KN_ERR_FORMAT, "%s:%lld: empty stage name", name, (long long)lineno);
        if (strlen(stage) >= KN_PLOT_NAME_MAX)
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: stage name longer than %d bytes", name, (long long)lineno,
                           KN_PLOT_NAME_MAX - 1);
        double step, loss;
        if (!parse_number(f[ci_step], &step) || !isfinite(step))
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: step '%.40s' is not a number", name, (long long)lineno,
                           f[ci_step]);
        if (!parse_number(f[ci_loss], &loss))
            return kn_fail(KN_ERR_FORMAT, "%s:%lld: loss '%.40s' is not a number", name, (long long)lineno,
                           f[ci_loss]);
        int si = 0;
        while (si < log->nseries && strcmp(log->series[si].stage, stage)) si++;
        if (si == log->nseries) {
            if (si == KN_PLOT_MAX_SERIES)
                return kn_fail(KN_ERR_FORMAT, "%s:%lld: more than %d stages", name, (long long)lineno,
                               KN_PLOT_MAX_SERIES);
            snprintf(log->series[si].stage, KN_PLOT_NAME_MAX, "%s", stage);
            log->nseries++;
        }
        KN_TRY(push_point(&log->series[si], &cap[si], step, loss));
        log->rows++;
        if (!isfinite(loss)) log->nonfinite++;
    }
    if (!have_header) return kn_fail(KN_ERR_FORMAT, "%s: empty file (expected a header stage,step,loss,seconds)", name);
    if (log->rows == 0) return kn_fail(KN_ERR_FORMAT, "%s: no data rows after the header", name);
    return KN_OK;
}

kn_status kn_loss_log_parse(const char *text, size_t n, const char *name, kn_loss_log *log) {
    memset(log, 0, sizeof *log);
    if (!name) name = "loss log";
    if (!text && n) return kn_fail(KN_ERR_ARG, "%s: NULL text", name);
    kn_status st = parse_log(text, n, name, log);
    if (st != KN_OK) kn_loss_log_free(log);
    return st;
}

kn_status kn_loss_log_read(const char *path, kn_loss_log *log) {
    memset(log, 0, sizeof *log);
    if (!path || !*path) return kn_fail(KN_ERR_ARG, "loss log: empty path");
    uint8_t *d = NULL;
    size_t n = 0;
    KN_TRY(kn_read_file(path, (size_t)1 << 30, &d, &n));
    kn_status st = kn_loss_log_parse((const char *)d, n, path, log);
    free(d);
    return st;
}

/* ------------------------------------------------------------------ bitmap font */

/* Our own 5x7 glyphs: 7 rows top to bottom, bit 4 = leftmost column. */
typedef struct {
    char c;
    uint8_t rows[7];
} glyph;

static const glyph FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}}, {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}}, {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}}, {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
    {'g', {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}}, {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}}, {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01}}, {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}}, {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
};

const uint8_t *kn_plot_glyph(char c) {
    for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
        if (FONT[i].c == c) return FONT[i].rows;
    return NULL;
}

int kn_plot_text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (6 * n - 1) * scale : 0;
}

typedef struct {
    uint8_t *rgb;
    int H, W;
    int cx0, cy0, cx1, cy1; /* clip rectangle [cx0, cx1) x [cy0, cy1) */
} canvas;

static inline void put(const canvas *c, int x, int y, const uint8_t col[3]) {
    if (x < c->cx0 || y < c->cy0 || x >= c->cx1 || y >= c->cy1) return;
    uint8_t *p = c->rgb + ((size_t)y * c->W + x) * 3;
    p[0] = col[0], p[1] = col[1], p[2] = col[2];
}

static void fill_rect(const canvas *c, int x0, int y0, int x1, int y1, const uint8_t col[3]) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(c, x, y, col);
}

static void draw_text(const canvas *c, int x, int y, const char *s, int scale, const uint8_t col[3]) {
    for (; *s; s++, x += 6 * scale) {
        const uint8_t *g = kn_plot_glyph((char)tolower((unsigned char)*s));
        if (!g) g = kn_plot_glyph('?');
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (g[r] & (0x10 >> b)) fill_rect(c, x + b * scale, y + r * scale, x + (b + 1) * scale, y + (r + 1) * scale, col);
    }
}

void kn_plot_text(uint8_t *rgb, int height, int width, int x, int y, const char *s, int scale, const uint8_t color[3]) {
    canvas c = {rgb, height, width, 0, 0, width, height};
    draw_text(&c, x, y, s, scale < 1 ? 1 : scale, color);
}

/* Bresenham from (x0,y0) to (x1,y1) with a t x t square brush. */
static void draw_line(const canvas *c, int x0, int y0, int x1, int y1, int t, const uint8_t col[3]) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy, o = t / 2;
    for (;;) {
        fill_rect(c, x0 - o, y0 - o, x0 - o + t, y0 - o + t, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

/* ------------------------------------------------------------------ ticks */

/* 1, 2 or 5 times a power of ten, about range / target. */
static double nice_step(double range, int target) {
    double raw = range / (target > 0 ? target : 1);
    double p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* A tick label: fixed point with as many decimals as the tick step needs, or "1.5e-5" style for
 * very large or small values. */
static void fmt_tick(double v, double step, char *buf, size_t n) {
    if (fabs(v) < step * 1e-6) v = 0;
    double a = fabs(v);
    if (v != 0 && (a >= 1e6 || a < 1e-4 || step < 1e-5)) {
        /* "1.5e-5", "2e6": mantissa with up to 3 significant digits, exponent without padding */
        int k = (int)floor(log10(a));
        double m = v / pow(10, k);
        if (fabs(m) >= 9.995) m /= 10, k++;
        snprintf(buf, n, "%.3ge%d", m, k);
        return;
    }
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 8) dec = 8;
    /* a step like 0.25 (never produced, but cheap to honour) needs one more digit */
    if (dec < 8 && fabs(step * pow(10, dec) - round(step * pow(10, dec))) > 1e-6) dec++;
    snprintf(buf, n, "%.*f", dec, v);
}

#define MAX_TICKS 64

typedef struct {
    int n;
    double pos[MAX_TICKS]; /* in axis space (log10 of the value on a log axis) */
    char label[MAX_TICKS][24];
} ticks;

/* Ticks for an axis spanning [lo, hi] (axis space); log: values are 10^axis. */
static void make_ticks(double lo, double hi, int target, int log_axis, ticks *t) {
    t->n = 0;
    if (log_axis && hi - lo >= 1) {
        int k0 = (int)ceil(lo - 1e-9), k1 = (int)floor(hi + 1e-9);
        int stride = 1;
        while ((k1 - k0) / stride + 1 > (target > 1 ? target : 2)) stride++;
        /* few decades: also 2x and 5x each power of ten */
        static const double MULT[3] = {1, 2, 5};
        int nm = (k1 - k0 + 1) * 3 <= target + 1 ? 3 : 1;
        for (int k = k0 - 1; k <= k1 && t->n < MAX_TICKS; k += stride) {
            for (int j = 0; j < nm && t->n < MAX_TICKS; j++) {
                double a = k + log10(MULT[j]);
                if (a < lo - 1e-9 || a > hi + 1e-9) continue;
                t->pos[t->n] = a;
                double v = MULT[j] * pow(10, k);
                if (k >= -3 && k <= 4) fmt_tick(v, pow(10, k), t->label[t->n], sizeof t->label[0]);
                else snprintf(t->label[t->n], sizeof t->label[0], "%de%d", (int)MULT[j], k);
                t->n++;
            }
        }
        return;
    }
    double vlo = log_axis ? pow(10, lo) : lo, vhi = log_axis ? pow(10, hi) : hi;
    double step = nice_step(vhi - vlo, target);
    for (double v = ceil(vlo / step - 1e-9) * step; v <= vhi + step * 1e-9 && t->n < MAX_TICKS; v += step) {
        if (log_axis && v <= 0) continue;
        t->pos[t->n] = log_axis ? log10(v) : v;
        fmt_tick(v, step, t->label[t->n], sizeof t->label[0]);
        t->n++;
    }
}

/* ------------------------------------------------------------------ rendering */

static const uint8_t PALETTE[8][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
    {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {188, 189, 34},
};

const uint8_t *kn_plot_color(int i) { return PALETTE[((i % 8) + 8) % 8]; }

kn_plot_opts kn_plot_default_opts(void) { return (kn_plot_opts){.width = 800, .height = 500, .smooth = 0, .log_y = 0}; }

/* The drawn values of series s: raw (if smooth <= 1) or the trailing mean of the last `smooth`
 * finite losses; non-finite points stay NAN. y (n) and fin (n, scratch) are caller memory. */
static void series_values(const kn_loss_series *s, int smooth, double *y, double *fin) {
    if (smooth <= 1) {
        memcpy(y, s->loss, (size_t)s->n * sizeof(double));
        return;
    }
    /* A running window sum over the finite values, recomputed exactly every `smooth` values so
     * that rounding cannot drift over a long log (amortised O(1) per point). */
    double sum = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < s->n; i++) {
        double v = s->loss[i];
        if (!isfinite(v)) {
            y[i] = NAN;
            continue;
        }
        fin[m++] = v;
        sum += v;
        if (m > smooth) sum -= fin[m - 1 - smooth];
        if (m % smooth == 0) {
            sum = 0;
            for (int64_t j = m - smooth; j < m; j++) sum += fin[j];
        }
        y[i] = sum / (double)KN_MIN(m, (int64_t)smooth);
    }
}

static double to_axis(double v, int log_y) { return log_y ? log10(v) : v; }

kn_status kn_plot_render(const kn_loss_log *log, const kn_plot_opts *o, uint8_t *rgb, kn_plot_layout *lay) {
    kn_plot_opts def = kn_plot_default_opts();
    if (!o) o = &def;
    if (!log || !rgb) return kn_fail(KN_ERR_ARG, "plot: NULL log or image");
    const int W = o->width, H = o->height;
    if (W < 160 || H < 120 || W > KN_PLOT_MAX_DIM || H > KN_PLOT_MAX_DIM)
        return kn_fail(KN_ERR_ARG, "plot: size %dx%d out of range (160..%d x 120..%d)", W, H, KN_PLOT_MAX_DIM,
                       KN_PLOT_MAX_DIM);
    if (o->smooth < 0) return kn_fail(KN_ERR_ARG, "plot: smoothing window %d < 0", o->smooth);
    if (log->nseries < 1) return kn_fail(KN_ERR_ARG, "plot: the log has no series");

    /* drawn values per series: raw and (with smoothing) smoothed */
    int smooth = o->smooth > 1 ? o->smooth : 0;
    double *vals[KN_PLOT_MAX_SERIES][2] = {{0}};
    double *fin = NULL;
    kn_status st = KN_OK;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < log->nseries && st == KN_OK; s++) {
        const kn_loss_series *se = &log->series[s];
        for (int k = 0; k < (smooth ? 2 : 1) && st == KN_OK; k++) {
            vals[s][k] = malloc((size_t)(se->n > 0 ? se->n : 1) * sizeof(double));
            if (!vals[s][k]) {
                st = kn_fail(KN_ERR_NOMEM, "plot: out of memory");
                break;
            }
            if (k == 1) {
                free(fin);
                fin = malloc((size_t)(se->n > 0 ? se->n : 1) * sizeof(double));
                if (!fin) {
                    st = kn_fail(KN_ERR_NOMEM, "plot: out of memory");
                    break;
                }
            }
            series_values(se, k ? smooth : 0, vals[s][k], fin);
            for (int64_t i = 0; i < se->n; i++) {
                double v = vals[s][k][i];
                if (!isfinite(v)) continue;
                if (o->log_y && v <= 0) {
                    st = kn_fail(KN_ERR_FORMAT, "plot: stage '%s' has loss %g at step %g: cannot draw it on a log axis",
                                 se->stage, v, se->step[i]);
                    break;
                }
                double a = to_axis(v, o->log_y);
                ymin = KN_MIN(ymin, a), ymax = KN_MAX(ymax, a);
                xmin = KN_MIN(xmin, se->step[i]), xmax = KN_MAX(xmax, se->step[i]);
            }
        }
    }
    if (st == KN_OK && !(ymin <= ymax))
        st = kn_fail(KN_ERR_FORMAT, "plot: the log has no finite loss to draw");
    if (st != KN_OK) goto done;

    if (xmax == xmin) xmin -= 0.5, xmax += 0.5;
    if (ymax == ymin) {
        double d = o->log_y ? 0.5 : (fabs(ymin) > 0 ? fabs(ymin) * 0.1 : 1);
        ymin -= d, ymax += d;
    } else {
        double pad = 0.05 * (ymax - ymin);
        ymin -= pad, ymax += pad;
    }

    /* layout */
    const int sc = KN_MAX(1, KN_MIN(W / 400, H / 250));
    const int gh = 7 * sc;
    int top = gh + 8 * sc, bottom = gh + 5 * sc + gh + 5 * sc, right = 6 * sc;
    ticks yt, xt;
    int plot_h = H - top - bottom;
    make_ticks(ymin, ymax, KN_MAX(2, plot_h / (gh * 5)), o->log_y, &yt);
    int lw = 0;
    for (int i = 0; i < yt.n; i++) lw = KN_MAX(lw, kn_plot_text_width(yt.label[i], sc));
    int left = lw + 8 * sc;
    /* x ticks: about one per 14 label characters */
    char probe[32];
    fmt_tick(xmax, 1, probe, sizeof probe);
    int xlw = kn_plot_text_width(probe, sc) + 3 * gh;
    right += xlw / 2;
    int plot_w = W - left - right;
    if (plot_w < 40 || plot_h < 40) {
        st = kn_fail(KN_ERR_ARG, "plot: %dx%d leaves no room for the plot area", W, H);
        goto done;
    }
    make_ticks(xmin, xmax, KN_MAX(2, plot_w / KN_MAX(xlw, 1)), 0, &xt);
    const int x0 = left, x1 = left + plot_w, y0 = top, y1 = top + plot_h; /* plot rectangle */

    static const uint8_t WHITE[3] = {255, 255, 255}, GRID[3] = {228, 228, 228}, AXIS[3] = {70, 70, 70},
                         INK[3] = {30, 30, 30};
    if (lay) {
        memset(lay, 0, sizeof *lay);
        *lay = (kn_plot_layout){.x0 = x0, .y0 = y0, .x1 = x1, .y1 = y1, .xmin = xmin, .xmax = xmax, .ymin = ymin,
                                .ymax = ymax};
    }
    canvas cv = {rgb, H, W, 0, 0, W, H};
    fill_rect(&cv, 0, 0, W, H, WHITE);
#define MAPX(x) (x0 + (int)lround(((x) - xmin) / (xmax - xmin) * (plot_w - 1)))
#define MAPY(a) (y1 - 1 - (int)lround(((a) - ymin) / (ymax - ymin) * (plot_h - 1)))
    for (int i = 0; i < yt.n; i++) {
        int py = MAPY(yt.pos[i]);
        if (py < y0 || py >= y1) continue;
        draw_line(&cv, x0, py, x1 - 1, py, 1, GRID);
        draw_line(&cv, x0 - 3 * sc, py, x0 - 1, py, sc, AXIS);
        draw_text(&cv, x0 - 5 * sc - kn_plot_text_width(yt.label[i], sc), py - gh / 2, yt.label[i], sc, INK);
    }
    for (int i = 0; i < xt.n; i++) {
        int px = MAPX(xt.pos[i]);
        if (px < x0 || px >= x1) continue;
        draw_line(&cv, px, y0, px, y1 - 1, 1, GRID);
        draw_line(&cv, px, y1, px, y1 + 3 * sc - 1, sc, AXIS);
        draw_text(&cv, px - kn_plot_text_width(xt.label[i], sc) / 2, y1 + 5 * sc, xt.label[i], sc, INK);
    }
    /* axis titles */
    const char *ytitle = o->log_y ? "loss (log)" : "loss";
    draw_text(&cv, KN_MAX(0, x0 - lw / 2 - 4 * sc), top - gh - 5 * sc, ytitle, sc, INK);
    draw_text(&cv, x0 + plot_w / 2 - kn_plot_text_width("step", sc) / 2, y1 + 5 * sc + gh + 4 * sc, "step", sc, INK);

    /* curves, clipped to the plot rectangle: pale raw curves first, then the main ones */
    canvas pc = {rgb, H, W, x0, y0, x1, y1};
    const int thick = KN_MAX(1, sc);
    for (int pass = smooth ? 0 : 1; pass < 2; pass++) {
        for (int s = 0; s < log->nseries; s++) {
            const kn_loss_series *se = &log->series[s];
            const double *v = vals[s][pass == 1 && smooth ? 1 : 0];
            uint8_t col[3];
            for (int k = 0; k < 3; k++) {
                int c = kn_plot_color(s)[k];
                col[k] = pass == 0 ? (uint8_t)(c + (255 - c) * 0.65) : (uint8_t)c;
            }
            int have = 0, px = 0, py = 0;
            for (int64_t i = 0; i < se->n; i++) {
                if (!isfinite(v[i])) {
                    have = 0;
                    continue;
                }
                int qx = MAPX(se->step[i]), qy = MAPY(to_axis(v[i], o->log_y));
                if (have) draw_line(&pc, px, py, qx, qy, thick, col);
                else fill_rect(&pc, qx - thick / 2, qy - thick / 2, qx - thick / 2 + thick, qy - thick / 2 + thick, col);
                px = qx, py = qy, have = 1;
            }
        }
    }
#undef MAPX
#undef MAPY
    /* axes box */
    draw_line(&cv, x0 - 1, y0, x0 - 1, y1, sc, AXIS);
    draw_line(&cv, x0 - 1, y1, x1 - 1, y1, sc, AXIS);

    /* legend: a framed box in the top right corner, one "—— name" row per stage */
    int name_w = 0;
    for (int s = 0; s < log->nseries; s++) name_w = KN_MAX(name_w, kn_plot_text_width(log->series[s].stage, sc));
    int row_h = gh + 4 * sc, sw = 14 * sc;
    int lgw = 4 * sc + sw + 4 * sc + name_w + 4 * sc, lgh = 4 * sc + row_h * log->nseries;
    int lx = x1 - lgw - 6 * sc, ly = y0 + 6 * sc;
    if (lx >= x0 && ly + lgh < y1) {
        static const uint8_t FRAME[3] = {160, 160, 160};
        if (lay) lay->lx0 = lx, lay->ly0 = ly, lay->lx1 = lx + lgw, lay->ly1 = ly + lgh;
        fill_rect(&cv, lx, ly, lx + lgw, ly + lgh, WHITE);
        draw_line(&cv, lx, ly, lx + lgw - 1, ly, 1, FRAME);
        draw_line(&cv, lx, ly + lgh - 1, lx + lgw - 1, ly + lgh - 1, 1, FRAME);
        draw_line(&cv, lx, ly, lx, ly + lgh - 1, 1, FRAME);
        draw_line(&cv, lx + lgw - 1, ly, lx + lgw - 1, ly + lgh - 1, 1, FRAME);
        for (int s = 0; s < log->nseries; s++) {
            int ry = ly + 4 * sc + s * row_h;
            fill_rect(&cv, lx + 4 * sc, ry + gh / 2 - sc, lx + 4 * sc + sw, ry + gh / 2 + sc + 1, kn_plot_color(s));
            draw_text(&cv, lx + 8 * sc + sw, ry, log->series[s].stage, sc, INK);
        }
    }
done:
    free(fin);
    for (int s = 0; s < KN_PLOT_MAX_SERIES; s++) free(vals[s][0]), free(vals[s][1]);
    return st;
}

kn_status kn_plot_loss_png(const kn_loss_log *log, const kn_plot_opts *o, const char *png_path) {
    kn_plot_opts def = kn_plot_default_opts();
    if (!o) o = &def;
    if (o->width < 1 || o->height < 1 || o->width > KN_PLOT_MAX_DIM || o->height > KN_PLOT_MAX_DIM)
        return kn_fail(KN_ERR_ARG, "plot: size %dx%d out of range", o->width, o->height);
    uint8_t *rgb = malloc((size_t)o->width * o->height * 3);
    if (!rgb) return kn_fail(KN_ERR_NOMEM, "plot: out of memory for a %dx%d image", o->width, o->height);
    kn_status st = kn_plot_render(log, o, rgb, NULL);
    if (st == KN_OK) st = kn_image_write_png(png_path, rgb, o->height, o->width);
    free(rgb);
    return st;
}
