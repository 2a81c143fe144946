//! Stand-in vulnerability scanners: handlers of ours on the one stand-in
//! server ([`crate::http`]) that speak each scanner's documented API (Clair
//! v2 API v1, Clair v4, the Harbor scanner-adapter API v1.1), with switches
//! for error answers, `Features: null`, slow answers, a hold (answers wait
//! until released), the adapter's 302 polling, and a log of every request
//! for assertions. A Clair stand-in can also download each layer from the
//! registry with the credential it was given, as the real one does.
//!
//! Answers carry `Connection: close`, as the scanners' own servers may.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::http::{HttpServer, Reply};

pub use crate::http::Request;

/// Which API a stand-in speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Clair v2, API v1.
    Clair,
    /// Clair v4.
    Clair4,
    /// Harbor scanner adapter v1.1.
    Adapter,
}

/// One vulnerability a stand-in reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Vuln {
    /// e.g. `CVE-2016-6301`.
    pub name: String,
    /// The scanner's own severity word.
    pub severity: String,
    /// Fixed-in version, may be empty.
    pub fixed_by: String,
    /// The package (Clair feature) it is found in.
    pub package: String,
}

impl Vuln {
    /// A vulnerability in package `package`.
    pub fn new(name: &str, severity: &str, fixed_by: &str, package: &str) -> Vuln {
        Vuln {
            name: name.to_string(),
            severity: severity.to_string(),
            fixed_by: fixed_by.to_string(),
            package: package.to_string(),
        }
    }
}

/// `n` distinct vulnerabilities named `CVE-2020-<i>` cycling through the
/// severities, spread over packages of ten.
pub fn many_vulns(n: usize) -> Vec<Vuln> {
    let words = ["Negligible", "Low", "Medium", "High", "Critical", "Unknown"];
    (0..n)
        .map(|i| {
            Vuln::new(
                &format!("CVE-2020-{:05}", i),
                words[i % words.len()],
                if i % 3 == 0 { "" } else { "1.0-r1" },
                &format!("pkg{}", i / 10),
            )
        })
        .collect()
}

/// What the stand-in does; tests change it through [`ScannerServer::set`].
#[derive(Debug, Clone)]
pub struct Switches {
    /// Answer the submit request (Clair POST /v1/layers, Clair v4 POST
    /// index_report, adapter POST /scan) with this status and body instead.
    pub fail_submit: Option<(u16, String)>,
    /// Answer the report request (Clair GET /v1/layers, Clair v4 GET
    /// vulnerability_report, adapter GET report) with this status and body.
    pub fail_report: Option<(u16, String)>,
    /// Clair v2: answer `"Features": null`.
    pub features_null: bool,
    /// Wait this long before every answer.
    pub delay: Duration,
    /// Hold every answer until this is false again (tests release it).
    pub hold: bool,
    /// Clair v2/v4: download each layer from its URL with the given headers
    /// and answer 400 (v2) / an index error (v4) when that fails.
    pub fetch_layers: bool,
    /// What every image reports.
    pub vulns: Vec<Vuln>,
    /// What particular images report, by top layer digest (Clair v2) or
    /// manifest digest (Clair v4, adapter).
    pub vulns_by_image: HashMap<String, Vec<Vuln>>,
    /// Clair v4's `index_state`.
    pub index_state: String,
    /// Adapter: answers 302 this many times per scan before the report.
    pub pending_polls: u32,
    /// Adapter: the `Refresh-After` value of a 302, in seconds.
    pub refresh_after: u64,
}

impl Default for Switches {
    fn default() -> Switches {
        Switches {
            fail_submit: None,
            fail_report: None,
            features_null: false,
            delay: Duration::ZERO,
            hold: false,
            fetch_layers: false,
            vulns: vec![
                Vuln::new("CVE-2016-6301", "High", "1.24.2-r12", "busybox"),
                Vuln::new("CVE-2016-8859", "High", "1.1.14-r13", "musl"),
            ],
            vulns_by_image: HashMap::new(),
            index_state: "state-1".to_string(),
            pending_polls: 0,
            refresh_after: 0,
        }
    }
}

#[derive(Default)]
struct Memory {
    /// Clair v2: layer name -> parent name.
    layers: HashMap<String, String>,
    /// Clair v4: indexed manifests.
    indexed: HashSet<String>,
    /// Adapter: scan id -> (manifest digest, polls left).
    scans: HashMap<String, (String, u32)>,
}

