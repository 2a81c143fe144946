//! The `security` handler's lifecycle against a real registry and stand-in
//! scanners, on both databases: one scan per digest, failures and backoff,
//! re-pushes and crashes during a scan, leases, concurrency, several
//! scanners with their own reports, cancellation.

use std::sync::Arc;
use std::time::Duration;

use regkeeper::config::SecurityOptions;
use regkeeper::jobs::security::{Clock, RegistryImages, Security};
use regkeeper::jobs::{Cancel, Handler, JobContext, Outcome, RunOptions, Trigger};
use regkeeper::scanner::{self, Kind, Scanner, Settings};
use regkeeper::store::{Store, TagWrite};
use regkeeper_test_support as support;
use support::registry::{Auth, Options, PushedImage, TestRegistry};
use support::scanners::{unreachable_url, Api, ScannerServer, Vuln};
use support::{wait_until, Backend, TestStore};

use crate::{settings, T0};

struct World {
    registry: TestRegistry,
    client: Arc<regkeeper::registry::Client>,
    store: Arc<dyn Store>,
    registry_id: i64,
    host: String,
    /// The store's database, kept while the store is used.
    _database: TestStore,
}

fn world(backend: Backend, auth: Auth) -> World {
    let registry = TestRegistry::start(Options {
        auth,
        ..Options::default()
    });
    let database = TestStore::new(backend);
    let store = database.shared();
    let client = Arc::new(regkeeper::registry::Client::new(&registry.client_config()).unwrap());
    let host = format!("127.0.0.1:{}", registry.port);
    let registry_id = store.ensure_registry(&host).unwrap();
    World {
        registry,
        client,
        store,
        registry_id,
        host,
        _database: database,
    }
}

impl World {
    /// Records a tag as the events or sync job would.
    fn record(&self, repository: &str, tag: &str, digest: &str) {
        self.store
            .upsert_tag(
                self.registry_id,
                &TagWrite {
                    repository: repository.into(),
                    tag: tag.into(),
                    digest: digest.into(),
                    image_id: String::new(),
                    media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
                    size: None,
                    platforms: None,
                },
                T0,
            )
            .unwrap();
    }

    /// Pushes an image and records its tag.
    fn push(&self, repository: &str, tag: &str) -> PushedImage {
        let image = self.registry.push_image(repository, tag);
        self.record(repository, tag, &image.digest);
        image
    }

    fn handler(
        &self,
        scanners: Vec<Arc<dyn Scanner>>,
        options: SecurityOptions,
        clock: Clock,
    ) -> Security {
        Security::new(
            scanners,
            Arc::new(RegistryImages::new(self.client.clone())),
            options,
            self.host.clone(),
            clock,
        )
    }

    fn context(&self, claimant: &str) -> JobContext {
        JobContext {
            job_name: "security".into(),
            run_id: 1,
            trigger: Trigger::Once,
            claimant: claimant.into(),
            store: self.store.clone(),
            options: RunOptions::default(),
            cancel: Cancel::default(),
        }
    }

    fn state(&self, repository: &str, tag: &str) -> regkeeper::store::ImageVulnerabilities {
        self.store
            .image_vulnerabilities(self.registry_id, repository, tag)
            .unwrap()
            .expect("the tag exists")
    }

    fn names(&self, repository: &str, tag: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .state(repository, tag)
            .vulnerabilities
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        names
    }
}

fn at(now: i64) -> Clock {
    Arc::new(move || now)
}

fn options() -> SecurityOptions {
    SecurityOptions {
        rescan_after: Duration::from_secs(24 * 3600),
        concurrency: 2,
        max_attempts: 3,
        lease: Duration::from_secs(30 * 60),
    }
}

fn count(outcome: &Outcome, name: &str) -> i64 {
    outcome.counts.get(name).copied().unwrap_or(0)
}

fn clair_of(server: &ScannerServer) -> Arc<dyn Scanner> {
    scanner::build(
        Kind::Clair,
        &settings("clair", &server.url(), Duration::from_secs(10)),
    )
    .unwrap()
}

