#!/usr/bin/env bash
# test_pipeline_name_dns.sh: a pipeline named as Kubernetes and GitOps users name things
# (metadata.name: users-eu-<id>, a DNS-1123 label) end to end against the stack: validate, the
# apply lock keyed on that name (held by another session -> apply refused, naming it), apply, a
# bounded run (pc-randomuser -> ingest -> Kafka -> sink -> PostgreSQL), status, snapshot into a
# git repository, and a plan with no changes. Asserts on what landed: the rows, the inventory rows
# carrying the name, the sink's consumer group pipectl-<name>-<sink> (in the sink's log and in
# Kafka) with its offsets committed in pipectl.sink_offsets, the snapshot folder <name>/ in git.
# A second pipeline named users_eu_<id> in the same database keeps its own inventory rows.
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

RU="$(dirname "$PIPECTL")/pc-randomuser"
[[ -x "$RU" ]] || fail "pc-randomuser not built next to pipectl ($RU): cmake --build the tree"

export PG_DSN KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" TOPIC DLQ RU_URL STATE NAME
NAME="users-eu-$TEST_ID"
PG_DSN=$(new_db "hyph_$TEST_ID")
TOPIC=$(uniq_name hyph_users)
DLQ=$(uniq_name hyph_dlq)
STATE=$(new_git_repo state)
M="$TEST_TMP/pipeline.yaml"
GROUP="pipectl-$NAME-to_pg"

"$RU" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
RU_PID=$!
defer "kill -TERM $RU_PID 2>/dev/null; wait $RU_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"
RU_URL="http://127.0.0.1:$(cat "$TEST_TMP/ru.port")/api/"

cat >"$M" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: "${NAME}"}
kafka:
  bootstrap: ${KAFKA_BOOTSTRAP}
  topics:
    - {name: "${TOPIC}", partitions: 2}
    - {name: "${DLQ}", partitions: 1}
postgres:
  dsn: ${PG_DSN}
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: id, type: uuid, primary_key: true}
            - {name: email, type: text}
sources:
  - {name: ru_in, type: randomuser, url: "${RU_URL}", topic: "${TOPIC}", batch: 100, interval: 10ms}
sinks:
  - name: to_pg
    topic: "${TOPIC}"
    table: raw.users
    mode: upsert
    mapping: {id: login.uuid, email: email}
    batch: {max_records: 100, max_wait: 100ms}
    dead_letter: "${DLQ}"
git: {repo: "${STATE}"}
YAML

note "validate and plan accept the hyphenated name"
expect_rc 0 pipectl -f "$M" validate
expect_rc 2 pipectl -f "$M" plan --detailed-exitcode
expect_rc 0 pipectl -f "$M" -o json plan
assert_eq "$NAME" "$(jq -r .pipeline <<<"$OUT")" "plan JSON names the pipeline"

note "the apply lock is keyed on the name: held elsewhere -> apply refused, nothing changed"
LOCK_SQL="SELECT pg_advisory_lock(hashtext('pipectl:' || '$NAME')); SELECT pg_sleep(60)"
psql -XAtq "$PG_DSN" -c "$LOCK_SQL" >/dev/null 2>&1 &
LOCK_PID=$!
defer "kill -TERM $LOCK_PID 2>/dev/null"
held() { # the advisory lock on this test's database is taken
    [[ "$(psql_q "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()" "$PG_DSN")" -ge 1 ]]
}
for _ in $(seq 100); do held && break; sleep 0.1; done
held || fail "the lock-holding session did not get the advisory lock"
expect_rc 1 pipectl -f "$M" apply
assert_contains "$ERR" "another pipectl apply for pipeline '$NAME' holds the lock" "apply names the locked pipeline"
kill -TERM "$LOCK_PID" 2>/dev/null || true
wait "$LOCK_PID" 2>/dev/null || true
psql_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep%'" "$PG_DSN" >/dev/null
for _ in $(seq 100); do held || break; sleep 0.1; done
[[ -z "$(psql_q "SELECT to_regclass('raw.users')" "$PG_DSN")" ]] || fail "a refused apply created raw.users"

