/* plan_int.h: helpers shared by the files of pkg/plan (not part of the public contract). */
#ifndef PC_PLAN_INT_H
#define PC_PLAN_INT_H
#if !defined(PC_INSIDE_PLAN) && !defined(PC_WHITEBOX_TEST)
#error "plan_int.h is private to pkg/plan: include plan.h"
#endif

#include "plan.h"

#include <jansson.h>

/* JSON building (render.c): put/push remember a failure in *ok. */
void plan_json_put(json_t *obj, const char *key, json_t *v, bool *ok);
void plan_json_push(json_t *arr, json_t *v, bool *ok);

/* true when ALTER COLUMN ... TYPE from -> to (both pc_norm_pg_type forms) cannot lose data. */
bool pc_plan_type_change_safe(const char *from, const char *to);

/* A growable list of actions (plan.c). */
typedef struct plan_alist {
    pc_action *items;
    size_t n;
    size_t cap;
} plan_alist;

/* Appends a zeroed action with op, kind, system and object set; NULL on OOM. The pointer is
 * valid until the next push. */
pc_action *plan_alist_push(plan_alist *l, pc_op op, pc_action_kind kind, const char *system,
                           const char *object);
void plan_alist_free(plan_alist *l);
/* Moves every action of src to the end of dst (src is left empty). */
int plan_alist_move(plan_alist *dst, plan_alist *src);
/* Replace *dst with a copy of s (NULL allowed); PC_ENOMEM on failure. */
int plan_set_str(char **dst, const char *s);
int plan_add_change(pc_action *a, const char *key, const char *from, const char *to);
/* plan_add_change with integer values shown in decimal. */
int plan_add_change_int(pc_action *a, const char *key, int from, int to);
/* Moves the changes collected in tmp (a scratch action) to a; tmp keeps none. */
void plan_take_changes(pc_action *a, pc_action *tmp);
/* Takes ownership of reason (NULL = OOM). */
int plan_set_reason(pc_action *a, char *reason);

/* The first of n elements (each size bytes, from base) whose name, the char * at name_off
 * (offsetof), equals name (pc_streq); NULL when none. A linear search: for one look-up in a short
 * list (a table's columns, a topic's configs); a list searched once per declared object that can
 * hold thousands wants a pc_index. */
const void *plan_find_named(const void *base, size_t n, size_t size, size_t name_off,
                            const char *name);
/* strcmp with NULL ordered as "" (for qsort by name). */
int plan_name_cmp(const char *a, const char *b);

/* NocoDB's role and NocoDB itself (plan_nocodb.c). main and destroy hold the Kafka and Postgres
 * actions planned so far (a table created or altered in an exposed schema needs a meta sync).
 * Appends role and grant actions, then base and source actions to main; meta syncs to syncs;
 * source deletes (or their refusals) to deletes. */
int plan_nocodb(const pc_manifest *m, const pc_observed *o, const pc_plan_opts *opts,
                plan_alist *main, const plan_alist *destroy, plan_alist *syncs,
                plan_alist *deletes);

/* Kafka ACLs (plan_acl.c): appends ACL creates (and notes about ACLs of managed principals that
 * pipectl does not own) to main, and deletes of owned bindings no longer wanted (or their
 * refusals without --allow-delete) to deletes. Only call with o->acls_observed. */
int plan_acls(const pc_manifest *m, const pc_observed *o, const pc_plan_opts *opts,
              plan_alist *main, plan_alist *deletes, pc_error *err);

/* Frees an action's members (not the action itself). */
void pc_plan_action_clear(pc_action *a);

/* Wire names of ops and kinds in the JSON rendering. */
const char *pc_plan_op_name(const pc_action *a);
const char *pc_plan_kind_name(pc_action_kind k);

/* The observed state as a JSON tree; managed_only restricts it to what m manages (m required). */
json_t *pc_observed_json(const pc_manifest *m, const pc_observed *o, bool managed_only);

#endif
