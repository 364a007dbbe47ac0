/* gemm_lowp.c — C(M,N) = alpha * W(M,K) · op(B)(K,N) + beta * C with W in F16, BF16 or Q8
 * (see gemm_lowp.h for the formats and the contract).
 *
 * The loop nest is kn_gemm's (ops/gemm.c), with the weight as the packed "A" operand:
 *   for each column block jc (NC wide), each K block pc (equal depths, multiples of 32, increasing):
 *     pack op(B)[pc, jc] once (shared by the threads; rounded to bf16 pairs for BF16);
 *     tasks = tiles of MC rows x TN columns, fixed by (M, N, K) only, dealt to the threads in
 *     contiguous ranges; a task widens (F16 / Q8) or re-lays (BF16) its W block into micro-panels
 *     and runs the 14 x 32 microkernel over it.
 * Every C element therefore sees one fixed sequence of float operations whatever the thread count.
 *
 * Microkernels (Zen 4, 32 zmm):
 *   f32:  acc[i][j] += a[k][i] * b[k][j], 28 zmm accumulators, 2 B loads + 14 broadcasts per k;
 *   bf16: acc[i][j] += a[k][i]*b[k][j] + a[k+1][i]*b[k+1][j] by vdpbf16ps: B panels hold 16
 *         columns x (k, k+1) bf16 pairs per zmm, A panels hold (k, k+1) pairs as one 32-bit word
 *         that is broadcast; twice the MACs of an FMA per instruction.
 * Converting a W block costs MC*KC element conversions against 2*MC*KC*TN flops (1/512). */
#include "ops/gemm_lowp.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MR 14
#define NR 32
#define KC 384          /* a multiple of 32: Q8 blocks and bf16 pairs never straddle K blocks */
#define MC (8 * MR)     /* 112 rows per task */
#define TN (8 * NR)     /* 256 columns per task */
#define NC (4 * TN)     /* 1024 columns per packed B block */

/* ------------------------------------------------------------ formats */

const char *kn_wtype_name(kn_wtype t) {
    static const char *n[] = {"f32", "f16", "bf16", "q8"};
    return t >= 0 && t < KN_WT_COUNT ? n[t] : "?";
}

kn_status kn_wtype_parse(const char *s, kn_wtype *t) {
    for (int i = 0; i < KN_WT_COUNT; i++)
        if (s && !strcmp(s, kn_wtype_name((kn_wtype)i))) {
            *t = (kn_wtype)i;
            return KN_OK;
        }
    return kn_fail(KN_ERR_ARG, "weights type '%s' is not one of f32, f16, bf16, q8", s ? s : "(null)");
}

kn_status kn_wtype_of(const char *op, const kn_tensor *w, kn_wtype *t) {
    switch (w->dtype) {
    case KN_F32: *t = KN_WT_F32; return KN_OK;
    case KN_F16: *t = KN_WT_F16; return KN_OK;
    case KN_BF16: *t = KN_WT_BF16; return KN_OK;
    case KN_U8: *t = KN_WT_Q8; return KN_OK;
    default:
        return kn_fail(KN_ERR_DTYPE, "%s: weight dtype %s is not F32, F16, BF16 or U8 (q8 blocks)", op,
                       kn_dtype_name(w->dtype));
    }
}

size_t kn_lowp_row_bytes(kn_wtype t, int64_t K) {
    switch (t) {
    case KN_WT_F32: return (size_t)K * 4;
    case KN_WT_F16:
    case KN_WT_BF16: return (size_t)K * 2;
    case KN_WT_Q8: return (size_t)((K + KN_Q8_BLOCK - 1) / KN_Q8_BLOCK) * sizeof(kn_q8_block);
    default: return 0;
    }
}

size_t kn_lowp_nbytes(kn_wtype t, int64_t rows, int64_t K) { return (size_t)rows * kn_lowp_row_bytes(t, K); }

