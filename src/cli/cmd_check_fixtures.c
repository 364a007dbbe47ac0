/* cmd_check_fixtures.c — `kinema check-fixtures DIR`: runs every reference check found under a
 * folder laid out like shared/fixtures, discovered by structure (nothing about sizes, names or case
 * lists is fixed here):
 *   - a folder with config.json naming UNet3DConditionModel / AutoencoderKL / a CLIP text model:
 *     its io_case*, act_case*, encode_case*, decode_case* or io*.safetensors files;
 *   - a folder with index.json listing scheduler traces (<name>.json + <name>.safetensors);
 *   - a folder with pipeline.json (a full text-to-video run);
 *   - a folder with tokenizer_ref.json (token ids, with the CLIP vocabulary found nearby);
 *   - folders holding TAESD (encoder/decoder files) or TAEHV (encoder.* + decoder.*) weights and
 *     ref_*.safetensors.
 * Each check prints its max error against the tolerance of the fixtures' READMEs; the last line
 * is "N passed, N failed" and the exit status is 0 only if everything passed. */
#include "cli/cli.h"
#include "diffusion/pipeline.h"
#include "io/config.h"
#include "io/model_load.h"
#include "io/modelfolder.h"
#include "io/scheduler_config.h"
#include "io/t2v_load.h"
#include "io/tae_load.h"
#include "io/tokenizer.h"

#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Paths here are built from a folder walk into fixed buffers of a few KiB: a path too long for them
 * is cut, fails to open and is reported as a failed check, which is the right outcome. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int npass, nfail;
static kn_arena *AR;

static void result(int ok, const char *what, double err, double tol) {
    if (ok)
        npass++;
    else
        nfail++;
    printf("%s %-60s max err %.3g (tol %.3g)\n", ok ? "PASS" : "FAIL", what, err, tol);
    fflush(stdout);
}

static void fail_msg(const char *what, const char *msg) {
    nfail++;
    printf("FAIL %-60s %s\n", what, msg);
    fflush(stdout);
}

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    return m;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

enum { TOL_REL_MAX, TOL_REL_MAX1, TOL_ELEMENT };

/* Compares got with the reference tensor `key` of ref under one of the README rules:
 * REL_MAX: max|err| <= rel * max|ref|; REL_MAX1: <= rel * max(1, max|ref|);
 * ELEMENT: |err| <= rel + rel * |ref| for every element. */
static void compare(const char *what, kn_safetensors *ref, const char *key, const kn_tensor *got, int rule,
                    double rel) {
    char name[512];
    snprintf(name, sizeof name, "%s %s", what, key);
    kn_tensor r;
    if (kn_st_find(ref, key) < 0 || kn_st_get(ref, key, &r) != KN_OK) {
        fail_msg(name, "reference tensor missing");
        return;
    }
    if (r.dtype != KN_F32 || !got || kn_tensor_numel(&r) != kn_tensor_numel(got)) {
        char a[96], b[96];
        char msg[256];
        snprintf(msg, sizeof msg, "shape %s, reference %s", got ? kn_shape_str(got, a, sizeof a) : "(none)",
                 kn_shape_str(&r, b, sizeof b));
        fail_msg(name, msg);
        return;
    }
    int64_t n = kn_tensor_numel(&r);
    const float *g = got->data, *rf = r.data;
    if (rule == TOL_ELEMENT) {
        double worst = 0, werr = 0, wtol = rel;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs((double)g[i] - rf[i]), t = rel + rel * fabs(rf[i]);
            if (!(e <= t) && (isnan(e) || e - t > worst - 0)) {
                worst = isnan(e) ? INFINITY : e - t;
                werr = e, wtol = t;
            } else if (worst == 0 && e > werr) {
                werr = e, wtol = t;
            }
        }
        result(worst == 0, name, werr, wtol);
        return;
    }
    double m = max_abs(rf, n), err = max_diff(g, rf, n);
    double tol = rel * (rule == TOL_REL_MAX1 ? (m > 1 ? m : 1) : m);
    result(err <= tol, name, err, tol);
}

static int has_file(const char *dir, const char *name) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }
static int ends(const char *s, const char *p) {
    size_t a = strlen(s), b = strlen(p);
    return a >= b && !strcmp(s + a - b, p);
}

/* Sorted list of the files in dir whose names start with prefix and end with suffix. */
static int list_files(const char *dir, const char *prefix, const char *suffix, char names[][256], int max) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (starts(e->d_name, prefix) && ends(e->d_name, suffix) && strlen(e->d_name) < 256)
            snprintf(names[n++], 256, "%s", e->d_name);
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[256];
            memcpy(t, names[j], 256);
            memcpy(names[j], names[j - 1], 256);
            memcpy(names[j - 1], t, 256);
        }
    return n;
}

static kn_safetensors *open_in(const char *dir, const char *name) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    kn_safetensors *s = kn_st_open(p);
    if (!s)
        fail_msg(p, kn_last_error());
    return s;
}

/* ------------------------------------------------------------ model hooks */

typedef struct { const char *what; kn_safetensors *ref; const char *prefix; } act_ctx;

