//! The store contract: one story that calls every `Store` method, run with
//! the same assertions on SQLite and on a real PostgreSQL server (started by
//! `scripts/test.sh`). Every method added to the trait gets a chapter here,
//! so the two databases cannot drift apart unnoticed.

use regkeeper_test_support as support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regkeeper::store::sql::{self, SqlStore};
use regkeeper::store::{
    self, postgres::PostgresBackend, sqlite::SqliteBackend, AppliedEvent, Dialect, EventClaim,
    EventEffect, KnownManifest, NewEvent, NewRun, RepositorySync, RunOutcome, Store, SyncApplied,
    TagChange, TagWrite, Value,
};
use support::postgres::TestDatabase;

const NOW: i64 = 1_700_000_000_000;

fn sqlite_store(dir: &tempfile::TempDir) -> SqlStore {
    let backend = SqliteBackend::open(&dir.path().join("regkeeper.db")).expect("opening sqlite");
    let store = SqlStore::new(Box::new(backend));
    store.migrate().expect("migrating sqlite");
    store
}

fn postgres_store(database: &TestDatabase) -> SqlStore {
    let backend =
        PostgresBackend::connect(database.url(), None, 4).expect("connecting to postgres");
    let store = SqlStore::new(Box::new(backend));
    store.migrate().expect("migrating postgres");
    store
}

fn write(repository: &str, tag: &str, digest: &str) -> TagWrite {
    TagWrite {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: digest.to_string(),
        image_id: String::new(),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        size: None,
        platforms: None,
    }
}

fn run(job: &str, started_at: i64) -> NewRun {
    NewRun {
        job: job.to_string(),
        handler: "sync".to_string(),
        trigger: "schedule".to_string(),
        started_at,
        claimant: "host-a:1:00000001".to_string(),
        expires_at: started_at + 60_000,
    }
}

/// A run of `job` by `claimant`, started at `started_at`, expiring at
/// `expires_at` unless its heartbeat is renewed.
fn run_by(job: &str, claimant: &str, started_at: i64, expires_at: i64) -> NewRun {
    NewRun {
        claimant: claimant.to_string(),
        expires_at,
        ..run(job, started_at)
    }
}

