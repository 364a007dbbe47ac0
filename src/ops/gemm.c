/* gemm.c — C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, row-major, FP32.
 *
 * Three implementations sit behind one entry point:
 *   - kn_gemm_ref: the triple loop from the definition (double accumulator), for tests;
 *   - the own kernel (default): GotoBLAS/BLIS-style packed panels and a 14x32 AVX-512
 *     register-blocked microkernel (28 zmm accumulators, 2 B vectors, 1 broadcast);
 *   - OpenBLAS: cblas_sgemm on each C tile with openblas_set_num_threads(1).
 * The backend is chosen once from the environment (KINEMA_GEMM=own|openblas, default own); see
 * docs/perf.md for the measurements behind that default.
 *
 * Determinism. C is cut into fixed TILE_M x TILE_N tiles whose boundaries depend only on (M, N),
 * never on the thread count. Threads take tiles from an atomic counter, but a tile is always
 * computed the same way: K is consumed in fixed KC blocks in increasing order, each block's partial
 * sum is formed by the microkernel in k order and then added into C. So every element of C sees
 * the same sequence of float operations whatever the thread count (kn_gemm_st runs the same tiles
 * on the calling thread and is bitwise identical to kn_gemm).
 *
 * Blocking (Zen 4: 32 KiB L1d, 1 MiB L2 per core):
 *   - A micro-panel MR x KC = 14 x 256 floats (14 KiB) stays in L1 across the jr loop;
 *   - the packed B block KC x TILE_N = 256 x 256 floats (256 KiB) stays in L2;
 *   - the packed A block TILE_M x KC = 112 x 256 floats (112 KiB) in L2 as well.
 * Packing buffers are allocated once per OS thread (pthread key; freed when the thread exits), so
 * the hot path never allocates. */
#include "ops/ops.h"

#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MR 14
#define NR 32
#define KC 256
#define TILE_M (8 * MR) /* 112 */
#define TILE_N (8 * NR) /* 256 */

/* ------------------------------------------------------------ reference */

void kn_gemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += (double)a * (double)b;
            }
            float *c = &C[i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * (double)*c));
        }
}

/* ------------------------------------------------------- per-thread scratch */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) { kn_aligned_free(p); }
static void scratch_init(void) { KN_ASSERT(pthread_key_create(&scratch_key, scratch_free) == 0); }

#define PACK_A_FLOATS ((size_t)TILE_M * KC)
#define PACK_B_FLOATS ((size_t)KC * TILE_N)

/* The packing buffers of the calling thread: A block then B block, 64-byte aligned. */
static float *thread_scratch(void) {
    pthread_once(&scratch_once, scratch_init);
    float *p = pthread_getspecific(scratch_key);
    if (!p) {
        p = kn_aligned_alloc((PACK_A_FLOATS + PACK_B_FLOATS) * sizeof(float));
        KN_ASSERT(p != NULL);
        KN_ASSERT(pthread_setspecific(scratch_key, p) == 0);
    }
    return p;
}

/* ------------------------------------------------------------------ packing */

/* Packs op(A)[i0:i0+mc, k0:k0+kc] as ceil(mc/MR) micro-panels; in each, element (i, k) is at
 * k*MR + i. Rows past mc are zero. dst: (ceil(mc/MR), kc, MR). */
static void pack_a(int trans, const float *A, int64_t lda, int64_t i0, int64_t k0, int mc, int kc, float *dst) {
    for (int p = 0; p < mc; p += MR, dst += (size_t)MR * kc) {
        int mr = KN_MIN(MR, mc - p);
        if (!trans) {
            for (int i = 0; i < mr; i++) {
                const float *src = A + (i0 + p + i) * lda + k0;
                for (int k = 0; k < kc; k++)
                    dst[k * MR + i] = src[k];
            }
            for (int i = mr; i < MR; i++)
                for (int k = 0; k < kc; k++)
                    dst[k * MR + i] = 0.0f;
        } else {
            for (int k = 0; k < kc; k++) {
                const float *src = A + (k0 + k) * lda + i0 + p;
                float *d = dst + k * MR;
                int i = 0;
                for (; i < mr; i++)
                    d[i] = src[i];
                for (; i < MR; i++)
                    d[i] = 0.0f;
            }
        }
    }
}

