/* test_s3.c: the pure parts of pkg/s3, no server: the XML scanner over S3's answers (entities,
 * CDATA, names sharing a prefix, nesting, truncation and its token, broken documents refused),
 * the pieces of the signed request we compute ourselves (the payload-hash header, SigV4
 * encoding, canonical query order, URLs path-style and virtual-host), configuration and
 * credentials (environment through the caller's lookup only), and the retry policy (which
 * answers and errors are retried, backoff bounds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

#define XML_HEAD "<?xml version='1.0' encoding='UTF-8'?>"
#define LBR_OPEN "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"

/* ---------- ListObjectsV2 ---------- */

static void test_listing_basic(void **state)
{
    (void)state;
    static const char xml[] = XML_HEAD LBR_OPEN
        "<Name>b</Name><Prefix>wal/</Prefix><KeyCount>3</KeyCount>"
        "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
        "<Contents><Key>wal/000000010000000000000001</Key><LastModified>2026-01-01T00:00:00.000Z"
        "</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>"
        "<Size>16777216</Size><StorageClass>STANDARD</StorageClass></Contents>"
        "<Contents><Key>a &amp; b &lt;c&gt; &apos;d&apos; &quot;e&quot;</Key><Size>0</Size>"
        "<ETag>\"abc-3\"</ETag><Owner><ID>x</ID><DisplayName>Key</DisplayName></Owner></Contents>"
        "<!-- a comment <Contents><Key>not me</Key></Contents> -->"
        "<Contents><Size>18446744073709551615</Size><Key>caf&#233; &#x1F600; <![CDATA[<raw&>]]>"
        "</Key></Contents>"
        "</ListBucketResult>";
    pc_s3_listing l = {0};
    pc_error err = {0};
    assert_int_equal(pc_s3_parse_listing(&l, xml, strlen(xml), &err), 0);
    assert_int_equal(l.n, 3);
    assert_false(l.truncated);
    assert_null(l.next_token);
    assert_string_equal(l.items[0].key, "wal/000000010000000000000001");
    assert_int_equal(l.items[0].size, 16777216);
    assert_string_equal(l.items[0].etag, "d41d8cd98f00b204e9800998ecf8427e");
    assert_int_equal(l.items[0].last_modified, 1767225600); /* 2026-01-01T00:00:00Z */
    assert_int_equal(l.items[1].last_modified, 0);          /* no <LastModified>: unknown */
    assert_string_equal(l.items[1].key, "a & b <c> 'd' \"e\"");
    assert_int_equal(l.items[1].size, 0);
    assert_string_equal(l.items[1].etag, "abc-3"); /* multipart ETag, quotes gone */
    /* <DisplayName>Key</DisplayName> inside <Owner> is not the entry's <Key> */
    assert_string_equal(l.items[2].key, "caf\xc3\xa9 \xf0\x9f\x98\x80 <raw&>");
    assert_true(l.items[2].size == UINT64_MAX);
    assert_string_equal(l.items[2].etag, "");
    pc_s3_listing_dispose(&l);
}

static void test_listing_truncated_pages_append(void **state)
{
    (void)state;
    static const char p1[] =
        LBR_OPEN "<KeyCount>1</KeyCount><IsTruncated>true</IsTruncated>"
                 "<NextContinuationToken>1/abc+def==&amp;x</NextContinuationToken>"
                 "<Contents><Key>k1</Key><Size>1</Size></Contents>"
                 "</ListBucketResult>";
    static const char p2[] = LBR_OPEN "<Contents><Key>k2</Key><Size>2</Size></Contents>"
                                      "<IsTruncated>false</IsTruncated></ListBucketResult>";
    pc_s3_listing l = {0};
    pc_error err = {0};
    assert_int_equal(pc_s3_parse_listing(&l, p1, strlen(p1), &err), 0);
    assert_true(l.truncated);
    assert_string_equal(l.next_token, "1/abc+def==&x");
    assert_int_equal(pc_s3_parse_listing(&l, p2, strlen(p2), &err), 0);
    assert_false(l.truncated);
    assert_null(l.next_token);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[1].key, "k2");
    pc_s3_listing_dispose(&l);

    /* empty bucket: <Prefix/> and friends self-closed, no Contents */
    static const char empty[] = XML_HEAD LBR_OPEN "<Name>b</Name><Prefix/><KeyCount>0</KeyCount>"
                                                  "<ContinuationToken/><IsTruncated>false"
                                                  "</IsTruncated></ListBucketResult>";
    assert_int_equal(pc_s3_parse_listing(&l, empty, strlen(empty), &err), 0);
    assert_int_equal(l.n, 0);
    pc_s3_listing_dispose(&l);
}

