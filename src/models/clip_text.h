/* clip_text.h — transformers CLIPTextModel (OpenAI CLIP / SD 1.x text tower with quick_gelu,
 * OpenCLIP ViT-H / ModelScope with gelu). Parameter names are the transformers state-dict
 * names ("text_model.encoder.layers.0.self_attn.q_proj.weight", ...). */
#ifndef KN_CLIP_TEXT_H
#define KN_CLIP_TEXT_H

#include "nn/layers.h"

typedef struct kn_clip_text_config {
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int max_position_embeddings;
    float layer_norm_eps;
    kn_act hidden_act; /* KN_ACT_QUICK_GELU or KN_ACT_GELU */
    int eos_token_id;
} kn_clip_text_config;

kn_clip_text_config kn_clip_text_config_default(void); /* transformers CLIPTextConfig defaults */

typedef struct {
    kn_norm_l ln1, ln2;
    kn_linear_l q, k, v, o, fc1, fc2;
} kn_clip_layer;

typedef struct kn_clip_text {
    kn_clip_text_config cfg;
    kn_params P;
    kn_var *tok_emb, *pos_emb;
    kn_clip_layer *layers;
    kn_norm_l final_ln;
} kn_clip_text;

kn_clip_text *kn_clip_text_new(const kn_clip_text_config *cfg);
void kn_clip_text_free(kn_clip_text *m);

/* hidden_states hook: index 0 = embeddings, i = output of layer i (before the final LN). */
typedef void (*kn_clip_hook)(int index, const kn_tensor *t, void *user);

/* ids (B, L) -> last_hidden_state (B, L, D) after final_layer_norm. skip = 0: all layers (the
 * normal output); skip = k > 0: the output of layer (layers - k), then final_layer_norm
 * (diffusers' clip_skip). pooled (B, D) may be NULL: the state at each row's first eos token
 * (or the argmax id when eos_token_id is 2, transformers' legacy rule). No attention mask is
 * applied except the causal one, as in the text-to-video pipelines. */
kn_var *kn_clip_text_forward(kn_ctx *c, const kn_clip_text *m, const int32_t *ids, int64_t B, int64_t L, int skip,
                             kn_var **pooled, kn_clip_hook hook, void *user);

#endif
