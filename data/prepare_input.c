/* data/prepare_input.c: input discovery and record streaming (see header). */
#include "data/prepare_input.h"

#include <dirent.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/clean.h"
#include "runtime/check.h"

struct prep_input {
    char **files;
    bool *json;
    int n_files, cap_files;
    uint64_t total_bytes, done_bytes;
    int text_split;
    size_t max_bytes;
    int cur;   /* current file, -1 before the first */
    FILE *f;
    uint64_t line;
    char *linebuf;
    size_t linecap;
    clean_buf rec;
};

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static sl_status add_file(prep_input *in, const char *path, const char *format) {
    if (in->n_files == in->cap_files) {
        int nc = in->cap_files ? in->cap_files * 2 : 16;
        char **nf = realloc(in->files, sizeof *nf * (size_t)nc);
        SL_CHECK_ALLOC(nf, sizeof *nf * (size_t)nc);
        in->files = nf;
        bool *nj = realloc(in->json, sizeof *nj * (size_t)nc);
        SL_CHECK_ALLOC(nj, sizeof *nj * (size_t)nc);
        in->json = nj;
        in->cap_files = nc;
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sl_errorf(SL_ERR_IO, "input %s cannot be read", path);
    in->files[in->n_files] = strdup(path);
    SL_CHECK_ALLOC(in->files[in->n_files], strlen(path));
    bool json = strcmp(format, "jsonl") == 0 ||
                (strcmp(format, "auto") == 0 && (ends_with(path, ".jsonl") || ends_with(path, ".json")));
    in->json[in->n_files++] = json;
    in->total_bytes += (uint64_t)sb.st_size;
    return SL_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static sl_status add_spec(prep_input *in, const char *spec, const char *format) {
    struct stat sb;
    char **names = NULL;
    size_t n = 0, cap = 0;
    sl_status st = SL_OK;
    if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR *dir = opendir(spec);
        if (!dir)
            return sl_errorf(SL_ERR_IO, "cannot list input folder %s", spec);
        struct dirent *e;
        while (st == SL_OK && (e = readdir(dir)) != NULL) {
            if (!ends_with(e->d_name, ".txt") && !ends_with(e->d_name, ".jsonl") &&
                !ends_with(e->d_name, ".json"))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nn = realloc(names, sizeof *nn * cap);
                if (!nn) {
                    st = sl_errorf(SL_ERR_NOMEM, "out of memory listing %s", spec);
                    break;
                }
                names = nn;
            }
            size_t len = strlen(spec) + strlen(e->d_name) + 2;
            names[n] = malloc(len);
            if (!names[n]) {
                st = sl_errorf(SL_ERR_NOMEM, "out of memory listing %s", spec);
                break;
            }
            snprintf(names[n++], len, "%s/%s", spec, e->d_name);
        }
        closedir(dir);
        if (st == SL_OK && n == 0)
            st = sl_errorf(SL_ERR_INVALID, "input folder %s holds no .txt, .jsonl or .json file", spec);
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n && st == SL_OK; i++)
            st = add_file(in, names[i], format);
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return st;
    }
    if (stat(spec, &sb) == 0)
        return add_file(in, spec, format);
    glob_t g;
    int rc = glob(spec, 0, NULL, &g);
    if (rc == GLOB_NOMATCH)
        return sl_errorf(SL_ERR_INVALID, "prepare input \"%s\" matches no file", spec);
    if (rc != 0)
        return sl_errorf(SL_ERR_IO, "glob %s failed", spec);
    for (size_t i = 0; i < g.gl_pathc && st == SL_OK; i++)
        st = add_file(in, g.gl_pathv[i], format);
    globfree(&g);
    return st;
}

