/* video_av.c — MP4 (H.264) and WebM (VP9) through libavformat/libavcodec/libswscale, and a
 * reader for anything FFmpeg decodes. FFmpeg's own logging is silenced (AV_LOG_QUIET): every
 * failure comes back as one kn_fail() line naming the step and FFmpeg's error string. */
#include "io/video.h"

#include "core/core.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <string.h>

static const char *av_err(int e, char *buf, size_t n) {
    av_strerror(e, buf, n);
    return buf;
}

/* Encodes what the encoder has ready (frame NULL drains) and writes it to the muxer. */
static int encode_write(AVCodecContext *c, AVFormatContext *oc, AVStream *st, AVFrame *frame, AVPacket *pkt) {
    int r = avcodec_send_frame(c, frame);
    if (r < 0) return r;
    for (;;) {
        r = avcodec_receive_packet(c, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return r;
        av_packet_rescale_ts(pkt, c->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(oc, pkt);
        if (r < 0) return r;
    }
}

kn_status kn_av_write_file(const char *tmp, const char *path, const char *ext, const kn_video *v,
                           const kn_video_write_opts *o) {
    av_log_set_level(AV_LOG_QUIET);
    int webm = !strcmp(ext, "webm");
    const char *fmt = webm ? "webm" : !strcmp(ext, "mkv") ? "matroska" : !strcmp(ext, "mov") ? "mov" : "mp4";
    const AVCodec *codec = webm ? avcodec_find_encoder_by_name("libvpx-vp9") : avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(webm ? AV_CODEC_ID_VP8 : AV_CODEC_ID_H264);
    if (!codec) return kn_fail(KN_ERR_UNSUPPORTED, "'%s': this FFmpeg has no %s encoder", path, webm ? "VP9/VP8" : "H.264");
    /* yuv420p needs even sides: pad odd ones by replicating the last row/column */
    int W = v->width + (v->width & 1), H = v->height + (v->height & 1);
    AVRational fr = av_d2q(v->fps, 1000000);
    AVFormatContext *oc = NULL;
    AVCodecContext *c = NULL;
    AVFrame *frame = NULL;
    AVPacket *pkt = NULL;
    struct SwsContext *sws = NULL;
    uint8_t *pad = NULL;
    AVDictionary *copts = NULL, *mopts = NULL;
    char eb[128], num[32];
    kn_status st = KN_OK;
    int r, opened = 0, header = 0;
    const char *step = "";
#define AVCHK(expr, what)          \
    do {                           \
        step = what;               \
        if ((r = (expr)) < 0) goto av_fail; \
    } while (0)
    AVCHK(avformat_alloc_output_context2(&oc, NULL, fmt, tmp), "creating the container");
    AVStream *s = avformat_new_stream(oc, NULL);
    c = avcodec_alloc_context3(codec);
    frame = av_frame_alloc();
    pkt = av_packet_alloc();
    pad = malloc((size_t)W * H * 3);
    if (!s || !c || !frame || !pkt || !pad) {
        st = kn_fail(KN_ERR_NOMEM, "'%s': out of memory setting up the encoder", path);
        goto done;
    }
    c->width = W;
    c->height = H;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = av_inv_q(fr);
    c->framerate = fr;
    c->gop_size = 30;
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_SMPTE170M;
    c->thread_count = 2;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    int q = KN_MIN(KN_MAX(o->quality, 0), 100);
    if (codec->id == AV_CODEC_ID_H264) {
        snprintf(num, sizeof num, "%d", (int)lround((100 - q) * 0.4 + 10)); /* q 80 -> crf 18 */
        av_dict_set(&copts, "crf", num, 0);
        av_dict_set(&copts, "preset", "fast", 0);
    } else {
        snprintf(num, sizeof num, "%d", (int)lround((100 - q) * 0.5 + 15)); /* q 80 -> crf 25 */
        av_dict_set(&copts, "crf", num, 0);
        av_dict_set(&copts, "b", "0", 0);
        av_dict_set(&copts, "deadline", "good", 0);
        av_dict_set(&copts, "cpu-used", "5", 0);
        av_dict_set(&copts, "row-mt", "1", 0);
    }
    AVCHK(avcodec_open2(c, codec, &copts), "opening the encoder");
    AVCHK(avcodec_parameters_from_context(s->codecpar, c), "setting stream parameters");
    s->time_base = c->time_base;
    s->avg_frame_rate = fr;
    s->r_frame_rate = fr;
    AVCHK(avio_open(&oc->pb, tmp, AVIO_FLAG_WRITE), "opening the output");
    opened = 1;
    if (!webm) av_dict_set(&mopts, "movflags", "+faststart", 0);
    AVCHK(avformat_write_header(oc, &mopts), "writing the header");
    header = 1;
    frame->format = c->pix_fmt;
    frame->width = W;
    frame->height = H;
    AVCHK(av_frame_get_buffer(frame, 0), "allocating a frame");
    sws = sws_getContext(W, H, AV_PIX_FMT_RGB24, W, H, AV_PIX_FMT_YUV420P,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!sws) {
        st = kn_fail(KN_ERR_INTERNAL, "'%s': swscale cannot convert RGB24 to yuv420p", path);
        goto done;
    }
    {
        const int *coef = sws_getCoefficients(SWS_CS_ITU601);
        sws_setColorspaceDetails(sws, coef, 1, coef, 0, 0, 1 << 16, 1 << 16);
    }
    for (int t = 0; t < v->frames; t++) {
        const uint8_t *src = kn_video_frame(v, t);
        for (int y = 0; y < H; y++) {
            int sy = KN_MIN(y, v->height - 1);
            memcpy(pad + (size_t)y * W * 3, src + (size_t)sy * v->width * 3, (size_t)v->width * 3);
            if (W > v->width) memcpy(pad + ((size_t)y * W + W - 1) * 3, pad + ((size_t)y * W + W - 2) * 3, 3);
        }
        AVCHK(av_frame_make_writable(frame), "making a frame writable");
        const uint8_t *in[1] = {pad};
        int ls[1] = {W * 3};
        sws_scale(sws, in, ls, 0, H, frame->data, frame->linesize);
        frame->pts = t;
        AVCHK(encode_write(c, oc, s, frame, pkt), "encoding");
    }
    AVCHK(encode_write(c, oc, s, NULL, pkt), "flushing the encoder");
    AVCHK(av_write_trailer(oc), "writing the trailer");
    header = 0;
    goto done;
av_fail:
    st = kn_fail(KN_ERR_IO, "'%s': FFmpeg failed %s: %s", path, step, av_err(r, eb, sizeof eb));
done:
#undef AVCHK
    if (header) av_write_trailer(oc);
    if (opened) avio_closep(&oc->pb);
    avformat_free_context(oc);
    avcodec_free_context(&c);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    sws_freeContext(sws);
    av_dict_free(&copts);
    av_dict_free(&mopts);
    free(pad);
    return st;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    uint8_t *rgb;
    size_t nframes, capf, fbytes;
    int W, H;
    struct SwsContext *sws;
} av_sink;

static kn_status sink_frame(av_sink *k, AVFrame *f, const char *path) {
    size_t cap = kn_video_max_bytes();
    if (k->nframes >= KN_VIDEO_MAX_FRAMES || (k->nframes + 1) * k->fbytes > cap)
        return kn_fail(KN_ERR_NOMEM, "'%s': more than %zu frames of %dx%d (cap %d frames, %zu MiB)", path, k->nframes,
                       k->W, k->H, KN_VIDEO_MAX_FRAMES, cap >> 20);
    if (k->nframes == k->capf) {
        size_t nc = k->capf ? k->capf * 2 : 16;
        if (nc * k->fbytes > cap) nc = cap / k->fbytes;
        uint8_t *p = realloc(k->rgb, nc * k->fbytes);
        if (!p) return kn_fail(KN_ERR_NOMEM, "'%s': out of memory at frame %zu", path, k->nframes);
        k->rgb = p;
        k->capf = nc;
    }
    /* frames whose size changes mid-stream are scaled to the first frame's size */
    k->sws = sws_getCachedContext(k->sws, f->width, f->height, f->format, k->W, k->H, AV_PIX_FMT_RGB24,
                                  SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!k->sws) return kn_fail(KN_ERR_UNSUPPORTED, "'%s': cannot convert pixel format %d to RGB", path, f->format);
    int cs = f->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : f->colorspace == AVCOL_SPC_BT2020_NCL ? SWS_CS_BT2020 : SWS_CS_ITU601;
    const int *coef = sws_getCoefficients(cs);
    sws_setColorspaceDetails(k->sws, coef, f->color_range == AVCOL_RANGE_JPEG, coef, 1, 0, 1 << 16, 1 << 16);
    uint8_t *dst[1] = {k->rgb + k->nframes * k->fbytes};
    int ls[1] = {k->W * 3};
    sws_scale(k->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, ls);
    k->nframes++;
    return KN_OK;
}

kn_status kn_av_read_file(const char *path, int max_frames, kn_video *v) {
    av_log_set_level(AV_LOG_QUIET);
    memset(v, 0, sizeof *v);
    AVFormatContext *fc = NULL;
    AVCodecContext *dc = NULL;
    AVPacket *pkt = NULL;
    AVFrame *f = NULL;
    av_sink k = {0};
    char eb[128];
    kn_status st = KN_OK;
    int r = avformat_open_input(&fc, path, NULL, NULL);
    if (r < 0) return kn_fail(KN_ERR_FORMAT, "'%s': not a readable video: %s", path, av_err(r, eb, sizeof eb));
    if ((r = avformat_find_stream_info(fc, NULL)) < 0) {
        st = kn_fail(KN_ERR_FORMAT, "'%s': cannot read stream info: %s", path, av_err(r, eb, sizeof eb));
        goto done;
    }
    const AVCodec *dec = NULL;
    int si = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, &dec, 0);
    if (si < 0 || !dec) {
        st = kn_fail(KN_ERR_FORMAT, "'%s': no decodable video stream", path);
        goto done;
    }
    AVStream *s = fc->streams[si];
    dc = avcodec_alloc_context3(dec);
    pkt = av_packet_alloc();
    f = av_frame_alloc();
    if (!dc || !pkt || !f) {
        st = kn_fail(KN_ERR_NOMEM, "'%s': out of memory", path);
        goto done;
    }
    avcodec_parameters_to_context(dc, s->codecpar);
    dc->thread_count = 1;
    if ((r = avcodec_open2(dc, dec, NULL)) < 0) {
        st = kn_fail(KN_ERR_FORMAT, "'%s': cannot open the %s decoder: %s", path, dec->name, av_err(r, eb, sizeof eb));
        goto done;
    }
    k.W = dc->width;
    k.H = dc->height;
    if (k.W <= 0 || k.H <= 0 || k.W > KN_VIDEO_MAX_DIM || k.H > KN_VIDEO_MAX_DIM) {
        st = kn_fail(KN_ERR_FORMAT, "'%s': frame size %dx%d is outside [1, %d]", path, k.W, k.H, KN_VIDEO_MAX_DIM);
        goto done;
    }
    k.fbytes = (size_t)k.W * k.H * 3;
    AVRational fr = s->avg_frame_rate.num > 0 && s->avg_frame_rate.den > 0 ? s->avg_frame_rate : s->r_frame_rate;
    double fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 25.0;
    if (!(fps > 0 && fps <= 1000)) fps = 25.0;
    int eof = 0;
    while (st == KN_OK && !(max_frames > 0 && (int)k.nframes >= max_frames)) {
        if (!eof) {
            r = av_read_frame(fc, pkt);
            if (r == AVERROR_EOF) {
                eof = 1;
                avcodec_send_packet(dc, NULL);
            } else if (r < 0) {
                st = kn_fail(KN_ERR_FORMAT, "'%s': read error: %s", path, av_err(r, eb, sizeof eb));
                break;
            } else {
                if (pkt->stream_index == si) r = avcodec_send_packet(dc, pkt);
                else r = 0;
                av_packet_unref(pkt);
                if (r < 0 && r != AVERROR(EAGAIN)) {
                    st = kn_fail(KN_ERR_FORMAT, "'%s': decode error: %s", path, av_err(r, eb, sizeof eb));
                    break;
                }
            }
        }
        for (;;) {
            r = avcodec_receive_frame(dc, f);
            if (r == AVERROR(EAGAIN)) break;
            if (r == AVERROR_EOF) goto finished;
            if (r < 0) {
                st = kn_fail(KN_ERR_FORMAT, "'%s': decode error: %s", path, av_err(r, eb, sizeof eb));
                break;
            }
            st = sink_frame(&k, f, path);
            av_frame_unref(f);
            if (st != KN_OK || (max_frames > 0 && (int)k.nframes >= max_frames)) break;
        }
    }
finished:
    if (st == KN_OK && k.nframes == 0) st = kn_fail(KN_ERR_FORMAT, "'%s': no frames decoded", path);
    if (st == KN_OK) {
        v->frames = (int)k.nframes;
        v->height = k.H;
        v->width = k.W;
        v->fps = fps;
        v->rgb = k.rgb;
        k.rgb = NULL;
    }
done:
    free(k.rgb);
    sws_freeContext(k.sws);
    av_frame_free(&f);
    av_packet_free(&pkt);
    avcodec_free_context(&dc);
    avformat_close_input(&fc);
    return st;
}
