#!/usr/bin/env bash
# test_secure_errors.sh: the connection errors users meet against a secured cluster, each one
# line naming the broker, the principal and what to do (wrong password, unknown CA, hostname
# mismatch, TLS to a plaintext port and the reverse, SASL where there is none and the reverse,
# a missing client certificate, a mechanism the listener does not enable), recognised at once
# rather than waited out; validate's offline error for an unreadable CA file; and no SASL
# password, key password or database password in anything pipectl writes: plan (text, JSON,
# plan file), apply, status, validate, snapshot commits, worker logs and the error messages.
# Checks of a message's wording that fail are collected and reported together at the very end,
# after every other check has passed.
# pc-test: secure
# pc-test: timeout=300
source "$(dirname "$0")/lib.sh"

: "${PC_SECURE_DIR:?PC_SECURE_DIR is not set: run through ctest (fixture secure)}"
[[ -f "$PC_SECURE_DIR/secure.env" ]] ||
    fail "no secure cluster in $PC_SECURE_DIR (integration.secure_start failed?)"
# shellcheck disable=SC1091
source "$PC_SECURE_DIR/secure.env"
[[ -n "${PC_SK_MISMATCH_BOOTSTRAP:-}" ]] ||
    fail "secure.env has no PC_SK_MISMATCH_BOOTSTRAP (scripts/secure_stack.sh too old?)"

W=$TEST_TMP
export TOPIC BOOT
TOPIC=$(uniq_name errs)

# The manifests name every secret as ${VAR}: the values only ever live in the environment.
SASL_ADMIN='sasl: {mechanism: SCRAM-SHA-512, username: admin, password: "${PC_SK_ADMIN_PASSWORD}"}'
SASL_ADMIN_256='sasl: {mechanism: SCRAM-SHA-256, username: admin, password: "${PC_SK_ADMIN_PASSWORD}"}'
TLS_CA='tls: {ca_file: "${PC_SK_CA}", verify_hostname: true}'
TLS_NOVERIFY='tls: {ca_file: "${PC_SK_CA}", verify_hostname: false}'
TLS_OTHER_CA='tls: {ca_file: "${PC_SK_OTHER_CA}"}'
TLS_MTLS='tls: {ca_file: "${PC_SK_CA}", cert_file: "${PC_SK_CLIENT_CERT}", key_file: "${PC_SK_CLIENT_KEY}"}'

# kafka_manifest FILE BOOTSTRAP PROTOCOL [RF] [SECURITY-LINE...]: a Kafka-only manifest whose
# bootstrap is $BOOT (exported here), declaring topic $TOPIC with replication factor RF (3).
kafka_manifest() {
    local f=$1 proto=$3 rf=${4:-3} line
    BOOT=$2
    shift 4 || shift $#
    {
        cat <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: errs}
kafka:
  bootstrap: ${BOOT}
  security:
YAML
        echo "    protocol: $proto"
        for line in "$@"; do echo "    $line"; done
        echo "  topics: [{name: \"\${TOPIC}\", partitions: 1, replication_factor: $rf}]"
    } >"$f"
}

# conn_error CASE BOOTSTRAP PRINCIPAL PHRASE: the last `run` was a plan that failed at once on a
# recognised connection error: exit 1, one line naming the bootstrap, the principal and what to
# do, then "Nothing was changed." and nothing else; not a time-out.
conn_error() {
    local what=$1 boot=$2 who=$3 phrase=$4 first
    [[ $RC -eq 1 ]] || fail "$what: plan exit $RC, expected 1"$'\n'"stdout: $OUT"$'\n'"stderr: $ERR"
    assert_eq "" "$OUT" "$what: nothing on stdout"
    assert_eq 2 "$(printf '%s\n' "$ERR" | wc -l)" "$what: stderr is one error line and the summary"$'\n'"$ERR"
    first=$(printf '%s\n' "$ERR" | head -n1)
    assert_eq "Nothing was changed." "$(printf '%s\n' "$ERR" | tail -n1)" "$what: the summary line"
    assert_contains "$first" "pipectl: plan: Kafka at $boot" "$what: names the broker address"
    assert_contains "$first" "as $who " "$what: names the principal"
    assert_contains "$first" "$phrase" "$what: says what is wrong and what to do"
    assert_not_contains "$first" "did not answer" "$what: recognised, not waited out"
}

# plan_fails CASE MANIFEST: runs a plan that is expected to fail; generous --timeout so a reason
# not recognised would show as "did not answer" rather than pass by luck.
plan_fails() { run pipectl -f "$2" --timeout 60 plan; }