/* One Q8 block from n <= 32 values (the rest of the block is zero). */
static void q8_block(const float *x, int n, kn_q8_block *b) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f;
    b->d = d;
    for (int i = 0; i < KN_Q8_BLOCK; i++) {
        float q = i < n && d > 0.0f ? roundf(x[i] / d) : 0.0f;
        b->q[i] = (int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
    }
}

void kn_lowp_quantize(kn_wtype t, const float *w, int64_t rows, int64_t K, void *dst) {
    size_t rb = kn_lowp_row_bytes(t, K);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * K;
        char *d = (char *)dst + r * rb;
        switch (t) {
        case KN_WT_F32: memcpy(d, x, rb); break;
        case KN_WT_F16: kn_f32_to_f16_row(x, (uint16_t *)d, K); break;
        case KN_WT_BF16: kn_f32_to_bf16_row(x, (uint16_t *)d, K); break;
        case KN_WT_Q8:
            for (int64_t k = 0; k < K; k += KN_Q8_BLOCK)
                q8_block(x + k, (int)KN_MIN((int64_t)KN_Q8_BLOCK, K - k), (kn_q8_block *)d + k / KN_Q8_BLOCK);
            break;
        default: KN_ASSERT(0);
        }
    }
}

/* y[0..n) = weights [k0, k0+n) of a row; k0 is a multiple of 32 for Q8. y has n rounded up to
 * 32 floats of room (Q8 writes whole blocks). */
static void row_to_f32(kn_wtype t, const void *row, int64_t k0, int64_t n, float *y) {
    int64_t k = 0;
    switch (t) {
    case KN_WT_F32: memcpy(y, (const float *)row + k0, (size_t)n * sizeof(float)); break;
    case KN_WT_F16: {
        const uint16_t *h = (const uint16_t *)row + k0;
        for (; k + 16 <= n; k += 16)
            _mm512_storeu_ps(y + k, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + k))));
        for (; k < n; k++)
            y[k] = kn_f16_to_f32(h[k]);
        break;
    }
    case KN_WT_BF16: {
        const uint16_t *h = (const uint16_t *)row + k0;
        for (; k + 16 <= n; k += 16) {
            __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + k)));
            _mm512_storeu_ps(y + k, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
        }
        for (; k < n; k++)
            y[k] = kn_bf16_to_f32(h[k]);
        break;
    }
    case KN_WT_Q8: {
        const kn_q8_block *b = (const kn_q8_block *)row + k0 / KN_Q8_BLOCK;
        for (; k < n; k += KN_Q8_BLOCK, b++) {
            __m512 d = _mm512_set1_ps(b->d);
            __m128i q0 = _mm_loadu_si128((const __m128i *)b->q), q1 = _mm_loadu_si128((const __m128i *)(b->q + 16));
            _mm512_storeu_ps(y + k, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0))));
            _mm512_storeu_ps(y + k + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1))));
        }
        break;
    }
    default: KN_ASSERT(0);
    }
}

void kn_lowp_dequantize_row(kn_wtype t, const void *row, int64_t K, float *y) {
    if (t != KN_WT_Q8) {
        row_to_f32(t, row, 0, K, y);
        return;
    }
    const kn_q8_block *b = row;
    for (int64_t k = 0; k < K; k++)
        y[k] = b[k / KN_Q8_BLOCK].d * (float)b[k / KN_Q8_BLOCK].q[k % KN_Q8_BLOCK];
}

static inline float bf16_round(float x) { return kn_bf16_to_f32(kn_f32_to_bf16(x)); }

/* ------------------------------------------------------------ reference */

void kn_gemm_lowp_ref(kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K, float alpha,
                      const void *W, size_t w_row_bytes, const float *B, int64_t ldb, float beta, float *C,
                      int64_t ldc) {
    float *w = malloc((size_t)(K > 0 ? K : 1) * sizeof(float));
    KN_ASSERT(w != NULL);
    for (int64_t i = 0; i < M; i++) {
        kn_lowp_dequantize_row(t, (const char *)W + i * w_row_bytes, K, w);
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += (double)w[k] * (double)(t == KN_WT_BF16 ? bf16_round(b) : b);
            }
            float *c = trans_c ? &C[j * ldc + i] : &C[i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * (double)*c));
        }
    }
    free(w);
}

