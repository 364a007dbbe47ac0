/* layers.c — diffusers building blocks (ResnetBlock2D, Attention, BasicTransformerBlock,
 * Transformer2DModel, TransformerTemporalModel, TemporalConvLayer, Up/Downsample2D). */
#include "nn/layers.h"

#include <math.h>
#include <stdio.h>

#define NAME(buf, prefix, suffix) (snprintf(buf, sizeof buf, "%s%s%s", prefix, *(prefix) ? "." : "", suffix), buf)

void kn_linear_decl(kn_linear_l *l, kn_params *P, int64_t in, int64_t out, int bias, const char *prefix) {
    int64_t ws[2] = {out, in}, bs[1] = {out};
    l->w = kn_param_decl(P, 2, ws, "%s.weight", prefix);
    l->b = bias ? kn_param_decl(P, 1, bs, "%s.bias", prefix) : NULL;
}

kn_var *kn_linear_fwd(kn_ctx *c, const kn_linear_l *l, kn_var *x) { return kn_v_linear(c, x, l->w, l->b); }

void kn_conv_decl(kn_conv_l *l, kn_params *P, int64_t in, int64_t out, int k, int stride, int pad, int bias,
                  const char *prefix) {
    int64_t ws[4] = {out, in, k, k}, bs[1] = {out};
    l->w = kn_param_decl(P, 4, ws, "%s.weight", prefix);
    l->b = bias ? kn_param_decl(P, 1, bs, "%s.bias", prefix) : NULL;
    l->p = kn_conv2d_params_make(stride, pad);
}

kn_var *kn_conv_fwd(kn_ctx *c, const kn_conv_l *l, kn_var *x) { return kn_v_conv2d(c, x, l->w, l->b, l->p); }

void kn_group_norm_decl(kn_norm_l *l, kn_params *P, int64_t C, int groups, float eps, const char *prefix) {
    int64_t s[1] = {C};
    l->w = kn_param_decl(P, 1, s, "%s.weight", prefix);
    l->b = kn_param_decl(P, 1, s, "%s.bias", prefix);
    l->groups = groups;
    l->eps = eps;
}

void kn_layer_norm_decl(kn_norm_l *l, kn_params *P, int64_t C, float eps, const char *prefix) {
    kn_group_norm_decl(l, P, C, 1, eps, prefix);
}

kn_var *kn_group_norm_fwd(kn_ctx *c, const kn_norm_l *l, kn_var *x, int64_t frames) {
    return kn_v_group_norm(c, x, l->groups, frames, l->eps, l->w, l->b);
}

kn_var *kn_layer_norm_fwd(kn_ctx *c, const kn_norm_l *l, kn_var *x) {
    return kn_v_layer_norm(c, x, l->eps, l->w, l->b);
}

/* ---------------------------------------------------------------- resnet */

void kn_resnet_decl(kn_resnet_l *l, kn_params *P, int64_t in, int64_t out, int64_t temb_ch, int groups, float eps,
                    const char *prefix) {
    char b[256];
    kn_group_norm_decl(&l->norm1, P, in, groups, eps, NAME(b, prefix, "norm1"));
    kn_conv_decl(&l->conv1, P, in, out, 3, 1, 1, 1, NAME(b, prefix, "conv1"));
    l->has_temb = temb_ch > 0;
    if (l->has_temb)
        kn_linear_decl(&l->temb, P, temb_ch, out, 1, NAME(b, prefix, "time_emb_proj"));
    kn_group_norm_decl(&l->norm2, P, out, groups, eps, NAME(b, prefix, "norm2"));
    kn_conv_decl(&l->conv2, P, out, out, 3, 1, 1, 1, NAME(b, prefix, "conv2"));
    l->has_shortcut = in != out;
    if (l->has_shortcut)
        kn_conv_decl(&l->shortcut, P, in, out, 1, 1, 0, 1, NAME(b, prefix, "conv_shortcut"));
    l->out_scale = 1.0f;
}

