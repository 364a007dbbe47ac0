/* test_cascade_cli.c — cascade model folders (export -> load -> export is byte-identical for the
 * tsr/ and ssr/ components; malformed cascade entries are one-line errors; plain folders load as
 * before) and the cascade commands end to end on a tiny random cascade: `generate` runs base ->
 * tsr x2 -> ssr and --keep-stages writes every stage with the right frames, size and fps;
 * `interpolate`, `extend` and `upscale` give the right shapes and rates; bad input fails cleanly
 * and leaves no output file. */
#include "kt.h"
#include "kt_models.h"

#include "io/export.h"
#include "io/t2v_load.h"
#include "io/video.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The tiny cascade: VAE f = 2 (2 blocks), latents C = 4; the base makes BASE_F frames of
 * BASE_PX pixels at BASE_FPS; tsr doubles the frames TSR_TIMES times; ssr doubles the size. */
#define BASE_PX 16
#define BASE_F 8
#define BASE_FPS 4
#define TSR_TIMES 2
#define TXT 8 /* text hidden size = cross_attention_dim */

static kn_unet3d_config unet_cfg(int sample_size) {
    kn_unet3d_config c = kn_unet3d_config_small(2, (const int[]){8, 16}, (const int[]){1, 0}, 2, 4, TXT);
    c.sample_size = sample_size;
    return c;
}

typedef struct {
    kn_unet3d *unet, *tsr, *ssr;
    kn_vae *vae;
    kn_clip_text *text;
    kn_sched_config sched;
} cascade_models;

static void free_models(cascade_models *m) {
    kn_unet3d_free(m->unet);
    kn_unet3d_free(m->tsr);
    kn_unet3d_free(m->ssr);
    kn_vae_free(m->vae);
    kn_clip_text_free(m->text);
    memset(m, 0, sizeof *m);
}

/* Random tiny models: base (plain ModelScope UNet), tsr (Make-A-Video: fps_cond, cond = C + 1),
 * ssr (Imagen Video: temporal convs only, noise augmentation, cond = C). */
static int make_models(cascade_models *m) {
    memset(m, 0, sizeof *m);
    kn_unet3d_config b = unet_cfg(BASE_PX / 2), t = b, s = b;
    b.fps_cond = 1; /* Make-A-Video's base: generate --fps conditions it */
    t.fps_cond = 1;
    t.cond_channels = 5;
    s.cond_channels = 4;
    s.noise_aug_cond = 1;
    s.fps_cond = 1; /* an ssr may be fps-conditioned too: the commands pass the clip's rate */
    s.temporal_attention = 0;
    s.sample_size = BASE_PX;
    kn_vae_config vc = kt_tiny_vae_config();
    kn_clip_text_config cc = kt_tiny_text_config(TXT);
    m->unet = kn_unet3d_new(&b);
    m->tsr = kn_unet3d_new(&t);
    m->ssr = kn_unet3d_new(&s);
    m->vae = kn_vae_new(&vc);
    m->text = kn_clip_text_new(&cc);
    KT_CHECKF(m->unet && m->tsr && m->ssr && m->vae && m->text, "%s", kn_last_error());
    if (!m->unet || !m->tsr || !m->ssr || !m->vae || !m->text) {
        free_models(m);
        return 0;
    }
    kn_params_init_default(&m->unet->P, 1);
    kn_params_init_default(&m->tsr->P, 2);
    kn_params_init_default(&m->ssr->P, 3);
    kn_params_init_default(&m->vae->P, 4);
    kn_params_init_default(&m->text->P, 5);
    m->sched = kn_sched_config_modelscope();
    return 1;
}

static kn_export_opts cascade_opts(const cascade_models *m, kn_dtype dt) {
    kn_export_opts o = {dt, BASE_FPS, BASE_F};
    o.tsr = m->tsr;
    o.ssr = m->ssr;
    o.cascade = (kn_cascade_info){2, TSR_TIMES, 2, 1.0f, 2, 2, 100, 1, 0, 1.0f, KN_PRED_SAMPLE + 1, 0};
    return o;
}

