/* envfile.c: KEY=VALUE files that hand secrets to a process started without the operator's
 * environment (PostgreSQL's archive_command and restore_command).
 *
 * Format: one KEY=VALUE per line; the value is the rest of the line as written (no quoting, no
 * expansion; a trailing CR is dropped); blank lines and lines starting with '#' are skipped. The
 * file must be a regular file, not readable or writable by group or others (like ssh's keys):
 * a secret in a file anyone may read is not a secret. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENVFILE_MAX (64 * 1024)

static bool key_ok(const char *k, size_t n)
{
    if (n == 0 || (k[0] >= '0' && k[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') ||
              (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
            return false;
    return true;
}

int pc_envfile_load(const char *path, pc_kvlist *out, pc_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        return pc_error_set(err, e == ENOENT ? PC_ENOTFOUND : PC_EIO,
                            "cannot open credentials file %s: %s (it must be readable by the "
                            "user running pipectl%s)",
                            path, strerror(e),
                            e == ELOOP ? "; a symbolic link is not followed" : "");
    }
    struct stat st;
    int rc = 0;
    char *text = NULL;
    size_t len = 0;
    if (fstat(fd, &st) != 0) {
        rc = pc_error_set(err, PC_EIO, "cannot stat credentials file %s: %s", path,
                          strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pc_error_set(err, PC_EINVAL, "credentials file %s is not a regular file", path);
        goto done;
    }
    if ((st.st_mode & 077) != 0) {
        rc = pc_error_set(err, PC_EINVAL,
                          "credentials file %s is accessible by group or others (mode %04o): "
                          "run chmod 600 %s (and chown it to the user that reads it)",
                          path, (unsigned)(st.st_mode & 07777), path);
        goto done;
    }
    if (st.st_size > ENVFILE_MAX) {
        rc = pc_error_set(err, PC_EINVAL, "credentials file %s is %lld bytes; at most %d expected",
                          path, (long long)st.st_size, ENVFILE_MAX);
        goto done;
    }
    text = malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, text + len, (size_t)st.st_size - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = pc_error_set(err, PC_EIO, "cannot read credentials file %s: %s", path,
                              strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    text[len] = '\0';
    int lineno = 0;
    for (char *line = text; rc == 0 && line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        lineno++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n > 0 && line[0] != '#') {
            char *eq = strchr(line, '=');
            if (eq == NULL || !key_ok(line, (size_t)(eq - line))) {
                /* the line may hold a secret: say where, not what */
                rc = pc_error_set(err, PC_EINVAL,
                                  "credentials file %s line %d is not KEY=VALUE (a name of "
                                  "letters, digits and '_', then '=')",
                                  path, lineno);
                break;
            }
            *eq = '\0';
            if (pc_kvlist_set(out, line, eq + 1) != 0)
                rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
done:
    if (text != NULL) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    close(fd);
    return rc;
}
