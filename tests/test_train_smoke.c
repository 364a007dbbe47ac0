/* test_train_smoke.c — `kinema train --recipe smoke` end to end: both stages run, their losses
 * fall, the exported folder loads, and `kinema generate --model` makes a video from it. */
#include "kt.h"

#include "io/video.h"

#include <stdlib.h>
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
    /* KINEMA_SMOKE_STEPS shortens the run (the sanitizer pass of scripts/check uses it) */
    const char *steps = getenv("KINEMA_SMOKE_STEPS");
    char steps_opt[64] = "";
    if (steps && atoi(steps) > 0)
        snprintf(steps_opt, sizeof steps_opt, "--steps %d", atoi(steps));
    int rc = kt_run(out, sizeof out, "%s train --recipe smoke %s --out '%s/run' --tokenizer '%s/clip' --quiet", kt_bin(),
                    steps_opt, d, kt_fixtures());
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

/* A run killed with SIGKILL and resumed gives the same loss curve, bit for bit, and the same model
 * bytes as a run that was never interrupted; a finished checkpoint's options must match. */
KT_TEST(train_resume_after_sigkill_is_exact) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    const char *opts = "--recipe smoke --steps 8 --save-every 2 --quiet --threads 2";
    int rc = kt_run(out, sizeof out, "%s train %s --out '%s/a' --tokenizer '%s/clip'", kt_bin(), opts, d, kt_fixtures());
    KT_CHECKF(rc == 0, "%s", out);
    rc = kt_run(out, sizeof out,
                "%s train %s --out '%s/b' --tokenizer '%s/clip' & pid=$!; "
                "for i in $(seq 1 600); do [ -f '%s/b/last.safetensors' ] && break; sleep 0.05; done; "
                "sleep 0.7; kill -9 $pid; wait $pid; echo killed=$?",
                kt_bin(), opts, d, kt_fixtures(), d);
    KT_CHECKF(strstr(out, "killed=") != NULL, "%s", out);
    /* resume with other threads: the result does not depend on them either */
    rc = kt_run(out, sizeof out, "%s train %s --threads 1 --out '%s/b' --tokenizer '%s/clip' --resume", kt_bin(), opts, d,
                kt_fixtures());
    KT_CHECKF(rc == 0, "resume failed: %s", out);
    rc = kt_run(out, sizeof out, "cd '%s' && cut -d, -f1-3 a/log.csv > la && cut -d, -f1-3 b/log.csv > lb && diff la lb && "
                "cmp a/model/unet/diffusion_pytorch_model.safetensors b/model/unet/diffusion_pytorch_model.safetensors && "
                "cmp a/model/text_encoder/model.safetensors b/model/text_encoder/model.safetensors && "
                "cmp a/model/vae/diffusion_pytorch_model.safetensors b/model/vae/diffusion_pytorch_model.safetensors && "
                "ls b | grep -c tmp", d);
    KT_CHECKF(strncmp(out, "0", 1) == 0, "resumed run differs or left temporary files: %s", out);
    /* --export-only rebuilds the same model from the final checkpoint */
    rc = kt_run(out, sizeof out, "cp -r '%s/a/model' '%s/a_model' && %s train %s --out '%s/a' --tokenizer '%s/clip' "
                "--export-only && cmp '%s/a_model/unet/diffusion_pytorch_model.safetensors' "
                "'%s/a/model/unet/diffusion_pytorch_model.safetensors'", d, d, kt_bin(), opts, d, kt_fixtures(), d, d);
    KT_CHECKF(rc == 0, "export-only: %s", out);
    /* resuming with other options is refused */
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --steps 9 --quiet --out '%s/b' --tokenizer '%s/clip' --resume",
                kt_bin(), d, kt_fixtures());
    KT_CHECK(rc != 0 && strstr(out, "another recipe or options"));
    /* a corrupt checkpoint is refused with a message naming it */
    rc = kt_run(out, sizeof out, "mkdir -p '%s/c' && head -c 5000 '%s/b/last.safetensors' > '%s/c/last.safetensors' && "
                "%s train %s --out '%s/c' --tokenizer '%s/clip' --resume", d, d, d, kt_bin(), opts, d, kt_fixtures());
    KT_CHECKF(rc != 0 && strstr(out, "last.safetensors"), "rc %d: %s", rc, out);
}

/* Training on a folder of the user's own captioned clips and images (joint image-video training). */
KT_TEST(train_on_a_folder_of_captioned_clips) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    int rc = kt_run(out, sizeof out,
                    "mkdir -p '%s/data' && %s data render -p 'a small red circle moving left' --seed 1 --size 64 "
                    "--frames 16 -o '%s/data/a.gif' && echo 'a small red circle moving left' > '%s/data/a.txt' && "
                    "%s data render -p 'a large blue square standing still' --seed 2 --size 64 --frames 16 "
                    "-o '%s/data/b.y4m' && echo 'a large blue square standing still' > '%s/data/b.txt' && "
                    "cp '%s/data/a.gif' '%s/data/uncaptioned.gif' && "
                    "%s convert '%s/data/a.gif' --frames 1 -o '%s/data/still.png' && "
                    "echo 'a small red circle standing still' > '%s/data/still.txt'",
                    d, kt_bin(), d, d, kt_bin(), d, d, d, d, kt_bin(), d, d, d);
    KT_CHECKF(rc == 0, "%s", out);
    /* batch 3 = [a.gif, b.y4m, still.png]: a mixed batch, the image with its temporal layers off */
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --steps 3 --batch 3 --data '%s/data' --out '%s/run' "
                "--tokenizer '%s/clip' --quiet", kt_bin(), d, d, kt_fixtures());
    KT_CHECKF(rc == 0 && strstr(out, "3 captioned") && strstr(out, "1 skipped"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "%s train --recipe smoke --steps 3 --data '%s/nonexistent' --out '%s/run2' --quiet",
                kt_bin(), d, d);
    KT_CHECK(rc != 0 && strstr(out, "nonexistent"));
}

/* --config FILE: a JSON recipe over a built-in one; typos are errors. */
KT_TEST(train_with_a_json_config) {
    static char out[1 << 16];
    const char *d = kt_tmpdir();
    int rc = kt_run(out, sizeof out,
                    "printf '{\"base\": \"smoke\", \"unet_steps\": 3, \"vae_steps\": 2, \"unet_channels\": [16, 32], "
                    "\"unet_head_dim\": 8, \"unet_groups\": 8, \"objective\": \"v\"}' > '%s/c.json' && "
                    "%s train --config '%s/c.json' --out '%s/run' --tokenizer '%s/clip' --quiet && "
                    "grep -c '^unet,' '%s/run/log.csv' && grep -o 'v_prediction' "
                    "'%s/run/model/scheduler/scheduler_config.json'",
                    d, kt_bin(), d, d, kt_fixtures(), d, d);
    KT_CHECKF(rc == 0 && strstr(out, "3\n") && strstr(out, "v_prediction"), "rc %d: %s", rc, out);
    rc = kt_run(out, sizeof out, "printf '{\"base\": \"smoke\", \"unet_stepz\": 3}' > '%s/bad.json' && "
                "%s train --config '%s/bad.json' --out '%s/run2'", d, kt_bin(), d, d);
    KT_CHECK(rc != 0 && strstr(out, "unet_stepz"));
    rc = kt_run(out, sizeof out, "printf '{\"base\": \"smoke\", \"fps\": 3}' > '%s/bad2.json' && "
                "%s train --config '%s/bad2.json' --out '%s/run3'", d, kt_bin(), d, d);
    KT_CHECK(rc != 0 && strstr(out, "fps"));
}