static void act_hook(const char *name, const kn_tensor *t, void *user) {
    act_ctx *a = user;
    char key[256];
    snprintf(key, sizeof key, "%s%s", a->prefix, name);
    if (kn_st_find(a->ref, key) >= 0)
        compare(a->what, a->ref, key, t, TOL_REL_MAX, 1e-4);
}

static kn_status load_component(const char *dir, kn_params *P) {
    kn_weights *w = kn_weights_open(dir);
    if (!w)
        return KN_ERR_IO;
    kn_status st = kn_params_load_weights(P, w);
    kn_weights_close(w);
    return st;
}

static void check_unet(const char *dir) {
    char p[2048], what[1024];
    kn_unet3d_config cfg;
    snprintf(p, sizeof p, "%s/config.json", dir);
    kn_unet3d *u = NULL;
    if (kn_unet3d_config_load(p, &cfg) != KN_OK || !(u = kn_unet3d_new(&cfg)) || load_component(dir, &u->P) != KN_OK) {
        fail_msg(dir, kn_last_error());
        kn_unet3d_free(u);
        return;
    }
    char cases[64][256];
    int n = list_files(dir, "io_case", ".safetensors", cases, 64);
    for (int i = 0; i < n; i++) {
        kn_safetensors *io = open_in(dir, cases[i]);
        if (!io)
            continue;
        char actname[300];
        snprintf(actname, sizeof actname, "act_%s", cases[i] + 3);
        kn_safetensors *acts = has_file(dir, actname) ? open_in(dir, actname) : NULL;
        snprintf(what, sizeof what, "%s/%s", dir, cases[i]);
        kn_tensor s, ts, e;
        if (kn_st_get(io, "sample", &s) != KN_OK || kn_st_get(io, "timestep", &ts) != KN_OK ||
            kn_st_get(io, "encoder_hidden_states", &e) != KN_OK || s.ndim != 5) {
            fail_msg(what, "inputs sample/timestep/encoder_hidden_states missing");
        } else {
            int64_t B = s.shape[0], nt = kn_tensor_numel(&ts);
            float tf[256];
            for (int64_t b = 0; b < B && b < 256; b++) {
                int64_t k = nt == 1 ? 0 : b;
                tf[b] = ts.dtype == KN_I64 ? (float)((int64_t *)ts.data)[k]
                        : ts.dtype == KN_I32 ? (float)((int32_t *)ts.data)[k]
                                             : ((float *)ts.data)[k];
            }
            kn_arena_reset(AR, 0);
            kn_ctx c;
            kn_ctx_init(&c, AR, NULL);
            act_ctx ac = {what, acts, "act."};
            kn_var *y = kn_unet3d_forward(&c, u, kn_var_wrap(&c, &s), tf, kn_var_wrap(&c, &e), acts ? act_hook : NULL,
                                          &ac);
            if (kn_ctx_status(&c) != KN_OK)
                fail_msg(what, kn_last_error());
            else
                compare(what, io, "out.sample", &y->v, TOL_REL_MAX, 1e-4);
        }
        kn_st_close(io);
        if (acts)
            kn_st_close(acts);
    }
    kn_unet3d_free(u);
}

static void vae_hook(const char *name, const kn_tensor *t, void *user) { act_hook(name, t, user); }

static void check_vae(const char *dir) {
    char p[2048], what[1024];
    kn_vae_config cfg;
    snprintf(p, sizeof p, "%s/config.json", dir);
    kn_vae *v = NULL;
    if (kn_vae_config_load(p, &cfg) != KN_OK || !(v = kn_vae_new(&cfg)) || load_component(dir, &v->P) != KN_OK) {
        fail_msg(dir, kn_last_error());
        kn_vae_free(v);
        return;
    }
    char cases[64][256];
    int n = list_files(dir, "encode_case", ".safetensors", cases, 64);
    for (int i = 0; i < n; i++) {
        kn_safetensors *io = open_in(dir, cases[i]);
        if (!io)
            continue;
        snprintf(what, sizeof what, "%s/%s", dir, cases[i]);
        kn_tensor x;
        if (kn_st_get(io, "x", &x) != KN_OK) {
            fail_msg(what, "input x missing");
        } else {
            kn_arena_reset(AR, 0);
            kn_ctx c;
            kn_ctx_init(&c, AR, NULL);
            act_ctx ac = {what, io, "act."};
            kn_var *mean = NULL, *logvar = NULL;
            if (kn_vae_encode(&c, v, kn_var_wrap(&c, &x), &mean, &logvar, vae_hook, &ac) != KN_OK) {
                fail_msg(what, kn_last_error());
            } else {
                compare(what, io, "mean", &mean->v, TOL_REL_MAX, 1e-4);
                compare(what, io, "logvar", &logvar->v, TOL_REL_MAX, 1e-4);
                if (kn_st_find(io, "std") >= 0) {
                    kn_var *sd = kn_var_new(&c, logvar->v.ndim, logvar->v.shape);
                    for (int64_t k = 0, m = kn_tensor_numel(&sd->v); k < m; k++)
                        ((float *)sd->v.data)[k] = expf(0.5f * ((float *)logvar->v.data)[k]);
                    compare(what, io, "std", &sd->v, TOL_REL_MAX, 1e-4);
                }
            }
        }
        kn_st_close(io);
    }
    n = list_files(dir, "decode_case", ".safetensors", cases, 64);
    for (int i = 0; i < n; i++) {
        kn_safetensors *io = open_in(dir, cases[i]);
        if (!io)
            continue;
        snprintf(what, sizeof what, "%s/%s", dir, cases[i]);
        kn_tensor z;
        if (kn_st_get(io, "z", &z) != KN_OK) {
            fail_msg(what, "input z missing");
        } else {
            kn_arena_reset(AR, 0);
            kn_ctx c;
            kn_ctx_init(&c, AR, NULL);
            act_ctx ac = {what, io, "act."};
            kn_var *y = kn_vae_decode(&c, v, kn_var_wrap(&c, &z), vae_hook, &ac);
            if (kn_ctx_status(&c) != KN_OK)
                fail_msg(what, kn_last_error());
            else
                compare(what, io, "sample", &y->v, TOL_REL_MAX, 1e-4);
        }
        kn_st_close(io);
    }
    kn_vae_free(v);
}

