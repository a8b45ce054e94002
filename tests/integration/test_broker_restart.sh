#!/usr/bin/env bash
# test_broker_restart.sh: the Kafka broker is stopped and started again (same port, same data)
# while the ingest worker (pc-randomuser -> Kafka, idempotent producer) and the sink worker
# (Kafka -> PostgreSQL, insert mode into a table WITHOUT a primary key, so a duplicate would
# show) both run. Afterwards: every record the ingest delivered is in the topic exactly once
# (sum of high watermarks == delivered), and in the table exactly once (rows == watermarks,
# distinct login.uuid == rows), and the sink's stored offsets equal the high watermarks.
# pc-test: serial
# pc-test: timeout=180
source "$PC_SRC/tests/integration/lib.sh"

BIN=$(dirname "${PIPECTL:?PIPECTL is not set}")
RU="$BIN/pc-randomuser" INGEST="$BIN/ingest_driver" SINK="$BIN/pc-sink-driver"
for b in "$RU" "$INGEST" "$SINK"; do [[ -x "$b" ]] || fail "$b not built next to pipectl"; done
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" PG_DSN TOPIC
PG_DSN=$(new_db "br_$TEST_ID")
TOPIC=$(uniq_name br_users)
M="$TEST_TMP/pipeline.yaml"
cat >"$M" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: brokerrestart}
kafka:
  bootstrap: ${KAFKA_BOOTSTRAP}
  topics:
    - {name: "${TOPIC}", partitions: 3, replication_factor: 1}
postgres:
  dsn: ${PG_DSN}
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: uid, type: uuid, nullable: false}
            - {name: email, type: text}
            - {name: registered_at, type: timestamptz}
sinks:
  - name: users_out
    topic: "${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {uid: login.uuid, email: email, registered_at: registered.date}
    batch: {max_records: 500, max_wait: 100ms}
YAML
pipectl -f "$M" apply --no-snapshot >"$TEST_TMP/apply.log" 2>&1 || fail "apply: $(cat "$TEST_TMP/apply.log")"
q() { psql_q "$1" "$PG_DSN"; }
rows() { q "SELECT count(*) FROM raw.users"; }
watermarks() { # "partition:offset" lines, sorted
    kafka_java org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
        --topic "$TOPIC" 2>/dev/null | awk -F: '{print $(NF-1) ":" $NF}' | sort -n
}

"$RU" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
RU_PID=$!
defer "kill -TERM $RU_PID 2>/dev/null; wait $RU_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"

note "sink and ingest running"
"$SINK" -f "$M" users_out >"$TEST_TMP/sink.log" 2>&1 &
SINK_PID=$!
defer "kill -KILL $SINK_PID 2>/dev/null"
# about 2,500 records/s until the test stops it (SIGTERM) once records were produced after the
# broker came back: the restart falls inside the run however long it takes on a loaded machine
"$INGEST" --url "http://127.0.0.1:$(cat "$TEST_TMP/ru.port")/api/" --topic "$TOPIC" \
    --bootstrap "$PC_KAFKA_BOOTSTRAP" --batch 50 --interval-ms 20 --duration-ms 180000 \
    --param seed=brokerrestart >"$TEST_TMP/ingest.json" 2>"$TEST_TMP/ingest.log" &
INGEST_PID=$!
for ((i = 0; i < 100; i++)); do [[ "$(rows)" -gt 0 ]] && break; sleep 0.1; done
[[ "$(rows)" -gt 0 ]] || fail "no rows before the restart:"$'\n'"$(tail -20 "$TEST_TMP/sink.log")"
# well into the run: a thousand rows landed (polled, not slept for)
for ((i = 0; i < 100; i++)); do [[ "$(rows)" -ge 1000 ]] && break; sleep 0.1; done
before=$(rows)

note "restarting the broker ($before rows so far)"
kafka_restart 1 || fail "kafka_restart failed"
kill -0 "$INGEST_PID" 2>/dev/null ||
    fail "ingest ended before the broker was back: the restart did not happen mid-run"
during=$(rows)
wm_back=$(watermarks | awk -F: '{s += $2} END {print s + 0}')
note "broker back ($during rows)"
# let the ingest produce after the restart (polled), then stop it cleanly
for ((i = 0; i < 120; i++)); do
    [[ $(watermarks | awk -F: '{s += $2} END {print s + 0}') -gt $((wm_back + 500)) ]] && break
    sleep 0.5
done
kill -TERM "$INGEST_PID"
rc=0
wait "$INGEST_PID" || rc=$?
assert_eq 0 "$rc" "ingest exit status; log: $(tail -5 "$TEST_TMP/ingest.log")"
delivered=$(jq .records_out "$TEST_TMP/ingest.json")
[[ "$delivered" -gt "$during" ]] || fail "ingest delivered $delivered, not more than the $during rows seen at the restart"
grep -qiE 'disconnect|connection refused|transport|down' "$TEST_TMP/ingest.log" "$TEST_TMP/sink.log" ||
    fail "neither worker saw the broker go away"

wm=$(watermarks)
total=$(awk -F: '{s += $2} END {print s}' <<<"$wm")
assert_eq "$delivered" "$total" "records in the topic (sum of high watermarks) == records delivered"
((total > wm_back)) || fail "nothing was produced after the broker came back ($wm_back records then, $total now)"
for ((i = 0; i < 300; i++)); do [[ "$(rows)" -ge "$total" ]] && break; sleep 0.1; done
kill -TERM "$SINK_PID"
rc=0
wait "$SINK_PID" || rc=$?
assert_eq 0 "$rc" "sink exit status after SIGTERM; log: $(tail -5 "$TEST_TMP/sink.log")"
assert_eq "$total|$total" "$(q "SELECT count(*) || '|' || count(DISTINCT uid) FROM raw.users")" \
    "rows|distinct uuids == records in the topic"
assert_eq "$wm" "$(q "SELECT partition || ':' || next_offset FROM pipectl.sink_offsets
    WHERE sink = 'users_out' ORDER BY partition")" "stored offsets == high watermarks"
note "$total records, $before rows before the restart, $during right after it"
