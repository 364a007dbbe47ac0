/* gemm_lowp.h — GEMM with a reduced-precision weight operand (inference), and the bf16 mixed-precision
 * GEMM of training (kn_gemm_bf16, kn_set_compute_bf16; at the end).
 *
 *     C(M,N) = alpha * W(M,K) · op(B)(K,N) + beta * C
 *
 * W is the weight, row-major M x K exactly as PyTorch stores a Linear (out, in) or a Conv
 * (out, in/groups * kt * kh * kw) weight, in one of the formats below; B and C are F32.
 * op(B) = B (K x N, ldb >= N) or Bᵀ (B stored N x K, ldb >= K). trans_c = 1 stores C transposed:
 * element (i, j) at C[j*ldc + i] (that is how kn_linear gets y = x · Wᵀ with W as the left
 * operand).
 *
 * Weight formats (kn_wtype):
 *   KN_WT_F16   IEEE half, 2 bytes per weight; panels are widened with vcvtph2ps, f32 FMA.
 *   KN_WT_BF16  bfloat16, 2 bytes; B is rounded to bf16 (round to nearest even) while packed,
 *               products accumulate in f32 with AVX512-BF16 vdpbf16ps (pairs along K). Without
 *               AVX512-BF16 a fallback widens both to f32 (same rounded inputs, f32 FMA).
 *   KN_WT_Q8    q8_0-like: each row is cut into blocks of 32 weights along K (the last block of a
 *               row is zero-padded); a block is {float d; int8_t q[32]} (36 bytes, packed), the
 *               weight is d * q. d = max|w| / 127, q = round-half-away(w / d) in [-127, 127].
 *               Panels are dequantised to f32 (exactly d * q) and run through the f32 kernel.
 * Tensors: kinema.h has no Q8 dtype; a Q8 weight tensor is described as dtype KN_U8 with the
 * weight's logical shape (O, ...) and data pointing at the blocks (kn_tensor_nbytes() does not
 * describe its storage: use kn_lowp_nbytes()). F16 / BF16 weights are plain KN_F16 / KN_BF16
 * tensors.
 *
 * Determinism: the loop nest is that of kn_gemm (K blocks in increasing order, fixed output tiles
 * of MC x TN); a task owns its tile, so every thread count gives the same bits, and
 * kn_gemm_lowp_st equals kn_gemm_lowp bit for bit. The K blocks are multiples of 32 (a Q8 block
 * or a bf16 pair never straddles two). No allocation in the kernels: packing buffers are per OS
 * thread, allocated on first use. */
#ifndef KN_GEMM_LOWP_H
#define KN_GEMM_LOWP_H

#include "core/core.h"

typedef enum { KN_WT_F32 = 0, KN_WT_F16, KN_WT_BF16, KN_WT_Q8, KN_WT_COUNT } kn_wtype;

#define KN_Q8_BLOCK 32
typedef struct __attribute__((packed)) {
    float d;
    int8_t q[KN_Q8_BLOCK];
} kn_q8_block;

const char *kn_wtype_name(kn_wtype t); /* "f32", "f16", "bf16", "q8" */
/* Parses "f32" | "f16" | "bf16" | "q8"; a one-line error otherwise. */
kn_status kn_wtype_parse(const char *s, kn_wtype *t);
/* The weight format a tensor's dtype stands for: F32, F16, BF16, U8 (= Q8); else an error. */
kn_status kn_wtype_of(const char *op, const kn_tensor *w, kn_wtype *t);

/* Bytes of one row of K weights, and of a whole (rows x K) matrix, in format t. */
size_t kn_lowp_row_bytes(kn_wtype t, int64_t K);
size_t kn_lowp_nbytes(kn_wtype t, int64_t rows, int64_t K);

/* Converts rows x K f32 weights (row-major) into format t at dst (kn_lowp_nbytes bytes). */
void kn_lowp_quantize(kn_wtype t, const float *w, int64_t rows, int64_t K, void *dst);
/* The f32 values a weight row stands for (exact: d * q for Q8). */
void kn_lowp_dequantize_row(kn_wtype t, const void *row, int64_t K, float *y);

/* The GEMM (threaded over the kn_parallel pool), and its single-threaded twin for callers that
 * parallelise an outer loop (conv). W row i starts at (const char *)W + i * w_row_bytes. */
void kn_gemm_lowp(kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K, float alpha,
                  const void *W, size_t w_row_bytes, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc);
void kn_gemm_lowp_st(kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K, float alpha,
                     const void *W, size_t w_row_bytes, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc);
/* Naive reference: the dequantised W (and for BF16 the bf16-rounded B), double accumulation. */
void kn_gemm_lowp_ref(kn_wtype t, int trans_b, int trans_c, int64_t M, int64_t N, int64_t K, float alpha,
                      const void *W, size_t w_row_bytes, const float *B, int64_t ldb, float beta, float *C,
                      int64_t ldc);

/* ------------------------------------------------------- mixed precision (training)
 * Both operands f32 in memory, both rounded to bf16 (nearest even) while packed, products summed in
 * f32 by vdpbf16ps (llm.c / PyTorch autocast style: master weights, gradients and optimizer state
 * stay f32). Same contract as kn_gemm (ops.h): row-major C[M,N] = alpha * op(A) · op(B) + beta * C,
 * op(A) = A (M x K, lda >= K) or Aᵀ (A stored K x M, lda >= M), likewise B. Same loop nest and
 * tiles as kn_gemm_lowp: bitwise identical for every thread count, and _st equals the threaded one.
 * Without AVX512-BF16 (or after kn_gemm_lowp_bf16_native(0)) both rounded operands are widened and
 * summed by f32 FMA instead (same inputs, different rounding of the sums). */
void kn_gemm_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void kn_gemm_bf16_st(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Naive reference: both operands rounded to bf16, products summed in double. */
void kn_gemm_bf16_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* The compute precision of the ops' matrix products (process-wide, default 0 = f32).
 * on = 1: the forward and backward GEMMs of kn_linear, kn_matmul, kn_conv2d, kn_conv_temporal and
 * kn_conv3d (with F32 weights) run through kn_gemm_bf16; everything else (bias, norms, softmax,
 * attention, activations, losses, the optimizer) stays f32. The setting is read once per op call on
 * the calling thread; a trainer sets it around a step (forward + backward):
 *     int prev = kn_set_compute_bf16(1); ...forward, backward...; kn_set_compute_bf16(prev);
 * Returns the previous setting. With 0 every op is bitwise what it is without this switch. */
int kn_set_compute_bf16(int on);
int kn_compute_bf16(void);

/* Whether BF16 runs on vdpbf16ps (1) or the f32 fallback (0). force: 0 = fallback, 1 = native
 * when the CPU has it, -1 = query only. Returns the previous setting (tests and bench). */
int kn_gemm_lowp_bf16_native(int force);

#endif