/* ------------------------------------------------------------ bf16 dispatch */

static int bf16_mode = -1; /* 1: vdpbf16ps, 0: f32 fallback, -1: not decided */

int kn_gemm_lowp_bf16_native(int force) {
    int have = __builtin_cpu_supports("avx512bf16") != 0;
    if (bf16_mode < 0)
        bf16_mode = have;
    int prev = bf16_mode;
    if (force == 0)
        bf16_mode = 0;
    else if (force == 1)
        bf16_mode = have;
    return prev;
}

/* ------------------------------------------------------- per-thread scratch */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_free(void *p) { kn_aligned_free(p); }
static void scratch_init(void) { KN_ASSERT(pthread_key_create(&scratch_key, scratch_free) == 0); }

#define PA_FLOATS ((size_t)MC * KC + 64)
#define PB_FLOATS ((size_t)KC * NC)
#define ROW_LD (KC + 64)                     /* row stride of the converted rows */
#define ROW_FLOATS ((size_t)MR * ROW_LD)

/* A block, B block, MR converted rows; 64-byte aligned. */
static float *thread_scratch(void) {
    pthread_once(&scratch_once, scratch_init);
    float *p = pthread_getspecific(scratch_key);
    if (!p) {
        p = kn_aligned_alloc((PA_FLOATS + PB_FLOATS + ROW_FLOATS) * sizeof(float));
        KN_ASSERT(p != NULL);
        KN_ASSERT(pthread_setspecific(scratch_key, p) == 0);
    }
    return p;
}

/* ------------------------------------------------------------------ job */

typedef struct {
    kn_wtype t;
    int trans_b, trans_c, native; /* native: bf16 pairs + vdpbf16ps */
    int64_t M, N, K;
    float alpha, beta;
    const char *W;
    size_t wrb;
    const float *B;
    int64_t ldb;
    float *C;
    int64_t ldc;
    int64_t jc, pc; /* current phase: B block op(B)[pc:pc+kc, jc:jc+nc] packed in pb */
    int nc, kc;
    void *pb;
    int64_t ntasks;
    /* kn_gemm_bf16: the packed operand is op(A) of an f32 A (rounded to bf16 while packed), not W */
    int a_f32, trans_a;
    const float *A;
    int64_t lda;
} lp_job;

/* ------------------------------------------------------------------ packing */

/* In-register transpose of a 16 x 16 block: r[i] = row i in, r[c] = column c out. */
static inline void transpose_16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { /* pairs of rows, 32-bit interleave */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int q = 0; q < 16; q += 4) { /* 64-bit interleave: r[q+s] lane L = column 4L+s of rows q..q+3 */
        __m512d a = _mm512_castps_pd(t[q]), b = _mm512_castps_pd(t[q + 1]);
        __m512d c = _mm512_castps_pd(t[q + 2]), d = _mm512_castps_pd(t[q + 3]);
        r[q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int s = 0; s < 4; s++) { /* gather lane L of r[s], r[4+s], r[8+s], r[12+s] */
        __m512 a = _mm512_shuffle_f32x4(r[s], r[4 + s], 0x44), b = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x44);
        __m512 c = _mm512_shuffle_f32x4(r[s], r[4 + s], 0xEE), d = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xEE);
        t[s] = _mm512_shuffle_f32x4(a, b, 0x88);
        t[4 + s] = _mm512_shuffle_f32x4(a, b, 0xDD);
        t[8 + s] = _mm512_shuffle_f32x4(c, d, 0x88);
        t[12 + s] = _mm512_shuffle_f32x4(c, d, 0xDD);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* f32 micro-panels of W rows [i0, i0+mc), K range [pc, pc+kc): element (i, k) at k*MR + i,
 * rows past mc zero. rows: scratch of ROW_FLOATS (the MR rows widened to f32, stride ROW_LD),
 * then 16 x 16 transposes into the panel. */
