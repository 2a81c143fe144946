//! The `registry_events` queue in SQL, inside the caller's transaction:
//! storing the intake's events, claiming a batch in arrival order under a
//! lease ([`claim_sql`], the one statement whose SQLite and PostgreSQL
//! versions differ), applying claimed events (marked done in chunks while
//! the claim is still the caller's, then their effects in order, runs of
//! pushes through `tag_writes.rs`), retries, failures, pruning, and the
//! pulls an event records on its tags. Built on `rows.rs`, `registries.rs`,
//! `tags.rs` and `tag_writes.rs`; nothing here opens a transaction or
//! reads an event's JSON.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context as _;

use super::codes::{event_status, EventStatus};
use super::registries::find_repository;
use super::rows::{count, counts_by_code, for_chunks, int, placeholders, text, txt};
use super::tags::{delete_tags_with_digest, remove_tag, write_tag};
use super::{
    tag_writes, AppliedEvent, ClaimedEvent, Conn, Dialect, EventClaim, EventEffect, FailedEvent,
    NewEvent, TagWrite, Value,
};

/// Key of the PostgreSQL advisory lock that serialises event claims
/// ("regkevt" in ASCII).
const EVENT_CLAIM_LOCK_KEY: i64 = 0x0072_6567_6b65_7674;

