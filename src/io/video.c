/* video.c — clips in memory: allocation, resampling, tensors, format dispatch, Y4M, PNG
 * sequences and contact sheets. GIF is in video_gif.c, FFmpeg in video_av.c, WebP in
 * video_webp.c. */
#include "io/video.h"

#include "core/core.h"
#include "io/image.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static size_t g_max_bytes = KN_VIDEO_MAX_BYTES;

size_t kn_video_set_max_bytes(size_t nbytes) {
    size_t old = g_max_bytes;
    g_max_bytes = nbytes ? nbytes : KN_VIDEO_MAX_BYTES;
    return old;
}

size_t kn_video_max_bytes(void) { return g_max_bytes; }

kn_status kn_video_alloc(kn_video *v, int frames, int height, int width, double fps) {
    memset(v, 0, sizeof *v);
    if (frames <= 0 || height <= 0 || width <= 0 || frames > KN_VIDEO_MAX_FRAMES || height > KN_VIDEO_MAX_DIM ||
        width > KN_VIDEO_MAX_DIM)
        return kn_fail(KN_ERR_ARG, "video size %d frames of %dx%d is outside [1, %d] frames, [1, %d] px",
                       frames, width, height, KN_VIDEO_MAX_FRAMES, KN_VIDEO_MAX_DIM);
    if (!(fps > 0) || !isfinite(fps) || fps > 1000)
        return kn_fail(KN_ERR_ARG, "video fps %g is outside (0, 1000]", fps);
    size_t nb = (size_t)frames * height * width * 3;
    if (nb > g_max_bytes)
        return kn_fail(KN_ERR_NOMEM, "video of %d frames of %dx%d needs %zu MiB, over the %zu MiB cap", frames,
                       width, height, nb >> 20, g_max_bytes >> 20);
    v->rgb = calloc(nb, 1);
    if (!v->rgb) return kn_fail(KN_ERR_NOMEM, "cannot allocate %zu MiB for a video", nb >> 20);
    v->frames = frames;
    v->height = height;
    v->width = width;
    v->fps = fps;
    return KN_OK;
}

void kn_video_free(kn_video *v) {
    if (!v) return;
    free(v->rgb);
    memset(v, 0, sizeof *v);
}

static kn_status check_video(const char *what, const kn_video *v) {
    if (!v || !v->rgb || v->frames <= 0 || v->height <= 0 || v->width <= 0 || !(v->fps > 0) || !isfinite(v->fps))
        return kn_fail(KN_ERR_ARG, "%s: empty or invalid video (%d frames of %dx%d at %g fps)", what,
                       v ? v->frames : 0, v ? v->width : 0, v ? v->height : 0, v ? v->fps : 0.0);
    return KN_OK;
}

kn_video_read_opts kn_video_read_default_opts(void) { return (kn_video_read_opts){0}; }

kn_video_write_opts kn_video_write_default_opts(void) {
    return (kn_video_write_opts){.quality = 80, .dither = 0, .y4m_420 = 0, .webp_lossless = 0, .sheet_cols = 0};
}

/* ------------------------------------------------------------- resampling */

/* Per output index along one axis: taps [first, first+n) of weights (sum 1). Area average when
 * shrinking (each output covers in/out source pixels), bilinear with centred sampling when
 * growing or equal. */
typedef struct { int first, n; float w[KN_RESAMPLE_MAX_TAPS]; } taps;

static kn_status make_taps(int in, int out, taps **tp) {
    double s = (double)in / out;
    if (s > KN_RESAMPLE_MAX_TAPS - 2)
        return kn_fail(KN_ERR_ARG, "resize from %d to %d shrinks more than %dx", in, out, KN_RESAMPLE_MAX_TAPS - 2);
    taps *t = calloc((size_t)out, sizeof *t);
    if (!t) return kn_fail(KN_ERR_NOMEM, "cannot allocate resize taps");
    for (int o = 0; o < out; o++) {
        if (out < in) {
            double a = o * s, b = (o + 1) * s;
            int i0 = (int)floor(a), i1 = KN_MIN((int)ceil(b), in);
            t[o].first = i0;
            t[o].n = i1 - i0;
            for (int i = i0; i < i1; i++) t[o].w[i - i0] = (float)((fmin(b, i + 1) - fmax(a, i)) / s);
        } else {
            double x = (o + 0.5) * s - 0.5;
            if (x < 0) x = 0;
            int i0 = (int)floor(x);
            if (i0 >= in - 1) {
                t[o].first = in - 1;
                t[o].n = 1;
                t[o].w[0] = 1;
            } else {
                float f = (float)(x - i0);
                t[o].first = i0;
                t[o].n = 2;
                t[o].w[0] = 1 - f;
                t[o].w[1] = f;
            }
        }
    }
    *tp = t;
    return KN_OK;
}

