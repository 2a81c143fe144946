#!/usr/bin/env bash
# Store benchmark: builds the release `store_bench` example and runs it on a
# fresh SQLite file and on a throwaway PostgreSQL 15 cluster with default
# durability settings (fsync on). Arguments: [REPOSITORIES [TAGS_PER_REPOSITORY]]
# (default 1000 x 10). Results for people on stdout; see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh

make_work_dir regkeeper-bench

cargo build --release --example store_bench
bench=target/release/examples/store_bench
start_postgres "$work_dir"
"$bench" sqlite "$work_dir/bench.db" "$@"
"$bench" postgres "$POSTGRES_URL" "$@"
