/*
 * kinema.h — the public interface of kinema, a text-to-video diffusion engine in C.
 *
 * Usage (the core: tensors, arenas, threads, noise):
 *
 *     #include "kinema.h"
 *
 *     kn_set_threads(2);
 *     kn_arena *A = kn_arena_new(64 << 20);            // activations live here
 *     int64_t shape[5] = {1, 4, 16, 32, 32};            // (N,C,T,H,W)
 *     kn_tensor x;
 *     if (kn_tensor_alloc(A, &x, KN_F32, 5, shape) != KN_OK) {
 *         fprintf(stderr, "kinema: %s\n", kn_last_error());
 *         return 1;
 *     }
 *     kn_randn_fill(x.data, kn_tensor_numel(&x), 42, 0); // same noise on every machine
 *     ...
 *     kn_arena_reset(A, 0);                             // next step reuses the memory
 *     kn_arena_free(A);
 *
 * Conventions
 *   - Every function that can fail on caller input returns kn_status (KN_OK = 0) and leaves a
 *     one-line message in kn_last_error() (thread-local). Constructors return NULL on failure.
 *     The library never prints to stdout and never calls exit().
 *   - Tensors are described by value (kn_tensor): dtype, up to KN_MAX_DIMS dimensions, strides in
 *     elements, and a data pointer the tensor does not own (an arena, a mapped file or the heap).
 *     Shapes are written outermost first, as in PyTorch: a video batch is (N,C,T,H,W) and its
 *     contiguous strides are (C*T*H*W, T*H*W, H*W, W, 1). Inside the U-Nets, frames are folded
 *     into the batch as (N*T, C, H, W) with row b*T + t = batch b, frame t (diffusers' layout).
 *   - Threads: one process-wide pool, sized by kn_set_threads(). Results are bitwise identical for
 *     every thread count: work is split by output element, and every reduction runs in a fixed
 *     order that does not depend on the split.
 *   - Thread safety: compute functions may be called from one thread at a time (they use the
 *     shared pool). Error messages are per thread.
 */
#ifndef KINEMA_H
#define KINEMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KINEMA_VERSION "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum {
    KN_OK = 0,
    KN_ERR_ARG,       /* a bad argument: option, shape, dtype */
    KN_ERR_SHAPE,     /* tensor shapes do not fit the op */
    KN_ERR_DTYPE,     /* dtype not supported by the op */
    KN_ERR_IO,        /* a file could not be opened, read or written */
    KN_ERR_FORMAT,    /* a file was read but its contents are malformed */
    KN_ERR_NOMEM,     /* an allocation or an arena ran out */
    KN_ERR_UNSUPPORTED,
    KN_ERR_INTERNAL,
} kn_status;

