/* repo_crypt.c: an encrypted backup repository, a layer over another pc_repo (a directory or an
 * S3 bucket) that encrypts every object on the client before it is written and authenticates
 * and decrypts it when read. The storage below sees only ciphertext, object names and sizes.
 *
 * The cryptography and the format are in crypt.c (its head comment documents them). Here:
 *  - opening: the marker object pipectl-crypt.json holds the key derivation's salt and
 *    parameters and a key check. Present: the passphrase must pass the check (else one
 *    PC_EINVAL, "wrong encryption key"). Absent and the repository empty: it is created
 *    (PC_REPO_NOREPLACE; when another process created it first, that one is read and checked).
 *    Absent but objects present: those are unencrypted backups, and mixing would leave a
 *    repository half readable; PC_EINVAL.
 *  - the marker is hidden from the layers above: list skips it, and stat/open/put/delete of its
 *    name are refused, so nothing above can overwrite or remove it by mistake.
 *  - stat and list report plaintext sizes, computed from the stored size; a stored size no
 *    object can have is a damaged object: stat and open say so (PC_EIO), list reports it as 0
 *    bytes so that one damaged object does not hide the rest.
 *  - a reader authenticates the object's final chunk when it opens it (so its size is the one
 *    written) and then only the chunks a pread touches, keeping the last one; a writer keeps one
 *    chunk of plaintext and hands each sealed chunk to the inner writer.
 *  - delete, lock, unlock, lock_check and sweep are the inner repository's.
 * Keys are wiped (OPENSSL_cleanse) on close; the passphrase is never kept nor put in a message. */
#include "crypt.h"
#include "repo.h"

#include <stdlib.h>
#include <string.h>

#define MARKER_MAX (64 * 1024)

typedef struct crypt_repo {
    pc_repo base;
    pc_repo *inner;
    pc_crypt_keys keys;
} crypt_repo;

typedef struct crypt_obj {
    pc_repo_obj base;
    pc_repo_obj *inner;
    pc_crypt_reader *rd;
} crypt_obj;

typedef struct crypt_put {
    pc_repo_put base;
    pc_repo_put *inner;
    pc_crypt_writer *w;
} crypt_put;

static crypt_repo *of(pc_repo *r)
{
    return (crypt_repo *)r;
}

static bool is_marker(const char *key)
{
    return strcmp(key, PC_CRYPT_MARKER) == 0;
}

static int reserved(pc_repo *r, pc_error *err)
{
    return pc_error_set(err, PC_EINVAL,
                        PC_CRYPT_MARKER " in backup repository %s is the encryption marker, not "
                                        "a backup object: pipectl never reads or writes it as one",
                        pc_repo_uri(r));
}

static int bad_size(pc_repo *r, const char *key, uint64_t stored, pc_error *err)
{
    return pc_error_set(err, PC_EIO,
                        "%s in backup repository %s is %llu bytes, a size no encrypted object has: "
                        "it was cut or added to (damaged), or written without encryption",
                        key, pc_repo_uri(r), (unsigned long long)stored);
}

/* --- reading -------------------------------------------------------------------------------- */

static int crypt_stat(pc_repo *r, const char *key, pc_repo_entry *out, pc_error *err)
{
    if (is_marker(key))
        return pc_error_set(err, PC_ENOTFOUND, "%s is not in backup repository %s", key,
                            pc_repo_uri(r));
    int rc = pc_repo_stat(of(r)->inner, key, out, err);
    if (rc != 0)
        return rc;
    uint64_t plain = 0;
    if (!pc_crypt_plain_size(out->size, &plain))
        return bad_size(r, key, out->size, err);
    out->size = plain;
    return 0;
}

/* The reader's callback: exactly n stored bytes at off. */
static int obj_in(void *ctx, uint64_t off, void *buf, size_t n, pc_error *err)
{
    crypt_obj *o = ctx;
    unsigned char *p = buf;
    while (n > 0) {
        size_t got = 0;
        int rc = pc_repo_pread(o->inner, off, p, n, &got, err);
        if (rc != 0)
            return rc;
        if (got == 0)
            return pc_error_set(err, PC_EIO,
                                "an object in backup repository %s ended at byte %llu, before "
                                "the size it had when opened: was it replaced while being read? "
                                "Try again",
                                pc_repo_uri(o->base.repo), (unsigned long long)off);
        p += got;
        off += got;
        n -= got;
    }
    return 0;
}

static void crypt_obj_close(pc_repo_obj *ob)
{
    crypt_obj *o = (crypt_obj *)ob;
    if (o == NULL)
        return;
    pc_crypt_reader_free(o->rd);
    pc_repo_obj_close(o->inner);
    free(o);
}

