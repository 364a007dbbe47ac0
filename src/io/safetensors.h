/* safetensors.h — memory-mapped safetensors reader (zero copy) and atomic writer.
 * Format: u64 little-endian header length n, n bytes of JSON {name: {dtype, shape, data_offsets},
 * "__metadata__": {str: str}}, then the data section. */
#ifndef KN_SAFETENSORS_H
#define KN_SAFETENSORS_H

#include "core/core.h"

typedef struct kn_safetensors kn_safetensors;

/* Maps and validates the whole header (length vs file size, JSON syntax, dtype names, shape x dtype
 * size = byte span, offsets inside the data section, no overlaps, __metadata__ string values).
 * Returns NULL with a one-line message naming the file, the tensor and the rule broken. */
kn_safetensors *kn_st_open(const char *path);
void kn_st_close(kn_safetensors *st);

int kn_st_count(const kn_safetensors *st);
const char *kn_st_name(const kn_safetensors *st, int i); /* in file order of data offsets */
/* Index of a tensor by name, -1 if absent. */
int kn_st_find(const kn_safetensors *st, const char *name);
/* Zero-copy view of a tensor (data points into the mapping; valid until kn_st_close). */
kn_status kn_st_get(const kn_safetensors *st, const char *name, kn_tensor *out);
/* An F32 copy of a float tensor (F32/F16/BF16), allocated from A or the heap when A is NULL. */
kn_status kn_st_get_f32(const kn_safetensors *st, const char *name, kn_arena *A, kn_tensor *out);
/* __metadata__ value for key, NULL if absent. */
const char *kn_st_metadata(const kn_safetensors *st, const char *key);
int kn_st_metadata_count(const kn_safetensors *st);
const char *kn_st_metadata_key(const kn_safetensors *st, int i);
const char *kn_st_path(const kn_safetensors *st);

/* Writer: tensors are referenced (their data must stay valid until kn_st_writer_write returns).
 * write() goes to "<path>.tmp.<pid>", fsyncs, renames over path, and fsyncs the directory. */
typedef struct kn_st_writer kn_st_writer;
kn_st_writer *kn_st_writer_new(void);
kn_status kn_st_writer_add(kn_st_writer *w, const char *name, const kn_tensor *t);
kn_status kn_st_writer_meta(kn_st_writer *w, const char *key, const char *value);
kn_status kn_st_writer_write(kn_st_writer *w, const char *path);
void kn_st_writer_free(kn_st_writer *w);

#endif
