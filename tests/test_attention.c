/* test_attention.c — flash-style attention (forward, backward) and softmax against the naive
 * definition (float64 loops here and kn_attention_ref), a PyTorch fixture
 * (tests/data/attention.safetensors, written by dev/ref_attention.py), finite differences,
 * bitwise determinism across thread counts, and the error paths. */
#include "kt.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

static float *frand(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    kn_randn_fill(x, n, seed, 0);
    return x;
}

static kn_tensor t3(float *data, int64_t a, int64_t b, int64_t c) {
    int64_t s[3] = {a, b, c};
    return kn_tensor_view(KN_F32, 3, s, data);
}

/* Random additive mask (mb, Lq, Lk): normals, ~30% -inf; row `dead` (if >= 0) of batch 0 fully -inf. */
static float *make_mask(int64_t mb, int64_t Lq, int64_t Lk, uint64_t seed, int64_t dead) {
    int64_t n = mb * Lq * Lk;
    float *m = frand(n, seed), *u = malloc((size_t)n * sizeof(float));
    kn_rand_fill(u, n, seed + 1, 0);
    for (int64_t i = 0; i < n; i++)
        if (u[i] < 0.3f)
            m[i] = -INFINITY;
    if (dead >= 0)
        for (int64_t j = 0; j < Lk; j++)
            m[dead * Lk + j] = -INFINITY;
    free(u);
    return m;
}

/* The definition in float64: o, lse and (when dout != NULL) dq, dk, dv (+=). */
static void naive_attention(const float *q, const float *k, const float *v, const float *mask, int64_t mb,
                            int64_t B, int64_t Lq, int64_t Lk, int64_t H, int64_t D, int64_t Dv, float scale,
                            double *o, double *lse, const float *dout, double *dq, double *dk, double *dv) {
    double *p = malloc((size_t)Lk * sizeof(double)), *dp = malloc((size_t)Lk * sizeof(double));
    int64_t C = H * D, Cv = H * Dv;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < Lk; j++) {
                    double s = 0;
                    for (int64_t x = 0; x < D; x++)
                        s += (double)q[(b * Lq + i) * C + h * D + x] * k[(b * Lk + j) * C + h * D + x];
                    s *= scale;
                    if (mask)
                        s += mask[((mb == 1 ? 0 : b) * Lq + i) * Lk + j];
                    p[j] = s;
                    mx = fmax(mx, s);
                }
                double sum = 0;
                for (int64_t j = 0; j < Lk; j++)
                    sum += (p[j] = mx == -INFINITY ? 0 : exp(p[j] - mx));
                for (int64_t j = 0; j < Lk; j++)
                    p[j] = sum > 0 ? p[j] / sum : 0;
                lse[(b * H + h) * Lq + i] = sum > 0 ? mx + log(sum) : -INFINITY;
                for (int64_t x = 0; x < Dv; x++) {
                    double a = 0;
                    for (int64_t j = 0; j < Lk; j++)
                        a += p[j] * v[(b * Lk + j) * Cv + h * Dv + x];
                    o[(b * Lq + i) * Cv + h * Dv + x] = a;
                }
                if (!dout)
                    continue;
                const float *g = dout + (b * Lq + i) * Cv + h * Dv;
                double Di = 0;
                for (int64_t j = 0; j < Lk; j++) {
                    double a = 0;
                    for (int64_t x = 0; x < Dv; x++)
                        a += (double)g[x] * v[(b * Lk + j) * Cv + h * Dv + x];
                    dp[j] = a;
                    Di += p[j] * a;
                }
                for (int64_t j = 0; j < Lk; j++) {
                    double ds = p[j] * (dp[j] - Di) * scale;
                    for (int64_t x = 0; x < D; x++) {
                        dq[(b * Lq + i) * C + h * D + x] += ds * k[(b * Lk + j) * C + h * D + x];
                        dk[(b * Lk + j) * C + h * D + x] += ds * q[(b * Lq + i) * C + h * D + x];
                    }
                    for (int64_t x = 0; x < Dv; x++)
                        dv[(b * Lk + j) * Cv + h * Dv + x] += p[j] * g[x];
                }
            }
    free(p);
    free(dp);
}

