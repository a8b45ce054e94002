#!/usr/bin/env bash
# test_nocodb_browser: headless Chromium (Debian's chromium, driven by playwright-core from the
# npm cache of scripts/nocodb.sh) signs in to the real NocoDB through its web UI, opens the grid
# view of a users table served from the stack's Postgres and must see a known row. The
# screenshot is the CI artifact ${build dir}/artifacts/nocodb-grid.png: CTest passes no build
# dir, so it is derived from PC_STACK_DIR, which the stack fixture puts in the build dir
# (${CMAKE_BINARY_DIR}/stack); set PC_ARTIFACTS_DIR to put it elsewhere.
# pc-test: nocodb
# pc-test: timeout=300
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nocodb_lib.sh"

ARTIFACTS=${PC_ARTIFACTS_DIR:-$(dirname "$PC_STACK_DIR")/artifacts}
SHOT="$ARTIFACTS/nocodb-grid.png"
mkdir -p "$ARTIFACTS"
rm -f "$SHOT"
[[ -x /usr/bin/chromium ]] || fail "Debian's chromium is not installed: run scripts/setup.sh"
[[ -f "$PC_NOCODB_MODULES/playwright-core/package.json" ]] ||
    fail "playwright-core is not in $PC_NOCODB_MODULES: run scripts/nocodb.sh install"

note "a users table with known rows, readable by a NocoDB role (CONNECT, USAGE, SELECT)"
db=$(uniq_name nc_browser)
new_db "$db" >/dev/null
dsn="host=$PC_PG_HOST port=$PC_PG_PORT dbname=$db user=postgres"
marker="Grace Hopper $TEST_ID"
psql_q "CREATE SCHEMA app;
        CREATE TABLE app.users (id bigint PRIMARY KEY, name text NOT NULL, email text, country text);
        INSERT INTO app.users VALUES
          (1, '$marker', 'grace@example.org', 'US'),
          (2, 'Alan Turing', 'alan@example.org', 'GB'),
          (3, 'Ada Lovelace', 'ada@example.org', 'GB');" "$dsn" >/dev/null
role=$(uniq_name nc_browser_ro)
pass="Ro-$TEST_ID-pass"
nc_pg_reader "$db" app "$role" "$pass"

note "base and source in NocoDB"
base=$(nc_new_base "pipectl browser $TEST_ID")
src=$(nc_add_pg_source "$base" app "$db" app "$role" "$pass")
[[ -n "$src" ]] || fail "no source id"
table=$(nc_table_id "$base" "$src" users)
[[ -n "$table" ]] || fail "NocoDB does not list app.users"
assert_eq 3 "$(nc_count "$table")" "rows NocoDB's data API returns"

note "Chromium: sign in, open the grid of users"
run env PC_NOCODB_MODULES="$PC_NOCODB_MODULES" PC_NOCODB_URL="$PC_NOCODB_URL" \
    PC_NOCODB_EMAIL="$PC_NOCODB_EMAIL" PC_NOCODB_PASSWORD="$PC_NOCODB_PASSWORD" \
    NC_BASE_ID="$base" NC_TABLE_ID="$table" NC_EXPECT="$marker" NC_ROW_ID=1 NC_SHOT="$SHOT" HOME="$TEST_TMP" \
    node "$PC_SRC/tests/integration/browser/nocodb_grid.js"
echo "$OUT"
[[ $RC -eq 0 ]] || fail "the grid did not show [$marker] (exit $RC; screenshot $SHOT):"$'\n'"$ERR"
assert_contains "$OUT" "grid data holds: $marker" "browser output"
assert_contains "$OUT" "grid shows: $marker" "browser output"
[[ -s "$SHOT" ]] || fail "no screenshot at $SHOT"
# a PNG, and not a blank page: the file starts with the PNG signature and has some size
assert_eq "89504e47" "$(head -c 4 "$SHOT" | od -An -tx1 | tr -d ' \n')" "PNG signature"
(( $(stat -c %s "$SHOT") > 20000 )) || fail "screenshot $SHOT is suspiciously small"
note "screenshot: $SHOT"
