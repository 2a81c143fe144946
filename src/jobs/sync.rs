//! The `sync` handler: reconciles the database with the registry catalog.
//!
//! A pass takes a start mark and a snapshot of the database, walks the whole
//! catalog, then asks the registry about every repository concurrently
//! through the client's worker pool: the tag list, a HEAD for each tag the
//! database knows (a GET only when the digest changed, or instead of the HEAD
//! when the registry omits `Docker-Content-Digest`: one request per tag
//! either way) and a GET for each tag it does not. `plan.rs` turns the
//! snapshot and these observations into a plan (pure); this file checks the
//! safety valve and applies the plan in short transactions of a batch of
//! repositories each, never holding one across HTTP.
//!
//! What this handler must not do: write anything when the catalog walk
//! failed; touch a repository whose tag list or manifests could not be read;
//! undo a change that registry events brought in during the pass (the events
//! job is the source of truth for recent changes); delete anything under
//! `initial` or `update`.

mod confirm;
mod observe;
pub(crate) mod plan;
mod progress;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use self::confirm::confirm_deletions;
use self::plan::{Action, Deletes, Observed, Plan, PlanTotals, Snapshot};
use super::{Handler, JobContext, Outcome};
use crate::config::{Strategy, SyncOptions};
use crate::registry::Client;
use crate::store::{RepositorySync, Store, SyncApplied};

/// The PostgreSQL advisory lock key a pass holds, so two daemons on one
/// database never sync at once ("regkeeper sync" in ASCII, truncated).
pub const SYNC_LOCK_KEY: i64 = 0x7265_676b_7379_6e63;

/// Repositories applied per transaction: enough to make the first pass of a
/// large registry cheap, few enough to keep each transaction short.
const APPLY_BATCH: usize = 64;

/// At most this many lines of a refused plan are logged; `--dry-run` prints all.
const PLAN_LOG_LINES: usize = 1000;

/// How often a catalog walk that ended early is continued before the pass
/// gives up on it ([`SyncHandler::begin`]).
const CATALOG_CONTINUATIONS: usize = 3;

/// The `sync` handler of one job.
pub struct SyncHandler {
    options: SyncOptions,
    store: Arc<dyn Store>,
    registry: Arc<Client>,
    /// The name of the registry row ([`super::registry_hostname`]).
    registry_host: String,
    /// This process started an `initial` pass on an empty database; it keeps
    /// trying until a pass succeeds even though repositories now exist.
    initial_started: AtomicBool,
}

/// What one pass did, for the run's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    /// Repositories the catalog lists.
    pub repositories_seen: usize,
    /// The plan's totals on a dry run; what applying the plan did otherwise.
    pub totals: PlanTotals,
    /// Registry requests made during the pass.
    pub requests: u64,
    /// A dry run's plan would be refused by the safety valve.
    pub valve_refused: bool,
}

impl PassCounts {
    fn record(&self, outcome: &mut Outcome) {
        let as_count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        outcome.add("repositories_seen", as_count(self.repositories_seen));
        for (name, n) in self.totals.named() {
            outcome.add(name, as_count(n));
        }
        outcome.add("requests", i64::try_from(self.requests).unwrap_or(i64::MAX));
        if self.valve_refused {
            outcome.add("valve_would_refuse", 1);
        }
    }
}

/// Whether a run starts a pass, from the strategy and the database's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Run a pass.
    Pass,
    /// Finish for good without a pass, for this reason.
    Finish(String),
}

/// Decides whether a run starts a pass. `initial` runs only while the
/// database has no repositories, unless this process already began an
/// initial pass that has not succeeded yet.
pub fn decide_start(strategy: Strategy, has_repositories: bool, initial_started: bool) -> Start {
    match strategy {
        Strategy::Initial if has_repositories && !initial_started => {
            Start::Finish("strategy initial: the database already has repositories".to_string())
        }
        _ => Start::Pass,
    }
}

/// The reason to finish for good after a successful pass, if the strategy
/// runs once.
pub fn finish_after_success(strategy: Strategy) -> Option<String> {
    match strategy {
        Strategy::Initial => Some("strategy initial: the first pass succeeded".to_string()),
        Strategy::OnStart => {
            Some("strategy on-start: the pass of this start succeeded".to_string())
        }
        Strategy::Update | Strategy::UpdateDelete => None,
    }
}

