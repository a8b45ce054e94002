#!/usr/bin/env bash
# test_run.sh: `pipectl run` end to end: the ingest worker pulls from our randomuser-compatible
# server (pc-randomuser) into Kafka, the sink lands the records in PostgreSQL. Bounded runs
# (--max-records, --duration), the metrics endpoint during a run, SIGTERM drains and exits 0
# with rows == committed offsets, a second signal exits 130, `status` shows lag 0 per partition
# (text and -o json), unknown worker names, --help.
# pc-test: timeout=420
source "$PC_SRC/tests/integration/lib.sh"

RU="$(dirname "$PIPECTL")/pc-randomuser"
[[ -x "$RU" ]] || fail "pc-randomuser not built next to pipectl ($RU): cmake --build the tree"

export PG_DSN KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" TOPIC DLQ RU_URL
PG_DSN=$(new_db "run_$TEST_ID")
TOPIC=$(uniq_name users)
DLQ=$(uniq_name users_dlq)
M="$TEST_TMP/pipeline.yaml"

# --- the randomuser-compatible server ---------------------------------------------------------
"$RU" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
RU_PID=$!
defer "kill -TERM $RU_PID 2>/dev/null; wait $RU_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"
RU_URL="http://127.0.0.1:$(cat "$TEST_TMP/ru.port")/api/"

# No primary key and insert mode: every Kafka record is exactly one row, so row counts can be
# compared with offsets even though each ingest run may fetch the same users again.
cat >"$M" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: runtest}
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
            - {name: uid, type: uuid, nullable: false}
            - {name: email, type: text}
            - {name: first_name, type: text}
            - {name: registered_at, type: timestamptz}
sources:
  - {name: ru_in, type: randomuser, url: "${RU_URL}", topic: "${TOPIC}", batch: 100,
     interval: 10ms, key: login.uuid}
sinks:
  - name: users_out
    topic: "${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {uid: login.uuid, email: email, first_name: name.first, registered_at: registered.date}
    batch: {max_records: 500, max_wait: 100ms}
    dead_letter: "${DLQ}"
YAML

