#!/usr/bin/env bash
# test_sink.sh: the Kafka -> PostgreSQL sink worker (pkg/sink) through pc-sink-driver, against the
# real stack: field-by-field landing with offsets == high watermarks and dead letters (a+d),
# SIGKILL crash loop (b), two members of one group with takeover (c), PostgreSQL restarted
# mid-run (e), SIGTERM drains and commits (f). Exactly once is checked on tables WITHOUT a
# primary key (insert mode), where a duplicate would show as count(*) > count(distinct id).
# pc-test: serial
# pc-test: timeout=600
source "$PC_SRC/tests/integration/lib.sh"

DRIVER="$(dirname "${PIPECTL:?PIPECTL is not set}")/pc-sink-driver"
[[ -x "$DRIVER" ]] || fail "pc-sink-driver not built next to pipectl ($DRIVER)"
export KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"

# new_pipeline TAG MODE PK BATCH WAIT_MS [nodlq|-] [stamp|-] [interval]: DB + manifest
# $TEST_TMP/TAG.yaml (topics TAG_users with 3 partitions and TAG_dlq), applied. PK=pk makes id the
# primary key, PK=nopk leaves it plain; nodlq leaves the sink without a dead_letter topic; stamp
# adds column sent_us (bigint) mapped from the driver's pc_sent_us (--stamp); interval adds column
# tz_offset (interval, a type the sink has no binary form for: its COPY is text).
new_pipeline() {
    local tag=$1 mode=$2 pk=$3 batch=$4 wait=$5 name="sk_${TEST_ID}_$1" dsn idcol dlq
    local stampcol="# no stamp" stampmap="# no stamp"
    dlq="dead_letter: ${name}_dlq"
    [[ ${6:-} != nodlq ]] || dlq="# no dead_letter"
    if [[ ${7:-} == stamp ]]; then
        stampcol="- {name: sent_us, type: bigint}"
        stampmap="sent_us: pc_sent_us"
    fi
    if [[ ${8:-} == interval ]]; then
        stampcol="- {name: tz_offset, type: interval}"
        stampmap="tz_offset: location.timezone.offset"
    fi
    dsn=$(new_db "$name")
    if [[ $pk == pk ]]; then idcol='{name: id, type: uuid, primary_key: true}'
    else idcol='{name: id, type: uuid, nullable: false}'; fi
    cat >"$TEST_TMP/$tag.yaml" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: $name}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: ${name}_users, partitions: 3, replication_factor: 1}
    - {name: ${name}_dlq, partitions: 1, replication_factor: 1}
postgres:
  dsn: "$dsn"
  schemas:
    - name: raw
      tables:
        - name: users
          columns:
            - $idcol
            - {name: first_name, type: text}
            - {name: last_name, type: text}
            - {name: gender, type: text}
            - {name: address, type: text}
            - {name: post_code, type: text}
            - {name: email, type: text, nullable: false}
            - {name: username, type: text}
            - {name: dob, type: timestamptz}
            - {name: registered_date, type: timestamptz}
            - {name: phone, type: text}
            - {name: picture, type: text}
            - {name: street_number, type: integer}
            - {name: latitude, type: "numeric(9,4)"}
            - {name: id_value, type: text}
            - {name: dob_day, type: date}
            - {name: login, type: jsonb}
            $stampcol
sinks:
  - name: users_to_pg
    topic: ${name}_users
    table: raw.users
    mode: $mode
    mapping:
      id: login.uuid
      first_name: name.first
      last_name: name.last
      gender: gender
      address: location.street.name
      post_code: location.postcode
      email: email
      username: login.username
      dob: dob.date
      registered_date: registered.date
      phone: phone
      picture: picture.medium
      street_number: location.street.number
      latitude: location.coordinates.latitude
      id_value: id.value
      dob_day: dob.date
      login: login
      $stampmap
    batch: {max_records: $batch, max_wait: ${wait}ms}
    $dlq
