//! The gc audit: a deletion removes the repository's tags at the digest
//! as the delete event would and records its rows in one transaction; a
//! dry run's rows are recorded alone; both read back newest first.

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{GcDeletion, Store};

use crate::{write, NOW};

fn deletion(tag: &str, digest: &str, dry_run: bool) -> GcDeletion {
    GcDeletion {
        registry: "gc.example:5000".to_string(),
        repository: "ci/app".to_string(),
        tag: tag.to_string(),
        digest: digest.to_string(),
        policy: "ci".to_string(),
        rule: "ci: beyond keep_latest 1 (2nd newest)".to_string(),
        run_id: 7,
        deleted_at: NOW,
        dry_run,
    }
}

/// `apply_gc_deletion`, `record_gc_decisions` and `gc_deletions`.
pub(crate) fn chapter(store: &SqlStore) {
    let registry = store.ensure_registry("gc.example:5000").unwrap();
    let old = format!("sha256:{}", "1".repeat(64));
    let new = format!("sha256:{}", "2".repeat(64));
    for (tag, digest) in [("a", &old), ("b", &old), ("c", &new)] {
        store
            .upsert_tag(registry, &write("ci/app", tag, digest), NOW)
            .unwrap();
    }
    assert!(store.gc_deletions(10).unwrap().is_empty());
    store
        .record_gc_decisions(&[deletion("a", &old, true)])
        .unwrap();
    assert_eq!(store.tags(registry, Some("ci/app")).unwrap().len(), 3);
    let rows = [deletion("a", &old, false), deletion("b", &old, false)];
    assert_eq!(
        store
            .apply_gc_deletion(registry, "ci/app", &old, &rows)
            .unwrap(),
        2
    );
    let left: Vec<String> = store
        .tags(registry, Some("ci/app"))
        .unwrap()
        .into_iter()
        .map(|tag| tag.tag)
        .collect();
    assert_eq!(left, ["c"]);
    let audit = store.gc_deletions(10).unwrap();
    assert_eq!(
        audit,
        [
            deletion("b", &old, false),
            deletion("a", &old, false),
            deletion("a", &old, true)
        ]
    );
    assert_eq!(store.gc_deletions(1).unwrap().len(), 1);
    // The registry's delete event for the same digest then changes nothing.
    assert_eq!(
        store
            .delete_tags_by_digest(registry, "ci/app", &old)
            .unwrap(),
        0
    );
}
