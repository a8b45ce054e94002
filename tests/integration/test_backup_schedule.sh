#!/usr/bin/env bash
# test_backup_schedule.sh: the backup schedule inside `pipectl run`, on the real wall clock.
# Own throwaway PostgreSQL 15 cluster archiving with `pipectl wal-push` into a private repository
# (as the `postgres` OS user when run as root). The schedule is "* * * * *" (cron's finest
# granularity: no hidden seconds mode), so the test waits for one real minute boundary: it runs
# between ~15 and ~75 s depending on where in the minute it starts.
#
# archive_command is 'sleep 2; pipectl wal-push ...': a backup then lasts at least ~2 s (create
# waits until its last WAL segment is archived), long enough to send SIGTERM while it runs.
#
#   1. `run backups` on an empty repository catches up at once (a "catch-up" backup for the
#      latest fire time); SIGTERM while it runs: the backup is finished (logged completed AFTER
#      the signal was seen), exit 0, the backup is in `backup list`; `status` is healthy.
#   2. `run --metrics` (every worker: here only the schedule) takes a "scheduled" backup at the
#      next minute boundary (label and start time prove the fire time), expires per retention
#      (full: 1: the catch-up backup goes), counts it in the metrics; SIGTERM: exit 0.
#   3. `status` on a copy of the repository that holds only the catch-up backup: healthy with
#      the default grace (1h), unhealthy ("late") with --backup-grace 5s once the minute fired.
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"
command -v curl >/dev/null || fail "curl is needed to read the metrics endpoint"
T0=$SECONDS

# --- command line ----------------------------------------------------------------------------------
expect_rc 0 "$PIPECTL" run --help
assert_contains "$OUT" "'backups' for the" "run --help documents the backups worker"
assert_contains "$OUT" "--no-backups" "run --help documents --no-backups"
expect_rc 0 "$PIPECTL" status --help
assert_contains "$OUT" "--backup-grace D" "status --help documents --backup-grace"
expect_rc 1 "$PIPECTL" status --backup-grace soon
assert_contains "$ERR" "--backup-grace wants a number and a unit" "status --backup-grace soon"

archive_cluster schedule "sleep 2; @BIN@ wal-push --repository @REPO@ %p %f"
q "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)" >/dev/null

manifest() { # FILE REPOSITORY
    cat >"$1" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: schedule}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres"
  archiving:
    enabled: true
    repository: $2
    command: "$ARCHIVE_COMMAND"
backups:
  schedule: "* * * * *"
  retention: {full: 1}
YAML
}
M=$TEST_TMP/pipeline.yaml
manifest "$M" "$REPO"

# selection errors, before anything runs
expect_rc 1 "$PIPECTL" -f "$M" run --no-backups
assert_contains "$ERR" "nothing to run" "run --no-backups with only a schedule"
expect_rc 1 "$PIPECTL" -f "$M" run nosuch
assert_contains "$ERR" "backups (backup schedule)" "run NAME lists the schedule as a worker"
NOBK=$TEST_TMP/nobackups.yaml
grep -v -e '^backups:' -e 'schedule:' -e 'retention:' "$M" >"$NOBK"
expect_rc 1 "$PIPECTL" -f "$NOBK" run backups
assert_contains "$ERR" "declares no backups: block" "run backups without a backups block"

export PIPECTL_LOG_FORMAT=json
# log_lines FILE MSG: the JSON log lines with that message
log_lines() { jq -c --arg m "$2" 'select(.msg == $m)' "$1" 2>/dev/null || true; }
wait_log() { # FILE MSG SECONDS [JQ-FILTER]: until a line with MSG (and the filter) appears
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        if [[ -n "$(jq -c --arg m "$2" "select(.msg == \$m)${4:+ | select($4)}" "$1" 2>/dev/null)" ]]; then
            return 0
        fi
        sleep 0.2
    done
    fail "no log line '$2' ${4:-} within $3 s:"$'\n'"$(cat "$1")"
}
line_of() { grep -n -F "\"msg\":\"$2\"" "$1" | head -n1 | cut -d: -f1; } # compact JSON lines