typedef struct {
    const kn_video *in;
    kn_video *out;
    const int *src_t;
    const taps *tx, *ty;
} resize_ctx;

/* One output frame; each output pixel is a fixed-order sum, so any thread split gives the same
 * bits. Scratch for the row pass is on the stack in chunks (no malloc in the kernel). */
static void resize_frame(int64_t t, void *p) {
    resize_ctx *c = p;
    const kn_video *in = c->in;
    kn_video *out = c->out;
    const uint8_t *src = kn_video_frame(in, c->src_t[t]);
    uint8_t *dst = kn_video_frame(out, (int)t);
    int W = in->width, OW = out->width;
    for (int oy = 0; oy < out->height; oy++) {
        const taps *ty = &c->ty[oy];
        for (int ox = 0; ox < OW; ox++) {
            const taps *tx = &c->tx[ox];
            float acc[3] = {0, 0, 0};
            for (int j = 0; j < ty->n; j++) {
                const uint8_t *row = src + (size_t)(ty->first + j) * W * 3;
                float r[3] = {0, 0, 0};
                for (int i = 0; i < tx->n; i++) {
                    const uint8_t *px = row + (size_t)(tx->first + i) * 3;
                    for (int k = 0; k < 3; k++) r[k] += tx->w[i] * px[k];
                }
                for (int k = 0; k < 3; k++) acc[k] += ty->w[j] * r[k];
            }
            for (int k = 0; k < 3; k++) {
                float x = acc[k] + 0.5f;
                dst[((size_t)oy * OW + ox) * 3 + k] = (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x);
            }
        }
    }
}

kn_status kn_video_resample(const kn_video *in, double fps, int width, int height, kn_video *out) {
    memset(out, 0, sizeof *out);
    KN_TRY(check_video("resample", in));
    if (fps < 0 || !isfinite(fps) || width < 0 || height < 0)
        return kn_fail(KN_ERR_ARG, "resample: bad target %dx%d at %g fps", width, height, fps);
    double ofps = fps > 0 ? fps : in->fps;
    int OW = width > 0 ? width : in->width, OH = height > 0 ? height : in->height;
    int T = fps > 0 ? (int)floor(in->frames * ofps / in->fps + 0.5) : in->frames;
    if (T < 1) T = 1;
    KN_TRY(kn_video_alloc(out, T, OH, OW, ofps));
    int *src_t = malloc(sizeof(int) * (size_t)T);
    taps *tx = NULL, *ty = NULL;
    kn_status st = src_t ? KN_OK : kn_fail(KN_ERR_NOMEM, "resample: out of memory");
    if (st == KN_OK) st = make_taps(in->width, OW, &tx);
    if (st == KN_OK) st = make_taps(in->height, OH, &ty);
    if (st != KN_OK) {
        free(src_t);
        free(tx);
        kn_video_free(out);
        return st;
    }
    for (int t = 0; t < T; t++) { /* nearest source frame to time t / ofps */
        int s = (int)floor(t * in->fps / ofps + 0.5);
        src_t[t] = KN_MIN(s, in->frames - 1);
    }
    resize_ctx c = {in, out, src_t, tx, ty};
    kn_parallel_for(T, resize_frame, &c);
    free(src_t);
    free(tx);
    free(ty);
    return KN_OK;
}

/* ------------------------------------------------------------- tensors */

