//! `regkeeper status`: each job's last runs, the queue depths, the latest
//! events that failed for good and each scanner, read from a database
//! opened read-only (a run whose heartbeat expired shows as abandoned; the
//! next daemon records it), as a table or JSON. Writes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::format::{
    format_counts, format_duration_ms, format_ms, or_none, severity_counts, write_table,
};
use super::{load_config_for_reading, open_store_read_only, print_out, Failure, StatusArgs};
use crate::config::Config;
use crate::store::{DaemonJobSet, QueueCounts, RunOutcome, RunRecord};

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The configuration file.
    pub config: String,
    /// The database, without secrets.
    pub database: String,
    /// The daemon whose jobs are shown, as it recorded them at start-up;
    /// null when no daemon has (the jobs are then the file's).
    pub daemon: Option<DaemonStatus>,
    /// The jobs the daemon runs, in its order, then any the file has that
    /// it does not; without a daemon, the file's jobs in file order.
    pub jobs: Vec<JobStatus>,
    /// Queue depths.
    pub queues: QueueStatus,
    /// The latest registry events that failed for good, newest first.
    pub failed_events: Vec<FailedEventStatus>,
    /// Each scanner: the enabled ones in file order, then any whose
    /// reports are still stored though it is no longer enabled.
    pub scanners: Vec<ScannerStatus>,
}

/// One scanner in `status`, over the digests of current tags.
#[derive(Debug, Serialize)]
pub struct ScannerStatus {
    /// `clair`, `clair4`, `adapter` or `fixture`.
    pub scanner: String,
    /// Whether its `[security.NAME]` section is enabled.
    pub enabled: bool,
    /// Digests with a report of it (current or stale).
    pub reports: i64,
    /// Digests whose latest attempt with it failed.
    pub failing: i64,
    /// Of those, failed for good.
    pub failed: i64,
    /// Its newest report (RFC 3339).
    pub last_report_at: Option<String>,
    /// Its newest failed attempt (RFC 3339).
    pub last_error_at: Option<String>,
    /// That attempt's error.
    pub last_error: Option<String>,
}

/// The scanners of `status`: enabled ones in file order, then the rest.
fn scanner_statuses(
    config: &Config,
    summaries: Vec<crate::store::ScannerSummary>,
) -> Vec<ScannerStatus> {
    let status = |summary: crate::store::ScannerSummary, enabled: bool| ScannerStatus {
        scanner: summary.scanner,
        enabled,
        reports: summary.reports,
        failing: summary.failing,
        failed: summary.failed,
        last_report_at: summary.last_report_at.map(format_ms),
        last_error_at: summary.last_error_at.map(format_ms),
        last_error: summary.last_error,
    };
    let mut summaries: BTreeMap<String, crate::store::ScannerSummary> = summaries
        .into_iter()
        .map(|summary| (summary.scanner.clone(), summary))
        .collect();
    let mut statuses = Vec::new();
    for scanner in config.security.iter().filter(|scanner| scanner.enabled) {
        let name = scanner.kind.name();
        let summary = summaries
            .remove(name)
            .unwrap_or_else(|| crate::store::ScannerSummary {
                scanner: name.to_string(),
                ..Default::default()
            });
        statuses.push(status(summary, true));
    }
    statuses.extend(
        summaries
            .into_values()
            .map(|summary| status(summary, false)),
    );
    statuses
}

/// One failed registry event in `status`.
#[derive(Debug, Serialize)]
pub struct FailedEventStatus {
    /// The registry's event id.
    pub event_id: String,
    /// `push`, `pull` or `delete`.
    pub action: String,
    /// Full repository name.
    pub repository: String,
    /// Attempts made.
    pub attempts: i64,
    /// When it failed, RFC 3339, UTC.
    pub failed_at: String,
    /// Why.
    pub error: String,
}

/// How many failed events `status` lists.
const FAILED_EVENTS_SHOWN: usize = 10;

