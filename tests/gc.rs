//! The `gc` job against a real docker-registry (`storage.delete.enabled`),
//! on SQLite and on PostgreSQL: every case runs once per database (modules
//! `sqlite` and `postgres` at the bottom), through the library
//! (`scheduler::run_once`, as `--once` runs it). Tags are written to the
//! database with chosen push times, as the events job or a sync would
//! have written them, and pushed to the registry for real.

use regkeeper_test_support as support;

use std::collections::BTreeMap;
use std::sync::Arc;

use regkeeper::jobs::{Resources, RunOptions, Trigger};
use regkeeper::scheduler::{run_once, RunReport};
use regkeeper::store::{GcDeletion, RunOutcome, Store, TagWrite};
use support::registry::{Options, TestRegistry, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use support::{Backend, TestStore};

const DAY: i64 = 24 * 3600 * 1000;

/// A registry, a database and the client, for one test.
struct World {
    registry: TestRegistry,
    store: Arc<dyn Store>,
    client: Arc<regkeeper::registry::Client>,
    registry_id: i64,
    _database: TestStore,
}

fn world(backend: Backend) -> World {
    world_with(backend, Options::default())
}

fn world_with(backend: Backend, options: Options) -> World {
    let registry = TestRegistry::start(options);
    let database = TestStore::new(backend);
    let store: Arc<dyn Store> = database.sql();
    let client = Arc::new(
        regkeeper::registry::Client::new(&registry.client_config()).expect("registry client"),
    );
    let registry_id = store
        .ensure_registry(&format!("127.0.0.1:{}", registry.port))
        .expect("registry row");
    World {
        registry,
        store,
        client,
        registry_id,
        _database: database,
    }
}

impl World {
    /// Pushes an image and records its tag as pushed `age_days` ago.
    fn push(&self, repository: &str, tag: &str, age_days: i64) -> String {
        let image = self.registry.push_image(repository, tag);
        self.record(repository, tag, &image.digest, DOCKER_MANIFEST, age_days);
        image.digest
    }

    /// Tags `reference` again as `tag` and records it `age_days` old.
    fn retag(&self, repository: &str, reference: &str, tag: &str, age_days: i64) -> String {
        let digest = self.registry.tag(repository, reference, tag);
        self.record(repository, tag, &digest, DOCKER_MANIFEST, age_days);
        digest
    }

    fn record(&self, repository: &str, tag: &str, digest: &str, media_type: &str, age_days: i64) {
        self.store
            .upsert_tag(
                self.registry_id,
                &TagWrite {
                    repository: repository.into(),
                    tag: tag.into(),
                    digest: digest.into(),
                    image_id: String::new(),
                    media_type: media_type.into(),
                    size: None,
                    platforms: None,
                },
                regkeeper::store::now_ms() - age_days * DAY,
            )
            .expect("upsert_tag");
    }

    /// One run of a `gc` job with these policies and extra job keys.
    fn run(&self, job_keys: &str, policies: &str, options: RunOptions) -> RunReport {
        let text = format!(
            "[database]\nurl = \"sqlite://unused.db\"\n\
             [registry]\nurl = \"{}\"\n\
             [jobs.prune]\nhandler = \"gc\"\nschedule = \"0 0 3 * * *\"\n{job_keys}\n{policies}",
            self.registry.url
        );
        let config =
            regkeeper::config::parse(&text, std::path::Path::new("gc.toml")).expect("config");
        let job = config.jobs[0].clone();
        let resources = Resources {
            config: Arc::new(config),
            store: self.store.clone(),
            registry: self.client.clone(),
        };
        let trigger = if options.dry_run {
            Trigger::DryRun
        } else {
            Trigger::Once
        };
        run_once(&job, &resources, trigger, options).expect("run_once")
    }

    /// The registry's tags of `repository`, sorted.
    fn registry_tags(&self, repository: &str) -> Vec<String> {
        let mut tags = self
            .client
            .tags(repository)
            .expect("tags list")
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// `repository -> tags` in the database.
    fn database_tags(&self) -> BTreeMap<String, Vec<String>> {
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for tag in self.store.tags(self.registry_id, None).expect("tags") {
            tags.entry(tag.repository).or_default().push(tag.tag);
        }
        tags
    }

    fn audit(&self) -> Vec<GcDeletion> {
        let mut rows = self.store.gc_deletions(1000).expect("gc_deletions");
        rows.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
        rows
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

fn ok(report: &RunReport) {
    assert_eq!(
        report.outcome,
        RunOutcome::Ok,
        "the run failed: {:?}",
        report.error
    );
}

/// The Portus bug #2330: `keep_latest` counted over the whole database.
/// Here a busy repository loses its old tags and a quiet one keeps its
/// only one; a repository no policy selects is untouched.
fn keep_latest_counts_per_repository_and_unselected_repositories_are_untouched(backend: Backend) {
    let world = world(backend);
    for (tag, age) in [("t1", 40), ("t2", 30), ("t3", 20), ("t4", 10)] {
        world.push("team/busy", tag, age);
    }
    world.push("team/quiet", "only", 300);
    world.push("ops/tool", "ancient", 900);
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nname = \"team\"\nrepositories = [\"team/**\"]\nkeep_latest = 2\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(world.registry_tags("team/busy"), strings(&["t3", "t4"]));
    assert_eq!(world.registry_tags("team/quiet"), strings(&["only"]));
    assert_eq!(world.registry_tags("ops/tool"), strings(&["ancient"]));
    let database = world.database_tags();
    assert_eq!(database["team/busy"], strings(&["t3", "t4"]));
    assert_eq!(database["team/quiet"], strings(&["only"]));
    assert_eq!(database["ops/tool"], strings(&["ancient"]));
    assert_eq!(report.result.counts["tags_deleted"], 2);
    assert_eq!(report.result.counts["digests_deleted"], 2);
    let audit = world.audit();
    let rules: Vec<(&str, &str, &str, bool)> = audit
        .iter()
        .map(|row| {
            (
                row.tag.as_str(),
                row.policy.as_str(),
                row.rule.as_str(),
                row.dry_run,
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                "t1",
                "team",
                "team: beyond keep_latest 2 (4th newest)",
                false
            ),
            (
                "t2",
                "team",
                "team: beyond keep_latest 2 (3rd newest)",
                false
            ),
        ]
    );
    assert!(audit.iter().all(|row| row.run_id == report.run_id));
}

/// Portus's delete by digest took re-tags with it (#2238).
fn a_retag_sharing_its_digest_with_a_kept_tag_survives(backend: Backend) {
    let world = world(backend);
    world.push("app", "build-1", 60);
    world.retag("app", "build-1", "latest", 60);
    world.push("app", "build-0", 70);
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_tags = [\"latest\"]\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(world.registry_tags("app"), strings(&["build-1", "latest"]));
    assert_eq!(
        world.database_tags()["app"],
        strings(&["build-1", "latest"])
    );
    assert_eq!(report.result.counts["kept_for_digest"], 1);
    assert_eq!(report.result.counts["tags_deleted"], 1);
}

fn keep_pushed_within_and_keep_tags_combine(backend: Backend) {
    let world = world(backend);
    world.push("app", "fresh", 2);
    world.push("app", "v1.0", 400);
    world.push("app", "stale", 400);
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_pushed_within = \"30d\"\nkeep_tags = [\"v*\"]\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(world.registry_tags("app"), strings(&["fresh", "v1.0"]));
    assert_eq!(world.database_tags()["app"], strings(&["fresh", "v1.0"]));
}

fn keep_pulled_within_keeps_what_was_pulled(backend: Backend) {
    let world = world(backend);
    world.push("app", "used", 400);
    world.push("app", "unused", 400);
    world.push("app", "newest", 1);
    world
        .store
        .record_pull(
            world.registry_id,
            "app",
            "used",
            regkeeper::store::now_ms() - DAY,
        )
        .expect("record_pull");
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_pulled_within = \"7d\"\nkeep_latest = 1\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(world.registry_tags("app"), strings(&["newest", "used"]));
    let audit = world.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0].rule,
        "policy 1: beyond keep_latest 1 (2nd newest), no pull recorded"
    );
}

fn the_children_of_a_kept_index_stay(backend: Backend) {
    let world = world(backend);
    let index = world.registry.push_oci_index("app", "multi");
    world.record("app", "multi", &index.digest, OCI_INDEX, 100);
    // One child also carries a tag of its own, which no rule keeps.
    let child = &index.children[0].2;
    world.registry.tag("app", &child.digest, "amd64-build");
    world.record("app", "amd64-build", &child.digest, OCI_MANIFEST, 100);
    world.push("app", "old", 100);
    let report = world.run(
        "max_delete_fraction = 1.0",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_tags = [\"multi\"]\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(
        world.registry_tags("app"),
        strings(&["amd64-build", "multi"])
    );
    assert_eq!(
        world.database_tags()["app"],
        strings(&["amd64-build", "multi"])
    );
    assert_eq!(report.result.counts["kept_as_index_child"], 1);
}

fn dry_run_changes_neither_registry_nor_database(backend: Backend) {
    let world = world(backend);
    world.push("app", "new", 1);
    world.push("app", "old", 100);
    let before = world.database_tags();
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n",
        RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
    );
    ok(&report);
    assert_eq!(report.result.counts["tags_to_delete"], 1);
    assert_eq!(world.registry_tags("app"), strings(&["new", "old"]));
    assert_eq!(world.database_tags(), before);
    let audit = world.audit();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].dry_run, "a dry run's decision is marked");
    assert_eq!(audit[0].tag, "old");
}

fn deletion_disabled_in_the_registry_fails_naming_the_setting(backend: Backend) {
    let world = world_with(
        backend,
        Options {
            delete_disabled: true,
            ..Options::default()
        },
    );
    world.push("app", "new", 1);
    world.push("app", "old", 100);
    let before = world.database_tags();
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n",
        RunOptions::default(),
    );
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.unwrap_or_default();
    assert!(
        error.contains("storage.delete.enabled"),
        "the error names the setting: {error}"
    );
    assert_eq!(world.registry_tags("app"), strings(&["new", "old"]));
    assert_eq!(world.database_tags(), before);
    assert!(world.audit().is_empty(), "nothing is recorded as deleted");
}