/* Exports the tiny cascade to <tmp>/<name> (the bundled model's tokenizer); returns the path. */
static const char *export_cascade(const char *name, kn_dtype dt) {
    static char dir[700];
    snprintf(dir, sizeof dir, "%s/%s", kt_tmpdir(), name);
    cascade_models m;
    if (!make_models(&m))
        return NULL;
    kn_export_opts o = cascade_opts(&m, dt);
    kn_status st = kn_export_t2v(dir, m.unet, m.vae, m.text, &m.sched, "models/default/tokenizer", "<|endoftext|>", &o);
    KT_OK(st);
    free_models(&m);
    return st == KN_OK ? dir : NULL;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    KT_CHECKF(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

KT_TEST(cascade_export_load_export_is_byte_identical) {
    const char *d1 = export_cascade("c1", KN_F16);
    if (!d1)
        return;
    char p[1200], q[1200];
    snprintf(p, sizeof p, "%s/model_index.json", d1);
    char *mi = kt_slurp(p, NULL);
    KT_CHECKF(mi && strstr(mi, "\"tsr\":\t[\"diffusers\", \"UNet3DConditionModel\"]") &&
                  strstr(mi, "\"ssr\":\t[\"diffusers\", \"UNet3DConditionModel\"]") && strstr(mi, "\"cascade\"") &&
                  strstr(mi, "\"noise_aug\":\t100") && strstr(mi, "\"same_noise\":\ttrue") &&
                  strstr(mi, "\"prediction_type\":\t\"sample\"") && !strstr(mi, "v_prediction"),
              "model_index.json: %s", mi ? mi : "(missing)");
    free(mi);
    snprintf(p, sizeof p, "%s/tsr/config.json", d1);
    char *tc = kt_slurp(p, NULL);
    KT_CHECKF(tc && strstr(tc, "\"fps_cond\":\ttrue") && strstr(tc, "\"cond_channels\":\t5"), "%s", tc ? tc : "");
    free(tc);
    snprintf(p, sizeof p, "%s/ssr/config.json", d1);
    char *sc = kt_slurp(p, NULL);
    KT_CHECKF(sc && strstr(sc, "\"noise_aug_cond\":\ttrue") && strstr(sc, "\"temporal_attention\":\tfalse"), "%s",
              sc ? sc : "");
    free(sc);

    kn_t2v_bundle b;
    KT_OK(kn_t2v_load(d1, NULL, &b));
    KT_CHECK(b.tsr && b.ssr && b.w[3] && b.w[4]);
    KT_CHECK(b.fps == BASE_FPS && b.frames == BASE_F);
    KT_CHECK(b.cascade.tsr_factor == 2 && b.cascade.tsr_times == TSR_TIMES && b.cascade.tsr_steps == 2 &&
             b.cascade.tsr_guidance == 1.0f && b.cascade.ssr_scale == 2 && b.cascade.ssr_steps == 2 &&
             b.cascade.ssr_noise_aug == 100 && b.cascade.ssr_same_noise == 1 && b.cascade.ssr_chunk == 0 &&
             b.cascade.ssr_guidance == 1.0f && b.cascade.tsr_pred == KN_PRED_SAMPLE + 1 && b.cascade.ssr_pred == 0);
    {   /* each stage samples with its own prediction type; without one, the base scheduler's */
        kn_sched_config ts = kn_cascade_stage_sched(&b.cascade, &b.m.sched, 1);
        kn_sched_config ss = kn_cascade_stage_sched(&b.cascade, &b.m.sched, 0);
        KT_CHECK(ts.prediction_type == KN_PRED_SAMPLE && ss.prediction_type == b.m.sched.prediction_type &&
                 ts.num_train_timesteps == b.m.sched.num_train_timesteps && ts.beta_end == b.m.sched.beta_end);
    }
    if (!b.tsr || !b.ssr)
        goto out;
    KT_CHECK(b.tsr->cfg.fps_cond == 1 && b.tsr->cfg.cond_channels == 5 && b.ssr->cfg.noise_aug_cond == 1 &&
             b.ssr->cfg.temporal_attention == 0 && b.ssr->cfg.sample_size == BASE_PX);
    /* loaded -> exported again: the same bytes in every file */
    kn_export_opts o = {KN_F16, b.fps, b.frames};
    o.tsr = b.tsr;
    o.ssr = b.ssr;
    o.cascade = b.cascade;
    snprintf(q, sizeof q, "%s/c2", kt_tmpdir());
    KT_OK(kn_export_t2v(q, b.m.unet, b.m.vae, b.m.text, &b.m.sched, "models/default/tokenizer", "<|endoftext|>", &o));
    static const char *files[] = {"model_index.json", "tsr/config.json", "tsr/diffusion_pytorch_model.safetensors",
                                  "ssr/config.json", "ssr/diffusion_pytorch_model.safetensors", "unet/config.json",
                                  "unet/diffusion_pytorch_model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[1300], c[1300];
        snprintf(a, sizeof a, "%s/%s", d1, files[i]);
        snprintf(c, sizeof c, "%s/%s", q, files[i]);
        KT_CHECKF(file_size(a) > 0 && same_file(a, c), "%s differs after export -> load -> export", files[i]);
    }
out:
    kn_t2v_unload(&b);
}

/* A folder without a cascade: no tsr/ ssr/ folders, no cascade keys, loads with tsr = ssr = NULL. */
KT_TEST(cascade_plain_folder_loads_as_before) {
    cascade_models m;
    if (!make_models(&m))
        return;
    char dir[700], p[800];
    snprintf(dir, sizeof dir, "%s/plain", kt_tmpdir());
    kn_export_opts o = {KN_F32, 8, 16};
    KT_OK(kn_export_t2v(dir, m.unet, m.vae, m.text, &m.sched, "models/default/tokenizer", "<|endoftext|>", &o));
    snprintf(p, sizeof p, "%s/tsr", dir);
    KT_CHECK(file_size(p) < 0);
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    char *mi = kt_slurp(p, NULL);
    KT_CHECK(mi && !strstr(mi, "cascade") && !strstr(mi, "tsr") && strstr(mi, "\"frames\":\t16"));
    free(mi);
    kn_t2v_bundle b;
    KT_OK(kn_t2v_load(dir, NULL, &b));
    KT_CHECK(b.m.unet && !b.tsr && !b.ssr && !b.w[3] && !b.w[4] && b.fps == 8 && b.frames == 16);
    kn_t2v_unload(&b);
    /* an SR stage that does not fit the base is refused at export, and nothing is written */
    kn_export_opts bad = cascade_opts(&m, KN_F32);
    bad.tsr = m.ssr; /* cond_channels 4, the tsr stage needs 5 */
    snprintf(p, sizeof p, "%s/bad", kt_tmpdir());
    KT_CHECK(kn_export_t2v(p, m.unet, m.vae, m.text, &m.sched, "models/default/tokenizer", "<|endoftext|>", &bad) != KN_OK);
    KT_CHECKF(strstr(kn_last_error(), "tsr cond_channels") != NULL, "%s", kn_last_error());
    KT_CHECK(file_size(p) < 0);
    free_models(&m);
}

/* Edits model_index.json of a fresh cascade folder: replaces `from` by `to`, then loads. */
static void expect_load_error(const char *from, const char *to, const char *msg) {
    const char *dir = export_cascade("bad", KN_F32);
    if (!dir)
        return;
    char p[800];
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    char *mi = kt_slurp(p, NULL);
    char *at = mi ? strstr(mi, from) : NULL;
    KT_CHECKF(at != NULL, "'%s' not in model_index.json", from);
    if (!at) {
        free(mi);
        return;
    }
    char *edited = malloc(strlen(mi) + strlen(to) + 1);
    sprintf(edited, "%.*s%s%s", (int)(at - mi), mi, to, at + strlen(from));
    write_text(p, edited);
    free(edited);
    free(mi);
    kn_t2v_bundle b;
    kn_status st = kn_t2v_load(dir, NULL, &b);
    KT_CHECKF(st != KN_OK, "loading with '%s' succeeded", to);
    const char *e = kn_last_error();
    KT_CHECKF(strstr(e, msg) && !strchr(e, '\n'), "'%s' -> error '%s' lacks '%s'", to, e, msg);
    if (st == KN_OK)
        kn_t2v_unload(&b);
}

KT_TEST(cascade_malformed_entries_are_one_line_errors) {
    expect_load_error("\"factor\":\t2", "\"factor\":\t1", "'factor' must be in 2..8");
    expect_load_error("\"factor\":\t2", "\"factor\":\t\"two\"", "factor");
    expect_load_error("\"times\":\t2", "\"times\":\t9", "'times' must be in 1..4");
    expect_load_error("\"noise_aug\":\t100", "\"noise_aug\":\t1000", "'noise_aug' must be in 0..999");
    expect_load_error("\"same_noise\":\ttrue", "\"same_noise\":\t3", "same_noise");
    expect_load_error("\"guidance\":\t1", "\"guidance\":\t-1", "'guidance' must be in 0..100");
    expect_load_error("\"prediction_type\":\t\"sample\"", "\"prediction_type\":\t\"x0\"", "'prediction_type' must be");
    expect_load_error("\"cascade\":\t{", "\"cascade\":\t{\"xsr\": {}, ", "unknown stage 'xsr'");
    expect_load_error("\"cascade\":\t{", "\"cascade\": 3, \"x\":\t{", "\"cascade\": must be an object");
    expect_load_error("\"tsr\":\t{", "\"tsr\":\t[], \"ssr\":\t{", "\"tsr\": must be an object");
    /* a stage without its folder entry, and a folder entry without its stage */
    expect_load_error("\"tsr\":\t[\"diffusers\", \"UNet3DConditionModel\"],", "", "no 'tsr' component");
    expect_load_error("\"cascade\":\t{", "\"cascade_old\":\t{", "a 'tsr' component but no");
    /* the ssr UNet of the folder is noise-augmentation conditioned; an ssr without it cannot take noise_aug */
    {
        const char *dir = export_cascade("bad_aug", KN_F32);
        char p[800];
        snprintf(p, sizeof p, "%s/ssr/config.json", dir ? dir : "");
        char *c = dir ? kt_slurp(p, NULL) : NULL;
        char *at = c ? strstr(c, "\"noise_aug_cond\":\ttrue") : NULL;
        KT_CHECK(at != NULL);
        if (at) {
            memcpy(at, "\"noise_aug_xxxx\"", 16);
            write_text(p, c);
            kn_t2v_bundle b;
            kn_status st = kn_t2v_load(dir, NULL, &b);
            KT_CHECK(st != KN_OK && strstr(kn_last_error(), "not noise-augmentation conditioned"));
            if (st == KN_OK)
                kn_t2v_unload(&b);
        }
        free(c);
    }
}

/* ------------------------------------------------------------ the commands */

/* Reads a clip and checks its frames, size and rate. */
static void expect_video(const char *path, int frames, int width, int height, double fps) {
    kn_video v = {0};
    kn_status st = kn_video_read(path, NULL, &v);
    KT_CHECKF(st == KN_OK, "%s: %s", path, kn_last_error());
    if (st == KN_OK)
        KT_CHECKF(v.frames == frames && v.width == width && v.height == height && fabs(v.fps - fps) < 1e-3,
                  "%s: %d frames %dx%d at %g fps, want %d frames %dx%d at %g fps", path, v.frames, v.width, v.height,
                  v.fps, frames, width, height, fps);
    kn_video_free(&v);
}

/* A moving square: frames x (w, h) at fps, written as .y4m into the test's folder. */
static const char *input_clip(const char *name, int frames, int w, int h, double fps) {
    static char path[4][700];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 700, "%s/%s", kt_tmpdir(), name);
    kn_video v;
    KT_OK(kn_video_alloc(&v, frames, h, w, fps));
    for (int t = 0; t < frames; t++)
        for (int y = h / 4; y < h / 2; y++)
            for (int x = t % w; x < KN_MIN(w, t % w + w / 3); x++) {
                uint8_t *px = kn_video_frame(&v, t) + ((size_t)y * w + x) * 3;
                px[0] = 230, px[1] = 40, px[2] = 40;
            }
    KT_OK(kn_video_write(p, &v, NULL));
    kn_video_free(&v);
    return p;
}

/* exactly one "kinema: " line, and it is the last line */
static int one_error_line(const char *out) {
    int nerr = 0;
    for (const char *q = out; (q = strstr(q, "kinema: ")); q++)
        if (q == out || q[-1] == '\n')
            nerr++;
    const char *last = strstr(out, "kinema: ");
    return nerr == 1 && last && strchr(last, '\n') == strrchr(out, '\n');
}

KT_TEST(cascade_cli_generate_runs_every_stage) {
    const char *dir = export_cascade("casc", KN_F16);
    if (!dir)
        return;
    char out[16384], keep[700], o[700];
    snprintf(keep, sizeof keep, "%s/stages", kt_tmpdir());
    snprintf(o, sizeof o, "%s/final.mp4", kt_tmpdir());
    int rc = kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 2 -g 1 --keep-stages '%s' -o '%s' -t 2",
                    kt_bin(), dir, keep, o);
    KT_CHECKF(rc == 0, "generate failed (%d): %s", rc, out);
    KT_CHECKF(strstr(out, "stage 0 base") && strstr(out, "stage 1 tsr") && strstr(out, "stage 2 tsr") &&
                  strstr(out, "stage 3 ssr") && strstr(out, "total") && strstr(out, "memory:"),
              "stage times missing: %s", out);
    char p[800];
    snprintf(p, sizeof p, "%s/0-base.mp4", keep);
    expect_video(p, BASE_F, BASE_PX, BASE_PX, BASE_FPS);
    snprintf(p, sizeof p, "%s/1-tsr.mp4", keep);
    expect_video(p, 2 * BASE_F, BASE_PX, BASE_PX, 2 * BASE_FPS);
    snprintf(p, sizeof p, "%s/2-tsr.mp4", keep);
    expect_video(p, 4 * BASE_F, BASE_PX, BASE_PX, 4 * BASE_FPS);
    snprintf(p, sizeof p, "%s/3-ssr.mp4", keep);
    expect_video(p, 4 * BASE_F, 2 * BASE_PX, 2 * BASE_PX, 4 * BASE_FPS);
    expect_video(o, 4 * BASE_F, 2 * BASE_PX, 2 * BASE_PX, 4 * BASE_FPS);
    KT_CHECKF(same_file(p, o), "the final video differs from the last stage's");
    /* --no-cascade stops after the base; --fps sets the base's rate */
    snprintf(o, sizeof o, "%s/base.y4m", kt_tmpdir());
    rc = kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 2 -g 1 --no-cascade --fps 6 -o '%s' -t 2",
                kt_bin(), dir, o);
    KT_CHECKF(rc == 0, "generate --no-cascade failed (%d): %s", rc, out);
    KT_CHECK(!strstr(out, "stage 1"));
    expect_video(o, BASE_F, BASE_PX, BASE_PX, 6);
    /* the memory estimate counts the SR stages: more than the base alone */
    double mib_base = 0, mib_casc = 0;
    const char *m = strstr(out, "MiB of weights + about ");
    KT_CHECKF(m && sscanf(m, "MiB of weights + about %lf", &mib_base) == 1, "%s", out);
    /* the fps conditioning reaches the base: another rate, another video */
    snprintf(p, sizeof p, "%s/base4.y4m", kt_tmpdir());
    rc = kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 2 -g 1 --no-cascade --fps 4 -o '%s' -t 2",
                kt_bin(), dir, p);
    KT_CHECKF(rc == 0, "%s", out);
    KT_CHECK(kt_run(out, sizeof out, "cmp -s '%s' '%s'", o, p) != 0);
    rc = kt_run(out, sizeof out, "%s generate -m '%s' 'a red circle' --steps 2 -g 1 -o '%s' -t 2", kt_bin(), dir, o);
    KT_CHECKF(rc == 0, "%s", out);
    m = strstr(out, "MiB of weights + about ");
    KT_CHECKF(m && sscanf(m, "MiB of weights + about %lf", &mib_casc) == 1, "%s", out);
    KT_CHECKF(mib_casc > mib_base, "cascade estimate %g MiB <= base %g MiB", mib_casc, mib_base);
}

