/* unet3d.c — UNet3DConditionModel (diffusers 0.25: unet_3d_condition.py, unet_3d_blocks.py).
 *
 * Heads: diffusers passes the config's `attention_head_dim` (n) on as `num_attention_heads`, and
 * each block builds Transformer2DModel(C // n, n): so every spatial and temporal attention has
 * C / n heads of width n. transformer_in is the exception: 8 heads of width n. */
#include "models/unet3d.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

kn_unet3d_config kn_unet3d_config_default(void) {
    kn_unet3d_config c;
    memset(&c, 0, sizeof c);
    c.in_channels = 4;
    c.out_channels = 4;
    c.nblocks = 4;
    static const int boc[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++)
        c.block_out_channels[i] = boc[i];
    c.down_types[0] = c.down_types[1] = c.down_types[2] = KN_BLOCK_CROSS_ATTN_DOWN;
    c.down_types[3] = KN_BLOCK_DOWN;
    c.up_types[0] = KN_BLOCK_UP;
    c.up_types[1] = c.up_types[2] = c.up_types[3] = KN_BLOCK_CROSS_ATTN_UP;
    c.layers_per_block = 2;
    c.downsample_padding = 1;
    c.mid_block_scale_factor = 1.0f;
    c.norm_num_groups = 32;
    c.norm_eps = 1e-5f;
    c.cross_attention_dim = 1024;
    c.attention_head_dim = 64;
    c.temporal_attention = 1;
    return c;
}

kn_unet3d_config kn_unet3d_config_small(int n, const int *widths, const int *attn, int head_dim, int groups,
                                        int cross_dim) {
    kn_unet3d_config u = kn_unet3d_config_default();
    u.nblocks = n;
    for (int i = 0; i < n && i < KN_UNET_MAX_BLOCKS; i++) {
        u.block_out_channels[i] = widths[i];
        u.down_types[i] = attn[i] ? KN_BLOCK_CROSS_ATTN_DOWN : KN_BLOCK_DOWN;
        u.up_types[n - 1 - i] = attn[i] ? KN_BLOCK_CROSS_ATTN_UP : KN_BLOCK_UP;
    }
    u.layers_per_block = 1;
    u.norm_num_groups = groups;
    u.attention_head_dim = head_dim;
    u.cross_attention_dim = cross_dim;
    u.in_channels = u.out_channels = 4;
    return u;
}

static kn_status check_config(const kn_unet3d_config *c) {
    if (c->nblocks < 1 || c->nblocks > KN_UNET_MAX_BLOCKS)
        return kn_fail(KN_ERR_ARG, "unet3d: %d blocks (1..%d supported)", c->nblocks, KN_UNET_MAX_BLOCKS);
    if (c->in_channels < 1 || c->out_channels < 1 || c->layers_per_block < 1 || c->norm_num_groups < 1 ||
        c->attention_head_dim < 1 || c->cross_attention_dim < 1)
        return kn_fail(KN_ERR_ARG, "unet3d: channel, layer, group and head counts must be positive");
    if (c->cond_channels < 0)
        return kn_fail(KN_ERR_ARG, "unet3d: cond_channels = %d must be >= 0", c->cond_channels);
    int n = c->attention_head_dim;
    for (int i = 0; i < c->nblocks; i++) {
        int C = c->block_out_channels[i];
        if (C < 1 || C % c->norm_num_groups)
            return kn_fail(KN_ERR_ARG, "unet3d: block_out_channels[%d] = %d is not a positive multiple of "
                           "norm_num_groups %d", i, C, c->norm_num_groups);
        if (C % n)
            return kn_fail(KN_ERR_ARG, "unet3d: block_out_channels[%d] = %d is not a multiple of "
                           "attention_head_dim %d", i, C, n);
    }
    return KN_OK;
}

