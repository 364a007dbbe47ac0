/* model_load.c — configs and weights into models. */
#include "io/model_load.h"

#include "io/config.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static kn_status block_type(const char *path, const char *s, kn_block_type *t) {
    if (!strcmp(s, "DownBlock3D")) *t = KN_BLOCK_DOWN;
    else if (!strcmp(s, "CrossAttnDownBlock3D")) *t = KN_BLOCK_CROSS_ATTN_DOWN;
    else if (!strcmp(s, "UpBlock3D")) *t = KN_BLOCK_UP;
    else if (!strcmp(s, "CrossAttnUpBlock3D")) *t = KN_BLOCK_CROSS_ATTN_UP;
    else return kn_fail(KN_ERR_UNSUPPORTED, "%s: block type '%s' is not supported", path, s);
    return KN_OK;
}

kn_status kn_unet3d_config_load(const char *path, kn_unet3d_config *out) {
    kn_config *c = kn_config_load(path);
    if (!c)
        return KN_ERR_FORMAT;
    kn_unet3d_config u = kn_unet3d_config_default();
    kn_status st = KN_OK;
    const char *cls = NULL;
    int64_t v, boc[KN_UNET_MAX_BLOCKS + 1];
    const char *dt[KN_UNET_MAX_BLOCKS + 1], *ut[KN_UNET_MAX_BLOCKS + 1];
    int nboc = 0, ndt = 0, nut = 0;
    double f;
#define GETI(key, field) if ((st = kn_config_int(c, key, u.field, &v)) != KN_OK) goto done; u.field = (int)v
    if ((st = kn_config_str(c, "_class_name", NULL, &cls)) != KN_OK) goto done;
    if (cls && strcmp(cls, "UNet3DConditionModel")) {
        st = kn_fail(KN_ERR_UNSUPPORTED, "%s: _class_name is '%s', not UNet3DConditionModel", path, cls);
        goto done;
    }
    GETI("in_channels", in_channels);
    GETI("out_channels", out_channels);
    GETI("layers_per_block", layers_per_block);
    GETI("downsample_padding", downsample_padding);
    GETI("norm_num_groups", norm_num_groups);
    GETI("cross_attention_dim", cross_attention_dim);
    GETI("sample_size", sample_size);
    /* kinema's cascade options (unet3d.h); absent in diffusers configs */
    GETI("cond_channels", cond_channels);
    {
        int bv;
#define GETB(key, field) if ((st = kn_config_bool(c, key, u.field, &bv)) != KN_OK) goto done; u.field = bv
        GETB("fps_cond", fps_cond);
        GETB("noise_aug_cond", noise_aug_cond);
        GETB("text_pool", text_pool);
        GETB("spatial_only", spatial_only);
        GETB("temporal_attention", temporal_attention);
#undef GETB
    }
    if ((st = kn_config_float(c, "norm_eps", u.norm_eps, &f)) != KN_OK) goto done;
    u.norm_eps = (float)f;
    if ((st = kn_config_float(c, "mid_block_scale_factor", u.mid_block_scale_factor, &f)) != KN_OK) goto done;
    u.mid_block_scale_factor = (float)f;
    {
        int64_t hd[KN_UNET_MAX_BLOCKS + 1];
        int nhd = 0;
        if ((st = kn_config_ints(c, "attention_head_dim", hd, KN_UNET_MAX_BLOCKS, &nhd)) != KN_OK) goto done;
        if (nhd > 1) {
            for (int i = 1; i < nhd; i++)
                if (hd[i] != hd[0]) {
                    st = kn_fail(KN_ERR_UNSUPPORTED, "%s: per-block attention_head_dim is not supported", path);
                    goto done;
                }
        }
        if (nhd >= 1) u.attention_head_dim = (int)hd[0];
        if (kn_config_has(c, "num_attention_heads")) {
            st = kn_fail(KN_ERR_UNSUPPORTED, "%s: num_attention_heads must be null for UNet3DConditionModel", path);
            goto done;
        }
    }
    if ((st = kn_config_ints(c, "block_out_channels", boc, KN_UNET_MAX_BLOCKS, &nboc)) != KN_OK) goto done;
    if ((st = kn_config_strs(c, "down_block_types", dt, KN_UNET_MAX_BLOCKS, &ndt)) != KN_OK) goto done;
    if ((st = kn_config_strs(c, "up_block_types", ut, KN_UNET_MAX_BLOCKS, &nut)) != KN_OK) goto done;
    if (nboc) {
        u.nblocks = nboc;
        for (int i = 0; i < nboc; i++) u.block_out_channels[i] = (int)boc[i];
    }
    if ((ndt && ndt != u.nblocks) || (nut && nut != u.nblocks)) {
        st = kn_fail(KN_ERR_FORMAT, "%s: %d down and %d up block types for %d block_out_channels", path, ndt, nut,
                     u.nblocks);
        goto done;
    }
    for (int i = 0; i < ndt; i++)
        if ((st = block_type(path, dt[i], &u.down_types[i])) != KN_OK) goto done;
    for (int i = 0; i < nut; i++)
        if ((st = block_type(path, ut[i], &u.up_types[i])) != KN_OK) goto done;
    if (!ndt && u.nblocks != 4) {
        st = kn_fail(KN_ERR_FORMAT, "%s: down_block_types missing for %d blocks", path, u.nblocks);
        goto done;
    }
    *out = u;
done:
#undef GETI
    kn_config_free(c);
    return st;
}

