/* checkpoint_io.h — one safetensors file per training checkpoint (see train/checkpoint.h for what
 * it holds). Writing is atomic (tmp + fsync + rename + directory fsync, by kn_st_writer_write):
 * a crash leaves either the previous checkpoint or the new one, never a torn file. A CRC-32 of
 * all tensor bytes in __metadata__["crc32"] catches a corrupted data section. */
#ifndef KN_CHECKPOINT_IO_H
#define KN_CHECKPOINT_IO_H

#include "train/checkpoint.h"

/* Writes S to path. */
kn_status kn_ckpt_save(const char *path, const kn_train_state *S);
/* Restores S (existing params table + optimiser + EMA, same names and shapes) from path. Checks
 * format, CRC, every name, dtype and shape, and that the file holds nothing else, before it
 * changes anything; on failure S is untouched and the message names the file and the entry. */
kn_status kn_ckpt_load(const char *path, kn_train_state *S);
/* The same for several states in one file (one per model; give each a distinct tag). The step and
 * config in __metadata__ are those of S[0]. */
kn_status kn_ckpt_save_many(const char *path, const kn_train_state *const *S, int n);
kn_status kn_ckpt_load_many(const char *path, kn_train_state *const *S, int n);
/* The training config JSON saved in path (a heap copy; free() it), NULL + message on failure. */
char *kn_ckpt_read_config(const char *path);
/* Removes "<path>.tmp.*" files left by a writer that was killed mid-write. Returns how many. */
int kn_ckpt_remove_stale_tmp(const char *path);

#endif
