/* nn.c — compute context, parameters, the tape and the var ops. */
#include "nn/nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ ctx */

void kn_ctx_init(kn_ctx *c, kn_arena *A, kn_tape *tape) {
    memset(c, 0, sizeof *c);
    c->A = A;
    c->tape = tape;
    c->frames = 1;
}

kn_status kn_ctx_status(kn_ctx *c) {
    if (c->status != KN_OK)
        kn_fail(c->status, "%s", c->error);
    return c->status;
}

void kn_ctx_fail(kn_ctx *c, kn_status st) {
    if (c->status == KN_OK) {
        c->status = st == KN_OK ? KN_ERR_INTERNAL : st;
        snprintf(c->error, sizeof c->error, "%s", kn_last_error());
    }
}

kn_status kn_ctx_failf(kn_ctx *c, kn_status st, const char *fmt, ...) {
    if (c->status == KN_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->error, sizeof c->error, fmt, ap);
        va_end(ap);
        c->status = st;
    }
    return c->status;
}

static void side_push(kn_ctx *c, size_t mark);

size_t kn_ctx_scope_begin(kn_ctx *c) {
    size_t m = kn_arena_mark(c->A);
    if (c->tape && !c->keep_all)
        side_push(c, m);
    return m;
}

static kn_var *tape_compact(kn_ctx *c, size_t mark, kn_var *out);
static kn_var *side_release(kn_ctx *c, size_t mark, kn_var *out);

kn_var *kn_ctx_scope_end(kn_ctx *c, size_t mark, kn_var *out) {
    if (c->tape && out && c->status == KN_OK)
        return c->keep_all ? out : tape_compact(c, mark, side_release(c, mark, out));
    if (c->tape || !out || c->status != KN_OK)
        return out;
    /* The var struct itself and its data both live in the arena after mark: move the data to
     * mark (memmove: the destination is below), then place a fresh var struct after it. */
    size_t nb = kn_tensor_nbytes(&out->v);
    kn_tensor v = out->v;
    if ((uint8_t *)v.data < (uint8_t *)kn_arena_ptr(c->A, mark) ||
        (uint8_t *)v.data >= (uint8_t *)kn_arena_ptr(c->A, kn_arena_mark(c->A))) {
        /* not made in this scope (an input passed through, or weights): keep it where it is, but
         * the var struct may be in the scope: copy it to the arena top after the reset */
        kn_var keep = *out;
        kn_arena_reset(c->A, mark);
        kn_var *r = kn_arena_alloc(c->A, sizeof *r);
        KN_ASSERT(r != NULL);
        *r = keep;
        return r;
    }
    kn_arena_reset(c->A, mark);
    void *dst = kn_arena_alloc(c->A, nb);
    KN_ASSERT(dst != NULL && (uint8_t *)dst <= (uint8_t *)v.data);
    memmove(dst, v.data, nb);
    kn_var *r = kn_arena_alloc(c->A, sizeof *r); /* after the moved data: it was copied already */
    KN_ASSERT(r != NULL);
    memset(r, 0, sizeof *r);
    r->v = v;
    r->v.data = dst;
    return r;
}

static kn_var *var_alloc(kn_ctx *c) {
    kn_var *r = kn_arena_alloc(c->A, sizeof *r);
    if (!r) {
        kn_ctx_fail(c, KN_ERR_NOMEM);
        return NULL;
    }
    memset(r, 0, sizeof *r);
    return r;
}

kn_var *kn_var_new(kn_ctx *c, int ndim, const int64_t *shape) {
    if (c->status != KN_OK)
        return NULL;
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    kn_status st = kn_tensor_alloc(c->A, &r->v, KN_F32, ndim, shape);
    if (st != KN_OK) {
        kn_ctx_fail(c, st);
        return NULL;
    }
    return r;
}

kn_var *kn_var_wrap(kn_ctx *c, const kn_tensor *t) {
    if (c->status != KN_OK)
        return NULL;
    kn_var *r = var_alloc(c);
    if (r)
        r->v = *t;
    return r;
}

/* ---------------------------------------------------------------- params */

kn_var *kn_param_decl(kn_params *P, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (P->n == P->cap) {
        int cap = P->cap ? P->cap * 2 : 256;
        kn_param **it = realloc(P->items, (size_t)cap * sizeof *it);
        KN_ASSERT(it != NULL);
        P->items = it;
        P->cap = cap;
    }
    kn_param *p = calloc(1, sizeof *p); /* one allocation each: the var pointer stays valid */
    KN_ASSERT(p != NULL);
    P->items[P->n++] = p;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    p->name = strdup(buf);
    KN_ASSERT(p->name != NULL);
    memset(&p->var, 0, sizeof p->var);
    p->var.v = kn_tensor_view(KN_F32, ndim, shape, NULL);
    return &p->var;
}

