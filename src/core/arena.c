/* arena.c — bump allocator for activations, and process memory statistics. */
#include "core.h"

#include <string.h>

struct kn_arena {
    uint8_t *base;
    size_t cap, used, peak;
};

void *kn_aligned_alloc(size_t nbytes) {
    void *p = NULL;
    if (nbytes == 0)
        nbytes = 64;
    if (posix_memalign(&p, 64, (nbytes + 63) & ~(size_t)63) != 0)
        return NULL;
    return p;
}

void kn_aligned_free(void *p) { free(p); }

kn_arena *kn_arena_new(size_t capacity) {
    kn_arena *A = calloc(1, sizeof *A);
    if (!A) {
        kn_fail(KN_ERR_NOMEM, "arena: out of memory");
        return NULL;
    }
    capacity = (capacity + 63) & ~(size_t)63;
    A->base = kn_aligned_alloc(capacity);
    if (!A->base) {
        free(A);
        kn_fail(KN_ERR_NOMEM, "arena: cannot reserve %zu bytes", capacity);
        return NULL;
    }
    A->cap = capacity;
    return A;
}

void kn_arena_free(kn_arena *A) {
    if (!A)
        return;
    kn_aligned_free(A->base);
    free(A);
}

void *kn_arena_alloc(kn_arena *A, size_t nbytes) {
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n < nbytes || A->used + n > A->cap || A->used + n < A->used) {
        kn_fail(KN_ERR_NOMEM, "arena: request of %zu bytes with %zu of %zu used", nbytes, A->used,
                A->cap);
        return NULL;
    }
    void *p = A->base + A->used;
    A->used += n;
    if (A->used > A->peak)
        A->peak = A->used;
    return p;
}

size_t kn_arena_mark(const kn_arena *A) { return A->used; }
void *kn_arena_ptr(const kn_arena *A, size_t mark) { return A->base + mark; }
void kn_arena_reset(kn_arena *A, size_t mark) {
    KN_ASSERT(mark <= A->used);
    A->used = mark;
}
size_t kn_arena_used(const kn_arena *A) { return A->used; }
size_t kn_arena_peak(const kn_arena *A) { return A->peak; }
size_t kn_arena_capacity(const kn_arena *A) { return A->cap; }

size_t kn_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}