typedef struct { const char *what; kn_safetensors *io; } clip_ctx;

static void clip_hook(int i, const kn_tensor *t, void *user) {
    clip_ctx *h = user;
    char key[64];
    snprintf(key, sizeof key, "hidden_states.%d", i);
    if (kn_st_find(h->io, key) >= 0)
        compare(h->what, h->io, key, t, TOL_REL_MAX1, 1e-4);
}

static void check_clip(const char *dir) {
    char p[2048], what[1024];
    kn_clip_text_config cfg;
    snprintf(p, sizeof p, "%s/config.json", dir);
    kn_clip_text *m = NULL;
    if (kn_clip_text_config_load(p, &cfg) != KN_OK || !(m = kn_clip_text_new(&cfg)) ||
        load_component(dir, &m->P) != KN_OK) {
        fail_msg(dir, kn_last_error());
        kn_clip_text_free(m);
        return;
    }
    char cases[64][256];
    int n = list_files(dir, "io", ".safetensors", cases, 64);
    for (int i = 0; i < n; i++) {
        kn_safetensors *io = open_in(dir, cases[i]);
        if (!io)
            continue;
        snprintf(what, sizeof what, "%s/%s", dir, cases[i]);
        kn_tensor t;
        if (kn_st_get(io, "input_ids", &t) != KN_OK || t.ndim != 2) {
            fail_msg(what, "input_ids missing");
        } else {
            int64_t B = t.shape[0], L = t.shape[1];
            int32_t *ids = malloc((size_t)(B * L) * sizeof(int32_t));
            for (int64_t k = 0; k < B * L; k++)
                ids[k] = (int32_t)(t.dtype == KN_I64 ? ((int64_t *)t.data)[k] : ((int32_t *)t.data)[k]);
            kn_arena_reset(AR, 0);
            kn_ctx c;
            kn_ctx_init(&c, AR, NULL);
            clip_ctx hc = {what, io};
            kn_var *pooled = NULL;
            kn_var *y = kn_clip_text_forward(&c, m, ids, B, L, 0, &pooled, clip_hook, &hc);
            if (kn_ctx_status(&c) != KN_OK) {
                fail_msg(what, kn_last_error());
            } else {
                compare(what, io, "last_hidden_state", &y->v, TOL_REL_MAX1, 1e-4);
                if (kn_st_find(io, "pooler_output") >= 0)
                    compare(what, io, "pooler_output", &pooled->v, TOL_REL_MAX1, 1e-4);
            }
            free(ids);
        }
        kn_st_close(io);
    }
    kn_clip_text_free(m);
}

/* ------------------------------------------------------------ schedulers */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    return b;
}

