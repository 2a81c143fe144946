//! The `sync` job against a real docker-registry, on SQLite and on
//! PostgreSQL: every case runs once per database (modules `sqlite` and
//! `postgres` at the bottom). Most cases drive the handler through the
//! library (`jobs::build` + `scheduler::run_once`, or the handler's phases
//! when the registry must change in the middle of a pass); the last ones run
//! the real binary with `--once`.

use regkeeper_test_support as support;

use std::collections::BTreeMap;
use std::sync::Arc;

use regkeeper::config::{Config, JobConfig};
use regkeeper::jobs::sync::{SyncHandler, SYNC_LOCK_KEY};
use regkeeper::jobs::{Cancel, Handler, JobContext, Outcome, Resources, RunOptions, Trigger};
use regkeeper::scheduler::{run_once, RunReport};
use regkeeper::store::sql::SqlStore;
use regkeeper::store::{RunOutcome, ScanState, Store, TagRecord, TagWrite, Value};
use support::cli::CliEnv;
use support::registry::{
    DigestStrippingProxy, TestRegistry, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_MANIFEST,
};
use support::{Backend, TestStore};

/// A registry, a database and the client, for one test.
struct World {
    registry: Option<TestRegistry>,
    url: String,
    sql: Arc<SqlStore>,
    store: Arc<dyn Store>,
    client: Arc<regkeeper::registry::Client>,
    registry_id: i64,
    /// The proxy the client goes through, when there is one.
    _proxy: Option<DigestStrippingProxy>,
    _database: TestStore,
}

fn world(backend: Backend) -> World {
    let registry = TestRegistry::anonymous();
    let database = TestStore::new(backend);
    let sql = database.sql();
    let store: Arc<dyn Store> = sql.clone();
    let client = Arc::new(
        regkeeper::registry::Client::new(&registry.client_config()).expect("registry client"),
    );
    let registry_id = store
        .ensure_registry(&format!("127.0.0.1:{}", registry.port))
        .expect("registry row");
    World {
        url: registry.url.clone(),
        registry: Some(registry),
        sql,
        store,
        client,
        registry_id,
        _proxy: None,
        _database: database,
    }
}

/// A world whose job and client reach the registry through a proxy that
/// drops `Docker-Content-Digest`; the registry helpers still push directly.
fn world_behind_a_digest_stripping_proxy(backend: Backend) -> World {
    let mut world = world(backend);
    let proxy = DigestStrippingProxy::start(&world.url);
    world.url = proxy.url().to_string();
    world.client = Arc::new(
        regkeeper::registry::Client::new(&proxy.client_config()).expect("registry client"),
    );
    world.registry_id = world
        .store
        .ensure_registry(proxy.url().trim_start_matches("http://"))
        .expect("registry row");
    world._proxy = Some(proxy);
    world
}

impl World {
    fn registry(&self) -> &TestRegistry {
        self.registry.as_ref().expect("the registry is running")
    }

    /// Kills the registry process.
    fn stop_registry(&mut self) {
        self.registry = None;
    }

    /// The configuration of one `sync` job with `strategy` and extra keys.
    fn config(&self, strategy: &str, extra: &str) -> (Config, JobConfig) {
        let text = format!(
            "[database]\nurl = \"sqlite://unused.db\"\n\
             [registry]\nurl = \"{}\"\nconcurrency = 4\n\
             [jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"{strategy}\"\n{extra}",
            self.url
        );
        let config =
            regkeeper::config::parse(&text, std::path::Path::new("sync.toml")).expect("config");
        let job = config.jobs[0].clone();
        (config, job)
    }

    fn resources(&self, config: Config) -> Resources {
        Resources {
            config: Arc::new(config),
            store: self.store.clone(),
            registry: self.client.clone(),
        }
    }

    /// One run through the scheduler's `run_once`, as `--once` does.
    fn run(&self, strategy: &str, options: RunOptions) -> RunReport {
        self.run_with(strategy, "", options)
    }

    fn run_with(&self, strategy: &str, extra: &str, options: RunOptions) -> RunReport {
        let (config, job) = self.config(strategy, extra);
        run_once(&job, &self.resources(config), Trigger::Once, options).expect("run_once")
    }

