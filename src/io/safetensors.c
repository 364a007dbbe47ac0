/* safetensors.c — memory-mapped safetensors reader (zero copy) and atomic writer.
 *
 * The reader trusts nothing in the file: the 8-byte header length is checked against the file size
 * and a cap, the JSON is parsed by cJSON and must fill the header (trailing spaces allowed), and
 * every tensor entry is checked (dtype name, shape, data_offsets inside the data section, span =
 * numel x dtype size, no overlaps, no duplicate names) before any tensor can be read. Every
 * violation gives one line: "<path>: tensor '<name>': <rule>". */
#include "io/safetensors.h"
#include "io/safetensors_info.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ dtypes */

typedef struct { const char *name; int size; int kn; } st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, KN_F32},   {"F16", 2, KN_F16},  {"BF16", 2, KN_BF16}, {"I64", 8, KN_I64},
    {"I32", 4, KN_I32},   {"U8", 1, KN_U8},    {"F64", 8, -1},       {"I16", 2, -1},
    {"I8", 1, -1},        {"U16", 2, -1},      {"U32", 4, -1},       {"U64", 8, -1},
    {"BOOL", 1, -1},      {"F8_E4M3", 1, -1},  {"F8_E5M2", 1, -1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static int st_dtype_find(const char *s) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, st_dtypes[i].name))
            return i;
    return -1;
}

/* ------------------------------------------------------------------ reader */

typedef struct {
    const char *name; /* points into the cJSON tree */
    int dt;           /* index into st_dtypes */
    int ndim;
    int64_t shape[KN_ST_MAX_DIMS];
    uint64_t begin, end;
    const uint8_t *aligned; /* an aligned copy when the bytes in the file are misaligned, else NULL */
} st_entry;

struct kn_safetensors {
    char *path;
    void *map;          /* mmap base (or NULL) */
    size_t map_size;
    void *heap;         /* file image copy (memory open or misaligned data section) */
    void *realign;      /* aligned copies of tensors stored at misaligned offsets */
    const uint8_t *data; /* data section */
    uint64_t data_size, header_size;
    cJSON *root;
    int n;
    st_entry *e;        /* sorted by begin */
    int *by_name;       /* indices into e, sorted by name */
    int nmeta;
    const char **meta_key, **meta_val;
};

#define NAMEFMT "%.200s" /* names in messages are cut to keep the message one short line */

static const char *json_type(const cJSON *j) {
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsBool(j)) return "bool";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "invalid";
}

/* A JSON number that is an integer in [0, 2^53] (exactly representable). */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j))
        return 0;
    double v = j->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || v != floor(v))
        return 0;
    *out = (uint64_t)v;
    return 1;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument: the entries being sorted, per thread */
static _Thread_local const st_entry *tl_e;
static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(tl_e[*(const int *)a].name, tl_e[*(const int *)b].name);
}

void kn_st_close(kn_safetensors *st) {
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_size);
    kn_aligned_free(st->heap);
    kn_aligned_free(st->realign);
    cJSON_Delete(st->root);
    free(st->e);
    free(st->by_name);
    free(st->meta_key);
    free(st->meta_val);
    free(st->path);
    free(st);
}

static kn_status shape_str(const st_entry *e, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < e->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)e->shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, ")");
    return KN_OK;
}

