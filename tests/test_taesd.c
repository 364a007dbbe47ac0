/* test_taesd.c — TAESD-family autoencoder (TAEF2 real weights) against upstream taesd.py
 * (shared/fixtures/taesd): latents, decoded images and the enc_after_13 / dec_after_5
 * intermediates within |c - ref| <= 1e-4 + 1e-4 |ref|, bitwise 1/2/3-thread determinism, the SD1
 * layout (4 latent channels, no GroupNorm branch) and load errors. */
#include "kt.h"

#include "io/tae_load.h"

#include <stdlib.h>
#include <string.h>

static const char *fx(char *buf, size_t n, const char *file) {
    snprintf(buf, n, "%s/taesd/%s", kt_fixtures(), file);
    return buf;
}

/* Per-element check |c - r| <= 1e-4 + 1e-4 |r| over tensors of the same numel. */
static void check_close(const char *what, const kn_tensor *c, const kn_tensor *r) {
    char a[96], b[96];
    if (kn_tensor_numel(c) != kn_tensor_numel(r) || r->dtype != KN_F32) {
        kt_fail(__FILE__, __LINE__, "%s: got %s, reference %s", what, kn_shape_str(c, a, sizeof a),
                kn_shape_str(r, b, sizeof b));
        return;
    }
    const float *x = c->data, *y = r->data;
    int64_t n = kn_tensor_numel(c), bad = 0, worst = 0;
    double wd = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]), tol = 1e-4 + 1e-4 * fabs((double)y[i]);
        if (!(d <= tol))
            bad++;
        if (!(d <= wd)) {
            wd = d;
            worst = i;
        }
    }
    KT_CHECKF(bad == 0, "%s: %lld of %lld elements off; worst |diff| %.3g at %lld (got %g, ref %g)", what,
              (long long)bad, (long long)n, wd, (long long)worst, x[worst], y[worst]);
}

/* u8 image from the fixture -> F32 var x = u8 / 255 */
static kn_var *image_var(kn_ctx *c, kn_safetensors *ref, const char *key) {
    kn_tensor u;
    if (kn_st_get(ref, key, &u) != KN_OK || u.dtype != KN_U8) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing or not U8", key);
        return NULL;
    }
    kn_var *x = kn_var_new(c, u.ndim, u.shape);
    if (!x)
        return NULL;
    const uint8_t *s = u.data;
    float *d = x->v.data;
    for (int64_t i = 0, n = kn_tensor_numel(&u); i < n; i++) d[i] = s[i] / 255.0f;
    return x;
}

static kn_var *ref_var(kn_ctx *c, kn_safetensors *ref, const char *key) {
    kn_tensor t;
    if (kn_st_get(ref, key, &t) != KN_OK) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing: %s", key, kn_last_error());
        return NULL;
    }
    return kn_var_wrap(c, &t);
}

typedef struct {
    kn_safetensors *ref;
    const char *prefix;
    int checked;
} hook_ctx;

static void on_layer(const char *net, int layer, const kn_tensor *t, void *user) {
    hook_ctx *h = user;
    char key[128];
    snprintf(key, sizeof key, "%s.%s_after_%d", h->prefix, net[0] == 'e' ? "enc" : "dec", layer);
    if (kn_st_find(h->ref, key) < 0)
        return;
    kn_tensor r;
    KT_OK(kn_st_get(h->ref, key, &r));
    check_close(key, t, &r);
    h->checked++;
}

static kn_taesd *load_taef2(void) {
    char e[1024], d[1024];
    kn_taesd *m = kn_taesd_load(fx(e, sizeof e, "taef2_encoder.safetensors"), fx(d, sizeof d, "taef2_decoder.safetensors"));
    KT_CHECKF(m != NULL, "load: %s", kn_last_error());
    return m;
}

static kn_safetensors *open_ref(void) {
    char p[1024];
    kn_safetensors *r = kn_st_open(fx(p, sizeof p, "ref_public.safetensors"));
    KT_CHECKF(r != NULL, "%s", kn_last_error());
    return r;
}

