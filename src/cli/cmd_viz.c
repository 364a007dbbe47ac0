/* cmd_viz.c — `kinema viz`: looking inside a model.
 *
 *   kinema viz latent-walk --model DIR -o GRID.png [-p PROMPT] [--seed-a A] [--seed-b B]
 *                          [--points K] [--shown M] [--steps S] [-g G] [--frames F] [--size PX]
 *       A walk through the base model's initial-noise space: K generations of PROMPT whose
 *       starting latents are the spherical interpolation (slerp) of the noise of seed A and of
 *       seed B at t = 0, 1/(K-1), ..., 1 (slerp keeps the norm a Gaussian sample has; a straight
 *       line through the middle would be atypically small noise). Row k of the grid is
 *       generation k, its M columns frames 0 .. F-1 evenly spaced: rows 0 and K-1 are exactly
 *       `kinema generate -s A` / `-s B` with the same settings.
 *
 *   kinema viz flicker IN_CLIP --model DIR -o OUT [-p PROMPT] [--steps S] [--seed K]
 *                          [--frames F] [--gain X]
 *       The spatial SR stage on a low-resolution clip (resampled to the base model's size, at
 *       most F frames): bilinear upsampling | per-frame SR (chunk 1, independent noise per frame)
 *       | video SR (the cascade's chunk / same-noise settings), side by side, and below each its
 *       frame-to-frame difference map (|frame t - frame t-1| x gain): flicker shows up as light in
 *       the bottom row. OUT is a video (format from the extension, e.g. .mp4, .gif, .y4m) of
 *       (F, 2 H, 3 W) at the clip's frame rate.
 *
 *   kinema viz attention [-m DIR] -p PROMPT --word WORD -o OUT [--steps S] [--seed K] [--frames F]
 *                          [-g G] [--alpha A] [--res R]
 *       Cross-attention heat maps of one word over the frames (prompt-to-prompt's "aggregate
 *       attention"): the base model generates PROMPT while every spatial transformer's
 *       cross-attention reports the probability its queries give WORD's tokens (softmax over the
 *       text tokens, mean over heads and over the word's BPE tokens, the prompt's sample of the
 *       CFG batch); each layer's map is resized bilinearly to the latent grid and the maps are
 *       averaged over layers and steps (--res R: only the layers at R rows). The map is normalised over the whole clip (min..max),
 *       coloured with a jet-like map and alpha-blended onto the frames. OUT: a video by its
 *       extension (F, H, W), or for a plain .png a contact sheet of strips of up to 8 frames,
 *       each strip the generated frames above their overlays.
 */
#include "cli/cli.h"
#include "cli/model_path.h"
#include "core/core.h"
#include "io/image.h"
#include "io/t2v_load.h"
#include "io/video.h"
#include "train/stage_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: kinema viz latent-walk --model DIR -o GRID.png [options]\n"
            "       kinema viz flicker IN_CLIP --model DIR -o OUT [options]\n"
            "       kinema viz attention [-m DIR] -p PROMPT --word WORD -o OUT [options]\n"
            "latent-walk: generations along the slerp between the starting noise of two seeds, one row each\n"
            "  -p, --prompt TEXT       prompt (default \"a large red circle moving right\")\n"
            "      --seed-a A, --seed-b B   the two noise seeds (default 0, 1)\n"
            "      --points K          rows: points on the path, both ends included (default 5)\n"
            "      --shown M           frames shown per row, evenly spaced (default 4)\n"
            "      --steps S           denoising steps (default 20)\n"
            "  -g, --guidance G        guidance scale (default 9)\n"
            "      --frames F          frames generated (default: the model's, else 8)\n"
            "flicker: bilinear | per-frame SR | video SR of IN_CLIP, their frame differences below\n"
            "      --steps S           SR denoising steps (default: the cascade's)\n"
            "      --seed K            noise seed (default 0)\n"
            "      --frames F          at most F frames of the clip (default 16)\n"
            "      --gain X            difference map gain (default 4)\n"
            "attention: cross-attention heat map of WORD over the frames (base stage of a cascade)\n"
            "      --word WORD         a word of the prompt (all of its BPE tokens)\n"
            "      --steps S           denoising steps (default 20); --seed K noise seed (default 0)\n"
            "      --frames F          frames (default: the model's, else 8); -g G guidance (default 9)\n"
            "      --alpha A           heat map opacity 0..1 (default 0.5)\n"
            "      --res R             only the layers whose maps have R rows (default: every layer)\n"
            "      OUT                 a video (.mp4, .gif, .webp, .y4m, NAME%%d.png, DIR/) or a .png contact\n"
            "                          sheet (frames above their overlays, up to 8 per strip)\n"
            "common:\n"
            "  -m, --model DIR         model folder (flicker: a cascade with ssr/)\n"
            "  -o, --output PATH       output file\n"
            "  -t, --threads N         threads (default: all cores)\n");
}

