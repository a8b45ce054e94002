#!/usr/bin/env bash
# test_backup_s3_lock.sh: `pipectl backup create` on an S3 repository that loses its lock IN THE
# MIDDLE of the backup, against a real s3proxy (the `s3` fixture) and a real PostgreSQL 15 (a
# private cluster archiving through the archive_command `pipectl apply` sets).
#
# The create is frozen (SIGSTOP) once the server has streamed 8 MB of its ~100 MB data directory,
# another holder's lock is written over <prefix>/locks/backup.lock with a signed PUT (as another
# host taking it over would: the frozen process is alive, so no pipectl would take it before its
# expiry), then the create goes on. Asserts on what lands:
#   - the create fails, exit 1, naming the repository, the lock object and the new holder
#     ("backup expire" on its host, its pid), and says it stopped before changing anything more;
#   - no pipectl.json (nor any other object of the backup) is left under backups/, `backup list`
#     shows no backup; the new holder's lock object is byte-for-byte the one written (the
#     loser's unlock did not delete it). The binary's refresher runs every 300 s, so here
#     pc_repo_lock_check finds the takeover by its own GET; the refresher's path is
#     s3_repo_test's (test_lock_lost, test_lock_check);
#   - while that holder holds it, another create is refused and names it;
#   - what a create killed between its tar and its pipectl.json leaves (a tar and a
#     backup_manifest, no pipectl.json) is not listed, `backup verify ID` says pipectl.json is
#     missing and that `backup expire` removes it, and the next `backup expire` does; a create then
#     succeeds and is listed.
# Without basebackup.c's pc_repo_lock_check before pipectl.json the first block fails (the create
# exits 0 and publishes the backup under the other holder's lock).
# pc-test: s3
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"
s3_env
# whatever happens, the create is not left frozen
BPID=""
defer '[[ -n "$BPID" ]] && { kill -CONT "$BPID"; kill -KILL "$BPID"; } 2>/dev/null'

archive_cluster s3lock
PREFIX="e2e-$TEST_ID/lockmid"
URI="s3://$PC_S3_BUCKET/$PREFIX"
OBJ=$PC_S3_DIR/data/$PC_S3_BUCKET/$PREFIX
CREDS=$BASE/creds.env
LOCK_URL="$PC_S3_ENDPOINT/$PC_S3_BUCKET/$PREFIX/locks/backup.lock"
defer "rm -rf '$PC_S3_DIR/data/$PC_S3_BUCKET/e2e-$TEST_ID'"

# signed METHOD URL [FILE]: a signed request with the fixture's keys (the secret through a curl
# config on stdin, never on a command line); FILE is the body. Prints the HTTP status.
signed() {
    local method=$1 url=$2 body=${3:-/dev/null}
    printf 'user = "%s:%s"\n' "$PC_S3_ACCESS_KEY_ID" "$PC_S3_SECRET_ACCESS_KEY" |
        timeout 30 curl -sS -K - --aws-sigv4 "aws:amz:$PC_S3_REGION:s3" \
            -H "x-amz-content-sha256: $(sha256sum "$body" | cut -d' ' -f1)" \
            -o "$TEST_TMP/signed.out" -w '%{http_code}' -X "$method" --data-binary "@$body" "$url"
}
objects() { # every object of the backups under the prefix, sorted
    if [[ -d "$OBJ/backups" ]]; then (cd "$OBJ" && find backups -type f | sort); fi
}

M=$TEST_TMP/pipeline.yaml
s3_manifest "$M" s3lock "$URI" "$CREDS" "$SOCK"
expect_rc 0 "$BIN" -f "$M" backup credentials-file --to "$CREDS"
chown "$PG_OWNER" "$CREDS"
expect_rc 0 "$BIN" -f "$M" apply

# ~100 MB of table: a base backup long enough to stop it in its middle
q "CREATE TABLE t (id int PRIMARY KEY, v text)" >/dev/null
q "INSERT INTO t SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 80000) g" >/dev/null
F0=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
q "SELECT pg_switch_wal()" >/dev/null
wait_for 60 "segment $F0 to be archived into $URI" archived_up_to "$F0"

# --- the lock taken over while the backup streams -------------------------------------------------
note "the lock taken over in the middle of a backup create"
"$BIN" -f "$M" backup create --compression none --label lockmid >"$TEST_TMP/mid.out" 2>"$TEST_TMP/mid.err" &
BPID=$!
streamed() { (($(q "SELECT coalesce(max(backup_streamed), 0) FROM pg_stat_progress_basebackup") >= 8 << 20)); }
for ((i = 0; i < 1200; i++)); do
    streamed && break
    kill -0 "$BPID" 2>/dev/null || break
    sleep 0.05
done
kill -STOP "$BPID" 2>/dev/null || fail "the backup ended before it could be stopped: $(cat "$TEST_TMP/mid.err")"
STREAMED=$(q "SELECT coalesce(max(backup_streamed), 0) FROM pg_stat_progress_basebackup")
((STREAMED >= 8 << 20)) || fail "the backup was stopped before it streamed (streamed: $STREAMED bytes)"
# the premise: frozen in the middle (the server still streaming to it, nothing published yet)
sleep 0.5
assert_eq 1 "$(q "SELECT count(*) FROM pg_stat_progress_basebackup WHERE phase = 'streaming database files'")" \
    "base backups still streaming once the create is frozen"
