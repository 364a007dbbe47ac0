/* kt.h — kinema's tiny test framework.
 *
 *     KT_TEST(philox_known_answers) {
 *         KT_CHECK(x == 3);
 *         KT_NEAR(y, 0.5, 1e-6);
 *         KT_OK(kn_tensor_alloc(...));      // prints kn_last_error() on failure
 *     }
 *
 * Tests register themselves at load time; build/kinema-tests [FILTER...] runs every test whose
 * name contains one of the filters and ends with the line "N passed, N failed". A failed check
 * marks the test failed and the test goes on (so one run shows every broken check). */
#ifndef KT_H
#define KT_H

#include "kinema.h"

#include <math.h>
#include <stdio.h>

typedef void (*kt_fn)(void);
void kt_register(const char *name, const char *file, kt_fn fn);
void kt_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kt_current_failed(void);

/* Path of the shared fixtures (env KINEMA_FIXTURES, else ../shared/fixtures). */
const char *kt_fixtures(void);
/* Path of the kinema binary (env KINEMA_BIN, else build/kinema). */
const char *kt_bin(void);
/* A fresh empty temporary directory for this test (removed at exit when the test passed). */
const char *kt_tmpdir(void);
/* Runs a shell command; returns its exit status; captures up to n-1 bytes of stdout+stderr. */
int kt_run(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A toy tokenizer for trainer tests (the kn_tokenize_fn shape): the bytes of the text, then eos
 * (255) padding to len. */
static inline kn_status kt_toy_tokenize(const char *text, int32_t *ids, int len, void *user) {
    (void)user;
    int n = 0;
    for (; text[n] && n < len - 1; n++)
        ids[n] = 1 + (unsigned char)text[n] % 250;
    for (; n < len; n++)
        ids[n] = 255;
    return KN_OK;
}

#define KT_TEST(name)                                                   \
    static void kt_test_##name(void);                                   \
    __attribute__((constructor)) static void kt_reg_##name(void) {      \
        kt_register(#name, __FILE__, kt_test_##name);                   \
    }                                                                   \
    static void kt_test_##name(void)

#define KT_CHECK(c)                                        \
    do {                                                   \
        if (!(c))                                          \
            kt_fail(__FILE__, __LINE__, "check failed: %s", #c); \
    } while (0)

#define KT_CHECKF(c, ...)                            \
    do {                                             \
        if (!(c))                                    \
            kt_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define KT_OK(expr)                                                                          \
    do {                                                                                     \
        kn_status kt_st_ = (expr);                                                           \
        if (kt_st_ != KN_OK)                                                                 \
            kt_fail(__FILE__, __LINE__, "%s returned %d: %s", #expr, (int)kt_st_, kn_last_error()); \
    } while (0)

#define KT_NEAR(a, b, tol)                                                                   \
    do {                                                                                     \
        double kt_a_ = (double)(a), kt_b_ = (double)(b);                                     \
        if (!(fabs(kt_a_ - kt_b_) <= (tol)))                                                 \
            kt_fail(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g", #a, kt_a_, #b, \
                    kt_b_, fabs(kt_a_ - kt_b_), (double)(tol));                              \
    } while (0)

/* max |a-b| over n floats */
double kt_max_abs_diff(const float *a, const float *b, int64_t n);
/* The whole file, NUL-terminated (malloc'ed; free it), and its length in *len when len is not
 * NULL; NULL when it cannot be read. */
char *kt_slurp(const char *path, long *len);
/* A JSON file parsed with cJSON (free with cJSON_Delete); a test failure and NULL when it cannot
 * be read or parsed. kt_json_num: o[k] as a number, NAN when absent or not a number. */
struct cJSON;
struct cJSON *kt_load_json(const char *path);
double kt_json_num(const struct cJSON *o, const char *k);
/* The JSON file minus its top-level "seconds" (timing), printed unformatted for byte comparison
 * (malloc'ed); NULL when it cannot be read. */
char *kt_json_without_seconds(const char *path);
double kt_max_abs(const float *a, int64_t n);

#endif
