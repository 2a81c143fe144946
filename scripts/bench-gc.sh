#!/usr/bin/env bash
# Retention (gc) benchmark (not a test). Writes a registry of REPOSITORIES x
# 10 tags directly on disk (examples/gen_registry.rs), serves it with
# docker-registry, fills the database with one `regkeeper --once sync`, and
# times a gc job whose one policy keeps the newest 9 tags of every
# repository (one deletion per repository):
#   plan    `--once prune --dry-run`: reading the tags, planning every
#           repository, writing the dry-run audit rows and printing the plan
#   delete  `--once prune`: the same plan, then one manifest DELETE per
#           digest and its database change and audit row
# The deletions are compared with their floor: the same DELETEs issued by
# `curl -Z --parallel-max 1` (a pass deletes one digest at a time) against
# the registry restored to its state before the pass. Results for people on
# stdout; see docs/performance.md.
#
#   scripts/bench-gc.sh [--scale REPOSITORIES] [--runs N]
#
# Defaults: 1000 repositories, 3 runs of the planning. Needs docker-registry,
# curl, sqlite3 and GNU time (`apt-get install docker-registry curl sqlite3 time`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/registry.sh
. scripts/lib/registry.sh

repositories=1000
tags=10
runs=3
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) repositories=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "usage: $0 [--scale REPOSITORIES] [--runs N]" >&2; exit 2 ;;
    esac
done

for tool in docker-registry curl sqlite3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-gc.sh: $tool is missing" >&2; exit 2; }
done

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/regkeeper-bench-gc.XXXXXX")
registry_pid=""
stop_registry() {
    if [ -n "$registry_pid" ]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
        registry_pid=""
    fi
}
cleanup() {
    stop_registry
    rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --bin regkeeper --example gen_registry >&2
regkeeper=$target_dir/release/regkeeper
generator=$target_dir/release/examples/gen_registry

seconds() { date +%s.%N; }
elapsed() { awk -v from="$1" -v to="$2" 'BEGIN { printf "%.2f", to - from }'; }

"$generator" generate "$work_dir/registry" "$repositories" "$tags" >&2
port=$(_free_port)
base=http://127.0.0.1:$port
write_registry_config "$work_dir/registry.yml" "$work_dir/registry/data" "$port" warn
start_registry() {
    docker-registry serve "$work_dir/registry.yml" >>"$work_dir/registry.log" 2>&1 &
    registry_pid=$!
    wait_for_registry "$base" || exit 1
}
start_registry

cat >"$work_dir/schedules.toml" <<EOF
[database]
url = "sqlite://$work_dir/bench.db"
[registry]
url = "$base"
catalog_page_size = 1000
timeout = "60s"
[notifications]
listen = ""
[jobs.sync]
handler = "sync"
schedule = "0 0 0 * * *"
strategy = "update"
[jobs.prune]
handler = "gc"
schedule = "0 0 3 * * *"
[[jobs.prune.policy]]
repositories = ["**"]
keep_latest = $((tags - 1))
EOF
"$regkeeper" --config "$work_dir/schedules.toml" --once sync >/dev/null
# The registry as the pass finds it, to restore for the floor.
stop_registry
cp -a "$work_dir/registry/data" "$work_dir/data.before"
start_registry

# One timed run of the gc job: wall seconds, peak RSS and the summary line.
timed() {
    local name=$1
    shift
    /usr/bin/time -v "$regkeeper" --config "$work_dir/schedules.toml" --once prune "$@" \
        >"$work_dir/$name.out" 2>"$work_dir/$name.err" || { tail -n 20 "$work_dir/$name.err" >&2; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$work_dir/$name.err")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work_dir/$name.err")
    printf '%s\t%s\t%s\t%s\n' "$name" "$wall" "$((rss / 1024))" "$(grep -E '^prune: ' "$work_dir/$name.out" | tail -n 1)"
}

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
echo "# $repositories repositories x $tags tags, keep_latest $((tags - 1)): $repositories deletions, SQLite"
printf 'run\twall_s\tpeak_rss_mib\tsummary\n'
for run in $(seq 1 "$runs"); do
    timed "plan-$run" --dry-run
done
timed delete

# The floor: the same DELETEs, one at a time, on the registry as it was.
sqlite3 "$work_dir/bench.db" \
    "SELECT DISTINCT repository || ' ' || digest FROM gc_deletions WHERE dry_run = 0" \
    | while read -r repository digest; do
        printf 'request = "DELETE"\nurl = "%s/v2/%s/manifests/%s"\noutput = "/dev/null"\n' \
            "$base" "$repository" "$digest"
    done >"$work_dir/deletes.curl"
deletes=$(grep -c '^url' "$work_dir/deletes.curl")
stop_registry
rm -rf "$work_dir/registry/data"
cp -a "$work_dir/data.before" "$work_dir/registry/data"
start_registry
started=$(seconds)
curl -s --no-progress-meter -Z --parallel-max 1 -K "$work_dir/deletes.curl" 2>/dev/null
printf 'floor\t%s\t\t%s DELETEs by curl -Z --parallel-max 1\n' "$(elapsed "$started" "$(seconds)")" "$deletes"
