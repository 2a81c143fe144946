//! The writes of a sync pass in SQL: which repositories have registry
//! events a pass must not undo, and applying a batch of repositories'
//! creates, updates and deletes. Every function runs inside the caller's
//! transaction, which holds one batch of repositories at most and never
//! spans HTTP; the [`super::Store`] methods in `sql.rs` open it. Built on
//! `rows.rs`, `registries.rs` and `tag_writes.rs`.
//!
//! A batch costs a few statements whatever its size, not a few per
//! repository: on PostgreSQL every statement is a round trip, and a first
//! pass writes every repository. One query finds the batch's busy
//! repositories, one the repositories that exist; the missing ones and
//! their namespaces go in multi-row INSERTs, one query finds which tags
//! exist, and the new tags of every repository go in multi-row INSERTs.
//! Only changed tags, deletions and deleted repositories take statements of
//! their own; they are few on any pass.

use std::collections::{BTreeMap, BTreeSet};

use super::codes::event_status;
use super::registries::{
    delete_repository_if_empty, ensure_repository, find_repository, join_repository,
    split_repository,
};
use super::rows::{for_chunks, int, placeholders, text};
use super::tag_writes::{insert_new_tags, write_tags};
use super::tags::write_tag;
use super::{Conn, RepositorySync, SyncApplied, TagChange, TagWrite, Value};

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

/// Applies the writes of a batch of repositories, each unless it has busy
/// events: the same database as applying each in turn, in a few statements
/// for the whole batch (see the top of this file). An error (say, an
/// invalid repository name) fails the whole batch; the caller's
/// transaction then writes none of it.
pub fn apply_batch(
    conn: &mut dyn Conn,
    registry_id: i64,
    syncs: &[RepositorySync],
    since: i64,
    now: i64,
) -> anyhow::Result<Vec<SyncApplied>> {
    let names: BTreeSet<&str> = syncs.iter().map(|sync| sync.repository.as_str()).collect();
    if names.len() < syncs.len() {
        // A repository twice: its writes go in order, one sync at a time.
        return syncs
            .iter()
            .map(|sync| {
                if busy_among(conn, since, &[sync.repository.as_str()])?.is_empty() {
                    apply_one(conn, registry_id, sync, now)
                } else {
                    Ok(SyncApplied::Busy)
                }
            })
            .collect();
    }
    let names: Vec<&str> = syncs.iter().map(|sync| sync.repository.as_str()).collect();
    let busy = busy_among(conn, since, &names)?;
    let mut results: Vec<Option<SyncApplied>> = vec![None; syncs.len()];
    // The syncs that create or update tags, by index: written together.
    let mut upserting: Vec<usize> = Vec::new();
    for (index, sync) in syncs.iter().enumerate() {
        if busy.contains(&sync.repository) {
            results[index] = Some(SyncApplied::Busy);
        } else if sync.delete_repository || sync.upserts.is_empty() {
            results[index] = Some(apply_one(conn, registry_id, sync, now)?);
        } else {
            upserting.push(index);
        }
    }
    let upserted = upsert_batch(conn, registry_id, syncs, &upserting, now)?;
    for (index, applied) in upserting.into_iter().zip(upserted) {
        results[index] = Some(applied);
    }
    results
        .into_iter()
        .map(|result| result.ok_or_else(|| anyhow::anyhow!("a sync of the batch was not applied")))
        .collect()
}

/// Which of `names` have busy events.
fn busy_among(conn: &mut dyn Conn, since: i64, names: &[&str]) -> anyhow::Result<BTreeSet<String>> {
    let mut busy = BTreeSet::new();
    for_chunks(names, |chunk| {
        let mut params = vec![Value::Int(since)];
        params.extend(chunk.iter().map(|name| Value::Text(name.to_string())));
        let rows = conn.query(
            &format!(
                "SELECT DISTINCT repository FROM registry_events WHERE repository IN ({}) AND {BUSY}",
                placeholders(2, chunk.len())
            ),
            &params,
        )?;
        for row in &rows {
            busy.insert(text(row, 0)?);
        }
        Ok(())
    })?;
    Ok(busy)
}

