#!/usr/bin/env bash
# test_converge.sh: apply from empty against real Kafka + PostgreSQL, then idempotence, drift
# repair, partition growth, refused shrink, and the git snapshots that record each state.
# pc-test: serial   (ALTER SYSTEM and a reload change the shared cluster for every test)
source "$PC_SRC/tests/integration/lib.sh"

TP="conv$$"
export TP
DB="conv_$$"
export PG_DSN=$(new_db "$DB")
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"
export PG_PASSWORD="s3cr3t-$$-pw"   # trust auth ignores it; it must never be printed or committed
# ALTER SYSTEM is cluster-wide: start from and leave the shared test cluster's defaults
psql_q "ALTER SYSTEM RESET ALL" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null
defer 'psql_q "ALTER SYSTEM RESET ALL" >/dev/null; psql_q "SELECT pg_reload_conf()" >/dev/null'

W="$TEST_TMP"
M="$W/pipeline.yaml"
write_manifest() { # $1 = partitions of the users topic
    cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: conv}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - name: \${TP}.users
      partitions: $1
      replication_factor: 1
      config: {retention.ms: 7d, cleanup.policy: delete}
    - name: \${TP}.dlq
      partitions: 1
postgres:
  dsn: "\${PG_DSN} password=\${PG_PASSWORD}"
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: id, type: uuid, primary_key: true}
            - {name: email, type: text, nullable: false}
            - {name: registered_at, type: timestamptz}
  archiving: {enabled: true, repository: ./repo, archive_timeout: 60s}
git: {repo: ./state, branch: main}
YAML
}
write_manifest 3
LOG="$W/all-output.log"
run() { # runs pipectl, captures stdout+stderr to $OUT/$ERR and the shared log, sets $RC
    set +e
    pipectl -f "$M" "$@" >"$W/out" 2>"$W/err"
    RC=$?
    set -e
    OUT=$(cat "$W/out")
    ERR=$(cat "$W/err")
    cat "$W/out" "$W/err" >>"$LOG"
}

# --- validate, plan from empty -------------------------------------------------------------
run validate
assert_eq 0 "$RC" "validate exit"
run plan --detailed-exitcode -o json
assert_eq 2 "$RC" "plan from empty: --detailed-exitcode says changes present"
assert_eq 1 "$(jq -r '.format_version' <<<"$OUT")" "plan JSON format_version"
assert_eq 2 "$(jq '[.actions[] | select(.kind=="topic_create")] | length' <<<"$OUT")" "two topics to create"
assert_eq 1 "$(jq '[.actions[] | select(.kind=="table_create" and .object=="raw.users")] | length' <<<"$OUT")" "one table to create"
assert_eq true "$(jq '[.actions[] | select(.kind=="setting" and .setting=="archive_mode")][0].restart_required' <<<"$OUT")" "archive_mode needs a restart"
assert_eq 0 "$(psql_q "SELECT count(*) FROM pg_namespace WHERE nspname='raw'" "$PG_DSN")" "plan changed nothing"

# --- apply from empty ------------------------------------------------------------------------
run apply
assert_eq 0 "$RC" "apply from empty: $ERR"
assert_eq 3 "$(topic_partitions "$TP.users")" "users topic partitions"
assert_eq 1 "$(topic_partitions "$TP.dlq")" "dlq topic partitions"
assert_eq 604800000 "$(topic_config "$TP.users" retention.ms)" "retention.ms from '7d'"
assert_eq delete "$(topic_config "$TP.users" cleanup.policy)" "cleanup.policy"
assert_eq "id|uuid|NO
email|text|NO
registered_at|timestamp with time zone|YES" \
    "$(psql_q "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema='raw' AND table_name='users' ORDER BY ordinal_position" "$PG_DSN")" \
    "raw.users columns"
assert_eq "id" "$(psql_q "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid=i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid='raw.users'::regclass AND i.indisprimary" "$PG_DSN")" "primary key"
assert_eq 60 "$(psql_q "SELECT setting FROM pg_settings WHERE name='archive_timeout'")" "archive_timeout reloaded"
assert_eq "on" "$(psql_q "SELECT setting FROM pg_file_settings WHERE name='archive_mode' ORDER BY seqno DESC LIMIT 1")" "archive_mode written by ALTER SYSTEM"
assert_eq t "$(psql_q "SELECT pending_restart FROM pg_settings WHERE name='archive_mode'")" "archive_mode pending restart"
assert_contains "$OUT" "Restart required" "apply says a restart is required"
assert_eq 1 "$(git -C "$W/state" rev-list --count main)" "one snapshot commit"
git -C "$W/state" show main:conv/manifest.yaml >"$W/snap.yaml"
git -C "$W/state" show main:conv/observed.json | jq -e ".topics[] | select(.name==\"$TP.users\") | .partitions == 3" >/dev/null \
    || fail "observed.json in the snapshot does not record 3 partitions for $TP.users"
