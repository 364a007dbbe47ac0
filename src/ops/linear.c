/* linear.c — nn.Linear and batched matmul, forward and backward, on top of kn_gemm.
 *
 * linear:  x (R, in) [R = product of the leading dims], w (out, in), b (out) -> y (R, out),
 *          y = x · wᵀ + b   (gemm NT; the bias is written first and added with beta = 1).
 * matmul:  a (Ba, M, K), b (Bb, K, N) -> c (max(Ba,Bb), M, N); a batch of 1 broadcasts.
 * Backward rules accumulate into the given gradients (ops.h convention):
 *   dx += dy · w,  dw += dyᵀ · x,  db += Σ_rows dy;   da += dc · bᵀ,  db += aᵀ · dc.
 * Every reduction has a fixed order (gemm's K blocks; db sums rows in increasing order per
 * column), so results do not depend on the thread count.
 * Forward also takes a reduced-precision weight (F16, BF16, or U8 = Q8 blocks; ops/gemm_lowp.h):
 * y = x · wᵀ then runs as yᵀ = w · xᵀ through kn_gemm_lowp (W the packed operand, xᵀ read in place,
 * y stored transposed). Backward needs an F32 weight.
 * Mixed precision (kn_set_compute_bf16(1), ops/gemm_lowp.h): with an F32 weight every product above
 * (forward, dx, dw, matmul and its backward) runs through kn_gemm_bf16 (bf16 inputs, f32 sums) with
 * the same arguments; the bias and db stay f32. */
#include "ops/ops.h"
#include "ops/gemm_lowp.h"

#include <string.h>

/* The f32 GEMM, or the bf16 one in mixed precision (bf16 read once per op call by the caller). */
static void mm(int bf16, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (bf16)
        kn_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        kn_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Checks t is F32, contiguous, rank >= min_ndim (rank == ndim when ndim > 0). */
static kn_status check_in(const char *op, const char *what, const kn_tensor *t, int min_ndim) {
    char s[96];
    if (!t || !t->data)
        return kn_fail(KN_ERR_ARG, "%s: %s is missing", op, what);
    if (t->dtype != KN_F32)
        return kn_fail(KN_ERR_DTYPE, "%s: %s %s is %s, want F32", op, what, kn_shape_str(t, s, sizeof s),
                       kn_dtype_name(t->dtype));
    if (t->ndim < min_ndim)
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s has rank %d, want >= %d", op, what, kn_shape_str(t, s, sizeof s),
                       t->ndim, min_ndim);
    if (!kn_tensor_is_contiguous(t))
        return kn_fail(KN_ERR_ARG, "%s: %s %s is not contiguous", op, what, kn_shape_str(t, s, sizeof s));
    return KN_OK;
}

/* Allocates out from A with (ndim, shape) when out->data is NULL, else checks it matches. */
static kn_status prepare_out(const char *op, const char *what, kn_arena *A, kn_tensor *out, int ndim,
                             const int64_t *shape) {
    kn_tensor want = kn_tensor_view(KN_F32, ndim, shape, NULL);
    char s1[96], s2[96];
    if (!out)
        return kn_fail(KN_ERR_ARG, "%s: %s is missing", op, what);
    if (!out->data) {
        if (!A)
            return kn_fail(KN_ERR_ARG, "%s: %s has no data and no arena was given", op, what);
        return kn_tensor_alloc(A, out, KN_F32, ndim, shape);
    }
    if (out->dtype != KN_F32 || !kn_tensor_same_shape(out, &want) || !kn_tensor_is_contiguous(out))
        return kn_fail(KN_ERR_SHAPE, "%s: %s is %s %s, want F32 %s contiguous", op, what, kn_dtype_name(out->dtype),
                       kn_shape_str(out, s1, sizeof s1), kn_shape_str(&want, s2, sizeof s2));
    return KN_OK;
}

/* Checks a gradient (may be NULL) has the shape of its primal. */
static kn_status check_grad(const char *op, const char *what, const kn_tensor *g, const kn_tensor *like) {
    char s1[96], s2[96];
    if (!g)
        return KN_OK;
    if (!g->data || g->dtype != KN_F32 || !kn_tensor_same_shape(g, like) || !kn_tensor_is_contiguous(g))
        return kn_fail(KN_ERR_SHAPE, "%s: %s is %s %s, want F32 %s contiguous", op, what, kn_dtype_name(g->dtype),
                       kn_shape_str(g, s1, sizeof s1), kn_shape_str(like, s2, sizeof s2));
    return KN_OK;
}

/* ------------------------------------------------------------------ linear */

