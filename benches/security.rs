//! Benchmark of the `security` job (not a test; run `scripts/bench-security.sh`).
//!
//! 1. Scan throughput: 1,000 tags over 200 manifest digests in a real
//!    docker-registry, scanned once by the handler (default concurrency 2)
//!    with the fixture backend and with the stand-in Clair v2 server of the
//!    tests; images (digests) per second, on SQLite and, when
//!    `REGKEEPER_TEST_POSTGRES_URL` is set, PostgreSQL.
//! 2. Database time per stored vulnerability: `settle_scan` of one image
//!    with 650 vulnerabilities, first store and replacement, on each database.
//!
//! Prints one line per figure.

use regkeeper_test_support as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use regkeeper::config::SecurityOptions;
use regkeeper::jobs::security::{RegistryImages, Security};
use regkeeper::jobs::{Cancel, Handler, JobContext, RunOptions, Trigger};
use regkeeper::scanner::{self, ScannerKind, Settings};
use regkeeper::store::{
    ScanPolicy, ScanSettled, ScanSettlement, ScannerOutcome, ScannerResult, Store, TagWrite,
    VulnerabilityWrite,
};
use support::registry::TestRegistry;
use support::scanners::{many_vulns, Api, ScannerServer};
use support::{Backend, TestStore};

const DIGESTS: usize = 200;
const TAGS_PER_DIGEST: usize = 5;
const VULNS_PER_IMAGE: usize = 650;

