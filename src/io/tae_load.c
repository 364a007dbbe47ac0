/* tae_load.c — TAESD-family and TAEHV weights from safetensors: the config is read from the
 * tensor shapes (as upstream reads latent_channels / patch_size from the checkpoint), then every
 * parameter is filled by name, and every tensor of a file must be used. */
#include "io/tae_load.h"

#include "io/model_load.h"

#include <stdio.h>
#include <stdlib.h>
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

/* ---------------------------------------------------------------- TAESD
 * Two namings are read: taesd.py's ("1.conv.0.weight", one file per network) and diffusers'
 * AutoencoderTiny ("encoder.layers.1.conv.0.weight", "decoder.layers.0.weight"; one file for both,
 * and its decoder Sequential has no Clamp module, so its indices are one less). */
typedef struct {
    const kn_safetensors *st;
    int dec;       /* decoder network */
    int diffusers; /* AutoencoderTiny names */
} tae_src;

static tae_src make_src(const kn_safetensors *st, int dec) {
    tae_src s = {st, dec, 0};
    s.diffusers = kn_st_find(st, dec ? "decoder.layers.0.weight" : "encoder.layers.0.weight") >= 0;
    return s;
}

/* taesd.py parameter name -> the file's name */
static const char *src_name(const tae_src *s, const char *name, char *buf, size_t n) {
    if (!s->diffusers)
        return name;
    char *rest;
    long i = strtol(name, &rest, 10);
    snprintf(buf, n, "%s.layers.%ld%s", s->dec ? "decoder" : "encoder", s->dec ? i - 1 : i, rest);
    return buf;
}

static kn_status src_conv_shape(const tae_src *s, const char *name, int64_t sh[4]) {
    char b[128];
    return conv_shape(s->st, src_name(s, name, b, sizeof b), s->dec ? "TAESD decoder" : "TAESD encoder", sh);
}

/* Fills P from the file (F32/F16/BF16 -> F32), shapes exact; then every tensor of the file that
 * belongs to this network must have been used. */
static kn_status fill_params(kn_params *P, const tae_src *s) {
    char b[128], a1[96], a2[96];
    const char *what = s->dec ? "TAESD decoder" : "TAESD encoder";
    for (int i = 0; i < P->n; i++) {
        kn_param *p = P->items[i];
        const char *fname = src_name(s, p->name, b, sizeof b);
        kn_tensor t;
        if (kn_st_find(s->st, fname) < 0)
            return kn_fail(KN_ERR_FORMAT, "%s: weight '%s' %s is missing (%s)", kn_st_path(s->st), fname,
                           kn_shape_str(&p->var.v, a1, sizeof a1), what);
        KN_TRY(kn_st_get(s->st, fname, &t));
        if (t.dtype != KN_F32 && t.dtype != KN_F16 && t.dtype != KN_BF16)
            return kn_fail(KN_ERR_DTYPE, "%s: weight '%s' is %s; weights must be F32, F16 or BF16", kn_st_path(s->st),
                           fname, kn_dtype_name(t.dtype));
        if (!kn_tensor_same_shape(&t, &p->var.v))
            return kn_fail(KN_ERR_SHAPE, "%s: weight '%s' has shape %s, the %s expects %s", kn_st_path(s->st), fname,
                           kn_shape_str(&t, a1, sizeof a1), what, kn_shape_str(&p->var.v, a2, sizeof a2));
        KN_TRY(kn_tensor_copy(&p->var.v, &t));
    }
    const char *pre = s->dec ? "decoder.layers." : "encoder.layers.";
    for (int i = 0, n = kn_st_count(s->st); i < n; i++) {
        const char *fname = kn_st_name(s->st, i), *pname = fname;
        if (s->diffusers) {
            if (strncmp(fname, pre, strlen(pre)))
                continue; /* the other network of a combined file */
            char *rest;
            long k = strtol(fname + strlen(pre), &rest, 10);
            snprintf(b, sizeof b, "%ld%s", s->dec ? k + 1 : k, rest);
            pname = b;
        }
        if (!kn_params_find(P, pname))
            return kn_fail(KN_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of a %s)", kn_st_path(s->st), fname,
                           what);
    }
    return KN_OK;
}

/* Scans the Blocks of one TAESD network for GroupNorm branches. */
static kn_status scan_pool(const tae_src *src, int n, int (*is_block)(int), uint32_t *bits, int64_t *width,
                           int64_t C) {
    char name[64], b[128];
    *bits = 0;
    *width = 0;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%d.pool.0.weight", i);
        const char *fname = src_name(src, name, b, sizeof b);
        if (kn_st_find(src->st, fname) < 0)
            continue;
        if (!is_block(i))
            return kn_fail(KN_ERR_FORMAT, "%s: '%s' sits on layer %d, which is not a Block", kn_st_path(src->st),
                           fname, i);
        int64_t s[4];
        KN_TRY(src_conv_shape(src, name, s));
        if (s[1] != C || (*width && s[0] != *width))
            return kn_fail(KN_ERR_SHAPE, "%s: '%s' is (%lld,%lld,..), expected (%lld,%lld,1,1)", kn_st_path(src->st),
                           fname, (long long)s[0], (long long)s[1], (long long)(*width ? *width : 4 * C), (long long)C);
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
        tae_src e = make_src(enc, 0);
        cfg->has_encoder = 1;
        KN_TRY(src_conv_shape(&e, "0.weight", s));
        cfg->enc_channels = s[0];
        cfg->image_channels = s[1];
        KN_TRY(src_conv_shape(&e, "14.weight", s));
        cfg->latent_channels = s[0];
        KN_TRY(scan_pool(&e, KN_TAESD_ENC_LAYERS, kn_taesd_enc_is_block, &cfg->enc_pool, &cfg->enc_pool_channels,
                         cfg->enc_channels));
    }
    if (dec) {
        tae_src d = make_src(dec, 1);
        cfg->has_decoder = 1;
        KN_TRY(src_conv_shape(&d, "1.weight", s));
        int64_t lat = s[1];
        cfg->dec_channels = s[0];
        KN_TRY(src_conv_shape(&d, "19.weight", s));
        int64_t img = s[0];
        if (enc && (lat != cfg->latent_channels || img != cfg->image_channels))
            return kn_fail(KN_ERR_SHAPE, "taesd: encoder %s (%lld latent, %lld image channels) and decoder %s "
                           "(%lld, %lld) do not match", kn_st_path(enc), (long long)cfg->latent_channels,
                           (long long)cfg->image_channels, kn_st_path(dec), (long long)lat, (long long)img);
        cfg->latent_channels = lat;
        cfg->image_channels = img;
        KN_TRY(scan_pool(&d, KN_TAESD_DEC_LAYERS, kn_taesd_dec_is_block, &cfg->dec_pool, &cfg->dec_pool_channels,
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
        tae_src e = make_src(enc, 0);
        st = fill_params(&m->enc_P, &e);
    }
    if (st == KN_OK && dec) {
        tae_src d = make_src(dec, 1);
        st = fill_params(&m->dec_P, &d);
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
    if (!encoder_path && !decoder_path) {
        kn_fail(KN_ERR_ARG, "taesd: neither an encoder nor a decoder path given");
        return NULL;
    }
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
