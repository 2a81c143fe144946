//! The `sync` job behind a fault-injecting proxy in front of a real
//! docker-registry: answers that look valid (an empty catalog page without
//! `Link` in the middle of the catalog, tag lists of `null` or `[]`) and
//! transport faults never delete what the registry still holds, while real
//! deletions (a tag, an emptied repository, a removed repository) still go.
//! Images are written straight into the registry's storage, which it serves
//! at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use regkeeper::config::Config;
use regkeeper::jobs::{Resources, RunOptions, Trigger};
use regkeeper::scheduler::{run_once, RunReport};
use regkeeper::store::{RunOutcome, Store};
use regkeeper_test_support as support;
use support::fault_proxy::{Fault, FaultProxy, Target};
use support::registry::TestRegistry;
use support::{wait_until, Backend, TestStore};

/// A registry with `repositories` x `tags` images, the proxy in front of
/// it, and a database synced once through the proxy without faults.
struct World {
    registry: TestRegistry,
    proxy: FaultProxy,
    store: Arc<dyn Store>,
    client: Arc<regkeeper::registry::Client>,
    registry_id: i64,
    _database: TestStore,
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}{n:02}")).collect()
}

fn world(backend: Backend, repositories: usize, tags: usize) -> World {
    let registry = TestRegistry::anonymous();
    registry.write_images_on_disk(&names("ns/r", repositories), &names("t", tags));
    let proxy = FaultProxy::start(&registry.url);
    let database = TestStore::new(backend);
    let store = database.shared();
    let mut client_config = proxy.client_config();
    client_config.catalog_page_size = 10;
    let client =
        Arc::new(regkeeper::registry::Client::new(&client_config).expect("registry client"));
    let registry_id = store
        .ensure_registry(proxy.url().trim_start_matches("http://"))
        .expect("registry row");
    let world = World {
        registry,
        proxy,
        store,
        client,
        registry_id,
        _database: database,
    };
    let outcome = world.pass();
    assert_eq!(outcome.outcome, RunOutcome::Ok, "{:?}", outcome.error);
    assert_eq!(world.tags().len(), repositories * tags);
    world
}

impl World {
    /// One `update-delete` pass through the proxy, as `--once` runs it.
    fn pass(&self) -> RunReport {
        let text = format!(
            "[database]\nurl = \"sqlite://unused.db\"\n\
             [registry]\nurl = \"{}\"\n\
             [jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"update-delete\"\n\
             max_delete_fraction = 1.0\n",
            self.proxy.url()
        );
        let config: Config =
            regkeeper::config::parse(&text, std::path::Path::new("sync.toml")).expect("config");
        let job = config.jobs[0].clone();
        let resources = Resources {
            config: Arc::new(config),
            store: self.store.clone(),
            registry: self.client.clone(),
        };
        run_once(&job, &resources, Trigger::Once, RunOptions::default()).expect("run_once")
    }

    /// `repository:tag` of every tag in the database.
    fn tags(&self) -> BTreeSet<String> {
        self.store
            .tags(self.registry_id, None)
            .expect("tags")
            .into_iter()
            .map(|tag| format!("{}:{}", tag.repository, tag.tag))
            .collect()
    }

    fn repositories(&self) -> BTreeSet<String> {
        self.store
            .repositories(self.registry_id)
            .expect("repositories")
            .into_iter()
            .collect()
    }

    /// `repository:tag` of every tag the registry serves, asked directly.
    fn registry_tags(&self) -> BTreeSet<String> {
        let direct = regkeeper::registry::Client::new(&self.registry.client_config())
            .expect("direct client");
        let mut tags = BTreeSet::new();
        for repository in direct.catalog().expect("catalog") {
            for tag in direct.tags(&repository).expect("tags").unwrap_or_default() {
                tags.insert(format!("{repository}:{tag}"));
            }
        }
        tags
    }

    /// Tags the registry still serves that the database lost.
    fn wrongly_deleted(&self) -> BTreeSet<String> {
        let kept = self.tags();
        self.registry_tags()
            .into_iter()
            .filter(|tag| !kept.contains(tag))
            .collect()
    }