kn_status kn_vae_config_load(const char *path, kn_vae_config *out) {
    kn_config *c = kn_config_load(path);
    if (!c)
        return KN_ERR_FORMAT;
    kn_vae_config v = kn_vae_config_default();
    kn_status st;
    const char *cls = NULL;
    int64_t x, boc[KN_VAE_MAX_BLOCKS + 1];
    int nboc = 0;
    double f;
    if ((st = kn_config_str(c, "_class_name", NULL, &cls)) != KN_OK) goto done;
    if (cls && strcmp(cls, "AutoencoderKL")) {
        st = kn_fail(KN_ERR_UNSUPPORTED, "%s: _class_name is '%s', not AutoencoderKL", path, cls);
        goto done;
    }
#define GETI(key, field) if ((st = kn_config_int(c, key, v.field, &x)) != KN_OK) goto done; v.field = (int)x
    GETI("in_channels", in_channels);
    GETI("out_channels", out_channels);
    GETI("latent_channels", latent_channels);
    GETI("layers_per_block", layers_per_block);
    GETI("norm_num_groups", norm_num_groups);
#undef GETI
    if ((st = kn_config_float(c, "scaling_factor", v.scaling_factor, &f)) != KN_OK) goto done;
    v.scaling_factor = (float)f;
    if ((st = kn_config_ints(c, "block_out_channels", boc, KN_VAE_MAX_BLOCKS, &nboc)) != KN_OK) goto done;
    if (nboc) {
        v.nblocks = nboc;
        for (int i = 0; i < nboc; i++) v.block_out_channels[i] = (int)boc[i];
    }
    *out = v;
done:
    kn_config_free(c);
    return st;
}