/* 16x16 transpose of rows src[r*ld .. +16) (r < 16) into dst[c*ldd + r]. */
static inline void transpose16(const float *src, int64_t ld, float *dst, int64_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * ld);
    /* stage 1: interleave pairs of rows (32-bit) */
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* stage 2: 64-bit interleave of rows i, i+2 */
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4q + s] holds, in each 128-bit lane L, column 4L + s of rows 4q..4q+3.
     * stage 3/4: gather lane L of r[s], r[4+s], r[8+s], r[12+s] into one vector. */
    for (int s = 0; s < 4; s++) {
        __m512 a = _mm512_shuffle_f32x4(r[s], r[4 + s], 0x44);      /* lanes 0,1 | 0,1 */
        __m512 b = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x44);
        __m512 c = _mm512_shuffle_f32x4(r[s], r[4 + s], 0xEE);      /* lanes 2,3 | 2,3 */
        __m512 d = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xEE);
        t[s] = _mm512_shuffle_f32x4(a, b, 0x88);      /* lane 0 of each: column s */
        t[4 + s] = _mm512_shuffle_f32x4(a, b, 0xDD);  /* lane 1: column 4 + s */
        t[8 + s] = _mm512_shuffle_f32x4(c, d, 0x88);  /* lane 2: column 8 + s */
        t[12 + s] = _mm512_shuffle_f32x4(c, d, 0xDD); /* lane 3: column 12 + s */
    }
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + i * ldd, t[i]);
}

/* Packs op(B)[k0:k0+kc, j0:j0+nc] as ceil(nc/NR) micro-panels; in each, element (k, j) is at
 * k*NR + j. Columns past nc are zero. dst: (ceil(nc/NR), kc, NR). */
