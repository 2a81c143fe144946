#!/usr/bin/env bash
# Benchmark of the `security` job (see benches/security.rs): scan throughput
# with the fixture backend and the stand-in Clair server (1,000 tags over 200
# digests in a real docker-registry), and database time per stored
# vulnerability (an image with 650). Runs on SQLite and on a throwaway
# PostgreSQL cluster with default durability settings (fsync on), started on
# a free 127.0.0.1 port and removed afterwards. Needs docker-registry and
# PostgreSQL 15 (installed from apt when missing, as scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench-security.sh: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q 'install ok installed' || missing+=(docker-registry)
[ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/regkeeper-bench.XXXXXX")
chmod 755 "$work_dir"
pg_dir="$work_dir/pg"
if [ "$(id -u)" -eq 0 ]; then
    install -d -o postgres -g postgres -m 700 "$pg_dir"
    as_pg() { runuser -u postgres -- "$@"; }
else
    install -d -m 700 "$pg_dir"
    as_pg() { "$@"; }
fi
stop_cluster() {
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work_dir"
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $pg_dir -c max_connections=100" start >/dev/null \
    || { cat "$pg_dir/log" >&2; exit 1; }
export REGKEEPER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"

cargo bench --bench security "$@"
