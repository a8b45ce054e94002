/* verify.c: `backup verify`: checks a stored base backup and the archived WAL it needs without
 * restoring anything.
 *
 * Three layers, cheapest first: the SHA-256 of each stored file recorded in pipectl.json (catches
 * any change to the bytes at rest), then every member of the base tar against PostgreSQL's own
 * backup_manifest (size + SHA-256: catches a backup that was wrong when taken), then every WAL
 * segment from the backup's start_wal to the newest archived one (each file's own trailer
 * checksum, and gaps in the sequence, which make recovery stop early). Problems are collected as
 * lines, not returned as the first error, so one run shows everything that is wrong.
 *
 * "Intact" is earned, not assumed: whatever stops a check (pipectl.json damaged or empty, a file
 * missing or unreadable, a WAL segment or history file that cannot be read) is itself a problem
 * line naming the file, so a report without problems means every file and segment was checked.
 * pipectl.json is judged by the same function list and restore use (pc__backup_read_meta): what
 * restore refuses, verify reports. */
#include "verify_int.h"

#include "backup_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_CHUNK (256 * 1024)
#define GAP_LINES_MAX 20 /* missing segments named one by one per gap; the rest summarized */

int pc_verify_add(pc_verify_report *rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pc_buf b = {0};
    int rc = pc_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc != 0)
        return PC_ENOMEM;
    char **p = realloc(rep->problems, (rep->nproblems + 1) * sizeof *p);
    if (p == NULL) {
        pc_buf_free(&b);
        return PC_ENOMEM;
    }
    rep->problems = p;
    rep->problems[rep->nproblems++] = pc_buf_detach(&b);
    return 0;
}

void pc_verify_report_free(pc_verify_report *rep)
{
    if (rep == NULL)
        return;
    for (size_t i = 0; i < rep->nproblems; i++)
        free(rep->problems[i]);
    free(rep->problems);
    memset(rep, 0, sizeof *rep);
}

/* A backup ID becomes a path component: only what pipectl itself generates. */
static bool id_ok(const char *id)
{
    if (id == NULL || id[0] == '\0' || id[0] == '.' || strlen(id) > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

/* Loads backups/<id>/pipectl.json. *dir_out: the backup's key prefix "backups/<id>". */
static int load_meta(pc_repo *repo, const char *id, char **dir_out, json_t **out, pc_error *err)
{
    if (!id_ok(id))
        return pc_error_set(err, PC_EINVAL,
                            "'%s' is not a backup ID (like 20261125T030000Z): see 'pipectl "
                            "backup list'",
                            id != NULL ? id : "");
    const char *repository = pc_repo_uri(repo);
    char *dir = pc__backup_key(id, NULL);
    char *key = pc__backup_key(id, PC_BACKUP_META);
    char *path = key != NULL ? pc__repo_name(repo, key) : NULL;
    pc_buf text = {0};
    int rc = 0;
    if (dir == NULL || key == NULL || path == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    pc_error ge = {0};
    rc = pc_repo_get_all(repo, key, &text, PC_BACKUP_META_MAX, &ge);
    if (rc == PC_ENOTFOUND) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "backup %s not found in repository %s (no %s): see 'pipectl backup "
                          "list --repository %s'",
                          id, repository, path, repository);
        goto done;
    }
    if (rc != 0) {
        pc_error_set(err, rc, "%s", ge.msg);
        goto done;
    }
    json_error_t je;
    json_t *j = json_loadb(text.data != NULL ? text.data : "", text.len, 0, &je);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        rc = pc_error_set(err, PC_EIO, "cannot read backup metadata %s: %s (line %d)", path,
                          je.text, je.line);
        goto done;
    }
    *out = j;
    *dir_out = dir;
    dir = NULL;
done:
    free(dir);
    free(key);
    free(path);
    pc_buf_free(&text);
    return rc;
}

static bool stored_name_ok(const char *k)
{
    return k[0] != '\0' && k[0] != '.' && strchr(k, '/') == NULL;
}

