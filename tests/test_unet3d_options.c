/* test_unet3d_options.c — the UNet3D cascade options (models/unet3d.h): fps and noise-augmentation
 * embeddings, cond channels, per-sample image masking of the temporal layers, spatial-only and
 * no-temporal-attention models, the temporal identity init, and their config keys. Tiny models
 * (channels 8, 16; T = 3; 8x8) so every test runs in well under a second or two. */
#include "kt.h"

#include "io/export.h"
#include "io/model_load.h"
#include "models/unet3d.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TB 2 /* batch */
#define TT 3 /* frames */
#define TH 8
#define TW 8
#define TC 4   /* in channels */
#define TL 5   /* text tokens */
#define TX 12  /* cross_attention_dim */
#define TCC 3  /* cond channels */
#define NS ((int64_t)TC * TT * TH * TW)  /* one sample */
#define NCS ((int64_t)TCC * TT * TH * TW) /* one sample's cond */

static kn_unet3d_config tiny_config(void) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 4, 4, TX);
    return c;
}

static kn_unet3d *tiny_model(const kn_unet3d_config *cfg, uint64_t seed) {
    kn_unet3d *u = kn_unet3d_new(cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (u)
        kn_params_init_default(&u->P, seed);
    return u;
}

/* One forward call's inputs (batch B <= TB, all pointers to sample 0 of that batch). */
typedef struct {
    int B;
    const float *x, *txt, *ts, *cond;
    kn_unet3d_cond oc; /* fps, noise_aug, is_image (cond is filled from .cond) */
} run_in;

typedef struct {
    float x[TB * NS], txt[TB * TL * TX], cond[TB * NCS], ts[TB];
} batch;

static void make_batch(batch *b, uint64_t seed) {
    kn_randn_fill(b->x, TB * NS, seed, 0);
    kn_randn_fill(b->txt, TB * TL * TX, seed + 1, 0);
    kn_randn_fill(b->cond, TB * NCS, seed + 2, 0);
    b->ts[0] = 981.0f;
    b->ts[1] = 37.0f;
}

static run_in inputs(const batch *b, int first, int B) {
    run_in r;
    memset(&r, 0, sizeof r);
    r.B = B;
    r.x = b->x + first * NS;
    r.txt = b->txt + first * TL * TX;
    r.ts = b->ts + first;
    return r;
}

/* Runs the model; copies the output (B, out, T, H, W) into out (if non-NULL). With R non-NULL
 * and a tape, backpropagates L = sum(R * out) and copies d/dx and d/dcond into dx, dcond (if
 * non-NULL). Returns L (0 without R), NAN on failure. */
static double run(kn_unet3d *u, kn_arena *A, kn_tape *tape, const run_in *in, float *out, const float *R, float *dx,
                  float *dcond) {
    kn_arena_reset(A, 0);
    if (tape)
        kn_tape_clear(tape);
    kn_ctx c;
    kn_ctx_init(&c, A, tape);
    int B = in->B;
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){B, TC, TT, TH, TW}, (float *)in->x);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){B, TL, TX}, (float *)in->txt);
    kn_tensor tc = kn_tensor_view(KN_F32, 5, (int64_t[]){B, TCC, TT, TH, TW}, (float *)in->cond);
    kn_var *x = kn_var_wrap(&c, &tx), *t = kn_var_wrap(&c, &tt);
    kn_var *cv = in->cond ? kn_var_wrap(&c, &tc) : NULL;
    if (x && dx)
        x->requires_grad = 1;
    if (cv && dcond)
        cv->requires_grad = 1;
    kn_unet3d_cond oc = in->oc;
    oc.cond = cv;
    kn_var *y = kn_unet3d_forward_ex(&c, u, x, in->ts, t, &oc, NULL, NULL);
    if (kn_ctx_status(&c) != KN_OK || !y) {
        kt_fail(__FILE__, __LINE__, "forward: %s", kn_last_error());
        return NAN;
    }
    int64_t n = kn_tensor_numel(&y->v);
    if (out)
        memcpy(out, y->v.data, (size_t)n * sizeof(float));
    if (!R)
        return 0;
    double L = 0;
    for (int64_t i = 0; i < n; i++)
        L += (double)R[i] * ((float *)y->v.data)[i];
    if (tape) {
        if (kn_tensor_alloc(A, &y->g, KN_F32, y->v.ndim, y->v.shape) != KN_OK)
            return NAN;
        memcpy(y->g.data, R, (size_t)n * sizeof(float));
        if (kn_backward(&c, y, 0.0f) != KN_OK) {
            kt_fail(__FILE__, __LINE__, "backward: %s", kn_last_error());
            return NAN;
        }
        if (dx) {
            if (x->g.data) memcpy(dx, x->g.data, (size_t)(B * NS) * sizeof(float));
            else memset(dx, 0, (size_t)(B * NS) * sizeof(float));
        }
        if (dcond) {
            if (cv->g.data) memcpy(dcond, cv->g.data, (size_t)(B * NCS) * sizeof(float));
            else memset(dcond, 0, (size_t)(B * NCS) * sizeof(float));
        }
    }
    return L;
}

