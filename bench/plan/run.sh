#!/usr/bin/env bash
# bench/plan: plan and apply for 1,000 topics and 200 tables against a local stack, with Kafka's
# own `kafka-topics --describe` over the same topics, measured in the same run, as the reference.
# Target: plan of 1,000 unchanged topics under 1 s (and in the same league as one describe).
#
# Apply leg: pipectl apply of 1,000 topics (batched CreateTopics) against Kafka's Java AdminClient
# creating the same 1,000 topics in one createTopics call (CreateTopicsRef.java), same broker,
# same run. Target: apply <= 1.5 x the reference (apply_to_java_ratio).
#
# ACL leg (secured cluster, scripts/secure_stack.sh: three KRaft nodes, SASL_SSL with
# SCRAM-SHA-512, StandardAuthorizer, TLS PostgreSQL): the same 1,000 topics (replication factor 1,
# to keep the three brokers' load small) plus 2,000 ACLs (ACL_PRINCIPALS principals x 2
# operations, read and describe, each principal on its own topic). Target: plan of 1,000 unchanged
# topics and 2,000 unchanged ACLs over SASL_SSL under 1.5 s. Printed beside it, measured in the
# same run: plan of the same 1,000 topics (no ACLs, no tables) over plaintext (scripts/stack.sh),
# and plan of the topics alone on the secured cluster (so the ACLs' share shows apart from the
# TLS+SASL share; timed alternately with the ACL plan). Each plan is checked to print "No changes."
# first, and every timed plan runs with --detailed-exitcode (exit 2, pending changes, fails).
# Usage: bash bench/plan/run.sh [TOPICS] [TABLES] [ACLS]   (installs what is missing and builds
#   build/pipectl first, bench/lib.sh; PIPECTL=path skips that)
#   ACLS (default 2,000) is rounded down to an even number, at most 2 x TOPICS.
#   PC_BENCH_SECURE=0 skips the ACL leg.
# Last line: one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOPICS=${1:-1000}
TABLES=${2:-200}
ACLS=${3:-2000}
SECURE=${PC_BENCH_SECURE:-1}
if [[ -z "${PIPECTL:-}" ]]; then
    source "$ROOT/bench/lib.sh"
    bench_prepare "$ROOT/build" pipectl
fi
PIPECTL=${PIPECTL:-$ROOT/build/pipectl}
ACL_PRINCIPALS=$((ACLS / 2))
((ACL_PRINCIPALS <= TOPICS)) || { echo "ACLS ($ACLS) must be at most 2 x TOPICS ($TOPICS)" >&2; exit 1; }
RUNS=7 # timed plans per leg of the ACL comparison (median)
STACK=$(mktemp -d /tmp/pc-bench-plan.XXXXXX)
trap 'bash "$ROOT/scripts/stack.sh" stop "$STACK/stack" >/dev/null 2>&1 || true
      bash "$ROOT/scripts/secure_stack.sh" stop "$STACK/secure" >/dev/null 2>&1 || true
      rm -rf "$STACK"' EXIT
bash "$ROOT/scripts/stack.sh" start "$STACK/stack" >&2
source "$STACK/stack/stack.env"
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" PG_DSN="$PC_PG_DSN"

# topic_lines RF: the bench's topics, as manifest lines (the same topics in every leg)
topic_lines() {
    local rf=${1:-}
    for i in $(seq -w 1 "$TOPICS"); do
        echo "    - {name: bench.t$i, partitions: 1${rf:+, replication_factor: $rf}, config: {retention.ms: 1d, cleanup.policy: delete}}"
    done
}

