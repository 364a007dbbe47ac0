/* shapes.c — Shapes-T2V captions (grammar, sampler), renderer and scorer. Contract: SHAPES.md. */
#include "train/shapes.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

const char *const kn_shape_names[KN_SHAPE_COUNT] = {"circle", "square", "triangle"};
const char *const kn_colour_names[KN_COLOUR_COUNT] = {"red",     "green", "blue",   "yellow",
                                                      "magenta", "cyan",  "orange", "white"};
const char *const kn_size_names[3] = {"", "small", "large"};
const char *const kn_motion_names[KN_MOTION_COUNT] = {
    "moving left",          "moving right",         "moving up",
    "moving down",          "moving up and left",   "moving up and right",
    "moving down and left", "moving down and right", "bouncing left and right",
    "bouncing up and down", "standing still"};
const char *const kn_split_names[KN_SPLIT_COUNT] = {"random", "heldout", "two"};

const uint8_t kn_shapes_palette[KN_COLOUR_COUNT][3] = {
    {220, 40, 40}, {40, 190, 60}, {50, 80, 230},  {235, 215, 40},
    {210, 50, 210}, {40, 200, 210}, {240, 140, 30}, {235, 235, 235}};

/* ------------------------------------------------------------- grammar */

#define MAX_WORDS 40

typedef struct {
    int n;
    const char *w[MAX_WORDS];
    int len[MAX_WORDS];
} words;

static int word_is(const words *ws, int i, const char *s) {
    return i < ws->n && (int)strlen(s) == ws->len[i] && !memcmp(ws->w[i], s, (size_t)ws->len[i]);
}

static int word_index(const words *ws, int i, const char *const *table, int n) {
    for (int k = 0; k < n; k++)
        if (word_is(ws, i, table[k]))
            return k;
    return -1;
}

/* "expected X, found 'w' (word i)" or "... but the caption ends" */
static kn_status word_error(const words *ws, int i, const char *expected) {
    if (i >= ws->n)
        return kn_fail(KN_ERR_ARG, "caption: expected %s but the caption ends", expected);
    return kn_fail(KN_ERR_ARG, "caption: expected %s, found '%.*s' (word %d)", expected, ws->len[i], ws->w[i],
                   i + 1);
}

static kn_status parse_clause(const words *ws, int *pi, kn_shapes_object *o) {
    int i = *pi;
    if (!word_is(ws, i, "a"))
        return word_error(ws, i, "'a'");
    i++;
    o->size = KN_SIZE_UNSPECIFIED;
    if (word_is(ws, i, "small"))
        o->size = KN_SIZE_SMALL, i++;
    else if (word_is(ws, i, "large"))
        o->size = KN_SIZE_LARGE, i++;
    int c = word_index(ws, i, kn_colour_names, KN_COLOUR_COUNT);
    if (c < 0)
        return word_error(ws, i, o->size ? "a colour (red, green, blue, yellow, magenta, cyan, orange, white)"
                                         : "a size (small, large) or a colour (red, green, blue, ...)");
    o->colour = (kn_colour)c, i++;
    int s = word_index(ws, i, kn_shape_names, KN_SHAPE_COUNT);
    if (s < 0)
        return word_error(ws, i, "a shape (circle, square, triangle)");
    o->shape = (kn_shape_kind)s, i++;
    if (word_is(ws, i, "moving")) {
        i++;
        if (word_is(ws, i, "left"))
            o->motion = KN_MOTION_LEFT, i++;
        else if (word_is(ws, i, "right"))
            o->motion = KN_MOTION_RIGHT, i++;
        else if (word_is(ws, i, "up") || word_is(ws, i, "down")) {
            int up = word_is(ws, i, "up");
            i++;
            /* "moving up and left" vs "moving up and a ..." (the clause separator) */
            if (word_is(ws, i, "and") && (word_is(ws, i + 1, "left") || word_is(ws, i + 1, "right"))) {
                int left = word_is(ws, i + 1, "left");
                o->motion = up ? (left ? KN_MOTION_UP_LEFT : KN_MOTION_UP_RIGHT)
                               : (left ? KN_MOTION_DOWN_LEFT : KN_MOTION_DOWN_RIGHT);
                i += 2;
            } else {
                o->motion = up ? KN_MOTION_UP : KN_MOTION_DOWN;
            }
        } else {
            return word_error(ws, i, "a direction (left, right, up, down) after 'moving'");
        }
    } else if (word_is(ws, i, "bouncing")) {
        i++;
        if (word_is(ws, i, "left")) {
            if (!word_is(ws, i + 1, "and"))
                return word_error(ws, i + 1, "'and' in 'bouncing left and right'");
            if (!word_is(ws, i + 2, "right"))
                return word_error(ws, i + 2, "'right' in 'bouncing left and right'");
            o->motion = KN_MOTION_BOUNCE_LR, i += 3;
        } else if (word_is(ws, i, "up")) {
            if (!word_is(ws, i + 1, "and"))
                return word_error(ws, i + 1, "'and' in 'bouncing up and down'");
            if (!word_is(ws, i + 2, "down"))
                return word_error(ws, i + 2, "'down' in 'bouncing up and down'");
            o->motion = KN_MOTION_BOUNCE_UD, i += 3;
        } else {
            return word_error(ws, i, "'left' or 'up' after 'bouncing'");
        }
    } else if (word_is(ws, i, "standing")) {
        i++;
        if (!word_is(ws, i, "still"))
            return word_error(ws, i, "'still' after 'standing'");
        o->motion = KN_MOTION_STILL, i++;
    } else {
        return word_error(ws, i, "a motion (moving ..., bouncing ..., standing still)");
    }
    *pi = i;
    return KN_OK;
}

