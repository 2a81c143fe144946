//! One run of a job, blocking: recording its start (after recording the
//! job's abandoned runs), the handler under `catch_unwind` with the outcome,
//! counts and log lines, its end and the pruning of old runs; the `skipped`
//! row of ticks that found a run still going; heartbeats; and the `--once`
//! path ([`run_once`], [`run_handler`]) with its watchdog thread. Nothing
//! here is async: the job tasks call these functions on the blocking pool.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use log::{debug, error, info, warn};

use super::claims::{new_claimant, record_abandoned_runs, release_claims_of_dead_processes};
use crate::config::{DaemonConfig, JobConfig};
use crate::jobs::{Cancel, Handler, JobContext, Outcome, Resources, RunOptions, Trigger};
use crate::store::{NewRun, RunOutcome, Store};
use crate::time::duration_ms;
pub(super) use crate::time::now_ms;

/// The result of one run, as `--once` reports it.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The `job_runs` row.
    pub run_id: i64,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// What the handler reported (empty when it failed).
    pub result: Outcome,
    /// Error text with its cause chain, when it failed or timed out.
    pub error: Option<String>,
    /// How long the handler ran.
    pub duration: Duration,
}

/// What every run is recorded with: the store, this process's claimant id,
/// how many runs to keep per job, and the heartbeat that keeps a run in
/// progress from being taken for abandoned.
#[derive(Clone)]
pub struct RunSettings {
    /// Where runs are recorded (and what handlers work on).
    pub store: Arc<dyn Store>,
    /// Identifies this process in leases and in its runs (`host:pid:random`,
    /// see [`new_claimant`]).
    pub claimant: String,
    /// Runs kept per job in `job_runs`; older ones are pruned after each run.
    pub keep_runs: usize,
    /// How often a run in progress renews its heartbeat.
    pub heartbeat: Duration,
    /// How long a run may go without a heartbeat before it counts as
    /// abandoned; each renewal sets the run's expiry this far ahead.
    pub abandon_after: Duration,
}

impl RunSettings {
    /// Settings from the `[daemon]` section, with a new claimant id.
    pub fn new(store: Arc<dyn Store>, daemon: &DaemonConfig) -> RunSettings {
        RunSettings {
            store,
            claimant: new_claimant(),
            keep_runs: daemon.keep_runs,
            heartbeat: daemon.heartbeat,
            abandon_after: daemon.abandon_after,
        }
    }

    /// The expiry of a run whose last heartbeat is `now`.
    fn expiry(&self, now: i64) -> i64 {
        now.saturating_add(duration_ms(self.abandon_after))
    }
}

/// Renews the heartbeat of run `run_id` (blocking). A run found already
/// ended was recorded abandoned by another process while its heartbeat
/// lapsed (a stalled database, a suspended machine): it goes on, and its own
/// end, when recorded, replaces that.
pub(super) fn renew_heartbeat(
    settings: &RunSettings,
    job_name: &str,
    run_id: i64,
    flags: &RunFlags,
) {
    let now = now_ms();
    match settings
        .store
        .heartbeat_run(run_id, now, settings.expiry(now))
    {
        Ok(true) => debug!("job={job_name} run={run_id} heartbeat"),
        Ok(false) if flags.recorded_end.load(Ordering::SeqCst) => {}
        Ok(false) => warn!(
            "job={job_name} run={run_id} heartbeat: the run was recorded abandoned after its \
             heartbeat lapsed; it goes on and records its own end when it finishes"
        ),
        Err(cause) => warn!("job={job_name} run={run_id} renewing the heartbeat: {cause:#}"),
    }
}

/// Runs one job now in the calling thread (`regkeeper --once`), recording
/// the run like a scheduled one. Builds the handler with [`crate::jobs::build`];
/// an error from that (e.g. a handler not in this version, returned as a
/// [`crate::config::ConfigError`]) or from recording the start is returned as
/// `Err`, a failed run as `Ok` with a failed report.
pub fn run_once(
    job: &JobConfig,
    resources: &Resources,
    trigger: Trigger,
    options: RunOptions,
) -> anyhow::Result<RunReport> {
    let handler = crate::jobs::build(job, resources).map_err(|cause| {
        anyhow::Error::new(crate::config::ConfigError::new(format!(
            "job {}: {cause:#}",
            job.name
        )))
    })?;
    let settings = RunSettings::new(resources.store.clone(), &resources.config.daemon);
    if !options.dry_run {
        release_claims_of_dead_processes(resources.store.as_ref());
    }
    run_handler(job, handler, &settings, trigger, options)
}

