/* test_safetensors.c — safetensors reader/writer: round trips, every fixture file, a table of
 * malformed files each with its specific message, and the atomic-replace contract. */
#include "kt.h"
#include "io/safetensors.h"
#include "io/safetensors_info.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes 8-byte length (hlen_override, or the header's length) + header + ndata bytes 0..ndata-1. */
static void mkfile(const char *path, const char *header, size_t ndata, long long hlen_override) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        kt_fail(__FILE__, __LINE__, "cannot create %s", path);
        return;
    }
    uint64_t n = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(header);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < ndata; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

KT_TEST(safetensors_round_trip_all_dtypes) {
    const char *dir = kt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    float f32[24];
    uint16_t f16[6], bf16[6];
    int32_t i32[5] = {-1, 0, 1, 2147483647, -2147483647};
    int64_t i64[3] = {INT64_MIN + 1, 0, 1234567890123LL};
    uint8_t u8[7] = {0, 1, 2, 3, 250, 255, 7};
    for (int i = 0; i < 24; i++)
        f32[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 6; i++) {
        f16[i] = kn_f32_to_f16((float)i - 2.5f);
        bf16[i] = kn_f32_to_bf16((float)i * 1.25f);
    }
    int64_t s234[3] = {2, 3, 4}, s23[2] = {2, 3}, s5[1] = {5}, s3[1] = {3}, s7[1] = {7}, s0[2] = {0, 4};
    kn_tensor tf32 = kn_tensor_view(KN_F32, 3, s234, f32);
    kn_tensor tf16 = kn_tensor_view(KN_F16, 2, s23, f16);
    kn_tensor tbf16 = kn_tensor_view(KN_BF16, 2, s23, bf16);
    kn_tensor ti32 = kn_tensor_view(KN_I32, 1, s5, i32);
    kn_tensor ti64 = kn_tensor_view(KN_I64, 1, s3, i64);
    kn_tensor tu8 = kn_tensor_view(KN_U8, 1, s7, u8);
    kn_tensor tempty = kn_tensor_view(KN_F32, 2, s0, NULL);
    float scalar = 42.0f;
    kn_tensor tscalar = kn_tensor_view(KN_F32, 0, NULL, &scalar);
    /* a strided view: f32 permuted to (4,3,2) must be written contiguously */
    int perm[3] = {2, 1, 0};
    kn_tensor tperm;
    KT_OK(kn_tensor_permute(&tf32, perm, &tperm));

    kn_st_writer *w = kn_st_writer_new();
    KT_CHECK(w != NULL);
    KT_OK(kn_st_writer_add(w, "z.f32", &tf32)); /* insertion order, not name order */
    KT_OK(kn_st_writer_add(w, "a.f16", &tf16));
    KT_OK(kn_st_writer_add(w, "bf16", &tbf16));
    KT_OK(kn_st_writer_add(w, "i32", &ti32));
    KT_OK(kn_st_writer_add(w, "i64", &ti64));
    KT_OK(kn_st_writer_add(w, "u8", &tu8));
    KT_OK(kn_st_writer_add(w, "empty", &tempty));
    KT_OK(kn_st_writer_add(w, "scalar", &tscalar));
    KT_OK(kn_st_writer_add(w, "perm \"quoted\"\n", &tperm));
    KT_CHECK(kn_st_writer_add(w, "u8", &tu8) != KN_OK);
    KT_CHECK(strstr(kn_last_error(), "added twice") != NULL);
    KT_CHECK(kn_st_writer_add(w, "__metadata__", &tu8) != KN_OK);
    KT_OK(kn_st_writer_meta(w, "format", "pt"));
    KT_OK(kn_st_writer_meta(w, "note", "a \"quoted\" \\ value"));
    KT_OK(kn_st_writer_write(w, path));
    kn_st_writer_free(w);

    /* header padded to a multiple of 8 with spaces */
    FILE *f = fopen(path, "rb");
    KT_CHECK(f != NULL);
    if (f) {
        uint8_t len[8];
        KT_CHECK(fread(len, 1, 8, f) == 8);
        uint64_t hn = 0;
        for (int i = 7; i >= 0; i--)
            hn = (hn << 8) | len[i];
        KT_CHECK(hn % 8 == 0);
        fclose(f);
    }

    kn_safetensors *st = kn_st_open(path);
    KT_CHECKF(st != NULL, "open: %s", kn_last_error());
    if (!st)
        return;
    KT_CHECK(kn_st_count(st) == 9);
    /* file order = data offsets = insertion order (empty/scalar tensors sort by offset too) */
    KT_CHECK(!strcmp(kn_st_name(st, 0), "z.f32"));
    KT_CHECK(!strcmp(kn_st_name(st, 1), "a.f16"));
    KT_CHECK(kn_st_find(st, "nope") == -1);
    KT_CHECK(kn_st_metadata_count(st) == 2);
    KT_CHECK(kn_st_metadata(st, "format") && !strcmp(kn_st_metadata(st, "format"), "pt"));
    KT_CHECK(kn_st_metadata(st, "note") && !strcmp(kn_st_metadata(st, "note"), "a \"quoted\" \\ value"));
    KT_CHECK(kn_st_metadata(st, "absent") == NULL);

    kn_tensor t;
    KT_OK(kn_st_get(st, "z.f32", &t));
    KT_CHECK(t.dtype == KN_F32 && t.ndim == 3 && t.shape[0] == 2 && t.shape[2] == 4);
    KT_CHECK(((uintptr_t)t.data & 3) == 0);
    KT_CHECK(memcmp(t.data, f32, sizeof f32) == 0);
    KT_OK(kn_st_get(st, "a.f16", &t));
    KT_CHECK(t.dtype == KN_F16 && memcmp(t.data, f16, sizeof f16) == 0);
    KT_OK(kn_st_get(st, "bf16", &t));
    KT_CHECK(t.dtype == KN_BF16 && memcmp(t.data, bf16, sizeof bf16) == 0);
    KT_OK(kn_st_get(st, "i32", &t));
    KT_CHECK(t.dtype == KN_I32 && memcmp(t.data, i32, sizeof i32) == 0);
    KT_OK(kn_st_get(st, "i64", &t));
    KT_CHECK(t.dtype == KN_I64 && memcmp(t.data, i64, sizeof i64) == 0);
    KT_OK(kn_st_get(st, "u8", &t));
    KT_CHECK(t.dtype == KN_U8 && memcmp(t.data, u8, sizeof u8) == 0);
    KT_OK(kn_st_get(st, "empty", &t));
    KT_CHECK(t.ndim == 2 && kn_tensor_numel(&t) == 0);
    KT_OK(kn_st_get(st, "scalar", &t));
    KT_CHECK(t.ndim == 0 && *(float *)t.data == 42.0f);
    KT_OK(kn_st_get(st, "perm \"quoted\"\n", &t));
    KT_CHECK(t.shape[0] == 4 && t.shape[1] == 3 && t.shape[2] == 2);
    const float *pp = t.data;
    int bad = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 2; c++)
                bad += pp[(a * 3 + b) * 2 + c] != f32[(c * 3 + b) * 4 + a];
    KT_CHECK(bad == 0);

    /* get_f32 converts F16/BF16 exactly and refuses integers */
    kn_tensor g;
    KT_OK(kn_st_get_f32(st, "a.f16", NULL, &g));
    for (int i = 0; i < 6; i++)
        KT_NEAR(((float *)g.data)[i], (float)i - 2.5f, 0);
    kn_tensor_free(&g);
    KT_OK(kn_st_get_f32(st, "bf16", NULL, &g));
    for (int i = 0; i < 6; i++)
        KT_NEAR(((float *)g.data)[i], (float)i * 1.25f, 0);
    kn_tensor_free(&g);
    kn_arena *A = kn_arena_new(1 << 16);
    KT_OK(kn_st_get_f32(st, "z.f32", A, &g));
    KT_CHECK(memcmp(g.data, f32, sizeof f32) == 0);
    kn_arena_free(A);
    KT_CHECK(kn_st_get_f32(st, "i64", NULL, &g) == KN_ERR_DTYPE);
    KT_CHECK(strstr(kn_last_error(), "'i64': dtype I64 is not a float type") != NULL);
    KT_CHECK(kn_st_get(st, "missing.weight", &t) != KN_OK);
    KT_CHECK(strstr(kn_last_error(), "no tensor named 'missing.weight'") != NULL);
    kn_st_close(st);

    /* no temporary file left behind */
    DIR *d = opendir(dir);
    int others = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && strcmp(de->d_name, "rt.safetensors"))
            others++;
    if (d)
        closedir(d);
    KT_CHECK(others == 0);
}

