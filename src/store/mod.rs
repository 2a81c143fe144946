//! The database: one [`Store`] trait with domain methods, implemented once in
//! [`sql::SqlStore`] over a small [`Backend`] abstraction that `sqlite.rs`
//! (rusqlite) and `postgres.rs` (postgres + r2d2) provide. Only this folder
//! touches rusqlite or postgres. SQL is written once, with `$1`-style
//! placeholders; where the dialects differ, both versions stand side by side
//! in the one function that runs the statement. The schema lives in
//! `schema.sql` / `schema.postgres.sql` at the crate root and is applied by
//! the append-only migration list.
//!
//! The SQL is layered, each file using only those below it, none `sql.rs`:
//! - `rows.rs`: row accessors, binders, counts by code, chunking;
//! - `registries.rs`: registries, namespaces, repositories and their names;
//! - `tags.rs`: one tag at a time, tag listings, known manifests;
//! - `tag_writes.rs`: many tags of a repository at once;
//! - `events.rs` (the event queue and what events write), `sync_pass.rs`
//!   (a sync pass's writes), `runs.rs` (`job_runs`), `daemon_jobs.rs` (the
//!   job set a daemon runs), `scan_results.rs` and
//!   `scans.rs` (the scan lifecycle), `migrations.rs`;
//! - `sql.rs` on top: each [`Store`] method opens one transaction and calls
//!   one of them.
//!
//! `types.rs` holds the domain types, re-exported here; `codes.rs` the
//! integer codes of event status and scan state and their enums
//! ([`EventStatus`], [`ScanState`]), the only place the numbers are written.
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
//!
//! Times are stored as integer milliseconds since the Unix epoch (UTC).
//!
//! Every call blocks: the PostgreSQL driver runs its own runtime and must not
//! be called from an async task. Async code (the daemon's start-up, the
//! intake) calls the store through `tokio::task::spawn_blocking`.
//!
//! What may not: no HTTP (no registry, no scanner) and no decisions about
//! what to sync or scan: the jobs decide, the store records; code outside
//! this folder never sees an integer status code, only [`EventStatus`] and
//! [`ScanState`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::postgres_url::redact_url;

pub mod migrations;
pub mod postgres;
pub(crate) mod postgres_tls;
pub(crate) mod scans;
pub mod sql;
pub mod sqlite;

mod codes;
mod daemon_jobs;
mod events;
#[cfg(test)]
mod explain;
mod gc_deletions;
mod registries;
mod rows;
mod runs;
mod scan_results;
mod sync_pass;
mod tag_writes;
mod tags;
mod types;

/// The count a folded row of idle runs carries: how many runs that did
/// nothing it stands for ([`Store::fold_idle_run`]).
pub const IDLE_RUNS: &str = "idle_runs";

pub use codes::{EventStatus, ScanState};
pub use runs::abandoned_text;
pub use types::{
    AppliedEvent, ClaimedEvent, DaemonJob, DaemonJobSet, EventClaim, EventEffect, FailedEvent,
    GcDeletion, ImageVulnerabilities, KnownManifest, NewEvent, NewRun, QueueCounts, QueueDepths,
    RepositorySync, RunOutcome, RunRecord, ScanCandidate, ScanClaim, ScanPolicy, ScanReport,
    ScanSettled, ScanSettlement, ScannerOutcome, ScannerResult, ScannerSummary, SyncApplied,
    TagChange, TagRecord, TagScanState, TagWrite, VulnerabilityRecord, VulnerabilityWrite,
};

/// A value bound to or read from SQL. Integers are 64-bit everywhere
/// (BIGINT on PostgreSQL), booleans are stored as 0/1.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

/// One result row.
pub type Row = Vec<Value>;

/// The SQL dialect of a backend, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite through rusqlite.
    Sqlite,
    /// PostgreSQL through the postgres crate.
    Postgres,
}