/* max |a - b| / (1 + |b|) with a float, b double; NaN counts as infinitely wrong */
static double max_rel(const float *a, const double *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (isinf(b[i]) && a[i] == b[i]) ? 0 : fabs(a[i] - b[i]) / (1 + fabs(b[i]));
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

typedef struct { int64_t B, Lq, Lk, H, D, Dv; int mask; } shape_case; /* mask: 0 none, 1 (B,..), 2 (1,..), 3 (Lq,Lk) */

static const shape_case cases[] = {
    {1, 1, 1, 1, 8, 8, 0},      {2, 17, 17, 1, 8, 8, 0},    {1, 64, 64, 2, 64, 64, 0},  {1, 100, 77, 8, 40, 40, 0},
    {3, 5, 5, 4, 64, 64, 1},    {2, 130, 67, 3, 40, 24, 1}, {1, 65, 129, 2, 80, 80, 2}, {2, 33, 20, 5, 160, 160, 3},
    {7, 16, 16, 8, 8, 8, 0},    {2, 3, 150, 1, 13, 5, 1},   {1, 200, 1, 2, 8, 16, 0},
};

/* ------------------------------------------------------------- forward */

KT_TEST(attention_forward_matches_definition) {
    kn_set_threads(2);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        shape_case s = cases[ci];
        int64_t C = s.H * s.D, Cv = s.H * s.Dv, mb = s.mask == 1 ? s.B : 1;
        float *q = frand(s.B * s.Lq * C, 10 + ci), *k = frand(s.B * s.Lk * C, 20 + ci);
        float *v = frand(s.B * s.Lk * Cv, 30 + ci), *o = malloc((size_t)(s.B * s.Lq * Cv) * sizeof(float));
        float *oref = malloc((size_t)(s.B * s.Lq * Cv) * sizeof(float));
        float *lse = malloc((size_t)(s.B * s.H * s.Lq) * sizeof(float));
        double *od = malloc((size_t)(s.B * s.Lq * Cv) * sizeof(double));
        double *lsed = malloc((size_t)(s.B * s.H * s.Lq) * sizeof(double));
        int64_t dead = s.mask && s.Lq > 2 ? s.Lq / 2 : -1;
        float *m = s.mask ? make_mask(mb, s.Lq, s.Lk, 40 + ci, dead) : NULL;
        float scale = 1.0f / sqrtf((float)s.D);
        kn_tensor tq = t3(q, s.B, s.Lq, C), tk = t3(k, s.B, s.Lk, C), tv = t3(v, s.B, s.Lk, Cv);
        kn_tensor to = t3(o, s.B, s.Lq, Cv), tm;
        if (s.mask == 3) {
            int64_t sh[2] = {s.Lq, s.Lk};
            tm = kn_tensor_view(KN_F32, 2, sh, m);
        } else {
            tm = t3(m, mb, s.Lq, s.Lk);
        }
        KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)s.H, scale, s.mask ? &tm : NULL, &to, lse));
        kn_attention_ref(q, k, v, m, mb, oref, s.B, s.Lq, s.Lk, (int)s.H, s.D, s.Dv, scale);
        naive_attention(q, k, v, m, mb, s.B, s.Lq, s.Lk, s.H, s.D, s.Dv, scale, od, lsed, NULL, NULL, NULL, NULL);
        int64_t no = s.B * s.Lq * Cv;
        double e_o = max_rel(o, od, no), e_ref = max_rel(oref, od, no);
        double e_lse = max_rel(lse, lsed, s.B * s.H * s.Lq);
        KT_CHECKF(e_o < 2e-6 && e_ref < 1e-6 && e_lse < 2e-6,
                  "case %zu (B%lld Lq%lld Lk%lld H%lld D%lld Dv%lld mask%d): o err %.3g, ref err %.3g, lse err %.3g", ci,
                  (long long)s.B, (long long)s.Lq, (long long)s.Lk, (long long)s.H, (long long)s.D,
                  (long long)s.Dv, s.mask, e_o, e_ref, e_lse);
        if (dead >= 0) { /* a fully masked row gives zeros and lse = -inf */
            int ok = 1;
            for (int64_t x = 0; x < Cv; x++)
                ok &= o[dead * Cv + x] == 0.0f;
            for (int64_t h = 0; h < s.H; h++)
                ok &= lse[h * s.Lq + dead] == -INFINITY;
            KT_CHECKF(ok, "case %zu: fully masked row is not zero / -inf", ci);
        }
        free(q), free(k), free(v), free(o), free(oref), free(lse), free(od), free(lsed), free(m);
    }
    kn_set_threads(1);
}

/* q, k, v as strided views into one fused (B, L, 3C) projection; o into a wider buffer. */
KT_TEST(attention_accepts_strided_row_views) {
    int64_t B = 2, L = 70, H = 2, D = 40, C = H * D;
    float *qkv = frand(B * L * 3 * C, 7), *o1 = calloc((size_t)(B * L * 2 * C), sizeof(float));
    float *q = malloc((size_t)(B * L * C) * 4), *k = malloc((size_t)(B * L * C) * 4), *v = malloc((size_t)(B * L * C) * 4);
    float *o2 = malloc((size_t)(B * L * C) * 4);
    for (int64_t r = 0; r < B * L; r++)
        for (int64_t x = 0; x < C; x++)
            q[r * C + x] = qkv[r * 3 * C + x], k[r * C + x] = qkv[r * 3 * C + C + x], v[r * C + x] = qkv[r * 3 * C + 2 * C + x];
    kn_tensor fused = t3(qkv, B, L, 3 * C), tq, tk, tv, wide = t3(o1, B, L, 2 * C), to1;
    KT_OK(kn_tensor_slice(&fused, 2, 0, C, &tq));
    KT_OK(kn_tensor_slice(&fused, 2, C, 2 * C, &tk));
    KT_OK(kn_tensor_slice(&fused, 2, 2 * C, 3 * C, &tv));
    KT_OK(kn_tensor_slice(&wide, 2, C, 2 * C, &to1));
    KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, 0.2f, NULL, &to1, NULL));
    kn_tensor cq = t3(q, B, L, C), ck = t3(k, B, L, C), cv = t3(v, B, L, C), to2 = t3(o2, B, L, C);
    KT_OK(kn_attention(NULL, &cq, &ck, &cv, (int)H, 0.2f, NULL, &to2, NULL));
    int same = 1, untouched = 1;
    for (int64_t r = 0; r < B * L; r++)
        for (int64_t x = 0; x < C; x++) {
            same &= o1[r * 2 * C + C + x] == o2[r * C + x];
            untouched &= o1[r * 2 * C + x] == 0.0f;
        }
    KT_CHECK(same);
    KT_CHECK(untouched);
    free(qkv), free(o1), free(o2), free(q), free(k), free(v);
}

/* ------------------------------------------------------------ backward */

