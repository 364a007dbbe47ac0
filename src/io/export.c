/* export.c — models -> diffusers folder. */
#include "io/export.h"

#include "io/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

kn_status kn_params_save(const kn_params *P, const char *path, kn_dtype dtype) {
    if (dtype != KN_F32 && dtype != KN_F16 && dtype != KN_BF16)
        return kn_fail(KN_ERR_DTYPE, "%s: weights can be saved as F32, F16 or BF16", path);
    kn_st_writer *w = kn_st_writer_new();
    if (!w)
        return KN_ERR_NOMEM;
    kn_status st = KN_OK;
    uint16_t *half = NULL;
    if (dtype != KN_F32) {
        half = malloc(P->numel * sizeof(uint16_t) + 64);
        if (!half) {
            kn_st_writer_free(w);
            return kn_fail(KN_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    for (int i = 0; i < P->n && st == KN_OK; i++) {
        const kn_tensor *t = &P->items[i]->var.v;
        if (dtype == KN_F32) {
            st = kn_st_writer_add(w, P->items[i]->name, t);
            continue;
        }
        /* the half copy lives in one buffer at the parameter's offset in the block */
        kn_tensor h = *t;
        h.dtype = dtype;
        h.data = half + ((const float *)t->data - P->block);
        st = kn_tensor_copy(&h, t);
        if (st == KN_OK)
            st = kn_st_writer_add(w, P->items[i]->name, &h);
    }
    if (st == KN_OK)
        st = kn_st_writer_meta(w, "format", "pt");
    if (st == KN_OK)
        st = kn_st_writer_write(w, path);
    kn_st_writer_free(w);
    free(half);
    return st;
}

static kn_status write_text(const char *path, const char *text) {
    char tmp[2200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return kn_fail(KN_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return kn_fail(KN_ERR_IO, "%s: write failed", path);
    }
    return KN_OK;
}

static kn_status write_json(const char *path, cJSON *o) {
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s)
        return kn_fail(KN_ERR_NOMEM, "%s: out of memory", path);
    kn_status st = write_text(path, s);
    free(s);
    return st;
}

static kn_status copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in)
        return kn_fail(KN_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return kn_fail(KN_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t r;
    int ok = 1;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0)
        ok &= fwrite(buf, 1, r, out) == r;
    ok &= !ferror(in);
    fclose(in);
    ok &= fclose(out) == 0;
    return ok ? KN_OK : kn_fail(KN_ERR_IO, "%s: copy failed", dst);
}

static cJSON *ints(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

/* A float as the shortest decimal that reads back as the same float (0.012, not 0.0120000001). */
static double fnum(float f) {
    char b[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)f);
        if ((float)strtod(b, NULL) == f)
            break;
    }
    return strtod(b, NULL);
}

static const char *block_name(kn_block_type t) {
    switch (t) {
    case KN_BLOCK_DOWN: return "DownBlock3D";
    case KN_BLOCK_CROSS_ATTN_DOWN: return "CrossAttnDownBlock3D";
    case KN_BLOCK_UP: return "UpBlock3D";
    default: return "CrossAttnUpBlock3D";
    }
}

static cJSON *unet_config(const kn_unet3d_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "UNet3DConditionModel");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.25.1");
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddNumberToObject(o, "attention_head_dim", c->attention_head_dim);
    cJSON_AddItemToObject(o, "block_out_channels", ints(c->block_out_channels, c->nblocks));
    cJSON_AddNumberToObject(o, "cross_attention_dim", c->cross_attention_dim);
    cJSON *d = cJSON_AddArrayToObject(o, "down_block_types"), *u = cJSON_CreateArray();
    for (int i = 0; i < c->nblocks; i++) {
        cJSON_AddItemToArray(d, cJSON_CreateString(block_name(c->down_types[i])));
        cJSON_AddItemToArray(u, cJSON_CreateString(block_name(c->up_types[i])));
    }
    cJSON_AddNumberToObject(o, "downsample_padding", c->downsample_padding);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "layers_per_block", c->layers_per_block);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", fnum(c->mid_block_scale_factor));
    cJSON_AddNumberToObject(o, "norm_eps", fnum(c->norm_eps));
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    cJSON_AddNullToObject(o, "num_attention_heads");
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "sample_size", c->sample_size);
    cJSON_AddItemToObject(o, "up_block_types", u);
    /* kinema's cascade options (unet3d.h), written only when set, so a plain model's config stays
     * exactly diffusers' */
    if (c->fps_cond) cJSON_AddBoolToObject(o, "fps_cond", 1);
    if (c->noise_aug_cond) cJSON_AddBoolToObject(o, "noise_aug_cond", 1);
    if (c->text_pool) cJSON_AddBoolToObject(o, "text_pool", 1);
    if (c->cond_channels) cJSON_AddNumberToObject(o, "cond_channels", c->cond_channels);
    if (c->spatial_only) cJSON_AddBoolToObject(o, "spatial_only", 1);
    if (!c->temporal_attention) cJSON_AddBoolToObject(o, "temporal_attention", 0);
    return o;
}

