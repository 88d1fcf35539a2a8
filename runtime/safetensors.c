/* safetensors reader and writer; the validation rules are listed in
 * runtime/safetensors.h. Sharded checkpoints are in safetensors_index.c. */
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/sort.h"

/* Integers in the header go through cJSON's double; 2^53 is the largest
 * range where every integer is exact. */
#define ST_MAX_JSON_INT 9007199254740992.0

struct safetensors_file {
    char *path;
    const uint8_t *base; /* the whole file (or the caller's buffer) */
    size_t size;
    bool mapped;
    uint64_t header_len;
    safetensors_tensor *tensors; /* sorted by data offset */
    int count;
    int *by_name; /* indices into tensors, sorted by name */
    char **meta_keys, **meta_vals;
    int n_meta;
};

/* Dtypes the safetensors spec defines but sl_dtype does not, to tell
 * "unsupported" apart from "not a dtype". */
static const char *const st_other_dtypes[] = {"BOOL", "F4",      "F6_E2M3", "F6_E3M2", "I8",
                                              "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16",   "C64",
                                              "F64",  "U64"};

/* ---- helpers shared by reader and writer ---- */

/* Returns the offset of the first invalid byte, or len when s is valid UTF-8
 * (no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_invalid_at(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (len - i < n)
            return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n;
    }
    return len;
}

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }

static sl_status shape_nbytes(sl_dtype dt, int ndim, const int64_t *shape, uint64_t *out) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return sl_errorf(SL_ERR_INVALID, "dim %d is %" PRId64 ", expected >= 0", d, shape[d]);
        if (!mul_u64(n, (uint64_t)shape[d], &n))
            return sl_errorf(SL_ERR_FORMAT, "element count overflows 64 bits at dim %d", d);
    }
    if (!mul_u64(n, dtype_size(dt), &n) || n > SIZE_MAX)
        return sl_errorf(SL_ERR_FORMAT, "byte size (elements x %zu) overflows 64 bits",
                         dtype_size(dt));
    *out = n;
    return SL_OK;
}

/* "[2, 3, 4]" into buf (truncated with "..." when long). */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

/* ---- reader ---- */

void safetensors_close(safetensors_file *f) {
    if (!f)
        return;
    for (int i = 0; i < f->count; i++)
        free((char *)f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->tensors);
    free(f->by_name);
    if (f->mapped && f->size > 0)
        munmap((void *)f->base, f->size);
    free(f->path);
    free(f);
}

/* A JSON number that is an exact integer in [0, 2^53). */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d >= ST_MAX_JSON_INT || d != (double)(uint64_t)d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsObject(v)) return "object";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsNull(v)) return "null";
    return "value";
}

static sl_status parse_metadata(safetensors_file *f, const cJSON *meta) {
    if (cJSON_IsNull(meta))
        return SL_OK;
    if (!cJSON_IsObject(meta))
        return sl_errorf(SL_ERR_FORMAT, "%s: \"__metadata__\" is a JSON %s, expected an object of strings",
                         f->path, json_kind(meta));
    int n = cJSON_GetArraySize(meta);
    if (n == 0)
        return SL_OK;
    f->meta_keys = calloc((size_t)n, sizeof *f->meta_keys);
    f->meta_vals = calloc((size_t)n, sizeof *f->meta_vals);
    SL_CHECK_ALLOC(f->meta_keys, (size_t)n * sizeof(char *));
    SL_CHECK_ALLOC(f->meta_vals, (size_t)n * sizeof(char *));
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return sl_errorf(SL_ERR_FORMAT, "%s: \"__metadata__\" entry \"%s\" is a JSON %s, expected a string",
                             f->path, kv->string, json_kind(kv));
        for (int i = 0; i < f->n_meta; i++)
            if (strcmp(f->meta_keys[i], kv->string) == 0)
                return sl_errorf(SL_ERR_FORMAT, "%s: \"__metadata__\" has key \"%s\" twice", f->path,
                                 kv->string);
        f->meta_keys[f->n_meta] = strdup(kv->string);
        f->meta_vals[f->n_meta] = strdup(kv->valuestring);
        f->n_meta++;
        SL_CHECK_ALLOC(f->meta_keys[f->n_meta - 1], strlen(kv->string) + 1);
        SL_CHECK_ALLOC(f->meta_vals[f->n_meta - 1], strlen(kv->valuestring) + 1);
    }
    return SL_OK;
}

