/* test_unet3d.c — UNet3DConditionModel against diffusers 0.25 (shared/fixtures/diffusers/unet3d):
 * the output and every forward-hook activation the fixture recorded. */
#include "kt.h"

#include "io/model_load.h"
#include "models/unet3d.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { kn_safetensors *acts; int checked, failed; } hook_ctx;

static void on_act(const char *name, const kn_tensor *t, void *user) {
    hook_ctx *h = user;
    char key[160];
    snprintf(key, sizeof key, "act.%s", name);
    if (kn_st_find(h->acts, key) < 0)
        return;
    kn_tensor ref;
    if (kn_st_get(h->acts, key, &ref) != KN_OK || kn_tensor_numel(&ref) != kn_tensor_numel(t)) {
        kt_fail(__FILE__, __LINE__, "%s: shape differs from the fixture", key);
        h->failed++;
        return;
    }
    int64_t n = kn_tensor_numel(t);
    double err = kt_max_abs_diff(t->data, ref.data, n), tol = 1e-4 * kt_max_abs(ref.data, n);
    h->checked++;
    if (!(err <= tol)) {
        h->failed++;
        kt_fail(__FILE__, __LINE__, "%s: max err %.3g > tol %.3g", key, err, tol);
    }
}

static kn_unet3d *load_fixture_unet(kn_safetensors **wst) {
    char path[1024];
    kn_unet3d_config cfg;
    snprintf(path, sizeof path, "%s/diffusers/unet3d/config.json", kt_fixtures());
    KT_OK(kn_unet3d_config_load(path, &cfg));
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    snprintf(path, sizeof path, "%s/diffusers/unet3d/weights.safetensors", kt_fixtures());
    *wst = kn_st_open(path);
    KT_CHECKF(*wst != NULL, "%s", kn_last_error());
    if (!u || !*wst) return u;
    int unused = -1;
    KT_OK(kn_params_load(&u->P, wst, 1, &unused));
    KT_CHECKF(unused == 0, "%d weights in the file were not used", unused);
    return u;
}

KT_TEST(unet3d_matches_diffusers_output_and_activations) {
    kn_safetensors *wst = NULL;
    kn_unet3d *u = load_fixture_unet(&wst);
    char path[1024];
    snprintf(path, sizeof path, "%s/diffusers/unet3d/io_case0.safetensors", kt_fixtures());
    kn_safetensors *io = kn_st_open(path);
    snprintf(path, sizeof path, "%s/diffusers/unet3d/act_case0.safetensors", kt_fixtures());
    kn_safetensors *acts = kn_st_open(path);
    KT_CHECK(io && acts);
    if (!u || !io || !acts) goto out;
    kn_tensor sample, ts, text, ref;
    KT_OK(kn_st_get(io, "sample", &sample));
    KT_OK(kn_st_get(io, "timestep", &ts));
    KT_OK(kn_st_get(io, "encoder_hidden_states", &text));
    KT_OK(kn_st_get(io, "out.sample", &ref));
    int64_t B = sample.shape[0];
    float tsf[16];
    for (int64_t i = 0; i < B; i++)
        tsf[i] = (float)(ts.dtype == KN_I64 ? ((int64_t *)ts.data)[kn_tensor_numel(&ts) == 1 ? 0 : i]
                                            : ((float *)ts.data)[kn_tensor_numel(&ts) == 1 ? 0 : i]);
    for (int threads = 1; threads <= 2; threads++) {
        kn_set_threads(threads);
        kn_arena *A = kn_arena_new(256 << 20);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        hook_ctx h = {acts, 0, 0};
        kn_var *x = kn_var_wrap(&c, &sample), *t = kn_var_wrap(&c, &text);
        kn_var *y = kn_unet3d_forward(&c, u, x, tsf, t, threads == 1 ? on_act : NULL, &h);
        KT_OK(kn_ctx_status(&c));
        if (y) {
            KT_CHECK(kn_tensor_same_shape(&y->v, &ref));
            int64_t n = kn_tensor_numel(&ref);
            double err = kt_max_abs_diff(y->v.data, ref.data, n), tol = 1e-4 * kt_max_abs(ref.data, n);
            KT_CHECKF(err <= tol, "threads %d: out.sample max err %.3g > %.3g", threads, err, tol);
        }
        if (threads == 1)
            KT_CHECKF(h.checked >= 40, "only %d activations compared", h.checked);
        kn_arena_free(A);
    }
    kn_set_threads(1);
out:
    if (io) kn_st_close(io);
    if (acts) kn_st_close(acts);
    if (wst) kn_st_close(wst);
    kn_unet3d_free(u);
}

