//! [`SqlStore`]: the one implementation of [`Store`], over any [`Backend`].
//! Each domain method is one transaction; SQL text is written once with `$1`
//! placeholders, and where SQLite and PostgreSQL differ both versions sit
//! side by side in a `match dialect`. Row accessors ([`int`], [`text`],
//! [`opt_int`], [`opt_text`]) turn a surprising column into an error, never a
//! panic. Nothing here knows which driver is underneath.
//!
//! Writing SQL that both databases accept:
//! - placeholders are `$1`, `$2`, ... (a number may repeat); SQLite gets
//!   them rewritten to `?1`;
//! - `INSERT ... ON CONFLICT (cols) DO NOTHING / DO UPDATE` and `RETURNING`
//!   work on both;
//! - values are only integers, text and NULL ([`Value`]); booleans are 0/1,
//!   times are integer milliseconds passed in (never `now()`), JSON is text;
//! - `COUNT(*)` is fine, but PostgreSQL types `SUM` of a BIGINT as NUMERIC,
//!   which is not read: write `CAST(SUM(x) AS BIGINT)`;
//! - sort text in Rust when the order matters: collations differ.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context as _;

use super::{
    migrations, tag_writes, AppliedEvent, Backend, ClaimedEvent, Conn, Dialect, EventClaim,
    EventEffect, FailedEvent, KnownManifest, NewEvent, QueueCounts, Row, RunOutcome, RunRecord,
    Store, TagChange, TagRecord, TagWrite, Value,
};

/// Scan state words for `tags.scanned`, by code.
const SCAN_STATES: [&str; 4] = ["none", "working", "done", "failed"];

/// Event status words for `registry_events.status`, by code.
const EVENT_STATES: [&str; 4] = ["done", "progress", "fresh", "failed"];

/// The store over one backend.
pub struct SqlStore {
    backend: Box<dyn Backend>,
}

impl SqlStore {
    /// Wraps a backend. Call [`SqlStore::migrate`] before using it.
    pub fn new(backend: Box<dyn Backend>) -> SqlStore {
        SqlStore { backend }
    }

    /// Applies pending migrations in one transaction; returns the versions applied
    /// (empty when the schema was already current).
    pub fn migrate(&self) -> anyhow::Result<Vec<i64>> {
        let now = super::now_ms();
        self.tx(|conn| migrations::apply(conn, now))
    }

    /// Runs `work` in one transaction and returns its result; an error rolls
    /// the transaction back.
    pub fn tx<T>(
        &self,
        work: impl FnOnce(&mut dyn Conn) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut work = Some(work);
        let mut result = None;
        self.backend.transaction(&mut |conn| {
            let work = work.take().context("a transaction body ran twice")?;
            result = Some(work(conn)?);
            Ok(())
        })?;
        result.context("a transaction committed without running its body")
    }
}

/// Column `index` as an integer.
pub fn int(row: &Row, index: usize) -> anyhow::Result<i64> {
    match row.get(index) {
        Some(Value::Int(number)) => Ok(*number),
        other => anyhow::bail!(
            "column {index}: expected an integer, found {}",
            shown(other)
        ),
    }
}

/// Column `index` as an integer or NULL.
pub fn opt_int(row: &Row, index: usize) -> anyhow::Result<Option<i64>> {
    match row.get(index) {
        Some(Value::Int(number)) => Ok(Some(*number)),
        Some(Value::Null) => Ok(None),
        other => anyhow::bail!(
            "column {index}: expected an integer or null, found {}",
            shown(other)
        ),
    }
}

/// Column `index` as text.
pub fn text(row: &Row, index: usize) -> anyhow::Result<String> {
    match row.get(index) {
        Some(Value::Text(text)) => Ok(text.clone()),
        other => anyhow::bail!("column {index}: expected text, found {}", shown(other)),
    }
}

/// Column `index` as text or NULL.
pub fn opt_text(row: &Row, index: usize) -> anyhow::Result<Option<String>> {
    match row.get(index) {
        Some(Value::Text(text)) => Ok(Some(text.clone())),
        Some(Value::Null) => Ok(None),
        other => anyhow::bail!(
            "column {index}: expected text or null, found {}",
            shown(other)
        ),
    }
}

/// The only row of a query, or an error naming `what`.
pub fn single(rows: Vec<Row>, what: &str) -> anyhow::Result<Row> {
    let count = rows.len();
    let mut rows = rows.into_iter();
    match (rows.next(), count) {
        (Some(row), 1) => Ok(row),
        _ => anyhow::bail!("expected one row for {what}, found {count}"),
    }
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None => "no such column".to_string(),
        Some(Value::Null) => "null".to_string(),
        Some(Value::Int(number)) => format!("integer {number}"),
        Some(Value::Text(_)) => "text".to_string(),
    }
}

/// Binds an optional integer.
fn opt(value: Option<i64>) -> Value {
    value.map_or(Value::Null, Value::Int)
}

