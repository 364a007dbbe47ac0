/* diffusion_loss.c — forward process, objectives, min-SNR weights, weighted MSE, CFG dropout.
 * Work is split by sample (kn_parallel_for over n); each sample's sum runs in index order, so
 * the loss is the same for any thread count. */
#include "train/diffusion_loss.h"

#include <math.h>
#include <string.h>

static kn_status check_batch(const char *op, const char *what, const kn_tensor *x, const kn_tensor *ref) {
    char s1[96], s2[96];
    if (!x || !x->data)
        return kn_fail(KN_ERR_ARG, "%s: %s is missing", op, what);
    if (x->dtype != KN_F32 || !kn_tensor_is_contiguous(x) || x->ndim < 1)
        return kn_fail(KN_ERR_DTYPE, "%s: %s must be a contiguous F32 tensor (N, ...), got %s %s", op, what,
                       kn_dtype_name(x->dtype), kn_shape_str(x, s1, sizeof s1));
    if (ref && !kn_tensor_same_shape(x, ref))
        return kn_fail(KN_ERR_SHAPE, "%s: %s %s does not match %s", op, what, kn_shape_str(x, s1, sizeof s1),
                       kn_shape_str(ref, s2, sizeof s2));
    return KN_OK;
}

static kn_status check_t(const char *op, const kn_scheduler *s, const int32_t *t, int64_t N) {
    if (!s || !t)
        return kn_fail(KN_ERR_ARG, "%s: scheduler or timesteps missing", op);
    int T = s->cfg.num_train_timesteps;
    for (int64_t n = 0; n < N; n++)
        if (t[n] < 0 || t[n] >= T)
            return kn_fail(KN_ERR_ARG, "%s: timestep %d of sample %lld outside [0, %d)", op, (int)t[n], (long long)n, T);
    return KN_OK;
}

kn_status kn_diff_sample_timesteps(int T, int64_t N, uint64_t seed, uint64_t offset, int32_t *t) {
    if (T < 1 || N < 0 || !t)
        return kn_fail(KN_ERR_ARG, "sample_timesteps: T %d must be >= 1, N %lld >= 0, output given", T, (long long)N);
    for (int64_t n = 0; n < N; n++) {
        float u;
        kn_rand_fill(&u, 1, seed, offset + (uint64_t)n);
        int32_t v = (int32_t)floorf(u * (float)T);
        t[n] = v < 0 ? 0 : (v >= T ? T - 1 : v);
    }
    return KN_OK;
}

typedef struct {
    const float *a, *b;
    float *out;
    const float *ca, *cb; /* per-sample coefficients: out = ca[n] a + cb[n] b */
    int64_t per;
} mix_job;

static void mix_item(int64_t n, void *pp) {
    const mix_job *c = pp;
    const float *a = c->a + n * c->per, *b = c->b + n * c->per;
    float *o = c->out + n * c->per;
    float ka = c->ca[n], kb = c->cb[n];
    for (int64_t i = 0; i < c->per; i++)
        o[i] = ka * a[i] + kb * b[i];
}

#define COEF_STACK 256

static kn_status mix(const char *op, const kn_scheduler *s, const kn_tensor *x0, const int32_t *t,
                     const kn_tensor *noise, kn_tensor *out, kn_pred_type obj, int forward) {
    KN_TRY(check_batch(op, "x0", x0, NULL));
    KN_TRY(check_batch(op, "noise", noise, x0));
    KN_TRY(check_batch(op, "output", out, x0));
    int64_t N = x0->shape[0];
    KN_TRY(check_t(op, s, t, N));
    float sa[COEF_STACK], sb[COEF_STACK];
    float *ca = N <= COEF_STACK ? sa : malloc((size_t)N * sizeof(float));
    float *cb = N <= COEF_STACK ? sb : malloc((size_t)N * sizeof(float));
    if (!ca || !cb) {
        if (ca != sa)
            free(ca);
        if (cb != sb)
            free(cb);
        return kn_fail(KN_ERR_NOMEM, "%s: out of memory for %lld coefficients", op, (long long)N);
    }
    for (int64_t n = 0; n < N; n++) {
        float ac = s->alphas_cumprod[t[n]];
        float r = sqrtf(ac), q = sqrtf(1.0f - ac);
        if (forward) { /* x_t = r x0 + q eps */
            ca[n] = r, cb[n] = q;
        } else if (obj == KN_PRED_EPS) {
            ca[n] = 0.0f, cb[n] = 1.0f;
        } else if (obj == KN_PRED_V) { /* v = r eps - q x0 */
            ca[n] = -q, cb[n] = r;
        } else {
            ca[n] = 1.0f, cb[n] = 0.0f;
        }
    }
    mix_job c = {x0->data, noise->data, out->data, ca, cb, N ? kn_tensor_numel(x0) / N : 0};
    kn_parallel_for(N, mix_item, &c);
    if (ca != sa)
        free(ca);
    if (cb != sb)
        free(cb);
    return KN_OK;
}

kn_status kn_diff_add_noise(const kn_scheduler *s, const kn_tensor *x0, const int32_t *t, const kn_tensor *noise,
                            kn_tensor *xt) {
    return mix("diff_add_noise", s, x0, t, noise, xt, KN_PRED_EPS, 1);
}

