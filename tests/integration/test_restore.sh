#!/usr/bin/env bash
# test_restore.sh: point-in-time restore and backup verify against a real PostgreSQL 15.
# Runs its own throwaway cluster (archive_mode=on, archive_command = pipectl wal-push into a
# private repository), as the `postgres` OS user when run as root (like test_wal.sh). Takes a base
# backup with `pipectl backup create`, then inserts rows in batches, recording after each batch
# the time, pg_current_wal_lsn() and the batch's xid, with a WAL switch between batches.
#
# Asserts on what the restored servers hold: restoring to a recorded time, LSN or xid gives
# exactly the rows committed by then (count and max id), --latest every committed row; the proof
# line comes from the server log. Then corruption: a flipped byte in the stored base tar makes
# verify name the file and restore refuse; a WAL segment deleted from the middle makes verify
# report the gap by name.
# pc-test: timeout=600
# pc-test: serial
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"

# --- command line -----------------------------------------------------------------------------
expect_rc 0 "$PIPECTL" restore --help
assert_contains "$OUT" "Usage: pipectl [-f FILE] restore" "restore --help"
expect_rc 1 "$PIPECTL" restore --no-such-option
assert_contains "$ERR" "Try 'pipectl restore --help'" "restore bad option"
expect_rc 1 "$PIPECTL" restore --to /nonexistent/x
assert_contains "$ERR" "give a target" "restore without a target"
expect_rc 1 "$PIPECTL" restore --latest --target-lsn 0/1 --to /nonexistent/x
assert_contains "$ERR" "only one of" "restore with two targets"
expect_rc 1 "$PIPECTL" restore --latest
assert_contains "$ERR" "--to DIR is required" "restore without --to"
expect_rc 1 "$PIPECTL" restore --latest --to /nonexistent/x --port 5555
assert_contains "$ERR" "--port only makes sense with --start" "restore --port without --start"
expect_rc 0 "$PIPECTL" backup verify --help
assert_contains "$OUT" "Usage: pipectl [-f FILE] backup verify" "backup verify --help"
expect_rc 1 "$PIPECTL" backup verify --no-such-option X
assert_contains "$ERR" "Try 'pipectl backup verify --help'" "backup verify bad option"