static void pack_a_f32(const lp_job *g, int64_t i0, int mc, float *dst, float *rows) {
    int kc = g->kc;
    for (int p = 0; p < mc; p += MR, dst += (size_t)MR * kc) {
        int mr = KN_MIN(MR, mc - p);
        for (int i = 0; i < mr; i++)
            row_to_f32(g->t, g->W + (i0 + p + i) * g->wrb, g->pc, kc, rows + i * ROW_LD);
        int k = 0;
        for (; k + 16 <= kc; k += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < mr ? _mm512_loadu_ps(rows + i * ROW_LD + k) : _mm512_setzero_ps();
            transpose_16x16(r);
            for (int c = 0; c < 16; c++)
                _mm512_mask_storeu_ps(dst + (k + c) * MR, (__mmask16)((1u << MR) - 1), r[c]);
        }
        for (; k < kc; k++)
            for (int i = 0; i < MR; i++)
                dst[k * MR + i] = i < mr ? rows[i * ROW_LD + k] : 0.0f;
    }
}

/* bf16 micro-panels: word (kk, i) at kk*MR + i holds (W[i][pc+2kk], W[i][pc+2kk+1]) low | high<<16;
 * an odd kc gets a zero high half in the last pair. */
static void pack_a_bf16(const lp_job *g, int64_t i0, int mc, uint32_t *dst) {
    int kc = g->kc, kp = (kc + 1) / 2;
    for (int p = 0; p < mc; p += MR, dst += (size_t)MR * kp) {
        int mr = KN_MIN(MR, mc - p);
        for (int i = 0; i < MR; i++) {
            if (i >= mr) {
                for (int kk = 0; kk < kp; kk++)
                    dst[kk * MR + i] = 0;
                continue;
            }
            const uint16_t *h = (const uint16_t *)(g->W + (i0 + p + i) * g->wrb) + g->pc;
            for (int kk = 0; kk < kc / 2; kk++) {
                uint32_t v;
                memcpy(&v, h + 2 * kk, 4);
                dst[kk * MR + i] = v;
            }
            if (kc & 1)
                dst[(kp - 1) * MR + i] = h[kc - 1];
        }
    }
}

static inline __mmask16 mask_lo(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* op(A)(i, k) of kn_gemm_bf16's f32 A. */
static inline float a_at(const lp_job *g, int64_t i, int64_t k) {
    return g->trans_a ? g->A[k * g->lda + i] : g->A[i * g->lda + k];
}

/* kn_gemm_bf16 without AVX512-BF16: f32 micro-panels of op(A) rows [i0, i0+mc), K range [pc, pc+kc),
 * element (i, k) at k*MR + i rounded to bf16 (rows past mc zero); the layout of pack_a_f32. */
static void pack_a_f32_from_f32(const lp_job *g, int64_t i0, int mc, float *dst) {
    int kc = g->kc;
    for (int p = 0; p < mc; p += MR, dst += (size_t)MR * kc) {
        int mr = KN_MIN(MR, mc - p);
        for (int k = 0; k < kc; k++)
            for (int i = 0; i < MR; i++)
                dst[k * MR + i] = i < mr ? bf16_round(a_at(g, i0 + p + i, g->pc + k)) : 0.0f;
    }
}

/* kn_gemm_bf16: bf16-pair micro-panels of op(A) rows [i0, i0+mc) from the f32 A, rounded to
 * nearest even by vcvtneps2bf16 (= kn_f32_to_bf16); the layout of pack_a_bf16: word (kk, i) at
 * kk*MR + i = bf16(op(A)[i][pc+2kk]) | bf16(op(A)[i][pc+2kk+1]) << 16, an odd kc's last high half 0. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void pack_a_bf16_from_f32(const lp_job *g, int64_t i0, int mc, uint32_t *dst) {
    int kc = g->kc, kp = (kc + 1) / 2;
    int64_t k0 = g->pc, lda = g->lda;
    const __mmask16 all = (__mmask16)((1u << MR) - 1);
    for (int p = 0; p < mc; p += MR, dst += (size_t)MR * kp) {
        int mr = KN_MIN(MR, mc - p);
        if (g->trans_a) { /* A stored K x M: the MR rows of one k are contiguous */
            __mmask16 m = mask_lo(mr);
            for (int kk = 0; kk < kp; kk++) {
                const float *s0 = g->A + (k0 + 2 * kk) * lda + i0 + p;
                int has1 = 2 * kk + 1 < kc;
                __m256bh lo = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s0));
                __m256bh hi = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(has1 ? m : 0, has1 ? s0 + lda : s0));
                __m512i w = _mm512_or_si512(_mm512_cvtepu16_epi32((__m256i)lo),
                                            _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)hi), 16));
                _mm512_mask_storeu_epi32(dst + kk * MR, all, w);
            }
            continue;
        }
        /* A stored M x K: a row's 32 floats become 16 pairs, scattered down the panel (stride MR) */
        const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(MR));
        for (int i = 0; i < MR; i++) {
            if (i >= mr) {
                for (int kk = 0; kk < kp; kk++)
                    dst[kk * MR + i] = 0;
                continue;
            }
            const float *src = g->A + (i0 + p + i) * lda + k0;
            int kk = 0;
            for (; 2 * kk + 32 <= kc; kk += 16) {
                __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 2 * kk + 16), _mm512_loadu_ps(src + 2 * kk));
                _mm512_i32scatter_epi32(dst + kk * MR + i, idx, (__m512i)v, 4);
            }
            for (; kk < kp; kk++) {
                uint32_t lo = kn_f32_to_bf16(src[2 * kk]);
                uint32_t hi = 2 * kk + 1 < kc ? kn_f32_to_bf16(src[2 * kk + 1]) : 0;
                dst[kk * MR + i] = lo | hi << 16;
            }
        }
    }
}