/// A connection inside a transaction.
pub trait Conn {
    /// The connection's dialect.
    fn dialect(&self) -> Dialect;
    /// Runs a statement and returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64>;
    /// Runs a query and returns all rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>>;
    /// Runs several `;`-separated statements without parameters (migrations).
    fn execute_batch(&mut self, sql: &str) -> anyhow::Result<()>;
}

/// A database backend: hands out connections inside transactions.
pub trait Backend: Send + Sync {
    /// The backend's dialect.
    fn dialect(&self) -> Dialect;
    /// Runs `work` inside one transaction, committing on `Ok` and rolling
    /// back on `Err`.
    fn transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;
    /// Takes a session-level advisory lock: see [`Store::try_advisory_lock`].
    fn try_advisory_lock(&self, key: i64) -> anyhow::Result<Option<AdvisoryLock>>;
}

/// A session-level advisory lock, released when dropped.
pub struct AdvisoryLock {
    _held: Option<Box<dyn Send>>,
}

impl AdvisoryLock {
    /// A lock that holds nothing (SQLite: its write lock already serialises writers).
    pub fn none() -> AdvisoryLock {
        AdvisoryLock { _held: None }
    }

    /// A lock held by `guard` until it drops.
    pub fn held_by(guard: Box<dyn Send>) -> AdvisoryLock {
        AdvisoryLock { _held: Some(guard) }
    }
}

impl std::fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("held", &self._held.is_some())
            .finish()
    }
}

