#!/usr/bin/env bash
# test_secrets.sh: no secret byte sequence leaves pipectl. Passwords holding / @ % : blank and
# both quotes, in a postgresql:// URI DSN (percent-encoded, as a real role's password), a
# key=value DSN (libpq-quoted, in the environment and written literally in the manifest),
# nocodb.url's user:password@, nocodb.token and git.remote_url's token; and the DSNs libpq
# would misread (a raw '/' and '@' in a URI password, a bad percent-escape), an unreachable
# host and a wrong port. Every command that prints (validate, plan, plan -o json, plan -out,
# apply, apply PLANFILE, status text and JSON, run with text and JSON logs, snapshot, each with
# -v) runs, successful and failing; every stdout, stderr, plan file and `git log -p --all` of the
# snapshot repositories is grepped for every secret in every form (raw, percent-encoded,
# JSON-escaped), and the grep is shown to find each secret in a file written on purpose.
# The stack's PostgreSQL trusts 127.0.0.1, so the role's password is not checked by the server:
# enough for leaks, which is what this test is about.
# pc-test: timeout=420
source "$PC_SRC/tests/integration/lib.sh"

RU="$(dirname "$PIPECTL")/pc-randomuser"
[[ -x "$RU" ]] || fail "pc-randomuser not built next to pipectl ($RU): cmake --build the tree"
W=$TEST_TMP/w
mkdir -p "$W/out"

"$RU" --port 0 --port-file "$TEST_TMP/ru.port" >"$TEST_TMP/ru.log" 2>&1 &
RU_PID=$!
defer "kill -TERM $RU_PID 2>/dev/null; wait $RU_PID 2>/dev/null"
for _ in $(seq 100); do [[ -s "$TEST_TMP/ru.port" ]] && break; sleep 0.05; done
[[ -s "$TEST_TMP/ru.port" ]] || fail "pc-randomuser did not start: $(cat "$TEST_TMP/ru.log")"

urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
jsonenc() { python3 -c 'import sys, json; print(json.dumps(sys.argv[1])[1:-1])' "$1"; }
pqquote() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }

# --- the secrets ------------------------------------------------------------------------------
PG_PW='Pg/S3c@r%t: x"y'"'"'z9'           # the role's real password, URI-encoded in the DSN
KV_PW='Kv/S3c@r%t: a"b'"'"'c9'           # key=value DSN, libpq-quoted, from the environment
LIT_PW='Lit/S3c@r%t: e"f'"'"'g9'         # key=value DSN written literally in the manifest
NC_URL_PW='NcU/rl@Pw%: h"i9'             # nocodb.url user:password@
NC_TOKEN='Tok/3n@%: j"k'"'"'l9'          # nocodb.token
GIT_TOKEN='GitT/0k@n%: m"9'              # git.remote_url token
MIS_PW='MisQ7/ParZ8@Pw9x'                # raw '/' and '@' in a URI: libpq would misread it
BAD_PW='Bad%zzPct7Q'                     # a bad percent-escape
SECRETS=()
for s in "$PG_PW" "$KV_PW" "$LIT_PW" "$NC_URL_PW" "$NC_TOKEN" "$GIT_TOKEN" "$MIS_PW" "$BAD_PW"; do
    SECRETS+=("$s" "$(urlenc "$s")" "$(jsonenc "$s")")
    # and the part before a single quote, which quoting (libpq's \', YAML's '') splits off
    if [[ $s == *"'"* ]]; then SECRETS+=("${s%%\'*}"); fi
done
# what libpq would have read as host, port or database from the misread URI, and the tail
SECRETS+=("MisQ7" "ParZ8" "Pw9x" "zzPct7Q")