fn clair_scan_serves_every_tag_sharing_a_digest_with_one_scan(backend: Backend) {
    let world = world(backend, Auth::token("scanner", "secret"));
    let server = ScannerServer::start(Api::Clair);
    // The stand-in downloads every layer with the credential it got,
    // as Clair does: a wrong blob URL or token fails the scan.
    server.set(|s| s.fetch_layers = true);
    let image = world.push("ns/app", "1.0");
    world.registry.tag("ns/app", "1.0", "latest");
    world.record("ns/app", "latest", &image.digest);
    world.record("other/app", "copy", &image.digest);
    let handler = world.handler(vec![clair_of(&server)], options(), at(T0));
    let outcome = handler.run(&world.context("daemon-a")).unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    assert_eq!(count(&outcome, "vulnerabilities"), 2);
    assert_eq!(
        server.requests_to("POST", "/v1/layers").len(),
        image.layers.len()
    );
    assert_eq!(
        server.requests_to("GET", "/v1/layers/").len(),
        1,
        "one scan for three tags"
    );
    let posts = server.requests_to("POST", "/v1/layers");
    let first = posts[0].json();
    assert_eq!(first["Layer"]["Name"], image.layers[0].0.as_str());
    assert_eq!(first["Layer"]["ParentName"], "");
    assert_eq!(
        first["Layer"]["Path"],
        format!(
            "{}/v2/ns/app/blobs/{}",
            world.registry.url, image.layers[0].0
        )
    );
    assert!(first["Layer"]["Headers"]["Authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer "));
    assert_eq!(
        posts[1].json()["Layer"]["ParentName"],
        image.layers[0].0.as_str()
    );
    for (repository, tag) in [
        ("ns/app", "1.0"),
        ("ns/app", "latest"),
        ("other/app", "copy"),
    ] {
        let state = world.state(repository, tag);
        assert_eq!(state.state.scanned, 2, "{backend:?} {repository}:{tag}");
        assert_eq!(state.state.scanned_at, Some(T0));
        assert_eq!(
            world.names(repository, tag),
            ["CVE-2016-6301", "CVE-2016-8859"]
        );
    }
    let stored = &world.state("ns/app", "1.0").vulnerabilities[0];
    assert_eq!(
        (stored.scanner.as_str(), stored.severity.as_str()),
        ("clair", "High")
    );
    let metadata: serde_json::Value =
        serde_json::from_str(stored.metadata.as_deref().unwrap()).unwrap();
    assert_eq!(
        metadata["details"]["NVD"]["CVSSv2"]["Score"], 5.0,
        "metadata is real JSON"
    );
    // Nothing is due any more.
    let again = handler.run(&world.context("daemon-a")).unwrap();
    assert_eq!(count(&again, "scanned"), 0);
    assert_eq!(server.requests_to("GET", "/v1/layers/").len(), 1);
}

fn clair_features_null_marks_the_tag_done_with_no_vulnerabilities(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    server.set(|s| s.features_null = true);
    world.push("app", "1");
    let outcome = world
        .handler(vec![clair_of(&server)], options(), at(T0))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}");
    let state = world.state("app", "1");
    assert_eq!(state.state.scanned, 2);
    assert!(state.vulnerabilities.is_empty());
}

/// A failure case: its name, how the stand-in misbehaves, whether Clair is
/// unreachable instead, and what the recorded error says.
type FailureCase = (
    &'static str,
    Box<dyn Fn(&mut support::scanners::Switches)>,
    Option<&'static str>,
    &'static str,
);

