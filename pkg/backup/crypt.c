/* crypt.c: the cryptography of an encrypted backup repository, apart from any storage.
 *
 * Format 1, as stored (every integer big-endian):
 *
 * The marker object "pipectl-crypt.json" (plain JSON, never encrypted) holds what is needed to
 * turn the passphrase into keys, and a way to tell a wrong passphrase:
 *   {"format": 1, "cipher": "aes-256-gcm", "chunk_size": 65536,
 *    "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<32 hex: 16 random bytes>"},
 *    "key_check": {"method": "hmac-sha256", "value": "<64 hex>"}, "note": "..."}
 *   scrypt(passphrase, salt, N, r, p) gives 64 bytes: the first 32 are the data key, the last 32
 *   the check key; key_check = HMAC-SHA256(check key, "pipectl-crypt key check v1"). The check
 *   key is independent of the data key (scrypt's output is PBKDF2-HMAC-SHA256 output, whose
 *   blocks are independent), so the marker reveals nothing about the data key, and a guess of the
 *   passphrase costs one scrypt. scrypt rather than PBKDF2 because it is memory-hard (32 MiB per
 *   guess), which takes the edge off GPU guessing; OpenSSL 3 provides it. The parameters are read
 *   back from the marker, within bounds (N <= 2^20, r <= 32, p <= 16, at most 1 GiB), so a
 *   damaged marker cannot make pipectl allocate without limit.
 *
 * Every other object:
 *   header (40 bytes): "PCCRYPT" 0x01 (magic and format version), then 32 random bytes S (from
 *     RAND_bytes, fresh for each object);
 *   then chunks: each is up to 65536 bytes of plaintext encrypted with AES-256-GCM, followed by
 *     its 16-byte tag. Every chunk but the last holds exactly 65536 bytes; the last holds 1 to
 *     65536 (0 only when the object is empty: then it is the only chunk).
 *   The object key is HMAC-SHA256(data key, "pipectl-crypt object key v1" || S): each object has
 *     its own key, so the 96-bit nonces of two objects can never collide under one key (a random
 *     64-bit nonce prefix under one key for all objects would reach a 2^-10 collision chance
 *     after 10^8 WAL segments). Chunk i's nonce is S[0..8) || BE32(i) (at most 2^32 chunks,
 *     256 TiB); its additional data is header || BE64(i) || final (1 byte: 1 for the last chunk,
 *     else 0) || the object's key (its name in the repository). So a flipped byte anywhere, a
 *     chunk moved, dropped or repeated, an object cut at a chunk boundary or extended, and an
 *     object moved to another name all fail authentication.
 *   The stored size is 40 + plaintext + 16 * chunks, so the plaintext size follows from the
 *   stored size alone (stat and list report it without reading anything), and a stored size that
 *   no object can have is a damaged object.
 *
 * Compression happens above (the layers compress, then write); this file only sees bytes. */
#include "crypt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdlib.h>
#include <string.h>

#define MAGIC "PCCRYPT\x01"
#define MAGIC_LEN 8u
#define SALT_OFF 8u
#define STORED_CHUNK (PC_CRYPT_CHUNK + PC_CRYPT_TAG)
#define NONCE_LEN 12u
#define CHECK_LABEL "pipectl-crypt key check v1"
#define OBJKEY_LABEL "pipectl-crypt object key v1"
#define MAX_CHUNKS ((uint64_t)UINT32_MAX + 1)

/* --- keys ----------------------------------------------------------------------------------- */

void pc_crypt_kdf_default(pc_crypt_kdf *kdf)
{
    memset(kdf, 0, sizeof *kdf);
    kdf->n = 1u << 15;
    kdf->r = 8;
    kdf->p = 1;
}

