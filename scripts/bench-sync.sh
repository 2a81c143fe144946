#!/usr/bin/env bash
# Sync benchmark (not a test). Writes a registry of REPOSITORIES x 10 tags
# directly on disk (examples/gen_registry.rs), serves it with docker-registry,
# and times `regkeeper --once sync` (strategy update-delete) three times:
#   full      first pass on an empty database (every tag created)
#   no-change second pass, nothing changed: must write nothing and issue only
#             catalog, tag-list and HEAD requests
#   1%        after 1% of the tags were re-pointed at new manifests
# Each pass is compared with its floor: the same request set issued by
# `curl -Z --parallel-max N` with the same parallelism N. Peak memory is
# `/usr/bin/time -v`'s maximum resident set size. Results for people on stdout;
# see docs/performance.md.
#
#   scripts/bench-sync.sh [--scale REPOSITORIES] [--concurrency N] [--database sqlite|postgres]
#
# Defaults: 1000 repositories, concurrency 8, SQLite. Needs docker-registry,
# curl and GNU time (`apt-get install docker-registry curl time`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=scripts/lib/registry.sh
. scripts/lib/registry.sh

repositories=1000
tags=10
concurrency=8
database=sqlite
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) repositories=$2; shift 2 ;;
        --concurrency) concurrency=$2; shift 2 ;;
        --database) database=$2; shift 2 ;;
        *) echo "usage: $0 [--scale REPOSITORIES] [--concurrency N] [--database sqlite|postgres]" >&2; exit 2 ;;
    esac
done

for tool in docker-registry curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-sync.sh: $tool is missing" >&2; exit 2; }
done

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/regkeeper-bench-sync.XXXXXX")
registry_pid=""
cleanup() {
    if [ -n "$registry_pid" ]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    stop_postgres
    rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cargo build --release --bin regkeeper --example gen_registry >&2
regkeeper=$PWD/target/release/regkeeper
generator=$PWD/target/release/examples/gen_registry

seconds() { date +%s.%N; }
elapsed() { awk -v from="$1" -v to="$2" 'BEGIN { printf "%.2f", to - from }'; }

started=$(seconds)
"$generator" generate "$work_dir/registry" "$repositories" "$tags" >&2
echo "generated $repositories x $tags on disk in $(printf %.1f "$(elapsed "$started" "$(seconds)")") s" >&2

port=$(_free_port)
write_registry_config "$work_dir/registry.yml" "$work_dir/registry/data" "$port" info
docker-registry serve "$work_dir/registry.yml" >"$work_dir/registry.log" 2>&1 &
registry_pid=$!
base=http://127.0.0.1:$port
wait_for_registry "$base"
"$generator" urls "$work_dir/registry" "$base"

case "$database" in
    sqlite) database_url="sqlite://$work_dir/bench.db" ;;
    postgres)
        start_postgres "$work_dir"
        database_url=$POSTGRES_URL
        ;;
    *) echo "bench-sync.sh: unknown database $database" >&2; exit 2 ;;
esac
cat >"$work_dir/schedules.toml" <<EOF
[database]
url = "$database_url"
[registry]
url = "$base"
concurrency = $concurrency
catalog_page_size = 1000
timeout = "60s"
[notifications]
listen = ""
[jobs.sync]
handler = "sync"
schedule = "0 0 0 * * *"
strategy = "update-delete"
EOF

# Counts of requests by kind in the registry log since line $1.
requests_since() {
    tail -n +"$1" "$work_dir/registry.log" | grep 'msg="response completed"' \
        | awk '{ method = ""; uri = ""
                 for (i = 1; i <= NF; i++) {
                     if ($i ~ /^http.request.method=/) method = substr($i, 21)
                     if ($i ~ /^http.request.uri=/) uri = $i
                 }
                 kind = (uri ~ /_catalog/) ? "catalog" : (uri ~ /tags\/list/) ? "tags" : (uri ~ /manifests/) ? method : "other"
                 count[kind]++ }
               END { for (k in count) printf "%s=%d ", k, count[k] }'
}

