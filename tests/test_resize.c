/* test_resize.c — nearest / bilinear resize, linear resize in time, avg pool and strided subsample
 * against PyTorch (tests/data/ops_resize.safetensors from dev/ref_ops.py), adjoint checks of every
 * backward (the ops are linear, so <op(x), dy> = <x, op_backward(dy)> is the exact gradient test),
 * thread invariance and errors. */
#include "kt.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

#define RS_FX "tests/data/ops_resize.safetensors"

static kn_tensor fx(kn_safetensors *st, const char *name) {
    kn_tensor t;
    memset(&t, 0, sizeof t);
    if (!st || kn_st_get(st, name, &t) != KN_OK || t.dtype != KN_F32) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing: %s", name, kn_last_error());
        memset(&t, 0, sizeof t);
    }
    return t;
}

enum { OP_NEAREST, OP_BILINEAR, OP_TIME, OP_POOL, OP_STRIDE };

/* Runs op forward into y (allocated from A with shape of `want`) and backward of dy into a zeroed dx. */
static void run_op(kn_arena *A, int op, int64_t p1, int64_t p2, const kn_tensor *x, const kn_tensor *dy,
                   kn_tensor *y, kn_tensor *dx) {
    y->data = NULL;
    switch (op) {
    case OP_NEAREST: KT_OK(kn_resize_nearest(A, x, p1, p2, y)); break;
    case OP_BILINEAR: KT_OK(kn_resize_bilinear(A, x, p1, p2, y)); break;
    case OP_TIME: KT_OK(kn_resize_time_linear(A, x, p1, p2, y)); break;
    case OP_POOL: KT_OK(kn_avg_pool2d(A, x, (int)p1, y)); break;
    default: KT_OK(kn_downsample_stride(A, x, (int)p1, y)); break;
    }
    KT_OK(kn_tensor_zeros(A, dx, KN_F32, x->ndim, x->shape));
    if (!dy) return;
    switch (op) {
    case OP_NEAREST: KT_OK(kn_resize_nearest_backward(dy, dx)); break;
    case OP_BILINEAR: KT_OK(kn_resize_bilinear_backward(dy, dx)); break;
    case OP_TIME: KT_OK(kn_resize_time_linear_backward(dy, p1, p2, dx)); break;
    case OP_POOL: KT_OK(kn_avg_pool2d_backward(dy, (int)p1, dx)); break;
    default: KT_OK(kn_downsample_stride_backward(dy, (int)p1, dx)); break;
    }
}

static void check_fx(kn_safetensors *st, kn_arena *A, int op, int64_t p1, int64_t p2, const char *xname,
                     const char *prefix) {
    char nm[96];
    kn_tensor x = fx(st, xname);
    snprintf(nm, sizeof nm, "%s_y", prefix);
    kn_tensor yr = fx(st, nm);
    snprintf(nm, sizeof nm, "%s_dy", prefix);
    kn_tensor dy = fx(st, nm);
    snprintf(nm, sizeof nm, "%s_dx", prefix);
    kn_tensor dxr = fx(st, nm);
    if (!x.data || !yr.data || !dy.data || !dxr.data) return;
    kn_tensor y, dx;
    run_op(A, op, p1, p2, &x, &dy, &y, &dx);
    KT_CHECKF(kn_tensor_same_shape(&y, &yr), "%s: output shape differs", prefix);
    if (!kn_tensor_same_shape(&y, &yr)) return;
    double e = kt_max_abs_diff(y.data, yr.data, kn_tensor_numel(&yr));
    KT_CHECKF(e < 2e-6, "%s forward max diff %g", prefix, e);
    e = kt_max_abs_diff(dx.data, dxr.data, kn_tensor_numel(&dxr));
    KT_CHECKF(e < 1e-5, "%s backward max diff %g", prefix, e);
}

KT_TEST(resize_and_pool_match_torch) {
    kn_safetensors *st = kn_st_open(RS_FX);
    KT_CHECKF(st != NULL, "cannot open %s: %s", RS_FX, kn_last_error());
    if (!st) return;
    kn_arena *A = kn_arena_new(8 << 20);
    static const int64_t sizes[4][2] = {{10, 14}, {3, 4}, {7, 11}, {8, 5}};
    for (int s = 0; s < 4; s++) {
        char p[64];
        snprintf(p, sizeof p, "nearest_%lldx%lld", (long long)sizes[s][0], (long long)sizes[s][1]);
        check_fx(st, A, OP_NEAREST, sizes[s][0], sizes[s][1], "x", p);
        snprintf(p, sizeof p, "bilinear_%lldx%lld", (long long)sizes[s][0], (long long)sizes[s][1]);
        check_fx(st, A, OP_BILINEAR, sizes[s][0], sizes[s][1], "x", p);
    }
    static const int64_t tos[3] = {5, 2, 7};
    for (int s = 0; s < 3; s++) {
        char p[64];
        snprintf(p, sizeof p, "time_%lld", (long long)tos[s]);
        check_fx(st, A, OP_TIME, 3, tos[s], "time_x", p);
    }
    check_fx(st, A, OP_POOL, 2, 0, "pool_x", "pool2");
    check_fx(st, A, OP_POOL, 3, 0, "pool_x", "pool3");
    check_fx(st, A, OP_STRIDE, 2, 0, "pool_x", "stride2");
    check_fx(st, A, OP_STRIDE, 3, 0, "pool_x", "stride3");
    kn_arena_free(A);
    kn_st_close(st);
}

