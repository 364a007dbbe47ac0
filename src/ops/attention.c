/* attention.c — memory-efficient scaled dot-product attention, forward and backward.
 *
 * Forward (FlashAttention, Dao et al. 2022, with the online softmax of Milakov & Gimelshein 2018):
 * one task = (batch b, head h, block of up to QB queries). The task keeps its queries transposed,
 * Qt (D, QB), so that every vector register holds 16 QUERIES; then for each block of KB keys
 *     St (KB, QB) = K_blk · Qt                  (register-blocked tile GEMM, scores transposed)
 *     St = St * scale + mask
 *     m_new = max(m, colmax St);  P = exp(St - m_new);  l = l * exp(m - m_new) + colsum P
 *     Ot (Dv, QB) = Ot * exp(m - m_new) + V_blkᵀ · P
 * and at the end o = Otᵀ / l, lse = m + log l. With queries in the lanes, the running max, the
 * running sum and the rescale are plain vector ops, any head dim D works (D is the scalar loop of
 * the GEMMs, never a vector width), and K and V are read in place (broadcast operands), so nothing
 * but the query block is packed. The Lq x Lk score matrix is never allocated: the scratch of a task
 * is (D + KB + Dv) x QB floats.
 *
 * A fully masked query row (every score -inf) yields o = 0 and lse = -inf (and zero gradients).
 *
 * Backward (FlashAttention-2, Dao 2023, Alg. 2), recomputing P from lse block by block, with
 * Di = rowsum(dO_i * O_i):
 *     P = exp(S - lse),  dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P * (dP - D),  dK += scale dSᵀ Q,
 *     dQ += scale dS K.
 * To stay deterministic it runs in two passes: pass 1 parallelises over (b, h, key block) and each
 * task sweeps all queries in order to build dK, dV of its keys; pass 2 parallelises over
 * (b, h, query block) and sweeps all keys in order to build dQ. No gradient element is ever written
 * by two tasks, and every sum runs in a fixed order, so results are bitwise identical for any
 * thread count.
 *
 * Layout: q (B, Lq, H*D), k (B, Lk, H*D), v (B, Lk, H*Dv), o (B, Lq, H*Dv): dims 0 and 1 may have
 * any strides (e.g. q, k, v as views into one fused (B, L, 3C) projection), the last must be
 * contiguous. mask: (Lq, Lk) or (1 or B, Lq, Lk), contiguous, broadcast over heads. */
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <math.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#ifndef KN_ATT_QB
#define KN_ATT_QB 64
#endif
#ifndef KN_ATT_KB
#define KN_ATT_KB 128
#endif
#define QB KN_ATT_QB /* queries per task (a multiple of 16) */
#define KB KN_ATT_KB /* keys per block */
#define ATT_MAX_THREADS 256

/* ------------------------------------------------------------- scratch
 * Per-thread grow-only buffers, reserved by the calling thread before the parallel region (so
 * workers never allocate and an allocation failure is a status, not a crash). */
static float *g_scratch[ATT_MAX_THREADS];
static size_t g_scratch_n[ATT_MAX_THREADS];
static float *g_shared;      /* backward: D_i = rowsum(dO * O), (B, H, Lq) */
static size_t g_shared_n;

static kn_status scratch_reserve(const char *op, int nth, size_t nfloats) {
    KN_ASSERT(nth >= 1 && nth <= ATT_MAX_THREADS);
    for (int t = 0; t < nth; t++) {
        if (g_scratch_n[t] >= nfloats)
            continue;
        kn_aligned_free(g_scratch[t]);
        g_scratch[t] = kn_aligned_alloc(nfloats * sizeof(float));
        g_scratch_n[t] = g_scratch[t] ? nfloats : 0;
        if (!g_scratch[t])
            return kn_fail(KN_ERR_NOMEM, "%s: cannot allocate %zu bytes of scratch", op, nfloats * sizeof(float));
    }
    return KN_OK;
}

static kn_status shared_reserve(const char *op, size_t nfloats) {
    if (g_shared_n >= nfloats)
        return KN_OK;
    kn_aligned_free(g_shared);
    g_shared = kn_aligned_alloc(nfloats * sizeof(float));
    g_shared_n = g_shared ? nfloats : 0;
    if (!g_shared)
        return kn_fail(KN_ERR_NOMEM, "%s: cannot allocate %zu bytes of scratch", op, nfloats * sizeof(float));
    return KN_OK;
}

static inline int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* ------------------------------------------------------------ tile GEMM
 * C[r][0:n] (+)= sum_{k<kk} A[r*ars + k*aks] * B[k*ldb + 0:n]   for r < m.
 * A is the broadcast operand (any strides: K, V or a score tile read in place), B is row-major with
 * the n columns contiguous (vectors). Each C element is one sum in k order. acc = 0 overwrites C.
 * rs (or NULL): row r of the result is multiplied by rs[r] as it is stored. */
#ifdef __AVX512F__

/* R rows x NV vectors of C in registers (R <= 6, or R <= 8 when NV = 1: eight independent FMA
 * chains keep both FMA pipes busy on a one-vector tile); the last vector is masked by tail. */