/* The same cascade output at 1 and 2 threads (and another seed gives another video). */
KT_TEST(cascade_cli_same_video_for_any_thread_count) {
    const char *dir = export_cascade("casc", KN_F32);
    if (!dir)
        return;
    char out[8192], a[700], b[700];
    snprintf(a, sizeof a, "%s/a.y4m", kt_tmpdir());
    snprintf(b, sizeof b, "%s/b.y4m", kt_tmpdir());
    const char *args = "'a red circle' --steps 2 -g 3 --frames 4 -s 5";
    KT_CHECKF(kt_run(out, sizeof out, "%s generate -m '%s' %s -o '%s' -t 1", kt_bin(), dir, args, a) == 0, "%s", out);
    KT_CHECKF(kt_run(out, sizeof out, "%s generate -m '%s' %s -o '%s' -t 2", kt_bin(), dir, args, b) == 0, "%s", out);
    KT_CHECK(kt_run(out, sizeof out, "cmp '%s' '%s'", a, b) == 0);
    expect_video(a, 16, 2 * BASE_PX, 2 * BASE_PX, 4 * BASE_FPS);
    KT_CHECKF(kt_run(out, sizeof out, "%s interpolate '%s' -m '%s' --steps 2 -o '%s' -t 1", kt_bin(), a, dir, b) == 0,
              "%s", out);
    KT_CHECKF(kt_run(out, sizeof out, "%s interpolate '%s' -m '%s' --steps 2 -o '%s.2.y4m' -t 2", kt_bin(), a, dir, b) == 0,
              "%s", out);
    KT_CHECK(kt_run(out, sizeof out, "cmp '%s' '%s.2.y4m'", b, b) == 0);
    /* 3 threads (more than the cores) too, for generate and upscale */
    KT_CHECKF(kt_run(out, sizeof out, "%s generate -m '%s' %s -o '%s' -t 3", kt_bin(), dir, args, b) == 0, "%s", out);
    KT_CHECK(kt_run(out, sizeof out, "cmp '%s' '%s'", a, b) == 0);
    KT_CHECKF(kt_run(out, sizeof out, "%s upscale '%s' -m '%s' --steps 2 -o '%s.u1.y4m' -t 1", kt_bin(), a, dir, a) == 0,
              "%s", out);
    KT_CHECKF(kt_run(out, sizeof out, "%s upscale '%s' -m '%s' --steps 2 -o '%s.u3.y4m' -t 3", kt_bin(), a, dir, a) == 0,
              "%s", out);
    KT_CHECK(kt_run(out, sizeof out, "cmp '%s.u1.y4m' '%s.u3.y4m'", a, a) == 0);
    expect_video(b, 16, 2 * BASE_PX, 2 * BASE_PX, 4 * BASE_FPS);
}