kn_status kn_video_to_tensor(kn_arena *A, const kn_video *v, int signed_range, kn_tensor *t) {
    KN_TRY(check_video("video_to_tensor", v));
    int64_t shape[5] = {1, 3, v->frames, v->height, v->width};
    if (!t->data) {
        KN_TRY(kn_tensor_alloc(A, t, KN_F32, 5, shape));
    } else {
        kn_tensor want = kn_tensor_view(KN_F32, 5, shape, NULL);
        char a[64], b[64];
        if (t->dtype != KN_F32 || !kn_tensor_same_shape(t, &want) || !kn_tensor_is_contiguous(t))
            return kn_fail(KN_ERR_SHAPE, "video_to_tensor: out is %s %s, want contiguous F32 %s",
                           kn_dtype_name(t->dtype), kn_shape_str(t, a, sizeof a), kn_shape_str(&want, b, sizeof b));
    }
    float *o = t->data;
    size_t plane = (size_t)v->frames * v->height * v->width;
    float sc = signed_range ? 2.0f / 255 : 1.0f / 255, off = signed_range ? -1.0f : 0.0f;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) o[c * plane + i] = v->rgb[3 * i + c] * sc + off;
    return KN_OK;
}

kn_status kn_video_from_tensor(const kn_tensor *t, int signed_range, double fps, kn_video *v) {
    memset(v, 0, sizeof *v);
    char s[64];
    int base = t->ndim == 5 ? 1 : 0;
    if (t->dtype != KN_F32 || (t->ndim != 5 && t->ndim != 4) || (t->ndim == 5 && t->shape[0] != 1) ||
        t->shape[base] != 3)
        return kn_fail(KN_ERR_SHAPE, "video_from_tensor: want F32 (1,3,T,H,W) or (3,T,H,W), got %s %s",
                       kn_dtype_name(t->dtype), kn_shape_str(t, s, sizeof s));
    int T = (int)t->shape[base + 1], H = (int)t->shape[base + 2], W = (int)t->shape[base + 3];
    KN_TRY(kn_video_alloc(v, T, H, W, fps));
    const int64_t *st = t->stride + base;
    const float *d = t->data;
    for (int c = 0; c < 3; c++)
        for (int ti = 0; ti < T; ti++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float f = d[c * st[0] + ti * st[1] + y * st[2] + x * st[3]];
                    float u = signed_range ? (f + 1) * 127.5f : f * 255.0f;
                    u = isnan(u) ? 0 : u < 0 ? 0 : u > 255 ? 255 : u;
                    kn_video_frame(v, ti)[((size_t)y * W + x) * 3 + c] = (uint8_t)(u + 0.5f);
                }
    return KN_OK;
}

/* ------------------------------------------------------------------ Y4M */

static uint8_t clamp8(float x) { return (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x + 0.5f); }

/* BT.601 full range (JFIF) RGB -> Y'CbCr; limited range is applied on top for I/O. */
static void rgb_to_ycc(const uint8_t *p, float *y, float *cb, float *cr) {
    float r = p[0], g = p[1], b = p[2];
    *y = 0.299f * r + 0.587f * g + 0.114f * b;
    *cb = 128.0f - 0.168735892f * r - 0.331264108f * g + 0.5f * b;
    *cr = 128.0f + 0.5f * r - 0.418687589f * g - 0.081312411f * b;
}

static void ycc_to_rgb(float y, float cb, float cr, uint8_t *p) {
    cb -= 128;
    cr -= 128;
    p[0] = clamp8(y + 1.402f * cr);
    p[1] = clamp8(y - 0.344136286f * cb - 0.714136286f * cr);
    p[2] = clamp8(y + 1.772f * cb);
}

static kn_status write_all(FILE *f, const void *p, size_t n, const char *path) {
    if (fwrite(p, 1, n, f) != n) return kn_fail(KN_ERR_IO, "write error on '%s': %s", path, strerror(errno));
    return KN_OK;
}

static void fps_rational(double fps, int *num, int *den) {
    /* exact for integers and the NTSC family (24000/1001, 30000/1001, 60000/1001) */
    static const int dens[] = {1, 1001, 2, 4, 8, 3, 100, 1000};
    for (size_t i = 0; i < sizeof dens / sizeof dens[0]; i++) {
        double n = fps * dens[i];
        if (fabs(n - floor(n + 0.5)) < 1e-6 * dens[i]) {
            *num = (int)floor(n + 0.5);
            *den = dens[i];
            return;
        }
    }
    *num = (int)floor(fps * 1000000 + 0.5);
    *den = 1000000;
}

