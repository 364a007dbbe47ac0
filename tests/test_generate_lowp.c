/* test_generate_lowp.c — `kinema generate --weights-type f16|bf16|q8` on the bundled model: the
 * video stays close to the f32 one (PSNR of the decoded frames) but is not the same bytes for the
 * lossy types, and a bad type is a one-line error. */
#include "kt.h"

#include "io/video.h"

#include <math.h>
#include <string.h>

static double psnr(const kn_video *a, const kn_video *b) {
    size_t n = (size_t)a->frames * a->height * a->width * 3;
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a->rgb[i] - b->rgb[i];
        se += d * d;
    }
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 * n / se);
}

KT_TEST(generate_weights_types_stay_close_to_f32) {
    static char out[1 << 14];
    const char *d = kt_tmpdir();
    static const char *types[4] = {"f32", "f16", "bf16", "q8"};
    static const double min_psnr[4] = {0, 60, 35, 35};
    kn_video v[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        char o[700];
        snprintf(o, sizeof o, "%s/%s.y4m", d, types[i]);
        int rc = kt_run(out, sizeof out, "%s generate -m models/default 'a small red circle moving left' --steps 6 "
                        "--sr-steps 2 --weights-type %s -o '%s'", kt_bin(), types[i], o);
        KT_CHECKF(rc == 0, "%s: %s", types[i], out);
        KT_OK(kn_video_read(o, NULL, &v[i]));
    }
    for (int i = 1; i < 4; i++) {
        KT_CHECK(v[i].frames == v[0].frames && v[i].width == v[0].width && v[i].height == v[0].height);
        double p = psnr(&v[0], &v[i]);
        printf("    %s vs f32: PSNR %.1f dB\n", types[i], p);
        KT_CHECKF(p >= min_psnr[i], "%s: PSNR %.1f dB against f32", types[i], p);
        if (i >= 2) /* bf16 and q8 round enough to change some bytes */
            KT_CHECKF(isfinite(p), "%s gave exactly the f32 video: the weights were not converted", types[i]);
    }
    for (int i = 0; i < 4; i++)
        kn_video_free(&v[i]);
    KT_CHECK(kt_run(out, sizeof out, "%s generate -m models/default x --weights-type q4 -o '%s/x.mp4'", kt_bin(), d) != 0 &&
             strstr(out, "q4"));
}
