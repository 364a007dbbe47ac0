/* test_conv.c — conv2d, temporal conv, conv3d: fast paths vs naive loops, finite differences,
 * PyTorch fixtures (dev/ref_conv.py -> tests/data/conv_ref.safetensors), bitwise equality across
 * thread counts, and shape errors. */
#include "kt.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ naive references (double) */

/* A general grouped 3-D convolution on contiguous (N,C,T,H,W) data, pads before (pt,ph,pw),
 * output size given. Accumulates in double. */
typedef struct {
    int64_t N, C, T, H, W, O, G;
    int kt, kh, kw, st, sh, sw, pt, ph, pw;
    int64_t To, Ho, Wo;
} ngeom;

#define XI(g, n, c, t, h, w) ((((((n) * (g)->C + (c)) * (g)->T + (t)) * (g)->H + (h)) * (g)->W + (w)))
#define YI(g, n, o, t, h, w) ((((((n) * (g)->O + (o)) * (g)->To + (t)) * (g)->Ho + (h)) * (g)->Wo + (w)))
#define WI(g, o, c, a, u, v) ((((((o) * ((g)->C / (g)->G) + (c)) * (g)->kt + (a)) * (g)->kh + (u)) * (g)->kw + (v)))

/* Visits every (y index, x index, w index) product term of the convolution. */
#define NAIVE_LOOP(g, BODY)                                                                       \
    for (int64_t n = 0; n < (g)->N; n++)                                                          \
        for (int64_t o = 0; o < (g)->O; o++)                                                      \
            for (int64_t to = 0; to < (g)->To; to++)                                              \
                for (int64_t ho = 0; ho < (g)->Ho; ho++)                                          \
                    for (int64_t wo = 0; wo < (g)->Wo; wo++)                                      \
                        for (int64_t c = 0; c < (g)->C / (g)->G; c++)                             \
                            for (int a = 0; a < (g)->kt; a++)                                     \
                                for (int u = 0; u < (g)->kh; u++)                                 \
                                    for (int v = 0; v < (g)->kw; v++) {                           \
                                        int64_t ti = to * (g)->st + a - (g)->pt;                  \
                                        int64_t hi = ho * (g)->sh + u - (g)->ph;                  \
                                        int64_t wi = wo * (g)->sw + v - (g)->pw;                  \
                                        if (ti < 0 || ti >= (g)->T || hi < 0 || hi >= (g)->H ||   \
                                            wi < 0 || wi >= (g)->W)                               \
                                            continue;                                             \
                                        int64_t ci = o / ((g)->O / (g)->G) * ((g)->C / (g)->G) + c; \
                                        int64_t yi = YI(g, n, o, to, ho, wo);                     \
                                        int64_t xi = XI(g, n, ci, ti, hi, wi);                    \
                                        int64_t wj = WI(g, o, c, a, u, v);                        \
                                        BODY                                                      \
                                    }

static void naive_fwd(const ngeom *g, const float *x, const float *w, const float *b, double *y) {
    int64_t ny = g->N * g->O * g->To * g->Ho * g->Wo, S = g->To * g->Ho * g->Wo;
    for (int64_t i = 0; i < ny; i++)
        y[i] = b ? b[(i / S) % g->O] : 0.0;
    NAIVE_LOOP(g, { y[yi] += (double)x[xi] * w[wj]; });
}

static void naive_bwd(const ngeom *g, const float *x, const float *w, const float *dy, double *dx, double *dw,
                      double *db) {
    int64_t ny = g->N * g->O * g->To * g->Ho * g->Wo, S = g->To * g->Ho * g->Wo;
    for (int64_t i = 0; i < ny; i++)
        db[(i / S) % g->O] += dy[i];
    NAIVE_LOOP(g, {
        dx[xi] += (double)dy[yi] * w[wj];
        dw[wj] += (double)dy[yi] * x[xi];
    });
}

/* max |a - b| / (1 + max |b|) */
static double rel_err_d(const float *a, const double *b, int64_t n) {
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        m = fmax(m, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return m / (1.0 + s);
}

static double rel_err(const float *a, const float *b, int64_t n) {
    return kt_max_abs_diff(a, b, n) / (1.0 + kt_max_abs(b, n));
}

static float *randv(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)n * sizeof(float));
    kn_randn_fill(p, n, seed, 0);
    return p;
}

static float *zerov(int64_t n) { return calloc((size_t)n, sizeof(float)); }

/* ------------------------------------------------------------------ conv2d vs naive */

typedef struct {
    int64_t N, C, H, W, O;
    int k, s, pt, pb, pl, pr, groups;
} c2case;

static const c2case c2cases[] = {
    {2, 3, 9, 7, 4, 3, 1, 1, 1, 1, 1, 1},      /* conv_in class: C = 3, odd H, W */
    {2, 4, 11, 10, 6, 3, 2, 1, 1, 1, 1, 2},    /* groups 2, stride 2 */
    {1, 5, 9, 8, 3, 3, 2, 0, 1, 0, 1, 1},      /* VAE downsample: pad (0,1,0,1), stride 2 */
    {2, 37, 13, 11, 19, 3, 1, 1, 1, 1, 1, 1},  /* several channel blocks, odd everything */
    {1, 6, 7, 9, 4, 1, 1, 0, 0, 0, 0, 1},      /* 1x1 */
    {1, 4, 10, 9, 5, 5, 1, 2, 2, 2, 2, 1},     /* 5x5 */
    {1, 8, 6, 7, 8, 3, 1, 1, 1, 1, 1, 4},      /* groups 4 */
    {3, 2, 40, 37, 3, 3, 1, 1, 1, 1, 1, 1},    /* many position tiles (K = 18) */
    {1, 3, 8, 9, 2, 2, 3, 1, 0, 2, 1, 1},      /* even kernel, stride 3, uneven pads */
    {7, 30, 6, 7, 8, 3, 1, 1, 1, 1, 1, 1},     /* K >= 256, small images: tiles of 6 samples + 1 */
    {1, 32, 20, 19, 8, 3, 1, 1, 1, 1, 1, 1},   /* K >= 256, 380 positions: 2 tiles in a sample */
    {1, 16, 5, 6, 130, 3, 1, 1, 1, 1, 1, 1},   /* one tile, O = 130: output channels split in 2 */
};

