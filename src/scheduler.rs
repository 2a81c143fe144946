//! The scheduler: fires each job at the times its cron schedule gives (in its
//! time zone), runs the handler on the blocking pool, never overlaps two runs
//! of one job, records every run, and drains runs in flight on shutdown.

use std::sync::Arc;

use crate::config::JobConfig;
use crate::jobs::{Outcome, Resources, RunOptions, Trigger};
use crate::store::RunOutcome;

/// Wakes one job on demand (the intake wakes the events job). Wake-ups that
/// arrive while a run is in progress coalesce into one further run.
#[derive(Clone, Default)]
pub struct Waker {
    notify: Arc<tokio::sync::Notify>,
}

impl Waker {
    /// Asks for a run as soon as the job is idle.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Resolves at the next wake-up.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

/// The result of one run, as `--once` reports it.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The `job_runs` row.
    pub run_id: i64,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// What the handler reported (empty when it failed).
    pub result: Outcome,
    /// Error text with its cause chain, when it failed.
    pub error: Option<String>,
}

/// Runs one job now in the calling thread (`regkeeper --once`), recording
/// the run like a scheduled one.
pub fn run_once(
    job: &JobConfig,
    resources: &Resources,
    trigger: Trigger,
    options: RunOptions,
) -> anyhow::Result<RunReport> {
    let _ = (job, resources, trigger, options);
    anyhow::bail!("not implemented in this version")
}