DB=$(uniq_name sec)
new_db "$DB" >/dev/null
ROLE=$(uniq_name secrole)
ADMIN_DSN="host=$PC_PG_HOST port=$PC_PG_PORT dbname=postgres user=postgres"
psql_q "CREATE ROLE \"$ROLE\" LOGIN SUPERUSER PASSWORD '${PG_PW//\'/\'\'}'" "$ADMIN_DSN"
defer "psql_q 'DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)' '$ADMIN_DSN' >/dev/null; psql_q 'DROP ROLE IF EXISTS \"$ROLE\"' '$ADMIN_DSN' >/dev/null"
HP="$PC_PG_HOST:$PC_PG_PORT"

export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP" TOPIC RU_URL GIT_REPO NC_TOKEN PG_DSN NC_URL REMOTE_URL
TOPIC=$(uniq_name sec_users)
RU_URL="http://127.0.0.1:$(cat "$TEST_TMP/ru.port")/api/"
NC_URL="http://admin:$(urlenc "$NC_URL_PW")@127.0.0.1:1/"
REMOTE_URL="https://x-access-token:$(urlenc "$GIT_TOKEN")@127.0.0.1:1/state.git"

# manifest NAME [EXTRA_YAML]: the pipeline, postgres.dsn from $PG_DSN (set per command)
manifest() {
    cat >"$W/$1.yaml" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: sec}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: "\${TOPIC}", partitions: 2, replication_factor: 1}
postgres:
  dsn: \${PG_DSN}
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - {name: uid, type: uuid, nullable: false}
            - {name: email, type: text}
sources:
  - {name: ru_in, type: randomuser, url: "\${RU_URL}", topic: "\${TOPIC}", batch: 20,
     interval: 10ms, key: login.uuid}
sinks:
  - name: users_out
    topic: "\${TOPIC}"
    table: raw.users
    mode: insert
    mapping: {uid: login.uuid, email: email}
    batch: {max_records: 50, max_wait: 100ms}
git: {repo: "\${GIT_REPO}"${3:-}}
${2:-}
YAML
}
manifest main
manifest nocodb "nocodb: {url: \"\${NC_URL}\", token: \"\${NC_TOKEN}\", base: Users}"
manifest push "" ", push: origin, remote_url: \"\${REMOTE_URL}\""

# leg NAME CMD...: runs a command (it may fail), keeping its stdout, stderr and exit code
leg() {
    local name=$1 rc=0
    shift
    timeout "$PC_TIMEOUT" "$@" >"$W/out/$name.out" 2>"$W/out/$name.err" || rc=$?
    echo "$rc" >"$W/out/$name.rc"
}
leg_rc() { cat "$W/out/$1.rc"; }
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

# every command that prints, with -v where it means something: legs PREFIX MANIFEST
legs() {
    local p=$1 m=$W/$2.yaml
    leg "${p}_validate" "$PIPECTL" -f "$m" -v validate
    leg "${p}_validate_json" "$PIPECTL" -f "$m" -v -o json validate
    leg "${p}_plan" "$PIPECTL" -f "$m" -v plan
    leg "${p}_plan_json" "$PIPECTL" -f "$m" -v -o json plan
    leg "${p}_plan_out" "$PIPECTL" -f "$m" -v plan -out "$W/out/${p}.plan"
    leg "${p}_apply" "$PIPECTL" -f "$m" -v apply
    leg "${p}_apply_json" "$PIPECTL" -f "$m" -v -o json apply
    [[ -f "$W/out/${p}.plan" ]] && leg "${p}_apply_plan" "$PIPECTL" -f "$m" -v apply "$W/out/${p}.plan"
    leg "${p}_status" "$PIPECTL" -f "$m" -v status
    leg "${p}_status_json" "$PIPECTL" -f "$m" -v -o json status
    PIPECTL_LOG_FORMAT=text leg "${p}_run_text" "$PIPECTL" -f "$m" -v run --max-records 20 --duration 15s
    PIPECTL_LOG_FORMAT=json leg "${p}_run_json" "$PIPECTL" -f "$m" -v -o json run --max-records 20 --duration 15s
    leg "${p}_snapshot" "$PIPECTL" -f "$m" -v snapshot -m "snapshot of $p"
    leg "${p}_snapshot_json" "$PIPECTL" -f "$m" -v -o json snapshot -m "again"
}

