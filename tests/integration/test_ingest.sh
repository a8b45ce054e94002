#!/usr/bin/env bash
# The ingest worker against our local randomuser server and the stack's Kafka:
#  1. pc-randomuser serves the documented format (every field, the type traps, determinism,
#     results/nat/inc/exc/noinfo/format, unknown version 404);
#  2. 2,000 users (fixed seed) land in a fresh 3-partition topic: exactly 2,000 records (high
#     watermarks), keys == login.uuid of the value, values equal to what the server serves for
#     the same seed/page, no duplicates;
#  3. the same with faults injected (3x 500, 2x 429 + Retry-After 1, 1 truncated body, 1 response
#     slower than the request timeout, 5 malformed records): still exactly 2,000 good records,
#     the malformed ones counted and not produced.
#  4. bounded by --duration and stopped by SIGTERM: exit 0 and every record produced is delivered
#     (records_out == records in the topic).
# The worker runs through `pipectl run` when pipectl has it, else through
# tests/integration/ingest_driver (ingest_driver.cmake), built next to pipectl
# (PC_INGEST_DRIVER overrides its path).
# pc-test: timeout=180
source "$(dirname "$0")/lib.sh"

bindir=$(dirname "${PIPECTL:-${PC_RANDOMUSER:-.}}")
ru=${PC_RANDOMUSER:-$bindir/pc-randomuser}
driver=${PC_INGEST_DRIVER:-$bindir/ingest_driver}
[[ -x "$ru" ]] || fail "pc-randomuser not built at $ru (cmake --build build --target pc-randomuser)"
PY=$(command -v python3) || fail "python3 is required"

note "start pc-randomuser on a free port"
"$ru" --port 0 --port-file "$TEST_TMP/ru.port" 2>"$TEST_TMP/ru.log" &
ru_pid=$!
defer "kill $ru_pid 2>/dev/null; wait $ru_pid 2>/dev/null"
for _ in $(seq 50); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.1; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"
base="http://127.0.0.1:$(cat "$TEST_TMP/ru.port")"
get() { curl -sS --max-time 20 "$base$1"; }

