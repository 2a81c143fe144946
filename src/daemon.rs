//! The daemon: wires configuration, store, registry client, intake and
//! scheduler together, waits for the database, and runs until a signal.
//! Owns start-up order (the metrics listener and the intake before the
//! scheduler) and shutdown; no job logic lives here, and it never
//! runs a handler itself (the scheduler does).
//!
//! Signals: the first SIGINT or SIGTERM stops triggering and drains runs in
//! flight for up to `daemon.grace_period`, then [`run`] returns Ok (exit 0).
//! A second one exits the process at once with 128 + the signal number
//! ([`EXIT_SECOND_SIGINT`] 130, [`EXIT_SECOND_SIGTERM`] 143).
//!
//! SIGHUP reloads the configuration file through the same loading and
//! validation as start-up: jobs and scanners change from their next run
//! (runs in flight finish as they started), keys that need a restart are
//! named in a warning and keep their running values (`reload.rs` decides
//! which is which), and a file that does not load is refused, logged and
//! counted ([`reload_failures`]) while the old configuration goes on. The
//! intake keeps its listener throughout; it wakes whichever job is the
//! events job now, through a relay the reload points at it.

mod reload;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use log::{error, info, warn};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{Config, ConfigError, HandlerConfig, JobConfig};
use crate::jobs::{Handler, Resources};
use crate::scheduler::{Drain, JobChanges, RunSettings, RunningScheduler, Scheduler, Waker};

pub use reload::reload_failures;

/// Exit code when a second SIGINT ends the process at once.
pub const EXIT_SECOND_SIGINT: i32 = 130;
/// Exit code when a second SIGTERM ends the process at once.
pub const EXIT_SECOND_SIGTERM: i32 = 143;

/// How long the runtime waits, after the scheduler shut down, for blocking
/// threads; a run cancelled at the deadline that still goes on ends with the
/// process.
const RUNTIME_SHUTDOWN_WAIT: Duration = Duration::from_millis(200);

/// Runs the daemon until SIGINT/SIGTERM; returns after runs in flight have
/// drained (or the grace period passed). A job whose handler this version
/// lacks is a [`ConfigError`] at start-up.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("regkeeper")
        .build()
        .context("starting the async runtime")?;
    // The store outlives the runtime: PostgreSQL's synchronous client
    // blocks on a runtime of its own when a connection closes, which panics
    // inside an async context (and aborts the process when the pool is
    // dropped during the runtime's cleanup). The daemon keeps one handle
    // here and drops it, the last one, after the runtime has shut down.
    let mut store = None;
    let result = runtime.block_on(run_until_signal(config, &mut store));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_WAIT);
    drop(store);
    result
}

async fn run_until_signal(
    config: Config,
    keep_store: &mut Option<Arc<dyn crate::store::Store>>,
) -> anyhow::Result<()> {
    // Signals are caught from the very start, so that a stop request while
    // waiting for the database ends the process cleanly too.
    let mut signals = Signals::new()?;
    crate::logging::use_config(config.daemon.log_format);
    let config = Arc::new(config);
    info!(
        "regkeeper {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        config.path.display()
    );

    let database = config.database.clone();
    let database_wait = config.daemon.database_wait;
    let opening = tokio::task::spawn_blocking(move || crate::store::open(&database, database_wait));
    let store = tokio::select! {
        opened = opening => opened.context("opening the database crashed")??,
        received = signals.next_stop() => {
            info!("{} while waiting for the database: stopping", received.name());
            return Ok(());
        }
    };
    *keep_store = Some(store.clone());

    let registry =
        crate::registry::Client::new(&config.registry).context("building the registry client")?;
    let resources = Resources {
        config: config.clone(),
        store: store.clone(),
        registry: Arc::new(registry),
    };
    let jobs = build_handlers(&config, &resources)?;
    // Runs left unfinished by a daemon that died (SIGKILL, a crash, the
    // machine) are recorded abandoned once their heartbeat has expired;
    // those not expired yet are noticed before the job's next run.
    let abandon_after = config.daemon.abandon_after;
    let noticing = store.clone();
    tokio::task::spawn_blocking(move || {
        crate::scheduler::record_abandoned_runs(noticing.as_ref(), None, abandon_after);
        crate::scheduler::release_claims_of_dead_processes(noticing.as_ref());
    })
    .await
    .context("recording abandoned runs crashed")?;
    let settings = RunSettings::new(store.clone(), &config.daemon);
    // The jobs this daemon runs, as it read them, for `status`.
    record_job_set(&store, &config, &settings.claimant).await?;
    let claimant = settings.claimant.clone();
    let scheduler = Scheduler::new(jobs, settings);

    // The intake binds `config.notifications.listen` (when set) and serves
    // with a waker of its own that the relay passes on to the events job,
    // so that storing new events wakes the job, whichever it is after a
    // reload. It starts before the scheduler so that no notification is
    // refused once jobs run.
    let relay =
        EventsRelay::new(events_job_name(&config).and_then(|job_name| scheduler.waker(job_name)));
    if config.notifications.listen.is_some() && !relay.has_target() {
        warn!("notifications are stored but no enabled job has the events handler: nothing applies them");
    }
    // `/metrics` on the intake's listener and on its own, both from one
    // exporter (one cache of the queue gauges).
    let exporter = crate::metrics::Exporter::new(store.clone(), config.metrics.queue_refresh);
    let metrics = crate::metrics::start(&config, exporter.clone())
        .await
        .context("starting the metrics listener")?;
    let intake = crate::intake::start(
        &config.notifications,
        &config.registry,
        store.clone(),
        Some(relay.intake_waker()),
        config.metrics.intake.then_some(exporter),
    )
    .await
    .context("starting the notification intake")?;
    let relaying = relay.start();

    let mut daemon = Running {
        config,
        resources,
        scheduler: scheduler.start(),
        relay,
        claimant,
    };
    info!(
        "regkeeper running: {} job(s) configured",
        daemon.config.jobs.len()
    );

    let first = loop {
        match signals.next().await {
            Received::Stop(first) => break first,
            Received::Hangup => daemon.reload().await,
        }
    };
    info!(
        "{} received: stopping (send it again to exit at once)",
        first.name()
    );
    tokio::spawn(async move {
        let second = signals.next_stop().await;
        error!("second {} received: exiting at once", second.name());
        std::process::exit(second.exit_code());
    });

    // No new notifications while draining: the registry keeps and resends
    // what it could not deliver.
    if let Some(intake) = intake {
        if let Err(error) = intake.stop().await {
            warn!("stopping the notification intake: {error:#}");
        }
    }
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    relaying.abort();
    let grace_period = daemon.config.daemon.grace_period;
    match daemon.scheduler.shutdown(grace_period).await {
        Drain::Complete => info!("regkeeper stopped"),
        Drain::Cancelled => {
            warn!("regkeeper stopped after cancelling runs that overran the grace period")
        }
    }
    Ok(())
}

