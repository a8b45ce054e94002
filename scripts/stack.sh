#!/usr/bin/env bash
# stack.sh: a throwaway local test stack, no Docker: PostgreSQL 15 and a single-node Apache Kafka
# (KRaft, jars from .cache/kafka/libs, fetched by scripts/setup.sh), both on free loopback ports.
#
#   scripts/stack.sh start DIR [--pg] [--kafka]   start (default: both); writes DIR/stack.env
#   scripts/stack.sh stop DIR                     stop everything, remove DIR (idempotent)
#   scripts/stack.sh env DIR                      print DIR/stack.env
#   scripts/stack.sh restart-pg DIR               pg_ctl restart (e.g. after ALTER SYSTEM of a
#                                                 restart-only setting)
#   scripts/stack.sh restart-kafka DIR [SECONDS]  stop the broker (SIGTERM), stay down SECONDS
#                                                 (default 0), start it again on the same ports
#                                                 and log.dirs (data kept), wait until it answers
#
# Layout of DIR: stack.env, .pc-stack (marker: stop only removes directories that have it),
# pg/ (data directory), pg_sock/ (unix socket), pg.log, kafka/ (log.dirs), kafka.log (broker
# log, WARN and up plus the "started" line), kafka.pid, server.properties.
#
# PostgreSQL refuses to run as root: when run as root, the server runs as the `postgres` system
# user (created by the postgresql-15 package; override with PC_PG_OS_USER) and pg/ + pg_sock/ are
# chowned to it. When that user cannot reach DIR (a parent directory is not traversable) or the
# socket path would be too long, pg/ and pg_sock/ live in a /tmp directory instead (recorded in
# DIR/pg.base, removed by stop), and DIR/pg is a symlink to the data directory.
# The test cluster trusts every local and 127.0.0.1 connection: it is throwaway, never expose it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/lib.sh"
PG_BIN=${PC_PG_BIN:-/usr/lib/postgresql/15/bin}
KAFKA_LIBS=${PC_KAFKA_LIBS:-$ROOT/.cache/kafka/libs}
LOG4J="$ROOT/scripts/kafka/log4j.properties"
READY_TIMEOUT=${PC_KAFKA_READY_TIMEOUT:-60}

