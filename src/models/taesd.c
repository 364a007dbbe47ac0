/* taesd.c — TAESD-family tiny autoencoders (madebyollin/taesd `taesd.py`: Encoder, Decoder,
 * Block, Clamp), forward only. See taesd.h for the layer tables. */
#include "models/taesd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Layer kinds by Sequential index:
 *   c conv 3x3 with bias, s conv 3x3 stride 2 no bias, n conv 3x3 no bias, B Block,
 *   r ReLU, u nearest x2 upsample, T Clamp tanh(x/3)*3. */
static const char ENC_KINDS[KN_TAESD_ENC_LAYERS + 1] = "cBsBBBsBBBsBBBc";
static const char DEC_KINDS[KN_TAESD_DEC_LAYERS + 1] = "TcrBBBunBBBunBBBunBc";

int kn_taesd_enc_is_block(int i) { return i >= 0 && i < KN_TAESD_ENC_LAYERS && ENC_KINDS[i] == 'B'; }
int kn_taesd_dec_is_block(int i) { return i >= 0 && i < KN_TAESD_DEC_LAYERS && DEC_KINDS[i] == 'B'; }

kn_var *kn_tae_relu_(kn_ctx *c, kn_var *x) {
    if (c->status != KN_OK || !x)
        return NULL;
    if (c->tape)
        return kn_v_act(c, KN_ACT_RELU, x);
    kn_status st = kn_activation(NULL, KN_ACT_RELU, &x->v, &x->v);
    if (st != KN_OK) {
        kn_ctx_fail(c, st);
        return NULL;
    }
    return x;
}

kn_var *kn_tae_soft_clamp(kn_ctx *c, kn_var *x) {
    if (c->status != KN_OK || !x)
        return NULL;
    if (c->tape) { /* keep the graph differentiable: scale, tanh, scale */
        kn_var *h = kn_v_scale(c, x, 1.0f / 3.0f);
        h = kn_v_act(c, KN_ACT_TANH, h);
        return kn_v_scale(c, h, 3.0f);
    }
    if (!kn_tensor_is_contiguous(&x->v) || x->v.dtype != KN_F32) {
        kn_ctx_failf(c, KN_ERR_ARG, "tae clamp: input must be contiguous F32");
        return NULL;
    }
    kn_var *r = kn_var_new(c, x->v.ndim, x->v.shape);
    if (!r)
        return NULL;
    const float *s = x->v.data;
    float *d = r->v.data;
    for (int64_t i = 0, n = kn_tensor_numel(&x->v); i < n; i++)
        d[i] = tanhf(s[i] / 3.0f) * 3.0f; /* torch: x.div(3).tanh().mul(3) */
    return r;
}

/* ---------------------------------------------------------------- build */

static void decl_block(kn_taesd_block *b, kn_params *P, int i, int64_t C, int pool, int64_t PC) {
    char pre[64];
    snprintf(pre, sizeof pre, "%d.conv.0", i);
    kn_conv_decl(&b->conv0, P, C, C, 3, 1, 1, 1, pre);
    snprintf(pre, sizeof pre, "%d.conv.2", i);
    kn_conv_decl(&b->conv2, P, C, C, 3, 1, 1, 1, pre);
    snprintf(pre, sizeof pre, "%d.conv.4", i);
    kn_conv_decl(&b->conv4, P, C, C, 3, 1, 1, 1, pre);
    b->has_pool = pool;
    if (pool) {
        snprintf(pre, sizeof pre, "%d.pool.0", i);
        kn_conv_decl(&b->pool0, P, C, PC, 1, 1, 0, 0, pre);
        snprintf(pre, sizeof pre, "%d.pool.1", i);
        kn_group_norm_decl(&b->pool1, P, PC, 4, 1e-5f, pre);
        snprintf(pre, sizeof pre, "%d.pool.3", i);
        kn_conv_decl(&b->pool3, P, PC, C, 1, 1, 0, 0, pre);
    }
}

