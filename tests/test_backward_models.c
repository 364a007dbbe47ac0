/* test_backward_models.c — backpropagation through whole models with the tape (llm.c-style):
 *   1. central finite differences through tiny UNet3D / AutoencoderKL (encode, decode) /
 *      CLIPTextModel, w.r.t. every parameter tensor (its largest-gradient element, plus random
 *      elements) and w.r.t. the inputs, for the loss sum(out * R) with a fixed random R;
 *   2. PyTorch: every parameter gradient of a tiny UNet3D and a 10-step SGD loss curve against
 *      dev/ref_unet3d_grad.py (tests/data/unet3d_grad.safetensors);
 *   3. the whole backward is bitwise identical at 1, 2 and 3 threads. */
#include "kt.h"

#include "io/model_load.h"
#include "models/clip_text.h"
#include "models/unet3d.h"
#include "models/vae.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ a gradient case
 * A model, its inputs (heap, perturbable) and a forward that returns up to 2 outputs; the loss is
 * sum_k sum(out_k * R_k) in double. */
#define MAXIO 2

typedef struct gcase gcase;
typedef int (*fwd_fn)(kn_ctx *c, gcase *g, kn_var **ins, kn_var **outs);

struct gcase {
    const char *name;
    kn_params *P;
    void *model;
    fwd_fn fwd;
    int nin;
    kn_tensor in[MAXIO];   /* heap */
    float *in_grad[MAXIO]; /* analytic gradient of the loss w.r.t. in[k] (heap) */
    float *R[MAXIO];       /* loss weights, one per output (heap, sized on first run) */
    int64_t nout_el[MAXIO];
    kn_arena *A;
    kn_tape *tape;
    /* extra forward arguments */
    const float *timesteps;
    const int32_t *ids;
    int64_t B, L;
};

/* Random weights with every path active: N(0,1)/sqrt(fan_in) matrices (kn_params_init_default),
 * 1-D weights 1 + 0.1 N, biases 0.1 N (the default zero biases would hide bias gradients). */
static void init_params_random(kn_params *P, uint64_t seed) {
    kn_params_init_default(P, seed);
    uint64_t off = 0;
    for (int i = 0; i < P->n; i++) {
        kn_var *v = &P->items[i]->var;
        int64_t n = kn_tensor_numel(&v->v);
        if (v->v.ndim == 1) {
            float *d = v->v.data;
            kn_randn_fill(d, n, seed + 1, off);
            size_t len = strlen(P->items[i]->name);
            int is_w = len >= 6 && !strcmp(P->items[i]->name + len - 6, "weight");
            for (int64_t j = 0; j < n; j++)
                d[j] = (is_w ? 1.0f : 0.0f) + 0.1f * d[j];
        }
        off += (uint64_t)n;
    }
}

/* Runs the forward (tape or not); returns the loss, or NAN on failure. */
static double run_case(gcase *g, int with_grad) {
    kn_arena_reset(g->A, 0);
    if (g->tape)
        kn_tape_clear(g->tape);
    kn_ctx c;
    kn_ctx_init(&c, g->A, with_grad ? g->tape : NULL);
    kn_var *ins[MAXIO] = {0}, *outs[MAXIO] = {0};
    for (int k = 0; k < g->nin; k++) {
        ins[k] = kn_var_wrap(&c, &g->in[k]);
        if (ins[k])
            ins[k]->requires_grad = with_grad;
    }
    int nout = g->fwd(&c, g, ins, outs);
    if (kn_ctx_status(&c) != KN_OK || nout <= 0) {
        kt_fail(__FILE__, __LINE__, "%s forward: %s", g->name, kn_last_error());
        return NAN;
    }
    double L = 0;
    for (int k = 0; k < nout; k++) {
        int64_t n = kn_tensor_numel(&outs[k]->v);
        if (!g->R[k]) {
            g->R[k] = malloc((size_t)n * sizeof(float));
            kn_randn_fill(g->R[k], n, 777 + (uint64_t)k, 0);
            g->nout_el[k] = n;
        }
        const float *y = outs[k]->v.data;
        for (int64_t i = 0; i < n; i++)
            L += (double)y[i] * g->R[k][i];
    }
    if (with_grad) {
        for (int k = 0; k < nout; k++) {
            kn_var *o = outs[k];
            if (kn_tensor_alloc(g->A, &o->g, KN_F32, o->v.ndim, o->v.shape) != KN_OK) {
                kt_fail(__FILE__, __LINE__, "%s: %s", g->name, kn_last_error());
                return NAN;
            }
            memcpy(o->g.data, g->R[k], (size_t)g->nout_el[k] * sizeof(float));
        }
        kn_status st = kn_backward(&c, outs[0], 0.0f);
        if (st != KN_OK) {
            kt_fail(__FILE__, __LINE__, "%s backward: %s", g->name, kn_last_error());
            return NAN;
        }
        for (int k = 0; k < g->nin; k++) {
            int64_t n = kn_tensor_numel(&g->in[k]);
            if (!g->in_grad[k])
                g->in_grad[k] = malloc((size_t)n * sizeof(float));
            if (ins[k]->g.data)
                memcpy(g->in_grad[k], ins[k]->g.data, (size_t)n * sizeof(float));
            else
                memset(g->in_grad[k], 0, (size_t)n * sizeof(float));
        }
    }
    return L;
}

