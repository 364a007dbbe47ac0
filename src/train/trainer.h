/* trainer.h — training a latent text-to-video model from scratch on Shapes-T2V:
 *
 *   stage "vae":  AutoencoderKL on single frames: L = MSE(decode(mean(x)), x) + kl * mean(mean²)
 *                 (a deterministic, lightly regularised autoencoder; the latent scaling factor is
 *                 set afterwards to 1 / std of the latents, as Stable Diffusion's 0.18215 was);
 *   stage "unet": CLIP text encoder and UNet3D trained jointly on the frozen VAE's latents with the
 *                 diffusion loss (eps / v / x0 objective, uniform or min-SNR weighting) and
 *                 conditioning dropout for classifier-free guidance; or the UNet alone on a text
 *                 encoder pretrained by the CLIP stage (train/clip_train.h) and frozen
 *                 (kn_train_opts.freeze_text, the cascade recipes).
 *
 * The trainer owns no files: captions are tokenised through a callback (the tokenizer lives in
 * io), and the caller saves checkpoints and exports the model folder. */
#ifndef KN_TRAINER_H
#define KN_TRAINER_H

#include "diffusion/scheduler.h"
#include "models/clip_text.h"
#include "models/unet3d.h"
#include "models/vae.h"
#include "train/optim.h"
#include "train/shapes.h"

/* Writes the padded ids (len 77 or the text model's max) of text into ids. */
typedef kn_status (*kn_tokenize_fn)(const char *text, int32_t *ids, int len, void *user);

/* A clip source: writes clip number `index` as floats (3, frames, size, size) in [-1, 1] and its
 * caption (NUL-terminated, at most cap bytes). Must be a pure function of index (resume and
 * data parallelism rely on it). NULL in kn_train_data means Shapes-T2V rendered on the fly. */
typedef kn_status (*kn_clip_source_fn)(uint64_t index, float *clip, char *caption, size_t cap, void *user);

typedef struct kn_train_data {
    int size;       /* pixels (square) */
    int frames;     /* frames per clip */
    int fps;        /* 16, 8 or 4 */
    int batch;      /* clips per step (the VAE stage uses batch * frames_per_clip_vae frames) */
    int vae_frames; /* frames drawn per clip in the VAE stage */
    kn_clip_source_fn source; /* NULL: Shapes-T2V (random split, held-out compositions excluded) */
    void *source_user;
    /* optional: 1 when clip `index` is a still image repeated (joint image-video training: the
     * UNet's temporal layers are the identity for it, so images train the spatial layers only) */
    int (*is_image)(uint64_t index, void *user);
    /* Shapes-T2V only: nfps > 0 draws each clip's frame rate from fps_choices (the UNet stage
     * then conditions on it when the UNet has fps_cond; Make-A-Video); image_fraction is the
     * probability that a clip is a still frame of a clip, trained as an image (Imagen Video's
     * joint image-video training) */
    int nfps;
    int fps_choices[4];
    float image_fraction;
    int images_only; /* internal: every Shapes clip is a still image (the image phase) */
} kn_train_data;

/* Called after backward, before the optimiser step, on each params table being trained: the hook
 * for data-parallel training (average the gradients over ranks). */
typedef kn_status (*kn_grad_sync_fn)(kn_params *P, void *user);

typedef struct kn_train_opts {
    int64_t steps;
    double lr, lr_min, weight_decay, grad_clip, ema_decay;
    int64_t warmup;
    double kl_weight;       /* VAE stage */
    kn_pred_type objective; /* UNet stage */
    double min_snr_gamma;   /* 0: uniform weighting */
    double cond_dropout;    /* probability of an empty caption */
    uint64_t seed;
    /* data parallelism: this process is rank `rank` of `world`; rank r draws samples
     * step*batch*world + r*batch + b, so `world` ranks of batch B see the same data as one rank of
     * batch world*B. */
    int rank, world;
    int checkpointing; /* recompute UNet block activations in backward (less memory, ~1.3x time) */
    /* UNet stage: the first image_steps steps train on still frames only, every temporal layer
     * masked: a text-to-image model, which the following video steps inflate (Make-A-Video; with
     * identity-initialised temporal layers the inflated model starts as the image model) */
    int64_t image_steps;
    int image_batch; /* images per step in that phase (each a single frame; 0: the clip batch) */
    int bf16;        /* matrix products of forward and backward in bf16 with f32 accumulation
                      * (AVX512-BF16); weights, gradients and optimiser state stay f32 */
    kn_grad_sync_fn grad_sync;
    void *grad_sync_user;
    /* UNet stage (CogVideo): train only the temporal layers. Every UNet parameter for which
     * kn_unet3d_temporal_param(name) is 0 is frozen in the optimiser (kn_adamw_freeze: bitwise
     * untouched, its gradient left out of the clipping norm) and the text encoder is not trained
     * (no backward through it, no optimiser or EMA step): both stay as loaded. */
    int freeze_spatial;
    /* UNet stage: the text encoder comes trained (the CLIP stage, train/clip_train.h, or --init)
     * and stays frozen: its forward runs off the tape, no backward through it, no optimiser or
     * EMA step (as under freeze_spatial, which implies it). Make-A-Video and Imagen both
     * condition on a text encoder trained beforehand and frozen. */
    int freeze_text;
} kn_train_opts;

