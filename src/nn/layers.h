/* layers.h — the building blocks shared by the diffusers-family models, with parameter names
 * equal to the PyTorch state-dict names (so a folder of real weights loads with no mapping).
 *
 * Every layer has a `*_decl(P, prefix, ...)` that declares its parameters under `prefix` (e.g.
 * "down_blocks.0.resnets.1") and a forward function on kn_var. Shapes in comments use the folded
 * video layout (BT, C, H, W), BT = batch * frames, and token layout (B, L, C). */
#ifndef KN_LAYERS_H
#define KN_LAYERS_H

#include "nn/nn.h"

/* nn.Linear: weight (out, in), bias (out) or none. */
typedef struct { kn_var *w, *b; } kn_linear_l;
void kn_linear_decl(kn_linear_l *l, kn_params *P, int64_t in, int64_t out, int bias, const char *prefix);
kn_var *kn_linear_fwd(kn_ctx *c, const kn_linear_l *l, kn_var *x);

/* nn.Conv2d: weight (out, in, k, k), bias (out). */
typedef struct { kn_var *w, *b; kn_conv2d_params p; } kn_conv_l;
void kn_conv_decl(kn_conv_l *l, kn_params *P, int64_t in, int64_t out, int k, int stride, int pad, int bias,
                  const char *prefix);
kn_var *kn_conv_fwd(kn_ctx *c, const kn_conv_l *l, kn_var *x);

/* nn.GroupNorm / nn.LayerNorm (affine). */
typedef struct { kn_var *w, *b; int groups; float eps; } kn_norm_l;
void kn_group_norm_decl(kn_norm_l *l, kn_params *P, int64_t C, int groups, float eps, const char *prefix);
void kn_layer_norm_decl(kn_norm_l *l, kn_params *P, int64_t C, float eps, const char *prefix);
/* frames = 1: per sample; frames = T: statistics across the T frames of each video. */
kn_var *kn_group_norm_fwd(kn_ctx *c, const kn_norm_l *l, kn_var *x, int64_t frames);
kn_var *kn_layer_norm_fwd(kn_ctx *c, const kn_norm_l *l, kn_var *x);

/* diffusers ResnetBlock2D (time_embedding_norm "default", output_scale_factor 1):
 * h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))[:, :, None, None];
 * h = conv2(silu(norm2(h))); out = shortcut(x) + h. temb_ch = 0 means no time embedding. */
typedef struct {
    kn_norm_l norm1, norm2;
    kn_conv_l conv1, conv2, shortcut;
    kn_linear_l temb;
    int has_shortcut, has_temb;
    float out_scale;
} kn_resnet_l;
void kn_resnet_decl(kn_resnet_l *l, kn_params *P, int64_t in, int64_t out, int64_t temb_ch, int groups, float eps,
                    const char *prefix);
/* x (BT, in, H, W), temb (BT, temb_ch) or NULL -> (BT, out, H, W) */
kn_var *kn_resnet_fwd(kn_ctx *c, const kn_resnet_l *l, kn_var *x, kn_var *temb);

/* diffusers Attention (attn processor 2.0 math): q = to_q(x), k = to_k(ctx), v = to_v(ctx),
 * softmax(q kᵀ / sqrt(d)) v per head, to_out.0. */
typedef struct {
    kn_linear_l q, k, v, out;
    int heads;
    int64_t dim_head;
} kn_attn_l;
void kn_attn_decl(kn_attn_l *l, kn_params *P, int64_t query_dim, int64_t ctx_dim, int heads, int64_t dim_head,
                  int qkv_bias, const char *prefix);
/* x (B, L, query_dim), ctx (B, Lc, ctx_dim) or NULL for self-attention -> (B, L, query_dim) */
kn_var *kn_attn_fwd(kn_ctx *c, const kn_attn_l *l, kn_var *x, kn_var *ctx, const kn_tensor *mask);

/* diffusers BasicTransformerBlock with GEGLU feed-forward:
 * x += attn1(norm1(x)); x += attn2(norm2(x), ctx); x += ff(norm3(x)). */
typedef struct {
    kn_norm_l norm1, norm2, norm3;
    kn_attn_l attn1, attn2;
    kn_linear_l ff_in, ff_out; /* ff.net.0.proj (dim -> 8 dim), ff.net.2 (4 dim -> dim) */
} kn_tblock_l;
/* ctx_dim = 0: attn2 is self-attention too (double_self_attention). */
void kn_tblock_decl(kn_tblock_l *l, kn_params *P, int64_t dim, int heads, int64_t dim_head, int64_t ctx_dim,
                    const char *prefix);
kn_var *kn_tblock_fwd(kn_ctx *c, const kn_tblock_l *l, kn_var *x, kn_var *ctx);

/* diffusers Transformer2DModel with use_linear_projection: GroupNorm(eps 1e-6) per frame ->
 * (BT, HW, C) -> proj_in -> blocks -> proj_out -> (BT, C, H, W) + x. */
typedef struct {
    kn_norm_l norm;
    kn_linear_l proj_in, proj_out;
    kn_tblock_l *blocks;
    int nblocks;
} kn_t2d_l;
void kn_t2d_decl(kn_t2d_l *l, kn_params *P, int64_t C, int heads, int64_t dim_head, int64_t ctx_dim, int layers,
                 int groups, const char *prefix);
kn_var *kn_t2d_fwd(kn_ctx *c, const kn_t2d_l *l, kn_var *x, kn_var *ctx);

