/* image.c — PNG/JPEG decoding to RGB8 and atomic PNG writing (see image.h). */
#include "io/image.h"

#include "core/core.h"

#include <errno.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

void kn_image_free(kn_image *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->height = im->width = 0;
}

/* ------------------------------------------------------------ file helpers */

kn_status kn_prefix_error(kn_status st, const char *prefix) {
    char msg[512]; /* kn_fail formats into the buffer kn_last_error() points to: copy first */
    snprintf(msg, sizeof msg, "%s", kn_last_error());
    return kn_fail(st, "%s: %s", prefix, msg);
}

kn_status kn_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *n) {
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return kn_fail(KN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return kn_fail(KN_ERR_IO, "cannot seek '%s' (not a regular file?)", path);
    }
    long sz = ftell(f);
    if (sz < 0 || (size_t)sz > max_bytes) {
        fclose(f);
        return kn_fail(KN_ERR_IO, "'%s': size %ld is over the limit of %zu bytes", path, sz, max_bytes);
    }
    rewind(f);
    uint8_t *buf = malloc(sz ? (size_t)sz : 1);
    if (!buf) {
        fclose(f);
        return kn_fail(KN_ERR_NOMEM, "cannot allocate %ld bytes for '%s'", sz, path);
    }
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) {
        free(buf);
        return kn_fail(KN_ERR_IO, "short read on '%s' (%zu of %ld bytes)", path, got, sz);
    }
    *data = buf;
    *n = (size_t)sz;
    return KN_OK;
}

const char *kn_path_ext(const char *path, char *buf, size_t n) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    size_t i = 0;
    if (dot && n)
        for (dot++; *dot && i + 1 < n; dot++) buf[i++] = (char)((*dot >= 'A' && *dot <= 'Z') ? *dot + 32 : *dot);
    if (n) buf[i] = 0;
    return buf;
}

void kn_tmp_path(const char *path, char *buf, size_t n) {
    static atomic_int counter;
    int k = atomic_fetch_add(&counter, 1);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    char ext[32];
    kn_path_ext(path, ext, sizeof ext);
    snprintf(buf, n, "%.*s.%s.kntmp%d_%d%s%s", dirlen, path, base, (int)getpid(), k, ext[0] ? "." : "", ext);
}

kn_status kn_commit_tmp(const char *tmp, const char *path, kn_status st) {
    if (st != KN_OK) {
        remove(tmp);
        return st;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return kn_fail(KN_ERR_IO, "cannot rename into '%s': %s", path, strerror(e));
    }
    return KN_OK;
}

/* -------------------------------------------------------------------- PNG */

typedef struct {
    jmp_buf jb;
    char msg[200];
    const uint8_t *data;
    size_t n, pos;
} png_ctx;

static void png_err(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}
static void png_warn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_mem_read(png_structp png, png_bytep out, size_t len) {
    png_ctx *c = png_get_io_ptr(png);
    if (len > c->n - c->pos) png_error(png, "truncated PNG data");
    memcpy(out, c->data + c->pos, len);
    c->pos += len;
}

