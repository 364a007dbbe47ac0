/* vae.c — AutoencoderKL (diffusers 0.25: autoencoder_kl.py, vae.py Encoder/Decoder,
 * DownEncoderBlock2D, UpDecoderBlock2D, UNetMidBlock2D with one single-head attention). */
#include "models/vae.h"

#include <stdio.h>
#include <string.h>

kn_vae_config kn_vae_config_default(void) {
    kn_vae_config c;
    memset(&c, 0, sizeof c);
    c.in_channels = 3;
    c.out_channels = 3;
    c.latent_channels = 4;
    c.nblocks = 1;
    c.block_out_channels[0] = 64;
    c.layers_per_block = 1;
    c.norm_num_groups = 32;
    c.scaling_factor = 0.18215f;
    return c;
}

static void decl_attn(kn_vae_attn_l *a, kn_params *P, int C, int groups, const char *prefix) {
    char b[320];
    snprintf(b, sizeof b, "%s.group_norm", prefix);
    kn_group_norm_decl(&a->norm, P, C, groups, 1e-6f, b);
    kn_attn_decl(&a->attn, P, C, C, 1, C, 1, prefix);
}

/* residual + attention over the H*W positions of each image (one head of width C) */
static kn_var *attn_fwd(kn_ctx *c, const kn_vae_attn_l *a, kn_var *x) {
    if (c->status != KN_OK)
        return NULL;
    size_t m = kn_ctx_scope_begin(c);
    int64_t N = x->v.shape[0], C = x->v.shape[1], H = x->v.shape[2], W = x->v.shape[3];
    kn_var *h = kn_group_norm_fwd(c, &a->norm, x, 1);
    static const int to_tok[4] = {0, 2, 3, 1};
    h = kn_v_permute(c, h, to_tok);
    h = h ? kn_var_reshape(c, h, 3, (int64_t[]){N, H * W, C}) : NULL;
    h = kn_attn_fwd(c, &a->attn, h, NULL, NULL);
    h = h ? kn_var_reshape(c, h, 4, (int64_t[]){N, H, W, C}) : NULL;
    static const int to_img[4] = {0, 3, 1, 2};
    h = h ? kn_v_permute(c, h, to_img) : NULL;
    h = h ? kn_v_add(c, h, x) : NULL;
    return kn_ctx_scope_end(c, m, h);
}

static void decl_mid(kn_resnet_l res[2], kn_vae_attn_l *attn, kn_params *P, int C, int G, const char *prefix) {
    char b[256];
    snprintf(b, sizeof b, "%s.mid_block.resnets.0", prefix);
    kn_resnet_decl(&res[0], P, C, C, 0, G, 1e-6f, b);
    snprintf(b, sizeof b, "%s.mid_block.attentions.0", prefix);
    decl_attn(attn, P, C, G, b);
    snprintf(b, sizeof b, "%s.mid_block.resnets.1", prefix);
    kn_resnet_decl(&res[1], P, C, C, 0, G, 1e-6f, b);
}