fn clair_post_get_unreachable_and_timeout_never_mark_a_tag_done(backend: Backend) {
    let post_fails = |s: &mut support::scanners::Switches| {
        s.fail_submit = Some((
            401,
            r#"{"Error":{"Message":"Something went wrong when posting"}}"#.into(),
        ))
    };
    let get_fails = |s: &mut support::scanners::Switches| {
        s.fail_report = Some((
            400,
            r#"{"Error":{"Message":"Something went wrong when fetching"}}"#.into(),
        ))
    };
    let html_fails = |s: &mut support::scanners::Switches| {
        s.fail_report = Some((502, "<html><body>502 Bad Gateway</body></html>".into()))
    };
    let slow = |s: &mut support::scanners::Switches| s.delay = Duration::from_secs(3);
    let world = world(backend, Auth::Anonymous);
    world.push("app", "1");
    let cases: Vec<FailureCase> = vec![
        (
            "post fails",
            Box::new(post_fails),
            None,
            "Something went wrong when posting",
        ),
        (
            "get fails",
            Box::new(get_fails),
            None,
            "Something went wrong when fetching",
        ),
        (
            "html error page",
            Box::new(html_fails),
            None,
            "502 Bad Gateway",
        ),
        ("timeout", Box::new(slow), None, "timed out"),
        (
            "unreachable",
            Box::new(|_: &mut support::scanners::Switches| {}),
            Some("unreachable"),
            "posting layer",
        ),
    ];
    for (case, switch, url, expected) in cases {
        let server = ScannerServer::start(Api::Clair);
        server.set(|s| switch(s));
        let server_url = match url {
            Some(_) => unreachable_url(),
            None => server.url(),
        };
        let clair = scanner::build(
            Kind::Clair,
            &settings("clair", &server_url, Duration::from_millis(500)),
        )
        .unwrap();
        // Every case starts from a fresh first attempt.
        let mut policy = options();
        policy.max_attempts = 100;
        let now = T0 + 10_000_000 * (1 + world.state("app", "1").state.attempts);
        let outcome = world
            .handler(vec![clair], policy, at(now))
            .run(&world.context("d"))
            .unwrap();
        assert_eq!(
            count(&outcome, "failed"),
            1,
            "{backend:?} {case}: {outcome:?}"
        );
        assert_eq!(count(&outcome, "scanned"), 0, "{backend:?} {case}");
        let state = world.state("app", "1");
        assert_eq!(
            state.state.scanned, 0,
            "{backend:?} {case}: back to none, never done"
        );
        let error = state.state.last_error.unwrap_or_default();
        assert!(error.contains(expected), "{backend:?} {case}: {error}");
        assert!(
            state.state.not_before.unwrap() > now,
            "{backend:?} {case}: backs off"
        );
        assert!(state.vulnerabilities.is_empty());
    }
    // The backoff holds: nothing is tried before not_before.
    let server = ScannerServer::start(Api::Clair);
    let state = world.state("app", "1").state;
    let not_before = state.not_before.unwrap();
    let early = world
        .handler(vec![clair_of(&server)], options(), at(not_before - 1))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&early, "scanned") + count(&early, "failed"), 0);
    assert!(server.requests().is_empty());
    // After max_attempts the tag is failed, shown by the queue counts.
    server.set(|s| s.fail_submit = Some((500, r#"{"Error":{"Message":"down"}}"#.into())));
    let outcome = world
        .handler(vec![clair_of(&server)], options(), at(not_before))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "gave_up"), 1, "{backend:?}: {outcome:?}");
    assert_eq!(world.state("app", "1").state.scanned, 3);
    assert_eq!(
        world.store.queue_counts().unwrap().tags_by_scan["failed"],
        1
    );
    // --retry-failed takes it again; a working scanner finishes it.
    server.set(|s| s.fail_submit = None);
    let mut context = world.context("d");
    context.options.retry_failed = true;
    let outcome = world
        .handler(vec![clair_of(&server)], options(), at(not_before + 1))
        .run(&context)
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    let state = world.state("app", "1").state;
    assert_eq!(
        (state.scanned, state.attempts, state.last_error),
        (2, 0, None)
    );
}

fn repush_during_a_scan_discards_the_results_of_the_old_digest(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    let old = world.push("app", "1");
    server.set(|s| s.hold = true);
    let handler = world.handler(vec![clair_of(&server)], options(), at(T0));
    let context = world.context("d");
    let outcome = std::thread::scope(|scope| {
        let running = scope.spawn(|| handler.run(&context));
        server.wait_for("POST", "/v1/layers", 1);
        // The tag moves to a new manifest while the old one is scanned.
        let new = world.push("app", "1");
        assert_ne!(new.digest, old.digest);
        server.set(|s| s.hold = false);
        running.join().unwrap().unwrap()
    });
    assert_eq!(count(&outcome, "discarded"), 1, "{backend:?}: {outcome:?}");
    let state = world.state("app", "1");
    assert_ne!(state.digest, old.digest);
    assert_eq!(
        state.state.scanned, 0,
        "{backend:?}: the new digest still needs a scan"
    );
    assert!(state.vulnerabilities.is_empty());
    // The next run scans the new digest.
    let outcome = handler.run(&context).unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    assert_eq!(world.state("app", "1").state.scanned, 2);
}