/* Declares one network. in/out: channels of the first and last conv (image or latent). */
static void decl_net(kn_taesd_block *L, kn_params *P, const char *kinds, int n, int64_t C, int64_t cin,
                     int64_t cout, uint32_t pool, int64_t PC) {
    char pre[32];
    int first_conv = 1;
    for (int i = 0; i < n; i++) {
        snprintf(pre, sizeof pre, "%d", i);
        switch (kinds[i]) {
        case 'c':
            if (first_conv)
                kn_conv_decl(&L[i].conv0, P, cin, C, 3, 1, 1, 1, pre);
            else
                kn_conv_decl(&L[i].conv0, P, C, cout, 3, 1, 1, 1, pre);
            first_conv = 0;
            break;
        case 's': kn_conv_decl(&L[i].conv0, P, C, C, 3, 2, 1, 0, pre); break;
        case 'n': kn_conv_decl(&L[i].conv0, P, C, C, 3, 1, 1, 0, pre); break;
        case 'B': decl_block(&L[i], P, i, C, (int)((pool >> i) & 1u), PC); break;
        default: break;
        }
    }
}

static int check_pool_bits(uint32_t bits, int (*is_block)(int), const char *net) {
    for (int i = 0; i < 32; i++)
        if (((bits >> i) & 1u) && !is_block(i)) {
            kn_fail(KN_ERR_ARG, "taesd: %s layer %d is not a Block and cannot have a GroupNorm branch", net, i);
            return 0;
        }
    return 1;
}

kn_taesd *kn_taesd_new(const kn_taesd_config *cfg) {
    const kn_taesd_config *g = cfg;
    if (!g->has_encoder && !g->has_decoder) {
        kn_fail(KN_ERR_ARG, "taesd: neither an encoder nor a decoder requested");
        return NULL;
    }
    if (g->image_channels < 1 || g->latent_channels < 1 || (g->has_encoder && g->enc_channels < 1) ||
        (g->has_decoder && g->dec_channels < 1)) {
        kn_fail(KN_ERR_ARG, "taesd: invalid channels (image %lld, latent %lld, encoder %lld, decoder %lld)",
                (long long)g->image_channels, (long long)g->latent_channels, (long long)g->enc_channels,
                (long long)g->dec_channels);
        return NULL;
    }
    if ((g->enc_pool && (g->enc_pool_channels < 4 || g->enc_pool_channels % 4)) ||
        (g->dec_pool && (g->dec_pool_channels < 4 || g->dec_pool_channels % 4))) {
        kn_fail(KN_ERR_ARG, "taesd: GroupNorm branch width (%lld / %lld) must be a positive multiple of 4 groups",
                (long long)g->enc_pool_channels, (long long)g->dec_pool_channels);
        return NULL;
    }
    if (!check_pool_bits(g->enc_pool, kn_taesd_enc_is_block, "encoder") ||
        !check_pool_bits(g->dec_pool, kn_taesd_dec_is_block, "decoder"))
        return NULL;
    kn_taesd *m = calloc(1, sizeof *m);
    if (!m) {
        kn_fail(KN_ERR_NOMEM, "taesd: out of memory");
        return NULL;
    }
    m->cfg = *g;
    if (g->has_encoder) {
        decl_net(m->enc, &m->enc_P, ENC_KINDS, KN_TAESD_ENC_LAYERS, g->enc_channels, g->image_channels,
                 g->latent_channels, g->enc_pool, g->enc_pool_channels);
        if (kn_params_alloc(&m->enc_P) != KN_OK) {
            kn_taesd_free(m);
            return NULL;
        }
    }
    if (g->has_decoder) {
        decl_net(m->dec, &m->dec_P, DEC_KINDS, KN_TAESD_DEC_LAYERS, g->dec_channels, g->latent_channels,
                 g->image_channels, g->dec_pool, g->dec_pool_channels);
        if (kn_params_alloc(&m->dec_P) != KN_OK) {
            kn_taesd_free(m);
            return NULL;
        }
    }
    return m;
}

void kn_taesd_free(kn_taesd *m) {
    if (!m)
        return;
    kn_params_free(&m->enc_P);
    kn_params_free(&m->dec_P);
    free(m);
}

/* -------------------------------------------------------------- forward */