/// What a running daemon changes on reload.
struct Running {
    /// The configuration in effect.
    config: Arc<Config>,
    /// The store and registry client new handlers are built with, and the
    /// configuration the running handlers were built from.
    resources: Resources,
    scheduler: RunningScheduler,
    relay: EventsRelay,
    /// This daemon's claimant id, under which it records its job set.
    claimant: String,
}

impl Running {
    /// Reads the configuration file again and applies what changed; a
    /// file that does not load, or a job whose handler cannot be built,
    /// leaves everything as it was.
    async fn reload(&mut self) {
        let path = self.config.path.clone();
        info!("SIGHUP received: reloading {}", path.display());
        let loading = path.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&loading)).await;
        let new = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(cause)) => return refuse(&cause),
            Err(cause) => return refuse(&anyhow::anyhow!("loading crashed: {cause}")),
        };
        let (effective, comparison) = reload::compare(&self.config, new);
        let effective = Arc::new(effective);
        let resources = Resources {
            config: effective.clone(),
            store: self.resources.store.clone(),
            registry: self.resources.registry.clone(),
        };
        let renewed = |job: &&JobConfig| {
            comparison.added.contains(&job.name) || comparison.changed.contains(&job.name)
        };
        let mut start = Vec::new();
        for job in effective.jobs.iter().filter(renewed) {
            if !job.enabled {
                info!("job={} is disabled: not scheduled", job.name);
                continue;
            }
            match crate::jobs::build(job, &resources) {
                Ok(handler) => start.push((job.clone(), handler)),
                Err(cause) => {
                    return refuse(&anyhow::anyhow!(
                        "{}: job {}: {cause:#}",
                        path.display(),
                        job.name
                    ))
                }
            }
        }
        for key in &comparison.needs_restart {
            warn!("reload: needs a restart: {key} (the running value stays until then)");
        }
        let stop = comparison
            .removed
            .iter()
            .chain(&comparison.changed)
            .cloned()
            .collect();
        self.scheduler.reload(JobChanges { stop, start });
        self.relay.point_at(
            events_job_name(&effective).and_then(|job_name| self.scheduler.waker(job_name)),
        );
        if effective.notifications.listen.is_some() && !self.relay.has_target() {
            warn!("notifications are stored but no enabled job has the events handler: nothing applies them");
        }
        crate::logging::use_config(effective.daemon.log_format);
        for job in effective.jobs.iter().filter(|job| job.enabled) {
            crate::metrics::declare_job(&job.name);
        }
        // `status` shows the jobs the daemon runs now.
        if let Err(error) = record_job_set(&self.resources.store, &effective, &self.claimant).await
        {
            warn!("{error:#}");
        }
        crate::metrics::reload(true);
        info!("{}", comparison.summary());
        self.config = effective;
        self.resources = resources;
    }
}