KT_TEST(taesd_taef2_config_from_shapes) {
    kn_taesd *m = load_taef2();
    if (!m)
        return;
    KT_CHECK(m->cfg.latent_channels == 32 && m->cfg.image_channels == 3);
    KT_CHECK(m->cfg.enc_channels == 64 && m->cfg.dec_channels == 64);
    KT_CHECK(m->cfg.enc_pool == ((1u << 11) | (1u << 12) | (1u << 13)));
    KT_CHECK(m->cfg.dec_pool == ((1u << 3) | (1u << 4) | (1u << 5)));
    KT_CHECK(m->cfg.enc_pool_channels == 256 && m->cfg.dec_pool_channels == 256);
    KT_CHECK(m->enc_P.numel >= 1338528 && m->dec_P.numel >= 1338499);
    kn_taesd_free(m);
}

/* astronaut 256x256: encode (with enc_after_13), decode the reference latents (with dec_after_5) */
KT_TEST(taesd_astronaut_matches_upstream) {
    kn_taesd *m = load_taef2();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taesd_free(m); if (ref) kn_st_close(ref); return; }
    kn_set_threads(2);
    kn_arena *A = kn_arena_new(256 << 20);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    hook_ctx h = {ref, "astronaut", 0};
    kn_var *x = image_var(&c, ref, "astronaut.image_u8");
    kn_var *z = x ? kn_taesd_encode(&c, m, x, on_layer, &h) : NULL;
    KT_OK(kn_ctx_status(&c));
    kn_tensor r;
    if (z && kn_st_get(ref, "astronaut.latents", &r) == KN_OK) {
        KT_CHECK(kn_tensor_same_shape(&z->v, &r));
        check_close("astronaut.latents", &z->v, &r);
    }
    kn_arena_reset(A, 0);
    kn_ctx_init(&c, A, NULL);
    kn_var *y = kn_taesd_decode(&c, m, ref_var(&c, ref, "astronaut.latents"), on_layer, &h);
    KT_OK(kn_ctx_status(&c));
    if (y && kn_st_get(ref, "astronaut.decoded", &r) == KN_OK) {
        KT_CHECK(kn_tensor_same_shape(&y->v, &r));
        check_close("astronaut.decoded", &y->v, &r);
    }
    KT_CHECKF(h.checked == 2, "only %d intermediates compared", h.checked);
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taesd_free(m);
}

/* coffee 128x192 (non-square) encode; coffee and randn latents decoded as one batch of 2 */
KT_TEST(taesd_coffee_randn_match_upstream) {
    kn_taesd *m = load_taef2();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taesd_free(m); if (ref) kn_st_close(ref); return; }
    kn_set_threads(2);
    kn_arena *A = kn_arena_new(128 << 20);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_tensor r;
    kn_var *z = kn_taesd_encode(&c, m, image_var(&c, ref, "coffee.image_u8"), NULL, NULL);
    KT_OK(kn_ctx_status(&c));
    if (z && kn_st_get(ref, "coffee.latents", &r) == KN_OK) {
        KT_CHECK(kn_tensor_same_shape(&z->v, &r));
        check_close("coffee.latents", &z->v, &r);
    }
    /* one batched decode of (coffee.latents, randn.latents): GroupNorm statistics stay per sample */
    kn_arena_reset(A, 0);
    kn_ctx_init(&c, A, NULL);
    kn_var *z2 = kn_v_concat(&c, ref_var(&c, ref, "coffee.latents"), ref_var(&c, ref, "randn.latents"), 0);
    kn_var *y = kn_taesd_decode(&c, m, z2, NULL, NULL);
    KT_OK(kn_ctx_status(&c));
    static const char *outs[2] = {"coffee.decoded", "randn.decoded"};
    for (int i = 0; y && i < 2; i++) {
        if (kn_st_get(ref, outs[i], &r) != KN_OK) {
            kt_fail(__FILE__, __LINE__, "fixture has no %s", outs[i]);
            continue;
        }
        kn_tensor yi;
        KT_OK(kn_tensor_slice(&y->v, 0, i, i + 1, &yi));
        KT_CHECK(kn_tensor_same_shape(&yi, &r));
        check_close(outs[i], &yi, &r);
    }
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taesd_free(m);
}

