//! The plain data the [`Store`] trait speaks in: runs, queue counts, tags
//! and sync writes, registry events, scans and vulnerabilities, re-exported
//! from `store/mod.rs`. Only types and the words they are stored as live
//! here: no SQL, no I/O, nothing that knows a backend.

use std::collections::BTreeMap;

pub use super::codes::ScanState;
#[cfg(doc)]
use super::Store;

/// Outcome of a job run as stored in `job_runs.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The handler returned Ok.
    Ok,
    /// The handler returned an error or panicked.
    Failed,
    /// The tick was skipped because the previous run was still going.
    Skipped,
    /// The run overran its `timeout`.
    TimedOut,
    /// The process running it stopped without finishing it: its heartbeat
    /// expired (see [`Store::abandon_expired_runs`]).
    Abandoned,
}

impl RunOutcome {
    /// The word stored in `job_runs.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::Skipped => "skipped",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Abandoned => "abandoned",
        }
    }

    /// Parses a word stored in `job_runs.outcome`.
    pub fn from_word(word: &str) -> Option<RunOutcome> {
        match word {
            "ok" => Some(RunOutcome::Ok),
            "failed" => Some(RunOutcome::Failed),
            "skipped" => Some(RunOutcome::Skipped),
            "timed_out" => Some(RunOutcome::TimedOut),
            "abandoned" => Some(RunOutcome::Abandoned),
            _ => None,
        }
    }
}

/// A run as it starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Job name from schedules.toml.
    pub job: String,
    /// Handler name (`events`, `sync`, ...).
    pub handler: String,
    /// `schedule`, `wake` or `once`.
    pub trigger: String,
    /// Milliseconds since the epoch; also the first heartbeat.
    pub started_at: i64,
    /// The process running it (`host:pid:random`).
    pub claimant: String,
    /// Milliseconds since the epoch after which, without a newer heartbeat,
    /// the run counts as abandoned.
    pub expires_at: i64,
}

/// The jobs a daemon runs, as it recorded them at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonJobSet {
    /// The daemon (`host:pid:random`).
    pub claimant: String,
    /// The configuration file it read.
    pub config: String,
    /// When it started, milliseconds since the epoch.
    pub started_at: i64,
    /// Every job of its configuration, in file order.
    pub jobs: Vec<DaemonJob>,
}

/// One job of a [`DaemonJobSet`].
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonJob {
    /// Job name.
    pub name: String,
    /// Handler name.
    pub handler: String,
    /// The cron expression.
    pub schedule: String,
    /// IANA time zone.
    pub timezone: String,
    /// Whether the daemon schedules it.
    pub enabled: bool,
    /// When it finished for good (sync `initial`, `on-start`); None while
    /// it is scheduled.
    pub finished_at: Option<i64>,
    /// Why it finished for good.
    pub finished_reason: Option<String>,
}

/// A run as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Row id.
    pub id: i64,
    /// Job name.
    pub job: String,
    /// Handler name.
    pub handler: String,
    /// What started it.
    pub trigger: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// Milliseconds since the epoch; None while running.
    pub finished_at: Option<i64>,
    /// None while running.
    pub outcome: Option<RunOutcome>,
    /// Counts the handler reported.
    pub counts: BTreeMap<String, i64>,
    /// Error text with its cause chain, for failed runs.
    pub error: Option<String>,
    /// The process that ran it; None for runs recorded before heartbeats
    /// (regkeeper 0.1).
    pub claimant: Option<String>,
    /// Its last heartbeat, milliseconds since the epoch; None for runs
    /// recorded before heartbeats.
    pub heartbeat_at: Option<i64>,
}

/// Queue depths for `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueCounts {
    /// `registry_events` rows by status word (`done`, `progress`, `fresh`, `failed`).
    pub events: BTreeMap<String, i64>,
    /// `tags` rows by scan state word (`none`, `working`, `done`, `failed`).
    pub tags_by_scan: BTreeMap<String, i64>,
    /// Number of repositories.
    pub repositories: i64,
    /// Number of tags.
    pub tags: i64,
    /// Distinct vulnerabilities affecting current tags, by normalised
    /// severity (all six words present).
    pub vulnerabilities: BTreeMap<String, i64>,
}

