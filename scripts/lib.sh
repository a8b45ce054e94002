# scripts/lib.sh: what the throwaway stacks share (stack.sh, secure_stack.sh, s3_stack.sh):
# python, clocks, paths, free loopback ports, Kafka cluster ids, and running as PostgreSQL's OS
# user. Sourced; each script keeps its own say/die (their prefix names the script).
# shellcheck shell=bash

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

now_ms() { date +%s%3N; }

abspath() { # works for paths that do not exist yet
    local d=$1
    [[ $d == /* ]] || d="$PWD/$d"
    "$PY" -c 'import os,sys; print(os.path.normpath(sys.argv[1]))' "$d"
}

# free_ports N [ADDR...]: N distinct TCP ports free right now on every ADDR (default 127.0.0.1),
# picked at random below the ephemeral range (so outgoing connections do not take them) to keep
# concurrent stacks apart.
free_ports() {
    local n=$1
    shift
    "$PY" - "$n" "${@:-127.0.0.1}" <<'PYEOF'
import random, socket, sys
n = int(sys.argv[1]); addrs = sys.argv[2:]; got = []
lo, hi = 20000, 32000
try:
    hi = min(hi, int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0]) - 1)
except Exception:
    pass
rng = random.SystemRandom()
for _ in range(5000):
    if len(got) == n:
        break
    p = rng.randint(lo, hi)
    if p in got:
        continue
    free = True
    for host in addrs:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, p))
        except OSError:
            free = False
        finally:
            s.close()
        if not free:
            break
    if free:
        got.append(p)
if len(got) != n:
    sys.exit('no free loopback port found')
print(' '.join(map(str, got)))
PYEOF
}

kafka_uuid() { # what `kafka.tools.StorageTool random-uuid` prints, without a JVM start
    "$PY" -c '
import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"):
        print(u); break'
}

# PostgreSQL refuses to run as root: as root, the server runs as PC_PG_OS_USER (default postgres,
# created when missing); as_pg runs a command as that user.
PG_USER_ARGS=()
pg_os_user_setup() {
    PG_USER_ARGS=()
    if [[ $(id -u) -eq 0 ]]; then
        local u=${PC_PG_OS_USER:-postgres}
        if ! id -u "$u" >/dev/null 2>&1; then
            say "creating system user $u to run the test PostgreSQL (initdb refuses root)"
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
        fi
        PG_USER_ARGS=(runuser -u "$u" --)
        PG_OS_USER=$u
    else
        PG_OS_USER=$(id -un)
    fi
}
as_pg() { "${PG_USER_ARGS[@]}" "$@"; }
