/* test_eval_fps.c — `kinema eval --fps-check`: on the renderer's clips an object moves twice as
 * far per frame at 4 fps as at 8 fps (ratio in [1.7, 2.3]) and the measured displacement equals
 * the renderer's ground-truth centroids; the measure itself (still objects do not move, a missing
 * object is not found, short clips are refused); the captions are straight single-object ones; a
 * tiny fps-conditioned cascade is run as its base alone, at its recorded frames and size, and the
 * fps reaches it (same seed, another rate, another clip); bad lists are one-line errors, exit 2. */
#include "kt.h"
#include "kt_models.h"

#include "io/export.h"
#include "train/fps_check.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* results.<src>[i] */
static const cJSON *result_row(const cJSON *j, const char *src, int i) {
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "results"), src), i);
}

KT_TEST(eval_fps_check_renderer_moves_twice_as_far_at_half_the_rate) {
    enum { N = 12, SIZE = 64, FRAMES = 8 };
    char out[16384], js[700];
    snprintf(js, sizeof js, "%s/fps.json", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s eval --fps-check 8,4 --reference --n %d --json '%s' -t 2 2>/dev/null", kt_bin(),
                    N, js);
    KT_CHECKF(rc == 0, "eval --fps-check failed: %s", out);
    /* the table: one renderer row per fps (ascending), then the ratio line */
    const char *r4 = strstr(out, "renderer     4"), *r8 = strstr(out, "renderer     8"), *q = strstr(out, "ratio 4 vs 8 fps:");
    KT_CHECKF(r4 && r8 && r4 < r8 && q && !strstr(out, "model "), "%s", out);
    double qt = 0;
    KT_CHECKF(q && sscanf(q, "ratio 4 vs 8 fps: renderer %lf", &qt) == 1 && qt >= 1.7 && qt <= 2.3, "%s", out);
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s.tmp", js);
    KT_CHECKF(access(tmp, F_OK) != 0, "%s left behind", tmp);
    cJSON *j = kt_load_json(js);
    if (!j)
        return;
    KT_CHECK(kt_json_num(j, "size") == SIZE && kt_json_num(j, "frames") == FRAMES && kt_json_num(j, "reference_fps") == 8 &&
             kt_json_num(j, "n") == N && cJSON_GetObjectItemCaseSensitive(result_row(j, "model", 0), "fps") == NULL);
    const cJSON *a = result_row(j, "renderer", 0), *b = result_row(j, "renderer", 1);
    KT_CHECK(kt_json_num(a, "fps") == 4 && kt_json_num(b, "fps") == 8 && kt_json_num(a, "found") == N && kt_json_num(b, "found") == N);
    KT_CHECKF(kt_json_num(a, "ratio") >= 1.7 && kt_json_num(a, "ratio") <= 2.3, "ratio %g", kt_json_num(a, "ratio"));
    KT_NEAR(kt_json_num(a, "ratio"), qt, 1e-3);
    KT_CHECK(kt_json_num(b, "ratio") == 1.0 && kt_json_num(a, "expected_ratio") == 2.0 && kt_json_num(a, "motion") == 1.0);
    /* every clip found at both rates: the paired ratio is the same ratio over the same clips */
    KT_CHECK(kt_json_num(a, "paired_clips") == N && kt_json_num(b, "paired_clips") == N);
    KT_NEAR(kt_json_num(a, "paired_ratio"), kt_json_num(a, "ratio"), 1e-9);
    /* the displacement is the renderer's true one: the mean over clips of the mean |truth
     * centroid step| (centroids in the clip's pixels), within 3 % */
    kn_shapes_caption caps[N];
    KT_OK(kn_fps_captions(7001, N, caps));
    const int fps[2] = {4, 8};
    const cJSON *row[2] = {a, b};
    kn_shapes_truth *tr = malloc(sizeof *tr);
    uint8_t *clip = malloc((size_t)FRAMES * SIZE * SIZE * 3);
    for (int f = 0; f < 2 && tr && clip; f++) {
        kn_shapes_render_params p = {SIZE, FRAMES, fps[f]};
        double sum = 0;
        for (int i = 0; i < N; i++) {
            KT_OK(kn_shapes_render(&caps[i], 0, &p, clip, tr));
            double s = 0;
            for (int t = 0; t + 1 < FRAMES; t++)
                s += hypot(tr->obj[0].cx[t + 1] - tr->obj[0].cx[t], tr->obj[0].cy[t + 1] - tr->obj[0].cy[t]);
            sum += s / (FRAMES - 1);
        }
        KT_CHECKF(fabs(kt_json_num(row[f], "disp") / (sum / N) - 1) < 0.03, "%d fps: measured %g px/frame, truth %g", fps[f],
                  kt_json_num(row[f], "disp"), sum / N);
        KT_CHECKF(fabs(kt_json_num(row[f], "speed") / (sum / N) - 1) < 0.03, "%d fps: fitted %g px/frame, truth %g", fps[f],
                  kt_json_num(row[f], "speed"), sum / N);
    }
    free(tr);
    free(clip);
    KT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "clips")) == 2 * N);
    cJSON_Delete(j);
}

