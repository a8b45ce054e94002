#!/usr/bin/env bash
# test_demo.sh: the README's first command, scripts/demo.sh, end to end, as a test of the story:
# apply, the PostgreSQL restart for archive_mode, 500 users streamed, a base backup, the
# "accidental" DELETE, the point-in-time restore into a new data directory with every row back,
# and `status` saying healthy at the end. The demo starts its own stack (PostgreSQL, Kafka,
# NocoDB) under $TEST_TMP with the pipectl under test (PIPECTL: no build), and tears it down.
# Asserts on its exit status, the restored row count it prints, its final status verdict, and
# that nothing of its stack is left running.
# pc-test: serial
# pc-test: timeout=600
source "$PC_SRC/tests/integration/lib.sh"

DEMO_DIR="$TEST_TMP/demo"
PC_TIMEOUT=540 expect_rc 0 env PIPECTL="$PIPECTL" PC_DEMO_DIR="$DEMO_DIR" bash "$PC_SRC/scripts/demo.sh"
note "$(grep '^demo: done' <<<"$OUT")"

assert_contains "$OUT" "Restart required" "apply says a restart is required"
assert_contains "$OUT" "Restarting PostgreSQL: archive_mode and wal_level only take effect at server start" \
    "the demo restarts PostgreSQL, saying why"
assert_contains "$OUT" "recovery stopping before commit of transaction" "restore proves where recovery stopped"
assert_contains "$OUT" "archive_mode is off there" "the restored copy does not archive"
assert_contains "$OUT" "restored rows: 500 of 500" "every row is back in the restored copy"
assert_contains "$OUT" "live rows: 500" "the rows are copied back into the live table"
# the verdict of the last `pipectl status`, and the demo's own last line
assert_eq "pipeline users: healthy" "$(grep '^pipeline users: ' <<<"$OUT" | tail -n 1)" "final status"
assert_contains "$(tail -n 1 <<<"$OUT")" "restored rows: 500 of 500; status: healthy" "the demo's last line"

note "nothing left running"
[[ ! -e "$DEMO_DIR/demo" ]] || fail "the demo's stack directory is still there: $(ls -A "$DEMO_DIR/demo")"
[[ ! -e "$DEMO_DIR/demo-work/pg-work" ]] || [[ ! -e "$(cat "$DEMO_DIR/demo-work/pg-work")" ]] ||
    fail "the demo's PostgreSQL work directory $(cat "$DEMO_DIR/demo-work/pg-work") is still there"
