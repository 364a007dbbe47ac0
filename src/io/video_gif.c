/* video_gif.c — animated GIF through giflib: a median-cut palette over the whole clip, optional
 * ordered dithering, exact frame timing; a reader that composites partial frames with the
 * disposal modes of the GIF89a spec (section 23). */
#define _GNU_SOURCE /* qsort_r */
#include "io/video.h"

#include "core/core.h"

#include <fcntl.h>
#include <gif_lib.h>
#include <unistd.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------- palette */

typedef struct { uint32_t rgb, count; } ucolor;

/* LSD radix sort of packed 0xRRGGBB keys, 3 passes of 8 bits. */
static void radix24(uint32_t *a, uint32_t *tmp, size_t n) {
    for (int sh = 0; sh < 24; sh += 8) {
        size_t cnt[257] = {0};
        for (size_t i = 0; i < n; i++) cnt[((a[i] >> sh) & 255) + 1]++;
        for (int k = 0; k < 256; k++) cnt[k + 1] += cnt[k];
        for (size_t i = 0; i < n; i++) tmp[cnt[(a[i] >> sh) & 255]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
    }
}

static int ch(uint32_t c, int k) { return (int)((c >> (16 - 8 * k)) & 255); }

typedef struct { size_t lo, hi; double sse; int axis; } box;

static void box_stats(const ucolor *u, box *b) {
    double n = 0, s[3] = {0}, s2[3] = {0};
    for (size_t i = b->lo; i < b->hi; i++)
        for (int k = 0; k < 3; k++) {
            double x = ch(u[i].rgb, k), w = u[i].count;
            s[k] += w * x;
            s2[k] += w * x * x;
        }
    for (size_t i = b->lo; i < b->hi; i++) n += u[i].count;
    b->sse = 0;
    b->axis = 0;
    double best = -1;
    for (int k = 0; k < 3; k++) {
        double v = s2[k] - s[k] * s[k] / n;
        b->sse += v;
        if (v > best) best = v, b->axis = k;
    }
    if (b->hi - b->lo < 2) b->sse = 0;
}

static int cmp_axis(const void *a, const void *b, void *axis) {
    const ucolor *x = a, *y = b;
    int k = *(const int *)axis;
    int d = ch(x->rgb, k) - ch(y->rgb, k);
    return d ? d : (x->rgb > y->rgb) - (x->rgb < y->rgb);
}

int kn_gif_palette(const kn_video *v, int ncolors, uint8_t *palette) {
    if (ncolors < 2) ncolors = 2;
    if (ncolors > 256) ncolors = 256;
    size_t npx = (size_t)v->frames * v->height * v->width;
    size_t step = npx > ((size_t)1 << 22) ? npx >> 22 : 1; /* sample at most ~4M pixels */
    size_t n = (npx + step - 1) / step;
    uint32_t *keys = malloc(n * sizeof *keys), *tmp = malloc(n * sizeof *tmp);
    ucolor *u = malloc(n * sizeof *u);
    if (!keys || !tmp || !u) {
        free(keys);
        free(tmp);
        free(u);
        memset(palette, 0, 3 * (size_t)ncolors);
        return 0;
    }
    for (size_t i = 0, j = 0; j < n; i += step, j++) {
        const uint8_t *p = v->rgb + 3 * i;
        keys[j] = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    }
    radix24(keys, tmp, n);
    size_t nu = 0;
    for (size_t i = 0; i < n; i++) {
        if (nu && u[nu - 1].rgb == keys[i]) u[nu - 1].count++;
        else u[nu++] = (ucolor){keys[i], 1};
    }
    free(keys);
    free(tmp);
    /* median cut: repeatedly split the box with the largest squared error along its widest
     * (highest variance) axis at the weighted median */
    box boxes[256];
    int nb = 1;
    boxes[0] = (box){0, nu, 0, 0};
    box_stats(u, &boxes[0]);
    while (nb < ncolors) {
        int bi = -1;
        for (int i = 0; i < nb; i++)
            if (boxes[i].sse > 0 && (bi < 0 || boxes[i].sse > boxes[bi].sse)) bi = i;
        if (bi < 0) break;
        box *b = &boxes[bi];
        qsort_r(u + b->lo, b->hi - b->lo, sizeof *u, cmp_axis, &b->axis);
        double tot = 0, acc = 0;
        for (size_t i = b->lo; i < b->hi; i++) tot += u[i].count;
        size_t m = b->lo + 1;
        for (size_t i = b->lo; i < b->hi - 1; i++) {
            acc += u[i].count;
            m = i + 1;
            if (acc >= tot / 2) break;
        }
        box nbx = {m, b->hi, 0, 0};
        b->hi = m;
        box_stats(u, b);
        box_stats(u, &nbx);
        boxes[nb++] = nbx;
    }
    for (int i = 0; i < nb; i++) {
        double s[3] = {0}, w = 0;
        for (size_t j = boxes[i].lo; j < boxes[i].hi; j++) {
            for (int k = 0; k < 3; k++) s[k] += (double)u[j].count * ch(u[j].rgb, k);
            w += u[j].count;
        }
        for (int k = 0; k < 3; k++) palette[3 * i + k] = (uint8_t)(w > 0 ? floor(s[k] / w + 0.5) : 0);
    }
    for (int i = nb; i < ncolors; i++) memset(palette + 3 * i, 0, 3);
    free(u);
    return nb;
}

/* ------------------------------------------------------------- writing */

static const char *gif_err(int code) {
    const char *s = GifErrorString(code);
    return s ? s : "unknown giflib error";
}

static int nearest(const uint8_t *pal, int n, int r, int g, int b) {
    int best = 0, bd = 1 << 30;
    for (int i = 0; i < n; i++) {
        int dr = pal[3 * i] - r, dg = pal[3 * i + 1] - g, db = pal[3 * i + 2] - b;
        int d = 2 * dr * dr + 4 * dg * dg + 3 * db * db; /* rough perceptual weights */
        if (d < bd) bd = d, best = i;
    }
    return best;
}

kn_status kn_gif_write_file(const char *tmp, const char *path, const kn_video *v, const kn_video_write_opts *o) {
    if (v->width > 65535 || v->height > 65535) return kn_fail(KN_ERR_ARG, "'%s': GIF sides are at most 65535", path);
    uint8_t pal[256 * 3];
    int ncol = kn_gif_palette(v, 256, pal);
    if (ncol == 0) return kn_fail(KN_ERR_NOMEM, "'%s': out of memory building the GIF palette", path);
    int bits = 1;
    while ((1 << bits) < ncol) bits++;
    GifColorType colors[256];
    memset(colors, 0, sizeof colors);
    for (int i = 0; i < ncol; i++) colors[i] = (GifColorType){pal[3 * i], pal[3 * i + 1], pal[3 * i + 2]};
    ColorMapObject *cmap = GifMakeMapObject(1 << bits, colors);
    /* nearest-colour cache over all 2^24 colours; entry = index + 1 (0 = not yet computed).
     * calloc'd lazily by the OS, so only the pages of colours that occur are touched. */
    uint16_t *cache = calloc((size_t)1 << 24, sizeof *cache);
    GifByteType *line = malloc((size_t)v->width);
    int err = 0;
    GifFileType *gif = NULL;
    kn_status st = KN_OK;
    if (!cmap || !cache || !line) {
        st = kn_fail(KN_ERR_NOMEM, "'%s': out of memory writing GIF", path);
        goto done;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666); /* giflib's own open uses mode 0600 */
    gif = fd >= 0 ? EGifOpenFileHandle(fd, &err) : NULL;
    if (!gif) {
        if (fd >= 0) close(fd);
        else err = E_GIF_ERR_OPEN_FAILED;
        st = kn_fail(KN_ERR_IO, "cannot create '%s': %s", path, gif_err(err));
        goto done;
    }
    EGifSetGifVersion(gif, true);
    if (EGifPutScreenDesc(gif, v->width, v->height, bits, 0, cmap) == GIF_ERROR) goto gif_fail;
    {
        static const GifByteType loop[3] = {1, 0, 0}; /* loop count 0 = forever */
        if (EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
            EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0") == GIF_ERROR ||
            EGifPutExtensionBlock(gif, 3, loop) == GIF_ERROR || EGifPutExtensionTrailer(gif) == GIF_ERROR)
            goto gif_fail;
    }
    static const int bayer[4][4] = {{0, 8, 2, 10}, {12, 4, 14, 6}, {3, 11, 1, 9}, {15, 7, 13, 5}};
    long prev_cs = 0;
    for (int t = 0; t < v->frames; t++) {
        /* delays in 1/100 s, from rounded end times so that e.g. 16 fps gives 6,6,7,6,... */
        long end_cs = (long)floor((t + 1) * 100.0 / v->fps + 0.5);
        long delay = end_cs - prev_cs;
        prev_cs = end_cs;
        GraphicsControlBlock gcb = {.DisposalMode = DISPOSE_DO_NOT, .UserInputFlag = false,
                                    .DelayTime = (int)KN_MIN(KN_MAX(delay, 1), 65535), .TransparentColor = NO_TRANSPARENT_COLOR};
        GifByteType ext[4];
        EGifGCBToExtension(&gcb, ext);
        if (EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, 4, ext) == GIF_ERROR) goto gif_fail;
        if (EGifPutImageDesc(gif, 0, 0, v->width, v->height, false, NULL) == GIF_ERROR) goto gif_fail;
        const uint8_t *fr = kn_video_frame(v, t);
        for (int y = 0; y < v->height; y++) {
            for (int x = 0; x < v->width; x++) {
                const uint8_t *p = fr + ((size_t)y * v->width + x) * 3;
                int r = p[0], g = p[1], b = p[2];
                if (o->dither) {
                    int d = (bayer[y & 3][x & 3] * 2 - 15) * 12 / 32; /* about +-6 levels */
                    r = KN_MIN(KN_MAX(r + d, 0), 255);
                    g = KN_MIN(KN_MAX(g + d, 0), 255);
                    b = KN_MIN(KN_MAX(b + d, 0), 255);
                }
                uint32_t key = (uint32_t)r << 16 | (uint32_t)g << 8 | (uint32_t)b;
                if (!cache[key]) cache[key] = (uint16_t)(nearest(pal, ncol, r, g, b) + 1);
                line[x] = (GifByteType)(cache[key] - 1);
            }
            if (EGifPutLine(gif, line, v->width) == GIF_ERROR) goto gif_fail;
        }
    }
    if (EGifCloseFile(gif, &err) == GIF_ERROR) {
        gif = NULL;
        st = kn_fail(KN_ERR_IO, "write error on '%s': %s", path, gif_err(err));
        goto done;
    }
    gif = NULL;
    goto done;
gif_fail:
    st = kn_fail(KN_ERR_IO, "write error on '%s': %s", path, gif_err(gif->Error));
    EGifCloseFile(gif, &err);
    gif = NULL;
done:
    GifFreeMapObject(cmap);
    free(cache);
    free(line);
    return st;
}

