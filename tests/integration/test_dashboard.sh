#!/usr/bin/env bash
# test_dashboard.sh: the live dashboard (issue 15, item 3). `pipectl run --metrics` streams users
# (pc-randomuser -> Kafka -> a private PostgreSQL that archives its WAL with wal-push, a catch-up
# base backup taken by the run's schedule) while:
#   - /api/metrics.json shows non-zero rates in its history, lag per partition, the archiver,
#     the newest backup and drift;
#   - its figures equal /metrics: while streaming, every figure of a JSON response but the ages
#     lies between two scrapes taken around it; with the input paused (pc-randomuser SIGSTOPped) and the sink
#     drained, every sample is equal, exactly (ages: between the two scrapes);
#   - headless Chromium (Debian's chromium) loads the page: the DOM it drew holds a non-zero
#     rate, chart polylines and the figures; the screenshot is the CI artifact
#     ${build dir}/artifacts/dashboard.png (PC_ARTIFACTS_DIR to put it elsewhere);
#   - every metric templates/grafana/pipectl.json uses is in a real scrape;
#   - the page served is templates/dashboard/dashboard.html, byte for byte (gen.sh was run).
# Then `pipectl dashboard` (observe only) on the same pipeline: the same page, JSON without
# workers but with lag, archiver, backups and drift; --help, a bad option, a port in use named.
# pc-test: timeout=420
source "$PC_SRC/tests/integration/lib.sh"
source "$PC_SRC/tests/integration/archive_cluster.sh"

RU="$(dirname "$PIPECTL")/pc-randomuser"
[[ -x "$RU" ]] || fail "pc-randomuser not built next to pipectl ($RU): cmake --build the tree"
[[ -x /usr/bin/chromium ]] || fail "Debian's chromium is not installed: run scripts/setup.sh"
command -v jq >/dev/null || fail "jq is needed"
ARTIFACTS=${PC_ARTIFACTS_DIR:-$(dirname "$PC_STACK_DIR")/artifacts}
SHOT="$ARTIFACTS/dashboard.png"
mkdir -p "$ARTIFACTS"
rm -f "$SHOT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- command line -----------------------------------------------------------------------------
note "dashboard --help, bad options"
expect_rc 0 "$PIPECTL" dashboard --help
assert_contains "$OUT" "--listen ADDR:PORT" "dashboard --help documents --listen"
assert_contains "$OUT" "/api/metrics.json" "dashboard --help names the JSON"
expect_rc 1 "$PIPECTL" dashboard --no-such-option
assert_contains "$ERR" "unknown option '--no-such-option'" "bad option named"
expect_rc 1 "$PIPECTL" dashboard extra
assert_contains "$ERR" "unexpected argument 'extra'" "stray argument"
expect_rc 0 "$PIPECTL" --help
assert_contains "$OUT" "dashboard" "the command is in pipectl --help"

# --- the pipeline -----------------------------------------------------------------------------
archive_cluster dash
"$RU" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
RU_PID=$!
defer "kill -CONT $RU_PID 2>/dev/null; kill -TERM $RU_PID 2>/dev/null; wait $RU_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"

TOPIC=$(uniq_name dash_users)
DLQ=$(uniq_name dash_dlq)
M=$TEST_TMP/pipeline.yaml
cat >"$M" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: users-dash}
kafka:
  bootstrap: $PC_KAFKA_BOOTSTRAP
  topics:
    - {name: "$TOPIC", partitions: 3, replication_factor: 1}
    - {name: "$DLQ", partitions: 1, replication_factor: 1}
postgres:
  dsn: "host=$SOCK port=5432 dbname=postgres user=postgres"
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: uid, type: uuid, nullable: false}
            - {name: email, type: text}
            - {name: first_name, type: text}
  archiving:
    enabled: true
    repository: $REPO
    command: "$ARCHIVE_COMMAND"
backups:
  schedule: "0 0 * * *"
sources:
  - {name: ru_in, type: randomuser, url: "http://127.0.0.1:$(cat "$TEST_TMP/ru.port")/api/",
     topic: "$TOPIC", batch: 200, interval: 50ms, key: login.uuid}
