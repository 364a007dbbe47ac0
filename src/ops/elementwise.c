/* elementwise.c — add, mul (with broadcasting), axpby, scale.
 *
 * Broadcasting rules of kn_add / kn_mul (y always has a's shape; b is read with stride 0 along the
 * dimensions it is broadcast over). They are tried in this order and the first that fits is used:
 *   1. Trailing (PyTorch/numpy): b's dims, aligned on a's LAST dims, each equal a's or are 1.
 *      Covers same shape, a bias (D) over (..., D), and (C,1,1) over (N,C,H,W).
 *   2. Prefix: b's shape equals a's leading dims, e.g. a time embedding (N,C) over (N,C,H,W).
 *   3. Per-channel: b is (C) and a is (N,C,...) with a.shape[1] = C and a.ndim >= 3.
 * Ambiguity: a 1-D b of length C over (N,C,H,W) with W == C matches rule 1 (PyTorch's reading);
 * a caller meaning "per channel" there should pass b as a (C,1,1) view (kn_tensor_reshape is free).
 * a and b must be contiguous F32; y may alias a (in place). */
#include "ops/ops.h"

#include <string.h>

static kn_status prep_out(const char *op, kn_arena *A, const kn_tensor *like, kn_tensor *y) {
    return kn_op_out(op, A, like->ndim, like->shape, y);
}

static kn_status check_in(const char *op, const char *what, const kn_tensor *t) {
    return kn_op_in(op, what, t, -1);
}

/* Elementwise work is split in blocks of 64 elements so that which elements take the vector loop
 * and which the scalar tail never depends on the thread count. */
#define EW_BLOCK 64
static void ew_range(int64_t n, int ith, int nth, int64_t *b, int64_t *e) {
    int64_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
    kn_split_range(nb, ith, nth, b, e);
    *b *= EW_BLOCK;
    *e = KN_MIN(*e * EW_BLOCK, n);
}

typedef struct {
    int op; /* 0 add, 1 mul */
    const float *a, *b;
    float *y;
    int64_t rows, inner; /* a viewed as (rows, inner) with inner = a's last dim */
    int ndim;
    int64_t shape[KN_MAX_DIMS], bstride[KN_MAX_DIMS];
} binop_ctx;

static void binop_same_task(int ith, int nth, void *p) {
    binop_ctx *c = p;
    int64_t n = c->rows * c->inner, b, e;
    ew_range(n, ith, nth, &b, &e);
    const float *x = c->a, *z = c->b;
    float *y = c->y;
    if (c->op == 0)
        for (int64_t i = b; i < e; i++) y[i] = x[i] + z[i];
    else
        for (int64_t i = b; i < e; i++) y[i] = x[i] * z[i];
}

static void binop_bcast_task(int ith, int nth, void *p) {
    binop_ctx *c = p;
    int64_t r0, r1;
    kn_split_range(c->rows, ith, nth, &r0, &r1);
    int d = c->ndim;
    int64_t bs_last = c->bstride[d - 1];
    for (int64_t r = r0; r < r1; r++) {
        /* offset of b for row r: unravel r over dims 0..d-2 */
        int64_t off = 0, q = r;
        for (int k = d - 2; k >= 0; k--) {
            off += (q % c->shape[k]) * c->bstride[k];
            q /= c->shape[k];
        }
        const float *x = c->a + r * c->inner;
        const float *z = c->b + off;
        float *y = c->y + r * c->inner;
        int64_t n = c->inner;
        if (bs_last == 0) {
            float v = z[0];
            if (c->op == 0)
                for (int64_t i = 0; i < n; i++) y[i] = x[i] + v;
            else
                for (int64_t i = 0; i < n; i++) y[i] = x[i] * v;
        } else {
            if (c->op == 0)
                for (int64_t i = 0; i < n; i++) y[i] = x[i] + z[i];
            else
                for (int64_t i = 0; i < n; i++) y[i] = x[i] * z[i];
        }
    }
}

