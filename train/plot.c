/* train/plot.c: metrics.jsonl -> PNG (plot.h). */
#include "train/plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/png.h"

/* ---- series ---- */

typedef struct {
    int64_t step, seq;
    double v;
} point;

typedef struct {
    point *p;
    int64_t n, cap;
} series;

static int push(series *s, int64_t step, int64_t seq, double v) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        point *q = realloc(s->p, (size_t)cap * sizeof *q);
        if (!q)
            return -1;
        s->p = q;
        s->cap = cap;
    }
    s->p[s->n++] = (point){step, seq, v};
    return 0;
}

static int cmp_point(const void *a, const void *b) {
    const point *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* sorted by step; a step logged twice (replayed after a restart) keeps
 * its last value */
static void settle(series *s) {
    if (s->n == 0)
        return;
    qsort(s->p, (size_t)s->n, sizeof *s->p, cmp_point);
    int64_t o = 0;
    for (int64_t i = 0; i < s->n; i++) {
        if (o > 0 && s->p[o - 1].step == s->p[i].step)
            o--;
        s->p[o++] = s->p[i];
    }
    s->n = o;
}

/* ---- canvas ---- */

typedef struct {
    int w, h;
    uint8_t *px;
} canvas;

typedef struct {
    uint8_t r, g, b;
} rgb;

static const rgb C_BG = {255, 255, 255}, C_AXIS = {0, 0, 0}, C_GRID = {225, 225, 225},
                 C_TEXT = {20, 20, 20}, C_TRAIN = {31, 119, 180}, C_EVAL = {255, 127, 14},
                 C_LR = {44, 160, 44}, C_GNORM = {214, 39, 40};

static void pset(canvas *c, int x, int y, rgb k) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    uint8_t *p = c->px + ((size_t)y * c->w + x) * 3;
    p[0] = k.r;
    p[1] = k.g;
    p[2] = k.b;
}

static void line(canvas *c, int x0, int y0, int x1, int y1, rgb k, int thick) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        for (int t = 0; t < thick; t++) {
            pset(c, x0, y0 + t, k);
            pset(c, x0 + t, y0, k);
        }
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

static void square(canvas *c, int x, int y, int r, rgb k) {
    for (int j = -r; j <= r; j++)
        for (int i = -r; i <= r; i++)
            pset(c, x + i, y + j, k);
}

/* 5x7 glyphs, one byte per row, bit 4 = leftmost column */
typedef struct {
    char ch;
    uint8_t rows[7];
} glyph;

static const glyph FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},               {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},      {'e', {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},            {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}}, {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}}, {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
};

/* text at (x, y) (top left), scale s; characters the font lacks are blanks */
static int text(canvas *c, int x, int y, const char *s, int scale, rgb k) {
    for (; *s; s++, x += 6 * scale) {
        char ch = *s >= 'a' && *s <= 'z' && *s != 'e' ? (char)(*s - 'a' + 'A') : *s;
        for (size_t g = 0; g < sizeof FONT / sizeof FONT[0]; g++) {
            if (FONT[g].ch != ch)
                continue;
            for (int r = 0; r < 7; r++)
                for (int col = 0; col < 5; col++)
                    if (FONT[g].rows[r] & (0x10 >> col))
                        for (int dy = 0; dy < scale; dy++)
                            for (int dx = 0; dx < scale; dx++)
                                pset(c, x + col * scale + dx, y + r * scale + dy, k);
            break;
        }
    }
    return x;
}

/* ---- panels ---- */

typedef struct {
    int x0, y0, x1, y1; /* plot area, pixels */
    double xmin, xmax, ymin, ymax;
} frame;

static int px_x(const frame *f, double x) {
    return f->x0 + (int)lround((x - f->xmin) / (f->xmax - f->xmin) * (f->x1 - f->x0));
}
static int px_y(const frame *f, double y) {
    return f->y1 - (int)lround((y - f->ymin) / (f->ymax - f->ymin) * (f->y1 - f->y0));
}

