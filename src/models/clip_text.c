/* clip_text.c — CLIPTextModel (transformers 4.33 modeling_clip.py): token + position embeddings,
 * pre-LN transformer layers with causal self-attention, final LayerNorm. */
#include "models/clip_text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

kn_clip_text_config kn_clip_text_config_default(void) {
    kn_clip_text_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 49408;
    c.hidden_size = 512;
    c.intermediate_size = 2048;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 8;
    c.max_position_embeddings = 77;
    c.layer_norm_eps = 1e-5f;
    c.hidden_act = KN_ACT_QUICK_GELU;
    c.eos_token_id = 2;
    return c;
}

kn_clip_text *kn_clip_text_new(const kn_clip_text_config *cfg) {
    if (cfg->vocab_size < 1 || cfg->hidden_size < 1 || cfg->num_hidden_layers < 0 || cfg->num_attention_heads < 1 ||
        cfg->hidden_size % cfg->num_attention_heads || cfg->max_position_embeddings < 1 || cfg->intermediate_size < 1) {
        kn_fail(KN_ERR_ARG, "clip text: invalid config (hidden %d, heads %d, layers %d)", cfg->hidden_size,
                cfg->num_attention_heads, cfg->num_hidden_layers);
        return NULL;
    }
    kn_clip_text *m = calloc(1, sizeof *m);
    if (!m) {
        kn_fail(KN_ERR_NOMEM, "clip text: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    int64_t D = cfg->hidden_size, I = cfg->intermediate_size;
    m->tok_emb = kn_param_decl(&m->P, 2, (int64_t[]){cfg->vocab_size, D}, "text_model.embeddings.token_embedding.weight");
    m->pos_emb = kn_param_decl(&m->P, 2, (int64_t[]){cfg->max_position_embeddings, D},
                               "text_model.embeddings.position_embedding.weight");
    m->layers = calloc((size_t)(cfg->num_hidden_layers ? cfg->num_hidden_layers : 1), sizeof *m->layers);
    KN_ASSERT(m->layers);
    char b[160];
    for (int i = 0; i < cfg->num_hidden_layers; i++) {
        kn_clip_layer *l = &m->layers[i];
#define P_(suffix) (snprintf(b, sizeof b, "text_model.encoder.layers.%d.%s", i, suffix), b)
        kn_layer_norm_decl(&l->ln1, &m->P, D, cfg->layer_norm_eps, P_("layer_norm1"));
        kn_linear_decl(&l->q, &m->P, D, D, 1, P_("self_attn.q_proj"));
        kn_linear_decl(&l->k, &m->P, D, D, 1, P_("self_attn.k_proj"));
        kn_linear_decl(&l->v, &m->P, D, D, 1, P_("self_attn.v_proj"));
        kn_linear_decl(&l->o, &m->P, D, D, 1, P_("self_attn.out_proj"));
        kn_layer_norm_decl(&l->ln2, &m->P, D, cfg->layer_norm_eps, P_("layer_norm2"));
        kn_linear_decl(&l->fc1, &m->P, D, I, 1, P_("mlp.fc1"));
        kn_linear_decl(&l->fc2, &m->P, I, D, 1, P_("mlp.fc2"));
#undef P_
    }
    kn_layer_norm_decl(&m->final_ln, &m->P, D, cfg->layer_norm_eps, "text_model.final_layer_norm");
    if (kn_params_alloc(&m->P) != KN_OK) {
        kn_clip_text_free(m);
        return NULL;
    }
    return m;
}

void kn_clip_text_free(kn_clip_text *m) {
    if (!m)
        return;
    free(m->layers);
    kn_params_free(&m->P);
    free(m);
}

kn_var *kn_clip_text_forward(kn_ctx *c, const kn_clip_text *m, const int32_t *ids, int64_t B, int64_t L, int skip,
                             kn_var **pooled, kn_clip_hook hook, void *user) {
    if (c->status != KN_OK)
        return NULL;
    const kn_clip_text_config *cf = &m->cfg;
    int64_t D = cf->hidden_size;
    if (B < 1 || L < 1 || L > cf->max_position_embeddings) {
        kn_ctx_failf(c, KN_ERR_SHAPE, "clip text: %lld tokens per prompt (1..%d supported)", (long long)L,
                     cf->max_position_embeddings);
        return NULL;
    }
    if (skip < 0 || skip >= cf->num_hidden_layers + (cf->num_hidden_layers == 0)) {
        kn_ctx_failf(c, KN_ERR_ARG, "clip text: clip skip %d with %d layers", skip, cf->num_hidden_layers);
        return NULL;
    }
    for (int64_t i = 0; i < B * L; i++)
        if (ids[i] < 0 || ids[i] >= cf->vocab_size) {
            kn_ctx_failf(c, KN_ERR_ARG, "clip text: token id %d outside the vocabulary (%d)", ids[i], cf->vocab_size);
            return NULL;
        }
    kn_var *x = kn_v_embedding(c, m->tok_emb, ids, B, L);
    kn_var *pos = kn_v_slice(c, m->pos_emb, 0, 0, L);
    x = pos ? kn_v_add(c, x, pos) : NULL; /* (B, L, D) + (L, D) broadcast */
    if (hook && x)
        hook(0, &x->v, user);
    /* causal mask: position i attends to j <= i */
    kn_tensor mask;
    if (kn_tensor_alloc(c->A, &mask, KN_F32, 3, (int64_t[]){1, L, L}) != KN_OK) {
        kn_ctx_fail(c, KN_ERR_NOMEM);
        return NULL;
    }
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < L; j++)
            ((float *)mask.data)[i * L + j] = j <= i ? 0.0f : -INFINITY;
    kn_tensor *maskp = kn_arena_alloc(c->A, sizeof *maskp); /* the tape keeps a pointer to it */
    if (!maskp) {
        kn_ctx_fail(c, KN_ERR_NOMEM);
        return NULL;
    }
    *maskp = mask;
    int nl = cf->num_hidden_layers - skip;
    int heads = cf->num_attention_heads;
    float scale = 1.0f / sqrtf((float)(D / heads));
    for (int i = 0; i < nl && c->status == KN_OK; i++) {
        const kn_clip_layer *l = &m->layers[i];
        size_t mk = kn_ctx_scope_begin(c);
        kn_var *h = kn_layer_norm_fwd(c, &l->ln1, x);
        kn_var *q = kn_linear_fwd(c, &l->q, h), *k = kn_linear_fwd(c, &l->k, h), *v = kn_linear_fwd(c, &l->v, h);
        h = kn_v_attention(c, q, k, v, heads, scale, maskp);
        h = kn_linear_fwd(c, &l->o, h);
        x = kn_v_add(c, x, h);
        h = kn_layer_norm_fwd(c, &l->ln2, x);
        h = kn_linear_fwd(c, &l->fc1, h);
        h = kn_v_act(c, cf->hidden_act, h);
        h = kn_linear_fwd(c, &l->fc2, h);
        x = kn_v_add(c, x, h);
        x = kn_ctx_scope_end(c, mk, x);
        if (hook && x)
            hook(i + 1, &x->v, user);
    }
    kn_var *out = kn_layer_norm_fwd(c, &m->final_ln, x);
    if (pooled && out) {
        int64_t *rows = kn_arena_alloc(c->A, (size_t)B * sizeof(int64_t));
        if (!rows) {
            kn_ctx_fail(c, KN_ERR_NOMEM);
            return NULL;
        }
        for (int64_t b = 0; b < B; b++) {
            int64_t at = 0;
            if (cf->eos_token_id == 2) { /* legacy: the highest id (eos is the largest id) */
                for (int64_t j = 1; j < L; j++)
                    if (ids[b * L + j] > ids[b * L + at]) at = j;
            } else {
                at = -1;
                for (int64_t j = 0; j < L && at < 0; j++)
                    if (ids[b * L + j] == cf->eos_token_id) at = j;
                if (at < 0) at = 0; /* argmax of an all-zero match is 0 in torch */
            }
            rows[b] = b * L + at;
        }
        *pooled = kn_v_gather_rows(c, out, rows, B);
    }
    return c->status == KN_OK ? out : NULL;
}
