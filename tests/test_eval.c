/* test_eval.c — `kinema eval`: the renderer's own clips score 1.000 on every split; the numbers
 * equal a direct render + kn_shapes_score_clip tally (also where the scorer is not perfect, at
 * 32x32); a random-weight fixture pipeline runs and scores ~0 with every field present, next to
 * the renderer's bound for the same captions; results do not depend on the thread count; bad
 * input gives one error line. */
#include "kt.h"

#include "train/shapes.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const splits[3] = {"random", "heldout", "two"};
static const char *const fields[] = {"clips", "objects", "sized_objects", "exact",  "colour", "shape",
                                     "size",  "motion",  "present",       "flicker", "area_cv"};

/* every split object (and "overall") has every field: a number, or null for a mean over nothing */
static void check_fields(const cJSON *j, int nsplits) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "splits");
    KT_CHECK(cJSON_IsObject(sp) && cJSON_GetArraySize(sp) == nsplits);
    for (int s = 0; s <= nsplits; s++) {
        const cJSON *o = s < nsplits ? cJSON_GetObjectItemCaseSensitive(sp, splits[s])
                                     : cJSON_GetObjectItemCaseSensitive(j, "overall");
        KT_CHECKF(cJSON_IsObject(o), "no object for %s", s < nsplits ? splits[s] : "overall");
        for (size_t k = 0; o && k < sizeof fields / sizeof fields[0]; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, fields[k]);
            KT_CHECKF(cJSON_IsNumber(v) || cJSON_IsNull(v), "field %s missing", fields[k]);
        }
    }
}

KT_TEST(eval_reference_scores_exactly_right_on_every_split) {
    char out[16384], js[700];
    snprintf(js, sizeof js, "%s/ref.json", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s eval --reference --n 12 --size 64 --fps 8 --json '%s' 2>/dev/null", kt_bin(), js);
    KT_CHECKF(rc == 0, "eval --reference failed: %s", out);
    /* the table: a header, one row per split and an overall row, all 1.000 */
    KT_CHECK(strstr(out, "exact") && strstr(out, "colour") && strstr(out, "motion") && strstr(out, "flicker") &&
             strstr(out, "area_cv"));
    for (int s = 0; s < 4; s++) {
        const char *name = s < 3 ? splits[s] : "overall";
        const char *row = strstr(out, name);
        int clips = 0;
        double exact = 0, colour = 0, shape = 0, size = 0, motion = 0;
        KT_CHECKF(row && sscanf(row + strlen(name), "%d %lf %lf %lf %lf %lf", &clips, &exact, &colour, &shape, &size,
                                &motion) == 6,
                  "no row for %s in: %s", name, out);
        KT_CHECKF(clips == (s < 3 ? 12 : 36) && exact == 1.0 && colour == 1.0 && shape == 1.0 && size == 1.0 &&
                      motion == 1.0,
                  "%s: %d clips, exact %.3f colour %.3f shape %.3f size %.3f motion %.3f", name, clips, exact, colour,
                  shape, size, motion);
    }
    cJSON *j = kt_load_json(js);
    if (!j)
        return;
    check_fields(j, 3);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "splits");
    for (int s = 0; s < 3; s++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(sp, splits[s]);
        KT_CHECKF(kt_json_num(o, "exact") == 1.0 && kt_json_num(o, "colour") == 1.0 && kt_json_num(o, "shape") == 1.0 &&
                      kt_json_num(o, "motion") == 1.0 && kt_json_num(o, "present") == 1.0,
                  "split %s not exact in JSON", splits[s]);
        KT_CHECK(kt_json_num(o, "flicker") == 0.0);               /* a black background does not flicker */
        KT_CHECK(kt_json_num(o, "area_cv") >= 0 && kt_json_num(o, "area_cv") < 0.02); /* rendered areas hold still */
    }
    KT_CHECK(kt_json_num(cJSON_GetObjectItemCaseSensitive(j, "overall"), "clips") == 36);
    const cJSON *clips = cJSON_GetObjectItemCaseSensitive(j, "clips");
    KT_CHECK(cJSON_GetArraySize(clips) == 36);
    const cJSON *c;
    cJSON_ArrayForEach(c, clips) KT_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "exact")));
    cJSON_Delete(j);
}