static inline __attribute__((always_inline)) void micro(const int R, const int NV, int64_t kk, const float *A,
                                                        int64_t ars, int64_t aks, const float *B, int64_t ldb,
                                                        float *C, int64_t ldc, __mmask16 tail, int acc,
                                                        const float *rs) {
    __m512 c[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            if (r < R && v < NV)
                c[r][v] = acc ? _mm512_maskz_loadu_ps(v == NV - 1 ? tail : 0xffff, C + r * ldc + 16 * v)
                              : _mm512_setzero_ps();
    for (int64_t k = 0; k < kk; k++) {
        __m512 b[4];
        const float *bk = B + k * ldb;
        const float *ak = A + k * aks;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            if (v < NV)
                b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, bk + 16 * v) : _mm512_loadu_ps(bk + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            if (r < R) {
                __m512 a = _mm512_set1_ps(ak[r * ars]);
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    if (v < NV)
                        c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            if (r < R && v < NV)
                _mm512_mask_storeu_ps(C + r * ldc + 16 * v, v == NV - 1 ? tail : 0xffff,
                                      rs ? _mm512_mul_ps(c[r][v], _mm512_set1_ps(rs[r])) : c[r][v]);
}

static void tile_gemm(int64_t m, int64_t n, int64_t kk, const float *A, int64_t ars, int64_t aks, const float *B,
                      int64_t ldb, float *C, int64_t ldc, int acc, const float *rs) {
    for (int64_t c0 = 0; c0 < n; c0 += 64) {
        int64_t nc = KN_MIN(64, n - c0);
        int NV = (int)((nc + 15) / 16);
        int rem = (int)(nc - 16 * (NV - 1));
        __mmask16 tail = (__mmask16)(rem == 16 ? 0xffff : (1u << rem) - 1);
        const int RB = NV == 1 ? 8 : 6;
        for (int64_t r0 = 0; r0 < m; r0 += RB) {
            int R = (int)KN_MIN(RB, m - r0);
            const float *a = A + r0 * ars;
            const float *b = B + c0;
            float *c = C + r0 * ldc + c0;
#define KN_MK(r, v) \
    case r * 8 + v: micro(r, v, kk, a, ars, aks, b, ldb, c, ldc, tail, acc, rs ? rs + r0 : NULL); break;
            switch (R * 8 + NV) {
                KN_MK(1, 1) KN_MK(1, 2) KN_MK(1, 3) KN_MK(1, 4)
                KN_MK(2, 1) KN_MK(2, 2) KN_MK(2, 3) KN_MK(2, 4)
                KN_MK(3, 1) KN_MK(3, 2) KN_MK(3, 3) KN_MK(3, 4)
                KN_MK(4, 1) KN_MK(4, 2) KN_MK(4, 3) KN_MK(4, 4)
                KN_MK(5, 1) KN_MK(5, 2) KN_MK(5, 3) KN_MK(5, 4)
                KN_MK(6, 1) KN_MK(6, 2) KN_MK(6, 3) KN_MK(6, 4)
                KN_MK(7, 1) KN_MK(8, 1)
            default: KN_ASSERT(0);
            }
#undef KN_MK
        }
    }
}

#else /* portable scalar fallback */

static void tile_gemm(int64_t m, int64_t n, int64_t kk, const float *A, int64_t ars, int64_t aks, const float *B,
                      int64_t ldb, float *C, int64_t ldc, int acc, const float *rs) {
    for (int64_t r = 0; r < m; r++) {
        float *c = C + r * ldc;
        if (!acc)
            memset(c, 0, (size_t)n * sizeof(float));
        for (int64_t k = 0; k < kk; k++) {
            float a = A[r * ars + k * aks];
            const float *b = B + k * ldb;
            for (int64_t j = 0; j < n; j++)
                c[j] += a * b[j];
        }
        if (rs)
            for (int64_t j = 0; j < n; j++)
                c[j] *= rs[r];
    }
}

#endif

/* --------------------------------------------------------- shape checks */

typedef struct {
    int64_t B, Lq, Lk, H, D, Dv;
    int64_t qsb, qsl, ksb, ksl, vsb, vsl; /* strides of dims 0, 1 */
    int64_t mask_b;                       /* 0: no mask, else 1 or B */
} att_dims;

static kn_status check_rows(const char *op, const char *what, const kn_tensor *t) {
    KN_TRY(kn_check_f32(op, what, t, 3));
    if (t->stride[2] != 1 && t->shape[2] != 1) {
        char s[64];
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s must have a contiguous last dimension", op, what,
                       kn_shape_str(t, s, sizeof s));
    }
    if (!t->data)
        return kn_fail(KN_ERR_ARG, "%s: %s has no data", op, what);
    return KN_OK;
}

static kn_status check_inputs(const char *op, const kn_tensor *q, const kn_tensor *k, const kn_tensor *v, int heads,
                              float scale, const kn_tensor *mask, att_dims *d) {
    char s1[64], s2[64], s3[64];
    if (!q || !k || !v)
        return kn_fail(KN_ERR_ARG, "%s: q, k and v are required", op);
    KN_TRY(check_rows(op, "q", q));
    KN_TRY(check_rows(op, "k", k));
    KN_TRY(check_rows(op, "v", v));
    if (heads < 1)
        return kn_fail(KN_ERR_ARG, "%s: heads = %d must be >= 1", op, heads);
    if (!isfinite(scale))
        return kn_fail(KN_ERR_ARG, "%s: scale %g is not finite", op, (double)scale);
    if (q->shape[0] != k->shape[0] || q->shape[0] != v->shape[0] || k->shape[1] != v->shape[1] ||
        q->shape[2] != k->shape[2])
        return kn_fail(KN_ERR_SHAPE, "%s: q %s, k %s, v %s do not fit (want q (B,Lq,H*D), k (B,Lk,H*D), v (B,Lk,H*Dv))",
                       op, kn_shape_str(q, s1, sizeof s1), kn_shape_str(k, s2, sizeof s2), kn_shape_str(v, s3, sizeof s3));
    if (q->shape[0] < 1 || q->shape[1] < 1 || k->shape[1] < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: empty q %s or k %s", op, kn_shape_str(q, s1, sizeof s1),
                       kn_shape_str(k, s2, sizeof s2));
    if (q->shape[2] % heads || v->shape[2] % heads || q->shape[2] < heads || v->shape[2] < heads)
        return kn_fail(KN_ERR_SHAPE, "%s: %d heads do not divide q channels %lld and v channels %lld", op, heads,
                       (long long)q->shape[2], (long long)v->shape[2]);
    d->B = q->shape[0];
    d->Lq = q->shape[1];
    d->Lk = k->shape[1];
    d->H = heads;
    d->D = q->shape[2] / heads;
    d->Dv = v->shape[2] / heads;
    d->qsb = q->stride[0], d->qsl = q->stride[1];
    d->ksb = k->stride[0], d->ksl = k->stride[1];
    d->vsb = v->stride[0], d->vsl = v->stride[1];
    d->mask_b = 0;
    if (mask) {
        KN_TRY(kn_check_f32(op, "mask", mask, mask->ndim));
        int64_t mb = mask->ndim == 3 ? mask->shape[0] : 1;
        int ok = (mask->ndim == 2 || mask->ndim == 3) && mask->shape[mask->ndim - 2] == d->Lq &&
                 mask->shape[mask->ndim - 1] == d->Lk && (mb == 1 || mb == d->B);
        if (!ok)
            return kn_fail(KN_ERR_SHAPE, "%s: mask %s does not fit (want (Lq,Lk) or (1 or B,Lq,Lk) = (%lld,%lld,%lld))", op,
                           kn_shape_str(mask, s1, sizeof s1), (long long)d->B, (long long)d->Lq, (long long)d->Lk);
        if (!kn_tensor_is_contiguous(mask) || !mask->data)
            return kn_fail(KN_ERR_ARG, "%s: mask %s must be contiguous with data", op, kn_shape_str(mask, s1, sizeof s1));
        d->mask_b = mb;
    }
    return KN_OK;
}

/* Checks (or allocates from A) a (B, L, C) output-like tensor. */
static kn_status check_out(const char *op, const char *what, kn_arena *A, kn_tensor *t, int64_t B, int64_t L,
                           int64_t C) {
    int64_t shape[3] = {B, L, C};
    if (!t->data) {
        if (!A)
            return kn_fail(KN_ERR_ARG, "%s: %s has no data and no arena was given", op, what);
        return kn_tensor_alloc(A, t, KN_F32, 3, shape);
    }
    KN_TRY(check_rows(op, what, t));
    if (t->shape[0] != B || t->shape[1] != L || t->shape[2] != C) {
        char s[64];
        return kn_fail(KN_ERR_SHAPE, "%s: %s is %s, want (%lld,%lld,%lld)", op, what, kn_shape_str(t, s, sizeof s),
                       (long long)B, (long long)L, (long long)C);
    }
    return KN_OK;
}

/* ------------------------------------------------------------- forward */

typedef struct {
    att_dims d;
    const float *q, *k, *v, *mask;
    float *o, *lse;
    int64_t osb, osl;
    float scale;
    int64_t nqb, ntasks;
} fwd_ctx;

#ifdef __AVX512F__
/* out[c] (lanes r) = src[r*sl + c] for r < nr, c < n (a 16x16 in-register transpose: 32-bit and
 * 64-bit unpacks, then two rounds of 128-bit lane shuffles); other lanes and columns are 0. */
static inline __attribute__((always_inline)) void tr16(const float *src, int64_t sl, int nr, int n, __m512 out[16]) {
    __m512 r[16], t[16], u[16];
    __mmask16 cm = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        r[i] = i < nr ? _mm512_maskz_loadu_ps(cm, src + i * sl) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++) {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* u[4k+m], 128-bit lane L: column 4L+m of rows 4k..4k+3 */
        __m512d A = _mm512_castps_pd(t[4 * k]), B = _mm512_castps_pd(t[4 * k + 1]);
        __m512d C = _mm512_castps_pd(t[4 * k + 2]), D = _mm512_castps_pd(t[4 * k + 3]);
        u[4 * k + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(A, C));
        u[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(A, C));
        u[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(B, D));
        u[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(B, D));
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        __m512 x0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44), x1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xee);
        __m512 y0 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44), y1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xee);
        out[m] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        out[4 + m] = _mm512_shuffle_f32x4(x0, y0, 0xdd);
        out[8 + m] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        out[12 + m] = _mm512_shuffle_f32x4(x1, y1, 0xdd);
    }
}
#endif

