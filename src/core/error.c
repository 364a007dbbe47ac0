/* error.c — per-thread error messages. */
#include "core.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char kn_err_buf[512];

const char *kn_last_error(void) { return kn_err_buf; }

void kn_clear_error(void) { kn_err_buf[0] = '\0'; }

kn_status kn_fail(kn_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kn_err_buf, sizeof kn_err_buf, fmt, ap);
    va_end(ap);
    /* a message is one line */
    for (char *p = kn_err_buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return st;
}