    /// Removes a repository from the registry's storage: it leaves the
    /// catalog and its tag list answers 404 `NAME_UNKNOWN`.
    fn remove_repository(&self, repository: &str) {
        std::fs::remove_dir_all(
            self.registry
                .storage_dir()
                .join("docker/registry/v2/repositories")
                .join(repository),
        )
        .expect("removing a repository from storage");
    }

    /// Deletes one tag (its manifest is its own) through the registry's API.
    fn delete_tag(&self, repository: &str, tag: &str) {
        let direct = regkeeper::registry::Client::new(&self.registry.client_config())
            .expect("direct client");
        let head = direct.head_manifest(repository, tag).expect("head");
        assert_eq!(self.registry.delete(repository, &head.digest), 202);
    }
}

fn count(report: &RunReport, name: &str) -> i64 {
    report.result.counts.get(name).copied().unwrap_or(0)
}

fn ok(report: &RunReport) {
    assert_eq!(
        report.outcome,
        RunOutcome::Ok,
        "the pass failed: {:?}",
        report.error
    );
}

// ---------------------------------------------------------------------------
// Each shape alone.

#[test]
fn an_empty_catalog_page_answered_once_is_walked_again_and_deletes_nothing() {
    let world = world(Backend::Sqlite, 30, 2);
    let before = world.tags();
    world.proxy.set_rule({
        let hit = std::sync::atomic::AtomicBool::new(false);
        move |_, target| match target {
            Target::Catalog { last: Some(last) }
                if last == "ns/r09" && !hit.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Some(Fault::EmptyCatalogPage)
            }
            _ => None,
        }
    });
    let report = world.pass();
    ok(&report);
    assert_eq!(world.proxy.faults().len(), 1, "the page was faulted once");
    assert_eq!(count(&report, "repositories_seen"), 30, "the walk went on");
    assert_eq!(count(&report, "errors"), 0);
    assert_eq!(count(&report, "repositories_deleted"), 0);
    assert_eq!(world.tags(), before);
}

#[test]
fn an_empty_catalog_page_every_time_deletes_nothing_and_counts_errors() {
    let world = world(Backend::Sqlite, 30, 2);
    let before = world.tags();
    world.proxy.set_rule(|_, target| match target {
        Target::Catalog { last: Some(last) } if last == "ns/r09" => Some(Fault::EmptyCatalogPage),
        _ => None,
    });
    let report = world.pass();
    ok(&report);
    assert_eq!(count(&report, "repositories_seen"), 10);
    // The 20 repositories after the short page list their tags when asked
    // again: each is left alone and counted as an error.
    assert_eq!(count(&report, "errors"), 20);
    assert_eq!(count(&report, "repositories_deleted"), 0);
    assert_eq!(count(&report, "tags_deleted"), 0);
    assert_eq!(world.tags(), before);
    assert!(world.wrongly_deleted().is_empty());
}

#[test]
fn a_catalog_that_keeps_ending_early_fails_the_pass_having_written_nothing() {
    let world = world(Backend::Sqlite, 50, 1);
    let before = world.tags();
    // Every page after the first answers empty the first time it is asked.
    world.proxy.set_rule({
        let asked = std::sync::Mutex::new(BTreeSet::new());
        move |_, target| match target {
            Target::Catalog { last: Some(last) } => asked
                .lock()
                .expect("lock")
                .insert(last.clone())
                .then_some(Fault::EmptyCatalogPage),
            _ => None,
        }
    });
    let report = world.pass();
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("ended early 4 times"), "{error}");
    assert!(error.contains("nothing was written"), "{error}");
    assert_eq!(world.tags(), before);
}

