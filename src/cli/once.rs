//! `regkeeper --once JOB`: runs one job now in the foreground through
//! `scheduler::run_once`, prints a one-line summary on stdout and says on
//! stderr why a run that did not end ok failed. Does not schedule or loop.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::format::{format_counts, format_duration_ms};
use super::{load_config, open_store, print_out, Failure, OnceOptions};
use crate::config::{Config, JobConfig};
use crate::jobs::{Resources, RunOptions, Trigger};
use crate::store::RunOutcome;

/// `--once JOB`.
pub(super) fn once(
    config_path: &Path,
    job_name: &str,
    options: &OnceOptions,
) -> Result<ExitCode, Failure> {
    let config = Arc::new(load_config(config_path)?);
    let job = find_job(&config, job_name)?.clone();
    if options.dry_run && !crate::jobs::supports_dry_run(&job.handler) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "job {} (handler {}) has no dry run: --dry-run would be ignored and the run would \
             write for real; run it without --dry-run",
            job.name,
            job.handler.name()
        )));
    }
    let store = open_store(&config)?;
    let registry =
        crate::registry::Client::new(&config.registry).context("building the registry client")?;
    let resources = Resources {
        config: config.clone(),
        store,
        registry: Arc::new(registry),
    };
    let run_options = RunOptions {
        dry_run: options.dry_run,
        force: options.force,
        retry_failed: options.retry_failed,
        progress: std::io::stderr().is_terminal(),
    };
    let trigger = if options.dry_run {
        Trigger::DryRun
    } else {
        Trigger::Once
    };
    let report = crate::scheduler::run_once(&job, &resources, trigger, run_options)?;
    let mut summary = once_summary(
        &job.name,
        report.run_id,
        report.outcome,
        report.duration,
        &report.result.counts,
        report.error.as_deref(),
    );
    if let Some(reason) = &report.result.finished {
        // On a schedule the job would now leave it; --once just says so.
        summary.push_str(&format!(" (done for good: {})", reason.replace('\n', " ")));
    }
    summary.push('\n');
    print_out(&summary)?;
    match report.outcome {
        RunOutcome::Ok => Ok(ExitCode::SUCCESS),
        // The summary is the result on stdout; the failure is also said on
        // stderr, whatever RUST_LOG lets through, and exits 1.
        RunOutcome::Failed | RunOutcome::TimedOut | RunOutcome::Skipped | RunOutcome::Abandoned => {
            Err(Failure::Failed(anyhow::anyhow!(once_failure(
                &job.name,
                report.run_id,
                report.outcome,
                report.error.as_deref()
            ))))
        }
    }
}

/// `job JOB run ID OUTCOME[: ERROR]`, for stderr when `--once` did not succeed.
fn once_failure(job_name: &str, run_id: i64, outcome: RunOutcome, error: Option<&str>) -> String {
    let mut message = format!(
        "job {job_name} run {run_id} {}",
        outcome.as_str().replace('_', " ")
    );
    if let Some(error) = error {
        message.push_str(": ");
        message.push_str(error);
    }
    message
}

/// The job called `name`, or a usage error listing the configured jobs.
fn find_job<'a>(config: &'a Config, name: &str) -> Result<&'a JobConfig, Failure> {
    config.job(name).ok_or_else(|| {
        let known: Vec<&str> = config.jobs.iter().map(|job| job.name.as_str()).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        Failure::Usage(anyhow::anyhow!(
            "unknown job {name:?} (jobs in {}: {known})",
            config.path.display()
        ))
    })
}

/// One line: `JOB: OUTCOME in DURATION (run ID) COUNTS[: ERROR]`.
pub fn once_summary(
    job_name: &str,
    run_id: i64,
    outcome: RunOutcome,
    duration: std::time::Duration,
    counts: &BTreeMap<String, i64>,
    error: Option<&str>,
) -> String {
    let mut line = format!(
        "{job_name}: {} in {} (run {run_id})",
        outcome.as_str(),
        format_duration_ms(duration.as_millis())
    );
    let counts = format_counts(counts);
    if !counts.is_empty() {
        line.push(' ');
        line.push_str(&counts);
    }
    if let Some(error) = error {
        line.push_str(": ");
        line.push_str(&error.replace('\n', " "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_summary_lists_outcome_counts_and_error() {
        let counts = BTreeMap::from([("applied".to_string(), 3), ("failed".to_string(), 0)]);
        assert_eq!(
            once_summary(
                "ev",
                7,
                RunOutcome::Ok,
                std::time::Duration::from_millis(1234),
                &counts,
                None
            ),
            "ev: ok in 1.234s (run 7) applied=3 failed=0"
        );
        assert_eq!(
            once_summary(
                "sync",
                8,
                RunOutcome::Failed,
                std::time::Duration::from_millis(5),
                &BTreeMap::new(),
                Some("listing tags of app: timeout\nmore")
            ),
            "sync: failed in 0.005s (run 8): listing tags of app: timeout more"
        );
    }

    #[test]
    fn once_failure_names_job_run_outcome_and_cause() {
        assert_eq!(
            once_failure("sync", 3, RunOutcome::Failed, Some("walking the catalog")),
            "job sync run 3 failed: walking the catalog"
        );
        assert_eq!(
            once_failure("scan", 4, RunOutcome::TimedOut, None),
            "job scan run 4 timed out"
        );
    }
}