static sl_status parse_dtype(const safetensors_file *f, const char *tname, const cJSON *v, sl_dtype *out) {
    if (!cJSON_IsString(v))
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\": \"dtype\" is a JSON %s, expected a string like \"BF16\"",
                         f->path, tname, json_kind(v));
    /* F64 is an sl_dtype for host reductions only: weights stay refused */
    if (dtype_parse(v->valuestring, out) && *out != SL_DTYPE_F64)
        return SL_OK;
    for (size_t i = 0; i < sizeof st_other_dtypes / sizeof *st_other_dtypes; i++)
        if (strcmp(v->valuestring, st_other_dtypes[i]) == 0)
            return sl_errorf(SL_ERR_FORMAT,
                             "%s: tensor \"%s\" has dtype %s, a safetensors dtype shardlm does not "
                             "support (supported: F32 BF16 F16 U8 U16 U32 I32 I64); convert the "
                             "checkpoint first",
                             f->path, tname, v->valuestring);
    return sl_errorf(SL_ERR_FORMAT,
                     "%s: tensor \"%s\" has unknown dtype \"%.64s\" (safetensors dtypes are F32 BF16 "
                     "F16 U8 U16 U32 I32 I64 F64 I8 I16 U64 BOOL C64 F8_E5M2 F8_E4M3 F8_E8M0 F4 F6_*)",
                     f->path, tname, v->valuestring);
}

/* Fills t from one header entry; checks everything that concerns the tensor
 * alone (offsets against the data size, dtype x shape against the range). */
static sl_status parse_tensor(const safetensors_file *f, const cJSON *e, uint64_t data_size,
                              safetensors_tensor *t) {
    const char *tname = e->string;
    if (!cJSON_IsObject(e))
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\" is a JSON %s, expected an object with "
                         "dtype, shape and data_offsets", f->path, tname, json_kind(e));
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        const cJSON **slot = strcmp(k->string, "dtype") == 0          ? &dt
                             : strcmp(k->string, "shape") == 0        ? &shape
                             : strcmp(k->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot)
            continue; /* unknown fields are ignored, as the reference does */
        if (*slot)
            return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\" has field \"%s\" twice", f->path, tname,
                             k->string);
        *slot = k;
    }
    if (!dt || !shape || !offs)
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\" lacks \"%s\"", f->path, tname,
                         !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    SL_TRY(parse_dtype(f, tname, dt, &t->dtype));

    if (!cJSON_IsArray(shape))
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\": \"shape\" is a JSON %s, expected an array",
                         f->path, tname, json_kind(shape));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > SAFETENSORS_MAX_DIMS)
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\" has %d dims; shardlm reads at most %d",
                         f->path, tname, ndim, SAFETENSORS_MAX_DIMS);
    t->ndim = ndim;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t u;
        if (!json_uint(v, &u))
            return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not an integer in [0, 2^53)",
                             f->path, tname, d);
        t->shape[d] = (int64_t)u;
    }

    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &begin) ||
        !json_uint(offs->child->next, &end))
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" must be [begin, end], two "
                         "integers in [0, 2^53)", f->path, tname);
    uint64_t data_start = 8 + f->header_len;
    if (begin > end)
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
                         "] has begin after end", f->path, tname, begin, end);
    if (end > data_size)
        return sl_errorf(SL_ERR_FORMAT,
                         "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "] end at file "
                         "offset %" PRIu64 ", past the end of the file (%zu bytes, data section %" PRIu64
                         " bytes): the file is truncated or the header is wrong",
                         f->path, tname, begin, end, data_start + end, f->size, data_size);
    uint64_t nbytes;
    char sbuf[160];
    if (shape_nbytes(t->dtype, t->ndim, t->shape, &nbytes) != SL_OK)
        return sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\": %s x shape %s overflows 64 bits", f->path,
                         tname, dtype_name(t->dtype), shape_str(sbuf, sizeof sbuf, t->ndim, t->shape));
    if (nbytes != end - begin)
        return sl_errorf(SL_ERR_FORMAT,
                         "%s: tensor \"%s\": %s x shape %s is %" PRIu64 " bytes but data_offsets [%" PRIu64
                         ", %" PRIu64 "] (file offset %" PRIu64 ") span %" PRIu64 " bytes",
                         f->path, tname, dtype_name(t->dtype),
                         shape_str(sbuf, sizeof sbuf, t->ndim, t->shape), nbytes, begin, end,
                         data_start + begin, end - begin);
    t->name = strdup(tname);
    SL_CHECK_ALLOC(t->name, strlen(tname) + 1);
    t->data = f->base + data_start + begin;
    t->nbytes = (size_t)nbytes;
    t->begin = data_start + begin;
    return SL_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const safetensors_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Tensor indices by name (ctx: the tensors). */