/* Qt[c][i] = mul * x[i*sl + c] for i < nq, 0 for nq <= i < ld (ld a multiple of 16). */
static void pack_t(float *Qt, int64_t ld, const float *x, int64_t sl, int64_t nq, int64_t ncol, float mul) {
#ifdef __AVX512F__
    const __m512 vm = _mm512_set1_ps(mul);
    __m512 out[16];
    for (int64_t i0 = 0; i0 < ld; i0 += 16) {
        int nr = (int)KN_MAX(0, KN_MIN(16, nq - i0));
        for (int64_t c0 = 0; c0 < ncol; c0 += 16) {
            int n = (int)KN_MIN(16, ncol - c0);
            tr16(x + i0 * sl + c0, sl, nr, n, out);
            for (int c = 0; c < n; c++)
                _mm512_storeu_ps(Qt + (c0 + c) * ld + i0, _mm512_mul_ps(out[c], vm));
        }
    }
#else
    for (int64_t c = 0; c < ncol; c++) {
        float *dst = Qt + c * ld;
        for (int64_t i = 0; i < nq; i++)
            dst[i] = mul * x[i * sl + c];
        for (int64_t i = nq; i < ld; i++)
            dst[i] = 0.0f;
    }
#endif
}

/* Row i < nq of dst (row stride dsl) gets (acc ? += : =) mul[i] * Ot[c][i] for c < ncol. */
static void unpack_t(float *dst, int64_t dsl, const float *Ot, int64_t ld, int64_t nq, int64_t ncol,
                     const float *mul, int acc) {
#ifdef __AVX512F__
    __m512 out[16];
    for (int64_t i0 = 0; i0 < nq; i0 += 16) {
        int n = (int)KN_MIN(16, nq - i0);
        for (int64_t c0 = 0; c0 < ncol; c0 += 16) {
            int nr = (int)KN_MIN(16, ncol - c0);
            __mmask16 cm = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
            tr16(Ot + c0 * ld + i0, ld, nr, n, out);
            for (int i = 0; i < n; i++) {
                float *row = dst + (i0 + i) * dsl + c0;
                __m512 g = _mm512_mul_ps(out[i], _mm512_set1_ps(mul[i0 + i]));
                if (acc)
                    g = _mm512_add_ps(g, _mm512_maskz_loadu_ps(cm, row));
                _mm512_mask_storeu_ps(row, cm, g);
            }
        }
    }
#else
    for (int64_t i = 0; i < nq; i++)
        for (int64_t c = 0; c < ncol; c++) {
            float v = mul[i] * Ot[c * ld + i];
            dst[i * dsl + c] = acc ? dst[i * dsl + c] + v : v;
        }
#endif
}