/* At 32x32 / 4 fps the scorer misses some small shapes even on rendered clips, so the numbers are
 * not all 1: the evaluator's tallies must equal a direct render + score of the same captions. */
KT_TEST(eval_reference_numbers_equal_a_direct_tally) {
    enum { N = 40, SIZE = 32, FRAMES = 8, FPS = 4 };
    char out[4096], js[700];
    snprintf(js, sizeof js, "%s/ref32.json", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s eval --reference --n %d --size %d --frames %d --fps %d --caption-seed 11 "
                    "--json '%s' 2>&1 >/dev/null | tail -1", kt_bin(), N, SIZE, FRAMES, FPS, js);
    KT_CHECKF(rc == 0, "eval failed: %s", out);
    cJSON *j = kt_load_json(js);
    if (!j)
        return;
    KT_CHECK(kt_json_num(j, "size") == SIZE && kt_json_num(j, "frames") == FRAMES && kt_json_num(j, "fps") == FPS &&
             kt_json_num(j, "caption_seed") == 11);
    kn_shapes_render_params p = {SIZE, FRAMES, FPS};
    uint8_t *clip = malloc(kn_shapes_clip_bytes(&p));
    int all_exact = 0, all_clips = 0;
    for (int s = 0; s < 3 && clip; s++) {
        int exact = 0, objects = 0, colour = 0, shape = 0, motion = 0, sized = 0, size = 0;
        double flick = 0;
        for (int i = 0; i < N; i++) {
            kn_shapes_caption cap;
            kn_shapes_score sc;
            KT_OK(kn_shapes_sample((kn_shapes_split)s, 11, (uint64_t)i, &cap));
            KT_OK(kn_shapes_render(&cap, 0, &p, clip, NULL));
            KT_OK(kn_shapes_score_clip(clip, FRAMES, SIZE, SIZE, FPS, &cap, &sc));
            exact += sc.exact;
            flick += sc.flicker;
            for (int o = 0; o < cap.n; o++) {
                objects++;
                colour += sc.obj[o].colour_ok, shape += sc.obj[o].shape_ok, motion += sc.obj[o].motion_ok;
                if (cap.obj[o].size != KN_SIZE_UNSPECIFIED)
                    sized++, size += sc.obj[o].size_ok;
            }
        }
        all_exact += exact, all_clips += N;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "splits"), splits[s]);
        KT_NEAR(kt_json_num(o, "exact"), (double)exact / N, 1e-12);
        KT_NEAR(kt_json_num(o, "colour"), (double)colour / objects, 1e-12);
        KT_NEAR(kt_json_num(o, "shape"), (double)shape / objects, 1e-12);
        KT_NEAR(kt_json_num(o, "motion"), (double)motion / objects, 1e-12);
        KT_NEAR(kt_json_num(o, "size"), (double)size / sized, 1e-12);
        KT_NEAR(kt_json_num(o, "objects"), objects, 0);
        KT_NEAR(kt_json_num(o, "sized_objects"), sized, 0);
        KT_NEAR(kt_json_num(o, "flicker"), flick / N, 1e-9);
    }
    KT_NEAR(kt_json_num(cJSON_GetObjectItemCaseSensitive(j, "overall"), "exact"), (double)all_exact / all_clips, 1e-12);
    KT_CHECKF(all_exact < all_clips, "expected the scorer to miss some 32x32 clips (%d/%d exact)", all_exact, all_clips);
    free(clip);
    cJSON_Delete(j);
}

static const char *pipe_dir(void) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/pipe", kt_tmpdir());
    char out[4096];
    int rc = kt_run(out, sizeof out, "KINEMA_FIXTURES='%s' scripts/fixture-pipeline '%s'", kt_fixtures(), dir);
    KT_CHECKF(rc == 0, "fixture-pipeline failed: %s", out);
    return dir;
}