static int param_present(const kn_unet3d *u, const char *name) { return kn_params_find(&u->P, name) != NULL; }

static double param_abs_sum(const kn_var *v) {
    double s = 0;
    for (int64_t i = 0; i < kn_tensor_numel(&v->v); i++)
        s += fabs(((const float *)v->v.data)[i]);
    return s;
}

static double grad_abs_sum(const kn_unet3d *u, const char *name) {
    kn_param *p = kn_params_find(&u->P, name);
    if (!p || !p->var.g.data)
        return -1;
    double s = 0;
    for (int64_t i = 0; i < kn_tensor_numel(&p->var.g); i++)
        s += fabs(((const float *)p->var.g.data)[i]);
    return s;
}

/* Copies every parameter of src into the parameter of the same name and shape in dst. */
static int copy_params(kn_unet3d *dst, const kn_unet3d *src) {
    int n = 0;
    for (int i = 0; i < src->P.n; i++) {
        kn_param *s = src->P.items[i], *d = kn_params_find(&dst->P, s->name);
        if (d && kn_tensor_same_shape(&d->var.v, &s->var.v)) {
            memcpy(d->var.v.data, s->var.v.data, (size_t)kn_tensor_numel(&s->var.v) * sizeof(float));
            n++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------- */

/* With the temporal identity init, every temporal layer is the identity, so marking every sample
 * an image (temporal branches skipped) gives the same output bit for bit. Without the init the two
 * differ: the mask really skips the layers. */
KT_TEST(unet3d_options_identity_init_equals_image_mode) {
    kn_unet3d_config cfg = tiny_config();
    kn_unet3d *u = tiny_model(&cfg, 3);
    if (!u) return;
    kn_arena *A = kn_arena_new(64 << 20);
    static batch b;
    make_batch(&b, 100);
    static float y0[TB * NS], y1[TB * NS];
    static const int all_img[TB] = {1, 1};
    run_in in = inputs(&b, 0, TB);
    run(u, A, NULL, &in, y0, NULL, NULL, NULL);
    in.oc.is_image = all_img;
    run(u, A, NULL, &in, y1, NULL, NULL, NULL);
    double d_random = kt_max_abs_diff(y0, y1, TB * NS);
    KT_CHECKF(d_random > 1e-3, "random temporal layers: image mode changes the output by only %g", d_random);

    kn_unet3d_init_temporal_identity(u);
    /* the temporal output layers are zero, the spatial ones untouched */
    static const char *const zeroed[] = {"down_blocks.0.temp_convs.0.conv4.3.weight", "mid_block.temp_convs.1.conv4.3.bias",
                                         "up_blocks.1.temp_attentions.0.proj_out.weight",
                                         "transformer_in.proj_out.bias", "mid_block.temp_attentions.0.proj_out.weight"};
    static const char *const kept[] = {"down_blocks.0.temp_convs.0.conv3.3.weight", "down_blocks.0.attentions.0.proj_out.weight",
                                       "transformer_in.proj_in.weight", "conv_in.weight"};
    for (size_t i = 0; i < sizeof zeroed / sizeof *zeroed; i++) {
        kn_param *p = kn_params_find(&u->P, zeroed[i]);
        KT_CHECKF(p && param_abs_sum(&p->var) == 0, "%s is not zero after the identity init", zeroed[i]);
    }
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        kn_param *p = kn_params_find(&u->P, kept[i]);
        KT_CHECKF(p && param_abs_sum(&p->var) > 0, "%s was zeroed by the identity init", kept[i]);
    }
    /* which parameters a trainer would freeze */
    int ntemp = 0;
    for (int i = 0; i < u->P.n; i++) {
        const char *nm = u->P.items[i]->name;
        int want = strstr(nm, ".temp_convs.") || strstr(nm, ".temp_attentions.") || !strncmp(nm, "transformer_in.", 15);
        KT_CHECKF(kn_unet3d_temporal_param(nm) == want, "temporal_param(%s) = %d", nm, kn_unet3d_temporal_param(nm));
        ntemp += want;
    }
    KT_CHECK(ntemp > 0 && ntemp < u->P.n);
    KT_CHECK(!kn_unet3d_temporal_param("temp_convsX.weight") && !kn_unet3d_temporal_param("my_temp_convs.0.w") &&
             !kn_unet3d_temporal_param(NULL));
    in.oc.is_image = NULL;
    run(u, A, NULL, &in, y0, NULL, NULL, NULL);
    in.oc.is_image = all_img;
    run(u, A, NULL, &in, y1, NULL, NULL, NULL);
    double d = kt_max_abs_diff(y0, y1, TB * NS);
    KT_CHECKF(d == 0.0, "identity init: video and image mode differ by %g (expected bitwise equal)", d);
    kn_arena_free(A);
    kn_unet3d_free(u);
}

/* fps_cond + noise_aug_cond: with the zero-initialised output layers the model computes exactly
 * the plain model (same shared weights); with random output layers the embeddings change the
 * output, per sample. */
KT_TEST(unet3d_options_fps_and_aug_embeddings) {
    kn_unet3d_config base_cfg = tiny_config(), cfg = tiny_config();
    cfg.fps_cond = cfg.noise_aug_cond = 1;
    kn_unet3d *base = tiny_model(&base_cfg, 7), *u = tiny_model(&cfg, 8);
    if (!base || !u) goto out0;
    KT_CHECK(param_present(u, "fps_embedding.linear_1.weight") && param_present(u, "fps_embedding.linear_2.bias") &&
             param_present(u, "aug_embedding.linear_1.bias") && param_present(u, "aug_embedding.linear_2.weight"));
    KT_CHECK(!param_present(base, "fps_embedding.linear_1.weight") && !param_present(base, "aug_embedding.linear_1.weight"));
    KT_CHECK(u->P.n == base->P.n + 8);
    KT_CHECK(copy_params(u, base) == base->P.n);
    kn_unet3d_init_options_zero(u);
    kn_arena *A = kn_arena_new(64 << 20);
    static batch b;
    make_batch(&b, 200);
    static float yb[TB * NS], y[TB * NS], y2[TB * NS];
    float fps[TB] = {8, 24}, aug[TB] = {0, 500};
    run_in in = inputs(&b, 0, TB);
    run(base, A, NULL, &in, yb, NULL, NULL, NULL);
    in.oc.fps = fps;
    in.oc.noise_aug = aug;
    run(u, A, NULL, &in, y, NULL, NULL, NULL);
    double d = kt_max_abs_diff(yb, y, TB * NS);
    KT_CHECKF(d == 0.0, "zero-initialised embeddings change the output by %g", d);

    /* random output layers: changing sample 1's fps (then its noise level) changes sample 1 only */
    const char *l2[2][2] = {{"fps_embedding.linear_2.weight", "fps_embedding.linear_2.bias"},
                            {"aug_embedding.linear_2.weight", "aug_embedding.linear_2.bias"}};
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 2; j++) {
            kn_param *p = kn_params_find(&u->P, l2[k][j]);
            KT_CHECK(p != NULL);
            if (p) {
                kn_randn_fill(p->var.v.data, kn_tensor_numel(&p->var.v), 300 + k * 2 + j, 0);
                for (int64_t i = 0; i < kn_tensor_numel(&p->var.v); i++)
                    ((float *)p->var.v.data)[i] *= 0.1f;
            }
        }
        float f2[TB] = {8, 24}, a2[TB] = {0, 500};
        in.oc.fps = f2;
        in.oc.noise_aug = a2;
        run(u, A, NULL, &in, y, NULL, NULL, NULL);
        if (k == 0) f2[1] = 12; else a2[1] = 250;
        run(u, A, NULL, &in, y2, NULL, NULL, NULL);
        double d0 = kt_max_abs_diff(y, y2, NS), d1 = kt_max_abs_diff(y + NS, y2 + NS, NS);
        KT_CHECKF(d0 == 0.0, "%s: changing sample 1's value changes sample 0 by %g", k ? "aug" : "fps", d0);
        KT_CHECKF(d1 > 1e-4, "%s: changing sample 1's value changes its output by only %g", k ? "aug" : "fps", d1);
    }
    kn_arena_free(A);
out0:
    kn_unet3d_free(base);
    kn_unet3d_free(u);
}