static void decl_block(kn_unet3d *u, kn_unet_block *b, kn_block_type type, int nlayers, int in, int out, int prev,
                       int add_sampler, const char *prefix) {
    const kn_unet3d_config *c = &u->cfg;
    int temb = 4 * c->block_out_channels[0], G = c->norm_num_groups, n = c->attention_head_dim;
    float eps = c->norm_eps;
    int attn = type == KN_BLOCK_CROSS_ATTN_DOWN || type == KN_BLOCK_CROSS_ATTN_UP;
    int upb = type == KN_BLOCK_UP || type == KN_BLOCK_CROSS_ATTN_UP;
    b->type = type;
    b->nlayers = nlayers;
    b->resnets = calloc((size_t)nlayers, sizeof *b->resnets);
    KN_ASSERT(b->resnets);
    if (u->has_tconv) {
        b->tconvs = calloc((size_t)nlayers, sizeof *b->tconvs);
        KN_ASSERT(b->tconvs);
    }
    if (attn) {
        b->attns = calloc((size_t)nlayers, sizeof *b->attns);
        b->nattn = nlayers;
        KN_ASSERT(b->attns);
        if (u->has_tattn) {
            b->tattns = calloc((size_t)nlayers, sizeof *b->tattns);
            KN_ASSERT(b->tattns);
        }
    }
    char name[256];
    for (int i = 0; i < nlayers; i++) {
        int rin;
        if (upb) {
            int skip = (i == nlayers - 1) ? in : out;
            rin = (i == 0 ? prev : out) + skip;
        } else {
            rin = i == 0 ? in : out;
        }
        snprintf(name, sizeof name, "%s.resnets.%d", prefix, i);
        kn_resnet_decl(&b->resnets[i], &u->P, rin, out, temb, G, eps, name);
        if (b->tconvs) {
            snprintf(name, sizeof name, "%s.temp_convs.%d", prefix, i);
            kn_tconv_decl(&b->tconvs[i], &u->P, out, G, 1e-5f, name);
        }
        if (attn) {
            snprintf(name, sizeof name, "%s.attentions.%d", prefix, i);
            kn_t2d_decl(&b->attns[i], &u->P, out, out / n, n, c->cross_attention_dim, 1, G, name);
            if (b->tattns) {
                snprintf(name, sizeof name, "%s.temp_attentions.%d", prefix, i);
                kn_ttemp_decl(&b->tattns[i], &u->P, out, out / n, n, 1, G, name);
            }
        }
    }
    b->has_sampler = add_sampler;
    if (add_sampler) {
        if (upb) {
            snprintf(name, sizeof name, "%s.upsamplers.0", prefix);
            kn_upsample_decl(&b->sampler, &u->P, out, name);
        } else {
            snprintf(name, sizeof name, "%s.downsamplers.0", prefix);
            kn_downsample_decl(&b->sampler, &u->P, out, c->downsample_padding, name);
        }
    }
}

static void free_block(kn_unet_block *b) {
    for (int i = 0; b->attns && i < b->nattn; i++)
        free(b->attns[i].blocks);
    for (int i = 0; b->tattns && i < b->nattn; i++)
        free(b->tattns[i].blocks);
    free(b->resnets);
    free(b->tconvs);
    free(b->attns);
    free(b->tattns);
}

