#!/usr/bin/env bash
# test_run_caught_up.sh: `pipectl run SINK --until-caught-up` drains the backlog and exits, against
# the real stack. Records come from pc-sink-driver --produce (deterministic users, distinct ids,
# and malformed ones that go to the dead-letter topic); the table has no primary key (insert
# mode), so a record loaded twice shows as count(*) > count(DISTINCT id).
#   empty topic: exit 0 at once, nothing committed (no offsets row);
#   N good + K bad records: exit 0 on its own, N rows, offsets == high watermarks (N + K: dead
#     letters count as consumed), -o json caught_up true;
#   M more: M new rows, nothing twice; caught up already: exit 0 at once, nothing new;
#   --max-records first: exit 0, caught_up false; two instances of the sink in one group: both
#     stop, the group's offsets reach the watermarks, nothing twice;
#   --duration 1s while the table is locked: exit 1 saying how far it got (committed/target),
#     rows == offsets; the next run finishes the backlog.
#   CLI: --help documents it; no sink named, a source named: usage errors (exit 1).
source "$PC_SRC/tests/integration/lib.sh"

DRIVER="$(dirname "${PIPECTL:?PIPECTL is not set}")/pc-sink-driver"
[[ -x "$DRIVER" ]] || fail "pc-sink-driver not built next to pipectl ($DRIVER)"
command -v jq >/dev/null || fail "jq is needed to read -o json output"

export PG_DSN KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" TOPIC DLQ
PG_DSN=$(new_db "cu_$TEST_ID")
TOPIC=$(uniq_name cu_users)
DLQ=$(uniq_name cu_dlq)
M="$TEST_TMP/pipeline.yaml"
cat >"$M" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: caughtup}
kafka:
  bootstrap: ${KAFKA_BOOTSTRAP}
  topics:
    - {name: "${TOPIC}", partitions: 3, replication_factor: 1}
    - {name: "${DLQ}", partitions: 1, replication_factor: 1}
postgres:
  dsn: ${PG_DSN}
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: id, type: uuid, nullable: false}
            - {name: email, type: text, nullable: false}
            - {name: first_name, type: text}
            - {name: born_at, type: timestamptz}
sources:
  - {name: ru_in, type: randomuser, url: "http://127.0.0.1:9/api/", topic: "${TOPIC}"}
sinks:
  - name: users_to_pg
    topic: "${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {id: login.uuid, email: email, first_name: name.first, born_at: dob.date}
    batch: {max_records: 500, max_wait: 100ms}
    dead_letter: "${DLQ}"
YAML

rows() { psql_q "SELECT count(*) FROM raw.users" "$PG_DSN"; }
distinct_ids() { psql_q "SELECT count(DISTINCT id) FROM raw.users" "$PG_DSN"; }
committed() { psql_q "SELECT coalesce(sum(next_offset), 0) FROM pipectl.sink_offsets WHERE sink = 'users_to_pg'" "$PG_DSN"; }
offset_rows() { psql_q "SELECT count(*) FROM pipectl.sink_offsets WHERE sink = 'users_to_pg'" "$PG_DSN"; }
# the topic's high watermarks, summed (pipectl status reads them with librdkafka)
watermarks() {
    "$PIPECTL" -f "$M" -o json status 2>/dev/null |
        jq '[.sinks[] | select(.name == "users_to_pg") | .partitions[].high_watermark] | add'
}
produce() { # N SEED START [BAD]
    timeout 120 "$DRIVER" -f "$M" users_to_pg --produce "$1" --seed "$2" --start "$3" \
        --bad "${4:-0}" >>"$TEST_TMP/produce.log" 2>&1 ||
        fail "producing: $(tail -5 "$TEST_TMP/produce.log")"
}
sink_json() { printf '%s' "$OUT" | jq -c '.workers[] | select(.name == "users_to_pg")'; }

