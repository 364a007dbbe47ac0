/* test_viz_attention.c — the cross-attention capture of the UNet (prompt-to-prompt's "aggregate
 * attention") and `kinema viz attention`:
 *   - capture off (NULL, or a capture attached) leaves the UNet output bitwise unchanged;
 *   - every spatial transformer's attn2 reports probabilities equal to a naive double-precision
 *     softmax(q kᵀ / sqrt(d)) over the L text tokens, averaged over heads, for the captured
 *     sample's rows; with every token chosen they sum to 1 over L;
 *   - the aggregate is the mean over layers and calls of the bilinearly resized token means;
 *   - results are bitwise identical for 1, 2 and 3 threads; res selects the layers of one size;
 *   - the CLI writes a contact sheet / video of the right size for the bundled model and for a
 *     cascade's base stage; an unknown word is a one-line error naming it. */
#include "kt.h"

#include "io/image.h"
#include "io/video.h"
#include "models/unet3d.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { TB = 2, TC = 4, TT = 3, TH = 8, TW = 8, TL = 5, TX = 12 };
#define NS ((int64_t)TC * TT * TH * TW)

const char *kt_stage_eval_model(int with_stages); /* tests/test_stage_eval.c */

static kn_unet3d_config tiny_config(void) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 4, 4, TX);
    return c;
}

typedef struct {
    float x[TB * NS], txt[TB * TL * TX], ts[TB];
} inputs;

static void make_inputs(inputs *in) {
    kn_randn_fill(in->x, TB * NS, 5, 0);
    kn_randn_fill(in->txt, TB * TL * TX, 6, 0);
    in->ts[0] = 500.0f;
    in->ts[1] = 80.0f;
}

/* One forward; copies the output (TB * NS floats) into out. cap_cond goes through the cond. */
static kn_status run(const kn_unet3d *u, const inputs *in, kn_attn_capture *cap_cond, float *out) {
    kn_arena *A = kn_arena_new((size_t)64 << 20);
    if (!A)
        return KN_ERR_NOMEM;
    kn_ctx c;
    kn_ctx_init(&c, A, NULL);
    kn_tensor tx = kn_tensor_view(KN_F32, 5, (int64_t[]){TB, TC, TT, TH, TW}, (float *)in->x);
    kn_tensor tt = kn_tensor_view(KN_F32, 3, (int64_t[]){TB, TL, TX}, (float *)in->txt);
    kn_unet3d_cond uc = {0};
    uc.capture = cap_cond;
    kn_var *y = kn_unet3d_forward_ex(&c, u, kn_var_wrap(&c, &tx), in->ts, kn_var_wrap(&c, &tt), &uc, NULL, NULL);
    kn_status st = kn_ctx_status(&c);
    if (st == KN_OK)
        memcpy(out, y->v.data, sizeof(float) * TB * NS);
    kn_arena_free(A);
    return st;
}

static kn_unet3d *tiny_model(uint64_t seed) {
    kn_unet3d_config cfg = tiny_config();
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (u)
        kn_params_init_default(&u->P, seed);
    return u;
}

/* What the per-layer callback checks and collects. */
typedef struct {
    int layers;
    double max_err, max_sum_err;
    int64_t want_row0;
    int bad_rows;
    float sum[TT * TH * TW]; /* own aggregate: token mean resized with kn_resize_bilinear */
} check_state;

/* Naive reference: q = x Wqᵀ, k = ctx Wkᵀ per row, softmax(q kᵀ / sqrt(D)) over L in double,
 * averaged over heads, at the chosen tokens. */
