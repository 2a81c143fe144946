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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use log::{error, info, warn};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config::{Config, ConfigError, HandlerConfig};
use crate::jobs::{Handler, Resources};
use crate::scheduler::{Drain, RunSettings, Scheduler};

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
        received = signals.next() => {
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
    let job_set = daemon_job_set(&config, &settings.claimant);
    let recording = store.clone();
    let recorded = tokio::task::spawn_blocking(move || recording.record_daemon_jobs(&job_set))
        .await
        .context("recording the daemon's jobs crashed")?;
    if let Err(error) = recorded {
        warn!("{error:#}");
    }
    let scheduler = Scheduler::new(jobs, settings);

    // The intake binds `config.notifications.listen` (when set) and serves
    // with the events job's waker, so that storing new events wakes the job.
    // It starts before the scheduler so that no notification is refused
    // once jobs run.
    let events_waker = events_job_name(&config).and_then(|job_name| scheduler.waker(job_name));
    if config.notifications.listen.is_some() && events_waker.is_none() {
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
        events_waker,
        config.metrics.intake.then_some(exporter),
    )
    .await
    .context("starting the notification intake")?;

    let running = scheduler.start();
    info!("regkeeper running: {} job(s) configured", config.jobs.len());

    let first = signals.next().await;
    info!(
        "{} received: stopping (send it again to exit at once)",
        first.name()
    );
    tokio::spawn(async move {
        let second = signals.next().await;
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
    match running.shutdown(config.daemon.grace_period).await {
        Drain::Complete => info!("regkeeper stopped"),
        Drain::Cancelled => {
            warn!("regkeeper stopped after cancelling runs that overran the grace period")
        }
    }
    Ok(())
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

/// SIGINT and SIGTERM, caught for the life of the daemon.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    async fn next(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.interrupt.recv() => StopSignal::Interrupt,
            _ = self.terminate.recv() => StopSignal::Terminate,
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