YAML
    pipectl -f "$TEST_TMP/$tag.yaml" apply >"$TEST_TMP/$tag.apply" 2>&1 ||
        fail "apply $tag: $(cat "$TEST_TMP/$tag.apply")"
    eval "DSN_$tag=\"\$dsn\""
}
topic_of() { echo "sk_${TEST_ID}_$1_$2"; }
dsn_of() { local v="DSN_$1"; echo "${!v}"; }
q() { psql_q "$2" "$(dsn_of "$1")"; } # q TAG SQL
rows() { q "$1" "SELECT count(*) FROM raw.users"; }
produce() { # TAG N SEED [more driver args]
    local tag=$1 n=$2 seed=$3
    shift 3
    timeout 120 "$DRIVER" -f "$TEST_TMP/$tag.yaml" users_to_pg --produce "$n" --seed "$seed" "$@" \
        >>"$TEST_TMP/$tag.produce.log" 2>&1 || fail "producing to $tag: $(tail -5 "$TEST_TMP/$tag.produce.log")"
}
start_sink() { # TAG LOG [driver args]: starts in the background, sets SINK_PID
    local tag=$1 log=$2
    shift 2
    "$DRIVER" -f "$TEST_TMP/$tag.yaml" users_to_pg "$@" >>"$log" 2>&1 &
    SINK_PID=$!
}
# watermarks TOPIC: "partition:offset" lines sorted (GetOffsetShell, latest)
watermarks() {
    kafka_java org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
        --topic "$1" 2>/dev/null | awk -F: '{print $(NF-1) ":" $NF}' | sort -n
}
stored_offsets() { # TAG -> "partition:next_offset" lines sorted
    q "$1" "SELECT partition || ':' || next_offset FROM pipectl.sink_offsets
            WHERE sink = 'users_to_pg' ORDER BY partition"
}
wait_rows() { # TAG N SECONDS: waits until the table has N rows
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        [[ "$(rows "$1")" -ge "$2" ]] && return 0
        sleep 0.2
    done
    fail "$1: expected $2 rows within $3 s, have $(rows "$1")"
}
finish() { # TAG TOTAL: runs the sink until the table holds TOTAL rows (exit 0)
    local left=$(($2 - $(rows "$1")))
    if ((left > 0)); then
        expect_rc 0 timeout 120 "$DRIVER" -f "$TEST_TMP/$1.yaml" users_to_pg --max-records "$left"
    else # nothing left: a short run must find nothing to do
        expect_rc 0 timeout 120 "$DRIVER" -f "$TEST_TMP/$1.yaml" users_to_pg --duration-ms 3000
    fi
}
assert_exactly() { # TAG N: N rows, no duplicates, offsets at the high watermarks
    local tag=$1 n=$2
    assert_eq "$n|$n" "$(q "$tag" "SELECT count(*) || '|' || count(DISTINCT id) FROM raw.users")" \
        "$tag: rows|distinct ids"
    assert_eq "$(watermarks "$(topic_of "$tag" users)")" "$(stored_offsets "$tag")" \
        "$tag: stored offsets vs high watermarks"
}

# --- (a) + (d): 10,000 users field by field; malformed records to the dead-letter topic ---------
note "(a) 10,000 users, upsert mode; (d) 8 malformed records"
new_pipeline a upsert pk 2000 200
produce a 10000 1 --bad 8 --out "$TEST_TMP/a.jsonl"
expect_rc 0 "$DRIVER" -f "$TEST_TMP/a.yaml" users_to_pg --max-records 10008
assert_contains "$ERR" "records_out=10000 " "(a) driver stats"
assert_contains "$ERR" "dead_letters=8 " "(a) driver stats"
assert_exactly a 10000
# every landed row equals its source record, column by column
psql_q "CREATE TABLE src (j jsonb)" "$DSN_a" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 "$DSN_a" \
    -c "\\copy src (j) FROM '$TEST_TMP/a.jsonl' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')" ||
    fail "(a) loading the source records"
