/* t2v_load.h — a diffusers text-to-video pipeline folder (model_index.json + unet/ vae/
 * text_encoder/ tokenizer/ scheduler/) into kinema's models. */
#ifndef KN_T2V_LOAD_H
#define KN_T2V_LOAD_H

#include "diffusion/cascade.h"
#include "diffusion/pipeline.h"
#include "io/modelfolder.h"
#include "io/tokenizer.h"

typedef struct kn_t2v_bundle {
    kn_t2v_models m;
    kn_tokenizer *tok;
    int pad_id;           /* the tokenizer's pad token (tokenizer_config.json), "<|endoftext|>" else */
    uint64_t weight_bytes;/* parameters in memory (f32) */
    char root[1024];
    /* defaults a kinema-trained model records in model_index.json ("kinema": {"fps", "frames"});
     * 0 when absent */
    double fps;
    int frames;
    /* a cascade model (model_index.json "kinema": {"cascade": ...}): its temporal and spatial SR
     * UNets from tsr/ and ssr/ (NULL when absent) and how they chain */
    kn_unet3d *tsr, *ssr;
    kn_cascade_info cascade;
    /* F32 weights are used in place from these memory-mapped files (open while loaded) */
    kn_weights *w[5];
    uint64_t mapped_bytes;
} kn_t2v_bundle;

/* Loads every component. variant: NULL or "fp16" (which weight files to read). */
kn_status kn_t2v_load(const char *dir, const char *variant, kn_t2v_bundle *b);
void kn_t2v_unload(kn_t2v_bundle *b);

/* Fills P from the tensors of w (by name, converting to F32); see kn_params_load. */
kn_status kn_params_load_weights(kn_params *P, const kn_weights *w);

#endif
