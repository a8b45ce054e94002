/* plan_io.h: reading and writing plan files (the bytes are pkg/plan's JSON). */
#ifndef PC_PLAN_IO_H
#define PC_PLAN_IO_H

#include <stdio.h>

#include "apply.h"
#include "plan.h"

/* Writes durably and atomically (pc_durable_write: temporary file, fsync, rename, directory
 * fsync). */
int plan_io_save(const pc_plan *p, const char *path, pc_error *err);
int plan_io_load(pc_plan **out, const char *path, pc_error *err);

int cli_compute_plan(const pc_manifest *m, bool allow_delete, pc_session *s, pc_observed *o,
                     pc_plan **out, pc_error *err);
int cli_print_plan(const pc_plan *p, FILE *f);

#endif