static void check_scheduler_case(const char *dir, const char *name) {
    char p[2048], what[1024];
    snprintf(what, sizeof what, "%s/%s", dir, name);
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    char *js = slurp(p);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    free(js);
    if (!o) {
        fail_msg(what, "cannot read the trace's JSON");
        return;
    }
    cJSON *cfgj = cJSON_GetObjectItem(o, "config"), *nsteps = cJSON_GetObjectItem(o, "num_inference_steps");
    char *cfgtext = cfgj ? cJSON_PrintUnformatted(cfgj) : NULL;
    kn_sched_config cfg;
    int kind = -1;
    kn_scheduler s;
    memset(&s, 0, sizeof s);
    if (!cfgtext || !cJSON_IsNumber(nsteps) || kn_sched_config_parse(cfgtext, what, &cfg, &kind) != KN_OK ||
        kn_sched_init(&s, &cfg, kind < 0 ? KN_SCHED_DDIM : (kn_sched_kind)kind) != KN_OK ||
        kn_sched_set_timesteps(&s, nsteps->valueint) != KN_OK) {
        fail_msg(what, cfgtext ? kn_last_error() : "no config / num_inference_steps");
        free(cfgtext);
        cJSON_Delete(o);
        return;
    }
    free(cfgtext);
    cJSON *ts = cJSON_GetObjectItem(o, "timesteps");
    double terr = 0;
    for (int i = 0; i < s.num_steps && i < cJSON_GetArraySize(ts); i++)
        terr = fmax(terr, fabs(s.timesteps[i] - cJSON_GetArrayItem(ts, i)->valuedouble));
    char tw[1100];
    snprintf(tw, sizeof tw, "%s timesteps", what);
    result(terr <= 1e-3 && cJSON_GetArraySize(ts) == s.num_steps, tw, terr, 1e-3);
    snprintf(p, sizeof p, "%s/%s.safetensors", dir, name);
    kn_safetensors *st = kn_st_open(p);
    if (!st) {
        fail_msg(what, kn_last_error());
        cJSON_Delete(o);
        kn_sched_free(&s);
        return;
    }
    kn_tensor x0, E;
    if (kn_st_get(st, "initial_sample", &x0) != KN_OK || kn_st_get(st, "fixed_E", &E) != KN_OK) {
        fail_msg(what, "initial_sample / fixed_E missing");
    } else {
        int64_t n = kn_tensor_numel(&x0);
        float *x = malloc((size_t)n * sizeof(float) * 3), *xin = x + n, *mo = x + 2 * n;
        memcpy(x, x0.data, (size_t)n * sizeof(float));
        for (int i = 0; i < s.num_steps; i++) {
            char k[64];
            kn_sched_scale_model_input(&s, i, x, xin, n);
            for (int64_t j = 0; j < n; j++)
                mo[j] = 0.1f * xin[j] + ((float *)E.data)[j];
            snprintf(k, sizeof k, "step%03d.variance_noise", i);
            kn_tensor nz;
            const float *noise = kn_st_find(st, k) >= 0 && kn_st_get(st, k, &nz) == KN_OK ? nz.data : NULL;
            if (kn_sched_step(&s, i, mo, x, n, noise) != KN_OK) {
                fail_msg(what, kn_last_error());
                break;
            }
            snprintf(k, sizeof k, "step%03d.prev_sample", i);
            kn_tensor got = kn_tensor_view(KN_F32, x0.ndim, x0.shape, x);
            compare(what, st, k, &got, TOL_REL_MAX, 1e-5);
            kn_tensor ref;
            if (kn_st_get(st, k, &ref) == KN_OK && kn_tensor_numel(&ref) == n)
                memcpy(x, ref.data, (size_t)n * sizeof(float)); /* per-step check, as the README asks */
        }
        free(x);
    }
    kn_st_close(st);
    kn_sched_free(&s);
    cJSON_Delete(o);
}

static void check_schedulers(const char *dir) {
    char p[2048];
    snprintf(p, sizeof p, "%s/index.json", dir);
    char *js = slurp(p);
    cJSON *idx = js ? cJSON_Parse(js) : NULL;
    free(js);
    for (cJSON *it = idx ? idx->child : NULL; it; it = it->next)
        if (it->string)
            check_scheduler_case(dir, it->string);
    cJSON_Delete(idx);
}

/* ------------------------------------------------------------ tokenizer */

/* The CLIP vocabulary: in dir itself, else a "clip" folder in dir or an ancestor (up to 3 up). */
static kn_tokenizer *find_tokenizer(const char *dir) {
    char p[2048];
    if (has_file(dir, "vocab.json") && has_file(dir, "merges.txt"))
        return kn_tokenizer_load(dir);
    snprintf(p, sizeof p, "%s", dir);
    for (int up = 0; up < 4; up++) {
        char c[2100];
        snprintf(c, sizeof c, "%s/clip", p);
        if (has_file(c, "vocab.json") || has_file(c, "bpe_simple_vocab_16e6.txt.gz"))
            return kn_tokenizer_load(c);
        size_t l = strlen(p);
        if (l + 4 >= sizeof p)
            break;
        strcat(p, "/..");
    }
    kn_fail(KN_ERR_IO, "%s: no CLIP vocabulary (vocab.json + merges.txt) here or in a clip/ folder nearby", dir);
    return NULL;
}