/* dir: the backup's key prefix "backups/<id>"; messages name it as <repository>/<dir>. */
static int check_stored(pc_repo *repo, const char *dir, json_t *meta, pc_verify_report *rep,
                        char **base_out, char **base_sha_out, pc_error *err)
{
    char *shown = pc__repo_name(repo, dir);
    if (shown == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    int rc = 0;
    json_t *files = json_object_get(meta, "files");
    if (!json_is_object(files) || json_object_size(files) == 0) {
        int r = pc_verify_add(rep,
                              "pipectl.json: records no \"files\" checksums, so the stored files "
                              "cannot be checked (%s)",
                              shown);
        free(shown);
        return r != 0 ? pc_error_set(err, PC_ENOMEM, "out of memory") : 0;
    }
    const char *k;
    json_t *v;
    char *base = NULL;
    json_object_foreach(files, k, v)
    {
        if (!stored_name_ok(k) || !json_is_string(v)) {
            if ((rc = pc_verify_add(rep, "%s: invalid entry in pipectl.json \"files\"", k)) != 0)
                goto done;
            continue;
        }
        bool is_base = false;
        if (strncmp(k, "base.tar", 8) == 0 && base == NULL) {
            base = pc_strdup(k);
            is_base = true;
        }
        if (is_base && base_sha_out != NULL) {
            /* the caller reads the base tar anyway and compares while it does (restore) */
            if (base == NULL || (*base_sha_out = pc_strdup(json_string_value(v))) == NULL) {
                rc = PC_ENOMEM;
                goto done;
            }
            continue;
        }
        char *path = pc_asprintf("%s/%s", dir, k);
        if (path == NULL) {
            rc = PC_ENOMEM;
            goto done;
        }
        char sha[65];
        pc_error e = {0};
        int r = pc__repo_sha256(repo, path, sha, &e);
        free(path);
        rep->files_checked++;
        if (r == PC_ENOTFOUND)
            r = pc_verify_add(rep, "%s: missing from %s", k, shown);
        else if (r == PC_ENOMEM)
            r = PC_ENOMEM;
        else if (r != 0)
            r = pc_verify_add(rep, "%s: %s", k, e.msg);
        else if (strcmp(sha, json_string_value(v)) != 0)
            r = pc_verify_add(rep, "%s: checksum mismatch (recorded sha256 %s, stored file has %s)",
                              k, json_string_value(v), sha);
        if (r != 0) {
            rc = r;
            goto done;
        }
    }
    if (base == NULL) {
        rc = pc_verify_add(rep,
                           "pipectl.json: names no base tar (base.tar*) in \"files\", so the "
                           "base tar is not checked against its recorded checksum (%s)",
                           shown);
        goto done;
    }
    if (base_out != NULL) {
        *base_out = base;
        base = NULL;
    }
done:
    free(base);
    free(shown);
    if (rc == PC_ENOMEM)
        pc_error_set(err, PC_ENOMEM, "out of memory");
    return rc;
}

int pc_backup_check_stored(pc_repo *repo, const char *id, pc_verify_report *rep, char **base_out,
                           char **base_sha_out, pc_error *err)
{
    char *dir = NULL;
    json_t *meta = NULL;
    int rc = load_meta(repo, id, &dir, &meta, err);
    if (rc != 0)
        return rc;
    size_t before = rep->nproblems;
    rc = check_stored(repo, dir, meta, rep, base_out, base_sha_out, err);
    if (rc == 0 && rep->nproblems > before)
        rc = PC_EIO;
    json_decref(meta);
    free(dir);
    return rc;
}

/* --- the base tar against backup_manifest ----------------------------------------------------- */

typedef struct mf_file {
    char *path;
    uint64_t size;
    const char *sha; /* borrowed from the json; NULL when not SHA256 */
    bool seen;
} mf_file;

static int mf_cmp(const void *a, const void *b)
{
    return strcmp(((const mf_file *)a)->path, ((const mf_file *)b)->path);
}

static char *hex_decode_path(const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2 != 0)
        return NULL;
    char *out = malloc(n / 2 + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (char)v;
    }
    out[n / 2] = '\0';
    return out;
}

static const char *member_name(const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    while (p[0] == '/')
        p++;
    return p;
}