kn_status kn_params_alloc(kn_params *P) {
    size_t total = 0;
    for (int i = 0; i < P->n; i++)
        total += ((size_t)kn_tensor_numel(&P->items[i]->var.v) + 15) & ~(size_t)15;
    /* anonymous mmap: zero-filled pages that cost nothing until written, so parameters that the
     * loader points at a mapped weight file (kn_params_load_mapped) never take memory here */
    void *blk = mmap(NULL, total * sizeof(float) + 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    P->block = blk == MAP_FAILED ? NULL : blk;
    P->block_bytes = total * sizeof(float) + 64;
    if (!P->block)
        return kn_fail(KN_ERR_NOMEM, "parameters: cannot allocate %zu bytes", total * sizeof(float));
    P->numel = total;
    size_t off = 0;
    for (int i = 0; i < P->n; i++) {
        P->items[i]->var.v.data = P->block + off;
        off += ((size_t)kn_tensor_numel(&P->items[i]->var.v) + 15) & ~(size_t)15;
    }
    return KN_OK;
}

kn_status kn_params_alloc_grads(kn_params *P) {
    P->grad_block = kn_aligned_alloc(P->numel * sizeof(float));
    if (!P->grad_block)
        return kn_fail(KN_ERR_NOMEM, "gradients: cannot allocate %zu bytes", P->numel * sizeof(float));
    memset(P->grad_block, 0, P->numel * sizeof(float));
    for (int i = 0; i < P->n; i++) {
        kn_var *v = &P->items[i]->var;
        v->g = v->v;
        v->g.data = P->grad_block + ((float *)v->v.data - P->block);
        v->requires_grad = 1;
    }
    return KN_OK;
}

void kn_params_zero_grads(kn_params *P) {
    if (P->grad_block)
        memset(P->grad_block, 0, P->numel * sizeof(float));
}

kn_param *kn_params_find(const kn_params *P, const char *name) {
    for (int i = 0; i < P->n; i++)
        if (!strcmp(P->items[i]->name, name))
            return P->items[i];
    return NULL;
}

void kn_params_free(kn_params *P) {
    for (int i = 0; i < P->n; i++) {
        free(P->items[i]->name);
        free(P->items[i]);
    }
    free(P->items);
    if (P->block)
        munmap(P->block, P->block_bytes);
    kn_aligned_free(P->grad_block);
    memset(P, 0, sizeof *P);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

void kn_params_init_default(kn_params *P, uint64_t seed) {
    uint64_t off = 0;
    for (int i = 0; i < P->n; i++) {
        kn_var *v = &P->items[i]->var;
        int64_t n = kn_tensor_numel(&v->v);
        float *d = v->v.data;
        if (v->v.ndim >= 2) {
            int64_t fan_in = n / v->v.shape[0];
            kn_randn_fill(d, n, seed, off);
            float s = 1.0f / sqrtf((float)fan_in);
            for (int64_t j = 0; j < n; j++)
                d[j] *= s;
        } else if (ends_with(P->items[i]->name, ".weight") || ends_with(P->items[i]->name, "gamma")) {
            for (int64_t j = 0; j < n; j++)
                d[j] = 1.0f; /* 1-D weights are norm scales */
        } else {
            memset(d, 0, (size_t)n * sizeof(float));
        }
        off += (uint64_t)n;
    }
}

/* ------------------------------------------------------------------ tape */

typedef enum {
    OP_LINEAR, OP_CONV2D, OP_CONVT, OP_GN, OP_LN, OP_ACT, OP_GEGLU, OP_ATTN, OP_ADD, OP_SCALE,
    OP_RESIZE_NEAREST, OP_CONCAT, OP_PERMUTE, OP_ADD_NC, OP_REPEAT, OP_MEAN_ROWS, OP_SLICE, OP_RESHAPE, OP_EMBED, OP_CLAMP, OP_GATHER, OP_CHECKPOINT,
} op_kind;

typedef struct node {
    op_kind op;
    kn_var *in[4];
    kn_var *out;
    float *aux0, *aux1; /* mean/rstd, lse */
    const int32_t *ids;
    const int64_t *rows;
    float f1;
    kn_ckpt_fn fn;
    const void *user;
    int nin;
    const kn_tensor *mask;
    kn_conv2d_params cp;
    int i0, i1;   /* groups / heads / act / dim / pad_front */
    int64_t l0;   /* frames / T / repeat / start */
    float f0;     /* eps / scale */
    int perm[KN_MAX_DIMS];
} node;

/* The gradients of node outputs: a best-fit free list over one reserved mapping (committed as
 * touched). Their lifetimes are not LIFO, so they cannot share the arena; unlike malloc, the
 * pages stay committed from one step to the next (no page faults after the first step) and the
 * footprint is the high-water mark of live gradients plus fragmentation. */
typedef struct { size_t off, len; } gspan;

typedef struct gpool {
    uint8_t *base;
    size_t cap, top; /* [0, top) is in use or on the free list */
    gspan *fr;       /* free ranges below top, sorted by offset, coalesced */
    int nfr, capfr;
} gpool;

static void *gpool_alloc(gpool *p, size_t nb) {
    nb = (nb + 63) & ~(size_t)63;
    if (!p->base) {
        size_t cap = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
        void *m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        p->base = m;
        p->cap = cap;
    }
    int best = -1;
    for (int i = 0; i < p->nfr; i++)
        if (p->fr[i].len >= nb && (best < 0 || p->fr[i].len < p->fr[best].len))
            best = i;
    if (best >= 0) {
        size_t off = p->fr[best].off;
        p->fr[best].off += nb;
        p->fr[best].len -= nb;
        if (!p->fr[best].len) {
            memmove(p->fr + best, p->fr + best + 1, (size_t)(p->nfr - best - 1) * sizeof *p->fr);
            p->nfr--;
        }
        return p->base + off;
    }
    if (nb > p->cap - p->top)
        return NULL;
    size_t off = p->top;
    p->top += nb;
    return p->base + off;
}

static void gpool_free(gpool *p, void *ptr, size_t nb) {
    nb = (nb + 63) & ~(size_t)63;
    size_t off = (size_t)((uint8_t *)ptr - p->base);
    if (off + nb == p->top) {
        p->top = off;
        if (p->nfr && p->fr[p->nfr - 1].off + p->fr[p->nfr - 1].len == p->top)
            p->top = p->fr[--p->nfr].off;
        return;
    }
    int i = 0;
    while (i < p->nfr && p->fr[i].off < off)
        i++;
    int prev = i > 0 && p->fr[i - 1].off + p->fr[i - 1].len == off;
    int next = i < p->nfr && off + nb == p->fr[i].off;
    if (prev && next) {
        p->fr[i - 1].len += nb + p->fr[i].len;
        memmove(p->fr + i, p->fr + i + 1, (size_t)(p->nfr - i - 1) * sizeof *p->fr);
        p->nfr--;
    } else if (prev) {
        p->fr[i - 1].len += nb;
    } else if (next) {
        p->fr[i].off = off;
        p->fr[i].len += nb;
    } else {
        if (p->nfr == p->capfr) {
            int cap = p->capfr ? 2 * p->capfr : 64;
            gspan *nf = realloc(p->fr, (size_t)cap * sizeof *nf);
            if (!nf)
                return; /* the range is lost until the pool is freed */
            p->fr = nf;
            p->capfr = cap;
        }
        memmove(p->fr + i + 1, p->fr + i, (size_t)(p->nfr - i) * sizeof *p->fr);
        p->fr[i] = (gspan){off, nb};
        p->nfr++;
    }
}

static void gpool_destroy(gpool *p) {
    if (p->base)
        munmap(p->base, p->cap);
    free(p->fr);
    memset(p, 0, sizeof *p);
}

struct kn_tape {
    node *nodes;
    int n, cap;
    gpool own;
    gpool *pool;        /* &own, or the pool of the tape a checkpoint's recomputation runs under */
    /* Inside a scope, the outputs backward can recompute (norms, activations, GEGLU, their token
     * permutes) take their data from this second arena, released at the scope's end: they
     * leave no gap under the values the main arena keeps, so compaction has little to move. */
    kn_arena *side_own, *side;
    size_t sm[64][2];   /* open scopes: (main mark, side mark) */
    int nsm;
};

kn_tape *kn_tape_new(void) {
    kn_tape *t = calloc(1, sizeof *t);
    if (!t)
        kn_fail(KN_ERR_NOMEM, "tape: out of memory");
    else
        t->pool = &t->own;
    return t;
}

void kn_tape_free(kn_tape *t) {
    if (t) {
        free(t->nodes);
        gpool_destroy(&t->own);
        kn_arena_free(t->side_own);
        free(t);
    }
}

void kn_tape_clear(kn_tape *t) {
    t->n = 0;
    t->nsm = 0;
    if (t->side_own)
        kn_arena_reset(t->side_own, 0);
}

static void side_push(kn_ctx *c, size_t mark) {
    kn_tape *t = c->tape;
    if (t->nsm < (int)(sizeof t->sm / sizeof t->sm[0])) {
        t->sm[t->nsm][0] = mark;
        t->sm[t->nsm][1] = t->side ? kn_arena_mark(t->side) : 0;
        t->nsm++;
    }
}

/* The arena for the data of a recomputable output: the side arena inside a training scope,
 * else the context's. */
static kn_arena *out_arena(kn_ctx *c, int recorded) {
    kn_tape *t = c->tape;
    if (!t || !recorded || c->keep_all || t->nsm == 0)
        return c->A;
    if (!t->side) {
        size_t cap = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
        t->side_own = kn_arena_new(cap);
        if (!t->side_own)
            return c->A;
        t->side = t->side_own;
    }
    return t->side;
}

/* kn_var.gown: 0 a leaf (its gradient, allocated from the arena, outlives backward: inputs the
 * caller reads); 1 the output of a tape node whose gradient has not been allocated; 2 that
 * gradient is on the heap, and backward frees it as soon as the producing node has consumed it
 * (the arena is LIFO, gradient lifetimes are not: kept in the arena they would all stay until
 * the step ends, doubling the peak). */
enum { GOWN_LEAF, GOWN_NODE, GOWN_HEAP };

static size_t heap_live, heap_peak; /* KN_TAPE_STATS: bytes of heap gradients (diagnostic only) */
static size_t moved_bytes;          /* KN_TAPE_STATS: bytes scope compaction moved */
static double moved_s;              /* and the seconds it took */

static node *record(kn_ctx *c, op_kind op, kn_var *out) {
    if (!c->tape || !out || !out->requires_grad)
        return NULL;
    kn_tape *t = c->tape;
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 1024;
        node *nn = realloc(t->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            kn_ctx_failf(c, KN_ERR_NOMEM, "tape: out of memory");
            return NULL;
        }
        t->nodes = nn;
        t->cap = cap;
    }
    node *n = &t->nodes[t->n++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->out = out;
    out->src = t->n;
    if (!out->g.data)
        out->gown = GOWN_NODE;
    return n;
}

static int any_grad(kn_var *a, kn_var *b, kn_var *d) {
    return (a && a->requires_grad) || (b && b->requires_grad) || (d && d->requires_grad);
}


/* Gradient tensor of v (allocated zeroed on first use), or NULL if v needs none. */
static kn_tensor *grad_of(kn_ctx *c, kn_var *v) {
    if (!v || !v->requires_grad)
        return NULL;
    if (!v->g.data) {
        if (v->gown == GOWN_NODE) {
            size_t nb = (size_t)kn_tensor_numel(&v->v) * sizeof(float);
            float *d = gpool_alloc(c->tape->pool, nb);
            if (!d) {
                kn_ctx_failf(c, KN_ERR_NOMEM, "backward: cannot allocate a gradient of %zu bytes", nb);
                return NULL;
            }
            memset(d, 0, nb);
            v->g = kn_tensor_view(KN_F32, v->v.ndim, v->v.shape, d);
            v->gown = GOWN_HEAP;
            heap_live += nb;
            if (heap_live > heap_peak)
                heap_peak = heap_live;
            return &v->g;
        }
        kn_status st = kn_tensor_zeros(c->A, &v->g, KN_F32, v->v.ndim, v->v.shape);
        if (st != KN_OK) {
            kn_ctx_fail(c, st);
            return NULL;
        }
    }
    return &v->g;
}

static void grad_release(kn_ctx *c, kn_var *v) {
    if (v && v->gown == GOWN_HEAP) {
        heap_live -= kn_tensor_nbytes(&v->g);
        gpool_free(c->tape->pool, v->g.data, kn_tensor_nbytes(&v->g));
        v->g.data = NULL;
        v->gown = GOWN_NODE;
    }
}

static void acc(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static kn_status backward_node(kn_ctx *c, node *n) {
    kn_tensor *dy = &n->out->g;
    kn_var **in = n->in;
    kn_tensor *g0 = grad_of(c, in[0]), *g1 = grad_of(c, in[1]), *g2 = grad_of(c, in[2]), *g3 = grad_of(c, in[3]);
    if (c->status != KN_OK)
        return c->status;
    switch (n->op) {
    case OP_LINEAR:
        return kn_linear_backward(&in[0]->v, &in[1]->v, dy, g0, g1, g2);
    case OP_CONV2D:
        return kn_conv2d_backward(&in[0]->v, &in[1]->v, dy, n->cp, g0, g1, g2);
    case OP_CONVT:
        return kn_conv_temporal_backward(&in[0]->v, n->l0, &in[1]->v, dy, n->i0, n->i1, g0, g1, g2);
    case OP_GN:
        return kn_group_norm_backward(&in[0]->v, n->i0, n->l0, in[1] ? &in[1]->v : NULL, n->aux0, n->aux1, dy, g0,
                                      g1, g2);
    case OP_LN:
        return kn_layer_norm_backward(&in[0]->v, in[1] ? &in[1]->v : NULL, n->aux0, n->aux1, dy, g0, g1, g2);
    case OP_ACT:
        return kn_activation_backward((kn_act)n->i0, &in[0]->v, dy, g0);
    case OP_GEGLU:
        return kn_geglu_backward(&in[0]->v, dy, g0);
    case OP_ATTN:
        return kn_attention_backward(&in[0]->v, &in[1]->v, &in[2]->v, n->i0, n->f0, n->mask, &n->out->v, n->aux0,
                                     dy, g0, g1, g2);
    case OP_ADD:
        if (g0)
            acc(g0->data, dy->data, kn_tensor_numel(dy));
        if (g1) {
            int64_t nb = kn_tensor_numel(g1), ny = kn_tensor_numel(dy);
            float *d = g1->data;
            const float *s = dy->data;
            for (int64_t i = 0; i < ny; i++)
                d[i % nb] += s[i];
        }
        return KN_OK;
    case OP_SCALE:
        if (g0) {
            float *d = g0->data;
            const float *s = dy->data;
            for (int64_t i = 0, e = kn_tensor_numel(dy); i < e; i++)
                d[i] += n->f0 * s[i];
        }
        return KN_OK;
    case OP_RESIZE_NEAREST:
        return g0 ? kn_resize_nearest_backward(dy, g0) : KN_OK;
    case OP_CONCAT: {
        int64_t sizes[2] = {in[0]->v.shape[n->i0], in[1]->v.shape[n->i0]};
        kn_tensor parts[2];
        KN_TRY(kn_tensor_split(dy, n->i0, 2, sizes, parts));
        for (int k = 0; k < 2; k++) {
            kn_tensor *g = k ? g1 : g0;
            if (!g)
                continue;
            /* g += part (strided): copy into a temporary then add */
            size_t m = kn_arena_mark(c->A);
            kn_tensor tmp;
            KN_TRY(kn_tensor_alloc(c->A, &tmp, KN_F32, g->ndim, g->shape));
            KN_TRY(kn_tensor_copy(&tmp, &parts[k]));
            acc(g->data, tmp.data, kn_tensor_numel(g));
            kn_arena_reset(c->A, m);
        }
        return KN_OK;
    }
    case OP_PERMUTE: {
        if (!g0)
            return KN_OK;
        int inv[KN_MAX_DIMS];
        for (int d = 0; d < dy->ndim; d++)
            inv[n->perm[d]] = d;
        kn_tensor pv;
        KN_TRY(kn_tensor_permute(dy, inv, &pv));
        size_t m = kn_arena_mark(c->A);
        kn_tensor tmp;
        KN_TRY(kn_tensor_alloc(c->A, &tmp, KN_F32, g0->ndim, g0->shape));
        KN_TRY(kn_tensor_copy(&tmp, &pv));
        acc(g0->data, tmp.data, kn_tensor_numel(g0));
        kn_arena_reset(c->A, m);
        return KN_OK;
    }
    case OP_ADD_NC: {
        const kn_tensor *x = &in[0]->v;
        int64_t N = x->shape[0], C = x->shape[1], S = kn_tensor_numel(x) / (N * C);
        int64_t bn = in[1]->v.shape[0];
        const float *s = dy->data;
        if (g0)
            acc(g0->data, s, kn_tensor_numel(dy));
        if (g1) {
            float *d = g1->data;
            for (int64_t i = 0; i < N; i++)
                for (int64_t ch = 0; ch < C; ch++) {
                    double sum = 0;
                    const float *p = s + (i * C + ch) * S;
                    for (int64_t j = 0; j < S; j++)
                        sum += p[j];
                    d[(bn == 1 ? 0 : i) * C + ch] += (float)sum;
                }
        }
        return KN_OK;
    }
    case OP_REPEAT: {
        if (!g0)
            return KN_OK;
        int64_t N = in[0]->v.shape[0], r = n->l0, row = kn_tensor_numel(&in[0]->v) / N;
        float *d = g0->data;
        const float *s = dy->data;
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < r; k++)
                acc(d + i * row, s + (i * r + k) * row, row);
        return KN_OK;
    }
    case OP_MEAN_ROWS: {
        if (!g0)
            return KN_OK;
        int64_t N = dy->shape[0], r = n->l0, row = N ? kn_tensor_numel(dy) / N : 0;
        float *d = g0->data, inv = 1.0f / (float)r;
        const float *s = dy->data;
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < r; k++)
                for (int64_t j = 0; j < row; j++)
                    d[(i * r + k) * row + j] += s[i * row + j] * inv;
        return KN_OK;
    }
    case OP_SLICE: {
        if (!g0)
            return KN_OK;
        kn_tensor part;
        KN_TRY(kn_tensor_slice(g0, n->i0, n->l0, n->l0 + dy->shape[n->i0], &part));
        /* part += dy, walking part's strides */
        size_t m = kn_arena_mark(c->A);
        kn_tensor tmp;
        KN_TRY(kn_tensor_alloc(c->A, &tmp, KN_F32, part.ndim, part.shape));
        KN_TRY(kn_tensor_copy(&tmp, &part));
        acc(tmp.data, dy->data, kn_tensor_numel(dy));
        KN_TRY(kn_tensor_copy(&part, &tmp));
        kn_arena_reset(c->A, m);
        return KN_OK;
    }
    case OP_EMBED:
        if (g0) {
            int64_t D = g0->shape[1], rows = kn_tensor_numel(dy) / D;
            float *d = g0->data;
            const float *s = dy->data;
            for (int64_t i = 0; i < rows; i++)
                acc(d + (int64_t)n->ids[i] * D, s + i * D, D);
        }
        return KN_OK;
    case OP_CLAMP:
        if (g0) {
            const float *x = in[0]->v.data, *s = dy->data;
            float *d = g0->data;
            for (int64_t i = 0, e = kn_tensor_numel(dy); i < e; i++)
                if (x[i] >= n->f0 && x[i] <= n->f1)
                    d[i] += s[i];
        }
        return KN_OK;
    case OP_GATHER:
        if (g0) {
            int64_t D = dy->shape[dy->ndim - 1], rows = kn_tensor_numel(dy) / D;
            float *d = g0->data;
            const float *s = dy->data;
            for (int64_t i = 0; i < rows; i++)
                acc(d + n->rows[i] * D, s + i * D, D);
        }
        return KN_OK;
    case OP_CHECKPOINT: {
        /* recompute the module on a fresh tape, sharing the gradient tensors of its inputs and
         * output, backpropagate, then give the recomputed activations back to the arena (the
         * input gradients were allocated above, before the mark) */
        size_t mark = kn_arena_mark(c->A);
        kn_tape *sub = kn_tape_new();
        if (!sub)
            return KN_ERR_NOMEM;
        sub->pool = c->tape->pool; /* its gradients come and go within this call */
        sub->side = c->tape->side; /* likewise its recomputable values (given back below) */
        size_t side_mark = sub->side ? kn_arena_mark(sub->side) : 0;
        kn_ctx sc;
        kn_ctx_init(&sc, c->A, sub);
        sc.frames = (int)n->l0; /* the frames of the forward call, not of the caller's context now */
        sc.keep_all = c->keep_all;
        kn_var *w[4] = {NULL, NULL, NULL, NULL};
        for (int k = 0; k < n->nin; k++) {
            w[k] = kn_arena_alloc(c->A, sizeof(kn_var));
            if (!w[k]) {
                kn_tape_free(sub);
                return KN_ERR_NOMEM;
            }
            *w[k] = *in[k]; /* same value, same gradient tensor */
            w[k]->src = 0;  /* a leaf of the sub-tape */
            w[k]->gown = GOWN_LEAF;
        }
        kn_var *o = n->fn(&sc, w, n->nin, n->user);
        kn_status st = kn_ctx_status(&sc);
        if (st == KN_OK && o) {
            o->g = n->out->g;
            if (o->requires_grad)
                st = kn_backward(&sc, o, 0.0f);
        }
        if (sub->side && sub->side != sub->side_own)
            kn_arena_reset(sub->side, side_mark);
        kn_tape_free(sub);
        kn_arena_reset(c->A, mark);
        return st;
    }
    case OP_RESHAPE:
        if (g0)
            acc(g0->data, dy->data, kn_tensor_numel(dy));
        return KN_OK;
    }
    KN_UNUSED(g3);
    return KN_OK;
}

/* Values that a scope released and backward recomputed, kept at the arena top while consecutive
 * nodes read them (q, k and v of one LayerNorm output), then given back. */
typedef struct {
    kn_var *v[16];
    int n;
    size_t mark;
} mat_cache;

static void mat_release(kn_ctx *c, mat_cache *mc) {
    if (!mc->n)
        return;
    for (int k = 0; k < mc->n; k++)
        mc->v[k]->v.data = NULL;
    kn_arena_reset(c->A, mc->mark);
    mc->n = 0;
}

static int node_reads(const node *n, int k);
static const node *recomputable(const kn_tape *t, const kn_var *v);

static kn_status materialise(kn_ctx *c, kn_var *v, mat_cache *mc) {
    if (v->v.data)
        return KN_OK;
    const node *p = recomputable(c->tape, v);
    if (!p || mc->n == (int)(sizeof mc->v / sizeof mc->v[0]))
        return kn_fail(KN_ERR_INTERNAL, "backward: a value the tape needs was released and cannot be recomputed");
    kn_var *x = p->in[0];
    KN_TRY(materialise(c, x, mc));
    if (!mc->n)
        mc->mark = kn_arena_mark(c->A);
    const kn_tensor *ga = p->in[1] ? &p->in[1]->v : NULL, *be = p->in[2] ? &p->in[2]->v : NULL;
    kn_status st;
    switch (p->op) {
    case OP_RESHAPE:
        v->v.data = x->v.data; /* a view */
        st = KN_OK;
        break;
    case OP_PERMUTE: {
        kn_tensor pv;
        st = kn_tensor_permute(&x->v, p->perm, &pv);
        if (st == KN_OK)
            st = kn_tensor_alloc(c->A, &v->v, KN_F32, pv.ndim, pv.shape);
        if (st == KN_OK)
            st = kn_tensor_copy(&v->v, &pv);
        break;
    }
    case OP_GN: st = kn_group_norm(c->A, &x->v, p->i0, p->l0, p->f0, ga, be, &v->v, NULL, NULL); break;
    case OP_LN: st = kn_layer_norm(c->A, &x->v, p->f0, ga, be, &v->v, NULL, NULL); break;
    case OP_ACT: st = kn_activation(c->A, (kn_act)p->i0, &x->v, &v->v); break;
    default: st = kn_geglu(c->A, &x->v, &v->v); break;
    }
    mc->v[mc->n++] = v;
    return st;
}

/* Recomputes the released inputs node n's backward reads; first gives back the cached ones it
 * does not read. */
static kn_status materialise_inputs(kn_ctx *c, const node *n, mat_cache *mc) {
    int keep = 0;
    for (int j = 0; j < mc->n && !keep; j++)
        for (int k = 0; k < 4; k++)
            if (n->in[k] == mc->v[j] && node_reads(n, k))
                keep = 1;
    if (!keep)
        mat_release(c, mc);
    for (int k = 0; k < 4; k++)
        if (n->in[k] && !n->in[k]->v.data && node_reads(n, k))
            KN_TRY(materialise(c, n->in[k], mc));
    return KN_OK;
}

static const char *op_names[] = {
    "linear", "conv2d", "conv_temporal", "group_norm", "layer_norm", "act", "geglu", "attention", "add", "scale",
    "resize_nearest", "concat", "permute", "add_nc", "repeat", "mean_rows", "slice", "reshape", "embedding", "clamp",
    "gather", "checkpoint",
};

/* Does node n's backward read the value of input k (1) / of its output (k = -1)? */
static int node_reads(const node *n, int k) {
    switch (n->op) {
    case OP_LINEAR: case OP_CONV2D: case OP_CONVT: case OP_GN: case OP_LN: return k >= 0;
    case OP_ACT: case OP_GEGLU: case OP_CLAMP: return k == 0;
    case OP_ATTN: return 1;
    case OP_CHECKPOINT: return k >= 0;
    default: return 0;
    }
}

/* Is v the output of a cheap, memory-bound node of tape t (norm, activation, GEGLU) that backward
 * can run again from its input (which that node's own backward keeps)? Its value then need not
 * be kept for its readers. */
static const node *recomputable(const kn_tape *t, const kn_var *v) {
    if (!v || v->src < 1 || v->src > t->n)
        return NULL;
    const node *p = &t->nodes[v->src - 1];
    if (p->out != v)
        return NULL;
    switch (p->op) {
    case OP_GN: case OP_LN: case OP_ACT: case OP_GEGLU: return p;
    case OP_PERMUTE: case OP_RESHAPE:
        /* a copy or a view of a recomputable value (GroupNorm -> tokens before proj_in) */
        return recomputable(t, p->in[0]) ? p : NULL;
    default: return NULL;
    }
}

/* KN_TAPE_STATS=1: what the arena holds when backward starts, by op kind: bytes of each kind's
 * outputs (views left out), and of those the bytes still held (not released by a scope: read by
 * some node's backward, or never inside a scope). To stderr. */
static void tape_stats(kn_ctx *c, const kn_var *root) {
    enum { NK = (int)(sizeof op_names / sizeof op_names[0]) };
    double made[NK] = {0}, held[NK] = {0}, unread[NK] = {0};
    int cnt[NK] = {0};
    kn_tape *t = c->tape;
    for (int i = 0; i < t->n; i++) {
        const node *n = &t->nodes[i];
        const kn_var *o = n->out;
        if (n->op == OP_RESHAPE || n->op == OP_CHECKPOINT)
            continue; /* views */
        double nb = (double)kn_tensor_nbytes(&o->v);
        made[n->op] += nb;
        cnt[n->op]++;
        if (o->v.data) {
            held[n->op] += nb;
            int read = o == root;
            for (int j = i + 1; j < t->n && !read; j++)
                for (int k = 0; k < 4; k++)
                    if (t->nodes[j].in[k] && t->nodes[j].in[k]->v.data == o->v.data && node_reads(&t->nodes[j], k))
                        read = 1;
            if (!read)
                unread[n->op] += nb;
        }
    }
    double tm = 0, th = 0;
    fprintf(stderr, "tape: %d nodes, arena %.1f MiB used at backward start (peak %.1f MiB), root %p\n", t->n,
            kn_arena_used(c->A) / 1048576.0, kn_arena_peak(c->A) / 1048576.0, (const void *)root);
    for (int k = 0; k < NK; k++) {
        if (!cnt[k])
            continue;
        fprintf(stderr, "  %-15s %5d outputs %9.1f MiB, held %9.1f MiB (%.1f MiB read by no backward)\n", op_names[k],
                cnt[k], made[k] / 1048576.0, held[k] / 1048576.0, unread[k] / 1048576.0);
        tm += made[k];
        th += held[k];
    }
    fprintf(stderr, "  total           %9.1f MiB, held %9.1f MiB\n", tm / 1048576.0, th / 1048576.0);
}

kn_status kn_backward(kn_ctx *c, kn_var *out, float seed) {
    if (!c->tape)
        return kn_fail(KN_ERR_ARG, "backward: the context has no tape");
    if (c->status != KN_OK)
        return kn_ctx_status(c);
    if (!out->g.data) {
        kn_status st = kn_tensor_alloc(c->A, &out->g, KN_F32, out->v.ndim, out->v.shape);
        if (st != KN_OK)
            return st;
        float *g = out->g.data;
        for (int64_t i = 0, n = kn_tensor_numel(&out->g); i < n; i++)
            g[i] = seed;
    }
    kn_tape *t = c->tape;
    if (getenv("KN_TAPE_STATS"))
        tape_stats(c, out);
    /* leaves' gradients (the caller reads them) first, so that the arena above is LIFO scratch */
    for (int i = 0; i < t->n; i++)
        for (int k = 0; k < 4; k++) {
            kn_var *v = t->nodes[i].in[k];
            if (v && v->requires_grad && v->gown == GOWN_LEAF && !v->g.data && !grad_of(c, v))
                return kn_ctx_status(c);
        }
    mat_cache mc = {0};
    kn_status st = KN_OK;
    int i;
    for (i = t->n - 1; i >= 0 && st == KN_OK; i--) {
        node *n = &t->nodes[i];
        if (!n->out->g.data)
            continue; /* nothing flowed into this node */
        st = materialise_inputs(c, n, &mc);
        if (st == KN_OK)
            st = backward_node(c, n);
        if (n->out != out)
            grad_release(c, n->out); /* consumed: nothing before node i reads it */
    }
    mat_release(c, &mc);
    if (getenv("KN_TAPE_STATS"))
        fprintf(stderr, "tape: backward done, arena peak %.1f MiB, heap gradients peak %.1f MiB, compaction moved %.1f MiB in %.3f s, side arena peak %.1f MiB\n",
                kn_arena_peak(c->A) / 1048576.0, heap_peak / 1048576.0, moved_bytes / 1048576.0, moved_s,
                t->side ? kn_arena_peak(t->side) / 1048576.0 : 0.0);
    if (st != KN_OK) {
        for (int j = 0; j <= i; j++)
            grad_release(c, t->nodes[j].out);
        kn_ctx_fail(c, st);
    }
    return kn_ctx_status(c);
}

/* ------------------------------------------------------------ compaction
 * With a tape, a scope's end keeps only what backward will read: the values the scope's nodes'
 * backwards read (node_reads), their statistics, the var structs the tape points at, and the
 * scope's output; everything else the scope allocated (outputs of adds, permutes, concats, ...
 * whose consumers need only their gradient) is released. The kept blocks are moved down to the
 * mark in address order and every pointer into them (var data, var structs in the nodes, node
 * statistics) is rebased; the data of a var nobody reads becomes NULL (its shape stays).
 * Contract (the same as without a tape): after kn_ctx_scope_end only the returned var of what the
 * scope made may be used. */

typedef struct { uint8_t *lo, *hi, *dst; } span;

typedef struct {
    span *s;
    int n, cap;
    uint8_t *lo, *hi; /* the scope's region */
    int bad;          /* something points into the region that cannot be rebased: keep all */
} span_set;

static void span_add(span_set *S, const void *p, size_t nb) {
    const uint8_t *q = p;
    if (!q || q < S->lo || q >= S->hi || !nb)
        return;
    if (S->n == S->cap) {
        int cap = S->cap ? 2 * S->cap : 256;
        span *ns = realloc(S->s, (size_t)cap * sizeof *ns);
        if (!ns) {
            S->bad = 1;
            return;
        }
        S->s = ns;
        S->cap = cap;
    }
    S->s[S->n++] = (span){(uint8_t *)q, (uint8_t *)q + nb, NULL};
}

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Where p (inside the region) goes, or NULL when p is in no kept span. */
static void *span_map(const span_set *S, const void *p) {
    const uint8_t *q = p;
    int lo = 0, hi = S->n - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (q < S->s[m].lo)
            hi = m - 1;
        else if (q >= S->s[m].hi)
            lo = m + 1;
        else
            return S->s[m].dst + (q - S->s[m].lo);
    }
    return NULL;
}