# --- 1. the server's format -------------------------------------------------------------------
note "server: documented format and parameters"
get "/api/?seed=fmt&results=300" >"$TEST_TMP/fmt.json"
get "/api/1.4/?seed=fmt&results=300" >"$TEST_TMP/fmt2.json"
get "/api/?seed=fmt&results=300&page=2" >"$TEST_TMP/fmt_p2.json"
get "/api/1.3/?seed=fmt&results=2&inc=gender,login,nat&noinfo" >"$TEST_TMP/inc.json"
get "/api/?seed=fmt&results=2&exc=login,location" >"$TEST_TMP/exc.json"
get "/api/?seed=fmt&results=200&nat=no,ca,gb,ir,nz,tr,ua" >"$TEST_TMP/nat.json"
get "/api/?seed=fmt&results=50&nat=us,zz" >"$TEST_TMP/natbad.json"
get "/api/?results=6000" >"$TEST_TMP/r6000.json"
get "/api/?results=abc" >"$TEST_TMP/rabc.json"
get "/api/?seed=fmt&results=3&format=pretty" >"$TEST_TMP/pretty.json"
# password=CHARSETS,LENGTH as the API documents (special's '"' and '\' must come out escaped)
get "/api/?seed=pw&results=300&password=special,upper,32" >"$TEST_TMP/pw_special.json"
get "/api/?seed=pw&results=300&password=lower,number,lower,4-9" >"$TEST_TMP/pw_range.json"
get "/api/?seed=pw&results=300&password=number,20-3" >"$TEST_TMP/pw_swapped.json"
get "/api/?seed=pw&results=300&password=upper,0-99" >"$TEST_TMP/pw_bounds.json"
get "/api/?seed=pw&results=300&password=upper,abc" >"$TEST_TMP/pw_nan.json"
get "/api/?seed=pw&results=300&password=kanji,12" >"$TEST_TMP/pw_noset.json"
start=$(date +%s%N)
get "/api/?seed=big&results=5000" >"$TEST_TMP/big.json"
big_ms=$((($(date +%s%N) - start) / 1000000))
"$PY" - "$TEST_TMP" <<'EOF' || fail "server format checks"
import json, re, sys
d = sys.argv[1]
L = lambda n: json.load(open(f"{d}/{n}.json"))
fmt = L("fmt")
assert fmt["info"] == {"seed": "fmt", "results": 300, "page": 1, "version": "1.4"}, fmt["info"]
assert fmt == L("fmt2"), "same seed+page+results must give the same users"
p2 = L("fmt_p2")
assert {u["login"]["uuid"] for u in fmt["results"]}.isdisjoint(u["login"]["uuid"] for u in p2["results"])
top = ["gender", "name", "location", "email", "login", "registered", "dob", "phone", "cell", "id", "picture", "nat"]
iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
hexre = lambda n: re.compile("^[0-9a-f]{%d}$" % n)
import hashlib
for u in fmt["results"] + L("nat")["results"]:
    assert sorted(u) == sorted(top), sorted(u)
    assert u["gender"] in ("male", "female")
    assert set(u["name"]) == {"title", "first", "last"} and all(isinstance(v, str) for v in u["name"].values())
    loc = u["location"]
    assert set(loc) == {"street", "city", "state", "country", "postcode", "coordinates", "timezone"}
    assert isinstance(loc["street"]["number"], int) and isinstance(loc["street"]["name"], str)
    if u["nat"] in ("CA", "GB", "NO"):
        assert isinstance(loc["postcode"], str), (u["nat"], loc["postcode"])
        if u["nat"] == "NO":
            assert re.fullmatch(r"\d{4}", loc["postcode"])
    else:
        assert isinstance(loc["postcode"], int), (u["nat"], loc["postcode"])
    for c in ("latitude", "longitude"):
        assert isinstance(loc["coordinates"][c], str)
        float(loc["coordinates"][c])
    assert re.fullmatch(r"[+-]?[1-9]?\d:\d\d", loc["timezone"]["offset"]), loc["timezone"]
    assert not re.match(r"^[+-]?0\d:", loc["timezone"]["offset"]), "offsets are not zero-padded"
    assert isinstance(u["email"], str) and "@" in u["email"]
    lg = u["login"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", lg["uuid"])
    for k, n in (("md5", 32), ("sha1", 40), ("sha256", 64)):
        assert hexre(n).match(lg[k])
        assert hashlib.new(k, (lg["password"] + lg["salt"]).encode()).hexdigest() == lg[k]
    for k in ("dob", "registered"):
        assert iso.match(u[k]["date"]) and isinstance(u[k]["age"], int)
    assert isinstance(u["phone"], str) and isinstance(u["cell"], str)
    if u["nat"] in ("IR", "NZ", "TR", "UA"):
        assert u["id"] == {"name": "", "value": None}, u["id"]
    else:
        assert isinstance(u["id"]["name"], str) and u["id"]["name"] and isinstance(u["id"]["value"], str)
    assert set(u["picture"]) == {"large", "medium", "thumbnail"}
nat = L("nat")["results"]
assert {u["nat"] for u in nat} <= {"NO", "CA", "GB", "IR", "NZ", "TR", "UA"}
assert {u["nat"] for u in nat} >= {"NO", "IR"}, "200 users over 7 nats"
inc = L("inc")
assert "info" not in inc and [sorted(u) for u in inc["results"]] == [["gender", "login", "nat"]] * 2
assert all("login" not in u and "location" not in u and "email" in u for u in L("exc")["results"])
assert L("r6000")["info"]["results"] == 1 and len(L("r6000")["results"]) == 1
assert L("rabc")["info"]["results"] == 1
assert len(L("pretty")["results"]) == 3
big = L("big")
assert len(big["results"]) == 5000 and len({u["login"]["uuid"] for u in big["results"]}) == 5000
def pws(n):
    us = L(n)["results"]
    for u in us:  # the hashes are of the password as sent, escapes undone
        lg = u["login"]
        assert hashlib.sha256((lg["password"] + lg["salt"]).encode()).hexdigest() == lg["sha256"]
    return [u["login"]["password"] for u in us]
special = ' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'
import string
p = pws("pw_special")
assert all(len(x) == 32 and set(x) <= set(special + string.ascii_uppercase) for x in p), p[:3]
assert any('"' in x or "\\" in x for x in p), "300 passwords of 32 from 58 characters: some quote or backslash"
p = pws("pw_range")
assert all(4 <= len(x) <= 9 and set(x) <= set(string.ascii_lowercase + string.digits) for x in p), p[:3]
assert {len(x) for x in p} == set(range(4, 10)), sorted({len(x) for x in p})
p = pws("pw_swapped")  # "20-3": the smaller bound first
assert all(3 <= len(x) <= 20 and x.isdigit() for x in p), p[:3]
p = pws("pw_bounds")   # 0 and 99 are out of 1..64: the defaults 8 and 64
assert all(8 <= len(x) <= 64 and x.isupper() for x in p) and max(map(len, p)) > 40, p[:3]
p = pws("pw_nan")
assert all(8 <= len(x) <= 64 and x.isupper() for x in p), p[:3]
p = pws("pw_noset") + pws("fmt")  # no set named, or no parameter: a word, maybe with digits
assert all(re.fullmatch(r"[a-z]+[0-9]{0,3}", x) for x in p), [x for x in p if not re.fullmatch(r"[a-z]+[0-9]{0,3}", x)][:3]
EOF
# one invalid nat code: the whole list is ignored (so nationalities other than US appear)
nats=$("$PY" -c 'import json,sys; print(len({u["nat"] for u in json.load(open(sys.argv[1]))["results"]}))' "$TEST_TMP/natbad.json")
[[ $nats -gt 1 ]] || fail "nat=us,zz should be ignored as a whole, got only $nats nationality"
[[ $big_ms -lt 3000 ]] || fail "5000 users took ${big_ms} ms"
code=$(curl -s -o "$TEST_TMP/404" -w '%{http_code} %{content_type}' "$base/api/2.0/")
assert_eq "404 text/plain" "$code" "unknown version"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/?format=csv")
assert_eq 400 "$code" "format=csv"

# --- 2. ingest into a fresh topic -------------------------------------------------------------
seed="it$TEST_ID"
# what the worker will request: results=500, pages 1..5 (page 5 only in the fault run)
for p in 1 2 3 4 5; do get "/api/?results=500&seed=$seed&page=$p" >"$TEST_TMP/ref$p.json"; done

# The worker runs through `pipectl run` (a one-source manifest) when pipectl has the command,
# else through ingest_driver. Either way its counters end up as one JSON object in
# $TEST_TMP/TOPIC.stats: {"records_in", "records_out", "batches", "errors", "dead_letters"}.
use_pipectl=0
if [[ -n "${PIPECTL:-}" && -x "$PIPECTL" ]] && "$PIPECTL" run --help >/dev/null 2>&1; then
    use_pipectl=1
fi

# start_ingest TOPIC BOUND...: creates TOPIC (3 partitions) and starts the worker in the
# background (pid in $worker_pid); BOUND is "--max-records N" and/or "--duration D" (pipectl
# syntax: 2s) or nothing.
start_ingest() {
    local topic=$1
    shift
    kafka_topics --create --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null
    defer "kafka_topics --delete --topic '$topic' >/dev/null 2>&1"
    if [[ $use_pipectl == 1 ]]; then
        cat >"$TEST_TMP/$topic.yaml" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: ingest_test}
kafka:
  bootstrap: $PC_KAFKA_BOOTSTRAP
  topics:
    - {name: $topic, partitions: 3, replication_factor: 1}
postgres:
  dsn: "$PC_PG_DSN"
sources:
  - name: users
    type: randomuser
    url: $base/api/
    topic: $topic
    batch: 500
    interval: ${INTERVAL:-1ms}
    params: {seed: "$seed"}
YAML
        PC_INGEST_TIMEOUT_MS=1500 PIPECTL_LOG_FORMAT=text timeout 60 "$PIPECTL" \
            -f "$TEST_TMP/$topic.yaml" -o json run users "$@" \
            >"$TEST_TMP/$topic.run" 2>"$TEST_TMP/$topic.log" &
    else
        local a=() d
        while [[ $# -gt 0 ]]; do
            case $1 in
            --max-records) a+=(--max-records "$2") ;;
            --duration) d=${2%s}; a+=(--duration-ms "$((d * 1000))") ;;
            esac
            shift 2
        done
        PC_INGEST_TIMEOUT_MS=1500 timeout 60 "$driver" --url "$base/api/" --topic "$topic" \
            --bootstrap "$PC_KAFKA_BOOTSTRAP" --batch 500 --interval-ms "${INTERVAL_MS:-0}" \
            --param "seed=$seed" "${a[@]}" >"$TEST_TMP/$topic.run" 2>"$TEST_TMP/$topic.log" &
    fi
    worker_pid=$!
}

