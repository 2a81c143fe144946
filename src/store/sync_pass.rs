//! The writes of a sync pass in SQL, for [`super::sql::SqlStore`]: which
//! repositories have registry events a pass must not undo, and applying one
//! repository's creates, updates and deletes. Every function runs inside the
//! caller's transaction, which holds a handful of repositories at most and
//! never spans HTTP.

use std::collections::{BTreeMap, BTreeSet};

use super::sql::{delete_repository_if_empty, ensure_repository, find_repository, text, write_tag};
use super::{Conn, RepositorySync, SyncApplied, TagChange, TagWrite, Value};

/// Registry events that make a repository busy for a sync pass: pending ones
/// (2 fresh, 1 in progress) and any that arrived at or after the pass's
/// start mark `$1`. Pulls change nothing in the tables sync writes.
const BUSY: &str = "action <> 'pull' AND (status IN (1, 2) OR created_at >= $1)";

/// Most rows per multi-row INSERT (6 parameters each, far below both
/// databases' limits on bound parameters). Batches are cut into powers of
/// two so that only a few statement texts exist and stay prepared.
const INSERT_ROWS: usize = 128;

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
    let existing: BTreeMap<String, String> = conn
        .query(
            "SELECT name, digest FROM tags WHERE repository_id = $1",
            &[Value::Int(repository_id)],
        )?
        .iter()
        .map(|row| Ok((text(row, 0)?, text(row, 1)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut inserts: Vec<&TagWrite> = Vec::new();
    for write in &sync.upserts {
        match existing.get(&write.tag) {
            None => inserts.push(write),
            // The tag changed since the snapshot without an event we saw:
            // the common write path decides.
            Some(_) => {
                if write_tag(conn, registry_id, write, now)? == TagChange::Updated {
                    updated += 1;
                }
            }
        }
    }
    let mut rest = inserts.as_slice();
    while !rest.is_empty() {
        let (rows, after) = rest.split_at(chunk_rows(rest.len()));
        insert_tags(conn, repository_id, rows, now)?;
        created += rows.len();
        rest = after;
    }
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

/// The largest power of two at most `remaining` and [`INSERT_ROWS`].
fn chunk_rows(remaining: usize) -> usize {
    let mut rows = INSERT_ROWS;
    while rows > remaining {
        rows /= 2;
    }
    rows.max(1)
}

/// One multi-row INSERT for new tags of one repository.
fn insert_tags(
    conn: &mut dyn Conn,
    repository_id: i64,
    rows: &[&TagWrite],
    now: i64,
) -> anyhow::Result<()> {
    let mut sql = String::from(
        "INSERT INTO tags (repository_id, name, digest, image_id, media_type, size, platforms, \
         created_at, updated_at) VALUES ",
    );
    let mut params = vec![Value::Int(repository_id), Value::Int(now)];
    for (index, write) in rows.iter().enumerate() {
        let first = 3 + index * 6;
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "($1, ${}, ${}, ${}, ${}, ${}, ${}, $2, $2)",
            first,
            first + 1,
            first + 2,
            first + 3,
            first + 4,
            first + 5
        ));
        params.extend([
            Value::Text(write.tag.clone()),
            Value::Text(write.digest.clone()),
            Value::Text(write.image_id.clone()),
            Value::Text(write.media_type.clone()),
            write.size.map_or(Value::Null, Value::Int),
            write.platforms.clone().map_or(Value::Null, Value::Text),
        ]);
    }
    let inserted = conn.execute(&sql, &params)?;
    anyhow::ensure!(
        inserted == rows.len() as u64,
        "inserted {inserted} of {} tags",
        rows.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_are_cut_into_powers_of_two() {
        assert_eq!(chunk_rows(1), 1);
        assert_eq!(chunk_rows(10), 8);
        assert_eq!(chunk_rows(2), 2);
        assert_eq!(chunk_rows(127), 64);
        assert_eq!(chunk_rows(1000), INSERT_ROWS);
    }
}