kn_unet3d *kn_unet3d_new(const kn_unet3d_config *cfg) {
    if (check_config(cfg) != KN_OK)
        return NULL;
    kn_unet3d *u = calloc(1, sizeof *u);
    if (!u) {
        kn_fail(KN_ERR_NOMEM, "unet3d: out of memory");
        return NULL;
    }
    u->cfg = *cfg;
    const kn_unet3d_config *c = &u->cfg;
    int C0 = c->block_out_channels[0], nb = c->nblocks, n = c->attention_head_dim, G = c->norm_num_groups;
    u->has_tconv = !c->spatial_only;
    u->has_tattn = !c->spatial_only && c->temporal_attention;
    kn_conv_decl(&u->conv_in, &u->P, c->in_channels + c->cond_channels, C0, 3, 1, 1, 1, "conv_in");
    kn_linear_decl(&u->time_lin1, &u->P, C0, 4 * C0, 1, "time_embedding.linear_1");
    kn_linear_decl(&u->time_lin2, &u->P, 4 * C0, 4 * C0, 1, "time_embedding.linear_2");
    if (c->fps_cond) {
        kn_linear_decl(&u->fps_lin1, &u->P, C0, 4 * C0, 1, "fps_embedding.linear_1");
        kn_linear_decl(&u->fps_lin2, &u->P, 4 * C0, 4 * C0, 1, "fps_embedding.linear_2");
    }
    if (c->noise_aug_cond) {
        kn_linear_decl(&u->aug_lin1, &u->P, C0, 4 * C0, 1, "aug_embedding.linear_1");
        kn_linear_decl(&u->aug_lin2, &u->P, 4 * C0, 4 * C0, 1, "aug_embedding.linear_2");
    }
    if (c->text_pool) {
        kn_linear_decl(&u->pool_lin1, &u->P, c->cross_attention_dim, 4 * C0, 1, "text_pool_embedding.linear_1");
        kn_linear_decl(&u->pool_lin2, &u->P, 4 * C0, 4 * C0, 1, "text_pool_embedding.linear_2");
    }
    if (u->has_tattn)
        kn_ttemp_decl(&u->transformer_in, &u->P, C0, 8, n, 1, G, "transformer_in");
    char name[64];
    int out = C0;
    for (int i = 0; i < nb; i++) {
        int in = out;
        out = c->block_out_channels[i];
        snprintf(name, sizeof name, "down_blocks.%d", i);
        decl_block(u, &u->down[i], c->down_types[i], c->layers_per_block, in, out, 0, i != nb - 1, name);
    }
    /* mid: resnets.0, temp_convs.0, then [attentions.0, temp_attentions.0, resnets.1, temp_convs.1] */
    {
        kn_unet_block *b = &u->mid;
        int Cm = c->block_out_channels[nb - 1], temb = 4 * C0;
        b->type = KN_BLOCK_CROSS_ATTN_DOWN;
        b->nlayers = 2;
        b->resnets = calloc(2, sizeof *b->resnets);
        b->tconvs = u->has_tconv ? calloc(2, sizeof *b->tconvs) : NULL;
        b->attns = calloc(1, sizeof *b->attns);
        b->tattns = u->has_tattn ? calloc(1, sizeof *b->tattns) : NULL;
        b->nattn = 1;
        KN_ASSERT(b->resnets && b->attns && (b->tconvs || !u->has_tconv) && (b->tattns || !u->has_tattn));
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "mid_block.resnets.%d", i);
            kn_resnet_decl(&b->resnets[i], &u->P, Cm, Cm, temb, G, c->norm_eps, name);
            b->resnets[i].out_scale = c->mid_block_scale_factor;
            if (b->tconvs) {
                snprintf(name, sizeof name, "mid_block.temp_convs.%d", i);
                kn_tconv_decl(&b->tconvs[i], &u->P, Cm, G, 1e-5f, name);
            }
        }
        kn_t2d_decl(&b->attns[0], &u->P, Cm, Cm / n, n, c->cross_attention_dim, 1, G, "mid_block.attentions.0");
        if (b->tattns)
            kn_ttemp_decl(&b->tattns[0], &u->P, Cm, Cm / n, n, 1, G, "mid_block.temp_attentions.0");
    }
    out = c->block_out_channels[nb - 1];
    for (int i = 0; i < nb; i++) {
        int prev = out;
        out = c->block_out_channels[nb - 1 - i];
        int in = c->block_out_channels[nb - 1 - (i + 1 < nb ? i + 1 : nb - 1)];
        snprintf(name, sizeof name, "up_blocks.%d", i);
        decl_block(u, &u->up[i], c->up_types[i], c->layers_per_block + 1, in, out, prev, i != nb - 1, name);
    }
    kn_group_norm_decl(&u->norm_out, &u->P, C0, G, c->norm_eps, "conv_norm_out");
    kn_conv_decl(&u->conv_out, &u->P, C0, c->out_channels, 3, 1, 1, 1, "conv_out");
    if (kn_params_alloc(&u->P) != KN_OK) {
        kn_unet3d_free(u);
        return NULL;
    }
    return u;
}

void kn_unet3d_free(kn_unet3d *u) {
    if (!u)
        return;
    for (int i = 0; i < u->cfg.nblocks; i++) {
        free_block(&u->down[i]);
        free_block(&u->up[i]);
    }
    free_block(&u->mid);
    free(u->transformer_in.blocks);
    kn_params_free(&u->P);
    free(u);
}

/* KINEMA_PROFILE=1 prints the wall time of every module (time since the previous one). */
static double prof_last;
static int prof_on = -1;

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void emit(kn_ctx *c, kn_unet_hook hook, void *user, const char *name, kn_var *v) {
    if (hook && v && c->status == KN_OK)
        hook(name, &v->v, user);
    if (prof_on < 0) {
        const char *e = getenv("KINEMA_PROFILE");
        prof_on = e && *e && *e != '0';
    }
    if (prof_on) {
        double t = wall();
        if (prof_last > 0)
            fprintf(stderr, "profile %-40s %8.2f ms\n", name, (t - prof_last) * 1e3);
        prof_last = t;
    }
}