static int cmp_index_name(const void *a, const void *b, void *ctx) {
    const safetensors_tensor *t = ctx;
    return strcmp(t[*(const int *)a].name, t[*(const int *)b].name);
}

/* Checks the tensors tile the data section: sorted by (begin, end) each one
 * starts where the previous ended and the last ends at the end of the file
 * (the reference's Metadata::validate and its MetadataIncompleteBuffer
 * check). */
static sl_status check_layout(const safetensors_file *f, uint64_t data_size) {
    uint64_t data_start = 8 + f->header_len, expect = data_start;
    const safetensors_tensor *prev = NULL;
    for (int i = 0; i < f->count; i++) {
        const safetensors_tensor *t = &f->tensors[i];
        if (t->begin < expect)
            return sl_errorf(SL_ERR_FORMAT,
                             "%s: tensors \"%s\" (file bytes %" PRIu64 "..%" PRIu64 ") and \"%s\" (file "
                             "bytes %" PRIu64 "..%" PRIu64 ") overlap",
                             f->path, prev->name, prev->begin, prev->begin + prev->nbytes, t->name,
                             t->begin, t->begin + t->nbytes);
        if (t->begin > expect)
            return sl_errorf(SL_ERR_FORMAT,
                             "%s: file bytes %" PRIu64 "..%" PRIu64 " before tensor \"%s\" belong to no "
                             "tensor; safetensors requires the tensors to cover the data section "
                             "without gaps",
                             f->path, expect, t->begin, t->name);
        expect = t->begin + t->nbytes;
        prev = t;
    }
    if (expect != data_start + data_size)
        return sl_errorf(SL_ERR_FORMAT,
                         "%s: the tensors end at file offset %" PRIu64 " but the file is %zu bytes: "
                         "%" PRIu64 " trailing bytes belong to no tensor (wrong header or appended data)",
                         f->path, expect, f->size, data_start + data_size - expect);
    return SL_OK;
}

