/* xml.c: the few XML documents S3 answers with (ListObjectsV2, ListMultipartUploads,
 * InitiateMultipartUpload, CompleteMultipartUpload, Error), read by a small scanner instead of an
 * XML library. S3's answers are flat and machine-written; what the scanner must get right is
 * what a hostile or odd key can put in them: entities (&lt;, &#x1F600;), names that share a
 * prefix (<Key> and <KeyCount>), elements nested in others (a <Key> inside <Contents> vs. the
 * root's fields), comments and CDATA. Anything it does not understand is an error, never a guess.
 */
#include "s3.h"

#include <stdlib.h>
#include <string.h>

enum tag_kind { TAG_OPEN, TAG_CLOSE, TAG_EMPTY, TAG_OTHER };

typedef struct tag {
    enum tag_kind kind;
    const char *name; /* for OPEN, CLOSE, EMPTY */
    size_t name_len;
    const char *end; /* just past the tag's '>' */
} tag;

static bool is_name_char(char c)
{
    return c != '\0' && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '>' && c != '/' &&
           c != '=' && c != '<' && c != '"' && c != '\'';
}

static const char *find_str(const char *p, const char *end, const char *s)
{
    size_t n = strlen(s);
    for (; p + n <= end; p++)
        if (memcmp(p, s, n) == 0)
            return p;
    return NULL;
}

/* Reads the markup starting at p (*p == '<'). NULL when it does not end before `end`. */
static const char *read_tag(const char *p, const char *end, tag *t)
{
    const char *q;
    memset(t, 0, sizeof *t);
    if (end - p >= 4 && memcmp(p, "<!--", 4) == 0) {
        if (!(q = find_str(p + 4, end, "-->")))
            return NULL;
        t->kind = TAG_OTHER;
        return t->end = q + 3;
    }
    if (end - p >= 9 && memcmp(p, "<![CDATA[", 9) == 0) {
        if (!(q = find_str(p + 9, end, "]]>")))
            return NULL;
        t->kind = TAG_OTHER;
        return t->end = q + 3;
    }
    if (end - p >= 2 && (p[1] == '?' || p[1] == '!')) { /* <?xml ...?>, <!DOCTYPE ...> */
        if (!(q = memchr(p, '>', (size_t)(end - p))))
            return NULL;
        t->kind = TAG_OTHER;
        return t->end = q + 1;
    }
    q = p + 1;
    t->kind = TAG_OPEN;
    if (q < end && *q == '/') {
        t->kind = TAG_CLOSE;
        q++;
    }
    t->name = q;
    while (q < end && is_name_char(*q))
        q++;
    t->name_len = (size_t)(q - t->name);
    if (t->name_len == 0)
        return NULL;
    /* attributes: '>' may stand inside a quoted value */
    char quote = 0;
    for (; q < end; q++) {
        if (quote) {
            if (*q == quote)
                quote = 0;
        } else if (*q == '"' || *q == '\'') {
            quote = *q;
        } else if (*q == '>') {
            if (t->kind == TAG_OPEN && q[-1] == '/')
                t->kind = TAG_EMPTY;
            return t->end = q + 1;
        } else if (*q == '<') {
            return NULL;
        }
    }
    return NULL;
}

static bool name_is(const tag *t, const char *name)
{
    return t->name_len == strlen(name) && memcmp(t->name, name, t->name_len) == 0;
}

/* Finds element `name` in [p, end): at depth 0 only (a child of the range's element) unless
 * any_depth. Sets [*cs, *ce) to its content and returns the position after it; NULL when there
 * is none. *bad is set when the markup is broken. */
static const char *xml_find(const char *p, const char *end, const char *name, bool any_depth,
                            const char **cs, const char **ce, bool *bad)
{
    int depth = 0;
    tag t;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt)
            return NULL;
        if (!(p = read_tag(lt, end, &t))) {
            *bad = true;
            return NULL;
        }
        if (t.kind == TAG_OTHER)
            continue;
        if (t.kind == TAG_CLOSE) {
            if (--depth < 0 && !any_depth) /* left the range's element */
                return NULL;
            continue;
        }
        if ((depth == 0 || any_depth) && name_is(&t, name)) {
            if (t.kind == TAG_EMPTY) {
                *cs = *ce = p;
                return p;
            }
            /* the matching close tag, counting same-named elements inside */
            const char *q = p;
            int d = 1;
            *cs = p;
            while (q < end) {
                const char *l2 = memchr(q, '<', (size_t)(end - q));
                tag u;
                if (!l2 || !(q = read_tag(l2, end, &u))) {
                    *bad = true;
                    return NULL;
                }
                if (u.kind == TAG_OTHER || !name_is(&u, name) || u.kind == TAG_EMPTY)
                    continue;
                d += u.kind == TAG_OPEN ? 1 : -1;
                if (d == 0) {
                    *ce = l2;
                    return q;
                }
            }
            *bad = true;
            return NULL;
        }
        if (t.kind == TAG_OPEN)
            depth++;
    }
    return NULL;
}

