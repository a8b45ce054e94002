#!/usr/bin/env bash
# test_wal_parallel.sh: push-ahead archiving (`wal-push --parallel N`, manifest key
# archiving.parallel) as a real PostgreSQL 15's archive_command into a real S3-compatible server
# (the `s3` fixture's s3proxy), on a private archiving cluster.
#
# Asserts on what lands:
#   - segments accumulated while archive_command is '' are archived once it is set with
#     --parallel 4: every one of them is an object in the bucket and wal-fetch gives back bytes
#     identical to a copy taken before archiving started (no gap, nothing wrong), and the server
#     log shows calls that pushed other files ahead and calls answered from a marker
#     ("pushed-ahead"), so the mode really ran;
#   - once every segment is archived, pg_wal/pipectl_spool holds no marker;
#   - a segment whose marker does not match it (forged SHA-256, as a recycled file would) is
#     pushed normally: its object exists and decodes to its bytes, its call logs "pushed", not
#     "pushed-ahead", and the marker is gone;
#   - wal-push refuses --parallel outside 1-32 (the words apply puts in archive_command from
#     archiving.parallel, pc_mf_archiving_args, are checked by the unit test test_wal).
# pc-test: s3
# pc-test: timeout=400
source "$PC_SRC/tests/integration/lib.sh"

source "$PC_SRC/tests/integration/archive_cluster.sh"
s3_env

# --- command line -----------------------------------------------------------------------------
expect_rc 0 "$PIPECTL" wal-push --help
assert_contains "$OUT" "--parallel N" "wal-push --help names --parallel"
for bad in 0 33 x; do
    expect_rc 1 "$PIPECTL" wal-push --repository /nonexistent --parallel "$bad" a 000000010000000000000001
    assert_contains "$ERR" "--parallel needs a number from 1 to 32" "wal-push --parallel $bad"
done

# --- a private cluster, archiving into the bucket with --parallel 4 ---------------------------
archive_cluster walpar "" "max_wal_size = 2GB
checkpoint_timeout = 30min"
PREFIX="walpar-$TEST_ID"
URI="s3://$PC_S3_BUCKET/$PREFIX"
OBJ=$PC_S3_DIR/data/$PC_S3_BUCKET/$PREFIX/wal
defer "rm -rf '$PC_S3_DIR/data/$PC_S3_BUCKET/$PREFIX'"
CREDS=$BASE/creds.env
(
    umask 077
    printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$PC_S3_ACCESS_KEY_ID" \
        "$PC_S3_SECRET_ACCESS_KEY" >"$CREDS"
)
chown "$PG_OWNER" "$CREDS"
PUSH="$BIN -v wal-push --repository $URI --s3-endpoint $PC_S3_ENDPOINT --s3-region $PC_S3_REGION --s3-uri-style path --credentials-file $CREDS --parallel 4 %p %f"
FETCH=("$BIN" wal-fetch --repository "$URI" --s3-endpoint "$PC_S3_ENDPOINT" --s3-region "$PC_S3_REGION" --s3-uri-style path --credentials-file "$CREDS")
set_archive() { # COMMAND ('' lets segments accumulate as .ready)
    q "ALTER SYSTEM SET archive_command = '$1'" >/dev/null
    q "SELECT pg_reload_conf()" >/dev/null
}
q "CREATE TABLE t (i int, v text)" >/dev/null
REF=$BASE/ref
mkdir -p "$REF"
# accumulate N segments (archive_command ''), keep a copy of each, then archive them
accumulate() { # N: prints the names, oldest first
    local i
    set_archive ''
    sleep 0.5
    for ((i = 0; i < $1; i++)); do
        q "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g" >/dev/null
        q "SELECT pg_walfile_name(pg_current_wal_lsn())"
        q "SELECT pg_switch_wal()" >/dev/null
    done
}
mapfile -t SEGS < <(accumulate 24)
LAST=${SEGS[-1]}
for s in "${SEGS[@]}"; do
    [[ -f "$DATA/pg_wal/archive_status/$s.ready" ]] || fail "segment $s is not waiting (.ready) before archiving starts"
    cp "$DATA/pg_wal/$s" "$REF/$s"
done
note "archiving ${#SEGS[@]} waiting segments with --parallel 4"
set_archive "$PUSH"
wait_for 180 "segment $LAST archived" archived_up_to "$LAST"
assert_eq 0 "$(q 'SELECT failed_count FROM pg_stat_archiver')" "failed archive_command calls"

# no gap, right bytes: every segment's object exists and decodes to the copy taken before
for s in "${SEGS[@]}"; do
    [[ -f "$OBJ/$s.zst" ]] || fail "segment $s has no object in $URI"
    rm -f "$BASE/fetched"
    expect_rc 0 "${FETCH[@]}" "$s" "$BASE/fetched"
    cmp -s "$REF/$s" "$BASE/fetched" || fail "wal-fetch of $s does not give back the archived segment's bytes"
done
ahead_calls=$(grep -c 'wal-push: handed [0-9]* waiting file(s) to a background pusher' "$LOG" || true)
marker_calls=$(grep -c 'wal-push: pushed-ahead ' "$LOG" || true)
note "calls that pushed ahead: $ahead_calls, calls answered from a marker: $marker_calls"
((ahead_calls >= 1)) || fail "no archive_command call pushed other segments ahead (see $LOG)"
((marker_calls >= ${#SEGS[@]} / 2)) || fail "only $marker_calls of ${#SEGS[@]} calls were answered from a push-ahead marker"
left=$(find "$DATA/pg_wal/pipectl_spool" -name '*.ok' 2>/dev/null | wc -l)
assert_eq 0 "$left" "markers left in pg_wal/pipectl_spool once every segment is archived"

# --- a marker that does not match its segment: pushed normally ----------------------------------
note "a mismatched marker"
mapfile -t MORE < <(accumulate 1)
S=${MORE[0]}
cp "$DATA/pg_wal/$S" "$REF/$S"
[[ ! -e "$OBJ/$S.zst" ]] || fail "segment $S is archived before its test"
size=$(stat -c %s "$DATA/pg_wal/$S")
printf 'pipectl-wal-spool 1\nrepository %s\nsha256 %064d\nsize %s\nstored_size 100\n' "$URI" 0 "$size" \
    >"$DATA/pg_wal/pipectl_spool/$S.ok"
chown "$PG_OWNER" "$DATA/pg_wal/pipectl_spool/$S.ok"
set_archive "$PUSH"
wait_for 60 "segment $S archived" archived_up_to "$S"
[[ -f "$OBJ/$S.zst" ]] || fail "segment $S with a mismatched marker was reported archived but has no object"
rm -f "$BASE/fetched"
expect_rc 0 "${FETCH[@]}" "$S" "$BASE/fetched"
cmp -s "$REF/$S" "$BASE/fetched" || fail "wal-fetch of $S does not give back its bytes"
grep -q "wal-push: pushed $S in" "$LOG" || fail "segment $S was not pushed normally (see $LOG)"
if grep -q "wal-push: pushed-ahead $S" "$LOG"; then fail "the forged marker of $S was believed"; fi
[[ ! -e "$DATA/pg_wal/pipectl_spool/$S.ok" ]] || fail "the mismatched marker of $S is still there"

note "archived ${#SEGS[@]} segments with push-ahead, no gap; a mismatched marker was pushed normally"