fn the_valve_refuses_a_large_deletion_unless_forced(backend: Backend) {
    let world = world(backend);
    world.push("app", "new", 1);
    world.push("app", "a", 100);
    world.push("app", "b", 100);
    let policies = "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n";
    let refused = world.run("", policies, RunOptions::default());
    assert_eq!(refused.outcome, RunOutcome::Failed);
    assert!(
        refused
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("safety valve: the pass would delete 2 of the 3 tags"),
        "{:?}",
        refused.error
    );
    assert_eq!(world.registry_tags("app"), strings(&["a", "b", "new"]));
    assert!(world.audit().is_empty());
    let dry = world.run(
        "",
        policies,
        RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
    );
    ok(&dry);
    assert_eq!(dry.result.counts["valve_would_refuse"], 1);
    assert_eq!(world.registry_tags("app"), strings(&["a", "b", "new"]));
    let forced = world.run(
        "",
        policies,
        RunOptions {
            force: true,
            ..RunOptions::default()
        },
    );
    ok(&forced);
    assert_eq!(world.registry_tags("app"), strings(&["new"]));
    assert_eq!(world.database_tags()["app"], strings(&["new"]));
}

/// The registry's delete events for what gc deleted find nothing left to
/// do: the database already lost those tags as the event would remove them.
fn the_delete_a_second_time_changes_nothing(backend: Backend) {
    let world = world(backend);
    world.push("app", "new", 1);
    let old = world.push("app", "old", 100);
    ok(&world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n",
        RunOptions::default(),
    ));
    let after = world.database_tags();
    assert_eq!(
        world
            .store
            .delete_tags_by_digest(world.registry_id, "app", &old)
            .expect("delete by digest"),
        0
    );
    assert_eq!(world.database_tags(), after);
    // A second pass finds nothing to delete.
    let again = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n",
        RunOptions::default(),
    );
    ok(&again);
    assert_eq!(again.result.counts["digests_deleted"], 0);
}

