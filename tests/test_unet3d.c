/* test_unet3d.c — UNet3DConditionModel against diffusers 0.25 (shared/fixtures/diffusers/unet3d):
 * the output and every forward-hook activation the fixture recorded. */
#include "kt.h"

#include "io/model_load.h"
#include "models/unet3d.h"

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