/* encode + decode of a 64x96 crop are bitwise identical at 1, 2 and 3 threads */
KT_TEST(taesd_threads_bitwise) {
    kn_taesd *m = load_taef2();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taesd_free(m); if (ref) kn_st_close(ref); return; }
    kn_arena *A = kn_arena_new(96 << 20);
    float *lat[3] = {0}, *img[3] = {0};
    int64_t nl = 0, ni = 0;
    for (int t = 0; t < 3; t++) {
        kn_set_threads(t + 1);
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *x = image_var(&c, ref, "coffee.image_u8");
        kn_var *crop = x ? kn_v_slice(&c, x, 2, 16, 80) : NULL;
        crop = crop ? kn_v_slice(&c, crop, 3, 40, 136) : NULL;
        kn_var *z = kn_taesd_encode(&c, m, crop, NULL, NULL);
        kn_var *y = kn_taesd_decode(&c, m, z, NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        if (!y)
            break;
        nl = kn_tensor_numel(&z->v);
        ni = kn_tensor_numel(&y->v);
        lat[t] = malloc((size_t)nl * sizeof(float));
        img[t] = malloc((size_t)ni * sizeof(float));
        memcpy(lat[t], z->v.data, (size_t)nl * sizeof(float));
        memcpy(img[t], y->v.data, (size_t)ni * sizeof(float));
    }
    for (int t = 1; t < 3; t++) {
        KT_CHECKF(lat[0] && lat[t] && !memcmp(lat[0], lat[t], (size_t)nl * sizeof(float)),
                  "latents differ between 1 and %d threads", t + 1);
        KT_CHECKF(img[0] && img[t] && !memcmp(img[0], img[t], (size_t)ni * sizeof(float)),
                  "decoded image differs between 1 and %d threads", t + 1);
    }
    KT_CHECK(nl == 32 * 8 * 12 && ni == 3 * 64 * 96);
    for (int t = 0; t < 3; t++) { free(lat[t]); free(img[t]); }
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taesd_free(m);
}

/* Writes a copy of src without the tensors whose names contain `drop`, with tensor rname replaced
 * by rt (rt NULL: dropped). */
static kn_status rewrite(const char *src, const char *dst, const char *drop, const char *rname, const kn_tensor *rt) {
    kn_safetensors *st = kn_st_open(src);
    if (!st)
        return KN_ERR_IO;
    kn_st_writer *w = kn_st_writer_new();
    kn_status s = KN_OK;
    for (int i = 0; i < kn_st_count(st) && s == KN_OK; i++) {
        const char *name = kn_st_name(st, i);
        if (drop && strstr(name, drop))
            continue;
        kn_tensor t;
        if (rname && !strcmp(name, rname)) {
            if (rt)
                s = kn_st_writer_add(w, name, rt);
            continue;
        }
        s = kn_st_get(st, name, &t);
        if (s == KN_OK)
            s = kn_st_writer_add(w, name, &t);
    }
    if (s == KN_OK)
        s = kn_st_writer_write(w, dst);
    kn_st_writer_free(w);
    kn_st_close(st);
    return s;
}

/* SD1-style weights: 4 latent channels, no GroupNorm branch. Made from TAEF2 by dropping the
 * pool tensors and keeping 4 latent channels; the loader must read that layout from the shapes. */
