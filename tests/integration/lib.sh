# lib.sh: sourced by tests/integration/test_*.sh. Runs against the stack started by the CTest
# fixture (scripts/stack.sh start $PC_STACK_DIR); CTest passes PC_STACK_DIR, PC_SRC and PIPECTL.
# By hand:  scripts/stack.sh start /tmp/s && PC_STACK_DIR=/tmp/s PIPECTL=build/pipectl \
#           bash tests/integration/test_x.sh ; scripts/stack.sh stop /tmp/s
#
# Isolation: each test gets its own temp dir ($TEST_TMP, removed on exit), its own databases
# (new_db), git repos (new_git_repo) and names (uniq_name). Databases made by new_db are dropped
# on exit. Every helper that talks to a server is bounded by a timeout.
# shellcheck shell=bash
set -euo pipefail

PC_SRC=${PC_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
: "${PC_STACK_DIR:?PC_STACK_DIR is not set: run through ctest, or start a stack with scripts/stack.sh}"
[[ -f "$PC_STACK_DIR/stack.env" ]] ||
    { echo "FAIL: no stack in $PC_STACK_DIR (integration.stack_start failed?)" >&2; exit 1; }
# shellcheck disable=SC1091
source "$PC_STACK_DIR/stack.env"
export PC_SRC

TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pc-${TEST_NAME}.XXXXXX")
# short, lower-case, unique per run: names topics/databases so tests never collide
TEST_ID=$(printf '%04x%04x' "$RANDOM" "$RANDOM")
PC_TIMEOUT=${PC_TIMEOUT:-120}
_PC_DEFER=()

# defer CMD...: run CMD (as one string, eval'd) when the test exits, last registered first.
# Use this instead of `trap ... EXIT`, which would replace the library's cleanup.
defer() { _PC_DEFER+=("$*"); }

_pc_cleanup() {
    local rc=$? db i
    set +e
    for ((i = ${#_PC_DEFER[@]} - 1; i >= 0; i--)); do
        eval "${_PC_DEFER[i]}"
    done
    # background jobs the test left running would hold ctest's output pipe open
    for i in $(jobs -p); do
        kill -TERM "$i" 2>/dev/null
    done
    if [[ -f "$TEST_TMP/.dbs" ]]; then
        while read -r db; do
            PGOPTIONS="-c client_min_messages=warning" timeout 30 psql -XAtq -h "$PC_PG_HOST" \
                -p "$PC_PG_PORT" -U postgres -d postgres \
                -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
        done <"$TEST_TMP/.dbs"
    fi
    if [[ $rc -eq 0 ]]; then
        echo "PASS: $TEST_NAME"
    else
        echo "FAIL: $TEST_NAME (exit $rc)" >&"$_PC_STDERR"
    fi
    rm -rf "$TEST_TMP"
    exit "$rc"
}
trap _pc_cleanup EXIT

# --- assertions -------------------------------------------------------------------------------

# The test's own stderr, kept so a failure shows even inside `cmd 2>file` or $(...).
exec {_PC_STDERR}>&2
fail() {
    echo "FAIL: $*" >&"$_PC_STDERR"
    exit 1
}
assert_eq() { # EXPECTED ACTUAL MSG
    [[ "$1" == "$2" ]] || fail "$3: expected [$1], got [$2]"
}
assert_contains() { # HAYSTACK NEEDLE MSG
    [[ "$1" == *"$2"* ]] || fail "$3: [$2] not found in:"$'\n'"$1"
}
assert_not_contains() { # HAYSTACK NEEDLE MSG
    [[ "$1" != *"$2"* ]] || fail "$3: [$2] unexpectedly found in:"$'\n'"$1"
}
note() { echo "--- $*"; }

# run CMD...: runs a command that may fail; sets RC, OUT (stdout), ERR (stderr) and never
# exits the test by itself. Bounded by $PC_TIMEOUT (RC 124 on timeout).
RC=0 OUT="" ERR=""
run() {
    local o e
    o="$TEST_TMP/.run.out" e="$TEST_TMP/.run.err"
    RC=0
    if declare -F "$1" >/dev/null; then # a helper below: bounded by its own timeouts
        ("$@") >"$o" 2>"$e" || RC=$?
    else
        timeout "$PC_TIMEOUT" "$@" >"$o" 2>"$e" || RC=$?
    fi
    OUT=$(cat "$o") ERR=$(cat "$e")
    if [[ $RC -eq 124 ]]; then echo "run: timed out after ${PC_TIMEOUT}s: $*" >&2; fi
    return 0
}
# expect_rc N CMD...: run, then fail unless the exit code is N (prints output on mismatch).
expect_rc() {
    local want=$1
    shift
    run "$@"
    [[ $RC -eq $want ]] ||
        fail "$*: exit $RC, expected $want"$'\n'"stdout:"$'\n'"$OUT"$'\n'"stderr:"$'\n'"$ERR"
}

# --- pipectl ----------------------------------------------------------------------------------

pipectl() {
    [[ -n "${PIPECTL:-}" && -x "$PIPECTL" ]] ||
        fail "PIPECTL is not the built pipectl binary (got '${PIPECTL:-}'): build it first (cmake --build build --target pipectl)"
    timeout "$PC_TIMEOUT" "$PIPECTL" "$@"
}

uniq_name() { # PREFIX -> PREFIX_<testid>, safe as a topic, database or schema name
    echo "${1}_${TEST_ID}"
}

# --- PostgreSQL -------------------------------------------------------------------------------

# psql_q SQL [DSN]: one statement or script, unaligned tuples only, stops on the first error.
psql_q() {
    PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
        timeout "$PC_TIMEOUT" psql -XAtq -v ON_ERROR_STOP=1 "${2:-$PC_PG_DSN}" -c "$1"
}

# new_db NAME: creates (or recreates) database NAME (dropped when the test ends); prints its DSN.
new_db() {
    local db=$1
    [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || fail "new_db: '$db' is not a plain lower-case identifier"
    psql_q "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" "${PC_PG_DSN/dbname=pipeline/dbname=postgres}" >/dev/null
    psql_q "CREATE DATABASE \"$db\"" "${PC_PG_DSN/dbname=pipeline/dbname=postgres}" >/dev/null
    echo "$db" >>"$TEST_TMP/.dbs" # a file: new_db usually runs in a $(...) subshell
    echo "host=$PC_PG_HOST port=$PC_PG_PORT dbname=$db user=postgres"
}

# pg_restart: restarts the stack's PostgreSQL (after ALTER SYSTEM of a restart-only setting).
# Tests using it must say "# pc-test: serial" so no other test runs meanwhile.
# The restarted postmaster must not inherit the test's output pipes (ctest would wait for it to
# close them), so every inherited descriptor but the null device is closed for it.
pg_restart() {
    (exec {_PC_STDERR}>&- && timeout 90 bash "$PC_SRC/scripts/stack.sh" restart-pg "$PC_STACK_DIR") \
        </dev/null >/dev/null 2>&1
}

# --- git --------------------------------------------------------------------------------------

# new_git_repo NAME [--bare]: an empty repository in the test's temp dir (branch main); prints it.
new_git_repo() {
    local path="$TEST_TMP/$1"
    if [[ "${2:-}" == --bare ]]; then
        git init -q --bare -b main "$path"
    else
        git init -q -b main "$path"
        git -C "$path" config user.name "pipectl test"
        git -C "$path" config user.email "test@pipectl.invalid"
    fi
    echo "$path"
}

# --- Kafka (the reference CLI tools, from the cached 3.9.1 jars) -------------------------------

kafka_java() { # CLASS ARGS...
    # C1 only + serial GC: the CLI tools start in well under a second.
    timeout "$PC_TIMEOUT" java -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m \
        -cp "$PC_KAFKA_LIBS/*" -Dlog4j.configuration="file:$PC_KAFKA_LOG4J" "$@"
}
kafka_topics() { # kafka-topics.sh ARGS... (--bootstrap-server added)
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$PC_KAFKA_BOOTSTRAP" "$@"
}
kafka_configs() { # kafka-configs.sh ARGS... (--bootstrap-server added)
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "$PC_KAFKA_BOOTSTRAP" "$@"
}
# topic_config TOPIC KEY: the topic's own (dynamic) override of KEY, empty when not overridden.
topic_config() {
    local out
    out=$(kafka_configs --entity-type topics --entity-name "$1" --describe) ||
        fail "topic_config: describing topic $1 failed"
    printf '%s\n' "$out" | sed -n "s/^  $(printf '%s' "$2" | sed 's/[.]/\\./g')=\(.*\) sensitive=.*/\1/p"
}
# topic_partitions TOPIC: partition count, empty when the topic does not exist.
topic_partitions() {
    local out
    out=$(kafka_topics --describe --topic "$1" 2>/dev/null) || true
    printf '%s\n' "$out" | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n1
}
# topic_list: every topic, one per line; fails the test when the listing itself fails (an empty
# answer from a broken listing must not read as "the topic is absent").
topic_list() {
    local out
    out=$(kafka_topics --list) || fail "listing the topics of $PC_KAFKA_BOOTSTRAP failed"
    grep -q . <<<"$out" || fail "the topic listing of $PC_KAFKA_BOOTSTRAP is empty (not even __consumer_offsets?)"
    printf '%s\n' "$out"
}
# topic_exists TOPIC: exit status (the listing itself must work: a failed one ends the test).
topic_exists() {
    local l
    l=$(topic_list) || exit 1
    grep -qxF "$1" <<<"$l"
}
# topic_absent TOPIC: exit status: listed fine, and TOPIC is not in it.
topic_absent() {
    local l
    l=$(topic_list) || exit 1
    ! grep -qxF "$1" <<<"$l"
}

# kafka_restart [SECONDS]: stops the stack's Kafka broker (SIGTERM), keeps it down SECONDS
# (default 0), starts it again on the same port with the same data (scripts/stack.sh
# restart-kafka) and waits until it answers. Tests using it must say "# pc-test: serial". As with
# pg_restart, the restarted broker must not inherit the test's output pipes.
kafka_restart() {
    (exec {_PC_STDERR}>&- && timeout 120 bash "$PC_SRC/scripts/stack.sh" restart-kafka \
        "$PC_STACK_DIR" "${1:-0}") </dev/null >/dev/null 2>&1
}

# --- S3 (tests that say "# pc-test: s3") --------------------------------------------------------

# s3_env: loads the s3 fixture's $PC_S3_DIR/s3.env (PC_S3_ENDPOINT, PC_S3_BUCKET, PC_S3_REGION,
# PC_S3_ACCESS_KEY_ID, PC_S3_SECRET_ACCESS_KEY, ...); the objects are files under
# $PC_S3_DIR/data/$PC_S3_BUCKET/.
s3_env() {
    [[ -n "${PC_S3_DIR:-}" && -f "$PC_S3_DIR/s3.env" ]] ||
        fail "no S3 server: PC_S3_DIR/s3.env missing (run through ctest, the s3 fixture starts it)"
    # shellcheck disable=SC1091
    source "$PC_S3_DIR/s3.env"
}
# s3_down / s3_up: stops the fixture's s3proxy (data, ports and credentials kept) and starts it
# again (scripts/s3_stack.sh down|up). As with pg_restart, the restarted server must not inherit
# the test's output pipes.
s3_down() {
    (exec {_PC_STDERR}>&- && timeout 60 bash "$PC_SRC/scripts/s3_stack.sh" down "$PC_S3_DIR") \
        </dev/null >/dev/null 2>&1
}
s3_up() {
    (exec {_PC_STDERR}>&- && timeout 120 bash "$PC_SRC/scripts/s3_stack.sh" up "$PC_S3_DIR") \
        </dev/null >/dev/null 2>&1
}
# s3_manifest FILE NAME URI CREDS SOCK [EXTRA]: a manifest archiving the PostgreSQL at unix socket
# SOCK into the fixture's bucket at URI (s3://...), with credentials_file CREDS; its S3 keys are
# ${PC_E2E_S3_ID} and ${PC_E2E_S3_SECRET} (exported here from the fixture), never literal. EXTRA:
# more lines of the archiving block (e.g. an encryption block), indented by four spaces.
s3_manifest() {
    local file=$1 name=$2 uri=$3 creds=$4 sock=$5 extra=${6:-}
    export PC_E2E_S3_ID=$PC_S3_ACCESS_KEY_ID PC_E2E_S3_SECRET=$PC_S3_SECRET_ACCESS_KEY
    cat >"$file" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: $name}
postgres:
  dsn: "host=$sock port=5432 dbname=postgres user=postgres"
  archiving:
    enabled: true
    repository: $uri
    credentials_file: $creds
    s3:
      endpoint: "$PC_S3_ENDPOINT"
      region: $PC_S3_REGION
      uri_style: path
      access_key_id: "\${PC_E2E_S3_ID}"
      secret_access_key: "\${PC_E2E_S3_SECRET}"
YAML
    if [[ -n $extra ]]; then printf '%s\n' "$extra" >>"$file"; fi
}