/* The bounds a marker's parameters must keep: a cost a machine can pay. */
static const char *kdf_problem(const pc_crypt_kdf *kdf)
{
    if (kdf->n < 2 || (kdf->n & (kdf->n - 1)) != 0)
        return "scrypt n is not a power of two";
    if (kdf->n > (1u << 20))
        return "scrypt n is above 2^20";
    if (kdf->r < 1 || kdf->r > 32)
        return "scrypt r is not between 1 and 32";
    if (kdf->p < 1 || kdf->p > 16)
        return "scrypt p is not between 1 and 16";
    if (128u * kdf->r * kdf->n > (1u << 30))
        return "scrypt would need more than 1 GiB";
    return NULL;
}

int pc_crypt_derive(const char *passphrase, const pc_crypt_kdf *kdf, pc_crypt_keys *keys,
                    pc_error *err)
{
    const char *why = kdf_problem(kdf);
    if (why != NULL)
        return pc_error_set(err, PC_EINVAL, "cannot derive the encryption key: %s", why);
    unsigned char out[2 * PC_CRYPT_KEYLEN];
    /* scrypt's working set is 128 * r * (N + p) bytes: allow that and a margin */
    uint64_t maxmem = 128u * (uint64_t)kdf->r * (kdf->n + kdf->p + 2) + (1u << 20);
    if (EVP_PBE_scrypt(passphrase, strlen(passphrase), kdf->salt, sizeof kdf->salt, kdf->n, kdf->r,
                       kdf->p, maxmem, out, sizeof out) != 1) {
        OPENSSL_cleanse(out, sizeof out);
        return pc_error_set(err, PC_ENOMEM,
                            "cannot derive the encryption key: scrypt failed (out of memory?)");
    }
    memcpy(keys->data, out, PC_CRYPT_KEYLEN);
    memcpy(keys->check, out + PC_CRYPT_KEYLEN, PC_CRYPT_KEYLEN);
    OPENSSL_cleanse(out, sizeof out);
    return 0;
}

void pc_crypt_keys_wipe(pc_crypt_keys *keys)
{
    if (keys != NULL)
        OPENSSL_cleanse(keys, sizeof *keys);
}

/* HMAC-SHA256(key, label || data) into out[32]. */
static int hmac2(const unsigned char key[PC_CRYPT_KEYLEN], const char *label,
                 const unsigned char *data, size_t n, unsigned char out[32])
{
    unsigned char msg[64 + 64];
    size_t ll = strlen(label);
    if (ll + n > sizeof msg)
        return -1;
    memcpy(msg, label, ll);
    if (n > 0)
        memcpy(msg + ll, data, n);
    unsigned int len = 0;
    unsigned char *r = HMAC(EVP_sha256(), key, PC_CRYPT_KEYLEN, msg, ll + n, out, &len);
    OPENSSL_cleanse(msg, sizeof msg);
    return r != NULL && len == 32 ? 0 : -1;
}

/* --- the marker ----------------------------------------------------------------------------- */

static void hex(const unsigned char *p, size_t n, char *out)
{
    pc_hex_encode(p, n, out);
}

/* Decodes exactly n bytes from a string of 2n hex digits. */
static bool unhex(const char *s, unsigned char *out, size_t n)
{
    if (s == NULL || strlen(s) != 2 * n)
        return false;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0)
            return false;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return true;
}