/// The daemon whose job set `status` shows.
#[derive(Debug, Serialize)]
pub struct DaemonStatus {
    /// The daemon (`host:pid:random`).
    pub claimant: String,
    /// The configuration file it read.
    pub config: String,
    /// When it started (RFC 3339).
    pub started_at: String,
}

/// One job in `status`.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Handler name.
    pub handler: String,
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// `enabled`, `disabled`, `finished` (for good: sync `initial` or
    /// `on-start` done), or `not-running` (in the file, not in the daemon's
    /// set).
    pub state: String,
    /// When it finished for good (RFC 3339).
    pub finished_at: Option<String>,
    /// Why it finished for good.
    pub finished_reason: Option<String>,
    /// The cron expression.
    pub schedule: String,
    /// IANA time zone.
    pub timezone: String,
    /// How the file on disk differs from what the daemon runs, e.g.
    /// `schedule "*/5 * * * * *"`; empty when it does not.
    pub file_differs: Vec<String>,
    /// Newest first.
    pub runs: Vec<RunStatus>,
}

/// One run in `status`.
#[derive(Debug, Serialize)]
pub struct RunStatus {
    /// `job_runs` id.
    pub id: i64,
    /// `schedule`, `wake` or `once`.
    pub trigger: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC; null while running.
    pub finished_at: Option<String>,
    /// Milliseconds; null while running.
    pub duration_ms: Option<i64>,
    /// `ok`, `failed`, `skipped`, `timed_out`, `abandoned`; `running` while running.
    pub outcome: String,
    /// What the handler counted.
    pub counts: BTreeMap<String, i64>,
    /// Error text with its causes.
    pub error: Option<String>,
    /// The process that ran it (`host:pid:random`); null for runs recorded
    /// before heartbeats.
    pub claimant: Option<String>,
    /// Its last heartbeat, RFC 3339 UTC; null for runs recorded before
    /// heartbeats.
    pub heartbeat_at: Option<String>,
}

/// Queue depths in `status`.
#[derive(Debug, Serialize)]
pub struct QueueStatus {
    /// Registry events by status.
    pub events: BTreeMap<String, i64>,
    /// Tags by scan state.
    pub tags_by_scan: BTreeMap<String, i64>,
    /// Number of repositories.
    pub repositories: i64,
    /// Number of tags.
    pub tags: i64,
    /// Vulnerabilities affecting current tags, by severity.
    pub vulnerabilities: BTreeMap<String, i64>,
}

impl From<QueueCounts> for QueueStatus {
    fn from(counts: QueueCounts) -> QueueStatus {
        QueueStatus {
            events: counts.events,
            tags_by_scan: counts.tags_by_scan,
            repositories: counts.repositories,
            tags: counts.tags,
            vulnerabilities: counts.vulnerabilities,
        }
    }
}

impl From<RunRecord> for RunStatus {
    fn from(run: RunRecord) -> RunStatus {
        RunStatus {
            id: run.id,
            trigger: run.trigger,
            started_at: format_ms(run.started_at),
            finished_at: run.finished_at.map(format_ms),
            duration_ms: run.finished_at.map(|finished| finished - run.started_at),
            outcome: run
                .outcome
                .map_or("running", RunOutcome::as_str)
                .to_string(),
            counts: run.counts,
            error: run.error,
            claimant: run.claimant,
            heartbeat_at: run.heartbeat_at.map(format_ms),
        }
    }
}

