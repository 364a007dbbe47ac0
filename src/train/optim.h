/* optim.h — AdamW, global gradient-norm clipping, a warm-up + cosine LR schedule and an EMA of the
 * weights, all over the flat parameter block of a kn_params table (src/nn/nn.h).
 *
 *     kn_adamw opt;
 *     kn_adamw_config oc = kn_adamw_default_config();  // PyTorch defaults, wd 0.01
 *     kn_adamw_init(&opt, &oc, P);                      // after kn_params_alloc_grads(P)
 *     kn_ema ema;
 *     kn_ema_init(&ema, P, 0.9999f, 1);
 *     for (step = 0; ...) {
 *         ...backward fills P->grad_block...
 *         double norm = kn_clip_grad_norm(P, 1.0f);     // torch.nn.utils.clip_grad_norm_
 *         kn_adamw_step(&opt, kn_lr_at(&sched, step));  // torch.optim.AdamW.step()
 *         kn_ema_update(&ema);                          // diffusers EMAModel.step()
 *     }
 *
 * Every update is elementwise over fixed chunks of the flat block and the norm is a double sum
 * over fixed chunks added in chunk order, so results are bitwise identical for any thread count.
 * The padding floats between tensors in the block stay zero (their gradients are zero). */
#ifndef KN_OPTIM_H
#define KN_OPTIM_H

#include "nn/nn.h"

typedef struct kn_adamw_config {
    /* doubles, like the Python floats PyTorch computes its step constants from */
    double lr;           /* used when kn_adamw_step is given lr < 0 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8, added outside the sqrt as PyTorch does */
    double weight_decay; /* decoupled: p *= 1 - lr * wd before the Adam update */
    int no_decay_1d;    /* 1: parameters with ndim <= 1 (biases, norm scales) get no weight decay */
} kn_adamw_config;

kn_adamw_config kn_adamw_default_config(void);

/* A contiguous run of the flat block inside one parameter (<= KN_OPTIM_CHUNK floats). */
typedef struct kn_optim_seg {
    int64_t off, n;
    int decay;
    int frozen; /* kn_adamw_freeze: the step leaves this run (values, moments) untouched */
} kn_optim_seg;

#define KN_OPTIM_CHUNK 4096

typedef struct kn_adamw {
    kn_adamw_config cfg;
    kn_params *P;
    float *m, *v;       /* first / second moments, P->numel floats each, in P->block's layout */
    int64_t step;       /* number of steps taken (PyTorch's state['step']) */
    kn_optim_seg *seg;  /* fixed work split, independent of the thread count */
    int64_t nseg;
    int nfrozen;        /* parameters frozen by kn_adamw_freeze */
    int64_t frozen_numel;
} kn_adamw;

/* Allocates zeroed moments for P (values and grads allocated). Fails on a bad config. */
kn_status kn_adamw_init(kn_adamw *o, const kn_adamw_config *cfg, kn_params *P);
void kn_adamw_free(kn_adamw *o);
/* One AdamW step on P's values from P's gradients with learning rate lr (lr < 0: cfg.lr),
 * exactly torch.optim.AdamW (amsgrad=False, maximize=False): step += 1;
 *   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;
 *   p -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps). */
kn_status kn_adamw_step(kn_adamw *o, double lr);

/* Freezing (CogVideo: "freeze the spatial weights, train only the temporal layers"): marks every
 * parameter of o->P whose name satisfies pred(name, user) != 0 as frozen. kn_adamw_step skips a
 * frozen parameter entirely — no weight decay, no moment update — so its value stays bitwise
 * what it was, as a torch parameter with requires_grad=False left out of the optimiser. Calls
 * accumulate (a parameter frozen once stays frozen) and are idempotent. *nfrozen (may be NULL)
 * receives the number of parameters frozen so far. */
typedef int (*kn_param_pred_fn)(const char *name, void *user);
kn_status kn_adamw_freeze(kn_adamw *o, kn_param_pred_fn pred, void *user, int *nfrozen);
/* Zeroes the gradients of the frozen parameters (their grads are None in torch), so that
 * kn_grad_norm / kn_clip_grad_norm measure the trained parameters only. Call before clipping. */
void kn_adamw_zero_frozen_grads(kn_adamw *o);

/* Global L2 norm of all gradients of P (sum of squares in double, fixed chunk order). */
double kn_grad_norm(const kn_params *P);
/* torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): if the norm exceeds max_norm, scales
 * every gradient by max_norm / (norm + 1e-6). Returns the norm before clipping. max_norm <= 0:
 * only measures. */
double kn_clip_grad_norm(kn_params *P, double max_norm);

/* Learning rate: linear warm-up lr_max*(s+1)/warmup for s < warmup, then cosine from lr_max to
 * lr_min over [warmup, total), lr_min after. s is the 0-based index of the step about to run. */
typedef struct kn_lr_schedule {
    double lr_max, lr_min;
    int64_t warmup_steps, total_steps;
} kn_lr_schedule;

double kn_lr_at(const kn_lr_schedule *s, int64_t step);

/* EMA of the weights, as diffusers EMAModel (update_after_step=0, use_ema_warmup=False):
 * on update k (0-based), d = 0 if k == 0 else min(decay, (1+k)/(10+k)) when warmup is on,
 * else d = decay; ema -= (1 - d) * (ema - p). The EMA starts as a copy of P. */
typedef struct kn_ema {
    kn_params *P;
    float *w;           /* P->numel floats in P->block's layout */
    double decay;
    int warmup;
    int64_t updates;    /* updates done (diffusers' optimization_step) */
} kn_ema;

kn_status kn_ema_init(kn_ema *e, kn_params *P, double decay, int warmup);
void kn_ema_free(kn_ema *e);
/* The decay the next update will use. */
double kn_ema_next_decay(const kn_ema *e);
void kn_ema_update(kn_ema *e);
/* Copies the EMA weights into P's values (for evaluation / export). */
void kn_ema_copy_to(const kn_ema *e, kn_params *P);

#endif
