/* test_tae_pipeline.c — the pipeline's fast decoders (generate --vae taesd|taehv): the layout
 * changes around the tiny autoencoders give the reference decodes. */
#include "kt.h"

#include "diffusion/pipeline.h"
#include "io/tae_load.h"

#include <string.h>

KT_TEST(pipeline_decode_with_taesd_and_taehv_matches_references) {
    char p[1024], r[1024];
    kn_arena *A = kn_arena_new((size_t)1 << 30);
    /* TAESD: randn.latents (1, 32, 16, 24) as a one-frame video (1, 32, F=1, 16, 24) */
    snprintf(p, sizeof p, "%s/taesd/taef2_decoder.safetensors", kt_fixtures());
    snprintf(r, sizeof r, "%s/taesd/ref_public.safetensors", kt_fixtures());
    kn_taesd *sd = kn_taesd_load(NULL, p);
    kn_safetensors *ref = kn_st_open(r);
    KT_CHECK(sd && ref);
    if (sd && ref) {
        kn_tensor z, want;
        KT_OK(kn_st_get(ref, "randn.latents", &z));
        KT_OK(kn_st_get(ref, "randn.decoded", &want));
        int64_t n = kn_tensor_numel(&want);
        float *video = malloc((size_t)n * sizeof(float));
        KT_OK(kn_t2v_decode_taesd(sd, A, z.data, 32, 1, 16, 24, 1, video));
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float got = (video[i] + 1.0f) / 2.0f, w = ((float *)want.data)[i];
            bad += !(fabsf(got - w) <= 1e-4f + 1e-4f * fabsf(w));
        }
        KT_CHECKF(bad == 0, "%d pixels differ", bad);
        KT_CHECK(kn_t2v_decode_taesd(sd, A, z.data, 4, 1, 16, 24, 1, video) == KN_ERR_SHAPE);
        free(video);
    }
    if (ref) kn_st_close(ref);
    kn_taesd_free(sd);
    /* TAEHV: wan.latents NTCHW (1, 3, 16, 6, 6) -> NCTHW -> decoded (1, 9, 3, 48, 48) */
    snprintf(p, sizeof p, "%s/taehv/taehv_synthetic_wan21arch_f16.safetensors", kt_fixtures());
    snprintf(r, sizeof r, "%s/taehv/ref_public.safetensors", kt_fixtures());
    kn_taehv *hv = kn_taehv_load(p);
    ref = kn_st_open(r);
    KT_CHECK(hv && ref);
    if (hv && ref) {
        kn_tensor z, want;
        KT_OK(kn_st_get(ref, "wan.latents", &z));
        KT_OK(kn_st_get(ref, "wan.decoded", &want));
        float lat[3 * 16 * 36];
        for (int t = 0; t < 3; t++)
            for (int c = 0; c < 16; c++)
                memcpy(lat + (c * 3 + t) * 36, (float *)z.data + (t * 16 + c) * 36, 36 * sizeof(float));
        float *video = malloc(sizeof(float) * 3 * 12 * 48 * 48);
        int64_t Fo = 0;
        KT_OK(kn_t2v_decode_taehv(hv, A, lat, 16, 3, 6, 6, video, &Fo));
        KT_CHECK(Fo == 9);
        int bad = 0;
        for (int t = 0; t < 9 && Fo == 9; t++)
            for (int c = 0; c < 3; c++)
                for (int k = 0; k < 48 * 48; k++) {
                    float got = (video[(c * 9 + t) * 2304 + k] + 1.0f) / 2.0f;
                    float w = ((float *)want.data)[(t * 3 + c) * 2304 + k];
                    bad += !(fabsf(got - w) <= 1e-4f + 1e-4f * fabsf(w));
                }
        KT_CHECKF(bad == 0, "%d pixels differ", bad);
        free(video);
    }
    if (ref) kn_st_close(ref);
    kn_taehv_free(hv);
    kn_arena_free(A);
}