# --- CLI contract -----------------------------------------------------------------------------
note "run --help documents --until-caught-up; it needs sinks named"
expect_rc 0 pipectl -f "$M" run --help
assert_contains "$OUT" "--until-caught-up" "help documents --until-caught-up"
assert_contains "$OUT" "high watermark" "help says what caught up means"
expect_rc 1 pipectl -f "$M" run --until-caught-up
assert_contains "$ERR" "name the sink" "no sink named: the error says to name one"
expect_rc 1 pipectl -f "$M" run ru_in --until-caught-up
assert_contains "$ERR" "'ru_in' is a source" "a source named: the error says it is a source"
expect_rc 1 pipectl -f "$M" run users_to_pg ru_in --until-caught-up
assert_contains "$ERR" "only for sinks" "a source among sinks: refused too"

expect_rc 0 pipectl -f "$M" apply --no-snapshot

# --- an empty topic: caught up at start -------------------------------------------------------
note "empty topic: exit 0 at once, nothing committed"
t0=$(date +%s%N)
expect_rc 0 pipectl -f "$M" -o json run users_to_pg --until-caught-up
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "true" "$(sink_json | jq '.caught_up')" "empty topic: caught_up"
assert_eq 0 "$(sink_json | jq '.records_out')" "empty topic: records_out"
assert_contains "$ERR" "already caught up" "empty topic: the log says so"
assert_eq 0 "$(rows)" "empty topic: rows"
assert_eq 0 "$(offset_rows)" "empty topic: no offsets row written"
note "empty topic: exited in $ms ms"

# --- a backlog of N good + K bad records ------------------------------------------------------
N=3000 K=8
note "backlog of $N users + $K malformed: drained, then exit 0 on its own"
produce "$N" 1 0 "$K"
assert_eq $((N + K)) "$(watermarks)" "records in the topic"
t0=$(date +%s%N)
expect_rc 0 pipectl -f "$M" -o json run users_to_pg --until-caught-up
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "true" "$(sink_json | jq '.caught_up')" "backlog: caught_up"
assert_eq "stopped" "$(sink_json | jq -r '.status')" "backlog: status"
assert_eq "$N" "$(sink_json | jq '.records_out')" "backlog: records_out"
assert_eq "$K" "$(sink_json | jq '.dead_letters')" "backlog: dead letters"
assert_eq "true" "$(printf '%s' "$OUT" | jq '.ok')" "backlog: ok"
assert_eq "$N" "$(rows)" "rows after draining"
assert_eq "$N" "$(distinct_ids)" "distinct ids after draining (nothing twice)"
assert_eq $((N + K)) "$(committed)" "stored offsets == high watermarks (dead letters count)"
assert_contains "$ERR" "caught up with topic" "the log says it caught up"
note "drained $((N + K)) records in $ms ms"

note "$((N / 2)) more: only they land"
produce $((N / 2)) 2 "$N"
expect_rc 0 pipectl -f "$M" -o json run users_to_pg --until-caught-up
assert_eq "true" "$(sink_json | jq '.caught_up')" "second backlog: caught_up"
assert_eq $((N / 2)) "$(sink_json | jq '.records_out')" "second backlog: records_out"
assert_eq $((N + N / 2)) "$(rows)" "rows after the second drain"
assert_eq $((N + N / 2)) "$(distinct_ids)" "distinct ids after the second drain"
assert_eq $((N + N / 2 + K)) "$(committed)" "offsets after the second drain"

note "already caught up: exit 0 at once, nothing new"
t0=$(date +%s%N)
expect_rc 0 pipectl -f "$M" -o json run users_to_pg --until-caught-up
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "true" "$(sink_json | jq '.caught_up')" "caught up already: caught_up"
assert_eq 0 "$(sink_json | jq '.records_in')" "caught up already: nothing consumed"
assert_contains "$ERR" "already caught up" "caught up already: the log says so"
assert_eq $((N + N / 2)) "$(rows)" "rows after a caught-up run"
assert_eq $((N + N / 2 + K)) "$(committed)" "offsets after a caught-up run"
note "caught-up run exited in $ms ms"

# --- --max-records first ----------------------------------------------------------------------
note "--max-records 700 over a backlog of $N: stops at 700, exit 0, caught_up false"
produce "$N" 3 $((2 * N))
before=$(rows)
expect_rc 0 pipectl -f "$M" -o json run users_to_pg --until-caught-up --max-records 700
assert_eq "false" "$(sink_json | jq '.caught_up')" "--max-records first: caught_up"
assert_eq 700 "$(sink_json | jq '.records_out')" "--max-records first: records_out"
assert_eq $((before + 700)) "$(rows)" "--max-records first: rows"
assert_contains "$ERR" "before catching up" "--max-records first: the log says it stopped early"

