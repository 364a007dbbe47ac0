/* cmd_tokenize.c — `kinema tokenize --tokenizer DIR [--pad N --pad-token TOKEN] "prompt"`.
 * Prints the CLIP token ids on one line, separated by spaces. Without --pad: bos ... eos,
 * untruncated. With --pad N: truncated to N (eos kept last) and padded with --pad-token's id
 * (default "<|endoftext|>"), as transformers' padding="max_length", truncation=True. */
#include "cli/cli.h"
#include "io/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: kinema tokenize --tokenizer DIR|FILE [--pad N] [--pad-token TOKEN] "
               "[--decode] \"prompt\"\n"
               "  --tokenizer  folder with vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz\n"
               "  --pad N      truncate/pad to N ids (77 for CLIP)\n"
               "  --pad-token  padding token (default <|endoftext|>; \"!\" for SD2/OpenCLIP)\n"
               "  --decode     also print the ids decoded back to text on a second line\n");
}

static int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *pad_token = NULL;
    long pad = 0;
    int decode = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer")) {
            if (i + 1 >= argc)
                return kn_cli_error("option --tokenizer needs a value");
            dir = argv[++i];
        } else if (!strcmp(a, "--pad")) {
            if (!kn_cli_int("--pad", i + 1 < argc ? argv[i + 1] : NULL, 2, 1 << 20, &pad))
                return 1;
            i++;
        } else if (!strcmp(a, "--pad-token")) {
            if (i + 1 >= argc)
                return kn_cli_error("option --pad-token needs a value");
            pad_token = argv[++i];
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !text)
                text = argv[++i];
            if (i + 1 < argc)
                return kn_cli_error("tokenize: more than one prompt given (quote the prompt)");
        } else if (a[0] == '-' && a[1] == '-') {
            return kn_cli_error("tokenize: unknown option '%s' (try `kinema tokenize --help`)", a);
        } else if (text) {
            return kn_cli_error("tokenize: more than one prompt given (quote the prompt)");
        } else {
            text = a;
        }
    }
    if (!dir)
        return kn_cli_error("tokenize: --tokenizer DIR is required");
    if (!text)
        return kn_cli_error("tokenize: no prompt given");
    if (pad_token && !pad)
        return kn_cli_error("tokenize: --pad-token needs --pad N");
    kn_tokenizer *tok = kn_tokenizer_load(dir);
    if (!tok)
        return kn_cli_error("%s", kn_last_error());
    int n = 0, rc = 0;
    int32_t *ids = NULL;
    if (pad) {
        int pid = kn_tokenizer_token_id(tok, pad_token ? pad_token : "<|endoftext|>");
        ids = malloc((size_t)pad * sizeof *ids);
        if (pid < 0)
            rc = kn_cli_error("tokenize: --pad-token: %s", kn_last_error());
        else if (!ids)
            rc = kn_cli_error("tokenize: out of memory");
        else if (kn_tokenize_padded(tok, text, ids, (int)pad, pid, NULL, NULL) != KN_OK)
            rc = kn_cli_error("%s", kn_last_error());
        n = (int)pad;
    } else {
        int cap = 256;
        ids = malloc((size_t)cap * sizeof *ids);
        kn_status st = ids ? kn_tokenize(tok, text, ids, cap, &n) : KN_ERR_NOMEM;
        if (st == KN_ERR_ARG && n > cap) { /* buffer too small: n is the size needed */
            cap = n;
            int32_t *p = realloc(ids, (size_t)cap * sizeof *ids);
            st = p ? kn_tokenize(tok, text, ids = p, cap, &n) : KN_ERR_NOMEM;
        }
        if (st != KN_OK)
            rc = kn_cli_error("%s", st == KN_ERR_NOMEM ? "tokenize: out of memory" : kn_last_error());
    }
    if (!rc) {
        for (int i = 0; i < n; i++)
            printf(i ? " %d" : "%d", (int)ids[i]);
        printf("\n");
        if (decode) {
            size_t cap = (size_t)n * 64 + 16;
            char *s = malloc(cap);
            if (s && kn_detokenize(tok, ids, n, s, cap) == KN_OK)
                printf("%s\n", s);
            else
                rc = kn_cli_error("tokenize: --decode: %s", s ? kn_last_error() : "out of memory");
            free(s);
        }
    }
    free(ids);
    kn_tokenizer_free(tok);
    return rc;
}

KN_CLI_COMMAND(tokenize, "tokenize", "print the CLIP token ids of a prompt", cmd_tokenize)
