#!/usr/bin/env bash
# test_backup_s3_faults.sh: a backup repository on S3 when things go wrong, against a real s3proxy
# (the `s3` fixture, stopped and started again here: hence serial) and a real PostgreSQL 15 (a
# private cluster archiving through the archive_command `pipectl apply` sets, as the `postgres`
# OS user when run as root).
#
# Asserts on what lands:
#   - s3proxy stopped in the middle of a base backup (frozen once the server has streamed 24 MB
#     of the ~100 MB data directory, then stopped): create fails and says why, naming the
#     repository; no backup is listed and no pipectl.json object exists; after s3proxy is back
#     the next backup succeeds and verifies;
#   - s3proxy stopped while PostgreSQL archives: archive_command fails (pg_stat_archiver's
#     failed_count grows, the segment stays in pg_wal with .ready, no object), the server log
#     says why; after the restart archiving catches up: every segment from the backup's start to
#     the last switched one is an object (no gap), verify is intact and a restore --latest holds
#     every committed row (count and checksum), those committed during the outage included;
#   - wrong credentials and a missing bucket: one clear error naming the repository (and never
#     the secret), from backup list, backup create and wal-push;
#   - a segment re-pushed with different bytes: exit 1, "different content", the stored object
#     byte-identical to before; an identical re-push succeeds.
# pc-test: s3
# pc-test: serial
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"
T0=$SECONDS
s3_env
# whatever happens, the fixture's server is left running (and not frozen) for the tests after this one
defer 'kill -CONT "$(cat "$PC_S3_DIR/s3proxy.pid" 2>/dev/null)" 2>/dev/null; s3_up'

archive_cluster s3fault
PREFIX="e2e-$TEST_ID/faults"
URI="s3://$PC_S3_BUCKET/$PREFIX"
OBJ=$PC_S3_DIR/data/$PC_S3_BUCKET/$PREFIX
CREDS=$BASE/creds.env
defer "rm -rf '$PC_S3_DIR/data/$PC_S3_BUCKET/e2e-$TEST_ID'"
WRONG_SECRET="wrong-$(openssl rand -hex 12)"

