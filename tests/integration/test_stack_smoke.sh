#!/usr/bin/env bash
# The throwaway stack works: Kafka admin round trip, PostgreSQL query, WAL settings that the
# backup tests rely on. Needs no pipectl.
source "$(dirname "$0")/lib.sh"

topic=$(uniq_name smoke)
note "Kafka: create $topic (3 partitions, retention.ms override)"
kafka_topics --create --topic "$topic" --partitions 3 --replication-factor 1 \
    --config retention.ms=3600000 >/dev/null
defer "kafka_topics --delete --topic '$topic' >/dev/null 2>&1"
assert_contains "$(kafka_topics --list)" "$topic" "topic listed"
topic_exists "$topic" || fail "topic_exists $topic"
assert_eq 3 "$(topic_partitions "$topic")" "partition count"
assert_eq 3600000 "$(topic_config "$topic" retention.ms)" "retention.ms override"
assert_eq "" "$(topic_config "$topic" cleanup.policy)" "no cleanup.policy override"
assert_eq "" "$(topic_partitions "no_such_topic_$TEST_ID")" "missing topic has no partitions"

note "PostgreSQL: query, settings, per-test database"
assert_eq 42 "$(psql_q 'SELECT 42')" "select"
assert_eq replica "$(psql_q 'SHOW wal_level')" "wal_level"
assert_eq on "$(psql_q 'SHOW fsync')" "fsync stays on"
assert_eq pipeline "$(psql_q 'SELECT current_database()')" "default database"
dsn=$(new_db "$(uniq_name smoke)")
psql_q "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')" "$dsn"
assert_eq "1|a" "$(psql_q 'SELECT id, v FROM t ORDER BY id LIMIT 1' "$dsn")" "row read back"
run psql_q "SELECT * FROM no_such_table" "$dsn"
assert_eq 1 "$RC" "psql_q stops on error"
assert_contains "$ERR" "no_such_table" "error names the table"

note "git: per-test repository"
repo=$(new_git_repo state)
[[ -d "$repo/.git" ]] || fail "git repo $repo"