/* St (nk, ld) += mask rows i0.. (mask row-major (Lq, Lk), cols j0..), for queries i < nq. The
 * scale is already in Qt. */
static void add_mask(float *St, int64_t ld, int64_t nk, int64_t nq, const float *mrow, int64_t Lk) {
    for (int64_t j = 0; j < nk; j++) {
        float *s = St + j * ld;
        for (int64_t i = 0; i < nq; i++)
            s[i] += mrow[i * Lk + j];
    }
}

/* Online softmax update for one key block (queries in lanes): on return St holds P, m and l are
 * updated and alpha (ld) holds the factor that rescales the previous Ot. */
static void online_softmax(float *St, int64_t ld, int64_t nk, float *m, float *l, float *alpha) {
#ifdef __AVX512F__
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < ld; i += 16) {
        __m512 mx = ninf;
        for (int64_t j = 0; j < nk; j++)
            mx = _mm512_max_ps(mx, _mm512_loadu_ps(St + j * ld + i));
        __m512 mo = _mm512_loadu_ps(m + i);
        __m512 mn = _mm512_max_ps(mo, mx);
        /* a row with every score so far -inf subtracts 0 instead of -inf (no NaN) */
        __m512 mu = _mm512_mask_mov_ps(mn, _mm512_cmp_ps_mask(mn, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
        __m512 al = kn_exp16(_mm512_sub_ps(mo, mu));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < nk; j++) {
            __m512 p = kn_exp16(_mm512_sub_ps(_mm512_loadu_ps(St + j * ld + i), mu));
            _mm512_storeu_ps(St + j * ld + i, p);
            sum = _mm512_add_ps(sum, p);
        }
        _mm512_storeu_ps(l + i, _mm512_fmadd_ps(_mm512_loadu_ps(l + i), al, sum));
        _mm512_storeu_ps(m + i, mn);
        _mm512_storeu_ps(alpha + i, al);
    }
#else
    for (int64_t i = 0; i < ld; i++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < nk; j++)
            mx = fmaxf(mx, St[j * ld + i]);
        float mn = fmaxf(m[i], mx);
        float mu = mn == -INFINITY ? 0.0f : mn;
        float al = expf(m[i] - mu), sum = 0.0f;
        for (int64_t j = 0; j < nk; j++) {
            float p = expf(St[j * ld + i] - mu);
            St[j * ld + i] = p;
            sum += p;
        }
        l[i] = l[i] * al + sum;
        m[i] = mn;
        alpha[i] = al;
    }
#endif
}

/* Softmax over the keys of one whole block (queries in lanes, the block is every key): St <- P =
 * exp(St - max), inv[i] = 1 / l (0 for a fully masked query), lse[i] = max + log l (-inf) for
 * i < nq. The same operations in the same order as online_softmax on a first block, so the short
 * path below gives the bits of the blocked one. */
static void softmax_cols(float *St, int64_t ld, int64_t nk, int64_t nq, float *lse, float *inv) {
    float mx[QB], l[QB];
#ifdef __AVX512F__
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < ld; i += 16) {
        __m512 m = ninf;
        for (int64_t j = 0; j < nk; j++)
            m = _mm512_max_ps(m, _mm512_loadu_ps(St + j * ld + i));
        /* a fully masked query subtracts 0 instead of -inf (no NaN) */
        __m512 mu = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < nk; j++) {
            __m512 p = kn_exp16(_mm512_sub_ps(_mm512_loadu_ps(St + j * ld + i), mu));
            _mm512_storeu_ps(St + j * ld + i, p);
            sum = _mm512_add_ps(sum, p);
        }
        _mm512_storeu_ps(mx + i, m);
        _mm512_storeu_ps(l + i, sum);
    }
#else
    for (int64_t i = 0; i < ld; i++) {
        float m = -INFINITY;
        for (int64_t j = 0; j < nk; j++)
            m = fmaxf(m, St[j * ld + i]);
        float mu = m == -INFINITY ? 0.0f : m, sum = 0.0f;
        for (int64_t j = 0; j < nk; j++) {
            float p = expf(St[j * ld + i] - mu);
            St[j * ld + i] = p;
            sum += p;
        }
        mx[i] = m, l[i] = sum;
    }
#endif
    for (int64_t i = 0; i < nq; i++) {
        inv[i] = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        if (lse)
            lse[i] = l[i] > 0.0f ? mx[i] + logf(l[i]) : -INFINITY;
    }
}

/* Short sequences (Lk <= KB, e.g. temporal attention over frames): the whole score row fits one
 * block, so there is no online-softmax bookkeeping, and the output rows are written in place by one
 * register-blocked GEMM with the values as the vector operand,
 *     o[i][:] = (sum_j P[j][i] V[j][:]) / l[i]      (R = 6 queries x 4 vectors of Dv per step)
 * instead of the transposed Ot (Dv x queries, one vector per row) and its transpose back. Each
 * o element is the same fma chain in the same order as in fwd_task, so results are bitwise the
 * same as the blocked path's. */