/* Per-sample temporal masking (kn_unet3d_cond.is_image). rows[bt] picks, for folded row bt of a
 * layer's output, row bt of the input (image sample) or row BT + bt of [input; branch output]
 * (video sample). */
typedef struct {
    int all_image, any_image;
    const int64_t *rows; /* (BT), NULL when no sample is an image */
} tmask;

/* y = x for image samples, y for video samples, per folded row; recorded as concat + row gather,
 * so the gradient of an image sample goes to x alone and a video sample's to y alone. */
static kn_var *tmask_select(kn_ctx *c, const tmask *m, kn_var *x, kn_var *y) {
    if (!m->any_image || !y || c->status != KN_OK)
        return y;
    int64_t BT = x->v.shape[0], D = kn_tensor_numel(&x->v) / BT;
    kn_var *xy = kn_v_concat(c, x, y, 0);
    xy = xy ? kn_var_reshape(c, xy, 2, (int64_t[]){2 * BT, D}) : NULL;
    kn_var *r = xy ? kn_v_gather_rows(c, xy, m->rows, BT) : NULL;
    return r ? kn_var_reshape(c, r, x->v.ndim, x->v.shape) : NULL;
}

/* A temporal layer that may be absent (l NULL: identity) or masked per sample. */
static kn_var *tconv_m(kn_ctx *c, const kn_tconv_l *l, kn_var *x, const tmask *m) {
    if (!l || m->all_image || !x || c->status != KN_OK)
        return x;
    size_t mark = kn_ctx_scope_begin(c);
    kn_var *y = tmask_select(c, m, x, kn_tconv_fwd(c, l, x));
    return kn_ctx_scope_end(c, mark, y);
}

static kn_var *ttemp_m(kn_ctx *c, const kn_ttemp_l *l, kn_var *x, const tmask *m) {
    if (!l || m->all_image || !x || c->status != KN_OK)
        return x;
    size_t mark = kn_ctx_scope_begin(c);
    kn_var *y = tmask_select(c, m, x, kn_ttemp_fwd(c, l, x));
    return kn_ctx_scope_end(c, mark, y);
}

/* One layer of a 3-D block: resnet -> temp_conv -> [attention -> temp_attention]. Hooks fire only
 * for the layers the model has. */
static kn_var *block_layer(kn_ctx *c, const kn_unet_block *b, int i, kn_var *h, kn_var *temb, kn_var *text,
                           const tmask *m, kn_attn_capture *cap, kn_unet_hook hook, void *user, const char *prefix) {
    char name[128];
    h = kn_resnet_fwd(c, &b->resnets[i], h, temb);
    snprintf(name, sizeof name, "%s.resnets.%d", prefix, i);
    emit(c, hook, user, name, h);
    if (b->tconvs) {
        h = tconv_m(c, &b->tconvs[i], h, m);
        snprintf(name, sizeof name, "%s.temp_convs.%d", prefix, i);
        emit(c, hook, user, name, h);
    }
    if (b->attns) {
        h = kn_t2d_fwd_cap(c, &b->attns[i], h, text, cap);
        snprintf(name, sizeof name, "%s.attentions.%d", prefix, i);
        emit(c, hook, user, name, h);
        if (b->tattns) {
            h = ttemp_m(c, &b->tattns[i], h, m);
            snprintf(name, sizeof name, "%s.temp_attentions.%d", prefix, i);
            emit(c, hook, user, name, h);
        }
    }
    return h;
}

/* Gradient checkpointing (kn_ctx.checkpointing): one block layer (resnet, temporal conv, spatial
 * and temporal attention) is recomputed in backward instead of keeping its activations. */
typedef struct {
    const kn_unet_block *b;
    int i;
    tmask m; /* a copy: the caller's lives on its stack */
} layer_args;

static kn_var *layer_fn(kn_ctx *c, kn_var **in, int nin, const void *user) {
    const layer_args *a = user;
    (void)nin;
    return block_layer(c, a->b, a->i, in[0], in[1], in[2], &a->m, NULL, NULL, NULL, "");
}

