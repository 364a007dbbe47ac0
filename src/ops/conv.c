/* conv.c — conv2d, temporal conv and conv3d, forward and backward, as im2col + GEMM.
 *
 * One engine serves all three ops. Every convolution is seen as a 3-D one over an input
 * addressed through explicit strides (n, c, t, h, w):
 *   - conv2d:          T = 1, kernel (1, kh, kw), x (N, C, H, W);
 *   - temporal conv:   folded video x (N*T, C, H, W): frame t of sample n lives at row n*T + t,
 *                      so the t stride is C*H*W and the n stride T*C*H*W, kernel (k, 1, 1);
 *   - conv3d:          x (N, C, T, H, W) contiguous.
 * Output positions q = n*P + (to*Ho + ho)*Wo + wo (P = To*Ho*Wo) are cut into tiles of at most PT
 * columns: several tiles per sample for large images, several whole samples per tile for small
 * ones (8x8 latents at C = 1280), see tile_at. A weight of group g is the row-major matrix
 * W_g (Og x K), K = Cg*kt*kh*kw: PyTorch's (O, C/G, kt, kh, kw) as it is, no repacking.
 *
 *   forward   y[g, oblk, tile]  = W_g[oblk, :] · col(x_g, tile)                    (col: K x np)
 *   dx        x_g[cblk]        += col2im(W_g[:, cblk]ᵀ · dy[g, :, tile]), tiles of a chunk in order
 *   dw        dw_g[oblk, cblk] += Σ_tile dy[g, oblk, tile] · col(cblk, tile)ᵀ, all tiles in order
 *   db        db[o]            += Σ_n Σ_p dy[n, o, p]                             (double accumulator)
 *
 * Work items are (g, tile, output block) for forward, (chunk, g, channel block) for dx and
 * (g, channel block, output block) for dw. Every size and block boundary is a function of the
 * shapes only; each item owns disjoint output elements and runs its reduction in a fixed order,
 * so results are bitwise identical for every thread count (items are handed out dynamically,
 * which only balances the load). GEMMs run single-threaded (kn_gemm_st) inside the items.
 *
 * Reduced-precision weights (forward only): w may be F16, BF16 or U8 = Q8 blocks (ops/gemm_lowp.h);
 * W_g's rows are then in that format and the forward GEMMs run through kn_gemm_lowp_st with the
 * same tiles and items. Backward needs an F32 weight (a one-line error otherwise).
 *
 * Mixed precision (kn_set_compute_bf16(1), ops/gemm_lowp.h): with an F32 weight every GEMM above
 * (forward, dx, dw) runs through kn_gemm_bf16_st with the same arguments and items; im2col, col2im,
 * the bias and db stay f32.
 *
 * Scratch: one grow-only buffer per worker, grown by the calling thread before the workers start
 * (so the kernels themselves never allocate; a steady sampling loop allocates nothing). */
#include "ops/ops.h"
#include "ops/gemm_lowp.h"

#include <stdatomic.h>
#include <string.h>

/* ------------------------------------------------------------------ geometry */

typedef struct {
    int64_t N, C, O, G, Cg, Og;
    int64_t Ti, Hi, Wi, To, Ho, Wo;
    int kt, kh, kw, st, sh, sw, pt, ph, pw; /* pads are the ones before; the after-pads set To.. */
    int64_t xs[5];                           /* x strides (n, c, t, h, w) in elements */
    int64_t ys[5];                           /* y strides (n, o, t, h, w) */
    int64_t kk, K, P, HWo;
    int64_t PT;                              /* position tile (max columns of one GEMM) */
    int64_t ntiles, tpc, nchunks;            /* tiles; tiles per chunk; chunks (see tile_at) */
    kn_wtype wt;                             /* weight format (F32 unless a lowp forward) */
    int bf16;                                /* F32 weight and kn_compute_bf16(): bf16 GEMMs */
    size_t wrb;                              /* bytes per weight row (K weights) */
} cgeom;

/* All matrix products go through kn_gemm_st (ops/gemm.c), or kn_gemm_bf16_st in mixed precision
 * (g->bf16): the parallel split is ours. */
