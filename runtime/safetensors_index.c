/* Sharded Hugging Face checkpoints: model.safetensors.index.json maps each
 * tensor name to the shard file holding it ("weight_map"). Declared in
 * runtime/safetensors.h. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"

#define ST_INDEX_MAX_BYTES (256u << 20) /* an index lists names only: 256 MB is far beyond any real one */

typedef struct {
    const safetensors_tensor *t;
    int shard;
} ix_entry;

struct safetensors_index {
    safetensors_file **shards;
    int n_shards;
    ix_entry *entries; /* sorted by name */
    int n;
};

void safetensors_index_close(safetensors_index *ix) {
    if (!ix)
        return;
    for (int i = 0; i < ix->n_shards; i++)
        safetensors_close(ix->shards[i]);
    free(ix->shards);
    free(ix->entries);
    free(ix);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const ix_entry *)a)->t->name, ((const ix_entry *)b)->t->name);
}

static int find_entry(const safetensors_index *ix, const char *name) {
    int lo = 0, hi = ix->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ix->entries[mid].t->name);
        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Collects every tensor of every shard, sorted by name; a name in two shards
 * is an error. */
static sl_status build_entries(safetensors_index *ix) {
    int total = 0;
    for (int s = 0; s < ix->n_shards; s++)
        total += safetensors_count(ix->shards[s]);
    ix->entries = malloc(((size_t)total + 1) * sizeof *ix->entries);
    SL_CHECK_ALLOC(ix->entries, ((size_t)total + 1) * sizeof *ix->entries);
    for (int s = 0; s < ix->n_shards; s++)
        for (int i = 0; i < safetensors_count(ix->shards[s]); i++)
            ix->entries[ix->n++] = (ix_entry){safetensors_get(ix->shards[s], i), s};
    qsort(ix->entries, (size_t)ix->n, sizeof *ix->entries, cmp_entry);
    for (int i = 1; i < ix->n; i++)
        if (strcmp(ix->entries[i - 1].t->name, ix->entries[i].t->name) == 0)
            return sl_errorf(SL_ERR_FORMAT, "tensor \"%s\" is in both %s and %s", ix->entries[i].t->name,
                             safetensors_path(ix->shards[ix->entries[i - 1].shard]),
                             safetensors_path(ix->shards[ix->entries[i].shard]));
    return SL_OK;
}

static sl_status open_single(safetensors_index *ix, const char *path) {
    ix->shards = calloc(1, sizeof *ix->shards);
    SL_CHECK_ALLOC(ix->shards, sizeof *ix->shards);
    SL_TRY(safetensors_open(path, &ix->shards[0]));
    ix->n_shards = 1;
    return build_entries(ix);
}

/* Opens each distinct shard of weight_map once, in order of first mention. */
static sl_status open_shards(safetensors_index *ix, const char *index_path, const char *dir,
                             const cJSON *wm) {
    int n = cJSON_GetArraySize(wm);
    ix->shards = calloc((size_t)n + 1, sizeof *ix->shards);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    if (!ix->shards || !names) {
        free(names);
        return sl_errorf(SL_ERR_NOMEM, "out of memory reading %s", index_path);
    }
    sl_status st = SL_OK;
    for (const cJSON *e = wm->child; e && st == SL_OK; e = e->next) {
        if (!cJSON_IsString(e)) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a string (a shard file name)",
                           index_path, e->string);
            break;
        }
        const char *shard = e->valuestring;
        if (shard[0] == 0 || strchr(shard, '/') || strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: weight_map[\"%s\"] names shard \"%s\"; shards must be "
                           "plain file names next to the index", index_path, e->string, shard);
            break;
        }
        bool seen = false;
        for (int s = 0; s < ix->n_shards && !seen; s++)
            seen = strcmp(names[s], shard) == 0;
        if (seen)
            continue;
        char path[4096];
        st = fs_join(path, sizeof path, dir, shard);
        if (st == SL_OK)
            st = safetensors_open(path, &ix->shards[ix->n_shards]);
        if (st != SL_OK) {
            st = sl_error_wrapf(st, "%s: shard %s", index_path, shard);
            break;
        }
        names[ix->n_shards++] = shard;
    }
    if (st == SL_OK)
        st = build_entries(ix);
    /* the index and the shards must agree both ways */
    for (const cJSON *e = wm->child; e && st == SL_OK; e = e->next) {
        int at = find_entry(ix, e->string);
        if (at < 0)
            st = sl_errorf(SL_ERR_FORMAT, "%s maps tensor \"%s\" to %s, which has no such tensor",
                           index_path, e->string, e->valuestring);
        else if (strcmp(names[ix->entries[at].shard], e->valuestring) != 0)
            st = sl_errorf(SL_ERR_FORMAT, "%s maps tensor \"%s\" to %s, but it is in %s", index_path,
                           e->string, e->valuestring, names[ix->entries[at].shard]);
    }
    for (int i = 0; i < ix->n && st == SL_OK; i++)
        if (!cJSON_GetObjectItemCaseSensitive(wm, ix->entries[i].t->name))
            st = sl_errorf(SL_ERR_FORMAT, "%s holds tensor \"%s\", which the weight_map of %s does "
                           "not list: the index and the shards disagree (mixed downloads?)",
                           safetensors_path(ix->shards[ix->entries[i].shard]), ix->entries[i].t->name,
                           index_path);
    /* both directions hold, so a count mismatch means a name listed twice */
    if (st == SL_OK && ix->n != n)
        st = sl_errorf(SL_ERR_FORMAT, "%s: weight_map lists a tensor name twice", index_path);
    free(names);
    return st;
}