static void fwd_task_short(const fwd_ctx *c, int64_t t, float *ws) {
    const att_dims *d = &c->d;
    int64_t bh = t / c->nqb, qb = t % c->nqb;
    int64_t b = bh / d->H, h = bh % d->H;
    int64_t i0 = qb * QB, nq = KN_MIN(QB, d->Lq - i0), ld = round16(nq), nk = d->Lk;
    float *Qt = ws;             /* (D, ld) */
    float *St = Qt + d->D * ld; /* (Lk, ld) */
    float inv[QB];
    pack_t(Qt, ld, c->q + b * d->qsb + i0 * d->qsl + h * d->D, d->qsl, nq, d->D, c->scale);
    tile_gemm(nk, ld, d->D, c->k + b * d->ksb + h * d->D, d->ksl, 1, Qt, ld, St, ld, 0, NULL);
    if (c->mask)
        add_mask(St, ld, nk, nq, c->mask + (d->mask_b == 1 ? 0 : b) * d->Lq * d->Lk + i0 * d->Lk, d->Lk);
    softmax_cols(St, ld, nk, nq, c->lse ? c->lse + bh * d->Lq + i0 : NULL, inv);
    float *ob = c->o + b * c->osb + i0 * c->osl + h * d->Dv;
    tile_gemm(nq, d->Dv, nk, St, 1, ld, c->v + b * d->vsb + h * d->Dv, d->vsl, ob, c->osl, 0, inv);
}

static void fwd_task(const fwd_ctx *c, int64_t t, float *ws) {
    const att_dims *d = &c->d;
    int64_t bh = t / c->nqb, qb = t % c->nqb;
    int64_t b = bh / d->H, h = bh % d->H;
    int64_t i0 = qb * QB, nq = KN_MIN(QB, d->Lq - i0), ld = round16(nq);
    float *Qt = ws;                  /* (D, ld) */
    float *St = Qt + d->D * ld;      /* (KB, ld) */
    float *Ot = St + KB * ld;        /* (Dv, ld) */
    float *m = Ot + d->Dv * ld;      /* (ld) */
    float *l = m + QB, *alpha = l + QB;

    pack_t(Qt, ld, c->q + b * d->qsb + i0 * d->qsl + h * d->D, d->qsl, nq, d->D, c->scale);
    memset(Ot, 0, (size_t)(d->Dv * ld) * sizeof(float));
    for (int64_t i = 0; i < ld; i++)
        m[i] = -INFINITY, l[i] = 0.0f;
    const float *mrow = NULL;
    if (c->mask)
        mrow = c->mask + (d->mask_b == 1 ? 0 : b) * d->Lq * d->Lk + i0 * d->Lk;
    const float *kb = c->k + b * d->ksb + h * d->D;
    const float *vb = c->v + b * d->vsb + h * d->Dv;
    for (int64_t j0 = 0; j0 < d->Lk; j0 += KB) {
        int64_t nk = KN_MIN(KB, d->Lk - j0);
        tile_gemm(nk, ld, d->D, kb + j0 * d->ksl, d->ksl, 1, Qt, ld, St, ld, 0, NULL);
        if (mrow)
            add_mask(St, ld, nk, nq, mrow + j0, d->Lk);
        online_softmax(St, ld, nk, m, l, alpha);
        if (j0 > 0)
            for (int64_t cc = 0; cc < d->Dv; cc++) {
                float *orow = Ot + cc * ld;
                for (int64_t i = 0; i < ld; i++)
                    orow[i] *= alpha[i];
            }
        /* Ot[c][i] += sum_j V[j][c] P[j][i] */
        tile_gemm(d->Dv, ld, nk, vb + j0 * d->vsl, 1, d->vsl, St, ld, Ot, ld, 1, NULL);
    }
    float *ob = c->o + b * c->osb + i0 * c->osl + h * d->Dv;
    for (int64_t i = 0; i < nq; i++) {
        alpha[i] = l[i] > 0.0f ? 1.0f / l[i] : 0.0f; /* a fully masked row: o = 0 */
        if (c->lse)
            c->lse[bh * d->Lq + i0 + i] = l[i] > 0.0f ? m[i] + logf(l[i]) : -INFINITY;
    }
    unpack_t(ob, c->osl, Ot, ld, nq, d->Dv, alpha, 0);
}

static void fwd_worker(int ith, int nth, void *p) {
    const fwd_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->ntasks, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++) {
        if (c->d.Lk <= KB)
            fwd_task_short(c, t, g_scratch[ith]);
        else
            fwd_task(c, t, g_scratch[ith]);
    }
}

kn_status kn_attention(kn_arena *A, const kn_tensor *q, const kn_tensor *k, const kn_tensor *v, int heads,
                       float scale, const kn_tensor *mask, kn_tensor *o, float *lse_out) {
    static const char *op = "attention";
    fwd_ctx c;
    memset(&c, 0, sizeof c);
    KN_TRY(check_inputs(op, q, k, v, heads, scale, mask, &c.d));
    if (!o)
        return kn_fail(KN_ERR_ARG, "%s: o is required", op);
    KN_TRY(check_out(op, "o", A, o, c.d.B, c.d.Lq, heads * c.d.Dv));
    c.q = q->data, c.k = k->data, c.v = v->data, c.mask = mask ? mask->data : NULL;
    c.o = o->data, c.lse = lse_out;
    c.osb = o->stride[0], c.osl = o->stride[1];
    c.scale = scale;
    c.nqb = (c.d.Lq + QB - 1) / QB;
    c.ntasks = c.d.B * c.d.H * c.nqb;
    int nth = kn_get_threads();
    KN_TRY(scratch_reserve(op, nth, (size_t)((c.d.D + KB + c.d.Dv) * QB + 3 * QB)));
    kn_parallel(fwd_worker, &c);
    return KN_OK;
}

/* ------------------------------------------------------------ backward */

