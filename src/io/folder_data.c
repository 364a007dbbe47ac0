/* folder_data.c — a folder of captioned videos and images as a clip source (see folder_data.h). */
#include "io/folder_data.h"

#include "core/core.h"
#include "io/image.h"
#include "io/video.h"
#include "train/trainer.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The callback must keep the trainer's signature. */
static const kn_clip_source_fn kn_folder_source_clip_is_a_clip_source = kn_folder_source_clip;

#define KN_FOLDER_PATH_MAX 4096
#define KN_CAPTION_MAX_BYTES ((size_t)1 << 20)

struct kn_folder_source {
    char *dir;
    int n, skipped;
    char **names;      /* (n) file names, sorted */
    uint8_t *is_image; /* (n) */
    int size, frames, fps;
};

static const char *const VIDEO_EXT[] = {"mp4", "webm", "gif", "webp", "y4m", "mov", "mkv", "avi", "m4v"};
static const char *const IMAGE_EXT[] = {"png", "jpg", "jpeg"};

/* 1 video, 2 image, 0 neither. */
static int media_kind(const char *name) {
    char ext[16];
    kn_path_ext(name, ext, sizeof ext);
    for (size_t i = 0; i < sizeof VIDEO_EXT / sizeof VIDEO_EXT[0]; i++)
        if (!strcmp(ext, VIDEO_EXT[i])) return 1;
    for (size_t i = 0; i < sizeof IMAGE_EXT / sizeof IMAGE_EXT[0]; i++)
        if (!strcmp(ext, IMAGE_EXT[i])) return 2;
    return 0;
}

static int is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dir/name with the last extension replaced by ".txt". */
static int caption_path(const char *dir, const char *name, char *buf, size_t n) {
    const char *dot = strrchr(name, '.');
    int stem = dot ? (int)(dot - name) : (int)strlen(name);
    int w = snprintf(buf, n, "%s/%.*s.txt", dir, stem, name);
    return w > 0 && (size_t)w < n;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void kn_folder_source_close(kn_folder_source *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->names[i]);
    free(s->names);
    free(s->is_image);
    free(s->dir);
    free(s);
}

