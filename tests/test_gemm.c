/* test_gemm.c — kn_gemm against the naive reference (every trans combination, odd shapes, leading
 * dims larger than the rows, alpha/beta), bitwise identity across thread counts, linear and
 * matmul forward/backward against finite differences and PyTorch (dev/ref_linear.py), shape
 * errors. */
#include "kt.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

int kn_gemm_set_backend(int b); /* gemm.c: 0 own, 1 OpenBLAS, -1 query */

static float *rand_buf(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    kn_randn_fill(p, n, seed, 0);
    return p;
}

/* Runs one gemm case with the current backend vs the reference; returns max relative error. */
static double gemm_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, int64_t pad,
                        int st) {
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
    float *A = rand_buf(na, 1), *B = rand_buf(nb, 2), *C = rand_buf(nc, 3), *R = malloc((size_t)nc * 4);
    memcpy(R, C, (size_t)nc * 4);
    if (st)
        kn_gemm_st(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        kn_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    kn_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    double err = 0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double d = fabs((double)C[i * ldc + j] - R[i * ldc + j]) / (1.0 + fabs((double)R[i * ldc + j]));
            if (!(d <= err)) /* NaN-safe */
                err = isnan(d) ? INFINITY : d;
        }
        for (int64_t j = N; j < ldc; j++) /* padding untouched */
            if (memcmp(&C[i * ldc + j], &R[i * ldc + j], 4))
                err = INFINITY;
    }
    free(A), free(B), free(C), free(R);
    return err;
}

static void gemm_sweep(int backend) {
    static const int64_t sizes[][3] = {{1, 1, 1},    {3, 5, 7},     {14, 32, 1},   {15, 33, 17},  {13, 31, 256},
                                       {29, 65, 257}, {112, 256, 300}, {113, 257, 513}, {200, 47, 90}, {7, 300, 33},
                                       {250, 3, 64},  {1, 129, 1000}, {128, 1, 77}, {5, 5, 0},
                                       {20, 1100, 260}, {29, 600, 270}}; /* several NC column blocks */
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {0, 0.25f}};
    int prev = kn_gemm_set_backend(backend);
    int ncase = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++) {
            const float *p = ab[(s + t) % 4];
            int64_t M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
            int64_t pad = (s + t) % 3 == 0 ? 3 : 0;
            double e = gemm_case(t & 1, t >> 1, M, N, K, p[0], p[1], pad, (int)(s & 1));
            KT_CHECKF(e < 1e-4, "backend %d gemm ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld: rel err %g",
                      backend, t & 1, t >> 1, (long long)M, (long long)N, (long long)K, p[0], p[1], (long long)pad, e);
            ncase++;
        }
    KT_CHECK(ncase == 64);
    kn_gemm_set_backend(prev);
}

KT_TEST(gemm_own_vs_ref) { gemm_sweep(0); }
KT_TEST(gemm_openblas_vs_ref) { gemm_sweep(1); }

/* beta = 0 must ignore NaN in C (BLAS convention: C is not read). */
KT_TEST(gemm_beta0_ignores_nan) {
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4] = {NAN, NAN, NAN, NAN};
    kn_gemm(0, 0, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2);
    KT_NEAR(C[0], 4, 0);
    KT_NEAR(C[1], 5, 0);
    KT_NEAR(C[2], 10, 0);
    KT_NEAR(C[3], 11, 0);
}

/* kn_gemm is bitwise identical at 1, 2, 3 threads, and equal to kn_gemm_st, for both backends. */
KT_TEST(gemm_threads_bitwise) {
    int64_t M = 301, N = 517, K = 700;
    float *A = rand_buf(M * K, 11), *B = rand_buf(N * K, 12);
    float *C[4];
    int prev_threads = kn_get_threads();
    for (int backend = 0; backend < 2; backend++) {
        int prev = kn_gemm_set_backend(backend);
        for (int t = 0; t < 2; t++) { /* NN, then NT */
            for (int v = 0; v < 4; v++) {
                C[v] = rand_buf(M * N, 13);
                if (v < 3) {
                    kn_set_threads(v + 1);
                    kn_gemm(0, t, M, N, K, 0.75f, A, K, B, t ? K : N, 0.5f, C[v], N);
                } else {
                    kn_set_threads(2);
                    kn_gemm_st(0, t, M, N, K, 0.75f, A, K, B, t ? K : N, 0.5f, C[v], N);
                }
            }
            for (int v = 1; v < 4; v++)
                KT_CHECKF(!memcmp(C[0], C[v], (size_t)(M * N) * 4), "backend %d trans_b %d: variant %d differs", backend,
                          t, v);
            for (int v = 0; v < 4; v++)
                free(C[v]);
        }
        kn_gemm_set_backend(prev);
    }
    kn_set_threads(prev_threads);
    free(A), free(B);
}

