/* test_train_cascade.c — `kinema train --recipe smoke-cascade`: every stage of the cascade (VAE,
 * base, TSR, SSR) trains in one run, stopping after a stage (--until) and resuming gives the same
 * model bytes as the straight run, and the exported folder holds the SR stages. */
#include "kt.h"

#include <math.h>
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

/* --bf16: the same run in mixed precision is close to the f32 run but not the same bits; its
 * checkpoint remembers the option (resuming without it is refused). */
KT_TEST(train_bf16_close_to_f32_and_recorded) {
    static char out[1 << 14];
    const char *d = kt_tmpdir();
    int rc = kt_run(out, sizeof out, "%s train --recipe smoke --steps 6 --quiet --out '%s/f' --tokenizer '%s/clip' && "
                    "%s train --recipe smoke --steps 6 --quiet --bf16 --out '%s/b' --tokenizer '%s/clip' && "
                    "paste -d, '%s/f/log.csv' '%s/b/log.csv' | tail -n +2 | cut -d, -f3,7",
                    kt_bin(), d, kt_fixtures(), kt_bin(), d, kt_fixtures(), d, d);
    KT_CHECKF(rc == 0, "%s", out);
    int rows = 0, same = 0, far = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        double a, b;
        if (sscanf(line, "%lf,%lf", &a, &b) != 2)
            continue;
        rows++;
        same += a == b;
        far += fabs(a - b) > 0.05 * fabs(a) + 1e-3;
    }
    KT_CHECKF(rows >= 10 && same < rows && far == 0, "%d rows, %d equal, %d far apart", rows, same, far);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --steps 6 --quiet --out '%s/b' --tokenizer '%s/clip' --resume",
                kt_bin(), d, kt_fixtures());
    KT_CHECK(rc != 0 && strstr(out, "another recipe or options"));
}
