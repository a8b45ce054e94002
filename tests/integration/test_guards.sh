#!/usr/bin/env bash
# test_guards.sh: what pipectl must refuse: deleting topics it does not own or without
# --allow-delete, stale saved plans, concurrent applies, unreachable servers, bad manifests.
source "$PC_SRC/tests/integration/lib.sh"

TP="grd$$"
export TP
export PG_DSN=$(new_db "guards_$$")
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"
W="$TEST_TMP"
M="$W/pipeline.yaml"
write_manifest() { # $@ = extra topic names
    {
        cat <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: guards}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: "\${TP}.keep", partitions: 2, config: {retention.ms: "3600000"}}
YAML
        for t in "$@"; do echo "    - {name: \"\${TP}.$t\", partitions: 1}"; done
        cat <<YAML
postgres:
  dsn: \${PG_DSN}
  schemas:
    - name: app
      tables:
        - name: events
          columns:
            - {name: id, type: bigint, primary_key: true}
YAML
    }>"$M"
}
run() {
    set +e
    timeout 60 "$PIPECTL" -f "$M" "$@" >"$W/out" 2>"$W/err"
    RC=$?
    set -e
    OUT=$(cat "$W/out")
    ERR=$(cat "$W/err")
}

write_manifest old
run apply
assert_eq 0 "$RC" "initial apply: $ERR"
kafka_topics --create --topic "$TP.foreign" --partitions 1 --replication-factor 1 >/dev/null

# --- deletes: only owned topics, only with --allow-delete ---------------------------------------
write_manifest
run plan --detailed-exitcode
assert_eq 2 "$RC" "undeclared owned topic shows as drift"
assert_contains "$OUT" "$TP.old" "plan names the undeclared owned topic"
assert_contains "$OUT" "allow-delete" "plan says the delete needs --allow-delete"
assert_not_contains "$OUT" "$TP.foreign" "a topic pipectl did not create is never planned"
run apply
assert_eq 0 "$RC" "apply without --allow-delete"
assert_eq 1 "$(topic_partitions "$TP.old")" "owned topic kept without --allow-delete"
run apply --allow-delete
assert_eq 0 "$RC" "apply --allow-delete: $ERR"
topic_absent "$TP.old" || fail "owned topic deleted with --allow-delete"
topic_exists "$TP.foreign" || fail "foreign topic untouched"
assert_eq 0 "$(psql_q "SELECT count(*) FROM pipectl.inventory WHERE name='$TP.old'" "$PG_DSN")" "inventory forgot the deleted topic"
run plan --detailed-exitcode --allow-delete
assert_eq 0 "$RC" "converged"

# --- saved plans: applied exactly, refused when stale -------------------------------------------
write_manifest extra
run plan -out "$W/p.plan"
assert_eq 0 "$RC" "plan -out"
[[ -s "$W/p.plan" ]] || fail "plan file not written"
kafka_configs --alter --entity-type topics --entity-name "$TP.keep" --add-config retention.ms=5000 >/dev/null
run apply "$W/p.plan"
assert_eq 1 "$RC" "stale plan refused"
assert_contains "$ERR" "stale" "error says the plan is stale"
topic_absent "$TP.extra" || fail "stale plan applied nothing"
assert_eq 5000 "$(topic_config "$TP.keep" retention.ms)" "stale plan did not repair anything"
run plan -out "$W/p.plan"
run apply "$W/p.plan"
assert_eq 0 "$RC" "fresh saved plan applies: $ERR"
assert_eq 1 "$(topic_partitions "$TP.extra")" "saved plan created the topic"
assert_eq 3600000 "$(topic_config "$TP.keep" retention.ms)" "saved plan repaired the config"

# --- two applies never race ------------------------------------------------------------------------
write_manifest extra more
LOCKSQL="SELECT pg_advisory_lock(hashtext('pipectl:guards')); SELECT pg_sleep(60);"
psql "$PG_DSN" -XAtq -c "$LOCKSQL" >/dev/null 2>&1 &
LOCKPID=$!
for _ in $(seq 50); do
    [[ "$(psql_q "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND granted" "$PG_DSN")" -ge 1 ]] && break
    sleep 0.1
done
run apply
assert_eq 1 "$RC" "apply while another holds the lock"
assert_contains "$ERR" "another pipectl apply" "lock error explains"
topic_absent "$TP.more" || fail "locked apply changed nothing"
# the same refusal for machines: one JSON document on stdout, same shape as a partial apply's,
# and the message once on stderr
run apply -o json
assert_eq 1 "$RC" "apply -o json while another holds the lock"
assert_eq "conflict|0|not_reached" "$(jq -r '[.error.code, .applied, .actions[0].status] | join("|")' <<<"$OUT")" \
    "apply -o json failure document (error code, applied count, action status)"
assert_contains "$(jq -r '.error.message' <<<"$OUT")" "another pipectl apply" "JSON error message"
assert_eq 1 "$(grep -c "another pipectl apply" <<<"$ERR")" "the error is printed once on stderr"
kill "$LOCKPID" 2>/dev/null || true
psql_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$LOCKPID" 2>/dev/null || true

# --- unreachable systems: bounded, named, nothing changed ----------------------------------------
cat >>"$M" <<YAML
        - name: audit
          columns:
            - {name: id, type: bigint}
YAML
start=$(date +%s)
KAFKA_BOOTSTRAP=127.0.0.1:1 run apply --timeout 5
elapsed=$(( $(date +%s) - start ))
assert_eq 1 "$RC" "unreachable broker fails"
assert_contains "$ERR" "127.0.0.1:1" "error names the broker"
[[ $elapsed -le 30 ]] || fail "unreachable broker took ${elapsed}s (bound 30s)"
assert_eq "" "$(psql_q "SELECT to_regclass('app.audit')" "$PG_DSN")" "nothing applied to Postgres when Kafka is down"
start=$(date +%s)
PG_DSN="host=127.0.0.1 port=1 dbname=nope user=nobody password=hunter2" run apply --timeout 5
elapsed=$(( $(date +%s) - start ))
assert_eq 1 "$RC" "unreachable database fails"
assert_contains "$ERR" "PostgreSQL" "error names PostgreSQL"
assert_contains "$ERR" "127.0.0.1" "error names the server"
assert_not_contains "$ERR$OUT" "hunter2" "password not printed"
[[ $elapsed -le 30 ]] || fail "unreachable database took ${elapsed}s (bound 30s)"
topic_absent "$TP.more" || fail "nothing applied to Kafka when Postgres is down"

# --- invalid manifest: file:line:col, nothing changed ---------------------------------------------
printf 'apiVersion: pipectl/v1\nkind: Pipeline\nmetadata: {name: guards}\nkafka:\n  bootstrap: x:1\n  topics:\n    - {name: t, partitons: 3}\n' >"$W/bad.yaml"
set +e
"$PIPECTL" -f "$W/bad.yaml" apply >"$W/out" 2>"$W/err"
RC=$?
set -e
assert_eq 1 "$RC" "invalid manifest"
assert_contains "$(cat "$W/err")" "bad.yaml:7:" "error has file:line"
assert_contains "$(cat "$W/err")" "partitions" "error suggests the known key"