fn rescan_after_rescan_after_has_passed(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    world.push("app", "1");
    let run_at = |now: i64| {
        world
            .handler(vec![clair_of(&server)], options(), at(now))
            .run(&world.context("d"))
            .unwrap()
    };
    assert_eq!(count(&run_at(T0), "scanned"), 1);
    let day = 24 * 3600 * 1000;
    assert_eq!(
        count(&run_at(T0 + day - 1), "scanned"),
        0,
        "{backend:?}: not yet"
    );
    // New CVEs appear daily: the same image is scanned again.
    server.set(|s| {
        s.vulns
            .push(Vuln::new("CVE-2024-0001", "Critical", "", "openssl"))
    });
    assert_eq!(count(&run_at(T0 + day), "scanned"), 1, "{backend:?}");
    assert_eq!(
        world.names("app", "1"),
        ["CVE-2016-6301", "CVE-2016-8859", "CVE-2024-0001"]
    );
    assert_eq!(world.state("app", "1").state.scanned_at, Some(T0 + day));
    assert_eq!(world.store.vulnerability_counts().unwrap()["Critical"], 1);
}

fn crash_during_a_scan_is_taken_again_after_the_lease(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    let image = world.push("app", "1");
    // A daemon claimed the digest and died before it finished.
    let policy = regkeeper::store::ScanPolicy {
        now: T0,
        lease_ms: 30 * 60 * 1000,
        rescan_after_ms: None,
        retry_failed: false,
        limit: 10,
    };
    assert!(world
        .store
        .claim_scan(&image.digest, "crashed", &policy)
        .unwrap()
        .is_some());
    assert_eq!(world.state("app", "1").state.scanned, 1);
    let run_at = |now: i64| {
        world
            .handler(vec![clair_of(&server)], options(), at(now))
            .run(&world.context("survivor"))
            .unwrap()
    };
    assert_eq!(
        count(&run_at(T0 + 60_000), "scanned"),
        0,
        "{backend:?}: the lease still holds"
    );
    assert!(server.requests().is_empty());
    assert_eq!(
        count(&run_at(T0 + 30 * 60 * 1000), "scanned"),
        1,
        "{backend:?}: lease expired"
    );
    assert_eq!(world.state("app", "1").state.scanned, 2);
}

#[test]
fn scans_run_concurrently_up_to_concurrency() {
    let world = world(Backend::Sqlite, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    for tag in ["1", "2", "3"] {
        world.push("app", tag);
    }
    server.set(|s| s.hold = true);
    let handler = world.handler(vec![clair_of(&server)], options(), at(T0));
    let context = world.context("d");
    let outcome = std::thread::scope(|scope| {
        let running = scope.spawn(|| handler.run(&context));
        // With every answer held, two first POSTs can only both arrive if
        // two scans are in flight at once; a third cannot start while both
        // are held.
        server.wait_for("POST", "/v1/layers", 2);
        let arrived: Vec<String> = server
            .requests()
            .iter()
            .map(|request| format!("{} {}", request.method, request.path()))
            .collect();
        assert_eq!(arrived.len(), 2, "{arrived:?}");
        server.set(|s| s.hold = false);
        running.join().unwrap().unwrap()
    });
    // Each scan asks one thing at a time: never more than two requests at
    // once over the whole run.
    assert_eq!(server.most_in_flight(), 2);
    assert_eq!(count(&outcome, "scanned"), 3, "{outcome:?}");
}

fn clair4_flow_through_the_handler(backend: Backend) {
    let world = world(backend, Auth::htpasswd("scanner", "secret"));
    let server = ScannerServer::start(Api::Clair4);
    server.set(|s| s.fetch_layers = true);
    let image = world.push("ns/app", "1");
    let clair4 = scanner::build(
        Kind::Clair4,
        &settings("clair4", &server.url(), Duration::from_secs(10)),
    )
    .unwrap();
    let outcome = world
        .handler(vec![clair4], options(), at(T0))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    let index = server.requests_to("POST", "/indexer/api/v1/index_report");
    assert_eq!(index.len(), 1);
    let manifest = index[0].json();
    assert_eq!(manifest["hash"], image.digest.as_str());
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        image.layers.len()
    );
    assert!(manifest["layers"][0]["headers"]["Authorization"][0]
        .as_str()
        .unwrap()
        .starts_with("Basic "));
    let state = world.state("ns/app", "1");
    assert_eq!(state.state.scanned, 2);
    assert_eq!(state.vulnerabilities.len(), 2);
    assert_eq!(state.vulnerabilities[0].scanner, "clair4");
    assert!(
        state.vulnerabilities[0].link.contains(' '),
        "clair4 links stay space-separated"
    );
}

