/* checkpoint_io.c — checkpoint files: the entries of train/checkpoint.c through the safetensors
 * writer and reader, a CRC-32 over the data, and all-or-nothing restore. */
#include "io/checkpoint_io.h"

#include "io/safetensors.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CKPT_FORMAT "kinema-checkpoint-1"
#define CKPT_NAME 512

static uLong entry_crc(uLong crc, const kn_tensor *t) {
    const unsigned char *p = t->data;
    size_t n = kn_tensor_nbytes(t);
    while (n > 0) { /* zlib takes uInt lengths */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

/* The entries of several states, one after the other. */
typedef struct {
    const kn_train_state *const *S;
    int n;
} group;

static int g_count(const group *g) {
    int total = 0;
    for (int k = 0; k < g->n; k++) {
        int c = kn_ckpt_count(g->S[k]);
        if (c < 0)
            return -1;
        total += c;
    }
    return total;
}

static kn_status g_entry(const group *g, int i, char *name, size_t cap, kn_tensor *view) {
    for (int k = 0; k < g->n; k++) {
        int c = kn_ckpt_count(g->S[k]);
        if (c < 0)
            return KN_ERR_ARG;
        if (i < c)
            return kn_ckpt_entry(g->S[k], i, name, cap, view);
        i -= c;
    }
    return kn_fail(KN_ERR_ARG, "checkpoint: entry index out of range");
}

kn_status kn_ckpt_save(const char *path, const kn_train_state *S) {
    const kn_train_state *one[1] = {S};
    return kn_ckpt_save_many(path, one, 1);
}

kn_status kn_ckpt_load(const char *path, kn_train_state *S) {
    kn_train_state *one[1] = {S};
    return kn_ckpt_load_many(path, one, 1);
}

kn_status kn_ckpt_save_many(const char *path, const kn_train_state *const *SS, int ns) {
    if (!path)
        return kn_fail(KN_ERR_ARG, "checkpoint: no path");
    if (ns < 1)
        return kn_fail(KN_ERR_ARG, "checkpoint: no state");
    group G = {SS, ns};
    const kn_train_state *S = SS[0];
    int n = g_count(&G);
    if (n < 0)
        return KN_ERR_ARG;
    kn_st_writer *w = kn_st_writer_new();
    if (!w)
        return kn_fail(KN_ERR_NOMEM, "checkpoint: out of memory");
    kn_status st = KN_OK;
    uLong crc = crc32(0L, Z_NULL, 0);
    char name[CKPT_NAME], buf[64];
    for (int i = 0; i < n && st == KN_OK; i++) {
        kn_tensor v;
        st = g_entry(&G, i, name, sizeof name, &v);
        if (st == KN_OK)
            st = kn_st_writer_add(w, name, &v);
        if (st == KN_OK)
            crc = entry_crc(crc, &v);
    }
    if (st == KN_OK)
        st = kn_st_writer_meta(w, "format", CKPT_FORMAT);
    snprintf(buf, sizeof buf, "%08lx", (unsigned long)crc);
    if (st == KN_OK)
        st = kn_st_writer_meta(w, "crc32", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)S->step);
    if (st == KN_OK)
        st = kn_st_writer_meta(w, "step", buf);
    if (st == KN_OK)
        st = kn_st_writer_meta(w, "config", S->config_json ? S->config_json : "{}");
    if (st == KN_OK)
        st = kn_st_writer_write(w, path);
    kn_st_writer_free(w);
    return st;
}

kn_status kn_ckpt_load_many(const char *path, kn_train_state *const *SS, int ns) {
    if (ns < 1)
        return kn_fail(KN_ERR_ARG, "checkpoint: no state");
    group G = {(const kn_train_state *const *)SS, ns};
    int n = g_count(&G);
    if (n < 0)
        return KN_ERR_ARG;
    kn_safetensors *st = kn_st_open(path);
    if (!st)
        return kn_fail(KN_ERR_FORMAT, "checkpoint %s rejected: %s", path, kn_last_error());
    kn_status rc = KN_OK;
    char name[CKPT_NAME], s1[96], s2[96];
    const char *fmt = kn_st_metadata(st, "format"), *crc_s = kn_st_metadata(st, "crc32");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0 || !crc_s) {
        rc = kn_fail(KN_ERR_FORMAT, "checkpoint %s: not a kinema checkpoint (format '%s', want '%s', crc32 %s)", path,
                     fmt ? fmt : "(none)", CKPT_FORMAT, crc_s ? "present" : "missing");
        goto done;
    }
    /* pass 1: every entry present with its dtype and shape; the CRC over the file's bytes */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < n; i++) {
        kn_tensor want, got;
        if ((rc = g_entry(&G, i, name, sizeof name, &want)) != KN_OK)
            goto done;
        if (kn_st_find(st, name) < 0) {
            rc = kn_fail(KN_ERR_FORMAT, "checkpoint %s: entry '%s' is missing", path, name);
            goto done;
        }
        if ((rc = kn_st_get(st, name, &got)) != KN_OK)
            goto done;
        if (got.dtype != want.dtype || !kn_tensor_same_shape(&got, &want)) {
            rc = kn_fail(KN_ERR_SHAPE, "checkpoint %s: entry '%s' is %s %s, the model wants %s %s", path, name,
                         kn_dtype_name(got.dtype), kn_shape_str(&got, s1, sizeof s1), kn_dtype_name(want.dtype),
                         kn_shape_str(&want, s2, sizeof s2));
            goto done;
        }
        crc = entry_crc(crc, &got);
    }
    if (kn_st_count(st) != n) {
        for (int j = 0; j < kn_st_count(st); j++) { /* name one entry the model does not have */
            const char *fn = kn_st_name(st, j);
            int found = 0;
            for (int i = 0; i < n && !found; i++) {
                kn_tensor v;
                g_entry(&G, i, name, sizeof name, &v);
                found = !strcmp(name, fn);
            }
            if (!found) {
                rc = kn_fail(KN_ERR_FORMAT, "checkpoint %s: entry '%.200s' has no place in the model", path, fn);
                goto done;
            }
        }
    }
    char want_crc[32];
    snprintf(want_crc, sizeof want_crc, "%08lx", (unsigned long)crc);
    if (strcmp(want_crc, crc_s) != 0) {
        rc = kn_fail(KN_ERR_FORMAT, "checkpoint %s: data CRC-32 %s does not match the header's %.16s (corrupt file)",
                     path, want_crc, crc_s);
        goto done;
    }
    /* pass 2: copy */
    for (int i = 0; i < n; i++) {
        kn_tensor want, got;
        g_entry(&G, i, name, sizeof name, &want);
        kn_st_get(st, name, &got);
        memcpy(want.data, got.data, kn_tensor_nbytes(&want));
    }
done:
    kn_st_close(st);
    return rc;
}

char *kn_ckpt_read_config(const char *path) {
    kn_safetensors *st = kn_st_open(path);
    if (!st)
        return NULL;
    const char *c = kn_st_metadata(st, "config");
    char *r = c ? strdup(c) : NULL;
    if (!c)
        kn_fail(KN_ERR_FORMAT, "checkpoint %s: no training config in __metadata__", path);
    kn_st_close(st);
    return r;
}

int kn_ckpt_remove_stale_tmp(const char *path) {
    char dir[4096], prefix[1024];
    const char *slash = strrchr(path, '/');
    if (slash) {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        if (!dir[0])
            snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    size_t pl = strlen(prefix);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, pl) != 0)
            continue;
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (unlink(full) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