static cJSON *vae_config(const kn_vae_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "AutoencoderKL");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.25.1");
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddItemToObject(o, "block_out_channels", ints(c->block_out_channels, c->nblocks));
    cJSON *d = cJSON_AddArrayToObject(o, "down_block_types"), *u = cJSON_CreateArray();
    for (int i = 0; i < c->nblocks; i++) {
        cJSON_AddItemToArray(d, cJSON_CreateString("DownEncoderBlock2D"));
        cJSON_AddItemToArray(u, cJSON_CreateString("UpDecoderBlock2D"));
    }
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "latent_channels", c->latent_channels);
    cJSON_AddNumberToObject(o, "layers_per_block", c->layers_per_block);
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "scaling_factor", fnum(c->scaling_factor));
    cJSON_AddItemToObject(o, "up_block_types", u);
    return o;
}

static cJSON *clip_config(const kn_clip_text_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray((const char *[]){"CLIPTextModel"}, 1));
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddNumberToObject(o, "layer_norm_eps", fnum(c->layer_norm_eps));
    cJSON_AddStringToObject(o, "hidden_act", c->hidden_act == KN_ACT_GELU ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(o, "bos_token_id", 49406);
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(o, "pad_token_id", 1);
    return o;
}

static const char *const pred_names[3] = {"epsilon", "v_prediction", "sample"}; /* kn_pred_type */

static cJSON *sched_config(const kn_sched_config *c) {
    static const char *bs[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
    const char *const *pt = pred_names;
    static const char *sp[] = {"leading", "linspace", "trailing"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "DDIMScheduler");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.25.1");
    cJSON_AddNumberToObject(o, "beta_end", fnum(c->beta_end));
    cJSON_AddStringToObject(o, "beta_schedule", bs[c->beta_schedule]);
    cJSON_AddNumberToObject(o, "beta_start", fnum(c->beta_start));
    cJSON_AddBoolToObject(o, "clip_sample", c->clip_sample);
    cJSON_AddNumberToObject(o, "num_train_timesteps", c->num_train_timesteps);
    cJSON_AddStringToObject(o, "prediction_type", pt[c->prediction_type]);
    cJSON_AddBoolToObject(o, "set_alpha_to_one", c->set_alpha_to_one);
    cJSON_AddNumberToObject(o, "steps_offset", c->steps_offset);
    cJSON_AddStringToObject(o, "timestep_spacing", sp[c->timestep_spacing]);
    return o;
}

static kn_status mkdirs(const char *base, const char *sub) {
    char p[2200];
    snprintf(p, sizeof p, "%s/%s", base, sub);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return kn_fail(KN_ERR_IO, "%s: cannot create: %s", p, strerror(errno));
    return KN_OK;
}

/* The component folders kn_export_t2v writes (tsr/ and ssr/ only for a cascade). */
static const char *const subs[] = {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "tsr", "ssr"};
#define NSUBS ((int)(sizeof subs / sizeof subs[0]))

static void rm_tree(const char *dir) {
    static const char *files[] = {"config.json", "diffusion_pytorch_model.safetensors", "model.safetensors",
                                  "vocab.json", "merges.txt", "tokenizer_config.json", "scheduler_config.json"};
    char p[2400];
    for (int i = 0; i < NSUBS; i++) {
        for (int j = 0; j < 7; j++) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, subs[i], files[j]);
            unlink(p);
        }
        snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
        rmdir(p);
    }
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    unlink(p);
    rmdir(dir);
}

