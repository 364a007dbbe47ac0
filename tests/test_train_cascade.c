/* test_train_cascade.c — `kinema train --recipe smoke-cascade`: every stage of the cascade (VAE,
 * base, TSR, SSR) trains in one run, stopping after a stage (--until) and resuming gives the same
 * model bytes as the straight run, and the exported folder holds the SR stages. */
#include "kt.h"

#include <string.h>

KT_TEST(train_cascade_until_and_resume_equal_straight_run) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    const char *opts = "--recipe smoke-cascade --steps 10 --save-every 3 --quiet";
    int rc = kt_run(out, sizeof out, "%s train %s --out '%s/a' --tokenizer '%s/clip'", kt_bin(), opts, d, kt_fixtures());
    KT_CHECKF(rc == 0, "%s", out);
    /* the same run in three pieces: up to the base, up to the TSR, then the rest */
    rc = kt_run(out, sizeof out, "%s train %s --out '%s/b' --tokenizer '%s/clip' --until base && "
                "test ! -d '%s/b/model/tsr' && "
                "%s train %s --out '%s/b' --tokenizer '%s/clip' --resume --until tsr --threads 1 && "
                "test -d '%s/b/model/tsr' && test ! -d '%s/b/model/ssr' && "
                "%s train %s --out '%s/b' --tokenizer '%s/clip' --resume",
                kt_bin(), opts, d, kt_fixtures(), d, kt_bin(), opts, d, kt_fixtures(), d, d, kt_bin(), opts, d,
                kt_fixtures());
    KT_CHECKF(rc == 0, "%s", out);
    rc = kt_run(out, sizeof out, "cd '%s' && for s in vae unet tsr ssr; do grep -c \"^$s,\" a/log.csv; done && "
                "cut -d, -f1-3 a/log.csv > la && cut -d, -f1-3 b/log.csv > lb && diff la lb && "
                "for c in unet tsr ssr; do cmp a/model/$c/diffusion_pytorch_model.safetensors "
                "b/model/$c/diffusion_pytorch_model.safetensors || exit 1; done && "
                "grep -c '\"cascade\"' a/model/model_index.json", d);
    /* smoke-cascade --steps 10: vae 15, unet 10, tsr 7, ssr 7 rows */
    KT_CHECKF(rc == 0 && !strcmp(out, "15\n10\n7\n7\n1\n"), "rc %d: %s", rc, out);
    /* a bad --until is one line */
    rc = kt_run(out, sizeof out, "%s train %s --out '%s/c' --until nope", kt_bin(), opts, d);
    KT_CHECK(rc != 0 && strstr(out, "--until"));
}
