//! [`SqlStore`]: the one implementation of [`Store`], over any [`Backend`].
//! Each domain method is one transaction opened by [`SqlStore::tx`] around
//! a call into the SQL file of its table family (`registries.rs`,
//! `tags.rs`, `events.rs`, `runs.rs`, `scans.rs`, `sync_pass.rs`), with the
//! context of its error. No SQL lives here beyond the `SELECT 1` of a ping:
//! a new statement goes in its family's file, which must never import this
//! one. Nothing here knows which driver is underneath.
//!
//! The row accessors ([`int`], [`text`], [`opt_int`], [`opt_text`],
//! [`single`]) live in `rows.rs` and are re-exported here for code outside
//! the store that reads raw rows.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;

pub use super::rows::{int, opt_int, opt_text, single, text};
use super::{
    daemon_jobs, events, gc_deletions, migrations, registries, runs, scans, sync_pass, tags,
    AdvisoryLock, AppliedEvent, Backend, ClaimedEvent, Conn, DaemonJobSet, Dialect, EventClaim,
    FailedEvent, GcDeletion, ImageVulnerabilities, KnownManifest, NewEvent, NewRun, QueueCounts,
    QueueDepths, RepositorySync, RunOutcome, RunRecord, ScanCandidate, ScanClaim, ScanPolicy,
    ScanReport, ScanSettled, ScanSettlement, ScannerSummary, Store, SyncApplied, TagChange,
    TagRecord, TagWrite,
};

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
        let now = crate::time::now_ms();
        self.tx(|conn| migrations::apply(conn, now))
    }

    /// Checks without writing that every migration is applied (the
    /// read-only commands, which never migrate).
    pub fn check_schema(&self) -> anyhow::Result<()> {
        self.tx(migrations::check_current)
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

impl Store for SqlStore {
    fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    fn ping(&self) -> anyhow::Result<()> {
        self.tx(|conn| conn.query("SELECT 1", &[]).map(|_| ()))
            .context("pinging the database")
    }

    fn schema_state(&self) -> anyhow::Result<migrations::SchemaState> {
        self.tx(migrations::state)
            .context("reading the applied migrations")
    }

    fn start_run(&self, run: &NewRun) -> anyhow::Result<i64> {
        self.tx(|conn| runs::start(conn, run))
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
        self.tx(|conn| runs::finish(conn, run_id, finished_at, outcome, counts, error))
            .with_context(|| format!("recording the end of run {run_id}"))
    }

    fn prune_runs(&self, job: &str, keep: usize) -> anyhow::Result<u64> {
        self.tx(|conn| runs::prune(conn, job, keep))
            .with_context(|| format!("pruning old runs of {job}"))
    }

    fn recent_runs(&self, job: &str, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        self.tx(|conn| runs::recent(conn, job, limit))
            .with_context(|| format!("reading recent runs of {job}"))
    }

    fn heartbeat_run(&self, run_id: i64, now: i64, expires_at: i64) -> anyhow::Result<bool> {
        self.tx(|conn| runs::heartbeat(conn, run_id, now, expires_at))
            .with_context(|| format!("renewing the heartbeat of run {run_id}"))
    }

    fn abandon_expired_runs(
        &self,
        job: Option<&str>,
        now: i64,
        abandon_after_ms: i64,
    ) -> anyhow::Result<Vec<RunRecord>> {
        self.tx(|conn| runs::abandon_expired(conn, job, now, abandon_after_ms))
            .with_context(|| match job {
                Some(job) => format!("recording abandoned runs of {job}"),
                None => "recording abandoned runs".to_string(),
            })
    }

    fn queue_counts(&self) -> anyhow::Result<QueueCounts> {
        self.tx(|conn| {
            Ok(QueueCounts {
                events: events::counts_by_status(conn)?,
                tags_by_scan: tags::counts_by_scan(conn)?,
                repositories: registries::count(conn)?,
                tags: tags::count(conn)?,
                vulnerabilities: scans::counts(conn)?,
            })
        })
        .context("counting queues")
    }

    fn queue_depths(&self) -> anyhow::Result<QueueDepths> {
        self.tx(|conn| {
            Ok(QueueDepths {
                events: events::counts_by_status(conn)?,
                tags_by_scan: tags::counts_by_scan(conn)?,
                oldest_waiting_at: events::oldest_waiting(conn)?,
            })
        })
        .context("counting queue depths")
    }

    fn ensure_registry(&self, hostname: &str) -> anyhow::Result<i64> {
        let now = crate::time::now_ms();
        self.tx(|conn| registries::ensure_registry(conn, hostname, now))
            .with_context(|| format!("recording registry {hostname}"))
    }

    fn record_daemon_jobs(&self, set: &DaemonJobSet) -> anyhow::Result<()> {
        self.tx(|conn| daemon_jobs::record(conn, set))
            .with_context(|| format!("recording the jobs of daemon {}", set.claimant))
    }

    fn daemon_jobs(&self) -> anyhow::Result<Option<DaemonJobSet>> {
        self.tx(daemon_jobs::read)
            .context("reading the jobs the daemon runs")
    }

    fn finish_daemon_job(
        &self,
        claimant: &str,
        job: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        self.tx(|conn| daemon_jobs::finish(conn, claimant, job, reason, now))
            .with_context(|| format!("recording job {job} finished for good"))
    }

    fn find_registry(&self, hostname: &str) -> anyhow::Result<Option<i64>> {
        self.tx(|conn| registries::find_registry(conn, hostname))
            .with_context(|| format!("finding registry {hostname}"))
    }

    fn upsert_tag(
        &self,
        registry_id: i64,
        write: &TagWrite,
        now: i64,
    ) -> anyhow::Result<TagChange> {
        self.tx(|conn| tags::write_tag(conn, registry_id, write, now))
            .with_context(|| format!("writing tag {}:{}", write.repository, write.tag))
    }

    fn delete_tags_by_digest(
        &self,
        registry_id: i64,
        repository: &str,
        digest: &str,
    ) -> anyhow::Result<u64> {
        self.tx(|conn| tags::delete_tags_with_digest(conn, registry_id, repository, digest))
            .with_context(|| format!("deleting the tags of {repository} at {digest}"))
    }

    fn apply_gc_deletion(
        &self,
        registry_id: i64,
        repository: &str,
        digest: &str,
        rows: &[GcDeletion],
    ) -> anyhow::Result<u64> {
        self.tx(|conn| gc_deletions::apply(conn, registry_id, repository, digest, rows))
            .with_context(|| format!("recording the deletion of {repository} at {digest}"))
    }

    fn record_gc_decisions(&self, rows: &[GcDeletion]) -> anyhow::Result<()> {
        self.tx(|conn| gc_deletions::record(conn, rows))
            .context("recording the decisions of a gc dry run")
    }

    fn gc_deletions(&self, limit: usize) -> anyhow::Result<Vec<GcDeletion>> {
        self.tx(|conn| gc_deletions::recent(conn, limit))
            .context("reading the gc audit")
    }

    fn delete_tag(&self, registry_id: i64, repository: &str, tag: &str) -> anyhow::Result<bool> {
        self.tx(|conn| tags::remove_tag(conn, registry_id, repository, tag))
            .with_context(|| format!("deleting tag {repository}:{tag}"))
    }

    fn record_pull(
        &self,
        registry_id: i64,
        repository: &str,
        tag: &str,
        at: i64,
    ) -> anyhow::Result<bool> {
        self.tx(|conn| events::write_pull(conn, registry_id, repository, tag, at))
            .with_context(|| format!("recording a pull of {repository}:{tag}"))
    }

    fn repositories(&self, registry_id: i64) -> anyhow::Result<Vec<String>> {
        self.tx(|conn| registries::names(conn, registry_id))
            .context("listing repositories")
    }

    fn tags(&self, registry_id: i64, repository: Option<&str>) -> anyhow::Result<Vec<TagRecord>> {
        self.tx(|conn| tags::records(conn, registry_id, repository))
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
        self.tx(|conn| tags::known_manifests(conn, registry_id, digests))
            .with_context(|| format!("looking up {} manifests in the tags", digests.len()))
    }

    fn scan_candidates(
        &self,
        registry_id: i64,
        policy: &ScanPolicy,
    ) -> anyhow::Result<Vec<ScanCandidate>> {
        self.tx(|conn| scans::candidates(conn, registry_id, policy))
            .context("listing images due for a scan")
    }

    fn claim_scan(
        &self,
        digest: &str,
        claimant: &str,
        policy: &ScanPolicy,
    ) -> anyhow::Result<Option<ScanClaim>> {
        self.tx(|conn| scans::claim(conn, digest, claimant, policy))
            .with_context(|| format!("claiming {digest} for a scan"))
    }

    fn renew_scan(&self, digest: &str, claimant: &str, now: i64) -> anyhow::Result<u64> {
        self.tx(|conn| scans::renew(conn, digest, claimant, now))
            .with_context(|| format!("renewing the lease on {digest}"))
    }

    fn release_scan(&self, digest: &str, claimant: &str) -> anyhow::Result<u64> {
        self.tx(|conn| scans::release(conn, digest, claimant))
            .with_context(|| format!("releasing the scan of {digest}"))
    }

    fn image_vulnerabilities(
        &self,
        registry_id: i64,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<Option<ImageVulnerabilities>> {
        self.tx(|conn| scans::image(conn, registry_id, repository, tag))
            .with_context(|| format!("reading the vulnerabilities of {repository}:{tag}"))
    }

    fn vulnerability_counts(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        self.tx(scans::counts).context("counting vulnerabilities")
    }

    fn repositories_with_recent_events(&self, since: i64) -> anyhow::Result<BTreeSet<String>> {
        self.tx(|conn| sync_pass::busy_repositories(conn, since))
            .context("listing repositories with recent registry events")
    }

    fn apply_repository_syncs(
        &self,
        registry_id: i64,
        syncs: &[RepositorySync],
        since: i64,
        now: i64,
    ) -> anyhow::Result<Vec<SyncApplied>> {
        self.tx(|conn| sync_pass::apply_batch(conn, registry_id, syncs, since, now))
            .with_context(|| match syncs {
                [sync] => format!("applying the sync of {}", sync.repository),
                _ => format!("applying the sync of {} repositories", syncs.len()),
            })
    }

    fn try_advisory_lock(&self, key: i64) -> anyhow::Result<Option<AdvisoryLock>> {
        self.backend.try_advisory_lock(key)
    }

    fn prune_scan_results(&self) -> anyhow::Result<u64> {
        self.tx(scans::prune)
            .context("pruning scan results of deleted images")
    }

    fn scan_reports(&self, digest: &str) -> anyhow::Result<Vec<ScanReport>> {
        self.tx(|conn| scans::reports(conn, digest))
            .with_context(|| format!("reading the scan reports of {digest}"))
    }

    fn settle_scan(
        &self,
        digest: &str,
        claimant: &str,
        settlement: &ScanSettlement,
        now: i64,
    ) -> anyhow::Result<ScanSettled> {
        self.tx(|conn| scans::settle(conn, digest, claimant, settlement, now))
            .with_context(|| format!("storing the scan of {digest}"))
    }

    fn forget_scanners(&self, enabled: &[String]) -> anyhow::Result<u64> {
        self.tx(|conn| scans::forget_scanners(conn, enabled))
            .context("deleting the results of scanners no longer enabled")
    }

    fn scanner_summaries(&self) -> anyhow::Result<Vec<ScannerSummary>> {
        self.tx(scans::summaries)
            .context("summarising the scanners' reports")
    }

    fn insert_events(&self, events: &[NewEvent], now: i64) -> anyhow::Result<u64> {
        self.tx(|conn| events::insert(conn, events, now))
            .with_context(|| format!("storing {} events", events.len()))
    }

    fn claim_events(&self, claim: &EventClaim) -> anyhow::Result<Vec<ClaimedEvent>> {
        self.tx(|conn| events::claim(conn, claim))
            .context("claiming events")
    }

    fn apply_events(
        &self,
        registry_id: i64,
        claimant: &str,
        applied: &[AppliedEvent],
        now: i64,
    ) -> anyhow::Result<u64> {
        self.tx(|conn| events::apply(conn, registry_id, claimant, applied, now))
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
        self.tx(|conn| events::retry(conn, id, claimant, error, not_before, now))
            .with_context(|| format!("putting event {id} back for a retry"))
    }

    fn release_events(&self, ids: &[i64], claimant: &str) -> anyhow::Result<u64> {
        self.tx(|conn| events::release(conn, ids, claimant))
            .with_context(|| format!("releasing {} events", ids.len()))
    }

    fn fold_idle_run(&self, job: &str, run_id: i64) -> anyhow::Result<bool> {
        self.tx(|conn| runs::fold_idle(conn, job, run_id))
            .with_context(|| format!("folding idle run {run_id} of job {job}"))
    }

    fn claimants(&self) -> anyhow::Result<Vec<String>> {
        self.tx(|conn| {
            let mut claimants = events::claimants(conn)?;
            claimants.extend(scans::claimants(conn)?);
            claimants.sort();
            claimants.dedup();
            Ok(claimants)
        })
        .context("reading who holds claims")
    }

    fn release_claims_of(&self, claimant: &str) -> anyhow::Result<(u64, u64)> {
        self.tx(|conn| {
            Ok((
                events::release_all_of(conn, claimant)?,
                scans::release_all_of(conn, claimant)?,
            ))
        })
        .with_context(|| format!("giving back the claims of {claimant}"))
    }

    fn fail_event(&self, id: i64, claimant: &str, error: &str, now: i64) -> anyhow::Result<bool> {
        self.tx(|conn| events::fail(conn, id, claimant, error, now))
            .with_context(|| format!("marking event {id} failed"))
    }

    fn retry_failed_events(&self, now: i64) -> anyhow::Result<u64> {
        self.tx(|conn| events::retry_failed(conn, now))
            .context("putting failed events back to fresh")
    }

    fn prune_done_events(&self, older_than: i64) -> anyhow::Result<u64> {
        self.tx(|conn| events::prune_done(conn, older_than))
            .context("pruning done events")
    }

    fn failed_events(&self, limit: usize) -> anyhow::Result<Vec<FailedEvent>> {
        self.tx(|conn| events::failed(conn, limit))
            .context("listing failed events")
    }
}
