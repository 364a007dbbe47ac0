/* test_taehv.c — TAEHV video autoencoder (taew2_1 layout, synthetic F16 weights) against upstream
 * taehv.py encode_video / decode_video (parallel=True) in shared/fixtures/taehv: latents, decoded
 * and raw decoded frames, enc_after_11/16 and dec_after_5/11, within |c - ref| <= 1e-4 + 1e-4 |ref|;
 * 1/2/3-thread bitwise determinism; layout and load errors. */
#include "kt.h"

#include "io/tae_load.h"

#include <string.h>

static const char *fx(char *buf, size_t n, const char *file) {
    snprintf(buf, n, "%s/taehv/%s", kt_fixtures(), file);
    return buf;
}

/* Per-element check |c - r| <= 1e-4 + 1e-4 |r|; shapes compared as element counts (hooks see the
 * folded (N*T, C, H, W) layout of the NTCHW references). */
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

static void check_ref(kn_safetensors *ref, const char *key, const kn_var *v) {
    kn_tensor r;
    if (!v)
        return;
    if (kn_st_get(ref, key, &r) != KN_OK) {
        kt_fail(__FILE__, __LINE__, "fixture tensor %s missing", key);
        return;
    }
    char a[96], b[96];
    KT_CHECKF(kn_tensor_same_shape(&v->v, &r), "%s: shape %s, reference %s", key, kn_shape_str(&v->v, a, sizeof a),
              kn_shape_str(&r, b, sizeof b));
    check_close(key, &v->v, &r);
}

static kn_var *video_var(kn_ctx *c, kn_safetensors *ref, const char *key) {
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

static kn_taehv *load_model(void) {
    char p[1024];
    kn_taehv *m = kn_taehv_load(fx(p, sizeof p, "taehv_synthetic_wan21arch_f16.safetensors"));
    KT_CHECKF(m != NULL, "load: %s", kn_last_error());
    return m;
}

static kn_safetensors *open_ref(void) {
    char p[1024];
    kn_safetensors *r = kn_st_open(fx(p, sizeof p, "ref_public.safetensors"));
    KT_CHECKF(r != NULL, "%s", kn_last_error());
    return r;
}

KT_TEST(taehv_config_from_shapes) {
    kn_taehv *m = load_model();
    if (!m)
        return;
    const kn_taehv_config *g = &m->cfg;
    KT_CHECK(g->has_encoder && g->has_decoder && g->image_channels == 3 && g->latent_channels == 16);
    KT_CHECK(g->enc_channels == 64 && g->dec_channels[0] == 256 && g->dec_channels[1] == 128 &&
             g->dec_channels[2] == 64 && g->dec_channels[3] == 64);
    KT_CHECK(g->enc_tpool[0] == 2 && g->enc_tpool[1] == 2 && g->enc_tpool[2] == 1);
    KT_CHECK(g->dec_tgrow[0] == 1 && g->dec_tgrow[1] == 2 && g->dec_tgrow[2] == 2);
    KT_CHECK(m->t_downscale == 4 && m->t_upscale == 4 && m->frames_to_trim == 3);
    int64_t n = 0;
    for (int i = 0; i < m->P.n; i++) n += kn_tensor_numel(&m->P.items[i]->var.v);
    KT_CHECKF(n == 11315539 && m->P.n == 128, "%lld parameters in %d tensors", (long long)n, m->P.n);
    kn_taehv_free(m);
}

/* pan9 (9 frames), clip8 (4n), clip6 (padded), single (1 frame): latents; pan9 intermediates */
KT_TEST(taehv_encode_matches_upstream) {
    kn_taehv *m = load_model();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taehv_free(m); if (ref) kn_st_close(ref); return; }
    kn_set_threads(2);
    kn_arena *A = kn_arena_new(128 << 20);
    static const char *clips[4] = {"pan9", "clip8", "clip6", "single"};
    hook_ctx h = {ref, "pan9", 0};
    for (int i = 0; i < 4; i++) {
        char key[64];
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        snprintf(key, sizeof key, "%s.video_u8", clips[i]);
        kn_var *z = kn_taehv_encode(&c, m, video_var(&c, ref, key), i == 0 ? on_layer : NULL, &h);
        KT_OK(kn_ctx_status(&c));
        snprintf(key, sizeof key, "%s.latents", clips[i]);
        check_ref(ref, key, z);
    }
    KT_CHECKF(h.checked == 2, "%d encoder intermediates compared", h.checked);
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taehv_free(m);
}

