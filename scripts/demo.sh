#!/usr/bin/env bash
# demo.sh: the README's demo command, the whole story in one run. On a fresh Debian 12 machine it
# installs what it needs (idempotently), builds pipectl, starts a throwaway local stack
# (PostgreSQL 15 + a single-node Kafka in KRaft mode) and NocoDB, and then:
#   1. validates, plans and applies manifests/quickstart.yaml (plus a nocodb block for the local
#      NocoDB): topics, schema, table, WAL-archiving settings, the NocoDB source, a git snapshot;
#   2. restarts PostgreSQL, because archive_mode and wal_level only take effect at server start
#      (apply says "restart required"), and shows the archiver running;
#   3. streams 500 users from the local randomuser server through Kafka into raw.users, and shows
#      the same rows through NocoDB;
#   4. takes a base backup (pipectl backup create);
#   5. "accidentally" deletes every row, restores the database to the moment before the delete
#      into a new data directory (pipectl restore --target-time ... --to DIR --start), shows the
#      rows are back there, and copies them back into the live table;
#   6. plans again (no changes) and ends with `pipectl status`, which must say healthy.
# It is a test of the story too: it exits non-zero when any step fails or the rows are not back
# (tests/integration/test_demo.sh runs it end to end).
#
#   bash scripts/demo.sh          run and tear the stack down at the end
#   bash scripts/demo.sh --keep   leave the stack (and the restored server) running to explore
#
# Environment: PIPECTL (a built pipectl; pc-randomuser is taken from the same folder; the build
# step is then skipped), PC_DEMO_DIR (where the stack and the demo's files live, default .stack).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1
T0=$SECONDS

STEP=""
step() {
    STEP=$*
    printf '\n\033[1m==> %s\033[0m\n' "$*"
}
die() {
    printf 'demo: error: %s\n' "$*" >&2
    exit 1
}

step "Installing dependencies (skipped when present)"
bash "$ROOT/scripts/setup.sh"

if [[ -n "${PIPECTL:-}" ]]; then
    step "Using the pipectl built at $PIPECTL"
    [[ -x "$PIPECTL" && -x "$(dirname "$PIPECTL")/pc-randomuser" ]] ||
        die "PIPECTL=$PIPECTL is not a built pipectl with pc-randomuser beside it"
else
    step "Building pipectl"
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$ROOT/build" -j"$(nproc)" --target pipectl pc-randomuser >/dev/null
    PIPECTL="$ROOT/build/pipectl"
fi
RANDOMUSER_BIN="$(dirname "$PIPECTL")/pc-randomuser"

DEMO_DIR=${PC_DEMO_DIR:-$ROOT/.stack}
mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
STACK="$DEMO_DIR/demo"
WORK="$DEMO_DIR/demo-work"
bash "$ROOT/scripts/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
OLD_PG_WORK="$WORK/pg"
if [[ -f "$WORK/pg-work" ]]; then OLD_PG_WORK=$(cat "$WORK/pg-work"); fi
if [[ -f "$OLD_PG_WORK/restored/postmaster.pid" ]]; then # left running by an earlier --keep
    owner=$(stat -c %U "$OLD_PG_WORK/restored")
    pg_ctl_old=("${PC_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" -D "$OLD_PG_WORK/restored" -m fast -w -t 20 stop)
    if [[ $(id -u) -eq 0 ]]; then runuser -u "$owner" -- "${pg_ctl_old[@]}" >/dev/null 2>&1 || true
    else "${pg_ctl_old[@]}" >/dev/null 2>&1 || true; fi
