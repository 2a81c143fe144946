//! The store contract: one story that calls every `Store` method, run with
//! the same assertions on SQLite and on a real PostgreSQL server (started by
//! `scripts/test.sh`). Every method added to the trait gets a chapter here,
//! so the two databases cannot drift apart unnoticed. The story's chapters
//! and the stories and tests of their own live in one module per topic.

mod events;
mod gc;
mod migrations;
mod open;
mod runs;
mod scans;
mod sync;
mod tags;

use regkeeper_test_support as support;

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{Dialect, NewRun, Store, TagWrite, Value};
use support::{Backend, TestStore};

/// The story's clock: every time it writes is relative to this.
const NOW: i64 = 1_700_000_000_000;

/// A tag write of `repository:tag` at `digest` with nothing else known.
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

/// A run of `job` by one daemon, started at `started_at`, expiring a minute later.
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

/// Raw SQL for state no trait method writes yet (scan progress, events).
fn exec(store: &SqlStore, statement: &str, params: &[Value]) {
    store
        .tx(|conn| conn.execute(statement, params))
        .expect(statement);
}

/// The story: its chapters run in order on one database, each building on
/// what the ones before left (the queue counts see every chapter's rows).
fn story(store: &SqlStore, dialect: Dialect) {
    assert_eq!(store.dialect(), dialect);
    store.ping().expect("ping");
    transactions_chapter(store);
    runs::chapter(store);
    runs::liveness_chapter(store);
    tags::chapter(store);
    scans::chapter(store);
    scans::report_chapter(store);
    sync::chapter(store, dialect);
    gc::chapter(store);
}

/// Transactions: an error rolls back everything done in it, and the
/// connection stays usable after a failed statement.
fn transactions_chapter(store: &SqlStore) {
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
}

fn store_story(backend: Backend) {
    story(&TestStore::new(backend), backend.dialect());
}

support::both_backends!(store_story);