/// Another daemon on the same PostgreSQL holds the gc lock: the run skips
/// its pass and deletes nothing. SQLite has one daemon per file: no lock.
fn the_gc_lock_held_elsewhere_skips_the_pass(backend: Backend) {
    let world = world(backend);
    world.push("app", "new", 1);
    world.push("app", "old", 100);
    let policies = "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n";
    let held = world
        .store
        .try_advisory_lock(regkeeper::jobs::gc::GC_LOCK_KEY)
        .expect("lock")
        .expect("the lock is free");
    let report = world.run("", policies, RunOptions::default());
    ok(&report);
    match backend {
        Backend::Postgres => {
            assert_eq!(report.result.counts["skipped_passes"], 1);
            assert_eq!(world.registry_tags("app"), strings(&["new", "old"]));
            assert!(world.audit().is_empty());
        }
        Backend::Sqlite => assert_eq!(world.registry_tags("app"), strings(&["new"])),
    }
    drop(held);
    ok(&world.run("", policies, RunOptions::default()));
    assert_eq!(world.registry_tags("app"), strings(&["new"]));
}

/// The registry goes away after the database was read: the DELETEs fail
/// until the client calls it unreachable, the pass ends there, and the
/// database still holds every tag, as the registry does.
fn a_registry_gone_before_the_deletions_ends_the_pass_and_records_nothing(backend: Backend) {
    let mut world = world(backend);
    world.push("app", "new", 1);
    for n in 0..6 {
        world.push("app", &format!("old-{n}"), 100 + n);
    }
    let before = world.database_tags();
    world.registry.stop();
    let report = world.run(
        "max_delete_fraction = 1.0",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n",
        RunOptions::default(),
    );
    assert_eq!(report.outcome, RunOutcome::Failed);
    let error = report.error.unwrap_or_default();
    assert!(error.contains("the registry is unreachable"), "{error}");
    assert_eq!(report.result.counts.get("digests_deleted"), None);
    assert_eq!(world.database_tags(), before);
    assert!(world.audit().is_empty());
    world.registry.restart();
    // A fresh client: the run's client keeps its breaker open a while.
    let client = regkeeper::registry::Client::new(&world.registry.client_config()).expect("client");
    let tags = client.tags("app").expect("tags list").unwrap_or_default();
    assert_eq!(tags.len(), 7, "the registry deleted nothing: {tags:?}");
}