/* cond_channels: conv_in takes in + cond channels, the output keeps out_channels, and the tape's
 * gradient w.r.t. cond elements matches central finite differences. */
KT_TEST(unet3d_options_cond_channels_shape_and_gradient) {
    kn_unet3d_config cfg = tiny_config();
    cfg.cond_channels = TCC;
    kn_unet3d *u = tiny_model(&cfg, 9);
    if (!u) return;
    kn_param *w = kn_params_find(&u->P, "conv_in.weight");
    KT_CHECK(w && w->var.v.ndim == 4 && w->var.v.shape[0] == 8 && w->var.v.shape[1] == TC + TCC &&
             w->var.v.shape[2] == 3 && w->var.v.shape[3] == 3);
    kn_arena *A = kn_arena_new(64 << 20);
    kn_tape *tape = kn_tape_new();
    static batch b;
    make_batch(&b, 400);
    static float y[TB * NS], R[TB * NS], dcond[TB * NCS], cond[TB * NCS];
    memcpy(cond, b.cond, sizeof cond);
    kn_randn_fill(R, TB * NS, 401, 0);
    run_in in = inputs(&b, 0, TB);
    in.cond = cond;
    run(u, A, tape, &in, y, R, NULL, dcond);
    for (int64_t i = 0; i < TB * NS; i++)
        KT_CHECKF(isfinite(y[i]), "non-finite output at %lld", (long long)i);
    static const int64_t idx[4] = {0, 77, NCS + 5, 2 * NCS - 1};
    for (int k = 0; k < 4; k++) {
        int64_t i = idx[k];
        float v = cond[i], eps = 1e-2f;
        cond[i] = v + eps;
        double Lp = run(u, A, NULL, &in, NULL, R, NULL, NULL);
        cond[i] = v - eps;
        double Lm = run(u, A, NULL, &in, NULL, R, NULL, NULL);
        cond[i] = v;
        double fd = (Lp - Lm) / (2.0 * eps);
        KT_CHECKF(fabs(fd) > 1e-4, "element %lld: finite difference %g too small to test anything", (long long)i, fd);
        KT_CHECKF(fabs(fd - dcond[i]) <= 2e-2 * fabs(fd) + 2e-3, "d/dcond[%lld]: tape %.6g, finite differences %.6g",
                  (long long)i, dcond[i], fd);
    }
    /* a wrongly shaped cond, or none, is a one-line error */
    kn_arena_reset(A, 0);
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){TB, TC, TT, TH, TW}, b.x);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){TB, TL, TX}, b.txt);
    kn_tensor tc = kn_tensor_view(KN_F32, 5, (int64_t[]){TB, TCC - 1, TT, TH, TW}, b.cond);
    kn_unet3d_cond oc = {0};
    oc.cond = kn_var_wrap(&c, &tc);
    KT_CHECK(kn_unet3d_forward_ex(&c, u, kn_var_wrap(&c, &tx), b.ts, kn_var_wrap(&c, &tt), &oc, NULL, NULL) == NULL);
    KT_CHECKF(kn_ctx_status(&c) == KN_ERR_SHAPE && strstr(kn_last_error(), "(2,2,3,8,8)"), "%s", kn_last_error());
    kn_ctx_init(&c, A, NULL);
    KT_CHECK(kn_unet3d_forward(&c, u, kn_var_wrap(&c, &tx), b.ts, kn_var_wrap(&c, &tt), NULL, NULL) == NULL);
    KT_CHECKF(kn_ctx_status(&c) == KN_ERR_ARG && strstr(kn_last_error(), "cond"), "%s", kn_last_error());
    kn_tape_free(tape);
    kn_arena_free(A);
    kn_unet3d_free(u);
}

