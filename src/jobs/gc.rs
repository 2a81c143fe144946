//! The `gc` handler: deletes images from the registry by the job's
//! retention policies, then records that in the database.
//!
//! A pass takes the gc lock (one pass at a time across daemons on one
//! PostgreSQL), reads the database's tags, plans (`gc/plan.rs`, pure),
//! asks the registry for the children of every kept image index of a
//! repository with deletions, checks the safety valve, then deletes digest
//! by digest. After each DELETE the registry confirmed (202, or 404: already
//! gone) the tags at that digest leave the database exactly as the
//! registry's delete event would remove them, with the audit rows in the
//! same transaction; the events that follow find nothing to do.
//!
//! What this handler must not do: touch a repository no policy selects;
//! delete a digest that carries a kept tag or that a kept index lists;
//! retry a DELETE; record a deletion the registry did not confirm; go on
//! after the registry refused deletions (`storage.delete.enabled`) or
//! became unreachable.

pub(crate) mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;

use self::plan::{Plan, PlanTotals, TagFacts, Verdict};
use super::{Handler, JobContext, Outcome};
use crate::config::GcOptions;
use crate::registry::{Client, RegistryError};
use crate::store::{GcDeletion, Store};

/// The PostgreSQL advisory lock key a pass holds, so two daemons on one
/// database never collect at once ("regkeeper gc" in ASCII, truncated).
pub const GC_LOCK_KEY: i64 = 0x7265_676b_6720_6763;

/// The `gc` handler of one job.
pub struct GcHandler {
    options: GcOptions,
    store: Arc<dyn Store>,
    registry: Arc<Client>,
    /// The name of the registry row ([`super::registry_hostname`]).
    registry_host: String,
}

/// What one pass did, for the run's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    /// The plan's totals (a real pass: as deleted, see below).
    pub totals: PlanTotals,
    /// Digests the registry deleted (or had already deleted).
    pub digests_deleted: usize,
    /// Tags the database lost with them.
    pub tags_deleted: usize,
    /// DELETEs that failed (not recorded; the run fails).
    pub delete_errors: usize,
    /// A dry run's plan would be refused by the safety valve.
    pub valve_refused: bool,
}

impl PassCounts {
    fn record(&self, outcome: &mut Outcome, dry_run: bool) {
        let as_count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        outcome.add("tags_selected", as_count(self.totals.tags_selected));
        outcome.add("tags_kept", as_count(self.totals.tags_kept));
        outcome.add("kept_for_digest", as_count(self.totals.kept_for_digest));
        outcome.add(
            "kept_as_index_child",
            as_count(self.totals.kept_as_index_child),
        );
        if dry_run {
            outcome.add("tags_to_delete", as_count(self.totals.tags_deleted));
            outcome.add("digests_to_delete", as_count(self.totals.digests_deleted));
        } else {
            outcome.add("tags_deleted", as_count(self.tags_deleted));
            outcome.add("digests_deleted", as_count(self.digests_deleted));
        }
        if self.delete_errors > 0 {
            outcome.add("delete_errors", as_count(self.delete_errors));
        }
        if self.valve_refused {
            outcome.add("valve_would_refuse", 1);
        }
    }
}

impl GcHandler {
    /// Builds the handler of a `gc` job.
    pub fn new(options: GcOptions, resources: &super::Resources) -> GcHandler {
        GcHandler {
            options,
            store: resources.store.clone(),
            registry: resources.registry.clone(),
            registry_host: super::registry_hostname(&resources.config.registry.url),
        }
    }
}

impl Handler for GcHandler {
    fn run(&self, ctx: &JobContext) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        let Some(_lock) = self.store.try_advisory_lock(GC_LOCK_KEY)? else {
            log::info!(
                "job={} skipped the pass: another daemon holds the gc lock",
                ctx.job_name
            );
            outcome.add("skipped_passes", 1);
            return Ok(outcome);
        };
        let registry_id = self.store.ensure_registry(&self.registry_host)?;
        let mut plan = self.plan(registry_id, crate::time::now_ms())?;
        self.protect_index_children(ctx, &mut plan)?;
        let mut counts = PassCounts {
            totals: plan.totals(),
            ..PassCounts::default()
        };
        let valve = plan.exceeds_delete_fraction(self.options.max_delete_fraction);
        if ctx.options.dry_run {
            print!("{}", plan.render());
            if let Some(reason) = &valve {
                let verdict = if ctx.options.force {
                    "a real run with --force would delete anyway"
                } else {
                    "a real run would be refused and delete nothing (add --force to delete anyway)"
                };
                println!("safety valve: {reason}; {verdict}");
                counts.valve_refused = !ctx.options.force;
            }
            let _ = std::io::stdout().flush();
            let rows = audit_rows(&plan, &self.registry_host, ctx.run_id, None, true);
            self.store.record_gc_decisions(&rows)?;
            counts.record(&mut outcome, true);
            return Ok(outcome);
        }
        if let Some(reason) = valve {
            if ctx.options.force {
                log::warn!("job={} {reason}; deleting anyway (--force)", ctx.job_name);
            } else {
                log::warn!(
                    "job={} safety valve: {reason}; the plan was:\n{}",
                    ctx.job_name,
                    plan.render()
                );
                anyhow::bail!(
                    "safety valve: {reason}; nothing was deleted (check the policies with \
                     `regkeeper --once {} --dry-run`, then run `regkeeper --once {} --force` to \
                     delete anyway)",
                    ctx.job_name,
                    ctx.job_name
                );
            }
        }
        let result = self.delete(ctx, registry_id, &plan, &mut counts);
        counts.record(&mut outcome, false);
        log::info!(
            "job={} run={} deleted {} digests ({} tags)",
            ctx.job_name,
            ctx.run_id,
            counts.digests_deleted,
            counts.tags_deleted
        );
        result?;
        if counts.delete_errors > 0 {
            anyhow::bail!(
                "{} DELETEs failed and were not recorded (see the log); {} digests were deleted",
                counts.delete_errors,
                counts.digests_deleted
            );
        }
        Ok(outcome)
    }
}

