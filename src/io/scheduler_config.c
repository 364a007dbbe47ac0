/* scheduler_config.c — diffusers scheduler configs (scheduler/scheduler_config.json). */
#include "io/scheduler_config.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

static kn_status get_num(const cJSON *o, const char *key, const char *what, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it))
        return KN_OK; /* default stays */
    if (cJSON_IsNumber(it)) {
        *v = it->valuedouble;
        return KN_OK;
    }
    if (cJSON_IsBool(it)) {
        *v = cJSON_IsTrue(it);
        return KN_OK;
    }
    if (cJSON_IsString(it)) { /* non-finite values are written as strings ("-inf") */
        if (!strcmp(it->valuestring, "-inf")) { *v = -INFINITY; return KN_OK; }
        if (!strcmp(it->valuestring, "inf")) { *v = INFINITY; return KN_OK; }
    }
    return kn_fail(KN_ERR_FORMAT, "%s: '%s' must be a number", what, key);
}

static kn_status get_str(const cJSON *o, const char *key, const char *what, const char **v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it))
        return KN_OK;
    if (!cJSON_IsString(it))
        return kn_fail(KN_ERR_FORMAT, "%s: '%s' must be a string", what, key);
    *v = it->valuestring;
    return KN_OK;
}

kn_status kn_sched_config_parse(const char *json, const char *what, kn_sched_config *cfg, int *kind) {
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return kn_fail(KN_ERR_FORMAT, "%s: not a JSON object", what);
    }
    kn_sched_config c = kn_sched_config_modelscope();
    /* diffusers class defaults differ from ModelScope's: start from the library defaults */
    c.beta_start = 0.0001f;
    c.beta_end = 0.02f;
    c.beta_schedule = KN_BETA_LINEAR;
    c.steps_offset = 0;
    c.set_alpha_to_one = 1;
    c.clip_sample = 1;
    c.timestep_spacing = KN_SPACING_LEADING;
    const char *cls = NULL, *bs = NULL, *pt = NULL, *sp = NULL, *algo = NULL, *stype = NULL;
    double T = c.num_train_timesteps, b0 = c.beta_start, b1 = c.beta_end, off = c.steps_offset,
           a1 = c.set_alpha_to_one, clip = c.clip_sample, clipr = c.clip_sample_range, karras = 0, order = 2,
           lof = 1, eaf = 0, thr = 0, zsnr = 0;
    kn_status st = KN_OK;
    if ((st = get_str(o, "_class_name", what, &cls)) || (st = get_str(o, "beta_schedule", what, &bs)) ||
        (st = get_str(o, "prediction_type", what, &pt)) || (st = get_str(o, "timestep_spacing", what, &sp)) ||
        (st = get_str(o, "algorithm_type", what, &algo)) || (st = get_str(o, "solver_type", what, &stype)) ||
        (st = get_num(o, "num_train_timesteps", what, &T)) || (st = get_num(o, "beta_start", what, &b0)) ||
        (st = get_num(o, "beta_end", what, &b1)) || (st = get_num(o, "steps_offset", what, &off)) ||
        (st = get_num(o, "set_alpha_to_one", what, &a1)) || (st = get_num(o, "clip_sample", what, &clip)) ||
        (st = get_num(o, "clip_sample_range", what, &clipr)) ||
        (st = get_num(o, "use_karras_sigmas", what, &karras)) || (st = get_num(o, "solver_order", what, &order)) ||
        (st = get_num(o, "lower_order_final", what, &lof)) || (st = get_num(o, "euler_at_final", what, &eaf)) ||
        (st = get_num(o, "thresholding", what, &thr)) || (st = get_num(o, "rescale_betas_zero_snr", what, &zsnr)))
        goto done;
    *kind = cls ? kn_sched_kind_parse(cls) : -1;
    if (cls && *kind < 0) {
        st = kn_fail(KN_ERR_UNSUPPORTED, "%s: scheduler class '%s' is not supported (DDIM, DDPM, Euler, "
                     "EulerAncestral, DPMSolverMultistep are)", what, cls);
        goto done;
    }
    if (*kind == KN_SCHED_EULER || *kind == KN_SCHED_EULER_A || *kind == KN_SCHED_DPMPP_2M) {
        /* these classes default to linspace spacing and no clipping */
        if (!cJSON_GetObjectItemCaseSensitive(o, "timestep_spacing"))
            c.timestep_spacing = KN_SPACING_LINSPACE;
        if (!cJSON_GetObjectItemCaseSensitive(o, "clip_sample"))
            clip = 0;
    }
    if (thr != 0) { st = kn_fail(KN_ERR_UNSUPPORTED, "%s: thresholding is not supported", what); goto done; }
    if (zsnr != 0) { st = kn_fail(KN_ERR_UNSUPPORTED, "%s: rescale_betas_zero_snr is not supported", what); goto done; }
    if (algo && strcmp(algo, "dpmsolver++")) {
        st = kn_fail(KN_ERR_UNSUPPORTED, "%s: algorithm_type '%s' is not supported (dpmsolver++ is)", what, algo);
        goto done;
    }
    if (stype && strcmp(stype, "midpoint")) {
        st = kn_fail(KN_ERR_UNSUPPORTED, "%s: solver_type '%s' is not supported (midpoint is)", what, stype);
        goto done;
    }
    if (bs) {
        if (!strcmp(bs, "linear")) c.beta_schedule = KN_BETA_LINEAR;
        else if (!strcmp(bs, "scaled_linear")) c.beta_schedule = KN_BETA_SCALED_LINEAR;
        else if (!strcmp(bs, "squaredcos_cap_v2")) c.beta_schedule = KN_BETA_COSINE;
        else { st = kn_fail(KN_ERR_UNSUPPORTED, "%s: beta_schedule '%s' is not supported", what, bs); goto done; }
    }
    if (pt) {
        if (!strcmp(pt, "epsilon")) c.prediction_type = KN_PRED_EPS;
        else if (!strcmp(pt, "v_prediction")) c.prediction_type = KN_PRED_V;
        else if (!strcmp(pt, "sample")) c.prediction_type = KN_PRED_SAMPLE;
        else { st = kn_fail(KN_ERR_FORMAT, "%s: prediction_type '%s' is unknown", what, pt); goto done; }
    }
    if (sp) {
        if (!strcmp(sp, "leading")) c.timestep_spacing = KN_SPACING_LEADING;
        else if (!strcmp(sp, "linspace")) c.timestep_spacing = KN_SPACING_LINSPACE;
        else if (!strcmp(sp, "trailing")) c.timestep_spacing = KN_SPACING_TRAILING;
        else { st = kn_fail(KN_ERR_FORMAT, "%s: timestep_spacing '%s' is unknown", what, sp); goto done; }
    }
    if (T < 2 || T > KN_SCHED_MAX_TRAIN || T != floor(T)) {
        st = kn_fail(KN_ERR_FORMAT, "%s: num_train_timesteps %g is out of range", what, T);
        goto done;
    }
    c.num_train_timesteps = (int)T;
    c.beta_start = (float)b0;
    c.beta_end = (float)b1;
    c.steps_offset = (int)off;
    c.set_alpha_to_one = a1 != 0;
    c.clip_sample = clip != 0;
    c.clip_sample_range = (float)clipr;
    c.use_karras_sigmas = karras != 0;
    c.solver_order = (int)order;
    c.lower_order_final = lof != 0;
    c.euler_at_final = eaf != 0;
    if (c.solver_order < 1 || c.solver_order > 2) {
        st = kn_fail(KN_ERR_UNSUPPORTED, "%s: solver_order %d is not supported (1 or 2)", what, c.solver_order);
        goto done;
    }
    *cfg = c;
done:
    cJSON_Delete(o);
    return st;
}

kn_status kn_sched_config_load(const char *path, kn_sched_config *cfg, int *kind) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return kn_fail(KN_ERR_IO, "%s: cannot open", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) { free(buf); fclose(f); return kn_fail(KN_ERR_FORMAT, "%s: too large for a config", path); }
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return kn_fail(KN_ERR_NOMEM, "%s: out of memory", path); }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    fclose(f);
    buf[n] = '\0';
    kn_status st = kn_sched_config_parse(buf, path, cfg, kind);
    free(buf);
    return st;
}
