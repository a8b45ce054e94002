#!/usr/bin/env bash
# test_backup_s3.sh: backups on S3 with client-side encryption, end to end, against a real s3proxy
# (the `s3` fixture) and a real PostgreSQL 15 (a private archiving cluster, as the `postgres` OS
# user when run as root, like test_backup.sh).
#
# Archiving exactly as apply configures it: a manifest with `repository: s3://BUCKET/PREFIX`,
# `archiving.s3` (secrets as ${VAR}s), `archiving.encryption.key` and `credentials_file`, the
# file written by `pipectl backup credentials-file`; `pipectl apply` sets archive_command, the
# server archives through it. Asserts on what lands:
#   - archive_command (SHOW, postgresql.auto.conf) names the repository and the credentials file
#     and holds neither the S3 secret key nor the passphrase; the segments are objects in the
#     bucket (s3proxy's filesystem back end: one file per object);
#   - backup create / list -o json / verify; restore --latest --start from the bucket holds every
#     committed row (count and a checksum of the rows), restore to a time before a DELETE brings
#     the deleted rows back; the restored server's restore_command carries no secret either;
#   - the hidden value: a row value inserted before the backup is in no object of the bucket
#     (raw, or after zstd -d; no object is even a zstd frame), while the check finds it in the
#     restored data directory, in the segment wal-fetch decrypts, and in the same segment pushed
#     to an unencrypted prefix (so the check is not vacuous);
#   - a flipped byte in the stored base tar object: verify names the object, restore refuses and
#     restores nothing; a flipped byte in a WAL object: verify names the segment, wal-fetch > 125;
#   - a wrong key: one clear error line, nothing listed, nothing restored.
# pc-test: s3
# pc-test: timeout=240
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
command -v jq >/dev/null || fail "jq is needed to read -o json output"
command -v zstd >/dev/null || fail "zstd is needed for the hidden-value check"
T0=$SECONDS
s3_env

archive_cluster s3enc # archives into a local directory until apply points it at the bucket
PREFIX="e2e-$TEST_ID/enc"
URI="s3://$PC_S3_BUCKET/$PREFIX"
OBJ=$PC_S3_DIR/data/$PC_S3_BUCKET/$PREFIX # the bucket's objects under the prefix, as files
CREDS=$BASE/creds.env
defer "rm -rf '$PC_S3_DIR/data/$PC_S3_BUCKET/e2e-$TEST_ID'" # the bucket is shared with other runs
PIPECTL_REPO_KEY="e2e-$(openssl rand -hex 16)"
export PIPECTL_REPO_KEY
HIDDEN="hidden-$(openssl rand -hex 12)-value"