# --- a URI DSN holding the role's real password, percent-encoded ------------------------------
note "URI DSN with a percent-encoded password: every command succeeds"
PG_DSN="postgresql://$ROLE:$(urlenc "$PG_PW")@$HP/$DB"
GIT_REPO=$(new_git_repo state_uri)
legs uri main
for l in validate plan plan_out apply status run_text run_json snapshot; do
    [[ $(leg_rc "uri_$l") == 0 ]] || fail "uri $l: exit $(leg_rc "uri_$l"): $(cat "$W/out/uri_$l.err")"
done
[[ -s "$W/out/uri.plan" ]] || fail "plan -out wrote no plan file"
rows=$(psql_q "SELECT count(*) FROM raw.users" "host=$PC_PG_HOST port=$PC_PG_PORT dbname=$DB user=postgres")
(( rows > 0 )) || fail "run --max-records landed no rows"
grep -q '"level"' "$W/out/uri_run_json.err" || fail "run with PIPECTL_LOG_FORMAT=json logged no JSON"
[[ $(git -C "$GIT_REPO" rev-list --count --all) -ge 1 ]] || fail "no snapshot commit"
git -C "$GIT_REPO" log -p --all >"$W/out/git_uri.log"
grep -q 'manifest.yaml' "$W/out/git_uri.log" || fail "the snapshot log shows no manifest"

# --- a key=value DSN, libpq-quoted -------------------------------------------------------------
note "key=value DSN with a quoted password"
PG_DSN="host=$PC_PG_HOST port=$PC_PG_PORT dbname=$DB user=$ROLE password=$(pqquote "$KV_PW")"
GIT_REPO=$(new_git_repo state_kv)
legs kv main
[[ $(leg_rc kv_plan) == 0 && $(leg_rc kv_status) == 0 ]] || fail "kv plan/status failed: $(cat "$W/out/kv_plan.err")"
git -C "$GIT_REPO" log -p --all >"$W/out/git_kv.log"

# --- the password written in the manifest itself ----------------------------------------------
note "a literal password in the manifest: redacted in the snapshot"
GIT_REPO=$(new_git_repo state_lit)
lit_dsn="host=$PC_PG_HOST port=$PC_PG_PORT dbname=$DB user=$ROLE password=$(pqquote "$LIT_PW")"
python3 - "$W/main.yaml" "$W/lit.yaml" "$lit_dsn" <<'PY'
import sys
src, dst, dsn = sys.argv[1:4]
text = open(src).read().replace("  dsn: ${PG_DSN}", "  dsn: '" + dsn.replace("'", "''") + "'")
open(dst, "w").write(text)
PY
# the grep below must see the literal manifest as holding the secret, or the leg proves nothing
secret_hits "$W/lit.yaml" >/dev/null || fail "lit.yaml does not hold the literal password"
leg lit_snapshot "$PIPECTL" -f "$W/lit.yaml" -v snapshot
leg lit_plan "$PIPECTL" -f "$W/lit.yaml" -v -o json plan
[[ $(leg_rc lit_snapshot) == 0 ]] || fail "snapshot of lit.yaml: $(cat "$W/out/lit_snapshot.err")"
git -C "$GIT_REPO" log -p --all >"$W/out/git_lit.log"
grep -q 'password=' "$W/out/git_lit.log" || fail "the literal DSN is not in the snapshot at all"

# --- DSNs libpq would misread or cannot parse: refused, naming no part of the password ----------
for case in mis bad; do
    if [[ $case == mis ]]; then
        PG_DSN="postgresql://$ROLE:$MIS_PW@$HP/$DB"
    else
        PG_DSN="postgresql://$ROLE:$BAD_PW@$HP/$DB"
    fi
    note "DSN case $case: refused by every command"
    GIT_REPO=$(new_git_repo "state_$case")
    legs "$case" main
    for l in validate plan apply status run_text snapshot; do
        [[ $(leg_rc "${case}_$l") == 1 ]] || fail "$case $l: exit $(leg_rc "${case}_$l"), expected 1"
        grep -q 'postgres.dsn' "$W/out/${case}_$l.err" ||
            fail "$case $l: the error does not name postgres.dsn: $(cat "$W/out/${case}_$l.err")"
    done