/// Runs `handler` as one run of `job` in the calling thread, with the same
/// recording, heartbeat, panic isolation and timeout marking as a
/// scheduled run.
pub fn run_handler(
    job: &JobConfig,
    handler: Arc<dyn Handler>,
    settings: &RunSettings,
    trigger: Trigger,
    options: RunOptions,
) -> anyhow::Result<RunReport> {
    let flags = RunFlags::default();
    let request = RunRequest::new(job, handler, settings, trigger, options, flags.clone());
    // A watchdog thread renews the run's heartbeat and marks the run timed
    // out when it overruns, exactly as the scheduler's timers do; it ends as
    // soon as the run does.
    let (done_sender, done_receiver) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let job_name = job.name.clone();
        let timeout = job.timeout;
        let settings = settings.clone();
        std::thread::spawn(move || watch_run(&job_name, timeout, &settings, &flags, done_receiver))
    };
    let report = execute_run(request);
    drop(done_sender);
    let _ = watchdog.join();
    report
}

/// The watchdog of a run in the calling thread: heartbeats every
/// `settings.heartbeat`, the timeout once, until `done` disconnects.
fn watch_run(
    job_name: &str,
    timeout: Option<Duration>,
    settings: &RunSettings,
    flags: &RunFlags,
    done: std::sync::mpsc::Receiver<()>,
) {
    let started = Instant::now();
    let mut deadline = timeout.map(|timeout| (started + timeout, timeout));
    let mut next_heartbeat = started + settings.heartbeat;
    loop {
        let wake_at = deadline.map_or(next_heartbeat, |(at, _)| at.min(next_heartbeat));
        match done.recv_timeout(wake_at.saturating_duration_since(Instant::now())) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if let Some((_, timeout)) = deadline.filter(|(at, _)| now >= *at) {
            warn!(
                "job={job_name} overran its timeout of {}, asking it to stop",
                humantime::format_duration(timeout)
            );
            flags.mark_timed_out();
            deadline = None;
        }
        if now >= next_heartbeat {
            let run_id = flags.run_id.load(Ordering::SeqCst);
            if run_id > 0 && !flags.recorded_end.load(Ordering::SeqCst) {
                renew_heartbeat(settings, job_name, run_id, flags);
            }
            next_heartbeat = Instant::now() + settings.heartbeat;
        }
    }
}

/// Flags shared between a run and whoever watches it.
#[derive(Clone, Default)]
pub(super) struct RunFlags {
    /// Handed to the handler; set on timeout or at the shutdown deadline.
    pub(super) cancel: Cancel,
    /// Set when the run overran its timeout.
    timed_out: Arc<AtomicBool>,
    /// The `job_runs` row once recorded; 0 before.
    pub(super) run_id: Arc<AtomicI64>,
    /// Set once the run has recorded its end.
    pub(super) recorded_end: Arc<AtomicBool>,
}