/* Validates one tensor entry `j` named e->name. */
static kn_status parse_entry(const char *path, const cJSON *j, uint64_t data_size, st_entry *e) {
    const char *nm = e->name;
    if (!cJSON_IsObject(j))
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': entry must be an object, got %s", path, nm,
                       json_type(j));
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = j->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "dtype") ? &dt
                             : !strcmp(c->string, "shape") ? &shape
                             : !strcmp(c->string, "data_offsets") ? &offs
                                                                  : NULL;
        if (slot && *slot)
            return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': key '%s' appears twice", path, nm, c->string);
        if (slot)
            *slot = c;
    }
    if (!dt)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': missing 'dtype'", path, nm);
    if (!cJSON_IsString(dt))
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': 'dtype' must be a string, got %s", path, nm,
                       json_type(dt));
    e->dt = st_dtype_find(dt->valuestring);
    if (e->dt < 0)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': unknown dtype '%.32s'", path, nm, dt->valuestring);
    if (!shape)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': missing 'shape'", path, nm);
    if (!cJSON_IsArray(shape))
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': 'shape' must be an array, got %s", path, nm,
                       json_type(shape));
    int nd = cJSON_GetArraySize(shape);
    if (nd > KN_ST_MAX_DIMS)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': shape has %d dims (max %d)", path, nm, nd,
                       KN_ST_MAX_DIMS);
    e->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0, d = 0;
    for (const cJSON *c = shape->child; c; c = c->next, d++) {
        uint64_t v;
        if (!json_uint(c, &v)) {
            char got[64];
            if (cJSON_IsNumber(c))
                snprintf(got, sizeof got, "%.17g", c->valuedouble);
            else
                snprintf(got, sizeof got, "%s", json_type(c));
            return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': shape[%d] must be a non-negative integer, got %s",
                           path, nm, d, got);
        }
        e->shape[d] = (int64_t)v;
        if (__builtin_mul_overflow(numel, v, &numel))
            overflow = 1;
    }
    uint64_t need;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)st_dtypes[e->dt].size, &need) ||
        need > ((uint64_t)1 << 62))
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': shape product overflows", path, nm);
    if (!offs)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': missing 'data_offsets'", path, nm);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': 'data_offsets' must be an array [begin,end]", path, nm);
    if (!json_uint(offs->child, &e->begin) || !json_uint(offs->child->next, &e->end))
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': data_offsets must be non-negative integers", path, nm);
    if (e->begin > e->end)
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': data_offsets [%llu,%llu] has begin > end", path, nm,
                       (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_size)
        return kn_fail(KN_ERR_FORMAT,
                       "%s: tensor '" NAMEFMT "': data_offsets [%llu,%llu] end past the data section (%llu bytes)",
                       path, nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)data_size);
    if (e->end - e->begin != need) {
        char sb[256];
        shape_str(e, sb, sizeof sb);
        return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': data_offsets [%llu,%llu] span %llu bytes, shape %s %s needs %llu",
                       path, nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin), sb, st_dtypes[e->dt].name,
                       (unsigned long long)need);
    }
    return KN_OK;
}

/* Parses the header of the file image at base[0..size). st->path is set; st->data is set by the caller
 * after this returns (it may copy the data section). */
