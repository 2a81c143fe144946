//! The process-wide metrics and `GET /metrics`: one registry of counters,
//! gauges and histograms behind a `LazyLock`, recorded through the small
//! functions below, one call at each place where something ends (a run in
//! `scheduler/run.rs`, a request in `registry/client.rs` and in the scanner
//! HTTP helper, a notification in `intake/`, a refusal of sync's safety
//! valve). Recording never blocks, never fails and is cheap enough for
//! every request; it works the same in a `--once` process, which merely
//! serves nothing.
//!
//! `queue.rs` keeps the queue gauges, read from the database at most once
//! per `[metrics] queue_refresh` however often Prometheus scrapes;
//! `serve.rs` renders the Prometheus text format (0.0.4) and serves it on
//! the intake's listener and on a listener of its own. Nothing here runs a
//! job or talks to the registry; the only database read is the queue's.
//!
//! Names follow `regkeeper_<area>_<thing>_<unit>`; job and scanner names
//! are labels, as written in schedules.toml. No label carries a repository,
//! a tag or anything else whose number grows with the registry.

mod queue;
mod serve;

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

use crate::store::RunOutcome;

pub use serve::{router, spawn, start, Exporter, RunningMetrics, CONTENT_TYPE};

/// Buckets of run durations, in seconds: an idle events poll takes
/// milliseconds, a first sync pass of a large registry an hour.
const RUN_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// Buckets of HTTP request durations, in seconds.
const REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Buckets of one image's scan by one scanner, in seconds.
const SCAN_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0];

