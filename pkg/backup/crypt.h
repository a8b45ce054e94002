/* crypt.h: the cryptography of an encrypted backup repository (private to pkg/backup), apart
 * from any storage: key derivation, the marker object's contents, and the object format (a
 * streaming sealer and a random-access opener that talk to storage through callbacks). The
 * format is described at the head of crypt.c; repo_crypt.c glues it onto a pc_repo.
 *
 * Nothing here prints or returns key material in a message; keys are wiped when freed. */
#ifndef PC_BACKUP_CRYPT_H
#define PC_BACKUP_CRYPT_H
#if !defined(PC_INSIDE_BACKUP) && !defined(PC_WHITEBOX_TEST)
#error "crypt.h is private to pkg/backup: include backup.h"
#endif

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PC_CRYPT_MARKER "pipectl-crypt.json"
#define PC_CRYPT_CHUNK 65536u /* plaintext bytes per chunk (format 1) */
#define PC_CRYPT_TAG 16u      /* GCM tag after each chunk */
#define PC_CRYPT_HDR 40u      /* object header: magic+version (8), object salt (32) */
#define PC_CRYPT_KEYLEN 32u
#define PC_CRYPT_SALTLEN 16u

/* The scrypt parameters and salt recorded in the marker. */
typedef struct pc_crypt_kdf {
    uint64_t n; /* CPU/memory cost, a power of two */
    uint32_t r;
    uint32_t p;
    unsigned char salt[PC_CRYPT_SALTLEN];
} pc_crypt_kdf;

/* The keys derived from the passphrase: data encrypts objects (through a per-object key), check
 * only proves the passphrase in the marker. */
typedef struct pc_crypt_keys {
    unsigned char data[PC_CRYPT_KEYLEN];
    unsigned char check[PC_CRYPT_KEYLEN];
} pc_crypt_keys;

/* The parameters new markers use (scrypt N=2^15, r=8, p=1: 32 MiB, about 0.1 s). */
void pc_crypt_kdf_default(pc_crypt_kdf *kdf);
/* Derives keys from passphrase with kdf (deterministic for a given salt and parameters). */
int pc_crypt_derive(const char *passphrase, const pc_crypt_kdf *kdf, pc_crypt_keys *keys,
                    pc_error *err);
/* Wipes keys. */
void pc_crypt_keys_wipe(pc_crypt_keys *keys);

/* A new marker: a fresh salt, kdf parameters (NULL: the defaults), the keys derived from
 * passphrase (into *keys) and the marker's JSON text (*json, the caller frees). */
int pc_crypt_marker_new(const char *passphrase, const pc_crypt_kdf *kdf, pc_crypt_keys *keys,
                        char **json, pc_error *err);
/* Reads a marker's text, derives the keys from passphrase and checks them. PC_EINVAL with
 * "wrong encryption key for backup repository URI ..." when the passphrase is not the one the
 * marker was made with; PC_EIO when the marker is not one pipectl can read. */
int pc_crypt_marker_open(const char *json, size_t len, const char *passphrase, const char *uri,
                         pc_crypt_keys *keys, pc_error *err);

/* Sizes: stored bytes for a plaintext size, and back (false when no object of format 1 has
 * that stored size: the object was cut or something was appended). */
uint64_t pc_crypt_stored_size(uint64_t plain);
bool pc_crypt_plain_size(uint64_t stored, uint64_t *plain);

/* --- writing: bytes in, sealed bytes out through a callback ------------------------------- */

/* Receives stored bytes in order (the header first). */
typedef int (*pc_crypt_out_fn)(void *ctx, const void *data, size_t n, pc_error *err);

typedef struct pc_crypt_writer pc_crypt_writer;

/* Starts an object named key (bound into every chunk) and emits its header. */
int pc_crypt_writer_new(const pc_crypt_keys *keys, const char *key, pc_crypt_out_fn out, void *ctx,
                        pc_crypt_writer **w, pc_error *err);
/* Keeps at most one chunk of plaintext: a full chunk is sealed when the next byte arrives. */
int pc_crypt_writer_write(pc_crypt_writer *w, const void *data, size_t n, pc_error *err);
/* Seals what is left as the final chunk. Call once; then only free. */
int pc_crypt_writer_finish(pc_crypt_writer *w, pc_error *err);
void pc_crypt_writer_free(pc_crypt_writer *w); /* NULL is fine; wipes */

/* --- reading: random access through a callback --------------------------------------------- */

/* Reads exactly n stored bytes at off into buf (fewer is an error the callback reports). */
typedef int (*pc_crypt_in_fn)(void *ctx, uint64_t off, void *buf, size_t n, pc_error *err);

typedef struct pc_crypt_reader pc_crypt_reader;

/* Opens an object of stored_size bytes named key in the repository uri (both for messages and
 * key is also bound into the chunks): reads the header and authenticates the final chunk, so the
 * plaintext size is known to be the one written. PC_EIO naming key and uri when the object is
 * not what was sealed under these keys and this name. */
int pc_crypt_reader_new(const pc_crypt_keys *keys, const char *key, const char *uri,
                        uint64_t stored_size, pc_crypt_in_fn in, void *ctx, pc_crypt_reader **r,
                        pc_error *err);
uint64_t pc_crypt_reader_size(const pc_crypt_reader *r);
/* Up to n plaintext bytes at off; *got < n only at the end. Decrypts only the chunks it needs
 * and keeps the last one. */
int pc_crypt_reader_pread(pc_crypt_reader *r, uint64_t off, void *buf, size_t n, size_t *got,
                          pc_error *err);
void pc_crypt_reader_free(pc_crypt_reader *r); /* NULL is fine; wipes */

#endif
