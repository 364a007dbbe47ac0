/* recipes.c — the built-in training recipes. */
#include "train/recipes.h"

#include <string.h>

static const char *const names[] = {"smoke", "tiny", NULL};

const char *const *kn_recipe_names(void) { return names; }

/* smoke: a tiny latent text-to-video model trained in about a minute on 2 cores, to exercise
 * every stage end to end (VAE, CLIP text encoder + UNet3D, export, generate). */
static void smoke(kn_recipe *r) {
    r->name = "smoke";
    r->about = "tiny latent text-to-video model, about a minute on 2 cores (tests the machinery)";
    r->data = (kn_train_data){.size = 32, .frames = 8, .fps = 8, .batch = 2, .vae_frames = 4};
    kn_vae_config v = kn_vae_config_default();
    v.nblocks = 2;
    v.block_out_channels[0] = 16;
    v.block_out_channels[1] = 32;
    v.layers_per_block = 1;
    v.norm_num_groups = 8;
    v.latent_channels = 4;
    v.scaling_factor = 1.0f;
    r->vae = v;
    r->vae_opts = (kn_train_opts){.steps = 60, .lr = 2e-3, .lr_min = 2e-4, .weight_decay = 0.0, .grad_clip = 1.0,
                                  .ema_decay = 0.0, .warmup = 10, .kl_weight = 1e-3, .seed = 1};
    kn_clip_text_config t = kn_clip_text_config_default();
    t.hidden_size = 32;
    t.intermediate_size = 64;
    t.num_hidden_layers = 2;
    t.num_attention_heads = 4;
    t.max_position_embeddings = 77;
    t.hidden_act = KN_ACT_GELU;
    t.eos_token_id = 49407;
    r->text = t;
    kn_unet3d_config u = kn_unet3d_config_default();
    u.nblocks = 2;
    u.block_out_channels[0] = 32;
    u.block_out_channels[1] = 64;
    u.down_types[0] = KN_BLOCK_CROSS_ATTN_DOWN;
    u.down_types[1] = KN_BLOCK_DOWN;
    u.up_types[0] = KN_BLOCK_UP;
    u.up_types[1] = KN_BLOCK_CROSS_ATTN_UP;
    u.layers_per_block = 1;
    u.norm_num_groups = 8;
    u.attention_head_dim = 8;
    u.cross_attention_dim = 32;
    u.in_channels = u.out_channels = 4;
    u.sample_size = 16;
    r->unet = u;
    r->unet_opts = (kn_train_opts){.steps = 80, .lr = 1e-3, .lr_min = 1e-4, .weight_decay = 0.01, .grad_clip = 1.0,
                                   .ema_decay = 0.99, .warmup = 10, .objective = KN_PRED_EPS, .min_snr_gamma = 5.0,
                                   .cond_dropout = 0.1, .seed = 2};
    r->sched = kn_sched_config_modelscope();
}

/* tiny: a small single-stage latent text-to-video model at 32x32, 8 frames at 4 fps (two
 * seconds of Shapes-T2V motion), trained in about an hour on 2 cores. It is the bundled default
 * until the cascade recipes (shapes-mav, shapes-imagen) are trained. */
static void tiny(kn_recipe *r) {
    smoke(r);
    r->name = "tiny";
    r->about = "small latent text-to-video model, 32x32 x 8 frames at 4 fps (about an hour on 2 cores)";
    r->data = (kn_train_data){.size = 32, .frames = 8, .fps = 4, .batch = 4, .vae_frames = 4};
    r->vae.block_out_channels[0] = 32;
    r->vae.block_out_channels[1] = 64;
    r->vae_opts.steps = 600;
    r->vae_opts.lr = 1e-3;
    r->vae_opts.lr_min = 1e-4;
    r->vae_opts.warmup = 50;
    r->text.hidden_size = 64;
    r->text.intermediate_size = 128;
    r->text.num_hidden_layers = 2;
    r->text.num_attention_heads = 4;
    r->unet.nblocks = 3;
    r->unet.block_out_channels[0] = 64;
    r->unet.block_out_channels[1] = 96;
    r->unet.block_out_channels[2] = 96;
    r->unet.down_types[0] = r->unet.down_types[1] = KN_BLOCK_CROSS_ATTN_DOWN;
    r->unet.down_types[2] = KN_BLOCK_DOWN;
    r->unet.up_types[0] = KN_BLOCK_UP;
    r->unet.up_types[1] = r->unet.up_types[2] = KN_BLOCK_CROSS_ATTN_UP;
    r->unet.attention_head_dim = 16;
    r->unet.cross_attention_dim = 64;
    r->unet.norm_num_groups = 16;
    r->unet_opts.steps = 3000;
    r->unet_opts.lr = 5e-4;
    r->unet_opts.lr_min = 5e-5;
    r->unet_opts.warmup = 100;
    r->unet_opts.ema_decay = 0.995;
}

kn_status kn_recipe_get(const char *name, kn_recipe *r) {
    memset(r, 0, sizeof *r);
    if (!strcmp(name, "smoke")) {
        smoke(r);
        return KN_OK;
    }
    if (!strcmp(name, "tiny")) {
        tiny(r);
        return KN_OK;
    }
    return kn_fail(KN_ERR_ARG, "unknown recipe '%s' (known: smoke, tiny)", name);
}
