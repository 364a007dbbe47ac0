/* core.h — internal helpers of the core layer (tensors, arenas, threads, RNG, errors).
 * Every other layer may include this; it includes only the public header. */
#ifndef KN_CORE_H
#define KN_CORE_H

#include "kinema.h"

#include <stdio.h>
#include <stdlib.h>

/* Always-on assertion for invariants a caller cannot cause. */
#define KN_ASSERT(x)                                                                     \
    do {                                                                                 \
        if (!(x)) {                                                                      \
            fprintf(stderr, "kinema: internal error at %s:%d: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#define KN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KN_UNUSED(x) ((void)(x))

/* Propagates a failing status. */
#define KN_TRY(expr)                      \
    do {                                  \
        kn_status kn_try_st_ = (expr);    \
        if (kn_try_st_ != KN_OK)          \
            return kn_try_st_;            \
    } while (0)

/* Address of arena position `mark` (for checking whether a pointer was allocated after it). */
void *kn_arena_ptr(const kn_arena *A, size_t mark);

/* Contiguous strides for a shape. */
void kn_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);

/* 64-byte aligned heap memory (for weights and scratch that outlive an arena). */
void *kn_aligned_alloc(size_t nbytes);
void kn_aligned_free(void *p);

/* Checks t is F32 with the given rank; on failure sets a message naming op and shape. */
kn_status kn_check_f32(const char *op, const char *what, const kn_tensor *t, int ndim);

#endif