static int in_region(const span_set *S, const void *p) {
    return (const uint8_t *)p >= S->lo && (const uint8_t *)p < S->hi;
}

static void keep_var(span_set *S, kn_var *v) {
    if (v)
        span_add(S, v, sizeof *v);
}

static void keep_data(span_set *S, const kn_var *v) {
    if (v && v->v.data)
        span_add(S, v->v.data, kn_tensor_nbytes(&v->v));
}

/* bytes of a node's statistics / index arrays */
static size_t aux_bytes(const node *n) {
    switch (n->op) {
    case OP_GN: {
        int64_t fr = n->l0 > 0 ? n->l0 : 1;
        return (size_t)(n->in[0]->v.shape[0] / fr * n->i0) * sizeof(float);
    }
    case OP_LN: {
        const kn_tensor *x = &n->in[0]->v;
        return (size_t)(kn_tensor_numel(x) / x->shape[x->ndim - 1]) * sizeof(float);
    }
    case OP_ATTN:
        return (size_t)(n->in[0]->v.shape[0] * n->i0 * n->in[0]->v.shape[1]) * sizeof(float);
    default:
        return 0;
    }
}

static int ptr_cmp(const void *a, const void *b) {
    const void *x = *(const void *const *)a, *y = *(const void *const *)b;
    return x < y ? -1 : x > y;
}