static void check_tokenizer(const char *dir) {
    char p[2048];
    snprintf(p, sizeof p, "%s/tokenizer_ref.json", dir);
    kn_tokenizer *tok = find_tokenizer(dir);
    if (!tok) {
        fail_msg(p, kn_last_error());
        return;
    }
    char *js = slurp(p);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    free(js);
    cJSON *arr = o ? (cJSON_IsArray(o) ? o : cJSON_GetObjectItem(o, "prompts")) : NULL;
    if (!cJSON_IsArray(arr)) {
        /* an object whose values are the cases */
        arr = o;
    }
    int bang = kn_tokenizer_token_id(tok, "!"), eot = kn_tokenizer_eos(tok);
    int idx = 0;
    for (cJSON *c = arr ? arr->child : NULL; c; c = c->next, idx++) {
        cJSON *text = cJSON_GetObjectItem(c, "prompt");
        if (!text)
            text = cJSON_GetObjectItem(c, "text");
        if (!cJSON_IsString(text))
            continue;
        static const char *fields[3] = {"ids", "ids_pad77_eot", "ids_pad77_bang"};
        for (int f = 0; f < 3; f++) {
            cJSON *want = cJSON_GetObjectItem(c, fields[f]);
            if (!cJSON_IsArray(want))
                continue;
            int32_t ids[4096];
            int n = 0;
            kn_status st = f == 0 ? kn_tokenize(tok, text->valuestring, ids, 4096, &n)
                                  : kn_tokenize_padded(tok, text->valuestring, ids, 77, f == 1 ? eot : bang, NULL, NULL);
            if (f)
                n = 77;
            int ok = st == KN_OK && n == cJSON_GetArraySize(want), bad = -1;
            for (int k = 0; ok && k < n; k++)
                if (ids[k] != cJSON_GetArrayItem(want, k)->valueint) {
                    ok = 0;
                    bad = k;
                }
            char what[512];
            snprintf(what, sizeof what, "%s/tokenizer_ref.json prompt %d %s", dir, idx, fields[f]);
            if (ok)
                result(1, what, 0, 0);
            else {
                char msg[128];
                snprintf(msg, sizeof msg, "ids differ (%d ids, want %d, first difference at %d)", n,
                         cJSON_GetArraySize(want), bad);
                fail_msg(what, msg);
            }
        }
    }
    cJSON_Delete(o);
    kn_tokenizer_free(tok);
}

/* ------------------------------------------------------------ pipeline */

static kn_safetensors *pipe_ref;
static const char *pipe_what;

static void pipe_step(int i, int nsteps, double t, const kn_tensor *in, const kn_tensor *out, const kn_tensor *lat,
                      void *user) {
    (void)nsteps; (void)t; (void)user;
    char k[64];
    snprintf(k, sizeof k, "step%03d.unet_input", i);
    if (kn_st_find(pipe_ref, k) >= 0) compare(pipe_what, pipe_ref, k, in, TOL_REL_MAX, 1e-4);
    snprintf(k, sizeof k, "step%03d.unet_output", i);
    if (kn_st_find(pipe_ref, k) >= 0) compare(pipe_what, pipe_ref, k, out, TOL_REL_MAX, 1e-4);
    snprintf(k, sizeof k, "step%03d.latents_after", i);
    if (kn_st_find(pipe_ref, k) >= 0) compare(pipe_what, pipe_ref, k, lat, TOL_REL_MAX, 1e-3);
}

