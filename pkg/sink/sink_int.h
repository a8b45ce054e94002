/* sink_int.h: the sink's pure parts (JSON path lookup, typed conversion of one JSON value to the
 * PostgreSQL text form of a column type, COPY text-format escaping), exposed for unit tests.
 * Nothing here talks to a server. */
#ifndef PC_SINK_INT_H
#define PC_SINK_INT_H

#include <jansson.h>
#include <stdbool.h>

#include "core.h"

typedef enum pc_sink_type {
    PC_SINK_T_TEXT = 0, /* text, varchar(n), char(n), character varying(n): typmod1 = n or 0 */
    PC_SINK_T_INT2,
    PC_SINK_T_INT4,
    PC_SINK_T_INT8,
    PC_SINK_T_NUMERIC, /* typmod1 = precision (0 = unconstrained), typmod2 = scale */
    PC_SINK_T_FLOAT4,
    PC_SINK_T_FLOAT8,
    PC_SINK_T_BOOL,
    PC_SINK_T_UUID,
    PC_SINK_T_TIMESTAMPTZ,
    PC_SINK_T_TIMESTAMP,
    PC_SINK_T_DATE,
    PC_SINK_T_JSON, /* json and jsonb */
    PC_SINK_T_OTHER /* any other PostgreSQL type: scalars passed as text, PostgreSQL checks them */
} pc_sink_type;

typedef struct pc_sink_col {
    const char *name; /* borrowed from the manifest */
    const char *path; /* dotted JSON path; numeric segments index arrays */
    const char *type_name;
    pc_sink_type type;
    int typmod1;
    int typmod2;
    bool nullable;
    bool primary_key;
} pc_sink_col;

/* Parses a manifest column type ("numeric(10,2)", "varchar(40)", "timestamp with time zone"). */
pc_sink_type pc_sink_type_parse(const char *type, int *typmod1, int *typmod2);

/* The value at a dotted path ("location.street.name", "results.0.email"); NULL when missing. */
const json_t *pc_sink_json_get(const json_t *root, const char *path);

/* Converts the value found at col->path in root into out (cleared first) as PostgreSQL's text
 * input form of col's type. *is_null is set for JSON null / missing. Returns 0, or PC_EINVAL
 * with *reason (owned by the caller) naming the column, path, a value sample and the type. A
 * NULL for a NOT NULL column is an error too. */
int pc_sink_convert(const json_t *root, const pc_sink_col *col, pc_buf *out, bool *is_null,
                    char **reason);

/* Appends s[0..n) to line escaped for COPY ... FROM STDIN text format. */
int pc_sink_copy_escape(pc_buf *line, const char *s, size_t n);

#endif
