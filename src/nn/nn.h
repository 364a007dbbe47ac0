/* nn.h — modules built from ops: a compute context with a sticky error and an optional tape,
 * named parameters, and the layers the U-Nets, autoencoders and text encoders share.
 *
 * The compute context (kn_ctx) owns nothing but an arena and an optional tape:
 *   - every nn op takes a context and kn_var inputs and returns a kn_var allocated in the arena;
 *   - errors are sticky: the first failing op records its message in ctx->status and every later op
 *     returns NULL at once, so model code reads like the math and checks once at the end
 *     (ggml-style);
 *   - when ctx->tape is non-NULL every op records a node (inputs, output, what its backward needs);
 *     kn_backward() walks the tape in reverse and calls each op's backward from ops/, which
 *     accumulates into the inputs' gradients. With no tape (inference) nothing is recorded and a
 *     module may compact the arena after itself (kn_ctx_scope_*) so that peak memory stays that of
 *     the largest block, not of the whole network.
 */
#ifndef KN_NN_H
#define KN_NN_H

#include "ops/ops.h"

typedef struct kn_var {
    kn_tensor v;       /* value */
    kn_tensor g;       /* gradient (g.data NULL until backward reaches it) */
    int requires_grad; /* parameters in training, and everything computed from them */
    int gown;          /* backward allocated g.data on the heap and frees it once it is consumed */
    int src;           /* 1 + index of the tape node that made it (0: none); a norm or activation
                        * output that a scope released is recomputed from it in backward */
} kn_var;

typedef struct kn_tape kn_tape;

typedef struct kn_ctx {
    kn_arena *A;
    kn_tape *tape;     /* NULL: inference */
    kn_status status;  /* sticky: first failure */
    char error[512];
    int frames;        /* frames per sample in folded (B*T, ...) video, used by temporal layers */
    int checkpointing; /* training: modules that support it recompute their activations in backward */
    int keep_all;      /* training: scopes keep every activation (the path before compaction; for tests) */
} kn_ctx;

