#!/usr/bin/env bash
# The quick start: shows regkeeper doing its main job on the embedded SQLite
# default. Installs docker-registry and skopeo when missing, builds the
# binary, starts a registry on 127.0.0.1 whose notifications go to
# regkeeper's intake, starts the daemon with the default schedules.toml
# (adjusted only for the temp dir, ports, notification token and the fixture
# scanner), pushes a few small images with skopeo, deletes one by digest,
# waits until the database reflects all of it and prints what it holds.
#
# Everything it writes at run time lives in one temp dir, removed at the end
# (kept with --keep). Every process it starts is stopped by PID on exit.
#
#   scripts/demo.sh [--keep]
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

keep=""
for argument in "$@"; do
    case "$argument" in
        --keep) keep=yes ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'demo.sh: unknown argument %s\n' "$argument" >&2; usage >&2; exit 2 ;;
    esac
done

repo_dir=$(cd "$(dirname "$0")/.." && pwd)
log() { printf 'demo.sh: %s\n' "$*" >&2; }
heading() { printf '\n=== %s\n' "$*"; }
die() { log "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- packages ----------------------------------------------------------------
# Commands this script uses, and the Debian package that has each.
missing=()
for pair in docker-registry:docker-registry skopeo:skopeo curl:curl jq:jq python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- binary ------------------------------------------------------------------
# A debug build: from a fresh clone it builds in about half the time of a
# release build, and the demo handles a handful of images.
log "building regkeeper (cargo build, debug profile)"
(cd "$repo_dir" && cargo build --quiet --bin regkeeper)
regkeeper="$repo_dir/target/debug/regkeeper"

# --- temp dir, cleanup ---------------------------------------------------------
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/regkeeper-demo.XXXXXX")
mkdir -p "$work_dir/tmp"
registry_pid=""
daemon_pid=""

# Stops a process we started: SIGTERM, then SIGKILL if it has not exited
# within `grace` seconds.
stop_process() {
    local pid=$1 grace=$2 waited=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((grace * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    stop_process "$daemon_pid" 35
    stop_process "$registry_pid" 5
    if [ -n "$keep" ]; then
        log "kept $work_dir"
    else
        rm -rf "$work_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Child processes write their temp files in the temp dir too.
export TMPDIR="$work_dir/tmp"

port_is_free() {
    python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls a command until it succeeds, or fails after `deadline` seconds.
wait_for() {
    local deadline=$1 what=$2
    shift 2
    local end=$((SECONDS + deadline))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$end" ]; then
            log "gave up after ${deadline}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# --- ports, token --------------------------------------------------------------
if port_is_free 5000; then registry_port=5000; else registry_port=$(free_port); fi
intake_port=$(free_port)
registry="127.0.0.1:$registry_port"
token="Token $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$token" >"$work_dir/notify-token"
chmod 600 "$work_dir/notify-token"

# --- regkeeper -------------------------------------------------------------------
# The default schedules.toml with only these changes: the registry's port,
# the intake's port and token file, and the security job enabled with the
# fixture scanner. The database stays `sqlite://regkeeper.db`, relative to
# the configuration file's directory: the temp dir.
fixture=""
for candidate in packaging/scan-fixture.json examples/scan-fixture.json; do
    if [ -f "$repo_dir/$candidate" ]; then fixture="$repo_dir/$candidate"; break; fi
done
[ -n "$fixture" ] || die "no fixture scanner file (packaging/scan-fixture.json) in $repo_dir"
cp "$fixture" "$work_dir/scan-fixture.json"

config="$work_dir/schedules.toml"
sed -e "s|^url = \"http://127.0.0.1:5000\"|url = \"http://$registry\"|" \
    -e "s|^listen = \"127.0.0.1:5055\"|listen = \"127.0.0.1:$intake_port\"|" \
    -e 's|^# token_file = "/etc/regkeeper/notify-token"|token_file = "notify-token"|' \
    -e '/^\[jobs.security-scan\]/,/^$/ s|^enabled = false|enabled = true|' \
    -e 's|^# \[security.fixture\]|[security.fixture]|' \
    -e 's|^# file = "scan-fixture.json"|file = "scan-fixture.json"|' \
    "$repo_dir/schedules.toml" >"$config"
# Each change must have happened: the default file moved on otherwise.
for expected in "url = \"http://$registry\"" "listen = \"127.0.0.1:$intake_port\"" \
    'token_file = "notify-token"' '[security.fixture]' 'file = "scan-fixture.json"'; do
    grep -q "^$(sed 's/[][\.*^$/]/\\&/g' <<<"$expected")" "$config" \
        || die "could not adjust schedules.toml: no line $expected"
done
[ "$(sed -n '/^\[jobs.security-scan\]/,/^$/p' "$config" | grep -c '^enabled = true')" = 1 ] \
    || die "could not enable the security-scan job in schedules.toml"

heading "schedules.toml: the default, with these changes"
diff -U0 "$repo_dir/schedules.toml" "$config" | grep -E '^[-+][^-+]' | sed 's/ \{2,\}#.*//' || true

rk() { (cd "$work_dir" && "$regkeeper" --config schedules.toml "$@"); }
rk check >/dev/null

# --- docker-registry -------------------------------------------------------------
cat >"$work_dir/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $work_dir/registry}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http: {addr: $registry}
health: {storagedriver: {enabled: false}}
notifications:
  events: {includereferences: true}
  endpoints:
    - name: regkeeper
      url: http://127.0.0.1:$intake_port/v2/webhooks/events
      headers: {Authorization: ["$token"]}
      timeout: 2s
      threshold: 3
      backoff: 1s
EOF
chmod 600 "$work_dir/registry.yml"

log "starting docker-registry on $registry"
docker-registry serve "$work_dir/registry.yml" >"$work_dir/registry.log" 2>&1 &
registry_pid=$!
wait_for 30 "docker-registry on $registry" curl -fsS "http://$registry/v2/" \
    || { cat "$work_dir/registry.log" >&2; exit 1; }

log "starting regkeeper (intake on 127.0.0.1:$intake_port, database $work_dir/regkeeper.db)"
(cd "$work_dir" && exec env RUST_LOG="${RUST_LOG:-info}" "$regkeeper" --config schedules.toml) \
    >"$work_dir/regkeeper.log" 2>&1 &
daemon_pid=$!
daemon_is_up() {
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work_dir/regkeeper.log" >&2; die "regkeeper exited"; }
    curl -fsS "http://127.0.0.1:$intake_port/healthz"
}
wait_for 60 "regkeeper's intake" daemon_is_up || { cat "$work_dir/regkeeper.log" >&2; exit 1; }

# --- images ------------------------------------------------------------------------
# An OCI image layout with tiny one-file layers, written by hand: each image
# is a gzip'd tar layer, an OCI config and an OCI manifest; `web` is an OCI
# index over two platforms.
layout="$work_dir/layout"
mkdir -p "$layout/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

# Moves FILE into the layout's blobs and prints "sha256:HEX SIZE".
put_blob() {
    local file=$1 hex size
    hex=$(sha256sum "$file" | cut -d' ' -f1)
    size=$(stat -c %s "$file")
    mv "$file" "$layout/blobs/sha256/$hex"
    printf 'sha256:%s %s\n' "$hex" "$size"
}
put_json() {
    local file
    file=$(mktemp "$layout/blob.XXXXXX")
    printf '%s' "$1" >"$file"
    put_blob "$file"
}

# Writes one image (layer, config, manifest) and prints the manifest's
# "digest size".
make_image() {
    local name=$1 arch=$2 root tar diff_id layer layer_size config config_size
    root=$(mktemp -d "$layout/root.XXXXXX")
    printf 'hello from %s on %s\n' "$name" "$arch" >"$root/hello.txt"
    tar=$(mktemp "$layout/layer.XXXXXX")
    tar --create --file=- --directory="$root" --sort=name --mtime=@0 --owner=0 --group=0 \
        --numeric-owner hello.txt >"$tar"
    rm -rf "$root"
    diff_id=$(sha256sum "$tar" | cut -d' ' -f1)
    gzip -n -9 <"$tar" >"$tar.gz"
    rm -f "$tar"
    read -r layer layer_size < <(put_blob "$tar.gz")
    read -r config config_size < <(put_json "$(jq -cn --arg arch "$arch" --arg diff "sha256:$diff_id" \
        '{architecture: $arch, os: "linux", config: {Cmd: ["/bin/cat", "/hello.txt"]},
          rootfs: {type: "layers", diff_ids: [$diff]}}')")
    put_json "$(jq -cn --arg config "$config" --argjson config_size "$config_size" \
        --arg layer "$layer" --argjson layer_size "$layer_size" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $config, size: $config_size},
          layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $layer, size: $layer_size}]}')"
}

refs=()
# Adds a named entry to the layout's index.json.
add_ref() {
    local ref=$1 media_type=$2 digest=$3 size=$4
    refs+=("$(jq -cn --arg ref "$ref" --arg type "$media_type" --arg digest "$digest" --argjson size "$size" \
        '{mediaType: $type, digest: $digest, size: $size, annotations: {"org.opencontainers.image.ref.name": $ref}}')")
}

for name in hello busy busy-old base; do
    read -r digest size < <(make_image "$name" amd64)
    add_ref "$name" application/vnd.oci.image.manifest.v1+json "$digest" "$size"
done
read -r amd64_digest amd64_size < <(make_image web amd64)
read -r arm64_digest arm64_size < <(make_image web arm64)
read -r index_digest index_size < <(put_json "$(jq -cn \
    --arg amd64 "$amd64_digest" --argjson amd64_size "$amd64_size" \
    --arg arm64 "$arm64_digest" --argjson arm64_size "$arm64_size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [
        {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $amd64, size: $amd64_size,
         platform: {architecture: "amd64", os: "linux"}},
        {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $arm64, size: $arm64_size,
         platform: {architecture: "arm64", os: "linux", variant: "v8"}}]}')")
add_ref web application/vnd.oci.image.index.v1+json "$index_digest" "$index_size"
printf '%s\n' "${refs[@]}" | jq -cs '{schemaVersion: 2, manifests: .}' >"$layout/index.json"

# skopeo's HOME, data and temp files live in the temp dir. Run as root it
# would keep a blob-info cache in /var/lib/containers: run it as nobody then.
skopeo_dir="$work_dir/skopeo"
mkdir -p "$skopeo_dir/tmp"
printf '{"default":[{"type":"insecureAcceptAnything"}]}' >"$skopeo_dir/policy.json"
skopeo_as=()
if [ "$(id -u)" -eq 0 ]; then
    chmod 711 "$work_dir"
    chmod -R a+rX "$layout" "$skopeo_dir"
    chown -R 65534:65534 "$skopeo_dir"
    skopeo_as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
run_skopeo() {
    "${skopeo_as[@]}" env HOME="$skopeo_dir" XDG_DATA_HOME="$skopeo_dir/data" \
        XDG_CONFIG_HOME="$skopeo_dir/config" TMPDIR="$skopeo_dir/tmp" \
        skopeo --policy "$skopeo_dir/policy.json" "$@"
}
skopeo_copy() {
    run_skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false "$@"
}

heading "pushing to docker-registry at $registry"
push() {
    printf '  %-44s %s\n' "$2" "$3"
    skopeo_copy "${@:4}" "$1" "docker://$registry/$2"
}
push "oci:$layout:hello" demo/hello:1.0 "OCI image"
push "docker://$registry/demo/hello:1.0" demo/hello:latest "re-tag of demo/hello:1.0"
push "oci:$layout:web" web/app:2.0 "OCI index: linux/amd64 + linux/arm64/v8"
push "oci:$layout:busy" tools/busy:1.0 "Docker schema 2 image" --format v2s2
push "oci:$layout:busy-old" tools/busy:0.9 "OCI image, deleted below"
push "oci:$layout:base" base:1 "OCI image in the global namespace"

deleted_digest=$(run_skopeo inspect --raw --tls-verify=false "docker://$registry/tools/busy:0.9" | sha256sum | cut -d' ' -f1)
printf '  %-44s %s\n' "tools/busy@sha256:${deleted_digest:0:12}..." "deleted by digest (tools/busy:0.9)"
run_skopeo delete --tls-verify=false "docker://$registry/tools/busy@sha256:$deleted_digest"

# --- wait for the database ----------------------------------------------------------
# The events job applies the notifications and the security job scans each
# new digest; poll the database until it holds exactly the pushed tags, each
# scanned, with the deleted one gone.
expected="base:1 demo/hello:1.0 demo/hello:latest tools/busy:1.0 web/app:2.0"
database_is_current() {
    local tags
    tags=$(rk tags --json) || return 1
    [ "$(jq -r '[.[] | "\(.repository):\(.tag)"] | sort | join(" ")' <<<"$tags")" = "$expected" ] || return 1
    [ "$(jq '[.[] | select(.scanned != "done")] | length' <<<"$tags")" = 0 ]
}
log "waiting for the database to reflect the pushes, the delete and the scans"
started=$SECONDS
wait_for 120 "the database to reflect the registry" database_is_current \
    || { rk tags >&2 || true; tail -n 40 "$work_dir/regkeeper.log" >&2; exit 1; }
log "database current $((SECONDS - started))s after the last push"

# --- what the database holds ---------------------------------------------------------
heading "regkeeper status"
rk status --runs 2
heading "regkeeper tags"
rk tags
heading "regkeeper vulns web/app:2.0"
rk vulns web/app:2.0
heading "done"
printf 'regkeeper log: %s lines; the temp dir %s\n' "$(wc -l <"$work_dir/regkeeper.log")" \
    "$([ -n "$keep" ] && echo "is kept: $work_dir" || echo "is removed on exit")"
