/* test_diffusion_loss.c — forward process, targets, min-SNR weights, weighted MSE and its
 * gradient, timestep sampling and condition dropout. */
#include "kt.h"

#include "train/diffusion_loss.h"

#include <stdlib.h>
#include <string.h>

static kn_scheduler *make_sched(kn_beta_schedule b) {
    static kn_scheduler s;
    kn_sched_config c = kn_sched_config_modelscope();
    c.beta_schedule = b;
    if (kn_sched_init(&s, &c, KN_SCHED_DDPM) != KN_OK)
        kt_fail(__FILE__, __LINE__, "sched init: %s", kn_last_error());
    return &s;
}

KT_TEST(diffusion_loss_targets_by_hand) {
    enum { N = 3, C = 2, L = 5 };
    int64_t sh[3] = {N, C, L};
    float x0d[N * C * L], nd[N * C * L], xtd[N * C * L], td[N * C * L];
    kn_randn_fill(x0d, N * C * L, 1, 0);
    kn_randn_fill(nd, N * C * L, 2, 0);
    kn_tensor x0 = kn_tensor_view(KN_F32, 3, sh, x0d), no = kn_tensor_view(KN_F32, 3, sh, nd);
    kn_tensor xt = kn_tensor_view(KN_F32, 3, sh, xtd), tg = kn_tensor_view(KN_F32, 3, sh, td);
    int32_t t[N] = {0, 499, 999};
    kn_beta_schedule bs[3] = {KN_BETA_LINEAR, KN_BETA_SCALED_LINEAR, KN_BETA_COSINE};
    for (int k = 0; k < 3; k++) {
        kn_scheduler *s = make_sched(bs[k]);
        KT_OK(kn_diff_add_noise(s, &x0, t, &no, &xt));
        for (int obj = 0; obj < 3; obj++) {
            KT_OK(kn_diff_target(s, (kn_pred_type)obj, &x0, t, &no, &tg));
            double worst = 0;
            for (int n = 0; n < N; n++) {
                double ac = s->alphas_cumprod[t[n]], r = sqrt(ac), q = sqrt(1 - ac);
                for (int i = n * C * L; i < (n + 1) * C * L; i++) {
                    double want_xt = r * x0d[i] + q * nd[i];
                    double want = obj == KN_PRED_EPS ? nd[i] : obj == KN_PRED_V ? r * nd[i] - q * x0d[i] : x0d[i];
                    worst = KN_MAX(worst, fabs(want_xt - xtd[i]));
                    worst = KN_MAX(worst, fabs(want - td[i]));
                    if (obj == KN_PRED_V) /* x0 = sqrt(ac) x_t - sqrt(1-ac) v */
                        worst = KN_MAX(worst, fabs(r * xtd[i] - q * td[i] - x0d[i]) * 0.1);
                }
            }
            KT_CHECKF(worst < 2e-6, "schedule %d objective %d: error %.3g", k, obj, worst);
        }
    }
    /* alphas_cumprod decrease, so the noise share grows with t */
    kn_scheduler *s = make_sched(KN_BETA_COSINE);
    KT_CHECK(s->alphas_cumprod[0] > 0.99f && s->alphas_cumprod[999] < 0.01f);
    int32_t bad[N] = {0, 1000, 3};
    KT_CHECK(kn_diff_add_noise(s, &x0, bad, &no, &xt) == KN_ERR_ARG);
    KT_CHECK(strstr(kn_last_error(), "timestep 1000") != NULL);
    int64_t sh2[3] = {N, C, L - 1};
    kn_tensor wrong = kn_tensor_view(KN_F32, 3, sh2, nd);
    KT_CHECK(kn_diff_target(s, KN_PRED_V, &x0, t, &wrong, &tg) == KN_ERR_SHAPE);
}

