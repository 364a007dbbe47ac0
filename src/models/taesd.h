/* taesd.h — TAESD-family tiny image autoencoders (madebyollin/taesd `taesd.py`: SD1/SD2 "taesd",
 * SDXL, SD3, FLUX.1 and FLUX.2 "taef2"), forward only.
 *
 * Both networks are nn.Sequential stacks of 3x3 convs, ReLU, nearest x2 upsampling and a
 * residual Block; parameter names are the upstream state-dict names ("1.conv.0.weight",
 * "11.pool.1.bias", ...), which the encoder and the decoder share, so each network has its own
 * parameter table. The model is fully described by a config that a loader reads from the weight
 * shapes (io/tae_load.h): channel counts, the latent channel count and which Blocks carry the
 * GroupNorm "pool" branch (TAEF2 only; SD1 weights have none).
 *
 *     Encoder (Sequential index: layer)            Decoder
 *      0 conv(3->C)   1 Block   2 conv s2 nobias     0 Clamp tanh(x/3)*3   1 conv(L->C)  2 ReLU
 *      3-5 Block      6 conv s2 nobias              3-5 Block   6 Up x2   7 conv nobias
 *      7-9 Block     10 conv s2 nobias              8-10 Block 11 Up x2  12 conv nobias
 *     11-13 Block    14 conv(C->L)                 13-15 Block 16 Up x2  17 conv nobias
 *                                                    18 Block  19 conv(C->3)
 *
 * Block(C): x += pool(x) when present [1x1 conv C->4C nobias, GroupNorm(4, 4C), ReLU,
 * 1x1 conv 4C->C nobias]; y = ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(x))))) + x).
 *
 * Images are (N, 3, H, W) in [0, 1]; latents (N, L, ceil(H/8), ceil(W/8)), raw (no scale or shift).
 */
#ifndef KN_TAESD_H
#define KN_TAESD_H

#include "nn/layers.h"

#define KN_TAESD_ENC_LAYERS 15
#define KN_TAESD_DEC_LAYERS 20

/* Called after Sequential layer `layer` of network `net` ("encoder" / "decoder") with its output
 * (valid only during the call). TAEHV uses the same hook with folded video (N*T, C, H, W). */
typedef void (*kn_tae_hook)(const char *net, int layer, const kn_tensor *t, void *user);

typedef struct kn_taesd_config {
    int has_encoder, has_decoder;
    int64_t image_channels;              /* 3 */
    int64_t latent_channels;             /* 4 (SD1/SD2/SDXL), 16 (SD3, FLUX.1), 32 (FLUX.2) */
    int64_t enc_channels, dec_channels;  /* hidden width C: 64 */
    int64_t enc_pool_channels, dec_pool_channels; /* width of the GroupNorm branch: 4C */
    uint32_t enc_pool, dec_pool;         /* bit i: the Block at Sequential index i has the branch */
} kn_taesd_config;

/* One residual Block (and, for convs, only `conv0` is used). */
typedef struct kn_taesd_block {
    kn_conv_l conv0, conv2, conv4;
    int has_pool;
    kn_conv_l pool0, pool3;
    kn_norm_l pool1;
} kn_taesd_block;

typedef struct kn_taesd {
    kn_taesd_config cfg;
    kn_params enc_P, dec_P;              /* separate tables: the two networks share names */
    kn_taesd_block enc[KN_TAESD_ENC_LAYERS];
    kn_taesd_block dec[KN_TAESD_DEC_LAYERS];
} kn_taesd;

/* Whether Sequential index i of the encoder / decoder is a residual Block (a GroupNorm branch may
 * only sit on those). */
int kn_taesd_enc_is_block(int i);
int kn_taesd_dec_is_block(int i);

/* Declares every parameter of the networks the config has (zeroed; fill with kn_params_load).
 * Returns NULL with a message on an invalid config. */
kn_taesd *kn_taesd_new(const kn_taesd_config *cfg);
void kn_taesd_free(kn_taesd *m);

/* x (N, image_channels, H, W) in [0, 1] -> latents (N, L, ceil(H/8), ceil(W/8)). Inference only
 * (no tape). hook may be NULL. */
kn_var *kn_taesd_encode(kn_ctx *c, const kn_taesd *m, kn_var *x, kn_tae_hook hook, void *user);
/* latents (N, L, h, w) -> image (N, image_channels, 8h, 8w), NOT clamped (values run slightly past
 * [0, 1]; clamp for display). */
kn_var *kn_taesd_decode(kn_ctx *c, const kn_taesd *m, kn_var *z, kn_tae_hook hook, void *user);

/* Helpers shared with TAEHV (models/taehv.c). Forward only.
 * kn_tae_relu_: ReLU in place on a var this model computed (with a tape: a new var).
 * kn_tae_soft_clamp: new var tanh(x / 3) * 3 (upstream Clamp). */
kn_var *kn_tae_relu_(kn_ctx *c, kn_var *x);
kn_var *kn_tae_soft_clamp(kn_ctx *c, kn_var *x);

#endif