note "wrong password"
kafka_manifest "$W/wrong_pw.yaml" "$PC_SK_BOOTSTRAP" sasl_ssl 3 "$SASL_ADMIN" "$TLS_CA"
PC_SK_ADMIN_PASSWORD="wrong-$TEST_ID" plan_fails "wrong password" "$W/wrong_pw.yaml"
conn_error "wrong password" "$PC_SK_BOOTSTRAP" User:admin \
    "the broker rejected the credentials of User:admin (mechanism SCRAM-SHA-512): check kafka.security.sasl.username and password"

note "unknown CA"
kafka_manifest "$W/other_ca.yaml" "$PC_SK_BOOTSTRAP" sasl_ssl 3 "$SASL_ADMIN" "$TLS_OTHER_CA"
plan_fails "unknown CA" "$W/other_ca.yaml"
conn_error "unknown CA" "$PC_SK_BOOTSTRAP" User:admin \
    "the broker's certificate is not signed by a CA pipectl trusts ($PC_SK_OTHER_CA): set kafka.security.tls.ca_file to the CA that signed the broker's certificate"

note "plaintext to the SASL_SSL port"
kafka_manifest "$W/plain_to_tls.yaml" "$PC_SK_BOOTSTRAP" plaintext
plan_fails "plaintext to TLS" "$W/plain_to_tls.yaml"
conn_error "plaintext to TLS" "$PC_SK_BOOTSTRAP" "no principal" \
    "the broker's listener speaks TLS but kafka.security.protocol is plaintext: set it to ssl or sasl_ssl"

note "ssl to the plaintext broker of the stack"
kafka_manifest "$W/tls_to_plain.yaml" "$PC_KAFKA_BOOTSTRAP" ssl 1 "$TLS_CA"
plan_fails "TLS to plaintext" "$W/tls_to_plain.yaml"
conn_error "TLS to plaintext" "$PC_KAFKA_BOOTSTRAP" "no principal" \
    "the broker's listener does not speak TLS but kafka.security.protocol is ssl: set it to plaintext or sasl_plaintext, or use the broker's TLS port"

note "sasl_plaintext to the plaintext broker"
kafka_manifest "$W/sasl_to_plain.yaml" "$PC_KAFKA_BOOTSTRAP" sasl_plaintext 1 "$SASL_ADMIN"
plan_fails "SASL to a listener without SASL" "$W/sasl_to_plain.yaml"
conn_error "SASL to a listener without SASL" "$PC_KAFKA_BOOTSTRAP" User:admin \
    "the listener does not do SASL but kafka.security.protocol is sasl_plaintext: use plaintext or ssl on this port"

note "ssl without SASL to the SASL_SSL port"
kafka_manifest "$W/no_sasl.yaml" "$PC_SK_BOOTSTRAP" ssl 3 "$TLS_CA"
plan_fails "no SASL to a SASL listener" "$W/no_sasl.yaml"
conn_error "no SASL to a SASL listener" "$PC_SK_BOOTSTRAP" "no principal" \
    "the listener requires SASL but kafka.security.protocol is ssl: use sasl_ssl"

note "no client certificate to the mutual-TLS listener"
kafka_manifest "$W/no_cert.yaml" "$PC_SK_MTLS_BOOTSTRAP" ssl 3 "$TLS_CA"
plan_fails "no client certificate" "$W/no_cert.yaml"
conn_error "no client certificate" "$PC_SK_MTLS_BOOTSTRAP" "no principal" \
    "the listener requires a client certificate (mutual TLS) and refused the connection without one: set kafka.security.tls.cert_file and key_file"
kafka_manifest "$W/mtls.yaml" "$PC_SK_MTLS_BOOTSTRAP" ssl 3 "$TLS_MTLS"
expect_rc 0 pipectl -f "$W/mtls.yaml" --timeout 60 plan
assert_contains "$OUT" "+ kafka topic $TOPIC (partitions=1, replication_factor=3)" "mTLS plan"

note "a mechanism the listener does not enable"
kafka_manifest "$W/mech.yaml" "$PC_SK_BOOTSTRAP" sasl_ssl 3 "$SASL_ADMIN_256" "$TLS_CA"
plan_fails "SCRAM-SHA-256" "$W/mech.yaml"
conn_error "SCRAM-SHA-256" "$PC_SK_BOOTSTRAP" User:admin \
    "the listener does not enable SASL mechanism SCRAM-SHA-256: set kafka.security.sasl.mechanism"