static kn_status y4m_write_file(FILE *f, const char *path, const kn_video *v, int c420) {
    int num, den;
    fps_rational(v->fps, &num, &den);
    int W = v->width, H = v->height, CW = c420 ? (W + 1) / 2 : W, CH = c420 ? (H + 1) / 2 : H;
    if (fprintf(f, "YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 %s XCOLORRANGE=FULL\n", W, H, num, den,
                c420 ? "C420jpeg" : "C444") < 0)
        return kn_fail(KN_ERR_IO, "write error on '%s'", path);
    size_t fsz = (size_t)W * H + 2 * (size_t)CW * CH;
    uint8_t *buf = malloc(fsz);
    float *cbf = malloc(sizeof(float) * 2 * (size_t)W * H);
    if (!buf || !cbf) {
        free(buf);
        free(cbf);
        return kn_fail(KN_ERR_NOMEM, "y4m: out of memory");
    }
    float *crf = cbf + (size_t)W * H;
    kn_status st = KN_OK;
    for (int t = 0; t < v->frames && st == KN_OK; t++) {
        const uint8_t *fr = kn_video_frame(v, t);
        for (size_t i = 0; i < (size_t)W * H; i++) {
            float y;
            rgb_to_ycc(fr + 3 * i, &y, &cbf[i], &crf[i]);
            buf[i] = clamp8(y);
        }
        uint8_t *pu = buf + (size_t)W * H, *pv = pu + (size_t)CW * CH;
        for (int cy = 0; cy < CH; cy++)
            for (int cx = 0; cx < CW; cx++) {
                if (!c420) {
                    pu[(size_t)cy * CW + cx] = clamp8(cbf[(size_t)cy * W + cx]);
                    pv[(size_t)cy * CW + cx] = clamp8(crf[(size_t)cy * W + cx]);
                    continue;
                }
                float su = 0, sv = 0;
                int n = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int y = 2 * cy + dy, x = 2 * cx + dx;
                        if (y >= H || x >= W) continue;
                        su += cbf[(size_t)y * W + x];
                        sv += crf[(size_t)y * W + x];
                        n++;
                    }
                pu[(size_t)cy * CW + cx] = clamp8(su / n);
                pv[(size_t)cy * CW + cx] = clamp8(sv / n);
            }
        st = write_all(f, "FRAME\n", 6, path);
        if (st == KN_OK) st = write_all(f, buf, fsz, path);
    }
    free(buf);
    free(cbf);
    return st;
}

