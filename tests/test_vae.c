/* test_vae.c — AutoencoderKL encode and decode against diffusers 0.25
 * (shared/fixtures/diffusers/vae), with every recorded activation. */
#include "kt.h"

#include "io/model_load.h"
#include "models/vae.h"

typedef struct { kn_safetensors *ref; int checked; } hook_ctx;

static void check(kn_safetensors *ref, const char *key, const kn_tensor *t) {
    kn_tensor r;
    KT_CHECKF(kn_st_find(ref, key) >= 0, "fixture has no %s", key);
    if (kn_st_get(ref, key, &r) != KN_OK) return;
    KT_CHECKF(kn_tensor_same_shape(&r, t), "%s: shape differs", key);
    if (!kn_tensor_same_shape(&r, t)) return;
    int64_t n = kn_tensor_numel(t);
    double err = kt_max_abs_diff(t->data, r.data, n), tol = 1e-4 * kt_max_abs(r.data, n);
    KT_CHECKF(err <= tol, "%s: max err %.3g > %.3g", key, err, tol);
}

static void on_act(const char *name, const kn_tensor *t, void *user) {
    hook_ctx *h = user;
    char key[160];
    snprintf(key, sizeof key, "act.%s", name);
    if (kn_st_find(h->ref, key) < 0) return;
    check(h->ref, key, t);
    h->checked++;
}

KT_TEST(vae_encode_decode_match_diffusers) {
    char path[1024];
    kn_vae_config cfg;
    snprintf(path, sizeof path, "%s/diffusers/vae/config.json", kt_fixtures());
    KT_OK(kn_vae_config_load(path, &cfg));
    kn_vae *v = kn_vae_new(&cfg);
    KT_CHECKF(v != NULL, "%s", kn_last_error());
    snprintf(path, sizeof path, "%s/diffusers/vae/weights.safetensors", kt_fixtures());
    kn_safetensors *w = kn_st_open(path);
    KT_CHECKF(w != NULL, "%s", kn_last_error());
    if (!v || !w) { kn_vae_free(v); if (w) kn_st_close(w); return; }
    int unused = -1;
    KT_OK(kn_params_load(&v->P, &w, 1, &unused));
    KT_CHECK(unused == 0);
    kn_arena *A = kn_arena_new(64 << 20);
    for (int threads = 1; threads <= 2; threads++) {
        kn_set_threads(threads);
        snprintf(path, sizeof path, "%s/diffusers/vae/encode_case0.safetensors", kt_fixtures());
        kn_safetensors *enc = kn_st_open(path);
        snprintf(path, sizeof path, "%s/diffusers/vae/decode_case0.safetensors", kt_fixtures());
        kn_safetensors *dec = kn_st_open(path);
        KT_CHECK(enc && dec);
        if (!enc || !dec) break;
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_tensor x, z;
        KT_OK(kn_st_get(enc, "x", &x));
        hook_ctx he = {enc, 0}, hd = {dec, 0};
        kn_var *mean = NULL, *logvar = NULL;
        KT_OK(kn_vae_encode(&c, v, kn_var_wrap(&c, &x), &mean, &logvar, on_act, &he));
        if (mean && logvar) {
            check(enc, "mean", &mean->v);
            check(enc, "logvar", &logvar->v);
        }
        KT_CHECKF(he.checked >= 8, "only %d encoder activations compared", he.checked);
        KT_OK(kn_st_get(dec, "z", &z));
        kn_var *y = kn_vae_decode(&c, v, kn_var_wrap(&c, &z), on_act, &hd);
        KT_OK(kn_ctx_status(&c));
        if (y) check(dec, "sample", &y->v);
        KT_CHECKF(hd.checked >= 8, "only %d decoder activations compared", hd.checked);
        kn_arena_reset(A, 0);
        kn_st_close(enc);
        kn_st_close(dec);
    }
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(w);
    kn_vae_free(v);
}