/// Logs and counts a refused reload.
fn refuse(cause: &anyhow::Error) {
    reload::count_failure();
    crate::metrics::reload(false);
    error!(
        "reload refused ({} since start), the running configuration stays: {cause:#}",
        reload_failures()
    );
}

/// Passes the intake's wake-ups on to the events job of the configuration
/// in effect (none: they are dropped, the job's schedule still runs it).
struct EventsRelay {
    intake: Waker,
    target: Arc<Mutex<Option<Waker>>>,
}

impl EventsRelay {
    fn new(target: Option<Waker>) -> EventsRelay {
        EventsRelay {
            intake: Waker::default(),
            target: Arc::new(Mutex::new(target)),
        }
    }

    /// The waker the intake holds for good.
    fn intake_waker(&self) -> Waker {
        self.intake.clone()
    }

    fn has_target(&self) -> bool {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn point_at(&self, target: Option<Waker>) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }

    /// The relay task; wake-ups coalesce on both sides, as on one waker.
    fn start(&self) -> tokio::task::JoinHandle<()> {
        let intake = self.intake.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            loop {
                intake.woken().await;
                let job = target
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(job) = job {
                    job.wake();
                }
            }
        })
    }
}

/// Builds the handler of every enabled job. Disabled jobs are not built, so
/// a disabled job may name a handler this version lacks.
fn build_handlers(
    config: &Config,
    resources: &Resources,
) -> anyhow::Result<Vec<(crate::config::JobConfig, Arc<dyn Handler>)>> {
    let mut jobs = Vec::new();
    for job in config.jobs.iter().filter(|job| job.enabled) {
        let handler = crate::jobs::build(job, resources).map_err(|cause| {
            anyhow::Error::new(ConfigError::new(format!("job {}: {cause:#}", job.name)))
        })?;
        jobs.push((job.clone(), handler));
    }
    Ok(jobs)
}

/// Every job of the configuration as this daemon runs it.
/// Records the jobs of `config` as the ones this daemon runs (for
/// `status`). A failure to write them is logged and the daemon goes on;
/// the error returned is a crash of the recording.
async fn record_job_set(
    store: &Arc<dyn crate::store::Store>,
    config: &Config,
    claimant: &str,
) -> anyhow::Result<()> {
    let job_set = daemon_job_set(config, claimant);
    let recording = store.clone();
    let recorded = tokio::task::spawn_blocking(move || recording.record_daemon_jobs(&job_set))
        .await
        .context("recording the daemon's jobs crashed")?;
    if let Err(error) = recorded {
        warn!("{error:#}");
    }
    Ok(())
}

fn daemon_job_set(config: &Config, claimant: &str) -> crate::store::DaemonJobSet {
    crate::store::DaemonJobSet {
        claimant: claimant.to_string(),
        // The absolute path, so that `status` run from elsewhere can tell
        // which file the daemon read.
        config: std::fs::canonicalize(&config.path)
            .unwrap_or_else(|_| config.path.clone())
            .display()
            .to_string(),
        started_at: crate::store::now_ms(),
        jobs: config
            .jobs
            .iter()
            .map(|job| crate::store::DaemonJob {
                name: job.name.clone(),
                handler: job.handler.name().to_string(),
                schedule: job.schedule.expression.clone(),
                timezone: job.schedule.timezone.name().to_string(),
                enabled: job.enabled,
                finished_at: None,
                finished_reason: None,
            })
            .collect(),
    }
}

/// The first enabled job with the `events` handler: the one the intake wakes.
fn events_job_name(config: &Config) -> Option<&str> {
    config
        .jobs
        .iter()
        .find(|job| job.enabled && matches!(job.handler, HandlerConfig::Events(_)))
        .map(|job| job.name.as_str())
}

/// A stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    fn exit_code(self) -> i32 {
        match self {
            StopSignal::Interrupt => EXIT_SECOND_SIGINT,
            StopSignal::Terminate => EXIT_SECOND_SIGTERM,
        }
    }
}

/// A signal the daemon acts on.
enum Received {
    Stop(StopSignal),
    Hangup,
}

/// SIGINT, SIGTERM and SIGHUP, caught for the life of the daemon.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("catching SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Stop(StopSignal::Interrupt),
            _ = self.terminate.recv() => Received::Stop(StopSignal::Terminate),
            _ = self.hangup.recv() => Received::Hangup,
        }
    }

    /// The next stop signal; a SIGHUP meanwhile (starting, stopping) is
    /// logged and otherwise ignored.
    async fn next_stop(&mut self) -> StopSignal {
        loop {
            match self.next().await {
                Received::Stop(signal) => return signal,
                Received::Hangup => info!("SIGHUP ignored: the daemon is not running its jobs"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_signal_exit_codes_are_128_plus_signal_number() {
        assert_eq!(StopSignal::Interrupt.exit_code(), 128 + 2);
        assert_eq!(StopSignal::Terminate.exit_code(), 128 + 15);
    }
}
