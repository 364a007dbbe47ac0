/* test_scheduler.c — schedulers against the diffusers 0.25 traces in shared/fixtures, and
 * convergence checks for the samplers that have no trace (Euler ancestral, Karras sigmas). */
#include "kt.h"

#include "diffusion/scheduler.h"
#include "io/safetensors.h"
#include "io/scheduler_config.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

static const float *get(kn_safetensors *st, const char *name, int64_t *n) {
    kn_tensor t;
    if (kn_st_get(st, name, &t) != KN_OK || t.dtype != KN_F32) return NULL;
    if (n) *n = kn_tensor_numel(&t);
    return t.data;
}

/* Runs one trace: returns the number of failed comparisons. */
static void run_case(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    char *js = kt_slurp(path, NULL);
    KT_CHECKF(js != NULL, "cannot read %s", path);
    if (!js) return;
    cJSON *o = cJSON_Parse(js);
    KT_CHECKF(o != NULL, "%s: bad JSON", path);
    if (!o) { free(js); return; }
    cJSON *cfgj = cJSON_GetObjectItem(o, "config");
    char *cfgtext = cJSON_PrintUnformatted(cfgj);
    kn_sched_config cfg;
    int kind = -1;
    KT_OK(kn_sched_config_parse(cfgtext, name, &cfg, &kind));
    free(cfgtext);
    int N = cJSON_GetObjectItem(o, "num_inference_steps")->valueint;
    kn_scheduler s;
    KT_OK(kn_sched_init(&s, &cfg, (kn_sched_kind)kind));
    KT_OK(kn_sched_set_timesteps(&s, N));
    cJSON *ts = cJSON_GetObjectItem(o, "timesteps");
    KT_CHECK(cJSON_GetArraySize(ts) == N);
    for (int i = 0; i < N; i++)
        KT_CHECKF(fabs(s.timesteps[i] - cJSON_GetArrayItem(ts, i)->valuedouble) < 1e-3,
                  "%s: timestep %d = %g, want %g", name, i, s.timesteps[i], cJSON_GetArrayItem(ts, i)->valuedouble);
    cJSON *sg = cJSON_GetObjectItem(o, "sigmas");
    if (cJSON_IsArray(sg))
        for (int i = 0; i < cJSON_GetArraySize(sg); i++)
            KT_CHECKF(fabs(s.sigmas[i] - cJSON_GetArrayItem(sg, i)->valuedouble) <= 2e-6 * (1 + s.sigmas[i]),
                      "%s: sigma %d = %.9g, want %.9g", name, i, s.sigmas[i], cJSON_GetArrayItem(sg, i)->valuedouble);
    KT_NEAR(s.init_noise_sigma, cJSON_GetObjectItem(o, "init_noise_sigma")->valuedouble, 1e-5);

    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    kn_safetensors *st = kn_st_open(path);
    KT_CHECKF(st != NULL, "%s", kn_last_error());
    if (!st) { cJSON_Delete(o); free(js); kn_sched_free(&s); return; }
    int64_t n = 0, na = 0;
    const float *ac = get(st, "alphas_cumprod", &na);
    KT_CHECK(ac && na == cfg.num_train_timesteps);
    for (int64_t i = 0; ac && i < na; i++)
        /* torch's vectorised float32 linspace rounds some betas differently: ~1e-6 relative */
        KT_CHECKF(fabsf(ac[i] - s.alphas_cumprod[i]) <= 1e-6f * ac[i] + 1e-9f, "%s: alphas_cumprod[%lld] %.9g != %.9g",
                  name, (long long)i, s.alphas_cumprod[i], ac[i]);
    const float *x0 = get(st, "initial_sample", &n), *E = get(st, "fixed_E", NULL);
    KT_CHECK(x0 && E);
    float *x = malloc((size_t)n * sizeof(float)), *xin = malloc((size_t)n * sizeof(float)),
          *mo = malloc((size_t)n * sizeof(float));
    memcpy(x, x0, (size_t)n * sizeof(float));
    for (int i = 0; i < N; i++) {
        char k[64];
        snprintf(k, sizeof k, "step%03d.sample_in", i);
        const float *r_in = get(st, k, NULL);
        KT_CHECKF(r_in != NULL, "%s: missing %s", name, k);
        if (!r_in) break;
        double tol_in = 1e-5 * (kt_max_abs(r_in, n) + 1e-30);
        KT_CHECKF(kt_max_abs_diff(x, r_in, n) <= tol_in, "%s step %d: sample_in off by %g", name, i, kt_max_abs_diff(x, r_in, n));
        kn_sched_scale_model_input(&s, i, x, xin, n);
        snprintf(k, sizeof k, "step%03d.model_input", i);
        const float *r_mi = get(st, k, NULL);
        KT_CHECK(r_mi && kt_max_abs_diff(xin, r_mi, n) <= 1e-5 * kt_max_abs(r_mi, n));
        for (int64_t j = 0; j < n; j++) mo[j] = 0.1f * xin[j] + E[j];
        snprintf(k, sizeof k, "step%03d.variance_noise", i);
        const float *noise = kn_st_find(st, k) >= 0 ? get(st, k, NULL) : NULL;
        KT_OK(kn_sched_step(&s, i, mo, x, n, noise));
        snprintf(k, sizeof k, "step%03d.prev_sample", i);
        const float *r_prev = get(st, k, NULL);
        KT_CHECK(r_prev != NULL);
        if (r_prev) {
            double d = kt_max_abs_diff(x, r_prev, n), tol = 1e-5 * kt_max_abs(r_prev, n);
            KT_CHECKF(d <= tol, "%s step %d: prev_sample max err %.3g > %.3g", name, i, d, tol);
            memcpy(x, r_prev, (size_t)n * sizeof(float)); /* follow the reference, one step at a time */
        }
    }
    free(x); free(xin); free(mo);
    kn_st_close(st);
    kn_sched_free(&s);
    cJSON_Delete(o);
    free(js);
}

