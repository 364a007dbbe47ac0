/* test_optim.c — AdamW, clip_grad_norm_, the LR schedule and the EMA against PyTorch
 * (tests/data/optim_adamw.safetensors from dev/ref_optim.py), and thread-count determinism. */
#include "kt.h"

#include "io/safetensors.h"
#include "train/optim.h"

#include <stdarg.h>
#include <string.h>

static const char *const OPT_NAMES[3] = {"a.weight", "a.bias", "c.weight"};

static kn_tensor st_f32(kn_safetensors *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kn_tensor st_f32(kn_safetensors *st, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    kn_tensor t;
    memset(&t, 0, sizeof t);
    if (kn_st_get(st, name, &t) != KN_OK || t.dtype != KN_F32)
        kt_fail(__FILE__, __LINE__, "fixture tensor %s: %s", name, kn_last_error());
    return t;
}

/* max over elements of |a-b| / (|b| + floor) */
static double rel_err(const float *a, const float *b, int64_t n, double floor_) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + floor_);
        if (!(e <= m))
            m = e;
    }
    return m;
}

KT_TEST(optim_adamw_matches_pytorch) {
    kn_safetensors *st = kn_st_open("tests/data/optim_adamw.safetensors");
    KT_CHECKF(st, "cannot open tests/data/optim_adamw.safetensors: %s", kn_last_error());
    if (!st)
        return;
    kn_params P = {0};
    kn_tensor init[3];
    for (int i = 0; i < 3; i++) {
        init[i] = st_f32(st, "init.%s", OPT_NAMES[i]);
        if (!init[i].data) {
            kn_st_close(st);
            return;
        }
        kn_param_decl(&P, init[i].ndim, init[i].shape, "%s", OPT_NAMES[i]);
    }
    KT_OK(kn_params_alloc(&P));
    KT_OK(kn_params_alloc_grads(&P));
    for (int i = 0; i < 3; i++)
        memcpy(P.items[i]->var.v.data, init[i].data, kn_tensor_nbytes(&init[i]));

    /* the config of dev/ref_optim.py */
    kn_adamw_config oc = {1e-2, 0.9, 0.999, 1e-8, 0.1, 1};
    kn_lr_schedule ls = {1e-2, 1e-3, 3, 10};
    kn_adamw opt;
    kn_ema ema;
    KT_OK(kn_adamw_init(&opt, &oc, &P));
    KT_OK(kn_ema_init(&ema, &P, 0.9, 1));
    double worst_p = 0, worst_mv = 0, worst_ema = 0;
    int clipped = 0;
    for (int s = 0; s < 10; s++) {
        for (int i = 0; i < 3; i++) {
            kn_tensor g = st_f32(st, "grad.%d.%s", s, OPT_NAMES[i]);
            if (g.data)
                memcpy(P.items[i]->var.g.data, g.data, kn_tensor_nbytes(&g));
        }
        double norm = kn_clip_grad_norm(&P, 1.0);
        kn_tensor tn = st_f32(st, "norm.%d", s), tl = st_f32(st, "lr.%d", s);
        if (!tn.data || !tl.data)
            break;
        KT_NEAR(norm, ((float *)tn.data)[0], 1e-6 * ((float *)tn.data)[0]);
        clipped += norm > 1.0;
        double lr = kn_lr_at(&ls, s);
        KT_NEAR(lr, ((float *)tl.data)[0], 1e-7 * lr);
        KT_OK(kn_adamw_step(&opt, lr));
        kn_ema_update(&ema);
        for (int i = 0; i < 3; i++) {
            kn_tensor p = st_f32(st, "param.%d.%s", s, OPT_NAMES[i]);
            kn_tensor m = st_f32(st, "m.%d.%s", s, OPT_NAMES[i]);
            kn_tensor v = st_f32(st, "v.%d.%s", s, OPT_NAMES[i]);
            kn_tensor e = st_f32(st, "ema.%d.%s", s, OPT_NAMES[i]);
            if (!p.data || !m.data || !v.data || !e.data)
                continue;
            int64_t n = kn_tensor_numel(&p), off = (float *)P.items[i]->var.v.data - P.block;
            double ep = rel_err(P.block + off, p.data, n, 1e-3);
            /* moments: normwise (max |diff| / max |ref|): an m that cancels to ~0 carries the
             * rounding error of its large inputs, not of itself */
            double em = kt_max_abs_diff(opt.m + off, m.data, n) / kt_max_abs(m.data, n);
            double ev = kt_max_abs_diff(opt.v + off, v.data, n) / kt_max_abs(v.data, n);
            double ee = rel_err(ema.w + off, e.data, n, 1e-3);
            worst_p = KN_MAX(worst_p, ep);
            worst_mv = KN_MAX(worst_mv, KN_MAX(em, ev));
            worst_ema = KN_MAX(worst_ema, ee);
        }
    }
    KT_CHECKF(worst_p < 1e-6, "params: worst relative error %.3g", worst_p);
    KT_CHECKF(worst_mv < 1e-6, "moments: worst relative error %.3g", worst_mv);
    KT_CHECKF(worst_ema < 1e-6, "ema: worst relative error %.3g", worst_ema);
    KT_CHECKF(clipped == 5, "clipping engaged on %d of 10 steps, want 5", clipped);
    KT_CHECK(opt.step == 10 && ema.updates == 10);
    /* the bias (1-D) was not decayed: with wd applied, the fixture would differ far beyond 1e-6 */
    kn_adamw_free(&opt);
    kn_ema_free(&ema);
    kn_params_free(&P);
    kn_st_close(st);
}

