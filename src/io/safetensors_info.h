/* safetensors_info.h — what safetensors.h does not say: per-tensor header facts for every dtype
 * name (also the ones kinema cannot compute with), and opening a file image from memory (fuzzing,
 * tests).
 *
 * Dtypes. A file may hold any dtype name of the format: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32
 * U16 U8 BOOL F8_E4M3 F8_E5M2. All of them are validated (span = numel x size) and listed by
 * kn_st_info; kn_st_get gives zero-copy views of the kinema dtypes (F32 F16 BF16 I64 I32 U8) and
 * fails with KN_ERR_UNSUPPORTED for the rest; kn_st_get_f32 also converts F64. Any other name is
 * a format error. */
#ifndef KN_SAFETENSORS_INFO_H
#define KN_SAFETENSORS_INFO_H

#include "io/safetensors.h"

#define KN_ST_MAX_DIMS 16 /* deeper shapes are rejected at open */

typedef struct kn_st_info {
    const char *name;
    const char *dtype;      /* name as in the file: "F32", "BOOL", ... */
    int kn_dtype;           /* a kn_dtype, or -1 when kinema cannot compute with it */
    int ndim;
    const int64_t *shape;   /* ndim values, owned by the file handle */
    uint64_t begin, end;    /* data_offsets, relative to the data section */
} kn_st_info;

/* Header facts of tensor i (file order of data offsets). */
kn_status kn_st_info_at(const kn_safetensors *st, int i, kn_st_info *out);
/* Size of the data section in bytes, and of the JSON header. */
uint64_t kn_st_data_size(const kn_safetensors *st);
uint64_t kn_st_header_size(const kn_safetensors *st);

/* Parses a whole file image held in memory (copied; buf may be freed after the call). `name`
 * stands for the path in messages. Same validation as kn_st_open. */
kn_safetensors *kn_st_open_memory(const void *buf, size_t n, const char *name);

/* The cap on the JSON header length (bytes). */
#define KN_ST_MAX_HEADER (100u << 20)

#endif
