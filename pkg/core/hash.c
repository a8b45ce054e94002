/* hash.c: the hex encoder and the incremental SHA-256 every module uses (backup checksums, WAL
 * trailers, plan fingerprints), so there is one place where a digest becomes text. */
#include "core.h"

#include <openssl/evp.h>
#include <stdlib.h>

struct pc_sha256 {
    EVP_MD_CTX *md;
};

void pc_hex_encode(const void *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

void pc_sha256_hex(const void *data, size_t len, char out[PC_SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    pc_hex_encode(md, 32, out);
}

int pc_sha256_new(pc_sha256 **out)
{
    *out = NULL;
    pc_sha256 *h = calloc(1, sizeof *h);
    if (h == NULL || (h->md = EVP_MD_CTX_new()) == NULL) {
        free(h);
        return PC_ENOMEM;
    }
    if (EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
        pc_sha256_free(h);
        return PC_EIO;
    }
    *out = h;
    return 0;
}

void pc_sha256_update(pc_sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->md, data, len);
}

void pc_sha256_final(pc_sha256 *h, char out[PC_SHA256_HEX_LEN + 1])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(h->md, d, &dl);
    pc_hex_encode(d, 32, out);
    /* ready for the next message; re-initialising a context that worked cannot fail */
    EVP_DigestInit_ex(h->md, EVP_sha256(), NULL);
}

void pc_sha256_free(pc_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->md);
    free(h);
}
