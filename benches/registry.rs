//! Benchmark of the registry client (not a test; run `scripts/bench-registry.sh`).
//!
//! A real docker-registry holding 1,000 repositories x 10 tags written
//! straight into its storage; then, with the client: the catalog walk
//! (n = 1000), the tag lists of every repository and a HEAD of every tag,
//! each once sequentially and once through `map_concurrent` (concurrency 8),
//! and the tag lists again under token auth (a token per repository scope).
//! Prints one line per figure.

use regkeeper_test_support as support;

use std::time::{Duration, Instant};

use regkeeper::registry::Client;
use support::registry::{Auth, Options, TestRegistry};

const REPOSITORIES: usize = 1_000;
const TAGS: usize = 10;

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn fill(registry: &TestRegistry) -> (Vec<String>, Vec<String>) {
    let repositories: Vec<String> = (0..REPOSITORIES)
        .map(|index| format!("bench/app{index:04}"))
        .collect();
    let tags: Vec<String> = (0..TAGS).map(|index| format!("v{index}")).collect();
    let started = Instant::now();
    registry.write_images_on_disk(&repositories, &tags);
    println!(
        "setup: wrote {} repositories x {} tags on disk in {:.2}s",
        REPOSITORIES,
        TAGS,
        started.elapsed().as_secs_f64()
    );
    (repositories, tags)
}

fn client(registry: &TestRegistry, concurrency: usize) -> Client {
    let mut config = registry.client_config();
    config.concurrency = concurrency;
    config.catalog_page_size = 1000;
    config.timeout = Duration::from_secs(30);
    Client::new(&config).expect("building the client")
}

fn main() {
    // `cargo bench` passes `--bench`. Test runners also start bench targets
    // (`cargo test --all-targets`, nextest's `--list`): list nothing, run nothing.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let registry = TestRegistry::anonymous();
    let (repositories, tags) = fill(&registry);

    let sequential = client(&registry, 1);
    let started = Instant::now();
    let catalog = sequential.catalog().expect("catalog");
    assert_eq!(catalog.len(), REPOSITORIES);
    println!(
        "catalog: {} repositories in {:.3}s (n=1000)",
        catalog.len(),
        started.elapsed().as_secs_f64()
    );

    for concurrency in [1, 8] {
        let client = client(&registry, concurrency);
        let started = Instant::now();
        let listed =
            client.map_concurrent(repositories.clone(), |repository| client.tags(&repository));
        let elapsed = started.elapsed();
        assert!(listed
            .iter()
            .all(|tags| matches!(tags, Ok(Some(list)) if list.len() == TAGS)));
        println!(
            "tags: {} repositories in {:.2}s at concurrency {concurrency} ({:.0}/s)",
            REPOSITORIES,
            elapsed.as_secs_f64(),
            per_second(REPOSITORIES, elapsed)
        );
    }

    let references: Vec<(String, String)> = repositories
        .iter()
        .flat_map(|repository| {
            tags.iter()
                .map(move |tag| (repository.clone(), tag.clone()))
        })
        .collect();
    for concurrency in [1, 8] {
        let client = client(&registry, concurrency);
        let started = Instant::now();
        let heads = client.map_concurrent(references.clone(), |(repository, tag)| {
            client.head_manifest(&repository, &tag)
        });
        let elapsed = started.elapsed();
        assert!(heads.iter().all(Result::is_ok));
        println!(
            "HEAD: {} manifests in {:.2}s at concurrency {concurrency} ({:.0}/s, {} requests)",
            references.len(),
            elapsed.as_secs_f64(),
            per_second(references.len(), elapsed),
            client.requests_made()
        );
    }

    let client8 = client(&registry, 8);
    let started = Instant::now();
    let manifests = client8.map_concurrent(repositories.clone(), |repository| {
        client8.manifest(&repository, "v0")
    });
    let elapsed = started.elapsed();
    assert!(manifests.iter().all(Result::is_ok));
    println!(
        "GET: {} manifests parsed and verified in {:.2}s at concurrency 8 ({:.0}/s)",
        REPOSITORIES,
        elapsed.as_secs_f64(),
        per_second(REPOSITORIES, elapsed)
    );
    drop(registry);

    let registry = TestRegistry::start(Options {
        auth: Auth::token("bench", "bench"),
        ..Options::default()
    });
    let (repositories, _) = fill(&registry);
    let client = client(&registry, 8);
    let started = Instant::now();
    let listed = client.map_concurrent(repositories.clone(), |repository| client.tags(&repository));
    let elapsed = started.elapsed();
    assert!(listed.iter().all(Result::is_ok));
    let tokens = registry
        .token_server
        .as_ref()
        .map(|server| server.tokens_issued())
        .unwrap_or(0);
    println!(
        "tags with token auth: {} repositories in {:.2}s at concurrency 8 ({:.0}/s, {} tokens, {} requests)",
        REPOSITORIES,
        elapsed.as_secs_f64(),
        per_second(REPOSITORIES, elapsed),
        tokens,
        client.requests_made()
    );
}
