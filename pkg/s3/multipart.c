/* multipart.c: S3 multipart uploads: create, put a part (from memory or a reader), complete
 * (optionally conditional), abort, and list the uploads in progress. */
#include "s3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int upload_query(pc_buf *q, const char *upload_id, int part_number)
{
    int rc = 0;
    if (part_number > 0)
        rc = pc_buf_printf(q, "partNumber=%d&", part_number);
    if (rc == 0)
        rc = pc_buf_puts(q, "uploadId=");
    if (rc == 0)
        rc = pc_s3_uri_encode(q, upload_id, false);
    return rc;
}

int pc_s3_multipart_create(pc_s3 *s3, const char *key, char **upload_id, pc_error *err)
{
    pc_s3_req r = {.method = "POST",
                   .key = key,
                   .query = "uploads=",
                   .what = "start multipart "
                           "upload of",
                   .body = "",
                   .body_len = 0,
                   .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    *upload_id = NULL;
    if ((rc = pc_s3_perform(s3, &r, err)) == 0 &&
        (rc = pc_s3_xml_value(r.resp.data ? r.resp.data : "", r.resp.len, "UploadId", upload_id,
                              err)) < 0)
        pc_error_prefix(err, "S3 start multipart upload of s3://%s/%s at %s", s3->bucket, key,
                        s3->shown);
    pc_buf_free(&r.resp);
    return rc;
}

static int part_put(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                    const void *data, size_t len, const pc_s3_reader *rd, char etag[PC_S3_ETAG_MAX],
                    pc_error *err)
{
    pc_buf q = {0};
    char what[64];
    pc_s3_req r = {.method = "PUT",
                   .key = key,
                   .what = what,
                   .body = rd     ? NULL
                           : data ? data
                                  : "",
                   .body_len = rd ? 0 : len,
                   .reader = rd,
                   .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!upload_id || !*upload_id || part_number < 1 || part_number > 10000)
        return pc_error_set(err, PC_EINVAL,
                            "S3 upload part of %s: part number %d out of 1..10000 or no upload id",
                            key ? key : "?", part_number);
    snprintf(what, sizeof what, "upload part %d of", part_number);
    if (upload_query(&q, upload_id, part_number) < 0) {
        pc_buf_free(&q);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    r.query = q.data;
    if ((rc = pc_s3_perform(s3, &r, err)) == 0) {
        if (!r.etag[0])
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "S3 upload part %d of s3://%s/%s at %s: the answer has no ETag",
                              part_number, s3->bucket, key, s3->shown);
        else if (etag)
            snprintf(etag, PC_S3_ETAG_MAX, "%s", r.etag);
    }
    pc_buf_free(&q);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_multipart_put(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                        const void *data, size_t len, char etag[PC_S3_ETAG_MAX], pc_error *err)
{
    return part_put(s3, key, upload_id, part_number, data, len, NULL, etag, err);
}

int pc_s3_multipart_put_reader(pc_s3 *s3, const char *key, const char *upload_id, int part_number,
                               const pc_s3_reader *rd, char etag[PC_S3_ETAG_MAX], pc_error *err)
{
    if (!rd || !rd->read)
        return pc_error_set(err, PC_EINVAL, "S3 upload part of %s: no reader", key ? key : "?");
    return part_put(s3, key, upload_id, part_number, NULL, 0, rd, etag, err);
}

int pc_s3_multipart_complete(pc_s3 *s3, const char *key, const char *upload_id,
                             const char *const *etags, int n_parts, pc_s3_info *info, pc_error *err)
{
    return pc_s3_multipart_complete_cond(s3, key, upload_id, etags, n_parts, NULL, info, err);
}

int pc_s3_multipart_complete_cond(pc_s3 *s3, const char *key, const char *upload_id,
                                  const char *const *etags, int n_parts, const pc_s3_cond *cond,
                                  pc_s3_info *info, pc_error *err)
{
    pc_buf q = {0}, body = {0};
    pc_s3_req r = {.method = "POST",
                   .key = key,
                   .what = "complete multipart upload of",
                   .content_type = "application/xml",
                   .resp_max = S3_ERROR_BODY_MAX,
                   .if_match = cond ? cond->if_match : NULL,
                   .if_none_match = cond && cond->if_none_match};
    char *etag = NULL;
    int rc = 0;

    if (!upload_id || !*upload_id || n_parts < 1 || n_parts > 10000)
        return pc_error_set(err, PC_EINVAL,
                            "S3 complete multipart upload of %s: %d parts (1..10000) or no upload "
                            "id",
                            key ? key : "?", n_parts);
    rc = pc_buf_puts(&body, "<CompleteMultipartUpload>");
    for (int i = 0; i < n_parts && rc == 0; i++) {
        const char *e = etags[i];
        if (!e || !*e || strpbrk(e, "<>&\"")) {
            pc_buf_free(&body);
            return pc_error_set(err, PC_EINVAL,
                                "S3 complete multipart upload of %s: part %d has no valid ETag",
                                key ? key : "?", i + 1);
        }
        rc = pc_buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                           i + 1, e);
    }
    if (rc == 0)
        rc = pc_buf_puts(&body, "</CompleteMultipartUpload>");
    if (rc == 0)
        rc = upload_query(&q, upload_id, 0);
    if (rc < 0) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    r.query = q.data;
    r.body = body.data;
    r.body_len = body.len;
    if ((rc = pc_s3_perform(s3, &r, err)) < 0)
        goto done;
    /* success is a CompleteMultipartUploadResult; a 200 with <Error> was caught in perform */
    if (pc_s3_xml_value(r.resp.data ? r.resp.data : "", r.resp.len, "ETag", &etag, NULL) == 0 &&
        info)
        snprintf(info->etag, sizeof info->etag, "%s", etag);
    if (info)
        info->size = 0;
done:
    free(etag);
    pc_buf_free(&q);
    pc_buf_free(&body);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_multipart_abort(pc_s3 *s3, const char *key, const char *upload_id, pc_error *err)
{
    pc_buf q = {0};
    pc_s3_req r = {.method = "DELETE",
                   .key = key,
                   .what = "abort multipart upload of",
                   .resp_max = S3_ERROR_BODY_MAX};
    int rc;
    if (!upload_id || !*upload_id)
        return pc_error_set(err, PC_EINVAL, "S3 abort multipart upload of %s: no upload id",
                            key ? key : "?");
    if (upload_query(&q, upload_id, 0) < 0) {
        pc_buf_free(&q);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    r.query = q.data;
    rc = pc_s3_perform(s3, &r, err);
    pc_buf_free(&q);
    pc_buf_free(&r.resp);
    return rc;
}

int pc_s3_multipart_list(pc_s3 *s3, const char *prefix, pc_s3_uploads *out, pc_error *err)
{
    char *key_marker = NULL, *id_marker = NULL;
    int rc = 0;
    for (;;) {
        pc_buf q = {0};
        pc_s3_req r = {
            .method = "GET", .what = "list multipart uploads in", .resp_max = S3_XML_BODY_MAX};
        /* canonical order: key-marker, prefix, upload-id-marker, uploads */
        if (key_marker) {
            rc = pc_buf_puts(&q, "key-marker=");
            if (rc == 0)
                rc = pc_s3_uri_encode(&q, key_marker, false);
            if (rc == 0)
                rc = pc_buf_puts(&q, "&");
        }
        if (rc == 0 && prefix && *prefix) {
            rc = pc_buf_puts(&q, "prefix=");
            if (rc == 0)
                rc = pc_s3_uri_encode(&q, prefix, false);
            if (rc == 0)
                rc = pc_buf_puts(&q, "&");
        }
        if (rc == 0 && id_marker && *id_marker) {
            rc = pc_buf_puts(&q, "upload-id-marker=");
            if (rc == 0)
                rc = pc_s3_uri_encode(&q, id_marker, false);
            if (rc == 0)
                rc = pc_buf_puts(&q, "&");
        }
        if (rc == 0)
            rc = pc_buf_puts(&q, "uploads=");
        if (rc < 0) {
            pc_buf_free(&q);
            rc = pc_error_set(err, PC_ENOMEM, "out of memory");
            break;
        }
        r.query = q.data;
        rc = pc_s3_perform(s3, &r, err);
        if (rc == 0 &&
            (rc = pc_s3_parse_uploads(out, r.resp.data ? r.resp.data : "", r.resp.len, err)) < 0)
            pc_error_prefix(err, "S3 list multipart uploads in s3://%s at %s", s3->bucket,
                            s3->shown);
        pc_buf_free(&q);
        pc_buf_free(&r.resp);
        if (rc < 0 || !out->truncated)
            break;
        if (key_marker && pc_streq(key_marker, out->next_key_marker) &&
            pc_streq(id_marker, out->next_upload_id_marker)) {
            rc = pc_error_set(err, PC_EUNAVAIL,
                              "S3 list multipart uploads in s3://%s at %s: the server returned "
                              "the same markers twice",
                              s3->bucket, s3->shown);
            break;
        }
        free(key_marker);
        free(id_marker);
        key_marker = out->next_key_marker;
        id_marker = out->next_upload_id_marker;
        out->next_key_marker = out->next_upload_id_marker = NULL;
    }
    out->truncated = false;
    free(key_marker);
    free(id_marker);
    return rc;
}
