/* test_cli_generate.c — `kinema generate` end to end on the fixture models laid out as a
 * diffusers pipeline folder: the frames equal diffusers' uint8 frames; bad input fails cleanly. */
#include "kt.h"

#include "io/safetensors.h"
#include "io/video.h"

#include <string.h>
#include <sys/stat.h>

static const char *pipe_dir(void) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/pipe", kt_tmpdir());
    char out[4096];
    int rc = kt_run(out, sizeof out, "KINEMA_FIXTURES='%s' scripts/fixture-pipeline '%s'", kt_fixtures(), dir);
    KT_CHECKF(rc == 0, "fixture-pipeline failed: %s", out);
    return dir;
}

KT_TEST(cli_generate_reproduces_diffusers_frames) {
    const char *dir = pipe_dir();
    char out[8192], frames[700];
    snprintf(frames, sizeof frames, "%s/frames/", kt_tmpdir());
    int rc = kt_run(out, sizeof out,
                    "%s generate -m '%s' -p 'a panda playing a guitar on a boat, photorealistic' "
                    "-n 'blurry, low quality, watermark' --steps 4 -g 9 --latents '%s/diffusers/pipeline_t2v/"
                    "pipeline_io.safetensors' --latents-tensor initial_latents -o '%s' --threads 2",
                    kt_bin(), dir, kt_fixtures(), frames);
    KT_CHECKF(rc == 0, "generate failed (%d): %s", rc, out);
    KT_CHECK(strstr(out, "memory:") != NULL);
    kn_video v = {0};
    KT_OK(kn_video_read(frames, NULL, &v));
    char ref[700];
    snprintf(ref, sizeof ref, "%s/diffusers/pipeline_t2v/pipeline_io.safetensors", kt_fixtures());
    kn_safetensors *st = kn_st_open(ref);
    kn_tensor fr;
    KT_CHECK(st && kn_st_get(st, "frames_uint8", &fr) == KN_OK);
    if (st && v.rgb && v.frames == 4 && v.width == 64 && v.height == 64) {
        int maxd = 0;
        for (int i = 0; i < 4 * 64 * 64 * 3; i++) {
            int d = abs((int)v.rgb[i] - (int)((uint8_t *)fr.data)[i]);
            if (d > maxd) maxd = d;
        }
        KT_CHECKF(maxd <= 1, "frames differ from diffusers' by %d", maxd);
    } else {
        KT_CHECKF(0, "read back %d frames %dx%d", v.frames, v.width, v.height);
    }
    if (st) kn_st_close(st);
    kn_video_free(&v);
}

KT_TEST(cli_generate_same_video_for_any_thread_count) {
    const char *dir = pipe_dir();
    char out[4096], a[700], b[700];
    snprintf(a, sizeof a, "%s/a.y4m", kt_tmpdir());
    snprintf(b, sizeof b, "%s/b.y4m", kt_tmpdir());
    int rc1 = kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 3 --frames 3 -H 48 -W 40 -s 7 "
                     "--scheduler dpmpp_2m -o '%s' -t 1", kt_bin(), dir, a);
    KT_CHECKF(rc1 == 0, "%s", out);
    int rc2 = kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 3 --frames 3 -H 48 -W 40 -s 7 "
                     "--scheduler dpmpp_2m -o '%s' -t 2", kt_bin(), dir, b);
    KT_CHECKF(rc2 == 0, "%s", out);
    KT_CHECK(kt_run(out, sizeof out, "cmp '%s' '%s'", a, b) == 0);
    /* another seed gives another video */
    KT_CHECK(kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 3 --frames 3 -H 48 -W 40 -s 8 "
                    "--scheduler dpmpp_2m -o '%s' -t 2", kt_bin(), dir, b) == 0);
    KT_CHECK(kt_run(out, sizeof out, "cmp -s '%s' '%s'", a, b) != 0);
}

KT_TEST(cli_generate_bad_input_fails_cleanly) {
    const char *dir = pipe_dir();
    char out[4096], o[700];
    snprintf(o, sizeof o, "%s/never.mp4", kt_tmpdir());
    struct { const char *args; const char *msg; } cases[] = {
        {"-m /nonexistent 'x'", "/nonexistent"},
        {"-m PIPE 'x' --steps 0", "--steps"},
        {"-m PIPE 'x' --steps abc", "--steps"},
        {"-m PIPE 'x' -H 60", "multiples of 8"},
        {"-m PIPE 'x' --frobnicate", "unknown option"},
        {"-m PIPE", "no prompt"},
        {"-m PIPE 'x' --scheduler pndm", "unknown scheduler"},
        {"-m PIPE 'x' --latents /nonexistent.safetensors", "nonexistent"},
        {"-m PIPE 'x' -g -1", "--guidance"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024];
        const char *p = strstr(cases[i].args, "PIPE");
        if (p)
            snprintf(args, sizeof args, "%.*s%s%s", (int)(p - cases[i].args), cases[i].args, dir, p + 4);
        else
            snprintf(args, sizeof args, "%s", cases[i].args);
        /* the case's options come last, so that they override the small defaults given first */
        int rc = kt_run(out, sizeof out, "%s generate --frames 2 -H 16 -W 16 -o '%s' %s", kt_bin(), o, args);
        KT_CHECKF(rc != 0, "case %zu (%s) succeeded", i, cases[i].args);
        KT_CHECKF(strstr(out, cases[i].msg) != NULL, "case %zu: message '%s' lacks '%s'", i, out, cases[i].msg);
        /* exactly one error line, and it is the last line */
        int nerr = 0;
        for (const char *q = out; (q = strstr(q, "kinema: ")); q++)
            if (q == out || q[-1] == '\n') nerr++;
        const char *last = strstr(out, "kinema: ");
        KT_CHECKF(nerr == 1 && last && strchr(last, '\n') == strrchr(out, '\n'), "case %zu: not one error line: %s", i, out);
        struct stat sb;
        KT_CHECKF(stat(o, &sb) != 0, "case %zu left %s behind", i, o);
    }
    /* an unwritable output leaves nothing behind and names the path */
    int rc = kt_run(out, sizeof out, "%s generate -m '%s' x --steps 1 --frames 2 -H 16 -W 16 -o /nonexistent/dir/o.mp4",
                    kt_bin(), dir);
    KT_CHECK(rc != 0 && strstr(out, "/nonexistent/dir") != NULL);
}