#[test]
fn null_and_empty_tag_lists_delete_nothing() {
    let world = world(Backend::Sqlite, 6, 3);
    let before = world.tags();
    let once = std::sync::atomic::AtomicBool::new(false);
    world.proxy.set_rule(move |_, target| match target {
        // Always null, always empty: asked again, the list is still empty,
        // but the tags' manifests answer 200.
        Target::Tags { repository } if repository == "ns/r01" => Some(Fault::NullTags),
        Target::Tags { repository } if repository == "ns/r02" => Some(Fault::EmptyTags),
        // Null once: asked again, the list names the tags.
        Target::Tags { repository }
            if repository == "ns/r03" && !once.swap(true, std::sync::atomic::Ordering::SeqCst) =>
        {
            Some(Fault::NullTags)
        }
        _ => None,
    });
    let report = world.pass();
    ok(&report);
    assert_eq!(count(&report, "errors"), 3);
    assert_eq!(count(&report, "repositories_deleted"), 0);
    assert_eq!(count(&report, "tags_deleted"), 0);
    assert_eq!(world.tags(), before);
}

#[test]
fn a_tag_missing_from_a_list_whose_manifest_still_answers_is_kept() {
    let world = world(Backend::Sqlite, 3, 3);
    let before = world.tags();
    // The list of ns/r01 is cut to one tag by a proxy in trouble; the
    // manifests of the other two still answer 200.
    world.proxy.set_rule(|_, target| match target {
        Target::Tags { repository } if repository == "ns/r01" => Some(Fault::PartialTags),
        _ => None,
    });
    let report = world.pass();
    ok(&report);
    assert_eq!(count(&report, "tags_deleted"), 0);
    assert_eq!(count(&report, "errors"), 1);
    assert_eq!(world.tags(), before);
}

#[test]
fn transport_faults_and_wrong_digests_delete_nothing() {
    let world = world(Backend::Sqlite, 10, 3);
    let before = world.tags();
    for (seed, shape) in [
        (1, Fault::Status(500)),
        (2, Fault::Status(503)),
        (3, Fault::Truncated),
        (4, Fault::WrongDigest),
        (5, Fault::Delay(std::time::Duration::from_millis(200))),
    ] {
        world.proxy.random(seed, 20, &[shape]);
        let report = world.pass();
        assert_eq!(count(&report, "tags_deleted"), 0, "{shape:?}");
        assert_eq!(count(&report, "repositories_deleted"), 0, "{shape:?}");
        assert!(world.wrongly_deleted().is_empty(), "{shape:?}");
    }
    world.proxy.clear();
    ok(&world.pass());
    assert_eq!(world.tags(), before);
}

// ---------------------------------------------------------------------------
// Real deletions still go.

#[test]
fn a_deleted_tag_an_emptied_and_a_removed_repository_go_while_a_faulted_one_stays() {
    let world = world(Backend::Sqlite, 6, 3);
    world.delete_tag("ns/r00", "t01");
    world.registry.empty_repository("ns/r01");
    world.remove_repository("ns/r05");
    world.proxy.set_rule(|_, target| match target {
        Target::Tags { repository } if repository == "ns/r03" => Some(Fault::NullTags),
        _ => None,
    });
    let report = world.pass();
    ok(&report);
    assert_eq!(count(&report, "tags_deleted"), 1 + 3 + 3);
    assert_eq!(count(&report, "repositories_deleted"), 2);
    assert_eq!(count(&report, "errors"), 1, "ns/r03 is left alone");
    let tags = world.tags();
    assert!(!tags.contains("ns/r00:t01"));
    assert!(tags.contains("ns/r00:t00") && tags.contains("ns/r00:t02"));
    assert!(
        tags.contains("ns/r03:t00"),
        "the faulted repository keeps its tags"
    );
    let repositories = world.repositories();
    assert!(
        !repositories.contains("ns/r01"),
        "emptied repository deleted"
    );
    assert!(
        !repositories.contains("ns/r05"),
        "removed repository deleted"
    );
    assert_eq!(tags, world.registry_tags());
}

// ---------------------------------------------------------------------------
// Mixed, as in a registry or proxy in trouble: 6% of all requests faulted
// over 20 passes of 50 repositories x 5 tags, pages of 10.

