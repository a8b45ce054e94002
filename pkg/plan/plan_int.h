/* plan_int.h: helpers shared by the files of pkg/plan (not part of the public contract). */
#ifndef PC_PLAN_INT_H
#define PC_PLAN_INT_H

#include "plan.h"

#include <jansson.h>

/* JSON building (render.c): put/push remember a failure in *ok. */
void plan_json_put(json_t *obj, const char *key, json_t *v, bool *ok);
void plan_json_push(json_t *arr, json_t *v, bool *ok);

/* true when ALTER COLUMN ... TYPE from -> to (both pc_norm_pg_type forms) cannot lose data. */
bool pc_plan_type_change_safe(const char *from, const char *to);

/* Frees an action's members (not the action itself). */
void pc_plan_action_clear(pc_action *a);

/* Wire names of ops and kinds in the JSON rendering. */
const char *pc_plan_op_name(const pc_action *a);
const char *pc_plan_kind_name(pc_action_kind k);

/* The observed state as a JSON tree; managed_only restricts it to what m manages (m required). */
json_t *pc_observed_json(const pc_manifest *m, const pc_observed *o, bool managed_only);

#endif