KT_TEST(attention_backward_matches_definition) {
    kn_set_threads(2);
    static const shape_case bc[] = {
        {1, 1, 1, 1, 8, 8, 0},    {2, 17, 23, 2, 8, 8, 1},   {1, 70, 77, 4, 40, 40, 0}, {1, 130, 65, 2, 64, 32, 2},
        {9, 7, 7, 3, 16, 16, 0},  {1, 66, 140, 1, 24, 8, 3},
    };
    for (size_t ci = 0; ci < sizeof bc / sizeof bc[0]; ci++) {
        shape_case s = bc[ci];
        int64_t C = s.H * s.D, Cv = s.H * s.Dv, mb = s.mask == 1 ? s.B : 1;
        int64_t nq = s.B * s.Lq * C, nk = s.B * s.Lk * C, nv = s.B * s.Lk * Cv, no = s.B * s.Lq * Cv;
        float *q = frand(nq, 100 + ci), *k = frand(nk, 200 + ci), *v = frand(nv, 300 + ci), *g = frand(no, 400 + ci);
        float *o = malloc((size_t)no * 4), *lse = malloc((size_t)(s.B * s.H * s.Lq) * 4);
        float *dq = malloc((size_t)nq * 4), *dk = malloc((size_t)nk * 4), *dv = malloc((size_t)nv * 4);
        double *od = malloc((size_t)no * 8), *lsed = malloc((size_t)(s.B * s.H * s.Lq) * 8);
        double *dqd = malloc((size_t)nq * 8), *dkd = malloc((size_t)nk * 8), *dvd = malloc((size_t)nv * 8);
        /* gradients accumulate: start from 0.5 in both */
        for (int64_t i = 0; i < nq; i++) dq[i] = 0.5f, dqd[i] = 0.5;
        for (int64_t i = 0; i < nk; i++) dk[i] = 0.5f, dkd[i] = 0.5;
        for (int64_t i = 0; i < nv; i++) dv[i] = 0.5f, dvd[i] = 0.5;
        int64_t dead = s.mask && s.Lq > 2 ? 1 : -1;
        float *m = s.mask ? make_mask(mb, s.Lq, s.Lk, 500 + ci, dead) : NULL;
        float scale = 1.0f / sqrtf((float)s.D);
        kn_tensor tq = t3(q, s.B, s.Lq, C), tk = t3(k, s.B, s.Lk, C), tv = t3(v, s.B, s.Lk, Cv), to = t3(o, s.B, s.Lq, Cv);
        kn_tensor tg = t3(g, s.B, s.Lq, Cv), tdq = t3(dq, s.B, s.Lq, C), tdk = t3(dk, s.B, s.Lk, C);
        kn_tensor tdv = t3(dv, s.B, s.Lk, Cv), tm;
        if (s.mask == 3) {
            int64_t sh[2] = {s.Lq, s.Lk};
            tm = kn_tensor_view(KN_F32, 2, sh, m);
        } else {
            tm = t3(m, mb, s.Lq, s.Lk);
        }
        const kn_tensor *pm = s.mask ? &tm : NULL;
        KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)s.H, scale, pm, &to, lse));
        KT_OK(kn_attention_backward(&tq, &tk, &tv, (int)s.H, scale, pm, &to, lse, &tg, &tdq, &tdk, &tdv));
        naive_attention(q, k, v, m, mb, s.B, s.Lq, s.Lk, s.H, s.D, s.Dv, scale, od, lsed, g, dqd, dkd, dvd);
        double eq = max_rel(dq, dqd, nq), ek = max_rel(dk, dkd, nk), ev = max_rel(dv, dvd, nv);
        KT_CHECKF(eq < 1e-5 && ek < 1e-5 && ev < 1e-5, "case %zu: dq err %.3g, dk err %.3g, dv err %.3g", ci, eq, ek, ev);
        free(q), free(k), free(v), free(g), free(o), free(lse), free(dq), free(dk), free(dv);
        free(od), free(lsed), free(dqd), free(dkd), free(dvd), free(m);
    }
    kn_set_threads(1);
}

/* loss = sum(o * w): central differences of the fast forward vs the analytic backward */
KT_TEST(attention_backward_finite_differences) {
    int64_t B = 2, Lq = 5, Lk = 7, H = 2, D = 8, Dv = 4, C = H * D, Cv = H * Dv;
    float *x[3] = {frand(B * Lq * C, 61), frand(B * Lk * C, 62), frand(B * Lk * Cv, 63)};
    int64_t n[3] = {B * Lq * C, B * Lk * C, B * Lk * Cv};
    float *w = frand(B * Lq * Cv, 64), *o = malloc((size_t)(B * Lq * Cv) * 4), lse[2 * 2 * 5];
    float *mask = make_mask(1, Lq, Lk, 65, -1);
    for (int64_t j = 0; j < Lq; j++)
        mask[j * Lk + j] = 0.0f;
    kn_tensor tm = t3(mask, 1, Lq, Lk);
    float *gr[3] = {calloc((size_t)n[0], 4), calloc((size_t)n[1], 4), calloc((size_t)n[2], 4)};
    kn_tensor tq = t3(x[0], B, Lq, C), tk = t3(x[1], B, Lk, C), tv = t3(x[2], B, Lk, Cv), to = t3(o, B, Lq, Cv);
    kn_tensor tw = t3(w, B, Lq, Cv), g0 = t3(gr[0], B, Lq, C), g1 = t3(gr[1], B, Lk, C), g2 = t3(gr[2], B, Lk, Cv);
    float scale = 0.4f;
    KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, scale, &tm, &to, lse));
    KT_OK(kn_attention_backward(&tq, &tk, &tv, (int)H, scale, &tm, &to, lse, &tw, &g0, &g1, &g2));
    double worst = 0;
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < n[a]; i += 3) {
            float keep = x[a][i], eps = 1e-2f;
            double lp = 0, lm = 0;
            x[a][i] = keep + eps;
            KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, scale, &tm, &to, NULL));
            for (int64_t j = 0; j < B * Lq * Cv; j++) lp += (double)o[j] * w[j];
            x[a][i] = keep - eps;
            KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, scale, &tm, &to, NULL));
            for (int64_t j = 0; j < B * Lq * Cv; j++) lm += (double)o[j] * w[j];
            x[a][i] = keep;
            double fd = (lp - lm) / (2 * eps), err = fabs(fd - gr[a][i]) / (1 + fabs(fd));
            if (err > worst) worst = err;
        }
    KT_CHECKF(worst < 2e-3, "finite-difference mismatch %.3g", worst);
    for (int a = 0; a < 3; a++) free(x[a]), free(gr[a]);
    free(w), free(o), free(mask);
}

