//! The async side of the scheduler: one tokio task per enabled job sleeps
//! to the next fire time or a wake-up, waits out the jitter, starts the run
//! on the blocking pool and watches it (skipped ticks, heartbeats, timeout,
//! shutdown), [`RunningScheduler::reload`] stops and starts tasks by job
//! name, and [`RunningScheduler::shutdown`] drains, then cancels. What a run
//! does is in `run.rs`; when a job fires is [`next_fire`]'s answer.
//!
//! A reload never cuts a run: the task of a job that was removed or changed
//! is asked to stop, which it does once it is idle (a run in flight finishes
//! under the configuration it started with), and the task that replaces a
//! changed job first waits for its predecessor to end, so that two runs of
//! one job never overlap in this process. A replaced job keeps its
//! [`Waker`], so whoever holds it keeps waking the job.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::fire::next_fire;
use super::run::{
    execute_run, now_ms, record_skip, renew_heartbeat, RunFlags, RunRequest, RunSettings,
    SkippedTicks,
};
use crate::config::JobConfig;
use crate::jobs::{Handler, RunOptions, Trigger};
use crate::store::RunOutcome;

/// How long shutdown still waits, after the grace period, for runs it has
/// just cancelled to record how they ended.
pub const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// The longest single timer sleep. Long waits are cut into pieces so that a
/// change of the system clock delays a fire time by at most this much.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);

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
    /// one) and returns the handle that reloads and shuts them down.
    pub fn start(self) -> RunningScheduler {
        let (phase_sender, phase_receiver) = watch::channel(Phase::Running);
        let mut running = RunningScheduler {
            phase: phase_sender,
            phase_receiver,
            tasks: JoinSet::new(),
            jobs: BTreeMap::new(),
            in_flight: InFlight::default(),
            settings: self.settings,
        };
        for slot in self.slots {
            running.spawn(slot, None);
        }
        running
    }
}

/// Logs when a job that is being scheduled fires first.
fn log_scheduled(config: &JobConfig) {
    if let Some(first) = next_fire(&config.schedule, Utc::now()) {
        info!(
            "job={} scheduled: handler={} schedule=\"{}\" timezone={} next={}",
            config.name,
            config.handler.name(),
            config.schedule.expression,
            config.schedule.timezone,
            first.with_timezone(&config.schedule.timezone).to_rfc3339()
        );
    } else {
        warn!(
            "job={} never fires again: only wake-ups run it",
            config.name
        );
    }
}

/// What a reload changes in the running schedule (see
/// [`RunningScheduler::reload`]).
pub struct JobChanges {
    /// Jobs whose task stops once it is idle: removed, disabled or changed.
    pub stop: Vec<String>,
    /// Jobs to start with their handlers: added, enabled or changed. A job
    /// also in `stop` starts once its old task has ended.
    pub start: Vec<(JobConfig, Arc<dyn Handler>)>,
}

/// A job task the running scheduler knows, by job name.
struct TaskHandle {
    waker: Waker,
    /// Set to true to ask the task to stop once it is idle.
    stop: watch::Sender<bool>,
    /// Resolves (with an error) when the task has ended.
    ended: oneshot::Receiver<()>,
}

