#!/usr/bin/env bash
# The secured, replicated cluster works (scripts/secure_stack.sh, fixture `secure`): an admin
# over SASL_SSL + SCRAM-SHA-512 creates a topic with replication factor 3 and all three replicas
# are in sync; a wrong password is refused as such; the authorizer hides a topic from a user
# without ACLs; mutual TLS needs a client certificate; an unrelated CA is refused by Kafka and by
# PostgreSQL; PostgreSQL accepts pipectl only over verified TLS with its password. Needs no
# pipectl. Kafka's own Java tools (4 JVM starts) plus a few Python TLS probes.
# pc-test: secure
# pc-test: timeout=180
source "$(dirname "$0")/lib.sh"

: "${PC_SECURE_DIR:?PC_SECURE_DIR is not set: run through ctest (fixture secure)}"
[[ -f "$PC_SECURE_DIR/secure.env" ]] ||
    fail "no secure cluster in $PC_SECURE_DIR (integration.secure_start failed?)"
# shellcheck disable=SC1091
source "$PC_SECURE_DIR/secure.env"

# sk_topics PROPS ARGS...: kafka-topics.sh against the SASL_SSL listeners with client props PROPS
sk_topics() {
    local props=$1
    shift
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$PC_SK_BOOTSTRAP" \
        --command-config "$props" "$@"
}
# client_props USER PASSWORD: Java client properties for a SCRAM user; prints the file name
client_props() {
    local f="$TEST_TMP/$1.properties"
    sed "s/username=\"admin\" password=\"[^\"]*\"/username=\"$1\" password=\"$2\"/" \
        "$PC_SK_DIR/admin.properties" >"$f"
    echo "$f"
}
# tls_metadata ADDR CAFILE [CERT KEY]: Metadata v1 over TLS (host name verified); prints the
# broker count, or "error: ..." (exit 1)
tls_metadata() {
    python3 - "$@" <<'EOF'
import socket, ssl, struct, sys
host, port = sys.argv[1].rsplit(':', 1)
try:
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    if len(sys.argv) > 4:
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    with ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=5),
                         server_hostname=host) as s:
        s.settimeout(5)
        cid = b'pc-test'
        body = struct.pack('>hhih', 3, 1, 7, len(cid)) + cid + struct.pack('>i', 0)
        s.sendall(struct.pack('>i', len(body)) + body)
        b = b''
        while len(b) < 12:
            c = s.recv(4096)
            if not c:
                raise OSError('connection closed by the broker')
            b += c
        print(struct.unpack('>i', b[8:12])[0])
except Exception as e:
    print('error: %s' % e)
    sys.exit(1)
EOF
}

IFS=, read -r -a brokers <<<"$PC_SK_BOOTSTRAP"
assert_eq 3 "${#brokers[@]}" "three SASL_SSL listeners in PC_SK_BOOTSTRAP"
assert_eq "${brokers[0]},${brokers[1]},${brokers[2]}" "$PC_SK_BROKER1,$PC_SK_BROKER2,$PC_SK_BROKER3" \
    "PC_SK_BROKERn"
assert_eq 600 "$(stat -c %a "$PC_SK_DIR/secure.env")" "secure.env mode"
assert_eq 600 "$(stat -c %a "$PC_SK_DIR/admin.properties")" "admin.properties mode"

topic=$(uniq_name secure)
note "Kafka: admin creates $topic (RF 3, min.insync.replicas=2) over SASL_SSL"
sk_topics "$PC_SK_DIR/admin.properties" --create --topic "$topic" --partitions 2 \
    --replication-factor 3 --config min.insync.replicas=2 >/dev/null
