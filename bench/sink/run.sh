#!/usr/bin/env bash
# bench/sink: the Kafka -> PostgreSQL sink (pkg/sink) against a private local stack.
#
#   1. Preload RECORDS randomuser-shaped users (pc-sink-driver --produce: every field of the
#      randomuser format, keyed by login.uuid) into a topic with 4 partitions.
#   2. Insert mode: time pc_sink_run landing all RECORDS in raw.users_insert (17 typed columns
#      incl. uuid primary key, timestamptz, numeric, date, jsonb), from its start (connect, group
#      join) until the last batch is committed with its offsets.
#   3. Ceiling: the same rows, dumped with COPY TO a file, loaded with server-side
#      `COPY raw.users_copy FROM 'file'` into an identical empty table (same primary key).
#   4. Upsert mode: the same topic from the beginning into raw.users_upsert (COPY into the
#      staging table + INSERT ... ON CONFLICT DO UPDATE), timed the same way.
#   Each phase starts after a CHECKPOINT. peak_rss_mb is the larger ru_maxrss of the two sink
#   processes (getrusage at exit, so it covers the whole run).
#   5. Latency at a steady RATE records/s for LAT_SECONDS (after the throughput tables are
#      emptied and a CHECKPOINT, so no autovacuum of their millions of rows or checkpoint of
#      their pages runs meanwhile): a sink (insert mode, batch max_wait
#      LAT_WAIT_MS) runs on its own 4-partition topic; once it holds its partitions, a paced
#      producer writes RATE records/s, each carrying "pc_sent_us", the producer's wall clock in
#      microseconds taken right before the record is handed to librdkafka. The server runs with
#      track_commit_timestamp = on, so every row's latency is exactly
#          pg_xact_commit_timestamp(xmin) - pc_sent_us
#      i.e. from produce to the moment the row's transaction committed and it became visible to
#      other sessions (same machine, same clock). p50/p99/max are over all rows of that run.
#      A second leg does the same at RATE2 records/s (the sink restarted from its stored
#      offsets, raw.lat emptied first): the *_20k keys.
#
# Usage: bash bench/sink/run.sh [RECORDS]            (default 1000000; e.g. 100000 for a quick run)
# Environment: PC_BUILD (build dir, default build; built here if needed), BATCH (sink
# batch.max_records, default 5000), RATE (5000), RATE2 (20000, the second latency leg),
# LAT_SECONDS (20), LAT_WAIT_MS (100).
# Progress goes to stderr; the last line of stdout is one JSON object.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RECORDS=${1:-1000000}
BATCH=${BATCH:-5000}
RATE=${RATE:-5000}
RATE2=${RATE2:-20000}
LAT_SECONDS=${LAT_SECONDS:-20}
LAT_WAIT_MS=${LAT_WAIT_MS:-100}
BUILD=${PC_BUILD:-$ROOT/build}
[[ $BUILD == /* ]] || BUILD="$ROOT/$BUILD"
say() { printf 'bench/sink: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }

source "$ROOT/bench/lib.sh"
bench_prepare "$BUILD" pipectl pc-sink-driver
PIPECTL=$BUILD/pipectl DRIVER=$BUILD/pc-sink-driver

WORK=$(mktemp -d /tmp/pc-bench-sink.XXXXXX)
chmod 755 "$WORK"
SINK_PIDS=()
cleanup() {
    local p
    for p in "${SINK_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    bash "$ROOT/scripts/stack.sh" stop "$WORK/stack" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
bash "$ROOT/scripts/stack.sh" start "$WORK/stack" >&2
# shellcheck disable=SC1091
source "$WORK/stack/stack.env"
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" PG_DSN="$PC_PG_DSN"
q() { PGOPTIONS="-c client_min_messages=warning" psql -XAtq -v ON_ERROR_STOP=1 "$PG_DSN" -c "$1"; }
# commit timestamps: the latency probe reads each row's commit time
q "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
bash "$ROOT/scripts/stack.sh" restart-pg "$WORK/stack" >&2
[[ "$(q 'SHOW track_commit_timestamp')" == on ]] || { say "track_commit_timestamp is not on"; exit 1; }

M="$WORK/bench.yaml"
columns() {
    cat <<'YAML'
            - {name: id, type: uuid, primary_key: true}
            - {name: first_name, type: text}
            - {name: last_name, type: text}
            - {name: gender, type: text}
            - {name: address, type: text}
            - {name: post_code, type: text}
            - {name: email, type: text, nullable: false}
            - {name: username, type: text}
            - {name: dob, type: timestamptz}
            - {name: registered_date, type: timestamptz}
            - {name: phone, type: text}
            - {name: picture, type: text}
            - {name: street_number, type: integer}
            - {name: latitude, type: "numeric(9,4)"}
            - {name: id_value, type: text}
            - {name: dob_day, type: date}
            - {name: login, type: jsonb}
YAML
}
mapping() {
    cat <<'YAML'
      id: login.uuid
      first_name: name.first
      last_name: name.last
      gender: gender
      address: location.street.name
      post_code: location.postcode
      email: email
      username: login.username
      dob: dob.date
      registered_date: registered.date
      phone: phone
      picture: picture.medium
      street_number: location.street.number
      latitude: location.coordinates.latitude
      id_value: id.value
      dob_day: dob.date
      login: login
YAML
}
{
    echo "apiVersion: pipectl/v1"
    echo "kind: Pipeline"
    echo "metadata: {name: benchsink}"
    echo "kafka:"
    echo "  bootstrap: \${KAFKA_BOOTSTRAP}"
    echo "  topics:"
    echo "    - {name: bench_users, partitions: 4, replication_factor: 1}"
    echo "    - {name: bench_lat, partitions: 4, replication_factor: 1}"
    echo "    - {name: bench_dlq, partitions: 1, replication_factor: 1}"
    echo "postgres:"
    echo "  dsn: \${PG_DSN}"
    echo "  schemas:"
    echo "    - name: raw"
    echo "      tables:"
    for t in users_insert users_upsert users_copy lat; do
        echo "        - name: $t"
        echo "          columns:"
        columns
        [[ $t != lat ]] || echo "            - {name: sent_us, type: bigint}"
    done
    echo "sinks:"
    for s in ins:users_insert:insert:bench_users ups:users_upsert:upsert:bench_users \
        lat:lat:insert:bench_lat; do
        IFS=: read -r name table mode topic <<<"$s"
        echo "  - name: $name"
        echo "    topic: $topic"
        echo "    table: raw.$table"
        echo "    mode: $mode"
        echo "    mapping:"
        mapping
        [[ $name != lat ]] || echo "      sent_us: pc_sent_us"
        if [[ $name == lat ]]; then
            echo "    batch: {max_records: $BATCH, max_wait: ${LAT_WAIT_MS}ms}"
        else
            echo "    batch: {max_records: $BATCH, max_wait: 200ms}"
        fi
        echo "    dead_letter: bench_dlq"
    done
} >"$M"
"$PIPECTL" -f "$M" apply --no-snapshot >"$WORK/apply.log" 2>&1 || { cat "$WORK/apply.log" >&2; exit 1; }

# --- 1. preload ------------------------------------------------------------------------------
t0=$(now_ms)
"$DRIVER" -f "$M" ins --produce "$RECORDS" --seed 42 2>"$WORK/produce.log" ||
    { tail -5 "$WORK/produce.log" >&2; exit 1; }
say "preloaded $RECORDS records into bench_users (4 partitions) in $(( $(now_ms) - t0 )) ms"

# run_sink NAME N LOG: runs the sink until N records are committed; sets ELAPSED_MS, RSS_KB
run_sink() {
    local name=$1 n=$2 log=$3
    "$DRIVER" -f "$M" "$name" --max-records "$n" --rusage 2>"$log" ||
        { tail -20 "$log" >&2; say "sink $name failed"; exit 1; }
    ELAPSED_MS=$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' "$log" | tail -1)
    RSS_KB=$(sed -n 's/.*peak_rss_kb=\([0-9]*\).*/\1/p' "$log" | tail -1)
}
rate() { echo "scale=1; $1 * 1000 / $2" | bc -l; } # N MS -> records/s

# --- 2. insert mode --------------------------------------------------------------------------
q "CHECKPOINT" >/dev/null
run_sink ins "$RECORDS" "$WORK/ins.log"
ins_ms=$ELAPSED_MS ins_rss=$RSS_KB
n=$(q "SELECT count(*) FROM raw.users_insert")
[[ $n -eq $RECORDS ]] || { say "insert mode landed $n rows, expected $RECORDS"; exit 1; }
say "insert mode: $RECORDS rows in $ins_ms ms ($(rate "$RECORDS" "$ins_ms") rec/s), peak RSS $((ins_rss / 1024)) MB"

# --- 3. the ceiling: COPY FROM a file holding the same rows -----------------------------------
mkdir -m 1777 "$WORK/copy"
q "COPY raw.users_insert TO '$WORK/copy/rows.copy'" >/dev/null
q "CHECKPOINT" >/dev/null
t0=$(now_ms)
q "COPY raw.users_copy FROM '$WORK/copy/rows.copy'" >/dev/null
copy_ms=$(( $(now_ms) - t0 ))
n=$(q "SELECT count(*) FROM raw.users_copy")
[[ $n -eq $RECORDS ]] || { say "COPY loaded $n rows, expected $RECORDS"; exit 1; }
say "COPY FROM file: $RECORDS rows in $copy_ms ms ($(rate "$RECORDS" "$copy_ms") rec/s)"

# --- 4. upsert mode --------------------------------------------------------------------------
q "CHECKPOINT" >/dev/null
run_sink ups "$RECORDS" "$WORK/ups.log"
ups_ms=$ELAPSED_MS ups_rss=$RSS_KB
n=$(q "SELECT count(*) FROM raw.users_upsert")
want=$(q "SELECT count(DISTINCT id) FROM raw.users_insert")
[[ $n -eq $want ]] || { say "upsert mode landed $n rows, expected $want"; exit 1; }
say "upsert mode: $RECORDS records in $ups_ms ms ($(rate "$RECORDS" "$ups_ms") rec/s), peak RSS $((ups_rss / 1024)) MB"
# offsets stored with the rows equal the topic's end for both sinks
for s in ins ups; do
    sum=$(q "SELECT sum(next_offset) FROM pipectl.sink_offsets WHERE sink = '$s' AND topic = 'bench_users'")
    [[ $sum -eq $RECORDS ]] || { say "sink $s stored offsets summing to $sum, expected $RECORDS"; exit 1; }
done

# --- 5. end-to-end latency at a steady rate ---------------------------------------------------
# The throughput tables are done with: empty them and checkpoint, so that autovacuum and the
# checkpointer catching up on millions of rows written above do not run during this phase.
q "TRUNCATE raw.users_insert, raw.users_upsert, raw.users_copy" >/dev/null
q "CHECKPOINT" >/dev/null
# lat_leg RATE SEED: a latency sink on bench_lat from its stored offsets, RATE records/s for
# LAT_SECONDS into an empty raw.lat; sets P50 P99 PMAX and LEG_RSS_KB
lat_leg() {
    local rate=$1 seed=$2 n=$(($1 * LAT_SECONDS)) log="$WORK/lat-$1.log" i pid
    q "TRUNCATE raw.lat" >/dev/null
    q "CHECKPOINT" >/dev/null
    "$DRIVER" -f "$M" lat --rusage 2>"$log" &
    pid=$!
    SINK_PIDS+=("$pid")
    for ((i = 0; i < 300; i++)); do
        grep -q 'assigned partitions' "$log" && break
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; exit 1; }
        sleep 0.1
    done
    grep -q 'assigned partitions' "$log" || { say "latency sink got no partitions"; exit 1; }
    say "latency: producing $n records at $rate/s"
    "$DRIVER" -f "$M" lat --produce "$n" --seed "$seed" --rate "$rate" --stamp \
        2>"$WORK/lat-produce-$rate.log" || { tail -5 "$WORK/lat-produce-$rate.log" >&2; exit 1; }
    for ((i = 0; i < 600; i++)); do
        [[ "$(q "SELECT count(*) FROM raw.lat")" -ge $n ]] && break
        sleep 0.1
    done
    kill -TERM "$pid"
    wait "$pid" || { tail -20 "$log" >&2; say "latency sink failed"; exit 1; }
    LEG_RSS_KB=$(sed -n 's/.*peak_rss_kb=\([0-9]*\).*/\1/p' "$log" | tail -1)
    local got
    got=$(q "SELECT count(*) FROM raw.lat")
    [[ $got -eq $n ]] || { say "latency run at $rate/s landed $got rows, expected $n"; exit 1; }
    read -r P50 P99 PMAX < <(q "SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY l)::numeric, 1),
            round(percentile_disc(0.99) WITHIN GROUP (ORDER BY l)::numeric, 1), round(max(l)::numeric, 1)
        FROM (SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6 - sent_us) / 1000.0 AS l
              FROM raw.lat) x" | tr '|' ' ')
    say "latency at $rate/s: p50 $P50 ms, p99 $P99 ms, max $PMAX ms"
}
LAT_N=$((RATE * LAT_SECONDS))
lat_leg "$RATE" 7
p50=$P50 p99=$P99 pmax=$PMAX lat_rss=$LEG_RSS_KB
lat_leg "$RATE2" 8
p50_2=$P50 p99_2=$P99 pmax_2=$PMAX lat2_rss=$LEG_RSS_KB