static sl_status parse_header(safetensors_file *f) {
    if (f->size < 8)
        return sl_errorf(SL_ERR_FORMAT, "%s: the file is %zu bytes, too short for the 8-byte header "
                         "length: not a safetensors file, or truncated", f->path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | f->base[i];
    f->header_len = n;
    if (n > SAFETENSORS_MAX_HEADER)
        return sl_errorf(SL_ERR_FORMAT, "%s: header length %" PRIu64 " (file bytes 0..8) is over the "
                         "%llu-byte limit: not a safetensors file, or corrupted",
                         f->path, n, SAFETENSORS_MAX_HEADER);
    if (n > f->size - 8)
        return sl_errorf(SL_ERR_FORMAT, "%s: header length %" PRIu64 " runs past the end of the file "
                         "(8 + %" PRIu64 " > %zu bytes): truncated, or not a safetensors file",
                         f->path, n, n, f->size);
    const uint8_t *h = f->base + 8;
    size_t bad = utf8_invalid_at(h, (size_t)n);
    if (bad < n)
        return sl_errorf(SL_ERR_FORMAT, "%s: header is not valid UTF-8 at file offset %zu", f->path,
                         bad + 8);
    /* cJSON takes any byte <= 32 for whitespace; JSON allows none but these. */
    for (size_t i = 0; i < n; i++)
        if (h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
            return sl_errorf(SL_ERR_FORMAT, "%s: header has control byte 0x%02x at file offset %zu, "
                             "which JSON does not allow", f->path, h[i], i + 8);
    /* A NUL-terminated private copy so cJSON cannot read past the header. */
    char *text = malloc((size_t)n + 1);
    SL_CHECK_ALLOC(text, (size_t)n + 1);
    memcpy(text, h, (size_t)n);
    text[n] = 0;
    const char *stop = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &stop, 0);
    if (!root) {
        size_t at = stop && stop >= text && stop <= text + n ? (size_t)(stop - text) : 0;
        free(text);
        return sl_errorf(SL_ERR_FORMAT, "%s: header (%" PRIu64 " bytes at file offset 8) is not valid "
                         "JSON: parsing stopped at file offset %zu", f->path, n, at + 8);
    }
    for (size_t i = (size_t)(stop - text); i < n; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') {
            cJSON_Delete(root);
            free(text);
            return sl_errorf(SL_ERR_FORMAT, "%s: header has data after the JSON value, at file offset "
                             "%zu", f->path, i + 8);
        }
    }
    free(text);
    sl_status st = SL_OK;
    uint64_t data_size = f->size - 8 - n;
    if (!cJSON_IsObject(root)) {
        st = sl_errorf(SL_ERR_FORMAT, "%s: header is a JSON %s, expected an object of tensors",
                       f->path, json_kind(root));
        goto done;
    }
    int entries = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)entries + 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = sl_errorf(SL_ERR_NOMEM, "out of memory for %d tensor entries of %s", entries, f->path);
        goto done;
    }
    bool seen_meta = false;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta) {
                st = sl_errorf(SL_ERR_FORMAT, "%s: header has \"__metadata__\" twice", f->path);
                goto done;
            }
            seen_meta = true;
            if ((st = parse_metadata(f, e)) != SL_OK)
                goto done;
            continue;
        }
        if ((st = parse_tensor(f, e, data_size, &f->tensors[f->count])) != SL_OK)
            goto done;
        f->count++;
    }
    f->by_name = malloc(((size_t)f->count + 1) * sizeof *f->by_name);
    int *tmp = malloc(((size_t)f->count + 1) * sizeof *tmp);
    if (!f->by_name || !tmp) {
        free(tmp);
        st = sl_errorf(SL_ERR_NOMEM, "out of memory indexing %d tensors of %s", f->count, f->path);
        goto done;
    }
    qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, cmp_begin);
    for (int i = 0; i < f->count; i++)
        f->by_name[i] = i;
    sort_stable(f->by_name, tmp, (size_t)f->count, sizeof *tmp, cmp_index_name, f->tensors);
    free(tmp);
    for (int i = 1; i < f->count; i++) {
        if (strcmp(f->tensors[f->by_name[i - 1]].name, f->tensors[f->by_name[i]].name) == 0) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: tensor \"%s\" appears twice in the header", f->path,
                           f->tensors[f->by_name[i]].name);
            goto done;
        }
    }
    st = check_layout(f, data_size);
done:
    cJSON_Delete(root);
    return st;
}

