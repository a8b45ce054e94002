#!/usr/bin/env bash
# demo.sh: the README's demo command. On a fresh Debian 12 machine it installs what it needs
# (idempotently), builds pipectl, starts a throwaway local stack (PostgreSQL 15 + a single-node
# Kafka in KRaft mode) and NocoDB, and applies manifests/quickstart.yaml (plus a nocodb block for
# the local NocoDB): the plan, the applied objects, the snapshot commit, 500 users streamed from
# the local randomuser server into PostgreSQL, the same rows through NocoDB, and a second plan
# showing no changes.
#   bash scripts/demo.sh          run and tear the stack down at the end
#   bash scripts/demo.sh --keep   leave the stack running to explore (stop: scripts/stack.sh stop .stack/demo)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Installing dependencies (skipped when present)"
bash "$ROOT/scripts/setup.sh"

step "Building pipectl"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"$(nproc)" --target pipectl pc-randomuser >/dev/null
PIPECTL="$ROOT/build/pipectl"

STACK="$ROOT/.stack/demo"
WORK="$ROOT/.stack/demo-work"
bash "$ROOT/scripts/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
rm -rf "$WORK"
mkdir -p "$WORK"
cleanup() {
    if [[ $KEEP -eq 0 ]]; then
        PC_STACK_DIR="$STACK" bash "$ROOT/scripts/nocodb.sh" stop "$STACK/nocodb" >/dev/null 2>&1 || true
        bash "$ROOT/scripts/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

step "Starting PostgreSQL 15 and Kafka (KRaft) on free loopback ports"
bash "$ROOT/scripts/stack.sh" start "$STACK"
# shellcheck disable=SC1091
source "$STACK/stack.env"
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" PG_DSN="$PC_PG_DSN"
export PIPECTL_REPO="$WORK/repo" PIPECTL_STATE_REPO="$WORK/state"

step "Starting NocoDB (from the npm registry, cached in .cache/nocodb) on a free loopback port"
PC_STACK_DIR="$STACK" bash "$ROOT/scripts/nocodb.sh" start "$STACK/nocodb"
# shellcheck disable=SC1091
source "$STACK/nocodb/nocodb.env"
export NOCODB_URL="$PC_NOCODB_URL" NOCODB_EMAIL="$PC_NOCODB_EMAIL" NOCODB_PASSWORD="$PC_NOCODB_PASSWORD"
NOCODB_DB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n') # random, never shown
export NOCODB_DB_PASSWORD

# The demo's manifest: manifests/quickstart.yaml plus a nocodb block for the local NocoDB.
M="$WORK/pipeline.yaml"
awk '/^git:/ { print "nocodb:\n  url: ${NOCODB_URL}\n  email: ${NOCODB_EMAIL}\n  password: ${NOCODB_PASSWORD}\n  base: users\n  schemas: [raw]\n  role: nocodb_reader\n  role_password: ${NOCODB_DB_PASSWORD}\n  read_only: true\n" } { print }' \
    "$ROOT/manifests/quickstart.yaml" >"$M"

step "pipectl validate"
"$PIPECTL" -f "$M" validate

step "pipectl plan (from empty)"
"$PIPECTL" -f "$M" plan

step "pipectl apply"
"$PIPECTL" -f "$M" apply

step "What landed in Kafka"
java -cp "$PC_KAFKA_LIBS/*" -Dlog4j.configuration=file:"$ROOT/scripts/kafka/log4j.properties" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --describe \
    --topic users_created 2>/dev/null | head -5

step "What landed in PostgreSQL"
psql "$PC_PG_DSN" -X -c '\d raw.users'
psql "$PC_PG_DSN" -X -c "SELECT name, setting, pending_restart FROM pg_settings WHERE name IN ('archive_mode','archive_timeout','wal_level')"

step "The snapshot commit"
git -C "$PIPECTL_STATE_REPO" log --stat --format='%h %s' | head -8

step "Streaming 500 users: pc-randomuser (offline stand-in for randomuser.me) -> Kafka -> raw.users"
"$ROOT/build/pc-randomuser" --port 0 --port-file "$WORK/ru.port" >"$WORK/ru.log" 2>&1 &
RU_PID=$!
for _ in $(seq 50); do [[ -s "$WORK/ru.port" ]] && break; sleep 0.1; done
export RANDOMUSER_URL="http://127.0.0.1:$(cat "$WORK/ru.port")/api/"
"$PIPECTL" -f "$M" run --max-records 500
kill "$RU_PID" 2>/dev/null || true
psql "$PC_PG_DSN" -X -c "SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids FROM raw.users"
psql "$PC_PG_DSN" -X -c "SELECT first_name, last_name, email, post_code, registered_date FROM raw.users LIMIT 5"
"$PIPECTL" -f "$M" status || true

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

step "pipectl plan again: nothing to do"
"$PIPECTL" -f "$M" plan --detailed-exitcode && echo "(exit 0: no changes)"

if [[ $KEEP -eq 1 ]]; then
    echo
    echo "The stack keeps running. Try:"
    echo "  source $STACK/stack.env; export KAFKA_BOOTSTRAP=\$PC_KAFKA_BOOTSTRAP PG_DSN=\"\$PC_PG_DSN\""
    echo "  PIPECTL_STATE_REPO=$WORK/state $PIPECTL -f $M status"
    echo "NocoDB: $NOCODB_URL (credentials in $STACK/nocodb/nocodb.env)"
    echo "Stop it with: PC_STACK_DIR=$STACK bash scripts/nocodb.sh stop $STACK/nocodb; bash scripts/stack.sh stop $STACK"
fi
