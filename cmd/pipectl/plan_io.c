/* plan_io.c: plan files on disk. */
#include "plan_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int plan_io_save(const pc_plan *p, const char *path, pc_error *err)
{
    char *json = NULL;
    int rc = pc_plan_render_json(p, &json, err);
    if (rc != 0)
        goto done;
    /* a plan file is shown and stored: no secret of the manifest in it (none is expected) */
    char *safe = pc_scrub(json, pc_secrets_installed());
    free(json);
    json = safe;
    if (json == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pc_durable_write(path, json, strlen(json), 0600, err)) != 0)
        pc_error_prefix(err, "plan file");
done:
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