/* spatial_only: no temporal parameters, and frames are independent (changing input frame 1 leaves
 * output frame 0 unchanged). temporal_attention = 0: temp_convs kept, temporal attention gone. */
KT_TEST(unet3d_options_spatial_only_and_no_temporal_attention) {
    kn_unet3d_config full = tiny_config(), so = tiny_config(), nta = tiny_config();
    so.spatial_only = 1;
    nta.temporal_attention = 0;
    kn_unet3d *uf = tiny_model(&full, 11), *us = tiny_model(&so, 11), *un = tiny_model(&nta, 11);
    if (!uf || !us || !un) goto out;
    int ftc = 0, fta = 0, fti = 0;
    for (int i = 0; i < uf->P.n; i++) {
        const char *nm = uf->P.items[i]->name;
        ftc += strstr(nm, "temp_convs") != NULL;
        fta += strstr(nm, "temp_attentions") != NULL;
        fti += strstr(nm, "transformer_in") != NULL;
        if (!kn_unet3d_temporal_param(nm))
            KT_CHECKF(param_present(us, nm) && param_present(un, nm), "spatial %s missing", nm);
    }
    KT_CHECK(ftc > 0 && fta > 0 && fti > 0);
    KT_CHECK(us->P.n == uf->P.n - ftc - fta - fti);
    KT_CHECK(un->P.n == uf->P.n - fta - fti);
    for (int i = 0; i < us->P.n; i++)
        KT_CHECKF(!kn_unet3d_temporal_param(us->P.items[i]->name), "spatial_only has %s", us->P.items[i]->name);
    for (int i = 0; i < un->P.n; i++) {
        const char *nm = un->P.items[i]->name;
        KT_CHECKF(!strstr(nm, "temp_attentions") && !strstr(nm, "transformer_in"), "temporal_attention=0 has %s", nm);
    }
    KT_CHECK(param_present(un, "down_blocks.0.temp_convs.0.conv1.2.weight") &&
             param_present(un, "mid_block.temp_convs.1.conv4.3.bias"));
    kn_arena *A = kn_arena_new(64 << 20);
    static batch b;
    make_batch(&b, 500);
    static float y0[TB * NS], y1[TB * NS], x2[TB * NS];
    run_in in = inputs(&b, 0, TB);
    /* input frame 1 changed, every channel and sample */
    memcpy(x2, b.x, sizeof x2);
    for (int64_t s = 0; s < TB * TC; s++)
        for (int64_t p = 0; p < TH * TW; p++)
            x2[(s * TT + 1) * TH * TW + p] += 1.0f;
    for (int k = 0; k < 2; k++) {
        kn_unet3d *u = k == 0 ? us : un;
        in.x = b.x;
        run(u, A, NULL, &in, y0, NULL, NULL, NULL);
        in.x = x2;
        run(u, A, NULL, &in, y1, NULL, NULL, NULL);
        double d0 = 0, d1 = 0;
        for (int64_t s = 0; s < TB * TC; s++)
            for (int64_t p = 0; p < TH * TW; p++) {
                int64_t i0 = (s * TT + 0) * TH * TW + p, i1 = (s * TT + 1) * TH * TW + p;
                d0 = fmax(d0, fabs(y0[i0] - y1[i0]));
                d1 = fmax(d1, fabs(y0[i1] - y1[i1]));
            }
        KT_CHECKF(d1 > 1e-4, "%s: frame 1 of the output did not change (%g)", k ? "no temporal attn" : "spatial_only", d1);
        if (k == 0)
            KT_CHECKF(d0 == 0.0, "spatial_only: changing frame 1 changes output frame 0 by %g", d0);
        else /* temporal convolutions mix the frames */
            KT_CHECKF(d0 > 1e-6, "temporal_attention=0: temp_convs should mix frames (frame 0 changed by %g)", d0);
    }
    kn_arena_free(A);
out:
    kn_unet3d_free(uf);
    kn_unet3d_free(us);
    kn_unet3d_free(un);
}