/* ---------------------------------------------------- PyTorch fixture */

/* A minimal reader for the fixture this test's own script writes (F32 only). */
typedef struct { char *buf; size_t n; const char *json; size_t hlen; } stfile;

static int st_load(stfile *f, const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    fseek(fp, 0, SEEK_END);
    f->n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc(f->n + 1);
    size_t got = fread(f->buf, 1, f->n, fp);
    fclose(fp);
    if (got != f->n || f->n < 8) return 0;
    uint64_t h = 0;
    memcpy(&h, f->buf, 8);
    if (h > f->n - 8) return 0;
    f->hlen = h;
    f->json = f->buf + 8;
    return 1;
}

/* Pointer to tensor `name` and its element count, or NULL. */
static const float *st_get(const stfile *f, const char *name, int64_t *count) {
    char key[128];
    snprintf(key, sizeof key, "\"%s\":{", name);
    char *hdr = strndup(f->json, f->hlen);
    const char *p = strstr(hdr, key), *off = p ? strstr(p, "\"data_offsets\":[") : NULL;
    const float *res = NULL;
    unsigned long long a, b;
    if (off && sscanf(off, "\"data_offsets\":[%llu,%llu]", &a, &b) == 2 && b <= f->n - 8 - f->hlen && a <= b) {
        res = (const float *)(f->buf + 8 + f->hlen + a);
        *count = (int64_t)((b - a) / 4);
    }
    free(hdr);
    return res;
}

KT_TEST(attention_matches_pytorch_fixture) {
    stfile f = {0};
    KT_CHECKF(st_load(&f, "tests/data/attention.safetensors"), "cannot read tests/data/attention.safetensors");
    if (!f.buf) return;
    static const char *names[] = {"self_mask", "cross", "temporal"};
    kn_set_threads(2);
    for (int c = 0; c < 3; c++) {
        char key[64];
        int64_t cnt;
#define GET(var, nm)                                                           \
    snprintf(key, sizeof key, "%s.%s", names[c], nm);                          \
    const float *var = st_get(&f, key, &cnt);                                  \
    KT_CHECKF(var != NULL || !strcmp(nm, "mask"), "fixture lacks %s", key);
        GET(dims, "dims") GET(q, "q") GET(k, "k") GET(v, "v") GET(g, "dout") GET(mask, "mask")
        GET(o_ref, "o") GET(lse_ref, "lse") GET(dq_ref, "dq") GET(dk_ref, "dk") GET(dv_ref, "dv")
#undef GET
        if (!dims || !q || !k || !v || !g || !o_ref || !lse_ref || !dq_ref || !dk_ref || !dv_ref) continue;
        int64_t B = (int64_t)dims[0], Lq = (int64_t)dims[1], Lk = (int64_t)dims[2], H = (int64_t)dims[3];
        int64_t D = (int64_t)dims[4], Dv = (int64_t)dims[5], C = H * D, Cv = H * Dv;
        float scale = dims[6];
        float *o = malloc((size_t)(B * Lq * Cv) * 4), *lse = malloc((size_t)(B * H * Lq) * 4);
        float *dq = calloc((size_t)(B * Lq * C), 4), *dk = calloc((size_t)(B * Lk * C), 4);
        float *dv = calloc((size_t)(B * Lk * Cv), 4);
        kn_tensor tq = t3((float *)q, B, Lq, C), tk = t3((float *)k, B, Lk, C), tv = t3((float *)v, B, Lk, Cv);
        kn_tensor tg = t3((float *)g, B, Lq, Cv), tm = t3((float *)mask, B, Lq, Lk), to = t3(o, B, Lq, Cv);
        kn_tensor tdq = t3(dq, B, Lq, C), tdk = t3(dk, B, Lk, C), tdv = t3(dv, B, Lk, Cv);
        KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, scale, mask ? &tm : NULL, &to, lse));
        KT_OK(kn_attention_backward(&tq, &tk, &tv, (int)H, scale, mask ? &tm : NULL, &to, lse, &tg, &tdq, &tdk, &tdv));
        double e[5] = {kt_max_abs_diff(o, o_ref, B * Lq * Cv), kt_max_abs_diff(lse, lse_ref, B * H * Lq),
                       kt_max_abs_diff(dq, dq_ref, B * Lq * C), kt_max_abs_diff(dk, dk_ref, B * Lk * C),
                       kt_max_abs_diff(dv, dv_ref, B * Lk * Cv)};
        KT_CHECKF(e[0] < 1e-5 && e[1] < 1e-5 && e[2] < 3e-5 && e[3] < 3e-5 && e[4] < 3e-5,
                  "%s: |o| %.3g |lse| %.3g |dq| %.3g |dk| %.3g |dv| %.3g", names[c], e[0], e[1], e[2], e[3], e[4]);
        free(o), free(lse), free(dq), free(dk), free(dv);
    }
    kn_set_threads(1);
    free(f.buf);
}

