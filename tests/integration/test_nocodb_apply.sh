#!/usr/bin/env bash
# test_nocodb_apply.sh: plan/apply registers the pipeline's Postgres in a real NocoDB.
#  1. apply from empty: the role (not a superuser), the base and one source exist; NocoDB lists
#     the tables with their columns
#  2. apply again (signed in with e-mail/password this time): no changes, no duplicate base or source
#  3. a table added to the manifest appears in NocoDB without a manual sync
#  4. rows inserted in Postgres are readable through NocoDB's data API
#  5. wrong credentials and NocoDB down: a clear error, nothing changed (not even Kafka)
#  6. Postgres unreachable from NocoDB (nocodb.pg_port at a closed port): the Kafka and Postgres
#     actions are reported applied, NocoDB's not; fixing the port converges
#  7. the role's password and the API token are in no output, plan file or snapshot
# pc-test: nocodb
# pc-test: timeout=300
source "$PC_SRC/tests/integration/lib.sh"
source "$PC_SRC/tests/integration/nocodb_lib.sh"

NAME=$(uniq_name ncp)
DB=$(uniq_name ncdb)
ROLE=$(uniq_name ncrole)
TP=$(uniq_name nct)
BASE="pipectl test $TEST_ID"
W="$TEST_TMP"
M="$W/pipeline.yaml"
LOG="$W/all-output.log"

export PG_DSN KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"
PG_DSN=$(new_db "$DB")
export NOCODB_URL="$PC_NOCODB_URL" NOCODB_TOKEN="$PC_NOCODB_TOKEN"
export NOCODB_DB_PASSWORD="Rp-$TEST_ID-secret!" # the role's password: must never be shown
NC_PG_PORT="" # nocodb.pg_port, when set
EXTRA_TABLE=0
EXTRA_TOPIC=0
# the role is pipectl's to create; drop what it holds before the database goes
defer "_nc_drop_role '$ROLE' '$DB'"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

write_manifest() { # [CREDENTIALS YAML]
    local creds=${1:-"token: \${NOCODB_TOKEN}"}
    {
        cat <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: $NAME}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: $TP.users, partitions: 1}
YAML
        if ((EXTRA_TOPIC)); then echo "    - {name: $TP.extra, partitions: 1}"; fi
        cat <<YAML
postgres:
  dsn: "\${PG_DSN}"
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: id, type: uuid, primary_key: true}
            - {name: email, type: text, nullable: false}
            - {name: registered_at, type: timestamptz}
YAML
        if ((EXTRA_TABLE)); then
            cat <<YAML
        - name: events
          columns:
            - {name: id, type: bigint, primary_key: true}
            - {name: kind, type: text}
YAML
        fi
        cat <<YAML
nocodb:
  url: \${NOCODB_URL}
  $creds
  base: $BASE
  schemas: [raw]
  role: $ROLE
  role_password: \${NOCODB_DB_PASSWORD}
  read_only: true
YAML
        if [[ -n "$NC_PG_PORT" ]]; then echo "  pg_port: $NC_PG_PORT"; fi
        echo "git: {repo: ./state, branch: main}"
    } >"$M"
}

run_p() { # pipectl -f $M ARGS...: sets RC, OUT, ERR; everything is also kept in $LOG
    set +e
    pipectl -f "$M" "$@" >"$W/out" 2>"$W/err"
    RC=$?
    set -e
    OUT=$(cat "$W/out")
    ERR=$(cat "$W/err")
    cat "$W/out" "$W/err" >>"$LOG"
}
expect_ok() {
    [[ $RC -eq 0 ]] || fail "$1: exit $RC"$'\n'"stdout:"$'\n'"$OUT"$'\n'"stderr:"$'\n'"$ERR"
}

base_ids() { nc_base_ids "$BASE"; }
the_base() {
    local ids
    ids=$(base_ids)
    [[ $(grep -c . <<<"$ids") -eq 1 ]] || fail "expected exactly one base '$BASE', got: [$ids]"
    echo "$ids"
}
source_id() { # BASE_ID ALIAS -> id (empty when none); fails on duplicates
    local ids
    ids=$(nc_sources "$1" | awk -v a="$2" '$2 == a {print $1}')
    [[ $(grep -c . <<<"$ids") -le 1 ]] || fail "duplicate NocoDB sources named $2: [$ids]"
    echo "$ids"
}

