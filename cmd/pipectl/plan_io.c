/* plan_io.c: plan files on disk. */
#include "plan_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int plan_io_save(const pc_plan *p, const char *path, pc_error *err)
{
    char *json = NULL;
    char *tmp = NULL;
    int fd = -1;
    int rc = pc_plan_render_json(p, &json, err);
    if (rc != 0)
        goto done;
    tmp = pc_asprintf("%s.tmp", path);
    if (tmp == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        rc = pc_error_set(err, PC_EIO, "cannot write plan file %s: %s", tmp, strerror(errno));
        goto done;
    }
    size_t len = strlen(json), off = 0;
    while (off < len) {
        ssize_t n = write(fd, json + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = pc_error_set(err, PC_EIO, "cannot write plan file %s: %s", tmp, strerror(errno));
            goto done;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = pc_error_set(err, PC_EIO, "cannot write plan file %s: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
done:
    if (fd >= 0)
        close(fd);
    if (rc != 0 && tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(json);
    return rc;
}

int plan_io_load(pc_plan **out, const char *path, pc_error *err)
{
    int rc = 0;
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return pc_error_set(err, PC_EIO, "cannot read plan file %s: %s", path, strerror(errno));
    pc_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > 64u * 1024 * 1024) {
            rc = pc_error_set(err, PC_EINVAL, "plan file %s is larger than 64 MiB", path);
            goto done;
        }
        if (pc_buf_append(&b, chunk, n) != 0) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (ferror(f)) {
        rc = pc_error_set(err, PC_EIO, "cannot read plan file %s: %s", path, strerror(errno));
        goto done;
    }
    size_t len = b.len;
    text = pc_buf_detach(&b);
    rc = pc_plan_load_json(out, text, len, err);
    if (rc != 0)
        pc_error_prefix(err, "plan file %s", path);
done:
    pc_buf_free(&b);
    free(text);
    fclose(f);
    return rc;
}
