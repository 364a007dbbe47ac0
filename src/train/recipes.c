/* recipes.c — the built-in training recipes. */
#include "train/recipes.h"

#include <string.h>

static const char *const names[] = {"smoke", "tiny", "smoke-cascade", "shapes-mav", "shapes-imagen", NULL};

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
    kn_unet3d_config u = kn_unet3d_config_small(2, (const int[]){32, 64}, (const int[]){1, 0}, 8, 8, 32);
    u.sample_size = 16;
    r->unet = u;
    r->unet_opts = (kn_train_opts){.steps = 80, .lr = 1e-3, .lr_min = 1e-4, .weight_decay = 0.01, .grad_clip = 1.0,
                                   .ema_decay = 0.99, .warmup = 10, .objective = KN_PRED_EPS, .min_snr_gamma = 5.0,
                                   .cond_dropout = 0.1, .seed = 2};
    r->sched = kn_sched_config_modelscope();
    /* no CLIP stage here; its settings are the defaults a JSON recipe's "clip": true starts from */
    r->has_clip = 0;
    r->clip = (kn_clip_tower_config){.size = 32, .width = 32, .embed_dim = 64, .init_temperature = 0.07f,
                                     .learn_temperature = 1};
    r->clip_opts = (kn_train_opts){.steps = 600, .lr = 1e-3, .lr_min = 1e-4, .weight_decay = 0.05, .grad_clip = 1.0,
                                   .warmup = 50, .seed = 5};
    r->clip_batch = 64;
    r->clip_held = 64;
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

/* The cascade recipes share one plan (docs/design.md, "The cascade"):
 *   VAE f = 4 (64 px <-> 16x16x8 latents), trained on 64 px frames;
 *   base: 64 px, 8 frames; fps drawn from {4, 8} (8 frames at 4 fps = the 2 s of a clip);
 *   tsr: x2 frame interpolation (and x4, and extrapolation) on 16-frame windows at 8 or 16 fps,
 *        applied twice: 8 frames at 4 fps -> 16 at 8 -> 32 at 16;
 *   ssr: x2 in space, 64 -> 128 px (16x16 -> 32x32 latents), on windows of a few frames.
 * shapes-mav and shapes-imagen differ where the two papers differ (see each). Budgets: each
 * stage at most 45 min on 2 cores. */
static void cascade_common(kn_recipe *r) {
    tiny(r);
    r->data = (kn_train_data){.size = 64, .frames = 8, .fps = 4, .batch = 4, .vae_frames = 4, .nfps = 2,
                              .fps_choices = {4, 8}};
    r->vae.nblocks = 3;
    r->vae.block_out_channels[0] = 32;
    r->vae.block_out_channels[1] = 64;
    r->vae.block_out_channels[2] = 96;
    r->vae.norm_num_groups = 16;
    /* 8 latent channels: every stage is judged on decoded pixels, so the autoencoder's
     * reconstruction bounds the SR stages' PSNR (they must beat Lanczos and frame blending) */
    r->vae.latent_channels = 8;
    r->unet.in_channels = r->unet.out_channels = 8;
    r->vae_opts.steps = 700;
    /* base: the pooled caption in the time embedding (both papers condition globally beside
     * cross-attention); lr 1e-3. Steps per design below (each base <= 45 min on 2 cores) */
    r->unet.text_pool = 1;
    r->unet_opts.steps = 1500;
    r->unet_opts.lr = 1e-3;
    r->unet_opts.lr_min = 1e-4;
    /* the CLIP stage (Make-A-Video's CLIP, Imagen's T5: a text encoder trained beforehand and
     * frozen): 600 steps of 64 clips at lr 1e-3, the text encoder frozen in the base */
    r->has_clip = 1;
    r->unet_opts.freeze_text = 1;
    r->has_tsr = r->has_ssr = 1;
    static const int tc[2] = {48, 96}, ta[2] = {1, 0};
    r->tsr = kn_unet3d_config_small(2, tc, ta, 16, 16, 64);
    r->tsr.in_channels = r->tsr.out_channels = 8;
    r->tsr.cond_channels = 9;
    r->tsr.fps_cond = 1;
    r->tsr_opts = r->unet_opts;
    r->tsr_opts.steps = 900;
    r->tsr_opts.lr = 5e-4;
    r->tsr_opts.warmup = 50;
    r->tsr_opts.seed = 3;
    r->tsr_so = (kn_sr_opts){.kind = KN_SR_TEMPORAL, .nfps = 2, .fps = {8, 16}, .nskips = 3, .skips = {2, 2, 4},
                             .p_extrapolate = 0.2f};
    r->tsr_data = (kn_train_data){.size = 64, .frames = 16, .fps = 16, .batch = 2};
    static const int sc[2] = {32, 64}, sa[2] = {0, 1};
    r->ssr = kn_unet3d_config_small(2, sc, sa, 16, 16, 64);
    r->ssr.in_channels = r->ssr.out_channels = 8;
    r->ssr.cond_channels = 8;
    r->ssr_opts = r->tsr_opts;
    r->ssr_opts.steps = 3000;
    r->ssr_opts.seed = 4;
    r->ssr_so = (kn_sr_opts){.kind = KN_SR_SPATIAL, .scale = 2};
    r->ssr_data = (kn_train_data){.size = 128, .frames = 2, .fps = 16, .batch = 2};
    r->cascade = (kn_cascade_info){.tsr_factor = 2, .tsr_times = 2, .tsr_steps = 20, .tsr_guidance = 1.0f,
                                   .ssr_scale = 2, .ssr_steps = 20, .ssr_chunk = 8, .ssr_guidance = 1.0f};
}

/* Make-A-Video: eps objective; base with temporal attention and fps conditioning; the
 * interpolation network with masked frames + mask channel and variable skips; the spatial SR
 * spatial-only (no temporal layers) with the same noise for every frame. */
