/* redact.c: the manifest text with its secrets replaced, for snapshots and `pipectl validate -v`.
 *
 * We re-scan the raw (unexpanded) text with libyaml and rewrite only the byte ranges of secret
 * scalars, so comments, order and layout stay exactly as the user wrote them. A ${VAR}
 * reference holds no secret and stays; a literal default inside it (${VAR:-hunter2}) does not. */
#include "manifest_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct frame {
    bool is_map;
    bool want_key; /* maps: the next scalar/node is a key */
    bool secret;   /* everything inside is secret (value of a secret key) */
    char *key;     /* maps: the current key */
} frame;

typedef struct redactor {
    const char *raw;
    size_t len;
    size_t copied; /* raw[0..copied) already in out */
    pc_buf out;
    int rc;
} redactor;

/* Appends raw[copied..start) then repl, and skips raw[start..end). */
static void emit(redactor *r, size_t start, size_t end, const char *repl, size_t repl_len)
{
    if (r->rc != 0 || start < r->copied || end < start || end > r->len)
        return;
    if (pc_buf_append(&r->out, r->raw + r->copied, start - r->copied) != 0 ||
        pc_buf_append(&r->out, repl, repl_len) != 0)
        r->rc = PC_ENOMEM;
    r->copied = end;
}

/* true when v is one or more ${...} references and blanks, nothing else */
static bool refs_only(const char *v)
{
    bool any = false;
    for (;;) {
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v == '\0')
            return any;
        if (v[0] != '$' || v[1] != '{')
            return false;
        const char *close = strchr(v, '}');
        if (close == NULL)
            return false;
        any = true;
        v = close + 1;
    }
}

/* Within raw[s..e): every "${NAME:-default}" gets its non-empty default redacted. */
static void redact_ref_defaults(redactor *r, size_t s, size_t e)
{
    for (size_t i = s; i + 1 < e; i++) {
        if (r->raw[i] != '$' || r->raw[i + 1] != '{')
            continue;
        size_t j = i + 2;
        while (j < e && r->raw[j] != '}' &&
               !(r->raw[j] == ':' && j + 1 < e && r->raw[j + 1] == '-'))
            j++;
        if (j >= e || r->raw[j] == '}') {
            i = j;
            continue;
        }
        size_t ds = j + 2, de = ds;
        while (de < e && r->raw[de] != '}')
            de++;
        if (de > ds)
            emit(r, ds, de, PC_REDACTED, strlen(PC_REDACTED));
        i = de;
    }
}

typedef struct dsn_scan {
    redactor *r;
    size_t base;
    bool any;
} dsn_scan;

static void dsn_range(void *ctx, size_t start, size_t end)
{
    dsn_scan *d = ctx;
    d->any = true;
    if (d->r == NULL || d->r->rc != 0)
        return;
    size_t s = d->base + start, e = d->base + end;
    char *pw = pc_strndup(d->r->raw + s, e - s);
    if (pw == NULL) {
        d->r->rc = PC_ENOMEM;
        return;
    }
    if (refs_only(pw))
        redact_ref_defaults(d->r, s, e); /* ${VAR} stays, a literal default does not */
    else
        emit(d->r, s, e, PC_REDACTED, strlen(PC_REDACTED));
    free(pw);
}

/* Passwords inside a DSN-like scalar occupying raw[s..e): found by core's one scanner
 * (pc_secret_ranges: password=, sslpassword=... plain or libpq-quoted, and a URI's
 * user:PASSWORD@ up to its last '@'). ${VAR} values stay. */
static void redact_dsn_range(redactor *r, size_t s, size_t e)
{
    dsn_scan d = {.r = r, .base = s};
    pc_secret_ranges(r->raw + s, e - s, dsn_range, &d);
}

static bool looks_like_dsn(const char *v)
{
    dsn_scan d = {0};
    pc_secret_ranges(v, strlen(v), dsn_range, &d);
    return d.any;
}