kn_status kn_video_read_y4m_mem(const uint8_t *d, size_t n, kn_video *v) {
    memset(v, 0, sizeof *v);
    if (n < 10 || memcmp(d, "YUV4MPEG2 ", 10)) return kn_fail(KN_ERR_FORMAT, "y4m: missing 'YUV4MPEG2 ' signature");
    size_t pos = 10, end = pos;
    while (end < n && end < 4096 && d[end] != '\n') end++;
    if (end >= n || d[end] != '\n') return kn_fail(KN_ERR_FORMAT, "y4m: header line is truncated or too long");
    long W = 0, H = 0, fn = 25, fd = 1;
    int cs = 420, full = 0; /* 420, 422, 444, 0 = mono */
    char tok[256];
    while (pos < end) {
        while (pos < end && d[pos] == ' ') pos++;
        size_t k = 0;
        while (pos < end && d[pos] != ' ') {
            if (k + 1 < sizeof tok) tok[k++] = (char)d[pos];
            pos++;
        }
        tok[k] = 0;
        if (!k) continue;
        char *e;
        switch (tok[0]) {
        case 'W': W = strtol(tok + 1, &e, 10); if (*e || e == tok + 1) W = -1; break;
        case 'H': H = strtol(tok + 1, &e, 10); if (*e || e == tok + 1) H = -1; break;
        case 'F':
            if (sscanf(tok + 1, "%ld:%ld", &fn, &fd) != 2 || fn <= 0 || fd <= 0 || fn > 10000000 || fd > 10000000)
                return kn_fail(KN_ERR_FORMAT, "y4m: bad frame rate '%s'", tok);
            break;
        case 'C':
            if (!strncmp(tok + 1, "420", 3)) cs = 420;
            else if (!strcmp(tok + 1, "422")) cs = 422;
            else if (!strcmp(tok + 1, "444")) cs = 444;
            else if (!strcmp(tok + 1, "mono")) cs = 0;
            else return kn_fail(KN_ERR_UNSUPPORTED, "y4m: colour space '%s' is not supported (444, 422, 420*, mono)", tok);
            break;
        case 'I':
            if (tok[1] != 'p' && tok[1] != '?')
                return kn_fail(KN_ERR_UNSUPPORTED, "y4m: interlaced video ('%s') is not supported", tok);
            break;
        case 'X':
            if (!strcmp(tok, "XCOLORRANGE=FULL")) full = 1;
            break;
        default: break;
        }
    }
    if (W <= 0 || H <= 0 || W > KN_VIDEO_MAX_DIM || H > KN_VIDEO_MAX_DIM)
        return kn_fail(KN_ERR_FORMAT, "y4m: frame size %ldx%ld is missing or outside [1, %d]", W, H, KN_VIDEO_MAX_DIM);
    double fps = (double)fn / fd;
    if (fps > 1000) return kn_fail(KN_ERR_FORMAT, "y4m: frame rate %ld:%ld is over 1000 fps", fn, fd);
    size_t CW = cs == 444 ? (size_t)W : (size_t)(W + 1) / 2, CH = cs == 420 ? (size_t)(H + 1) / 2 : (size_t)H;
    if (cs == 0) CW = CH = 0;
    size_t fsz = (size_t)W * H + 2 * CW * CH;
    /* count frames first so that a truncated file fails before any large allocation */
    size_t p = end + 1, frames = 0;
    while (p < n) {
        if (n - p < 5 || memcmp(d + p, "FRAME", 5))
            return kn_fail(KN_ERR_FORMAT, "y4m: frame %zu does not start with 'FRAME'", frames);
        const uint8_t *nl = memchr(d + p, '\n', KN_MIN(n - p, (size_t)1024));
        if (!nl) return kn_fail(KN_ERR_FORMAT, "y4m: frame %zu header is truncated", frames);
        p = (size_t)(nl - d) + 1;
        if (n - p < fsz)
            return kn_fail(KN_ERR_FORMAT, "y4m: frame %zu is truncated (%zu of %zu bytes)", frames, n - p, fsz);
        p += fsz;
        if (++frames > KN_VIDEO_MAX_FRAMES) return kn_fail(KN_ERR_FORMAT, "y4m: more than %d frames", KN_VIDEO_MAX_FRAMES);
    }
    if (!frames) return kn_fail(KN_ERR_FORMAT, "y4m: no frames");
    KN_TRY(kn_video_alloc(v, (int)frames, (int)H, (int)W, fps));
    p = end + 1;
    for (size_t t = 0; t < frames; t++) {
        p = (size_t)((const uint8_t *)memchr(d + p, '\n', n - p) - d) + 1;
        const uint8_t *py = d + p, *pu = py + (size_t)W * H, *pv = pu + CW * CH;
        uint8_t *fr = kn_video_frame(v, (int)t);
        for (long y = 0; y < H; y++)
            for (long x = 0; x < W; x++) {
                float Y = py[y * W + x], U = 128, V = 128;
                if (cs) {
                    size_t cx = cs == 444 ? (size_t)x : (size_t)x / 2, cy = cs == 420 ? (size_t)y / 2 : (size_t)y;
                    U = pu[cy * CW + cx];
                    V = pv[cy * CW + cx];
                }
                if (!full) { /* studio swing: Y 16..235, C 16..240 */
                    Y = (Y - 16) * (255.0f / 219);
                    U = (U - 128) * (255.0f / 224) + 128;
                    V = (V - 128) * (255.0f / 224) + 128;
                }
                ycc_to_rgb(Y, U, V, fr + ((size_t)y * W + x) * 3);
            }
        p += fsz;
    }
    return KN_OK;
}