impl RunFlags {
    pub(super) fn mark_timed_out(&self) {
        self.timed_out.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

/// Everything one run needs, owned so it can move onto the blocking pool.
pub(super) struct RunRequest {
    job_name: String,
    handler_name: &'static str,
    handler: Arc<dyn Handler>,
    settings: RunSettings,
    trigger: Trigger,
    options: RunOptions,
    timeout: Option<Duration>,
    flags: RunFlags,
}

impl RunRequest {
    pub(super) fn new(
        job: &JobConfig,
        handler: Arc<dyn Handler>,
        settings: &RunSettings,
        trigger: Trigger,
        options: RunOptions,
        flags: RunFlags,
    ) -> RunRequest {
        RunRequest {
            job_name: job.name.clone(),
            handler_name: job.handler.name(),
            handler,
            settings: settings.clone(),
            trigger,
            options,
            timeout: job.timeout,
            flags,
        }
    }
}

/// Records earlier runs of the job whose process died as abandoned, records
/// the start, runs the handler with panics caught, records the end and
/// prunes old runs. Blocking; the scheduler calls it on the blocking pool.
pub(super) fn execute_run(request: RunRequest) -> anyhow::Result<RunReport> {
    let store = &request.settings.store;
    let job_name = &request.job_name;
    record_abandoned_runs(
        store.as_ref(),
        Some(job_name),
        request.settings.abandon_after,
    );
    let started_at = now_ms();
    let run_id = store
        .start_run(&NewRun {
            job: job_name.clone(),
            handler: request.handler_name.to_string(),
            trigger: request.trigger.as_str().to_string(),
            started_at,
            claimant: request.settings.claimant.clone(),
            expires_at: request.settings.expiry(started_at),
        })
        .with_context(|| format!("recording the start of a run of job {job_name}"))?;
    request.flags.run_id.store(run_id, Ordering::SeqCst);
    // A scheduled or woken run may well find nothing to do (an events job
    // polls every few seconds): its start is logged at debug, its end at
    // info only when it did something.
    let by_hand = matches!(request.trigger, Trigger::Once | Trigger::DryRun);
    let start_level = if by_hand {
        log::Level::Info
    } else {
        log::Level::Debug
    };
    log::log!(
        start_level,
        job = job_name.as_str(),
        run = run_id,
        handler = request.handler_name,
        trigger = request.trigger.as_str();
        "job={job_name} run={run_id} started: handler={} trigger={}",
        request.handler_name,
        request.trigger.as_str()
    );

    let context = JobContext {
        job_name: job_name.clone(),
        run_id,
        trigger: request.trigger,
        claimant: request.settings.claimant.clone(),
        store: store.clone(),
        options: request.options,
        cancel: request.flags.cancel.clone(),
    };
    let started = Instant::now();
    let handler = request.handler.clone();
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.run(&context))) {
        Ok(result) => result,
        Err(payload) => Err(anyhow::anyhow!(
            "handler panicked: {}",
            panic_message(payload.as_ref())
        )),
    };
    let duration = started.elapsed();

    let timed_out = request.flags.timed_out.load(Ordering::SeqCst);
    let (outcome, result, error) = match result {
        Ok(result) if timed_out => {
            let error = timeout_text(request.timeout);
            (RunOutcome::TimedOut, result, Some(error))
        }
        Ok(result) => (RunOutcome::Ok, result, None),
        Err(cause) if timed_out => {
            let error = format!("{}: {cause:#}", timeout_text(request.timeout));
            (RunOutcome::TimedOut, Outcome::default(), Some(error))
        }
        Err(cause) => (
            RunOutcome::Failed,
            Outcome::default(),
            Some(format!("{cause:#}")),
        ),
    };

    let counts_text = format_counts(&result.counts);
    let seconds = duration.as_secs_f64();
    let idle = outcome == RunOutcome::Ok && result.finished.is_none() && is_idle(&result.counts);
    // The same line as text and, for `log_format = "json"`, as structured
    // fields (crate::logging).
    let level = match (&outcome, idle && !by_hand) {
        (RunOutcome::Ok, true) => log::Level::Debug,
        (RunOutcome::Ok, false) => log::Level::Info,
        _ => log::Level::Error,
    };
    let error_text = error
        .as_deref()
        .map(|error| format!(" error: {error}"))
        .unwrap_or_default();
    let counts_json = serde_json::to_string(&result.counts).unwrap_or_default();
    log::log!(
        level,
        job = job_name.as_str(),
        run = run_id,
        handler = request.handler_name,
        trigger = request.trigger.as_str(),
        outcome = outcome.as_str(),
        duration_seconds = seconds,
        counts = counts_json.as_str(),
        error = error.as_deref();
        "job={job_name} run={run_id} finished: outcome={} duration={seconds:.3}s{counts_text}{error_text}",
        outcome.as_str()
    );

