#!/usr/bin/env bash
# Builds the Debian package (docs/install.md): installs cargo-deb when it is
# missing, builds the binary, generates the man pages and the bash, zsh and
# fish completions from that binary, and packs them with `cargo deb
# --no-build` from `[package.metadata.deb]` in Cargo.toml. Progress goes to
# stderr; the last line on stdout is the path of the .deb.
#
#   scripts/package.sh                        # release build (what to install)
#   scripts/package.sh --profile dev --fast   # debug build, quick compression (the package test)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'package.sh: %s\n' "$*" >&2; }

profile=release
deb_options=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
        --profile=*) profile="${1#--profile=}"; shift ;;
        --fast) deb_options+=(--fast); shift ;;
        *) log "unknown argument $1 (expected --profile NAME or --fast)"; exit 2 ;;
    esac
done

# The version the packaging was made with: cargo-deb warns that packaging
# the dev profile, which the package test does, will become an error.
cargo_deb_version=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb $cargo_deb_version"
    cargo install cargo-deb --locked --version "$cargo_deb_version" >&2
fi

log "building the binary (profile $profile)"
cargo build --profile "$profile" --bin regkeeper >&2

target_dir=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir="$profile" ;;
esac
binary="$target_dir/$profile_dir/regkeeper"

# cargo-deb reads these as target/release/package/... (Cargo.toml), a prefix
# it maps to the directory of the profile it packages.
generated="$target_dir/$profile_dir/package"
log "generating man pages and completions in $generated"
rm -rf "$generated"
mkdir -p "$generated/man"
"$binary" man --dir "$generated/man"
gzip -9n "$generated"/man/*.1
"$binary" completions bash >"$generated/regkeeper.bash"
"$binary" completions zsh >"$generated/_regkeeper"
"$binary" completions fish >"$generated/regkeeper.fish"

log "packing"
mkdir -p "$target_dir/debian"
# Stripped: the line tables of `[profile.release] debug` would make the
# installed binary about six times larger (79 MB instead of 14 MB).
deb=$(cargo deb --no-build --strip --profile "$profile" "${deb_options[@]}" --output "$target_dir/debian/" | tail -n 1)
log "built $deb"
printf '%s\n' "$deb"
