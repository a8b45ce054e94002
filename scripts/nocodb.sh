#!/usr/bin/env bash
# nocodb.sh: a real NocoDB for the integration tests, installed from the npm registry, no Docker.
#
#   scripts/nocodb.sh install      npm install of scripts/nocodb/package.json (nocodb, playwright-core)
#                                  into .cache/nocodb/app; instant when the stamp matches
#   scripts/nocodb.sh start DIR    start NocoDB on a free loopback port; its metadata lives in a
#                                  database of its own in the test PostgreSQL of the stack whose
#                                  env is $PC_STACK_DIR/stack.env; writes DIR/nocodb.env
#   scripts/nocodb.sh stop DIR     stop it, drop its database and role, remove DIR (idempotent)
#
# DIR/nocodb.env exports PC_NOCODB_URL, PC_NOCODB_EMAIL, PC_NOCODB_PASSWORD (the generated super
# user) and PC_NOCODB_TOKEN (an API token made through the API), plus PC_NOCODB_MODULES (the
# node_modules folder, for the browser test). Layout of DIR: .pc-nocodb (marker: stop only removes
# directories that have it), nocodb.env, nocodb.log, nocodb.pid, nocodb.db (the metadata database
# and role name), work/ (NocoDB's working directory).
#
# Why the install is not a plain `npm install nocodb`: one dependency (xlsx) points at a URL
# outside the registry (package.json overrides it with the registry's 0.18.5) and nocodb-sdk's
# preinstall insists on pnpm (hence --ignore-scripts, then `npm rebuild sqlite3` for the only
# native module NocoDB needs at run time).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PC_NOCODB_CACHE:-$ROOT/.cache/nocodb}
APP="$CACHE/app"
PKG="$ROOT/scripts/nocodb/package.json"
SERVER_JS="$ROOT/scripts/nocodb/server.js"
READY_TIMEOUT=${PC_NOCODB_READY_TIMEOUT:-240}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