    if let Err(cause) =
        store.finish_run(run_id, now_ms(), outcome, &result.counts, error.as_deref())
    {
        error!("job={job_name} run={run_id} recording the end of the run: {cause:#}");
    }
    request.flags.recorded_end.store(true, Ordering::SeqCst);
    crate::metrics::job_run(job_name, outcome, duration, &result.counts);
    // A daemon's job that finished for good leaves its schedule: `status`
    // shows it so. A run by hand changes nothing of the daemon's jobs.
    if let (Some(reason), false) = (&result.finished, by_hand) {
        if let Err(cause) =
            store.finish_daemon_job(&request.settings.claimant, job_name, reason, now_ms())
        {
            error!("job={job_name} run={run_id} recording the job finished for good: {cause:#}");
        }
    }
    // A stretch of runs that did nothing is one row, counting them, so
    // that `keep_runs` keeps runs that did work in the history.
    if idle && !by_hand {
        if let Err(cause) = store.fold_idle_run(job_name, run_id) {
            error!("job={job_name} run={run_id} folding idle runs: {cause:#}");
        }
    }
    prune(store.as_ref(), job_name, request.settings.keep_runs);
    Ok(RunReport {
        run_id,
        outcome,
        result,
        error,
        duration,
    })
}

/// Whether a run's counts say it did nothing: every count is 0 (the
/// `idle_runs` a folded row carries aside).
pub fn is_idle(counts: &BTreeMap<String, i64>) -> bool {
    counts
        .iter()
        .all(|(name, value)| *value == 0 || name == crate::store::IDLE_RUNS)
}

/// The one `skipped` row that stands for every tick skipped while one run
/// was going: its `ticks` count grows, its `finished_at` is the last tick.
/// One row per run in flight, however long it takes, keeps the run history
/// readable and pruning from pushing real runs out.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SkippedTicks {
    row: Option<i64>,
    ticks: i64,
}

/// Records a tick that found run `running_id` still going (0 when it has not
/// recorded its start yet). Blocking. It does not prune: that could delete
/// the row of the run still going; the run prunes once it has ended.
pub(super) fn record_skip(
    settings: &RunSettings,
    job_name: &str,
    handler_name: &str,
    running_id: i64,
    skipped: SkippedTicks,
) -> SkippedTicks {
    let now = now_ms();
    let ticks = skipped.ticks + 1;
    let error = if running_id > 0 {
        format!("previous run {running_id} still going")
    } else {
        "previous run still going".to_string()
    };
    let counts = BTreeMap::from([("ticks".to_string(), ticks)]);
    let store = &settings.store;
    let recorded = match skipped.row {
        Some(row) => store
            .finish_run(row, now, RunOutcome::Skipped, &counts, Some(&error))
            .map(|()| row),
        None => store
            .start_run(&NewRun {
                job: job_name.to_string(),
                handler: handler_name.to_string(),
                trigger: Trigger::Schedule.as_str().to_string(),
                started_at: now,
                claimant: settings.claimant.clone(),
                expires_at: settings.expiry(now),
            })
            .and_then(|row| {
                store
                    .finish_run(row, now, RunOutcome::Skipped, &counts, Some(&error))
                    .map(|()| row)
            }),
    };
    match recorded {
        Ok(row) => {
            crate::metrics::job_outcome(job_name, RunOutcome::Skipped);
            if ticks == 1 {
                info!("job={job_name} run={row} skipped: {error}");
            } else {
                debug!("job={job_name} run={row} skipped {ticks} ticks: {error}");
            }
            SkippedTicks {
                row: Some(row),
                ticks,
            }
        }
        Err(cause) => {
            error!("job={job_name} recording a skipped tick: {cause:#}");
            SkippedTicks {
                row: skipped.row,
                ticks,
            }
        }
    }
}

fn prune(store: &dyn Store, job_name: &str, keep_runs: usize) {
    if let Err(cause) = store.prune_runs(job_name, keep_runs) {
        error!("job={job_name} pruning old runs: {cause:#}");
    }
}

fn timeout_text(timeout: Option<Duration>) -> String {
    match timeout {
        Some(timeout) => format!(
            "run exceeded its timeout of {}",
            humantime::format_duration(timeout)
        ),
        None => "run exceeded its timeout".to_string(),
    }
}

fn format_counts(counts: &BTreeMap<String, i64>) -> String {
    counts
        .iter()
        .map(|(name, n)| format!(" {name}={n}"))
        .collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_reads_text_payloads() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42_u8), "a non-text panic payload");
    }

    #[test]
    fn counts_are_logged_in_name_order() {
        let mut counts = BTreeMap::new();
        counts.insert("skipped".to_string(), 2);
        counts.insert("applied".to_string(), 12);
        assert_eq!(format_counts(&counts), " applied=12 skipped=2");
    }
}