static void c2_geom(const c2case *c, ngeom *g) {
    memset(g, 0, sizeof *g);
    g->N = c->N; g->C = c->C; g->T = 1; g->H = c->H; g->W = c->W; g->O = c->O; g->G = c->groups;
    g->kt = 1; g->kh = g->kw = c->k; g->st = 1; g->sh = g->sw = c->s;
    g->pt = 0; g->ph = c->pt; g->pw = c->pl;
    g->To = 1;
    g->Ho = (c->H + c->pt + c->pb - c->k) / c->s + 1;
    g->Wo = (c->W + c->pl + c->pr - c->k) / c->s + 1;
}

static kn_conv2d_params c2_params(const c2case *c) {
    kn_conv2d_params p = {c->s, c->s, c->pt, c->pb, c->pl, c->pr, c->groups};
    return p;
}

KT_TEST(conv2d_matches_naive_forward_and_backward) {
    for (size_t ci = 0; ci < sizeof c2cases / sizeof c2cases[0]; ci++) {
        const c2case *c = &c2cases[ci];
        ngeom g;
        c2_geom(c, &g);
        kn_conv2d_params p = c2_params(c);
        int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->O, c->C / c->groups, c->k, c->k};
        int64_t ys[4] = {c->N, c->O, g.Ho, g.Wo}, bs[1] = {c->O};
        int64_t nx = c->N * c->C * c->H * c->W, nw = ws[0] * ws[1] * ws[2] * ws[3];
        int64_t ny = ys[0] * ys[1] * ys[2] * ys[3];
        float *x = randv(nx, 10 + ci), *w = randv(nw, 20 + ci), *b = randv(c->O, 30 + ci);
        float *dy = randv(ny, 40 + ci), *y = zerov(ny), *yr = zerov(ny);
        kn_tensor tx = kn_tensor_view(KN_F32, 4, xs, x), tw = kn_tensor_view(KN_F32, 4, ws, w);
        kn_tensor tb = kn_tensor_view(KN_F32, 1, bs, b), ty = kn_tensor_view(KN_F32, 4, ys, y);
        kn_tensor tdy = kn_tensor_view(KN_F32, 4, ys, dy);
        KT_OK(kn_conv2d(NULL, &tx, &tw, &tb, p, &ty));
        kn_conv2d_ref(x, w, b, yr, c->N, c->C, c->H, c->W, c->O, c->k, c->k, p);
        double *yd = calloc((size_t)ny, sizeof(double));
        naive_fwd(&g, x, w, b, yd);
        KT_CHECKF(rel_err(y, yr, ny) < 2e-6, "case %zu: fast vs conv2d_ref %.3g", ci, rel_err(y, yr, ny));
        KT_CHECKF(rel_err_d(yr, yd, ny) < 2e-6, "case %zu: conv2d_ref vs double %.3g", ci, rel_err_d(yr, yd, ny));

        /* backward accumulates: start from 0.5 everywhere */
        float *dx = malloc((size_t)nx * 4), *dw = malloc((size_t)nw * 4), *db = malloc((size_t)c->O * 4);
        for (int64_t i = 0; i < nx; i++) dx[i] = 0.5f;
        for (int64_t i = 0; i < nw; i++) dw[i] = 0.5f;
        for (int64_t i = 0; i < c->O; i++) db[i] = 0.5f;
        double *dxd = calloc((size_t)nx, 8), *dwd = calloc((size_t)nw, 8), *dbd = calloc((size_t)c->O, 8);
        naive_bwd(&g, x, w, dy, dxd, dwd, dbd);
        for (int64_t i = 0; i < nx; i++) dxd[i] += 0.5;
        for (int64_t i = 0; i < nw; i++) dwd[i] += 0.5;
        for (int64_t i = 0; i < c->O; i++) dbd[i] += 0.5;
        kn_tensor tdx = kn_tensor_view(KN_F32, 4, xs, dx), tdw = kn_tensor_view(KN_F32, 4, ws, dw);
        kn_tensor tdb = kn_tensor_view(KN_F32, 1, bs, db);
        KT_OK(kn_conv2d_backward(&tx, &tw, &tdy, p, &tdx, &tdw, &tdb));
        KT_CHECKF(rel_err_d(dx, dxd, nx) < 2e-6, "case %zu: dx %.3g", ci, rel_err_d(dx, dxd, nx));
        KT_CHECKF(rel_err_d(dw, dwd, nw) < 2e-6, "case %zu: dw %.3g", ci, rel_err_d(dw, dwd, nw));
        KT_CHECKF(rel_err_d(db, dbd, c->O) < 2e-6, "case %zu: db %.3g", ci, rel_err_d(db, dbd, c->O));
        free(x); free(w); free(b); free(dy); free(y); free(yr); free(yd);
        free(dx); free(dw); free(db); free(dxd); free(dwd); free(dbd);
    }
}

/* ------------------------------------------------------------------ layouts for temporal conv */

/* (N, C, T, H, W) <-> folded (N*T, C, H, W) */
static void to_folded(const float *v, float *f, int64_t N, int64_t C, int64_t T, int64_t HW) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < T; t++)
                memcpy(f + ((n * T + t) * C + c) * HW, v + ((n * C + c) * T + t) * HW, (size_t)HW * 4);
}

static void from_folded(const float *f, float *v, int64_t N, int64_t C, int64_t T, int64_t HW) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < T; t++)
                memcpy(v + ((n * C + c) * T + t) * HW, f + ((n * T + t) * C + c) * HW, (size_t)HW * 4);
}