static inline void gemm(const cgeom *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (g->bf16)
        kn_gemm_bf16_st(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        kn_gemm_st(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void geom_finish(cgeom *g) {
    g->Cg = g->C / g->G;
    g->Og = g->O / g->G;
    g->kk = (int64_t)g->kt * g->kh * g->kw;
    g->K = g->Cg * g->kk;
    g->HWo = g->Ho * g->Wo;
    g->P = g->To * g->HWo;
    /* 256 columns = one TILE_N of kn_gemm's packed B block (measured best for K = 576..11520);
     * cheap small-K convs (C = 3) take wider tiles. Never depends on the thread count. */
    g->PT = g->K < 256 ? 1024 : 256;
    if (g->P >= g->PT) { /* tiles inside one sample; a chunk is one sample */
        g->tpc = (g->P + g->PT - 1) / g->PT;
        g->ntiles = g->N * g->tpc;
    } else {             /* small images: a tile (and a chunk) is ipc whole samples */
        int64_t ipc = g->PT / g->P;
        g->tpc = 1;
        g->ntiles = (g->N + ipc - 1) / ipc;
    }
    g->nchunks = g->ntiles / g->tpc;
    g->wrb = kn_lowp_row_bytes(g->wt, g->K);
    g->bf16 = g->wt == KN_WT_F32 && kn_compute_bf16();
}

/* Tile t as a range [q0, q0+nq) of global positions q = n*P + p. A tile never splits a sample
 * between chunks, so col2im of different chunks touches disjoint samples. */
static void tile_at(const cgeom *g, int64_t t, int64_t *q0, int64_t *nq) {
    if (g->P >= g->PT) {
        int64_t n = t / g->tpc, p0 = (t % g->tpc) * g->PT;
        *q0 = n * g->P + p0;
        *nq = KN_MIN(g->PT, g->P - p0);
    } else {
        int64_t ipc = g->PT / g->P, n0 = t * ipc;
        *q0 = n0 * g->P;
        *nq = KN_MIN(ipc, g->N - n0) * g->P;
    }
}

/* Runs the body with (q, n, to, ho, wo, len) for each run of global positions [q0, q0+nq) that
 * lies in one output row (fixed n, to, ho): positions q0+q .. q0+q+len-1 are wo .. wo+len-1. */
#define FOR_RUNS(g, q0, nq, ...)                                                     \
    do {                                                                             \
        int64_t q_ = 0, n_ = (q0) / (g)->P, r_ = (q0) % (g)->P;                      \
        int64_t to_ = r_ / (g)->HWo, ho_ = (r_ % (g)->HWo) / (g)->Wo, wo_ = r_ % (g)->Wo; \
        while (q_ < (nq)) {                                                          \
            int64_t len_ = KN_MIN((g)->Wo - wo_, (nq) - q_);                         \
            {                                                                        \
                const int64_t q = q_, n = n_, to = to_, ho = ho_, wo = wo_, len = len_; \
                __VA_ARGS__                                                          \
            }                                                                        \
            q_ += len_;                                                              \
            wo_ = 0;                                                                 \
            if (++ho_ == (g)->Ho) {                                                  \
                ho_ = 0;                                                             \
                if (++to_ == (g)->To) {                                              \
                    to_ = 0;                                                         \
                    n_++;                                                            \
                }                                                                    \
            }                                                                        \
        }                                                                            \
    } while (0)

/* For one output row run (to, ho, wo..wo+len) and kernel offset (jt, jh, jw): the input row
 * offset (or -1 when the row lies in the padding), and the valid wo sub-range [a, b). */
static inline int64_t row_src(const cgeom *g, int64_t n, int64_t to, int64_t ho, int jt, int jh) {
    int64_t ti = to * g->st + jt - g->pt, hi = ho * g->sh + jh - g->ph;
    if (ti < 0 || ti >= g->Ti || hi < 0 || hi >= g->Hi)
        return -1;
    return n * g->xs[0] + ti * g->xs[2] + hi * g->xs[3];
}

static inline void valid_range(const cgeom *g, int64_t wo, int64_t len, int jw, int64_t *a, int64_t *b) {
    /* wi = (wo + q) * sw + jw - pw must lie in [0, Wi) */
    int64_t lo = 0, hi = len;
    int64_t w0 = wo * g->sw + jw - g->pw;
    if (w0 < 0)
        lo = (-w0 + g->sw - 1) / g->sw;
    /* largest q with w0 + q*sw <= Wi-1 */
    int64_t lim = g->Wi - 1 - w0;
    hi = lim < 0 ? 0 : KN_MIN(len, lim / g->sw + 1);
    if (lo > hi)
        lo = hi;
    *a = lo;
    *b = hi;
}

/* col (nc*kk x np), rows (c, jt, jh, jw) for channels c0..c0+nc of xg (x at sample 0, first
 * channel of the group), global positions [p0, p0+np). */
static void im2col(const cgeom *g, const float *xg, int64_t c0, int64_t nc, int64_t p0, int64_t np, float *col) {
    for (int64_t c = 0; c < nc; c++) {
        const float *xc = xg + (c0 + c) * g->xs[1];
        for (int jt = 0; jt < g->kt; jt++)
            for (int jh = 0; jh < g->kh; jh++)
                for (int jw = 0; jw < g->kw; jw++) {
                    float *row = col + ((c * g->kt + jt) * g->kh * g->kw + jh * g->kw + jw) * np;
                    FOR_RUNS(g, p0, np, {
                        float *d = row + q;
                        int64_t off = row_src(g, n, to, ho, jt, jh);
                        if (off < 0) {
                            memset(d, 0, (size_t)len * sizeof(float));
                        } else {
                            int64_t a, b;
                            valid_range(g, wo, len, jw, &a, &b);
                            for (int64_t i = 0; i < a; i++)
                                d[i] = 0.0f;
                            const float *s = xc + off + ((wo + a) * g->sw + jw - g->pw) * g->xs[4];
                            if (g->sw == 1 && g->xs[4] == 1)
                                memcpy(d + a, s, (size_t)(b - a) * sizeof(float));
                            else
                                for (int64_t i = a; i < b; i++)
                                    d[i] = s[(i - a) * g->sw * g->xs[4]];
                            for (int64_t i = b; i < len; i++)
                                d[i] = 0.0f;
                        }
                    });
                }
    }
}

/* The adjoint of im2col: xg[c, ...] += col, in the fixed order (c, jt, jh, jw, position). */
static void col2im(const cgeom *g, const float *col, int64_t c0, int64_t nc, int64_t p0, int64_t np, float *xg) {
    for (int64_t c = 0; c < nc; c++) {
        float *xc = xg + (c0 + c) * g->xs[1];
        for (int jt = 0; jt < g->kt; jt++)
            for (int jh = 0; jh < g->kh; jh++)
                for (int jw = 0; jw < g->kw; jw++) {
                    const float *row = col + ((c * g->kt + jt) * g->kh * g->kw + jh * g->kw + jw) * np;
                    FOR_RUNS(g, p0, np, {
                        int64_t off = row_src(g, n, to, ho, jt, jh);
                        if (off >= 0) {
                            int64_t a, b;
                            valid_range(g, wo, len, jw, &a, &b);
                            const float *s = row + q;
                            float *d = xc + off + ((wo + a) * g->sw + jw - g->pw) * g->xs[4];
                            int64_t step = g->sw * g->xs[4];
                            for (int64_t i = a; i < b; i++)
                                d[(i - a) * step] += s[i];
                        }
                    });
                }
    }
}

/* Output tile <-> (no x np) matrix. yno = y at sample 0, first output channel of the block. */
static void tile_store(const cgeom *g, const float *t, const float *bias, int64_t no, int64_t p0, int64_t np,
                       float *yno) {
    for (int64_t o = 0; o < no; o++) {
        const float *tr = t + o * np;
        float bv = bias ? bias[o] : 0.0f;
        float *yo = yno + o * g->ys[1];
        FOR_RUNS(g, p0, np, {
            float *d = yo + n * g->ys[0] + to * g->ys[2] + ho * g->ys[3] + wo * g->ys[4];
            if (g->ys[4] == 1)
                for (int64_t i = 0; i < len; i++)
                    d[i] = tr[q + i] + bv;
            else
                for (int64_t i = 0; i < len; i++)
                    d[i * g->ys[4]] = tr[q + i] + bv;
        });
    }
}

static void tile_load(const cgeom *g, const float *yno, int64_t no, int64_t p0, int64_t np, float *t) {
    for (int64_t o = 0; o < no; o++) {
        float *tr = t + o * np;
        const float *yo = yno + o * g->ys[1];
        FOR_RUNS(g, p0, np, {
            const float *s = yo + n * g->ys[0] + to * g->ys[2] + ho * g->ys[3] + wo * g->ys[4];
            if (g->ys[4] == 1)
                memcpy(tr + q, s, (size_t)len * sizeof(float));
            else
                for (int64_t i = 0; i < len; i++)
                    tr[q + i] = s[i * g->ys[4]];
        });
    }
}

/* When the tile's positions are dense in y — inside one sample of a contiguous NCHW / NCTHW y,
 * or inside one frame (folded video) — the tile is the matrix at yno + offset with row stride
 * ys[1]: GEMMs read or write y in place, with no copy. Returns that offset, or -1. */
static int64_t tile_direct(const cgeom *g, int64_t q0, int64_t nq) {
    if (g->ys[4] != 1 || (g->Ho > 1 && g->ys[3] != g->Wo))
        return -1;
    int64_t n = q0 / g->P, p = q0 % g->P, to = p / g->HWo, r = p % g->HWo;
    if (r + nq <= g->HWo) /* one frame */
        return n * g->ys[0] + to * g->ys[2] + r;
    if (p + nq <= g->P && (g->To == 1 || g->ys[2] == g->HWo)) /* one dense sample */
        return n * g->ys[0] + p;
    return -1;
}

/* ------------------------------------------------------------------ scratch */

#define CONV_MAX_THREADS 256
static float *scratch_buf[CONV_MAX_THREADS];
static size_t scratch_cap[CONV_MAX_THREADS];

/* Makes sure each of nth workers has nfloats of scratch. Called before kn_parallel. */
static kn_status scratch_reserve(int nth, size_t nfloats) {
    if (nth > CONV_MAX_THREADS)
        return kn_fail(KN_ERR_ARG, "conv: %d threads, at most %d supported", nth, CONV_MAX_THREADS);
    for (int i = 0; i < nth; i++) {
        if (scratch_cap[i] >= nfloats)
            continue;
        kn_aligned_free(scratch_buf[i]);
        scratch_buf[i] = kn_aligned_alloc(nfloats * sizeof(float));
        scratch_cap[i] = scratch_buf[i] ? nfloats : 0;
        if (!scratch_buf[i])
            return kn_fail(KN_ERR_NOMEM, "conv: cannot allocate %zu bytes of scratch", nfloats * sizeof(float));
    }
    return KN_OK;
}

/* ------------------------------------------------------------------ forward */

/* C (no x np, row stride ldc) = W[o0:o0+no, :] · col (K x np), W in the format g->wt. */
static void gemm_w(const cgeom *g, const void *w, int64_t o0, int64_t no, int64_t np, const float *col, float *C,
                   int64_t ldc) {
    if (g->wt == KN_WT_F32)
        gemm(g, 0, 0, no, np, g->K, 1.0f, (const float *)w + o0 * g->K, g->K, col, np, 0.0f, C, ldc);
    else
        kn_gemm_lowp_st(g->wt, 0, 0, no, np, g->K, 1.0f, (const char *)w + o0 * g->wrb, g->wrb, col, np, 0.0f, C,
                        ldc);
}

typedef struct {
    const cgeom *g;
    const float *x;
    const void *w; /* (O, K) rows in format g->wt */
    const float *b;
    float *y;
    int64_t ob, nob, nitems;
    atomic_int_fast64_t next;
} fwd_ctx;

static void fwd_task(int ith, int nth, void *p) {
    KN_UNUSED(nth);
    fwd_ctx *c = p;
    const cgeom *g = c->g;
    float *col = scratch_buf[ith];
    float *tile = col + g->K * g->PT;
    for (;;) {
        int64_t it = atomic_fetch_add(&c->next, 1);
        if (it >= c->nitems)
            break;
        int64_t ob = it % c->nob, r = it / c->nob, tl = r % g->ntiles, gi = r / g->ntiles, p0, np;
        int64_t o0 = gi * g->Og + ob * c->ob, no = KN_MIN(c->ob, g->Og - ob * c->ob);
        tile_at(g, tl, &p0, &np);
        im2col(g, c->x + gi * g->Cg * g->xs[1], 0, g->Cg, p0, np, col);
        int64_t d = tile_direct(g, p0, np);
        if (d >= 0) { /* straight into y, then the bias: the same float operations as tile_store */
            float *yt = c->y + o0 * g->ys[1] + d;
            gemm_w(g, c->w, o0, no, np, col, yt, g->ys[1]);
            if (c->b)
                for (int64_t o = 0; o < no; o++) {
                    float bv = c->b[o0 + o], *yr = yt + o * g->ys[1];
                    for (int64_t i = 0; i < np; i++)
                        yr[i] += bv;
                }
        } else {
            gemm_w(g, c->w, o0, no, np, col, tile, np);
            tile_store(g, tile, c->b ? c->b + o0 : NULL, no, p0, np, c->y + o0 * g->ys[1]);
        }
    }
}

static kn_status conv_forward(const cgeom *g, const float *x, const void *w, const float *b, float *y) {
    if (g->P == 0 || g->N == 0 || g->O == 0)
        return KN_OK;
    int nth = kn_get_threads();
    KN_TRY(scratch_reserve(nth, (size_t)(g->K + g->Og) * g->PT));
    /* Few tiles (one small image): also split the output channels, so that both cores work.
     * The rule looks at shapes only; each block re-runs im2col of its tile (cost K*np against
     * 2*ob*K*np flops). */
    int64_t units = g->G * g->ntiles, nob = 1;
    if (units < 8)
        nob = KN_MAX(1, KN_MIN((8 + units - 1) / units, g->Og / 64));
    int64_t ob = ((g->Og + nob - 1) / nob + 15) & ~(int64_t)15;
    ob = KN_MIN(ob, g->Og);
    fwd_ctx c = {g, x, w, b, y, ob, (g->Og + ob - 1) / ob, 0, 0};
    c.nitems = units * c.nob;
    atomic_init(&c.next, 0);
    kn_parallel(fwd_task, &c);
    return KN_OK;
}

/* ------------------------------------------------------------------ backward */

/* Channel blocks of about `rows` im2col rows, all of nearly equal size. */
static int64_t chan_block(const cgeom *g, int64_t rows) {
    int64_t nb = (g->Cg * g->kk + rows - 1) / rows;
    nb = KN_MAX(1, KN_MIN(nb, g->Cg));
    return (g->Cg + nb - 1) / nb;
}

typedef struct {
    const cgeom *g;
    const float *x, *w, *dy;
    float *dx, *dw, *db;
    int64_t cb, ncb, ob, nob, nitems;
    atomic_int_fast64_t next;
} bwd_ctx;

/* dx: item (chunk of samples, g, channel block); loops over the chunk's tiles in order. */
static void dx_task(int ith, int nth, void *p) {
    KN_UNUSED(nth);
    bwd_ctx *c = p;
    const cgeom *g = c->g;
    float *dcol = scratch_buf[ith];
    float *tile = dcol + c->cb * g->kk * g->PT;
    for (;;) {
        int64_t it = atomic_fetch_add(&c->next, 1);
        if (it >= c->nitems)
            break;
        int64_t bl = it % c->ncb, r = it / c->ncb, gi = r % g->G, ch = r / g->G;
        int64_t c0 = bl * c->cb, nc = KN_MIN(c->cb, g->Cg - c0);
        float *dxg = c->dx + gi * g->Cg * g->xs[1];
        const float *dyg = c->dy + gi * g->Og * g->ys[1];
        const float *wg = c->w + gi * g->Og * g->K + c0 * g->kk; /* (Og x K), columns of the block */
        for (int64_t tl = ch * g->tpc; tl < (ch + 1) * g->tpc; tl++) {
            int64_t p0, np;
            tile_at(g, tl, &p0, &np);
            int64_t d = tile_direct(g, p0, np);
            if (d >= 0)
                gemm(g, 1, 0, nc * g->kk, np, g->Og, 1.0f, wg, g->K, dyg + d, g->ys[1], 0.0f, dcol, np);
            else {
                tile_load(g, dyg, g->Og, p0, np, tile);
                gemm(g, 1, 0, nc * g->kk, np, g->Og, 1.0f, wg, g->K, tile, np, 0.0f, dcol, np);
            }
            col2im(g, dcol, c0, nc, p0, np, dxg);
        }
    }
}

/* dw: item (g, channel block, output-row block); sums over all tiles (sample-major) in order. */
static void dw_task(int ith, int nth, void *p) {
    KN_UNUSED(nth);
    bwd_ctx *c = p;
    const cgeom *g = c->g;
    float *col = scratch_buf[ith];
    float *tile = col + c->cb * g->kk * g->PT;
    for (;;) {
        int64_t it = atomic_fetch_add(&c->next, 1);
        if (it >= c->nitems)
            break;
        int64_t ob = it % c->nob, r = it / c->nob, bl = r % c->ncb, gi = r / c->ncb;
        int64_t c0 = bl * c->cb, nc = KN_MIN(c->cb, g->Cg - c0);
        int64_t o0 = ob * c->ob, no = KN_MIN(c->ob, g->Og - o0);
        float *dwb = c->dw + (gi * g->Og + o0) * g->K + c0 * g->kk;
        const float *xg = c->x + gi * g->Cg * g->xs[1];
        const float *dyg = c->dy + (gi * g->Og + o0) * g->ys[1];
        for (int64_t tl = 0; tl < g->ntiles; tl++) {
            int64_t p0, np;
            tile_at(g, tl, &p0, &np);
            im2col(g, xg, c0, nc, p0, np, col);
            int64_t d = tile_direct(g, p0, np);
            if (d >= 0)
                gemm(g, 0, 1, no, nc * g->kk, np, 1.0f, dyg + d, g->ys[1], col, np, 1.0f, dwb, g->K);
            else {
                tile_load(g, dyg, no, p0, np, tile);
                gemm(g, 0, 1, no, nc * g->kk, np, 1.0f, tile, np, col, np, 1.0f, dwb, g->K);
            }
        }
    }
}

static void db_task(int64_t o, void *p) {
    bwd_ctx *c = p;
    const cgeom *g = c->g;
    double s = 0.0;
    for (int64_t n = 0; n < g->N; n++) {
        const float *d = c->dy + n * g->ys[0] + o * g->ys[1];
        for (int64_t t = 0; t < g->To; t++)
            for (int64_t h = 0; h < g->Ho; h++) {
                const float *r = d + t * g->ys[2] + h * g->ys[3];
                for (int64_t w = 0; w < g->Wo; w++)
                    s += r[w * g->ys[4]];
            }
    }
    c->db[o] += (float)s;
}

static kn_status conv_backward(const cgeom *g, const float *x, const float *w, const float *dy, float *dx,
                               float *dw, float *db) {
    if (g->N == 0 || g->O == 0 || g->P == 0)
        return KN_OK;
    int nth = kn_get_threads();
    bwd_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g; c.x = x; c.w = w; c.dy = dy; c.dx = dx; c.dw = dw; c.db = db;
    /* scratch for the larger of the two phases, before anything is accumulated */
    int64_t dx_cb = chan_block(g, 256), dw_rows = KN_MIN(g->Cg * g->kk, 512 + g->kk) + KN_MIN(g->Og, 512);
    KN_TRY(scratch_reserve(nth, (size_t)KN_MAX(dx_cb * g->kk + g->Og, dw_rows) * g->PT));
    if (db)
        kn_parallel_for(g->O, db_task, &c);
    if (dx) {
        c.cb = dx_cb;
        c.ncb = (g->Cg + c.cb - 1) / c.cb;
        c.nitems = g->nchunks * g->G * c.ncb;
        atomic_init(&c.next, 0);
        kn_parallel(dx_task, &c);
    }
    if (dw) {
        /* dw blocks: up to 512 x 512 of (O x K) (few im2col repeats over O blocks), split further
         * until there are at least 4 items; equal-sized blocks; only the shapes decide. */
        int64_t nb = (g->Cg * g->kk + 511) / 512, nob = (g->Og + 511) / 512;
        nb = KN_MAX(1, KN_MIN(nb, g->Cg));
        while (g->G * nb * nob < 4) { /* channel splits first: they do not repeat im2col */
            if (nb < g->Cg && g->Cg * g->kk / (nb + 1) >= 128)
                nb++;
            else if (g->Og / (nob + 1) >= 32)
                nob++;
            else if (nb < g->Cg)
                nb++;
            else
                break;
        }
        c.cb = (g->Cg + nb - 1) / nb;
        c.ncb = (g->Cg + c.cb - 1) / c.cb;
        c.ob = (g->Og + nob - 1) / nob;
        c.nob = (g->Og + c.ob - 1) / c.ob;
        c.nitems = g->G * c.ncb * c.nob;
        KN_ASSERT((size_t)(c.cb * g->kk + c.ob) * g->PT <= scratch_cap[0]);
        atomic_init(&c.next, 0);
        kn_parallel(dw_task, &c);
    }
    return KN_OK;
}

/* ------------------------------------------------------------------ checks */

/* Output tensor: allocate from A when out->data is NULL, else check its shape. */
static kn_status prep_out(const char *op, kn_arena *A, kn_tensor *y, int ndim, const int64_t *shape) {
    char s1[96], s2[96];
    kn_tensor want = kn_tensor_view(KN_F32, ndim, shape, NULL);
    if (!y)
        return kn_fail(KN_ERR_ARG, "%s: output tensor is NULL", op);
    if (!y->data) {
        if (!A)
            return kn_fail(KN_ERR_ARG, "%s: output has no data and no arena was given", op);
        return kn_tensor_alloc(A, y, KN_F32, ndim, shape);
    }
    if (y->dtype != KN_F32)
        return kn_fail(KN_ERR_DTYPE, "%s: output must be F32, got %s", op, kn_dtype_name(y->dtype));
    if (!kn_tensor_same_shape(y, &want))
        return kn_fail(KN_ERR_SHAPE, "%s: output is %s, expected %s", op, kn_shape_str(y, s1, sizeof s1),
                       kn_shape_str(&want, s2, sizeof s2));
    return KN_OK;
}

/* A gradient tensor (may be NULL): F32 with the shape of ref. */
static kn_status check_grad(const char *op, const char *what, const kn_tensor *d, const kn_tensor *ref,
                            int need_contig) {
    char s1[96], s2[96];
    if (!d)
        return KN_OK;
    KN_TRY(kn_check_f32(op, what, d, ref->ndim));
    if (!kn_tensor_same_shape(d, ref))
        return kn_fail(KN_ERR_SHAPE, "%s: %s is %s, expected %s", op, what, kn_shape_str(d, s1, sizeof s1),
                       kn_shape_str(ref, s2, sizeof s2));
    if (need_contig && !kn_tensor_is_contiguous(d))
        return kn_fail(KN_ERR_ARG, "%s: %s must be contiguous", op, what);
    return KN_OK;
}

static kn_status check_bias(const char *op, const kn_tensor *b, int64_t O) {
    char s[96];
    if (!b)
        return KN_OK;
    KN_TRY(kn_check_f32(op, "b", b, 1));
    if (b->shape[0] != O || !kn_tensor_is_contiguous(b))
        return kn_fail(KN_ERR_SHAPE, "%s: b %s must be contiguous (%lld)", op, kn_shape_str(b, s, sizeof s),
                       (long long)O);
    return KN_OK;
}

static int64_t out_size(int64_t in, int pa, int pb, int k, int s) {
    int64_t span = in + pa + pb - k;
    return span < 0 ? 0 : span / s + 1;
}

/* A weight of rank ndim: F32, or F16 / BF16 / U8 (Q8 blocks) for forward; sets *wt. */
static kn_status check_w(const char *op, const kn_tensor *w, int ndim, kn_wtype *wt) {
    char s[96];
    if (w && w->dtype != KN_F32 && w->data) {
        KN_TRY(kn_wtype_of(op, w, wt));
        if (w->ndim != ndim)
            return kn_fail(KN_ERR_SHAPE, "%s: w %s must have rank %d", op, kn_shape_str(w, s, sizeof s), ndim);
        return KN_OK;
    }
    *wt = KN_WT_F32;
    return kn_check_f32(op, "w", w, ndim);
}

/* Backward: the weight must be F32. */
static kn_status check_w_f32(const char *op, const cgeom *g) {
    if (g->wt != KN_WT_F32)
        return kn_fail(KN_ERR_DTYPE, "%s: w is %s; reduced-precision weights are for inference only, backward "
                       "needs F32", op, kn_wtype_name(g->wt));
    return KN_OK;
}

/* ------------------------------------------------------------------ conv2d */

kn_conv2d_params kn_conv2d_params_make(int stride, int pad) {
    kn_conv2d_params p = {stride, stride, pad, pad, pad, pad, 1};
    return p;
}

static kn_status conv2d_geom(const char *op, const kn_tensor *x, const kn_tensor *w, kn_conv2d_params p,
                             cgeom *g) {
    char s1[96], s2[96];
    kn_wtype wt;
    KN_TRY(kn_check_f32(op, "x", x, 4));
    KN_TRY(check_w(op, w, 4, &wt));
    if (!kn_tensor_is_contiguous(w))
        return kn_fail(KN_ERR_ARG, "%s: w %s must be contiguous", op, kn_shape_str(w, s1, sizeof s1));
    if (p.stride_h < 1 || p.stride_w < 1 || p.groups < 1 || p.pad_top < 0 || p.pad_bottom < 0 ||
        p.pad_left < 0 || p.pad_right < 0)
        return kn_fail(KN_ERR_ARG, "%s: bad params stride (%d,%d) pad (%d,%d,%d,%d) groups %d", op, p.stride_h,
                       p.stride_w, p.pad_top, p.pad_bottom, p.pad_left, p.pad_right, p.groups);
    int64_t C = x->shape[1], O = w->shape[0];
    if (C % p.groups || O % p.groups)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s, w %s: channels not divisible by groups %d", op,
                       kn_shape_str(x, s1, sizeof s1), kn_shape_str(w, s2, sizeof s2), p.groups);
    if (w->shape[1] != C / p.groups)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s has %lld channels, w %s wants %lld", op,
                       kn_shape_str(x, s1, sizeof s1), (long long)C, kn_shape_str(w, s2, sizeof s2),
                       (long long)(w->shape[1] * p.groups));
    if (w->shape[2] < 1 || w->shape[3] < 1 || w->shape[2] > 1 << 20 || w->shape[3] > 1 << 20)
        return kn_fail(KN_ERR_SHAPE, "%s: w %s has an empty kernel", op, kn_shape_str(w, s2, sizeof s2));
    memset(g, 0, sizeof *g);
    g->wt = wt;
    g->N = x->shape[0]; g->C = C; g->O = O; g->G = p.groups;
    g->Ti = 1; g->Hi = x->shape[2]; g->Wi = x->shape[3];
    g->kt = 1; g->kh = (int)w->shape[2]; g->kw = (int)w->shape[3];
    g->st = 1; g->sh = p.stride_h; g->sw = p.stride_w;
    g->pt = 0; g->ph = p.pad_top; g->pw = p.pad_left;
    g->To = 1;
    g->Ho = out_size(g->Hi, p.pad_top, p.pad_bottom, g->kh, p.stride_h);
    g->Wo = out_size(g->Wi, p.pad_left, p.pad_right, g->kw, p.stride_w);
    if (g->Ho < 1 || g->Wo < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s is smaller than kernel w %s with padding (%d,%d,%d,%d)", op,
                       kn_shape_str(x, s1, sizeof s1), kn_shape_str(w, s2, sizeof s2), p.pad_top,
                       p.pad_bottom, p.pad_left, p.pad_right);
    g->xs[0] = x->stride[0]; g->xs[1] = x->stride[1]; g->xs[2] = 0;
    g->xs[3] = x->stride[2]; g->xs[4] = x->stride[3];
    geom_finish(g);
    return KN_OK;
}

static void set_ys4(cgeom *g, const kn_tensor *y) {
    g->ys[0] = y->stride[0]; g->ys[1] = y->stride[1]; g->ys[2] = 0;
    g->ys[3] = y->stride[2]; g->ys[4] = y->stride[3];
}

kn_status kn_conv2d(kn_arena *A, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b,
                    kn_conv2d_params p, kn_tensor *y) {
    cgeom g;
    KN_TRY(conv2d_geom("conv2d", x, w, p, &g));
    KN_TRY(check_bias("conv2d", b, g.O));
    int64_t ys[4] = {g.N, g.O, g.Ho, g.Wo};
    KN_TRY(prep_out("conv2d", A, y, 4, ys));
    set_ys4(&g, y);
    return conv_forward(&g, x->data, w->data, b ? b->data : NULL, y->data);
}

kn_status kn_conv2d_backward(const kn_tensor *x, const kn_tensor *w, const kn_tensor *dy, kn_conv2d_params p,
                             kn_tensor *dx, kn_tensor *dw, kn_tensor *db) {
    cgeom g;
    KN_TRY(conv2d_geom("conv2d_backward", x, w, p, &g));
    KN_TRY(check_w_f32("conv2d_backward", &g));
    int64_t ysh[4] = {g.N, g.O, g.Ho, g.Wo};
    kn_tensor want = kn_tensor_view(KN_F32, 4, ysh, NULL);
    if (!dy)
        return kn_fail(KN_ERR_ARG, "conv2d_backward: dy is missing");
    KN_TRY(check_grad("conv2d_backward", "dy", dy, &want, 0));
    KN_TRY(check_grad("conv2d_backward", "dx", dx, x, 0));
    KN_TRY(check_grad("conv2d_backward", "dw", dw, w, 1));
    int64_t osh[1] = {g.O};
    kn_tensor wantb = kn_tensor_view(KN_F32, 1, osh, NULL);
    KN_TRY(check_grad("conv2d_backward", "db", db, &wantb, 1));
    set_ys4(&g, dy);
    if (dx) { /* dx is addressed through its own strides */
        cgeom gd = g;
        gd.xs[0] = dx->stride[0]; gd.xs[1] = dx->stride[1]; gd.xs[3] = dx->stride[2]; gd.xs[4] = dx->stride[3];
        KN_TRY(conv_backward(&gd, NULL, w->data, dy->data, dx->data, NULL, NULL));
    }
    return conv_backward(&g, x->data, w->data, dy->data, NULL, dw ? dw->data : NULL, db ? db->data : NULL);
}

/* Naive reference (the definition), contiguous tensors, groups honoured.
 * x (N,C,H,W), w (O,C/G,kh,kw), b (O) or NULL, y (N,O,Ho,Wo). */
void kn_conv2d_ref(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t C, int64_t H,
                   int64_t W, int64_t O, int kh, int kw, kn_conv2d_params p) {
    int64_t Ho = out_size(H, p.pad_top, p.pad_bottom, kh, p.stride_h);
    int64_t Wo = out_size(W, p.pad_left, p.pad_right, kw, p.stride_w);
    int64_t G = p.groups, Cg = C / G, Og = O / G;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++) {
            int64_t gi = o / Og;
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    float s = b ? b[o] : 0.0f;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int u = 0; u < kh; u++) {
                            int64_t hi = i * p.stride_h + u - p.pad_top;
                            if (hi < 0 || hi >= H)
                                continue;
                            for (int v = 0; v < kw; v++) {
                                int64_t wi = j * p.stride_w + v - p.pad_left;
                                if (wi < 0 || wi >= W)
                                    continue;
                                s += x[((n * C + gi * Cg + c) * H + hi) * W + wi] *
                                     w[((o * Cg + c) * kh + u) * kw + v];
                            }
                        }
                    y[((n * O + o) * Ho + i) * Wo + j] = s;
                }
        }
}

