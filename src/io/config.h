/* config.h — JSON configs (diffusers config.json, model_index.json, scheduler_config.json): a thin
 * layer over cJSON with typed getters, defaults and one-line errors.
 *
 *     kn_config *c = kn_config_load("unet/config.json");
 *     int64_t lpb; int64_t ch[8]; int nch;
 *     KN_TRY(kn_config_int(c, "layers_per_block", 2, &lpb));
 *     KN_TRY(kn_config_ints(c, "block_out_channels", ch, 8, &nch));
 *     kn_config_free(c);
 *
 * Getters look up top-level keys. A missing key or a JSON null gives the default; a value of the
 * wrong type is an error naming the file and the key:
 *     "unet/config.json: 'layers_per_block' must be an integer, got string". */
#ifndef KN_CONFIG_H
#define KN_CONFIG_H

#include "core/core.h"

typedef struct kn_config kn_config;

/* Reads and parses a JSON file whose top level must be an object. NULL + message on failure. */
kn_config *kn_config_load(const char *path);
/* The same from memory; `name` stands for the path in messages. */
kn_config *kn_config_parse(const char *text, size_t len, const char *name);
void kn_config_free(kn_config *c);
const char *kn_config_path(const kn_config *c);

/* Top-level keys in file order. */
int kn_config_count(const kn_config *c);
const char *kn_config_key(const kn_config *c, int i);
/* 1 when key is present and not null. */
int kn_config_has(const kn_config *c, const char *key);
/* JSON type name of the value ("string", "number", "bool", "null", "array", "object"; "missing"). */
const char *kn_config_type(const kn_config *c, const char *key);

/* An integral number (2, 2.0; not 2.5 or "2"). */
kn_status kn_config_int(const kn_config *c, const char *key, int64_t def, int64_t *out);
/* A number, or a string holding one: "-inf", "inf", "nan", "1e-4" (diffusers writes non-finite
 * floats as strings, e.g. "lambda_min_clipped": "-inf"). */
kn_status kn_config_float(const kn_config *c, const char *key, double def, double *out);
kn_status kn_config_bool(const kn_config *c, const char *key, int def, int *out);
/* The string stays owned by the config. */
kn_status kn_config_str(const kn_config *c, const char *key, const char *def, const char **out);
/* An array of integers, up to max of them (more is an error); *n gets the count. A single integer
 * is accepted as a one-element array (diffusers allows int-or-tuple, e.g. attention_head_dim).
 * Missing or null: *n = 0. */
kn_status kn_config_ints(const kn_config *c, const char *key, int64_t *out, int max, int *n);
kn_status kn_config_floats(const kn_config *c, const char *key, double *out, int max, int *n);
/* An array of strings (owned by the config). Missing or null: *n = 0. */
kn_status kn_config_strs(const kn_config *c, const char *key, const char **out, int max, int *n);

/* A compact one-line JSON rendering of the value of key, cut to n-1 bytes ("" when missing). */
char *kn_config_value_str(const kn_config *c, const char *key, char *buf, size_t n);

#endif
