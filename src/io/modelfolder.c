/* modelfolder.c — diffusers folders: component weights (single, fp16 variant, sharded) and
 * model_index.json pipelines. */
#include "io/modelfolder.h"
#include "io/config.h"
#include "io/safetensors_info.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

typedef struct { const char *name; int file; } w_ref;

struct kn_weights {
    char *path;
    int nfiles;
    kn_safetensors **files;
    int n;
    w_ref *order;  /* files in order, each in offset order */
    w_ref *sorted; /* by name */
};

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

kn_status kn_weights_resolve(const char *dir, const char *variant, char *out, size_t n) {
    if (!dir || !out)
        return kn_fail(KN_ERR_ARG, "weights: NULL folder");
    if (!is_dir(dir))
        return kn_fail(KN_ERR_IO, "%s: not a folder", dir);
    static const char *bases[] = {"diffusion_pytorch_model", "model"};
    char p[2048];
    if (variant && variant[0]) {
        for (int b = 0; b < 2; b++) {
            snprintf(p, sizeof p, "%s/%s.%s.safetensors", dir, bases[b], variant);
            if (is_file(p))
                goto found;
            snprintf(p, sizeof p, "%s/%s.safetensors.index.%s.json", dir, bases[b], variant);
            if (is_file(p))
                goto found;
        }
        return kn_fail(KN_ERR_IO, "%s: no %s weights (looked for diffusion_pytorch_model.%s.safetensors, model.%s.safetensors and their .index.%s.json)",
                       dir, variant, variant, variant, variant);
    }
    for (int b = 0; b < 2; b++) {
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, bases[b]);
        if (is_file(p))
            goto found;
    }
    for (int b = 0; b < 2; b++) {
        snprintf(p, sizeof p, "%s/%s.safetensors.index.json", dir, bases[b]);
        if (is_file(p))
            goto found;
    }
    snprintf(p, sizeof p, "%s/weights.safetensors", dir);
    if (is_file(p))
        goto found;
    {
        /* the only *.safetensors (full precision first, else the only variant file) */
        DIR *d = opendir(dir);
        if (!d)
            return kn_fail(KN_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
        char full[256] = "", var[256] = "";
        int nfull = 0, nvar = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.' || !ends_with(de->d_name, ".safetensors"))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            if (!is_file(p))
                continue;
            const char *dot = strchr(de->d_name, '.');
            int is_var = dot && strcmp(dot, ".safetensors") != 0; /* name.fp16.safetensors */
            if (is_var) {
                nvar++;
                snprintf(var, sizeof var, "%s", de->d_name);
            } else {
                nfull++;
                snprintf(full, sizeof full, "%s", de->d_name);
            }
        }
        closedir(d);
        if (nfull == 1) {
            snprintf(p, sizeof p, "%s/%s", dir, full);
            goto found;
        }
        if (nfull == 0 && nvar == 1) {
            snprintf(p, sizeof p, "%s/%s", dir, var);
            goto found;
        }
        if (nfull + nvar == 0)
            return kn_fail(KN_ERR_IO, "%s: no weights (no diffusion_pytorch_model.safetensors, model.safetensors, "
                           "*.safetensors.index.json or other *.safetensors file)", dir);
        return kn_fail(KN_ERR_IO, "%s: %d .safetensors files and none has a standard name; name the file", dir,
                       nfull + nvar);
    }
found:
    if (strlen(p) + 1 > n)
        return kn_fail(KN_ERR_ARG, "%s: path too long", p);
    memcpy(out, p, strlen(p) + 1);
    return KN_OK;
}

void kn_weights_close(kn_weights *w) {
    if (!w)
        return;
    for (int i = 0; i < w->nfiles; i++)
        kn_st_close(w->files[i]);
    free(w->files);
    free(w->order);
    free(w->sorted);
    free(w->path);
    free(w);
}

static int cmp_ref(const void *a, const void *b) {
    return strcmp(((const w_ref *)a)->name, ((const w_ref *)b)->name);
}

