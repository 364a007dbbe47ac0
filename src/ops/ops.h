/* ops.h — the kernel layer: every op with a shape-checking entry point, a forward kernel, a
 * backward rule, and a naive reference kernel kept beside any optimised one.
 *
 * Conventions (all ops):
 *   - Inputs and outputs are kn_tensor, F32, contiguous unless an op says otherwise.
 *   - Output allocation: if out->data is NULL the op allocates it from the arena A (which must then
 *     be non-NULL) with the right shape; otherwise out must already have the right shape (checked).
 *   - Errors: a shape or dtype mismatch returns KN_ERR_SHAPE / KN_ERR_DTYPE with a message that
 *     names the op and the shapes, e.g. "conv2d: x (2,3,8,8) has 3 channels, w (4,5,3,3) wants 5".
 *   - Backward functions ACCUMULATE (+=) into every gradient they are given (llm.c style), so that
 *     residual branches and shared weights need no extra adds; the caller zeroes them first. A
 *     gradient pointer may be NULL when it is not wanted.
 *   - Threads: kernels split work by output element over the kn_parallel pool. Every reduction runs
 *     in an order that does not depend on the thread count, so results are bitwise identical for
 *     any kn_set_threads(n).
 *   - The `_ref` kernels are the naive loops from the definition; tests compare the fast kernels
 *     against them and against PyTorch fixtures.
 *
 * Layouts used by the models:
 *   - images and folded video: (B*T, C, H, W), row b*T + t = batch b, frame t;
 *   - video: (N, C, T, H, W);
 *   - token sequences: (B, L, C), heads interleaved in C as [h0 d0..dD-1, h1 ...] (PyTorch's
 *     view(B, L, H, D)).
 */
#ifndef KN_OPS_H
#define KN_OPS_H

#include "core/core.h"

/* ------------------------------------------------------------- helpers
 * Shared argument handling of the ops (src/ops/common.c). */
/* Sets up an op's output: allocated F32 (ndim, shape) from A when out->data is NULL, else
 * checked to be F32, contiguous and of exactly that shape. Messages name the op. */
kn_status kn_op_out(const char *op, kn_arena *A, int ndim, const int64_t *shape, kn_tensor *out);
/* Checks that an input is F32, contiguous and (ndim >= 0) of that rank. */
kn_status kn_op_in(const char *op, const char *what, const kn_tensor *t, int ndim);

/* ------------------------------------------------------------------ GEMM
 * Row-major C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C.
 * op(A) = A (lda >= K) or Aᵀ (A stored K×M, lda >= M); likewise B.
 * Every kernel computes each C element with one fixed summation order, whatever the threads.
 * kn_gemm is the one entry point the rest of kinema uses; which implementation runs behind it
 * (own AVX-512 kernel, OpenBLAS) is decided by the benchmark and written in docs/design.md. */
void kn_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void kn_gemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Single-threaded variant for callers that already parallelise over an outer loop. */
void kn_gemm_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* --------------------------------------------------------- linear, matmul
 * linear: x (..., in), w (out, in) [PyTorch nn.Linear], b (out) or NULL -> y (..., out). */
kn_status kn_linear(kn_arena *A, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b, kn_tensor *y);
kn_status kn_linear_backward(const kn_tensor *x, const kn_tensor *w, const kn_tensor *dy, kn_tensor *dx,
                             kn_tensor *dw, kn_tensor *db);
/* batched matmul: a (B, M, K), b (B, K, N) -> c (B, M, N); B may be 1 on either side (broadcast). */
kn_status kn_matmul(kn_arena *A, const kn_tensor *a, const kn_tensor *b, kn_tensor *c);
kn_status kn_matmul_backward(const kn_tensor *a, const kn_tensor *b, const kn_tensor *dc, kn_tensor *da,
                             kn_tensor *db);

/* ------------------------------------------------------------ convolution */
typedef struct {
    int stride_h, stride_w;
    int pad_top, pad_bottom, pad_left, pad_right; /* zero padding; asymmetric allowed */
    int groups;
} kn_conv2d_params;

