#!/usr/bin/env bash
# test_secure_broker_kill.sh: kill -9 of one of the three brokers of the secured, replicated
# cluster (topics with replication_factor 3, min.insync.replicas 2; workers as their own SCRAM
# principals with derived ACLs; PostgreSQL over verify-full TLS).
#   Leg A, during an ingest (pipectl run ru): while the broker is down, status (text and JSON)
#   names it and the topic's under-replicated partitions and exits 1, answering within 30 s;
#   plan still works ("No changes", --detailed-exitcode 0) and refuses a new topic with
#   replication_factor 3 on 2 live brokers, naming both numbers (apply does not create it). The
#   ingest keeps producing to the new leaders, stops cleanly on SIGTERM with the broker still
#   down and delivered every record exactly once (delivered == sum of high watermarks). After
#   start-broker the replicas are back in sync; the sink loads rows == distinct uids == watermarks.
#   Leg B, during a sink run (pipectl run to_pg, a backlog in the topic): the broker killed is the
#   sink group's coordinator. The sink loads the rest of the backlog with it down, rides through
#   its restart, exits 0 on SIGTERM; rows == distinct uids == watermarks, and its offsets in
#   pipectl.sink_offsets equal the high watermarks.
# Both legs: nothing in the dead-letter topic. The table has no primary key, so a duplicate
# shows. Every broker is running again when the test ends (the fixture is shared).
# pc-test: secure
# pc-test: timeout=420
source "$PC_SRC/tests/integration/lib.sh"
source "$PC_SRC/tests/integration/secure_lib.sh"
[[ -x "${PIPECTL:-}" ]] || fail "PIPECTL is not the built pipectl binary (got '${PIPECTL:-}')"

# --- helpers ----------------------------------------------------------------------------------

