//! The `gc_deletions` audit in SQL: a gc pass's deletions, each written
//! in the transaction that removes the tags as the registry's delete event
//! would, and the decisions of a dry run; read back newest first. Rows
//! are only ever inserted. Every function works inside the caller's
//! transaction. Built on `rows.rs` and `tags.rs`.

use super::rows::{int, text, txt};
use super::tags::delete_tags_with_digest;
use super::{Conn, GcDeletion, Value};

/// Inserts audit rows.
pub fn record(conn: &mut dyn Conn, rows: &[GcDeletion]) -> anyhow::Result<()> {
    for row in rows {
        conn.execute(
            "INSERT INTO gc_deletions (registry, repository, tag, digest, policy, rule, run_id, deleted_at, dry_run) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                txt(&row.registry),
                txt(&row.repository),
                txt(&row.tag),
                txt(&row.digest),
                txt(&row.policy),
                txt(&row.rule),
                Value::Int(row.run_id),
                Value::Int(row.deleted_at),
                Value::Int(row.dry_run.into()),
            ],
        )?;
    }
    Ok(())
}

/// Removes the tags of `repository` at `digest` (as the delete event does)
/// and records `rows`: [`super::Store::apply_gc_deletion`].
pub fn apply(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: &str,
    digest: &str,
    rows: &[GcDeletion],
) -> anyhow::Result<u64> {
    let deleted = delete_tags_with_digest(conn, registry_id, repository, digest)?;
    record(conn, rows)?;
    Ok(deleted)
}

/// The newest `limit` rows: [`super::Store::gc_deletions`].
pub fn recent(conn: &mut dyn Conn, limit: usize) -> anyhow::Result<Vec<GcDeletion>> {
    let rows = conn.query(
        "SELECT registry, repository, tag, digest, policy, rule, run_id, deleted_at, dry_run \
         FROM gc_deletions ORDER BY id DESC LIMIT $1",
        &[Value::Int(i64::try_from(limit).unwrap_or(i64::MAX))],
    )?;
    rows.iter()
        .map(|row| {
            Ok(GcDeletion {
                registry: text(row, 0)?,
                repository: text(row, 1)?,
                tag: text(row, 2)?,
                digest: text(row, 3)?,
                policy: text(row, 4)?,
                rule: text(row, 5)?,
                run_id: int(row, 6)?,
                deleted_at: int(row, 7)?,
                dry_run: int(row, 8)? != 0,
            })
        })
        .collect()
}