/// Whether the strategy deletes what the registry lacks.
pub fn deletes(strategy: Strategy) -> Deletes {
    match strategy {
        Strategy::Initial | Strategy::Update => Deletes::Never,
        Strategy::OnStart | Strategy::UpdateDelete => Deletes::Missing,
    }
}

impl SyncHandler {
    /// Builds the handler of a `sync` job.
    pub fn new(options: SyncOptions, resources: &super::Resources) -> SyncHandler {
        SyncHandler {
            options,
            store: resources.store.clone(),
            registry: resources.registry.clone(),
            registry_host: super::registry_hostname(&resources.config.registry.url),
            initial_started: AtomicBool::new(false),
        }
    }
}

impl Handler for SyncHandler {
    fn run(&self, ctx: &JobContext) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        let registry_id = self.registry_id()?;
        let strategy = self.options.strategy;
        // Only `initial` looks at what the database holds before a pass.
        let has_repositories =
            strategy == Strategy::Initial && !self.store.repositories(registry_id)?.is_empty();
        // A dry run always plans, also for a strategy that is done.
        let start = decide_start(
            strategy,
            has_repositories,
            self.initial_started.load(Ordering::SeqCst),
        );
        if let (Start::Finish(reason), false) = (start, ctx.options.dry_run) {
            log::info!("job={} {reason}", ctx.job_name);
            outcome.finished = Some(reason);
            return Ok(outcome);
        }
        let Some(_lock) = self.store.try_advisory_lock(SYNC_LOCK_KEY)? else {
            log::info!(
                "job={} skipped the pass: another daemon holds the sync lock",
                ctx.job_name
            );
            outcome.add("skipped_passes", 1);
            return Ok(outcome);
        };
        if strategy == Strategy::Initial && !ctx.options.dry_run {
            self.initial_started.store(true, Ordering::SeqCst);
        }
        let counts = self.pass(ctx, registry_id)?;
        counts.record(&mut outcome);
        if counts.totals.errors > 0 {
            log::warn!(
                "job={} {} repositories could not be synced and were left as they are",
                ctx.job_name,
                counts.totals.errors
            );
        } else if !ctx.options.dry_run {
            outcome.finished = finish_after_success(strategy);
        }
        Ok(outcome)
    }
}

/// Everything a pass learnt before planning. Built by [`SyncHandler::begin`]
/// and filled in by [`SyncHandler::observe`]; tests drive these phases one
/// by one to change the registry in the middle of a pass.
pub struct Walk {
    /// The database's registry row.
    pub registry_id: i64,
    /// The start mark: registry events at or after it make a repository busy.
    pub mark: i64,
    /// The database before the walk.
    pub snapshot: Snapshot,
    /// Every repository of the catalog, in catalog order.
    pub catalog: Vec<String>,
    /// What the registry said about every repository of its catalog.
    pub observed: BTreeMap<String, Observed>,
    /// Registry requests made so far.
    pub requests: u64,
    requests_before: u64,
    refused_before: u64,
}

impl SyncHandler {
    /// The id of the registry row this job syncs.
    pub fn registry_id(&self) -> anyhow::Result<i64> {
        self.store.ensure_registry(&self.registry_host)
    }

    /// One pass: walk, plan, confirm deletions, check the valve, apply (or
    /// print, on a dry run).
    fn pass(&self, ctx: &JobContext, registry_id: i64) -> anyhow::Result<PassCounts> {
        let mut walk = self.begin(registry_id)?;
        self.observe(ctx, &mut walk)?;
        let mut plan = self.plan(&mut walk)?;
        self.confirm(ctx, &mut walk, &mut plan);
        self.apply(ctx, &walk, &plan)
    }

