/* scheduler.c — diffusers 0.25 schedulers: DDIMScheduler.step, DDPMScheduler.step,
 * EulerDiscreteScheduler.step, EulerAncestralDiscreteScheduler.step and
 * DPMSolverMultistepScheduler (dpmsolver++, midpoint, order 2). Scalars are float32 as torch
 * computes them; interpolation of sigmas over timesteps is float64 as numpy computes it. */
#include "diffusion/scheduler.h"

#include <math.h>
#include <string.h>

kn_sched_config kn_sched_config_modelscope(void) {
    kn_sched_config c;
    memset(&c, 0, sizeof c);
    c.num_train_timesteps = 1000;
    c.beta_start = 0.00085f;
    c.beta_end = 0.012f;
    c.beta_schedule = KN_BETA_SCALED_LINEAR;
    c.prediction_type = KN_PRED_EPS;
    c.timestep_spacing = KN_SPACING_LEADING;
    c.steps_offset = 1;
    c.set_alpha_to_one = 0;
    c.clip_sample = 0;
    c.clip_sample_range = 1.0f;
    c.solver_order = 2;
    c.lower_order_final = 1;
    c.eta = 0.0f;
    return c;
}

static const char *kind_names[] = {"ddim", "ddpm", "euler", "euler_a", "dpmpp_2m"};

const char *kn_sched_kind_name(kn_sched_kind k) { return (unsigned)k < 5 ? kind_names[k] : "?"; }

int kn_sched_kind_parse(const char *name) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, kind_names[i]))
            return i;
    if (!strcmp(name, "DDIMScheduler")) return KN_SCHED_DDIM;
    if (!strcmp(name, "DDPMScheduler")) return KN_SCHED_DDPM;
    if (!strcmp(name, "EulerDiscreteScheduler")) return KN_SCHED_EULER;
    if (!strcmp(name, "EulerAncestralDiscreteScheduler")) return KN_SCHED_EULER_A;
    if (!strcmp(name, "DPMSolverMultistepScheduler")) return KN_SCHED_DPMPP_2M;
    if (!strcmp(name, "dpm++2m") || !strcmp(name, "dpmpp2m")) return KN_SCHED_DPMPP_2M;
    return -1;
}

/* torch.linspace(start, end, steps) in float32: the first half counts up from start, the second
 * half down from end (aten/native/cpu/RangeFactoriesKernel.cpp). */
static float torch_linspace_f32(float start, float end, int steps, int i) {
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    return i < halfway ? start + step * (float)i : end - step * (float)(steps - i - 1);
}

kn_status kn_sched_init(kn_scheduler *s, const kn_sched_config *cfg, kn_sched_kind kind) {
    memset(s, 0, sizeof *s);
    if ((unsigned)kind > KN_SCHED_DPMPP_2M)
        return kn_fail(KN_ERR_ARG, "scheduler: unknown kind %d", (int)kind);
    int T = cfg->num_train_timesteps;
    if (T < 2 || T > KN_SCHED_MAX_TRAIN)
        return kn_fail(KN_ERR_ARG, "scheduler: num_train_timesteps %d outside [2, %d]", T, KN_SCHED_MAX_TRAIN);
    if (!(cfg->beta_start > 0) || !(cfg->beta_end > 0) || cfg->beta_end >= 1 || cfg->beta_start >= 1)
        return kn_fail(KN_ERR_ARG, "scheduler: beta_start %g / beta_end %g must lie in (0, 1)", cfg->beta_start,
                       cfg->beta_end);
    s->kind = kind;
    s->cfg = *cfg;
    double prod = 1.0; /* torch.cumprod on CPU accumulates float32 in double */
    for (int i = 0; i < T; i++) {
        float beta;
        switch (cfg->beta_schedule) {
        case KN_BETA_LINEAR:
            beta = torch_linspace_f32(cfg->beta_start, cfg->beta_end, T, i);
            break;
        case KN_BETA_SCALED_LINEAR: {
            float b = torch_linspace_f32(sqrtf(cfg->beta_start), sqrtf(cfg->beta_end), T, i);
            beta = b * b;
            break;
        }
        default: { /* squaredcos_cap_v2 (betas_for_alpha_bar, cosine), in float64 then cast */
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double a1 = cos((t1 + 0.008) / 1.008 * M_PI / 2), a2 = cos((t2 + 0.008) / 1.008 * M_PI / 2);
            double b = 1 - (a2 * a2) / (a1 * a1);
            beta = (float)(b < 0.999 ? b : 0.999);
            break;
        }
        }
        prod *= (double)(1.0f - beta);
        float ac = (float)prod;
        s->alphas_cumprod[i] = ac;
        s->train_sigmas[i] = sqrtf((1.0f - ac) / ac);
    }
    s->init_noise_sigma = 1.0f;
    s->noise_seed = 0;
    return KN_OK;
}

