/* test_pipeline.c — the text-to-video pipeline against a full diffusers TextToVideoSDPipeline run
 * (shared/fixtures/diffusers/pipeline_t2v): token ids, prompt embeddings, every step's UNet
 * input/output and latents, the final latents, the float video and the uint8 frames. */
#include "kt.h"

#include "diffusion/pipeline.h"
#include "io/model_load.h"
#include "io/tokenizer.h"

#include <string.h>

static kn_safetensors *ref_file;
static int steps_checked;

static void cmp(const char *key, const float *got, int64_t n, double rel) {
    kn_tensor r;
    KT_CHECKF(kn_st_find(ref_file, key) >= 0, "fixture has no %s", key);
    if (kn_st_get(ref_file, key, &r) != KN_OK) return;
    KT_CHECKF(kn_tensor_numel(&r) == n, "%s: %lld values, fixture has %lld", key, (long long)n,
              (long long)kn_tensor_numel(&r));
    if (kn_tensor_numel(&r) != n) return;
    double err = kt_max_abs_diff(got, r.data, n), tol = rel * kt_max_abs(r.data, n);
    KT_CHECKF(err <= tol, "%s: max err %.3g > %.3g", key, err, tol);
}

static void on_step(int i, int nsteps, double t, const kn_tensor *in, const kn_tensor *out, const kn_tensor *lat,
                    void *user) {
    (void)nsteps; (void)user;
    char k[64];
    snprintf(k, sizeof k, "step%03d.unet_input", i);
    cmp(k, in->data, kn_tensor_numel(in), 1e-4);
    snprintf(k, sizeof k, "step%03d.unet_output", i);
    cmp(k, out->data, kn_tensor_numel(out), 1e-4);
    snprintf(k, sizeof k, "step%03d.latents_after", i);
    cmp(k, lat->data, kn_tensor_numel(lat), 1e-4);
    snprintf(k, sizeof k, "step%03d.t", i);
    kn_tensor tt;
    if (kn_st_get(ref_file, k, &tt) == KN_OK) KT_CHECK(((int64_t *)tt.data)[0] == (int64_t)t);
    steps_checked++;
}

static kn_safetensors *open_fx(const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", kt_fixtures(), rel);
    kn_safetensors *s = kn_st_open(p);
    KT_CHECKF(s != NULL, "%s", kn_last_error());
    return s;
}