kn_status kn_diff_target(const kn_scheduler *s, kn_pred_type obj, const kn_tensor *x0, const int32_t *t,
                         const kn_tensor *noise, kn_tensor *target) {
    if (obj != KN_PRED_EPS && obj != KN_PRED_V && obj != KN_PRED_SAMPLE)
        return kn_fail(KN_ERR_ARG, "diff_target: unknown objective %d (eps, v or sample)", (int)obj);
    return mix("diff_target", s, x0, t, noise, target, obj, 0);
}

kn_status kn_diff_loss_weights(const kn_scheduler *s, kn_pred_type obj, const int32_t *t, int64_t N, float gamma,
                               float *w) {
    if (!w || N < 0)
        return kn_fail(KN_ERR_ARG, "diff_loss_weights: output missing or N %lld < 0", (long long)N);
    if (obj != KN_PRED_EPS && obj != KN_PRED_V && obj != KN_PRED_SAMPLE)
        return kn_fail(KN_ERR_ARG, "diff_loss_weights: unknown objective %d (eps, v or sample)", (int)obj);
    KN_TRY(check_t("diff_loss_weights", s, t, N));
    for (int64_t n = 0; n < N; n++) {
        if (!(gamma > 0)) {
            w[n] = 1.0f;
            continue;
        }
        double ac = s->alphas_cumprod[t[n]];
        double snr = ac / (1.0 - ac);
        double m = snr < gamma ? snr : gamma;
        w[n] = (float)(obj == KN_PRED_EPS ? m / snr : obj == KN_PRED_V ? m / (snr + 1.0) : m);
    }
    return KN_OK;
}

typedef struct {
    const float *p, *t, *w;
    float *d;
    double *part;
    int64_t per;
    float k; /* 2 / numel */
} loss_job;

static void loss_item(int64_t n, void *pp) {
    const loss_job *c = pp;
    const float *p = c->p + n * c->per, *t = c->t + n * c->per;
    float wn = c->w ? c->w[n] : 1.0f;
    double acc = 0;
    for (int64_t i = 0; i < c->per; i++) {
        double e = (double)p[i] - (double)t[i];
        acc += e * e;
    }
    c->part[n] = acc * wn;
    if (c->d) {
        float *d = c->d + n * c->per;
        float kw = c->k * wn;
        for (int64_t i = 0; i < c->per; i++)
            d[i] = kw * (p[i] - t[i]);
    }
}

kn_status kn_diff_loss(const kn_tensor *pred, const kn_tensor *target, const float *w, double *loss, kn_tensor *dpred) {
    KN_TRY(check_batch("diff_loss", "pred", pred, NULL));
    KN_TRY(check_batch("diff_loss", "target", target, pred));
    if (dpred)
        KN_TRY(check_batch("diff_loss", "dpred", dpred, pred));
    if (!loss)
        return kn_fail(KN_ERR_ARG, "diff_loss: loss output is missing");
    int64_t N = pred->shape[0], numel = kn_tensor_numel(pred);
    if (N == 0 || numel == 0)
        return kn_fail(KN_ERR_SHAPE, "diff_loss: empty batch");
    double sp[COEF_STACK];
    double *part = N <= COEF_STACK ? sp : malloc((size_t)N * sizeof(double));
    if (!part)
        return kn_fail(KN_ERR_NOMEM, "diff_loss: out of memory");
    loss_job c = {pred->data, target->data, w, dpred ? dpred->data : NULL, part, numel / N, (float)(2.0 / (double)numel)};
    kn_parallel_for(N, loss_item, &c);
    double s = 0;
    for (int64_t n = 0; n < N; n++)
        s += part[n];
    *loss = s / (double)numel;
    if (part != sp)
        free(part);
    return KN_OK;
}

kn_status kn_cond_dropout_mask(int64_t N, float p, uint64_t seed, uint64_t offset, uint8_t *drop) {
    if (!drop || N < 0 || !(p >= 0 && p <= 1))
        return kn_fail(KN_ERR_ARG, "cond_dropout: probability %g must lie in [0, 1] and N %lld >= 0", p, (long long)N);
    for (int64_t n = 0; n < N; n++) {
        float u;
        kn_rand_fill(&u, 1, seed, offset + (uint64_t)n);
        drop[n] = u < p;
    }
    return KN_OK;
}

kn_status kn_cond_dropout_apply(kn_tensor *cond, const kn_tensor *empty, const uint8_t *drop) {
    char s1[96], s2[96];
    KN_TRY(check_batch("cond_dropout", "cond", cond, NULL));
    KN_TRY(check_batch("cond_dropout", "empty condition", empty, NULL));
    int64_t N = cond->shape[0], per = N ? kn_tensor_numel(cond) / N : 0;
    int ok = kn_tensor_numel(empty) == per && (empty->ndim == cond->ndim - 1 || empty->ndim == cond->ndim);
    if (ok && empty->ndim == cond->ndim)
        ok = empty->shape[0] == 1;
    if (!ok)
        return kn_fail(KN_ERR_SHAPE, "cond_dropout: empty condition %s does not fit one sample of %s",
                       kn_shape_str(empty, s1, sizeof s1), kn_shape_str(cond, s2, sizeof s2));
    if (!drop)
        return kn_fail(KN_ERR_ARG, "cond_dropout: drop mask is missing");
    for (int64_t n = 0; n < N; n++)
        if (drop[n])
            memcpy((float *)cond->data + n * per, empty->data, (size_t)per * sizeof(float));
    return KN_OK;
}