/* ---------------------------------------------------------- PNG sequences */

/* A pattern is a name with exactly one %d / %0Nd and no other '%' (so it is a safe format). */
static int is_pattern(const char *path) {
    int n = 0;
    for (const char *p = path; *p; p++) {
        if (*p != '%') continue;
        const char *q = p + 1;
        if (*q == '0') q++;
        while (*q >= '0' && *q <= '9') q++;
        if (*q != 'd' || q - p > 4) return -1;
        n++;
        p = q;
    }
    return n == 1 ? 1 : n == 0 ? 0 : -1;
}

static int is_dir(const char *path) {
    struct stat sb;
    size_t L = strlen(path);
    return (L && path[L - 1] == '/') || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
}

static void frame_name(char *buf, size_t n, const char *path, int pattern, int t) {
    if (pattern) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(buf, n, path, t); /* validated by is_pattern */
#pragma GCC diagnostic pop
    } else {
        size_t L = strlen(path);
        snprintf(buf, n, "%s%sframe_%05d.png", path, L && path[L - 1] == '/' ? "" : "/", t);
    }
}

static kn_status write_png_seq(const char *path, const kn_video *v) {
    int pattern = is_pattern(path);
    if (pattern < 0) return kn_fail(KN_ERR_ARG, "'%s': a frame pattern needs exactly one %%d (or %%0Nd)", path);
    if (!pattern) {
        struct stat sb;
        if (stat(path, &sb) != 0 && mkdir(path, 0777) != 0)
            return kn_fail(KN_ERR_IO, "cannot create directory '%s': %s", path, strerror(errno));
    }
    char fpsv[64], name[4096];
    snprintf(fpsv, sizeof fpsv, "%.17g", v->fps);
    for (int t = 0; t < v->frames; t++) {
        frame_name(name, sizeof name, path, pattern, t);
        kn_status st = kn_image_write_png_ex(name, kn_video_frame(v, t), v->height, v->width, "kinema:fps", fpsv);
        if (st != KN_OK) { /* all or nothing: remove the frames already written */
            for (int k = 0; k < t; k++) {
                frame_name(name, sizeof name, path, pattern, k);
                remove(name);
            }
            return st;
        }
    }
    return KN_OK;
}

static int png_name_cmp(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}
static int png_name_filter(const struct dirent *e) {
    size_t L = strlen(e->d_name);
    return e->d_name[0] != '.' && L > 4 && !strcasecmp(e->d_name + L - 4, ".png");
}

static kn_status read_png_seq(const char *path, double default_fps, kn_video *v) {
    int pattern = is_pattern(path);
    if (pattern < 0) return kn_fail(KN_ERR_ARG, "'%s': a frame pattern needs exactly one %%d (or %%0Nd)", path);
    struct dirent **ents = NULL;
    int nfiles = 0, first = 0;
    char name[4096], fpsv[64] = "";
    if (pattern) {
        struct stat sb;
        frame_name(name, sizeof name, path, 1, 0);
        if (stat(name, &sb) != 0) first = 1;
        for (nfiles = 0; nfiles <= KN_VIDEO_MAX_FRAMES; nfiles++) {
            frame_name(name, sizeof name, path, 1, first + nfiles);
            if (stat(name, &sb) != 0) break;
        }
    } else {
        nfiles = scandir(path, &ents, png_name_filter, png_name_cmp);
        if (nfiles < 0) return kn_fail(KN_ERR_IO, "cannot list directory '%s': %s", path, strerror(errno));
    }
    kn_status st = KN_OK;
    if (nfiles == 0) st = kn_fail(KN_ERR_IO, "'%s': no PNG frames found", path);
    if (nfiles > KN_VIDEO_MAX_FRAMES) st = kn_fail(KN_ERR_FORMAT, "'%s': more than %d frames", path, KN_VIDEO_MAX_FRAMES);
    for (int t = 0; t < nfiles && st == KN_OK; t++) {
        if (pattern) frame_name(name, sizeof name, path, 1, first + t);
        else {
            size_t L = strlen(path);
            snprintf(name, sizeof name, "%s%s%s", path, L && path[L - 1] == '/' ? "" : "/", ents[t]->d_name);
        }
        kn_image im;
        st = kn_image_read_png_text(name, &im, "kinema:fps", t == 0 ? fpsv : NULL, t == 0 ? sizeof fpsv : 0);
        if (st != KN_OK) break;
        if (t == 0) {
            double fps = atof(fpsv);
            if (!(fps > 0 && fps <= 1000)) fps = default_fps > 0 ? default_fps : 8;
            st = kn_video_alloc(v, nfiles, im.height, im.width, fps);
        } else if (im.height != v->height || im.width != v->width) {
            st = kn_fail(KN_ERR_FORMAT, "'%s' is %dx%d but the first frame is %dx%d", name, im.width, im.height,
                         v->width, v->height);
        }
        if (st == KN_OK) memcpy(kn_video_frame(v, t), im.rgb, (size_t)im.height * im.width * 3);
        kn_image_free(&im);
    }
    if (ents) {
        for (int i = 0; i < nfiles; i++) free(ents[i]);
        free(ents);
    }
    if (st != KN_OK) kn_video_free(v);
    return st;
}

