/* tae_load.c — TAESD-family and TAEHV weights from safetensors: the config is read from the
 * tensor shapes (as upstream reads latent_channels / patch_size from the checkpoint), then every
 * parameter is filled by name with kn_params_load. */
#include "io/tae_load.h"

#include "io/model_load.h"

#include <stdio.h>
#include <string.h>

/* Shape of a required 4-D conv weight; a clear error when absent or not 4-D. */
static kn_status conv_shape(const kn_safetensors *st, const char *name, const char *what, int64_t s[4]) {
    kn_tensor t;
    if (kn_st_find(st, name) < 0)
        return kn_fail(KN_ERR_FORMAT, "%s: weight '%s' is missing (not a %s checkpoint?)", kn_st_path(st), name,
                       what);
    KN_TRY(kn_st_get(st, name, &t));
    if (t.ndim != 4) {
        char b[96];
        return kn_fail(KN_ERR_SHAPE, "%s: weight '%s' has shape %s, expected a 4-D conv weight", kn_st_path(st),
                       name, kn_shape_str(&t, b, sizeof b));
    }
    memcpy(s, t.shape, 4 * sizeof(int64_t));
    return KN_OK;
}

/* Every tensor of st must be a parameter of P. */
static kn_status check_all_used(const kn_params *P, const kn_safetensors *st, const char *what) {
    for (int i = 0, n = kn_st_count(st); i < n; i++)
        if (!kn_params_find(P, kn_st_name(st, i)))
            return kn_fail(KN_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of a %s)", kn_st_path(st),
                           kn_st_name(st, i), what);
    return KN_OK;
}

/* Scans the Blocks of one TAESD network for GroupNorm branches. */
static kn_status scan_pool(const kn_safetensors *st, int n, int (*is_block)(int), uint32_t *bits, int64_t *width,
                           int64_t C) {
    char name[64];
    *bits = 0;
    *width = 0;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%d.pool.0.weight", i);
        if (kn_st_find(st, name) < 0)
            continue;
        if (!is_block(i))
            return kn_fail(KN_ERR_FORMAT, "%s: '%s' sits on layer %d, which is not a Block", kn_st_path(st), name, i);
        int64_t s[4];
        KN_TRY(conv_shape(st, name, "TAESD", s));
        if (s[1] != C || (*width && s[0] != *width))
            return kn_fail(KN_ERR_SHAPE, "%s: '%s' is (%lld,%lld,..), expected (%lld,%lld,1,1)", kn_st_path(st), name,
                           (long long)s[0], (long long)s[1], (long long)(*width ? *width : 4 * C), (long long)C);
        *width = s[0];
        *bits |= 1u << i;
    }
    return KN_OK;
}

kn_status kn_taesd_config_from_weights(const kn_safetensors *enc, const kn_safetensors *dec, kn_taesd_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (!enc && !dec)
        return kn_fail(KN_ERR_ARG, "taesd: neither encoder nor decoder weights given");
    int64_t s[4];
    if (enc) {
        cfg->has_encoder = 1;
        KN_TRY(conv_shape(enc, "0.weight", "TAESD encoder", s));
        cfg->enc_channels = s[0];
        cfg->image_channels = s[1];
        KN_TRY(conv_shape(enc, "14.weight", "TAESD encoder", s));
        cfg->latent_channels = s[0];
        KN_TRY(scan_pool(enc, KN_TAESD_ENC_LAYERS, kn_taesd_enc_is_block, &cfg->enc_pool, &cfg->enc_pool_channels,
                         cfg->enc_channels));
    }
    if (dec) {
        cfg->has_decoder = 1;
        KN_TRY(conv_shape(dec, "1.weight", "TAESD decoder", s));
        int64_t lat = s[1];
        cfg->dec_channels = s[0];
        KN_TRY(conv_shape(dec, "19.weight", "TAESD decoder", s));
        int64_t img = s[0];
        if (enc && (lat != cfg->latent_channels || img != cfg->image_channels))
            return kn_fail(KN_ERR_SHAPE, "taesd: encoder %s (%lld latent, %lld image channels) and decoder %s "
                           "(%lld, %lld) do not match", kn_st_path(enc), (long long)cfg->latent_channels,
                           (long long)cfg->image_channels, kn_st_path(dec), (long long)lat, (long long)img);
        cfg->latent_channels = lat;
        cfg->image_channels = img;
        KN_TRY(scan_pool(dec, KN_TAESD_DEC_LAYERS, kn_taesd_dec_is_block, &cfg->dec_pool, &cfg->dec_pool_channels,
                         cfg->dec_channels));
    }
    return KN_OK;
}

kn_taesd *kn_taesd_from_weights(const kn_safetensors *enc, const kn_safetensors *dec) {
    kn_taesd_config cfg;
    if (kn_taesd_config_from_weights(enc, dec, &cfg) != KN_OK)
        return NULL;
    kn_taesd *m = kn_taesd_new(&cfg);
    if (!m)
        return NULL;
    kn_status st = KN_OK;
    if (enc) {
        kn_safetensors *f = (kn_safetensors *)enc;
        st = kn_params_load(&m->enc_P, &f, 1, NULL);
        if (st == KN_OK)
            st = check_all_used(&m->enc_P, enc, "TAESD encoder");
    }
    if (st == KN_OK && dec) {
        kn_safetensors *f = (kn_safetensors *)dec;
        st = kn_params_load(&m->dec_P, &f, 1, NULL);
        if (st == KN_OK)
            st = check_all_used(&m->dec_P, dec, "TAESD decoder");
    }
    if (st != KN_OK) {
        kn_taesd_free(m);
        return NULL;
    }
    return m;
}

