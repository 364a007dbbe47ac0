/* test_model_load.c — F32 weights are used in place from the mapped file (zero copy) and give the
 * same model as copied weights; F16 files are converted. */
#include "kt.h"

#include "io/export.h"
#include "io/model_load.h"

#include <string.h>

KT_TEST(weights_load_mapped_zero_copy_and_f16) {
    char p[1024];
    kn_vae_config cfg;
    snprintf(p, sizeof p, "%s/diffusers/vae/config.json", kt_fixtures());
    KT_OK(kn_vae_config_load(p, &cfg));
    kn_vae *a = kn_vae_new(&cfg), *b = kn_vae_new(&cfg), *c = kn_vae_new(&cfg);
    snprintf(p, sizeof p, "%s/diffusers/vae/weights.safetensors", kt_fixtures());
    kn_safetensors *st = kn_st_open(p);
    KT_CHECK(a && b && c && st);
    if (!(a && b && c && st)) return;
    KT_OK(kn_params_load(&a->P, &st, 1, NULL));
    size_t mapped = 0;
    KT_OK(kn_params_load_mapped(&b->P, &st, 1, &mapped));
    size_t total = 0;
    int in_file = 0;
    for (int i = 0; i < b->P.n; i++) {
        const kn_tensor *t = &b->P.items[i]->var.v;
        total += kn_tensor_nbytes(t);
        kn_tensor ft;
        kn_st_get(st, b->P.items[i]->name, &ft);
        in_file += t->data == ft.data;
        KT_CHECK(memcmp(t->data, a->P.items[i]->var.v.data, kn_tensor_nbytes(t)) == 0);
    }
    KT_CHECKF(mapped == total && in_file == b->P.n, "%zu of %zu bytes mapped, %d of %d tensors in place", mapped, total,
              in_file, b->P.n);
    /* an F16 copy of the weights loads converted (not in place), equal to the rounded values */
    char h[700];
    snprintf(h, sizeof h, "%s/vae16.safetensors", kt_tmpdir());
    KT_OK(kn_params_save(&a->P, h, KN_F16));
    kn_safetensors *s16 = kn_st_open(h);
    KT_CHECK(s16 != NULL);
    if (s16) {
        KT_OK(kn_params_load_mapped(&c->P, &s16, 1, &mapped));
        KT_CHECK(mapped == 0);
        double worst = 0;
        for (int i = 0; i < c->P.n; i++) {
            const kn_tensor *t = &c->P.items[i]->var.v;
            int64_t n = kn_tensor_numel(t);
            for (int64_t j = 0; j < n; j++) {
                float want = kn_f16_to_f32(kn_f32_to_f16(((float *)a->P.items[i]->var.v.data)[j]));
                double d = fabs(((float *)t->data)[j] - want);
                if (d > worst) worst = d;
            }
        }
        KT_CHECKF(worst == 0, "f16 values differ by %g", worst);
        kn_st_close(s16);
    }
    kn_vae_free(a);
    kn_vae_free(b);
    kn_vae_free(c);
    kn_st_close(st);
}