/// Every metric, registered once.
struct Metrics {
    registry: Registry,
    job_runs: IntCounterVec,
    job_run_duration: HistogramVec,
    job_last_success: GaugeVec,
    job_items: IntCounterVec,
    queue_events: IntGaugeVec,
    queue_tags: IntGaugeVec,
    queue_oldest_event_age: Gauge,
    queue_refresh_failures: IntCounter,
    intake_notifications: IntCounterVec,
    intake_events_stored: IntCounter,
    intake_events_dropped: IntCounterVec,
    registry_requests: HistogramVec,
    registry_refused: IntCounter,
    reloads: IntCounterVec,
    scanner_requests: HistogramVec,
    scanner_scans: IntCounterVec,
    scanner_scan_duration: HistogramVec,
    sync_valve_refusals: IntCounterVec,
    build_info: IntGaugeVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            job_runs: IntCounterVec::new(
                Opts::new(
                    "regkeeper_job_runs_total",
                    "Runs of each job that ended, by outcome (ok, failed, timed_out, skipped, abandoned).",
                ),
                &["job", "outcome"],
            )
            .expect("a valid metric"),
            job_run_duration: HistogramVec::new(
                HistogramOpts::new(
                    "regkeeper_job_run_duration_seconds",
                    "How long each run of a job took, whatever its outcome.",
                )
                .buckets(RUN_BUCKETS.to_vec()),
                &["job"],
            )
            .expect("a valid metric"),
            job_last_success: GaugeVec::new(
                Opts::new(
                    "regkeeper_job_last_success_timestamp_seconds",
                    "When the last run of each job that ended ok ended, in seconds since the epoch.",
                ),
                &["job"],
            )
            .expect("a valid metric"),
            job_items: IntCounterVec::new(
                Opts::new(
                    "regkeeper_job_items_total",
                    "What the runs of each job handled, by kind: the counts of its runs (applied, created, scanned, ...).",
                ),
                &["job", "kind"],
            )
            .expect("a valid metric"),
            queue_events: IntGaugeVec::new(
                Opts::new(
                    "regkeeper_queue_events",
                    "Stored registry events by status (fresh, progress, done, failed).",
                ),
                &["status"],
            )
            .expect("a valid metric"),
            queue_tags: IntGaugeVec::new(
                Opts::new(
                    "regkeeper_queue_tags",
                    "Tags by scan state (none, working, done, failed).",
                ),
                &["scan"],
            )
            .expect("a valid metric"),
            queue_oldest_event_age: Gauge::new(
                "regkeeper_queue_oldest_event_age_seconds",
                "How long the oldest event still waiting (fresh or in progress) has waited; 0 when none waits.",
            )
            .expect("a valid metric"),
            queue_refresh_failures: IntCounter::new(
                "regkeeper_queue_refresh_failures_total",
                "Times the queue gauges could not be read from the database (they keep their last values).",
            )
            .expect("a valid metric"),
            intake_notifications: IntCounterVec::new(
                Opts::new(
                    "regkeeper_intake_notifications_total",
                    "Notification requests the intake answered, by HTTP status code.",
                ),
                &["code"],
            )
            .expect("a valid metric"),
            intake_events_stored: IntCounter::new(
                "regkeeper_intake_events_stored_total",
                "Events of notifications stored for the events job.",
            )
            .expect("a valid metric"),
            intake_events_dropped: IntCounterVec::new(
                Opts::new(
                    "regkeeper_intake_events_dropped_total",
                    "Events of notifications not stored, by reason (duplicate, irrelevant, own_pull, malformed).",
                ),
                &["reason"],
            )
            .expect("a valid metric"),
            registry_requests: HistogramVec::new(
                HistogramOpts::new(
                    "regkeeper_registry_request_duration_seconds",
                    "Requests to the registry (and its token server), by method and status class (2xx..5xx, or error when no answer came), and how long each took.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["method", "status"],
            )
            .expect("a valid metric"),
            registry_refused: IntCounter::new(
                "regkeeper_registry_requests_refused_total",
                "Requests to the registry not sent because it stopped answering (the client's breaker is open).",
            )
            .expect("a valid metric"),
            reloads: IntCounterVec::new(
                Opts::new(
                    "regkeeper_config_reloads_total",
                    "Reloads of the configuration on SIGHUP, by outcome: ok, or refused (the file did not load and the running configuration stays).",
                ),
                &["outcome"],
            )
            .expect("a valid metric"),
            scanner_requests: HistogramVec::new(
                HistogramOpts::new(
                    "regkeeper_scanner_request_duration_seconds",
                    "Requests to each scanner, by method and status class (2xx..5xx, or error when no answer came), and how long each took.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["scanner", "method", "status"],
            )
            .expect("a valid metric"),
            scanner_scans: IntCounterVec::new(
                Opts::new(
                    "regkeeper_scanner_scans_total",
                    "Images each scanner was asked to scan, by outcome (ok, failed, unreachable).",
                ),
                &["scanner", "outcome"],
            )
            .expect("a valid metric"),
            scanner_scan_duration: HistogramVec::new(
                HistogramOpts::new(
                    "regkeeper_scanner_scan_duration_seconds",
                    "How long each scanner took for one image, whatever the outcome.",
                )
                .buckets(SCAN_BUCKETS.to_vec()),
                &["scanner"],
            )
            .expect("a valid metric"),
            sync_valve_refusals: IntCounterVec::new(
                Opts::new(
                    "regkeeper_sync_valve_refusals_total",
                    "Sync passes refused by the safety valve (more deletions than max_delete_fraction).",
                ),
                &["job"],
            )
            .expect("a valid metric"),
            build_info: IntGaugeVec::new(
                Opts::new(
                    "regkeeper_build_info",
                    "Always 1; the version of the running binary is its label.",
                ),
                &["version"],
            )
            .expect("a valid metric"),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics.register();
        metrics
    }

    fn register(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.job_runs.clone()),
            Box::new(self.job_run_duration.clone()),
            Box::new(self.job_last_success.clone()),
            Box::new(self.job_items.clone()),
            Box::new(self.queue_events.clone()),
            Box::new(self.queue_tags.clone()),
            Box::new(self.queue_oldest_event_age.clone()),
            Box::new(self.queue_refresh_failures.clone()),
            Box::new(self.intake_notifications.clone()),
            Box::new(self.intake_events_stored.clone()),
            Box::new(self.intake_events_dropped.clone()),
            Box::new(self.registry_requests.clone()),
            Box::new(self.registry_refused.clone()),
            Box::new(self.reloads.clone()),
            Box::new(self.scanner_requests.clone()),
            Box::new(self.scanner_scans.clone()),
            Box::new(self.scanner_scan_duration.clone()),
            Box::new(self.sync_valve_refusals.clone()),
            Box::new(self.build_info.clone()),
        ];
        for collector in collectors {
            // Names are constants, each registered once: a clash is a bug
            // caught by the unit tests.
            self.registry
                .register(collector)
                .expect("metric names are unique");
        }
    }
}