static kn_status binop(const char *op, int which, kn_arena *A, const kn_tensor *a, const kn_tensor *b,
                       kn_tensor *y) {
    char s1[96], s2[96];
    KN_TRY(check_in(op, "a", a));
    KN_TRY(check_in(op, "b", b));
    binop_ctx c = {0};
    c.op = which;
    c.ndim = a->ndim > 0 ? a->ndim : 1;
    for (int k = 0; k < KN_MAX_DIMS; k++) c.shape[k] = 1;
    for (int k = 0; k < a->ndim; k++) c.shape[k] = a->shape[k];
    int same = kn_tensor_same_shape(a, b) || (kn_tensor_numel(a) == kn_tensor_numel(b) && a->ndim <= 1 && b->ndim <= 1);
    int ok = same;
    if (!ok && b->ndim <= a->ndim) { /* rule 1: trailing */
        ok = 1;
        int64_t st = 1;
        for (int k = b->ndim - 1; k >= 0; k--) {
            int ka = a->ndim - b->ndim + k;
            if (b->shape[k] == a->shape[ka]) {
                c.bstride[ka] = b->shape[k] == 1 ? 0 : st;
            } else if (b->shape[k] == 1) {
                c.bstride[ka] = 0;
            } else {
                ok = 0;
                break;
            }
            st *= b->shape[k];
        }
        if (ok)
            for (int k = 0; k < a->ndim - b->ndim; k++) c.bstride[k] = 0;
    }
    if (!ok && b->ndim < a->ndim) { /* rule 2: prefix */
        ok = 1;
        for (int k = 0; k < b->ndim; k++)
            if (b->shape[k] != a->shape[k]) ok = 0;
        if (ok) {
            int64_t st = 1;
            for (int k = a->ndim - 1; k >= 0; k--) {
                c.bstride[k] = k < b->ndim ? st : 0;
                if (k < b->ndim) st *= b->shape[k];
            }
        }
    }
    if (!ok && b->ndim == 1 && a->ndim >= 3 && b->shape[0] == a->shape[1]) { /* rule 3: channel */
        ok = 1;
        for (int k = 0; k < a->ndim; k++) c.bstride[k] = k == 1 ? 1 : 0;
    }
    if (!ok)
        return kn_fail(KN_ERR_SHAPE, "%s: b %s does not broadcast to a %s", op, kn_shape_str(b, s2, sizeof s2),
                       kn_shape_str(a, s1, sizeof s1));
    KN_TRY(prep_out(op, A, a, y));
    c.a = a->data;
    c.b = b->data;
    c.y = y->data;
    c.inner = c.shape[c.ndim - 1];
    c.rows = c.inner ? kn_tensor_numel(a) / c.inner : 0;
    if (kn_tensor_numel(a) == 0)
        return KN_OK;
    kn_parallel(same ? binop_same_task : binop_bcast_task, &c);
    return KN_OK;
}

kn_status kn_add(kn_arena *A, const kn_tensor *a, const kn_tensor *b, kn_tensor *y) {
    return binop("add", 0, A, a, b, y);
}

kn_status kn_mul(kn_arena *A, const kn_tensor *a, const kn_tensor *b, kn_tensor *y) {
    return binop("mul", 1, A, a, b, y);
}

typedef struct {
    const float *x;
    float *y;
    float alpha, beta;
    int64_t n;
} axpby_ctx;

static void axpby_task(int ith, int nth, void *p) {
    axpby_ctx *c = p;
    int64_t b, e;
    ew_range(c->n, ith, nth, &b, &e);
    const float *x = c->x;
    float *y = c->y;
    float al = c->alpha, be = c->beta;
    if (be == 0.0f) /* y may hold garbage (NaN) when beta = 0, as in BLAS */
        for (int64_t i = b; i < e; i++) y[i] = al * x[i];
    else
        for (int64_t i = b; i < e; i++) y[i] = al * x[i] + be * y[i];
}

kn_status kn_axpby(float alpha, const kn_tensor *x, float beta, kn_tensor *y) {
    char s1[96], s2[96];
    KN_TRY(check_in("axpby", "x", x));
    KN_TRY(check_in("axpby", "y", y));
    if (kn_tensor_numel(x) != kn_tensor_numel(y) || !kn_tensor_same_shape(x, y))
        return kn_fail(KN_ERR_SHAPE, "axpby: x %s and y %s differ in shape", kn_shape_str(x, s1, sizeof s1),
                       kn_shape_str(y, s2, sizeof s2));
    axpby_ctx c = {x->data, y->data, alpha, beta, kn_tensor_numel(x)};
    kn_parallel(axpby_task, &c);
    return KN_OK;
}

kn_status kn_scale(kn_arena *A, const kn_tensor *x, float s, kn_tensor *y) {
    KN_TRY(check_in("scale", "x", x));
    KN_TRY(prep_out("scale", A, x, y));
    axpby_ctx c = {x->data, y->data, s, 0.0f, kn_tensor_numel(x)};
    kn_parallel(axpby_task, &c);
    return KN_OK;
}