/* ------------------------------------------------------ finite differences */

static double sum_wy(const float *y, const float *wy, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)y[i] * wy[i];
    return s;
}

/* loss = Σ y·r with r random; checks the analytic grad g of parameter p (n floats) by central
 * differences of fwd(). */
typedef void (*fwd_fn)(void *ctx, float *y);
static void fd_check(const char *what, fwd_fn fwd, void *ctx, float *p, const float *g, int64_t n, const float *r,
                     int64_t ny) {
    float *y = malloc((size_t)ny * 4);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float keep = p[i];
        const float eps = 1e-3f;
        p[i] = keep + eps;
        fwd(ctx, y);
        double lp = sum_wy(y, r, ny);
        p[i] = keep - eps;
        fwd(ctx, y);
        double lm = sum_wy(y, r, ny);
        p[i] = keep;
        double num = (lp - lm) / (2.0 * eps);
        double rel = fabs(num - g[i]) / (fabs(num) + fabs((double)g[i]) + 1e-2);
        if (rel > worst)
            worst = rel;
    }
    KT_CHECKF(worst < 1e-2, "%s: finite-difference rel err %g", what, worst);
    free(y);
}

typedef struct { kn_tensor x, w, b; int use_b; } lin_ctx;
static void lin_fwd(void *p, float *y) {
    lin_ctx *c = p;
    kn_tensor yt = {0};
    int64_t shape[2] = {c->x.shape[0], c->w.shape[0]};
    yt = kn_tensor_view(KN_F32, 2, shape, y);
    KN_ASSERT(kn_linear(NULL, &c->x, &c->w, c->use_b ? &c->b : NULL, &yt) == KN_OK);
}

KT_TEST(linear_backward_finite_diff) {
    int64_t R = 5, in = 7, out = 6;
    int64_t xs[2] = {R, in}, ws[2] = {out, in}, bs[1] = {out}, ys[2] = {R, out};
    float *x = rand_buf(R * in, 21), *w = rand_buf(out * in, 22), *b = rand_buf(out, 23), *r = rand_buf(R * out, 24);
    lin_ctx c = {kn_tensor_view(KN_F32, 2, xs, x), kn_tensor_view(KN_F32, 2, ws, w), kn_tensor_view(KN_F32, 1, bs, b), 1};
    /* gradients accumulate: start from a known value and subtract it afterwards */
    float *dx = calloc((size_t)(R * in), 4), *dw = calloc((size_t)(out * in), 4), *db = calloc((size_t)out, 4);
    for (int64_t i = 0; i < out; i++)
        db[i] = 1.0f;
    kn_tensor tdx = kn_tensor_view(KN_F32, 2, xs, dx), tdw = kn_tensor_view(KN_F32, 2, ws, dw),
              tdb = kn_tensor_view(KN_F32, 1, bs, db), tdy = kn_tensor_view(KN_F32, 2, ys, r);
    KT_OK(kn_linear_backward(&c.x, &c.w, &tdy, &tdx, &tdw, &tdb));
    for (int64_t i = 0; i < out; i++)
        db[i] -= 1.0f;
    fd_check("linear dx", lin_fwd, &c, x, dx, R * in, r, R * out);
    fd_check("linear dw", lin_fwd, &c, w, dw, out * in, r, R * out);
    fd_check("linear db", lin_fwd, &c, b, db, out, r, R * out);
    free(x), free(w), free(b), free(r), free(dx), free(dw), free(db);
}