KT_TEST(conv_temporal_and_conv3d_match_naive) {
    /* temporal, k = 3: small frames with pads (1,1) and (2,0) (causal); 16x16 frames with
     * C = 90 (K >= 256: 256-wide tiles inside one frame, GEMMs straight on y) */
    static const int64_t cfg[3][8] = {{2, 5, 6, 3, 5, 7, 1, 1}, {2, 5, 6, 3, 5, 7, 2, 0}, {1, 90, 3, 16, 16, 8, 1, 1}};
    for (int pi = 0; pi < 3; pi++) {
        int64_t N = cfg[pi][0], C = cfg[pi][1], T = cfg[pi][2], H = cfg[pi][3], W = cfg[pi][4], O = cfg[pi][5];
        int64_t HW = H * W;
        int pf = (int)cfg[pi][6], pb = (int)cfg[pi][7], k = 3;
        int64_t To = T + pf + pb - k + 1;
        ngeom g = {N, C, T, H, W, O, 1, k, 1, 1, 1, 1, 1, pf, 0, 0, To, H, W};
        int64_t nx = N * C * T * HW, ny = N * O * To * HW, nw = O * C * k;
        float *x5 = randv(nx, 1), *w = randv(nw, 2), *b = randv(O, 3), *dy5 = randv(ny, 4);
        float *xf = malloc(nx * 4), *dyf = malloc(ny * 4), *yf = malloc(ny * 4), *y5 = malloc(ny * 4);
        to_folded(x5, xf, N, C, T, HW);
        to_folded(dy5, dyf, N, O, To, HW);
        int64_t xs[4] = {N * T, C, H, W}, ys[4] = {N * To, O, H, W}, ws[5] = {O, C, k, 1, 1}, bs[1] = {O};
        kn_tensor tx = kn_tensor_view(KN_F32, 4, xs, xf), ty = kn_tensor_view(KN_F32, 4, ys, yf);
        kn_tensor tw = kn_tensor_view(KN_F32, 5, ws, w), tb = kn_tensor_view(KN_F32, 1, bs, b);
        kn_tensor tdy = kn_tensor_view(KN_F32, 4, ys, dyf);
        KT_OK(kn_conv_temporal(NULL, &tx, T, &tw, &tb, pf, pb, &ty));
        from_folded(yf, y5, N, O, To, HW);
        double *yd = calloc(ny, 8);
        naive_fwd(&g, x5, w, b, yd);
        KT_CHECKF(rel_err_d(y5, yd, ny) < 2e-6, "temporal pads %d,%d: y %.3g", pf, pb, rel_err_d(y5, yd, ny));

        float *dxf = zerov(nx), *dx5 = malloc(nx * 4), *dw = zerov(nw), *db = zerov(O);
        kn_tensor tdx = kn_tensor_view(KN_F32, 4, xs, dxf), tdw = kn_tensor_view(KN_F32, 5, ws, dw);
        kn_tensor tdb = kn_tensor_view(KN_F32, 1, bs, db);
        KT_OK(kn_conv_temporal_backward(&tx, T, &tw, &tdy, pf, pb, &tdx, &tdw, &tdb));
        from_folded(dxf, dx5, N, C, T, HW);
        double *dxd = calloc(nx, 8), *dwd = calloc(nw, 8), *dbd = calloc(O, 8);
        naive_bwd(&g, x5, w, dy5, dxd, dwd, dbd);
        KT_CHECKF(rel_err_d(dx5, dxd, nx) < 2e-6, "temporal dx %.3g", rel_err_d(dx5, dxd, nx));
        KT_CHECKF(rel_err_d(dw, dwd, nw) < 2e-6, "temporal dw %.3g", rel_err_d(dw, dwd, nw));
        KT_CHECKF(rel_err_d(db, dbd, O) < 2e-6, "temporal db %.3g", rel_err_d(db, dbd, O));

        /* conv3d with kernel (3,1,1) and symmetric padding equals temporal conv after permuting */
        if (pf == pb) {
            int64_t x5s[5] = {N, C, T, H, W}, y5s[5] = {N, O, To, H, W};
            float *y3 = malloc(ny * 4);
            kn_tensor tx5 = kn_tensor_view(KN_F32, 5, x5s, x5), ty3 = kn_tensor_view(KN_F32, 5, y5s, y3);
            kn_conv3d_params p3 = {{1, 1, 1}, {pf, 0, 0}};
            KT_OK(kn_conv3d(NULL, &tx5, &tw, &tb, p3, &ty3));
            KT_CHECKF(rel_err(y3, y5, ny) < 1e-6, "conv3d vs temporal %.3g", rel_err(y3, y5, ny));
            float *dx3 = zerov(nx), *dw3 = zerov(nw), *db3 = zerov(O);
            kn_tensor tdy5 = kn_tensor_view(KN_F32, 5, y5s, dy5), tdx3 = kn_tensor_view(KN_F32, 5, x5s, dx3);
            kn_tensor tdw3 = kn_tensor_view(KN_F32, 5, ws, dw3), tdb3 = kn_tensor_view(KN_F32, 1, bs, db3);
            KT_OK(kn_conv3d_backward(&tx5, &tw, &tdy5, p3, &tdx3, &tdw3, &tdb3));
            KT_CHECKF(rel_err(dx3, dx5, nx) < 1e-6, "conv3d dx vs temporal %.3g", rel_err(dx3, dx5, nx));
            KT_CHECKF(rel_err(dw3, dw, nw) < 1e-6, "conv3d dw vs temporal %.3g", rel_err(dw3, dw, nw));
            KT_CHECKF(rel_err(db3, db, O) < 1e-6, "conv3d db vs temporal %.3g", rel_err(db3, db, O));
            free(y3); free(dx3); free(dw3); free(db3);
        }
        free(x5); free(w); free(b); free(dy5); free(xf); free(dyf); free(yf); free(y5); free(yd);
        free(dxf); free(dx5); free(dw); free(db); free(dxd); free(dwd); free(dbd);
    }

    /* general conv3d: kernel (3,3,2), stride (2,1,2), pad (1,1,0) */
    ngeom g = {2, 3, 7, 6, 9, 4, 1, 3, 3, 2, 2, 1, 2, 1, 1, 0, 0, 0, 0};
    g.To = (g.T + 2 - 3) / 2 + 1; g.Ho = (g.H + 2 - 3) / 1 + 1; g.Wo = (g.W - 2) / 2 + 1;
    int64_t nx = g.N * g.C * g.T * g.H * g.W, nw = g.O * g.C * 18, ny = g.N * g.O * g.To * g.Ho * g.Wo;
    float *x = randv(nx, 5), *w = randv(nw, 6), *b = randv(g.O, 7), *dy = randv(ny, 8), *y = zerov(ny);
    float *dx = zerov(nx), *dw = zerov(nw), *db = zerov(g.O);
    int64_t xs[5] = {g.N, g.C, g.T, g.H, g.W}, ws[5] = {g.O, g.C, 3, 3, 2}, bs[1] = {g.O};
    int64_t ys[5] = {g.N, g.O, g.To, g.Ho, g.Wo};
    kn_tensor tx = kn_tensor_view(KN_F32, 5, xs, x), tw = kn_tensor_view(KN_F32, 5, ws, w);
    kn_tensor tb = kn_tensor_view(KN_F32, 1, bs, b), ty = kn_tensor_view(KN_F32, 5, ys, y);
    kn_tensor tdy = kn_tensor_view(KN_F32, 5, ys, dy), tdx = kn_tensor_view(KN_F32, 5, xs, dx);
    kn_tensor tdw = kn_tensor_view(KN_F32, 5, ws, dw), tdb = kn_tensor_view(KN_F32, 1, bs, db);
    kn_conv3d_params p = {{2, 1, 2}, {1, 1, 0}};
    KT_OK(kn_conv3d(NULL, &tx, &tw, &tb, p, &ty));
    KT_OK(kn_conv3d_backward(&tx, &tw, &tdy, p, &tdx, &tdw, &tdb));
    double *yd = calloc(ny, 8), *dxd = calloc(nx, 8), *dwd = calloc(nw, 8), *dbd = calloc(g.O, 8);
    naive_fwd(&g, x, w, b, yd);
    naive_bwd(&g, x, w, dy, dxd, dwd, dbd);
    KT_CHECKF(rel_err_d(y, yd, ny) < 2e-6, "conv3d y %.3g", rel_err_d(y, yd, ny));
    KT_CHECKF(rel_err_d(dx, dxd, nx) < 2e-6, "conv3d dx %.3g", rel_err_d(dx, dxd, nx));
    KT_CHECKF(rel_err_d(dw, dwd, nw) < 2e-6, "conv3d dw %.3g", rel_err_d(dw, dwd, nw));
    KT_CHECKF(rel_err_d(db, dbd, g.O) < 2e-6, "conv3d db %.3g", rel_err_d(db, dbd, g.O));
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db);
    free(yd); free(dxd); free(dwd); free(dbd);
}