typedef struct {
    att_dims d;
    const float *q, *k, *v, *mask, *o, *lse, *dout;
    float *dq, *dk, *dv;
    float *Di; /* (B, H, Lq) */
    int64_t osb, osl, gsb, gsl;       /* o, dout strides */
    int64_t dqsb, dqsl, dksb, dksl, dvsb, dvsl;
    float scale;
    int64_t nqb, nkb, ntasks;
} bwd_ctx;

/* For a (key block j0.., query block i0..) tile with St = K·Qt and dPt = V·dOt computed:
 * St <- P = exp(S - lse) (0 in padded and fully masked query columns), dPt <- dS = P (dP - D). */
static void bwd_scores(const bwd_ctx *c, int64_t b, int64_t bh, int64_t i0, int64_t nq, int64_t ld, int64_t j0,
                       int64_t nk, float *St, float *dPt, float *lsev, float *Dv) {
    const att_dims *d = &c->d;
    const float *mrow = NULL;
    if (c->mask)
        mrow = c->mask + (d->mask_b == 1 ? 0 : b) * d->Lq * d->Lk + i0 * d->Lk + j0;
    if (mrow)
        add_mask(St, ld, nk, nq, mrow, d->Lk);
    for (int64_t i = 0; i < ld; i++) {
        float L = i < nq ? c->lse[bh * d->Lq + i0 + i] : -INFINITY;
        lsev[i] = L == -INFINITY ? INFINITY : L; /* exp(s - inf) = 0: no contribution */
        Dv[i] = i < nq ? c->Di[bh * d->Lq + i0 + i] : 0.0f;
    }
    for (int64_t j = 0; j < nk; j++) {
        float *s = St + j * ld, *g = dPt + j * ld;
#ifdef __AVX512F__
        for (int64_t i = 0; i < ld; i += 16) {
            __m512 p = kn_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), _mm512_loadu_ps(lsev + i)));
            _mm512_storeu_ps(s + i, p);
            _mm512_storeu_ps(g + i, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(g + i), _mm512_loadu_ps(Dv + i))));
        }
#else
        for (int64_t i = 0; i < ld; i++) {
            float p = expf(s[i] - lsev[i]);
            s[i] = p;
            g[i] = p * (g[i] - Dv[i]);
        }
#endif
    }
}

/* pass 1: one task = (b, h, key block); dK, dV of those keys over all queries */
static void bwd_kv_task(const bwd_ctx *c, int64_t t, float *ws) {
    const att_dims *d = &c->d;
    int64_t bh = t / c->nkb, kb = t % c->nkb;
    int64_t b = bh / d->H, h = bh % d->H;
    int64_t j0 = kb * KB, nk = KN_MIN(KB, d->Lk - j0);
    float *dK = ws;               /* (nk, D) */
    float *dV = dK + KB * d->D;   /* (nk, Dv) */
    float *Qt = dV + KB * d->Dv;  /* (D, ld) */
    float *dOt = Qt + d->D * QB;  /* (Dv, ld) */
    float *St = dOt + d->Dv * QB; /* (KB, ld) */
    float *dPt = St + KB * QB;    /* (KB, ld) */
    float *lsev = dPt + KB * QB, *Dvec = lsev + QB;
    memset(dK, 0, (size_t)(nk * d->D) * sizeof(float));
    memset(dV, 0, (size_t)(nk * d->Dv) * sizeof(float));
    const float *kp = c->k + b * d->ksb + j0 * d->ksl + h * d->D;
    const float *vp = c->v + b * d->vsb + j0 * d->vsl + h * d->Dv;
    for (int64_t i0 = 0; i0 < d->Lq; i0 += QB) {
        int64_t nq = KN_MIN(QB, d->Lq - i0), ld = round16(nq);
        const float *qp = c->q + b * d->qsb + i0 * d->qsl + h * d->D;
        const float *gp = c->dout + b * c->gsb + i0 * c->gsl + h * d->Dv;
        pack_t(Qt, ld, qp, d->qsl, nq, d->D, c->scale);
        pack_t(dOt, ld, gp, c->gsl, nq, d->Dv, 1.0f);
        tile_gemm(nk, ld, d->D, kp, d->ksl, 1, Qt, ld, St, ld, 0, NULL);
        tile_gemm(nk, ld, d->Dv, vp, d->vsl, 1, dOt, ld, dPt, ld, 0, NULL);
        bwd_scores(c, b, bh, i0, nq, ld, j0, nk, St, dPt, lsev, Dvec);
        /* dV[j][c] += sum_i P[j][i] dO[i][c];  dK[j][c] += sum_i dS[j][i] Q[i][c] */
        if (c->dv)
            tile_gemm(nk, d->Dv, nq, St, ld, 1, gp, c->gsl, dV, d->Dv, 1, NULL);
        if (c->dk)
            tile_gemm(nk, d->D, nq, dPt, ld, 1, qp, d->qsl, dK, d->D, 1, NULL);
    }
    for (int64_t j = 0; j < nk; j++) {
        if (c->dk) {
            float *dst = c->dk + b * c->dksb + (j0 + j) * c->dksl + h * d->D;
            for (int64_t x = 0; x < d->D; x++)
                dst[x] += c->scale * dK[j * d->D + x];
        }
        if (c->dv) {
            float *dst = c->dv + b * c->dvsb + (j0 + j) * c->dvsl + h * d->Dv;
            for (int64_t x = 0; x < d->Dv; x++)
                dst[x] += dV[j * d->Dv + x];
        }
    }
}

