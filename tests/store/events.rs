//! The event queue: insert, claim under leases in per-repository order,
//! apply with effects (one at a time or in batches), retry, release, fail,
//! requeue, prune; and the manifests the tags already know.

use std::collections::BTreeMap;

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{
    AppliedEvent, EventClaim, EventEffect, KnownManifest, NewEvent, Store, TagWrite, Value,
};
use regkeeper_test_support::{Backend, TestStore};

use crate::{write, NOW};

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
fn event_story_on(store: &SqlStore) {
    assert_eq!(
        store
            .find_registry("127.0.0.1:5000")
            .expect("find_registry"),
        None
    );
    let registry = store
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    assert_eq!(
        store
            .find_registry("127.0.0.1:5000")
            .expect("find_registry"),
        Some(registry)
    );
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
                tag.scanned.code(),
                tag.pulled_at
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A batch applied at once leaves the same database as its events applied
/// one at a time, in order.
fn batch_story_on(store: &SqlStore) {
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
fn known_manifests_story_on(store: &SqlStore) {
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

/// The queue depths of `/metrics`: the same counts as `queue_counts`, and
/// the arrival of the oldest event still waiting (fresh or claimed), which
/// neither a done nor a failed event is.
fn queue_depths_story_on(store: &SqlStore) {
    let empty = store.queue_depths().expect("queue_depths");
    assert_eq!(empty.oldest_waiting_at, None);
    assert_eq!(empty.events.values().sum::<i64>(), 0);
    assert_eq!(
        empty.events.len(),
        4,
        "every status word: {:?}",
        empty.events
    );
    assert_eq!(empty.tags_by_scan.len(), 4, "{:?}", empty.tags_by_scan);

    store
        .insert_events(&[event("q1", "a"), event("q2", "b")], NOW)
        .expect("insert_events");
    store
        .insert_events(&[event("q3", "c")], NOW + 5_000)
        .expect("insert_events");
    let depths = store.queue_depths().expect("queue_depths");
    assert_eq!(depths.events.get("fresh"), Some(&3));
    assert_eq!(depths.oldest_waiting_at, Some(NOW));
    let counts = store.queue_counts().expect("queue_counts");
    assert_eq!(depths.events, counts.events);
    assert_eq!(depths.tags_by_scan, counts.tags_by_scan);

    // Claimed events still wait; failed and done ones do not.
    let claimed = store
        .claim_events(&EventClaim {
            claimant: "one".into(),
            now: NOW + 6_000,
            expired_before: 0,
            limit: 2,
        })
        .expect("claim_events");
    assert_eq!(claimed.len(), 2);
    let depths = store.queue_depths().expect("queue_depths");
    assert_eq!(depths.events.get("progress"), Some(&2));
    assert_eq!(depths.oldest_waiting_at, Some(NOW));
    assert!(store
        .fail_event(claimed[0].id, "one", "malformed", NOW + 7_000)
        .expect("fail_event"));
    let registry = store
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    store
        .apply_events(
            registry,
            "one",
            &[done(claimed[1].id, EventEffect::Nothing)],
            NOW + 7_000,
        )
        .expect("apply_events");
    let depths = store.queue_depths().expect("queue_depths");
    assert_eq!(depths.oldest_waiting_at, Some(NOW + 5_000), "{depths:?}");
    assert_eq!(depths.events.get("failed"), Some(&1));
    assert_eq!(depths.events.get("done"), Some(&1));
}

fn queue_depths_story(backend: Backend) {
    queue_depths_story_on(&TestStore::new(backend));
}

fn event_story(backend: Backend) {
    event_story_on(&TestStore::new(backend));
}

fn batch_story(backend: Backend) {
    batch_story_on(&TestStore::new(backend));
}

fn known_manifests_story(backend: Backend) {
    known_manifests_story_on(&TestStore::new(backend));
}

regkeeper_test_support::both_backends!(
    event_story,
    batch_story,
    known_manifests_story,
    queue_depths_story
);
