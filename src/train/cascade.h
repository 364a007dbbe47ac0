/* cascade.h — training the super-resolution stages of the kinema cascade on Shapes-T2V, on top of
 * a trained latent autoencoder and text encoder (both frozen here):
 *
 *   temporal SR ("tsr", Make-A-Video's frame interpolation and extrapolation network F_i):
 *     a clip of d->frames latent frames at a target rate fps (drawn from so->fps, rendered at
 *     that rate per SHAPES.md), a mask m over frames (1 = known):
 *       interpolation by k (k drawn from so->skips): m[t] = (t % k == 0), the variable frame skip;
 *       extrapolation (probability so->p_extrapolate): m[t] = (t < frames / 2);
 *     the UNet input is x_t, its cond (cond_channels = C + 1) is [x0 * m, m] and its fps
 *     conditioning is the target rate. Loss on every frame.
 *   spatial SR ("ssr", Imagen Video's SSR / Make-A-Video's SR): x0 = latents of the clip rendered
 *     at d->size; the low-resolution clip is the same clip area-downsampled by so->scale in
 *     pixels, encoded, bilinearly upsampled back to x0's latent size: that is the cond
 *     (cond_channels = C). With so->noise_aug_max > 0 (Imagen Video's conditioning augmentation)
 *     the cond is noised to a level s ~ U[0, noise_aug_max) of the training schedule,
 *     cond = sqrt(ac_s) cond + sqrt(1 - ac_s) n, and s is the UNet's noise_aug input.
 *
 * Both use the objective, min-SNR weighting and caption dropout of o, and the text encoder's
 * embeddings of the caption (the encoder is not trained here). Every random draw is a Philox
 * stream indexed by (o->seed, sample index) like trainer.c, so resume and data parallelism are
 * exact. */
#ifndef KN_CASCADE_TRAIN_H
#define KN_CASCADE_TRAIN_H

#include "train/trainer.h"

typedef enum { KN_SR_TEMPORAL = 0, KN_SR_SPATIAL = 1 } kn_sr_kind;

#define KN_SR_MAX_CHOICES 4

typedef struct kn_sr_opts {
    kn_sr_kind kind;
    /* temporal */
    int nfps;
    int fps[KN_SR_MAX_CHOICES];   /* target rates drawn uniformly, e.g. {8, 16} */
    int nskips;
    int skips[KN_SR_MAX_CHOICES]; /* interpolation factors drawn uniformly, e.g. {2, 2, 4} */
    float p_extrapolate;          /* probability of an extrapolation mask instead */
    /* spatial */
    int scale;                    /* 2: the low-resolution clip is d->size / scale pixels */
    int noise_aug_max;            /* 0: no conditioning augmentation; else levels [0, max) of 1000 */
} kn_sr_opts;

/* Runs steps [s->step, o->steps) of one SR stage. sr's config must match so (cond_channels,
 * fps_cond for temporal, noise_aug_cond iff noise_aug_max > 0). d->size, d->frames: the
 * high-resolution / high-rate training window; d->fps is ignored for the temporal stage. */
kn_status kn_train_sr(kn_unet3d *sr, const kn_sr_opts *so, const kn_clip_text *text, const kn_vae *vae,
                      const kn_sched_config *sched, kn_stage_state *s, const kn_train_opts *o,
                      const kn_train_data *d, kn_tokenize_fn tok, void *tok_user, kn_arena *A,
                      kn_train_progress_fn progress, void *user);

#endif
