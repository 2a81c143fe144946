# Shared by the benchmarks that serve a generated registry tree: the
# docker-registry configuration (deletes enabled, access log off) and the
# wait for it to answer. Source it; it defines functions only.

# write_registry_config FILE STORAGE_DIR PORT LOG_LEVEL
write_registry_config() {
    cat >"$1" <<CONFIG
version: 0.1
log: {level: $4, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $2}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http: {addr: 127.0.0.1:$3, secret: bench}
health: {storagedriver: {enabled: false}}
CONFIG
}

# wait_for_registry BASE_URL: returns once /v2/ answers (up to 60 s), else
# fails.
wait_for_registry() {
    local _
    for _ in $(seq 1 600); do
        curl -fs -o /dev/null "$1/v2/" && return 0
        sleep 0.1
    done
    echo "docker-registry at $1 did not answer" >&2
    return 1
}