static void pack_b(int trans, const float *B, int64_t ldb, int64_t k0, int64_t j0, int kc, int nc, float *dst) {
    for (int q = 0; q < nc; q += NR, dst += (size_t)NR * kc) {
        int nr = KN_MIN(NR, nc - q);
        if (!trans) {
            __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
            __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
            for (int k = 0; k < kc; k++) {
                const float *src = B + (k0 + k) * ldb + j0 + q;
                _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        } else {
            /* op(B)[k][j] = B[j*ldb + k]: rows of B are columns of the panel. */
            const float *src = B + (j0 + q) * ldb + k0;
            int k = 0;
            if (nr == NR)
                for (; k + 16 <= kc; k += 16) {
                    transpose16(src + k, ldb, dst + k * NR, NR);
                    transpose16(src + 16 * ldb + k, ldb, dst + k * NR + 16, NR);
                }
            for (; k < kc; k++)
                for (int j = 0; j < NR; j++)
                    dst[k * NR + j] = j < nr ? src[j * ldb + k] : 0.0f;
        }
    }
}

/* ------------------------------------------------------------- microkernel */

/* acc(14x32) = sum_k a[k*MR + i] * b[k*NR + j], k = 0..kc-1 in order; then for i < m, j < n:
 * C[i,j] = alpha*acc + beta*C[i,j] (beta == 0: C is not read). a: (kc, MR), b: (kc, NR). */
static void ukernel(int kc, const float *restrict a, const float *restrict b, float *restrict C, int64_t ldc,
                    int m, int n, float alpha, float beta) {
#define ROW_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    ROW_DECL(0) ROW_DECL(1) ROW_DECL(2) ROW_DECL(3) ROW_DECL(4) ROW_DECL(5) ROW_DECL(6)
    ROW_DECL(7) ROW_DECL(8) ROW_DECL(9) ROW_DECL(10) ROW_DECL(11) ROW_DECL(12) ROW_DECL(13)
#define ROW_FMA(i)                                   \
    {                                                \
        __m512 ai = _mm512_set1_ps(a[i]);            \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);  \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);  \
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        ROW_FMA(0) ROW_FMA(1) ROW_FMA(2) ROW_FMA(3) ROW_FMA(4) ROW_FMA(5) ROW_FMA(6)
        ROW_FMA(7) ROW_FMA(8) ROW_FMA(9) ROW_FMA(10) ROW_FMA(11) ROW_FMA(12) ROW_FMA(13)
        a += MR;
        b += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (m == MR && n == NR) {
#define ROW_STORE(i)                                                                          \
    {                                                                                         \
        float *r = C + (i) * ldc;                                                             \
        if (beta == 0.0f) {                                                                   \
            _mm512_storeu_ps(r, _mm512_mul_ps(va, c##i##0));                                  \
            _mm512_storeu_ps(r + 16, _mm512_mul_ps(va, c##i##1));                             \
        } else if (beta == 1.0f) {                                                            \
            _mm512_storeu_ps(r, _mm512_fmadd_ps(va, c##i##0, _mm512_loadu_ps(r)));            \
            _mm512_storeu_ps(r + 16, _mm512_fmadd_ps(va, c##i##1, _mm512_loadu_ps(r + 16)));  \
        } else {                                                                              \
            _mm512_storeu_ps(r, _mm512_fmadd_ps(va, c##i##0, _mm512_mul_ps(vb, _mm512_loadu_ps(r)))); \
            _mm512_storeu_ps(r + 16,                                                          \
                             _mm512_fmadd_ps(va, c##i##1, _mm512_mul_ps(vb, _mm512_loadu_ps(r + 16)))); \
        }                                                                                     \
    }
        ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3) ROW_STORE(4) ROW_STORE(5) ROW_STORE(6)
        ROW_STORE(7) ROW_STORE(8) ROW_STORE(9) ROW_STORE(10) ROW_STORE(11) ROW_STORE(12) ROW_STORE(13)
        return;
    }
    /* edge tile: spill the accumulators, then masked row updates (same arithmetic as above) */
    float acc[MR * NR] __attribute__((aligned(64)));
#define ROW_SPILL(i) _mm512_store_ps(acc + (i) * NR, c##i##0); _mm512_store_ps(acc + (i) * NR + 16, c##i##1);
    ROW_SPILL(0) ROW_SPILL(1) ROW_SPILL(2) ROW_SPILL(3) ROW_SPILL(4) ROW_SPILL(5) ROW_SPILL(6)
    ROW_SPILL(7) ROW_SPILL(8) ROW_SPILL(9) ROW_SPILL(10) ROW_SPILL(11) ROW_SPILL(12) ROW_SPILL(13)
    __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    __mmask16 m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    for (int i = 0; i < m; i++) {
        float *r = C + i * ldc;
        __m512 x0 = _mm512_load_ps(acc + i * NR), x1 = _mm512_load_ps(acc + i * NR + 16);
        __m512 y0, y1;
        if (beta == 0.0f) {
            y0 = _mm512_mul_ps(va, x0);
            y1 = _mm512_mul_ps(va, x1);
        } else if (beta == 1.0f) {
            y0 = _mm512_fmadd_ps(va, x0, _mm512_maskz_loadu_ps(m0, r));
            y1 = _mm512_fmadd_ps(va, x1, _mm512_maskz_loadu_ps(m1, r + 16));
        } else {
            y0 = _mm512_fmadd_ps(va, x0, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, r)));
            y1 = _mm512_fmadd_ps(va, x1, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, r + 16)));
        }
        _mm512_mask_storeu_ps(r, m0, y0);
        _mm512_mask_storeu_ps(r + 16, m1, y1);
    }
#undef ROW_DECL
#undef ROW_FMA
#undef ROW_STORE
#undef ROW_SPILL
}

/* ------------------------------------------------------------------ driver */

typedef struct {
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    int64_t tiles_m, tiles_n;
    atomic_long next; /* next tile to take */
} gemm_job;

/* Scales a C tile by beta (K == 0 or alpha == 0): C = beta*C, or 0 when beta == 0. */
static void scale_tile(float *C, int64_t ldc, int64_t mc, int64_t nc, float beta) {
    for (int64_t i = 0; i < mc; i++)
        for (int64_t j = 0; j < nc; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

static void own_tile(const gemm_job *g, int64_t t, float *pa, float *pb) {
    int64_t i0 = (t / g->tiles_n) * TILE_M, j0 = (t % g->tiles_n) * TILE_N;
    int mc = (int)KN_MIN((int64_t)TILE_M, g->M - i0), nc = (int)KN_MIN((int64_t)TILE_N, g->N - j0);
    float *Ct = g->C + i0 * g->ldc + j0;
    if (g->K == 0 || g->alpha == 0.0f) {
        scale_tile(Ct, g->ldc, mc, nc, g->beta);
        return;
    }
    for (int64_t k0 = 0; k0 < g->K; k0 += KC) {
        int kc = (int)KN_MIN((int64_t)KC, g->K - k0);
        float beta = k0 == 0 ? g->beta : 1.0f;
        pack_b(g->trans_b, g->B, g->ldb, k0, j0, kc, nc, pb);
        pack_a(g->trans_a, g->A, g->lda, i0, k0, mc, kc, pa);
        for (int ir = 0; ir < mc; ir += MR) {
            const float *ap = pa + (size_t)(ir / MR) * MR * kc;
            for (int jr = 0; jr < nc; jr += NR)
                ukernel(kc, ap, pb + (size_t)(jr / NR) * NR * kc, Ct + ir * g->ldc + jr, g->ldc,
                        KN_MIN(MR, mc - ir), KN_MIN(NR, nc - jr), g->alpha, beta);
        }
    }
}

/* OpenBLAS on one tile, single-threaded; the tile and its full K go to one cblas_sgemm call, so
 * the result depends only on the tile, not on which thread ran it. */
#define BLAS_TILE 256
static void blas_tile(const gemm_job *g, int64_t t) {
    int64_t i0 = (t / g->tiles_n) * BLAS_TILE, j0 = (t % g->tiles_n) * BLAS_TILE;
    int64_t mc = KN_MIN((int64_t)BLAS_TILE, g->M - i0), nc = KN_MIN((int64_t)BLAS_TILE, g->N - j0);
    float *Ct = g->C + i0 * g->ldc + j0;
    if (g->K == 0 || g->alpha == 0.0f) {
        scale_tile(Ct, g->ldc, mc, nc, g->beta);
        return;
    }
    const float *At = g->trans_a ? g->A + i0 : g->A + i0 * g->lda;
    const float *Bt = g->trans_b ? g->B + j0 * g->ldb : g->B + j0;
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                (blasint)mc, (blasint)nc, (blasint)g->K, g->alpha, At, (blasint)g->lda, Bt, (blasint)g->ldb,
                g->beta, Ct, (blasint)g->ldc);
}

/* Backend: 0 = own, 1 = OpenBLAS; -1 = not decided yet (read KINEMA_GEMM). */
static int backend = -1;

/* Not in ops.h (bench/tests only): selects the backend; returns the previous one. */
int kn_gemm_set_backend(int b);
int kn_gemm_set_backend(int b) {
    if (backend < 0) {
        const char *e = getenv("KINEMA_GEMM");
        backend = e && !strcmp(e, "openblas") ? 1 : 0;
    }
    int prev = backend;
    if (b == 0 || b == 1)
        backend = b;
    if (backend == 1)
        openblas_set_num_threads(1);
    return prev;
}

static void run_tiles(gemm_job *g, int serial_next) {
    if (backend == 1) {
        for (int64_t t; (t = serial_next ? g->next++ : atomic_fetch_add(&g->next, 1)) < g->tiles_m * g->tiles_n;)
            blas_tile(g, t);
        return;
    }
    float *pa = thread_scratch(), *pb = pa + PACK_A_FLOATS;
    for (int64_t t; (t = serial_next ? g->next++ : atomic_fetch_add(&g->next, 1)) < g->tiles_m * g->tiles_n;)
        own_tile(g, t, pa, pb);
}

static void gemm_task(int ith, int nth, void *ctx) {
    KN_UNUSED(ith);
    KN_UNUSED(nth);
    run_tiles(ctx, 0);
}

static void gemm_setup(gemm_job *g, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc) {
    if (backend < 0)
        kn_gemm_set_backend(-1);
    int64_t tm = backend == 1 ? BLAS_TILE : TILE_M, tn = backend == 1 ? BLAS_TILE : TILE_N;
    *g = (gemm_job){trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C,
                    (M + tm - 1) / tm, (N + tn - 1) / tn, 0};
}

void kn_gemm_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return;
    gemm_job g;
    gemm_setup(&g, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    run_tiles(&g, 1);
}

void kn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return;
    gemm_job g;
    gemm_setup(&g, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (kn_get_threads() == 1 || g.tiles_m * g.tiles_n == 1)
        run_tiles(&g, 1);
    else
        kn_parallel(gemm_task, &g);
}