# --- 1. catch-up on an empty repository, SIGTERM while it runs --------------------------------------
note "run backups: catch-up backup, SIGTERM during it"
L1=$TEST_TMP/run1.log
"$PIPECTL" -f "$M" run backups -o json >"$TEST_TMP/run1.json" 2>"$L1" &
P1=$!
wait_log "$L1" "scheduled backup starting" 30 '.reason == "catch-up"'
kill -TERM "$P1"
rc=0
timeout 90 tail --pid="$P1" -f /dev/null || fail "run did not exit within 90 s of SIGTERM"
wait "$P1" || rc=$?
assert_eq 0 "$rc" "run's exit status after SIGTERM during a backup"$'\n'"$(cat "$L1")"
SIG_LINE=$(line_of "$L1" "signal received: draining and committing (send it again to exit immediately)")
DONE_LINE=$(line_of "$L1" "scheduled backup completed")
[[ -n "$SIG_LINE" && -n "$DONE_LINE" ]] || fail "signal or completion not logged:"$'\n'"$(cat "$L1")"
((DONE_LINE > SIG_LINE)) || fail "the backup completed before the signal arrived; nothing proven:"$'\n'"$(cat "$L1")"
ID1=$(log_lines "$L1" "scheduled backup completed" | jq -r .backup)
FIRE1=$(log_lines "$L1" "scheduled backup starting" | jq -r .fire_time)
assert_eq 1 "$(jq '.workers | length' "$TEST_TMP/run1.json")" "workers in the summary"
assert_eq "backups backup stopped 1 1 0" \
    "$(jq -r '.workers[0] | "\(.name) \(.kind) \(.status) \(.records_in) \(.records_out) \(.errors)"' "$TEST_TMP/run1.json")" \
    "run -o json summary of the schedule"
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq 1 "$(jq '.backups | length' <<<"$OUT")" "backups after run 1"
assert_eq "$ID1" "$(jq -r '.backups[0].id' <<<"$OUT")" "the finished backup is listed"
assert_eq "pipectl catch-up $FIRE1" "$(jq -r '.backups[0].label' <<<"$OUT")" "catch-up backup label"
[[ $(ls -A "$REPO/backups" | grep -v '^\.lock$' | wc -l) -eq 1 ]] || fail "leftovers in $REPO/backups: $(ls -A "$REPO/backups")"
expect_rc 0 "$PIPECTL" -f "$M" status -o json
assert_eq true "$(jq .healthy <<<"$OUT")" "status after the catch-up backup: $OUT"
assert_eq on_time "$(jq -r .backups.state <<<"$OUT")" "backups.state after the catch-up backup"

# a copy of the repository frozen with only the catch-up backup (for 3.)
REPO2=$BASE/repo-frozen
mkdir -p "$REPO2/backups"
cp -a "$REPO/backups/$ID1" "$REPO2/backups/"
M2=$TEST_TMP/frozen.yaml
manifest "$M2" "$REPO2"

