/* modelfolder.h — weights and pipeline folders in the diffusers layout.
 *
 * kn_weights_open(path) accepts
 *   - a .safetensors file;
 *   - a sharded index "*.safetensors.index.json" ({"weight_map": {tensor: shard file}});
 *   - a component folder (unet/, vae/, text_encoder/, or a folder with config.json and weights),
 *     where the weights file is chosen in this order:
 *         diffusion_pytorch_model.safetensors, model.safetensors,
 *         diffusion_pytorch_model.safetensors.index.json, model.safetensors.index.json,
 *         weights.safetensors, then the only *.safetensors file in the folder
 *     (variant "fp16": diffusion_pytorch_model.fp16.safetensors, model.fp16.safetensors and the
 *     index files "<name>.safetensors.index.fp16.json"; when no full-precision file exists and no
 *     variant was asked for, the only *.fp16.safetensors file is used).
 * Tensor names are looked up across all shards. All tensors stay memory-mapped (zero copy).
 *
 * kn_pipeline_open(dir) reads model_index.json ({component: [library, class]}) and finds each
 * component's folder, config and weights. */
#ifndef KN_MODELFOLDER_H
#define KN_MODELFOLDER_H

#include "io/safetensors.h"

typedef struct kn_weights kn_weights;

kn_weights *kn_weights_open(const char *dir_or_file);
/* variant: NULL (full precision) or e.g. "fp16". */
kn_weights *kn_weights_open_variant(const char *dir_or_file, const char *variant);
void kn_weights_close(kn_weights *w);

/* Number of tensors over all files, and the i-th name (files in order, each in offset order). */
int kn_weights_count(const kn_weights *w);
const char *kn_weights_name(const kn_weights *w, int i);
int kn_weights_has(const kn_weights *w, const char *name);
/* Zero-copy view; a missing name gives an error naming the weights path and the tensor. */
kn_status kn_weights_get(const kn_weights *w, const char *name, kn_tensor *out);
kn_status kn_weights_get_f32(const kn_weights *w, const char *name, kn_arena *A, kn_tensor *out);
/* The files behind the weights (1 unless sharded), the file holding `name` (NULL if absent). */
int kn_weights_nfiles(const kn_weights *w);
const kn_safetensors *kn_weights_file(const kn_weights *w, int i);
const kn_safetensors *kn_weights_file_of(const kn_weights *w, const char *name);
/* Sum of the tensors' byte sizes; the path that was resolved (file or index). */
uint64_t kn_weights_nbytes(const kn_weights *w);
const char *kn_weights_path(const kn_weights *w);

/* Resolves the weights file of a folder (rules above) into out. */
kn_status kn_weights_resolve(const char *dir, const char *variant, char *out, size_t n);

/* ---------------------------------------------------------------- pipelines */

#define KN_PIPE_MAX_COMPONENTS 16

typedef struct kn_component {
    char name[64];      /* "unet" */
    char library[64];   /* "diffusers" */
    char cls[128];      /* "UNet3DConditionModel" */
    char dir[1024];     /* "<root>/unet" */
    char config[1100];  /* "<dir>/config.json" or "<dir>/scheduler_config.json", "" if none */
    char weights[1100]; /* resolved weights path, "" if none (tokenizer, scheduler) */
} kn_component;

typedef struct kn_pipeline_folder {
    char root[1024];
    char cls[128];      /* model_index.json "_class_name" */
    char version[32];   /* "_diffusers_version" */
    int n;
    kn_component comp[KN_PIPE_MAX_COMPONENTS];
} kn_pipeline_folder;

/* Reads <dir>/model_index.json. Components listed as [null, null] are skipped. A listed component
 * whose folder is missing is an error naming the path. variant as for kn_weights_open_variant. */
kn_status kn_pipeline_open(const char *dir, const char *variant, kn_pipeline_folder *out);
const kn_component *kn_pipeline_component(const kn_pipeline_folder *p, const char *name);

#endif