/* ------------------------------------------------------------------ finite differences */

/* L = sum(y * r) in double. kind: 0 conv2d, 1 temporal, 2 conv3d. */
typedef struct {
    int kind;
    kn_tensor x, w, b, y, r;
    kn_conv2d_params p2;
    kn_conv3d_params p3;
    int64_t T;
    int pf, pb;
} fd_prob;

static double fd_loss(fd_prob *f) {
    kn_status st = KN_OK;
    if (f->kind == 0)
        st = kn_conv2d(NULL, &f->x, &f->w, &f->b, f->p2, &f->y);
    else if (f->kind == 1)
        st = kn_conv_temporal(NULL, &f->x, f->T, &f->w, &f->b, f->pf, f->pb, &f->y);
    else
        st = kn_conv3d(NULL, &f->x, &f->w, &f->b, f->p3, &f->y);
    if (st != KN_OK)
        return NAN;
    double s = 0;
    const float *y = f->y.data, *r = f->r.data;
    for (int64_t i = 0; i < kn_tensor_numel(&f->y); i++)
        s += (double)y[i] * r[i];
    return s;
}

static void fd_check(fd_prob *f, const char *name) {
    int64_t nx = kn_tensor_numel(&f->x), nw = kn_tensor_numel(&f->w), nb = kn_tensor_numel(&f->b);
    float *dx = zerov(nx), *dw = zerov(nw), *db = zerov(nb);
    kn_tensor tdx = f->x, tdw = f->w, tdb = f->b;
    tdx.data = dx; tdw.data = dw; tdb.data = db;
    if (f->kind == 0)
        KT_OK(kn_conv2d_backward(&f->x, &f->w, &f->r, f->p2, &tdx, &tdw, &tdb));
    else if (f->kind == 1)
        KT_OK(kn_conv_temporal_backward(&f->x, f->T, &f->w, &f->r, f->pf, f->pb, &tdx, &tdw, &tdb));
    else
        KT_OK(kn_conv3d_backward(&f->x, &f->w, &f->r, f->p3, &tdx, &tdw, &tdb));
    struct { float *v, *g; int64_t n; const char *what; } params[3] = {
        {f->x.data, dx, nx, "x"}, {f->w.data, dw, nw, "w"}, {f->b.data, db, nb, "b"}};
    const float eps = 1e-2f;
    for (int pi = 0; pi < 3; pi++) {
        int64_t step = params[pi].n > 40 ? params[pi].n / 23 : 1; /* a spread of entries */
        for (int64_t i = 0; i < params[pi].n; i += step) {
            float v0 = params[pi].v[i];
            params[pi].v[i] = v0 + eps;
            double lp = fd_loss(f);
            params[pi].v[i] = v0 - eps;
            double lm = fd_loss(f);
            params[pi].v[i] = v0;
            double num = (lp - lm) / (2.0 * eps), ana = params[pi].g[i];
            KT_CHECKF(fabs(num - ana) <= 2e-3 * (1.0 + fabs(ana)), "%s: d%s[%lld] analytic %.6g numeric %.6g",
                      name, params[pi].what, (long long)i, ana, num);
        }
    }
    free(dx); free(dw); free(db);
}

