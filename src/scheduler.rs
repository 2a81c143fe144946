//! The scheduler: fires each job at the times its cron schedule gives (in its
//! time zone), runs the handler on the blocking pool, never overlaps two runs
//! of one job in this process, records every run, renews the heartbeat of
//! each run in progress, records runs whose process died as abandoned, and
//! drains runs in flight on shutdown.
//!
//! Fire times are computed here with croner in the job's chrono-tz zone
//! ([`next_fire`]) and waited for with tokio timers; nothing else in the
//! crate touches timers or `spawn_blocking` for jobs. Handlers never run on
//! an async worker thread, and this module never interprets what a handler
//! does: it only runs it, isolates its failures and records the outcome.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use log::{debug, error, info, warn};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{DaemonConfig, JobConfig, Schedule};
use crate::jobs::{Cancel, Handler, JobContext, Outcome, Resources, RunOptions, Trigger};
use crate::store::{NewRun, RunOutcome, RunRecord, Store};

/// How long shutdown still waits, after the grace period, for runs it has
/// just cancelled to record how they ended.
pub const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// The longest single timer sleep. Long waits are cut into pieces so that a
/// change of the system clock delays a fire time by at most this much.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);

/// The first fire time of `schedule` strictly after `after`, or None when the
/// expression never fires again (e.g. a year field in the past).
///
/// Times are computed on the wall clock of the schedule's time zone, with
/// cron(8)'s rules at daylight-saving changes: a job fixed to a single wall
/// clock time (single second, minute and hour) that falls into the hour the
/// clock skips runs at the first instant after the gap, and runs once in the
/// hour the clock repeats; a job with a wildcard, range or step in those
/// fields has no ticks in the skipped hour and keeps its interval in real
/// time through the repeated one. Day-of-month and day-of-week combine as
/// cron(5) says: when both are restricted, a day matching either fires.
pub fn next_fire(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Cron works in whole seconds: searching from the start of `after`'s
    // second, exclusively, gives the first fire time strictly after it.
    let whole_second = after.duration_trunc(TimeDelta::seconds(1)).unwrap_or(after);
    let local = whole_second.with_timezone(&schedule.timezone);
    schedule
        .cron
        .find_next_occurrence(&local, false)
        .ok()
        .map(|fire| fire.with_timezone(&Utc))
}

/// Wakes one job on demand (the intake wakes the events job). Wake-ups that
/// arrive while a run is in progress coalesce into one further run.
#[derive(Clone, Default)]
pub struct Waker {
    notify: Arc<tokio::sync::Notify>,
}

impl Waker {
    /// Asks for a run as soon as the job is idle. Any number of calls before
    /// the job gets to it count as one.
    pub fn wake(&self) {
        // `notify_one` stores a single permit when nobody waits: that permit
        // is the coalescing.
        self.notify.notify_one();
    }

