#!/usr/bin/env bash
# test_airflow.sh: templates/airflow/pipectl_dag.py run by real Apache Airflow (from PyPI, pinned,
# installed by this test into a virtual environment under .cache/) with `airflow dags test`, on a
# throwaway AIRFLOW_HOME (sqlite), against the stack's Kafka, a private PostgreSQL 15 cluster that
# archives with `pipectl wal-push` (archive_cluster.sh: the shared stack does not archive, and
# turning archive_mode on needs a restart) and pc-randomuser.
#
#   run 1 (fresh pipeline): plan finds changes, apply runs, no_changes is skipped; ingest, sink
#          (one `pipectl run SINK --until-caught-up --duration D`), backup and status succeed; N
#          rows landed, the topic's lag is 0, one backup labelled with the run's id is listed by
#          `pipectl backup list -o json`.
#   run 2 (nothing changed): apply is skipped, no_changes runs; N more rows, a second backup.
#   run 3 (Kafka unreachable): plan fails on its first try (pipectl exit 1: never retried), every
#          task after it is upstream_failed; no row and no backup added.
#   run 4 (a typo in the manifest): validate fails on its first try, nothing else runs.
# Task states and try numbers come from the metadata database (sqlite); run 1's states also from
# `airflow tasks states-for-dag-run -o json`, which must agree.
#
# The virtual environment (.cache/airflow-venv) is made once per Airflow version and constraints
# file (templates/airflow/constraints-*.txt, a pip freeze of a working install) and reused; pip's
# cache is pip's own (~/.cache/pip). On the shared 2-core test machine: cold install 28 s
# (downloads included), `airflow db migrate` 3-8 s, each `airflow dags test` 8-27 s; the whole
# test 1.5-4 minutes cold, so it is in the default run (no label). PC_AIRFLOW_N sets N (300);
# PC_AIRFLOW_DEBUG=DIR keeps the dags test output and AIRFLOW_HOME there.
# pc-test: timeout=600
source "$PC_SRC/tests/integration/lib.sh"

AIRFLOW_VERSION=3.3.2
CONSTRAINTS="$PC_SRC/templates/airflow/constraints-airflow-$AIRFLOW_VERSION-py3.11.txt"
DAG="$PC_SRC/templates/airflow/pipectl_dag.py"
N=${PC_AIRFLOW_N:-300}
command -v jq >/dev/null || fail "jq is needed to read -o json output"
[[ -f "$CONSTRAINTS" ]] || fail "no constraints file $CONSTRAINTS"
[[ -f "$DAG" ]] || fail "no DAG at $DAG"
RU="$(dirname "$PIPECTL")/pc-randomuser"
[[ -x "$RU" ]] || fail "pc-randomuser not built next to pipectl ($RU): cmake --build the tree"

