#!/usr/bin/env bash
# test_plan_tamper.sh: a saved plan runs only when it is exactly what the manifest and the live
# state give now. Edited plan files (an ALTER SYSTEM SET archive_command the manifest never asked
# for, a changed partition count, a changed topic config, a dropped action) are refused, name the
# file and the first difference, and leave PostgreSQL and Kafka as they were; the untouched file
# then applies. A plan saved with --allow-delete needs apply --allow-delete.
# pc-test: serial
# (serial: it asserts on server-wide settings, which other tests change)
source "$PC_SRC/tests/integration/lib.sh"

TP="tmp$$"
export TP
export PG_DSN=$(new_db "tamper_$$")
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"
W="$TEST_TMP"
M="$W/pipeline.yaml"
EVIL="touch $W/pwned"

write_manifest() { # $1 = partitions of TP.a; $2.. = extra topics (1 partition each)
    {
        cat <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: tamper}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: "\${TP}.a", partitions: $1, config: {retention.ms: "3600000"}}
YAML
        shift
        for t in "$@"; do echo "    - {name: \"\${TP}.$t\", partitions: 1, config: {retention.ms: \"7200000\"}}"; done
        cat <<YAML
postgres:
  dsn: \${PG_DSN}
  schemas:
    - name: app
      tables:
        - name: events
          columns:
            - {name: id, type: bigint, primary_key: true}
YAML
    } >"$M"
}
run() {
    set +e
    timeout 60 "$PIPECTL" -f "$M" "$@" >"$W/out" 2>"$W/err"
    RC=$?
    set -e
    OUT=$(cat "$W/out")
    ERR=$(cat "$W/err")
}
# What an edit through ALTER SYSTEM would leave: the running value, and any line in
# postgresql.auto.conf (pg_file_settings) carrying the injected command, applied or not.
archive_state() {
    echo "$(psql_q "SHOW archive_command")|$(psql_q "SELECT setting FROM pg_settings WHERE name='archive_command'")|$(psql_q "SELECT count(*) FROM pg_file_settings WHERE setting LIKE '%pwned%'")"
}
# Should the refusal ever fail, do not leave the injected command in the shared cluster.
defer 'if [[ "$(psql_q "SELECT count(*) FROM pg_file_settings WHERE setting LIKE '"'"'%pwned%'"'"'")" != 0 ]]; then psql_q "ALTER SYSTEM RESET archive_command" >/dev/null; psql_q "SELECT pg_reload_conf()" >/dev/null; fi'

write_manifest 2 b
run apply
assert_eq 0 "$RC" "initial apply: $ERR"
assert_eq 2 "$(topic_partitions "$TP.a")" "initial partitions"

# --- the reviewed plan: grow TP.a to 3, create TP.new --------------------------------------------
write_manifest 3 b new
run plan -out "$W/p.plan"
assert_eq 0 "$RC" "plan -out: $ERR"
jq -e '[.actions[].kind] | index("topic_partitions") != null and index("topic_create") != null' \
    "$W/p.plan" >/dev/null || fail "plan file lacks the partitions and create actions: $(cat "$W/p.plan")"
jq -e '[.actions[] | select(.kind == "setting")] | length == 0' "$W/p.plan" >/dev/null ||
    fail "the manifest declares no archiving; the plan must not set anything"
ARCHIVE_BEFORE=$(archive_state)

# assert_untouched WHAT: nothing of the plan (nor of the edit) reached Kafka or PostgreSQL.
assert_untouched() {
    assert_eq "$ARCHIVE_BEFORE" "$(archive_state)" "$1: archive_command (SHOW, pg_settings, postgresql.auto.conf)"
    assert_eq 2 "$(topic_partitions "$TP.a")" "$1: partitions of $TP.a"
    topic_absent "$TP.new" || fail "$1: $TP.new not created"
    assert_eq 3600000 "$(topic_config "$TP.a" retention.ms)" "$1: retention.ms of $TP.a"
    [[ ! -e "$W/pwned" ]] || fail "$1: the injected command ran"
}
# refused NAME FILE: apply FILE is refused as edited, names the file, says what to do.
refused() {
    run apply "$2"
    assert_eq 1 "$RC" "$1: apply of the edited plan"
    assert_contains "$ERR" "plan file $2 does not match the plan computed now" "$1: refusal names the file"
    assert_contains "$ERR" "Nothing was changed" "$1: refusal says nothing changed"
    assert_contains "$ERR" "Run 'pipectl plan -out $2' again and review it" "$1: refusal says what to do"
    assert_not_contains "$OUT" "done" "$1: no action reported done"
    assert_untouched "$1"
}

