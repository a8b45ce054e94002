#!/usr/bin/env bash
# test_backup_retention.sh: retention with N+2 backups, and point-in-time restore into the oldest
# backup retention kept. Own throwaway PostgreSQL 15 cluster archiving with `pipectl wal-push`
# into a private repository (as the `postgres` OS user when run as root).
#
# N = 2 (backups.retention.full in the manifest). Four backups are taken with rows committed
# between them; between backup 3 and backup 4 two batches are committed and the time between
# them recorded. `backup expire` (retention from the manifest) must remove backups 1 and 2 and
# exactly the WAL older than backup 3's start_wal, keep every segment from there to the newest
# (verify of backup 3 intact, no gap), and a restore to the recorded time must pick backup 3 (the
# newest that ended before it) and hold exactly the rows committed by then.
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"
T0=$SECONDS

archive_cluster retention
seg_no() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }
wal_segments() { (cd "$REPO/wal" && ls | sed -n 's/^\([0-9A-F]\{24\}\)\.zst$/\1/p' | sort); }
NEXT_ID=1
insert() { # N rows with the next ids
    q "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($NEXT_ID, $((NEXT_ID + $1 - 1))) g" >/dev/null
    NEXT_ID=$((NEXT_ID + $1))
}

M=$TEST_TMP/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: retention}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres"
  archiving: {enabled: true, repository: $REPO}
backups:
  schedule: "0 3 * * *"
  retention: {full: 2}
YAML

q "CREATE TABLE t (id int PRIMARY KEY, v text)" >/dev/null
declare -a IDS
for b in 1 2 3 4; do
    insert 500
    q "SELECT pg_switch_wal()" >/dev/null
    if ((b == 4)); then
        # between backups 3 and 4: batch A, the recorded time, batch B
        insert 700
        WANT=$((NEXT_ID - 1))
        TA=$(q "SELECT clock_timestamp()::text")
        sleep 0.3
        insert 300
        q "SELECT pg_switch_wal()" >/dev/null
    fi
    expect_rc 0 "$PIPECTL" -f "$M" backup create --label "b$b" -o json
    IDS[b]=$(jq -r .id <<<"$OUT")
    note "backup $b: ${IDS[b]} $(jq -r '.start_wal + ".." + .stop_wal' <<<"$OUT")"
    ((b == 3)) && sleep 1.1 # TA must be after backup 3's stop_time (whole seconds)
done
insert 200
LAST=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
q "SELECT pg_switch_wal()" >/dev/null
wait_for 60 "segment $LAST to be archived" archived_up_to "$LAST"

expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq 4 "$(jq '.backups | length' <<<"$OUT")" "backups before expire"
KEEP_FROM=$(jq -r '.backups[2].start_wal' <<<"$OUT")
mapfile -t BEFORE < <(wal_segments)
GONE=0
for n in "${BEFORE[@]}"; do (($(seg_no "$n") < $(seg_no "$KEEP_FROM"))) && GONE=$((GONE + 1)); done
((GONE > 0)) || fail "no segment older than $KEEP_FROM: ${BEFORE[*]}"

# --- expire with the manifest's retention (full: 2) ------------------------------------------------
expect_rc 0 "$PIPECTL" -f "$M" backup expire -o json
assert_eq 2 "$(jq .backups_removed <<<"$OUT")" "backups_removed: $OUT"
assert_eq "$KEEP_FROM" "$(jq -r .oldest_wal_kept <<<"$OUT")" "oldest_wal_kept"
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq "${IDS[3]} ${IDS[4]}" "$(jq -r '[.backups[].id] | join(" ")' <<<"$OUT")" "backups kept"
assert_eq "b3 b4" "$(jq -r '[.backups[].label] | join(" ")' <<<"$OUT")" "labels kept"
[[ ! -e "$REPO/backups/${IDS[1]}" && ! -e "$REPO/backups/${IDS[2]}" ]] || fail "expired backup directories remain"
mapfile -t AFTER < <(wal_segments)
# exactly the older segments went; everything from KEEP_FROM to the newest is contiguous
assert_eq "$((${#BEFORE[@]} - GONE))" "${#AFTER[@]}" "segments left (before: ${#BEFORE[@]}, removed $GONE)"
assert_eq "$KEEP_FROM" "${AFTER[0]}" "oldest segment left"
for ((k = $(seg_no "$KEEP_FROM"); k <= $(seg_no "$LAST"); k++)); do
    n=$(printf '%s%08X%08X' "${KEEP_FROM:0:8}" $((k / 256)) $((k % 256)))
    [[ -f "$REPO/wal/$n.zst" ]] || fail "segment $n, needed by a kept backup, is missing"
done
for b in 3 4; do
    expect_rc 0 "$PIPECTL" -f "$M" backup verify -o json "${IDS[b]}"
    assert_eq true "$(jq .intact <<<"$OUT")" "verify ${IDS[b]} after expire: $OUT"
done

# --- PITR into the oldest kept backup ----------------------------------------------------------------
R=$BASE/restored
defer "as_pg '$PG_BIN/pg_ctl' -D '$R' -m immediate -w -t 20 stop >/dev/null 2>&1"
expect_rc 0 "$BIN" -f "$M" restore --to "$R" --target-time "$TA" --start --wait 120 -o json
assert_eq "${IDS[3]}" "$(jq -r .backup <<<"$OUT")" "restore to $TA picks the oldest kept backup"
PORT=$(jq -r .port <<<"$OUT")
got=$(timeout 30 "$PG_BIN/psql" -XAtq -h "$R" -p "$PORT" -U postgres -d postgres \
    -c "SELECT count(*) || ' ' || max(id) || ' ' || pg_is_in_recovery() FROM t")
assert_eq "$WANT $WANT false" "$got" "rows restored to $TA (count, max id, in recovery)"
note "retention and PITR into the oldest kept backup: OK in $((SECONDS - T0)) s"
