/* rng.c — Philox4x32-10 and the noise streams built on it.
 *
 * Stream (seed, i): one Philox call with key = (seed lo, seed hi) and counter = (i/2 lo, i/2 hi,
 * 0x6b696e65 "kine", 0) yields four words; the pair (w0,w1) makes the Box-Muller normal of
 * element 2k and (w2,w3) that of element 2k+1 via the cosine branch. So element i depends only
 * on (seed, i). */
#include "core.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void kn_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n1 = lo1;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        uint32_t n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* uniform in (0,1], 24 bits: never 0 so that log() is finite */
static inline float u01_open0(uint32_t w) { return ((float)(w >> 8) + 1.0f) * (1.0f / 16777216.0f); }
/* uniform in [0,1) */
static inline float u01(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

static void block(uint64_t seed, uint64_t k, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)k, (uint32_t)(k >> 32), 0x6b696e65u, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    kn_philox4x32_10(ctr, key, out);
}

static inline float normal_at(uint64_t seed, uint64_t i) {
    uint32_t w[4];
    block(seed, i >> 1, w);
    uint32_t a = (i & 1) ? w[2] : w[0], b = (i & 1) ? w[3] : w[1];
    /* double inside so the value is the same with or without FMA contraction */
    double r = sqrt(-2.0 * log((double)u01_open0(a)));
    double th = 6.283185307179586 * (double)u01(b);
    return (float)(r * cos(th));
}

typedef struct { float *x; int64_t n; uint64_t seed, off; int normal; } fill_ctx;

static void fill_task(int ith, int nth, void *p) {
    fill_ctx *c = p;
    int64_t b, e;
    kn_split_range(c->n, ith, nth, &b, &e);
    for (int64_t i = b; i < e; i++) {
        uint64_t g = c->off + (uint64_t)i;
        if (c->normal) {
            c->x[i] = normal_at(c->seed, g);
        } else {
            uint32_t w[4];
            block(c->seed, g >> 2, w);
            c->x[i] = u01(w[g & 3]);
        }
    }
}

void kn_randn_fill(float *x, int64_t n, uint64_t seed, uint64_t offset) {
    fill_ctx c = {x, n, seed, offset, 1};
    if (n < 4096) fill_task(0, 1, &c); else kn_parallel(fill_task, &c);
}

void kn_rand_fill(float *x, int64_t n, uint64_t seed, uint64_t offset) {
    fill_ctx c = {x, n, seed, offset, 0};
    if (n < 4096) fill_task(0, 1, &c); else kn_parallel(fill_task, &c);
}