static kn_status parse(kn_safetensors *st, const uint8_t *base, uint64_t size) {
    const char *path = st->path;
    if (size < 8)
        return kn_fail(KN_ERR_FORMAT, "%s: file is %llu bytes, shorter than the 8-byte header length", path,
                       (unsigned long long)size);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = (hn << 8) | base[i];
    if (hn > KN_ST_MAX_HEADER)
        return kn_fail(KN_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte cap", path,
                       (unsigned long long)hn, KN_ST_MAX_HEADER);
    if (hn > size - 8)
        return kn_fail(KN_ERR_FORMAT, "%s: header length %llu is longer than the %llu bytes after it", path,
                       (unsigned long long)hn, (unsigned long long)(size - 8));
    if (hn < 2)
        return kn_fail(KN_ERR_FORMAT, "%s: header length %llu is too short for a JSON object", path,
                       (unsigned long long)hn);
    st->header_size = hn;
    st->data_size = size - 8 - hn;
    const char *json = (const char *)base + 8;
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hn, &endp, 0);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        long at = (ep && ep >= json && ep <= json + hn) ? (long)(ep - json) : -1;
        return kn_fail(KN_ERR_FORMAT, "%s: header is not valid JSON (error near byte %ld of %llu)", path, at,
                       (unsigned long long)hn);
    }
    st->root = root;
    for (const char *p = endp; p < json + hn; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return kn_fail(KN_ERR_FORMAT, "%s: header has trailing bytes after the JSON object (byte %ld of %llu)",
                           path, (long)(p - json), (unsigned long long)hn);
    if (!cJSON_IsObject(root))
        return kn_fail(KN_ERR_FORMAT, "%s: header must be a JSON object, got %s", path, json_type(root));

    int n = 0, nmeta_objs = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, "__metadata__"))
            nmeta_objs++;
        else
            n++;
    }
    if (nmeta_objs > 1)
        return kn_fail(KN_ERR_FORMAT, "%s: '__metadata__' appears twice", path);
    st->e = calloc((size_t)n + 1, sizeof *st->e);
    st->by_name = calloc((size_t)n + 1, sizeof *st->by_name);
    if (!st->e || !st->by_name)
        return kn_fail(KN_ERR_NOMEM, "%s: out of memory for %d tensor entries", path, n);
    int k = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            if (!cJSON_IsObject(c))
                return kn_fail(KN_ERR_FORMAT, "%s: '__metadata__' must be an object, got %s", path, json_type(c));
            int m = cJSON_GetArraySize(c);
            st->meta_key = calloc((size_t)m + 1, sizeof *st->meta_key);
            st->meta_val = calloc((size_t)m + 1, sizeof *st->meta_val);
            if (!st->meta_key || !st->meta_val)
                return kn_fail(KN_ERR_NOMEM, "%s: out of memory for metadata", path);
            for (const cJSON *m1 = c->child; m1; m1 = m1->next) {
                if (!cJSON_IsString(m1))
                    return kn_fail(KN_ERR_FORMAT, "%s: __metadata__ '" NAMEFMT "' must be a string, got %s", path,
                                   m1->string, json_type(m1));
                for (int q = 0; q < st->nmeta; q++)
                    if (!strcmp(st->meta_key[q], m1->string))
                        return kn_fail(KN_ERR_FORMAT, "%s: __metadata__ key '" NAMEFMT "' appears twice", path,
                                       m1->string);
                st->meta_key[st->nmeta] = m1->string;
                st->meta_val[st->nmeta++] = m1->valuestring;
            }
            continue;
        }
        st_entry *e = &st->e[k++];
        e->name = c->string;
        if (!c->string[0])
            return kn_fail(KN_ERR_FORMAT, "%s: a tensor has an empty name", path);
        KN_TRY(parse_entry(path, c, st->data_size, e));
    }
    st->n = n;
    /* duplicate names: sort indices by name and compare neighbours */
    for (int i = 0; i < n; i++)
        st->by_name[i] = i;
    tl_e = st->e;
    qsort(st->by_name, (size_t)n, sizeof *st->by_name, cmp_name_idx);
    for (int i = 1; i < n; i++)
        if (!strcmp(st->e[st->by_name[i]].name, st->e[st->by_name[i - 1]].name))
            return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': name appears twice in the header", path,
                           st->e[st->by_name[i]].name);
    /* overlaps: sort by offset; every non-empty tensor must start at or after the previous end */
    qsort(st->e, (size_t)n, sizeof *st->e, cmp_begin);
    uint64_t prev_end = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        const st_entry *e = &st->e[i];
        if (e->begin == e->end)
            continue;
        if (prev && e->begin < prev_end)
            return kn_fail(KN_ERR_FORMAT, "%s: tensor '" NAMEFMT "': data_offsets [%llu,%llu] overlap tensor '" NAMEFMT "' (ends at %llu)",
                           path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, prev,
                           (unsigned long long)prev_end);
        prev_end = e->end;
        prev = e->name;
    }
    /* the sort moved entries: rebuild the name index */
    for (int i = 0; i < n; i++)
        st->by_name[i] = i;
    tl_e = st->e;
    qsort(st->by_name, (size_t)n, sizeof *st->by_name, cmp_name_idx);
    return KN_OK;
}