/* ------------------------------------------------------------- reading */

typedef struct { const uint8_t *d; size_t n, pos; } gif_mem;

static int gif_read_mem(GifFileType *g, GifByteType *buf, int len) {
    gif_mem *m = g->UserData;
    size_t k = len < 0 ? 0 : KN_MIN((size_t)len, m->n - m->pos);
    memcpy(buf, m->d + m->pos, k);
    m->pos += k;
    return (int)k;
}

kn_status kn_video_read_gif_mem(const uint8_t *data, size_t n, kn_video *v) {
    memset(v, 0, sizeof *v);
    if (n < 6 || memcmp(data, "GIF8", 4)) return kn_fail(KN_ERR_FORMAT, "gif: missing 'GIF8' signature");
    gif_mem m = {data, n, 0};
    int err = 0;
    GifFileType *gif = DGifOpen(&m, gif_read_mem, &err);
    if (!gif) return kn_fail(KN_ERR_FORMAT, "gif: %s", gif_err(err));
    int W = gif->SWidth, H = gif->SHeight;
    size_t fbytes = (size_t)W * H * 3, cap = kn_video_max_bytes();
    uint8_t *canvas = NULL, *saved = NULL, *frames = NULL;
    GifByteType *line = NULL;
    size_t nframes = 0, capf = 0;
    long total_cs = 0;
    kn_status st = KN_OK;
    GraphicsControlBlock gcb = {.DisposalMode = DISPOSAL_UNSPECIFIED, .DelayTime = 0,
                                .TransparentColor = NO_TRANSPARENT_COLOR};
    if (W <= 0 || H <= 0 || W > KN_VIDEO_MAX_DIM || H > KN_VIDEO_MAX_DIM) {
        st = kn_fail(KN_ERR_FORMAT, "gif: screen size %dx%d is outside [1, %d]", W, H, KN_VIDEO_MAX_DIM);
        goto done;
    }
    if (fbytes > cap) {
        st = kn_fail(KN_ERR_NOMEM, "gif: a %dx%d frame is over the %zu MiB cap", W, H, cap >> 20);
        goto done;
    }
    canvas = calloc(fbytes, 1);
    saved = malloc(fbytes);
    line = malloc((size_t)W);
    if (!canvas || !saved || !line) {
        st = kn_fail(KN_ERR_NOMEM, "gif: out of memory");
        goto done;
    }
    for (;;) {
        GifRecordType rt;
        if (DGifGetRecordType(gif, &rt) == GIF_ERROR) goto gif_fail;
        if (rt == TERMINATE_RECORD_TYPE) break;
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) goto gif_fail;
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] == 4) DGifExtensionToGCB(4, ext + 1, &gcb);
            while (ext) {
                if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) goto gif_fail;
            }
            continue;
        }
        if (rt != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(gif) == GIF_ERROR) goto gif_fail;
        GifImageDesc *d = &gif->Image;
        if (d->Width <= 0 || d->Height <= 0 || d->Width > 65535 || d->Height > 65535) {
            st = kn_fail(KN_ERR_FORMAT, "gif: frame %zu has size %dx%d", nframes, d->Width, d->Height);
            goto done;
        }
        ColorMapObject *cm = d->ColorMap ? d->ColorMap : gif->SColorMap;
        if (!cm) {
            st = kn_fail(KN_ERR_FORMAT, "gif: frame %zu has no colour map", nframes);
            goto done;
        }
        if (nframes >= KN_VIDEO_MAX_FRAMES || (nframes + 1) * fbytes > cap) {
            st = kn_fail(KN_ERR_NOMEM, "gif: more than %zu frames of %dx%d (cap %d frames, %zu MiB)", nframes, W, H,
                         KN_VIDEO_MAX_FRAMES, cap >> 20);
            goto done;
        }
        if (d->Width > W) {
            free(line);
            line = malloc((size_t)d->Width);
            if (!line) {
                st = kn_fail(KN_ERR_NOMEM, "gif: out of memory");
                goto done;
            }
        }
        if (gcb.DisposalMode == DISPOSE_PREVIOUS) memcpy(saved, canvas, fbytes);
        /* rows in file order; interlaced images come in 4 passes (spec appendix E) */
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        int passes = d->Interlace ? 4 : 1;
        for (int p = 0; p < passes; p++) {
            for (int y = d->Interlace ? start[p] : 0; y < d->Height; y += d->Interlace ? step[p] : 1) {
                if (DGifGetLine(gif, line, d->Width) == GIF_ERROR) goto gif_fail;
                int cy = d->Top + y;
                if (cy >= H) continue; /* partial frames may hang over the screen: clip */
                for (int x = 0; x < d->Width; x++) {
                    int cx = d->Left + x, idx = line[x];
                    if (cx >= W || idx == gcb.TransparentColor || idx >= cm->ColorCount) continue;
                    uint8_t *px = canvas + ((size_t)cy * W + cx) * 3;
                    px[0] = cm->Colors[idx].Red;
                    px[1] = cm->Colors[idx].Green;
                    px[2] = cm->Colors[idx].Blue;
                }
            }
        }
        if (nframes == capf) {
            size_t nc = capf ? capf * 2 : 16;
            if (nc * fbytes > cap) nc = cap / fbytes;
            uint8_t *nf = realloc(frames, nc * fbytes);
            if (!nf) {
                st = kn_fail(KN_ERR_NOMEM, "gif: out of memory at frame %zu", nframes);
                goto done;
            }
            frames = nf;
            capf = nc;
        }
        memcpy(frames + nframes * fbytes, canvas, fbytes);
        nframes++;
        total_cs += gcb.DelayTime;
        /* disposal before the next frame: 2 = clear the rect (to black: we composite over black),
         * 3 = restore the canvas as it was before this frame */
        if (gcb.DisposalMode == DISPOSE_BACKGROUND) {
            for (int y = d->Top; y < KN_MIN(d->Top + d->Height, H); y++)
                if (d->Left < W) memset(canvas + ((size_t)y * W + d->Left) * 3, 0, (size_t)(KN_MIN(d->Left + d->Width, W) - d->Left) * 3);
        } else if (gcb.DisposalMode == DISPOSE_PREVIOUS) {
            memcpy(canvas, saved, fbytes);
        }
        gcb = (GraphicsControlBlock){.DisposalMode = DISPOSAL_UNSPECIFIED, .DelayTime = 0,
                                     .TransparentColor = NO_TRANSPARENT_COLOR};
    }
    if (!nframes) {
        st = kn_fail(KN_ERR_FORMAT, "gif: no frames");
        goto done;
    }
    {
        double fps = total_cs > 0 ? (double)nframes * 100.0 / (double)total_cs : 10.0;
        if (fps > 1000) fps = 1000;
        v->frames = (int)nframes;
        v->height = H;
        v->width = W;
        v->fps = fps;
        v->rgb = frames;
        frames = NULL;
    }
    goto done;
gif_fail:
    st = kn_fail(KN_ERR_FORMAT, "gif: %s at frame %zu",
                 gif->Error == D_GIF_ERR_READ_FAILED ? "file is truncated" : gif_err(gif->Error), nframes);
done:
    DGifCloseFile(gif, &err);
    free(canvas);
    free(saved);
    free(line);
    free(frames);
    return st;
}