fi
[[ "$OLD_PG_WORK" == "$WORK/pg" ]] || rm -rf "$OLD_PG_WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
RU_PID="" RESTORED="" PG_WORK=""
cleanup() {
    local rc=$?
    [[ -z "$RU_PID" ]] || kill "$RU_PID" 2>/dev/null || true
    if [[ $KEEP -eq 0 ]]; then
        if [[ -n "$RESTORED" && -f "$RESTORED/postmaster.pid" ]]; then
            as_pg "$PC_PG_BIN/pg_ctl" -D "$RESTORED" -m fast -w -t 20 stop >/dev/null 2>&1 || true
        fi
        PC_STACK_DIR="$STACK" bash "$ROOT/scripts/nocodb.sh" stop "$STACK/nocodb" >/dev/null 2>&1 || true
        bash "$ROOT/scripts/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
        [[ -z "$PG_WORK" || "$PG_WORK" == "$WORK/pg" ]] || rm -rf "$PG_WORK"
    fi
    if [[ $rc -ne 0 ]]; then
        printf '\ndemo: FAILED at step "%s" (exit %d)\n' "$STEP" "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # the EXIT trap tears the stack down on Ctrl-C and kill too

step "Starting PostgreSQL 15 and Kafka (KRaft) on free loopback ports"
bash "$ROOT/scripts/stack.sh" start "$STACK"
# shellcheck disable=SC1091
source "$STACK/stack.env"
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" PG_DSN="$PC_PG_DSN"

# PostgreSQL refuses to run as root, so the stack runs it as $PC_PG_OS_USER. That user runs
# archive_command (pipectl wal-push), so it needs the backup repository and the pipectl binary;
# the restored server runs as that user too. They live in PG_WORK: $WORK/pg when that user can
# reach $WORK, else a /tmp directory (a clone under /root is not reachable by others).
AS_PG=()
if [[ $(id -u) -eq 0 ]]; then AS_PG=(runuser -u "$PC_PG_OS_USER" --); fi
as_pg() { "${AS_PG[@]}" "$@"; }
if as_pg test -x "$WORK" -a -r "$WORK"; then
    PG_WORK="$WORK/pg"
    mkdir -p "$PG_WORK"
else
    PG_WORK=$(mktemp -d /tmp/pc-demo.XXXXXX)
    echo "$PG_WORK" >"$WORK/pg-work"
fi
chmod 755 "$PG_WORK"
mkdir -p "$PG_WORK/repo" "$PG_WORK/bin"
cp "$PIPECTL" "$PG_WORK/bin/pipectl"
chmod 755 "$PG_WORK/bin/pipectl"
PIPECTL="$PG_WORK/bin/pipectl" # archive_command names the binary that ran apply
[[ $(id -u) -ne 0 ]] || chown "$PC_PG_OS_USER" "$PG_WORK/repo"
export PIPECTL_REPO="$PG_WORK/repo" PIPECTL_STATE_REPO="$WORK/state"

step "Starting NocoDB (from the npm registry, cached in .cache/nocodb) on a free loopback port"
PC_STACK_DIR="$STACK" bash "$ROOT/scripts/nocodb.sh" start "$STACK/nocodb"
# shellcheck disable=SC1091
source "$STACK/nocodb/nocodb.env"
export NOCODB_URL="$PC_NOCODB_URL" NOCODB_EMAIL="$PC_NOCODB_EMAIL" NOCODB_PASSWORD="$PC_NOCODB_PASSWORD"
NOCODB_DB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n') # random, never shown
export NOCODB_DB_PASSWORD
# what `pipectl -f $WORK/pipeline.yaml ...` needs afterwards (--keep): the manifest's ${VARS}
(
    umask 077
    for v in KAFKA_BOOTSTRAP PG_DSN PIPECTL_REPO PIPECTL_STATE_REPO NOCODB_URL NOCODB_EMAIL \
        NOCODB_PASSWORD NOCODB_DB_PASSWORD; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done >"$WORK/demo.env"
)

# The demo's manifest: manifests/quickstart.yaml plus a nocodb block for the local NocoDB.
M="$WORK/pipeline.yaml"
awk '/^git:/ { print "nocodb:\n  url: ${NOCODB_URL}\n  email: ${NOCODB_EMAIL}\n  password: ${NOCODB_PASSWORD}\n  base: users\n  schemas: [raw]\n  role: nocodb_reader\n  role_password: ${NOCODB_DB_PASSWORD}\n  read_only: true\n" } { print }' \
    "$ROOT/manifests/quickstart.yaml" >"$M"
PC() { "$PIPECTL" -f "$M" "$@"; }
sql() { psql "$PC_PG_DSN" -X -v ON_ERROR_STOP=1 "$@"; }
sql1() { psql "$PC_PG_DSN" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

step "pipectl validate"
PC validate

step "pipectl plan (from empty)"
PC plan

step "pipectl apply"
PC apply

step "Restarting PostgreSQL: archive_mode and wal_level only take effect at server start"
echo "apply set them with ALTER SYSTEM and said 'restart required'; until the restart nothing is"
echo "archived, so neither base backups nor point-in-time restore would work."
sql -c "SELECT name, setting AS running, pending_restart FROM pg_settings WHERE name IN ('archive_mode','wal_level')"
bash "$ROOT/scripts/stack.sh" restart-pg "$STACK"
sql -c "SELECT name, setting, pending_restart FROM pg_settings WHERE name IN ('archive_mode','archive_command','archive_timeout','wal_level')"

step "What landed in Kafka"
java -cp "$PC_KAFKA_LIBS/*" -Dlog4j.configuration=file:"$ROOT/scripts/kafka/log4j.properties" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --describe \
    --topic users_created 2>/dev/null | head -5

step "What landed in PostgreSQL"
sql -c '\d raw.users'

step "The snapshot commit"
git -C "$PIPECTL_STATE_REPO" log -n 3 --stat --format='%h %s'

step "Streaming 500 users: pc-randomuser (offline stand-in for randomuser.me) -> Kafka -> raw.users"
"$RANDOMUSER_BIN" --port 0 --port-file "$WORK/ru.port" >"$WORK/ru.log" 2>&1 &
RU_PID=$!
for _ in $(seq 50); do [[ -s "$WORK/ru.port" ]] && break; sleep 0.1; done
[[ -s "$WORK/ru.port" ]] || die "pc-randomuser did not start (see $WORK/ru.log)"
export RANDOMUSER_URL="http://127.0.0.1:$(cat "$WORK/ru.port")/api/"
PC run --max-records 500
kill "$RU_PID" 2>/dev/null || true
RU_PID=""
sql -c "SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids FROM raw.users"
sql -c "SELECT first_name, last_name, email, post_code, registered_date FROM raw.users LIMIT 5"
ROWS=$(sql1 "SELECT count(*) FROM raw.users")
[[ "$ROWS" -gt 0 ]] || die "no rows landed in raw.users"

step "The same rows through NocoDB (base 'users', source for schema raw, signed in as the demo admin)"
JWT=$(curl -fsS -m 10 -H 'Content-Type: application/json' \
    -d "{\"email\":\"$NOCODB_EMAIL\",\"password\":\"$NOCODB_PASSWORD\"}" \
    "$NOCODB_URL/api/v1/auth/user/signin" | jq -r .token)
BASE_ID=$(curl -fsS -m 10 -H "xc-auth: $JWT" "$NOCODB_URL/api/v2/meta/bases" |
    jq -r '.list[] | select(.title == "users") | .id')
TABLE_ID=$(curl -fsS -m 10 -H "xc-auth: $JWT" "$NOCODB_URL/api/v2/meta/bases/$BASE_ID/tables" |
    jq -r '.list[] | select(.table_name == "users") | .id')
curl -fsS -m 10 -H "xc-auth: $JWT" "$NOCODB_URL/api/v2/tables/$TABLE_ID/records?limit=3&fields=first_name,last_name,email" |
    jq -c '{total: .pageInfo.totalRows, first: .list}'
echo "Open $NOCODB_URL in a browser (user $NOCODB_EMAIL, password in $STACK/nocodb/nocodb.env) for the grid, kanban and gallery views."

step "pipectl backup create: a base backup into the repository (WAL is archived there continuously)"
PC backup create
PC backup list

step "Oops: DELETE FROM raw.users without a WHERE clause"
sleep 1.1 # the restore target must be later than the backup's end (recorded in whole seconds)
BEFORE=$(sql1 "SELECT clock_timestamp()")
sql -c "DELETE FROM raw.users"
echo "The moment before the delete: $BEFORE; rows left in the live table: $(sql1 "SELECT count(*) FROM raw.users")"
# recovery must see the delete's commit to stop right before it: switch to a new WAL segment and
# wait until the archiver has the one holding the delete
SEG=$(sql1 "SELECT pg_walfile_name(pg_current_wal_lsn())")
sql1 "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 120); do
    LAST=$(sql1 "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [[ -n "$LAST" && ! "$LAST" < "$SEG" ]] && break
    sleep 0.25
done
[[ -n "$LAST" && ! "$LAST" < "$SEG" ]] || die "WAL segment $SEG was not archived within 30 s"
echo "WAL up to segment $SEG is in the repository."

step "pipectl restore --target-time '$BEFORE': the database as it was before the delete, in a new data directory"
RESTORED="$PG_WORK/restored"
PC restore --target-time "$BEFORE" --to "$RESTORED" --start | tee "$WORK/restore.out"
PORT=$(sed -n 's/.*server running on port \([0-9]*\).*/\1/p' "$WORK/restore.out")
[[ -n "$PORT" ]] || die "restore printed no port"
RQ() { psql -h 127.0.0.1 -p "$PORT" -U postgres -d pipeline -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
# The copy must not archive into the live server's repository (its WAL would mix with the
# primary's history; wal-push refuses a different segment under an archived name, so its archiver
# would fail forever): restore appends archive_mode = 'off' to the copy's postgresql.auto.conf.
echo
echo "restore appended to $RESTORED/postgresql.auto.conf (the last line wins):"
grep "^archive_mode" "$RESTORED/postgresql.auto.conf" | tail -n 1 | sed 's/^/  /'
echo "so the copy does not archive into the live server's repository: archive_mode is $(RQ "SHOW archive_mode") there"
[[ "$(RQ "SHOW archive_mode")" == off ]] || die "the restored server would archive into the live repository (archive_mode is not off)"
psql -h 127.0.0.1 -p "$PORT" -U postgres -d pipeline -X \
    -c "SELECT count(*) AS rows, pg_is_in_recovery() AS in_recovery FROM raw.users"
BACK=$(RQ "SELECT count(*) FROM raw.users")
echo "restored rows: $BACK of $ROWS"
[[ "$BACK" == "$ROWS" ]] || die "the restored copy holds $BACK rows, expected $ROWS"

step "Copying the rows back into the live table"
psql -h 127.0.0.1 -p "$PORT" -U postgres -d pipeline -Xq -v ON_ERROR_STOP=1 \
    -c "\\copy raw.users TO STDOUT" | sql -q -c "\\copy raw.users FROM STDIN"
LIVE=$(sql1 "SELECT count(*) FROM raw.users")
echo "live rows: $LIVE"
[[ "$LIVE" == "$ROWS" ]] || die "the live table holds $LIVE rows after the copy, expected $ROWS"

step "pipectl plan again: nothing to do"
PC plan --detailed-exitcode
echo "(exit 0: no changes)"

step "pipectl status"
PC status
echo
echo "demo: done in $((SECONDS - T0)) s; restored rows: $BACK of $ROWS; status: healthy"

if [[ $KEEP -eq 1 ]]; then
    echo
    echo "The stack keeps running. Try:"
    echo "  source $WORK/demo.env; $PIPECTL -f $M status"
    echo "NocoDB: $NOCODB_URL (credentials in $STACK/nocodb/nocodb.env)"
    echo "The restored copy: psql -h 127.0.0.1 -p $PORT -U postgres -d pipeline (data directory $RESTORED)"
    echo "Stop it all with:"
    echo "  ${AS_PG[*]} $PC_PG_BIN/pg_ctl -D $RESTORED stop"
    echo "  PC_STACK_DIR=$STACK bash scripts/nocodb.sh stop $STACK/nocodb; bash scripts/stack.sh stop $STACK"
fi
