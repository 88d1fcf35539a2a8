#include "runtime/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"

struct metrics_writer {
    FILE *jsonl;
    FILE *events; /* NULL without TensorBoard */
    char event_path[1024];
};

/* Reflected CRC-32C, polynomial 0x82F63B78, bytewise table built once per
 * call site is cheap enough: records are small and few (one per step). */
uint32_t crc32c(const void *data, size_t len) {
    static const uint32_t poly = 0x82F63B78u;
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        table[i] = c;
    }
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

uint32_t tfrecord_masked_crc(const void *data, size_t len) {
    uint32_t c = crc32c(data, len);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* A growable byte buffer for protobuf encoding. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} pbuf;

static int pb_put(pbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static int pb_varint(pbuf *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return pb_put(b, tmp, (size_t)n);
}

static int pb_bytes(pbuf *b, int field, const void *data, size_t n) {
    if (pb_varint(b, ((uint64_t)field << 3) | 2) || pb_varint(b, n))
        return -1;
    return pb_put(b, data, n);
}

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* Event{wall_time, step, [file_version | summary]} as one TFRecord. */
static sl_status write_event(metrics_writer *w, int64_t step, const char *file_version, const char *group,
                             const metric_kv *kv, int n) {
    pbuf ev = {0}, sum = {0}, val = {0};
    int err = 0;
    double t = wall_time();
    uint8_t tag = (1 << 3) | 1;
    err |= pb_put(&ev, &tag, 1) | pb_put(&ev, &t, 8); /* little-endian host */
    err |= pb_varint(&ev, (2 << 3) | 0) | pb_varint(&ev, (uint64_t)step);
    if (file_version) {
        err |= pb_bytes(&ev, 3, file_version, strlen(file_version));
    } else {
        for (int i = 0; i < n && !err; i++) {
            val.n = 0;
            float f = (float)kv[i].value;
            uint8_t ftag = (2 << 3) | 5;
            char tag_name[160];
            snprintf(tag_name, sizeof tag_name, "%s%s%s", group ? group : "", group ? "/" : "", kv[i].key);
            err |= pb_bytes(&val, 1, tag_name, strlen(tag_name));
            err |= pb_put(&val, &ftag, 1) | pb_put(&val, &f, 4);
            err |= pb_bytes(&sum, 1, val.p, val.n);
        }
        err |= pb_bytes(&ev, 5, sum.p ? (const void *)sum.p : "", sum.n);
    }
    sl_status st = SL_OK;
    if (err) {
        st = sl_errorf(SL_ERR_NOMEM, "out of memory encoding a TensorBoard event");
    } else {
        uint64_t len = ev.n;
        uint32_t lcrc = tfrecord_masked_crc(&len, 8), dcrc = tfrecord_masked_crc(ev.p, ev.n);
        if (fwrite(&len, 8, 1, w->events) != 1 || fwrite(&lcrc, 4, 1, w->events) != 1 ||
            fwrite(ev.p, 1, ev.n, w->events) != ev.n || fwrite(&dcrc, 4, 1, w->events) != 1 ||
            fflush(w->events) != 0)
            st = sl_errorf(SL_ERR_IO, "cannot write %s: %s", w->event_path, strerror(errno));
    }
    free(ev.p);
    free(sum.p);
    free(val.p);
    return st;
}

sl_status metrics_open(const char *run_dir, bool tensorboard, metrics_writer **out) {
    *out = NULL;
    metrics_writer *w = calloc(1, sizeof *w);
    SL_CHECK_ALLOC(w, sizeof *w);
    char path[1024];
    sl_status st = fs_mkdirs(run_dir);
    if (st == SL_OK)
        st = fs_join(path, sizeof path, run_dir, "metrics.jsonl");
    if (st == SL_OK) {
        w->jsonl = fopen(path, "a");
        if (!w->jsonl)
            st = sl_errorf(SL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    if (st == SL_OK && tensorboard) {
        char tb[1024], host[64] = "host";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        st = fs_join(tb, sizeof tb, run_dir, "tb");
        if (st == SL_OK)
            st = fs_mkdirs(tb);
        if (st == SL_OK) {
            snprintf(w->event_path, sizeof w->event_path, "%s/events.out.tfevents.%lld.%s.%d", tb,
                     (long long)wall_time(), host, (int)getpid());
            w->events = fopen(w->event_path, "wb");
            if (!w->events)
                st = sl_errorf(SL_ERR_IO, "cannot create %s: %s", w->event_path, strerror(errno));
        }
        if (st == SL_OK)
            st = write_event(w, 0, "brain.Event:2", NULL, NULL, 0);
    }
    if (st != SL_OK) {
        metrics_close(w);
        return st;
    }
    *out = w;
    return SL_OK;
}

sl_status metrics_write(metrics_writer *w, int64_t step, const metric_kv *kv, int n) {
    return metrics_write_group(w, step, NULL, kv, n);
}

sl_status metrics_mark(metrics_writer *w, int64_t step, const char *event, const char *detail) {
    /* detail is a path or a short phrase: escape what JSON needs */
    char esc[1200];
    size_t o = 0;
    for (const char *p = detail ? detail : ""; *p && o + 7 < sizeof esc; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            esc[o++] = '\\';
            esc[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(esc + o, sizeof esc - o, "\\u%04x", c);
        } else {
            esc[o++] = (char)c;
        }
    }
    esc[o] = 0;
    if (fprintf(w->jsonl, "{\"step\": %lld, \"time\": %.3f, \"event\": \"%s\", \"detail\": \"%s\"}\n",
                (long long)step, wall_time(), event, esc) < 0 ||
        fflush(w->jsonl) != 0)
        return sl_errorf(SL_ERR_IO, "cannot write metrics.jsonl: %s", strerror(errno));
    return SL_OK;
}

sl_status metrics_write_group(metrics_writer *w, int64_t step, const char *group, const metric_kv *kv, int n) {
    if (fprintf(w->jsonl, "{\"step\": %lld, \"time\": %.3f", (long long)step, wall_time()) < 0)
        return sl_errorf(SL_ERR_IO, "cannot write metrics.jsonl: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        /* JSON has no NaN/Inf: write null so the line stays parseable. */
        if (kv[i].value != kv[i].value || kv[i].value - kv[i].value != 0)
            fprintf(w->jsonl, ", \"%s\": null", kv[i].key);
        else
            fprintf(w->jsonl, ", \"%s\": %.9g", kv[i].key, kv[i].value);
    }
    if (fprintf(w->jsonl, "}\n") < 0 || fflush(w->jsonl) != 0)
        return sl_errorf(SL_ERR_IO, "cannot write metrics.jsonl: %s", strerror(errno));
    if (w->events)
        SL_TRY(write_event(w, step, NULL, group, kv, n));
    return SL_OK;
}

const char *metrics_event_path(const metrics_writer *w) { return w->event_path; }

void metrics_close(metrics_writer *w) {
    if (!w)
        return;
    if (w->jsonl)
        fclose(w->jsonl);
    if (w->events)
        fclose(w->events);
    free(w);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double metrics_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
