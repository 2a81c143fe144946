#!/usr/bin/env bash
# Benchmark of the registry client (see benches/registry.rs): catalog walk,
# tag lists and manifest HEADs of 1,000 repositories x 10 tags in a real
# docker-registry on 127.0.0.1, sequential and at concurrency 8, and tag
# lists under token auth. Needs docker-registry and openssl (installed from
# apt when missing, as scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for package in docker-registry openssl; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    printf 'bench-registry.sh: installing %s\n' "${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo bench --bench registry "$@"
