/* fuzz_gif.c — libFuzzer target for the GIF reader (from memory). Decoded clips are capped at
 * 64 MiB so that a hostile header cannot make the fuzzer run out of memory. */
#include "io/image.h"
#include "io/video.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink; /* keeps the pixel reads from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        kn_video_set_max_bytes((size_t)64 << 20);
        init = 1;
    }
    kn_video v;
    if (kn_video_read_gif_mem(data, size, &v) == KN_OK) {
        /* touch every pixel so that a wrong size shows up under ASan */
        unsigned s = 0;
        for (size_t i = 0; i < (size_t)v.frames * v.height * v.width * 3; i++) s += v.rgb[i];
        sink = s;
        kn_video_free(&v);
    }
    return 0;
}