/* ------------------------------------------------------------------ temporal */

static kn_status temporal_geom(const char *op, const kn_tensor *x, int64_t T, const kn_tensor *w, int pf,
                               int pb, cgeom *g) {
    char s1[96], s2[96];
    kn_wtype wt;
    KN_TRY(kn_check_f32(op, "x", x, 4));
    KN_TRY(check_w(op, w, 5, &wt));
    if (!kn_tensor_is_contiguous(w))
        return kn_fail(KN_ERR_ARG, "%s: w %s must be contiguous", op, kn_shape_str(w, s1, sizeof s1));
    if (T < 1 || x->shape[0] % T)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s: batch is not a multiple of T = %lld", op,
                       kn_shape_str(x, s1, sizeof s1), (long long)T);
    if (pf < 0 || pb < 0)
        return kn_fail(KN_ERR_ARG, "%s: negative padding (%d, %d)", op, pf, pb);
    if (w->shape[1] != x->shape[1] || w->shape[3] != 1 || w->shape[4] != 1 || w->shape[2] < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s does not fit w %s (want (O,%lld,k,1,1))", op,
                       kn_shape_str(x, s1, sizeof s1), kn_shape_str(w, s2, sizeof s2), (long long)x->shape[1]);
    int64_t k = w->shape[2], To = T + pf + pb - k + 1;
    if (To < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: T = %lld with padding (%d,%d) is shorter than kernel w %s", op,
                       (long long)T, pf, pb, kn_shape_str(w, s2, sizeof s2));
    memset(g, 0, sizeof *g);
    g->wt = wt;
    g->N = x->shape[0] / T; g->C = x->shape[1]; g->O = w->shape[0]; g->G = 1;
    g->Ti = T; g->Hi = x->shape[2]; g->Wi = x->shape[3];
    g->kt = (int)k; g->kh = 1; g->kw = 1;
    g->st = g->sh = g->sw = 1;
    g->pt = pf;
    g->To = To; g->Ho = g->Hi; g->Wo = g->Wi;
    g->xs[0] = T * x->stride[0]; g->xs[1] = x->stride[1]; g->xs[2] = x->stride[0];
    g->xs[3] = x->stride[2]; g->xs[4] = x->stride[3];
    geom_finish(g);
    return KN_OK;
}