/// The queue depths `GET /metrics` reports: cheap enough to ask every few
/// seconds (indexed counts and one indexed row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDepths {
    /// `registry_events` rows by status word, as in [`QueueCounts::events`].
    pub events: BTreeMap<String, i64>,
    /// `tags` rows by scan state word, as in [`QueueCounts::tags_by_scan`].
    pub tags_by_scan: BTreeMap<String, i64>,
    /// When the oldest event still waiting (fresh or in progress) arrived,
    /// milliseconds since the epoch; None when none waits.
    pub oldest_waiting_at: Option<i64>,
}

/// A tag as the registry describes it, to be written. `repository` is the
/// full name as the registry spells it (`app`, `ns/app`, `ns/a/b`): the text
/// before the first `/` is the namespace (created when missing), a name
/// without `/` lives in the registry's global namespace (`namespaces.global`
/// = 1, name "").
#[derive(Debug, Clone, PartialEq)]
pub struct TagWrite {
    /// Full repository name.
    pub repository: String,
    /// Tag name.
    pub tag: String,
    /// Manifest digest (`sha256:...`).
    pub digest: String,
    /// Config digest without `sha256:`; empty for an index.
    pub image_id: String,
    /// Manifest media type.
    pub media_type: String,
    /// Size in bytes (config + layers; see the registry module for indexes).
    pub size: Option<i64>,
    /// Platforms of an index as JSON (`[{"os":..,"architecture":..}]`).
    pub platforms: Option<String>,
}

/// What a tag row records of its manifest, the same for every tag with
/// that digest ([`Store::known_manifests`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownManifest {
    /// Config digest without `sha256:`; empty for an index.
    pub image_id: String,
    /// Manifest media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Platforms of an index as JSON.
    pub platforms: Option<String>,
}

/// What [`Store::upsert_tag`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChange {
    /// A new tag row.
    Created,
    /// The digest changed: the row was updated and its scan state reset to none.
    Updated,
    /// The tag already had this digest (size/media type may have been filled in).
    Unchanged,
}

/// A tag as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRecord {
    /// Row id.
    pub id: i64,
    /// Full repository name.
    pub repository: String,
    /// Tag name.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// Config digest without `sha256:`.
    pub image_id: String,
    /// Manifest media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: Option<i64>,
    /// Scan state.
    pub scanned: ScanState,
    /// Last pull, milliseconds since the epoch.
    pub pulled_at: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

/// One repository's writes of a sync pass ([`Store::apply_repository_syncs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RepositorySync {
    /// Full repository name.
    pub repository: String,
    /// Tags to create or update (a changed digest resets the scan state).
    pub upserts: Vec<TagWrite>,
    /// Tags to delete.
    pub delete_tags: Vec<String>,
    /// Delete the repository and all its tags.
    pub delete_repository: bool,
}

/// What [`Store::apply_repository_syncs`] did to one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncApplied {
    /// Registry events for it are pending or arrived after the pass's start
    /// mark: nothing was written.
    Busy,
    /// The writes were applied.
    Applied {
        /// Tags created.
        created: usize,
        /// Tags whose digest changed.
        updated: usize,
        /// Tags deleted (those of a deleted repository included).
        tags_deleted: usize,
        /// The repository was deleted.
        repository_deleted: bool,
    },
}

/// A notification event to store, as the intake kept it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The registry's event id (unique: a redelivery is not stored twice).
    pub event_id: String,
    /// `push`, `pull` or `delete`.
    pub action: String,
    /// Full repository name; events of one repository are applied in order.
    pub repository: String,
    /// The event's JSON as received.
    pub data: String,
}

/// What [`Store::claim_events`] is asked for.
#[derive(Debug, Clone)]
pub struct EventClaim {
    /// Who claims (`JobContext::claimant`).
    pub claimant: String,
    /// Now, milliseconds since the epoch.
    pub now: i64,
    /// Claims older than this (milliseconds since the epoch) have expired
    /// and are taken again.
    pub expired_before: i64,
    /// At most this many events.
    pub limit: usize,
}

