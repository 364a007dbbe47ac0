/* test_train_mpi.c — data-parallel training: `mpirun -np 2 kinema train --batch 1` (loopback,
 * shared memory) logs the same loss curve as one process with --batch 2 and ends with the same
 * parameters within float tolerance. Only the order of the gradient sums differs; AdamW's first
 * steps move every weight by about ±lr whatever the gradient's size, so a gradient element that
 * is ~0 and changes sign under rounding moves by up to 2 lr per step: the parameter tolerance is
 * that bound, lr_max * 2 * steps, absolute. */
#include "kt.h"

#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

static double max_abs_param_diff(const char *a, const char *b, int *count) {
    kn_safetensors *x = kn_st_open(a), *y = kn_st_open(b);
    double worst = x && y ? 0 : INFINITY;
    *count = 0;
    for (int i = 0; x && y && i < kn_st_count(x); i++) {
        const char *name = kn_st_name(x, i);
        kn_tensor tx, ty;
        if (kn_st_get(x, name, &tx) != KN_OK || kn_st_get(y, name, &ty) != KN_OK || tx.dtype != KN_F32 ||
            kn_tensor_numel(&tx) != kn_tensor_numel(&ty)) {
            worst = INFINITY;
            break;
        }
        int64_t n = kn_tensor_numel(&tx);
        double r = kt_max_abs_diff(tx.data, ty.data, n);
        if (r > worst) worst = r;
        (*count)++;
    }
    if (x) kn_st_close(x);
    if (y) kn_st_close(y);
    return worst;
}

KT_TEST(train_mpi_two_ranks_equal_one_rank_double_batch) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    const char *env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader "
                      "OMPI_MCA_rmaps_base_oversubscribe=1 ASAN_OPTIONS=detect_leaks=0";
    int rc = kt_run(out, sizeof out, "%s mpirun -np 2 %s train --recipe smoke --steps 6 --batch 1 --threads 1 --quiet "
                    "--out '%s/mpi' --tokenizer '%s/clip'", env, kt_bin(), d, kt_fixtures());
    KT_CHECKF(rc == 0, "mpirun failed (%d): %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --steps 6 --batch 2 --threads 2 --quiet --out '%s/one' "
                "--tokenizer '%s/clip'", kt_bin(), d, kt_fixtures());
    KT_CHECKF(rc == 0, "single-process run failed: %s", out);
    static const char *files[] = {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                                  "vae/diffusion_pytorch_model.safetensors"};
    /* smoke recipe: unet/text lr 1e-3 for 6 steps, vae lr 2e-3 for 6*60/80 = 4 steps */
    static const double bound[] = {1e-3 * 2 * 6, 1e-3 * 2 * 6, 2e-3 * 2 * 4};
    for (int i = 0; i < 3; i++) {
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/mpi/model/%s", d, files[i]);
        snprintf(b, sizeof b, "%s/one/model/%s", d, files[i]);
        int count = 0;
        double r = max_abs_param_diff(a, b, &count);
        KT_CHECKF(count > 0 && r <= bound[i], "%s: %d tensors, worst difference %g > %g", files[i], count, r, bound[i]);
    }
    /* the loss curves agree (each rank logs the mean over all ranks) */
    char la[800], lb[800];
    snprintf(la, sizeof la, "%s/mpi/log.csv", d);
    snprintf(lb, sizeof lb, "%s/one/log.csv", d);
    FILE *fa = fopen(la, "r"), *fb = fopen(lb, "r");
    KT_CHECK(fa && fb);
    int rows = 0;
    char x[256], y[256];
    while (fa && fb && fgets(x, sizeof x, fa) && fgets(y, sizeof y, fb)) {
        char sa[32], sb[32];
        long long ia, ib;
        double va, vb;
        if (sscanf(x, "%31[^,],%lld,%lf", sa, &ia, &va) == 3 && sscanf(y, "%31[^,],%lld,%lf", sb, &ib, &vb) == 3) {
            KT_CHECKF(!strcmp(sa, sb) && ia == ib && fabs(va - vb) <= 1e-3 * fabs(vb), "%s step %lld: loss %g vs %g", sa,
                      ia, va, vb);
            rows++;
        }
    }
    KT_CHECK(rows >= 8);
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    /* only rank 0 wrote: one log with one header */
    rc = kt_run(out, sizeof out, "grep -c '^stage,' '%s/mpi/log.csv'", d);
    KT_CHECK(rc == 0 && atoi(out) == 1);
}