static int check_tar(pc_repo *repo, const char *dir, const char *base, pc_verify_report *rep,
                     pc_error *err)
{
    int rc = 0;
    json_t *mf = NULL;
    mf_file *files = NULL;
    size_t nfiles = 0;
    struct archive *a = NULL;
    unsigned char *buf = NULL;
    pc_sha256 *md = NULL;
    pc__obj_reader *rd = NULL;
    pc_buf mtext = {0};
    char *mpath = pc_asprintf("%s/backup_manifest", dir);
    char *tpath = pc_asprintf("%s/%s", dir, base);
    if (mpath == NULL || tpath == NULL)
        goto oom;

    json_error_t je;
    pc_error ge = {0};
    int gr = pc_repo_get_all(repo, mpath, &mtext, PC_BACKUP_MANIFEST_MAX, &ge);
    if (gr == PC_ENOMEM)
        goto oom;
    mf = gr == 0 ? json_loadb(mtext.data != NULL ? mtext.data : "", mtext.len, 0, &je) : NULL;
    pc_buf_free(&mtext);
    json_t *arr = mf != NULL ? json_object_get(mf, "Files") : NULL;
    if (!json_is_array(arr)) {
        rc = pc_verify_add(rep,
                           "backup_manifest: unreadable (%s), so the base tar's members "
                           "cannot be checked",
                           gr != 0      ? ge.msg
                           : mf == NULL ? je.text
                                        : "no \"Files\" array");
        goto done;
    }
    files = calloc(json_array_size(arr) + 1, sizeof *files);
    if (files == NULL)
        goto oom;
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f)
    {
        const char *p = json_string_value(json_object_get(f, "Path"));
        const char *ep = json_string_value(json_object_get(f, "Encoded-Path"));
        const char *alg = json_string_value(json_object_get(f, "Checksum-Algorithm"));
        json_t *sz = json_object_get(f, "Size");
        char *path = p != NULL ? pc_strdup(p) : ep != NULL ? hex_decode_path(ep) : NULL;
        if (path == NULL || !json_is_integer(sz)) {
            free(path);
            if ((rc = pc_verify_add(rep, "backup_manifest: entry %zu has no usable Path/Size", i)))
                goto done;
            continue;
        }
        files[nfiles].path = path;
        files[nfiles].size = (uint64_t)json_integer_value(sz);
        files[nfiles].sha = (alg != NULL && strcmp(alg, "SHA256") == 0)
                                ? json_string_value(json_object_get(f, "Checksum"))
                                : NULL;
        if (files[nfiles].sha == NULL &&
            (rc = pc_verify_add(rep,
                                "backup_manifest: %s has no SHA256 checksum (algorithm %s), so "
                                "only its size can be checked",
                                path, alg != NULL ? alg : "none")) != 0) {
            free(path);
            goto done;
        }
        nfiles++;
    }
    if (nfiles > 1)
        qsort(files, nfiles, sizeof *files, mf_cmp);

    a = archive_read_new();
    buf = malloc(IO_CHUNK);
    rd = calloc(1, sizeof *rd);
    if (a == NULL || buf == NULL || rd == NULL || pc_sha256_new(&md) != 0)
        goto oom;
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    pc_error oe = {0};
    int orr = pc_repo_open(repo, tpath, &rd->o, &oe);
    if (orr == PC_ENOMEM)
        goto oom;
    if (orr != 0) {
        rc = pc_verify_add(rep, "%s: cannot open: %s", base, oe.msg);
        goto done;
    }
    if (pc__archive_open_obj(a, rd) != ARCHIVE_OK) {
        rc = pc_verify_add(rep, "%s: cannot open as a tar stream: %s", base,
                           archive_error_string(a));
        goto done;
    }
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            rc = pc_verify_add(rep, "%s: unreadable after %zu member(s): %s", base,
                               rep->files_checked, archive_error_string(a));
            goto done;
        }
        const char *name = member_name(archive_entry_pathname(e));
        if (name[0] == '\0' || archive_entry_filetype(e) != AE_IFREG)
            continue;
        mf_file key = {.path = (char *)name};
        mf_file *m = nfiles > 0 ? bsearch(&key, files, nfiles, sizeof *files, mf_cmp) : NULL;
        if (m == NULL) {
            /* WAL copied into the tar and the manifest itself are not listed by PostgreSQL. */
            if (strncmp(name, "pg_wal/", 7) == 0 || strcmp(name, "backup_manifest") == 0)
                continue;
            if ((rc = pc_verify_add(rep, "%s: member %s: not in backup_manifest (extra)", base,
                                    name)))
                goto done;
            continue;
        }
        m->seen = true;
        rep->files_checked++;
        uint64_t got = 0; /* md is fresh: pc_sha256_final resets it */
        for (;;) {
            ssize_t n = archive_read_data(a, buf, IO_CHUNK);
            if (n < 0) {
                rc = pc_verify_add(rep, "%s: member %s: unreadable: %s", base, name,
                                   archive_error_string(a));
                goto done; /* the stream cannot be trusted past this point */
            }
            if (n == 0)
                break;
            pc_sha256_update(md, buf, (size_t)n);
            got += (uint64_t)n;
        }
        char sha[PC_SHA256_HEX_LEN + 1];
        pc_sha256_final(md, sha);
        if (got != m->size)
            rc =
                pc_verify_add(rep, "%s: member %s: size %" PRIu64 ", backup_manifest says %" PRIu64,
                              base, name, got, m->size);
        else if (m->sha != NULL && strcmp(sha, m->sha) != 0)
            rc = pc_verify_add(rep,
                               "%s: member %s: checksum mismatch (sha256 %s, "
                               "backup_manifest says %s)",
                               base, name, sha, m->sha);
        if (rc != 0)
            goto done;
    }
    for (size_t k = 0; k < nfiles; k++)
        if (!files[k].seen &&
            (rc = pc_verify_add(rep, "%s: member %s: missing (listed in backup_manifest)", base,
                                files[k].path)))
            goto done;
    goto done;
