/* checkpoint.h — what a training checkpoint holds and how it is restored (in memory). The file
 * itself is written and read by io/checkpoint_io.h (io sits above train).
 *
 * Entries, in this order (names and shapes are checked one by one on restore):
 *     <param name>            F32  the parameter's shape          (the model, its own names)
 *     ema.<param name>        F32  same                           (if an EMA is attached)
 *     optim.m.<param name>    F32  same                           (AdamW first moment)
 *     optim.v.<param name>    F32  same                           (AdamW second moment)
 *     train.step              I64  (1)    optimisation steps done
 *     optim.step              I64  (1)    AdamW's step count (bias correction)
 *     ema.updates             I64  (1)    EMA updates done (decay warm-up)   (if an EMA)
 *     train.rng               I64  (n_rng) Philox stream offsets/seeds of the data and noise
 * plus the training config (a JSON string) in __metadata__["config"].
 *
 * A training loop polls kn_train_stop_requested() (set by SIGINT/SIGTERM once
 * kn_train_install_signal_handlers() ran) to write a final checkpoint and stop. */
#ifndef KN_CHECKPOINT_H
#define KN_CHECKPOINT_H

#include "train/optim.h"

#define KN_CKPT_MAX_RNG 16

typedef struct kn_train_state {
    kn_params *P;      /* required */
    kn_adamw *opt;     /* required */
    kn_ema *ema;       /* optional */
    int64_t step;
    int64_t rng[KN_CKPT_MAX_RNG];
    int n_rng;         /* how many rng values are saved (0..KN_CKPT_MAX_RNG) */
    const char *config_json; /* not owned; NULL: "{}" */
    const char *tag;   /* NULL, or a prefix for the scalar entries ("<tag>.train.step", ...) so that
                        * several states (one per model) can share one checkpoint file */
    const char *param_prefix; /* NULL, or a prefix for the parameter entries ("tsr." ->
                               * "tsr.conv_in.weight", "ema.tsr.conv_in.weight", ...): models
                               * whose parameter names collide (the cascade's UNets) */
} kn_train_state;

/* Number of entries for S (fails with -1 and a message when S is incomplete). */
int kn_ckpt_count(const kn_train_state *S);
/* Entry i: its name (into name[cap]) and a view of the live memory it is saved from and restored
 * into. */
kn_status kn_ckpt_entry(const kn_train_state *S, int i, char *name, size_t cap, kn_tensor *view);

/* Signals: SIGINT / SIGTERM set a flag (sig_atomic_t); the handlers do nothing else. */
kn_status kn_train_install_signal_handlers(void);
int kn_train_stop_requested(void);
void kn_train_stop_reset(void);

#endif