static sl_status file_new(const char *path, safetensors_file **out) {
    safetensors_file *f = calloc(1, sizeof *f);
    SL_CHECK_ALLOC(f, sizeof *f);
    f->path = strdup(path ? path : "<memory>");
    if (!f->path) {
        free(f);
        return sl_errorf(SL_ERR_NOMEM, "out of memory");
    }
    *out = f;
    return SL_OK;
}

sl_status safetensors_open_memory(const void *buf, size_t len, const char *label, safetensors_file **out) {
    SL_CHECK_ARG(out && (buf || len == 0), "safetensors_open_memory: NULL argument");
    *out = NULL;
    safetensors_file *f = NULL;
    SL_TRY(file_new(label, &f));
    f->base = buf;
    f->size = len;
    sl_status st = parse_header(f);
    if (st != SL_OK) {
        safetensors_close(f);
        return st;
    }
    *out = f;
    return SL_OK;
}

sl_status safetensors_open(const char *path, safetensors_file **out) {
    SL_CHECK_ARG(path && out, "safetensors_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sl_errorf(SL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sl_errorf(SL_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sl_errorf(SL_ERR_IO, "%s is not a regular file", path);
    }
    safetensors_file *f = NULL;
    sl_status st = file_new(path, &f);
    if (st != SL_OK) {
        close(fd);
        return st;
    }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            safetensors_close(f);
            return sl_errorf(SL_ERR_IO, "cannot mmap %s (%zu bytes): %s", path, (size_t)sb.st_size,
                             strerror(e));
        }
        f->base = p;
        f->mapped = true;
    }
    close(fd); /* the mapping keeps the file referenced */
    st = parse_header(f);
    if (st != SL_OK) {
        safetensors_close(f);
        return st;
    }
    *out = f;
    return SL_OK;
}

int safetensors_count(const safetensors_file *f) { return f ? f->count : 0; }

const safetensors_tensor *safetensors_get(const safetensors_file *f, int i) {
    return f && i >= 0 && i < f->count ? &f->tensors[i] : NULL;
}

const safetensors_tensor *safetensors_find(const safetensors_file *f, const char *name) {
    if (!f || !name)
        return NULL;
    int lo = 0, hi = f->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const safetensors_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *safetensors_metadata(const safetensors_file *f, const char *key) {
    if (!f || !key)
        return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_vals[i];
    return NULL;
}

const char *safetensors_path(const safetensors_file *f) { return f ? f->path : ""; }

/* ---- writer ---- */

typedef struct {
    char *name;
    sl_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} st_entry;

struct safetensors_writer {
    st_entry *e;
    int n, cap;
    bool planning; /* inside safetensors_writer_add_planned: data comes through a stream */
    char **keys, **vals;
    int nm, mcap;
};

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal escaped as serde_json does: \" \\ \b \f \n \r \t,
 * other control characters as \u00xx, everything else (UTF-8 included) raw. */
static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

safetensors_writer *safetensors_writer_create(void) { return calloc(1, sizeof(safetensors_writer)); }

void safetensors_writer_destroy(safetensors_writer *w) {
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->keys[i]);
        free(w->vals[i]);
    }
    free(w->e);
    free(w->keys);
    free(w->vals);
    free(w);
}

static sl_status check_utf8_arg(const char *what, const char *s) {
    size_t n = strlen(s);
    size_t bad = utf8_invalid_at((const uint8_t *)s, n);
    if (bad < n)
        return sl_errorf(SL_ERR_INVALID, "safetensors writer: %s \"%.64s\" is not valid UTF-8 (byte %zu)",
                         what, s, bad);
    return SL_OK;
}