# --- 1. apply from empty ------------------------------------------------------------------------
note "apply from empty"
write_manifest
run_p plan -out "$W/first.plan"
expect_ok "plan from empty"
assert_contains "$OUT" "+ postgres role $ROLE" "plan creates the role"
assert_contains "$OUT" "password: (from manifest, redacted)" "plan shows the password redacted"
assert_contains "$OUT" "+ nocodb base $BASE" "plan creates the base"
assert_contains "$OUT" "+ nocodb source ${NAME}_raw" "plan creates the source"
run_p apply "$W/first.plan"
expect_ok "apply from empty"
assert_contains "$OUT" "nocodb source ${NAME}_raw: done" "apply reports the source"
BID=$(the_base)
nc_delete_base_later "$BID"
SID=$(source_id "$BID" "${NAME}_raw")
[[ -n "$SID" ]] || fail "no NocoDB source ${NAME}_raw in base $BID: $(nc_sources "$BID")"
assert_eq "users" "$(nc_tables "$BID" "$SID")" "NocoDB lists the pipeline's table"
USERS_TID=$(nc_table_id "$BID" "$SID" users)
assert_eq "id email registered_at" "$(nc_columns "$USERS_TID" | tr '\n' ' ' | sed 's/ $//')" \
    "NocoDB lists the table's columns"
assert_eq "f|t" "$(psql_q "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = '$ROLE'")" \
    "the role exists, can log in and is not a superuser"
assert_eq "t|f" "$(psql_q "SELECT has_table_privilege('$ROLE', 'raw.users', 'SELECT'),
    has_table_privilege('$ROLE', 'raw.users', 'INSERT')" "$PG_DSN")" "read_only: SELECT only"

# --- 2. apply again: nothing to do, no duplicates -----------------------------------------------
note "plan and apply again (e-mail/password sign-in)"
export NC_EMAIL="$PC_NOCODB_EMAIL" NC_PASSWORD="$PC_NOCODB_PASSWORD"
write_manifest "email: \${NC_EMAIL}
  password: \${NC_PASSWORD}"
run_p plan --detailed-exitcode
[[ $RC -eq 0 ]] || fail "second plan: exit $RC (2 = changes)"$'\n'"$OUT"$'\n'"$ERR"
assert_contains "$OUT" "No changes." "second plan has no changes"
run_p apply
expect_ok "second apply"
assert_contains "$OUT" "Apply complete: 0 action(s) performed" "second apply performs nothing"
assert_eq "$BID" "$(the_base)" "still one base, the same"
assert_eq "$SID" "$(source_id "$BID" "${NAME}_raw")" "still one source, the same"
assert_eq 1 "$(nc_sources "$BID" | grep -c .)" "no other source in the base"

# --- 3. a new table appears in NocoDB without a manual sync --------------------------------------
note "add a table: NocoDB shows it after apply"
EXTRA_TABLE=1
write_manifest
run_p plan
expect_ok "plan with a new table (API token)"
assert_contains "$OUT" "+ postgres table raw.events" "plan creates the table"
assert_contains "$OUT" "! nocodb meta sync of source ${NAME}_raw" \
    "with only an API token the sync is refused (NocoDB refuses tokens for meta sync)"
assert_contains "$OUT" "nocodb.email and nocodb.password" "the refusal says what to do"
write_manifest "email: \${NC_EMAIL}
  password: \${NC_PASSWORD}"
run_p plan
expect_ok "plan with a new table (signed in)"
assert_contains "$OUT" "~ nocodb meta sync of source ${NAME}_raw" "plan syncs NocoDB's metadata"
run_p apply
expect_ok "apply with a new table"
assert_eq "events users" "$(nc_tables "$BID" "$SID" | tr '\n' ' ' | sed 's/ $//')" \
    "NocoDB lists the new table"
assert_eq "id kind" "$(nc_columns "$(nc_table_id "$BID" "$SID" events)" | tr '\n' ' ' | sed 's/ $//')" \
    "NocoDB lists the new table's columns"
run_p plan --detailed-exitcode
[[ $RC -eq 0 ]] || fail "plan after the sync: exit $RC"$'\n'"$OUT"
assert_eq "$SID" "$(source_id "$BID" "${NAME}_raw")" "the sync kept the source"

note "status sees the base, the source and its tables"
run_p -o json status
expect_ok "status after apply"
assert_eq "true|true|true|present|2" "$(jq -r '[.healthy, .nocodb.reachable, .nocodb.base.found,
    .nocodb.sources[0].state, .nocodb.sources[0].tables] | map(tostring) | join("|")' <<<"$OUT")" \
    "status -o json: NocoDB reachable, base found, source present with 2 tables"
run_p status
assert_contains "$OUT" "nocodb    $PC_NOCODB_URL" "status text names NocoDB"

# --- 4. rows through NocoDB's data API ----------------------------------------------------------
note "rows written in Postgres are readable through NocoDB"
psql_q "INSERT INTO raw.users (id, email, registered_at) VALUES
    ('6f1c7c1e-0000-4000-8000-000000000001', 'ada@example.com', now()),
    ('6f1c7c1e-0000-4000-8000-000000000002', 'grace@example.com', now())" "$PG_DSN" >/dev/null