static void rebase_var_data(const span_set *S, kn_var *v) {
    if (v && v->v.data && in_region(S, v->v.data))
        v->v.data = span_map(S, v->v.data);
}

/* Ends the scope's use of the side arena: the output's data, if it lives there, is copied to the
 * main arena (it is the one value the caller goes on with); every var of the scope's nodes whose
 * data lives in the released part becomes NULL (recomputed in backward); the side arena goes back
 * to its mark. */
static kn_var *side_release(kn_ctx *c, size_t mark, kn_var *out) {
    kn_tape *t = c->tape;
    while (t->nsm > 0 && t->sm[t->nsm - 1][0] > mark)
        t->nsm--; /* scopes left without an end (error paths) */
    if (t->nsm == 0 || t->sm[t->nsm - 1][0] != mark)
        return out;
    size_t smark = t->sm[--t->nsm][1];
    if (!t->side || kn_arena_mark(t->side) <= smark)
        return out;
    const uint8_t *lo = kn_arena_ptr(t->side, smark), *hi = kn_arena_ptr(t->side, kn_arena_mark(t->side));
#define IN_SIDE(p) ((const uint8_t *)(p) >= lo && (const uint8_t *)(p) < hi)
    if (out->v.data && IN_SIDE(out->v.data)) {
        size_t nb = kn_tensor_nbytes(&out->v);
        void *d = kn_arena_alloc(c->A, nb);
        if (!d) {
            kn_ctx_fail(c, KN_ERR_NOMEM);
            return out;
        }
        memcpy(d, out->v.data, nb);
        out->v.data = d;
    }
    const uint8_t *mlo = kn_arena_ptr(c->A, mark), *mhi = kn_arena_ptr(c->A, kn_arena_mark(c->A));
    for (int i = t->n - 1; i >= 0; i--) {
        node *n = &t->nodes[i];
        if ((const uint8_t *)n->out < mlo || (const uint8_t *)n->out >= mhi)
            break;
        for (int k = -1; k < 4; k++) {
            kn_var *v = k < 0 ? n->out : n->in[k];
            if (v && v->v.data && IN_SIDE(v->v.data))
                v->v.data = NULL;
        }
    }
#undef IN_SIDE
    kn_arena_reset(t->side, smark);
    return out;
}

