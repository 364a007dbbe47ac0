/* test_train_smoke.c — `kinema train --recipe smoke` end to end: both stages run, their losses
 * fall, the exported folder loads, and `kinema generate --model` makes a video from it. */
#include "kt.h"

#include "io/video.h"

#include <string.h>

/* mean loss of the first / last n rows of a stage in log.csv */
static int loss_ends(const char *log, const char *stage, int n, double *first, double *last) {
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    char line[256];
    double v[4096];
    int k = 0;
    while (fgets(line, sizeof line, f) && k < 4096) {
        char st[32];
        long long step;
        double loss, sec;
        if (sscanf(line, "%31[^,],%lld,%lf,%lf", st, &step, &loss, &sec) == 4 && !strcmp(st, stage))
            v[k++] = loss;
    }
    fclose(f);
    if (k < 2 * n) return 0;
    *first = *last = 0;
    for (int i = 0; i < n; i++) { *first += v[i] / n; *last += v[k - 1 - i] / n; }
    return k;
}

KT_TEST(train_smoke_recipe_then_generate) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    int rc = kt_run(out, sizeof out, "%s train --recipe smoke --out '%s/run' --tokenizer '%s/clip' --quiet", kt_bin(), d,
                    kt_fixtures());
    KT_CHECKF(rc == 0, "train failed: %s", out);
    char log[700];
    snprintf(log, sizeof log, "%s/run/log.csv", d);
    double a, b;
    int n = loss_ends(log, "vae", 5, &a, &b);
    KT_CHECKF(n > 0 && b < 0.5 * a, "vae loss did not fall by half: %g -> %g (%d rows)", a, b, n);
    n = loss_ends(log, "unet", 10, &a, &b);
    KT_CHECKF(n > 0 && b < a, "unet loss did not fall: %g -> %g (%d rows)", a, b, n);
    char vid[700];
    snprintf(vid, sizeof vid, "%s/gen.y4m", d);
    rc = kt_run(out, sizeof out, "%s generate --model '%s/run/model' 'a small red circle moving left' --steps 10 "
                "--frames 8 -o '%s'", kt_bin(), d, vid);
    KT_CHECKF(rc == 0, "generate failed: %s", out);
    kn_video v = {0};
    KT_OK(kn_video_read(vid, NULL, &v));
    KT_CHECK(v.frames == 8 && v.width == 32 && v.height == 32);
    kn_video_free(&v);
    /* unknown recipe and missing --out fail with one line */
    KT_CHECK(kt_run(out, sizeof out, "%s train --recipe nope --out '%s/x'", kt_bin(), d) != 0 && strstr(out, "nope"));
    KT_CHECK(kt_run(out, sizeof out, "%s train --recipe smoke", kt_bin()) != 0 && strstr(out, "--out"));
}
