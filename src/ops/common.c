/* common.c — argument handling shared by the ops. */
#include "ops/ops.h"

kn_status kn_op_in(const char *op, const char *what, const kn_tensor *t, int ndim) {
    KN_TRY(kn_check_f32(op, what, t, ndim));
    if (!kn_tensor_is_contiguous(t))
        return kn_fail(KN_ERR_SHAPE, "%s: %s must be contiguous", op, what);
    return KN_OK;
}

kn_status kn_op_out(const char *op, kn_arena *A, int ndim, const int64_t *shape, kn_tensor *y) {
    char s1[96], s2[96];
    if (!y)
        return kn_fail(KN_ERR_ARG, "%s: output tensor is missing", op);
    if (!y->data) {
        if (!A)
            return kn_fail(KN_ERR_ARG, "%s: output has no data and no arena was given", op);
        return kn_tensor_alloc(A, y, KN_F32, ndim, shape);
    }
    kn_tensor want = kn_tensor_view(KN_F32, ndim, shape, NULL);
    if (y->dtype != KN_F32)
        return kn_fail(KN_ERR_DTYPE, "%s: output must be F32, got %s", op, kn_dtype_name(y->dtype));
    if (!kn_tensor_same_shape(y, &want))
        return kn_fail(KN_ERR_SHAPE, "%s: output is %s, expected %s", op, kn_shape_str(y, s1, sizeof s1),
                       kn_shape_str(&want, s2, sizeof s2));
    if (!kn_tensor_is_contiguous(y))
        return kn_fail(KN_ERR_SHAPE, "%s: output must be contiguous", op);
    return KN_OK;
}