# broker_cmd kill-broker|start-broker N: scripts/secure_stack.sh; a started JVM must not inherit
# the test's output pipes (ctest would wait for it), as in lib.sh's kafka_restart.
broker_cmd() {
    (exec {_PC_STDERR}>&- && timeout 150 bash "$PC_SRC/scripts/secure_stack.sh" "$1" \
        "$PC_SECURE_DIR" "$2") </dev/null >>"$TEST_TMP/brokers.log" 2>&1 ||
        fail "secure_stack.sh $1 $2 failed: $(tail -5 "$TEST_TMP/brokers.log")"
}
# restore_broker: at exit, starts the broker this test left down (the fixture is shared). Only a
# killed one: start-broker of a running broker waits out its timeout (its readiness check greps
# the whole log with grep -q under pipefail: SIGPIPE).
restore_broker() {
    [[ -n "${DOWN:-}" ]] || return 0
    (exec {_PC_STDERR}>&- && timeout 150 bash "$PC_SRC/scripts/secure_stack.sh" start-broker \
        "$PC_SECURE_DIR" "$DOWN") </dev/null >>"$TEST_TMP/brokers.log" 2>&1 ||
        echo "WARNING: broker $DOWN of $PC_SECURE_DIR did not start again:" \
            "$(tail -3 "$TEST_TMP/brokers.log")" >&2
}
# sk_kafka_all CLASS ARGS...: sk_kafka with every broker as bootstrap (sk_kafka names the first
# only, which may be the one killed)
sk_kafka_all() {
    kafka_java "$1" --bootstrap-server "$PC_SK_BOOTSTRAP" \
        --command-config "$PC_SK_ADMIN_PROPERTIES" "${@:2}"
}
watermarks() { # TOPIC: "partition:high watermark" lines, sorted; fails unless every one answered
    local out want
    out=$(sk_kafka_all org.apache.kafka.tools.GetOffsetShell --topic "$1" 2>"$TEST_TMP/gos.err") ||
        fail "GetOffsetShell $1: $(tail -5 "$TEST_TMP/gos.err")"
    out=$(printf '%s\n' "$out" | awk -F: 'NF >= 3 {print $(NF-1) ":" $NF}' | sort -n)
    want=$([[ "$1" == "$DLQ" ]] && echo 1 || echo 3)
    [[ $(grep -c . <<<"$out") -eq $want ]] ||
        fail "GetOffsetShell $1: not $want partitions:"$'\n'"$out"
    printf '%s\n' "$out"
}
wm_sum() { watermarks "$1" | awk -F: '{s += $2} END {print s + 0}'; }
leaders() { # "partition:leader" lines of $TOPIC
    sk_kafka_all org.apache.kafka.tools.TopicCommand --describe --topic "$TOPIC" 2>/dev/null |
        sed -n 's/.*Partition: \([0-9]*\)[[:space:]]*Leader: \([0-9-]*\).*/\1:\2/p'
}
q() { sk_psql "$1" "$DB"; }
rows() { q "SELECT count(*) FROM raw.users"; }
# ingest_counts LOG: "produced delivered" from the ingest's last "ingest stopped" line
ingest_counts() {
    sed -n 's/.*ingest stopped: \([0-9]*\) records produced, \([0-9]*\) delivered.*/\1 \2/p' "$1" |
        tail -n1
}
# status_json: sets RC and OUT (pipectl -o json status). Bounded: with a broker down, status
# must still answer within its own Kafka timeouts (10 s each), not hang.
STATUS_MAX_S=0
status_json() {
    local t0=$SECONDS
    PC_TIMEOUT=30 run pipectl -f "$M" -o json status
    [[ $RC -ne 124 ]] || fail "status -o json did not answer within 30 s" \
        "(broker down: ${DOWN:-none}); stderr:"$'\n'"$(tail -5 <<<"$ERR")"
    ((SECONDS - t0 <= STATUS_MAX_S)) || STATUS_MAX_S=$((SECONDS - t0))
    jq -e . >/dev/null 2>&1 <<<"$OUT" ||
        fail "status -o json is not JSON (exit $RC):"$'\n'"$OUT"$'\n'"$ERR"
}
# wait_healthy_replicas: until status lists no down broker and no under-replicated partition
wait_healthy_replicas() {
    local deadline=$((SECONDS + 90))
    while :; do
        status_json
        [[ $(jq -c '[.kafka.down_brokers, .kafka.under_replicated]' <<<"$OUT") == '[[],[]]' &&
            $(jq .kafka.live_brokers <<<"$OUT") == 3 ]] && return 0
        ((SECONDS < deadline)) ||
            fail "replicas not back in sync 90 s after start-broker:"$'\n'"$(jq -c .kafka <<<"$OUT")"
        sleep 0.5
    done
}
# wait_down N: until status -o json names broker N (alone) down and all 3 partitions of $TOPIC
# under-replicated. Kafka fences a broker that stopped heart-beating after
# broker.session.timeout.ms (9 s), then moves its leaderships and shrinks the ISRs: until then
# the metadata still lists it.
wait_down() {
    local deadline=$((SECONDS + 60))
    while :; do
        status_json
        [[ $(jq -c .kafka.down_brokers <<<"$OUT") == "[$1]" &&
            $(jq --arg t "$TOPIC" '[.kafka.under_replicated[] | select(.topic == $t)
                | .under_replicated_partitions][0]' <<<"$OUT") == 3 ]] && return 0
        ((SECONDS < deadline)) ||
            fail "status did not name broker $1 down with 3 under-replicated partitions of" \
                "$TOPIC within 60 s:"$'\n'"$OUT"$'\n'"$ERR"
        sleep 0.5
    done
}
# check_landed LEG: rows == distinct uids == sum of the topic's high watermarks; DLQ empty
check_landed() {
    local total
    total=$(wm_sum "$TOPIC")
    assert_eq "$total|$total" "$(q "SELECT count(*) || '|' || count(DISTINCT uid) FROM raw.users")" \
        "$1: rows|distinct uids == sum of high watermarks"
    assert_eq 0 "$(wm_sum "$DLQ")" "$1: records in the dead-letter topic $DLQ"
}

# --- the pipeline -----------------------------------------------------------------------------

export TOPIC DLQ NEWT DB SEED
# a seed per ingest run: pc-randomuser repeats its users for a repeated seed and page
SEED="bk_${TEST_ID}_a"
TOPIC=$(uniq_name bk_users) DLQ=$(uniq_name bk_dlq) NEWT=$(uniq_name bk_new) DB="bk_$TEST_ID"
sk_new_db "$DB"
sk_randomuser

M="$TEST_TMP/pipeline.yaml"
sk_manifest "bk_$TEST_ID" 50 50ms 500 >"$M"
# the same pipeline plus a topic that needs all three brokers
M_NEW="$TEST_TMP/pipeline-new-topic.yaml"
sed "s|^  topics:\$|&\n    - {name: \"\${NEWT}\", partitions: 1, replication_factor: 3}|" "$M" >"$M_NEW"
grep -qF '${NEWT}' "$M_NEW" || fail "could not derive $M_NEW"

DOWN=""
defer restore_broker
expect_rc 0 pipectl -f "$M" apply --no-snapshot
expect_rc 0 pipectl -f "$M" plan --detailed-exitcode
assert_contains "$OUT" "No changes" "plan right after apply"

# =========================== Leg A: kill -9 of a broker during an ingest ===========================

note "leg A: ingest running"
# bounded; stopped with SIGTERM once the checks with the broker down are done
"$PIPECTL" -f "$M" run ru --duration 150s >"$TEST_TMP/ingest_a.out" 2>"$TEST_TMP/ingest_a.log" &
INGEST_PID=$!
defer "kill -KILL $INGEST_PID 2>/dev/null"
deadline=$((SECONDS + 60))
until [[ $(wm_sum "$TOPIC") -gt 0 ]]; do
    kill -0 "$INGEST_PID" 2>/dev/null || fail "ingest ended early: $(tail -5 "$TEST_TMP/ingest_a.log")"
    ((SECONDS < deadline)) || fail "no records in $TOPIC 60 s into the ingest"
    sleep 0.2
done
KA=$(leaders | sed -n "s/^0://p")
[[ "$KA" =~ ^[123]$ ]] || fail "no leader for partition 0 of $TOPIC (got '$KA')"

note "leg A: kill -9 broker $KA (leader of partition 0)"
DOWN=$KA
broker_cmd kill-broker "$KA"
kill -0 "$INGEST_PID" 2>/dev/null || fail "ingest ended before broker $KA was killed: not a mid-run kill"

wait_down "$KA"
assert_eq 1 "$RC" "status -o json exit with broker $KA down"
assert_eq "false|2|true" \
    "$(jq -r '[.healthy, .kafka.live_brokers, .kafka.reachable] | join("|")' <<<"$OUT")" \
    "status -o json: healthy|live_brokers|reachable with broker $KA down"
assert_eq 1 "$(jq --arg t "$DLQ" '[.kafka.under_replicated[] | select(.topic == $t)
    | .under_replicated_partitions][0]' <<<"$OUT")" "status -o json: under-replicated partitions of $DLQ"
wm_down=$(wm_sum "$TOPIC")

expect_rc 1 pipectl -f "$M" status
assert_contains "$OUT" "UNHEALTHY" "status text with broker $KA down"
assert_contains "$OUT" "2 live, DOWN: broker $KA" "status text names the down broker"
assert_contains "$OUT" "UNDER-REPLICATED partitions:" "status text: under-replicated line"
assert_contains "$OUT" "$TOPIC (3: partitions 0,1,2)" "status text: $TOPIC's under-replicated partitions"
assert_contains "$OUT" "$DLQ (1: partition 0)" "status text: $DLQ's under-replicated partition"
assert_eq "[0,1,2]" "$(jq -c --arg t "$TOPIC" '[.kafka.under_replicated[] | select(.topic == $t)
    | .partitions][0]' <<<"$(pipectl -f "$M" -o json status || true)")" \
    "status -o json names $TOPIC's under-replicated partitions"