static void check_pipeline(const char *dir) {
    char p[2048], what[1024];
    snprintf(p, sizeof p, "%s/pipeline.json", dir);
    snprintf(what, sizeof what, "%s", dir);
    char *js = slurp(p);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    free(js);
    cJSON *comp = o ? cJSON_GetObjectItem(o, "components") : NULL, *call = o ? cJSON_GetObjectItem(o, "call") : NULL;
    if (!comp || !call) {
        fail_msg(p, "no components / call");
        cJSON_Delete(o);
        return;
    }
    const char *cu = cJSON_GetStringValue(cJSON_GetObjectItem(comp, "unet")),
               *cv = cJSON_GetStringValue(cJSON_GetObjectItem(comp, "vae")),
               *ct = cJSON_GetStringValue(cJSON_GetObjectItem(comp, "text_encoder"));
    cJSON *sj = cJSON_GetObjectItem(cJSON_GetObjectItem(comp, "scheduler"), "config");
    kn_t2v_models m = {0};
    char du[2100], dv[2100], dt[2100];
    snprintf(du, sizeof du, "%s/%s", dir, cu ? cu : "unet");
    snprintf(dv, sizeof dv, "%s/%s", dir, cv ? cv : "vae");
    snprintf(dt, sizeof dt, "%s/%s", dir, ct ? ct : "text_encoder");
    kn_unet3d_config uc;
    kn_vae_config vc;
    kn_clip_text_config cc;
    char cp[2200];
    int kind = -1;
    char *stext = sj ? cJSON_PrintUnformatted(sj) : NULL;
    kn_status st = KN_OK;
    snprintf(cp, sizeof cp, "%s/config.json", du);
    if (st == KN_OK) st = kn_unet3d_config_load(cp, &uc);
    snprintf(cp, sizeof cp, "%s/config.json", dv);
    if (st == KN_OK) st = kn_vae_config_load(cp, &vc);
    snprintf(cp, sizeof cp, "%s/config.json", dt);
    if (st == KN_OK) st = kn_clip_text_config_load(cp, &cc);
    if (st == KN_OK)
        st = stext ? kn_sched_config_parse(stext, p, &m.sched, &kind) : kn_fail(KN_ERR_FORMAT, "no scheduler config");
    free(stext);
    if (st == KN_OK && (!(m.unet = kn_unet3d_new(&uc)) || !(m.vae = kn_vae_new(&vc)) || !(m.text = kn_clip_text_new(&cc))))
        st = KN_ERR_ARG;
    if (st == KN_OK) st = load_component(du, &m.unet->P);
    if (st == KN_OK) st = load_component(dv, &m.vae->P);
    if (st == KN_OK) st = load_component(dt, &m.text->P);
    m.sched_kind = kind < 0 ? KN_SCHED_DDIM : (kn_sched_kind)kind;
    char iop[2100];
    char files[8][256];
    int nf = list_files(dir, "", ".safetensors", files, 8);
    kn_safetensors *ref = NULL;
    if (st == KN_OK && nf >= 1) {
        snprintf(iop, sizeof iop, "%s/%s", dir, files[0]);
        ref = kn_st_open(iop);
        if (!ref)
            st = KN_ERR_IO;
    } else if (st == KN_OK) {
        st = kn_fail(KN_ERR_IO, "no .safetensors run record");
    }
    kn_tensor ip, in, init;
    if (st == KN_OK && (kn_st_get(ref, "input_ids.prompt", &ip) != KN_OK ||
                        kn_st_get(ref, "input_ids.negative_prompt", &in) != KN_OK ||
                        kn_st_get(ref, "initial_latents", &init) != KN_OK))
        st = kn_fail(KN_ERR_FORMAT, "run record lacks input_ids.* / initial_latents");
    if (st != KN_OK) {
        fail_msg(what, kn_last_error());
        goto out;
    }
    {
        /* the pipeline's own tokenizer ids, if a vocabulary is at hand */
        kn_tokenizer *tok = find_tokenizer(dir);
        const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItem(call, "prompt"));
        const char *negp = cJSON_GetStringValue(cJSON_GetObjectItem(call, "negative_prompt"));
        int64_t L = ip.shape[ip.ndim - 1];
        if (tok && prompt && negp) {
            int32_t a[512], b[512];
            int pad = ((int64_t *)ip.data)[L - 1];
            int ok = L <= 512 && kn_tokenize_padded(tok, prompt, a, (int)L, pad, NULL, NULL) == KN_OK &&
                     kn_tokenize_padded(tok, negp, b, (int)L, pad, NULL, NULL) == KN_OK;
            for (int64_t k = 0; ok && k < L; k++)
                ok = a[k] == ((int64_t *)ip.data)[k] && b[k] == ((int64_t *)in.data)[k];
            char w2[1100];
            snprintf(w2, sizeof w2, "%s input_ids (tokenizer)", what);
            if (ok) result(1, w2, 0, 0); else fail_msg(w2, "token ids differ");
        }
        if (tok) kn_tokenizer_free(tok);
        int64_t D = cc.hidden_size;
        int32_t *ids = malloc((size_t)(2 * L) * sizeof(int32_t));
        float *emb = malloc((size_t)(2 * L * D) * sizeof(float));
        for (int64_t k = 0; k < L; k++) {
            ids[k] = (int32_t)((int64_t *)ip.data)[k];
            ids[L + k] = (int32_t)((int64_t *)in.data)[k];
        }
        if (kn_t2v_encode_text(&m, ids, 2, L, 0, emb) != KN_OK) {
            fail_msg(what, kn_last_error());
        } else {
            kn_tensor te = kn_tensor_view(KN_F32, 3, (int64_t[]){1, L, D}, emb);
            compare(what, ref, "prompt_embeds", &te, TOL_REL_MAX1, 1e-4);
            te.data = emb + L * D;
            compare(what, ref, "negative_prompt_embeds", &te, TOL_REL_MAX1, 1e-4);
            kn_t2v_params par = kn_t2v_params_default();
            cJSON *x;
            if ((x = cJSON_GetObjectItem(call, "num_inference_steps"))) par.steps = x->valueint;
            if ((x = cJSON_GetObjectItem(call, "guidance_scale"))) par.guidance_scale = (float)x->valuedouble;
            par.frames = (int)init.shape[2];
            int f = 1 << (vc.nblocks - 1);
            par.height = (int)init.shape[3] * f;
            par.width = (int)init.shape[4] * f;
            par.init_latents = init.data;
            par.decode_chunk = 0;
            par.on_step = pipe_step;
            pipe_ref = ref;
            pipe_what = what;
            int64_t nl = kn_tensor_numel(&init), nv = 3 * (int64_t)par.frames * par.height * par.width;
            float *lat = malloc((size_t)nl * sizeof(float)), *video = malloc((size_t)nv * sizeof(float));
            kn_arena_reset(AR, 0);
            if (kn_t2v_run(&m, AR, emb, emb + L * D, L, &par, lat, video) != KN_OK) {
                fail_msg(what, kn_last_error());
            } else {
                kn_tensor tl = kn_tensor_view(KN_F32, 5, init.shape, lat);
                compare(what, ref, "final_latents", &tl, TOL_REL_MAX, 1e-3);
                kn_tensor tv = kn_tensor_view(KN_F32, 5, (int64_t[]){1, 3, par.frames, par.height, par.width}, video);
                compare(what, ref, "video", &tv, TOL_REL_MAX, 1e-3);
                kn_tensor fr;
                if (kn_st_get(ref, "frames_uint8", &fr) == KN_OK && fr.dtype == KN_U8 && kn_tensor_numel(&fr) == nv) {
                    uint8_t *rgb = malloc((size_t)nv);
                    kn_video_to_rgb8(video, par.frames, par.height, par.width, rgb);
                    int md = 0;
                    for (int64_t k = 0; k < nv; k++) {
                        int d = abs((int)rgb[k] - (int)((uint8_t *)fr.data)[k]);
                        if (d > md) md = d;
                    }
                    char w2[1100];
                    snprintf(w2, sizeof w2, "%s frames_uint8", what);
                    result(md <= 1, w2, md, 1);
                    free(rgb);
                }
            }
            free(lat);
            free(video);
        }
        free(ids);
        free(emb);
    }