# wait_ingest TOPIC: waits for the worker; fails unless it exits 0; writes TOPIC.stats
wait_ingest() {
    local topic=$1 rc=0
    wait "$worker_pid" || rc=$?
    [[ $rc -eq 0 ]] || fail "ingest into $topic exited $rc: $(cat "$TEST_TMP/$topic.run" "$TEST_TMP/$topic.log")"
    "$PY" - "$TEST_TMP/$topic.run" >"$TEST_TMP/$topic.stats" <<'EOF2' || fail "worker summary of $topic"
import json, sys
j = json.loads(open(sys.argv[1]).read())
w = j["workers"][0] if "workers" in j else j
print(json.dumps({k: w[k] for k in ("records_in", "records_out", "batches", "errors", "dead_letters")},
                 separators=(",", ":")))
EOF2
}

ingest() { # TOPIC: 2,000 records
    start_ingest "$1" --max-records 2000
    wait_ingest "$1"
}

# topic_total TOPIC: records in TOPIC (sum of the partitions' high watermarks)
topic_total() {
    kafka_java org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
        --topic "$1" | awk -F: '{s += $3} END {print s + 0}'
}
stat_of() { # TOPIC KEY
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$TEST_TMP/$1.stats" "$2"
}

# check_topic TOPIC SKIP: exactly 2,000 records; keys == login.uuid; values == served users;
# no duplicates; the first SKIP users of page 1 (served malformed) are absent.
check_topic() {
    local topic=$1 skip=$2 total
    total=$(topic_total "$topic")
    assert_eq 2000 "$total" "records in $topic (sum of high watermarks)"
    [[ $(topic_partitions "$topic") == 3 ]] || fail "$topic should have 3 partitions"
    kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
        --topic "$topic" --from-beginning --max-messages 2000 --timeout-ms 30000 \
        --property print.key=true --property key.separator=$'\t' \
        --property print.partition=true >"$TEST_TMP/$topic.out" 2>"$TEST_TMP/$topic.cerr" || true
    "$PY" - "$TEST_TMP" "$topic" "$skip" <<'EOF' || fail "records in $topic"
import json, sys
d, topic, skip = sys.argv[1], sys.argv[2], int(sys.argv[3])
ref, order = {}, []
for p in range(1, 6):
    for u in json.load(open(f"{d}/ref{p}.json"))["results"]:
        ref[u["login"]["uuid"]] = u
        order.append(u["login"]["uuid"])
expected = order[skip:skip + 2000]
seen, parts = {}, set()
for line in open(f"{d}/{topic}.out", encoding="utf-8"):
    line = line.rstrip("\n")
    if not line:
        continue
    part, key, value = line.split("\t", 2)
    parts.add(part)
    v = json.loads(value)
    assert key == v["login"]["uuid"], (key, v["login"])
    assert key not in seen, f"duplicate record {key}"
    assert key in ref, f"record {key} was not served for this seed"
    assert v == ref[key], f"record {key} differs from the served user"
    assert list(v) == list(ref[key]), "field order kept"
    seen[key] = v
assert len(seen) == 2000, f"{len(seen)} records read back"
assert set(seen) == set(expected), "the records are the first 2,000 good users, in page order"
assert not set(order[:skip]) & set(seen), "malformed users must not be produced"
assert len(parts) == 3, f"keys spread over {parts}"
EOF
}