/* f32 micro-panels of op(B)[k0:k0+kc, j0:j0+nc]: element (k, j) at k*NR + j, columns past nc zero.
 * round: round every value to bf16 (the BF16 fallback). */
static void pack_b_f32(const lp_job *g, int64_t j0, int nc, float *dst, int round) {
    int kc = g->kc;
    int64_t k0 = g->pc;
    for (int q = 0; q < nc; q += NR, dst += (size_t)NR * kc) {
        int nr = KN_MIN(NR, nc - q);
        if (!g->trans_b) {
            __mmask16 m0 = mask_lo(nr), m1 = mask_lo(nr - 16);
            for (int k = 0; k < kc; k++) {
                const float *src = g->B + (k0 + k) * g->ldb + j0 + q;
                _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        } else { /* op(B)[k][j] = B[j*ldb + k]: 16 x 16 transposes of B's rows */
            const float *src = g->B + (j0 + q) * g->ldb + k0;
            int k = 0;
            for (; k + 16 <= kc; k += 16)
                for (int h = 0; h < 2; h++) {
                    __m512 r[16];
                    for (int j = 0; j < 16; j++)
                        r[j] = 16 * h + j < nr ? _mm512_loadu_ps(src + (16 * h + j) * g->ldb + k) : _mm512_setzero_ps();
                    transpose_16x16(r);
                    for (int c = 0; c < 16; c++)
                        _mm512_store_ps(dst + (k + c) * NR + 16 * h, r[c]);
                }
            for (; k < kc; k++)
                for (int j = 0; j < NR; j++)
                    dst[k * NR + j] = j < nr ? src[j * g->ldb + k] : 0.0f;
        }
        if (round)
            for (int k = 0; k < kc * NR; k++)
                dst[k] = bf16_round(dst[k]);
    }
}

/* bf16-pair micro-panels of op(B): word (kk, j) at kk*NR + j = bf16(B[2kk][j]) | bf16(B[2kk+1][j])<<16
 * (k past kc and columns past nc are zero). Rounding: vcvtneps2bf16 (nearest even, as kn_f32_to_bf16). */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void pack_b_bf16(const lp_job *g, int64_t j0, int nc, uint32_t *dst) {
    int kc = g->kc, kp = (kc + 1) / 2;
    int64_t k0 = g->pc;
    for (int q = 0; q < nc; q += NR, dst += (size_t)NR * kp) {
        int nr = KN_MIN(NR, nc - q);
        if (!g->trans_b) {
            for (int kk = 0; kk < kp; kk++) {
                const float *s0 = g->B + (k0 + 2 * kk) * g->ldb + j0 + q;
                const float *s1 = s0 + g->ldb;
                int has1 = 2 * kk + 1 < kc;
                for (int h = 0; h < 2; h++) {
                    __mmask16 m = mask_lo(nr - 16 * h);
                    __m256bh lo = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s0 + 16 * h));
                    __m256bh hi = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(has1 ? m : 0, has1 ? s1 + 16 * h : s0));
                    __m512i w = _mm512_or_si512(_mm512_cvtepu16_epi32((__m256i)lo),
                                                _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)hi), 16));
                    _mm512_store_si512((__m512i *)(dst + kk * NR + 16 * h), w);
                }
            }
        } else {
            uint32_t tmp[16] __attribute__((aligned(64)));
            for (int j = 0; j < NR; j++) {
                if (j >= nr) {
                    for (int kk = 0; kk < kp; kk++)
                        dst[kk * NR + j] = 0;
                    continue;
                }
                const float *src = g->B + (j0 + q + j) * g->ldb + k0;
                int kk = 0;
                for (; 2 * kk + 32 <= kc; kk += 16) { /* 32 floats -> 16 pairs in k order */
                    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 2 * kk + 16), _mm512_loadu_ps(src + 2 * kk));
                    _mm512_store_si512((__m512i *)tmp, (__m512i)v);
                    for (int m = 0; m < 16; m++)
                        dst[(kk + m) * NR + j] = tmp[m];
                }
                for (; kk < kp; kk++) {
                    uint32_t lo = kn_f32_to_bf16(src[2 * kk]);
                    uint32_t hi = 2 * kk + 1 < kc ? kn_f32_to_bf16(src[2 * kk + 1]) : 0;
                    dst[kk * NR + j] = lo | hi << 16;
                }
            }
        }
    }
}