# --- Airflow in a virtual environment -------------------------------------------------------------
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
[[ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" == 3.11 ]] ||
    fail "$PY is not Python 3.11 (the constraints file is for 3.11)"
VENV="$PC_SRC/.cache/airflow-venv"
WANT="apache-airflow==$AIRFLOW_VERSION $(sha256sum "$CONSTRAINTS" | cut -c1-16)"
mkdir -p "$PC_SRC/.cache"
exec {VLOCK}>"$PC_SRC/.cache/airflow-venv.lock" # two test runs at once share one install
flock -w 600 "$VLOCK" || fail "another run held $PC_SRC/.cache/airflow-venv.lock for 10 minutes"
if [[ "$(cat "$VENV/.pc-requirements" 2>/dev/null)" != "$WANT" ]]; then
    note "installing apache-airflow==$AIRFLOW_VERSION into $VENV (pinned by $(basename "$CONSTRAINTS"))"
    t0=$SECONDS
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
    timeout 400 "$VENV/bin/pip" install -q --disable-pip-version-check -c "$CONSTRAINTS" \
        "apache-airflow==$AIRFLOW_VERSION" >"$TEST_TMP/pip.log" 2>&1 ||
        { rm -rf "$VENV"; fail "pip install apache-airflow failed:"$'\n'"$(tail -n 30 "$TEST_TMP/pip.log")"; }
    echo "$WANT" >"$VENV/.pc-requirements"
    note "Airflow installed in $((SECONDS - t0)) s"
else
    note "Airflow $AIRFLOW_VERSION already installed in $VENV"
fi
exec {VLOCK}>&-

export AIRFLOW_HOME="$TEST_TMP/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$AIRFLOW_HOME/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO PYTHONUNBUFFERED=1 # output kept when a timeout kills it
mkdir -p "$AIRFLOW__CORE__DAGS_FOLDER"
[[ -z "${PC_AIRFLOW_DEBUG:-}" ]] || defer "mkdir -p '$PC_AIRFLOW_DEBUG' && cp -r '$TEST_TMP/'dags_test.* '$AIRFLOW_HOME' '$PC_AIRFLOW_DEBUG/'"
cp "$DAG" "$AIRFLOW__CORE__DAGS_FOLDER/"
airflow() { timeout 300 "$VENV/bin/airflow" "$@"; }
t0=$SECONDS
airflow db migrate >"$TEST_TMP/migrate.log" 2>&1 || fail "airflow db migrate failed:"$'\n'"$(tail -n 30 "$TEST_TMP/migrate.log")"
note "airflow db migrate: $((SECONDS - t0)) s"

# --- the pipeline: stack Kafka, private archiving PostgreSQL, pc-randomuser ------------------------
source "$PC_SRC/tests/integration/archive_cluster.sh"
archive_cluster airflow

"$RU" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
RU_PID=$!
defer "kill -TERM $RU_PID 2>/dev/null; wait $RU_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"

# The DAG's tasks inherit this environment (the manifest's ${VAR}s), as on an Airflow worker.
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" TOPIC DLQ RU_URL PG_DSN REPO ARCHIVE_COMMAND
TOPIC=$(uniq_name af_users)
DLQ=$(uniq_name af_users_dlq)
RU_URL="http://127.0.0.1:$(cat "$TEST_TMP/ru.port")/api/"
PG_DSN="host=$SOCK port=5432 dbname=postgres user=postgres"
M="$TEST_TMP/pipeline.yaml"
# No primary key and insert mode: every record is one row, so rows count what the sink drained.
cat >"$M" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: airflow-test}
kafka:
  bootstrap: ${KAFKA_BOOTSTRAP}
  topics:
    - {name: "${TOPIC}", partitions: 3}
    - {name: "${DLQ}", partitions: 1}
postgres:
  dsn: ${PG_DSN}
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: uid, type: uuid, nullable: false}
            - {name: email, type: text}
  archiving: {enabled: true, repository: "${REPO}", command: "${ARCHIVE_COMMAND}"}
sources:
  - {name: users_in, type: randomuser, url: "${RU_URL}", topic: "${TOPIC}", batch: 100, interval: 10ms}
sinks:
  - name: users_out
    topic: "${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {uid: login.uuid, email: email}
    batch: {max_records: 500, max_wait: 100ms}
    dead_letter: "${DLQ}"
backups:
  schedule: "0 3 * * *"
  retention: {full: 7}
YAML
expect_rc 0 "$PIPECTL" -f "$M" validate

# Settings: the manifest, binary, names and sink bound as Airflow Variables (in the metadata
# database, one `variables import`), N as the run's conf (a param).
jq -n --arg m "$M" --arg b "$PIPECTL" '{pipectl_manifest: $m, pipectl_bin: $b, pipectl_source: "users_in",
    pipectl_sink: "users_out", pipectl_sink_max_duration: "2m"}' >"$TEST_TMP/variables.json"
airflow variables import "$TEST_TMP/variables.json" >"$TEST_TMP/variables.log" 2>&1 ||
    fail "airflow variables import failed: $(cat "$TEST_TMP/variables.log")"

rows() { q "SELECT count(*) FROM raw.users"; }
backups_json() { "$PIPECTL" -f "$M" backup list -o json; }