/// An event claimed for applying.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    /// Row id (arrival order).
    pub id: i64,
    /// The registry's event id.
    pub event_id: String,
    /// `push`, `pull` or `delete`.
    pub action: String,
    /// Full repository name.
    pub repository: String,
    /// The event's JSON as received.
    pub data: String,
    /// Failed attempts so far.
    pub attempts: i64,
}

/// What applying one event changes, written together with its `done` status.
#[derive(Debug, Clone, PartialEq)]
pub enum EventEffect {
    /// Nothing to write (a push without tag, a pull of an unknown tag).
    Nothing,
    /// Create or update a tag ([`Store::upsert_tag`]).
    Upsert(TagWrite),
    /// Delete the repository's tags with this digest ([`Store::delete_tags_by_digest`]).
    DeleteDigest {
        /// Full repository name.
        repository: String,
        /// Manifest digest.
        digest: String,
    },
    /// Delete one tag ([`Store::delete_tag`]).
    DeleteTag {
        /// Full repository name.
        repository: String,
        /// Tag name.
        tag: String,
    },
    /// Record a pull of a tag, or of every tag of the repository with a digest.
    Pull {
        /// Full repository name.
        repository: String,
        /// The tag pulled, when pulled by tag.
        tag: Option<String>,
        /// The digest pulled, when pulled by digest.
        digest: Option<String>,
        /// The event's timestamp, milliseconds since the epoch.
        at: i64,
    },
}

/// One claimed event to mark done, with its effect.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedEvent {
    /// Row id of the claimed event.
    pub id: i64,
    /// What it changes.
    pub effect: EventEffect,
}

/// An event given up on, as `status` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    /// Row id.
    pub id: i64,
    /// The registry's event id.
    pub event_id: String,
    /// `push`, `pull` or `delete`.
    pub action: String,
    /// Full repository name.
    pub repository: String,
    /// Attempts made.
    pub attempts: i64,
    /// Why it failed.
    pub last_error: String,
    /// When it failed, milliseconds since the epoch.
    pub updated_at: i64,
}
/// When tags are due for a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPolicy {
    /// Milliseconds since the epoch.
    pub now: i64,
    /// A working claim older than this is taken again (its daemon died).
    pub lease_ms: i64,
    /// A done scan older than this is due again; None never rescans.
    pub rescan_after_ms: Option<i64>,
    /// Failed tags are due too.
    pub retry_failed: bool,
    /// At most this many candidates.
    pub limit: usize,
}

/// A manifest digest due for a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanCandidate {
    /// `sha256:...`.
    pub digest: String,
    /// A repository with a tag at that digest.
    pub repository: String,
    /// That tag.
    pub tag: String,
    /// The tag's manifest media type.
    pub media_type: String,
}

/// What [`Store::claim_scan`] took.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanClaim {
    /// The digest.
    pub digest: String,
    /// Failed attempts so far (the most of its tags).
    pub attempts: i64,
    /// Tags claimed.
    pub tags: i64,
}

/// One scanner's report on one manifest digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReport {
    /// The scanner's name.
    pub scanner: String,
    /// When the stored report was taken; None when it never succeeded.
    pub scanned_at: Option<i64>,
    /// When the scanner was last asked.
    pub attempted_at: i64,
    /// Failed attempts since the last success.
    pub attempts: i64,
    /// The latest attempt's error; None when it succeeded.
    pub last_error: Option<String>,
    /// No new try before this.
    pub not_before: Option<i64>,
    /// Failed for good (`max_attempts` reached).
    pub failed: bool,
}

impl ScanReport {
    /// The latest attempt succeeded: the stored results are current.
    pub fn current(&self) -> bool {
        self.scanned_at.is_some() && self.last_error.is_none()
    }
}

/// What one scanner made of a digest, for [`Store::settle_scan`].
#[derive(Debug, Clone, PartialEq)]
pub enum ScannerResult {
    /// It answered: these findings replace its previous ones.
    Report(Vec<VulnerabilityWrite>),
    /// It failed: keep its previous results, retry not before `not_before`.
    Failed {
        /// The error, with its causes.
        error: String,
        /// No new try before this.
        not_before: i64,
    },
}

/// One scanner's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannerOutcome {
    /// The scanner's name.
    pub scanner: String,
    /// What it made of the digest.
    pub result: ScannerResult,
}