/* Analytic gradients of every parameter (into P->grad_block) and of the inputs. */
static double grad_case(gcase *g) {
    if (!g->P->grad_block)
        KT_OK(kn_params_alloc_grads(g->P));
    kn_params_zero_grads(g->P);
    return run_case(g, 1);
}

typedef struct {
    int checked, failed;
    double atol; /* absolute floor: float noise of the loss grows with the gradients' scale */
    double worst_rel;
    char worst[200];
} fd_stats;

#define FD_EPS 1e-2f

static double central(gcase *g, float *x, int64_t i, float h) {
    float x0 = x[i];
    x[i] = x0 + h;
    double lp = run_case(g, 0);
    x[i] = x0 - h;
    double lm = run_case(g, 0);
    x[i] = x0;
    return (lp - lm) / ((double)(x0 + h) - (double)(x0 - h));
}

/* Central difference at x[i], compared with the analytic an. The random tiny models are strongly
 * nonlinear (gradients up to ~50): a plain central difference with h = 1e-2 is off by a few percent
 * (its error shrinks 4x per halving of h, as it should: O(h^2)), so the h^2 term is removed by
 * Richardson extrapolation, (4 D(h/2) - D(h)) / 3, which leaves O(h^4) and the float noise. */
static void fd_one(gcase *g, float *x, int64_t i, double an, const char *label, fd_stats *s) {
    double fd = (4.0 * central(g, x, i, 0.5f * FD_EPS) - central(g, x, i, FD_EPS)) / 3.0;
    double big = fmax(fabs(fd), fabs(an)), err = fabs(fd - an);
    s->checked++;
    if (!(err <= 2e-2 * big + s->atol)) {
        s->failed++;
        kt_fail(__FILE__, __LINE__, "%s: %s[%lld]: finite difference %.6g, backward %.6g", g->name, label,
                (long long)i, fd, an);
    }
    if (big > 10 * s->atol && err / big > s->worst_rel) {
        s->worst_rel = err / big;
        snprintf(s->worst, sizeof s->worst, "%s[%lld] fd %.5g an %.5g", label, (long long)i, fd, an);
    }
}

/* The largest-|gradient| element of x, plus `extra` pseudo-random ones. */
static void fd_tensor(gcase *g, float *x, const float *an, int64_t n, int extra, const char *label, fd_stats *s) {
    int64_t am = 0;
    for (int64_t i = 1; i < n; i++)
        if (fabsf(an[i]) > fabsf(an[am]))
            am = i;
    fd_one(g, x, am, an[am], label, s);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = label; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (int e = 0; e < extra && n > 1; e++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        int64_t i = (int64_t)((h >> 33) % (uint64_t)n);
        if (i != am)
            fd_one(g, x, i, an[i], label, s);
    }
}

/* FD over every `every`-th parameter tensor (1 + extra elements each) and every tensor whose name
 * contains one of `more` (2 extra elements), and over every input (5 elements). */
