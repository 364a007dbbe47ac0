/* image.h — still images: PNG (libpng) and JPEG (libjpeg-turbo) in, PNG out; plus the atomic
 * file-writing helpers the video writers share.
 *
 *     kn_image im;
 *     if (kn_image_read("cat.jpg", &im) != KN_OK) { ... kn_last_error() ... }
 *     // im.rgb: (H, W, 3) RGB8, row-major, owned by im
 *     kn_image_write_png("cat.png", im.rgb, im.height, im.width);
 *     kn_image_free(&im);
 *
 * Every reader converts any bit depth / colour type (gray, gray+alpha, palette, RGB, RGBA,
 * 16-bit, CMYK JPEG) to RGB8; alpha is composited over black. Decoded sizes are capped at
 * KN_IMAGE_MAX_DIM per side so that a hostile header cannot ask for terabytes. */
#ifndef KN_IO_IMAGE_H
#define KN_IO_IMAGE_H

#include "kinema.h"

#include <stdio.h>

#define KN_IMAGE_MAX_DIM 16384

typedef struct kn_image {
    int height, width;
    uint8_t *rgb; /* (H, W, 3), malloc'd, owned */
} kn_image;

void kn_image_free(kn_image *im);

/* Reads a PNG or JPEG (chosen by the file's magic bytes, not its name). */
kn_status kn_image_read(const char *path, kn_image *im);
kn_status kn_image_read_mem(const uint8_t *data, size_t n, kn_image *im);
kn_status kn_image_read_png_mem(const uint8_t *data, size_t n, kn_image *im);
kn_status kn_image_read_jpeg_mem(const uint8_t *data, size_t n, kn_image *im);

/* Text chunk stored by kn_image_write_png_ex ("" / 0 if none): used to carry a frame rate. */
kn_status kn_image_read_png_text(const char *path, kn_image *im, const char *key, char *val, size_t nval);

/* Writes rgb (H, W, 3) as an 8-bit RGB PNG, atomically: a temporary file in the same directory,
 * renamed over path only when complete (a failure leaves no file). key/val: optional tEXt. */
kn_status kn_image_write_png(const char *path, const uint8_t *rgb, int height, int width);
kn_status kn_image_write_png_ex(const char *path, const uint8_t *rgb, int height, int width,
                                const char *key, const char *val);

/* ---- helpers shared by the io writers */

/* Reads a whole file into a malloc'd buffer (max_bytes caps it). */
kn_status kn_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *n);
/* A temporary name next to path that keeps its extension: "dir/.name.kntmp<pid>_<k>.ext". */
void kn_tmp_path(const char *path, char *buf, size_t n);
/* Renames tmp over path (or removes tmp when st != KN_OK) and returns st or the rename error. */
kn_status kn_commit_tmp(const char *tmp, const char *path, kn_status st);
/* Returns st with kn_last_error() rewritten as "prefix: <previous message>". */
kn_status kn_prefix_error(kn_status st, const char *prefix);
/* The lower-cased extension of path without the dot ("" if none), into buf. */
const char *kn_path_ext(const char *path, char *buf, size_t n);

#endif