KT_TEST(taesd_sd1_layout_loads) {
    char e[1024], d[1024], e4[1024], d4[1024];
    fx(e, sizeof e, "taef2_encoder.safetensors");
    fx(d, sizeof d, "taef2_decoder.safetensors");
    snprintf(e4, sizeof e4, "%s/enc4.safetensors", kt_tmpdir());
    snprintf(d4, sizeof d4, "%s/dec4.safetensors", kt_tmpdir());
    kn_safetensors *se = kn_st_open(e), *sd = kn_st_open(d);
    KT_CHECK(se && sd);
    if (!se || !sd) { if (se) kn_st_close(se); if (sd) kn_st_close(sd); return; }
    kn_tensor w14, b14, w1, w14s, b14s, w1s, w1c;
    KT_OK(kn_st_get(se, "14.weight", &w14));
    KT_OK(kn_st_get(se, "14.bias", &b14));
    KT_OK(kn_st_get(sd, "1.weight", &w1));
    KT_OK(kn_tensor_slice(&w14, 0, 0, 4, &w14s));
    KT_OK(kn_tensor_slice(&b14, 0, 0, 4, &b14s));
    KT_OK(kn_tensor_slice(&w1, 1, 0, 4, &w1s)); /* not contiguous: copy */
    KT_OK(kn_tensor_alloc(NULL, &w1c, KN_F32, 4, w1s.shape));
    KT_OK(kn_tensor_copy(&w1c, &w1s));
    /* two rewrites per file: replace the weight, then the bias */
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/enc4a.safetensors", kt_tmpdir());
    KT_OK(rewrite(e, tmp, ".pool.", "14.weight", &w14s));
    KT_OK(rewrite(tmp, e4, NULL, "14.bias", &b14s));
    KT_OK(rewrite(d, d4, ".pool.", "1.weight", &w1c));
    kn_taesd *m = kn_taesd_load(e4, d4);
    KT_CHECKF(m != NULL, "%s", kn_last_error());
    if (m) {
        KT_CHECK(m->cfg.latent_channels == 4 && m->cfg.enc_pool == 0 && m->cfg.dec_pool == 0);
        kn_arena *A = kn_arena_new(32 << 20);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){1, 3, 32, 40});
        if (x) kn_rand_fill(x->v.data, kn_tensor_numel(&x->v), 7, 0);
        kn_var *z = kn_taesd_encode(&c, m, x, NULL, NULL);
        kn_var *y = kn_taesd_decode(&c, m, z, NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        KT_CHECK(z && z->v.shape[1] == 4 && z->v.shape[2] == 4 && z->v.shape[3] == 5);
        KT_CHECK(y && y->v.shape[1] == 3 && y->v.shape[2] == 32 && y->v.shape[3] == 40);
        if (z) /* the first 4 latent channels of TAEF2 without its GN blocks: finite, not all zero */
            KT_CHECK(kt_max_abs(z->v.data, kn_tensor_numel(&z->v)) > 1e-3 &&
                     isfinite(kt_max_abs(z->v.data, kn_tensor_numel(&z->v))));
        kn_arena_free(A);
        kn_taesd_free(m);
    }
    kn_tensor_free(&w1c);
    kn_st_close(se);
    kn_st_close(sd);
}

/* The same TAEF2 weights under diffusers AutoencoderTiny names, in one combined file
 * (encoder.layers.i = i, decoder.layers.i = i + 1), load and give bitwise the same outputs. */
KT_TEST(taesd_diffusers_names_load) {
    char e[1024], d[1024], comb[1024], name[160];
    fx(e, sizeof e, "taef2_encoder.safetensors");
    fx(d, sizeof d, "taef2_decoder.safetensors");
    snprintf(comb, sizeof comb, "%s/diffusion_pytorch_model.safetensors", kt_tmpdir());
    kn_safetensors *se = kn_st_open(e), *sd = kn_st_open(d);
    KT_CHECK(se && sd);
    if (!se || !sd) { if (se) kn_st_close(se); if (sd) kn_st_close(sd); return; }
    kn_st_writer *w = kn_st_writer_new();
    for (int f = 0; f < 2; f++) {
        kn_safetensors *st = f ? sd : se;
        for (int i = 0; i < kn_st_count(st); i++) {
            const char *n = kn_st_name(st, i);
            char *rest;
            long k = strtol(n, &rest, 10);
            snprintf(name, sizeof name, "%s.layers.%ld%s", f ? "decoder" : "encoder", f ? k - 1 : k, rest);
            kn_tensor t;
            KT_OK(kn_st_get(st, n, &t));
            KT_OK(kn_st_writer_add(w, name, &t));
        }
    }
    KT_OK(kn_st_writer_write(w, comb));
    kn_st_writer_free(w);
    kn_taesd *a = kn_taesd_load(e, d), *b = kn_taesd_load(comb, comb);
    KT_CHECKF(a && b, "%s", kn_last_error());
    if (a && b) {
        KT_CHECK(!memcmp(&a->cfg, &b->cfg, sizeof a->cfg));
        KT_CHECK(a->enc_P.numel == b->enc_P.numel && a->dec_P.numel == b->dec_P.numel);
        KT_CHECK(!memcmp(a->enc_P.block, b->enc_P.block, a->enc_P.numel * sizeof(float)));
        KT_CHECK(!memcmp(a->dec_P.block, b->dec_P.block, a->dec_P.numel * sizeof(float)));
        kn_arena *A = kn_arena_new(32 << 20);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){1, 3, 24, 32});
        if (x) kn_rand_fill(x->v.data, kn_tensor_numel(&x->v), 3, 0);
        kn_var *ya = kn_taesd_decode(&c, a, kn_taesd_encode(&c, a, x, NULL, NULL), NULL, NULL);
        kn_var *yb = kn_taesd_decode(&c, b, kn_taesd_encode(&c, b, x, NULL, NULL), NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        KT_CHECK(ya && yb && !memcmp(ya->v.data, yb->v.data, kn_tensor_nbytes(&ya->v)));
        kn_arena_free(A);
    }
    /* a diffusers file missing one decoder tensor names it with the file's naming */
    kn_taesd_free(b);
    char bad[1024];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", kt_tmpdir());
    KT_OK(rewrite(comb, bad, NULL, "decoder.layers.9.conv.2.weight", NULL));
    b = kn_taesd_load(bad, bad);
    KT_CHECK(b == NULL);
    KT_CHECKF(strstr(kn_last_error(), "decoder.layers.9.conv.2.weight") != NULL, "message: %s", kn_last_error());
    kn_taesd_free(a);
    kn_taesd_free(b);
    kn_st_close(se);
    kn_st_close(sd);
}