KT_TEST(eval_fps_check_measure_and_captions) {
    /* the captions: single objects moving straight, the same for the same seed */
    kn_shapes_caption a[30], b[30];
    KT_OK(kn_fps_captions(5, 30, a));
    KT_OK(kn_fps_captions(5, 30, b));
    KT_CHECK(!memcmp(a, b, sizeof a));
    int dirs = 0;
    for (int i = 0; i < 30; i++) {
        KT_CHECK(a[i].n == 1 && kn_fps_motion_is_straight(a[i].obj[0].motion));
        dirs |= 1 << a[i].obj[0].motion;
    }
    KT_CHECKF(dirs == 0xff, "not every straight motion among 30 captions: %#x", dirs);
    KT_CHECK(!kn_fps_motion_is_straight(KN_MOTION_STILL) && !kn_fps_motion_is_straight(KN_MOTION_BOUNCE_LR) &&
             !kn_fps_motion_is_straight(KN_MOTION_BOUNCE_UD));
    KT_CHECK(kn_fps_captions(5, 0, a) == KN_ERR_ARG);

    enum { S = 64, T = 8 };
    uint8_t *clip = calloc((size_t)T * S * S * 3, 1);
    if (!clip)
        return;
    kn_shapes_caption still, moving;
    KT_OK(kn_shapes_parse("a large red square standing still", &still));
    KT_OK(kn_shapes_parse("a large red square moving right", &moving));
    kn_fps_measure m;
    /* black frames: nothing found, no displacement */
    KT_OK(kn_fps_measure_clip(clip, T, S, S, 8, &moving, &m));
    KT_CHECK(!m.found && m.pairs == 0 && isnan(m.disp) && isnan(m.speed));
    /* a still object: found in every frame, no motion at all */
    kn_shapes_render_params p = {S, T, 4};
    KT_OK(kn_shapes_render(&still, 3, &p, clip, NULL));
    KT_OK(kn_fps_measure_clip(clip, T, S, S, 4, &still, &m));
    KT_CHECK(m.found && m.pairs == T - 1 && m.disp == 0.0 && m.speed == 0.0);
    /* moving right at 4 fps and 64 px: 4 native frames x 1.5..2.25 px x 0.5 = 3..4.5 px per frame */
    KT_OK(kn_shapes_render(&moving, 3, &p, clip, NULL));
    KT_OK(kn_fps_measure_clip(clip, T, S, S, 4, &moving, &m));
    KT_CHECKF(m.found && m.motion_ok && m.disp > 2.9 && m.disp < 4.6 && fabs(m.speed - m.disp) < 0.1,
              "disp %g speed %g", m.disp, m.speed);
    /* the same clip measured as another caption's colour: not found */
    kn_shapes_caption blue;
    KT_OK(kn_shapes_parse("a large blue square moving right", &blue));
    KT_OK(kn_fps_measure_clip(clip, T, S, S, 4, &blue, &m));
    KT_CHECK(!m.found);
    KT_CHECK(kn_fps_measure_clip(clip, 1, S, S, 4, &moving, &m) == KN_ERR_ARG);
    KT_CHECK(kn_fps_measure_clip(clip, T, S, S, 3, &moving, &m) == KN_ERR_ARG);
    free(clip);
}

