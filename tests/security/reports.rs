//! Several scanners through the handler, on both databases: the results
//! of all are stored, each scanner's report stands on its own (a failing
//! one keeps the others' results and alone is retried), and a scanner
//! removed from the configuration no longer holds tags back.

use std::time::Duration;

use regkeeper::jobs::Handler;
use regkeeper::scanner::{self, ScannerKind, Settings};
use regkeeper::store::ScanState;
use regkeeper_test_support as support;
use support::registry::Auth;
use support::scanners::{Api, ScannerServer};
use support::Backend;

use crate::world::{adapter_of, at, clair_of, count, options, world};
use crate::T0;

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
        ScannerKind::Fixture,
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
        assert_eq!(
            state.state.scanned,
            ScanState::Unscanned,
            "{backend:?} {case}: not done"
        );
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
            (
                state.state.scanned.code(),
                state.state.last_error.as_deref()
            ),
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
    assert_eq!(state.state.scanned, ScanState::Failed, "{backend:?}");
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
    assert_eq!(state.state.scanned, ScanState::Done, "{backend:?}");
    assert_eq!(reports_of(&state), [report("clair", true, Some(T0 + day))]);
    assert!(state.vulnerabilities.iter().all(|v| v.scanner == "clair"));
}

regkeeper_test_support::both_backends!(
    several_scanners_store_the_results_of_all,
    a_failing_scanner_keeps_the_others_results_and_only_it_is_retried,
    a_scanner_removed_from_the_config_no_longer_holds_tags_back,
);