rows() { psql_q "SELECT count(*) FROM raw.users" "$PG_DSN"; }
committed() { psql_q "SELECT coalesce(sum(next_offset), 0) FROM pipectl.sink_offsets WHERE sink = 'users_out'" "$PG_DSN"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- CLI contract -----------------------------------------------------------------------------
note "run --help, bad options"
expect_rc 0 pipectl -f "$M" run --help
assert_contains "$OUT" "--max-records" "help documents --max-records"
assert_contains "$OUT" "--metrics" "help documents --metrics"
expect_rc 1 pipectl -f "$M" run --no-such-option
expect_rc 1 pipectl -f "$M" run --duration 10parsecs
assert_contains "$ERR" "10s" "bad duration names the accepted forms"
expect_rc 1 pipectl -f "$M" run --max-records -5

note "unknown worker names list the known ones"
expect_rc 1 pipectl -f "$M" run nosuchworker
assert_contains "$ERR" "nosuchworker" "error names the unknown worker"
assert_contains "$ERR" "ru_in (source)" "error lists the source"
assert_contains "$ERR" "users_out (sink)" "error lists the sink"

expect_rc 0 pipectl -f "$M" apply --no-snapshot

# --- bounded by records -----------------------------------------------------------------------
note "run --max-records 1000: both workers, exactly 1000 rows"
expect_rc 0 pipectl -f "$M" -o json run --max-records 1000 ru_in users_out
assert_eq 1000 "$(printf '%s' "$OUT" | jq '.workers[] | select(.name == "users_out") | .records_out')" \
    "run -o json: sink committed 1000"
[[ "$(printf '%s' "$OUT" | jq '.workers[] | select(.name == "ru_in") | .records_out')" -ge 1000 ]] ||
    fail "run -o json: ingest delivered fewer than 1000:"$'\n'"$OUT"
assert_eq "true" "$(printf '%s' "$OUT" | jq '.ok')" "run -o json: ok"
assert_eq 1000 "$(rows)" "rows after --max-records 1000"
assert_eq 1000 "$(committed)" "committed offsets after --max-records 1000"
# logs are JSON lines when stderr is not a terminal
assert_eq "true" "$(printf '%s\n' "$ERR" | grep '^{' | jq -s 'length >= 4 and all(has("ts") and has("level") and has("msg"))')" \
    "log lines are JSON objects with ts/level/msg:"$'\n'"$ERR"
assert_contains "$ERR" '"worker":"users_out"' "log lines carry the worker name"
assert_not_contains "$ERR" "password=" "no secret in the logs"

# --- bounded by time, with metrics ------------------------------------------------------------
note "run --duration 3s --metrics: counters > 0 during the run"
MPORT=$(free_port)
"$PIPECTL" -f "$M" run --duration 3s --metrics "127.0.0.1:$MPORT" >"$TEST_TMP/d.out" 2>"$TEST_TMP/d.err" &
RUN_PID=$!
metrics=""
for _ in $(seq 40); do
    sleep 0.1
    metrics=$(curl -fsS --max-time 2 "http://127.0.0.1:$MPORT/metrics" 2>/dev/null) || continue
    out_in=$(printf '%s\n' "$metrics" | sed -n 's/^pipectl_records_out_total{worker="ru_in"} \([0-9]*\)$/\1/p')
    out_sink=$(printf '%s\n' "$metrics" | sed -n 's/^pipectl_records_out_total{worker="users_out"} \([0-9]*\)$/\1/p')
    [[ "${out_in:-0}" -gt 0 && "${out_sink:-0}" -gt 0 ]] && break
done
rc=0
wait "$RUN_PID" || rc=$?
assert_eq 0 "$rc" "run --duration 3s exit status; stderr: $(tail -n5 "$TEST_TMP/d.err")"
assert_contains "$metrics" "# TYPE pipectl_records_in_total counter" "metrics are Prometheus text"
for name in records_in_total records_out_total batches_total; do
    for w in ru_in users_out; do
        v=$(printf '%s\n' "$metrics" | sed -n "s/^pipectl_${name}{worker=\"$w\"} \([0-9]*\)\$/\1/p")
        [[ "${v:-0}" -gt 0 ]] || fail "pipectl_${name}{worker=\"$w\"} should be > 0 during the run; got '${v}' in:"$'\n'"$metrics"
    done
done
assert_contains "$metrics" 'pipectl_errors_total{worker="users_out"}' "errors counter present"
assert_contains "$metrics" 'pipectl_dead_letters_total{worker="users_out"}' "dead letters counter present"
assert_contains "$metrics" 'pipectl_last_commit_age_seconds{worker="users_out"}' "last commit age present"
for p in 0 1 2; do
    assert_contains "$metrics" "pipectl_consumer_lag{worker=\"users_out\",topic=\"$TOPIC\",partition=\"$p\"}" \
        "lag gauge of partition $p"
done
assert_eq "$(rows)" "$(committed)" "rows == committed offsets after --duration"
if curl -fsS --max-time 2 "http://127.0.0.1:$MPORT/metrics" >/dev/null 2>&1; then
    fail "metrics endpoint still answers after run exited"
fi

# --- SIGTERM: drain, commit, exit 0 -----------------------------------------------------------
note "SIGTERM mid-run (delivered twice at once, as timeout(1) does): exit 0, rows == committed offsets"
before=$(rows)
"$PIPECTL" -f "$M" run >"$TEST_TMP/t.out" 2>"$TEST_TMP/t.err" &
RUN_PID=$!
# mid-run: rows are landing (polled, not slept for)
for _ in $(seq 200); do
    sleep 0.1
    [[ "$(rows)" -gt $((before + 100)) ]] && break
done
[[ "$(rows)" -gt "$before" ]] || fail "no rows landed before SIGTERM: $(tail -5 "$TEST_TMP/t.err")"
kill -TERM "$RUN_PID"
# the same request again within 0.5 s (as timeout(1) sends it): still a clean drain. The pause
# makes it a second delivery: two kills in a row would merge into one pending signal.
sleep 0.05
kill -TERM "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
assert_eq 0 "$rc" "exit status after SIGTERM; stderr: $(tail -n5 "$TEST_TMP/t.err")"
assert_not_contains "$(cat "$TEST_TMP/t.err")" "second signal" "a repeated SIGTERM is one request"
assert_contains "$(cat "$TEST_TMP/t.err")" "taken as one request" "the repeated SIGTERM was delivered and seen"
after=$(rows)
[[ "$after" -gt "$before" ]] || fail "no rows landed during the SIGTERM run ($before -> $after)"
assert_eq "$after" "$(committed)" "rows == committed offsets after SIGTERM"
note "rows $before -> $after"
assert_contains "$(cat "$TEST_TMP/t.err")" "draining" "log says it drains on the signal"

# --- drain the topic, then status shows lag 0 -------------------------------------------------
note "sink alone catches up exactly; status lag 0 per partition"
expect_rc 0 pipectl -f "$M" -o json status
remaining=$(printf '%s' "$OUT" | jq '.sinks[] | select(.name == "users_out") | .lag_total')
[[ "$remaining" =~ ^[0-9]+$ ]] || fail "status -o json has no lag_total for users_out:"$'\n'"$OUT"
if [[ "$remaining" -gt 0 ]]; then
    expect_rc 0 pipectl -f "$M" run users_out --max-records "$remaining"
fi
note "caught up $remaining record(s); $(rows) rows"
expect_rc 0 pipectl -f "$M" status
assert_contains "$OUT" "sink      users_out" "status lists the sink"
lag_lines=$(printf '%s\n' "$OUT" | grep -c "^    partition .* lag 0$" || true)
assert_eq 3 "$lag_lines" "status text shows lag 0 for each of 3 partitions:"$'\n'"$OUT"
expect_rc 0 pipectl -f "$M" -o json status
sink_json=$(printf '%s' "$OUT" | jq -c '.sinks[] | select(.name == "users_out")')
assert_eq 3 "$(printf '%s' "$sink_json" | jq '.partitions | length')" "json: 3 partitions"
assert_eq 0 "$(printf '%s' "$sink_json" | jq '.lag_total')" "json: lag_total 0"
assert_eq "[0,0,0]" "$(printf '%s' "$sink_json" | jq -c '[.partitions[].lag]')" "json: lag per partition"
hw=$(printf '%s' "$sink_json" | jq '[.partitions[].high_watermark] | add')
assert_eq "$(rows)" "$hw" "every record in the topic is a row (high watermarks == rows)"

# --- last, because the killed sink stays a group member until its session times out ----------
note "second signal: exit 130 at once"
"$PIPECTL" -f "$M" run >/dev/null 2>"$TEST_TMP/s.err" &
RUN_PID=$!
# the workers are up (the sink has its partitions), polled rather than slept for
for _ in $(seq 300); do
    grep -q 'assigned partitions' "$TEST_TMP/s.err" && break
    sleep 0.1
done
grep -q 'assigned partitions' "$TEST_TMP/s.err" || fail "run did not start: $(tail -5 "$TEST_TMP/s.err")"
kill -TERM "$RUN_PID"
kill -INT "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
assert_eq 130 "$rc" "exit status after a second signal"
# whatever the kill interrupted, the committed offsets still match the rows exactly
assert_eq "$(rows)" "$(committed)" "rows == committed offsets after an abrupt exit"