/* Builds the name tables once all files are open; names must be unique across shards. */
static kn_status build_index(kn_weights *w) {
    int n = 0;
    for (int f = 0; f < w->nfiles; f++)
        n += kn_st_count(w->files[f]);
    w->order = malloc(((size_t)n + 1) * sizeof *w->order);
    w->sorted = malloc(((size_t)n + 1) * sizeof *w->sorted);
    if (!w->order || !w->sorted)
        return kn_fail(KN_ERR_NOMEM, "%s: out of memory for %d names", w->path, n);
    int k = 0;
    for (int f = 0; f < w->nfiles; f++)
        for (int i = 0; i < kn_st_count(w->files[f]); i++)
            w->order[k++] = (w_ref){kn_st_name(w->files[f], i), f};
    w->n = n;
    memcpy(w->sorted, w->order, (size_t)n * sizeof *w->sorted);
    qsort(w->sorted, (size_t)n, sizeof *w->sorted, cmp_ref);
    for (int i = 1; i < n; i++)
        if (!strcmp(w->sorted[i].name, w->sorted[i - 1].name))
            return kn_fail(KN_ERR_FORMAT, "%s: tensor '%.200s' is in two shards (%s and %s)", w->path,
                           w->sorted[i].name, kn_st_path(w->files[w->sorted[i - 1].file]),
                           kn_st_path(w->files[w->sorted[i].file]));
    return KN_OK;
}

static kn_status add_file(kn_weights *w, const char *path) {
    kn_safetensors *st = kn_st_open(path);
    if (!st)
        return KN_ERR_FORMAT; /* message set by kn_st_open */
    kn_safetensors **p = realloc(w->files, ((size_t)w->nfiles + 1) * sizeof *p);
    if (!p) {
        kn_st_close(st);
        return kn_fail(KN_ERR_NOMEM, "%s: out of memory", path);
    }
    w->files = p;
    w->files[w->nfiles++] = st;
    return KN_OK;
}

static int find_file(const kn_weights *w, const char *path) {
    for (int i = 0; i < w->nfiles; i++)
        if (!strcmp(kn_st_path(w->files[i]), path))
            return i;
    return -1;
}

/* Opens every shard named in the weight_map of an index, and checks each entry is in its shard. */
static kn_status open_index(kn_weights *w, const char *index_path) {
    kn_config *c = kn_config_load(index_path);
    if (!c)
        return KN_ERR_FORMAT;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    /* the config layer exposes top-level values only: read the weight_map object with cJSON */
    kn_status s = KN_OK;
    if (strcmp(kn_config_type(c, "weight_map"), "object") != 0) {
        s = kn_fail(KN_ERR_FORMAT, "%s: 'weight_map' must be an object, got %s", index_path, kn_config_type(c, "weight_map"));
        kn_config_free(c);
        return s;
    }
    kn_config_free(c);
    FILE *f = fopen(index_path, "rb");
    if (!f)
        return kn_fail(KN_ERR_IO, "%s: cannot open: %s", index_path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    if (!text || got != (size_t)len) {
        free(text);
        return kn_fail(KN_ERR_IO, "%s: cannot read", index_path);
    }
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    free(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!map) {
        cJSON_Delete(root);
        return kn_fail(KN_ERR_FORMAT, "%s: cannot read 'weight_map'", index_path);
    }
    int nent = 0;
    for (const cJSON *e = map->child; e && s == KN_OK; e = e->next, nent++) {
        if (!cJSON_IsString(e)) {
            s = kn_fail(KN_ERR_FORMAT, "%s: weight_map['%.200s'] must be a file name string", index_path, e->string);
            break;
        }
        const char *fn = e->valuestring;
        if (!fn[0] || fn[0] == '/' || strstr(fn, "..") || strchr(fn, '/')) {
            s = kn_fail(KN_ERR_FORMAT, "%s: weight_map['%.200s'] = '%.200s' is not a file name in the index's folder",
                        index_path, e->string, fn);
            break;
        }
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, fn);
        int fi = find_file(w, p);
        if (fi < 0) {
            if (!is_file(p)) {
                s = kn_fail(KN_ERR_IO, "%s: shard %s (for '%.200s') is missing", index_path, p, e->string);
                break;
            }
            s = add_file(w, p);
            fi = w->nfiles - 1;
        }
        if (s == KN_OK && kn_st_find(w->files[fi], e->string) < 0)
            s = kn_fail(KN_ERR_FORMAT, "%s: tensor '%.200s' is mapped to %s but is not in it", index_path, e->string, fn);
    }
    cJSON_Delete(root);
    if (s == KN_OK && nent == 0)
        s = kn_fail(KN_ERR_FORMAT, "%s: empty weight_map", index_path);
    return s;
}