typedef struct bad_case {
    const char *what;
    const char *xml;
    const char *msg; /* part of the error */
} bad_case;

static const bad_case bad_listings[] = {
    {"truncated without a token",
     LBR_OPEN "<IsTruncated>true</IsTruncated><Contents><Key>k</Key><Size>1</Size></Contents>"
              "</ListBucketResult>",
     "NextContinuationToken"},
    {"bad IsTruncated", LBR_OPEN "<IsTruncated>yes</IsTruncated></ListBucketResult>",
     "IsTruncated"},
    {"size not a number",
     LBR_OPEN "<Contents><Key>k</Key><Size>12x</Size></Contents></ListBucketResult>", "<Size>"},
    {"size overflows",
     LBR_OPEN "<Contents><Key>k</Key><Size>18446744073709551616</Size></Contents>"
              "</ListBucketResult>",
     "<Size>"},
    {"no size", LBR_OPEN "<Contents><Key>k</Key></Contents></ListBucketResult>", "<Size>"},
    {"no key", LBR_OPEN "<Contents><Size>1</Size></Contents></ListBucketResult>", "<Key>"},
    {"unknown entity",
     LBR_OPEN "<Contents><Key>a&nbsp;b</Key><Size>1</Size></Contents></ListBucketResult>",
     "unknown entity"},
    {"entity without ';'",
     LBR_OPEN "<Contents><Key>a&amp b</Key><Size>1</Size></Contents></ListBucketResult>",
     "malformed entity"},
    {"NUL character reference",
     LBR_OPEN "<Contents><Key>a&#0;b</Key><Size>1</Size></Contents></ListBucketResult>",
     "invalid code point"},
    {"surrogate",
     LBR_OPEN "<Contents><Key>&#xD800;</Key><Size>1</Size></Contents>"
              "</ListBucketResult>",
     "invalid code point"},
    {"beyond Unicode",
     LBR_OPEN "<Contents><Key>&#x110000;</Key><Size>1</Size></Contents></ListBucketResult>",
     "invalid code point"},
    {"huge reference",
     LBR_OPEN "<Contents><Key>&#99999999999;</Key><Size>1</Size></Contents></ListBucketResult>",
     "entity"},
    {"element inside Key",
     LBR_OPEN "<Contents><Key>a<b>c</b></Key><Size>1</Size></Contents></ListBucketResult>",
     "an element where text was expected"},
    {"unclosed Contents", LBR_OPEN "<Contents><Key>k</Key><Size>1</Size></ListBucketResult>",
     "malformed"},
    {"cut short", LBR_OPEN "<Contents><Key>k</Ke", "malformed"},
    {"not a listing", "<Error><Code>AccessDenied</Code></Error>", "no <ListBucketResult>"},
    {"HTML", "<html><body>502 Bad Gateway</body></html>", "no <ListBucketResult>"},
    {"empty", "", "no <ListBucketResult>"},
};

static void test_listing_refuses_bad_documents(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_listings / sizeof *bad_listings; i++) {
        const bad_case *c = &bad_listings[i];
        pc_s3_listing l = {0};
        pc_error err = {0};
        int rc = pc_s3_parse_listing(&l, c->xml, strlen(c->xml), &err);
        if (rc != PC_EINVAL || !strstr(err.msg, c->msg))
            fail_msg("%s: rc %d, message \"%s\" (want \"%s\")", c->what, rc, err.msg, c->msg);
        pc_s3_listing_dispose(&l);
    }
}

/* ---------- other documents ---------- */