oom:
    rc = PC_ENOMEM;
done:
    if (rc == PC_ENOMEM)
        pc_error_set(err, PC_ENOMEM, "out of memory verifying %s", dir);
    if (a != NULL)
        archive_read_free(a);
    if (rd != NULL)
        pc_repo_obj_close(rd->o);
    free(rd);
    for (size_t k = 0; k < nfiles; k++)
        free(files[k].path);
    free(files);
    json_decref(mf);
    pc_sha256_free(md);
    free(buf);
    free(mpath);
    free(tpath);
    return rc;
}

/* --- the WAL archive ----------------------------------------------------------------------------
 */

typedef struct seg {
    uint32_t tli;
    uint64_t no;
    bool partial_only;
} seg;

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    if (x->tli != y->tli)
        return x->tli < y->tli ? -1 : 1;
    return x->no < y->no ? -1 : x->no > y->no ? 1 : 0;
}

static bool parse_seg(const char *name, uint64_t per_id, uint32_t *tli, uint64_t *no)
{
    unsigned int t, lg, sg;
    if (strlen(name) < 24 || sscanf(name, "%8X%8X%8X", &t, &lg, &sg) != 3)
        return false;
    *tli = t;
    *no = (uint64_t)lg * per_id + sg;
    return true;
}

static void seg_name(uint32_t tli, uint64_t no, uint64_t per_id, char out[PC_WAL_NAME_MAX])
{
    snprintf(out, PC_WAL_NAME_MAX, "%08X%08X%08X", tli, (unsigned)(no / per_id),
             (unsigned)(no % per_id));
}

typedef struct seg_acc {
    uint64_t per_id;
    seg *v;
    size_t n, cap;
} seg_acc;

static int seg_cb(void *ctx, const pc_repo_entry *e)
{
    seg_acc *c = ctx;
    const char *file = e->key + strlen(PC_WAL_DIR "/");
    size_t l = strlen(file), sl = strlen(PC_WAL_SUFFIX);
    if (strchr(file, '/') != NULL || l <= sl || strcmp(file + l - sl, PC_WAL_SUFFIX) != 0 ||
        l - sl >= PC_WAL_NAME_MAX)
        return 0;
    char name[PC_WAL_NAME_MAX];
    memcpy(name, file, l - sl);
    name[l - sl] = '\0';
    pc_wal_kind kind;
    if (pc_wal_name_check(name, &kind, NULL) != 0 ||
        (kind != PC_WAL_SEGMENT && kind != PC_WAL_PARTIAL))
        return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        seg *nv = realloc(c->v, nc * sizeof *nv);
        if (nv == NULL)
            return PC_ENOMEM;
        c->v = nv;
        c->cap = nc;
    }
    if (!parse_seg(name, c->per_id, &c->v[c->n].tli, &c->v[c->n].no))
        return 0;
    c->v[c->n].partial_only = kind == PC_WAL_PARTIAL;
    c->n++;
    return 0;
}

