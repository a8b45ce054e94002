/* gen.h: the user generator of pc-randomuser (deterministic per seed, page and index). */
#ifndef PC_RU_GEN_H
#define PC_RU_GEN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core.h"

/* The 12 top-level fields, in the API's order; a request's field mask has bit i for ru_fields[i].
 */
#define RU_NFIELDS 12
extern const char *const ru_fields[RU_NFIELDS];
#define RU_ALL_FIELDS ((1u << RU_NFIELDS) - 1u)

#define RU_NNATS 21
extern const char *const ru_nats[RU_NNATS];

typedef enum ru_malform { RU_OK = 0, RU_NO_UUID, RU_EMAIL_NOT_STRING } ru_malform;

typedef struct ru_req {
    const char *seed; /* never NULL: the request's or a random one */
    long page;
    unsigned fields;   /* mask over ru_fields */
    uint32_t nat_mask; /* mask over ru_nats; 0 = any */
    int gender;        /* 0 any, 1 male, 2 female (ignored with a seed from the client) */
    time_t now;        /* for dob.age and registered.age */
    /* password=CHARSETS,LENGTH (ru_parse_password): the characters to draw from, "" for the
     * default word; the length's bounds, 1 <= pw_min <= pw_max <= 64 */
    char pw_charset[100];
    int pw_min, pw_max;
} ru_req;

/* Reads the API's password parameter ("upper,lower,8-16", "special,32") into r as the API
 * does: the sets named among special, upper, lower and number (each once, in the order named),
 * the length from the last item, "N" or "A-B" (the smaller first); a minimum outside 1..64
 * becomes 8, a maximum outside 1..64 or below the minimum 64. No set named: the default word. */
void ru_parse_password(const char *param, ru_req *r);

/* Index of a field name or nationality code (case-insensitive), -1 when unknown. */
int ru_field_index(const char *name, size_t len);
int ru_nat_index(const char *code, size_t len);

/* Appends user number idx (0-based within the page) as compact JSON. */
int ru_gen_user(pc_buf *b, const ru_req *r, long idx, ru_malform malform);

/* Appends s as a JSON string literal. */
int ru_json_str(pc_buf *b, const char *s);

#endif