M=$TEST_TMP/pipeline.yaml
s3_manifest "$M" s3e2e "$URI" "$CREDS" "$SOCK" '    encryption: {cipher: aes-256-gcm, key: "${PIPECTL_REPO_KEY}"}'
rows() { # [PSQL ARGS...]: "count md5-of-every-row" of table t
    local sql="SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ':' || v, ',' ORDER BY id)), '-') FROM t"
    if (($# == 0)); then q "$sql"; else timeout 30 "$PG_BIN/psql" -XAtq "$@" -c "$sql"; fi
}
switch() { # -> the segment just completed and handed to the archiver
    local seg
    seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
    q "SELECT pg_switch_wal()" >/dev/null
    echo "$seg"
}
flip_byte() { # FILE OFFSET
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf '%02x' $(((b + 1) % 256)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
no_secret() { # TEXT WHAT
    assert_not_contains "$1" "$PC_S3_SECRET_ACCESS_KEY" "$2 (S3 secret key)"
    assert_not_contains "$1" "$PIPECTL_REPO_KEY" "$2 (encryption passphrase)"
}

# --- the credentials file and apply ----------------------------------------------------------------
note "backup credentials-file, apply"
expect_rc 0 "$BIN" -f "$M" backup credentials-file --to "$CREDS"
no_secret "$OUT$ERR" "credentials-file output"
assert_eq 600 "$(stat -c %a "$CREDS")" "mode of the credentials file"
grep -qxF "AWS_SECRET_ACCESS_KEY=$PC_S3_SECRET_ACCESS_KEY" "$CREDS" || fail "the credentials file lacks the S3 secret key"
grep -qxF "AWS_ACCESS_KEY_ID=$PC_S3_ACCESS_KEY_ID" "$CREDS" || fail "the credentials file lacks the access key id"
grep -qxF "PIPECTL_REPO_KEY=$PIPECTL_REPO_KEY" "$CREDS" || fail "the credentials file lacks the passphrase"
chown "$PG_OWNER" "$CREDS"
expect_rc 0 "$BIN" -f "$M" apply
no_secret "$OUT$ERR" "apply output"
AC=$(q "SHOW archive_command")
note "archive_command: $AC"
assert_contains "$AC" "'$BIN' wal-push --repository '$URI' --s3-endpoint '$PC_S3_ENDPOINT'" "archive_command set by apply"
assert_contains "$AC" "--encrypted" "archive_command says the repository is encrypted"
assert_contains "$AC" "--credentials-file '$CREDS' %p %f" "archive_command names the credentials file"
no_secret "$AC" "SHOW archive_command"
no_secret "$(cat "$DATA/postgresql.auto.conf")" "postgresql.auto.conf"
no_secret "$(q "SELECT string_agg(setting, ' ') FROM pg_settings")" "pg_settings"

# --- archiving into the bucket -----------------------------------------------------------------------
q "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g" >/dev/null
q "INSERT INTO t VALUES (100001, '$HIDDEN'), (100002, 'x$HIDDEN'), (100003, '$HIDDEN$HIDDEN')" >/dev/null
HSEG=$(switch) # holds the hidden value's insert
wait_for 60 "segment $HSEG to be archived into $URI" archived_up_to "$HSEG"
assert_eq 0 "$(q "SELECT failed_count FROM pg_stat_archiver")" "archiver failures with a working bucket"
[[ -s "$OBJ/wal/$HSEG.zst" ]] || fail "segment $HSEG is not an object in the bucket: $(find "$OBJ" -type f 2>&1 | head)"
[[ -s "$OBJ/pipectl-crypt.json" ]] || fail "the encrypted repository has no key marker object"
no_secret "$(cat "$OBJ/pipectl-crypt.json")" "the key marker object"
note "archived $HSEG into $URI"

# --- backup create, list, verify ----------------------------------------------------------------------
note "backup create into the bucket"
expect_rc 0 "$BIN" -f "$M" backup create --label s3e2e -o json
no_secret "$OUT$ERR" "backup create output"
ID=$(jq -r .id <<<"$OUT")
[[ -n "$ID" && "$ID" != null ]] || fail "backup create printed no id: $OUT"
[[ -s "$OBJ/backups/$ID/pipectl.json" ]] || fail "no pipectl.json object for $ID: $(ls -A "$OBJ/backups/$ID" 2>&1)"
BT=$(cd "$OBJ/backups/$ID" && ls | grep '^base\.tar' | head -n1)
[[ -n "$BT" && -s "$OBJ/backups/$ID/$BT" ]] || fail "no base tar object for $ID: $(ls -A "$OBJ/backups/$ID")"
expect_rc 0 "$BIN" -f "$M" backup list -o json
assert_eq "$ID" "$(jq -r '[.backups[].id] | join(" ")' <<<"$OUT")" "backups listed in $URI"
assert_eq s3e2e "$(jq -r '.backups[0].label' <<<"$OUT")" "label of the listed backup"
expect_rc 0 "$BIN" -f "$M" backup verify -o json "$ID"
assert_eq true "$(jq .intact <<<"$OUT")" "verify of a fresh backup: $OUT"
(($(jq .files_checked <<<"$OUT") >= 1 && $(jq .wal_checked <<<"$OUT") >= 1)) ||
    fail "verify checked too little: $OUT"
sleep 1.2 # the recorded time must be after the backup's stop_time (whole seconds)

# --- more rows, a time, a DELETE ----------------------------------------------------------------------
q "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1001, 3000) g" >/dev/null
BEFORE_DELETE=$(rows)
T_BEFORE=$(q "SELECT clock_timestamp()::text")
sleep 0.3
q "DELETE FROM t WHERE id <= 500" >/dev/null
q "INSERT INTO t SELECT g, 'after delete' FROM generate_series(5001, 5100) g" >/dev/null
LATEST=$(rows)
LAST=$(switch)
wait_for 60 "segment $LAST to be archived" archived_up_to "$LAST"
[[ -s "$OBJ/wal/$LAST.zst" ]] || fail "segment $LAST is not an object in the bucket"
note "rows before the delete: $BEFORE_DELETE (at $T_BEFORE); latest: $LATEST"

# --- restores straight from the bucket -----------------------------------------------------------------
RN=0
restore_rows() { # NAME ARGS...: restore --start from the manifest's repository; ROWS_GOT, RDIR
    local name=$1 port
    shift
    RN=$((RN + 1))
    RDIR=$BASE/r$RN
    defer "as_pg '$PG_BIN/pg_ctl' -D '$RDIR' -m immediate -w -t 20 stop >/dev/null 2>&1"
    expect_rc 0 "$BIN" -f "$M" restore --to "$RDIR" --start --wait 120 -o json "$@"
    no_secret "$OUT$ERR" "$name: restore output"
    assert_eq "$ID" "$(jq -r .backup <<<"$OUT")" "$name: backup used"
    port=$(jq -r .port <<<"$OUT")
    ROWS_GOT=$(rows -h "$RDIR" -p "$port" -U postgres -d postgres)
    RCMD=$(timeout 30 "$PG_BIN/psql" -XAtq -h "$RDIR" -p "$port" -U postgres -d postgres -c "SHOW restore_command")
    note "$name: $ROWS_GOT; proof: $(jq -r .proof <<<"$OUT")"
}
restore_rows latest --latest
assert_eq "$LATEST" "$ROWS_GOT" "rows restored to the latest point (count md5)"
assert_contains "$RCMD" "wal-fetch --repository '$URI' --s3-endpoint '$PC_S3_ENDPOINT'" "restore_command of the restored server"
assert_contains "$RCMD" "--encrypted --credentials-file '$CREDS'" "restore_command reads the credentials file"
no_secret "$RCMD" "SHOW restore_command on the restored server"
no_secret "$(cat "$RDIR/postgresql.auto.conf")" "the restored postgresql.auto.conf"
LATEST_DIR=$RDIR
restore_rows "before the delete" --target-time "$T_BEFORE"
assert_eq "$BEFORE_DELETE" "$ROWS_GOT" "rows restored to a time before the DELETE (count md5)"
[[ "$ROWS_GOT" == 3003\ * ]] || fail "the deleted rows did not come back: $ROWS_GOT"
as_pg "$PG_BIN/pg_ctl" -D "$RDIR" -m fast -w -t 30 stop >/dev/null 2>&1 || true

# --- the hidden value: in no object of the bucket; the check itself finds it in plaintext --------------
holds_value() { # DIR: some file under DIR holds $HIDDEN as is, or after zstd -d
    local f
    grep -rqaF -- "$HIDDEN" "$1" && return 0
    while IFS= read -r -d '' f; do # grep -c reads it all: no SIGPIPE for zstd under pipefail
        n=$({ zstd -qdc -- "$f" 2>/dev/null || true; } | grep -caF -- "$HIDDEN" || true)
        ((n == 0)) || return 0
    done < <(find "$1" -type f -print0)
    return 1
}
NOBJ=$(find "$OBJ" -type f | wc -l)
((NOBJ >= 5)) || fail "only $NOBJ objects in $URI: $(find "$OBJ" -type f)"
if holds_value "$OBJ"; then
    fail "the hidden value is readable in the encrypted bucket: $(grep -rlaF -- "$HIDDEN" "$OBJ" | head)"
fi
while IFS= read -r -d '' f; do
    [[ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' ')" != 28b52ffd ]] || fail "object $f is a plain zstd frame"
done < <(find "$OBJ" -type f -print0)
# not vacuous: the decrypted copies hold it, and so does the same segment in an unencrypted prefix
holds_value "$LATEST_DIR/base" || fail "the restored data directory does not hold the hidden value: the check is vacuous"
expect_rc 0 "$BIN" wal-fetch --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
    --encrypted --credentials-file "$CREDS" "$HSEG" "$TEST_TMP/hseg"
grep -qaF -- "$HIDDEN" "$TEST_TMP/hseg" || fail "segment $HSEG as wal-fetch decrypts it lacks the hidden value"
PLAIN=$PC_S3_DIR/data/$PC_S3_BUCKET/e2e-$TEST_ID/plain
expect_rc 0 env AWS_ACCESS_KEY_ID="$PC_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$PC_S3_SECRET_ACCESS_KEY" \
    "$BIN" wal-push --repository "s3://$PC_S3_BUCKET/e2e-$TEST_ID/plain" --s3-endpoint "$PC_S3_ENDPOINT" \
    --s3-uri-style path "$TEST_TMP/hseg" "$HSEG"
[[ -s "$PLAIN/wal/$HSEG.zst" ]] || fail "the unencrypted push stored nothing"
holds_value "$PLAIN" || fail "the hidden-value check does not find the value in an unencrypted repository"
note "hidden value in none of the $NOBJ encrypted objects; found in the unencrypted one and the restored copy"

# --- a flipped byte: verify names the object, restore restores nothing ---------------------------------
note "flipped byte in $BT"
cp "$OBJ/backups/$ID/$BT" "$TEST_TMP/bt.saved"
flip_byte "$OBJ/backups/$ID/$BT" $(($(stat -c %s "$OBJ/backups/$ID/$BT") / 2))
expect_rc 1 "$BIN" -f "$M" backup verify -o json "$ID"
assert_eq false "$(jq .intact <<<"$OUT")" "verify of a tampered base tar: $OUT"
assert_contains "$(jq -r '.problems | join("\n")' <<<"$OUT")" "$BT" "verify names the tampered object"
note "verify: $(jq -c .problems <<<"$OUT")"
expect_rc 1 "$BIN" -f "$M" restore --latest --to "$BASE/tampered"
assert_contains "$ERR" "$BT" "restore names the tampered object"
[[ ! -e "$BASE/tampered" ]] || fail "a refused restore left $BASE/tampered behind: $(ls -A "$BASE/tampered" | head)"
note "restore: $ERR"
cp "$TEST_TMP/bt.saved" "$OBJ/backups/$ID/$BT"
expect_rc 0 "$BIN" -f "$M" backup verify "$ID"

cp "$OBJ/wal/$LAST.zst" "$TEST_TMP/last.saved"
flip_byte "$OBJ/wal/$LAST.zst" $(($(stat -c %s "$OBJ/wal/$LAST.zst") / 2))
expect_rc 1 "$BIN" -f "$M" backup verify "$ID"
assert_contains "$OUT" "wal $LAST:" "verify names the tampered WAL object"
run "$BIN" wal-fetch --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
    --encrypted --credentials-file "$CREDS" "$LAST" "$TEST_TMP/tampered-seg"
((RC > 125)) || fail "wal-fetch of a tampered object exited $RC, expected > 125 (stderr: $ERR)"
assert_contains "$ERR" "$LAST" "wal-fetch names the tampered segment"
[[ ! -e "$TEST_TMP/tampered-seg" ]] || fail "wal-fetch of a tampered object left its target"
cp "$TEST_TMP/last.saved" "$OBJ/wal/$LAST.zst"
expect_rc 0 "$BIN" -f "$M" backup verify "$ID"

# --- a wrong key: one clear error, nothing restored -----------------------------------------------------
note "wrong key"
for c in "backup list" "restore --latest --to $BASE/wrongkey"; do
    # shellcheck disable=SC2086
    expect_rc 1 env PIPECTL_REPO_KEY="not-the-key-$(openssl rand -hex 8)" "$BIN" -f "$M" $c
    assert_contains "$ERR" "wrong encryption key" "$c with a wrong key"
    assert_contains "$ERR" "$URI" "$c with a wrong key names the repository"
    assert_eq 1 "$(grep -c . <<<"$ERR")" "$c with a wrong key: one error line, got:"$'\n'"$ERR"
    assert_eq "" "$OUT" "$c with a wrong key prints nothing on stdout"
    note "$c with a wrong key: $ERR"
done
[[ ! -e "$BASE/wrongkey" ]] || fail "a restore with the wrong key left $BASE/wrongkey behind"
sed "s/^PIPECTL_REPO_KEY=.*/PIPECTL_REPO_KEY=not-the-key-at-all-0123/" "$CREDS" >"$TEST_TMP/wrong.env"
chmod 600 "$TEST_TMP/wrong.env"
run "$BIN" wal-fetch --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
    --encrypted --credentials-file "$TEST_TMP/wrong.env" "$HSEG" "$TEST_TMP/wrongkey-seg"
((RC > 125)) || fail "wal-fetch with a wrong key exited $RC, expected > 125 (stderr: $ERR)"
assert_contains "$ERR" "wrong encryption key" "wal-fetch with a wrong key"
[[ ! -e "$TEST_TMP/wrongkey-seg" ]] || fail "wal-fetch with a wrong key left its target"
run "$BIN" wal-push --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-uri-style path \
    --encrypted --credentials-file "$TEST_TMP/wrong.env" "$TEST_TMP/hseg" 000000010000000000000099
assert_eq 1 "$RC" "wal-push with a wrong key: exit (stderr: $ERR)"
[[ ! -e "$OBJ/wal/000000010000000000000099.zst" ]] || fail "wal-push with a wrong key stored an object"

note "test_backup_s3: $((SECONDS - T0)) s"
