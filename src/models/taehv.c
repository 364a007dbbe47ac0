/* taehv.c — TAEHV (madebyollin/taehv `taehv.py`: MemBlock, TPool, TGrow, TAEHV.encode_video /
 * decode_video with parallel=True), forward only. See taehv.h for the layer tables. */
#include "models/taehv.h"

#include <stdio.h>
#include <string.h>

/* Layer kinds by Sequential index:
 *   c conv 3x3 with bias, s conv 3x3 stride 2 no bias, n conv 3x3 no bias, M MemBlock,
 *   P TPool, G TGrow, r ReLU, u nearest x2 upsample, T Clamp tanh(x/3)*3. */
static const char ENC_KINDS[KN_TAEHV_ENC_LAYERS + 1] = "crPsMMMPsMMMPsMMMc";
static const char DEC_KINDS[KN_TAEHV_DEC_LAYERS + 1] = "TcrMMMuGnMMMuGnMMMuGnrc";

kn_taehv_config kn_taehv_config_default(void) {
    kn_taehv_config g;
    memset(&g, 0, sizeof g);
    g.has_encoder = g.has_decoder = 1;
    g.image_channels = 3;
    g.latent_channels = 16;
    g.enc_channels = 64;
    g.dec_channels[0] = 256;
    g.dec_channels[1] = 128;
    g.dec_channels[2] = 64;
    g.dec_channels[3] = 64;
    g.enc_tpool[0] = 2;
    g.enc_tpool[1] = 2;
    g.enc_tpool[2] = 1;
    g.dec_tgrow[0] = 1;
    g.dec_tgrow[1] = 2;
    g.dec_tgrow[2] = 2;
    return g;
}

static void decl_mem(kn_taehv_layer *l, kn_params *P, const char *net, int i, int64_t C) {
    char pre[64];
    snprintf(pre, sizeof pre, "%s.%d.conv.0", net, i);
    kn_conv_decl(&l->conv0, P, 2 * C, C, 3, 1, 1, 1, pre);
    snprintf(pre, sizeof pre, "%s.%d.conv.2", net, i);
    kn_conv_decl(&l->conv2, P, C, C, 3, 1, 1, 1, pre);
    snprintf(pre, sizeof pre, "%s.%d.conv.4", net, i);
    kn_conv_decl(&l->conv4, P, C, C, 3, 1, 1, 1, pre);
}