static sl_status open_index(safetensors_index *ix, const char *index_path) {
    char *text;
    size_t len;
    SL_TRY(fs_read_file(index_path, &text, &len, ST_INDEX_MAX_BYTES));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root)
        return sl_errorf(SL_ERR_FORMAT, "%s is not valid JSON", index_path);
    sl_status st = SL_OK;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = sl_errorf(SL_ERR_FORMAT, "%s has no \"weight_map\" object (tensor name -> shard file)",
                       index_path);
    } else {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", index_path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(dir, sizeof dir, ".");
        st = open_shards(ix, index_path, dir, wm);
    }
    cJSON_Delete(root);
    return st;
}

sl_status safetensors_index_open(const char *path, safetensors_index **out) {
    SL_CHECK_ARG(path && out, "safetensors_index_open: NULL argument");
    *out = NULL;
    safetensors_index *ix = calloc(1, sizeof *ix);
    SL_CHECK_ALLOC(ix, sizeof *ix);
    sl_status st;
    char buf[4096];
    if (fs_is_dir(path)) {
        st = fs_join(buf, sizeof buf, path, "model.safetensors.index.json");
        if (st == SL_OK && fs_exists(buf)) {
            st = open_index(ix, buf);
        } else if (st == SL_OK) {
            st = fs_join(buf, sizeof buf, path, "model.safetensors");
            if (st == SL_OK && !fs_exists(buf))
                st = sl_errorf(SL_ERR_IO, "%s has neither model.safetensors.index.json nor "
                               "model.safetensors: is it a Hugging Face model folder?", path);
            if (st == SL_OK)
                st = open_single(ix, buf);
        }
    } else if (ends_with(path, ".json")) {
        st = open_index(ix, path);
    } else {
        st = open_single(ix, path);
    }
    if (st != SL_OK) {
        safetensors_index_close(ix);
        return st;
    }
    *out = ix;
    return SL_OK;
}

int safetensors_index_count(const safetensors_index *ix) { return ix ? ix->n : 0; }

const safetensors_tensor *safetensors_index_get(const safetensors_index *ix, int i) {
    return ix && i >= 0 && i < ix->n ? ix->entries[i].t : NULL;
}

const safetensors_tensor *safetensors_index_find(const safetensors_index *ix, const char *name,
                                                 const safetensors_file **shard) {
    if (shard)
        *shard = NULL;
    if (!ix || !name)
        return NULL;
    int at = find_entry(ix, name);
    if (at < 0)
        return NULL;
    if (shard)
        *shard = ix->shards[ix->entries[at].shard];
    return ix->entries[at].t;
}

int safetensors_index_shard_count(const safetensors_index *ix) { return ix ? ix->n_shards : 0; }

const safetensors_file *safetensors_index_shard(const safetensors_index *ix, int i) {
    return ix && i >= 0 && i < ix->n_shards ? ix->shards[i] : NULL;
}
