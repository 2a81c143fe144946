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
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
missing=()
# groff-base renders the man page (tests/cli.rs); systemd brings
# systemd-analyze and systemd-sysusers (tests/package.rs); prometheus brings
# promtool and a server (tests/metrics.rs).
for package in docker-registry skopeo apache2-utils openssl groff-base systemd prometheus; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- PostgreSQL ---------------------------------------------------------------
make_work_dir regkeeper-test

# Durability off: the cluster is thrown away. Enough connections for
# parallel tests, each with its own pool.
start_postgres "$work_dir" -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=300 -c shared_buffers=32MB
export REGKEEPER_TEST_POSTGRES_URL="$POSTGRES_URL"
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