void kn_sched_free(kn_scheduler *s) {
    free(s->hist[0]);
    free(s->hist[1]);
    s->hist[0] = s->hist[1] = NULL;
    s->hist_n = 0;
}

/* np.interp(x, arange(T), train_sigmas) in float64 */
static double interp_sigma(const kn_scheduler *s, double t) {
    int T = s->cfg.num_train_timesteps;
    if (t <= 0)
        return s->train_sigmas[0];
    if (t >= T - 1)
        return s->train_sigmas[T - 1];
    int i = (int)floor(t);
    double f = t - i;
    return (double)s->train_sigmas[i] + f * ((double)s->train_sigmas[i + 1] - (double)s->train_sigmas[i]);
}

/* EulerDiscreteScheduler._sigma_to_t: interpolation in log-sigma */
static double sigma_to_t(const kn_scheduler *s, double sigma) {
    int T = s->cfg.num_train_timesteps;
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    /* log_sigmas increase with t */
    int lo = 0;
    for (int i = 0; i < T - 1; i++)
        if (ls >= log((double)s->train_sigmas[i]))
            lo = i;
    int hi = lo + 1;
    double l = log((double)s->train_sigmas[lo]), h = log((double)s->train_sigmas[hi]);
    double w = (l - ls) / (l - h);
    if (w < 0) w = 0;
    if (w > 1) w = 1;
    return (1 - w) * lo + w * hi;
}

kn_status kn_sched_set_timesteps(kn_scheduler *s, int N) {
    int T = s->cfg.num_train_timesteps;
    if (N < 1 || N > KN_SCHED_MAX_STEPS || N > T)
        return kn_fail(KN_ERR_ARG, "scheduler: %d steps outside [1, %d]", N, KN_SCHED_MAX_STEPS < T ? KN_SCHED_MAX_STEPS : T);
    s->num_steps = N;
    s->lower_order_nums = 0;
    s->noise_offset = 0;
    kn_spacing sp = s->cfg.timestep_spacing;
    int off = s->cfg.steps_offset;
    int dpm = s->kind == KN_SCHED_DPMPP_2M, euler = s->kind == KN_SCHED_EULER || s->kind == KN_SCHED_EULER_A;
    for (int i = 0; i < N; i++) {
        double t;
        if (dpm) {
            /* DPMSolverMultistep: N+1 points, last dropped */
            if (sp == KN_SPACING_LINSPACE)
                t = nearbyint((double)(T - 1) * (N - i) / N);
            else if (sp == KN_SPACING_LEADING)
                t = (double)((N - i) * (T / (N + 1)) + off);
            else
                t = nearbyint(T - i * ((double)T / N)) - 1;
        } else if (sp == KN_SPACING_LINSPACE) {
            double v = (N == 1) ? 0 : (double)(T - 1) * (N - 1 - i) / (N - 1);
            t = euler ? v : nearbyint(v);
        } else if (sp == KN_SPACING_LEADING) {
            t = (double)((N - 1 - i) * (T / N) + off);
        } else {
            t = nearbyint(T - i * ((double)T / N)) - 1;
        }
        s->timesteps[i] = t;
    }
    if (euler || dpm) {
        for (int i = 0; i < N; i++)
            s->sigmas[i] = (float)interp_sigma(s, s->timesteps[i]);
        if (s->cfg.use_karras_sigmas) {
            /* Karras et al. (2022) eq. 5, rho = 7, between the schedule's end sigmas */
            double smin = s->sigmas[N - 1], smax = s->sigmas[0], rho = 7.0;
            double lo = pow(smin, 1 / rho), hi = pow(smax, 1 / rho);
            for (int i = 0; i < N; i++) {
                double r = N == 1 ? 0 : (double)i / (N - 1);
                s->sigmas[i] = (float)pow(hi + r * (lo - hi), rho);
                double tt = sigma_to_t(s, s->sigmas[i]);
                s->timesteps[i] = dpm ? nearbyint(tt) : tt;
            }
        }
        if (dpm)
            s->sigmas[N] = s->train_sigmas[0]; /* diffusers 0.25: sigma of t = 0, not 0 */
        else
            s->sigmas[N] = 0.0;
        if (euler) {
            /* Euler: timesteps are float32 */
            for (int i = 0; i < N; i++)
                s->timesteps[i] = (float)s->timesteps[i];
            float smax = (float)s->sigmas[0];
            s->init_noise_sigma = (sp == KN_SPACING_LINSPACE || sp == KN_SPACING_TRAILING)
                                      ? smax : sqrtf(smax * smax + 1.0f);
        } else {
            s->init_noise_sigma = 1.0f;
        }
    } else {
        s->init_noise_sigma = 1.0f;
    }
    return KN_OK;
}