fn adapter_flow_with_302_polling_and_a_harbor_report(backend: Backend) {
    let world = world(backend, Auth::token("scanner", "secret"));
    let server = ScannerServer::start(Api::Adapter);
    server.set(|s| {
        s.pending_polls = 2;
        s.refresh_after = 0;
        s.vulns = vec![
            Vuln::new("CVE-2017-8283", "Critical", "1.18.0", "dpkg"),
            Vuln::new("CVE-2019-0001", "Negligible", "", "zlib"),
        ];
    });
    let image = world.push("ns/app", "1");
    let adapter = scanner::build(
        Kind::Adapter,
        &settings("adapter", &server.url(), Duration::from_secs(10)),
    )
    .unwrap();
    let outcome = world
        .handler(vec![adapter], options(), at(T0))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    let request = server.requests_to("POST", "/api/v1/scan")[0].json();
    assert_eq!(request["registry"]["url"], world.registry.url.as_str());
    assert!(request["registry"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer "));
    assert_eq!(request["artifact"]["digest"], image.digest.as_str());
    assert_eq!(request["artifact"]["repository"], "ns/app");
    assert_eq!(
        server.requests_to("GET", "/api/v1/scan/").len(),
        3,
        "two 302s then the report"
    );
    let state = world.state("ns/app", "1");
    let listed: Vec<(&str, &str)> = state
        .vulnerabilities
        .iter()
        .map(|v| (v.name.as_str(), v.severity.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("CVE-2017-8283", "Critical"),
            ("CVE-2019-0001", "Negligible")
        ]
    );
}

fn several_scanners_store_the_results_of_all(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dummy.json");
    std::fs::write(
        &path,
        r#"[{"Name":"CVE-2016-6301","Link":"https://cve.example/CVE-2016-6301","Severity":"Medium"},
            {"Name":"CVE-2016-2178","Link":"https://cve.example/CVE-2016-2178","Severity":"Low"}]"#,
    )
    .unwrap();
    let fixture = scanner::build(
        Kind::Fixture,
        &Settings {
            name: "fixture".into(),
            server: None,
            timeout: Duration::from_secs(1),
            authorization: None,
            file: Some(path),
        },
    )
    .unwrap();
    world.push("app", "1");
    let outcome = world
        .handler(vec![clair_of(&server), fixture], options(), at(T0))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(
        count(&outcome, "vulnerabilities"),
        4,
        "{backend:?}: {outcome:?}"
    );
    let listed: Vec<(String, String, String)> = world
        .state("app", "1")
        .vulnerabilities
        .into_iter()
        .map(|v| (v.name, v.scanner, v.severity))
        .collect();
    let expected = [
        ("CVE-2016-6301", "clair", "High"),
        ("CVE-2016-8859", "clair", "High"),
        ("CVE-2016-6301", "fixture", "Medium"),
        ("CVE-2016-2178", "fixture", "Low"),
    ];
    assert_eq!(
        listed,
        expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_index_is_scanned_per_platform_and_stored_under_its_digest() {
    let world = world(Backend::Sqlite, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    let index = world.registry.push_oci_index("app", "multi");
    world.record("app", "multi", &index.digest);
    let outcome = world
        .handler(vec![clair_of(&server)], options(), at(T0))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{outcome:?}");
    assert_eq!(
        server.requests_to("GET", "/v1/layers/").len(),
        index.children.len()
    );
    assert_eq!(
        world.names("app", "multi"),
        ["CVE-2016-6301", "CVE-2016-8859"]
    );
}

#[test]
fn a_long_scan_renews_its_lease() {
    let world = world(Backend::Sqlite, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    let image = world.push("app", "1");
    let mut short = options();
    short.lease = Duration::from_millis(600);
    let handler = world.handler(
        vec![clair_of(&server)],
        short,
        Arc::new(regkeeper::store::now_ms),
    );
    let context = world.context("d");
    server.set(|s| s.hold = true);
    let outcome = std::thread::scope(|scope| {
        let running = scope.spawn(|| handler.run(&context));
        server.wait_for("POST", "/v1/layers", 1);
        let first = world.state("app", "1").state.claimed_at.unwrap();
        wait_until("the lease is renewed", || {
            world.state("app", "1").state.claimed_at.unwrap() != first
        });
        // Renewed: another daemon cannot take the scan over, even at a
        // time when the first claim's lease has run out. The other daemon
        // asks one millisecond before the renewed lease ends (times in the
        // store are ours to pick), so a slow machine changes nothing.
        let renewed_at = world.state("app", "1").state.claimed_at.unwrap();
        assert!(renewed_at > first);
        let policy = regkeeper::store::ScanPolicy {
            now: renewed_at + 600 - 1,
            lease_ms: 600,
            rescan_after_ms: None,
            retry_failed: false,
            limit: 1,
        };
        assert!(
            policy.now >= first + 600,
            "the first claim's lease has run out"
        );
        assert!(world
            .store
            .claim_scan(&image.digest, "other", &policy)
            .unwrap()
            .is_none());
        server.set(|s| s.hold = false);
        running.join().unwrap().unwrap()
    });
    assert_eq!(count(&outcome, "scanned"), 1, "{outcome:?}");
    assert_eq!(world.state("app", "1").state.scanned, 2);
}

fn adapter_of(server: &ScannerServer, timeout: Duration) -> Arc<dyn Scanner> {
    scanner::build(Kind::Adapter, &settings("adapter", &server.url(), timeout)).unwrap()
}

/// Scanner name, whether its report is current, when it was taken.
fn reports_of(image: &regkeeper::store::ImageVulnerabilities) -> Vec<(String, bool, Option<i64>)> {
    image
        .reports
        .iter()
        .map(|report| (report.scanner.clone(), report.current(), report.scanned_at))
        .collect()
}

fn report(scanner: &str, current: bool, scanned_at: Option<i64>) -> (String, bool, Option<i64>) {
    (scanner.to_string(), current, scanned_at)
}

/// Two scanners, the adapter failing (500 or a timeout): clair's results
/// are stored and shown, the tag is not done, only the adapter is retried
/// with backoff, and once it answers the tag is done with both reports,
/// without clair being asked again before rescan_after.
fn a_failing_scanner_keeps_the_others_results_and_only_it_is_retried(backend: Backend) {
    type Breakage = fn(&mut support::scanners::Switches);
    let cases: [(&str, Breakage, &str); 2] = [
        (
            "500",
            |s| s.fail_submit = Some((500, "scanner database unavailable".into())),
            "500",
        ),
        ("timeout", |s| s.delay = Duration::from_secs(3), "timed out"),
    ];
    for (case, breakage, expected) in cases {
        let world = world(backend, Auth::Anonymous);
        let clair = ScannerServer::start(Api::Clair);
        let adapter = ScannerServer::start(Api::Adapter);
        adapter.set(breakage);
        let image = world.push("app", "1");
        let run_at = |now: i64| {
            world
                .handler(
                    vec![
                        clair_of(&clair),
                        adapter_of(&adapter, Duration::from_millis(500)),
                    ],
                    options(),
                    at(now),
                )
                .run(&world.context("d"))
                .unwrap()
        };
        let clair_posts = || clair.requests_to("POST", "/v1/layers").len();
        let adapter_scans = || adapter.requests_to("POST", "/api/v1/scan").len();

        let outcome = run_at(T0);
        assert_eq!(
            (
                count(&outcome, "scanned"),
                count(&outcome, "failed"),
                count(&outcome, "reports")
            ),
            (0, 1, 1),
            "{backend:?} {case}: {outcome:?}"
        );
        let state = world.state("app", "1");
        assert_eq!(state.state.scanned, 0, "{backend:?} {case}: not done");
        assert_eq!(
            world.names("app", "1"),
            ["CVE-2016-6301", "CVE-2016-8859"],
            "{backend:?} {case}: clair's results are stored"
        );
        assert!(state.vulnerabilities.iter().all(|v| v.scanner == "clair"));
        assert_eq!(
            reports_of(&state),
            [
                report("adapter", false, None),
                report("clair", true, Some(T0))
            ],
            "{backend:?} {case}"
        );
        let failed = &state.reports[0];
        let error = failed.last_error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{backend:?} {case}: {error}");
        assert_eq!(failed.not_before, Some(T0 + 60_000), "{backend:?} {case}");
        assert_eq!(state.state.not_before, Some(T0 + 60_000));
        let posts_after_first_run = clair_posts();
        assert!(posts_after_first_run > 0);

        // Nothing is asked before the adapter's backoff is over.
        let outcome = run_at(T0 + 59_999);
        assert_eq!(count(&outcome, "failed") + count(&outcome, "reports"), 0);
        assert_eq!(adapter_scans(), 1, "{backend:?} {case}");

        // Still failing: a second attempt, clair not asked again.
        let outcome = run_at(T0 + 60_000);
        assert_eq!(
            count(&outcome, "failed"),
            1,
            "{backend:?} {case}: {outcome:?}"
        );
        assert_eq!(adapter_scans(), 2, "{backend:?} {case}");
        assert_eq!(clair_posts(), posts_after_first_run, "{backend:?} {case}");
        let state = world.state("app", "1");
        assert_eq!(state.reports[0].attempts, 2);
        assert_eq!(state.state.not_before, Some(T0 + 60_000 + 120_000));
        assert_eq!(world.names("app", "1").len(), 2);

        // The adapter answers: done with both reports, clair untouched.
        adapter.set(|s| *s = support::scanners::Switches::default());
        let retry = T0 + 180_000;
        let outcome = run_at(retry);
        assert_eq!(
            (count(&outcome, "scanned"), count(&outcome, "reports")),
            (1, 1),
            "{backend:?} {case}: {outcome:?}"
        );
        assert_eq!(clair_posts(), posts_after_first_run, "{backend:?} {case}");
        let state = world.state("app", "1");
        assert_eq!(
            (state.state.scanned, state.state.last_error.as_deref()),
            (2, None),
            "{backend:?} {case}"
        );
        assert_eq!(
            reports_of(&state),
            [
                report("adapter", true, Some(retry)),
                report("clair", true, Some(T0))
            ]
        );
        let scanners: Vec<(&str, &str)> = state
            .vulnerabilities
            .iter()
            .map(|v| (v.scanner.as_str(), v.name.as_str()))
            .collect();
        assert_eq!(scanners.len(), 4, "{backend:?} {case}: {scanners:?}");
        assert_eq!(
            adapter
                .requests_to("POST", "/api/v1/scan")
                .last()
                .unwrap()
                .json()["artifact"]["digest"],
            image.digest.as_str()
        );

        // rescan_after counts from each scanner's own report: at T0 +
        // a day clair is due again, the adapter not yet.
        let day = 24 * 3600 * 1000;
        assert_eq!(count(&run_at(T0 + day - 1), "reports"), 0);
        let outcome = run_at(T0 + day);
        assert_eq!(
            count(&outcome, "reports"),
            1,
            "{backend:?} {case}: {outcome:?}"
        );
        assert!(clair_posts() > posts_after_first_run);
        assert_eq!(adapter_scans(), 3, "{backend:?} {case}");
        assert_eq!(world.state("app", "1").state.scanned_at, Some(retry));
    }
}

/// A scanner that keeps failing fails for good on its own; the other's
/// results stay; a scanner removed from the configuration no longer holds
/// the tag back and its results are deleted.
fn a_scanner_removed_from_the_config_no_longer_holds_tags_back(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    let clair = ScannerServer::start(Api::Clair);
    let adapter = ScannerServer::start(Api::Adapter);
    world.push("app", "1");
    let both = || {
        vec![
            clair_of(&clair),
            adapter_of(&adapter, Duration::from_secs(10)),
        ]
    };
    let outcome = world
        .handler(both(), options(), at(T0))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    assert_eq!(world.names("app", "1").len(), 4);
    // A day later the adapter breaks: after max_attempts (3) it failed
    // for good, its old results kept (stale), clair's report current.
    adapter.set(|s| s.fail_submit = Some((503, "maintenance".into())));
    let day = 24 * 3600 * 1000;
    let mut now = T0 + day;
    for attempt in 1..=3 {
        let outcome = world
            .handler(both(), options(), at(now))
            .run(&world.context("d"))
            .unwrap();
        assert_eq!(
            count(&outcome, "failed"),
            1,
            "{backend:?} {attempt}: {outcome:?}"
        );
        now = world.state("app", "1").state.not_before.unwrap_or(now);
    }
    let state = world.state("app", "1");
    assert_eq!(state.state.scanned, 3, "{backend:?}");
    assert!(state.reports[0].failed && state.reports[0].scanned_at == Some(T0));
    assert!(state.reports[1].current());
    assert_eq!(
        state.vulnerabilities.len(),
        4,
        "{backend:?}: stale results kept"
    );
    assert_eq!(
        world.store.queue_counts().unwrap().tags_by_scan["failed"],
        1
    );

    // The adapter leaves the configuration.
    let clair_posts = clair.requests_to("POST", "/v1/layers").len();
    let outcome = world
        .handler(vec![clair_of(&clair)], options(), at(now + 1))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    assert!(count(&outcome, "forgotten_results") > 0);
    assert_eq!(clair.requests_to("POST", "/v1/layers").len(), clair_posts);
    let state = world.state("app", "1");
    assert_eq!(state.state.scanned, 2, "{backend:?}");
    assert_eq!(reports_of(&state), [report("clair", true, Some(T0 + day))]);
    assert!(state.vulnerabilities.iter().all(|v| v.scanner == "clair"));
}

#[test]
fn a_cancelled_run_takes_no_new_images() {
    let world = world(Backend::Sqlite, Auth::Anonymous);
    let server = ScannerServer::start(Api::Clair);
    world.push("app", "1");
    world.push("app", "2");
    let mut one_at_a_time = options();
    one_at_a_time.concurrency = 1;
    let handler = world.handler(vec![clair_of(&server)], one_at_a_time, at(T0));
    let context = world.context("d");
    server.set(|s| s.hold = true);
    let outcome = std::thread::scope(|scope| {
        let running = scope.spawn(|| handler.run(&context));
        server.wait_for("POST", "/v1/layers", 1);
        // Shutdown while the first image is being scanned: it finishes, the
        // second is left for the next run.
        context.cancel.cancel();
        server.set(|s| s.hold = false);
        running.join().unwrap().unwrap()
    });
    assert_eq!(count(&outcome, "scanned"), 1, "{outcome:?}");
    let states: Vec<i64> = ["1", "2"]
        .iter()
        .map(|tag| world.state("app", tag).state.scanned)
        .collect();
    assert!(states.contains(&2) && states.contains(&0), "{states:?}");
}

regkeeper_test_support::both_backends!(
    clair_scan_serves_every_tag_sharing_a_digest_with_one_scan,
    clair_features_null_marks_the_tag_done_with_no_vulnerabilities,
    clair_post_get_unreachable_and_timeout_never_mark_a_tag_done,
    repush_during_a_scan_discards_the_results_of_the_old_digest,
    rescan_after_rescan_after_has_passed,
    crash_during_a_scan_is_taken_again_after_the_lease,
    clair4_flow_through_the_handler,
    adapter_flow_with_302_polling_and_a_harbor_report,
    several_scanners_store_the_results_of_all,
    a_failing_scanner_keeps_the_others_results_and_only_it_is_retried,
    a_scanner_removed_from_the_config_no_longer_holds_tags_back,
);