/// Creates and updates the tags of `syncs[indexes]` (none busy, each with
/// upserts and a repository of its own), then deletes their `delete_tags`:
/// what [`apply_one`] does for each, with the repositories found or created
/// and the new tags inserted for all of them at once.
fn upsert_batch(
    conn: &mut dyn Conn,
    registry_id: i64,
    syncs: &[RepositorySync],
    indexes: &[usize],
    now: i64,
) -> anyhow::Result<Vec<SyncApplied>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = indexes
        .iter()
        .map(|&index| syncs[index].repository.as_str())
        .collect();
    let ids = ensure_repositories(conn, registry_id, &names, now)?;
    let repository_id = |name: &str| {
        ids.get(name)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("repository {name} was not created"))
    };
    let mut pairs: Vec<(i64, &str)> = Vec::new();
    for &index in indexes {
        let sync = &syncs[index];
        let id = repository_id(&sync.repository)?;
        pairs.extend(sync.upserts.iter().map(|write| (id, write.tag.as_str())));
    }
    let existing = existing_tags(conn, &pairs)?;
    let mut inserts: Vec<(i64, &TagWrite)> = Vec::new();
    let mut applied: Vec<(i64, usize, usize)> = Vec::with_capacity(indexes.len());
    for &index in indexes {
        let sync = &syncs[index];
        let id = repository_id(&sync.repository)?;
        let distinct: BTreeSet<&str> = sync
            .upserts
            .iter()
            .map(|write| write.tag.as_str())
            .collect();
        if distinct.len() < sync.upserts.len() {
            // A tag written twice: the one-repository path keeps the order.
            let upserts: Vec<&TagWrite> = sync.upserts.iter().collect();
            let written = write_tags(conn, registry_id, id, &upserts, now)?;
            applied.push((id, written.created, written.updated));
            continue;
        }
        let mut created = 0;
        let mut updated = 0;
        for write in &sync.upserts {
            if !existing.contains(&(id, write.tag.clone())) {
                inserts.push((id, write));
                created += 1;
            } else if write_tag(conn, registry_id, write, now)? == TagChange::Updated {
                updated += 1;
            }
        }
        applied.push((id, created, updated));
    }
    insert_new_tags(conn, &inserts, now)?;
    let mut results = Vec::with_capacity(indexes.len());
    for (&index, (id, created, updated)) in indexes.iter().zip(applied) {
        let (tags_deleted, repository_deleted) = delete_tags(conn, id, &syncs[index].delete_tags)?;
        results.push(SyncApplied::Applied {
            created,
            updated,
            tags_deleted,
            repository_deleted,
        });
    }
    Ok(results)
}

/// The ids of the repositories `names` (full names, none twice), creating
/// the missing ones and their namespaces in multi-row INSERTs, in the
/// order of `names`.
fn ensure_repositories(
    conn: &mut dyn Conn,
    registry_id: i64,
    names: &[&str],
    now: i64,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut split: Vec<(&str, &str)> = Vec::with_capacity(names.len());
    for name in names {
        split.push(split_repository(name)?);
    }
    let mut ids = repository_ids(conn, registry_id, &split)?;
    let missing: Vec<(&str, &str)> = split
        .into_iter()
        .filter(|(namespace, name)| !ids.contains_key(&join_repository(namespace, name)))
        .collect();
    if missing.is_empty() {
        return Ok(ids);
    }
    let mut namespaces: Vec<&str> = Vec::new();
    for (namespace, _) in &missing {
        if !namespaces.contains(namespace) {
            namespaces.push(*namespace);
        }
    }
    for_chunks(&namespaces, |chunk| {
        let mut sql = String::from(
            "INSERT INTO namespaces (registry_id, name, global, created_at, updated_at) VALUES ",
        );
        let mut params = vec![Value::Int(registry_id), Value::Int(now)];
        for (index, namespace) in chunk.iter().enumerate() {
            let first = 3 + index * 2;
            if index > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($1, ${}, ${}, $2, $2)", first, first + 1));
            params.extend([
                Value::Text(namespace.to_string()),
                Value::Int(namespace.is_empty().into()),
            ]);
        }
        sql.push_str(" ON CONFLICT (registry_id, name) DO NOTHING");
        conn.execute(&sql, &params)?;
        Ok(())
    })?;
    let mut namespace_ids: BTreeMap<String, i64> = BTreeMap::new();
    for_chunks(&namespaces, |chunk| {
        let mut params = vec![Value::Int(registry_id)];
        params.extend(
            chunk
                .iter()
                .map(|namespace| Value::Text(namespace.to_string())),
        );
        let rows = conn.query(
            &format!(
                "SELECT name, id FROM namespaces WHERE registry_id = $1 AND name IN ({})",
                placeholders(2, chunk.len())
            ),
            &params,
        )?;
        for row in &rows {
            namespace_ids.insert(text(row, 0)?, int(row, 1)?);
        }
        Ok(())
    })?;
    let mut rows: Vec<(i64, &str)> = Vec::with_capacity(missing.len());
    for (namespace, name) in &missing {
        let namespace_id = namespace_ids
            .get(*namespace)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("namespace {namespace:?} was not created"))?;
        rows.push((namespace_id, *name));
    }
    for_chunks(&rows, |chunk| {
        let mut sql = String::from(
            "INSERT INTO repositories (namespace_id, name, created_at, updated_at) VALUES ",
        );
        let mut params = vec![Value::Int(now)];
        for (index, (namespace_id, name)) in chunk.iter().enumerate() {
            let first = 2 + index * 2;
            if index > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, $1, $1)", first, first + 1));
            params.extend([Value::Int(*namespace_id), Value::Text(name.to_string())]);
        }
        sql.push_str(" ON CONFLICT (namespace_id, name) DO NOTHING");
        conn.execute(&sql, &params)?;
        Ok(())
    })?;
    ids.extend(repository_ids(conn, registry_id, &missing)?);
    Ok(ids)
}

