#define _GNU_SOURCE
#include "runtime/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

sl_status fs_read_file(const char *path, char **out, size_t *len, size_t max_bytes) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sl_errorf(SL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return sl_errorf(SL_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        fclose(f);
        return sl_errorf(SL_ERR_IO, "%s is a folder, expected a file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return sl_errorf(SL_ERR_IO, "%s is %lld bytes, more than the %zu allowed", path,
                         (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return sl_errorf(SL_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return sl_errorf(SL_ERR_IO, "short read of %s: %zu of %zu bytes", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return SL_OK;
}

sl_status fs_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return sl_errorf(SL_ERR_IO, "cannot open %s to fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) /* some filesystems refuse fsync on folders */
        return sl_errorf(SL_ERR_IO, "fsync %s: %s", path, strerror(e));
    return SL_OK;
}

static sl_status fsync_parent(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    return fs_fsync_path(dirname(tmp));
}

sl_status fs_rename_atomic(const char *from, const char *to) {
    if (rename(from, to) != 0)
        return sl_errorf(SL_ERR_IO, "cannot rename %s to %s: %s", from, to, strerror(errno));
    return fsync_parent(to);
}

sl_status fs_write_atomic(const char *path, const void *data, size_t len) {
    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return sl_errorf(SL_ERR_IO, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return sl_errorf(SL_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return sl_errorf(SL_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return sl_errorf(SL_ERR_IO, "fsync %s: %s", tmp, strerror(e));
    }
    close(fd);
    sl_status st = fs_rename_atomic(tmp, path);
    if (st != SL_OK)
        unlink(tmp);
    return st;
}

sl_status fs_mkdirs(const char *path) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return sl_errorf(SL_ERR_IO, "bad folder path \"%s\"", path);
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return sl_errorf(SL_ERR_IO, "cannot create folder %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return sl_errorf(SL_ERR_IO, "cannot create folder %s: %s", tmp, strerror(errno));
    if (!fs_is_dir(tmp))
        return sl_errorf(SL_ERR_IO, "%s exists and is not a folder", tmp);
    return SL_OK;
}

bool fs_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

sl_status fs_remove_tree(const char *path) {
    if (!fs_exists(path))
        return SL_OK;
    if (nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return sl_errorf(SL_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return SL_OK;
}

uint64_t fs_hash64(const void *data, size_t len) { return XXH3_64bits(data, len); }

sl_status fs_join(char *out, size_t cap, const char *a, const char *b) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return sl_errorf(SL_ERR_IO, "path too long: %s/%s", a, b);
    return SL_OK;
}