say() { printf 'nocodb: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
now_ms() { date +%s%3N; }

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

abspath() {
    local d=$1
    [[ $d == /* ]] || d="$PWD/$d"
    "$PY" -c 'import os,sys; print(os.path.normpath(sys.argv[1]))' "$d"
}

# --- install ----------------------------------------------------------------------------------

install_stamp() { # what the cache must have been built from: package.json and the Node version
    { cat "$PKG"; node --version; } | sha256sum | cut -d' ' -f1
}

cmd_install() {
    local want have t0 tmp
    command -v node >/dev/null && command -v npm >/dev/null ||
        die "node and npm are needed: run scripts/setup.sh (Debian packages nodejs, npm)"
    want=$(install_stamp)
    have=$(cat "$CACHE/stamp" 2>/dev/null || true)
    if [[ "$want" == "$have" && -f "$APP/node_modules/nocodb/package.json" ]]; then
        return 0
    fi
    t0=$(now_ms)
    say "installing NocoDB and playwright-core from the npm registry into $APP (about 2 minutes)"
    mkdir -p "$CACHE"
    tmp="$CACHE/app.tmp"
    rm -rf "$tmp" "$CACHE/stamp"
    mkdir -p "$tmp"
    cp "$PKG" "$tmp/package.json"
    if ! (cd "$tmp" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
            >"$CACHE/install.log" 2>&1); then
        tail -n 40 "$CACHE/install.log" >&2
        die "npm install failed (log above, full log in $CACHE/install.log)"
    fi
    # build against the local Node headers when they are installed (no download of headers)
    local nodedir=()
    [[ -f /usr/include/node/node.h ]] && nodedir=(env npm_config_nodedir=/usr)
    if ! (cd "$tmp" && "${nodedir[@]}" npm rebuild sqlite3 --no-audit --no-fund \
            >>"$CACHE/install.log" 2>&1); then
        tail -n 40 "$CACHE/install.log" >&2
        die "npm rebuild sqlite3 failed (log above, full log in $CACHE/install.log)"
    fi
    rm -rf "$APP"
    mv "$tmp" "$APP"
    echo "$want" >"$CACHE/stamp"
    say "NocoDB $(node -p "require('$APP/node_modules/nocodb/package.json').version") installed in $(( ($(now_ms) - t0) / 1000 )) s"
}

# --- start / stop -----------------------------------------------------------------------------

free_port() { # a loopback TCP port free right now, below the ephemeral range (as scripts/stack.sh)
    "$PY" - <<'PYEOF'
import random, socket
lo, hi = 20000, 32000
try:
    hi = min(hi, int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0]) - 1)
except Exception:
    pass
rng = random.SystemRandom()
for _ in range(2000):
    p = rng.randint(lo, hi)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', p))
        print(p)
        break
    except OSError:
        pass
    finally:
        s.close()
else:
    raise SystemExit('no free loopback port found')
PYEOF
}

rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# A fresh random password for the throwaway admin, in every character class NocoDB's password
# policy asks for (upper and lower case, digit, symbol).
rand_password() { printf 'Pc-%s!A9' "$(rand_hex 8)"; }

load_stack() {
    : "${PC_STACK_DIR:?PC_STACK_DIR is not set: it names the stack whose PostgreSQL holds the NocoDB metadata}"
    [[ -f "$PC_STACK_DIR/stack.env" ]] || die "no stack in $PC_STACK_DIR (stack.env missing)"
    # shellcheck disable=SC1091
    source "$PC_STACK_DIR/stack.env"
    [[ -n "${PC_PG_PORT:-}" ]] || die "the stack in $PC_STACK_DIR has no PostgreSQL"
}

pg_admin() { # SQL: as the stack's superuser, in database postgres
    PGOPTIONS="-c client_min_messages=warning" timeout 30 psql -XAtq -v ON_ERROR_STOP=1 \
        -h "$PC_PG_HOST" -p "$PC_PG_PORT" -U postgres -d postgres -c "$1"
}

nc_alive() { # DIR: the recorded NocoDB process is running
    local pid
    pid=$(cat "$1/nocodb.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -qa 'server.js' "/proc/$pid/cmdline" 2>/dev/null
}

# api METHOD PATH [JSON] [HEADER]: curl against the starting server, prints the body, fails on
# HTTP >= 400.
api() {
    local args=(-sS --max-time 60 -X "$1" -H 'Content-Type: application/json' -w '\n%{http_code}')
    [[ -n "${3:-}" ]] && args+=(--data-binary "$3")
    [[ -n "${4:-}" ]] && args+=(-H "$4")
    local out code
    out=$(curl "${args[@]}" "$NC_URL$2") || return 1
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if (( code >= 400 )); then
        say "$1 $2: HTTP $code: $out"
        return 1
    fi
    printf '%s' "$out"
}

cmd_start() {
    local dir=$1 t0 port db pw secret email pid deadline token jwt
    t0=$(now_ms)
    [[ -f "$APP/node_modules/nocodb/package.json" ]] ||
        die "NocoDB is not installed in $APP: run scripts/nocodb.sh install (or scripts/setup.sh)"
    load_stack
    if [[ -e "$dir" ]]; then
        if [[ -f "$dir/.pc-nocodb" ]]; then
            say "stopping the previous NocoDB in $dir"
            cmd_stop "$dir"
        elif [[ -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
            die "$dir exists and is not a NocoDB directory: choose another"
        fi
    fi
    mkdir -p "$dir/work"
    touch "$dir/.pc-nocodb"
    STARTING_DIR=$dir
    trap 'start_failed' EXIT
    trap 'exit 130' INT TERM

    # metadata: a database and a role of its own in the stack's PostgreSQL
    db="nocodb_meta_$(rand_hex 4)"
    pw="M$(rand_hex 12)"
    echo "$db" >"$dir/nocodb.db"
    pg_admin "CREATE ROLE \"$db\" LOGIN PASSWORD '$pw'" >/dev/null
    pg_admin "CREATE DATABASE \"$db\" OWNER \"$db\"" >/dev/null

    # generated super user: NocoDB wants 8+ chars with upper case, a digit and a special char
    email="admin-$(rand_hex 3)@pipectl.test"
    NC_PASSWORD=$(rand_password)
    secret=$(rand_hex 24)
    port=$(free_port)
    NC_URL="http://127.0.0.1:$port"

    : >"$dir/nocodb.log"
    chmod 600 "$dir/nocodb.log"
    # setsid + no inherited stdout/stderr: ctest must not wait on the server's pipes
    (cd "$dir/work" && exec env NC_APP_DIR="$APP" NC_WORK_DIR="$dir/work" PORT="$port" \
        NC_DB="pg://127.0.0.1:$PC_PG_PORT?u=$db&p=$pw&d=$db" \
        NC_AUTH_JWT_SECRET="$secret" NC_DISABLE_TELE=true \
        NC_ADMIN_EMAIL="$email" NC_ADMIN_PASSWORD="$NC_PASSWORD" NC_TOOL_DIR="$dir/work" \
        setsid node "$SERVER_JS" </dev/null >>"$dir/nocodb.log" 2>&1) &
    pid=$!
    echo "$pid" >"$dir/nocodb.pid"

    deadline=$(( $(date +%s) + READY_TIMEOUT ))
    until curl -sf --max-time 5 "$NC_URL/api/v1/health" 2>/dev/null | grep -q '"OK"'; do
        nc_alive "$dir" || die "NocoDB exited during startup"
        (( $(date +%s) < deadline )) || die "NocoDB not ready after ${READY_TIMEOUT}s"
        sleep 1
    done
    say "NocoDB on $NC_URL answers its health check after $(( ($(now_ms) - t0) / 1000 )) s"

    jwt=$(api POST /api/v1/auth/user/signin \
        "$(jq -nc --arg e "$email" --arg p "$NC_PASSWORD" '{email:$e,password:$p}')" |
        jq -r '.token // empty') || die "sign-in as the generated super user failed"
    [[ -n "$jwt" ]] || die "sign-in returned no token"
    token=$(api POST /api/v1/tokens '{"description":"pipectl integration tests"}' "xc-auth: $jwt" |
        jq -r '.token // empty') || die "creating an API token failed"
    [[ -n "$token" ]] || die "POST /api/v1/tokens returned no token"

    (
        umask 077
        {
            echo "# written by scripts/nocodb.sh start; source it (secrets of a throwaway server)"
            echo "export PC_NOCODB_URL='$NC_URL'"
            echo "export PC_NOCODB_EMAIL='$email'"
            echo "export PC_NOCODB_PASSWORD='$NC_PASSWORD'"
            echo "export PC_NOCODB_TOKEN='$token'"
            echo "export PC_NOCODB_MODULES='$APP/node_modules'"
            echo "export PC_NOCODB_META_DB='$db'"
        } >"$dir/nocodb.env"
    )
    trap - EXIT INT TERM
    say "NocoDB up in $(( ($(now_ms) - t0) / 1000 )) s; source $dir/nocodb.env"
}

start_failed() {
    local rc=$?
    trap - EXIT
    [[ -n "${STARTING_DIR:-}" ]] || exit "$rc"
    if [[ -f "$STARTING_DIR/nocodb.log" ]]; then
        say "last 60 lines of $STARTING_DIR/nocodb.log:"
        tail -n 60 "$STARTING_DIR/nocodb.log" >&2
    fi
    say "start failed: stopping what was started in $STARTING_DIR"
    cmd_stop "$STARTING_DIR" || true
    exit $(( rc == 0 ? 1 : rc ))
}

cmd_stop() {
    local dir=$1 pid db i
    [[ -e "$dir" ]] || return 0
    if [[ ! -f "$dir/.pc-nocodb" ]]; then
        if [[ -d "$dir" && -z "$(ls -A "$dir")" ]]; then rmdir "$dir"; return 0; fi
        die "$dir is not a NocoDB directory (no .pc-nocodb marker): not touching it"
    fi
    pid=$(cat "$dir/nocodb.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && nc_alive "$dir"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            nc_alive "$dir" || break
            sleep 0.25
        done
        if nc_alive "$dir"; then
            say "NocoDB did not stop within 15 s: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    db=$(cat "$dir/nocodb.db" 2>/dev/null || true)
    if [[ -n "$db" && -n "${PC_STACK_DIR:-}" && -f "$PC_STACK_DIR/stack.env" ]]; then
        load_stack
        if timeout 5 psql -XAtq -h "$PC_PG_HOST" -p "$PC_PG_PORT" -U postgres -d postgres \
                -c 'select 1' >/dev/null 2>&1; then
            pg_admin "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
            pg_admin "DROP ROLE IF EXISTS \"$db\"" >/dev/null || true
        fi
    fi
    rm -rf "$dir"
}

main() {
    (($# >= 1)) || usage
    case "$1" in
    install) cmd_install ;;
    start | stop)
        (($# == 2)) || usage
        local dir
        dir=$(abspath "$2")
        [[ "$dir" != / && -n "$dir" ]] || die "refusing directory '$2'"
        if [[ $1 == start ]]; then cmd_start "$dir"; else cmd_stop "$dir"; fi
        ;;
    *) usage ;;
    esac
}

main "$@"
