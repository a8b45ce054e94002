#!/usr/bin/env bash
# test_archive_failure.sh: the backup repository stops accepting WAL, then comes back.
# Runs its own throwaway PostgreSQL 15 cluster (archive_mode needs a restart; the shared stack is
# left alone) archiving with `pipectl wal-push` into a private repository, as the `postgres` OS
# user when run as root.
#
# How the repository is made unwritable: REPO/wal (where wal-push writes) is moved aside and a
# regular FILE is put in its place. chmod would not do: a test run as root would still write,
# and the test must fail the same way for every user. With a file there, mkdir/open under
# REPO/wal fail with ENOTDIR for root and non-root alike (like a repository whose mount vanished
# and left a stray file, or a mistyped path).
#
# Asserts on what lands:
#   - while broken: a direct `wal-push` of the pending segment exits non-zero naming REPO/wal;
#     the archiver's failed_count grows; PostgreSQL keeps the segment in pg_wal with its
#     archive_status/*.ready file; `status` exits 1, says "archiving FAILING" in text and
#     "failing": true, "healthy": false with the failed segment in -o json;
#   - once the directory is back: archiving catches up (every segment from the backup's start to
#     the last switched one is in REPO/wal, .ready files gone), `backup verify` reports the backup
#     intact with no gap, status is healthy again, and a restore --latest holds every row,
#     including those committed during the outage.
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"
T0=$SECONDS

archive_cluster archfail
failed_at_least() { (($(q "SELECT failed_count FROM pg_stat_archiver") >= $1)); }
switch() { # -> name of the segment just completed (and handed to the archiver)
    local seg
    seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
    q "SELECT pg_switch_wal()" >/dev/null
    echo "$seg"
}

M=$TEST_TMP/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: archfail}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres password=s3cr3t-not-shown"
  archiving:
    enabled: true
    repository: $REPO
    command: "$ARCHIVE_COMMAND"
backups:
  schedule: "0 3 * * *"
  retention: {full: 2}
YAML

# --- healthy: a backup and archiving that works ----------------------------------------------------
q "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g" >/dev/null
expect_rc 1 "$PIPECTL" -f "$M" status -o json
assert_eq "none" "$(jq -r .backups.state <<<"$OUT")" "status before any backup: $OUT"
assert_contains "$(jq -r .backups.problem <<<"$OUT")" "no backup in $REPO" "status names the missing backup"
# a repository nothing was ever archived into: said plainly, not as a listing error
sed "s|repository: $REPO|repository: $BASE/never-archived|" "$M" >"$TEST_TMP/norepo.yaml"
expect_rc 1 "$PIPECTL" -f "$TEST_TMP/norepo.yaml" status
assert_contains "$OUT" "backups   none: the repository $BASE/never-archived does not exist yet" "status without a repository"
expect_rc 0 "$PIPECTL" -f "$M" backup create -o json
ID=$(jq -r .id <<<"$OUT")
START_WAL=$(jq -r .start_wal <<<"$OUT")
expect_rc 0 "$PIPECTL" -f "$M" status -o json
assert_eq true "$(jq .healthy <<<"$OUT")" "status with a fresh backup and working archiving: $OUT"
assert_eq false "$(jq .archiver.failing <<<"$OUT")" "archiver.failing while healthy"
assert_eq "$ID" "$(jq -r .backups.newest.id <<<"$OUT")" "newest backup in status"
assert_eq on_time "$(jq -r .backups.state <<<"$OUT")" "backup state in status"
assert_not_contains "$OUT" "s3cr3t-not-shown" "status -o json"
expect_rc 0 "$PIPECTL" -f "$M" status
assert_contains "$OUT" "pipeline archfail: healthy" "status text"
assert_contains "$OUT" "newest $ID \"pipectl $ID\"" "status text names the newest backup and its label"
assert_contains "$OUT" "schedule  '0 3 * * *' (UTC): on time" "status text schedule"

