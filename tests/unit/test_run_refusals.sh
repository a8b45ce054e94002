#!/usr/bin/env bash
# test_run_refusals.sh: every rule `run` (cmd_run.c, the sink's and the ingest worker's setup),
# `status` and `apply` enforce about the manifest's shape is reported by `validate` first, with
# FILE:LINE:COL, and `run` refuses the same manifest before it starts a worker or opens a
# connection. No servers: each manifest points at addresses nothing listens on, so a `run` that
# got past the manifest would fail differently (and later).
#
# The refusals walked here (keep in step with the code):
#   cmd_run.c   backups without archiving.repository / without postgres / without postgres.dsn,
#               backups.schedule that does not parse, a schedule that never fires
#   sink.c      table not schema.table, table not declared, mapping naming an unknown column,
#               an empty mapping, upsert without a primary key, a NOT NULL (or key) column unmapped
#   ingest.c    a source without topic, a Kafka block without bootstrap
#   run/status  backups declared but nothing to back up with (no postgres block)
set -euo pipefail
: "${PIPECTL:?PIPECTL must point at the built binary}"
: "${PC_SRC:?PC_SRC must point at the source tree}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The base: the quickstart manifest, pointed at closed loopback ports.
export KAFKA_BOOTSTRAP=127.0.0.1:1 PG_DSN="host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2"
export PIPECTL_REPO="$T/repo" RANDOMUSER_URL=http://127.0.0.1:1/api/
BASE="$PC_SRC/manifests/quickstart.yaml"
"$PIPECTL" -f "$BASE" validate >/dev/null 2>"$T/err" || fail "the base manifest must be valid: $(cat "$T/err")"

n=0
# refusal NAME PYTHON-EDIT EXPECTED-MESSAGE-FRAGMENT [RUN-ARGS...]
refusal() {
    local name=$1 edit=$2 want=$3
    shift 3
    local f="$T/$name.yaml"
    python3 - "$BASE" "$f" "$edit" <<'PY'
import re, sys
src, dst, edit = sys.argv[1:4]
s = open(src).read()
t = eval(edit, {"re": re, "s": s})
if t == s:
    sys.exit("edit changed nothing: " + edit)
open(dst, "w").write(t)
PY
    set +e
    "$PIPECTL" -f "$f" validate >"$T/vout" 2>"$T/verr"
    local vrc=$?
    timeout 60 "$PIPECTL" -f "$f" run "$@" >"$T/rout" 2>"$T/rerr"
    local rrc=$?
    set -e
    [[ $vrc -eq 1 ]] || fail "$name: validate exited $vrc, expected 1 (it must report what run refuses); stderr: $(cat "$T/verr")"
    grep -qE "^$f:[0-9]+:[0-9]+: .*$want" "$T/verr" ||
        fail "$name: validate does not say [$want] at FILE:LINE:COL; it said: $(cat "$T/verr")"
    [[ $rrc -ne 0 ]] || fail "$name: run accepted a manifest validate refuses"
    grep -qE "^$f:[0-9]+:[0-9]+: .*$want" "$T/rerr" ||
        fail "$name: run does not refuse with validate's diagnostic [$want]; it said: $(cat "$T/rerr")"
    if grep -qiE "connect|refused|unreachable|broker|timed out" "$T/rerr"; then
        fail "$name: run tried to connect before refusing the manifest: $(cat "$T/rerr")"
    fi
    n=$((n + 1))
}

# cmd_run.c: what the backup schedule needs
refusal backups-no-repo 're.sub(r"\n  archiving:\n(    .*\n)+", "\n", s)' \
    "backups needs postgres.archiving.repository" backups
refusal backups-no-postgres 're.sub(r"\npostgres:\n(  .*\n|\n)*", "\n", s, count=1)' \
    "backups needs a postgres block" backups
refusal backups-no-dsn 're.sub(r"\n  dsn: .*\n", "\n", s)' "postgres is missing 'dsn'" backups
refusal backups-bad-cron 're.sub(r"schedule: \"[^\"]*\"", "schedule: \"61 * * * *\"", s)' \
    "backups.schedule" backups
refusal backups-never-fires 're.sub(r"schedule: \"[^\"]*\"", "schedule: \"0 0 30 2 *\"", s)' \
    "never fires" backups
refusal backups-no-schedule 're.sub(r"\n  schedule: .*\n", "\n", s)' \
    "backups is missing 'schedule'" backups
# sink.c setup_columns
refusal sink-table-no-dot 's.replace("table: raw.users", "table: users")' \
    "sink table must be written as schema.table" users_to_pg
refusal sink-table-undeclared 's.replace("table: raw.users", "table: raw.people")' \
    "which is not declared in postgres.schemas" users_to_pg
refusal sink-unknown-column 's.replace("      first_name:", "      frist_name:")' \
    "mapping names column 'frist_name', which is not a column" users_to_pg
refusal sink-upsert-no-pk 's.replace("primary_key: true", "nullable: false")' \
    "uses mode upsert but raw.users has no primary_key column" users_to_pg
refusal sink-notnull-unmapped 're.sub(r"\n      email: .*\n", "\n", s)' \
    "does not fill NOT NULL column 'email'" users_to_pg
refusal sink-pk-unmapped 're.sub(r"\n      id: .*\n", "\n", s)' \
    "does not fill NOT NULL column 'id'" users_to_pg
refusal sink-empty-mapping 're.sub(r"    mapping:\n(      .*\n)+", "    mapping: {}\n", s)' \
    "empty mapping" users_to_pg
# ingest.c pc_ingest_run
refusal source-no-topic 're.sub(r"(\n    url: .*\n)    topic: .*\n", r"\1", s)' \
    "is missing 'topic'" randomuser
refusal kafka-no-bootstrap 're.sub(r"\n  bootstrap: .*\n", "\n", s)' \
    "kafka is missing 'bootstrap'" randomuser

echo "ok: $n refusals of run are reported by validate first, at FILE:LINE:COL"