kn_status kn_shapes_parse(const char *text, kn_shapes_caption *out) {
    if (!text || !out)
        return kn_fail(KN_ERR_ARG, "caption: NULL argument");
    memset(out, 0, sizeof *out);
    words ws = {0};
    size_t n = strlen(text);
    if (n == 0)
        return kn_fail(KN_ERR_ARG, "caption: empty caption");
    size_t i = 0;
    while (i <= n) {
        size_t b = i;
        while (i < n && text[i] != ' ')
            i++;
        if (i == b)
            return kn_fail(KN_ERR_ARG, "caption: %s space at character %zu (words are separated by one space)",
                           b == 0 ? "leading" : (b == n ? "trailing" : "extra"), b + 1);
        for (size_t k = b; k < i; k++)
            if (text[k] < 'a' || text[k] > 'z')
                return kn_fail(KN_ERR_ARG, "caption: word '%.*s' (word %d) is not lower-case ASCII letters",
                               (int)(i - b), text + b, ws.n + 1);
        if (ws.n == MAX_WORDS)
            return kn_fail(KN_ERR_ARG, "caption: too long (more than %d words)", MAX_WORDS);
        ws.w[ws.n] = text + b;
        ws.len[ws.n] = (int)(i - b);
        ws.n++;
        i++; /* skip the space (or the terminator) */
    }
    int w = 0;
    KN_TRY(parse_clause(&ws, &w, &out->obj[0]));
    out->n = 1;
    if (w < ws.n) {
        if (!word_is(&ws, w, "and"))
            return word_error(&ws, w, "'and' or the end of the caption");
        w++;
        KN_TRY(parse_clause(&ws, &w, &out->obj[1]));
        out->n = 2;
        if (w < ws.n)
            return kn_fail(KN_ERR_ARG, "caption: unexpected word '%.*s' (word %d) after the second object "
                                       "(at most two objects)", ws.len[w], ws.w[w], w + 1);
        if (out->obj[0].colour == out->obj[1].colour)
            return kn_fail(KN_ERR_ARG, "caption: the two objects must have different colours (both '%s')",
                           kn_colour_names[out->obj[0].colour]);
    }
    return KN_OK;
}

static kn_status check_caption(const kn_shapes_caption *cap) {
    if (!cap || cap->n < 1 || cap->n > KN_SHAPES_MAX_OBJECTS)
        return kn_fail(KN_ERR_ARG, "caption: needs 1 or 2 objects, got %d", cap ? cap->n : 0);
    for (int i = 0; i < cap->n; i++) {
        const kn_shapes_object *o = &cap->obj[i];
        if ((unsigned)o->shape >= KN_SHAPE_COUNT || (unsigned)o->colour >= KN_COLOUR_COUNT ||
            (unsigned)o->size > KN_SIZE_LARGE || (unsigned)o->motion >= KN_MOTION_COUNT)
            return kn_fail(KN_ERR_ARG, "caption: object %d has an out-of-range attribute", i + 1);
    }
    if (cap->n == 2 && cap->obj[0].colour == cap->obj[1].colour)
        return kn_fail(KN_ERR_ARG, "caption: the two objects must have different colours");
    return KN_OK;
}

kn_status kn_shapes_format(const kn_shapes_caption *cap, char *buf, size_t n) {
    KN_TRY(check_caption(cap));
    size_t used = 0;
    for (int i = 0; i < cap->n; i++) {
        const kn_shapes_object *o = &cap->obj[i];
        int k = snprintf(buf + used, n > used ? n - used : 0, "%sa %s%s%s %s %s", i ? " and " : "",
                         kn_size_names[o->size], o->size ? " " : "", kn_colour_names[o->colour],
                         kn_shape_names[o->shape], kn_motion_names[o->motion]);
        if (k < 0 || used + (size_t)k >= n)
            return kn_fail(KN_ERR_ARG, "caption: buffer of %zu bytes is too small", n);
        used += (size_t)k;
    }
    return KN_OK;
}

int kn_shapes_object_is_heldout(const kn_shapes_object *o) {
    /* colour + shape: red triangle, blue circle, yellow square, cyan triangle, white circle */
    if ((o->colour == KN_COLOUR_RED && o->shape == KN_SHAPE_TRIANGLE) ||
        (o->colour == KN_COLOUR_BLUE && o->shape == KN_SHAPE_CIRCLE) ||
        (o->colour == KN_COLOUR_YELLOW && o->shape == KN_SHAPE_SQUARE) ||
        (o->colour == KN_COLOUR_CYAN && o->shape == KN_SHAPE_TRIANGLE) ||
        (o->colour == KN_COLOUR_WHITE && o->shape == KN_SHAPE_CIRCLE))
        return 1;
    /* shape + motion: square moving up and right, triangle bouncing left and right,
     * circle moving down and left */
    if ((o->shape == KN_SHAPE_SQUARE && o->motion == KN_MOTION_UP_RIGHT) ||
        (o->shape == KN_SHAPE_TRIANGLE && o->motion == KN_MOTION_BOUNCE_LR) ||
        (o->shape == KN_SHAPE_CIRCLE && o->motion == KN_MOTION_DOWN_LEFT))
        return 1;
    return 0;
}

int kn_shapes_is_heldout(const kn_shapes_caption *cap) {
    for (int i = 0; i < cap->n && i < KN_SHAPES_MAX_OBJECTS; i++)
        if (kn_shapes_object_is_heldout(&cap->obj[i]))
            return 1;
    return 0;
}

kn_status kn_shapes_split_from_name(const char *name, kn_shapes_split *out) {
    for (int i = 0; i < KN_SPLIT_COUNT; i++)
        if (name && !strcmp(name, kn_split_names[i])) {
            *out = (kn_shapes_split)i;
            return KN_OK;
        }
    return kn_fail(KN_ERR_ARG, "unknown split '%s' (expected random, heldout or two)", name ? name : "(null)");
}

/* ------------------------------------------------------------- sampler */

/* A Philox uniform stream: draw k of stream (seed, base) is kn_rand_fill element base + k. */
typedef struct {
    uint64_t seed, off;
} stream;

static float next_u(stream *s) {
    float u;
    kn_rand_fill(&u, 1, s->seed, s->off++);
    return u;
}

static int next_int(stream *s, int n) {
    int k = (int)(next_u(s) * (float)n);
    return k >= n ? n - 1 : k;
}

static float next_range(stream *s, float lo, float hi) { return lo + (hi - lo) * next_u(s); }

static void sample_object(stream *s, kn_shapes_object *o) {
    o->shape = (kn_shape_kind)next_int(s, KN_SHAPE_COUNT);
    o->colour = (kn_colour)next_int(s, KN_COLOUR_COUNT);
    o->motion = (kn_motion)next_int(s, KN_MOTION_COUNT);
    /* size word omitted 30 % of the time, else small / large with equal odds */
    float u = next_u(s);
    o->size = u < 0.3f ? KN_SIZE_UNSPECIFIED : (u < 0.65f ? KN_SIZE_SMALL : KN_SIZE_LARGE);
}

