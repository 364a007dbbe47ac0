/* cmd_convert.c — `kinema convert IN -o OUT [--fps F] [--size WxH] ...`: reads any supported
 * video (or image / PNG sequence) and writes any supported format, chosen by OUT's name. */
#include "cli/cli.h"
#include "io/video.h"

#include <stdio.h>
#include <string.h>

static void convert_usage(FILE *f) {
    fprintf(f,
            "usage: kinema convert IN -o OUT [--fps F] [--size WxH] [--frames N] [--quality Q]\n"
            "                      [--dither] [--y4m-420] [--lossless] [--cols N]\n"
            "  IN   .mp4 .webm .mkv ... (FFmpeg), .gif, .webp, .y4m, .png/.jpg, DIR/ or NAME%%04d.png\n"
            "  OUT  .mp4 (H.264) .webm (VP9) .gif .webp .y4m, NAME.sheet.png (contact sheet),\n"
            "       NAME%%04d.png or DIR/ (one PNG per frame)\n"
            "  --fps F      resample in time to F frames/s (nearest frame)\n"
            "  --size WxH   resize (area average when shrinking, bilinear when growing)\n"
            "  --frames N   keep at most N frames\n"
            "  --quality Q  0..100 for mp4/webm/webp (default 80)\n"
            "  --dither     ordered (Bayer 4x4) dithering for GIF\n"
            "  --y4m-420    write Y4M as C420jpeg instead of C444\n"
            "  --lossless   lossless WebP\n"
            "  --cols N     columns of a contact sheet\n");
}

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    kn_video_read_opts ro = kn_video_read_default_opts();
    kn_video_write_opts wo = kn_video_write_default_opts();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            convert_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!val) return kn_cli_error("option %s needs a value", a);
            out = val;
            i++;
        } else if (!strcmp(a, "--fps")) {
            if (!kn_cli_float(a, val, &ro.fps)) return 1;
            if (!(ro.fps > 0 && ro.fps <= 1000)) return kn_cli_error("option --fps: %g is not in (0, 1000]", ro.fps);
            i++;
        } else if (!strcmp(a, "--size")) {
            int w = 0, h = 0;
            char tail;
            if (!val || sscanf(val, "%dx%d%c", &w, &h, &tail) != 2 || w <= 0 || h <= 0 || w > KN_VIDEO_MAX_DIM ||
                h > KN_VIDEO_MAX_DIM)
                return kn_cli_error("option --size: '%s' is not WxH with sides in [1, %d]", val ? val : "",
                                    KN_VIDEO_MAX_DIM);
            ro.width = w;
            ro.height = h;
            i++;
        } else if (!strcmp(a, "--frames")) {
            if (!kn_cli_int(a, val, 1, KN_VIDEO_MAX_FRAMES, &l)) return 1;
            ro.max_frames = (int)l;
            i++;
        } else if (!strcmp(a, "--quality")) {
            if (!kn_cli_int(a, val, 0, 100, &l)) return 1;
            wo.quality = (int)l;
            i++;
        } else if (!strcmp(a, "--cols")) {
            if (!kn_cli_int(a, val, 1, 4096, &l)) return 1;
            wo.sheet_cols = (int)l;
            i++;
        } else if (!strcmp(a, "--dither")) {
            wo.dither = 1;
        } else if (!strcmp(a, "--y4m-420")) {
            wo.y4m_420 = 1;
        } else if (!strcmp(a, "--lossless")) {
            wo.webp_lossless = 1;
        } else if (a[0] == '-' && a[1]) {
            return kn_cli_error("convert: unknown option '%s' (try `kinema convert --help`)", a);
        } else if (!in) {
            in = a;
        } else {
            return kn_cli_error("convert: more than one input ('%s' and '%s')", in, a);
        }
    }
    if (!in || !out) {
        convert_usage(stderr);
        return 2;
    }
    kn_video v;
    if (kn_video_read(in, &ro, &v) != KN_OK) return kn_cli_error("%s", kn_last_error());
    const char *dot = strrchr(out, '.');
    if (dot && (!strcasecmp(dot, ".mp4") || !strcasecmp(dot, ".webm")) && ((v.width | v.height) & 1))
        fprintf(stderr, "kinema: note: %dx%d has an odd side; yuv420p output is padded to %dx%d\n", v.width,
                v.height, v.width + (v.width & 1), v.height + (v.height & 1));
    kn_status st = kn_video_write(out, &v, &wo);
    if (st != KN_OK) {
        kn_video_free(&v);
        return kn_cli_error("%s", kn_last_error());
    }
    fprintf(stderr, "kinema: wrote %s: %d frames of %dx%d at %g fps\n", out, v.frames, v.width, v.height, v.fps);
    kn_video_free(&v);
    return 0;
}

KN_CLI_COMMAND(convert, "convert", "convert between video formats (mp4, webm, gif, webp, y4m, png)", cmd_convert)