/* Progress: called after every step with the loss. Return nonzero to stop early. */
typedef int (*kn_train_progress_fn)(const char *stage, int64_t step, int64_t steps, double loss, void *user);

typedef struct kn_stage_state {
    kn_adamw opt;
    kn_ema ema;
    int64_t step;
    int have_ema;
} kn_stage_state;

/* One stage's state over a params table (AdamW moments, EMA, step). */
kn_status kn_stage_state_init(kn_stage_state *s, kn_params *P, const kn_train_opts *o);
void kn_stage_state_free(kn_stage_state *s);

/* Pieces the stage trainers share (trainer.c, cascade.c):
 * a stream seed for draws of `kind` (S_* ids of each trainer) mixed from seed and step; */
uint64_t kn_train_mix(uint64_t seed, uint64_t kind, uint64_t step);
/* element i of the uniform Philox stream `seed`; */
float kn_train_uniform(uint64_t seed, uint64_t i);
/* the global index of sample b of this rank at a step (see kn_train_opts.rank / world); */
uint64_t kn_train_sample_index(const kn_train_opts *o, int64_t step, int64_t batch, int64_t b);
/* gradient sync, clipping, the AdamW step at the scheduled lr, the EMA update; */
kn_status kn_train_opt_step(kn_stage_state *s, kn_params *P, const kn_train_opts *o);
/* the forward process for one sample of n values at timestep t: xt = sqrt(ac) x0 + sqrt(1-ac) eps,
 * the objective's target (eps, v or x0); returns the min-SNR-gamma weight (1 when off). */
float kn_train_noise(const kn_scheduler *sc, int t, const kn_train_opts *o, const float *x0, const float *eps,
                     int64_t n, float *xt, float *target);

/* Training clip number `index` of d (Shapes-T2V through the recipe's fps and image draws, or
 * d->source) as floats (3, T, H, W) in [-1, 1] and its caption; rgb is scratch of
 * kn_shapes_clip_bytes({size, frames, fps}) bytes. A pure function of (d, seed, index). */
kn_status kn_train_draw_clip(const kn_train_data *d, uint64_t seed, uint64_t index, char *caption, size_t cap,
                             uint8_t *rgb, float *out);

/* the per-sample weighted MSE of pred against target (same shape), its gradient, and backward
 * through the tape of c; *loss receives the loss. */
kn_status kn_train_mse_backward(kn_ctx *c, kn_var *pred, const float *target, const float *wts, double *loss);

/* Runs VAE steps [s->step, o->steps); A is scratch (reset every step). */
kn_status kn_train_vae(kn_vae *vae, kn_stage_state *s, const kn_train_opts *o, const kn_train_data *d, kn_arena *A,
                       kn_train_progress_fn progress, void *user);

/* Latent scaling factor = 1 / std of the VAE's latent means over n random frames. */
kn_status kn_vae_measure_scale(kn_vae *vae, const kn_train_data *d, uint64_t seed, int n, kn_arena *A, float *scale);

/* Runs text-encoder + UNet steps [s->step, o->steps) with the frozen VAE. s_text and s_unet share
 * the step counter of s_unet. */
kn_status kn_train_unet(kn_unet3d *unet, kn_clip_text *text, const kn_vae *vae, const kn_sched_config *sched,
                        kn_stage_state *s_unet, kn_stage_state *s_text, const kn_train_opts *o, const kn_train_data *d,
                        kn_tokenize_fn tok, void *tok_user, kn_arena *A, kn_train_progress_fn progress, void *user);

#endif
