//! Events benchmark (not a test): run through `scripts/bench-events.sh`.
//!
//! 1. Throughput: 10,000 stored push events applied by the `events` handler,
//!    with `target.references` (no registry request); without them (one
//!    manifest GET each from a real docker-registry holding 10,000 distinct
//!    manifests); and without them for digests the tags already record
//!    (re-tags: no registry request).
//! 2. Latency: from the registry's manifest PUT to the tag row in the
//!    database, through the registry's notifications, the release binary's
//!    intake and its events job (default 2 s schedule plus the wake-up).
//!
//! The run without references is followed by its floor: the same manifest
//! GETs issued by `curl -Z` with the same parallelism, which is what the
//! registry can serve on this machine.
//!
//! Usage: `events_bench sqlite PATH | postgres URL [EVENTS [PUSHES
//! [REPOSITORIES]]]` (defaults 10000 events, 200 timed pushes, spread over
//! 100 repositories). Needs docker-registry, curl and the release binary
//! (`cargo build --release`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use regkeeper::config::Database;
use regkeeper::jobs::events::{EventsHandler, Settings};
use regkeeper::jobs::{Cancel, Handler, JobContext, RunOptions, Trigger};
use regkeeper::store::{self, NewEvent};
use regkeeper_test_support::daemon::Daemon;
use regkeeper_test_support::registry::{
    self, free_port, Notifications, Options, TestRegistry, OCI_MANIFEST,
};

const TOKEN: &str = "Token bench-token";

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: events_bench sqlite PATH | postgres URL [EVENTS [PUSHES [REPOSITORIES]]]";
    let (kind, target) = match arguments.as_slice() {
        [kind, target, ..] => (kind.clone(), target.clone()),
        _ => anyhow::bail!(usage),
    };
    let events: usize = arguments
        .get(2)
        .map_or(Ok(10_000), |n| n.parse())
        .context(usage)?;
    let pushes: usize = arguments
        .get(3)
        .map_or(Ok(200), |n| n.parse())
        .context(usage)?;
    let repositories: usize = arguments
        .get(4)
        .map_or(Ok(100), |n| n.parse())
        .context(usage)?
        .max(1);
    let database = match kind.as_str() {
        "sqlite" => Database::Sqlite {
            path: target.clone().into(),
        },
        "postgres" => Database::Postgres {
            url: target.clone(),
            password: None,
            pool_size: 4,
        },
        _ => anyhow::bail!(usage),
    };
    println!(
        "events benchmark on {kind}: {events} events in {repositories} repositories, {pushes} timed pushes, {} cores",
        cores()
    );

    let source = TestRegistry::anonymous();
    let images = generate_manifests(&source, events, repositories);
    // Three runs: with references; without them, into a registry row of
    // its own so that no tag records the digests yet (one GET each); and
    // without them again into the first run's row, where every digest is
    // already recorded (a re-tag of known images: no GET).
    let host = source.url.trim_start_matches("http://").to_string();
    let runs = [
        ("with references   ", true, host.clone()),
        ("without references", false, format!("fetch.{host}")),
        ("digests known     ", false, host.clone()),
    ];
    for (run, (label, with_references, registry_host)) in runs.into_iter().enumerate() {
        let store = store::open(&database, Duration::from_secs(30))?;
        let stored: Vec<NewEvent> = images
            .iter()
            .enumerate()
            .map(|(index, image)| push_event(run, index, image, with_references))
            .collect();
        for chunk in stored.chunks(500) {
            store
                .insert_events(chunk, now_ms())
                .context("storing events")?;
        }
        let client = Arc::new(regkeeper::registry::Client::new(&source.client_config())?);
        let handler = EventsHandler::new(
            store.clone(),
            client.clone(),
            registry_host,
            Settings::default(),
        );
        let context = JobContext {
            job_name: "bench".into(),
            run_id: 0,
            trigger: Trigger::Once,
            claimant: "bench".into(),
            store: store.clone(),
            options: RunOptions::default(),
            cancel: Cancel::default(),
        };
        let requests_before = client.requests_made();
        let started = Instant::now();
        let outcome = handler.run(&context)?;
        let elapsed = started.elapsed();
        let applied = outcome.counts.get("applied").copied().unwrap_or(0);
        anyhow::ensure!(
            applied as usize == events,
            "applied {applied} of {events}: {outcome:?}"
        );
        println!(
            "apply {events} push events {label}: {:.2} s, {:.0} events/s, {} registry requests",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            client.requests_made() - requests_before,
        );
        if run == 1 {
            let concurrency = source.client_config().concurrency;
            let floor = curl_floor(&source, &images, concurrency)?;
            println!(
                "floor: the same {events} manifest GETs by curl -Z --parallel-max {concurrency}: {:.2} s, {:.0} GETs/s",
                floor.as_secs_f64(),
                events as f64 / floor.as_secs_f64(),
            );
        }
    }

    latency(&database, &target, &kind, pushes)?;
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One manifest in the source registry.
struct Image {
    repository: String,
    digest: String,
    config_digest: String,
    config_size: i64,
    layer_digest: String,
    layer_size: i64,
    manifest_size: usize,
}