sl_status safetensors_writer_add(safetensors_writer *w, const char *name, sl_dtype dt, int ndim,
                                 const int64_t *shape, const void *data) {
    SL_CHECK_ARG(w && name && (shape || ndim == 0), "safetensors_writer_add: NULL argument");
    SL_CHECK_ARG((unsigned)dt < SL_DTYPE_COUNT, "safetensors_writer_add: tensor \"%s\": bad dtype %d",
                 name, (int)dt);
    SL_CHECK_ARG(ndim >= 0 && ndim <= SAFETENSORS_MAX_DIMS,
                 "safetensors_writer_add: tensor \"%s\": ndim %d, expected 0..%d", name, ndim,
                 SAFETENSORS_MAX_DIMS);
    SL_CHECK_ARG(strcmp(name, "__metadata__") != 0,
                 "safetensors_writer_add: \"__metadata__\" is reserved and cannot name a tensor");
    SL_TRY(check_utf8_arg("tensor name", name));
    for (int i = 0; i < w->n; i++)
        SL_CHECK_ARG(strcmp(w->e[i].name, name) != 0,
                     "safetensors_writer_add: tensor \"%s\" was already added", name);
    uint64_t nbytes;
    if (shape_nbytes(dt, ndim, shape, &nbytes) != SL_OK)
        return sl_error_wrapf(SL_ERR_INVALID, "safetensors_writer_add: tensor \"%s\"", name);
    SL_CHECK_ARG(data || nbytes == 0 || w->planning, "safetensors_writer_add: tensor \"%s\" has %" PRIu64
                 " bytes but data is NULL", name, nbytes);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        st_entry *e = realloc(w->e, (size_t)cap * sizeof *e);
        SL_CHECK_ALLOC(e, (size_t)cap * sizeof *e);
        w->e = e;
        w->cap = cap;
    }
    st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    SL_CHECK_ALLOC(e->name, strlen(name) + 1);
    e->dtype = dt;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        e->shape[d] = shape[d];
    e->data = data;
    e->nbytes = nbytes;
    w->n++;
    return SL_OK;
}

sl_status safetensors_writer_add_planned(safetensors_writer *w, const char *name, sl_dtype dt, int ndim,
                                         const int64_t *shape) {
    w->planning = true;
    sl_status st = safetensors_writer_add(w, name, dt, ndim, shape, NULL);
    w->planning = false;
    return st;
}

sl_status safetensors_writer_set_metadata(safetensors_writer *w, const char *key, const char *value) {
    SL_CHECK_ARG(w && key && value, "safetensors_writer_set_metadata: NULL argument");
    SL_TRY(check_utf8_arg("metadata key", key));
    SL_TRY(check_utf8_arg("metadata value", value));
    char *v = strdup(value);
    SL_CHECK_ALLOC(v, strlen(value) + 1);
    for (int i = 0; i < w->nm; i++) {
        if (strcmp(w->keys[i], key) == 0) {
            free(w->vals[i]);
            w->vals[i] = v;
            return SL_OK;
        }
    }
    if (w->nm == w->mcap) {
        int cap = w->mcap ? 2 * w->mcap : 8;
        char **k2 = realloc(w->keys, (size_t)cap * sizeof *k2);
        if (k2)
            w->keys = k2;
        char **v2 = k2 ? realloc(w->vals, (size_t)cap * sizeof *v2) : NULL;
        if (v2)
            w->vals = v2;
        if (!k2 || !v2) {
            free(v);
            return sl_errorf(SL_ERR_NOMEM, "out of memory adding metadata \"%s\"", key);
        }
        w->mcap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return sl_errorf(SL_ERR_NOMEM, "out of memory adding metadata \"%s\"", key);
    }
    /* insertion sort keeps keys in bytewise order, as the reference writes them */
    int at = w->nm;
    while (at > 0 && strcmp(w->keys[at - 1], key) > 0) {
        w->keys[at] = w->keys[at - 1];
        w->vals[at] = w->vals[at - 1];
        at--;
    }
    w->keys[at] = k;
    w->vals[at] = v;
    w->nm++;
    return SL_OK;
}