sinks:
  - name: users_out
    topic: "$TOPIC"
    table: raw.users
    mode: insert
    mapping: {uid: login.uuid, email: email, first_name: name.first}
    batch: {max_records: 500, max_wait: 100ms}
    dead_letter: "$DLQ"
YAML
expect_rc 0 "$PIPECTL" -f "$M" apply --no-snapshot

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
note "run --metrics $URL while users stream"
# a paused pc-randomuser must not turn into retried errors while the figures are compared
PC_INGEST_TIMEOUT_MS=120000 PIPECTL_LOG_FORMAT=json \
    "$PIPECTL" -f "$M" run --metrics "127.0.0.1:$PORT" >"$TEST_TMP/run.out" 2>"$TEST_TMP/run.log" &
RUN_PID=$!
defer "kill -TERM $RUN_PID 2>/dev/null; wait $RUN_PID 2>/dev/null"

json() { curl -fsS --max-time 5 "$URL/api/metrics.json"; }
scrape() { curl -fsS --max-time 5 "$URL/metrics"; }
# ready: the history shows records moving in and out, lag measured, archiver read, a backup
# (the schedule's catch-up) and drift computed
ready='(.history.t | length) >= 3
  and ([.history.workers[] | select(.name == "ru_in" or .name == "users_out")
        | (.records_out[-1] - .records_out[-2])] | length == 2 and all(. > 0))
  and (.lag | length) == 3 and .archiver.archived_total > 0
  and .backups.count >= 1 and .drift != null'
J=""
for _ in $(seq 120); do
    sleep 0.5
    kill -0 "$RUN_PID" 2>/dev/null || fail "run exited early:"$'\n'"$(tail -n 20 "$TEST_TMP/run.log")"
    J=$(json 2>/dev/null) || continue
    [[ "$(jq "$ready" <<<"$J")" == true ]] && break
done
[[ "$(jq "$ready" <<<"$J")" == true ]] || fail "the JSON never showed rates, lag, archiver, backup and drift:"$'\n'"$J"$'\n'"$(tail -n 20 "$TEST_TMP/run.log")"
assert_eq "users-dash run" "$(jq -r '"\(.pipeline) \(.mode)"' <<<"$J")" "pipeline and mode"
assert_eq 0 "$(jq .drift.drift <<<"$J")" "no drift after apply: $(jq -c .drift <<<"$J")"
assert_eq 1 "$(jq .observer.ok <<<"$J")" "the observer saw everything: $(jq -c .observer <<<"$J")"
assert_contains "$(cat "$TEST_TMP/run.log")" "dashboard at $URL/" "run logs the dashboard's address"