M="$STACK/bench.yaml"
{
    echo "apiVersion: pipectl/v1"
    echo "kind: Pipeline"
    echo "metadata: {name: bench}"
    echo "kafka:"
    echo "  bootstrap: \${KAFKA_BOOTSTRAP}"
    echo "  topics:"
    topic_lines
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
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; } # odd count
# no_changes WHAT MANIFEST: the plan exits 0 with --detailed-exitcode and says "No changes.".
# A few tries, 1 s apart: right after an apply a broker of the three-node cluster may not have
# the newest metadata yet (a plan that needed a retry is reported on stderr).
no_changes() {
    local out rc try
    for try in 1 2 3 4 5 6; do
        rc=0
        out=$("$PIPECTL" -f "$2" plan --detailed-exitcode 2>&1) || rc=$?
        if ((rc == 0)) && grep -q '^No changes\.' <<<"$out"; then
            ((try == 1)) || echo "$1: plan showed changes right after apply, \"No changes.\" at try $try" >&2
            return 0
        fi
        sleep 1
    done
    printf '%s\n' "$out" | head -n 20 >&2
    echo "$1: plan is not empty (exit $rc, first 20 lines above)" >&2
    exit 1
}
# plan_median MANIFEST: median of RUNS timed plans, each one "No changes" (exit 0, not 2)
plan_median() {
    local t=() r
    for ((r = 0; r < RUNS; r++)); do t+=("$(secs "$PIPECTL" -f "$1" plan --detailed-exitcode)"); done
    echo "timed plans of $(basename "$1"): ${t[*]}" >&2
    median "${t[@]}"
}

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

# Batched apply against its reference, measured in the same run on the same broker: Kafka's Java
# AdminClient creating TOPICS topics in one createTopics call (bench/plan/CreateTopicsRef.java,
# compiled here against the cached jars; the JVM's start is not counted), and pipectl apply of
# the same TOPICS topics (other names, same shape, no tables: the whole process, connection and
# the wait until every partition has a leader included). Target: apply <= 1.5 x the reference
# (apply_ratio_to_java_admin). The reference's time until describeTopics shows every partition
# led, which is what apply waits for before it calls a topic done, is printed too
# (apply_to_java_led_ratio). Each leg starts on a settled broker: a KRaft broker shows new
# topics in its metadata before it has created their logs, and creates 1,000 logs in 2-5 s here,
# one metadata change after another, so a leg started before the previous leg's logs exist waits
# behind them (measured: the same apply took 0.3 s on a settled broker and 2.6 s right after the
# reference). APPLY_ROUNDS rounds (default 3) alternate which of the two goes first, each on
# fresh names, and the medians are compared.
CLASSES="$STACK/classes"
mkdir -p "$CLASSES"
javac -d "$CLASSES" -cp "$PC_KAFKA_LIBS/*" "$ROOT/bench/plan/CreateTopicsRef.java"
APPLY_ROUNDS=${APPLY_ROUNDS:-3}
# batch_manifest FILE ROUND: the TOPICS topics as batchROUND.t0001...
batch_manifest() {
    {
        echo "apiVersion: pipectl/v1"
        echo "kind: Pipeline"
        echo "metadata: {name: bench_batch$2}"
        echo "kafka:"
        echo "  bootstrap: \${KAFKA_BOOTSTRAP}"
        echo "  topics:"
        topic_lines | sed "s/bench\.t/batch$2.t/"
    } >"$1"
}
# broker_settled PREFIX: waits (bounded) until the broker's log directory holds the TOPICS
# partition directories of the topics named PREFIX... (one partition each: PREFIXnnnn-0)
broker_settled() {
    local deadline=$((SECONDS + 180)) n
    while :; do
        n=$(find "$PC_STACK_DIR/kafka" -maxdepth 1 -name "$1*-0" | wc -l)
        ((n >= TOPICS)) && return 0
        ((SECONDS < deadline)) || { echo "the broker made $n of $TOPICS logs of $1* in 180 s" >&2; exit 1; }
        sleep 0.2
    done
}
java_round() { java -cp "$PC_KAFKA_LIBS/*:$CLASSES" $LOG4J CreateTopicsRef "$PC_KAFKA_BOOTSTRAP" "ref$1.t" "$TOPICS"; }
apply_round() {
    local mb="$STACK/batch$1.yaml" t
    batch_manifest "$mb" "$1"
    t=$(secs "$PIPECTL" -f "$mb" apply --no-snapshot)
    no_changes "batch apply $1" "$mb"
    echo "$t"
}
refs=() leds=() applies=()
broker_settled bench.t
for ((r = 1; r <= APPLY_ROUNDS; r++)); do
    if ((r % 2)); then
        read -r c l <<<"$(java_round "$r")"; broker_settled "ref$r.t"
        a=$(apply_round "$r"); broker_settled "batch$r.t"
    else
        a=$(apply_round "$r"); broker_settled "batch$r.t"
        read -r c l <<<"$(java_round "$r")"; broker_settled "ref$r.t"
    fi
    refs+=("$c") leds+=("$l") applies+=("$a")
    echo "apply round $r: java createTopics $c s (all led $l s), pipectl apply $a s" >&2
