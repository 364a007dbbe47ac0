/* model_path.h — where the commands that run a model (generate, interpolate, extend, upscale)
 * find it when no --model is given. */
#ifndef KN_CLI_MODEL_PATH_H
#define KN_CLI_MODEL_PATH_H

#include <stddef.h>

/* The model folder: `given` (--model) when set; else $KINEMA_MODEL when set and not empty; else
 * the bundled model, models/default next to the binary's folder (build/kinema ->
 * models/default) or in the current folder. buf (n bytes) holds a path built here. Returns NULL
 * after printing one error line naming cmd when there is none. */
const char *kn_cli_model_path(const char *cmd, const char *given, char *buf, size_t n);

#endif