struct Shared {
    api: Api,
    switches: Mutex<Switches>,
    memory: Mutex<Memory>,
    next_id: AtomicU64,
    /// Requests being answered right now, and the most at any one time.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// A running stand-in scanner; stops on Drop (a hold is released first).
pub struct ScannerServer {
    shared: Arc<Shared>,
    server: HttpServer,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ScannerServer {
    /// Starts a stand-in speaking `api` on a free 127.0.0.1 port.
    pub fn start(api: Api) -> ScannerServer {
        let shared = Arc::new(Shared {
            api,
            switches: Mutex::new(Switches::default()),
            memory: Mutex::new(Memory::default()),
            next_id: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let server = {
            let shared = shared.clone();
            HttpServer::start(move |_, request| serve(&shared, request))
        };
        ScannerServer { shared, server }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Changes the switches.
    pub fn set(&self, change: impl FnOnce(&mut Switches)) {
        change(&mut lock(&self.shared.switches));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == method && request.path().starts_with(prefix))
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.server.clear_requests();
    }

    /// Forgets everything indexed (a scanner whose database was reset).
    pub fn forget(&self) {
        *lock(&self.shared.memory) = Memory::default();
    }

    /// The most requests it was answering at one time (held ones included).
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    /// Waits (polling, up to a generous deadline) until `count` requests
    /// matching `method` and `prefix` have arrived.
    pub fn wait_for(&self, method: &str, prefix: &str, count: usize) {
        let arrived = crate::wait::poll(crate::DEADLINE, || {
            (self.requests_to(method, prefix).len() >= count).then_some(())
        });
        assert!(
            arrived.is_some(),
            "the stand-in scanner never got {count} {method} {prefix}: {:?}",
            self.requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path()))
                .collect::<Vec<_>>()
        );
    }
}

impl Drop for ScannerServer {
    fn drop(&mut self) {
        // Held answers go out, so the server stops at once.
        lock(&self.shared.switches).hold = false;
    }
}

/// A URL where nothing listens (a port bound then released).
pub fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let address = listener.local_addr().expect("port address");
    drop(listener);
    format!("http://{address}")
}

/// A reply with `status` and a JSON body.
fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::new(status, body.to_string()).header("Content-Type", "application/json;charset=utf-8")
}

/// A reply with `status` and `body` as given (an error page or JSON).
fn raw(status: u16, body: &str) -> Reply {
    let content_type = if body.trim_start().starts_with('{') {
        "application/json;charset=utf-8"
    } else {
        "text/html"
    };
    Reply::new(status, body).header("Content-Type", content_type)
}

/// Counts a request in flight while it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(shared: &Shared, request: &Request) -> Reply {
    let _in_flight = InFlight::enter(shared);
    let (delay, deadline) = {
        let switches = lock(&shared.switches);
        (switches.delay, Instant::now() + Duration::from_secs(120))
    };
    while lock(&shared.switches).hold && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let reply = match shared.api {
        Api::Clair => clair(shared, request),
        Api::Clair4 => clair4(shared, request),
        Api::Adapter => adapter(shared, request),
    };
    reply.header("Connection", "close")
}

/// Downloads `url` with `authorization`, as a real scanner pulls a layer.
fn fetch_layer(url: &str, authorization: Option<&str>) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = request.call().map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let _ = response.body_mut().read_to_vec();
    if status == 200 {
        Ok(())
    } else {
        Err(format!("the registry answered {status}"))
    }
}

fn vulns_of(shared: &Shared, key: &str) -> Vec<Vuln> {
    let switches = lock(&shared.switches);
    switches
        .vulns_by_image
        .get(key)
        .cloned()
        .unwrap_or_else(|| switches.vulns.clone())
}

fn clair_error(status: u16, message: &str) -> Reply {
    json(status, serde_json::json!({"Error": {"Message": message}}))
}

