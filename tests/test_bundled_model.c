/* test_bundled_model.c — the model shipped in models/default loads and `kinema generate PROMPT`
 * uses it when no --model is given, with the frame count and rate it was trained at. */
#include "kt.h"

#include "io/video.h"

#include <string.h>
#include <sys/stat.h>

KT_TEST(bundled_model_generates_without_model_option) {
    struct stat sb;
    KT_CHECKF(stat("models/default/model_index.json", &sb) == 0, "models/default is missing");
    char out[8192], o[700];
    snprintf(o, sizeof o, "%s/c.y4m", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "KINEMA_MODEL= %s generate 'a small red circle moving left' --steps 8 -s 1 -o '%s'",
                    kt_bin(), o);
    KT_CHECKF(rc == 0, "%s", out);
    kn_video v = {0};
    KT_OK(kn_video_read(o, NULL, &v));
    /* the tiny recipe: 32x32, 8 frames at 4 fps */
    KT_CHECKF(v.frames == 8 && v.width == 32 && v.height == 32 && fabs(v.fps - 4.0) < 1e-9, "%d frames %dx%d at %g fps",
              v.frames, v.width, v.height, v.fps);
    /* the picture is not empty: some pixels are well above the black background */
    int bright = 0;
    for (size_t i = 0; v.rgb && i < (size_t)v.frames * v.width * v.height * 3; i++) bright += v.rgb[i] > 100;
    KT_CHECK(bright > 0);
    kn_video_free(&v);
}
