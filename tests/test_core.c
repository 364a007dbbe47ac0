/* test_core.c — tensors, arenas, threads, RNG, half-precision conversions. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>

/* Random123 kat_vectors, the three philox4x32 10 lines: counter, key -> output. */
KT_TEST(philox_known_answers) {
    static const uint32_t v[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        kn_philox4x32_10(v[i], v[i] + 4, out);
        for (int j = 0; j < 4; j++)
            KT_CHECKF(out[j] == v[i][6 + j], "vector %d word %d: %08x != %08x", i, j, out[j], v[i][6 + j]);
    }
}

KT_TEST(randn_same_for_every_thread_count_and_split) {
    enum { N = 100003 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float)), *c = malloc(N * sizeof(float));
    kn_set_threads(1);
    kn_randn_fill(a, N, 1234, 7);
    kn_set_threads(2);
    kn_randn_fill(b, N, 1234, 7);
    kn_set_threads(3);
    kn_randn_fill(c, 5001, 1234, 7);            /* the same stream, in two calls */
    kn_randn_fill(c + 5001, N - 5001, 1234, 7 + 5001);
    kn_set_threads(1);
    KT_CHECK(memcmp(a, b, N * sizeof(float)) == 0);
    KT_CHECK(memcmp(a, c, N * sizeof(float)) == 0);
    double m = 0, s2 = 0;
    for (int i = 0; i < N; i++) { m += a[i]; s2 += (double)a[i] * a[i]; }
    m /= N; s2 = s2 / N - m * m;
    KT_NEAR(m, 0.0, 0.02);   /* 6 sigma of the mean of N normals is 0.019 */
    KT_NEAR(s2, 1.0, 0.03);
    kn_randn_fill(b, N, 1235, 7);
    KT_CHECK(memcmp(a, b, N * sizeof(float)) != 0);
    kn_rand_fill(b, N, 99, 0);
    double mu = 0; int inrange = 1;
    for (int i = 0; i < N; i++) { mu += b[i]; if (b[i] < 0 || b[i] >= 1) inrange = 0; }
    KT_CHECK(inrange);
    KT_NEAR(mu / N, 0.5, 0.006);
    free(a); free(b); free(c);
}