note "host name mismatch (127.0.0.2 is not in the broker's certificate)"
# (metadata over the MISMATCH listener lists only broker 1: replication factor 1)
kafka_manifest "$W/mismatch.yaml" "$PC_SK_MISMATCH_BOOTSTRAP" sasl_ssl 1 "$SASL_ADMIN" "$TLS_CA"
plan_fails "hostname mismatch" "$W/mismatch.yaml"
MISMATCH_RC=$RC MISMATCH_OUT=$OUT MISMATCH_ERR=$ERR # asserted last (see the end)
kafka_manifest "$W/mismatch_ok.yaml" "$PC_SK_MISMATCH_BOOTSTRAP" sasl_ssl 1 "$SASL_ADMIN" "$TLS_NOVERIFY"
expect_rc 0 pipectl -f "$W/mismatch_ok.yaml" --timeout 60 plan
assert_contains "$OUT" "+ kafka topic $TOPIC (partitions=1, replication_factor=1)" \
    "verify_hostname: false accepts the certificate on 127.0.0.2"

note "validate: a CA file that does not exist"
kafka_manifest "$W/no_ca.yaml" "$PC_SK_BOOTSTRAP" sasl_ssl 3 "$SASL_ADMIN" \
    "tls: {ca_file: \"$W/no-such-ca.pem\"}"
expect_rc 1 pipectl -f "$W/no_ca.yaml" validate
assert_eq "$W/no_ca.yaml:9:20: kafka.security.tls.ca_file: cannot read '$W/no-such-ca.pem': No such file or directory" \
    "$ERR" "validate: one line naming the file, its position and the reason"

# --- no secret anywhere -----------------------------------------------------------------------

note "secrets: a pipeline with an admin, an ingest, a SASL sink and an mTLS sink with a key password"
KEY_PW="kp-$(openssl rand -hex 12)"
export KEY_PW
# an encrypted copy of the client key, so that key_password is really used to load it
openssl pkey -in "$PC_SK_CLIENT_KEY" -aes256 -passout env:KEY_PW -out "$W/client-enc.key"
grep -q "BEGIN ENCRYPTED PRIVATE KEY" "$W/client-enc.key" || fail "openssl did not encrypt the key"
DB=$(uniq_name errs)
sk_psql() { # SQL: as postgres over the secure PostgreSQL's socket (trust)
    timeout "$PC_TIMEOUT" psql -XAtq -v ON_ERROR_STOP=1 -h "$PC_SK_PG_SOCKET_DIR" -p "$PC_SK_PG_PORT" \
        -U postgres -d postgres -c "$1"
}
sk_psql "CREATE DATABASE \"$DB\" OWNER pipectl" >/dev/null
defer "sk_psql 'DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)' >/dev/null 2>&1"
export PG_DSN="${PC_SK_PG_DSN/dbname=pipeline/dbname=$DB}"
STATE=$(new_git_repo state)
export STATE KEY_FILE="$W/client-enc.key"
sk_admin() { # CLASS ARGS...: a Kafka CLI class as admin against the SASL_SSL listeners
    local class=$1
    shift
    kafka_java "$class" --bootstrap-server "$PC_SK_BOOTSTRAP" --command-config "$PC_SK_ADMIN_PROPERTIES" "$@"
}
# what apply creates: the topic, and derive_acls' bindings on it and on the sinks' groups
defer "sk_admin org.apache.kafka.tools.TopicCommand --delete --topic '$TOPIC' >/dev/null 2>&1"
defer "sk_admin kafka.admin.AclCommand --remove --force --topic '$TOPIC' \
    --group pipectl-errs-by_sasl --group pipectl-errs-by_cert >/dev/null 2>&1"
cat >"$W/secrets.yaml" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: errs}
kafka:
  bootstrap: ${PC_SK_BOOTSTRAP}
  security:
    protocol: sasl_ssl
    sasl: {mechanism: SCRAM-SHA-512, username: admin, password: "${PC_SK_ADMIN_PASSWORD}"}
    tls: {ca_file: "${PC_SK_CA}", verify_hostname: true}
  derive_acls: true
  topics: [{name: "${TOPIC}", partitions: 1, replication_factor: 3}]
postgres:
  dsn: "${PG_DSN} password=${PC_SK_PG_PASSWORD}"
  schemas:
    - name: app
      tables:
        - name: events
          columns:
            - {name: id, type: text, primary_key: true}
            - {name: body, type: jsonb}
