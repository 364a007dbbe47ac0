/* checkpoint.c — the list of tensors a checkpoint holds, as views of the live training state, and
 * the stop-signal flag. */
#include "train/checkpoint.h"

#include <signal.h>
#include <string.h>

static int n_groups(const kn_train_state *S) { return S->ema ? 4 : 3; }

int kn_ckpt_count(const kn_train_state *S) {
    if (!S || !S->P || !S->P->block || !S->opt || !S->opt->m) {
        kn_fail(KN_ERR_ARG, "checkpoint: the state needs allocated parameters and an initialised optimiser");
        return -1;
    }
    if (S->opt->P != S->P || (S->ema && S->ema->P != S->P)) {
        kn_fail(KN_ERR_ARG, "checkpoint: optimiser / EMA belong to another parameter table");
        return -1;
    }
    if (S->n_rng < 0 || S->n_rng > KN_CKPT_MAX_RNG) {
        kn_fail(KN_ERR_ARG, "checkpoint: n_rng %d outside [0, %d]", S->n_rng, KN_CKPT_MAX_RNG);
        return -1;
    }
    return n_groups(S) * S->P->n + 2 + (S->ema ? 1 : 0) + (S->n_rng > 0);
}

kn_status kn_ckpt_entry(const kn_train_state *S, int i, char *name, size_t cap, kn_tensor *view) {
    int n = kn_ckpt_count(S);
    if (n < 0)
        return KN_ERR_ARG;
    if (i < 0 || i >= n)
        return kn_fail(KN_ERR_ARG, "checkpoint: entry %d outside [0, %d)", i, n);
    int np = S->P->n, g = i / (np ? np : 1);
    if (i < n_groups(S) * np) {
        const kn_param *p = S->P->items[i % np];
        const float *base[4] = {S->P->block, S->ema ? S->ema->w : S->opt->m, S->ema ? S->opt->m : S->opt->v,
                                S->opt->v};
        const char *prefix[4] = {"", S->ema ? "ema." : "optim.m.", S->ema ? "optim.m." : "optim.v.", "optim.v."};
        const char *pp = S->param_prefix ? S->param_prefix : "";
        int len = snprintf(name, cap, "%s%s%s", prefix[g], pp, p->name);
        if (len < 0 || (size_t)len >= cap)
            return kn_fail(KN_ERR_ARG, "checkpoint: name '%s%s%s' longer than %zu", prefix[g], pp, p->name, cap - 1);
        int64_t off = (const float *)p->var.v.data - S->P->block;
        *view = kn_tensor_view(KN_F32, p->var.v.ndim, p->var.v.shape, (void *)(base[g] + off));
        return KN_OK;
    }
    int k = i - n_groups(S) * np;
    int64_t one = 1, nr = S->n_rng;
    kn_train_state *W = (kn_train_state *)S; /* the views are written through on restore */
    const char *t = S->tag ? S->tag : "", *dot = S->tag ? "." : "";
    if (k == 0) {
        snprintf(name, cap, "%s%strain.step", t, dot);
        *view = kn_tensor_view(KN_I64, 1, &one, &W->step);
    } else if (k == 1) {
        snprintf(name, cap, "%s%soptim.step", t, dot);
        *view = kn_tensor_view(KN_I64, 1, &one, &W->opt->step);
    } else if (k == 2 && S->ema) {
        snprintf(name, cap, "%s%sema.updates", t, dot);
        *view = kn_tensor_view(KN_I64, 1, &one, &W->ema->updates);
    } else {
        snprintf(name, cap, "%s%strain.rng", t, dot);
        *view = kn_tensor_view(KN_I64, 1, &nr, W->rng);
    }
    return KN_OK;
}

static volatile sig_atomic_t stop_flag;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

kn_status kn_train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return kn_fail(KN_ERR_INTERNAL, "train: cannot install SIGINT/SIGTERM handlers");
    return KN_OK;
}

int kn_train_stop_requested(void) { return stop_flag != 0; }

void kn_train_stop_reset(void) { stop_flag = 0; }