KT_TEST(safetensors_atomic_replace) {
    const char *dir = kt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    float a[4] = {1, 2, 3, 4}, b[2] = {9, 8};
    int64_t s4[1] = {4}, s2[1] = {2};
    kn_tensor ta = kn_tensor_view(KN_F32, 1, s4, a), tb = kn_tensor_view(KN_F32, 1, s2, b);
    kn_st_writer *w = kn_st_writer_new();
    KT_OK(kn_st_writer_add(w, "x", &ta));
    KT_OK(kn_st_writer_write(w, path));
    kn_st_writer_free(w);

    /* an open mapping of the old file keeps its contents after the new file replaces it */
    kn_safetensors *old = kn_st_open(path);
    KT_CHECK(old != NULL);
    w = kn_st_writer_new();
    KT_OK(kn_st_writer_add(w, "y", &tb));
    KT_OK(kn_st_writer_write(w, path));
    kn_st_writer_free(w);
    kn_tensor t;
    if (old) {
        KT_OK(kn_st_get(old, "x", &t));
        KT_CHECK(((float *)t.data)[3] == 4.0f);
        kn_st_close(old);
    }
    kn_safetensors *st = kn_st_open(path);
    KT_CHECK(st && kn_st_count(st) == 1 && kn_st_find(st, "y") == 0);
    kn_st_close(st);

    /* a failing write (directory is gone) leaves the existing file and no tmp file */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/nodir/m.safetensors", dir);
    w = kn_st_writer_new();
    KT_OK(kn_st_writer_add(w, "x", &ta));
    KT_CHECK(kn_st_writer_write(w, bad) == KN_ERR_IO);
    KT_CHECK(strstr(kn_last_error(), "cannot create") != NULL);
    /* a tensor with no data fails before the rename: the old file survives untouched */
    kn_tensor nodata = kn_tensor_view(KN_F32, 1, s4, NULL);
    KT_CHECK(kn_st_writer_add(w, "nodata", &nodata) == KN_ERR_ARG);
    kn_st_writer_free(w);
    st = kn_st_open(path);
    KT_CHECK(st && kn_st_find(st, "y") == 0);
    kn_st_close(st);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    KT_CHECK(access(tmp, F_OK) != 0);
}