typedef struct { kn_tensor a, b; } mm_ctx;
static void mm_fwd(void *p, float *y) {
    mm_ctx *c = p;
    int64_t shape[3] = {KN_MAX(c->a.shape[0], c->b.shape[0]), c->a.shape[1], c->b.shape[2]};
    kn_tensor yt = kn_tensor_view(KN_F32, 3, shape, y);
    KN_ASSERT(kn_matmul(NULL, &c->a, &c->b, &yt) == KN_OK);
}

KT_TEST(matmul_backward_finite_diff) {
    /* (Ba, Bb) = (3,3), (1,3), (3,1): plain batch and broadcast on either side */
    static const int64_t bat[3][2] = {{3, 3}, {1, 3}, {3, 1}};
    for (int t = 0; t < 3; t++) {
        int64_t Ba = bat[t][0], Bb = bat[t][1], Bc = 3, M = 4, K = 5, N = 6;
        int64_t as[3] = {Ba, M, K}, bs[3] = {Bb, K, N}, cs[3] = {Bc, M, N};
        float *a = rand_buf(Ba * M * K, 31 + t), *b = rand_buf(Bb * K * N, 41 + t), *r = rand_buf(Bc * M * N, 51);
        float *da = calloc((size_t)(Ba * M * K), 4), *db = calloc((size_t)(Bb * K * N), 4);
        mm_ctx c = {kn_tensor_view(KN_F32, 3, as, a), kn_tensor_view(KN_F32, 3, bs, b)};
        kn_tensor tda = kn_tensor_view(KN_F32, 3, as, da), tdb = kn_tensor_view(KN_F32, 3, bs, db),
                  tdc = kn_tensor_view(KN_F32, 3, cs, r);
        KT_OK(kn_matmul_backward(&c.a, &c.b, &tdc, &tda, &tdb));
        fd_check("matmul da", mm_fwd, &c, a, da, Ba * M * K, r, Bc * M * N);
        fd_check("matmul db", mm_fwd, &c, b, db, Bb * K * N, r, Bc * M * N);
        free(a), free(b), free(r), free(da), free(db);
    }
}

/* ---------------------------------------------------------- PyTorch fixture */

/* Minimal reader for the fixture written by dev/ref_linear.py (F32 tensors only). */
typedef struct { char *buf; size_t n; const char *hdr; size_t hlen; } st_file;

static int st_load(st_file *f, const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    fseek(fp, 0, SEEK_END);
    f->n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc(f->n + 1);
    size_t got = fread(f->buf, 1, f->n, fp);
    fclose(fp);
    if (got != f->n || f->n < 8)
        return 0;
    uint64_t h;
    memcpy(&h, f->buf, 8);
    if (h + 8 > f->n)
        return 0;
    f->hdr = f->buf + 8;
    f->hlen = h;
    return 1;
}

/* Returns the data of tensor name with n floats, or NULL. */
static float *st_get(const st_file *f, const char *name, int64_t n) {
    char key[128];
    snprintf(key, sizeof key, "\"%s\":", name);
    char *hdr = strndup(f->hdr, f->hlen);
    const char *p = strstr(hdr, key);
    const char *o = p ? strstr(p, "\"data_offsets\":[") : NULL;
    long long b = -1, e = -1;
    if (o)
        sscanf(o + 16, "%lld,%lld", &b, &e);
    free(hdr);
    if (b < 0 || e - b != n * 4 || 8 + f->hlen + (size_t)e > f->n)
        return NULL;
    float *out = malloc((size_t)n * 4);
    memcpy(out, f->buf + 8 + f->hlen + b, (size_t)n * 4);
    return out;
}