/* The UNet runs on sizes the fixtures do not cover: H, W not divisible by 8 (the upsamplers then
 * resize to the skip's size), one frame (image mode), per-sample timesteps; and a sample's output
 * does not depend on the other samples of its batch. */
KT_TEST(unet3d_odd_sizes_single_frame_and_batch_independence) {
    kn_unet3d_config cfg = kn_unet3d_config_default();
    cfg.nblocks = 3;
    cfg.block_out_channels[0] = 8;
    cfg.block_out_channels[1] = 16;
    cfg.block_out_channels[2] = 16;
    cfg.down_types[0] = cfg.down_types[1] = KN_BLOCK_CROSS_ATTN_DOWN;
    cfg.down_types[2] = KN_BLOCK_DOWN;
    cfg.up_types[0] = KN_BLOCK_UP;
    cfg.up_types[1] = cfg.up_types[2] = KN_BLOCK_CROSS_ATTN_UP;
    cfg.layers_per_block = 1;
    cfg.norm_num_groups = 4;
    cfg.attention_head_dim = 4;
    cfg.cross_attention_dim = 12;
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (!u) return;
    kn_params_init_default(&u->P, 5);
    kn_arena *A = kn_arena_new(128 << 20);
    int sizes[3][3] = {{3, 10, 14}, {1, 9, 7}, {2, 5, 5}}; /* T, H, W */
    for (int k = 0; k < 3; k++) {
        int T = sizes[k][0], H = sizes[k][1], W = sizes[k][2];
        int64_t n1 = 4 * T * H * W;
        float *x = malloc(sizeof(float) * 2 * n1), *txt = malloc(sizeof(float) * 2 * 5 * 12);
        kn_randn_fill(x, 2 * n1, 10 + k, 0);
        kn_randn_fill(txt, 2 * 5 * 12, 20 + k, 0);
        float ts[2] = {981.0f, 17.0f};
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){2, 4, T, H, W}, x);
        kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){2, 5, 12}, txt);
        kn_var *y2 = kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tx), ts, kn_var_wrap(&c, &tt), NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        if (!y2) { free(x); free(txt); continue; }
        KT_CHECK(kn_tensor_same_shape(&y2->v, &tx));
        int finite = 1;
        for (int64_t i = 0; i < 2 * n1; i++) finite &= isfinite(((float *)y2->v.data)[i]);
        KT_CHECKF(finite, "T=%d %dx%d: non-finite output", T, H, W);
        /* sample 1 alone, with its own timestep, gives the same numbers */
        kn_tensor tx1 = kn_tensor_view(KN_F32, 5, (int64_t[]){1, 4, T, H, W}, x + n1);
        kn_tensor tt1 = kn_tensor_view(KN_F32, 3, (int64_t[]){1, 5, 12}, txt + 5 * 12);
        kn_var *y1 = kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tx1), ts + 1, kn_var_wrap(&c, &tt1), NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        if (y1) {
            double d = kt_max_abs_diff((float *)y2->v.data + n1, y1->v.data, n1);
            KT_CHECKF(d <= 1e-5 * (kt_max_abs(y1->v.data, n1) + 1), "T=%d %dx%d: batch changes sample 1 by %g", T, H,
                      W, d);
        }
        free(x);
        free(txt);
    }
    /* a wrong text width is an error naming the shapes, not a crash */
    float x[4 * 2 * 8 * 8] = {0}, t[3 * 7] = {0}, ts = 1;
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){1, 4, 2, 8, 8}, x);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){1, 3, 7}, t);
    KT_CHECK(kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tx), &ts, kn_var_wrap(&c, &tt), NULL, NULL) == NULL);
    KT_CHECK(kn_ctx_status(&c) == KN_ERR_SHAPE && strstr(kn_last_error(), "(1,3,7)") != NULL);
    kn_arena_free(A);
    kn_unet3d_free(u);
}