kn_status kn_shapes_sample(kn_shapes_split split, uint64_t seed, uint64_t index, kn_shapes_caption *out) {
    if ((unsigned)split >= KN_SPLIT_COUNT)
        return kn_fail(KN_ERR_ARG, "shapes: unknown split %d", (int)split);
    if (index >= ((uint64_t)1 << 40))
        return kn_fail(KN_ERR_ARG, "shapes: caption index %llu too large", (unsigned long long)index);
    /* caption `index` owns draws [index << 20, (index + 1) << 20) of the seed's stream; rejection
     * sampling uses a handful of them (a rejection happens with probability < 0.3 per draw). */
    stream s = {seed, index << 20};
    memset(out, 0, sizeof *out);
    for (int tries = 0; tries < 10000; tries++) {
        if (split == KN_SPLIT_TWO) {
            out->n = 2;
            sample_object(&s, &out->obj[0]);
            sample_object(&s, &out->obj[1]);
            if (out->obj[0].colour != out->obj[1].colour && !kn_shapes_is_heldout(out))
                return KN_OK;
        } else {
            out->n = 1;
            sample_object(&s, &out->obj[0]);
            if (kn_shapes_is_heldout(out) == (split == KN_SPLIT_HELDOUT))
                return KN_OK;
        }
    }
    return kn_fail(KN_ERR_INTERNAL, "shapes: sampler did not converge"); /* probability ~0 */
}

/* ------------------------------------------------------------ renderer */

kn_shapes_render_params kn_shapes_default_params(void) {
    return (kn_shapes_render_params){KN_SHAPES_NATIVE, 32, KN_SHAPES_NATIVE_FPS};
}

size_t kn_shapes_clip_bytes(const kn_shapes_render_params *p) {
    return (size_t)p->frames * (size_t)p->size * (size_t)p->size * 3;
}

/* One object's geometry and trajectory, native units (128 px, 16 fps frames). */
typedef struct {
    kn_shape_kind shape;
    uint8_t rgb[3];
    float hx, hy;        /* half bbox width / height */
    float x0, y0;        /* bbox centre at time 0 (straight / still), or start for bounces */
    float vx, vy;        /* straight velocity, px per 16 fps frame */
    int bounce_axis;     /* -1 none, 0 x, 1 y */
    float bv;            /* signed bounce speed */
} obj_geom;

static float reflect(float p, float lo, float hi) {
    float L = hi - lo;
    if (L <= 0)
        return lo;
    float m = fmodf(p - lo, 2 * L);
    if (m < 0)
        m += 2 * L;
    return lo + (m <= L ? m : 2 * L - m);
}

/* bbox centre at 16 fps time tau */
static void geom_at(const obj_geom *g, float tau, float *cx, float *cy) {
    float x = g->x0 + g->vx * tau, y = g->y0 + g->vy * tau;
    if (g->bounce_axis == 0)
        x = reflect(g->x0 + g->bv * tau, g->hx, KN_SHAPES_NATIVE - g->hx);
    else if (g->bounce_axis == 1)
        y = reflect(g->y0 + g->bv * tau, g->hy, KN_SHAPES_NATIVE - g->hy);
    *cx = x, *cy = y;
}

/* Draws the trajectory of g (size already set) over `span` 16 fps frames. */
static void draw_motion(stream *s, kn_motion m, float span, obj_geom *g) {
    const float W = KN_SHAPES_NATIVE;
    g->vx = g->vy = 0, g->bounce_axis = -1, g->bv = 0;
    if (m == KN_MOTION_STILL) {
        g->x0 = next_range(s, g->hx, W - g->hx);
        g->y0 = next_range(s, g->hy, W - g->hy);
        return;
    }
    if (m == KN_MOTION_BOUNCE_LR || m == KN_MOTION_BOUNCE_UD) {
        float v = next_range(s, 4.0f, 6.0f);
        float sign = next_u(s) < 0.5f ? -1.0f : 1.0f;
        g->bounce_axis = m == KN_MOTION_BOUNCE_LR ? 0 : 1;
        g->bv = sign * v;
        g->x0 = next_range(s, g->hx, W - g->hx);
        g->y0 = next_range(s, g->hy, W - g->hy);
        return;
    }
    static const float dir[8][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}, {-1, -1}, {1, -1}, {-1, 1}, {1, 1}};
    float ux = dir[m][0], uy = dir[m][1];
    if (ux != 0 && uy != 0)
        ux *= (float)M_SQRT1_2, uy *= (float)M_SQRT1_2;
    /* fastest speed that keeps the whole object inside for the whole span */
    float lo = 1.5f, hi = 2.25f;
    if (span > 0) {
        if (ux != 0)
            hi = fminf(hi, (W - 2 * g->hx) / (fabsf(ux) * span));
        if (uy != 0)
            hi = fminf(hi, (W - 2 * g->hy) / (fabsf(uy) * span));
        lo = fminf(lo, hi);
    }
    float v = next_range(s, lo, hi);
    g->vx = ux * v, g->vy = uy * v;
    float dx = g->vx * span, dy = g->vy * span; /* total travel */
    g->x0 = next_range(s, g->hx + fmaxf(-dx, 0), W - g->hx - fmaxf(dx, 0));
    g->y0 = next_range(s, g->hy + fmaxf(-dy, 0), W - g->hy - fmaxf(dy, 0));
}

static int inside(const obj_geom *g, float cx, float cy, float X, float Y) {
    float dx = X - cx, dy = Y - cy;
    switch (g->shape) {
    case KN_SHAPE_CIRCLE:
        return dx * dx + dy * dy <= g->hx * g->hx;
    case KN_SHAPE_SQUARE:
        return fabsf(dx) <= g->hx && fabsf(dy) <= g->hy;
    default: { /* apex up: half-width grows linearly from 0 at the top to hx at the bottom */
        float t = (dy + g->hy) / (2 * g->hy);
        return t >= 0 && t <= 1 && fabsf(dx) <= t * g->hx;
    }
    }
}

/* How an object covers the native rectangle [X0, X1] x [Y0, Y1]: 1 fully (every corner is
 * inside a convex shape), 0 not at all (the rectangle lies beyond one edge), -1 partly. Lets
 * the renderer sample only the pixels along the outlines. */
static int coverage_class(const obj_geom *g, float cx, float cy, float X0, float Y0, float X1, float Y1) {
    if (X1 < cx - g->hx || X0 > cx + g->hx || Y1 < cy - g->hy || Y0 > cy + g->hy)
        return 0;
    if (g->shape == KN_SHAPE_CIRCLE) {
        float dx = fmaxf(fmaxf(X0 - cx, cx - X1), 0), dy = fmaxf(fmaxf(Y0 - cy, cy - Y1), 0);
        if (dx * dx + dy * dy > g->hx * g->hx)
            return 0;
    } else if (g->shape == KN_SHAPE_TRIANGLE) {
        /* beyond the right edge (dx > t*hx) or the left edge (-dx > t*hx) at all four corners */
        int right = 1, left = 1;
        for (int k = 0; k < 4; k++) {
            float X = k & 1 ? X1 : X0, Y = k & 2 ? Y1 : Y0;
            float th = (Y - cy + g->hy) / (2 * g->hy) * g->hx;
            right &= X - cx > th;
            left &= cx - X > th;
        }
        if (right || left)
            return 0;
    }
    if (inside(g, cx, cy, X0, Y0) && inside(g, cx, cy, X1, Y0) && inside(g, cx, cy, X0, Y1) &&
        inside(g, cx, cy, X1, Y1))
        return 1;
    return -1;
}

