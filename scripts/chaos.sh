#!/usr/bin/env bash
# The reliability suite with its long setting: daemons SIGKILLed at random
# while a real registry notifies them, a fault-injecting proxy in front of a
# real registry during update-delete passes, three daemons on one
# PostgreSQL, intake abuse, and every secret kept out of every output.
# The test suite (scripts/test.sh) runs the same scenarios with the short
# setting. Sizes can be overridden through the environment:
#   REGKEEPER_CHAOS_KILLS (long 100), REGKEEPER_CHAOS_NOTIFICATIONS (10000),
#   REGKEEPER_CHAOS_PASSES (200), REGKEEPER_CHAOS_IDLE_SOCKETS (1000).
# Prints one line of figures per scenario and exits with the runner's code.
set -euo pipefail
cd "$(dirname "$0")/.."

export REGKEEPER_CHAOS_KILLS="${REGKEEPER_CHAOS_KILLS:-100}"
export REGKEEPER_CHAOS_NOTIFICATIONS="${REGKEEPER_CHAOS_NOTIFICATIONS:-10000}"
export REGKEEPER_CHAOS_PASSES="${REGKEEPER_CHAOS_PASSES:-200}"
export REGKEEPER_CHAOS_IDLE_SOCKETS="${REGKEEPER_CHAOS_IDLE_SOCKETS:-1000}"

log_file="$(mktemp -t regkeeper-chaos.XXXXXX)"
trap 'rm -f "$log_file"' EXIT
started=$(date +%s)
status=0
bash scripts/test.sh --test chaos --test sync_faults --test intake_attacks \
    -E 'binary(chaos) | test(mixed_faults) | test(idle_sockets)' --profile chaos --no-capture \
    >"$log_file" 2>&1 || status=$?
grep -E '^chaos: ' "$log_file" | sed 's/^chaos: //' || true
grep -E '^\s+(FAIL|TIMEOUT) ' "$log_file" || true
printf 'chaos.sh: %s s, exit %s (full output: rerun with the same settings)\n' \
    "$(($(date +%s) - started))" "$status"
if [ "$status" -ne 0 ]; then
    tail -n 200 "$log_file"
fi
exit "$status"