kn_folder_source *kn_folder_source_open(const char *dir, int size, int frames, int fps) {
    KN_UNUSED(kn_folder_source_clip_is_a_clip_source);
    if (!dir || !*dir) return kn_fail(KN_ERR_ARG, "folder data: empty directory name"), NULL;
    if (size < 8 || size > 4096) return kn_fail(KN_ERR_ARG, "folder data: size %d outside [8, 4096]", size), NULL;
    if (frames < 1 || frames > 1024)
        return kn_fail(KN_ERR_ARG, "folder data: frames %d outside [1, 1024]", frames), NULL;
    if (fps < 1 || fps > 240) return kn_fail(KN_ERR_ARG, "folder data: fps %d outside [1, 240]", fps), NULL;
    DIR *d = opendir(dir);
    if (!d) return kn_fail(KN_ERR_IO, "folder data: cannot open directory '%s': %s", dir, strerror(errno)), NULL;
    kn_folder_source *s = calloc(1, sizeof *s);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--; /* "clips/" -> "clips" */
    if (s) s->dir = malloc(dl + 1);
    if (!s || !s->dir) {
        closedir(d);
        kn_folder_source_close(s);
        return kn_fail(KN_ERR_NOMEM, "folder data: out of memory"), NULL;
    }
    memcpy(s->dir, dir, dl);
    s->dir[dl] = 0;
    s->size = size, s->frames = frames, s->fps = fps;
    int cap = 0;
    kn_status st = KN_OK;
    struct dirent *e;
    char path[KN_FOLDER_PATH_MAX], cpath[KN_FOLDER_PATH_MAX];
    while (st == KN_OK && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.') continue;
        int kind = media_kind(name);
        if (!kind) continue;
        int w = snprintf(path, sizeof path, "%s/%s", s->dir, name);
        if (w < 0 || (size_t)w >= sizeof path || !is_regular(path)) continue;
        if (strchr(name, '%') || !caption_path(s->dir, name, cpath, sizeof cpath) || !is_regular(cpath)) {
            s->skipped++;
            continue;
        }
        if (s->n == cap) {
            int nc = cap ? cap * 2 : 64;
            char **nn = realloc(s->names, (size_t)nc * sizeof *nn);
            if (nn) s->names = nn;
            uint8_t *ni = nn ? realloc(s->is_image, (size_t)nc) : NULL;
            if (ni) s->is_image = ni;
            if (!nn || !ni) {
                st = kn_fail(KN_ERR_NOMEM, "folder data: out of memory listing '%s'", dir);
                break;
            }
            cap = nc;
        }
        s->names[s->n] = strdup(name);
        if (!s->names[s->n]) {
            st = kn_fail(KN_ERR_NOMEM, "folder data: out of memory listing '%s'", dir);
            break;
        }
        s->is_image[s->n] = kind == 2;
        s->n++;
    }
    closedir(d);
    if (st == KN_OK && s->n == 0)
        st = kn_fail(KN_ERR_ARG, "folder data: no captioned videos or images in '%s' (%d media file%s without a .txt caption)",
                     dir, s->skipped, s->skipped == 1 ? "" : "s");
    if (st != KN_OK) {
        kn_folder_source_close(s);
        return NULL;
    }
    /* sort names and image flags together */
    char **sorted = malloc((size_t)s->n * sizeof *sorted);
    if (!sorted) {
        kn_folder_source_close(s);
        return kn_fail(KN_ERR_NOMEM, "folder data: out of memory"), NULL;
    }
    memcpy(sorted, s->names, (size_t)s->n * sizeof *sorted);
    qsort(sorted, (size_t)s->n, sizeof *sorted, cmp_name);
    for (int i = 0; i < s->n; i++) {
        s->names[i] = sorted[i];
        s->is_image[i] = media_kind(sorted[i]) == 2;
    }
    free(sorted);
    return s;
}

int kn_folder_source_count(const kn_folder_source *s) { return s ? s->n : 0; }
int kn_folder_source_skipped(const kn_folder_source *s) { return s ? s->skipped : 0; }

const char *kn_folder_source_name(const kn_folder_source *s, uint64_t index) {
    return s && s->n ? s->names[index % (uint64_t)s->n] : NULL;
}

int kn_folder_source_is_image(const kn_folder_source *s, uint64_t index) {
    return s && s->n ? s->is_image[index % (uint64_t)s->n] : 0;
}

/* Caption text -> one line: whitespace runs (newlines, tabs, NULs) become one space, ends trimmed,
 * cut to cap - 1 bytes at a UTF-8 boundary. */
static void clean_caption(const uint8_t *t, size_t n, char *out, size_t cap) {
    size_t o = 0;
    int pending_space = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = t[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0) {
            pending_space = o > 0;
            continue;
        }
        if (pending_space) {
            if (o + 1 >= cap) break;
            out[o++] = ' ';
            pending_space = 0;
        }
        if (o + 1 >= cap) break;
        out[o++] = (char)c;
    }
    /* do not end inside a multi-byte character: drop trailing continuation bytes and their lead */
    if (o > 0 && ((uint8_t)out[o - 1] & 0x80)) {
        size_t k = o;
        while (k > 0 && ((uint8_t)out[k - 1] & 0xC0) == 0x80) k--;
        if (k > 0 && ((uint8_t)out[k - 1] & 0xC0) == 0xC0) {
            uint8_t lead = (uint8_t)out[k - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (o - (k - 1) < need) o = k - 1;
        }
    }
    while (o > 0 && out[o - 1] == ' ') o--;
    out[o] = 0;
}

