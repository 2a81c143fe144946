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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::{Handler, JobContext, Outcome};
use crate::notification::{self, Action, Event, Verdict};
use crate::registry::{Client, Manifest, RegistryError};
use crate::store::{AppliedEvent, ClaimedEvent, EventClaim, EventEffect, Store, TagWrite};

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

/// What one claimed event needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Write this (possibly nothing) and mark it done.
    Apply(EventEffect),
    /// Fetch the manifest `digest` of `repository`, then write the tag.
    Fetch {
        /// Full repository name.
        repository: String,
        /// Tag to write.
        tag: String,
        /// Manifest digest to fetch.
        digest: String,
    },
}

/// Decides what an event does, without I/O: a push with a tag becomes a tag
/// write (from `references` when they tell everything, else after a manifest
/// fetch); a push without a tag writes nothing (no guessing); a delete by
/// digest removes the tags with that digest, a per-tag delete that tag; a
/// pull records the event time on the tag (or on the tags of the digest).
pub fn plan(event: &Event) -> Plan {
    match event.action {
        Action::Push => {
            let (Some(tag), Some(digest)) = (&event.tag, &event.digest) else {
                return Plan::Apply(EventEffect::Nothing);
            };
            match notification::image_facts(event) {
                Some(facts) => Plan::Apply(EventEffect::Upsert(TagWrite {
                    repository: event.repository.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                    image_id: facts.image_id,
                    media_type: event.media_type.clone().unwrap_or_default(),
                    size: Some(facts.size),
                    platforms: None,
                })),
                None => Plan::Fetch {
                    repository: event.repository.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                },
            }
        }
        Action::Delete => match (&event.tag, &event.digest) {
            (Some(tag), _) => Plan::Apply(EventEffect::DeleteTag {
                repository: event.repository.clone(),
                tag: tag.clone(),
            }),
            (None, Some(digest)) => Plan::Apply(EventEffect::DeleteDigest {
                repository: event.repository.clone(),
                digest: digest.clone(),
            }),
            (None, None) => Plan::Apply(EventEffect::Nothing),
        },
        Action::Pull => Plan::Apply(EventEffect::Pull {
            repository: event.repository.clone(),
            tag: event.tag.clone(),
            digest: if event.tag.is_some() {
                None
            } else {
                event.digest.clone()
            },
            at: event.timestamp,
        }),
    }
}

/// The tag write of a pushed tag whose manifest was fetched. The event's
/// digest wins: it is what was pushed under the tag.
pub fn write_from_manifest(
    repository: &str,
    tag: &str,
    digest: &str,
    manifest: &Manifest,
) -> TagWrite {
    let platforms: Vec<serde_json::Value> = manifest
        .children
        .iter()
        .filter_map(|child| child.platform.as_ref())
        .map(|platform| {
            let mut value =
                serde_json::json!({ "os": platform.os, "architecture": platform.architecture });
            if let Some(variant) = &platform.variant {
                value["variant"] = serde_json::Value::String(variant.clone());
            }
            value
        })
        .collect();
    let is_index = !manifest.children.is_empty();
    TagWrite {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: digest.to_string(),
        image_id: manifest.image_id.clone(),
        media_type: manifest.media_type.clone(),
        size: Some(manifest.size),
        platforms: if is_index {
            Some(serde_json::Value::Array(platforms).to_string())
        } else {
            None
        },
    }
}

/// How a failed attempt counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// May work later: registry unreachable, 5xx, 429 (with its
    /// `Retry-After`), refused credentials (an operator can fix them).
    Transient {
        /// What went wrong.
        error: String,
        /// The registry's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Will never work: malformed data, manifest gone.
    Permanent {
        /// What went wrong.
        error: String,
    },
    /// The registry is unreachable (the client's breaker opened): the event
    /// is put back without using an attempt, and the run stops, so that an
    /// outage costs the events nothing.
    Unreachable {
        /// What went wrong.
        error: String,
    },
}