# the ingest goes on producing to the partitions' new leaders
kill -0 "$INGEST_PID" 2>/dev/null || fail "ingest ended while broker $KA was down" \
    "(status took up to ${STATUS_MAX_S}s): $(tail -3 "$TEST_TMP/ingest_a.log")"
wm_down2=$(wm_sum "$TOPIC")
((wm_down2 > wm_down)) ||
    fail "the ingest produced nothing with broker $KA down ($wm_down then $wm_down2)"

note "leg A: plan with broker $KA down"
expect_rc 0 pipectl -f "$M" plan --detailed-exitcode
assert_contains "$OUT" "No changes" "plan with broker $KA down"
run pipectl -f "$M_NEW" plan
assert_eq 0 "$RC" "plan of a new RF 3 topic with broker $KA down (exit); stderr: $ERR"
grep -qE "^ *! .*$NEWT" <<<"$OUT" || fail "plan does not mark $NEWT refused ('!'):"$'\n'"$OUT"
assert_contains "$OUT" "topic '$NEWT' declares replication_factor 3 but the cluster has 2 live brokers" \
    "plan's reason names 3 and 2"
run pipectl -f "$M_NEW" -o json plan
assert_eq 0 "$RC" "plan -o json of the new topic (exit); stderr: $ERR"
assert_eq "refused|1" "$(jq -r --arg t "$NEWT" '[(.actions[] | select(.kind == "topic_create"
    and .topic == $t) | .op), .summary.refused] | join("|")' <<<"$OUT")" \
    "plan -o json: op of the new topic|refused actions"