static void range_of(const series *const *ss, int n, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < ss[k]->n; i++) {
            double v = ss[k]->p[i].v;
            if (isfinite(v)) {
                *lo = v < *lo ? v : *lo;
                *hi = v > *hi ? v : *hi;
            }
        }
    if (!isfinite(*lo)) {
        *lo = 0;
        *hi = 1;
    }
    double pad = (*hi - *lo) * 0.05;
    if (pad <= 0)
        pad = fabs(*hi) > 0 ? fabs(*hi) * 0.05 : 0.5;
    *lo -= pad;
    *hi += pad;
}

/* series[k] drawn as a line (markers[k] = 0) or as squares (1) */
static void panel(canvas *c, int px, int py, int pw, int ph, const char *title, const series *const *ss,
                  const rgb *colors, const int *markers, int n, double xmin, double xmax) {
    frame f = {px + 70, py + 30, px + pw - 15, py + ph - 35, xmin, xmax, 0, 1};
    range_of(ss, n, &f.ymin, &f.ymax);
    for (int g = 1; g < 4; g++) { /* grid */
        int gx = f.x0 + (f.x1 - f.x0) * g / 4, gy = f.y0 + (f.y1 - f.y0) * g / 4;
        line(c, gx, f.y0, gx, f.y1, C_GRID, 1);
        line(c, f.x0, gy, f.x1, gy, C_GRID, 1);
    }
    for (int k = 0; k < n; k++) {
        const series *s = ss[k];
        int lx = 0, ly = 0;
        bool have = false;
        for (int64_t i = 0; i < s->n; i++) {
            if (!isfinite(s->p[i].v)) {
                have = false;
                continue;
            }
            int x = px_x(&f, (double)s->p[i].step), y = px_y(&f, s->p[i].v);
            if (markers[k])
                square(c, x, y, 3, colors[k]);
            else if (have)
                line(c, lx, ly, x, y, colors[k], 2);
            else
                pset(c, x, y, colors[k]);
            lx = x;
            ly = y;
            have = true;
        }
    }
    line(c, f.x0, f.y0, f.x0, f.y1, C_AXIS, 2); /* axes */
    line(c, f.x0, f.y1, f.x1, f.y1, C_AXIS, 2);
    text(c, px + 70, py + 6, title, 2, C_TEXT);
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", f.ymax);
    text(c, px + 4, f.y0, buf, 1, C_TEXT);
    snprintf(buf, sizeof buf, "%.3g", f.ymin);
    text(c, px + 4, f.y1 - 7, buf, 1, C_TEXT);
    snprintf(buf, sizeof buf, "%.0f", xmin);
    text(c, f.x0, f.y1 + 6, buf, 1, C_TEXT);
    snprintf(buf, sizeof buf, "%.0f", xmax);
    text(c, f.x1 - 6 * (int)strlen(buf), f.y1 + 6, buf, 1, C_TEXT);
    text(c, (f.x0 + f.x1) / 2 - 12, f.y1 + 18, "STEP", 1, C_TEXT);
}

/* ---- metrics.jsonl ---- */

