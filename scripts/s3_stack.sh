#!/usr/bin/env bash
# s3_stack.sh: a throwaway S3-compatible server for tests, no Docker: s3proxy (Apache 2.0, jars
# from .cache/s3proxy/libs, fetched by scripts/setup.sh) over its filesystem back end, on free
# loopback ports, with one bucket and credentials made up for this start.
#
#   scripts/s3_stack.sh start DIR   start; writes DIR/s3.env (mode 600: it holds the secret)
#   scripts/s3_stack.sh stop DIR    stop it, remove DIR (idempotent)
#   scripts/s3_stack.sh env DIR     print DIR/s3.env
#   scripts/s3_stack.sh down DIR    stop the server only (a fault for tests): data, ports,
#                                   credentials and s3.env stay; a frozen (SIGSTOP) one is ended too
#   scripts/s3_stack.sh up DIR      start it again after down: same ports, data and credentials
#
# DIR/s3.env exports PC_S3_ENDPOINT (http://localhost:PORT), PC_S3_ENDPOINT_TLS
# (https://localhost:PORT, certificate signed by the CA in PC_S3_CA_FILE, made per start),
# PC_S3_REGION, PC_S3_BUCKET, PC_S3_ACCESS_KEY_ID, PC_S3_SECRET_ACCESS_KEY. Both path-style
# (localhost:PORT/BUCKET/KEY) and virtual-host style (BUCKET.localhost:PORT/KEY: libcurl resolves
# *.localhost to loopback) work. The server listens on 127.0.0.1, but name it "localhost":
# with virtual hosts on, s3proxy takes any other Host's first label for the bucket.
#
# Layout of DIR: .pc-s3 (marker: stop only removes directories that have it), s3.env,
# s3proxy.conf (mode 600), s3proxy.pid, s3proxy.log (WARN and up, plus Jetty's start lines),
# data/ (the objects, one file each), tls/ (CA, server key and certificate, PKCS#12 keystore).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/lib.sh"
S3_LIBS=${PC_S3PROXY_LIBS:-$ROOT/.cache/s3proxy/libs}
LOGBACK="$ROOT/scripts/s3proxy/logback.xml"
READY_TIMEOUT=${PC_S3_READY_TIMEOUT:-90}
JAVA=${JAVA:-java}
BUCKET=${PC_S3_TEST_BUCKET:-pipectl-test}
REGION=us-east-1

