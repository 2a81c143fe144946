//! The `security` handler's lifecycle against a real registry and a
//! stand-in scanner, on both databases: one scan per digest, failures and
//! backoff, re-pushes and crashes during a scan, leases, concurrency, each
//! scanner API through the handler, cancellation.

use std::sync::Arc;
use std::time::Duration;

use regkeeper::jobs::Handler;
use regkeeper::scanner::{self, ScannerKind};
use regkeeper::store::ScanState;
use regkeeper_test_support as support;
use support::registry::Auth;
use support::scanners::{unreachable_url, Api, ScannerServer, Vuln};
use support::{wait_until, Backend};

use crate::world::{at, clair_of, count, options, world};
use crate::{settings, T0};

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
        assert_eq!(
            state.state.scanned,
            ScanState::Done,
            "{backend:?} {repository}:{tag}"
        );
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
    assert_eq!(state.state.scanned, ScanState::Done);
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
    ];
    for (case, switch, url, expected) in cases {
        let server = ScannerServer::start(Api::Clair);
        server.set(|s| switch(s));
        let server_url = match url {
            Some(_) => unreachable_url(),
            None => server.url(),
        };
        let clair = scanner::build(
            ScannerKind::Clair,
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
            state.state.scanned,
            ScanState::Unscanned,
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
    assert_eq!(world.state("app", "1").state.scanned, ScanState::Failed);
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
        (state.scanned.code(), state.attempts, state.last_error),
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
        state.state.scanned,
        ScanState::Unscanned,
        "{backend:?}: the new digest still needs a scan"
    );
    assert!(state.vulnerabilities.is_empty());
    // The next run scans the new digest.
    let outcome = handler.run(&context).unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{backend:?}: {outcome:?}");
    assert_eq!(world.state("app", "1").state.scanned, ScanState::Done);
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
    assert_eq!(world.state("app", "1").state.scanned, ScanState::Working);
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
    assert_eq!(world.state("app", "1").state.scanned, ScanState::Done);
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
        ScannerKind::Clair4,
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
    assert_eq!(state.state.scanned, ScanState::Done);
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
        ScannerKind::Adapter,
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
    assert_eq!(world.state("app", "1").state.scanned, ScanState::Done);
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
        .map(|tag| world.state("app", tag).state.scanned.code())
        .collect();
    assert!(states.contains(&2) && states.contains(&0), "{states:?}");
}

/// A scanner nothing listens for is down, not the images at fault.
fn an_unreachable_scanner_is_asked_once_a_pass_and_costs_the_images_nothing(backend: Backend) {
    let world = world(backend, Auth::Anonymous);
    for index in 0..20 {
        world.push(&format!("app{index:02}"), "1");
    }
    let down = scanner::build(
        ScannerKind::Clair,
        &settings("clair", &unreachable_url(), Duration::from_secs(10)),
    )
    .unwrap();
    let mut policy = options();
    policy.concurrency = 1;
    let error = world
        .handler(vec![down], policy.clone(), at(T0))
        .run(&world.context("d"))
        .expect_err("a run whose scanner is down fails");
    let error = format!("{error:#}");
    assert!(
        error.starts_with("scanner clair unreachable: asked once this pass, 20 images wait for it"),
        "{backend:?}: {error}"
    );
    assert!(error.contains("posting layer"), "{backend:?}: {error}");
    for index in 0..20 {
        let state = world.state(&format!("app{index:02}"), "1").state;
        assert_eq!(state.attempts, 0, "{backend:?}: no attempt used: {state:?}");
        assert_eq!(
            state.scanned,
            ScanState::Unscanned,
            "{backend:?}: still to be scanned"
        );
        assert_eq!(state.last_error, None, "{backend:?}");
    }
    // Once the scanner is up, the same tags are scanned at once: no
    // backoff, no lease left behind.
    let server = ScannerServer::start(Api::Clair);
    let outcome = world
        .handler(vec![clair_of(&server)], policy, at(T0 + 1))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 20, "{backend:?}: {outcome:?}");
}

fn a_stopped_registry_ends_the_pass_and_costs_the_images_nothing(backend: Backend) {
    let mut world = world(backend, Auth::Anonymous);
    for index in 0..20 {
        world.push(&format!("app{index:02}"), "1");
    }
    let server = ScannerServer::start(Api::Clair);
    world.registry.stop();
    let sent_before = world.client.requests_made();
    let error = world
        .handler(vec![clair_of(&server)], options(), at(T0))
        .run(&world.context("d"))
        .expect_err("a run whose registry is down fails");
    let error = format!("{error:#}");
    assert!(
        error.starts_with("registry unreachable: "),
        "{backend:?}: {error}"
    );
    assert!(error.contains("fetching manifest"), "{backend:?}: {error}");
    assert!(
        server.requests().is_empty(),
        "{backend:?}: the scanner was not asked"
    );
    for index in 0..20 {
        let state = world.state(&format!("app{index:02}"), "1");
        assert_eq!(state.state.attempts, 0, "{backend:?}: {:?}", state.state);
        assert_eq!(state.state.scanned, ScanState::Unscanned, "{backend:?}");
        assert!(
            state.reports.is_empty(),
            "{backend:?}: no scanner report: {:?}",
            state.reports
        );
    }
    // The pass stopped at the first images its workers took (two, with
    // three attempts each) instead of trying all twenty.
    let sent = world.client.requests_made() - sent_before;
    assert!(
        sent <= 6,
        "{backend:?}: {sent} requests to the stopped registry"
    );
    world.registry.restart();
    wait_until("the registry answers again", || {
        world.client.catalog().is_ok()
    });
    let outcome = world
        .handler(vec![clair_of(&server)], options(), at(T0 + 1))
        .run(&world.context("d"))
        .unwrap();
    assert_eq!(count(&outcome, "scanned"), 20, "{backend:?}: {outcome:?}");
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
    an_unreachable_scanner_is_asked_once_a_pass_and_costs_the_images_nothing,
    a_stopped_registry_ends_the_pass_and_costs_the_images_nothing,
);
