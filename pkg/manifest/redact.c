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

static bool is_boundary(const char *raw, size_t i, size_t s)
{
    return i == s || !(isalnum((unsigned char)raw[i - 1]) || raw[i - 1] == '_');
}

/* Passwords inside a DSN-like scalar occupying raw[s..e): key=value "password=..." (plain or
 * libpq-quoted) and the "user:PASSWORD@" part of a URI. ${VAR} values stay. */
static void redact_dsn_range(redactor *r, size_t s, size_t e)
{
    const char *raw = r->raw;
    int in_ref = 0;
    for (size_t i = s; i < e; i++) {
        if (raw[i] == '$' && i + 1 < e && raw[i + 1] == '{') {
            in_ref++;
            i++;
            continue;
        }
        if (raw[i] == '}' && in_ref > 0) {
            in_ref--;
            continue;
        }
        /* URI authority: scheme://user:pass@host */
        if (raw[i] == ':' && i + 2 < e && raw[i + 1] == '/' && raw[i + 2] == '/') {
            size_t a = i + 3, ae = a;
            while (ae < e && strchr("/?# \t\n\"'", raw[ae]) == NULL)
                ae++;
            size_t at = ae;
            for (size_t k = a; k < ae; k++)
                if (raw[k] == '@')
                    at = k;
            if (at < ae) {
                size_t colon = a;
                while (colon < at && raw[colon] != ':')
                    colon++;
                if (colon < at && colon + 1 < at) {
                    size_t ps = colon + 1;
                    char *pw = pc_strndup(raw + ps, at - ps);
                    if (pw == NULL) {
                        r->rc = PC_ENOMEM;
                        return;
                    }
                    if (refs_only(pw))
                        redact_ref_defaults(r, ps, at);
                    else
                        emit(r, ps, at, PC_REDACTED, strlen(PC_REDACTED));
                    free(pw);
                }
            }
            i = ae - 1;
            continue;
        }
        if (e - i < 8 || strncasecmp(raw + i, "password", 8) != 0 || !is_boundary(raw, i, s))
            continue;
        size_t q = i + 8;
        while (q < e && raw[q] == ' ')
            q++;
        if (q >= e || raw[q] != '=')
            continue;
        q++;
        while (q < e && raw[q] == ' ')
            q++;
        if (q + 1 < e && raw[q] == '$' && raw[q + 1] == '{') {
            size_t close = q;
            while (close < e && raw[close] != '}')
                close++;
            redact_ref_defaults(r, q, close < e ? close + 1 : e);
            i = close < e ? close : e;
            continue;
        }
        size_t vs = q, ve;
        if (raw[q] == '\'') { /* libpq quoting: 'it''s' or 'a\'b' */
            vs = q + 1;
            ve = vs;
            while (ve < e && raw[ve] != '\'') {
                if (raw[ve] == '\\' && ve + 1 < e)
                    ve++;
                ve++;
            }
        } else {
            ve = q;
            while (ve < e && strchr(" \t\n\"'&", raw[ve]) == NULL && !(in_ref && raw[ve] == '}'))
                ve++;
        }
        if (ve > vs)
            emit(r, vs, ve, PC_REDACTED, strlen(PC_REDACTED));
        i = ve > i ? ve - 1 : i;
    }
}

static bool looks_like_dsn(const char *v)
{
    const char *uri = strstr(v, "://");
    if (uri != NULL) {
        const char *end = uri + 3 + strcspn(uri + 3, "/?# ");
        const char *at = memchr(uri + 3, '@', (size_t)(end - (uri + 3)));
        if (at != NULL && memchr(uri + 3, ':', (size_t)(at - (uri + 3))) != NULL)
            return true;
    }
    for (const char *p = v; *p; p++)
        if (strncasecmp(p, "password", 8) == 0) {
            const char *q = p + 8;
            while (*q == ' ')
                q++;
            if (*q == '=')
                return true;
        }
    return false;
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
                redact_dsn_range(&r, ev.start_mark.index, ev.end_mark.index);
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