KT_TEST(diffusion_loss_min_snr_weights) {
    kn_scheduler *s = make_sched(KN_BETA_SCALED_LINEAR);
    int32_t t[6] = {0, 50, 200, 400, 700, 999};
    float w[3][6], u[6];
    const float gamma = 5.0f;
    for (int obj = 0; obj < 3; obj++)
        KT_OK(kn_diff_loss_weights(s, (kn_pred_type)obj, t, 6, gamma, w[obj]));
    KT_OK(kn_diff_loss_weights(s, KN_PRED_V, t, 6, 0.0f, u));
    for (int i = 0; i < 6; i++) {
        double ac = s->alphas_cumprod[t[i]], snr = ac / (1 - ac), m = KN_MIN(snr, (double)gamma);
        KT_NEAR(w[KN_PRED_EPS][i], m / snr, 1e-6 * (m / snr));
        KT_NEAR(w[KN_PRED_V][i], m / (snr + 1), 1e-6 * (m / (snr + 1)));
        KT_NEAR(w[KN_PRED_SAMPLE][i], m, 1e-6 * m);
        KT_CHECK(u[i] == 1.0f);
        if (snr <= gamma) /* noisy end: eps weight is exactly 1 */
            KT_CHECK(w[KN_PRED_EPS][i] == 1.0f);
    }
    KT_CHECK(w[KN_PRED_EPS][0] < 0.01f); /* t = 0: SNR ~ 1e3, clipped hard */
    KT_CHECK(kn_diff_loss_weights(s, (kn_pred_type)7, t, 6, gamma, u) == KN_ERR_ARG);
}

KT_TEST(diffusion_loss_value_and_gradient) {
    enum { N = 4, P = 6 };
    int64_t sh[2] = {N, P};
    float pd[N * P], td[N * P], dd[N * P], w[N] = {0.5f, 1.0f, 2.0f, 0.25f};
    kn_randn_fill(pd, N * P, 11, 0);
    kn_randn_fill(td, N * P, 12, 0);
    kn_tensor pr = kn_tensor_view(KN_F32, 2, sh, pd), tg = kn_tensor_view(KN_F32, 2, sh, td);
    kn_tensor dp = kn_tensor_view(KN_F32, 2, sh, dd);
    double loss = 0, want = 0;
    KT_OK(kn_diff_loss(&pr, &tg, w, &loss, &dp));
    for (int n = 0; n < N; n++)
        for (int i = 0; i < P; i++) {
            double e = (double)pd[n * P + i] - td[n * P + i];
            want += w[n] * e * e;
        }
    want /= N * P;
    KT_NEAR(loss, want, 1e-12 * want);
    /* diffusers: (mse(reduction='none').mean(dims) * w).mean() — the same number */
    /* central differences in double on every element */
    double worst = 0;
    for (int j = 0; j < N * P; j++) {
        float keep = pd[j];
        const float h = 1e-2f;
        double lp, lm;
        pd[j] = keep + h;
        kn_diff_loss(&pr, &tg, w, &lp, NULL);
        pd[j] = keep - h;
        kn_diff_loss(&pr, &tg, w, &lm, NULL);
        pd[j] = keep;
        double fd = (lp - lm) / (2.0 * (double)h); /* exact for a quadratic up to rounding */
        worst = KN_MAX(worst, fabs(fd - dd[j]));
    }
    KT_CHECKF(worst < 1e-5, "dloss/dpred vs finite differences: %.3g", worst);
    double lu;
    KT_OK(kn_diff_loss(&pr, &tg, NULL, &lu, NULL));
    KT_CHECK(lu > 0 && fabs(lu - loss) > 1e-6);
    int64_t sh2[2] = {N, P - 1};
    kn_tensor bad = kn_tensor_view(KN_F32, 2, sh2, td);
    KT_CHECK(kn_diff_loss(&pr, &bad, w, &loss, NULL) == KN_ERR_SHAPE);
    KT_CHECK(strstr(kn_last_error(), "does not match") != NULL);
}