note "apply"
expect_rc 0 pipectl -f "$M" apply
assert_contains "$OUT" "Snapshot committed to $STATE ($NAME)" "apply snapshots under the name"
got=$(psql_q "SELECT kind || ' ' || name FROM pipectl.inventory WHERE pipeline = '$NAME' ORDER BY 1" "$PG_DSN")
assert_eq "table raw.users"$'\n'"topic $DLQ"$'\n'"topic $TOPIC" "$got" "inventory rows of pipeline $NAME"

note "a second pipeline, users_eu_$TEST_ID, in the same database keeps its own inventory"
M2="$TEST_TMP/other.yaml"
sed -e "s/name: \"\${NAME}\"/name: users_eu_$TEST_ID/" -e '/^git:/d' -e '/^sources:/,$d' \
    -e "s/\${TOPIC}/${TOPIC}_b/" -e "s/\${DLQ}/${DLQ}_b/" -e 's/name: raw$/name: raw_b/' "$M" >"$M2"
expect_rc 0 pipectl -f "$M2" apply --no-snapshot
assert_eq 3 "$(psql_q "SELECT count(*) FROM pipectl.inventory WHERE pipeline = 'users_eu_$TEST_ID'" "$PG_DSN")" \
    "inventory rows of the second pipeline"
assert_eq 3 "$(psql_q "SELECT count(*) FROM pipectl.inventory WHERE pipeline = '$NAME'" "$PG_DSN")" \
    "inventory rows of $NAME untouched by the second pipeline"
expect_rc 0 pipectl -f "$M" plan --detailed-exitcode
assert_not_contains "$OUT" "raw_b" "the first pipeline's plan ignores the second's objects"

note "run: 300 users through Kafka into raw.users, consumer group $GROUP"
expect_rc 0 pipectl -f "$M" -o json run --max-records 300
assert_eq 300 "$(jq '.workers[] | select(.name == "to_pg") | .records_out' <<<"$OUT")" "sink committed 300"
assert_contains "$ERR" "group $GROUP" "the sink joins group pipectl-<pipeline>-<sink>"
rows=$(psql_q "SELECT count(*) FROM raw.users" "$PG_DSN")
[[ "$rows" -ge 1 && "$rows" -le 300 ]] || fail "raw.users holds $rows rows after 300 records (upsert)"
committed=$(psql_q "SELECT coalesce(sum(next_offset), 0) FROM pipectl.sink_offsets WHERE sink = 'to_pg' AND topic = '$TOPIC'" "$PG_DSN")
assert_eq 300 "$committed" "offsets committed in pipectl.sink_offsets for the 300 records"
groups=$(kafka_java org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --list 2>/dev/null) || fail "listing consumer groups failed"
assert_contains "$groups" "$GROUP" "Kafka knows the sink's consumer group"

note "status"
expect_rc 0 pipectl -f "$M" status
assert_contains "$OUT" "pipeline $NAME: healthy" "status names the pipeline"
assert_contains "$OUT" "lag total 0" "status: sink caught up"
expect_rc 0 pipectl -f "$M" -o json status
assert_eq "$NAME true" "$(jq -r '"\(.pipeline) \(.healthy)"' <<<"$OUT")" "status -o json"

note "snapshot into git: folder $NAME/"
expect_rc 0 pipectl -f "$M" snapshot -m "hyphenated name"
assert_eq "$NAME/manifest.yaml"$'\n'"$NAME/observed.json" "$(git -C "$STATE" ls-tree -r --name-only HEAD)" \
    "snapshot files under the pipeline's folder"
assert_contains "$(git -C "$STATE" show "HEAD:$NAME/manifest.yaml")" 'metadata: {name: "${NAME}"}' \
    "the manifest as written"
jq -e . >/dev/null <<<"$(git -C "$STATE" show "HEAD:$NAME/observed.json")" || fail "observed.json is not JSON"

note "plan: no changes"
expect_rc 0 pipectl -f "$M" plan --detailed-exitcode
assert_contains "$OUT" "No changes" "plan after run and snapshot"

note "names that are neither a DNS-1123 label nor a SQL-style name are refused by validate"
for bad in "Users-EU" "-users" "users-" "users_eu-west"; do
    sed "s/name: \"\${NAME}\"/name: \"$bad\"/" "$M" >"$TEST_TMP/bad.yaml"
    expect_rc 1 pipectl -f "$TEST_TMP/bad.yaml" validate
    assert_contains "$OUT$ERR" "bad.yaml:3:18: metadata.name '$bad' is not a valid pipeline name" "validate $bad"
done
