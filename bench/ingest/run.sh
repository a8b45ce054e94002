#!/usr/bin/env bash
# bench/ingest: records per second from the local randomuser-compatible server (pc-randomuser)
# into Kafka through the ingest worker (pkg/ingest: libcurl GET, yajl event scan without a tree,
# idempotent producer with acks=all; a record counts only once its delivery report says
# delivered), and in the same run, against the same server and broker, the Python loop of the
# tutorial the quickstart grew from (bench/ingest/tutorial_loop.py: requests + kafka-python):
#   tutorial leg: one user per GET, as the tutorial does;
#   batched leg:  the same loop with results=5000 per GET.
# A private stack (scripts/stack.sh, Kafka only) and pc-randomuser on a free loopback port; a
# 4-partition topic per leg. The worker (tests/integration/ingest_driver) runs until RECORDS are
# delivered; time = pc_ingest_run from start to the last delivery report (the flush included).
# The Python loop is far slower, so each Python leg runs for PY_SECONDS (loop, then flush) and
# the legs are compared by rate, not by time for the same count. Every leg's topic is checked:
# its high watermarks sum to the records the leg counted as delivered. peak_rss_mb is the
# worker process's ru_maxrss (getrusage at exit).
# The Python legs run in a virtual environment made here, .cache/bench-ingest-venv (pinned
# requests and kafka-python from PyPI; made again when the pins change).
#
# Usage: bash bench/ingest/run.sh [RECORDS]          (default 1000000; e.g. 100000 for a quick run)
# Environment: PC_BUILD (build dir, default build; built here if needed), BATCH (users per GET,
# default 5000, the API's maximum), PY_SECONDS (each Python leg, default 20; 0 skips them).
# Progress goes to stderr; the last line of stdout is one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RECORDS=${1:-1000000}
BATCH=${BATCH:-5000}
PY_SECONDS=${PY_SECONDS:-20}
PY_REQUIREMENTS="requests==2.34.2 kafka-python==3.0.12"
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
new_topic() {
    kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --create \
        --topic "$1" --partitions 4 --replication-factor 1 >&2
}
topic_total() {
    kafka org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
        --topic "$1" 2>/dev/null | awk -F: '{s += $NF} END {print s + 0}'
}
new_topic bench_ingest

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
in_topic=$(topic_total bench_ingest)
[[ "$in_topic" -eq "$RECORDS" ]] || { say "topic holds $in_topic records, expected $RECORDS"; exit 1; }
rps=$(echo "scale=1; $RECORDS * 1000 / $elapsed_ms" | bc -l)
say "$RECORDS records in $elapsed_ms ms ($rps rec/s), peak RSS $((rss_kb / 1024)) MB"
json=$(printf '"records": %d, "batch": %d, "elapsed_ms": %d, "records_per_s": %.0f, "peak_rss_mb": %.1f' \
    "$RECORDS" "$BATCH" "$elapsed_ms" "$rps" "$(echo "scale=1; $rss_kb / 1024" | bc -l)")

if [[ "$PY_SECONDS" != 0 ]]; then
    VENV="$ROOT/.cache/bench-ingest-venv"
    if [[ "$(cat "$VENV/.pc-requirements" 2>/dev/null)" != "$PY_REQUIREMENTS" ]]; then
        say "making the Python reference's virtual environment ($PY_REQUIREMENTS)"
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2 ||
            { say "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
        # shellcheck disable=SC2086 # the pins are words
        "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS >&2
        echo "$PY_REQUIREMENTS" >"$VENV/.pc-requirements"
    fi
    # py_leg NAME RESULTS: runs the loop PY_SECONDS into a fresh topic; prints its records/s
    py_leg() {
        local name=$1 results=$2 out records
        new_topic "bench_ingest_$name"
        say "Python $name leg: $results user(s) per GET for $PY_SECONDS s"
        out=$("$VENV/bin/python" "$ROOT/bench/ingest/tutorial_loop.py" \
            --url "http://127.0.0.1:$(cat "$WORK/ru.port")/api/" --bootstrap "$PC_KAFKA_BOOTSTRAP" \
            --topic "bench_ingest_$name" --results "$results" --seconds "$PY_SECONDS" \
            2>"$WORK/py_$name.log") || { say "Python $name leg failed: $out"; cat "$WORK/py_$name.log" >&2; exit 1; }
        say "Python $name leg: $out"
        records=$(sed -n 's/.*"records": \([0-9]*\).*/\1/p' <<<"$out")
        in_topic=$(topic_total "bench_ingest_$name")
        [[ "$in_topic" -eq "$records" ]] ||
            { say "topic bench_ingest_$name holds $in_topic records, the loop counted $records"; exit 1; }
        sed -n 's/.*"records_per_s": \([0-9.]*\).*/\1/p' <<<"$out"
    }
    tut=$(py_leg tutorial 1)
    bat=$(py_leg batched 5000)
    json+=$(printf ', "python_seconds_per_leg": %s, "tutorial_loop_records_per_s": %.1f, "batched_python_records_per_s": %.0f, "ratio_to_tutorial_loop": %.1f, "ratio_to_batched_python": %.2f' \
        "$PY_SECONDS" "$tut" "$bat" "$(echo "$rps / $tut" | bc -l)" "$(echo "$rps / $bat" | bc -l)")
    say "pipectl $rps rec/s; tutorial loop $tut rec/s; batched Python loop $bat rec/s"
fi
printf '{%s}\n' "$json"