matched=$(q a "SELECT count(*) FROM src s JOIN raw.users u ON u.id = (s.j#>>'{login,uuid}')::uuid
  WHERE u.first_name = s.j#>>'{name,first}' AND u.last_name = s.j#>>'{name,last}'
    AND u.gender = s.j->>'gender' AND u.address = s.j#>>'{location,street,name}'
    AND u.post_code = s.j#>>'{location,postcode}' AND u.email = s.j->>'email'
    AND u.username = s.j#>>'{login,username}' AND u.dob = (s.j#>>'{dob,date}')::timestamptz
    AND u.registered_date = (s.j#>>'{registered,date}')::timestamptz
    AND u.phone = s.j->>'phone' AND u.picture = s.j#>>'{picture,medium}'
    AND u.street_number = (s.j#>>'{location,street,number}')::int
    AND u.latitude = (s.j#>>'{location,coordinates,latitude}')::numeric
    AND u.id_value IS NOT DISTINCT FROM s.j#>>'{id,value}'
    AND u.dob_day = left(s.j#>>'{dob,date}', 10)::date AND u.login = s.j->'login'")
assert_eq 10000 "$matched" "(a) rows equal to their source records field by field"
# the type traps really occurred in the data
assert_eq t "$(q a "SELECT bool_and(x) FROM (VALUES
   ((SELECT count(*) > 0 FROM raw.users WHERE post_code = '0150')),
   ((SELECT count(*) > 0 FROM raw.users WHERE post_code ~ '^[0-9]{5}$')),
   ((SELECT count(*) > 0 FROM raw.users WHERE id_value IS NULL)),
   ((SELECT count(*) > 0 FROM raw.users WHERE last_name = E'Tab\\tSeparated')),
   ((SELECT count(*) > 0 FROM raw.users WHERE address = E'Line\\nBreak Street'))) v(x)")" \
    "(a) postcode number/string, null id.value and escaping all exercised"
# (d) the dead letters: 8 records, each with its reason and source coordinates
dlq=$(kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
    --topic "$(topic_of a dlq)" --from-beginning --max-messages 8 --timeout-ms 30000 \
    --property print.headers=true --property print.key=true 2>/dev/null) || true
assert_eq 8 "$(grep -c 'pipectl.reason:' <<<"$dlq")" "(d) dead letters with a reason header"
assert_contains "$dlq" "value is not valid JSON" "(d) reason for non-JSON"
assert_contains "$dlq" 'column id (path login.uuid): value "not-a-uuid" is not a valid uuid' "(d) uuid reason"
assert_contains "$dlq" "no such date" "(d) impossible date reason"
assert_contains "$dlq" "column email (path email): value is missing but the column is NOT NULL" "(d) NOT NULL reason"
assert_contains "$dlq" "pipectl.source.topic:$(topic_of a users)" "(d) source topic header"
assert_contains "$dlq" "pipectl.source.offset:" "(d) source offset header"
assert_contains "$dlq" "bad-0" "(d) original key kept"

# (d) rows PostgreSQL itself refuses (duplicate key in insert mode) go to the dead-letter topic
# too, and the rest of their batch lands
new_pipeline g insert pk 500 100
produce g 100 8
produce g 10 8 --start 95 # 95..99 again (refused) and 100..104 (new)
expect_rc 0 "$DRIVER" -f "$TEST_TMP/g.yaml" users_to_pg --max-records 110
assert_contains "$ERR" "records_out=105 " "(d) refused rows: rows landed"
assert_contains "$ERR" "dead_letters=5 " "(d) refused rows: dead letters"
assert_eq 105 "$(rows g)" "(d) refused rows: table"
assert_eq "$(watermarks "$(topic_of g users)")" "$(stored_offsets g)" "(d) refused rows: offsets"
dlq=$(kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$PC_KAFKA_BOOTSTRAP" \
    --topic "$(topic_of g dlq)" --from-beginning --max-messages 5 --timeout-ms 30000 \
    --property print.headers=true 2>/dev/null) || true
assert_eq 5 "$(grep -cE 'refused the row: .*duplicate key value' <<<"$dlq")" "(d) refused rows: reasons"

# --- (j) COPY formats: binary where every column has a binary form, else text; same rows --------
note "(j) 3,000 users through binary COPY and through text COPY land the same rows"
new_pipeline jb insert pk 1000 100
new_pipeline jt insert pk 1000 100 - - interval
produce jb 3000 41
produce jt 3000 41
expect_rc 0 timeout 120 "$DRIVER" -f "$TEST_TMP/jb.yaml" users_to_pg --max-records 3000
assert_contains "$ERR" "COPY format for raw.users: binary" "(j) binary COPY chosen"
# batch.max_records bounds every transaction, a promoted read-ahead included
sizes=$(sed -n 's/.*committed \([0-9]*\) rows, \([0-9]*\) dead letters.*/\1 \2/p' <<<"$ERR")
(($(wc -l <<<"$sizes") >= 3)) || fail "(j) expected at least 3 commits in the log, got: $sizes"
assert_eq "" "$(awk '$1 + $2 > 1000' <<<"$sizes")" "(j) batches larger than max_records 1000"
expect_rc 0 timeout 120 "$DRIVER" -f "$TEST_TMP/jt.yaml" users_to_pg --max-records 3000
assert_contains "$ERR" "COPY format for raw.users: text (a column of a type" "(j) text COPY chosen"
assert_eq 3000 "$(q jt "SELECT count(*) FROM raw.users WHERE tz_offset = interval '-9 hours'")" \
    "(j) the interval column loaded as text"
digest() { # TAG: every mapped column of every row, in one hash
    q "$1" "SELECT count(*) || ':' || md5(string_agg(concat_ws('|', id, first_name, last_name,
        gender, address, post_code, email, username, dob, registered_date, phone, picture,
        street_number, latitude, id_value, dob_day, login), E'\n' ORDER BY id)) FROM raw.users"
}
dj=$(digest jb)
assert_eq "$(digest jt)" "$dj" "(j) binary and text COPY rows identical"
assert_contains "$dj" "3000:" "(j) row count"

# --- (b) SIGKILL at random moments, then run to completion --------------------------------------
note "(b) crash loop: 50,000 records, SIGKILL at least 5 times"
new_pipeline b insert nopk 300 50
# records arrive in 10,000-record chunks while the sink is killed and restarted, so every kill
# lands mid-stream (the sink is faster than one chunk per incarnation)
kills=0 produced=0
LOG_B="$TEST_TMP/b.log"
while ((kills < 6)); do
    if ((produced < 50000)); then
        produce b 10000 2 --start "$produced"
        produced=$((produced + 10000))
    fi
    before=$(rows b)
    start_sink b "$LOG_B"
    # kill once this incarnation has made progress, at a random moment after that
    for ((i = 0; i < 150 && before < produced; i++)); do
        [[ "$(rows b)" -gt "$before" ]] && break
        sleep 0.1
    done
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
    kill -KILL "$SINK_PID"
    wait "$SINK_PID" 2>/dev/null || true
    kills=$((kills + 1))
    note "kill $kills: $before -> $(rows b) rows of $produced produced"
done
finish b 50000
assert_exactly b 50000

# --- (c) two members of one group share the partitions; one dies, the other takes over ----------
note "(c) two sinks in one consumer group"
new_pipeline c insert nopk 500 100
LOG_C1="$TEST_TMP/c1.log" LOG_C2="$TEST_TMP/c2.log"
start_sink c "$LOG_C1"
PID_C1=$SINK_PID
start_sink c "$LOG_C2"
PID_C2=$SINK_PID
# both hold partitions (range: 2 + 1)
for ((i = 0; i < 150; i++)); do
    a1=$(grep 'assigned partitions' "$LOG_C1" | tail -1 || true)
    a2=$(grep 'assigned partitions' "$LOG_C2" | tail -1 || true)
    if [[ -n $a1 && -n $a2 ]]; then
        n1=$(sed 's/.*offsets //' <<<"$a1" | tr ',' '\n' | grep -c '@' || true)
        n2=$(sed 's/.*offsets //' <<<"$a2" | tr ',' '\n' | grep -c '@' || true)
        ((n1 + n2 == 3 && n1 > 0 && n2 > 0)) && break
    fi
    sleep 0.2
done
((n1 + n2 == 3 && n1 > 0 && n2 > 0)) || fail "(c) partitions not shared: [$a1] [$a2]"
produce c 20000 3
wait_rows c 20000 60
grep -q 'committed [1-9]' "$LOG_C1" || fail "(c) member 1 committed nothing"
grep -q 'committed [1-9]' "$LOG_C2" || fail "(c) member 2 committed nothing"
kill -KILL "$PID_C1"
wait "$PID_C1" 2>/dev/null || true
produce c 10000 4 --start 20000
wait_rows c 30000 60
last=$(grep 'assigned partitions' "$LOG_C2" | tail -1)
assert_contains "$last" "0@" "(c) survivor took partition 0"
assert_contains "$last" "1@" "(c) survivor took partition 1"
assert_contains "$last" "2@" "(c) survivor took partition 2"
kill -TERM "$PID_C2"
rc=0
wait "$PID_C2" || rc=$?
assert_eq 0 "$rc" "(c) survivor exit status after SIGTERM"
assert_exactly c 30000

# --- (e) PostgreSQL restarted mid-run ----------------------------------------------------------
note "(e) PostgreSQL restart while records flow"
new_pipeline e insert nopk 500 100
LOG_E="$TEST_TMP/e.log"
start_sink e "$LOG_E"
PID_E=$SINK_PID
produce e 5000 5
wait_rows e 5000 60
produce e 15000 6 --start 5000 &
PROD_E=$!
sleep 0.3
# the restarted server must not inherit the test's output (lib.sh's saved stderr fd included), or
# it would hold ctest's pipe open after the test ends
pg_restart || fail "(e) pg_restart failed"
wait "$PROD_E" || fail "(e) producing during the restart failed"
# records after the restart too: a sink fast enough to have drained the first ones before the
# server went down must still meet its dead connection now
produce e 5000 8 --start 20000
wait_rows e 25000 90
grep -qE 'not committed|cannot connect|terminating connection|server closed' "$LOG_E" ||
    fail "(e) the sink never saw the restart:"$'\n'"$(tail -20 "$LOG_E")"
kill -0 "$PID_E" || fail "(e) the sink died during the restart"
kill -TERM "$PID_E"
rc=0
wait "$PID_E" || rc=$?
assert_eq 0 "$rc" "(e) exit status after SIGTERM"
assert_exactly e 25000

# --- (f) SIGTERM mid-run: nothing half-done, exit 0 ---------------------------------------------
note "(f) SIGTERM drains and commits the batch in progress"
new_pipeline f insert nopk 5000 1000
produce f 30000 7
LOG_F="$TEST_TMP/f.log"
start_sink f "$LOG_F"
PID_F=$SINK_PID
for ((i = 0; i < 150; i++)); do
    [[ "$(rows f)" -gt 0 ]] && break
    sleep 0.1
done
sleep 0.$((RANDOM % 5))
kill -TERM "$PID_F"
rc=0
wait "$PID_F" || rc=$?
assert_eq 0 "$rc" "(f) exit status after SIGTERM"
# every consumed-and-stored offset has its row and no row lacks its offset
assert_eq "$(q f "SELECT coalesce(sum(next_offset), 0) FROM pipectl.sink_offsets")" "$(rows f)" \
    "(f) rows == sum of stored offsets after SIGTERM"
assert_not_contains "$(cat "$LOG_F")" "uncommitted" "(f) batch left uncommitted"
finish f 30000
assert_exactly f 30000

# --- (h) no dead_letter topic: what came before a bad record lands, then the worker stops on it --
note "(h) a record that cannot be loaded, no dead_letter: earlier records committed, then stop"
new_pipeline h insert pk 5000 200 nodlq
produce h 300 21
produce h 0 22 --bad 1
produce h 300 23
expect_rc 1 timeout 120 "$DRIVER" -f "$TEST_TMP/h.yaml" users_to_pg
assert_contains "$ERR" "cannot be loaded: value is not valid JSON" "(h) the reason"
assert_contains "$ERR" "add dead_letter to the sink" "(h) what to do"
# the record named in the error: its partition's stored offset stops exactly at it
bad_at=$(grep -o "record $(topic_of h users)/[0-9]*@[0-9]*" <<<"$ERR" | head -1)
[[ -n $bad_at ]] || fail "(h) the error does not name the record: $ERR"
bad_part=${bad_at##*/}
bad_part=${bad_part%@*}
bad_off=${bad_at##*@}
((bad_off >= 1)) || fail "(h) the bad record is at offset $bad_off: nothing before it to commit"
assert_eq "$bad_off" "$(q h "SELECT next_offset FROM pipectl.sink_offsets WHERE partition = $bad_part")" \
    "(h) stored offset of the bad record's partition == the bad record's offset"
rows_h=$(rows h)
((rows_h >= bad_off)) || fail "(h) only $rows_h rows landed, the bad record's partition alone had $bad_off before it"
assert_eq "$(q h "SELECT coalesce(sum(next_offset), 0) FROM pipectl.sink_offsets")" "$rows_h" \
    "(h) rows == sum of stored offsets"
# a restart stops on the same record and lands nothing twice
expect_rc 1 timeout 120 "$DRIVER" -f "$TEST_TMP/h.yaml" users_to_pg
assert_contains "$ERR" "$bad_at " "(h) the restart stops on the same record"
assert_eq "$bad_off" "$(q h "SELECT next_offset FROM pipectl.sink_offsets WHERE partition = $bad_part")" \
    "(h) stored offset unchanged by the restart"
assert_eq "$(q h "SELECT count(DISTINCT id) FROM raw.users")" "$(rows h)" "(h) no duplicates"

# --- (i) upsert: a key's later record wins, across batches and the read-ahead ---------------------
note "(i) upsert: the same 3,000 users twice; every row holds the later copy"
new_pipeline i upsert pk 2000 200 - stamp
produce i 3000 31 --stamp
between=$(date +%s%6N)
produce i 3000 31 --stamp
expect_rc 0 timeout 120 "$DRIVER" -f "$TEST_TMP/i.yaml" users_to_pg --max-records 6000
assert_contains "$ERR" "records_out=6000 " "(i) every record taken"
assert_eq "3000|3000|0" "$(q i "SELECT count(*) || '|' || count(DISTINCT id) || '|' || count(*) FILTER (WHERE sent_us IS NULL OR sent_us <= $between) FROM raw.users")" \
    "(i) rows | distinct ids | rows still holding the earlier copy"
assert_eq "$(watermarks "$(topic_of i users)")" "$(stored_offsets i)" "(i) stored offsets vs high watermarks"