/* The middle square of every frame, in a new clip. */
static kn_status center_crop(const kn_video *in, kn_video *out) {
    int side = KN_MIN(in->height, in->width);
    int oy = (in->height - side) / 2, ox = (in->width - side) / 2;
    KN_TRY(kn_video_alloc(out, in->frames, side, side, in->fps));
    for (int t = 0; t < in->frames; t++)
        for (int y = 0; y < side; y++)
            memcpy(kn_video_frame(out, t) + (size_t)y * side * 3,
                   kn_video_frame(in, t) + ((size_t)(oy + y) * in->width + ox) * 3, (size_t)side * 3);
    return KN_OK;
}

/* Reads item i as a square clip of size x size (not yet cut to `frames`). */
static kn_status load_item(const kn_folder_source *s, int i, const char *path, kn_video *out) {
    kn_video raw = {0}, sq = {0};
    kn_status st;
    if (s->is_image[i]) {
        kn_image im = {0};
        st = kn_image_read(path, &im);
        if (st == KN_OK) st = kn_video_alloc(&raw, 1, im.height, im.width, s->fps);
        if (st == KN_OK) memcpy(raw.rgb, im.rgb, (size_t)im.height * im.width * 3);
        kn_image_free(&im);
    } else {
        kn_video_read_opts ro = kn_video_read_default_opts();
        ro.fps = s->fps;
        ro.max_frames = s->frames;
        st = kn_video_read(path, &ro, &raw);
        if (st == KN_OK && raw.frames < 1) st = kn_fail(KN_ERR_FORMAT, "no frames");
    }
    if (st == KN_OK) st = center_crop(&raw, &sq);
    kn_video_free(&raw);
    if (st == KN_OK) {
        if (sq.height == s->size) {
            *out = sq;
            return KN_OK;
        }
        st = kn_video_resample(&sq, 0, s->size, s->size, out);
    }
    kn_video_free(&sq);
    return st;
}

/* Makes sure the message names the file. */
static kn_status name_file(kn_status st, const char *path) {
    if (strstr(kn_last_error(), path)) return st;
    return kn_prefix_error(st, path);
}

kn_status kn_folder_source_clip(uint64_t index, float *clip, char *caption, size_t cap, void *user) {
    const kn_folder_source *s = user;
    if (!s || s->n < 1) return kn_fail(KN_ERR_ARG, "folder data: NULL or empty source");
    if (!clip || !caption || cap < 1) return kn_fail(KN_ERR_ARG, "folder data: NULL clip or caption buffer");
    int i = (int)(index % (uint64_t)s->n);
    char path[KN_FOLDER_PATH_MAX], cpath[KN_FOLDER_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s->dir, s->names[i]);
    if (!caption_path(s->dir, s->names[i], cpath, sizeof cpath))
        return kn_fail(KN_ERR_ARG, "folder data: path of '%s' too long", s->names[i]);

    uint8_t *text = NULL;
    size_t tn = 0;
    kn_status st = kn_read_file(cpath, KN_CAPTION_MAX_BYTES, &text, &tn);
    if (st != KN_OK) return name_file(st, cpath);
    clean_caption(text, tn, caption, cap);
    free(text);

    kn_video v = {0};
    st = load_item(s, i, path, &v);
    if (st != KN_OK) return name_file(st, path);
    /* (T,H,W,3) u8 -> (3, frames, size, size) f32; frames past the clip's end repeat its last */
    const int S = s->size, F = s->frames;
    const size_t plane = (size_t)S * S;
    for (int t = 0; t < F; t++) {
        const uint8_t *src = kn_video_frame(&v, KN_MIN(t, v.frames - 1));
        for (int c = 0; c < 3; c++) {
            float *dst = clip + ((size_t)c * F + t) * plane;
            for (size_t p = 0; p < plane; p++) dst[p] = (float)src[p * 3 + c] * (2.0f / 255) - 1.0f;
        }
    }
    kn_video_free(&v);
    return KN_OK;
}
