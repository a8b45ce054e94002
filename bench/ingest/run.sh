#!/usr/bin/env bash
# bench/ingest: records per second from the local randomuser-compatible server (pc-randomuser)
# into Kafka through the ingest worker (pkg/ingest: libcurl GET, jansson, idempotent producer
# with acks=all; a record counts only once its delivery report says delivered).
# A private stack (scripts/stack.sh, Kafka only) and pc-randomuser on a free loopback port; a
# 4-partition topic; the worker (tests/integration/ingest_driver) runs until RECORDS are
# delivered. Time = pc_ingest_run from start to the last delivery report (the flush included).
# The topic's high watermarks are checked to sum to RECORDS. peak_rss_mb is the worker
# process's ru_maxrss (getrusage at exit).
#
# Usage: bash bench/ingest/run.sh [RECORDS]          (default 1000000; e.g. 100000 for a quick run)
# Environment: PC_BUILD (build dir, default build; built here if needed), BATCH (users per GET,
# default 5000, the API's maximum).
# Progress goes to stderr; the last line of stdout is one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RECORDS=${1:-1000000}
BATCH=${BATCH:-5000}
BUILD=${PC_BUILD:-$ROOT/build}
[[ $BUILD == /* ]] || BUILD="$ROOT/$BUILD"
say() { printf 'bench/ingest: %s\n' "$*" >&2; }

source "$ROOT/bench/lib.sh"
bench_prepare "$BUILD" ingest_driver pc-randomuser

WORK=$(mktemp -d /tmp/pc-bench-ingest.XXXXXX)
RU_PID=""
cleanup() {
    [[ -z "$RU_PID" ]] || kill -TERM "$RU_PID" 2>/dev/null || true
    bash "$ROOT/scripts/stack.sh" stop "$WORK/stack" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
bash "$ROOT/scripts/stack.sh" start "$WORK/stack" --kafka >&2
# shellcheck disable=SC1091
source "$WORK/stack/stack.env"
kafka() { java -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$PC_KAFKA_LIBS/*" \
    -Dlog4j.configuration="file:$PC_KAFKA_LOG4J" "$@"; }
kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --create \
    --topic bench_ingest --partitions 4 --replication-factor 1 >&2

"$BUILD/pc-randomuser" --port 0 --port-file "$WORK/ru.port" 2>"$WORK/ru.log" &
RU_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/ru.port" ]] && break; sleep 0.05; done
[[ -s "$WORK/ru.port" ]] || { cat "$WORK/ru.log" >&2; exit 1; }

say "ingesting $RECORDS records (batch $BATCH per GET)"
"$BUILD/ingest_driver" --url "http://127.0.0.1:$(cat "$WORK/ru.port")/api/" --topic bench_ingest \
    --bootstrap "$PC_KAFKA_BOOTSTRAP" --batch "$BATCH" --interval-ms 0 --max-records "$RECORDS" \
    --param seed=bench --rusage >"$WORK/ingest.json" 2>"$WORK/ingest.log" ||
    { tail -20 "$WORK/ingest.log" >&2; exit 1; }
delivered=$(sed -n 's/.*"records_out":\([0-9]*\).*/\1/p' "$WORK/ingest.json")
elapsed_ms=$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' "$WORK/ingest.log" | tail -1)
rss_kb=$(sed -n 's/.*peak_rss_kb=\([0-9]*\).*/\1/p' "$WORK/ingest.log" | tail -1)
[[ "$delivered" -eq "$RECORDS" ]] || { say "delivered $delivered, expected $RECORDS"; exit 1; }
in_topic=$(kafka org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
    --topic bench_ingest 2>/dev/null | awk -F: '{s += $NF} END {print s}')
[[ "$in_topic" -eq "$RECORDS" ]] || { say "topic holds $in_topic records, expected $RECORDS"; exit 1; }
rps=$(echo "scale=1; $RECORDS * 1000 / $elapsed_ms" | bc -l)
say "$RECORDS records in $elapsed_ms ms ($rps rec/s), peak RSS $((rss_kb / 1024)) MB"
printf '{"records": %d, "batch": %d, "elapsed_ms": %d, "records_per_s": %.0f, "peak_rss_mb": %.1f}\n' \
    "$RECORDS" "$BATCH" "$elapsed_ms" "$rps" "$(echo "scale=1; $rss_kb / 1024" | bc -l)"
