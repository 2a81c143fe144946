//! Migrations: run twice they do nothing, a 0.1 database is upgraded in
//! place, and daemons starting together migrate once; `schema_state` names
//! what is still to apply.

use std::collections::BTreeMap;
use std::time::Duration;

use regkeeper::store::migrations::SchemaState;
use regkeeper::store::sql::{self, SqlStore};
use regkeeper::store::{self, RunOutcome, Store};
use regkeeper_test_support::{Backend, TestStore};

use crate::run_by;

/// Migrating a migrated database, or the same database from another
/// store, applies nothing.
fn migrations_run_twice_are_a_no_op(backend: Backend) {
    let database = TestStore::unmigrated(backend);
    assert_eq!(
        database.schema_state().expect("schema_state"),
        SchemaState::Pending(vec![1, 2, 3, 4, 5, 6])
    );
    assert_eq!(
        database.migrate().expect("migrating"),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        database.schema_state().expect("schema_state"),
        SchemaState::Current
    );
    assert_eq!(
        database.migrate().expect("migrating again"),
        Vec::<i64>::new()
    );
    assert_eq!(
        database
            .another()
            .migrate()
            .expect("migrating from another store"),
        Vec::<i64>::new()
    );
}

/// A database made by regkeeper 0.1 (migration 1 only) gets the later
/// migrations, and only those, on the next start.
fn upgrade_on(store: &SqlStore, index_names: &str) {
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
    assert_eq!(
        store.schema_state().expect("schema_state"),
        SchemaState::Pending(vec![2, 3, 4, 5, 6])
    );
    assert_eq!(store.migrate().expect("upgrading"), vec![2, 3, 4, 5, 6]);

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
    assert_eq!(
        (image.state.scanned.code(), image.vulnerabilities.len()),
        (2, 2)
    );
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

fn upgrades_a_version_1_database(backend: Backend) {
    let index_names = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index'",
        Backend::Postgres => {
            "SELECT indexname::text FROM pg_indexes WHERE tablename IN ('registry_events', 'job_runs')"
        }
    };
    upgrade_on(&TestStore::unmigrated(backend), index_names);
}

/// Two daemons starting together must not both try to create the schema.
fn concurrent_start_ups_migrate_once(backend: Backend) {
    let database = TestStore::unmigrated(backend);
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

regkeeper_test_support::both_backends!(
    migrations_run_twice_are_a_no_op,
    upgrades_a_version_1_database,
    concurrent_start_ups_migrate_once,
);