kn_status kn_clip_text_config_load(const char *path, kn_clip_text_config *out) {
    kn_config *c = kn_config_load(path);
    if (!c)
        return KN_ERR_FORMAT;
    kn_clip_text_config m = kn_clip_text_config_default();
    kn_status st;
    int64_t x;
    double f;
    const char *act = NULL;
#define GETI(key, field) if ((st = kn_config_int(c, key, m.field, &x)) != KN_OK) goto done; m.field = (int)x
    GETI("vocab_size", vocab_size);
    GETI("hidden_size", hidden_size);
    GETI("intermediate_size", intermediate_size);
    GETI("num_hidden_layers", num_hidden_layers);
    GETI("num_attention_heads", num_attention_heads);
    GETI("max_position_embeddings", max_position_embeddings);
    GETI("eos_token_id", eos_token_id);
#undef GETI
    if ((st = kn_config_float(c, "layer_norm_eps", m.layer_norm_eps, &f)) != KN_OK) goto done;
    m.layer_norm_eps = (float)f;
    if ((st = kn_config_str(c, "hidden_act", "quick_gelu", &act)) != KN_OK) goto done;
    if (!strcmp(act, "quick_gelu")) m.hidden_act = KN_ACT_QUICK_GELU;
    else if (!strcmp(act, "gelu")) m.hidden_act = KN_ACT_GELU;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) m.hidden_act = KN_ACT_GELU_TANH;
    else { st = kn_fail(KN_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported", path, act); goto done; }
    *out = m;
done:
    kn_config_free(c);
    return st;
}

static kn_status params_load(kn_params *P, kn_safetensors *const *files, int nfiles, int *unused, int map,
                             size_t *mapped);

kn_status kn_params_load(kn_params *P, kn_safetensors *const *files, int nfiles, int *unused) {
    return params_load(P, files, nfiles, unused, 0, NULL);
}

kn_status kn_params_load_mapped(kn_params *P, kn_safetensors *const *files, int nfiles, size_t *mapped) {
    return params_load(P, files, nfiles, NULL, 1, mapped);
}

static kn_status params_load(kn_params *P, kn_safetensors *const *files, int nfiles, int *unused, int map,
                             size_t *mapped) {
    if (mapped)
        *mapped = 0;
    char a[96], b[96];
    int used = 0;
    for (int i = 0; i < P->n; i++) {
        kn_param *p = P->items[i];
        kn_tensor t;
        int found = 0;
        for (int f = 0; f < nfiles && !found; f++) {
            if (kn_st_find(files[f], p->name) < 0)
                continue;
            KN_TRY(kn_st_get(files[f], p->name, &t));
            found = 1;
            if (t.dtype != KN_F32 && t.dtype != KN_F16 && t.dtype != KN_BF16)
                return kn_fail(KN_ERR_DTYPE, "%s: tensor '%s' is %s; weights must be F32, F16 or BF16",
                               kn_st_path(files[f]), p->name, kn_dtype_name(t.dtype));
            kn_tensor want = p->var.v;
            /* a (O, I, 1, 1) conv may stand for a Linear (O, I) and vice versa: compare numel then */
            if (!kn_tensor_same_shape(&t, &want)) {
                int ok = kn_tensor_numel(&t) == kn_tensor_numel(&want) && t.ndim >= 2 && want.ndim >= 2 &&
                         t.shape[0] == want.shape[0] && t.shape[1] == want.shape[1];
                for (int d = 2; ok && d < t.ndim; d++) ok = t.shape[d] == 1;
                for (int d = 2; ok && d < want.ndim; d++) ok = want.shape[d] == 1;
                if (!ok)
                    return kn_fail(KN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model expects %s (check config.json)",
                                   kn_st_path(files[f]), p->name, kn_shape_str(&t, a, sizeof a),
                                   kn_shape_str(&want, b, sizeof b));
                KN_TRY(kn_tensor_reshape(&t, want.ndim, want.shape, &t));
            }
            if (map && t.dtype == KN_F32 && kn_tensor_is_contiguous(&t) && ((uintptr_t)t.data & 3) == 0) {
                p->var.v.data = t.data; /* zero-copy: the mapped file's own bytes */
                if (mapped)
                    *mapped += kn_tensor_nbytes(&t);
            } else {
                KN_TRY(kn_tensor_copy(&p->var.v, &t));
            }
            used++;
        }
        if (!found)
            return kn_fail(KN_ERR_FORMAT, "%s: weight '%s' %s is missing", nfiles ? kn_st_path(files[0]) : "(no file)",
                           p->name, kn_shape_str(&p->var.v, a, sizeof a));
    }
    if (unused) {
        int total = 0;
        for (int f = 0; f < nfiles; f++) total += kn_st_count(files[f]);
        *unused = total - used;
    }
    return KN_OK;
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

kn_status kn_find_weights(const char *path, char *out, size_t n) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return kn_fail(KN_ERR_IO, "%s: no such file or folder", path);
    if (S_ISREG(sb.st_mode)) {
        snprintf(out, n, "%s", path);
        return KN_OK;
    }
    static const char *names[] = {"diffusion_pytorch_model.safetensors", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, n, "%s/%s", path, names[i]);
        if (is_file(out))
            return KN_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return kn_fail(KN_ERR_IO, "%s: cannot list the folder", path);
    int count = 0;
    char found[1024] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors") && !strstr(e->d_name, ".fp16.")) {
            count++;
            snprintf(found, sizeof found, "%s/%s", path, e->d_name);
        }
    }
    closedir(d);
    if (count == 1) {
        snprintf(out, n, "%s", found);
        return KN_OK;
    }
    if (count == 0)
        return kn_fail(KN_ERR_IO, "%s: no .safetensors weights in the folder", path);
    return kn_fail(KN_ERR_FORMAT, "%s: %d .safetensors files and none named diffusion_pytorch_model.safetensors", path,
                   count);
}

