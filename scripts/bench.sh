#!/usr/bin/env bash
# The benchmark suite (never part of the tests). On this machine it builds
# the release binary, generates what each measurement needs, runs each one
# several times and prints one table: every figure with its median, its
# spread (lowest-highest sample) and, where one is defined, its floor and the
# ratio to it. The table also goes to target/bench/bench-DATE.json and
# target/bench/latest.json. Everything else it writes lives in a temp dir,
# removed at the end; every process it starts is stopped by PID.
#
#   scripts/bench.sh [--only SUITES] [--runs N] [--scale] [--keep]
#
#   --only SUITES  comma-separated subset of: intake,events,sync,security
#   --runs N       runs per measurement (default 5; sync passes: 3)
#   --scale        the sync registry is 5,000 x 10 instead of 1,000 x 10
#   --keep         keep the temp dir (logs, databases)
#
# Suites:
#   intake    notifications accepted per second on 127.0.0.1: wrk POSTs
#             docker-registry push envelopes (token header, unique event
#             ids) to the daemon's intake on the default SQLite database;
#             afterwards the stored rows are counted: every 2xx answer must
#             be a stored row (durability), none may be missing.
#   events    push-to-database latency through a real registry's
#             notifications, and events applied per second for 10,000
#             stored push events (scripts/bench-events.sh).
#   sync      full, no-change and 1%-changed passes on a generated registry
#             against the `curl -Z` floor (scripts/bench-sync.sh).
#   security  images scanned per second with the fixture backend and the
#             stand-in Clair server (benches/security.rs).
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

arguments="$*"
suites="intake,events,sync,security"
runs=5
scale=""
keep=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --only) suites=${2:?--only needs a list}; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --scale) scale=yes ;;
        --keep) keep=yes ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'bench.sh: unknown argument %s\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$runs" in '' | *[!0-9]* | 0) printf 'bench.sh: --runs needs a positive number\n' >&2; exit 2 ;; esac