/* --------------------------------------------------------- determinism */

KT_TEST(attention_bitwise_identical_for_1_2_3_threads) {
    int64_t B = 2, Lq = 150, Lk = 131, H = 3, D = 40, Dv = 24, C = H * D, Cv = H * Dv;
    float *q = frand(B * Lq * C, 71), *k = frand(B * Lk * C, 72), *v = frand(B * Lk * Cv, 73), *g = frand(B * Lq * Cv, 74);
    float *m = make_mask(B, Lq, Lk, 75, 3);
    kn_tensor tq = t3(q, B, Lq, C), tk = t3(k, B, Lk, C), tv = t3(v, B, Lk, Cv), tg = t3(g, B, Lq, Cv), tm = t3(m, B, Lq, Lk);
    float *res[3][5];
    int64_t n[5] = {B * Lq * Cv, B * H * Lq, B * Lq * C, B * Lk * C, B * Lk * Cv};
    for (int t = 0; t < 3; t++) {
        kn_set_threads(t + 1);
        for (int i = 0; i < 5; i++) res[t][i] = calloc((size_t)n[i], 4);
        kn_tensor to = t3(res[t][0], B, Lq, Cv), tdq = t3(res[t][2], B, Lq, C), tdk = t3(res[t][3], B, Lk, C);
        kn_tensor tdv = t3(res[t][4], B, Lk, Cv);
        KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, 0.15f, &tm, &to, res[t][1]));
        KT_OK(kn_attention_backward(&tq, &tk, &tv, (int)H, 0.15f, &tm, &to, res[t][1], &tg, &tdq, &tdk, &tdv));
    }
    kn_set_threads(1);
    for (int t = 1; t < 3; t++)
        for (int i = 0; i < 5; i++)
            KT_CHECKF(memcmp(res[0][i], res[t][i], (size_t)n[i] * 4) == 0, "output %d differs at %d threads", i, t + 1);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 5; i++) free(res[t][i]);
    free(q), free(k), free(v), free(g), free(m);
}

/* -------------------------------------------------------------- errors */

KT_TEST(attention_rejects_bad_shapes) {
    float buf[4096] = {0}, lse[256];
    kn_tensor q = t3(buf, 2, 4, 8), k = t3(buf, 2, 6, 8), v = t3(buf, 2, 6, 8), o = t3(buf + 2048, 2, 4, 8);
    kn_tensor k_badb = t3(buf, 3, 6, 8), k_badc = t3(buf, 2, 6, 12), v_badl = t3(buf, 2, 5, 8);
    kn_tensor o_bad = t3(buf + 2048, 2, 4, 6), m_bad = t3(buf, 2, 4, 5), m_ok = t3(buf, 1, 4, 6);
    KT_CHECK(kn_attention(NULL, &q, &k_badb, &v, 2, 1, NULL, &o, lse) == KN_ERR_SHAPE);
    KT_CHECK(kn_attention(NULL, &q, &k_badc, &v, 2, 1, NULL, &o, lse) == KN_ERR_SHAPE);
    KT_CHECK(strstr(kn_last_error(), "attention") && strstr(kn_last_error(), "(2,6,12)"));
    KT_CHECK(kn_attention(NULL, &q, &k, &v_badl, 2, 1, NULL, &o, lse) == KN_ERR_SHAPE);
    KT_CHECK(kn_attention(NULL, &q, &k, &v, 3, 1, NULL, &o, lse) == KN_ERR_SHAPE); /* 3 heads, 8 channels */
    KT_CHECK(strstr(kn_last_error(), "heads") != NULL);
    KT_CHECK(kn_attention(NULL, &q, &k, &v, 0, 1, NULL, &o, lse) == KN_ERR_ARG);
    KT_CHECK(kn_attention(NULL, &q, &k, &v, 2, 1, NULL, &o_bad, lse) == KN_ERR_SHAPE);
    KT_CHECK(kn_attention(NULL, &q, &k, &v, 2, 1, &m_bad, &o, lse) == KN_ERR_SHAPE);
    KT_CHECK(kn_attention(NULL, &q, &k, &v, 2, NAN, NULL, &o, lse) == KN_ERR_ARG);
    kn_tensor o_nodata = t3(NULL, 2, 4, 8);
    KT_CHECK(kn_attention(NULL, &q, &k, &v, 2, 1, NULL, &o_nodata, lse) == KN_ERR_ARG);
    kn_tensor qi = q;
    qi.dtype = KN_I32;
    KT_CHECK(kn_attention(NULL, &qi, &k, &v, 2, 1, NULL, &o, lse) == KN_ERR_DTYPE);
    kn_tensor q2 = kn_tensor_view(KN_F32, 2, q.shape, buf);
    KT_CHECK(kn_attention(NULL, &q2, &k, &v, 2, 1, NULL, &o, lse) != KN_OK);
    KT_OK(kn_attention(NULL, &q, &k, &v, 2, 1, &m_ok, &o, lse));
    /* arena allocation of o */
    kn_arena *A = kn_arena_new(1 << 16);
    kn_tensor oa = t3(NULL, 2, 4, 8);
    KT_OK(kn_attention(A, &q, &k, &v, 2, 1, NULL, &oa, lse));
    KT_CHECK(oa.data != NULL && oa.shape[2] == 8);
    kn_arena_free(A);
    /* backward */
    KT_CHECK(kn_attention_backward(&q, &k, &v, 2, 1, NULL, &o, NULL, &o, NULL, NULL, NULL) == KN_ERR_ARG);
    kn_tensor dk_bad = t3(buf + 3000, 2, 5, 8);
    KT_CHECK(kn_attention_backward(&q, &k, &v, 2, 1, NULL, &o, lse, &o, NULL, &dk_bad, NULL) == KN_ERR_SHAPE);
    KT_CHECK(kn_attention_backward(&q, &k, &v, 2, 1, NULL, &o_bad, lse, &o, NULL, NULL, NULL) == KN_ERR_SHAPE);
}

