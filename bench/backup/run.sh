#!/usr/bin/env bash
# bench/backup: base backup and restore of a pgbench database, side by side, in the same run.
#
# Local leg (every round, rotating order, on the idle page-cached database):
#   - pipectl backup create (manifest with archiving + backups, compression zstd)
#   - pg_basebackup -Ft -X none --checkpoint=fast --manifest-checksums=SHA256
#     --compress=client-zstd: the BASE_BACKUP options pipectl sends, and client-side zstd like
#     pipectl (which receives the uncompressed tar stream over libpq and compresses it with
#     libarchive's zstd filter). One difference is pipectl's design: pg_basebackup -X none lets
#     the server wait for the archiver (it polls once a second); pipectl asks the server not to
#     wait and waits for the stop segment in its own repository (polls every 50 ms)
#   - pgBackRest (Debian package) full backup: local repository, compress-type=zst, process-max=2
# Restore: pipectl restore --latest and pgbackrest restore (files and recovery configuration
# only; neither starts the server).
#
# S3 leg (issue 13), same database, same zstd level, one s3proxy (scripts/s3_stack.sh: filesystem
# back end, HTTPS with a CA made for this start; pgBackRest speaks only HTTPS to S3, so both tools
# use the HTTPS endpoint):
#   - pipectl backup create into archiving.repository s3://BUCKET/pipectl (archiving.s3 with the
#     endpoint, path-style, the CA file) vs pgbackrest --type=full backup into repo1-type=s3
#     (repo1-path /pgbackrest, process-max=2). archive_command is switched (reload) to
#     pipectl wal-push into the S3 repository && pgbackrest archive-push into its S3 repository,
#     so each tool again waits for its own stop segment in its own repository.
#     Bytes: the backup's objects in the bucket (sum of object sizes under
#     pipectl/backups/ID/ and pgbackrest/backup/bench/LABEL/, read from s3proxy's files), no WAL.
#     Peak RSS of pipectl backup create: ru_maxrss of the process (getrusage, as bench/sink).
#   - restore from the bucket: pipectl restore --latest vs pgbackrest restore.
# WAL leg: a second throwaway cluster (port 5433, 16 MiB segments) with archive_command = ''
# accumulates 200 segments (a one-row INSERT, then pg_switch_wal(), 200 times); archive_command
# is then set and the server reloaded, and a plpgsql loop on pg_stat_archiver (stats_fetch_
# consistency = none, 20 ms polls) records when the first segments and the last were archived:
# segments/s = (segments after the first observation) / (last_archived_time - time of that
# observation's last_archived_time). Three ways, each into its own prefix of the same bucket:
#   - pipectl wal-push --repository s3://BUCKET/pipectl-wal --s3-... --credentials-file F
#   - pgbackrest archive-push (synchronous; stanza walbench, repo1-path /pgbackrest-wal)
#   - pgbackrest archive-push with archive-async=y (spool-path, process-max 2)
#
# Every tool compresses with zstd at its default level 3.
# Targets: local: pipectl at least as fast as pgBackRest at comparable size, and within 1.2x of
# pg_basebackup's time. S3 (issue 13): backup and restore time <= 0.7x pgBackRest's, WAL
# archiving >= pgBackRest's asynchronous mode, peak RSS of backup create < 100 MB.
# A pipectl S3 leg that fails (its S3 repository is new) reports null, with the reason on stderr;
# the pgBackRest legs still run.
#
# Usage: bash bench/backup/run.sh [SCALE] [ROUNDS]   (defaults 50 and 3; SCALE 50 is ~750 MB)
#   PIPECTL=path/to/pipectl (default build/pipectl, built with cmake; scripts/setup.sh is run
#     first either way unless PC_BENCH_NO_PREPARE is set)
#   PC_PG_BIN=/usr/lib/postgresql/15/bin
#   PC_BENCH_WAL_SEGMENTS=200 (segments per WAL archiving run)
# The backup figures are the medians over ROUNDS rounds; each round runs every tool once (in a
# rotating order) against the same, idle, page-cached database. The WAL figures are one run each.
#
# Own throwaway PostgreSQL 15 clusters (initdb in a temp dir, unix socket only, run as the
# postgres OS user when this runs as root) and s3proxy, removed with everything else on exit,
# also on failure.
# WAL (local leg): archive_command = pipectl wal-push into pipectl's repository && pgbackrest
# archive-push into pgBackRest's, so both tools wait for their own stop segment like they do in
# production (pgBackRest's archive-check stays on; pg_basebackup -X none waits for the archiver).
# Last line: one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCALE=${1:-50}
ROUNDS=${2:-3}
WAL_SEGMENTS=${PC_BENCH_WAL_SEGMENTS:-200}
[[ "$SCALE" =~ ^[1-9][0-9]*$ && "$ROUNDS" =~ ^[1-9][0-9]*$ && "$WAL_SEGMENTS" =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: bash bench/backup/run.sh [SCALE] [ROUNDS]" >&2; exit 2; }
PG_BIN=${PC_PG_BIN:-/usr/lib/postgresql/15/bin}
PIPECTL=${PIPECTL:-$ROOT/build/pipectl}
T_START=$(date +%s.%N)
say() { printf 'bench/backup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# A fresh clone: scripts/setup.sh installs what is missing (PostgreSQL 15, pgBackRest, jq, Java,
# the s3proxy jars), then pipectl is built when it is the default build/pipectl.
source "$ROOT/bench/lib.sh"
if [[ -z "${PC_BENCH_NO_PREPARE:-}" ]]; then
    if [[ "$PIPECTL" == "$ROOT/build/pipectl" ]]; then
        bench_prepare "$ROOT/build" pipectl
    else
        bash "$ROOT/scripts/setup.sh" >&2
    fi
fi
for t in initdb pg_ctl pgbench pg_basebackup psql; do
    [[ -x "$PG_BIN/$t" ]] || die "no $PG_BIN/$t: install postgresql-15 (scripts/setup.sh)"
done
for t in pgbackrest jq python3 java openssl curl; do
    command -v "$t" >/dev/null || die "$t not found: run scripts/setup.sh"
done
if [[ ! -x "$PIPECTL" ]]; then
    say "building pipectl in $ROOT/build"
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        cmake --build "$ROOT/build" -j2 --target pipectl >/dev/null ||
        die "build failed: cmake -S . -B build && cmake --build build --target pipectl"
    PIPECTL=$ROOT/build/pipectl
fi

AS_PG=()
PG_OWNER=$(id -un)
if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (postgresql-15 package)"
    AS_PG=(runuser -u postgres --)
    PG_OWNER=postgres
fi
as_pg() { "${AS_PG[@]}" "$@"; }

BASE=$(mktemp -d /tmp/pc-bench-backup.XXXXXX)
chmod 755 "$BASE"
DATA=$BASE/data SOCK=$BASE/sock LOG=$BASE/pg.log
WDATA=$BASE/wal-data WLOG=$BASE/wal-pg.log
PC_REPO=$BASE/pc-repo BR_REPO=$BASE/br-repo BB_OUT=$BASE/pgbb
BIN=$BASE/pipectl BR_CONF=$BASE/pgbackrest.conf
S3_DIR=$BASE/s3
cleanup() {
    local d
    for d in "$DATA" "$WDATA"; do
        if [[ -f "$d/postmaster.pid" ]]; then
            as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
        fi
    done
    if [[ -f "$S3_DIR/.pc-s3" ]]; then
        bash "$ROOT/scripts/s3_stack.sh" stop "$S3_DIR" >/dev/null 2>&1 || true
    fi
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$PIPECTL" "$BIN"
chmod 755 "$BIN"
mkdir -p "$DATA" "$WDATA" "$SOCK" "$PC_REPO" "$BR_REPO" "$BB_OUT" "$BASE/br-log" "$BASE/br-lock" \
    "$BASE/br-s3-lock" "$BASE/br-wal-lock" "$BASE/br-spool"
chmod 700 "$DATA" "$WDATA"
touch "$LOG" "$WLOG"
[[ $(id -u) -ne 0 ]] ||
    chown "$PG_OWNER:" "$DATA" "$WDATA" "$SOCK" "$PC_REPO" "$BR_REPO" "$BASE/br-log" "$BASE/br-lock" \
        "$BASE/br-s3-lock" "$BASE/br-wal-lock" "$BASE/br-spool" "$LOG" "$WLOG"

as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
    >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
# Loading runs with wal_level = minimal (pgbench -i's COPY then skips the WAL); the backups run
# with replica + archiving, set after the load (archive_mode needs a restart anyway).
cat >>"$DATA/postgresql.conf" <<EOF

# --- bench/backup ---
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = 5432
shared_buffers = 128MB
max_wal_size = 4GB
checkpoint_timeout = 30min
log_line_prefix = '%m [%p] '
include_if_exists = 'bench_archiving.conf'
EOF
cat >"$DATA/bench_archiving.conf" <<EOF
wal_level = minimal
max_wal_senders = 0
archive_mode = off
EOF
[[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$DATA/bench_archiving.conf"
pg_start() {
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 120 start >/dev/null ||
        { tail -n 30 "$LOG" >&2; die "PostgreSQL did not start"; }
}
q() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$SOCK" -p 5432 -U postgres -d "${2:-postgres}" -c "$1"; }

pg_start
q "CREATE DATABASE bench" >/dev/null
say "pgbench -i -s $SCALE"
"$PG_BIN/pgbench" -i -s "$SCALE" -q -h "$SOCK" -p 5432 -U postgres bench >"$BASE/pgbench.log" 2>&1 ||
    { tail -n 20 "$BASE/pgbench.log" >&2; die "pgbench -i failed"; }
q "CHECKPOINT" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null

cat >"$BR_CONF" <<EOF
[global]
repo1-path=$BR_REPO
repo1-retention-full=$((ROUNDS + 1))
compress-type=zst
process-max=2
start-fast=y
log-path=$BASE/br-log
lock-path=$BASE/br-lock
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$DATA
pg1-socket-path=$SOCK
pg1-port=5432
pg1-user=postgres
EOF
chmod 644 "$BR_CONF"
BR=(pgbackrest --config="$BR_CONF" --stanza=bench)
cat >"$DATA/bench_archiving.conf" <<EOF
wal_level = replica
max_wal_senders = 4
archive_mode = on
archive_command = '$BIN wal-push --repository $PC_REPO %p %f && pgbackrest --config=$BR_CONF --stanza=bench archive-push %p'
EOF
pg_start
as_pg "${BR[@]}" stanza-create >&2 || die "pgbackrest stanza-create failed"
as_pg "${BR[@]}" check >&2 || die "pgbackrest check failed (archive_command: see $LOG)"

M=$BASE/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: bench}
kafka:
  bootstrap: 127.0.0.1:9
  topics:
    - {name: bench_unused, partitions: 1}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres"
  archiving: {enabled: true, repository: $PC_REPO}
backups:
  schedule: "0 3 * * *"
  retention: {full: $((ROUNDS + 1))}
  compression: zstd
YAML

DB_BYTES=$(q "SELECT sum(pg_database_size(oid)) FROM pg_database WHERE datallowconn")
# Warm the page cache once, so no tool pays for the first read of the data files.
tar -C "$DATA" -cf - . 2>/dev/null | cat >/dev/null
say "database: $DB_BYTES bytes; $ROUNDS rounds"

# Arithmetic with awk (no bc needed).
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
elapsed() { calc "$(now) - $1"; }
dir_bytes() { du -sb "$1" | cut -f1; }
# sum of the sizes of the files under DIR: the objects s3proxy's filesystem back end stores there
obj_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }

PC_S=() PC_B=() BB_S=() BB_B=() BR_S=() BR_B=() RPC_S=() RBR_S=()
PC_IDS=()
run_pipectl() {
    local t0 out id
    t0=$(now)
    out=$("$BIN" -f "$M" backup create --label "bench $1" -o json) || die "pipectl backup create failed"
    PC_S+=("$(elapsed "$t0")")
    id=$(jq -r .id <<<"$out")
    [[ -f "$PC_REPO/backups/$id/pipectl.json" ]] || die "pipectl backup $id has no pipectl.json"
    PC_IDS+=("$id")
    PC_B+=("$(dir_bytes "$PC_REPO/backups/$id")")
}
run_pg_basebackup() {
    local t0 d=$BB_OUT/$1
    t0=$(now)
    "$PG_BIN/pg_basebackup" -h "$SOCK" -p 5432 -U postgres -D "$d" -Ft -X none --checkpoint=fast \
        --manifest-checksums=SHA256 --compress=client-zstd --label "bench $1" --no-password ||
        die "pg_basebackup failed"
    BB_S+=("$(elapsed "$t0")")
    [[ -s "$d/base.tar.zst" && -s "$d/backup_manifest" ]] || die "pg_basebackup wrote no base.tar.zst"
    BB_B+=("$(dir_bytes "$d")")
}
run_pgbackrest() {
    local t0 label
    t0=$(now)
    as_pg "${BR[@]}" --type=full backup >&2 || die "pgbackrest backup failed"
    BR_S+=("$(elapsed "$t0")")
    label=$(as_pg "${BR[@]}" --output=json info | jq -r '.[0].backup[-1].label')
    [[ -n "$label" && -d "$BR_REPO/backup/bench/$label" ]] || die "pgbackrest backup $label not in $BR_REPO"
    BR_B+=("$(dir_bytes "$BR_REPO/backup/bench/$label")")
}

# Before each timed run: the archiver has nothing left from the previous tool's backup (its
# stop segment and .backup file), so no tool waits behind another's archiving.
settle() {
    local i
    for i in $(seq 1 600); do
        compgen -G "$DATA/pg_wal/archive_status/*.ready" >/dev/null || return 0
        sleep 0.1
    done
    die "the archiver did not catch up within 60 s (see $LOG)"
}

for r in $(seq 1 "$ROUNDS"); do
    case $(((r - 1) % 3)) in
    0) order=(run_pg_basebackup run_pipectl run_pgbackrest) ;;
    1) order=(run_pipectl run_pgbackrest run_pg_basebackup) ;;
    2) order=(run_pgbackrest run_pg_basebackup run_pipectl) ;;
    esac
    for f in "${order[@]}"; do settle; "$f" "$r"; done
    say "round $r: pg_basebackup ${BB_S[-1]} s ${BB_B[-1]} B, pipectl ${PC_S[-1]} s ${PC_B[-1]} B, pgbackrest ${BR_S[-1]} s ${BR_B[-1]} B"
done

# The newest pipectl backup must verify (manifest checksums of every member, its WAL).
"$BIN" backup verify --repository "$PC_REPO" "${PC_IDS[-1]}" >/dev/null ||
    die "pipectl backup verify ${PC_IDS[-1]} failed"

# Restores: pipectl picks its newest backup, pgBackRest its newest (the default set).
SRC_FILES=$(du -sb --exclude=pg_wal "$DATA" | cut -f1)
new_restore_dir() { # DIR: an empty directory PostgreSQL's OS user owns
    mkdir -m 700 "$1"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$1"
}
for r in $(seq 1 "$ROUNDS"); do
    d=$BASE/restore-pc-$r
    t0=$(now)
    "$BIN" restore --repository "$PC_REPO" --latest --to "$d" >/dev/null || die "pipectl restore failed"
    RPC_S+=("$(elapsed "$t0")")
    [[ -f "$d/recovery.signal" && -f "$d/backup_label" && -d "$d/base" ]] || die "pipectl restore: no data directory in $d"
    rm -rf "$d"
    d=$BASE/restore-br-$r
    new_restore_dir "$d"
    t0=$(now)
    as_pg "${BR[@]}" --pg1-path="$d" restore >&2 || die "pgbackrest restore failed"
    RBR_S+=("$(elapsed "$t0")")
    [[ -f "$d/recovery.signal" && -f "$d/backup_label" && -d "$d/base" ]] || die "pgbackrest restore: no data directory in $d"
    rm -rf "$d"
    say "restore round $r: pipectl ${RPC_S[-1]} s, pgbackrest ${RBR_S[-1]} s"
done

# ---------------------------------------------------------------------------------------------
# S3 leg (issue 13)
say "S3 leg: starting s3proxy (scripts/s3_stack.sh)"
bash "$ROOT/scripts/s3_stack.sh" start "$S3_DIR" || die "s3proxy did not start (scripts/s3_stack.sh)"
# shellcheck disable=SC1091
source "$S3_DIR/s3.env" # PC_S3_ENDPOINT_TLS, PC_S3_CA_FILE, PC_S3_REGION, PC_S3_BUCKET, keys
S3_HOSTPORT=${PC_S3_ENDPOINT_TLS#https://}
S3_HOST=${S3_HOSTPORT%:*} S3_PORT=${S3_HOSTPORT##*:}
S3_FS=$S3_DIR/data/$PC_S3_BUCKET # s3proxy's filesystem back end: one file per object

# pgBackRest's S3 configuration files (they hold the secret key: mode 600, PostgreSQL's user).
BR_S3_CONF=$BASE/pgbackrest-s3.conf BR_WAL_CONF=$BASE/pgbackrest-wal.conf
write_br_s3_conf() { # FILE REPO_PATH STANZA PG_PATH PG_PORT LOCK_DIR
    (
        umask 077
        cat >"$1" <<EOF
[global]
repo1-type=s3
repo1-path=$2
repo1-s3-bucket=$PC_S3_BUCKET
repo1-s3-endpoint=$S3_HOST
repo1-storage-port=$S3_PORT
repo1-s3-uri-style=path
repo1-s3-region=$PC_S3_REGION
repo1-s3-key=$PC_S3_ACCESS_KEY_ID
repo1-s3-key-secret=$PC_S3_SECRET_ACCESS_KEY
repo1-storage-ca-file=$PC_S3_CA_FILE
repo1-retention-full=$((ROUNDS + 1))
compress-type=zst
process-max=2
start-fast=y
log-path=$BASE/br-log
lock-path=$6
spool-path=$BASE/br-spool
log-level-console=warn
log-level-file=off

[$3]
pg1-path=$4
pg1-socket-path=$SOCK
pg1-port=$5
pg1-user=postgres
EOF
    )
    [[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$1"
}
write_br_s3_conf "$BR_S3_CONF" /pgbackrest bench "$DATA" 5432 "$BASE/br-s3-lock"
write_br_s3_conf "$BR_WAL_CONF" /pgbackrest-wal walbench "$WDATA" 5433 "$BASE/br-wal-lock"
BR3=(pgbackrest --config="$BR_S3_CONF" --stanza=bench)
BR3_PUSH="pgbackrest --config=$BR_S3_CONF --stanza=bench archive-push %p"

# pipectl: the credentials file archive_command reads (KEY=VALUE, mode 600, PostgreSQL's user)
# and a manifest with the S3 repository; its secrets come from the environment (${VAR}).
PC_CRED=$BASE/pipectl-s3.credentials
(
    umask 077
    printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$PC_S3_ACCESS_KEY_ID" \
        "$PC_S3_SECRET_ACCESS_KEY" >"$PC_CRED"
)
[[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$PC_CRED"
PC_S3_URI=s3://$PC_S3_BUCKET/pipectl PC_WAL_URI=s3://$PC_S3_BUCKET/pipectl-wal
PC_S3_ARGS="--s3-endpoint $PC_S3_ENDPOINT_TLS --s3-region $PC_S3_REGION --s3-uri-style path --s3-ca-file $PC_S3_CA_FILE --credentials-file $PC_CRED"
# write_pc_manifest FILE REPOSITORY PORT: a manifest for pipectl's S3 repository; its keys come
# from the environment (${VAR}), the credentials file is what archive_command reads.
write_pc_manifest() {
    cat >"$1" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: bench}
kafka:
  bootstrap: 127.0.0.1:9
  topics:
    - {name: bench_unused, partitions: 1}
postgres:
  dsn: "host=$SOCK port=$3 dbname=postgres user=postgres"
  archiving:
    enabled: true
    repository: $2
    credentials_file: $PC_CRED
    parallel: 4
    s3:
      endpoint: $PC_S3_ENDPOINT_TLS
      region: $PC_S3_REGION
      uri_style: path
      access_key_id: \${PC_S3_ACCESS_KEY_ID}
      secret_access_key: \${PC_S3_SECRET_ACCESS_KEY}
      ca_file: $PC_S3_CA_FILE
backups:
  schedule: "0 3 * * *"
  retention: {full: $((ROUNDS + 1))}
  compression: zstd
YAML
    chmod 644 "$1"
}
M3=$BASE/pipeline-s3.yaml MW=$BASE/pipeline-s3-wal.yaml MP=$BASE/pipeline-s3-probe.yaml
write_pc_manifest "$M3" "$PC_S3_URI" 5432
write_pc_manifest "$MW" "$PC_WAL_URI" 5433
write_pc_manifest "$MP" "s3://$PC_S3_BUCKET/pipectl-probe" 5432

# How archive_command reaches pipectl's S3 repository: the wal-push options of issue 13
# (--s3-endpoint ... --credentials-file F, no secret on the command line). A pipectl without them
# yet is driven with -f MANIFEST instead, the keys then in the servers' environment (PC_S3_*,
# exported by s3.env; the main cluster is restarted to inherit them): said on stderr.
if "$BIN" wal-push --help 2>/dev/null | grep -q -- '--s3-endpoint'; then
    PC_VIA=options
    # archiving.parallel of the manifest, as apply's archive_command carries it (pc_mf_archiving_args)
    PC_PAR=$("$BIN" wal-push --help 2>/dev/null | grep -q -- '--parallel N' && echo ' --parallel 4' || true)
    pc_push() { echo "$BIN wal-push --repository $1 $PC_S3_ARGS$PC_PAR %p %f"; } # REPOSITORY MANIFEST
else
    PC_VIA=manifest
    say "NOTE: this pipectl's wal-push has no --s3-endpoint option: archive_command runs" \
        "'pipectl -f MANIFEST wal-push' with the S3 keys in PostgreSQL's environment instead"
    pc_push() { echo "$BIN -f $2 wal-push %p %f"; }
fi

# Is pipectl's S3 repository usable? One real WAL segment pushed, as PostgreSQL's user, into a
# prefix of its own. If not, the pipectl S3 legs report null and say why.
PC_S3_OK=1 PC_IN_ARCHIVE=0
pc_s3_off() { # REASON: the pipectl S3 legs report null from here on
    if ((PC_S3_OK)); then
        say "NOTE: pipectl's S3 legs report null: $*"
    fi
    PC_S3_OK=0
    if ((PC_IN_ARCHIVE)); then # archive only into pgBackRest's repository from now on
        PC_IN_ARCHIVE=0
        sed -i "s|^archive_command = .*|archive_command = '$BR3_PUSH'|" "$DATA/bench_archiving.conf"
        q "SELECT pg_reload_conf()" >/dev/null
    fi
}
probe_seg=$(cd "$DATA/pg_wal" && ls | grep -E '^[0-9A-F]{24}$' | head -n 1 || true)
probe_file=$BASE/probe-$probe_seg
if [[ -z "$probe_seg" ]]; then
    pc_s3_off "no WAL segment in $DATA/pg_wal to probe with"
elif ! cp "$DATA/pg_wal/$probe_seg" "$probe_file" || ! chown "$PG_OWNER:" "$probe_file" ||
    ! as_pg sh -c "$(pc_push "s3://$PC_S3_BUCKET/pipectl-probe" "$MP" |
        sed "s|%p|$probe_file|; s|%f|$probe_seg|")" 2>"$BASE/probe.err"; then
    pc_s3_off "pipectl wal-push into s3://$PC_S3_BUCKET/pipectl-probe failed: $(head -c 600 "$BASE/probe.err" | tr '\n' ' ')"
elif ! find "$S3_FS/pipectl-probe" -type f -name "*$probe_seg*" 2>/dev/null | grep -q .; then
    pc_s3_off "pipectl wal-push exited 0 but no object for $probe_seg landed under pipectl-probe/"
fi
if ((PC_S3_OK)) && [[ $PC_VIA == manifest ]]; then
    settle
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    pg_start
fi

# archive_command from now on: both S3 repositories (or only pgBackRest's).
if ((PC_S3_OK)); then
    S3_ARCHIVE="$(pc_push "$PC_S3_URI" "$M3") && $BR3_PUSH"
else
    S3_ARCHIVE=$BR3_PUSH
fi
settle
as_pg "${BR3[@]}" stanza-create >&2 || die "pgbackrest stanza-create (S3) failed"
cat >"$DATA/bench_archiving.conf" <<EOF
wal_level = replica
max_wal_senders = 4
archive_mode = on
archive_command = '$S3_ARCHIVE'
EOF
q "SELECT pg_reload_conf()" >/dev/null
PC_IN_ARCHIVE=$PC_S3_OK
sleep 0.5
if ! as_pg "${BR3[@]}" check >&2; then
    ((PC_S3_OK)) || die "pgbackrest check (S3) failed (archive_command: see $LOG)"
    pc_s3_off "archive_command with pipectl wal-push into $PC_S3_URI failed (see $LOG)"
    sleep 0.5
    as_pg "${BR3[@]}" check >&2 || die "pgbackrest check (S3) failed (archive_command: see $LOG)"
fi

# peak RSS and elapsed time of a command, measured by a python parent (ru_maxrss of its child,
# monotonic clock around it): writes "SECONDS KB" to FILE; the command's stdout passes through.
measure() { # FILE CMD...
    python3 -c '
import resource, subprocess, sys, time
t0 = time.monotonic()
rc = subprocess.call(sys.argv[2:])
dt = time.monotonic() - t0
with open(sys.argv[1], "w") as f:
    f.write("%.6f %d\n" % (dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)' "$@"
}

S3PC_S=() S3PC_B=() S3PC_RSS=() S3BR_S=() S3BR_B=() S3RPC_S=() S3RBR_S=()
S3PC_IDS=()
run_s3_pipectl() {
    ((PC_S3_OK)) || return 0
    local out id secs rss
    if ! out=$(measure "$BASE/measure.out" "$BIN" -f "$M3" backup create --label "bench s3 $1" \
        -o json 2>"$BASE/s3-pc.err"); then
        pc_s3_off "pipectl backup create into $PC_S3_URI failed: $(tail -c 800 "$BASE/s3-pc.err" | tr '\n' ' ')"
        return 0
    fi
    read -r secs rss <"$BASE/measure.out"
    id=$(jq -r .id <<<"$out" 2>/dev/null || true)
    if [[ -z "$id" || "$id" == null || ! -f "$S3_FS/pipectl/backups/$id/pipectl.json" ]]; then
        pc_s3_off "pipectl backup create exited 0 but backups/${id:-?}/pipectl.json is not in the bucket"
        return 0
    fi
    S3PC_S+=("$secs") S3PC_RSS+=("$rss") S3PC_IDS+=("$id")
    S3PC_B+=("$(obj_bytes "$S3_FS/pipectl/backups/$id")")
}
run_s3_pgbackrest() {
    local t0 label
    t0=$(now)
    as_pg "${BR3[@]}" --type=full backup >&2 || die "pgbackrest backup (S3) failed"
    S3BR_S+=("$(elapsed "$t0")")
    label=$(as_pg "${BR3[@]}" --output=json info | jq -r '.[0].backup[-1].label')
    [[ -n "$label" && -d "$S3_FS/pgbackrest/backup/bench/$label" ]] ||
        die "pgbackrest backup $label not in the bucket ($S3_FS/pgbackrest/backup/bench)"
    S3BR_B+=("$(obj_bytes "$S3_FS/pgbackrest/backup/bench/$label")")
}
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then order=(run_s3_pipectl run_s3_pgbackrest); else order=(run_s3_pgbackrest run_s3_pipectl); fi
    for f in "${order[@]}"; do settle; "$f" "$r"; done
    pc_line="null"
    ((PC_S3_OK)) && pc_line="${S3PC_S[-1]} s ${S3PC_B[-1]} B (peak RSS $((S3PC_RSS[-1] / 1024)) MB)"
    say "S3 round $r: pipectl $pc_line, pgbackrest ${S3BR_S[-1]} s ${S3BR_B[-1]} B"
done
if ((PC_S3_OK)) && ! "$BIN" -f "$M3" backup verify "${S3PC_IDS[-1]}" >/dev/null 2>"$BASE/s3-verify.err"; then
    pc_s3_off "pipectl backup verify ${S3PC_IDS[-1]} (S3) failed: $(tail -c 600 "$BASE/s3-verify.err" | tr '\n' ' ')"
fi

for r in $(seq 1 "$ROUNDS"); do
    if ((PC_S3_OK)); then
        d=$BASE/restore-s3-pc-$r
        t0=$(now)
        if ! "$BIN" -f "$M3" restore --latest --to "$d" >/dev/null 2>"$BASE/s3-restore.err"; then
            pc_s3_off "pipectl restore --latest from $PC_S3_URI failed: $(tail -c 600 "$BASE/s3-restore.err" | tr '\n' ' ')"
        else
            S3RPC_S+=("$(elapsed "$t0")")
            [[ -f "$d/recovery.signal" && -f "$d/backup_label" && -d "$d/base" ]] ||
                pc_s3_off "pipectl restore from S3: no data directory in $d"
        fi
        rm -rf "$d"
    fi
    d=$BASE/restore-s3-br-$r
    new_restore_dir "$d"
    t0=$(now)
    as_pg "${BR3[@]}" --pg1-path="$d" restore >&2 || die "pgbackrest restore (S3) failed"
    S3RBR_S+=("$(elapsed "$t0")")
    [[ -f "$d/recovery.signal" && -f "$d/backup_label" && -d "$d/base" ]] ||
        die "pgbackrest restore (S3): no data directory in $d"
    rm -rf "$d"
    pc_line="null"
    ((PC_S3_OK)) && pc_line="${S3RPC_S[-1]} s"
    say "S3 restore round $r: pipectl $pc_line, pgbackrest ${S3RBR_S[-1]} s"
done
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null

# ---------------------------------------------------------------------------------------------
# WAL archiving throughput: a second cluster, its segments accumulated with archive_command = ''
say "WAL leg: $WAL_SEGMENTS segments per run"
as_pg "$PG_BIN/initdb" -D "$WDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
    >"$BASE/initdb-wal.log" 2>&1 || { cat "$BASE/initdb-wal.log" >&2; die "initdb (WAL cluster) failed"; }
cat >>"$WDATA/postgresql.conf" <<EOF

# --- bench/backup WAL leg ---
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = 5433
shared_buffers = 32MB
max_wal_size = 1GB
checkpoint_timeout = 30min
log_line_prefix = '%m [%p] '
wal_level = replica
archive_mode = on
include_if_exists = 'bench_archive_command.conf'
EOF
set_wal_archive() { # COMMAND ('' accumulates segments), then reload
    printf "archive_command = '%s'\n" "$1" >"$WDATA/bench_archive_command.conf"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$WDATA/bench_archive_command.conf"
    wq -c "SELECT pg_reload_conf()" >/dev/null
}
wq() { "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$SOCK" -p 5433 -U postgres -d postgres "$@"; }
printf "archive_command = ''\n" >"$WDATA/bench_archive_command.conf"
[[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$WDATA/bench_archive_command.conf"
as_pg "$PG_BIN/pg_ctl" -D "$WDATA" -l "$WLOG" -w -t 120 start >/dev/null ||
    { tail -n 30 "$WLOG" >&2; die "the WAL cluster did not start"; }
wq -c "CREATE TABLE t (i int)" >/dev/null
# Waits (in the server, 20 ms polls) until N more segments than BASE are archived; prints
# "k t_k t_n failed": k archived at the first poll that saw any, the epoch of the k-th and of the
# N-th archiving, and the failures counted meanwhile.
wq -c "
CREATE FUNCTION bench_wait_archived(base bigint, n int, timeout_s float8,
                                    OUT k bigint, OUT t_k float8, OUT t_n float8, OUT failed bigint)
LANGUAGE plpgsql AS \$\$
DECLARE c bigint; f0 bigint; t float8; deadline timestamptz := clock_timestamp() + timeout_s * interval '1 s';
BEGIN
    SELECT failed_count INTO f0 FROM pg_stat_archiver;
    LOOP
        SELECT archived_count - base, extract(epoch FROM last_archived_time), failed_count - f0
          INTO c, t, failed FROM pg_stat_archiver;
        IF c > 0 AND k IS NULL THEN k := c; t_k := t; END IF;
        IF c >= n THEN t_n := t; RETURN; END IF;
        IF clock_timestamp() > deadline THEN RETURN; END IF;
        IF failed >= 3 AND c <= 0 THEN RETURN; END IF; -- failing: no need to wait for the timeout
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$" >/dev/null
for i in $(seq 1 "$WAL_SEGMENTS"); do
    echo "INSERT INTO t VALUES ($i);"
    echo "SELECT pg_switch_wal();"
done >"$BASE/switch.sql"
as_pg pgbackrest --config="$BR_WAL_CONF" --stanza=walbench stanza-create >&2 ||
    die "pgbackrest stanza-create (WAL cluster, S3) failed"

# wal_run NAME COMMAND: segments/s of COMMAND as archive_command, or null (reason on stderr)
wal_run() {
    local name=$1 cmd=$2 i ready base k t_k t_n failed
    set_wal_archive ''
    wq -c "CHECKPOINT" >/dev/null # recycles the previous run's archived segments
    wq -f "$BASE/switch.sql" >/dev/null
    ready=$(find "$WDATA/pg_wal/archive_status" -name '*.ready' | wc -l)
    ((ready >= WAL_SEGMENTS)) || die "WAL leg: only $ready segments ready after $WAL_SEGMENTS switches"
    base=$(wq -c "SELECT archived_count FROM pg_stat_archiver")
    set_wal_archive "$cmd"
    IFS='|' read -r k t_k t_n failed < <(wq -c "SET stats_fetch_consistency = none" \
        -c "SELECT * FROM bench_wait_archived($base, $ready, 900)")
    if [[ -z "$t_n" ]]; then
        say "NOTE: WAL $name: $ready segments not archived within 900 s (failures: $failed; see $WLOG)"
        WAL_RESULT=null
    elif ((k >= ready)) || [[ $(calc "$t_n - $t_k") == 0.000000 ]]; then
        say "NOTE: WAL $name: every segment archived before the first poll: no rate"
        WAL_RESULT=null
    else
        WAL_RESULT=$(calc "($ready - $k) / ($t_n - $t_k)")
        say "WAL $name: $ready segments, $((ready - k)) in $(calc "$t_n - $t_k") s: $WAL_RESULT segments/s (failed attempts: $failed)"
    fi
    # nothing left for the next run, whatever happened
    set_wal_archive ''
    rm -f "$WDATA"/pg_wal/archive_status/*.ready 2>/dev/null || true
}
WAL_PC=null WAL_BR=null WAL_BRA=null
BRW="pgbackrest --config=$BR_WAL_CONF --stanza=walbench"
if ((PC_S3_OK)); then
    wal_run "pipectl wal-push" "$(pc_push "$PC_WAL_URI" "$MW")"
    WAL_PC=$WAL_RESULT
    n=$(find "$S3_FS/pipectl-wal" -type f 2>/dev/null | wc -l)
    say "pipectl-wal/ holds $n objects"
fi
wal_run "pgbackrest archive-push" "$BRW archive-push %p"
WAL_BR=$WAL_RESULT
wal_run "pgbackrest archive-push (async)" "$BRW --archive-async archive-push %p"
WAL_BRA=$WAL_RESULT
n=$(find "$S3_FS/pgbackrest-wal/archive" -type f 2>/dev/null | wc -l)
say "pgbackrest-wal/archive holds $n objects"
as_pg "$PG_BIN/pg_ctl" -D "$WDATA" -m fast -w -t 60 stop >/dev/null

# ---------------------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.6f", (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
imedian() { median "$@" | awk '{ printf "%.0f", $1 }'; } # byte counts: whole numbers
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }
pc_s=$(median "${PC_S[@]}") bb_s=$(median "${BB_S[@]}") br_s=$(median "${BR_S[@]}")
pc_b=$(imedian "${PC_B[@]}") bb_b=$(imedian "${BB_B[@]}") br_b=$(imedian "${BR_B[@]}")
rpc_s=$(median "${RPC_S[@]}") rbr_s=$(median "${RBR_S[@]}")
ratio() { calc "$1 / $2"; }
r_pc_br=$(ratio "$pc_s" "$br_s") r_pc_bb=$(ratio "$pc_s" "$bb_s")
rb_pc_br=$(ratio "$pc_b" "$br_b") rb_pc_bb=$(ratio "$pc_b" "$bb_b")
rr=$(ratio "$rpc_s" "$rbr_s")
tf() { awk "BEGIN { print ($1) ? \"true\" : \"false\" }"; }

# S3 figures; a pipectl leg that did not complete every round is null
s3br_s=$(median "${S3BR_S[@]}") s3br_b=$(imedian "${S3BR_B[@]}") s3rbr_s=$(median "${S3RBR_S[@]}")
s3pc_s=null s3pc_b=null s3rpc_s=null s3pc_rss=null
if ((PC_S3_OK)) && ((${#S3PC_S[@]} == ROUNDS && ${#S3RPC_S[@]} == ROUNDS)); then
    s3pc_s=$(median "${S3PC_S[@]}") s3pc_b=$(imedian "${S3PC_B[@]}") s3rpc_s=$(median "${S3RPC_S[@]}")
    s3pc_rss=$(calc "$(maxof "${S3PC_RSS[@]}") / 1024")
fi
rnull() { [[ "$1" == null || "$2" == null ]] && echo null || ratio "$1" "$2"; }
tnull() { [[ "$2" == null || "$3" == null ]] && echo null || tf "$(printf "$1" "$2" "$3")"; }
j() { printf '%s' "$1" | awk '{ if ($0 == "null") print "null"; else printf "%.3f", $0 }'; }
s3_r=$(rnull "$s3pc_s" "$s3br_s") s3_rb=$(rnull "$s3pc_b" "$s3br_b") s3_rr=$(rnull "$s3rpc_s" "$s3rbr_s")
wal_r=$(rnull "$WAL_PC" "$WAL_BRA")
t_s3b=$(tnull "%s <= 0.7 * %s" "$s3pc_s" "$s3br_s")
t_s3r=$(tnull "%s <= 0.7 * %s" "$s3rpc_s" "$s3rbr_s")
t_wal=$(tnull "%s >= %s" "$WAL_PC" "$WAL_BRA")
t_rss=$(tnull "%s < %s" "$s3pc_rss" 100)
run_s=$(elapsed "$T_START")
say "run took $(j "$run_s") s"

printf '{"scale": %d, "rounds": %d, "db_bytes": %d, "data_dir_bytes": %d, ' "$SCALE" "$ROUNDS" "$DB_BYTES" "$SRC_FILES"
printf '"pipectl_s": %.3f, "pipectl_bytes": %d, "pgbackrest_s": %.3f, "pgbackrest_bytes": %d, ' "$pc_s" "$pc_b" "$br_s" "$br_b"
printf '"pg_basebackup_s": %.3f, "pg_basebackup_bytes": %d, ' "$bb_s" "$bb_b"
printf '"restore_pipectl_s": %.3f, "restore_pgbackrest_s": %.3f, ' "$rpc_s" "$rbr_s"
printf '"pipectl_to_pgbackrest_time": %.3f, "pipectl_to_pg_basebackup_time": %.3f, ' "$r_pc_br" "$r_pc_bb"
printf '"pipectl_to_pgbackrest_bytes": %.3f, "pipectl_to_pg_basebackup_bytes": %.3f, ' "$rb_pc_br" "$rb_pc_bb"
printf '"restore_pipectl_to_pgbackrest_time": %.3f, ' "$rr"
printf '"target_as_fast_as_pgbackrest": %s, "target_within_1_2x_pg_basebackup": %s, ' \
    "$(tf "$pc_s <= $br_s")" "$(tf "$pc_s <= 1.2 * $bb_s")"
printf '"s3_pipectl_s": %s, "s3_pipectl_bytes": %s, "s3_pgbackrest_s": %s, "s3_pgbackrest_bytes": %d, ' \
    "$(j "$s3pc_s")" "$([[ $s3pc_b == null ]] && echo null || printf '%d' "$s3pc_b")" "$(j "$s3br_s")" "$s3br_b"
printf '"s3_restore_pipectl_s": %s, "s3_restore_pgbackrest_s": %s, ' "$(j "$s3rpc_s")" "$(j "$s3rbr_s")"
printf '"wal_segments": %d, "wal_pipectl_segments_per_s": %s, "wal_pgbackrest_segments_per_s": %s, "wal_pgbackrest_async_segments_per_s": %s, ' \
    "$WAL_SEGMENTS" "$(j "$WAL_PC")" "$(j "$WAL_BR")" "$(j "$WAL_BRA")"
printf '"s3_backup_peak_rss_mb": %s, "s3_pipectl_archive_command": "%s", ' "$(j "$s3pc_rss")" "$PC_VIA"
printf '"s3_pipectl_to_pgbackrest_time": %s, "s3_pipectl_to_pgbackrest_bytes": %s, ' "$(j "$s3_r")" "$(j "$s3_rb")"
printf '"s3_restore_pipectl_to_pgbackrest_time": %s, "wal_pipectl_to_pgbackrest_async": %s, ' "$(j "$s3_rr")" "$(j "$wal_r")"
printf '"target_s3_backup_within_0_7x_pgbackrest": %s, "target_s3_restore_within_0_7x_pgbackrest": %s, ' "$t_s3b" "$t_s3r"
printf '"target_wal_at_least_pgbackrest_async": %s, "target_s3_backup_rss_under_100mb": %s, ' "$t_wal" "$t_rss"
printf '"run_s": %.1f}\n' "$run_s"