typedef struct dsn_rebuild {
    const char *v;
    size_t copied;
    pc_buf out;
    bool changed;
    int rc;
} dsn_rebuild;

static void rebuild_range(void *ctx, size_t start, size_t end)
{
    dsn_rebuild *d = ctx;
    char *pw = pc_strndup(d->v + start, end - start);
    if (pw == NULL) {
        d->rc = PC_ENOMEM;
        return;
    }
    /* ${VAR} stays; anything else, a ${VAR:-default} included, goes */
    bool keep = refs_only(pw) && strstr(pw, ":-") == NULL;
    free(pw);
    if (keep || d->rc != 0)
        return;
    if (pc_buf_append(&d->out, d->v + d->copied, start - d->copied) != 0 ||
        pc_buf_puts(&d->out, PC_REDACTED) != 0)
        d->rc = PC_ENOMEM;
    d->copied = end;
    d->changed = true;
}

/* A DSN-like scalar. When its raw text is its value (plain, or quoted without escapes), the
 * passwords are replaced in place; otherwise (YAML escapes such as '' or \", block scalars) the
 * positions in the raw text are not those in the value, so the value is redacted and the whole
 * scalar rewritten as one double-quoted YAML string. */
static void dsn_scalar(redactor *r, const yaml_event_t *ev)
{
    size_t s = ev->start_mark.index, e = ev->end_mark.index, is = s, ie = e;
    const char *v = (const char *)ev->data.scalar.value;
    size_t vl = ev->data.scalar.length;
    yaml_scalar_style_t st = ev->data.scalar.style;
    if ((st == YAML_SINGLE_QUOTED_SCALAR_STYLE || st == YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
        e >= s + 2) {
        is = s + 1;
        ie = e - 1;
    }
    if ((st == YAML_PLAIN_SCALAR_STYLE || is > s) && ie - is == vl &&
        memcmp(r->raw + is, v, vl) == 0) {
        redact_dsn_range(r, is, ie);
        return;
    }
    dsn_rebuild d = {.v = v};
    pc_secret_ranges(v, vl, rebuild_range, &d);
    if (d.rc == 0 && d.changed && pc_buf_append(&d.out, v + d.copied, vl - d.copied) != 0)
        d.rc = PC_ENOMEM;
    pc_buf q = {0};
    if (d.rc == 0 && d.changed) {
        d.rc = pc_buf_puts(&q, "\"");
        for (size_t k = 0; d.rc == 0 && k < d.out.len; k++) {
            char c = d.out.data[k];
            if (c == '"' || c == '\\')
                d.rc = pc_buf_printf(&q, "\\%c", c);
            else if ((unsigned char)c < 0x20)
                d.rc = pc_buf_printf(&q, "\\x%02x", (unsigned)(unsigned char)c);
            else
                d.rc = pc_buf_append(&q, &c, 1);
        }
        if (d.rc == 0)
            d.rc = pc_buf_puts(&q, "\"");
        size_t keep = e;
        if (st == YAML_LITERAL_SCALAR_STYLE || st == YAML_FOLDED_SCALAR_STYLE)
            while (keep > s && (r->raw[keep - 1] == '\n' || r->raw[keep - 1] == ' ' ||
                                r->raw[keep - 1] == '\r'))
                keep--;
        if (d.rc == 0)
            emit(r, s, keep, q.data, q.len);
    }
    if (d.rc != 0)
        r->rc = PC_ENOMEM;
    pc_buf_free(&q);
    pc_buf_free(&d.out);
}

static void secret_scalar(redactor *r, const yaml_event_t *ev)
{
    size_t s = ev->start_mark.index, e = ev->end_mark.index;
    const char *v = (const char *)ev->data.scalar.value;
    if (ev->data.scalar.length == 0 || e <= s)
        return; /* nothing written, nothing to hide */
    if (refs_only(v)) {
        redact_ref_defaults(r, s, e);
        return;
    }
    /* keep the line breaks a block scalar's range swallows, so the next key stays in place */
    size_t keep = e;
    if (ev->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
        ev->data.scalar.style == YAML_FOLDED_SCALAR_STYLE) {
        while (keep > s &&
               (r->raw[keep - 1] == '\n' || r->raw[keep - 1] == ' ' || r->raw[keep - 1] == '\r'))
            keep--;
        emit(r, s, keep, "\"" PC_REDACTED "\"", strlen(PC_REDACTED) + 2);
        return;
    }
    emit(r, s, e, "\"" PC_REDACTED "\"", strlen(PC_REDACTED) + 2);
}

int pc_manifest_redacted_text(const pc_manifest *m, char **out, pc_error *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    frame stack[MF_MAX_DEPTH + 2];
    size_t depth = 0;
    redactor r = {.raw = m ? m->raw : NULL, .len = m ? m->raw_len : 0};
    int rc = 0;
    bool parser_ok = false;

    *out = NULL;
    if (m == NULL || m->raw == NULL)
        return pc_error_set(err, PC_EINVAL, "no manifest text to redact");
    if (!yaml_parser_initialize(&parser))
        return pc_error_set(err, PC_ENOMEM, "out of memory redacting manifest %s", m->file);
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)m->raw, m->raw_len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    for (bool done = false; !done && r.rc == 0;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            /* the manifest parsed before, so this is unexpected: refuse rather than leak */
            rc =
                pc_error_set(err, PC_EINVAL, "cannot redact manifest %s: YAML error at line %d: %s",
                             m->file, (int)parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "syntax error");
            goto done;
        }
        frame *top = depth > 0 ? &stack[depth - 1] : NULL;
        bool is_key = top != NULL && top->is_map && top->want_key;
        bool secret = false, dsn = false;
        if (top != NULL && !is_key) {
            secret = top->secret || (top->is_map && pc_is_secret_key(top->key));
            dsn = top->is_map && top->key != NULL && strcasecmp(top->key, "dsn") == 0;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_NO_EVENT:
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
        case YAML_ALIAS_EVENT:
            break;
        case YAML_SCALAR_EVENT:
            if (is_key) {
                free(top->key);
                top->key = pc_strdup((const char *)ev.data.scalar.value);
                if (top->key == NULL)
                    r.rc = PC_ENOMEM;
            } else if (secret) {
                secret_scalar(&r, &ev);
            } else if (dsn || looks_like_dsn((const char *)ev.data.scalar.value)) {
                dsn_scalar(&r, &ev);
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth >= MF_MAX_DEPTH + 1) {
                rc = pc_error_set(err, PC_EINVAL, "cannot redact manifest %s: nesting too deep",
                                  m->file);
                yaml_event_delete(&ev);
                goto done;
            }
            stack[depth].is_map = ev.type == YAML_MAPPING_START_EVENT;
            stack[depth].want_key = true;
            stack[depth].secret = secret || (is_key && top->secret);
            stack[depth].key = NULL;
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                depth--;
                free(stack[depth].key);
            }
            break;
        }
        /* a map alternates key, value: a complete node just went by */
        if (ev.type == YAML_SCALAR_EVENT || ev.type == YAML_ALIAS_EVENT ||
            ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            frame *t = depth > 0 ? &stack[depth - 1] : NULL;
            if (t != NULL && t->is_map)
                t->want_key = !t->want_key;
        }
        yaml_event_delete(&ev);
    }
    if (r.rc != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory redacting manifest %s", m->file);
        goto done;
    }
    emit(&r, r.len, r.len, "", 0);
    if (r.rc != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory redacting manifest %s", m->file);
        goto done;
    }
    *out = pc_buf_detach(&r.out);
    if (*out == NULL)
        rc = pc_error_set(err, PC_ENOMEM, "out of memory redacting manifest %s", m->file);
done:
    while (depth > 0)
        free(stack[--depth].key);
    if (parser_ok)
        yaml_parser_delete(&parser);
    pc_buf_free(&r.out);
    return rc;
}