repo_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_dir"
log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
wants() { [[ ",$suites," == *",$1,"* ]]; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- packages ----------------------------------------------------------------
missing=()
for pair in docker-registry:docker-registry wrk:wrk curl:curl jq:jq python3:python3 sqlite3:sqlite3 \
    /usr/bin/time:time; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -x "${PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] || missing+=(postgresql-15)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- build ---------------------------------------------------------------------
log "building the release binary and the benchmarks"
cargo build --quiet --release --bin regkeeper
regkeeper="$repo_dir/target/release/regkeeper"
# The bench target's executable, built with the release profile.
bench_executable() {
    cargo bench --no-run --bench "$1" --message-format=json 2>/dev/null \
        | jq -r 'select(.reason == "compiler-artifact" and .target.kind == ["bench"]) | .executable' \
        | tail -n 1
}
if wants security; then
    cargo bench --quiet --no-run --bench security
    security_bench=$(bench_executable security)
fi

# --- temp dir, cleanup -----------------------------------------------------------
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/regkeeper-bench.XXXXXX")
chmod 755 "$work_dir"
samples="$work_dir/samples.jsonl"
: >"$samples"
pids=()

# Stops a process we started: SIGTERM, then SIGKILL after `grace` seconds.
stop_process() {
    local pid=$1 grace=${2:-10} waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((grace * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh

cleanup() {
    local status=$? pid
    for pid in "${pids[@]}"; do stop_process "$pid"; done
    stop_postgres
    if [ -n "$keep" ]; then log "kept $work_dir"; else rm -rf "$work_dir"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls a command until it succeeds, or fails after `deadline` seconds.
wait_for() {
    local deadline=$1 what=$2
    shift 2
    local end=$((SECONDS + deadline))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || { log "gave up after ${deadline}s waiting for $what"; return 1; }
        sleep 0.1
    done
}

# Records one sample: SUITE FIGURE UNIT VALUE [FLOOR [NOTE]].
sample() {
    jq -cn --arg suite "$1" --arg figure "$2" --arg unit "$3" --argjson value "$4" \
        --arg floor "${5:-}" --arg note "${6:-}" \
        '{suite: $suite, figure: $figure, unit: $unit, value: $value}
         + (if $floor == "" then {} else {floor: ($floor | tonumber)} end)
         + (if $note == "" then {} else {note: $note} end)' >>"$samples"
}

# Starts the daemon in DIR (its working directory, where its config and
# SQLite file live) and waits until its intake answers on PORT.
start_daemon() {
    local dir=$1 port=$2
    (cd "$dir" && exec env RUST_LOG="${RUST_LOG:-warn}" "$regkeeper" --config schedules.toml) \
        >"$dir/regkeeper.log" 2>&1 &
    daemon_pid=$!
    pids+=("$daemon_pid")
    daemon_answers() {
        kill -0 "$daemon_pid" 2>/dev/null || return 2
        curl -fsS "http://127.0.0.1:$port/healthz"
    }
    wait_for 60 "the daemon's intake on port $port" daemon_answers \
        || { cat "$dir/regkeeper.log" >&2; die "the daemon did not start"; }
}

# --- intake ------------------------------------------------------------------------
intake_seconds=${BENCH_INTAKE_SECONDS:-8}
intake_connections=${BENCH_INTAKE_CONNECTIONS:-16}

suite_intake() {
    local dir="$work_dir/intake" port token run summary requests non_2xx duration_us before after
    local stored accepted rate
    mkdir -p "$dir"
    port=$(free_port)
    token="Token bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    printf '%s' "$token" >"$dir/notify-token"
    # The intake alone: the events job is disabled so nothing else writes,
    # and no registry is needed (the intake never talks to it).
    cat >"$dir/schedules.toml" <<EOF
[database]
url = "sqlite://regkeeper.db"

[registry]
url = "http://127.0.0.1:9"

[notifications]
listen = "127.0.0.1:$port"
token_file = "notify-token"

[jobs.registry-events]
handler = "events"
schedule = "*/2 * * * * *"
enabled = false
EOF
    start_daemon "$dir" "$port"
    count_rows() { sqlite3 "$dir/regkeeper.db" 'SELECT count(*) FROM registry_events'; }
    for run in $(seq 1 "$runs"); do
        before=$(count_rows)
        BENCH_RUN=$run BENCH_TOKEN="$token" wrk -t1 -c"$intake_connections" -d"${intake_seconds}s" \
            -s scripts/lib/intake.lua "http://127.0.0.1:$port/v2/webhooks/events" >"$dir/wrk-$run.txt"
        summary=$(sed -n 's/^wrk-summary //p' "$dir/wrk-$run.txt")
        [ -n "$summary" ] || { cat "$dir/wrk-$run.txt" >&2; die "wrk printed no summary"; }
        requests=$(jq .requests <<<"$summary")
        non_2xx=$(jq .non_2xx <<<"$summary")
        duration_us=$(jq .duration_us <<<"$summary")
        [ "$non_2xx" = 0 ] || { tail -n 20 "$dir/regkeeper.log" >&2; die "intake: $non_2xx answers were not 2xx"; }
        after=$(count_rows)
        stored=$((after - before))
        accepted=$((requests - non_2xx))
        # Requests still in flight when wrk stopped may be stored without
        # wrk counting their answers: at most one per connection.
        if [ "$stored" -lt "$accepted" ] || [ "$stored" -gt $((accepted + intake_connections)) ]; then
            die "intake: $accepted notifications accepted but $stored rows stored"
        fi
        rate=$(jq -n "$accepted / ($duration_us / 1e6)")
        log "intake run $run: $accepted accepted in $((duration_us / 1000)) ms, $stored rows stored"
        sample intake "notifications accepted (SQLite)" "/s" "$rate" "" \
            "wrk -t1 -c$intake_connections, ${intake_seconds}s per run; every 2xx answer counted as a stored row"
        sample intake "answer latency p99 (SQLite)" "ms" "$(jq '.latency_p99_us / 1000' <<<"$summary")"
    done
    stop_process "$daemon_pid" 35
}

# --- events, sync, security ----------------------------------------------------------
# scripts/bench-events.sh (examples/events_bench.rs), once per run: 10,000
# stored push events applied by the events handler with `target.references`,
# without them (one manifest GET each, beside its curl -Z floor) and for
# digests already recorded, and the push-to-database latency of 200 pushes
# through a real registry's notifications and the release daemon (default
# 2 s schedule plus the wake-up). Each run pushes 10,000 manifests first, so
# the default is one run.
events_runs=${BENCH_EVENTS_RUNS:-1}
suite_events() {
    local run output line floor
    [ -x scripts/bench-events.sh ] || { log "events: scripts/bench-events.sh is missing; skipped"; return; }
    for run in $(seq 1 "$events_runs"); do
        output="$work_dir/events-$run.txt"
        scripts/bench-events.sh >"$output" 2>>"$work_dir/events.log" \
            || { tail -n 30 "$work_dir/events.log" >&2; die "scripts/bench-events.sh failed"; }
        cat "$output" >&2
        # The floor of the GET run: curl -Z fetching the same manifests.
        floor=$(sed -nE 's/^floor: .* ([0-9.]+) GETs\/s.*/\1/p' "$output")
        while IFS= read -r line; do
            case "$line" in
                "apply "*" with references"*)
                    sample events "events applied, with references (SQLite)" /s \
                        "$(sed -E 's/.* ([0-9.]+) events\/s.*/\1/' <<<"$line")" ;;
                "apply "*" digests known"*)
                    sample events "events applied, digest already recorded (SQLite)" /s \
                        "$(sed -E 's/.* ([0-9.]+) events\/s.*/\1/' <<<"$line")" ;;
                "apply "*" without references"*)
                    sample events "events applied, one manifest GET each (SQLite)" /s \
                        "$(sed -E 's/.* ([0-9.]+) events\/s.*/\1/' <<<"$line")" "$floor" \
                        "floor: the same GETs by curl -Z, what the registry serves here" ;;
                "push-to-database latency"*)
                    sample events "push-to-database latency p50 (SQLite)" ms \
                        "$(sed -E 's/.*p50 ([0-9.]+) ms.*/\1/' <<<"$line")"
                    sample events "push-to-database latency p99 (SQLite)" ms \
                        "$(sed -E 's/.*p99 ([0-9.]+) ms.*/\1/' <<<"$line")" ;;
            esac
        done <"$output"
    done
}
# scripts/bench-sync.sh, once per run: a registry of REPOSITORIES x 10 tags
# generated on disk, `regkeeper --once sync` (update-delete, concurrency 8,
# SQLite) timed for a full first pass, a no-change pass, a pass after 1%
# of the tags changed and one after 1% were deleted, each against its
# `curl -Z` floor (the same request set with the same parallelism; the
# deleting pass against the no-change floor, so that the ratio shows what
# confirming its deletions costs); requests counted in the registry's log,
# peak RSS from GNU time.
sync_runs=${BENCH_SYNC_RUNS:-3}
suite_sync() {
    local repositories=1000 run output pass wall rss requests total label floor
    [ -z "$scale" ] || repositories=5000
    [ -x scripts/bench-sync.sh ] || { log "sync: scripts/bench-sync.sh is missing; skipped"; return; }
    label="$(sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$repositories") x 10"
    for run in $(seq 1 "$sync_runs"); do
        output="$work_dir/sync-$run.tsv"
        scripts/bench-sync.sh --scale "$repositories" >"$output" 2>>"$work_dir/sync.log" \
            || { tail -n 30 "$work_dir/sync.log" >&2; die "scripts/bench-sync.sh failed"; }
        grep -q '^# no-change pass: database unchanged' "$output" \
            || die "sync: the no-change pass changed the database (see $output)"
        for pass in full no-change one-percent one-percent-deleted; do
            IFS=$'\t' read -r _ wall rss requests _ < <(grep -P "^$pass\t" "$output")
            case "$pass" in
                full) floor=$(awk -F'\t' '$1 == "floor" && $2 ~ /^full/ { print $3 }' "$output") ;;
                no-change | one-percent-deleted) floor=$(awk -F'\t' '$1 == "floor" && $2 ~ /^no-change/ { print $3 }' "$output") ;;
                one-percent) floor=$(awk -F'\t' '$1 == "floor" && $2 ~ /^1%/ { print $3 }' "$output") ;;
            esac
            total=$(tr ' ' '\n' <<<"$requests" | awk -F= 'NF == 2 { sum += $2 } END { print sum + 0 }')
            case "$pass" in
                one-percent) pass=1%-changed ;;
                one-percent-deleted) pass=1%-deleted ;;
            esac
            sample sync "$pass pass, $label (SQLite)" s "$wall" "$floor" \
                "requests per pass: $requests"
            sample sync "$pass pass requests" requests "$total"
            sample sync "$pass pass peak RSS" MiB "$rss"
        done
        log "sync run $run: $(grep -P '^(full|no-change|one-percent|one-percent-deleted)\t' "$output" | cut -f1,2 | tr '\t\n' '= ')"
    done
}
# benches/security.rs: 1,000 tags over 200 digests in a real docker-registry,
# scanned by the security handler with the fixture backend and the stand-in
# Clair v2 server, on SQLite and on PostgreSQL (fsync on); and database time
# per stored vulnerability for an image with 650.
# The bench pushes its 200 images once and repeats the measurements $runs times.
suite_security() {
    mkdir -p "$work_dir/security"
    start_postgres "$work_dir/security" || die "PostgreSQL did not start"
    REGKEEPER_BENCH_SAMPLES="$samples" REGKEEPER_BENCH_RUNS="$runs" \
        REGKEEPER_TEST_POSTGRES_URL="$POSTGRES_URL" "$security_bench" --bench \
        >"$work_dir/security.log" 2>&1 \
        || { tail -n 30 "$work_dir/security.log" >&2; die "the security benchmark failed"; }
    grep -E '^(scan|store) ' "$work_dir/security.log" >&2 || true
    stop_postgres
}

# --- run ------------------------------------------------------------------------------
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
for suite in intake events sync security; do
    if wants "$suite"; then
        log "suite $suite"
        suite_start=$SECONDS
        "suite_$suite"
        log "suite $suite took $((SECONDS - suite_start))s"
    fi
done

mkdir -p target/bench
out="target/bench/bench-$(date -u +%Y%m%dT%H%M%SZ).json"
[ -s "$samples" ] || die "no figures measured"
python3 scripts/lib/bench_report.py "$samples" "$out" \
    "date=$started" "machine=$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB" \
    "load_at_start=$load_at_start" "load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)" \
    "command=scripts/bench.sh${arguments:+ $arguments}" \
    "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
cp "$out" target/bench/latest.json
log "written $out and target/bench/latest.json ($SECONDS s in all)"