assert_contains "$(jq -r --arg t "$NEWT" '.actions[] | select(.topic == $t) | .reason' <<<"$OUT")" \
    "replication_factor 3 but the cluster has 2 live brokers" "plan -o json: the reason"
# apply lists a refused action without performing it (and exits 0)
expect_rc 0 pipectl -f "$M_NEW" apply --no-snapshot
assert_contains "$OUT" "1 refused" "apply of the new RF 3 topic with broker $KA down"
assert_not_contains "$(sk_kafka_all org.apache.kafka.tools.TopicCommand --list 2>/dev/null)" "$NEWT" \
    "$NEWT not created"

kill -0 "$INGEST_PID" 2>/dev/null || fail "ingest ended before SIGTERM (raise --duration)"
note "leg A: SIGTERM to the ingest (broker $KA still down)"
kill -TERM "$INGEST_PID"
rc=0
wait "$INGEST_PID" || rc=$?
assert_eq 0 "$rc" "ingest exit status after SIGTERM; log: $(tail -5 "$TEST_TMP/ingest_a.log")"
read -r produced_a delivered_a <<<"$(ingest_counts "$TEST_TMP/ingest_a.log")"
[[ -n "${delivered_a:-}" ]] || fail "no 'ingest stopped' line in: $(tail -5 "$TEST_TMP/ingest_a.log")"
assert_eq "$produced_a" "$delivered_a" "leg A: produced == delivered"

note "leg A: start-broker $KA"
broker_cmd start-broker "$KA"
DOWN=""
wait_healthy_replicas
total_a=$(wm_sum "$TOPIC")
assert_eq "$delivered_a" "$total_a" "leg A: delivered == sum of high watermarks"

note "leg A: sink loads the $total_a records"
expect_rc 0 pipectl -f "$M" run to_pg --max-records "$total_a"
check_landed "leg A"
note "leg A: $total_a records; $wm_down in the topic when status saw broker $KA down," \
    "$wm_down2 after the text status; status took up to ${STATUS_MAX_S}s"

# =========================== Leg B: kill -9 of a broker during a sink run ===========================

note "leg B: a backlog (all brokers up)"
SEED="bk_${TEST_ID}_b"
expect_rc 0 pipectl -f "$M" run ru --duration 25s
read -r produced_b delivered_b <<<"$(ingest_counts <(printf '%s\n' "$ERR"))"
[[ -n "${delivered_b:-}" ]] || fail "no 'ingest stopped' line in: $ERR"
assert_eq "$produced_b" "$delivered_b" "leg B: produced == delivered"
total_b=$(wm_sum "$TOPIC")
assert_eq "$delivered_b" "$((total_b - total_a))" "leg B: delivered == growth of the high watermarks"