defer "sk_topics '$PC_SK_DIR/admin.properties' --delete --topic '$topic' >/dev/null 2>&1"
desc=$(sk_topics "$PC_SK_DIR/admin.properties" --describe --topic "$topic")
assert_contains "$desc" "ReplicationFactor: 3" "replication factor"
assert_contains "$desc" "min.insync.replicas=2" "min.insync.replicas override"
isr=$(printf '%s\n' "$desc" | sed -n 's/.*Partition: \([0-9]*\).*Isr: \([0-9,]*\).*/\1 \2/p')
assert_eq 2 "$(printf '%s\n' "$isr" | wc -l)" "two partitions described"$'\n'"$desc"
while read -r p members; do
    assert_eq "1,2,3" "$(tr , '\n' <<<"$members" | sort -n | paste -sd,)" "ISR of partition $p"
done <<<"$isr"

note "Kafka: a wrong password is refused as an authentication failure"
run sk_topics "$(client_props admin "wrong-$TEST_ID")" --list
assert_eq 1 "$RC" "list with a wrong password"
assert_contains "$OUT$ERR" "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512" \
    "wrong password reason"

note "Kafka: user ingest (no ACLs) authenticates but may not see $topic"
run sk_topics "$(client_props ingest "$PC_SK_INGEST_PASSWORD")" --describe --topic "$topic"
assert_eq 1 "$RC" "describe without ACLs"
assert_not_contains "$OUT$ERR" "Authentication failed" "ingest's password is right"
assert_contains "$ERR" "does not exist" "the authorizer hides the topic from ingest"

note "Kafka: mutual TLS listener and CA checks (Python TLS probes)"
IFS=, read -r -a mtls <<<"$PC_SK_MTLS_BOOTSTRAP"
assert_eq 3 "${#mtls[@]}" "three SSL listeners in PC_SK_MTLS_BOOTSTRAP"
for a in "${mtls[@]}"; do
    assert_eq 3 "$(tls_metadata "$a" "$PC_SK_CA" "$PC_SK_CLIENT_CERT" "$PC_SK_CLIENT_KEY")" \
        "mTLS metadata from $a lists 3 brokers"
done
run tls_metadata "${mtls[0]}" "$PC_SK_CA"
assert_eq 1 "$RC" "mTLS listener without a client certificate"
run tls_metadata "${mtls[0]}" "$PC_SK_OTHER_CA" "$PC_SK_CLIENT_CERT" "$PC_SK_CLIENT_KEY"
assert_eq 1 "$RC" "mTLS listener checked against an unrelated CA"
assert_contains "$OUT" "CERTIFICATE_VERIFY_FAILED" "unrelated CA: verification error"
run tls_metadata "$PC_SK_BROKER1" "$PC_SK_OTHER_CA"
assert_eq 1 "$RC" "SASL_SSL listener checked against an unrelated CA"
assert_contains "$OUT" "CERTIFICATE_VERIFY_FAILED" "unrelated CA (SASL_SSL): verification error"

note "PostgreSQL: pipectl over verify-full TLS"
export PGPASSWORD=$PC_SK_PG_PASSWORD PGCONNECT_TIMEOUT=10
assert_eq on "$(psql_q 'SHOW ssl' "$PC_SK_PG_DSN")" "SHOW ssl"
assert_eq "t|t|pipeline" "$(psql_q "SELECT s.ssl, r.rolsuper, current_database() FROM pg_stat_ssl s, pg_roles r
    WHERE s.pid = pg_backend_pid() AND r.rolname = current_user" "$PC_SK_PG_DSN")" \
    "TLS session, superuser, database"
run psql_q 'SELECT 1' "${PC_SK_PG_DSN/sslrootcert=$PC_SK_CA/sslrootcert=$PC_SK_OTHER_CA}"
assert_eq 2 "$RC" "psql with an unrelated CA"
assert_contains "$ERR" "certificate verify failed" "unrelated CA: verification error"
run psql_q 'SELECT 1' "${PC_SK_PG_DSN/sslmode=verify-full/sslmode=disable}"
assert_eq 2 "$RC" "psql without TLS"
assert_contains "$ERR" "no encryption" "pg_hba refuses plain TCP"
PGPASSWORD="wrong-$TEST_ID" run psql_q 'SELECT 1' "$PC_SK_PG_DSN"
assert_eq 2 "$RC" "psql with a wrong password"
assert_contains "$ERR" "password authentication failed" "wrong password reason"