/* A batch [video, image] gives, per sample, what the sample gives alone (is_image 0 / 1), bit for
 * bit for every thread count; its gradient w.r.t. the input of either sample matches finite
 * differences. */
KT_TEST(unet3d_options_mixed_batch_video_and_image) {
    kn_unet3d_config cfg = tiny_config();
    kn_unet3d *u = tiny_model(&cfg, 13);
    if (!u) return;
    kn_arena *A = kn_arena_new(64 << 20);
    kn_tape *tape = kn_tape_new();
    static batch b;
    make_batch(&b, 600);
    static float ym[TB * NS], yv[NS], yi[NS], yt[TB * NS];
    static const int mixed[TB] = {0, 1}, one_img[1] = {1}, one_vid[1] = {0};
    run_in in = inputs(&b, 0, TB);
    in.oc.is_image = mixed;
    run(u, A, NULL, &in, ym, NULL, NULL, NULL);
    run_in iv = inputs(&b, 0, 1), ii = inputs(&b, 1, 1);
    iv.oc.is_image = one_vid;
    ii.oc.is_image = one_img;
    run(u, A, NULL, &iv, yv, NULL, NULL, NULL);
    run(u, A, NULL, &ii, yi, NULL, NULL, NULL);
    double dv = kt_max_abs_diff(ym, yv, NS), di = kt_max_abs_diff(ym + NS, yi, NS);
    KT_CHECKF(dv <= 1e-5 * (kt_max_abs(yv, NS) + 1), "video sample differs from running alone by %g", dv);
    KT_CHECKF(di <= 1e-5 * (kt_max_abs(yi, NS) + 1), "image sample differs from running alone by %g", di);
    /* and the image sample really is not a video: the same input as a video gives another output */
    ii.oc.is_image = one_vid;
    run(u, A, NULL, &ii, yt, NULL, NULL, NULL);
    KT_CHECK(kt_max_abs_diff(yt, yi, NS) > 1e-3);
    for (int th = 1; th <= 3; th++) {
        kn_set_threads(th);
        run(u, A, NULL, &in, yt, NULL, NULL, NULL);
        KT_CHECKF(memcmp(yt, ym, sizeof ym) == 0, "threads=%d: mixed-batch output not bitwise equal", th);
    }
    kn_set_threads(2);
    /* gradients through the row select */
    static float R[TB * NS], dx[TB * NS], x[TB * NS];
    memcpy(x, b.x, sizeof x);
    kn_randn_fill(R, TB * NS, 601, 0);
    in.x = x;
    run(u, A, tape, &in, NULL, R, dx, NULL);
    static const int64_t idx[4] = {3, NS / 2 + 17, NS + 9, 2 * NS - 40};
    for (int k = 0; k < 4; k++) {
        int64_t i = idx[k];
        float v = x[i], eps = 1e-2f;
        x[i] = v + eps;
        double Lp = run(u, A, NULL, &in, NULL, R, NULL, NULL);
        x[i] = v - eps;
        double Lm = run(u, A, NULL, &in, NULL, R, NULL, NULL);
        x[i] = v;
        double fd = (Lp - Lm) / (2.0 * eps);
        KT_CHECKF(fabs(fd) > 1e-4, "element %lld: finite difference %g too small to test anything", (long long)i, fd);
        KT_CHECKF(fabs(fd - dx[i]) <= 2e-2 * fabs(fd) + 2e-3, "mixed batch d/dx[%lld] (%s): tape %.6g, fd %.6g",
                  (long long)i, i < NS ? "video" : "image", dx[i], fd);
    }
    kn_tape_free(tape);
    kn_arena_free(A);
    kn_unet3d_free(u);
}

/* Training reaches the new parameters: non-zero gradients in both layers of fps_embedding and
 * aug_embedding and in the cond slice of conv_in.weight; with the zero init, the output layers
 * (and the cond slice) still get gradients, so they leave zero on the first step. */
