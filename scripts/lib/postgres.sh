# shellcheck shell=bash
# Sourced by scripts/*.sh: a throwaway PostgreSQL cluster in a directory of
# the caller's, on a free 127.0.0.1 port. The caller removes it with
# `stop_postgres` (from an EXIT trap).
#
#   start_postgres DIR [SERVER OPTION...]   starts it; sets POSTGRES_URL
#   stop_postgres                           stops it (safe to call twice)
#   make_work_dir PREFIX                    makes a temp dir in $work_dir and
#                                           traps EXIT to stop the cluster and
#                                           remove the dir, whatever happens

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
_pg_dir=""

# PostgreSQL refuses to run as root: run its commands as `postgres` then.
_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $((20000 + RANDOM % 40000))
}

start_postgres() {
    local parent=$1
    shift
    _pg_dir="$parent/pg"
    chmod 755 "$parent"
    if [ "$(id -u)" -eq 0 ]; then
        install -d -o postgres -g postgres -m 700 "$_pg_dir"
    else
        install -d -m 700 "$_pg_dir"
    fi
    if ! _as_pg "$PG_BIN/initdb" -D "$_pg_dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
        >"$_pg_dir/initdb.log" 2>&1; then
        cat "$_pg_dir/initdb.log" >&2
        return 1
    fi
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$(_free_port)
        if _as_pg "$PG_BIN/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/log" -w -t 60 \
            -o "-p $port -c listen_addresses=127.0.0.1 -k $_pg_dir $*" start >/dev/null; then
            POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
            return 0
        fi
        echo "PostgreSQL did not start on port $port (attempt $attempt)" >&2
    done
    cat "$_pg_dir/log" >&2 || true
    return 1
}

stop_postgres() {
    if [ -n "$_pg_dir" ] && [ -f "$_pg_dir/data/postmaster.pid" ]; then
        _as_pg "$PG_BIN/pg_ctl" -D "$_pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

make_work_dir() {
    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap 'stop_postgres; rm -rf "$work_dir"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