static void fd_model(gcase *g, int every, int extra, const char *const *more) {
    double L = grad_case(g);
    KT_CHECK(isfinite(L));
    if (!isfinite(L))
        return;
    /* the analytic gradients are overwritten by nothing below (FD runs have no tape) */
    fd_stats s = {0};
    kn_params *P = g->P;
    double gmax = kt_max_abs(P->grad_block, (int64_t)P->numel);
    for (int k = 0; k < g->nin; k++)
        gmax = fmax(gmax, kt_max_abs(g->in_grad[k], kn_tensor_numel(&g->in[k])));
    s.atol = fmax(1e-3, 1e-4 * gmax);
    int tensors = 0;
    for (int i = 0; i < P->n; i++) {
        kn_var *v = &P->items[i]->var;
        int x = i % every == 0 ? extra : -1;
        for (const char *const *m = more; m && *m; m++)
            if (strstr(P->items[i]->name, *m))
                x = 2;
        if (x < 0)
            continue;
        tensors++;
        fd_tensor(g, v->v.data, v->g.data, kn_tensor_numel(&v->v), x, P->items[i]->name, &s);
    }
    static const char *in_names[MAXIO] = {"input0", "input1"};
    for (int k = 0; k < g->nin; k++)
        fd_tensor(g, g->in[k].data, g->in_grad[k], kn_tensor_numel(&g->in[k]), 4, in_names[k], &s);
    printf("    %s: %d finite-difference checks on %d of %d parameter tensors + inputs (max |grad| %.3g), "
           "worst relative error %.2e (%s)\n", g->name, s.checked, tensors, P->n, gmax, s.worst_rel, s.worst);
    KT_CHECK(s.checked > tensors);
    KT_CHECK(s.failed == 0);
}

static void gcase_free(gcase *g) {
    for (int k = 0; k < MAXIO; k++) {
        if (g->in[k].data)
            kn_tensor_free(&g->in[k]);
        free(g->in_grad[k]);
        free(g->R[k]);
    }
    kn_arena_free(g->A);
    kn_tape_free(g->tape);
}

static void gcase_input(gcase *g, int ndim, const int64_t *shape, uint64_t seed) {
    kn_tensor *t = &g->in[g->nin++];
    KT_OK(kn_tensor_alloc(NULL, t, KN_F32, ndim, shape));
    kn_randn_fill(t->data, kn_tensor_numel(t), seed, 0);
}

/* ------------------------------------------------------------------ UNet3D */

static kn_unet3d_config tiny_unet_config(void) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 4, 4, 8);
    return c;
}

static int unet_fwd(kn_ctx *c, gcase *g, kn_var **ins, kn_var **outs) {
    outs[0] = kn_unet3d_forward(c, g->model, ins[0], g->timesteps, ins[1], NULL, NULL);
    return outs[0] ? 1 : 0;
}

static const float unet_ts[2] = {981.0f, 37.0f};

static void unet_case(gcase *g, kn_unet3d *u, int64_t B, int64_t T, int64_t H, int64_t W, int64_t Ltext) {
    memset(g, 0, sizeof *g);
    g->name = "unet3d";
    g->P = &u->P;
    g->model = u;
    g->fwd = unet_fwd;
    g->timesteps = unet_ts;
    g->A = kn_arena_new(64 << 20);
    g->tape = kn_tape_new();
    gcase_input(g, 5, (int64_t[]){B, u->cfg.in_channels, T, H, W}, 11);
    gcase_input(g, 3, (int64_t[]){B, Ltext, u->cfg.cross_attention_dim}, 12);
}

KT_TEST(backward_unet3d_finite_differences) {
    kn_unet3d_config cfg = tiny_unet_config();
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (!u)
        return;
    init_params_random(&u->P, 5);
    gcase g;
    unet_case(&g, u, 2, 3, 4, 4, 5);
    /* every module type gets extra samples */
    static const char *const more[] = {"conv_in.", "time_embedding", "transformer_in.transformer_blocks.0.attn1.to_",
                                       "conv_shortcut", "temp_convs.0.conv1.", "temp_convs.0.conv4.",
                                       "down_blocks.0.attentions.0.proj_in", "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_",
                                       "mid_block.attentions.0.transformer_blocks.0.ff.net", "temp_attentions.0.proj_out",
                                       "samplers", "conv_norm_out", "conv_out", "time_emb_proj", "down_blocks.0.resnets.0.norm1.", NULL};
    fd_model(&g, 3, 0, more);
    gcase_free(&g);
    kn_unet3d_free(u);
}

