/* tensor.c — tensor descriptions, views, copies, concat and split. */
#include "core.h"

#include <string.h>

static const size_t dtype_sizes[KN_DTYPE_COUNT] = {4, 2, 2, 4, 8, 1};
static const char *dtype_names[KN_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64", "U8"};

size_t kn_dtype_size(kn_dtype t) { return (unsigned)t < KN_DTYPE_COUNT ? dtype_sizes[t] : 0; }
const char *kn_dtype_name(kn_dtype t) { return (unsigned)t < KN_DTYPE_COUNT ? dtype_names[t] : "?"; }

void kn_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i];
    }
}

kn_tensor kn_tensor_view(kn_dtype t, int ndim, const int64_t *shape, void *data) {
    kn_tensor x;
    memset(&x, 0, sizeof x);
    KN_ASSERT(ndim >= 0 && ndim <= KN_MAX_DIMS);
    x.dtype = t;
    x.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        x.shape[i] = shape[i];
    kn_contiguous_strides(ndim, x.shape, x.stride);
    x.data = data;
    return x;
}

int64_t kn_tensor_numel(const kn_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t kn_tensor_nbytes(const kn_tensor *t) { return (size_t)kn_tensor_numel(t) * kn_dtype_size(t->dtype); }

int kn_tensor_is_contiguous(const kn_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return 0;
        s *= t->shape[i];
    }
    return 1;
}

int kn_tensor_same_shape(const kn_tensor *a, const kn_tensor *b) {
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

char *kn_shape_str(const kn_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    if (n == 0)
        return buf;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, ")");
    return buf;
}

kn_status kn_check_f32(const char *op, const char *what, const kn_tensor *t, int ndim) {
    char s[96];
    if (!t || !t->data)
        return kn_fail(KN_ERR_ARG, "%s: %s is missing", op, what);
    if (t->dtype != KN_F32)
        return kn_fail(KN_ERR_DTYPE, "%s: %s must be F32, got %s", op, what, kn_dtype_name(t->dtype));
    if (ndim >= 0 && t->ndim != ndim)
        return kn_fail(KN_ERR_SHAPE, "%s: %s must have %d dims, got %s", op, what, ndim,
                       kn_shape_str(t, s, sizeof s));
    return KN_OK;
}

kn_status kn_tensor_permute(const kn_tensor *t, const int *perm, kn_tensor *out) {
    int seen[KN_MAX_DIMS] = {0};
    kn_tensor r = *t;
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= t->ndim || seen[p])
            return kn_fail(KN_ERR_ARG, "permute: invalid permutation for a %d-dim tensor", t->ndim);
        seen[p] = 1;
        r.shape[i] = t->shape[p];
        r.stride[i] = t->stride[p];
    }
    *out = r;
    return KN_OK;
}

kn_status kn_tensor_reshape(const kn_tensor *t, int ndim, const int64_t *shape, kn_tensor *out) {
    char s[96];
    if (ndim < 0 || ndim > KN_MAX_DIMS)
        return kn_fail(KN_ERR_ARG, "reshape: %d dims (max %d)", ndim, KN_MAX_DIMS);
    if (!kn_tensor_is_contiguous(t))
        return kn_fail(KN_ERR_ARG, "reshape: tensor %s is not contiguous", kn_shape_str(t, s, sizeof s));
    int64_t n = kn_tensor_numel(t), known = 1;
    int infer = -1;
    int64_t sh[KN_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return kn_fail(KN_ERR_ARG, "reshape: more than one -1");
            infer = i;
        } else if (shape[i] < 0) {
            return kn_fail(KN_ERR_ARG, "reshape: negative size");
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || n % known)
            return kn_fail(KN_ERR_SHAPE, "reshape: cannot infer -1 for %s", kn_shape_str(t, s, sizeof s));
        sh[infer] = n / known;
        known *= sh[infer];
    }
    if (known != n)
        return kn_fail(KN_ERR_SHAPE, "reshape: %s has %lld elements, target has %lld",
                       kn_shape_str(t, s, sizeof s), (long long)n, (long long)known);
    *out = kn_tensor_view(t->dtype, ndim, sh, t->data);
    return KN_OK;
}