fn clair(shared: &Shared, request: &Request) -> Reply {
    let switches = lock(&shared.switches).clone();
    if request.method == "POST" && request.path() == "/v1/layers" {
        if let Some((status, body)) = &switches.fail_submit {
            return raw(*status, body);
        }
        let body = request.json();
        let layer = &body["Layer"];
        let (Some(name), Some(path)) = (layer["Name"].as_str(), layer["Path"].as_str()) else {
            return clair_error(400, "could not decode layer");
        };
        let parent = layer["ParentName"].as_str().unwrap_or("");
        if !parent.is_empty() && !lock(&shared.memory).layers.contains_key(parent) {
            return clair_error(400, "could not find parent layer");
        }
        if switches.fetch_layers {
            if let Err(error) = fetch_layer(path, layer["Headers"]["Authorization"].as_str()) {
                return clair_error(400, &format!("could not download layer: {error}"));
            }
        }
        lock(&shared.memory)
            .layers
            .insert(name.to_string(), parent.to_string());
        let mut echo = layer.clone();
        echo["IndexedByVersion"] = serde_json::json!(3);
        return json(201, serde_json::json!({ "Layer": echo }));
    }
    if request.method == "GET" && request.path().starts_with("/v1/layers/") {
        if let Some((status, body)) = &switches.fail_report {
            return raw(*status, body);
        }
        let name = &request.path()["/v1/layers/".len()..];
        if !lock(&shared.memory).layers.contains_key(name) {
            return clair_error(404, "the resource cannot be found");
        }
        let with_vulnerabilities = request
            .query()
            .iter()
            .any(|(name, _)| name == "vulnerabilities");
        if switches.features_null {
            return json(
                200,
                serde_json::json!({"Layer": {"Name": name, "NamespaceName": "alpine:v3.4", "IndexedByVersion": 3, "Features": null}}),
            );
        }
        let mut features: Vec<serde_json::Value> = Vec::new();
        let mut by_package: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        for vuln in vulns_of(shared, name) {
            let entry = serde_json::json!({
                "Name": vuln.name,
                "NamespaceName": "alpine:v3.4",
                "Description": format!("{} in {}", vuln.name, vuln.package),
                "Link": format!("https://cve.example/{}", vuln.name),
                "Severity": vuln.severity,
                "FixedBy": vuln.fixed_by,
                "Metadata": {"NVD": {"CVSSv2": {"Score": 5.0, "Vectors": "AV:N/AC:L"}}}
            });
            match by_package
                .iter_mut()
                .find(|(package, _)| *package == vuln.package)
            {
                Some((_, list)) => list.push(entry),
                None => by_package.push((vuln.package.clone(), vec![entry])),
            }
        }
        for (package, list) in by_package {
            let mut feature = serde_json::json!({
                "Name": package, "NamespaceName": "alpine:v3.4", "VersionFormat": "dpkg",
                "Version": "1.0-r0", "AddedBy": name
            });
            if with_vulnerabilities {
                feature["Vulnerabilities"] = serde_json::Value::Array(list);
            }
            features.push(feature);
        }
        return json(
            200,
            serde_json::json!({"Layer": {"Name": name, "NamespaceNames": ["alpine:v3.4"], "IndexedByVersion": 3, "Features": features}}),
        );
    }
    clair_error(404, "no such route")
}

fn clair4(shared: &Shared, request: &Request) -> Reply {
    let switches = lock(&shared.switches).clone();
    if request.method == "GET" && request.path() == "/indexer/api/v1/index_state" {
        return json(200, serde_json::json!({"state": switches.index_state}));
    }
    if request.method == "POST" && request.path() == "/indexer/api/v1/index_report" {
        if let Some((status, body)) = &switches.fail_submit {
            return raw(*status, body);
        }
        let body = request.json();
        let Some(hash) = body["hash"].as_str() else {
            return json(
                400,
                serde_json::json!({"code": "bad-request", "message": "no hash"}),
            );
        };
        if switches.fetch_layers {
            for layer in body["layers"].as_array().cloned().unwrap_or_default() {
                let uri = layer["uri"].as_str().unwrap_or("");
                let authorization = layer["headers"]["Authorization"][0].as_str();
                if let Err(error) = fetch_layer(uri, authorization) {
                    return json(
                        201,
                        serde_json::json!({"manifest_hash": hash, "state": "IndexError", "success": false, "err": error}),
                    );
                }
            }
        }
        lock(&shared.memory).indexed.insert(hash.to_string());
        return json(
            201,
            serde_json::json!({"manifest_hash": hash, "state": "IndexFinished", "success": true,
                "packages": {}, "distributions": {}, "repository": {}, "environments": {}}),
        );
    }
    if request.method == "GET"
        && request
            .path()
            .starts_with("/matcher/api/v1/vulnerability_report/")
    {
        if let Some((status, body)) = &switches.fail_report {
            return raw(*status, body);
        }
        let digest = &request.path()["/matcher/api/v1/vulnerability_report/".len()..];
        if !lock(&shared.memory).indexed.contains(digest) {
            return json(
                404,
                serde_json::json!({"code": "not-found", "message": "no index report"}),
            );
        }
        let mut vulnerabilities = serde_json::Map::new();
        let mut package_vulnerabilities = serde_json::Map::new();
        for (i, vuln) in vulns_of(shared, digest).into_iter().enumerate() {
            let id = format!("{}", 1000 + i);
            vulnerabilities.insert(
                id.clone(),
                serde_json::json!({
                    "id": id, "updater": "alpine", "name": vuln.name,
                    "description": format!("{} in {}", vuln.name, vuln.package),
                    "links": format!("https://cve.example/{} https://tracker.example/{}", vuln.name, vuln.name),
                    "severity": vuln.severity,
                    "normalized_severity": vuln.severity,
                    "package": {"id": "1", "name": vuln.package, "version": "1.0-r0", "kind": "binary"},
                    "dist": {"id": "1", "did": "alpine", "version_id": "3.19"},
                    "fixed_in_version": vuln.fixed_by
                }),
            );
            if let Some(list) = package_vulnerabilities
                .entry("1")
                .or_insert_with(|| serde_json::json!([]))
                .as_array_mut()
            {
                list.push(serde_json::json!(id));
            }
        }
        return json(
            201,
            serde_json::json!({"manifest_hash": digest, "packages": {}, "distributions": {}, "environments": {},
                "vulnerabilities": vulnerabilities, "package_vulnerabilities": package_vulnerabilities}),
        );
    }
    json(
        404,
        serde_json::json!({"code": "not-found", "message": "no such route"}),
    )
}