kn_var *kn_resnet_fwd(kn_ctx *c, const kn_resnet_l *l, kn_var *x, kn_var *temb) {
    size_t m = kn_ctx_scope_begin(c);
    kn_var *h = kn_group_norm_fwd(c, &l->norm1, x, 1);
    h = kn_v_act(c, KN_ACT_SILU, h);
    h = kn_conv_fwd(c, &l->conv1, h);
    if (l->has_temb && temb) {
        kn_var *t = kn_v_act(c, KN_ACT_SILU, temb);
        t = kn_linear_fwd(c, &l->temb, t);
        h = kn_v_add_nc(c, h, t);
    }
    h = kn_group_norm_fwd(c, &l->norm2, h, 1);
    h = kn_v_act(c, KN_ACT_SILU, h);
    h = kn_conv_fwd(c, &l->conv2, h);
    kn_var *s = l->has_shortcut ? kn_conv_fwd(c, &l->shortcut, x) : x;
    if (!h || !s)
        return NULL;
    kn_var *y = kn_v_add(c, s, h);
    if (l->out_scale != 1.0f)
        y = kn_v_scale(c, y, 1.0f / l->out_scale);
    return kn_ctx_scope_end(c, m, y);
}

/* ------------------------------------------------------------- attention */

void kn_attn_decl(kn_attn_l *l, kn_params *P, int64_t query_dim, int64_t ctx_dim, int heads, int64_t dim_head,
                  int qkv_bias, const char *prefix) {
    char b[256];
    int64_t inner = heads * dim_head;
    kn_linear_decl(&l->q, P, query_dim, inner, qkv_bias, NAME(b, prefix, "to_q"));
    kn_linear_decl(&l->k, P, ctx_dim, inner, qkv_bias, NAME(b, prefix, "to_k"));
    kn_linear_decl(&l->v, P, ctx_dim, inner, qkv_bias, NAME(b, prefix, "to_v"));
    kn_linear_decl(&l->out, P, inner, query_dim, 1, NAME(b, prefix, "to_out.0"));
    l->heads = heads;
    l->dim_head = dim_head;
}

kn_var *kn_attn_fwd(kn_ctx *c, const kn_attn_l *l, kn_var *x, kn_var *ctx, const kn_tensor *mask) {
    size_t m = kn_ctx_scope_begin(c);
    if (!ctx)
        ctx = x;
    kn_var *q = kn_linear_fwd(c, &l->q, x);
    kn_var *k = kn_linear_fwd(c, &l->k, ctx);
    kn_var *v = kn_linear_fwd(c, &l->v, ctx);
    kn_var *o = kn_v_attention(c, q, k, v, l->heads, 1.0f / sqrtf((float)l->dim_head), mask);
    o = kn_linear_fwd(c, &l->out, o);
    return kn_ctx_scope_end(c, m, o);
}

/* ------------------------------------------------------- transformer block */

void kn_tblock_decl(kn_tblock_l *l, kn_params *P, int64_t dim, int heads, int64_t dim_head, int64_t ctx_dim,
                    const char *prefix) {
    char b[256];
    kn_layer_norm_decl(&l->norm1, P, dim, 1e-5f, NAME(b, prefix, "norm1"));
    kn_attn_decl(&l->attn1, P, dim, dim, heads, dim_head, 0, NAME(b, prefix, "attn1"));
    kn_layer_norm_decl(&l->norm2, P, dim, 1e-5f, NAME(b, prefix, "norm2"));
    kn_attn_decl(&l->attn2, P, dim, ctx_dim > 0 ? ctx_dim : dim, heads, dim_head, 0, NAME(b, prefix, "attn2"));
    kn_layer_norm_decl(&l->norm3, P, dim, 1e-5f, NAME(b, prefix, "norm3"));
    kn_linear_decl(&l->ff_in, P, dim, dim * 8, 1, NAME(b, prefix, "ff.net.0.proj"));
    kn_linear_decl(&l->ff_out, P, dim * 4, dim, 1, NAME(b, prefix, "ff.net.2"));
}