kn_status kn_tensor_slice(const kn_tensor *t, int dim, int64_t start, int64_t end, kn_tensor *out) {
    char s[96];
    if (dim < 0 || dim >= t->ndim)
        return kn_fail(KN_ERR_ARG, "slice: dim %d out of range for %s", dim, kn_shape_str(t, s, sizeof s));
    if (start < 0 || end > t->shape[dim] || start > end)
        return kn_fail(KN_ERR_ARG, "slice: [%lld,%lld) out of range on dim %d of %s", (long long)start,
                       (long long)end, dim, kn_shape_str(t, s, sizeof s));
    kn_tensor r = *t;
    r.shape[dim] = end - start;
    if (t->data)
        r.data = (uint8_t *)t->data + (size_t)(start * t->stride[dim]) * kn_dtype_size(t->dtype);
    *out = r;
    return KN_OK;
}

static inline float load_f(const void *p, kn_dtype t) {
    switch (t) {
    case KN_F32: return *(const float *)p;
    case KN_F16: return kn_f16_to_f32(*(const uint16_t *)p);
    case KN_BF16: return kn_bf16_to_f32(*(const uint16_t *)p);
    default: return 0.0f;
    }
}

static inline void store_f(void *p, kn_dtype t, float v) {
    switch (t) {
    case KN_F32: *(float *)p = v; break;
    case KN_F16: *(uint16_t *)p = kn_f32_to_f16(v); break;
    case KN_BF16: *(uint16_t *)p = kn_f32_to_bf16(v); break;
    default: break;
    }
}

static int is_float(kn_dtype t) { return t == KN_F32 || t == KN_F16 || t == KN_BF16; }