/// Heartbeats, expiry and abandoned runs, with explicit times.
fn run_liveness_chapter(store: &SqlStore) {
    const ABANDON_AFTER: i64 = 300_000;
    let live = store
        .start_run(&run_by("scan-job", "host-a:1:0000000a", NOW, NOW + 1_000))
        .expect("start_run");
    let dead = store
        .start_run(&run_by("scan-job", "host-b:2:0000000b", NOW, NOW + 1_000))
        .expect("start_run");
    let elsewhere = store
        .start_run(&run_by("index-job", "host-b:2:0000000b", NOW, NOW + 1_000))
        .expect("start_run");
    let started = store.recent_runs("scan-job", 10).expect("recent_runs");
    assert_eq!(started[0].claimant.as_deref(), Some("host-b:2:0000000b"));
    assert_eq!(
        started[0].heartbeat_at,
        Some(NOW),
        "the start is the first heartbeat"
    );

    // Up to and at its expiry a run is alive.
    assert!(store
        .abandon_expired_runs(None, NOW + 1_000, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());
    assert!(store
        .heartbeat_run(live, NOW + 900, NOW + 1_900)
        .expect("heartbeat_run"));

    // Past it, the run that missed its heartbeat is abandoned, only in the
    // job asked about; the renewed one is left alone.
    let abandoned = store
        .abandon_expired_runs(Some("scan-job"), NOW + 1_500, ABANDON_AFTER)
        .expect("abandon_expired_runs");
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert_eq!(abandoned[0].id, dead);
    assert_eq!(abandoned[0].outcome, Some(RunOutcome::Abandoned));
    assert_eq!(abandoned[0].finished_at, Some(NOW), "its last heartbeat");
    let error = abandoned[0].error.clone().unwrap_or_default();
    assert_eq!(
        error,
        "the daemon host-b:2:0000000b that ran it stopped without finishing it \
         (last heartbeat 2023-11-14T22:13:20.000Z)"
    );
    let runs = store.recent_runs("scan-job", 10).expect("recent_runs");
    assert_eq!(runs[0], abandoned[0], "recorded as returned");
    assert_eq!(runs[1].id, live);
    assert_eq!(runs[1].outcome, None);
    assert_eq!(runs[1].heartbeat_at, Some(NOW + 900));

    // Noticed again (another process, later): recorded once only.
    assert!(store
        .abandon_expired_runs(Some("scan-job"), NOW + 1_600, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());
    // Its late heartbeat does not revive it; its own end, if it ever
    // records one, replaces the abandonment.
    assert!(!store
        .heartbeat_run(dead, NOW + 1_700, NOW + 2_700)
        .expect("heartbeat_run"));
    assert_eq!(
        store.recent_runs("scan-job", 10).expect("recent_runs")[0].finished_at,
        Some(NOW)
    );
    store
        .finish_run(dead, NOW + 1_800, RunOutcome::Ok, &BTreeMap::new(), None)
        .expect("finish_run");
    let late = &store.recent_runs("scan-job", 10).expect("recent_runs")[0];
    assert_eq!(late.outcome, Some(RunOutcome::Ok));
    assert_eq!(late.error, None);

    // Every job at once; the renewed run lapses later.
    let everywhere = store
        .abandon_expired_runs(None, NOW + 1_901, ABANDON_AFTER)
        .expect("abandon_expired_runs");
    assert_eq!(
        everywhere.iter().map(|run| run.id).collect::<Vec<_>>(),
        vec![live, elsewhere]
    );
    assert_eq!(everywhere[0].finished_at, Some(NOW + 900));

    // A finished run has no heartbeat to renew.
    let finished = store
        .start_run(&run_by(
            "scan-job",
            "host-a:1:0000000a",
            NOW + 2_000,
            NOW + 3_000,
        ))
        .expect("start_run");
    store
        .finish_run(
            finished,
            NOW + 2_100,
            RunOutcome::Failed,
            &BTreeMap::new(),
            Some("boom"),
        )
        .expect("finish_run");
    assert!(!store
        .heartbeat_run(finished, NOW + 2_200, NOW + 3_200)
        .expect("heartbeat_run"));
    assert!(store
        .abandon_expired_runs(Some("scan-job"), NOW + 10_000, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());

    // A run recorded before heartbeats (no claimant, no expiry) expires
    // `abandon_after` after its start.
    exec(
        store,
        "INSERT INTO job_runs (job, handler, trigger, started_at, counts) VALUES ('legacy-job', 'sync', 'wake', $1, '{}')",
        &[Value::Int(NOW)],
    );
    assert!(store
        .abandon_expired_runs(Some("legacy-job"), NOW + ABANDON_AFTER, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());
    let legacy = store
        .abandon_expired_runs(Some("legacy-job"), NOW + ABANDON_AFTER + 1, ABANDON_AFTER)
        .expect("abandon_expired_runs");
    assert_eq!(legacy.len(), 1);
    assert_eq!(legacy[0].claimant, None);
    assert_eq!(legacy[0].heartbeat_at, None);
    assert_eq!(legacy[0].finished_at, Some(NOW));
    assert_eq!(
        legacy[0].error.as_deref(),
        Some(
            "the daemon that ran it stopped without finishing it (recorded by a version \
             without heartbeats; started 2023-11-14T22:13:20.000Z)"
        )
    );
    assert!(store
        .abandon_expired_runs(None, NOW + ABANDON_AFTER + 1, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .iter()
        .all(|run| run.job != "legacy-job" && run.job != "scan-job"));
}

/// Raw SQL for state no trait method writes yet (scan progress, events).
fn exec(store: &SqlStore, statement: &str, params: &[Value]) {
    store
        .tx(|conn| conn.execute(statement, params))
        .expect(statement);
}

fn story(store: &SqlStore, dialect: Dialect) {
    assert_eq!(store.dialect(), dialect);
    store.ping().expect("ping");

    // Transactions: an error rolls back everything done in it, and the
    // connection stays usable after a failed statement.
    let rolled_back = store.tx(|conn| -> anyhow::Result<()> {
        conn.execute(
            "INSERT INTO registries (name, hostname, created_at, updated_at) VALUES ('x', 'x', 0, 0)",
            &[],
        )?;
        anyhow::bail!("stop here")
    });
    assert_eq!(format!("{:#}", rolled_back.unwrap_err()), "stop here");
    let failed = store.tx(|conn| conn.execute("INSERT INTO no_such_table VALUES (1)", &[]));
    assert!(format!("{:#}", failed.unwrap_err()).contains("no_such_table"));
    for _ in 0..3 {
        let rows = store
            .tx(|conn| {
                conn.query(
                    "SELECT COUNT(*) FROM registries WHERE hostname = $1",
                    &[Value::Text("x".into())],
                )
            })
            .expect("counting registries");
        assert_eq!(rows, vec![vec![Value::Int(0)]]);
    }

    // Job runs: start, finish, read back, prune.
    let first = store.start_run(&run("sync-job", NOW)).expect("start_run");
    let running = store.recent_runs("sync-job", 10).expect("recent_runs");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, first);
    assert_eq!(running[0].job, "sync-job");
    assert_eq!(running[0].handler, "sync");
    assert_eq!(running[0].trigger, "schedule");
    assert_eq!(running[0].started_at, NOW);
    assert_eq!(running[0].finished_at, None);
    assert_eq!(running[0].outcome, None);
    assert!(running[0].counts.is_empty());
    let counts = BTreeMap::from([("created".to_string(), 3), ("deleted".to_string(), 0)]);
    store
        .finish_run(first, NOW + 5, RunOutcome::Ok, &counts, None)
        .expect("finish_run");
    let finished = store.recent_runs("sync-job", 10).expect("recent_runs");
    assert_eq!(finished[0].finished_at, Some(NOW + 5));
    assert_eq!(finished[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(finished[0].counts, counts);
    assert_eq!(finished[0].error, None);
    let missing = store
        .finish_run(first + 1000, NOW, RunOutcome::Ok, &BTreeMap::new(), None)
        .unwrap_err();
    assert!(
        format!("{missing:#}").contains("no such run"),
        "{missing:#}"
    );

    let outcomes = [
        RunOutcome::Failed,
        RunOutcome::Skipped,
        RunOutcome::TimedOut,
        RunOutcome::Ok,
    ];
    let mut ids = vec![first];
    for (offset, outcome) in (1..).zip(outcomes) {
        let id = store
            .start_run(&run("sync-job", NOW + offset * 10))
            .expect("start_run");
        let error = (outcome == RunOutcome::Failed).then_some("listing tags of app: boom");
        store
            .finish_run(id, NOW + offset * 10 + 1, outcome, &BTreeMap::new(), error)
            .expect("finish_run");
        ids.push(id);
    }
    let other_job = store.start_run(&run("other-job", NOW)).expect("start_run");
    let all = store.recent_runs("sync-job", 100).expect("recent_runs");
    assert_eq!(
        all.iter().map(|run| run.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(all[3].error.as_deref(), Some("listing tags of app: boom"));
    assert_eq!(all[3].outcome, Some(RunOutcome::Failed));
    assert_eq!(
        store.recent_runs("sync-job", 2).expect("recent_runs").len(),
        2
    );
    assert_eq!(store.prune_runs("sync-job", 2).expect("prune_runs"), 3);
    assert_eq!(store.prune_runs("sync-job", 2).expect("prune_runs"), 0);
    let kept = store.recent_runs("sync-job", 100).expect("recent_runs");
    assert_eq!(
        kept.iter().map(|run| run.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    assert_eq!(kept[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(kept[1].outcome, Some(RunOutcome::TimedOut));
    assert_eq!(
        store.recent_runs("other-job", 100).expect("recent_runs")[0].id,
        other_job
    );
    assert!(store
        .recent_runs("no-such-job", 10)
        .expect("recent_runs")
        .is_empty());

    run_liveness_chapter(store);

    // Registries: idempotent, one global namespace each.
    let registry = store
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    assert_eq!(
        store
            .ensure_registry("127.0.0.1:5000")
            .expect("ensure_registry"),
        registry
    );
    let other_registry = store
        .ensure_registry("registry.test:443")
        .expect("ensure_registry");
    assert_ne!(other_registry, registry);
    let globals = store
        .tx(|conn| {
            conn.query(
                "SELECT COUNT(*) FROM namespaces WHERE global = 1 AND name = ''",
                &[],
            )
        })
        .expect("counting global namespaces");
    assert_eq!(sql::int(&globals[0], 0).expect("count"), 2);

    // Tags: create, leave alone, fill in, update.
    assert_eq!(
        store
            .upsert_tag(registry, &write("app", "latest", "sha256:aa"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert_eq!(
        store
            .upsert_tag(registry, &write("ns/app", "v1", "sha256:bb"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert_eq!(
        store
            .upsert_tag(registry, &write("ns/app", "v2", "sha256:bb"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert_eq!(
        store
            .upsert_tag(registry, &write("ns/app", "v3", "sha256:cc"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert_eq!(
        store
            .upsert_tag(registry, &write("a/b/c", "v1", "sha256:dd"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert_eq!(
        store
            .upsert_tag(other_registry, &write("app", "latest", "sha256:ee"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert!(store
        .upsert_tag(registry, &write("/bad", "v1", "sha256:ff"), NOW)
        .is_err());

    assert_eq!(
        store.repositories(registry).expect("repositories"),
        vec!["a/b/c", "app", "ns/app"]
    );
    assert_eq!(
        store.repositories(other_registry).expect("repositories"),
        vec!["app"]
    );

    let mut filled = write("app", "latest", "sha256:aa");
    filled.image_id = "1234".to_string();
    filled.size = Some(4096);
    filled.platforms = Some(r#"[{"os":"linux","architecture":"amd64"}]"#.to_string());
    assert_eq!(
        store.upsert_tag(registry, &filled, NOW + 1).unwrap(),
        TagChange::Unchanged
    );
    // An unknown value never replaces a known one for the same digest.
    assert_eq!(
        store
            .upsert_tag(registry, &write("app", "latest", "sha256:aa"), NOW + 2)
            .unwrap(),
        TagChange::Unchanged
    );
    let app = store.tags(registry, Some("app")).expect("tags");
    assert_eq!(app.len(), 1);
    assert_eq!(app[0].repository, "app");
    assert_eq!(app[0].tag, "latest");
    assert_eq!(app[0].digest, "sha256:aa");
    assert_eq!(app[0].image_id, "1234");
    assert_eq!(
        app[0].media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(app[0].size, Some(4096));
    assert_eq!(app[0].scanned, 0);
    assert_eq!(app[0].pulled_at, None);
    assert_eq!(app[0].created_at, NOW);
    assert_eq!(
        app[0].updated_at, NOW,
        "filling in details is not an update"
    );

    // A changed digest resets the scan state.
    exec(
        store,
        "UPDATE tags SET scanned = 2, scan_attempts = 1, scanned_at = $1, scan_last_error = 'x' WHERE digest = $2",
        &[Value::Int(NOW), Value::Text("sha256:aa".into())],
    );
    assert_eq!(store.tags(registry, Some("app")).unwrap()[0].scanned, 2);
    let mut repushed = write("app", "latest", "sha256:a2");
    repushed.size = Some(10);
    assert_eq!(
        store.upsert_tag(registry, &repushed, NOW + 100).unwrap(),
        TagChange::Updated
    );
    let app = store.tags(registry, Some("app")).expect("tags");
    assert_eq!(app[0].digest, "sha256:a2");
    assert_eq!(app[0].scanned, 0);
    assert_eq!(app[0].size, Some(10));
    assert_eq!(app[0].image_id, "");
    assert_eq!(app[0].created_at, NOW);
    assert_eq!(app[0].updated_at, NOW + 100);
    let scan_columns = store
        .tx(|conn| {
            conn.query(
                "SELECT scan_attempts, scanned_at, scan_last_error, platforms FROM tags WHERE digest = 'sha256:a2'",
                &[],
            )
        })
        .expect("reading scan columns");
    assert_eq!(
        scan_columns[0],
        vec![Value::Int(0), Value::Null, Value::Null, Value::Null]
    );

    let all_tags = store.tags(registry, None).expect("tags");
    let names: Vec<(String, String)> = all_tags
        .iter()
        .map(|tag| (tag.repository.clone(), tag.tag.clone()))
        .collect();
    let expected = [
        ("a/b/c", "v1"),
        ("app", "latest"),
        ("ns/app", "v1"),
        ("ns/app", "v2"),
        ("ns/app", "v3"),
    ];
    assert_eq!(
        names,
        expected.map(|(repository, tag)| (repository.to_string(), tag.to_string()))
    );
    assert!(store
        .tags(registry, Some("no/such"))
        .expect("tags")
        .is_empty());
    assert_eq!(
        store.tags(other_registry, None).expect("tags")[0].digest,
        "sha256:ee"
    );

    // Pulls: pulled_at only moves forward.
    assert!(store
        .record_pull(registry, "ns/app", "v1", NOW + 1000)
        .expect("record_pull"));
    assert!(store
        .record_pull(registry, "ns/app", "v1", NOW + 500)
        .expect("record_pull"));
    assert_eq!(
        store.tags(registry, Some("ns/app")).unwrap()[0].pulled_at,
        Some(NOW + 1000)
    );
    assert!(store
        .record_pull(registry, "ns/app", "v1", NOW + 2000)
        .expect("record_pull"));
    let ns_app = store.tags(registry, Some("ns/app")).unwrap();
    assert_eq!(ns_app[0].pulled_at, Some(NOW + 2000));
    assert_eq!(ns_app[1].pulled_at, None);
    assert!(!store
        .record_pull(registry, "ns/app", "nope", NOW)
        .expect("record_pull"));
    assert!(!store
        .record_pull(registry, "no/such", "v1", NOW)
        .expect("record_pull"));

    // Queue depths.
    exec(
        store,
        "INSERT INTO registry_events (event_id, status, action, repository, data, created_at, updated_at) \
         VALUES ('e1', 2, 'push', 'app', '{}', $1, $1), ('e2', 2, 'push', 'app', '{}', $1, $1), \
         ('e3', 0, 'pull', 'app', '{}', $1, $1), ('e4', 3, 'push', 'app', '{}', $1, $1)",
        &[Value::Int(NOW)],
    );
    exec(
        store,
        "UPDATE tags SET scanned = 1 WHERE digest = 'sha256:dd'",
        &[],
    );
    let queues = store.queue_counts().expect("queue_counts");
    let words = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs
            .iter()
            .map(|(word, n)| (word.to_string(), *n))
            .collect()
    };
    assert_eq!(
        queues.events,
        words(&[("done", 1), ("progress", 0), ("fresh", 2), ("failed", 1)])
    );
    assert_eq!(
        queues.tags_by_scan,
        words(&[("none", 5), ("working", 1), ("done", 0), ("failed", 0)])
    );
    assert_eq!(queues.repositories, 4);
    assert_eq!(queues.tags, 6);

    // Deletes: by digest (every tag at it), by name, and the emptied repository goes.
    assert_eq!(
        store
            .delete_tags_by_digest(registry, "ns/app", "sha256:bb")
            .expect("delete_tags_by_digest"),
        2
    );
    assert_eq!(
        store
            .delete_tags_by_digest(registry, "ns/app", "sha256:bb")
            .expect("delete_tags_by_digest"),
        0
    );
    assert_eq!(
        store.repositories(registry).unwrap(),
        vec!["a/b/c", "app", "ns/app"]
    );
    assert!(store
        .delete_tag(registry, "ns/app", "v3")
        .expect("delete_tag"));
    assert!(!store
        .delete_tag(registry, "ns/app", "v3")
        .expect("delete_tag"));
    assert_eq!(store.repositories(registry).unwrap(), vec!["a/b/c", "app"]);
    assert_eq!(
        store
            .delete_tags_by_digest(registry, "a/b/c", "sha256:dd")
            .expect("delete_tags_by_digest"),
        1
    );
    assert_eq!(store.repositories(registry).unwrap(), vec!["app"]);
    assert_eq!(
        store
            .delete_tags_by_digest(registry, "no/such", "sha256:dd")
            .expect("delete_tags_by_digest"),
        0
    );
    assert!(!store
        .delete_tag(registry, "no/such", "v1")
        .expect("delete_tag"));
    assert_eq!(
        store.repositories(other_registry).unwrap(),
        vec!["app"],
        "other registry untouched"
    );
    // A repository can come back after it was emptied.
    assert_eq!(
        store
            .upsert_tag(registry, &write("ns/app", "v1", "sha256:bb"), NOW)
            .unwrap(),
        TagChange::Created
    );
    assert_eq!(store.repositories(registry).unwrap(), vec!["app", "ns/app"]);
    let queues = store.queue_counts().expect("queue_counts");
    assert_eq!((queues.repositories, queues.tags), (3, 3));
    scan_chapter(store);
    scan_report_chapter(store);
    sync_chapter(store, dialect);
}

fn repository_sync(
    repository: &str,
    upserts: Vec<TagWrite>,
    delete_tags: &[&str],
) -> RepositorySync {
    RepositorySync {
        repository: repository.to_string(),
        upserts,
        delete_tags: delete_tags.iter().map(|tag| tag.to_string()).collect(),
        delete_repository: false,
    }
}

fn applied(
    created: usize,
    updated: usize,
    tags_deleted: usize,
    repository_deleted: bool,
) -> SyncApplied {
    SyncApplied::Applied {
        created,
        updated,
        tags_deleted,
        repository_deleted,
    }
}

/// Sync passes: which repositories have events a pass must not undo, the
/// batched per-repository apply (busy check inside the transaction, digest
/// changes reset the scan, emptied repositories go), and the advisory lock.
fn sync_chapter(store: &SqlStore, dialect: Dialect) {
    let registry = store.ensure_registry("sync.example:5000").unwrap();
    exec(store, "DELETE FROM registry_events", &[]);
    let since = NOW + 1_000;
    // Pending events count whatever their age, others only from the start
    // mark on; pulls never, failed events never.
    exec(
        store,
        "INSERT INTO registry_events (event_id, status, action, repository, data, created_at, updated_at) \
         VALUES ('s1', 2, 'push', 'sync/fresh', '{}', $1, $1), ('s2', 1, 'delete', 'sync/progress', '{}', $1, $1), \
         ('s3', 0, 'push', 'sync/old', '{}', $1, $1), ('s4', 0, 'push', 'sync/new', '{}', $2, $2), \
         ('s5', 2, 'pull', 'sync/pulled', '{}', $2, $2), ('s6', 3, 'push', 'sync/failed', '{}', $1, $1)",
        &[Value::Int(NOW), Value::Int(since)],
    );
    let busy: Vec<String> = store
        .repositories_with_recent_events(since)
        .expect("repositories_with_recent_events")
        .into_iter()
        .collect();
    assert_eq!(busy, vec!["sync/fresh", "sync/new", "sync/progress"]);

    for (repository, tag, digest) in [
        ("sync/app", "v1", "sha256:s1"),
        ("sync/app", "v2", "sha256:s2"),
        ("sync/app", "v3", "sha256:s3"),
        ("sync/gone", "a", "sha256:g1"),
        ("sync/gone", "b", "sha256:g2"),
        ("sync/emptied", "only", "sha256:e1"),
        ("sync/fresh", "v1", "sha256:f1"),
    ] {
        store
            .upsert_tag(registry, &write(repository, tag, digest), NOW)
            .unwrap();
    }
    exec(
        store,
        "UPDATE tags SET scanned = 2 WHERE digest = 'sha256:s1'",
        &[],
    );
    let gone = RepositorySync {
        delete_repository: true,
        ..repository_sync("sync/gone", Vec::new(), &[])
    };
    let never_existed = RepositorySync {
        delete_repository: true,
        ..repository_sync("sync/never", Vec::new(), &[])
    };
    let results = store
        .apply_repository_syncs(
            registry,
            &[
                repository_sync(
                    "sync/app",
                    vec![
                        write("sync/app", "v1", "sha256:s1-new"),
                        write("sync/app", "v4", "sha256:s4"),
                        write("sync/app", "v5", "sha256:s5"),
                    ],
                    &["v3", "not-there"],
                ),
                repository_sync(
                    "sync/a/b/c",
                    vec![write("sync/a/b/c", "x", "sha256:x")],
                    &[],
                ),
                repository_sync(
                    "sync/fresh",
                    vec![write("sync/fresh", "v1", "sha256:f2")],
                    &["v1"],
                ),
                gone,
                never_existed,
                repository_sync("sync/emptied", Vec::new(), &["only"]),
            ],
            since,
            NOW + 2_000,
        )
        .expect("apply_repository_syncs");
    assert_eq!(
        results,
        vec![
            applied(2, 1, 1, false),
            applied(1, 0, 0, false),
            SyncApplied::Busy,
            applied(0, 0, 2, true),
            applied(0, 0, 0, false),
            applied(0, 0, 1, true),
        ]
    );
    let app = store.tags(registry, Some("sync/app")).unwrap();
    let names: Vec<(&str, &str, i64)> = app
        .iter()
        .map(|tag| (tag.tag.as_str(), tag.digest.as_str(), tag.scanned))
        .collect();
    assert_eq!(
        names,
        vec![
            ("v1", "sha256:s1-new", 0),
            ("v2", "sha256:s2", 0),
            ("v4", "sha256:s4", 0),
            ("v5", "sha256:s5", 0),
        ]
    );
    assert_eq!(
        app[0].updated_at,
        NOW + 2_000,
        "a digest change touches the row"
    );
    assert_eq!(app[1].updated_at, NOW, "an unchanged tag is not written");
    assert_eq!(
        store.tags(registry, Some("sync/fresh")).unwrap()[0].digest,
        "sha256:f1"
    );
    assert_eq!(
        store.repositories(registry).unwrap(),
        vec!["sync/a/b/c", "sync/app", "sync/fresh"]
    );

    // One bad entry rolls back the whole batch; the caller retries one by one.
    assert!(store
        .apply_repository_syncs(
            registry,
            &[
                repository_sync(
                    "sync/batched",
                    vec![write("sync/batched", "v1", "sha256:b1")],
                    &[]
                ),
                repository_sync("/bad", vec![write("/bad", "v1", "sha256:b2")], &[]),
            ],
            since,
            NOW + 3_000,
        )
        .is_err());
    assert!(store
        .tags(registry, Some("sync/batched"))
        .unwrap()
        .is_empty());

    // The advisory lock: exclusive between sessions on PostgreSQL, free
    // again once dropped; SQLite's write lock needs nothing more.
    let held = store.try_advisory_lock(7).expect("try_advisory_lock");
    assert!(held.is_some());
    let second = store.try_advisory_lock(7).expect("try_advisory_lock again");
    assert_eq!(second.is_some(), dialect == Dialect::Sqlite);
    drop(second);
    drop(held);
    assert!(store
        .try_advisory_lock(7)
        .expect("try_advisory_lock after release")
        .is_some());
}

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

/// Per-scanner reports: a scanner that answered replaces only its own
/// results; one that failed keeps its results (stale), backs off and
/// fails for good at max_attempts; tags are done only when every enabled
/// scanner's report is current; a forgotten scanner holds nothing back.
fn scan_report_chapter(store: &SqlStore) {
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
            scanned: 2,
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
            scanned: 0,
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
        (tag.scanned, tag.attempts, tag.not_before, tag.scanned_at),
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
        ScanSettled::Settled { scanned: 3, .. }
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
    assert_eq!(state().state.scanned, 0);
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
    assert!(matches!(settled, ScanSettled::Settled { scanned: 2, .. }));
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

/// The scan lifecycle: candidates, claims, results, failures, leases,
/// rescans, re-pushes during a scan, counts and pruning.
fn scan_chapter(store: &SqlStore) {
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
            scanned: 2,
            vulnerabilities: 3
        }
    );
    let image = store
        .image_vulnerabilities(registry, "b/app", "1")
        .expect("image_vulnerabilities")
        .unwrap();
    assert_eq!(image.digest, "sha256:d1");
    assert_eq!(
        (image.state.scanned, image.state.scanned_at),
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
            scanned: 0,
            vulnerabilities: 0
        }
    );
    let state = store
        .image_vulnerabilities(registry, "b/app", "2")
        .unwrap()
        .unwrap()
        .state;
    assert_eq!(
        (state.scanned, state.attempts, state.last_error.as_deref()),
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
        3
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
        0
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
            scanned: 2,
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

#[test]
fn store_story_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    story(&sqlite_store(&dir), Dialect::Sqlite);
}

#[test]
fn store_story_postgres() {
    let database = TestDatabase::create();
    story(&postgres_store(&database), Dialect::Postgres);
}

#[test]
fn migrations_run_twice_are_a_no_op_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(&dir);
    assert_eq!(store.migrate().expect("migrating again"), Vec::<i64>::new());
    let reopened = SqlStore::new(Box::new(
        SqliteBackend::open(&dir.path().join("regkeeper.db")).unwrap(),
    ));
    assert_eq!(
        reopened.migrate().expect("migrating a reopened file"),
        Vec::<i64>::new()
    );
}

#[test]
fn migrations_run_twice_are_a_no_op_postgres() {
    let database = TestDatabase::create();
    let backend = PostgresBackend::connect(database.url(), None, 2).expect("connecting");
    let store = SqlStore::new(Box::new(backend));
    assert_eq!(store.migrate().expect("migrating"), vec![1, 2, 3, 4]);
    assert_eq!(store.migrate().expect("migrating again"), Vec::<i64>::new());
}

/// A database made by regkeeper 0.1 (migration 1 only) gets the later
/// migrations, and only those, on the next start.
fn upgrades_a_version_1_database(store: &SqlStore, index_names: &str) {
    let first = &regkeeper::store::migrations::MIGRATIONS[0];
    store
        .tx(|conn| {
            let schema = match conn.dialect() {
                regkeeper::store::Dialect::Sqlite => first.sqlite,
                regkeeper::store::Dialect::Postgres => first.postgres,
            };
            conn.execute_batch(schema)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); \
                 INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0);",
            )?;
            // As 0.1 recorded runs: one finished, one left running by a
            // daemon that was killed.
            conn.execute_batch(
                "INSERT INTO job_runs (job, handler, trigger, started_at, finished_at, outcome, counts) \
                 VALUES ('registry-sync', 'sync', 'schedule', 1000, 2000, 'ok', '{\"created\":1}'); \
                 INSERT INTO job_runs (job, handler, trigger, started_at, counts) \
                 VALUES ('registry-sync', 'sync', 'schedule', 5000, '{}');",
            )?;
            // A tag scanned by 0.1 (ids clear of the sequences' next values).
            conn.execute_batch(
                "INSERT INTO registries (id, name, hostname, created_at, updated_at) VALUES (1001, 'r', 'old.example:5000', 0, 0); \
                 INSERT INTO namespaces (id, registry_id, name, global, created_at, updated_at) VALUES (1001, 1001, 'ns', 0, 0, 0); \
                 INSERT INTO repositories (id, namespace_id, name, created_at, updated_at) VALUES (1001, 1001, 'app', 0, 0); \
                 INSERT INTO tags (repository_id, name, digest, scanned, scanned_at, created_at, updated_at) \
                 VALUES (1001, '1', 'sha256:old', 2, 5000, 0, 0); \
                 INSERT INTO vulnerabilities (id, name, scanner, created_at, updated_at) VALUES (1001, 'CVE-1', 'clair', 0, 0); \
                 INSERT INTO vulnerabilities (id, name, scanner, created_at, updated_at) VALUES (1002, 'CVE-2', 'clair', 0, 0); \
                 INSERT INTO scan_results (digest, vulnerability_id, scanner, created_at) VALUES ('sha256:old', 1001, 'clair', 4000); \
                 INSERT INTO scan_results (digest, vulnerability_id, scanner, created_at) VALUES ('sha256:old', 1002, 'clair', 4000);",
            )
        })
        .expect("making a version 1 database");
    assert_eq!(store.migrate().expect("upgrading"), vec![2, 3, 4]);

    // Runs of 0.1 read back without claimant or heartbeat; the one left
    // running is abandoned `abandon_after` after its start.
    let runs = store.recent_runs("registry-sync", 10).expect("recent_runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].outcome, Some(RunOutcome::Ok));
    assert_eq!(runs[1].counts, BTreeMap::from([("created".to_string(), 1)]));
    assert_eq!(
        (runs[0].claimant.clone(), runs[0].heartbeat_at),
        (None, None)
    );
    assert_eq!(runs[0].outcome, None);
    let abandoned = store
        .abandon_expired_runs(None, 5000 + 60_001, 60_000)
        .expect("abandon_expired_runs");
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].id, runs[0].id);
    assert_eq!(abandoned[0].finished_at, Some(5000));
    // New runs record their claimant and heartbeat in the upgraded table.
    let new_run = store
        .start_run(&run_by(
            "registry-sync",
            "host-c:3:0000000c",
            70_000,
            71_000,
        ))
        .expect("start_run");
    assert!(store
        .heartbeat_run(new_run, 70_500, 71_500)
        .expect("heartbeat_run"));
    assert_eq!(
        store.recent_runs("registry-sync", 1).expect("recent_runs")[0].heartbeat_at,
        Some(70_500)
    );

    // Its results became clair's current report, taken when the tag was
    // scanned; the tag stays done.
    assert_eq!(
        store.scan_reports("sha256:old").expect("scan_reports"),
        [store::ScanReport {
            scanner: "clair".into(),
            scanned_at: Some(5000),
            attempted_at: 5000,
            attempts: 0,
            last_error: None,
            not_before: None,
            failed: false,
        }]
    );
    let registry = store.ensure_registry("old.example:5000").unwrap();
    let image = store
        .image_vulnerabilities(registry, "ns/app", "1")
        .unwrap()
        .unwrap();
    assert_eq!((image.state.scanned, image.vulnerabilities.len()), (2, 2));
    let indexes = store
        .tx(|conn| conn.query(index_names, &[]))
        .expect("listing indexes");
    let names: Vec<String> = indexes
        .iter()
        .map(|row| sql::text(row, 0).expect("index name"))
        .collect();
    for index in [
        "registry_events_waiting",
        "registry_events_claimed",
        "job_runs_unfinished",
    ] {
        assert!(
            names.iter().any(|name| name == index),
            "{index} missing from {names:?}"
        );
    }
}

#[test]
fn upgrades_a_version_1_database_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteBackend::open(&dir.path().join("regkeeper.db")).expect("opening");
    upgrades_a_version_1_database(
        &SqlStore::new(Box::new(backend)),
        "SELECT name FROM sqlite_master WHERE type = 'index'",
    );
}

#[test]
fn upgrades_a_version_1_database_postgres() {
    let database = TestDatabase::create();
    let backend = PostgresBackend::connect(database.url(), None, 2).expect("connecting");
    upgrades_a_version_1_database(
        &SqlStore::new(Box::new(backend)),
        "SELECT indexname::text FROM pg_indexes WHERE tablename IN ('registry_events', 'job_runs')",
    );
}

/// Two daemons starting together must not both try to create the schema.
#[test]
fn concurrent_start_ups_migrate_once_postgres() {
    let database = TestDatabase::create();
    let config = database.config();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || store::open(&config, Duration::from_secs(30)))
        })
        .collect();
    for handle in handles {
        let store = handle.join().expect("thread").expect("opening");
        store.ping().expect("ping");
    }
}

#[test]
fn concurrent_start_ups_migrate_once_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = regkeeper::config::Database::Sqlite {
        path: dir.path().join("regkeeper.db"),
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || store::open(&config, Duration::from_secs(30)))
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .expect("thread")
            .expect("opening")
            .ping()
            .expect("ping");
    }
}

/// Two processes noticing the same expired runs at once (two daemons, or a
/// daemon and `regkeeper status`) record each exactly once between them,
/// without an error, and leave a run with a current heartbeat alone.
fn noticing_together_records_each_abandoned_run_once(
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
) {
    let mut expired: Vec<i64> = (0..20)
        .map(|n| {
            first
                .start_run(&run_by(
                    "race-job",
                    "host-d:4:0000000d",
                    NOW + n,
                    NOW + 1_000 + n,
                ))
                .expect("start_run")
        })
        .collect();
    let live = first
        .start_run(&run_by(
            "race-job",
            "host-e:5:0000000e",
            NOW,
            NOW + 1_000_000,
        ))
        .expect("start_run");
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let noticers: Vec<_> = [first.clone(), second]
        .into_iter()
        .map(|store| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut recorded = Vec::new();
                for _ in 0..5 {
                    recorded.extend(
                        store
                            .abandon_expired_runs(Some("race-job"), NOW + 5_000, 300_000)
                            .expect("abandon_expired_runs")
                            .into_iter()
                            .map(|run| run.id),
                    );
                }
                recorded
            })
        })
        .collect();
    let mut recorded: Vec<i64> = noticers
        .into_iter()
        .flat_map(|noticer| noticer.join().expect("noticer thread"))
        .collect();
    recorded.sort_unstable();
    expired.sort_unstable();
    assert_eq!(recorded, expired, "each expired run recorded exactly once");
    let runs = first.recent_runs("race-job", 100).expect("recent_runs");
    let live_run = runs
        .iter()
        .find(|run| run.id == live)
        .expect("the live run");
    assert_eq!(live_run.outcome, None);
    assert_eq!(live_run.finished_at, None);
    assert!(runs
        .iter()
        .filter(|run| run.id != live)
        .all(|run| run.outcome == Some(RunOutcome::Abandoned)));
}

#[test]
fn noticing_together_records_each_abandoned_run_once_postgres() {
    let database = TestDatabase::create();
    let first: Arc<dyn Store> = Arc::new(postgres_store(&database));
    let second: Arc<dyn Store> = Arc::new(postgres_store(&database));
    noticing_together_records_each_abandoned_run_once(first, second);
}

#[test]
fn noticing_together_records_each_abandoned_run_once_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = regkeeper::config::Database::Sqlite {
        path: dir.path().join("regkeeper.db"),
    };
    let first = store::open(&config, Duration::from_secs(5)).expect("opening the first store");
    let second = store::open(&config, Duration::from_secs(5)).expect("opening the second store");
    noticing_together_records_each_abandoned_run_once(first, second);
}

/// The daemon and a `regkeeper --once` share one SQLite file.
#[test]
fn two_stores_on_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = regkeeper::config::Database::Sqlite {
        path: dir.path().join("regkeeper.db"),
    };
    let first = store::open(&config, Duration::from_secs(5)).expect("opening the first store");
    let second = store::open(&config, Duration::from_secs(5)).expect("opening the second store");
    let registry = first
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    assert_eq!(
        second
            .ensure_registry("127.0.0.1:5000")
            .expect("ensure_registry"),
        registry
    );

    let writers: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .enumerate()
        .map(|(writer, store): (usize, Arc<dyn Store>)| {
            std::thread::spawn(move || {
                for n in 0..50 {
                    let tag = write(
                        &format!("ns/repo{writer}"),
                        &format!("t{n}"),
                        &format!("sha256:{writer}{n}"),
                    );
                    store.upsert_tag(registry, &tag, NOW).expect("upsert_tag");
                    store.queue_counts().expect("queue_counts");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    assert_eq!(first.queue_counts().unwrap().tags, 100);
    assert_eq!(second.tags(registry, Some("ns/repo0")).unwrap().len(), 50);
    assert_eq!(
        second.repositories(registry).unwrap(),
        vec!["ns/repo0", "ns/repo1"]
    );
}

#[test]
fn open_gives_up_after_the_wait_with_the_cause() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = regkeeper::config::Database::Postgres {
        url: format!("postgres://regkeeper@127.0.0.1:{port}/regkeeper"),
        password: Some("s3cret-password".to_string()),
        pool_size: 2,
    };
    let error = match store::open(&config, Duration::from_millis(600)) {
        Ok(_) => panic!("opening a database nobody serves succeeded"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("did not answer within 600ms"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("connecting to"), "{error}");
    assert!(!error.contains("s3cret-password"), "{error}");
}

/// A SQLite file is not a server that may still be starting: a bad path fails
/// at once instead of retrying for the whole wait.
#[test]
fn open_sqlite_in_a_missing_directory_fails_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing").join("regkeeper.db");
    let config = regkeeper::config::Database::Sqlite { path: path.clone() };
    let error = match store::open(&config, Duration::from_secs(24 * 3600)) {
        Ok(_) => panic!("opening {} succeeded", path.display()),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains(&format!("opening sqlite database {}", path.display())),
        "{error}"
    );
}

fn event(id: &str, repository: &str) -> NewEvent {
    NewEvent {
        event_id: id.to_string(),
        action: "push".to_string(),
        repository: repository.to_string(),
        data: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn claim(store: &SqlStore, claimant: &str, now: i64, limit: usize) -> Vec<String> {
    store
        .claim_events(&EventClaim {
            claimant: claimant.to_string(),
            now,
            expired_before: NOW - 60_000,
            limit,
        })
        .expect("claim_events")
        .into_iter()
        .map(|event| event.event_id)
        .collect()
}

fn claimed_ids(store: &SqlStore, claimant: &str) -> BTreeMap<String, i64> {
    store
        .tx(|conn| {
            conn.query(
                "SELECT event_id, id FROM registry_events WHERE claimant = $1 AND status = 1",
                &[Value::Text(claimant.to_string())],
            )
        })
        .expect("reading claims")
        .into_iter()
        .map(|row| match (&row[0], &row[1]) {
            (Value::Text(event_id), Value::Int(id)) => (event_id.clone(), *id),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

fn done(id: i64, effect: EventEffect) -> AppliedEvent {
    AppliedEvent { id, effect }
}

/// The event queue chapter: insert, claim under leases in per-repository
/// order, apply with effects, retry, release, fail, requeue, prune.
fn event_story(store: &SqlStore) {
    let registry = store
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    let inserted = store
        .insert_events(
            &[
                event("a1", "a"),
                event("a2", "a"),
                event("b1", "ns/b"),
                event("c1", "c"),
                event("a3", "a"),
            ],
            NOW,
        )
        .expect("insert_events");
    assert_eq!(inserted, 5);
    // A redelivery is not a new event.
    let inserted = store
        .insert_events(
            &[event("a1", "a"), event("b1", "ns/b"), event("d1", "d")],
            NOW,
        )
        .expect("insert_events");
    assert_eq!(inserted, 1);

    // Arrival order, and a repository's later events wait for its earlier ones.
    assert_eq!(claim(store, "one", NOW, 2), ["a1", "a2"]);
    assert_eq!(claim(store, "two", NOW, 10), ["b1", "c1", "d1"]);
    assert!(
        claim(store, "three", NOW, 10).is_empty(),
        "a3 waits behind a1 and a2"
    );

    let one = claimed_ids(store, "one");
    let upsert = EventEffect::Upsert(TagWrite {
        size: Some(10),
        ..write("a", "t1", "sha256:x1")
    });
    let applied = store
        .apply_events(
            registry,
            "one",
            &[
                done(one["a1"], upsert.clone()),
                done(one["a2"], EventEffect::Nothing),
            ],
            NOW,
        )
        .expect("apply_events");
    assert_eq!(applied, 2);
    assert_eq!(
        store.tags(registry, Some("a")).expect("tags")[0].digest,
        "sha256:x1"
    );
    // Applying again, or by someone who does not hold the claim, does nothing.
    assert_eq!(
        store
            .apply_events(registry, "one", &[done(one["a1"], upsert)], NOW)
            .expect("apply_events"),
        0
    );

    // A transient failure: back to fresh after its backoff, still in order.
    assert_eq!(claim(store, "one", NOW, 10), ["a3"]);
    let a3 = claimed_ids(store, "one")["a3"];
    assert!(store
        .retry_event(a3, "one", "registry down", NOW + 1000, NOW)
        .expect("retry_event"));
    assert!(
        !store
            .retry_event(a3, "one", "again", NOW + 1000, NOW)
            .expect("retry_event"),
        "not claimed any more"
    );
    assert!(
        claim(store, "one", NOW + 999, 10).is_empty(),
        "backoff not over"
    );
    assert_eq!(claim(store, "one", NOW + 1000, 10), ["a3"]);
    assert!(!store
        .fail_event(a3, "two", "not my claim", NOW)
        .expect("fail_event"));
    assert!(store
        .fail_event(a3, "one", "manifest gone", NOW + 2000)
        .expect("fail_event"));

    // Held-back events are released without an attempt; failures are listed.
    let two = claimed_ids(store, "two");
    assert_eq!(
        store
            .release_events(&[two["c1"], two["d1"]], "two")
            .expect("release_events"),
        2
    );
    assert!(store
        .fail_event(two["b1"], "two", "malformed", NOW + 1000)
        .expect("fail_event"));
    let failed = store.failed_events(10).expect("failed_events");
    let summary: Vec<(&str, &str, i64, &str)> = failed
        .iter()
        .map(|event| {
            (
                event.event_id.as_str(),
                event.repository.as_str(),
                event.attempts,
                event.last_error.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a3", "a", 2, "manifest gone"),
            ("b1", "ns/b", 1, "malformed")
        ]
    );
    assert_eq!(store.failed_events(1).expect("failed_events").len(), 1);
    assert_eq!(claim(store, "one", NOW, 10), ["c1", "d1"]);
    let queues = store.queue_counts().expect("queue_counts");
    assert_eq!(queues.events.get("failed"), Some(&2));
    assert_eq!(queues.events.get("progress"), Some(&2));

    // --retry-failed puts failed events back with no attempts.
    assert_eq!(
        store.retry_failed_events(NOW).expect("retry_failed_events"),
        2
    );
    assert!(store.failed_events(10).expect("failed_events").is_empty());
    let retried = store
        .claim_events(&EventClaim {
            claimant: "four".into(),
            now: NOW,
            expired_before: 0,
            limit: 10,
        })
        .expect("claim_events");
    let retried: Vec<(String, i64)> = retried
        .into_iter()
        .map(|event| (event.event_id, event.attempts))
        .collect();
    assert_eq!(retried, [("b1".to_string(), 0), ("a3".to_string(), 0)]);

    // Effects: pulls by tag and by digest (never backwards), deletes.
    store
        .upsert_tag(registry, &write("a", "t2", "sha256:x2"), NOW)
        .expect("upsert_tag");
    store
        .upsert_tag(registry, &write("a", "t3", "sha256:x1"), NOW)
        .expect("upsert_tag");
    let four = claimed_ids(store, "four");
    let pulls = [
        done(
            four["a3"],
            EventEffect::Pull {
                repository: "a".into(),
                tag: Some("t1".into()),
                digest: None,
                at: NOW + 50,
            },
        ),
        done(
            four["b1"],
            EventEffect::Pull {
                repository: "a".into(),
                tag: None,
                digest: Some("sha256:x1".into()),
                at: NOW + 20,
            },
        ),
    ];
    assert_eq!(
        store
            .apply_events(registry, "four", &pulls, NOW)
            .expect("apply_events"),
        2
    );
    let pulled: Vec<(String, Option<i64>)> = store
        .tags(registry, Some("a"))
        .expect("tags")
        .into_iter()
        .map(|tag| (tag.tag, tag.pulled_at))
        .collect();
    assert_eq!(
        pulled,
        [
            ("t1".to_string(), Some(NOW + 50)),
            ("t2".to_string(), None),
            ("t3".to_string(), Some(NOW + 20))
        ]
    );
    store
        .insert_events(&[event("a4", "a"), event("a5", "a"), event("a6", "a")], NOW)
        .expect("insert_events");
    assert_eq!(claim(store, "five", NOW, 10), ["a4", "a5", "a6"]);
    let five = claimed_ids(store, "five");
    let deletes = [
        done(
            five["a4"],
            EventEffect::DeleteDigest {
                repository: "a".into(),
                digest: "sha256:x1".into(),
            },
        ),
        done(
            five["a5"],
            EventEffect::DeleteTag {
                repository: "a".into(),
                tag: "t1".into(),
            },
        ),
        done(
            five["a6"],
            EventEffect::DeleteTag {
                repository: "a".into(),
                tag: "t2".into(),
            },
        ),
    ];
    assert_eq!(
        store
            .apply_events(registry, "five", &deletes, NOW)
            .expect("apply_events"),
        3
    );
    assert!(
        store
            .repositories(registry)
            .expect("repositories")
            .is_empty(),
        "emptied repository removed"
    );

    // Pruning done events by age.
    let counts = store.queue_counts().expect("queue_counts");
    let done_count = counts.events.get("done").copied().unwrap_or(0);
    assert_eq!(done_count, 7);
    assert_eq!(
        store.prune_done_events(NOW - 1).expect("prune_done_events"),
        0
    );
    assert_eq!(
        store.prune_done_events(NOW + 1).expect("prune_done_events"),
        7
    );
    let counts = store.queue_counts().expect("queue_counts");
    assert_eq!(counts.events.get("done"), Some(&0));
    assert_eq!(
        counts.events.get("progress"),
        Some(&2),
        "c1 and d1 stay claimed by one"
    );

    // Expired leases are taken again, and the old claimant can no longer
    // complete them.
    let one = claimed_ids(store, "one");
    assert!(claim(store, "six", NOW, 10).is_empty(), "the lease is live");
    let taken = store
        .claim_events(&EventClaim {
            claimant: "six".into(),
            now: NOW + 10,
            expired_before: NOW + 1,
            limit: 10,
        })
        .expect("claim_events");
    let taken: Vec<&str> = taken.iter().map(|event| event.event_id.as_str()).collect();
    assert_eq!(taken, ["c1", "d1"]);
    assert_eq!(
        store
            .apply_events(
                registry,
                "one",
                &[done(one["c1"], EventEffect::Nothing)],
                NOW
            )
            .expect("apply_events"),
        0
    );
    assert_eq!(
        store
            .release_events(&[one["d1"]], "one")
            .expect("release_events"),
        0
    );
}

/// Effects of one batch of events, in arrival order: pushes of a tag twice
/// (new, then filled in), a new namespace, a pull between pushes, a re-push
/// with a new digest of a scanned tag, a per-tag delete emptying a
/// repository, and a push re-creating it.
fn mixed_batch() -> Vec<EventEffect> {
    let with = |repository: &str, tag: &str, digest: &str, image_id: &str, size: Option<i64>| {
        EventEffect::Upsert(TagWrite {
            image_id: image_id.to_string(),
            size,
            ..write(repository, tag, digest)
        })
    };
    vec![
        with("m", "t1", "sha256:d1", "", None),
        with("m", "t1", "sha256:d1", "img1", Some(5)),
        with("ns/n", "t1", "sha256:d2", "img2", Some(6)),
        EventEffect::Pull {
            repository: "m".into(),
            tag: Some("t1".into()),
            digest: None,
            at: NOW + 5,
        },
        EventEffect::Nothing,
        with("m", "t9", "sha256:d5", "img5", Some(7)),
        with("m", "t1", "sha256:d3", "img3", Some(8)),
        EventEffect::DeleteTag {
            repository: "ns/n".into(),
            tag: "t1".into(),
        },
        with("ns/n", "t2", "sha256:d4", "img4", Some(9)),
        with("m", "t2", "sha256:d1", "img1", Some(5)),
        with("m", "t1", "sha256:d3", "", None),
    ]
}

/// The tags of a registry without row ids and times.
fn tag_rows(store: &SqlStore, registry: i64) -> Vec<String> {
    let mut rows: Vec<String> = store
        .tags(registry, None)
        .expect("tags")
        .into_iter()
        .map(|tag| {
            format!(
                "{}:{} {} {} {:?} scanned={} pulled={:?}",
                tag.repository,
                tag.tag,
                tag.digest,
                tag.image_id,
                tag.size,
                tag.scanned,
                tag.pulled_at
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A batch applied at once leaves the same database as its events applied
/// one at a time, in order.
fn batch_story(store: &SqlStore) {
    let effects = mixed_batch();
    let mut results = Vec::new();
    for (registry_name, at_once) in [("batch.example:5000", true), ("single.example:5000", false)] {
        let registry = store
            .ensure_registry(registry_name)
            .expect("ensure_registry");
        store
            .upsert_tag(registry, &write("m", "t9", "sha256:d0"), NOW)
            .expect("upsert_tag");
        store
            .tx(|conn| conn.execute("UPDATE tags SET scanned = 2", &[]))
            .expect("marking scanned");
        let events: Vec<NewEvent> = (0..effects.len())
            .map(|index| event(&format!("{registry_name}-{index}"), "m"))
            .collect();
        store.insert_events(&events, NOW).expect("insert_events");
        let claimant = format!("claimant-{registry_name}");
        let claimed = store
            .claim_events(&EventClaim {
                claimant: claimant.clone(),
                now: NOW,
                expired_before: NOW - 60_000,
                limit: 100,
            })
            .expect("claim_events");
        assert_eq!(claimed.len(), effects.len());
        let applied: Vec<AppliedEvent> = claimed
            .iter()
            .zip(&effects)
            .map(|(claimed, effect)| done(claimed.id, effect.clone()))
            .collect();
        if at_once {
            assert_eq!(
                store
                    .apply_events(registry, &claimant, &applied, NOW + 10)
                    .expect("apply_events"),
                applied.len() as u64
            );
        } else {
            for event in &applied {
                assert_eq!(
                    store
                        .apply_events(registry, &claimant, std::slice::from_ref(event), NOW + 10)
                        .expect("apply_events"),
                    1
                );
            }
        }
        results.push(tag_rows(store, registry));
    }
    assert_eq!(
        results[0],
        [
            "m:t1 sha256:d3 img3 Some(8) scanned=0 pulled=Some(1700000000005)",
            "m:t2 sha256:d1 img1 Some(5) scanned=0 pulled=None",
            "m:t9 sha256:d5 img5 Some(7) scanned=0 pulled=None",
            "ns/n:t2 sha256:d4 img4 Some(9) scanned=0 pulled=None",
        ]
    );
    assert_eq!(results[0], results[1], "at once and one at a time differ");
}

/// `known_manifests` answers from complete tag rows of the registry only.
fn known_manifests_story(store: &SqlStore) {
    let registry = store
        .ensure_registry("known.example:5000")
        .expect("ensure_registry");
    let elsewhere = store
        .ensure_registry("other.example:5000")
        .expect("ensure_registry");
    let complete = TagWrite {
        image_id: "img1".into(),
        size: Some(5),
        ..write("a", "t1", "sha256:d1")
    };
    let index = TagWrite {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        size: Some(9),
        platforms: Some(r#"[{"os":"linux","architecture":"amd64"}]"#.into()),
        ..write("ns/b", "t1", "sha256:d3")
    };
    for (registry_id, tag) in [
        (registry, complete.clone()),
        (registry, write("a", "t2", "sha256:d2")),
        (registry, index.clone()),
        (
            registry,
            TagWrite {
                size: Some(4),
                ..write("a", "t3", "sha256:d6")
            },
        ),
        (
            elsewhere,
            TagWrite {
                image_id: "img4".into(),
                size: Some(1),
                ..write("a", "t1", "sha256:d4")
            },
        ),
    ] {
        store
            .upsert_tag(registry_id, &tag, NOW)
            .expect("upsert_tag");
    }
    let digests: Vec<String> = [
        "sha256:d1",
        "sha256:d2",
        "sha256:d3",
        "sha256:d4",
        "sha256:d5",
        "sha256:d6",
    ]
    .iter()
    .map(|digest| digest.to_string())
    .collect();
    let known = store
        .known_manifests(registry, &digests)
        .expect("known_manifests");
    assert_eq!(
        known.keys().collect::<Vec<_>>(),
        ["sha256:d1", "sha256:d3"],
        "no size, no config digest or platforms, or another registry: not known"
    );
    assert_eq!(
        known["sha256:d1"],
        KnownManifest {
            image_id: "img1".into(),
            media_type: complete.media_type.clone(),
            size: 5,
            platforms: None,
        }
    );
    assert_eq!(known["sha256:d3"].platforms, index.platforms);
    assert!(store
        .known_manifests(registry, &[])
        .expect("known_manifests")
        .is_empty());
}

#[test]
fn known_manifests_story_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    known_manifests_story(&sqlite_store(&dir));
}

#[test]
fn known_manifests_story_postgres() {
    let database = TestDatabase::create();
    known_manifests_story(&postgres_store(&database));
}

#[test]
fn batch_story_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    batch_story(&sqlite_store(&dir));
}

#[test]
fn batch_story_postgres() {
    let database = TestDatabase::create();
    batch_story(&postgres_store(&database));
}

#[test]
fn event_story_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    event_story(&sqlite_store(&dir));
}

#[test]
fn event_story_postgres() {
    let database = TestDatabase::create();
    event_story(&postgres_store(&database));
}

/// A database that refuses the first connection and answers the next: start-up
/// retries instead of giving up. A relay in front of the test cluster drops
/// its first connection, then forwards.
#[test]
fn open_waits_for_the_database_to_answer() {
    use std::io::copy;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let database = TestDatabase::create();
    let mut url = url::Url::parse(database.url()).expect("database url");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let relay = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
    url.set_port(Some(relay.local_addr().unwrap().port()))
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let relay_accepted = accepted.clone();
    std::thread::spawn(move || {
        for client in relay.incoming() {
            let Ok(client) = client else { continue };
            if relay_accepted.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || copy(&mut client_read, &mut server_write));
            let (mut server_read, mut client_write) = (server, client);
            std::thread::spawn(move || copy(&mut server_read, &mut client_write));
        }
    });

    let config = regkeeper::config::Database::Postgres {
        url: url.to_string(),
        password: None,
        pool_size: 2,
    };
    let store =
        store::open(&config, Duration::from_secs(120)).expect("opening after a refused attempt");
    store.ping().expect("ping through the relay");
    assert!(
        accepted.load(Ordering::SeqCst) >= 2,
        "the first attempt was refused, a later one answered"
    );
}
