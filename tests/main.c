/* main.c — the test runner: runs registered tests, prints "N passed, N failed". */
#include "kt.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct { const char *name, *file; kt_fn fn; } kt_case;
static kt_case *cases;
static int ncases, capcases;
static int cur_failed, cur_nfail_msgs;
static const char *cur_name;
static char cur_tmp[512];

void kt_register(const char *name, const char *file, kt_fn fn) {
    if (ncases == capcases) {
        capcases = capcases ? capcases * 2 : 64;
        cases = realloc(cases, (size_t)capcases * sizeof *cases);
        if (!cases) abort();
    }
    cases[ncases++] = (kt_case){name, file, fn};
}

void kt_fail(const char *file, int line, const char *fmt, ...) {
    cur_failed = 1;
    if (++cur_nfail_msgs > 20) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
}

int kt_current_failed(void) { return cur_failed; }

const char *kt_fixtures(void) {
    const char *e = getenv("KINEMA_FIXTURES");
    return e && *e ? e : "../shared/fixtures";
}

const char *kt_bin(void) {
    const char *e = getenv("KINEMA_BIN");
    return e && *e ? e : "build/kinema";
}

const char *kt_tmpdir(void) {
    if (!cur_tmp[0]) {
        snprintf(cur_tmp, sizeof cur_tmp, "/tmp/kinema-test-%s-XXXXXX", cur_name);
        if (!mkdtemp(cur_tmp)) { perror("mkdtemp"); abort(); }
    }
    return cur_tmp;
}

int kt_run(char *out, size_t n, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t k = 0;
    char tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, p)) > 0) {
        if (out && k + 1 < n) {
            size_t c = (r < n - 1 - k ? r : n - 1 - k);
            memcpy(out + k, tmp, c);
            k += c;
        }
    }
    if (out && n) out[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

char *kt_slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = 0;
    if (len)
        *len = s ? n : 0;
    fclose(f);
    return s;
}

cJSON *kt_load_json(const char *path) {
    char *s = kt_slurp(path, NULL);
    KT_CHECKF(s != NULL, "cannot read %s", path);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    KT_CHECKF(!s || j, "%s does not parse as JSON", path);
    free(s);
    return j;
}

double kt_json_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

char *kt_json_without_seconds(const char *path) {
    cJSON *j = kt_load_json(path);
    if (!j)
        return NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(j, "seconds");
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

double kt_max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

double kt_max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_case(const void *a, const void *b) {
    const kt_case *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0, list = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    qsort(cases, (size_t)ncases, sizeof *cases, cmp_case);
    for (int a = 1; a < argc; a++) if (!strcmp(argv[a], "--list")) list = 1;
    char failed_names[8192] = "";
    for (int i = 0; i < ncases; i++) {
        int want = argc < 2 || list;
        for (int a = 1; a < argc; a++)
            if (argv[a][0] != '-' && strstr(cases[i].name, argv[a])) want = 1;
        if (!want) continue;
        if (list) { printf("%s\n", cases[i].name); continue; }
        cur_failed = 0; cur_nfail_msgs = 0; cur_name = cases[i].name; cur_tmp[0] = '\0';
        kn_set_threads(1);
        kn_clear_error();
        double t0 = now();
        cases[i].fn();
        double dt = now() - t0;
        if (cur_failed) {
            failed++;
            printf("FAIL %s (%.2fs)\n", cases[i].name, dt);
            if (strlen(failed_names) + strlen(cases[i].name) + 2 < sizeof failed_names) {
                strcat(failed_names, " ");
                strcat(failed_names, cases[i].name);
            }
        } else {
            passed++;
            printf("ok   %s (%.2fs)\n", cases[i].name, dt);
            if (cur_tmp[0]) {
                char cmd[600];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", cur_tmp);
                if (system(cmd) != 0) { /* leave it */ }
            }
        }
    }
    if (list) return 0;
    if (failed) printf("failed:%s\n", failed_names);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : (passed ? 0 : 1);
}
