/* video_webp.c — animated WebP (placeholder). */
#include "io/video.h"

kn_status kn_webp_write_file(const char *tmp, const char *path, const kn_video *v, const kn_video_write_opts *o) {
    (void)tmp; (void)v; (void)o;
    return kn_fail(KN_ERR_UNSUPPORTED, "'%s': webp output not built yet", path);
}
kn_status kn_video_read_webp_mem(const uint8_t *data, size_t n, kn_video *v) {
    (void)data; (void)n; (void)v;
    return kn_fail(KN_ERR_UNSUPPORTED, "webp input not built yet");
}