typedef struct {
    kn_t2v_bundle b;
    int loaded;
    kn_arena *A;
    int64_t L, D, C;
    int f;
    int32_t *ids;
    float *emb;
} viz_ctx;

static void viz_free(viz_ctx *c) {
    free(c->ids);
    free(c->emb);
    kn_arena_free(c->A);
    if (c->loaded)
        kn_t2v_unload(&c->b);
}

/* Loads the model and encodes [prompt, ""] into c->emb. 0 on success, else the CLI exit code. */
static int viz_load(viz_ctx *c, const char *model, const char *prompt) {
    if (!model)
        return kn_cli_error("viz: no --model DIR given");
    if (kn_t2v_load(model, NULL, &c->b) != KN_OK)
        return kn_cli_error("%s", kn_last_error());
    c->loaded = 1;
    c->f = 1 << (c->b.m.vae->cfg.nblocks - 1);
    c->C = c->b.m.vae->cfg.latent_channels;
    c->L = KN_MIN(77, c->b.m.text->cfg.max_position_embeddings);
    c->D = c->b.m.text->cfg.hidden_size;
    c->ids = malloc((size_t)(2 * c->L) * sizeof(int32_t));
    c->emb = malloc((size_t)(2 * c->L * c->D) * sizeof(float));
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    c->A = kn_arena_new(phys > ((size_t)1 << 30) ? phys : ((size_t)1 << 30));
    if (!c->ids || !c->emb || !c->A)
        return kn_cli_error("viz: out of memory");
    if (kn_tokenize_padded(c->b.tok, prompt, c->ids, (int)c->L, c->b.pad_id, NULL, NULL) != KN_OK ||
        kn_tokenize_padded(c->b.tok, "", c->ids + c->L, (int)c->L, c->b.pad_id, NULL, NULL) != KN_OK ||
        kn_t2v_encode_text(&c->b.m, c->ids, 2, c->L, 0, c->emb) != KN_OK)
        return kn_cli_error("viz: %s", kn_last_error());
    return 0;
}

/* slerp(a, b, t) of n floats into y; falls back to the straight line when a, b are (anti)parallel */
static void slerp(const float *a, const float *b, int64_t n, double t, float *y) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    double cs = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0;
    cs = cs > 1 ? 1 : cs < -1 ? -1 : cs;
    double th = acos(cs), s = sin(th), wa = 1 - t, wb = t;
    if (s > 1e-6) {
        wa = sin((1 - t) * th) / s;
        wb = sin(t * th) / s;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(wa * a[i] + wb * b[i]);
}

