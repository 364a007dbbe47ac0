/* folder_data.h — users' own captioned clips as a training data source.
 *
 *     kn_folder_source *src = kn_folder_source_open("my_clips", 64, 16, 8);
 *     if (!src) { ... kn_last_error() ... }
 *     kn_train_data d = {.size = 64, .frames = 16, .fps = 8, ...,
 *                        .source = kn_folder_source_clip, .source_user = src};
 *     ...
 *     kn_folder_source_close(src);
 *
 * The folder (not recursive: sub-folders and hidden files are ignored) holds videos (.mp4 .webm
 * .gif .webp .y4m .mov .mkv .avi .m4v — anything kn_video_read reads by those names) and images
 * (.png .jpg .jpeg), each with a caption in a .txt file of the same stem beside it ("cat.mp4" ->
 * "cat.txt"). Media files without a caption, and names containing '%' (kn_video_read would take
 * them for a frame pattern), are skipped and counted. The items are sorted by file name (byte
 * order), so item i is the same file on every machine; only the list is kept, the files are read
 * on demand.
 *
 * Clip number `index` is item index % count:
 *   - a video is read resampled in time to `fps` (nearest source frame), center-cropped to a
 *     square (the middle min(H,W) x min(H,W) window), resized to size x size (area average when
 *     shrinking, bilinear when growing), and its first `frames` frames are taken; a clip shorter
 *     than that repeats its last frame;
 *   - an image is cropped and resized the same way and repeated `frames` times
 *     (kn_folder_source_is_image tells them apart, so the trainer can mask temporal layers).
 * Pixels become floats x * 2/255 - 1 in [-1, 1], laid out (3, frames, size, size). The caption is
 * the .txt file's text with every run of whitespace (newlines included) turned into one space and
 * the ends trimmed; one longer than cap - 1 bytes is cut at a UTF-8 character boundary. An empty
 * caption file gives an empty caption (an unconditional sample).
 *
 * Thread safety: a source is immutable after open; the callback keeps no state, but it resizes
 * with the shared thread pool, so call it from one thread at a time (as every compute function). */
#ifndef KN_IO_FOLDER_DATA_H
#define KN_IO_FOLDER_DATA_H

#include "kinema.h"

#include <stddef.h>

typedef struct kn_folder_source kn_folder_source;

/* Scans dir. size: 8..4096 pixels, frames: 1..1024, fps: 1..240. Returns NULL (with a message) when
 * dir cannot be read, the arguments are out of range, or no media file in it has a caption. */
kn_folder_source *kn_folder_source_open(const char *dir, int size, int frames, int fps);
void kn_folder_source_close(kn_folder_source *src);

int kn_folder_source_count(const kn_folder_source *src);   /* captioned media files */
int kn_folder_source_skipped(const kn_folder_source *src); /* media files skipped (no caption, '%') */
/* File name (no directory) of item index % count. */
const char *kn_folder_source_name(const kn_folder_source *src, uint64_t index);
/* 1 if item index % count is a still image, else 0. */
int kn_folder_source_is_image(const kn_folder_source *src, uint64_t index);

/* The trainer's kn_clip_source_fn (src/train/trainer.h); user is the kn_folder_source.
 * clip: (3, frames, size, size) floats; caption: cap bytes (cap >= 1). An unreadable or
 * undecodable file fails with a message naming it (clip and caption are then unspecified). */
kn_status kn_folder_source_clip(uint64_t index, float *clip, char *caption, size_t cap, void *user);

#endif
