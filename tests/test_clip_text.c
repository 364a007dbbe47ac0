/* test_clip_text.c — CLIPTextModel (quick_gelu and gelu variants) against transformers 4.33:
 * last_hidden_state, pooler_output and every hidden state. */
#include "kt.h"

#include "io/model_load.h"
#include "models/clip_text.h"

typedef struct { kn_safetensors *io; int checked; } hook_ctx;

static void check(kn_safetensors *io, const char *key, const kn_tensor *t, double rel) {
    kn_tensor r;
    KT_CHECKF(kn_st_get(io, key, &r) == KN_OK, "fixture has no %s", key);
    if (kn_st_find(io, key) < 0) return;
    KT_CHECKF(kn_tensor_numel(&r) == kn_tensor_numel(t), "%s: size differs", key);
    if (kn_tensor_numel(&r) != kn_tensor_numel(t)) return;
    int64_t n = kn_tensor_numel(t);
    double m = kt_max_abs(r.data, n);
    double err = kt_max_abs_diff(t->data, r.data, n), tol = rel * (m > 1 ? m : 1);
    KT_CHECKF(err <= tol, "%s: max err %.3g > %.3g", key, err, tol);
}

static void on_hidden(int i, const kn_tensor *t, void *user) {
    hook_ctx *h = user;
    char key[64];
    snprintf(key, sizeof key, "hidden_states.%d", i);
    check(h->io, key, t, 1e-4);
    h->checked++;
}

static void run(const char *variant) {
    char path[1024];
    kn_clip_text_config cfg;
    snprintf(path, sizeof path, "%s/diffusers/%s/config.json", kt_fixtures(), variant);
    KT_OK(kn_clip_text_config_load(path, &cfg));
    kn_clip_text *m = kn_clip_text_new(&cfg);
    snprintf(path, sizeof path, "%s/diffusers/%s/weights.safetensors", kt_fixtures(), variant);
    kn_safetensors *w = kn_st_open(path);
    snprintf(path, sizeof path, "%s/diffusers/%s/io.safetensors", kt_fixtures(), variant);
    kn_safetensors *io = kn_st_open(path);
    KT_CHECK(m && w && io);
    if (m && w && io) {
        KT_OK(kn_params_load(&m->P, &w, 1, NULL));
        kn_tensor idt;
        KT_OK(kn_st_get(io, "input_ids", &idt));
        int64_t B = idt.shape[0], L = idt.shape[1];
        int32_t *ids = malloc((size_t)(B * L) * sizeof(int32_t));
        for (int64_t i = 0; i < B * L; i++) ids[i] = (int32_t)((int64_t *)idt.data)[i];
        kn_arena *A = kn_arena_new(32 << 20);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        hook_ctx h = {io, 0};
        kn_var *pooled = NULL;
        kn_var *out = kn_clip_text_forward(&c, m, ids, B, L, 0, &pooled, on_hidden, &h);
        KT_OK(kn_ctx_status(&c));
        if (out) check(io, "last_hidden_state", &out->v, 1e-4);
        if (pooled) check(io, "pooler_output", &pooled->v, 1e-4);
        KT_CHECK(h.checked == cfg.num_hidden_layers + 1);
        /* clip skip 1 = hidden_states[-2] through final_layer_norm: differs from the normal output */
        kn_var *sk = kn_clip_text_forward(&c, m, ids, B, L, 1, NULL, NULL, NULL);
        KT_CHECK(sk && out && kt_max_abs_diff(sk->v.data, out->v.data, B * L * cfg.hidden_size) > 1e-3);
        /* bad ids are an error, not a crash */
        ids[3] = cfg.vocab_size;
        kn_ctx_init(&c, A, NULL);
        KT_CHECK(kn_clip_text_forward(&c, m, ids, B, L, 0, NULL, NULL, NULL) == NULL);
        KT_CHECK(kn_ctx_status(&c) == KN_ERR_ARG);
        free(ids);
        kn_arena_free(A);
    }
    if (w) kn_st_close(w);
    if (io) kn_st_close(io);
    kn_clip_text_free(m);
}

KT_TEST(clip_text_quickgelu_matches_transformers) { run("clip_text_quickgelu"); }
KT_TEST(clip_text_gelu_matches_transformers) { run("clip_text_gelu"); }
