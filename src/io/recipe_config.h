/* recipe_config.h — `kinema train --config FILE`: a JSON file that starts from a built-in recipe
 * and overrides its sizes and settings. Flat keys:
 *
 *   {"base": "tiny", "size": 32, "frames": 8, "fps": 4, "batch": 4,
 *    "vae_channels": [32, 64], "vae_steps": 300, "vae_lr": 1e-3,
 *    "text_width": 64, "text_layers": 2, "text_heads": 4,
 *    "unet_channels": [64, 96, 96], "unet_layers_per_block": 1, "unet_head_dim": 16,
 *    "unet_groups": 16, "unet_steps": 1500, "unet_lr": 5e-4, "objective": "eps",
 *    "min_snr_gamma": 5, "cond_dropout": 0.1, "ema_decay": 0.995, "freeze_spatial": false,
 *    "image_steps": 0, "image_batch": 0, "bf16": false,
 *    "clip": true, "clip_steps": 600, "clip_lr": 1e-3, "clip_batch": 64, "clip_embed": 64,
 *    "clip_temperature": 0.07, "clip_learn_temperature": true, "freeze_text": true}
 *
 * "freeze_spatial": true trains only the UNet's temporal layers (CogVideo; kn_train_opts), the
 * usual companion of `kinema train --init DIR` (start from a trained image or video model).
 *
 * "clip": true adds the CLIP stage (contrastive text-encoder pretraining, train/clip_train.h) before
 * the base, whose text encoder is then frozen ("freeze_text", default: true with a CLIP stage).
 *
 * Every key is optional except none; an unknown key is an error (a typo must not be ignored). */
#ifndef KN_RECIPE_CONFIG_H
#define KN_RECIPE_CONFIG_H

#include "train/recipes.h"

kn_status kn_recipe_load(const char *path, kn_recipe *r);

#endif