KT_TEST(backward_unet3d_bitwise_across_threads) {
    kn_unet3d_config cfg = tiny_unet_config();
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (!u)
        return;
    init_params_random(&u->P, 6);
    gcase g;
    unet_case(&g, u, 2, 4, 6, 6, 5);
    int prev = kn_get_threads();
    float *ref = NULL, *ref_in[2] = {0};
    double Lref = 0;
    size_t np = u->P.numel;
    for (int th = 1; th <= 3; th++) {
        kn_set_threads(th);
        double L = grad_case(&g);
        KT_CHECK(isfinite(L));
        if (th == 1) {
            Lref = L;
            ref = malloc(np * sizeof(float));
            memcpy(ref, u->P.grad_block, np * sizeof(float));
            for (int k = 0; k < 2; k++) {
                size_t n = (size_t)kn_tensor_numel(&g.in[k]);
                ref_in[k] = malloc(n * sizeof(float));
                memcpy(ref_in[k], g.in_grad[k], n * sizeof(float));
            }
            KT_CHECK(kt_max_abs(ref, (int64_t)np) > 0);
        } else {
            KT_CHECKF(L == Lref, "threads %d: loss %.9g != %.9g", th, L, Lref);
            KT_CHECKF(!memcmp(ref, u->P.grad_block, np * sizeof(float)),
                      "threads %d: parameter gradients differ from 1 thread (max %.3g)", th,
                      kt_max_abs_diff(ref, u->P.grad_block, (int64_t)np));
            for (int k = 0; k < 2; k++)
                KT_CHECKF(!memcmp(ref_in[k], g.in_grad[k], (size_t)kn_tensor_numel(&g.in[k]) * sizeof(float)),
                          "threads %d: input %d gradient differs from 1 thread", th, k);
        }
    }
    kn_set_threads(prev);
    free(ref);
    free(ref_in[0]);
    free(ref_in[1]);
    gcase_free(&g);
    kn_unet3d_free(u);
}

/* --------------------------------------------------------------------- VAE */

static kn_vae_config tiny_vae_config(void) {
    kn_vae_config c = kn_vae_config_default();
    c.nblocks = 2;
    c.block_out_channels[0] = 8;
    c.block_out_channels[1] = 16;
    c.layers_per_block = 1;
    c.norm_num_groups = 4;
    return c;
}

static int vae_dec_fwd(kn_ctx *c, gcase *g, kn_var **ins, kn_var **outs) {
    outs[0] = kn_vae_decode(c, g->model, ins[0], NULL, NULL);
    return outs[0] ? 1 : 0;
}

static int vae_enc_fwd(kn_ctx *c, gcase *g, kn_var **ins, kn_var **outs) {
    if (kn_vae_encode(c, g->model, ins[0], &outs[0], &outs[1], NULL, NULL) != KN_OK)
        return 0;
    return 2;
}

KT_TEST(backward_vae_finite_differences) {
    kn_vae_config cfg = tiny_vae_config();
    kn_vae *v = kn_vae_new(&cfg);
    KT_CHECKF(v != NULL, "%s", kn_last_error());
    if (!v)
        return;
    init_params_random(&v->P, 7);
    static const char *const more[] = {"conv_shortcut", "mid_block.attentions.0", "samplers", "quant_conv",
                                       "conv_norm_out", NULL};
    gcase g;
    memset(&g, 0, sizeof g);
    g.name = "vae.decode";
    g.P = &v->P;
    g.model = v;
    g.fwd = vae_dec_fwd;
    g.A = kn_arena_new(32 << 20);
    g.tape = kn_tape_new();
    gcase_input(&g, 4, (int64_t[]){2, cfg.latent_channels, 3, 4}, 21);
    fd_model(&g, 1, 0, more);
    /* the decoder does not touch the encoder: those gradients must stay exactly zero */
    int zero_ok = 1, nonzero_dec = 0;
    for (int i = 0; i < v->P.n; i++) {
        const kn_param *p = v->P.items[i];
        double m = kt_max_abs(p->var.g.data, kn_tensor_numel(&p->var.v));
        if (!strncmp(p->name, "encoder.", 8) || !strncmp(p->name, "quant_conv.", 11))
            zero_ok &= m == 0;
        else
            nonzero_dec += m > 0;
    }
    KT_CHECKF(zero_ok, "decode gave an encoder parameter a gradient");
    KT_CHECK(nonzero_dec > 0);
    gcase_free(&g);

    memset(&g, 0, sizeof g);
    g.name = "vae.encode";
    g.P = &v->P;
    g.model = v;
    g.fwd = vae_enc_fwd;
    g.A = kn_arena_new(32 << 20);
    g.tape = kn_tape_new();
    gcase_input(&g, 4, (int64_t[]){2, cfg.in_channels, 6, 8}, 22);
    fd_model(&g, 1, 0, more);
    gcase_free(&g);
    kn_vae_free(v);
}

