#!/usr/bin/env bash
# secure_stack.sh: a throwaway *secured, replicated* test cluster, no Docker: three Apache Kafka
# KRaft nodes (broker+controller each, jars from .cache/kafka/libs) with TLS, SCRAM-SHA-512 and an
# authorizer, and a PostgreSQL 15 that only accepts TLS + scram-sha-256 over TCP.
#
#   scripts/secure_stack.sh start DIR                   start everything; writes DIR/secure.env
#   scripts/secure_stack.sh stop DIR                    stop everything, remove DIR (idempotent)
#   scripts/secure_stack.sh env DIR                     print DIR/secure.env (it holds passwords)
#   scripts/secure_stack.sh kill-broker DIR N           kill -9 broker N (1..3)
#   scripts/secure_stack.sh start-broker DIR N          start broker N again (same ports and data),
#                                                       wait until it answers
#   scripts/secure_stack.sh add-user DIR NAME PASSWORD  add (or reset) a SCRAM-SHA-512 user
#
# Kafka: node.id 1..3, process.roles=broker,controller, a static quorum of three voters (any one
# node can die). Listeners per node: SASL_SSL (clients and inter-broker, SCRAM-SHA-512), SSL
# (mutual TLS, client certificate required; principal = the certificate's CN, e.g.
# User:pipectl-mtls) and CONTROLLER (PLAINTEXT, loopback). No PLAINTEXT client listener. Node 1
# also has MISMATCH: SASL_SSL like the first, bound and advertised on 127.0.0.2, which its
# certificate (IP:127.0.0.1, DNS:localhost) does not name: for host name verification tests
# (PC_SK_MISMATCH_BOOTSTRAP; metadata over it lists node 1 only).
# StandardAuthorizer, allow.everyone.if.no.acl.found=false, super.users=User:admin;User:ANONYMOUS.
# SCRAM users admin, ingest and sink are written at format time (KIP-900); add-user adds more.
# PostgreSQL: ssl=on with a certificate from the same CA; TCP needs hostssl + scram-sha-256 (role
# pipectl, SUPERUSER, owns database `pipeline`); the unix socket trusts everyone (user postgres).
#
# Layout of DIR: .pc-secure-stack (marker: stop only removes directories that have it),
# secure.env (mode 600), admin.properties (mode 600: Java client properties of the admin),
# ports (internal), tls/ (ca.pem ca.key server.pem server.key server.p12 client.pem client.key
# other-ca.pem), serverN.properties (mode 600), kafkaN/ (log.dirs), kafkaN.log (WARN and up plus
# the "started" line), kafkaN.pid, pg/ pg_sock/ pg.log (or under /tmp, see scripts/stack.sh).
# Passwords are generated at each start (openssl rand) and never printed. Throwaway: never
# expose it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/lib.sh"
PG_BIN=${PC_PG_BIN:-/usr/lib/postgresql/15/bin}
KAFKA_LIBS=${PC_KAFKA_LIBS:-$ROOT/.cache/kafka/libs}
LOG4J="$ROOT/scripts/kafka/log4j.properties"
READY_TIMEOUT=${PC_SK_READY_TIMEOUT:-90}
KAFKA_HEAP=${PC_SK_KAFKA_HEAP:-384m}
JAVA=${JAVA:-java}
MARKER=.pc-secure-stack
NODES=(1 2 3)

