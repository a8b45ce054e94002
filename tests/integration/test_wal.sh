#!/usr/bin/env bash
# test_wal.sh: `pipectl wal-push` as a real PostgreSQL 15's archive_command and `pipectl
# wal-fetch` as its restore side. Runs its own throwaway cluster (archive_mode needs a restart and
# a private repository; the shared stack is left alone), as the `postgres` OS user when run as
# root so that a root-owned repository directory really is unwritable to the archiver.
#
# Asserts on what lands: archived segments exist zstd-compressed and smaller than a segment,
# wal-fetch gives back byte-identical files, a different file under an archived name is refused
# and changes nothing, missing names exit 1, corrupt copies exit > 125, a repository that cannot
# be written makes archiving fail (the segment stays in pg_wal with .ready), and after the
# repository is fixed archiving catches up with no gap. wal-push reads a bounded source: /dev/zero
# and a FIFO are refused at once (they used to run until killed, leaving a .tmp file), and a real
# segment one byte longer than the segment size its own first page states is refused, leaving
# nothing in the repository.
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"

# --- command line -----------------------------------------------------------------------------
for c in wal-push wal-fetch; do
    expect_rc 0 "$PIPECTL" "$c" --help
    assert_contains "$OUT" "Usage: pipectl [-f FILE] $c" "$c --help"
done
expect_rc 1 "$PIPECTL" wal-push --no-such-option a b
assert_contains "$ERR" "Try 'pipectl wal-push --help'" "wal-push bad option"
expect_rc 1 "$PIPECTL" wal-push --repository /nonexistent onlyone
assert_contains "$ERR" "expected 2 arguments" "wal-push with one argument"
# restore_command must never exit 1 ("no such file": recovery ends) for a mistake of ours
expect_rc 200 "$PIPECTL" wal-fetch --no-such-option a b
expect_rc 200 "$PIPECTL" wal-fetch --repository /nonexistent onlyone

