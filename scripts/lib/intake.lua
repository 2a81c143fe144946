-- wrk script for the intake benchmark (scripts/bench.sh): every request is
-- one notification envelope as docker-registry 2.8 POSTs it after a
-- manifest push by tag (with `includereferences: true`), with a unique
-- event id, sent with the configured Authorization header.
--
-- Environment: BENCH_TOKEN (the Authorization header value), BENCH_RUN (a
-- number that makes event ids unique across runs).
-- At the end it prints one line: `wrk-summary {JSON}`.

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads + 1)
  table.insert(threads, thread)
end

local counter = 0
local run = tonumber(os.getenv("BENCH_RUN") or "0")
local headers = {
  ["Content-Type"] = "application/vnd.docker.distribution.events.v1+json",
  ["Authorization"] = os.getenv("BENCH_TOKEN") or "",
  ["User-Agent"] = "Go-http-client/1.1",
}

local template = [[{
   "events": [
      {
         "id": "%s",
         "timestamp": "2026-11-30T03:42:54.230365337Z",
         "action": "push",
         "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 401,
            "digest": "sha256:%064x",
            "length": 401,
            "repository": "bench/app%d",
            "url": "http://127.0.0.1:5000/v2/bench/app%d/manifests/sha256:%064x",
            "tag": "t%d",
            "references": [
               {
                  "mediaType": "application/vnd.oci.image.config.v1+json",
                  "size": 284,
                  "digest": "sha256:%064x"
               },
               {
                  "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "size": 118,
                  "digest": "sha256:99324dc6314b25ea8aa7e8c80c4b9fb97c1854463aa0b06db7e0c3ca635d1056"
               }
            ]
         },
         "request": {
            "id": "%s",
            "addr": "127.0.0.1:40662",
            "host": "127.0.0.1:5000",
            "method": "PUT",
            "useragent": "skopeo/1.9.3"
         },
         "actor": {},
         "source": {
            "addr": "bench:5000",
            "instanceID": "618bbda9-b996-43cb-9064-80f40eedac7a"
         }
      }
   ]
}]]

function request()
  counter = counter + 1
  local serial = (thread_number or 0) * 100000000 + counter
  local id = string.format("%08x-%04x-4000-8000-%012x", run, thread_number or 0, counter)
  local request_id = string.format("%08x-%04x-4000-9000-%012x", run, thread_number or 0, counter)
  local repository = serial % 1000
  local body = string.format(template, id, serial, repository, repository, serial, counter, serial + 1,
    request_id)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'wrk-summary {"requests":%d,"duration_us":%d,"non_2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"latency_p50_us":%d,"latency_p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