/// Outcomes a job's runs always report, 0 until one happens, so that an
/// alert on `increase(...)` sees the first failure.
const DECLARED_OUTCOMES: [RunOutcome; 3] =
    [RunOutcome::Ok, RunOutcome::Failed, RunOutcome::TimedOut];

/// Declares the series of a job the daemon schedules (its run counts at 0).
pub fn declare_job(job: &str) {
    for outcome in DECLARED_OUTCOMES {
        METRICS.job_runs.with_label_values(&[job, outcome.as_str()]);
    }
}

/// Records a run that ended: its outcome, duration and counts, and when it
/// ended ok, now as the job's last success. Counts named
/// [`crate::store::IDLE_RUNS`] (bookkeeping of the run history) and
/// negative ones are not items.
pub fn job_run(job: &str, outcome: RunOutcome, duration: Duration, counts: &BTreeMap<String, i64>) {
    let metrics = &*METRICS;
    metrics
        .job_runs
        .with_label_values(&[job, outcome.as_str()])
        .inc();
    metrics
        .job_run_duration
        .with_label_values(&[job])
        .observe(duration.as_secs_f64());
    for (kind, count) in counts {
        if kind == crate::store::IDLE_RUNS {
            continue;
        }
        if let Ok(count) = u64::try_from(*count) {
            metrics
                .job_items
                .with_label_values(&[job, kind])
                .inc_by(count);
        }
    }
    if outcome == RunOutcome::Ok {
        metrics
            .job_last_success
            .with_label_values(&[job])
            .set(unix_seconds());
    }
}

/// Records a run that ended without running its handler: a tick skipped
/// while a run was still going, or a run found abandoned.
pub fn job_outcome(job: &str, outcome: RunOutcome) {
    METRICS
        .job_runs
        .with_label_values(&[job, outcome.as_str()])
        .inc();
}

/// Records the intake's answer to one notification request.
pub fn notification(code: u16) {
    METRICS
        .intake_notifications
        .with_label_values(&[&code.to_string()])
        .inc();
}

/// What became of the events of one notification envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTally {
    /// Stored for the events job.
    pub stored: u64,
    /// Already stored (a redelivery).
    pub duplicates: u64,
    /// Of no interest (other actions, media types, targets).
    pub irrelevant: u64,
    /// Pulls regkeeper itself caused.
    pub own_pulls: u64,
    /// Unreadable events.
    pub malformed: u64,
}

/// Records what became of the events of one envelope.
pub fn intake_events(tally: &EventTally) {
    let metrics = &*METRICS;
    metrics.intake_events_stored.inc_by(tally.stored);
    for (reason, count) in [
        ("duplicate", tally.duplicates),
        ("irrelevant", tally.irrelevant),
        ("own_pull", tally.own_pulls),
        ("malformed", tally.malformed),
    ] {
        metrics
            .intake_events_dropped
            .with_label_values(&[reason])
            .inc_by(count);
    }
}

/// Records one request to the registry or its token server: its method,
/// the status of its answer (None when none came) and how long it took.
pub fn registry_request(method: &str, status: Option<u16>, elapsed: Duration) {
    METRICS
        .registry_requests
        .with_label_values(&[method, status_class(status)])
        .observe(elapsed.as_secs_f64());
}

/// Records a request to the registry that was not sent: the registry
/// stopped answering and the client's breaker is open.
pub fn registry_request_refused() {
    METRICS.registry_refused.inc();
}

/// Records one request to the scanner `scanner` (its `[security.NAME]`).
pub fn scanner_request(scanner: &str, method: &str, status: Option<u16>, elapsed: Duration) {
    METRICS
        .scanner_requests
        .with_label_values(&[scanner, method, status_class(status)])
        .observe(elapsed.as_secs_f64());
}