kn_taehv *kn_taehv_new(const kn_taehv_config *cfg) {
    const kn_taehv_config *g = cfg;
    if (!g->has_encoder && !g->has_decoder) {
        kn_fail(KN_ERR_ARG, "taehv: neither an encoder nor a decoder requested");
        return NULL;
    }
    int ok = g->image_channels >= 1 && g->latent_channels >= 1 && (!g->has_encoder || g->enc_channels >= 1);
    for (int i = 0; i < 4 && g->has_decoder; i++) ok = ok && g->dec_channels[i] >= 1;
    for (int i = 0; i < 3; i++) {
        ok = ok && (!g->has_encoder || g->enc_tpool[i] == 1 || g->enc_tpool[i] == 2);
        ok = ok && (!g->has_decoder || g->dec_tgrow[i] == 1 || g->dec_tgrow[i] == 2);
    }
    if (!ok) {
        kn_fail(KN_ERR_ARG, "taehv: invalid config (image %lld, latent %lld, encoder %lld channels; "
                "time strides must be 1 or 2)", (long long)g->image_channels, (long long)g->latent_channels,
                (long long)g->enc_channels);
        return NULL;
    }
    kn_taehv *m = calloc(1, sizeof *m);
    if (!m) {
        kn_fail(KN_ERR_NOMEM, "taehv: out of memory");
        return NULL;
    }
    m->cfg = *g;
    kn_params *P = &m->P;
    char pre[64];
    m->t_downscale = m->t_upscale = 1;
    if (g->has_encoder) {
        int64_t C = g->enc_channels;
        int np = 0;
        for (int i = 0; i < KN_TAEHV_ENC_LAYERS; i++) {
            kn_taehv_layer *l = &m->enc[i];
            snprintf(pre, sizeof pre, "encoder.%d", i);
            switch (ENC_KINDS[i]) {
            case 'c':
                if (i == 0)
                    kn_conv_decl(&l->conv0, P, g->image_channels, C, 3, 1, 1, 1, pre);
                else
                    kn_conv_decl(&l->conv0, P, C, g->latent_channels, 3, 1, 1, 1, pre);
                break;
            case 's': kn_conv_decl(&l->conv0, P, C, C, 3, 2, 1, 0, pre); break;
            case 'M': decl_mem(l, P, "encoder", i, C); break;
            case 'P':
                l->stride_t = g->enc_tpool[np++];
                m->t_downscale *= l->stride_t;
                snprintf(pre, sizeof pre, "encoder.%d.conv", i);
                kn_conv_decl(&l->conv0, P, l->stride_t * C, C, 1, 1, 0, 0, pre);
                break;
            default: break;
            }
        }
    }
    if (g->has_decoder) {
        int64_t C = g->latent_channels;
        int stage = 0, ng = 0;
        for (int i = 0; i < KN_TAEHV_DEC_LAYERS; i++) {
            kn_taehv_layer *l = &m->dec[i];
            snprintf(pre, sizeof pre, "decoder.%d", i);
            switch (DEC_KINDS[i]) {
            case 'c':
                if (i == 1) {
                    kn_conv_decl(&l->conv0, P, C, g->dec_channels[0], 3, 1, 1, 1, pre);
                    C = g->dec_channels[0];
                } else {
                    kn_conv_decl(&l->conv0, P, C, g->image_channels, 3, 1, 1, 1, pre);
                }
                break;
            case 'n':
                stage++;
                kn_conv_decl(&l->conv0, P, C, g->dec_channels[stage], 3, 1, 1, 0, pre);
                C = g->dec_channels[stage];
                break;
            case 'M': decl_mem(l, P, "decoder", i, C); break;
            case 'G':
                l->stride_t = g->dec_tgrow[ng++];
                m->t_upscale *= l->stride_t;
                snprintf(pre, sizeof pre, "decoder.%d.conv", i);
                kn_conv_decl(&l->conv0, P, C, l->stride_t * C, 1, 1, 0, 0, pre);
                break;
            default: break;
            }
        }
    }
    m->frames_to_trim = m->t_upscale - 1;
    if (kn_params_alloc(P) != KN_OK) {
        kn_taehv_free(m);
        return NULL;
    }
    return m;
}

void kn_taehv_free(kn_taehv *m) {
    if (!m)
        return;
    kn_params_free(&m->P);
    free(m);
}

/* -------------------------------------------------------------- forward */

/* cat_ch(x, past): x (N*T, C, H, W) -> (N*T, 2C, H, W), the second half of row n*T + t holding
 * x[n*T + t - 1] (zeros at t = 0). This is upstream's F.pad(x, frames (1, 0))[:, :T] shift. */
static kn_var *mem_cat(kn_ctx *c, kn_var *x, int64_t T) {
    if (c->status != KN_OK)
        return NULL;
    int64_t B = x->v.shape[0], C = x->v.shape[1], H = x->v.shape[2], W = x->v.shape[3];
    kn_var *r = kn_var_new(c, 4, (int64_t[]){B, 2 * C, H, W});
    if (!r)
        return NULL;
    size_t row = (size_t)(C * H * W);
    const float *s = x->v.data;
    float *d = r->v.data;
    for (int64_t b = 0; b < B; b++) {
        float *o = d + (size_t)b * 2 * row;
        memcpy(o, s + (size_t)b * row, row * sizeof(float));
        if (b % T == 0)
            memset(o + row, 0, row * sizeof(float));
        else
            memcpy(o + row, s + (size_t)(b - 1) * row, row * sizeof(float));
    }
    return r;
}

