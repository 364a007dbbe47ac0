/* threads.c — a persistent worker pool.
 *
 * kn_parallel(fn, ctx) runs fn(ith, nth, ctx) on every worker, the caller being worker 0, and
 * returns when all are done (a barrier). Workers sleep on a condition variable between jobs.
 * Ops split their work by output element (ggml's (ith, nth) row split), so the result never
 * depends on nth. */
#include "core.h"

#include <pthread.h>
#include <stdatomic.h>

#define KN_MAX_THREADS 256

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_t tid[KN_MAX_THREADS];
    int nth;          /* workers including the caller */
    int started;      /* threads running */
    uint64_t gen;     /* job generation */
    int pending;      /* workers still running the current job */
    int quit;
    kn_task_fn fn;
    void *ctx;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 1, 0, 0, 0, 0, NULL, NULL};

typedef struct { int ith; uint64_t gen0; } worker_arg;
static worker_arg args[KN_MAX_THREADS];

static void *worker(void *p) {
    int ith = ((worker_arg *)p)->ith;
    /* the generation current when the worker was made: a job posted before the thread got
     * here must still be seen as new */
    uint64_t seen = ((worker_arg *)p)->gen0;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (P.gen == seen && !P.quit)
            pthread_cond_wait(&P.wake, &P.mu);
        if (P.quit && P.gen == seen)
            break;
        seen = P.gen;
        kn_task_fn fn = P.fn;
        void *ctx = P.ctx;
        int nth = P.nth;
        pthread_mutex_unlock(&P.mu);
        if (ith < nth)
            fn(ith, nth, ctx);
        pthread_mutex_lock(&P.mu);
        if (ith < nth && --P.pending == 0)
            pthread_cond_signal(&P.done);
    }
    P.started--;
    pthread_cond_broadcast(&P.done);
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

static void stop_all(void) {
    pthread_mutex_lock(&P.mu);
    P.quit = 1;
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    for (int i = 1; i < KN_MAX_THREADS; i++)
        if (P.tid[i]) {
            pthread_join(P.tid[i], NULL);
            P.tid[i] = 0;
        }
    pthread_mutex_lock(&P.mu);
    P.quit = 0;
    P.started = 0;
    pthread_mutex_unlock(&P.mu);
}

int kn_set_threads(int n) {
    int prev = P.nth;
    if (n < 1)
        n = 1;
    if (n > KN_MAX_THREADS)
        n = KN_MAX_THREADS;
    if (n == P.nth)
        return prev;
    stop_all();
    P.nth = n;
    for (int i = 1; i < n; i++) {
        args[i].ith = i;
        args[i].gen0 = P.gen;
        if (pthread_create(&P.tid[i], NULL, worker, &args[i]) != 0) {
            P.tid[i] = 0;
            P.nth = i; /* run with what we have */
            break;
        }
        pthread_mutex_lock(&P.mu);
        P.started++;
        pthread_mutex_unlock(&P.mu);
    }
    return prev;
}

int kn_get_threads(void) { return P.nth; }

void kn_parallel(kn_task_fn fn, void *ctx) {
    if (P.nth == 1) {
        fn(0, 1, ctx);
        return;
    }
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.ctx = ctx;
    P.pending = P.nth - 1;
    P.gen++;
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    fn(0, P.nth, ctx);
    pthread_mutex_lock(&P.mu);
    while (P.pending > 0)
        pthread_cond_wait(&P.done, &P.mu);
    pthread_mutex_unlock(&P.mu);
}

void kn_split_range(int64_t n, int ith, int nth, int64_t *b, int64_t *e) {
    int64_t q = n / nth, r = n % nth;
    *b = ith * q + KN_MIN((int64_t)ith, r);
    *e = *b + q + (ith < r ? 1 : 0);
}

typedef struct {
    int64_t n;
    kn_item_fn fn;
    void *ctx;
} pfor_ctx;

static void pfor_task(int ith, int nth, void *p) {
    pfor_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++)
        c->fn(i, c->ctx);
}

void kn_parallel_for(int64_t n, kn_item_fn fn, void *ctx) {
    if (n <= 0)
        return;
    pfor_ctx c = {n, fn, ctx};
    if (n == 1 || P.nth == 1) {
        for (int64_t i = 0; i < n; i++)
            fn(i, ctx);
        return;
    }
    kn_parallel(pfor_task, &c);
}