/* ------------------------------------------------------ reduced-precision weights */

/* Whether parameter p is a matrix / conv weight that kn_params_to_lowp converts. */
static int lowp_candidate(const kn_param *p) {
    const kn_tensor *v = &p->var.v;
    size_t n = strlen(p->name);
    if (v->dtype != KN_F32 || v->ndim < 2 || !v->data || !kn_tensor_is_contiguous(v) || v->shape[0] < 1)
        return 0;
    if (n < 7 || strcmp(p->name + n - 7, ".weight") || strstr(p->name, "norm"))
        return 0;
    /* the name part before ".weight": token_embedding, position_embedding, ...embeddings */
    const char *end = p->name + n - 7, *beg = end;
    while (beg > p->name && beg[-1] != '.')
        beg--;
    for (const char *c = beg; c + 9 <= end; c++)
        if (!strncmp(c, "embedding", 9))
            return 0;
    return 1;
}

kn_status kn_params_to_lowp(kn_params *P, kn_wtype t, void **store, int *nconv, size_t *bytes) {
    static const kn_dtype dt[KN_WT_COUNT] = {KN_F32, KN_F16, KN_BF16, KN_U8};
    if (!P || !store)
        return kn_fail(KN_ERR_ARG, "params_to_lowp: no params table or store pointer");
    if (t < 0 || t >= KN_WT_COUNT)
        return kn_fail(KN_ERR_ARG, "params_to_lowp: unknown weights type %d", (int)t);
    *store = NULL;
    if (nconv)
        *nconv = 0;
    if (bytes)
        *bytes = 0;
    if (t == KN_WT_F32)
        return KN_OK;
    size_t total = 0;
    int count = 0;
    for (int i = 0; i < P->n; i++) {
        const kn_tensor *v = &P->items[i]->var.v;
        if (!lowp_candidate(P->items[i]))
            continue;
        total += (kn_lowp_nbytes(t, v->shape[0], kn_tensor_numel(v) / v->shape[0]) + 63) & ~(size_t)63;
        count++;
    }
    if (!count)
        return KN_OK;
    char *blk = kn_aligned_alloc(total);
    if (!blk)
        return kn_fail(KN_ERR_NOMEM, "params_to_lowp: cannot allocate %zu bytes for %s weights", total,
                       kn_wtype_name(t));
    size_t off = 0;
    for (int i = 0; i < P->n; i++) {
        kn_tensor *v = &P->items[i]->var.v;
        if (!lowp_candidate(P->items[i]))
            continue;
        int64_t rows = v->shape[0], K = kn_tensor_numel(v) / rows;
        kn_lowp_quantize(t, v->data, rows, K, blk + off);
        v->data = blk + off;
        v->dtype = dt[t];
        off += (kn_lowp_nbytes(t, rows, K) + 63) & ~(size_t)63;
    }
    *store = blk;
    if (nconv)
        *nconv = count;
    if (bytes)
        *bytes = total;
    return KN_OK;
}