fn mixed_faults_over_twenty_passes_delete_nothing_the_registry_holds(backend: Backend) {
    let world = world(backend, 50, 5);
    let before = world.tags();
    world.proxy.random(0x5eed, 6, &Fault::ALL);
    let mut wrongly_deleted = BTreeSet::new();
    // `scripts/chaos.sh` runs more passes.
    let passes: usize = std::env::var("REGKEEPER_CHAOS_PASSES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    for _ in 0..passes {
        let _ = world.pass();
        wrongly_deleted.extend(world.wrongly_deleted());
    }
    let faults = world.proxy.faults();
    let plausible = faults
        .iter()
        .filter(|(fault, _)| {
            matches!(
                fault,
                Fault::EmptyCatalogPage | Fault::NullTags | Fault::EmptyTags | Fault::PartialTags
            )
        })
        .count();
    assert!(
        plausible > 0,
        "the run faulted no plausible answers: {faults:?}"
    );
    assert!(
        wrongly_deleted.is_empty(),
        "{} tags the registry holds were deleted: {wrongly_deleted:?}",
        wrongly_deleted.len()
    );
    world.proxy.clear();
    ok(&world.pass());
    assert_eq!(world.tags(), before, "a clean pass restores equality");
    println!(
        "chaos: fault-proxy backend={backend:?} passes={passes} faults={} plausible-answers={plausible} \
         wrongly-deleted=0 restored=yes",
        faults.len()
    );
}

support::both_backends!(mixed_faults_over_twenty_passes_delete_nothing_the_registry_holds);

// ---------------------------------------------------------------------------
// A registry that goes away in the middle of a pass of 1,000 tags.

#[test]
fn a_pass_stops_soon_after_its_registry_is_stopped_and_deletes_nothing() {
    let mut registry = TestRegistry::anonymous();
    registry.write_images_on_disk(&names("ns/r", 100), &names("t", 10));
    let database = TestStore::new(Backend::Sqlite);
    let store = database.shared();
    let client = Arc::new(
        regkeeper::registry::Client::new(&registry.client_config()).expect("registry client"),
    );
    let text = format!(
        "[database]\nurl = \"sqlite://unused.db\"\n[registry]\nurl = \"{}\"\n\
         [jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"update-delete\"\n",
        registry.url
    );
    let config: Config =
        regkeeper::config::parse(&text, std::path::Path::new("sync.toml")).expect("config");
    let job = config.jobs[0].clone();
    let resources = Resources {
        config: Arc::new(config),
        store: store.clone(),
        registry: client.clone(),
    };
    ok(&run_once(&job, &resources, Trigger::Once, RunOptions::default()).expect("run_once"));
    let registry_id = store
        .ensure_registry(&format!("127.0.0.1:{}", registry.port))
        .expect("registry row");
    let before = store.tags(registry_id, None).expect("tags").len();
    assert_eq!(before, 1000);

    let started_requests = client.requests_made();
    let pass = {
        let job = job.clone();
        let resources = Resources {
            config: resources.config.clone(),
            store: store.clone(),
            registry: client.clone(),
        };
        std::thread::spawn(move || {
            run_once(&job, &resources, Trigger::Once, RunOptions::default()).expect("run_once")
        })
    };
    // Stop the registry once the pass is well under way.
    wait_until("the pass is well under way", || {
        client.requests_made() >= started_requests + 300 || pass.is_finished()
    });
    registry.stop();
    let stopped = std::time::Instant::now();
    let sent_at_stop = client.requests_made();
    let report = pass.join().expect("the pass thread");
    let after_stop = stopped.elapsed();
    let sent_after_stop = client.requests_made() - sent_at_stop;
    println!(
        "the pass ended {after_stop:?} after the registry stopped, having sent {sent_after_stop} \
         more requests; {} were not sent",
        client.requests_refused()
    );
    assert_eq!(report.outcome, RunOutcome::Failed, "{:?}", report.result);
    let error = report.error.clone().unwrap_or_default();
    assert!(error.starts_with("registry unreachable: "), "{error}");
    assert!(error.contains("requests were not sent"), "{error}");
    // Without the breaker every remaining request (about 700) was tried
    // three times.
    assert!(
        sent_after_stop < 100,
        "{sent_after_stop} requests after the stop: {error}"
    );
    assert!(client.requests_refused() > 0);
    assert_eq!(store.tags(registry_id, None).expect("tags").len(), before);
}
