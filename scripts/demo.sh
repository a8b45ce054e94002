#!/usr/bin/env bash
# demo.sh: the README's demo command. On a fresh Debian 12 machine it installs what it needs
# (idempotently), builds pipectl, starts a throwaway local stack (PostgreSQL 15 + a single-node
# Kafka in KRaft mode), and applies manifests/quickstart.yaml: the plan, the applied objects,
# the snapshot commit, and a second plan showing no changes.
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
M="$ROOT/manifests/quickstart.yaml"

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

step "pipectl plan again: nothing to do"
"$PIPECTL" -f "$M" plan --detailed-exitcode && echo "(exit 0: no changes)"

if [[ $KEEP -eq 1 ]]; then
    echo
    echo "The stack keeps running. Try:"
    echo "  source $STACK/stack.env; export KAFKA_BOOTSTRAP=\$PC_KAFKA_BOOTSTRAP PG_DSN=\"\$PC_PG_DSN\""
    echo "  PIPECTL_STATE_REPO=$WORK/state $PIPECTL -f $M status"
    echo "Stop it with: bash scripts/stack.sh stop $STACK"
fi
