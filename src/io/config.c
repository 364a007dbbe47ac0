/* config.c — typed access to JSON configs over cJSON. */
#include "io/config.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct kn_config {
    char *path;
    cJSON *root;
};

#define KEYFMT "%.120s"
#define KN_CONFIG_MAX_BYTES (64u << 20)

static const char *jtype(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsBool(j)) return "bool";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "invalid";
}

kn_config *kn_config_parse(const char *text, size_t len, const char *name) {
    if (!name)
        name = "(memory)";
    if (!text) {
        kn_fail(KN_ERR_ARG, "%s: NULL text", name);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        long at = (ep && ep >= text && ep <= text + len) ? (long)(ep - text) : -1;
        /* line number of the error, for people editing configs by hand */
        int line = 1;
        for (long i = 0; i < at; i++)
            line += text[i] == '\n';
        kn_fail(KN_ERR_FORMAT, "%s: invalid JSON at line %d (byte %ld)", name, line, at);
        return NULL;
    }
    for (const char *p = end; p && p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\0') {
            kn_fail(KN_ERR_FORMAT, "%s: trailing characters after the JSON value (byte %ld)", name, (long)(p - text));
            cJSON_Delete(root);
            return NULL;
        }
    if (!cJSON_IsObject(root)) {
        kn_fail(KN_ERR_FORMAT, "%s: top level must be a JSON object, got %s", name, jtype(root));
        cJSON_Delete(root);
        return NULL;
    }
    kn_config *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(name))) {
        free(c);
        cJSON_Delete(root);
        kn_fail(KN_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    c->root = root;
    return c;
}

kn_config *kn_config_load(const char *path) {
    if (!path) {
        kn_fail(KN_ERR_ARG, "config: NULL path");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        kn_fail(KN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        kn_fail(KN_ERR_IO, "%s: not a regular file", path);
        return NULL;
    }
    if ((uint64_t)sb.st_size > KN_CONFIG_MAX_BYTES) {
        fclose(f);
        kn_fail(KN_ERR_FORMAT, "%s: %lld bytes is too large for a config (cap %u)", path, (long long)sb.st_size,
                KN_CONFIG_MAX_BYTES);
        return NULL;
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        kn_fail(KN_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    size_t r = fread(buf, 1, n, f);
    fclose(f);
    if (r != n) {
        free(buf);
        kn_fail(KN_ERR_IO, "%s: short read (%zu of %zu bytes)", path, r, n);
        return NULL;
    }
    buf[n] = '\0';
    kn_config *c = kn_config_parse(buf, n, path);
    free(buf);
    return c;
}

void kn_config_free(kn_config *c) {
    if (!c)
        return;
    cJSON_Delete(c->root);
    free(c->path);
    free(c);
}

const char *kn_config_path(const kn_config *c) { return c ? c->path : ""; }

int kn_config_count(const kn_config *c) { return c ? cJSON_GetArraySize(c->root) : 0; }

const char *kn_config_key(const kn_config *c, int i) {
    if (!c || i < 0)
        return NULL;
    const cJSON *j = c->root->child;
    while (j && i-- > 0)
        j = j->next;
    return j ? j->string : NULL;
}

/* Exact-case lookup (JSON keys are case-sensitive); the last duplicate wins, as in Python's json. */
static const cJSON *get(const kn_config *c, const char *key) {
    if (!c || !key)
        return NULL;
    const cJSON *r = NULL;
    for (const cJSON *j = c->root->child; j; j = j->next)
        if (j->string && !strcmp(j->string, key))
            r = j;
    return r;
}

int kn_config_has(const kn_config *c, const char *key) {
    const cJSON *j = get(c, key);
    return j && !cJSON_IsNull(j);
}

const char *kn_config_type(const kn_config *c, const char *key) { return jtype(get(c, key)); }

static int as_int(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j))
        return 0;
    double v = j->valuedouble;
    if (!(v == floor(v)) || fabs(v) > 9007199254740992.0)
        return 0;
    *out = (int64_t)v;
    return 1;
}

static int parse_float_str(const char *s, double *out) {
    while (*s == ' ')
        s++;
    int neg = 0;
    const char *p = s;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if (!strcasecmp(p, "inf") || !strcasecmp(p, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return 1;
    }
    if (!strcasecmp(p, "nan")) {
        *out = NAN;
        return 1;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE)
        return 0;
    while (*end == ' ')
        end++;
    if (*end)
        return 0;
    *out = v;
    return 1;
}

static kn_status type_err(const kn_config *c, const char *key, const char *want, const cJSON *j) {
    if (cJSON_IsNumber(j))
        return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "' must be %s, got %.17g", c->path, key, want, j->valuedouble);
    return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "' must be %s, got %s", c->path, key, want, jtype(j));
}

kn_status kn_config_int(const kn_config *c, const char *key, int64_t def, int64_t *out) {
    const cJSON *j = get(c, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return KN_OK;
    }
    if (!as_int(j, out))
        return type_err(c, key, "an integer", j);
    return KN_OK;
}

kn_status kn_config_float(const kn_config *c, const char *key, double def, double *out) {
    const cJSON *j = get(c, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return KN_OK;
    }
    if (cJSON_IsNumber(j)) {
        *out = j->valuedouble;
        return KN_OK;
    }
    if (cJSON_IsString(j)) {
        if (parse_float_str(j->valuestring, out))
            return KN_OK;
        return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "' must be a number, got string \"%.40s\"", c->path, key,
                       j->valuestring);
    }
    return type_err(c, key, "a number", j);
}

