/* test_tokenizer.c — CLIP BPE tokenizer against transformers' slow CLIPTokenizer (no ftfy):
 * ../shared/fixtures/diffusers/tokenizer/tokenizer_ref.json, with both loaders, plus CLI,
 * malformed files, invalid UTF-8 and random bytes. */
#include "io/tokenizer.h"
#include "kt.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

static cJSON *load_ref(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/diffusers/tokenizer/tokenizer_ref.json", kt_fixtures());
    char *s = kt_slurp(path, NULL);
    KT_CHECKF(s != NULL, "cannot read %s", path);
    if (!s)
        return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    KT_CHECKF(j != NULL, "%s: bad JSON", path);
    return j;
}

static kn_tokenizer *load_clip(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/clip%s", kt_fixtures(), rel);
    kn_tokenizer *t = kn_tokenizer_load(path);
    KT_CHECKF(t != NULL, "load %s: %s", path, kn_last_error());
    return t;
}

/* Compares ids[0..n) with the JSON int array a; reports the first mismatch. */
static void check_ids(const char *what, const char *text, const int32_t *ids, int n, const cJSON *a) {
    int m = cJSON_GetArraySize(a);
    KT_CHECKF(n == m, "%s '%.50s': %d ids, expected %d", what, text, n, m);
    for (int i = 0; i < n && i < m; i++) {
        int want = cJSON_GetArrayItem(a, i)->valueint;
        if (ids[i] != want) {
            KT_CHECKF(0, "%s '%.50s': id[%d] = %d, expected %d", what, text, i, (int)ids[i], want);
            return;
        }
    }
}

static void check_fixture(kn_tokenizer *t, const char *loader) {
    cJSON *ref = load_ref();
    if (!ref || !t) {
        cJSON_Delete(ref);
        return;
    }
    const cJSON *prompts = cJSON_GetObjectItem(ref, "prompts");
    int np = cJSON_GetArraySize(prompts);
    KT_CHECK(np >= 40);
    int pad_eot = kn_tokenizer_token_id(t, "<|endoftext|>"), pad_bang = kn_tokenizer_token_id(t, "!");
    KT_CHECK(pad_eot == 49407 && pad_bang == 0);
    for (int p = 0; p < np; p++) {
        const cJSON *pr = cJSON_GetArrayItem(prompts, p);
        const char *text = cJSON_GetObjectItem(pr, "text")->valuestring;
        int32_t ids[512], mask[77];
        int n = 0, nreal = 0;
        char what[64];
        snprintf(what, sizeof what, "%s ids", loader);
        KT_OK(kn_tokenize(t, text, ids, 512, &n));
        check_ids(what, text, ids, n, cJSON_GetObjectItem(pr, "ids"));
        snprintf(what, sizeof what, "%s ids_pad77_eot", loader);
        KT_OK(kn_tokenize_padded(t, text, ids, 77, pad_eot, mask, &nreal));
        check_ids(what, text, ids, 77, cJSON_GetObjectItem(pr, "ids_pad77_eot"));
        snprintf(what, sizeof what, "%s attention_mask", loader);
        check_ids(what, text, mask, 77, cJSON_GetObjectItem(pr, "attention_mask_pad77"));
        snprintf(what, sizeof what, "%s ids_pad77_bang", loader);
        KT_OK(kn_tokenize_padded(t, text, ids, 77, pad_bang, NULL, NULL));
        check_ids(what, text, ids, 77, cJSON_GetObjectItem(pr, "ids_pad77_bang"));
    }
    cJSON_Delete(ref);
}

KT_TEST(tokenizer_fixture_vocab_json) {
    kn_tokenizer *t = load_clip("");
    check_fixture(t, "vocab.json");
    kn_tokenizer_free(t);
}

KT_TEST(tokenizer_fixture_gz) {
    kn_tokenizer *t = load_clip("/bpe_simple_vocab_16e6.txt.gz");
    check_fixture(t, "gz");
    kn_tokenizer_free(t);
}