if [[ $use_pipectl == 1 ]]; then
    note "the worker runs through: pipectl run"
else
    [[ -x "$driver" ]] || fail "neither 'pipectl run' nor ingest_driver ($driver) is available"
    note "the worker runs through: $driver"
fi

note "ingest 2,000 users (seed $seed) into a fresh 3-partition topic"
t1=$(uniq_name ingest)
ingest "$t1"
stats=$(cat "$TEST_TMP/$t1.stats")
assert_contains "$stats" '"records_out":2000' "records_out"
assert_contains "$stats" '"dead_letters":0' "no malformed records"
assert_contains "$stats" '"batches":4' "4 requests of 500"
check_topic "$t1" 0
# 'never print': librdkafka's own logs go through the worker's logger
assert_not_contains "$(cat "$TEST_TMP/$t1.log")" "%4|" "raw librdkafka log line on stderr"

note "ingest again with faults: 3x 500, 2x 429 (Retry-After 1), 1 HTML 503 page, 1 truncated, 1 slow, 5 malformed"
curl -sS --max-time 5 -X POST "$base/_faults" -d '{"status500": 3, "status429": 2, "retry_after": 1, "html503": 1,
    "truncate": 1, "slow": 1, "slow_ms": 2500, "malformed_record": 5}' >/dev/null