assert_contains "$(cat "$W/snap.yaml")" 'password=${PG_PASSWORD}' "snapshot keeps the \${VAR} reference"
assert_eq conv "$(psql_q "SELECT string_agg(DISTINCT pipeline, ',') FROM pipectl.inventory" "$PG_DSN")" "ownership recorded"

# --- idempotence -------------------------------------------------------------------------------
run plan --detailed-exitcode
assert_eq 0 "$RC" "plan after apply: no changes ($OUT)"
assert_contains "$OUT" "No changes" "plan says no changes"
run apply
assert_eq 0 "$RC" "second apply"
assert_eq 1 "$(git -C "$W/state" rev-list --count main)" "second apply made no new commit"
assert_eq "" "$(git -C "$W/state" status --porcelain)" "state repo work tree clean"

# --- drift behind pipectl's back: exactly that drift is planned, apply repairs it --------------
kafka_configs --alter --entity-type topics --entity-name "$TP.users" --add-config retention.ms=1000 >/dev/null
psql_q "ALTER TABLE raw.users ALTER COLUMN email DROP NOT NULL" "$PG_DSN" >/dev/null
assert_eq 1000 "$(topic_config "$TP.users" retention.ms)" "drift injected"
run plan --detailed-exitcode -o json
assert_eq 2 "$RC" "plan sees drift"
assert_eq 2 "$(jq '[.actions[] | select(.op != "note")] | length' <<<"$OUT")" "exactly two drifted objects ($OUT)"
assert_eq '"1000" -> "604800000"' "$(jq -r ".actions[] | select(.kind==\"topic_config\") | .changes[] | select(.key==\"retention.ms\") | \"\\\"\(.from)\\\" -> \\\"\(.to)\\\"\"" <<<"$OUT")" "retention.ms drift from/to"
assert_eq "raw.users.email" "$(jq -r '.actions[] | select(.kind=="column_nullable") | .object' <<<"$OUT")" "email nullability drift"
run plan
assert_contains "$OUT" "retention.ms" "text plan names the config key"
run apply
assert_eq 0 "$RC" "apply repairs drift: $ERR"
assert_eq 604800000 "$(topic_config "$TP.users" retention.ms)" "retention.ms repaired"
assert_eq delete "$(topic_config "$TP.users" cleanup.policy)" "cleanup.policy kept"
assert_eq NO "$(psql_q "SELECT is_nullable FROM information_schema.columns WHERE table_schema='raw' AND table_name='users' AND column_name='email'" "$PG_DSN")" "email NOT NULL repaired"
run plan --detailed-exitcode
assert_eq 0 "$RC" "no changes after repair"
assert_eq 1 "$(git -C "$W/state" rev-list --count main)" "repaired state equals the snapshot: no new commit"

# --- grow partitions; shrinking is refused ------------------------------------------------------
write_manifest 5
run apply
assert_eq 0 "$RC" "apply grows partitions: $ERR"
assert_eq 5 "$(topic_partitions "$TP.users")" "partitions grown to 5"
assert_eq 2 "$(git -C "$W/state" rev-list --count main)" "changed manifest -> second snapshot commit"
assert_contains "$(git -C "$W/state" show main:conv/manifest.yaml)" "partitions: 5" "snapshot holds the new manifest"
write_manifest 2
run plan --detailed-exitcode
assert_eq 2 "$RC" "shrink is drift that stays visible"
assert_contains "$OUT" "! kafka topic $TP.users" "shrink refused in the plan"
assert_contains "$OUT" "partitions" "refusal explains partitions"
run apply
assert_eq 0 "$RC" "apply with a refused shrink"
assert_eq 5 "$(topic_partitions "$TP.users")" "partitions not reduced"

# --- no secret anywhere -------------------------------------------------------------------------
assert_not_contains "$(cat "$LOG")" "$PG_PASSWORD" "no command printed the password"
if git -C "$W/state" log -p --all | grep -q -- "$PG_PASSWORD"; then fail "password committed to git"; fi
