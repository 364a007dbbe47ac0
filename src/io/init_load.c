/* init_load.c — a model folder's weights into a training recipe's models (see init_load.h).
 * Unlike kn_params_load, which wants every parameter, a UNet's temporal parameters may be absent
 * (an image model inflated to video), and tensors no parameter takes are refused (they mean the
 * folder's model is not the recipe's). */
#include "io/init_load.h"

#include "io/model_load.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The embeddings the cascade options add (fps, noise augmentation): absent from a plain model. */
static int option_param(const char *name) {
    return !strncmp(name, "fps_embedding.", 14) || !strncmp(name, "aug_embedding.", 14) ||
           !strncmp(name, "text_pool_embedding.", 20);
}

/* Tensors a state dict may carry that are not parameters (transformers' CLIP position ids). */
static int ignorable(const char *name) {
    size_t l = strlen(name);
    return l >= 12 && !strcmp(name + l - 12, "position_ids");
}

/* Copies tensor `name` of st into parameter p (shapes equal), converting to F32. */
static kn_status take(const kn_safetensors *st, const char *file, kn_param *p) {
    kn_tensor t;
    KN_TRY(kn_st_get(st, p->name, &t));
    const kn_tensor *v = &p->var.v;
    if (!kn_tensor_same_shape(&t, v)) {
        char a[96], b[96];
        return kn_fail(KN_ERR_FORMAT, "init: tensor '%s' has shape %s in %s but %s in the recipe's model", p->name,
                       kn_shape_str(&t, a, sizeof a), file, kn_shape_str(v, b, sizeof b));
    }
    if (v->dtype != KN_F32 || !v->data || !kn_tensor_is_contiguous(v))
        return kn_fail(KN_ERR_ARG, "init: parameter '%s' is not a trainable F32 tensor", p->name);
    int64_t n = kn_tensor_numel(v);
    if (t.dtype == KN_F32)
        memcpy(v->data, t.data, (size_t)n * sizeof(float));
    else if (t.dtype == KN_F16)
        kn_f16_to_f32_row(t.data, v->data, n);
    else if (t.dtype == KN_BF16)
        kn_bf16_to_f32_row(t.data, v->data, n);
    else
        return kn_fail(KN_ERR_FORMAT, "init: tensor '%s' in %s is not F32, F16 or BF16", p->name, file);
    return KN_OK;
}

/* Loads component folder `sub` of dir into P. unet: temporal parameters may be missing. */
static kn_status load_component(const char *dir, const char *sub, kn_params *P, kn_unet3d *unet,
                                kn_init_report *rep) {
    char path[1200], file[1400];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (!is_dir(path))
        return kn_fail(KN_ERR_IO, "init: %s has no %s/ folder (not a model folder?)", dir, sub);
    KN_TRY(kn_find_weights(path, file, sizeof file));
    kn_safetensors *st = kn_st_open(file);
    if (!st)
        return kn_fail(KN_ERR_FORMAT, "init: %s", kn_last_error());
    /* option embeddings the folder may lack then output zero: the model starts as the folder's */
    if (unet)
        kn_unet3d_init_options_zero(unet);
    kn_status s = KN_OK;
    int taken = 0;
    for (int i = 0; i < P->n && s == KN_OK; i++) {
        kn_param *p = P->items[i];
        if (kn_st_find(st, p->name) >= 0) {
            s = take(st, file, p);
            taken++;
        } else if (unet && kn_unet3d_temporal_param(p->name)) {
            if (!rep->fresh)
                snprintf(rep->fresh_first, sizeof rep->fresh_first, "%s/%s", sub, p->name);
            rep->fresh++;
            rep->fresh_numel += kn_tensor_numel(&p->var.v);
        } else if (unet && option_param(p->name)) {
            rep->fresh_options++;
        } else {
            s = kn_fail(KN_ERR_FORMAT, "init: tensor '%s' of the recipe's %s is missing from %s", p->name, sub, file);
        }
    }
    /* every tensor of the file must have gone somewhere: otherwise the folder's model is larger */
    for (int i = 0; i < kn_st_count(st) && s == KN_OK; i++) {
        const char *name = kn_st_name(st, i);
        if (!kn_params_find(P, name) && !ignorable(name))
            s = kn_fail(KN_ERR_FORMAT, "init: tensor '%s' of %s has no parameter in the recipe's %s", name, file, sub);
    }
    rep->loaded += taken;
    kn_st_close(st);
    return s;
}

kn_status kn_init_from_folder(const char *dir, kn_vae *vae, kn_clip_text *text, kn_unet3d *unet, kn_unet3d *tsr,
                              kn_unet3d *ssr, kn_init_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!dir || !vae || !text || !unet)
        return kn_fail(KN_ERR_ARG, "init: a folder and the vae, text encoder and unet are required");
    if (!is_dir(dir))
        return kn_fail(KN_ERR_IO, "init: %s is not a folder", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    kn_vae_config vc;
    if (kn_vae_config_load(path, &vc) != KN_OK)
        return kn_fail(KN_ERR_FORMAT, "init: %s", kn_last_error());
    if (!(vc.scaling_factor > 0) || !(vc.scaling_factor < 1e6f))
        return kn_fail(KN_ERR_FORMAT, "init: %s: scaling_factor %g is not a positive number", path,
                       (double)vc.scaling_factor);
    rep->vae_scale = vc.scaling_factor;
    KN_TRY(load_component(dir, "vae", &vae->P, NULL, rep));
    /* a folder with a VAE alone (a trained autoencoder reused for a new model): the text encoder
     * and the UNet keep their fresh init. Otherwise both are loaded. */
    char tp[1200], up[1200];
    snprintf(tp, sizeof tp, "%s/text_encoder", dir);
    snprintf(up, sizeof up, "%s/unet", dir);
    int ht = is_dir(tp), hu = is_dir(up);
    if (!ht && !hu) {
        rep->vae_only = 1;
    } else {
        KN_TRY(load_component(dir, "text_encoder", &text->P, NULL, rep));
        KN_TRY(load_component(dir, "unet", &unet->P, unet, rep));
    }
    kn_unet3d *sr[2] = {tsr, ssr};
    static const char *const subs[2] = {"tsr", "ssr"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        if (!sr[i] || !is_dir(path))
            continue;
        KN_TRY(load_component(dir, subs[i], &sr[i]->P, sr[i], rep));
        if (i == 0)
            rep->tsr_loaded = 1;
        else
            rep->ssr_loaded = 1;
    }
    return KN_OK;
}