typedef struct {
    const kn_shapes_render_params *p;
    int n;
    obj_geom g[KN_SHAPES_MAX_OBJECTS];
    uint8_t *out;
    int ss;      /* samples per output pixel per axis */
    float scale; /* native px per output px */
} render_ctx;

/* Renders frame t: out[t] is (H, W, 3). Each output pixel averages ss x ss samples; a sample
 * takes the colour of the topmost object covering it (black if none). */
static void render_frame(int64_t t, void *vctx) {
    const render_ctx *c = vctx;
    const int S = c->p->size, ss = c->ss, n = c->n;
    const float f = c->scale;
    const float tau = (float)t * (float)(KN_SHAPES_NATIVE_FPS / c->p->fps);
    uint8_t *img = c->out + (size_t)t * S * S * 3; /* (H, W, 3) */
    memset(img, 0, (size_t)S * S * 3);
    float cx[KN_SHAPES_MAX_OBJECTS], cy[KN_SHAPES_MAX_OBJECTS];
    int bx0[KN_SHAPES_MAX_OBJECTS], bx1[KN_SHAPES_MAX_OBJECTS], by0[KN_SHAPES_MAX_OBJECTS],
        by1[KN_SHAPES_MAX_OBJECTS];
    int ux0 = S, ux1 = -1, uy0 = S, uy1 = -1;
    for (int o = 0; o < n; o++) {
        geom_at(&c->g[o], tau, &cx[o], &cy[o]);
        bx0[o] = KN_MAX(0, (int)floorf((cx[o] - c->g[o].hx) / f));
        bx1[o] = KN_MIN(S - 1, (int)ceilf((cx[o] + c->g[o].hx) / f));
        by0[o] = KN_MAX(0, (int)floorf((cy[o] - c->g[o].hy) / f));
        by1[o] = KN_MIN(S - 1, (int)ceilf((cy[o] + c->g[o].hy) / f));
        ux0 = KN_MIN(ux0, bx0[o]), ux1 = KN_MAX(ux1, bx1[o]);
        uy0 = KN_MIN(uy0, by0[o]), uy1 = KN_MAX(uy1, by1[o]);
    }
    const int nss = ss * ss;
    const float step = f / (float)ss;
    for (int py = uy0; py <= uy1; py++) {
        for (int px = ux0; px <= ux1; px++) {
            int hit[KN_SHAPES_MAX_OBJECTS], nh = 0;
            for (int o = n - 1; o >= 0; o--) /* topmost first */
                if (px >= bx0[o] && px <= bx1[o] && py >= by0[o] && py <= by1[o])
                    hit[nh++] = o;
            if (!nh)
                continue;
            int cnt[KN_SHAPES_MAX_OBJECTS] = {0};
            /* drop objects that miss the pixel; a topmost object covering it all decides it */
            float X0 = (float)px * f, Y0 = (float)py * f;
            int m = 0, full = -1;
            for (int h = 0; h < nh && full < 0; h++) {
                int k = coverage_class(&c->g[hit[h]], cx[hit[h]], cy[hit[h]], X0, Y0, X0 + f, Y0 + f);
                if (k == 0)
                    continue;
                if (k == 1 && m == 0)
                    full = hit[h];
                hit[m++] = hit[h];
            }
            nh = m;
            if (full >= 0)
                cnt[full] = nss;
            else if (!nh)
                continue;
            for (int sy = 0; sy < ss && full < 0; sy++) {
                float Y = (float)py * f + ((float)sy + 0.5f) * step;
                for (int sx = 0; sx < ss; sx++) {
                    float X = (float)px * f + ((float)sx + 0.5f) * step;
                    for (int h = 0; h < nh; h++) {
                        int o = hit[h];
                        if (inside(&c->g[o], cx[o], cy[o], X, Y)) {
                            cnt[o]++;
                            break;
                        }
                    }
                }
            }
            uint8_t *pix = img + ((size_t)py * S + px) * 3;
            for (int ch = 0; ch < 3; ch++) {
                int sum = 0;
                for (int o = 0; o < n; o++)
                    sum += cnt[o] * c->g[o].rgb[ch];
                pix[ch] = (uint8_t)((sum + nss / 2) / nss);
            }
        }
    }
}

static int boxes_overlap(const obj_geom *a, const obj_geom *b, float gap) {
    float ax, ay, bx, by;
    geom_at(a, 0, &ax, &ay);
    geom_at(b, 0, &bx, &by);
    return fabsf(ax - bx) < a->hx + b->hx + gap && fabsf(ay - by) < a->hy + b->hy + gap;
}

/* Clip frames where the top object b hides more than half of the bottom object a (measured on
 * a 12x12 grid of points over a's box); *overlapped counts the frames where b hides any of it.
 * The renderer rejects trajectories with more than 5 % hidden or 50 % overlapped frames, so that
 * every object stays visible in >= 90 % of frames and whole in most, as the scorer requires.
 * Objects still cross. */
static int hidden_frames(const obj_geom *a, const obj_geom *b, const kn_shapes_render_params *p, int *overlapped) {
    int n = 0;
    *overlapped = 0;
    for (int t = 0; t < p->frames; t++) {
        float tau = (float)t * (float)(KN_SHAPES_NATIVE_FPS / p->fps), ax, ay, bx, by;
        geom_at(a, tau, &ax, &ay);
        geom_at(b, tau, &bx, &by);
        if (fabsf(ax - bx) >= a->hx + b->hx || fabsf(ay - by) >= a->hy + b->hy)
            continue;
        int in = 0, seen = 0;
        for (int i = 0; i < 12; i++)
            for (int j = 0; j < 12; j++) {
                float X = ax - a->hx + (2 * a->hx) * ((float)j + 0.5f) / 12;
                float Y = ay - a->hy + (2 * a->hy) * ((float)i + 0.5f) / 12;
                if (inside(a, ax, ay, X, Y)) {
                    in++;
                    seen += !inside(b, bx, by, X, Y);
                }
            }
        *overlapped += seen < in;
        n += 2 * seen < in;
    }
    return n;
}

