/* video_av.c — MP4/WebM through libavformat/libavcodec/libswscale (placeholder). */
#include "io/video.h"

kn_status kn_av_write_file(const char *tmp, const char *path, const char *ext, const kn_video *v,
                           const kn_video_write_opts *o) {
    (void)tmp; (void)ext; (void)v; (void)o;
    return kn_fail(KN_ERR_UNSUPPORTED, "'%s': ffmpeg output not built yet", path);
}
kn_status kn_av_read_file(const char *path, int max_frames, kn_video *v) {
    (void)max_frames; (void)v;
    return kn_fail(KN_ERR_UNSUPPORTED, "'%s': ffmpeg input not built yet", path);
}
