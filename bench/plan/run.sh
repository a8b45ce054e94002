#!/usr/bin/env bash
# bench/plan: plan and apply for 1,000 topics and 200 tables against a local stack, with Kafka's
# own `kafka-topics --describe` over the same topics, measured in the same run, as the reference.
# Target: plan of 1,000 unchanged topics under 1 s (and in the same league as one describe).
# Usage: bash bench/plan/run.sh [TOPICS] [TABLES]   (build first: cmake --build build)
# Last line: one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOPICS=${1:-1000}
TABLES=${2:-200}
PIPECTL=${PIPECTL:-$ROOT/build/pipectl}
[[ -x "$PIPECTL" ]] || { echo "build pipectl first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
STACK=$(mktemp -d /tmp/pc-bench-plan.XXXXXX)
trap 'bash "$ROOT/scripts/stack.sh" stop "$STACK/stack" >/dev/null 2>&1 || true; rm -rf "$STACK"' EXIT
bash "$ROOT/scripts/stack.sh" start "$STACK/stack" >&2
source "$STACK/stack/stack.env"
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" PG_DSN="$PC_PG_DSN"

M="$STACK/bench.yaml"
{
    echo "apiVersion: pipectl/v1"
    echo "kind: Pipeline"
    echo "metadata: {name: bench}"
    echo "kafka:"
    echo "  bootstrap: \${KAFKA_BOOTSTRAP}"
    echo "  topics:"
    for i in $(seq -w 1 "$TOPICS"); do
        echo "    - {name: bench.t$i, partitions: 1, config: {retention.ms: 1d, cleanup.policy: delete}}"
    done
    echo "postgres:"
    echo "  dsn: \${PG_DSN}"
    echo "  schemas:"
    for s in a b; do
        echo "    - name: bench_$s"
        echo "      tables:"
        for i in $(seq -w 1 $((TABLES / 2))); do
            echo "        - name: t$i"
            echo "          columns:"
            echo "            - {name: id, type: bigint, primary_key: true}"
            echo "            - {name: email, type: text, nullable: false}"
            echo "            - {name: payload, type: jsonb}"
            echo "            - {name: created_at, type: timestamptz}"
            echo "            - {name: score, type: \"numeric(10,2)\"}"
        done
    done
} >"$M"

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null || { echo "failed: $*" >&2; return 1; }; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

apply_s=$(secs "$PIPECTL" -f "$M" apply --no-snapshot)
"$PIPECTL" -f "$M" plan --detailed-exitcode >/dev/null || { echo "plan after apply is not empty" >&2; exit 1; }
p1=$(secs "$PIPECTL" -f "$M" plan); p2=$(secs "$PIPECTL" -f "$M" plan); p3=$(secs "$PIPECTL" -f "$M" plan)
plan_s=$(median3 "$p1" "$p2" "$p3")
LOG4J="-Dlog4j.configuration=file:$ROOT/scripts/kafka/log4j.properties"
describe() { java -cp "$PC_KAFKA_LIBS/*" $LOG4J org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --describe --topic 'bench\..*' ; }
d1=$(secs describe); d2=$(secs describe); d3=$(secs describe)
desc_s=$(median3 "$d1" "$d2" "$d3")
n=$(describe 2>/dev/null | grep -c '^Topic: bench' || true)
[[ "$n" -eq "$TOPICS" ]] || { echo "describe saw $n topics, expected $TOPICS" >&2; exit 1; }
ratio=$(echo "$plan_s / $desc_s" | bc -l)
printf '{"topics": %d, "tables": %d, "apply_s": %.3f, "plan_unchanged_s": %.3f, "describe_reference_s": %.3f, "plan_to_describe_ratio": %.3f, "target_plan_under_1s": %s}\n' \
    "$TOPICS" "$TABLES" "$apply_s" "$plan_s" "$desc_s" "$ratio" "$( (( $(echo "$plan_s < 1" | bc -l) )) && echo true || echo false)"