/// The started scheduler.
pub struct RunningScheduler {
    phase: watch::Sender<Phase>,
    phase_receiver: watch::Receiver<Phase>,
    tasks: JoinSet<()>,
    jobs: BTreeMap<String, TaskHandle>,
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
        self.jobs.get(job_name).map(|task| task.waker.clone())
    }

    /// Applies a new configuration's jobs without cutting a run: the tasks
    /// of `changes.stop` stop once idle (a run in flight finishes as it
    /// started), the jobs of `changes.start` get new tasks, each waiting
    /// for its predecessor of the same name to end first and keeping its
    /// [`Waker`]. Jobs in neither list go on untouched.
    pub fn reload(&mut self, changes: JobChanges) {
        // Tasks that have ended (jobs finished for good) are reaped here, so
        // that the set does not grow over many reloads.
        while let Some(joined) = self.tasks.try_join_next() {
            log_task_end(joined);
        }
        // A job started again without being named in `stop` is replaced
        // all the same, never run twice at once.
        let mut stop = changes.stop;
        for (config, _) in &changes.start {
            if self.jobs.contains_key(&config.name) && !stop.contains(&config.name) {
                stop.push(config.name.clone());
            }
        }
        let mut predecessors = BTreeMap::new();
        for job_name in stop {
            let Some(task) = self.jobs.remove(&job_name) else {
                continue;
            };
            let busy = self
                .in_flight
                .lock()
                .is_ok_and(|in_flight| in_flight.contains_key(&job_name));
            if busy {
                info!("job={job_name} stops after its run in flight, which finishes as it started");
            } else {
                info!("job={job_name} stopped");
            }
            task.stop.send_replace(true);
            predecessors.insert(job_name, (task.ended, task.waker));
        }
        for (config, handler) in changes.start {
            let predecessor = predecessors.remove(&config.name);
            let slot = JobSlot {
                waker: predecessor
                    .as_ref()
                    .map(|(_, waker)| waker.clone())
                    .unwrap_or_default(),
                config,
                handler,
            };
            self.spawn(slot, predecessor.map(|(ended, _)| ended));
        }
    }

    /// Starts the task of one job, after `predecessor` has ended when given.
    fn spawn(&mut self, slot: JobSlot, predecessor: Option<oneshot::Receiver<()>>) {
        log_scheduled(&slot.config);
        let (stop_sender, stop_receiver) = watch::channel(false);
        let (ended_sender, ended_receiver) = oneshot::channel();
        self.jobs.insert(
            slot.config.name.clone(),
            TaskHandle {
                waker: slot.waker.clone(),
                stop: stop_sender,
                ended: ended_receiver,
            },
        );
        let job_task = JobTask {
            slot: Arc::new(slot),
            settings: self.settings.clone(),
            phase: self.phase_receiver.clone(),
            stop: stop_receiver,
            in_flight: self.in_flight.clone(),
        };
        self.tasks.spawn(async move {
            // Dropped when the task ends, however it ends: that is what its
            // successor waits for.
            let _ended = ended_sender;
            if let Some(predecessor) = predecessor {
                let _ = predecessor.await;
            }
            job_task.run().await;
        });
    }

    /// Stops triggering and lets runs in flight finish for up to `grace`.
    /// At the deadline their [`Cancel`](crate::jobs::Cancel) flags are set
    /// and shutdown waits at most [`CANCEL_WAIT`] more for them to record how
    /// they ended; a run that still goes on is left behind (it ends with the
    /// process).
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
        log_task_end(joined);
    }
}

fn log_task_end(joined: Result<(), tokio::task::JoinError>) {
    if let Err(cause) = joined {
        if cause.is_panic() {
            error!("a job task panicked: {cause}");
        }
    }
}

/// The async side of one job: waits for fire times and wake-ups, starts runs
/// on the blocking pool and watches them.
struct JobTask {
    slot: Arc<JobSlot>,
    settings: RunSettings,
    phase: watch::Receiver<Phase>,
    /// True once a reload removed or replaced the job.
    stop: watch::Receiver<bool>,
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
            if *self.phase.borrow() != Phase::Running || *self.stop.borrow() {
                return;
            }
        }
    }

    fn next_after_now(&self) -> Option<DateTime<Utc>> {
        next_fire(&self.slot.config.schedule, Utc::now())
    }

    /// Waits for the next fire time, a wake-up or shutdown.
    async fn wait_idle(&mut self, next: Option<DateTime<Utc>>) -> Wait {
        if *self.phase.borrow() != Phase::Running || *self.stop.borrow() {
            return Wait::Stop;
        }
        let slot = self.slot.clone();
        tokio::select! {
            biased;
            _ = self.phase.wait_for(|phase| *phase != Phase::Running) => Wait::Stop,
            _ = self.stop.wait_for(|stop| *stop) => Wait::Stop,
            _ = slot.waker.woken() => Wait::Fire(Trigger::Wake),
            _ = sleep_until_utc(next) => Wait::Fire(Trigger::Schedule),
        }
    }

    /// Sleeps `delay` unless shutdown or a reload stops the job first; true
    /// when one did.
    async fn sleep_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.phase.wait_for(|phase| *phase != Phase::Running) => true,
            _ = self.stop.wait_for(|stop| *stop) => true,
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