KT_TEST(tokenizer_loaders_agree) {
    kn_tokenizer *a = load_clip(""), *b = load_clip("/bpe_simple_vocab_16e6.txt.gz");
    if (!a || !b)
        goto done;
    KT_CHECK(kn_tokenizer_vocab_size(a) == 49408 && kn_tokenizer_vocab_size(b) == 49408);
    KT_CHECK(kn_tokenizer_bos(a) == 49406 && kn_tokenizer_eos(a) == 49407);
    for (int i = 0; i < 49408; i++) {
        const char *x = kn_tokenizer_token_str(a, i), *y = kn_tokenizer_token_str(b, i);
        if (!x || !y || strcmp(x, y)) {
            KT_CHECKF(0, "id %d: vocab.json '%s' vs gz '%s'", i, x ? x : "-", y ? y : "-");
            break;
        }
    }
    KT_CHECK(kn_tokenizer_token_str(a, 49408) == NULL && kn_tokenizer_token_str(a, -1) == NULL);
done:
    kn_tokenizer_free(a);
    kn_tokenizer_free(b);
}

KT_TEST(tokenizer_sanity_and_decode) {
    kn_tokenizer *t = load_clip("");
    if (!t)
        return;
    int32_t ids[16];
    int n = 0;
    const int32_t want[7] = {49406, 320, 1125, 539, 320, 2368, 49407};
    KT_OK(kn_tokenize(t, "a photo of a cat", ids, 16, &n));
    KT_CHECK(n == 7 && !memcmp(ids, want, sizeof want));
    char s[256];
    KT_OK(kn_detokenize(t, ids + 1, n - 2, s, sizeof s));
    KT_CHECKF(!strcmp(s, "a photo of a cat"), "decoded '%s'", s);
    /* too-small buffer: error, and n says how many are needed */
    KT_CHECK(kn_tokenize(t, "a photo of a cat", ids, 3, &n) == KN_ERR_ARG && n == 7);
    KT_CHECK(kn_detokenize(t, ids, 1, s, 4) == KN_ERR_ARG);
    int32_t bad = 49408;
    KT_CHECK(kn_detokenize(t, &bad, 1, s, sizeof s) == KN_ERR_ARG);
    KT_CHECK(kn_tokenizer_token_id(t, "no-such-token") == -1);
    kn_tokenizer_free(t);
}

/* ids of a and b must be equal */
static void same_ids(kn_tokenizer *t, const char *a, const char *b) {
    int32_t x[256], y[256];
    int nx = 0, ny = 0;
    KT_OK(kn_tokenize(t, a, x, 256, &nx));
    KT_OK(kn_tokenize(t, b, y, 256, &ny));
    KT_CHECKF(nx == ny && !memcmp(x, y, (size_t)nx * sizeof *x), "'%s' and '%s' tokenize differently (%d vs %d ids)",
              a, b, nx, ny);
}

