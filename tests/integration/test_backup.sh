#!/usr/bin/env bash
# test_backup.sh: `pipectl backup create|list|expire` against a real PostgreSQL 15 that archives
# into the same repository with `pipectl wal-push`. Runs its own throwaway cluster (archive_mode
# needs a restart; the shared stack is left alone), as the `postgres` OS user when run as root.
#
# Asserts on what lands: three backups with data written in between, listed oldest first with
# increasing LSNs; each directory holds base.tar.zst (a zstd tar of the data directory with the
# backup_manifest inside, its SHA-256 as recorded), backup_manifest and pipectl.json; each
# backup's last WAL segment is in REPO/wal; a second backup while one runs is refused by the
# lock; expire --keep 2 removes the oldest backup and exactly the WAL segments older than the new
# oldest backup's start_wal, never one a kept backup needs; without archiving create refuses
# clearly and leaves nothing behind.
# A damaged pipectl.json (empty, cut short) no longer stops the repository: list, expire and
# status skip that backup with a warning naming it and keep working, verify reports it as not
# intact with the problem listed (text and -o json) and restore --backup refuses it; expire keeps
# every segment the readable backup needs, and removes stale wal-push temporary files (and only
# those).
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"

# --- command line -----------------------------------------------------------------------------
expect_rc 0 "$PIPECTL" backup --help
assert_contains "$OUT" "Usage: pipectl [-f FILE] backup <create|list|verify|expire|credentials-file>" "backup --help"
for c in create list expire; do
    expect_rc 0 "$PIPECTL" backup "$c" --help
    assert_contains "$OUT" "Usage: pipectl [-f FILE] backup $c" "backup $c --help"
    expect_rc 1 "$PIPECTL" backup "$c" --no-such-option
    assert_contains "$ERR" "Try 'pipectl backup $c --help'" "backup $c bad option"
done
expect_rc 1 "$PIPECTL" backup
assert_contains "$ERR" "expected a subcommand" "backup without a subcommand"
expect_rc 1 "$PIPECTL" backup frobnicate
assert_contains "$ERR" "unknown subcommand 'frobnicate'" "backup with an unknown subcommand"
expect_rc 1 "$PIPECTL" backup expire --repository "$TEST_TMP" --keep 0
assert_contains "$ERR" "invalid value '0'" "expire --keep 0"
expect_rc 1 "$PIPECTL" backup list --repository "$TEST_TMP/nope"
assert_contains "$ERR" "$TEST_TMP/nope" "list names a missing repository"