fn adapter(shared: &Shared, request: &Request) -> Reply {
    let switches = lock(&shared.switches).clone();
    let error = |status: u16, message: &str| {
        Reply::new(
            status,
            serde_json::json!({"error": {"message": message}}).to_string(),
        )
        .header(
            "Content-Type",
            "application/vnd.scanner.adapter.error+json; version=1.0",
        )
    };
    if request.method == "POST" && request.path() == "/api/v1/scan" {
        if let Some((status, body)) = &switches.fail_submit {
            return raw(*status, body);
        }
        let body = request.json();
        let Some(digest) = body["artifact"]["digest"].as_str() else {
            return error(422, "artifact.digest is required");
        };
        if body["registry"]["url"].as_str().is_none() {
            return error(422, "registry.url is required");
        }
        let id = format!("scan-{}", shared.next_id.fetch_add(1, Ordering::SeqCst));
        lock(&shared.memory)
            .scans
            .insert(id.clone(), (digest.to_string(), switches.pending_polls));
        return Reply::new(202, serde_json::json!({ "id": id }).to_string()).header(
            "Content-Type",
            "application/vnd.scanner.adapter.scan.response+json; version=1.0",
        );
    }
    if request.method == "GET"
        && request.path().starts_with("/api/v1/scan/")
        && request.path().ends_with("/report")
    {
        if let Some((status, body)) = &switches.fail_report {
            return raw(*status, body);
        }
        let id = &request.path()["/api/v1/scan/".len()..request.path().len() - "/report".len()];
        let digest = {
            let mut memory = lock(&shared.memory);
            let Some((digest, polls_left)) = memory.scans.get_mut(id) else {
                return error(404, "no such scan request");
            };
            if *polls_left > 0 {
                *polls_left -= 1;
                return Reply::new(302, "")
                    .header("Refresh-After", &switches.refresh_after.to_string());
            }
            digest.clone()
        };
        let vulnerabilities: Vec<serde_json::Value> = vulns_of(shared, &digest)
            .into_iter()
            .map(|vuln| {
                serde_json::json!({
                    "id": vuln.name, "package": vuln.package, "version": "1.0-r0",
                    "fix_version": vuln.fixed_by, "severity": vuln.severity,
                    "description": format!("{} in {}", vuln.name, vuln.package),
                    "links": [format!("https://cve.example/{}", vuln.name)],
                    "preferred_cvss": {"score_v3": 7.5},
                    "cwe_ids": ["CWE-20"]
                })
            })
            .collect();
        let report = serde_json::json!({
            "generated_at": "2024-05-01T10:00:00Z",
            "artifact": {"digest": digest},
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.50.0"},
            "vulnerabilities": vulnerabilities
        });
        return Reply::new(200, report.to_string()).header(
            "Content-Type",
            "application/vnd.security.vulnerability.report; version=1.1",
        );
    }
    error(404, "no such route")
}