/* A cascade of one stage: only the spatial SR. generate names it 1-ssr; interpolate refuses. */
KT_TEST(cascade_cli_spatial_only_cascade) {
    cascade_models m;
    if (!make_models(&m))
        return;
    char dir[700], keep[700], o[700], out[8192], p[800];
    snprintf(dir, sizeof dir, "%s/ssr_only", kt_tmpdir());
    snprintf(keep, sizeof keep, "%s/stages", kt_tmpdir());
    snprintf(o, sizeof o, "%s/o.y4m", kt_tmpdir());
    kn_export_opts eo = cascade_opts(&m, KN_F32);
    eo.tsr = NULL;
    KT_OK(kn_export_t2v(dir, m.unet, m.vae, m.text, &m.sched, "models/default/tokenizer", "<|endoftext|>", &eo));
    free_models(&m);
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    char *mi = kt_slurp(p, NULL);
    KT_CHECK(mi && strstr(mi, "\"ssr\"") && !strstr(mi, "\"tsr\""));
    free(mi);
    int rc = kt_run(out, sizeof out, "%s generate -m '%s' x --steps 1 -g 1 --keep-stages '%s' -o '%s'", kt_bin(), dir,
                    keep, o);
    KT_CHECKF(rc == 0, "%s", out);
    snprintf(p, sizeof p, "%s/1-ssr.mp4", keep);
    expect_video(p, BASE_F, 2 * BASE_PX, 2 * BASE_PX, BASE_FPS);
    expect_video(o, BASE_F, 2 * BASE_PX, 2 * BASE_PX, BASE_FPS);
    rc = kt_run(out, sizeof out, "%s interpolate '%s' -m '%s' -o '%s/never.y4m'", kt_bin(), o, dir, kt_tmpdir());
    KT_CHECK(rc != 0 && strstr(out, "has no temporal SR stage") && one_error_line(out));
}

