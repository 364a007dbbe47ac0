/* fuzz_config.c — libFuzzer target: parse a JSON config from memory and call every typed getter
 * on every top-level key (and on a few diffusers key names). */
#include "io/config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void probe(const kn_config *c, const char *key) {
    int64_t iv, ia[8];
    double fv, fa[8];
    int bv, n;
    const char *sv, *sa[8];
    char buf[96];
    kn_config_int(c, key, 0, &iv);
    kn_config_float(c, key, 0, &fv);
    kn_config_bool(c, key, 0, &bv);
    kn_config_str(c, key, "", &sv);
    kn_config_ints(c, key, ia, 8, &n);
    kn_config_floats(c, key, fa, 8, &n);
    kn_config_strs(c, key, sa, 8, &n);
    kn_config_value_str(c, key, buf, sizeof buf);
    if (strlen(buf) >= sizeof buf)
        __builtin_trap();
    kn_config_has(c, key);
    kn_config_type(c, key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kn_config *c = kn_config_parse((const char *)data, size, "fuzz/config.json");
    if (!c) {
        const char *m = kn_last_error();
        if (!m[0] || strchr(m, '\n'))
            __builtin_trap();
        return 0;
    }
    for (int i = 0; i < kn_config_count(c); i++)
        probe(c, kn_config_key(c, i));
    static const char *known[] = {"block_out_channels", "layers_per_block", "down_block_types",
                                  "lambda_min_clipped", "_class_name", "attention_head_dim"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        probe(c, known[i]);
    kn_config_free(c);
    return 0;
}