/* Every archived segment (and .partial) in wal/, sorted. */
static int list_segments(pc_repo *repo, uint64_t per_id, seg **out, size_t *n, pc_error *err)
{
    seg_acc c = {.per_id = per_id};
    int rc = pc_repo_list(repo, PC_WAL_DIR "/", seg_cb, &c, err);
    if (rc == PC_ENOMEM)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
    if (rc != 0) {
        free(c.v);
        return rc;
    }
    seg *v = c.v;
    size_t cnt = c.n;
    /* qsort and bsearch want a non-NULL array even for zero elements (C11 7.1.4, UBSan's
     * nonnull-attribute check): an empty wal/ leaves v NULL */
    if (cnt > 1)
        qsort(v, cnt, sizeof *v, seg_cmp);
    /* a full segment and a .partial of the same number: keep one entry, the full one */
    size_t w = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (w > 0 && v[w - 1].tli == v[i].tli && v[w - 1].no == v[i].no) {
            v[w - 1].partial_only = v[w - 1].partial_only && v[i].partial_only;
            continue;
        }
        v[w++] = v[i];
    }
    *out = v;
    *n = w;
    return 0;
}

static const seg *find_seg(const seg *v, size_t n, uint32_t tli, uint64_t no)
{
    seg key = {.tli = tli, .no = no};
    return n > 0 ? bsearch(&key, v, n, sizeof *v, seg_cmp) : NULL;
}

/* Checks timeline tli's segments from first up to the newest archived (at least up to need).
 * Missing ones are reported with the neighbours that bound the gap. */
static int check_timeline(pc_repo *repository, const seg *v, size_t n, uint32_t tli, uint64_t first,
                          uint64_t need, uint64_t per_id, pc_verify_report *rep)
{
    uint64_t last = need;
    for (size_t i = 0; i < n; i++)
        if (v[i].tli == tli && v[i].no > last)
            last = v[i].no;
    int rc = 0;
    uint64_t no = first;
    while (no <= last) {
        char name[PC_WAL_NAME_MAX];
        seg_name(tli, no, per_id, name);
        const seg *s = find_seg(v, n, tli, no);
        if (s != NULL) {
            char full[PC_WAL_NAME_MAX + 8];
            snprintf(full, sizeof full, "%s%s", name, s->partial_only ? ".partial" : "");
            pc_error e = {0};
            rep->wal_checked++;
            if (pc_wal_verify(repository, full, NULL, &e) != 0 &&
                (rc = pc_verify_add(rep, "wal %s: %s", full, e.msg)) != 0)
                return rc;
            no++;
            continue;
        }
        /* a gap: from no to the next present segment (or past last) */
        uint64_t end = no;
        while (end <= last && find_seg(v, n, tli, end) == NULL)
            end++;
        char before[PC_WAL_NAME_MAX] = "", after[PC_WAL_NAME_MAX] = "";
        if (no > first)
            seg_name(tli, no - 1, per_id, before);
        if (end <= last)
            seg_name(tli, end, per_id, after);
        char why[3 * PC_WAL_NAME_MAX + 64];
        if (before[0] && after[0])
            snprintf(why, sizeof why, "gap between %s and %s", before, after);
        else if (after[0])
            snprintf(why, sizeof why, "the backup's first segment; next archived is %s", after);
        else
            snprintf(why, sizeof why,
                     "needed by the backup (up to its stop_wal), none archived "
                     "after %s",
                     before[0] ? before : "it");
        for (uint64_t k = no; k < end; k++) {
            char mname[PC_WAL_NAME_MAX];
            seg_name(tli, k, per_id, mname);
            if (k - no == GAP_LINES_MAX) {
                rc = pc_verify_add(rep,
                                   "wal %s: missing, and %" PRIu64 " more up to the next "
                                   "archived segment (%s)",
                                   mname, end - k - 1, why);
                break;
            }
            if ((rc = pc_verify_add(rep, "wal %s: missing (%s)", mname, why)) != 0)
                break;
        }
        if (rc != 0)
            return rc;
        no = end;
    }
    return 0;
}

/* Timelines that branch off tli (directly or not), from the archived NNNNNNNN.history files: a
 * history file lists every ancestor as "parentTLI switchLSN reason". For each descendant
 * timeline, *from gets the segment holding its switch point from its parent. PC_ENOTFOUND when
 * child has no history file; another code, with e set, when it cannot be read. */