/* After parse: point st->data at the data section, copying it to aligned memory when the section
 * itself is misaligned (header length not a multiple of 8), so typed views stay aligned. */
static kn_status place_data(kn_safetensors *st, const uint8_t *base, int owned_heap) {
    const uint8_t *d = base + 8 + st->header_size;
    if (((uintptr_t)d & 7) == 0 || st->data_size == 0) {
        st->data = d;
        return KN_OK;
    }
    void *h = kn_aligned_alloc((size_t)st->data_size);
    if (!h)
        return kn_fail(KN_ERR_NOMEM, "%s: cannot allocate %llu bytes to align the data section", st->path,
                       (unsigned long long)st->data_size);
    memcpy(h, d, (size_t)st->data_size);
    if (owned_heap) {
        kn_aligned_free(st->heap);
    } else if (st->map) {
        munmap(st->map, st->map_size);
        st->map = NULL;
    }
    st->heap = h;
    st->data = h;
    return KN_OK;
}

/* Tensors at offsets that are not a multiple of their element size (the format does not require
 * alignment, and writers that keep insertion order produce them) get one aligned copy each, made
 * once here, so that views handed out are always naturally aligned. */
static kn_status realign(kn_safetensors *st) {
    uint64_t total = 0;
    for (int i = 0; i < st->n; i++) {
        const st_entry *e = &st->e[i];
        if (e->end > e->begin && ((uintptr_t)(st->data + e->begin) % (uintptr_t)st_dtypes[e->dt].size) != 0)
            total += ((e->end - e->begin) + 63) & ~(uint64_t)63;
    }
    if (total == 0)
        return KN_OK;
    st->realign = kn_aligned_alloc((size_t)total);
    if (!st->realign)
        return kn_fail(KN_ERR_NOMEM, "%s: cannot allocate %llu bytes to align tensors", st->path,
                       (unsigned long long)total);
    uint8_t *q = st->realign;
    for (int i = 0; i < st->n; i++) {
        st_entry *e = &st->e[i];
        if (e->end > e->begin && ((uintptr_t)(st->data + e->begin) % (uintptr_t)st_dtypes[e->dt].size) != 0) {
            memcpy(q, st->data + e->begin, (size_t)(e->end - e->begin));
            e->aligned = q;
            q += ((e->end - e->begin) + 63) & ~(uint64_t)63;
        }
    }
    return KN_OK;
}

static kn_safetensors *st_new(const char *name) {
    kn_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name ? name : "(memory)"))) {
        free(st);
        kn_fail(KN_ERR_NOMEM, "safetensors: out of memory");
        return NULL;
    }
    return st;
}

