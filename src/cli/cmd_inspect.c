/* cmd_inspect.c — `kinema inspect PATH`: what is in a safetensors file, a sharded index, a config,
 * a component folder or a diffusers pipeline folder. */
#include "cli.h"
#include "io/config.h"
#include "io/modelfolder.h"
#include "io/safetensors.h"
#include "io/safetensors_info.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: kinema inspect [--variant NAME] [--tensors] PATH\n"
            "  PATH: a .safetensors file, a *.safetensors.index.json, a config .json, a component folder\n"
            "        (config.json + weights) or a diffusers pipeline folder (model_index.json).\n"
            "  --variant NAME  weights variant to look for in folders (e.g. fp16)\n"
            "  --tensors       also list every tensor of each pipeline component\n");
}

/* Prints s with control characters replaced, so one value stays on one line. */
static void put_clean(const char *s, size_t max) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < max; p++, n++)
        putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
    if (s[n])
        fputs("...", stdout);
}

static void human(uint64_t b, char *buf, size_t n) {
    if (b < 10000)
        snprintf(buf, n, "%llu B", (unsigned long long)b);
    else if (b < 10000000ull)
        snprintf(buf, n, "%.1f KiB", (double)b / 1024);
    else if (b < 10000000000ull)
        snprintf(buf, n, "%.1f MiB", (double)b / (1024 * 1024));
    else
        snprintf(buf, n, "%.2f GiB", (double)b / (1024.0 * 1024 * 1024));
}

static void list_tensors(const kn_safetensors *st, const char *indent) {
    for (int i = 0; i < kn_st_count(st); i++) {
        kn_st_info info;
        if (kn_st_info_at(st, i, &info) != KN_OK)
            continue;
        char shape[256];
        size_t k = (size_t)snprintf(shape, sizeof shape, "(");
        for (int d = 0; d < info.ndim && k < sizeof shape; d++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, d ? ",%lld" : "%lld", (long long)info.shape[d]);
        if (k < sizeof shape)
            snprintf(shape + k, sizeof shape - k, ")");
        fputs(indent, stdout);
        put_clean(info.name, 200);
        printf("  %s  %s  %llu\n", info.dtype, shape, (unsigned long long)(info.end - info.begin));
    }
}

static uint64_t tensor_bytes(const kn_safetensors *st) {
    uint64_t s = 0;
    for (int i = 0; i < kn_st_count(st); i++) {
        kn_st_info info;
        if (kn_st_info_at(st, i, &info) == KN_OK)
            s += info.end - info.begin;
    }
    return s;
}

static void print_metadata(const kn_safetensors *st, const char *indent) {
    if (kn_st_metadata_count(st) == 0)
        return;
    printf("%smetadata:\n", indent);
    for (int i = 0; i < kn_st_metadata_count(st); i++) {
        const char *k = kn_st_metadata_key(st, i);
        printf("%s  ", indent);
        put_clean(k, 100);
        fputs(" = ", stdout);
        put_clean(kn_st_metadata(st, k), 200);
        putchar('\n');
    }
}

static int inspect_file(const char *path) {
    kn_safetensors *st = kn_st_open(path);
    if (!st)
        return kn_cli_error("%s", kn_last_error());
    char hb[32];
    human(tensor_bytes(st), hb, sizeof hb);
    printf("%s: safetensors, %d tensors, %s (%llu bytes), header %llu bytes\n", path, kn_st_count(st), hb,
           (unsigned long long)tensor_bytes(st), (unsigned long long)kn_st_header_size(st));
    print_metadata(st, "");
    printf("tensors:\n");
    list_tensors(st, "  ");
    kn_st_close(st);
    return 0;
}

static void weights_summary(const kn_weights *w, const char *indent, int list) {
    char hb[32];
    human(kn_weights_nbytes(w), hb, sizeof hb);
    printf("%sweights: %s: %d tensors in %d file%s, %s (%llu bytes)\n", indent, kn_weights_path(w),
           kn_weights_count(w), kn_weights_nfiles(w), kn_weights_nfiles(w) == 1 ? "" : "s", hb,
           (unsigned long long)kn_weights_nbytes(w));
    if (!list)
        return;
    char ind2[64];
    snprintf(ind2, sizeof ind2, "%s  ", indent);
    for (int f = 0; f < kn_weights_nfiles(w); f++) {
        const kn_safetensors *st = kn_weights_file(w, f);
        if (kn_weights_nfiles(w) > 1)
            printf("%sfile %s: %d tensors\n", ind2, kn_st_path(st), kn_st_count(st));
        print_metadata(st, ind2);
        list_tensors(st, ind2);
    }
}