peak_kb=$ins_rss
((ups_rss > peak_kb)) && peak_kb=$ups_rss
((lat_rss > peak_kb)) && peak_kb=$lat_rss
((lat2_rss > peak_kb)) && peak_kb=$lat2_rss
ins_rps=$(rate "$RECORDS" "$ins_ms") ups_rps=$(rate "$RECORDS" "$ups_ms") copy_rps=$(rate "$RECORDS" "$copy_ms")
ins_ratio=$(echo "scale=3; $ins_rps / $copy_rps" | bc -l)
ups_ratio=$(echo "scale=3; $ups_rps / $copy_rps" | bc -l)
peak_mb=$(echo "scale=1; $peak_kb / 1024" | bc -l)
ok() { (($(echo "$1" | bc -l))) && echo true || echo false; }
printf '{"records": %d, "batch_max_records": %d, "insert_records_per_s": %.0f, "upsert_records_per_s": %.0f, "copy_records_per_s": %.0f, "insert_ratio_to_copy": %.3f, "upsert_ratio_to_copy": %.3f, "peak_rss_mb": %.1f, "latency_rate_per_s": %d, "latency_records": %d, "p50_latency_ms": %.1f, "p99_latency_ms": %.1f, "max_latency_ms": %.1f, "latency_rate_20k_per_s": %d, "p50_latency_ms_20k": %.1f, "p99_latency_ms_20k": %.1f, "max_latency_ms_20k": %.1f, "targets_met": {"insert_ratio_0_8": %s, "upsert_ratio_0_6": %s, "rss_under_64mb": %s, "p99_under_250ms": %s, "p99_20k_under_500ms": %s}}\n' \
    "$RECORDS" "$BATCH" "$ins_rps" "$ups_rps" "$copy_rps" "$ins_ratio" "$ups_ratio" "$peak_mb" \
    "$RATE" "$LAT_N" "$p50" "$p99" "$pmax" "$RATE2" "$p50_2" "$p99_2" "$pmax_2" \
    "$(ok "$ins_ratio >= 0.8")" "$(ok "$ups_ratio >= 0.6")" "$(ok "$peak_mb < 64")" "$(ok "$p99 < 250")" \
    "$(ok "$p99_2 < 500")"