assert_not_contains "$(objects)" pipectl.json "objects when the create is frozen"
# the create's own lock is there: it is what gets taken over
[[ -f "$OBJ/locks/backup.lock" ]] || fail "no lock object while the create runs"
OURS=$(cat "$OBJ/locks/backup.lock")
assert_eq "backup create $BPID" "$(jq -r '.owner + " " + (.pid|tostring)' <<<"$OURS")" "the create's lock"
OTHER_HOST="elsewhere-$TEST_ID"
printf '{"owner":"backup expire","host":"%s","pid":4242,"expires":%d,"token":"%s"}' \
    "$OTHER_HOST" $(($(date +%s) + 600)) "other-holder-$TEST_ID" >"$TEST_TMP/other.lock"
assert_eq 200 "$(signed PUT "$LOCK_URL" "$TEST_TMP/other.lock")" "PUT of the other holder's lock"
cmp -s "$TEST_TMP/other.lock" "$OBJ/locks/backup.lock" || fail "the other holder's lock did not land"
note "create (pid $BPID) frozen after $STREAMED bytes streamed; the lock is now \"backup expire\" on $OTHER_HOST"
kill -CONT "$BPID"
rc=0
wait "$BPID" || rc=$?
BPID=""
MID_ERR=$(cat "$TEST_TMP/mid.err")
note "create: exit $rc: $MID_ERR"
assert_eq 1 "$rc" "exit code of the create that lost its lock (stdout: $(cat "$TEST_TMP/mid.out"))"
assert_eq "" "$(cat "$TEST_TMP/mid.out")" "stdout of the failed create"
assert_contains "$MID_ERR" "$URI" "the error names the repository"
assert_contains "$MID_ERR" "lost its lock locks/backup.lock to \"backup expire\" on $OTHER_HOST (pid 4242" \
    "the error names the lock object and the new holder"
assert_contains "$MID_ERR" "stopped before changing anything more" "the error says nothing more changed"
# what landed: no backup, and the new holder's lock untouched
assert_eq "" "$(objects)" "objects under backups/ after the create lost its lock (no pipectl.json, no tar)"
cmp -s "$TEST_TMP/other.lock" "$OBJ/locks/backup.lock" ||
    fail "the new holder's lock object was changed or deleted: $(cat "$OBJ/locks/backup.lock" 2>&1)"
expect_rc 0 "$BIN" -f "$M" backup list -o json
assert_eq 0 "$(jq '.backups | length' <<<"$OUT")" "backups listed after the create lost its lock: $OUT"

# the new holder still holds it: another create is refused, naming it, and leaves it alone
expect_rc 1 "$BIN" -f "$M" backup create --compression none
assert_contains "$ERR" "is locked by \"backup expire\" (host $OTHER_HOST, pid 4242)" "create while another holds the lock"
cmp -s "$TEST_TMP/other.lock" "$OBJ/locks/backup.lock" || fail "a refused create changed the holder's lock"

# --- what a create killed before its pipectl.json leaves -------------------------------------------
# The other holder finishes (its unlock deletes its lock); a create killed between committing its
# tar and writing pipectl.json leaves the tar and backup_manifest: written here as such.
assert_eq 204 "$(signed DELETE "$LOCK_URL")" "the other holder's unlock"
LEFT=20260101T000000Z
printf 'not a finished tar' >"$TEST_TMP/tar"
printf '{"PostgreSQL-Backup-Manifest-Version": 1}' >"$TEST_TMP/manifest"
assert_eq 200 "$(signed PUT "$PC_S3_ENDPOINT/$PC_S3_BUCKET/$PREFIX/backups/$LEFT/base.tar" "$TEST_TMP/tar")" "PUT leftover tar"
assert_eq 200 "$(signed PUT "$PC_S3_ENDPOINT/$PC_S3_BUCKET/$PREFIX/backups/$LEFT/backup_manifest" "$TEST_TMP/manifest")" "PUT leftover manifest"
assert_eq "backups/$LEFT/backup_manifest"$'\n'"backups/$LEFT/base.tar" "$(objects)" "the leftover's objects"
expect_rc 0 "$BIN" -f "$M" backup list -o json
assert_eq 0 "$(jq '.backups | length' <<<"$OUT")" "a leftover without pipectl.json is not listed: $OUT"
expect_rc 1 "$BIN" -f "$M" backup verify "$LEFT"
assert_contains "$ERR" "backup $LEFT is NOT intact" "verify of the leftover"
assert_contains "$OUT" "$URI/backups/$LEFT/pipectl.json is missing: the backup is incomplete" \
    "verify of the leftover names the missing pipectl.json"
assert_contains "$OUT" "'backup expire' removes it" "verify of the leftover says what to do"
expect_rc 0 "$BIN" -f "$M" backup expire --keep 1 -o json
assert_eq "" "$(objects)" "objects under backups/ after expire swept the leftover"
[[ ! -e "$OBJ/locks/backup.lock" ]] || fail "expire left its lock behind"

# the repository is whole: the next create succeeds and is the one backup listed
expect_rc 0 "$BIN" -f "$M" backup create --compression none --label after -o json
ID=$(jq -r .id <<<"$OUT")
expect_rc 0 "$BIN" -f "$M" backup list -o json
assert_eq "$ID after" "$(jq -r '[.backups[] | .id, .label] | join(" ")' <<<"$OUT")" "the backup after the lost lock is listed"
[[ -s "$OBJ/backups/$ID/pipectl.json" ]] || fail "no pipectl.json for backup $ID"
[[ ! -e "$OBJ/locks/backup.lock" ]] || fail "the successful create left its lock behind"
