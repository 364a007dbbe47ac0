/* fuzz_png.c — libFuzzer target for the PNG reader (from memory). Decoded clips are capped at
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
    kn_image im;
    if (kn_image_read_png_mem(data, size, &im) == KN_OK) {
        unsigned s = 0;
        for (size_t i = 0; i < (size_t)im.height * im.width * 3; i++) s += im.rgb[i];
        sink = s;
        kn_image_free(&im);
    }
    return 0;
}
