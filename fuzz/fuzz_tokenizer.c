/* fuzz_tokenizer.c — libFuzzer target for the CLIP tokenizer.
 *   - input not starting with "\x01V" or "\x01M": tokenize it with the CLIP vocabulary, loaded
 *     once from $KINEMA_FIXTURES/clip (default ../shared/fixtures/clip). Checks, beyond "no
 *     crash / no sanitizer report": ids are in the vocabulary, the sequence is bos ... eos, the
 *     padded form agrees with the unpadded one, and decoding succeeds.
 *   - "\x01V" + vocab.json + "\0" + merges.txt, or "\x01M" + an OpenAI merge list: load that
 *     vocabulary from memory (errors are fine: they must be clean), then tokenize a fixed
 *     prompt with it.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -I/usr/include/cjson \
 *       fuzz/fuzz_tokenizer.c src/core/[a-z]*.c src/io/tokenizer.c -lcjson -lz -lm -lpthread \
 *       -o build-fuzz/fuzz_tokenizer
 *   build-fuzz/fuzz_tokenizer fuzz/corpus/tokenizer */
#include "io/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kn_tokenizer *tok;

static void die(const char *what) {
    fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) {
        const char *fx = getenv("KINEMA_FIXTURES");
        char path[4096];
        snprintf(path, sizeof path, "%s/clip", fx ? fx : "../shared/fixtures");
        tok = kn_tokenizer_load(path);
        if (!tok) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", kn_last_error());
            abort();
        }
    }
    if (size > (1 << 16))
        return 0;
    if (size >= 2 && data[0] == 1 && (data[1] == 'V' || data[1] == 'M')) {
        const char *p = (const char *)data + 2;
        size_t n = size - 2;
        kn_tokenizer *t;
        if (data[1] == 'V') {
            const char *z = memchr(p, 0, n);
            size_t vl = z ? (size_t)(z - p) : n;
            t = kn_tokenizer_from_memory(p, vl, z ? z + 1 : "", z ? n - vl - 1 : 0);
        } else {
            t = kn_tokenizer_from_memory(NULL, 0, p, n);
        }
        if (!t) {
            if (!kn_last_error()[0] || strchr(kn_last_error(), '\n'))
                die("load failed without a one-line message");
            return 0;
        }
        int32_t ids[256];
        int n_ids = 0;
        kn_status st = kn_tokenize(t, "a photo of a cat, caf\xc3\xa9 \xe6\x97\xa5!!", ids, 256, &n_ids);
        if (st != KN_OK)
            die(kn_last_error());
        for (int i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= kn_tokenizer_vocab_size(t))
                die("id out of range (custom vocab)");
        kn_tokenizer_free(t);
        return 0;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0; /* an embedded NUL ends the text, as for any C string */
    int cap = (int)size * 4 + 8;
    int32_t *ids = malloc((size_t)cap * sizeof *ids), pad[77], mask[77];
    char *dec = malloc((size_t)cap * 64);
    int n = 0, nreal = 0;
    if (!ids || !dec)
        goto done;
    if (kn_tokenize(tok, text, ids, cap, &n) != KN_OK)
        die(kn_last_error());
    if (n < 2 || ids[0] != kn_tokenizer_bos(tok) || ids[n - 1] != kn_tokenizer_eos(tok))
        die("not bos ... eos");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= kn_tokenizer_vocab_size(tok))
            die("id out of range");
    if (kn_tokenize_padded(tok, text, pad, 77, 0, mask, &nreal) != KN_OK)
        die(kn_last_error());
    if (nreal != (n < 77 ? n : 77) || pad[nreal - 1] != kn_tokenizer_eos(tok))
        die("padded length");
    for (int i = 0; i < nreal - 1; i++)
        if (pad[i] != ids[i] || !mask[i])
            die("padded ids differ");
    for (int i = nreal; i < 77; i++)
        if (pad[i] != 0 || mask[i])
            die("padding");
    if (kn_detokenize(tok, ids, n, dec, (size_t)cap * 64) != KN_OK)
        die(kn_last_error());
done:
    free(text);
    free(ids);
    free(dec);
    return 0;
}
