#!/usr/bin/env bash
# test_snapshot_push.sh: apply snapshots into a git repository and pushes them to a remote (a
# local bare repository); `pipectl snapshot` records drift made behind pipectl's back; nothing
# secret lands in any commit.
source "$PC_SRC/tests/integration/lib.sh"

export TP="snap$$" KAFKA_BOOTSTRAP="$PC_KAFKA_BOOTSTRAP"
export PG_DSN=$(new_db "snap_$$")
export NOCODB_TOKEN="tok-$$-secret"
BARE=$(new_git_repo remote.git --bare)
W="$TEST_TMP"
cat >"$W/pipeline.yaml" <<YAML
apiVersion: pipectl/v1
kind: Pipeline
metadata: {name: snap}
kafka:
  bootstrap: \${KAFKA_BOOTSTRAP}
  topics:
    - {name: "\${TP}.events", partitions: 2}
postgres:
  dsn: "\${PG_DSN} password=literal-pw-$$"
  schemas:
    - name: app
      tables:
        - name: events
          columns:
            - {name: id, type: bigint, primary_key: true}
git:
  repo: ./state
  branch: main
  path: envs/test
  push: origin
  remote_url: $BARE
YAML

expect_rc 0 pipectl -f "$W/pipeline.yaml" apply
assert_contains "$OUT" "pushed" "apply reports the push"
LOCAL=$(git -C "$W/state" rev-parse main)
assert_eq "$LOCAL" "$(git --git-dir="$BARE" rev-parse main)" "remote main equals the local snapshot commit"
git -C "$W/state" show main:envs/test/manifest.yaml >"$W/snap.yaml"
assert_contains "$(cat "$W/snap.yaml")" "password=<redacted>" "literal DSN password redacted"
assert_not_contains "$(git --git-dir="$BARE" log -p --all)" "literal-pw-$$" "no password in the pushed history"
git -C "$W/state" show main:envs/test/observed.json | jq -e ".tables[] | select(.name==\"events\")" >/dev/null ||
    fail "observed.json lacks app.events"

# nothing changed: snapshot makes no commit
expect_rc 0 pipectl -f "$W/pipeline.yaml" snapshot -m "nightly"
assert_eq "$LOCAL" "$(git -C "$W/state" rev-parse main)" "unchanged state: no new commit"

# drift behind pipectl's back is recorded by snapshot, with the given message, and pushed
kafka_topics --alter --topic "$TP.events" --partitions 4 >/dev/null
expect_rc 0 pipectl -f "$W/pipeline.yaml" snapshot -m "record manual partition change"
NEW=$(git -C "$W/state" rev-parse main)
[[ "$NEW" != "$LOCAL" ]] || fail "drift not committed"
assert_eq "record manual partition change" "$(git -C "$W/state" log -1 --format=%s main)" "commit message"
assert_eq "$LOCAL" "$(git -C "$W/state" rev-parse main~1)" "new commit's parent is the previous snapshot"
assert_eq "$NEW" "$(git --git-dir="$BARE" rev-parse main)" "drift snapshot pushed"
git -C "$W/state" show main:envs/test/observed.json | jq -e ".topics[] | select(.name==\"$TP.events\") | .partitions == 4" >/dev/null ||
    fail "observed.json does not record 4 partitions"