kn_safetensors *kn_st_open(const char *path) {
    if (!path) {
        kn_fail(KN_ERR_ARG, "safetensors: NULL path");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kn_fail(KN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        kn_fail(KN_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    kn_safetensors *st = st_new(path);
    if (!st) {
        close(fd);
        return NULL;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size > 0) {
        st->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (st->map == MAP_FAILED) {
            st->map = NULL;
            kn_fail(KN_ERR_IO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)size, strerror(errno));
            close(fd);
            kn_st_close(st);
            return NULL;
        }
        st->map_size = (size_t)size;
    }
    close(fd);
    static const uint8_t empty[8];
    const uint8_t *base = st->map ? st->map : empty;
    if (parse(st, base, size) != KN_OK || place_data(st, base, 0) != KN_OK || realign(st) != KN_OK) {
        kn_st_close(st);
        return NULL;
    }
    return st;
}

kn_safetensors *kn_st_open_memory(const void *buf, size_t n, const char *name) {
    kn_safetensors *st = st_new(name);
    if (!st)
        return NULL;
    st->heap = kn_aligned_alloc(n);
    if (!st->heap) {
        kn_fail(KN_ERR_NOMEM, "%s: cannot copy %zu bytes", st->path, n);
        kn_st_close(st);
        return NULL;
    }
    if (n)
        memcpy(st->heap, buf, n);
    if (parse(st, st->heap, n) != KN_OK || place_data(st, st->heap, 1) != KN_OK || realign(st) != KN_OK) {
        kn_st_close(st);
        return NULL;
    }
    return st;
}

int kn_st_count(const kn_safetensors *st) { return st ? st->n : 0; }
const char *kn_st_path(const kn_safetensors *st) { return st ? st->path : ""; }
uint64_t kn_st_data_size(const kn_safetensors *st) { return st ? st->data_size : 0; }
uint64_t kn_st_header_size(const kn_safetensors *st) { return st ? st->header_size : 0; }

const char *kn_st_name(const kn_safetensors *st, int i) {
    return st && i >= 0 && i < st->n ? st->e[i].name : NULL;
}

int kn_st_find(const kn_safetensors *st, const char *name) {
    if (!st || !name)
        return -1;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->e[st->by_name[mid]].name, name);
        if (c == 0)
            return st->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

kn_status kn_st_info_at(const kn_safetensors *st, int i, kn_st_info *out) {
    if (!st || i < 0 || i >= st->n)
        return kn_fail(KN_ERR_ARG, "safetensors: tensor index %d out of range", i);
    const st_entry *e = &st->e[i];
    out->name = e->name;
    out->dtype = st_dtypes[e->dt].name;
    out->kn_dtype = st_dtypes[e->dt].kn;
    out->ndim = e->ndim;
    out->shape = e->shape;
    out->begin = e->begin;
    out->end = e->end;
    return KN_OK;
}

static kn_status lookup(const kn_safetensors *st, const char *name, const st_entry **out) {
    if (!st || !name)
        return kn_fail(KN_ERR_ARG, "safetensors: NULL file or name");
    int i = kn_st_find(st, name);
    if (i < 0)
        return kn_fail(KN_ERR_ARG, "%s: no tensor named '" NAMEFMT "'", st->path, name);
    *out = &st->e[i];
    return KN_OK;
}

kn_status kn_st_get(const kn_safetensors *st, const char *name, kn_tensor *out) {
    const st_entry *e;
    KN_TRY(lookup(st, name, &e));
    int kd = st_dtypes[e->dt].kn;
    if (kd < 0)
        return kn_fail(KN_ERR_UNSUPPORTED, "%s: tensor '" NAMEFMT "': dtype %s is listed but not supported for compute",
                       st->path, name, st_dtypes[e->dt].name);
    if (e->ndim > KN_MAX_DIMS)
        return kn_fail(KN_ERR_UNSUPPORTED, "%s: tensor '" NAMEFMT "': %d dims, kinema tensors have at most %d", st->path,
                       name, e->ndim, KN_MAX_DIMS);
    const uint8_t *p = e->aligned ? e->aligned : st->data + e->begin;
    *out = kn_tensor_view((kn_dtype)kd, e->ndim, e->shape, (void *)p);
    return KN_OK;
}

kn_status kn_st_get_f32(const kn_safetensors *st, const char *name, kn_arena *A, kn_tensor *out) {
    const st_entry *e;
    KN_TRY(lookup(st, name, &e));
    const char *dn = st_dtypes[e->dt].name;
    int is_f64 = !strcmp(dn, "F64");
    int kd = st_dtypes[e->dt].kn;
    if (!is_f64 && kd != KN_F32 && kd != KN_F16 && kd != KN_BF16)
        return kn_fail(KN_ERR_DTYPE, "%s: tensor '" NAMEFMT "': dtype %s is not a float type (F32/F16/BF16/F64)",
                       st->path, name, dn);
    if (e->ndim > KN_MAX_DIMS)
        return kn_fail(KN_ERR_UNSUPPORTED, "%s: tensor '" NAMEFMT "': %d dims, kinema tensors have at most %d", st->path,
                       name, e->ndim, KN_MAX_DIMS);
    kn_tensor t;
    KN_TRY(kn_tensor_alloc(A, &t, KN_F32, e->ndim, e->shape));
    int64_t n = kn_tensor_numel(&t);
    const uint8_t *p = st->data + e->begin;
    float *y = t.data;
    /* memcpy loads: the source may be unaligned */
    if (kd == KN_F32) {
        memcpy(y, p, (size_t)n * 4);
    } else if (is_f64) {
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            y[i] = (float)v;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            y[i] = kd == KN_F16 ? kn_f16_to_f32(h) : kn_bf16_to_f32(h);
        }
    }
    *out = t;
    return KN_OK;
}

const char *kn_st_metadata(const kn_safetensors *st, const char *key) {
    if (!st || !key)
        return NULL;
    for (int i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta_key[i], key))
            return st->meta_val[i];
    return NULL;
}