KT_TEST(optim_lr_schedule_and_ema_decay) {
    kn_lr_schedule ls = {1.0, 0.1, 4, 14};
    KT_NEAR(kn_lr_at(&ls, 0), 0.25, 1e-15);
    KT_NEAR(kn_lr_at(&ls, 3), 1.0, 1e-15);
    KT_NEAR(kn_lr_at(&ls, 4), 1.0, 1e-15);
    KT_NEAR(kn_lr_at(&ls, 9), 0.55, 1e-12); /* half way: floor + (max-floor)/2 */
    KT_NEAR(kn_lr_at(&ls, 14), 0.1, 1e-15);
    KT_NEAR(kn_lr_at(&ls, 1000), 0.1, 1e-15);
    double prev = 2;
    for (int s = 4; s <= 14; s++) { /* monotone decay */
        KT_CHECK(kn_lr_at(&ls, s) <= prev);
        prev = kn_lr_at(&ls, s);
    }
    kn_params P = {0};
    int64_t sh[1] = {3};
    kn_param_decl(&P, 1, sh, "w");
    KT_OK(kn_params_alloc(&P));
    kn_ema e;
    KT_OK(kn_ema_init(&e, &P, 0.999, 1));
    KT_NEAR(kn_ema_next_decay(&e), 0.0, 0);
    e.updates = 1;
    KT_NEAR(kn_ema_next_decay(&e), 2.0 / 11.0, 1e-15);
    e.updates = 100000;
    KT_NEAR(kn_ema_next_decay(&e), 0.999, 1e-15);
    e.warmup = 0;
    e.updates = 0;
    KT_NEAR(kn_ema_next_decay(&e), 0.999, 1e-15);
    kn_ema_free(&e);
    KT_CHECK(kn_ema_init(&e, &P, 1.5, 0) == KN_ERR_ARG);
    kn_adamw o;
    kn_adamw_config bad = kn_adamw_default_config();
    KT_CHECK(kn_adamw_init(&o, &bad, &P) == KN_ERR_ARG); /* no grads yet */
    KT_CHECK(strstr(kn_last_error(), "gradients") != NULL);
    KT_OK(kn_params_alloc_grads(&P));
    bad.beta1 = 1.0;
    KT_CHECK(kn_adamw_init(&o, &bad, &P) == KN_ERR_ARG);
    KT_CHECK(strstr(kn_last_error(), "betas") != NULL);
    kn_params_free(&P);
}

/* A few steps on multi-chunk parameters give the same bits for 1, 2 and 3 threads. */
static void run_opt(int threads, float *out_p, float *out_m, float *out_v, float *out_e, double *norms) {
    int prev = kn_set_threads(threads);
    kn_params P = {0};
    int64_t s0[2] = {97, 211}, s1[1] = {211}, s2[3] = {3, 5, 7};
    kn_param_decl(&P, 2, s0, "big.weight");
    kn_param_decl(&P, 1, s1, "big.bias");
    kn_param_decl(&P, 3, s2, "small.weight");
    KN_ASSERT(kn_params_alloc(&P) == KN_OK && kn_params_alloc_grads(&P) == KN_OK);
    kn_params_init_default(&P, 7);
    kn_adamw o;
    kn_ema e;
    kn_adamw_config oc = kn_adamw_default_config();
    KN_ASSERT(kn_adamw_init(&o, &oc, &P) == KN_OK && kn_ema_init(&e, &P, 0.99, 1) == KN_OK);
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < P.n; i++)
            kn_randn_fill(P.items[i]->var.g.data, kn_tensor_numel(&P.items[i]->var.g), 99 + i, (uint64_t)s << 20);
        norms[s] = kn_clip_grad_norm(&P, 5.0);
        kn_adamw_step(&o, 1e-3 * (s + 1));
        kn_ema_update(&e);
    }
    memcpy(out_p, P.block, P.numel * 4);
    memcpy(out_m, o.m, P.numel * 4);
    memcpy(out_v, o.v, P.numel * 4);
    memcpy(out_e, e.w, P.numel * 4);
    kn_adamw_free(&o);
    kn_ema_free(&e);
    kn_params_free(&P);
    kn_set_threads(prev);
}

KT_TEST(optim_deterministic_across_threads) {
    enum { N = 97 * 211 + 16 + 211 + 16 + 105 + 16 };
    static float p[3][N], m[3][N], v[3][N], e[3][N];
    double norms[3][4];
    for (int t = 0; t < 3; t++)
        run_opt(t + 1, p[t], m[t], v[t], e[t], norms[t]);
    for (int t = 1; t < 3; t++) {
        KT_CHECKF(!memcmp(p[0], p[t], sizeof p[0]), "params differ with %d threads", t + 1);
        KT_CHECKF(!memcmp(m[0], m[t], sizeof m[0]), "m differs with %d threads", t + 1);
        KT_CHECKF(!memcmp(v[0], v[t], sizeof v[0]), "v differs with %d threads", t + 1);
        KT_CHECKF(!memcmp(e[0], e[t], sizeof e[0]), "ema differs with %d threads", t + 1);
        KT_CHECKF(!memcmp(norms[0], norms[t], sizeof norms[0]), "norms differ with %d threads", t + 1);
    }
    /* and something moved */
    KT_CHECK(kt_max_abs(m[0], N) > 0);
}