/* -------------------------------------------------------------------- CLIP */

static int clip_fwd(kn_ctx *c, gcase *g, kn_var **ins, kn_var **outs) {
    (void)ins;
    outs[0] = kn_clip_text_forward(c, g->model, g->ids, g->B, g->L, 0, NULL, NULL, NULL);
    return outs[0] ? 1 : 0;
}

KT_TEST(backward_clip_text_finite_differences) {
    static const int acts[2] = {KN_ACT_QUICK_GELU, KN_ACT_GELU};
    for (int a = 0; a < 2; a++) {
        kn_clip_text_config cfg = kn_clip_text_config_default();
        cfg.vocab_size = 50;
        cfg.hidden_size = 16;
        cfg.intermediate_size = 32;
        cfg.num_hidden_layers = 2;
        cfg.num_attention_heads = 2;
        cfg.max_position_embeddings = 9;
        cfg.hidden_act = (kn_act)acts[a];
        kn_clip_text *m = kn_clip_text_new(&cfg);
        KT_CHECKF(m != NULL, "%s", kn_last_error());
        if (!m)
            return;
        init_params_random(&m->P, 8 + (uint64_t)a);
        /* token 3 repeats: its embedding row receives the sum of two positions' gradients */
        static const int32_t ids[2 * 7] = {49, 3, 17, 3, 8, 0, 2, 49, 21, 5, 44, 12, 3, 3};
        gcase g;
        memset(&g, 0, sizeof g);
        g.name = a ? "clip_text(gelu)" : "clip_text(quick_gelu)";
        g.P = &m->P;
        g.model = m;
        g.fwd = clip_fwd;
        g.ids = ids;
        g.B = 2;
        g.L = 7;
        g.A = kn_arena_new(16 << 20);
        g.tape = kn_tape_new();
        static const char *const more[] = {"embedding", "self_attn", "mlp", "final_layer_norm", NULL};
        fd_model(&g, 1, 1, more);
        /* rows of tokens that do not occur get exactly zero gradient; used rows do not */
        kn_param *te = kn_params_find(&m->P, "text_model.embeddings.token_embedding.weight");
        KT_CHECK(te != NULL);
        if (te) {
            const float *gd = te->var.g.data;
            KT_CHECK(kt_max_abs(gd + 1 * 16, 16) == 0 && kt_max_abs(gd + 48 * 16, 16) == 0);
            KT_CHECK(kt_max_abs(gd + 3 * 16, 16) > 0 && kt_max_abs(gd + 49 * 16, 16) > 0);
            /* FD on a row used twice, element by element */
            fd_stats s = {0};
            s.atol = 1e-3;
            for (int j = 0; j < 16; j += 5)
                fd_one(&g, te->var.v.data, 3 * 16 + j, gd[3 * 16 + j], "token_embedding[3]", &s);
            KT_CHECK(s.failed == 0);
        }
        gcase_free(&g);
        kn_clip_text_free(m);
    }
}

/* ------------------------------------------------- PyTorch (llm.c-style) check
 * dev/ref_unet3d_grad.py defines the diffusers UNet3D in PyTorch (checked there against the
 * diffusers fixture), and dumps a tiny random model, a fixed batch, the MSE loss, the gradient of
 * every parameter and the loss before each of 10 SGD steps. */
#define UNET_GRAD_FX "tests/data/unet3d_grad.safetensors"