static kn_var *block_layer_ck(kn_ctx *c, const kn_unet_block *b, int i, kn_var *h, kn_var *temb, kn_var *text,
                              const tmask *m, kn_attn_capture *cap, kn_unet_hook hook, void *user,
                              const char *prefix) {
    if (!c->tape || !c->checkpointing || hook || cap || c->status != KN_OK)
        return block_layer(c, b, i, h, temb, text, m, cap, hook, user, prefix);
    layer_args *a = kn_arena_alloc(c->A, sizeof *a);
    if (!a) {
        kn_ctx_fail(c, KN_ERR_NOMEM);
        return NULL;
    }
    a->b = b;
    a->i = i;
    a->m = *m;
    kn_var *in[3] = {h, temb, text};
    return kn_v_checkpoint(c, layer_fn, in, 3, a);
}

/* sinusoid(C0) (flip_sin_to_cos, shift 0, as time_proj) -> l1 -> SiLU -> l2: (B, 4 C0) */
static kn_var *value_embedding(kn_ctx *c, const kn_linear_l *l1, const kn_linear_l *l2, const float *vals, int64_t B,
                               int C0) {
    if (c->status != KN_OK)
        return NULL;
    kn_var *tp = kn_var_new(c, 2, (int64_t[]){B, C0});
    if (tp) {
        kn_status st = kn_timestep_embedding(NULL, vals, B, C0, 1, 0.0f, 10000.0f, &tp->v);
        if (st != KN_OK)
            kn_ctx_fail(c, st);
    }
    kn_var *e = kn_linear_fwd(c, l1, tp);
    e = kn_v_act(c, KN_ACT_SILU, e);
    return kn_linear_fwd(c, l2, e);
}

static int check_values(kn_ctx *c, const char *what, const float *v, int64_t B, float lo, float hi) {
    for (int64_t i = 0; i < B; i++)
        if (!(v[i] >= lo && v[i] <= hi)) {
            kn_ctx_failf(c, KN_ERR_ARG, "unet3d: %s[%lld] = %g is outside [%g, %g]", what, (long long)i, v[i], lo, hi);
            return 0;
        }
    return 1;
}

kn_var *kn_unet3d_forward(kn_ctx *c, const kn_unet3d *u, kn_var *sample, const float *timesteps, kn_var *text,
                          kn_unet_hook hook, void *user) {
    return kn_unet3d_forward_ex(c, u, sample, timesteps, text, NULL, hook, user);
}