int pc_crypt_marker_new(const char *passphrase, const pc_crypt_kdf *kdf, pc_crypt_keys *keys,
                        char **json, pc_error *err)
{
    *json = NULL;
    pc_crypt_kdf k;
    if (kdf != NULL)
        k = *kdf;
    else
        pc_crypt_kdf_default(&k);
    if (RAND_bytes(k.salt, sizeof k.salt) != 1)
        return pc_error_set(err, PC_EIO, "cannot draw random bytes for the encryption salt");
    int rc = pc_crypt_derive(passphrase, &k, keys, err);
    if (rc != 0)
        return rc;
    unsigned char check[32];
    if (hmac2(keys->check, CHECK_LABEL, NULL, 0, check) != 0) {
        pc_crypt_keys_wipe(keys);
        return pc_error_set(err, PC_EIO, "cannot compute the encryption key check (HMAC)");
    }
    char salt_hex[2 * PC_CRYPT_SALTLEN + 1], check_hex[2 * sizeof check + 1];
    hex(k.salt, sizeof k.salt, salt_hex);
    hex(check, sizeof check, check_hex);
    json_t *o = json_pack(
        "{s:i, s:s, s:i, s:{s:s, s:I, s:i, s:i, s:s}, s:{s:s, s:s}, s:s}", "format", 1, "cipher",
        "aes-256-gcm", "chunk_size", (int)PC_CRYPT_CHUNK, "kdf", "name", "scrypt", "n",
        (json_int_t)k.n, "r", (int)k.r, "p", (int)k.p, "salt", salt_hex, "key_check", "method",
        "hmac-sha256", "value", check_hex, "note",
        "pipectl encrypted backup repository: keep this object; without it and the passphrase "
        "nothing here can be read");
    char *text = o != NULL ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (text == NULL) {
        pc_crypt_keys_wipe(keys);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    /* json_dumps' memory belongs to jansson's allocator (malloc by default): copy into ours */
    *json = pc_strdup(text);
    free(text);
    if (*json == NULL) {
        pc_crypt_keys_wipe(keys);
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    }
    return 0;
}

static int bad_marker(pc_error *err, const char *uri, const char *why)
{
    return pc_error_set(err, PC_EIO,
                        "the marker " PC_CRYPT_MARKER " in backup repository %s is damaged (%s): "
                        "put back a copy of it; without it the backups there cannot be decrypted",
                        uri, why);
}

int pc_crypt_marker_open(const char *json, size_t len, const char *passphrase, const char *uri,
                         pc_crypt_keys *keys, pc_error *err)
{
    json_error_t je;
    json_t *o = json_loadb(json, len, 0, &je);
    int rc = 0;
    if (o == NULL || !json_is_object(o)) {
        rc = bad_marker(err, uri, "it is not a JSON object");
        goto done;
    }
    json_t *fmt = json_object_get(o, "format");
    if (!json_is_integer(fmt)) {
        rc = bad_marker(err, uri, "no \"format\"");
        goto done;
    }
    if (json_integer_value(fmt) != 1) {
        rc = pc_error_set(err, PC_EINVAL,
                          "backup repository %s is encrypted in format %lld, which this pipectl "
                          "does not know: upgrade pipectl",
                          uri, (long long)json_integer_value(fmt));
        goto done;
    }
    const char *cipher = json_string_value(json_object_get(o, "cipher"));
    json_t *cs = json_object_get(o, "chunk_size");
    if (!pc_streq(cipher, "aes-256-gcm") || !json_is_integer(cs) ||
        json_integer_value(cs) != (json_int_t)PC_CRYPT_CHUNK) {
        rc = bad_marker(err, uri, "format 1 is aes-256-gcm in chunks of 65536 bytes");
        goto done;
    }
    json_t *kd = json_object_get(o, "kdf");
    json_t *jn = json_object_get(kd, "n"), *jr = json_object_get(kd, "r"),
           *jp = json_object_get(kd, "p");
    pc_crypt_kdf k = {0};
    if (!pc_streq(json_string_value(json_object_get(kd, "name")), "scrypt") ||
        !json_is_integer(jn) || !json_is_integer(jr) || !json_is_integer(jp) ||
        json_integer_value(jn) < 0 || json_integer_value(jr) < 0 || json_integer_value(jp) < 0 ||
        json_integer_value(jr) > 1000 || json_integer_value(jp) > 1000 ||
        !unhex(json_string_value(json_object_get(kd, "salt")), k.salt, sizeof k.salt)) {
        rc = bad_marker(err, uri, "\"kdf\" is not scrypt with n, r, p and a 16-byte hex salt");
        goto done;
    }
    k.n = (uint64_t)json_integer_value(jn);
    k.r = (uint32_t)json_integer_value(jr);
    k.p = (uint32_t)json_integer_value(jp);
    const char *why = kdf_problem(&k);
    if (why != NULL) {
        rc = bad_marker(err, uri, why);
        goto done;
    }
    json_t *kc = json_object_get(o, "key_check");
    unsigned char want[32], got[32];
    if (!pc_streq(json_string_value(json_object_get(kc, "method")), "hmac-sha256") ||
        !unhex(json_string_value(json_object_get(kc, "value")), want, sizeof want)) {
        rc = bad_marker(err, uri, "\"key_check\" is not an hmac-sha256 hex value");
        goto done;
    }
    if ((rc = pc_crypt_derive(passphrase, &k, keys, err)) != 0)
        goto done;
    if (hmac2(keys->check, CHECK_LABEL, NULL, 0, got) != 0) {
        pc_crypt_keys_wipe(keys);
        rc = pc_error_set(err, PC_EIO, "cannot compute the encryption key check (HMAC)");
        goto done;
    }
    if (CRYPTO_memcmp(want, got, sizeof got) != 0) {
        pc_crypt_keys_wipe(keys);
        rc = pc_error_set(err, PC_EINVAL,
                          "wrong encryption key for backup repository %s "
                          "(archiving.encryption.key)",
                          uri);
        goto done;
    }
done:
    json_decref(o);
    return rc;
}

/* --- sizes ---------------------------------------------------------------------------------- */

uint64_t pc_crypt_stored_size(uint64_t plain)
{
    uint64_t chunks = plain == 0 ? 1 : (plain + PC_CRYPT_CHUNK - 1) / PC_CRYPT_CHUNK;
    return PC_CRYPT_HDR + plain + chunks * PC_CRYPT_TAG;
}

/* Chunks of an object of stored size s (valid sizes only). */
static uint64_t chunk_count(uint64_t stored)
{
    uint64_t s = stored - PC_CRYPT_HDR;
    return (s + STORED_CHUNK - 1) / STORED_CHUNK;
}

bool pc_crypt_plain_size(uint64_t stored, uint64_t *plain)
{
    *plain = 0;
    if (stored < PC_CRYPT_HDR + PC_CRYPT_TAG)
        return false;
    uint64_t n = chunk_count(stored);
    uint64_t last = stored - PC_CRYPT_HDR - (n - 1) * STORED_CHUNK;
    if (last < PC_CRYPT_TAG || (last == PC_CRYPT_TAG && n > 1) || n > MAX_CHUNKS)
        return false;
    *plain = stored - PC_CRYPT_HDR - n * PC_CRYPT_TAG;
    return true;
}

/* --- one chunk ------------------------------------------------------------------------------ */

/* What a chunk is bound to: the object's key and header, its place, whether it is the last. */
typedef struct chunk_ctx {
    EVP_CIPHER_CTX *evp;
    unsigned char okey[32];
    unsigned char hdr[PC_CRYPT_HDR];
    const char *key;
} chunk_ctx;

static int chunk_init(chunk_ctx *c, const pc_crypt_keys *keys, const unsigned char *hdr,
                      const char *key)
{
    memcpy(c->hdr, hdr, PC_CRYPT_HDR);
    c->key = key;
    if (hmac2(keys->data, OBJKEY_LABEL, hdr + SALT_OFF, PC_CRYPT_HDR - SALT_OFF, c->okey) != 0)
        return -1;
    c->evp = EVP_CIPHER_CTX_new();
    return c->evp != NULL ? 0 : -1;
}

static void chunk_dispose(chunk_ctx *c)
{
    EVP_CIPHER_CTX_free(c->evp);
    c->evp = NULL;
    OPENSSL_cleanse(c->okey, sizeof c->okey);
}

static void chunk_nonce_aad(const chunk_ctx *c, uint64_t index, bool final,
                            unsigned char nonce[NONCE_LEN], unsigned char place[9])
{
    memcpy(nonce, c->hdr + SALT_OFF, 8);
    for (int i = 0; i < 4; i++)
        nonce[8 + i] = (unsigned char)(index >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        place[i] = (unsigned char)(index >> (56 - 8 * i));
    place[8] = final ? 1 : 0;
}

/* Sets up the cipher for chunk index (enc: 1 to seal, 0 to open) and feeds its additional
 * data. */
static int chunk_begin(chunk_ctx *c, int enc, uint64_t index, bool final)
{
    unsigned char nonce[NONCE_LEN], place[9];
    chunk_nonce_aad(c, index, final, nonce, place);
    const unsigned char *name = (const unsigned char *)c->key;
    int l = 0;
    if (EVP_CipherInit_ex(c->evp, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->evp, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(c->evp, NULL, NULL, c->okey, nonce, enc) != 1 ||
        EVP_CipherUpdate(c->evp, NULL, &l, c->hdr, PC_CRYPT_HDR) != 1 ||
        EVP_CipherUpdate(c->evp, NULL, &l, place, sizeof place) != 1 ||
        EVP_CipherUpdate(c->evp, NULL, &l, name, (int)strlen(c->key)) != 1)
        return -1;
    return 0;
}

/* Seals n bytes (n <= PC_CRYPT_CHUNK) into out (n + PC_CRYPT_TAG bytes). */
static int chunk_seal(chunk_ctx *c, uint64_t index, bool final, const unsigned char *in, size_t n,
                      unsigned char *out)
{
    int l = 0, l2 = 0;
    if (chunk_begin(c, 1, index, final) != 0 ||
        (n > 0 && EVP_CipherUpdate(c->evp, out, &l, in, (int)n) != 1) ||
        EVP_CipherFinal_ex(c->evp, out + l, &l2) != 1 || (size_t)(l + l2) != n ||
        EVP_CIPHER_CTX_ctrl(c->evp, EVP_CTRL_GCM_GET_TAG, PC_CRYPT_TAG, out + n) != 1)
        return -1;
    return 0;
}

/* Opens a sealed chunk of n bytes (n >= PC_CRYPT_TAG) into out (n - PC_CRYPT_TAG bytes);
 * -1 when it fails authentication (out is then wiped). */
static int chunk_open(chunk_ctx *c, uint64_t index, bool final, const unsigned char *in, size_t n,
                      unsigned char *out)
{
    size_t pn = n - PC_CRYPT_TAG;
    int l = 0, l2 = 0;
    if (chunk_begin(c, 0, index, final) != 0 ||
        (pn > 0 && EVP_CipherUpdate(c->evp, out, &l, in, (int)pn) != 1) ||
        EVP_CIPHER_CTX_ctrl(c->evp, EVP_CTRL_GCM_SET_TAG, PC_CRYPT_TAG, (void *)(in + pn)) != 1 ||
        EVP_CipherFinal_ex(c->evp, out + l, &l2) != 1) {
        OPENSSL_cleanse(out, pn);
        return -1;
    }
    return 0;
}

/* --- writer --------------------------------------------------------------------------------- */

struct pc_crypt_writer {
    chunk_ctx c;
    char *key;
    pc_crypt_out_fn out;
    void *out_ctx;
    unsigned char *plain;  /* PC_CRYPT_CHUNK */
    unsigned char *sealed; /* STORED_CHUNK */
    size_t fill;
    uint64_t index;
    bool done; /* finished or failed: nothing more is written */
};

void pc_crypt_writer_free(pc_crypt_writer *w)
{
    if (w == NULL)
        return;
    chunk_dispose(&w->c);
    if (w->plain != NULL)
        OPENSSL_cleanse(w->plain, PC_CRYPT_CHUNK);
    free(w->plain);
    free(w->sealed);
    free(w->key);
    free(w);
}

int pc_crypt_writer_new(const pc_crypt_keys *keys, const char *key, pc_crypt_out_fn out, void *ctx,
                        pc_crypt_writer **wp, pc_error *err)
{
    *wp = NULL;
    int rc = 0;
    pc_crypt_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    w->out = out;
    w->out_ctx = ctx;
    w->key = pc_strdup(key);
    w->plain = malloc(PC_CRYPT_CHUNK);
    w->sealed = malloc(STORED_CHUNK);
    if (w->key == NULL || w->plain == NULL || w->sealed == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    unsigned char hdr[PC_CRYPT_HDR];
    memcpy(hdr, MAGIC, MAGIC_LEN);
    if (RAND_bytes(hdr + SALT_OFF, PC_CRYPT_HDR - SALT_OFF) != 1) {
        rc = pc_error_set(err, PC_EIO, "cannot draw random bytes to encrypt %s", key);
        goto done;
    }
    if (chunk_init(&w->c, keys, hdr, w->key) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "cannot set up encryption of %s (OpenSSL)", key);
        goto done;
    }
    rc = w->out(w->out_ctx, hdr, sizeof hdr, err);
done:
    if (rc != 0)
        pc_crypt_writer_free(w);
    else
        *wp = w;
    return rc;
}

static int writer_seal(pc_crypt_writer *w, bool final, pc_error *err)
{
    if (w->index >= MAX_CHUNKS) {
        w->done = true;
        return pc_error_set(err, PC_EIO, "%s is larger than an encrypted object can be (256 TiB)",
                            w->key);
    }
    if (chunk_seal(&w->c, w->index, final, w->plain, w->fill, w->sealed) != 0) {
        w->done = true;
        return pc_error_set(err, PC_EIO, "cannot encrypt %s (OpenSSL)", w->key);
    }
    int rc = w->out(w->out_ctx, w->sealed, w->fill + PC_CRYPT_TAG, err);
    if (rc != 0) {
        w->done = true;
        return rc;
    }
    w->index++;
    w->fill = 0;
    return 0;
}

int pc_crypt_writer_write(pc_crypt_writer *w, const void *data, size_t n, pc_error *err)
{
    if (w->done)
        return pc_error_set(err, PC_EINVAL, "%s: write after the end or a failure", w->key);
    const unsigned char *p = data;
    while (n > 0) {
        if (w->fill == PC_CRYPT_CHUNK) {
            int rc = writer_seal(w, false, err);
            if (rc != 0)
                return rc;
        }
        size_t take = PC_CRYPT_CHUNK - w->fill;
        if (take > n)
            take = n;
        memcpy(w->plain + w->fill, p, take);
        w->fill += take;
        p += take;
        n -= take;
    }
    return 0;
}

int pc_crypt_writer_finish(pc_crypt_writer *w, pc_error *err)
{
    if (w->done)
        return pc_error_set(err, PC_EINVAL, "%s: finished twice or after a failure", w->key);
    int rc = writer_seal(w, true, err);
    w->done = true;
    return rc;
}

/* --- reader --------------------------------------------------------------------------------- */

struct pc_crypt_reader {
    chunk_ctx c;
    char *key;
    char *uri;
    pc_crypt_in_fn in;
    void *in_ctx;
    uint64_t stored;
    uint64_t plain_size;
    uint64_t chunks;
    unsigned char *sealed; /* STORED_CHUNK */
    unsigned char *plain;  /* PC_CRYPT_CHUNK: chunk `cached`, `cached_len` bytes */
    uint64_t cached;
    size_t cached_len;
};

#define NONE UINT64_MAX

void pc_crypt_reader_free(pc_crypt_reader *r)
{
    if (r == NULL)
        return;
    chunk_dispose(&r->c);
    if (r->plain != NULL)
        OPENSSL_cleanse(r->plain, PC_CRYPT_CHUNK);
    free(r->plain);
    free(r->sealed);
    free(r->key);
    free(r->uri);
    free(r);
}

static int auth_failed(const pc_crypt_reader *r, uint64_t index, pc_error *err)
{
    return pc_error_set(err, PC_EIO,
                        "%s in backup repository %s fails authentication at byte %llu: damaged, "
                        "or written with another key",
                        r->key, r->uri, (unsigned long long)(index * PC_CRYPT_CHUNK));
}

/* Makes chunk index the cached one. */
static int reader_load(pc_crypt_reader *r, uint64_t index, pc_error *err)
{
    if (r->cached == index)
        return 0;
    r->cached = NONE;
    uint64_t off = PC_CRYPT_HDR + index * STORED_CHUNK;
    bool final = index == r->chunks - 1;
    size_t n = final ? (size_t)(r->stored - off) : STORED_CHUNK;
    int rc = r->in(r->in_ctx, off, r->sealed, n, err);
    if (rc != 0)
        return rc;
    if (chunk_open(&r->c, index, final, r->sealed, n, r->plain) != 0)
        return auth_failed(r, index, err);
    r->cached = index;
    r->cached_len = n - PC_CRYPT_TAG;
    return 0;
}

int pc_crypt_reader_new(const pc_crypt_keys *keys, const char *key, const char *uri,
                        uint64_t stored_size, pc_crypt_in_fn in, void *ctx, pc_crypt_reader **rp,
                        pc_error *err)
{
    *rp = NULL;
    int rc = 0;
    pc_crypt_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return pc_error_set(err, PC_ENOMEM, "out of memory");
    r->in = in;
    r->in_ctx = ctx;
    r->stored = stored_size;
    r->cached = NONE;
    r->key = pc_strdup(key);
    r->uri = pc_strdup(uri);
    r->sealed = malloc(STORED_CHUNK);
    r->plain = malloc(PC_CRYPT_CHUNK);
    if (r->key == NULL || r->uri == NULL || r->sealed == NULL || r->plain == NULL) {
        rc = pc_error_set(err, PC_ENOMEM, "out of memory");
        goto done;
    }
    if (!pc_crypt_plain_size(stored_size, &r->plain_size)) {
        rc = pc_error_set(err, PC_EIO,
                          "%s in backup repository %s is %llu bytes, a size no encrypted object "
                          "has: it was cut or added to (damaged), or written without encryption",
                          key, uri, (unsigned long long)stored_size);
        goto done;
    }
    r->chunks = chunk_count(stored_size);
    unsigned char hdr[PC_CRYPT_HDR];
    if ((rc = in(ctx, 0, hdr, sizeof hdr, err)) != 0)
        goto done;
    if (memcmp(hdr, MAGIC, MAGIC_LEN - 1) != 0) {
        rc = pc_error_set(err, PC_EIO,
                          "%s in backup repository %s is not an encrypted pipectl object (its "
                          "first bytes are wrong): damaged, or written without encryption",
                          key, uri);
        goto done;
    }
    if (hdr[MAGIC_LEN - 1] != (unsigned char)MAGIC[MAGIC_LEN - 1]) {
        rc = pc_error_set(err, PC_EIO,
                          "%s in backup repository %s is encrypted in format %u, which this "
                          "pipectl does not know: damaged, or written by a newer pipectl",
                          key, uri, hdr[MAGIC_LEN - 1]);
        goto done;
    }
    if (chunk_init(&r->c, keys, hdr, r->key) != 0) {
        rc = pc_error_set(err, PC_ENOMEM, "cannot set up decryption of %s (OpenSSL)", key);
        goto done;
    }
    /* the last chunk first: it proves the object ends where it was meant to end */
    rc = reader_load(r, r->chunks - 1, err);
done:
    if (rc != 0)
        pc_crypt_reader_free(r);
    else
        *rp = r;
    return rc;
}

uint64_t pc_crypt_reader_size(const pc_crypt_reader *r)
{
    return r->plain_size;
}

int pc_crypt_reader_pread(pc_crypt_reader *r, uint64_t off, void *buf, size_t n, size_t *got,
                          pc_error *err)
{
    *got = 0;
    unsigned char *p = buf;
    while (n > 0 && off < r->plain_size) {
        uint64_t index = off / PC_CRYPT_CHUNK;
        int rc = reader_load(r, index, err);
        if (rc != 0)
            return rc;
        size_t in_chunk = (size_t)(off - index * PC_CRYPT_CHUNK);
        size_t take = r->cached_len - in_chunk;
        if (take > n)
            take = n;
        memcpy(p, r->plain + in_chunk, take);
        p += take;
        *got += take;
        off += take;
        n -= take;
    }
    return 0;
}
