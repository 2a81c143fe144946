//! Sync passes: busy repositories, the batched per-repository apply and
//! the advisory lock.

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{Dialect, RepositorySync, Store, SyncApplied, TagWrite, Value};

use crate::{exec, write, NOW};

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
pub(crate) fn chapter(store: &SqlStore, dialect: Dialect) {
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
        .map(|tag| (tag.tag.as_str(), tag.digest.as_str(), tag.scanned.code()))
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

    // A batch as a first pass writes it, in a few statements: new
    // namespaces and the global one, more new tags than one INSERT holds,
    // next to a known repository's update, creation and deletion.
    let mut batch: Vec<RepositorySync> = (0..40)
        .map(|n| {
            let repository = if n % 4 == 0 {
                format!("batch{n}")
            } else {
                format!("batch-ns{}/app{n}", n % 3)
            };
            let upserts = (0..5)
                .map(|t| write(&repository, &format!("t{t}"), &format!("sha256:{n}-{t}")))
                .collect();
            repository_sync(&repository, upserts, &[])
        })
        .collect();
    batch.push(repository_sync(
        "sync/app",
        vec![
            write("sync/app", "v2", "sha256:s2-new"),
            write("sync/app", "v6", "sha256:s6"),
        ],
        &["v4"],
    ));
    let results = store
        .apply_repository_syncs(registry, &batch, since, NOW + 4_000)
        .expect("apply_repository_syncs of a large batch");
    let mut expected = vec![applied(5, 0, 0, false); 40];
    expected.push(applied(1, 1, 1, false));
    assert_eq!(results, expected);
    let all = store.tags(registry, None).unwrap();
    let batched: std::collections::BTreeSet<(String, String, String)> = all
        .iter()
        .filter(|tag| tag.repository.starts_with("batch"))
        .map(|tag| (tag.repository.clone(), tag.tag.clone(), tag.digest.clone()))
        .collect();
    assert_eq!(batched.len(), 200);
    assert!(batched.contains(&("batch8".into(), "t4".into(), "sha256:8-4".into())));
    assert!(batched.contains(&("batch-ns2/app5".into(), "t0".into(), "sha256:5-0".into())));
    let app: Vec<(String, String)> = store
        .tags(registry, Some("sync/app"))
        .unwrap()
        .into_iter()
        .map(|tag| (tag.tag, tag.digest))
        .collect();
    assert_eq!(
        app,
        vec![
            ("v1".to_string(), "sha256:s1-new".to_string()),
            ("v2".to_string(), "sha256:s2-new".to_string()),
            ("v5".to_string(), "sha256:s5".to_string()),
            ("v6".to_string(), "sha256:s6".to_string()),
        ]
    );
    // A repository twice in one batch: applied in order.
    let results = store
        .apply_repository_syncs(
            registry,
            &[
                repository_sync("batch0", vec![write("batch0", "t0", "sha256:again")], &[]),
                repository_sync("batch0", vec![write("batch0", "t9", "sha256:new")], &["t1"]),
            ],
            since,
            NOW + 5_000,
        )
        .expect("apply_repository_syncs of one repository twice");
    assert_eq!(
        results,
        vec![applied(0, 1, 0, false), applied(1, 0, 1, false)]
    );
    assert_eq!(store.tags(registry, Some("batch0")).unwrap().len(), 5);

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