KT_TEST(half_conversions_round_to_nearest_even) {
    /* f16: exact values, halfway cases, overflow, subnormals, NaN */
    KT_CHECK(kn_f32_to_f16(1.0f) == 0x3c00);
    KT_CHECK(kn_f32_to_f16(-2.0f) == 0xc000);
    KT_CHECK(kn_f32_to_f16(65504.0f) == 0x7bff);
    KT_CHECK(kn_f32_to_f16(65520.0f) == 0x7c00);          /* halfway to 65536 rounds to inf */
    KT_CHECK(kn_f32_to_f16(65519.0f) == 0x7bff);
    KT_CHECK(kn_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* halfway, even stays */
    KT_CHECK(kn_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02); /* halfway, odd rounds up */
    KT_CHECK(kn_f32_to_f16(5.9604645e-08f) == 0x0001);    /* smallest subnormal */
    KT_CHECK(kn_f32_to_f16(2.9802322e-08f) == 0x0000);    /* half of it: ties to even (0) */
    KT_CHECK(kn_f32_to_f16(8.940697e-08f) == 0x0002);     /* 1.5 ulp -> 2 */
    uint16_t hn = kn_f32_to_f16(NAN);
    KT_CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    /* every f16 value round-trips */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
        if (kn_f32_to_f16(kn_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    KT_CHECKF(bad == 0, "%d f16 values do not round-trip", bad);
    /* bf16 */
    KT_CHECK(kn_f32_to_bf16(1.0f) == 0x3f80);
    KT_CHECK(kn_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80);  /* halfway, even */
    KT_CHECK(kn_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);  /* halfway, odd up */
    KT_CHECK(kn_bf16_to_f32(0x4049) == 3.140625f);
    uint16_t bn = kn_f32_to_bf16(NAN);
    KT_CHECK((bn & 0x7f80) == 0x7f80 && (bn & 0x7f) != 0);
}

KT_TEST(tensor_views_permute_reshape_slice) {
    int64_t shape[5] = {2, 3, 4, 5, 6};
    kn_tensor t;
    KT_OK(kn_tensor_alloc(NULL, &t, KN_F32, 5, shape));
    float *d = t.data;
    for (int i = 0; i < 720; i++) d[i] = (float)i;
    KT_CHECK(kn_tensor_is_contiguous(&t));
    KT_CHECK(t.stride[0] == 360 && t.stride[4] == 1);
    /* NCTHW -> NTCHW */
    int perm[5] = {0, 2, 1, 3, 4};
    kn_tensor p;
    KT_OK(kn_tensor_permute(&t, perm, &p));
    KT_CHECK(p.shape[1] == 4 && p.shape[2] == 3 && !kn_tensor_is_contiguous(&p));
    kn_tensor pc;
    KT_OK(kn_tensor_alloc(NULL, &pc, KN_F32, 5, p.shape));
    KT_OK(kn_tensor_copy(&pc, &p));
    /* element (n=1,t=2,c=1,h=3,w=4) equals source (1,1,2,3,4) */
    KT_CHECK(((float *)pc.data)[1 * 360 + 2 * 90 + 1 * 30 + 3 * 6 + 4] == d[1 * 360 + 1 * 120 + 2 * 30 + 3 * 6 + 4]);
    kn_tensor r;
    int64_t rs[4] = {-1, 4, 5, 6};
    KT_OK(kn_tensor_reshape(&t, 4, rs, &r));
    KT_CHECK(r.shape[0] == 6);
    KT_CHECK(kn_tensor_reshape(&p, 4, rs, &r) != KN_OK); /* not contiguous */
    KT_CHECK(strstr(kn_last_error(), "not contiguous") != NULL);
    int64_t bad[2] = {7, -1};
    KT_CHECK(kn_tensor_reshape(&t, 2, bad, &r) == KN_ERR_SHAPE);
    kn_tensor s;
    KT_OK(kn_tensor_slice(&t, 2, 1, 3, &s));
    KT_CHECK(s.shape[2] == 2 && ((float *)s.data)[0] == 30.0f);
    KT_CHECK(kn_tensor_slice(&t, 2, 3, 5, &s) == KN_ERR_ARG);
    kn_tensor_free(&t);
    kn_tensor_free(&pc);
}

KT_TEST(tensor_concat_split_and_dtype_copy) {
    kn_arena *A = kn_arena_new(1 << 20);
    KT_CHECK(A != NULL);
    int64_t sa[3] = {2, 3, 4}, sb[3] = {2, 5, 4};
    kn_tensor a, b, c = {0};
    KT_OK(kn_tensor_alloc(A, &a, KN_F32, 3, sa));
    KT_OK(kn_tensor_alloc(A, &b, KN_F32, 3, sb));
    for (int i = 0; i < 24; i++) ((float *)a.data)[i] = (float)i;
    for (int i = 0; i < 40; i++) ((float *)b.data)[i] = 100.0f + i;
    const kn_tensor *in[2] = {&a, &b};
    KT_OK(kn_tensor_concat(A, in, 2, 1, &c));
    KT_CHECK(c.shape[1] == 8);
    KT_CHECK(((float *)c.data)[3 * 4] == 100.0f);          /* (0,3,0) = b(0,0,0) */
    KT_CHECK(((float *)c.data)[32 + 2 * 4 + 1] == 21.0f);  /* (1,2,1) = a(1,2,1) = 12+8+1 */
    kn_tensor parts[2];
    int64_t sizes[2] = {3, 5};
    KT_OK(kn_tensor_split(&c, 1, 2, sizes, parts));
    kn_tensor back;
    KT_OK(kn_tensor_alloc(A, &back, KN_F32, 3, sb));
    KT_OK(kn_tensor_copy(&back, &parts[1]));
    KT_CHECK(memcmp(back.data, b.data, 40 * sizeof(float)) == 0);
    int64_t bad[2] = {3, 4};
    KT_CHECK(kn_tensor_split(&c, 1, 2, bad, parts) == KN_ERR_SHAPE);
    /* mismatched concat names the shapes */
    int64_t sx[3] = {3, 3, 4};
    kn_tensor x, y = {0};
    KT_OK(kn_tensor_alloc(A, &x, KN_F32, 3, sx));
    const kn_tensor *in2[2] = {&a, &x};
    KT_CHECK(kn_tensor_concat(A, in2, 2, 1, &y) == KN_ERR_SHAPE);
    KT_CHECK(strstr(kn_last_error(), "(3,3,4)") != NULL);
    /* F32 -> BF16 -> F32 */
    kn_tensor h, f;
    KT_OK(kn_tensor_alloc(A, &h, KN_BF16, 3, sa));
    KT_OK(kn_tensor_alloc(A, &f, KN_F32, 3, sa));
    KT_OK(kn_tensor_copy(&h, &a));
    KT_OK(kn_tensor_copy(&f, &h));
    KT_CHECK(memcmp(f.data, a.data, 24 * sizeof(float)) == 0); /* small ints are exact */
    kn_tensor i64;
    KT_OK(kn_tensor_alloc(A, &i64, KN_I64, 3, sa));
    KT_CHECK(kn_tensor_copy(&i64, &a) == KN_ERR_DTYPE);
    kn_arena_free(A);
}

KT_TEST(arena_reset_reuses_memory_and_reports_peak) {
    kn_arena *A = kn_arena_new(4096);
    void *p = kn_arena_alloc(A, 100);
    KT_CHECK(p && ((uintptr_t)p & 63) == 0);
    size_t m = kn_arena_mark(A);
    void *q = kn_arena_alloc(A, 1000);
    KT_CHECK(q != NULL);
    kn_arena_reset(A, m);
    void *r = kn_arena_alloc(A, 1000);
    KT_CHECK(r == q);
    KT_CHECK(kn_arena_peak(A) == 128 + 1024);
    KT_CHECK(kn_arena_alloc(A, 1 << 20) == NULL);
    KT_CHECK(strstr(kn_last_error(), "arena") != NULL);
    kn_arena_free(A);
    KT_CHECK(kn_peak_rss() > 0);
}

typedef struct { int64_t n; int *hits; } hit_ctx;
static void hit(int64_t i, void *p) { ((hit_ctx *)p)->hits[i]++; }

KT_TEST(thread_pool_runs_every_item_once) {
    for (int nt = 1; nt <= 4; nt++) {
        kn_set_threads(nt);
        KT_CHECK(kn_get_threads() == nt);
        int hits[1000] = {0};
        hit_ctx c = {1000, hits};
        for (int rep = 0; rep < 50; rep++) kn_parallel_for(1000, hit, &c);
        int ok = 1;
        for (int i = 0; i < 1000; i++) if (hits[i] != 50) ok = 0;
        KT_CHECKF(ok, "threads=%d: some item not run exactly 50 times", nt);
    }
    kn_set_threads(1);
    int64_t b, e, tot = 0;
    for (int i = 0; i < 7; i++) { kn_split_range(100, i, 7, &b, &e); tot += e - b; }
    KT_CHECK(tot == 100);
}