/* ------------------------------------------------ cross-attention capture
 * Prompt-to-prompt style "aggregate attention" (Hertz et al. 2022; diffusers' AttentionStore):
 * while a capture is attached, every spatial transformer's cross-attention (attn2 of each block)
 * also computes, for the captured sample's rows only, the attention probabilities of the chosen
 * text positions: softmax(q kᵀ / sqrt(d)) over the L text tokens, averaged over heads. The flash
 * kernel never materialises them, so they are computed separately (one q·kᵀ pass over the L
 * keys). Their mean over the chosen positions, bilinearly resized to the latent grid, is summed
 * into `sum`; sum / count is then the mean over layers and over UNet calls (denoising steps).
 * With no capture attached nothing of this runs: the forward pass is unchanged, bit for bit. */
#define KN_CAPTURE_MAX_TOKENS 16

/* What one cross-attention layer reports (for tests and per-layer views). */
typedef struct kn_attn_capture_layer {
    int index;               /* 0, 1, ... in forward order within one UNet call */
    const kn_attn_l *attn;   /* the attn2 module */
    const kn_tensor *x;      /* its query input (BT, h*w, C) (after norm2), all rows */
    const kn_tensor *ctx;    /* its context (BT, L, Cc), all rows */
    int64_t row0, rows;      /* the captured rows of x: [row0, row0 + rows), one sample's T frames */
    int64_t h, w, L;
    const float *probs;      /* (rows, h*w, ntok): softmax over L of the chosen tokens, head mean */
} kn_attn_capture_layer;

typedef struct kn_attn_capture {
    /* set by the caller */
    int ntok;                            /* 1..KN_CAPTURE_MAX_TOKENS positions in the text */
    int tok[KN_CAPTURE_MAX_TOKENS];
    int sample;                          /* captured sample of the batch; -1: the last (CFG puts the
                                          * prompt after the unconditional sample) */
    int res;                             /* 0: every layer; > 0: only the layers whose map has res
                                          * rows (prompt-to-prompt keeps SD's 16x16 layers) */
    void (*on_layer)(const kn_attn_capture_layer *l, void *user); /* optional */
    void *user;
    /* kept by the capture (kn_attn_capture_begin / the layers) */
    int64_t B, T, H, W;                  /* current batch; the latent grid (fixed at the first call) */
    float *sum;                          /* (T, H, W), heap, freed by kn_attn_capture_free */
    int64_t count;                       /* maps summed: layers x calls */
    int nlayer;                          /* layers seen in the current call */
} kn_attn_capture;

/* Starts one UNet call of batch B on a latent grid (T, H, W) (the UNet calls it): allocates and
 * zeroes `sum` at the first call; later calls must have the same grid. Checks the tokens and the
 * sample index. */
kn_status kn_attn_capture_begin(kn_attn_capture *cap, int64_t B, int64_t T, int64_t H, int64_t W);
/* mean (T, H, W) = sum / count; fails when nothing was captured. */
kn_status kn_attn_capture_mean(const kn_attn_capture *cap, float *mean);
/* Frees `sum` and zeroes the aggregate (the caller's settings stay). */
void kn_attn_capture_free(kn_attn_capture *cap);
/* kn_t2d_fwd that reports its blocks' cross-attention to cap (NULL: exactly kn_t2d_fwd). */
kn_var *kn_t2d_fwd_cap(kn_ctx *c, const kn_t2d_l *l, kn_var *x, kn_var *ctx, kn_attn_capture *cap);
/* The probabilities alone: x (BT, Lq, C), ctx (BT, L, Cc), rows [row0, row0 + rows) ->
 * probs (rows, Lq, ntok) (head mean of softmax over L at tok[0..ntok)). Scratch from A (released). */
kn_status kn_attn_probs(kn_arena *A, const kn_attn_l *l, const kn_tensor *x, const kn_tensor *ctx, int64_t row0,
                        int64_t rows, const int *tok, int ntok, float *probs);

/* diffusers TransformerTemporalModel: GroupNorm(eps 1e-6) across frames -> tokens (B*H*W, T, C)
 * -> proj_in -> blocks (self-attention over frames, twice) -> proj_out -> back + x. */
typedef kn_t2d_l kn_ttemp_l;
void kn_ttemp_decl(kn_ttemp_l *l, kn_params *P, int64_t C, int heads, int64_t dim_head, int layers, int groups,
                   const char *prefix);
/* x (B*T, C, H, W), T = c->frames */
kn_var *kn_ttemp_fwd(kn_ctx *c, const kn_ttemp_l *l, kn_var *x);

/* diffusers TemporalConvLayer: 4 x (GroupNorm across frames -> SiLU -> Conv3d (3,1,1)) + x.
 * Names conv1.0/conv1.2, conv{2,3,4}.0/conv{2,3,4}.3. */
typedef struct {
    kn_norm_l norm[4];
    kn_var *w[4], *b[4];
} kn_tconv_l;
void kn_tconv_decl(kn_tconv_l *l, kn_params *P, int64_t C, int groups, float eps, const char *prefix);
kn_var *kn_tconv_fwd(kn_ctx *c, const kn_tconv_l *l, kn_var *x);

/* diffusers Upsample2D (nearest x2, or to an explicit size, then conv 3x3) and Downsample2D
 * (conv 3x3 stride 2 pad `padding`; padding 0 means F.pad (0,1,0,1) first, as in the VAE). */
typedef struct { kn_conv_l conv; int pad_asym; } kn_sample_l;
void kn_upsample_decl(kn_sample_l *l, kn_params *P, int64_t C, const char *prefix);
kn_var *kn_upsample_fwd(kn_ctx *c, const kn_sample_l *l, kn_var *x, int64_t H, int64_t W); /* H=W=0: x2 */
void kn_downsample_decl(kn_sample_l *l, kn_params *P, int64_t C, int padding, const char *prefix);
kn_var *kn_downsample_fwd(kn_ctx *c, const kn_sample_l *l, kn_var *x);

#endif