static void on_layer(const kn_attn_capture_layer *l, void *user) {
    check_state *s = user;
    s->layers++;
    if (l->row0 != s->want_row0 || l->rows != TT || l->L != TL)
        s->bad_rows++;
    const kn_attn_l *a = l->attn;
    int heads = a->heads;
    int64_t D = a->dim_head, HD = heads * D, C = l->x->shape[2], Cc = l->ctx->shape[2], Lq = l->h * l->w, L = l->L;
    const float *wq = a->q.w->v.data, *wk = a->k.w->v.data;
    const float *xs = l->x->data, *cs = l->ctx->data;
    double *q = malloc(sizeof(double) * (size_t)HD), *k = malloc(sizeof(double) * (size_t)(L * HD));
    double *sc = malloc(sizeof(double) * (size_t)L);
    float *tmean = malloc(sizeof(float) * (size_t)(TT * Lq)), *up = malloc(sizeof(float) * TT * TH * TW);
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t row = l->row0 + r;
        for (int64_t j = 0; j < L; j++)
            for (int64_t o = 0; o < HD; o++) {
                double acc = 0;
                for (int64_t i = 0; i < Cc; i++)
                    acc += (double)cs[(row * L + j) * Cc + i] * wk[o * Cc + i];
                k[j * HD + o] = acc;
            }
        for (int64_t p = 0; p < Lq; p++) {
            for (int64_t o = 0; o < HD; o++) {
                double acc = 0;
                for (int64_t i = 0; i < C; i++)
                    acc += (double)xs[(row * Lq + p) * C + i] * wq[o * C + i];
                q[o] = acc;
            }
            double ref[TL] = {0};
            for (int hd = 0; hd < heads; hd++) {
                double mx = -1e300, z = 0;
                for (int64_t j = 0; j < L; j++) {
                    double d = 0;
                    for (int64_t e = 0; e < D; e++)
                        d += q[hd * D + e] * k[j * HD + hd * D + e];
                    sc[j] = d / sqrt((double)D);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int64_t j = 0; j < L; j++)
                    z += exp(sc[j] - mx);
                for (int64_t j = 0; j < L && j < TL; j++)
                    ref[j] += exp(sc[j] - mx) / z / heads;
            }
            /* the test captures every token 0..L-1 in order */
            const float *pr = l->probs + (r * Lq + p) * L;
            double tot = 0, m = 0;
            for (int64_t j = 0; j < L && j < TL; j++) {
                double e = fabs(pr[j] - ref[j]);
                s->max_err = e > s->max_err ? e : s->max_err;
                tot += pr[j];
                m += pr[j];
            }
            s->max_sum_err = fabs(tot - 1.0) > s->max_sum_err ? fabs(tot - 1.0) : s->max_sum_err;
            tmean[r * Lq + p] = (float)(m / (double)L);
        }
    }
    kn_tensor tm = kn_tensor_view(KN_F32, 4, (int64_t[]){TT, 1, l->h, l->w}, tmean);
    kn_tensor tu = kn_tensor_view(KN_F32, 4, (int64_t[]){TT, 1, TH, TW}, up);
    if (kn_resize_bilinear(NULL, &tm, TH, TW, &tu) == KN_OK)
        for (int i = 0; i < TT * TH * TW; i++)
            s->sum[i] += up[i];
    free(q), free(k), free(sc), free(tmean), free(up);
}

KT_TEST(viz_attention_capture_off_is_bitwise_unchanged) {
    kn_unet3d *u = tiny_model(21);
    if (!u)
        return;
    static inputs in;
    static float y0[TB * NS], y1[TB * NS], y2[TB * NS], y3[TB * NS];
    make_inputs(&in);
    KT_OK(run(u, &in, NULL, y0));
    KT_OK(run(u, &in, NULL, y1));
    KT_CHECK(!memcmp(y0, y1, sizeof y0));
    /* a capture attached (through the cond, and through the model) does not touch the output */
    kn_attn_capture cap = {0};
    cap.ntok = 2;
    cap.tok[0] = 1, cap.tok[1] = 3;
    cap.sample = -1;
    KT_OK(run(u, &in, &cap, y2));
    KT_CHECK(!memcmp(y0, y2, sizeof y0));
    u->capture = &cap;
    KT_OK(run(u, &in, NULL, y3));
    u->capture = NULL;
    KT_CHECK(!memcmp(y0, y3, sizeof y0));
    KT_CHECKF(cap.count == 2 * 4, "%lld maps (2 calls x 4 cross-attention layers)", (long long)cap.count);
    KT_CHECK(kt_max_abs(y0, TB * NS) > 0);
    kn_attn_capture_free(&cap);
    kn_unet3d_free(u);
}