/* ---------------------------------------------------------- contact sheet */

kn_status kn_video_write_sheet(const char *path, const kn_video *v, int cols) {
    KN_TRY(check_video("contact sheet", v));
    if (cols <= 0) cols = (int)ceil(sqrt((double)v->frames));
    if (cols > v->frames) cols = v->frames;
    int rows = (v->frames + cols - 1) / cols;
    int64_t SW = (int64_t)cols * v->width, SH = (int64_t)rows * v->height;
    if (SW > KN_IMAGE_MAX_DIM || SH > KN_IMAGE_MAX_DIM)
        return kn_fail(KN_ERR_ARG, "contact sheet of %dx%d frames would be %ldx%ld px, over %d", cols, rows,
                       (long)SW, (long)SH, KN_IMAGE_MAX_DIM);
    uint8_t *img = calloc((size_t)SW * SH * 3, 1);
    if (!img) return kn_fail(KN_ERR_NOMEM, "contact sheet: out of memory");
    for (int t = 0; t < v->frames; t++) {
        int gx = t % cols, gy = t / cols;
        for (int y = 0; y < v->height; y++)
            memcpy(img + (((size_t)gy * v->height + y) * SW + (size_t)gx * v->width) * 3,
                   kn_video_frame(v, t) + (size_t)y * v->width * 3, (size_t)v->width * 3);
    }
    kn_status st = kn_image_write_png(path, img, (int)SH, (int)SW);
    free(img);
    return st;
}

/* -------------------------------------------------------------- dispatch */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

