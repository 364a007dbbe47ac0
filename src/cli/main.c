/* main.c — `kinema SUBCOMMAND ...`: dispatch to the registered subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name, *summary; kn_cli_fn fn; } command;
static command cmds[64];
static int ncmds;

void kn_cli_register(const char *name, const char *summary, kn_cli_fn fn) {
    if (ncmds < (int)(sizeof cmds / sizeof cmds[0]))
        cmds[ncmds++] = (command){name, summary, fn};
}

int kn_cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kinema: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int kn_cli_int(const char *opt, const char *val, long lo, long hi, long *out) {
    if (!val)
        return kn_cli_error("option %s needs a value", opt), 0;
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi)
        return kn_cli_error("option %s: '%s' is not an integer in [%ld, %ld]", opt, val, lo, hi), 0;
    *out = v;
    return 1;
}

int kn_cli_float(const char *opt, const char *val, double *out) {
    if (!val)
        return kn_cli_error("option %s needs a value", opt), 0;
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v))
        return kn_cli_error("option %s: '%s' is not a number", opt, val), 0;
    *out = v;
    return 1;
}

int kn_cli_parse(const char *cmd, int argc, char **argv, const kn_cli_opt *opts, int nopts, const char **pos,
                 int maxpos, int *npos) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 2;
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++) {
                if (*npos >= maxpos)
                    return kn_cli_error("%s: unexpected argument '%s'", cmd, argv[i]), 0;
                pos[(*npos)++] = argv[i];
            }
            break;
        }
        if (a[0] != '-' || a[1] == '\0' || (a[1] >= '0' && a[1] <= '9')) {
            if (*npos >= maxpos)
                return kn_cli_error("%s: unexpected argument '%s' (quote a prompt with spaces)", cmd, a), 0;
            pos[(*npos)++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const kn_cli_opt *o = NULL;
        for (int k = 0; k < nopts && !o; k++)
            if ((strlen(opts[k].name) == nl && !strncmp(opts[k].name, a, nl)) ||
                (opts[k].alias && strlen(opts[k].alias) == nl && !strncmp(opts[k].alias, a, nl)))
                o = &opts[k];
        if (!o)
            return kn_cli_error("%s: unknown option '%.*s' (try `kinema %s --help`)", cmd, (int)nl, a, cmd), 0;
        if (o->kind == KN_OPT_FLAG) {
            if (eq)
                return kn_cli_error("%s: option %s takes no value", cmd, o->name), 0;
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return kn_cli_error("%s: option %s needs a value", cmd, o->name), 0;
        switch (o->kind) {
        case KN_OPT_STR:
            *(const char **)o->dst = v;
            break;
        case KN_OPT_INT: {
            long x;
            if (!kn_cli_int(o->name, v, (long)o->lo, (long)o->hi, &x))
                return 0;
            *(long *)o->dst = x;
            break;
        }
        case KN_OPT_U64: {
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                return kn_cli_error("option %s: '%s' is not a non-negative integer", o->name, v), 0;
            *(uint64_t *)o->dst = x;
            break;
        }
        case KN_OPT_FLOAT: {
            double x;
            if (!kn_cli_float(o->name, v, &x))
                return 0;
            if (x < o->lo || x > o->hi)
                return kn_cli_error("option %s: %g is outside [%g, %g]", o->name, x, o->lo, o->hi), 0;
            *(double *)o->dst = x;
            break;
        }
        default:
            break;
        }
    }
    return 1;
}

static int cmp_cmd(const void *a, const void *b) {
    return strcmp(((const command *)a)->name, ((const command *)b)->name);
}

static void usage(FILE *f) {
    fprintf(f, "usage: kinema COMMAND [options]\n\ncommands:\n");
    for (int i = 0; i < ncmds; i++)
        fprintf(f, "  %-15s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f, "\n`kinema COMMAND --help` describes a command. `kinema --version` prints the version.\n");
}

int main(int argc, char **argv) {
    qsort(cmds, (size_t)ncmds, sizeof cmds[0], cmp_cmd);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("kinema %s\n", KINEMA_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < ncmds; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    kn_cli_error("unknown command '%s' (try `kinema --help`)", argv[1]);
    return 2;
}