say() { printf 'secure_stack: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}



secret() { openssl rand -hex 16; } # hex: safe inside JAAS strings, SCRAM specs and DSNs

# --- TLS --------------------------------------------------------------------------------------

tls_make() { # DIR: CA, server cert (brokers + PostgreSQL), client cert, unrelated CA
    local t=$1/tls
    mkdir -p "$t"
    chmod 755 "$t"
    cat >"$t/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    local cnf=$t/openssl.cnf
    (
        umask 077
        set -e
        openssl req -config "$cnf" -x509 -new -newkey rsa:2048 -nodes -sha256 -days 7 \
            -keyout "$t/ca.key" -out "$t/ca.pem" -subj "/CN=pipectl test CA" -extensions ca_ext
        openssl req -config "$cnf" -x509 -new -newkey rsa:2048 -nodes -sha256 -days 7 \
            -keyout "$t/other-ca.key" -out "$t/other-ca.pem" -subj "/CN=pipectl unrelated CA" \
            -extensions ca_ext
        local name cn ext
        for name in server client; do
            if [[ $name == server ]]; then cn=localhost ext=server_ext; else cn=pipectl-mtls ext=client_ext; fi
            openssl req -config "$cnf" -new -newkey rsa:2048 -nodes -sha256 \
                -keyout "$t/$name.key" -out "$t/$name.csr" -subj "/CN=$cn"
            openssl x509 -req -in "$t/$name.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -sha256 \
                -set_serial "0x$(openssl rand -hex 8)" -days 7 -extfile "$cnf" -extensions "$ext" \
                -out "$t/$name.pem"
        done
        openssl pkcs12 -export -in "$t/server.pem" -inkey "$t/server.key" -certfile "$t/ca.pem" \
            -name broker -out "$t/server.p12" -passout "env:PC_SK_KS_PASSWORD"
    ) >"$1/tls.log" 2>&1 || { cat "$1/tls.log" >&2; die "openssl failed"; }
    rm -f "$t"/*.csr "$t/other-ca.key"
    chmod 644 "$t/ca.pem" "$t/other-ca.pem" "$t/server.pem" "$t/client.pem"
    chmod 600 "$t/ca.key" "$t/server.key" "$t/client.key" "$t/server.p12"
}

# --- Kafka ------------------------------------------------------------------------------------

kafka_java() { # CLASS ARGS...: a Kafka CLI class with the cached jars (C1 only: quick start)
    "$JAVA" -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m -cp "$KAFKA_LIBS/*" \
        -Dlog4j.configuration="file:$LOG4J" "$@"
}


# Ports: SASL_n, SSL_n, CTL_n for n in 1..3 and MISMATCH_1 (on 127.0.0.2), kept in DIR/ports
# (sourced by the other commands).
ports_pick() {
    local dir=$1 p n i=0
    read -r -a p <<<"$(free_ports 10 127.0.0.1 127.0.0.2)"
    ((${#p[@]} == 10)) || die "no free loopback ports for Kafka"
    : >"$dir/ports"
    for n in "${NODES[@]}"; do
        printf 'SASL_%s=%s SSL_%s=%s CTL_%s=%s\n' "$n" "${p[i]}" "$n" "${p[i + 1]}" "$n" "${p[i + 2]}" \
            >>"$dir/ports"
        i=$((i + 3))
    done
    printf 'MISMATCH_1=%s\n' "${p[i]}" >>"$dir/ports"
}
ports_load() {
    [[ -f "$1/ports" ]] || die "no secure stack in $1"
    # shellcheck disable=SC1091
    source "$1/ports"
}
port_of() { local v="${1}_${2}"; echo "${!v}"; } # KIND N

kafka_write_props() { # DIR N
    local dir=$1 n=$2 voters="" m
    for m in "${NODES[@]}"; do voters+="${voters:+,}$m@127.0.0.1:$(port_of CTL "$m")"; done
    local sasl ssl ctl listeners advertised protomap mismatch_jaas=""
    sasl=$(port_of SASL "$n") ssl=$(port_of SSL "$n") ctl=$(port_of CTL "$n")
    listeners="SASL_SSL://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,CONTROLLER://127.0.0.1:$ctl"
    advertised="SASL_SSL://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl"
    protomap="CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
    if ((n == 1)); then # host name verification tests: a name the certificate lacks
        listeners+=",MISMATCH://127.0.0.2:$(port_of MISMATCH 1)"
        advertised+=",MISMATCH://127.0.0.2:$(port_of MISMATCH 1)"
        protomap+=",MISMATCH:SASL_SSL"
        mismatch_jaas="listener.name.mismatch.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.mismatch.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$ADMIN_PASSWORD\";"
    fi
    (
        umask 077
        cat >"$dir/server$n.properties" <<EOF
# pipectl secure test cluster, node $n of 3 (scripts/secure_stack.sh)
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
log.dirs=$dir/kafka$n

# TLS (every client listener)
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/server.p12
ssl.keystore.password=$KS_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
listener.name.ssl.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]*).*\$/\$1/,DEFAULT

# SASL (SCRAM-SHA-512 on SASL_SSL, also between brokers)
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
$mismatch_jaas

# authorizer
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:ANONYMOUS

# replication (min.insync.replicas stays 1: topics set 2 themselves)
default.replication.factor=3
num.partitions=1
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true

# small: three nodes share two cores
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
EOF
    )
}

kafka_pid() { cat "$1/kafka$2.pid" 2>/dev/null || true; }
kafka_alive() { # DIR N: the recorded process of node N runs (and is that node, not a reused pid)
    local pid
    pid=$(kafka_pid "$1" "$2")
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        grep -qaF "$1/server$2.properties" "/proc/$pid/cmdline" 2>/dev/null
}

kafka_format() { # DIR: format the three log dirs (in parallel, one cluster id, SCRAM users)
    local dir=$1 n id pids=() rc=0
    id=$(kafka_uuid)
    for n in "${NODES[@]}"; do
        rm -rf "$dir/kafka$n"
        mkdir -p "$dir/kafka$n" "$dir/kafka$n-logs"
        kafka_java kafka.tools.StorageTool format -t "$id" -c "$dir/server$n.properties" \
            --ignore-formatted \
            --add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]" \
            --add-scram "SCRAM-SHA-512=[name=ingest,password=$INGEST_PASSWORD]" \
            --add-scram "SCRAM-SHA-512=[name=sink,password=$SINK_PASSWORD]" \
            </dev/null >"$dir/kafka$n-format.log" 2>&1 &
        pids+=($!)
    done
    for n in "${!pids[@]}"; do
        if ! wait "${pids[n]}"; then
            rc=1
            cat "$dir/kafka$((n + 1))-format.log" >&2
        fi
    done
    ((rc == 0)) || die "kafka StorageTool format failed"
}

kafka_launch() { # DIR N: start node N in the background (no wait)
    local dir=$1 n=$2
    # setsid: own session, no terminal; no inherited stdio, so ctest is not held open by it.
    setsid "$JAVA" "-Xmx$KAFKA_HEAP" -Xms128m -XX:+UseSerialGC -Xshare:auto \
        -XX:ReservedCodeCacheSize=64m -XX:MaxMetaspaceSize=128m \
        -Djava.awt.headless=true -Dkafka.logs.dir="$dir/kafka$n-logs" \
        -Dlog4j.configuration="file:$LOG4J" -cp "$KAFKA_LIBS/*" \
        kafka.Kafka "$dir/server$n.properties" </dev/null >>"$dir/kafka$n.log" 2>&1 &
    echo $! >"$dir/kafka$n.pid"
    disown $! # no "Killed" job notices from this shell when stop/kill-broker ends it
}

# kafka_probe DIR N WANT: node N answers ApiVersions over TLS on its SASL_SSL port (no SASL needed
# for that request) and, over mutual TLS on its SSL port, a Metadata request listing >= WANT
# brokers. Certificates and host name (127.0.0.1) are verified. No JVM: ~50 ms.
kafka_probe() {
    "$PY" - "$1/tls" "$(port_of SASL "$2")" "$(port_of SSL "$2")" "$3" <<'EOF'
import socket, ssl, struct, sys
tls, sasl_port, ssl_port, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def call(port, api_key, version, payload, cert):
    ctx = ssl.create_default_context(cafile=tls + '/ca.pem')
    if cert:
        ctx.load_cert_chain(tls + '/client.pem', tls + '/client.key')
    raw = socket.create_connection(('127.0.0.1', port), timeout=2)
    with ctx.wrap_socket(raw, server_hostname='127.0.0.1') as s:
        s.settimeout(3)
        cid = b'pc-secure-probe'
        body = struct.pack('>hhih', api_key, version, 42, len(cid)) + cid + payload
        s.sendall(struct.pack('>i', len(body)) + body)
        def read(n):
            b = b''
            while len(b) < n:
                c = s.recv(n - len(b))
                if not c:
                    raise OSError('closed')
                b += c
            return b
        return read(struct.unpack('>i', read(4))[0])

try:
    r = call(sasl_port, 18, 0, b'', False)                 # ApiVersions v0
    corr, err = struct.unpack('>ih', r[:6])
    if corr != 42 or err != 0:
        sys.exit(1)
    r = call(ssl_port, 3, 1, struct.pack('>i', 0), True)   # Metadata v1, no topics
    corr, nbrokers = struct.unpack('>ii', r[:8])
    sys.exit(0 if corr == 42 and nbrokers >= want else 1)
except (OSError, ssl.SSLError, struct.error, ValueError):
    sys.exit(1)
EOF
}

# kafka_wait DIR DEADLINE N:OFFSET...: each node N logged "Kafka Server started" after byte OFFSET
# of its log (i.e. in this run) and answers kafka_probe with all 3 brokers registered.
# Returns 0 when all are ready, 1 when one died (its number in DEAD_NODE), 2 on timeout.
kafka_wait() {
    local dir=$1 deadline=$2 spec n off pending
    shift 2
    pending=("$@")
    while :; do
        local left=()
        for spec in "${pending[@]}"; do
            n=${spec%%:*} off=${spec#*:}
            if tail -c "+$((off + 1))" "$dir/kafka$n.log" 2>/dev/null | grep 'Kafka Server started' >/dev/null &&
                kafka_probe "$dir" "$n" 3; then
                continue
            fi
            if ! kafka_alive "$dir" "$n"; then
                DEAD_NODE=$n
                return 1
            fi
            left+=("$spec")
        done
        ((${#left[@]} > 0)) || return 0
        pending=("${left[@]}")
        (($(date +%s) < deadline)) || { DEAD_NODE=${pending[0]%%:*}; return 2; }
        sleep 0.3
    done
}

kafka_kill() { # DIR N: SIGKILL node N (its data is either kept for start-broker or thrown away)
    local dir=$1 n=$2 pid i
    pid=$(kafka_pid "$dir" "$n")
    if kafka_alive "$dir" "$n"; then
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do # (a zombie has an empty cmdline: not alive)
            kafka_alive "$dir" "$n" || break
            sleep 0.1
        done
    fi
    rm -f "$dir/kafka$n.pid"
}

# Formats and starts the three nodes in parallel, waits for them; retries on other ports when a
# port was taken meanwhile.
kafka_start_all() {
    local dir=$1 attempt n rc specs
    for attempt in 1 2 3; do
        ports_pick "$dir"
        ports_load "$dir"
        for n in "${NODES[@]}"; do kafka_write_props "$dir" "$n"; done
        kafka_format "$dir"
        specs=()
        for n in "${NODES[@]}"; do
            : >"$dir/kafka$n.log"
            kafka_launch "$dir" "$n"
            specs+=("$n:0")
        done
        # PostgreSQL initialises while the JVMs boot
        if ((attempt == 1)); then pg_start "$dir"; fi
        rc=0
        kafka_wait "$dir" $(($(date +%s) + READY_TIMEOUT)) "${specs[@]}" || rc=$?
        ((rc != 0)) || return 0
        if ((rc == 1)) && ((attempt < 3)) &&
            grep -q 'Address already in use' "$dir"/kafka[123].log; then
            say "a Kafka port was taken, retrying on other ports"
            for n in "${NODES[@]}"; do kafka_kill "$dir" "$n"; done
            continue
        fi
        tail -n 40 "$dir/kafka$DEAD_NODE.log" >&2
        if ((rc == 1)); then die "Kafka node $DEAD_NODE exited during startup (last 40 lines of its log above)"; fi
        die "Kafka node $DEAD_NODE not ready after ${READY_TIMEOUT}s (last 40 lines of its log above)"
    done
}

# --- PostgreSQL (as in scripts/stack.sh, plus TLS and passwords) --------------------------------


pg_base_of() { if [[ -f "$1/pg.base" ]]; then cat "$1/pg.base"; else echo "$1"; fi; }

pg_start() {
    local dir=$1 base data sock port tries=0 t0
    t0=$(now_ms)
    pg_os_user_setup
    base=$dir
    if (( ${#base} + 24 > 100 )) || ! as_pg test -x "$dir" -a -r "$dir"; then
        base=$(mktemp -d /tmp/pc-secure-pg.XXXXXX)
        chmod 755 "$base"
        echo "$base" >"$dir/pg.base"
        say "PostgreSQL files in $base (DIR not usable by $PG_OS_USER or socket path too long)"
    fi
    data="$base/pg" sock="$base/pg_sock"
    mkdir -p "$data" "$sock"
    chmod 700 "$data"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OS_USER" "$data" "$sock"
    [[ "$base" == "$dir" ]] || ln -sfn "$data" "$dir/pg"
    touch "$base/pg.log"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OS_USER" "$base/pg.log"
    [[ "$base" == "$dir" ]] || ln -sfn "$base/pg.log" "$dir/pg.log"

    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    # the server's certificate and key must belong to the server's OS user (key mode 600)
    install -m 600 "$dir/tls/server.pem" "$data/server.crt"
    install -m 600 "$dir/tls/server.key" "$data/server.key"
    install -m 600 "$dir/tls/ca.pem" "$data/ca.crt"
    [[ $(id -u) -ne 0 ]] || chown "$PG_OS_USER" "$data/server.crt" "$data/server.key" "$data/ca.crt"
    cat >"$data/pg_hba.conf" <<'EOF'
# pipectl secure test cluster (scripts/secure_stack.sh): TCP only with TLS and a SCRAM password
local     all  all                trust
hostssl   all  all  127.0.0.1/32  scram-sha-256
hostnossl all  all  0.0.0.0/0     reject
EOF
    [[ $(id -u) -ne 0 ]] || chown "$PG_OS_USER" "$data/pg_hba.conf"
    cat >>"$data/postgresql.conf" <<EOF

# --- pipectl secure test cluster (scripts/secure_stack.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
wal_level = replica
max_wal_senders = 4
synchronous_commit = off
shared_buffers = 64MB
max_connections = 60
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    while :; do
        port=$(free_ports 1 127.0.0.1 127.0.0.2)
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
    PG_PORT=$port PG_DATA=$data PG_SOCK=$sock
    # the password goes through stdin, not the command line
    "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d postgres \
        >/dev/null <<EOF
CREATE ROLE pipectl LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
CREATE DATABASE pipeline OWNER pipectl;
EOF
    say "PostgreSQL 15 (TLS) on 127.0.0.1:$port ready in $(( $(now_ms) - t0 )) ms"
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

# --- commands ---------------------------------------------------------------------------------

is_stack_dir() { [[ -f "$1/$MARKER" ]]; }

cmd_stop() {
    local dir=$1 base n
    [[ -e "$dir" ]] || return 0
    if ! is_stack_dir "$dir"; then
        if [[ -d "$dir" && -z "$(ls -A "$dir")" ]]; then rmdir "$dir"; return 0; fi
        die "$dir is not a secure stack directory (no $MARKER marker): not touching it"
    fi
    base=$(pg_base_of "$dir")
    # the data is thrown away: SIGKILL is enough (a clean shutdown of three nodes at once only
    # waits for controller time-outs)
    for n in "${NODES[@]}"; do
        if kafka_alive "$dir" "$n"; then kill -KILL "$(kafka_pid "$dir" "$n")" 2>/dev/null || true; fi
    done
    for n in "${NODES[@]}"; do kafka_kill "$dir" "$n"; done
    pg_stop "$dir"
    if [[ "$base" != "$dir" && "$base" == /tmp/pc-secure-pg.* ]]; then rm -rf "$base"; fi
    rm -rf "$dir"
}

write_env() {
    local dir=$1 n boot="" mtls=""
    for n in "${NODES[@]}"; do
        boot+="${boot:+,}127.0.0.1:$(port_of SASL "$n")"
        mtls+="${mtls:+,}127.0.0.1:$(port_of SSL "$n")"
    done
    (
        umask 077
        {
            echo "# written by scripts/secure_stack.sh start; source it (holds passwords: mode 600)"
            echo "export PC_SK_DIR='$dir'"
            echo "export PC_SK_BOOTSTRAP='$boot'"
            for n in "${NODES[@]}"; do echo "export PC_SK_BROKER$n=127.0.0.1:$(port_of SASL "$n")"; done
            echo "export PC_SK_MTLS_BOOTSTRAP='$mtls'"
            echo "export PC_SK_MISMATCH_BOOTSTRAP=127.0.0.2:$(port_of MISMATCH 1)"
            echo "export PC_SK_MTLS_USER=pipectl-mtls"
            echo "export PC_SK_CA='$dir/tls/ca.pem' PC_SK_OTHER_CA='$dir/tls/other-ca.pem'"
            echo "export PC_SK_CLIENT_CERT='$dir/tls/client.pem' PC_SK_CLIENT_KEY='$dir/tls/client.key'"
            echo "export PC_SK_ADMIN_USER=admin PC_SK_ADMIN_PASSWORD='$ADMIN_PASSWORD'"
            echo "export PC_SK_ADMIN_PROPERTIES='$dir/admin.properties'"
            echo "export PC_SK_INGEST_PASSWORD='$INGEST_PASSWORD' PC_SK_SINK_PASSWORD='$SINK_PASSWORD'"
            echo "export PC_SK_PG_DSN='host=127.0.0.1 port=$PG_PORT dbname=pipeline user=pipectl sslmode=verify-full sslrootcert=$dir/tls/ca.pem'"
            echo "export PC_SK_PG_PASSWORD='$PG_PASSWORD'"
            echo "export PC_SK_PG_PORT=$PG_PORT PC_SK_PG_SOCKET_DIR='$PG_SOCK'"
            echo "export PC_SK_PG_DATA='$PG_DATA' PC_SK_PG_BIN='$PG_BIN' PC_SK_PG_OS_USER='$PG_OS_USER'"
            echo "export PC_KAFKA_LIBS='$KAFKA_LIBS' PC_KAFKA_LOG4J='$LOG4J'"
        } >"$dir/secure.env"
        {
            echo "# admin client of the secure test cluster (scripts/secure_stack.sh)"
            echo "security.protocol=SASL_SSL"
            echo "sasl.mechanism=SCRAM-SHA-512"
            echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$ADMIN_PASSWORD\";"
            echo "ssl.truststore.type=PEM"
            echo "ssl.truststore.location=$dir/tls/ca.pem"
        } >"$dir/admin.properties"
    )
}

cmd_start() {
    local dir=$1 t0
    t0=$(now_ms)
    [[ -d "$KAFKA_LIBS" ]] || die "no Kafka jars in $KAFKA_LIBS: run scripts/setup.sh first"
    command -v "$JAVA" >/dev/null || die "java not found: run scripts/setup.sh first"
    [[ -x "$PG_BIN/initdb" ]] || die "no PostgreSQL in $PG_BIN: run scripts/setup.sh first"
    if [[ -e "$dir" ]]; then
        if is_stack_dir "$dir"; then
            say "stopping the previous secure stack in $dir"
            cmd_stop "$dir"
        elif [[ -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
            die "$dir exists and is not a secure stack directory: choose another"
        fi
    fi
    mkdir -p "$dir"
    chmod 755 "$dir"
    touch "$dir/$MARKER"
    STARTING_DIR=$dir
    trap 'start_failed' EXIT
    trap 'exit 130' INT TERM

    ADMIN_PASSWORD=$(secret) INGEST_PASSWORD=$(secret) SINK_PASSWORD=$(secret)
    PG_PASSWORD=$(secret) KS_PASSWORD=$(secret)
    PC_SK_KS_PASSWORD=$KS_PASSWORD tls_make "$dir"
    kafka_start_all "$dir" # starts PostgreSQL while the JVMs boot
    write_env "$dir"
    trap - EXIT INT TERM
    say "secure stack (3 Kafka nodes, TLS PostgreSQL) up in $(( $(now_ms) - t0 )) ms; source $dir/secure.env"
}

start_failed() {
    local rc=$?
    trap - EXIT
    [[ -n "${STARTING_DIR:-}" ]] || exit "$rc"
    say "start failed: stopping what was started in $STARTING_DIR"
    cmd_stop "$STARTING_DIR" || true
    exit $(( rc == 0 ? 1 : rc ))
}

node_arg() {
    [[ "${1:-}" =~ ^[123]$ ]] || die "broker number must be 1, 2 or 3 (got '${1:-}')"
}

cmd_kill_broker() {
    local dir=$1 n=$2
    node_arg "$n"
    is_stack_dir "$dir" && [[ -f "$dir/server$n.properties" ]] || die "no secure stack in $dir"
    kafka_alive "$dir" "$n" || say "broker $n is not running"
    kafka_kill "$dir" "$n"
}

cmd_start_broker() {
    local dir=$1 n=$2 t0 off rc=0
    node_arg "$n"
    is_stack_dir "$dir" && [[ -f "$dir/server$n.properties" ]] || die "no secure stack in $dir"
    ports_load "$dir"
    t0=$(now_ms)
    if kafka_alive "$dir" "$n"; then
        say "broker $n is already running"
        off=0
    else
        off=$(stat -c %s "$dir/kafka$n.log" 2>/dev/null || echo 0)
        kafka_launch "$dir" "$n"
    fi
    kafka_wait "$dir" $(($(date +%s) + READY_TIMEOUT)) "$n:$off" || rc=$?
    if ((rc != 0)); then
        tail -c "+$((off + 1))" "$dir/kafka$n.log" | tail -n 40 >&2
        die "broker $n did not come back (rc $rc; last 40 lines of its log above)"
    fi
    say "broker $n ready in $(( $(now_ms) - t0 )) ms"
}

cmd_add_user() {
    local dir=$1 name=$2 password=$3 boot="" n f
    [[ -f "$dir/admin.properties" ]] || die "no secure stack in $dir"
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "user name '$name': letters, digits, . _ - only"
    [[ -n "$password" && "$password" != *[],=[\\\"\'[:space:]]* ]] ||
        die "the password must be non-empty, without spaces and without , = [ ] \\ \" '"
    ports_load "$dir"
    for n in "${NODES[@]}"; do boot+="${boot:+,}127.0.0.1:$(port_of SASL "$n")"; done
    # the password goes through a mode 600 file, not the command line
    f=$(umask 077 && mktemp "$dir/.add-user.XXXXXX")
    # (in a file the value has no brackets: SCRAM-SHA-512=password=...)
    printf 'SCRAM-SHA-512=password=%s\n' "$password" >"$f"
    if ! kafka_java kafka.admin.ConfigCommand --bootstrap-server "$boot" \
        --command-config "$dir/admin.properties" --alter --add-config-file "$f" \
        --entity-type users --entity-name "$name" </dev/null >"$dir/add-user.log" 2>&1; then
        rm -f "$f"
        local out
        out=$(cat "$dir/add-user.log")
        printf '%s\n' "${out//"$password"/<password>}" >&2
        die "adding SCRAM user $name failed"
    fi
    rm -f "$f"
    say "SCRAM-SHA-512 user $name added"
}

main() {
    (($# >= 2)) || usage
    local cmd=$1 dir
    dir=$(abspath "$2")
    [[ "$dir" != / && -n "$dir" ]] || die "refusing stack directory '$2'"
    shift 2
    case "$cmd" in
    start) (($# == 0)) || usage; cmd_start "$dir" ;;
    stop) cmd_stop "$dir" ;;
    env) cat "$dir/secure.env" ;;
    kill-broker) (($# == 1)) || usage; cmd_kill_broker "$dir" "$1" ;;
    start-broker) (($# == 1)) || usage; cmd_start_broker "$dir" "$1" ;;
    add-user) (($# == 2)) || usage; cmd_add_user "$dir" "$1" "$2" ;;
    *) usage ;;
    esac
}

main "$@"