/// Pushes `count` distinct OCI manifests by digest (one config and one layer
/// per repository, an annotation makes each manifest unique), 4 at a time.
fn generate_manifests(source: &TestRegistry, count: usize, repositories: usize) -> Vec<Image> {
    let started = Instant::now();
    let per_repository = count.div_ceil(repositories);
    let unique = registry::unique_token();
    let images = std::sync::Mutex::new(Vec::with_capacity(count));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let repository_index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if repository_index >= repositories {
                    break;
                }
                let repository = format!("bench/r{repository_index}");
                let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":\"{unique}-{repository_index}\"}}");
                let layer = format!("layer of {repository} {unique}").repeat(20);
                let config_digest = source.upload_blob(&repository, config.as_bytes());
                let layer_digest = source.upload_blob(&repository, layer.as_bytes());
                for index in 0..per_repository {
                    if repository_index * per_repository + index >= count {
                        break;
                    }
                    let manifest = serde_json::to_vec(&serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": layer_digest}],
                        "annotations": {"bench.index": index.to_string()},
                    }))
                    .unwrap_or_default();
                    let digest = registry::sha256_digest(&manifest);
                    source.put_manifest(&repository, &digest, OCI_MANIFEST, &manifest);
                    if let Ok(mut images) = images.lock() {
                        images.push(Image {
                            repository: repository.clone(),
                            digest,
                            config_digest: config_digest.clone(),
                            config_size: config.len() as i64,
                            layer_digest: layer_digest.clone(),
                            layer_size: layer.len() as i64,
                            manifest_size: manifest.len(),
                        });
                    }
                }
            });
        }
    });
    let images = images.into_inner().unwrap_or_default();
    println!(
        "generated {} manifests in {:.1} s",
        images.len(),
        started.elapsed().as_secs_f64()
    );
    images
}

/// Times `curl -Z` fetching every image's manifest by digest, `parallel`
/// at a time: what the registry can serve here, with no database at all.
fn curl_floor(
    source: &TestRegistry,
    images: &[Image],
    parallel: usize,
) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let list = dir.path().join("urls");
    let mut urls = String::new();
    for image in images {
        urls.push_str(&format!(
            "url = \"{}/v2/{}/manifests/{}\"\noutput = \"/dev/null\"\n",
            source.url, image.repository, image.digest
        ));
    }
    std::fs::write(&list, urls)?;
    let started = Instant::now();
    let status = Command::new("curl")
        .args([
            "-sSf",
            "--no-progress-meter",
            "-Z",
            "--parallel-max",
            &parallel.to_string(),
        ])
        .args(["-H", &format!("Accept: {OCI_MANIFEST}")])
        .arg("-K")
        .arg(&list)
        .stdin(Stdio::null())
        .status()
        .context("running curl")?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "curl failed: {status}");
    Ok(elapsed)
}

fn push_event(run: usize, index: usize, image: &Image, with_references: bool) -> NewEvent {
    let mut target = serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "size": image.manifest_size,
        "digest": image.digest,
        "repository": image.repository,
        "tag": format!("run{run}-{index}"),
    });
    if with_references {
        target["references"] = serde_json::json!([
            {"mediaType": "application/vnd.oci.image.config.v1+json", "size": image.config_size, "digest": image.config_digest},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": image.layer_size, "digest": image.layer_digest},
        ]);
    }
    let id = format!("bench-{run}-{index}");
    let data = serde_json::json!({
        "id": id, "timestamp": "2026-01-02T03:04:05Z", "action": "push", "target": target,
        "request": {"method": "PUT"}, "actor": {},
    });
    NewEvent {
        event_id: id,
        action: "push".into(),
        repository: image.repository.clone(),
        data: data.to_string(),
    }
}

/// Push-to-row latency through notifications and the release daemon.
fn latency(database: &Database, target: &str, kind: &str, pushes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let source = TestRegistry::start(Options {
        notifications: Some(Notifications {
            url: format!("http://127.0.0.1:{port}/v2/webhooks/events"),
            authorization: Some(TOKEN.into()),
        }),
        ..Options::default()
    });
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN)?;
    let database_url = match kind {
        "sqlite" => format!("sqlite://{target}"),
        _ => target.to_string(),
    };
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{database_url}\"\n\n[registry]\nurl = \"{}\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n",
            source.url,
            token_file.display()
        ),
    )?;
    // The release binary beside this example (`target/release/regkeeper`).
    let mut daemon = Daemon::start_with(&regkeeper_test_support::binary(), &config, "warn");
    daemon.wait_for_intake(port);
    let result = measure_latency(database, &source, pushes);
    drop(daemon);
    let mut latencies = result?;
    latencies.sort();
    let percentile = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "push-to-database latency over {pushes} pushes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(0.50).as_secs_f64() * 1000.0,
        percentile(0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    Ok(())
}

fn measure_latency(
    database: &Database,
    source: &TestRegistry,
    pushes: usize,
) -> anyhow::Result<Vec<Duration>> {
    let store = store::open(database, Duration::from_secs(30))?;
    let host = source.url.trim_start_matches("http://").to_string();
    let registry_id = store.ensure_registry(&host)?;
    let mut latencies = Vec::with_capacity(pushes);
    for index in 0..pushes {
        let repository = "latency/app";
        let config = format!(
            "{{\"os\":\"linux\",\"n\":{index},\"u\":\"{}\"}}",
            registry::unique_token()
        );
        let layer = format!("layer {index} {}", registry::unique_token());
        let config_digest = source.upload_blob(repository, config.as_bytes());
        let layer_digest = source.upload_blob(repository, layer.as_bytes());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": layer_digest}],
        }))?;
        let digest = registry::sha256_digest(&manifest);
        let tag = format!("t{}", index % 10);
        let started = Instant::now();
        source.put_manifest(repository, &tag, OCI_MANIFEST, &manifest);
        loop {
            let tags = store.tags(registry_id, Some(repository))?;
            if tags
                .iter()
                .any(|row| row.tag == tag && row.digest == digest)
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "push {index} never reached the database"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}