KT_TEST(tokenizer_text_rules) {
    kn_tokenizer *t = load_clip("");
    if (!t)
        return;
    same_ids(t, "a\xff" "b \xc3", "ab");             /* invalid UTF-8 -> U+FFFD -> removed */
    same_ids(t, "a\xed\xa0\x80" "b", "ab");           /* encoded surrogate: invalid */
    same_ids(t, "a\xe0\x80\xaf" "b", "ab");           /* overlong */
    same_ids(t, "\xf4\x90\x80\x80x", "x");            /* > U+10FFFF */
    same_ids(t, "a\x01\x0b" "b", "ab");               /* control chars are deleted, not spaces */
    same_ids(t, "a\xe2\x80\x8b" "b", "ab");           /* U+200B (Cf) deleted */
    same_ids(t, "a\tb\xc2\xa0" "c\xe3\x80\x80" "d", "a b c d"); /* \t, NBSP, ideographic space */
    same_ids(t, "a\xe2\x80\xa8" "b", "a b");          /* U+2028 splits words */
    same_ids(t, "cafe\xcc\x81", "caf\xc3\xa9");       /* NFC: e + U+0301 == é */
    same_ids(t, "\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80"); /* NFC hangul jamo -> syllable */
    same_ids(t, "\xe2\x84\xab", "\xc3\xa5");           /* U+212B ANGSTROM -> Å -> å */
    same_ids(t, "\xc3\x89T\xc3\x89 \xd0\x9c\xd0\x98\xd0\xa0", "\xc3\xa9t\xc3\xa9 \xd0\xbc\xd0\xb8\xd1\x80");
    same_ids(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82"); /* final sigma */
    same_ids(t, "\xe4\xb8\xad\xe6\x96\x87", "\xe4\xb8\xad \xe6\x96\x87"); /* CJK get spaces */
    same_ids(t, "A<|ENDOFTEXT|>", "a <|endoftext|>");  /* lower-cased, then the regex special */
    /* the literal special token is split out before cleanup: "!!" stays one piece */
    int32_t x[32], y[32];
    int nx = 0, ny = 0;
    KT_OK(kn_tokenize(t, "!!<|endoftext|>", x, 32, &nx));
    KT_OK(kn_tokenize(t, "!!", y, 32, &ny));
    KT_CHECK(nx == ny + 1 && !memcmp(x, y, (size_t)(ny - 1) * sizeof *x) && x[ny - 1] == 49407 &&
             x[ny] == 49407);
    KT_OK(kn_tokenize(t, "", x, 32, &nx));
    KT_CHECK(nx == 2 && x[0] == 49406 && x[1] == 49407);
    KT_OK(kn_tokenize(t, "\xff\xfe\x01", x, 32, &nx));
    KT_CHECK(nx == 2);
    kn_tokenizer_free(t);
}

KT_TEST(tokenizer_random_bytes) {
    kn_tokenizer *t = load_clip("");
    if (!t)
        return;
    char s[513];
    int32_t ids[2048];
    float r[512];
    int bad = 0;
    for (int it = 0; it < 300 && !bad; it++) {
        int len = 1 + it % 512;
        kn_rand_fill(r, len, 1234, (uint64_t)it * 512);
        for (int i = 0; i < len; i++) {
            int b = 1 + (int)(r[i] * 255.0f); /* no NUL */
            if (it % 3 == 1) /* mostly ASCII with some high bytes */
                b = r[i] < 0.8f ? 32 + (int)(r[i] / 0.8f * 95) : 128 + (int)((r[i] - 0.8f) * 600) % 128;
            s[i] = (char)(b > 255 ? 255 : b);
        }
        s[len] = 0;
        int n = 0;
        if (kn_tokenize(t, s, ids, 2048, &n) != KN_OK) {
            KT_CHECKF(0, "random input %d: %s", it, kn_last_error());
            bad = 1;
            break;
        }
        KT_CHECK(n >= 2 && ids[0] == 49406 && ids[n - 1] == 49407);
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= 49408) {
                KT_CHECKF(0, "random input %d: id %d out of range", it, (int)ids[i]);
                bad = 1;
                break;
            }
        char dec[8192];
        KT_OK(kn_detokenize(t, ids, n, dec, sizeof dec));
    }
    kn_tokenizer_free(t);
}

