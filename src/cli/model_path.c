/* model_path.c — the default model lookup shared by the commands that run a model. */
#include "cli/model_path.h"

#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *kn_cli_model_path(const char *cmd, const char *given, char *buf, size_t n) {
    if (given)
        return given;
    const char *env = getenv("KINEMA_MODEL");
    if (env && *env)
        return env;
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    struct stat sb;
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
        snprintf(buf, n, "%s/../models/default/model_index.json", exe);
        if (stat(buf, &sb) == 0) {
            snprintf(buf, n, "%s/../models/default", exe);
            return buf;
        }
    }
    if (stat("models/default/model_index.json", &sb) == 0) {
        snprintf(buf, n, "models/default");
        return buf;
    }
    kn_cli_error("%s: no --model given and no bundled model in models/default", cmd);
    return NULL;
}