/* ------------------------------------------------------------- microkernels */

/* Writes the accumulators acc (MR x NR, row i at i*NR) of the tile at rows [i0, i0+m), columns
 * [j0, j0+n) of C: C = alpha*acc + beta*C (beta 0: C not read). trans_c: C(i, j) at C[j*ldc + i]. */
static void store_tile(const float *acc, int m, int n, float alpha, float beta, float *C, int64_t ldc,
                       int trans_c, int64_t i0, int64_t j0) {
    if (!trans_c) {
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        __mmask16 m0 = mask_lo(n), m1 = mask_lo(n - 16);
        for (int i = 0; i < m; i++) {
            float *r = C + (i0 + i) * ldc + j0;
            __m512 x0 = _mm512_load_ps(acc + i * NR), x1 = _mm512_load_ps(acc + i * NR + 16), y0, y1;
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
        return;
    }
    for (int j = 0; j < n; j++) {
        float *r = C + (j0 + j) * ldc + i0;
        for (int i = 0; i < m; i++) {
            float x = acc[i * NR + j];
            r[i] = beta == 0.0f ? alpha * x : beta == 1.0f ? fmaf(alpha, x, r[i]) : fmaf(alpha, x, beta * r[i]);
        }
    }
}

#define DECL_ROW(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define ALL_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define SPILL_ROW(i) _mm512_store_ps(acc + (i) * NR, c##i##0); _mm512_store_ps(acc + (i) * NR + 16, c##i##1);

/* acc (MR x NR) = Σ_k a[k*MR + i] * b[k*NR + j], k = 0..kc-1 in order. a: (kc, MR), b: (kc, NR). */
static void ukernel_f32(int kc, const float *restrict a, const float *restrict b, float *restrict acc) {
    ALL_ROWS(DECL_ROW)
#define FMA_ROW(i)                                   \
    {                                                \
        __m512 ai = _mm512_set1_ps(a[i]);            \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);  \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);  \
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        ALL_ROWS(FMA_ROW)
        a += MR;
        b += NR;
    }
    ALL_ROWS(SPILL_ROW)
