/* arena.c — bump allocator for activations, and process memory statistics. */
#include "core.h"

#include <string.h>
#include <sys/mman.h>

struct kn_arena {
    uint8_t *base;
    size_t cap, used, peak;
    int mapped; /* reserved with mmap: pages are committed only when first touched */
};

/* Arenas of this size and above are reserved as address space (MAP_NORESERVE): a caller can ask
 * for "as much as the machine has" and pay only for the pages a run really touches, which is
 * also what kn_peak_rss() then reports.
 *
 * First-touch page faults: training and denoising loops reset and reuse one arena
 * (kn_arena_reset), and nothing here gives pages back before kn_arena_free, so pages are faulted
 * in once per run (bench-train, widths 64,128,256,256, 8 frames: the same 891 K minor faults for
 * 1 step as for 2; ~2 s of system time in step 1, none after). Transparent huge pages
 * (MADV_HUGEPAGE on a 2 MiB-aligned reservation) were measured and not kept: 416 K faults, but
 * step 1 took 1.5-2 s more CPU (system time 3.4 s against 2.0 s) on this VM and later steps were
 * unchanged. */
#define KN_ARENA_MMAP_MIN ((size_t)64 << 20)

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
    if (capacity >= KN_ARENA_MMAP_MIN) {
        void *p = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            A->base = p;
            A->mapped = 1;
        }
    } else {
        A->base = kn_aligned_alloc(capacity);
    }
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
    if (A->mapped)
        munmap(A->base, A->cap);
    else
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

size_t kn_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0) {
            kb = strtoull(line + 13, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}