/// How one scanner's scan of one image ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOutcome {
    /// A report came.
    Ok,
    /// The scanner answered with an error, timed out, or sent a report
    /// that could not be read.
    Failed,
    /// The scanner could not be reached at all.
    Unreachable,
}

impl ScanOutcome {
    /// Every outcome, as declared for each scanner.
    const ALL: [ScanOutcome; 3] = [
        ScanOutcome::Ok,
        ScanOutcome::Failed,
        ScanOutcome::Unreachable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanOutcome::Ok => "ok",
            ScanOutcome::Failed => "failed",
            ScanOutcome::Unreachable => "unreachable",
        }
    }
}

/// Declares the series of a scanner (its scan counts at 0).
pub fn declare_scanner(scanner: &str) {
    for outcome in ScanOutcome::ALL {
        METRICS
            .scanner_scans
            .with_label_values(&[scanner, outcome.as_str()]);
    }
}

/// Records one scan of one image by `scanner`.
pub fn scan(scanner: &str, outcome: ScanOutcome, elapsed: Duration) {
    let metrics = &*METRICS;
    metrics
        .scanner_scans
        .with_label_values(&[scanner, outcome.as_str()])
        .inc();
    metrics
        .scanner_scan_duration
        .with_label_values(&[scanner])
        .observe(elapsed.as_secs_f64());
}

/// Declares the reload series at 0, so that an alert sees the first refusal.
pub fn declare_reloads() {
    for outcome in ["ok", "refused"] {
        METRICS.reloads.with_label_values(&[outcome]);
    }
}

/// Records a reload of the configuration: applied, or refused.
pub fn reload(applied: bool) {
    let outcome = if applied { "ok" } else { "refused" };
    METRICS.reloads.with_label_values(&[outcome]).inc();
}

/// Records a sync pass of `job` that the safety valve refused.
pub fn sync_valve_refused(job: &str) {
    METRICS.sync_valve_refusals.with_label_values(&[job]).inc();
}

/// `2xx` .. `5xx` for an answer's status, `error` for no answer.
fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "error",
    }
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Every metric in the Prometheus text format (0.0.4).
fn encode() -> String {
    let families = METRICS.registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_else(|error| {
            log::error!("metrics: encoding failed: {error}");
            String::new()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(200)), "2xx");
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(307)), "3xx");
        assert_eq!(status_class(Some(401)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(Some(42)), "other");
        assert_eq!(status_class(None), "error");
    }

    #[test]
    fn every_metric_is_registered_and_named_by_the_house_rule() {
        declare_job("unit-job");
        declare_scanner("unit-scanner");
        registry_request("GET", Some(200), Duration::from_millis(3));
        scanner_request("unit-scanner", "POST", None, Duration::from_millis(3));
        notification(202);
        intake_events(&EventTally::default());
        sync_valve_refused("unit-job");
        let counts = BTreeMap::from([("applied".to_string(), 1)]);
        job_run("unit-job", RunOutcome::Ok, Duration::ZERO, &counts);
        scan("unit-scanner", ScanOutcome::Ok, Duration::ZERO);
        // The two queue depth families appear once the queue's own test
        // (the one that sets them) has run in this process.
        let families = METRICS.registry.gather();
        assert!(families.len() >= 15, "one family per metric: {families:?}");
        for family in &families {
            let name = family.name();
            assert!(name.starts_with("regkeeper_"), "{name}");
            assert!(!family.help().is_empty(), "{name}");
        }
    }

    #[test]
    fn items_are_the_counts_of_a_run_without_bookkeeping() {
        let counts = BTreeMap::from([
            ("applied".to_string(), 3),
            (crate::store::IDLE_RUNS.to_string(), 7),
            ("negative".to_string(), -1),
        ]);
        job_run("items-job", RunOutcome::Ok, Duration::ZERO, &counts);
        let text = encode();
        assert!(
            text.contains("regkeeper_job_items_total{job=\"items-job\",kind=\"applied\"} 3"),
            "{text}"
        );
        assert!(!text.contains("kind=\"idle_runs\""), "{text}");
        assert!(!text.contains("kind=\"negative\""), "{text}");
    }
}