/// The database, in domain terms. Implemented once by [`sql::SqlStore`].
pub trait Store: Send + Sync {
    /// The dialect, for logs and `status`.
    fn dialect(&self) -> Dialect;
    /// Checks that the database answers.
    fn ping(&self) -> anyhow::Result<()>;
    /// Which of this version's migrations the database has (read only).
    fn schema_state(&self) -> anyhow::Result<migrations::SchemaState>;
    /// Records the start of a run and returns its id.
    fn start_run(&self, run: &NewRun) -> anyhow::Result<i64>;
    /// Records the end of a run.
    fn finish_run(
        &self,
        run_id: i64,
        finished_at: i64,
        outcome: RunOutcome,
        counts: &BTreeMap<String, i64>,
        error: Option<&str>,
    ) -> anyhow::Result<()>;
    /// Renews the heartbeat of a run in progress: its last sign of life is
    /// `now` and it expires at `expires_at` unless renewed again. One
    /// UPDATE by primary key. Returns false when the run has already ended
    /// (e.g. another process recorded it abandoned after its heartbeat
    /// lapsed); nothing is changed then.
    fn heartbeat_run(&self, run_id: i64, now: i64, expires_at: i64) -> anyhow::Result<bool>;
    /// Records as [`RunOutcome::Abandoned`] every unfinished run (of `job`,
    /// or of every job when None) whose expiry is before `now`, and returns
    /// them as recorded. A run recorded before heartbeats existed (no
    /// expiry of its own) expires `abandon_after_ms` after its start. An
    /// abandoned run's `finished_at` is its last heartbeat and its error
    /// names the claimant. Each row is changed by a conditional UPDATE
    /// (still unfinished, still expired), so processes noticing the same
    /// run at once record it exactly once between them, and a run whose
    /// heartbeat was renewed meanwhile is left alone.
    fn abandon_expired_runs(
        &self,
        job: Option<&str>,
        now: i64,
        abandon_after_ms: i64,
    ) -> anyhow::Result<Vec<RunRecord>>;
    /// Replaces the recorded job set of the daemon with `set`: a daemon
    /// records the jobs it runs at start-up, so that `status` shows them.
    fn record_daemon_jobs(&self, set: &DaemonJobSet) -> anyhow::Result<()>;
    /// The job set the last daemon to start recorded; None when none did.
    fn daemon_jobs(&self) -> anyhow::Result<Option<DaemonJobSet>>;
    /// Marks `job` finished for good at `now` with `reason`, if the
    /// recorded set is `claimant`'s (a daemon that started since replaced
    /// it). Returns whether a row changed.
    fn finish_daemon_job(
        &self,
        claimant: &str,
        job: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<bool>;
    /// Keeps the newest `keep` runs of `job` and deletes the rest.
    fn prune_runs(&self, job: &str, keep: usize) -> anyhow::Result<u64>;
    /// The newest `limit` runs of `job`, newest first.
    fn recent_runs(&self, job: &str, limit: usize) -> anyhow::Result<Vec<RunRecord>>;
    /// Queue depths.
    fn queue_counts(&self) -> anyhow::Result<QueueCounts>;
    /// The queue depths of `GET /metrics`: events by status, tags by scan
    /// state, and when the oldest waiting event arrived.
    fn queue_depths(&self) -> anyhow::Result<QueueDepths>;
    /// Returns the id of the registry row for `hostname`, creating it (and its
    /// global namespace) when missing.
    fn ensure_registry(&self, hostname: &str) -> anyhow::Result<i64>;
    /// The id of the registry row for `hostname`, None when there is none;
    /// writes nothing (the read-only commands).
    fn find_registry(&self, hostname: &str) -> anyhow::Result<Option<i64>>;
    /// Creates or updates one tag (and its namespace and repository). A
    /// changed digest resets the scan state to none.
    fn upsert_tag(&self, registry_id: i64, write: &TagWrite, now: i64)
        -> anyhow::Result<TagChange>;
    /// Deletes the tags of `repository` that point at `digest`, then the
    /// repository if it has no tags left. Returns the number of tags deleted.
    fn delete_tags_by_digest(
        &self,
        registry_id: i64,
        repository: &str,
        digest: &str,
    ) -> anyhow::Result<u64>;
    /// After the registry deleted `digest` of `repository`: deletes its
    /// tags there as [`Store::delete_tags_by_digest`] does and records the
    /// audit `rows`, in one transaction. Returns the number of tags deleted.
    fn apply_gc_deletion(
        &self,
        registry_id: i64,
        repository: &str,
        digest: &str,
        rows: &[GcDeletion],
    ) -> anyhow::Result<u64>;
    /// Records audit rows alone (a dry run's decisions).
    fn record_gc_decisions(&self, rows: &[GcDeletion]) -> anyhow::Result<()>;
    /// The newest `limit` rows of the gc audit, newest first.
    fn gc_deletions(&self, limit: usize) -> anyhow::Result<Vec<GcDeletion>>;
    /// Deletes one tag, then the repository if it has no tags left. Returns
    /// whether the tag existed.
    fn delete_tag(&self, registry_id: i64, repository: &str, tag: &str) -> anyhow::Result<bool>;
    /// Sets `pulled_at` of a tag to `at` unless it is already later. Returns
    /// whether the tag exists.
    fn record_pull(
        &self,
        registry_id: i64,
        repository: &str,
        tag: &str,
        at: i64,
    ) -> anyhow::Result<bool>;
    /// Full names of all repositories of the registry, sorted.
    fn repositories(&self, registry_id: i64) -> anyhow::Result<Vec<String>>;
    /// The tags of one repository (all repositories when None), sorted by
    /// repository then tag.
    fn tags(&self, registry_id: i64, repository: Option<&str>) -> anyhow::Result<Vec<TagRecord>>;
    /// What the registry's tags already record of the manifests `digests`
    /// (any repository: a digest names the content), for the digests a
    /// complete tag row has; used to skip fetching a manifest again.
    fn known_manifests(
        &self,
        registry_id: i64,
        digests: &[String],
    ) -> anyhow::Result<BTreeMap<String, KnownManifest>>;

    /// Manifest digests of the registry due for a scan under `policy`, each
    /// with one tag that names it; new work before rescans.
    fn scan_candidates(
        &self,
        registry_id: i64,
        policy: &ScanPolicy,
    ) -> anyhow::Result<Vec<ScanCandidate>>;
    /// Marks every due tag with `digest` working under `claimant`'s lease;
    /// None when nothing with that digest is due any more.
    fn claim_scan(
        &self,
        digest: &str,
        claimant: &str,
        policy: &ScanPolicy,
    ) -> anyhow::Result<Option<ScanClaim>>;
    /// Extends `claimant`'s lease on `digest` from `now` while a long scan
    /// goes on. Returns the tags still claimed (0: the claim was lost).
    fn renew_scan(&self, digest: &str, claimant: &str, now: i64) -> anyhow::Result<u64>;
    /// Gives a claim back without counting an attempt.
    fn release_scan(&self, digest: &str, claimant: &str) -> anyhow::Result<u64>;
    /// The scan state and vulnerabilities of one tag, worst first; None
    /// when there is no such tag.
    fn image_vulnerabilities(
        &self,
        registry_id: i64,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<Option<ImageVulnerabilities>>;
    /// Distinct vulnerabilities affecting at least one current tag, by
    /// normalised severity (all six words present).
    fn vulnerability_counts(&self) -> anyhow::Result<BTreeMap<String, i64>>;
    /// Deletes the scan results of digests that no tag has any more.
    fn prune_scan_results(&self) -> anyhow::Result<u64>;
    /// Each scanner's report on `digest` (when taken, failures since),
    /// sorted by scanner name.
    fn scan_reports(&self, digest: &str) -> anyhow::Result<Vec<ScanReport>>;
    /// Settles a scan of `digest` if `claimant` still holds a claim on one
    /// of its tags, in one transaction: each scanner that answered replaces
    /// only its own results; each that failed keeps its results (now
    /// stale), counts an attempt and backs off, failed for good at
    /// `max_attempts`. The tags are then done when every enabled scanner
    /// has a current report, none while one may still be retried, else
    /// failed. Otherwise stores nothing.
    fn settle_scan(
        &self,
        digest: &str,
        claimant: &str,
        settlement: &ScanSettlement,
        now: i64,
    ) -> anyhow::Result<ScanSettled>;
    /// Deletes the results and reports of every scanner not in `enabled`;
    /// returns the rows deleted.
    fn forget_scanners(&self, enabled: &[String]) -> anyhow::Result<u64>;
    /// Per scanner, over the digests of current tags: reports held, latest
    /// attempts failed, the newest report and the newest failure.
    fn scanner_summaries(&self) -> anyhow::Result<Vec<ScannerSummary>>;
    /// Full names of the repositories with registry events that a sync pass
    /// must not undo: pending ones (fresh, in progress) and any that arrived
    /// at or after `since`. Pulls change nothing and do not count.
    fn repositories_with_recent_events(&self, since: i64) -> anyhow::Result<BTreeSet<String>>;
    /// Applies the writes of a sync pass to several repositories in one
    /// short transaction, one result per entry. A repository with events as
    /// in [`Store::repositories_with_recent_events`] is left alone
    /// ([`SyncApplied::Busy`]); the check runs inside the transaction.
    fn apply_repository_syncs(
        &self,
        registry_id: i64,
        syncs: &[RepositorySync],
        since: i64,
        now: i64,
    ) -> anyhow::Result<Vec<SyncApplied>>;
    /// Takes the session-level advisory lock `key` on a dedicated
    /// connection (PostgreSQL), held until the returned guard drops; None
    /// when another session holds it. SQLite always succeeds with an empty
    /// guard: its write lock already serialises writers.
    fn try_advisory_lock(&self, key: i64) -> anyhow::Result<Option<AdvisoryLock>>;

    /// Stores the kept events of one envelope in one transaction, status
    /// fresh; an `event_id` already stored is skipped. Returns how many rows
    /// were inserted.
    fn insert_events(&self, events: &[NewEvent], now: i64) -> anyhow::Result<u64>;
    /// Claims up to `limit` events in arrival order under a lease: fresh ones
    /// whose backoff has passed and claims that expired. An event is not
    /// claimed while an earlier event of its repository is still pending
    /// (claimed by someone, or waiting for a retry), so events of one
    /// repository are applied in order. Two claimants never get one event.
    fn claim_events(&self, claim: &EventClaim) -> anyhow::Result<Vec<ClaimedEvent>>;
    /// Writes the effects of claimed events and marks them done, in one
    /// transaction. Events no longer claimed by `claimant` (the lease expired
    /// and someone else took them) are left alone. Returns how many were
    /// marked done.
    fn apply_events(
        &self,
        registry_id: i64,
        claimant: &str,
        applied: &[AppliedEvent],
        now: i64,
    ) -> anyhow::Result<u64>;
    /// Puts a claimed event back to fresh after a transient failure: one
    /// more attempt, the error, and no new claim before `not_before`.
    fn retry_event(
        &self,
        id: i64,
        claimant: &str,
        error: &str,
        not_before: i64,
        now: i64,
    ) -> anyhow::Result<bool>;
    /// Gives claimed events back, status fresh, without counting an attempt
    /// (they wait behind an earlier event of their repository).
    fn release_events(&self, ids: &[i64], claimant: &str) -> anyhow::Result<u64>;
    /// Folds idle run `run_id` of `job` (it ended ok and did nothing) into
    /// the stretch of idle runs before it: when the job's previous run was
    /// idle too, that row goes and this one counts both in
    /// [`IDLE_RUNS`]. Returns whether a row was folded.
    fn fold_idle_run(&self, job: &str, run_id: i64) -> anyhow::Result<bool>;
    /// Every claimant that holds an event or a scan claim now, sorted.
    fn claimants(&self) -> anyhow::Result<Vec<String>>;
    /// Gives back every event and scan claim of `claimant` at once,
    /// without counting an attempt: its process is known to be gone, so its
    /// claims need not wait for their lease. Returns (events, tags).
    fn release_claims_of(&self, claimant: &str) -> anyhow::Result<(u64, u64)>;
    /// Marks a claimed event failed for good with the error (one more attempt).
    fn fail_event(&self, id: i64, claimant: &str, error: &str, now: i64) -> anyhow::Result<bool>;
    /// Puts every failed event back to fresh with no attempts
    /// (`--retry-failed`). Returns how many.
    fn retry_failed_events(&self, now: i64) -> anyhow::Result<u64>;
    /// Deletes done events last changed before `older_than`. Returns how many.
    fn prune_done_events(&self, older_than: i64) -> anyhow::Result<u64>;
    /// The latest `limit` failed events, newest first.
    fn failed_events(&self, limit: usize) -> anyhow::Result<Vec<FailedEvent>>;
}

/// Connects to the configured database, waiting for it to answer (start-up
/// order in containers is not guaranteed), then applies pending migrations.
///
/// Each failed attempt is logged at warn with its cause; attempts back off
/// exponentially from 250 ms up to 5 s; after `wait` the last error is
/// returned. A SQLite file is not a server that may still be starting, so its
/// errors (a missing directory, no permission) are returned at once, as are
/// errors in PostgreSQL's connection settings (a TLS parameter, an unreadable
/// certificate file) and migration errors. Blocks: call it from a blocking
/// thread, not an async task.
pub fn open(database: &crate::config::Database, wait: Duration) -> anyhow::Result<Arc<dyn Store>> {
    let backend = connect_waiting(database, wait, Access::ReadWrite)?;
    let store = sql::SqlStore::new(backend);
    let applied = store
        .migrate()
        .with_context(|| format!("migrating database {}", describe(database)))?;
    if !applied.is_empty() {
        log::info!(
            "database {}: applied migrations {applied:?}",
            describe(database)
        );
    }
    Ok(Arc::new(store))
}

/// Opens the configured database for the read-only commands (`status`,
/// `tags`, `vulns`): an existing SQLite file opened read-only (a missing
/// one is an error, nothing is created), a PostgreSQL database whose
/// transactions are `READ ONLY`; no migration is applied, and a schema
/// that is not current is an error saying so. Waits for PostgreSQL as
/// [`open`] does.
pub fn open_read_only(
    database: &crate::config::Database,
    wait: Duration,
) -> anyhow::Result<Arc<dyn Store>> {
    let backend = connect_waiting(database, wait, Access::ReadOnly)?;
    let store = sql::SqlStore::new(backend);
    store
        .check_schema()
        .with_context(|| format!("reading database {}", describe(database)))?;
    Ok(Arc::new(store))
}

/// Whether a backend may write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The daemon and `--once`: may create the file and migrate.
    ReadWrite,
    /// The read-only commands.
    ReadOnly,
}

/// Connects, retrying a PostgreSQL server that does not answer yet until
/// `wait` has passed (see [`open`]).
fn connect_waiting(
    database: &crate::config::Database,
    wait: Duration,
    access: Access,
) -> anyhow::Result<Box<dyn Backend>> {
    let started = Instant::now();
    let mut attempt = 1u32;
    let backend: Box<dyn Backend> = loop {
        match connect(database, access) {
            Ok(backend) => break backend,
            // A SQLite file is not a server that may still be starting, and
            // a bad TLS parameter or certificate file does not get better.
            Err(error)
                if matches!(database, crate::config::Database::Sqlite { .. })
                    || error.downcast_ref::<postgres::SettingsError>().is_some() =>
            {
                return Err(error)
            }
            Err(error) => {
                let delay = crate::time::backoff(
                    Duration::from_millis(250),
                    Duration::from_secs(5),
                    attempt,
                );
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(error.context(format!(
                        "database {} did not answer within {}",
                        describe(database),
                        humantime::format_duration(wait)
                    )));
                }
                log::warn!(
                    "database {} not reachable (attempt {attempt}), retrying in {} ms: {error:#}",
                    describe(database),
                    delay.as_millis()
                );
                std::thread::sleep(delay.min(wait.saturating_sub(waited)));
                attempt += 1;
            }
        }
    };
    Ok(backend)
}