KT_TEST(viz_attention_capture_matches_naive_softmax) {
    kn_unet3d *u = tiny_model(22);
    if (!u)
        return;
    static inputs in;
    static float y[TB * NS];
    make_inputs(&in);
    for (int sample = 0; sample < TB; sample++) {
        static check_state s;
        memset(&s, 0, sizeof s);
        s.want_row0 = (int64_t)sample * TT;
        kn_attn_capture cap = {0};
        cap.ntok = TL; /* every token: the probabilities must sum to 1 */
        for (int j = 0; j < TL; j++)
            cap.tok[j] = j;
        cap.sample = sample == TB - 1 ? -1 : sample;
        cap.on_layer = on_layer;
        cap.user = &s;
        KT_OK(run(u, &in, &cap, y));
        KT_CHECKF(s.layers == 4, "%d cross-attention layers reported (4 in the tiny UNet)", s.layers);
        KT_CHECKF(s.bad_rows == 0, "%d layers reported rows other than sample %d's", s.bad_rows, sample);
        KT_CHECKF(s.max_err < 2e-6, "sample %d: max |probs - naive| = %g", sample, s.max_err);
        KT_CHECKF(s.max_sum_err < 2e-6, "sample %d: max |sum over L - 1| = %g", sample, s.max_sum_err);
        /* the aggregate: mean of the resized token means; with every token it is 1/L everywhere */
        static float mean[TT * TH * TW];
        KT_OK(kn_attn_capture_mean(&cap, mean));
        double e1 = 0, e2 = 0;
        for (int i = 0; i < TT * TH * TW; i++) {
            e1 = fmax(e1, fabs(mean[i] - s.sum[i] / s.layers));
            e2 = fmax(e2, fabs(mean[i] - 1.0 / TL));
        }
        KT_CHECKF(e1 < 1e-6, "aggregate vs the layers' own maps: %g", e1);
        KT_CHECKF(e2 < 1e-6, "aggregate of all tokens vs 1/L: %g", e2);
        kn_attn_capture_free(&cap);
    }
    /* one token: the aggregate is not flat (the map says something) and stays in (0, 1) */
    kn_attn_capture cap = {0};
    cap.ntok = 1;
    cap.tok[0] = 2;
    cap.sample = -1;
    KT_OK(run(u, &in, &cap, y));
    static float mean[TT * TH * TW];
    KT_OK(kn_attn_capture_mean(&cap, mean));
    float lo = 1, hi = 0;
    for (int i = 0; i < TT * TH * TW; i++)
        lo = fminf(lo, mean[i]), hi = fmaxf(hi, mean[i]);
    KT_CHECKF(lo > 0 && hi < 1 && hi - lo > 1e-3, "one-token map range %g..%g", lo, hi);
    kn_attn_capture_free(&cap);
    kn_unet3d_free(u);
}

KT_TEST(viz_attention_capture_thread_invariant_and_errors) {
    kn_unet3d *u = tiny_model(23);
    if (!u)
        return;
    static inputs in;
    static float y[TB * NS];
    static float sums[3][TT * TH * TW];
    make_inputs(&in);
    int saved = kn_get_threads();
    for (int t = 1; t <= 3; t++) {
        kn_set_threads(t);
        kn_attn_capture cap = {0};
        cap.ntok = 2;
        cap.tok[0] = 0, cap.tok[1] = 4;
        cap.sample = 0;
        KT_OK(run(u, &in, &cap, y));
        KT_OK(run(u, &in, &cap, y)); /* two calls: the sum over steps */
        if (cap.sum)
            memcpy(sums[t - 1], cap.sum, sizeof sums[0]);
        kn_attn_capture_free(&cap);
    }
    kn_set_threads(saved);
    KT_CHECK(!memcmp(sums[0], sums[1], sizeof sums[0]));
    KT_CHECK(!memcmp(sums[0], sums[2], sizeof sums[0]));
    KT_CHECK(kt_max_abs(sums[0], TT * TH * TW) > 0);
    /* --res: only the layers at that many rows (tiny UNet: 3 at 8x8, the mid block at 4x4) */
    static const int want[3][2] = {{TH, 3}, {TH / 2, 1}, {3, 0}};
    for (int i = 0; i < 3; i++) {
        kn_attn_capture cr = {0};
        cr.ntok = 1;
        cr.sample = -1;
        cr.res = want[i][0];
        KT_OK(run(u, &in, &cr, y));
        KT_CHECKF(cr.count == want[i][1], "res %d: %lld maps, want %d", want[i][0], (long long)cr.count, want[i][1]);
        float m1[TT * TH * TW];
        KT_CHECK((kn_attn_capture_mean(&cr, m1) == KN_OK) == (want[i][1] > 0));
        kn_attn_capture_free(&cr);
    }
    /* a token past the text, a sample past the batch: one-line errors, no crash */
    kn_attn_capture cap = {0};
    cap.ntok = 1;
    cap.tok[0] = TL;
    cap.sample = -1;
    kn_status st = run(u, &in, &cap, y);
    KT_CHECKF(st != KN_OK && strstr(kn_last_error(), "token position"), "got %d: %s", (int)st, kn_last_error());
    kn_attn_capture_free(&cap);
    cap.tok[0] = 0;
    cap.sample = TB;
    st = run(u, &in, &cap, y);
    KT_CHECKF(st != KN_OK && strstr(kn_last_error(), "sample"), "got %d: %s", (int)st, kn_last_error());
    kn_attn_capture_free(&cap);
    float m[1];
    KT_CHECK(kn_attn_capture_mean(&cap, m) != KN_OK);
    kn_unet3d_free(u);
}