# --- two instances in one group ---------------------------------------------------------------
note "two instances of the sink: each stops once the group has caught up"
produce "$N" 4 $((3 * N))
"$PIPECTL" -f "$M" -o json run users_to_pg --until-caught-up >"$TEST_TMP/a.out" 2>"$TEST_TMP/a.err" &
A=$!
"$PIPECTL" -f "$M" -o json run users_to_pg --until-caught-up >"$TEST_TMP/b.out" 2>"$TEST_TMP/b.err" &
B=$!
rca=0 rcb=0
for pid in $A $B; do # bounded: neither may wait for the other's records forever
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
kill -0 "$A" 2>/dev/null && { kill -KILL "$A"; fail "instance A still running after 60 s: $(tail -5 "$TEST_TMP/a.err")"; }
kill -0 "$B" 2>/dev/null && { kill -KILL "$B"; fail "instance B still running after 60 s: $(tail -5 "$TEST_TMP/b.err")"; }
wait "$A" || rca=$?
wait "$B" || rcb=$?
assert_eq 0 "$rca" "instance A exit; stderr: $(tail -n5 "$TEST_TMP/a.err")"
assert_eq 0 "$rcb" "instance B exit; stderr: $(tail -n5 "$TEST_TMP/b.err")"
assert_eq "true true" "$(jq -r '.workers[0].caught_up' "$TEST_TMP/a.out") $(jq -r '.workers[0].caught_up' "$TEST_TMP/b.out")" \
    "both instances caught up"
E=$((N + N / 2 + N + N)) # every good user produced so far
assert_eq "$E" "$(rows)" "rows after two instances"
assert_eq "$E" "$(distinct_ids)" "distinct ids after two instances (nothing twice)"
assert_eq "$(watermarks)" "$(committed)" "offsets == high watermarks after two instances"

# --- --duration first -------------------------------------------------------------------------
note "--duration 1s while raw.users is locked for 4 s: exit 1, says how far it got"
produce "$N" 5 $((4 * N))
before=$(rows)
PGOPTIONS="-c client_min_messages=warning" timeout 60 psql -XAtq "$PG_DSN" \
    -c "BEGIN; LOCK TABLE raw.users IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;" \
    >/dev/null 2>&1 &
LOCK_PID=$!
defer "kill $LOCK_PID 2>/dev/null"
for _ in $(seq 100); do
    [[ "$(psql_q "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'users' AND l.mode = 'AccessExclusiveLock' AND l.granted" "$PG_DSN")" == 1 ]] && break
    sleep 0.05
done
expect_rc 1 pipectl -f "$M" -o json run users_to_pg --until-caught-up --duration 1s
wait "$LOCK_PID" || true
assert_contains "$ERR" "not caught up with topic $TOPIC within --duration 1.0s" "the error says it ran out of time"
assert_contains "$ERR" "records of the backlog at start committed" "the error says how far it got"
assert_contains "$ERR" "(behind)" "the error names the partitions behind"
assert_eq "false" "$(sink_json | jq '.caught_up')" "--duration first: caught_up"
assert_eq "failed" "$(sink_json | jq -r '.status')" "--duration first: status"
after=$(rows)
[[ "$after" -lt $((E + N)) ]] || fail "--duration first: the whole backlog landed ($after rows): the test did not slow the sink"
assert_eq "$(committed)" "$((after + K))" "--duration first: rows == committed offsets (less the dead letters)"
note "--duration 1s: $((after - before)) of $N rows landed"
expect_rc 0 pipectl -f "$M" run users_to_pg --until-caught-up --duration 60s
assert_eq $((E + N)) "$(rows)" "rows after finishing the backlog"
assert_eq $((E + N)) "$(distinct_ids)" "distinct ids after finishing the backlog"
assert_eq "$(watermarks)" "$(committed)" "offsets == high watermarks at the end"
