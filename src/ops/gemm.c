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
 * Determinism. The loop nest is BLIS's: for each column block jc (NC wide) and each K block pc
 * (equal depths <= KC, in increasing order), op(B)[pc, jc] is packed once, then C is cut into
 * tasks of MC rows x TN columns whose boundaries depend only on (M, N, K), never on the thread
 * count.
 * Each thread runs a contiguous range of tasks; a task packs its A block and runs the microkernel,
 * which forms the K-block partial sum in k order and adds it into C (beta on the first block).
 * Every element of C therefore sees the same sequence of float operations whatever the thread
 * count, and kn_gemm_st (same loop nest on the calling thread) is bitwise identical to kn_gemm.
 *
 * Blocking (Zen 4: 32 KiB L1d, 1 MiB L2 per core, 32 MiB L3):
 *   - A micro-panel MR x KC = 14 x 384 floats (21 KiB) stays in L1 across the jr loop;
 *   - the packed A block MC x KC = 112 x 384 floats (168 KiB) stays in L2;
 *   - the packed B block KC x NC = 384 x 1024 floats (1.5 MiB) is shared by the threads and
 *     streamed from L2/L3, 128 bytes per 28 FMAs, well within those caches' bandwidth.
 * (KC 384 / NC 1024 measured 2-6% faster than 256 / 512 on the bench shapes; K <= 384, common in
 * the U-Net's linears, then needs a single pass over C.)
 * Packing each B block once (not once per task) matters on large shapes: op(B) is then read
 * from memory once per jc/pc instead of M/MC times.
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
#define KC 384
#define MC (8 * MR)  /* 112 rows per task */
#define TN (8 * NR)  /* 256 columns per task */
#define NC (4 * TN)  /* 1024 columns per packed B block */

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

#define PACK_A_FLOATS ((size_t)MC * KC + 64) /* + slack: pack_a's 16-wide stores run 2 past */
#define PACK_B_FLOATS ((size_t)KC * NC)

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

/* Transposes a block of nrows <= 16 rows x 16 columns: row r < nrows is src[r*ld .. +16), rows past
 * nrows read as zero; column c (16 floats) is stored at dst + c*ldd. With ldd < 16 the stores
 * overlap forward (each is completed by the next) and the last one writes 16 - ldd floats past
 * dst + 15*ldd + ldd. */
static inline void transpose16(const float *src, int64_t ld, int nrows, float *dst, int64_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = i < nrows ? _mm512_loadu_ps(src + i * ld) : _mm512_setzero_ps();
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

/* Packs op(A)[i0:i0+mc, k0:k0+kc] as ceil(mc/MR) micro-panels; in each, element (i, k) is at
 * k*MR + i. Rows past mc are zero. dst: (ceil(mc/MR), kc, MR) plus 16 floats of slack. */
static void pack_a(int trans, const float *A, int64_t lda, int64_t i0, int64_t k0, int mc, int kc, float *dst) {
    for (int p = 0; p < mc; p += MR, dst += (size_t)MR * kc) {
        int mr = KN_MIN(MR, mc - p);
        if (!trans) {
            const float *src = A + (i0 + p) * lda + k0;
            int k = 0;
            for (; k + 16 <= kc; k += 16) /* rows are contiguous in k: 16x16 transposes */
                transpose16(src + k, lda, mr, dst + k * MR, MR);
            for (; k < kc; k++)
                for (int i = 0; i < MR; i++)
                    dst[k * MR + i] = i < mr ? src[i * lda + k] : 0.0f;
        } else {
            __mmask16 m = (__mmask16)((1u << mr) - 1);
            for (int k = 0; k < kc; k++) /* 16-wide stores; the 2 extra floats are overwritten next */
                _mm512_storeu_ps(dst + k * MR, _mm512_maskz_loadu_ps(m, A + (k0 + k) * lda + i0 + p));
        }
    }
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
                    transpose16(src + k, ldb, 16, dst + k * NR, NR);
                    transpose16(src + 16 * ldb + k, ldb, 16, dst + k * NR + 16, NR);
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
    /* C rows arrive while the k loop runs (the update at the end would otherwise wait on them) */
    for (int i = 0; i < m; i++) {
        __builtin_prefetch(C + i * ldc, 1);
        __builtin_prefetch(C + i * ldc + n - 1, 1);
    }
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
    /* current phase (own kernel): B block op(B)[pc:pc+kc, jc:jc+nc] packed in pb */
    int64_t jc, pc;
    int nc, kc;
    float *pb;
    int64_t ntasks;
    atomic_long next; /* next task to take */
} gemm_job;

/* C = beta*C, or 0 when beta == 0 (K == 0 or alpha == 0). */
static void scale_c(const gemm_job *g) {
    for (int64_t i = 0; i < g->M; i++)
        for (int64_t j = 0; j < g->N; j++)
            g->C[i * g->ldc + j] = g->beta == 0.0f ? 0.0f : g->beta * g->C[i * g->ldc + j];
}

/* Task t of the current phase: rows [i0, i0+MC) x columns [jc + j0, jc + j0 + TN). The A block
 * packed in pa is reused when the previous task of this thread had the same rows (*a_key). */
static void own_task(const gemm_job *g, int64_t t, float *pa, int64_t *a_key) {
    int64_t ntn = (g->nc + TN - 1) / TN;
    int64_t i0 = (t / ntn) * MC;
    int j0 = (int)(t % ntn) * TN;
    int mc = (int)KN_MIN((int64_t)MC, g->M - i0), nc = KN_MIN(TN, g->nc - j0), kc = g->kc;
    float beta = g->pc == 0 ? g->beta : 1.0f;
    float *Ct = g->C + i0 * g->ldc + g->jc + j0;
    const float *pb = g->pb + (size_t)(j0 / NR) * NR * kc;
    if (*a_key != i0) {
        pack_a(g->trans_a, g->A, g->lda, i0, g->pc, mc, kc, pa);
        *a_key = i0;
    }
    for (int ir = 0; ir < mc; ir += MR) {
        const float *ap = pa + (size_t)(ir / MR) * MR * kc;
        for (int jr = 0; jr < nc; jr += NR)
            ukernel(kc, ap, pb + (size_t)(jr / NR) * NR * kc, Ct + ir * g->ldc + jr, g->ldc, KN_MIN(MR, mc - ir),
                    KN_MIN(NR, nc - jr), g->alpha, beta);
    }
}

/* Packs this worker's share of the B block's micro-panels (the content does not depend on the split). */
static void pack_b_task(int ith, int nth, void *ctx) {
    gemm_job *g = ctx;
    int64_t b, e, np = (g->nc + NR - 1) / NR;
    kn_split_range(np, ith, nth, &b, &e);
    if (b < e)
        pack_b(g->trans_b, g->B, g->ldb, g->pc, g->jc + b * NR, g->kc, (int)KN_MIN((int64_t)g->nc - b * NR, (e - b) * NR),
               g->pb + (size_t)b * NR * g->kc);
}

/* Worker ith runs a contiguous range of tasks, so that the tasks sharing an A block (same rows,
 * next columns) mostly land on one thread and the block is packed once. Which thread runs a task
 * does not change its result. */
static void own_tasks(int ith, int nth, void *ctx) {
    gemm_job *g = ctx;
    float *pa = thread_scratch();
    int64_t b, e, a_key = -1;
    kn_split_range(g->ntasks, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        own_task(g, t, pa, &a_key);
}

/* The own kernel's loop nest; parallel: spread each phase over the pool. */
static void own_gemm(gemm_job *g, int parallel) {
    float *pa = thread_scratch();
    g->pb = pa + PACK_A_FLOATS;
    /* K blocks of equal depth <= KC (K = 400: 200 + 200, not 384 + 16); a function of K only */
    int64_t nkb = (g->K + KC - 1) / KC, kb = (g->K + nkb - 1) / nkb;
    for (g->jc = 0; g->jc < g->N; g->jc += NC) {
        g->nc = (int)KN_MIN((int64_t)NC, g->N - g->jc);
        for (g->pc = 0; g->pc < g->K; g->pc += kb) {
            g->kc = (int)KN_MIN(kb, g->K - g->pc);
            g->ntasks = ((g->M + MC - 1) / MC) * ((g->nc + TN - 1) / TN);
            if (parallel) {
                kn_parallel(pack_b_task, g);
                kn_parallel(own_tasks, g);
            } else {
                pack_b_task(0, 1, g);
                own_tasks(0, 1, g);
            }
        }
    }
}

/* OpenBLAS on fixed BLAS_TILE x BLAS_TILE tiles of C, single-threaded per tile; a tile and its
 * full K go to one cblas_sgemm call, so the result depends only on the tile, not on the thread. */
#define BLAS_TILE 256
static void blas_tile(const gemm_job *g, int64_t t) {
    int64_t tn = (g->N + BLAS_TILE - 1) / BLAS_TILE;
    int64_t i0 = (t / tn) * BLAS_TILE, j0 = (t % tn) * BLAS_TILE;
    int64_t mc = KN_MIN((int64_t)BLAS_TILE, g->M - i0), nc = KN_MIN((int64_t)BLAS_TILE, g->N - j0);
    const float *At = g->trans_a ? g->A + i0 : g->A + i0 * g->lda;
    const float *Bt = g->trans_b ? g->B + j0 * g->ldb : g->B + j0;
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                (blasint)mc, (blasint)nc, (blasint)g->K, g->alpha, At, (blasint)g->lda, Bt, (blasint)g->ldb,
                g->beta, g->C + i0 * g->ldc + j0, (blasint)g->ldc);
}

static void blas_tasks(int ith, int nth, void *ctx) {
    KN_UNUSED(ith);
    KN_UNUSED(nth);
    gemm_job *g = ctx;
    for (int64_t t; (t = atomic_fetch_add(&g->next, 1)) < g->ntasks;)
        blas_tile(g, t);
}

/* Backend: 0 = own, 1 = OpenBLAS; -1 = not decided yet (read KINEMA_GEMM). */
static int backend = -1;

/* Not in ops.h (bench/tests only): selects the backend (0 own, 1 OpenBLAS, other: keep);
 * returns the previous one. */
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

static void gemm_run(int parallel, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return;
    if (backend < 0)
        kn_gemm_set_backend(-1);
    gemm_job g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C};
    if (K <= 0 || alpha == 0.0f) {
        scale_c(&g);
        return;
    }
    /* below ~2 MFLOP the pool's wake-up costs more than it saves (same result either way) */
    if (parallel && (kn_get_threads() == 1 || 2.0 * (double)M * (double)N * (double)K < 2e6))
        parallel = 0;
    if (backend == 1) {
        g.ntasks = ((M + BLAS_TILE - 1) / BLAS_TILE) * ((N + BLAS_TILE - 1) / BLAS_TILE);
        if (parallel)
            kn_parallel(blas_tasks, &g);
        else
            blas_tasks(0, 1, &g);
        return;
    }
    own_gemm(&g, parallel);
}

void kn_gemm_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_run(0, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void kn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_run(1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
