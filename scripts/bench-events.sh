#!/usr/bin/env bash
# Events benchmark (not a test): builds the release binary and the
# `events_bench` example, then on a fresh SQLite file (and, with --postgres,
# on a throwaway PostgreSQL 15 cluster) measures events applied per second
# for stored push events with and without `target.references` (the run
# without them next to its floor: the same manifest GETs by `curl -Z`), and
# the push-to-database latency through a real registry's notifications.
# Arguments: [--postgres] [EVENTS [PUSHES [REPOSITORIES]]] (default 10000
# 200 100).
# Results for people on stdout; see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh

with_postgres=""
if [ "${1:-}" = "--postgres" ]; then
    with_postgres=yes
    shift
fi
make_work_dir regkeeper-bench-events

cargo build --release --bin regkeeper --example events_bench
bench=target/release/examples/events_bench
"$bench" sqlite "$work_dir/bench.db" "$@"
if [ -n "$with_postgres" ]; then
    start_postgres "$work_dir"
    "$bench" postgres "$POSTGRES_URL" "$@"
fi