    /// Takes the start mark and the snapshot, then walks the whole catalog.
    /// Fails, having written nothing, when the catalog cannot be read
    /// completely.
    ///
    /// A deleting pass does not take a walk's end on trust: when the last
    /// page ends (fewer names, no `Link`) while the database knows
    /// repositories sorting after the last name seen, a page in the middle
    /// may have answered 200 with no names. The walk is continued after
    /// that name until the registry answers an empty page there, at most
    /// `CATALOG_CONTINUATIONS` times; a walk still ending early after
    /// that is incomplete and the pass fails. Repositories that stay
    /// missing are then deleted only when the registry confirms it
    /// (`confirm::confirm_deletions`).
    pub fn begin(&self, registry_id: i64) -> anyhow::Result<Walk> {
        let requests_before = self.registry.requests_made();
        let refused_before = self.registry.requests_refused();
        let mark = crate::time::now_ms();
        let snapshot = self.snapshot(registry_id)?;
        let mut catalog = self
            .registry
            .catalog()
            .context("walking the registry catalog")?;
        if deletes(self.options.strategy) == Deletes::Missing {
            let mut continuations = 0;
            while let Some(last) = ended_early(&catalog, &snapshot) {
                if continuations == CATALOG_CONTINUATIONS {
                    anyhow::bail!(
                        "walking the registry catalog: it ended early {} times in a row (the \
                         database knows repositories after {}); nothing was written",
                        continuations + 1,
                        last.unwrap_or("the start")
                    );
                }
                continuations += 1;
                let more = self.registry.catalog_after(last).with_context(|| {
                    format!(
                        "walking the registry catalog again after {}",
                        last.unwrap_or("the start")
                    )
                })?;
                // A registry that ignores `last` answers names seen already.
                let seen: std::collections::HashSet<&String> = catalog.iter().collect();
                let more: Vec<String> = more
                    .into_iter()
                    .filter(|name| !seen.contains(name))
                    .collect();
                if more.is_empty() {
                    break;
                }
                log::warn!(
                    "the registry catalog ended early after {}; asked again, it went on with {} \
                     more repositories",
                    last.unwrap_or("the start"),
                    more.len()
                );
                catalog.extend(more);
            }
        }
        Ok(Walk {
            registry_id,
            mark,
            snapshot,
            catalog,
            observed: BTreeMap::new(),
            requests: self
                .registry
                .requests_made()
                .saturating_sub(requests_before),
            requests_before,
            refused_before,
        })
    }

    /// Plans a walk: reads which repositories have racing events. The
    /// walk's observations move into the plan.
    pub fn plan(&self, walk: &mut Walk) -> anyhow::Result<Plan> {
        let busy = self
            .store
            .repositories_with_recent_events(walk.mark)
            .context("reading repositories with recent registry events")?;
        Ok(plan::plan(
            &walk.snapshot,
            std::mem::take(&mut walk.observed),
            &busy,
            deletes(self.options.strategy),
        ))
    }

    /// Asks the registry to confirm every deletion of the plan; a
    /// repository whose deletion it does not confirm is left as it is
    /// (`confirm::confirm_deletions`). Counts its requests into the walk.
    pub fn confirm(&self, ctx: &JobContext, walk: &mut Walk, plan: &mut Plan) {
        let counts = confirm_deletions(&self.registry, plan, &walk.snapshot, &ctx.cancel);
        if counts.confirmed + counts.refused > 0 {
            log::info!(
                "job={} the registry confirmed {} deletions; {} repositories with an \
                 unconfirmed deletion are left as they are",
                ctx.job_name,
                counts.confirmed,
                counts.refused
            );
        }
        walk.requests = self
            .registry
            .requests_made()
            .saturating_sub(walk.requests_before);
    }