/// The jobs `status` shows, without their runs: the daemon's job set when
/// one is recorded (each compared with the file's job of that name, and
/// the file's jobs it lacks after them), else the file's jobs.
pub fn job_statuses(config: &Config, daemon: Option<&DaemonJobSet>) -> Vec<JobStatus> {
    let from_file = |job: &crate::config::JobConfig| JobStatus {
        name: job.name.clone(),
        handler: job.handler.name().to_string(),
        enabled: job.enabled,
        state: if job.enabled { "enabled" } else { "disabled" }.to_string(),
        finished_at: None,
        finished_reason: None,
        schedule: job.schedule.expression.clone(),
        timezone: job.schedule.timezone.name().to_string(),
        file_differs: Vec::new(),
        runs: Vec::new(),
    };
    let Some(daemon) = daemon else {
        return config.jobs.iter().map(from_file).collect();
    };
    let mut jobs: Vec<JobStatus> = daemon
        .jobs
        .iter()
        .map(|job| {
            let state = match (job.finished_at, job.enabled) {
                (Some(_), _) => "finished",
                (None, true) => "enabled",
                (None, false) => "disabled",
            };
            let mut file_differs = Vec::new();
            match config.job(&job.name) {
                None => file_differs.push("not in the file".to_string()),
                Some(in_file) => {
                    if in_file.handler.name() != job.handler {
                        file_differs.push(format!("handler {:?}", in_file.handler.name()));
                    }
                    if in_file.schedule.expression != job.schedule {
                        file_differs.push(format!("schedule {:?}", in_file.schedule.expression));
                    }
                    if in_file.schedule.timezone.name() != job.timezone {
                        file_differs.push(format!("timezone {}", in_file.schedule.timezone.name()));
                    }
                    if in_file.enabled != job.enabled {
                        file_differs.push(format!("enabled = {}", in_file.enabled));
                    }
                }
            }
            JobStatus {
                name: job.name.clone(),
                handler: job.handler.clone(),
                enabled: job.enabled && job.finished_at.is_none(),
                state: state.to_string(),
                finished_at: job.finished_at.map(format_ms),
                finished_reason: job.finished_reason.clone(),
                schedule: job.schedule.clone(),
                timezone: job.timezone.clone(),
                file_differs,
                runs: Vec::new(),
            }
        })
        .collect();
    for job in &config.jobs {
        if !daemon.jobs.iter().any(|running| running.name == job.name) {
            let mut status = from_file(job);
            status.enabled = false;
            status.state = "not-running".to_string();
            status.file_differs = vec!["only in the file".to_string()];
            jobs.push(status);
        }
    }
    jobs
}

/// A run as `status` shows it at `now`: a run still unfinished whose last
/// sign of life is older than `abandon_after_ms` shows as the daemon would
/// record it (abandoned, finished at its last heartbeat). The database is
/// only read: the next daemon or `--once` run records it.
fn shown_as_of(mut run: RunRecord, now: i64, abandon_after_ms: i64) -> RunStatus {
    let last_sign_of_life = run.heartbeat_at.unwrap_or(run.started_at);
    let expired = run.outcome.is_none() && last_sign_of_life.saturating_add(abandon_after_ms) < now;
    if expired {
        run.error = Some(crate::store::abandoned_text(&run));
        run.outcome = Some(RunOutcome::Abandoned);
        run.finished_at = Some(last_sign_of_life);
    }
    RunStatus::from(run)
}