static int png_size(const char *path, int *h, int *w) {
    kn_image im = {0};
    if (kn_image_read(path, &im) != KN_OK)
        return 0;
    *h = im.height, *w = im.width;
    kn_image_free(&im);
    return 1;
}

KT_TEST(viz_attention_cli_bundled_model) {
    struct stat sb;
    KT_CHECKF(stat("models/default/model_index.json", &sb) == 0, "models/default is missing");
    char out[8192], sheet[800], vid[800];
    snprintf(sheet, sizeof sheet, "%s/att.png", kt_tmpdir());
    snprintf(vid, sizeof vid, "%s/att.y4m", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s viz attention -m models/default -p 'a large red circle moving right' "
                    "--word Circle --steps 2 -t 2 -o '%s' 2>&1", kt_bin(), sheet);
    KT_CHECKF(rc == 0 && strstr(out, "'Circle' (tokens 4..4"), "viz attention failed: %s", out);
    int h = 0, w = 0;
    KT_CHECKF(png_size(sheet, &h, &w) && h == 2 * 64 && w == 8 * 64, "sheet %dx%d: %s", h, w, kn_last_error());
    rc = kt_run(out, sizeof out, "%s viz attention -m models/default -p 'a small blue square moving left' "
                "--word blue --steps 1 --frames 4 -t 2 -o '%s' 2>&1", kt_bin(), vid);
    KT_CHECKF(rc == 0, "viz attention (video) failed: %s", out);
    kn_video v = {0};
    kn_video_read_opts ro = kn_video_read_default_opts();
    KT_OK(kn_video_read(vid, &ro, &v));
    KT_CHECKF(v.frames == 4 && v.height == 64 && v.width == 64, "video %dx%dx%d", v.frames, v.height, v.width);
    kn_video_free(&v);
    /* an unknown word: one line naming it and listing the prompt's words, no file */
    char bad[800];
    snprintf(bad, sizeof bad, "%s/bad.png", kt_tmpdir());
    rc = kt_run(out, sizeof out, "%s viz attention -m models/default -p 'a large red circle' --word triangle "
                "--steps 1 -o '%s' 2>&1", kt_bin(), bad);
    KT_CHECKF(rc != 0 && strstr(out, "'triangle'") && strstr(out, "a, large, red, circle"), "got: %s", out);
    KT_CHECKF(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
    KT_CHECK(stat(bad, &sb) != 0);
    rc = kt_run(out, sizeof out, "%s viz attention -m models/default -p 'a red circle' -o '%s' 2>&1", kt_bin(), bad);
    KT_CHECKF(rc != 0 && strstr(out, "--word"), "no word: %s", out);
}

KT_TEST(viz_attention_cli_cascade_base) {
    const char *dir = kt_stage_eval_model(1);
    if (!dir)
        return;
    char out[8192], sheet[800];
    snprintf(sheet, sizeof sheet, "%s/casc.png", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s viz attention -m '%s' -p 'a red circle' --word red --steps 1 --frames 3 "
                    "-t 2 -o '%s' 2>&1", kt_bin(), dir, sheet);
    KT_CHECKF(rc == 0, "viz attention on a cascade failed: %s", out);
    int h = 0, w = 0; /* the tiny base: 16 px */
    KT_CHECKF(png_size(sheet, &h, &w) && h == 2 * 16 && w == 3 * 16, "sheet %dx%d", h, w);
}