static kn_var *tape_compact(kn_ctx *c, size_t mark, kn_var *out) {
    kn_tape *t = c->tape;
    span_set S = {0};
    S.lo = kn_arena_ptr(c->A, mark);
    S.hi = kn_arena_ptr(c->A, kn_arena_mark(c->A));
    if (S.hi <= S.lo)
        return out;
    int first = t->n;
    while (first > 0 && in_region(&S, t->nodes[first - 1].out))
        first--;
    /* what survives */
    keep_var(&S, out);
    keep_data(&S, out);
    for (int i = first; i < t->n; i++) {
        node *n = &t->nodes[i];
        keep_var(&S, n->out);
        if (node_reads(n, -1))
            keep_data(&S, n->out);
        for (int k = 0; k < 4; k++) {
            keep_var(&S, n->in[k]);
            if (node_reads(n, k) && !recomputable(t, n->in[k]))
                keep_data(&S, n->in[k]);
        }
        size_t ab = aux_bytes(n);
        span_add(&S, n->aux0, ab);
        span_add(&S, n->aux1, ab);
        if (n->op == OP_EMBED)
            span_add(&S, n->ids, (size_t)(kn_tensor_numel(&n->out->v) / n->out->v.shape[2]) * sizeof(int32_t));
        if (n->op == OP_GATHER)
            span_add(&S, n->rows, (size_t)n->out->v.shape[0] * sizeof(int64_t));
        if (in_region(&S, n->mask) || in_region(&S, n->user))
            S.bad = 1;
        for (int k = -1; k < 4; k++) {
            kn_var *v = k < 0 ? n->out : n->in[k];
            if (v && v->g.data && in_region(&S, v->g.data))
                S.bad = 1; /* a gradient made in the scope: leave everything where it is */
        }
    }
    if (S.bad || S.n == 0) {
        free(S.s);
        return out;
    }
    /* merge overlapping spans (views share data), then assign destinations from the mark up */
    qsort(S.s, (size_t)S.n, sizeof *S.s, span_cmp);
    int m = 0;
    for (int i = 1; i < S.n; i++) {
        if (S.s[i].lo < S.s[m].hi) {
            if (S.s[i].hi > S.s[m].hi)
                S.s[m].hi = S.s[i].hi;
        } else {
            S.s[++m] = S.s[i];
        }
    }
    S.n = m + 1;
    uint8_t *dst = S.lo;
    for (int i = 0; i < S.n; i++) {
        /* spans start on the arena's 64-byte grid; keep offsets inside them */
        S.s[i].dst = dst;
        dst += ((size_t)(S.s[i].hi - S.s[i].lo) + 63) & ~(size_t)63;
    }
    /* a small gap under much kept data is not worth the copy: leave it (an enclosing scope may
     * still reclaim it); KN_TAPE_MOVE_RATIO overrides the ratio (0: always compact) */
    size_t freed = (size_t)(S.hi - S.lo) - (size_t)(dst - S.lo), moved = 0;
    for (int i = 0; i < S.n; i++)
        if (S.s[i].dst != S.s[i].lo)
            moved += (size_t)(S.s[i].hi - S.s[i].lo);
    static int ratio = -1;
    if (ratio < 0) {
        const char *e = getenv("KN_TAPE_MOVE_RATIO");
        ratio = e ? atoi(e) : 8;
    }
    if (freed == 0 || (ratio > 0 && moved > (size_t)ratio * freed)) {
        free(S.s);
        return out;
    }
    /* rebase the data pointers inside the var structs (still at their old places), each var
     * once: collect them, sort, drop repeats */
    int nv = 0, capv = 1 + 5 * (t->n - first);
    kn_var **vs = malloc((size_t)capv * sizeof *vs);
    if (!vs) {
        free(S.s);
        return out;
    }
    vs[nv++] = out;
    for (int i = first; i < t->n; i++) {
        node *n = &t->nodes[i];
        for (int k = -1; k < 4; k++) {
            kn_var *v = k < 0 ? n->out : n->in[k];
            if (v)
                vs[nv++] = v;
        }
    }
    qsort(vs, (size_t)nv, sizeof *vs, ptr_cmp);
    for (int i = 0; i < nv; i++)
        if (i == 0 || vs[i] != vs[i - 1])
            rebase_var_data(&S, vs[i]);
    free(vs);
    /* the nodes' pointers into the region */
    for (int i = first; i < t->n; i++) {
        node *n = &t->nodes[i];
        for (int k = 0; k < 4; k++)
            if (in_region(&S, n->in[k]))
                n->in[k] = span_map(&S, n->in[k]);
        n->out = span_map(&S, n->out);
        if (in_region(&S, n->aux0))
            n->aux0 = span_map(&S, n->aux0);
        if (in_region(&S, n->aux1))
            n->aux1 = span_map(&S, n->aux1);
        if (in_region(&S, n->ids))
            n->ids = span_map(&S, n->ids);
        if (in_region(&S, n->rows))
            n->rows = span_map(&S, n->rows);
    }
    kn_var *r = in_region(&S, out) ? span_map(&S, out) : out;
    /* move: ascending, every destination at or below its source */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < S.n; i++)
        if (S.s[i].dst != S.s[i].lo) {
            memmove(S.s[i].dst, S.s[i].lo, (size_t)(S.s[i].hi - S.s[i].lo));
            moved_bytes += (size_t)(S.s[i].hi - S.s[i].lo);
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    moved_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    kn_arena_reset(c->A, mark + (size_t)(dst - S.lo));
    free(S.s);
    return r;
}