# the broker to kill: the sink's group coordinator, which also leads a partition of the topic once
# the preferred leaders are back (leg A's broker, restarted, leads none until then), so the sink
# loses its coordinator and a partition leader at once
printf '{"partitions": [%s]}\n' "$(printf '{"topic": "%s", "partition": %d}\n' \
    "$TOPIC" 0 "$TOPIC" 1 "$TOPIC" 2 | paste -sd,)" >"$TEST_TMP/preferred.json"
kafka_java org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$PC_SK_BOOTSTRAP" \
    --admin.config "$PC_SK_ADMIN_PROPERTIES" --election-type PREFERRED \
    --path-to-json-file "$TEST_TMP/preferred.json" >"$TEST_TMP/election.log" 2>&1 ||
    fail "preferred leader election for $TOPIC: $(tail -5 "$TEST_TMP/election.log")"
GROUP="pipectl-bk_$TEST_ID-to_pg"
KB=$(sk_kafka_all org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --describe \
    --group "$GROUP" --state 2>/dev/null | sed -n "s/^$GROUP  *[0-9.]*:[0-9]*  *(\([0-9]*\)).*/\1/p")
[[ "$KB" =~ ^[123]$ ]] || fail "no coordinator found for consumer group $GROUP (got '$KB')"
led=$(leaders | grep -c ":$KB\$" || true)
((led >= 1)) || fail "coordinator $KB leads no partition of $TOPIC:"$'\n'"$(leaders)"

"$PIPECTL" -f "$M" run to_pg >"$TEST_TMP/sink_b.out" 2>"$TEST_TMP/sink_b.log" &
SINK_PID=$!
defer "kill -KILL $SINK_PID 2>/dev/null"
deadline=$((SECONDS + 60))
until [[ $(rows) -gt $total_a ]]; do
    kill -0 "$SINK_PID" 2>/dev/null || fail "sink ended early: $(tail -5 "$TEST_TMP/sink_b.log")"
    ((SECONDS < deadline)) || fail "no new rows 60 s into the sink run"
    sleep 0.05
done

note "leg B: kill -9 broker $KB (coordinator of $GROUP, leader of $led partition(s)) during the sink run"
DOWN=$KB
broker_cmd kill-broker "$KB"
at_kill=$(rows)
((at_kill < total_b)) ||
    fail "the sink had loaded everything ($at_kill rows) before broker $KB was killed:" \
        "make the backlog larger"
# the sink loads the rest of the backlog with the broker still down (its partitions move to new
# leaders once Kafka fences it, the group to a new coordinator)
wait_down "$KB"
at_fenced=$(rows)
deadline=$((SECONDS + 120))
until [[ $(rows) -ge $total_b ]]; do
    kill -0 "$SINK_PID" 2>/dev/null ||
        fail "sink ended after broker $KB was killed: $(tail -5 "$TEST_TMP/sink_b.log")"
    ((SECONDS < deadline)) ||
        fail "sink at $(rows) of $total_b rows 120 s after broker $KB was killed"
    sleep 0.2
done
note "leg B: start-broker $KB (sink still running)"
broker_cmd start-broker "$KB"
DOWN=""
wait_healthy_replicas
kill -0 "$SINK_PID" 2>/dev/null || fail "sink ended: $(tail -5 "$TEST_TMP/sink_b.log")"
kill -TERM "$SINK_PID"
rc=0
wait "$SINK_PID" || rc=$?
assert_eq 0 "$rc" "sink exit after SIGTERM; log: $(tail -5 "$TEST_TMP/sink_b.log")"
check_landed "leg B"
assert_eq "$(watermarks "$TOPIC")" "$(q "SELECT partition || ':' || next_offset FROM pipectl.sink_offsets
    WHERE sink = 'to_pg' AND topic = '$TOPIC' ORDER BY partition")" "stored offsets == high watermarks"
expect_rc 0 pipectl -f "$M" status
note "leg B: $total_b records; $at_kill rows when broker $KB was killed, $at_fenced when" \
    "status saw it down; status took up to ${STATUS_MAX_S}s"