KT_TEST(scheduler_matches_diffusers_traces) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/diffusers/schedulers", kt_fixtures());
    snprintf(path, sizeof path, "%s/index.json", dir);
    char *js = kt_slurp(path, NULL);
    KT_CHECKF(js != NULL, "cannot read %s", path);
    if (!js) return;
    cJSON *idx = cJSON_Parse(js);
    int count = 0;
    for (cJSON *it = idx ? idx->child : NULL; it; it = it->next) {
        run_case(dir, it->string);
        count++;
    }
    KT_CHECK(count >= 8);
    cJSON_Delete(idx);
    free(js);
}

/* With an exact model (it knows x0, so it predicts the right eps at every sigma), every sampler
 * must land on x0. Ancestral noise is re-predicted exactly too, so Euler-a converges as well. */
static void converge(kn_sched_kind kind, int karras, kn_pred_type pt, int steps, double tol) {
    kn_sched_config cfg = kn_sched_config_modelscope();
    cfg.prediction_type = pt;
    cfg.use_karras_sigmas = karras;
    if (kind != KN_SCHED_DDIM && kind != KN_SCHED_DDPM) cfg.timestep_spacing = KN_SPACING_LINSPACE;
    kn_scheduler s;
    KT_OK(kn_sched_init(&s, &cfg, kind));
    KT_OK(kn_sched_set_timesteps(&s, steps));
    enum { n = 64 };
    float x0[n], x[n], xin[n], out[n], elast[n];
    kn_rand_fill(x0, n, 1, 0);
    for (int j = 0; j < n; j++) x0[j] = 2 * x0[j] - 1;
    kn_randn_fill(x, n, 2, 0);
    for (int j = 0; j < n; j++) x[j] *= s.init_noise_sigma;
    s.noise_seed = 3;
    for (int i = 0; i < s.num_steps; i++) {
        kn_sched_scale_model_input(&s, i, x, xin, n);
        /* the sample the model sees is x_t = a x0 + b eps (a, b of this step) */
        double a, b;
        if (kind == KN_SCHED_EULER || kind == KN_SCHED_EULER_A || kind == KN_SCHED_DPMPP_2M) {
            double sg = s.sigmas[i];
            a = 1 / sqrt(sg * sg + 1); b = sg * a;
            if (kind == KN_SCHED_DPMPP_2M) { /* x is in VP scale already */ }
            else { /* Euler's x is in VE scale; xin = x / sqrt(s^2+1) is VP */ }
        } else {
            double ac = s.alphas_cumprod[(int)s.timesteps[i]];
            a = sqrt(ac); b = sqrt(1 - ac);
        }
        for (int j = 0; j < n; j++) {
            double e = (xin[j] - a * x0[j]) / b;
            elast[j] = (float)e;
            out[j] = (float)(pt == KN_PRED_EPS ? e : a * e - b * x0[j]);
        }
        KT_OK(kn_sched_step(&s, i, out, x, n, NULL));
    }
    /* DDIM (set_alpha_to_one False) and DPM++ (diffusers 0.25) stop at t = 0, not at sigma 0:
     * there the exact answer is a0 x0 + b0 eps with eps the last one the model saw. */
    double a0 = 1, b0 = 0;
    if (kind == KN_SCHED_DDIM) { a0 = sqrt(s.alphas_cumprod[0]); b0 = sqrt(1 - s.alphas_cumprod[0]); }
    if (kind == KN_SCHED_DPMPP_2M) { double sg = s.sigmas[s.num_steps]; a0 = 1 / sqrt(sg * sg + 1); b0 = sg * a0; }
    double err = 0;
    for (int j = 0; j < n; j++) {
        double want = a0 * x0[j] + b0 * elast[j];
        if (fabs(x[j] - want) > err) err = fabs(x[j] - want);
    }
    KT_CHECKF(err < tol, "%s karras=%d pred=%d steps=%d: |x - x0| = %g", kn_sched_kind_name(kind), karras, (int)pt,
              steps, err);
    kn_sched_free(&s);
}

