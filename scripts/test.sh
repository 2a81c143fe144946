#!/usr/bin/env bash
# The one test command: installs what the tests need, starts a throwaway
# PostgreSQL cluster on a free 127.0.0.1 port, runs every test, and removes
# the cluster again whatever happens. Extra arguments go to the test runner,
# e.g. `scripts/test.sh --test store`. Exits with the test runner's code.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- packages ---------------------------------------------------------------
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
for package in docker-registry skopeo apache2-utils openssl; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- PostgreSQL ---------------------------------------------------------------
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/regkeeper-test.XXXXXX")
chmod 755 "$work_dir"
pg_dir="$work_dir/pg"

# PostgreSQL refuses to run as root: run its commands as `postgres` then.
if [ "$(id -u)" -eq 0 ]; then
    install -d -o postgres -g postgres -m 700 "$pg_dir"
    as_pg() { runuser -u postgres -- "$@"; }
else
    install -d -m 700 "$pg_dir"
    as_pg() { "$@"; }
fi

stop_cluster() {
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work_dir"
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $((20000 + RANDOM % 40000))
}

started=""
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $pg_dir -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB" start >/dev/null; then
        started=yes
        break
    fi
    log "PostgreSQL did not start on port $port (attempt $attempt)"
done
if [ -z "$started" ]; then
    cat "$pg_dir/log" >&2 || true
    exit 1
fi

export REGKEEPER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
log "PostgreSQL at $REGKEEPER_TEST_POSTGRES_URL"

# --- tests --------------------------------------------------------------------
# Every target unless the arguments pick some (`--test store`, `--lib`, ...):
# `--all-targets` would otherwise add all the others back.
targets=(--all-targets)
for argument in "$@"; do
    case "$argument" in
        --lib | --bin | --bin=* | --bins | --test | --test=* | --tests | --example | --example=* | --examples \
            | --bench | --bench=* | --benches | --all-targets | --doc) targets=() ;;
    esac
done

status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${targets[@]}" "$@" || status=$?
else
    log "cargo-nextest not found; using cargo test"
    cargo test "${targets[@]}" "$@" || status=$?
fi
exit "$status"