static void test_uploads(void **state)
{
    (void)state;
    static const char xml[] = XML_HEAD
        "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Bucket>b</Bucket><KeyMarker/><UploadIdMarker/><NextKeyMarker>base/2</NextKeyMarker>"
        "<NextUploadIdMarker>id&amp;2</NextUploadIdMarker><MaxUploads>2</MaxUploads>"
        "<IsTruncated>true</IsTruncated>"
        "<Upload><Key>base/1</Key><UploadId>id1</UploadId><Initiated>2026-12-06T10:00:00Z"
        "</Initiated></Upload>"
        "<Upload><Key>base/2</Key><UploadId>id&amp;2</UploadId></Upload>"
        "</ListMultipartUploadsResult>";
    pc_s3_uploads u = {0};
    pc_error err = {0};
    assert_int_equal(pc_s3_parse_uploads(&u, xml, strlen(xml), &err), 0);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.items[0].key, "base/1");
    assert_string_equal(u.items[0].upload_id, "id1");
    assert_string_equal(u.items[0].initiated, "2026-12-06T10:00:00Z");
    assert_string_equal(u.items[1].upload_id, "id&2");
    assert_string_equal(u.items[1].initiated, "");
    assert_true(u.truncated);
    assert_string_equal(u.next_key_marker, "base/2");
    assert_string_equal(u.next_upload_id_marker, "id&2");
    pc_s3_uploads_dispose(&u);

    static const char bad[] = "<ListMultipartUploadsResult><Upload><Key>k</Key></Upload>"
                              "<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
    assert_int_equal(pc_s3_parse_uploads(&u, bad, strlen(bad), &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "UploadId"));
    pc_s3_uploads_dispose(&u);
}

static void test_error_document(void **state)
{
    (void)state;
    static const char xml[] =
        XML_HEAD "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
                 "calculated does not match the signature you provided. Check your key &amp; "
                 "signing method.</Message><RequestId>1</RequestId></Error>";
    char *code = NULL, *msg = NULL;
    assert_int_equal(pc_s3_parse_error(xml, strlen(xml), &code, &msg), 0);
    assert_string_equal(code, "SignatureDoesNotMatch");
    assert_non_null(strstr(msg, "key & signing"));
    free(code);
    free(msg);
    assert_int_equal(pc_s3_parse_error("<html>oops</html>", 17, &code, &msg), PC_EINVAL);
    assert_null(code);
    assert_null(msg);
    assert_int_equal(pc_s3_parse_error("", 0, &code, &msg), PC_EINVAL);
}

static void test_xml_value(void **state)
{
    (void)state;
    static const char init[] = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                               "<UploadId>VXBsb2FkIElE+/=</UploadId>"
                               "</InitiateMultipartUploadResult>";
    static const char done[] = "<CompleteMultipartUploadResult><Location>x</Location>"
                               "<ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>"
                               "</CompleteMultipartUploadResult>";
    char *v = NULL;
    pc_error err = {0};
    assert_int_equal(pc_s3_xml_value(init, strlen(init), "UploadId", &v, &err), 0);
    assert_string_equal(v, "VXBsb2FkIElE+/=");
    free(v);
    assert_int_equal(pc_s3_xml_value(done, strlen(done), "ETag", &v, &err), 0);
    assert_string_equal(v, "3858f62230ac3c915f300c664312c11f-9");
    free(v);
    assert_int_equal(pc_s3_xml_value(done, strlen(done), "UploadId", &v, &err), PC_ENOTFOUND);
    assert_null(v);
}

/* ---------- request pieces ---------- */