kn_status kn_video_write(const char *path, const kn_video *v, const kn_video_write_opts *o) {
    kn_video_write_opts def = kn_video_write_default_opts();
    if (!o) o = &def;
    if (!path || !*path) return kn_fail(KN_ERR_ARG, "video write: empty output path");
    KN_TRY(check_video(path, v));
    char ext[16];
    kn_path_ext(path, ext, sizeof ext);
    int pat = is_pattern(path);
    if (pat < 0) return kn_fail(KN_ERR_ARG, "'%s': a frame pattern needs exactly one %%d (or %%0Nd)", path);
    int known = !strcmp(ext, "y4m") || !strcmp(ext, "gif") || !strcmp(ext, "webp") || !strcmp(ext, "mp4") ||
                !strcmp(ext, "webm") || !strcmp(ext, "mkv") || !strcmp(ext, "mov") || !strcmp(ext, "png");
    size_t L = strlen(path);
    if (pat == 1 || path[L - 1] == '/' || (!known && is_dir(path))) return write_png_seq(path, v);
    if (ends_with(path, ".sheet.png")) return kn_video_write_sheet(path, v, o->sheet_cols);
    char tmp[4096];
    kn_tmp_path(path, tmp, sizeof tmp);
    kn_status st;
    if (!strcmp(ext, "y4m")) {
        FILE *f = fopen(tmp, "wb");
        if (!f) return kn_fail(KN_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
        st = y4m_write_file(f, path, v, o->y4m_420);
        if (fclose(f) != 0 && st == KN_OK) st = kn_fail(KN_ERR_IO, "write error on '%s': %s", path, strerror(errno));
    } else if (!strcmp(ext, "gif")) {
        st = kn_gif_write_file(tmp, path, v, o);
    } else if (!strcmp(ext, "webp")) {
        st = kn_webp_write_file(tmp, path, v, o);
    } else if (!strcmp(ext, "mp4") || !strcmp(ext, "webm") || !strcmp(ext, "mkv") || !strcmp(ext, "mov")) {
        st = kn_av_write_file(tmp, path, ext, v, o);
    } else if (!strcmp(ext, "png")) {
        if (v->frames != 1)
            return kn_fail(KN_ERR_ARG, "'%s': a %d-frame clip needs a pattern (name%%04d.png), a directory, or "
                                       "'.sheet.png'", path, v->frames);
        return kn_image_write_png(path, v->rgb, v->height, v->width);
    } else {
        return kn_fail(KN_ERR_UNSUPPORTED, "'%s': unknown video extension '.%s' (mp4, webm, gif, webp, y4m, png)",
                       path, ext);
    }
    return kn_commit_tmp(tmp, path, st);
}

kn_status kn_video_read(const char *path, const kn_video_read_opts *o, kn_video *v) {
    kn_video_read_opts def = kn_video_read_default_opts();
    if (!o) o = &def;
    memset(v, 0, sizeof *v);
    if (!path || !*path) return kn_fail(KN_ERR_ARG, "video read: empty path");
    kn_video raw;
    kn_status st;
    int pat = is_pattern(path);
    if (pat != 0 || is_dir(path)) {
        st = read_png_seq(path, o->default_fps, &raw);
    } else {
        uint8_t head[16] = {0};
        FILE *f = fopen(path, "rb");
        if (!f) return kn_fail(KN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        size_t nh = fread(head, 1, sizeof head, f);
        fclose(f);
        int kind = 0; /* 1 gif, 2 y4m, 3 webp, 4 image, 0 ffmpeg */
        if (nh >= 4 && !memcmp(head, "GIF8", 4)) kind = 1;
        else if (nh >= 10 && !memcmp(head, "YUV4MPEG2 ", 10)) kind = 2;
        else if (nh >= 12 && !memcmp(head, "RIFF", 4) && !memcmp(head + 8, "WEBP", 4)) kind = 3;
        else if ((nh >= 8 && !memcmp(head, "\x89PNG\r\n\x1a\n", 8)) || (nh >= 3 && head[0] == 0xff && head[1] == 0xd8))
            kind = 4;
        if (kind == 0) {
            st = kn_av_read_file(path, o->max_frames > 0 && !(o->fps > 0) ? o->max_frames : 0, &raw);
        } else {
            uint8_t *d;
            size_t n;
            KN_TRY(kn_read_file(path, (size_t)8 << 30, &d, &n));
            if (kind == 1) st = kn_video_read_gif_mem(d, n, &raw);
            else if (kind == 2) st = kn_video_read_y4m_mem(d, n, &raw);
            else if (kind == 3) st = kn_video_read_webp_mem(d, n, &raw);
            else {
                kn_image im;
                st = kn_image_read_mem(d, n, &im);
                if (st == KN_OK) {
                    st = kn_video_alloc(&raw, 1, im.height, im.width, o->default_fps > 0 ? o->default_fps : 8);
                    if (st == KN_OK) memcpy(raw.rgb, im.rgb, (size_t)im.height * im.width * 3);
                    kn_image_free(&im);
                }
            }
            free(d);
            if (st != KN_OK) st = kn_prefix_error(st, path);
        }
    }
    if (st != KN_OK) return st;
    if (o->fps > 0 || o->width > 0 || o->height > 0) {
        int W = o->width > 0 ? o->width : raw.width, H = o->height > 0 ? o->height : raw.height;
        st = kn_video_resample(&raw, o->fps, W, H, v);
        kn_video_free(&raw);
        if (st != KN_OK) return st;
    } else {
        *v = raw;
    }
    if (o->max_frames > 0 && v->frames > o->max_frames) v->frames = o->max_frames;
    return KN_OK;
}