/* MSE loss of out against target; seeds out->g with dL/dout when with_grad. */
static double unet_mse_step(kn_unet3d *u, kn_arena *A, kn_tape *tape, const kn_tensor *sample, const float *ts,
                            const kn_tensor *text, const kn_tensor *target, kn_tensor *out_copy) {
    kn_arena_reset(A, 0);
    kn_tape_clear(tape);
    kn_ctx c;
    kn_ctx_init(&c, A, tape);
    kn_var *x = kn_var_wrap(&c, sample), *t = kn_var_wrap(&c, text);
    kn_var *y = kn_unet3d_forward(&c, u, x, ts, t, NULL, NULL);
    if (kn_ctx_status(&c) != KN_OK || !y) {
        kt_fail(__FILE__, __LINE__, "unet3d forward: %s", kn_last_error());
        return NAN;
    }
    int64_t n = kn_tensor_numel(&y->v);
    if (n != kn_tensor_numel(target)) {
        kt_fail(__FILE__, __LINE__, "unet3d output has %lld elements, target %lld", (long long)n,
                (long long)kn_tensor_numel(target));
        return NAN;
    }
    if (out_copy)
        memcpy(out_copy->data, y->v.data, (size_t)n * sizeof(float));
    if (kn_tensor_alloc(A, &y->g, KN_F32, y->v.ndim, y->v.shape) != KN_OK) {
        kt_fail(__FILE__, __LINE__, "%s", kn_last_error());
        return NAN;
    }
    const float *o = y->v.data, *tg = target->data;
    float *dy = y->g.data;
    double L = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)o[i] - tg[i];
        L += d * d;
        dy[i] = (float)(2.0 * d / (double)n);
    }
    kn_status st = kn_backward(&c, y, 0.0f);
    if (st != KN_OK) {
        kt_fail(__FILE__, __LINE__, "unet3d backward: %s", kn_last_error());
        return NAN;
    }
    return L / (double)n;
}