/* The message of the last failure on this thread ("" if none). */
const char *kn_last_error(void);
/* Sets the message (printf-style) and returns st, so that callers can `return kn_fail(...)`. */
kn_status kn_fail(kn_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kn_clear_error(void);

/* --------------------------------------------------------------- tensors */

#define KN_MAX_DIMS 6

typedef enum { KN_F32 = 0, KN_F16, KN_BF16, KN_I32, KN_I64, KN_U8, KN_DTYPE_COUNT } kn_dtype;

size_t kn_dtype_size(kn_dtype t);
const char *kn_dtype_name(kn_dtype t);  /* "F32", "F16", ... as in safetensors */

typedef struct kn_tensor {
    kn_dtype dtype;
    int ndim;
    int64_t shape[KN_MAX_DIMS];
    int64_t stride[KN_MAX_DIMS]; /* in elements */
    void *data;                  /* not owned */
} kn_tensor;

/* A contiguous tensor description over `data` (which may be NULL for a shape-only tensor). */
kn_tensor kn_tensor_view(kn_dtype t, int ndim, const int64_t *shape, void *data);
int64_t kn_tensor_numel(const kn_tensor *t);
size_t kn_tensor_nbytes(const kn_tensor *t);
int kn_tensor_is_contiguous(const kn_tensor *t);
int kn_tensor_same_shape(const kn_tensor *a, const kn_tensor *b);
/* Writes "(2,4,16,32,32)" into buf; returns buf. */
char *kn_shape_str(const kn_tensor *t, char *buf, size_t n);

/* Views (no copy). Each returns an error if the request does not fit. */
kn_status kn_tensor_permute(const kn_tensor *t, const int *perm, kn_tensor *out);
/* Reshape needs a contiguous tensor; one dimension may be -1. */
kn_status kn_tensor_reshape(const kn_tensor *t, int ndim, const int64_t *shape, kn_tensor *out);
/* Slice [start, end) along dim. */
kn_status kn_tensor_slice(const kn_tensor *t, int dim, int64_t start, int64_t end, kn_tensor *out);

/* Copies (any strides, any dtype pair among F32/F16/BF16, else same dtype) into dst's layout. */
kn_status kn_tensor_copy(kn_tensor *dst, const kn_tensor *src);
/* Concatenates n tensors along dim into out (allocated by the caller or from A if out->data is NULL). */
typedef struct kn_arena kn_arena;
kn_status kn_tensor_concat(kn_arena *A, const kn_tensor *const *ts, int n, int dim, kn_tensor *out);
/* Splits t along dim into n views of the given sizes (no copy). */
kn_status kn_tensor_split(const kn_tensor *t, int dim, int n, const int64_t *sizes, kn_tensor *outs);

/* ---------------------------------------------------------------- arenas */

/* A bump allocator. Activations of one forward pass come from an arena; kn_arena_reset() to a
 * mark releases everything allocated after it, so a sampling loop allocates nothing after its
 * first step. Allocations are 64-byte aligned. The arena never grows: a request past its
 * capacity fails with KN_ERR_NOMEM and a message naming the sizes. */
kn_arena *kn_arena_new(size_t capacity);
void kn_arena_free(kn_arena *A);
void *kn_arena_alloc(kn_arena *A, size_t nbytes);     /* NULL + message on failure */
size_t kn_arena_mark(const kn_arena *A);
void kn_arena_reset(kn_arena *A, size_t mark);
size_t kn_arena_used(const kn_arena *A);
size_t kn_arena_peak(const kn_arena *A);
size_t kn_arena_capacity(const kn_arena *A);

/* Allocates a contiguous tensor from A (or from the heap when A is NULL; free it with
 * kn_tensor_free). Contents are uninitialised. */
kn_status kn_tensor_alloc(kn_arena *A, kn_tensor *t, kn_dtype dt, int ndim, const int64_t *shape);
kn_status kn_tensor_zeros(kn_arena *A, kn_tensor *t, kn_dtype dt, int ndim, const int64_t *shape);
void kn_tensor_free(kn_tensor *t); /* heap tensors only */

/* Peak resident set size of the process in bytes (from the kernel), 0 if unknown. */
size_t kn_peak_rss(void);
/* Memory the kernel says is available for new allocations (MemAvailable), 0 if unknown. */
size_t kn_mem_available(void);

/* --------------------------------------------------------------- threads */

/* Sets the size of the process-wide pool (>= 1). Returns the previous size. */
int kn_set_threads(int n);
int kn_get_threads(void);

/* Runs fn(ith, nth, ctx) on nth = kn_get_threads() workers (the caller is worker 0) and waits. */
typedef void (*kn_task_fn)(int ith, int nth, void *ctx);
void kn_parallel(kn_task_fn fn, void *ctx);
/* Runs fn(i, ctx) for i in [0, n), items dealt to workers in contiguous blocks. */
typedef void (*kn_item_fn)(int64_t i, void *ctx);
void kn_parallel_for(int64_t n, kn_item_fn fn, void *ctx);
/* Splits [0, n) into nth nearly equal contiguous ranges; sets *b, *e for worker ith. */
void kn_split_range(int64_t n, int ith, int nth, int64_t *b, int64_t *e);

/* ------------------------------------------------------------------- RNG */

/* Philox4x32-10 (Salmon et al., SC'11): a counter-based generator. out = philox(ctr, key). */
void kn_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Fills x[0..n) with standard normal (resp. uniform [0,1)) values. Element i of the stream
 * (seed, offset) depends only on (seed, offset + i): identical for any thread count, any
 * machine, and any way of splitting the fill into calls. */
void kn_randn_fill(float *x, int64_t n, uint64_t seed, uint64_t offset);
void kn_rand_fill(float *x, int64_t n, uint64_t seed, uint64_t offset);

/* --------------------------------------------------- half-precision storage */

uint16_t kn_f32_to_f16(float f);   /* round to nearest even; overflow -> inf; NaN kept */
float kn_f16_to_f32(uint16_t h);
uint16_t kn_f32_to_bf16(float f);  /* round to nearest even; NaN kept quiet */
float kn_bf16_to_f32(uint16_t h);
void kn_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
void kn_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void kn_f32_to_bf16_row(const float *x, uint16_t *y, int64_t n);
void kn_bf16_to_f32_row(const uint16_t *x, float *y, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* KINEMA_H */