kn_var *kn_tblock_fwd(kn_ctx *c, const kn_tblock_l *l, kn_var *x, kn_var *ctx) {
    size_t m = kn_ctx_scope_begin(c);
    kn_var *h = kn_layer_norm_fwd(c, &l->norm1, x);
    h = kn_attn_fwd(c, &l->attn1, h, NULL, NULL);
    x = kn_v_add(c, h, x);
    x = kn_ctx_scope_end(c, m, x);
    m = kn_ctx_scope_begin(c);
    h = kn_layer_norm_fwd(c, &l->norm2, x);
    h = kn_attn_fwd(c, &l->attn2, h, ctx, NULL);
    x = kn_v_add(c, h, x);
    x = kn_ctx_scope_end(c, m, x);
    m = kn_ctx_scope_begin(c);
    h = kn_layer_norm_fwd(c, &l->norm3, x);
    h = kn_linear_fwd(c, &l->ff_in, h);
    h = kn_v_geglu(c, h);
    h = kn_linear_fwd(c, &l->ff_out, h);
    x = kn_v_add(c, h, x);
    return kn_ctx_scope_end(c, m, x);
}

/* ----------------------------------------------------- spatial transformer */

void kn_t2d_decl(kn_t2d_l *l, kn_params *P, int64_t C, int heads, int64_t dim_head, int64_t ctx_dim, int layers,
                 int groups, const char *prefix) {
    char b[256];
    int64_t inner = heads * dim_head;
    kn_group_norm_decl(&l->norm, P, C, groups, 1e-6f, NAME(b, prefix, "norm"));
    kn_linear_decl(&l->proj_in, P, C, inner, 1, NAME(b, prefix, "proj_in"));
    l->nblocks = layers;
    l->blocks = calloc((size_t)layers, sizeof *l->blocks);
    KN_ASSERT(l->blocks != NULL);
    for (int i = 0; i < layers; i++) {
        snprintf(b, sizeof b, "%s.transformer_blocks.%d", prefix, i);
        kn_tblock_decl(&l->blocks[i], P, inner, heads, dim_head, ctx_dim, b);
    }
    kn_linear_decl(&l->proj_out, P, inner, C, 1, NAME(b, prefix, "proj_out"));
}

kn_var *kn_t2d_fwd(kn_ctx *c, const kn_t2d_l *l, kn_var *x, kn_var *ctx) {
    if (c->status != KN_OK)
        return NULL;
    size_t m = kn_ctx_scope_begin(c);
    int64_t BT = x->v.shape[0], C = x->v.shape[1], H = x->v.shape[2], W = x->v.shape[3];
    kn_var *h = kn_group_norm_fwd(c, &l->norm, x, 1);
    static const int to_tokens[4] = {0, 2, 3, 1};
    h = kn_v_permute(c, h, to_tokens); /* (BT, H, W, C) */
    int64_t ts[3] = {BT, H * W, C};
    h = h ? kn_var_reshape(c, h, 3, ts) : NULL;
    h = kn_linear_fwd(c, &l->proj_in, h);
    for (int i = 0; i < l->nblocks; i++)
        h = kn_tblock_fwd(c, &l->blocks[i], h, ctx);
    h = kn_linear_fwd(c, &l->proj_out, h);
    int64_t is[4] = {BT, H, W, C};
    h = h ? kn_var_reshape(c, h, 4, is) : NULL;
    static const int to_image[4] = {0, 3, 1, 2};
    h = h ? kn_v_permute(c, h, to_image) : NULL;
    h = h ? kn_v_add(c, h, x) : NULL;
    return kn_ctx_scope_end(c, m, h);
}

/* ---------------------------------------------------- temporal transformer */

void kn_ttemp_decl(kn_ttemp_l *l, kn_params *P, int64_t C, int heads, int64_t dim_head, int layers, int groups,
                   const char *prefix) {
    kn_t2d_decl(l, P, C, heads, dim_head, 0, layers, groups, prefix);
}