kn_vae *kn_vae_new(const kn_vae_config *cfg) {
    if (cfg->nblocks < 1 || cfg->nblocks > KN_VAE_MAX_BLOCKS || cfg->layers_per_block < 1 || cfg->norm_num_groups < 1 ||
        cfg->latent_channels < 1 || cfg->in_channels < 1 || cfg->out_channels < 1) {
        kn_fail(KN_ERR_ARG, "vae: invalid config (blocks %d, layers %d, groups %d, latent %d)", cfg->nblocks,
                cfg->layers_per_block, cfg->norm_num_groups, cfg->latent_channels);
        return NULL;
    }
    for (int i = 0; i < cfg->nblocks; i++)
        if (cfg->block_out_channels[i] < 1 || cfg->block_out_channels[i] % cfg->norm_num_groups) {
            kn_fail(KN_ERR_ARG, "vae: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", i,
                    cfg->block_out_channels[i], cfg->norm_num_groups);
            return NULL;
        }
    kn_vae *v = calloc(1, sizeof *v);
    if (!v) {
        kn_fail(KN_ERR_NOMEM, "vae: out of memory");
        return NULL;
    }
    v->cfg = *cfg;
    const kn_vae_config *c = &v->cfg;
    int nb = c->nblocks, G = c->norm_num_groups, L = c->latent_channels, Cl = c->block_out_channels[nb - 1];
    char b[256];
    kn_params *P = &v->P;
    /* encoder */
    kn_conv_decl(&v->enc_conv_in, P, c->in_channels, c->block_out_channels[0], 3, 1, 1, 1, "encoder.conv_in");
    int out = c->block_out_channels[0];
    for (int i = 0; i < nb; i++) {
        int in = out;
        out = c->block_out_channels[i];
        kn_vae_block *blk = &v->enc_down[i];
        blk->nlayers = c->layers_per_block;
        blk->resnets = calloc((size_t)blk->nlayers, sizeof *blk->resnets);
        KN_ASSERT(blk->resnets);
        for (int j = 0; j < blk->nlayers; j++) {
            snprintf(b, sizeof b, "encoder.down_blocks.%d.resnets.%d", i, j);
            kn_resnet_decl(&blk->resnets[j], P, j == 0 ? in : out, out, 0, G, 1e-6f, b);
        }
        blk->has_sampler = i != nb - 1;
        if (blk->has_sampler) {
            snprintf(b, sizeof b, "encoder.down_blocks.%d.downsamplers.0", i);
            kn_downsample_decl(&blk->sampler, P, out, 0, b);
        }
    }
    decl_mid(v->enc_mid_res, &v->enc_mid_attn, P, Cl, G, "encoder");
    kn_group_norm_decl(&v->enc_norm_out, P, Cl, G, 1e-6f, "encoder.conv_norm_out");
    kn_conv_decl(&v->enc_conv_out, P, Cl, 2 * L, 3, 1, 1, 1, "encoder.conv_out");
    kn_conv_decl(&v->quant_conv, P, 2 * L, 2 * L, 1, 1, 0, 1, "quant_conv");
    /* decoder */
    kn_conv_decl(&v->post_quant_conv, P, L, L, 1, 1, 0, 1, "post_quant_conv");
    kn_conv_decl(&v->dec_conv_in, P, L, Cl, 3, 1, 1, 1, "decoder.conv_in");
    decl_mid(v->dec_mid_res, &v->dec_mid_attn, P, Cl, G, "decoder");
    out = Cl;
    for (int i = 0; i < nb; i++) {
        int prev = out;
        out = c->block_out_channels[nb - 1 - i];
        kn_vae_block *blk = &v->dec_up[i];
        blk->nlayers = c->layers_per_block + 1;
        blk->resnets = calloc((size_t)blk->nlayers, sizeof *blk->resnets);
        KN_ASSERT(blk->resnets);
        for (int j = 0; j < blk->nlayers; j++) {
            snprintf(b, sizeof b, "decoder.up_blocks.%d.resnets.%d", i, j);
            kn_resnet_decl(&blk->resnets[j], P, j == 0 ? prev : out, out, 0, G, 1e-6f, b);
        }
        blk->has_sampler = i != nb - 1;
        if (blk->has_sampler) {
            snprintf(b, sizeof b, "decoder.up_blocks.%d.upsamplers.0", i);
            kn_upsample_decl(&blk->sampler, P, out, b);
        }
    }
    kn_group_norm_decl(&v->dec_norm_out, P, c->block_out_channels[0], G, 1e-6f, "decoder.conv_norm_out");
    kn_conv_decl(&v->dec_conv_out, P, c->block_out_channels[0], c->out_channels, 3, 1, 1, 1, "decoder.conv_out");
    if (kn_params_alloc(P) != KN_OK) {
        kn_vae_free(v);
        return NULL;
    }
    return v;
}

void kn_vae_free(kn_vae *v) {
    if (!v)
        return;
    for (int i = 0; i < KN_VAE_MAX_BLOCKS; i++) {
        free(v->enc_down[i].resnets);
        free(v->dec_up[i].resnets);
    }
    kn_params_free(&v->P);
    free(v);
}

static void emit(kn_ctx *c, kn_vae_hook hook, void *user, const char *name, kn_var *v) {
    if (hook && v && c->status == KN_OK)
        hook(name, &v->v, user);
}

static kn_var *mid_fwd(kn_ctx *c, const kn_resnet_l res[2], const kn_vae_attn_l *a, kn_var *h) {
    h = kn_resnet_fwd(c, &res[0], h, NULL);
    h = attn_fwd(c, a, h);
    return kn_resnet_fwd(c, &res[1], h, NULL);
}