KT_TEST(conv_gradients_match_finite_differences) {
    /* conv2d: groups 2, stride 2, asymmetric pads */
    {
        int64_t xs[4] = {2, 4, 7, 6}, ws[4] = {4, 2, 3, 3}, bs[1] = {4}, ys[4] = {2, 4, 3, 3};
        fd_prob f = {0};
        f.p2 = (kn_conv2d_params){2, 2, 0, 1, 1, 0, 2};
        f.x = kn_tensor_view(KN_F32, 4, xs, randv(2 * 4 * 7 * 6, 51));
        f.w = kn_tensor_view(KN_F32, 4, ws, randv(4 * 2 * 9, 52));
        f.b = kn_tensor_view(KN_F32, 1, bs, randv(4, 53));
        f.y = kn_tensor_view(KN_F32, 4, ys, zerov(2 * 4 * 3 * 3));
        f.r = kn_tensor_view(KN_F32, 4, ys, randv(2 * 4 * 3 * 3, 54));
        fd_check(&f, "conv2d");
        free(f.x.data); free(f.w.data); free(f.b.data); free(f.y.data); free(f.r.data);
    }
    /* temporal: N=2, T=4, k=3, causal pads (2,0) */
    {
        int64_t xs[4] = {8, 3, 2, 3}, ws[5] = {2, 3, 3, 1, 1}, bs[1] = {2}, ys[4] = {8, 2, 2, 3};
        fd_prob f = {0};
        f.kind = 1; f.T = 4; f.pf = 2; f.pb = 0;
        f.x = kn_tensor_view(KN_F32, 4, xs, randv(8 * 3 * 6, 61));
        f.w = kn_tensor_view(KN_F32, 5, ws, randv(18, 62));
        f.b = kn_tensor_view(KN_F32, 1, bs, randv(2, 63));
        f.y = kn_tensor_view(KN_F32, 4, ys, zerov(8 * 2 * 6));
        f.r = kn_tensor_view(KN_F32, 4, ys, randv(8 * 2 * 6, 64));
        fd_check(&f, "conv_temporal");
        free(f.x.data); free(f.w.data); free(f.b.data); free(f.y.data); free(f.r.data);
    }
    /* conv3d: kernel (2,3,3), stride (1,2,1), pad (1,1,1) */
    {
        int64_t xs[5] = {1, 2, 3, 5, 4}, ws[5] = {3, 2, 2, 3, 3}, bs[1] = {3}, ys[5] = {1, 3, 4, 3, 4};
        fd_prob f = {0};
        f.kind = 2; f.p3 = (kn_conv3d_params){{1, 2, 1}, {1, 1, 1}};
        f.x = kn_tensor_view(KN_F32, 5, xs, randv(120, 71));
        f.w = kn_tensor_view(KN_F32, 5, ws, randv(108, 72));
        f.b = kn_tensor_view(KN_F32, 1, bs, randv(3, 73));
        f.y = kn_tensor_view(KN_F32, 5, ys, zerov(144));
        f.r = kn_tensor_view(KN_F32, 5, ys, randv(144, 74));
        fd_check(&f, "conv3d");
        free(f.x.data); free(f.w.data); free(f.b.data); free(f.y.data); free(f.r.data);
    }
}

/* ------------------------------------------------------------------ PyTorch fixtures */

static const char *CONV_REF = "tests/data/conv_ref.safetensors";

static int get(kn_safetensors *st, const char *c, const char *what, kn_tensor *t) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", c, what);
    kn_status s = kn_st_get(st, name, t);
    KT_CHECKF(s == KN_OK, "%s: %s", name, kn_last_error());
    return s == KN_OK;
}

/* Runs forward and backward of fixture case c and compares y, dx, dw, db with PyTorch. */
static void check_fixture(kn_safetensors *st, const char *c, int kind, kn_conv2d_params p2, kn_conv3d_params p3) {
    kn_tensor x, w, b, r, y, dx, dw, db;
    if (!get(st, c, "x", &x) || !get(st, c, "w", &w) || !get(st, c, "b", &b) || !get(st, c, "r", &r) ||
        !get(st, c, "y", &y) || !get(st, c, "dx", &dx) || !get(st, c, "dw", &dw) || !get(st, c, "db", &db))
        return;
    int64_t nx = kn_tensor_numel(&x), nw = kn_tensor_numel(&w), nb = kn_tensor_numel(&b), ny = kn_tensor_numel(&y);
    kn_tensor oy = y, odx = x, odw = w, odb = b;
    oy.data = zerov(ny); odx.data = zerov(nx); odw.data = zerov(nw); odb.data = zerov(nb);
    if (kind == 0) {
        KT_OK(kn_conv2d(NULL, &x, &w, &b, p2, &oy));
        KT_OK(kn_conv2d_backward(&x, &w, &r, p2, &odx, &odw, &odb));
    } else if (kind == 2) {
        KT_OK(kn_conv3d(NULL, &x, &w, &b, p3, &oy));
        KT_OK(kn_conv3d_backward(&x, &w, &r, p3, &odx, &odw, &odb));
    } else { /* (N,C,T,H,W) fixture through the folded temporal conv */
        int64_t N = x.shape[0], C = x.shape[1], T = x.shape[2], HW = x.shape[3] * x.shape[4];
        int64_t O = y.shape[1], To = y.shape[2];
        float *xf = malloc(nx * 4), *rf = malloc(ny * 4), *yf = malloc(ny * 4), *dxf = zerov(nx);
        to_folded(x.data, xf, N, C, T, HW);
        to_folded(r.data, rf, N, O, To, HW);
        int64_t xs[4] = {N * T, C, x.shape[3], x.shape[4]}, ys[4] = {N * To, O, x.shape[3], x.shape[4]};
        kn_tensor tx = kn_tensor_view(KN_F32, 4, xs, xf), ty = kn_tensor_view(KN_F32, 4, ys, yf);
        kn_tensor tr = kn_tensor_view(KN_F32, 4, ys, rf), tdx = kn_tensor_view(KN_F32, 4, xs, dxf);
        int pf = p3.pad[0];
        KT_OK(kn_conv_temporal(NULL, &tx, T, &w, &b, pf, pf, &ty));
        KT_OK(kn_conv_temporal_backward(&tx, T, &w, &tr, pf, pf, &tdx, &odw, &odb));
        from_folded(yf, oy.data, N, O, To, HW);
        from_folded(dxf, odx.data, N, C, T, HW);
        free(xf); free(rf); free(yf); free(dxf);
    }
    KT_CHECKF(rel_err(oy.data, y.data, ny) < 1e-5, "%s: y %.3g", c, rel_err(oy.data, y.data, ny));
    KT_CHECKF(rel_err(odx.data, dx.data, nx) < 1e-5, "%s: dx %.3g", c, rel_err(odx.data, dx.data, nx));
    KT_CHECKF(rel_err(odw.data, dw.data, nw) < 1e-5, "%s: dw %.3g", c, rel_err(odw.data, dw.data, nw));
    KT_CHECKF(rel_err(odb.data, db.data, nb) < 1e-5, "%s: db %.3g", c, rel_err(odb.data, db.data, nb));
    free(oy.data); free(odx.data); free(odw.data); free(odb.data);
}