KT_TEST(backward_unet3d_matches_pytorch_grads_and_sgd) {
    kn_safetensors *st = kn_st_open(UNET_GRAD_FX);
    KT_CHECKF(st != NULL, "cannot read %s (run dev/ref_unet3d_grad.py): %s", UNET_GRAD_FX, kn_last_error());
    if (!st)
        return;
    kn_unet3d_config cfg = tiny_unet_config(); /* the same sizes as the script's cfg */
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    kn_tensor sample, tsv, text, target, ref_out, ref_loss, losses, lr;
    KT_OK(kn_st_get(st, "input.sample", &sample));
    KT_OK(kn_st_get(st, "input.timesteps", &tsv));
    KT_OK(kn_st_get(st, "input.text", &text));
    KT_OK(kn_st_get(st, "input.target", &target));
    KT_OK(kn_st_get(st, "out.sample", &ref_out));
    KT_OK(kn_st_get(st, "loss", &ref_loss));
    KT_OK(kn_st_get(st, "sgd.losses", &losses));
    KT_OK(kn_st_get(st, "sgd.lr", &lr));
    if (!u || kt_current_failed())
        goto out;
    int unused = -1;
    KT_OK(kn_params_load(&u->P, &st, 1, &unused));
    KT_OK(kn_params_alloc_grads(&u->P));
    if (kt_current_failed())
        goto out;
    /* tensors in the file that are not parameters: 8 inputs/outputs/curve + one grad.* per parameter */
    KT_CHECKF(unused == 8 + u->P.n, "%d unused tensors in %s, expected %d", unused, UNET_GRAD_FX, 8 + u->P.n);

    kn_arena *A = kn_arena_new(64 << 20);
    kn_tape *tape = kn_tape_new();
    kn_tensor out;
    KT_OK(kn_tensor_alloc(NULL, &out, KN_F32, ref_out.ndim, ref_out.shape));
    const float *ts = tsv.data;
    double L = unet_mse_step(u, A, tape, &sample, ts, &text, &target, &out);
    int64_t no = kn_tensor_numel(&ref_out);
    double oerr = kt_max_abs_diff(out.data, ref_out.data, no), omax = kt_max_abs(ref_out.data, no);
    KT_CHECKF(oerr <= 1e-4 * omax, "out.sample: max err %.3g > 1e-4 * %.3g", oerr, omax);
    double lref = ((const float *)ref_loss.data)[0];
    KT_CHECKF(fabs(L - lref) <= 1e-5 * fabs(lref), "loss %.9g, PyTorch %.9g", L, lref);

    /* every parameter gradient, tolerance relative to the tensor's largest reference gradient */
    double worst = 0;
    const char *worst_name = "";
    int compared = 0;
    for (int i = 0; i < u->P.n; i++) {
        const kn_param *p = u->P.items[i];
        char key[300];
        snprintf(key, sizeof key, "grad.%s", p->name);
        kn_tensor gref;
        if (kn_st_get(st, key, &gref) != KN_OK || kn_tensor_numel(&gref) != kn_tensor_numel(&p->var.v)) {
            kt_fail(__FILE__, __LINE__, "%s missing or of the wrong size in %s", key, UNET_GRAD_FX);
            continue;
        }
        int64_t n = kn_tensor_numel(&gref);
        double m = kt_max_abs(gref.data, n), e = kt_max_abs_diff(p->var.g.data, gref.data, n);
        double rel = m > 0 ? e / m : e;
        compared++;
        if (rel > worst) {
            worst = rel;
            worst_name = p->name;
        }
        KT_CHECKF(e <= 1e-4 * m + 1e-9, "%s: max err %.3g, max |ref| %.3g (rel %.3g)", key, e, m, rel);
    }
    printf("    unet3d vs PyTorch: out err %.2e (max %.3g), loss %.9g vs %.9g, %d gradients, worst err/max %.2e (%s)\n",
           oerr, omax, L, lref, compared, worst, worst_name);
    KT_CHECK(compared == u->P.n);

    /* 10 plain SGD steps on the same batch: loss before each step */
    float lrv = ((const float *)lr.data)[0];
    const float *ref_l = losses.data;
    double worst_l = 0, c_first = 0, c_last = 0;
    for (int step = 0; step < 10 && (int64_t)step < kn_tensor_numel(&losses); step++) {
        kn_params_zero_grads(&u->P);
        double ls = unet_mse_step(u, A, tape, &sample, ts, &text, &target, NULL);
        double rel = fabs(ls - ref_l[step]) / fabs(ref_l[step]);
        worst_l = fmax(worst_l, rel);
        c_first = step == 0 ? ls : c_first;
        c_last = ls;
        /* float32 C against float64 PyTorch: the gap grows over the steps (measured 9e-5 at step 9) */
        KT_CHECKF(rel <= 2e-4, "SGD step %d: loss %.9g, PyTorch %.9g (rel %.3g)", step, ls, ref_l[step], rel);
        for (size_t j = 0; j < u->P.numel; j++)
            u->P.block[j] -= lrv * u->P.grad_block[j];
    }
    printf("    SGD lr %g: loss %.6f -> %.6f (PyTorch %.6f -> %.6f), worst relative difference %.2e\n", lrv,
           c_first, c_last, ref_l[0], ref_l[9], worst_l);
    KT_CHECK(ref_l[9] < ref_l[0]);
    kn_tensor_free(&out);
    kn_tape_free(tape);
    kn_arena_free(A);
out:
    kn_unet3d_free(u);
    kn_st_close(st);
}

/* Non-divisible H, W: the upsampler interpolates to the skip's size (diffusers
 * forward_upsample_size); the gradient must flow back through that resize and the stride-2 conv. */
KT_TEST(backward_unet3d_odd_size_finite_differences) {
    kn_unet3d_config cfg = tiny_unet_config();
    kn_unet3d *u = kn_unet3d_new(&cfg);
    KT_CHECKF(u != NULL, "%s", kn_last_error());
    if (!u)
        return;
    init_params_random(&u->P, 9);
    gcase g;
    unet_case(&g, u, 1, 3, 5, 3, 4);
    g.name = "unet3d(5x3)";
    static const char *const more[] = {"upsamplers", "downsamplers", "conv_in.weight", "up_blocks.0.resnets.0.conv1",
                                       NULL};
    fd_model(&g, 100000, 0, more);
    gcase_free(&g);
    kn_unet3d_free(u);
}

/* AutoencoderKL clamps logvar to [-30, 20] (DiagonalGaussianDistribution). Where the clamp is
 * active the loss does not depend on the pre-clamp value, so its gradient must be zero there. */
