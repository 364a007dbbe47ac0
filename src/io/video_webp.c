/* video_webp.c — animated WebP: written with libwebp's WebPAnimEncoder (<webp/mux.h>), read by
 * walking the RIFF container ourselves (VP8X / ANIM / ANMF chunks, as in the WebP container
 * spec) and decoding each frame's bitstream with WebPDecodeRGBA, composited with the frame's
 * blend and dispose flags. libwebpdemux is not linked by the build, hence the own walker. */
#include "io/image.h"
#include "io/video.h"

#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

kn_status kn_webp_write_file(const char *tmp, const char *path, const kn_video *v, const kn_video_write_opts *o) {
    if (v->width > WEBP_MAX_DIMENSION || v->height > WEBP_MAX_DIMENSION)
        return kn_fail(KN_ERR_ARG, "'%s': WebP sides are at most %d", path, WEBP_MAX_DIMENSION);
    WebPAnimEncoderOptions eo;
    WebPConfig cfg;
    WebPPicture pic;
    WebPData out;
    if (!WebPAnimEncoderOptionsInit(&eo) || !WebPConfigInit(&cfg) || !WebPPictureInit(&pic))
        return kn_fail(KN_ERR_INTERNAL, "'%s': libwebp version mismatch", path);
    WebPDataInit(&out);
    eo.anim_params.loop_count = 0; /* forever */
    eo.allow_mixed = 0;
    cfg.lossless = o->webp_lossless ? 1 : 0;
    cfg.quality = o->webp_lossless ? 75.0f : (float)KN_MIN(KN_MAX(o->quality, 0), 100);
    cfg.method = 4;
    kn_status st = KN_OK;
    WebPAnimEncoder *enc = WebPAnimEncoderNew(v->width, v->height, &eo);
    if (!enc) return kn_fail(KN_ERR_NOMEM, "'%s': cannot create the WebP encoder", path);
    pic.use_argb = 1;
    pic.width = v->width;
    pic.height = v->height;
    for (int t = 0; t < v->frames && st == KN_OK; t++) {
        /* timestamps in ms from exact frame times, so durations accumulate no drift */
        int ts = (int)floor(t * 1000.0 / v->fps + 0.5);
        if (!WebPPictureImportRGB(&pic, kn_video_frame(v, t), v->width * 3) || !WebPAnimEncoderAdd(enc, &pic, ts, &cfg))
            st = kn_fail(KN_ERR_INTERNAL, "'%s': WebP encoding failed at frame %d: %s", path, t, WebPAnimEncoderGetError(enc));
        WebPPictureFree(&pic);
    }
    if (st == KN_OK) {
        int end = (int)floor(v->frames * 1000.0 / v->fps + 0.5);
        if (!WebPAnimEncoderAdd(enc, NULL, end, NULL) || !WebPAnimEncoderAssemble(enc, &out))
            st = kn_fail(KN_ERR_INTERNAL, "'%s': WebP assembly failed: %s", path, WebPAnimEncoderGetError(enc));
    }
    WebPAnimEncoderDelete(enc);
    if (st == KN_OK) {
        FILE *f = fopen(tmp, "wb");
        if (!f) st = kn_fail(KN_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
        else {
            if (fwrite(out.bytes, 1, out.size, f) != out.size) st = kn_fail(KN_ERR_IO, "write error on '%s'", path);
            if (fclose(f) != 0 && st == KN_OK) st = kn_fail(KN_ERR_IO, "write error on '%s': %s", path, strerror(errno));
        }
    }
    WebPDataClear(&out);
    return st;
}

static uint32_t le24(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16; }
static uint32_t le32(const uint8_t *p) { return le24(p) | (uint32_t)p[3] << 24; }

typedef struct {
    int x, y, w, h, dur, blend, dispose;
    const uint8_t *data;
    size_t n;
} webp_frame;

kn_status kn_video_read_webp_mem(const uint8_t *d, size_t n, kn_video *v) {
    memset(v, 0, sizeof *v);
    if (n < 20 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WEBP", 4))
        return kn_fail(KN_ERR_FORMAT, "webp: missing 'RIFF....WEBP' signature");
    size_t riff = (size_t)le32(d + 4) + 8;
    if (riff < n) n = riff; /* ignore trailing bytes */
    int W = 0, H = 0, animated = 0;
    webp_frame *fr = NULL;
    size_t nf = 0, capf = 0;
    kn_status st = KN_OK;
    for (size_t p = 12; p + 8 <= n && st == KN_OK;) {
        const uint8_t *c = d + p;
        size_t len = le32(c + 4), body = p + 8;
        if (len > n - body) {
            st = kn_fail(KN_ERR_FORMAT, "webp: chunk '%.4s' is truncated", (const char *)c);
            break;
        }
        if (!memcmp(c, "VP8X", 4) && len >= 10) {
            W = (int)le24(d + body + 4) + 1;
            H = (int)le24(d + body + 7) + 1;
        } else if (!memcmp(c, "ANIM", 4)) {
            animated = 1;
        } else if (!memcmp(c, "ANMF", 4)) {
            if (len < 16) {
                st = kn_fail(KN_ERR_FORMAT, "webp: ANMF chunk of %zu bytes is too short", len);
                break;
            }
            if (nf == capf) {
                size_t nc = capf ? capf * 2 : 16;
                webp_frame *q = realloc(fr, nc * sizeof *fr);
                if (!q) {
                    st = kn_fail(KN_ERR_NOMEM, "webp: out of memory");
                    break;
                }
                fr = q;
                capf = nc;
            }
            const uint8_t *b = d + body;
            fr[nf++] = (webp_frame){.x = (int)le24(b) * 2, .y = (int)le24(b + 3) * 2, .w = (int)le24(b + 6) + 1,
                                    .h = (int)le24(b + 9) + 1, .dur = (int)le24(b + 12), .blend = !(b[15] & 2),
                                    .dispose = b[15] & 1, .data = b + 16, .n = len - 16};
            if (nf > KN_VIDEO_MAX_FRAMES) st = kn_fail(KN_ERR_FORMAT, "webp: more than %d frames", KN_VIDEO_MAX_FRAMES);
        } else if ((!memcmp(c, "VP8 ", 4) || !memcmp(c, "VP8L", 4)) && !animated && nf == 0) {
            /* a still image: the whole file is one frame */
            if (nf == capf) {
                fr = malloc(sizeof *fr);
                capf = 1;
                if (!fr) {
                    st = kn_fail(KN_ERR_NOMEM, "webp: out of memory");
                    break;
                }
            }
            int w, h;
            if (!WebPGetInfo(d, n, &w, &h)) {
                st = kn_fail(KN_ERR_FORMAT, "webp: bad still-image header");
                break;
            }
            if (!W) W = w, H = h;
            fr[nf++] = (webp_frame){0, 0, w, h, 100, 0, 0, d, n};
        }
        p = body + len + (len & 1);
    }
    if (st == KN_OK && !nf) st = kn_fail(KN_ERR_FORMAT, "webp: no frames");
    if (st == KN_OK && (W <= 0 || H <= 0 || W > KN_VIDEO_MAX_DIM || H > KN_VIDEO_MAX_DIM))
        st = kn_fail(KN_ERR_FORMAT, "webp: canvas %dx%d is missing or outside [1, %d]", W, H, KN_VIDEO_MAX_DIM);
    if (st != KN_OK) {
        free(fr);
        return st;
    }
    /* constant frame rate: a frame lasting k times the shortest duration is repeated k times
     * (WebPAnimEncoder merges identical consecutive frames into one longer one) */
    int dmin = 0;
    long total = 0, nout = 0;
    for (size_t i = 0; i < nf; i++)
        if (fr[i].dur > 0 && (!dmin || fr[i].dur < dmin)) dmin = fr[i].dur;
    for (size_t i = 0; i < nf; i++) {
        long k = dmin && fr[i].dur > 0 ? KN_MAX(1, lround((double)fr[i].dur / dmin)) : 1;
        nout += k;
        total += fr[i].dur;
        if (nout > KN_VIDEO_MAX_FRAMES) break;
    }
    double fps = dmin && total > 0 ? nout * 1000.0 / total : 10.0;
    if (fps > 1000) fps = 1000;
    if (nout > KN_VIDEO_MAX_FRAMES) st = kn_fail(KN_ERR_FORMAT, "webp: more than %d frames", KN_VIDEO_MAX_FRAMES);
    if (st == KN_OK) st = kn_video_alloc(v, (int)nout, H, W, fps);
    uint8_t *canvas = st == KN_OK ? calloc((size_t)W * H * 3, 1) : NULL;
    if (st == KN_OK && !canvas) st = kn_fail(KN_ERR_NOMEM, "webp: out of memory");
    long t = 0;
    for (size_t i = 0; i < nf && st == KN_OK; i++) {
        webp_frame *f = &fr[i];
        int w, h;
        /* check the bitstream's own size before decoding allocates it */
        if (!WebPGetInfo(f->data, f->n, &w, &h) || w != f->w || h != f->h || f->x + w > W || f->y + h > H) {
            st = kn_fail(KN_ERR_FORMAT, "webp: frame %zu header (%dx%d) does not match its %dx%d at %d,%d on the "
                                        "%dx%d canvas", i, w, h, f->w, f->h, f->x, f->y, W, H);
            break;
        }
        uint8_t *px = WebPDecodeRGBA(f->data, f->n, &w, &h);
        if (!px) {
            st = kn_fail(KN_ERR_FORMAT, "webp: frame %zu does not decode", i);
            break;
        }
        if (w != f->w || h != f->h || f->x + w > W || f->y + h > H) {
            WebPFree(px);
            st = kn_fail(KN_ERR_FORMAT, "webp: frame %zu (%dx%d at %d,%d) does not fit the %dx%d canvas", i, w, h,
                         f->x, f->y, W, H);
            break;
        }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const uint8_t *s = px + ((size_t)y * w + x) * 4;
                uint8_t *o = canvas + ((size_t)(f->y + y) * W + f->x + x) * 3;
                unsigned a = f->blend ? s[3] : 255;
                for (int k = 0; k < 3; k++)
                    o[k] = a == 255 ? s[k] : (uint8_t)((s[k] * a + o[k] * (255 - a) + 127) / 255);
            }
        WebPFree(px);
        long k = dmin && f->dur > 0 ? KN_MAX(1, lround((double)f->dur / dmin)) : 1;
        for (long j = 0; j < k; j++) memcpy(kn_video_frame(v, (int)t++), canvas, (size_t)W * H * 3);
        if (f->dispose)
            for (int y = 0; y < h; y++) memset(canvas + ((size_t)(f->y + y) * W + f->x) * 3, 0, (size_t)w * 3);
    }
    free(canvas);
    free(fr);
    if (st != KN_OK) kn_video_free(v);
    return st;
}