KT_TEST(conv_matches_pytorch_fixtures) {
    kn_safetensors *st = kn_st_open(CONV_REF);
    KT_CHECKF(st != NULL, "cannot open %s: %s", CONV_REF, kn_last_error());
    if (!st)
        return;
    kn_conv3d_params p0 = {{1, 1, 1}, {0, 0, 0}};
    check_fixture(st, "c2d_pad1", 0, kn_conv2d_params_make(1, 1), p0);
    check_fixture(st, "c2d_g2s2", 0, (kn_conv2d_params){2, 2, 1, 1, 1, 1, 2}, p0);
    check_fixture(st, "c2d_asym", 0, (kn_conv2d_params){2, 2, 0, 1, 0, 1, 1}, p0);
    check_fixture(st, "c2d_1x1", 0, kn_conv2d_params_make(1, 0), p0);
    kn_conv3d_params pt = {{1, 1, 1}, {1, 0, 0}};
    check_fixture(st, "c3d_t311", 2, kn_conv2d_params_make(1, 0), pt);
    check_fixture(st, "c3d_t311", 1, kn_conv2d_params_make(1, 0), pt);
    kn_conv3d_params pg = {{1, 2, 2}, {1, 1, 1}};
    check_fixture(st, "c3d_gen", 2, kn_conv2d_params_make(1, 0), pg);
    kn_st_close(st);
}

/* ------------------------------------------------------------------ determinism */

/* Forward + backward at 1, 2, 3 threads must agree bit for bit. */
KT_TEST(conv_bitwise_identical_across_thread_counts) {
    int prev = kn_get_threads();
    /* conv2d with several items per phase: N=3, C=40, O=24, 17x13 */
    int64_t xs[4] = {3, 40, 17, 13}, ws[4] = {24, 40, 3, 3}, ys[4] = {3, 24, 17, 13}, bs[1] = {24};
    int64_t nx = 3 * 40 * 17 * 13, nw = 24 * 40 * 9, ny = 3 * 24 * 17 * 13;
    float *x = randv(nx, 81), *w = randv(nw, 82), *b = randv(24, 83), *dy = randv(ny, 84);
    /* temporal: (2*5, 16, 6, 7) k=3 */
    int64_t txs[4] = {10, 16, 6, 7}, tws[5] = {12, 16, 3, 1, 1}, tys[4] = {10, 12, 6, 7}, tbs[1] = {12};
    float *tx = randv(10 * 16 * 42, 85), *tw = randv(12 * 16 * 3, 86), *tdy = randv(10 * 12 * 42, 87);
    float *out[3][8];
    for (int ti = 0; ti < 3; ti++) {
        kn_set_threads(ti + 1);
        float *y = zerov(ny), *dx = zerov(nx), *dw = zerov(nw), *db = zerov(24);
        kn_tensor Tx = kn_tensor_view(KN_F32, 4, xs, x), Tw = kn_tensor_view(KN_F32, 4, ws, w);
        kn_tensor Tb = kn_tensor_view(KN_F32, 1, bs, b), Ty = kn_tensor_view(KN_F32, 4, ys, y);
        kn_tensor Tdy = kn_tensor_view(KN_F32, 4, ys, dy), Tdx = kn_tensor_view(KN_F32, 4, xs, dx);
        kn_tensor Tdw = kn_tensor_view(KN_F32, 4, ws, dw), Tdb = kn_tensor_view(KN_F32, 1, bs, db);
        KT_OK(kn_conv2d(NULL, &Tx, &Tw, &Tb, kn_conv2d_params_make(1, 1), &Ty));
        KT_OK(kn_conv2d_backward(&Tx, &Tw, &Tdy, kn_conv2d_params_make(1, 1), &Tdx, &Tdw, &Tdb));
        float *y2 = zerov(10 * 12 * 42), *dx2 = zerov(10 * 16 * 42), *dw2 = zerov(12 * 16 * 3), *db2 = zerov(12);
        kn_tensor Ux = kn_tensor_view(KN_F32, 4, txs, tx), Uw = kn_tensor_view(KN_F32, 5, tws, tw);
        kn_tensor Uy = kn_tensor_view(KN_F32, 4, tys, y2), Udy = kn_tensor_view(KN_F32, 4, tys, tdy);
        kn_tensor Udx = kn_tensor_view(KN_F32, 4, txs, dx2), Udw = kn_tensor_view(KN_F32, 5, tws, dw2);
        kn_tensor Udb = kn_tensor_view(KN_F32, 1, tbs, db2);
        KT_OK(kn_conv_temporal(NULL, &Ux, 5, &Uw, NULL, 1, 1, &Uy));
        KT_OK(kn_conv_temporal_backward(&Ux, 5, &Uw, &Udy, 1, 1, &Udx, &Udw, &Udb));
        float *o[8] = {y, dx, dw, db, y2, dx2, dw2, db2};
        memcpy(out[ti], o, sizeof o);
    }
    kn_set_threads(prev);
    int64_t n[8] = {ny, nx, nw, 24, 10 * 12 * 42, 10 * 16 * 42, 12 * 16 * 3, 12};
    const char *names[8] = {"conv2d y", "conv2d dx", "conv2d dw", "conv2d db",
                            "temporal y", "temporal dx", "temporal dw", "temporal db"};
    for (int k = 0; k < 8; k++) {
        KT_CHECKF(kt_max_abs(out[0][k], n[k]) > 0, "%s is all zero", names[k]);
        for (int ti = 1; ti < 3; ti++)
            KT_CHECKF(memcmp(out[0][k], out[ti][k], (size_t)n[k] * 4) == 0, "%s differs at %d threads", names[k],
                      ti + 1);
    }
    for (int ti = 0; ti < 3; ti++)
        for (int k = 0; k < 8; k++)
            free(out[ti][k]);
    free(x); free(w); free(b); free(dy); free(tx); free(tw); free(tdy);
}