# an extra ALTER SYSTEM SET archive_command (summary fixed so the file itself stays valid)
jq --arg cmd "$EVIL" '.actions += [{op: "change", kind: "setting", system: "postgres",
        object: "archive_command", changes: [], reason: null, restart_required: false,
        setting: "archive_command", value: $cmd}] | .summary.change += 1' \
    "$W/p.plan" >"$W/extra.plan"
refused "extra ALTER SYSTEM" "$W/extra.plan"
assert_contains "$ERR" 'actions[2] (setting "archive_command"), change, is in the saved plan but not planned now' \
    "extra ALTER SYSTEM: the first difference is the injected action"
assert_contains "$ERR" "the saved plan has 3 action(s), the plan computed now 2" "extra ALTER SYSTEM: counts"

# the same, slipped in first, and asked for JSON: the error document apply uses for failures
jq --arg cmd "$EVIL" '.actions = [{op: "change", kind: "setting", system: "postgres",
        object: "archive_command", changes: [], reason: null, restart_required: false,
        setting: "archive_command", value: $cmd}] + .actions | .summary.change += 1' \
    "$W/p.plan" >"$W/first.plan"
run apply -o json "$W/first.plan"
assert_eq 1 "$RC" "apply -o json of the edited plan"
assert_eq "conflict" "$(jq -r '.error.code' <<<"$OUT")" "JSON error code"
assert_contains "$(jq -r '.error.message' <<<"$OUT")" "actions[0] (setting \"archive_command\"): kind is \"setting\" in the saved plan" \
    "JSON error message names the first difference"
assert_contains "$(jq -r '.error.message' <<<"$OUT")" "plan -out $W/first.plan" "JSON error message says what to do"
assert_untouched "edited plan, -o json"

# a changed value: 30 partitions instead of the reviewed 3
jq '(.actions[] | select(.kind == "topic_partitions") | .partitions) = 30' "$W/p.plan" >"$W/parts.plan"
refused "changed partitions" "$W/parts.plan"
assert_contains "$ERR" "(topic_partitions \"$TP.a\"): partitions is 30 in the saved plan, 3 now" \
    "changed partitions: the difference is named"

# a changed topic config of the topic to create
jq '(.actions[] | select(.kind == "topic_create") | .configs["retention.ms"]) = "1"' "$W/p.plan" >"$W/cfg.plan"
refused "changed config" "$W/cfg.plan"
assert_contains "$ERR" 'configs["retention.ms"] is "1" in the saved plan, "7200000" now' \
    "changed config: the difference is named"

# an action cut out (the create), summary fixed
jq 'del(.actions[] | select(.kind == "topic_create")) | .summary.create -= 1' "$W/p.plan" >"$W/cut.plan"
refused "dropped action" "$W/cut.plan"
assert_contains "$ERR" "is planned now but not in the saved plan" "dropped action: named"

# --- the untouched file applies ---------------------------------------------------------------------
run apply "$W/p.plan"
assert_eq 0 "$RC" "the reviewed plan applies: $ERR"
assert_eq 3 "$(topic_partitions "$TP.a")" "reviewed plan grew $TP.a"
assert_eq 1 "$(topic_partitions "$TP.new")" "reviewed plan created $TP.new"
assert_eq 7200000 "$(topic_config "$TP.new" retention.ms)" "reviewed config on $TP.new"
assert_eq "$ARCHIVE_BEFORE" "$(archive_state)" "archive_command never touched"

# --- deletes: a plan saved with --allow-delete needs apply --allow-delete ----------------------
write_manifest 3 new
run plan --allow-delete -out "$W/del.plan"
assert_eq 0 "$RC" "plan --allow-delete -out: $ERR"
assert_eq 1 "$(jq '.summary.delete' "$W/del.plan")" "the plan deletes $TP.b"
run apply "$W/del.plan"
assert_eq 1 "$RC" "a plan with deletes, applied without --allow-delete"
assert_contains "$ERR" "apply it with 'pipectl apply --allow-delete $W/del.plan'" "says how to apply it"
assert_eq 1 "$(topic_partitions "$TP.b")" "$TP.b kept"
run plan -out "$W/nodel.plan"
assert_eq 0 "$RC" "plan -out without --allow-delete: $ERR"
assert_eq 1 "$(jq '.summary.refused' "$W/nodel.plan")" "without --allow-delete the delete is refused"
# --allow-delete on apply adds no delete to a plan saved without it
run apply --allow-delete "$W/nodel.plan"
assert_eq 0 "$RC" "a plan without deletes under apply --allow-delete: $ERR"
assert_eq 1 "$(topic_partitions "$TP.b")" "$TP.b kept: the reviewed plan refused its delete"
run apply --allow-delete "$W/del.plan"
assert_eq 0 "$RC" "apply --allow-delete of the plan saved with it: $ERR"
topic_absent "$TP.b" || fail "$TP.b deleted"
run plan --detailed-exitcode
assert_eq 0 "$RC" "converged: $OUT"