# py_compare A J B MODE: A and B /metrics scrapes taken before and after the JSON response J.
# streaming: every JSON sample within [A, B]; still: equal to A and B, ages within [A, B].
py_compare() {
    python3 - "$@" <<'PY'
import json, re, sys
def text(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        key, val = line.rstrip("\n").rsplit(" ", 1)
        out[key] = float(val)
    return out
def esc(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
def from_json(path):
    j = json.load(open(path)); out = {}
    def put(k, v):
        if v is not None:
            out[k] = float(v)
    for w in j["workers"]:
        n = esc(w["name"])
        for f in ["records_in_total", "records_out_total", "batches_total", "errors_total",
                  "dead_letters_total", "batch_duration_seconds_sum",
                  "batch_duration_seconds_count", "last_commit_age_seconds"]:
            put('pipectl_%s{worker="%s"}' % (f, n), w[f])
        put('pipectl_worker_running{worker="%s",kind="%s"}' % (n, esc(w["kind"])), w["running"])
    for l in j["lag"]:
        put('pipectl_consumer_lag{worker="%s",topic="%s",partition="%d"}'
            % (esc(l["worker"]), esc(l["topic"]), l["partition"]), l["lag"])
    a = j["archiver"]
    if a:
        for f in ["archived_total", "failed_total", "failing", "last_archived_timestamp_seconds",
                  "last_failed_timestamp_seconds"]:
            put("pipectl_archiver_" + f, a[f])
        if a["last_archived_wal"]:
            put('pipectl_archiver_last_archived_wal_info{wal="%s"}' % esc(a["last_archived_wal"]), 1)
    b = j["backups"]
    if b:
        put("pipectl_backup_count", b["count"])
        put("pipectl_backup_newest_end_timestamp_seconds", b["newest_end_timestamp_seconds"])
        put("pipectl_backup_newest_age_seconds", b["newest_age_seconds"])
        put("pipectl_backup_late", b["late"])
    d = j["drift"]
    if d:
        put("pipectl_drift", d["drift"]); put("pipectl_drift_pending_actions", d["pending_actions"])
    o = j["observer"]
    if o:
        put("pipectl_observe_timestamp_seconds", o["timestamp_seconds"]); put("pipectl_observe_ok", o["ok"])
    return out
A, J, B, mode = text(sys.argv[1]), from_json(sys.argv[2]), text(sys.argv[3]), sys.argv[4]
bad = []
if set(A) != set(J) or set(B) != set(J):
    bad.append("series differ: only in /metrics %s, only in the JSON %s"
               % (sorted(set(A) - set(J)), sorted(set(J) - set(A))))
moving = re.compile(r"_age_seconds|^pipectl_observe_timestamp_seconds")
for k in sorted(set(A) & set(J) & set(B)):
    lo, hi = min(A[k], B[k]), max(A[k], B[k])
    if mode == "still" and not moving.search(k):
        if not (A[k] == J[k] == B[k]):
            bad.append("%s: /metrics %s, JSON %s, /metrics %s" % (k, A[k], J[k], B[k]))
    elif mode == "streaming" and "_age_seconds" in k:
        pass  # a commit between the scrapes resets it: not ordered; compared when still
    elif not (lo <= J[k] <= hi):
        bad.append("%s: JSON %s outside the scrapes around it [%s, %s]" % (k, J[k], lo, hi))
print("compared %d series (%s)" % (len(J), mode))
if bad:
    print("\n".join(bad)); sys.exit(1)
PY
}
# one triple; the observer may publish between the scrapes (lag, archiver): retried then
compare_figures() { # MODE
    local i
    for i in 1 2 3 4 5 6; do
        scrape >"$TEST_TMP/a.txt" && json >"$TEST_TMP/j.json" && scrape >"$TEST_TMP/b.txt" ||
            fail "scraping $URL failed"
        if run py_compare "$TEST_TMP/a.txt" "$TEST_TMP/j.json" "$TEST_TMP/b.txt" "$1"; [[ $RC -eq 0 ]]; then
            echo "$OUT"
            return 0
        fi
        sleep 0.3
    done
    fail "/api/metrics.json and /metrics disagree ($1):"$'\n'"$OUT"
}

note "JSON and /metrics agree while streaming (JSON between two scrapes)"
compare_figures streaming
# the comparison itself bites: a JSON with one figure changed is refused
sed 's/"records_out_total":\([0-9]*\)/"records_out_total":99999999999/' "$TEST_TMP/j.json" >"$TEST_TMP/j-bad.json"
run py_compare "$TEST_TMP/a.txt" "$TEST_TMP/j-bad.json" "$TEST_TMP/b.txt" streaming
[[ $RC -ne 0 ]] || fail "the comparison accepted a JSON with a wrong records_out_total"

note "the page served is templates/dashboard/dashboard.html"
curl -fsS --max-time 5 -D "$TEST_TMP/page.h" "$URL/" -o "$TEST_TMP/page.html" || fail "GET / failed"
cmp -s "$TEST_TMP/page.html" "$PC_SRC/templates/dashboard/dashboard.html" ||
    fail "GET / differs from templates/dashboard/dashboard.html: run templates/dashboard/gen.sh"
assert_contains "$(cat "$TEST_TMP/page.h")" "Content-Security-Policy: default-src 'none'" "the page may load nothing from elsewhere"
curl -fsS --max-time 5 "$URL/dashboard" | cmp -s - "$TEST_TMP/page.html" || fail "GET /dashboard is not the page"
# no external asset: no URL with a scheme in the page (the CSP would block it anyway)
if grep -Eo '(src|href)="[a-z]+://[^"]*"|url\([^)]*://' "$TEST_TMP/page.html"; then
    fail "the page references an external asset"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/nope")
assert_eq 404 "$code" "an unknown path"

note "headless Chromium draws the page (screenshot $SHOT)"
CHROME=(/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage
        --hide-scrollbars --no-first-run --user-data-dir="$TEST_TMP/chrome"
        --window-size=1440,1080 --virtual-time-budget=6000)
run timeout 90 "${CHROME[@]}" --dump-dom "$URL/"
[[ $RC -eq 0 ]] || fail "chromium --dump-dom failed ($RC):"$'\n'"$ERR"
DOM=$OUT
printf '%s\n' "$DOM" >"$ARTIFACTS/dashboard.dom.html"
polls=$(grep -o 'data-polls="[0-9]*"' <<<"$DOM" | grep -o '[0-9]*' | head -n1)
[[ "${polls:-0}" -ge 1 ]] || fail "the page never drew a poll (data-polls=${polls:-none}); DOM in $ARTIFACTS/dashboard.dom.html"
value_of() { grep -o "id=\"$1\" data-value=\"[^\"]*\"" <<<"$DOM" | sed 's/.*data-value="\([^"]*\)"/\1/' | head -n1; }
for id in v-in-rate v-out-rate v-lag v-backup v-arch; do
    v=$(value_of "$id")
    [[ -n "$v" ]] || fail "$id has no figure in the drawn page"
done
python3 -c "import sys; sys.exit(0 if float('$(value_of v-out-rate)') > 0 and float('$(value_of v-in-rate)') > 0 else 1)" ||
    fail "the drawn rates are not > 0: in $(value_of v-in-rate), out $(value_of v-out-rate)"
for c in c-out c-lag c-lat; do
    pts=$(grep -o "id=\"$c\"[^>]*data-points=\"[0-9]*\"" <<<"$DOM" | grep -o 'data-points="[0-9]*"' | grep -o '[0-9]*')
    [[ "${pts:-0}" -gt 1 ]] || fail "chart $c drew ${pts:-no} points"
done
(( $(grep -o '<polyline' <<<"$DOM" | wc -l) >= 3 )) || fail "fewer than 3 polylines drawn"
assert_contains "$DOM" ">users-dash<" "the pipeline's name is shown"
assert_contains "$DOM" "users_out" "the sink is listed"
assert_contains "$DOM" "$TOPIC" "the lag table names the topic"
run timeout 90 "${CHROME[@]}" --screenshot="$SHOT" "$URL/"
[[ $RC -eq 0 && -s "$SHOT" ]] || fail "no screenshot ($RC):"$'\n'"$ERR"
assert_eq "89504e47" "$(head -c 4 "$SHOT" | od -An -tx1 | tr -d ' \n')" "PNG signature"
(( $(stat -c %s "$SHOT") > 30000 )) || fail "screenshot $SHOT is suspiciously small"

note "input paused, sink drained: JSON == /metrics, exactly"
kill -STOP "$RU_PID"
prev=""
for _ in $(seq 60); do
    sleep 1
    cur=$(scrape | grep -E '^pipectl_(records|batches|dead|errors)' | grep -v 'worker="backups"' || true)
    lagsum=$(json | jq '[.lag[].lag] | add')
    [[ -n "$cur" && "$cur" == "$prev" && "$lagsum" == 0 ]] && break
    prev=$cur
done
[[ "$lagsum" == 0 ]] || fail "the sink did not drain (lag $lagsum)"
compare_figures still
G=$(grep -oE '"pipectl_[a-z_]+|[^a-z_]pipectl_[a-z_]+' "$PC_SRC/templates/grafana/pipectl.json" | grep -oE 'pipectl_[a-z_]+' | sort -u)
note "every metric the Grafana dashboard uses is in the scrape ($(wc -l <<<"$G") names)"
python3 -m json.tool "$PC_SRC/templates/grafana/pipectl.json" >/dev/null || fail "templates/grafana/pipectl.json is not JSON"
names=$(sed -n 's/^\(pipectl_[a-z_]*\)[{ ].*/\1/p' "$TEST_TMP/b.txt" | sort -u)
(( $(wc -l <<<"$G") >= 15 )) || fail "too few metric names found in the Grafana JSON: $G"
for g in $G; do
    grep -qx "$g" <<<"$names" || fail "Grafana uses $g, which /metrics does not export:"$'\n'"$names"
done
kill -CONT "$RU_PID"

kill -TERM "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
assert_eq 0 "$rc" "run's exit after SIGTERM: $(tail -n 5 "$TEST_TMP/run.log")"
curl -fsS --max-time 2 "$URL/metrics" >/dev/null 2>&1 && fail "the endpoint still answers after run exited"

# --- pipectl dashboard: observe only ------------------------------------------------------------
note "pipectl dashboard: the same page and JSON, no workers"
DPORT=$(free_port)
DURL="http://127.0.0.1:$DPORT"
PIPECTL_LOG_FORMAT=json "$PIPECTL" -f "$M" dashboard --listen "127.0.0.1:$DPORT" >"$TEST_TMP/dash.out" 2>"$TEST_TMP/dash.log" &
DASH_PID=$!
defer "kill -TERM $DASH_PID 2>/dev/null; wait $DASH_PID 2>/dev/null"
D=""
for _ in $(seq 60); do
    sleep 0.5
    D=$(curl -fsS --max-time 5 "$DURL/api/metrics.json" 2>/dev/null) || continue
    [[ "$(jq '(.lag | length) == 3 and .archiver != null and .backups.count >= 1 and .drift != null' <<<"$D")" == true ]] && break
done
[[ "$(jq '(.lag | length) == 3 and .backups.count >= 1 and .drift != null' <<<"$D")" == true ]] ||
    fail "dashboard's JSON lacks lag, backups or drift:"$'\n'"$D"$'\n'"$(cat "$TEST_TMP/dash.log")"
assert_eq "users-dash dashboard 0" "$(jq -r '"\(.pipeline) \(.mode) \(.workers | length)"' <<<"$D")" "dashboard JSON: no workers"
# nothing moves now: the lag equals what `status` computes, and the archiver went on
expect_rc 0 "$PIPECTL" -f "$M" status -o json
assert_eq "$(jq '.sinks[0].lag_total' <<<"$OUT")" "$(jq '[.lag[].lag] | add' <<<"$D")" "dashboard's lag == status's lag_total"
(( $(jq .archiver.archived_total <<<"$D") >= $(jq .archiver.archived_total <<<"$J") )) ||
    fail "dashboard's archived count went back: $(jq -c .archiver <<<"$D")"
assert_eq "$(jq .backups.newest_id <<<"$J")" "$(jq .backups.newest_id <<<"$D")" "the same newest backup"
assert_contains "$(cat "$TEST_TMP/dash.log")" "$DURL/" "dashboard logs its address"
curl -fsS --max-time 5 "$DURL/" | cmp -s - "$PC_SRC/templates/dashboard/dashboard.html" || fail "dashboard's GET / is not the page"
M2=$(curl -fsS --max-time 5 "$DURL/metrics")
assert_contains "$M2" "pipectl_consumer_lag{worker=\"users_out\",topic=\"$TOPIC\",partition=\"0\"} " "dashboard /metrics has the lag"
assert_not_contains "$M2" "pipectl_records_in_total{" "dashboard /metrics has no worker counters"

note "a port in use is named"
expect_rc 1 "$PIPECTL" -f "$M" dashboard --listen "127.0.0.1:$DPORT"
assert_contains "$ERR" "127.0.0.1:$DPORT" "the error names the address"
assert_contains "$ERR" "in use" "the error says why"
expect_rc 1 "$PIPECTL" -f "$M" dashboard --listen "nonsense"
assert_contains "$ERR" "not ADDR:PORT" "a malformed address"

kill -TERM "$DASH_PID"
rc=0
wait "$DASH_PID" || rc=$?
assert_eq 0 "$rc" "dashboard's exit after SIGTERM: $(tail -n 3 "$TEST_TMP/dash.log")"
note "screenshot: $SHOT"
