/* taehv.h — TAEHV tiny video autoencoder (madebyollin/taehv `taehv.py`, the taew2_1 / taehv
 * layout: Wan 2.1, Wan 2.2-14B, Qwen-Image, HunyuanVideo 1), forward only, in the "parallel"
 * formulation: frames are folded into the batch, (N*T, C, H, W), row n*T + t.
 *
 *   Encoder (index: layer, time)                  Decoder
 *    0 conv(3->64)  1 ReLU  2 TPool(2)  T/2         0 Clamp tanh(x/3)*3  1 conv(16->256)  2 ReLU
 *    3 conv s2 nobias  4-6 MemBlock                 3-5 MemBlock  6 Up x2  7 TGrow(1)  8 conv nobias 256->128
 *    7 TPool(2) T/4  8 conv s2  9-11 MemBlock       9-11 MemBlock 12 Up x2 13 TGrow(2) 14 conv nobias 128->64
 *   12 TPool(1)  13 conv s2  14-16 MemBlock        15-17 MemBlock 18 Up x2 19 TGrow(2) 20 conv nobias 64->64
 *   17 conv(64->16)                                21 ReLU  22 conv(64->3)
 *
 * MemBlock(C): past = the block's input at t-1 (zeros at t = 0);
 *   y = ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(cat_ch(x, past)))))) + x).
 * TPool(C, s): frames s*j .. s*j+s-1 concatenated along channels in time order, 1x1 conv s*C -> C.
 * TGrow(C, s): 1x1 conv C -> s*C; channel block k becomes frame s*t + k.
 *
 * Videos are NTCHW in [0, 1]. Encoding pads T at the end with copies of the last frame up to a
 * multiple of t_downscale (4) and gives ceil(T/4) latents (N, L, 16, H/8, W/8); decoding L latents
 * gives 4L frames, clamped to [0, 1] with the first t_upscale - 1 = 3 dropped: 4L - 3 frames.
 */
#ifndef KN_TAEHV_H
#define KN_TAEHV_H

#include "models/taesd.h"

#define KN_TAEHV_ENC_LAYERS 18
#define KN_TAEHV_DEC_LAYERS 23

typedef struct kn_taehv_config {
    int has_encoder, has_decoder;
    int64_t image_channels;   /* 3 (patch size 1) */
    int64_t latent_channels;  /* 16 */
    int64_t enc_channels;     /* 64 */
    int64_t dec_channels[4];  /* 256, 128, 64, 64 */
    int enc_tpool[3];         /* time strides of encoder layers 2, 7, 12: 2, 2, 1 */
    int dec_tgrow[3];         /* time strides of decoder layers 7, 13, 19: 1, 2, 2 */
} kn_taehv_config;

/* taehv.py TAEHV() defaults (taew2_1 shapes). */
kn_taehv_config kn_taehv_config_default(void);

/* A conv (conv0), TPool/TGrow (conv0, stride_t) or MemBlock (conv0, conv2, conv4). */
typedef struct kn_taehv_layer {
    kn_conv_l conv0, conv2, conv4;
    int stride_t;
} kn_taehv_layer;

typedef struct kn_taehv {
    kn_taehv_config cfg;
    kn_params P;              /* names "encoder.N..." and "decoder.N..." as in taew2_1.pth */
    kn_taehv_layer enc[KN_TAEHV_ENC_LAYERS];
    kn_taehv_layer dec[KN_TAEHV_DEC_LAYERS];
    int t_downscale, t_upscale, frames_to_trim;
} kn_taehv;

/* Declares the parameters (zeroed; fill with kn_params_load). NULL + message on a bad config. */
kn_taehv *kn_taehv_new(const kn_taehv_config *cfg);
void kn_taehv_free(kn_taehv *m);

/* x (N, T, image_channels, H, W) in [0, 1] -> latents (N, ceil(T/t_downscale), L, ceil(H/8),
 * ceil(W/8)). Inference only (fails with a tape). The hook sees folded (N*T', C, H', W') outputs. */
kn_var *kn_taehv_encode(kn_ctx *c, const kn_taehv *m, kn_var *x, kn_tae_hook hook, void *user);
/* z (N, L, latent, h, w) -> video (N, L*t_upscale - frames_to_trim, image_channels, 8h, 8w),
 * clamped to [0, 1]. */
kn_var *kn_taehv_decode(kn_ctx *c, const kn_taehv *m, kn_var *z, kn_tae_hook hook, void *user);
/* The decoder output before the clamp and the trim: (N, L*t_upscale, image_channels, 8h, 8w). */
kn_var *kn_taehv_decode_raw(kn_ctx *c, const kn_taehv *m, kn_var *z, kn_tae_hook hook, void *user);

#endif