/* ------------------------------------------------------------- softmax */

KT_TEST(softmax_forward_backward_match_definition) {
    int64_t R = 37, N = 45;
    float *x = frand(R * N, 81), *y = malloc((size_t)(R * N) * 4), *dy = frand(R * N, 82);
    float *dx = malloc((size_t)(R * N) * 4);
    for (int64_t j = 0; j < N; j++) x[3 * N + j] = -INFINITY;        /* all -inf row -> zeros */
    x[5 * N + 7] = -INFINITY;                                       /* one masked entry -> 0 */
    for (int64_t j = 0; j < N; j++) x[6 * N + j] = 1000.0f + j;     /* large values stay finite */
    int64_t sh[3] = {R, 1, N};
    kn_tensor tx = kn_tensor_view(KN_F32, 3, sh, x), ty = kn_tensor_view(KN_F32, 3, sh, y);
    kn_tensor tdy = kn_tensor_view(KN_F32, 3, sh, dy), tdx = kn_tensor_view(KN_F32, 3, sh, dx);
    kn_set_threads(2);
    KT_OK(kn_softmax(NULL, &tx, &ty));
    for (int64_t i = 0; i < R * N; i++) dx[i] = 0.25f;
    KT_OK(kn_softmax_backward(&ty, &tdy, &tdx));
    kn_set_threads(1);
    double ey = 0, edx = 0;
    for (int64_t r = 0; r < R; r++) {
        double mx = -INFINITY, s = 0, sd = 0;
        for (int64_t j = 0; j < N; j++) mx = fmax(mx, x[r * N + j]);
        for (int64_t j = 0; j < N; j++) s += mx == -INFINITY ? 0 : exp(x[r * N + j] - mx);
        double p[64];
        for (int64_t j = 0; j < N; j++) {
            p[j] = s > 0 ? exp(x[r * N + j] - mx) / s : 0;
            sd += p[j] * dy[r * N + j];
            ey = fmax(ey, fabs(y[r * N + j] - p[j]));
        }
        for (int64_t j = 0; j < N; j++)
            edx = fmax(edx, fabs(dx[r * N + j] - (0.25 + p[j] * (dy[r * N + j] - sd))));
    }
    KT_CHECKF(ey < 1e-6 && edx < 1e-5, "softmax err %.3g, backward err %.3g", ey, edx);
    KT_CHECK(y[5 * N + 7] == 0.0f && y[3 * N] == 0.0f);
    /* in place, and identical for 3 threads */
    float *z = malloc((size_t)(R * N) * 4);
    memcpy(z, x, (size_t)(R * N) * 4);
    kn_tensor tz = kn_tensor_view(KN_F32, 3, sh, z);
    kn_set_threads(3);
    KT_OK(kn_softmax(NULL, &tz, &tz));
    kn_set_threads(1);
    KT_CHECK(memcmp(z, y, (size_t)(R * N) * 4) == 0);
    /* errors */
    int64_t sh2[3] = {R, 1, N - 1};
    kn_tensor tbad = kn_tensor_view(KN_F32, 3, sh2, y);
    KT_CHECK(kn_softmax(NULL, &tx, &tbad) == KN_ERR_SHAPE);
    KT_CHECK(kn_softmax_backward(&ty, &tbad, &tdx) == KN_ERR_SHAPE);
    kn_tensor tnull = kn_tensor_view(KN_F32, 3, sh, NULL);
    KT_CHECK(kn_softmax(NULL, &tx, &tnull) == KN_ERR_ARG);
    free(x), free(y), free(dy), free(dx), free(z);
}

/* finite differences of sum(softmax(x) * w) */
KT_TEST(softmax_backward_finite_differences) {
    int64_t R = 3, N = 19;
    float *x = frand(R * N, 91), *w = frand(R * N, 92), *y = malloc((size_t)(R * N) * 4), *dx = calloc((size_t)(R * N), 4);
    int64_t sh[2] = {R, N};
    kn_tensor tx = kn_tensor_view(KN_F32, 2, sh, x), ty = kn_tensor_view(KN_F32, 2, sh, y);
    kn_tensor tw = kn_tensor_view(KN_F32, 2, sh, w), tdx = kn_tensor_view(KN_F32, 2, sh, dx);
    KT_OK(kn_softmax(NULL, &tx, &ty));
    KT_OK(kn_softmax_backward(&ty, &tw, &tdx));
    double worst = 0;
    for (int64_t i = 0; i < R * N; i++) {
        float keep = x[i], eps = 1e-2f;
        double lp = 0, lm = 0;
        x[i] = keep + eps;
        KT_OK(kn_softmax(NULL, &tx, &ty));
        for (int64_t j = 0; j < R * N; j++) lp += (double)y[j] * w[j];
        x[i] = keep - eps;
        KT_OK(kn_softmax(NULL, &tx, &ty));
        for (int64_t j = 0; j < R * N; j++) lm += (double)y[j] * w[j];
        x[i] = keep;
        worst = fmax(worst, fabs((lp - lm) / (2 * eps) - dx[i]));
    }
    KT_CHECKF(worst < 1e-3, "finite-difference mismatch %.3g", worst);
    free(x), free(w), free(y), free(dx);
}