/// The ids of those of the repositories `(namespace, name)` that exist, by
/// full name.
fn repository_ids(
    conn: &mut dyn Conn,
    registry_id: i64,
    repositories: &[(&str, &str)],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut ids = BTreeMap::new();
    for_chunks(repositories, |chunk| {
        let mut params = vec![Value::Int(registry_id)];
        for (namespace, name) in chunk {
            params.extend([
                Value::Text(namespace.to_string()),
                Value::Text(name.to_string()),
            ]);
        }
        let rows = conn.query(
            &format!(
                "SELECT n.name, r.name, r.id FROM repositories r JOIN namespaces n ON n.id = r.namespace_id \
                 WHERE n.registry_id = $1 AND (n.name, r.name) IN (VALUES {})",
                pair_placeholders(2, chunk.len())
            ),
            &params,
        )?;
        for row in &rows {
            ids.insert(
                join_repository(&text(row, 0)?, &text(row, 1)?),
                int(row, 2)?,
            );
        }
        Ok(())
    })?;
    Ok(ids)
}

/// Which of the tags `(repository id, name)` exist.
fn existing_tags(
    conn: &mut dyn Conn,
    tags: &[(i64, &str)],
) -> anyhow::Result<BTreeSet<(i64, String)>> {
    let mut found = BTreeSet::new();
    for_chunks(tags, |chunk| {
        let mut params = Vec::with_capacity(chunk.len() * 2);
        for (repository_id, name) in chunk {
            params.extend([Value::Int(*repository_id), Value::Text(name.to_string())]);
        }
        let rows = conn.query(
            &format!(
                "SELECT repository_id, name FROM tags WHERE (repository_id, name) IN (VALUES {})",
                id_pair_placeholders(1, chunk.len())
            ),
            &params,
        )?;
        for row in &rows {
            found.insert((int(row, 0)?, text(row, 1)?));
        }
        Ok(())
    })?;
    Ok(found)
}

/// `count` pairs of numbered placeholders from `$first` on, for a `VALUES`
/// list: `($2, $3), ($4, $5)`.
fn pair_placeholders(first: usize, count: usize) -> String {
    let pairs: Vec<String> = (0..count)
        .map(|index| format!("(${}, ${})", first + 2 * index, first + 2 * index + 1))
        .collect();
    pairs.join(", ")
}

/// The same for pairs of an id and a text: PostgreSQL takes a bare
/// parameter in `VALUES` for text, so the id is cast.
fn id_pair_placeholders(first: usize, count: usize) -> String {
    let pairs: Vec<String> = (0..count)
        .map(|index| {
            format!(
                "(CAST(${} AS BIGINT), ${})",
                first + 2 * index,
                first + 2 * index + 1
            )
        })
        .collect();
    pairs.join(", ")
}

/// Deletes the tags `names` of a repository, then the repository if that
/// emptied it; returns how many tags went and whether the repository did.
fn delete_tags(
    conn: &mut dyn Conn,
    repository_id: i64,
    names: &[String],
) -> anyhow::Result<(usize, bool)> {
    let mut tags_deleted = 0;
    for tag in names {
        tags_deleted += usize::try_from(conn.execute(
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
            &[Value::Int(repository_id), Value::Text(tag.clone())],
        )?)?;
    }
    let repository_deleted = tags_deleted > 0 && delete_repository_if_empty(conn, repository_id)?;
    Ok((tags_deleted, repository_deleted))
}

/// Applies one repository's writes, its busy events already checked.
fn apply_one(
    conn: &mut dyn Conn,
    registry_id: i64,
    sync: &RepositorySync,
    now: i64,
) -> anyhow::Result<SyncApplied> {
    let nothing = SyncApplied::Applied {
        created: 0,
        updated: 0,
        tags_deleted: 0,
        repository_deleted: false,
    };
    if sync.delete_repository {
        let Some(repository_id) = find_repository(conn, registry_id, &sync.repository)? else {
            return Ok(nothing);
        };
        let tags_deleted = usize::try_from(conn.execute(
            "DELETE FROM tags WHERE repository_id = $1",
            &[Value::Int(repository_id)],
        )?)?;
        return Ok(SyncApplied::Applied {
            created: 0,
            updated: 0,
            tags_deleted,
            repository_deleted: delete_repository_if_empty(conn, repository_id)?,
        });
    }
    let repository_id = if sync.upserts.is_empty() {
        find_repository(conn, registry_id, &sync.repository)?
    } else {
        Some(ensure_repository(conn, registry_id, &sync.repository, now)?)
    };
    let Some(repository_id) = repository_id else {
        return Ok(nothing);
    };
    let upserts: Vec<&TagWrite> = sync.upserts.iter().collect();
    let written = write_tags(conn, registry_id, repository_id, &upserts, now)?;
    let (tags_deleted, repository_deleted) = delete_tags(conn, repository_id, &sync.delete_tags)?;
    Ok(SyncApplied::Applied {
        created: written.created,
        updated: written.updated,
        tags_deleted,
        repository_deleted,
    })
}