kn_status kn_shapes_render(const kn_shapes_caption *cap, uint64_t seed, const kn_shapes_render_params *p,
                           uint8_t *out, kn_shapes_truth *truth) {
    KN_TRY(check_caption(cap));
    if (!p || !out)
        return kn_fail(KN_ERR_ARG, "shapes render: NULL argument");
    if (p->size < 8 || p->size > 1024)
        return kn_fail(KN_ERR_ARG, "shapes render: size %d outside [8, 1024]", p->size);
    if (p->frames < 1 || p->frames > KN_SHAPES_MAX_FRAMES)
        return kn_fail(KN_ERR_ARG, "shapes render: frames %d outside [1, %d]", p->frames, KN_SHAPES_MAX_FRAMES);
    if (p->fps < 1 || p->fps > KN_SHAPES_NATIVE_FPS || KN_SHAPES_NATIVE_FPS % p->fps)
        return kn_fail(KN_ERR_ARG, "shapes render: fps %d must divide 16 (16, 8, 4, 2, 1)", p->fps);

    render_ctx c = {.p = p, .n = cap->n, .out = out};
    c.scale = (float)KN_SHAPES_NATIVE / (float)p->size;
    /* 4x4 samples per native pixel; below 128 an output pixel covers ceil(scale)^2 native ones */
    c.ss = 4 * (int)ceilf(c.scale - 1e-6f);
    if (c.ss < 4)
        c.ss = 4;
    /* the 16 fps trajectory the clip is taken from (every k-th frame) has frames*k frames, so a
     * 16-frame 8 fps clip is exactly frames 0, 2, ..., 30 of the 32-frame 16 fps one */
    const float span = (float)(p->frames * (KN_SHAPES_NATIVE_FPS / p->fps) - 1);

    stream s = {seed, 0};
    kn_size sizes[KN_SHAPES_MAX_OBJECTS];
    for (int o = 0; o < cap->n; o++) {
        const kn_shapes_object *ob = &cap->obj[o];
        obj_geom *g = &c.g[o];
        g->shape = ob->shape;
        memcpy(g->rgb, kn_shapes_palette[ob->colour], 3);
        sizes[o] = ob->size;
        float u = next_u(&s), j = next_u(&s);
        if (sizes[o] == KN_SIZE_UNSPECIFIED)
            sizes[o] = u < 0.5f ? KN_SIZE_SMALL : KN_SIZE_LARGE;
        float side = (sizes[o] == KN_SIZE_SMALL ? 24.0f : 40.0f) + (4 * j - 2); /* +-2 px jitter */
        g->hx = side / 2;
        g->hy = ob->shape == KN_SHAPE_TRIANGLE ? side * 0.8660254f / 2 : side / 2;
    }
    /* draw trajectories until the objects start apart (2 px gap between bounding boxes) */
    int ok = 0;
    for (int tries = 0; tries < 1000 && !ok; tries++) {
        for (int o = 0; o < cap->n; o++)
            draw_motion(&s, cap->obj[o].motion, span, &c.g[o]);
        int over = 0;
        ok = cap->n < 2 || (!boxes_overlap(&c.g[0], &c.g[1], 2.0f) &&
                            hidden_frames(&c.g[0], &c.g[1], p, &over) * 20 <= p->frames && over * 2 <= p->frames);
    }
    if (!ok)
        return kn_fail(KN_ERR_INTERNAL, "shapes render: could not place two objects apart");

    kn_parallel_for(p->frames, render_frame, &c);

    if (truth) {
        memset(truth, 0, sizeof *truth);
        truth->n = cap->n;
        for (int o = 0; o < cap->n; o++) {
            kn_shapes_truth_object *to = &truth->obj[o];
            const obj_geom *g = &c.g[o];
            to->obj = cap->obj[o];
            to->obj.size = sizes[o];
            to->side = 2 * g->hx;
            to->height = 2 * g->hy;
            to->speed = g->bounce_axis >= 0 ? fabsf(g->bv) : sqrtf(g->vx * g->vx + g->vy * g->vy);
            for (int t = 0; t < p->frames; t++) {
                float x, y;
                geom_at(g, (float)t * (float)(KN_SHAPES_NATIVE_FPS / p->fps), &x, &y);
                if (g->shape == KN_SHAPE_TRIANGLE)
                    y += g->hy / 3; /* area centroid is 2/3 of the height below the apex */
                to->cx[t] = x / c.scale;
                to->cy[t] = y / c.scale;
            }
        }
    }
    return KN_OK;
}

/* -------------------------------------------------------------- scorer */

#define COLOUR_DIST2 (36 * 36) /* palette colours are >= 75 apart, so masks are disjoint */
#define NO_COLOUR 255

static uint8_t nearest_palette(const uint8_t *px) {
    if ((int)px[0] + px[1] + px[2] < 60)
        return NO_COLOUR; /* every palette colour sums to >= 300 */
    for (int k = 0; k < KN_COLOUR_COUNT; k++) {
        int dr = px[0] - kn_shapes_palette[k][0], dg = px[1] - kn_shapes_palette[k][1],
            db = px[2] - kn_shapes_palette[k][2];
        if (dr * dr + dg * dg + db * db < COLOUR_DIST2)
            return (uint8_t)k;
    }
    return NO_COLOUR;
}

/* The largest 4-connected component of one colour in one frame. */
typedef struct {
    int area;
    int x0, x1, y0, y1;
    double sx, sy;     /* sums of pixel-centre coordinates */
    int top, bottom;   /* pixels above / below the bbox's middle row */
    int border;        /* touches the canvas edge */
} comp;

static void label_frame(const uint8_t *img, int H, int W, uint8_t *lab) {
    for (int64_t i = 0; i < (int64_t)H * W; i++)
        lab[i] = (int)img[3 * i] + img[3 * i + 1] + img[3 * i + 2] < 60 ? NO_COLOUR : nearest_palette(img + 3 * i);
}