    /// A handler kept across runs, as the daemon keeps it.
    fn handler(&self, strategy: &str) -> SyncHandler {
        let (config, job) = self.config(strategy, "");
        let options = match &job.handler {
            regkeeper::config::HandlerConfig::Sync(options) => options.clone(),
            other => panic!("not a sync job: {other:?}"),
        };
        SyncHandler::new(options, &self.resources(config))
    }

    fn context(&self, options: RunOptions) -> JobContext {
        JobContext {
            job_name: "sync".into(),
            run_id: 1,
            trigger: Trigger::Once,
            claimant: "test".into(),
            store: self.store.clone(),
            options,
            cancel: Cancel::default(),
        }
    }

    fn tags(&self) -> Vec<TagRecord> {
        self.store.tags(self.registry_id, None).expect("tags")
    }

    /// `repository:tag -> digest` of every tag in the database.
    fn digests(&self) -> BTreeMap<String, String> {
        self.tags()
            .into_iter()
            .map(|tag| (format!("{}:{}", tag.repository, tag.tag), tag.digest))
            .collect()
    }

    fn tag(&self, repository: &str, tag: &str) -> TagRecord {
        self.store
            .tags(self.registry_id, Some(repository))
            .expect("tags")
            .into_iter()
            .find(|record| record.tag == tag)
            .unwrap_or_else(|| panic!("{repository}:{tag} is not in the database"))
    }

    fn repositories(&self) -> Vec<String> {
        self.store
            .repositories(self.registry_id)
            .expect("repositories")
    }

    /// Writes a tag as the events job would.
    fn record(&self, repository: &str, tag: &str, digest: &str) {
        self.store
            .upsert_tag(
                self.registry_id,
                &TagWrite {
                    repository: repository.into(),
                    tag: tag.into(),
                    digest: digest.into(),
                    image_id: String::new(),
                    media_type: DOCKER_MANIFEST.into(),
                    size: None,
                    platforms: None,
                },
                regkeeper::store::now_ms(),
            )
            .expect("upsert_tag");
    }

    /// Stores a registry event as the intake does (status fresh or done).
    fn event(&self, repository: &str, action: &str, status: i64) {
        let now = regkeeper::store::now_ms();
        self.sql
            .tx(|conn| {
                conn.execute(
                    "INSERT INTO registry_events (event_id, status, action, repository, data, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, '{}', $5, $5)",
                    &[
                        Value::Text(format!("{repository}-{action}-{now}-{}", rand::random::<u32>())),
                        Value::Int(status),
                        Value::Text(action.into()),
                        Value::Text(repository.into()),
                        Value::Int(now),
                    ],
                )
            })
            .expect("inserting an event");
    }

    fn set_scanned(&self, digest: &str, scanned: i64) {
        self.sql
            .tx(|conn| {
                conn.execute(
                    "UPDATE tags SET scanned = $2 WHERE digest = $1",
                    &[Value::Text(digest.into()), Value::Int(scanned)],
                )
            })
            .expect("setting scan state");
    }
}

fn count(outcome: &Outcome, name: &str) -> i64 {
    outcome.counts.get(name).copied().unwrap_or(0)
}

fn ok(report: &RunReport) -> &Outcome {
    assert_eq!(
        report.outcome,
        RunOutcome::Ok,
        "run failed: {:?}",
        report.error
    );
    &report.result
}

fn failed(report: &RunReport) -> String {
    assert_eq!(
        report.outcome,
        RunOutcome::Failed,
        "run did not fail: {:?}",
        report.result
    );
    report.error.clone().unwrap_or_default()
}