KT_TEST(taesd_load_errors) {
    char e[1024], d[1024], bad[1024];
    fx(e, sizeof e, "taef2_encoder.safetensors");
    fx(d, sizeof d, "taef2_decoder.safetensors");
    snprintf(bad, sizeof bad, "%s/bad.safetensors", kt_tmpdir());
    /* no file */
    KT_CHECK(kn_taesd_load("/nonexistent/enc.safetensors", NULL) == NULL);
    KT_CHECK(strstr(kn_last_error(), "nonexistent") != NULL);
    KT_CHECK(kn_taesd_load(NULL, NULL) == NULL);
    /* a decoder given as the encoder */
    KT_CHECK(kn_taesd_load(d, NULL) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "0.weight") != NULL, "message: %s", kn_last_error());
    /* a missing weight */
    KT_OK(rewrite(e, bad, NULL, "5.conv.2.bias", NULL));
    KT_CHECK(kn_taesd_load(bad, NULL) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "5.conv.2.bias") && strstr(kn_last_error(), "missing"), "message: %s",
              kn_last_error());
    /* a wrong shape */
    float buf[64 * 64 * 9] = {0};
    kn_tensor wt = kn_tensor_view(KN_F32, 4, (int64_t[]){64, 64, 1, 9}, buf);
    KT_OK(rewrite(e, bad, NULL, "7.conv.4.weight", &wt));
    KT_CHECK(kn_taesd_load(bad, NULL) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "7.conv.4.weight") && strstr(kn_last_error(), "(64,64,1,9)"), "message: %s",
              kn_last_error());
    /* a stray GroupNorm branch on a non-Block layer */
    kn_tensor pw = kn_tensor_view(KN_F32, 4, (int64_t[]){4, 1, 1, 1}, buf);
    {
        kn_safetensors *st = kn_st_open(d);
        kn_st_writer *w = kn_st_writer_new();
        for (int i = 0; st && i < kn_st_count(st); i++) {
            kn_tensor t;
            if (kn_st_get(st, kn_st_name(st, i), &t) == KN_OK) kn_st_writer_add(w, kn_st_name(st, i), &t);
        }
        kn_st_writer_add(w, "7.pool.0.weight", &pw);
        KT_OK(kn_st_writer_write(w, bad));
        kn_st_writer_free(w);
        if (st) kn_st_close(st);
    }
    KT_CHECK(kn_taesd_load(NULL, bad) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "7.pool.0.weight") != NULL, "message: %s", kn_last_error());
    /* wrong input shapes */
    kn_taesd *m = kn_taesd_load(NULL, d);
    KT_CHECKF(m != NULL, "%s", kn_last_error());
    if (m) {
        kn_arena *A = kn_arena_new(1 << 20);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *z = kn_var_new(&c, 4, (int64_t[]){1, 4, 2, 2});
        KT_CHECK(kn_taesd_decode(&c, m, z, NULL, NULL) == NULL);
        KT_CHECK(kn_ctx_status(&c) == KN_ERR_SHAPE && strstr(kn_last_error(), "(1,4,2,2)"));
        kn_ctx_init(&c, A, NULL);
        KT_CHECK(kn_taesd_encode(&c, m, z, NULL, NULL) == NULL); /* no encoder loaded */
        KT_CHECK(kn_ctx_status(&c) != KN_OK && strstr(kn_last_error(), "without an encoder"));
        kn_arena_free(A);
        kn_taesd_free(m);
    }
}