# --- break the repository ----------------------------------------------------------------------------
note "repository's wal directory replaced by a file"
mv "$REPO/wal" "$REPO/wal.away"
echo "not a directory" >"$REPO/wal"
chown "$PG_OWNER" "$REPO/wal"
FAILED0=$(q "SELECT failed_count FROM pg_stat_archiver")
declare -a OUTAGE
for i in 1 2 3; do
    q "INSERT INTO t SELECT g, 'outage' FROM generate_series(1000 + ($i - 1) * 500 + 1, 1000 + $i * 500) g" >/dev/null
    OUTAGE+=("$(switch)")
done
note "segments written during the outage: ${OUTAGE[*]}"
wait_for 30 "the archiver to report a failure" failed_at_least $((FAILED0 + 1))
FIRST=${OUTAGE[0]}
# PostgreSQL keeps the WAL: the segment and its .ready marker stay in pg_wal
as_pg test -f "$DATA/pg_wal/$FIRST" || fail "pg_wal/$FIRST is gone although it was never archived"
as_pg test -f "$DATA/pg_wal/archive_status/$FIRST.ready" ||
    fail "pg_wal/archive_status/$FIRST.ready missing: $(as_pg ls "$DATA/pg_wal/archive_status")"
# wal-push itself, as the server runs it, fails loudly
expect_rc 1 as_pg "$BIN" wal-push --repository "$REPO" "$DATA/pg_wal/$FIRST" "$FIRST"
assert_contains "$ERR" "$REPO/wal" "wal-push names the repository directory"
note "wal-push while broken: $ERR"
[[ -f "$REPO/wal" ]] || fail "wal-push replaced the file standing in for $REPO/wal"
last_archived=$(q "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
[[ "$last_archived" < "$FIRST" ]] || fail "the archiver claims $last_archived was archived during the outage"
grep -q "archive command failed" "$LOG" || fail "the server log has no 'archive command failed'"

expect_rc 1 "$PIPECTL" -f "$M" status -o json
ST=$OUT
assert_eq false "$(jq .healthy <<<"$ST")" "status healthy while archiving fails: $ST"
assert_eq true "$(jq .archiver.failing <<<"$ST")" "archiver.failing: $ST"
(($(jq .archiver.failed_count <<<"$ST") > FAILED0)) || fail "failed_count did not grow: $ST"
assert_eq "$FIRST" "$(jq -r .archiver.last_failed_wal <<<"$ST")" "last_failed_wal"
# whole seconds in the JSON: equal is possible ("failing" compares the server's full precision)
[[ ! "$(jq -r .archiver.last_failed_time <<<"$ST")" < "$(jq -r .archiver.last_archived_time <<<"$ST")" ]] ||
    fail "last_failed_time is before last_archived_time: $ST"
expect_rc 1 "$PIPECTL" -f "$M" status
assert_contains "$OUT" "pipeline archfail: UNHEALTHY" "status text verdict"
assert_contains "$OUT" "archiving FAILING: the last attempt ($FIRST) failed" "status text says archiving fails"
note "status while failing: $(grep -E 'archiver|FAILING' <<<"$OUT")"
# a backup taken now cannot be restored: create says why at once and leaves nothing behind
expect_rc 1 "$PIPECTL" -f "$M" backup create --archive-wait 3s
assert_contains "$ERR" "$REPO/wal" "create with a broken repository names it"
assert_contains "$ERR" "was removed" "create with a broken repository: the backup is removed"
assert_eq "$ID" "$(ls "$REPO/backups")" "nothing left behind by the failed create"

# --- repair: archiving catches up ---------------------------------------------------------------------
note "repository repaired"
rm "$REPO/wal"
mv "$REPO/wal.away" "$REPO/wal"
q "INSERT INTO t SELECT g, 'after' FROM generate_series(2501, 3000) g" >/dev/null
LAST=$(switch) # a new .ready wakes the archiver at once (it would retry within 60 s anyway)
wait_for 60 "archiving to catch up to $LAST" archived_up_to "$LAST"
for s in "${OUTAGE[@]}" "$LAST"; do
    [[ -f "$REPO/wal/$s.zst" ]] || fail "segment $s was not archived after the repair: $(ls "$REPO/wal")"
    as_pg test ! -f "$DATA/pg_wal/archive_status/$s.ready" || fail "$s.ready still pending"
done
# no gap: every segment from the backup's start to the last one is there
seg_no() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }
for ((k = $(seg_no "$START_WAL"); k <= $(seg_no "$LAST"); k++)); do
    n=$(printf '%s%08X%08X' "${START_WAL:0:8}" $((k / 256)) $((k % 256)))
    [[ -f "$REPO/wal/$n.zst" ]] || fail "gap: $n missing from $REPO/wal"