kn_status kn_tensor_copy(kn_tensor *dst, const kn_tensor *src) {
    char a[96], b[96];
    if (!kn_tensor_same_shape(dst, src))
        return kn_fail(KN_ERR_SHAPE, "copy: shapes %s and %s differ", kn_shape_str(dst, a, sizeof a),
                       kn_shape_str(src, b, sizeof b));
    if (dst->dtype != src->dtype && !(is_float(dst->dtype) && is_float(src->dtype)))
        return kn_fail(KN_ERR_DTYPE, "copy: cannot convert %s to %s", kn_dtype_name(src->dtype),
                       kn_dtype_name(dst->dtype));
    int64_t n = kn_tensor_numel(src);
    size_t es = kn_dtype_size(src->dtype), ed = kn_dtype_size(dst->dtype);
    if (n == 0)
        return KN_OK;
    if (kn_tensor_is_contiguous(dst) && kn_tensor_is_contiguous(src)) {
        if (dst->dtype == src->dtype) {
            memmove(dst->data, src->data, (size_t)n * es);
            return KN_OK;
        }
        if (src->dtype == KN_F32 && dst->dtype == KN_F16) { kn_f32_to_f16_row(src->data, dst->data, n); return KN_OK; }
        if (src->dtype == KN_F16 && dst->dtype == KN_F32) { kn_f16_to_f32_row(src->data, dst->data, n); return KN_OK; }
        if (src->dtype == KN_F32 && dst->dtype == KN_BF16) { kn_f32_to_bf16_row(src->data, dst->data, n); return KN_OK; }
        if (src->dtype == KN_BF16 && dst->dtype == KN_F32) { kn_bf16_to_f32_row(src->data, dst->data, n); return KN_OK; }
    }
    /* general strided walk over a multi-index */
    int nd = src->ndim;
    int64_t idx[KN_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t os = 0, od = 0;
        for (int d = 0; d < nd; d++) {
            os += idx[d] * src->stride[d];
            od += idx[d] * dst->stride[d];
        }
        const uint8_t *ps = (const uint8_t *)src->data + (size_t)os * es;
        uint8_t *pd = (uint8_t *)dst->data + (size_t)od * ed;
        if (dst->dtype == src->dtype)
            memcpy(pd, ps, es);
        else
            store_f(pd, dst->dtype, load_f(ps, src->dtype));
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < src->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return KN_OK;
}

kn_status kn_tensor_alloc(kn_arena *A, kn_tensor *t, kn_dtype dt, int ndim, const int64_t *shape) {
    if ((unsigned)dt >= KN_DTYPE_COUNT)
        return kn_fail(KN_ERR_DTYPE, "alloc: unknown dtype %d", (int)dt);
    if (ndim < 0 || ndim > KN_MAX_DIMS)
        return kn_fail(KN_ERR_ARG, "alloc: %d dims (max %d)", ndim, KN_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return kn_fail(KN_ERR_ARG, "alloc: negative size on dim %d", i);
    *t = kn_tensor_view(dt, ndim, shape, NULL);
    size_t nb = kn_tensor_nbytes(t);
    t->data = A ? kn_arena_alloc(A, nb) : kn_aligned_alloc(nb);
    if (!t->data) {
        if (!A)
            kn_fail(KN_ERR_NOMEM, "alloc: cannot allocate %zu bytes", nb);
        return KN_ERR_NOMEM;
    }
    return KN_OK;
}

kn_status kn_tensor_zeros(kn_arena *A, kn_tensor *t, kn_dtype dt, int ndim, const int64_t *shape) {
    KN_TRY(kn_tensor_alloc(A, t, dt, ndim, shape));
    memset(t->data, 0, kn_tensor_nbytes(t));
    return KN_OK;
}

void kn_tensor_free(kn_tensor *t) {
    if (t && t->data) {
        kn_aligned_free(t->data);
        t->data = NULL;
    }
}

kn_status kn_tensor_concat(kn_arena *A, const kn_tensor *const *ts, int n, int dim, kn_tensor *out) {
    char a[96], b[96];
    if (n <= 0)
        return kn_fail(KN_ERR_ARG, "concat: no inputs");
    const kn_tensor *t0 = ts[0];
    if (dim < 0 || dim >= t0->ndim)
        return kn_fail(KN_ERR_ARG, "concat: dim %d out of range for %s", dim, kn_shape_str(t0, a, sizeof a));
    int64_t shape[KN_MAX_DIMS];
    for (int d = 0; d < t0->ndim; d++)
        shape[d] = t0->shape[d];
    shape[dim] = 0;
    for (int i = 0; i < n; i++) {
        const kn_tensor *t = ts[i];
        if (t->ndim != t0->ndim || t->dtype != t0->dtype)
            return kn_fail(KN_ERR_SHAPE, "concat: input %d %s %s does not match %s %s", i, kn_dtype_name(t->dtype),
                           kn_shape_str(t, a, sizeof a), kn_dtype_name(t0->dtype), kn_shape_str(t0, b, sizeof b));
        for (int d = 0; d < t0->ndim; d++)
            if (d != dim && t->shape[d] != t0->shape[d])
                return kn_fail(KN_ERR_SHAPE, "concat: input %d %s does not match %s off dim %d", i,
                               kn_shape_str(t, a, sizeof a), kn_shape_str(t0, b, sizeof b), dim);
        shape[dim] += t->shape[dim];
    }
    if (!out->data) {
        KN_TRY(kn_tensor_alloc(A, out, t0->dtype, t0->ndim, shape));
    } else {
        kn_tensor want = kn_tensor_view(t0->dtype, t0->ndim, shape, NULL);
        if (!kn_tensor_same_shape(out, &want) || out->dtype != t0->dtype)
            return kn_fail(KN_ERR_SHAPE, "concat: output %s should be %s", kn_shape_str(out, a, sizeof a),
                           kn_shape_str(&want, b, sizeof b));
    }
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        kn_tensor dst;
        KN_TRY(kn_tensor_slice(out, dim, off, off + ts[i]->shape[dim], &dst));
        KN_TRY(kn_tensor_copy(&dst, ts[i]));
        off += ts[i]->shape[dim];
    }
    return KN_OK;
}

kn_status kn_tensor_split(const kn_tensor *t, int dim, int n, const int64_t *sizes, kn_tensor *outs) {
    char a[96];
    if (dim < 0 || dim >= t->ndim)
        return kn_fail(KN_ERR_ARG, "split: dim %d out of range for %s", dim, kn_shape_str(t, a, sizeof a));
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 0)
            return kn_fail(KN_ERR_ARG, "split: negative size");
        total += sizes[i];
    }
    if (total != t->shape[dim])
        return kn_fail(KN_ERR_SHAPE, "split: sizes sum to %lld, dim %d of %s is %lld", (long long)total, dim,
                       kn_shape_str(t, a, sizeof a), (long long)t->shape[dim]);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        KN_TRY(kn_tensor_slice(t, dim, off, off + sizes[i], &outs[i]));
        off += sizes[i];
    }
    return KN_OK;
}
