/* test_grad_checkpointing.c — gradient checkpointing (recomputation) of UNet3D block layers gives
 * the same loss and gradients as keeping every activation, with a lower arena peak. */
#include "kt.h"

#include "models/unet3d.h"

#include <string.h>

static double run(kn_unet3d *u, int ckpt, const int *is_image, float *grads, size_t *peak) {
    kn_arena *A = kn_arena_new((size_t)256 << 20);
    kn_tape *tape = kn_tape_new();
    kn_params_zero_grads(&u->P);
    kn_ctx c;
    kn_ctx_init(&c, A, tape);
    c.checkpointing = ckpt;
    enum { B = 2, T = 3, H = 8, W = 8 };
    float x[B * 4 * T * H * W], txt[B * 5 * 12], ts[B] = {700.0f, 30.0f};
    kn_randn_fill(x, B * 4 * T * H * W, 11, 0);
    kn_randn_fill(txt, B * 5 * 12, 12, 0);
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){B, 4, T, H, W}, x);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){B, 5, 12}, txt);
    kn_unet3d_cond cond = {0};
    cond.is_image = is_image;
    kn_var *y = kn_unet3d_forward_ex(&c, u, kn_var_wrap(&c, &tx), ts, kn_var_wrap(&c, &tt), is_image ? &cond : NULL,
                                     NULL, NULL);
    double loss = 0;
    if (y) {
        /* loss = sum(y * r) for a fixed r: its gradient is r */
        KT_OK(kn_tensor_zeros(A, &y->g, KN_F32, y->v.ndim, y->v.shape));
        int64_t n = kn_tensor_numel(&y->v);
        kn_randn_fill(y->g.data, n, 13, 0);
        for (int64_t i = 0; i < n; i++) loss += (double)((float *)y->v.data)[i] * ((float *)y->g.data)[i];
        KT_OK(kn_backward(&c, y, 0.0f));
    }
    KT_OK(kn_ctx_status(&c));
    memcpy(grads, u->P.grad_block, u->P.numel * sizeof(float));
    *peak = kn_arena_peak(A);
    kn_tape_free(tape);
    kn_arena_free(A);
    return loss;
}

KT_TEST(grad_checkpointing_same_gradients_less_memory) {
    kn_unet3d_config cfg = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 4, 4, 12);
    cfg.layers_per_block = 2;
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECK(u != NULL);
    if (!u) return;
    kn_params_init_default(&u->P, 3);
    KT_OK(kn_params_alloc_grads(&u->P));
    float *g0 = malloc(u->P.numel * sizeof(float)), *g1 = malloc(u->P.numel * sizeof(float));
    for (int mixed = 0; mixed < 2; mixed++) {
        int img[2] = {0, 1};
        size_t p0, p1;
        double l0 = run(u, 0, mixed ? img : NULL, g0, &p0);
        double l1 = run(u, 1, mixed ? img : NULL, g1, &p1);
        KT_CHECK(l0 == l1);
        double d = kt_max_abs_diff(g0, g1, (int64_t)u->P.numel), m = kt_max_abs(g0, (int64_t)u->P.numel);
        KT_CHECKF(d <= 1e-6 * m && m > 0, "mixed=%d: gradients differ by %g (max %g)", mixed, d, m);
        KT_CHECKF(p1 < p0, "mixed=%d: arena peak %zu with checkpointing, %zu without", mixed, p1, p0);
    }
    free(g0);
    free(g1);
    kn_unet3d_free(u);
}
