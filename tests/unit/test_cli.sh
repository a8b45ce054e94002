#!/usr/bin/env bash
# test_cli.sh: the command-line contract without servers: --help and a bad option for every
# command, exit codes, unknown-command suggestions, validate's text and JSON diagnostics.
set -euo pipefail
: "${PIPECTL:?PIPECTL must point at the built binary}"
: "${PC_SRC:?PC_SRC must point at the source tree}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { set +e; "$PIPECTL" "$@" >"$T/out" 2>"$T/err"; RC=$?; set -e; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); }
expect() { # RC DESCRIPTION
    [[ $RC -eq $1 ]] || fail "$2: exit $RC, expected $1; stdout: $OUT; stderr: $ERR"
}
has() { [[ "$1" == *"$2"* ]] || fail "$3: [$2] not in [$1]"; }

run --help;  expect 0 "pipectl --help"; has "$OUT" "Commands:" "top-level help lists commands"
run;         expect 1 "no command";     has "$ERR" "Usage: pipectl" "usage on stderr"
run plna;    expect 1 "unknown command"; has "$ERR" "Did you mean 'plan'?" "suggestion"
run -o yaml validate; expect 1 "bad -o value"

# every command, written out (not read from the help's layout): each is listed by --help, has
# its own --help, and refuses a bad option pointing at it
COMMANDS=(validate plan apply run status dashboard snapshot wal-push wal-fetch restore backup)
run --help
for c in "${COMMANDS[@]}"; do
    grep -qE "^  $c( |$)" <<<"$OUT" || fail "pipectl --help does not list '$c'"