static void write_file(const char *dir, const char *name, const char *content) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    KT_CHECKF(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

/* Loading dir must fail with a message containing want. */
static void expect_load_error(const char *path, const char *want) {
    kn_tokenizer *t = kn_tokenizer_load(path);
    KT_CHECKF(t == NULL, "loading %s should fail (%s)", path, want);
    kn_tokenizer_free(t);
    KT_CHECKF(strstr(kn_last_error(), want) != NULL && !strchr(kn_last_error(), '\n'),
              "error '%s' does not mention '%s'", kn_last_error(), want);
}

KT_TEST(tokenizer_malformed_files) {
    const char *d = kt_tmpdir();
    char sub[1024];
#define GOOD_VOCAB "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"ab</w>\": 4, " \
                                    "\"<|startoftext|>\": 5, \"<|endoftext|>\": 6}"
    const char *good_vocab = GOOD_VOCAB;
    static const struct { const char *name, *vocab, *merges, *want; } cases[] = {
        {"notjson", "{\"a\": 0,", "#v\na b</w>\n", "invalid JSON"},
        {"array", "[1, 2]", "#v\na b</w>\n", "expected a JSON object"},
        {"strid", "{\"a\": \"x\", \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}", "#v\n", "not an integer"},
        {"fracid", "{\"a\": 0.5}", "#v\n", "not an integer"},
        {"negid", "{\"a\": -1}", "#v\n", "outside"},
        {"dupid", "{\"a\": 0, \"b\": 0}", "#v\n", "used by both"},
        {"nobos", "{\"a\": 0, \"<|endoftext|>\": 1}", "#v\n", "no <|startoftext|>"},
        {"threesym", GOOD_VOCAB, "#v\na b</w> c\n", "line 2: a merge needs exactly two symbols"},
        {"onesym", GOOD_VOCAB, "#v\na b</w>\nab\n", "line 3"},
        {"badutf8", GOOD_VOCAB, "#v\na \xff\n", "invalid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(sub, sizeof sub, "%s/%s", d, cases[i].name);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", sub);
        KT_CHECK(kt_run(NULL, 0, "%s", cmd) == 0);
        write_file(sub, "vocab.json", cases[i].vocab);
        write_file(sub, "merges.txt", cases[i].merges);
        expect_load_error(sub, cases[i].want);
    }
    /* a good tiny vocabulary loads and merges "a" + "b</w>" */
    snprintf(sub, sizeof sub, "%s/good", d);
    KT_CHECK(kt_run(NULL, 0, "mkdir -p %s", sub) == 0);
    write_file(sub, "vocab.json", good_vocab);
    write_file(sub, "merges.txt", "#version: 0.2\na b</w>\n");
    kn_tokenizer *t = kn_tokenizer_load(sub);
    KT_CHECKF(t != NULL, "tiny vocab: %s", kn_last_error());
    if (t) {
        int32_t ids[8];
        int n = 0;
        KT_OK(kn_tokenize(t, "AB a z", ids, 8, &n)); /* z is not in the vocab -> unk (eos) */
        KT_CHECK(n == 5 && ids[0] == 5 && ids[1] == 4 && ids[2] == 2 && ids[3] == 6 && ids[4] == 6);
        kn_tokenizer_free(t);
    }
    /* missing files, a folder with only vocab.json, a corrupt gz */
    snprintf(sub, sizeof sub, "%s/nothing-here", d);
    expect_load_error(sub, "cannot open");
    snprintf(sub, sizeof sub, "%s/half", d);
    KT_CHECK(kt_run(NULL, 0, "mkdir -p %s", sub) == 0);
    write_file(sub, "vocab.json", good_vocab);
    expect_load_error(sub, "but not merges.txt");
    write_file(d, "empty", "");
    expect_load_error(d, "neither vocab.json");
    snprintf(sub, sizeof sub, "%s/bad.gz", d);
    FILE *f = fopen(sub, "wb");
    KT_CHECK(f != NULL);
    if (f) {
        fwrite("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage-garbage-garbage", 1, 33, f);
        fclose(f);
    }
    expect_load_error(sub, "not a valid gzip stream");
    /* the real file cut after 100 kB */
    snprintf(sub, sizeof sub, "%s/cut.gz", d);
    KT_CHECK(kt_run(NULL, 0, "head -c 100000 %s/clip/bpe_simple_vocab_16e6.txt.gz > %s", kt_fixtures(), sub) == 0);
    expect_load_error(sub, "not a valid gzip stream");
    snprintf(sub, sizeof sub, "%s/empty", d);
    expect_load_error(sub, "no merges found");
}

KT_TEST(tokenizer_cli) {
    char out[8192];
    const char *fx = kt_fixtures();
    int rc = kt_run(out, sizeof out, "%s tokenize --tokenizer %s/clip 'a photo of a cat'", kt_bin(), fx);
    KT_CHECKF(rc == 0 && !strcmp(out, "49406 320 1125 539 320 2368 49407\n"), "rc %d, output '%s'", rc, out);
    rc = kt_run(out, sizeof out, "%s tokenize --tokenizer %s/clip/bpe_simple_vocab_16e6.txt.gz 'Hello, world!'",
                kt_bin(), fx);
    KT_CHECKF(rc == 0 && !strcmp(out, "49406 3306 267 1002 256 49407\n"), "rc %d, output '%s'", rc, out);
    /* padded forms against the fixture */
    cJSON *ref = load_ref();
    const cJSON *pr = ref ? cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "prompts"), 2) : NULL;
    if (pr) {
        const char *text = cJSON_GetObjectItem(pr, "text")->valuestring;
        const char *fields[2] = {"ids_pad77_eot", "ids_pad77_bang"}, *toks[2] = {"'<|endoftext|>'", "'!'"};
        for (int k = 0; k < 2; k++) {
            rc = kt_run(out, sizeof out, "%s tokenize --tokenizer %s/clip --pad 77 --pad-token %s '%s'",
                        kt_bin(), fx, toks[k], text);
            char want[2048];
            size_t o = 0;
            const cJSON *a = cJSON_GetObjectItem(pr, fields[k]);
            for (int i = 0; i < cJSON_GetArraySize(a); i++)
                o += (size_t)snprintf(want + o, sizeof want - o, i ? " %d" : "%d",
                                      cJSON_GetArrayItem(a, i)->valueint);
            snprintf(want + o, sizeof want - o, "\n");
            KT_CHECKF(rc == 0 && !strcmp(out, want), "%s: rc %d, output '%s'", fields[k], rc, out);
        }
    }
    cJSON_Delete(ref);
    /* errors: one line, non-zero */
    const char *bad[] = {"--tokenizer /nonexistent/tok 'x'", "--tokenizer %s/clip --pad 0 'x'",
                         "--tokenizer %s/clip --bogus 'x'", "--tokenizer %s/clip --pad 77 --pad-token nope 'x'",
                         "'x'", "--tokenizer %s/clip"};
    for (int i = 0; i < 6; i++) {
        char args[512];
        snprintf(args, sizeof args, bad[i], fx);
        rc = kt_run(out, sizeof out, "%s tokenize %s", kt_bin(), args);
        char *nl = strchr(out, '\n');
        KT_CHECKF(rc != 0 && !strncmp(out, "kinema: ", 8) && nl && !nl[1], "'%s': rc %d, output '%s'", args, rc, out);
    }
}

