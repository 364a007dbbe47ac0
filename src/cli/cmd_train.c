/* cmd_train.c — `kinema train --recipe NAME --out DIR [--steps N] [--save-every K] [--seed S]
 * [--resume] [--init MODEL]`: trains a latent text-to-video model from scratch on Shapes-T2V (or
 * fine-tunes one exported before: --init), logs the loss to DIR/log.csv and exports the result as
 * a diffusers folder DIR/model. */
#include "cli/cli.h"
#include "cli/dist.h"
#include "io/checkpoint_io.h"
#include "io/export.h"
#include "io/folder_data.h"
#include "io/init_load.h"
#include "io/recipe_config.h"
#include "io/tokenizer.h"
#include "train/recipes.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything a checkpoint holds: one state per model (the SR stages only in cascade recipes; the
 * CLIP stage's two states, the text encoder's contrastive optimiser and the video tower, only in
 * recipes with a CLIP stage), in this order. A checkpoint of a recipe without the SR or CLIP
 * stages holds the first three, as before those stages existed. */
enum { K_VAE, K_UNET, K_TEXT, K_TSR, K_SSR, K_CLIP, K_CLIP_TOWER, K_MAX };
static const char *const stage_tags[K_MAX] = {"vae", "unet", "text", "tsr", "ssr", "clip", "clip_tower"};

typedef struct {
    kn_stage_state *stage[K_MAX]; /* NULL: not in this recipe */
    kn_train_state ck[K_MAX];
    const char *path;
    char config[2560];
} ckpt_ctx;

static void ckpt_bind(ckpt_ctx *k, kn_params *P[K_MAX]) {
    /* the CLIP stage's text-encoder state holds the text encoder's values a second time, under
     * "clip.": entries are views of the same live memory, so both copies are always equal */
    static const char *prefix[K_MAX] = {NULL, NULL, NULL, "tsr.", "ssr.", "clip.", NULL};
    for (int i = 0; i < K_MAX; i++) {
        if (!k->stage[i])
            continue;
        kn_train_state *c = &k->ck[i];
        memset(c, 0, sizeof *c);
        c->P = P[i];
        c->opt = &k->stage[i]->opt;
        c->ema = k->stage[i]->have_ema ? &k->stage[i]->ema : NULL;
        c->tag = stage_tags[i];
        c->param_prefix = prefix[i];
        c->config_json = k->config;
    }
}

static kn_status ckpt_save(ckpt_ctx *k) {
    const kn_train_state *S[K_MAX];
    int n = 0;
    for (int i = 0; i < K_MAX; i++)
        if (k->stage[i]) {
            k->ck[i].step = k->stage[i]->step;
            S[n++] = &k->ck[i];
        }
    return kn_ckpt_save_many(k->path, S, n);
}

static kn_status ckpt_load(ckpt_ctx *k) {
    kn_train_state *S[K_MAX];
    int n = 0;
    for (int i = 0; i < K_MAX; i++)
        if (k->stage[i])
            S[n++] = &k->ck[i];
    KN_TRY(kn_ckpt_load_many(k->path, S, n));
    for (int i = 0; i < K_MAX; i++)
        if (k->stage[i])
            k->stage[i]->step = k->ck[i].step;
    return KN_OK;
}

typedef struct {
    FILE *log;
    double t0;
    int64_t first;
    int quiet;
    long save_every;
    ckpt_ctx *ck;
    int failed;
    int rank; /* only rank 0 writes */
} progress_ctx;