static kn_var *memblock_fwd(kn_ctx *c, const kn_taehv_layer *l, kn_var *x, int64_t T) {
    if (c->status != KN_OK)
        return NULL;
    size_t m = kn_ctx_scope_begin(c);
    kn_var *h = kn_tae_relu_(c, kn_conv_fwd(c, &l->conv0, mem_cat(c, x, T)));
    h = kn_tae_relu_(c, kn_conv_fwd(c, &l->conv2, h));
    h = kn_conv_fwd(c, &l->conv4, h);
    h = kn_tae_relu_(c, kn_v_add(c, h, x));
    return kn_ctx_scope_end(c, m, h);
}

/* Runs a network on folded video h (N*T, C, H, W); *T is updated by TPool / TGrow. */
static kn_var *run_net(kn_ctx *c, const kn_taehv_layer *L, const char *kinds, int n, const char *net, kn_var *h,
                       int64_t *T, kn_tae_hook hook, void *user) {
    size_t m0 = kn_ctx_scope_begin(c);
    for (int i = 0; i < n && c->status == KN_OK; i++) {
        const kn_taehv_layer *l = &L[i];
        int64_t B = h->v.shape[0], C = h->v.shape[1], H = h->v.shape[2], W = h->v.shape[3];
        switch (kinds[i]) {
        case 'c': case 's': case 'n': h = kn_conv_fwd(c, &l->conv0, h); break;
        case 'M': h = memblock_fwd(c, l, h, *T); break;
        case 'r': h = kn_tae_relu_(c, h); break;
        case 'u': h = kn_v_resize_nearest(c, h, 2 * H, 2 * W); break;
        case 'T': h = kn_tae_soft_clamp(c, h); break;
        case 'P': /* frames s*j..s*j+s-1 are consecutive rows: grouping them on channels is a reshape */
            KN_ASSERT(*T % l->stride_t == 0);
            h = kn_var_reshape(c, h, 4, (int64_t[]){B / l->stride_t, l->stride_t * C, H, W});
            h = kn_conv_fwd(c, &l->conv0, h);
            *T /= l->stride_t;
            break;
        case 'G': /* channel block k of frame t becomes frame s*t + k: again a reshape */
            h = kn_conv_fwd(c, &l->conv0, h);
            h = h ? kn_var_reshape(c, h, 4, (int64_t[]){B * l->stride_t, C, H, W}) : NULL;
            *T *= l->stride_t;
            break;
        default: KN_ASSERT(0);
        }
        h = kn_ctx_scope_end(c, m0, h);
        if (hook && h && c->status == KN_OK)
            hook(net, i, &h->v, user);
    }
    return c->status == KN_OK ? h : NULL;
}

kn_var *kn_taehv_encode(kn_ctx *c, const kn_taehv *m, kn_var *x, kn_tae_hook hook, void *user) {
    char s[96];
    if (c->status != KN_OK)
        return NULL;
    if (c->tape)
        return kn_ctx_failf(c, KN_ERR_UNSUPPORTED, "taehv encode: inference only (the context has a tape)"), NULL;
    if (!m->cfg.has_encoder)
        return kn_ctx_failf(c, KN_ERR_ARG, "taehv encode: the model was loaded without an encoder"), NULL;
    if (!x || x->v.dtype != KN_F32 || x->v.ndim != 5 || x->v.shape[0] < 1 || x->v.shape[1] < 1 ||
        x->v.shape[2] != m->cfg.image_channels || x->v.shape[3] < 1 || x->v.shape[4] < 1 ||
        !kn_tensor_is_contiguous(&x->v))
        return kn_ctx_failf(c, KN_ERR_SHAPE, "taehv encode: video %s must be contiguous F32 (N, T, %lld, H, W)",
                            x ? kn_shape_str(&x->v, s, sizeof s) : "(none)", (long long)m->cfg.image_channels),
               NULL;
    int64_t N = x->v.shape[0], T = x->v.shape[1], C = x->v.shape[2], H = x->v.shape[3], W = x->v.shape[4];
    int64_t ds = m->t_downscale, Tp = (T + ds - 1) / ds * ds;
    size_t m0 = kn_ctx_scope_begin(c);
    kn_var *h;
    if (Tp == T) {
        h = kn_var_reshape(c, x, 4, (int64_t[]){N * T, C, H, W});
    } else { /* pad at the end with copies of the last frame (upstream encode_video) */
        h = kn_var_new(c, 4, (int64_t[]){N * Tp, C, H, W});
        if (!h)
            return NULL;
        size_t fr = (size_t)(C * H * W);
        for (int64_t n = 0; n < N; n++)
            for (int64_t t = 0; t < Tp; t++)
                memcpy((float *)h->v.data + (size_t)(n * Tp + t) * fr,
                       (const float *)x->v.data + (size_t)(n * T + KN_MIN(t, T - 1)) * fr, fr * sizeof(float));
    }
    int64_t Tc = Tp;
    h = run_net(c, m->enc, ENC_KINDS, KN_TAEHV_ENC_LAYERS, "encoder", h, &Tc, hook, user);
    h = kn_ctx_scope_end(c, m0, h);
    if (!h)
        return NULL;
    return kn_var_reshape(c, h, 5, (int64_t[]){N, Tc, h->v.shape[1], h->v.shape[2], h->v.shape[3]});
}