KT_TEST(diffusion_loss_sampling_and_dropout) {
    enum { N = 4000 };
    static int32_t t1[N], t2[N];
    KT_OK(kn_diff_sample_timesteps(1000, N, 5, 100, t1));
    KT_OK(kn_diff_sample_timesteps(1000, N, 5, 100, t2));
    KT_CHECK(!memcmp(t1, t2, sizeof t1));
    KT_OK(kn_diff_sample_timesteps(1000, N - 100, 5, 200, t2)); /* same stream, shifted by 100 */
    KT_CHECK(!memcmp(t1 + 100, t2, (N - 100) * sizeof(int32_t)));
    double mean = 0;
    int lo = 1000, hi = -1, low_q = 0;
    for (int i = 0; i < N; i++) {
        mean += t1[i];
        lo = KN_MIN(lo, t1[i]);
        hi = KN_MAX(hi, t1[i]);
        low_q += t1[i] < 250;
    }
    mean /= N;
    KT_CHECK(lo >= 0 && hi <= 999 && lo < 5 && hi > 994);
    KT_NEAR(mean, 499.5, 15.0);   /* sd of the mean ~ 4.6 */
    KT_NEAR(low_q, N / 4, 120.0); /* sd ~ 27 */
    static uint8_t drop[N];
    KT_OK(kn_cond_dropout_mask(N, 0.1f, 9, 0, drop));
    int nd = 0;
    for (int i = 0; i < N; i++)
        nd += drop[i];
    KT_NEAR(nd, 400, 80); /* sd ~ 19 */
    KT_CHECK(kn_cond_dropout_mask(N, 1.5f, 9, 0, drop) == KN_ERR_ARG);
    /* apply: rows with drop set become the empty condition, the others stay */
    int64_t cs[3] = {3, 2, 4}, es[2] = {2, 4};
    float cd[24], ed[8], orig[24];
    kn_randn_fill(cd, 24, 3, 0);
    memcpy(orig, cd, sizeof cd);
    for (int i = 0; i < 8; i++)
        ed[i] = -7.0f;
    kn_tensor c = kn_tensor_view(KN_F32, 3, cs, cd), e = kn_tensor_view(KN_F32, 2, es, ed);
    uint8_t m[3] = {0, 1, 0};
    KT_OK(kn_cond_dropout_apply(&c, &e, m));
    KT_CHECK(!memcmp(cd, orig, 8 * sizeof(float)) && !memcmp(cd + 16, orig + 16, 8 * sizeof(float)));
    KT_CHECK(!memcmp(cd + 8, ed, 8 * sizeof(float)));
    int64_t es2[2] = {2, 3};
    kn_tensor e2 = kn_tensor_view(KN_F32, 2, es2, ed);
    KT_CHECK(kn_cond_dropout_apply(&c, &e2, m) == KN_ERR_SHAPE);
}

KT_TEST(diffusion_loss_deterministic_across_threads) {
    enum { N = 5, P = 3000 };
    static float x0[N * P], no[N * P], xt[3][N * P], tg[3][N * P], d[3][N * P];
    double loss[3];
    int64_t sh[2] = {N, P};
    kn_randn_fill(x0, N * P, 21, 0);
    kn_randn_fill(no, N * P, 22, 0);
    kn_scheduler *s = make_sched(KN_BETA_LINEAR);
    int32_t t[N];
    float w[N];
    KT_OK(kn_diff_sample_timesteps(1000, N, 3, 0, t));
    KT_OK(kn_diff_loss_weights(s, KN_PRED_V, t, N, 5.0f, w));
    int prev = kn_get_threads();
    for (int k = 0; k < 3; k++) {
        kn_set_threads(k + 1);
        kn_tensor a = kn_tensor_view(KN_F32, 2, sh, x0), b = kn_tensor_view(KN_F32, 2, sh, no);
        kn_tensor o = kn_tensor_view(KN_F32, 2, sh, xt[k]), g = kn_tensor_view(KN_F32, 2, sh, tg[k]);
        kn_tensor dd = kn_tensor_view(KN_F32, 2, sh, d[k]);
        KT_OK(kn_diff_add_noise(s, &a, t, &b, &o));
        KT_OK(kn_diff_target(s, KN_PRED_V, &a, t, &b, &g));
        KT_OK(kn_diff_loss(&o, &g, w, &loss[k], &dd)); /* "predict" x_t: some loss */
    }
    kn_set_threads(prev);
    for (int k = 1; k < 3; k++) {
        KT_CHECK(!memcmp(xt[0], xt[k], sizeof xt[0]));
        KT_CHECK(!memcmp(tg[0], tg[k], sizeof tg[0]));
        KT_CHECK(!memcmp(d[0], d[k], sizeof d[0]));
        KT_CHECK(memcmp(&loss[0], &loss[k], sizeof(double)) == 0);
    }
    KT_CHECK(loss[0] > 0);
}