static int on_progress(const char *stage, int64_t step, int64_t steps, double loss, void *user) {
    progress_ctx *p = user;
    /* the stage's step counter is advanced by the trainer after this call: save as if it were.
     * Under MPI every rank must stop at the same step: rank 0's flag decides. */
    int stop = kn_dist_bcast_int(kn_train_stop_requested());
    loss = kn_dist_mean(loss); /* the loss of the whole batch, over all ranks */
    /* the row goes out before the checkpoint that covers it: a SIGKILL between the two leaves a
     * row that resume trims, never a checkpoint whose last row is missing */
    double el = now() - p->t0;
    double rate = (step + 1 - p->first) / (el > 1e-9 ? el : 1e-9);
    if (p->log) {
        fprintf(p->log, "%s,%lld,%.6g,%.3f\n", stage, (long long)step, loss, el);
        fflush(p->log);
    }
    if (p->rank == 0 && ((p->save_every > 0 && (step + 1) % p->save_every == 0) || stop || step + 1 == steps)) {
        int k = 0;
        while (k < K_MAX - 1 && strcmp(stage, stage_tags[k]))
            k++;
        /* the base's text-encoder state and the CLIP stage's tower share their stage's counter */
        int k2 = k == K_UNET ? K_TEXT : k == K_CLIP ? K_CLIP_TOWER : -1;
        kn_stage_state *s = p->ck->stage[k], *s2 = k2 >= 0 ? p->ck->stage[k2] : NULL;
        int64_t keep = s->step;
        s->step = step + 1;
        if (s2)
            s2->step = step + 1;
        kn_status st = ckpt_save(p->ck);
        s->step = keep;
        if (s2)
            s2->step = keep;
        if (st != KN_OK) {
            p->failed = 1;
            return 1;
        }
    }
    if (!p->quiet) {
        int width = 30, done = (int)(width * (step + 1) / steps);
        fprintf(stderr, "\r%-5s [%.*s%*s] %lld/%lld loss %.4f %.2f it/s ETA %.0fs   ", stage, done,
                "##############################", width - done, "", (long long)(step + 1), (long long)steps, loss, rate,
                (steps - step - 1) / (rate > 0 ? rate : 1));
        if (step + 1 == steps)
            fputc('\n', stderr);
    }
    return stop;
}

/* Keeps the rows of log.csv that come before the checkpoint (rows of stage k with step <
 * steps[k]), so that a resumed run's log equals an uninterrupted run's. */
static kn_status trim_log(const char *path, const ckpt_ctx *k) {
    FILE *f = fopen(path, "r");
    if (!f)
        return KN_OK;
    char tmp[2100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return kn_fail(KN_ERR_IO, "%s: cannot write", tmp);
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char stage[32];
        long long step;
        int drop = 0;
        if (sscanf(line, "%31[^,],%lld,", stage, &step) == 2)
            for (int i = 0; i < K_MAX; i++)
                drop |= k->stage[i] && !strcmp(stage, stage_tags[i]) && step >= k->stage[i]->step;
        if (drop)
            continue;
        fputs(line, o);
    }
    fclose(f);
    if (fclose(o) != 0 || rename(tmp, path) != 0)
        return kn_fail(KN_ERR_IO, "%s: cannot rewrite", path);
    return KN_OK;
}

typedef struct { kn_tokenizer *tok; int pad; } tok_ctx;

static int folder_is_image(uint64_t index, void *user) { return kn_folder_source_is_image(user, index); }