kn_status kn_config_bool(const kn_config *c, const char *key, int def, int *out) {
    const cJSON *j = get(c, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return KN_OK;
    }
    if (!cJSON_IsBool(j))
        return type_err(c, key, "true or false", j);
    *out = cJSON_IsTrue(j);
    return KN_OK;
}

kn_status kn_config_str(const kn_config *c, const char *key, const char *def, const char **out) {
    const cJSON *j = get(c, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return KN_OK;
    }
    if (!cJSON_IsString(j))
        return type_err(c, key, "a string", j);
    *out = j->valuestring;
    return KN_OK;
}

kn_status kn_config_ints(const kn_config *c, const char *key, int64_t *out, int max, int *n) {
    const cJSON *j = get(c, key);
    *n = 0;
    if (!j || cJSON_IsNull(j))
        return KN_OK;
    if (cJSON_IsNumber(j)) {
        if (max < 1 || !as_int(j, out))
            return type_err(c, key, "an integer or an array of integers", j);
        *n = 1;
        return KN_OK;
    }
    if (!cJSON_IsArray(j))
        return type_err(c, key, "an array of integers", j);
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++) {
        if (k >= max)
            return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "' has %d values, at most %d supported", c->path, key,
                           cJSON_GetArraySize(j), max);
        if (!as_int(e, &out[k])) {
            if (cJSON_IsNumber(e))
                return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "'[%d] must be an integer, got %.17g", c->path, key, k,
                               e->valuedouble);
            return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "'[%d] must be an integer, got %s", c->path, key, k, jtype(e));
        }
    }
    *n = k;
    return KN_OK;
}

kn_status kn_config_floats(const kn_config *c, const char *key, double *out, int max, int *n) {
    const cJSON *j = get(c, key);
    *n = 0;
    if (!j || cJSON_IsNull(j))
        return KN_OK;
    if (!cJSON_IsArray(j))
        return type_err(c, key, "an array of numbers", j);
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++) {
        if (k >= max)
            return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "' has %d values, at most %d supported", c->path, key,
                           cJSON_GetArraySize(j), max);
        if (cJSON_IsNumber(e))
            out[k] = e->valuedouble;
        else if (!(cJSON_IsString(e) && parse_float_str(e->valuestring, &out[k])))
            return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "'[%d] must be a number, got %s", c->path, key, k, jtype(e));
    }
    *n = k;
    return KN_OK;
}

kn_status kn_config_strs(const kn_config *c, const char *key, const char **out, int max, int *n) {
    const cJSON *j = get(c, key);
    *n = 0;
    if (!j || cJSON_IsNull(j))
        return KN_OK;
    if (!cJSON_IsArray(j))
        return type_err(c, key, "an array of strings", j);
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++) {
        if (k >= max)
            return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "' has %d values, at most %d supported", c->path, key,
                           cJSON_GetArraySize(j), max);
        if (!cJSON_IsString(e))
            return kn_fail(KN_ERR_FORMAT, "%s: '" KEYFMT "'[%d] must be a string, got %s", c->path, key, k, jtype(e));
        out[k] = e->valuestring;
    }
    *n = k;
    return KN_OK;
}

char *kn_config_value_str(const kn_config *c, const char *key, char *buf, size_t n) {
    if (!buf || n == 0)
        return buf;
    buf[0] = '\0';
    const cJSON *j = get(c, key);
    if (!j)
        return buf;
    char *s = cJSON_PrintUnformatted(j);
    if (!s)
        return buf;
    snprintf(buf, n, "%s", s);
    if (strlen(s) >= n && n > 4)
        memcpy(buf + n - 4, "...", 4);
    cJSON_free(s);
    return buf;
}
