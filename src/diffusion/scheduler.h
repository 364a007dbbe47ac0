/* scheduler.h — noise schedules and samplers matching diffusers 0.25 (DDIM, DDPM, Euler, Euler
 * ancestral, DPM-Solver++ 2M, with Karras sigmas as an option).
 *
 * Use, as the diffusers pipelines do:
 *
 *     kn_scheduler s;
 *     kn_sched_init(&s, &cfg, KN_SCHED_DDIM);
 *     kn_sched_set_timesteps(&s, steps);
 *     x *= s.init_noise_sigma;
 *     for (int i = 0; i < s.num_steps; i++) {
 *         kn_sched_scale_model_input(&s, i, x, xin, n);      // what the model sees
 *         model(xin, s.timesteps[i]) -> eps
 *         kn_sched_step(&s, i, eps, x, n, noise_or_NULL);    // x <- x_{t-1}
 *     }
 *
 * All the arithmetic on samples is float32 elementwise, as torch does; schedule constants are
 * computed in float32 where torch computes them in float32 (betas, alphas_cumprod) and in float64
 * where diffusers uses numpy (sigma interpolation). */
#ifndef KN_SCHEDULER_H
#define KN_SCHEDULER_H

#include "core/core.h"

typedef enum { KN_SCHED_DDIM = 0, KN_SCHED_DDPM, KN_SCHED_EULER, KN_SCHED_EULER_A, KN_SCHED_DPMPP_2M } kn_sched_kind;
typedef enum { KN_PRED_EPS = 0, KN_PRED_V, KN_PRED_SAMPLE } kn_pred_type;
typedef enum { KN_SPACING_LEADING = 0, KN_SPACING_LINSPACE, KN_SPACING_TRAILING } kn_spacing;
typedef enum { KN_BETA_LINEAR = 0, KN_BETA_SCALED_LINEAR, KN_BETA_COSINE } kn_beta_schedule;

typedef struct kn_sched_config {
    int num_train_timesteps;      /* 1000 */
    float beta_start, beta_end;   /* 0.00085, 0.012 (ModelScope) */
    kn_beta_schedule beta_schedule;
    kn_pred_type prediction_type;
    kn_spacing timestep_spacing;
    int steps_offset;             /* 1 for ModelScope */
    int set_alpha_to_one;         /* DDIM: final alpha 1 or alphas_cumprod[0] */
    int clip_sample;
    float clip_sample_range;
    int use_karras_sigmas;        /* Euler / DPM++ */
    int solver_order;             /* DPM++: 2 */
    int lower_order_final;        /* DPM++: 1 */
    int euler_at_final;           /* DPM++: 0 */
    float eta;                    /* DDIM */
} kn_sched_config;

/* The ModelScope text-to-video scheduler config (DDIMScheduler in its model_index). */
kn_sched_config kn_sched_config_modelscope(void);

#define KN_SCHED_MAX_TRAIN 4000
#define KN_SCHED_MAX_STEPS 1000

typedef struct kn_scheduler {
    kn_sched_kind kind;
    kn_sched_config cfg;
    float alphas_cumprod[KN_SCHED_MAX_TRAIN];
    float train_sigmas[KN_SCHED_MAX_TRAIN]; /* ((1 - ac) / ac)^0.5 per training step */
    int num_steps;
    double timesteps[KN_SCHED_MAX_STEPS];    /* what the model is given (integers for DDIM/DDPM/DPM) */
    double sigmas[KN_SCHED_MAX_STEPS + 1];   /* Euler / DPM++ */
    float init_noise_sigma;
    /* multistep state (DPM++): previous converted outputs */
    float *hist[2];
    int64_t hist_n;
    int lower_order_nums;
    uint64_t noise_seed;                     /* for Euler ancestral / DDPM when no noise is given */
    uint64_t noise_offset;
} kn_scheduler;

kn_status kn_sched_init(kn_scheduler *s, const kn_sched_config *cfg, kn_sched_kind kind);
void kn_sched_free(kn_scheduler *s);
kn_status kn_sched_set_timesteps(kn_scheduler *s, int num_steps);
/* xin = the sample scaled for the model at step i (Euler: x / sqrt(sigma^2 + 1); others: x). */
void kn_sched_scale_model_input(const kn_scheduler *s, int i, const float *x, float *xin, int64_t n);
/* One step: x <- previous sample. noise (n values) is used by DDPM (t > 0) and Euler ancestral;
 * NULL draws it from Philox(noise_seed, noise_offset...) (advancing noise_offset). */
kn_status kn_sched_step(kn_scheduler *s, int i, const float *model_output, float *x, int64_t n, const float *noise);
/* Forward process for training and img2img: x_t = sqrt(ac[t]) x0 + sqrt(1 - ac[t]) noise. */
void kn_sched_add_noise(const kn_scheduler *s, int t, const float *x0, const float *noise, float *xt, int64_t n);

const char *kn_sched_kind_name(kn_sched_kind k);
/* "ddim", "ddpm", "euler", "euler_a", "dpmpp_2m" (also diffusers class names); -1 if unknown. */
int kn_sched_kind_parse(const char *name);

#endif
