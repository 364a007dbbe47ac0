/* optim.c — AdamW (torch.optim.AdamW, single-tensor path), clip_grad_norm_, LR schedule, EMA.
 * All loops run over fixed pieces of the flat parameter block (segments for AdamW, whose weight
 * decay differs per parameter; equal blocks for the rest), never over per-thread ranges, so the
 * result does not depend on kn_set_threads(). */
#include "train/optim.h"

#include <math.h>
#include <string.h>

kn_adamw_config kn_adamw_default_config(void) {
    kn_adamw_config c = {1e-3, 0.9, 0.999, 1e-8, 1e-2, 1};
    return c;
}

static int64_t param_off(const kn_params *P, int i) {
    return (int64_t)((float *)P->items[i]->var.v.data - P->block);
}

kn_status kn_adamw_init(kn_adamw *o, const kn_adamw_config *cfg, kn_params *P) {
    memset(o, 0, sizeof *o);
    if (!P || !P->block || !P->grad_block)
        return kn_fail(KN_ERR_ARG, "adamw: parameters and their gradients must be allocated first");
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1))
        return kn_fail(KN_ERR_ARG, "adamw: betas (%g, %g) must lie in [0, 1)", cfg->beta1, cfg->beta2);
    if (!(cfg->eps > 0) || !(cfg->weight_decay >= 0) || !(cfg->lr >= 0))
        return kn_fail(KN_ERR_ARG, "adamw: eps %g must be > 0, weight_decay %g and lr %g >= 0", cfg->eps,
                       cfg->weight_decay, cfg->lr);
    o->cfg = *cfg;
    o->P = P;
    int64_t nseg = 0;
    for (int i = 0; i < P->n; i++)
        nseg += (kn_tensor_numel(&P->items[i]->var.v) + KN_OPTIM_CHUNK - 1) / KN_OPTIM_CHUNK;
    size_t nb = P->numel * sizeof(float);
    o->m = kn_aligned_alloc(nb ? nb : 64);
    o->v = kn_aligned_alloc(nb ? nb : 64);
    o->seg = malloc((size_t)(nseg ? nseg : 1) * sizeof *o->seg);
    if (!o->m || !o->v || !o->seg) {
        kn_adamw_free(o);
        return kn_fail(KN_ERR_NOMEM, "adamw: cannot allocate moments for %zu parameters", P->numel);
    }
    memset(o->m, 0, nb);
    memset(o->v, 0, nb);
    for (int i = 0; i < P->n; i++) {
        const kn_tensor *t = &P->items[i]->var.v;
        int64_t n = kn_tensor_numel(t), off = param_off(P, i);
        int decay = !(cfg->no_decay_1d && t->ndim <= 1);
        for (int64_t s = 0; s < n; s += KN_OPTIM_CHUNK) {
            kn_optim_seg g = {off + s, KN_MIN(KN_OPTIM_CHUNK, n - s), decay, 0};
            o->seg[o->nseg++] = g;
        }
    }
    return KN_OK;
}

void kn_adamw_free(kn_adamw *o) {
    kn_aligned_free(o->m);
    kn_aligned_free(o->v);
    free(o->seg);
    memset(o, 0, sizeof *o);
}

typedef struct {
    const kn_adamw *o;
    float *p;
    const float *g;
    float decay_mul;  /* 1 - lr*wd (float, as PyTorch's mul_ by a Python scalar) */
    float b1, omb1, b2, omb2;
    float step_size;  /* lr / (1 - b1^t) */
    float bc2_sqrt;   /* sqrt(1 - b2^t) */
    float eps;
} adamw_job;

