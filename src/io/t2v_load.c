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

/* A nested object of a config as its own config (NULL + message when it is not an object). */
static kn_config *sub_object(const kn_config *c, const char *key, const char *name) {
    if (strcmp(kn_config_type(c, key), "object") != 0) {
        kn_fail(KN_ERR_FORMAT, "%s: must be an object, got %s", name, kn_config_type(c, key));
        return NULL;
    }
    char buf[4096];
    kn_config_value_str(c, key, buf, sizeof buf);
    return kn_config_parse(buf, strlen(buf), name);
}

/* An integer in [lo, hi] (missing: def), else a message naming the file's key path. */
static kn_status int_in(const kn_config *c, const char *name, const char *key, int64_t def, int64_t lo, int64_t hi,
                        int *out) {
    int64_t v;
    KN_TRY(kn_config_int(c, key, def, &v));
    if (v < lo || v > hi)
        return kn_fail(KN_ERR_FORMAT, "%s: '%s' must be in %lld..%lld, got %lld", name, key, (long long)lo,
                       (long long)hi, (long long)v);
    *out = (int)v;
    return KN_OK;
}

/* A stage's "prediction_type" (optional): *out = kn_pred_type + 1, 0 when absent. */
static kn_status pred_in(const kn_config *c, const char *name, int *out) {
    const char *v = NULL;
    KN_TRY(kn_config_str(c, "prediction_type", NULL, &v));
    *out = 0;
    if (!v)
        return KN_OK;
    static const char *const names[3] = {"epsilon", "v_prediction", "sample"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(v, names[i])) {
            *out = i + 1;
            return KN_OK;
        }
    return kn_fail(KN_ERR_FORMAT, "%s: 'prediction_type' must be epsilon, v_prediction or sample, got '%.64s'", name, v);
}

static kn_status guidance_in(const kn_config *c, const char *name, float *out) {
    double g;
    KN_TRY(kn_config_float(c, "guidance", 1.0, &g));
    if (!(g >= 0 && g <= 100))
        return kn_fail(KN_ERR_FORMAT, "%s: 'guidance' must be in 0..100, got %g", name, g);
    *out = (float)g;
    return KN_OK;
}

/* model_index.json "kinema": {"fps", "frames", "cascade": {"tsr": {...}, "ssr": {...}}}.
 * fps and frames are hints (out-of-range values are ignored, as before); the cascade is checked:
 * a malformed entry is an error, missing keys take the defaults (factor 2, times 1, steps 20,
 * guidance 1; scale 2, noise_aug 0, same_noise false, chunk 0; prediction_type: the base
 * scheduler's). *has_tsr / *has_ssr: the entries
 * present. */
static kn_status load_kinema(const char *dir, kn_t2v_bundle *b, int *has_tsr, int *has_ssr) {
    kn_cascade_info *ci = &b->cascade;
    *ci = (kn_cascade_info){2, 1, 20, 1.0f, 2, 20, 0, 0, 0, 1.0f};
    *has_tsr = *has_ssr = 0;
    char p[1200], name[1300];
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    kn_config *mi = kn_config_load(p);
    if (!mi)
        return KN_ERR_FORMAT;
    kn_status st = KN_OK;
    kn_config *k = NULL, *cc = NULL, *t = NULL, *s = NULL;
    if (strcmp(kn_config_type(mi, "kinema"), "object") != 0)
        goto out;
    snprintf(name, sizeof name, "%s \"kinema\"", p);
    if (!(k = sub_object(mi, "kinema", name))) {
        st = KN_ERR_FORMAT;
        goto out;
    }
    double f = 0;
    int64_t fr = 0;
    if (kn_config_float(k, "fps", 0, &f) == KN_OK && f > 0 && f < 1000)
        b->fps = f;
    if (kn_config_int(k, "frames", 0, &fr) == KN_OK && fr > 0 && fr < 100000)
        b->frames = (int)fr;
    kn_clear_error();
    if (!kn_config_has(k, "cascade"))
        goto out;
    snprintf(name, sizeof name, "%s \"kinema\".\"cascade\"", p);
    if (!(cc = sub_object(k, "cascade", name))) {
        st = KN_ERR_FORMAT;
        goto out;
    }
    for (int i = 0; i < kn_config_count(cc); i++)
        if (strcmp(kn_config_key(cc, i), "tsr") && strcmp(kn_config_key(cc, i), "ssr")) {
            st = kn_fail(KN_ERR_FORMAT, "%s: unknown stage '%.64s' (tsr, ssr)", name, kn_config_key(cc, i));
            goto out;
        }
    if (kn_config_has(cc, "tsr")) {
        snprintf(name, sizeof name, "%s \"kinema\".\"cascade\".\"tsr\"", p);
        if (!(t = sub_object(cc, "tsr", name))) {
            st = KN_ERR_FORMAT;
            goto out;
        }
        if ((st = int_in(t, name, "factor", 2, 2, 8, &ci->tsr_factor)) != KN_OK ||
            (st = int_in(t, name, "times", 1, 1, 4, &ci->tsr_times)) != KN_OK ||
            (st = int_in(t, name, "steps", 20, 1, KN_SCHED_MAX_STEPS, &ci->tsr_steps)) != KN_OK ||
            (st = guidance_in(t, name, &ci->tsr_guidance)) != KN_OK || (st = pred_in(t, name, &ci->tsr_pred)) != KN_OK)
            goto out;
        *has_tsr = 1;
    }
    if (kn_config_has(cc, "ssr")) {
        snprintf(name, sizeof name, "%s \"kinema\".\"cascade\".\"ssr\"", p);
        if (!(s = sub_object(cc, "ssr", name))) {
            st = KN_ERR_FORMAT;
            goto out;
        }
        if ((st = int_in(s, name, "scale", 2, 2, 8, &ci->ssr_scale)) != KN_OK ||
            (st = int_in(s, name, "steps", 20, 1, KN_SCHED_MAX_STEPS, &ci->ssr_steps)) != KN_OK ||
            (st = int_in(s, name, "noise_aug", 0, 0, 999, &ci->ssr_noise_aug)) != KN_OK ||
            (st = kn_config_bool(s, "same_noise", 0, &ci->ssr_same_noise)) != KN_OK ||
            (st = int_in(s, name, "chunk", 0, 0, 1 << 20, &ci->ssr_chunk)) != KN_OK ||
            (st = guidance_in(s, name, &ci->ssr_guidance)) != KN_OK || (st = pred_in(s, name, &ci->ssr_pred)) != KN_OK)
            goto out;
        *has_ssr = 1;
    }
out:
    kn_config_free(s);
    kn_config_free(t);
    kn_config_free(cc);
    kn_config_free(k);
    kn_config_free(mi);
    return st;
}