kn_var *kn_taehv_decode_raw(kn_ctx *c, const kn_taehv *m, kn_var *z, kn_tae_hook hook, void *user) {
    char s[96];
    if (c->status != KN_OK)
        return NULL;
    if (c->tape)
        return kn_ctx_failf(c, KN_ERR_UNSUPPORTED, "taehv decode: inference only (the context has a tape)"), NULL;
    if (!m->cfg.has_decoder)
        return kn_ctx_failf(c, KN_ERR_ARG, "taehv decode: the model was loaded without a decoder"), NULL;
    if (!z || z->v.dtype != KN_F32 || z->v.ndim != 5 || z->v.shape[0] < 1 || z->v.shape[1] < 1 ||
        z->v.shape[2] != m->cfg.latent_channels || z->v.shape[3] < 1 || z->v.shape[4] < 1 ||
        !kn_tensor_is_contiguous(&z->v))
        return kn_ctx_failf(c, KN_ERR_SHAPE, "taehv decode: latents %s must be contiguous F32 (N, L, %lld, h, w)",
                            z ? kn_shape_str(&z->v, s, sizeof s) : "(none)", (long long)m->cfg.latent_channels),
               NULL;
    int64_t N = z->v.shape[0], L = z->v.shape[1];
    size_t m0 = kn_ctx_scope_begin(c);
    kn_var *h = kn_var_reshape(c, z, 4, (int64_t[]){N * L, z->v.shape[2], z->v.shape[3], z->v.shape[4]});
    int64_t T = L;
    h = run_net(c, m->dec, DEC_KINDS, KN_TAEHV_DEC_LAYERS, "decoder", h, &T, hook, user);
    h = kn_ctx_scope_end(c, m0, h);
    if (!h)
        return NULL;
    return kn_var_reshape(c, h, 5, (int64_t[]){N, T, h->v.shape[1], h->v.shape[2], h->v.shape[3]});
}

kn_var *kn_taehv_decode(kn_ctx *c, const kn_taehv *m, kn_var *z, kn_tae_hook hook, void *user) {
    size_t m0 = kn_ctx_scope_begin(c);
    kn_var *raw = kn_taehv_decode_raw(c, m, z, hook, user);
    if (!raw)
        return NULL;
    int64_t T = raw->v.shape[1];
    if (T <= m->frames_to_trim)
        return kn_ctx_failf(c, KN_ERR_SHAPE, "taehv decode: %lld frames decoded, %d to trim", (long long)T,
                            m->frames_to_trim), NULL;
    kn_var *y = kn_v_slice(c, raw, 1, m->frames_to_trim, T);
    y = kn_ctx_scope_end(c, m0, y);
    if (!y)
        return NULL;
    float *d = y->v.data;
    for (int64_t i = 0, n = kn_tensor_numel(&y->v); i < n; i++) /* clamp(0, 1); NaN stays NaN */
        d[i] = d[i] < 0.0f ? 0.0f : (d[i] > 1.0f ? 1.0f : d[i]);
    return y;
}