sources:
  - name: feed
    type: randomuser
    topic: "${TOPIC}"
    security:
      sasl: {username: ingest, password: "${PC_SK_INGEST_PASSWORD}"}
sinks:
  - name: by_sasl
    topic: "${TOPIC}"
    table: app.events
    mode: upsert
    mapping: {id: login.uuid, body: name}
    security:
      sasl: {username: sink, password: "${PC_SK_SINK_PASSWORD}"}
  - name: by_cert
    topic: "${TOPIC}"
    table: app.events
    mode: upsert
    mapping: {id: login.uuid, body: name}
    security:
      principal: "User:pipectl-mtls"
      tls: {cert_file: "${PC_SK_CLIENT_CERT}", key_file: "${KEY_FILE}", key_password: "${KEY_PW}"}
git: {repo: "${STATE}"}
YAML
# wrong passwords are secrets too (a typo of the real one, or another system's)
WRONG_PW="wrong-pw-$(openssl rand -hex 8)" WRONG_KEY_PW="wrong-kp-$(openssl rand -hex 8)"
SECRETS=("$PC_SK_ADMIN_PASSWORD" "$PC_SK_INGEST_PASSWORD" "$PC_SK_SINK_PASSWORD" "$KEY_PW"
    "$PC_SK_PG_PASSWORD" "$WRONG_PW" "$WRONG_KEY_PW")
mkdir -p "$W/out"
# leg NAME CMD...: runs CMD (exit status kept, not judged here), keeping its stdout and stderr
leg() {
    local name=$1
    shift
    local rc=0
    timeout "$PC_TIMEOUT" "$@" >"$W/out/$name.out" 2>"$W/out/$name.err" || rc=$?
    echo "$rc" >"$W/out/$name.rc"
}
# secret_hits FILE...: prints "FILE: secret #i" for each secret found in a file (exit 1 if none)
secret_hits() {
    local f i found=1
    for f in "$@"; do
        for i in "${!SECRETS[@]}"; do
            if grep -qF -- "${SECRETS[i]}" "$f"; then
                echo "$f: secret #$i"
                found=0
            fi
        done
    done
    return "$found"
}

M=$W/secrets.yaml
leg validate "$PIPECTL" -f "$M" -v validate
leg validate_json "$PIPECTL" -f "$M" -v -o json validate
leg plan "$PIPECTL" -f "$M" -v plan
leg plan_json "$PIPECTL" -f "$M" -v -o json plan
leg plan_out "$PIPECTL" -f "$M" -v plan -out "$W/out/plan.file"
# the controller over mutual TLS with the encrypted key: key_password really is used (before
# apply: User:pipectl-mtls may not describe the topic's configs once it exists)
kafka_manifest "$W/mtls_key.yaml" "$PC_SK_MTLS_BOOTSTRAP" ssl 3 \
    'tls: {ca_file: "${PC_SK_CA}", cert_file: "${PC_SK_CLIENT_CERT}", key_file: "${KEY_FILE}", key_password: "${KEY_PW}"}'
leg mtls_key "$PIPECTL" -f "$W/mtls_key.yaml" -v --timeout 60 plan
KEY_PW=$WRONG_KEY_PW leg mtls_wrong_key_pw "$PIPECTL" -f "$W/mtls_key.yaml" -v --timeout 60 plan
leg apply "$PIPECTL" -f "$M" -v apply --no-snapshot
# (a status right after apply can see drift: the broker answering DescribeAcls may not have the
# ACLs apply just created yet; wait until a plan is empty)
for ((i = 0; i < 40; i++)); do
    run pipectl -f "$M" plan --detailed-exitcode
    [[ $RC -ne 0 ]] || break
    sleep 0.5
done
assert_eq 0 "$RC" "plan after apply is empty"$'\n'"$OUT"$'\n'"$ERR"
leg status "$PIPECTL" -f "$M" -v status
leg status_json "$PIPECTL" -f "$M" -v -o json status
leg snapshot "$PIPECTL" -f "$M" -v snapshot -m test
leg run env PIPECTL_LOG_FORMAT=json "$PIPECTL" -f "$M" -v run by_sasl --duration 3s
PC_SK_ADMIN_PASSWORD=$WRONG_PW leg wrong_pw "$PIPECTL" -f "$M" -v plan
sed 's/PC_SK_CA}/PC_SK_OTHER_CA}/' "$M" >"$W/secrets_other_ca.yaml"
leg wrong_ca "$PIPECTL" -f "$W/secrets_other_ca.yaml" -v plan
git -C "$STATE" log -p --all >"$W/out/git-log.txt"