KT_TEST(pipeline_t2v_matches_diffusers_run) {
    char p[1024];
    kn_t2v_models m = {0};
    kn_unet3d_config uc;
    kn_vae_config vc;
    kn_clip_text_config cc;
    snprintf(p, sizeof p, "%s/diffusers/unet3d/config.json", kt_fixtures());
    KT_OK(kn_unet3d_config_load(p, &uc));
    snprintf(p, sizeof p, "%s/diffusers/vae/config.json", kt_fixtures());
    KT_OK(kn_vae_config_load(p, &vc));
    snprintf(p, sizeof p, "%s/diffusers/clip_text_gelu/config.json", kt_fixtures());
    KT_OK(kn_clip_text_config_load(p, &cc));
    m.unet = kn_unet3d_new(&uc);
    m.vae = kn_vae_new(&vc);
    m.text = kn_clip_text_new(&cc);
    kn_safetensors *wu = open_fx("diffusers/unet3d/weights.safetensors");
    kn_safetensors *wv = open_fx("diffusers/vae/weights.safetensors");
    kn_safetensors *wt = open_fx("diffusers/clip_text_gelu/weights.safetensors");
    ref_file = open_fx("diffusers/pipeline_t2v/pipeline_io.safetensors");
    snprintf(p, sizeof p, "%s/clip", kt_fixtures());
    kn_tokenizer *tok = kn_tokenizer_load(p);
    KT_CHECK(m.unet && m.vae && m.text && wu && wv && wt && ref_file && tok);
    if (!(m.unet && m.vae && m.text && wu && wv && wt && ref_file && tok)) goto out;
    KT_OK(kn_params_load(&m.unet->P, &wu, 1, NULL));
    KT_OK(kn_params_load(&m.vae->P, &wv, 1, NULL));
    KT_OK(kn_params_load(&m.text->P, &wt, 1, NULL));
    m.sched = kn_sched_config_modelscope();
    m.sched_kind = KN_SCHED_DDIM;
    {
        /* token ids from kinema's tokenizer equal the pipeline's (pad '!') */
        int32_t ids[2][77];
        int pad = kn_tokenizer_token_id(tok, "!");
        KT_OK(kn_tokenize_padded(tok, "a panda playing a guitar on a boat, photorealistic", ids[0], 77, pad, NULL, NULL));
        KT_OK(kn_tokenize_padded(tok, "blurry, low quality, watermark", ids[1], 77, pad, NULL, NULL));
        kn_tensor rp, rn;
        KT_OK(kn_st_get(ref_file, "input_ids.prompt", &rp));
        KT_OK(kn_st_get(ref_file, "input_ids.negative_prompt", &rn));
        int same = 1;
        for (int i = 0; i < 77; i++)
            same &= ids[0][i] == ((int64_t *)rp.data)[i] && ids[1][i] == ((int64_t *)rn.data)[i];
        KT_CHECK(same);
        int64_t D = cc.hidden_size;
        float *emb = malloc((size_t)(2 * 77 * D) * sizeof(float));
        KT_OK(kn_t2v_encode_text(&m, &ids[0][0], 2, 77, 0, emb));
        cmp("prompt_embeds", emb, 77 * D, 1e-4);
        cmp("negative_prompt_embeds", emb + 77 * D, 77 * D, 1e-4);
        kn_tensor init;
        KT_OK(kn_st_get(ref_file, "initial_latents", &init));
        kn_t2v_params par = kn_t2v_params_default();
        par.steps = 4;
        par.guidance_scale = 9.0f;
        par.frames = 4;
        par.height = par.width = 64;
        par.init_latents = init.data;
        par.decode_chunk = 3; /* chunked decoding gives the same frames */
        par.on_step = on_step;
        int64_t nl = kn_tensor_numel(&init);
        float *lat = malloc((size_t)nl * sizeof(float)), *video = malloc((size_t)(3 * 4 * 64 * 64) * sizeof(float));
        kn_arena *A = kn_arena_new((size_t)1 << 30);
        steps_checked = 0;
        KT_OK(kn_t2v_run(&m, A, emb, emb + 77 * D, 77, &par, lat, video));
        KT_CHECK(steps_checked == 4);
        cmp("final_latents", lat, nl, 1e-3);
        cmp("video", video, 3 * 4 * 64 * 64, 1e-3);
        uint8_t *rgb = malloc(4 * 64 * 64 * 3);
        kn_video_to_rgb8(video, 4, 64, 64, rgb);
        kn_tensor fr;
        KT_OK(kn_st_get(ref_file, "frames_uint8", &fr));
        int maxd = 0;
        for (int i = 0; i < 4 * 64 * 64 * 3; i++) {
            int d = abs((int)rgb[i] - (int)((uint8_t *)fr.data)[i]);
            if (d > maxd) maxd = d;
        }
        KT_CHECKF(maxd <= 1, "frames_uint8 differ by %d", maxd);
        /* without a neg prompt, guidance > 1 is an error, not a crash */
        KT_CHECK(kn_t2v_run(&m, A, emb, NULL, 77, &par, lat, NULL) == KN_ERR_ARG);
        par.height = 60;
        KT_CHECK(kn_t2v_run(&m, A, emb, emb, 77, &par, lat, NULL) == KN_ERR_ARG);
        free(rgb); free(lat); free(video); free(emb);
        kn_arena_free(A);
    }
out:
    if (tok) kn_tokenizer_free(tok);
    if (wu) kn_st_close(wu);
    if (wv) kn_st_close(wv);
    if (wt) kn_st_close(wt);
    if (ref_file) kn_st_close(ref_file);
    kn_unet3d_free(m.unet);
    kn_vae_free(m.vae);
    kn_clip_text_free(m.text);
}