static sl_status read_metrics(const char *run_dir, series *loss, series *eval, series *lr, series *gn,
                              plot_summary *sum) {
    char path[2048];
    SL_TRY(fs_join(path, sizeof path, run_dir, "metrics.jsonl"));
    FILE *f = fopen(path, "r");
    if (!f)
        return sl_errorf(SL_ERR_INVALID, "%s does not exist: is %s a run directory (train.run_dir)?", path,
                         run_dir);
    char *ln = NULL;
    size_t cap = 0;
    int64_t seq = 0, lineno = 0;
    sl_status st = SL_OK;
    while (st == SL_OK && getline(&ln, &cap, f) >= 0) {
        lineno++;
        cJSON *o = cJSON_Parse(ln);
        if (!o) {
            if (strspn(ln, " \t\r\n") != strlen(ln)) { /* a line cut by a crash is skipped */
                if (!sum->bad_lines++)
                    sum->first_bad_line = lineno;
            }
            continue;
        }
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (cJSON_GetObjectItemCaseSensitive(o, "event")) {
            sum->restarts++;
        } else if (cJSON_IsNumber(s)) {
            int64_t step = (int64_t)s->valuedouble;
            static const char *const keys[] = {"loss", "eval_loss", "lr", "gnorm"};
            series *dst[] = {loss, eval, lr, gn};
            for (int k = 0; k < 4 && st == SL_OK; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
                if (v && push(dst[k], step, seq, cJSON_IsNumber(v) ? v->valuedouble : NAN) != 0)
                    st = sl_errorf(SL_ERR_NOMEM, "out of memory reading %s", path);
            }
            seq++;
        }
        cJSON_Delete(o);
    }
    free(ln);
    fclose(f);
    return st;
}

sl_status plot_run(const char *run_dir, const char *out, int width, int height, plot_summary *sum) {
    memset(sum, 0, sizeof *sum);
    SL_CHECK_ARG(width >= 200 && height >= 160 && width <= 8192 && height <= 8192,
                 "plot size %d x %d: expected 200..8192 x 160..8192 pixels", width, height);
    series loss = {0}, eval = {0}, lr = {0}, gn = {0};
    sl_status st = read_metrics(run_dir, &loss, &eval, &lr, &gn, sum);
    series *all[] = {&loss, &eval, &lr, &gn};
    for (int k = 0; k < 4; k++)
        settle(all[k]);
    if (st == SL_OK && loss.n == 0 && eval.n == 0)
        st = sl_errorf(SL_ERR_INVALID, "%s/metrics.jsonl holds no step or eval line yet", run_dir);
    canvas c = {width, height, NULL};
    if (st == SL_OK) {
        c.px = malloc((size_t)width * height * 3);
        if (!c.px)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for a %d x %d image", width, height);
    }
    if (st == SL_OK) {
        memset(c.px, 255, (size_t)width * height * 3);
        (void)C_BG;
        double xmin = INFINITY, xmax = -INFINITY;
        for (int k = 0; k < 4; k++)
            for (int64_t i = 0; i < all[k]->n; i++) {
                xmin = all[k]->p[i].step < xmin ? (double)all[k]->p[i].step : xmin;
                xmax = all[k]->p[i].step > xmax ? (double)all[k]->p[i].step : xmax;
            }
        if (xmax <= xmin)
            xmax = xmin + 1;
        sum->train_points = loss.n;
        sum->eval_points = eval.n;
        sum->first_step = (int64_t)xmin;
        sum->last_step = (int64_t)xmax;
        int hw = width / 2, hh = height / 2;
        const series *p1[] = {&loss, &eval};
        const rgb c1[] = {C_TRAIN, C_EVAL};
        const int m1[] = {0, 1};
        panel(&c, 0, 0, hw, hh, "LOSS (TRAIN, EVAL)", p1, c1, m1, 2, xmin, xmax);
        const series *p2[] = {&lr};
        const rgb c2[] = {C_LR};
        const int m0[] = {0};
        panel(&c, hw, 0, width - hw, hh, "LEARNING RATE", p2, c2, m0, 1, xmin, xmax);
        const series *p3[] = {&gn};
        const rgb c3[] = {C_GNORM};
        panel(&c, 0, hh, hw, height - hh, "GRAD NORM", p3, c3, m0, 1, xmin, xmax);
        const series *p4[] = {&eval};
        const rgb c4[] = {C_EVAL};
        const int m4[] = {0};
        panel(&c, hw, hh, width - hw, height - hh, eval.n ? "EVAL LOSS" : "EVAL LOSS (NONE)", p4, c4, m4, 1,
              xmin, xmax);
        st = png_write_rgb(out, width, height, c.px);
    }
    free(c.px);
    for (int k = 0; k < 4; k++)
        free(all[k]->p);
    return st;
}