static void shapes_mav(kn_recipe *r) {
    cascade_common(r);
    r->name = "shapes-mav";
    r->about = "Make-A-Video cascade: VAE, base (text-to-image, then inflated to video, fps-conditioned), frame "
               "interpolation x2 x2, spatial-only SR x2";
    r->unet.fps_cond = 1;
    /* 500 text-to-image steps of 16 single frames (~0.8 s each), then 1000 video steps (~2.25 s):
     * the second run's 700 video steps after 1000 image steps left the frames incoherent (each
     * frame its own object: the temporal layers had barely moved from the identity) */
    r->unet_opts.image_steps = 500;
    r->unet_opts.image_batch = 16;
    r->ssr.spatial_only = 1;
    /* the SR stages predict the clean latents (x0): their output is pinned down by the cond, and
     * an eps network's x0 estimate at high noise is its error amplified ~12x (measured in
     * tests/test_cascade_consistency.c: the same net after the same steps is 80x closer with x0) */
    r->tsr_opts.objective = r->ssr_opts.objective = KN_PRED_SAMPLE;
    r->ssr_data.frames = 1;
    r->ssr_data.batch = 4;
    r->cascade.ssr_same_noise = 1;
}

/* Imagen Video: v-parameterisation everywhere; base with temporal attention and joint
 * image-video training (a quarter of the samples are still frames with the temporal layers
 * masked); temporal and spatial SR with temporal convolutions only; conditioning augmentation on
 * the spatial SR's input. */
static void shapes_imagen(kn_recipe *r) {
    cascade_common(r);
    r->name = "shapes-imagen";
    r->about = "Imagen Video cascade: VAE, base (v-prediction, joint image-video), TSR x2 x2, SSR x2 with "
               "conditioning augmentation";
    r->data.nfps = 0;
    r->data.image_fraction = 0.25f;
    r->unet_opts.steps = 1200; /* video steps throughout (~2.25 s): <= 45 min */
    r->unet_opts.objective = r->tsr_opts.objective = r->ssr_opts.objective = KN_PRED_V;
    r->tsr.temporal_attention = 0;
    r->ssr.temporal_attention = 0;
    r->ssr.noise_aug_cond = 1;
    r->ssr_so.noise_aug_max = 300;
    r->cascade.ssr_noise_aug = 100;
    r->sched.prediction_type = KN_PRED_V;
}

/* smoke-cascade: every stage of the cascade, tiny, for tests (a minute or two on 2 cores). */
static void smoke_cascade(kn_recipe *r) {
    shapes_mav(r);
    r->name = "smoke-cascade";
    r->about = "tiny cascade: every stage for a few steps (tests the machinery)";
    kn_recipe s;
    smoke(&s);
    r->vae = s.vae;
    r->vae_opts = s.vae_opts;
    r->text = s.text;
    r->unet = s.unet;
    r->unet.fps_cond = 1;
    r->unet.text_pool = 1;
    r->unet_opts = s.unet_opts;
    r->unet_opts.steps = 40;
    r->unet_opts.image_steps = 10;
    r->unet_opts.image_batch = 4;
    r->data = (kn_train_data){.size = 32, .frames = 4, .fps = 4, .batch = 2, .vae_frames = 4, .nfps = 2,
                              .fps_choices = {4, 8}};
    static const int c[2] = {16, 32}, a[2] = {1, 0};
    kn_unet3d_config t = kn_unet3d_config_small(2, c, a, 8, 8, 32);
    int so = r->ssr.spatial_only;
    r->tsr = t;
    r->tsr.cond_channels = 5;
    r->tsr.fps_cond = 1;
    r->ssr = t;
    r->ssr.cond_channels = 4;
    r->ssr.spatial_only = so;
    r->tsr_opts = r->unet_opts;
    r->tsr_opts.steps = 30;
    r->tsr_opts.seed = 3;
    r->ssr_opts = r->tsr_opts;
    r->ssr_opts.seed = 4;
    r->tsr_data = (kn_train_data){.size = 32, .frames = 8, .fps = 16, .batch = 2};
    r->ssr_data = (kn_train_data){.size = 64, .frames = 1, .fps = 16, .batch = 2};
    r->cascade.tsr_steps = r->cascade.ssr_steps = 4;
    /* a tiny CLIP stage: 4 steps of 4 clips, a narrow tower on the 32 px clips */
    r->unet_opts.freeze_text = 1;
    r->clip.width = 8;
    r->clip.embed_dim = 16;
    r->clip_opts.steps = 4;
    r->clip_opts.warmup = 1;
    r->clip_batch = 4;
    r->clip_held = 8;
}

static kn_status get(const char *name, kn_recipe *r) {
    if (!strcmp(name, "smoke")) {
        smoke(r);
        return KN_OK;
    }
    if (!strcmp(name, "tiny")) {
        tiny(r);
        return KN_OK;
    }
    if (!strcmp(name, "smoke-cascade")) {
        smoke_cascade(r);
        return KN_OK;
    }
    if (!strcmp(name, "shapes-mav")) {
        shapes_mav(r);
        return KN_OK;
    }
    if (!strcmp(name, "shapes-imagen")) {
        shapes_imagen(r);
        return KN_OK;
    }
    return kn_fail(KN_ERR_ARG, "unknown recipe '%s' (known: smoke, tiny, smoke-cascade, shapes-mav, shapes-imagen)",
                   name);
}

kn_status kn_recipe_get(const char *name, kn_recipe *r) {
    memset(r, 0, sizeof *r);
    KN_TRY(get(name, r));
    r->clip.frames = r->data.frames;
    r->clip.text_dim = r->text.hidden_size;
    return KN_OK;
}