/* Symmetric padding p, stride s, one group. */
kn_conv2d_params kn_conv2d_params_make(int stride, int pad);

/* x (N, C, H, W), w (O, C/groups, kh, kw), b (O) or NULL -> y (N, O, Ho, Wo),
 * Ho = (H + pad_top + pad_bottom - kh) / stride_h + 1. */
kn_status kn_conv2d(kn_arena *A, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b,
                    kn_conv2d_params p, kn_tensor *y);
kn_status kn_conv2d_backward(const kn_tensor *x, const kn_tensor *w, const kn_tensor *dy, kn_conv2d_params p,
                             kn_tensor *dx, kn_tensor *dw, kn_tensor *db);
void kn_conv2d_ref(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t C, int64_t H,
                   int64_t W, int64_t O, int kh, int kw, kn_conv2d_params p);

/* Convolution over time only, on folded video: x (N*T, C, H, W) with T frames per sample,
 * w (O, C, k, 1, 1) [nn.Conv3d weight with kernel (k,1,1)], b (O) or NULL, zero padding pad_front
 * frames before and pad_back after -> y (N*T', O, H, W), T' = T + pad_front + pad_back - k + 1.
 * This is diffusers' TemporalConvLayer conv on the layout the U-Net keeps (no permute needed). */
kn_status kn_conv_temporal(kn_arena *A, const kn_tensor *x, int64_t T, const kn_tensor *w, const kn_tensor *b,
                           int pad_front, int pad_back, kn_tensor *y);
kn_status kn_conv_temporal_backward(const kn_tensor *x, int64_t T, const kn_tensor *w, const kn_tensor *dy,
                                    int pad_front, int pad_back, kn_tensor *dx, kn_tensor *dw, kn_tensor *db);

/* Full 3-D convolution: x (N, C, T, H, W), w (O, C, kt, kh, kw), b (O) or NULL,
 * stride (st, sh, sw), symmetric zero padding (pt, ph, pw) -> y (N, O, T', H', W'). */
typedef struct { int stride[3]; int pad[3]; } kn_conv3d_params;
kn_status kn_conv3d(kn_arena *A, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b,
                    kn_conv3d_params p, kn_tensor *y);
kn_status kn_conv3d_backward(const kn_tensor *x, const kn_tensor *w, const kn_tensor *dy, kn_conv3d_params p,
                             kn_tensor *dx, kn_tensor *dw, kn_tensor *db);

/* ------------------------------------------------------------ normalisation
 * Group norm over x (N, C, ...) (any rank >= 2; "..." flattened to S positions).
 * frames = 1: statistics per sample and group, over (C/G) x S — PyTorch nn.GroupNorm.
 * frames = T > 1: x is folded video (N*T, C, ...) and the statistics of a group pool T consecutive
 * samples, i.e. GroupNorm over the 5-D (N, C, T, H, W) tensor, without permuting.
 * gamma, beta (C) or NULL. Biased variance, y = (x - mean) / sqrt(var + eps) * gamma + beta.
 * mean_out, rstd_out (N/frames * G floats) may be NULL; backward needs them. */
kn_status kn_group_norm(kn_arena *A, const kn_tensor *x, int groups, int64_t frames, float eps,
                        const kn_tensor *gamma, const kn_tensor *beta, kn_tensor *y, float *mean_out,
                        float *rstd_out);
kn_status kn_group_norm_backward(const kn_tensor *x, int groups, int64_t frames, const kn_tensor *gamma,
                                 const float *mean, const float *rstd, const kn_tensor *dy, kn_tensor *dx,
                                 kn_tensor *dgamma, kn_tensor *dbeta);

/* Layer norm over the last dimension D of x (..., D); gamma, beta (D) or NULL.
 * mean_out, rstd_out (numel/D floats) may be NULL. */
kn_status kn_layer_norm(kn_arena *A, const kn_tensor *x, float eps, const kn_tensor *gamma,
                        const kn_tensor *beta, kn_tensor *y, float *mean_out, float *rstd_out);
kn_status kn_layer_norm_backward(const kn_tensor *x, const kn_tensor *gamma, const float *mean,
                                 const float *rstd, const kn_tensor *dy, kn_tensor *dx, kn_tensor *dgamma,
                                 kn_tensor *dbeta);