static void set_ys_folded(cgeom *g, const kn_tensor *y) {
    g->ys[0] = g->To * y->stride[0]; g->ys[1] = y->stride[1]; g->ys[2] = y->stride[0];
    g->ys[3] = y->stride[2]; g->ys[4] = y->stride[3];
}

kn_status kn_conv_temporal(kn_arena *A, const kn_tensor *x, int64_t T, const kn_tensor *w, const kn_tensor *b,
                           int pad_front, int pad_back, kn_tensor *y) {
    cgeom g;
    KN_TRY(temporal_geom("conv_temporal", x, T, w, pad_front, pad_back, &g));
    KN_TRY(check_bias("conv_temporal", b, g.O));
    int64_t ys[4] = {g.N * g.To, g.O, g.Ho, g.Wo};
    KN_TRY(prep_out("conv_temporal", A, y, 4, ys));
    set_ys_folded(&g, y);
    return conv_forward(&g, x->data, w->data, b ? b->data : NULL, y->data);
}

kn_status kn_conv_temporal_backward(const kn_tensor *x, int64_t T, const kn_tensor *w, const kn_tensor *dy,
                                    int pad_front, int pad_back, kn_tensor *dx, kn_tensor *dw, kn_tensor *db) {
    const char *op = "conv_temporal_backward";
    cgeom g;
    KN_TRY(temporal_geom(op, x, T, w, pad_front, pad_back, &g));
    KN_TRY(check_w_f32(op, &g));
    int64_t ysh[4] = {g.N * g.To, g.O, g.Ho, g.Wo};
    kn_tensor want = kn_tensor_view(KN_F32, 4, ysh, NULL);
    if (!dy)
        return kn_fail(KN_ERR_ARG, "%s: dy is missing", op);
    KN_TRY(check_grad(op, "dy", dy, &want, 0));
    KN_TRY(check_grad(op, "dx", dx, x, 0));
    KN_TRY(check_grad(op, "dw", dw, w, 1));
    int64_t osh[1] = {g.O};
    kn_tensor wantb = kn_tensor_view(KN_F32, 1, osh, NULL);
    KN_TRY(check_grad(op, "db", db, &wantb, 1));
    set_ys_folded(&g, dy);
    if (dx) {
        cgeom gd = g;
        gd.xs[0] = T * dx->stride[0]; gd.xs[1] = dx->stride[1]; gd.xs[2] = dx->stride[0];
        gd.xs[3] = dx->stride[2]; gd.xs[4] = dx->stride[3];
        KN_TRY(conv_backward(&gd, NULL, w->data, dy->data, dx->data, NULL, NULL));
    }
    return conv_backward(&g, x->data, w->data, dy->data, NULL, dw ? dw->data : NULL, db ? db->data : NULL);
}