KT_TEST(eval_fixture_pipeline_scores_noise_with_every_field) {
    const char *dir = pipe_dir();
    char out[16384], js[700], sv[700], js1[700];
    snprintf(js, sizeof js, "%s/gen.json", kt_tmpdir());
    snprintf(js1, sizeof js1, "%s/gen1.json", kt_tmpdir());
    snprintf(sv, sizeof sv, "%s/sheets", kt_tmpdir());
    const char *common = "--n 2 --seeds 2 --steps 2 --frames 4 --fps 8 --size 64";
    int rc = kt_run(out, sizeof out, "%s eval -m '%s' %s --json '%s' --save-dir '%s' -t 2", kt_bin(), dir, common, js, sv);
    KT_CHECKF(rc == 0, "eval failed: %s", out);
    KT_CHECK(strstr(out, "overall") && strstr(out, "area_cv") && strstr(out, "heldout"));
    cJSON *j = kt_load_json(js);
    if (j) {
        check_fields(j, 3);
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(j, "overall");
        KT_CHECK(kt_json_num(ov, "clips") == 12);          /* 3 splits x 2 captions x 2 seeds */
        KT_CHECKF(kt_json_num(ov, "exact") == 0.0, "random weights matched %.3f of captions", kt_json_num(ov, "exact"));
        KT_CHECK(kt_json_num(ov, "shape") <= 0.2 && kt_json_num(ov, "motion") <= 0.2);
        KT_CHECK(kt_json_num(ov, "flicker") > 5.0);         /* noise flickers */
        KT_CHECK(kt_json_num(j, "steps") == 2 && kt_json_num(j, "guidance") == 9 && kt_json_num(j, "seeds") == 2);
        KT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "clips")) == 12);
        /* the renderer's bound for the same captions: 4 frames (0.5 s) are too short to show a
         * bounce, so it is below 1 here (eval_model_bound_equals_reference_run checks its value) */
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "splits");
        for (int s = 0; s < 3; s++) {
            double b = kt_json_num(cJSON_GetObjectItemCaseSensitive(sp, splits[s]), "reference_exact");
            KT_CHECKF(b >= 0.5 && b <= 1.0, "split %s: reference_exact %g", splits[s], b);
        }
        cJSON_Delete(j);
    }
    /* one contact sheet per clip, named split_index_seed.sheet.png */
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 2; k++) {
                char p[900];
                snprintf(p, sizeof p, "%s/%s_%d_%d.sheet.png", sv, splits[s], i, k);
                char *png = kt_slurp(p, NULL);
                KT_CHECKF(png && !memcmp(png, "\x89PNG", 4), "%s missing or not a PNG", p);
                free(png);
            }
    /* the same numbers at one thread */
    rc = kt_run(out, sizeof out, "%s eval -m '%s' %s --json '%s' -t 1 2>&1", kt_bin(), dir, common, js1);
    KT_CHECKF(rc == 0, "eval -t 1 failed: %s", out);
    char *a = kt_json_without_seconds(js), *b = kt_json_without_seconds(js1);
    KT_CHECKF(a && b && !strcmp(a, b), "-t 1 and -t 2 give different results");
    free(a);
    free(b);
}

/* A model run's ref_exact column is the --reference run's exact-match at the same settings
 * (here 32x32 / 4 fps, caption seed 1, where the scorer misses one of 8 rendered clips). */
KT_TEST(eval_model_bound_equals_reference_run) {
    const char *dir = pipe_dir();
    char out[4096], a[700], b[700];
    snprintf(a, sizeof a, "%s/model.json", kt_tmpdir());
    snprintf(b, sizeof b, "%s/ref.json", kt_tmpdir());
    const char *common = "--split two --n 8 --size 32 --frames 8 --fps 4 --caption-seed 1";
    int rc = kt_run(out, sizeof out, "%s eval -m '%s' %s --steps 1 --json '%s' 2>&1", kt_bin(), dir, common, a);
    KT_CHECKF(rc == 0, "%s", out);
    KT_CHECK(strstr(out, "ref_exact") != NULL);
    rc = kt_run(out, sizeof out, "%s eval --reference %s --json '%s' 2>&1", kt_bin(), common, b);
    KT_CHECKF(rc == 0 && !strstr(out, "ref_exact"), "%s", out);
    cJSON *ja = kt_load_json(a), *jb = kt_load_json(b);
    if (ja && jb) {
        double bound = kt_json_num(cJSON_GetObjectItemCaseSensitive(ja, "overall"), "reference_exact");
        double exact = kt_json_num(cJSON_GetObjectItemCaseSensitive(jb, "overall"), "exact");
        KT_NEAR(bound, exact, 1e-12);
        KT_NEAR(exact, 7.0 / 8.0, 1e-12);
        KT_CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(jb, "overall"),
                                                  "reference_exact") == NULL);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
}