/* taesd.py Block.forward; the "pool" branch (x + pool(x)) comes first when present. */
static kn_var *block_fwd(kn_ctx *c, const kn_taesd_block *b, kn_var *x) {
    if (c->status != KN_OK)
        return NULL;
    size_t m = kn_ctx_scope_begin(c);
    if (b->has_pool) {
        kn_var *p = kn_conv_fwd(c, &b->pool0, x);            /* (N, 4C, H, W) */
        p = kn_group_norm_fwd(c, &b->pool1, p, 1);           /* over the whole image per group */
        p = kn_tae_relu_(c, p);
        p = kn_conv_fwd(c, &b->pool3, p);                    /* (N, C, H, W) */
        x = kn_v_add(c, x, p);
    }
    kn_var *h = kn_tae_relu_(c, kn_conv_fwd(c, &b->conv0, x));
    h = kn_tae_relu_(c, kn_conv_fwd(c, &b->conv2, h));
    h = kn_conv_fwd(c, &b->conv4, h);
    h = kn_tae_relu_(c, kn_v_add(c, h, x));
    return kn_ctx_scope_end(c, m, h);
}

static kn_var *run_net(kn_ctx *c, const kn_taesd_block *L, const char *kinds, int n, const char *net, kn_var *x,
                       kn_tae_hook hook, void *user) {
    size_t m0 = kn_ctx_scope_begin(c);
    kn_var *h = x;
    for (int i = 0; i < n && c->status == KN_OK; i++) {
        switch (kinds[i]) {
        case 'c': case 's': case 'n': h = kn_conv_fwd(c, &L[i].conv0, h); break;
        case 'B': h = block_fwd(c, &L[i], h); break;
        case 'r': h = kn_tae_relu_(c, h); break;
        case 'u': h = kn_v_resize_nearest(c, h, 2 * h->v.shape[2], 2 * h->v.shape[3]); break;
        case 'T': h = kn_tae_soft_clamp(c, h); break;
        default: KN_ASSERT(0);
        }
        h = kn_ctx_scope_end(c, m0, h); /* keep only the current activation */
        if (hook && h && c->status == KN_OK)
            hook(net, i, &h->v, user);
    }
    return c->status == KN_OK ? h : NULL;
}

kn_var *kn_taesd_encode(kn_ctx *c, const kn_taesd *m, kn_var *x, kn_tae_hook hook, void *user) {
    char s[96];
    if (c->status != KN_OK)
        return NULL;
    if (!m->cfg.has_encoder)
        return kn_ctx_failf(c, KN_ERR_ARG, "taesd encode: the model was loaded without an encoder"), NULL;
    if (!x || x->v.dtype != KN_F32 || x->v.ndim != 4 || x->v.shape[1] != m->cfg.image_channels ||
        x->v.shape[2] < 1 || x->v.shape[3] < 1)
        return kn_ctx_failf(c, KN_ERR_SHAPE, "taesd encode: image %s must be F32 (N, %lld, H, W)",
                            x ? kn_shape_str(&x->v, s, sizeof s) : "(none)", (long long)m->cfg.image_channels),
               NULL;
    return run_net(c, m->enc, ENC_KINDS, KN_TAESD_ENC_LAYERS, "encoder", x, hook, user);
}

kn_var *kn_taesd_decode(kn_ctx *c, const kn_taesd *m, kn_var *z, kn_tae_hook hook, void *user) {
    char s[96];
    if (c->status != KN_OK)
        return NULL;
    if (!m->cfg.has_decoder)
        return kn_ctx_failf(c, KN_ERR_ARG, "taesd decode: the model was loaded without a decoder"), NULL;
    if (!z || z->v.dtype != KN_F32 || z->v.ndim != 4 || z->v.shape[1] != m->cfg.latent_channels ||
        z->v.shape[2] < 1 || z->v.shape[3] < 1)
        return kn_ctx_failf(c, KN_ERR_SHAPE, "taesd decode: latents %s must be F32 (N, %lld, h, w)",
                            z ? kn_shape_str(&z->v, s, sizeof s) : "(none)", (long long)m->cfg.latent_channels),
               NULL;
    if (!kn_tensor_is_contiguous(&z->v))
        return kn_ctx_failf(c, KN_ERR_ARG, "taesd decode: latents must be contiguous"), NULL;
    return run_net(c, m->dec, DEC_KINDS, KN_TAESD_DEC_LAYERS, "decoder", z, hook, user);
}