KT_TEST(linear_matmul_vs_torch) {
    st_file f = {0};
    KT_CHECKF(st_load(&f, "tests/data/linear.safetensors"), "cannot read tests/data/linear.safetensors");
    if (!f.buf)
        return;
    const char *names[] = {"lin.x", "lin.w", "lin.b", "lin.y", "lin.dy", "lin.dx", "lin.dw", "lin.db",
                           "mm.a",  "mm.b",  "mm.c",  "mm.dc", "mm.da",  "mm.db"};
    const int64_t ns[] = {2 * 3 * 37, 19 * 37, 19, 2 * 3 * 19, 2 * 3 * 19, 2 * 3 * 37, 19 * 37, 19,
                          3 * 17 * 23, 23 * 29, 3 * 17 * 29, 3 * 17 * 29, 3 * 17 * 23, 23 * 29};
    float *d[14];
    int ok = 1;
    for (int i = 0; i < 14; i++) {
        d[i] = st_get(&f, names[i], ns[i]);
        KT_CHECKF(d[i] != NULL, "fixture tensor %s missing or wrong size", names[i]);
        ok &= d[i] != NULL;
    }
    if (ok) {
        int64_t xs[3] = {2, 3, 37}, ws[2] = {19, 37}, bs[1] = {19}, ys[3] = {2, 3, 19};
        kn_tensor x = kn_tensor_view(KN_F32, 3, xs, d[0]), w = kn_tensor_view(KN_F32, 2, ws, d[1]),
                  b = kn_tensor_view(KN_F32, 1, bs, d[2]), dy = kn_tensor_view(KN_F32, 3, ys, d[4]);
        kn_arena *A = kn_arena_new(1 << 20);
        kn_tensor y = {0};
        KT_OK(kn_linear(A, &x, &w, &b, &y));
        KT_CHECK(y.ndim == 3 && y.shape[2] == 19);
        KT_CHECK(kt_max_abs_diff(y.data, d[3], ns[3]) < 1e-5);
        kn_tensor dx, dw, db;
        KT_OK(kn_tensor_zeros(A, &dx, KN_F32, 3, xs));
        KT_OK(kn_tensor_zeros(A, &dw, KN_F32, 2, ws));
        KT_OK(kn_tensor_zeros(A, &db, KN_F32, 1, bs));
        KT_OK(kn_linear_backward(&x, &w, &dy, &dx, &dw, &db));
        KT_CHECK(kt_max_abs_diff(dx.data, d[5], ns[5]) < 1e-5);
        KT_CHECK(kt_max_abs_diff(dw.data, d[6], ns[6]) < 1e-5);
        KT_CHECK(kt_max_abs_diff(db.data, d[7], ns[7]) < 1e-5);

        int64_t as[3] = {3, 17, 23}, bbs[3] = {1, 23, 29}, cs[3] = {3, 17, 29};
        kn_tensor a = kn_tensor_view(KN_F32, 3, as, d[8]), bb = kn_tensor_view(KN_F32, 3, bbs, d[9]),
                  dc = kn_tensor_view(KN_F32, 3, cs, d[11]);
        kn_tensor c = {0};
        KT_OK(kn_matmul(A, &a, &bb, &c));
        KT_CHECK(c.ndim == 3 && c.shape[0] == 3 && c.shape[2] == 29);
        KT_CHECK(kt_max_abs_diff(c.data, d[10], ns[10]) < 1e-5);
        kn_tensor da, dbb;
        KT_OK(kn_tensor_zeros(A, &da, KN_F32, 3, as));
        KT_OK(kn_tensor_zeros(A, &dbb, KN_F32, 3, bbs));
        KT_OK(kn_matmul_backward(&a, &bb, &dc, &da, &dbb));
        KT_CHECK(kt_max_abs_diff(da.data, d[12], ns[12]) < 1e-5);
        KT_CHECK(kt_max_abs_diff(dbb.data, d[13], ns[13]) < 2e-5);
        kn_arena_free(A);
    }
    for (int i = 0; i < 14; i++)
        free(d[i]);
    free(f.buf);
}

