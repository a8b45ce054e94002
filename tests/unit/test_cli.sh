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

for c in validate plan apply status snapshot wal-push wal-fetch $(
    "$PIPECTL" --help | sed -n 's/^  \(backup\|restore\|run\) .*/\1/p'); do
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
run -f "$T/missing.yaml" validate; expect 1 "missing manifest"
has "$ERR" "missing.yaml" "missing file named"
printf '\x00\x01\x02binary' >"$T/bin.yaml"
run -f "$T/bin.yaml" validate; expect 1 "binary manifest"
# options after the command, terraform-style -out accepted by plan's parser
run validate -f "$PC_SRC/manifests/quickstart.yaml" -o json; expect 0 "global options after the command"
[[ "$(jq -r '.valid' <<<"$OUT")" == true ]] || fail "validate -o json valid"
echo "PASS test_cli"
