//! The `events` handler: applies the stored registry notifications to the
//! database. Claims events in arrival order under a lease (a killed daemon's
//! claims expire and are taken again), keeps the events of one repository in
//! order, takes image facts from `target.references` when the registry sent
//! them, else from a tag that already records the digest, and fetches the
//! manifest otherwise, and writes the effects of a whole batch with the
//! events' `done` status in one transaction.
//!
//! Per event the outcome is done, back to fresh with a backoff after a
//! transient failure (registry unreachable, 5xx, 429), or failed for good
//! after `max_attempts` or a permanent failure (malformed data, manifest
//! gone). A failed event never blocks the others. Applying an event twice
//! leaves the same database. Done events older than `retain_done` are pruned.
//! Synchronous: no async, no tokio; manifest fetches fan out on the registry
//! client's worker pool.
//!
//! This file holds the run: claiming, applying a batch in order, retries and
//! pruning. Beside it in `events/`: `plan.rs` decides what an event does and
//! `failure.rs` how a failed attempt counts (both pure: no store, no
//! registry, no clock), `fetch.rs` finds the manifests a batch needs (reads
//! the store and the registry, writes nothing). Only this file writes.

mod failure;
mod fetch;
mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

pub(crate) use self::failure::{backoff_after, failure_from_registry, Failure};
use self::plan::read_stored;
pub(crate) use self::plan::{plan, write_from_manifest, Plan};
use super::{Handler, JobContext, Outcome};
use crate::registry::Client;
use crate::store::{AppliedEvent, ClaimedEvent, EventClaim, EventEffect, Store};
use crate::time::{duration_ms, now_ms};

/// The knobs of an `events` job.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Attempts before an event is failed for good.
    pub max_attempts: u32,
    /// Done events older than this are pruned.
    pub retain_done: Duration,
    /// A claim older than this has expired and is taken again.
    pub lease: Duration,
    /// Events claimed at once.
    pub batch_size: usize,
    /// Wait before the first retry; doubles with each attempt.
    pub backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_attempts: 10,
            retain_done: Duration::from_secs(7 * 24 * 3600),
            lease: Duration::from_secs(300),
            batch_size: 500,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
        }
    }
}

impl Settings {
    /// The settings of a configured `events` job.
    pub fn from_options(options: &crate::config::EventsOptions) -> Settings {
        Settings {
            max_attempts: options.max_attempts.max(1),
            retain_done: options.retain_done,
            lease: options.lease,
            batch_size: usize::try_from(options.batch_size)
                .unwrap_or(usize::MAX)
                .max(1),
            backoff: options.backoff,
            max_backoff: options.max_backoff.max(options.backoff),
        }
    }
}

/// The `events` handler.
pub struct EventsHandler {
    store: Arc<dyn Store>,
    registry: Arc<Client>,
    registry_host: String,
    settings: Settings,
}

impl EventsHandler {
    /// A handler applying events to the registry named `registry_host`
    /// (`host:port`, see [`super::registry_hostname`]).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Client>,
        registry_host: String,
        settings: Settings,
    ) -> EventsHandler {
        EventsHandler {
            store,
            registry,
            registry_host,
            settings,
        }
    }
}

/// One claimed event during a run.
struct Pending {
    claimed: ClaimedEvent,
    plan: Result<Plan, Failure>,
}

impl Handler for EventsHandler {
    fn run(&self, ctx: &JobContext) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        if ctx.options.retry_failed {
            let retried = self
                .store
                .retry_failed_events(now_ms())
                .context("putting failed events back to fresh")?;
            log::info!(
                "job={} run={}: {retried} failed events put back to fresh",
                ctx.job_name,
                ctx.run_id
            );
            outcome.add("requeued", retried as i64);
        }
        let registry_id = self
            .store
            .ensure_registry(&self.registry_host)
            .with_context(|| {
                format!(
                    "finding the registry {} in the database",
                    self.registry_host
                )
            })?;
        for name in [
            "claimed",
            "applied",
            "retried",
            "failed",
            "manifests_fetched",
            "manifests_reused",
        ] {
            outcome.add(name, 0);
        }
        while !ctx.cancel.is_cancelled() {
            let now = now_ms();
            let claim = EventClaim {
                claimant: ctx.claimant.clone(),
                now,
                expired_before: now - duration_ms(self.settings.lease),
                limit: self.settings.batch_size.max(1),
            };
            let claimed = self.store.claim_events(&claim).context("claiming events")?;
            if claimed.is_empty() {
                break;
            }
            outcome.add("claimed", claimed.len() as i64);
            self.apply_batch(ctx, registry_id, claimed, &mut outcome)?;
        }
        let older_than = now_ms() - duration_ms(self.settings.retain_done);
        let pruned = self
            .store
            .prune_done_events(older_than)
            .context("pruning done events")?;
        outcome.add("pruned", pruned as i64);
        Ok(outcome)
    }
}