static kn_status png_decode(const uint8_t *data, size_t n, kn_image *im, const char *key, char *val,
                            size_t nval) {
    memset(im, 0, sizeof *im);
    if (val && nval) val[0] = 0;
    if (n < 8 || png_sig_cmp(data, 0, 8)) return kn_fail(KN_ERR_FORMAT, "not a PNG file (bad signature)");
    /* the IHDR size is checked here so that the message names it (libpng only says "Invalid
     * IHDR data" after warnings we do not print) */
    if (n >= 24 && !memcmp(data + 12, "IHDR", 4)) {
        uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        if (w == 0 || h == 0 || w > KN_IMAGE_MAX_DIM || h > KN_IMAGE_MAX_DIM)
            return kn_fail(KN_ERR_FORMAT, "png: image size %ux%u is outside [1, %d]", (unsigned)w, (unsigned)h,
                           KN_IMAGE_MAX_DIM);
    }
    png_ctx c = {.data = data, .n = n, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_err, png_warn);
    if (!png) return kn_fail(KN_ERR_NOMEM, "png: cannot create read struct");
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile rgba = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return kn_fail(KN_ERR_NOMEM, "png: cannot create info struct");
    }
    if (setjmp(c.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rgba);
        free(rows);
        return kn_fail(KN_ERR_FORMAT, "png: %s", c.msg);
    }
    png_set_user_limits(png, KN_IMAGE_MAX_DIM, KN_IMAGE_MAX_DIM);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_WARN_USE);
    png_set_read_fn(png, &c, png_mem_read);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
    if (w == 0 || h == 0) png_error(png, "zero image size");
    if ((uint64_t)w * h > (1u << 26)) {
        snprintf(c.msg, sizeof c.msg, "image %ux%u is over the limit of 64 Mpixel", (unsigned)w, (unsigned)h);
        longjmp(c.jb, 1);
    }
    if (bd == 16) png_set_strip_16(png);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_filler(png, 0xff, PNG_FILLER_AFTER); /* RGBA everywhere */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 4) png_error(png, "unexpected row size after transforms");
    rgba = malloc((size_t)w * h * 4);
    rows = malloc(sizeof(png_bytep) * h);
    if (!rgba || !rows) {
        snprintf(c.msg, sizeof c.msg, "cannot allocate %ux%u image", (unsigned)w, (unsigned)h);
        longjmp(c.jb, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgba + (size_t)y * w * 4;
    png_read_image(png, rows);
    png_read_end(png, info);
    if (key && val && nval) {
        png_textp text;
        int nt = 0;
        png_get_text(png, info, &text, &nt);
        for (int i = 0; i < nt; i++)
            if (text[i].key && !strcmp(text[i].key, key) && text[i].text)
                snprintf(val, nval, "%s", text[i].text);
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    /* composite over black, in place: RGBA -> RGB */
    uint8_t *s = rgba;
    size_t np = (size_t)w * h;
    for (size_t i = 0; i < np; i++) {
        unsigned a = s[4 * i + 3];
        for (int k = 0; k < 3; k++)
            s[3 * i + k] = a == 255 ? s[4 * i + k] : (uint8_t)((s[4 * i + k] * a + 127) / 255);
    }
    uint8_t *shrunk = realloc(rgba, np * 3);
    im->rgb = shrunk ? shrunk : rgba;
    im->width = (int)w;
    im->height = (int)h;
    return KN_OK;
}

kn_status kn_image_read_png_mem(const uint8_t *data, size_t n, kn_image *im) {
    return png_decode(data, n, im, NULL, NULL, 0);
}

/* ------------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpg_err;

static void jpg_error_exit(j_common_ptr cinfo) {
    jpg_err *e = (jpg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}
static void jpg_output_message(j_common_ptr cinfo) { (void)cinfo; }
/* libjpeg only warns when the data ends early and pads the image with gray: a truncated file
 * is an error here, like in the other readers. Other warnings stay silent. */
static void jpg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpg_error_exit(cinfo);
}

kn_status kn_image_read_jpeg_mem(const uint8_t *data, size_t n, kn_image *im) {
    memset(im, 0, sizeof *im);
    if (n < 3 || data[0] != 0xff || data[1] != 0xd8) return kn_fail(KN_ERR_FORMAT, "not a JPEG file (bad signature)");
    struct jpeg_decompress_struct cinfo;
    jpg_err err;
    uint8_t *volatile out = NULL;
    uint8_t *volatile row = NULL;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpg_error_exit;
    err.pub.output_message = jpg_output_message;
    err.pub.emit_message = jpg_emit_message;
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        free(row);
        return kn_fail(KN_ERR_FORMAT, "jpeg: %s", err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    if (cinfo.image_width == 0 || cinfo.image_height == 0 || cinfo.image_width > KN_IMAGE_MAX_DIM ||
        cinfo.image_height > KN_IMAGE_MAX_DIM) {
        snprintf(err.msg, sizeof err.msg, "image size %ux%u is outside [1, %d]", cinfo.image_width,
                 cinfo.image_height, KN_IMAGE_MAX_DIM);
        longjmp(err.jb, 1);
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, nc = cinfo.output_components;
    out = malloc((size_t)w * h * 3);
    row = malloc((size_t)w * nc);
    if (!out || !row) {
        snprintf(err.msg, sizeof err.msg, "cannot allocate %dx%d image", w, h);
        longjmp(err.jb, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW r = row;
        if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) break;
        uint8_t *o = out + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            if (nc == 3) {
                memcpy(o + 3 * x, row + 3 * x, 3);
            } else if (nc == 4) { /* Adobe CMYK is stored inverted: value = 255 - ink */
                unsigned k = row[4 * x + 3];
                for (int c = 0; c < 3; c++) o[3 * x + c] = (uint8_t)((row[4 * x + c] * k + 127) / 255);
            } else {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = row[x * nc];
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    im->rgb = out;
    im->width = w;
    im->height = h;
    return KN_OK;
}

kn_status kn_image_read_mem(const uint8_t *data, size_t n, kn_image *im) {
    if (n >= 8 && !png_sig_cmp(data, 0, 8)) return kn_image_read_png_mem(data, n, im);
    if (n >= 3 && data[0] == 0xff && data[1] == 0xd8) return kn_image_read_jpeg_mem(data, n, im);
    memset(im, 0, sizeof *im);
    return kn_fail(KN_ERR_FORMAT, "not a PNG or JPEG image (unknown magic bytes)");
}

kn_status kn_image_read(const char *path, kn_image *im) {
    uint8_t *d;
    size_t n;
    memset(im, 0, sizeof *im);
    KN_TRY(kn_read_file(path, (size_t)1 << 30, &d, &n));
    kn_status st = kn_image_read_mem(d, n, im);
    free(d);
    if (st != KN_OK) return kn_prefix_error(st, path);
    return KN_OK;
}

kn_status kn_image_read_png_text(const char *path, kn_image *im, const char *key, char *val, size_t nval) {
    uint8_t *d;
    size_t n;
    memset(im, 0, sizeof *im);
    KN_TRY(kn_read_file(path, (size_t)1 << 30, &d, &n));
    kn_status st = png_decode(d, n, im, key, val, nval);
    free(d);
    if (st != KN_OK) return kn_prefix_error(st, path);
    return KN_OK;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    jmp_buf jb;
    char msg[200];
} pngw_ctx;

static void pngw_err(png_structp png, png_const_charp msg) {
    pngw_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}

static kn_status png_write_file(FILE *f, const uint8_t *rgb, int h, int w, const char *key, const char *val) {
    pngw_ctx c;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, pngw_err, png_warn);
    if (!png) return kn_fail(KN_ERR_NOMEM, "png: cannot create write struct");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return kn_fail(KN_ERR_NOMEM, "png: cannot create info struct");
    }
    if (setjmp(c.jb)) {
        png_destroy_write_struct(&png, &info);
        return kn_fail(KN_ERR_IO, "png write: %s", c.msg);
    }
    png_init_io(png, f);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_text text;
    if (key && val) {
        memset(&text, 0, sizeof text);
        text.compression = PNG_TEXT_COMPRESSION_NONE;
        text.key = (png_charp)key;
        text.text = (png_charp)val;
        png_set_text(png, info, &text, 1);
    }
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return KN_OK;
}

kn_status kn_image_write_png_ex(const char *path, const uint8_t *rgb, int height, int width, const char *key,
                                const char *val) {
    if (!path || !rgb || height <= 0 || width <= 0 || height > KN_IMAGE_MAX_DIM || width > KN_IMAGE_MAX_DIM)
        return kn_fail(KN_ERR_ARG, "png write '%s': bad image %dx%d (sides must be in [1, %d])",
                       path ? path : "(null)", width, height, KN_IMAGE_MAX_DIM);
    char tmp[4096];
    kn_tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "wb");
    if (!f) return kn_fail(KN_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    kn_status st = png_write_file(f, rgb, height, width, key, val);
    if (fflush(f) != 0 || ferror(f)) {
        if (st == KN_OK) st = kn_fail(KN_ERR_IO, "write error on '%s': %s", path, strerror(errno));
    }
    if (fclose(f) != 0 && st == KN_OK) st = kn_fail(KN_ERR_IO, "write error on '%s': %s", path, strerror(errno));
    return kn_commit_tmp(tmp, path, st);
}

kn_status kn_image_write_png(const char *path, const uint8_t *rgb, int height, int width) {
    return kn_image_write_png_ex(path, rgb, height, width, NULL, NULL);
}