/* Finds the largest component of every colour in lab (H, W); lab is consumed (set to NO_COLOUR). */
static void components(uint8_t *lab, int H, int W, int32_t *queue, comp best[KN_COLOUR_COUNT]) {
    memset(best, 0, sizeof(comp) * KN_COLOUR_COUNT);
    for (int64_t start = 0; start < (int64_t)H * W; start++) {
        uint8_t k = lab[start];
        if (k == NO_COLOUR)
            continue;
        comp c = {0, W, -1, H, -1, 0, 0, 0, 0, 0};
        int qh = 0, qt = 0;
        queue[qt++] = (int32_t)start;
        lab[start] = NO_COLOUR;
        while (qh < qt) {
            int32_t q = queue[qh++];
            int x = q % W, y = q / W;
            c.area++;
            c.sx += x + 0.5, c.sy += y + 0.5;
            c.x0 = KN_MIN(c.x0, x), c.x1 = KN_MAX(c.x1, x);
            c.y0 = KN_MIN(c.y0, y), c.y1 = KN_MAX(c.y1, y);
            if (x > 0 && lab[q - 1] == k)
                lab[q - 1] = NO_COLOUR, queue[qt++] = q - 1;
            if (x < W - 1 && lab[q + 1] == k)
                lab[q + 1] = NO_COLOUR, queue[qt++] = q + 1;
            if (y > 0 && lab[q - W] == k)
                lab[q - W] = NO_COLOUR, queue[qt++] = q - W;
            if (y < H - 1 && lab[q + W] == k)
                lab[q + W] = NO_COLOUR, queue[qt++] = q + W;
        }
        if (c.area <= best[k].area)
            continue;
        /* top / bottom halves relative to the bbox's middle (2*y+1 vs y0+y1+1, in half pixels) */
        int mid2 = c.y0 + c.y1 + 1;
        for (int i = 0; i < qt; i++) {
            int y2 = 2 * (queue[i] / W) + 1;
            c.top += y2 < mid2, c.bottom += y2 > mid2;
        }
        c.border = c.x0 == 0 || c.y0 == 0 || c.x1 == W - 1 || c.y1 == H - 1;
        best[k] = c;
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median(float *v, int n) {
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

/* Turning points of a track with hysteresis h: a reversal counts once the track has come back
 * h from its running extremum. */
static int count_reversals(const float *p, int n, float h) {
    if (n < 2)
        return 0;
    int dir = 0, rev = 0;
    float lo = p[0], hi = p[0], ext = p[0];
    for (int i = 1; i < n; i++) {
        float v = p[i];
        if (dir == 0) {
            lo = fminf(lo, v), hi = fmaxf(hi, v);
            if (v - lo >= h)
                dir = 1, ext = v;
            else if (hi - v >= h)
                dir = -1, ext = v;
        } else if (dir == 1) {
            if (v > ext)
                ext = v;
            else if (ext - v >= h)
                rev++, dir = -1, ext = v;
        } else {
            if (v < ext)
                ext = v;
            else if (v - ext >= h)
                rev++, dir = 1, ext = v;
        }
    }
    return rev;
}

static double expected_area(kn_shape_kind s, float side) {
    switch (s) {
    case KN_SHAPE_CIRCLE:
        return M_PI / 4 * side * side;
    case KN_SHAPE_SQUARE:
        return (double)side * side;
    default:
        return 0.4330127 * side * side; /* half of side x side*sqrt(3)/2 */
    }
}

static kn_status check_clip_args(const uint8_t *clip, int T, int H, int W) {
    if (!clip)
        return kn_fail(KN_ERR_ARG, "shapes score: NULL clip");
    if (T < 1 || T > KN_SHAPES_MAX_FRAMES || H < 4 || W < 4 || H > 4096 || W > 4096)
        return kn_fail(KN_ERR_ARG, "shapes score: clip (T=%d, H=%d, W=%d) outside T in [1, %d], H, W in [4, 4096]",
                       T, H, W, KN_SHAPES_MAX_FRAMES);
    return KN_OK;
}

/* dst[0..n) |= src[0..n), eight bytes at a time */
static void or_row(uint8_t *restrict dst, const uint8_t *restrict src, int n) {
    int x = 0;
    for (; x + 8 <= n; x += 8) {
        uint64_t a, b;
        memcpy(&a, dst + x, 8);
        memcpy(&b, src + x, 8);
        a |= b;
        memcpy(dst + x, &a, 8);
    }
    for (; x < n; x++)
        dst[x] |= src[x];
}

/* near[i] = 1 when a labelled (palette-coloured) pixel of lab lies within r (Chebyshev) of i;
 * tmp: H*W bytes. The max filter is separable: ORs of shifted rows, skipping empty rows. */
static void near_from_labels(const uint8_t *lab, int H, int W, int r, uint8_t *near, uint8_t *tmp) {
    memset(near, 0, (size_t)H * W);
    for (int y = 0; y < H; y++) { /* horizontal: lab -> tmp */
        const uint8_t *in = lab + (size_t)y * W;
        uint8_t *o = tmp + (size_t)y * W;
        int lit = 0;
        for (int x = 0; x < W; x++)
            lit |= (o[x] = in[x] != NO_COLOUR);
        if (!lit)
            continue;
        for (int x = 0; x < W; x++)
            if (in[x] != NO_COLOUR)
                for (int d = KN_MAX(0, x - r); d <= KN_MIN(W - 1, x + r); d++)
                    o[d] = 1;
        /* vertical: OR this row into the rows within r */
        for (int yy = KN_MAX(0, y - r); yy <= KN_MIN(H - 1, y + r); yy++)
            or_row(near + (size_t)yy * W, o, W);
    }
}

/* Running background flicker over frames: add frames in order. */
typedef struct {
    uint8_t *prev, *cur, *tmp; /* (H, W) near-object masks of the previous / current frame */
    const uint8_t *prev_img;
    double sum;
    int64_t count;
} flicker_acc;

static void flicker_add(flicker_acc *f, const uint8_t *lab, const uint8_t *img, int H, int W) {
    const size_t HW = (size_t)H * W;
    near_from_labels(lab, H, W, 3, f->cur, f->tmp);
    if (f->prev_img) {
        const uint8_t *a = f->prev_img;
        int64_t sum = 0, count = 0;
        for (size_t i = 0; i < HW; i++) {
            int bg = !(f->prev[i] | f->cur[i]);
            int d = abs((int)a[3 * i] - (int)img[3 * i]) + abs((int)a[3 * i + 1] - (int)img[3 * i + 1]) +
                    abs((int)a[3 * i + 2] - (int)img[3 * i + 2]);
            sum += bg * d, count += bg;
        }
        f->sum += (double)sum, f->count += 3 * count;
    }
    uint8_t *sw = f->prev;
    f->prev = f->cur, f->cur = sw;
    f->prev_img = img;
}

kn_status kn_shapes_flicker(const uint8_t *clip, int T, int H, int W, double *out) {
    KN_TRY(check_clip_args(clip, T, H, W));
    const size_t HW = (size_t)H * W;
    uint8_t *buf = malloc(4 * HW);
    if (!buf)
        return kn_fail(KN_ERR_NOMEM, "shapes flicker: out of memory");
    flicker_acc f = {buf, buf + HW, buf + 2 * HW, NULL, 0, 0};
    uint8_t *lab = buf + 3 * HW;
    for (int t = 0; t < T; t++) {
        label_frame(clip + (size_t)t * HW * 3, H, W, lab);
        flicker_add(&f, lab, clip + (size_t)t * HW * 3, H, W);
    }
    free(buf);
    *out = f.count ? f.sum / (double)f.count : 0.0;
    return KN_OK;
}

double kn_shapes_psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        se += d * d;
    }
    if (se == 0 || n == 0)
        return INFINITY;
    return 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

/* Sum over c's bbox grown by 1 px of each pixel's share of colour k (projection onto the
 * palette colour, clamped to [0, 1]), skipping pixels of other palette colours. */
static double soft_area(const uint8_t *img, int H, int W, const comp *c, int k) {
    const uint8_t *pc = kn_shapes_palette[k];
    double n2 = (double)pc[0] * pc[0] + (double)pc[1] * pc[1] + (double)pc[2] * pc[2], a = 0;
    for (int y = KN_MAX(c->y0 - 1, 0); y <= KN_MIN(c->y1 + 1, H - 1); y++)
        for (int x = KN_MAX(c->x0 - 1, 0); x <= KN_MIN(c->x1 + 1, W - 1); x++) {
            const uint8_t *px = img + ((size_t)y * W + x) * 3;
            uint8_t l = nearest_palette(px);
            if (l != NO_COLOUR && l != k)
                continue;
            double d = ((double)px[0] * pc[0] + (double)px[1] * pc[1] + (double)px[2] * pc[2]) / n2;
            a += d < 0 ? 0 : (d > 1 ? 1 : d);
        }
    return a;
}

static int motion_dir_ok(kn_motion m, int sx, int sy) {
    static const int want[8][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}, {-1, -1}, {1, -1}, {-1, 1}, {1, 1}};
    return sx == want[m][0] && sy == want[m][1];
}

kn_status kn_shapes_score_clip(const uint8_t *clip, int T, int H, int W, int fps, const kn_shapes_caption *cap,
                               kn_shapes_score *out) {
    KN_TRY(check_caption(cap));
    KN_TRY(check_clip_args(clip, T, H, W));
    if (fps < 1 || fps > KN_SHAPES_NATIVE_FPS || KN_SHAPES_NATIVE_FPS % fps)
        return kn_fail(KN_ERR_ARG, "shapes score: fps %d must divide 16", fps);
    if (!out)
        return kn_fail(KN_ERR_ARG, "shapes score: NULL output");
    memset(out, 0, sizeof *out);
    out->n = cap->n;

    const size_t HW = (size_t)H * W;
    const float fx = (float)KN_SHAPES_NATIVE / (float)W, fy = (float)KN_SHAPES_NATIVE / (float)H;
    const float dt = (float)(KN_SHAPES_NATIVE_FPS / fps); /* 16 fps frames per clip frame */
    const double area_scale = 1.0 / ((double)fx * fy);   /* output px per native px^2 */

    uint8_t *lab = malloc(4 * HW); /* labels, then the flicker masks */
    int32_t *queue = malloc(HW * sizeof(int32_t));
    comp *best = malloc((size_t)T * KN_COLOUR_COUNT * sizeof(comp)); /* (T, colours) */
    if (!lab || !queue || !best) {
        free(lab), free(queue), free(best);
        return kn_fail(KN_ERR_NOMEM, "shapes score: out of memory for a %dx%d clip", H, W);
    }
    flicker_acc fa = {lab + HW, lab + 2 * HW, lab + 3 * HW, NULL, 0, 0};
    for (int t = 0; t < T; t++) {
        label_frame(clip + (size_t)t * HW * 3, H, W, lab);
        flicker_add(&fa, lab, clip + (size_t)t * HW * 3, H, W);
        components(lab, H, W, queue, best + (size_t)t * KN_COLOUR_COUNT);
    }

    int named[KN_COLOUR_COUNT] = {0};
    double min_expected = 1e30;
    for (int o = 0; o < cap->n; o++) {
        const kn_shapes_object *ob = &cap->obj[o];
        named[ob->colour] = 1;
        /* an unstated size may be small: expect at least the small area */
        double e = expected_area(ob->shape, ob->size == KN_SIZE_LARGE ? 40.0f : 24.0f) * area_scale;
        min_expected = fmin(min_expected, e);
    }
    /* another palette colour holding a comparable object in at least half of the frames */
    for (int k = 0; k < KN_COLOUR_COUNT; k++) {
        if (named[k])
            continue;
        int frames = 0;
        for (int t = 0; t < T; t++)
            frames += best[(size_t)t * KN_COLOUR_COUNT + k].area >= 0.25 * min_expected;
        if (2 * frames >= T)
            out->extra_object = 1;
    }

    float v[KN_SHAPES_MAX_FRAMES], tx[KN_SHAPES_MAX_FRAMES], ty[KN_SHAPES_MAX_FRAMES], tt[KN_SHAPES_MAX_FRAMES];
    float fills[KN_SHAPES_MAX_FRAMES], asyms[KN_SHAPES_MAX_FRAMES], sides[KN_SHAPES_MAX_FRAMES];
    out->exact = !out->extra_object;
    for (int o = 0; o < cap->n; o++) {
        const kn_shapes_object *ob = &cap->obj[o];
        kn_shapes_object_score *r = &out->obj[o];
        const comp *cs[KN_SHAPES_MAX_FRAMES];
        int contact[KN_SHAPES_MAX_FRAMES];
        double expected = expected_area(ob->shape, ob->size == KN_SIZE_LARGE ? 40.0f : 24.0f) * area_scale;
        int npresent = 0;
        for (int t = 0; t < T; t++) {
            cs[t] = &best[(size_t)t * KN_COLOUR_COUNT + ob->colour];
            if (cs[t]->area >= 0.25 * expected) {
                v[npresent++] = (float)cs[t]->area;
            } else {
                cs[t] = NULL;
            }
        }
        r->presence = (float)npresent / (float)T;
        r->present = 10 * npresent >= 9 * T;
        r->colour_ok = r->present && !out->extra_object;
        r->shape_found = -1;
        /* frames where another caption object touches this one (bboxes within 2 px) occlude or
         * merge with it: its shape and centroid are measured on the other frames when there are
         * at least two of them */
        int nfree = 0;
        for (int t = 0; t < T; t++) {
            contact[t] = 0;
            if (!cs[t])
                continue;
            for (int o2 = 0; o2 < cap->n; o2++) {
                const comp *d = &best[(size_t)t * KN_COLOUR_COUNT + cap->obj[o2].colour];
                if (o2 == o || d->area == 0)
                    continue;
                if (d->x0 <= cs[t]->x1 + 2 && cs[t]->x0 <= d->x1 + 2 && d->y0 <= cs[t]->y1 + 2 &&
                    cs[t]->y0 <= d->y1 + 2)
                    contact[t] = 1;
            }
            nfree += !contact[t];
        }
        if (nfree < 2)
            memset(contact, 0, sizeof contact);
        /* area stability: coverage-weighted area (so anti-aliased edges count by their share)
         * over the free frames */
        double asum = 0, asum2 = 0;
        int na = 0;
        for (int t = 0; t < T; t++)
            if (cs[t] && !contact[t]) {
                double a = soft_area(clip + (size_t)t * HW * 3, H, W, cs[t], ob->colour);
                asum += a, asum2 += a * a, na++;
            }
        if (na) {
            double mean = asum / na, var = fmax(asum2 / na - mean * mean, 0.0);
            r->area_cv = mean > 0 ? (float)(sqrt(var) / mean) : 0.0f;
        }
        /* unoccluded frames have about the full area: keep frames within 10 % of the 90th
         * percentile of the free frames' areas */
        int nm = 0;
        for (int t = 0; t < T; t++)
            if (cs[t] && !contact[t])
                v[nm++] = (float)cs[t]->area;
        median(v, nm); /* sorts v */
        float med_area = nm ? v[(nm - 1) * 9 / 10] : 0;

        /* shape and size: free frames not occluded (area within 10 % of the median), preferring
         * those where the object is away from the canvas edge */
        int nclean = 0, inner = 0;
        for (int t = 0; t < T; t++)
            inner += cs[t] && !contact[t] && !cs[t]->border && cs[t]->area >= 0.9f * med_area;
        for (int t = 0; t < T; t++) {
            const comp *c = cs[t];
            if (!c || contact[t] || (inner && c->border) || c->area < 0.9f * med_area)
                continue;
            int w = c->x1 - c->x0 + 1, h = c->y1 - c->y0 + 1;
            fills[nclean] = (float)c->area / (float)(w * h);
            asyms[nclean] = (float)(c->bottom - c->top) / (float)c->area;
            sides[nclean] = fmaxf((float)w * fx, (float)h * fy);
            nclean++;
        }
        if (nclean) {
            r->fill = median(fills, nclean);
            r->asym = median(asyms, nclean);
            r->side = median(sides, nclean);
            /* square ~1.0 | circle ~0.785 | triangle ~0.5 with asym ~0.5 (0 for the others);
             * a small triangle's mask at 64 px fills up to ~0.68 of its box, so asym decides */
            if (r->side > 64.0f)
                r->shape_found = -1; /* a blob 1.5x the large size is no object of the dataset */
            else if (r->fill >= 0.89f)
                r->shape_found = KN_SHAPE_SQUARE;
            else if (r->asym >= 0.2f && r->fill >= 0.3f && r->fill < 0.75f)
                r->shape_found = KN_SHAPE_TRIANGLE;
            else if (r->fill >= 0.64f && fabsf(r->asym) < 0.15f)
                r->shape_found = KN_SHAPE_CIRCLE;
            r->size_found = r->side < 32.0f ? KN_SIZE_SMALL : (r->side <= 64.0f ? KN_SIZE_LARGE : 0);
        }
        r->shape_ok = r->shape_found == (int)ob->shape;
        r->size_ok = ob->size == KN_SIZE_UNSPECIFIED || (nclean && r->size_found == (int)ob->size);

        /* motion: centroid track over present, unoccluded frames, native units */
        int n = 0;
        for (int t = 0; t < T; t++) {
            const comp *c = cs[t];
            if (!c || contact[t] || c->area < 0.9f * med_area)
                continue;
            tx[n] = (float)(c->sx / c->area) * fx;
            ty[n] = (float)(c->sy / c->area) * fy;
            tt[n] = (float)t * dt;
            n++;
        }
        if (n >= 2) {
            double mt = 0, mx = 0, my = 0;
            for (int i = 0; i < n; i++)
                mt += tt[i], mx += tx[i], my += ty[i];
            mt /= n, mx /= n, my /= n;
            double stt = 0, stx = 0, sty = 0;
            for (int i = 0; i < n; i++) {
                stt += (tt[i] - mt) * (tt[i] - mt);
                stx += (tt[i] - mt) * (tx[i] - mx);
                sty += (tt[i] - mt) * (ty[i] - my);
            }
            r->slope_x = stt > 0 ? (float)(stx / stt) : 0;
            r->slope_y = stt > 0 ? (float)(sty / stt) : 0;
            /* reversals on every present frame: a bounce's turn must not hide behind a contact */
            int nr = 0;
            for (int t = 0; t < T; t++)
                if (cs[t]) {
                    v[nr] = (float)(cs[t]->sx / cs[t]->area) * fx;
                    fills[nr++] = (float)(cs[t]->sy / cs[t]->area) * fy;
                }
            r->reversals_x = count_reversals(v, nr, 4.0f);
            r->reversals_y = count_reversals(fills, nr, 4.0f);
            for (int i = 1; i < n; i++)
                r->travel = fmaxf(r->travel, hypotf(tx[i] - tx[0], ty[i] - ty[0]));
            int sx = r->slope_x >= 0.5f ? 1 : (r->slope_x <= -0.5f ? -1 : 0);
            int sy = r->slope_y >= 0.5f ? 1 : (r->slope_y <= -0.5f ? -1 : 0);
            if (ob->motion == KN_MOTION_STILL)
                r->motion_ok = r->travel < 4.0f;
            else if (ob->motion == KN_MOTION_BOUNCE_LR)
                r->motion_ok = r->reversals_x >= 1;
            else if (ob->motion == KN_MOTION_BOUNCE_UD)
                r->motion_ok = r->reversals_y >= 1;
            else
                r->motion_ok = motion_dir_ok(ob->motion, sx, sy);
        } else if (n == 1 && ob->motion == KN_MOTION_STILL) {
            r->motion_ok = 1; /* a one-frame clip cannot show motion */
        }
        out->exact = out->exact && r->colour_ok && r->shape_ok && r->size_ok && r->motion_ok;
    }
    free(lab), free(queue), free(best);
    out->flicker = fa.count ? (float)(fa.sum / (double)fa.count) : 0.0f;
    return KN_OK;
}