/// A fresh store and what keeps it alive.
fn store(database: &str, keep: &mut Vec<TestStore>) -> Arc<dyn Store> {
    let backend = match database {
        "postgres" => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let store = TestStore::new(backend);
    let shared = store.shared();
    keep.push(store);
    shared
}

fn context(store: Arc<dyn Store>) -> JobContext {
    JobContext {
        job_name: "security".into(),
        run_id: 1,
        trigger: Trigger::Once,
        claimant: "bench".into(),
        store,
        options: RunOptions::default(),
        cancel: Cancel::default(),
    }
}

fn throughput(registry: &TestRegistry, images: &[(String, String)], database: &str, backend: &str) {
    let mut keep = Vec::new();
    let store = store(database, &mut keep);
    let host = format!("127.0.0.1:{}", registry.port);
    let registry_id = store.ensure_registry(&host).expect("registry row");
    for (index, (repository, digest)) in images.iter().enumerate() {
        for copy in 0..TAGS_PER_DIGEST {
            store
                .upsert_tag(
                    registry_id,
                    &TagWrite {
                        repository: if copy == 0 {
                            repository.clone()
                        } else {
                            format!("copies{copy}/app{index}")
                        },
                        tag: "1".into(),
                        digest: digest.clone(),
                        image_id: String::new(),
                        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
                        size: None,
                        platforms: None,
                    },
                    0,
                )
                .expect("recording a tag");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut servers = Vec::new();
    let scanner = match backend {
        "fixture" => {
            let path = dir.path().join("fixture.json");
            let entries: Vec<serde_json::Value> = many_vulns(20)
                .into_iter()
                .map(|v| serde_json::json!({"Name": v.name, "Severity": v.severity, "Link": "https://cve.example/"}))
                .collect();
            std::fs::write(&path, serde_json::to_vec(&entries).expect("fixture json")).expect("writing fixture");
            scanner::build(
                ScannerKind::Fixture,
                &Settings {
                    name: "fixture".into(),
                    server: None,
                    timeout: Duration::from_secs(10),
                    authorization: None,
                    file: Some(path),
                },
            )
        }
        _ => {
            let server = ScannerServer::start(Api::Clair);
            server.set(|s| s.vulns = many_vulns(20));
            let built = scanner::build(
                ScannerKind::Clair,
                &Settings {
                    name: "clair".into(),
                    server: Some(url::Url::parse(&server.url()).expect("server url")),
                    timeout: Duration::from_secs(30),
                    authorization: None,
                    file: None,
                },
            );
            servers.push(server);
            built
        }
    }
    .expect("building the scanner");
    let client = Arc::new(
        regkeeper::registry::Client::new(&registry.client_config()).expect("registry client"),
    );
    let handler = Security::new(
        vec![scanner],
        Arc::new(RegistryImages::new(client)),
        SecurityOptions {
            rescan_after: Duration::from_secs(24 * 3600),
            concurrency: 2,
            max_attempts: 3,
            lease: Duration::from_secs(1800),
        },
        host,
        Arc::new(|| 1_000),
    );
    let started = Instant::now();
    let outcome = handler.run(&context(store)).expect("the security run");
    let elapsed = started.elapsed();
    let scanned = outcome.counts.get("scanned").copied().unwrap_or(0);
    assert_eq!(
        scanned as usize,
        images.len(),
        "every digest scanned: {outcome:?}"
    );
    println!(
        "scan {backend:8} {database:8} {} tags / {} digests in {:.2}s: {:.1} images/s ({:.1} tags/s)",
        images.len() * TAGS_PER_DIGEST,
        images.len(),
        elapsed.as_secs_f64(),
        images.len() as f64 / elapsed.as_secs_f64(),
        (images.len() * TAGS_PER_DIGEST) as f64 / elapsed.as_secs_f64()
    );
    let scanner = if backend == "clair" {
        "Clair v2 stand-in"
    } else {
        backend
    };
    support::bench::record(&support::bench::Sample {
        suite: "security",
        figure: &format!("images scanned, {scanner} ({})", database_name(database)),
        unit: "/s",
        value: images.len() as f64 / elapsed.as_secs_f64(),
        floor: None,
    });
}

/// The database as the benchmark table names it.
fn database_name(database: &str) -> &'static str {
    if database == "postgres" {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

fn store_time(database: &str) {
    let mut keep = Vec::new();
    let store = store(database, &mut keep);
    let registry_id = store
        .ensure_registry("bench.example:5000")
        .expect("registry row");
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    store
        .upsert_tag(
            registry_id,
            &TagWrite {
                repository: "bench/app".into(),
                tag: "1".into(),
                digest: digest.into(),
                image_id: String::new(),
                media_type: String::new(),
                size: None,
                platforms: None,
            },
            0,
        )
        .expect("recording a tag");
    let writes: Vec<VulnerabilityWrite> = many_vulns(VULNS_PER_IMAGE)
        .into_iter()
        .map(|v| VulnerabilityWrite {
            name: v.name.clone(),
            scanner: "clair".into(),
            severity: v.severity.clone(),
            severity_raw: v.severity,
            link: format!("https://cve.example/{}", v.name),
            fixed_by: v.fixed_by,
            description: format!("{} lets a remote attacker do something bad to {}", v.name, v.package),
            metadata: Some(format!(
                r#"{{"namespace":"debian:9","package":"{}","details":{{"NVD":{{"CVSSv2":{{"Score":5.0}}}}}}}}"#,
                v.package
            )),
        })
        .collect();
    // Round 0 stores everything; rounds 1..=10 store identical results (a
    // rescan that found nothing new); rounds 11..=20 change every row.
    let rounds = 21;
    let mut first = Duration::ZERO;
    let mut same = Duration::ZERO;
    let mut changed = Duration::ZERO;
    for round in 0..rounds {
        let now = 1_000 + round * 100_000_000;
        let policy = ScanPolicy {
            now,
            lease_ms: 1_000,
            rescan_after_ms: Some(1),
            retry_failed: false,
            limit: 1,
        };
        let mut writes = writes.clone();
        if round > 10 {
            for write in &mut writes {
                write.description = format!("{} (revised {round})", write.description);
            }
        }
        store
            .claim_scan(digest, "bench", &policy)
            .expect("claim")
            .expect("due");
        let settlement = ScanSettlement {
            enabled: vec!["clair".into()],
            outcomes: vec![ScannerOutcome {
                scanner: "clair".into(),
                result: ScannerResult::Report(writes),
            }],
            max_attempts: 5,
        };
        let started = Instant::now();
        let stored = store
            .settle_scan(digest, "bench", &settlement, now)
            .expect("settle_scan");
        let elapsed = started.elapsed();
        assert!(matches!(
            stored,
            ScanSettled::Settled {
                scanned: regkeeper::store::ScanState::Done,
                ..
            }
        ));
        match round {
            0 => first = elapsed,
            1..=10 => same += elapsed,
            _ => changed += elapsed,
        }
    }
    let per_vuln = |total: Duration| total.as_secs_f64() * 1e6 / VULNS_PER_IMAGE as f64;
    let same = same / 10;
    let changed = changed / 10;
    println!(
        "store    {database:8} {VULNS_PER_IMAGE} vulnerabilities: first {:.1} ms ({:.1} µs/vuln), \
         rescan unchanged {:.1} ms ({:.1} µs/vuln), rescan all changed {:.1} ms ({:.1} µs/vuln)",
        first.as_secs_f64() * 1e3,
        per_vuln(first),
        same.as_secs_f64() * 1e3,
        per_vuln(same),
        changed.as_secs_f64() * 1e3,
        per_vuln(changed),
    );
    for (what, elapsed) in [
        ("first", first),
        ("rescan unchanged", same),
        ("rescan all changed", changed),
    ] {
        support::bench::record(&support::bench::Sample {
            suite: "security",
            figure: &format!(
                "DB time per vulnerability, {what} ({})",
                database_name(database)
            ),
            unit: "µs",
            value: elapsed.as_secs_f64() * 1e6 / VULNS_PER_IMAGE as f64,
            floor: None,
        });
    }
}

fn main() {
    // `cargo bench` passes `--bench`. Test runners also start bench targets
    // (`cargo test --all-targets`, nextest's `--list`): list nothing, run nothing.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let mut databases = vec!["sqlite"];
    if std::env::var(support::postgres::URL_VARIABLE).is_ok() {
        databases.push("postgres");
    } else {
        eprintln!(
            "{} is not set: PostgreSQL figures skipped",
            support::postgres::URL_VARIABLE
        );
    }
    let registry = TestRegistry::anonymous();
    let started = Instant::now();
    let images: Vec<(String, String)> = (0..DIGESTS)
        .map(|index| {
            let repository = format!("bench/app{index}");
            let image = registry.push_image(&repository, "1");
            (repository, image.digest)
        })
        .collect();
    eprintln!(
        "pushed {DIGESTS} images in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // scripts/bench.sh asks for several runs over the same registry.
    let runs = std::env::var(support::bench::RUNS_VARIABLE)
        .ok()
        .and_then(|runs| runs.parse::<usize>().ok())
        .unwrap_or(1);
    for _ in 0..runs {
        for database in &databases {
            for backend in ["fixture", "clair"] {
                throughput(&registry, &images, database, backend);
            }
            store_time(database);
        }
    }
}