say() { printf 's3_stack: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }



alive() { # DIR: the recorded s3proxy is running
    local pid
    pid=$(cat "$1/s3proxy.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        grep -qa 'org.gaul.s3proxy.Main' "/proc/$pid/cmdline" 2>/dev/null
}

# A CA and a server certificate for 127.0.0.1 and localhost, and the keystore Jetty reads.
make_tls() {
    local t=$1/tls
    mkdir -p "$t"
    (
        cd "$t"
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 7 -subj "/CN=pipectl s3_stack test CA" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
            -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s.localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$BUCKET" >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 7 -extfile ext.cnf 2>/dev/null
        openssl pkcs12 -export -in server.pem -inkey server.key -name s3proxy \
            -out keystore.p12 -passout "pass:$KS_PASS"
        chmod 644 ca.pem
    ) || die "could not make the TLS certificate (openssl)"
}

# A signed request with the stack's credentials; the secret goes through a curl config on
# stdin, never on a command line.
signed_curl() { # METHOD URL [curl args...]
    local method=$1 url=$2
    shift 2
    printf 'user = "%s:%s"\n' "$ACCESS_KEY_ID" "$SECRET_ACCESS_KEY" |
        curl -sS -K - --aws-sigv4 "aws:amz:$REGION:s3" \
            -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -d' ' -f1)" \
            -X "$method" "$url" "$@"
}

launch() {
    local dir=$1
    read -r HTTP_PORT HTTPS_PORT <<<"$(free_ports 2)"
    [[ -n "$HTTPS_PORT" ]] || die "no free loopback ports"
    (
        umask 077
        cat >"$dir/s3proxy.conf" <<EOF
s3proxy.endpoint=http://127.0.0.1:$HTTP_PORT
s3proxy.secure-endpoint=https://127.0.0.1:$HTTPS_PORT
s3proxy.keystore-path=$dir/tls/keystore.p12
s3proxy.keystore-password=$KS_PASS
s3proxy.virtual-host=localhost
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$ACCESS_KEY_ID
s3proxy.credential=$SECRET_ACCESS_KEY
jclouds.provider=filesystem-nio2
jclouds.identity=$ACCESS_KEY_ID
jclouds.credential=$SECRET_ACCESS_KEY
jclouds.filesystem.basedir=$dir/data
EOF
    )
    exec_server "$dir"
}

exec_server() { # DIR: runs s3proxy with DIR/s3proxy.conf, pid in DIR/s3proxy.pid
    local dir=$1
    # setsid: own session, no inherited stdout/stderr (ctest waits for its pipes). SerialGC and
    # C1 only: a small, quick-starting JVM is what a test server wants on two cores.
    setsid "$JAVA" -Xmx256m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Djava.awt.headless=true -Dlogback.configurationFile="$LOGBACK" -cp "$S3_LIBS/*" \
        org.gaul.s3proxy.Main --properties "$dir/s3proxy.conf" \
        </dev/null >>"$dir/s3proxy.log" 2>&1 &
    echo $! >"$dir/s3proxy.pid"
}

wait_ready() { # DIR T0: 0 ready, 1 died
    local dir=$1 t0=$2 deadline
    deadline=$(( $(date +%s) + READY_TIMEOUT ))
    while :; do
        # "Started Server@" (not ServerConnector): both connectors are up
        if grep -q 'Started Server@' "$dir/s3proxy.log" 2>/dev/null; then
            return 0
        fi
        alive "$dir" || return 1
        if (( $(date +%s) >= deadline )); then
            tail -n 40 "$dir/s3proxy.log" >&2
            die "s3proxy not ready after ${READY_TIMEOUT}s (last 40 lines of its log above)"
        fi
        sleep 0.1
    done
}

stop_proc() {
    local dir=$1 pid i
    pid=$(cat "$dir/s3proxy.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] || return 0
    if alive "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true # a frozen one (tests SIGSTOP it) must see the TERM
        for ((i = 0; i < 60; i++)); do
            alive "$dir" || break
            sleep 0.25
        done
        if alive "$dir"; then
            say "s3proxy did not stop within 15 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$dir/s3proxy.pid"
}

cmd_stop() {
    local dir=$1
    [[ -e "$dir" ]] || return 0
    if [[ ! -f "$dir/.pc-s3" ]]; then
        if [[ -d "$dir" && -z "$(ls -A "$dir")" ]]; then rmdir "$dir"; return 0; fi
        die "$dir is not an s3_stack directory (no .pc-s3 marker): not touching it"
    fi
    stop_proc "$dir"
    rm -rf "$dir"
}

start_failed() {
    local rc=$?
    trap - EXIT
    [[ -n "${STARTING_DIR:-}" ]] || exit "$rc"
    say "start failed: stopping what was started in $STARTING_DIR"
    cmd_stop "$STARTING_DIR" || true
    exit $(( rc == 0 ? 1 : rc ))
}

cmd_start() {
    local dir=$1 t0 attempt code
    t0=$(now_ms)
    [[ -d "$S3_LIBS" ]] || die "no s3proxy jars in $S3_LIBS: run scripts/setup.sh first"
    command -v "$JAVA" >/dev/null || die "java not found: run scripts/setup.sh first"
    command -v curl >/dev/null || die "curl not found"
    if [[ -e "$dir" ]]; then
        if [[ -f "$dir/.pc-s3" ]]; then
            say "stopping the previous s3proxy in $dir"
            cmd_stop "$dir"
        elif [[ -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
            die "$dir exists and is not an s3_stack directory: choose another"
        fi
    fi
    mkdir -p "$dir/data"
    touch "$dir/.pc-s3"
    STARTING_DIR=$dir
    trap 'start_failed' EXIT
    trap 'exit 130' INT TERM

    # every credential made per start, nothing literal: an id of 20 upper-case hex characters
    ACCESS_KEY_ID=$(openssl rand -hex 10 | tr 'a-f' 'A-F')
    SECRET_ACCESS_KEY=$(openssl rand -base64 30 | tr -d '\n' | tr '+/' 'xy')
    KS_PASS=$(openssl rand -hex 12)
    make_tls "$dir"
    for attempt in 1 2 3; do
        launch "$dir"
        if wait_ready "$dir" "$t0"; then
            break
        fi
        if (( attempt < 3 )) && grep -q 'Address already in use' "$dir/s3proxy.log"; then
            say "port taken, retrying on other ports"
            stop_proc "$dir"
            : >"$dir/s3proxy.log"
            continue
        fi
        tail -n 40 "$dir/s3proxy.log" >&2
        die "s3proxy exited during startup (last 40 lines of its log above)"
    done
    local t_up=$(( $(now_ms) - t0 ))
    # the bucket, created through the TLS endpoint: proves signing and the certificate at once
    code=$(signed_curl PUT "https://localhost:$HTTPS_PORT/$BUCKET" --cacert "$dir/tls/ca.pem" \
        -o "$dir/create-bucket.out" -w '%{http_code}') || true
    [[ "$code" == 200 ]] ||
        die "creating bucket $BUCKET failed: HTTP $code: $(cat "$dir/create-bucket.out" 2>/dev/null)"
    rm -f "$dir/create-bucket.out"
    (
        umask 077
        {
            echo "# written by scripts/s3_stack.sh start; source it (holds the secret key)"
            echo "export PC_S3_DIR='$dir'"
            echo "export PC_S3_ENDPOINT=http://localhost:$HTTP_PORT"
            echo "export PC_S3_ENDPOINT_TLS=https://localhost:$HTTPS_PORT"
            echo "export PC_S3_CA_FILE='$dir/tls/ca.pem'"
            echo "export PC_S3_REGION=$REGION"
            echo "export PC_S3_BUCKET=$BUCKET"
            echo "export PC_S3_ACCESS_KEY_ID=$ACCESS_KEY_ID"
            echo "export PC_S3_SECRET_ACCESS_KEY='$SECRET_ACCESS_KEY'"
        } >"$dir/s3.env"
    )
    chmod 600 "$dir/s3.env"
    trap - EXIT INT TERM
    local pid rss
    pid=$(cat "$dir/s3proxy.pid")
    rss=$(awk '/^VmRSS/ {print int($2/1024)}' "/proc/$pid/status" 2>/dev/null || echo '?')
    say "s3proxy on 127.0.0.1:$HTTP_PORT (http) and :$HTTPS_PORT (https) ready in ${t_up} ms" \
        "(bucket $BUCKET in $(( $(now_ms) - t0 )) ms, RSS ${rss} MB); source $dir/s3.env"
}

# down/up: the server goes away and comes back as it was (what a test of an outage needs).
cmd_down() {
    local dir=$1
    [[ -f "$dir/.pc-s3" && -f "$dir/s3.env" ]] || die "no started s3_stack in $dir"
    stop_proc "$dir"
    say "s3proxy in $dir stopped (data kept; 'up' starts it again)"
}

cmd_up() {
    local dir=$1 t0 port
    t0=$(now_ms)
    [[ -f "$dir/.pc-s3" && -f "$dir/s3proxy.conf" ]] || die "no started s3_stack in $dir"
    if alive "$dir"; then say "s3proxy in $dir is already running"; return 0; fi
    port=$(sed -n 's|^s3proxy.endpoint=http://127.0.0.1:||p' "$dir/s3proxy.conf")
    # the log is read for "Started Server@": keep the previous run's lines apart
    cat "$dir/s3proxy.log" >>"$dir/s3proxy.log.old" 2>/dev/null || true
    : >"$dir/s3proxy.log"
    exec_server "$dir"
    wait_ready "$dir" "$t0" || {
        tail -n 40 "$dir/s3proxy.log" >&2
        die "s3proxy did not start again on port $port (last 40 lines of its log above)"
    }
    say "s3proxy in $dir up again on 127.0.0.1:$port in $(( $(now_ms) - t0 )) ms"
}

[[ $# -ge 2 ]] || usage
cmd=$1
dir=$(abspath "$2")
case "$cmd" in
start) cmd_start "$dir" ;;
stop) cmd_stop "$dir" ;;
env) cat "$dir/s3.env" ;;
down) cmd_down "$dir" ;;
up) cmd_up "$dir" ;;
*) usage ;;
esac