out:
    if (ref) kn_st_close(ref);
    kn_unet3d_free(m.unet);
    kn_vae_free(m.vae);
    kn_clip_text_free(m.text);
    cJSON_Delete(o);
}

/* ------------------------------------------------------------ TAESD / TAEHV */

typedef struct { const char *what; kn_safetensors *ref; const char *prefix; const char *net; } tae_ctx;

static void tae_hook(const char *net, int layer, const kn_tensor *t, void *user) {
    tae_ctx *h = user;
    char key[256];
    snprintf(key, sizeof key, "%s.%s_after_%d", h->prefix, !strcmp(net, "encoder") ? "enc" : "dec", layer);
    if (kn_st_find(h->ref, key) >= 0)
        compare(h->what, h->ref, key, t, TOL_ELEMENT, 1e-4);
}

/* Inputs "P.image_u8" / "P.video_u8" (u8) -> F32 / 255. */
static kn_var *u8_input(kn_ctx *c, kn_safetensors *ref, const char *key) {
    kn_tensor t;
    if (kn_st_get(ref, key, &t) != KN_OK || t.dtype != KN_U8)
        return NULL;
    kn_var *v = kn_var_new(c, t.ndim, t.shape);
    if (v)
        for (int64_t i = 0, n = kn_tensor_numel(&t); i < n; i++)
            ((float *)v->v.data)[i] = ((const uint8_t *)t.data)[i] / 255.0f;
    return v;
}

static void check_tae(const char *dir, int video) {
    char refs[16][256], w[2100], what[1024];
    int nr = list_files(dir, "ref_", ".safetensors", refs, 16);
    kn_taesd *sd = NULL;
    kn_taehv *hv = NULL;
    if (video) {
        char files[16][256];
        int n = list_files(dir, "", ".safetensors", files, 16);
        for (int i = 0; i < n && !hv; i++)
            if (strncmp(files[i], "ref_", 4)) {
                snprintf(w, sizeof w, "%s/%s", dir, files[i]);
                hv = kn_taehv_load(w);
            }
        if (!hv) {
            fail_msg(dir, kn_last_error());
            return;
        }
    } else {
        char enc[8][256], dec[8][256], pe[2100], pd[2100];
        int ne = list_files(dir, "", "encoder.safetensors", enc, 8), nd = list_files(dir, "", "decoder.safetensors", dec, 8);
        snprintf(pe, sizeof pe, "%s/%s", dir, ne ? enc[0] : "");
        snprintf(pd, sizeof pd, "%s/%s", dir, nd ? dec[0] : "");
        sd = kn_taesd_load(ne ? pe : NULL, nd ? pd : NULL);
        if (!sd) {
            fail_msg(dir, kn_last_error());
            return;
        }
    }
    for (int r = 0; r < nr; r++) {
        kn_safetensors *ref = open_in(dir, refs[r]);
        if (!ref)
            continue;
        /* prefixes: names "P.x" with a "P.latents" */
        for (int i = 0; i < kn_st_count(ref); i++) {
            const char *name = kn_st_name(ref, i);
            if (!ends(name, ".latents"))
                continue;
            char prefix[200];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(name) - 8), name);
            snprintf(what, sizeof what, "%s/%s", dir, refs[r]);
            tae_ctx hc = {what, ref, prefix, NULL};
            char key[256];
            snprintf(key, sizeof key, "%s.%s", prefix, video ? "video_u8" : "image_u8");
            if (kn_st_find(ref, key) >= 0 && (video ? hv->cfg.has_encoder : sd->cfg.has_encoder)) {
                kn_arena_reset(AR, 0);
                kn_ctx c;
                kn_ctx_init(&c, AR, NULL);
                kn_var *x = u8_input(&c, ref, key);
                kn_var *z = !x ? NULL : video ? kn_taehv_encode(&c, hv, x, tae_hook, &hc) : kn_taesd_encode(&c, sd, x, tae_hook, &hc);
                if (!z)
                    fail_msg(key, kn_ctx_status(&c) != KN_OK ? kn_last_error() : "bad input");
                else
                    compare(what, ref, name, &z->v, TOL_ELEMENT, 1e-4);
            }
            snprintf(key, sizeof key, "%s.decoded", prefix);
            char rawk[256];
            snprintf(rawk, sizeof rawk, "%s.decoded_raw", prefix);
            if ((kn_st_find(ref, key) >= 0 || kn_st_find(ref, rawk) >= 0) && (video ? hv->cfg.has_decoder : sd->cfg.has_decoder)) {
                kn_tensor zt;
                kn_st_get(ref, name, &zt);
                kn_arena_reset(AR, 0);
                kn_ctx c;
                kn_ctx_init(&c, AR, NULL);
                kn_var *zv = kn_var_wrap(&c, &zt);
                if (video) {
                    if (kn_st_find(ref, rawk) >= 0) {
                        kn_var *y = kn_taehv_decode_raw(&c, hv, zv, NULL, NULL);
                        if (!y) fail_msg(rawk, kn_last_error()); else compare(what, ref, rawk, &y->v, TOL_ELEMENT, 1e-4);
                    }
                    if (kn_st_find(ref, key) >= 0) {
                        kn_var *y = kn_taehv_decode(&c, hv, zv, tae_hook, &hc);
                        if (!y) fail_msg(key, kn_last_error()); else compare(what, ref, key, &y->v, TOL_ELEMENT, 1e-4);
                    }
                } else {
                    kn_var *y = kn_taesd_decode(&c, sd, zv, tae_hook, &hc);
                    if (!y) fail_msg(key, kn_last_error()); else compare(what, ref, key, &y->v, TOL_ELEMENT, 1e-4);
                }
            }
        }
        kn_st_close(ref);
    }
    kn_taesd_free(sd);
    kn_taehv_free(hv);
}