fn force() -> RunOptions {
    RunOptions {
        force: true,
        ..RunOptions::default()
    }
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// Cases, each run on both databases by the modules at the bottom.

fn empty_registry_syncs_nothing_and_initial_finishes(backend: Backend) {
    let world = world(backend);
    let report = world.run("initial", RunOptions::default());
    let outcome = ok(&report);
    assert_eq!(count(outcome, "repositories_seen"), 0);
    assert_eq!(count(outcome, "errors"), 0);
    assert!(
        outcome.finished.is_some(),
        "initial finishes after a successful pass"
    );
    assert!(world.tags().is_empty());
}

fn namespaces_nested_names_and_every_manifest_kind(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let schema2 = registry.push_image("app", "latest");
    let oci = registry.push_oci_image("ns1/app", "v1");
    let nested = registry.push_image("ns2/team/tool", "1.0");
    let index = registry.push_oci_index("ns1/multi", "v1");
    let list = registry.push_index_of("ns3/list", "v2", DOCKER_MANIFEST_LIST);
    let retagged = registry.tag("ns1/app", "v1", "stable");

    let report = world.run("update-delete", RunOptions::default());
    let outcome = ok(&report);
    assert_eq!(count(outcome, "repositories_seen"), 5);
    assert_eq!(count(outcome, "tags_created"), 6);
    assert_eq!(outcome.finished, None, "update-delete never finishes");
    assert_eq!(
        world.repositories(),
        vec!["app", "ns1/app", "ns1/multi", "ns2/team/tool", "ns3/list"]
    );
    let app = world.tag("app", "latest");
    assert_eq!(
        (
            app.digest.as_str(),
            app.media_type.as_str(),
            app.image_id.as_str(),
            app.size
        ),
        (
            schema2.digest.as_str(),
            DOCKER_MANIFEST,
            schema2.image_id.as_str(),
            Some(schema2.size)
        )
    );
    let v1 = world.tag("ns1/app", "v1");
    assert_eq!(
        (
            v1.digest.as_str(),
            v1.media_type.as_str(),
            v1.image_id.as_str(),
            v1.size
        ),
        (
            oci.digest.as_str(),
            OCI_MANIFEST,
            oci.image_id.as_str(),
            Some(oci.size)
        )
    );
    assert_eq!(world.tag("ns1/app", "stable").digest, retagged);
    assert_eq!(world.tag("ns2/team/tool", "1.0").digest, nested.digest);
    let multi = world.tag("ns1/multi", "v1");
    assert_eq!(
        (multi.digest.as_str(), multi.media_type.as_str()),
        (index.digest.as_str(), OCI_INDEX)
    );
    assert_eq!(multi.image_id, "");
    let listed = world.tag("ns3/list", "v2");
    assert_eq!(
        (listed.digest.as_str(), listed.media_type.as_str()),
        (list.digest.as_str(), DOCKER_MANIFEST_LIST)
    );
}

fn no_change_pass_writes_nothing_and_only_heads(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    for repository in ["a/one", "a/two", "b"] {
        registry.push_image(repository, "v1");
        registry.push_oci_image(repository, "v2");
    }
    ok(&world.run("update-delete", RunOptions::default()));
    let before = world.tags();
    let outcome = world.run("update-delete", RunOptions::default()).result;
    assert_eq!(
        (
            count(&outcome, "tags_created"),
            count(&outcome, "tags_updated"),
            count(&outcome, "tags_deleted"),
            count(&outcome, "repositories_deleted"),
        ),
        (0, 0, 0, 0)
    );
    // One catalog page, three tag lists, six HEADs: not a single GET.
    assert_eq!(count(&outcome, "requests"), 1 + 3 + 6);
    assert_eq!(world.tags(), before, "rows untouched, updated_at included");
}

fn initial_runs_only_on_an_empty_database(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let first = registry.push_image("app", "v1");
    let outcome = ok(&world.run("initial", RunOptions::default())).clone();
    assert!(outcome.finished.is_some());
    assert_eq!(world.digests(), map(&[("app:v1", &first.digest)]));

    // Next daemon start: the database has repositories, so the job finishes
    // for good at once, without a request or a write.
    registry.push_image("other", "v1");
    let outcome = ok(&world.run("initial", RunOptions::default())).clone();
    let reason = outcome.finished.clone().expect("finished for good");
    assert!(reason.contains("already has repositories"), "{reason}");
    assert_eq!(count(&outcome, "requests"), 0);
    assert_eq!(world.digests(), map(&[("app:v1", &first.digest)]));
}

fn on_start_deletes_and_finishes_for_good(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let kept = registry.push_image("app", "v1");
    world.record("app", "v1", &kept.digest);
    world.record("app", "gone", "sha256:0000");
    world.record("old/repo", "v1", "sha256:1111");
    let added = registry.push_image("new", "v1");
    let outcome = ok(&world.run_with(
        "on-start",
        "max_delete_fraction = 1.0\n",
        RunOptions::default(),
    ))
    .clone();
    assert!(
        outcome.finished.is_some(),
        "on-start finishes after a successful pass"
    );
    assert_eq!(count(&outcome, "tags_deleted"), 2);
    assert_eq!(count(&outcome, "repositories_deleted"), 1);
    assert_eq!(
        world.digests(),
        map(&[("app:v1", &kept.digest), ("new:v1", &added.digest)])
    );
}

fn update_never_deletes_and_keeps_running(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let kept = registry.push_image("app", "v1");
    world.record("app", "stale", "sha256:0000");
    world.record("old/repo", "v1", "sha256:1111");
    let handler = world.handler("update");
    let context = world.context(RunOptions::default());
    for _ in 0..2 {
        let outcome = handler.run(&context).expect("update pass");
        assert_eq!(outcome.finished, None, "update never finishes");
        assert_eq!(count(&outcome, "tags_deleted"), 0);
    }
    assert_eq!(
        world.digests(),
        map(&[
            ("app:stale", "sha256:0000"),
            ("app:v1", &kept.digest),
            ("old/repo:v1", "sha256:1111")
        ])
    );
}

fn update_delete_deletes_and_keeps_running(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let kept = registry.push_image("app", "v1");
    for repository in ["other", "third"] {
        let image = registry.push_image(repository, "v1");
        world.record(repository, "v1", &image.digest);
    }
    world.record("app", "v1", &kept.digest);
    world.record("app", "stale", "sha256:0000");
    world.record("old/repo", "v1", "sha256:1111");
    let handler = world.handler("update-delete");
    let context = world.context(RunOptions::default());
    let outcome = handler.run(&context).expect("update-delete pass");
    assert_eq!(outcome.finished, None);
    assert_eq!(count(&outcome, "tags_deleted"), 2);
    assert_eq!(count(&outcome, "repositories_deleted"), 1);
    assert_eq!(world.tag("app", "v1").digest, kept.digest);
    assert_eq!(world.repositories(), vec!["app", "other", "third"]);
    let again = handler.run(&context).expect("second pass");
    assert_eq!(again.finished, None);
}

fn failed_pass_does_not_count(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    registry.push_image("app", "v1");
    // The catalog cannot be read: the storage's repositories folder is a file.
    let repositories = registry
        .storage_dir()
        .join("docker/registry/v2/repositories");
    let hidden = registry.storage_dir().join("repositories.moved");
    std::fs::rename(&repositories, &hidden).expect("moving the repositories away");
    std::fs::write(&repositories, b"not a directory").expect("a file in its place");
    for strategy in ["initial", "on-start"] {
        let report = world.run(strategy, RunOptions::default());
        let error = failed(&report);
        assert!(error.contains("catalog"), "{error}");
        assert_eq!(report.result.finished, None);
    }
    assert!(
        world.tags().is_empty(),
        "a failed catalog walk writes nothing"
    );

    // A pass cut short does not count either.
    std::fs::remove_file(&repositories).expect("removing the file");
    std::fs::rename(&hidden, &repositories).expect("moving the repositories back");
    let handler = world.handler("on-start");
    let context = world.context(RunOptions::default());
    context.cancel.cancel();
    assert!(handler.run(&context).is_err(), "a cancelled pass fails");
    assert!(world.tags().is_empty());

    // Once the registry is readable again, the pass succeeds and finishes.
    for strategy in ["initial", "on-start"] {
        let outcome = ok(&world.run(strategy, RunOptions::default())).clone();
        assert!(
            outcome.finished.is_some(),
            "{strategy} finishes after a good pass"
        );
    }
    assert_eq!(world.repositories(), vec!["app"]);
}

fn repushed_tag_updates_digest_and_resets_scan(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let old = registry.push_image("app", "v1");
    ok(&world.run("update", RunOptions::default()));
    world.set_scanned(&old.digest, 2);
    let new = registry.push_oci_image("app", "v1");
    let outcome = ok(&world.run("update", RunOptions::default())).clone();
    assert_eq!(count(&outcome, "tags_updated"), 1);
    let tag = world.tag("app", "v1");
    assert_eq!(
        (
            tag.digest.as_str(),
            tag.image_id.as_str(),
            tag.media_type.as_str(),
            tag.size,
            tag.scanned
        ),
        (
            new.digest.as_str(),
            new.image_id.as_str(),
            OCI_MANIFEST,
            Some(new.size),
            ScanState::Unscanned
        )
    );
}

fn tags_deleted_in_the_registry_go_only_under_deleting_strategies(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let v1 = registry.push_image("app", "v1");
    let v2 = registry.push_image("app", "v2");
    let v3 = registry.push_image("app", "v3");
    registry.push_image("b", "v1");
    ok(&world.run("update", RunOptions::default()));
    assert_eq!(registry.delete("app", &v2.digest), 202);
    ok(&world.run("update", RunOptions::default()));
    assert_eq!(world.tag("app", "v2").digest, v2.digest, "update keeps it");
    let outcome = ok(&world.run("update-delete", RunOptions::default())).clone();
    assert_eq!(count(&outcome, "tags_deleted"), 1);
    let app: Vec<(String, String)> = world
        .tags()
        .into_iter()
        .filter(|tag| tag.repository == "app")
        .map(|tag| (tag.tag, tag.digest))
        .collect();
    assert_eq!(
        app,
        vec![("v1".to_string(), v1.digest), ("v3".to_string(), v3.digest)]
    );
}

fn emptied_repository_is_deleted_under_deleting_strategies(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    registry.push_image("ns/app", "v1");
    registry.push_image("ns/app", "v2");
    for repository in ["a", "b", "c"] {
        registry.push_image(repository, "v1");
    }
    ok(&world.run("update", RunOptions::default()));
    registry.empty_repository("ns/app");
    let outcome = ok(&world.run("update", RunOptions::default())).clone();
    assert_eq!(count(&outcome, "repositories_deleted"), 0);
    assert!(world.repositories().contains(&"ns/app".to_string()));
    let outcome = ok(&world.run_with(
        "update-delete",
        "max_delete_fraction = 0.5\n",
        RunOptions::default(),
    ))
    .clone();
    assert_eq!(count(&outcome, "repositories_deleted"), 1);
    assert_eq!(count(&outcome, "tags_deleted"), 2);
    assert_eq!(world.repositories(), vec!["a", "b", "c"]);
}

fn registry_stopped_mid_pass_deletes_nothing_and_fails(backend: Backend) {
    let mut world = world(backend);
    let registry = world.registry();
    for repository in ["a", "b", "c/d"] {
        registry.push_image(repository, "v1");
    }
    ok(&world.run("update-delete", RunOptions::default()));
    let before = world.tags();
    let handler = world.handler("update-delete");
    let context = world.context(RunOptions::default());
    let mut walk = handler.begin(world.registry_id).expect("catalog walk");
    assert_eq!(walk.catalog.len(), 3);
    world.stop_registry();
    let error = handler
        .observe(&context, &mut walk)
        .expect_err("observing a stopped registry");
    assert!(
        format!("{error:#}").contains("stopped answering"),
        "{error:#}"
    );
    // And a whole run against the stopped registry fails without writing.
    let report = world.run("update-delete", force());
    failed(&report);
    assert_eq!(world.tags(), before);
}

fn unreadable_repository_is_left_alone_while_others_sync(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let broken_v1 = registry.push_image("broken", "v1");
    registry.push_image("fine", "v1");
    ok(&world.run("update-delete", RunOptions::default()));
    let fine_v2 = registry.push_image("fine", "v2");
    registry.push_image("broken", "v2");
    registry.break_repository("broken");
    let report = world.run("on-start", RunOptions::default());
    let outcome = ok(&report);
    assert_eq!(count(outcome, "errors"), 1);
    assert_eq!(count(outcome, "tags_created"), 1);
    assert_eq!(
        outcome.finished, None,
        "a pass with errors does not finish on-start"
    );
    assert_eq!(
        world.digests(),
        map(&[
            ("broken:v1", &broken_v1.digest),
            ("fine:v1", &world.tag("fine", "v1").digest),
            ("fine:v2", &fine_v2.digest)
        ])
    );
}

fn safety_valve_refuses_mass_deletion_unless_forced(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let kept = registry.push_image("kept", "v1");
    for repository in ["gone/a", "gone/b", "gone/c"] {
        world.record(repository, "v1", "sha256:0000");
    }
    let added = registry.push_image("added", "v1");
    let error = failed(&world.run("update-delete", RunOptions::default()));
    assert!(error.contains("safety valve"), "{error}");
    assert!(error.contains("3 of 3 repositories"), "{error}");
    assert_eq!(
        world.repositories(),
        vec!["gone/a", "gone/b", "gone/c"],
        "nothing written, creates included"
    );
    let outcome = ok(&world.run("update-delete", force())).clone();
    assert_eq!(count(&outcome, "repositories_deleted"), 3);
    assert_eq!(
        world.digests(),
        map(&[("added:v1", &added.digest), ("kept:v1", &kept.digest)])
    );
}

fn push_during_a_pass_is_not_undone(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    let mut second = BTreeMap::new();
    for repository in ["a", "b", "c", "d", "e"] {
        registry.push_image(repository, "v1");
        if ["d", "e"].contains(&repository) {
            second.insert(repository, registry.push_image(repository, "v2"));
        }
    }
    ok(&world.run("update-delete", RunOptions::default()));
    // Deleted in the registry with the events missed: a pass deletes them...
    for (repository, image) in &second {
        assert_eq!(registry.delete(repository, &image.digest), 202);
    }
    // ...and creates this one.
    let c2 = registry.push_image("c", "v2");

    let handler = world.handler("update-delete");
    let context = world.context(RunOptions::default());
    let mut walk = handler.begin(world.registry_id).expect("catalog walk");
    handler.observe(&context, &mut walk).expect("observe");
    // During the walk: `d:v2` pushed again and applied by the events job,
    // a push to `b` still waiting, a pull of `c` (changes nothing).
    let d2 = registry.push_image("d", "v2");
    world.event("d", "push", 0);
    world.record("d", "v2", &d2.digest);
    world.event("b", "push", 2);
    world.event("c", "pull", 0);
    let plan = handler.plan(&mut walk).expect("plan");
    // Between planning and applying: `e:v2` pushed again; the check inside
    // the apply transaction catches it.
    let e2 = registry.push_image("e", "v2");
    world.event("e", "push", 0);
    world.record("e", "v2", &e2.digest);
    let counts = handler.apply(&context, &walk, &plan).expect("apply");

    assert_eq!(
        counts.totals.skipped, 3,
        "b and d at planning, e when applying"
    );
    assert_eq!(counts.totals.tags_deleted, 0);
    assert_eq!(counts.totals.tags_created, 1, "c:v2 despite the pull");
    assert_eq!(world.tag("c", "v2").digest, c2.digest);
    assert_eq!(world.tag("d", "v2").digest, d2.digest);
    assert_eq!(world.tag("e", "v2").digest, e2.digest);
}

fn advisory_lock_held_elsewhere_skips_the_pass(backend: Backend) {
    let world = world(backend);
    world.registry().push_image("app", "v1");
    let held = world.store.try_advisory_lock(SYNC_LOCK_KEY).expect("lock");
    let outcome = ok(&world.run("on-start", RunOptions::default())).clone();
    match backend {
        // Another daemon holds the lock: skip, do not finish, write nothing.
        Backend::Postgres => {
            assert_eq!(count(&outcome, "skipped_passes"), 1);
            assert_eq!(outcome.finished, None);
            assert!(world.tags().is_empty());
        }
        // SQLite's write lock is all it takes.
        Backend::Sqlite => assert!(outcome.finished.is_some()),
    }
    drop(held);
    let outcome = ok(&world.run("on-start", RunOptions::default())).clone();
    assert!(outcome.finished.is_some());
    assert_eq!(world.repositories(), vec!["app"]);
}

fn dry_run_writes_nothing(backend: Backend) {
    let world = world(backend);
    let registry = world.registry();
    registry.push_image("app", "v1");
    world.record("old", "v1", "sha256:0000");
    let before = world.tags();
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let outcome = ok(&world.run_with("on-start", "max_delete_fraction = 1.0\n", options)).clone();
    assert_eq!(count(&outcome, "tags_created"), 1, "the plan's counts");
    assert_eq!(count(&outcome, "repositories_deleted"), 1);
    assert_eq!(
        outcome.finished, None,
        "a dry run does not count as the pass"
    );
    assert_eq!(world.tags(), before);
}

fn registry_without_digest_header_is_synced_with_one_get_per_tag(backend: Backend) {
    let world = world_behind_a_digest_stripping_proxy(backend);
    let registry = world.registry();
    let image = registry.push_image("a", "v1");
    let oci = registry.push_oci_image("a", "v2");
    let index = registry.push_oci_index("b", "multi");
    let outcome = ok(&world.run("update-delete", RunOptions::default())).clone();
    assert_eq!(count(&outcome, "tags_created"), 3);
    let expected = map(&[
        ("a:v1", image.digest.as_str()),
        ("a:v2", oci.digest.as_str()),
        ("b:multi", index.digest.as_str()),
    ]);
    assert_eq!(world.digests(), expected);

    // Known tags: the first HEADs come back without a digest, so the client
    // reads them with GET and, having learnt that, skips HEAD from then on.
    let outcome = ok(&world.run("update-delete", RunOptions::default())).clone();
    assert_eq!(
        (
            count(&outcome, "tags_created"),
            count(&outcome, "tags_updated"),
            count(&outcome, "tags_deleted"),
            count(&outcome, "errors"),
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(world.digests(), expected);
    let outcome = ok(&world.run("update-delete", RunOptions::default())).clone();
    assert_eq!(count(&outcome, "tags_updated"), 0);
    // One catalog page, two tag lists, one GET per tag.
    assert_eq!(count(&outcome, "requests"), 1 + 2 + 3);

    // A re-pushed tag is updated from that same GET, not fetched twice.
    let repushed = registry.push_image("a", "v1");
    let outcome = ok(&world.run("update-delete", RunOptions::default())).clone();
    assert_eq!(count(&outcome, "tags_updated"), 1);
    assert_eq!(count(&outcome, "requests"), 1 + 2 + 3);
    let tag = world.tag("a", "v1");
    assert_eq!(tag.digest, repushed.digest);
    assert_eq!(tag.image_id, repushed.image_id);
    assert_eq!(tag.size, Some(repushed.size));
}

// ---------------------------------------------------------------------------
// The real binary.

fn cli_env(registry: &TestRegistry, strategy: &str) -> CliEnv {
    CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"{}\"\n", registry.url),
        &format!(
            "[jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"{strategy}\"\n"
        ),
    )
}

fn sqlite_tags(env: &CliEnv, url: &str) -> Vec<(String, String, String)> {
    let store = support::store::sqlite_file(&env.database_path());
    let registry_id = store
        .ensure_registry(&regkeeper::jobs::registry_hostname(
            &url::Url::parse(url).expect("registry url"),
        ))
        .expect("registry");
    store
        .tags(registry_id, None)
        .expect("tags")
        .into_iter()
        .map(|tag| (tag.repository, tag.tag, tag.digest))
        .collect()
}

#[test]
fn binary_once_syncs_and_dry_run_prints_the_plan_without_writing() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let env = cli_env(&registry, "update-delete");

    let dry = env.run(&["--once", "sync", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(
        dry.stdout
            .contains(&format!("create  ns/app:v1  {}", image.digest)),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("plan: 1 repositories; create 1 tags"),
        "{}",
        dry.stdout
    );
    assert!(
        sqlite_tags(&env, &registry.url).is_empty(),
        "a dry run writes nothing"
    );

    let run = env.run(&["--once", "sync"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        sqlite_tags(&env, &registry.url),
        vec![("ns/app".to_string(), "v1".to_string(), image.digest.clone())]
    );
}

#[test]
fn binary_once_fails_on_the_safety_valve_and_force_applies() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("app", "v1");
    let env = cli_env(&registry, "update-delete");
    assert_eq!(env.run(&["--once", "sync"]).code, Some(0));
    registry.empty_repository("app");
    let refused = env.run(&["--once", "sync"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("safety valve"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        sqlite_tags(&env, &registry.url),
        vec![("app".to_string(), "v1".to_string(), image.digest.clone())]
    );
    let forced = env.run(&["--once", "sync", "--force"]);
    assert_eq!(forced.code, Some(0), "{forced:?}");
    assert!(sqlite_tags(&env, &registry.url).is_empty());
}

#[test]
fn a_dry_run_says_the_valve_would_refuse_and_is_recorded_as_a_dry_run() {
    let registry = TestRegistry::anonymous();
    registry.push_image("app", "v1");
    let env = cli_env(&registry, "update-delete");
    assert_eq!(env.run(&["--once", "sync"]).code, Some(0));
    registry.empty_repository("app");
    let dry = env.run(&["--once", "sync", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(
        dry.stdout.contains(
            "safety valve: the pass would delete 1 of 1 repositories, more than \
             max_delete_fraction = 0.5; a real run would be refused and write nothing (add \
             --force to apply it)"
        ),
        "{}",
        dry.stdout
    );
    let status = env.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    let runs = status["jobs"][0]["runs"].as_array().expect("runs").clone();
    let dry_run = runs
        .iter()
        .find(|run| run["trigger"] == "dry-run")
        .unwrap_or_else(|| panic!("no run recorded as a dry run: {runs:?}"));
    assert_eq!(dry_run["counts"]["valve_would_refuse"], 1, "{dry_run}");
    assert_eq!(
        runs.iter().filter(|run| run["trigger"] == "once").count(),
        1,
        "only the real run is an ordinary once run: {runs:?}"
    );
}

#[test]
fn a_dry_run_plans_even_after_initial_finished_for_good() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let env = cli_env(&registry, "initial");
    assert_eq!(env.run(&["--once", "sync"]).code, Some(0));
    let pushed = registry.push_image("ns/app", "v2");
    let dry = env.run(&["--once", "sync", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(!dry.stdout.contains("done for good"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains(&format!("create  ns/app:v2  {}", pushed.digest)),
        "{}",
        dry.stdout
    );
    assert_eq!(
        sqlite_tags(&env, &registry.url),
        vec![("ns/app".to_string(), "v1".to_string(), image.digest.clone())],
        "the dry run wrote nothing"
    );
}

#[test]
fn dry_run_is_refused_by_handlers_that_have_none() {
    for (handler, keys) in [("events", ""), ("security", "")] {
        let env = CliEnv::with_sqlite(
            "[registry]\nurl = \"http://127.0.0.1:9\"\n",
            &format!("[jobs.job]\nhandler = \"{handler}\"\nschedule = \"0 0 * * * *\"\n{keys}"),
        );
        let refused = env.run(&["--once", "job", "--dry-run"]);
        assert_eq!(refused.code, Some(2), "{handler}: {refused:?}");
        assert!(
            refused.stderr.contains(&format!(
                "job job (handler {handler}) has no dry run: --dry-run would be ignored"
            )),
            "{handler}: {}",
            refused.stderr
        );
    }
}

#[test]
fn binary_once_logs_once_that_the_registry_omits_the_digest_header() {
    let registry = TestRegistry::anonymous();
    let images: Vec<_> = ["v1", "v2", "v3"]
        .iter()
        .map(|tag| registry.push_image("ns/app", tag))
        .collect();
    let proxy = DigestStrippingProxy::start(&registry.url);
    let env = CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"{}\"\n", proxy.url()),
        "[jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"update\"\n",
    );
    let first = env.run(&["--once", "sync"]);
    assert_eq!(first.code, Some(0), "{first:?}");
    // The second run HEADs the known tags and learns the header is missing.
    let second = env.run(&["--once", "sync"]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert_eq!(
        second
            .stderr
            .matches("answers manifest HEAD requests without Docker-Content-Digest")
            .count(),
        1,
        "{}",
        second.stderr
    );
    let expected: Vec<(String, String, String)> = images
        .iter()
        .map(|image| {
            (
                image.repository.clone(),
                image.tag.clone().unwrap_or_default(),
                image.digest.clone(),
            )
        })
        .collect();
    assert_eq!(sqlite_tags(&env, proxy.url()), expected);
}

// ---------------------------------------------------------------------------

support::both_backends!(
    empty_registry_syncs_nothing_and_initial_finishes,
    namespaces_nested_names_and_every_manifest_kind,
    no_change_pass_writes_nothing_and_only_heads,
    initial_runs_only_on_an_empty_database,
    on_start_deletes_and_finishes_for_good,
    update_never_deletes_and_keeps_running,
    update_delete_deletes_and_keeps_running,
    failed_pass_does_not_count,
    repushed_tag_updates_digest_and_resets_scan,
    tags_deleted_in_the_registry_go_only_under_deleting_strategies,
    emptied_repository_is_deleted_under_deleting_strategies,
    registry_stopped_mid_pass_deletes_nothing_and_fails,
    unreadable_repository_is_left_alone_while_others_sync,
    safety_valve_refuses_mass_deletion_unless_forced,
    push_during_a_pass_is_not_undone,
    advisory_lock_held_elsewhere_skips_the_pass,
    dry_run_writes_nothing,
    registry_without_digest_header_is_synced_with_one_get_per_tag,
);
