# secure_lib.sh: sourced after lib.sh by tests that say "# pc-test: secure": the secured,
# replicated cluster of scripts/secure_stack.sh (three SASL_SSL KRaft nodes with an authorizer,
# a TLS PostgreSQL), whose passwords live only in $PC_SECURE_DIR/secure.env.
# shellcheck shell=bash
: "${PC_SECURE_DIR:?PC_SECURE_DIR is not set: this test needs '# pc-test: secure'}"
[[ -f "$PC_SECURE_DIR/secure.env" ]] ||
    fail "no secure stack in $PC_SECURE_DIR (integration.secure_start failed?)"
# shellcheck disable=SC1091
source "$PC_SECURE_DIR/secure.env"

# sk_psql SQL [DB]: as pipectl over TLS (sslmode=verify-full against the stack's CA)
sk_psql() {
    PGPASSWORD=$PC_SK_PG_PASSWORD PGOPTIONS="-c client_min_messages=warning" \
        timeout "$PC_TIMEOUT" psql -XAtq -v ON_ERROR_STOP=1 "$PC_SK_PG_DSN dbname=${2:-pipeline}" \
        -c "$1"
}
# sk_new_db NAME: a database on the TLS PostgreSQL, dropped when the test ends
sk_new_db() {
    [[ "$1" =~ ^[a-z_][a-z0-9_]*$ ]] || fail "sk_new_db: '$1' is not a plain identifier"
    sk_psql "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" postgres >/dev/null
    sk_psql "CREATE DATABASE \"$1\"" postgres >/dev/null
    defer "sk_psql 'DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)' postgres >/dev/null 2>&1"
}
# sk_kafka CLASS ARGS...: a Kafka CLI tool as the admin over SASL_SSL
sk_kafka() {
    local cls=$1
    shift
    kafka_java "$cls" --bootstrap-server "${PC_SK_BOOTSTRAP%%,*}" \
        --command-config "$PC_SK_ADMIN_PROPERTIES" "$@"
}
# sk_acls: every ACL binding of the cluster, one per line, as kafka-acls --list prints them
sk_acls() {
    sk_kafka kafka.admin.AclCommand --list 2>/dev/null | grep -F '(principal='
}
# sk_watermark_sum TOPIC: the sum of the topic's high watermarks
sk_watermark_sum() {
    local out
    out=$(sk_kafka org.apache.kafka.tools.GetOffsetShell --topic "$1" 2>/dev/null) ||
        fail "GetOffsetShell $1 failed"
    [[ -n "$out" ]] || fail "GetOffsetShell $1 printed nothing"
    printf '%s\n' "$out" | awk -F: '{s += $NF} END {print s + 0}'
}
# sk_randomuser: starts pc-randomuser (stopped when the test ends); sets RU_PORT
sk_randomuser() {
    local ru
    ru="$(dirname "${PIPECTL:?}")/pc-randomuser"
    [[ -x "$ru" ]] || fail "$ru not built next to pipectl"
    "$ru" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
    defer "kill -TERM $! 2>/dev/null; wait $! 2>/dev/null"
    for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
    [[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"
    RU_PORT=$(cat "$TEST_TMP/ru.port")
    export RU_PORT
}
# sk_manifest NAME BATCH INTERVAL SINK_BATCH: the secured test pipeline as YAML on stdout: topic
# ${TOPIC} (3 partitions, replication 3, min.insync.replicas 2) and dead-letter topic ${DLQ},
# kafka.derive_acls (line 10), table raw.users in database ${DB} over TLS, source ru (pc-randomuser
# at ${RU_PORT}, users seeded by ${SEED}) as User:ingest, sink to_pg (insert) as User:sink.
# Exported variables fill the ${...} when pipectl reads it.
sk_manifest() {
    cat <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: $1}
kafka:
  bootstrap: \${PC_SK_BOOTSTRAP}
  security:
    protocol: sasl_ssl
    sasl: {mechanism: SCRAM-SHA-512, username: admin, password: "\${PC_SK_ADMIN_PASSWORD}"}
    tls: {ca_file: "\${PC_SK_CA}"}
  derive_acls: true
  topics:
    - {name: "\${TOPIC}", partitions: 3, replication_factor: 3, config: {min.insync.replicas: 2}}
    - {name: "\${DLQ}", partitions: 1, replication_factor: 3}
postgres:
  dsn: "\${PC_SK_PG_DSN} dbname=\${DB} password=\${PC_SK_PG_PASSWORD}"
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: uid, type: uuid, nullable: false}
            - {name: email, type: text}
sources:
  - name: ru
    type: randomuser
    url: "http://127.0.0.1:\${RU_PORT}/api/"
    topic: "\${TOPIC}"
    batch: $2
    interval: $3
    params: {seed: "\${SEED}"}  # same seed, same users: each run its own
    security:
      sasl: {username: ingest, password: "\${PC_SK_INGEST_PASSWORD}"}
sinks:
  - name: to_pg
    topic: "\${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {uid: login.uuid, email: email}
    dead_letter: "\${DLQ}"
    batch: {max_records: $4, max_wait: 100ms}
    security:
      sasl: {username: sink, password: "\${PC_SK_SINK_PASSWORD}"}
YAML
}