/* Builds and maps one SR stage (tsr/ or ssr/): its UNet must take the base model's latents and
 * text embeddings, and the cond channels its stage feeds it (tsr: masked frames + mask = C + 1;
 * ssr: the upsampled low-resolution latents = C). */
static kn_status load_stage(const kn_component *c, const char *variant, const kn_unet3d_config *base,
                            int text_dim, int cond, kn_unet3d **out, kn_weights **keep, uint64_t *mapped) {
    kn_unet3d_config sc;
    KN_TRY(kn_unet3d_config_load(c->config, &sc));
    if (sc.in_channels != base->in_channels || sc.out_channels != base->out_channels)
        return kn_fail(KN_ERR_FORMAT, "%s: %s in/out channels %d/%d do not match the unet's %d/%d", c->config, c->name,
                       sc.in_channels, sc.out_channels, base->in_channels, base->out_channels);
    if (sc.cross_attention_dim != text_dim)
        return kn_fail(KN_ERR_FORMAT, "%s: %s cross_attention_dim %d does not match the text encoder's hidden_size %d",
                       c->config, c->name, sc.cross_attention_dim, text_dim);
    if (sc.cond_channels != cond)
        return kn_fail(KN_ERR_FORMAT, "%s: %s cond_channels is %d, the %s stage needs %d", c->config, c->name,
                       sc.cond_channels, c->name, cond);
    if (!(*out = kn_unet3d_new(&sc)))
        return KN_ERR_FORMAT;
    return load_params(&(*out)->P, c->dir, variant, keep, mapped);
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
        /* the cascade: a stage needs both its component folder and its "kinema" entry */
        int has_tsr, has_ssr;
        if ((st = load_kinema(pf.root, b, &has_tsr, &has_ssr)) != KN_OK)
            goto fail;
        const kn_component *c[2] = {kn_pipeline_component(&pf, "tsr"), kn_pipeline_component(&pf, "ssr")};
        int has[2] = {has_tsr, has_ssr};
        static const char *nm[2] = {"tsr", "ssr"};
        for (int i = 0; i < 2; i++) {
            if (has[i] != (c[i] != NULL)) {
                st = kn_fail(KN_ERR_FORMAT, has[i] ? "%s/model_index.json: \"kinema\".\"cascade\" has a '%s' stage but "
                                                     "there is no '%s' component"
                                                   : "%s/model_index.json: a '%s' component but no \"kinema\".\"cascade\" "
                                                     "entry '%s'",
                             pf.root, nm[i], nm[i]);
                goto fail;
            }
            if (!c[i])
                continue;
            if ((st = load_stage(c[i], variant, &uc, cc.hidden_size, i == 0 ? uc.in_channels + 1 : uc.in_channels,
                                 i == 0 ? &b->tsr : &b->ssr, &b->w[3 + i], &b->mapped_bytes)) != KN_OK)
                goto fail;
            b->weight_bytes += (i == 0 ? b->tsr : b->ssr)->P.numel * sizeof(float);
            if (i == 1 && b->cascade.ssr_noise_aug > 0 && !b->ssr->cfg.noise_aug_cond) {
                st = kn_fail(KN_ERR_FORMAT, "%s/model_index.json: \"kinema\".\"cascade\".\"ssr\" has noise_aug %d but "
                             "ssr/ is not noise-augmentation conditioned (noise_aug_cond)", pf.root, b->cascade.ssr_noise_aug);
                goto fail;
            }
        }
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
    kn_unet3d_free(b->tsr);
    kn_unet3d_free(b->ssr);
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