static int put_utf8(pc_buf *b, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return pc_buf_append(b, u, n);
}

/* Decodes the text content [s, e) into *out (caller frees). NULL *why on success; else a
 * static reason (an element where text should be, a bad entity) or "out of memory". */
static char *xml_text(const char *s, const char *e, const char **why)
{
    pc_buf b = {0};
    *why = NULL;
    if (pc_buf_append(&b, "", 0) < 0)
        goto oom;
    while (s < e) {
        if (*s == '<') {
            if (e - s >= 9 && memcmp(s, "<![CDATA[", 9) == 0) {
                const char *q = find_str(s + 9, e, "]]>");
                if (!q) {
                    *why = "unterminated CDATA section";
                    goto fail;
                }
                if (memchr(s + 9, '\0', (size_t)(q - s - 9))) {
                    *why = "NUL byte in text";
                    goto fail;
                }
                if (pc_buf_append(&b, s + 9, (size_t)(q - s - 9)) < 0)
                    goto oom;
                s = q + 3;
                continue;
            }
            if (e - s >= 4 && memcmp(s, "<!--", 4) == 0) {
                const char *q = find_str(s + 4, e, "-->");
                if (!q) {
                    *why = "unterminated comment";
                    goto fail;
                }
                s = q + 3;
                continue;
            }
            *why = "an element where text was expected";
            goto fail;
        }
        if (*s == '&') {
            const char *semi = memchr(s, ';', (size_t)(e - s));
            size_t n;
            if (!semi || (n = (size_t)(semi - s - 1)) == 0 || n > 10) {
                *why = "malformed entity reference";
                goto fail;
            }
            const char *ent = s + 1;
            char c = 0;
            if (n == 3 && memcmp(ent, "amp", 3) == 0)
                c = '&';
            else if (n == 2 && memcmp(ent, "lt", 2) == 0)
                c = '<';
            else if (n == 2 && memcmp(ent, "gt", 2) == 0)
                c = '>';
            else if (n == 4 && memcmp(ent, "quot", 4) == 0)
                c = '"';
            else if (n == 4 && memcmp(ent, "apos", 4) == 0)
                c = '\'';
            if (c) {
                if (pc_buf_append(&b, &c, 1) < 0)
                    goto oom;
            } else if (ent[0] == '#') {
                bool hex = n > 1 && (ent[1] == 'x' || ent[1] == 'X');
                const char *d = ent + (hex ? 2 : 1);
                unsigned long cp = 0;
                if (d == semi) {
                    *why = "empty character reference";
                    goto fail;
                }
                for (; d < semi; d++) {
                    int v;
                    if (*d >= '0' && *d <= '9')
                        v = *d - '0';
                    else if (hex && *d >= 'a' && *d <= 'f')
                        v = *d - 'a' + 10;
                    else if (hex && *d >= 'A' && *d <= 'F')
                        v = *d - 'A' + 10;
                    else {
                        *why = "malformed character reference";
                        goto fail;
                    }
                    cp = cp * (hex ? 16 : 10) + (unsigned long)v;
                    if (cp > 0x10FFFF)
                        break;
                }
                if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                    *why = "character reference to an invalid code point";
                    goto fail;
                }
                if (put_utf8(&b, cp) < 0)
                    goto oom;
            } else {
                *why = "unknown entity";
                goto fail;
            }
            s = semi + 1;
            continue;
        }
        const char *q = s;
        while (q < e && *q != '<' && *q != '&')
            q++;
        if (memchr(s, '\0', (size_t)(q - s))) {
            *why = "NUL byte in text";
            goto fail;
        }
        if (pc_buf_append(&b, s, (size_t)(q - s)) < 0)
            goto oom;
        s = q;
    }
    return pc_buf_detach(&b);
oom:
    *why = "out of memory";
fail:
    pc_buf_free(&b);
    return NULL;
}

static int oom_or_bad(pc_error *err, const char *doc, const char *why)
{
    if (why && strcmp(why, "out of memory") == 0)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    return pc_error_set(err, PC_EINVAL, "malformed %s answer from the S3 server: %s", doc,
                        why ? why : "broken markup");
}

/* The root element `root` of the document. */
static int root_of(const char *xml, size_t len, const char *root, const char **cs, const char **ce,
                   const char *doc, pc_error *err)
{
    bool bad = false;
    if (!xml_find(xml, xml + len, root, false, cs, ce, &bad)) {
        if (bad)
            return oom_or_bad(err, doc, NULL);
        return pc_error_set(err, PC_EINVAL,
                            "unexpected answer from the S3 server: no <%s> document", root);
    }
    return 0;
}