/* A weight: F32 (any use) or, when lowp, F16 / BF16 / U8 (Q8 blocks) for forward. */
static kn_status check_weight(const char *op, const kn_tensor *w, int lowp) {
    char s[96];
    if (!w || !w->data)
        return kn_fail(KN_ERR_ARG, "%s: w is missing", op);
    if (w->dtype != KN_F32) {
        kn_wtype t;
        KN_TRY(kn_wtype_of(op, w, &t));
        if (!lowp)
            return kn_fail(KN_ERR_DTYPE, "%s: w %s is %s; reduced-precision weights are for inference only, "
                           "backward needs F32", op, kn_shape_str(w, s, sizeof s), kn_wtype_name(t));
        if (w->ndim < 2)
            return kn_fail(KN_ERR_SHAPE, "%s: w %s must be 2-D (out, in)", op, kn_shape_str(w, s, sizeof s));
        if (!kn_tensor_is_contiguous(w))
            return kn_fail(KN_ERR_ARG, "%s: w %s is not contiguous", op, kn_shape_str(w, s, sizeof s));
        return KN_OK;
    }
    return check_in(op, "w", w, 2);
}

static kn_status linear_shapes(const char *op, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b,
                               int64_t *R, int64_t *in, int64_t *out, int lowp) {
    char s1[96], s2[96];
    KN_TRY(check_in(op, "x", x, 1));
    KN_TRY(check_weight(op, w, lowp));
    if (w->ndim != 2)
        return kn_fail(KN_ERR_SHAPE, "%s: w %s must be 2-D (out, in)", op, kn_shape_str(w, s1, sizeof s1));
    *in = x->shape[x->ndim - 1];
    *out = w->shape[0];
    if (w->shape[1] != *in)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s has %lld input features, w %s wants %lld", op,
                       kn_shape_str(x, s1, sizeof s1), (long long)*in, kn_shape_str(w, s2, sizeof s2),
                       (long long)w->shape[1]);
    if (b) {
        KN_TRY(check_in(op, "b", b, 1));
        if (b->ndim != 1 || b->shape[0] != *out)
            return kn_fail(KN_ERR_SHAPE, "%s: b %s does not match w %s (want (%lld))", op,
                           kn_shape_str(b, s1, sizeof s1), kn_shape_str(w, s2, sizeof s2), (long long)*out);
    }
    *R = *in ? kn_tensor_numel(x) / *in : 1;
    for (int d = 0; d < x->ndim - 1 && *in == 0; d++) /* in == 0: count rows from the shape */
        *R *= x->shape[d];
    return KN_OK;
}