/* pass 2: one task = (b, h, query block); dQ of those queries over all keys */
static void bwd_q_task(const bwd_ctx *c, int64_t t, float *ws) {
    const att_dims *d = &c->d;
    int64_t bh = t / c->nqb, qb = t % c->nqb;
    int64_t b = bh / d->H, h = bh % d->H;
    int64_t i0 = qb * QB, nq = KN_MIN(QB, d->Lq - i0), ld = round16(nq);
    float *dQt = ws;               /* (D, ld) */
    float *Qt = dQt + d->D * QB;   /* (D, ld) */
    float *dOt = Qt + d->D * QB;   /* (Dv, ld) */
    float *St = dOt + d->Dv * QB;  /* (KB, ld) */
    float *dPt = St + KB * QB;     /* (KB, ld) */
    float *lsev = dPt + KB * QB, *Dvec = lsev + QB;
    pack_t(Qt, ld, c->q + b * d->qsb + i0 * d->qsl + h * d->D, d->qsl, nq, d->D, c->scale);
    pack_t(dOt, ld, c->dout + b * c->gsb + i0 * c->gsl + h * d->Dv, c->gsl, nq, d->Dv, 1.0f);
    memset(dQt, 0, (size_t)(d->D * ld) * sizeof(float));
    const float *kb = c->k + b * d->ksb + h * d->D;
    const float *vb = c->v + b * d->vsb + h * d->Dv;
    for (int64_t j0 = 0; j0 < d->Lk; j0 += KB) {
        int64_t nk = KN_MIN(KB, d->Lk - j0);
        tile_gemm(nk, ld, d->D, kb + j0 * d->ksl, d->ksl, 1, Qt, ld, St, ld, 0, NULL);
        tile_gemm(nk, ld, d->Dv, vb + j0 * d->vsl, d->vsl, 1, dOt, ld, dPt, ld, 0, NULL);
        bwd_scores(c, b, bh, i0, nq, ld, j0, nk, St, dPt, lsev, Dvec);
        /* dQt[x][i] += sum_j K[j][x] dS[j][i] */
        tile_gemm(d->D, ld, nk, kb + j0 * d->ksl, 1, d->ksl, dPt, ld, dQt, ld, 1, NULL);
    }
    float *dst = c->dq + b * c->dqsb + i0 * c->dqsl + h * d->D;
    for (int64_t i = 0; i < nq; i++)
        lsev[i] = c->scale;
    unpack_t(dst, c->dqsl, dQt, ld, nq, d->D, lsev, 1);
}

/* One (b, h) whose queries and keys each fit one block (temporal attention): passes 1 and 2 fused,
 * so S = K Qt and dPt = V dOt are computed once instead of twice. Every sum runs over the same
 * terms in the same order as in bwd_kv_task and bwd_q_task (one query block, one key block), so
 * the results are the same bits. */
static void bwd_task_short(const bwd_ctx *c, int64_t bh, float *ws) {
    const att_dims *d = &c->d;
    int64_t b = bh / d->H, h = bh % d->H;
    int64_t nq = d->Lq, nk = d->Lk, ld = round16(nq);
    float *dK = ws;               /* (nk, D) */
    float *dV = dK + KB * d->D;   /* (nk, Dv) */
    float *Qt = dV + KB * d->Dv;  /* (D, ld) */
    float *dOt = Qt + d->D * QB;  /* (Dv, ld) */
    float *St = dOt + d->Dv * QB; /* (KB, ld) */
    float *dPt = St + KB * QB;    /* (KB, ld) */
    float *lsev = dPt + KB * QB, *Dvec = lsev + QB;
    float *dQt = Dvec + QB;       /* (D, ld) */
    const float *qp = c->q + b * d->qsb + h * d->D, *gp = c->dout + b * c->gsb + h * d->Dv;
    const float *kp = c->k + b * d->ksb + h * d->D, *vp = c->v + b * d->vsb + h * d->Dv;
    pack_t(Qt, ld, qp, d->qsl, nq, d->D, c->scale);
    pack_t(dOt, ld, gp, c->gsl, nq, d->Dv, 1.0f);
    tile_gemm(nk, ld, d->D, kp, d->ksl, 1, Qt, ld, St, ld, 0, NULL);
    tile_gemm(nk, ld, d->Dv, vp, d->vsl, 1, dOt, ld, dPt, ld, 0, NULL);
    bwd_scores(c, b, bh, 0, nq, ld, 0, nk, St, dPt, lsev, Dvec);
    if (c->dv) {
        tile_gemm(nk, d->Dv, nq, St, ld, 1, gp, c->gsl, dV, d->Dv, 0, NULL);
        for (int64_t j = 0; j < nk; j++) {
            float *dst = c->dv + b * c->dvsb + j * c->dvsl + h * d->Dv;
            for (int64_t x = 0; x < d->Dv; x++)
                dst[x] += dV[j * d->Dv + x];
        }
    }
    if (c->dk) {
        tile_gemm(nk, d->D, nq, dPt, ld, 1, qp, d->qsl, dK, d->D, 0, NULL);
        for (int64_t j = 0; j < nk; j++) {
            float *dst = c->dk + b * c->dksb + j * c->dksl + h * d->D;
            for (int64_t x = 0; x < d->D; x++)
                dst[x] += c->scale * dK[j * d->D + x];
        }
    }
    if (c->dq) {
        tile_gemm(d->D, ld, nk, kp, 1, d->ksl, dPt, ld, dQt, ld, 0, NULL);
        for (int64_t i = 0; i < nq; i++)
            lsev[i] = c->scale;
        unpack_t(c->dq + b * c->dqsb + h * d->D, c->dqsl, dQt, ld, nq, d->D, lsev, 1);
    }
}

static void bwd_short_worker(int ith, int nth, void *p) {
    const bwd_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->d.B * c->d.H, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        bwd_task_short(c, t, g_scratch[ith]);
}