/// The registry notifies a real daemon running the events job: its push
/// events bring the tags, a gc pass deletes, and the delete events the
/// registry then sends, once applied, leave the database as the pass left
/// it.
fn the_delete_events_of_a_pass_leave_the_database_unchanged(backend: Backend) {
    let port = support::registry::free_port();
    let registry = TestRegistry::start(Options {
        notifications: Some(support::registry::Notifications {
            url: format!("http://127.0.0.1:{port}/v2/webhooks/events"),
            authorization: Some("Token gc-test".to_string()),
        }),
        ..Options::default()
    });
    let database = TestStore::new(backend);
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("notify-token");
    std::fs::write(&token_file, "Token gc-test\n").expect("writing the token file");
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[registry]\nurl = \"{}\"\n\
             [notifications]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\
             [daemon]\ngrace_period = \"5s\"\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/1 * * * * *\"\n",
            database.url(),
            registry.url,
            token_file.display()
        ),
    )
    .expect("writing the config");
    let mut daemon = support::daemon::Daemon::start(&config);
    daemon.wait_for_intake(port);
    let sql = database.sql();
    let store: Arc<dyn Store> = sql.clone();
    let registry_id = store
        .ensure_registry(&format!("127.0.0.1:{}", registry.port))
        .expect("registry row");
    registry.push_image("app", "keep");
    registry.tag("app", "keep", "keep-too");
    registry.push_image("app", "drop-1");
    registry.push_image("app", "drop-2");
    registry.push_image("other", "drop-me-not");
    support::wait_until("the push events are applied", || {
        store.tags(registry_id, None).expect("tags").len() == 5
    });
    let world = World {
        client: Arc::new(
            regkeeper::registry::Client::new(&registry.client_config()).expect("client"),
        ),
        registry,
        store: store.clone(),
        registry_id,
        _database: database,
    };
    let report = world.run(
        "max_delete_fraction = 1.0",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_tags = [\"keep\"]\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(report.result.counts["digests_deleted"], 2);
    let after = world.database_tags();
    assert_eq!(after["app"], strings(&["keep", "keep-too"]));
    let done_deletes = || {
        let rows = sql
            .tx(|conn| {
                conn.query(
                    "SELECT COUNT(*) FROM registry_events WHERE action = 'delete' AND status = 0",
                    &[],
                )
            })
            .expect("counting delete events");
        match rows.first().and_then(|row| row.first()) {
            Some(regkeeper::store::Value::Int(n)) => *n,
            _ => 0,
        }
    };
    support::wait_until("the registry's delete events are applied", || {
        done_deletes() >= 2
    });
    assert_eq!(world.database_tags(), after);
    assert_eq!(world.registry_tags("app"), strings(&["keep", "keep-too"]));
    drop(daemon);
}

/// The real binary: `--once JOB --dry-run` prints the plan per repository
/// and deletes nothing; `gc-log` lists the marked decisions, then the
/// deletions of the real run, as a table and as JSON.
#[test]
fn the_binary_prints_a_dry_run_and_lists_the_deletions() {
    let registry = TestRegistry::anonymous();
    let env = support::cli::CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"{}\"\n", registry.url),
        "[jobs.prune]\nhandler = \"gc\"\nschedule = \"0 0 3 * * *\"\n\
         [[jobs.prune.policy]]\nname = \"apps\"\nrepositories = [\"app\"]\nkeep_latest = 1\n",
    );
    let store: Arc<dyn Store> = Arc::new(support::store::sqlite_file(&env.database_path()));
    let registry_id = store
        .ensure_registry(&format!("127.0.0.1:{}", registry.port))
        .expect("registry row");
    let now = regkeeper::store::now_ms();
    for (tag, age) in [("new", 1), ("old", 50)] {
        let image = registry.push_image("app", tag);
        let write = TagWrite {
            repository: "app".into(),
            tag: tag.into(),
            digest: image.digest,
            image_id: String::new(),
            media_type: DOCKER_MANIFEST.into(),
            size: None,
            platforms: None,
        };
        store
            .upsert_tag(registry_id, &write, now - age * DAY)
            .expect("upsert_tag");
    }
    drop(store);

    let dry = env.run(&["--once", "prune", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(
        dry.stdout.starts_with("app (policies: apps)\n"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("  keep   new (sha256:")
            && dry.stdout.contains("): apps: keep_latest 1 (1st newest)\n"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("): apps: beyond keep_latest 1 (2nd newest)\n"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("tags_to_delete=1"), "{}", dry.stdout);
    let log = env.run(&["gc-log"]);
    assert_eq!(log.code, Some(0), "{log:?}");
    assert!(log.stdout.contains("dry-run"), "{}", log.stdout);

    let real = env.run(&["--once", "prune"]);
    assert_eq!(real.code, Some(0), "{real:?}");
    assert!(real.stdout.contains("digests_deleted=1"), "{}", real.stdout);
    let json = env.run(&["gc-log", "--json", "--deleted-only"]);
    assert_eq!(json.code, Some(0), "{json:?}");
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["tag"], "old");
    assert_eq!(rows[0]["policy"], "apps");
    assert_eq!(rows[0]["dry_run"], false);
    assert_eq!(rows[0]["rule"], "apps: beyond keep_latest 1 (2nd newest)");
}

/// A registry that stops answering in the middle of a pass (every DELETE
/// after the second answers 503, through the fault proxy): the run fails,
/// what was deleted is recorded, what was not stays, and the database
/// equals the registry for both.
fn a_registry_failing_mid_pass_leaves_the_database_equal_to_it(backend: Backend) {
    let mut world = world(backend);
    for index in 0..5 {
        let repository = format!("app{index}");
        world.push(&repository, "old", 20);
        world.push(&repository, "new", 1);
    }
    let proxy = support::fault_proxy::FaultProxy::start(&world.registry.url);
    let deletes = std::sync::atomic::AtomicUsize::new(0);
    proxy.set_rule(move |_, target| match target {
        support::fault_proxy::Target::Delete { .. } => {
            let seen = deletes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (seen >= 2).then_some(support::fault_proxy::Fault::Status(503))
        }
        _ => None,
    });
    world.client = Arc::new(
        regkeeper::registry::Client::new(&proxy.client_config()).expect("registry client"),
    );
    let report = world.run(
        "max_delete_fraction = 0.9",
        "[[jobs.prune.policy]]\nrepositories = [\"app*\"]\nkeep_latest = 1\n",
        RunOptions::default(),
    );
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    let database = world.database_tags();
    let mut gone = 0;
    for index in 0..5 {
        let repository = format!("app{index}");
        let mut in_database = database[&repository].clone();
        in_database.sort();
        assert_eq!(
            world.registry_tags(&repository),
            in_database,
            "{repository}"
        );
        if in_database == strings(&["new"]) {
            gone += 1;
        } else {
            assert_eq!(in_database, strings(&["new", "old"]), "{repository}");
        }
    }
    assert_eq!(gone, 2);
    let audit = world.audit();
    assert_eq!(
        audit.len(),
        2,
        "only what was deleted is recorded: {audit:?}"
    );
    assert!(audit.iter().all(|row| row.tag == "old" && !row.dry_run));
}

/// Reclaiming space, as docs/retention.md tells it: with the registry
/// stopped, its offline `garbage-collect` removes the blobs of the images a
/// pass deleted and keeps those of the images it kept.
#[test]
fn the_registrys_garbage_collect_frees_the_blobs_of_deleted_images() {
    let mut world = world(Backend::Sqlite);
    let old = world.registry.push_image("app", "old");
    world.record("app", "old", &old.digest, DOCKER_MANIFEST, 30);
    let new = world.registry.push_image("app", "new");
    world.record("app", "new", &new.digest, DOCKER_MANIFEST, 1);
    let report = world.run(
        "",
        "[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n",
        RunOptions::default(),
    );
    ok(&report);
    assert_eq!(world.registry_tags("app"), strings(&["new"]));

    let blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        world
            .registry
            .storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    };
    let old_blobs: Vec<_> = old.layers.iter().map(|(digest, _)| blob(digest)).collect();
    let new_blobs: Vec<_> = new.layers.iter().map(|(digest, _)| blob(digest)).collect();
    // A manifest DELETE frees no space by itself.
    assert!(old_blobs.iter().all(|path| path.exists()), "{old_blobs:?}");

    world.registry.stop();
    let output = std::process::Command::new(support::registry::REGISTRY_BINARY)
        .arg("garbage-collect")
        .arg(world.registry.dir().join("config.yml"))
        .output()
        .expect("running docker-registry garbage-collect");
    assert!(
        output.status.success(),
        "garbage-collect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        old_blobs.iter().all(|path| !path.exists()),
        "the deleted image's layers are still stored: {old_blobs:?}"
    );
    assert!(
        new_blobs.iter().all(|path| path.exists()),
        "the kept image's layers are gone: {new_blobs:?}"
    );
    world.registry.restart();
    assert_eq!(world.registry_tags("app"), strings(&["new"]));
}

support::both_backends!(
    a_registry_failing_mid_pass_leaves_the_database_equal_to_it,
    keep_latest_counts_per_repository_and_unselected_repositories_are_untouched,
    a_retag_sharing_its_digest_with_a_kept_tag_survives,
    keep_pushed_within_and_keep_tags_combine,
    keep_pulled_within_keeps_what_was_pulled,
    the_children_of_a_kept_index_stay,
    dry_run_changes_neither_registry_nor_database,
    deletion_disabled_in_the_registry_fails_naming_the_setting,
    the_valve_refuses_a_large_deletion_unless_forced,
    the_delete_a_second_time_changes_nothing,
    the_gc_lock_held_elsewhere_skips_the_pass,
    a_registry_gone_before_the_deletions_ends_the_pass_and_records_nothing,
    the_delete_events_of_a_pass_leave_the_database_unchanged,
);