/* Unicode corner cases (Greek final sigma, Turkish İ, NFC of decomposed Latin and Hangul,
 * Indic marks, fullwidth, math letters, emoji ZWJ, format/private/unassigned code points,
 * special tokens inside text) against dev/tokenizer_unicode_ref.py, a transcription of the
 * transformers code path run with Python 3.11's unicodedata. */
KT_TEST(tokenizer_unicode_reference) {
    char *s = kt_slurp("tests/data/tokenizer_unicode.json", NULL);
    KT_CHECKF(s != NULL, "cannot read tests/data/tokenizer_unicode.json (run from the repo root)");
    cJSON *ref = s ? cJSON_Parse(s) : NULL;
    free(s);
    kn_tokenizer *t = load_clip("");
    const cJSON *prompts = cJSON_GetObjectItem(ref, "prompts");
    KT_CHECK(cJSON_GetArraySize(prompts) >= 40);
    for (int p = 0; t && p < cJSON_GetArraySize(prompts); p++) {
        const cJSON *pr = cJSON_GetArrayItem(prompts, p);
        const char *text = cJSON_GetObjectItem(pr, "text")->valuestring;
        int32_t ids[512];
        int n = 0;
        KT_OK(kn_tokenize(t, text, ids, 512, &n));
        check_ids("unicode", text, ids, n, cJSON_GetObjectItem(pr, "ids"));
    }
    cJSON_Delete(ref);
    kn_tokenizer_free(t);
}

/* The heap BPE (long pieces) equals the naive one on long words made of random vocabulary
 * pieces, and the fixture still passes with the heap BPE everywhere. */