/* The short-sequence path (Lk <= one key block: temporal attention over frames) against the
 * float64 definition — o and lse — on temporal-like shapes (many sequences of 8, 16, 24, 64
 * frames, several heads, Dv != D, odd sizes, query blocks over 64, masks with fully masked rows,
 * q/k/v/o as strided views of fused buffers), and bitwise equal for 1, 2 and 3 threads. */
KT_TEST(attention_short_sequences_match_definition_and_threads) {
    static const shape_case sc[] = {
        {64, 8, 8, 2, 64, 64, 0}, {37, 16, 16, 3, 32, 48, 1}, {5, 24, 24, 1, 64, 64, 2},
        {3, 64, 64, 5, 64, 64, 3}, {2, 100, 128, 2, 16, 16, 1}, {9, 1, 7, 4, 8, 20, 0},
    };
    for (size_t ci = 0; ci < sizeof sc / sizeof sc[0]; ci++) {
        shape_case s = sc[ci];
        int64_t C = s.H * s.D, Cv = s.H * s.Dv, W = 2 * C + Cv + 5; /* fused row: q | k | v | pad */
        int64_t Lmax = s.Lq > s.Lk ? s.Lq : s.Lk;
        float *fused = frand(s.B * Lmax * W, 300 + ci);
        float *q = malloc((size_t)(s.B * s.Lq * C) * 4), *k = malloc((size_t)(s.B * s.Lk * C) * 4);
        float *v = malloc((size_t)(s.B * s.Lk * Cv) * 4);
        for (int64_t b = 0; b < s.B; b++) { /* contiguous copies for the reference */
            for (int64_t i = 0; i < s.Lq; i++)
                memcpy(q + (b * s.Lq + i) * C, fused + (b * Lmax + i) * W, (size_t)C * 4);
            for (int64_t j = 0; j < s.Lk; j++) {
                memcpy(k + (b * s.Lk + j) * C, fused + (b * Lmax + j) * W + C, (size_t)C * 4);
                memcpy(v + (b * s.Lk + j) * Cv, fused + (b * Lmax + j) * W + 2 * C, (size_t)Cv * 4);
            }
        }
        int64_t mb = s.mask == 1 ? s.B : 1;
        float *m = s.mask ? make_mask(mb, s.Lq, s.Lk, 400 + ci, s.Lq > 2 ? 2 : -1) : NULL;
        int64_t ms3[3] = {mb, s.Lq, s.Lk};
        kn_tensor tm = kn_tensor_view(KN_F32, s.mask == 3 ? 2 : 3, s.mask == 3 ? ms3 + 1 : ms3, m);
        /* strided views into the fused buffer, output into a wider buffer too */
        int64_t sq[3] = {s.B, s.Lq, C}, sk[3] = {s.B, s.Lk, C}, sv[3] = {s.B, s.Lk, Cv}, so[3] = {s.B, s.Lq, Cv};
        kn_tensor tq = kn_tensor_view(KN_F32, 3, sq, fused), tk = kn_tensor_view(KN_F32, 3, sk, fused + C);
        kn_tensor tv = kn_tensor_view(KN_F32, 3, sv, fused + 2 * C);
        tq.stride[0] = tk.stride[0] = tv.stride[0] = Lmax * W;
        tq.stride[1] = tk.stride[1] = tv.stride[1] = W;
        int64_t OW = Cv + 3;
        float *ob[3], *lse[3];
        for (int t = 0; t < 3; t++) {
            ob[t] = calloc((size_t)(s.B * s.Lq * OW), 4);
            lse[t] = malloc((size_t)(s.B * s.H * s.Lq) * 4);
            kn_tensor to = kn_tensor_view(KN_F32, 3, so, ob[t]);
            to.stride[0] = s.Lq * OW, to.stride[1] = OW;
            kn_set_threads(t + 1);
            KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)s.H, 0.3f, s.mask ? &tm : NULL, &to, lse[t]));
        }
        kn_set_threads(1);
        double *o = malloc((size_t)(s.B * s.Lq * Cv) * 8), *l = malloc((size_t)(s.B * s.H * s.Lq) * 8);
        naive_attention(q, k, v, m, mb, s.B, s.Lq, s.Lk, s.H, s.D, s.Dv, 0.3f, o, l, NULL, NULL, NULL, NULL);
        float *oc = malloc((size_t)(s.B * s.Lq * Cv) * 4);
        for (int64_t r = 0; r < s.B * s.Lq; r++)
            memcpy(oc + r * Cv, ob[0] + r * OW, (size_t)Cv * 4);
        int pad_ok = 1;
        for (int64_t r = 0; r < s.B * s.Lq; r++)
            for (int64_t x = Cv; x < OW; x++) pad_ok &= ob[0][r * OW + x] == 0.0f;
        double eo = max_rel(oc, o, s.B * s.Lq * Cv), el = max_rel(lse[0], l, s.B * s.H * s.Lq);
        KT_CHECKF(eo < 2e-5 && el < 2e-5, "case %zu: o err %g, lse err %g", ci, eo, el);
        KT_CHECKF(pad_ok, "case %zu: wrote past the output rows", ci);
        for (int t = 1; t < 3; t++)
            KT_CHECKF(memcmp(ob[0], ob[t], (size_t)(s.B * s.Lq * OW) * 4) == 0 &&
                          memcmp(lse[0], lse[t], (size_t)(s.B * s.H * s.Lq) * 4) == 0,
                      "case %zu: differs at %d threads", ci, t + 1);
        /* backward (the fused one-block path when Lq <= 64) at 1 and 3 threads, contiguous inputs */
        float *g = frand(s.B * s.Lq * Cv, 500 + ci), *gr[2][3];
        kn_tensor cq = t3(q, s.B, s.Lq, C), ck = t3(k, s.B, s.Lk, C), cv = t3(v, s.B, s.Lk, Cv), co = t3(oc, s.B, s.Lq, Cv);
        kn_tensor cg = t3(g, s.B, s.Lq, Cv);
        KT_OK(kn_attention(NULL, &cq, &ck, &cv, (int)s.H, 0.3f, s.mask ? &tm : NULL, &co, lse[0]));
        int64_t gn[3] = {s.B * s.Lq * C, s.B * s.Lk * C, s.B * s.Lk * Cv};
        for (int t = 0; t < 2; t++) {
            for (int x = 0; x < 3; x++) gr[t][x] = calloc((size_t)gn[x], 4);
            kn_tensor tdq = t3(gr[t][0], s.B, s.Lq, C), tdk = t3(gr[t][1], s.B, s.Lk, C), tdv = t3(gr[t][2], s.B, s.Lk, Cv);
            kn_set_threads(t ? 3 : 1);
            KT_OK(kn_attention_backward(&cq, &ck, &cv, (int)s.H, 0.3f, s.mask ? &tm : NULL, &co, lse[0], &cg, &tdq, &tdk,
                                        &tdv));
        }
        kn_set_threads(1);
        for (int x = 0; x < 3; x++) {
            KT_CHECKF(memcmp(gr[0][x], gr[1][x], (size_t)gn[x] * 4) == 0, "case %zu: gradient %d differs at 3 threads", ci, x);
            free(gr[0][x]), free(gr[1][x]);
        }
        free(g);
        for (int t = 0; t < 3; t++) free(ob[t]), free(lse[t]);
        free(fused), free(q), free(k), free(v), free(m), free(o), free(l), free(oc);
    }
}