void kn_sched_scale_model_input(const kn_scheduler *s, int i, const float *x, float *xin, int64_t n) {
    if (s->kind == KN_SCHED_EULER || s->kind == KN_SCHED_EULER_A) {
        float sigma = (float)s->sigmas[i];
        float d = sqrtf(sigma * sigma + 1.0f);
        for (int64_t j = 0; j < n; j++)
            xin[j] = x[j] / d;
    } else if (xin != x) {
        memcpy(xin, x, (size_t)n * sizeof(float));
    }
}

static int prev_timestep(const kn_scheduler *s, int i) {
    /* DDIM/DDPM: t - T // N (DDPM's previous_timestep with custom timesteps off) */
    return (int)s->timesteps[i] - s->cfg.num_train_timesteps / s->num_steps;
}

static const float *get_noise(kn_scheduler *s, const float *noise, float *scratch, int64_t n) {
    if (noise)
        return noise;
    kn_randn_fill(scratch, n, s->noise_seed, s->noise_offset);
    s->noise_offset += (uint64_t)n;
    return scratch;
}

static float clipf(float v, float r) { return v < -r ? -r : (v > r ? r : v); }

static kn_status ensure_hist(kn_scheduler *s, int64_t n) {
    if (s->hist_n == n && s->hist[0])
        return KN_OK;
    free(s->hist[0]);
    free(s->hist[1]);
    s->hist[0] = malloc((size_t)n * sizeof(float));
    s->hist[1] = malloc((size_t)n * sizeof(float));
    if (!s->hist[0] || !s->hist[1])
        return kn_fail(KN_ERR_NOMEM, "scheduler: cannot allocate %lld floats of history", (long long)n);
    s->hist_n = n;
    return KN_OK;
}