static int config_summary(const char *path, const char *indent) {
    kn_config *c = kn_config_load(path);
    if (!c)
        return kn_cli_error("%s", kn_last_error());
    const char *cls = NULL;
    kn_config_str(c, "_class_name", NULL, &cls);
    printf("%sconfig: %s%s%s\n", indent, path, cls ? ": " : "", cls ? cls : "");
    for (int i = 0; i < kn_config_count(c); i++) {
        const char *k = kn_config_key(c, i);
        if (k[0] == '_')
            continue;
        char v[96];
        kn_config_value_str(c, k, v, sizeof v);
        printf("%s  ", indent);
        put_clean(k, 80);
        fputs(": ", stdout);
        put_clean(v, 96);
        putchar('\n');
    }
    kn_config_free(c);
    return 0;
}

static int inspect_weights(const char *path, const char *variant) {
    kn_weights *w = kn_weights_open_variant(path, variant);
    if (!w)
        return kn_cli_error("%s", kn_last_error());
    weights_summary(w, "", 1);
    kn_weights_close(w);
    return 0;
}

static int inspect_pipeline(const char *dir, const char *variant, int list) {
    kn_pipeline_folder *p = calloc(1, sizeof *p);
    if (!p)
        return kn_cli_error("out of memory");
    if (kn_pipeline_open(dir, variant, p) != KN_OK) {
        free(p);
        return kn_cli_error("%s", kn_last_error());
    }
    /* check everything first, so that a broken folder prints one error line and nothing else */
    for (int i = 0; i < p->n; i++) {
        const kn_component *k = &p->comp[i];
        kn_config *c = k->config[0] ? kn_config_load(k->config) : NULL;
        kn_weights *w = k->weights[0] ? kn_weights_open(k->weights) : NULL;
        int bad = (k->config[0] && !c) || (k->weights[0] && !w);
        kn_config_free(c);
        kn_weights_close(w);
        if (bad) {
            free(p);
            return kn_cli_error("%s", kn_last_error());
        }
    }
    printf("%s: diffusers pipeline %s (diffusers %s), %d components\n", dir, p->cls[0] ? p->cls : "?",
           p->version[0] ? p->version : "?", p->n);
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++) {
        const kn_component *k = &p->comp[i];
        printf("  %s: %s %s\n", k->name, k->library, k->cls);
        if (k->config[0])
            rc = config_summary(k->config, "    ");
        if (rc == 0 && k->weights[0]) {
            kn_weights *w = kn_weights_open(k->weights);
            if (!w) {
                rc = kn_cli_error("%s", kn_last_error());
                break;
            }
            weights_summary(w, "    ", list);
            kn_weights_close(w);
        }
    }
    free(p);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int cmd_inspect(int argc, char **argv) {
    const char *path = NULL, *variant = NULL;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--variant")) {
            if (++i >= argc)
                return kn_cli_error("option --variant needs a value");
            variant = argv[i];
        } else if (!strcmp(argv[i], "--tensors")) {
            list = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return kn_cli_error("inspect: unknown option '%s' (try `kinema inspect --help`)", argv[i]);
        } else if (path) {
            return kn_cli_error("inspect: one PATH expected, got '%s' and '%s'", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return kn_cli_error("%s: no such file or folder", path);
    if (S_ISDIR(sb.st_mode)) {
        char mi[2048];
        snprintf(mi, sizeof mi, "%s/model_index.json", path);
        if (stat(mi, &sb) == 0)
            return inspect_pipeline(path, variant, list);
        char cfg[2048];
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        int has_cfg = stat(cfg, &sb) == 0;
        kn_config *c = has_cfg ? kn_config_load(cfg) : NULL;
        if (has_cfg && !c)
            return kn_cli_error("%s", kn_last_error());
        kn_config_free(c);
        kn_weights *w = kn_weights_open_variant(path, variant);
        if (!w)
            return kn_cli_error("%s", kn_last_error());
        printf("%s: component folder\n", path);
        if (has_cfg && config_summary(cfg, "  ") != 0) {
            kn_weights_close(w);
            return 1;
        }
        weights_summary(w, "  ", 1);
        kn_weights_close(w);
        return 0;
    }
    if (ends_with(path, ".index.json") || (ends_with(path, ".json") && strstr(path, ".safetensors.index.")))
        return inspect_weights(path, variant);
    if (ends_with(path, "model_index.json")) {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s", path);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = '\0';
        else
            snprintf(dir, sizeof dir, ".");
        return inspect_pipeline(dir, variant, list);
    }
    if (ends_with(path, ".json"))
        return config_summary(path, "");
    return inspect_file(path);
}

KN_CLI_COMMAND(inspect, "inspect", "list the tensors, metadata and configs of a file or model folder", cmd_inspect)