/* D_i = sum_c dO[i][c] O[i][c] per head, one item per (b, i) row; double accumulation. */
static void bwd_rowdot(int64_t r, void *p) {
    const bwd_ctx *c = p;
    const att_dims *d = &c->d;
    int64_t b = r / d->Lq, i = r % d->Lq;
    const float *orow = c->o + b * c->osb + i * c->osl;
    const float *grow = c->dout + b * c->gsb + i * c->gsl;
    for (int64_t h = 0; h < d->H; h++) {
        double s = 0.0;
        for (int64_t x = 0; x < d->Dv; x++)
            s += (double)orow[h * d->Dv + x] * grow[h * d->Dv + x];
        c->Di[(b * d->H + h) * d->Lq + i] = (float)s;
    }
}

static void bwd_kv_worker(int ith, int nth, void *p) {
    const bwd_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->d.B * c->d.H * c->nkb, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        bwd_kv_task(c, t, g_scratch[ith]);
}

static void bwd_q_worker(int ith, int nth, void *p) {
    const bwd_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->d.B * c->d.H * c->nqb, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        bwd_q_task(c, t, g_scratch[ith]);
}

static kn_status check_grad(const char *op, const char *what, const kn_tensor *g, const kn_tensor *like,
                            int64_t *sb, int64_t *sl) {
    if (!g)
        return KN_OK;
    KN_TRY(check_out(op, what, NULL, (kn_tensor *)g, like->shape[0], like->shape[1], like->shape[2]));
    *sb = g->stride[0], *sl = g->stride[1];
    return KN_OK;
}

kn_status kn_attention_backward(const kn_tensor *q, const kn_tensor *k, const kn_tensor *v, int heads, float scale,
                                const kn_tensor *mask, const kn_tensor *o, const float *lse, const kn_tensor *dout,
                                kn_tensor *dq, kn_tensor *dk, kn_tensor *dv) {
    static const char *op = "attention_backward";
    bwd_ctx c;
    memset(&c, 0, sizeof c);
    KN_TRY(check_inputs(op, q, k, v, heads, scale, mask, &c.d));
    if (!o || !dout || !lse)
        return kn_fail(KN_ERR_ARG, "%s: o, lse and dout are required", op);
    int64_t Cv = heads * c.d.Dv;
    KN_TRY(check_out(op, "o", NULL, (kn_tensor *)o, c.d.B, c.d.Lq, Cv));
    KN_TRY(check_out(op, "dout", NULL, (kn_tensor *)dout, c.d.B, c.d.Lq, Cv));
    KN_TRY(check_grad(op, "dq", dq, q, &c.dqsb, &c.dqsl));
    KN_TRY(check_grad(op, "dk", dk, k, &c.dksb, &c.dksl));
    KN_TRY(check_grad(op, "dv", dv, v, &c.dvsb, &c.dvsl));
    c.q = q->data, c.k = k->data, c.v = v->data, c.mask = mask ? mask->data : NULL;
    c.o = o->data, c.lse = lse, c.dout = dout->data;
    c.dq = dq ? dq->data : NULL, c.dk = dk ? dk->data : NULL, c.dv = dv ? dv->data : NULL;
    c.osb = o->stride[0], c.osl = o->stride[1], c.gsb = dout->stride[0], c.gsl = dout->stride[1];
    c.scale = scale;
    c.nqb = (c.d.Lq + QB - 1) / QB;
    c.nkb = (c.d.Lk + KB - 1) / KB;
    int nth = kn_get_threads();
    size_t ws = (size_t)(KB * (c.d.D + c.d.Dv) + QB * (2 * c.d.D + c.d.Dv) + 2 * KB * QB + 2 * QB);
    KN_TRY(scratch_reserve(op, nth, ws));
    KN_TRY(shared_reserve(op, (size_t)(c.d.B * c.d.H * c.d.Lq)));
    c.Di = g_shared;
    kn_parallel_for(c.d.B * c.d.Lq, bwd_rowdot, &c);
    if (c.nqb == 1 && c.nkb == 1) {
        kn_parallel(bwd_short_worker, &c);
        return KN_OK;
    }
    if (c.dk || c.dv)
        kn_parallel(bwd_kv_worker, &c);
    if (c.dq)
        kn_parallel(bwd_q_worker, &c);
    return KN_OK;
}

/* ------------------------------------------------------------ reference
 * The definition, scores materialised one row at a time, double accumulation:
 * o[b,i,h,:] = sum_j softmax_j(scale * q[b,i,h,:]·k[b,j,h,:] + mask[b or 0,i,j]) v[b,j,h,:].
 * A fully masked row gives zeros. */
void kn_attention_ref(const float *q, const float *k, const float *v, const float *mask, int64_t mask_b, float *o,
                      int64_t B, int64_t Lq, int64_t Lk, int heads, int64_t D, int64_t Dv, float scale) {
    int64_t H = heads, C = H * D, Cv = H * Dv;
    double *s = malloc((size_t)Lk * sizeof(double));
    KN_ASSERT(s);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                const float *qi = q + (b * Lq + i) * C + h * D;
                double mx = -INFINITY;
                for (int64_t j = 0; j < Lk; j++) {
                    const float *kj = k + (b * Lk + j) * C + h * D;
                    double acc = 0.0;
                    for (int64_t x = 0; x < D; x++)
                        acc += (double)qi[x] * kj[x];
                    acc *= scale;
                    if (mask)
                        acc += mask[((mask_b == 1 ? 0 : b) * Lq + i) * Lk + j];
                    s[j] = acc;
                    if (acc > mx)
                        mx = acc;
                }
                double sum = 0.0;
                for (int64_t j = 0; j < Lk; j++) {
                    s[j] = mx == -INFINITY ? 0.0 : exp(s[j] - mx);
                    sum += s[j];
                }
                float *oi = o + (b * Lq + i) * Cv + h * Dv;
                for (int64_t x = 0; x < Dv; x++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < Lk; j++)
                        acc += s[j] * v[(b * Lk + j) * Cv + h * Dv + x];
                    oi[x] = sum > 0.0 ? (float)(acc / sum) : 0.0f;
                }
            }
    free(s);
}