int kn_st_metadata_count(const kn_safetensors *st) { return st ? st->nmeta : 0; }

const char *kn_st_metadata_key(const kn_safetensors *st, int i) {
    return st && i >= 0 && i < st->nmeta ? st->meta_key[i] : NULL;
}

/* ------------------------------------------------------------------ writer */

typedef struct { char *name; kn_tensor t; } wr_tensor;
typedef struct { char *key, *val; } wr_meta;

struct kn_st_writer {
    wr_tensor *t;
    int nt, capt;
    wr_meta *m;
    int nm, capm;
};

kn_st_writer *kn_st_writer_new(void) {
    kn_st_writer *w = calloc(1, sizeof *w);
    if (!w)
        kn_fail(KN_ERR_NOMEM, "safetensors writer: out of memory");
    return w;
}

void kn_st_writer_free(kn_st_writer *w) {
    if (!w)
        return;
    for (int i = 0; i < w->nt; i++)
        free(w->t[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->m[i].key);
        free(w->m[i].val);
    }
    free(w->t);
    free(w->m);
    free(w);
}

kn_status kn_st_writer_add(kn_st_writer *w, const char *name, const kn_tensor *t) {
    if (!w || !name || !t)
        return kn_fail(KN_ERR_ARG, "safetensors writer: NULL argument");
    if (!name[0] || !strcmp(name, "__metadata__"))
        return kn_fail(KN_ERR_ARG, "safetensors writer: invalid tensor name '%s'", name);
    if ((unsigned)t->dtype >= KN_DTYPE_COUNT || t->ndim < 0 || t->ndim > KN_MAX_DIMS)
        return kn_fail(KN_ERR_ARG, "safetensors writer: tensor '" NAMEFMT "' has a bad dtype or rank", name);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return kn_fail(KN_ERR_ARG, "safetensors writer: tensor '" NAMEFMT "' has a negative dim", name);
    if (kn_tensor_numel(t) > 0 && !t->data)
        return kn_fail(KN_ERR_ARG, "safetensors writer: tensor '" NAMEFMT "' has no data", name);
    for (int i = 0; i < w->nt; i++)
        if (!strcmp(w->t[i].name, name))
            return kn_fail(KN_ERR_ARG, "safetensors writer: tensor '" NAMEFMT "' added twice", name);
    if (w->nt == w->capt) {
        int nc = w->capt ? 2 * w->capt : 16;
        wr_tensor *p = realloc(w->t, (size_t)nc * sizeof *p);
        if (!p)
            return kn_fail(KN_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = p;
        w->capt = nc;
    }
    char *s = strdup(name);
    if (!s)
        return kn_fail(KN_ERR_NOMEM, "safetensors writer: out of memory");
    w->t[w->nt++] = (wr_tensor){s, *t};
    return KN_OK;
}

kn_status kn_st_writer_meta(kn_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value)
        return kn_fail(KN_ERR_ARG, "safetensors writer: NULL metadata argument");
    for (int i = 0; i < w->nm; i++)
        if (!strcmp(w->m[i].key, key)) {
            char *v = strdup(value);
            if (!v)
                return kn_fail(KN_ERR_NOMEM, "safetensors writer: out of memory");
            free(w->m[i].val);
            w->m[i].val = v;
            return KN_OK;
        }
    if (w->nm == w->capm) {
        int nc = w->capm ? 2 * w->capm : 8;
        wr_meta *p = realloc(w->m, (size_t)nc * sizeof *p);
        if (!p)
            return kn_fail(KN_ERR_NOMEM, "safetensors writer: out of memory");
        w->m = p;
        w->capm = nc;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return kn_fail(KN_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->m[w->nm++] = (wr_meta){k, v};
    return KN_OK;
}

/* A growable string buffer for the header. */
typedef struct { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *p = realloc(b->p, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)(k < (int)sizeof tmp ? k : (int)sizeof tmp - 1));
}

static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04x", *p);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static kn_status write_all(int fd, const void *buf, size_t n, const char *path) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return kn_fail(KN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return KN_OK;
}