static sl_status build_header(const safetensors_writer *w, strbuf *b, uint64_t *data_size) {
    char num[64];
    sb_str(b, "{");
    if (w->nm > 0) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i)
                sb_str(b, ",");
            sb_json_string(b, w->keys[i]);
            sb_str(b, ":");
            sb_json_string(b, w->vals[i]);
        }
        sb_str(b, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->e[i];
        if (i || w->nm > 0)
            sb_str(b, ",");
        sb_json_string(b, e->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, dtype_name(e->dtype));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%" PRId64, d ? "," : "", e->shape[d]);
            sb_str(b, num);
        }
        if (__builtin_add_overflow(off, e->nbytes, &off))
            return sl_errorf(SL_ERR_INVALID, "safetensors writer: total data size overflows 64 bits");
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off - e->nbytes, off);
        sb_str(b, num);
    }
    sb_str(b, "}");
    while (b->len % 8 != 0)
        sb_str(b, " ");
    if (b->oom)
        return sl_errorf(SL_ERR_NOMEM, "out of memory building a safetensors header");
    if (b->len > SAFETENSORS_MAX_HEADER)
        return sl_errorf(SL_ERR_INVALID, "safetensors header would be %zu bytes, over the %llu-byte "
                         "limit readers enforce; split the tensors into shards", b->len,
                         SAFETENSORS_MAX_HEADER);
    *data_size = off;
    return SL_OK;
}

static sl_status write_all(int fd, const char *tmp, const void *data, uint64_t len) {
    const char *p = data;
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = write(fd, p, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return sl_errorf(SL_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        }
        p += n;
        len -= (uint64_t)n;
    }
    return SL_OK;
}

static sl_status write_body(int fd, const char *tmp, const safetensors_writer *w, const strbuf *h) {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)h->len >> (8 * i));
    SL_TRY(write_all(fd, tmp, len8, 8));
    SL_TRY(write_all(fd, tmp, h->p, h->len));
    for (int i = 0; i < w->n; i++)
        SL_TRY(write_all(fd, tmp, w->e[i].data, w->e[i].nbytes));
    if (fsync(fd) != 0)
        return sl_errorf(SL_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    return SL_OK;
}