static int count_fixture_files(const char *dir, int depth, int *nfiles, int *nfail) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth < 4) {
            count_fixture_files(p, depth + 1, nfiles, nfail);
            continue;
        }
        size_t L = strlen(de->d_name);
        if (L < 12 || strcmp(de->d_name + L - 12, ".safetensors"))
            continue;
        (*nfiles)++;
        kn_safetensors *st = kn_st_open(p);
        if (!st || kn_st_count(st) <= 0) {
            kt_fail(__FILE__, __LINE__, "%s: %s", p, st ? "no tensors" : kn_last_error());
            (*nfail)++;
        } else {
            /* every tensor readable; float ones convert */
            for (int i = 0; i < kn_st_count(st); i++) {
                kn_st_info info;
                kn_tensor t;
                if (kn_st_info_at(st, i, &info) != KN_OK || kn_st_get(st, info.name, &t) != KN_OK) {
                    kt_fail(__FILE__, __LINE__, "%s: %s", p, kn_last_error());
                    (*nfail)++;
                    break;
                }
            }
        }
        kn_st_close(st);
    }
    closedir(d);
    return 1;
}

KT_TEST(safetensors_reads_every_fixture) {
    int nfiles = 0, nfail = 0;
    KT_CHECKF(count_fixture_files(kt_fixtures(), 0, &nfiles, &nfail), "cannot open fixtures at %s", kt_fixtures());
    KT_CHECKF(nfiles >= 10, "only %d .safetensors files under %s", nfiles, kt_fixtures());
    KT_CHECK(nfail == 0);
    /* one known tensor */
    char p[1024];
    snprintf(p, sizeof p, "%s/diffusers/unet3d/io_case0.safetensors", kt_fixtures());
    kn_safetensors *st = kn_st_open(p);
    KT_CHECKF(st != NULL, "%s", kn_last_error());
    kn_tensor t;
    if (st) {
        KT_OK(kn_st_get(st, "sample", &t));
        KT_CHECK(t.dtype == KN_F32 && t.ndim == 5 && t.shape[0] == 2);
        KT_OK(kn_st_get(st, "timestep", &t));
        KT_CHECK(t.dtype == KN_I64);
        KT_CHECK(kn_st_metadata(st, "generator") != NULL);
        kn_st_close(st);
    }
}

