//! Job handlers: plain synchronous functions run by the scheduler on the
//! blocking pool, one file per handler. Nothing here is async or touches
//! tokio; a handler gets everything it needs through [`JobContext`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::store::Store;

pub mod events;
pub mod gc;
pub mod security;
pub mod sync;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The job's cron schedule fired.
    Schedule,
    /// Something asked the job to run now (the intake wakes the events job).
    Wake,
    /// `regkeeper --once JOB`.
    Once,
    /// `regkeeper --once JOB --dry-run`: recorded apart, it changed nothing.
    DryRun,
}

impl Trigger {
    /// The word stored in `job_runs.trigger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Wake => "wake",
            Trigger::Once => "once",
            Trigger::DryRun => "dry-run",
        }
    }
}

/// Options that only `--once` sets; scheduled runs use the defaults.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print the plan, write nothing (`sync`; `gc` writes only its
    /// marked audit rows).
    pub dry_run: bool,
    /// Override safety valves (`max_delete_fraction` of `sync` and `gc`).
    pub force: bool,
    /// Take failed items again (`events`, `security`).
    pub retry_failed: bool,
    /// Show a progress bar on the terminal.
    pub progress: bool,
}

/// A flag a handler polls in long loops: set when the daemon shuts down or
/// the run overran its `timeout`. Handlers stop at the next safe point.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Ask the run to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the run was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Everything a handler may use during one run.
pub struct JobContext {
    /// The job's name in schedules.toml.
    pub job_name: String,
    /// The `job_runs` row of this run.
    pub run_id: i64,
    /// What started the run.
    pub trigger: Trigger,
    /// Identifies this daemon process in leases (`host:pid:random`).
    pub claimant: String,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Options given on the command line.
    pub options: RunOptions,
    /// Set when the run should stop early.
    pub cancel: Cancel,
}

/// What a run reports back to the scheduler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Counts recorded in `job_runs.counts` and logged, e.g. `applied=12`.
    pub counts: BTreeMap<String, i64>,
    /// The job is done for good and leaves the schedule (Portus's
    /// `disable?`), with the reason that is logged.
    pub finished: Option<String>,
}

impl Outcome {
    /// Adds `n` to the count `name`.
    pub fn add(&mut self, name: &str, n: i64) {
        *self.counts.entry(name.to_string()).or_insert(0) += n;
    }
}

/// A job handler. Implementations are synchronous and must not panic on
/// data from outside; the scheduler still treats a panic as a failed run.
pub trait Handler: Send + Sync {
    /// Runs once.
    fn run(&self, ctx: &JobContext) -> anyhow::Result<Outcome>;
}

/// What handlers are built from: the shared resources of one daemon.
pub struct Resources {
    /// The validated configuration.
    pub config: Arc<crate::config::Config>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// The registry client, shared by every handler.
    pub registry: Arc<crate::registry::Client>,
}

/// Whether a handler shows what it would do without writing (`--dry-run`).
/// The others refuse the flag rather than ignore it and write for real.
pub(crate) fn supports_dry_run(handler: &crate::config::HandlerConfig) -> bool {
    matches!(
        handler,
        crate::config::HandlerConfig::Sync(_) | crate::config::HandlerConfig::Gc(_)
    )
}

/// Builds the handler of one configured job.
pub fn build(
    job: &crate::config::JobConfig,
    resources: &Resources,
) -> anyhow::Result<Arc<dyn Handler>> {
    match &job.handler {
        crate::config::HandlerConfig::Events(options) => Ok(Arc::new(events::EventsHandler::new(
            resources.store.clone(),
            resources.registry.clone(),
            registry_hostname(&resources.config.registry.url),
            events::Settings::from_options(options),
        ))),
        crate::config::HandlerConfig::Security(options) => Ok(Arc::new(
            security::Security::from_resources(options, resources)?,
        )),
        crate::config::HandlerConfig::Sync(options) => {
            Ok(Arc::new(sync::SyncHandler::new(options.clone(), resources)))
        }
        crate::config::HandlerConfig::Gc(options) => {
            Ok(Arc::new(gc::GcHandler::new(options.clone(), resources)))
        }
    }
}

/// The name of the configured registry in the `registries` table: its
/// `host:port` (the port only when the URL has one), as docker clients
/// spell it.
pub fn registry_hostname(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}