sl_status prep_input_open(const cfg_prepare *cfg, size_t max_bytes, prep_input **out) {
    *out = NULL;
    SL_CHECK_ARG(cfg->inputs.n > 0, "prepare.inputs is empty (give --input FILE)");
    SL_CHECK_ARG(strcmp(cfg->format, "auto") == 0 || strcmp(cfg->format, "text") == 0 ||
                     strcmp(cfg->format, "jsonl") == 0,
                 "prepare.format \"%s\" must be auto, text or jsonl", cfg->format);
    prep_input *in = calloc(1, sizeof *in);
    SL_CHECK_ALLOC(in, sizeof *in);
    in->cur = -1;
    in->text_split = cfg->text_split;
    in->max_bytes = max_bytes;
    sl_status st = SL_OK;
    for (int i = 0; i < cfg->inputs.n && st == SL_OK; i++)
        st = add_spec(in, cfg->inputs.items[i], cfg->format);
    if (st != SL_OK) {
        prep_input_close(in);
        return st;
    }
    *out = in;
    return SL_OK;
}

void prep_input_close(prep_input *in) {
    if (!in)
        return;
    if (in->f)
        fclose(in->f);
    for (int i = 0; i < in->n_files; i++)
        free(in->files[i]);
    free(in->files);
    free(in->json);
    free(in->linebuf);
    clean_buf_free(&in->rec);
    free(in);
}

uint64_t prep_input_total_bytes(const prep_input *in) { return in->total_bytes; }
uint64_t prep_input_bytes_done(const prep_input *in) { return in->done_bytes; }
int prep_input_files(const prep_input *in) { return in->n_files; }
const char *prep_input_file_name(const prep_input *in, int file) { return in->files[file]; }

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* Reads one line into linebuf; returns its length or -1 at EOF. */
static ssize_t read_line(prep_input *in) {
    ssize_t n = getline(&in->linebuf, &in->linecap, in->f);
    if (n >= 0) {
        in->line++;
        in->done_bytes += (uint64_t)n;
    }
    return n;
}

sl_status prep_input_next(prep_input *in, prep_record *rec, bool *eof) {
    *eof = false;
    for (;;) {
        if (!in->f) {
            if (in->cur + 1 >= in->n_files) {
                *eof = true;
                return SL_OK;
            }
            in->cur++;
            in->f = fopen(in->files[in->cur], "rb");
            if (!in->f)
                return sl_errorf(SL_ERR_IO, "cannot open input %s", in->files[in->cur]);
            in->line = 0;
        }
        in->rec.len = 0;
        memset(rec, 0, sizeof *rec);
        rec->file = in->cur;
        rec->is_json = in->json[in->cur];
        ssize_t n;
        if (rec->is_json) {
            while ((n = read_line(in)) >= 0 && blank(in->linebuf, (size_t)n))
                ;
            if (n >= 0) {
                rec->line = in->line;
                if ((size_t)n > in->max_bytes)
                    rec->oversize = true;
                else
                    SL_TRY(clean_buf_append(&in->rec, in->linebuf, (size_t)n));
            }
        } else {
            bool whole = in->text_split == PREPARE_TEXT_SPLIT_FILE;
            bool any = false;
            while ((n = read_line(in)) >= 0) {
                bool b = blank(in->linebuf, (size_t)n);
                if (!whole && b) {
                    if (any)
                        break;
                    continue;
                }
                if (!any)
                    rec->line = in->line;
                any = true;
                if (in->rec.len + (size_t)n > in->max_bytes)
                    rec->oversize = true;
                if (!rec->oversize)
                    SL_TRY(clean_buf_append(&in->rec, in->linebuf, (size_t)n));
            }
            if (!any)
                n = -1;
            else
                n = 0;
        }
        if (n < 0) {
            if (ferror(in->f)) {
                sl_status st = sl_errorf(SL_ERR_IO, "read error in %s after line %llu",
                                         in->files[in->cur], (unsigned long long)in->line);
                fclose(in->f);
                in->f = NULL;
                return st;
            }
            fclose(in->f);
            in->f = NULL;
            continue;
        }
        if (rec->oversize)
            in->rec.len = 0;
        rec->data = in->rec.p ? in->rec.p : "";
        rec->len = in->rec.len;
        return SL_OK;
    }
}
