/* cli.h — the command-line layer: subcommands register themselves with KN_CLI_COMMAND. */
#ifndef KN_CLI_H
#define KN_CLI_H

#include "kinema.h"

typedef int (*kn_cli_fn)(int argc, char **argv); /* argv[0] is the subcommand name */

void kn_cli_register(const char *name, const char *summary, kn_cli_fn fn);

#define KN_CLI_COMMAND(ident, name, summary, fn)                            \
    __attribute__((constructor)) static void kn_cli_reg_##ident(void) {     \
        kn_cli_register(name, summary, fn);                                 \
    }

/* Prints "kinema: <msg>" (one line) to stderr and returns 1, for `return kn_cli_error(...)`. */
int kn_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a positive integer option value; on failure prints an error naming the option. */
int kn_cli_int(const char *opt, const char *val, long lo, long hi, long *out);
int kn_cli_float(const char *opt, const char *val, double *out);

/* Table-driven options: `--name VALUE`, `--name=VALUE`, `-x VALUE`; flags take no value.
 * Unknown options, missing or malformed values and extra positionals are one-line errors. */
typedef enum { KN_OPT_STR, KN_OPT_INT, KN_OPT_U64, KN_OPT_FLOAT, KN_OPT_FLAG } kn_opt_kind;
typedef struct kn_cli_opt {
    const char *name;  /* "--steps" */
    const char *alias; /* "-s" or NULL */
    kn_opt_kind kind;
    void *dst;         /* const char **, long *, uint64_t *, double *, int * */
    double lo, hi;     /* range for INT / FLOAT */
} kn_cli_opt;
/* Returns 1 on success, 0 after printing an error; 2 when --help was given (usage printed by the
 * caller). Positionals go to pos[0..*npos) (at most maxpos). */
int kn_cli_parse(const char *cmd, int argc, char **argv, const kn_cli_opt *opts, int nopts, const char **pos,
                 int maxpos, int *npos);

#endif