/* The output-channel split (few tiles) and conv3d, at 1, 2, 3 threads. */
KT_TEST(conv_bitwise_identical_across_thread_counts_small_images) {
    int prev = kn_get_threads();
    int64_t xs[4] = {1, 16, 5, 6}, ws[4] = {200, 16, 3, 3}, ys[4] = {1, 200, 5, 6};
    int64_t x5[5] = {2, 6, 5, 7, 6}, w5[5] = {9, 6, 3, 3, 3}, y5[5] = {2, 9, 3, 4, 3};
    float *x = randv(480, 101), *w = randv(200 * 144, 102), *dy = randv(6000, 103);
    float *a = randv(2 * 6 * 210, 104), *k = randv(9 * 6 * 27, 105), *da = randv(2 * 9 * 36, 106);
    float *out[3][5];
    kn_conv3d_params p3 = {{2, 2, 2}, {1, 1, 1}};
    for (int ti = 0; ti < 3; ti++) {
        kn_set_threads(ti + 1);
        float *o[5] = {zerov(6000), zerov(480), zerov(200 * 144), zerov(2 * 9 * 36), zerov(2 * 6 * 210)};
        kn_tensor Tx = kn_tensor_view(KN_F32, 4, xs, x), Tw = kn_tensor_view(KN_F32, 4, ws, w);
        kn_tensor Ty = kn_tensor_view(KN_F32, 4, ys, o[0]), Tdy = kn_tensor_view(KN_F32, 4, ys, dy);
        kn_tensor Tdx = kn_tensor_view(KN_F32, 4, xs, o[1]), Tdw = kn_tensor_view(KN_F32, 4, ws, o[2]);
        KT_OK(kn_conv2d(NULL, &Tx, &Tw, NULL, kn_conv2d_params_make(1, 1), &Ty));
        KT_OK(kn_conv2d_backward(&Tx, &Tw, &Tdy, kn_conv2d_params_make(1, 1), &Tdx, &Tdw, NULL));
        kn_tensor Ta = kn_tensor_view(KN_F32, 5, x5, a), Tk = kn_tensor_view(KN_F32, 5, w5, k);
        kn_tensor Tb = kn_tensor_view(KN_F32, 5, y5, o[3]), Tda = kn_tensor_view(KN_F32, 5, y5, da);
        kn_tensor Tdxa = kn_tensor_view(KN_F32, 5, x5, o[4]);
        KT_OK(kn_conv3d(NULL, &Ta, &Tk, NULL, p3, &Tb));
        KT_OK(kn_conv3d_backward(&Ta, &Tk, &Tda, p3, &Tdxa, NULL, NULL));
        memcpy(out[ti], o, sizeof o);
    }
    kn_set_threads(prev);
    int64_t n[5] = {6000, 480, 200 * 144, 2 * 9 * 36, 2 * 6 * 210};
    for (int j = 0; j < 5; j++) {
        KT_CHECKF(kt_max_abs(out[0][j], n[j]) > 0, "output %d is all zero", j);
        for (int ti = 1; ti < 3; ti++)
            KT_CHECKF(memcmp(out[0][j], out[ti][j], (size_t)n[j] * 4) == 0, "output %d differs at %d threads", j,
                      ti + 1);
    }
    for (int ti = 0; ti < 3; ti++)
        for (int j = 0; j < 5; j++)
            free(out[ti][j]);
    free(x); free(w); free(dy); free(a); free(k); free(da);
}

/* ------------------------------------------------------------------ errors */