KT_TEST(scheduler_samplers_converge_with_an_exact_model) {
    for (int pt = 0; pt < 2; pt++) {
        converge(KN_SCHED_DDIM, 0, (kn_pred_type)pt, 20, 1e-4);
        converge(KN_SCHED_EULER, 0, (kn_pred_type)pt, 20, 1e-3);
        converge(KN_SCHED_EULER_A, 0, (kn_pred_type)pt, 20, 1e-3);
        converge(KN_SCHED_EULER, 1, (kn_pred_type)pt, 20, 1e-3);
        converge(KN_SCHED_EULER_A, 1, (kn_pred_type)pt, 20, 1e-3);
        converge(KN_SCHED_DPMPP_2M, 0, (kn_pred_type)pt, 20, 1e-3);
        converge(KN_SCHED_DPMPP_2M, 1, (kn_pred_type)pt, 20, 1e-3);
    }
}

KT_TEST(scheduler_rejects_bad_configs) {
    kn_sched_config cfg;
    int kind;
    KT_CHECK(kn_sched_config_parse("[1,2]", "x.json", &cfg, &kind) == KN_ERR_FORMAT);
    KT_CHECK(kn_sched_config_parse("{\"_class_name\":\"PNDMScheduler\"}", "x.json", &cfg, &kind) == KN_ERR_UNSUPPORTED);
    KT_CHECK(strstr(kn_last_error(), "PNDMScheduler") != NULL);
    KT_CHECK(kn_sched_config_parse("{\"beta_schedule\":\"weird\"}", "x.json", &cfg, &kind) != KN_OK);
    KT_CHECK(kn_sched_config_parse("{\"beta_start\":\"a\"}", "x.json", &cfg, &kind) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "beta_start") != NULL);
    kn_scheduler s;
    cfg = kn_sched_config_modelscope();
    KT_OK(kn_sched_init(&s, &cfg, KN_SCHED_DDIM));
    KT_CHECK(kn_sched_set_timesteps(&s, 0) == KN_ERR_ARG);
    KT_CHECK(kn_sched_set_timesteps(&s, 5000) == KN_ERR_ARG);
}