/// `status`: recent runs and queue depths, from the database.
pub(super) fn status(config_path: &Path, args: &StatusArgs) -> Result<ExitCode, Failure> {
    let config = load_config_for_reading(config_path)?;
    let store = open_store_read_only(&config)?;
    let now = crate::store::now_ms();
    let abandon_after_ms =
        i64::try_from(config.daemon.abandon_after.as_millis()).unwrap_or(i64::MAX);
    let daemon_jobs = store.daemon_jobs()?;
    let mut jobs = job_statuses(&config, daemon_jobs.as_ref());
    for job in &mut jobs {
        let runs = store
            .recent_runs(&job.name, args.runs)
            .with_context(|| format!("reading the runs of job {}", job.name))?;
        job.runs = runs
            .into_iter()
            .map(|run| shown_as_of(run, now, abandon_after_ms))
            .collect();
    }
    let queues = store.queue_counts().context("counting the queues")?;
    let failed_events = store
        .failed_events(FAILED_EVENTS_SHOWN)
        .context("listing failed events")?
        .into_iter()
        .map(|event| FailedEventStatus {
            event_id: event.event_id,
            action: event.action,
            repository: event.repository,
            attempts: event.attempts,
            failed_at: format_ms(event.updated_at),
            error: event.last_error,
        })
        .collect();
    let report = StatusReport {
        config: config.path.display().to_string(),
        database: crate::store::describe(&config.database),
        daemon: daemon_jobs.map(|set| DaemonStatus {
            claimant: set.claimant,
            config: set.config,
            started_at: format_ms(set.started_at),
        }),
        jobs,
        queues: queues.into(),
        failed_events,
        scanners: scanner_statuses(
            &config,
            store
                .scanner_summaries()
                .context("summarising the scanners")?,
        ),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("writing the status as JSON")?;
        print_out(&format!("{json}\n"))?;
    } else {
        print_out(&status_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable `status`.
pub fn status_table(report: &StatusReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "database {}", report.database);
    match &report.daemon {
        Some(daemon) => {
            let _ = writeln!(
                out,
                "daemon {} started {} with {}",
                daemon.claimant, daemon.started_at, daemon.config
            );
        }
        None => {
            let _ = writeln!(out, "no daemon has recorded its jobs: the jobs of the file");
        }
    }
    for job in &report.jobs {
        let _ = writeln!(out);
        let state = match job.state.as_str() {
            "finished" => "done for good",
            "not-running" => "not run by the daemon",
            other => other,
        };
        let _ = writeln!(
            out,
            "job {} ({}, {state}, \"{}\" {})",
            job.name, job.handler, job.schedule, job.timezone
        );
        if let (Some(at), Some(reason)) = (&job.finished_at, &job.finished_reason) {
            let _ = writeln!(out, "  done for good {at}: {}", reason.replace('\n', " "));
        }
        if !job.file_differs.is_empty() && job.state != "not-running" {
            let _ = writeln!(
                out,
                "  the file on disk differs: {} (the daemon reads it at start-up)",
                job.file_differs.join(", ")
            );
        }
        if job.runs.is_empty() {
            let _ = writeln!(out, "  no runs yet");
            continue;
        }
        let header = [
            "RUN", "TRIGGER", "STARTED", "DURATION", "OUTCOME", "COUNTS", "ERROR",
        ]
        .map(str::to_string);
        let rows: Vec<[String; 7]> = job
            .runs
            .iter()
            .map(|run| {
                [
                    run.id.to_string(),
                    run.trigger.clone(),
                    run.started_at.clone(),
                    run.duration_ms
                        .map_or("-".to_string(), |ms| format_duration_ms(ms.max(0) as u128)),
                    run.outcome.clone(),
                    format_counts(&run.counts),
                    run.error
                        .as_deref()
                        .map_or(String::new(), |error| error.replace('\n', " ")),
                ]
            })
            .collect();
        write_table(&mut out, &header, &rows);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "queues");
    let _ = writeln!(
        out,
        "  events        {}",
        or_none(&format_counts(&report.queues.events))
    );
    let _ = writeln!(
        out,
        "  tags by scan  {}",
        or_none(&format_counts(&report.queues.tags_by_scan))
    );
    let _ = writeln!(out, "  repositories  {}", report.queues.repositories);
    let _ = writeln!(out, "  tags          {}", report.queues.tags);
    if !report.queues.vulnerabilities.is_empty() {
        let _ = writeln!(
            out,
            "  vulns         {}",
            severity_counts(&report.queues.vulnerabilities)
        );
    }
    if !report.scanners.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "scanners");
        let header = [
            "SCANNER",
            "ENABLED",
            "REPORTS",
            "FAILING",
            "LAST REPORT",
            "LAST ERROR",
        ]
        .map(str::to_string);
        let rows: Vec<[String; 6]> = report
            .scanners
            .iter()
            .map(|scanner| {
                [
                    scanner.scanner.clone(),
                    if scanner.enabled { "yes" } else { "no" }.to_string(),
                    scanner.reports.to_string(),
                    if scanner.failed > 0 {
                        format!("{} ({} for good)", scanner.failing, scanner.failed)
                    } else {
                        scanner.failing.to_string()
                    },
                    scanner.last_report_at.clone().unwrap_or("-".to_string()),
                    match (&scanner.last_error_at, &scanner.last_error) {
                        (Some(at), Some(error)) => format!("{at} {}", error.replace('\n', " ")),
                        _ => String::new(),
                    },
                ]
            })
            .collect();
        write_table(&mut out, &header, &rows);
    }
    if !report.failed_events.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "failed events (latest {}; `--once JOB --retry-failed` retries them)",
            report.failed_events.len()
        );
        let header = [
            "EVENT",
            "ACTION",
            "REPOSITORY",
            "ATTEMPTS",
            "FAILED",
            "ERROR",
        ]
        .map(str::to_string);
        let rows: Vec<[String; 6]> = report
            .failed_events
            .iter()
            .map(|event| {
                [
                    event.event_id.clone(),
                    event.action.clone(),
                    event.repository.clone(),
                    event.attempts.to_string(),
                    event.failed_at.clone(),
                    event.error.replace('\n', " "),
                ]
            })
            .collect();
        write_table(&mut out, &header, &rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_job_set_is_shown_with_what_the_file_changed() {
        let text = "[registry]\nurl = \"http://r\"\n\
            [jobs.ev]\nhandler = \"events\"\nschedule = \"*/5 * * * * *\"\n\
            [jobs.sync]\nhandler = \"sync\"\nschedule = \"*/20 * * * * *\"\n\
            [jobs.new]\nhandler = \"security\"\nschedule = \"0 0 * * * *\"\nenabled = false\n";
        let config = crate::config::parse(text, Path::new("schedules.toml")).unwrap();
        let job =
            |name: &str, handler: &str, schedule: &str, finished: bool| crate::store::DaemonJob {
                name: name.into(),
                handler: handler.into(),
                schedule: schedule.into(),
                timezone: "UTC".into(),
                enabled: true,
                finished_at: finished.then_some(1_764_477_540_000),
                finished_reason: finished.then(|| "done".to_string()),
            };
        let set = DaemonJobSet {
            claimant: "web1:1:a".into(),
            config: "schedules.toml".into(),
            started_at: 0,
            jobs: vec![
                job("ev", "events", "*/2 * * * * *", false),
                job("sync", "sync", "*/20 * * * * *", true),
                job("gone", "events", "* * * * * *", false),
            ],
        };
        let shown: Vec<(String, String, bool, String, Vec<String>)> =
            job_statuses(&config, Some(&set))
                .into_iter()
                .map(|job| {
                    (
                        job.name,
                        job.state,
                        job.enabled,
                        job.schedule,
                        job.file_differs,
                    )
                })
                .collect();
        assert_eq!(
            shown,
            [
                (
                    "ev".into(),
                    "enabled".into(),
                    true,
                    "*/2 * * * * *".into(),
                    vec!["schedule \"*/5 * * * * *\"".to_string()]
                ),
                (
                    "sync".into(),
                    "finished".into(),
                    false,
                    "*/20 * * * * *".into(),
                    vec![]
                ),
                (
                    "gone".into(),
                    "enabled".into(),
                    true,
                    "* * * * * *".into(),
                    vec!["not in the file".to_string()]
                ),
                (
                    "new".into(),
                    "not-running".into(),
                    false,
                    "0 0 * * * *".into(),
                    vec!["only in the file".to_string()]
                ),
            ]
        );
        let from_file: Vec<String> = job_statuses(&config, None)
            .into_iter()
            .map(|job| job.state)
            .collect();
        assert_eq!(from_file, ["enabled", "enabled", "disabled"]);
    }

    #[test]
    fn status_table_lays_out_runs_and_queues() {
        let report = StatusReport {
            config: "schedules.toml".into(),
            database: "sqlite://regkeeper.db".into(),
            daemon: Some(DaemonStatus {
                claimant: "web1:4242:0badf00d".into(),
                config: "/etc/regkeeper/schedules.toml".into(),
                started_at: "2025-11-30T04:30:00.000Z".into(),
            }),
            jobs: vec![
                JobStatus {
                    name: "ev".into(),
                    handler: "events".into(),
                    enabled: true,
                    state: "enabled".into(),
                    finished_at: None,
                    finished_reason: None,
                    file_differs: vec!["schedule \"*/5 * * * * *\"".into()],
                    schedule: "*/2 * * * * *".into(),
                    timezone: "UTC".into(),
                    runs: vec![
                        RunStatus::from(RunRecord {
                            id: 12,
                            job: "ev".into(),
                            handler: "events".into(),
                            trigger: "schedule".into(),
                            started_at: 1_764_477_600_000,
                            finished_at: Some(1_764_477_600_250),
                            outcome: Some(RunOutcome::Ok),
                            counts: BTreeMap::from([("applied".to_string(), 2)]),
                            error: None,
                            claimant: None,
                            heartbeat_at: None,
                        }),
                        RunStatus::from(RunRecord {
                            id: 11,
                            job: "ev".into(),
                            handler: "events".into(),
                            trigger: "once".into(),
                            started_at: 1_764_477_500_000,
                            finished_at: Some(1_764_477_501_000),
                            outcome: Some(RunOutcome::Failed),
                            counts: BTreeMap::new(),
                            error: Some("claiming events: database is locked".into()),
                            claimant: None,
                            heartbeat_at: None,
                        }),
                        RunStatus::from(RunRecord {
                            id: 13,
                            job: "ev".into(),
                            handler: "events".into(),
                            trigger: "wake".into(),
                            started_at: 1_764_477_602_000,
                            finished_at: None,
                            outcome: None,
                            counts: BTreeMap::new(),
                            error: None,
                            claimant: None,
                            heartbeat_at: None,
                        }),
                    ],
                },
                JobStatus {
                    name: "sync".into(),
                    handler: "sync".into(),
                    enabled: false,
                    state: "finished".into(),
                    finished_at: Some("2025-11-30T04:39:00.000Z".into()),
                    finished_reason: Some(
                        "strategy initial: the database holds repositories".into(),
                    ),
                    file_differs: vec![],
                    schedule: "*/20 * * * * *".into(),
                    timezone: "UTC".into(),
                    runs: vec![],
                },
            ],
            queues: QueueStatus {
                events: BTreeMap::from([("done".to_string(), 5), ("fresh".to_string(), 1)]),
                tags_by_scan: BTreeMap::new(),
                repositories: 2,
                tags: 3,
                vulnerabilities: BTreeMap::new(),
            },
            failed_events: vec![FailedEventStatus {
                event_id: "9f1c".into(),
                action: "push".into(),
                repository: "ns/app".into(),
                attempts: 10,
                failed_at: "2025-11-30T04:41:00.000Z".into(),
                error: "gave up after 10 attempts: fetching manifest".into(),
            }],
            scanners: vec![],
        };
        assert_eq!(
            status_table(&report),
            "database sqlite://regkeeper.db
daemon web1:4242:0badf00d started 2025-11-30T04:30:00.000Z with /etc/regkeeper/schedules.toml

job ev (events, enabled, \"*/2 * * * * *\" UTC)
  the file on disk differs: schedule \"*/5 * * * * *\" (the daemon reads it at start-up)
  RUN  TRIGGER   STARTED                   DURATION  OUTCOME  COUNTS     ERROR
  12   schedule  2025-11-30T04:40:00.000Z  0.250s    ok       applied=2
  11   once      2025-11-30T04:38:20.000Z  1.000s    failed              claiming events: database is locked
  13   wake      2025-11-30T04:40:02.000Z  -         running

job sync (sync, done for good, \"*/20 * * * * *\" UTC)
  done for good 2025-11-30T04:39:00.000Z: strategy initial: the database holds repositories
  no runs yet

queues
  events        done=5 fresh=1
  tags by scan  none
  repositories  2
  tags          3

failed events (latest 1; `--once JOB --retry-failed` retries them)
  EVENT  ACTION  REPOSITORY  ATTEMPTS  FAILED                    ERROR
  9f1c   push    ns/app      10        2025-11-30T04:41:00.000Z  gave up after 10 attempts: fetching manifest
"
        );
    }
}