KT_TEST(conv_shape_errors_name_op_and_shapes) {
    float buf[4096] = {0};
    int64_t xs[4] = {2, 3, 8, 8}, ws[4] = {4, 5, 3, 3}, bs[1] = {7}, ys[4] = {2, 4, 9, 9};
    kn_tensor x = kn_tensor_view(KN_F32, 4, xs, buf), w = kn_tensor_view(KN_F32, 4, ws, buf);
    kn_tensor y = kn_tensor_view(KN_F32, 4, ys, buf), b = kn_tensor_view(KN_F32, 1, bs, buf);
    KT_CHECK(kn_conv2d(NULL, &x, &w, NULL, kn_conv2d_params_make(1, 1), &y) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "conv2d") && strstr(kn_last_error(), "(2,3,8,8)") &&
                  strstr(kn_last_error(), "(4,5,3,3)"),
              "message: %s", kn_last_error());
    ws[1] = 3;
    w = kn_tensor_view(KN_F32, 4, ws, buf);
    KT_CHECK(kn_conv2d(NULL, &x, &w, NULL, kn_conv2d_params_make(1, 1), &y) == KN_ERR_SHAPE); /* y wrong */
    KT_CHECKF(strstr(kn_last_error(), "(2,4,9,9)") && strstr(kn_last_error(), "(2,4,8,8)"), "message: %s",
              kn_last_error());
    ys[2] = ys[3] = 8;
    y = kn_tensor_view(KN_F32, 4, ys, buf);
    KT_CHECK(kn_conv2d(NULL, &x, &w, &b, kn_conv2d_params_make(1, 1), &y) == KN_ERR_SHAPE); /* bias 7 */
    KT_CHECKF(strstr(kn_last_error(), "conv2d") && strstr(kn_last_error(), "(7)"), "message: %s", kn_last_error());
    kn_conv2d_params bad = kn_conv2d_params_make(0, 1);
    KT_CHECK(kn_conv2d(NULL, &x, &w, NULL, bad, &y) == KN_ERR_ARG);
    kn_conv2d_params g2 = kn_conv2d_params_make(1, 1);
    g2.groups = 2; /* 3 channels do not split in 2 */
    KT_CHECK(kn_conv2d(NULL, &x, &w, NULL, g2, &y) == KN_ERR_SHAPE);
    int64_t big[4] = {4, 3, 9, 9};
    kn_tensor wb = kn_tensor_view(KN_F32, 4, big, buf);
    KT_CHECK(kn_conv2d(NULL, &x, &wb, NULL, kn_conv2d_params_make(1, 0), &y) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "smaller than kernel"), "message: %s", kn_last_error());
    kn_tensor yn = y;
    yn.data = NULL;
    KT_CHECK(kn_conv2d(NULL, &x, &w, NULL, kn_conv2d_params_make(1, 1), &yn) == KN_ERR_ARG); /* no arena */
    kn_tensor xi = x;
    xi.dtype = KN_F16;
    KT_CHECK(kn_conv2d(NULL, &xi, &w, NULL, kn_conv2d_params_make(1, 1), &y) == KN_ERR_DTYPE);

    /* temporal: batch not a multiple of T, and wrong kernel shape */
    int64_t txs[4] = {6, 3, 2, 2}, tws[5] = {4, 3, 3, 1, 1}, tys[4] = {6, 4, 2, 2};
    kn_tensor tx = kn_tensor_view(KN_F32, 4, txs, buf), tw = kn_tensor_view(KN_F32, 5, tws, buf);
    kn_tensor ty = kn_tensor_view(KN_F32, 4, tys, buf);
    KT_CHECK(kn_conv_temporal(NULL, &tx, 4, &tw, NULL, 1, 1, &ty) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "conv_temporal") && strstr(kn_last_error(), "(6,3,2,2)"), "message: %s",
              kn_last_error());
    KT_CHECK(kn_conv_temporal(NULL, &tx, 3, &tw, NULL, 1, 1, &ty) == KN_OK);
    tws[3] = 3;
    tw = kn_tensor_view(KN_F32, 5, tws, buf);
    KT_CHECK(kn_conv_temporal(NULL, &tx, 3, &tw, NULL, 1, 1, &ty) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "(4,3,3,3,1)"), "message: %s", kn_last_error());

    /* conv3d: channel mismatch; backward with a wrong dy */
    int64_t x5[5] = {1, 2, 3, 4, 4}, w5[5] = {2, 3, 1, 1, 1};
    kn_tensor X5 = kn_tensor_view(KN_F32, 5, x5, buf), W5 = kn_tensor_view(KN_F32, 5, w5, buf);
    kn_conv3d_params p3 = {{1, 1, 1}, {0, 0, 0}};
    kn_tensor Y5 = kn_tensor_view(KN_F32, 5, x5, buf);
    KT_CHECK(kn_conv3d(NULL, &X5, &W5, NULL, p3, &Y5) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "conv3d") && strstr(kn_last_error(), "(2,3,1,1,1)"), "message: %s",
              kn_last_error());
    w5[1] = 2;
    W5 = kn_tensor_view(KN_F32, 5, w5, buf);
    KT_CHECK(kn_conv3d_backward(&X5, &W5, &X5, p3, NULL, NULL, NULL) == KN_OK); /* dy (1,2,3,4,4) fits */
    int64_t d5[5] = {1, 2, 3, 4, 5};
    kn_tensor D5 = kn_tensor_view(KN_F32, 5, d5, buf);
    KT_CHECK(kn_conv3d_backward(&X5, &W5, &D5, p3, NULL, NULL, NULL) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "conv3d_backward") && strstr(kn_last_error(), "(1,2,3,4,5)"), "message: %s",
              kn_last_error());
}

/* Output allocated from the arena, and a strided (non-contiguous) input view. */
KT_TEST(conv2d_arena_output_and_strided_input) {
    kn_arena *A = kn_arena_new(1 << 20);
    int64_t xs[4] = {2, 3, 6, 5}, ws[4] = {4, 3, 3, 3};
    float *x = randv(2 * 3 * 30, 91), *w = randv(4 * 27, 92);
    kn_tensor tx = kn_tensor_view(KN_F32, 4, xs, x), tw = kn_tensor_view(KN_F32, 4, ws, w), ty = {0};
    KT_OK(kn_conv2d(A, &tx, &tw, NULL, kn_conv2d_params_make(2, 1), &ty));
    KT_CHECK(ty.ndim == 4 && ty.shape[0] == 2 && ty.shape[1] == 4 && ty.shape[2] == 3 && ty.shape[3] == 3);
    float yr[2 * 4 * 9];
    kn_conv2d_ref(x, w, NULL, yr, 2, 3, 6, 5, 4, 3, 3, kn_conv2d_params_make(2, 1));
    KT_CHECK(rel_err(ty.data, yr, 72) < 2e-6);
    /* x viewed as (N, C, W, H) through a permutation: conv of the transposed image */
    int perm[4] = {0, 1, 3, 2};
    kn_tensor xt, yt = {0};
    KT_OK(kn_tensor_permute(&tx, perm, &xt));
    KT_OK(kn_conv2d(A, &xt, &tw, NULL, kn_conv2d_params_make(1, 1), &yt));
    float *xc = malloc(2 * 3 * 30 * 4), yr2[2 * 4 * 30];
    for (int64_t n = 0; n < 6; n++)
        for (int64_t i = 0; i < 5; i++)
            for (int64_t j = 0; j < 6; j++)
                xc[n * 30 + i * 6 + j] = x[n * 30 + j * 5 + i];
    kn_conv2d_ref(xc, w, NULL, yr2, 2, 3, 5, 6, 4, 3, 3, kn_conv2d_params_make(1, 1));
    KT_CHECK(yt.shape[2] == 5 && yt.shape[3] == 6);
    KT_CHECK(rel_err(yt.data, yr2, 2 * 4 * 30) < 2e-6);
    free(x); free(w); free(xc);
    kn_arena_free(A);
}