static int crypt_open(pc_repo *r, const char *key, pc_repo_obj **out, pc_error *err)
{
    *out = NULL;
    if (is_marker(key))
        return reserved(r, err);
    crypt_obj *o = calloc(1, sizeof *o);
    if (o == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    o->base.repo = r;
    int rc = pc_repo_open(of(r)->inner, key, &o->inner, err);
    if (rc == 0)
        rc = pc_crypt_reader_new(&of(r)->keys, key, pc_repo_uri(r), pc_repo_obj_size(o->inner),
                                 obj_in, o, &o->rd, err);
    if (rc != 0) {
        crypt_obj_close(&o->base);
        return rc;
    }
    *out = &o->base;
    return 0;
}

static uint64_t crypt_obj_size(pc_repo_obj *ob)
{
    return pc_crypt_reader_size(((crypt_obj *)ob)->rd);
}

static int crypt_pread(pc_repo_obj *ob, uint64_t off, void *buf, size_t n, size_t *got,
                       pc_error *err)
{
    return pc_crypt_reader_pread(((crypt_obj *)ob)->rd, off, buf, n, got, err);
}

/* --- writing -------------------------------------------------------------------------------- */

static int put_out(void *ctx, const void *data, size_t n, pc_error *err)
{
    return pc_repo_put_write(((crypt_put *)ctx)->inner, data, n, err);
}

static void put_free(crypt_put *p)
{
    pc_crypt_writer_free(p->w);
    free(p);
}

static void crypt_put_abort(pc_repo_put *pp)
{
    crypt_put *p = (crypt_put *)pp;
    if (p == NULL)
        return;
    pc_repo_put_abort(p->inner);
    put_free(p);
}

static int crypt_put_begin(pc_repo *r, const char *key, pc_repo_put **out, pc_error *err)
{
    *out = NULL;
    if (is_marker(key))
        return reserved(r, err);
    crypt_put *p = calloc(1, sizeof *p);
    if (p == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    p->base.repo = r;
    int rc = pc_repo_put_begin(of(r)->inner, key, &p->inner, err);
    if (rc == 0)
        rc = pc_crypt_writer_new(&of(r)->keys, key, put_out, p, &p->w, err);
    if (rc != 0) {
        crypt_put_abort(&p->base);
        return rc;
    }
    *out = &p->base;
    return 0;
}

static int crypt_put_write(pc_repo_put *pp, const void *data, size_t n, pc_error *err)
{
    return pc_crypt_writer_write(((crypt_put *)pp)->w, data, n, err);
}

static int crypt_put_commit(pc_repo_put *pp, pc_repo_commit_mode mode, pc_error *err)
{
    crypt_put *p = (crypt_put *)pp;
    int rc = pc_crypt_writer_finish(p->w, err);
    if (rc != 0) {
        crypt_put_abort(pp);
        return rc;
    }
    rc = pc_repo_put_commit(p->inner, mode, err); /* frees the inner put whatever the result */
    p->inner = NULL;
    put_free(p);
    return rc;
}

/* --- the rest: the inner repository's ------------------------------------------------------- */

static int crypt_del(pc_repo *r, const char *key, pc_error *err)
{
    if (is_marker(key))
        return reserved(r, err);
    return pc_repo_delete(of(r)->inner, key, err);
}

/* Durability of what a crashed commit left is the inner repository's business. */
static int crypt_sync(pc_repo *r, const char *key, pc_error *err)
{
    if (is_marker(key))
        return reserved(r, err);
    return pc_repo_sync(of(r)->inner, key, err);
}

typedef struct list_ctx {
    pc_repo_list_fn fn;
    void *ctx;
} list_ctx;

static int list_one(void *ctx, const pc_repo_entry *e)
{
    list_ctx *l = ctx;
    if (is_marker(e->key))
        return 0;
    pc_repo_entry mine = *e;
    if (!pc_crypt_plain_size(e->size, &mine.size))
        mine.size = 0; /* damaged: opening it says so */
    return l->fn(l->ctx, &mine);
}

static int crypt_list(pc_repo *r, const char *prefix, pc_repo_list_fn fn, void *ctx, pc_error *err)
{
    list_ctx l = {.fn = fn, .ctx = ctx};
    return pc_repo_list(of(r)->inner, prefix, list_one, &l, err);
}

/* The lock handed out is the inner repository's own (its head names the inner repository, so
 * pc_repo_unlock goes straight to it). */
static int crypt_lock(pc_repo *r, const char *what, pc_repo_lock **out, pc_error *err)
{
    return pc_repo_lock_take(of(r)->inner, what, out, err);
}

static void crypt_unlock(pc_repo_lock *l)
{
    pc_repo_unlock(l);
}

/* (Reached only through a lock whose head names this layer, which crypt_lock never hands out;
 * kept so the table is complete, and delegating like unlock.) */
static int crypt_lock_check(pc_repo_lock *l, pc_error *err)
{
    return pc_repo_lock_check(l, err);
}

static int crypt_sweep(pc_repo *r, int64_t now, int64_t older_than_s, size_t *removed,
                       pc_error *err)
{
    return pc_repo_sweep(of(r)->inner, now, older_than_s, removed, err);
}

static void crypt_close(pc_repo *r)
{
    crypt_repo *c = of(r);
    if (c == NULL)
        return;
    pc_repo_close(c->inner);
    pc_crypt_keys_wipe(&c->keys);
    free(c->base.uri);
    free(c);
}

static const pc_repo_ops crypt_ops = {
    .kind = "encrypted",
    .stat = crypt_stat,
    .open = crypt_open,
    .obj_size = crypt_obj_size,
    .pread = crypt_pread,
    .obj_close = crypt_obj_close,
    .put_begin = crypt_put_begin,
    .put_write = crypt_put_write,
    .put_commit = crypt_put_commit,
    .put_abort = crypt_put_abort,
    .del = crypt_del,
    .list = crypt_list,
    .lock = crypt_lock,
    .unlock = crypt_unlock,
    .lock_check = crypt_lock_check,
    .sweep = crypt_sweep,
    .sync = crypt_sync,
    .close = crypt_close,
};

/* --- opening -------------------------------------------------------------------------------- */

static int any_object(void *ctx, const pc_repo_entry *e)
{
    (void)ctx;
    (void)e;
    return 1;
}

/* Reads the marker into keys; PC_ENOTFOUND (err untouched) when there is none. */
static int marker_read(pc_repo *inner, const char *passphrase, pc_crypt_keys *keys, pc_error *err)
{
    pc_buf b = {0};
    pc_error e = {0};
    int rc = pc_repo_get_all(inner, PC_CRYPT_MARKER, &b, MARKER_MAX, &e);
    if (rc == 0)
        rc = pc_crypt_marker_open(b.data != NULL ? b.data : "", b.len, passphrase,
                                  pc_repo_uri(inner), keys, err);
    else if (rc != PC_ENOTFOUND)
        pc_error_set(err, rc, "%s", e.msg);
    pc_buf_free(&b);
    return rc;
}

/* Makes the marker of an empty repository (or reads the one another process made first). */
static int marker_create(pc_repo *inner, const char *passphrase, pc_crypt_keys *keys, pc_error *err)
{
    pc_error e = {0};
    int rc = pc_repo_list(inner, "", any_object, NULL, &e);
    if (rc == 1)
        return pc_error_set(err, PC_EINVAL,
                            "backup repository %s holds unencrypted backups: use a new "
                            "repository (or remove archiving.encryption)",
                            pc_repo_uri(inner));
    if (rc != 0)
        return pc_error_set(err, rc, "%s", e.msg);
    char *json = NULL;
    if ((rc = pc_crypt_marker_new(passphrase, NULL, keys, &json, err)) != 0)
        return rc;
    rc = pc_repo_put_all(inner, PC_CRYPT_MARKER, json, strlen(json), PC_REPO_NOREPLACE, &e);
    free(json);
    if (rc == 0)
        return 0;
    pc_crypt_keys_wipe(keys);
    if (rc != PC_ECONFLICT)
        return pc_error_set(err, rc, "%s", e.msg);
    /* another process made it between our look and our write: theirs stands */
    rc = marker_read(inner, passphrase, keys, err);
    if (rc == PC_ENOTFOUND)
        rc = pc_error_set(err, PC_EIO,
                          "the marker " PC_CRYPT_MARKER " in backup repository %s appeared and "
                          "vanished while it was being created: try again",
                          pc_repo_uri(inner));
    return rc;
}

int pc_repo_crypt_new(pc_repo *inner, const char *passphrase, pc_repo **out, pc_error *err)
{
    *out = NULL;
    int rc = 0;
    crypt_repo *c = NULL;
    if (inner == NULL)
        return pc_error_set(err, PC_EINVAL, "no backup repository to encrypt");
    if (passphrase == NULL || passphrase[0] == '\0') {
        rc = pc_error_set(err, PC_EINVAL,
                          "archiving.encryption.key is empty for backup repository %s: set the "
                          "passphrase",
                          pc_repo_uri(inner));
        goto done;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL || (c->base.uri = pc_strdup(pc_repo_uri(inner))) == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    c->base.ops = &crypt_ops;
    rc = marker_read(inner, passphrase, &c->keys, err);
    if (rc == PC_ENOTFOUND)
        rc = marker_create(inner, passphrase, &c->keys, err);
    if (rc != 0)
        goto done;
    c->inner = inner;
    inner = NULL;
    *out = &c->base;
    c = NULL;
done:
    pc_repo_close(inner);
    if (c != NULL) {
        pc_crypt_keys_wipe(&c->keys);
        free(c->base.uri);
        free(c);
    }
    return rc;
}
