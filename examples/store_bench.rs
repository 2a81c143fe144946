//! Store benchmark: times the domain methods a sync pass leans on, one
//! transaction per call as the handlers make them, on SQLite or PostgreSQL.
//! Run through `scripts/bench-store.sh`, which starts its own PostgreSQL.
//!
//! Usage: `store_bench sqlite PATH | postgres URL [REPOSITORIES [TAGS_PER_REPOSITORY]]`

use std::time::{Duration, Instant};

use anyhow::Context as _;
use regkeeper::config::Database;
use regkeeper::store::{self, TagChange, TagWrite};

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: store_bench sqlite PATH | postgres URL [REPOSITORIES [TAGS_PER_REPOSITORY]]";
    let (kind, target) = match arguments.as_slice() {
        [kind, target, ..] => (kind.as_str(), target.clone()),
        _ => anyhow::bail!(usage),
    };
    let repositories: usize = arguments
        .get(2)
        .map_or(Ok(1000), |n| n.parse())
        .context(usage)?;
    let tags_per_repository: usize = arguments
        .get(3)
        .map_or(Ok(10), |n| n.parse())
        .context(usage)?;
    let database = match kind {
        "sqlite" => Database::Sqlite {
            path: target.into(),
        },
        "postgres" => Database::Postgres {
            url: target,
            password: None,
            pool_size: 4,
        },
        _ => anyhow::bail!(usage),
    };
    let store = store::open(&database, Duration::from_secs(30))?;
    let registry = store.ensure_registry("bench.example:5000")?;
    let total = repositories * tags_per_repository;
    let write = |repository: usize, tag: usize, generation: usize| TagWrite {
        repository: format!("ns{}/app{repository}", repository % 10),
        tag: format!("v{tag}"),
        digest: format!("sha256:{generation:04}{repository:08}{tag:04}"),
        image_id: format!("{repository:08}{tag:04}"),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        size: Some(1024),
        platforms: None,
    };
    println!(
        "{} ({} repositories x {} tags = {total} tags)",
        kind, repositories, tags_per_repository
    );

    let phase = |name: &str, expected: TagChange, generation: usize| -> anyhow::Result<()> {
        let started = Instant::now();
        for repository in 0..repositories {
            for tag in 0..tags_per_repository {
                let change = store.upsert_tag(registry, &write(repository, tag, generation), 1)?;
                anyhow::ensure!(
                    change == expected,
                    "{name}: expected {expected:?}, got {change:?}"
                );
            }
        }
        report(name, total, started.elapsed());
        Ok(())
    };
    phase("upsert_tag, new", TagChange::Created, 0)?;
    phase("upsert_tag, unchanged", TagChange::Unchanged, 0)?;
    phase("upsert_tag, new digest", TagChange::Updated, 1)?;

    let started = Instant::now();
    let listed = store.tags(registry, None)?.len();
    anyhow::ensure!(listed == total, "tags: listed {listed} of {total}");
    report("tags (all, rows read)", total, started.elapsed());

    let started = Instant::now();
    for repository in 0..repositories {
        let name = format!("ns{}/app{repository}", repository % 10);
        anyhow::ensure!(store.tags(registry, Some(&name))?.len() == tags_per_repository);
    }
    report("tags (per repository)", repositories, started.elapsed());

    let started = Instant::now();
    for repository in 0..repositories {
        for tag in 0..tags_per_repository {
            let name = format!("ns{}/app{repository}", repository % 10);
            store.record_pull(registry, &name, &format!("v{tag}"), 5)?;
        }
    }
    report("record_pull", total, started.elapsed());

    let started = Instant::now();
    for repository in 0..repositories {
        for tag in 0..tags_per_repository {
            let name = format!("ns{}/app{repository}", repository % 10);
            anyhow::ensure!(store.delete_tag(registry, &name, &format!("v{tag}"))?);
        }
    }
    report("delete_tag", total, started.elapsed());
    anyhow::ensure!(
        store.repositories(registry)?.is_empty(),
        "repositories left after deleting every tag"
    );
    Ok(())
}

/// One result line: what, how many (calls or rows), seconds, rate.
fn report(name: &str, count: usize, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "  {name:<24} {count:>7} {seconds:>8.2} s {:>9.0} /s",
        count as f64 / seconds.max(1e-9)
    );
}