KT_TEST(cascade_cli_stage_commands_shapes_and_rates) {
    const char *dir = export_cascade("casc", KN_F16);
    if (!dir)
        return;
    const char *in = input_clip("in.y4m", 6, BASE_PX, BASE_PX, 5);
    const char *big = input_clip("big.y4m", 3, 24, 20, 10);  /* not the base size: resized */
    const char *odd = input_clip("odd.y4m", 3, 21, 13, 12); /* not a multiple of the VAE factor */
    char out[8192], o[700];
    struct {
        const char *cmd, *in;
        int frames, w, h;
        double fps;
    } cases[] = {
        {"interpolate IN --factor 2", in, 12, BASE_PX, BASE_PX, 10},
        {"interpolate IN --factor 3 -p 'a red square' -g 2", in, 18, BASE_PX, BASE_PX, 15},
        {"interpolate IN", big, 6, BASE_PX, BASE_PX, 20},
        {"extend IN --frames 9", in, 9, BASE_PX, BASE_PX, 5},
        {"upscale IN --scale 2", in, 6, 2 * BASE_PX, 2 * BASE_PX, 5},
        {"upscale IN", big, 3, 48, 40, 10},
        {"upscale IN", odd, 3, 40, 24, 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(o, sizeof o, "%s/out%zu.y4m", kt_tmpdir(), i);
        char args[1024];
        const char *p = strstr(cases[i].cmd, "IN");
        snprintf(args, sizeof args, "%.*s'%s'%s", (int)(p - cases[i].cmd), cases[i].cmd, cases[i].in, p + 2);
        int rc = kt_run(out, sizeof out, "%s %s -m '%s' --steps 2 -s 3 -t 2 -o '%s'", kt_bin(), args, dir, o);
        KT_CHECKF(rc == 0, "case %zu (%s) failed (%d): %s", i, cases[i].cmd, rc, out);
        expect_video(o, cases[i].frames, cases[i].w, cases[i].h, cases[i].fps);
    }
}

KT_TEST(cascade_cli_bad_input_fails_cleanly) {
    const char *dir = export_cascade("casc", KN_F16);
    if (!dir)
        return;
    /* a plain (single-stage) folder: no SR stages */
    cascade_models m;
    if (!make_models(&m))
        return;
    char plain[700];
    snprintf(plain, sizeof plain, "%s/plain", kt_tmpdir());
    KT_OK(kn_export_t2v(plain, m.unet, m.vae, m.text, &m.sched, "models/default/tokenizer", "<|endoftext|>", NULL));
    free_models(&m);
    const char *in = input_clip("in.y4m", 4, BASE_PX, BASE_PX, 4);
    char garbage[700];
    snprintf(garbage, sizeof garbage, "%s/garbage.mp4", kt_tmpdir());
    write_text(garbage, "not a video at all");
    char out[8192], o[700];
    snprintf(o, sizeof o, "%s/never.mp4", kt_tmpdir());
    struct {
        const char *args, *msg;
    } cases[] = {
        {"interpolate IN -m PLAIN", "has no temporal SR stage"},
        {"extend IN -m PLAIN --frames 8", "has no temporal SR stage"},
        {"upscale IN -m PLAIN", "has no spatial SR stage"},
        {"interpolate IN -m CASC --factor 1", "--factor"},
        {"interpolate IN -m CASC --factor two", "--factor"},
        {"upscale IN -m CASC --scale 9", "--scale"},
        {"extend IN -m CASC --frames 3", "must be more than the input's 4 frames"},
        {"extend IN -m CASC", "--frames N"},
        {"interpolate /nonexistent/clip.mp4 -m CASC", "/nonexistent/clip.mp4"},
        {"upscale GARBAGE -m CASC", "garbage.mp4"},
        {"interpolate IN -m /nonexistent", "/nonexistent"},
        {"interpolate -m CASC", "no input video"},
        {"generate x -m CASC --keep-stages STAGES --no-cascade", "--keep-stages needs a cascade run"},
        {"generate x -m PLAIN --keep-stages STAGES", "--keep-stages needs a cascade run"},
        {"generate x -m CASC --vae taesd --vae-path /nonexistent", "--no-cascade"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[2048] = {0};
        for (const char *p = cases[i].args; *p;) {
            const char *sub = NULL;
            size_t n = 0;
            if (!strncmp(p, "IN", 2)) sub = in, n = 2;
            else if (!strncmp(p, "PLAIN", 5)) sub = plain, n = 5;
            else if (!strncmp(p, "CASC", 4)) sub = dir, n = 4;
            else if (!strncmp(p, "GARBAGE", 7)) sub = garbage, n = 7;
            else if (!strncmp(p, "STAGES", 6)) sub = kt_tmpdir(), n = 6;
            size_t L = strlen(args);
            if (sub) {
                snprintf(args + L, sizeof args - L, "'%s'", sub);
                p += n;
            } else {
                args[L] = *p++;
            }
        }
        int rc = kt_run(out, sizeof out, "%s %s --steps 1 -o '%s'", kt_bin(), args, o);
        KT_CHECKF(rc != 0, "case %zu (%s) succeeded", i, cases[i].args);
        KT_CHECKF(strstr(out, cases[i].msg) != NULL, "case %zu: message '%s' lacks '%s'", i, out, cases[i].msg);
        KT_CHECKF(one_error_line(out), "case %zu: not one error line: %s", i, out);
        KT_CHECKF(file_size(o) < 0, "case %zu left %s behind", i, o);
    }
}

/* interpolate keeps the input frames: output frame factor * i is input frame i, unchanged (not
 * its VAE round trip); extend keeps the first F. The generated frames are the decoded samples. */
KT_TEST(cascade_cli_known_frames_are_kept) {
    const char *dir = export_cascade("casc", KN_F32);
    if (!dir)
        return;
    const char *in = input_clip("in.y4m", 4, BASE_PX, BASE_PX, 4);
    char out[8192], oi[700], oe[700];
    snprintf(oi, sizeof oi, "%s/i.y4m", kt_tmpdir());
    snprintf(oe, sizeof oe, "%s/e.y4m", kt_tmpdir());
    KT_CHECKF(kt_run(out, sizeof out, "%s interpolate '%s' -m '%s' --factor 3 --steps 2 -o '%s'", kt_bin(), in, dir, oi) == 0,
              "%s", out);
    KT_CHECKF(kt_run(out, sizeof out, "%s extend '%s' -m '%s' --frames 7 --steps 2 -o '%s'", kt_bin(), in, dir, oe) == 0,
              "%s", out);
    /* the reference: encode + decode of the input through the same VAE */
    kn_t2v_bundle b;
    kn_video v = {0}, vi = {0}, ve = {0};
    kn_tensor vt = {0};
    float *lat = NULL, *dec = NULL;
    uint8_t *ref = NULL;
    kn_arena *A = NULL;
    if (kn_t2v_load(dir, NULL, &b) != KN_OK) {
        KT_CHECKF(0, "%s", kn_last_error());
        return;
    }
    const int64_t F = 4, S = BASE_PX, h = S / 2, n = S * S * 3;
    KT_OK(kn_video_read(in, NULL, &v));
    KT_OK(kn_video_read(oi, NULL, &vi));
    KT_OK(kn_video_read(oe, NULL, &ve));
    KT_CHECK(v.frames == F && vi.frames == 3 * F && ve.frames == 7);
    A = kn_arena_new((size_t)256 << 20);
    lat = malloc((size_t)(4 * F * h * h) * sizeof(float));
    dec = malloc((size_t)(3 * F * S * S) * sizeof(float));
    ref = malloc((size_t)(F * n));
    if (v.frames != F || vi.frames != 3 * F || ve.frames != 7 || !A || !lat || !dec || !ref)
        goto out;
    KT_OK(kn_video_to_tensor(NULL, &v, 1, &vt));
    KT_OK(kn_t2v_encode_video(&b.m, A, vt.data, F, S, S, 4, lat));
    KT_OK(kn_t2v_decode(&b.m, A, lat, F, h, h, 4, dec));
    kn_video_to_rgb8(dec, F, S, S, ref);
    int di = 0, de = 0, dmid = 0, dround = 0;
    for (int64_t t = 0; t < F; t++)
        for (int64_t j = 0; j < n; j++) {
            int r = ref[t * n + j], x = kn_video_frame(&v, (int)t)[j];
            di = KN_MAX(di, abs((int)kn_video_frame(&vi, (int)(3 * t))[j] - x));
            de = KN_MAX(de, abs((int)kn_video_frame(&ve, (int)t)[j] - x));
            dmid = KN_MAX(dmid, abs((int)kn_video_frame(&vi, (int)(3 * t + 1))[j] - r));
            dround = KN_MAX(dround, abs(r - x));
        }
    int lo = 255, hi = 0;
    for (int64_t j = 0; j < F * n; j++)
        lo = KN_MIN(lo, ref[j]), hi = KN_MAX(hi, ref[j]);
    KT_CHECKF(hi - lo > 20, "the reference frames are flat (%d..%d): the check would be empty", lo, hi);
    /* .y4m stores YUV 4:4:4: a few levels of rounding */
    KT_CHECKF(di <= 4, "interpolate: kept frames differ from the input's by %d", di);
    KT_CHECKF(de <= 4, "extend: kept frames differ from the input's by %d", de);
    KT_CHECKF(dmid > 4, "interpolate: generated frames equal the known ones (max diff %d)", dmid);
    KT_CHECKF(dround > 4, "the VAE round trip equals the input (max diff %d): the check would be empty", dround);
out:
    kn_tensor_free(&vt);
    kn_video_free(&v);
    kn_video_free(&vi);
    kn_video_free(&ve);
    free(lat);
    free(dec);
    free(ref);
    kn_arena_free(A);
    kn_t2v_unload(&b);
}
