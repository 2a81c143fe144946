//! The `tags` rows one at a time, inside the caller's transaction: writing
//! one tag ([`write_tag`], the one rule for a changed or filled-in
//! manifest), deleting one tag or a repository's tags at a digest, listing
//! tags as [`TagRecord`]s, what complete rows record of known manifests,
//! and the counts `status` shows. Built on `rows.rs` and `registries.rs`;
//! event, sync and scan SQL live in their own files, and nothing here opens
//! a transaction.

use std::collections::BTreeMap;

use super::codes::{scan_state, scan_state_at, ScanState};
use super::registries::{
    delete_repository_if_empty, ensure_repository, find_repository, join_repository,
    split_repository,
};
use super::rows::{
    counts_by_code, for_chunks, int, opt, opt_int, opt_text, placeholders, single, text, txt,
};
use super::{Conn, KnownManifest, Row, TagChange, TagRecord, TagWrite, Value};

/// Creates or updates one tag inside a transaction: [`super::Store::upsert_tag`].
/// The common case, a tag that is already there with the same manifest,
/// costs one query.
pub(super) fn write_tag(
    conn: &mut dyn Conn,
    registry_id: i64,
    write: &TagWrite,
    now: i64,
) -> anyhow::Result<TagChange> {
    let (namespace, name) = split_repository(&write.repository)?;
    let rows = conn.query(
        "SELECT r.id, t.id, t.digest, t.image_id, t.media_type, t.size, t.platforms \
         FROM namespaces n JOIN repositories r ON r.namespace_id = n.id \
         LEFT JOIN tags t ON t.repository_id = r.id AND t.name = $4 \
         WHERE n.registry_id = $1 AND n.name = $2 AND r.name = $3",
        &[
            Value::Int(registry_id),
            txt(namespace),
            txt(name),
            txt(&write.tag),
        ],
    )?;
    let platforms = write.platforms.as_deref().map_or(Value::Null, txt);
    let existing = match rows.first() {
        Some(row) => opt_int(row, 1)?.map(|tag_id| (tag_id, row)),
        None => None,
    };
    let Some((tag_id, row)) = existing else {
        let repository_id = match rows.first() {
            Some(row) => int(row, 0)?,
            None => ensure_repository(conn, registry_id, &write.repository, now)?,
        };
        conn.execute(
            "INSERT INTO tags (repository_id, name, digest, image_id, media_type, size, platforms, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            &[
                Value::Int(repository_id),
                txt(&write.tag),
                txt(&write.digest),
                txt(&write.image_id),
                txt(&write.media_type),
                opt(write.size),
                platforms,
                Value::Int(now),
            ],
        )?;
        return Ok(TagChange::Created);
    };
    if text(row, 2)? != write.digest {
        // A new manifest behind the tag: everything known about the old
        // one, its scan included, no longer applies.
        conn.execute(
            concat!("UPDATE tags SET digest = $2, image_id = $3, media_type = $4, size = $5, platforms = $6, \
             scanned = ", scan_state!(unscanned), ", scan_attempts = 0, scan_last_error = NULL, scan_not_before = NULL, \
             scan_claimed_at = NULL, scan_claimant = NULL, scanned_at = NULL, updated_at = $7 \
             WHERE id = $1"),
            &[
                Value::Int(tag_id),
                txt(&write.digest),
                txt(&write.image_id),
                txt(&write.media_type),
                opt(write.size),
                platforms,
                Value::Int(now),
            ],
        )?;
        return Ok(TagChange::Updated);
    }
    // Same manifest: only fill in what was unknown, never replace a known
    // value with an unknown one, and write nothing when nothing is new.
    let fills_in = (!write.image_id.is_empty() && write.image_id != text(row, 3)?)
        || (!write.media_type.is_empty() && write.media_type != text(row, 4)?)
        || (write.size.is_some() && write.size != opt_int(row, 5)?)
        || (write.platforms.is_some() && write.platforms != opt_text(row, 6)?);
    if fills_in {
        conn.execute(
            "UPDATE tags SET \
             image_id = CASE WHEN $2 = '' THEN image_id ELSE $2 END, \
             media_type = CASE WHEN $3 = '' THEN media_type ELSE $3 END, \
             size = COALESCE($4, size), platforms = COALESCE($5, platforms) \
             WHERE id = $1",
            &[
                Value::Int(tag_id),
                txt(&write.image_id),
                txt(&write.media_type),
                opt(write.size),
                platforms,
            ],
        )?;
    }
    Ok(TagChange::Unchanged)
}

/// Deletes the tags of a repository with `digest`, then the repository if
/// it is empty, inside a transaction: [`super::Store::delete_tags_by_digest`].
pub(super) fn delete_tags_with_digest(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: &str,
    digest: &str,
) -> anyhow::Result<u64> {
    let Some(repository_id) = find_repository(conn, registry_id, repository)? else {
        return Ok(0);
    };
    let deleted = conn.execute(
        "DELETE FROM tags WHERE repository_id = $1 AND digest = $2",
        &[Value::Int(repository_id), txt(digest)],
    )?;
    delete_repository_if_empty(conn, repository_id)?;
    Ok(deleted)
}