/* wan (real latents): raw and final output and intermediates; the clips' reference latents */
KT_TEST(taehv_decode_matches_upstream) {
    kn_taehv *m = load_model();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taehv_free(m); if (ref) kn_st_close(ref); return; }
    kn_set_threads(2);
    kn_arena *A = kn_arena_new(128 << 20);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    hook_ctx h = {ref, "wan", 0};
    kn_var *raw = kn_taehv_decode_raw(&c, m, ref_var(&c, ref, "wan.latents"), on_layer, &h);
    KT_OK(kn_ctx_status(&c));
    check_ref(ref, "wan.decoded_raw", raw);
    KT_CHECKF(h.checked == 2, "%d decoder intermediates compared", h.checked);
    static const char *clips[5] = {"wan", "pan9", "clip8", "clip6", "single"};
    for (int i = 0; i < 5; i++) {
        char key[64];
        kn_arena_reset(A, 0);
        kn_ctx_init(&c, A, NULL);
        snprintf(key, sizeof key, "%s.latents", clips[i]);
        kn_var *y = kn_taehv_decode(&c, m, ref_var(&c, ref, key), NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        snprintf(key, sizeof key, "%s.decoded", clips[i]);
        check_ref(ref, key, y);
    }
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taehv_free(m);
}

/* A batch of 2: (clip6 reversed in time, clip6) encodes per sample (memory starts at zero and
 * the end padding repeats each sample's own last frame); (clip8, clip6) latents decode per sample. */
KT_TEST(taehv_batch_of_two) {
    kn_taehv *m = load_model();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taehv_free(m); if (ref) kn_st_close(ref); return; }
    kn_set_threads(2);
    kn_arena *A = kn_arena_new(128 << 20);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_var *x = video_var(&c, ref, "clip6.video_u8"); /* (1, 6, 3, 48, 64) */
    kn_var *rev = x ? kn_var_new(&c, 5, x->v.shape) : NULL;
    if (rev) {
        size_t fr = (size_t)(3 * 48 * 64);
        for (int t = 0; t < 6; t++)
            memcpy((float *)rev->v.data + t * fr, (float *)x->v.data + (5 - t) * fr, fr * sizeof(float));
    }
    kn_var *z1 = kn_taehv_encode(&c, m, rev, NULL, NULL);
    kn_var *x2 = rev ? kn_v_concat(&c, rev, x, 0) : NULL;
    kn_var *z2 = kn_taehv_encode(&c, m, x2, NULL, NULL);
    KT_OK(kn_ctx_status(&c));
    kn_tensor r, a, b;
    if (z1 && z2 && kn_st_get(ref, "clip6.latents", &r) == KN_OK) {
        KT_CHECK(z2->v.shape[0] == 2 && z2->v.shape[1] == 2);
        KT_OK(kn_tensor_slice(&z2->v, 0, 0, 1, &a));
        KT_OK(kn_tensor_slice(&z2->v, 0, 1, 2, &b));
        check_close("batch[0] vs the reversed clip alone", &a, &z1->v);
        check_close("batch[1] vs clip6.latents", &b, &r);
        KT_CHECK(kt_max_abs_diff(a.data, r.data, kn_tensor_numel(&r)) > 0.01); /* the samples differ */
    }
    kn_arena_reset(A, 0);
    kn_ctx_init(&c, A, NULL);
    kn_var *zz = kn_v_concat(&c, ref_var(&c, ref, "clip8.latents"), ref_var(&c, ref, "clip6.latents"), 0);
    kn_var *y = kn_taehv_decode(&c, m, zz, NULL, NULL);
    KT_OK(kn_ctx_status(&c));
    static const char *outs[2] = {"clip8.decoded", "clip6.decoded"};
    for (int i = 0; y && i < 2; i++) {
        if (kn_st_get(ref, outs[i], &r) != KN_OK) {
            kt_fail(__FILE__, __LINE__, "fixture has no %s", outs[i]);
            continue;
        }
        KT_OK(kn_tensor_slice(&y->v, 0, i, i + 1, &a));
        KT_CHECK(kn_tensor_same_shape(&a, &r));
        check_close(outs[i], &a, &r);
    }
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taehv_free(m);
}