done
[[ $(grep -cE '^  [a-z][a-z-]+ ' <<<"$OUT") -ge ${#COMMANDS[@]} ]] || fail "help lists fewer commands"
for c in "${COMMANDS[@]}"; do
    run "$c" --help
    expect 0 "$c --help"
    has "$OUT" "Usage: pipectl" "$c --help prints usage"
    run "$c" --no-such-option
    if [[ $c == wal-fetch ]]; then
        expect 200 "$c bad option (restore_command: never 1)"
    else
        expect 1 "$c bad option"
    fi
    has "$ERR" "pipectl $c --help" "$c bad option points at --help"
done

# option errors: one line naming the option and what it wants (getopt's own message is not
# printed beside ours), control characters in what the user typed escaped
for args in "--timeout abc plan|pipectl: option '--timeout' wants whole seconds from 1 to 3600, got 'abc'" \
    "plan --timeout 0|pipectl plan: option '--timeout' wants whole seconds from 1 to 3600, got '0'" \
    "plan --timeout|pipectl plan: option '--timeout' needs a value (whole seconds from 1 to 3600)" \
    "plan -o yaml|pipectl plan: option '-o/--output' wants text or json, got 'yaml'" \
    "status -f|pipectl status: option '-f' needs a value (a manifest file)" \
    "run --max-records|pipectl run: option '--max-records' needs a value" \
    "plan --frob|pipectl plan: unknown option '--frob'" \
    "plan -vx|pipectl plan: unknown option '-x'" \
    "--frob|pipectl: unknown option '--frob'"; do
    read -r -a argv <<<"${args%%|*}"
    run "${argv[@]}"; expect 1 "pipectl ${args%%|*}"
    [[ "$(head -n1 <<<"$ERR")" == "${args#*|}" ]] || fail "pipectl ${args%%|*}: got [$ERR]"
    [[ $(wc -l <<<"$ERR") -eq 2 ]] || fail "pipectl ${args%%|*}: one error line + the hint: [$ERR]"
done
run plan "$(printf -- '--x\nFAKE: ok')"; expect 1 "control characters in an option"
[[ $(wc -l <<<"$ERR") -eq 2 ]] || fail "an option holding a newline stays one line: [$ERR]"
has "$ERR" "unknown option '--x\\nFAKE: ok'" "newline escaped"

# validate: good manifests exit 0; a bad one gives every error as FILE:LINE:COL, text and JSON
export KAFKA_BOOTSTRAP=127.0.0.1:9 PG_DSN="host=127.0.0.1 port=9 dbname=x user=y" NOCODB_TOKEN=t PG_PASSWORD=p NOCODB_DB_PASSWORD=p KAFKA_ADMIN_PASSWORD=a KAFKA_INGEST_PASSWORD=i KAFKA_SINK_PASSWORD=s
for m in "$PC_SRC"/manifests/*.yaml; do
    run -f "$m" validate; expect 0 "validate $m"
done
cat >"$T/bad.yaml" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: demo}
kafka:
  bootstrap: localhost:9092
  topics:
    - {name: users, partitons: 3}
    - {name: users, partitions: 0}
YAML
run -f "$T/bad.yaml" validate; expect 1 "invalid manifest"
has "$ERR" "$T/bad.yaml:7:21: unknown key 'partitons'" "unknown key position"
has "$ERR" "did you mean 'partitions'?" "nearest key"
has "$ERR" "$T/bad.yaml:8:" "second error reported too"
run -f "$T/bad.yaml" validate -o json; expect 1 "invalid manifest, JSON"
[[ "$(jq -r '.valid' <<<"$OUT")" == false ]] || fail "JSON valid flag"
[[ "$(jq -r '.errors[0].line, .errors[0].column' <<<"$OUT" | tr '\n' ' ')" == "7 21 " ]] ||
    fail "JSON position: $OUT"
# every other command: README's error document, the diagnostics in it
run -f "$T/bad.yaml" -o json plan; expect 1 "invalid manifest, plan -o json"
[[ "$(jq -r '.error.code' <<<"$OUT")" == "invalid input" ]] || fail "plan -o json: error code: $OUT"
[[ "$(jq -r '.error.diagnostics[0].line, .error.diagnostics[0].column' <<<"$OUT" | tr '\n' ' ')" == "7 21 " ]] ||
    fail "plan -o json: diagnostics position: $OUT"
has "$(jq -r '.error.message' <<<"$OUT")" "bad.yaml:7:21: unknown key 'partitons'" "plan -o json: message"
run -f "$T/missing.yaml" validate; expect 1 "missing manifest"
has "$ERR" "missing.yaml" "missing file named"
printf '\x00\x01\x02binary' >"$T/bin.yaml"
run -f "$T/bin.yaml" validate; expect 1 "binary manifest"
# options after the command, terraform-style -out accepted by plan's parser
run validate -f "$PC_SRC/manifests/quickstart.yaml" -o json; expect 0 "global options after the command"
[[ "$(jq -r '.valid' <<<"$OUT")" == true ]] || fail "validate -o json valid"
# kafka.client_config is checked against librdkafka's own property list, offline; a value
# librdkafka refuses for a secret-looking key is never echoed (text or JSON)
cat >"$T/cc.yaml" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: demo}
kafka:
  bootstrap: localhost:9092
  client_config: {socket.keepalive.enabel: true}
  topics: [{name: users, partitions: 1}]
YAML
run -f "$T/cc.yaml" validate; expect 1 "client_config typo"
has "$ERR" "$T/cc.yaml:6:19: kafka.client_config: unknown librdkafka property 'socket.keepalive.enabel'; did you mean 'socket.keepalive.enable'?" \
    "client_config typo: position and suggestion"
# (literal values: a ${VAR} with a secret-looking name is scrubbed from every message anyway)
CC_VALUE="zq-$$-$RANDOM"
cat >"$T/cc_secret.yaml" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: demo}
kafka:
  bootstrap: localhost:9092
  client_config:
    sasl.oauthbearer.method: "method-$CC_VALUE"
    enable.sasl.oauthbearer.unsecure.jwt: "jwt-$CC_VALUE"
    socket.timeout.ms: "zq-plain"
  topics: [{name: users, partitions: 1}]
YAML
grep -qF "method-$CC_VALUE" "$T/cc_secret.yaml" || fail "the value check below would be vacuous"
for o in text json; do
    run -f "$T/cc_secret.yaml" -o "$o" validate; expect 1 "client_config refused values ($o)"
    has "$OUT$ERR" "librdkafka refuses the value of 'sasl.oauthbearer.method' (value redacted)" \
        "refused secret value named by its key ($o)"
    has "$OUT$ERR" "librdkafka refuses the value of 'enable.sasl.oauthbearer.unsecure.jwt' (value redacted)" \
        "refused secret boolean named by its key ($o)"
    has "$OUT$ERR" "socket.timeout.ms" "a refused value of an ordinary key is reported too ($o)"
    [[ "$OUT$ERR" != *"$CC_VALUE"* ]] || fail "client_config secret value echoed ($o): $OUT$ERR"
done
echo "PASS test_cli"
