/* test_viz.c — `kinema viz` on the tiny random cascade of test_stage_eval.c: latent-walk writes a
 * grid of the right size whose end rows are the two seeds' own generations (the same row from two
 * different walks), flicker writes a (F, 2H, 3W) video whose first panel is the bilinear
 * upsampling of the input and whose second row holds frame differences; bad input gives one
 * error line. */
#include "kt.h"

#include "io/image.h"
#include "io/video.h"
#include "train/stage_eval.h"

#include <stdlib.h>
#include <string.h>

const char *kt_stage_eval_model(int with_stages); /* tests/test_stage_eval.c */

enum { PX = 16, SHOWN = 3 }; /* the tiny base model: sample_size 8 x VAE factor 2 */

static int row_equal(const kn_image *a, int ra, const kn_image *b, int rb) {
    size_t rowb = (size_t)PX * a->width * 3;
    return !memcmp(a->rgb + (size_t)ra * rowb, b->rgb + (size_t)rb * rowb, rowb);
}

KT_TEST(viz_latent_walk_grid_and_its_end_rows) {
    const char *dir = kt_stage_eval_model(0);
    if (!dir)
        return;
    char out[4096], g1[800], g2[800];
    snprintf(g1, sizeof g1, "%s/walk1.png", kt_tmpdir());
    snprintf(g2, sizeof g2, "%s/walk2.png", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s viz latent-walk --model '%s' -o '%s' --seed-a 0 --seed-b 1 --points 3 "
                    "--shown %d --steps 1 -g 1 -t 2 2>&1", kt_bin(), dir, g1, SHOWN);
    KT_CHECKF(rc == 0, "latent-walk failed: %s", out);
    rc = kt_run(out, sizeof out, "%s viz latent-walk --model '%s' -o '%s' --seed-a 1 --seed-b 9 --points 2 "
                "--shown %d --steps 1 -g 1 -t 1 2>&1", kt_bin(), dir, g2, SHOWN);
    KT_CHECKF(rc == 0, "latent-walk failed: %s", out);
    kn_image a = {0}, b = {0};
    KT_OK(kn_image_read(g1, &a));
    KT_OK(kn_image_read(g2, &b));
    KT_CHECKF(a.height == 3 * PX && a.width == SHOWN * PX, "grid %dx%d", a.height, a.width);
    KT_CHECKF(b.height == 2 * PX && b.width == SHOWN * PX, "grid %dx%d", b.height, b.width);
    if (a.rgb && b.rgb && a.width == b.width) {
        /* seed 1 is the end of walk 1 and the start of walk 2 (and threads do not matter) */
        KT_CHECK(row_equal(&a, 2, &b, 0));
        /* the path moves: the seeds' rows differ, the middle is neither end */
        KT_CHECK(!row_equal(&a, 0, &a, 2) && !row_equal(&a, 1, &a, 0) && !row_equal(&a, 1, &a, 2));
    }
    kn_image_free(&a);
    kn_image_free(&b);
}

KT_TEST(viz_flicker_panel_video) {
    const char *dir = kt_stage_eval_model(1);
    if (!dir)
        return;
    enum { F = 4, H = 2 * PX };
    kn_shapes_caption cap;
    KT_OK(kn_shapes_parse("a large green square moving right", &cap));
    kn_shapes_render_params rp = {PX, F, 8};
    static uint8_t clip[F * PX * PX * 3], bil[F * H * H * 3];
    KT_OK(kn_shapes_render(&cap, 2, &rp, clip, NULL));
    char in[800], outp[800], first[800], out[4096];
    snprintf(in, sizeof in, "%s/in%%d.png", kt_tmpdir());
    snprintf(outp, sizeof outp, "%s/flk%%d.png", kt_tmpdir());
    kn_video v = {F, PX, PX, 8.0, clip};
    KT_OK(kn_video_write(in, &v, NULL));
    int rc = kt_run(out, sizeof out, "%s viz flicker '%s' --model '%s' -o '%s' --steps 1 -t 2 2>&1", kt_bin(), in, dir,
                    outp);
    KT_CHECKF(rc == 0 && strstr(out, "background flicker"), "viz flicker failed: %s", out);
    kn_video r = {0};
    kn_video_read_opts ro = kn_video_read_default_opts();
    KT_OK(kn_video_read(outp, &ro, &r));
    KT_CHECKF(r.frames == F && r.height == 2 * H && r.width == 3 * H, "panel %dx%dx%d", r.frames, r.height, r.width);
    if (r.frames == F && r.height == 2 * H && r.width == 3 * H) {
        KT_OK(kn_eval_upsample_clip(KN_RESAMPLE_BILINEAR, clip, F, PX, PX, 2, bil));
        int same = 1, moving = 0;
        for (int f = 0; f < F; f++)
            for (int y = 0; y < H; y++) {
                const uint8_t *row = kn_video_frame(&r, f) + (size_t)y * 3 * H * 3;
                same &= !memcmp(row, bil + ((size_t)f * H + y) * H * 3, (size_t)H * 3);
                const uint8_t *drow = kn_video_frame(&r, f) + (size_t)(H + y) * 3 * H * 3; /* bilinear's diff */
                for (int x = 0; x < H * 3; x++)
                    moving |= f > 0 && drow[x] > 0;
                if (f == 0)
                    for (int x = 0; x < 3 * H * 3; x++)
                        KT_CHECK(drow[x] == 0); /* frame 0 has no predecessor */
            }
        KT_CHECK(same);
        KT_CHECK(moving); /* the square moves: its edges light up in the difference row */
    }
    kn_video_free(&r);
    snprintf(first, sizeof first, "%s/flk0.png", kt_tmpdir());
    kn_image im = {0};
    KT_OK(kn_image_read(first, &im));
    kn_image_free(&im);
}

KT_TEST(viz_bad_inputs_are_one_line_errors) {
    const char *plain = kt_stage_eval_model(0);
    if (!plain)
        return;
    char out[4096];
    struct { const char *cmd; const char *msg; } cases[] = {
        {"viz", "usage"},
        {"viz sideways", "unknown view 'sideways'"},
        {"viz latent-walk -o x.png", "no --model"},
        {"viz latent-walk --model '%s' -o x.jpg", "must end in .png"},
        {"viz latent-walk --model '%s'", "no -o"},
        {"viz latent-walk --model '%s' -o x.png --points 1", "--points"},
        {"viz flicker --model '%s' -o x.gif", "no input clip"},
        {"viz flicker nothing.gif --model '%s' -o x.gif", "has no ssr stage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, cases[i].cmd, plain);
        int rc = kt_run(out, sizeof out, "%s %s 2>&1", kt_bin(), cmd); /* each fails before writing */
        KT_CHECKF(rc != 0 && strstr(out, cases[i].msg), "'%s': rc %d, %s", cmd, rc, out);
        if (i > 0)
            KT_CHECKF(strchr(out, '\n') == out + strlen(out) - 1, "'%s': not one line: %s", cmd, out);
    }
}