# --- a private cluster archiving into REPO ---------------------------------------------------------
archive_cluster backup
write_rows() { # N: rows of ~1 kB, then a segment switch so the WAL has moved on
    q "INSERT INTO t SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, $1) g" >/dev/null
    q "SELECT pg_switch_wal()" >/dev/null
}
lsn_num() { # 0/2000028 -> decimal
    local hi=${1%/*} lo=${1#*/}
    echo $(((16#$hi << 32) + 16#$lo))
}
seg_no() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }
wal_names() { (cd "$REPO/wal" && ls | sed -n 's/^\([0-9A-F]\{24\}\(\.partial\|\.[0-9A-F]\{8\}\.backup\)\?\)\.zst$/\1/p' | sort); }

M=$TEST_TMP/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: backuptest}
kafka:
  bootstrap: 127.0.0.1:9
  topics:
    - {name: backup_test_unused, partitions: 1}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres password=s3cr3t-not-shown"
  schemas:
    - name: app
      tables:
        - name: t
          columns:
            - {name: id, type: integer, primary_key: true}
  archiving: {enabled: true, repository: $REPO}
backups:
  schedule: "0 3 * * *"
  retention: {full: 2}
  compression: zstd
YAML

q "CREATE TABLE t (id int, v text)" >/dev/null
write_rows 2000

# --- three backups with data in between ----------------------------------------------------------
create() { # LABEL: one backup, JSON on stdout checked
    expect_rc 0 "$PIPECTL" -f "$M" backup create --label "$1" -o json
    assert_eq "$1" "$(jq -r .label <<<"$OUT")" "label of backup $1"
    assert_not_contains "$OUT$ERR" "s3cr3t-not-shown" "backup create output"
}
note "backup 1"
create first
ID1=$(jq -r .id <<<"$OUT")
write_rows 3000

note "backup 2, with a concurrent second create refused by the lock"
"$PIPECTL" -f "$M" backup create --label second >"$TEST_TMP/c1.out" 2>"$TEST_TMP/c1.err" &
P1=$!
"$PIPECTL" -f "$M" backup create --label second >"$TEST_TMP/c2.out" 2>"$TEST_TMP/c2.err" &
P2=$!
rc1=0 rc2=0
wait $P1 || rc1=$?
wait $P2 || rc2=$?
if ((rc1 == 0 && rc2 != 0)); then LOSER=c2; elif ((rc2 == 0 && rc1 != 0)); then LOSER=c1; else
    fail "two concurrent creates: expected exactly one to succeed, got exit $rc1 and $rc2:"$'\n'"$(cat "$TEST_TMP"/c?.err)"
fi
assert_contains "$(cat "$TEST_TMP/$LOSER.err")" "another backup or expire is running on $REPO" "concurrent create"
# and deterministically: a lock held by someone else
exec {LOCKFD}>"$REPO/backups/.lock"
flock -n "$LOCKFD" || fail "cannot take $REPO/backups/.lock in the test"
expect_rc 1 "$PIPECTL" -f "$M" backup create
assert_contains "$ERR" "another backup or expire is running on $REPO" "create while the lock is held"
expect_rc 1 "$PIPECTL" -f "$M" backup expire --keep 1
assert_contains "$ERR" "another backup or expire is running on $REPO" "expire while the lock is held"
exec {LOCKFD}>&-
write_rows 3000

note "backup 3"
create third
ID3=$(jq -r .id <<<"$OUT")

# --- list ----------------------------------------------------------------------------------------
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
LIST=$OUT
assert_eq 3 "$(jq '.backups | length' <<<"$LIST")" "backups listed: $LIST"
assert_eq "$ID1" "$(jq -r '.backups[0].id' <<<"$LIST")" "oldest first"
assert_eq "$ID3" "$(jq -r '.backups[2].id' <<<"$LIST")" "newest last"
assert_eq "first second third" "$(jq -r '[.backups[].label] | join(" ")' <<<"$LIST")" "labels in order"
prev=0
for i in 0 1 2; do
    b=$(jq -c ".backups[$i]" <<<"$LIST")
    id=$(jq -r .id <<<"$b") dir=$(jq -r .dir <<<"$b")
    s=$(lsn_num "$(jq -r .start_lsn <<<"$b")") e=$(lsn_num "$(jq -r .stop_lsn <<<"$b")")
    ((s > prev)) || fail "backup $id starts at $(jq -r .start_lsn <<<"$b"), not after the previous one"
    ((e >= s)) || fail "backup $id stops before it starts"
    prev=$e
    assert_eq "$REPO/backups/$id" "$dir" "backup directory"
    for f in base.tar.zst backup_manifest pipectl.json; do
        [[ -s "$dir/$f" ]] || fail "$dir/$f missing or empty: $(ls -A "$dir")"
    done
    assert_eq 3 "$(ls -A "$dir" | wc -l)" "files in $dir ($(ls -A "$dir"))"
    stop_wal=$(jq -r .stop_wal <<<"$b")
    [[ -f "$REPO/wal/$stop_wal.zst" ]] || fail "backup $id's stop WAL $stop_wal is not in $REPO/wal"
    meta=$dir/pipectl.json
    assert_eq "$(sha256sum "$dir/base.tar.zst" | cut -d' ' -f1)" "$(jq -r '.files["base.tar.zst"]' "$meta")" "sha256 of $id/base.tar.zst"
    assert_eq "$(sha256sum "$dir/backup_manifest" | cut -d' ' -f1)" "$(jq -r '.files.backup_manifest' "$meta")" "sha256 of $id/backup_manifest"
    assert_eq "$(stat -c %s "$dir/base.tar.zst")" "$(jq -r .stored_bytes "$meta")" "stored_bytes of $id"
    assert_eq "$(q 'SELECT system_identifier FROM pg_control_system()')" "$(jq -r .system_identifier "$meta")" "system_identifier"
    assert_eq 1 "$(jq -r .timeline "$meta")" "timeline"
    # the stored file is a zstd tar of the data directory with the manifest inside
    zstd -qdc "$dir/base.tar.zst" >"$TEST_TMP/base.tar" || fail "$dir/base.tar.zst is not zstd"
    members=$(tar -tf "$TEST_TMP/base.tar") || fail "$dir/base.tar.zst is not a tar"
    for mbr in PG_VERSION global/pg_control backup_label backup_manifest; do
        grep -qx "$mbr" <<<"$members" || fail "$mbr is not in $id/base.tar.zst"
    done
    tar -xOf "$TEST_TMP/base.tar" backup_manifest | cmp -s - "$dir/backup_manifest" ||
        fail "$id/backup_manifest differs from the one inside the tar"
    grep -q "LABEL: $(jq -r .label "$meta")" <(tar -xOf "$TEST_TMP/base.tar" backup_label) ||
        fail "backup_label of $id does not carry the label"
    jq -e '.["WAL-Ranges"][0]["Start-LSN"] == "'"$(jq -r .start_lsn "$meta")"'"' "$dir/backup_manifest" >/dev/null ||
        fail "start_lsn of $id differs from its backup_manifest"
done
expect_rc 0 "$PIPECTL" -f "$M" backup list
assert_contains "$OUT" "$ID1" "text list"
assert_contains "$OUT" "WAL RANGE" "text list header"
assert_eq 4 "$(wc -l <<<"$OUT")" "text list lines"

# --- expire --keep 2 -----------------------------------------------------------------------------
B2=$(jq -c '.backups[1]' <<<"$LIST")
KEEP_FROM=$(jq -r .start_wal <<<"$B2")
mapfile -t BEFORE < <(wal_names)
EXPECT_GONE=() EXPECT_KEPT=()
for n in "${BEFORE[@]}"; do
    if (($(seg_no "$n") < $(seg_no "$KEEP_FROM"))); then EXPECT_GONE+=("$n"); else EXPECT_KEPT+=("$n"); fi
done
((${#EXPECT_GONE[@]} > 0)) || fail "no WAL older than $KEEP_FROM to expire: ${BEFORE[*]}"
HIST_BEFORE=$(cd "$REPO/wal" && ls | grep -c 'history' || true)
# what a killed create leaves: a backup directory without pipectl.json (list ignores it)
mkdir "$REPO/backups/20200101T000000Z" && touch "$REPO/backups/20200101T000000Z/base.tar.zst"
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq 3 "$(jq '.backups | length' <<<"$OUT")" "an incomplete backup directory is not listed"
note "expire --keep 2: ${#EXPECT_GONE[@]} WAL file(s) older than $KEEP_FROM should go"
expect_rc 0 "$PIPECTL" -f "$M" backup expire --keep 2 -o json
assert_eq 1 "$(jq .backups_removed <<<"$OUT")" "backups_removed"
assert_eq "${#EXPECT_GONE[@]}" "$(jq .wal_removed <<<"$OUT")" "wal_removed"
assert_eq "$KEEP_FROM" "$(jq -r .oldest_wal_kept <<<"$OUT")" "oldest_wal_kept"
[[ ! -e "$REPO/backups/$ID1" ]] || fail "the oldest backup $ID1 is still there"
[[ ! -e "$REPO/backups/20200101T000000Z" ]] || fail "expire left an incomplete backup directory"
if ls -A "$REPO/backups" | grep -q '^\.expire-'; then fail "expire left a dot directory: $(ls -A "$REPO/backups")"; fi
assert_eq "$(printf '%s\n' "${EXPECT_KEPT[@]}")" "$(wal_names)" "WAL left after expire"
assert_eq "$HIST_BEFORE" "$(cd "$REPO/wal" && ls | grep -c 'history' || true)" ".history files kept"
# every segment each kept backup needs, start_wal..stop_wal, is still there
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq 2 "$(jq '.backups | length' <<<"$OUT")" "backups after expire"
for i in 0 1; do
    sw=$(jq -r ".backups[$i].start_wal" <<<"$OUT") ew=$(jq -r ".backups[$i].stop_wal" <<<"$OUT")
    for ((k = $(seg_no "$sw"); k <= $(seg_no "$ew"); k++)); do
        n=$(printf '%s%08X%08X' "${sw:0:8}" $((k / 256)) $((k % 256)))
        [[ -f "$REPO/wal/$n.zst" ]] || fail "segment $n that a kept backup needs was removed"
    done
done
# retention from the manifest (full: 2): nothing more to remove
expect_rc 0 "$PIPECTL" -f "$M" backup expire
assert_contains "$OUT" "expired 0 backup(s) and 0 WAL file(s)" "second expire"

# --- a damaged pipectl.json: skipped with a warning, never a reason to stop -----------------------
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq 0 "$(jq '.damaged | length' <<<"$OUT")" "no damaged backup yet"
ID2=$(jq -r '.backups[0].id' <<<"$OUT")
META2=$REPO/backups/$ID2/pipectl.json
cp "$META2" "$TEST_TMP/meta2.saved"
B3=$(jq -c '.backups[1]' <<<"$OUT")
KEEP3=$(jq -r .start_wal <<<"$B3")
STOP3=$(jq -r .stop_wal <<<"$B3")
for damage in empty cut; do
    if [[ $damage == empty ]]; then : >"$META2"; else head -c 40 "$TEST_TMP/meta2.saved" >"$META2"; fi
    note "pipectl.json of $ID2 $damage"
    expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
    assert_eq "$ID3" "$(jq -r '[.backups[].id] | join(" ")' <<<"$OUT")" "list with a damaged backup ($damage)"
    assert_eq "$ID2" "$(jq -r '[.damaged[].id] | join(" ")' <<<"$OUT")" "damaged backups listed ($damage)"
    assert_contains "$(jq -r '.damaged[0].problem' <<<"$OUT")" "$META2" "the problem names the file"
    assert_contains "$ERR" "warning: skipped damaged backup $ID2: $META2" "list warns on stderr"
    expect_rc 0 "$PIPECTL" -f "$M" backup list
    assert_contains "$OUT" "$ID3" "text list with a damaged backup"
    assert_not_contains "$OUT" "$ID2" "text list leaves the damaged backup out"
    assert_contains "$ERR" "warning: skipped damaged backup $ID2" "text list warns"
    # verify: not intact, the problem named, exit 1, in JSON and in text
    expect_rc 1 "$PIPECTL" -f "$M" backup verify -o json "$ID2"
    assert_eq false "$(jq .intact <<<"$OUT")" "verify -o json of a damaged backup ($damage)"
    (($(jq '.problems | length' <<<"$OUT") >= 1)) || fail "verify -o json: intact false without problems: $OUT"
    assert_contains "$(jq -r '.problems[0]' <<<"$OUT")" "pipectl.json: $META2" "verify names pipectl.json"
    (($(jq .files_checked <<<"$OUT") >= 1)) || fail "verify did not check the base tar against backup_manifest: $OUT"
    expect_rc 1 "$PIPECTL" -f "$M" backup verify "$ID2"
    assert_contains "$OUT" "pipectl.json: $META2" "text verify names pipectl.json"
    assert_contains "$ERR" "backup $ID2 is NOT intact" "text verify summary"
    assert_not_contains "$OUT" "is intact" "text verify"
    # restore by name refuses it with the reason, and leaves nothing behind
    expect_rc 1 "$BIN" restore --repository "$REPO" --backup "$ID2" --latest --to "$BASE/restore-damaged"
    assert_contains "$ERR" "backup $ID2 is damaged, refusing to restore it: $META2" "restore --backup of a damaged backup"
    [[ ! -e "$BASE/restore-damaged" ]] || fail "a refused restore left $BASE/restore-damaged behind"
done
# status: the newest readable backup is judged, the damaged one named
run "$PIPECTL" -f "$M" --timeout 3 status -o json
jq -e . >/dev/null <<<"$OUT" || fail "status -o json printed no JSON (rc $RC): $OUT $ERR"
assert_eq 1 "$(jq .backups.count <<<"$OUT")" "status: readable backups"
assert_eq "$ID3" "$(jq -r .backups.newest.id <<<"$OUT")" "status: newest readable backup"
assert_eq "$ID2" "$(jq -r '.backups.damaged[0].id' <<<"$OUT")" "status: damaged backup named"
assert_contains "$(jq -r '.backups.damaged[0].problem' <<<"$OUT")" "$META2" "status: the problem names the file"
run "$PIPECTL" -f "$M" --timeout 3 status
assert_contains "$OUT" "warning: skipped damaged backup $ID2: $META2" "status text warns"

# expire keeps working: the damaged backup is neither counted nor removed, the WAL the readable
# backup needs stays, and stale wal-push temporary files go (only those, and only stale ones)
STALE=".$KEEP3.zst.tmp-Ab12Cd" YOUNG=".$STOP3.zst.tmp-Yz98Xw" OTHER=".notours.tmp-abcdef"
for f in "$STALE" "$YOUNG" "$OTHER"; do echo x >"$REPO/wal/$f"; done
touch -d '2 hours ago' "$REPO/wal/$STALE" "$REPO/wal/$OTHER"
mapfile -t BEFORE < <(wal_names)
EXPECT_GONE=()
for n in "${BEFORE[@]}"; do (($(seg_no "$n") < $(seg_no "$KEEP3"))) && EXPECT_GONE+=("$n"); done
expect_rc 0 "$PIPECTL" -f "$M" backup expire --keep 1 -o json
assert_eq 0 "$(jq .backups_removed <<<"$OUT")" "expire with a damaged backup: backups_removed"
assert_eq "$ID2" "$(jq -r '[.damaged[].id] | join(" ")' <<<"$OUT")" "expire names the damaged backup"
assert_contains "$ERR" "warning: skipped damaged backup $ID2" "expire warns on stderr"
assert_eq "$KEEP3" "$(jq -r .oldest_wal_kept <<<"$OUT")" "expire: oldest_wal_kept is the readable backup's start"
assert_eq "${#EXPECT_GONE[@]}" "$(jq .wal_removed <<<"$OUT")" "expire: wal_removed"
assert_eq 1 "$(jq .tmp_removed <<<"$OUT")" "expire: tmp_removed"
[[ -f "$META2" && -f "$REPO/backups/$ID2/base.tar.zst" ]] || fail "expire removed files of the damaged backup $ID2"
[[ ! -e "$REPO/wal/$STALE" ]] || fail "a stale wal-push temporary file was left"
[[ -e "$REPO/wal/$YOUNG" ]] || fail "a young wal-push temporary file (a push in progress) was removed"
[[ -e "$REPO/wal/$OTHER" ]] || fail "a dot file that is not wal-push's was removed"
rm -f "$REPO/wal/$YOUNG" "$REPO/wal/$OTHER"
for ((k = $(seg_no "$KEEP3"); k <= $(seg_no "$STOP3"); k++)); do
    n=$(printf '%s%08X%08X' "${KEEP3:0:8}" $((k / 256)) $((k % 256)))
    [[ -f "$REPO/wal/$n.zst" ]] || fail "segment $n that the readable backup $ID3 needs was removed"
done
expect_rc 0 "$PIPECTL" -f "$M" backup verify -o json "$ID3"
assert_eq true "$(jq .intact <<<"$OUT")" "verify of $ID3 after expiring around a damaged backup: $OUT"
(($(jq .wal_checked <<<"$OUT") >= 1)) || fail "verify of $ID3 checked no WAL: $OUT"
# repaired, it is a backup again (whose older WAL was not kept for it: verify says so)
cp "$TEST_TMP/meta2.saved" "$META2"
expect_rc 0 "$PIPECTL" -f "$M" backup list -o json
assert_eq "$ID2 $ID3" "$(jq -r '[.backups[].id] | join(" ")' <<<"$OUT")" "list after the repair"
assert_eq 0 "$(jq '.damaged | length' <<<"$OUT")" "nothing damaged after the repair"
expect_rc 1 "$PIPECTL" -f "$M" backup verify -o json "$ID2"
assert_eq false "$(jq .intact <<<"$OUT")" "verify of $ID2, whose WAL expire did not keep while it was damaged"
assert_contains "$(jq -r '.problems | join("\n")' <<<"$OUT")" ": missing (" "verify names the WAL $ID2 lacks"

# --- errors: repository missing, archiving off ------------------------------------------------------
expect_rc 1 "$PIPECTL" -f "$M" backup create --repository "$BASE/no-such-repo"
assert_contains "$ERR" "$BASE/no-such-repo" "create into a missing repository"

note "archiving off"
q "ALTER SYSTEM SET archive_mode = off" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 restart >/dev/null ||
    { tail -n 30 "$LOG" >&2; fail "PostgreSQL did not restart"; }
assert_eq off "$(q 'SHOW archive_mode')" "archive_mode after restart"
expect_rc 1 "$PIPECTL" -f "$M" backup create
assert_contains "$ERR" "WAL archiving is not enabled" "create without archiving"
assert_contains "$ERR" "archive_mode = off" "create without archiving names the setting"
assert_not_contains "$ERR" "s3cr3t-not-shown" "error message"
assert_eq 2 "$(ls "$REPO/backups" | wc -l)" "nothing left behind by a refused create ($(ls -A "$REPO/backups"))"
note "backup create/list/expire: OK"