done
nref=$(java -cp "$PC_KAFKA_LIBS/*" $LOG4J org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$PC_KAFKA_BOOTSTRAP" --list 2>/dev/null | grep -c '^ref[0-9]*\.t' || true)
[[ "$nref" -eq $((TOPICS * APPLY_ROUNDS)) ]] || { echo "the reference created $nref topics, expected $((TOPICS * APPLY_ROUNDS))" >&2; exit 1; }
median_n() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
ref_s=$(median_n "${refs[@]}") ref_led_s=$(median_n "${leds[@]}") batch_apply_s=$(median_n "${applies[@]}")
batch_ratio=$(echo "$batch_apply_s / $ref_s" | bc -l)
batch_ratio_led=$(echo "$batch_apply_s / $ref_led_s" | bc -l)

json=$(printf '"topics": %d, "tables": %d, "apply_s": %.3f, "plan_unchanged_s": %.3f, "describe_reference_s": %.3f, "plan_to_describe_ratio": %.3f, "target_plan_under_1s": %s, "apply_topics_s": %.3f, "java_admin_create_topics_s": %.3f, "java_admin_create_topics_led_s": %.3f, "apply_to_java_ratio": %.3f, "apply_to_java_led_ratio": %.3f, "java_admin_create_s": %.3f, "apply_ratio_to_java_admin": %.3f, "apply_target_ratio": 1.5, "apply_meets_target": %s' \
    "$TOPICS" "$TABLES" "$apply_s" "$plan_s" "$desc_s" "$ratio" "$( (( $(echo "$plan_s < 1" | bc -l) )) && echo true || echo false)" \
    "$batch_apply_s" "$ref_s" "$ref_led_s" "$batch_ratio" "$batch_ratio_led" "$ref_s" "$batch_ratio" "$( (( $(echo "$batch_ratio <= 1.5" | bc -l) )) && echo true || echo false)")

if [[ "$SECURE" == 0 ]]; then
    echo "{$json}"
    exit 0
fi

# --- ACL leg ---------------------------------------------------------------------------------
# Plaintext reference: the same topics, no tables and no ACLs (the plaintext stack has no
# authorizer). Its own pipeline name, bench_topics, which owns nothing: the inventory of `bench`
# (tables) is not in view, and the plan is the topics' alone.
MP="$STACK/topics-plaintext.yaml"
{
    echo "apiVersion: pipectl/v1"
    echo "kind: Pipeline"
    echo "metadata: {name: bench_topics}"
    echo "kafka:"
    echo "  bootstrap: \${KAFKA_BOOTSTRAP}"
    echo "  topics:"
    topic_lines
    echo "postgres:"
    echo "  dsn: \${PG_DSN}"
} >"$MP"
no_changes "topics over plaintext" "$MP"
topics_plain_s=$(plan_median "$MP")
# one stack at a time: the secured cluster's three JVMs get the machine to themselves
bash "$ROOT/scripts/stack.sh" stop "$STACK/stack" >/dev/null 2>&1

bash "$ROOT/scripts/secure_stack.sh" start "$STACK/secure" >&2
source "$STACK/secure/secure.env"
# secure_manifest FILE WITH_ACLS NAME: the same topics (replication factor 1) over SASL_SSL, as
# admin, as pipeline NAME
secure_manifest() {
    local i p
    {
        echo "apiVersion: pipectl/v1"
        echo "kind: Pipeline"
        echo "metadata: {name: $3}"
        echo "kafka:"
        echo "  bootstrap: \${PC_SK_BOOTSTRAP}"
        echo "  security:"
        echo "    protocol: sasl_ssl"
        echo "    sasl: {mechanism: SCRAM-SHA-512, username: admin, password: \"\${PC_SK_ADMIN_PASSWORD}\"}"
        echo "    tls: {ca_file: \"\${PC_SK_CA}\"}"
        echo "  derive_acls: false"
        if [[ "$2" == 1 ]]; then
            echo "  acls:"
            for i in $(seq -w 1 "$ACL_PRINCIPALS"); do
                # principal i reads topic i: two bindings (read, describe)
                p=$(printf '%04d' "$((10#$i))")
                echo "    - {principal: \"User:bench-u$p\", resource: topic, name: bench.t$(printf "%0${#TOPICS}d" "$((10#$i))"), pattern: literal, operations: [read, describe], permission: allow, host: \"*\"}"
            done
        fi
        echo "  topics:"
        topic_lines 1
        echo "postgres:"
        echo "  dsn: \"\${PC_SK_PG_DSN} password=\${PC_SK_PG_PASSWORD}\""
    } >"$1"
}
MT="$STACK/topics-secure.yaml"
MA="$STACK/acls-secure.yaml"
MR="$STACK/topics-secure-ref.yaml"
secure_manifest "$MT" 0 bench_acl
secure_manifest "$MA" 1 bench_acl
# the reference: the same topics as a pipeline that owns nothing (no ACLs declared or recorded,
# so no DescribeAcls), as bench_topics on the plaintext stack; timed alternately with MA, so
# that both see the same machine
secure_manifest "$MR" 0 bench_topics
secure_topics_apply_s=$(secs "$PIPECTL" -f "$MT" apply --no-snapshot)
no_changes "topics over SASL_SSL" "$MT"
acl_apply_s=$(secs "$PIPECTL" -f "$MA" apply --no-snapshot) # only the ACLs are new
no_changes "topics and ACLs over SASL_SSL" "$MA"
no_changes "topics over SASL_SSL (reference)" "$MR"
ta=() tr=()
for ((r = 0; r < RUNS; r++)); do
    ta+=("$(secs "$PIPECTL" -f "$MA" plan --detailed-exitcode)")
    tr+=("$(secs "$PIPECTL" -f "$MR" plan --detailed-exitcode)")
done
echo "timed plans of $(basename "$MA"): ${ta[*]}" >&2
echo "timed plans of $(basename "$MR"): ${tr[*]}" >&2
acl_secure_s=$(median "${ta[@]}")
topics_secure_s=$(median "${tr[@]}")
# the cluster holds the ACLs (Kafka's own tool, one JVM start)
nacl=$(java -cp "$PC_KAFKA_LIBS/*" $LOG4J kafka.admin.AclCommand --bootstrap-server "$PC_SK_BOOTSTRAP" \
    --command-config "$PC_SK_ADMIN_PROPERTIES" --list 2>/dev/null | grep -c 'principal=User:bench-u' || true)
[[ "$nacl" -eq $((ACL_PRINCIPALS * 2)) ]] || { echo "kafka-acls lists $nacl bench ACLs, expected $((ACL_PRINCIPALS * 2))" >&2; exit 1; }

div() { echo "$1 / $2" | bc -l; }
printf '{%s, "acls": %d, "acl_apply_s": %.3f, "secure_topics_apply_s": %.3f, "acl_plan_sasl_ssl_s": %.3f, "topics_plan_sasl_ssl_s": %.3f, "topics_plan_plaintext_s": %.3f, "acl_plan_ratio_vs_plaintext": %.3f, "acl_plan_ratio_vs_topics_sasl_ssl": %.3f, "topics_plan_ratio_sasl_ssl_vs_plaintext": %.3f, "acl_plan_target_s": 1.5, "acl_plan_meets_target": %s}\n' \
    "$json" "$((ACL_PRINCIPALS * 2))" "$acl_apply_s" "$secure_topics_apply_s" "$acl_secure_s" "$topics_secure_s" "$topics_plain_s" \
    "$(div "$acl_secure_s" "$topics_plain_s")" "$(div "$acl_secure_s" "$topics_secure_s")" "$(div "$topics_secure_s" "$topics_plain_s")" \
    "$( (( $(echo "$acl_secure_s < 1.5" | bc -l) )) && echo true || echo false)"
