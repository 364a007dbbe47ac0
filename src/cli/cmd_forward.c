/* cmd_forward.c — `kinema forward`: run one model component on named input tensors and write
 * its named outputs, timing each run. The tensor names are those of the reference fixtures. */
#include "cli/cli.h"
#include "io/model_load.h"
#include "io/modelfolder.h"
#include "io/safetensors.h"
#include "io/t2v_load.h"
#include "io/tae_load.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <math.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: kinema forward --model PATH --component C --inputs IN.safetensors -o OUT.safetensors\n"
               "                      [--threads N] [--repeat K] [--weights-type f32|f16|bf16|q8]\n"
               "  components and tensors:\n"
               "    unet          sample, timestep, encoder_hidden_states -> out.sample\n"
               "    vae-encode    x -> mean, logvar, std\n"
               "    vae-decode    z -> sample\n"
               "    text-encoder  input_ids -> last_hidden_state, pooler_output\n"
               "    taesd-encode  image_u8 (U8, [0,255]) or x (F32, [0,1]) -> latents\n"
               "    taesd-decode  latents -> decoded\n"
               "    taehv-encode  video_u8 or x (N,T,3,H,W) -> latents\n"
               "    taehv-decode  latents -> decoded\n"
               "  PATH: a pipeline folder (model_index.json), a component folder (config.json + weights),\n"
               "        or for taesd/taehv a weights file or a folder holding *encoder* / *decoder* weights.\n"
               "  --weights-type: run the matrix and conv weights of unet / vae / text-encoder in reduced\n"
               "        precision (f16; bf16 with f32 accumulation; q8 = 8-bit blocks of 32 with an f32 scale),\n"
               "        converted at load; default f32.\n");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The component folder: PATH/<sub> when PATH is a pipeline folder, else PATH. */
static void component_dir(const char *path, const char *sub, char *out, size_t n) {
    char mi[1200];
    snprintf(mi, sizeof mi, "%s/model_index.json", path);
    struct stat sb;
    if (stat(mi, &sb) == 0)
        snprintf(out, n, "%s/%s", path, sub);
    else
        snprintf(out, n, "%s", path);
}

/* A TAE weights file: PATH itself, or the file in the folder PATH whose name contains `role`. */
static kn_status tae_file(const char *path, const char *role, char *out, size_t n) {
    if (!is_dir(path)) {
        snprintf(out, n, "%s", path);
        return KN_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return kn_fail(KN_ERR_IO, "%s: cannot list the folder", path);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors") && (!role || strstr(e->d_name, role)) &&
            strncmp(e->d_name, "ref_", 4)) {
            snprintf(out, n, "%s/%s", path, e->d_name);
            found++;
        }
    }
    closedir(d);
    if (found == 1)
        return KN_OK;
    return kn_fail(KN_ERR_IO, "%s: %s weights file with '%s' in its name", path, found ? "more than one" : "no",
                   role ? role : "");
}

static kn_status get_input(kn_safetensors *in, const char *name, kn_tensor *t) {
    if (kn_st_find(in, name) < 0)
        return kn_fail(KN_ERR_FORMAT, "%s: no input tensor '%s'", kn_st_path(in), name);
    return kn_st_get(in, name, t);
}

/* u8 image/video in [0,255] -> F32 in [0,1] (x = u8 / 255.0f), same shape */
static kn_status u8_or_f32(kn_ctx *c, kn_safetensors *in, const char *u8name, kn_var **out) {
    kn_tensor t;
    if (kn_st_find(in, u8name) >= 0) {
        KN_TRY(kn_st_get(in, u8name, &t));
        if (t.dtype != KN_U8)
            return kn_fail(KN_ERR_DTYPE, "%s: '%s' must be U8", kn_st_path(in), u8name);
        kn_var *v = kn_var_new(c, t.ndim, t.shape);
        if (!v)
            return kn_ctx_status(c);
        for (int64_t i = 0, n = kn_tensor_numel(&t); i < n; i++)
            ((float *)v->v.data)[i] = ((const uint8_t *)t.data)[i] / 255.0f;
        *out = v;
        return KN_OK;
    }
    KN_TRY(get_input(in, "x", &t));
    if (t.dtype != KN_F32)
        return kn_fail(KN_ERR_DTYPE, "%s: 'x' must be F32", kn_st_path(in));
    *out = kn_var_wrap(c, &t);
    return KN_OK;
}