done

# --- unreachable: a wrong port, a host that does not resolve -----------------------------------
for case in port host; do
    if [[ $case == port ]]; then
        PG_DSN="postgresql://$ROLE:$(urlenc "$PG_PW")@$PC_PG_HOST:1/$DB"
    else
        PG_DSN="postgresql://$ROLE:$(urlenc "$PG_PW")@nosuch-host.invalid:$PC_PG_PORT/$DB"
    fi
    note "unreachable PostgreSQL ($case)"
    GIT_REPO=$(new_git_repo "state_$case")
    PC_TIMEOUT=60 legs "$case" main
    [[ $(leg_rc "${case}_plan") == 1 ]] || fail "$case plan: exit $(leg_rc "${case}_plan")"
    grep -q 'PostgreSQL' "$W/out/${case}_plan.err" || fail "$case plan: no PostgreSQL error"
done

# --- NocoDB url with user:password@ and a token; a git remote with a token ---------------------
note "nocodb.url with userinfo, nocodb.token (NocoDB unreachable)"
PG_DSN="postgresql://$ROLE:$(urlenc "$PG_PW")@$HP/$DB"
GIT_REPO=$(new_git_repo state_nc)
leg nc_plan "$PIPECTL" -f "$W/nocodb.yaml" -v plan
leg nc_plan_json "$PIPECTL" -f "$W/nocodb.yaml" -v -o json plan
leg nc_status "$PIPECTL" -f "$W/nocodb.yaml" -v status
leg nc_status_json "$PIPECTL" -f "$W/nocodb.yaml" -v -o json status
leg nc_apply "$PIPECTL" -f "$W/nocodb.yaml" -v apply
grep -q 'nocodb' "$W/out/nc_status.out" || fail "status does not show NocoDB: $(cat "$W/out/nc_status.out")"
grep -q 'admin:<redacted>@127.0.0.1' "$W/out/nc_status.out" ||
    fail "status does not show nocodb.url redacted: $(cat "$W/out/nc_status.out")"
grep -q 'admin:<redacted>@127.0.0.1' "$W/out/nc_status_json.out" ||
    fail "status -o json does not show nocodb.url redacted"

note "git remote_url with a token: the push fails, the URL is redacted"
GIT_REPO=$(new_git_repo state_push)
leg push_snapshot "$PIPECTL" -f "$W/push.yaml" -v snapshot
leg push_apply "$PIPECTL" -f "$W/push.yaml" -v -o json apply
[[ $(leg_rc push_snapshot) != 0 ]] || fail "push to 127.0.0.1:1 succeeded?"
git -C "$GIT_REPO" log -p --all >"$W/out/git_push.log"

# --- the grep works ---------------------------------------------------------------------------
note "the grep would find each secret: a file holding one value is caught"
for i in "${!SECRETS[@]}"; do
    printf 'x%sx\n' "${SECRETS[i]}" >"$W/canary$i"
    assert_contains "$(secret_hits "$W/canary$i")" "$W/canary$i: secret #$i" "canary $i found"
done

# --- no secret anywhere -----------------------------------------------------------------------
note "no secret in any output, plan file or snapshot ($(ls "$W/out" | wc -l) files)"
run secret_hits "$W"/out/*
[[ $RC -eq 1 && -z "$OUT" ]] || {
    for f in $(echo "$OUT" | cut -d: -f1 | sort -u); do
        echo "=== $f" >&2
        head -c 3000 "$f" >&2
    done
    fail "a secret leaked:"$'\n'"$OUT"
}