for l in validate validate_json plan plan_json plan_out apply status snapshot run mtls_key; do
    assert_eq 0 "$(cat "$W/out/$l.rc")" "leg $l exits 0"$'\n'"$(cat "$W/out/$l.out" "$W/out/$l.err")"
done
assert_eq 1 "$(cat "$W/out/wrong_pw.rc")" "wrong password leg fails"
assert_contains "$(cat "$W/out/wrong_pw.err")" "rejected the credentials of User:admin" "wrong password leg"
assert_eq 1 "$(cat "$W/out/wrong_ca.rc")" "wrong CA leg fails"
assert_contains "$(cat "$W/out/wrong_ca.err")" "not signed by a CA pipectl trusts" "wrong CA leg"
assert_contains "$(cat "$W/out/mtls_key.out")" "+ kafka topic $TOPIC" "mTLS with an encrypted key"
assert_eq 1 "$(cat "$W/out/mtls_wrong_key_pw.rc")" "a wrong key password fails"
for l in wrong_pw wrong_ca; do # -v adds nothing to a connection error
    assert_eq 2 "$(wc -l <"$W/out/$l.err")" "$l with -v: one error line and the summary"$'\n'"$(cat "$W/out/$l.err")"
done
[[ -s "$W/out/plan.file" ]] || fail "plan -out wrote no plan file"
assert_contains "$(cat "$W/out/git-log.txt")" "manifest.yaml" "the snapshot commit is in the log"
assert_contains "$(cat "$W/out/git-log.txt")" '+    sasl: {mechanism: SCRAM-SHA-512, username: admin, password: "${PC_SK_ADMIN_PASSWORD}"}' \
    "the snapshot keeps the manifest's \${VAR} names"
assert_contains "$(cat "$W/out/apply.out")" "+ kafka topic $TOPIC" "apply created the topic"
assert_contains "$(cat "$W/out/apply.out")" "+ kafka acl User:pipectl-mtls allow read topic:$TOPIC" \
    "apply created the mTLS sink's ACL"
assert_contains "$(cat "$W/out/run.err")" '"worker":"by_sasl"' "the run leg logged (JSON lines)"

note "the grep would find a secret: a file holding each value is caught, the manifest is not"
for i in "${!SECRETS[@]}"; do
    printf 'x%sx\n' "${SECRETS[i]}" >"$W/canary$i"
    assert_eq "$W/canary$i: secret #$i" "$(secret_hits "$W/canary$i")" "canary $i found"
done
run secret_hits "$M" "$W/client-enc.key"
assert_eq 1 "$RC" "the manifest names the variables, not the values: $OUT"
assert_contains "$(cat "$M")" '${PC_SK_ADMIN_PASSWORD}' "the manifest names the admin password variable"
assert_contains "$(cat "$M")" '${KEY_PW}' "the manifest names the key password variable"

note "no secret in any output"
run secret_hits "$W"/out/*
assert_eq 1 "$RC" "a secret leaked into pipectl's output:"$'\n'"$OUT"
assert_eq "" "$OUT" "no secret hits"

# --- last: known defects of the messages, all reported before the test fails ---------------
defects=0

note "host name mismatch is reported as such, not as an unknown CA"
if ! (
    RC=$MISMATCH_RC OUT=$MISMATCH_OUT ERR=$MISMATCH_ERR
    conn_error "hostname mismatch" "$PC_SK_MISMATCH_BOOTSTRAP" User:admin \
        "the broker's certificate does not name the host pipectl connects to"
    assert_not_contains "$ERR" "not signed by a CA pipectl trusts" \
        "hostname mismatch: the CA is right, only the name is not"
); then defects=$((defects + 1)); fi

note "a wrong key password is reported as such, not as a bad bootstrap"
if ! (
    ERR=$(cat "$W/out/mtls_wrong_key_pw.err")
    assert_eq 2 "$(printf '%s\n' "$ERR" | wc -l)" "wrong key password: one error line and the summary"$'\n'"$ERR"
    assert_contains "$ERR" "$PC_SK_MTLS_BOOTSTRAP" "wrong key password: names the broker address"
    assert_contains "$ERR" "check kafka.security.tls.cert_file, key_file and key_password" \
        "wrong key password: says what to check"
    assert_not_contains "$ERR" "check kafka.bootstrap" "wrong key password: the bootstrap is right"
); then defects=$((defects + 1)); fi

((defects == 0)) || fail "$defects wrong connection error message(s), above"
