# archive_cluster.sh: a private PostgreSQL 15 cluster archiving with `pipectl wal-push`, for the
# backup tests (archive_mode needs a restart, so the shared stack is left alone). Source it after
# lib.sh, then call
#   archive_cluster NAME [ARCHIVE_COMMAND] [EXTRA_CONF]
# which initdb's and starts the cluster in /tmp/pc-NAME.XXXXXX (a directory the server's OS user
# can reach: $TEST_TMP is private to root), stopped and removed at the end of the test. It sets
#   BASE DATA SOCK REPO LOG   the directory, data directory, unix socket dir, repository, server log
#   BIN                       a copy of $PIPECTL the server's user can surely execute
#   ARCHIVE_COMMAND           default: "@BIN@ wal-push --repository @REPO@ %p %f", with @BIN@
#                             and @REPO@ replaced by $BIN and $REPO
# EXTRA_CONF: more postgresql.conf lines (e.g. "archive_timeout = 5s").
# Also defined: as_pg (runs a command as the cluster's OS user: `postgres` when root), PG_OWNER,
# q SQL (psql on the cluster, one value per line), wait_for SECONDS WHAT CONDITION...,
# archived_up_to SEGMENT (the archiver has archived SEGMENT or a later one).

PG_BIN=${PC_PG_BIN:-/usr/lib/postgresql/15/bin}
[[ -x "$PG_BIN/initdb" ]] || fail "no PostgreSQL 15 binaries in $PG_BIN (set PC_PG_BIN)"
[[ -n "${PIPECTL:-}" && -x "$PIPECTL" ]] || fail "PIPECTL is not the built pipectl binary (got '${PIPECTL:-}')"

AS_PG=()
if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || fail "running as root needs the 'postgres' OS user (postgresql-15 package)"
    AS_PG=(runuser -u postgres --)
    PG_OWNER=postgres
else
    PG_OWNER=$(id -un)
fi
as_pg() { "${AS_PG[@]}" "$@"; }

archive_cluster() {
    local name=$1
    BASE=$(mktemp -d "/tmp/pc-$name.XXXXXX")
    chmod 755 "$BASE"
    DATA=$BASE/data SOCK=$BASE/sock REPO=$BASE/repo LOG=$BASE/pg.log BIN=$BASE/pipectl
    ARCHIVE_COMMAND=${2:-"@BIN@ wal-push --repository @REPO@ %p %f"}
    ARCHIVE_COMMAND=${ARCHIVE_COMMAND//@BIN@/$BIN}
    ARCHIVE_COMMAND=${ARCHIVE_COMMAND//@REPO@/$REPO}
    cp "$PIPECTL" "$BIN"
    chmod 755 "$BIN"
    mkdir -p "$DATA" "$SOCK" "$REPO"
    chmod 700 "$DATA"
    chown "$PG_OWNER" "$DATA" "$SOCK" "$REPO"
    touch "$LOG" && chown "$PG_OWNER" "$LOG"
    defer "as_pg '$PG_BIN/pg_ctl' -D '$DATA' -m immediate -w -t 20 stop >/dev/null 2>&1; rm -rf '$BASE'"

    as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
        >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log" >&2; fail "initdb failed"; }
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = 5432
wal_level = replica
archive_mode = on
archive_command = '$ARCHIVE_COMMAND'
max_wal_senders = 4
shared_buffers = 32MB
timezone = 'UTC'
log_line_prefix = '%m [%p] '
${3:-}
CONF
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null ||
        { tail -n 30 "$LOG" >&2; fail "PostgreSQL did not start"; }
}

q() { timeout 60 "$PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$SOCK" -p 5432 -U postgres -d postgres -c "$1"; }

wait_for() { # SECONDS DESCRIPTION CONDITION...: polls CONDITION (a command) every 0.25 s
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 4; i++)); do
        if "$@"; then return 0; fi
        sleep 0.25
    done
    fail "timed out after ${secs}s waiting for $what (archiver: $(q 'SELECT * FROM pg_stat_archiver' 2>&1))"$'\n'"$(tail -n 20 "$LOG")"
}

archived_up_to() { # SEGMENT: the archiver has archived SEGMENT or a later one
    local last
    last=$(q "SELECT last_archived_wal FROM pg_stat_archiver")
    [[ -n "$last" && ! "$last" < "$1" ]]
}