KT_TEST(tokenizer_heap_bpe_equals_naive) {
    kn_tokenizer *t = load_clip("");
    if (!t)
        return;
    static const char *parts[] = {"super", "cali", "frag", "ili", "stic", "ab", "a", "b", "th", "e",
                                  "ing", "tion", "qu", "zz", "x", "ee", "aaa", "\xc3\xa9", "\xd0\xb6",
                                  "\xe6\x97\xa5"};
    char word[4096];
    int32_t a[4096], b[4096];
    float r[512];
    for (int it = 0; it < 60; it++) {
        kn_rand_fill(r, 512, 99, (uint64_t)it * 512);
        size_t o = 0;
        int np = 1 + it * 8;
        for (int k = 0; k < np && k < 512; k++) {
            const char *p = parts[(int)(r[k] * 20) % 20];
            size_t l = strlen(p);
            if (o + l + 1 >= sizeof word)
                break;
            memcpy(word + o, p, l);
            o += l;
        }
        word[o] = 0;
        int na = 0, nb = 0;
        kn_tokenizer_set_heap_threshold(t, 1 << 30);
        KT_OK(kn_tokenize(t, word, a, 4096, &na));
        kn_tokenizer_set_heap_threshold(t, 0);
        KT_OK(kn_tokenize(t, word, b, 4096, &nb));
        if (na != nb || memcmp(a, b, (size_t)na * sizeof *a)) {
            KT_CHECKF(0, "heap BPE differs from naive on a %zu-byte word (%d vs %d ids)", o, nb, na);
            break;
        }
    }
    kn_tokenizer_set_heap_threshold(t, 0);
    check_fixture(t, "heap-bpe");
    kn_tokenizer_free(t);
}

/* The tokenizer runs on the calling thread only: ids do not depend on the pool size. */
KT_TEST(tokenizer_thread_count_invariant) {
    kn_tokenizer *t = load_clip("");
    if (!t)
        return;
    const char *text = "Ærøskøbing, Zürich, 日本語のテキスト, don't stop believin' 🐱🚀";
    int32_t ref[128], ids[128];
    int nref = 0, n = 0, old = kn_get_threads();
    kn_set_threads(1);
    KT_OK(kn_tokenize(t, text, ref, 128, &nref));
    for (int th = 2; th <= 3; th++) {
        kn_set_threads(th);
        KT_OK(kn_tokenize(t, text, ids, 128, &n));
        KT_CHECK(n == nref && !memcmp(ids, ref, (size_t)n * sizeof *ids));
    }
    kn_set_threads(old);
    kn_tokenizer_free(t);
}

/* kn_tokenizer_from_memory: merges.txt alone, read as an OpenAI merge list, rebuilds exactly
 * vocab.json; malformed memory input gives clean errors. */
KT_TEST(tokenizer_from_memory) {
    char path[1024];
    snprintf(path, sizeof path, "%s/clip/merges.txt", kt_fixtures());
    char *m = kt_slurp(path, NULL);
    KT_CHECKF(m != NULL, "cannot read %s", path);
    kn_tokenizer *a = load_clip(""), *b = m ? kn_tokenizer_from_memory(NULL, 0, m, strlen(m)) : NULL;
    KT_CHECKF(b != NULL, "from_memory: %s", kn_last_error());
    if (a && b) {
        KT_CHECK(kn_tokenizer_vocab_size(b) == 49408);
        for (int i = 0; i < 49408; i++)
            if (strcmp(kn_tokenizer_token_str(a, i), kn_tokenizer_token_str(b, i))) {
                KT_CHECKF(0, "id %d differs", i);
                break;
            }
        int32_t x[64], y[64];
        int nx = 0, ny = 0;
        KT_OK(kn_tokenize(a, "Hello, world! caf\xc3\xa9", x, 64, &nx));
        KT_OK(kn_tokenize(b, "Hello, world! caf\xc3\xa9", y, 64, &ny));
        KT_CHECK(nx == ny && !memcmp(x, y, (size_t)nx * sizeof *x));
    }
    kn_tokenizer_free(a);
    kn_tokenizer_free(b);
    free(m);
    static const struct { const char *vocab, *merges, *want; } bad[] = {
        {"{\"a\": 1e300}", "#v\n", "not an integer"},
        {"{\"a\": 1, \"a\": 2}", "#v\n", "appears twice"},
        {"{}", "#v\n", "empty vocabulary"},
        {"", "#v\n", "invalid JSON"},
        {NULL, "", "no merges found"},
        {NULL, "#v\na\n", "line 2: a merge needs exactly two symbols, found 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kn_tokenizer *t = kn_tokenizer_from_memory(bad[i].vocab, bad[i].vocab ? strlen(bad[i].vocab) : 0,
                                                   bad[i].merges, strlen(bad[i].merges));
        KT_CHECKF(t == NULL && strstr(kn_last_error(), bad[i].want), "case %zu: '%s' lacks '%s'", i,
                  kn_last_error(), bad[i].want);
        kn_tokenizer_free(t);
    }
}