/// Sorts a registry error into transient or permanent.
pub fn failure_from_registry(context: &str, error: &RegistryError) -> Failure {
    let text = format!("{context}: {error}");
    match error {
        RegistryError::RateLimited { retry_after } => Failure::Transient {
            error: text,
            retry_after: *retry_after,
        },
        RegistryError::Unauthorized { .. } => Failure::Transient {
            error: text,
            retry_after: None,
        },
        _ if error.is_transient() => Failure::Transient {
            error: text,
            retry_after: None,
        },
        _ => Failure::Permanent { error: text },
    }
}

/// The wait before the next try after `attempts` failed attempts (1 for the
/// first failure): `backoff` doubling per attempt, capped at `max_backoff`,
/// and never shorter than the registry's `Retry-After`.
pub fn backoff_after(
    attempts: u32,
    settings: &Settings,
    retry_after: Option<Duration>,
) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let wait = settings
        .backoff
        .checked_mul(1u32 << exponent)
        .unwrap_or(settings.max_backoff)
        .min(settings.max_backoff);
    wait.max(retry_after.unwrap_or_default())
}

/// One claimed event during a run.
struct Pending {
    claimed: ClaimedEvent,
    plan: Result<Plan, Failure>,
}

/// The milliseconds of a duration as an i64 (saturating).
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
                expired_before: now - millis(self.settings.lease),
                limit: self.settings.batch_size.max(1),
            };
            let claimed = self.store.claim_events(&claim).context("claiming events")?;
            if claimed.is_empty() {
                break;
            }
            outcome.add("claimed", claimed.len() as i64);
            self.apply_batch(ctx, registry_id, claimed, &mut outcome)?;
        }
        let older_than = now_ms() - millis(self.settings.retain_done);
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
            .retry_event(claimed.id, &ctx.claimant, error, now + millis(wait), now)
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

    /// Turns every `Plan::Fetch` into a tag write or a failure: from what the
    /// tags already record of the digest when a complete row has it (a
    /// manifest digest names its content), otherwise by fetching the
    /// manifest, each (repository, digest) once, on the registry client's
    /// worker pool.
    fn fetch_manifests(&self, registry_id: i64, pending: &mut [Pending], outcome: &mut Outcome) {
        self.reuse_known_manifests(registry_id, pending, outcome);
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        for item in pending.iter() {
            if let Ok(Plan::Fetch {
                repository, digest, ..
            }) = &item.plan
            {
                if seen.insert((repository.clone(), digest.clone())) {
                    wanted.push((repository.clone(), digest.clone()));
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let fetched = self
            .registry
            .map_concurrent(wanted.clone(), |(repository, digest)| {
                self.registry.manifest(&repository, &digest)
            });
        let results: HashMap<(String, String), Result<Manifest, RegistryError>> =
            wanted.iter().cloned().zip(fetched).collect();
        outcome.add("manifests_fetched", wanted.len() as i64);
        let unreachable = self.registry.is_unreachable();
        for item in pending.iter_mut() {
            let Ok(Plan::Fetch {
                repository,
                tag,
                digest,
            }) = &item.plan
            else {
                continue;
            };
            let context = format!("fetching manifest {repository}@{digest}");
            item.plan = match results.get(&(repository.clone(), digest.clone())) {
                Some(Ok(manifest)) => Ok(Plan::Apply(EventEffect::Upsert(write_from_manifest(
                    repository, tag, digest, manifest,
                )))),
                Some(Err(error @ RegistryError::Transport(_))) if unreachable => {
                    Err(Failure::Unreachable {
                        error: format!("{context}: {error}"),
                    })
                }
                Some(Err(error)) => Err(failure_from_registry(&context, error)),
                None => Err(Failure::Transient {
                    error: format!("{context}: no answer"),
                    retry_after: None,
                }),
            };
        }
    }

    /// Writes the tags of `Plan::Fetch` events whose digest the tags already
    /// record, without a registry request. A failed lookup only costs the
    /// fetches.
    fn reuse_known_manifests(
        &self,
        registry_id: i64,
        pending: &mut [Pending],
        outcome: &mut Outcome,
    ) {
        let digests: BTreeSet<String> = pending
            .iter()
            .filter_map(|item| match &item.plan {
                Ok(Plan::Fetch { digest, .. }) => Some(digest.clone()),
                _ => None,
            })
            .collect();
        if digests.is_empty() {
            return;
        }
        let digests: Vec<String> = digests.into_iter().collect();
        let known = match self.store.known_manifests(registry_id, &digests) {
            Ok(known) => known,
            Err(error) => {
                log::warn!("looking up known manifests failed, fetching them all: {error:#}");
                return;
            }
        };
        let mut reused = 0;
        for item in pending.iter_mut() {
            let Ok(Plan::Fetch {
                repository,
                tag,
                digest,
            }) = &item.plan
            else {
                continue;
            };
            let Some(manifest) = known.get(digest) else {
                continue;
            };
            item.plan = Ok(Plan::Apply(EventEffect::Upsert(TagWrite {
                repository: repository.clone(),
                tag: tag.clone(),
                digest: digest.clone(),
                image_id: manifest.image_id.clone(),
                media_type: manifest.media_type.clone(),
                size: Some(manifest.size),
                platforms: manifest.platforms.clone(),
            })));
            reused += 1;
        }
        outcome.add("manifests_reused", reused);
    }
}

/// Parses a stored event with the intake's rules: None for an event the
/// intake would have dropped (nothing to do); anything unreadable is a
/// permanent failure.
fn read_stored(claimed: &ClaimedEvent) -> Result<Option<Event>, Failure> {
    let value: serde_json::Value =
        serde_json::from_str(&claimed.data).map_err(|error| Failure::Permanent {
            error: format!("malformed stored event: not JSON: {error}"),
        })?;
    match notification::classify(&value) {
        Verdict::Keep(event) => Ok(Some(event)),
        Verdict::Drop(_) => Ok(None),
        Verdict::Malformed(error) => Err(Failure::Permanent {
            error: format!("malformed stored event: {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Descriptor, Platform, PlatformManifest};

    fn event(json: &str) -> Event {
        notification::parse_event(&serde_json::from_str(json).unwrap()).unwrap()
    }

    const PUSH_WITH_REFERENCES: &str = r#"{"id":"a","timestamp":"2026-01-02T03:04:05Z","action":"push",
        "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m1","repository":"ns/app","tag":"1.0",
        "references":[{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":"sha256:c1"},
                      {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":100,"digest":"sha256:l1"}]}}"#;

    #[test]
    fn push_with_references_needs_no_registry_request() {
        assert_eq!(
            plan(&event(PUSH_WITH_REFERENCES)),
            Plan::Apply(EventEffect::Upsert(TagWrite {
                repository: "ns/app".into(),
                tag: "1.0".into(),
                digest: "sha256:m1".into(),
                image_id: "c1".into(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: Some(110),
                platforms: None,
            }))
        );
    }

    #[test]
    fn push_without_references_fetches_the_manifest() {
        let json = r#"{"id":"a","timestamp":"2026-01-02T03:04:05Z","action":"push",
            "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:m1","repository":"app","tag":"t"}}"#;
        assert_eq!(
            plan(&event(json)),
            Plan::Fetch {
                repository: "app".into(),
                tag: "t".into(),
                digest: "sha256:m1".into()
            }
        );
    }

    #[test]
    fn push_without_tag_creates_nothing() {
        let json = PUSH_WITH_REFERENCES.replace(r#","tag":"1.0""#, "");
        assert_eq!(plan(&event(&json)), Plan::Apply(EventEffect::Nothing));
    }

    #[test]
    fn deletes_by_digest_and_by_tag() {
        let by_digest = r#"{"id":"d","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"digest":"sha256:m1","repository":"ns/app"}}"#;
        assert_eq!(
            plan(&event(by_digest)),
            Plan::Apply(EventEffect::DeleteDigest {
                repository: "ns/app".into(),
                digest: "sha256:m1".into()
            })
        );
        let by_tag = r#"{"id":"d","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"tag":"x","repository":"ns/app"}}"#;
        assert_eq!(
            plan(&event(by_tag)),
            Plan::Apply(EventEffect::DeleteTag {
                repository: "ns/app".into(),
                tag: "x".into()
            })
        );
    }

    #[test]
    fn pulls_record_the_event_time() {
        let by_tag = r#"{"id":"p","timestamp":"2026-01-02T03:04:05Z","action":"pull",
            "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m1","repository":"app","tag":"t"}}"#;
        assert_eq!(
            plan(&event(by_tag)),
            Plan::Apply(EventEffect::Pull {
                repository: "app".into(),
                tag: Some("t".into()),
                digest: None,
                at: 1_767_323_045_000
            })
        );
        let by_digest = by_tag.replace(r#","tag":"t""#, "");
        assert_eq!(
            plan(&event(&by_digest)),
            Plan::Apply(EventEffect::Pull {
                repository: "app".into(),
                tag: None,
                digest: Some("sha256:m1".into()),
                at: 1_767_323_045_000
            })
        );
    }

    #[test]
    fn an_index_write_carries_its_platforms() {
        let child = |os: &str, architecture: &str, variant: Option<&str>| PlatformManifest {
            descriptor: Descriptor {
                digest: format!("sha256:{architecture}"),
                size: 5,
                media_type: String::new(),
            },
            platform: Some(Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: variant.map(Into::into),
            }),
        };
        let manifest = Manifest {
            digest: "sha256:other".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            image_id: String::new(),
            size: 1234,
            config: None,
            layers: Vec::new(),
            children: vec![
                child("linux", "amd64", None),
                child("linux", "arm64", Some("v8")),
            ],
        };
        let write = write_from_manifest("ns/app", "multi", "sha256:index", &manifest);
        assert_eq!(write.digest, "sha256:index");
        assert_eq!(write.size, Some(1234));
        assert_eq!(
            write.platforms.as_deref(),
            Some(
                r#"[{"architecture":"amd64","os":"linux"},{"architecture":"arm64","os":"linux","variant":"v8"}]"#
            )
        );
    }

    #[test]
    fn registry_errors_sort_into_transient_and_permanent() {
        let transient = [
            RegistryError::Transport("connection refused".into()),
            RegistryError::Server {
                status: 503,
                message: String::new(),
            },
            RegistryError::RateLimited {
                retry_after: Some(Duration::from_secs(9)),
            },
            RegistryError::Unauthorized {
                scope: None,
                message: String::new(),
            },
        ];
        for error in &transient {
            assert!(
                matches!(failure_from_registry("x", error), Failure::Transient { .. }),
                "{error}"
            );
        }
        let permanent = [
            RegistryError::NotFound {
                code: Some("MANIFEST_UNKNOWN".into()),
                message: String::new(),
            },
            RegistryError::Malformed("bad".into()),
            RegistryError::Server {
                status: 400,
                message: String::new(),
            },
        ];
        for error in &permanent {
            assert!(
                matches!(failure_from_registry("x", error), Failure::Permanent { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let settings = Settings {
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            ..Settings::default()
        };
        let waits: Vec<u64> = (1..=7)
            .map(|attempt| backoff_after(attempt, &settings, None).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff_after(100, &settings, None), Duration::from_secs(60));
        assert_eq!(
            backoff_after(1, &settings, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn unreadable_stored_events_fail_for_good() {
        let claimed = |data: &str| ClaimedEvent {
            id: 1,
            event_id: "x".into(),
            action: "push".into(),
            repository: "app".into(),
            data: data.into(),
            attempts: 0,
        };
        for data in [
            "not json",
            r#"{"id":"x"}"#,
            r#"{"id":"x","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"repository":"app"}}"#,
        ] {
            assert!(
                matches!(read_stored(&claimed(data)), Err(Failure::Permanent { .. })),
                "{data}"
            );
        }
    }
}
