/* test_shapes.c — Shapes-T2V: caption grammar, sampler, renderer and scorer (SHAPES.md). */
#include "kt.h"

#include "train/shapes.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- grammar */

KT_TEST(shapes_parse_examples_and_roundtrip) {
    kn_shapes_caption c;
    KT_OK(kn_shapes_parse("a small red circle moving left", &c));
    KT_CHECK(c.n == 1 && c.obj[0].size == KN_SIZE_SMALL && c.obj[0].colour == KN_COLOUR_RED &&
             c.obj[0].shape == KN_SHAPE_CIRCLE && c.obj[0].motion == KN_MOTION_LEFT);
    KT_OK(kn_shapes_parse("a large blue square bouncing up and down and a yellow triangle moving down and right", &c));
    KT_CHECK(c.n == 2 && c.obj[0].size == KN_SIZE_LARGE && c.obj[0].motion == KN_MOTION_BOUNCE_UD &&
             c.obj[1].size == KN_SIZE_UNSPECIFIED && c.obj[1].colour == KN_COLOUR_YELLOW &&
             c.obj[1].shape == KN_SHAPE_TRIANGLE && c.obj[1].motion == KN_MOTION_DOWN_RIGHT);
    /* "moving up and a ..." : 'and' followed by 'a' is the clause separator, not a diagonal */
    KT_OK(kn_shapes_parse("a green square moving up and a white circle moving left", &c));
    KT_CHECK(c.n == 2 && c.obj[0].motion == KN_MOTION_UP && c.obj[1].motion == KN_MOTION_LEFT);

    /* every single-object caption and a sample of two-object ones survive format -> parse */
    char buf[KN_SHAPES_CAPTION_MAX];
    int count = 0;
    for (int s = 0; s < KN_SHAPE_COUNT; s++)
        for (int k = 0; k < KN_COLOUR_COUNT; k++)
            for (int z = 0; z < 3; z++)
                for (int m = 0; m < KN_MOTION_COUNT; m++) {
                    kn_shapes_caption a = {1, {{(kn_shape_kind)s, (kn_colour)k, (kn_size)z, (kn_motion)m}}};
                    if (m % 3 == 0) {
                        a.n = 2;
                        a.obj[1] = (kn_shapes_object){(kn_shape_kind)((s + 1) % 3), (kn_colour)((k + 3) % 8),
                                                      (kn_size)((z + 1) % 3), (kn_motion)((m + 4) % 11)};
                    }
                    KT_OK(kn_shapes_format(&a, buf, sizeof buf));
                    kn_shapes_caption b;
                    KT_OK(kn_shapes_parse(buf, &b));
                    KT_CHECKF(memcmp(&a, &b, sizeof a) == 0, "roundtrip changed '%s'", buf);
                    count++;
                }
    KT_CHECK(count == 3 * 8 * 3 * 11);
    KT_CHECK(kn_shapes_format(&c, buf, 10) != KN_OK); /* too small a buffer */
}