# dag_test DATE: one DAG run (logical date DATE); output in $TEST_TMP/dags_test.DATE.log
dag_test() {
    local t=$SECONDS rc=0
    airflow dags test pipectl "$1" -c "{\"max_records\": $N}" >"$TEST_TMP/dags_test.$1.log" 2>&1 || rc=$?
    note "airflow dags test pipectl $1: exit $rc in $((SECONDS - t)) s"
    DAG_RC=$rc
}
# states DATE: "task=state ..." sorted, from the metadata database (sqlite)
states() {
    "$VENV/bin/python" - "$AIRFLOW_HOME/airflow.db" "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT ti.task_id, ti.state FROM task_instance ti JOIN dag_run dr ON dr.run_id = ti.run_id "
                 "AND dr.dag_id = ti.dag_id WHERE ti.dag_id = 'pipectl' AND date(dr.logical_date) = date(?) "
                 "ORDER BY ti.task_id", (sys.argv[2],)).fetchall()
print("".join("%s=%s " % r for r in rows))
PY
}
# cli_states DATE: the same from `airflow tasks states-for-dag-run -o json`
cli_states() {
    local out
    out=$(airflow tasks states-for-dag-run pipectl "$1" -o json 2>"$TEST_TMP/states.err") ||
        fail "airflow tasks states-for-dag-run failed: $(cat "$TEST_TMP/states.err")"
    # the JSON is the last line: Airflow logs warnings to stdout too
    tail -n1 <<<"$out" | jq -r '.[] | "\(.task_id)=\(.state)"' | sort | tr '\n' ' '
}
# tries DATE TASK: try_number of the task instance, from the metadata database
tries() {
    "$VENV/bin/python" - "$AIRFLOW_HOME/airflow.db" "$1" "$2" <<'PY'
import sqlite3, sys
db, date, task = sys.argv[1:]
c = sqlite3.connect(db)
rows = c.execute("SELECT ti.try_number FROM task_instance ti JOIN dag_run dr ON dr.run_id = ti.run_id "
                 "AND dr.dag_id = ti.dag_id WHERE ti.dag_id = 'pipectl' AND ti.task_id = ? "
                 "AND date(dr.logical_date) = date(?)", (task, date)).fetchall()
print(rows[0][0] if len(rows) == 1 else "rows=%d" % len(rows))
PY
}
# log_of DATE TASK: the task's log lines from the output of `airflow dags test DATE` (which logs
# to stdout, not to AIRFLOW_HOME/logs)
log_of() {
    sed -n "/\[DAG TEST\] starting task_id=$2 /,/\[DAG TEST\] end task task_id=$2 /p" "$TEST_TMP/dags_test.$1.log"
}
# run_id_of DATE: the run id of the DAG run with that logical date
run_id_of() {
    "$VENV/bin/python" - "$AIRFLOW_HOME/airflow.db" "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT run_id FROM dag_run WHERE dag_id = 'pipectl' AND date(logical_date) = date(?)",
                 (sys.argv[2],)).fetchall()
print(rows[0][0] if len(rows) == 1 else "rows=%d" % len(rows))
PY
}
show_run() { # DATE: everything a failure needs, on stderr
    {
        echo "--- airflow dags test $1 (tail)"
        tail -n 60 "$TEST_TMP/dags_test.$1.log"
    } >&2
}
expect_states() { # DATE EXPECTED MSG
    local got
    got=$(states "$1")
    [[ "$got" == "$2" ]] || { show_run "$1"; fail "$3: task states"$'\n'"expected: $2"$'\n'"got:      $got"; }
}

# --- run 1: a fresh pipeline: apply runs --------------------------------------------------------
D1=2026-01-01
dag_test $D1
S1="apply=success backup=success ingest=success no_changes=skipped plan=success sink=success status=success validate=success "
expect_states $D1 "$S1" "run 1 (changes to apply)"
assert_eq "$S1" "$(cli_states $D1)" "run 1: task states from airflow tasks states-for-dag-run"
assert_eq 0 "$DAG_RC" "airflow dags test exit status of a successful run"
assert_eq "$N" "$(rows)" "rows in raw.users after run 1"
assert_eq "$N" "$(q "SELECT sum(next_offset) FROM pipectl.sink_offsets WHERE sink = 'users_out'")" "sink offsets after run 1"
assert_contains "$(log_of $D1 plan)" "pipectl exited 2" "plan's log shows exit 2 (changes)"
assert_contains "$(log_of $D1 sink)" "run users_out --until-caught-up --duration 2m" "the sink task is one run --until-caught-up"
assert_not_contains "$(log_of $D1 sink)" "-o json status" "the sink task no longer asks status for the lag"
assert_contains "$(log_of $D1 sink)" "draining a backlog of $N records" "the sink saw exactly what was ingested as its backlog"
assert_contains "$(log_of $D1 sink)" "caught up, $N records committed" "sink drained exactly what was ingested"
expect_rc 0 "$PIPECTL" -f "$M" -o json status
assert_eq "true 0" "$(jq -r '"\(.healthy) \(.sinks[0].lag_total)"' <<<"$OUT")" "status after run 1 (healthy, lag)"
B=$(backups_json) || fail "backup list failed"
assert_eq 1 "$(jq '.backups | length' <<<"$B")" "backups after run 1: $B"
assert_eq "airflow $(run_id_of $D1)" "$(jq -r '.backups[0].label' <<<"$B")" "backup 1's label names run 1"
expect_rc 0 "$PIPECTL" -f "$M" plan --detailed-exitcode