/* Text of child `name` of [s, e): *out (caller frees), NULL when absent. */
static int child_text(const char *s, const char *e, const char *name, char **out, const char *doc,
                      pc_error *err)
{
    const char *cs, *ce, *why;
    bool bad = false;
    *out = NULL;
    if (!xml_find(s, e, name, false, &cs, &ce, &bad))
        return bad ? oom_or_bad(err, doc, NULL) : 0;
    if (!(*out = xml_text(cs, ce, &why))) {
        if (why && strcmp(why, "out of memory") == 0)
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        return pc_error_set(err, PC_EINVAL, "malformed %s answer from the S3 server: <%s>: %s", doc,
                            name, why);
    }
    return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (*s < '0' || *s > '9' || x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static int parse_bool(const char *s, bool *v)
{
    if (!s)
        *v = false;
    else if (strcmp(s, "true") == 0)
        *v = true;
    else if (strcmp(s, "false") == 0)
        *v = false;
    else
        return -1;
    return 0;
}

/* ETags come quoted ("..." or &quot;...&quot;); the quotes go. */
static void unquote(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
}

/* Room for one more item in a listing's array of n items (each size bytes) with capacity *cap,
 * growing it (first capacity: first) when full: the array, perhaps moved, or NULL on OOM with err
 * set (the old array is kept). */
static void *grow_items(void *items, size_t n, size_t *cap, size_t size, size_t first,
                        pc_error *err)
{
    if (n < *cap)
        return items;
    size_t c = *cap ? *cap * 2 : first;
    void *it = realloc(items, c * size);
    if (!it) {
        pc_error_set(err, PC_ENOMEM, "out of memory");
        return NULL;
    }
    *cap = c;
    return it;
}

/* What closes a listing, once its entries are read: the scan's failure (bad), then the root's
 * <IsTruncated> into *truncated. */
static int listing_truncated(const char *rs, const char *re, bool bad, bool *truncated,
                             const char *doc, pc_error *err)
{
    char *trunc = NULL;
    int rc;
    if (bad)
        return oom_or_bad(err, doc, NULL);
    if ((rc = child_text(rs, re, "IsTruncated", &trunc, doc, err)) < 0)
        return rc;
    if (parse_bool(trunc, truncated) < 0)
        rc = pc_error_set(err, PC_EINVAL,
                          "malformed %s answer from the S3 server: <IsTruncated> is \"%s\"", doc,
                          trunc);
    free(trunc);
    return rc;
}

void pc_s3_listing_dispose(pc_s3_listing *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].etag);
    }
    free(l->items);
    free(l->next_token);
    memset(l, 0, sizeof *l);
}

int pc_s3_parse_listing(pc_s3_listing *out, const char *xml, size_t len, pc_error *err)
{
    static const char doc[] = "ListObjectsV2";
    const char *rs, *re, *p, *cs, *ce;
    char *size = NULL, *mtime = NULL;
    pc_s3_object o = {0};
    bool bad = false;
    int rc;

    if ((rc = root_of(xml, len, "ListBucketResult", &rs, &re, doc, err)) < 0)
        return rc;
    for (p = rs; (p = xml_find(p, re, "Contents", false, &cs, &ce, &bad)) != NULL;) {
        if ((rc = child_text(cs, ce, "Key", &o.key, doc, err)) < 0 ||
            (rc = child_text(cs, ce, "Size", &size, doc, err)) < 0 ||
            (rc = child_text(cs, ce, "ETag", &o.etag, doc, err)) < 0 ||
            (rc = child_text(cs, ce, "LastModified", &mtime, doc, err)) < 0)
            goto done;
        if (!o.key || !*o.key) {
            rc =
                pc_error_set(err, PC_EINVAL,
                             "malformed %s answer from the S3 server: an entry without <Key>", doc);
            goto done;
        }
        if (parse_u64(size, &o.size) < 0) {
            rc = pc_error_set(err, PC_EINVAL,
                              "malformed %s answer from the S3 server: <Size> of \"%s\" is not a "
                              "byte count",
                              doc, o.key);
            goto done;
        }
        if (!o.etag && !(o.etag = pc_strdup(""))) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        unquote(o.etag);
        /* informative only: a server's odd format is no reason to refuse the listing */
        if (mtime && pc_s3_parse_time(mtime, &o.last_modified) < 0)
            o.last_modified = 0;
        pc_s3_object *it = grow_items(out->items, out->n, &out->cap, sizeof *it, 64, err);
        if (!it) {
            rc = PC_ENOMEM;
            goto done;
        }
        out->items = it;
        out->items[out->n++] = o;
        memset(&o, 0, sizeof o);
        free(size);
        free(mtime);
        size = mtime = NULL;
    }
    if ((rc = listing_truncated(rs, re, bad, &out->truncated, doc, err)) < 0)
        goto done;
    free(out->next_token);
    out->next_token = NULL;
    if (out->truncated) {
        if ((rc = child_text(rs, re, "NextContinuationToken", &out->next_token, doc, err)) < 0)
            goto done;
        if (!out->next_token || !*out->next_token) {
            rc = pc_error_set(err, PC_EINVAL,
                              "malformed %s answer from the S3 server: truncated listing without "
                              "<NextContinuationToken> (the server may only speak ListObjects "
                              "v1)",
                              doc);
            goto done;
        }
    }
done:
    free(o.key);
    free(o.etag);
    free(size);
    free(mtime);
    return rc;
}