KT_TEST(linear_matmul_shape_errors) {
    float buf[64] = {0};
    int64_t xs[2] = {2, 5}, ws[2] = {3, 4}, bs[1] = {2}, ys[2] = {2, 3};
    kn_tensor x = kn_tensor_view(KN_F32, 2, xs, buf), w = kn_tensor_view(KN_F32, 2, ws, buf),
              b = kn_tensor_view(KN_F32, 1, bs, buf), y = kn_tensor_view(KN_F32, 2, ys, buf);
    KT_CHECK(kn_linear(NULL, &x, &w, NULL, &y) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "(2,5)") && strstr(kn_last_error(), "(3,4)"), "message: %s", kn_last_error());
    ws[1] = 5;
    w = kn_tensor_view(KN_F32, 2, ws, buf);
    KT_CHECK(kn_linear(NULL, &x, &w, &b, &y) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "(2)"), "message: %s", kn_last_error());
    int64_t ys2[2] = {2, 4};
    kn_tensor y2 = kn_tensor_view(KN_F32, 2, ys2, buf);
    KT_CHECK(kn_linear(NULL, &x, &w, NULL, &y2) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "(2,4)") && strstr(kn_last_error(), "(2,3)"), "message: %s", kn_last_error());
    kn_tensor yn = {0};
    KT_CHECK(kn_linear(NULL, &x, &w, NULL, &yn) == KN_ERR_ARG); /* no data and no arena */

    int64_t as[3] = {2, 3, 4}, bbs[3] = {3, 5, 6};
    kn_tensor a = kn_tensor_view(KN_F32, 3, as, buf), bb = kn_tensor_view(KN_F32, 3, bbs, buf), c = {0};
    KT_CHECK(kn_matmul(NULL, &a, &bb, &c) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "(2,3,4)") && strstr(kn_last_error(), "(3,5,6)"), "message: %s", kn_last_error());
    bbs[1] = 4;
    bb = kn_tensor_view(KN_F32, 3, bbs, buf);
    KT_CHECK(kn_matmul(NULL, &a, &bb, &c) == KN_ERR_SHAPE); /* batch 2 vs 3 */
    KT_CHECKF(strstr(kn_last_error(), "batch"), "message: %s", kn_last_error());
    kn_tensor xi = x;
    xi.dtype = KN_I32;
    KT_CHECK(kn_linear(NULL, &xi, &w, NULL, &y) == KN_ERR_DTYPE);
}

/* `kinema bench ops --quick --json` runs and prints well-formed lines with positive numbers. */
KT_TEST(bench_ops_quick_json) {
    static char out[16384];
    int rc = kt_run(out, sizeof out, "%s bench ops --quick --json --threads 1", kt_bin());
    KT_CHECKF(rc == 0, "exit %d: %s", rc, out);
    const char *want[] = {"\"name\":\"fma_peak\"", "\"name\":\"triad\"", "\"name\":\"gemm/own\""};
    for (int i = 0; i < 3; i++)
        KT_CHECKF(strstr(out, want[i]) != NULL, "missing %s in: %s", want[i], out);
    const char *g = strstr(out, "\"name\":\"gemm/own\"");
    double gf = 0, peak = 0;
    if (g) {
        const char *p = strstr(g, "\"gflops\":"), *q = strstr(g, "\"peak_gflops\":");
        if (p && q)
            gf = atof(p + 9), peak = atof(q + 14);
        KT_CHECKF(gf > 1 && peak > 1 && strstr(g, "\"threads\":1"), "bad gemm line: %.200s", g);
    }
    rc = kt_run(out, sizeof out, "%s bench ops --bogus", kt_bin());
    KT_CHECKF(rc != 0 && strstr(out, "--bogus"), "bad option: exit %d: %s", rc, out);
}

/* linear and matmul (forward and backward, including the bias-gradient reduction and the
 * batch-parallel small-matrix path) give the same bits at 1, 2 and 3 threads. */