/// Binds text.
fn txt(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// Binds a count given as `usize`.
fn count(value: usize) -> Value {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Splits a full repository name into its namespace segment and the rest:
/// `ns/a/b` -> (`ns`, `a/b`); `app` -> (`""`, `app`), the global namespace.
pub fn split_repository(full_name: &str) -> anyhow::Result<(&str, &str)> {
    let (namespace, name) = full_name.split_once('/').unwrap_or(("", full_name));
    if name.is_empty() || (full_name.contains('/') && namespace.is_empty()) {
        anyhow::bail!("invalid repository name {full_name:?}");
    }
    Ok((namespace, name))
}

/// Joins a namespace and a repository name back into the full name.
pub fn join_repository(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The id of a repository by full name, if it exists.
pub(super) fn find_repository(
    conn: &mut dyn Conn,
    registry_id: i64,
    full_name: &str,
) -> anyhow::Result<Option<i64>> {
    let (namespace, name) = split_repository(full_name)?;
    let rows = conn.query(
        "SELECT r.id FROM repositories r JOIN namespaces n ON n.id = r.namespace_id \
         WHERE n.registry_id = $1 AND n.name = $2 AND r.name = $3",
        &[Value::Int(registry_id), txt(namespace), txt(name)],
    )?;
    rows.first().map(|row| int(row, 0)).transpose()
}

/// Deletes a repository that has no tags left; returns whether it did.
pub(super) fn delete_repository_if_empty(
    conn: &mut dyn Conn,
    repository_id: i64,
) -> anyhow::Result<bool> {
    let deleted = conn.execute(
        "DELETE FROM repositories WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM tags WHERE repository_id = $1)",
        &[Value::Int(repository_id)],
    )?;
    Ok(deleted > 0)
}

/// The id of a namespace, creating it when missing.
fn ensure_namespace(
    conn: &mut dyn Conn,
    registry_id: i64,
    namespace: &str,
    now: i64,
) -> anyhow::Result<i64> {
    conn.execute(
        "INSERT INTO namespaces (registry_id, name, global, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (registry_id, name) DO NOTHING",
        &[Value::Int(registry_id), txt(namespace), Value::Int(namespace.is_empty().into()), Value::Int(now)],
    )?;
    let rows = conn.query(
        "SELECT id FROM namespaces WHERE registry_id = $1 AND name = $2",
        &[Value::Int(registry_id), txt(namespace)],
    )?;
    int(&single(rows, "the namespace")?, 0)
}

/// The id of a repository, creating it (and its namespace) when missing.
pub(super) fn ensure_repository(
    conn: &mut dyn Conn,
    registry_id: i64,
    full_name: &str,
    now: i64,
) -> anyhow::Result<i64> {
    let (namespace, name) = split_repository(full_name)?;
    let namespace_id = ensure_namespace(conn, registry_id, namespace, now)?;
    conn.execute(
        "INSERT INTO repositories (namespace_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (namespace_id, name) DO NOTHING",
        &[Value::Int(namespace_id), txt(name), Value::Int(now)],
    )?;
    let rows = conn.query(
        "SELECT id FROM repositories WHERE namespace_id = $1 AND name = $2",
        &[Value::Int(namespace_id), txt(name)],
    )?;
    int(&single(rows, "the repository")?, 0)
}

/// Creates or updates one tag inside a transaction: [`Store::upsert_tag`].
/// The common case, a tag that is already there with the same manifest,
/// costs one query.
pub fn write_tag(
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
            "UPDATE tags SET digest = $2, image_id = $3, media_type = $4, size = $5, platforms = $6, \
             scanned = 0, scan_attempts = 0, scan_last_error = NULL, scan_not_before = NULL, \
             scan_claimed_at = NULL, scan_claimant = NULL, scanned_at = NULL, updated_at = $7 \
             WHERE id = $1",
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
/// it is empty, inside a transaction: [`Store::delete_tags_by_digest`].
pub fn delete_tags_with_digest(
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
/// transaction: [`Store::delete_tag`].
pub fn remove_tag(
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

/// Records a pull of a tag inside a transaction: [`Store::record_pull`].
pub fn write_pull(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: &str,
    tag: &str,
    at: i64,
) -> anyhow::Result<bool> {
    let Some(repository_id) = find_repository(conn, registry_id, repository)? else {
        return Ok(false);
    };
    let rows = conn.query(
        "SELECT id FROM tags WHERE repository_id = $1 AND name = $2",
        &[Value::Int(repository_id), txt(tag)],
    )?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    // Pull events can arrive out of order: pulled_at never moves back.
    conn.execute(
        "UPDATE tags SET pulled_at = $2 WHERE id = $1 AND (pulled_at IS NULL OR pulled_at < $2)",
        &[Value::Int(int(row, 0)?), Value::Int(at)],
    )?;
    Ok(true)
}

/// Most rows per chunked statement (multi-row INSERTs of 6 parameters a
/// row, `IN (...)` lists): far below both databases' limits on bound
/// parameters. Chunks are powers of two, so that only a few statement texts
/// exist and stay prepared.
const CHUNK_ROWS: usize = 128;

/// Runs `each` over `items` cut into chunks of [`chunk_rows`] sizes.
pub fn for_chunks<T>(
    items: &[T],
    mut each: impl FnMut(&[T]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut rest = items;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(chunk_rows(rest.len()));
        each(chunk)?;
        rest = after;
    }
    Ok(())
}

/// `count` numbered placeholders from `$first` on, for an `IN (...)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    let numbers: Vec<String> = (first..first + count)
        .map(|number| format!("${number}"))
        .collect();
    numbers.join(", ")
}

/// The largest power of two at most `remaining` and [`CHUNK_ROWS`].
fn chunk_rows(remaining: usize) -> usize {
    let mut rows = CHUNK_ROWS;
    while rows > remaining {
        rows /= 2;
    }
    rows.max(1)
}

/// The claim of [`Store::claim_events`]: `$1` now, `$2` the claimant, `$3`
/// the oldest live claim time, `$4` the batch size.
///
/// Claimable: fresh past its backoff, or claimed under an expired lease; and
/// no earlier event of the same repository is blocking it (waiting for a
/// retry, or claimed under a live lease), each asked of its own small index.
/// On PostgreSQL, SKIP LOCKED keeps rows other transactions are writing out
/// of the batch. SQLite, having no statistics, would read every pending
/// event through the status index and sort them all; it is told to walk the
/// pending events in id order and stop at the limit.
pub fn claim_sql(dialect: Dialect) -> String {
    let (indexed_by, skip_locked) = match dialect {
        Dialect::Sqlite => (" INDEXED BY registry_events_pending_id", ""),
        Dialect::Postgres => ("", " FOR UPDATE SKIP LOCKED"),
    };
    format!(
        "UPDATE registry_events SET status = 1, claimed_at = $1, claimant = $2, updated_at = $1 \
         WHERE id IN (SELECT e.id FROM registry_events e{indexed_by} \
           WHERE e.status IN (1, 2) \
           AND ((e.status = 2 AND COALESCE(e.not_before, 0) <= $1) OR (e.status = 1 AND e.claimed_at < $3)) \
           AND NOT EXISTS (SELECT 1 FROM registry_events w \
             WHERE w.repository = e.repository AND w.status = 2 AND w.not_before > $1 AND w.id < e.id) \
           AND NOT EXISTS (SELECT 1 FROM registry_events c \
             WHERE c.repository = e.repository AND c.status = 1 AND c.claimed_at >= $3 AND c.id < e.id) \
           ORDER BY e.id LIMIT $4{skip_locked}) \
         RETURNING id, event_id, action, repository, data, attempts"
    )
}

/// The lookup of [`Store::known_manifests`] for `count` digests (`$2`...),
/// of registry `$1`: complete rows only (a size, a media type, and a config
/// digest or, for an index, platforms), found through the digest index.
pub fn known_manifests_sql(count: usize) -> String {
    format!(
        "SELECT t.digest, t.image_id, t.media_type, t.size, t.platforms \
         FROM tags t JOIN repositories r ON r.id = t.repository_id \
         JOIN namespaces n ON n.id = r.namespace_id \
         WHERE n.registry_id = $1 AND t.size IS NOT NULL AND t.media_type <> '' \
         AND (t.image_id <> '' OR t.platforms IS NOT NULL) AND t.digest IN ({})",
        placeholders(2, count)
    )
}

/// Key of the PostgreSQL advisory lock that serialises event claims
/// ("regkevt" in ASCII).
const EVENT_CLAIM_LOCK_KEY: i64 = 0x0072_6567_6b65_7674;

/// Marks the events `ids` done where the claim is still `claimant`'s, in
/// chunks; returns the ids it marked. The claimant stays on the row: it
/// tells who applied the event.
fn mark_done(
    conn: &mut dyn Conn,
    claimant: &str,
    ids: &[i64],
    now: i64,
) -> anyhow::Result<HashSet<i64>> {
    let mut marked = HashSet::new();
    for_chunks(ids, |chunk| {
        let mut params = vec![txt(claimant), Value::Int(now)];
        params.extend(chunk.iter().map(|id| Value::Int(*id)));
        let rows = conn.query(
            &format!(
                "UPDATE registry_events SET status = 0, claimed_at = NULL, last_error = NULL, \
                 not_before = NULL, updated_at = $2 \
                 WHERE claimant = $1 AND status = 1 AND id IN ({}) RETURNING id",
                placeholders(3, chunk.len())
            ),
            &params,
        )?;
        for row in &rows {
            marked.insert(int(row, 0)?);
        }
        Ok(())
    })?;
    Ok(marked)
}

/// Writes the effect of one event inside the caller's transaction.
fn apply_effect(
    conn: &mut dyn Conn,
    registry_id: i64,
    effect: &EventEffect,
    now: i64,
) -> anyhow::Result<()> {
    match effect {
        EventEffect::Nothing => {}
        EventEffect::Upsert(write) => {
            write_tag(conn, registry_id, write, now)?;
        }
        EventEffect::DeleteDigest { repository, digest } => {
            delete_tags_with_digest(conn, registry_id, repository, digest)?;
        }
        EventEffect::DeleteTag { repository, tag } => {
            remove_tag(conn, registry_id, repository, tag)?;
        }
        EventEffect::Pull {
            repository,
            tag,
            digest,
            at,
        } => {
            if let Some(tag) = tag {
                write_pull(conn, registry_id, repository, tag, *at)?;
            } else if let Some(digest) = digest {
                write_pull_of_digest(conn, registry_id, repository, digest, *at)?;
            }
        }
    }
    Ok(())
}

/// Sets `pulled_at` of the repository's tags with `digest` (a pull by
/// digest), never moving it back. Returns how many tags moved.
fn write_pull_of_digest(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: &str,
    digest: &str,
    at: i64,
) -> anyhow::Result<u64> {
    let Some(repository_id) = find_repository(conn, registry_id, repository)? else {
        return Ok(0);
    };
    conn.execute(
        "UPDATE tags SET pulled_at = $3 WHERE repository_id = $1 AND digest = $2 \
         AND (pulled_at IS NULL OR pulled_at < $3)",
        &[Value::Int(repository_id), txt(digest), Value::Int(at)],
    )
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
        scanned: int(row, 8)?,
        pulled_at: opt_int(row, 9)?,
        created_at: int(row, 10)?,
        updated_at: int(row, 11)?,
    })
}

/// Counts rows grouped by a small integer code, named by `words`; every word
/// appears (with 0 when absent), unknown codes as `code N`.
fn counts_by_code(
    conn: &mut dyn Conn,
    sql: &str,
    words: &[&str],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, i64> =
        words.iter().map(|word| (word.to_string(), 0)).collect();
    for row in conn.query(sql, &[])? {
        let code = int(&row, 0)?;
        let word = usize::try_from(code)
            .ok()
            .and_then(|index| words.get(index))
            .map_or_else(|| format!("code {code}"), |word| word.to_string());
        *counts.entry(word).or_insert(0) += int(&row, 1)?;
    }
    Ok(counts)
}

impl Store for SqlStore {
    fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    fn ping(&self) -> anyhow::Result<()> {
        self.tx(|conn| conn.query("SELECT 1", &[]).map(|_| ()))
            .context("pinging the database")
    }

    fn start_run(&self, run: &super::NewRun) -> anyhow::Result<i64> {
        self.tx(|conn| {
            let rows = conn.query(
                "INSERT INTO job_runs (job, handler, trigger, started_at, counts, claimant, heartbeat_at, expires_at) \
                 VALUES ($1, $2, $3, $4, '{}', $5, $4, $6) RETURNING id",
                &[
                    txt(&run.job),
                    txt(&run.handler),
                    txt(&run.trigger),
                    Value::Int(run.started_at),
                    txt(&run.claimant),
                    Value::Int(run.expires_at),
                ],
            )?;
            int(&single(rows, "the new run")?, 0)
        })
        .with_context(|| format!("recording the start of a run of {}", run.job))
    }

    fn finish_run(
        &self,
        run_id: i64,
        finished_at: i64,
        outcome: RunOutcome,
        counts: &BTreeMap<String, i64>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let counts = serde_json::to_string(counts).context("encoding run counts")?;
        self.tx(|conn| {
            let changed = conn.execute(
                "UPDATE job_runs SET finished_at = $2, outcome = $3, counts = $4, error = $5 WHERE id = $1",
                &[
                    Value::Int(run_id),
                    Value::Int(finished_at),
                    txt(outcome.as_str()),
                    Value::Text(counts),
                    error.map_or(Value::Null, txt),
                ],
            )?;
            anyhow::ensure!(changed == 1, "no such run");
            Ok(())
        })
        .with_context(|| format!("recording the end of run {run_id}"))
    }

    fn prune_runs(&self, job: &str, keep: usize) -> anyhow::Result<u64> {
        self.tx(|conn| {
            conn.execute(
                "DELETE FROM job_runs WHERE job = $1 AND id NOT IN \
                 (SELECT id FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2)",
                &[txt(job), count(keep)],
            )
        })
        .with_context(|| format!("pruning old runs of {job}"))
    }

    fn recent_runs(&self, job: &str, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        self.tx(|conn| {
            let rows = conn.query(
                &format!(
                    "SELECT {} FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2",
                    super::runs::RECORD_COLUMNS
                ),
                &[txt(job), count(limit)],
            )?;
            rows.iter().map(super::runs::record).collect()
        })
        .with_context(|| format!("reading recent runs of {job}"))
    }

    fn heartbeat_run(&self, run_id: i64, now: i64, expires_at: i64) -> anyhow::Result<bool> {
        self.tx(|conn| super::runs::heartbeat(conn, run_id, now, expires_at))
            .with_context(|| format!("renewing the heartbeat of run {run_id}"))
    }

    fn abandon_expired_runs(
        &self,
        job: Option<&str>,
        now: i64,
        abandon_after_ms: i64,
    ) -> anyhow::Result<Vec<RunRecord>> {
        self.tx(|conn| super::runs::abandon_expired(conn, job, now, abandon_after_ms))
            .with_context(|| match job {
                Some(job) => format!("recording abandoned runs of {job}"),
                None => "recording abandoned runs".to_string(),
            })
    }

    fn queue_counts(&self) -> anyhow::Result<QueueCounts> {
        self.tx(|conn| {
            let events = counts_by_code(
                conn,
                "SELECT status, COUNT(*) FROM registry_events GROUP BY status",
                &EVENT_STATES,
            )?;
            let tags_by_scan = counts_by_code(
                conn,
                "SELECT scanned, COUNT(*) FROM tags GROUP BY scanned",
                &SCAN_STATES,
            )?;
            let repositories = int(
                &single(
                    conn.query("SELECT COUNT(*) FROM repositories", &[])?,
                    "the count",
                )?,
                0,
            )?;
            let tags = int(
                &single(conn.query("SELECT COUNT(*) FROM tags", &[])?, "the count")?,
                0,
            )?;
            Ok(QueueCounts {
                events,
                tags_by_scan,
                repositories,
                tags,
                vulnerabilities: super::scans::counts(conn)?,
            })
        })
        .context("counting queues")
    }

    fn ensure_registry(&self, hostname: &str) -> anyhow::Result<i64> {
        let now = super::now_ms();
        self.tx(|conn| {
            conn.execute(
                "INSERT INTO registries (name, hostname, created_at, updated_at) VALUES ($1, $1, $2, $2) \
                 ON CONFLICT (hostname) DO NOTHING",
                &[txt(hostname), Value::Int(now)],
            )?;
            let rows = conn.query("SELECT id FROM registries WHERE hostname = $1", &[txt(hostname)])?;
            let registry_id = int(&single(rows, "the registry")?, 0)?;
            ensure_namespace(conn, registry_id, "", now)?;
            Ok(registry_id)
        })
        .with_context(|| format!("recording registry {hostname}"))
    }

    fn upsert_tag(
        &self,
        registry_id: i64,
        write: &TagWrite,
        now: i64,
    ) -> anyhow::Result<TagChange> {
        self.tx(|conn| write_tag(conn, registry_id, write, now))
            .with_context(|| format!("writing tag {}:{}", write.repository, write.tag))
    }

    fn delete_tags_by_digest(
        &self,
        registry_id: i64,
        repository: &str,
        digest: &str,
    ) -> anyhow::Result<u64> {
        self.tx(|conn| delete_tags_with_digest(conn, registry_id, repository, digest))
            .with_context(|| format!("deleting the tags of {repository} at {digest}"))
    }

    fn delete_tag(&self, registry_id: i64, repository: &str, tag: &str) -> anyhow::Result<bool> {
        self.tx(|conn| remove_tag(conn, registry_id, repository, tag))
            .with_context(|| format!("deleting tag {repository}:{tag}"))
    }

    fn record_pull(
        &self,
        registry_id: i64,
        repository: &str,
        tag: &str,
        at: i64,
    ) -> anyhow::Result<bool> {
        self.tx(|conn| write_pull(conn, registry_id, repository, tag, at))
            .with_context(|| format!("recording a pull of {repository}:{tag}"))
    }

    fn repositories(&self, registry_id: i64) -> anyhow::Result<Vec<String>> {
        self.tx(|conn| {
            let rows = conn.query(
                "SELECT n.name, r.name FROM repositories r JOIN namespaces n ON n.id = r.namespace_id \
                 WHERE n.registry_id = $1",
                &[Value::Int(registry_id)],
            )?;
            // Sorted here, not in SQL: collations differ between databases.
            let mut names = rows
                .iter()
                .map(|row| Ok(join_repository(&text(row, 0)?, &text(row, 1)?)))
                .collect::<anyhow::Result<Vec<String>>>()?;
            names.sort();
            Ok(names)
        })
        .context("listing repositories")
    }

    fn tags(&self, registry_id: i64, repository: Option<&str>) -> anyhow::Result<Vec<TagRecord>> {
        self.tx(|conn| {
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
            let mut tags = rows.iter().map(tag_record).collect::<anyhow::Result<Vec<TagRecord>>>()?;
            tags.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
            Ok(tags)
        })
        .with_context(|| match repository {
            Some(name) => format!("listing tags of {name}"),
            None => "listing tags".to_string(),
        })
    }

    fn known_manifests(
        &self,
        registry_id: i64,
        digests: &[String],
    ) -> anyhow::Result<BTreeMap<String, KnownManifest>> {
        self.tx(|conn| {
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
        })
        .with_context(|| format!("looking up {} manifests in the tags", digests.len()))
    }

    fn scan_candidates(
        &self,
        registry_id: i64,
        policy: &super::ScanPolicy,
    ) -> anyhow::Result<Vec<super::ScanCandidate>> {
        self.tx(|conn| super::scans::candidates(conn, registry_id, policy))
            .context("listing images due for a scan")
    }

    fn claim_scan(
        &self,
        digest: &str,
        claimant: &str,
        policy: &super::ScanPolicy,
    ) -> anyhow::Result<Option<super::ScanClaim>> {
        self.tx(|conn| super::scans::claim(conn, digest, claimant, policy))
            .with_context(|| format!("claiming {digest} for a scan"))
    }

    fn renew_scan(&self, digest: &str, claimant: &str, now: i64) -> anyhow::Result<u64> {
        self.tx(|conn| super::scans::renew(conn, digest, claimant, now))
            .with_context(|| format!("renewing the lease on {digest}"))
    }

    fn release_scan(&self, digest: &str, claimant: &str) -> anyhow::Result<u64> {
        self.tx(|conn| super::scans::release(conn, digest, claimant))
            .with_context(|| format!("releasing the scan of {digest}"))
    }

    fn image_vulnerabilities(
        &self,
        registry_id: i64,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<Option<super::ImageVulnerabilities>> {
        self.tx(|conn| super::scans::image(conn, registry_id, repository, tag))
            .with_context(|| format!("reading the vulnerabilities of {repository}:{tag}"))
    }

    fn vulnerability_counts(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        self.tx(super::scans::counts)
            .context("counting vulnerabilities")
    }

    fn repositories_with_recent_events(
        &self,
        since: i64,
    ) -> anyhow::Result<std::collections::BTreeSet<String>> {
        self.tx(|conn| super::sync_pass::busy_repositories(conn, since))
            .context("listing repositories with recent registry events")
    }

    fn apply_repository_syncs(
        &self,
        registry_id: i64,
        syncs: &[super::RepositorySync],
        since: i64,
        now: i64,
    ) -> anyhow::Result<Vec<super::SyncApplied>> {
        self.tx(|conn| {
            syncs
                .iter()
                .map(|sync| {
                    super::sync_pass::apply(conn, registry_id, sync, since, now)
                        .with_context(|| format!("applying the sync of {}", sync.repository))
                })
                .collect()
        })
        .with_context(|| format!("applying the sync of {} repositories", syncs.len()))
    }

    fn try_advisory_lock(&self, key: i64) -> anyhow::Result<Option<super::AdvisoryLock>> {
        self.backend.try_advisory_lock(key)
    }

    fn prune_scan_results(&self) -> anyhow::Result<u64> {
        self.tx(super::scans::prune)
            .context("pruning scan results of deleted images")
    }

    fn scan_reports(&self, digest: &str) -> anyhow::Result<Vec<super::ScanReport>> {
        self.tx(|conn| super::scans::reports(conn, digest))
            .with_context(|| format!("reading the scan reports of {digest}"))
    }

    fn settle_scan(
        &self,
        digest: &str,
        claimant: &str,
        settlement: &super::ScanSettlement,
        now: i64,
    ) -> anyhow::Result<super::ScanSettled> {
        self.tx(|conn| super::scans::settle(conn, digest, claimant, settlement, now))
            .with_context(|| format!("storing the scan of {digest}"))
    }

    fn forget_scanners(&self, enabled: &[String]) -> anyhow::Result<u64> {
        self.tx(|conn| super::scans::forget_scanners(conn, enabled))
            .context("deleting the results of scanners no longer enabled")
    }

    fn scanner_summaries(&self) -> anyhow::Result<Vec<super::ScannerSummary>> {
        self.tx(super::scans::summaries)
            .context("summarising the scanners' reports")
    }

    fn insert_events(&self, events: &[NewEvent], now: i64) -> anyhow::Result<u64> {
        self.tx(|conn| {
            let mut inserted = 0;
            for event in events {
                // A redelivery carries the same id: not a new event.
                inserted += conn.execute(
                    "INSERT INTO registry_events (event_id, status, action, repository, data, attempts, \
                     created_at, updated_at) VALUES ($1, 2, $2, $3, $4, 0, $5, $5) \
                     ON CONFLICT (event_id) DO NOTHING",
                    &[
                        txt(&event.event_id),
                        txt(&event.action),
                        txt(&event.repository),
                        txt(&event.data),
                        Value::Int(now),
                    ],
                )?;
            }
            Ok(inserted)
        })
        .with_context(|| format!("storing {} events", events.len()))
    }

    fn claim_events(&self, claim: &EventClaim) -> anyhow::Result<Vec<ClaimedEvent>> {
        self.tx(|conn| {
            // Claims are serialised so that the ordering check sees every
            // other claim: SQLite's BEGIN IMMEDIATE already holds the write
            // lock; PostgreSQL takes a transaction advisory lock (the
            // intake's inserts do not wait for it).
            if conn.dialect() == Dialect::Postgres {
                conn.query(
                    "SELECT pg_advisory_xact_lock($1)",
                    &[Value::Int(EVENT_CLAIM_LOCK_KEY)],
                )?;
            }
            let sql = claim_sql(conn.dialect());
            let rows = conn.query(
                &sql,
                &[
                    Value::Int(claim.now),
                    txt(&claim.claimant),
                    Value::Int(claim.expired_before),
                    count(claim.limit),
                ],
            )?;
            let mut claimed = rows
                .iter()
                .map(|row| {
                    Ok(ClaimedEvent {
                        id: int(row, 0)?,
                        event_id: text(row, 1)?,
                        action: text(row, 2)?,
                        repository: text(row, 3)?,
                        data: text(row, 4)?,
                        attempts: int(row, 5)?,
                    })
                })
                .collect::<anyhow::Result<Vec<ClaimedEvent>>>()?;
            claimed.sort_by_key(|event| event.id);
            Ok(claimed)
        })
        .context("claiming events")
    }

    fn apply_events(
        &self,
        registry_id: i64,
        claimant: &str,
        applied: &[AppliedEvent],
        now: i64,
    ) -> anyhow::Result<u64> {
        self.tx(|conn| {
            // Only the events whose claim is still ours: after the lease
            // expired someone else applies them (and maybe later events of
            // their repository), and writing them now would undo theirs.
            let ids: Vec<i64> = applied.iter().map(|event| event.id).collect();
            let ours = mark_done(conn, claimant, &ids, now)?;
            let mine: Vec<&AppliedEvent> = applied
                .iter()
                .filter(|event| ours.contains(&event.id))
                .collect();
            // In order; a run of pushes is written per repository at once.
            let mut rest = mine.as_slice();
            while let Some(first) = rest.first() {
                let pushes = rest
                    .iter()
                    .take_while(|event| {
                        matches!(event.effect, EventEffect::Upsert(_) | EventEffect::Nothing)
                    })
                    .count();
                if pushes == 0 {
                    apply_effect(conn, registry_id, &first.effect, now)
                        .with_context(|| format!("applying event {}", first.id))?;
                    rest = &rest[1..];
                    continue;
                }
                let (run, after) = rest.split_at(pushes);
                let writes: Vec<&TagWrite> = run
                    .iter()
                    .filter_map(|event| match &event.effect {
                        EventEffect::Upsert(write) => Some(write),
                        _ => None,
                    })
                    .collect();
                tag_writes::write_tags_by_repository(conn, registry_id, &writes, now)
                    .with_context(|| format!("writing the tags of {} push events", writes.len()))?;
                rest = after;
            }
            Ok(mine.len() as u64)
        })
        .with_context(|| format!("applying {} events", applied.len()))
    }

    fn retry_event(
        &self,
        id: i64,
        claimant: &str,
        error: &str,
        not_before: i64,
        now: i64,
    ) -> anyhow::Result<bool> {
        self.tx(|conn| {
            let changed = conn.execute(
                "UPDATE registry_events SET status = 2, attempts = attempts + 1, last_error = $3, \
                 not_before = $4, claimed_at = NULL, claimant = NULL, updated_at = $5 \
                 WHERE id = $1 AND claimant = $2 AND status = 1",
                &[
                    Value::Int(id),
                    txt(claimant),
                    txt(error),
                    Value::Int(not_before),
                    Value::Int(now),
                ],
            )?;
            Ok(changed > 0)
        })
        .with_context(|| format!("putting event {id} back for a retry"))
    }

    fn release_events(&self, ids: &[i64], claimant: &str) -> anyhow::Result<u64> {
        self.tx(|conn| {
            let mut released = 0;
            for id in ids {
                released += conn.execute(
                    "UPDATE registry_events SET status = 2, claimed_at = NULL, claimant = NULL \
                     WHERE id = $1 AND claimant = $2 AND status = 1",
                    &[Value::Int(*id), txt(claimant)],
                )?;
            }
            Ok(released)
        })
        .with_context(|| format!("releasing {} events", ids.len()))
    }

    fn fail_event(&self, id: i64, claimant: &str, error: &str, now: i64) -> anyhow::Result<bool> {
        self.tx(|conn| {
            let changed = conn.execute(
                "UPDATE registry_events SET status = 3, attempts = attempts + 1, last_error = $3, \
                 not_before = NULL, claimed_at = NULL, updated_at = $4 \
                 WHERE id = $1 AND claimant = $2 AND status = 1",
                &[Value::Int(id), txt(claimant), txt(error), Value::Int(now)],
            )?;
            Ok(changed > 0)
        })
        .with_context(|| format!("marking event {id} failed"))
    }

    fn retry_failed_events(&self, now: i64) -> anyhow::Result<u64> {
        self.tx(|conn| {
            conn.execute(
                "UPDATE registry_events SET status = 2, attempts = 0, not_before = NULL, claimant = NULL, \
                 updated_at = $1 WHERE status = 3",
                &[Value::Int(now)],
            )
        })
        .context("putting failed events back to fresh")
    }

    fn prune_done_events(&self, older_than: i64) -> anyhow::Result<u64> {
        self.tx(|conn| {
            conn.execute(
                "DELETE FROM registry_events WHERE status = 0 AND updated_at < $1",
                &[Value::Int(older_than)],
            )
        })
        .context("pruning done events")
    }

    fn failed_events(&self, limit: usize) -> anyhow::Result<Vec<FailedEvent>> {
        self.tx(|conn| {
            let rows = conn.query(
                "SELECT id, event_id, action, repository, attempts, COALESCE(last_error, ''), updated_at \
                 FROM registry_events WHERE status = 3 ORDER BY updated_at DESC, id DESC LIMIT $1",
                &[count(limit)],
            )?;
            rows.iter()
                .map(|row| {
                    Ok(FailedEvent {
                        id: int(row, 0)?,
                        event_id: text(row, 1)?,
                        action: text(row, 2)?,
                        repository: text(row, 3)?,
                        attempts: int(row, 4)?,
                        last_error: text(row, 5)?,
                        updated_at: int(row, 6)?,
                    })
                })
                .collect()
        })
        .context("listing failed events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_repository_names_at_the_first_slash() {
        assert_eq!(split_repository("app").unwrap(), ("", "app"));
        assert_eq!(split_repository("ns/app").unwrap(), ("ns", "app"));
        assert_eq!(split_repository("a/b/c").unwrap(), ("a", "b/c"));
        assert!(split_repository("").is_err());
        assert!(split_repository("/app").is_err());
        assert!(split_repository("ns/").is_err());
    }

    #[test]
    fn joins_repository_names_back() {
        for full_name in ["app", "ns/app", "a/b/c"] {
            let (namespace, name) = split_repository(full_name).unwrap();
            assert_eq!(join_repository(namespace, name), full_name);
        }
    }

    #[test]
    fn row_accessors_explain_mismatches() {
        let row: Row = vec![Value::Int(7), Value::Null, Value::Text("x".into())];
        assert_eq!(int(&row, 0).unwrap(), 7);
        assert_eq!(opt_int(&row, 1).unwrap(), None);
        assert_eq!(opt_text(&row, 1).unwrap(), None);
        assert_eq!(text(&row, 2).unwrap(), "x");
        assert_eq!(
            format!("{:#}", int(&row, 2).unwrap_err()),
            "column 2: expected an integer, found text"
        );
        assert_eq!(
            format!("{:#}", text(&row, 5).unwrap_err()),
            "column 5: expected text, found no such column"
        );
        assert_eq!(
            format!("{:#}", int(&row, 1).unwrap_err()),
            "column 1: expected an integer, found null"
        );
    }

    /// SQLite's plan of `sql` with `params`, one step per line.
    fn sqlite_plan(sql: &str, params: &[Value]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            super::super::sqlite::SqliteBackend::open(&dir.path().join("plan.db")).unwrap();
        let store = SqlStore::new(Box::new(backend));
        store.migrate().unwrap();
        let plan = store
            .tx(|conn| conn.query(&format!("EXPLAIN QUERY PLAN {sql}"), params))
            .unwrap();
        let steps: Vec<String> = plan.iter().map(|row| text(row, 3).unwrap()).collect();
        steps.join("\n")
    }

    /// The claim must stay linear in the backlog: walk the pending events in
    /// id order up to the limit (no sort of all of them), and ask the two
    /// blocking-event indexes instead of scanning each repository's events.
    #[test]
    fn sqlite_claims_through_the_pending_and_blocking_indexes() {
        let params = [Value::Int(1), txt("me"), Value::Int(0), Value::Int(500)];
        let plan = sqlite_plan(&claim_sql(Dialect::Sqlite), &params);
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        for index in [
            "registry_events_pending_id",
            "registry_events_waiting (repository=? AND not_before>?)",
            "registry_events_claimed (repository=? AND claimed_at>?)",
        ] {
            assert!(plan.contains(index), "{index} not in\n{plan}");
        }
    }

    #[test]
    fn sqlite_looks_known_manifests_up_by_digest() {
        let mut params = vec![Value::Int(1)];
        params.extend((0..4).map(|n| txt(&format!("sha256:{n}"))));
        let plan = sqlite_plan(&known_manifests_sql(4), &params);
        assert!(
            plan.starts_with("SEARCH t USING INDEX tags_digest"),
            "{plan}"
        );
    }

    #[test]
    fn statements_are_cut_into_powers_of_two() {
        assert_eq!(chunk_rows(1), 1);
        assert_eq!(chunk_rows(10), 8);
        assert_eq!(chunk_rows(2), 2);
        assert_eq!(chunk_rows(127), 64);
        assert_eq!(chunk_rows(1000), CHUNK_ROWS);
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }

    #[test]
    fn single_wants_exactly_one_row() {
        assert!(single(vec![], "x").is_err());
        assert!(single(vec![vec![], vec![]], "x").is_err());
        assert!(single(vec![vec![Value::Int(1)]], "x").is_ok());
    }
}