static int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *comp = NULL, *inputs = NULL, *output = NULL, *wtype_s = "f32";
    long threads = 0, repeat = 1;
    const kn_cli_opt opts[] = {
        {"--model", "-m", KN_OPT_STR, &model},
        {"--component", "-c", KN_OPT_STR, &comp},
        {"--inputs", "-i", KN_OPT_STR, &inputs},
        {"--output", "-o", KN_OPT_STR, &output},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {"--repeat", NULL, KN_OPT_INT, &repeat, 1, 100000},
        {"--weights-type", NULL, KN_OPT_STR, &wtype_s},
    };
    const char *pos[1];
    int npos;
    int r = kn_cli_parse("forward", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (!model || !comp || !inputs || !output)
        return kn_cli_error("forward: --model, --component, --inputs and -o are all required");
    static const char *known[] = {"unet", "vae-encode", "vae-decode", "text-encoder", "taesd-encode", "taesd-decode",
                                  "taehv-encode", "taehv-decode"};
    kn_wtype wtype;
    if (kn_wtype_parse(wtype_s, &wtype) != KN_OK)
        return kn_cli_error("forward: --weights-type: %s", kn_last_error());
    int which = -1;
    for (int i = 0; i < 8; i++)
        if (!strcmp(comp, known[i]))
            which = i;
    if (which < 0)
        return kn_cli_error("forward: unknown component '%s' (unet, vae-encode, vae-decode, text-encoder, "
                            "taesd-encode, taesd-decode, taehv-encode, taehv-decode)", comp);
    if (wtype != KN_WT_F32 && which >= 4)
        return kn_cli_error("forward: --weights-type %s applies to unet, vae-encode, vae-decode and text-encoder, "
                            "not %s", wtype_s, comp);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    kn_safetensors *in = kn_st_open(inputs);
    if (!in)
        return kn_cli_error("%s", kn_last_error());
    int rc = 1;
    char dir[1200], cfgp[1300], wpath[1300];
    kn_unet3d *unet = NULL;
    kn_vae *vae = NULL;
    kn_clip_text *text = NULL;
    kn_taesd *tsd = NULL;
    kn_taehv *thv = NULL;
    kn_params *P = NULL;
    void *lowp_store = NULL;
    int nlowp = 0;
    size_t lowp_bytes = 0;
    kn_status st = KN_OK;
    if (which == 0 || which == 1 || which == 2 || which == 3) {
        component_dir(model, which == 0 ? "unet" : which == 3 ? "text_encoder" : "vae", dir, sizeof dir);
        snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
        if (which == 0) {
            kn_unet3d_config c;
            if ((st = kn_unet3d_config_load(cfgp, &c)) == KN_OK && !(unet = kn_unet3d_new(&c)))
                st = KN_ERR_ARG;
            if (unet) P = &unet->P;
        } else if (which == 3) {
            kn_clip_text_config c;
            if ((st = kn_clip_text_config_load(cfgp, &c)) == KN_OK && !(text = kn_clip_text_new(&c)))
                st = KN_ERR_ARG;
            if (text) P = &text->P;
        } else {
            kn_vae_config c;
            if ((st = kn_vae_config_load(cfgp, &c)) == KN_OK && !(vae = kn_vae_new(&c)))
                st = KN_ERR_ARG;
            if (vae) P = &vae->P;
        }
        if (st == KN_OK) {
            kn_weights *w = kn_weights_open(dir);
            if (!w)
                st = KN_ERR_IO;
            else {
                st = kn_params_load_weights(P, w);
                kn_weights_close(w);
            }
        }
        if (st == KN_OK)
            st = kn_params_to_lowp(P, wtype, &lowp_store, &nlowp, &lowp_bytes);
    } else if (which == 4 || which == 5) {
        if ((st = tae_file(model, which == 4 ? "encoder" : "decoder", wpath, sizeof wpath)) == KN_OK &&
            !(tsd = which == 4 ? kn_taesd_load(wpath, NULL) : kn_taesd_load(NULL, wpath)))
            st = KN_ERR_FORMAT;
    } else {
        if ((st = tae_file(model, NULL, wpath, sizeof wpath)) == KN_OK && !(thv = kn_taehv_load(wpath)))
            st = KN_ERR_FORMAT;
    }
    if (st != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    kn_arena *A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!A) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    const char *names[4] = {0};
    kn_var *outs[4] = {0};
    int nout = 0;
    double best = 1e30, total = 0;
    for (long rep = 0; rep < repeat; rep++) {
        kn_arena_reset(A, 0);
        kn_ctx c;
        kn_ctx_init(&c, A, NULL);
        double t0 = now();
        nout = 0;
        switch (which) {
        case 0: {
            kn_tensor s, ts, e;
            if ((st = get_input(in, "sample", &s)) || (st = get_input(in, "timestep", &ts)) ||
                (st = get_input(in, "encoder_hidden_states", &e)))
                break;
            int64_t B = s.ndim == 5 ? s.shape[0] : 0, nt = kn_tensor_numel(&ts);
            if (nt != 1 && nt != B) {
                st = kn_fail(KN_ERR_SHAPE, "forward: timestep has %lld values for a batch of %lld", (long long)nt,
                             (long long)B);
                break;
            }
            float *tf = kn_arena_alloc(A, (size_t)(B > 0 ? B : 1) * sizeof(float));
            for (int64_t i = 0; tf && i < B; i++) {
                int64_t k = nt == 1 ? 0 : i;
                tf[i] = ts.dtype == KN_I64   ? (float)((int64_t *)ts.data)[k]
                        : ts.dtype == KN_I32 ? (float)((int32_t *)ts.data)[k]
                        : ts.dtype == KN_F32 ? ((float *)ts.data)[k]
                                             : 0.0f;
            }
            if (ts.dtype != KN_I64 && ts.dtype != KN_I32 && ts.dtype != KN_F32) {
                st = kn_fail(KN_ERR_DTYPE, "forward: timestep must be I64, I32 or F32");
                break;
            }
            outs[0] = kn_unet3d_forward(&c, unet, kn_var_wrap(&c, &s), tf, kn_var_wrap(&c, &e), NULL, NULL);
            names[0] = "out.sample";
            nout = 1;
            st = kn_ctx_status(&c);
            break;
        }
        case 1: {
            kn_tensor x;
            if ((st = get_input(in, "x", &x)))
                break;
            kn_var *mean = NULL, *logvar = NULL;
            if ((st = kn_vae_encode(&c, vae, kn_var_wrap(&c, &x), &mean, &logvar, NULL, NULL)))
                break;
            kn_var *sd = kn_var_new(&c, logvar->v.ndim, logvar->v.shape);
            if (!sd) { st = kn_ctx_status(&c); break; }
            for (int64_t i = 0, n = kn_tensor_numel(&sd->v); i < n; i++)
                ((float *)sd->v.data)[i] = expf(0.5f * ((float *)logvar->v.data)[i]);
            outs[0] = mean, outs[1] = logvar, outs[2] = sd;
            names[0] = "mean", names[1] = "logvar", names[2] = "std";
            nout = 3;
            break;
        }
        case 2: {
            kn_tensor z;
            if ((st = get_input(in, "z", &z)))
                break;
            outs[0] = kn_vae_decode(&c, vae, kn_var_wrap(&c, &z), NULL, NULL);
            names[0] = "sample";
            nout = 1;
            st = kn_ctx_status(&c);
            break;
        }
        case 3: {
            kn_tensor t;
            if ((st = get_input(in, "input_ids", &t)))
                break;
            if (t.ndim != 2 || (t.dtype != KN_I64 && t.dtype != KN_I32)) {
                st = kn_fail(KN_ERR_SHAPE, "forward: input_ids must be I64 or I32 (B, L)");
                break;
            }
            int64_t n = kn_tensor_numel(&t);
            int32_t *ids = kn_arena_alloc(A, (size_t)n * sizeof(int32_t));
            for (int64_t i = 0; ids && i < n; i++) {
                int64_t v = t.dtype == KN_I64 ? ((int64_t *)t.data)[i] : ((int32_t *)t.data)[i];
                ids[i] = v < INT32_MIN || v > INT32_MAX ? -1 : (int32_t)v;
            }
            kn_var *pooled = NULL;
            outs[0] = kn_clip_text_forward(&c, text, ids, t.shape[0], t.shape[1], 0, &pooled, NULL, NULL);
            outs[1] = pooled;
            names[0] = "last_hidden_state", names[1] = "pooler_output";
            nout = 2;
            st = kn_ctx_status(&c);
            break;
        }
        case 4:
        case 6: {
            kn_var *x = NULL;
            if ((st = u8_or_f32(&c, in, which == 4 ? "image_u8" : "video_u8", &x)))
                break;
            outs[0] = which == 4 ? kn_taesd_encode(&c, tsd, x, NULL, NULL) : kn_taehv_encode(&c, thv, x, NULL, NULL);
            names[0] = "latents";
            nout = 1;
            st = kn_ctx_status(&c);
            break;
        }
        default: {
            kn_tensor z;
            if ((st = get_input(in, "latents", &z)))
                break;
            kn_var *zv = kn_var_wrap(&c, &z);
            outs[0] = which == 5 ? kn_taesd_decode(&c, tsd, zv, NULL, NULL) : kn_taehv_decode(&c, thv, zv, NULL, NULL);
            names[0] = "decoded";
            nout = 1;
            st = kn_ctx_status(&c);
            break;
        }
        }
        if (st != KN_OK)
            break;
        double dt = now() - t0;
        total += dt;
        if (dt < best)
            best = dt;
    }
    if (st != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        kn_arena_free(A);
        goto done;
    }
    kn_st_writer *w = kn_st_writer_new();
    for (int i = 0; i < nout && st == KN_OK; i++)
        if (outs[i])
            st = kn_st_writer_add(w, names[i], &outs[i]->v);
    if (st == KN_OK)
        st = kn_st_writer_meta(w, "generator", "kinema forward");
    if (st == KN_OK)
        st = kn_st_writer_write(w, output);
    kn_st_writer_free(w);
    kn_arena_free(A);
    if (st != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    printf("%s: %.3f ms/run (best of %ld, mean %.3f ms), %d threads, peak RSS %.0f MiB\n", comp, best * 1e3, repeat,
           total / repeat * 1e3, kn_get_threads(), kn_peak_rss() / 1048576.0);
    if (wtype != KN_WT_F32)
        printf("weights: %s, %d matrix/conv tensors converted (%.2f MiB)\n", kn_wtype_name(wtype), nlowp,
               lowp_bytes / 1048576.0);
    rc = 0;
done:
    kn_st_close(in);
    kn_unet3d_free(unet);
    kn_vae_free(vae);
    kn_clip_text_free(text);
    kn_taesd_free(tsd);
    kn_taehv_free(thv);
    kn_aligned_free(lowp_store);
    return rc;
}

KN_CLI_COMMAND(forward, "forward", "run one model component on named input tensors", cmd_forward)