static kn_status write_body(kn_st_writer *w, int fd, const char *tmp) {
    sbuf b = {0};
    sb_put(&b, "{", 1);
    int first = 1;
    if (w->nm > 0) {
        sb_put(&b, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->nm; i++) {
            if (i)
                sb_put(&b, ",", 1);
            sb_json_str(&b, w->m[i].key);
            sb_put(&b, ":", 1);
            sb_json_str(&b, w->m[i].val);
        }
        sb_put(&b, "}", 1);
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->nt; i++) {
        const kn_tensor *t = &w->t[i].t;
        uint64_t nb = (uint64_t)kn_tensor_nbytes(t);
        if (!first)
            sb_put(&b, ",", 1);
        first = 0;
        sb_json_str(&b, w->t[i].name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", kn_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            sb_printf(&b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    sb_put(&b, "}", 1);
    while (!b.oom && (b.n % 8) != 0)
        sb_put(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        return kn_fail(KN_ERR_NOMEM, "%s: out of memory for the header", tmp);
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    kn_status s = write_all(fd, len, 8, tmp);
    if (s == KN_OK)
        s = write_all(fd, b.p, b.n, tmp);
    free(b.p);
    for (int i = 0; s == KN_OK && i < w->nt; i++) {
        const kn_tensor *t = &w->t[i].t;
        size_t nb = kn_tensor_nbytes(t);
        if (nb == 0)
            continue;
        if (kn_tensor_is_contiguous(t)) {
            s = write_all(fd, t->data, nb, tmp);
            continue;
        }
        kn_tensor c;
        s = kn_tensor_alloc(NULL, &c, t->dtype, t->ndim, t->shape);
        if (s != KN_OK)
            break;
        s = kn_tensor_copy(&c, t);
        if (s == KN_OK)
            s = write_all(fd, c.data, nb, tmp);
        kn_tensor_free(&c);
    }
    return s;
}

kn_status kn_st_writer_write(kn_st_writer *w, const char *path) {
    if (!w || !path || !path[0])
        return kn_fail(KN_ERR_ARG, "safetensors writer: NULL writer or empty path");
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return kn_fail(KN_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_fail(KN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    kn_status s = write_body(w, fd, tmp);
    if (s == KN_OK && fsync(fd) != 0)
        s = kn_fail(KN_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && s == KN_OK)
        s = kn_fail(KN_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (s == KN_OK && rename(tmp, path) != 0)
        s = kn_fail(KN_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (s != KN_OK) {
        unlink(tmp);
        return s;
    }
    /* make the rename durable: fsync the directory */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KN_OK;
}