/* ------------------------------------------------------------------ conv3d */

static kn_status conv3d_geom(const char *op, const kn_tensor *x, const kn_tensor *w, kn_conv3d_params p,
                             cgeom *g) {
    char s1[96], s2[96];
    kn_wtype wt;
    KN_TRY(kn_check_f32(op, "x", x, 5));
    KN_TRY(check_w(op, w, 5, &wt));
    if (!kn_tensor_is_contiguous(w))
        return kn_fail(KN_ERR_ARG, "%s: w %s must be contiguous", op, kn_shape_str(w, s1, sizeof s1));
    for (int i = 0; i < 3; i++)
        if (p.stride[i] < 1 || p.pad[i] < 0)
            return kn_fail(KN_ERR_ARG, "%s: bad params stride (%d,%d,%d) pad (%d,%d,%d)", op, p.stride[0],
                           p.stride[1], p.stride[2], p.pad[0], p.pad[1], p.pad[2]);
    if (w->shape[1] != x->shape[1])
        return kn_fail(KN_ERR_SHAPE, "%s: x %s has %lld channels, w %s wants %lld", op,
                       kn_shape_str(x, s1, sizeof s1), (long long)x->shape[1], kn_shape_str(w, s2, sizeof s2),
                       (long long)w->shape[1]);
    for (int i = 2; i < 5; i++)
        if (w->shape[i] < 1 || w->shape[i] > 1 << 20)
            return kn_fail(KN_ERR_SHAPE, "%s: w %s has an empty kernel", op, kn_shape_str(w, s2, sizeof s2));
    memset(g, 0, sizeof *g);
    g->wt = wt;
    g->N = x->shape[0]; g->C = x->shape[1]; g->O = w->shape[0]; g->G = 1;
    g->Ti = x->shape[2]; g->Hi = x->shape[3]; g->Wi = x->shape[4];
    g->kt = (int)w->shape[2]; g->kh = (int)w->shape[3]; g->kw = (int)w->shape[4];
    g->st = p.stride[0]; g->sh = p.stride[1]; g->sw = p.stride[2];
    g->pt = p.pad[0]; g->ph = p.pad[1]; g->pw = p.pad[2];
    g->To = out_size(g->Ti, p.pad[0], p.pad[0], g->kt, p.stride[0]);
    g->Ho = out_size(g->Hi, p.pad[1], p.pad[1], g->kh, p.stride[1]);
    g->Wo = out_size(g->Wi, p.pad[2], p.pad[2], g->kw, p.stride[2]);
    if (g->To < 1 || g->Ho < 1 || g->Wo < 1)
        return kn_fail(KN_ERR_SHAPE, "%s: x %s is smaller than kernel w %s with padding (%d,%d,%d)", op,
                       kn_shape_str(x, s1, sizeof s1), kn_shape_str(w, s2, sizeof s2), p.pad[0], p.pad[1],
                       p.pad[2]);
    for (int i = 0; i < 5; i++)
        g->xs[i] = x->stride[i];
    geom_finish(g);
    return KN_OK;
}

