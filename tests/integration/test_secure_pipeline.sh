#!/usr/bin/env bash
# test_secure_pipeline.sh: the pipeline on a secured, replicated cluster (SASL_SSL with
# SCRAM-SHA-512, an authorizer that denies by default, three brokers) and a PostgreSQL reached
# with sslmode=verify-full:
#   - plan/apply/plan again "No changes" for topics (replication 3) and the workers' derived
#     ACLs, as the admin principal; the ACLs are on the cluster and in the inventory;
#   - the ingest and sink workers, each as its own principal with only its derived ACLs, stream
#     10,000 users end to end: rows == distinct keys == sum of high watermarks;
#   - an ACL removed behind pipectl's back: plan shows it, the worker stops with the principal,
#     operation, resource and the manifest line that grants it, apply restores it, the worker
#     runs again.
# pc-test: secure
# pc-test: timeout=420
source "$PC_SRC/tests/integration/lib.sh"
source "$PC_SRC/tests/integration/secure_lib.sh"

export TOPIC DLQ DB SEED=first
TOPIC=$(uniq_name sp_users) DLQ=$(uniq_name sp_dlq) DB="sp_$TEST_ID"
sk_new_db "$DB"
sk_randomuser
NAME="sp_$TEST_ID"
GROUP="pipectl-$NAME-to_pg"
M="$TEST_TMP/pipeline.yaml"
sk_manifest "$NAME" 500 0s 2000 >"$M"
q() { sk_psql "$1" "$DB"; }

note "plan over SASL_SSL as User:admin"
expect_rc 2 pipectl -f "$M" plan --detailed-exitcode
for want in "+ kafka topic $TOPIC (partitions=3, replication_factor=3)" \
    "+ kafka acl User:ingest allow write topic:$TOPIC (literal) host *" \
    "+ kafka acl User:ingest allow describe topic:$TOPIC (literal) host *" \
    "+ kafka acl User:sink allow read topic:$TOPIC (literal) host *" \
    "+ kafka acl User:sink allow read group:$GROUP (literal) host *" \
    "+ kafka acl User:sink allow write topic:$DLQ (literal) host *"; do
    assert_contains "$OUT" "$want" "plan"
done

note "apply, then plan again"
expect_rc 0 pipectl -f "$M" apply --no-snapshot
expect_rc 0 pipectl -f "$M" plan --detailed-exitcode
assert_contains "$OUT" "No changes" "plan after apply"
acls=$(sk_acls)
for want in "User:ingest, host=*, operation=WRITE, permissionType=ALLOW" \
    "User:sink, host=*, operation=READ, permissionType=ALLOW"; do
    assert_contains "$acls" "$want" "ACLs on the cluster"
done
assert_contains "$(sk_kafka kafka.admin.AclCommand --list --group "$GROUP" 2>/dev/null)" \
    "User:sink, host=*, operation=READ" "the sink's group ACL"
assert_eq 7 "$(q "SELECT count(*) FROM pipectl.inventory WHERE pipeline = '$NAME' AND kind = 'acl'")" \
    "derived ACLs recorded in the inventory"
isr=$(sk_kafka org.apache.kafka.tools.TopicCommand --describe --topic "$TOPIC" 2>/dev/null |
    grep -c 'Isr: [0-9],[0-9],[0-9]') || true
assert_eq 3 "$isr" "partitions with three in-sync replicas"

note "10,000 users end to end, each worker as its own principal"
expect_rc 0 pipectl -f "$M" run ru --max-records 10000
assert_contains "$ERR" "10000 delivered" "ingest log"
assert_eq 10000 "$(sk_watermark_sum "$TOPIC")" "sum of high watermarks"
expect_rc 0 pipectl -f "$M" run to_pg --max-records 10000
assert_eq "10000|10000" "$(q "SELECT count(*), count(DISTINCT uid) FROM raw.users")" "rows, distinct"
assert_eq 0 "$(sk_watermark_sum "$DLQ")" "dead letters"
assert_eq 10000 "$(q "SELECT sum(next_offset) FROM pipectl.sink_offsets WHERE sink = 'to_pg'")" \
    "stored offsets"

note "the sink's group ACL removed behind pipectl's back"
sk_kafka kafka.admin.AclCommand --remove --allow-principal User:sink --operation Read \
    --group "$GROUP" --force >/dev/null 2>&1 || fail "removing the group ACL failed"
# KRaft brokers apply an ACL change each on its own: wait until plan sees it (bounded)
for ((i = 0; i < 50; i++)); do
    run pipectl -f "$M" plan --detailed-exitcode
    [[ $RC -eq 2 ]] && break
    sleep 0.2
done
assert_eq 2 "$RC" "plan exit code once the ACL is gone"
assert_contains "$OUT" "+ kafka acl User:sink allow read group:$GROUP (literal) host *" "drift"
# ... and until every broker enforces the removal (the group coordinator may be any of them)
for b in "$PC_SK_BROKER1" "$PC_SK_BROKER2" "$PC_SK_BROKER3"; do
    for ((i = 0; i < 50; i++)); do
        kafka_java kafka.admin.AclCommand --bootstrap-server "$b" --command-config \
            "$PC_SK_ADMIN_PROPERTIES" --list --group "$GROUP" 2>/dev/null |
            grep -q 'operation=READ' || break
        sleep 0.2
    done
done
SEED=second expect_rc 0 pipectl -f "$M" run ru --max-records 1000
expect_rc 1 pipectl -f "$M" run to_pg --max-records 1000
line=$(printf '%s\n' "$ERR" | grep '^pipectl: run:') || fail "no error line: $ERR"
for want in "denied User:sink read on group '$GROUP'" "$PC_SK_BOOTSTRAP" \
    "kafka.derive_acls at $M:10:16 grants it: run 'pipectl apply'"; do
    assert_contains "$line" "$want" "missing-ACL error"
done
assert_eq 10000 "$(q "SELECT count(*) FROM raw.users")" "nothing loaded without the ACL"
expect_rc 0 pipectl -f "$M" apply --no-snapshot
assert_contains "$OUT" "+ kafka acl User:sink allow read group:$GROUP" "apply restores it"
expect_rc 0 pipectl -f "$M" run to_pg --max-records 1000
assert_eq "11000|11000" "$(q "SELECT count(*), count(DISTINCT uid) FROM raw.users")" \
    "rows after the ACL is back"

note "the ingest's WRITE removed: it stops and says which ACL"
sk_kafka kafka.admin.AclCommand --remove --allow-principal User:ingest --operation Write \
    --topic "$TOPIC" --force >/dev/null 2>&1 || fail "removing the write ACL failed"
before=$(sk_watermark_sum "$TOPIC")
expect_rc 1 pipectl -f "$M" run ru --max-records 500
assert_contains "$ERR" "denied User:ingest write on topic '$TOPIC'" "missing-ACL error (ingest)"
assert_eq "$before" "$(sk_watermark_sum "$TOPIC")" "nothing written without the ACL"
expect_rc 0 pipectl -f "$M" apply --no-snapshot
expect_rc 0 pipectl -f "$M" plan --detailed-exitcode
