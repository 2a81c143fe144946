//! Many tag writes of one repository at once, inside the caller's
//! transaction, for a sync pass and for a batch of push events: one query
//! finds which of the tags exist, new tags go in multi-row INSERTs, and only
//! tags that exist already take the one-by-one path of [`write_tag`] (which
//! owns the rule for a changed or filled-in manifest). The statements are
//! cut into chunks by [`for_chunks`]. Built on `rows.rs`, `registries.rs`
//! and `tags.rs`; nothing here opens a transaction.

use std::collections::{BTreeMap, BTreeSet};

use super::registries::{ensure_repository, find_repository};
use super::rows::{for_chunks, placeholders, text};
use super::tags::write_tag;
use super::{Conn, TagChange, TagWrite, Value};

/// What [`write_tags`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// New tag rows.
    pub created: usize,
    /// Tags whose digest changed (scan state reset).
    pub updated: usize,
}

/// Writes `writes` (all of the repository `repository_id`), in order: the
/// same database as calling [`write_tag`] for each, with a tag written
/// twice in `writes` ending as the second write left it.
pub fn write_tags(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository_id: i64,
    writes: &[&TagWrite],
    now: i64,
) -> anyhow::Result<Written> {
    let names: BTreeSet<&str> = writes.iter().map(|write| write.tag.as_str()).collect();
    let mut existing = existing_tags(conn, repository_id, &names)?;
    let mut written = Written::default();
    let mut inserts: Vec<&TagWrite> = Vec::new();
    for write in writes {
        if !existing.contains(&write.tag) {
            existing.insert(write.tag.clone());
            inserts.push(write);
            continue;
        }
        if inserts.iter().any(|queued| queued.tag == write.tag) {
            // Written twice: the first must be in the table before the
            // second is compared with it.
            written.created += insert_all(conn, repository_id, &inserts, now)?;
            inserts.clear();
        }
        if write_tag(conn, registry_id, write, now)? == TagChange::Updated {
            written.updated += 1;
        }
    }
    written.created += insert_all(conn, repository_id, &inserts, now)?;
    Ok(written)
}

/// Writes `writes` of any repositories of the registry, creating missing
/// repositories (and namespaces): [`write_tags`] per repository. Writes to
/// different repositories commute, so only each repository's order is kept.
pub fn write_tags_by_repository(
    conn: &mut dyn Conn,
    registry_id: i64,
    writes: &[&TagWrite],
    now: i64,
) -> anyhow::Result<Written> {
    let mut by_repository: BTreeMap<&str, Vec<&TagWrite>> = BTreeMap::new();
    for write in writes {
        by_repository
            .entry(write.repository.as_str())
            .or_default()
            .push(write);
    }
    let mut written = Written::default();
    for (repository, writes) in by_repository {
        let repository_id = match find_repository(conn, registry_id, repository)? {
            Some(id) => id,
            None => ensure_repository(conn, registry_id, repository, now)?,
        };
        let more = write_tags(conn, registry_id, repository_id, &writes, now)?;
        written.created += more.created;
        written.updated += more.updated;
    }
    Ok(written)
}

/// Which of `names` the repository has.
fn existing_tags(
    conn: &mut dyn Conn,
    repository_id: i64,
    names: &BTreeSet<&str>,
) -> anyhow::Result<BTreeSet<String>> {
    let names: Vec<&str> = names.iter().copied().collect();
    let mut found = BTreeSet::new();
    for_chunks(&names, |chunk| {
        let mut params = vec![Value::Int(repository_id)];
        params.extend(chunk.iter().map(|name| Value::Text(name.to_string())));
        let rows = conn.query(
            &format!(
                "SELECT name FROM tags WHERE repository_id = $1 AND name IN ({})",
                placeholders(2, chunk.len())
            ),
            &params,
        )?;
        for row in &rows {
            found.insert(text(row, 0)?);
        }
        Ok(())
    })?;
    Ok(found)
}

/// Inserts new tags of one repository in chunks; returns how many.
fn insert_all(
    conn: &mut dyn Conn,
    repository_id: i64,
    writes: &[&TagWrite],
    now: i64,
) -> anyhow::Result<usize> {
    let rows: Vec<(i64, &TagWrite)> = writes.iter().map(|write| (repository_id, *write)).collect();
    insert_new_tags(conn, &rows, now)
}

/// Inserts new tags, each of the repository id it comes with, in chunked
/// multi-row INSERTs (a sync pass's batch of repositories at once); returns
/// how many. The caller knows none of them exists.
pub(super) fn insert_new_tags(
    conn: &mut dyn Conn,
    rows: &[(i64, &TagWrite)],
    now: i64,
) -> anyhow::Result<usize> {
    for_chunks(rows, |chunk| insert_tags(conn, chunk, now))?;
    Ok(rows.len())
}

/// One multi-row INSERT for new tags.
fn insert_tags(conn: &mut dyn Conn, rows: &[(i64, &TagWrite)], now: i64) -> anyhow::Result<()> {
    let mut sql = String::from(
        "INSERT INTO tags (repository_id, name, digest, image_id, media_type, size, platforms, \
         created_at, updated_at) VALUES ",
    );
    let mut params = vec![Value::Int(now)];
    for (index, (repository_id, write)) in rows.iter().enumerate() {
        let first = 2 + index * 7;
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, $1, $1)",
            first,
            first + 1,
            first + 2,
            first + 3,
            first + 4,
            first + 5,
            first + 6
        ));
        params.extend([
            Value::Int(*repository_id),
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