/* A tiny random cascade whose base (16 px, 8 frames at 4 fps) and tsr are fps-conditioned. */
static const char *tiny_cascade(void) {
    static char dir[700];
    snprintf(dir, sizeof dir, "%s/cascade", kt_tmpdir());
    kn_unet3d_config b = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 2, 4, 8), t;
    b.sample_size = 8;
    b.fps_cond = 1;
    t = b;
    t.cond_channels = 5;
    kn_vae_config vc = kt_tiny_vae_config();
    kn_clip_text_config cc = kt_tiny_text_config(8);
    kn_unet3d *unet = kn_unet3d_new(&b), *tsr = kn_unet3d_new(&t);
    kn_vae *vae = kn_vae_new(&vc);
    kn_clip_text *text = kn_clip_text_new(&cc);
    kn_status st = KN_ERR_NOMEM;
    if (unet && tsr && vae && text) {
        kn_params_init_default(&unet->P, 1);
        kn_params_init_default(&tsr->P, 2);
        kn_params_init_default(&vae->P, 4);
        kn_params_init_default(&text->P, 5);
        kn_sched_config sc = kn_sched_config_modelscope();
        kn_export_opts o = {KN_F32, 4, 8};
        o.tsr = tsr;
        o.cascade = (kn_cascade_info){2, 2, 2, 1.0f, 2, 2, 100, 1, 0, 1.0f};
        st = kn_export_t2v(dir, unet, vae, text, &sc, "models/default/tokenizer", "<|endoftext|>", &o);
    }
    KT_CHECKF(st == KN_OK, "tiny cascade: %s", kn_last_error());
    kn_unet3d_free(unet);
    kn_unet3d_free(tsr);
    kn_vae_free(vae);
    kn_clip_text_free(text);
    return st == KN_OK ? dir : NULL;
}

KT_TEST(eval_fps_check_runs_the_base_alone_with_the_fps) {
    const char *dir = tiny_cascade();
    if (!dir)
        return;
    char out[16384], js[700], js1[700], sv[700];
    snprintf(js, sizeof js, "%s/m.json", kt_tmpdir());
    snprintf(js1, sizeof js1, "%s/m1.json", kt_tmpdir());
    snprintf(sv, sizeof sv, "%s/sheets", kt_tmpdir());
    const char *common = "--fps-check 4,8 --n 2 --steps 2 -g 1";
    int rc = kt_run(out, sizeof out, "%s eval -m '%s' %s --json '%s' --save-dir '%s' -t 2 2>&1", kt_bin(), dir, common,
                    js, sv);
    KT_CHECKF(rc == 0, "%s", out);
    KT_CHECKF(strstr(out, "model        4") && strstr(out, "model        8") && strstr(out, "renderer     4") &&
                  strstr(out, "ratio 4 vs 8 fps: model"),
              "%s", out);
    cJSON *j = kt_load_json(js);
    if (j) {
        /* the base alone: 16 px and 8 frames, not the cascade's 16 px x 4 frames x 32 */
        KT_CHECK(kt_json_num(j, "size") == 16 && kt_json_num(j, "frames") == 8 && kt_json_num(j, "steps") == 2);
        KT_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fps_cond")));
        for (int i = 0; i < 2; i++) {
            const cJSON *m = result_row(j, "model", i), *r = result_row(j, "renderer", i);
            KT_CHECK(kt_json_num(m, "fps") == 4 * (i + 1) && kt_json_num(m, "clips") == 2 && kt_json_num(r, "clips") == 2);
            KT_CHECK(kt_json_num(m, "found") >= 0 && kt_json_num(m, "found") <= 2 && kt_json_num(m, "paired_clips") <= kt_json_num(m, "found"));
        }
        KT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "clips")) == 8);
        cJSON_Delete(j);
    }
    /* the fps reaches the base: the same seed at 4 and 8 fps gives different clips */
    char p4[900], p8[900];
    snprintf(p4, sizeof p4, "%s/fps4_0_0.sheet.png", sv);
    snprintf(p8, sizeof p8, "%s/fps8_0_0.sheet.png", sv);
    long n4 = 0, n8 = 0;
    char *a = kt_slurp(p4, &n4), *b = kt_slurp(p8, &n8);
    KT_CHECKF(a && b && !memcmp(a, "\x89PNG", 4) && !memcmp(b, "\x89PNG", 4), "%s / %s missing", p4, p8);
    KT_CHECKF(a && b && (n4 != n8 || memcmp(a, b, (size_t)n4)), "4 and 8 fps gave the same clip");
    free(a);
    free(b);
    /* one thread: the same numbers */
    rc = kt_run(out, sizeof out, "%s eval -m '%s' %s --json '%s' -t 1 2>&1", kt_bin(), dir, common, js1);
    KT_CHECKF(rc == 0, "%s", out);
    char *x = kt_json_without_seconds(js), *y = kt_json_without_seconds(js1);
    KT_CHECKF(x && y && !strcmp(x, y), "-t 1 and -t 2 differ");
    free(x);
    free(y);
}