/* encode clip6 and decode its latents: bitwise identical at 1, 2 and 3 threads */
KT_TEST(taehv_threads_bitwise) {
    kn_taehv *m = load_model();
    kn_safetensors *ref = open_ref();
    if (!m || !ref) { kn_taehv_free(m); if (ref) kn_st_close(ref); return; }
    kn_arena *A = kn_arena_new(128 << 20);
    float *lat[3] = {0}, *vid[3] = {0};
    int64_t nl = 0, nv = 0;
    for (int t = 0; t < 3; t++) {
        kn_set_threads(t + 1);
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *z = kn_taehv_encode(&c, m, video_var(&c, ref, "clip6.video_u8"), NULL, NULL);
        kn_var *y = kn_taehv_decode_raw(&c, m, z, NULL, NULL);
        KT_OK(kn_ctx_status(&c));
        if (!y)
            break;
        nl = kn_tensor_numel(&z->v);
        nv = kn_tensor_numel(&y->v);
        lat[t] = malloc((size_t)nl * sizeof(float));
        vid[t] = malloc((size_t)nv * sizeof(float));
        memcpy(lat[t], z->v.data, (size_t)nl * sizeof(float));
        memcpy(vid[t], y->v.data, (size_t)nv * sizeof(float));
    }
    for (int t = 1; t < 3; t++) {
        KT_CHECKF(lat[0] && lat[t] && !memcmp(lat[0], lat[t], (size_t)nl * sizeof(float)),
                  "latents differ between 1 and %d threads", t + 1);
        KT_CHECKF(vid[0] && vid[t] && !memcmp(vid[0], vid[t], (size_t)nv * sizeof(float)),
                  "decoded video differs between 1 and %d threads", t + 1);
    }
    KT_CHECK(nl == 2 * 16 * 6 * 8 && nv == 8 * 3 * 48 * 64);
    for (int t = 0; t < 3; t++) { free(lat[t]); free(vid[t]); }
    kn_set_threads(1);
    kn_arena_free(A);
    kn_st_close(ref);
    kn_taehv_free(m);
}

/* Writes a copy of src with tensor rname replaced by rt (rt NULL: dropped) and, if extra_name is
 * given, one more tensor. */