static int history_children(pc_repo *repository, uint32_t tli, uint64_t segsize, uint32_t child,
                            uint64_t *from, bool *descends, pc_error *e)
{
    char name[PC_WAL_NAME_MAX], tmpl[] = "/tmp/pipectl-history-XXXXXX";
    snprintf(name, sizeof name, "%08X.history", child);
    *descends = false;
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return pc_error_set(e, PC_EIO, "cannot create a temporary file in /tmp: %s",
                            strerror(errno));
    close(fd);
    int rc = pc_wal_fetch(repository, name, tmpl, NULL, e);
    if (rc != 0) {
        unlink(tmpl);
        return rc;
    }
    FILE *f = fopen(tmpl, "r");
    int oe = errno;
    unlink(tmpl);
    if (f == NULL)
        return pc_error_set(e, PC_EIO, "cannot read it back from %s: %s", tmpl, strerror(oe));
    char line[512];
    uint64_t last_switch = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned int ptli, hi, lo;
        if (sscanf(line, "%u %X/%X", &ptli, &hi, &lo) != 3)
            continue;
        if (ptli == tli)
            *descends = true;
        last_switch = ((uint64_t)hi << 32) | lo;
    }
    fclose(f);
    *from = last_switch / segsize;
    return 0;
}

static int check_wal(pc_repo *repository, const char *start, const char *stop,
                     pc_verify_report *rep, pc_error *err)
{
    int rc = 0;
    seg *v = NULL;
    size_t n = 0;
    if (start == NULL || pc_wal_name_check(start, NULL, NULL) != 0) {
        rc = pc_verify_add(rep, "pipectl.json: no valid start_wal: the WAL the backup needs "
                                "cannot be checked");
        goto done;
    }
    if (stop == NULL || pc_wal_name_check(stop, NULL, NULL) != 0) {
        rc = pc_verify_add(rep,
                           "pipectl.json: no valid stop_wal: only the WAL from start_wal %s "
                           "on is checked, not whether the backup's end is archived",
                           start);
        if (rc != 0)
            goto done;
        stop = NULL;
    }
    /* segment size from an archived segment's recorded size (16 MB unless initdb said so) */
    uint64_t segsize = 16u * 1024 * 1024;
    pc_wal_info info;
    if (pc_wal_stat(repository, start, &info, NULL) == 0 && info.size >= 1024 * 1024 &&
        (info.size & (info.size - 1)) == 0)
        segsize = info.size;
    uint64_t per_id = 0x100000000ull / segsize;

    pc_error le = {0};
    rc = list_segments(repository, per_id, &v, &n, &le);
    if (rc == PC_ENOMEM)
        goto done;
    if (rc != 0) {
        rc = pc_verify_add(rep, "wal: %s: no WAL segment was checked", le.msg);
        goto done;
    }
    /* no segment at all: the timeline check names each one the backup needs as missing */
    uint32_t tli = 0;
    uint64_t first = 0, need;
    parse_seg(start, per_id, &tli, &first);
    need = first;
    uint32_t stli = 0;
    if (stop != NULL && parse_seg(stop, per_id, &stli, &need) && stli != tli)
        need = first;
    if ((rc = check_timeline(repository, v, n, tli, first, need, per_id, rep)) != 0)
        goto done;
    /* later timelines that descend from the backup's: from their switch segment on */
    uint32_t maxtli = tli;
    for (size_t i = 0; i < n; i++)
        if (v[i].tli > maxtli)
            maxtli = v[i].tli;
    for (uint32_t t = tli + 1; t <= maxtli && t < tli + 1000; t++) {
        uint64_t from = 0;
        bool desc = false;
        pc_error he = {0};
        int hr = history_children(repository, tli, segsize, t, &from, &desc, &he);
        if (hr == PC_ENOTFOUND)
            continue;
        if (hr != 0) {
            /* a timeline the backup may continue on cannot be followed */
            if ((rc = pc_verify_add(rep, "wal %08X.history: %s: timeline %u is not checked", t,
                                    he.msg, t)) != 0)
                goto done;
            continue;
        }
        if (!desc)
            continue;
        if (from < first)
            from = first;
        if ((rc = check_timeline(repository, v, n, t, from, from, per_id, rep)) != 0)
            goto done;
    }
done:
    if (rc == PC_ENOMEM)
        pc_error_set(err, PC_ENOMEM, "out of memory");
    free(v);
    return rc;
}

/* The stored base tar when pipectl.json cannot say which it is: the one name of each
 * compression backup create writes that exists under dir. NULL when none (or OOM). */