/// What a scan of one digest came to, for [`Store::settle_scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSettlement {
    /// Every enabled scanner's name: the reports a done tag needs.
    pub enabled: Vec<String>,
    /// The scanners asked this time (the others' reports stand).
    pub outcomes: Vec<ScannerOutcome>,
    /// A scanner failing this many times in a row fails for good.
    pub max_attempts: i64,
}

/// What [`Store::settle_scan`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanSettled {
    /// Reports recorded and tags moved to `scanned`.
    Settled {
        /// Tags updated.
        tags: u64,
        /// Their new state: unscanned (a scanner will be retried), done or failed.
        scanned: ScanState,
        /// Vulnerabilities stored by the scanners that answered.
        vulnerabilities: u64,
    },
    /// The claim no longer held (re-push, delete, takeover): nothing stored.
    Discarded,
}

/// One scanner in `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScannerSummary {
    /// The scanner's name.
    pub scanner: String,
    /// Digests with a report of it (current or stale).
    pub reports: i64,
    /// Digests whose latest attempt failed.
    pub failing: i64,
    /// Of those, failed for good.
    pub failed: i64,
    /// The newest report.
    pub last_report_at: Option<i64>,
    /// The newest failed attempt.
    pub last_error_at: Option<i64>,
    /// Its error.
    pub last_error: Option<String>,
}

/// One vulnerability found by one scanner, to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VulnerabilityWrite {
    /// e.g. `CVE-2016-6301`.
    pub name: String,
    /// The scanner's name (`clair`, `clair4`, `adapter`, `fixture`).
    pub scanner: String,
    /// Normalised: Unknown, Negligible, Low, Medium, High or Critical.
    pub severity: String,
    /// The scanner's own word.
    pub severity_raw: String,
    /// Link(s), space-separated.
    pub link: String,
    /// Fixed-in version, may be empty.
    pub fixed_by: String,
    /// Description, may be empty.
    pub description: String,
    /// Other details as JSON text.
    pub metadata: Option<String>,
}

/// A stored vulnerability.
pub type VulnerabilityRecord = VulnerabilityWrite;

/// The scan columns of one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TagScanState {
    /// The scan state.
    pub scanned: ScanState,
    /// Failed attempts since the last success.
    pub attempts: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// No new try before this (milliseconds since the epoch).
    pub not_before: Option<i64>,
    /// When the last scan was stored.
    pub scanned_at: Option<i64>,
    /// When the current claim was taken or last renewed.
    pub claimed_at: Option<i64>,
}

/// One tag's scan state and vulnerabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageVulnerabilities {
    /// The tag's manifest digest.
    pub digest: String,
    /// Its scan columns.
    pub state: TagScanState,
    /// Each scanner's report on the digest, by scanner name.
    pub reports: Vec<ScanReport>,
    /// The vulnerabilities of its digest, worst first, then by name.
    pub vulnerabilities: Vec<VulnerabilityRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_outcome_words_round_trip() {
        for outcome in [
            RunOutcome::Ok,
            RunOutcome::Failed,
            RunOutcome::Skipped,
            RunOutcome::TimedOut,
            RunOutcome::Abandoned,
        ] {
            assert_eq!(RunOutcome::from_word(outcome.as_str()), Some(outcome));
        }
        assert_eq!(RunOutcome::from_word("bogus"), None);
    }
}

/// One row of the `gc_deletions` audit: a tag a gc pass deleted, or would
/// have deleted on a dry run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcDeletion {
    /// The registry's name (`host:port`).
    pub registry: String,
    /// Full repository name.
    pub repository: String,
    /// Tag name.
    pub tag: String,
    /// The manifest digest deleted.
    pub digest: String,
    /// The policies that select the repository.
    pub policy: String,
    /// Why no rule kept the tag, e.g. `beyond keep_latest 5 (7th newest)`.
    pub rule: String,
    /// The `job_runs` row of the pass.
    pub run_id: i64,
    /// When, milliseconds since the epoch.
    pub deleted_at: i64,
    /// A dry run's decision: nothing was deleted.
    pub dry_run: bool,
}