static kn_status rewrite(const char *src, const char *dst, const char *rname, const kn_tensor *rt,
                         const char *extra_name, const kn_tensor *extra) {
    kn_safetensors *st = kn_st_open(src);
    if (!st)
        return KN_ERR_IO;
    kn_st_writer *w = kn_st_writer_new();
    kn_status s = KN_OK;
    for (int i = 0; i < kn_st_count(st) && s == KN_OK; i++) {
        const char *name = kn_st_name(st, i);
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
    if (s == KN_OK && extra_name)
        s = kn_st_writer_add(w, extra_name, extra);
    if (s == KN_OK)
        s = kn_st_writer_write(w, dst);
    kn_st_writer_free(w);
    kn_st_close(st);
    return s;
}

KT_TEST(taehv_load_errors) {
    char src[1024], bad[1024];
    fx(src, sizeof src, "taehv_synthetic_wan21arch_f16.safetensors");
    snprintf(bad, sizeof bad, "%s/bad.safetensors", kt_tmpdir());
    static uint16_t buf[64 * 128 * 9];
    KT_CHECK(kn_taehv_load("/nonexistent/taew2_1.safetensors") == NULL);
    KT_CHECK(strstr(kn_last_error(), "nonexistent") != NULL);
    /* not a TAEHV file at all */
    KT_CHECK(kn_taehv_load(fx(bad, sizeof bad, "ref_public.safetensors")) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "TAEHV") != NULL, "message: %s", kn_last_error());
    snprintf(bad, sizeof bad, "%s/bad.safetensors", kt_tmpdir());
    /* a missing weight */
    KT_OK(rewrite(src, bad, "decoder.10.conv.2.bias", NULL, NULL, NULL));
    KT_CHECK(kn_taehv_load(bad) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "decoder.10.conv.2.bias") && strstr(kn_last_error(), "missing"),
              "message: %s", kn_last_error());
    /* a wrong shape */
    kn_tensor w = kn_tensor_view(KN_F16, 4, (int64_t[]){64, 64, 3, 3}, buf);
    KT_OK(rewrite(src, bad, "encoder.5.conv.0.weight", &w, NULL, NULL));
    KT_CHECK(kn_taehv_load(bad) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "encoder.5.conv.0.weight") && strstr(kn_last_error(), "(64,64,3,3)"),
              "message: %s", kn_last_error());
    /* patch size 2 (taew2_2 / taehv1_5 style first conv) */
    kn_tensor w12 = kn_tensor_view(KN_F16, 4, (int64_t[]){64, 12, 3, 3}, buf);
    KT_OK(rewrite(src, bad, "encoder.0.weight", &w12, NULL, NULL));
    KT_CHECK(kn_taehv_load(bad) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "patch size 2") != NULL, "message: %s", kn_last_error());
    /* a TPool of stride 3 */
    kn_tensor w3 = kn_tensor_view(KN_F16, 4, (int64_t[]){64, 192, 1, 1}, buf);
    KT_OK(rewrite(src, bad, "encoder.7.conv.weight", &w3, NULL, NULL));
    KT_CHECK(kn_taehv_load(bad) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "encoder.7.conv.weight") && strstr(kn_last_error(), "TPool"), "message: %s",
              kn_last_error());
    /* an extra tensor the layout does not have */
    kn_tensor x1 = kn_tensor_view(KN_F16, 1, (int64_t[]){4}, buf);
    KT_OK(rewrite(src, bad, NULL, NULL, "decoder.23.bias", &x1));
    KT_CHECK(kn_taehv_load(bad) == NULL);
    KT_CHECKF(strstr(kn_last_error(), "decoder.23.bias") != NULL, "message: %s", kn_last_error());
    /* wrong input shapes */
    kn_taehv *m = load_model();
    if (m) {
        kn_arena *A = kn_arena_new(1 << 20);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *x = kn_var_new(&c, 4, (int64_t[]){1, 3, 16, 16});
        KT_CHECK(kn_taehv_encode(&c, m, x, NULL, NULL) == NULL);
        KT_CHECK(kn_ctx_status(&c) == KN_ERR_SHAPE && strstr(kn_last_error(), "(1,3,16,16)"));
        kn_ctx_init(&c, A, NULL);
        kn_var *z = kn_var_new(&c, 5, (int64_t[]){1, 2, 4, 3, 3});
        KT_CHECK(kn_taehv_decode(&c, m, z, NULL, NULL) == NULL);
        KT_CHECK(kn_ctx_status(&c) == KN_ERR_SHAPE && strstr(kn_last_error(), "(1,2,4,3,3)"));
        kn_arena_free(A);
        kn_taehv_free(m);
    }
}
