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

#endif