KT_TEST(eval_fps_check_bad_list_is_one_error_line) {
    char out[4096], nojs[700];
    snprintf(nojs, sizeof nojs, "%s/never.json", kt_tmpdir());
    struct { const char *args; const char *msg; int rc; } cases[] = {
        {"--fps-check 4,x", "'4,x'", 2},
        {"--fps-check 0", "0 is not a frame rate", 2},
        {"--fps-check 4,8,2,1,16", "at most 4", 2},
        {"--fps-check 3,6", "3 is not a frame rate", 2},
        {"--fps-check 32", "32 is not a frame rate", 2},
        {"--fps-check 4,,8", "comma-separated", 2},
        {"--fps-check 4,8,", "comma-separated", 2},
        {"--fps-check ''", "comma-separated", 2},
        {"--fps-check -4,8", "comma-separated", 2},
        {"--fps-check 4,4", "twice", 2},
        {"--fps-check 4,8 --fps 8", "not both", 2},
        {"--fps-check 4,8 --split two", "random split", 2},
        {"--fps-check 4,8 --frames 1", "at least 2 frames", 1},
        {"--fps-check 4,8", "no --model", 1},
        {"--fps-check 4,8 -m /nonexistent", "/nonexistent", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ref = strstr(cases[i].args, "-m ") || !strcmp(cases[i].msg, "no --model") ? "" : "--reference";
        int rc = kt_run(out, sizeof out, "%s eval %s %s --json '%s' 2>&1 >/dev/null", kt_bin(), ref, cases[i].args, nojs);
        KT_CHECKF(rc == cases[i].rc, "case %zu (%s): exit %d, want %d: %s", i, cases[i].args, rc, cases[i].rc, out);
        KT_CHECKF(strstr(out, cases[i].msg) != NULL, "case %zu: message '%s' lacks '%s'", i, out, cases[i].msg);
        const char *e = strstr(out, "kinema: ");
        KT_CHECKF(e == out && strchr(out, '\n') == out + strlen(out) - 1, "case %zu: not one error line: %s", i, out);
    }
    struct stat sb;
    KT_CHECKF(stat(nojs, &sb) != 0, "a failed run left %s", nojs);
    KT_CHECK(kt_run(out, sizeof out, "%s eval --help", kt_bin()) == 0 && strstr(out, "--fps-check"));
}