# --- a private cluster ------------------------------------------------------------------------
archive_cluster restore "" "archive_timeout = 5s"
flip_byte() { # FILE OFFSET
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf '%02x' $(((b + 1) % 256)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

M=$TEST_TMP/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: restoretest}
kafka:
  bootstrap: 127.0.0.1:9
  topics:
    - {name: restore_test_unused, partitions: 1}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres"
  schemas:
    - name: app
      tables:
        - name: t
          columns:
            - {name: id, type: integer, primary_key: true}
  archiving: {enabled: true, repository: $REPO, archive_timeout: 60s}
YAML

# --- base backup, then batches ------------------------------------------------------------------
q "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g" >/dev/null
note "backup create"
expect_rc 0 "$PIPECTL" -f "$M" backup create --repository "$REPO" -o json
ID=$(sed -n 's/^ *"id": "\([^"]*\)".*/\1/p' <<<"$OUT" | head -n1)
[[ -n "$ID" && -f "$REPO/backups/$ID/pipectl.json" ]] || fail "backup create made no backup: $OUT"
START_WAL=$(sed -n 's/^ *"start_wal": "\([^"]*\)".*/\1/p' "$REPO/backups/$ID/pipectl.json")
sleep 1.2 # the recorded times must be after the backup's stop_time (whole seconds)

declare -a T L X N
N[0]=100
for b in 1 2 3; do
    lo=$((100 + (b - 1) * 1000 + 1)) hi=$((100 + b * 1000))
    X[b]=$(q "BEGIN; INSERT INTO t SELECT g, md5(g::text) FROM generate_series($lo, $hi) g; SELECT txid_current(); COMMIT;")
    T[b]=$(q "SELECT clock_timestamp()::text") # server timezone UTC: '2026-11-25 10:35:01.123456+00'
    L[b]=$(q "SELECT pg_current_wal_lsn()")
    N[b]=$hi
    sleep 0.3
    q "SELECT pg_switch_wal()" >/dev/null
done
LAST=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
q "SELECT pg_switch_wal()" >/dev/null
wait_for 60 "segment $LAST to be archived" archived_up_to "$LAST"
note "batches: time ${T[*]} lsn ${L[*]} xid ${X[*]}"

# --- verify: intact -------------------------------------------------------------------------------
expect_rc 0 "$PIPECTL" backup verify --repository "$REPO" "$ID"
assert_contains "$OUT" "backup $ID is intact" "verify of a fresh backup"
expect_rc 0 "$PIPECTL" backup verify --repository "$REPO" -o json "$ID"
assert_contains "$OUT" '"intact": true' "verify -o json"
assert_contains "$OUT" '"problems": []' "verify -o json problems"

# --- restores ----------------------------------------------------------------------------------
RN=0
# restore_check NAME EXPECTED_MAX_ID ARGS...: restore --start into a fresh dir, assert rows.
restore_check() {
    local name=$1 want=$2 dir port proof
    shift 2
    RN=$((RN + 1))
    dir=$BASE/r$RN
    defer "as_pg '$PG_BIN/pg_ctl' -D '$dir' -m immediate -w -t 20 stop >/dev/null 2>&1"
    expect_rc 0 "$BIN" restore --repository "$REPO" --to "$dir" --start --wait 120 -o json "$@"
    assert_contains "$OUT" "\"backup\": \"$ID\"" "$name: backup used"
    port=$(sed -n 's/^ *"port": \([0-9]*\).*/\1/p' <<<"$OUT")
    proof=$(sed -n 's/^ *"proof": "\(.*\)".*/\1/p' <<<"$OUT")
    [[ -n "$port" ]] || fail "$name: no port in $OUT"
    local got
    got=$(timeout 30 "$PG_BIN/psql" -XAtq -h "$dir" -p "$port" -U postgres -d postgres \
        -c "SELECT count(*) || ' ' || max(id) || ' ' || pg_is_in_recovery() FROM t")
    assert_eq "$want $want false" "$got" "$name: rows (count, max id, in recovery)"
    note "$name: $got rows; proof: $proof"
    PROOF=$proof
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}
restore_check "time of batch 1" "${N[1]}" --target-time "${T[1]}"
assert_contains "$PROOF" "recovery stopping before commit of transaction" "proof for a time target"
restore_check "LSN of batch 2" "${N[2]}" --target-lsn "${L[2]}"
assert_contains "$PROOF" "recovery stopping after WAL location (LSN)" "proof for an LSN target"
restore_check "xid of batch 1" "${N[1]}" --target-xid "${X[1]}"
assert_contains "$PROOF" "recovery stopping after commit of transaction ${X[1]}" "proof for an xid target"
restore_check "latest" "${N[3]}" --latest
assert_contains "$PROOF" "archive recovery complete" "proof for latest"
# a target past the archived WAL: recovery ends early, PostgreSQL stops, restore says why
defer "as_pg '$PG_BIN/pg_ctl' -D '$BASE/beyond' -m immediate -w -t 20 stop >/dev/null 2>&1"
expect_rc 1 "$BIN" restore --repository "$REPO" --to "$BASE/beyond" --start --wait 120 --target-lsn 0/7FFFFFF0
assert_contains "$ERR" "recovery ended before configured recovery target was reached" "restore beyond the archive"
# a time with +00:00 and without a zone (UTC) picks the same and restores without --start
T2=${T[2]%+00}
expect_rc 0 "$BIN" restore --repository "$REPO" --to "$BASE/nozone" --target-time "$T2"
grep -q "recovery_target_time = '$T2+00'" "$BASE/nozone/postgresql.auto.conf" ||
    fail "a time without zone was not passed as UTC: $(cat "$BASE/nozone/postgresql.auto.conf")"
[[ -f "$BASE/nozone/recovery.signal" ]] || fail "no recovery.signal"
grep -q "archive_mode = 'off'" "$BASE/nozone/postgresql.auto.conf" || fail "archive_mode not off"
[[ -d "$BASE/nozone/pg_wal" && -z "$(ls -A "$BASE/nozone/pg_wal" | grep -v archive_status)" ]] ||
    fail "pg_wal missing or not empty"
# durable before restore returns: every restored file and directory was fsync'd (strace -y names
# the path behind each fsync'd descriptor)
command -v strace >/dev/null || fail "strace is needed (scripts/setup.sh installs it)"
expect_rc 0 strace -f -y -qq -e trace=fsync -o "$BASE/sync.trace" \
    "$BIN" restore --repository "$REPO" --to "$BASE/synced" --latest
synced=$(sed -n 's/.*fsync([0-9]*<\([^>]*\)>) = 0.*/\1/p' "$BASE/sync.trace" | sort -u)
nfiles=0
while IFS= read -r f; do
    nfiles=$((nfiles + 1))
    grep -qxF -- "$f" <<<"$synced" || fail "restore returned before $f was fsync'd"
done < <(find "$BASE/synced" \( -type f -o -type d \))
((nfiles > 100)) || fail "only $nfiles restored files and directories: not a data directory?"
note "restore fsync'd all $nfiles restored files and directories"

# --- refusals ----------------------------------------------------------------------------------
expect_rc 1 "$BIN" restore --repository "$REPO" --to "$BASE/nozone" --latest
assert_contains "$ERR" "is not empty" "restore into a non-empty directory"
expect_rc 1 "$BIN" restore --repository "$REPO" --to "$BASE/early" --target-time "2000-01-01 00:00:00+00"
assert_contains "$ERR" "no backup ended before 2000-01-01 00:00:00+00; the oldest ($ID) ended at" "a time before every backup"
[[ ! -e "$BASE/early" ]] || fail "a refused restore left $BASE/early behind"
expect_rc 1 "$BIN" restore --repository "$REPO" --to "$BASE/nope" --latest --backup 20000101T000000Z
assert_contains "$ERR" "backup 20000101T000000Z not found in repository $REPO" "restore --backup of an unknown ID"
expect_rc 1 "$BIN" restore --repository "$REPO" --to "$BASE/nope" --target-time "yesterday"
assert_contains "$ERR" "target time 'yesterday' is not" "restore with a bad time"
expect_rc 1 "$PIPECTL" backup verify --repository "$REPO" 20000101T000000Z
assert_contains "$ERR" "backup 20000101T000000Z not found" "verify of an unknown ID"

# --- a later timeline: verify follows the archived .history file ----------------------------------
# A restored copy that archives into the same repository (what --start avoids by default) makes
# timeline 2 there; verify must check its segments too and name a gap in them.
TL=$BASE/tl2
expect_rc 0 "$BIN" restore --repository "$REPO" --to "$TL" --latest
cat >>"$TL/postgresql.auto.conf" <<CONF
archive_mode = 'on'
archive_command = '$BIN wal-push --repository $REPO %p %f'
listen_addresses = ''
unix_socket_directories = '$TL'
port = 5432
CONF
chown -R "$PG_OWNER" "$TL"
defer "as_pg '$PG_BIN/pg_ctl' -D '$TL' -m immediate -w -t 20 stop >/dev/null 2>&1"
as_pg "$PG_BIN/pg_ctl" -D "$TL" -l "$TL/tl.log" -w -t 60 start >/dev/null ||
    { tail -n 30 "$TL/tl.log" >&2; fail "the timeline-2 copy did not start"; }
q3() { timeout 60 "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$TL" -p 5432 -U postgres -d postgres -c "$1"; }
promoted3() { [[ "$(q3 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
wait_for 60 "the timeline-2 copy to be promoted" promoted3
for i in 1 2 3; do
    q3 "INSERT INTO t SELECT g, 'tl2' FROM generate_series(100000 + $i * 1000, 100000 + $i * 1000 + 999) g" >/dev/null
    if ((i == 2)); then # a point on timeline 2 for the second PITR below
        TL2T=$(q3 "SELECT clock_timestamp()::text")
        sleep 0.3
    fi
    TL2LAST=$(q3 "SELECT pg_walfile_name(pg_current_wal_lsn())")
    q3 "SELECT pg_switch_wal()" >/dev/null
done
tl2_archived() { local l; l=$(q3 "SELECT last_archived_wal FROM pg_stat_archiver"); [[ -n "$l" && ! "$l" < "$TL2LAST" ]]; }
wait_for 60 "timeline 2 segment $TL2LAST to be archived" tl2_archived
[[ -f "$REPO/wal/00000002.history.zst" ]] || fail "no 00000002.history in the repository: $(ls "$REPO/wal")"
mapfile -t TL2 < <(cd "$REPO/wal" && ls | sed -n 's/^\(00000002[0-9A-F]\{16\}\)\.zst$/\1/p' | sort)
((${#TL2[@]} >= 3)) || fail "expected 3 timeline-2 segments, got ${TL2[*]}"
expect_rc 0 "$PIPECTL" backup verify --repository "$REPO" -o json "$ID"
WALN=$(sed -n 's/^ *"wal_checked": \([0-9]*\).*/\1/p' <<<"$OUT")
((WALN >= ${#TL2[@]} + 4)) || fail "verify checked $WALN segments: timeline 2 (${TL2[*]}) not followed"
mv "$REPO/wal/${TL2[1]}.zst" "$BASE/${TL2[1]}.saved"
expect_rc 1 "$PIPECTL" backup verify --repository "$REPO" "$ID"
assert_contains "$OUT" "wal ${TL2[1]}: missing (gap between ${TL2[0]} and ${TL2[2]})" "verify reports a gap on timeline 2"
mv "$BASE/${TL2[1]}.saved" "$REPO/wal/${TL2[1]}.zst"
as_pg "$PG_BIN/pg_ctl" -D "$TL" -m fast -w -t 30 stop >/dev/null
note "timeline 2 followed: $WALN segments checked"

# --- a second PITR from the same repository after the restore and promotion -------------------------
# The repository now holds timeline 1 and, branching off it, timeline 2 (00000002.history). A
# restore from the timeline-1 backup to a time on timeline 2 must follow the history file
# (recovery_target_timeline = latest) and stop exactly there; one to a time on timeline 1 before
# the branch must still give timeline 1's rows.
pitr_after_promotion() { # NAME WANT_COUNT WANT_MAX WANT_TL2_ROWS ARGS...
    local name=$1 want="$2 $3 $4" dir port got
    shift 4
    RN=$((RN + 1))
    dir=$BASE/r$RN
    defer "as_pg '$PG_BIN/pg_ctl' -D '$dir' -m immediate -w -t 20 stop >/dev/null 2>&1"
    expect_rc 0 "$BIN" restore --repository "$REPO" --to "$dir" --start --wait 120 -o json "$@"
    assert_contains "$OUT" "\"backup\": \"$ID\"" "$name: backup used"
    port=$(sed -n 's/^ *"port": \([0-9]*\).*/\1/p' <<<"$OUT")
    got=$(timeout 30 "$PG_BIN/psql" -XAtq -h "$dir" -p "$port" -U postgres -d postgres \
        -c "SELECT count(*) || ' ' || max(id) || ' ' || count(*) FILTER (WHERE v = 'tl2') FROM t")
    assert_eq "$want" "$got" "$name: rows (count, max id, timeline-2 rows)"
    TLID=$(timeout 30 "$PG_BIN/psql" -XAtq -h "$dir" -p "$port" -U postgres -d postgres \
        -c "SELECT timeline_id FROM pg_control_checkpoint()")
    note "$name: $got; now on timeline $TLID"
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}
pitr_after_promotion "time on timeline 2" $((N[3] + 2000)) 102999 2000 --target-time "$TL2T"
((TLID >= 3)) || fail "a restore onto timeline 2 promoted to timeline $TLID, expected a new one after 2"
pitr_after_promotion "time of batch 1, after timeline 2 exists" "${N[1]}" "${N[1]}" 0 --target-time "${T[1]}"

# --- corruption: a WAL segment missing from the middle --------------------------------------------
mapfile -t SEGS < <(cd "$REPO/wal" && ls | sed -n "s/^\(${START_WAL:0:8}[0-9A-F]\{16\}\)\.zst\$/\1/p" | sort | awk -v s="$START_WAL" '$0 >= s')
((${#SEGS[@]} >= 4)) || fail "expected at least 4 segments from $START_WAL, got ${SEGS[*]}"
MID=${SEGS[2]}
mv "$REPO/wal/$MID.zst" "$BASE/$MID.zst.saved"
expect_rc 1 "$PIPECTL" backup verify --repository "$REPO" "$ID"
assert_contains "$OUT" "wal $MID: missing (gap between ${SEGS[1]} and ${SEGS[3]})" "verify reports the WAL gap"
assert_contains "$ERR" "is NOT intact" "verify summary"
mv "$BASE/$MID.zst.saved" "$REPO/wal/$MID.zst"
# a corrupt segment is named too
cp "$REPO/wal/$MID.zst" "$BASE/$MID.zst.saved"
flip_byte "$REPO/wal/$MID.zst" 100
expect_rc 1 "$PIPECTL" backup verify --repository "$REPO" "$ID"
assert_contains "$OUT" "wal $MID:" "verify reports the corrupt WAL segment"
note "verify of a corrupt segment: $OUT"
cp "$BASE/$MID.zst.saved" "$REPO/wal/$MID.zst"
expect_rc 0 "$PIPECTL" backup verify --repository "$REPO" "$ID"

# --- corruption: one byte of the stored base tar ----------------------------------------------------
BT=$(cd "$REPO/backups/$ID" && ls base.tar*)
flip_byte "$REPO/backups/$ID/$BT" $(($(stat -c %s "$REPO/backups/$ID/$BT") / 2))
expect_rc 1 "$PIPECTL" backup verify --repository "$REPO" -o json "$ID"
assert_contains "$OUT" '"intact": false' "verify -o json of a corrupt backup"
assert_contains "$OUT" "$BT: checksum mismatch" "verify names the corrupt base file"
note "verify of the corrupt base tar: $(head -c 600 <<<"$OUT")"
expect_rc 1 "$BIN" restore --repository "$REPO" --to "$BASE/corrupt" --latest
assert_contains "$ERR" "backup $ID is corrupt, refusing to restore it: $BT: checksum mismatch" "restore refuses a corrupt backup"
[[ ! -e "$BASE/corrupt" ]] || fail "a refused restore left $BASE/corrupt behind"
note "verify and restore refused the corrupt backup"

# --- backup_manifest layer: a member changed inside an uncompressed tar (stored checksum updated) --
expect_rc 0 "$PIPECTL" -f "$M" backup create --repository "$REPO" --compression none -o json
ID2=$(sed -n 's/^ *"id": "\([^"]*\)".*/\1/p' <<<"$OUT" | head -n1)
D2=$REPO/backups/$ID2
[[ -f "$D2/base.tar" ]] || fail "backup create --compression none stored no base.tar: $(ls "$D2")"
expect_rc 0 "$PIPECTL" backup verify --repository "$REPO" "$ID2"
blk=$(tar --block-number -tvf "$D2/base.tar" | sed -n 's|^block \([0-9]*\): .* global/pg_control$|\1|p')
[[ -n "$blk" ]] || fail "global/pg_control not found in $D2/base.tar"
old=$(sha256sum "$D2/base.tar" | cut -d' ' -f1)
flip_byte "$D2/base.tar" $(((blk + 1) * 512 + 100))
new=$(sha256sum "$D2/base.tar" | cut -d' ' -f1)
sed -i "s/$old/$new/" "$D2/pipectl.json"
expect_rc 1 "$PIPECTL" backup verify --repository "$REPO" "$ID2"
assert_contains "$OUT" "base.tar: member global/pg_control: checksum mismatch" "verify checks members against backup_manifest"
assert_not_contains "$OUT" "base.tar: checksum mismatch" "the stored checksum was updated"
note "member check: $OUT"