# --- 2. the next minute boundary fires a scheduled backup -------------------------------------------
note "run (all workers) with metrics: waiting for the next minute boundary ($(date -u +%T) now)"
L2=$TEST_TMP/run2.log
"$PIPECTL" -f "$M" run --metrics 127.0.0.1:0 -o json >"$TEST_TMP/run2.json" 2>"$L2" &
P2=$!
wait_log "$L2" "next scheduled backup" 30
wait_log "$L2" "scheduled backup completed" 100 '.reason == "scheduled"'
wait_log "$L2" "expired old backups" 30
DONE2=$(jq -c 'select(.msg == "scheduled backup completed" and .reason == "scheduled")' "$L2" | tail -n1)
ID2=$(jq -r .backup <<<"$DONE2")
FIRE2=$(jq -r .fire_time <<<"$DONE2")
PORT=$(sed -n 's|.*serving metrics at http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$L2" | head -n1)
[[ -n "$PORT" ]] || fail "no metrics port in the log:"$'\n'"$(cat "$L2")"
METRICS=$(curl -fsS "http://127.0.0.1:$PORT/metrics") || fail "GET /metrics failed"
OK_N=$(sed -n 's/^pipectl_records_out_total{worker="backups"} \([0-9]*\)$/\1/p' <<<"$METRICS")
ERR_N=$(sed -n 's/^pipectl_errors_total{worker="backups"} \([0-9]*\)$/\1/p' <<<"$METRICS")
((OK_N >= 1)) || fail "pipectl_records_out_total{worker=\"backups\"} is '$OK_N':"$'\n'"$METRICS"
assert_eq 0 "$ERR_N" "pipectl_errors_total{worker=\"backups\"}"
assert_contains "$METRICS" 'pipectl_worker_running{worker="backups",kind="backup"} 1' "running gauge"
kill -TERM "$P2"
rc=0
timeout 90 tail --pid="$P2" -f /dev/null || fail "run 2 did not exit within 90 s of SIGTERM"
wait "$P2" || rc=$?
assert_eq 0 "$rc" "run 2's exit status after SIGTERM"$'\n'"$(cat "$L2")"
assert_eq 0 "$(log_lines "$L2" "scheduled backup failed; retrying at the next fire time" | wc -l)" "no failed backup"

expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
LIST=$OUT
assert_eq 1 "$(jq '.backups | length' <<<"$LIST")" "retention full: 1 keeps one backup: $LIST"
assert_eq "$ID2" "$(jq -r '.backups[0].id' <<<"$LIST")" "the scheduled backup is the one kept"
assert_eq "pipectl scheduled $FIRE2" "$(jq -r '.backups[0].label' <<<"$LIST")" "scheduled backup label"
[[ ! -e "$REPO/backups/$ID1" ]] || fail "the catch-up backup $ID1 was not expired"
FIRE2_S=$(date -u -d "$FIRE2" +%s)
START2_S=$(date -u -d "$(jq -r '.backups[0].start_time' <<<"$LIST")" +%s)
((START2_S >= FIRE2_S && START2_S <= FIRE2_S + 20)) ||
    fail "scheduled backup started at $(jq -r '.backups[0].start_time' <<<"$LIST"), not at its fire time $FIRE2"
(((FIRE2_S % 60) == 0)) || fail "fire time $FIRE2 is not a minute boundary"
note "fired at $FIRE2, backup $ID2 started $((START2_S - FIRE2_S)) s later"

# --- 3. status judges a backup older than the schedule allows ---------------------------------------
while (($(date +%s) < FIRE2_S + 6)); do sleep 0.5; done
expect_rc 0 "$PIPECTL" -f "$M2" status -o json
assert_eq on_time "$(jq -r .backups.state <<<"$OUT")" "frozen copy with the default grace (1h): $OUT"
expect_rc 1 "$PIPECTL" -f "$M2" status --backup-grace 5s -o json
assert_eq false "$(jq .healthy <<<"$OUT")" "frozen copy, grace 5s: $OUT"
assert_eq late "$(jq -r .backups.state <<<"$OUT")" "frozen copy state"
assert_eq "$ID1" "$(jq -r .backups.newest.id <<<"$OUT")" "frozen copy's newest backup"
assert_contains "$(jq -r .backups.problem <<<"$OUT")" "started at $(date -u -d "@$(date -u -d "$(jq -r .backups.newest.start_time <<<"$OUT")" +%s)" +%Y-%m-%dT%H:%M:%SZ), before the scheduled time" "late problem text"
expect_rc 1 "$PIPECTL" -f "$M2" status --backup-grace 5s
assert_contains "$OUT" "schedule  UNHEALTHY: the newest backup ($ID1)" "status text when late"
note "backup schedule: OK in $((SECONDS - T0)) s"