kn_var *kn_unet3d_forward_ex(kn_ctx *c, const kn_unet3d *u, kn_var *sample, const float *timesteps, kn_var *text,
                             const kn_unet3d_cond *cond, kn_unet_hook hook, void *user) {
    if (c->status != KN_OK)
        return NULL;
    const kn_unet3d_config *cf = &u->cfg;
    static const kn_unet3d_cond none = {0};
    if (!cond)
        cond = &none;
    char s1[96], s2[96];
    if (!sample || sample->v.ndim != 5 || sample->v.shape[1] != cf->in_channels) {
        kn_ctx_failf(c, KN_ERR_SHAPE, "unet3d: sample %s must be (B, %d, T, H, W)",
                     sample ? kn_shape_str(&sample->v, s1, sizeof s1) : "(none)", cf->in_channels);
        return NULL;
    }
    int64_t B = sample->v.shape[0], T = sample->v.shape[2], H = sample->v.shape[3], W = sample->v.shape[4];
    if (!text || text->v.ndim != 3 || text->v.shape[0] != B || text->v.shape[2] != cf->cross_attention_dim) {
        kn_ctx_failf(c, KN_ERR_SHAPE, "unet3d: encoder_hidden_states %s must be (%lld, L, %d) for sample %s",
                     text ? kn_shape_str(&text->v, s1, sizeof s1) : "(none)", (long long)B, cf->cross_attention_dim,
                     kn_shape_str(&sample->v, s2, sizeof s2));
        return NULL;
    }
    if (T < 1 || H < 1 || W < 1) {
        kn_ctx_failf(c, KN_ERR_SHAPE, "unet3d: empty sample %s", kn_shape_str(&sample->v, s1, sizeof s1));
        return NULL;
    }
    /* the cascade inputs: each one given exactly when the config uses it */
    if (!cf->fps_cond != !cond->fps) {
        kn_ctx_failf(c, KN_ERR_ARG, cf->fps_cond ? "unet3d: the model is fps-conditioned (fps_cond) but no fps was given"
                                                 : "unet3d: fps given to a model without fps_cond");
        return NULL;
    }
    if (!cf->noise_aug_cond != !cond->noise_aug) {
        kn_ctx_failf(c, KN_ERR_ARG, cf->noise_aug_cond
                                        ? "unet3d: the model is noise-augmentation conditioned (noise_aug_cond) but no "
                                          "noise level was given"
                                        : "unet3d: noise_aug level given to a model without noise_aug_cond");
        return NULL;
    }
    if (!cf->cond_channels != !cond->cond) {
        kn_ctx_failf(c, KN_ERR_ARG, cf->cond_channels ? "unet3d: the model takes %d cond_channels but no cond was given"
                                                      : "unet3d: cond given to a model without cond_channels (%d)",
                     cf->cond_channels);
        return NULL;
    }
    if (cond->cond) {
        const kn_tensor *ct = &cond->cond->v;
        if (ct->ndim != 5 || ct->shape[0] != B || ct->shape[1] != cf->cond_channels || ct->shape[2] != T ||
            ct->shape[3] != H || ct->shape[4] != W) {
            kn_ctx_failf(c, KN_ERR_SHAPE, "unet3d: cond %s must be (%lld, %d, %lld, %lld, %lld) for sample %s",
                         kn_shape_str(ct, s1, sizeof s1), (long long)B, cf->cond_channels, (long long)T, (long long)H,
                         (long long)W, kn_shape_str(&sample->v, s2, sizeof s2));
            return NULL;
        }
    }
    if (cond->fps && !check_values(c, "fps", cond->fps, B, 0.0f, 1e6f))
        return NULL;
    if (cond->noise_aug && !check_values(c, "noise_aug", cond->noise_aug, B, 0.0f, 1000.0f))
        return NULL;
    tmask m = {0, 0, NULL};
    if (cond->is_image) {
        int nimg = 0;
        for (int64_t b = 0; b < B; b++)
            nimg += cond->is_image[b] != 0;
        m.all_image = nimg == B;
        m.any_image = nimg > 0 && nimg < B;
        if (m.any_image) {
            int64_t *rows = kn_arena_alloc(c->A, (size_t)(B * T) * sizeof *rows);
            if (!rows) {
                kn_ctx_failf(c, KN_ERR_NOMEM, "unet3d: out of arena memory for the image mask");
                return NULL;
            }
            for (int64_t bt = 0; bt < B * T; bt++)
                rows[bt] = cond->is_image[bt / T] ? bt : B * T + bt;
            m.rows = rows;
        }
    }
    kn_attn_capture *cap = cond->capture ? cond->capture : u->capture;
    if (cap) {
        kn_status st = kn_attn_capture_begin(cap, B, T, H, W);
        if (st != KN_OK) {
            kn_ctx_fail(c, st);
            return NULL;
        }
    }
    int saved_frames = c->frames;
    c->frames = (int)T;
    int C0 = cf->block_out_channels[0];

    /* time: Timesteps(C0, flip_sin_to_cos=True, shift=0) -> Linear -> SiLU -> Linear */
    kn_var *tp = kn_var_new(c, 2, (int64_t[]){B, C0});
    if (tp) {
        kn_status st = kn_timestep_embedding(NULL, timesteps, B, C0, 1, 0.0f, 10000.0f, &tp->v);
        if (st != KN_OK)
            kn_ctx_fail(c, st);
    }
    emit(c, hook, user, "time_proj", tp);
    kn_var *emb = kn_linear_fwd(c, &u->time_lin1, tp);
    emb = kn_v_act(c, KN_ACT_SILU, emb);
    emb = kn_linear_fwd(c, &u->time_lin2, emb);
    emit(c, hook, user, "time_embedding", emb);
    if (cf->fps_cond) {
        kn_var *e = value_embedding(c, &u->fps_lin1, &u->fps_lin2, cond->fps, B, C0);
        emit(c, hook, user, "fps_embedding", e);
        emb = e ? kn_v_add(c, emb, e) : NULL;
    }
    if (cf->noise_aug_cond) {
        kn_var *e = value_embedding(c, &u->aug_lin1, &u->aug_lin2, cond->noise_aug, B, C0);
        emit(c, hook, user, "aug_embedding", e);
        emb = e ? kn_v_add(c, emb, e) : NULL;
    }
    if (cf->text_pool) { /* mean over the L tokens: (B, L, D) as (B*L, D) rows -> (B, D) */
        int64_t L = text->v.shape[1];
        kn_var *flat = kn_var_reshape(c, text, 2, (int64_t[]){B * L, cf->cross_attention_dim});
        kn_var *e = kn_linear_fwd(c, &u->pool_lin1, kn_v_mean_rows(c, flat, L));
        e = kn_v_act(c, KN_ACT_SILU, e);
        e = kn_linear_fwd(c, &u->pool_lin2, e);
        emit(c, hook, user, "text_pool_embedding", e);
        emb = e ? kn_v_add(c, emb, e) : NULL;
    }
    kn_var *temb = kn_v_repeat_rows(c, emb, T);
    kn_var *ctx = kn_v_repeat_rows(c, text, T);

    /* (B, C, T, H, W) -> (B*T, C, H, W); cond channels after the sample's */
    static const int fold[5] = {0, 2, 1, 3, 4};
    int Cin = cf->in_channels + cf->cond_channels;
    kn_var *x = cond->cond ? kn_v_concat(c, sample, cond->cond, 1) : sample;
    kn_var *h = x ? kn_v_permute(c, x, fold) : NULL;
    h = h ? kn_var_reshape(c, h, 4, (int64_t[]){B * T, Cin, H, W}) : NULL;
    h = kn_conv_fwd(c, &u->conv_in, h);
    emit(c, hook, user, "conv_in", h);
    if (u->has_tattn) {
        h = ttemp_m(c, &u->transformer_in, h, &m);
        emit(c, hook, user, "transformer_in", h);
    }

    kn_var *skips[64];
    int nskip = 0;
    skips[nskip++] = h;
    char name[64];
    for (int i = 0; i < cf->nblocks && c->status == KN_OK; i++) {
        const kn_unet_block *b = &u->down[i];
        snprintf(name, sizeof name, "down_blocks.%d", i);
        for (int l = 0; l < b->nlayers; l++) {
            h = block_layer_ck(c, b, l, h, temb, ctx, &m, cap, hook, user, name);
            if (nskip < 64)
                skips[nskip++] = h;
        }
        if (b->has_sampler) {
            h = kn_downsample_fwd(c, &b->sampler, h);
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0", i);
            emit(c, hook, user, name, h);
            if (nskip < 64)
                skips[nskip++] = h;
        }
        snprintf(name, sizeof name, "down_blocks.%d", i);
        emit(c, hook, user, name, h);
    }
    /* mid */
    {
        const kn_unet_block *b = &u->mid;
        h = kn_resnet_fwd(c, &b->resnets[0], h, temb);
        emit(c, hook, user, "mid_block.resnets.0", h);
        if (b->tconvs) {
            h = tconv_m(c, &b->tconvs[0], h, &m);
            emit(c, hook, user, "mid_block.temp_convs.0", h);
        }
        h = kn_t2d_fwd_cap(c, &b->attns[0], h, ctx, cap);
        emit(c, hook, user, "mid_block.attentions.0", h);
        if (b->tattns) {
            h = ttemp_m(c, &b->tattns[0], h, &m);
            emit(c, hook, user, "mid_block.temp_attentions.0", h);
        }
        h = kn_resnet_fwd(c, &b->resnets[1], h, temb);
        emit(c, hook, user, "mid_block.resnets.1", h);
        if (b->tconvs) {
            h = tconv_m(c, &b->tconvs[1], h, &m);
            emit(c, hook, user, "mid_block.temp_convs.1", h);
        }
        emit(c, hook, user, "mid_block", h);
    }
    for (int i = 0; i < cf->nblocks && c->status == KN_OK; i++) {
        const kn_unet_block *b = &u->up[i];
        snprintf(name, sizeof name, "up_blocks.%d", i);
        for (int l = 0; l < b->nlayers; l++) {
            if (nskip <= 0) {
                kn_ctx_failf(c, KN_ERR_INTERNAL, "unet3d: skip connections exhausted");
                break;
            }
            kn_var *skip = skips[--nskip];
            h = kn_v_concat(c, h, skip, 1);
            h = block_layer_ck(c, b, l, h, temb, ctx, &m, cap, hook, user, name);
        }
        if (b->has_sampler && c->status == KN_OK) {
            /* upsample to the size of the next skip (diffusers forward_upsample_size) */
            kn_var *next = nskip > 0 ? skips[nskip - 1] : NULL;
            int64_t Ho = next ? next->v.shape[2] : 0, Wo = next ? next->v.shape[3] : 0;
            h = kn_upsample_fwd(c, &b->sampler, h, Ho, Wo);
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0", i);
            emit(c, hook, user, name, h);
        }
        snprintf(name, sizeof name, "up_blocks.%d", i);
        emit(c, hook, user, name, h);
    }
    h = kn_group_norm_fwd(c, &u->norm_out, h, 1);
    emit(c, hook, user, "conv_norm_out", h);
    h = kn_v_act(c, KN_ACT_SILU, h);
    h = kn_conv_fwd(c, &u->conv_out, h);
    emit(c, hook, user, "conv_out", h);
    /* (B*T, C, H, W) -> (B, C, T, H, W) */
    h = h ? kn_var_reshape(c, h, 5, (int64_t[]){B, T, cf->out_channels, H, W}) : NULL;
    h = h ? kn_v_permute(c, h, fold) : NULL;
    c->frames = saved_frames;
    return c->status == KN_OK ? h : NULL;
}