/* ------------------------------------------------------------ activations */
typedef enum {
    KN_ACT_IDENTITY = 0,
    KN_ACT_SILU,
    KN_ACT_RELU,
    KN_ACT_GELU,       /* exact: x * Phi(x) with erf */
    KN_ACT_GELU_TANH,  /* tanh approximation */
    KN_ACT_QUICK_GELU, /* x * sigmoid(1.702 x) (OpenAI CLIP) */
    KN_ACT_TANH,
    KN_ACT_SIGMOID,
} kn_act;

/* y = act(x), same shape; y may alias x (in place). */
kn_status kn_activation(kn_arena *A, kn_act act, const kn_tensor *x, kn_tensor *y);
/* dx += dy * act'(x) */
kn_status kn_activation_backward(kn_act act, const kn_tensor *x, const kn_tensor *dy, kn_tensor *dx);
/* Scalar forms (for fused loops). */
float kn_act_f(kn_act act, float x);
float kn_act_df(kn_act act, float x);

/* GEGLU (diffusers): x (..., 2D) -> y (..., D), y = x[..., :D] * gelu(x[..., D:]) (exact erf gelu). */
kn_status kn_geglu(kn_arena *A, const kn_tensor *x, kn_tensor *y);
kn_status kn_geglu_backward(const kn_tensor *x, const kn_tensor *dy, kn_tensor *dx);

/* Softmax over the last dimension; y may alias x. */
kn_status kn_softmax(kn_arena *A, const kn_tensor *x, kn_tensor *y);
/* dx += y * (dy - sum(dy * y)) with y the softmax output. */
kn_status kn_softmax_backward(const kn_tensor *y, const kn_tensor *dy, kn_tensor *dx);

/* -------------------------------------------------------------- attention
 * Scaled dot-product multi-head attention, memory-efficient (flash-style online softmax over key
 * blocks: the Lq x Lk score matrix is never materialised).
 * q (B, Lq, H*D), k (B, Lk, H*D), v (B, Lk, H*Dv) -> o (B, Lq, H*Dv), heads interleaved in the
 * last dim as PyTorch's view(B, L, H, D). scale: usually 1/sqrt(D).
 * mask: NULL or F32 additive bias broadcastable as (B or 1, Lq, Lk) (use -INFINITY to mask out).
 * lse_out: NULL or (B, H, Lq) floats receiving the log-sum-exp of each score row (for backward).
 * Self-attention: k = v = q's source; cross-attention: Lk != Lq (text); temporal attention: the
 * caller arranges video as (B*H*W, T, C) tokens. */
kn_status kn_attention(kn_arena *A, const kn_tensor *q, const kn_tensor *k, const kn_tensor *v, int heads,
                       float scale, const kn_tensor *mask, kn_tensor *o, float *lse_out);
/* Backward from the forward's lse (recomputes the scores block by block). */
kn_status kn_attention_backward(const kn_tensor *q, const kn_tensor *k, const kn_tensor *v, int heads,
                                float scale, const kn_tensor *mask, const kn_tensor *o, const float *lse,
                                const kn_tensor *dout, kn_tensor *dq, kn_tensor *dk, kn_tensor *dv);
/* Naive reference: materialises the scores. Same argument meaning, raw pointers, contiguous. */
void kn_attention_ref(const float *q, const float *k, const float *v, const float *mask, int64_t mask_b,
                      float *o, int64_t B, int64_t Lq, int64_t Lk, int heads, int64_t D, int64_t Dv,
                      float scale);

/* ------------------------------------------------------ resize and pooling
 * All on (N, C, H, W) (fold frames into N for video). */