/* --------------------------------------------------------------- var ops */

#define GUARD(c) \
    if ((c)->status != KN_OK) \
        return NULL

static kn_var *finish(kn_ctx *c, kn_var *r, kn_status st) {
    if (st != KN_OK) {
        kn_ctx_fail(c, st);
        return NULL;
    }
    return r;
}

kn_var *kn_var_reshape(kn_ctx *c, kn_var *x, int ndim, const int64_t *shape) {
    GUARD(c);
    if (!x)
        return kn_ctx_failf(c, KN_ERR_ARG, "reshape: missing input"), NULL;
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    kn_status st = kn_tensor_reshape(&x->v, ndim, shape, &r->v);
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_RESHAPE, r);
    if (n)
        n->in[0] = x;
    return finish(c, r, st);
}

kn_var *kn_v_linear(kn_ctx *c, kn_var *x, kn_var *w, kn_var *b) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    kn_status st = kn_linear(c->A, &x->v, &w->v, b ? &b->v : NULL, &r->v);
    r->requires_grad = any_grad(x, w, b);
    node *n = record(c, OP_LINEAR, r);
    if (n) { n->in[0] = x; n->in[1] = w; n->in[2] = b; }
    return finish(c, r, st);
}

kn_var *kn_v_conv2d(kn_ctx *c, kn_var *x, kn_var *w, kn_var *b, kn_conv2d_params p) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    kn_status st = kn_conv2d(c->A, &x->v, &w->v, b ? &b->v : NULL, p, &r->v);
    r->requires_grad = any_grad(x, w, b);
    node *n = record(c, OP_CONV2D, r);
    if (n) { n->in[0] = x; n->in[1] = w; n->in[2] = b; n->cp = p; }
    return finish(c, r, st);
}

kn_var *kn_v_conv_temporal(kn_ctx *c, kn_var *x, int64_t T, kn_var *w, kn_var *b, int pad_front, int pad_back) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    kn_status st = kn_conv_temporal(c->A, &x->v, T, &w->v, b ? &b->v : NULL, pad_front, pad_back, &r->v);
    r->requires_grad = any_grad(x, w, b);
    node *n = record(c, OP_CONVT, r);
    if (n) { n->in[0] = x; n->in[1] = w; n->in[2] = b; n->l0 = T; n->i0 = pad_front; n->i1 = pad_back; }
    return finish(c, r, st);
}