database_fingerprint() {
    case "$database" in
        sqlite) sqlite3 "$work_dir/bench.db" \
            "SELECT COUNT(*), COALESCE(SUM(updated_at), 0), COALESCE(MAX(id), 0) FROM tags; SELECT COUNT(*) FROM repositories" | tr '\n' ' ' ;;
        postgres) psql -At "$database_url" \
            -c "SELECT COUNT(*), COALESCE(SUM(updated_at), 0), COALESCE(MAX(id), 0) FROM tags" \
            -c "SELECT COUNT(*) FROM repositories" | tr '\n' ' ' ;;
    esac
}

# One timed pass: prints wall seconds, peak RSS and the --once summary.
pass() {
    local name=$1 line
    line=$(($(wc -l <"$work_dir/registry.log") + 1))
    /usr/bin/time -v "$regkeeper" --config "$work_dir/schedules.toml" --once sync \
        >"$work_dir/$name.out" 2>"$work_dir/$name.err" || { cat "$work_dir/$name.err" >&2; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$work_dir/$name.err")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work_dir/$name.err")
    sleep 1 # let the registry flush its log
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$wall" "$((rss / 1024))" "$(requests_since "$line")" "$(tail -n 1 "$work_dir/$name.out")"
}

# The floor: the catalog (paged as regkeeper pages it), then every tag list,
# then one manifest request per tag, with N parallel connections.
floor() {
    local started last="" url manifests
    started=$(seconds)
    while :; do
        url="$base/v2/_catalog?n=1000${last:+&last=$last}"
        curl -fs -D "$work_dir/catalog.headers" -o "$work_dir/catalog.json" "$url"
        grep -qi '^link:' "$work_dir/catalog.headers" || break
        last=$(grep -o '"[^"]*"' "$work_dir/catalog.json" | tail -n 1 | tr -d '"')
    done
    curl -s -Z --parallel-max "$concurrency" -K "$work_dir/registry/tags.curl"
    for manifests in "$@"; do
        curl -s -Z --parallel-max "$concurrency" -K "$manifests"
    done
    elapsed "$started" "$(seconds)"
}

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
echo "# $repositories repositories x $tags tags, concurrency $concurrency, database $database"
printf 'pass\twall_s\tpeak_rss_mib\tregistry_requests\tsummary\n'
pass full
before=$(database_fingerprint)
pass no-change
after=$(database_fingerprint)
if [ "$before" = "$after" ]; then
    echo "# no-change pass: database unchanged ($after)"
else
    echo "# no-change pass CHANGED the database: $before -> $after"
fi
"$generator" mutate "$work_dir/registry" 1 >&2
pass one-percent

# The floor of the 1% pass: HEADs plus a GET for each changed tag.
changed_gets=$work_dir/changed.curl
"$generator" urls "$work_dir/registry" "$base"
# gets.curl: the Accept header, then a url and an output line per tag; the
# changed tags are every 100th from the 51st (gen_registry mutate).
{
    head -n 1 "$work_dir/registry/gets.curl"
    tail -n +2 "$work_dir/registry/gets.curl" | awk 'NR % 2 == 1 { n++ } (n - 1) % 100 == 50 { print }'
} >"$changed_gets"
printf 'floor\tfull (GET)\t%s\n' "$(floor "$work_dir/registry/gets.curl")"
printf 'floor\tno-change (HEAD)\t%s\n' "$(floor "$work_dir/registry/heads.curl")"
printf 'floor\t1%% (HEAD + GET)\t%s\n' "$(floor "$work_dir/registry/heads.curl" "$changed_gets")"

# A deleting pass: 1% of the tags removed from the registry. Each deletion
# is confirmed with a manifest GET answering 404 before it is written; the
# cost against the no-change pass above is those GETs.
"$generator" delete "$work_dir/registry" 1 >&2
pass one-percent-deleted