assert_eq 2 "$(nc_count "$USERS_TID")" "NocoDB counts the rows"
ROWS=$(nc_rows "$USERS_TID")
assert_contains "$ROWS" "grace@example.com" "NocoDB returns the rows' values"

# --- 5. wrong credentials, NocoDB down: clear error, nothing changed ----------------------------
EXTRA_TOPIC=1 # a change Kafka would get if apply went ahead
note "wrong API token"
write_manifest
NOCODB_TOKEN="not-a-token-$TEST_ID" run_p apply
[[ $RC -eq 1 ]] || fail "apply with a wrong token: exit $RC"$'\n'"$OUT"$'\n'"$ERR"
assert_contains "$ERR" "$PC_NOCODB_URL" "the error names NocoDB's URL"
assert_contains "$ERR" "token" "the error says the token was refused"
assert_contains "$ERR" "Nothing was changed." "apply says nothing changed"
TOPICS=$(kafka_topics --list) || fail "listing topics"
grep -qxF "$TP.extra" <<<"$TOPICS" && fail "a topic was created although NocoDB refused the credentials"
note "NocoDB down (closed port)"
DOWN="http://127.0.0.1:$(free_port)"
NOCODB_URL="$DOWN" run_p apply
[[ $RC -eq 1 ]] || fail "apply with NocoDB down: exit $RC"$'\n'"$OUT"$'\n'"$ERR"
assert_contains "$ERR" "$DOWN" "the error names the URL that did not answer"
assert_contains "$ERR" "Nothing was changed." "apply says nothing changed"
TOPICS=$(kafka_topics --list) || fail "listing topics"
grep -qxF "$TP.extra" <<<"$TOPICS" && fail "a topic was created although NocoDB was down"
NOCODB_URL="$DOWN" run_p -o json status
[[ $RC -eq 1 ]] || fail "status with NocoDB down: exit $RC"$'\n'"$OUT"$'\n'"$ERR"
assert_eq "false|false|true|true" "$(jq -r '[.healthy, .nocodb.reachable, .kafka.reachable,
    .postgres.reachable] | map(tostring) | join("|")' <<<"$OUT")" \
    "status with NocoDB down: unhealthy, NocoDB unreachable, Kafka and Postgres still reachable"

# --- 6. Postgres unreachable from NocoDB --------------------------------------------------------
note "Postgres unreachable from NocoDB: partial apply reported"
EXTRA_TOPIC=1
NC_PG_PORT=$(free_port)
write_manifest
run_p apply
[[ $RC -eq 1 ]] || fail "apply with a closed pg_port: exit $RC"$'\n'"$OUT"$'\n'"$ERR"
assert_contains "$ERR" "${NAME}_raw" "the error names the source"
APPLIED=$(sed -n '/^Applied (/,/^Not applied:/p' <<<"$ERR")
NOT_APPLIED=$(sed -n '/^Not applied:/,$p' <<<"$ERR")
assert_contains "$APPLIED" "+ kafka topic $TP.extra" "the Kafka action is reported applied"
assert_contains "$NOT_APPLIED" "~ nocodb source ${NAME}_raw (failed)" "NocoDB's action is reported not applied"
topic_exists "$TP.extra" || fail "the Kafka topic reported applied does not exist"
NC_PG_PORT=""
write_manifest
run_p apply
expect_ok "apply with the port fixed"
run_p plan --detailed-exitcode
[[ $RC -eq 0 ]] || fail "plan after repair: exit $RC"$'\n'"$OUT"
assert_eq 1 "$(nc_sources "$BID" | grep -c .)" "still one source after the failed update"
assert_eq 2 "$(nc_count "$(nc_table_id "$BID" "$(source_id "$BID" "${NAME}_raw")" users)")" \
    "NocoDB reads the rows again through the repaired source"

# --- 7. secrets ----------------------------------------------------------------------------------
note "no secret in outputs, plan files or snapshots"
run_p plan -o json -out "$W/last.plan"
for f in "$LOG" "$W/first.plan" "$W/last.plan"; do
    [[ -s "$f" ]] || fail "$f is missing or empty: the secret checks below would prove nothing"
    grep -qF -- "$NOCODB_DB_PASSWORD" "$f" && fail "the role's password is in $f"
    grep -qF -- "$PC_NOCODB_TOKEN" "$f" && fail "the NocoDB token is in $f"
    grep -qF -- "$PC_NOCODB_PASSWORD" "$f" && fail "the NocoDB password is in $f"
done
[[ -d "$W/state/.git" ]] || fail "no snapshot repository"
SNAP=$(git -C "$W/state" log -p --all)
assert_contains "$SNAP" "$ROLE" "the snapshot records the role"
assert_not_contains "$SNAP" "$NOCODB_DB_PASSWORD" "the role's password is in no snapshot"
assert_not_contains "$SNAP" "$PC_NOCODB_TOKEN" "the token is in no snapshot"
