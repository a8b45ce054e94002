#!/usr/bin/env bash
# test_sink_unreachable.sh: the sink's PostgreSQL connection (pc_pg_connect). A "PostgreSQL" that
# accepts TCP connections and never says a word (a python3 listener on a free loopback port):
# (a) SIGTERM while the sink is connecting to it: `pipectl run` exits within the drain bound with
#     exit 1 and a message naming the worker and the server, never the password (before
#     pc_pg_connect the sink sat in PQconnectdb, which has no timeout, and SIGTERM waited with it);
# (b) the DSN's own connect_timeout is honoured: the attempt times out, is logged naming the
#     server, and the sink retries;
# (c) against the real server, the sink's session shows application_name
#     "pipectl run/sink <name>" in pg_stat_activity.
# pc-test: timeout=180
source "$PC_SRC/tests/integration/lib.sh" || exit 1

export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" TOPIC DSN
TOPIC=$(uniq_name unreach)
PW="pw_${TEST_ID}_never_shown"
DRAIN_BOUND_S=3 # SIGTERM -> exit, with the sink waiting on a server that never answers

# --- a server that accepts and never answers ----------------------------------------------------
cat >"$TEST_TMP/silent.py" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True:
    c, _ = s.accept()
    held.append(c)  # kept open, never read, never written
    print("accepted", flush=True)
PY
python3 "$TEST_TMP/silent.py" "$TEST_TMP/silent.port" >"$TEST_TMP/silent.log" 2>&1 &
SILENT_PID=$!
defer "kill -TERM $SILENT_PID 2>/dev/null; wait $SILENT_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/silent.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/silent.port" ]] || fail "the silent listener did not start: $(cat "$TEST_TMP/silent.log")"
SPORT=$(cat "$TEST_TMP/silent.port")

# manifest DSN_EXTRA: a pipeline with one sink reading $TOPIC into raw.users of $DSN
manifest() {
    cat >"$TEST_TMP/pipeline.yaml" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: unreach_${TEST_ID}}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: "\${TOPIC}", partitions: 1, replication_factor: 1}
postgres:
  dsn: "$1"
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: id, type: text}
sinks:
  - name: users_out
    topic: "\${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {id: id}
    batch: {max_records: 10, max_wait: 100ms}
YAML
}

now_ms() { date +%s%3N; }
accepted() { grep -c accepted "$TEST_TMP/silent.log" || true; }

# start_run: `pipectl run` in the background (RUN_PID), logs in $TEST_TMP/run.err
start_run() {
    "$PIPECTL" -f "$TEST_TMP/pipeline.yaml" run >"$TEST_TMP/run.out" 2>"$TEST_TMP/run.err" &
    RUN_PID=$!
    defer "kill -KILL $RUN_PID 2>/dev/null"
}

# stop_run: SIGTERM, then wait (bounded) for the exit; sets RUN_RC and STOP_MS
stop_run() {
    local t0 i
    t0=$(now_ms)
    kill -TERM "$RUN_PID"
    for ((i = 0; i < 150; i++)); do # 15 s: well past the bound, so a hang is measured, not waited out
        kill -0 "$RUN_PID" 2>/dev/null || break
        sleep 0.1
    done
    STOP_MS=$(($(now_ms) - t0))
    if kill -0 "$RUN_PID" 2>/dev/null; then
        kill -KILL "$RUN_PID" 2>/dev/null
        wait "$RUN_PID" 2>/dev/null || true
        fail "pipectl run still running ${STOP_MS} ms after SIGTERM (bound ${DRAIN_BOUND_S} s): the sink is stuck connecting; log:"$'\n'"$(cat "$TEST_TMP/run.err")"
    fi
    RUN_RC=0
    wait "$RUN_PID" || RUN_RC=$?
}