/* model_index.json "kinema": {"cascade": {"tsr": {...}, "ssr": {...}}}: how generate chains the
 * stages (a stage's object is written only when its UNet is). */
static cJSON *cascade_json(const kn_export_opts *o) {
    const kn_cascade_info *c = &o->cascade;
    cJSON *k = cJSON_CreateObject();
    if (o->tsr) {
        cJSON *t = cJSON_AddObjectToObject(k, "tsr");
        cJSON_AddNumberToObject(t, "factor", c->tsr_factor);
        cJSON_AddNumberToObject(t, "times", c->tsr_times);
        cJSON_AddNumberToObject(t, "steps", c->tsr_steps);
        cJSON_AddNumberToObject(t, "guidance", fnum(c->tsr_guidance));
        if (c->tsr_pred >= 1 && c->tsr_pred <= 3)
            cJSON_AddStringToObject(t, "prediction_type", pred_names[c->tsr_pred - 1]);
    }
    if (o->ssr) {
        cJSON *s = cJSON_AddObjectToObject(k, "ssr");
        cJSON_AddNumberToObject(s, "scale", c->ssr_scale);
        cJSON_AddNumberToObject(s, "steps", c->ssr_steps);
        cJSON_AddNumberToObject(s, "noise_aug", c->ssr_noise_aug);
        cJSON_AddBoolToObject(s, "same_noise", c->ssr_same_noise != 0);
        cJSON_AddNumberToObject(s, "chunk", c->ssr_chunk);
        cJSON_AddNumberToObject(s, "guidance", fnum(c->ssr_guidance));
        if (c->ssr_pred >= 1 && c->ssr_pred <= 3)
            cJSON_AddStringToObject(s, "prediction_type", pred_names[c->ssr_pred - 1]);
    }
    return k;
}

/* The SR stages must fit the base model (the loader checks the same) and the chain must be one
 * the loader accepts, so that an exported folder always loads. */
static kn_status check_cascade(const char *dir, const kn_unet3d *unet, const kn_clip_text *text,
                               const kn_export_opts *o) {
    const kn_cascade_info *c = &o->cascade;
    int C = unet->cfg.in_channels;
    const kn_unet3d *st[2] = {o->tsr, o->ssr};
    static const char *name[2] = {"tsr", "ssr"};
    for (int i = 0; i < 2; i++) {
        if (!st[i])
            continue;
        const kn_unet3d_config *u = &st[i]->cfg;
        if (u->in_channels != C || u->out_channels != unet->cfg.out_channels)
            return kn_fail(KN_ERR_ARG, "%s: %s in/out channels %d/%d do not match the base unet's %d/%d", dir, name[i],
                           u->in_channels, u->out_channels, C, unet->cfg.out_channels);
        if (u->cross_attention_dim != text->cfg.hidden_size)
            return kn_fail(KN_ERR_ARG, "%s: %s cross_attention_dim %d does not match the text encoder's %d", dir,
                           name[i], u->cross_attention_dim, text->cfg.hidden_size);
        if (u->cond_channels != (i == 0 ? C + 1 : C))
            return kn_fail(KN_ERR_ARG, "%s: %s cond_channels is %d, the cascade needs %d", dir, name[i],
                           u->cond_channels, i == 0 ? C + 1 : C);
    }
    if (o->ssr && c->ssr_noise_aug > 0 && !o->ssr->cfg.noise_aug_cond)
        return kn_fail(KN_ERR_ARG, "%s: cascade ssr noise_aug %d needs an ssr UNet with noise_aug_cond", dir,
                       c->ssr_noise_aug);
    if (c->tsr_pred < 0 || c->tsr_pred > 3 || c->ssr_pred < 0 || c->ssr_pred > 3)
        return kn_fail(KN_ERR_ARG, "%s: cascade prediction types %d, %d out of range (0..3)", dir, c->tsr_pred,
                       c->ssr_pred);
    if (o->tsr && (c->tsr_factor < 2 || c->tsr_factor > 8 || c->tsr_times < 1 || c->tsr_times > 4 || c->tsr_steps < 1 ||
                   c->tsr_steps > KN_SCHED_MAX_STEPS || !(c->tsr_guidance >= 0 && c->tsr_guidance <= 100)))
        return kn_fail(KN_ERR_ARG, "%s: cascade tsr factor %d (2..8), times %d (1..4), steps %d (1..%d), guidance %g "
                       "(0..100) out of range", dir, c->tsr_factor, c->tsr_times, c->tsr_steps, KN_SCHED_MAX_STEPS,
                       (double)c->tsr_guidance);
    if (o->ssr && (c->ssr_scale < 2 || c->ssr_scale > 8 || c->ssr_steps < 1 || c->ssr_steps > KN_SCHED_MAX_STEPS ||
                   c->ssr_noise_aug < 0 || c->ssr_noise_aug > 999 || c->ssr_chunk < 0 ||
                   !(c->ssr_guidance >= 0 && c->ssr_guidance <= 100)))
        return kn_fail(KN_ERR_ARG, "%s: cascade ssr scale %d (2..8), steps %d (1..%d), noise_aug %d (0..999), chunk %d "
                       "(>= 0), guidance %g (0..100) out of range", dir, c->ssr_scale, c->ssr_steps, KN_SCHED_MAX_STEPS,
                       c->ssr_noise_aug, c->ssr_chunk, (double)c->ssr_guidance);
    return KN_OK;
}