    /// Applies a plan (or prints it on a dry run) after the safety valve.
    pub fn apply(&self, ctx: &JobContext, walk: &Walk, plan: &Plan) -> anyhow::Result<PassCounts> {
        let registry_id = walk.registry_id;
        let planned = plan.totals();
        let mut counts = PassCounts {
            repositories_seen: walk.catalog.len(),
            // Until applied, only the repositories left alone are known.
            totals: PlanTotals {
                skipped: planned.skipped,
                errors: planned.errors,
                ..PlanTotals::default()
            },
            requests: walk.requests,
            valve_refused: false,
        };
        for entry in &plan.repositories {
            if let Action::Skip(
                plan::SkipReason::Unreadable(cause) | plan::SkipReason::Unconfirmed(cause),
            ) = &entry.action
            {
                log::warn!(
                    "job={} left {} as it is: {cause}",
                    ctx.job_name,
                    entry.repository
                );
            }
        }
        let valve = plan.exceeds_delete_fraction(&walk.snapshot, self.options.max_delete_fraction);
        if ctx.options.dry_run {
            print!("{}", plan.render());
            if let Some(reason) = &valve {
                let verdict = if ctx.options.force {
                    "a real run with --force would apply it anyway"
                } else {
                    "a real run would be refused and write nothing (add --force to apply it)"
                };
                println!("safety valve: {reason}; {verdict}");
                counts.valve_refused = !ctx.options.force;
            }
            let _ = std::io::stdout().flush();
            counts.totals = planned;
            return Ok(counts);
        }
        if let Some(reason) = valve {
            if ctx.options.force {
                log::warn!("job={} {reason}; applying anyway (--force)", ctx.job_name);
            } else {
                log::warn!(
                    "job={} safety valve: {reason}; the plan was:\n{}",
                    ctx.job_name,
                    first_lines(&plan.render(), PLAN_LOG_LINES)
                );
                crate::metrics::sync_valve_refused(&ctx.job_name);
                anyhow::bail!(
                    "safety valve: {reason}; nothing was written (check the registry, then run \
                     `regkeeper --once {} --force` to apply it)",
                    ctx.job_name
                );
            }
        }
        let now = crate::time::now_ms();
        // The writes of one batch at a time: a first pass of a large
        // registry never holds a second copy of every manifest.
        let mut entries = plan
            .repositories
            .iter()
            .filter_map(repository_sync)
            .peekable();
        while entries.peek().is_some() {
            let batch: Vec<RepositorySync> = entries.by_ref().take(APPLY_BATCH).collect();
            let batch = batch.as_slice();
            if ctx.cancel.is_cancelled() {
                anyhow::bail!("the pass was cut short while applying its plan");
            }
            let results =
                match self
                    .store
                    .apply_repository_syncs(registry_id, batch, walk.mark, now)
                {
                    Ok(results) => results.into_iter().map(Ok).collect::<Vec<_>>(),
                    // One bad repository must not hold back the others: apply
                    // the batch one by one to find it.
                    Err(_) => batch
                        .iter()
                        .map(|write| {
                            self.store
                                .apply_repository_syncs(
                                    registry_id,
                                    std::slice::from_ref(write),
                                    walk.mark,
                                    now,
                                )
                                .and_then(|mut results| {
                                    results.pop().context("the store returned no result")
                                })
                        })
                        .collect(),
                };
            for (write, result) in batch.iter().zip(results) {
                let totals = &mut counts.totals;
                match result {
                    Ok(SyncApplied::Busy) => totals.skipped += 1,
                    Ok(SyncApplied::Applied {
                        created,
                        updated,
                        tags_deleted,
                        repository_deleted,
                    }) => {
                        totals.tags_created += created;
                        totals.tags_updated += updated;
                        totals.tags_deleted += tags_deleted;
                        totals.repositories_deleted += usize::from(repository_deleted);
                    }
                    Err(error) => {
                        log::warn!(
                            "job={} could not apply the sync of {}: {error:#}",
                            ctx.job_name,
                            write.repository
                        );
                        totals.errors += 1;
                    }
                }
            }
        }
        Ok(counts)
    }

    /// The database's repositories and tags with their digests.
    fn snapshot(&self, registry_id: i64) -> anyhow::Result<Snapshot> {
        let mut snapshot: Snapshot = BTreeMap::new();
        for repository in self.store.repositories(registry_id)? {
            snapshot.entry(repository).or_default();
        }
        for tag in self.store.tags(registry_id, None)? {
            snapshot
                .entry(tag.repository)
                .or_default()
                .insert(tag.tag, tag.digest);
        }
        Ok(snapshot)
    }
}

/// When a catalog walk may have ended early: the database knows a
/// repository sorting after the last name seen (the registry sorts its
/// catalog by name). Returns the name to continue after (None: from the
/// start, the walk saw nothing).
fn ended_early<'a>(catalog: &'a [String], snapshot: &Snapshot) -> Option<Option<&'a str>> {
    let last = catalog.last().map(String::as_str);
    let beyond = match last {
        Some(last) => snapshot
            .range::<str, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
            .next()
            .is_some(),
        None => !snapshot.is_empty(),
    };
    beyond.then_some(last)
}

/// The first `limit` lines of `text`, with a note of how many were left out.
fn first_lines(text: &str, limit: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= limit {
        return text.to_string();
    }
    // The summary is the last line: keep it.
    let mut kept = lines[..limit - 1].join("\n");
    kept.push_str(&format!(
        "\n... {} more lines (`--dry-run` prints them all)\n{}",
        lines.len() - limit,
        lines[lines.len() - 1]
    ));
    kept
}