#undef FMA_ROW
}

/* acc (MR x NR) = Σ_kk (a.lo*b.lo + a.hi*b.hi) of the bf16 pairs, kk = 0..kp-1 in order.
 * a: (kp, MR) words, b: (kp, NR) words. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void ukernel_bf16(int kp, const uint32_t *restrict a, const uint32_t *restrict b, float *restrict acc) {
    ALL_ROWS(DECL_ROW)
#define DP_ROW(i)                                                   \
    {                                                               \
        __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);       \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, ai, b0);                \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, ai, b1);                \
    }
    for (int kk = 0; kk < kp; kk++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const __m512i *)b);
        __m512bh b1 = (__m512bh)_mm512_load_si512((const __m512i *)(b + 16));
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        ALL_ROWS(DP_ROW)
        a += MR;
        b += NR;
    }
    ALL_ROWS(SPILL_ROW)
#undef DP_ROW
}

/* ------------------------------------------------------------------ driver */

/* Task t: rows [i0, i0+MC) x columns [jc + j0, jc + j0 + TN). The W block packed in pa is reused
 * when this thread's previous task had the same rows (*a_key). */
static void lp_task(const lp_job *g, int64_t t, float *pa, float *row, int64_t *a_key) {
    int64_t ntn = (g->nc + TN - 1) / TN;
    int64_t i0 = (t / ntn) * MC;
    int j0 = (int)(t % ntn) * TN;
    int mc = (int)KN_MIN((int64_t)MC, g->M - i0), nc = KN_MIN(TN, g->nc - j0), kc = g->kc;
    int kp = (kc + 1) / 2;
    float beta = g->pc == 0 ? g->beta : 1.0f;
    float acc[MR * NR] __attribute__((aligned(64)));
    if (*a_key != i0) {
        if (g->native && g->a_f32)
            pack_a_bf16_from_f32(g, i0, mc, (uint32_t *)pa);
        else if (g->native)
            pack_a_bf16(g, i0, mc, (uint32_t *)pa);
        else if (g->a_f32)
            pack_a_f32_from_f32(g, i0, mc, pa);
        else
            pack_a_f32(g, i0, mc, pa, row);
        *a_key = i0;
    }
    for (int ir = 0; ir < mc; ir += MR)
        for (int jr = 0; jr < nc; jr += NR) {
            if (g->native)
                ukernel_bf16(kp, (const uint32_t *)pa + (size_t)(ir / MR) * MR * kp,
                             (const uint32_t *)g->pb + (size_t)((j0 + jr) / NR) * NR * kp, acc);
            else
                ukernel_f32(kc, pa + (size_t)(ir / MR) * MR * kc, (const float *)g->pb + (size_t)((j0 + jr) / NR) * NR * kc,
                            acc);
            store_tile(acc, KN_MIN(MR, mc - ir), KN_MIN(NR, nc - jr), g->alpha, beta, g->C, g->ldc, g->trans_c,
                       i0 + ir, g->jc + j0 + jr);
        }
}

/* This worker's share of the B block's micro-panels (their content does not depend on the split). */
static void pack_b_task(int ith, int nth, void *ctx) {
    lp_job *g = ctx;
    int64_t b, e, np = (g->nc + NR - 1) / NR;
    kn_split_range(np, ith, nth, &b, &e);
    if (b >= e)
        return;
    int nc = (int)KN_MIN((int64_t)g->nc - b * NR, (e - b) * NR);
    if (g->native)
        pack_b_bf16(g, g->jc + b * NR, nc, (uint32_t *)g->pb + (size_t)b * NR * ((g->kc + 1) / 2));
    else
        pack_b_f32(g, g->jc + b * NR, nc, (float *)g->pb + (size_t)b * NR * g->kc, g->t == KN_WT_BF16);
}

