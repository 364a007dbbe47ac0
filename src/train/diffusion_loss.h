/* diffusion_loss.h — the denoising training objective (DDPM, Ho et al. 2020; v-prediction,
 * Salimans & Ho 2022; min-SNR-γ weighting, Hang et al. 2023), as diffusers' train_text_to_image.py
 * computes it:
 *
 *     kn_diff_sample_timesteps(T, N, seed, off, t);          // t ~ U{0..T-1}, Philox
 *     kn_randn_fill(noise, numel, seed2, off2);
 *     kn_diff_add_noise(&sched, &x0, t, &noise, &xt);          // model input
 *     kn_diff_target(&sched, KN_PRED_V, &x0, t, &noise, &tgt);
 *     kn_diff_loss_weights(&sched, KN_PRED_V, t, N, 5.0f, w); // min-SNR-5 (gamma <= 0: uniform)
 *     pred = model(xt, t, cond);
 *     kn_diff_loss(&pred, &tgt, w, &loss, &dpred);             // mean_n w_n mean_i (pred - tgt)²
 *
 * Tensors are F32, contiguous, with the batch outermost: (N, ...). alphas_cumprod come from a
 * kn_scheduler (linear, scaled_linear, squaredcos_cap_v2). */
#ifndef KN_DIFFUSION_LOSS_H
#define KN_DIFFUSION_LOSS_H

#include "diffusion/scheduler.h"

/* t[n] = floor(u_n * T), u_n = Philox uniform (seed, offset + n); T = num_train_timesteps. */
kn_status kn_diff_sample_timesteps(int T, int64_t N, uint64_t seed, uint64_t offset, int32_t *t);

/* xt = sqrt(ac[t_n]) x0 + sqrt(1 - ac[t_n]) noise, per sample n. */
kn_status kn_diff_add_noise(const kn_scheduler *s, const kn_tensor *x0, const int32_t *t, const kn_tensor *noise,
                            kn_tensor *xt);
/* Target of the objective: KN_PRED_EPS -> noise; KN_PRED_V -> sqrt(ac) noise - sqrt(1-ac) x0;
 * KN_PRED_SAMPLE -> x0. */
kn_status kn_diff_target(const kn_scheduler *s, kn_pred_type obj, const kn_tensor *x0, const int32_t *t,
                         const kn_tensor *noise, kn_tensor *target);
/* Per-sample loss weights w[N]. gamma <= 0: all 1. Else min-SNR-γ with SNR = ac / (1 - ac):
 * eps: min(SNR, γ) / SNR;  v: min(SNR, γ) / (SNR + 1);  x0: min(SNR, γ). */
kn_status kn_diff_loss_weights(const kn_scheduler *s, kn_pred_type obj, const int32_t *t, int64_t N, float gamma,
                               float *w);
/* loss = (1/N) Σ_n w_n · mean over the sample's elements of (pred - target)² (w NULL: 1), each
 * sample summed in double in index order, samples added in order. dpred (may be NULL) is
 * overwritten with dloss/dpred = 2 w_n (pred - target) / numel. */
kn_status kn_diff_loss(const kn_tensor *pred, const kn_tensor *target, const float *w, double *loss, kn_tensor *dpred);

/* Classifier-free-guidance training: drop[n] = 1 with probability p (Philox uniform (seed,
 * offset + n) < p), else 0. */
kn_status kn_cond_dropout_mask(int64_t N, float p, uint64_t seed, uint64_t offset, uint8_t *drop);
/* cond (N, ...): sample n's condition replaced by `empty` (the shape of one sample) where drop[n]. */
kn_status kn_cond_dropout_apply(kn_tensor *cond, const kn_tensor *empty, const uint8_t *drop);

#endif