/* <op(x), r> == <x, op_backward(r)> for random x, r (in double). */
KT_TEST(resize_backward_is_exact_adjoint) {
    kn_arena *A = kn_arena_new(16 << 20);
    struct { int op; int64_t p1, p2; int64_t shape[4]; } cases[] = {
        {OP_NEAREST, 13, 5, {2, 3, 6, 9}},  {OP_NEAREST, 12, 18, {1, 2, 6, 9}}, {OP_BILINEAR, 13, 5, {2, 3, 6, 9}},
        {OP_BILINEAR, 4, 23, {1, 2, 7, 9}}, {OP_BILINEAR, 12, 18, {1, 2, 6, 9}}, {OP_TIME, 4, 9, {8, 2, 3, 5}},
        {OP_TIME, 5, 3, {10, 1, 2, 3}},     {OP_POOL, 2, 0, {2, 3, 8, 7}},       {OP_STRIDE, 3, 0, {2, 2, 8, 10}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t mark = kn_arena_mark(A);
        kn_tensor x, y, dx;
        KT_OK(kn_tensor_alloc(A, &x, KN_F32, 4, cases[c].shape));
        kn_randn_fill(x.data, kn_tensor_numel(&x), 100 + c, 0);
        run_op(A, cases[c].op, cases[c].p1, cases[c].p2, &x, NULL, &y, &dx);
        kn_tensor r;
        KT_OK(kn_tensor_alloc(A, &r, KN_F32, y.ndim, y.shape));
        kn_randn_fill(r.data, kn_tensor_numel(&r), 200 + c, 0);
        run_op(A, cases[c].op, cases[c].p1, cases[c].p2, &x, &r, &y, &dx);
        double lhs = 0, rhs = 0;
        for (int64_t i = 0; i < kn_tensor_numel(&y); i++) lhs += (double)((float *)y.data)[i] * ((float *)r.data)[i];
        for (int64_t i = 0; i < kn_tensor_numel(&x); i++) rhs += (double)((float *)x.data)[i] * ((float *)dx.data)[i];
        KT_CHECKF(fabs(lhs - rhs) < 1e-4 * (1 + fabs(lhs)), "case %zu (op %d): <Ax,r> = %.8g, <x,A'r> = %.8g", c,
                  cases[c].op, lhs, rhs);
        kn_arena_reset(A, mark);
    }
    kn_arena_free(A);
}

KT_TEST(resize_backward_bitwise_same_for_1_2_3_threads) {
    kn_arena *A = kn_arena_new(32 << 20);
    int64_t shape[4] = {4, 5, 17, 13};
    kn_tensor x;
    KT_OK(kn_tensor_alloc(A, &x, KN_F32, 4, shape));
    kn_randn_fill(x.data, kn_tensor_numel(&x), 7, 0);
    int ops[3] = {OP_BILINEAR, OP_NEAREST, OP_TIME};
    int prev = kn_get_threads();
    for (int o = 0; o < 3; o++) {
        float *ref = NULL;
        int64_t n = kn_tensor_numel(&x);
        for (int t = 1; t <= 3; t++) {
            kn_set_threads(t);
            kn_tensor y, dx, r;
            int64_t p1 = ops[o] == OP_TIME ? 2 : 29, p2 = ops[o] == OP_TIME ? 5 : 7;
            run_op(A, ops[o], p1, p2, &x, NULL, &y, &dx);
            KT_OK(kn_tensor_alloc(A, &r, KN_F32, y.ndim, y.shape));
            kn_randn_fill(r.data, kn_tensor_numel(&r), 9, 0);
            run_op(A, ops[o], p1, p2, &x, &r, &y, &dx);
            if (!ref)
                ref = dx.data;
            else
                KT_CHECKF(memcmp(ref, dx.data, n * 4) == 0, "op %d backward differs at %d threads", ops[o], t);
        }
    }
    kn_set_threads(prev);
    kn_arena_free(A);
}

KT_TEST(resize_errors_name_op_and_shapes) {
    int64_t s[4] = {1, 2, 3, 4}, s3[3] = {2, 3, 4}, sb[4] = {1, 3, 6, 8};
    float buf[64] = {0}, big[144] = {0};
    kn_tensor x = kn_tensor_view(KN_F32, 4, s, buf), x3 = kn_tensor_view(KN_F32, 3, s3, buf);
    kn_tensor y = kn_tensor_view(KN_F32, 4, s, NULL);
    KT_CHECK(kn_resize_nearest(NULL, &x3, 4, 4, &y) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "resize_nearest") && strstr(kn_last_error(), "(2,3,4)"), "msg: %s", kn_last_error());
    KT_CHECK(kn_resize_bilinear(NULL, &x, 0, 4, &y) == KN_ERR_SHAPE);
    KT_CHECK(kn_resize_bilinear(NULL, &x, 4, 4, &y) == KN_ERR_ARG); /* no arena, no data */
    kn_tensor wrong = kn_tensor_view(KN_F32, 4, s, big);
    KT_CHECK(kn_resize_bilinear(NULL, &x, 4, 4, &wrong) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "(1,2,3,4)") && strstr(kn_last_error(), "(1,2,4,4)"), "msg: %s", kn_last_error());
    KT_CHECK(kn_avg_pool2d(NULL, &x, 5, &y) == KN_ERR_SHAPE);
    KT_CHECK(kn_avg_pool2d(NULL, &x, 0, &y) == KN_ERR_ARG);
    KT_CHECK(kn_resize_time_linear(NULL, &x, 2, 3, &y) == KN_ERR_SHAPE); /* N=1 not a multiple of T=2 */
    kn_tensor dxb = kn_tensor_view(KN_F32, 4, sb, big);
    KT_CHECK(kn_resize_nearest_backward(&x, &dxb) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "resize_nearest_backward"), "msg: %s", kn_last_error());
    KT_CHECK(kn_avg_pool2d_backward(&x, 2, &dxb) == KN_ERR_SHAPE);
}
