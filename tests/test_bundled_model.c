/* test_bundled_model.c — the model shipped in models/default (the shapes-mav cascade) loads and
 * `kinema generate PROMPT` uses it when no --model is given: base, two frame interpolations and
 * the spatial SR, to 128x128, 32 frames at 16 fps. */
#include "kt.h"

#include "io/video.h"

#include <string.h>
#include <sys/stat.h>

KT_TEST(bundled_model_generates_without_model_option) {
    struct stat sb;
    KT_CHECKF(stat("models/default/model_index.json", &sb) == 0, "models/default is missing");
    char out[8192], o[700];
    snprintf(o, sizeof o, "%s/c.y4m", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "KINEMA_MODEL= %s generate 'a small red circle moving left' --steps 4 --sr-steps 2 -s 1 "
                    "-o '%s'",
                    kt_bin(), o);
    KT_CHECKF(rc == 0, "%s", out);
    kn_video v = {0};
    KT_OK(kn_video_read(o, NULL, &v));
    /* base 8 frames 64x64 at 4 fps -> 16 at 8 -> 32 at 16 fps -> 128x128 */
    KT_CHECKF(v.frames == 32 && v.width == 128 && v.height == 128 && fabs(v.fps - 16.0) < 1e-9, "%d frames %dx%d at %g fps",
              v.frames, v.width, v.height, v.fps);
    /* the picture is not empty: some pixels are well above the black background */
    int bright = 0;
    for (size_t i = 0; v.rgb && i < (size_t)v.frames * v.width * v.height * 3; i++) bright += v.rgb[i] > 100;
    KT_CHECK(bright > 0);
    kn_video_free(&v);
}