typedef struct {
    const char *header;
    size_t ndata;
    long long hlen; /* -1: the header's own length */
    const char *expect;
} bad_case;

static const bad_case bad_cases[] = {
    {"", 0, -2, "shorter than the 8-byte header length"},
    {"{}", 0, 4096, "is longer than the"},
    {"{}", 0, 200000000, "exceeds the"},
    {"{\"a\":", 0, -1, "header is not valid JSON"},
    {"[1,2]", 0, -1, "header must be a JSON object, got array"},
    {"{} x", 0, -1, "trailing bytes after the JSON object"},
    {"{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, "tensor 'w': unknown dtype 'Q7'"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4,3,3,3],\"data_offsets\":[0,100]}}", 100, -1,
     "tensor 'w': data_offsets [0,100] span 100 bytes, shape (4,3,3,3) F32 needs 432"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, -1,
     "tensor 'w': data_offsets [0,8] end past the data section (4 bytes)"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, -1, "begin > end"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1, "tensor 'b': data_offsets [4,12] overlap tensor 'a'"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, -1, "shape[0] must be a non-negative integer, got -1"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,0]}}", 0, -1, "shape[0] must be a non-negative integer, got 2.5"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, -1, "shape product overflows"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, -1, "tensor 'w': name appears twice"},
    {"{\"__metadata__\":{\"k\":3}}", 0, -1, "__metadata__ 'k' must be a string, got number"},
    {"{\"__metadata__\":[1]}", 0, -1, "'__metadata__' must be an object, got array"},
    {"{\"w\":[1,2]}", 0, -1, "tensor 'w': entry must be an object, got array"},
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "tensor 'w': missing 'dtype'"},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, -1, "tensor 'w': missing 'shape'"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, -1, "tensor 'w': missing 'data_offsets'"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, -1, "'data_offsets' must be an array [begin,end]"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4, -1, "'shape' must be an array, got string"},
    {"{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "'dtype' must be a string, got number"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4, -1, "data_offsets must be non-negative integers"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, -1, "shape has 17 dims"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "empty name"},
    {"7", 0, -1, "header length 1 is too short"},
};

KT_TEST(safetensors_malformed_table) {
    const char *dir = kt_tmpdir();
    int n = (int)(sizeof bad_cases / sizeof bad_cases[0]);
    KT_CHECK(n >= 15);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/bad%02d.safetensors", dir, i);
        const bad_case *c = &bad_cases[i];
        if (c->hlen == -2) { /* a 5-byte file */
            FILE *f = fopen(path, "wb");
            if (f) {
                fwrite("\x02\0\0\0\0", 1, 5, f);
                fclose(f);
            }
        } else {
            mkfile(path, c->header, c->ndata, c->hlen);
        }
        kn_safetensors *st = kn_st_open(path);
        KT_CHECKF(st == NULL, "case %d (%s) opened", i, c->expect);
        kn_st_close(st);
        const char *msg = kn_last_error();
        KT_CHECKF(strstr(msg, c->expect) != NULL, "case %d: message '%s' lacks '%s'", i, msg, c->expect);
        KT_CHECKF(strstr(msg, path) == msg, "case %d: message '%s' does not start with the path", i, msg);
        KT_CHECKF(strchr(msg, '\n') == NULL, "case %d: message has a newline", i);
    }
    /* missing file */
    KT_CHECK(kn_st_open("/nonexistent/x.safetensors") == NULL);
    KT_CHECK(strstr(kn_last_error(), "/nonexistent/x.safetensors: cannot open") != NULL);
}

