/* recipe_config.c — training recipes from JSON (see recipe_config.h). */
#include "io/recipe_config.h"

#include "io/config.h"

#include <string.h>

static const char *known[] = {"base", "size", "frames", "fps", "batch", "vae_channels", "vae_steps", "vae_lr",
                              "text_width", "text_layers", "text_heads", "unet_channels", "unet_layers_per_block",
                              "unet_head_dim", "unet_groups", "unet_steps", "unet_lr", "objective", "min_snr_gamma",
                              "cond_dropout", "ema_decay", "freeze_spatial", "bf16", "image_steps", "image_batch", "text_pool",
                              "unet_warmup", "tsr_steps", "ssr_steps", "clip", "clip_steps", "clip_lr", "clip_batch",
                              "clip_embed", "clip_temperature", "clip_learn_temperature", "freeze_text", NULL};

kn_status kn_recipe_load(const char *path, kn_recipe *r) {
    kn_config *c = kn_config_load(path);
    if (!c)
        return KN_ERR_FORMAT;
    kn_status st = KN_OK;
    for (int i = 0; i < kn_config_count(c); i++) {
        const char *k = kn_config_key(c, i);
        int ok = 0;
        for (int j = 0; known[j] && !ok; j++)
            ok = !strcmp(k, known[j]);
        if (!ok && k[0] != '_') {
            st = kn_fail(KN_ERR_FORMAT, "%s: unknown key '%s'", path, k);
            goto done;
        }
    }
    const char *base = NULL, *obj = NULL;
    if ((st = kn_config_str(c, "base", "smoke", &base)) != KN_OK || (st = kn_recipe_get(base, r)) != KN_OK)
        goto done;
    int64_t v, ch[8];
    int n;
    double f;
#define INT(key, field, lo, hi)                                                                       \
    if ((st = kn_config_int(c, key, field, &v)) != KN_OK) goto done;                                  \
    if (v < lo || v > hi) { st = kn_fail(KN_ERR_FORMAT, "%s: '%s' = %lld outside [%d, %d]", path, key, \
                                         (long long)v, lo, hi); goto done; }                          \
    field = (int)v
#define F64(key, field, lo, hi)                                                                       \
    if ((st = kn_config_float(c, key, field, &f)) != KN_OK) goto done;                                \
    if (!(f >= lo && f <= hi)) { st = kn_fail(KN_ERR_FORMAT, "%s: '%s' = %g outside [%g, %g]", path,  \
                                              key, f, (double)lo, (double)hi); goto done; }           \
    field = f
    INT("size", r->data.size, 8, 1024);
    INT("frames", r->data.frames, 1, 256);
    INT("fps", r->data.fps, 1, 16);
    INT("batch", r->data.batch, 1, 4096);
    if (16 % r->data.fps) {
        st = kn_fail(KN_ERR_FORMAT, "%s: 'fps' must divide 16 (16, 8, 4, 2, 1)", path);
        goto done;
    }
    if ((st = kn_config_ints(c, "vae_channels", ch, 6, &n)) != KN_OK) goto done;
    if (n) {
        r->vae.nblocks = n;
        for (int i = 0; i < n; i++) r->vae.block_out_channels[i] = (int)ch[i];
    }
    {
        int64_t s = r->vae_opts.steps;
        INT("vae_steps", s, 1, 100000000);
        r->vae_opts.steps = s;
    }
    F64("vae_lr", r->vae_opts.lr, 1e-8, 1.0);
    INT("text_width", r->text.hidden_size, 4, 4096);
    INT("text_layers", r->text.num_hidden_layers, 1, 64);
    INT("text_heads", r->text.num_attention_heads, 1, 64);
    r->text.intermediate_size = 2 * r->text.hidden_size;
    if ((st = kn_config_ints(c, "unet_channels", ch, 6, &n)) != KN_OK) goto done;
    if (n) {
        r->unet.nblocks = n;
        for (int i = 0; i < n; i++) {
            r->unet.block_out_channels[i] = (int)ch[i];
            r->unet.down_types[i] = i == n - 1 ? KN_BLOCK_DOWN : KN_BLOCK_CROSS_ATTN_DOWN;
            r->unet.up_types[i] = i == 0 ? KN_BLOCK_UP : KN_BLOCK_CROSS_ATTN_UP;
        }
    }
    INT("unet_layers_per_block", r->unet.layers_per_block, 1, 8);
    INT("unet_head_dim", r->unet.attention_head_dim, 1, 1024);
    INT("unet_groups", r->unet.norm_num_groups, 1, 1024);
    r->unet.cross_attention_dim = r->text.hidden_size;
    {
        int64_t s = r->unet_opts.steps;
        INT("unet_steps", s, 1, 100000000);
        r->unet_opts.steps = s;
        int64_t is = r->unet_opts.image_steps;
        INT("image_steps", is, 0, 100000000);
        r->unet_opts.image_steps = is;
        int64_t wu = r->unet_opts.warmup, ts = r->tsr_opts.steps, ss = r->ssr_opts.steps;
        INT("unet_warmup", wu, 0, 100000000);
        INT("tsr_steps", ts, 0, 100000000);
        INT("ssr_steps", ss, 0, 100000000);
        r->unet_opts.warmup = wu;
        r->tsr_opts.steps = ts;
        r->ssr_opts.steps = ss;
    }
    INT("image_batch", r->unet_opts.image_batch, 0, 4096);
    {
        int64_t cs = r->clip_opts.steps;
        INT("clip_steps", cs, 0, 100000000);
        r->clip_opts.steps = cs;
    }
    F64("clip_lr", r->clip_opts.lr, 1e-8, 1.0);
    INT("clip_batch", r->clip_batch, 2, 4096);
    INT("clip_embed", r->clip.embed_dim, 1, 4096);
    {
        double t = r->clip.init_temperature;
        F64("clip_temperature", t, 1e-3, 10.0);
        r->clip.init_temperature = (float)t;
    }
    F64("unet_lr", r->unet_opts.lr, 1e-8, 1.0);
    F64("min_snr_gamma", r->unet_opts.min_snr_gamma, 0, 1e6);
    F64("cond_dropout", r->unet_opts.cond_dropout, 0, 1);
    F64("ema_decay", r->unet_opts.ema_decay, 0, 0.999999);
#undef INT
#undef F64
    {
        int fz = 0;
        if ((st = kn_config_bool(c, "freeze_spatial", r->unet_opts.freeze_spatial, &fz)) != KN_OK) goto done;
        r->unet_opts.freeze_spatial = fz;
        int bf = 0;
        if ((st = kn_config_bool(c, "bf16", 0, &bf)) != KN_OK) goto done;
        r->vae_opts.bf16 = r->unet_opts.bf16 = r->tsr_opts.bf16 = r->ssr_opts.bf16 = bf;
        int hc = 0, lt = 0, ft = 0;
        if ((st = kn_config_bool(c, "clip", r->has_clip, &hc)) != KN_OK) goto done;
        if ((st = kn_config_bool(c, "clip_learn_temperature", r->clip.learn_temperature, &lt)) != KN_OK) goto done;
        /* the base freezes the text encoder when a CLIP stage trained it, unless the file says otherwise */
        if ((st = kn_config_bool(c, "freeze_text", hc, &ft)) != KN_OK) goto done;
        r->has_clip = hc;
        r->clip.learn_temperature = lt;
        r->unet_opts.freeze_text = ft;
        int tp = 0;
        if ((st = kn_config_bool(c, "text_pool", r->unet.text_pool, &tp)) != KN_OK) goto done;
        r->unet.text_pool = tp;
    }
    if ((st = kn_config_str(c, "objective", NULL, &obj)) != KN_OK) goto done;
    if (obj) {
        if (!strcmp(obj, "eps")) r->unet_opts.objective = KN_PRED_EPS;
        else if (!strcmp(obj, "v")) r->unet_opts.objective = KN_PRED_V;
        else if (!strcmp(obj, "x0")) r->unet_opts.objective = KN_PRED_SAMPLE;
        else { st = kn_fail(KN_ERR_FORMAT, "%s: 'objective' must be eps, v or x0", path); goto done; }
        r->sched.prediction_type = r->unet_opts.objective;
    }
    if (r->unet_opts.lr_min > r->unet_opts.lr) r->unet_opts.lr_min = r->unet_opts.lr / 10;
    if (r->clip_opts.lr_min > r->clip_opts.lr) r->clip_opts.lr_min = r->clip_opts.lr / 10;
    if (r->clip_opts.warmup >= r->clip_opts.steps) r->clip_opts.warmup = r->clip_opts.steps / 10;
    r->clip.frames = r->data.frames;
    r->clip.text_dim = r->text.hidden_size;
    if (r->clip.size > r->data.size) r->clip.size = r->data.size;
    if (r->vae_opts.lr_min > r->vae_opts.lr) r->vae_opts.lr_min = r->vae_opts.lr / 10;
    r->name = "config";
done:
    kn_config_free(c);
    return st;
}
