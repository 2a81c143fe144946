//! Registries, tags, pulls, queue depths and deletes.

use std::collections::BTreeMap;

use regkeeper::store::sql::{self, SqlStore};
use regkeeper::store::{ScanState, Store, TagChange, Value};

use crate::{exec, write, NOW};

/// Registries: idempotent, one global namespace each. Tags: create, leave
/// alone, fill in, update; pulls; queue depths; deletes.
pub(crate) fn chapter(store: &SqlStore) {
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
    assert_eq!(app[0].scanned, ScanState::Unscanned);
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
    assert_eq!(
        store.tags(registry, Some("app")).unwrap()[0].scanned,
        ScanState::Done
    );
    let mut repushed = write("app", "latest", "sha256:a2");
    repushed.size = Some(10);
    assert_eq!(
        store.upsert_tag(registry, &repushed, NOW + 100).unwrap(),
        TagChange::Updated
    );
    let app = store.tags(registry, Some("app")).expect("tags");
    assert_eq!(app[0].digest, "sha256:a2");
    assert_eq!(app[0].scanned, ScanState::Unscanned);
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
}