static void adamw_item(int64_t si, void *pp) {
    const adamw_job *c = pp;
    const kn_optim_seg *sg = &c->o->seg[si];
    if (sg->frozen)
        return;
    float *restrict p = c->p + sg->off, *restrict m = c->o->m + sg->off, *restrict v = c->o->v + sg->off;
    const float *restrict g = c->g + sg->off;
    const float dm = sg->decay ? c->decay_mul : 1.0f;
    for (int64_t i = 0; i < sg->n; i++) {
        float pi = p[i] * dm;
        float mi = m[i] * c->b1 + g[i] * c->omb1;
        float vi = v[i] * c->b2 + (g[i] * g[i]) * c->omb2;
        float denom = sqrtf(vi) / c->bc2_sqrt + c->eps;
        p[i] = pi - c->step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

kn_status kn_adamw_step(kn_adamw *o, double lr) {
    if (!o->P)
        return kn_fail(KN_ERR_ARG, "adamw: optimiser is not initialised");
    if (lr < 0)
        lr = o->cfg.lr;
    if (!isfinite(lr))
        return kn_fail(KN_ERR_ARG, "adamw: learning rate %g is not finite", lr);
    o->step++;
    double t = (double)o->step;
    adamw_job c;
    c.o = o;
    c.p = o->P->block;
    c.g = o->P->grad_block;
    c.decay_mul = (float)(1.0 - lr * o->cfg.weight_decay);
    c.b1 = (float)o->cfg.beta1;
    c.omb1 = (float)(1.0 - o->cfg.beta1);
    c.b2 = (float)o->cfg.beta2;
    c.omb2 = (float)(1.0 - o->cfg.beta2);
    c.step_size = (float)(lr / (1.0 - pow(o->cfg.beta1, t)));
    c.bc2_sqrt = (float)sqrt(1.0 - pow(o->cfg.beta2, t));
    c.eps = (float)o->cfg.eps;
    kn_parallel_for(o->nseg, adamw_item, &c);
    return KN_OK;
}

/* Segments are cut per parameter in table order (kn_adamw_init), so parameter i owns the next
 * ceil(numel_i / KN_OPTIM_CHUNK) segments. */
kn_status kn_adamw_freeze(kn_adamw *o, kn_param_pred_fn pred, void *user, int *nfrozen) {
    if (!o->P || !o->seg)
        return kn_fail(KN_ERR_ARG, "adamw: optimiser is not initialised");
    if (!pred)
        return kn_fail(KN_ERR_ARG, "adamw: freeze needs a predicate");
    const kn_params *P = o->P;
    int64_t si = 0;
    for (int i = 0; i < P->n; i++) {
        int64_t n = kn_tensor_numel(&P->items[i]->var.v);
        int64_t ns = (n + KN_OPTIM_CHUNK - 1) / KN_OPTIM_CHUNK;
        KN_ASSERT(si + ns <= o->nseg);
        if (ns > 0 && !o->seg[si].frozen && pred(P->items[i]->name, user)) {
            for (int64_t k = 0; k < ns; k++)
                o->seg[si + k].frozen = 1;
            o->nfrozen++;
            o->frozen_numel += n;
        }
        si += ns;
    }
    if (nfrozen)
        *nfrozen = o->nfrozen;
    return KN_OK;
}

void kn_adamw_zero_frozen_grads(kn_adamw *o) {
    if (!o->P || !o->P->grad_block || !o->nfrozen)
        return;
    for (int64_t si = 0; si < o->nseg; si++)
        if (o->seg[si].frozen)
            memset(o->P->grad_block + o->seg[si].off, 0, (size_t)o->seg[si].n * sizeof(float));
}

/* --------------------------------------------------------------- grad norm
 * The flat block is cut into NORM_BLOCKS equal blocks (a number fixed here, not by the pool);
 * each block's sum of squares is a double sum in index order; the block sums are added in block
 * order. Padding floats are zero and add nothing. */
#define NORM_BLOCKS 256

typedef struct {
    const float *g;
    int64_t n, bs;
    double part[NORM_BLOCKS];
} norm_job;

static void norm_item(int64_t b, void *pp) {
    norm_job *c = pp;
    int64_t s = b * c->bs, e = KN_MIN(c->n, s + c->bs);
    double acc = 0;
    for (int64_t i = s; i < e; i++)
        acc += (double)c->g[i] * (double)c->g[i];
    c->part[b] = acc;
}

double kn_grad_norm(const kn_params *P) {
    if (!P || !P->grad_block || P->numel == 0)
        return 0.0;
    norm_job c;
    c.g = P->grad_block;
    c.n = (int64_t)P->numel;
    c.bs = (c.n + NORM_BLOCKS - 1) / NORM_BLOCKS;
    int64_t nb = (c.n + c.bs - 1) / c.bs;
    kn_parallel_for(nb, norm_item, &c);
    double s = 0;
    for (int64_t b = 0; b < nb; b++)
        s += c.part[b];
    return sqrt(s);
}

typedef struct {
    float *x;
    const float *y;
    int64_t n;
    float a;
} flat_job;

static void scale_item(int64_t b, void *pp) {
    flat_job *c = pp;
    int64_t s = b * KN_OPTIM_CHUNK, e = KN_MIN(c->n, s + KN_OPTIM_CHUNK);
    for (int64_t i = s; i < e; i++)
        c->x[i] *= c->a;
}

double kn_clip_grad_norm(kn_params *P, double max_norm) {
    double norm = kn_grad_norm(P);
    if (!(max_norm > 0))
        return norm;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, in float32 tensors */
    float coef = (float)max_norm / ((float)norm + 1e-6f);
    if (coef < 1.0f) {
        flat_job c = {P->grad_block, NULL, (int64_t)P->numel, coef};
        kn_parallel_for((c.n + KN_OPTIM_CHUNK - 1) / KN_OPTIM_CHUNK, scale_item, &c);
    }
    return norm;
}

/* ------------------------------------------------------------ LR schedule */
double kn_lr_at(const kn_lr_schedule *s, int64_t step) {
    if (step < 0)
        step = 0;
    if (step < s->warmup_steps)
        return s->lr_max * (double)(step + 1) / (double)s->warmup_steps;
    int64_t span = KN_MAX((int64_t)1, s->total_steps - s->warmup_steps);
    double prog = (double)(step - s->warmup_steps) / (double)span;
    if (prog > 1.0)
        prog = 1.0;
    return s->lr_min + (s->lr_max - s->lr_min) * 0.5 * (1.0 + cos(M_PI * prog));
}

/* -------------------------------------------------------------------- EMA */
kn_status kn_ema_init(kn_ema *e, kn_params *P, double decay, int warmup) {
    memset(e, 0, sizeof *e);
    if (!P || !P->block)
        return kn_fail(KN_ERR_ARG, "ema: parameters must be allocated first");
    if (!(decay >= 0 && decay <= 1))
        return kn_fail(KN_ERR_ARG, "ema: decay %g must lie in [0, 1]", decay);
    size_t nb = P->numel * sizeof(float);
    e->w = kn_aligned_alloc(nb ? nb : 64);
    if (!e->w)
        return kn_fail(KN_ERR_NOMEM, "ema: cannot allocate %zu bytes", nb);
    memcpy(e->w, P->block, nb);
    e->P = P;
    e->decay = decay;
    e->warmup = warmup;
    return KN_OK;
}

void kn_ema_free(kn_ema *e) {
    kn_aligned_free(e->w);
    memset(e, 0, sizeof *e);
}

double kn_ema_next_decay(const kn_ema *e) {
    if (!e->warmup)
        return e->decay;
    int64_t k = e->updates;
    if (k <= 0)
        return 0.0;
    double d = (1.0 + (double)k) / (10.0 + (double)k);
    return d < e->decay ? d : e->decay;
}

static void ema_item(int64_t b, void *pp) {
    flat_job *c = pp;
    int64_t s = b * KN_OPTIM_CHUNK, e = KN_MIN(c->n, s + KN_OPTIM_CHUNK);
    for (int64_t i = s; i < e; i++)
        c->x[i] = c->x[i] - c->a * (c->x[i] - c->y[i]);
}

void kn_ema_update(kn_ema *e) {
    if (!e->w)
        return;
    flat_job c = {e->w, e->P->block, (int64_t)e->P->numel, (float)(1.0 - kn_ema_next_decay(e))};
    kn_parallel_for((c.n + KN_OPTIM_CHUNK - 1) / KN_OPTIM_CHUNK, ema_item, &c);
    e->updates++;
}

void kn_ema_copy_to(const kn_ema *e, kn_params *P) {
    if (e->w && P && P->block && P->numel == e->P->numel)
        memcpy(P->block, e->w, P->numel * sizeof(float));
}