static void test_payload_header(void **state)
{
    (void)state;
    char h[96];
    pc_s3_payload_header(h, NULL, 0);
    assert_string_equal(
        h,
        "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    pc_s3_payload_header(h, "abc", 3);
    assert_string_equal(
        h,
        "x-amz-content-sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_uri_encode(void **state)
{
    (void)state;
    pc_buf b = {0};
    assert_int_equal(pc_s3_uri_encode(&b, "a-Z_0.9~/ +=&?%\xc3\xa9*", true), 0);
    assert_string_equal(b.data, "a-Z_0.9~/%20%2B%3D%26%3F%25%C3%A9%2A");
    pc_buf_free(&b);
    assert_int_equal(pc_s3_uri_encode(&b, "1/abc+def==", false), 0);
    assert_string_equal(b.data, "1%2Fabc%2Bdef%3D%3D");
    pc_buf_free(&b);
}

typedef struct fake_env {
    const char *names[4];
    const char *values[4];
} fake_env;

static const char *lookup(const char *name, void *ctx)
{
    fake_env *e = ctx;
    for (int i = 0; i < 4 && e->names[i]; i++)
        if (strcmp(e->names[i], name) == 0)
            return e->values[i];
    return NULL;
}

static pc_s3 *client(const char *endpoint, const char *bucket, pc_s3_uri_style style)
{
    pc_s3_config c = {.endpoint = endpoint,
                      .bucket = bucket,
                      .uri_style = style,
                      .access_key_id = "AKIDEXAMPLE",
                      .secret_access_key = "wJalrXUtnFEMI/K7MDENG"};
    pc_s3 *s3 = NULL;
    pc_error err = {0};
    if (pc_s3_new(&s3, &c, &err) < 0)
        fail_msg("pc_s3_new: %s", err.msg);
    return s3;
}

static void expect_url(pc_s3 *s3, const char *key, const char *query, const char *want)
{
    char *url = NULL;
    pc_error err = {0};
    assert_int_equal(pc_s3_url(s3, key, query, &url, &err), 0);
    assert_string_equal(url, want);
    free(url);
}

static void test_urls(void **state)
{
    (void)state;
    pc_s3 *s3 = client("http://127.0.0.1:9000/", "bkt", PC_S3_URI_AUTO);
    assert_int_equal(pc_s3_uri_style_of(s3), PC_S3_URI_PATH); /* IP: no bucket sub-domain */
    expect_url(s3, "wal/0001 a+b", NULL, "http://127.0.0.1:9000/bkt/wal/0001%20a%2Bb");
    expect_url(s3, NULL, "list-type=2&max-keys=1000",
               "http://127.0.0.1:9000/bkt?list-type=2&max-keys=1000");
    expect_url(s3, "./x//y", "uploads=", "http://127.0.0.1:9000/bkt/./x//y?uploads=");
    pc_s3_free(s3);

    s3 = client("https://minio.example.com:9443", "bkt", PC_S3_URI_AUTO);
    assert_int_equal(pc_s3_uri_style_of(s3), PC_S3_URI_VIRTUAL);
    expect_url(s3, "k", NULL, "https://bkt.minio.example.com:9443/k");
    expect_url(s3, NULL, "list-type=2", "https://bkt.minio.example.com:9443/?list-type=2");
    pc_s3_free(s3);

    s3 = client("https://minio.example.com", "bkt", PC_S3_URI_PATH);
    expect_url(s3, "k", NULL, "https://minio.example.com/bkt/k");
    pc_s3_free(s3);

    /* a dotted bucket cannot be a sub-domain under a wildcard certificate: path, when AUTO */
    s3 = client("https://s3.example.com", "my.backups", PC_S3_URI_AUTO);
    assert_int_equal(pc_s3_uri_style_of(s3), PC_S3_URI_PATH);
    expect_url(s3, "k", NULL, "https://s3.example.com/my.backups/k");
    pc_s3_free(s3);

    s3 = client("http://[::1]:9000", "bkt", PC_S3_URI_AUTO);
    assert_int_equal(pc_s3_uri_style_of(s3), PC_S3_URI_PATH);
    expect_url(s3, "k", NULL, "http://[::1]:9000/bkt/k");
    pc_s3_free(s3);

    /* no endpoint: AWS, from the region */
    pc_s3_config c = {
        .bucket = "bkt", .region = "eu-west-1", .access_key_id = "A", .secret_access_key = "S"};
    pc_error err = {0};
    assert_int_equal(pc_s3_new(&s3, &c, &err), 0);
    expect_url(s3, "a/b", NULL, "https://bkt.s3.eu-west-1.amazonaws.com/a/b");
    pc_s3_free(s3);
}

static void expect_config_error(const pc_s3_config *c, int code, const char *part)
{
    pc_s3 *s3 = NULL;
    pc_error err = {0};
    int rc = pc_s3_new(&s3, c, &err);
    if (rc != code || !strstr(err.msg, part))
        fail_msg("rc %d message \"%s\" (want %d, \"%s\")", rc, err.msg, code, part);
    assert_null(s3);
    if (c->secret_access_key)
        assert_null(strstr(err.msg, c->secret_access_key));
}

static void test_config_errors(void **state)
{
    (void)state;
    pc_s3_config c = {.bucket = "bkt", .access_key_id = "A", .secret_access_key = "s3cr3tvalue"};
    c.endpoint = "ftp://x";
    expect_config_error(&c, PC_EINVAL, "must start with https://");
    c.endpoint = "https://host/prefix";
    expect_config_error(&c, PC_EINVAL, "has a path");
    c.endpoint = "https://user:s3cr3tvalue@host";
    expect_config_error(&c, PC_EINVAL, "user information");
    c.endpoint = "https:///";
    expect_config_error(&c, PC_EINVAL, "no host");
    c.endpoint = NULL;
    c.bucket = "a";
    expect_config_error(&c, PC_EINVAL, "not valid");
    c.bucket = "My.Bucket";
    c.uri_style = PC_S3_URI_VIRTUAL;
    expect_config_error(&c, PC_EINVAL, "uri_style: path");
    c.uri_style = PC_S3_URI_AUTO;
    c.bucket = NULL;
    expect_config_error(&c, PC_EINVAL, "no bucket");
    c.bucket = "bkt";
    c.region = "EU West";
    expect_config_error(&c, PC_EINVAL, "region");
    c.region = NULL;
    c.secret_access_key = NULL;
    expect_config_error(&c, PC_EINVAL, "secret_access_key is not");
    c.access_key_id = NULL;
    expect_config_error(&c, PC_EINVAL, "AWS_ACCESS_KEY_ID");
}

static void test_credentials_from_lookup(void **state)
{
    (void)state;
    fake_env e = {{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", NULL},
                  {"AKIDENV", "envsecret", "ap-south-1", NULL}};
    pc_s3_config c = {.bucket = "bkt", .getenv_fn = lookup, .env_ctx = &e};
    pc_s3 *s3 = NULL;
    pc_error err = {0};
    char *url = NULL;
    assert_int_equal(pc_s3_new(&s3, &c, &err), 0);
    assert_int_equal(pc_s3_url(s3, "k", NULL, &url, &err), 0);
    assert_string_equal(url, "https://bkt.s3.ap-south-1.amazonaws.com/k"); /* AWS_REGION */
    free(url);
    pc_s3_free(s3);

    /* a key id given in the configuration never pairs with a secret from the environment */
    c.access_key_id = "AKIDGIVEN";
    assert_int_equal(pc_s3_new(&s3, &c, &err), PC_EINVAL);
    assert_non_null(strstr(err.msg, "secret_access_key is not"));
    assert_null(strstr(err.msg, "envsecret"));

    /* no lookup, nothing given: a clear error, not the process environment */
    pc_s3_config none = {.bucket = "bkt"};
    pc_error e2 = {0};
    assert_int_equal(pc_s3_new(&s3, &none, &e2), PC_EINVAL);
    assert_non_null(strstr(e2.msg, "no credentials"));
}

/* ---------- retry policy ---------- */

typedef struct retry_case {
    int curl_code;
    long status;
    const char *code;
    bool retry;
} retry_case;

static const retry_case retry_cases[] = {
    {0, 500, "InternalError", true},
    {0, 502, NULL, true},
    {0, 503, "SlowDown", true},
    {0, 503, "ServiceUnavailable", true},
    {0, 504, NULL, true},
    {0, 501, "NotImplemented", false},
    {0, 400, "RequestTimeout", false},
    {0, 400, "XAmzContentSHA256Mismatch", false},
    {0, 403, "SignatureDoesNotMatch", false},
    {0, 403, "AccessDenied", false},
    {0, 404, "NoSuchKey", false},
    {0, 404, "NoSuchBucket", false},
    {0, 409, "BucketNotEmpty", false},
    {0, 412, "PreconditionFailed", false},
    {0, 429, "SlowDown", false}, /* never on a 4xx */
    {0, 200, NULL, false},
    {0, 200, "", false},
    {0, 200, "InternalError", true}, /* CompleteMultipartUpload: 200 then <Error> */
    {0, 200, "SlowDown", true},
    {0, 200, "InvalidPart", false},
    {0, 301, "PermanentRedirect", false},
    {CURLE_COULDNT_CONNECT, 0, NULL, true},
    {CURLE_COULDNT_RESOLVE_HOST, 0, NULL, true},
    {CURLE_OPERATION_TIMEDOUT, 0, NULL, true},
    {CURLE_SEND_ERROR, 0, NULL, true},
    {CURLE_RECV_ERROR, 0, NULL, true},
    {CURLE_GOT_NOTHING, 0, NULL, true},
    {CURLE_PARTIAL_FILE, 0, NULL, true},
    {CURLE_SSL_CONNECT_ERROR, 0, NULL, true},
    {CURLE_PEER_FAILED_VERIFICATION, 0, NULL, false},
    {CURLE_SSL_CACERT_BADFILE, 0, NULL, false},
    {CURLE_URL_MALFORMAT, 0, NULL, false},
    {CURLE_UNSUPPORTED_PROTOCOL, 0, NULL, false},
    {CURLE_WRITE_ERROR, 0, NULL, false},
    {CURLE_READ_ERROR, 0, NULL, false},
    {CURLE_ABORTED_BY_CALLBACK, 0, NULL, false},
    {CURLE_OUT_OF_MEMORY, 0, NULL, false},
};

static void test_retry_policy(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof retry_cases / sizeof *retry_cases; i++) {
        const retry_case *c = &retry_cases[i];
        if (pc_s3_retryable(c->curl_code, c->status, c->code) != c->retry)
            fail_msg("curl %d, HTTP %ld, %s: want retry=%d", c->curl_code, c->status,
                     c->code ? c->code : "(none)", c->retry);
    }
}

static void test_backoff(void **state)
{
    (void)state;
    static const uint64_t rnds[] = {0, 1, 12345, UINT64_MAX, 0x8000000000000000ULL};
    for (int retry = 1; retry <= 40; retry++) {
        long cap = 200;
        for (int i = 1; i < retry && cap < 20000; i++)
            cap *= 2;
        if (cap > 20000)
            cap = 20000;
        for (size_t j = 0; j < sizeof rnds / sizeof *rnds; j++) {
            long ms = pc_s3_backoff_ms(retry, 200, 20000, rnds[j]);
            if (ms < cap / 2 || ms > cap)
                fail_msg("retry %d rnd %llu: %ld ms outside [%ld, %ld]", retry,
                         (unsigned long long)rnds[j], ms, cap / 2, cap);
        }
    }
    assert_int_equal(pc_s3_backoff_ms(1, 200, 20000, 0), 100);
    assert_int_equal(pc_s3_backoff_ms(1, 200, 20000, 100), 200);
    assert_int_equal(pc_s3_backoff_ms(30, 200, 20000, 10000), 20000); /* capped */
    /* jitter: different random values spread over the window */
    long lo = pc_s3_backoff_ms(3, 200, 20000, 0), hi = pc_s3_backoff_ms(3, 200, 20000, 400);
    assert_int_equal(lo, 400);
    assert_int_equal(hi, 800);
}

/* ---------- times ---------- */

static void test_parse_time(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t want; /* -1: refused */
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-12-06T19:35:34.539Z", 1796585734}, /* <Initiated>, with milliseconds */
        {"2026-12-06T19:35:34Z", 1796585734},     /* s3proxy's <LastModified> */
        {"2024-02-29T23:59:59.000Z", 1709251199}, /* a leap day */
        {"2000-03-01T00:00:00+00:00", 951868800},
        {"Sun, 06 Dec 2026 19:35:30 GMT", 1796585730}, /* Last-Modified */
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Tue, 29 Feb 2028 12:00:00 GMT", 1835438400},
        {"", -1},
        {"2026-12-06", -1},
        {"2026-12-06T19:35:34", -1},       /* no zone: not UTC for sure */
        {"2026-12-06T19:35:34+02:00", -1}, /* S3 writes UTC */
        {"2026-13-06T19:35:34Z", -1},
        {"2026-12-06T25:35:34Z", -1},
        {"2026-1x-06T19:35:34Z", -1},
        {"Sun, 06 Foo 2026 19:35:30 GMT", -1},
        {"Sun, 06 Dec 2026 19:35:30 PST", -1},
        {"Sunday, 06-Dec-26 19:35:30 GMT", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t t = -42;
        int rc = pc_s3_parse_time(cases[i].s, &t);
        if (cases[i].want < 0 ? rc != PC_EINVAL : rc != 0 || t != cases[i].want)
            fail_msg("\"%s\": rc %d, t %lld, want %lld", cases[i].s, rc, (long long)t,
                     (long long)cases[i].want);
    }
    assert_int_equal(pc_s3_parse_time(NULL, &(int64_t){0}), PC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing_basic),
        cmocka_unit_test(test_listing_truncated_pages_append),
        cmocka_unit_test(test_listing_refuses_bad_documents),
        cmocka_unit_test(test_uploads),
        cmocka_unit_test(test_error_document),
        cmocka_unit_test(test_xml_value),
        cmocka_unit_test(test_payload_header),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_credentials_from_lookup),
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_parse_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