kn_status kn_export_t2v(const char *dir, const kn_unet3d *unet, const kn_vae *vae, const kn_clip_text *text,
                        const kn_sched_config *sched, const char *tokenizer_src, const char *pad_token,
                        const kn_export_opts *opts) {
    kn_export_opts def = {KN_F32, 0, 0};
    if (!opts)
        opts = &def;
    kn_export_opts eo = *opts; /* the cascade's unset (0) counts take their defaults */
    if (!eo.cascade.tsr_factor) eo.cascade.tsr_factor = 2;
    if (!eo.cascade.tsr_times) eo.cascade.tsr_times = 1;
    if (!eo.cascade.tsr_steps) eo.cascade.tsr_steps = 20;
    if (!eo.cascade.ssr_scale) eo.cascade.ssr_scale = 2;
    if (!eo.cascade.ssr_steps) eo.cascade.ssr_steps = 20;
    opts = &eo;
    KN_TRY(check_cascade(dir, unet, text, opts));
    char tmp[2048], p[2300], q[2300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", dir, (int)getpid());
    rm_tree(tmp);
    if (mkdir(tmp, 0755) != 0)
        return kn_fail(KN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    kn_status st = KN_OK;
    for (int i = 0; i < 5 && st == KN_OK; i++)
        st = mkdirs(tmp, subs[i]);
    if (st == KN_OK && opts->tsr)
        st = mkdirs(tmp, "tsr");
    if (st == KN_OK && opts->ssr)
        st = mkdirs(tmp, "ssr");
#define PATH(sub, file) (snprintf(p, sizeof p, "%s/%s/%s", tmp, sub, file), p)
    if (st == KN_OK) st = write_json(PATH("unet", "config.json"), unet_config(&unet->cfg));
    if (st == KN_OK) st = kn_params_save(&unet->P, PATH("unet", "diffusion_pytorch_model.safetensors"), opts->dtype);
    if (st == KN_OK) st = write_json(PATH("vae", "config.json"), vae_config(&vae->cfg));
    if (st == KN_OK) st = kn_params_save(&vae->P, PATH("vae", "diffusion_pytorch_model.safetensors"), opts->dtype);
    if (st == KN_OK) st = write_json(PATH("text_encoder", "config.json"), clip_config(&text->cfg));
    if (st == KN_OK) st = kn_params_save(&text->P, PATH("text_encoder", "model.safetensors"), opts->dtype);
    if (st == KN_OK) st = write_json(PATH("scheduler", "scheduler_config.json"), sched_config(sched));
    if (st == KN_OK && opts->tsr) st = write_json(PATH("tsr", "config.json"), unet_config(&opts->tsr->cfg));
    if (st == KN_OK && opts->tsr)
        st = kn_params_save(&opts->tsr->P, PATH("tsr", "diffusion_pytorch_model.safetensors"), opts->dtype);
    if (st == KN_OK && opts->ssr) st = write_json(PATH("ssr", "config.json"), unet_config(&opts->ssr->cfg));
    if (st == KN_OK && opts->ssr)
        st = kn_params_save(&opts->ssr->P, PATH("ssr", "diffusion_pytorch_model.safetensors"), opts->dtype);
    if (st == KN_OK) {
        snprintf(q, sizeof q, "%s/vocab.json", tokenizer_src);
        st = copy_file(q, PATH("tokenizer", "vocab.json"));
    }
    if (st == KN_OK) {
        snprintf(q, sizeof q, "%s/merges.txt", tokenizer_src);
        st = copy_file(q, PATH("tokenizer", "merges.txt"));
    }
    if (st == KN_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "pad_token", pad_token);
        cJSON_AddNumberToObject(o, "model_max_length", text->cfg.max_position_embeddings);
        st = write_json(PATH("tokenizer", "tokenizer_config.json"), o);
    }
#undef PATH
    if (st == KN_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "_class_name", "TextToVideoSDPipeline");
        cJSON_AddStringToObject(o, "_diffusers_version", "0.25.1");
        cJSON_AddItemToObject(o, "scheduler", cJSON_CreateStringArray((const char *[]){"diffusers", "DDIMScheduler"}, 2));
        cJSON_AddItemToObject(o, "text_encoder", cJSON_CreateStringArray((const char *[]){"transformers", "CLIPTextModel"}, 2));
        cJSON_AddItemToObject(o, "tokenizer", cJSON_CreateStringArray((const char *[]){"transformers", "CLIPTokenizer"}, 2));
        cJSON_AddItemToObject(o, "unet", cJSON_CreateStringArray((const char *[]){"diffusers", "UNet3DConditionModel"}, 2));
        cJSON_AddItemToObject(o, "vae", cJSON_CreateStringArray((const char *[]){"diffusers", "AutoencoderKL"}, 2));
        /* the SR stages are UNet3DConditionModel folders too, so diffusers-style tools list them */
        if (opts->tsr)
            cJSON_AddItemToObject(o, "tsr", cJSON_CreateStringArray((const char *[]){"diffusers", "UNet3DConditionModel"}, 2));
        if (opts->ssr)
            cJSON_AddItemToObject(o, "ssr", cJSON_CreateStringArray((const char *[]){"diffusers", "UNet3DConditionModel"}, 2));
        if (opts->fps > 0 || opts->frames > 0 || opts->tsr || opts->ssr) {
            cJSON *k = cJSON_AddObjectToObject(o, "kinema");
            if (opts->fps > 0)
                cJSON_AddNumberToObject(k, "fps", opts->fps);
            if (opts->frames > 0)
                cJSON_AddNumberToObject(k, "frames", opts->frames);
            if (opts->tsr || opts->ssr)
                cJSON_AddItemToObject(k, "cascade", cascade_json(opts));
        }
        snprintf(p, sizeof p, "%s/model_index.json", tmp);
        st = write_json(p, o);
    }
    if (st != KN_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kn_last_error());
        rm_tree(tmp);
        return kn_fail(st, "%s", msg);
    }
    /* replace dir: move the old one aside, the new one in, then drop the old */
    char old[2100];
    snprintf(old, sizeof old, "%s.old.%d", dir, (int)getpid());
    struct stat sb;
    int had = stat(dir, &sb) == 0;
    if (had && rename(dir, old) != 0) {
        rm_tree(tmp);
        return kn_fail(KN_ERR_IO, "%s: cannot replace: %s", dir, strerror(errno));
    }
    if (rename(tmp, dir) != 0) {
        int e = errno;
        if (had)
            rename(old, dir);
        rm_tree(tmp);
        return kn_fail(KN_ERR_IO, "%s: cannot create: %s", dir, strerror(e));
    }
    if (had)
        rm_tree(old);
    return KN_OK;
}