kn_var *kn_v_group_norm(kn_ctx *c, kn_var *x, int groups, int64_t frames, float eps, kn_var *gamma, kn_var *beta) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    r->requires_grad = any_grad(x, gamma, beta);
    float *mean = NULL, *rstd = NULL;
    if (c->tape && r->requires_grad) {
        int64_t nstat = (x->v.shape[0] / (frames > 0 ? frames : 1)) * groups;
        mean = kn_arena_alloc(c->A, (size_t)nstat * sizeof(float));
        rstd = kn_arena_alloc(c->A, (size_t)nstat * sizeof(float));
        if (!mean || !rstd)
            return finish(c, r, KN_ERR_NOMEM);
    }
    kn_status st = kn_group_norm(out_arena(c, c->tape && r->requires_grad), &x->v, groups, frames, eps, gamma ? &gamma->v : NULL, beta ? &beta->v : NULL,
                                 &r->v, mean, rstd);
    node *n = record(c, OP_GN, r);
    if (n) { n->in[0] = x; n->in[1] = gamma; n->in[2] = beta; n->i0 = groups; n->l0 = frames; n->f0 = eps; n->aux0 = mean; n->aux1 = rstd; }
    return finish(c, r, st);
}

kn_var *kn_v_layer_norm(kn_ctx *c, kn_var *x, float eps, kn_var *gamma, kn_var *beta) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    r->requires_grad = any_grad(x, gamma, beta);
    float *mean = NULL, *rstd = NULL;
    if (c->tape && r->requires_grad) {
        int64_t rows = kn_tensor_numel(&x->v) / x->v.shape[x->v.ndim - 1];
        mean = kn_arena_alloc(c->A, (size_t)rows * sizeof(float));
        rstd = kn_arena_alloc(c->A, (size_t)rows * sizeof(float));
        if (!mean || !rstd)
            return finish(c, r, KN_ERR_NOMEM);
    }
    kn_status st = kn_layer_norm(out_arena(c, c->tape && r->requires_grad), &x->v, eps, gamma ? &gamma->v : NULL, beta ? &beta->v : NULL, &r->v, mean, rstd);
    node *n = record(c, OP_LN, r);
    if (n) { n->in[0] = x; n->in[1] = gamma; n->in[2] = beta; n->f0 = eps; n->aux0 = mean; n->aux1 = rstd; }
    return finish(c, r, st);
}

kn_var *kn_v_act(kn_ctx *c, kn_act act, kn_var *x) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    r->requires_grad = x->requires_grad;
    kn_status st = kn_activation(out_arena(c, c->tape && r->requires_grad), act, &x->v, &r->v);
    node *n = record(c, OP_ACT, r);
    if (n) { n->in[0] = x; n->i0 = (int)act; }
    return finish(c, r, st);
}

kn_var *kn_v_geglu(kn_ctx *c, kn_var *x) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    r->requires_grad = x->requires_grad;
    /* the main arena: only ff_out's output and the residual add come after it there, and the side
     * arena's high-water mark (the widest GEGLU) would add to the footprint */
    kn_status st = kn_geglu(c->A, &x->v, &r->v);
    node *n = record(c, OP_GEGLU, r);
    if (n) n->in[0] = x;
    return finish(c, r, st);
}

kn_var *kn_v_attention(kn_ctx *c, kn_var *q, kn_var *k, kn_var *v, int heads, float scale, const kn_tensor *mask) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    r->requires_grad = any_grad(q, k, v);
    float *lse = NULL;
    if (c->tape && r->requires_grad) {
        lse = kn_arena_alloc(c->A, (size_t)(q->v.shape[0] * heads * q->v.shape[1]) * sizeof(float));
        if (!lse)
            return finish(c, r, KN_ERR_NOMEM);
    }
    kn_status st = kn_attention(c->A, &q->v, &k->v, &v->v, heads, scale, mask, &r->v, lse);
    node *n = record(c, OP_ATTN, r);
    if (n) { n->in[0] = q; n->in[1] = k; n->in[2] = v; n->i0 = heads; n->f0 = scale; n->mask = mask; n->aux0 = lse; }
    return finish(c, r, st);
}

kn_var *kn_v_add(kn_ctx *c, kn_var *a, kn_var *b) {
    GUARD(c);
    kn_var *r = kn_var_new(c, a->v.ndim, a->v.shape);
    if (!r)
        return NULL;
    int64_t na = kn_tensor_numel(&a->v), nb = kn_tensor_numel(&b->v);
    if (nb == 0 || na % nb != 0 || !kn_tensor_is_contiguous(&a->v) || !kn_tensor_is_contiguous(&b->v)) {
        char s1[96], s2[96];
        kn_ctx_failf(c, KN_ERR_SHAPE, "add: %s and %s do not broadcast", kn_shape_str(&a->v, s1, sizeof s1),
                     kn_shape_str(&b->v, s2, sizeof s2));
        return NULL;
    }
    float *y = r->v.data;
    const float *pa = a->v.data, *pb = b->v.data;
    if (na == nb) {
        for (int64_t i = 0; i < na; i++)
            y[i] = pa[i] + pb[i];
    } else {
        for (int64_t i = 0; i < na; i += nb)
            for (int64_t j = 0; j < nb; j++)
                y[i + j] = pa[i + j] + pb[j];
    }
    r->requires_grad = any_grad(a, b, NULL);
    node *n = record(c, OP_ADD, r);
    if (n) { n->in[0] = a; n->in[1] = b; }
    return r;
}

kn_var *kn_v_scale(kn_ctx *c, kn_var *x, float s) {
    GUARD(c);
    kn_var *r = kn_var_new(c, x->v.ndim, x->v.shape);
    if (!r)
        return NULL;
    const float *p = x->v.data;
    float *y = r->v.data;
    for (int64_t i = 0, n = kn_tensor_numel(&x->v); i < n; i++)
        y[i] = p[i] * s;
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_SCALE, r);
    if (n) { n->in[0] = x; n->f0 = s; }
    return r;
}

kn_var *kn_v_resize_nearest(kn_ctx *c, kn_var *x, int64_t Ho, int64_t Wo) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    kn_status st = kn_resize_nearest(c->A, &x->v, Ho, Wo, &r->v);
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_RESIZE_NEAREST, r);
    if (n) n->in[0] = x;
    return finish(c, r, st);
}

kn_var *kn_v_concat(kn_ctx *c, kn_var *a, kn_var *b, int dim) {
    GUARD(c);
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    const kn_tensor *ts[2] = {&a->v, &b->v};
    kn_status st = kn_tensor_concat(c->A, ts, 2, dim, &r->v);
    r->requires_grad = any_grad(a, b, NULL);
    node *n = record(c, OP_CONCAT, r);
    if (n) { n->in[0] = a; n->in[1] = b; n->i0 = dim; }
    return finish(c, r, st);
}

kn_var *kn_v_permute(kn_ctx *c, kn_var *x, const int *perm) {
    GUARD(c);
    kn_tensor pv;
    kn_status st = kn_tensor_permute(&x->v, perm, &pv);
    if (st != KN_OK)
        return finish(c, NULL, st);
    /* tokens of a recomputable value (backward copies them again): the side arena in a scope */
    int side = c->tape && x->requires_grad && recomputable(c->tape, x);
    kn_var *r = side ? var_alloc(c) : kn_var_new(c, pv.ndim, pv.shape);
    if (!r)
        return NULL;
    if (side && (st = kn_tensor_alloc(out_arena(c, 1), &r->v, KN_F32, pv.ndim, pv.shape)) != KN_OK)
        return finish(c, NULL, st);
    st = kn_tensor_copy(&r->v, &pv);
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_PERMUTE, r);
    if (n) {
        n->in[0] = x;
        memcpy(n->perm, perm, sizeof(int) * (size_t)x->v.ndim);
    }
    return finish(c, r, st);
}