/* PyTorch F.interpolate(mode='nearest') to (Ho, Wo): src = floor(dst * in / out). */
kn_status kn_resize_nearest(kn_arena *A, const kn_tensor *x, int64_t Ho, int64_t Wo, kn_tensor *y);
kn_status kn_resize_nearest_backward(const kn_tensor *dy, kn_tensor *dx);
/* PyTorch F.interpolate(mode='bilinear', align_corners=False, antialias=False). */
kn_status kn_resize_bilinear(kn_arena *A, const kn_tensor *x, int64_t Ho, int64_t Wo, kn_tensor *y);
kn_status kn_resize_bilinear_backward(const kn_tensor *dy, kn_tensor *dx);
/* Linear resize in time of folded video x (N*T, C, H, W) to To frames per sample
 * (align_corners=False, like F.interpolate(mode='linear') along T). */
kn_status kn_resize_time_linear(kn_arena *A, const kn_tensor *x, int64_t T, int64_t To, kn_tensor *y);
kn_status kn_resize_time_linear_backward(const kn_tensor *dy, int64_t T, int64_t To, kn_tensor *dx);
/* Average pool, kernel k, stride k (no padding). */
kn_status kn_avg_pool2d(kn_arena *A, const kn_tensor *x, int k, kn_tensor *y);
kn_status kn_avg_pool2d_backward(const kn_tensor *dy, int k, kn_tensor *dx);
/* Strided subsampling: y[.., i, j] = x[.., i*s, j*s]. */
kn_status kn_downsample_stride(kn_arena *A, const kn_tensor *x, int s, kn_tensor *y);
kn_status kn_downsample_stride_backward(const kn_tensor *dy, int s, kn_tensor *dx);

/* ---------------------------------------------------- elementwise and misc */
/* y = a + b (same shape, or b broadcast as a suffix/prefix-compatible shape; see ops/elementwise.c). */
kn_status kn_add(kn_arena *A, const kn_tensor *a, const kn_tensor *b, kn_tensor *y);
kn_status kn_mul(kn_arena *A, const kn_tensor *a, const kn_tensor *b, kn_tensor *y);
/* y = alpha * x + beta * y, in place on y, same shape. */
kn_status kn_axpby(float alpha, const kn_tensor *x, float beta, kn_tensor *y);
/* y = x * s. */
kn_status kn_scale(kn_arena *A, const kn_tensor *x, float s, kn_tensor *y);

/* Sinusoidal timestep embedding (diffusers get_timestep_embedding):
 * t (N) F32 -> y (N, dim); half = dim/2, freq_i = exp(-ln(max_period) * i / (half - shift));
 * flip_sin_to_cos = 1 gives [cos, sin], 0 gives [sin, cos]; an odd dim is zero-padded. */
kn_status kn_timestep_embedding(kn_arena *A, const float *t, int64_t n, int dim, int flip_sin_to_cos,
                                float downscale_freq_shift, float max_period, kn_tensor *y);

/* Dropout with probability p: keep mask drawn from Philox (seed, offset + element index), kept
 * values scaled by 1/(1-p). The same (seed, offset) in backward reproduces the mask. */
kn_status kn_dropout(kn_arena *A, const kn_tensor *x, float p, uint64_t seed, uint64_t offset, kn_tensor *y);
kn_status kn_dropout_backward(const kn_tensor *dy, float p, uint64_t seed, uint64_t offset, kn_tensor *dx);

/* Losses: mean over all elements. Returns the loss in *loss; backward accumulates
 * d(loss)/d(pred) * dloss into dpred. */
kn_status kn_mse_loss(const kn_tensor *pred, const kn_tensor *target, const float *weight, double *loss);
kn_status kn_mse_loss_backward(const kn_tensor *pred, const kn_tensor *target, const float *weight,
                               float dloss, kn_tensor *dpred);
kn_status kn_l1_loss(const kn_tensor *pred, const kn_tensor *target, double *loss);
kn_status kn_l1_loss_backward(const kn_tensor *pred, const kn_tensor *target, float dloss, kn_tensor *dpred);

/* Deterministic reductions: fixed block partition (independent of threads), double accumulation. */
double kn_sum(const kn_tensor *x);
double kn_mean(const kn_tensor *x);
/* Sum over dim, keepdim semantics removed: (.., n, ..) -> (.., ..). */
kn_status kn_sum_dim(kn_arena *A, const kn_tensor *x, int dim, kn_tensor *y);

#endif