/// Stores `events`, status fresh, skipping an `event_id` already stored;
/// returns how many rows were inserted: [`super::Store::insert_events`].
pub(super) fn insert(conn: &mut dyn Conn, events: &[NewEvent], now: i64) -> anyhow::Result<u64> {
    let mut inserted = 0;
    for event in events {
        // A redelivery carries the same id: not a new event.
        inserted += conn.execute(
            concat!(
                "INSERT INTO registry_events (event_id, status, action, repository, data, attempts, \
                 created_at, updated_at) VALUES ($1, ",
                event_status!(fresh),
                ", $2, $3, $4, 0, $5, $5) ON CONFLICT (event_id) DO NOTHING"
            ),
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
}

/// The claim of [`super::Store::claim_events`]: `$1` now, `$2` the
/// claimant, `$3` the oldest live claim time, `$4` the batch size.
///
/// Claimable: fresh past its backoff, or claimed under an expired lease; and
/// no earlier event of the same repository is blocking it (waiting for a
/// retry, or claimed under a live lease), each asked of its own small index.
/// On PostgreSQL, SKIP LOCKED keeps rows other transactions are writing out
/// of the batch. SQLite, having no statistics, would read every pending
/// event through the status index and sort them all; it is told to walk the
/// pending events in id order and stop at the limit.
pub(super) fn claim_sql(dialect: Dialect) -> String {
    let (indexed_by, skip_locked) = match dialect {
        Dialect::Sqlite => (" INDEXED BY registry_events_pending_id", ""),
        Dialect::Postgres => ("", " FOR UPDATE SKIP LOCKED"),
    };
    format!(
        concat!(
            "UPDATE registry_events SET status = ",
            event_status!(progress),
            ", claimed_at = $1, claimant = $2, updated_at = $1 \
         WHERE id IN (SELECT e.id FROM registry_events e{indexed_by} \
           WHERE e.status IN (",
            event_status!(progress),
            ", ",
            event_status!(fresh),
            ") \
           AND ((e.status = ",
            event_status!(fresh),
            " AND COALESCE(e.not_before, 0) <= $1) OR (e.status = ",
            event_status!(progress),
            " AND e.claimed_at < $3)) \
           AND NOT EXISTS (SELECT 1 FROM registry_events w \
             WHERE w.repository = e.repository AND w.status = ",
            event_status!(fresh),
            " AND w.not_before > $1 AND w.id < e.id) \
           AND NOT EXISTS (SELECT 1 FROM registry_events c \
             WHERE c.repository = e.repository AND c.status = ",
            event_status!(progress),
            " AND c.claimed_at >= $3 AND c.id < e.id) \
           ORDER BY e.id LIMIT $4{skip_locked}) \
         RETURNING id, event_id, action, repository, data, attempts"
        ),
        indexed_by = indexed_by,
        skip_locked = skip_locked
    )
}

/// Claims a batch as [`claim_sql`] says, in id order:
/// [`super::Store::claim_events`].
pub(super) fn claim(conn: &mut dyn Conn, claim: &EventClaim) -> anyhow::Result<Vec<ClaimedEvent>> {
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
}

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
                concat!(
                    "UPDATE registry_events SET status = ",
                    event_status!(done),
                    ", claimed_at = NULL, last_error = NULL, \
                 not_before = NULL, updated_at = $2 \
                 WHERE claimant = $1 AND status = ",
                    event_status!(progress),
                    " AND id IN ({}) RETURNING id"
                ),
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

/// Marks the events of `applied` still claimed by `claimant` done and
/// writes their effects, in order; returns how many it marked:
/// [`super::Store::apply_events`].
pub(super) fn apply(
    conn: &mut dyn Conn,
    registry_id: i64,
    claimant: &str,
    applied: &[AppliedEvent],
    now: i64,
) -> anyhow::Result<u64> {
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

/// Records a pull of a tag inside a transaction: [`super::Store::record_pull`].
pub(super) fn write_pull(
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

/// Puts a claimed event back to fresh for a retry: [`super::Store::retry_event`].
pub(super) fn retry(
    conn: &mut dyn Conn,
    id: i64,
    claimant: &str,
    error: &str,
    not_before: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let changed = conn.execute(
        concat!(
            "UPDATE registry_events SET status = ",
            event_status!(fresh),
            ", attempts = attempts + 1, last_error = $3, \
         not_before = $4, claimed_at = NULL, claimant = NULL, updated_at = $5 \
         WHERE id = $1 AND claimant = $2 AND status = ",
            event_status!(progress)
        ),
        &[
            Value::Int(id),
            txt(claimant),
            txt(error),
            Value::Int(not_before),
            Value::Int(now),
        ],
    )?;
    Ok(changed > 0)
}

/// Gives claimed events back without an attempt: [`super::Store::release_events`].
pub(super) fn release(conn: &mut dyn Conn, ids: &[i64], claimant: &str) -> anyhow::Result<u64> {
    let mut released = 0;
    for id in ids {
        released += conn.execute(
            concat!(
                "UPDATE registry_events SET status = ",
                event_status!(fresh),
                ", claimed_at = NULL, claimant = NULL \
             WHERE id = $1 AND claimant = $2 AND status = ",
                event_status!(progress)
            ),
            &[Value::Int(*id), txt(claimant)],
        )?;
    }
    Ok(released)
}

/// Marks a claimed event failed for good: [`super::Store::fail_event`].
pub(super) fn fail(
    conn: &mut dyn Conn,
    id: i64,
    claimant: &str,
    error: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let changed = conn.execute(
        concat!(
            "UPDATE registry_events SET status = ",
            event_status!(failed),
            ", attempts = attempts + 1, last_error = $3, \
         not_before = NULL, claimed_at = NULL, updated_at = $4 \
         WHERE id = $1 AND claimant = $2 AND status = ",
            event_status!(progress)
        ),
        &[Value::Int(id), txt(claimant), txt(error), Value::Int(now)],
    )?;
    Ok(changed > 0)
}

/// Puts every failed event back to fresh: [`super::Store::retry_failed_events`].
pub(super) fn retry_failed(conn: &mut dyn Conn, now: i64) -> anyhow::Result<u64> {
    conn.execute(
        concat!(
            "UPDATE registry_events SET status = ",
            event_status!(fresh),
            ", attempts = 0, not_before = NULL, claimant = NULL, \
         updated_at = $1 WHERE status = ",
            event_status!(failed)
        ),
        &[Value::Int(now)],
    )
}

/// Deletes done events last changed before `older_than`:
/// [`super::Store::prune_done_events`].
pub(super) fn prune_done(conn: &mut dyn Conn, older_than: i64) -> anyhow::Result<u64> {
    conn.execute(
        concat!(
            "DELETE FROM registry_events WHERE status = ",
            event_status!(done),
            " AND updated_at < $1"
        ),
        &[Value::Int(older_than)],
    )
}

/// The latest `limit` failed events, newest first: [`super::Store::failed_events`].
pub(super) fn failed(conn: &mut dyn Conn, limit: usize) -> anyhow::Result<Vec<FailedEvent>> {
    let rows = conn.query(
        concat!("SELECT id, event_id, action, repository, attempts, COALESCE(last_error, ''), updated_at \
         FROM registry_events WHERE status = ", event_status!(failed), " ORDER BY updated_at DESC, id DESC LIMIT $1"),
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
}

/// Events by status word (all four words present).
pub(super) fn counts_by_status(conn: &mut dyn Conn) -> anyhow::Result<BTreeMap<String, i64>> {
    counts_by_code(
        conn,
        "SELECT status, COUNT(*) FROM registry_events GROUP BY status",
        &EventStatus::ALL.map(EventStatus::word),
    )
}

/// The first waiting event in arrival order. SQLite, without statistics,
/// would sort every event of the status index; it is told to read the first
/// row of the pending index instead.
fn oldest_waiting_sql(dialect: Dialect) -> String {
    let indexed_by = match dialect {
        Dialect::Sqlite => " INDEXED BY registry_events_pending_id",
        Dialect::Postgres => "",
    };
    format!(
        "SELECT created_at FROM registry_events{indexed_by} WHERE status IN (1, 2) \
         ORDER BY id LIMIT 1"
    )
}

/// When the oldest event still waiting (fresh or in progress) arrived: the
/// first row of the pending index, whose ids follow arrival.
pub(super) fn oldest_waiting(conn: &mut dyn Conn) -> anyhow::Result<Option<i64>> {
    let rows = conn.query(&oldest_waiting_sql(conn.dialect()), &[])?;
    rows.first().map(|row| int(row, 0)).transpose()
}

/// The claimants of events in progress.
pub fn claimants(conn: &mut dyn Conn) -> anyhow::Result<Vec<String>> {
    let rows = conn.query(
        concat!(
            "SELECT DISTINCT claimant FROM registry_events WHERE status = ",
            event_status!(progress),
            " AND claimant IS NOT NULL"
        ),
        &[],
    )?;
    rows.iter().map(|row| text(row, 0)).collect()
}

/// Gives every event `claimant` holds back, fresh, without an attempt.
pub fn release_all_of(conn: &mut dyn Conn, claimant: &str) -> anyhow::Result<u64> {
    conn.execute(
        concat!(
            "UPDATE registry_events SET status = ",
            event_status!(fresh),
            ", claimed_at = NULL, claimant = NULL \
         WHERE status = ",
            event_status!(progress),
            " AND claimant = $1"
        ),
        &[txt(claimant)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim must stay linear in the backlog: walk the pending events in
    /// id order up to the limit (no sort of all of them), and ask the two
    /// blocking-event indexes instead of scanning each repository's events.
    #[test]
    fn sqlite_claims_through_the_pending_and_blocking_indexes() {
        let params = [Value::Int(1), txt("me"), Value::Int(0), Value::Int(500)];
        let plan = super::super::explain::sqlite_plan(&claim_sql(Dialect::Sqlite), &params);
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        for index in [
            "registry_events_pending_id",
            "registry_events_waiting (repository=? AND not_before>?)",
            "registry_events_claimed (repository=? AND claimed_at>?)",
        ] {
            assert!(plan.contains(index), "{index} not in\n{plan}");
        }
    }

    /// Scraped every few seconds: one row of the pending index, never a
    /// walk of the whole table.
    #[test]
    fn sqlite_finds_the_oldest_waiting_event_through_the_pending_index() {
        let plan = super::super::explain::sqlite_plan(&oldest_waiting_sql(Dialect::Sqlite), &[]);
        assert!(plan.contains("registry_events_pending_id"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