    /// Resolves at the next wake-up (or at once if one is pending).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
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

/// Records as abandoned the runs (of `job`, or of every job) whose process
/// stopped without finishing them: their heartbeat expired. Logs each one
/// and returns them; a failure to record is logged and returns nothing.
/// Blocking. Called at daemon start-up, before each run of a job, and by
/// `regkeeper status`; see [`Store::abandon_expired_runs`].
pub fn record_abandoned_runs(
    store: &dyn Store,
    job: Option<&str>,
    abandon_after: Duration,
) -> Vec<RunRecord> {
    match store.abandon_expired_runs(job, now_ms(), duration_ms(abandon_after)) {
        Ok(abandoned) => {
            for run in &abandoned {
                warn!(
                    "job={} run={} finished: outcome=abandoned error: {}",
                    run.job,
                    run.id,
                    run.error.as_deref().unwrap_or_default()
                );
            }
            abandoned
        }
        Err(cause) => {
            match job {
                Some(job_name) => error!("job={job_name} recording abandoned runs: {cause:#}"),
                None => error!("recording abandoned runs: {cause:#}"),
            }
            Vec::new()
        }
    }
}

/// Renews the heartbeat of run `run_id` (blocking). A run found already
/// ended was recorded abandoned by another process while its heartbeat
/// lapsed (a stalled database, a suspended machine): it goes on, and its own
/// end, when recorded, replaces that.
fn renew_heartbeat(settings: &RunSettings, job_name: &str, run_id: i64, flags: &RunFlags) {
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

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A claimant id for this process: `host:pid:random`.
pub fn new_claimant() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    let random: u32 = rand::random();
    format!("{host}:{}:{random:08x}", std::process::id())
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
struct RunFlags {
    /// Handed to the handler; set on timeout or at the shutdown deadline.
    cancel: Cancel,
    /// Set when the run overran its timeout.
    timed_out: Arc<AtomicBool>,
    /// The `job_runs` row once recorded; 0 before.
    run_id: Arc<AtomicI64>,
    /// Set once the run has recorded its end.
    recorded_end: Arc<AtomicBool>,
}

impl RunFlags {
    fn mark_timed_out(&self) {
        self.timed_out.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

/// Everything one run needs, owned so it can move onto the blocking pool.
struct RunRequest {
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
    fn new(
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
fn execute_run(request: RunRequest) -> anyhow::Result<RunReport> {
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
    info!(
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
    match (&outcome, &error) {
        (RunOutcome::Ok, _) => {
            info!("job={job_name} run={run_id} finished: outcome=ok duration={seconds:.3}s{counts_text}")
        }
        (_, Some(error)) => error!(
            "job={job_name} run={run_id} finished: outcome={} duration={seconds:.3}s{counts_text} error: {error}",
            outcome.as_str()
        ),
        (_, None) => error!(
            "job={job_name} run={run_id} finished: outcome={} duration={seconds:.3}s{counts_text}",
            outcome.as_str()
        ),
    }

    if let Err(cause) =
        store.finish_run(run_id, now_ms(), outcome, &result.counts, error.as_deref())
    {
        error!("job={job_name} run={run_id} recording the end of the run: {cause:#}");
    }
    request.flags.recorded_end.store(true, Ordering::SeqCst);
    prune(store.as_ref(), job_name, request.settings.keep_runs);
    Ok(RunReport {
        run_id,
        outcome,
        result,
        error,
        duration,
    })
}

/// The one `skipped` row that stands for every tick skipped while one run
/// was going: its `ticks` count grows, its `finished_at` is the last tick.
/// One row per run in flight, however long it takes, keeps the run history
/// readable and pruning from pushing real runs out.
#[derive(Debug, Clone, Copy, Default)]
struct SkippedTicks {
    row: Option<i64>,
    ticks: i64,
}

/// Records a tick that found run `running_id` still going (0 when it has not
/// recorded its start yet). Blocking. It does not prune: that could delete
/// the row of the run still going; the run prunes once it has ended.
fn record_skip(
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

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Where the scheduler is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Jobs fire.
    Running,
    /// Shutdown began: nothing new starts, runs in flight finish.
    Draining,
    /// The grace period passed: runs in flight are cancelled.
    Cancelling,
}

/// One scheduled job.
struct JobSlot {
    config: JobConfig,
    handler: Arc<dyn Handler>,
    waker: Waker,
}

/// The runs in flight, by job name, so that shutdown can record those it
/// has to leave behind.
type InFlight = Arc<std::sync::Mutex<BTreeMap<String, RunFlags>>>;

/// The jobs of one daemon, ready to start. Built from the configured jobs
/// and their handlers, so tests can schedule handlers of their own.
pub struct Scheduler {
    slots: Vec<JobSlot>,
    settings: RunSettings,
}

impl Scheduler {
    /// Takes every job with its handler; disabled jobs are left out (they
    /// still run with `--once`).
    pub fn new(jobs: Vec<(JobConfig, Arc<dyn Handler>)>, settings: RunSettings) -> Scheduler {
        let slots = jobs
            .into_iter()
            .filter(|(config, _)| {
                if !config.enabled {
                    info!("job={} is disabled: not scheduled", config.name);
                }
                config.enabled
            })
            .map(|(config, handler)| JobSlot {
                config,
                handler,
                waker: Waker::default(),
            })
            .collect();
        Scheduler { slots, settings }
    }

    /// The waker of a scheduled job; None for a job that is unknown or disabled.
    pub fn waker(&self, job_name: &str) -> Option<Waker> {
        self.slots
            .iter()
            .find(|slot| slot.config.name == job_name)
            .map(|slot| slot.waker.clone())
    }

    /// Starts one task per job on the current tokio runtime (call it inside
    /// one) and returns the handle that shuts them down.
    pub fn start(self) -> RunningScheduler {
        let (phase_sender, phase_receiver) = watch::channel(Phase::Running);
        let in_flight = InFlight::default();
        let mut tasks = JoinSet::new();
        let mut wakers = Vec::new();
        for slot in self.slots {
            wakers.push((slot.config.name.clone(), slot.waker.clone()));
            if let Some(first) = next_fire(&slot.config.schedule, Utc::now()) {
                info!(
                    "job={} scheduled: handler={} schedule=\"{}\" timezone={} next={}",
                    slot.config.name,
                    slot.config.handler.name(),
                    slot.config.schedule.expression,
                    slot.config.schedule.timezone,
                    first
                        .with_timezone(&slot.config.schedule.timezone)
                        .to_rfc3339()
                );
            } else {
                warn!(
                    "job={} never fires again: only wake-ups run it",
                    slot.config.name
                );
            }
            let job_task = JobTask {
                slot: Arc::new(slot),
                settings: self.settings.clone(),
                phase: phase_receiver.clone(),
                in_flight: in_flight.clone(),
            };
            tasks.spawn(job_task.run());
        }
        RunningScheduler {
            phase: phase_sender,
            tasks,
            wakers,
            in_flight,
            settings: self.settings,
        }
    }
}

/// The started scheduler.
pub struct RunningScheduler {
    phase: watch::Sender<Phase>,
    tasks: JoinSet<()>,
    wakers: Vec<(String, Waker)>,
    in_flight: InFlight,
    settings: RunSettings,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every run in flight finished within the grace period.
    Complete,
    /// The grace period passed and the runs still going were cancelled.
    Cancelled,
}

impl RunningScheduler {
    /// The waker of a scheduled job; None for a job that is unknown or disabled.
    pub fn waker(&self, job_name: &str) -> Option<Waker> {
        self.wakers
            .iter()
            .find(|(name, _)| name == job_name)
            .map(|(_, waker)| waker.clone())
    }

    /// Stops triggering and lets runs in flight finish for up to `grace`.
    /// At the deadline their [`Cancel`] flags are set and shutdown waits at
    /// most [`CANCEL_WAIT`] more for them to record how they ended; a run
    /// that still goes on is left behind (it ends with the process).
    pub async fn shutdown(mut self, grace: Duration) -> Drain {
        info!(
            "scheduler stopping: no new runs, waiting up to {} for runs in flight",
            humantime::format_duration(grace)
        );
        self.phase.send_replace(Phase::Draining);
        if tokio::time::timeout(grace, join_all(&mut self.tasks))
            .await
            .is_ok()
        {
            info!("scheduler stopped: every run finished");
            return Drain::Complete;
        }
        warn!(
            "grace period of {} passed: cancelling runs in flight",
            humantime::format_duration(grace)
        );
        self.phase.send_replace(Phase::Cancelling);
        if tokio::time::timeout(CANCEL_WAIT, join_all(&mut self.tasks))
            .await
            .is_err()
        {
            warn!(
                "{} job(s) still running after cancellation; leaving them",
                self.tasks.len()
            );
            self.tasks.abort_all();
            self.record_abandoned().await;
        }
        Drain::Cancelled
    }

    /// Records the runs still going at the very end as failed, so that no
    /// row is left without an end. A run that records its own end later
    /// (the process rarely lives that long) overwrites this.
    async fn record_abandoned(&self) {
        let abandoned: Vec<(String, i64)> = match self.in_flight.lock() {
            Ok(in_flight) => in_flight
                .iter()
                .filter(|(_, flags)| !flags.recorded_end.load(Ordering::SeqCst))
                .map(|(job_name, flags)| (job_name.clone(), flags.run_id.load(Ordering::SeqCst)))
                .filter(|(_, run_id)| *run_id > 0)
                .collect(),
            Err(_) => return,
        };
        if abandoned.is_empty() {
            return;
        }
        let store = self.settings.store.clone();
        let recording = tokio::task::spawn_blocking(move || {
            for (job_name, run_id) in abandoned {
                let error =
                    "abandoned at shutdown: still running after the grace period and cancellation";
                match store.finish_run(
                    run_id,
                    now_ms(),
                    RunOutcome::Failed,
                    &BTreeMap::new(),
                    Some(error),
                ) {
                    Ok(()) => error!(
                        "job={job_name} run={run_id} finished: outcome=failed error: {error}"
                    ),
                    Err(cause) => {
                        error!("job={job_name} run={run_id} recording an abandoned run: {cause:#}")
                    }
                }
            }
        });
        if tokio::time::timeout(CANCEL_WAIT, recording).await.is_err() {
            warn!("recording the abandoned runs took too long; leaving them");
        }
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(joined) = tasks.join_next().await {
        if let Err(cause) = joined {
            if cause.is_panic() {
                error!("a job task panicked: {cause}");
            }
        }
    }
}

/// The async side of one job: waits for fire times and wake-ups, starts runs
/// on the blocking pool and watches them.
struct JobTask {
    slot: Arc<JobSlot>,
    settings: RunSettings,
    phase: watch::Receiver<Phase>,
    in_flight: InFlight,
}

/// Why the idle wait ended.
enum Wait {
    Fire(Trigger),
    Stop,
}

impl JobTask {
    async fn run(mut self) {
        let job_name = self.slot.config.name.clone();
        let mut next = next_fire(&self.slot.config.schedule, Utc::now());
        loop {
            let trigger = match self.wait_idle(next).await {
                Wait::Stop => return,
                Wait::Fire(trigger) => trigger,
            };
            if trigger == Trigger::Schedule {
                next = self.next_after_now();
                if let Some(jitter) = self.slot.config.jitter {
                    let delay = random_delay(jitter);
                    if !delay.is_zero() && self.sleep_or_stop(delay).await {
                        return;
                    }
                }
            }
            let finished = self.run_and_watch(trigger, &mut next).await;
            if let Some(reason) = finished {
                info!("job={job_name} finished for good: {reason}");
                return;
            }
            if *self.phase.borrow() != Phase::Running {
                return;
            }
        }
    }

    fn next_after_now(&self) -> Option<DateTime<Utc>> {
        next_fire(&self.slot.config.schedule, Utc::now())
    }

    /// Waits for the next fire time, a wake-up or shutdown.
    async fn wait_idle(&mut self, next: Option<DateTime<Utc>>) -> Wait {
        if *self.phase.borrow() != Phase::Running {
            return Wait::Stop;
        }
        let slot = self.slot.clone();
        tokio::select! {
            biased;
            _ = self.phase.wait_for(|phase| *phase != Phase::Running) => Wait::Stop,
            _ = slot.waker.woken() => Wait::Fire(Trigger::Wake),
            _ = sleep_until_utc(next) => Wait::Fire(Trigger::Schedule),
        }
    }

    /// Sleeps `delay` unless shutdown begins first; true when it did.
    async fn sleep_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.phase.wait_for(|phase| *phase != Phase::Running) => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }

    /// Runs the handler on the blocking pool and watches it: ticks meanwhile
    /// are skipped and recorded, an overrun sets the cancel flag, the
    /// shutdown deadline does too. Returns the reason when the job finished
    /// for good.
    async fn run_and_watch(
        &mut self,
        trigger: Trigger,
        next: &mut Option<DateTime<Utc>>,
    ) -> Option<String> {
        let slot = self.slot.clone();
        let job_name = slot.config.name.clone();
        let flags = RunFlags::default();
        let request = RunRequest::new(
            &slot.config,
            slot.handler.clone(),
            &self.settings,
            trigger,
            RunOptions::default(),
            flags.clone(),
        );
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.insert(job_name.clone(), flags.clone());
        }
        let mut running = tokio::task::spawn_blocking(move || execute_run(request));
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.heartbeat,
            self.settings.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = slot
            .config
            .timeout
            .map(|timeout| tokio::time::Instant::now() + timeout);
        let mut timeout_noticed = false;
        let mut skipped = SkippedTicks::default();
        let mut cancel_sent = false;
        let mut phase = self.phase.clone();
        loop {
            tokio::select! {
                joined = &mut running => {
                    if let Ok(mut in_flight) = self.in_flight.lock() {
                        in_flight.remove(&job_name);
                    }
                    return match joined {
                        Ok(Ok(report)) => report.result.finished,
                        Ok(Err(cause)) => {
                            error!("job={job_name} run not started: {cause:#}");
                            None
                        }
                        Err(cause) => {
                            error!("job={job_name} run crashed outside its handler: {cause}");
                            None
                        }
                    };
                }
                _ = sleep_until_utc(*next), if next.is_some() => {
                    *next = self.next_after_now();
                    if *self.phase.borrow() == Phase::Running {
                        let settings = self.settings.clone();
                        let skipped_job = job_name.clone();
                        let handler_name = slot.config.handler.name();
                        let running_id = flags.run_id.load(Ordering::SeqCst);
                        let so_far = skipped;
                        let recorded = tokio::task::spawn_blocking(move || {
                            record_skip(&settings, &skipped_job, handler_name, running_id, so_far)
                        });
                        match recorded.await {
                            Ok(now_skipped) => skipped = now_skipped,
                            Err(cause) => error!("job={job_name} recording a skipped tick crashed: {cause}"),
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    let run_id = flags.run_id.load(Ordering::SeqCst);
                    if run_id > 0 && !flags.recorded_end.load(Ordering::SeqCst) {
                        let settings = self.settings.clone();
                        let beating_job = job_name.clone();
                        let beating_flags = flags.clone();
                        let renewed = tokio::task::spawn_blocking(move || {
                            renew_heartbeat(&settings, &beating_job, run_id, &beating_flags)
                        });
                        if let Err(cause) = renewed.await {
                            error!("job={job_name} run={run_id} renewing the heartbeat crashed: {cause}");
                        }
                    }
                }
                _ = sleep_until_instant(deadline), if !timeout_noticed && deadline.is_some() => {
                    timeout_noticed = true;
                    if let Some(timeout) = slot.config.timeout {
                        warn!("job={job_name} overran its timeout of {}, asking it to stop", humantime::format_duration(timeout));
                    }
                    flags.mark_timed_out();
                }
                _ = wait_for_phase(&mut phase, Phase::Cancelling), if !cancel_sent => {
                    cancel_sent = true;
                    warn!("job={job_name} cancelled: shutdown grace period passed");
                    flags.cancel.cancel();
                }
            }
        }
    }
}

/// Resolves once the phase is `wanted` (or the scheduler is gone).
async fn wait_for_phase(phase: &mut watch::Receiver<Phase>, wanted: Phase) {
    let _ = phase.wait_for(|current| *current == wanted).await;
}

fn random_delay(jitter: Duration) -> Duration {
    use rand::Rng as _;
    let max_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=max_ms))
}

/// Sleeps until the wall clock reaches `target` (forever when None). Sleeps
/// in pieces so that a change of the system clock is noticed.
async fn sleep_until_utc(target: Option<DateTime<Utc>>) {
    let Some(target) = target else {
        return std::future::pending().await;
    };
    loop {
        let Ok(remaining) = (target - Utc::now()).to_std() else {
            return;
        };
        if remaining.is_zero() {
            return;
        }
        tokio::time::sleep(remaining.min(MAX_TIMER_SLEEP)).await;
    }
}

async fn sleep_until_instant(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use croner::parser::{CronParser, Seconds};

    fn schedule(expression: &str, timezone: chrono_tz::Tz) -> Schedule {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(expression)
            .unwrap_or_else(|error| panic!("parsing {expression}: {error}"));
        Schedule {
            expression: expression.to_string(),
            cron,
            timezone,
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|error| panic!("parsing {text}: {error}"))
            .with_timezone(&Utc)
    }

    /// The first `n` fire times after `after`, as RFC 3339 UTC text.
    fn fires(schedule: &Schedule, after: &str, n: usize) -> Vec<String> {
        let mut at = utc(after);
        let mut out = Vec::new();
        for _ in 0..n {
            at = next_fire(schedule, at).expect("a next fire time");
            out.push(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn every_second_fires_strictly_after() {
        let every_second = schedule("* * * * * *", chrono_tz::UTC);
        assert_eq!(
            fires(&every_second, "2026-01-01T10:00:00Z", 2),
            ["2026-01-01T10:00:01Z", "2026-01-01T10:00:02Z"]
        );
        // A sub-second instant: the next whole second, not the same one.
        assert_eq!(
            fires(&every_second, "2026-01-01T10:00:00.999Z", 1),
            ["2026-01-01T10:00:01Z"]
        );
        assert_eq!(
            fires(&every_second, "2026-01-01T10:00:00.001Z", 1),
            ["2026-01-01T10:00:01Z"]
        );
    }

    #[test]
    fn every_two_seconds_in_utc() {
        let every_two = schedule("*/2 * * * * *", chrono_tz::UTC);
        assert_eq!(
            fires(&every_two, "2026-01-01T23:59:57Z", 3),
            [
                "2026-01-01T23:59:58Z",
                "2026-01-02T00:00:00Z",
                "2026-01-02T00:00:02Z"
            ]
        );
    }

    #[test]
    fn daily_job_in_skipped_hour_runs_right_after_spring_forward() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let daily = schedule("0 30 2 * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&daily, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST, right after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn daily_job_in_repeated_hour_fires_once_at_fall_back() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC),
        // so 02:30 happens at 00:30 UTC and again at 01:30 UTC.
        let daily = schedule("0 30 2 * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&daily, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 only
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        // Asked from inside the repeated hour, after the first 02:30: the
        // second 02:30 is not a fire time.
        assert_eq!(
            fires(&daily, "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn every_15_minutes_has_no_ticks_in_skipped_hour() {
        let quarter = schedule("0 */15 * * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&quarter, "2026-03-29T00:30:00Z", 3),
            [
                "2026-03-29T00:45:00Z", // 01:45 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST: 02:00..02:45 do not exist
                "2026-03-29T01:15:00Z", // 03:15 CEST
            ]
        );
    }

    #[test]
    fn every_15_minutes_keeps_real_interval_through_fall_back() {
        let quarter = schedule("0 */15 * * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&quarter, "2026-10-25T00:40:00Z", 6),
            [
                "2026-10-25T00:45:00Z", // 02:45 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET, the repeated hour
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T01:45:00Z",
                "2026-10-25T02:00:00Z", // 03:00 CET
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 15th of the month or any Monday (cron(5)); June 2026 starts on a Monday.
        let either = schedule("0 0 12 15 * MON", chrono_tz::UTC);
        assert_eq!(
            fires(&either, "2026-05-31T00:00:00Z", 5),
            [
                "2026-06-01T12:00:00Z", // Monday
                "2026-06-08T12:00:00Z", // Monday
                "2026-06-15T12:00:00Z", // the 15th, also a Monday
                "2026-06-22T12:00:00Z", // Monday
                "2026-06-29T12:00:00Z", // Monday
            ]
        );
        assert_eq!(
            fires(&either, "2026-06-30T00:00:00Z", 2),
            ["2026-07-06T12:00:00Z", "2026-07-13T12:00:00Z"]
        );
        assert_eq!(
            fires(&either, "2026-07-13T13:00:00Z", 2),
            ["2026-07-15T12:00:00Z", "2026-07-20T12:00:00Z"]
        );
    }

    #[test]
    fn day_of_month_alone_when_day_of_week_is_star() {
        let fifteenth = schedule("0 0 12 15 * *", chrono_tz::UTC);
        assert_eq!(
            fires(&fifteenth, "2026-05-31T00:00:00Z", 2),
            ["2026-06-15T12:00:00Z", "2026-07-15T12:00:00Z"]
        );
        let mondays = schedule("0 0 12 * * MON", chrono_tz::UTC);
        assert_eq!(
            fires(&mondays, "2026-06-02T00:00:00Z", 2),
            ["2026-06-08T12:00:00Z", "2026-06-15T12:00:00Z"]
        );
    }

    #[test]
    fn time_zone_shifts_fire_times() {
        let nine = schedule("0 0 9 * * *", chrono_tz::America::New_York);
        // EST (UTC-5) in January, EDT (UTC-4) in July.
        assert_eq!(
            fires(&nine, "2026-01-10T00:00:00Z", 1),
            ["2026-01-10T14:00:00Z"]
        );
        assert_eq!(
            fires(&nine, "2026-07-10T00:00:00Z", 1),
            ["2026-07-10T13:00:00Z"]
        );
    }

    #[test]
    fn expression_in_the_past_never_fires() {
        let past = schedule("0 0 0 1 1 * 2020", chrono_tz::UTC);
        assert_eq!(next_fire(&past, utc("2026-01-01T00:00:00Z")), None);
    }

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

    #[test]
    fn claimant_has_host_pid_and_random_parts() {
        let claimant = new_claimant();
        let parts: Vec<&str> = claimant.rsplitn(3, ':').collect();
        assert_eq!(parts.len(), 3, "{claimant}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert_ne!(new_claimant(), claimant);
    }
}