t2=$(uniq_name ingest_faults)
start=$(date +%s)
ingest "$t2"
took=$(($(date +%s) - start))
stats=$(cat "$TEST_TMP/$t2.stats")
log=$(cat "$TEST_TMP/$t2.log")
assert_contains "$stats" '"records_out":2000' "records_out with faults"
# 5 malformed records + 1 truncated (malformed) response
assert_contains "$stats" '"dead_letters":6' "malformed records and responses counted"
errors=$(stat_of "$t2" errors)
[[ $errors -ge 8 ]] || fail "8 failed requests should be counted as errors, got $errors"
assert_contains "$log" "HTTP 500" "500 logged"
assert_contains "$log" "HTTP 429 (rate limited, Retry-After 1s)" "429 logged with Retry-After"
assert_contains "$log" "timed out" "slow response timed out"
assert_contains "$log" "HTTP 503: <!DOCTYPE html>" "HTML error page retried, not taken as data"
assert_contains "$log" "malformed response" "truncated body logged"
assert_contains "$log" "malformed record skipped" "malformed record logged with a sample"
srv=$(get /_stats)
for k in '"html503":1' '"status500":3' '"status429":2' '"truncated":1' '"slow":1' '"malformed_records":5'; do
    assert_contains "$srv" "$k" "server served the fault"
done
[[ $took -lt 40 ]] || fail "fault run took ${took}s"
check_topic "$t2" 5

note "bounded by --duration, then stopped by SIGTERM: everything produced is delivered"
t3=$(uniq_name ingest_duration)
INTERVAL=200ms INTERVAL_MS=200 start_ingest "$t3" --duration 2s
wait_ingest "$t3"
n=$(stat_of "$t3" records_out)
[[ $n -ge 500 ]] || fail "a 2 s run delivered only $n records"
assert_eq "$n" "$(topic_total "$t3")" "records_out == records in $t3 after --duration"
t4=$(uniq_name ingest_sigterm)
INTERVAL=200ms INTERVAL_MS=200 start_ingest "$t4"
# SIGTERM once 500 records are in the topic (polled, not slept for)
for _ in $(seq 60); do
    [[ $(topic_total "$t4") -ge 500 ]] && break
    sleep 0.2
done
kill -TERM "$worker_pid"
wait_ingest "$t4"
n=$(stat_of "$t4" records_out)
[[ $n -ge 500 ]] || fail "the SIGTERM run delivered only $n records"
assert_eq "$n" "$(topic_total "$t4")" "records_out == records in $t4 after SIGTERM"