static kn_status tokenize_cb(const char *text, int32_t *ids, int len, void *user) {
    tok_ctx *t = user;
    return kn_tokenize_padded(t->tok, text, ids, len, t->pad, NULL, NULL);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void usage(FILE *f) {
    fprintf(f, "usage: kinema train --recipe NAME --out DIR [options]\n"
               "  --recipe NAME      built-in recipe: smoke, tiny, smoke-cascade, shapes-mav, shapes-imagen\n"
               "  --config FILE      a JSON recipe: {\"base\": NAME, overrides...} (see src/io/recipe_config.h)\n"
               "  --out DIR          where the log (log.csv) and the model (DIR/model) go\n"
               "  --steps N          UNet steps (default: the recipe's); the other stages scale with it\n"
               "  --until STAGE      stop after stage vae, clip, base, tsr or ssr (a later run with --resume goes\n"
               "                     on); the stages run in that order, clip only in recipes that have it\n"
               "  --save-every K     write DIR/last.safetensors every K steps (default 50; also at the end of\n"
               "                     each stage and on SIGINT/SIGTERM)\n"
               "  --resume           continue from DIR/last.safetensors (same recipe and options)\n"
               "  --init MODEL       start from an exported model folder (a run's DIR/model or a compatible\n"
               "                     diffusers folder): its vae, text_encoder, unet (tsr, ssr) weights by name;\n"
               "                     temporal layers it lacks keep their identity init; the VAE stage is\n"
               "                     skipped and its scaling factor kept (a folder with vae/ alone: a new\n"
               "                     model on that trained autoencoder); so is the clip stage when the\n"
               "                     folder holds a text_encoder\n"
               "  --bf16             matrix products in bf16 with f32 accumulation (AVX512-BF16); weights,\n"
               "                     gradients and optimiser state stay f32 (recipe key \"bf16\": true)\n"
               "  --freeze-spatial   train only the UNet's temporal layers; spatial weights and the text\n"
               "                     encoder stay as loaded (CogVideo; recipe key \"freeze_spatial\": true)\n"
               "  --batch N          clips per step and per rank (default: the recipe's)\n"
               "  --export-only      write DIR/model from DIR/last.safetensors as it is, without training\n"
               "  --grad-checkpointing  recompute UNet activations in backward: less memory, more time\n"
               "  --export-dtype T   f32 (default), f16 or bf16 weights in DIR/model\n"
               "  --data DIR         train on your own clips: videos and images in DIR, each with a\n"
               "                     caption in NAME.txt beside it (default: Shapes-T2V rendered on the fly)\n"
               "  Under `mpirun -np K kinema train ...` the K ranks split each step's data and average\n"
               "  their gradients (K ranks x batch B = one rank x batch K*B); rank 0 writes the files.\n"
               "  --seed S           data and initialisation seed (default: the recipe's)\n"
               "  --tokenizer DIR    CLIP vocabulary (vocab.json + merges.txt; default ../shared/fixtures/clip)\n"
               "  --threads N        threads (default: all cores)\n"
               "  --quiet            no progress bar\n");
}

static int cmd_train(int argc, char **argv) {
    const char *config_path = NULL;
    const char *recipe = NULL, *out = NULL, *tokdir = NULL, *data_dir = NULL, *export_dtype = "f32", *until_s = NULL;
    const char *init_dir = NULL;
    long steps = -1, threads = 0, save_every = 50, batch = 0;
    uint64_t seed = 0;
    int have_seed = 0, quiet = 0, resume = 0, export_only = 0, checkpointing = 0, freeze_spatial = 0, bf16 = 0;
    const char *seed_s = NULL;
    const kn_cli_opt opts[] = {
        {"--recipe", "-r", KN_OPT_STR, &recipe},
        {"--config", "-c", KN_OPT_STR, &config_path},
        {"--out", "-o", KN_OPT_STR, &out},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, 100000000},
        {"--seed", "-s", KN_OPT_STR, &seed_s},
        {"--tokenizer", NULL, KN_OPT_STR, &tokdir},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
        {"--quiet", "-q", KN_OPT_FLAG, &quiet},
        {"--save-every", NULL, KN_OPT_INT, &save_every, 0, 100000000},
        {"--resume", NULL, KN_OPT_FLAG, &resume},
        {"--batch", NULL, KN_OPT_INT, &batch, 1, 4096},
        {"--data", NULL, KN_OPT_STR, &data_dir},
        {"--export-only", NULL, KN_OPT_FLAG, &export_only},
        {"--grad-checkpointing", NULL, KN_OPT_FLAG, &checkpointing},
        {"--export-dtype", NULL, KN_OPT_STR, &export_dtype},
        {"--until", NULL, KN_OPT_STR, &until_s},
        {"--init", NULL, KN_OPT_STR, &init_dir},
        {"--freeze-spatial", NULL, KN_OPT_FLAG, &freeze_spatial},
        {"--bf16", NULL, KN_OPT_FLAG, &bf16},
    };
    const char *pos[1];
    int npos;
    int r = kn_cli_parse("train", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (!recipe && !config_path)
        return kn_cli_error("train: --recipe NAME or --config FILE is required (recipes: smoke, tiny)");
    if (recipe && config_path)
        return kn_cli_error("train: give --recipe or --config, not both");
    if (!out)
        return kn_cli_error("train: --out DIR is required");
    if (seed_s) {
        char *end;
        errno = 0;
        seed = strtoull(seed_s, &end, 10);
        if (errno || end == seed_s || *end || seed_s[0] == '-')
            return kn_cli_error("option --seed: '%s' is not a non-negative integer", seed_s);
        have_seed = 1;
    }
    kn_recipe rc;
    if (config_path ? kn_recipe_load(config_path, &rc) != KN_OK : kn_recipe_get(recipe, &rc) != KN_OK)
        return kn_cli_error("train: %s", kn_last_error());
    char recipe_id[160];
    if (config_path) { /* the checkpoint remembers the file's contents, not its name */
        FILE *cf = fopen(config_path, "rb");
        unsigned long h = 5381;
        int ch;
        while (cf && (ch = fgetc(cf)) != EOF)
            h = h * 33 + (unsigned char)ch;
        if (cf) fclose(cf);
        snprintf(recipe_id, sizeof recipe_id, "config-%08lx", h & 0xffffffffUL);
    } else {
        snprintf(recipe_id, sizeof recipe_id, "%s", rc.name);
    }
    int until = 3; /* the last stage run: 0 vae, 1 base, 2 tsr, 3 ssr */
    int until_clip = 0; /* --until clip: stop after the CLIP stage */
    if (until_s) {
        static const char *const names[4] = {"vae", "base", "tsr", "ssr"};
        for (until = 0; until < 4 && strcmp(until_s, names[until]); until++)
            ;
        if (!strcmp(until_s, "clip")) {
            if (!rc.has_clip)
                return kn_cli_error("train: --until clip, but recipe %s has no clip stage", rc.name);
            until_clip = 1;
            until = 1;
        } else if (until == 4) {
            return kn_cli_error("train: --until must be vae, clip, base, tsr or ssr, not '%s'", until_s);
        }
    }
    kn_train_opts *so[5] = {&rc.vae_opts, &rc.unet_opts, &rc.tsr_opts, &rc.ssr_opts, &rc.clip_opts};
    if (steps > 0) {
        double f = (double)steps / rc.unet_opts.steps;
        for (int i = 0; i < 5; i++) {
            kn_train_opts *o = so[i];
            if ((i == 2 || i == 3) && !rc.has_tsr && !rc.has_ssr)
                continue;
            if (i == 4 && !rc.has_clip)
                continue;
            o->steps = i == 1 ? steps : (int64_t)(o->steps * f) > 1 ? (int64_t)(o->steps * f) : 1;
            o->image_steps = (int64_t)(o->image_steps * f);
            if (o->warmup >= o->steps) o->warmup = o->steps / 10;
        }
    }
    if (have_seed) {
        for (int i = 0; i < 4; i++)
            so[i]->seed = seed * 4 + 1 + (uint64_t)i;
        rc.clip_opts.seed = (seed * 4 + 2) ^ 0xC11F5EEDULL; /* apart from every stage's seed of any --seed */
    }
    if (batch > 0)
        rc.data.batch = (int)batch;
    if (export_only)
        resume = 1;
    rc.unet_opts.checkpointing = rc.tsr_opts.checkpointing = rc.ssr_opts.checkpointing = checkpointing;
    if (freeze_spatial)
        rc.unet_opts.freeze_spatial = 1;
    if (bf16)
        rc.vae_opts.bf16 = rc.unet_opts.bf16 = rc.tsr_opts.bf16 = rc.ssr_opts.bf16 = rc.clip_opts.bf16 = 1;
    kn_dtype edt = KN_F32;
    if (!strcmp(export_dtype, "f16")) edt = KN_F16;
    else if (!strcmp(export_dtype, "bf16")) edt = KN_BF16;
    else if (strcmp(export_dtype, "f32")) return kn_cli_error("train: --export-dtype must be f32, f16 or bf16");
    int rank = 0, world = 1;
    if (kn_dist_init(NULL, NULL, &rank, &world) != KN_OK)
        return kn_cli_error("train: %s", kn_last_error());
    for (int i = 0; i < 5; i++) {
        so[i]->rank = rank;
        so[i]->world = world;
        if (world > 1)
            so[i]->grad_sync = kn_dist_average_grads;
    }
    if (world > 1) {
        if (rank != 0)
            quiet = 1;
    }
    if (!tokdir)
        tokdir = "../shared/fixtures/clip";
    if (!is_dir(tokdir))
        return kn_cli_error("train: tokenizer folder %s not found (give --tokenizer DIR)", tokdir);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return kn_cli_error("train: cannot create %s: %s", out, strerror(errno));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));

    int ret = 1;
    kn_folder_source *fsrc = NULL;
    kn_vae *vae = NULL;
    kn_clip_text *text = NULL;
    kn_unet3d *unet = NULL, *tsr = NULL, *ssr = NULL;
    kn_clip_tower *tower = NULL;
    int no_clip = 0; /* a checkpoint from before the recipe's CLIP stage: skip it */
    kn_tokenizer *tok = NULL;
    kn_arena *A = NULL;
    FILE *log = NULL;
    kn_stage_state sv = {0}, su = {0}, st_ = {0}, stsr = {0}, sssr = {0}, sclip = {0}, stower = {0};
    int sv_ok = 0, su_ok = 0, st_ok = 0, stsr_ok = 0, sssr_ok = 0, sclip_ok = 0, stower_ok = 0;
    if (data_dir) {
        fsrc = kn_folder_source_open(data_dir, rc.data.size, rc.data.frames, rc.data.fps);
        if (!fsrc) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        rc.data.source = kn_folder_source_clip;
        rc.data.source_user = fsrc;
        rc.data.is_image = folder_is_image;
        if (rank == 0)
            fprintf(stderr, "data: %d captioned clips and images in %s (%d skipped without a caption)\n",
                    kn_folder_source_count(fsrc), data_dir, kn_folder_source_skipped(fsrc));
    }
    tok = kn_tokenizer_load(tokdir);
    if (!tok) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    vae = kn_vae_new(&rc.vae);
    text = vae ? kn_clip_text_new(&rc.text) : NULL;
    unet = text ? kn_unet3d_new(&rc.unet) : NULL;
    if (unet && rc.has_tsr)
        tsr = kn_unet3d_new(&rc.tsr);
    if (unet && rc.has_ssr)
        ssr = kn_unet3d_new(&rc.ssr);
    if (unet && rc.has_clip)
        tower = kn_clip_tower_new(&rc.clip);
    if (!unet || (rc.has_tsr && !tsr) || (rc.has_ssr && !ssr) || (rc.has_clip && !tower)) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    kn_params_init_default(&vae->P, rc.vae_opts.seed);
    kn_params_init_default(&text->P, rc.unet_opts.seed ^ 0x7e47);
    kn_params_init_default(&unet->P, rc.unet_opts.seed);
    /* temporal layers start as the identity (Make-A-Video; diffusers' own init of temp_convs) */
    kn_unet3d_init_temporal_identity(unet);
    if (tsr) {
        kn_params_init_default(&tsr->P, rc.tsr_opts.seed);
        kn_unet3d_init_temporal_identity(tsr);
    }
    if (ssr) {
        kn_params_init_default(&ssr->P, rc.ssr_opts.seed);
        kn_unet3d_init_temporal_identity(ssr);
    }
    if (tower)
        kn_clip_tower_init(tower, rc.clip_opts.seed);
    /* --init: the folder's weights replace the fresh ones before any optimiser or EMA state is
     * made from them (the EMA starts as a copy of the loaded weights) */
    kn_init_report irep = {0};
    if (init_dir) {
        if (kn_init_from_folder(init_dir, vae, text, unet, tsr, ssr, &irep) != KN_OK) {
            kn_cli_error("train: %s", kn_last_error());
            goto done;
        }
        if (rank == 0) {
            fprintf(stderr, "init: %d tensors from %s (latent scaling factor %.4f)", irep.loaded, init_dir,
                    (double)irep.vae_scale);
            if (irep.vae_only)
                fprintf(stderr, "; the folder holds a VAE only: text encoder and unet trained from scratch");
            if (irep.fresh)
                fprintf(stderr, "; %d new temporal parameters (%lld values, e.g. %s) keep their identity init",
                        irep.fresh, (long long)irep.fresh_numel, irep.fresh_first);
            if (irep.fresh_options)
                fprintf(stderr, "; %d new fps/noise-aug/text-pool embedding parameters start with zero output",
                        irep.fresh_options);
            if (tsr && !irep.tsr_loaded)
                fprintf(stderr, "; tsr not in the folder: trained from scratch");
            if (ssr && !irep.ssr_loaded)
                fprintf(stderr, "; ssr not in the folder: trained from scratch");
            fputc('\n', stderr);
        }
    }
    char path[2048], ckpath[2048];
    snprintf(ckpath, sizeof ckpath, "%s/last.safetensors", out);
    if (kn_stage_state_init(&sv, &vae->P, &rc.vae_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    sv_ok = 1;
    if (kn_stage_state_init(&su, &unet->P, &rc.unet_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    su_ok = 1;
    if (kn_stage_state_init(&st_, &text->P, &rc.unet_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    st_ok = 1;
    /* the SR stages' states exist in every cascade checkpoint, trained or not yet */
    if (tsr && kn_stage_state_init(&stsr, &tsr->P, &rc.tsr_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    stsr_ok = tsr != NULL;
    if (ssr && kn_stage_state_init(&sssr, &ssr->P, &rc.ssr_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    sssr_ok = ssr != NULL;
    /* the CLIP stage: the text encoder's contrastive optimiser state, and the tower's */
    if (tower && kn_stage_state_init(&sclip, &text->P, &rc.clip_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    sclip_ok = tower != NULL;
    if (tower && kn_stage_state_init(&stower, &tower->P, &rc.clip_opts) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    stower_ok = tower != NULL;
    /* a cascade checkpoint holds the SR states; both SR stages come together (the recipes have
     * both) */
    ckpt_ctx ck = {{&sv, &su, &st_, tsr && ssr ? &stsr : NULL, tsr && ssr ? &sssr : NULL, tower ? &sclip : NULL,
                    tower ? &stower : NULL},
                   {{0}}, ckpath, ""};
    if (!!tsr != !!ssr) {
        kn_cli_error("train: a cascade recipe needs both SR stages");
        goto done;
    }
    char srcfg[256] = "", initcfg[2200] = "";
    if (init_dir) { /* the folder as given, JSON-escaped: --resume must name the same one */
        size_t k = (size_t)snprintf(initcfg, sizeof initcfg, ", \"init\": \"");
        for (const char *q = init_dir; *q && k + 8 < sizeof initcfg; q++) {
            if (*q == '"' || *q == '\\')
                initcfg[k++] = '\\';
            initcfg[k++] = (unsigned char)*q < 0x20 ? '?' : *q;
        }
        snprintf(initcfg + k, sizeof initcfg - k, "\"");
    }
    if (rc.unet_opts.freeze_spatial)
        snprintf(initcfg + strlen(initcfg), sizeof initcfg - strlen(initcfg), ", \"freeze_spatial\": 1");
    if (rc.unet_opts.bf16)
        snprintf(initcfg + strlen(initcfg), sizeof initcfg - strlen(initcfg), ", \"bf16\": 1");
    if (tsr)
        snprintf(srcfg, sizeof srcfg, ", \"tsr_steps\": %lld, \"ssr_steps\": %lld, \"tsr_seed\": %llu, \"ssr_seed\": %llu",
                 (long long)rc.tsr_opts.steps, (long long)rc.ssr_opts.steps, (unsigned long long)rc.tsr_opts.seed,
                 (unsigned long long)rc.ssr_opts.seed);
    /* the config as it was before the recipe had a CLIP stage: a run begun then resumes without it */
    char legacy[sizeof ck.config];
    snprintf(legacy, sizeof legacy,
             "{\"recipe\": \"%s\", \"vae_steps\": %lld, \"unet_steps\": %lld, \"vae_seed\": %llu, \"unet_seed\": %llu, "
             "\"batch\": %d, \"world\": %d%s%s%s}",
             recipe_id, (long long)rc.vae_opts.steps, (long long)rc.unet_opts.steps,
             (unsigned long long)rc.vae_opts.seed, (unsigned long long)rc.unet_opts.seed, rc.data.batch, world,
             data_dir ? ", \"data\": \"folder\"" : "", srcfg, initcfg);
    if (tower)
        snprintf(srcfg + strlen(srcfg), sizeof srcfg - strlen(srcfg),
                 ", \"clip_steps\": %lld, \"clip_seed\": %llu, \"clip_batch\": %d", (long long)rc.clip_opts.steps,
                 (unsigned long long)rc.clip_opts.seed, rc.clip_batch);
    snprintf(ck.config, sizeof ck.config,
             "{\"recipe\": \"%s\", \"vae_steps\": %lld, \"unet_steps\": %lld, \"vae_seed\": %llu, \"unet_seed\": %llu, "
             "\"batch\": %d, \"world\": %d%s%s%s}",
             recipe_id, (long long)rc.vae_opts.steps, (long long)rc.unet_opts.steps,
             (unsigned long long)rc.vae_opts.seed, (unsigned long long)rc.unet_opts.seed, rc.data.batch, world,
             data_dir ? ", \"data\": \"folder\"" : "", srcfg, initcfg);
    /* --init: the VAE comes trained; its stage's steps count as done (a checkpoint loaded below
     * says the same) */
    if (init_dir)
        sv.step = rc.vae_opts.steps;
    /* ... and so does the CLIP stage's when the folder holds a trained text encoder */
    if (init_dir && tower && !irep.vae_only)
        sclip.step = stower.step = rc.clip_opts.steps;
    kn_params *Ps[K_MAX] = {&vae->P, &unet->P, &text->P, tsr ? &tsr->P : NULL, ssr ? &ssr->P : NULL, &text->P,
                            tower ? &tower->P : NULL};
    ckpt_bind(&ck, Ps);
    snprintf(path, sizeof path, "%s/log.csv", out);
    if (resume) {
        struct stat sb;
        if (stat(ckpath, &sb) != 0) {
            kn_cli_error("train: --resume but %s does not exist", ckpath);
            goto done;
        }
        if (rank == 0)
            kn_ckpt_remove_stale_tmp(ckpath);
        char *cfg = kn_ckpt_read_config(ckpath);
        if (cfg && tower && strcmp(cfg, ck.config) && !strcmp(cfg, legacy)) {
            /* begun before this recipe had a CLIP stage: go on as it began, the text encoder trained
             * jointly with the base and no clip states in the checkpoint */
            fprintf(stderr, "%s predates the clip stage: resuming without it (text encoder trained with the base)\n",
                    ckpath);
            ck.stage[K_CLIP] = ck.stage[K_CLIP_TOWER] = NULL;
            snprintf(ck.config, sizeof ck.config, "%s", legacy);
            rc.unet_opts.freeze_text = 0;
            no_clip = 1;
        }
        if (!cfg || strcmp(cfg, ck.config)) {
            kn_cli_error("train: %s was written by another recipe or options (%s); resume with the same ones",
                         ckpath, cfg ? cfg : kn_last_error());
            free(cfg);
            goto done;
        }
        free(cfg);
        if (ckpt_load(&ck) != KN_OK || (rank == 0 && trim_log(path, &ck) != KN_OK)) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        fprintf(stderr, "resumed from %s: vae step %lld", ckpath, (long long)sv.step);
        if (tower && !no_clip)
            fprintf(stderr, ", clip step %lld", (long long)sclip.step);
        fprintf(stderr, ", unet step %lld", (long long)su.step);
        if (tsr)
            fprintf(stderr, ", tsr step %lld, ssr step %lld", (long long)stsr.step, (long long)sssr.step);
        fputc('\n', stderr);
    }
    log = rank == 0 ? fopen(path, resume ? "a" : "w") : NULL;
    if (rank == 0 && !log) {
        kn_cli_error("train: cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    if (log && !resume)
        fprintf(log, "stage,step,loss,seconds\n");
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    A = kn_arena_new(phys / 2);
    if (!A) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    kn_train_install_signal_handlers();
    if (rank == 0)
    fprintf(stderr, "recipe %s: %s\n  vae %zu params, text encoder %zu, unet %zu; data %dx%d, %d frames at %d fps\n",
            rc.name, rc.about, vae->P.numel, text->P.numel, unet->P.numel, rc.data.size, rc.data.size, rc.data.frames,
            rc.data.fps);
    double t0 = now();
    if (export_only) { /* train no further: the loops below start at the end */
        rc.vae_opts.steps = sv.step;
        rc.unet_opts.steps = su.step;
        rc.tsr_opts.steps = stsr.step;
        rc.ssr_opts.steps = sssr.step;
        rc.clip_opts.steps = sclip.step;
        until = su.step == 0 ? 0 : stsr.step == 0 ? 1 : sssr.step == 0 ? 2 : 3;
        if (sv.step == 0) {
            kn_cli_error("train: %s holds no trained VAE yet", ckpath);
            goto done;
        }
    }
    progress_ctx pv = {log, now(), sv.step, quiet, save_every, &ck, 0, rank};
    if (kn_train_vae(vae, &sv, &rc.vae_opts, &rc.data, A, on_progress, &pv) != KN_OK || pv.failed) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    if (kn_train_stop_requested()) {
        fprintf(stderr, "stopped at vae step %lld; resume with --resume\n", (long long)sv.step);
        ret = 0;
        goto done;
    }
    if (until == 0) {
        if (rank == 0)
            fprintf(stderr, "stopped after the vae stage (--until vae); go on with --resume\n");
        ret = 0;
        goto done;
    }
    tok_ctx tc = {tok, kn_tokenizer_eos(tok)};
    if (tower && !no_clip) {
        /* the CLIP stage: the base stage's data, clip_batch clips per step */
        kn_train_data cd = rc.data;
        cd.batch = rc.clip_batch;
        int ran = sclip.step < rc.clip_opts.steps;
        progress_ctx pc = {log, now(), sclip.step, quiet, save_every, &ck, 0, rank};
        if (kn_train_clip(text, tower, &sclip, &stower, &rc.clip_opts, &cd, tokenize_cb, &tc, A, on_progress, &pc) !=
                KN_OK || pc.failed) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        if (kn_train_stop_requested()) {
            fprintf(stderr, "stopped at clip step %lld; resume with --resume\n", (long long)sclip.step);
            ret = 0;
            goto done;
        }
        double acc = 0;
        if (ran && rank == 0) {
            if (kn_clip_retrieval(text, tower, &cd, rc.clip_opts.seed, rc.clip_held, tokenize_cb, &tc, A, &acc) !=
                KN_OK) {
                kn_cli_error("%s", kn_last_error());
                goto done;
            }
            fprintf(stderr, "clip done: caption->clip top-1 retrieval on %d held clips %.1f%% (chance %.1f%%), logit "
                    "scale %.2f\n", rc.clip_held, 100 * acc, 100.0 / rc.clip_held,
                    exp((double)*(float *)tower->logit_scale->v.data));
        }
        if (until_clip) {
            if (rank == 0)
                fprintf(stderr, "stopped after the clip stage (--until clip); go on with --resume\n");
            ret = 0;
            goto done;
        }
    }
    float scale = irep.vae_scale;
    if (!init_dir && kn_vae_measure_scale(vae, &rc.data, rc.vae_opts.seed, 8, A, &scale) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    vae->cfg.scaling_factor = scale;
    if (rank == 0)
        fprintf(stderr, "vae %s; latent scaling factor %.4f\n", init_dir ? "from --init" : "done", scale);
    progress_ctx pu = {log, now(), su.step, quiet, save_every, &ck, 0, rank};
    if (kn_train_unet(unet, text, vae, &rc.sched, &su, &st_, &rc.unet_opts, &rc.data, tokenize_cb, &tc, A, on_progress,
                      &pu) != KN_OK || pu.failed) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    if (kn_train_stop_requested()) {
        fprintf(stderr, "stopped at unet step %lld; resume with --resume\n", (long long)su.step);
        ret = 0;
        goto done;
    }
    /* from here on the base and the text encoder are their EMA weights: the exported ones, and
     * the frozen text encoder of the SR stages */
    if (su.have_ema)
        kn_ema_copy_to(&su.ema, &unet->P);
    if (st_.have_ema && !rc.unet_opts.freeze_text && !rc.unet_opts.freeze_spatial) /* a frozen one never moved */
        kn_ema_copy_to(&st_.ema, &text->P);
    kn_unet3d *sr[2] = {tsr, ssr};
    kn_stage_state *ss[2] = {&stsr, &sssr};
    const kn_train_opts *sro[2] = {&rc.tsr_opts, &rc.ssr_opts};
    const kn_sr_opts *srs[2] = {&rc.tsr_so, &rc.ssr_so};
    const kn_train_data *srd[2] = {&rc.tsr_data, &rc.ssr_data};
    for (int i = 0; i < 2; i++) {
        if (!sr[i] || until < 2 + i)
            continue;
        progress_ctx ps = {log, now(), ss[i]->step, quiet, save_every, &ck, 0, rank};
        if (kn_train_sr(sr[i], srs[i], text, vae, &rc.sched, ss[i], sro[i], srd[i], tokenize_cb, &tc, A, on_progress,
                        &ps) != KN_OK || ps.failed) {
            kn_cli_error("%s", kn_last_error());
            goto done;
        }
        if (kn_train_stop_requested()) {
            fprintf(stderr, "stopped at %s step %lld; resume with --resume\n", i ? "ssr" : "tsr",
                    (long long)ss[i]->step);
            ret = 0;
            goto done;
        }
    }
    /* export the EMA weights of what was trained */
    for (int i = 0; i < 2; i++)
        if (sr[i] && until >= 2 + i && ss[i]->have_ema)
            kn_ema_copy_to(&ss[i]->ema, &sr[i]->P);
    snprintf(path, sizeof path, "%s/model", out);
    kn_export_opts eo = {edt, rc.data.fps, rc.data.frames};
    eo.tsr = until >= 2 ? tsr : NULL;
    eo.ssr = until >= 3 ? ssr : NULL;
    eo.cascade = rc.cascade;
    /* each SR stage samples with what it was trained to predict */
    eo.cascade.tsr_pred = (int)rc.tsr_opts.objective + 1;
    eo.cascade.ssr_pred = (int)rc.ssr_opts.objective + 1;
    if (rank == 0 && kn_export_t2v(path, unet, vae, text, &rc.sched, tokdir, "<|endoftext|>", &eo) != KN_OK) {
        kn_cli_error("%s", kn_last_error());
        goto done;
    }
    kn_dist_barrier();
    if (rank == 0)
        fprintf(stderr, "trained in %.0f s; wrote %s (kinema generate --model %s ...)\n", now() - t0, path, path);
    ret = 0;
done:
    if (sv_ok) kn_stage_state_free(&sv);
    if (su_ok) kn_stage_state_free(&su);
    if (st_ok) kn_stage_state_free(&st_);
    if (stsr_ok) kn_stage_state_free(&stsr);
    if (sssr_ok) kn_stage_state_free(&sssr);
    if (sclip_ok) kn_stage_state_free(&sclip);
    if (stower_ok) kn_stage_state_free(&stower);
    if (log) fclose(log);
    kn_arena_free(A);
    kn_vae_free(vae);
    kn_clip_text_free(text);
    kn_unet3d_free(unet);
    kn_unet3d_free(tsr);
    kn_unet3d_free(ssr);
    kn_clip_tower_free(tower);
    if (tok) kn_tokenizer_free(tok);
    if (fsrc) kn_folder_source_close(fsrc);
    kn_dist_finalize();
    return ret;
}

KN_CLI_COMMAND(train, "train", "train a text-to-video model from scratch (Shapes-T2V)", cmd_train)