sl_status safetensors_writer_write(safetensors_writer *w, const char *path) {
    SL_CHECK_ARG(w && path, "safetensors_writer_write: NULL argument");
    for (int i = 0; i < w->n; i++)
        SL_CHECK_ARG(w->e[i].data || w->e[i].nbytes == 0,
                     "safetensors_writer_write: tensor \"%s\" has %" PRIu64 " bytes but no data "
                     "(added with safetensors_writer_add_planned: write it through a stream)",
                     w->e[i].name, w->e[i].nbytes);
    strbuf h = {0};
    uint64_t data_size = 0;
    sl_status st = build_header(w, &h, &data_size);
    if (st != SL_OK) {
        free(h.p);
        return st;
    }
    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        free(h.p);
        return sl_errorf(SL_ERR_IO, "path too long: %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(h.p);
        return sl_errorf(SL_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    st = write_body(fd, tmp, w, &h);
    free(h.p);
    if (close(fd) != 0 && st == SL_OK)
        st = sl_errorf(SL_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    if (st == SL_OK)
        st = fs_rename_atomic(tmp, path);
    if (st != SL_OK) {
        unlink(tmp);
        return sl_error_wrapf(st, "writing safetensors file %s (%" PRIu64 " data bytes)", path, data_size);
    }
    return SL_OK;
}

/* ---- streamed writing ---- */

struct safetensors_stream {
    int fd;
    char path[4096];
    char tmp[4200];
    uint64_t data_begin;  /* file offset of the data section: 8 + header length */
    uint64_t *offset;     /* per tensor: offset in the data section */
    uint64_t *nbytes;
    bool *put;
    int n;
};

void safetensors_stream_abort(safetensors_stream *s) {
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    unlink(s->tmp);
    free(s->offset);
    free(s->nbytes);
    free(s->put);
    free(s);
}

sl_status safetensors_stream_open(const safetensors_writer *w, const char *path, safetensors_stream **out) {
    *out = NULL;
    SL_CHECK_ARG(w && path && strlen(path) < 4000, "safetensors_stream_open: bad argument");
    strbuf h = {0};
    uint64_t data_size = 0;
    sl_status st = build_header(w, &h, &data_size);
    safetensors_stream *s = calloc(1, sizeof *s);
    if (st == SL_OK && !s)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory opening %s", path);
    if (st != SL_OK) {
        free(h.p);
        free(s);
        return st;
    }
    s->fd = -1;
    s->n = w->n;
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp.%d", path, (int)getpid());
    s->offset = calloc((size_t)(w->n + 1), sizeof *s->offset);
    s->nbytes = calloc((size_t)(w->n + 1), sizeof *s->nbytes);
    s->put = calloc((size_t)(w->n + 1), sizeof *s->put);
    if (!s->offset || !s->nbytes || !s->put)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory opening %s", path);
    uint64_t off = 0;
    for (int i = 0; i < w->n && st == SL_OK; i++) {
        s->offset[i] = off;
        s->nbytes[i] = w->e[i].nbytes;
        off += w->e[i].nbytes;
    }
    s->data_begin = 8 + (uint64_t)h.len;
    if (st == SL_OK) {
        s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (s->fd < 0)
            st = sl_errorf(SL_ERR_IO, "cannot create %s: %s", s->tmp, strerror(errno));
    }
    if (st == SL_OK) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
        st = write_all(s->fd, s->tmp, len8, 8);
        if (st == SL_OK)
            st = write_all(s->fd, s->tmp, h.p, h.len);
        /* the whole file's size now: tensors land at their offsets in any order */
        if (st == SL_OK && ftruncate(s->fd, (off_t)(s->data_begin + data_size)) != 0)
            st = sl_errorf(SL_ERR_IO, "cannot size %s to %" PRIu64 " bytes: %s", s->tmp,
                           s->data_begin + data_size, strerror(errno));
    }
    free(h.p);
    if (st != SL_OK) {
        safetensors_stream_abort(s);
        return st;
    }
    *out = s;
    return SL_OK;
}

sl_status safetensors_stream_put(safetensors_stream *s, int index, const void *data) {
    SL_CHECK_ARG(index >= 0 && index < s->n, "safetensors_stream_put: tensor %d of %d", index, s->n);
    uint64_t done = 0, n = s->nbytes[index];
    const char *p = data;
    while (done < n) {
        ssize_t k = pwrite(s->fd, p + done, (size_t)(n - done), (off_t)(s->data_begin + s->offset[index] + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return sl_errorf(SL_ERR_IO, "cannot write %s: %s", s->tmp, strerror(errno));
        done += (uint64_t)k;
    }
    s->put[index] = true;
    return SL_OK;
}

sl_status safetensors_stream_close(safetensors_stream *s) {
    sl_status st = SL_OK;
    for (int i = 0; i < s->n && st == SL_OK; i++)
        if (!s->put[i] && s->nbytes[i] > 0)
            st = sl_errorf(SL_ERR_INTERNAL, "%s: tensor %d of %d was never written", s->path, i, s->n);
    if (st == SL_OK && fsync(s->fd) != 0)
        st = sl_errorf(SL_ERR_IO, "fsync %s: %s", s->tmp, strerror(errno));
    if (st == SL_OK && close(s->fd) != 0)
        st = sl_errorf(SL_ERR_IO, "cannot close %s: %s", s->tmp, strerror(errno));
    s->fd = -1;
    if (st == SL_OK)
        st = fs_rename_atomic(s->tmp, s->path);
    if (st != SL_OK) {
        safetensors_stream_abort(s);
        return st;
    }
    free(s->offset);
    free(s->nbytes);
    free(s->put);
    free(s);
    return SL_OK;
}