KT_TEST(backward_vae_logvar_clamp_gradient) {
    kn_vae_config cfg = tiny_vae_config();
    kn_vae *v = kn_vae_new(&cfg);
    KT_CHECKF(v != NULL, "%s", kn_last_error());
    if (!v)
        return;
    init_params_random(&v->P, 10);
    kn_param *qb = kn_params_find(&v->P, "quant_conv.bias");
    KT_CHECK(qb != NULL);
    if (!qb) {
        kn_vae_free(v);
        return;
    }
    int L = cfg.latent_channels;
    float *b = qb->var.v.data;
    b[L] = 100.0f;      /* logvar channel 0: far above 20, clamped everywhere */
    b[L + 1] = -100.0f; /* logvar channel 1: far below -30, clamped everywhere */
    gcase g;
    memset(&g, 0, sizeof g);
    g.name = "vae.encode(clamped)";
    g.P = &v->P;
    g.model = v;
    g.fwd = vae_enc_fwd;
    g.A = kn_arena_new(32 << 20);
    g.tape = kn_tape_new();
    gcase_input(&g, 4, (int64_t[]){1, cfg.in_channels, 4, 4}, 23);
    double Lo = grad_case(&g);
    KT_CHECK(isfinite(Lo));
    const float *gb = qb->var.g.data;
    fd_stats s = {0};
    s.atol = 1e-3;
    for (int k = 0; k < 2 * L; k++)
        fd_one(&g, b, k, gb[k], "quant_conv.bias", &s);
    /* KNOWN BUG (src/models/vae.c, kn_vae_encode): the clamp is applied in place on the logvar
     * slice and is not recorded on the tape, so backward passes the gradient through clamped
     * elements: d loss / d quant_conv.bias[L] comes out as sum(R_logvar) instead of 0. */
    KT_CHECKF(gb[L] == 0.0f && gb[L + 1] == 0.0f,
              "vae encode: logvar clamp [-30, 20] is not on the tape (src/models/vae.c): gradient of clamped "
              "logvar channels is %.4g / %.4g, expected 0", gb[L], gb[L + 1]);
    gcase_free(&g);
    kn_vae_free(v);
}

/* CLIPTextModel pooler_output under a tape: a loss on the pooled state must reach the weights. */
KT_TEST(backward_clip_pooled_output_gradient) {
    kn_clip_text_config cfg = kn_clip_text_config_default();
    cfg.vocab_size = 50;
    cfg.hidden_size = 16;
    cfg.intermediate_size = 32;
    cfg.num_hidden_layers = 1;
    cfg.num_attention_heads = 2;
    cfg.max_position_embeddings = 8;
    kn_clip_text *m = kn_clip_text_new(&cfg);
    KT_CHECKF(m != NULL, "%s", kn_last_error());
    if (!m)
        return;
    init_params_random(&m->P, 12);
    KT_OK(kn_params_alloc_grads(&m->P));
    static const int32_t ids[5] = {49, 7, 3, 12, 1};
    kn_arena *A = kn_arena_new(8 << 20);
    kn_tape *tape = kn_tape_new();
    kn_ctx c;
    kn_ctx_init(&c, A, tape);
    kn_var *pooled = NULL;
    kn_var *out = kn_clip_text_forward(&c, m, ids, 1, 5, 0, &pooled, NULL, NULL);
    KT_OK(kn_ctx_status(&c));
    if (out && pooled) {
        KT_OK(kn_backward(&c, pooled, 1.0f));
        kn_param *w = kn_params_find(&m->P, "text_model.final_layer_norm.weight");
        double gmax = w ? kt_max_abs(w->var.g.data, 16) : 0;
        /* KNOWN BUG (src/models/clip_text.c): pooled is a plain copy (kn_var_new + memcpy), not a
         * recorded op, so it has requires_grad 0 and backward from it changes nothing. */
        KT_CHECKF(pooled->requires_grad && gmax > 0,
                  "clip text: pooler_output is not on the tape (src/models/clip_text.c): requires_grad %d, "
                  "max |d final_layer_norm.weight| %.3g after backward from it", pooled->requires_grad, gmax);
    }
    kn_tape_free(tape);
    kn_arena_free(A);
    kn_clip_text_free(m);
}