impl GcHandler {
    /// The plan of the database's tags at `now`, before the children of
    /// kept indexes are known.
    pub fn plan(&self, registry_id: i64, now: i64) -> anyhow::Result<Plan> {
        let mut tags: BTreeMap<String, Vec<TagFacts>> = BTreeMap::new();
        for tag in self
            .store
            .tags(registry_id, None)
            .context("reading the tags")?
        {
            tags.entry(tag.repository).or_default().push(TagFacts {
                tag: tag.tag,
                digest: tag.digest,
                media_type: tag.media_type,
                pushed_at: tag.created_at,
                pulled_at: tag.pulled_at,
            });
        }
        Ok(plan::plan(&self.options.policies, &tags, now))
    }

    /// Reads every kept index of a repository with deletions and keeps
    /// the tags on the manifests it lists. A repository whose kept index
    /// cannot be read is left alone; an unreachable registry ends the pass.
    fn protect_index_children(&self, ctx: &JobContext, plan: &mut Plan) -> anyhow::Result<()> {
        for repository in &mut plan.repositories {
            if repository.delete_digests().is_empty() {
                continue;
            }
            for index in repository.kept_indexes() {
                match self.registry.manifest(&repository.repository, &index) {
                    Ok(manifest) => {
                        let children: BTreeSet<String> = manifest
                            .children
                            .iter()
                            .map(|child| child.descriptor.digest.clone())
                            .collect();
                        repository.protect_children(&index, &children);
                    }
                    Err(error) if self.registry.is_unreachable() => {
                        return Err(anyhow::anyhow!(
                            "reading the kept index {index} of {}: {error}; the registry is \
                             unreachable, nothing was deleted",
                            repository.repository
                        ));
                    }
                    Err(error) => {
                        log::warn!(
                            "job={} left {} alone: its kept index {index} could not be read: {error}",
                            ctx.job_name,
                            repository.repository
                        );
                        repository.keep_all(&format!(
                            "left alone: the kept index {index} could not be read"
                        ));
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes the plan's digests one by one, recording each the registry
    /// confirmed.
    fn delete(
        &self,
        ctx: &JobContext,
        registry_id: i64,
        plan: &Plan,
        counts: &mut PassCounts,
    ) -> anyhow::Result<()> {
        for repository in &plan.repositories {
            for digest in repository.delete_digests() {
                if ctx.cancel.is_cancelled() {
                    anyhow::bail!(
                        "the pass was cut short after deleting {} digests",
                        counts.digests_deleted
                    );
                }
                match self
                    .registry
                    .delete_manifest(&repository.repository, &digest)
                {
                    Ok(()) => {}
                    Err(error) if error.says_gone() => {
                        log::info!(
                            "job={} {}@{digest} was already gone from the registry",
                            ctx.job_name,
                            repository.repository
                        );
                    }
                    Err(RegistryError::NotFound {
                        code: Some(code), ..
                    }) if code == "UNSUPPORTED" => {
                        anyhow::bail!(
                            "the registry refused to delete {}@{digest} (UNSUPPORTED): deletion is \
                             disabled there; set storage.delete.enabled: true in the registry's \
                             configuration and restart it. {} digests were deleted before",
                            repository.repository,
                            counts.digests_deleted
                        );
                    }
                    Err(error) if self.registry.is_unreachable() => {
                        anyhow::bail!(
                            "deleting {}@{digest}: {error}; the registry is unreachable, the pass \
                             stopped after deleting {} digests (each recorded)",
                            repository.repository,
                            counts.digests_deleted
                        );
                    }
                    Err(error) => {
                        log::warn!(
                            "job={} deleting {}@{digest} failed, not recorded: {error}",
                            ctx.job_name,
                            repository.repository
                        );
                        counts.delete_errors += 1;
                        continue;
                    }
                }
                let rows = audit_rows(
                    plan,
                    &self.registry_host,
                    ctx.run_id,
                    Some((&repository.repository, &digest)),
                    false,
                );
                let tags = self.store.apply_gc_deletion(
                    registry_id,
                    &repository.repository,
                    &digest,
                    &rows,
                )?;
                counts.digests_deleted += 1;
                counts.tags_deleted += usize::try_from(tags).unwrap_or(usize::MAX);
            }
        }
        Ok(())
    }
}

/// The audit rows of the plan's deletions: all of them, or those of one
/// repository's digest.
fn audit_rows(
    plan: &Plan,
    registry_host: &str,
    run_id: i64,
    only: Option<(&str, &str)>,
    dry_run: bool,
) -> Vec<GcDeletion> {
    let now = crate::time::now_ms();
    let mut rows = Vec::new();
    for repository in &plan.repositories {
        if only.is_some_and(|(name, _)| name != repository.repository) {
            continue;
        }
        for decision in &repository.tags {
            let Verdict::Delete(rule) = &decision.verdict else {
                continue;
            };
            if only.is_some_and(|(_, digest)| digest != decision.facts.digest) {
                continue;
            }
            rows.push(GcDeletion {
                registry: registry_host.to_string(),
                repository: repository.repository.clone(),
                tag: decision.facts.tag.clone(),
                digest: decision.facts.digest.clone(),
                policy: repository.policies.join(", "),
                rule: rule.clone(),
                run_id,
                deleted_at: now,
                dry_run,
            });
        }
    }
    rows
}