KT_TEST(shapes_parse_rejects_bad_captions) {
    static const struct { const char *text, *needle; } bad[] = {
        {"a purple circle moving left", "'purple'"},
        {"a small red hexagon moving left", "'hexagon'"},
        {"a red circle", "ends"},
        {"a red circle moving", "ends"},
        {"a red circle moving sideways", "'sideways'"},
        {"a red circle bouncing left and up", "'up'"},
        {"a red circle standing", "ends"},
        {"A red circle moving left", "'A'"},
        {"a red circle moving left ", "trailing"},
        {" a red circle moving left", "leading"},
        {"a red  circle moving left", "extra"},
        {"a red circle moving left and", "ends"},
        {"a red circle moving left and a red square standing still", "different colours"},
        {"a red circle moving left and a blue square standing still and a green circle moving up", "'and'"},
        {"a red circle moving left or a blue square standing still", "'or'"},
        {"the red circle moving left", "'the'"},
        {"a huge red circle moving left", "'huge'"},
        {"a red circle moving left!", "'left!'"},
        {"a r\xc3\xa9" "d circle moving left", "lower-case"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kn_shapes_caption c;
        kn_status st = kn_shapes_parse(bad[i].text, &c);
        KT_CHECKF(st == KN_ERR_ARG, "'%s' was accepted", bad[i].text);
        KT_CHECKF(strstr(kn_last_error(), bad[i].needle) != NULL, "'%s': message '%s' lacks %s", bad[i].text,
                  kn_last_error(), bad[i].needle);
        KT_CHECK(strchr(kn_last_error(), '\n') == NULL);
    }
}

/* ------------------------------------------------------------- sampler */

KT_TEST(shapes_sampler_splits_and_determinism) {
    enum { N = 3000 };
    int seen_shape[3] = {0}, seen_colour[8] = {0}, seen_motion[11] = {0}, unsized = 0, objects = 0;
    int heldout_cs = 0, heldout_sm = 0;
    for (int split = 0; split < KN_SPLIT_COUNT; split++) {
        for (int i = 0; i < N; i++) {
            kn_shapes_caption c, d;
            KT_OK(kn_shapes_sample((kn_shapes_split)split, 7, (uint64_t)i, &c));
            KT_OK(kn_shapes_sample((kn_shapes_split)split, 7, (uint64_t)i, &d));
            KT_CHECK(memcmp(&c, &d, sizeof c) == 0);
            int h = kn_shapes_is_heldout(&c);
            if (split == KN_SPLIT_HELDOUT) {
                KT_CHECK(c.n == 1 && h);
                /* which kind of held-out composition: both kinds must occur */
                kn_shapes_object o = c.obj[0];
                o.motion = KN_MOTION_STILL;
                if (kn_shapes_object_is_heldout(&o))
                    heldout_cs++;
                else
                    heldout_sm++;
            } else {
                KT_CHECKF(!h, "split %s emitted a held-out composition (index %d)", kn_split_names[split], i);
                KT_CHECK(c.n == (split == KN_SPLIT_TWO ? 2 : 1));
                if (c.n == 2)
                    KT_CHECK(c.obj[0].colour != c.obj[1].colour);
                for (int o = 0; o < c.n; o++) {
                    seen_shape[c.obj[o].shape]++, seen_colour[c.obj[o].colour]++, seen_motion[c.obj[o].motion]++;
                    unsized += c.obj[o].size == KN_SIZE_UNSPECIFIED;
                    objects++;
                }
            }
        }
    }
    for (int i = 0; i < 3; i++)
        KT_CHECK(seen_shape[i] > 0);
    for (int i = 0; i < 8; i++)
        KT_CHECK(seen_colour[i] > 0);
    for (int i = 0; i < 11; i++)
        KT_CHECK(seen_motion[i] > 0);
    KT_NEAR((double)unsized / objects, 0.30, 0.03);
    KT_CHECK(heldout_cs > N / 4 && heldout_sm > N / 8);

    /* another seed gives another list */
    int same = 0;
    for (int i = 0; i < 100; i++) {
        kn_shapes_caption a, b;
        KT_OK(kn_shapes_sample(KN_SPLIT_RANDOM, 7, (uint64_t)i, &a));
        KT_OK(kn_shapes_sample(KN_SPLIT_RANDOM, 8, (uint64_t)i, &b));
        same += memcmp(&a, &b, sizeof a) == 0;
    }
    KT_CHECK(same < 10);
    kn_shapes_split sp;
    KT_OK(kn_shapes_split_from_name("heldout", &sp));
    KT_CHECK(sp == KN_SPLIT_HELDOUT);
    KT_CHECK(kn_shapes_split_from_name("train", &sp) == KN_ERR_ARG && strstr(kn_last_error(), "'train'"));
}

/* ------------------------------------------------------------ renderer */

static const char *caption_text(const kn_shapes_caption *c) {
    static char buf[KN_SHAPES_CAPTION_MAX];
    if (kn_shapes_format(c, buf, sizeof buf) != KN_OK)
        snprintf(buf, sizeof buf, "(bad caption)");
    return buf;
}

/* Renders n captions of every split at (size, frames, fps) and checks that each scores exactly
 * right, that its background never flickers and that its area is stable. */
static void render_and_score_all(int n, int size, int frames, int fps) {
    kn_shapes_render_params p = {size, frames, fps};
    uint8_t *clip = malloc(kn_shapes_clip_bytes(&p));
    for (int split = 0; split < KN_SPLIT_COUNT; split++) {
        int exact = 0;
        for (int i = 0; i < n; i++) {
            kn_shapes_caption c;
            KT_OK(kn_shapes_sample((kn_shapes_split)split, 11, (uint64_t)i, &c));
            KT_OK(kn_shapes_render(&c, 1000 + (uint64_t)i, &p, clip, NULL));
            kn_shapes_score sc;
            KT_OK(kn_shapes_score_clip(clip, frames, size, size, fps, &c, &sc));
            exact += sc.exact;
            if (!sc.exact && exact + 3 > i) /* show the first few failures in full */
                for (int o = 0; o < sc.n; o++) {
                    const kn_shapes_object_score *r = &sc.obj[o];
                    kt_fail(__FILE__, __LINE__,
                            "%dx%d@%d '%s' seed %d obj %d: colour %d shape %d(found %d fill %.3f asym %.3f) "
                            "size %d(side %.1f) motion %d(slope %.2f,%.2f rev %d,%d travel %.1f) extra %d",
                            size, size, fps, caption_text(&c), 1000 + i, o, r->colour_ok, r->shape_ok,
                            r->shape_found, r->fill, r->asym, r->size_ok, r->side, r->motion_ok, r->slope_x,
                            r->slope_y, r->reversals_x, r->reversals_y, r->travel, sc.extra_object);
                }
            KT_CHECKF(sc.flicker == 0.0f, "flicker %g on a clean render", sc.flicker);
            for (int o = 0; o < sc.n; o++)
                if (c.n == 1)
                    KT_CHECKF(sc.obj[o].area_cv < 0.02f, "'%s': area cv %.3f", caption_text(&c), sc.obj[o].area_cv);
        }
        KT_CHECKF(exact == n, "split %s at %dx%d, %d frames @ %d fps: %d / %d exactly right", kn_split_names[split],
                  size, size, frames, fps, exact, n);
    }
    free(clip);
}

KT_TEST(shapes_render_scores_exactly_right_128) { render_and_score_all(200, 128, 32, 16); }
KT_TEST(shapes_render_scores_exactly_right_64) { render_and_score_all(200, 64, 32, 16); }
KT_TEST(shapes_render_scores_exactly_right_8fps) { render_and_score_all(200, 64, 16, 8); }

/* The scorer must say no: each stated attribute, changed, fails exactly that attribute. */
KT_TEST(shapes_scorer_rejects_wrong_captions) {
    kn_shapes_render_params p = {64, 32, 16};
    uint8_t *clip = malloc(kn_shapes_clip_bytes(&p));
    for (int i = 0; i < 60; i++) {
        kn_shapes_caption c;
        KT_OK(kn_shapes_sample(KN_SPLIT_RANDOM, 5, (uint64_t)i, &c));
        KT_OK(kn_shapes_render(&c, (uint64_t)i, &p, clip, NULL));
        kn_shapes_object o = c.obj[0];
        kn_shapes_score sc;
        for (int attr = 0; attr < 4; attr++) {
            kn_shapes_caption w = c;
            kn_shapes_object *x = &w.obj[0];
            if (attr == 0)
                x->colour = (kn_colour)((o.colour + 1 + i % 7) % KN_COLOUR_COUNT);
            else if (attr == 1)
                x->shape = (kn_shape_kind)((o.shape + 1 + i % 2) % KN_SHAPE_COUNT);
            else if (attr == 2) {
                if (o.size == KN_SIZE_UNSPECIFIED)
                    continue;
                x->size = o.size == KN_SIZE_SMALL ? KN_SIZE_LARGE : KN_SIZE_SMALL;
            } else {
                x->motion = o.motion == KN_MOTION_STILL     ? KN_MOTION_RIGHT
                            : o.motion == KN_MOTION_BOUNCE_LR ? KN_MOTION_BOUNCE_UD
                            : o.motion == KN_MOTION_BOUNCE_UD ? KN_MOTION_BOUNCE_LR
                            : o.motion < KN_MOTION_UP_LEFT    ? (kn_motion)(o.motion ^ 1) /* reverse */
                                                              : KN_MOTION_STILL;
            }
            KT_OK(kn_shapes_score_clip(clip, p.frames, p.size, p.size, p.fps, &w, &sc));
            const kn_shapes_object_score *r = &sc.obj[0];
            int ok[4] = {r->colour_ok, r->shape_ok, r->size_ok, r->motion_ok};
            KT_CHECKF(!sc.exact && !ok[attr], "'%s' rendered, '%s' accepted (attribute %d)", caption_text(&c),
                      caption_text(&w), attr);
        }
    }
    /* an empty clip has nothing; a clip with an extra object is not exactly right */
    memset(clip, 0, kn_shapes_clip_bytes(&p));
    kn_shapes_caption c, two;
    KT_OK(kn_shapes_parse("a green circle standing still", &c));
    kn_shapes_score sc;
    KT_OK(kn_shapes_score_clip(clip, p.frames, p.size, p.size, p.fps, &c, &sc));
    KT_CHECK(!sc.exact && !sc.obj[0].present && sc.obj[0].presence == 0.0f);
    KT_OK(kn_shapes_parse("a green circle standing still and a large orange square moving right", &two));
    KT_OK(kn_shapes_render(&two, 3, &p, clip, NULL));
    KT_OK(kn_shapes_score_clip(clip, p.frames, p.size, p.size, p.fps, &two, &sc));
    KT_CHECK(sc.exact);
    KT_OK(kn_shapes_score_clip(clip, p.frames, p.size, p.size, p.fps, &c, &sc));
    KT_CHECK(!sc.exact && sc.extra_object && sc.obj[0].present && !sc.obj[0].colour_ok);
    free(clip);
}

KT_TEST(shapes_render_geometry_speeds_and_tracks) {
    kn_shapes_render_params p = kn_shapes_default_params();
    uint8_t *clip = malloc(kn_shapes_clip_bytes(&p));
    kn_shapes_truth tr;
    int straight = 0, bounce = 0;
    for (int i = 0; i < 300; i++) {
        kn_shapes_caption c;
        KT_OK(kn_shapes_sample(KN_SPLIT_TWO, 21, (uint64_t)i, &c));
        KT_OK(kn_shapes_render(&c, (uint64_t)i, &p, clip, &tr));
        KT_CHECK(tr.n == 2);
        for (int o = 0; o < tr.n; o++) {
            const kn_shapes_truth_object *t = &tr.obj[o];
            kn_motion m = t->obj.motion;
            float base = t->obj.size == KN_SIZE_SMALL ? 24.0f : 40.0f;
            KT_CHECK(t->obj.size != KN_SIZE_UNSPECIFIED && fabsf(t->side - base) <= 2.0f);
            if (m == KN_MOTION_STILL) {
                KT_CHECK(t->speed == 0.0f && t->cx[31] == t->cx[0] && t->cy[31] == t->cy[0]);
            } else if (m == KN_MOTION_BOUNCE_LR || m == KN_MOTION_BOUNCE_UD) {
                bounce++;
                KT_CHECKF(t->speed >= 4.0f && t->speed <= 6.0f, "bounce speed %g", t->speed);
            } else {
                straight++;
                KT_CHECKF(t->speed >= 1.5f && t->speed <= 2.25f, "straight speed %g", t->speed);
                /* constant velocity: every step of the track has the same length, equal to speed */
                for (int f = 1; f < p.frames; f++)
                    KT_NEAR(hypotf(t->cx[f] - t->cx[f - 1], t->cy[f] - t->cy[f - 1]), t->speed, 1e-3);
            }
            /* the whole object stays inside (bounces reflect at the edges) */
            float hy = t->height / 2;
            float dy = t->obj.shape == KN_SHAPE_TRIANGLE ? hy / 3 : 0; /* centroid below bbox centre */
            for (int f = 0; f < p.frames; f++) {
                KT_CHECKF(t->cx[f] - t->side / 2 >= -1e-3f && t->cx[f] + t->side / 2 <= 128 + 1e-3f,
                          "'%s' object %d leaves at frame %d (x %g)", caption_text(&c), o, f, t->cx[f]);
                KT_CHECKF(t->cy[f] - dy - hy >= -1e-3f && t->cy[f] - dy + hy <= 128 + 1e-3f,
                          "'%s' object %d leaves at frame %d (y %g)", caption_text(&c), o, f, t->cy[f]);
            }
        }
        /* start without overlapping */
        const kn_shapes_truth_object *a = &tr.obj[0], *b = &tr.obj[1];
        float ay = a->cy[0] - (a->obj.shape == KN_SHAPE_TRIANGLE ? a->height / 6 : 0);
        float by = b->cy[0] - (b->obj.shape == KN_SHAPE_TRIANGLE ? b->height / 6 : 0);
        KT_CHECK(fabsf(a->cx[0] - b->cx[0]) >= (a->side + b->side) / 2 ||
                 fabsf(ay - by) >= (a->height + b->height) / 2);
    }
    KT_CHECK(straight > 100 && bounce > 30);

    /* exact palette colours inside, black outside, and the colour mass equals the shape's area */
    kn_shapes_caption c;
    KT_OK(kn_shapes_parse("a large orange circle standing still", &c));
    KT_OK(kn_shapes_render(&c, 5, &p, clip, &tr));
    const uint8_t *f0 = clip;
    double mass = 0;
    int exact_px = 0;
    for (int i = 0; i < 128 * 128; i++) {
        mass += f0[3 * i] / 240.0;
        exact_px += f0[3 * i] == 240 && f0[3 * i + 1] == 140 && f0[3 * i + 2] == 30;
        KT_CHECK(f0[3 * i] <= 240 && f0[3 * i + 1] <= 140 && f0[3 * i + 2] <= 30);
    }
    double r = tr.obj[0].side / 2;
    KT_NEAR(mass, M_PI * r * r, 0.01 * M_PI * r * r);
    KT_CHECK(exact_px > 0.9 * M_PI * (r - 1) * (r - 1));
    int outside_lit = 0;
    for (int y = 0; y < 128; y++)
        for (int x = 0; x < 128; x++)
            if (hypot(x + 0.5 - tr.obj[0].cx[0], y + 0.5 - tr.obj[0].cy[0]) > r + 1)
                outside_lit += f0[(y * 128 + x) * 3] != 0;
    KT_CHECK(outside_lit == 0);
    free(clip);
}

/* Lower resolutions are the area downsampling of the 128x128 clip; lower fps every k-th frame. */
KT_TEST(shapes_render_downsampling_and_fps) {
    kn_shapes_render_params p128 = {128, 32, 16}, p64 = {64, 32, 16}, p8 = {128, 16, 8};
    uint8_t *a = malloc(kn_shapes_clip_bytes(&p128)), *b = malloc(kn_shapes_clip_bytes(&p64)),
            *c8 = malloc(kn_shapes_clip_bytes(&p8));
    for (int i = 0; i < 6; i++) {
        kn_shapes_caption c;
        KT_OK(kn_shapes_sample(KN_SPLIT_TWO, 3, (uint64_t)i, &c));
        KT_OK(kn_shapes_render(&c, 77 + (uint64_t)i, &p128, a, NULL));
        KT_OK(kn_shapes_render(&c, 77 + (uint64_t)i, &p64, b, NULL));
        KT_OK(kn_shapes_render(&c, 77 + (uint64_t)i, &p8, c8, NULL));
        int worst = 0;
        for (int t = 0; t < 32; t++)
            for (int y = 0; y < 64; y++)
                for (int x = 0; x < 64; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        int s = 0;
                        for (int dy = 0; dy < 2; dy++)
                            for (int dx = 0; dx < 2; dx++)
                                s += a[(((size_t)t * 128 + 2 * y + dy) * 128 + 2 * x + dx) * 3 + ch];
                        int d = abs(4 * b[(((size_t)t * 64 + y) * 64 + x) * 3 + ch] - s);
                        worst = d > worst ? d : worst;
                    }
        KT_CHECKF(worst <= 4, "64x64 differs from the 2x2 area average by %d/4", worst); /* rounding only */
        for (int t = 0; t < 16; t++)
            KT_CHECKF(!memcmp(c8 + (size_t)t * 128 * 128 * 3, a + (size_t)2 * t * 128 * 128 * 3, 128 * 128 * 3),
                      "8 fps frame %d is not 16 fps frame %d", t, 2 * t);
    }
    kn_shapes_render_params bad = {64, 32, 6};
    kn_shapes_caption c;
    KT_OK(kn_shapes_parse("a red circle moving left", &c));
    KT_CHECK(kn_shapes_render(&c, 1, &bad, b, NULL) == KN_ERR_ARG && strstr(kn_last_error(), "fps 6"));
    free(a), free(b), free(c8);
}

KT_TEST(shapes_render_deterministic_across_threads) {
    kn_shapes_render_params p = kn_shapes_default_params();
    size_t n = kn_shapes_clip_bytes(&p);
    uint8_t *a = malloc(n), *b = malloc(n), *c3 = malloc(n);
    kn_shapes_caption c;
    KT_OK(kn_shapes_parse("a large blue square bouncing up and down and a yellow triangle moving down and right", &c));
    int prev = kn_set_threads(1);
    KT_OK(kn_shapes_render(&c, 9, &p, a, NULL));
    kn_set_threads(2);
    KT_OK(kn_shapes_render(&c, 9, &p, b, NULL));
    kn_set_threads(3);
    KT_OK(kn_shapes_render(&c, 9, &p, c3, NULL));
    kn_set_threads(prev);
    KT_CHECK(!memcmp(a, b, n) && !memcmp(a, c3, n));
    KT_OK(kn_shapes_render(&c, 10, &p, b, NULL)); /* another seed, another clip */
    KT_CHECK(memcmp(a, b, n) != 0);
    KT_CHECK(isinf(kn_shapes_psnr(a, c3, n)));
    free(a), free(b), free(c3);
}

KT_TEST(shapes_temporal_metrics) {
    /* PSNR of a known error: every byte off by 1 -> 20 log10(255) */
    uint8_t x[200], y[200];
    for (int i = 0; i < 200; i++)
        x[i] = (uint8_t)i, y[i] = (uint8_t)(i + 1);
    KT_NEAR(kn_shapes_psnr(x, y, 200), 20 * log10(255.0), 1e-9);
    /* flicker: uniform background noise of +-10 on alternate frames is seen as 20, objects ignored */
    enum { T = 4, H = 32, W = 32 };
    static uint8_t clip[T * H * W * 3];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < H * W; i++) {
            uint8_t v = (uint8_t)(t % 2 ? 30 : 10);
            int obj = (i % W) >= 10 && (i % W) < 20 && i / W >= 10 && i / W < 20;
            clip[(t * H * W + i) * 3 + 0] = obj ? 220 : v;
            clip[(t * H * W + i) * 3 + 1] = obj ? 40 : v;
            clip[(t * H * W + i) * 3 + 2] = obj ? (uint8_t)(40 + t) : v;
        }
    double fl;
    KT_OK(kn_shapes_flicker(clip, T, H, W, &fl));
    KT_NEAR(fl, 20.0, 1e-9);
    KT_CHECK(kn_shapes_flicker(clip, 0, H, W, &fl) == KN_ERR_ARG);

    /* degenerate clips are scored, not crashed on, and are not exactly right */
    enum { T2 = 8, S = 64 };
    static uint8_t junk[T2 * S * S * 3];
    kn_shapes_caption c;
    kn_shapes_score sc;
    KT_OK(kn_shapes_parse("a large white square standing still", &c));
    memset(junk, 235, sizeof junk); /* one white frame-filling blob */
    KT_OK(kn_shapes_score_clip(junk, T2, S, S, 16, &c, &sc));
    KT_CHECK(!sc.exact && sc.obj[0].present && !sc.obj[0].shape_ok && !sc.obj[0].size_ok);
    float u[256];
    for (size_t i = 0; i < sizeof junk; i += 256) { /* uniform noise */
        kn_rand_fill(u, 256, 99, i);
        for (int k = 0; k < 256 && i + k < sizeof junk; k++)
            junk[i + k] = (uint8_t)(u[k] * 255.0f);
    }
    KT_OK(kn_shapes_score_clip(junk, T2, S, S, 16, &c, &sc));
    KT_CHECK(!sc.exact && sc.flicker > 0.0f);
    KT_CHECK(kn_shapes_score_clip(junk, T2, S, S, 6, &c, &sc) == KN_ERR_ARG && strstr(kn_last_error(), "fps 6"));
    c.n = 3;
    KT_CHECK(kn_shapes_score_clip(junk, T2, S, S, 16, &c, &sc) == KN_ERR_ARG);
}

