/* fuzz_safetensors.c — libFuzzer target: parse a safetensors image from memory, then read every
 * tensor (zero-copy view, F32 conversion) and the metadata. Any crash, leak or UB is a finding. */
#include "io/safetensors.h"
#include "io/safetensors_info.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kn_safetensors *st = kn_st_open_memory(data, size, "fuzz.safetensors");
    if (!st) {
        /* every failure leaves a one-line message */
        const char *m = kn_last_error();
        if (!m[0] || strchr(m, '\n'))
            __builtin_trap();
        return 0;
    }
    volatile uint64_t sink = 0;
    for (int i = 0; i < kn_st_count(st); i++) {
        kn_st_info info;
        if (kn_st_info_at(st, i, &info) != KN_OK)
            __builtin_trap();
        if (kn_st_find(st, info.name) != i)
            __builtin_trap();
        kn_tensor t;
        if (kn_st_get(st, info.name, &t) == KN_OK) {
            size_t nb = kn_tensor_nbytes(&t);
            if (nb != info.end - info.begin)
                __builtin_trap();
            const uint8_t *p = t.data;
            for (size_t k = 0; k < nb; k++) /* touch every byte: ASan checks the bounds */
                sink += p[k];
        }
        kn_tensor f;
        if (kn_st_get_f32(st, info.name, NULL, &f) == KN_OK) {
            const float *y = f.data;
            for (int64_t k = 0; k < kn_tensor_numel(&f); k++)
                sink += (uint64_t)(y[k] == y[k]);
            kn_tensor_free(&f);
        }
    }
    for (int i = 0; i < kn_st_metadata_count(st); i++) {
        const char *k = kn_st_metadata_key(st, i);
        const char *v = kn_st_metadata(st, k);
        sink += strlen(k) + (v ? strlen(v) : 0);
    }
    kn_st_close(st);
    return 0;
}