KT_TEST(safetensors_lenient_cases) {
    /* accepted: trailing spaces, other dtypes listed but not computable, F64 converts, holes, an
     * unaligned data section (header length not a multiple of 8) */
    const char *dir = kt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/ok.safetensors", dir);
    double dv[2] = {1.5, -2.25};
    const char *h = "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[20,23]}}   ";
    FILE *f = fopen(path, "wb");
    KT_CHECK(f != NULL);
    if (!f)
        return;
    uint64_t n = strlen(h);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(h, 1, n, f);
    fwrite(dv, 1, 16, f);
    fwrite("\0\0\0\0\1\0\1", 1, 7, f);
    fclose(f);
    KT_CHECK(n % 8 != 0);
    kn_safetensors *st = kn_st_open(path);
    KT_CHECKF(st != NULL, "%s", kn_last_error());
    if (!st)
        return;
    kn_st_info info;
    KT_OK(kn_st_info_at(st, 1, &info));
    KT_CHECK(!strcmp(info.name, "b") && !strcmp(info.dtype, "BOOL") && info.kn_dtype == -1);
    kn_tensor t;
    KT_CHECK(kn_st_get(st, "b", &t) == KN_ERR_UNSUPPORTED);
    KT_CHECK(strstr(kn_last_error(), "dtype BOOL is listed but not supported") != NULL);
    KT_OK(kn_st_get_f32(st, "d", NULL, &t));
    KT_CHECK(((float *)t.data)[0] == 1.5f && ((float *)t.data)[1] == -2.25f);
    kn_tensor_free(&t);
    kn_st_close(st);

    /* from memory: the same bytes give the same answers */
    FILE *r = fopen(path, "rb");
    char buf[512];
    size_t k = r ? fread(buf, 1, sizeof buf, r) : 0;
    if (r)
        fclose(r);
    st = kn_st_open_memory(buf, k, "mem");
    KT_CHECK(st && kn_st_count(st) == 2);
    kn_st_close(st);
    st = kn_st_open_memory(buf, 20, "mem");
    KT_CHECK(st == NULL && strstr(kn_last_error(), "mem: header length") != NULL);
}

KT_TEST(safetensors_fuzz_corpus_regressions) {
    /* every committed fuzz input (seeds and what the fuzzer kept) opens from a file and from
     * memory with the same answer, and a failure is one line starting with the path */
    DIR *d = opendir("fuzz/corpus/safetensors");
    KT_CHECKF(d != NULL, "cannot open fuzz/corpus/safetensors (run the tests from the repository root)");
    if (!d)
        return;
    int n = 0, opened = 0;
    struct dirent *de;
    static char buf[1 << 16];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "fuzz/corpus/safetensors/%s", de->d_name);
        FILE *f = fopen(p, "rb");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf, f);
        fclose(f);
        n++;
        kn_safetensors *a = kn_st_open(p);
        char msg_a[512];
        snprintf(msg_a, sizeof msg_a, "%s", kn_last_error());
        kn_safetensors *b = kn_st_open_memory(buf, k, p);
        KT_CHECKF((a == NULL) == (b == NULL), "%s: file and memory disagree", p);
        if (!a && !b) {
            KT_CHECKF(!strcmp(msg_a, kn_last_error()), "%s: '%s' vs '%s'", p, msg_a, kn_last_error());
            KT_CHECKF(strstr(msg_a, p) == msg_a && !strchr(msg_a, '\n'), "%s: bad message '%s'", p, msg_a);
        }
        if (a && b) {
            opened++;
            KT_CHECK(kn_st_count(a) == kn_st_count(b));
            for (int i = 0; i < kn_st_count(a); i++) {
                kn_tensor ta, tb;
                const char *nm = kn_st_name(a, i);
                kn_status sa = kn_st_get(a, nm, &ta), sb = kn_st_get(b, nm, &tb);
                KT_CHECK(sa == sb);
                if (sa == KN_OK && sb == KN_OK)
                    KT_CHECK(memcmp(ta.data, tb.data, kn_tensor_nbytes(&ta)) == 0);
            }
        }
        kn_st_close(a);
        kn_st_close(b);
    }
    closedir(d);
    KT_CHECK(n >= 6 && opened >= 3);
}