kn_weights *kn_weights_open_variant(const char *path, const char *variant) {
    if (!path) {
        kn_fail(KN_ERR_ARG, "weights: NULL path");
        return NULL;
    }
    char resolved[2048];
    if (is_dir(path)) {
        if (kn_weights_resolve(path, variant, resolved, sizeof resolved) != KN_OK)
            return NULL;
    } else if (is_file(path)) {
        snprintf(resolved, sizeof resolved, "%s", path);
    } else {
        kn_fail(KN_ERR_IO, "%s: no such file or folder", path);
        return NULL;
    }
    kn_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(resolved))) {
        free(w);
        kn_fail(KN_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    kn_status s = ends_with(resolved, ".json") ? open_index(w, resolved) : add_file(w, resolved);
    if (s == KN_OK)
        s = build_index(w);
    if (s != KN_OK) {
        kn_weights_close(w);
        return NULL;
    }
    return w;
}

kn_weights *kn_weights_open(const char *dir_or_file) { return kn_weights_open_variant(dir_or_file, NULL); }

int kn_weights_count(const kn_weights *w) { return w ? w->n : 0; }
const char *kn_weights_name(const kn_weights *w, int i) { return w && i >= 0 && i < w->n ? w->order[i].name : NULL; }
int kn_weights_nfiles(const kn_weights *w) { return w ? w->nfiles : 0; }
const kn_safetensors *kn_weights_file(const kn_weights *w, int i) {
    return w && i >= 0 && i < w->nfiles ? w->files[i] : NULL;
}
const char *kn_weights_path(const kn_weights *w) { return w ? w->path : ""; }

const kn_safetensors *kn_weights_file_of(const kn_weights *w, const char *name) {
    if (!w || !name)
        return NULL;
    w_ref key = {name, 0};
    const w_ref *r = bsearch(&key, w->sorted, (size_t)w->n, sizeof *w->sorted, cmp_ref);
    return r ? w->files[r->file] : NULL;
}

int kn_weights_has(const kn_weights *w, const char *name) { return kn_weights_file_of(w, name) != NULL; }

kn_status kn_weights_get(const kn_weights *w, const char *name, kn_tensor *out) {
    const kn_safetensors *st = kn_weights_file_of(w, name);
    if (!st)
        return kn_fail(KN_ERR_ARG, "%s: no tensor named '%.200s'", w ? w->path : "weights", name ? name : "(null)");
    return kn_st_get(st, name, out);
}

kn_status kn_weights_get_f32(const kn_weights *w, const char *name, kn_arena *A, kn_tensor *out) {
    const kn_safetensors *st = kn_weights_file_of(w, name);
    if (!st)
        return kn_fail(KN_ERR_ARG, "%s: no tensor named '%.200s'", w ? w->path : "weights", name ? name : "(null)");
    return kn_st_get_f32(st, name, A, out);
}

uint64_t kn_weights_nbytes(const kn_weights *w) {
    uint64_t s = 0;
    for (int f = 0; w && f < w->nfiles; f++)
        for (int i = 0; i < kn_st_count(w->files[f]); i++) {
            kn_st_info info;
            if (kn_st_info_at(w->files[f], i, &info) == KN_OK)
                s += info.end - info.begin;
        }
    return s;
}

/* ---------------------------------------------------------------- pipelines */

const kn_component *kn_pipeline_component(const kn_pipeline_folder *p, const char *name) {
    for (int i = 0; p && name && i < p->n; i++)
        if (!strcmp(p->comp[i].name, name))
            return &p->comp[i];
    return NULL;
}

kn_status kn_pipeline_open(const char *dir, const char *variant, kn_pipeline_folder *out) {
    if (!dir || !out)
        return kn_fail(KN_ERR_ARG, "pipeline: NULL argument");
    memset(out, 0, sizeof *out);
    if (strlen(dir) >= sizeof out->root - 80)
        return kn_fail(KN_ERR_ARG, "%.200s: path too long", dir);
    char root[sizeof out->root];
    snprintf(root, sizeof root, "%s", dir);
    for (size_t L = strlen(root); L > 1 && root[L - 1] == '/'; L--)
        root[L - 1] = '\0'; /* "pipe/" -> "pipe", so paths read "pipe/unet" */
    memcpy(out->root, root, sizeof root);
    dir = root;
    char p[2048];
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    if (!is_file(p))
        return kn_fail(KN_ERR_IO, "%s: missing (not a diffusers pipeline folder)", p);
    kn_config *c = kn_config_load(p);
    if (!c)
        return KN_ERR_FORMAT;
    const char *s;
    kn_status st = kn_config_str(c, "_class_name", "", &s);
    if (st == KN_OK) {
        snprintf(out->cls, sizeof out->cls, "%s", s);
        st = kn_config_str(c, "_diffusers_version", "", &s);
    }
    if (st == KN_OK)
        snprintf(out->version, sizeof out->version, "%s", s);
    for (int i = 0; st == KN_OK && i < kn_config_count(c); i++) {
        const char *key = kn_config_key(c, i);
        if (key[0] == '_')
            continue;
        const char *lc[2] = {0};
        int n = 0;
        if (strcmp(kn_config_type(c, key), "array") != 0)
            continue; /* pipeline options such as "requires_safety_checker": false */
        /* [null, null] marks an absent component */
        char v[64];
        kn_config_value_str(c, key, v, sizeof v);
        if (!strcmp(v, "[null,null]"))
            continue;
        st = kn_config_strs(c, key, lc, 2, &n);
        if (st != KN_OK)
            break;
        if (n != 2) {
            st = kn_fail(KN_ERR_FORMAT, "%s: '%.64s' must be [library, class], got %d values", p, key, n);
            break;
        }
        if (out->n >= KN_PIPE_MAX_COMPONENTS) {
            st = kn_fail(KN_ERR_FORMAT, "%s: more than %d components", p, KN_PIPE_MAX_COMPONENTS);
            break;
        }
        if (strlen(key) >= sizeof out->comp[0].name || strchr(key, '/') || strstr(key, "..")) {
            st = kn_fail(KN_ERR_FORMAT, "%s: bad component name '%.64s'", p, key);
            break;
        }
        kn_component *k = &out->comp[out->n++];
        snprintf(k->name, sizeof k->name, "%s", key);
        snprintf(k->library, sizeof k->library, "%s", lc[0]);
        snprintf(k->cls, sizeof k->cls, "%s", lc[1]);
        snprintf(k->dir, sizeof k->dir, "%s/%s", dir, key);
        if (!is_dir(k->dir)) {
            st = kn_fail(KN_ERR_IO, "%s: component '%s' (%s) is listed in model_index.json but its folder is missing",
                         k->dir, key, k->cls);
            break;
        }
        static const char *cfgs[] = {"config.json", "scheduler_config.json", "tokenizer_config.json"};
        for (int q = 0; q < 3; q++) {
            char cp[sizeof k->config];
            snprintf(cp, sizeof cp, "%s/%s", k->dir, cfgs[q]);
            if (is_file(cp)) {
                memcpy(k->config, cp, sizeof cp);
                break;
            }
        }
        /* scheduler and tokenizer have no weights; others must */
        if (strstr(k->cls, "Scheduler") || strstr(k->cls, "Tokenizer"))
            continue;
        if (kn_weights_resolve(k->dir, variant, k->weights, sizeof k->weights) != KN_OK) {
            st = KN_ERR_IO;
            break;
        }
    }
    kn_config_free(c);
    return st;
}