kn_var *kn_v_add_nc(kn_ctx *c, kn_var *x, kn_var *b) {
    GUARD(c);
    int64_t N = x->v.shape[0], C = x->v.shape[1];
    int64_t bn = b->v.ndim == 2 ? b->v.shape[0] : -1;
    if (x->v.ndim < 2 || b->v.ndim != 2 || (bn != N && bn != 1) || b->v.shape[1] != C) {
        char s1[96], s2[96];
        kn_ctx_failf(c, KN_ERR_SHAPE, "add_nc: bias %s does not fit %s", kn_shape_str(&b->v, s1, sizeof s1),
                     kn_shape_str(&x->v, s2, sizeof s2));
        return NULL;
    }
    kn_var *r = kn_var_new(c, x->v.ndim, x->v.shape);
    if (!r)
        return NULL;
    int64_t S = kn_tensor_numel(&x->v) / (N * C);
    const float *px = x->v.data, *pb = b->v.data;
    float *y = r->v.data;
    for (int64_t i = 0; i < N; i++)
        for (int64_t ch = 0; ch < C; ch++) {
            float bias = pb[(bn == 1 ? 0 : i) * C + ch];
            const float *s = px + (i * C + ch) * S;
            float *d = y + (i * C + ch) * S;
            for (int64_t j = 0; j < S; j++)
                d[j] = s[j] + bias;
        }
    r->requires_grad = any_grad(x, b, NULL);
    node *n = record(c, OP_ADD_NC, r);
    if (n) { n->in[0] = x; n->in[1] = b; }
    return r;
}

kn_var *kn_v_repeat_rows(kn_ctx *c, kn_var *x, int64_t rep) {
    GUARD(c);
    int64_t shape[KN_MAX_DIMS];
    for (int d = 0; d < x->v.ndim; d++)
        shape[d] = x->v.shape[d];
    shape[0] *= rep;
    kn_var *r = kn_var_new(c, x->v.ndim, shape);
    if (!r)
        return NULL;
    int64_t N = x->v.shape[0], row = N ? kn_tensor_numel(&x->v) / N : 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < rep; k++)
            memcpy((float *)r->v.data + (i * rep + k) * row, (const float *)x->v.data + i * row,
                   (size_t)row * sizeof(float));
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_REPEAT, r);
    if (n) { n->in[0] = x; n->l0 = rep; }
    return r;
}

kn_var *kn_v_mean_rows(kn_ctx *c, kn_var *x, int64_t group) {
    GUARD(c);
    int64_t N0 = x->v.shape[0];
    if (group <= 0 || N0 % group)
        return finish(c, NULL, kn_fail(KN_ERR_SHAPE, "mean_rows: %lld rows are not groups of %lld", (long long)N0,
                                       (long long)group));
    int64_t shape[KN_MAX_DIMS];
    for (int d = 0; d < x->v.ndim; d++)
        shape[d] = x->v.shape[d];
    shape[0] = N0 / group;
    kn_var *r = kn_var_new(c, x->v.ndim, shape);
    if (!r)
        return NULL;
    int64_t N = shape[0], row = N0 ? kn_tensor_numel(&x->v) / N0 : 0;
    float *d = r->v.data, inv = 1.0f / (float)group;
    const float *s = x->v.data;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < row; j++) { /* fixed summation order: deterministic */
            float acc_ = 0.0f;
            for (int64_t k = 0; k < group; k++)
                acc_ += s[(i * group + k) * row + j];
            d[i * row + j] = acc_ * inv;
        }
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_MEAN_ROWS, r);
    if (n) { n->in[0] = x; n->l0 = group; }
    return r;
}

kn_var *kn_v_slice(kn_ctx *c, kn_var *x, int dim, int64_t start, int64_t end) {
    GUARD(c);
    kn_tensor sv;
    kn_status st = kn_tensor_slice(&x->v, dim, start, end, &sv);
    if (st != KN_OK)
        return finish(c, NULL, st);
    kn_var *r = kn_var_new(c, sv.ndim, sv.shape);
    if (!r)
        return NULL;
    st = kn_tensor_copy(&r->v, &sv);
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_SLICE, r);
    if (n) { n->in[0] = x; n->i0 = dim; n->l0 = start; }
    return finish(c, r, st);
}

kn_var *kn_v_embedding(kn_ctx *c, kn_var *weight, const int32_t *ids, int64_t B, int64_t L) {
    GUARD(c);
    int64_t V = weight->v.shape[0], D = weight->v.shape[1];
    kn_var *r = kn_var_new(c, 3, (int64_t[]){B, L, D});
    if (!r)
        return NULL;
    for (int64_t i = 0; i < B * L; i++) {
        if (ids[i] < 0 || ids[i] >= V) {
            kn_ctx_failf(c, KN_ERR_ARG, "embedding: id %d outside [0, %lld)", ids[i], (long long)V);
            return NULL;
        }
        memcpy((float *)r->v.data + i * D, (const float *)weight->v.data + (int64_t)ids[i] * D,
               (size_t)D * sizeof(float));
    }
    r->requires_grad = weight->requires_grad;
    node *n = record(c, OP_EMBED, r);
    if (n) {
        int32_t *keep = kn_arena_alloc(c->A, (size_t)(B * L) * sizeof(int32_t));
        if (!keep)
            return finish(c, r, KN_ERR_NOMEM);
        memcpy(keep, ids, (size_t)(B * L) * sizeof(int32_t));
        n->in[0] = weight;
        n->ids = keep;
    }
    return r;
}

kn_var *kn_v_clamp(kn_ctx *c, kn_var *x, float lo, float hi) {
    GUARD(c);
    kn_var *r = kn_var_new(c, x->v.ndim, x->v.shape);
    if (!r)
        return NULL;
    const float *p = x->v.data;
    float *y = r->v.data;
    for (int64_t i = 0, e = kn_tensor_numel(&x->v); i < e; i++)
        y[i] = p[i] < lo ? lo : (p[i] > hi ? hi : p[i]);
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_CLAMP, r);
    if (n) { n->in[0] = x; n->f0 = lo; n->f1 = hi; }
    return r;
}

kn_var *kn_v_gather_rows(kn_ctx *c, kn_var *x, const int64_t *rows, int64_t n_rows) {
    GUARD(c);
    int64_t D = x->v.shape[x->v.ndim - 1], N = kn_tensor_numel(&x->v) / (D ? D : 1);
    kn_var *r = kn_var_new(c, 2, (int64_t[]){n_rows, D});
    if (!r)
        return NULL;
    for (int64_t i = 0; i < n_rows; i++) {
        if (rows[i] < 0 || rows[i] >= N) {
            kn_ctx_failf(c, KN_ERR_ARG, "gather_rows: row %lld outside [0, %lld)", (long long)rows[i], (long long)N);
            return NULL;
        }
        memcpy((float *)r->v.data + i * D, (const float *)x->v.data + rows[i] * D, (size_t)D * sizeof(float));
    }
    r->requires_grad = x->requires_grad;
    node *n = record(c, OP_GATHER, r);
    if (n) {
        int64_t *keep = kn_arena_alloc(c->A, (size_t)n_rows * sizeof(int64_t));
        if (!keep)
            return finish(c, r, KN_ERR_NOMEM);
        memcpy(keep, rows, (size_t)n_rows * sizeof(int64_t));
        n->in[0] = x;
        n->rows = keep;
    }
    return r;
}

kn_var *kn_v_checkpoint(kn_ctx *c, kn_ckpt_fn fn, kn_var **in, int nin, const void *user) {
    GUARD(c);
    if (nin < 1 || nin > 4)
        return kn_ctx_failf(c, KN_ERR_ARG, "checkpoint: %d inputs (1..4)", nin), NULL;
    if (!c->tape || !c->checkpointing)
        return fn(c, in, nin, user);
    /* forward without recording: the module's scopes free its activations as it goes */
    kn_tape *keep = c->tape;
    c->tape = NULL;
    size_t mark = kn_ctx_scope_begin(c);
    kn_var *o = fn(c, in, nin, user);
    o = kn_ctx_scope_end(c, mark, o);
    c->tape = keep;
    if (!o)
        return NULL;
    kn_var *r = var_alloc(c);
    if (!r)
        return NULL;
    r->v = o->v;
    r->requires_grad = 0;
    for (int k = 0; k < nin; k++)
        r->requires_grad |= in[k] && in[k]->requires_grad;
    /* parameters inside fn need gradients even when no input does */
    r->requires_grad = 1;
    node *n = record(c, OP_CHECKPOINT, r);
    if (n) {
        for (int k = 0; k < nin; k++)
            n->in[k] = in[k];
        n->nin = nin;
        n->fn = fn;
        n->user = user;
        n->l0 = c->frames;
    }
    return r;
}