kn_var *kn_ttemp_fwd(kn_ctx *c, const kn_ttemp_l *l, kn_var *x) {
    if (c->status != KN_OK)
        return NULL;
    size_t m = kn_ctx_scope_begin(c);
    int64_t T = c->frames, BT = x->v.shape[0], C = x->v.shape[1], H = x->v.shape[2], W = x->v.shape[3];
    int64_t B = BT / T;
    kn_var *h = kn_group_norm_fwd(c, &l->norm, x, T);
    int64_t s5[5] = {B, T, C, H, W};
    h = h ? kn_var_reshape(c, h, 5, s5) : NULL;
    static const int to_tokens[5] = {0, 3, 4, 1, 2}; /* (B, H, W, T, C) */
    h = h ? kn_v_permute(c, h, to_tokens) : NULL;
    int64_t ts[3] = {B * H * W, T, C};
    h = h ? kn_var_reshape(c, h, 3, ts) : NULL;
    h = kn_linear_fwd(c, &l->proj_in, h);
    for (int i = 0; i < l->nblocks; i++)
        h = kn_tblock_fwd(c, &l->blocks[i], h, NULL);
    h = kn_linear_fwd(c, &l->proj_out, h);
    int64_t s5b[5] = {B, H, W, T, C};
    h = h ? kn_var_reshape(c, h, 5, s5b) : NULL;
    static const int to_video[5] = {0, 3, 4, 1, 2}; /* (B, T, C, H, W) */
    h = h ? kn_v_permute(c, h, to_video) : NULL;
    int64_t s4[4] = {BT, C, H, W};
    h = h ? kn_var_reshape(c, h, 4, s4) : NULL;
    h = h ? kn_v_add(c, h, x) : NULL;
    return kn_ctx_scope_end(c, m, h);
}

/* ---------------------------------------------------------- temporal conv */

void kn_tconv_decl(kn_tconv_l *l, kn_params *P, int64_t C, int groups, float eps, const char *prefix) {
    int64_t ws[5] = {C, C, 3, 1, 1}, bs[1] = {C};
    for (int i = 0; i < 4; i++) {
        char b[256];
        snprintf(b, sizeof b, "%s.conv%d.0", prefix, i + 1);
        kn_group_norm_decl(&l->norm[i], P, C, groups, eps, b);
        int idx = i == 0 ? 2 : 3; /* conv1 has no Dropout before the conv */
        l->w[i] = kn_param_decl(P, 5, ws, "%s.conv%d.%d.weight", prefix, i + 1, idx);
        l->b[i] = kn_param_decl(P, 1, bs, "%s.conv%d.%d.bias", prefix, i + 1, idx);
    }
}

kn_var *kn_tconv_fwd(kn_ctx *c, const kn_tconv_l *l, kn_var *x) {
    size_t m = kn_ctx_scope_begin(c);
    int64_t T = c->frames;
    kn_var *h = x;
    for (int i = 0; i < 4; i++) {
        h = kn_group_norm_fwd(c, &l->norm[i], h, T);
        h = kn_v_act(c, KN_ACT_SILU, h);
        h = kn_v_conv_temporal(c, h, T, l->w[i], l->b[i], 1, 1);
    }
    h = h ? kn_v_add(c, x, h) : NULL;
    return kn_ctx_scope_end(c, m, h);
}

/* -------------------------------------------------------- up/down sample */

void kn_upsample_decl(kn_sample_l *l, kn_params *P, int64_t C, const char *prefix) {
    char b[256];
    kn_conv_decl(&l->conv, P, C, C, 3, 1, 1, 1, NAME(b, prefix, "conv"));
    l->pad_asym = 0;
}

kn_var *kn_upsample_fwd(kn_ctx *c, const kn_sample_l *l, kn_var *x, int64_t H, int64_t W) {
    if (c->status != KN_OK)
        return NULL;
    size_t m = kn_ctx_scope_begin(c);
    if (H <= 0 || W <= 0) {
        H = x->v.shape[2] * 2;
        W = x->v.shape[3] * 2;
    }
    kn_var *h = kn_v_resize_nearest(c, x, H, W);
    h = kn_conv_fwd(c, &l->conv, h);
    return kn_ctx_scope_end(c, m, h);
}

void kn_downsample_decl(kn_sample_l *l, kn_params *P, int64_t C, int padding, const char *prefix) {
    char b[256];
    kn_conv_decl(&l->conv, P, C, C, 3, 2, padding, 1, NAME(b, prefix, "conv"));
    l->pad_asym = padding == 0;
    if (l->pad_asym) {
        /* diffusers Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then the stride-2 conv */
        l->conv.p.pad_top = 0;
        l->conv.p.pad_left = 0;
        l->conv.p.pad_bottom = 1;
        l->conv.p.pad_right = 1;
    }
}

kn_var *kn_downsample_fwd(kn_ctx *c, const kn_sample_l *l, kn_var *x) { return kn_conv_fwd(c, &l->conv, x); }