void kn_ctx_init(kn_ctx *c, kn_arena *A, kn_tape *tape);
/* Returns ctx->status and, on failure, re-publishes the message through kn_last_error(). */
kn_status kn_ctx_status(kn_ctx *c);
/* Records a failure (the current kn_last_error()) unless one is recorded already. */
void kn_ctx_fail(kn_ctx *c, kn_status st);
kn_status kn_ctx_failf(kn_ctx *c, kn_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A scope for memory: after a block computes `out`, kn_ctx_scope_end moves out's data down to the
 * scope's mark and releases everything else allocated in the scope. With a tape it also keeps what
 * the scope's tape nodes' backwards read (and the var structs the tape points at), moved down and
 * rebased; the data of the scope's other vars is released (their v.data becomes NULL). Either way
 * only the returned var of what the scope made may be used afterwards. Returns the (possibly moved)
 * var. */
size_t kn_ctx_scope_begin(kn_ctx *c);
kn_var *kn_ctx_scope_end(kn_ctx *c, size_t mark, kn_var *out);

/* Vars */
kn_var *kn_var_new(kn_ctx *c, int ndim, const int64_t *shape);   /* uninitialised F32 */
kn_var *kn_var_wrap(kn_ctx *c, const kn_tensor *t);              /* no copy */
kn_var *kn_var_reshape(kn_ctx *c, kn_var *x, int ndim, const int64_t *shape); /* view, shares grad */

/* ------------------------------------------------------------- parameters
 * A flat table of named parameters in one block of memory. Names are the PyTorch state-dict names.
 * Modules declare their parameters while the model is built (shape known from the config); the
 * loader fills them from safetensors by name. */
typedef struct kn_param {
    char *name;
    kn_var var;
} kn_param;

typedef struct kn_params {
    kn_param **items;
    int n, cap;
    float *block;      /* all values, allocated by kn_params_alloc (zero-filled, mmap'ed) */
    size_t block_bytes;
    float *grad_block; /* all gradients, allocated by kn_params_alloc_grads */
    size_t numel;
} kn_params;

/* Declares a parameter; returns its var (data assigned later by kn_params_alloc). The name is
 * printf-style. */
kn_var *kn_param_decl(kn_params *P, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
kn_status kn_params_alloc(kn_params *P);       /* one block for all values (zeroed) */
/* A parameter whose value points outside the block (a mapped weight file) cannot be trained. */
kn_status kn_params_alloc_grads(kn_params *P); /* one block for all grads (zeroed), requires_grad=1 */
void kn_params_zero_grads(kn_params *P);
kn_param *kn_params_find(const kn_params *P, const char *name);
void kn_params_free(kn_params *P);
/* Fills every parameter with N(0, 1)/sqrt(fan_in) (weights) / zeros (biases) / ones (norm
 * weights), from Philox(seed); for tests and training from scratch. */
void kn_params_init_default(kn_params *P, uint64_t seed);

/* ---------------------------------------------------------------- tape */
kn_tape *kn_tape_new(void);
void kn_tape_free(kn_tape *t);
void kn_tape_clear(kn_tape *t);
/* Backpropagates from `loss_grad` seeded into out->g (allocated and filled with `seed` if NULL). */
kn_status kn_backward(kn_ctx *c, kn_var *out, float seed);

/* ------------------------------------------------------------ var ops
 * Each wraps the op of the same name in ops.h, records it on the tape, and returns NULL after a
 * failure (check kn_ctx_status). */
kn_var *kn_v_linear(kn_ctx *c, kn_var *x, kn_var *w, kn_var *b);
kn_var *kn_v_conv2d(kn_ctx *c, kn_var *x, kn_var *w, kn_var *b, kn_conv2d_params p);
kn_var *kn_v_conv_temporal(kn_ctx *c, kn_var *x, int64_t T, kn_var *w, kn_var *b, int pad_front, int pad_back);
kn_var *kn_v_group_norm(kn_ctx *c, kn_var *x, int groups, int64_t frames, float eps, kn_var *gamma, kn_var *beta);
kn_var *kn_v_layer_norm(kn_ctx *c, kn_var *x, float eps, kn_var *gamma, kn_var *beta);
kn_var *kn_v_act(kn_ctx *c, kn_act act, kn_var *x);
kn_var *kn_v_geglu(kn_ctx *c, kn_var *x);
kn_var *kn_v_attention(kn_ctx *c, kn_var *q, kn_var *k, kn_var *v, int heads, float scale, const kn_tensor *mask);
kn_var *kn_v_add(kn_ctx *c, kn_var *a, kn_var *b);   /* same shape, or b broadcast (see kn_add) */
kn_var *kn_v_scale(kn_ctx *c, kn_var *x, float s);
kn_var *kn_v_resize_nearest(kn_ctx *c, kn_var *x, int64_t Ho, int64_t Wo);
kn_var *kn_v_concat(kn_ctx *c, kn_var *a, kn_var *b, int dim);
/* out[i] = x permuted (materialised copy). */
kn_var *kn_v_permute(kn_ctx *c, kn_var *x, const int *perm);
/* Adds a per-sample, per-channel bias: x (N, C, ...) + b (N, C) broadcast over the rest. */
kn_var *kn_v_add_nc(kn_ctx *c, kn_var *x, kn_var *b);
/* Repeats each row of x (N, ...) r times: (N*r, ...), like torch.repeat_interleave(dim=0). */
kn_var *kn_v_repeat_rows(kn_ctx *c, kn_var *x, int64_t r);
/* Mean of each group of r consecutive rows of x (N*r, ...): (N, ...), the adjoint of
 * kn_v_repeat_rows up to 1/r (e.g. text (B, L, D) viewed as (B*L, D) -> mean over tokens (B, D)). */
kn_var *kn_v_mean_rows(kn_ctx *c, kn_var *x, int64_t r);
/* Embedding lookup: weight (V, D), ids (B*L) -> (B, L, D). Backward scatter-adds into weight. */
kn_var *kn_v_embedding(kn_ctx *c, kn_var *weight, const int32_t *ids, int64_t B, int64_t L);
/* y = clamp(x, lo, hi); the gradient passes only where lo < x < hi (torch.clamp's rule: it also
 * passes at the bounds themselves). */
kn_var *kn_v_clamp(kn_ctx *c, kn_var *x, float lo, float hi);
/* Row gather: x (N, D) viewed as rows, rows[i] in [0, N) -> (n, D); backward scatter-adds. */
kn_var *kn_v_gather_rows(kn_ctx *c, kn_var *x, const int64_t *rows, int64_t n);
/* Gradient checkpointing (recomputation): runs out = fn(c, in, nin, user) without recording its
 * inside on the tape (so its activations are not kept; with the context's scopes they are freed
 * at once), and records one node that, in backward, runs fn again on a fresh tape and
 * backpropagates through it, then releases that memory. Parameters used inside fn receive their
 * gradients as usual. Without a tape, or when c->checkpointing is 0, it simply calls fn. fn must
 * be deterministic (it is: every kernel is). At most 4 inputs. */
typedef kn_var *(*kn_ckpt_fn)(kn_ctx *c, kn_var **in, int nin, const void *user);
kn_var *kn_v_checkpoint(kn_ctx *c, kn_ckpt_fn fn, kn_var **in, int nin, const void *user);
/* Slices [start, end) along dim into a new contiguous var. */
kn_var *kn_v_slice(kn_ctx *c, kn_var *x, int dim, int64_t start, int64_t end);

#endif