# --- (a) SIGTERM while connecting --------------------------------------------------------------
note "(a) SIGTERM while the sink connects to a server that never answers"
manifest "host=127.0.0.1 port=$SPORT dbname=nowhere user=pipectl password=$PW"
before=$(accepted)
start_run
# the sink is inside its connection attempt once the listener has accepted its connection
for _ in $(seq 200); do (($(accepted) > before)) && break; sleep 0.05; done
(($(accepted) > before)) || fail "the sink never connected to the silent listener: $(cat "$TEST_TMP/run.err")"
sleep 0.5 # well inside the attempt (10 s connect timeout)
stop_run
note "exit $RUN_RC, ${STOP_MS} ms after SIGTERM"
ERRLOG=$(cat "$TEST_TMP/run.err")
((STOP_MS < DRAIN_BOUND_S * 1000)) || fail "exit took ${STOP_MS} ms after SIGTERM (bound ${DRAIN_BOUND_S} s)"
assert_eq 1 "$RUN_RC" "exit status: a sink stopped before it reached PostgreSQL did not run; stderr: $ERRLOG"
assert_contains "$ERRLOG" "worker 'users_out' (sink) failed" "the failed worker is named"
assert_contains "$ERRLOG" "PostgreSQL at 127.0.0.1:$SPORT dbname=nowhere user=pipectl" "the server is named"
assert_contains "$ERRLOG" "gave up connecting" "the message says the attempt was given up for the stop"
assert_not_contains "$ERRLOG$(cat "$TEST_TMP/run.out")" "$PW" "the password is never shown"

# --- (b) the DSN's connect_timeout ---------------------------------------------------------------
note "(b) connect_timeout=2 in the DSN: times out, is logged naming the server, retried"
manifest "host=127.0.0.1 port=$SPORT dbname=nowhere user=pipectl password=$PW connect_timeout=2"
before=$(accepted)
t0=$(now_ms)
start_run
for _ in $(seq 120); do
    grep -q "no answer within connect_timeout" "$TEST_TMP/run.err" && break
    sleep 0.1
done
took=$(($(now_ms) - t0))
grep -q "no answer within connect_timeout" "$TEST_TMP/run.err" ||
    fail "no connect timeout logged after ${took} ms: $(cat "$TEST_TMP/run.err")"
((took >= 1900 && took < 6000)) || fail "the timeout was logged after ${took} ms, expected about 2 s"
# retried: a second connection reaches the listener after the backoff
for _ in $(seq 100); do (($(accepted) >= before + 2)) && break; sleep 0.05; done
(($(accepted) >= before + 2)) || fail "the sink did not retry: $(cat "$TEST_TMP/run.err")"
stop_run
ERRLOG=$(cat "$TEST_TMP/run.err")
assert_contains "$ERRLOG" "cannot reach PostgreSQL at 127.0.0.1:$SPORT dbname=nowhere" "the timeout names the server"
assert_not_contains "$ERRLOG" "$PW" "the password is never shown"
((STOP_MS < DRAIN_BOUND_S * 1000)) || fail "exit took ${STOP_MS} ms after SIGTERM"

# --- (c) application_name on the real server ---------------------------------------------------
note "(c) the sink's session on the real PostgreSQL is named pipectl run/sink users_out"
DSN=$(new_db "unreach_$TEST_ID")
manifest "$DSN"
expect_rc 0 pipectl -f "$TEST_TMP/pipeline.yaml" apply
start_run
APP=""
for _ in $(seq 200); do
    APP=$(psql_q "SELECT application_name FROM pg_stat_activity WHERE datname = 'unreach_$TEST_ID' AND application_name LIKE 'pipectl%'" "$DSN" | sort -u | tr '\n' ' ')
    [[ "$APP" == *"pipectl run/sink users_out"* ]] && break
    sleep 0.1
done
assert_contains "$APP" "pipectl run/sink users_out" "application_name in pg_stat_activity"
stop_run
assert_eq 0 "$RUN_RC" "a sink that ran exits 0 on SIGTERM; stderr: $(tail -5 "$TEST_TMP/run.err")"