/* The short paths (Lk = 128 keys: one key block; backward with Lq <= 64 too: passes fused) give
 * the bits of the blocked paths: the same keys plus 2 fully masked ones (Lk = 130, two key blocks;
 * the second adds exact zeros). Lq = 70 (two query blocks) and 60 (one). */
KT_TEST(attention_short_path_bitwise_equals_blocked_path) {
    for (int pass = 0; pass < 2; pass++) {
        int64_t B = 2, Lq = pass ? 60 : 70, H = 2, D = 24, Dv = 40, C = H * D, Cv = H * Dv;
        float *q = frand(B * Lq * C, 91), *k = frand(B * 130 * C, 92), *v = frand(B * 130 * Cv, 93);
        float *g = frand(B * Lq * Cv, 95);
        float *m128 = make_mask(1, Lq, 128, 94, 5), *m130 = malloc((size_t)(Lq * 130) * 4);
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t j = 0; j < 130; j++) m130[i * 130 + j] = j < 128 ? m128[i * 128 + j] : -INFINITY;
        float *o[2], *l[2], *dq[2], *dk[2], *dv[2];
        for (int r = 0; r < 2; r++) {
            o[r] = malloc((size_t)(B * Lq * Cv) * 4), l[r] = malloc((size_t)(B * H * Lq) * 4);
            dq[r] = calloc((size_t)(B * Lq * C), 4), dk[r] = calloc((size_t)(B * 130 * C), 4);
            dv[r] = calloc((size_t)(B * 130 * Cv), 4);
            int64_t Lk = r ? 130 : 128, ms[2] = {Lq, Lk};
            kn_tensor tq = t3(q, B, Lq, C), to = t3(o[r], B, Lq, Cv), tg = t3(g, B, Lq, Cv), tdq = t3(dq[r], B, Lq, C);
            kn_tensor tk = t3(k, B, Lk, C), tv = t3(v, B, Lk, Cv), tdk = t3(dk[r], B, Lk, C), tdv = t3(dv[r], B, Lk, Cv);
            tk.stride[0] = tdk.stride[0] = 130 * C, tv.stride[0] = tdv.stride[0] = 130 * Cv; /* first Lk keys */
            kn_tensor tm = kn_tensor_view(KN_F32, 2, ms, r ? m130 : m128);
            KT_OK(kn_attention(NULL, &tq, &tk, &tv, (int)H, 0.2f, &tm, &to, l[r]));
            KT_OK(kn_attention_backward(&tq, &tk, &tv, (int)H, 0.2f, &tm, &to, l[r], &tg, &tdq, &tdk, &tdv));
        }
        KT_CHECKF(memcmp(o[0], o[1], (size_t)(B * Lq * Cv) * 4) == 0, "Lq %lld: o", (long long)Lq);
        KT_CHECKF(memcmp(l[0], l[1], (size_t)(B * H * Lq) * 4) == 0, "Lq %lld: lse", (long long)Lq);
        KT_CHECKF(memcmp(dq[0], dq[1], (size_t)(B * Lq * C) * 4) == 0, "Lq %lld: dq", (long long)Lq);
        KT_CHECKF(memcmp(dk[0], dk[1], (size_t)(B * 130 * C) * 4) == 0, "Lq %lld: dk", (long long)Lq);
        KT_CHECKF(memcmp(dv[0], dv[1], (size_t)(B * 130 * Cv) * 4) == 0, "Lq %lld: dv", (long long)Lq);
        KT_CHECK(isinf(l[0][5]) && o[0][5 * Cv] == 0.0f && dq[0][5 * C] == 0.0f); /* fully masked query 5 */
        for (int r = 0; r < 2; r++) free(o[r]), free(l[r]), free(dq[r]), free(dk[r]), free(dv[r]);
        free(q), free(k), free(v), free(g), free(m128), free(m130);
    }
}