KT_TEST(unet3d_options_gradients_reach_new_parameters) {
    kn_unet3d_config cfg = tiny_config();
    cfg.fps_cond = cfg.noise_aug_cond = 1;
    cfg.cond_channels = TCC;
    kn_unet3d *u = tiny_model(&cfg, 15);
    if (!u) return;
    KT_OK(kn_params_alloc_grads(&u->P));
    kn_arena *A = kn_arena_new(64 << 20);
    kn_tape *tape = kn_tape_new();
    static batch b;
    make_batch(&b, 700);
    static float R[TB * NS];
    kn_randn_fill(R, TB * NS, 701, 0);
    float fps[TB] = {4, 30}, aug[TB] = {100, 900};
    static const int mixed[TB] = {1, 0};
    run_in in = inputs(&b, 0, TB);
    in.cond = b.cond;
    in.oc.fps = fps;
    in.oc.noise_aug = aug;
    in.oc.is_image = mixed;
    for (int zero = 0; zero < 2; zero++) {
        if (zero)
            kn_unet3d_init_options_zero(u);
        kn_params_zero_grads(&u->P);
        run(u, A, tape, &in, NULL, R, NULL, NULL);
        static const char *const names[] = {"fps_embedding.linear_2.weight", "fps_embedding.linear_2.bias",
                                            "aug_embedding.linear_2.weight", "aug_embedding.linear_2.bias",
                                            "fps_embedding.linear_1.weight", "aug_embedding.linear_1.weight",
                                            "transformer_in.proj_out.weight", "down_blocks.0.temp_convs.0.conv4.3.weight"};
        for (int k = 0; k < 8; k++) {
            if (zero && k >= 4 && k < 6) { /* behind a zero layer: no gradient yet, by design */
                KT_CHECKF(grad_abs_sum(u, names[k]) == 0, "%s: gradient behind a zero layer", names[k]);
                continue;
            }
            double g = grad_abs_sum(u, names[k]);
            KT_CHECKF(g > 0 && isfinite(g), "%s%s: gradient sum %g", names[k], zero ? " (zero init)" : "", g);
        }
        /* the cond slice of conv_in.weight, and after the zero init it is zero but still learns */
        kn_param *w = kn_params_find(&u->P, "conv_in.weight");
        double gc = 0, vc = 0;
        for (int64_t o = 0; w && o < 8; o++)
            for (int64_t j = TC; j < TC + TCC; j++)
                for (int64_t k = 0; k < 9; k++) {
                    int64_t i = (o * (TC + TCC) + j) * 9 + k;
                    gc += fabs(((float *)w->var.g.data)[i]);
                    vc += fabs(((float *)w->var.v.data)[i]);
                }
        KT_CHECKF(gc > 0, "no gradient in the cond channels of conv_in.weight");
        KT_CHECK(zero ? vc == 0 : vc > 0);
    }
    kn_tape_free(tape);
    kn_arena_free(A);
    kn_unet3d_free(u);
}

/* The inputs the config requires are required, the ones it does not use refused, with a message. */
KT_TEST(unet3d_options_missing_or_unexpected_inputs_fail_cleanly) {
    kn_unet3d_config plain = tiny_config(), cfg = tiny_config();
    cfg.fps_cond = 1;
    kn_unet3d *up = tiny_model(&plain, 17), *u = tiny_model(&cfg, 17);
    if (!u || !up) goto out;
    kn_arena *A = kn_arena_new(64 << 20);
    static batch b;
    make_batch(&b, 800);
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){TB, TC, TT, TH, TW}, b.x);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){TB, TL, TX}, b.txt);
    float fps[TB] = {8, -1}, aug[TB] = {1, 2};
    struct { kn_unet3d *u; kn_unet3d_cond oc; const char *msg; } cases[4] = {
        {u, {0}, "no fps was given"},
        {u, {.fps = fps}, "fps[1] = -1"},
        {up, {.noise_aug = aug}, "without noise_aug_cond"},
        {up, {.fps = aug}, "without fps_cond"},
    };
    for (int k = 0; k < 4; k++) {
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        kn_var *y = kn_unet3d_forward_ex(&c, cases[k].u, kn_var_wrap(&c, &tx), b.ts, kn_var_wrap(&c, &tt), &cases[k].oc,
                                         NULL, NULL);
        KT_CHECK(y == NULL && kn_ctx_status(&c) == KN_ERR_ARG);
        KT_CHECKF(strstr(kn_last_error(), cases[k].msg) != NULL, "case %d: '%s'", k, kn_last_error());
    }
    kn_unet3d_config bad = tiny_config();
    bad.cond_channels = -2;
    KT_CHECK(kn_unet3d_new(&bad) == NULL && strstr(kn_last_error(), "cond_channels"));
    kn_arena_free(A);
out:
    kn_unet3d_free(up);
    kn_unet3d_free(u);
}

/* export writes the option keys, model_load reads them back; the exported weights (with the new
 * names) load into a model built from the re-read config, which computes the same output. */
