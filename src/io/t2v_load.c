/* t2v_load.c — pipeline folders into models. */
#include "io/t2v_load.h"

#include "io/config.h"
#include "io/model_load.h"
#include "io/scheduler_config.h"

#include <string.h>
#include <sys/stat.h>

kn_status kn_params_load_weights(kn_params *P, const kn_weights *w) {
    int n = kn_weights_nfiles(w);
    kn_safetensors *files[64];
    if (n > 64)
        return kn_fail(KN_ERR_UNSUPPORTED, "%s: more than 64 shards", kn_weights_path(w));
    for (int i = 0; i < n; i++)
        files[i] = (kn_safetensors *)kn_weights_file(w, i);
    return kn_params_load(P, files, n, NULL);
}

/* Loads P from the weights at path, using F32 tensors in place from the mapping: the weights stay
 * open in *keep (closed by kn_t2v_unload). */
static kn_status load_params(kn_params *P, const char *path, const char *variant, kn_weights **keep,
                             uint64_t *mapped) {
    kn_weights *w = kn_weights_open_variant(path, variant);
    if (!w)
        return KN_ERR_IO;
    int n = kn_weights_nfiles(w);
    kn_safetensors *files[64];
    if (n > 64) {
        kn_weights_close(w);
        return kn_fail(KN_ERR_UNSUPPORTED, "%s: more than 64 shards", kn_weights_path(w));
    }
    for (int i = 0; i < n; i++)
        files[i] = (kn_safetensors *)kn_weights_file(w, i);
    size_t m = 0;
    kn_status st = kn_params_load_mapped(P, files, n, &m);
    if (st != KN_OK) {
        kn_weights_close(w);
        return st;
    }
    *keep = w;
    *mapped += m;
    return KN_OK;
}

static const kn_component *need(const kn_pipeline_folder *pf, const char *name) {
    const kn_component *c = kn_pipeline_component(pf, name);
    if (!c)
        kn_fail(KN_ERR_FORMAT, "%s/model_index.json: no '%s' component", pf->root, name);
    return c;
}

/* The pad token of tokenizer_config.json ("pad_token": "!" or {"content": "!"}), default eos. */
static int pad_token(const char *tokdir, kn_tokenizer *tok) {
    char p[1200];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", tokdir);
    struct stat sb;
    int id = kn_tokenizer_eos(tok);
    if (stat(p, &sb) != 0)
        return id;
    kn_config *c = kn_config_load(p);
    if (!c)
        return id;
    const char *s = NULL;
    if (!strcmp(kn_config_type(c, "pad_token"), "string") && kn_config_str(c, "pad_token", NULL, &s) == KN_OK && s) {
        int t = kn_tokenizer_token_id(tok, s);
        if (t >= 0)
            id = t;
    } else if (!strcmp(kn_config_type(c, "pad_token"), "object")) {
        char buf[256];
        kn_config_value_str(c, "pad_token", buf, sizeof buf);
        char *q = strstr(buf, "\"content\":\"");
        if (q) {
            q += 11;
            char *e = strchr(q, '"');
            if (e) {
                *e = 0;
                int t = kn_tokenizer_token_id(tok, q);
                if (t >= 0)
                    id = t;
            }
        }
    }
    kn_config_free(c);
    return id;
}

kn_status kn_t2v_load(const char *dir, const char *variant, kn_t2v_bundle *b) {
    memset(b, 0, sizeof *b);
    snprintf(b->root, sizeof b->root, "%s", dir);
    kn_pipeline_folder pf;
    KN_TRY(kn_pipeline_open(dir, variant, &pf));
    const kn_component *cu = need(&pf, "unet"), *cv = need(&pf, "vae"), *ct = need(&pf, "text_encoder"),
                       *ck = need(&pf, "tokenizer"), *cs = need(&pf, "scheduler");
    if (!cu || !cv || !ct || !ck || !cs)
        return KN_ERR_FORMAT;
    kn_unet3d_config uc;
    kn_vae_config vc;
    kn_clip_text_config cc;
    int kind = -1;
    kn_status st;
    if ((st = kn_unet3d_config_load(cu->config, &uc)) != KN_OK || (st = kn_vae_config_load(cv->config, &vc)) != KN_OK ||
        (st = kn_clip_text_config_load(ct->config, &cc)) != KN_OK ||
        (st = kn_sched_config_load(cs->config, &b->m.sched, &kind)) != KN_OK)
        return st;
    b->m.sched_kind = kind < 0 ? KN_SCHED_DDIM : (kn_sched_kind)kind;
    if (uc.cross_attention_dim != cc.hidden_size)
        return kn_fail(KN_ERR_FORMAT, "%s: unet cross_attention_dim %d does not match the text encoder's hidden_size %d",
                       dir, uc.cross_attention_dim, cc.hidden_size);
    if (uc.in_channels != vc.latent_channels)
        return kn_fail(KN_ERR_FORMAT, "%s: unet in_channels %d does not match the vae's latent_channels %d", dir,
                       uc.in_channels, vc.latent_channels);
    b->m.unet = kn_unet3d_new(&uc);
    b->m.vae = b->m.unet ? kn_vae_new(&vc) : NULL;
    b->m.text = b->m.vae ? kn_clip_text_new(&cc) : NULL;
    if (!b->m.text) {
        st = KN_ERR_NOMEM;
        goto fail;
    }
    if ((st = load_params(&b->m.unet->P, cu->dir, variant, &b->w[0], &b->mapped_bytes)) != KN_OK ||
        (st = load_params(&b->m.vae->P, cv->dir, variant, &b->w[1], &b->mapped_bytes)) != KN_OK ||
        (st = load_params(&b->m.text->P, ct->dir, variant, &b->w[2], &b->mapped_bytes)) != KN_OK)
        goto fail;
    b->tok = kn_tokenizer_load(ck->dir);
    if (!b->tok) {
        st = KN_ERR_FORMAT;
        goto fail;
    }
    b->pad_id = pad_token(ck->dir, b->tok);
    b->weight_bytes = (b->m.unet->P.numel + b->m.vae->P.numel + b->m.text->P.numel) * sizeof(float);
    {
        char p[1200];
        snprintf(p, sizeof p, "%s/model_index.json", dir);
        kn_config *mi = kn_config_load(p);
        if (mi && !strcmp(kn_config_type(mi, "kinema"), "object")) {
            char buf[256];
            kn_config_value_str(mi, "kinema", buf, sizeof buf);
            kn_config *k = kn_config_parse(buf, strlen(buf), p);
            double f = 0;
            int64_t fr = 0;
            if (k && kn_config_float(k, "fps", 0, &f) == KN_OK && f > 0 && f < 1000)
                b->fps = f;
            if (k && kn_config_int(k, "frames", 0, &fr) == KN_OK && fr > 0 && fr < 100000)
                b->frames = (int)fr;
            kn_config_free(k);
        }
        kn_config_free(mi);
    }
    return KN_OK;
fail:
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kn_last_error());
        kn_t2v_unload(b);
        kn_fail(st, "%s", msg);
    }
    return st;
}

void kn_t2v_unload(kn_t2v_bundle *b) {
    kn_unet3d_free(b->m.unet);
    kn_vae_free(b->m.vae);
    kn_clip_text_free(b->m.text);
    if (b->tok)
        kn_tokenizer_free(b->tok);
    for (int i = 0; i < 5; i++)
        if (b->w[i])
            kn_weights_close(b->w[i]);
    memset(b, 0, sizeof *b);
}