kn_status kn_linear(kn_arena *A, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b, kn_tensor *y) {
    int64_t R, in, out;
    KN_TRY(linear_shapes("linear", x, w, b, &R, &in, &out, 1));
    int64_t shape[KN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    KN_TRY(prepare_out("linear", "y", A, y, x->ndim, shape));
    float *Y = y->data;
    if (b)
        for (int64_t r = 0; r < R; r++)
            memcpy(Y + r * out, b->data, (size_t)out * sizeof(float));
    if (w->dtype != KN_F32) { /* yᵀ (out,R) = w (out,in) · xᵀ, stored transposed into y (R,out) */
        kn_wtype t;
        KN_TRY(kn_wtype_of("linear", w, &t));
        kn_gemm_lowp(t, 1, 1, out, R, in, 1.0f, w->data, kn_lowp_row_bytes(t, in), x->data, in, b ? 1.0f : 0.0f, Y,
                     out);
        return KN_OK;
    }
    /* y (R,out) = x (R,in) · wᵀ, w stored (out,in) */
    mm(kn_compute_bf16(), 0, 1, R, out, in, 1.0f, x->data, in, w->data, in, b ? 1.0f : 0.0f, Y, out);
    return KN_OK;
}

typedef struct { const float *dy; float *db; int64_t R, out; } bias_grad_job;

/* db[j] += Σ_r dy[r, j] over r in increasing order; columns are dealt in blocks of 64. */
static void bias_grad_item(int64_t blk, void *ctx) {
    bias_grad_job *c = ctx;
    int64_t j0 = blk * 64, j1 = KN_MIN(j0 + 64, c->out);
    float acc[64];
    for (int64_t j = j0; j < j1; j++)
        acc[j - j0] = 0.0f;
    for (int64_t r = 0; r < c->R; r++) {
        const float *row = c->dy + r * c->out;
        for (int64_t j = j0; j < j1; j++)
            acc[j - j0] += row[j];
    }
    for (int64_t j = j0; j < j1; j++)
        c->db[j] += acc[j - j0];
}

kn_status kn_linear_backward(const kn_tensor *x, const kn_tensor *w, const kn_tensor *dy, kn_tensor *dx,
                             kn_tensor *dw, kn_tensor *db) {
    int64_t R, in, out;
    char s1[96], s2[96];
    KN_TRY(linear_shapes("linear_backward", x, w, NULL, &R, &in, &out, 0));
    KN_TRY(check_in("linear_backward", "dy", dy, 1));
    int ok = dy->ndim == x->ndim && dy->shape[dy->ndim - 1] == out;
    for (int d = 0; ok && d < x->ndim - 1; d++)
        ok = dy->shape[d] == x->shape[d];
    if (!ok)
        return kn_fail(KN_ERR_SHAPE, "linear_backward: dy %s does not match x %s and %lld outputs",
                       kn_shape_str(dy, s1, sizeof s1), kn_shape_str(x, s2, sizeof s2), (long long)out);
    KN_TRY(check_grad("linear_backward", "dx", dx, x));
    KN_TRY(check_grad("linear_backward", "dw", dw, w));
    if (db) {
        int64_t bs[1] = {out};
        kn_tensor bl = kn_tensor_view(KN_F32, 1, bs, NULL);
        KN_TRY(check_grad("linear_backward", "db", db, &bl));
    }
    int bf16 = kn_compute_bf16();
    if (dx) /* dx (R,in) += dy (R,out) · w (out,in) */
        mm(bf16, 0, 0, R, in, out, 1.0f, dy->data, out, w->data, in, 1.0f, dx->data, in);
    if (dw) /* dw (out,in) += dyᵀ · x */
        mm(bf16, 1, 0, out, in, R, 1.0f, dy->data, out, x->data, in, 1.0f, dw->data, in);
    if (db) {
        bias_grad_job c = {dy->data, db->data, R, out};
        kn_parallel_for((out + 63) / 64, bias_grad_item, &c);
    }
    return KN_OK;
}

/* ------------------------------------------------------------------ matmul */

typedef struct { int64_t Ba, Bb, Bc, M, K, N; } mm_dims;

/* a (B, M, K) or (M, K); b (B, K, N) or (K, N). */
static kn_status matmul_shapes(const char *op, const kn_tensor *a, const kn_tensor *b, mm_dims *d) {
    char s1[96], s2[96];
    KN_TRY(check_in(op, "a", a, 2));
    KN_TRY(check_in(op, "b", b, 2));
    if (a->ndim > 3 || b->ndim > 3)
        return kn_fail(KN_ERR_SHAPE, "%s: a %s and b %s must be 2-D or 3-D", op, kn_shape_str(a, s1, sizeof s1),
                       kn_shape_str(b, s2, sizeof s2));
    d->Ba = a->ndim == 3 ? a->shape[0] : 1;
    d->Bb = b->ndim == 3 ? b->shape[0] : 1;
    d->M = a->shape[a->ndim - 2];
    d->K = a->shape[a->ndim - 1];
    d->N = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != d->K)
        return kn_fail(KN_ERR_SHAPE, "%s: a %s has K = %lld, b %s has K = %lld", op, kn_shape_str(a, s1, sizeof s1),
                       (long long)d->K, kn_shape_str(b, s2, sizeof s2), (long long)b->shape[b->ndim - 2]);
    if (d->Ba != d->Bb && d->Ba != 1 && d->Bb != 1)
        return kn_fail(KN_ERR_SHAPE, "%s: batch of a %s and b %s differ and neither is 1", op,
                       kn_shape_str(a, s1, sizeof s1), kn_shape_str(b, s2, sizeof s2));
    d->Bc = KN_MAX(d->Ba, d->Bb);
    return KN_OK;
}

typedef struct {
    int bf16, ta, tb;
    int64_t M, N, K;
    const float *A, *B;
    int64_t sa, sb, lda, ldb; /* batch strides (0 = broadcast) and leading dims */
    float *C;
    int64_t sc;
} batch_job;

static void batch_item(int64_t i, void *ctx) {
    batch_job *j = ctx;
    void (*gemm_st)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                    float, float *, int64_t) = j->bf16 ? kn_gemm_bf16_st : kn_gemm_st;
    gemm_st(j->ta, j->tb, j->M, j->N, j->K, 1.0f, j->A + i * j->sa, j->lda, j->B + i * j->sb, j->ldb, 1.0f,
            j->C + i * j->sc, j->N);
}