# --- a private cluster ------------------------------------------------------------------------
archive_cluster wal "" "archive_timeout = 5s"
archiver() { q "SELECT $1 FROM pg_stat_archiver"; }
# switch_wal: writes some rows, switches to a new segment and prints the finished segment's name.
switch_wal() {
    q "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g" >/dev/null
    q "SELECT pg_walfile_name(pg_switch_wal())"
}
no_ready() { ! compgen -G "$DATA/pg_wal/archive_status/*.ready" >/dev/null; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
flip_byte() { # FILE OFFSET: changes one byte in place
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf '%02x' $(((b + 1) % 256)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

SEGSIZE=$(q "SELECT setting::bigint * (CASE unit WHEN '8kB' THEN 8192 WHEN 'B' THEN 1 WHEN 'MB' THEN 1048576 END) FROM pg_settings WHERE name = 'wal_segment_size'")
assert_eq 16777216 "$SEGSIZE" "wal_segment_size"
q "CREATE TABLE t (id int, v text)" >/dev/null
# A base backup without WAL (-X none): recovering it later needs every archived segment.
mkdir -m 700 "$BASE/bb" && chown "$PG_OWNER" "$BASE/bb"
as_pg timeout 120 "$PG_BIN/pg_basebackup" -h "$SOCK" -p 5432 -U postgres -D "$BASE/bb" -X none -c fast \
    >"$BASE/bb.log" 2>&1 || { cat "$BASE/bb.log" >&2; fail "pg_basebackup failed"; }

# --- archiving works and lands compressed --------------------------------------------------------
note "archiving three switched segments"
NAMES=()
for _ in 1 2 3; do NAMES+=("$(switch_wal)"); done
wait_for 60 "segment ${NAMES[2]} to be archived" archived_up_to "${NAMES[2]}"
assert_eq 0 "$(archiver failed_count)" "pg_stat_archiver.failed_count with a healthy repository"
(($(archiver archived_count) >= 3)) || fail "archived_count $(archiver archived_count) < 3"
CMPS=0
mkdir -p "$TEST_TMP/fetched"
for n in "${NAMES[@]}"; do
    f="$REPO/wal/$n.zst"
    [[ -f "$f" ]] || fail "segment $n is not in the repository: $(ls "$REPO/wal")"
    size=$(stat -c %s "$f")
    ((size < SEGSIZE)) || fail "archived $n is $size bytes: not compressed"
    [[ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' ')" == 28b52ffd ]] || fail "$f does not start with a zstd frame"
    expect_rc 0 "$PIPECTL" wal-fetch --repository "$REPO" "$n" "$TEST_TMP/fetched/$n"
    assert_eq "$SEGSIZE" "$(stat -c %s "$TEST_TMP/fetched/$n")" "size of fetched $n"
    if [[ -f "$DATA/pg_wal/$n" ]]; then
        cmp -s "$DATA/pg_wal/$n" "$TEST_TMP/fetched/$n" || fail "wal-fetch of $n differs from pg_wal/$n"
        CMPS=$((CMPS + 1))
    fi
    if command -v zstd >/dev/null; then # the stored file is a plain .zst for other tools too
        zstd -qdc "$f" | cmp -s - "$TEST_TMP/fetched/$n" || fail "zstd -d of $f differs from wal-fetch"
    fi
done
((CMPS > 0)) || fail "no archived segment was still in pg_wal to compare with"
note "$CMPS fetched segment(s) byte-identical to pg_wal"

# --- re-push: identical is fine, different is refused --------------------------------------------
N0=${NAMES[0]}
before=$(sha "$REPO/wal/$N0.zst")
expect_rc 0 "$PIPECTL" wal-push --repository "$REPO" "$TEST_TMP/fetched/$N0" "$N0"
cp "$TEST_TMP/fetched/$N0" "$TEST_TMP/other"
flip_byte "$TEST_TMP/other" 8200
expect_rc 1 "$PIPECTL" wal-push --repository "$REPO" "$TEST_TMP/other" "$N0"
assert_contains "$ERR" "wal-push: $N0 is already archived in $REPO with different content" "conflict message"
assert_contains "$ERR" "$(sha "$TEST_TMP/fetched/$N0")" "conflict message names the archived sha256"
assert_contains "$ERR" "$(sha "$TEST_TMP/other")" "conflict message names the new sha256"
assert_contains "$ERR" "refusing to overwrite archived history" "conflict message"
assert_eq "$before" "$(sha "$REPO/wal/$N0.zst")" "archived copy unchanged after a refused push"
expect_rc 0 "$PIPECTL" wal-fetch --repository "$REPO" "$N0" "$TEST_TMP/again"
cmp -s "$TEST_TMP/again" "$TEST_TMP/fetched/$N0" || fail "archived content changed after a refused push"

# --- names that are not WAL files never become paths -------------------------------------------
for bad in ../escape "$N0/../../x" 0000000100000000000000ab "$N0.zst" RECOVERYXLOG; do
    expect_rc 1 "$PIPECTL" wal-push --repository "$REPO" "$TEST_TMP/other" "$bad"
    assert_contains "$ERR" "is not a WAL file name" "wal-push $bad"
done
[[ ! -e "$BASE/escape" && ! -e "$REPO/escape" ]] || fail "a bad name escaped the repository"

# --- what wal-push reads is bounded ----------------------------------------------------------------
BR=$TEST_TMP/boundrepo
mkdir -p "$BR"
no_files() { # DIR MSG: nothing at all in DIR/wal (no archived copy, no temporary file)
    [[ -z "$(ls -A "$1/wal" 2>/dev/null)" ]] || fail "$2 left files in $1/wal: $(ls -A "$1/wal")"
}
expect_rc 1 timeout 20 "$PIPECTL" wal-push --repository "$BR" /dev/zero "$N0"
assert_contains "$ERR" "wal-push: /dev/zero is a character device, not a WAL file" "wal-push /dev/zero"
no_files "$BR" "wal-push /dev/zero"
mkfifo "$TEST_TMP/fifo"
expect_rc 1 timeout 20 "$PIPECTL" wal-push --repository "$BR" "$TEST_TMP/fifo" "$N0"
assert_contains "$ERR" "is a FIFO, not a WAL file" "wal-push of a FIFO"
no_files "$BR" "wal-push of a FIFO"
# a real segment: its first page states 16 MiB (wal_segment_size); one byte more is refused
cp "$TEST_TMP/fetched/$N0" "$TEST_TMP/long"
printf 'x' >>"$TEST_TMP/long"
expect_rc 1 timeout 20 "$PIPECTL" wal-push --repository "$BR" "$TEST_TMP/long" "$N0"
assert_contains "$ERR" "$((SEGSIZE + 1)) bytes, more than $SEGSIZE, the segment size its first page states" "wal-push of an oversized segment"
no_files "$BR" "wal-push of an oversized segment"
expect_rc 1 timeout 20 "$PIPECTL" wal-push --repository "$BR" "$TEST_TMP/long" "$N0.partial"
no_files "$BR" "wal-push of an oversized .partial"
# over 1 GiB (sparse) as a .history file: no WAL file is that large
truncate -s $((1024 * 1024 * 1024 + 1)) "$TEST_TMP/huge"
expect_rc 1 timeout 20 "$PIPECTL" wal-push --repository "$BR" "$TEST_TMP/huge" 00000009.history
assert_contains "$ERR" "1073741825 bytes, more than 1073741824" "wal-push of a file over 1 GiB"
no_files "$BR" "wal-push of a file over 1 GiB"
rm -f "$TEST_TMP/huge"
# the real segment at its size is archived as before
expect_rc 0 timeout 60 "$PIPECTL" wal-push --repository "$BR" -o json "$TEST_TMP/fetched/$N0" "$N0"
assert_eq "$SEGSIZE" "$(sed -n 's/^ *"size": \([0-9]*\).*/\1/p' <<<"$OUT")" "size of the pushed segment"
assert_eq "$N0.zst" "$(ls -A "$BR/wal")" "files in $BR/wal"

# --- fetch: missing is a quiet 1, corrupt or unreachable is fatal (> 125) -------------------------
expect_rc 1 "$PIPECTL" wal-fetch --repository "$REPO" 00000001000000FF000000FE "$TEST_TMP/missing"
assert_eq "" "$ERR" "wal-fetch of a missing file is quiet"
[[ ! -e "$TEST_TMP/missing" ]] || fail "wal-fetch of a missing file created the target"

BAD=$TEST_TMP/badrepo
mkdir -p "$BAD/wal"
cp "$REPO/wal/$N0.zst" "$BAD/wal/"
flip_byte "$BAD/wal/$N0.zst" $(($(stat -c %s "$BAD/wal/$N0.zst") / 2))
run "$PIPECTL" wal-fetch --repository "$BAD" "$N0" "$TEST_TMP/corrupt"
((RC > 125)) || fail "wal-fetch of a corrupt copy exited $RC, expected > 125 (stderr: $ERR)"
assert_contains "$ERR" "corrupt" "wal-fetch of a corrupt copy"
[[ ! -e "$TEST_TMP/corrupt" ]] || fail "wal-fetch of a corrupt copy left the target behind"
run "$PIPECTL" wal-fetch --repository "$BASE/no-such-repo" "$N0" "$TEST_TMP/x"
((RC > 125)) || fail "wal-fetch from a missing repository exited $RC, expected > 125"
assert_contains "$ERR" "$BASE/no-such-repo" "the message names the repository"

# --- the repository from the manifest (what `apply` puts in archive_command) --------------------
M=$TEST_TMP/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: waltest}
kafka:
  bootstrap: 127.0.0.1:9
  topics:
    - {name: wal_test_unused, partitions: 1}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres"
  schemas:
    - name: app
      tables:
        - name: t
          columns:
            - {name: id, type: integer, primary_key: true}
  archiving: {enabled: true, repository: ./walrepo, archive_timeout: 60s}
YAML
mkdir "$TEST_TMP/walrepo"
(cd / && expect_rc 0 "$PIPECTL" -f "$M" wal-push "$TEST_TMP/fetched/$N0" "$N0")
[[ -f "$TEST_TMP/walrepo/wal/$N0.zst" ]] || fail "wal-push -f MANIFEST did not store into archiving.repository (relative to the manifest)"
(cd / && expect_rc 0 "$PIPECTL" wal-fetch -f "$M" "$N0" "$TEST_TMP/via-manifest")
cmp -s "$TEST_TMP/via-manifest" "$TEST_TMP/fetched/$N0" || fail "wal-fetch -f MANIFEST content differs"

# --- an unwritable repository: archiving fails loudly and keeps the segment ----------------------
note "repository made unwritable for $PG_OWNER"
if [[ $(id -u) -eq 0 ]]; then
    chown root:root "$REPO/wal" && chmod 755 "$REPO/wal"
else
    chmod 555 "$REPO/wal"
fi
failed0=$(archiver failed_count)
F1=$(switch_wal)
failed_grew() { (($(archiver failed_count) > failed0)); }
wait_for 60 "archiving of $F1 to fail" failed_grew
[[ -f "$DATA/pg_wal/$F1" ]] || fail "$F1 left pg_wal although archiving failed"
[[ -f "$DATA/pg_wal/archive_status/$F1.ready" ]] || fail "$F1 has no .ready file: $(ls "$DATA/pg_wal/archive_status")"
[[ ! -e "$REPO/wal/$F1.zst" ]] || fail "$F1 is in the repository although it was unwritable"
assert_eq "$F1" "$(archiver last_failed_wal)" "last_failed_wal"
grep -q "wal-push: cannot write to backup repository directory $REPO/wal" "$LOG" ||
    fail "the server log does not show why archiving failed:"$'\n'"$(tail -n 20 "$LOG")"
F2=$(switch_wal)

note "repository fixed: archiving catches up"
if [[ $(id -u) -eq 0 ]]; then
    chown "$PG_OWNER" "$REPO/wal" && chmod 750 "$REPO/wal"
else
    chmod 750 "$REPO/wal"
fi
F3=$(switch_wal) # the new .ready wakes the archiver, which retries the oldest first
wait_for 120 "archiving to catch up to $F3" archived_up_to "$F3"
wait_for 60 "every .ready file to be archived" no_ready
for n in "$F1" "$F2" "$F3"; do
    [[ -f "$REPO/wal/$n.zst" ]] || fail "$n is not in the repository after catching up"
done

# --- no gap: every segment from the first archived to the last is there -------------------------
mapfile -t SEGS < <(cd "$REPO/wal" && ls | sed -n 's/^\([0-9A-F]\{24\}\)\.zst$/\1/p' | sort)
((${#SEGS[@]} >= 6)) || fail "only ${#SEGS[@]} segments archived: ${SEGS[*]}"
seg_no() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }
first=$(seg_no "${SEGS[0]}") last=$(seg_no "${SEGS[-1]}")
assert_eq $((last - first + 1)) "${#SEGS[@]}" "archived segments ${SEGS[0]}..${SEGS[-1]} without a gap (${SEGS[*]})"
for n in "${SEGS[@]}"; do
    [[ "${n:0:8}" == 00000001 ]] || fail "unexpected timeline in $n"
    expect_rc 0 "$PIPECTL" wal-fetch --repository "$REPO" "$n" "$TEST_TMP/check"
done
if ls -A "$REPO/wal" | grep -q '^\.'; then fail "temporary files left in $REPO/wal: $(ls -A "$REPO/wal")"; fi
note "${#SEGS[@]} segments archived without a gap, all verified; failed_count $(archiver failed_count)"

# --- wal-fetch as a real restore_command: the base backup recovers every row --------------------
ROWS=$(q "SELECT count(*) FROM t")
R=$BASE/bb SOCK2=$BASE/sock2
mkdir -p "$SOCK2" && chown "$PG_OWNER" "$SOCK2"
cat >>"$R/postgresql.auto.conf" <<EOF
unix_socket_directories = '$SOCK2'
archive_mode = off
restore_command = '$BIN wal-fetch --repository $REPO %f %p'
EOF
touch "$R/recovery.signal" "$BASE/restore.log" && chown "$PG_OWNER" "$R/recovery.signal" "$BASE/restore.log"
as_pg "$PG_BIN/pg_ctl" -D "$R" -l "$BASE/restore.log" -w -t 60 start >/dev/null ||
    { tail -n 30 "$BASE/restore.log" >&2; fail "the restored cluster did not start"; }
defer "as_pg '$PG_BIN/pg_ctl' -D '$R' -m immediate -w -t 20 stop >/dev/null 2>&1"
q2() { timeout 60 "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$SOCK2" -p 5432 -U postgres -d postgres -c "$1"; }
promoted() { [[ "$(q2 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; }
wait_for 120 "recovery from the archive to finish" promoted
assert_eq "$ROWS" "$(q2 "SELECT count(*) FROM t")" "rows recovered through wal-fetch"
grep -q "restored log file \"${SEGS[-1]}\" from archive" "$BASE/restore.log" ||
    fail "recovery did not fetch ${SEGS[-1]}:"$'\n'"$(tail -n 20 "$BASE/restore.log")"
if grep -q "wal-fetch:" "$BASE/restore.log"; then
    fail "wal-fetch complained during recovery:"$'\n'"$(grep wal-fetch: "$BASE/restore.log")"
fi
note "recovered $ROWS rows from the base backup and ${#SEGS[@]} archived segments"