static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    KT_CHECKF(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

KT_TEST(unet3d_options_config_round_trip_through_export) {
    kn_unet3d_config cfg = tiny_config();
    cfg.fps_cond = 1;
    cfg.noise_aug_cond = 1;
    cfg.cond_channels = TCC;
    cfg.temporal_attention = 0;
    kn_unet3d *u = tiny_model(&cfg, 19);
    kn_vae_config vc = kn_vae_config_default();
    vc.block_out_channels[0] = 8;
    vc.norm_num_groups = 4;
    kn_vae *vae = kn_vae_new(&vc);
    kn_clip_text_config cc = kn_clip_text_config_default();
    cc.vocab_size = 16;
    cc.hidden_size = 8;
    cc.intermediate_size = 16;
    cc.num_hidden_layers = 1;
    cc.num_attention_heads = 2;
    cc.max_position_embeddings = 8;
    kn_clip_text *text = kn_clip_text_new(&cc);
    KT_CHECKF(u && vae && text, "%s", kn_last_error());
    kn_unet3d *v = NULL;
    kn_safetensors *st = NULL;
    if (!u || !vae || !text) goto out;
    char tok[1024], dir[1024], path[1100];
    snprintf(tok, sizeof tok, "%s/unet3d_opts_tok", kt_tmpdir());
    snprintf(dir, sizeof dir, "%s/unet3d_opts_model", kt_tmpdir());
    mkdir(tok, 0755);
    snprintf(path, sizeof path, "%s/vocab.json", tok);
    write_file(path, "{\"a\": 0}");
    snprintf(path, sizeof path, "%s/merges.txt", tok);
    write_file(path, "#version: 0.2\n");
    kn_sched_config sc = kn_sched_config_modelscope();
    KT_OK(kn_export_t2v(dir, u, vae, text, &sc, tok, "<|endoftext|>", NULL));
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    kn_unet3d_config back;
    KT_OK(kn_unet3d_config_load(path, &back));
    KT_CHECK(back.fps_cond == 1 && back.noise_aug_cond == 1 && back.cond_channels == TCC && back.spatial_only == 0 &&
             back.temporal_attention == 0);
    KT_CHECK(back.nblocks == 2 && back.block_out_channels[1] == 16 && back.cross_attention_dim == TX);
    v = kn_unet3d_new(&back);
    KT_CHECKF(v != NULL, "%s", kn_last_error());
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    st = kn_st_open(path);
    KT_CHECKF(st != NULL, "%s", kn_last_error());
    if (!v || !st) goto out;
    int unused = -1;
    KT_OK(kn_params_load(&v->P, &st, 1, &unused));
    KT_CHECK(unused == 0 && v->P.n == u->P.n);
    kn_arena *A = kn_arena_new(64 << 20);
    static batch b;
    make_batch(&b, 900);
    static float y0[TB * NS], y1[TB * NS];
    float fps[TB] = {8, 24}, aug[TB] = {0, 300};
    run_in in = inputs(&b, 0, TB);
    in.cond = b.cond;
    in.oc.fps = fps;
    in.oc.noise_aug = aug;
    run(u, A, NULL, &in, y0, NULL, NULL, NULL);
    run(v, A, NULL, &in, y1, NULL, NULL, NULL);
    KT_CHECK(memcmp(y0, y1, sizeof y0) == 0);
    kn_arena_free(A);
    /* a plain model's config has none of the keys (it stays a diffusers config), and reads back off */
    {
        kn_unet3d_config p = tiny_config(), pb;
        kn_unet3d *pu = tiny_model(&p, 21);
        if (pu) {
            KT_OK(kn_export_t2v(dir, pu, vae, text, &sc, tok, "<|endoftext|>", NULL));
            snprintf(path, sizeof path, "%s/unet/config.json", dir);
            FILE *f = fopen(path, "r");
            char buf[4096] = {0};
            size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
            if (f) fclose(f);
            KT_CHECK(n > 0 && !strstr(buf, "fps_cond") && !strstr(buf, "cond_channels") && !strstr(buf, "temporal_attention"));
            KT_OK(kn_unet3d_config_load(path, &pb));
            KT_CHECK(pb.fps_cond == 0 && pb.noise_aug_cond == 0 && pb.cond_channels == 0 && pb.spatial_only == 0 &&
                     pb.temporal_attention == 1);
            kn_unet3d_free(pu);
        }
    }
out:
    if (st) kn_st_close(st);
    kn_unet3d_free(v);
    kn_unet3d_free(u);
    kn_vae_free(vae);
    kn_clip_text_free(text);
}

/* text_pool: with the zero-initialised output layer the model computes exactly the plain model;
 * with it random, a change to sample 1's text changes sample 1's output only (and more than
 * through cross-attention alone); the tape's gradient of a pool weight matches central finite
 * differences; kn_v_mean_rows' backward is the adjoint of its forward (<dy, M x> = <M^T dy, x>). */
KT_TEST(unet3d_options_text_pool) {
    kn_unet3d_config base_cfg = tiny_config(), cfg = tiny_config();
    cfg.text_pool = 1;
    kn_unet3d *base = tiny_model(&base_cfg, 7), *u = tiny_model(&cfg, 8);
    if (!base || !u) goto out0;
    KT_CHECK(param_present(u, "text_pool_embedding.linear_1.weight") &&
             param_present(u, "text_pool_embedding.linear_2.bias") && u->P.n == base->P.n + 4);
    KT_CHECK(copy_params(u, base) == base->P.n);
    kn_unet3d_init_options_zero(u);
    kn_arena *A = kn_arena_new(64 << 20);
    kn_tape *tape = kn_tape_new();
    static batch b;
    make_batch(&b, 500);
    static float yb[TB * NS], y[TB * NS], y2[TB * NS], R[TB * NS];
    run_in in = inputs(&b, 0, TB);
    run(base, A, NULL, &in, yb, NULL, NULL, NULL);
    run(u, A, NULL, &in, y, NULL, NULL, NULL);
    double d = kt_max_abs_diff(yb, y, TB * NS);
    KT_CHECKF(d == 0.0, "zero-initialised text_pool_embedding changes the output by %g", d);

    kn_param *w2 = kn_params_find(&u->P, "text_pool_embedding.linear_2.weight");
    KT_CHECK(w2 != NULL);
    if (!w2) goto out1;
    kn_randn_fill(w2->var.v.data, kn_tensor_numel(&w2->var.v), 501, 0);
    for (int64_t i = 0; i < kn_tensor_numel(&w2->var.v); i++)
        ((float *)w2->var.v.data)[i] *= 0.1f;
    run(u, A, NULL, &in, y, NULL, NULL, NULL);
    for (int i = 0; i < TL * TX; i++)
        b.txt[TL * TX + i] += 0.5f;
    run(u, A, NULL, &in, y2, NULL, NULL, NULL);
    double d0 = kt_max_abs_diff(y, y2, NS), d1 = kt_max_abs_diff(y + NS, y2 + NS, NS);
    KT_CHECKF(d0 == 0.0, "changing sample 1's text changes sample 0 by %g", d0);
    KT_CHECKF(d1 > 1e-4, "changing sample 1's text changes its output by only %g", d1);

    /* d/dW of L = sum(R * out) for two elements of linear_1.weight: tape vs finite differences */
    kn_param *w1 = kn_params_find(&u->P, "text_pool_embedding.linear_1.weight");
    KT_CHECK(w1 != NULL);
    if (!w1) goto out1;
    kn_randn_fill(R, TB * NS, 502, 0);
    KT_CHECK(kn_params_alloc_grads(&u->P) == KN_OK);
    run(u, A, tape, &in, NULL, R, NULL, NULL);
    float *wv = w1->var.v.data;
    static float gw[64];
    int64_t idx[2] = {3, kn_tensor_numel(&w1->var.v) - 2};
    for (int k = 0; k < 2; k++)
        gw[k] = w1->var.g.data ? ((float *)w1->var.g.data)[idx[k]] : 0.0f;
    for (int k = 0; k < 2; k++) {
        float v = wv[idx[k]], eps = 1e-2f;
        wv[idx[k]] = v + eps;
        double Lp = run(u, A, NULL, &in, NULL, R, NULL, NULL);
        wv[idx[k]] = v - eps;
        double Lm = run(u, A, NULL, &in, NULL, R, NULL, NULL);
        wv[idx[k]] = v;
        double fd = (Lp - Lm) / (2.0 * eps);
        KT_CHECKF(fabs(fd) > 1e-5, "element %lld: finite difference %g too small to test anything", (long long)idx[k],
                  fd);
        KT_CHECKF(fabs(fd - gw[k]) <= 2e-2 * fabs(fd) + 1e-3, "d/dW1[%lld]: tape %.6g, finite differences %.6g",
                  (long long)idx[k], gw[k], fd);
    }

    /* kn_v_mean_rows: values and adjoint */
    {
        kn_arena_reset(A, 0);
        kn_tape_clear(tape);
        kn_ctx c;
        kn_ctx_init(&c, A, tape);
        enum { N = 3, G = 5, D = 7 };
        static float xs[N * G * D], dys[N * D];
        kn_randn_fill(xs, N * G * D, 503, 0);
        kn_randn_fill(dys, N * D, 504, 0);
        kn_tensor tx = kn_tensor_view(KN_F32, 2, (int64_t[]){N * G, D}, xs);
        kn_var *x = kn_var_wrap(&c, &tx);
        x->requires_grad = 1;
        kn_var *m = kn_v_mean_rows(&c, x, G);
        KT_CHECK(m && m->v.shape[0] == N && m->v.shape[1] == D);
        if (m) {
            double maxd = 0, lhs = 0, rhs = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < D; j++) {
                    double s = 0;
                    for (int k = 0; k < G; k++)
                        s += xs[(i * G + k) * D + j];
                    maxd = fmax(maxd, fabs(s / G - ((float *)m->v.data)[i * D + j]));
                    lhs += dys[i * D + j] * ((float *)m->v.data)[i * D + j];
                }
            KT_CHECKF(maxd < 1e-6, "mean_rows differs from the naive mean by %g", maxd);
            KT_CHECK(kn_tensor_alloc(A, &m->g, KN_F32, 2, m->v.shape) == KN_OK);
            memcpy(m->g.data, dys, sizeof dys);
            KT_CHECKF(kn_backward(&c, m, 0.0f) == KN_OK, "%s", kn_last_error());
            for (int i = 0; i < N * G * D; i++)
                rhs += ((float *)x->g.data)[i] * xs[i];
            KT_CHECKF(fabs(lhs - rhs) < 1e-5 * (1 + fabs(lhs)), "mean_rows adjoint: <dy, Mx> %g vs <M^T dy, x> %g", lhs,
                      rhs);
        }
        KT_CHECK(kn_v_mean_rows(&c, x, 4) == NULL); /* 15 rows are not groups of 4 */
    }
out1:
    kn_tape_free(tape);
    kn_arena_free(A);
out0:
    kn_unet3d_free(base);
    kn_unet3d_free(u);
}