impl EventsHandler {
    fn apply_batch(
        &self,
        ctx: &JobContext,
        registry_id: i64,
        claimed: Vec<ClaimedEvent>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let mut pending: Vec<Pending> = claimed
            .into_iter()
            .map(|claimed| {
                let plan = read_stored(&claimed).map(|event| match event {
                    Some(event) => plan(&event),
                    None => Plan::Apply(EventEffect::Nothing),
                });
                Pending { claimed, plan }
            })
            .collect();
        self.fetch_manifests(registry_id, &mut pending, outcome);

        // In arrival order: once an event of a repository cannot be applied
        // now, the later events of that repository in this batch wait too.
        let mut applied: Vec<(AppliedEvent, &ClaimedEvent)> = Vec::new();
        let mut held_back: HashSet<String> = HashSet::new();
        let mut released = Vec::new();
        let mut unreachable: Option<&str> = None;
        for item in &pending {
            let repository = &item.claimed.repository;
            if held_back.contains(repository) {
                released.push(item.claimed.id);
                continue;
            }
            match &item.plan {
                Ok(Plan::Apply(effect)) => applied.push((
                    AppliedEvent {
                        id: item.claimed.id,
                        effect: effect.clone(),
                    },
                    &item.claimed,
                )),
                Ok(Plan::Fetch { .. }) => {
                    // fetch_manifests turns every Fetch into Apply or a failure.
                    released.push(item.claimed.id);
                    held_back.insert(repository.clone());
                }
                Err(Failure::Permanent { error }) => {
                    log::warn!(
                        "job={} run={}: event {} failed: {error}",
                        ctx.job_name,
                        ctx.run_id,
                        item.claimed.event_id
                    );
                    self.store
                        .fail_event(item.claimed.id, &ctx.claimant, error, now_ms())
                        .context("marking an event failed")?;
                    outcome.add("failed", 1);
                }
                Err(Failure::Transient { error, retry_after }) => {
                    if self.retry_or_fail(ctx, &item.claimed, error, *retry_after, outcome)? {
                        held_back.insert(repository.clone());
                    }
                }
                Err(Failure::Unreachable { error }) => {
                    released.push(item.claimed.id);
                    held_back.insert(repository.clone());
                    unreachable.get_or_insert(error);
                }
            }
        }
        self.write_applied(ctx, registry_id, &applied, outcome)?;
        if !released.is_empty() {
            self.store
                .release_events(&released, &ctx.claimant)
                .context("releasing events held back behind an earlier event")?;
        }
        if let Some(error) = unreachable {
            anyhow::bail!(
                "registry unreachable: {} events wait for it and were put back without using an \
                 attempt ({error})",
                released.len()
            );
        }
        Ok(())
    }

    /// Puts an event back for a retry, or fails it when it used up its
    /// attempts. Returns whether it was put back (and so still pending).
    fn retry_or_fail(
        &self,
        ctx: &JobContext,
        claimed: &ClaimedEvent,
        error: &str,
        retry_after: Option<Duration>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<bool> {
        let attempts = u32::try_from(claimed.attempts.saturating_add(1)).unwrap_or(u32::MAX);
        let now = now_ms();
        if attempts >= self.settings.max_attempts {
            let error = format!("gave up after {attempts} attempts: {error}");
            log::warn!(
                "job={} run={}: event {} failed: {error}",
                ctx.job_name,
                ctx.run_id,
                claimed.event_id
            );
            self.store
                .fail_event(claimed.id, &ctx.claimant, &error, now)
                .context("marking an event failed")?;
            outcome.add("failed", 1);
            return Ok(false);
        }
        let wait = backoff_after(attempts, &self.settings, retry_after);
        log::info!(
            "job={} run={}: event {} will be retried in {}: {error}",
            ctx.job_name,
            ctx.run_id,
            claimed.event_id,
            humantime::format_duration(wait)
        );
        self.store
            .retry_event(
                claimed.id,
                &ctx.claimant,
                error,
                now + duration_ms(wait),
                now,
            )
            .context("putting an event back for a retry")?;
        outcome.add("retried", 1);
        Ok(true)
    }

    /// Writes the effects of a batch in one transaction; when that fails,
    /// one by one, so that one bad event cannot hold the batch back.
    fn write_applied(
        &self,
        ctx: &JobContext,
        registry_id: i64,
        applied: &[(AppliedEvent, &ClaimedEvent)],
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        if applied.is_empty() {
            return Ok(());
        }
        let effects: Vec<AppliedEvent> = applied.iter().map(|(effect, _)| effect.clone()).collect();
        match self.store.apply_events(registry_id, &ctx.claimant, &effects, now_ms()) {
            Ok(done) => {
                outcome.add("applied", done as i64);
                return Ok(());
            }
            Err(error) => log::warn!(
                "job={} run={}: writing {} events at once failed, writing them one by one: {error:#}",
                ctx.job_name,
                ctx.run_id,
                applied.len()
            ),
        }
        self.store
            .ping()
            .context("checking the database after a failed write")?;
        let mut held_back: HashSet<&str> = HashSet::new();
        let mut released = Vec::new();
        for (effect, claimed) in applied {
            if held_back.contains(claimed.repository.as_str()) {
                released.push(claimed.id);
                continue;
            }
            match self.store.apply_events(
                registry_id,
                &ctx.claimant,
                std::slice::from_ref(effect),
                now_ms(),
            ) {
                Ok(done) => outcome.add("applied", done as i64),
                Err(error) => {
                    let error = format!("writing the event: {error:#}");
                    if self.retry_or_fail(ctx, claimed, &error, None, outcome)? {
                        held_back.insert(claimed.repository.as_str());
                    }
                }
            }
        }
        if !released.is_empty() {
            self.store
                .release_events(&released, &ctx.claimant)
                .context("releasing events held back behind an earlier event")?;
        }
        Ok(())
    }
}