kn_status kn_sched_step(kn_scheduler *s, int i, const float *eps, float *x, int64_t n, const float *noise) {
    if (i < 0 || i >= s->num_steps)
        return kn_fail(KN_ERR_ARG, "scheduler: step %d outside [0, %d)", i, s->num_steps);
    kn_pred_type pt = s->cfg.prediction_type;
    switch (s->kind) {
    case KN_SCHED_DDIM: {
        int t = (int)s->timesteps[i], pt_ = prev_timestep(s, i);
        float a_t = s->alphas_cumprod[t];
        float a_p = pt_ >= 0 ? s->alphas_cumprod[pt_] : (s->cfg.set_alpha_to_one ? 1.0f : s->alphas_cumprod[0]);
        float b_t = 1.0f - a_t;
        float sa_t = sqrtf(a_t), sb_t = sqrtf(b_t), sa_p = sqrtf(a_p);
        float var = (1.0f - a_p) / (1.0f - a_t) * (1.0f - a_t / a_p);
        float std = s->cfg.eta * sqrtf(var);
        float dir = sqrtf(1.0f - a_p - std * std);
        int scratch_needed = std > 0;
        float *tmp = NULL;
        const float *nz = NULL;
        if (scratch_needed) {
            if (!noise) {
                tmp = malloc((size_t)n * sizeof(float));
                if (!tmp)
                    return kn_fail(KN_ERR_NOMEM, "scheduler: out of memory");
            }
            nz = get_noise(s, noise, tmp, n);
        }
        for (int64_t j = 0; j < n; j++) {
            float x0, e;
            if (pt == KN_PRED_EPS) {
                x0 = (x[j] - sb_t * eps[j]) / sa_t;
                e = eps[j];
            } else if (pt == KN_PRED_V) {
                x0 = sa_t * x[j] - sb_t * eps[j];
                e = sa_t * eps[j] + sb_t * x[j];
            } else {
                x0 = eps[j];
                e = (x[j] - sa_t * x0) / sb_t;
            }
            if (s->cfg.clip_sample) {
                x0 = clipf(x0, s->cfg.clip_sample_range);
                e = (x[j] - sa_t * x0) / sb_t;
            }
            float prev = sa_p * x0 + dir * e;
            if (nz)
                prev += std * nz[j];
            x[j] = prev;
        }
        free(tmp);
        return KN_OK;
    }
    case KN_SCHED_DDPM: {
        int t = (int)s->timesteps[i], pt_ = prev_timestep(s, i);
        float a_t = s->alphas_cumprod[t];
        float a_p = pt_ >= 0 ? s->alphas_cumprod[pt_] : 1.0f;
        float b_t = 1.0f - a_t, b_p = 1.0f - a_p;
        float cur_a = a_t / a_p, cur_b = 1.0f - cur_a;
        float c0 = sqrtf(a_p) * cur_b / b_t, c1 = sqrtf(cur_a) * b_p / b_t;
        float var = b_p / b_t * cur_b;
        if (var < 1e-20f)
            var = 1e-20f;
        float sd = sqrtf(var);
        float *tmp = NULL;
        const float *nz = NULL;
        if (t > 0) {
            if (!noise) {
                tmp = malloc((size_t)n * sizeof(float));
                if (!tmp)
                    return kn_fail(KN_ERR_NOMEM, "scheduler: out of memory");
            }
            nz = get_noise(s, noise, tmp, n);
        }
        float sa_t = sqrtf(a_t), sb_t = sqrtf(b_t);
        for (int64_t j = 0; j < n; j++) {
            float x0;
            if (pt == KN_PRED_EPS)
                x0 = (x[j] - sb_t * eps[j]) / sa_t;
            else if (pt == KN_PRED_V)
                x0 = sa_t * x[j] - sb_t * eps[j];
            else
                x0 = eps[j];
            if (s->cfg.clip_sample)
                x0 = clipf(x0, s->cfg.clip_sample_range);
            float prev = c0 * x0 + c1 * x[j];
            if (nz)
                prev += sd * nz[j];
            x[j] = prev;
        }
        free(tmp);
        return KN_OK;
    }
    case KN_SCHED_EULER:
    case KN_SCHED_EULER_A: {
        float sigma = (float)s->sigmas[i], sigma_next = (float)s->sigmas[i + 1];
        float s2 = sigma * sigma + 1.0f, ss = sqrtf(s2);
        if (s->kind == KN_SCHED_EULER) {
            float dt = sigma_next - sigma;
            for (int64_t j = 0; j < n; j++) {
                float x0;
                if (pt == KN_PRED_EPS)
                    x0 = x[j] - sigma * eps[j];
                else if (pt == KN_PRED_V)
                    x0 = eps[j] * (-sigma / ss) + x[j] / s2;
                else
                    x0 = eps[j];
                float d = (x[j] - x0) / sigma;
                x[j] = x[j] + d * dt;
            }
            return KN_OK;
        }
        float up = sqrtf(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
        float down = sqrtf(sigma_next * sigma_next - up * up);
        float dt = down - sigma;
        float *tmp = NULL;
        if (!noise) {
            tmp = malloc((size_t)n * sizeof(float));
            if (!tmp)
                return kn_fail(KN_ERR_NOMEM, "scheduler: out of memory");
        }
        const float *nz = get_noise(s, noise, tmp, n);
        for (int64_t j = 0; j < n; j++) {
            float x0;
            if (pt == KN_PRED_EPS)
                x0 = x[j] - sigma * eps[j];
            else if (pt == KN_PRED_V)
                x0 = eps[j] * (-sigma / ss) + x[j] / s2;
            else
                x0 = eps[j];
            float d = (x[j] - x0) / sigma;
            x[j] = x[j] + d * dt + nz[j] * up;
        }
        free(tmp);
        return KN_OK;
    }
    case KN_SCHED_DPMPP_2M: {
        KN_TRY(ensure_hist(s, n));
        float sig_s = (float)s->sigmas[i];
        float al_s = 1.0f / sqrtf(sig_s * sig_s + 1.0f), sg_s = sig_s * al_s;
        /* convert_model_output (dpmsolver++): the x0 prediction, stored newest in hist[0] */
        float *tmpp = s->hist[1];
        s->hist[1] = s->hist[0];
        s->hist[0] = tmpp;
        float *m0 = s->hist[0], *m1 = s->hist[1];
        for (int64_t j = 0; j < n; j++) {
            if (pt == KN_PRED_EPS)
                m0[j] = (x[j] - sg_s * eps[j]) / al_s;
            else if (pt == KN_PRED_V)
                m0[j] = al_s * x[j] - sg_s * eps[j];
            else
                m0[j] = eps[j];
        }
        int N = s->num_steps;
        int lof = i == N - 1 && (s->cfg.euler_at_final || (s->cfg.lower_order_final && N < 15));
        int los = i == N - 2 && s->cfg.lower_order_final && N < 15;
        float sig_t = (float)s->sigmas[i + 1];
        float al_t = 1.0f / sqrtf(sig_t * sig_t + 1.0f), sg_t = sig_t * al_t;
        float lam_t = logf(al_t) - logf(sg_t), lam_s = logf(al_s) - logf(sg_s);
        float h = lam_t - lam_s;
        float c_x = sg_t / sg_s, c_d = al_t * (expf(-h) - 1.0f);
        if (s->cfg.solver_order == 1 || s->lower_order_nums < 1 || lof) {
            for (int64_t j = 0; j < n; j++)
                x[j] = c_x * x[j] - c_d * m0[j];
        } else {
            (void)los; /* order 2 is the highest: "lower order second" changes nothing here */
            float sig_s1 = (float)s->sigmas[i - 1];
            float al_s1 = 1.0f / sqrtf(sig_s1 * sig_s1 + 1.0f), sg_s1 = sig_s1 * al_s1;
            float lam_s1 = logf(al_s1) - logf(sg_s1);
            float h0 = lam_s - lam_s1, r0 = h0 / h;
            for (int64_t j = 0; j < n; j++) {
                float D0 = m0[j], D1 = (1.0f / r0) * (m0[j] - m1[j]);
                x[j] = c_x * x[j] - c_d * D0 - 0.5f * c_d * D1;
            }
        }
        if (s->lower_order_nums < s->cfg.solver_order)
            s->lower_order_nums++;
        return KN_OK;
    }
    }
    return kn_fail(KN_ERR_INTERNAL, "scheduler: bad kind");
}

void kn_sched_add_noise(const kn_scheduler *s, int t, const float *x0, const float *noise, float *xt, int64_t n) {
    float a = s->alphas_cumprod[t];
    float sa = sqrtf(a), sb = sqrtf(1.0f - a);
    for (int64_t j = 0; j < n; j++)
        xt[j] = sa * x0[j] + sb * noise[j];
}