# --- run 2: nothing changed: apply is skipped -----------------------------------------------------
D2=2026-01-02
dag_test $D2
expect_states $D2 "apply=skipped backup=success ingest=success no_changes=success plan=success sink=success status=success validate=success " \
    "run 2 (no changes)"
assert_eq 0 "$DAG_RC" "airflow dags test exit status of a successful run"
assert_contains "$(log_of $D2 plan)" "pipectl exited 0" "plan's log shows exit 0 (no changes)"
assert_eq $((2 * N)) "$(rows)" "rows in raw.users after run 2"
assert_contains "$(log_of $D2 sink)" "caught up, $N records committed" "run 2's sink drained run 2's records"
assert_eq $((2 * N)) "$(q "SELECT sum(next_offset) FROM pipectl.sink_offsets WHERE sink = 'users_out'")" "sink offsets after run 2"
B=$(backups_json) || fail "backup list failed"
assert_eq 2 "$(jq '.backups | length' <<<"$B")" "backups after run 2: $B"
assert_eq "airflow $(run_id_of $D2)" "$(jq -r '.backups[1].label' <<<"$B")" "backup 2's label names run 2"

# --- run 3: Kafka unreachable: plan fails at once, nothing else runs -------------------------------
KAFKA_BOOTSTRAP_SAVED=$KAFKA_BOOTSTRAP
KAFKA_BOOTSTRAP=127.0.0.1:9 # discard port: nothing listens
D3=2026-01-03
dag_test $D3
expect_states $D3 "apply=upstream_failed backup=upstream_failed ingest=upstream_failed no_changes=upstream_failed plan=failed sink=upstream_failed status=upstream_failed validate=success " \
    "run 3 (plan error)"
assert_eq 1 "$(tries $D3 plan)" "plan's try number: a plan error is not retried"
assert_eq 1 "$DAG_RC" "airflow dags test exit status of a failed run"
assert_contains "$(log_of $D3 plan)" "pipectl exited 1" "plan's log shows exit 1"
assert_eq $((2 * N)) "$(rows)" "rows after the failed run 3"
assert_eq 2 "$(backups_json | jq '.backups | length')" "backups after the failed run 3"
KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP_SAVED

# --- run 4: a typo in the manifest: validate fails, never retried ----------------------------------
# (the Variable from the environment: Airflow looks there before the metadata database)
sed 's/partitions: 3/partitons: 3/' "$M" >"$TEST_TMP/typo.yaml"
D4=2026-01-04
AIRFLOW_VAR_PIPECTL_MANIFEST="$TEST_TMP/typo.yaml" dag_test $D4
expect_states $D4 "apply=upstream_failed backup=upstream_failed ingest=upstream_failed no_changes=upstream_failed plan=upstream_failed sink=upstream_failed status=upstream_failed validate=failed " \
    "run 4 (invalid manifest)"
assert_eq 1 "$(tries $D4 validate)" "validate's try number: a manifest error is not retried"
assert_contains "$(log_of $D4 validate)" "did you mean 'partitions'" "validate's log names the typo"
assert_eq 1 "$DAG_RC" "airflow dags test exit status of a failed run"
assert_eq $((2 * N)) "$(rows)" "rows after the failed run 4"
