#!/usr/bin/env bash
# bench/backup: base backup and restore of a pgbench database, side by side, in the same run:
#   - pipectl backup create (manifest with archiving + backups, compression zstd)
#   - pg_basebackup -Ft -X none --checkpoint=fast --manifest-checksums=SHA256
#     --compress=client-zstd: the BASE_BACKUP options pipectl sends, and client-side zstd like
#     pipectl (which receives the uncompressed tar stream over libpq and compresses it with
#     libarchive's zstd filter). One difference is pipectl's design: pg_basebackup -X none lets
#     the server wait for the archiver (it polls once a second); pipectl asks the server not to
#     wait and waits for the stop segment in its own repository (polls every 50 ms)
#   - pgBackRest (Debian package) full backup: local repository, compress-type=zst, process-max=2
# Every tool compresses with zstd at its default level 3. Restore: pipectl restore --latest and
# pgbackrest restore (files and recovery configuration only; neither starts the server).
# Targets: pipectl at least as fast as pgBackRest at comparable size, and within 1.2x of
# pg_basebackup's time.
#
# Usage: bash bench/backup/run.sh [SCALE] [ROUNDS]   (defaults 50 and 3; SCALE 50 is ~750 MB)
#   PIPECTL=path/to/pipectl (default build/pipectl, built with cmake when missing)
#   PC_PG_BIN=/usr/lib/postgresql/15/bin
# The figures are the medians over ROUNDS rounds; each round runs every tool once (in a rotating
# order) against the same, idle, page-cached database.
#
# Own throwaway PostgreSQL 15 (initdb in a temp dir, unix socket only, run as the postgres OS user
# when this runs as root), removed with everything else on exit, also on failure.
# WAL: archive_command = pipectl wal-push into pipectl's repository && pgbackrest archive-push into
# pgBackRest's, so both tools wait for their own stop segment like they do in production
# (pgBackRest's archive-check stays on; pg_basebackup -X none waits for the archiver too).
# Last line: one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCALE=${1:-50}
ROUNDS=${2:-3}
[[ "$SCALE" =~ ^[1-9][0-9]*$ && "$ROUNDS" =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: bash bench/backup/run.sh [SCALE] [ROUNDS]" >&2; exit 2; }
PG_BIN=${PC_PG_BIN:-/usr/lib/postgresql/15/bin}
PIPECTL=${PIPECTL:-$ROOT/build/pipectl}
say() { printf 'bench/backup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

source "$ROOT/bench/lib.sh"
if [[ -z "${PC_BENCH_NO_PREPARE:-}" && "$PIPECTL" == "$ROOT/build/pipectl" ]]; then
    bench_prepare "$ROOT/build" pipectl
fi
for t in initdb pg_ctl pgbench pg_basebackup psql; do
    [[ -x "$PG_BIN/$t" ]] || die "no $PG_BIN/$t: install postgresql-15 (scripts/setup.sh)"
done
for t in pgbackrest jq bc; do
    command -v "$t" >/dev/null || die "$t not found: run scripts/setup.sh"
done
if [[ ! -x "$PIPECTL" ]]; then
    say "building pipectl in $ROOT/build"
    cmake -S "$ROOT" -B "$ROOT/build" >/dev/null && cmake --build "$ROOT/build" -j2 >/dev/null ||
        die "build failed: cmake -S . -B build && cmake --build build"
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
PC_REPO=$BASE/pc-repo BR_REPO=$BASE/br-repo BB_OUT=$BASE/pgbb
BIN=$BASE/pipectl BR_CONF=$BASE/pgbackrest.conf
cleanup() {
    if [[ -f "$DATA/postmaster.pid" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$PIPECTL" "$BIN"
chmod 755 "$BIN"
mkdir -p "$DATA" "$SOCK" "$PC_REPO" "$BR_REPO" "$BB_OUT" "$BASE/br-log" "$BASE/br-lock"
chmod 700 "$DATA"
touch "$LOG"
[[ $(id -u) -ne 0 ]] ||
    chown "$PG_OWNER:" "$DATA" "$SOCK" "$PC_REPO" "$BR_REPO" "$BASE/br-log" "$BASE/br-lock" "$LOG"

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

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
dir_bytes() { du -sb "$1" | cut -f1; }

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
for r in $(seq 1 "$ROUNDS"); do
    d=$BASE/restore-pc-$r
    t0=$(now)
    "$BIN" restore --repository "$PC_REPO" --latest --to "$d" >/dev/null || die "pipectl restore failed"
    RPC_S+=("$(elapsed "$t0")")
    [[ -f "$d/recovery.signal" && -f "$d/backup_label" && -d "$d/base" ]] || die "pipectl restore: no data directory in $d"
    rm -rf "$d"
    d=$BASE/restore-br-$r
    mkdir -m 700 "$d"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OWNER:" "$d"
    t0=$(now)
    as_pg "${BR[@]}" --pg1-path="$d" restore >&2 || die "pgbackrest restore failed"
    RBR_S+=("$(elapsed "$t0")")
    [[ -f "$d/recovery.signal" && -f "$d/backup_label" && -d "$d/base" ]] || die "pgbackrest restore: no data directory in $d"
    rm -rf "$d"
    say "restore round $r: pipectl ${RPC_S[-1]} s, pgbackrest ${RBR_S[-1]} s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
pc_s=$(median "${PC_S[@]}") bb_s=$(median "${BB_S[@]}") br_s=$(median "${BR_S[@]}")
pc_b=$(median "${PC_B[@]}") bb_b=$(median "${BB_B[@]}") br_b=$(median "${BR_B[@]}")
rpc_s=$(median "${RPC_S[@]}") rbr_s=$(median "${RBR_S[@]}")
ratio() { echo "$1 / $2" | bc -l; }
r_pc_br=$(ratio "$pc_s" "$br_s") r_pc_bb=$(ratio "$pc_s" "$bb_s")
rb_pc_br=$(ratio "$pc_b" "$br_b") rb_pc_bb=$(ratio "$pc_b" "$bb_b")
rr=$(ratio "$rpc_s" "$rbr_s")
tf() { (($(echo "$1" | bc -l))) && echo true || echo false; }
printf '{"scale": %d, "rounds": %d, "db_bytes": %d, "data_dir_bytes": %d, ' "$SCALE" "$ROUNDS" "$DB_BYTES" "$SRC_FILES"
printf '"pipectl_s": %.3f, "pipectl_bytes": %d, "pgbackrest_s": %.3f, "pgbackrest_bytes": %d, ' "$pc_s" "$pc_b" "$br_s" "$br_b"
printf '"pg_basebackup_s": %.3f, "pg_basebackup_bytes": %d, ' "$bb_s" "$bb_b"
printf '"restore_pipectl_s": %.3f, "restore_pgbackrest_s": %.3f, ' "$rpc_s" "$rbr_s"
printf '"pipectl_to_pgbackrest_time": %.3f, "pipectl_to_pg_basebackup_time": %.3f, ' "$r_pc_br" "$r_pc_bb"
printf '"pipectl_to_pgbackrest_bytes": %.3f, "pipectl_to_pg_basebackup_bytes": %.3f, ' "$rb_pc_br" "$rb_pc_bb"
printf '"restore_pipectl_to_pgbackrest_time": %.3f, ' "$rr"
printf '"target_as_fast_as_pgbackrest": %s, "target_within_1_2x_pg_basebackup": %s}\n' \
    "$(tf "$pc_s <= $br_s")" "$(tf "$pc_s <= 1.2 * $bb_s")"