kn_status kn_vae_encode(kn_ctx *c, const kn_vae *v, kn_var *x, kn_var **mean, kn_var **logvar, kn_vae_hook hook,
                        void *user) {
    char s[96], name[96];
    if (c->status != KN_OK)
        return kn_ctx_status(c);
    if (!x || x->v.ndim != 4 || x->v.shape[1] != v->cfg.in_channels)
        return kn_ctx_failf(c, KN_ERR_SHAPE, "vae encode: x %s must be (N, %d, H, W)",
                            x ? kn_shape_str(&x->v, s, sizeof s) : "(none)", v->cfg.in_channels);
    int L = v->cfg.latent_channels;
    kn_var *h = kn_conv_fwd(c, &v->enc_conv_in, x);
    emit(c, hook, user, "encoder.conv_in", h);
    for (int i = 0; i < v->cfg.nblocks; i++) {
        const kn_vae_block *b = &v->enc_down[i];
        for (int j = 0; j < b->nlayers; j++)
            h = kn_resnet_fwd(c, &b->resnets[j], h, NULL);
        if (b->has_sampler)
            h = kn_downsample_fwd(c, &b->sampler, h);
        snprintf(name, sizeof name, "encoder.down_blocks.%d", i);
        emit(c, hook, user, name, h);
    }
    h = mid_fwd(c, v->enc_mid_res, &v->enc_mid_attn, h);
    emit(c, hook, user, "encoder.mid_block", h);
    h = kn_group_norm_fwd(c, &v->enc_norm_out, h, 1);
    emit(c, hook, user, "encoder.conv_norm_out", h);
    h = kn_v_act(c, KN_ACT_SILU, h);
    h = kn_conv_fwd(c, &v->enc_conv_out, h);
    emit(c, hook, user, "encoder.conv_out", h);
    h = kn_conv_fwd(c, &v->quant_conv, h);
    emit(c, hook, user, "quant_conv", h);
    kn_var *mu = kn_v_slice(c, h, 1, 0, L);
    kn_var *lv = kn_v_slice(c, h, 1, L, 2 * L);
    lv = lv ? kn_v_clamp(c, lv, -30.0f, 20.0f) : NULL; /* DiagonalGaussianDistribution */
    *mean = mu;
    *logvar = lv;
    return kn_ctx_status(c);
}

kn_var *kn_vae_decode(kn_ctx *c, const kn_vae *v, kn_var *z, kn_vae_hook hook, void *user) {
    char s[96], name[96];
    if (c->status != KN_OK)
        return NULL;
    if (!z || z->v.ndim != 4 || z->v.shape[1] != v->cfg.latent_channels) {
        kn_ctx_failf(c, KN_ERR_SHAPE, "vae decode: z %s must be (N, %d, h, w)",
                     z ? kn_shape_str(&z->v, s, sizeof s) : "(none)", v->cfg.latent_channels);
        return NULL;
    }
    kn_var *h = kn_conv_fwd(c, &v->post_quant_conv, z);
    emit(c, hook, user, "post_quant_conv", h);
    h = kn_conv_fwd(c, &v->dec_conv_in, h);
    emit(c, hook, user, "decoder.conv_in", h);
    h = mid_fwd(c, v->dec_mid_res, &v->dec_mid_attn, h);
    emit(c, hook, user, "decoder.mid_block", h);
    for (int i = 0; i < v->cfg.nblocks; i++) {
        const kn_vae_block *b = &v->dec_up[i];
        size_t m = kn_ctx_scope_begin(c);
        for (int j = 0; j < b->nlayers; j++)
            h = kn_resnet_fwd(c, &b->resnets[j], h, NULL);
        if (b->has_sampler)
            h = kn_upsample_fwd(c, &b->sampler, h, 0, 0);
        h = kn_ctx_scope_end(c, m, h);
        snprintf(name, sizeof name, "decoder.up_blocks.%d", i);
        emit(c, hook, user, name, h);
    }
    h = kn_group_norm_fwd(c, &v->dec_norm_out, h, 1);
    emit(c, hook, user, "decoder.conv_norm_out", h);
    h = kn_v_act(c, KN_ACT_SILU, h);
    h = kn_conv_fwd(c, &v->dec_conv_out, h);
    emit(c, hook, user, "decoder.conv_out", h);
    return h;
}