static char *find_base(pc_repo *repo, const char *dir)
{
    static const char *const names[] = {"base.tar.zst", "base.tar.lz4", "base.tar.gz", "base.tar"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *k = pc_asprintf("%s/%s", dir, names[i]);
        bool there = k != NULL && pc_repo_stat(repo, k, NULL, NULL) == 0;
        free(k);
        if (there)
            return pc_strdup(names[i]);
    }
    return NULL;
}

static int any_object(void *ctx, const pc_repo_entry *e)
{
    (void)e;
    *(bool *)ctx = true;
    return 1;
}

int pc_backup_verify(pc_repo *repo, const char *id, pc_verify_report *rep, pc_error *err)
{
    char *dir = NULL, *base = NULL, *mkey = NULL, *prefix = NULL, *shown = NULL;
    json_t *meta = NULL;
    pc_backup_info info = {0};
    pc_buf mtext = {0};
    int rc = 0;
    memset(rep, 0, sizeof *rep);
    if (!id_ok(id))
        return pc_error_set(err, PC_EINVAL,
                            "'%s' is not a backup ID (like 20261125T030000Z): see 'pipectl "
                            "backup list'",
                            id != NULL ? id : "");
    const char *repository = pc_repo_uri(repo);
    dir = pc__backup_key(id, NULL);
    mkey = pc__backup_key(id, PC_BACKUP_META);
    prefix = pc_asprintf("%s/", dir != NULL ? dir : "");
    shown = pc__repo_name(repo, dir != NULL ? dir : "");
    if (dir == NULL || mkey == NULL || prefix == NULL || shown == NULL) {
        rc = PC_ENOMEM;
        goto done;
    }
    bool exists = false;
    rc = pc_repo_list(repo, prefix, any_object, &exists, err);
    if (rc == 1)
        rc = 0;
    if (rc != 0)
        goto done;
    if (!exists) {
        rc = pc_error_set(err, PC_ENOTFOUND,
                          "backup %s not found in repository %s (no %s): see 'pipectl backup "
                          "list --repository %s'",
                          id, repository, shown, repository);
        goto done;
    }

    /* 1. pipectl.json, judged as list and restore judge it */
    pc_error me = {0};
    int mr = pc__backup_read_meta(repo, id, &info, &me);
    if (mr == PC_ENOMEM) {
        rc = PC_ENOMEM;
        goto done;
    }
    json_error_t je;
    if (mr != PC_ENOTFOUND && pc_repo_get_all(repo, mkey, &mtext, PC_BACKUP_META_MAX, NULL) == 0)
        meta = json_loadb(mtext.data != NULL ? mtext.data : "", mtext.len, 0, &je);
    if (meta != NULL && !json_is_object(meta)) {
        json_decref(meta);
        meta = NULL;
    }
    if (meta == NULL)
        rc = pc_verify_add(rep,
                           "pipectl.json: %s; without it the stored files' checksums and the WAL "
                           "the backup needs cannot be checked",
                           mr != 0 ? me.msg : "changed while it was being read");
    else if (mr != 0)
        rc = pc_verify_add(rep, "pipectl.json: %s", me.msg);
    if (rc != 0)
        goto done;

    /* 2. each stored file against the checksum pipectl.json records */
    if (meta != NULL && (rc = check_stored(repo, dir, meta, rep, &base, NULL, err)) != 0)
        goto done;

    /* 3. the base tar's members against backup_manifest (also when pipectl.json is damaged:
     * the tar and the manifest carry their own checksums) */
    if (base == NULL)
        base = find_base(repo, dir);
    if (base == NULL)
        rc = pc_verify_add(rep, "base.tar*: missing from %s: the backup has no data", shown);
    else
        rc = check_tar(repo, dir, base, rep, err);
    if (rc != 0)
        goto done;

    /* 4. the WAL from start_wal on */
    if (meta != NULL)
        rc = check_wal(repo, json_string_value(json_object_get(meta, "start_wal")),
                       json_string_value(json_object_get(meta, "stop_wal")), rep, err);
    if (rc != 0)
        goto done;
    if (rep->nproblems > 0)
        rc = PC_EIO;
done:
    if (rc == PC_ENOMEM)
        pc_error_set(err, PC_ENOMEM, "out of memory verifying backup %s", id);
    pc_backup_info_free(&info);
    json_decref(meta);
    pc_buf_free(&mtext);
    free(dir);
    free(mkey);
    free(prefix);
    free(shown);
    free(base);
    return rc;
}