/// Opens a backend and checks that it answers.
fn connect(database: &crate::config::Database, access: Access) -> anyhow::Result<Box<dyn Backend>> {
    match database {
        crate::config::Database::Sqlite { path } if access == Access::ReadOnly => {
            Ok(Box::new(sqlite::SqliteBackend::open_read_only(path)?))
        }
        crate::config::Database::Sqlite { path } => {
            Ok(Box::new(sqlite::SqliteBackend::open(path)?))
        }
        crate::config::Database::Postgres {
            url,
            password,
            pool_size,
        } => {
            let backend = postgres::PostgresBackend::connect(url, password.as_deref(), *pool_size)?;
            Ok(Box::new(match access {
                Access::ReadWrite => backend,
                Access::ReadOnly => backend.read_only(),
            }))
        }
    }
}

/// The database for log lines and errors: a path, or a URL without secrets.
pub fn describe(database: &crate::config::Database) -> String {
    match database {
        crate::config::Database::Sqlite { path } => format!("sqlite://{}", path.display()),
        crate::config::Database::Postgres { url, .. } => redact_url(url),
    }
}

/// The current time in milliseconds since the Unix epoch ([`crate::time`]).
pub use crate::time::now_ms;

/// A statement on one line, shortened, for error messages.
pub(crate) fn one_line(sql: &str) -> String {
    let joined = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 120 {
        let short: String = joined.chars().take(117).collect();
        format!("{short}...")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_long_statements_for_errors() {
        let long = format!("SELECT {}", "x, ".repeat(100));
        assert!(one_line(&long).ends_with("..."));
        assert_eq!(one_line("SELECT\n   1"), "SELECT 1");
    }
}