/* `kinema data`: sample prints the library's captions; render -> file -> score round trip. */
KT_TEST(shapes_cli_sample_render_score) {
    char out[8192], want[8192] = "";
    int rc = kt_run(out, sizeof out, "%s data sample --split two --n 5 --seed 4", kt_bin());
    KT_CHECKF(rc == 0, "data sample failed: %s", out);
    for (int i = 0; i < 5; i++) {
        kn_shapes_caption c;
        KT_OK(kn_shapes_sample(KN_SPLIT_TWO, 4, (uint64_t)i, &c));
        strcat(want, caption_text(&c));
        strcat(want, "\n");
    }
    KT_CHECKF(!strcmp(out, want), "data sample printed:\n%s\nwanted:\n%s", out, want);

    const char *cap = "a large green circle moving up and left and a small orange square bouncing left and right";
    rc = kt_run(out, sizeof out, "%s data render -p '%s' --seed 5 --size 64 -o %s/clip.y4m && %s data score %s/clip.y4m -p '%s'",
                kt_bin(), cap, kt_tmpdir(), kt_bin(), kt_tmpdir(), cap);
    KT_CHECKF(rc == 0 && strstr(out, "exact 1\n"), "render/score round trip: %s", out);
    /* the same clip against a wrong caption */
    rc = kt_run(out, sizeof out, "%s data score %s/clip.y4m -p 'a large green circle moving down'", kt_bin(),
                kt_tmpdir());
    KT_CHECKF(rc == 0 && strstr(out, "exact 0\n"), "wrong caption: %s", out);

    rc = kt_run(out, sizeof out, "%s data render -p 'a purple circle moving left' -o %s/x.y4m", kt_bin(), kt_tmpdir());
    KT_CHECKF(rc != 0 && strstr(out, "'purple'") && strchr(out, '\n') == out + strlen(out) - 1,
              "bad caption: rc %d, '%s'", rc, out);
    rc = kt_run(out, sizeof out, "%s data sample --split train --n 2", kt_bin());
    KT_CHECKF(rc != 0 && strstr(out, "'train'"), "bad split: rc %d, '%s'", rc, out);
}