/* C_i (+)= op(A_i) · op(B_i) for i < nb. Many small products run one per thread (kn_gemm_st),
 * large ones use the threaded kn_gemm; both give the same bits. beta: 0 or 1. */
static void batched_gemm(int bf16, int ta, int tb, int64_t nb, int64_t M, int64_t N, int64_t K, const float *A, int64_t sa,
                         int64_t lda, const float *B, int64_t sb, int64_t ldb, float beta, float *C, int64_t sc) {
    if (beta == 0.0f)
        for (int64_t i = 0; i < nb; i++)
            memset(C + i * sc, 0, (size_t)(M * N) * sizeof(float));
    if (nb >= kn_get_threads() && M * N <= 256 * 256) {
        batch_job j = {bf16, ta, tb, M, N, K, A, B, sa, sb, lda, ldb, C, sc};
        kn_parallel_for(nb, batch_item, &j);
        return;
    }
    for (int64_t i = 0; i < nb; i++)
        mm(bf16, ta, tb, M, N, K, 1.0f, A + i * sa, lda, B + i * sb, ldb, 1.0f, C + i * sc, N);
}

kn_status kn_matmul(kn_arena *A, const kn_tensor *a, const kn_tensor *b, kn_tensor *c) {
    mm_dims d;
    KN_TRY(matmul_shapes("matmul", a, b, &d));
    int ndim = KN_MAX(a->ndim, b->ndim);
    int64_t shape[3] = {d.Bc, d.M, d.N};
    KN_TRY(prepare_out("matmul", "c", A, c, ndim, ndim == 3 ? shape : shape + 1));
    batched_gemm(kn_compute_bf16(), 0, 0, d.Bc, d.M, d.N, d.K, a->data, d.Ba == 1 ? 0 : d.M * d.K, d.K, b->data,
                 d.Bb == 1 ? 0 : d.K * d.N, d.N, 0.0f, c->data, d.M * d.N);
    return KN_OK;
}

kn_status kn_matmul_backward(const kn_tensor *a, const kn_tensor *b, const kn_tensor *dc, kn_tensor *da,
                             kn_tensor *db) {
    mm_dims d;
    char s1[96], s2[96];
    KN_TRY(matmul_shapes("matmul_backward", a, b, &d));
    KN_TRY(check_in("matmul_backward", "dc", dc, 2));
    int ndim = KN_MAX(a->ndim, b->ndim);
    int64_t shape[3] = {d.Bc, d.M, d.N};
    kn_tensor want = kn_tensor_view(KN_F32, ndim, ndim == 3 ? shape : shape + 1, NULL);
    if (!kn_tensor_same_shape(dc, &want))
        return kn_fail(KN_ERR_SHAPE, "matmul_backward: dc %s, want %s", kn_shape_str(dc, s1, sizeof s1),
                       kn_shape_str(&want, s2, sizeof s2));
    KN_TRY(check_grad("matmul_backward", "da", da, a));
    KN_TRY(check_grad("matmul_backward", "db", db, b));
    const float *A_ = a->data, *B_ = b->data, *DC = dc->data;
    int bf16 = kn_compute_bf16();
    if (da) { /* da_i (M,K) += dc_i (M,N) · b_iᵀ ; b_i is (K,N) */
        if (d.Ba == d.Bc)
            batched_gemm(bf16, 0, 1, d.Bc, d.M, d.K, d.N, DC, d.M * d.N, d.N, B_, d.Bb == 1 ? 0 : d.K * d.N, d.N, 1.0f,
                         da->data, d.M * d.K);
        else /* a broadcast: sum over the batch, in batch order */
            for (int64_t i = 0; i < d.Bc; i++)
                mm(bf16, 0, 1, d.M, d.K, d.N, 1.0f, DC + i * d.M * d.N, d.N, B_ + i * d.K * d.N, d.N, 1.0f,
                        da->data, d.K);
    }
    if (db) { /* db_i (K,N) += a_iᵀ · dc_i ; a_i is (M,K) */
        if (d.Bb == d.Bc)
            batched_gemm(bf16, 1, 0, d.Bc, d.K, d.N, d.M, A_, d.Ba == 1 ? 0 : d.M * d.K, d.K, DC, d.M * d.N, d.N, 1.0f,
                         db->data, d.K * d.N);
        else
            for (int64_t i = 0; i < d.Bc; i++)
                mm(bf16, 1, 0, d.K, d.N, d.M, 1.0f, A_ + i * d.M * d.K, d.K, DC + i * d.M * d.N, d.N, 1.0f,
                        db->data, d.N);
    }
    return KN_OK;
}