/// The writes of one repository's plan, or None when it writes nothing.
fn repository_sync(entry: &plan::RepositoryPlan) -> Option<RepositorySync> {
    match &entry.action {
        Action::Sync(changes) if changes.writes_nothing() => None,
        Action::Sync(changes) => Some(RepositorySync {
            repository: entry.repository.clone(),
            upserts: changes
                .create
                .iter()
                .cloned()
                .chain(changes.update.iter().map(|update| update.write.clone()))
                .collect(),
            delete_tags: changes.delete.clone(),
            delete_repository: false,
        }),
        Action::Delete { .. } => Some(RepositorySync {
            repository: entry.repository.clone(),
            upserts: Vec::new(),
            delete_tags: Vec::new(),
            delete_repository: true,
        }),
        Action::Skip(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::observe::tag_write;
    use super::*;
    use crate::registry::{Descriptor, Manifest, Platform, PlatformManifest};

    #[test]
    fn initial_runs_only_on_an_empty_database() {
        assert_eq!(decide_start(Strategy::Initial, false, false), Start::Pass);
        assert!(matches!(
            decide_start(Strategy::Initial, true, false),
            Start::Finish(_)
        ));
        // A failed initial pass may have written some repositories: keep going.
        assert_eq!(decide_start(Strategy::Initial, true, true), Start::Pass);
        for strategy in [Strategy::OnStart, Strategy::Update, Strategy::UpdateDelete] {
            assert_eq!(decide_start(strategy, true, false), Start::Pass);
        }
    }

    #[test]
    fn only_initial_and_on_start_finish_for_good() {
        assert!(finish_after_success(Strategy::Initial).is_some());
        assert!(finish_after_success(Strategy::OnStart).is_some());
        assert_eq!(finish_after_success(Strategy::Update), None);
        assert_eq!(finish_after_success(Strategy::UpdateDelete), None);
    }

    #[test]
    fn only_on_start_and_update_delete_delete() {
        assert_eq!(deletes(Strategy::Initial), Deletes::Never);
        assert_eq!(deletes(Strategy::Update), Deletes::Never);
        assert_eq!(deletes(Strategy::OnStart), Deletes::Missing);
        assert_eq!(deletes(Strategy::UpdateDelete), Deletes::Missing);
    }

    #[test]
    fn tag_write_of_an_index_lists_its_platforms() {
        let child = |os: &str, architecture: &str, variant: Option<&str>| PlatformManifest {
            descriptor: Descriptor {
                digest: "sha256:c".into(),
                size: 1,
                media_type: "m".into(),
            },
            platform: Some(Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: variant.map(str::to_string),
            }),
        };
        let manifest = Manifest {
            digest: "sha256:i".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            image_id: String::new(),
            size: 42,
            config: None,
            layers: Vec::new(),
            children: vec![
                child("linux", "amd64", None),
                child("linux", "arm", Some("v7")),
            ],
        };
        let write = tag_write("ns/app", "v1", &manifest);
        assert_eq!(write.digest, "sha256:i");
        assert_eq!(write.size, Some(42));
        assert_eq!(
            write.platforms.as_deref(),
            Some(
                r#"[{"architecture":"amd64","os":"linux"},{"architecture":"arm","os":"linux","variant":"v7"}]"#
            )
        );
    }

    #[test]
    fn a_walk_ended_early_when_the_database_knows_names_after_its_last() {
        let snapshot: Snapshot = ["a", "m", "z"]
            .into_iter()
            .map(|name| (name.to_string(), BTreeMap::new()))
            .collect();
        let walk = |names: &[&str]| {
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ended_early(&walk(&["a", "m", "z"]), &snapshot), None);
        assert_eq!(ended_early(&walk(&["a", "m", "zz"]), &snapshot), None);
        assert_eq!(ended_early(&walk(&["a", "b"]), &snapshot), Some(Some("b")));
        // `z` itself is the last name: nothing sorts after it.
        assert_eq!(ended_early(&walk(&["z"]), &snapshot), None);
        assert_eq!(ended_early(&[], &snapshot), Some(None));
        assert_eq!(ended_early(&[], &Snapshot::new()), None);
    }

    #[test]
    fn long_plans_are_cut_in_logs_but_keep_their_summary() {
        let text = "a\nb\nc\nd\nsummary\n";
        assert_eq!(first_lines(text, 5), text);
        assert_eq!(
            first_lines(text, 3),
            "a\nb\n... 2 more lines (`--dry-run` prints them all)\nsummary"
        );
    }
}