/// Deletes one tag, then the repository if it is empty, inside a
/// transaction: [`super::Store::delete_tag`].
pub(super) fn remove_tag(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: &str,
    tag: &str,
) -> anyhow::Result<bool> {
    let Some(repository_id) = find_repository(conn, registry_id, repository)? else {
        return Ok(false);
    };
    let deleted = conn.execute(
        "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
        &[Value::Int(repository_id), txt(tag)],
    )?;
    delete_repository_if_empty(conn, repository_id)?;
    Ok(deleted > 0)
}

/// Columns of [`TagRecord`] in the order [`tag_record`] reads them; needs
/// `tags t`, `repositories r` and `namespaces n` in the query.
const TAG_COLUMNS: &str =
    "t.id, n.name, r.name, t.name, t.digest, t.image_id, t.media_type, t.size, t.scanned, \
                           t.pulled_at, t.created_at, t.updated_at";

fn tag_record(row: &Row) -> anyhow::Result<TagRecord> {
    Ok(TagRecord {
        id: int(row, 0)?,
        repository: join_repository(&text(row, 1)?, &text(row, 2)?),
        tag: text(row, 3)?,
        digest: text(row, 4)?,
        image_id: text(row, 5)?,
        media_type: text(row, 6)?,
        size: opt_int(row, 7)?,
        scanned: scan_state_at(row, 8)?,
        pulled_at: opt_int(row, 9)?,
        created_at: int(row, 10)?,
        updated_at: int(row, 11)?,
    })
}

/// The tags of one repository of the registry (all when None), sorted by
/// repository then tag: [`super::Store::tags`].
pub(super) fn records(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: Option<&str>,
) -> anyhow::Result<Vec<TagRecord>> {
    let rows = match repository {
        Some(full_name) => {
            let (namespace, name) = split_repository(full_name)?;
            conn.query(
                &format!(
                    "SELECT {TAG_COLUMNS} FROM tags t JOIN repositories r ON r.id = t.repository_id \
                     JOIN namespaces n ON n.id = r.namespace_id \
                     WHERE n.registry_id = $1 AND n.name = $2 AND r.name = $3"
                ),
                &[Value::Int(registry_id), txt(namespace), txt(name)],
            )?
        }
        None => conn.query(
            &format!(
                "SELECT {TAG_COLUMNS} FROM tags t JOIN repositories r ON r.id = t.repository_id \
                 JOIN namespaces n ON n.id = r.namespace_id WHERE n.registry_id = $1"
            ),
            &[Value::Int(registry_id)],
        )?,
    };
    let mut tags = rows
        .iter()
        .map(tag_record)
        .collect::<anyhow::Result<Vec<TagRecord>>>()?;
    tags.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    Ok(tags)
}

/// The lookup of [`super::Store::known_manifests`] for `count` digests
/// (`$2`...), of registry `$1`: complete rows only (a size, a media type,
/// and a config digest or, for an index, platforms), found through the
/// digest index.
fn known_manifests_sql(count: usize) -> String {
    format!(
        "SELECT t.digest, t.image_id, t.media_type, t.size, t.platforms \
         FROM tags t JOIN repositories r ON r.id = t.repository_id \
         JOIN namespaces n ON n.id = r.namespace_id \
         WHERE n.registry_id = $1 AND t.size IS NOT NULL AND t.media_type <> '' \
         AND (t.image_id <> '' OR t.platforms IS NOT NULL) AND t.digest IN ({})",
        placeholders(2, count)
    )
}

/// What complete tag rows of the registry record of the manifests
/// `digests`, in chunks: [`super::Store::known_manifests`].
pub(super) fn known_manifests(
    conn: &mut dyn Conn,
    registry_id: i64,
    digests: &[String],
) -> anyhow::Result<BTreeMap<String, KnownManifest>> {
    let mut known = BTreeMap::new();
    for_chunks(digests, |chunk| {
        let mut params = vec![Value::Int(registry_id)];
        params.extend(chunk.iter().map(|digest| txt(digest)));
        let rows = conn.query(&known_manifests_sql(chunk.len()), &params)?;
        for row in &rows {
            known.entry(text(row, 0)?).or_insert(KnownManifest {
                image_id: text(row, 1)?,
                media_type: text(row, 2)?,
                size: int(row, 3)?,
                platforms: opt_text(row, 4)?,
            });
        }
        Ok(())
    })?;
    Ok(known)
}

/// Tags of every registry by scan state word (all four words present).
pub(super) fn counts_by_scan(conn: &mut dyn Conn) -> anyhow::Result<BTreeMap<String, i64>> {
    counts_by_code(
        conn,
        "SELECT scanned, COUNT(*) FROM tags GROUP BY scanned",
        &ScanState::ALL.map(ScanState::word),
    )
}

/// How many tags there are, of every registry.
pub(super) fn count(conn: &mut dyn Conn) -> anyhow::Result<i64> {
    int(
        &single(conn.query("SELECT COUNT(*) FROM tags", &[])?, "the count")?,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_looks_known_manifests_up_by_digest() {
        let mut params = vec![Value::Int(1)];
        params.extend((0..4).map(|n| txt(&format!("sha256:{n}"))));
        let plan = super::super::explain::sqlite_plan(&known_manifests_sql(4), &params);
        assert!(
            plan.starts_with("SEARCH t USING INDEX tags_digest"),
            "{plan}"
        );
    }
}
