//! The writes of a sync pass in SQL: which repositories have registry
//! events a pass must not undo, and applying one repository's creates,
//! updates and deletes. Every function runs inside the caller's
//! transaction, which holds a handful of repositories at most and never
//! spans HTTP; the [`super::Store`] methods in `sql.rs` open it. Built on
//! `rows.rs`, `registries.rs` and `tag_writes.rs`.

use std::collections::BTreeSet;

use super::codes::event_status;
use super::registries::{delete_repository_if_empty, ensure_repository, find_repository};
use super::rows::text;
use super::tag_writes::write_tags;
use super::{Conn, RepositorySync, SyncApplied, TagWrite, Value};

/// Registry events that make a repository busy for a sync pass: pending ones
/// (2 fresh, 1 in progress) and any that arrived at or after the pass's
/// start mark `$1`. Pulls change nothing in the tables sync writes.
const BUSY: &str = concat!(
    "action <> 'pull' AND (status IN (",
    event_status!(progress),
    ", ",
    event_status!(fresh),
    ") OR created_at >= $1)"
);

/// Full names of the repositories with busy events.
pub fn busy_repositories(conn: &mut dyn Conn, since: i64) -> anyhow::Result<BTreeSet<String>> {
    let rows = conn.query(
        &format!("SELECT DISTINCT repository FROM registry_events WHERE {BUSY}"),
        &[Value::Int(since)],
    )?;
    rows.iter().map(|row| text(row, 0)).collect()
}

/// Applies one repository's writes unless it has busy events.
pub fn apply(
    conn: &mut dyn Conn,
    registry_id: i64,
    sync: &RepositorySync,
    since: i64,
    now: i64,
) -> anyhow::Result<SyncApplied> {
    let busy = conn.query(
        &format!("SELECT 1 FROM registry_events WHERE repository = $2 AND {BUSY} LIMIT 1"),
        &[Value::Int(since), Value::Text(sync.repository.clone())],
    )?;
    if !busy.is_empty() {
        return Ok(SyncApplied::Busy);
    }
    let mut created = 0;
    let mut updated = 0;
    let mut tags_deleted = 0;
    let mut repository_deleted = false;
    if sync.delete_repository {
        if let Some(repository_id) = find_repository(conn, registry_id, &sync.repository)? {
            tags_deleted += usize::try_from(conn.execute(
                "DELETE FROM tags WHERE repository_id = $1",
                &[Value::Int(repository_id)],
            )?)?;
            repository_deleted = delete_repository_if_empty(conn, repository_id)?;
        }
        return Ok(SyncApplied::Applied {
            created,
            updated,
            tags_deleted,
            repository_deleted,
        });
    }
    let repository_id = if sync.upserts.is_empty() {
        find_repository(conn, registry_id, &sync.repository)?
    } else {
        Some(ensure_repository(conn, registry_id, &sync.repository, now)?)
    };
    let Some(repository_id) = repository_id else {
        return Ok(SyncApplied::Applied {
            created,
            updated,
            tags_deleted,
            repository_deleted,
        });
    };
    let upserts: Vec<&TagWrite> = sync.upserts.iter().collect();
    let written = write_tags(conn, registry_id, repository_id, &upserts, now)?;
    created += written.created;
    updated += written.updated;
    for tag in &sync.delete_tags {
        tags_deleted += usize::try_from(conn.execute(
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
            &[Value::Int(repository_id), Value::Text(tag.clone())],
        )?)?;
    }
    if tags_deleted > 0 {
        repository_deleted = delete_repository_if_empty(conn, repository_id)?;
    }
    Ok(SyncApplied::Applied {
        created,
        updated,
        tags_deleted,
        repository_deleted,
    })
}
