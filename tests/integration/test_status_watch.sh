#!/usr/bin/env bash
# test_status_watch.sh: `pipectl status --watch`: the report refreshed every --interval until
# Ctrl-C / SIGTERM (exit 0); plain reports one after another when stdout is not a terminal, one
# JSON object per line with -o json; at a terminal (a pty made by script(1)) the screen is
# redrawn and q quits.
source "$PC_SRC/tests/integration/lib.sh"

TP=$(uniq_name watch)
export TP KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"
M="$TEST_TMP/pipeline.yaml"
cat >"$M" <<'YAML'
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: watch}
kafka:
  bootstrap: ${KAFKA_BOOTSTRAP}
  topics: [{name: "${TP}", partitions: 2}]
YAML
pipectl -f "$M" apply --no-snapshot >/dev/null 2>&1 || fail "apply"
defer "kafka_topics --delete --topic '$TP' >/dev/null 2>&1"

note "not a terminal: reports follow each other until SIGINT, exit 0"
rc=0
timeout --preserve-status -s INT 4 "$PIPECTL" -f "$M" status --watch --interval 1s \
    >"$TEST_TMP/w.out" 2>"$TEST_TMP/w.err" || rc=$?
assert_eq 0 "$rc" "exit status after SIGINT ($(cat "$TEST_TMP/w.err"))"
n=$(grep -c '^pipeline watch: healthy$' "$TEST_TMP/w.out" || true)
[[ $n -ge 2 ]] || fail "expected at least 2 reports in 4 s at 1 s, got $n:"$'\n'"$(cat "$TEST_TMP/w.out")"
assert_eq "$n" "$(grep -c '^pipectl status --watch: ' "$TEST_TMP/w.out")" "one header per report"
if grep -q $'\033' "$TEST_TMP/w.out"; then fail "escape sequences written to a non-terminal"; fi

note "-o json: one JSON object per line, SIGTERM ends it with exit 0"
rc=0
timeout --preserve-status -s TERM 3 "$PIPECTL" -f "$M" -o json status --watch --interval 1s \
    >"$TEST_TMP/j.out" 2>"$TEST_TMP/j.err" || rc=$?
assert_eq 0 "$rc" "exit status after SIGTERM ($(cat "$TEST_TMP/j.err"))"
lines=$(wc -l <"$TEST_TMP/j.out")
[[ $lines -ge 2 ]] || fail "expected at least 2 JSON lines, got $lines"
assert_eq "$lines" "$(jq -c 'select(.healthy == true and .kafka.live_brokers == 1)' "$TEST_TMP/j.out" | wc -l)" \
    "every line a healthy report"

note "at a terminal: the screen is redrawn and q quits (exit 0)"
rc=0
(sleep 2.5; printf q) | timeout 30 script -qfec "'$PIPECTL' -f '$M' status --watch --interval 1s" \
    /dev/null >"$TEST_TMP/t.out" 2>&1 || rc=$?
assert_eq 0 "$rc" "exit status after q"
grep -q $'\033\\[2J' "$TEST_TMP/t.out" || fail "no screen redraw at a terminal"
grep -q "(q quits)" "$TEST_TMP/t.out" || fail "the header does not say q quits"
[[ $(grep -c 'pipeline watch: healthy' "$TEST_TMP/t.out") -ge 2 ]] || fail "fewer than 2 reports before q"

note "--interval without --watch is a usage error"
expect_rc 1 pipectl -f "$M" status --interval 1s
assert_contains "$ERR" "--interval goes with --watch" "usage error"