static void lp_tasks(int ith, int nth, void *ctx) {
    lp_job *g = ctx;
    float *pa = thread_scratch();
    float *row = pa + PA_FLOATS + PB_FLOATS;
    int64_t b, e, a_key = -1;
    kn_split_range(g->ntasks, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        lp_task(g, t, pa, row, &a_key);
}

/* Runs the job g (operands, sizes, alpha, beta set; the phase fields are filled here). */
static void lp_run(int parallel, lp_job *g) {
    int64_t M = g->M, N = g->N, K = g->K;
    if (M <= 0 || N <= 0)
        return;
    KN_ASSERT(g->t >= 0 && g->t < KN_WT_COUNT);
    if (K <= 0 || g->alpha == 0.0f) { /* C = beta * C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float *c = g->trans_c ? &g->C[j * g->ldc + i] : &g->C[i * g->ldc + j];
                *c = g->beta == 0.0f ? 0.0f : g->beta * *c;
            }
        return;
    }
    if (bf16_mode < 0)
        kn_gemm_lowp_bf16_native(-1);
    g->native = g->t == KN_WT_BF16 && bf16_mode == 1;
    /* below ~2 MFLOP the pool's wake-up costs more than it saves (same result either way) */
    if (parallel && (kn_get_threads() == 1 || 2.0 * (double)M * (double)N * (double)K < 2e6))
        parallel = 0;
    g->pb = thread_scratch() + PA_FLOATS;
    /* K blocks of equal depth rounded up to 32, <= KC: a function of K only */
    int64_t nkb = (K + KC - 1) / KC, kb = ((K + nkb - 1) / nkb + 31) / 32 * 32;
    for (g->jc = 0; g->jc < N; g->jc += NC) {
        g->nc = (int)KN_MIN((int64_t)NC, N - g->jc);
        for (g->pc = 0; g->pc < K; g->pc += kb) {
            g->kc = (int)KN_MIN(kb, K - g->pc);
            g->ntasks = ((M + MC - 1) / MC) * ((g->nc + TN - 1) / TN);
            if (parallel) {
                kn_parallel(pack_b_task, g);
                kn_parallel(lp_tasks, g);
            } else {
                pack_b_task(0, 1, g);
                lp_tasks(0, 1, g);
            }
        }
    }
}

static void lp_weights(int parallel, kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K,
                       float alpha, const void *W, size_t wrb, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc) {
    lp_job g = {t, trans_b, trans_c, 0, M, N, K, alpha, beta, W, wrb, B, ldb, C, ldc};
    lp_run(parallel, &g);
}

void kn_gemm_lowp(kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K, float alpha,
                  const void *W, size_t w_row_bytes, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc) {
    lp_weights(1, t, trans_b, trans_c, M, N, K, alpha, W, w_row_bytes, B, ldb, beta, C, ldc);
}

void kn_gemm_lowp_st(kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K, float alpha,
                     const void *W, size_t w_row_bytes, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    lp_weights(0, t, trans_b, trans_c, M, N, K, alpha, W, w_row_bytes, B, ldb, beta, C, ldc);
}

/* ------------------------------------------------------- mixed precision */

static int compute_bf16; /* kn_set_compute_bf16 */

int kn_set_compute_bf16(int on) {
    int prev = compute_bf16;
    compute_bf16 = on != 0;
    return prev;
}

int kn_compute_bf16(void) { return compute_bf16; }

static void bf16_gemm(int parallel, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    lp_job g = {KN_WT_BF16, trans_b, 0, 0, M, N, K, alpha, beta, NULL, 0, B, ldb, C, ldc};
    g.a_f32 = 1;
    g.trans_a = trans_a;
    g.A = A;
    g.lda = lda;
    lp_run(parallel, &g);
}

void kn_gemm_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bf16_gemm(1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void kn_gemm_bf16_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    bf16_gemm(0, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void kn_gemm_bf16_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += (double)bf16_round(a) * (double)bf16_round(b);
            }
            float *c = &C[i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * (double)*c));
        }
}