done
expect_rc 0 "$PIPECTL" -f "$M" backup verify -o json "$ID"
assert_eq true "$(jq .intact <<<"$OUT")" "verify after the repair: $OUT"
assert_eq 0 "$(jq '.problems | length' <<<"$OUT")" "verify problems after the repair"
(($(jq .wal_checked <<<"$OUT") >= $(seg_no "$LAST") - $(seg_no "$START_WAL") + 1)) ||
    fail "verify checked fewer segments than $START_WAL..$LAST: $OUT"
expect_rc 0 "$PIPECTL" -f "$M" status -o json
assert_eq true "$(jq .healthy <<<"$OUT")" "status after the repair: $OUT"
assert_eq false "$(jq .archiver.failing <<<"$OUT")" "archiver.failing after the repair"
assert_eq "$FIRST" "$(jq -r .archiver.last_failed_wal <<<"$OUT")" "the failure stays on record"

# the archive is whole: a restore to the latest point holds every committed row
R=$BASE/restored
defer "as_pg '$PG_BIN/pg_ctl' -D '$R' -m immediate -w -t 20 stop >/dev/null 2>&1"
expect_rc 0 "$BIN" -f "$M" restore --to "$R" --latest --start --wait 120 -o json
PORT=$(jq -r .port <<<"$OUT")
got=$(timeout 30 "$PG_BIN/psql" -XAtq -h "$R" -p "$PORT" -U postgres -d postgres \
    -c "SELECT count(*) || ' ' || max(id) || ' ' || count(*) FILTER (WHERE v = 'outage') FROM t")
assert_eq "3000 3000 1500" "$got" "rows in the restored copy (count, max id, outage rows)"

# --- archive_command failing: create gives up after --archive-wait ---------------------------------
note "archive_command = false"
q "ALTER SYSTEM SET archive_command = 'false'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
t0=$SECONDS
expect_rc 1 "$PIPECTL" -f "$M" backup create --archive-wait 3s
assert_contains "$ERR" "archive_command has been failing for 3 s" "create while archive_command fails"
assert_contains "$ERR" "was removed" "create while archive_command fails: the backup is removed"
((SECONDS - t0 < 30)) || fail "create took $((SECONDS - t0)) s to give up on a failing archiver"
assert_eq "$ID" "$(ls "$REPO/backups")" "nothing left behind by the failed create"

# --- a slow archiver with a backlog: create waits while it makes progress -------------------------
note "slow archiver: 1 s per segment, a backlog of 8 segments, --archive-wait 3s"
q "ALTER SYSTEM SET archive_command = 'sleep 1 && $ARCHIVE_COMMAND'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
for i in $(seq 8); do
    q "INSERT INTO t SELECT g, 'backlog' FROM generate_series(3000 + ($i - 1) * 100 + 1, 3000 + $i * 100) g" >/dev/null
    switch >/dev/null
done
t0=$SECONDS
expect_rc 0 "$PIPECTL" -f "$M" backup create --archive-wait 3s -o json
took=$((SECONDS - t0))
SLOW_ID=$(jq -r .id <<<"$OUT")
STOP_WAL=$(jq -r .stop_wal <<<"$OUT")
((took >= 5)) || fail "the backlog drained in $took s: this case needs it to outlast --archive-wait 3s"
[[ -f "$REPO/wal/$STOP_WAL.zst" ]] || fail "create succeeded but $STOP_WAL is not in $REPO/wal"
[[ -f "$REPO/backups/$SLOW_ID/pipectl.json" ]] || fail "the slow-archiver backup is not complete"
note "create waited $took s for a progressing archiver (window 3 s)"
q "ALTER SYSTEM RESET archive_command" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
note "archive failure and catch-up: OK in $((SECONDS - T0)) s"