say() { printf 'stack: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}



# kafka_probe HOST:PORT: exit 0 when the broker answers a Metadata request (v1) listing >= 1
# broker. No JVM start: a few hundred bytes over a socket.
kafka_probe() {
    "$PY" - "$1" <<'EOF'
import socket, struct, sys
host, port = sys.argv[1].rsplit(':', 1)
cid = b'pc-stack-probe'
body = struct.pack('>hhih', 3, 1, 42, len(cid)) + cid + struct.pack('>i', 0)  # Metadata v1, no topics
try:
    s = socket.create_connection((host, int(port)), timeout=2)
    s.settimeout(3)
    s.sendall(struct.pack('>i', len(body)) + body)
    def read(n):
        b = b''
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise OSError('closed')
            b += c
        return b
    size = struct.unpack('>i', read(4))[0]
    resp = read(size)
    corr, nbrokers = struct.unpack('>ii', resp[:8])
    sys.exit(0 if corr == 42 and nbrokers >= 1 else 1)
except (OSError, struct.error):
    sys.exit(1)
EOF
}

# --- PostgreSQL -------------------------------------------------------------------------------


pg_base_of() { # where pg/ and pg_sock/ live for stack DIR
    local dir=$1
    if [[ -f "$dir/pg.base" ]]; then cat "$dir/pg.base"; else echo "$dir"; fi
}

pg_start() {
    local dir=$1 base data sock port tries=0
    pg_os_user_setup
    base=$dir
    # unix socket paths are limited to 107 bytes: "<base>/pg_sock/.s.PGSQL.NNNNN"
    if (( ${#base} + 24 > 100 )) || ! as_pg test -x "$dir" -a -r "$dir"; then
        base=$(mktemp -d /tmp/pc-stack-pg.XXXXXX)
        chmod 755 "$base"
        echo "$base" >"$dir/pg.base"
        say "PostgreSQL files in $base (DIR not usable by $PG_OS_USER or socket path too long)"
    fi
    data="$base/pg"
    sock="$base/pg_sock"
    mkdir -p "$data" "$sock"
    chmod 700 "$data"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OS_USER" "$data" "$sock"
    [[ "$base" == "$dir" ]] || ln -sfn "$data" "$dir/pg"
    # the log lives beside the data: postgres must be able to open it through $base
    touch "$base/pg.log"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OS_USER" "$base/pg.log"
    [[ "$base" == "$dir" ]] || ln -sfn "$base/pg.log" "$dir/pg.log"

    local t0; t0=$(now_ms)
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$data/postgresql.conf" <<EOF

# --- pipectl test stack (scripts/stack.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
wal_level = replica
max_wal_senders = 4
synchronous_commit = off
shared_buffers = 64MB
max_connections = 60
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    while :; do
        port=$(free_ports 1)
        # port lives in its own include-able line so restart-pg keeps it
        echo "port = $port" >>"$data/postgresql.conf"
        if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$base/pg.log" -w -t 60 start >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        if (( tries >= 3 )) || ! grep -q 'could not bind\|could not create listen socket' "$dir/pg.log"; then
            tail -n 40 "$dir/pg.log" >&2
            die "PostgreSQL did not start (last 40 lines of its log above)"
        fi
        say "port $port taken, retrying"
    done
    PG_PORT=$port PG_DATA=$data
    "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c 'CREATE DATABASE pipeline' >/dev/null
    say "PostgreSQL 15 on 127.0.0.1:$port ready in $(( $(now_ms) - t0 )) ms"
}

pg_stop() {
    local dir=$1 base data pid
    base=$(pg_base_of "$dir")
    data="$base/pg"
    [[ -f "$data/postmaster.pid" ]] || return 0
    pg_os_user_setup
    pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 20 stop >/dev/null 2>&1 ||
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        grep -q postgres "/proc/$pid/cmdline" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# --- Kafka ------------------------------------------------------------------------------------

JAVA=${JAVA:-java}
kafka_java() { # CLASS ARGS...: run a Kafka class with the cached jars
    "$JAVA" -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$KAFKA_LIBS/*" \
        -Dlog4j.configuration="file:$LOG4J" "$@"
}


kafka_write_props() {
    local dir=$1 port=$2 cport=$3
    cat >"$dir/server.properties" <<EOF
# pipectl test stack: single-node KRaft broker+controller (scripts/stack.sh)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/kafka
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
EOF
}

kafka_alive() { # DIR: the recorded broker process is running
    local pid
    pid=$(cat "$1/kafka.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -qa 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null
}

# Launch formats the log dir and starts the broker in the background; kafka_wait waits for it.
kafka_launch() {
    local dir=$1 ports pid
    [[ -d "$KAFKA_LIBS" ]] || die "no Kafka jars in $KAFKA_LIBS: run scripts/setup.sh first"
    command -v "$JAVA" >/dev/null || die "java not found: run scripts/setup.sh first"
    read -r KAFKA_PORT KAFKA_CPORT <<<"$(free_ports 2)"
    [[ -n "$KAFKA_CPORT" ]] || die "no free loopback ports for Kafka"
    rm -rf "$dir/kafka"
    mkdir -p "$dir/kafka" "$dir/kafka-logs"
    kafka_write_props "$dir" "$KAFKA_PORT" "$KAFKA_CPORT"
    [[ -n "${KAFKA_CLUSTER_ID:-}" ]] || KAFKA_CLUSTER_ID=$(kafka_uuid)
    kafka_java kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" \
        --ignore-formatted >"$dir/kafka-format.log" 2>&1 ||
        { cat "$dir/kafka-format.log" >&2; die "kafka StorageTool format failed"; }
    # setsid: own session and process group, detached from the caller's terminal; no inherited
    # stdout/stderr, so ctest (which waits for its pipes) is not held open by the broker.
    setsid "$JAVA" -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Xshare:auto \
        -Djava.awt.headless=true -Dkafka.logs.dir="$dir/kafka-logs" \
        -Dlog4j.configuration="file:$LOG4J" -cp "$KAFKA_LIBS/*" \
        kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/kafka.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/kafka.pid"
}

kafka_wait() { # DIR T0: 0 ready, 1 died (maybe port clash), dies on timeout
    local dir=$1 t0=$2 deadline
    deadline=$(( $(date +%s) + READY_TIMEOUT ))
    while :; do
        if kafka_probe "127.0.0.1:$KAFKA_PORT"; then
            say "Kafka 3.9.1 (KRaft) on 127.0.0.1:$KAFKA_PORT ready in $(( $(now_ms) - t0 )) ms"
            return 0
        fi
        if ! kafka_alive "$dir"; then
            return 1
        fi
        if (( $(date +%s) >= deadline )); then
            tail -n 40 "$dir/kafka.log" >&2
            die "Kafka not ready after ${READY_TIMEOUT}s (last 40 lines of its log above)"
        fi
        sleep 0.25
    done
}

kafka_stop() {
    local dir=$1 pid i
    pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] || return 0
    if kafka_alive "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 80; i++)); do
            kafka_alive "$dir" || break
            sleep 0.25
        done
        if kafka_alive "$dir"; then
            say "Kafka did not stop within 20 s: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$dir/kafka.pid"
}

# --- commands ---------------------------------------------------------------------------------

is_stack_dir() { [[ -f "$1/.pc-stack" ]]; }

cmd_stop() {
    local dir=$1 base
    if [[ ! -e "$dir" ]]; then return 0; fi
    if ! is_stack_dir "$dir"; then
        if [[ -d "$dir" && -z "$(ls -A "$dir")" ]]; then rmdir "$dir"; return 0; fi
        die "$dir is not a stack directory (no .pc-stack marker): not touching it"
    fi
    base=$(pg_base_of "$dir")
    kafka_stop "$dir"
    pg_stop "$dir"
    if [[ "$base" != "$dir" && "$base" == /tmp/pc-stack-pg.* ]]; then rm -rf "$base"; fi
    rm -rf "$dir"
}

cmd_start() {
    local dir=$1 want_pg=$2 want_kafka=$3 t0 tk attempt
    t0=$(now_ms)
    if [[ -e "$dir" ]]; then
        if is_stack_dir "$dir"; then
            say "stopping the previous stack in $dir"
            cmd_stop "$dir"
        elif [[ -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
            die "$dir exists and is not a stack directory: choose another"
        fi
    fi
    mkdir -p "$dir"
    chmod 755 "$dir"
    touch "$dir/.pc-stack"
    STARTING_DIR=$dir
    trap 'start_failed' EXIT
    trap 'exit 130' INT TERM

    PG_PORT="" PG_DATA="" KAFKA_PORT=""
    # Kafka first: its JVM boots while PostgreSQL initialises.
    if ((want_kafka)); then tk=$(now_ms); kafka_launch "$dir"; fi
    if ((want_pg)); then pg_start "$dir"; fi
    if ((want_kafka)); then
        attempt=1
        until kafka_wait "$dir" "$tk"; do
            if (( attempt < 3 )) && grep -q 'Address already in use' "$dir/kafka.log"; then
                say "Kafka port taken, retrying on other ports"
                attempt=$((attempt + 1))
                kafka_stop "$dir"
                : >"$dir/kafka.log"
                tk=$(now_ms)
                kafka_launch "$dir"
                continue
            fi
            tail -n 40 "$dir/kafka.log" >&2
            die "Kafka exited during startup (last 40 lines of its log above)"
        done
    fi

    {
        echo "# written by scripts/stack.sh start; source it"
        echo "export PC_STACK_DIR='$dir'"
        if ((want_pg)); then
            echo "export PC_PG_HOST=127.0.0.1 PC_PG_PORT=$PG_PORT"
            echo "export PC_PG_DSN='host=127.0.0.1 port=$PG_PORT dbname=pipeline user=postgres'"
            echo "export PC_PG_BIN='$PG_BIN' PC_PG_DATA='$PG_DATA' PC_PG_OS_USER='$PG_OS_USER'"
        fi
        if ((want_kafka)); then
            echo "export PC_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
            echo "export PC_KAFKA_LIBS='$KAFKA_LIBS' PC_KAFKA_LOG4J='$LOG4J'"
        fi
    } >"$dir/stack.env"
    trap - EXIT INT TERM
    say "stack up in $(( $(now_ms) - t0 )) ms; source $dir/stack.env"
}

start_failed() {
    local rc=$?
    trap - EXIT
    [[ -n "${STARTING_DIR:-}" ]] || exit "$rc"
    say "start failed: stopping what was started in $STARTING_DIR"
    cmd_stop "$STARTING_DIR" || true
    exit $(( rc == 0 ? 1 : rc ))
}

cmd_restart_pg() {
    local dir=$1 base
    [[ -f "$dir/stack.env" ]] || die "no stack in $dir"
    base=$(pg_base_of "$dir")
    pg_os_user_setup
    as_pg "$PG_BIN/pg_ctl" -D "$base/pg" -l "$base/pg.log" -m fast -w -t 60 restart >/dev/null ||
        { tail -n 40 "$dir/pg.log" >&2; die "PostgreSQL restart failed"; }
}

# Restarts the broker in place: same server.properties (ports), same log.dirs, no format.
cmd_restart_kafka() {
    local dir=$1 down=${2:-0} t0 pid
    [[ -f "$dir/server.properties" && -f "$dir/stack.env" ]] || die "no Kafka stack in $dir"
    KAFKA_PORT=$(sed -n 's/^listeners=PLAINTEXT:\/\/127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$dir/server.properties")
    [[ -n "$KAFKA_PORT" ]] || die "no PLAINTEXT listener in $dir/server.properties"
    kafka_stop "$dir"
    sleep "$down"
    t0=$(now_ms)
    setsid "$JAVA" -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Xshare:auto \
        -Djava.awt.headless=true -Dkafka.logs.dir="$dir/kafka-logs" \
        -Dlog4j.configuration="file:$LOG4J" -cp "$KAFKA_LIBS/*" \
        kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/kafka.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/kafka.pid"
    kafka_wait "$dir" "$t0" || { tail -n 40 "$dir/kafka.log" >&2; die "Kafka did not come back"; }
}

main() {
    (($# >= 2)) || usage
    local cmd=$1 dir
    dir=$(abspath "$2")
    [[ "$dir" != / && -n "$dir" ]] || die "refusing stack directory '$2'"
    shift 2
    case "$cmd" in
    start)
        local pg=0 kafka=0
        for a in "$@"; do
            case "$a" in
            --pg) pg=1 ;;
            --kafka) kafka=1 ;;
            *) usage ;;
            esac
        done
        if ((pg == 0 && kafka == 0)); then pg=1 kafka=1; fi
        cmd_start "$dir" "$pg" "$kafka"
        ;;
    stop) cmd_stop "$dir" ;;
    env) cat "$dir/stack.env" ;;
    restart-pg) cmd_restart_pg "$dir" ;;
    restart-kafka) cmd_restart_kafka "$dir" "${1:-0}" ;;
    *) usage ;;
    esac
}

main "$@"
