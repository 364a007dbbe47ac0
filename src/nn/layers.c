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

/* ------------------------------------------------ cross-attention capture */

kn_status kn_attn_capture_begin(kn_attn_capture *cap, int64_t B, int64_t T, int64_t H, int64_t W) {
    if (cap->ntok < 1 || cap->ntok > KN_CAPTURE_MAX_TOKENS)
        return kn_fail(KN_ERR_ARG, "attention capture: %d token positions (1..%d)", cap->ntok, KN_CAPTURE_MAX_TOKENS);
    for (int i = 0; i < cap->ntok; i++)
        if (cap->tok[i] < 0)
            return kn_fail(KN_ERR_ARG, "attention capture: token position %d is negative", cap->tok[i]);
    if (cap->res < 0)
        return kn_fail(KN_ERR_ARG, "attention capture: res = %d must be >= 0", cap->res);
    if (cap->sample < -1 || cap->sample >= B)
        return kn_fail(KN_ERR_ARG, "attention capture: sample %d of a batch of %lld", cap->sample, (long long)B);
    if (B < 1 || T < 1 || H < 1 || W < 1)
        return kn_fail(KN_ERR_SHAPE, "attention capture: empty batch or latent grid");
    if (cap->sum && (cap->T != T || cap->H != H || cap->W != W))
        return kn_fail(KN_ERR_SHAPE, "attention capture: latent grid (%lld,%lld,%lld) changed to (%lld,%lld,%lld) "
                       "between calls", (long long)cap->T, (long long)cap->H, (long long)cap->W, (long long)T,
                       (long long)H, (long long)W);
    if (!cap->sum) {
        cap->sum = calloc((size_t)(T * H * W), sizeof(float));
        if (!cap->sum)
            return kn_fail(KN_ERR_NOMEM, "attention capture: out of memory for a (%lld,%lld,%lld) map", (long long)T,
                           (long long)H, (long long)W);
        cap->T = T, cap->H = H, cap->W = W;
        cap->count = 0;
    }
    cap->B = B;
    cap->nlayer = 0;
    return KN_OK;
}

kn_status kn_attn_capture_mean(const kn_attn_capture *cap, float *mean) {
    if (!cap->sum || cap->count < 1)
        return kn_fail(KN_ERR_ARG, "attention capture: nothing captured (the model has no cross-attention layer%s "
                       "or did not run)", cap->res > 0 ? " at that resolution" : "");
    int64_t n = cap->T * cap->H * cap->W;
    for (int64_t i = 0; i < n; i++)
        mean[i] = cap->sum[i] / (float)cap->count;
    return KN_OK;
}

void kn_attn_capture_free(kn_attn_capture *cap) {
    free(cap->sum);
    cap->sum = NULL;
    cap->count = 0;
    cap->nlayer = 0;
    cap->T = cap->H = cap->W = cap->B = 0;
}

typedef struct {
    const float *q, *k;   /* q (rows, Lq, H*D), k (rows, L, H*D) */
    float *scratch;       /* (nth, L) */
    float *probs;         /* (rows, Lq, ntok) */
    const int *tok;
    int ntok, heads;
    int64_t rows, Lq, L, D;
    float scale;
} probs_task;

/* One query row (r, i) per item; each row's softmax runs in one fixed order on one thread, so the
 * result does not depend on the thread count. */
