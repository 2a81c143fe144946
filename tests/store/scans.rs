//! The scan lifecycle and the per-scanner reports.

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{self, ScanState, Store};

use crate::{write, NOW};

fn scan_policy(now: i64) -> store::ScanPolicy {
    store::ScanPolicy {
        now,
        lease_ms: 60_000,
        rescan_after_ms: Some(3_600_000),
        retry_failed: false,
        limit: 100,
    }
}

fn found(name: &str, scanner: &str, severity: &str) -> store::VulnerabilityWrite {
    store::VulnerabilityWrite {
        name: name.to_string(),
        scanner: scanner.to_string(),
        severity: severity.to_string(),
        severity_raw: severity.to_uppercase(),
        link: format!("https://cve.example/{name}"),
        fixed_by: "1.2".to_string(),
        description: String::new(),
        metadata: Some(r#"{"package":"zlib"}"#.to_string()),
    }
}

/// The scan lifecycle: candidates, claims, results, failures, leases,
/// rescans, re-pushes during a scan, counts and pruning.
pub(crate) fn chapter(store: &SqlStore) {
    let registry = store.ensure_registry("scans.example:5000").unwrap();
    for (repository, tag, digest) in [
        ("a/app", "1", "sha256:d1"),
        ("b/app", "1", "sha256:d1"),
        ("b/app", "2", "sha256:d2"),
    ] {
        store
            .upsert_tag(registry, &write(repository, tag, digest), NOW)
            .unwrap();
    }
    let due = |now: i64| -> Vec<String> {
        store
            .scan_candidates(registry, &scan_policy(now))
            .expect("scan_candidates")
            .into_iter()
            .map(|candidate| candidate.digest)
            .collect()
    };
    assert_eq!(due(NOW), ["sha256:d1", "sha256:d2"]);
    let first = &store.scan_candidates(registry, &scan_policy(NOW)).unwrap()[0];
    assert_eq!(
        (first.repository.as_str(), first.tag.as_str()),
        ("a/app", "1")
    );

    // A claim covers every tag with the digest, once.
    let claim = store
        .claim_scan("sha256:d1", "x", &scan_policy(NOW))
        .expect("claim_scan")
        .unwrap();
    assert_eq!((claim.attempts, claim.tags), (0, 2));
    assert!(store
        .claim_scan("sha256:d1", "y", &scan_policy(NOW))
        .unwrap()
        .is_none());
    assert_eq!(due(NOW), ["sha256:d2"]);

    // Results replace the digest's results and mark its tags done.
    let results = [
        found("CVE-2", "clair", "Low"),
        found("CVE-1", "clair", "High"),
        found("CVE-1", "fixture", "Critical"),
    ];
    assert_eq!(
        settle_found(store, "sha256:d1", "x", &results, NOW + 5),
        store::ScanSettled::Settled {
            tags: 2,
            scanned: ScanState::Done,
            vulnerabilities: 3
        }
    );
    let image = store
        .image_vulnerabilities(registry, "b/app", "1")
        .expect("image_vulnerabilities")
        .unwrap();
    assert_eq!(image.digest, "sha256:d1");
    assert_eq!(
        (image.state.scanned.code(), image.state.scanned_at),
        (2, Some(NOW + 5))
    );
    let listed: Vec<(&str, &str, &str)> = image
        .vulnerabilities
        .iter()
        .map(|v| (v.name.as_str(), v.scanner.as_str(), v.severity.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("CVE-1", "fixture", "Critical"),
            ("CVE-1", "clair", "High"),
            ("CVE-2", "clair", "Low")
        ]
    );
    assert_eq!(image.vulnerabilities[0].severity_raw, "CRITICAL");
    assert_eq!(
        image.vulnerabilities[0].metadata.as_deref(),
        Some(r#"{"package":"zlib"}"#)
    );
    assert!(store
        .image_vulnerabilities(registry, "b/app", "nope")
        .unwrap()
        .is_none());
    let counts = store.vulnerability_counts().expect("vulnerability_counts");
    assert_eq!(
        (
            counts["Critical"],
            counts["High"],
            counts["Low"],
            counts["Medium"]
        ),
        (1, 1, 1, 0)
    );
    // Without the claim nothing is stored.
    assert_eq!(
        settle_found(store, "sha256:d1", "x", &results[..1], NOW),
        store::ScanSettled::Discarded
    );

    // Failures back off, then give up at max_attempts.
    store
        .claim_scan("sha256:d2", "x", &scan_policy(NOW))
        .unwrap()
        .unwrap();
    assert_eq!(
        settle_failed(store, "sha256:d2", "x", "clair answered 500", NOW + 60_000),
        store::ScanSettled::Settled {
            tags: 1,
            scanned: ScanState::Unscanned,
            vulnerabilities: 0
        }
    );
    let state = store
        .image_vulnerabilities(registry, "b/app", "2")
        .unwrap()
        .unwrap()
        .state;
    assert_eq!(
        (
            state.scanned.code(),
            state.attempts,
            state.last_error.as_deref()
        ),
        (0, 1, Some("clair: clair answered 500"))
    );
    assert!(due(NOW).is_empty());
    assert_eq!(due(NOW + 60_000), ["sha256:d2"]);
    let claim = store
        .claim_scan("sha256:d2", "x", &scan_policy(NOW + 60_000))
        .unwrap()
        .unwrap();
    assert_eq!(claim.attempts, 1);
    settle_failed(store, "sha256:d2", "x", "timed out", NOW + 180_000);
    assert_eq!(
        store
            .image_vulnerabilities(registry, "b/app", "2")
            .unwrap()
            .unwrap()
            .state
            .scanned,
        ScanState::Failed
    );
    assert!(due(NOW + 10_000_000)
        .iter()
        .all(|digest| digest != "sha256:d2"));
    assert_eq!(store.queue_counts().unwrap().tags_by_scan["failed"], 1);
    let retry = store::ScanPolicy {
        retry_failed: true,
        ..scan_policy(NOW)
    };
    assert_eq!(
        store.scan_candidates(registry, &retry).unwrap()[0].digest,
        "sha256:d2"
    );

    // A lease that ran out (its daemon died) is taken again; release gives it back.
    store
        .claim_scan("sha256:d2", "dead", &retry)
        .unwrap()
        .unwrap();
    assert!(store
        .claim_scan(
            "sha256:d2",
            "y",
            &store::ScanPolicy {
                now: NOW + 30_000,
                ..retry.clone()
            }
        )
        .unwrap()
        .is_none());
    // A live scan renews its lease.
    assert_eq!(
        store
            .renew_scan("sha256:d2", "dead", NOW + 30_000)
            .expect("renew_scan"),
        1
    );
    let at = |now: i64| store::ScanPolicy {
        now,
        ..retry.clone()
    };
    assert!(store
        .claim_scan("sha256:d2", "y", &at(NOW + 60_000))
        .unwrap()
        .is_none());
    let taken = store
        .claim_scan("sha256:d2", "y", &at(NOW + 90_000))
        .unwrap();
    assert!(taken.is_some());
    assert_eq!(
        store.renew_scan("sha256:d2", "dead", NOW + 90_000).unwrap(),
        0
    );
    assert_eq!(
        store.release_scan("sha256:d2", "y").expect("release_scan"),
        1
    );
    assert_eq!(
        store
            .image_vulnerabilities(registry, "b/app", "2")
            .unwrap()
            .unwrap()
            .state
            .scanned,
        ScanState::Unscanned
    );

    // Done scans are due again after rescan_after; a re-push during the scan wins.
    assert!(!due(NOW + 1000).contains(&"sha256:d1".to_string()));
    let later = NOW + 3_600_000 + 5;
    assert!(due(later).contains(&"sha256:d1".to_string()));
    store
        .claim_scan("sha256:d1", "x", &scan_policy(later))
        .unwrap()
        .unwrap();
    store
        .upsert_tag(registry, &write("a/app", "1", "sha256:d3"), later)
        .unwrap();
    store
        .upsert_tag(registry, &write("b/app", "1", "sha256:d3"), later)
        .unwrap();
    assert_eq!(
        settle_found(store, "sha256:d1", "x", &results, later),
        store::ScanSettled::Discarded
    );
    assert_eq!(store.prune_scan_results().expect("prune_scan_results"), 3);
    assert_eq!(store.vulnerability_counts().unwrap()["Critical"], 0);
    assert!(store
        .image_vulnerabilities(registry, "a/app", "1")
        .unwrap()
        .unwrap()
        .vulnerabilities
        .is_empty());

    // A rescan writes only the differences: one gone, one changed, one new.
    store
        .upsert_tag(registry, &write("c/app", "1", "sha256:d4"), NOW)
        .unwrap();
    let first_scan = [
        found("CVE-A", "clair", "Low"),
        found("CVE-B", "clair", "High"),
    ];
    let second_scan = [
        found("CVE-A", "clair", "Critical"),
        found("CVE-C", "clair", "Low"),
    ];
    for (round, results) in [&first_scan, &second_scan].into_iter().enumerate() {
        let now = NOW + 100_000_000 * (round as i64 + 1);
        store
            .claim_scan("sha256:d4", "x", &scan_policy(now))
            .unwrap()
            .expect("due");
        settle_found(store, "sha256:d4", "x", results, now);
    }
    let listed: Vec<(String, String)> = store
        .image_vulnerabilities(registry, "c/app", "1")
        .unwrap()
        .unwrap()
        .vulnerabilities
        .into_iter()
        .map(|v| (v.name, v.severity))
        .collect();
    assert_eq!(
        listed,
        [
            ("CVE-A".to_string(), "Critical".to_string()),
            ("CVE-C".to_string(), "Low".to_string())
        ]
    );
    // The same results again change nothing.
    let now = NOW + 400_000_000;
    store
        .claim_scan("sha256:d4", "x", &scan_policy(now))
        .unwrap()
        .expect("due");
    assert_eq!(
        settle_found(store, "sha256:d4", "x", &second_scan, now),
        store::ScanSettled::Settled {
            tags: 1,
            scanned: ScanState::Done,
            vulnerabilities: 2
        }
    );
    assert_eq!(
        store
            .image_vulnerabilities(registry, "c/app", "1")
            .unwrap()
            .unwrap()
            .vulnerabilities
            .len(),
        2
    );
}

/// Per-scanner reports: a scanner that answered replaces only its own
/// results; one that failed keeps its results (stale), backs off and
/// fails for good at max_attempts; tags are done only when every enabled
/// scanner's report is current; a forgotten scanner holds nothing back.
pub(crate) fn report_chapter(store: &SqlStore) {
    use store::{ScanSettled, ScanSettlement, ScannerOutcome, ScannerResult};
    let registry = store.ensure_registry("reports.example:5000").unwrap();
    store
        .upsert_tag(registry, &write("r/app", "1", "sha256:r1"), NOW)
        .unwrap();
    let enabled = vec!["adapter".to_string(), "clair".to_string()];
    let report = |scanner: &str, found: Vec<store::VulnerabilityWrite>| ScannerOutcome {
        scanner: scanner.to_string(),
        result: ScannerResult::Report(found),
    };
    let failure = |scanner: &str, error: &str, not_before: i64| ScannerOutcome {
        scanner: scanner.to_string(),
        result: ScannerResult::Failed {
            error: error.to_string(),
            not_before,
        },
    };
    let settle = |claimant: &str, outcomes: Vec<ScannerOutcome>, now: i64| {
        store
            .settle_scan(
                "sha256:r1",
                claimant,
                &ScanSettlement {
                    enabled: enabled.clone(),
                    outcomes,
                    max_attempts: 2,
                },
                now,
            )
            .expect("settle_scan")
    };
    let state = || {
        store
            .image_vulnerabilities(registry, "r/app", "1")
            .unwrap()
            .unwrap()
    };
    let names = || -> Vec<(String, String)> {
        state()
            .vulnerabilities
            .into_iter()
            .map(|v| (v.scanner, v.name))
            .collect()
    };
    assert_eq!(store.scan_reports("sha256:r1").expect("scan_reports"), []);

    // Both answer: done, each report current.
    store
        .claim_scan("sha256:r1", "x", &scan_policy(NOW))
        .unwrap()
        .unwrap();
    assert_eq!(
        settle(
            "x",
            vec![
                report("clair", vec![found("CVE-R1", "clair", "High")]),
                report("adapter", vec![found("CVE-R2", "adapter", "Low")]),
            ],
            NOW
        ),
        ScanSettled::Settled {
            tags: 1,
            scanned: ScanState::Done,
            vulnerabilities: 2
        }
    );
    assert_eq!(state().state.scanned_at, Some(NOW));
    let reports = store.scan_reports("sha256:r1").unwrap();
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.scanner.as_str(), r.current()))
            .collect::<Vec<_>>(),
        [("adapter", true), ("clair", true)]
    );

    // A rescan where the adapter fails: clair's new results replace only
    // its own; the adapter's stay (stale), the tag waits for its retry.
    let later = NOW + 3_600_000 + 5;
    store
        .claim_scan("sha256:r1", "x", &scan_policy(later))
        .unwrap()
        .unwrap();
    assert_eq!(
        settle(
            "x",
            vec![
                report("clair", vec![found("CVE-R3", "clair", "Critical")]),
                failure("adapter", "adapter answered 500", later + 60_000),
            ],
            later
        ),
        ScanSettled::Settled {
            tags: 1,
            scanned: ScanState::Unscanned,
            vulnerabilities: 1
        }
    );
    assert_eq!(
        names(),
        [
            ("clair".to_string(), "CVE-R3".to_string()),
            ("adapter".to_string(), "CVE-R2".to_string())
        ]
    );
    let tag = state().state;
    assert_eq!(
        (
            tag.scanned.code(),
            tag.attempts,
            tag.not_before,
            tag.scanned_at
        ),
        (0, 1, Some(later + 60_000), None)
    );
    assert_eq!(
        tag.last_error.as_deref(),
        Some("adapter: adapter answered 500")
    );
    let adapter = store.scan_reports("sha256:r1").unwrap()[0].clone();
    assert_eq!(
        adapter,
        store::ScanReport {
            scanner: "adapter".into(),
            scanned_at: Some(NOW),
            attempted_at: later,
            attempts: 1,
            last_error: Some("adapter answered 500".into()),
            not_before: Some(later + 60_000),
            failed: false,
        }
    );
    assert!(!adapter.current());
    let summaries = store.scanner_summaries().expect("scanner_summaries");
    let adapter_summary = summaries
        .iter()
        .find(|summary| summary.scanner == "adapter")
        .unwrap();
    assert_eq!(
        (
            adapter_summary.reports,
            adapter_summary.failing,
            adapter_summary.last_error_at,
            adapter_summary.last_report_at
        ),
        (1, 1, Some(later), Some(NOW))
    );
    let clair_summary = summaries
        .iter()
        .find(|summary| summary.scanner == "clair")
        .unwrap();
    // The earlier chapter's digests count too: clair's newest report is
    // at least this one.
    assert!(clair_summary.reports >= 1);
    assert!(clair_summary.last_report_at >= Some(later));

    // Not due before the backoff; the second failure is for good.
    let retry = later + 60_000;
    assert!(store
        .claim_scan("sha256:r1", "x", &scan_policy(retry - 1))
        .unwrap()
        .is_none());
    store
        .claim_scan("sha256:r1", "x", &scan_policy(retry))
        .unwrap()
        .unwrap();
    // A claim lost meanwhile stores nothing.
    assert_eq!(
        settle("other", vec![report("adapter", vec![])], retry),
        ScanSettled::Discarded
    );
    assert!(matches!(
        settle(
            "x",
            vec![failure("adapter", "timed out", retry + 120_000)],
            retry
        ),
        ScanSettled::Settled {
            scanned: ScanState::Failed,
            ..
        }
    ));
    assert!(store.scan_reports("sha256:r1").unwrap()[0].failed);
    assert_eq!(names().len(), 2, "stale results are still shown");

    // The adapter leaves the configuration: its results go and the tag is
    // looked at again; settling on clair alone makes it done.
    assert_eq!(
        store
            .forget_scanners(&["clair".to_string(), "fixture".to_string()])
            .expect("forget_scanners"),
        2
    );
    assert_eq!(state().state.scanned, ScanState::Unscanned);
    store
        .claim_scan("sha256:r1", "x", &scan_policy(retry))
        .unwrap()
        .unwrap();
    let settled = store
        .settle_scan(
            "sha256:r1",
            "x",
            &ScanSettlement {
                enabled: vec!["clair".to_string()],
                outcomes: vec![],
                max_attempts: 2,
            },
            retry,
        )
        .unwrap();
    assert!(matches!(
        settled,
        ScanSettled::Settled {
            scanned: ScanState::Done,
            ..
        }
    ));
    assert_eq!(state().state.scanned_at, Some(later));
    assert_eq!(names(), [("clair".to_string(), "CVE-R3".to_string())]);

    // Pruning a deleted image's results takes its reports too.
    store
        .upsert_tag(registry, &write("r/app", "1", "sha256:r2"), retry)
        .unwrap();
    store.prune_scan_results().unwrap();
    assert_eq!(store.scan_reports("sha256:r1").unwrap(), []);
}