static int latent_walk(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *prompt = "a large red circle moving right";
    long points = 5, shown = 4, steps = 20, frames = 0, threads = 0;
    uint64_t seed_a = 0, seed_b = 1;
    double guidance = 9.0;
    const kn_cli_opt opts[] = {
        {"--model", "-m", KN_OPT_STR, &model},
        {"--output", "-o", KN_OPT_STR, &out},
        {"--prompt", "-p", KN_OPT_STR, &prompt},
        {"--seed-a", NULL, KN_OPT_U64, &seed_a},
        {"--seed-b", NULL, KN_OPT_U64, &seed_b},
        {"--points", NULL, KN_OPT_INT, &points, 2, 64},
        {"--shown", NULL, KN_OPT_INT, &shown, 1, 64},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--guidance", "-g", KN_OPT_FLOAT, &guidance, 0, 100},
        {"--frames", NULL, KN_OPT_INT, &frames, 1, 1024},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("viz latent-walk", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (!out)
        return kn_cli_error("viz latent-walk: no -o GRID.png given");
    size_t ol = strlen(out);
    if (ol < 4 || strcasecmp(out + ol - 4, ".png"))
        return kn_cli_error("viz latent-walk: the grid is a PNG image: -o must end in .png, got '%s'", out);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
    viz_ctx c = {0};
    int rc = viz_load(&c, model, prompt);
    if (rc) {
        viz_free(&c);
        return rc;
    }
    rc = 1;
    kn_t2v_params p = kn_t2v_params_default();
    p.steps = (int)steps;
    p.guidance_scale = (float)guidance;
    p.frames = frames > 0 ? (int)frames : c.b.frames > 0 ? c.b.frames : 8;
    int px = c.b.m.unet->cfg.sample_size > 0 ? c.b.m.unet->cfg.sample_size * c.f : 64;
    p.height = p.width = px;
    if (shown > p.frames)
        shown = p.frames;
    const int64_t h = px / c.f, n = c.C * p.frames * h * h;
    const size_t fb = (size_t)px * px * 3;
    float *na = malloc(sizeof(float) * (size_t)n * 3), *nb = na ? na + n : NULL, *init = na ? na + 2 * n : NULL;
    float *video = malloc(sizeof(float) * 3 * (size_t)p.frames * px * px);
    uint8_t *rgb = malloc(fb * (size_t)p.frames), *grid = malloc(fb * (size_t)(points * shown));
    if (!na || !video || !rgb || !grid) {
        kn_cli_error("viz latent-walk: out of memory");
        goto done;
    }
    /* kn_t2v_run's own noise of a seed: Philox (seed), element index = latent index */
    kn_randn_fill(na, n, seed_a, 0);
    kn_randn_fill(nb, n, seed_b, 0);
    for (long k = 0; k < points; k++) {
        double t = (double)k / (double)(points - 1);
        slerp(na, nb, n, t, init);
        p.init_latents = init;
        size_t mark = kn_arena_mark(c.A);
        kn_status st = kn_t2v_run(&c.b.m, c.A, c.emb, c.emb + c.L * c.D, c.L, &p, NULL, video);
        kn_arena_reset(c.A, mark);
        if (st != KN_OK) {
            kn_cli_error("viz latent-walk: %s", kn_last_error());
            goto done;
        }
        kn_video_to_rgb8(video, p.frames, px, px, rgb);
        for (long m = 0; m < shown; m++) {
            long fr = shown > 1 ? m * (p.frames - 1) / (shown - 1) : 0;
            for (int y = 0; y < px; y++)
                memcpy(grid + (((size_t)k * px + y) * (size_t)shown + (size_t)m) * px * 3,
                       rgb + (size_t)fr * fb + (size_t)y * px * 3, (size_t)px * 3);
        }
        fprintf(stderr, "point %ld/%ld (t = %.3f)\n", k + 1, points, t);
    }
    if (kn_image_write_png(out, grid, (int)(points * px), (int)(shown * px)) != KN_OK) {
        kn_cli_error("viz latent-walk: %s", kn_last_error());
        goto done;
    }
    printf("%s: %ld x %ld grid of %dx%d frames (rows: slerp seed %llu -> %llu; columns: frames)\n", out, points,
           shown, px, px, (unsigned long long)seed_a, (unsigned long long)seed_b);
    rc = 0;
done:
    free(na), free(video), free(rgb), free(grid);
    viz_free(&c);
    return rc;
}

static int flicker(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *prompt = "";
    long steps = 0, frames = 16, threads = 0;
    uint64_t seed = 0;
    double gain = 4.0;
    const kn_cli_opt opts[] = {
        {"--model", "-m", KN_OPT_STR, &model},
        {"--output", "-o", KN_OPT_STR, &out},
        {"--prompt", "-p", KN_OPT_STR, &prompt},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--seed", NULL, KN_OPT_U64, &seed},
        {"--frames", NULL, KN_OPT_INT, &frames, 2, 1024},
        {"--gain", NULL, KN_OPT_FLOAT, &gain, 0.1, 1000},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("viz flicker", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 1, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (npos != 1)
        return kn_cli_error("viz flicker: no input clip given (kinema viz flicker IN_CLIP --model DIR -o OUT)");
    if (!out)
        return kn_cli_error("viz flicker: no -o OUT given");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
    viz_ctx c = {0};
    kn_video in = {0}, pv = {0};
    float *vid = NULL, *lat = NULL, *lat2 = NULL;
    uint8_t *outs = NULL;
    int rc = viz_load(&c, model, prompt);
    if (rc)
        goto done;
    rc = 1;
    if (!c.b.ssr) {
        kn_cli_error("viz flicker: %s has no ssr stage (a cascade folder with ssr/ is needed)", model);
        goto done;
    }
    const kn_cascade_info *ci = &c.b.cascade;
    const int s = ci->ssr_scale;
    const int lo = c.b.m.unet->cfg.sample_size > 0 ? c.b.m.unet->cfg.sample_size * c.f : 64, H = lo * s;
    kn_video_read_opts ro = kn_video_read_default_opts();
    ro.width = ro.height = lo;
    ro.max_frames = (int)frames;
    if (kn_video_read(pos[0], &ro, &in) != KN_OK) {
        kn_cli_error("viz flicker: %s", kn_last_error());
        goto done;
    }
    const int F = in.frames;
    const int64_t h = lo / c.f, HW = (int64_t)H * H;
    const size_t nT = (size_t)F * HW * 3;
    vid = malloc(sizeof(float) * 3 * (size_t)F * HW);
    lat = malloc(sizeof(float) * (size_t)(c.C * F * h * h));
    lat2 = malloc(sizeof(float) * (size_t)(c.C * F * h * h * s * s));
    outs = malloc(3 * nT);
    if (!vid || !lat || !lat2 || !outs || kn_video_alloc(&pv, F, 2 * H, 3 * H, in.fps) != KN_OK) {
        kn_cli_error("viz flicker: out of memory for %d frames of %dx%d", F, H, H);
        goto done;
    }
    /* encode the low-resolution clip */
    const size_t lhw = (size_t)lo * lo;
    for (int f = 0; f < F; f++)
        for (int ch = 0; ch < 3; ch++)
            for (size_t i = 0; i < lhw; i++)
                vid[((size_t)ch * F + f) * lhw + i] = in.rgb[((size_t)f * lhw + i) * 3 + ch] / 127.5f - 1.0f;
    size_t mark = kn_arena_mark(c.A);
    kn_status st = kn_t2v_encode_video(&c.b.m, c.A, vid, F, lo, lo, 4, lat);
    kn_arena_reset(c.A, mark);
    if (st == KN_OK)
        st = kn_eval_upsample_clip(KN_RESAMPLE_BILINEAR, in.rgb, F, lo, lo, s, outs);
    kn_stage_params sp = kn_stage_params_default();
    kn_sched_config ssch = kn_cascade_stage_sched(ci, &c.b.m.sched, 0);
    sp.steps = steps > 0 ? (int)steps : ci->ssr_steps;
    sp.guidance_scale = ci->ssr_guidance;
    sp.seed = seed;
    sp.sched_kind = c.b.m.sched_kind;
    sp.noise_aug = ci->ssr_noise_aug;
    for (int k = 0; k < 2 && st == KN_OK; k++) { /* k = 0: per-frame SR, 1: video SR */
        sp.chunk = k ? ci->ssr_chunk : 1;
        sp.same_noise = k ? ci->ssr_same_noise : 0;
        st = kn_cascade_upscale(c.b.ssr, &ssch, c.A, c.emb, c.emb + c.L * c.D, c.L, lat, c.C, F, h, h, s, &sp,
                                lat2);
        mark = kn_arena_mark(c.A);
        if (st == KN_OK)
            st = kn_t2v_decode(&c.b.m, c.A, lat2, F, h * s, h * s, 4, vid);
        kn_arena_reset(c.A, mark);
        if (st == KN_OK)
            kn_video_to_rgb8(vid, F, H, H, outs + (size_t)(k + 1) * nT);
    }
    const uint8_t *cl[3] = {outs, outs + nT, outs + 2 * nT};
    if (st == KN_OK)
        st = kn_eval_flicker_panel(cl, 3, F, H, H, (float)gain, pv.rgb);
    if (st == KN_OK)
        st = kn_video_write(out, &pv, NULL);
    if (st != KN_OK) {
        kn_cli_error("viz flicker: %s", kn_last_error());
        goto done;
    }
    double fl[3];
    for (int k = 0; k < 3; k++)
        if (kn_shapes_flicker(cl[k], F, H, H, &fl[k]) != KN_OK)
            fl[k] = NAN;
    printf("%s: %d frames of %dx%d (top: bilinear | per-frame SR | video SR; bottom: |frame t - t-1| x %.1f)\n"
           "background flicker: bilinear %.3f, per-frame SR %.3f, video SR %.3f\n",
           out, F, 2 * H, 3 * H, gain, fl[0], fl[1], fl[2]);
    rc = 0;
done:
    free(vid), free(lat), free(lat2), free(outs);
    kn_video_free(&in);
    kn_video_free(&pv);
    viz_free(&c);
    return rc;
}

/* The positions of word's BPE tokens in the padded prompt ids[0..L) (bos w1 .. wn eos pad ..):
 * *pos = first index of the token run, *n its length. 0 on success, else the CLI exit code after
 * one error line naming the word and listing the prompt's words. */
static int find_word(kn_tokenizer *tok, const int32_t *ids, int64_t L, const char *word, int *pos, int *n) {
    int32_t w[KN_CLIP_MAX_LENGTH + 2];
    int nw = 0;
    if (kn_tokenize(tok, word, w, (int)(sizeof w / sizeof w[0]), &nw) != KN_OK)
        return kn_cli_error("viz attention: --word '%s' is too long (%d tokens)", word, nw);
    int k = nw - 2; /* without bos, eos */
    if (k < 1)
        return kn_cli_error("viz attention: --word '%s' has no tokens", word);
    int eos = kn_tokenizer_eos(tok), end = 1;
    while (end < L && ids[end] != eos)
        end++;
    for (int i = 1; i + k <= end; i++)
        if (!memcmp(ids + i, w + 1, (size_t)k * sizeof *w)) {
            if (k > KN_CAPTURE_MAX_TOKENS)
                return kn_cli_error("viz attention: --word '%s' has %d tokens, at most %d are captured", word, k,
                                    KN_CAPTURE_MAX_TOKENS);
            *pos = i;
            *n = k;
            return 0;
        }
    char words[1024] = "";
    if (end > 1 && kn_detokenize(tok, ids + 1, end - 1, words, sizeof words) != KN_OK)
        words[sizeof words - 1] = 0;
    for (char *p = words; *p; p++) /* "a red circle" -> "a, red, circle" below */
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    char list[1400];
    size_t o = 0;
    for (const char *p = words; *p && o + 4 < sizeof list;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (o)
            list[o++] = ',', list[o++] = ' ';
        while (*p && *p != ' ' && o + 2 < sizeof list)
            list[o++] = *p++;
    }
    list[o] = 0;
    return kn_cli_error("viz attention: the word '%s' is not in the prompt (its words: %s)", word,
                        o ? list : "none");
}

/* jet-like colour map of v in [0, 1]: dark blue -> blue -> cyan -> yellow -> red -> dark red */
static void jet(float v, float rgb[3]) {
    for (int ch = 0; ch < 3; ch++) {
        float x = 1.5f - fabsf(4.0f * v - (float)(3 - ch));
        rgb[ch] = x < 0 ? 0 : x > 1 ? 1 : x;
    }
}

static int attention(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *prompt = NULL, *word = NULL;
    long steps = 20, frames = 0, threads = 0, res = 0;
    uint64_t seed = 0;
    double guidance = 9.0, alpha = 0.5;
    const kn_cli_opt opts[] = {
        {"--model", "-m", KN_OPT_STR, &model},
        {"--output", "-o", KN_OPT_STR, &out},
        {"--prompt", "-p", KN_OPT_STR, &prompt},
        {"--word", "-w", KN_OPT_STR, &word},
        {"--steps", NULL, KN_OPT_INT, &steps, 1, KN_SCHED_MAX_STEPS},
        {"--seed", "-s", KN_OPT_U64, &seed},
        {"--frames", NULL, KN_OPT_INT, &frames, 1, 1024},
        {"--guidance", "-g", KN_OPT_FLOAT, &guidance, 0, 100},
        {"--alpha", NULL, KN_OPT_FLOAT, &alpha, 0, 1},
        {"--res", NULL, KN_OPT_INT, &res, 0, 1 << 20},
        {"--threads", "-t", KN_OPT_INT, &threads, 1, 256},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("viz attention", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r)
        return 2;
    if (!prompt || !*prompt)
        return kn_cli_error("viz attention: no -p PROMPT given");
    if (!word || !*word)
        return kn_cli_error("viz attention: no --word WORD given (a word of the prompt)");
    if (!out)
        return kn_cli_error("viz attention: no -o OUT given (a video, or a .png contact sheet)");
    char bundled[2048];
    if (!(model = kn_cli_model_path("viz attention", model, bundled, sizeof bundled)))
        return 1;
    size_t ol = strlen(out);
    int sheet = ol >= 4 && !strcasecmp(out + ol - 4, ".png") && !strchr(out, '%');
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    kn_set_threads(threads > 0 ? (int)threads : (int)(ncpu > 0 ? ncpu : 1));
    viz_ctx c = {0};
    kn_attn_capture cap = {0};
    float *video = NULL, *map = NULL, *up = NULL;
    uint8_t *rgb = NULL, *img = NULL;
    int rc = viz_load(&c, model, prompt);
    if (rc)
        goto done;
    int tpos = 0, ntok = 0;
    if ((rc = find_word(c.b.tok, c.ids, c.L, word, &tpos, &ntok)))
        goto done;
    rc = 1;
    cap.ntok = ntok;
    for (int i = 0; i < ntok; i++)
        cap.tok[i] = tpos + i;
    cap.sample = -1; /* the prompt: last in the CFG batch [uncond, cond], the only sample without CFG */
    cap.res = (int)res;
    kn_t2v_params p = kn_t2v_params_default();
    p.steps = (int)steps;
    p.guidance_scale = (float)guidance;
    p.seed = seed;
    p.frames = frames > 0 ? (int)frames : c.b.frames > 0 ? c.b.frames : 8;
    p.fps = (float)(c.b.fps > 0 ? c.b.fps : 8.0);
    const int px = c.b.m.unet->cfg.sample_size > 0 ? c.b.m.unet->cfg.sample_size * c.f : 64, F = p.frames;
    p.height = p.width = px;
    const int64_t h = px / c.f, HW = (int64_t)px * px;
    video = malloc(sizeof(float) * 3 * (size_t)F * HW);
    map = malloc(sizeof(float) * (size_t)F * h * h);
    up = malloc(sizeof(float) * (size_t)F * HW);
    rgb = malloc((size_t)F * HW * 3 * 2);
    if (!video || !map || !up || !rgb) {
        kn_cli_error("viz attention: out of memory for %d frames of %dx%d", F, px, px);
        goto done;
    }
    c.b.m.unet->capture = &cap;
    size_t mark = kn_arena_mark(c.A);
    kn_status st = kn_t2v_run(&c.b.m, c.A, c.emb, c.emb + c.L * c.D, c.L, &p, NULL, video);
    kn_arena_reset(c.A, mark);
    c.b.m.unet->capture = NULL;
    int64_t nmaps = cap.count;
    if (st == KN_OK)
        st = kn_attn_capture_mean(&cap, map);
    if (st == KN_OK) {
        kn_tensor tm = kn_tensor_view(KN_F32, 4, (int64_t[]){F, 1, h, h}, map);
        kn_tensor tu = kn_tensor_view(KN_F32, 4, (int64_t[]){F, 1, px, px}, up);
        st = kn_resize_bilinear(NULL, &tm, px, px, &tu);
    }
    if (st != KN_OK) {
        kn_cli_error("viz attention: %s", kn_last_error());
        goto done;
    }
    /* normalise over the whole clip, so that frames compare */
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < F * HW; i++) {
        lo = up[i] < lo ? up[i] : lo;
        hi = up[i] > hi ? up[i] : hi;
    }
    float range = hi - lo > 1e-12f ? hi - lo : 1.0f;
    uint8_t *over = rgb + (size_t)F * HW * 3;
    kn_video_to_rgb8(video, F, px, px, rgb);
    for (int64_t i = 0; i < F * HW; i++) {
        float col[3];
        jet((up[i] - lo) / range, col);
        for (int ch = 0; ch < 3; ch++) {
            float v = (1.0f - (float)alpha) * rgb[i * 3 + ch] + (float)alpha * 255.0f * col[ch];
            over[i * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
        }
    }
    int W = px, Hh = px;
    if (sheet) {
        /* strips of up to 8 frames: the generated frames, their overlays below */
        int cols = F < 8 ? F : 8, strips = (F + cols - 1) / cols;
        W = cols * px;
        Hh = strips * 2 * px;
        img = calloc((size_t)W * Hh * 3, 1);
        if (!img) {
            kn_cli_error("viz attention: out of memory for a %dx%d sheet", W, Hh);
            goto done;
        }
        for (int f = 0; f < F; f++)
            for (int k = 0; k < 2; k++)
                for (int y = 0; y < px; y++)
                    memcpy(img + (((size_t)(f / cols * 2 + k) * px + y) * W + (size_t)(f % cols) * px) * 3,
                           (k ? over : rgb) + ((size_t)f * HW + (size_t)y * px) * 3, (size_t)px * 3);
        st = kn_image_write_png(out, img, Hh, W);
    } else {
        kn_video v = {F, px, px, c.b.fps > 0 ? c.b.fps : 8.0, over};
        st = kn_video_write(out, &v, NULL);
    }
    if (st != KN_OK) {
        kn_cli_error("viz attention: %s", kn_last_error());
        goto done;
    }
    printf("%s: '%s' (tokens %d..%d of the prompt) over %d frames of %dx%d, %lld layer maps (%lld per step), "
           "attention %.4f..%.4f\n", out, word, tpos, tpos + ntok - 1, F, px, px, (long long)nmaps,
           (long long)(nmaps / (p.steps > 0 ? p.steps : 1)), lo, hi);
    /* how much the word looks at the bright pixels (the objects, on Shapes' black background):
     * mean raw map there over the mean raw map elsewhere (1 = no preference) */
    {
        double on = 0, off = 0;
        int64_t non = 0;
        for (int64_t i = 0; i < F * HW; i++) {
            const uint8_t *px3 = rgb + i * 3;
            int luma = (299 * px3[0] + 587 * px3[1] + 114 * px3[2]) / 1000;
            if (luma > 64)
                on += up[i], non++;
            else
                off += up[i];
        }
        if (non > 0 && non < F * HW)
            printf("bright pixels (luma > 64, %.1f%% of the clip): map %.2fx the rest's\n",
                   100.0 * (double)non / (double)(F * HW), (on / (double)non) / (off / (double)(F * HW - non)));
    }
    /* where the word looks, per frame: the peak and the centre of mass of the map (pixels) */
    for (int f = 0; f < F; f++) {
        const float *m = up + (size_t)f * HW;
        double s = 0, sx = 0, sy = 0;
        int64_t best = 0;
        for (int64_t i = 0; i < HW; i++) {
            double wgt = m[i] - lo;
            s += wgt, sx += wgt * (double)(i % px), sy += wgt * (double)(i / px);
            best = m[i] > m[best] ? i : best;
        }
        printf("frame %d: peak (x %lld, y %lld), centre of mass (x %.1f, y %.1f)\n", f, (long long)(best % px),
               (long long)(best / px), s > 0 ? sx / s : NAN, s > 0 ? sy / s : NAN);
    }
    rc = 0;
done:
    kn_attn_capture_free(&cap);
    free(video), free(map), free(up), free(rgb), free(img);
    viz_free(&c);
    return rc;
}

static int cmd_viz(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "latent-walk"))
        return latent_walk(argc - 1, argv + 1);
    if (!strcmp(argv[1], "flicker"))
        return flicker(argc - 1, argv + 1);
    if (!strcmp(argv[1], "attention"))
        return attention(argc - 1, argv + 1);
    return kn_cli_error("viz: unknown view '%s' (latent-walk, flicker or attention)", argv[1]);
}

KN_CLI_COMMAND(viz, "viz", "look inside a model: latent walks, SR flicker, cross-attention maps", cmd_viz)