kn_taesd *kn_taesd_load(const char *encoder_path, const char *decoder_path) {
    kn_safetensors *enc = NULL, *dec = NULL;
    kn_taesd *m = NULL;
    if (encoder_path && !(enc = kn_st_open(encoder_path)))
        return NULL;
    if (decoder_path && !(dec = kn_st_open(decoder_path)))
        goto done;
    m = kn_taesd_from_weights(enc, dec);
done:
    if (enc)
        kn_st_close(enc);
    if (dec)
        kn_st_close(dec);
    return m;
}

/* ---------------------------------------------------------------- TAEHV */

/* A TPool / TGrow weight (C, s*C, 1, 1) / (s*C, C, 1, 1): returns s (1 or 2) or 0 on error. */
static int time_stride(const kn_safetensors *st, const char *name, int64_t C, int grow) {
    int64_t s[4];
    if (conv_shape(st, name, "TAEHV", s) != KN_OK)
        return 0;
    int64_t a = grow ? s[1] : s[0], b = grow ? s[0] : s[1];
    if (a != C || s[2] != 1 || s[3] != 1 || (b != C && b != 2 * C)) {
        kn_fail(KN_ERR_SHAPE, "%s: '%s' is (%lld,%lld,%lld,%lld); a %s of %lld channels needs %s", kn_st_path(st),
                name, (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3], grow ? "TGrow" : "TPool",
                (long long)C, grow ? "(C or 2C, C, 1, 1)" : "(C, C or 2C, 1, 1)");
        return 0;
    }
    return (int)(b / C);
}

/* 3 * patch^2 pixel channels: only patch 1 (taew2_1, taehv) is supported. */
static kn_status check_patch1(const kn_safetensors *st, const char *name, int64_t img) {
    if (img == 3)
        return KN_OK;
    return kn_fail(KN_ERR_UNSUPPORTED, "%s: '%s' has %lld image channels, i.e. patch size %s; only the patch-1 "
                   "layout (taew2_1, taehv) is supported", kn_st_path(st), name, (long long)img,
                   img == 12 ? "2 (taehv1_5 / taew2_2)" : img == 48 ? "4 (taeltx)" : "!= 1");
}

kn_status kn_taehv_config_from_weights(const kn_safetensors *st, kn_taehv_config *cfg) {
    *cfg = kn_taehv_config_default();
    int64_t s[4];
    cfg->has_encoder = kn_st_find(st, "encoder.0.weight") >= 0;
    cfg->has_decoder = kn_st_find(st, "decoder.1.weight") >= 0;
    if (!cfg->has_encoder && !cfg->has_decoder)
        return kn_fail(KN_ERR_FORMAT, "%s: neither 'encoder.0.weight' nor 'decoder.1.weight' found (not a TAEHV "
                       "checkpoint?)", kn_st_path(st));
    int64_t img = 0, lat = 0;
    if (cfg->has_encoder) {
        KN_TRY(conv_shape(st, "encoder.0.weight", "TAEHV", s));
        cfg->enc_channels = s[0];
        img = s[1];
        KN_TRY(check_patch1(st, "encoder.0.weight", img));
        KN_TRY(conv_shape(st, "encoder.17.weight", "TAEHV", s));
        lat = s[0];
        static const int idx[3] = {2, 7, 12};
        char name[64];
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "encoder.%d.conv.weight", idx[i]);
            if (!(cfg->enc_tpool[i] = time_stride(st, name, cfg->enc_channels, 0)))
                return KN_ERR_SHAPE;
        }
    }
    if (cfg->has_decoder) {
        static const char *names[4] = {"decoder.1.weight", "decoder.8.weight", "decoder.14.weight", "decoder.20.weight"};
        for (int i = 0; i < 4; i++) {
            KN_TRY(conv_shape(st, names[i], "TAEHV", s));
            cfg->dec_channels[i] = s[0];
            if (i == 0) {
                if (lat && s[1] != lat)
                    return kn_fail(KN_ERR_SHAPE, "%s: encoder makes %lld latent channels, decoder takes %lld",
                                   kn_st_path(st), (long long)lat, (long long)s[1]);
                lat = s[1];
            }
        }
        KN_TRY(conv_shape(st, "decoder.22.weight", "TAEHV", s));
        KN_TRY(check_patch1(st, "decoder.22.weight", s[0]));
        if (img && s[0] != img)
            return kn_fail(KN_ERR_SHAPE, "%s: encoder takes %lld image channels, decoder makes %lld", kn_st_path(st),
                           (long long)img, (long long)s[0]);
        img = s[0];
        static const int idx[3] = {7, 13, 19};
        char name[64];
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "decoder.%d.conv.weight", idx[i]);
            if (!(cfg->dec_tgrow[i] = time_stride(st, name, cfg->dec_channels[i], 1)))
                return KN_ERR_SHAPE;
        }
    }
    cfg->image_channels = img;
    cfg->latent_channels = lat;
    return KN_OK;
}

kn_taehv *kn_taehv_from_weights(const kn_safetensors *st) {
    kn_taehv_config cfg;
    if (kn_taehv_config_from_weights(st, &cfg) != KN_OK)
        return NULL;
    kn_taehv *m = kn_taehv_new(&cfg);
    if (!m)
        return NULL;
    kn_safetensors *f = (kn_safetensors *)st;
    if (kn_params_load(&m->P, &f, 1, NULL) != KN_OK || check_all_used(&m->P, st, "TAEHV (taew2_1 layout)") != KN_OK) {
        kn_taehv_free(m);
        return NULL;
    }
    return m;
}

kn_taehv *kn_taehv_load(const char *path) {
    kn_safetensors *st = kn_st_open(path);
    if (!st)
        return NULL;
    kn_taehv *m = kn_taehv_from_weights(st);
    kn_st_close(st);
    return m;
}