kn_status kn_conv3d(kn_arena *A, const kn_tensor *x, const kn_tensor *w, const kn_tensor *b,
                    kn_conv3d_params p, kn_tensor *y) {
    cgeom g;
    KN_TRY(conv3d_geom("conv3d", x, w, p, &g));
    KN_TRY(check_bias("conv3d", b, g.O));
    int64_t ys[5] = {g.N, g.O, g.To, g.Ho, g.Wo};
    KN_TRY(prep_out("conv3d", A, y, 5, ys));
    for (int i = 0; i < 5; i++)
        g.ys[i] = y->stride[i];
    return conv_forward(&g, x->data, w->data, b ? b->data : NULL, y->data);
}

kn_status kn_conv3d_backward(const kn_tensor *x, const kn_tensor *w, const kn_tensor *dy, kn_conv3d_params p,
                             kn_tensor *dx, kn_tensor *dw, kn_tensor *db) {
    const char *op = "conv3d_backward";
    cgeom g;
    KN_TRY(conv3d_geom(op, x, w, p, &g));
    KN_TRY(check_w_f32(op, &g));
    int64_t ysh[5] = {g.N, g.O, g.To, g.Ho, g.Wo};
    kn_tensor want = kn_tensor_view(KN_F32, 5, ysh, NULL);
    if (!dy)
        return kn_fail(KN_ERR_ARG, "%s: dy is missing", op);
    KN_TRY(check_grad(op, "dy", dy, &want, 0));
    KN_TRY(check_grad(op, "dx", dx, x, 0));
    KN_TRY(check_grad(op, "dw", dw, w, 1));
    int64_t osh[1] = {g.O};
    kn_tensor wantb = kn_tensor_view(KN_F32, 1, osh, NULL);
    KN_TRY(check_grad(op, "db", db, &wantb, 1));
    for (int i = 0; i < 5; i++)
        g.ys[i] = dy->stride[i];
    if (dx) {
        cgeom gd = g;
        for (int i = 0; i < 5; i++)
            gd.xs[i] = dx->stride[i];
        KN_TRY(conv_backward(&gd, NULL, w->data, dy->data, dx->data, NULL, NULL));
    }
    return conv_backward(&g, x->data, w->data, dy->data, NULL, dw ? dw->data : NULL, db ? db->data : NULL);
}