void pc_s3_uploads_dispose(pc_s3_uploads *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++) {
        free(u->items[i].key);
        free(u->items[i].upload_id);
        free(u->items[i].initiated);
    }
    free(u->items);
    free(u->next_key_marker);
    free(u->next_upload_id_marker);
    memset(u, 0, sizeof *u);
}

int pc_s3_parse_uploads(pc_s3_uploads *out, const char *xml, size_t len, pc_error *err)
{
    static const char doc[] = "ListMultipartUploads";
    const char *rs, *re, *p, *cs, *ce;
    pc_s3_upload u = {0};
    bool bad = false;
    int rc;

    if ((rc = root_of(xml, len, "ListMultipartUploadsResult", &rs, &re, doc, err)) < 0)
        return rc;
    for (p = rs; (p = xml_find(p, re, "Upload", false, &cs, &ce, &bad)) != NULL;) {
        if ((rc = child_text(cs, ce, "Key", &u.key, doc, err)) < 0 ||
            (rc = child_text(cs, ce, "UploadId", &u.upload_id, doc, err)) < 0 ||
            (rc = child_text(cs, ce, "Initiated", &u.initiated, doc, err)) < 0)
            goto done;
        if (!u.key || !u.upload_id || !*u.upload_id) {
            rc = pc_error_set(err, PC_EINVAL,
                              "malformed %s answer from the S3 server: an <Upload> without <Key> "
                              "or <UploadId>",
                              doc);
            goto done;
        }
        if (!u.initiated && !(u.initiated = pc_strdup(""))) {
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            goto done;
        }
        pc_s3_upload *it = grow_items(out->items, out->n, &out->cap, sizeof *it, 16, err);
        if (!it) {
            rc = PC_ENOMEM;
            goto done;
        }
        out->items = it;
        out->items[out->n++] = u;
        memset(&u, 0, sizeof u);
    }
    if ((rc = listing_truncated(rs, re, bad, &out->truncated, doc, err)) < 0)
        goto done;
    free(out->next_key_marker);
    free(out->next_upload_id_marker);
    out->next_key_marker = out->next_upload_id_marker = NULL;
    if (out->truncated) {
        if ((rc = child_text(rs, re, "NextKeyMarker", &out->next_key_marker, doc, err)) < 0 ||
            (rc = child_text(rs, re, "NextUploadIdMarker", &out->next_upload_id_marker, doc, err)) <
                0)
            goto done;
        if (!out->next_key_marker || !*out->next_key_marker) {
            rc = pc_error_set(err, PC_EINVAL,
                              "malformed %s answer from the S3 server: truncated listing without "
                              "<NextKeyMarker>",
                              doc);
            goto done;
        }
    }
done:
    free(u.key);
    free(u.upload_id);
    free(u.initiated);
    return rc;
}

int pc_s3_parse_error(const char *xml, size_t len, char **code, char **message)
{
    const char *rs, *re;
    pc_error e = {0};
    *code = *message = NULL;
    if (!xml || root_of(xml, len, "Error", &rs, &re, "Error", &e) < 0)
        return PC_EINVAL;
    if (child_text(rs, re, "Code", code, "Error", &e) < 0 ||
        child_text(rs, re, "Message", message, "Error", &e) < 0) {
        free(*code);
        *code = NULL;
        return e.code ? e.code : PC_EINVAL;
    }
    return 0;
}

int pc_s3_xml_value(const char *xml, size_t len, const char *name, char **out, pc_error *err)
{
    const char *cs, *ce, *why;
    bool bad = false;
    *out = NULL;
    if (!xml_find(xml, xml + len, name, true, &cs, &ce, &bad)) {
        if (bad)
            return oom_or_bad(err, name, NULL);
        return pc_error_set(err, PC_ENOTFOUND, "the S3 server's answer has no <%s>", name);
    }
    if (!(*out = xml_text(cs, ce, &why))) {
        if (strcmp(why, "out of memory") == 0)
            return pc_error_set(err, PC_ENOMEM, "out of memory");
        return pc_error_set(err, PC_EINVAL, "malformed <%s> in the S3 server's answer: %s", name,
                            why);
    }
    unquote(*out); /* an ETag */
    return 0;
}
