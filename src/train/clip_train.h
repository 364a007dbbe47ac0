/* clip_train.h — the CLIP stage: contrastive pretraining of the cascade's text encoder against a
 * small video tower, from scratch, before the base UNet stage (which then keeps the text encoder
 * frozen: kn_train_opts.freeze_text). Both papers the cascade follows condition on a text encoder
 * trained beforehand and frozen (Make-A-Video: CLIP; Imagen: T5); trained by the diffusion loss
 * alone our small encoder barely separated captions.
 *
 * One step (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
 * Supervision", Figure 3's pseudo-code):
 *   text:  ids (B, L) -> CLIP text encoder -> pooled (B, D): the hidden state at each row's first
 *          EOS token (CLIPTextModel's pooler_output) -> text_proj (no bias) -> u (B, E);
 *   video: the clip's pixels (3, T, S, S) area-downsampled to (3, T, s, s) in [0, 1], frames on
 *          channels (3T, s, s) -> conv3x3 s1 -> SiLU -> conv3x3 s2 -> SiLU -> conv3x3 s2 -> SiLU
 *          -> mean over positions -> visual_proj (no bias) -> v (B, E);
 *   head:  û = u/|u|, v̂ = v/|v|, logits = exp(logit_scale) û v̂ᵀ (B, B), loss = (CE(logits, I)
 *          + CE(logitsᵀ, I)) / 2 (symmetric InfoNCE), logit_scale learned from log(1/0.07) and
 *          clamped to log(100) as in CLIP.
 * The head (normalisation, similarities, loss) is differentiated by hand (kn_clip_infonce): its
 * gradient w.r.t. u and v is seeded into the tape, which carries it through the projections, the
 * tower and the text encoder. The tower's parameters (and text_proj, logit_scale) live in their
 * own table named "clip_tower.*": kept in training checkpoints, never exported. */
#ifndef KN_CLIP_TRAIN_H
#define KN_CLIP_TRAIN_H

#include "train/trainer.h"

typedef struct kn_clip_tower_config {
    int frames;             /* T of the clips it sees (3T input channels) */
    int size;               /* s: the clips are area-downsampled to s x s (32) */
    int width;              /* channels of the first conv; the two strided convs have 2x width */
    int text_dim;           /* hidden size of the text encoder (text_proj's input) */
    int embed_dim;          /* E */
    float init_temperature; /* 0.07: logit_scale starts at log(1/0.07) */
    int learn_temperature;  /* 0: logit_scale stays at its init */
} kn_clip_tower_config;

typedef struct kn_clip_tower {
    kn_clip_tower_config cfg;
    kn_params P;
    kn_conv_l conv[3];
    kn_linear_l visual_proj, text_proj;
    kn_var *logit_scale; /* (1) */
} kn_clip_tower;

/* NULL + message on a bad config. Parameters allocated, zero; call kn_clip_tower_init. */
kn_clip_tower *kn_clip_tower_new(const kn_clip_tower_config *cfg);
void kn_clip_tower_free(kn_clip_tower *t);
/* kn_params_init_default(seed), then logit_scale = log(1 / init_temperature). */
void kn_clip_tower_init(kn_clip_tower *t, uint64_t seed);

/* x (B, 3T, s, s) -> v (B, E), unnormalised. */
kn_var *kn_clip_tower_video(kn_ctx *c, const kn_clip_tower *t, kn_var *x);

/* Writes clip (3, T, S, S) in [-1, 1] area-downsampled to (3T, s, s) and mapped to [0, 1] into
 * out (S a multiple of s). */
kn_status kn_clip_downsample(const float *clip, int64_t T, int64_t S, int64_t s, float *out);

/* The head on u, v (B, E) each (rows unnormalised) at scale = exp(logit_scale): *loss, and when
 * du/dv are not NULL the gradients d loss / d u, d loss / d v (B, E) and *dlogit_scale (d loss /
 * d logit_scale; may be NULL). Serial, double accumulation: thread-independent. Fails on a zero
 * row (its direction is undefined). */
kn_status kn_clip_infonce(const float *u, const float *v, int64_t B, int64_t E, float logit_scale, double *loss,
                          float *du, float *dv, float *dlogit_scale);

/* Runs CLIP steps [s_text->step, o->steps) on d->batch clips per step (d as the base stage's
 * data: the same draw machinery, kn_train_draw_clip; still-image draws are turned off, a motion
 * caption on a still frame would be a false pair). s_text (over text->P) and s_tower (over
 * tower->P) share the step counter of s_text. The stage's progress tag is "clip". */
kn_status kn_train_clip(kn_clip_text *text, kn_clip_tower *tower, kn_stage_state *s_text, kn_stage_state *s_tower,
                        const kn_train_opts *o, const kn_train_data *d, kn_tokenize_fn tok, void *tok_user,
                        kn_arena *A, kn_train_progress_fn progress, void *user);

/* Top-1 caption -> clip retrieval on a fixed held batch of n clips (drawn from a stream of seed
 * that training never uses): for each caption, the clip of highest cosine similarity; it counts
 * as right when that clip's caption is the same text (identical captions cannot be told apart).
 * *acc in [0, 1]; chance is about 1/n. */
kn_status kn_clip_retrieval(const kn_clip_text *text, const kn_clip_tower *tower, const kn_train_data *d,
                            uint64_t seed, int n, kn_tokenize_fn tok, void *tok_user, kn_arena *A, double *acc);

#endif