M=$TEST_TMP/pipeline.yaml
s3_manifest "$M" s3faults "$URI" "$CREDS" "$SOCK"
rows() { # [PSQL ARGS...]: "count md5-of-every-row" of table t
    local sql="SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ':' || left(v, 40), ',' ORDER BY id)), '-') FROM t"
    if (($# == 0)); then q "$sql"; else timeout 30 "$PG_BIN/psql" -XAtq "$@" -c "$sql"; fi
}
switch() { # -> the segment just completed and handed to the archiver
    local seg
    seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
    q "SELECT pg_switch_wal()" >/dev/null
    echo "$seg"
}
archiver() { q "SELECT $1 FROM pg_stat_archiver"; }
push() { # wal-push as archive_command runs it: ARGS...
    "$BIN" wal-push --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
        --credentials-file "$CREDS" "$@"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
seg_no() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }

expect_rc 0 "$BIN" -f "$M" backup credentials-file --to "$CREDS"
chown "$PG_OWNER" "$CREDS"
expect_rc 0 "$BIN" -f "$M" apply
AC=$(q "SHOW archive_command")
assert_contains "$AC" "wal-push --repository '$URI' --s3-endpoint '$PC_S3_ENDPOINT'" "archive_command set by apply"
assert_not_contains "$AC" "$PC_S3_SECRET_ACCESS_KEY" "archive_command"

# ~100 MB of table: a base backup long enough to stop the server in its middle
q "CREATE TABLE t (id int PRIMARY KEY, v text)" >/dev/null
q "INSERT INTO t SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 80000) g" >/dev/null
F0=$(switch)
wait_for 60 "segment $F0 to be archived into $URI" archived_up_to "$F0"
[[ -s "$OBJ/wal/$F0.zst" ]] || fail "segment $F0 is not an object in the bucket"

# --- s3proxy stopped in the middle of a base backup ---------------------------------------------------
note "s3proxy stopped in the middle of a base backup"
S3PID=$(cat "$PC_S3_DIR/s3proxy.pid")
"$BIN" -f "$M" backup create --compression none --label interrupted >"$TEST_TMP/mid.out" 2>"$TEST_TMP/mid.err" &
BPID=$!
streamed() { (($(q "SELECT coalesce(max(backup_streamed), 0) FROM pg_stat_progress_basebackup") >= 24 << 20)); }
for ((i = 0; i < 600; i++)); do
    streamed && break
    kill -0 "$BPID" 2>/dev/null || break
    sleep 0.05
done
kill -STOP "$S3PID" || fail "cannot freeze s3proxy ($S3PID)"
kill -0 "$BPID" 2>/dev/null || { kill -CONT "$S3PID"; fail "the backup ended before s3proxy could be stopped: $(cat "$TEST_TMP/mid.err")"; }
TOTAL=$(q "SELECT coalesce(max(backup_streamed), 0) FROM pg_stat_progress_basebackup")
s3_down || fail "scripts/s3_stack.sh down failed"
note "s3proxy stopped with the server's base backup after the server streamed $TOTAL bytes of it"
rc=0
timeout 300 tail --pid="$BPID" -f /dev/null || true
wait "$BPID" || rc=$?
MID_ERR=$(cat "$TEST_TMP/mid.err")
((rc != 0)) || fail "backup create succeeded although s3proxy was stopped in its middle: $(cat "$TEST_TMP/mid.out")"
assert_eq "" "$(cat "$TEST_TMP/mid.out")" "stdout of the failed create"
assert_contains "$MID_ERR" "$URI" "the failed create names the repository"
assert_contains "$MID_ERR" "$PC_S3_ENDPOINT" "the failed create names the endpoint"
note "create failed (exit $rc): $MID_ERR"
s3_up || fail "scripts/s3_stack.sh up failed"
expect_rc 0 "$BIN" -f "$M" backup list -o json
assert_eq 0 "$(jq '.backups | length' <<<"$OUT")" "backups listed after the interrupted create: $OUT"
assert_eq "" "$(find "$OBJ" -name pipectl.json)" "pipectl.json objects after the interrupted create"

expect_rc 0 "$BIN" -f "$M" backup create --label after-restart -o json
ID=$(jq -r .id <<<"$OUT")
START_WAL=$(jq -r .start_wal <<<"$OUT")
expect_rc 0 "$BIN" -f "$M" backup list -o json
assert_eq "$ID after-restart" "$(jq -r '[.backups[] | .id, .label] | join(" ")' <<<"$OUT")" "the backup after the restart is listed"
expect_rc 0 "$BIN" -f "$M" backup verify "$ID"
assert_contains "$OUT" "backup $ID is intact" "verify of the backup taken after the restart"
# expire sweeps what the interrupted backup left (an unfinished multipart upload, if any)
expect_rc 0 "$BIN" -f "$M" backup expire --keep 1 -o json
assert_eq 0 "$(jq .backups_removed <<<"$OUT")" "expire --keep 1 with one backup"

# --- s3proxy stopped while PostgreSQL archives ---------------------------------------------------------
note "s3proxy stopped while PostgreSQL archives"
q "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(100001, 101000) g" >/dev/null
A1=$(switch)
wait_for 60 "segment $A1 to be archived" archived_up_to "$A1"
s3_down || fail "scripts/s3_stack.sh down failed"
failed0=$(archiver failed_count)
q "INSERT INTO t SELECT g, 'during the outage' FROM generate_series(200001, 201000) g" >/dev/null
F1=$(switch)
failed_grew() { (($(archiver failed_count) > failed0)); }
wait_for 90 "archiving of $F1 to fail" failed_grew
assert_eq "$F1" "$(archiver last_failed_wal)" "last_failed_wal while s3proxy is down"
[[ -f "$DATA/pg_wal/$F1" && -f "$DATA/pg_wal/archive_status/$F1.ready" ]] ||
    fail "$F1 is not kept in pg_wal with .ready: $(ls "$DATA/pg_wal/archive_status")"
[[ ! -e "$OBJ/wal/$F1.zst" ]] || fail "$F1 is an object although s3proxy was down"
grep -q "wal-push: .*$URI.*$PC_S3_ENDPOINT" "$LOG" ||
    fail "the server log does not say why archiving failed:"$'\n'"$(tail -n 20 "$LOG")"
q "INSERT INTO t SELECT g, 'still during the outage' FROM generate_series(201001, 202000) g" >/dev/null
F2=$(switch)
note "archiving failed $(( $(archiver failed_count) - failed0 )) time(s) while s3proxy was down"
s3_up || fail "scripts/s3_stack.sh up failed"
q "INSERT INTO t SELECT g, 'after the outage' FROM generate_series(300001, 300100) g" >/dev/null
WANT=$(rows)
F3=$(switch)
wait_for 120 "archiving to catch up to $F3" archived_up_to "$F3"
for ((k = $(seg_no "$START_WAL"); k <= $(seg_no "$F3"); k++)); do
    n=$(printf '%s%08X%08X' "${START_WAL:0:8}" $((k / 256)) $((k % 256)))
    [[ -s "$OBJ/wal/$n.zst" ]] || fail "gap: segment $n is not an object ($START_WAL..$F3): $(ls "$OBJ/wal")"
done
expect_rc 0 "$BIN" -f "$M" backup verify -o json "$ID"
assert_eq true "$(jq .intact <<<"$OUT")" "verify after the outage: $OUT"
(($(jq .wal_checked <<<"$OUT") >= $(seg_no "$F3") - $(seg_no "$START_WAL") + 1)) ||
    fail "verify checked $(jq .wal_checked <<<"$OUT") segments, fewer than $START_WAL..$F3"
RDIR=$BASE/restored
defer "as_pg '$PG_BIN/pg_ctl' -D '$RDIR' -m immediate -w -t 20 stop >/dev/null 2>&1"
expect_rc 0 "$BIN" -f "$M" restore --latest --to "$RDIR" --start --wait 120 -o json
assert_eq "$ID" "$(jq -r .backup <<<"$OUT")" "backup restored"
GOT=$(rows -h "$RDIR" -p "$(jq -r .port <<<"$OUT")" -U postgres -d postgres)
assert_eq "$WANT" "$GOT" "rows restored to the latest point after the outage (count md5)"
as_pg "$PG_BIN/pg_ctl" -D "$RDIR" -m fast -w -t 30 stop >/dev/null 2>&1 || true
note "no gap $START_WAL..$F3; restored $GOT"

# --- wrong credentials, missing bucket ------------------------------------------------------------------
note "wrong credentials"
NB=$(find "$OBJ" -type f | wc -l)
expect_rc 1 env PC_E2E_S3_SECRET="$WRONG_SECRET" "$BIN" -f "$M" backup list
assert_contains "$ERR" "$URI" "list with a wrong secret names the repository"
assert_contains "$ERR" "SignatureDoesNotMatch" "list with a wrong secret says what S3 answered"
assert_not_contains "$ERR" "$WRONG_SECRET" "list with a wrong secret"
note "$ERR"
expect_rc 1 env PC_E2E_S3_ID="PCWRONG$TEST_ID" "$BIN" -f "$M" backup create
assert_contains "$ERR" "$URI" "create with a wrong access key id names the repository"
assert_contains "$ERR" "InvalidAccessKeyId" "create with a wrong access key id says what S3 answered"
sed "s/^AWS_SECRET_ACCESS_KEY=.*/AWS_SECRET_ACCESS_KEY=$WRONG_SECRET/" "$CREDS" >"$TEST_TMP/wrong.env"
chmod 600 "$TEST_TMP/wrong.env"
cp "$DATA/pg_wal/$F3" "$TEST_TMP/seg" 2>/dev/null || expect_rc 0 "$BIN" -f "$M" wal-fetch "$F3" "$TEST_TMP/seg"
expect_rc 1 "$BIN" wal-push --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
    --credentials-file "$TEST_TMP/wrong.env" "$TEST_TMP/seg" 0000000100000000000000FE
assert_contains "$ERR" "$URI" "wal-push with a wrong secret names the repository"
assert_not_contains "$ERR" "$WRONG_SECRET" "wal-push with a wrong secret"
assert_eq "$NB" "$(find "$OBJ" -type f | wc -l)" "objects after the refused commands"

note "missing bucket"
NOB="s3://nobucket-$TEST_ID/x"
sed "s|repository: $URI|repository: $NOB|" "$M" >"$TEST_TMP/nobucket.yaml"
expect_rc 1 "$BIN" -f "$TEST_TMP/nobucket.yaml" backup list
assert_contains "$ERR" "$NOB" "list of a missing bucket names the repository"
assert_contains "$ERR" "NoSuchBucket" "list of a missing bucket says what S3 answered"
note "$ERR"
expect_rc 1 "$BIN" -f "$TEST_TMP/nobucket.yaml" backup create
assert_contains "$ERR" "$NOB" "create into a missing bucket names the repository"
expect_rc 1 "$BIN" wal-push --repository "$NOB" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
    --credentials-file "$CREDS" "$TEST_TMP/seg" 0000000100000000000000FE
assert_contains "$ERR" "$NOB" "wal-push into a missing bucket names the repository"
[[ ! -e "$PC_S3_DIR/data/nobucket-$TEST_ID" ]] || fail "a bucket was created by a command"

# --- a segment re-pushed with different bytes -----------------------------------------------------------
note "re-push with different bytes"
expect_rc 0 "$BIN" -f "$M" wal-fetch "$F1" "$TEST_TMP/f1"
before=$(sha "$OBJ/wal/$F1.zst")
expect_rc 0 push "$TEST_TMP/f1" "$F1"
assert_eq "$before" "$(sha "$OBJ/wal/$F1.zst")" "an identical re-push leaves the object as it was"
cp "$TEST_TMP/f1" "$TEST_TMP/f1.other"
printf 'X' | dd of="$TEST_TMP/f1.other" bs=1 seek=8200 conv=notrunc status=none
cmp -s "$TEST_TMP/f1" "$TEST_TMP/f1.other" && fail "the altered copy is identical"
expect_rc 1 push "$TEST_TMP/f1.other" "$F1"
assert_contains "$ERR" "different content" "re-push with different bytes"
assert_contains "$ERR" "$URI" "re-push with different bytes names the repository"
assert_eq "$before" "$(sha "$OBJ/wal/$F1.zst")" "the stored object after a refused re-push"
expect_rc 0 "$BIN" -f "$M" wal-fetch "$F1" "$TEST_TMP/f1.again"
cmp -s "$TEST_TMP/f1" "$TEST_TMP/f1.again" || fail "the archived content of $F1 changed"

note "test_backup_s3_faults: $((SECONDS - T0)) s"