KT_TEST(linear_matmul_threads_bitwise) {
    int64_t R = 77, in = 300, out = 130, Bt = 5, M = 40, K = 33, N = 50;
    int64_t xs[2] = {R, in}, ws[2] = {out, in}, bs[1] = {out}, ys[2] = {R, out};
    int64_t as[3] = {Bt, M, K}, bbs[3] = {1, K, N}, cs[3] = {Bt, M, N};
    float *x = rand_buf(R * in, 61), *w = rand_buf(out * in, 62), *b = rand_buf(out, 63), *dy = rand_buf(R * out, 64);
    float *a = rand_buf(Bt * M * K, 65), *bb = rand_buf(K * N, 66), *dc = rand_buf(Bt * M * N, 67);
    kn_tensor tx = kn_tensor_view(KN_F32, 2, xs, x), tw = kn_tensor_view(KN_F32, 2, ws, w),
              tb = kn_tensor_view(KN_F32, 1, bs, b), tdy = kn_tensor_view(KN_F32, 2, ys, dy),
              ta = kn_tensor_view(KN_F32, 3, as, a), tbb = kn_tensor_view(KN_F32, 3, bbs, bb),
              tdc = kn_tensor_view(KN_F32, 3, cs, dc);
    /* outputs of each run, concatenated: y, dx, dw, db, c, da, db(matmul) */
    int64_t n = R * out + R * in + out * in + out + Bt * M * N + Bt * M * K + K * N;
    float *res[3];
    int prev = kn_get_threads();
    for (int t = 0; t < 3; t++) {
        kn_set_threads(t + 1);
        float *p = res[t] = calloc((size_t)n, 4);
        kn_tensor y = kn_tensor_view(KN_F32, 2, ys, p);
        p += R * out;
        kn_tensor dx = kn_tensor_view(KN_F32, 2, xs, p);
        p += R * in;
        kn_tensor dw = kn_tensor_view(KN_F32, 2, ws, p);
        p += out * in;
        kn_tensor db = kn_tensor_view(KN_F32, 1, bs, p);
        p += out;
        kn_tensor c = kn_tensor_view(KN_F32, 3, cs, p);
        p += Bt * M * N;
        kn_tensor da = kn_tensor_view(KN_F32, 3, as, p);
        p += Bt * M * K;
        kn_tensor dbb = kn_tensor_view(KN_F32, 3, bbs, p);
        KT_OK(kn_linear(NULL, &tx, &tw, &tb, &y));
        KT_OK(kn_linear_backward(&tx, &tw, &tdy, &dx, &dw, &db));
        KT_OK(kn_matmul(NULL, &ta, &tbb, &c));
        KT_OK(kn_matmul_backward(&ta, &tbb, &tdc, &da, &dbb));
    }
    kn_set_threads(prev);
    KT_CHECK(kt_max_abs(res[0], n) > 0);
    for (int t = 1; t < 3; t++)
        KT_CHECKF(!memcmp(res[0], res[t], (size_t)n * 4), "%d threads differ from 1", t + 1);
    for (int t = 0; t < 3; t++)
        free(res[t]);
    free(x), free(w), free(b), free(dy), free(a), free(bb), free(dc);
}

/* kn_gemm_st called from several pool workers at once (as conv does) uses per-thread packing
 * buffers: every product matches the one computed alone. */
typedef struct { const float *A, *B; float *C; int64_t M, N, K; } st_job;
static void st_item(int64_t i, void *ctx) {
    st_job *j = ctx;
    kn_gemm_st(0, (int)(i & 1), j->M, j->N, j->K, 1.0f, j->A + i * j->M * j->K, j->K, j->B, (i & 1) ? j->K : j->N,
               0.0f, j->C + i * j->M * j->N, j->N);
}

KT_TEST(gemm_st_concurrent) {
    int64_t n = 6, M = 50, N = 70, K = 400; /* K = 400: two K blocks; N*K square so NT reuses B */
    float *A = rand_buf(n * M * K, 71), *B = rand_buf(K * K, 72), *C = calloc((size_t)(n * M * N), 4),
          *R = calloc((size_t)(n * M * N), 4);
    st_job j = {A, B, C, M, N, K};
    int prev = kn_set_threads(2);
    kn_parallel_for(n, st_item, &j);
    kn_set_threads(prev);
    for (int64_t i = 0; i < n; i++)
        kn_gemm_ref(0, (int)(i & 1), M, N, K, 1.0f, A + i * M * K, K, B, (i & 1) ? K : N, 0.0f, R + i * M * N, N);
    double e = 0;
    for (int64_t i = 0; i < n * M * N; i++)
        e = fmax(e, fabs((double)C[i] - R[i]) / (1 + fabs((double)R[i])));
    KT_CHECKF(e < 1e-4, "concurrent kn_gemm_st rel err %g", e);
    free(A), free(B), free(C), free(R);
}