/// Settles a scan of `digest` in which every scanner named in `results`
/// answered with its share of them (those scanners are the enabled ones).
fn settle_found(
    store: &SqlStore,
    digest: &str,
    claimant: &str,
    results: &[store::VulnerabilityWrite],
    now: i64,
) -> store::ScanSettled {
    let mut scanners: Vec<String> = results.iter().map(|v| v.scanner.clone()).collect();
    scanners.sort();
    scanners.dedup();
    let outcomes = scanners
        .iter()
        .map(|scanner| store::ScannerOutcome {
            scanner: scanner.clone(),
            result: store::ScannerResult::Report(
                results
                    .iter()
                    .filter(|v| &v.scanner == scanner)
                    .cloned()
                    .collect(),
            ),
        })
        .collect();
    store
        .settle_scan(
            digest,
            claimant,
            &store::ScanSettlement {
                enabled: scanners,
                outcomes,
                max_attempts: 2,
            },
            now,
        )
        .expect("settle_scan")
}

/// Settles a scan of `digest` in which clair, the only enabled scanner,
/// failed; it fails for good at its second failure.
fn settle_failed(
    store: &SqlStore,
    digest: &str,
    claimant: &str,
    error: &str,
    not_before: i64,
) -> store::ScanSettled {
    store
        .settle_scan(
            digest,
            claimant,
            &store::ScanSettlement {
                enabled: vec!["clair".to_string()],
                outcomes: vec![store::ScannerOutcome {
                    scanner: "clair".to_string(),
                    result: store::ScannerResult::Failed {
                        error: error.to_string(),
                        not_before,
                    },
                }],
                max_attempts: 2,
            },
            not_before - 60_000,
        )
        .expect("settle_scan")
}