KT_TEST(eval_reference_same_for_any_thread_count) {
    char out[4096], js[3][700];
    char *txt[3];
    for (int t = 0; t < 3; t++) {
        snprintf(js[t], sizeof js[t], "%s/t%d.json", kt_tmpdir(), t + 1);
        int rc = kt_run(out, sizeof out, "%s eval --reference --split two --n 10 --size 48 --fps 16 -t %d --json '%s' 2>&1",
                        kt_bin(), t + 1, js[t]);
        KT_CHECKF(rc == 0, "%s", out);
        txt[t] = kt_json_without_seconds(js[t]);
    }
    KT_CHECK(txt[0] && txt[1] && txt[2] && !strcmp(txt[0], txt[1]) && !strcmp(txt[0], txt[2]));
    for (int t = 0; t < 3; t++)
        free(txt[t]);
}

KT_TEST(eval_bad_input_fails_cleanly) {
    const char *dir = pipe_dir();
    char out[4096], file[700], nojs[700];
    snprintf(file, sizeof file, "%s/afile", kt_tmpdir());
    snprintf(nojs, sizeof nojs, "%s/never.json", kt_tmpdir());
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    struct { const char *args; const char *msg; } cases[] = {
        {"", "no --model"},
        {"-m /nonexistent", "/nonexistent"},
        {"--reference -m PIPE", "not both"},
        {"--reference --split sideways", "sideways"},
        {"--reference --n 0", "--n"},
        {"--reference --seeds x", "--seeds"},
        {"--reference --fps 3", "--fps"},
        {"--reference --fps 32", "--fps"},
        {"--reference --size 4", "--size"},
        {"--reference --frobnicate", "unknown option"},
        {"--reference stray", "unexpected argument"},
        {"-m PIPE --size 60 --frames 2", "multiple of"},
        {"-m PIPE --steps 0", "--steps"},
        {"-m PIPE --guidance -1", "--guidance"},
        {"-m PIPE --scheduler pndm --frames 2 --size 16", "unknown scheduler"},
        {"--reference --n 1 --json /nonexistent/dir/x.json", "/nonexistent/dir"},
        {"--reference --n 1 --save-dir FILE --json NOJS", "not a directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024];
        /* PIPE, FILE, NOJS -> the fixture pipeline, a plain file, a JSON path that must not appear */
        snprintf(args, sizeof args, "%s", cases[i].args);
        const char *keys[3] = {"PIPE", "FILE", "NOJS"}, *vals[3] = {dir, file, nojs};
        for (int k = 0; k < 3; k++) {
            char *p = strstr(args, keys[k]);
            if (p) {
                char tail[1024];
                snprintf(tail, sizeof tail, "%s", p + 4);
                snprintf(p, sizeof args - (size_t)(p - args), "%s%s", vals[k], tail);
            }
        }
        int rc = kt_run(out, sizeof out, "%s eval %s 2>&1 >/dev/null", kt_bin(), args);
        KT_CHECKF(rc != 0, "case %zu (%s) succeeded", i, cases[i].args);
        KT_CHECKF(strstr(out, cases[i].msg) != NULL, "case %zu: message '%s' lacks '%s'", i, out, cases[i].msg);
        int nerr = 0;
        for (const char *r = out; (r = strstr(r, "kinema: ")); r++)
            if (r == out || r[-1] == '\n') nerr++;
        const char *last = strstr(out, "kinema: ");
        KT_CHECKF(nerr == 1 && last && strchr(last, '\n') == strrchr(out, '\n'), "case %zu: not one error line: %s",
                  i, out);
    }
    struct stat sb;
    KT_CHECK(stat("/nonexistent/dir/x.json", &sb) != 0);
    /* --help is no error */
    KT_CHECK(kt_run(out, sizeof out, "%s eval --help", kt_bin()) == 0 && strstr(out, "--reference") &&
             strstr(out, "--save-dir"));
    KT_CHECKF(stat(nojs, &sb) != 0, "a failed eval left %s behind", nojs);
}
