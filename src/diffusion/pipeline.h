/* pipeline.h — diffusers TextToVideoSDPipeline and VideoToVideoSDPipeline (ModelScope
 * text-to-video, Zeroscope and its XL upscaler), on loaded models.
 *
 * The pipeline takes token ids (the io layer owns the tokenizer) and returns latents and the
 * decoded video as floats (B, 3, F, H, W) in about [-1, 1]. */
#ifndef KN_PIPELINE_H
#define KN_PIPELINE_H

#include "diffusion/scheduler.h"
#include "models/clip_text.h"
#include "models/taehv.h"
#include "models/taesd.h"
#include "models/unet3d.h"
#include "models/vae.h"

typedef struct kn_t2v_models {
    kn_unet3d *unet;
    kn_vae *vae;
    kn_clip_text *text;
    kn_sched_config sched;
    kn_sched_kind sched_kind;
} kn_t2v_models;

/* Called after each step with the UNet input (CFG batch [uncond, cond]), its output and the
 * latents after scheduler.step, all in (B', C, F, h, w); for tests and progress bars. */
typedef void (*kn_t2v_step_fn)(int step, int nsteps, double t, const kn_tensor *unet_in, const kn_tensor *unet_out,
                               const kn_tensor *latents, void *user);

typedef struct kn_t2v_params {
    int steps;              /* 25 */
    float guidance_scale;   /* 9; <= 1 disables classifier-free guidance */
    int frames;             /* 16 */
    int height, width;      /* pixels, multiples of the VAE factor */
    uint64_t seed;
    int clip_skip;          /* 0 */
    int decode_chunk;       /* frames decoded per VAE batch (memory bound); 0 = all at once */
    const float *init_latents;  /* (1, C, F, h, w) or NULL for Philox noise from seed */
    /* video-to-video: an encoded input video (1, C, F, h, w) noised up to `strength` */
    const float *init_video_latents;
    float strength;         /* 0..1, fraction of the schedule to run (video-to-video) */
    float fps;              /* frame-rate conditioning of UNets with fps_cond (required by them) */
    kn_t2v_step_fn on_step;
    void *user;
} kn_t2v_params;

kn_t2v_params kn_t2v_params_default(void);

/* Runs the text encoder on ids (B, L) (prompt, then optionally negative) into embeds (B, L, D). */
kn_status kn_t2v_encode_text(const kn_t2v_models *m, const int32_t *ids, int64_t B, int64_t L, int clip_skip,
                             float *embeds);

/* The denoising loop and the VAE decode. pos/neg embeds (1, L, D) (neg may be NULL: zeros are
 * not used; without neg, guidance needs the empty-prompt embeds from the caller).
 * latents_out (1, C, F, h, w) and video_out (1, 3, F, H, W) are caller buffers (either may be
 * NULL). A is the arena for activations (large; see kn_arena_new). */
kn_status kn_t2v_run(const kn_t2v_models *m, kn_arena *A, const float *pos, const float *neg, int64_t L,
                     const kn_t2v_params *p, float *latents_out, float *video_out);

/* VAE encode of a video (1, 3, F, H, W) in [-1, 1] to scaled latents (1, C, F, h, w) (the mean of
 * the posterior times scaling_factor, as diffusers' video-to-video pipeline with a fixed
 * generator-free mode), chunked over frames. */
kn_status kn_t2v_encode_video(const kn_t2v_models *m, kn_arena *A, const float *video, int64_t F, int64_t H,
                              int64_t W, int chunk, float *latents);

/* Decodes latents (1, C, F, h, w) (already in the diffusion space: divided by scaling_factor
 * inside) into video (1, 3, F, H, W), `chunk` frames at a time (0 = all). */
kn_status kn_t2v_decode(const kn_t2v_models *m, kn_arena *A, const float *latents, int64_t F, int64_t h,
                        int64_t w, int chunk, float *video);

/* Fast alternative decoders. latents (1, C, F, h, w) in the diffusion space (TAESD/TAEHV take
 * them as they are: their scaling factor is 1).
 * TAESD: frame by frame, `chunk` frames per batch -> video (1, 3, F, 8h, 8w) in [-1, 1].
 * TAEHV: the whole clip -> video (1, 3, 4F-3, 8h, 8w) in [-1, 1] (*Fo receives 4F-3). */
kn_status kn_t2v_decode_taesd(const kn_taesd *m, kn_arena *A, const float *latents, int64_t C, int64_t F, int64_t h,
                              int64_t w, int chunk, float *video);
kn_status kn_t2v_decode_taehv(const kn_taehv *m, kn_arena *A, const float *latents, int64_t C, int64_t F, int64_t h,
                              int64_t w, float *video, int64_t *Fo);

/* Estimated peak bytes of activations for a run (UNet at batch 2 with CFG, plus the VAE decode
 * of `decode_chunk` frames), not counting weights. */
size_t kn_t2v_estimate_bytes(const kn_t2v_models *m, const kn_t2v_params *p);

/* Video floats (1, 3, F, H, W) in [-1, 1] -> RGB8 frames (F, H, W, 3): diffusers' 'np' output,
 * ((v / 2 + 0.5).clamp(0, 1) * 255) truncated. */
void kn_video_to_rgb8(const float *video, int64_t F, int64_t H, int64_t W, uint8_t *rgb);

#endif