static void probs_worker(int ith, int nth, void *ctx) {
    const probs_task *a = ctx;
    int64_t b, e, HD = (int64_t)a->heads * a->D;
    kn_split_range(a->rows * a->Lq, ith, nth, &b, &e);
    float *s = a->scratch + (int64_t)ith * a->L;
    for (int64_t it = b; it < e; it++) {
        int64_t r = it / a->Lq;
        const float *q = a->q + it * HD, *k = a->k + r * a->L * HD;
        float *p = a->probs + it * a->ntok;
        for (int t = 0; t < a->ntok; t++)
            p[t] = 0.0f;
        for (int hd = 0; hd < a->heads; hd++) {
            const float *qh = q + hd * a->D;
            float mx = -INFINITY;
            for (int64_t j = 0; j < a->L; j++) {
                const float *kh = k + j * HD + hd * a->D;
                float d = 0.0f;
                for (int64_t x = 0; x < a->D; x++)
                    d += qh[x] * kh[x];
                s[j] = d * a->scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            double sum = 0.0;
            for (int64_t j = 0; j < a->L; j++)
                sum += exp((double)(s[j] - mx));
            for (int t = 0; t < a->ntok; t++)
                p[t] += (float)(exp((double)(s[a->tok[t]] - mx)) / sum);
        }
        for (int t = 0; t < a->ntok; t++)
            p[t] /= (float)a->heads;
    }
}

kn_status kn_attn_probs(kn_arena *A, const kn_attn_l *l, const kn_tensor *x, const kn_tensor *ctx, int64_t row0,
                        int64_t rows, const int *tok, int ntok, float *probs) {
    char s1[96], s2[96];
    KN_TRY(kn_op_in("attn_probs", "x", x, 3));
    KN_TRY(kn_op_in("attn_probs", "ctx", ctx, 3));
    if (!A)
        return kn_fail(KN_ERR_ARG, "attn_probs: an arena is needed for scratch");
    int64_t BT = x->shape[0], Lq = x->shape[1], L = ctx->shape[1];
    if (ctx->shape[0] != BT || row0 < 0 || rows < 1 || row0 + rows > BT)
        return kn_fail(KN_ERR_SHAPE, "attn_probs: x %s, ctx %s, rows [%lld, %lld)", kn_shape_str(x, s1, sizeof s1),
                       kn_shape_str(ctx, s2, sizeof s2), (long long)row0, (long long)(row0 + rows));
    for (int t = 0; t < ntok; t++)
        if (tok[t] < 0 || tok[t] >= L)
            return kn_fail(KN_ERR_ARG, "attn_probs: token position %d outside the %lld text tokens", tok[t],
                           (long long)L);
    size_t mark = kn_arena_mark(A);
    kn_tensor xs, cs, q = {0}, k = {0};
    kn_status st = kn_tensor_slice(x, 0, row0, row0 + rows, &xs);
    if (st == KN_OK)
        st = kn_tensor_slice(ctx, 0, row0, row0 + rows, &cs);
    if (st == KN_OK)
        st = kn_linear(A, &xs, &l->q.w->v, l->q.b ? &l->q.b->v : NULL, &q);
    if (st == KN_OK)
        st = kn_linear(A, &cs, &l->k.w->v, l->k.b ? &l->k.b->v : NULL, &k);
    int nth = kn_get_threads();
    float *scratch = st == KN_OK ? kn_arena_alloc(A, (size_t)(nth * L) * sizeof(float)) : NULL;
    if (st == KN_OK && !scratch)
        st = KN_ERR_NOMEM;
    if (st == KN_OK) {
        probs_task a = {q.data, k.data, scratch, probs, tok, ntok, l->heads, rows, Lq, L, l->dim_head,
                        1.0f / sqrtf((float)l->dim_head)};
        kn_parallel(probs_worker, &a);
    }
    kn_arena_reset(A, mark);
    return st;
}

/* attn2's capture: the captured sample's rows of h (BT, HW, C) -> probabilities -> token mean ->
 * bilinear to the latent grid -> added to cap->sum. Scratch from c->A, released. */
static void capture_layer(kn_ctx *c, const kn_attn_l *l, kn_var *h, kn_var *ctx, kn_attn_capture *cap, int64_t H,
                          int64_t W) {
    if (c->status != KN_OK || !h || !ctx || (cap->res > 0 && H != cap->res))
        return;
    int64_t BT = h->v.shape[0], HW = h->v.shape[1];
    if (cap->B < 1 || BT % cap->B || BT / cap->B != cap->T || !cap->sum) {
        kn_ctx_failf(c, KN_ERR_ARG, "attention capture: a layer of %lld rows outside a capture begun for a batch of "
                     "%lld x %lld frames (call kn_attn_capture_begin)", (long long)BT, (long long)cap->B,
                     (long long)cap->T);
        return;
    }
    int64_t T = cap->T, row0 = (cap->sample < 0 ? cap->B - 1 : cap->sample) * T, n = T * HW;
    size_t mark = kn_arena_mark(c->A);
    int64_t H0 = cap->H, W0 = cap->W;
    float *probs = kn_arena_alloc(c->A, (size_t)(n * cap->ntok) * sizeof(float));
    float *map = kn_arena_alloc(c->A, (size_t)n * sizeof(float));
    float *up = kn_arena_alloc(c->A, (size_t)(T * H0 * W0) * sizeof(float));
    kn_status st = probs && map && up ? KN_OK : KN_ERR_NOMEM;
    if (st == KN_OK)
        st = kn_attn_probs(c->A, l, &h->v, &ctx->v, row0, T, cap->tok, cap->ntok, probs);
    if (st == KN_OK && cap->on_layer) {
        kn_attn_capture_layer info = {cap->nlayer, l, &h->v, &ctx->v, row0, T, H, W, ctx->v.shape[1], probs};
        cap->on_layer(&info, cap->user);
    }
    if (st == KN_OK) {
        for (int64_t i = 0; i < n; i++) {
            float m = 0.0f;
            for (int t = 0; t < cap->ntok; t++)
                m += probs[i * cap->ntok + t];
            map[i] = m / (float)cap->ntok;
        }
        kn_tensor tm = kn_tensor_view(KN_F32, 4, (int64_t[]){T, 1, H, W}, map);
        kn_tensor tu = kn_tensor_view(KN_F32, 4, (int64_t[]){T, 1, H0, W0}, up);
        st = kn_resize_bilinear(NULL, &tm, H0, W0, &tu);
    }
    if (st == KN_OK) {
        for (int64_t i = 0; i < T * H0 * W0; i++)
            cap->sum[i] += up[i];
        cap->count++;
        cap->nlayer++;
    }
    kn_arena_reset(c->A, mark);
    if (st != KN_OK)
        kn_ctx_fail(c, st);
}

static kn_var *tblock_fwd(kn_ctx *c, const kn_tblock_l *l, kn_var *x, kn_var *ctx, kn_attn_capture *cap, int64_t H,
                          int64_t W) {
    size_t m = kn_ctx_scope_begin(c);
    kn_var *h = kn_layer_norm_fwd(c, &l->norm1, x);
    h = kn_attn_fwd(c, &l->attn1, h, NULL, NULL);
    x = kn_v_add(c, h, x);
    x = kn_ctx_scope_end(c, m, x);
    m = kn_ctx_scope_begin(c);
    h = kn_layer_norm_fwd(c, &l->norm2, x);
    if (cap && ctx)
        capture_layer(c, &l->attn2, h, ctx, cap, H, W);
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

kn_var *kn_tblock_fwd(kn_ctx *c, const kn_tblock_l *l, kn_var *x, kn_var *ctx) {
    return tblock_fwd(c, l, x, ctx, NULL, 0, 0);
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
    return kn_t2d_fwd_cap(c, l, x, ctx, NULL);
}

kn_var *kn_t2d_fwd_cap(kn_ctx *c, const kn_t2d_l *l, kn_var *x, kn_var *ctx, kn_attn_capture *cap) {
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
        h = tblock_fwd(c, &l->blocks[i], h, ctx, cap, H, W);
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
