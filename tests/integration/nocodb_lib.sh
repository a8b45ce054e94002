# nocodb_lib.sh: helpers for tests that need the real NocoDB. Source it AFTER lib.sh, in a test
# script that carries the pragma `# pc-test: nocodb` (CTest then starts NocoDB once per run with
# the `nocodb` fixture, scripts/nocodb.sh, and passes PC_NOCODB_DIR).
# By hand: scripts/stack.sh start /tmp/s && PC_STACK_DIR=/tmp/s scripts/nocodb.sh start /tmp/n &&
#          PC_STACK_DIR=/tmp/s PC_NOCODB_DIR=/tmp/n bash tests/integration/test_x.sh
#
# Exports (from $PC_NOCODB_DIR/nocodb.env): PC_NOCODB_URL, PC_NOCODB_EMAIL, PC_NOCODB_PASSWORD
# (NocoDB's super user), PC_NOCODB_TOKEN (an API token of that user), PC_NOCODB_MODULES (the
# node_modules folder with playwright-core), PC_NOCODB_META_DB.
# Functions (all bounded by timeouts; the *_curl ones print the body and fail the call on HTTP >= 400):
#   nc_curl METHOD PATH [JSON]        request with the API token (xc-token)
#   nc_jwt_curl METHOD PATH [JSON]    request as the signed-in super user (xc-auth): for the
#                                     endpoints that refuse API tokens (meta-diff)
#   nc_base_ids TITLE                 ids of the bases with this exact title, one a line
#   nc_delete_base_later ID           delete the base when the test ends (defer)
#   nc_sources BASE_ID                `id alias` of each source but NocoDB's own, one a line
#   nc_tables BASE_ID SOURCE_ID       table_name of each table NocoDB sees, sorted, one a line
#   nc_table_id BASE_ID SOURCE_ID NAME
#   nc_columns TABLE_ID               column_name of each column, in order, one a line
#   nc_count TABLE_ID                 row count through NocoDB's data API (pageInfo.totalRows)
#   nc_rows TABLE_ID [LIMIT]          the records JSON through NocoDB's data API
#   nc_pg_reader DB SCHEMA ROLE PASS  a login role (dropped at exit) with CONNECT on DB, USAGE
#                                     and SELECT (also on future tables) on SCHEMA; not superuser
#   nc_wait_job BASE_ID JOB_ID [SECS] wait for a NocoDB job; fails with NocoDB's reason
#   nc_new_base TITLE                 create a base (deleted when the test ends); prints its id
#   nc_add_pg_source BASE_ID ALIAS DB SCHEMA ROLE PASS
#                                     add a source on the stack's Postgres the way pkg/nocodb does
#                                     (a connection, then the source with database + schema);
#                                     waits for NocoDB's import; prints the source id
# shellcheck shell=bash

: "${PC_NOCODB_DIR:?PC_NOCODB_DIR is not set: add the pragma '# pc-test: nocodb' to the test}"
[[ -f "$PC_NOCODB_DIR/nocodb.env" ]] ||
    fail "no NocoDB in $PC_NOCODB_DIR (integration.nocodb_start failed?)"
# shellcheck disable=SC1091
source "$PC_NOCODB_DIR/nocodb.env"