/* ------------------------------------------------------------ initialisation helpers */

static void zero_var(kn_var *v) {
    if (v && v->v.data)
        memset(v->v.data, 0, (size_t)kn_tensor_numel(&v->v) * sizeof(float));
}

static void zero_ttemp(kn_ttemp_l *l) {
    zero_var(l->proj_out.w);
    zero_var(l->proj_out.b);
}

static void identity_block(kn_unet_block *b) {
    for (int i = 0; b->tconvs && i < b->nlayers; i++) {
        zero_var(b->tconvs[i].w[3]);
        zero_var(b->tconvs[i].b[3]);
    }
    for (int i = 0; b->tattns && i < b->nattn; i++)
        zero_ttemp(&b->tattns[i]);
}

void kn_unet3d_init_temporal_identity(kn_unet3d *u) {
    if (!u)
        return;
    for (int i = 0; i < u->cfg.nblocks; i++) {
        identity_block(&u->down[i]);
        identity_block(&u->up[i]);
    }
    identity_block(&u->mid);
    if (u->has_tattn)
        zero_ttemp(&u->transformer_in);
}

void kn_unet3d_init_options_zero(kn_unet3d *u) {
    if (!u)
        return;
    if (u->cfg.fps_cond) {
        zero_var(u->fps_lin2.w);
        zero_var(u->fps_lin2.b);
    }
    if (u->cfg.noise_aug_cond) {
        zero_var(u->aug_lin2.w);
        zero_var(u->aug_lin2.b);
    }
    if (u->cfg.text_pool) {
        zero_var(u->pool_lin2.w);
        zero_var(u->pool_lin2.b);
    }
    /* conv_in.weight (C0, Cin + Cc, 3, 3): the last Cc input channels of every output channel */
    kn_var *w = u->conv_in.w;
    int Cin = u->cfg.in_channels, Cc = u->cfg.cond_channels;
    if (Cc > 0 && w && w->v.data) {
        int64_t Co = w->v.shape[0], kk = w->v.shape[2] * w->v.shape[3];
        for (int64_t o = 0; o < Co; o++)
            memset((float *)w->v.data + (o * (Cin + Cc) + Cin) * kk, 0, (size_t)(Cc * kk) * sizeof(float));
    }
}

/* 1 when `seg` occurs in name as a whole dotted component prefix ("x.seg" or "seg" at the start). */
static int has_component(const char *name, const char *seg) {
    size_t n = strlen(seg);
    for (const char *p = strstr(name, seg); p; p = strstr(p + 1, seg))
        if ((p == name || p[-1] == '.') && p[n] == '.')
            return 1;
    return 0;
}

int kn_unet3d_temporal_param(const char *name) {
    if (!name)
        return 0;
    return has_component(name, "temp_convs") || has_component(name, "temp_attentions") ||
           !strncmp(name, "transformer_in.", 15);
}