/* ------------------------------------------------------------ discovery */

static void visit(const char *dir, int depth) {
    if (depth > 8)
        return;
    char cfgp[2100];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    if (has_file(dir, "config.json")) {
        kn_config *c = kn_config_load(cfgp);
        const char *cls = NULL, *mt = NULL;
        if (c) {
            kn_config_str(c, "_class_name", NULL, &cls);
            kn_config_str(c, "model_type", NULL, &mt);
            char clsb[128] = "", mtb[128] = "";
            if (cls) snprintf(clsb, sizeof clsb, "%s", cls);
            if (mt) snprintf(mtb, sizeof mtb, "%s", mt);
            kn_config_free(c);
            if (!strcmp(clsb, "UNet3DConditionModel"))
                check_unet(dir);
            else if (!strcmp(clsb, "AutoencoderKL"))
                check_vae(dir);
            else if (!strcmp(clsb, "CLIPTextModel") || !strcmp(mtb, "clip_text_model"))
                check_clip(dir);
        }
    }
    if (has_file(dir, "index.json")) {
        char p[2100];
        snprintf(p, sizeof p, "%s/index.json", dir);
        char *js = slurp(p);
        cJSON *o = js ? cJSON_Parse(js) : NULL;
        free(js);
        int traces = o && o->child && cJSON_GetObjectItem(o->child, "class");
        cJSON_Delete(o);
        if (traces)
            check_schedulers(dir);
    }
    if (has_file(dir, "pipeline.json"))
        check_pipeline(dir);
    if (has_file(dir, "tokenizer_ref.json"))
        check_tokenizer(dir);
    {
        char refs[4][256];
        if (list_files(dir, "ref_", ".safetensors", refs, 4) > 0) {
            char enc[4][256];
            if (list_files(dir, "", "encoder.safetensors", enc, 4) > 0 || list_files(dir, "", "decoder.safetensors", enc, 4) > 0)
                check_tae(dir, 0);
            else
                check_tae(dir, 1);
        }
    }
    DIR *d = opendir(dir);
    if (!d)
        return;
    char subs[256][256];
    int ns = 0;
    struct dirent *e;
    while ((e = readdir(d)) && ns < 256) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= 256)
            continue;
        char p[2100];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            snprintf(subs[ns++], 256, "%s", e->d_name);
    }
    closedir(d);
    for (int i = 1; i < ns; i++)
        for (int j = i; j > 0 && strcmp(subs[j - 1], subs[j]) > 0; j--) {
            char t[256];
            memcpy(t, subs[j], 256);
            memcpy(subs[j], subs[j - 1], 256);
            memcpy(subs[j - 1], t, 256);
        }
    for (int i = 0; i < ns; i++) {
        char p[2100];
        snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
        visit(p, depth + 1);
    }
}

static int cmd_check_fixtures(int argc, char **argv) {
    long threads = 0;
    const kn_cli_opt opts[] = {{"--threads", "-t", KN_OPT_INT, &threads, 1, 256}};
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("check-fixtures", argc, argv, opts, 1, pos, 1, &npos);
    if (r == 2) {
        printf("usage: kinema check-fixtures DIR [--threads N]\n"
               "  runs every reference check found under DIR (laid out like shared/fixtures)\n");
        return 0;
    }
    if (!r)
        return 2;
    if (npos != 1)
        return kn_cli_error("check-fixtures: give one folder");
    struct stat sb;
    if (stat(pos[0], &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kn_cli_error("check-fixtures: %s is not a folder", pos[0]);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    AR = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!AR)
        return kn_cli_error("%s", kn_last_error());
    npass = nfail = 0;
    visit(pos[0], 0);
    kn_arena_free(AR);
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail == 0 && npass > 0 ? 0 : 1;
}

KN_CLI_COMMAND(check_fixtures, "check-fixtures", "run every reference check under a fixtures folder", cmd_check_fixtures)