_nc_req() { # AUTH_HEADER METHOD PATH [JSON]
    local out code args=(-sS --max-time 60 -X "$2" -H "$1" -H 'Accept: application/json'
        -w '\n%{http_code}')
    if [[ -n "${4:-}" ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$4"); fi
    out=$(curl "${args[@]}" "$PC_NOCODB_URL$3") || { echo "nc: $2 $3: curl failed" >&2; return 1; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if ((code >= 400)); then
        echo "nc: $2 $3: HTTP $code: $out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

nc_curl() { _nc_req "xc-token: $PC_NOCODB_TOKEN" "$@"; }

nc_jwt_curl() {
    local jwt_file="$TEST_TMP/.nc_jwt" jwt
    if [[ ! -s "$jwt_file" ]]; then
        jwt=$(_nc_req "X-Pc: signin" POST /api/v1/auth/user/signin \
            "$(jq -nc --arg e "$PC_NOCODB_EMAIL" --arg p "$PC_NOCODB_PASSWORD" \
                '{email:$e,password:$p}')" | jq -r '.token // empty') || return 1
        [[ -n "$jwt" ]] || { echo "nc: sign-in gave no token" >&2; return 1; }
        (umask 077 && printf '%s' "$jwt" >"$jwt_file")
    fi
    _nc_req "xc-auth: $(cat "$jwt_file")" "$@"
}

nc_base_ids() {
    nc_curl GET '/api/v2/meta/bases?limit=1000' | jq -r --arg t "$1" '.list[] | select(.title == $t) | .id'
}

nc_delete_base_later() {
    defer "nc_curl DELETE /api/v2/meta/bases/$1 >/dev/null 2>&1"
}

nc_sources() {
    nc_curl GET "/api/v2/meta/bases/$1/sources" |
        jq -r '.list[] | select((.is_meta != true) and (.is_local != true)) | "\(.id) \(.alias)"'
}

nc_tables() {
    nc_curl GET "/api/v2/meta/bases/$1/$2/tables" | jq -r '.list[].table_name' | sort
}

nc_table_id() {
    nc_curl GET "/api/v2/meta/bases/$1/$2/tables" |
        jq -r --arg n "$3" '.list[] | select(.table_name == $n) | .id' | head -n1
}

nc_columns() {
    nc_curl GET "/api/v2/meta/tables/$1" | jq -r '.columns[] | select(.column_name != null) | .column_name'
}

nc_count() {
    nc_curl GET "/api/v2/tables/$1/records?limit=1" | jq -r '.pageInfo.totalRows'
}

nc_rows() {
    nc_curl GET "/api/v2/tables/$1/records?limit=${2:-25}"
}

nc_pg_reader() { # DB SCHEMA ROLE PASS
    local db=$1 schema=$2 role=$3 pass=$4 admin
    admin="host=$PC_PG_HOST port=$PC_PG_PORT dbname=$db user=postgres"
    psql_q "DROP ROLE IF EXISTS \"$role\"; CREATE ROLE \"$role\" LOGIN PASSWORD '$pass' NOSUPERUSER" \
        "${PC_PG_DSN/dbname=pipeline/dbname=postgres}" >/dev/null
    psql_q "GRANT CONNECT ON DATABASE \"$db\" TO \"$role\";
            GRANT USAGE ON SCHEMA \"$schema\" TO \"$role\";
            GRANT SELECT ON ALL TABLES IN SCHEMA \"$schema\" TO \"$role\";
            ALTER DEFAULT PRIVILEGES IN SCHEMA \"$schema\" GRANT SELECT ON TABLES TO \"$role\";" \
        "$admin" >/dev/null
    defer "_nc_drop_role '$role' '$db'"
}

_nc_drop_role() { # ROLE DB: revoke what it holds (in DB and on shared objects), then drop it
    psql_q "DROP OWNED BY \"$1\"" "host=$PC_PG_HOST port=$PC_PG_PORT dbname=$2 user=postgres" \
        >/dev/null 2>&1
    psql_q "DROP ROLE IF EXISTS \"$1\"" "${PC_PG_DSN/dbname=pipeline/dbname=postgres}" >/dev/null 2>&1
}

nc_wait_job() { # BASE_ID JOB_ID [SECS]
    local base=$1 job=$2 secs=${3:-60} st deadline
    deadline=$(($(date +%s) + secs))
    while :; do
        st=$(nc_curl POST "/api/v2/jobs/$base" '{}' | jq -r --arg j "$job" '.[] | select(.id == $j) | .status')
        case "$st" in
        completed) return 0 ;;
        failed)
            echo "nc: job $job failed: $(nc_curl POST /jobs/listen "{\"_mid\":0,\"data\":{\"id\":\"$job\"}}" |
                jq -r '[.[].data.data.error.message // empty] | last')" >&2
            return 1
            ;;
        esac
        (($(date +%s) < deadline)) || { echo "nc: job $job not done after ${secs}s (status '$st')" >&2; return 1; }
        sleep 0.3
    done
}

nc_new_base() {
    local id
    id=$(nc_curl POST /api/v2/meta/bases "$(jq -nc --arg t "$1" '{title:$t}')" | jq -r '.id // empty')
    [[ -n "$id" ]] || { echo "nc: creating base $1 failed" >&2; return 1; }
    nc_delete_base_later "$id"
    echo "$id"
}

nc_add_pg_source() { # BASE_ID ALIAS DB SCHEMA ROLE PASS
    local base=$1 alias=$2 db=$3 schema=$4 role=$5 pass=$6 integ job
    integ=$(nc_curl POST /api/v2/meta/integrations "$(jq -nc --arg a "$alias" --arg db "$db" \
        --arg s "$schema" --arg u "$role" --arg p "$pass" --argjson port "$PC_PG_PORT" \
        '{title:$a, type:"database", sub_type:"pg", config:{client:"pg",
          connection:{host:"127.0.0.1", port:$port, user:$u, password:$p, database:$db},
          searchPath:[$s]}}')" | jq -r '.id // empty') || return 1
    job=$(nc_curl POST "/api/v2/meta/bases/$base/sources" "$(jq -nc --arg a "$alias" \
        --arg db "$db" --arg s "$schema" --arg i "$integ" \
        '{alias:$a, type:"pg", fk_integration_id:$i, inflection_column:"none",
          inflection_table:"none", config:{client:"pg", connection:{database:$db},
          searchPath:[$s]}}')" | jq -r '.id // empty') || return 1
    nc_wait_job "$base" "$job" 60 || return 1
    nc_curl GET "/api/v2/meta/bases/$base/sources" |
        jq -r --arg i "$integ" '.list[] | select(.fk_integration_id == $i) | .id'
}
