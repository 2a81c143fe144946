//! The command line: `regkeeper [--config FILE]` runs the daemon,
//! `--once JOB` runs one job now, `check` validates the configuration and
//! shows fire times, `status` shows recent runs and queue depths, `tags`
//! lists the tags the database holds. Parses
//! arguments with clap, sets up env_logger, dispatches, and turns the result
//! into an exit code. Owns no business logic: results go to stdout,
//! diagnostics to stderr.
//!
//! To add a subcommand: a variant of [`Command`] with its own `Args`
//! struct, and one `fn` that returns `Result<ExitCode, Failure>`.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::{Config, ConfigError, JobConfig};
use crate::jobs::{Resources, RunOptions, Trigger};
use crate::store::{QueueCounts, RunOutcome, RunRecord, Store, TagRecord};

/// Exit code for a run that failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// Keeps a SQL database in step with a Docker Registry v2 / OCI distribution
/// registry. Without a subcommand, runs the daemon: the notification intake
/// and the jobs of schedules.toml on their schedules.
#[derive(Debug, Parser)]
#[command(name = "regkeeper", version)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "REGKEEPER_CONFIG",
        default_value = "schedules.toml"
    )]
    pub config: PathBuf,

    /// Run this one job now in the foreground, then exit (0 ok, 1 the run
    /// failed, 2 usage or configuration error). Ignores the job's schedule
    /// and `enabled`.
    #[arg(long, value_name = "JOB")]
    pub once: Option<String>,

    #[command(flatten)]
    pub run_options: OnceOptions,

    /// What to do instead of running the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of `--once` runs.
#[derive(Debug, Args)]
pub struct OnceOptions {
    /// Show what the run would do, write nothing (sync).
    #[arg(long, requires = "once")]
    pub dry_run: bool,
    /// Override safety valves such as sync's max_delete_fraction.
    #[arg(long, requires = "once")]
    pub force: bool,
    /// Take items that failed for good again (events, security).
    #[arg(long, requires = "once")]
    pub retry_failed: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and show each job's next fire times.
    Check(CheckArgs),
    /// Show each job's last runs and the queue depths.
    Status(StatusArgs),
    /// List the tags the database holds, with digests and sizes.
    Tags(TagsArgs),
    /// List one image's vulnerabilities, worst first.
    Vulns(VulnsArgs),
}

/// `regkeeper vulns`.
#[derive(Debug, Args)]
pub struct VulnsArgs {
    /// The image, e.g. `ns/app:1.0`.
    #[arg(value_name = "REPOSITORY:TAG")]
    pub image: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `regkeeper check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Compute fire times after this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    pub after: Option<DateTime<Utc>>,
    /// How many fire times to show per job.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub fire_times: usize,
}

/// `regkeeper status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Runs shown per job.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub runs: usize,
}

/// `regkeeper tags`.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Only this repository (full name, e.g. `ns/app`).
    #[arg(value_name = "REPOSITORY")]
    pub repository: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why a command did not succeed, with its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Usage or configuration error: exit 2.
    Usage(anyhow::Error),
    /// Anything else (a failed run, an unreachable database): exit 1.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    /// A [`ConfigError`] anywhere in the chain is a usage error.
    fn from(error: anyhow::Error) -> Failure {
        if error
            .chain()
            .any(|cause| cause.downcast_ref::<ConfigError>().is_some())
        {
            Failure::Usage(error)
        } else {
            Failure::Failed(error)
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help and version to stdout with exit 0, and usage
        // errors to stderr with exit 2.
        Err(error) => error.exit(),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(Failure::Usage(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Failed(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Runs what the command line asks for.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match (&cli.command, &cli.once) {
        (Some(_), Some(_)) => Err(Failure::Usage(anyhow::anyhow!(
            "--once cannot be combined with a subcommand"
        ))),
        (Some(Command::Check(args)), _) => check(&cli.config, args),
        (Some(Command::Status(args)), _) => status(&cli.config, args),
        (Some(Command::Tags(args)), _) => tags(&cli.config, args),
        (Some(Command::Vulns(args)), _) => vulns(&cli.config, args),
        (None, Some(job_name)) => once(&cli.config, job_name, &cli.run_options),
        (None, None) => {
            let config = load_config(&cli.config)?;
            crate::daemon::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes results to stdout. A closed pipe (`regkeeper status | head`) is
/// not an error.
fn print_out(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Failed(
            anyhow::Error::new(error).context("writing to stdout"),
        )),
        _ => Ok(()),
    }
}

/// Loads the configuration; every failure is a configuration error.
fn load_config(path: &Path) -> Result<Config, Failure> {
    crate::config::load(path).map_err(Failure::Usage)
}

/// Opens the database the configuration names, waiting for it as the
/// daemon does.
fn open_store(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    crate::store::open(&config.database, config.daemon.database_wait)
        .with_context(|| {
            format!(
                "opening the database {}",
                crate::store::describe(&config.database)
            )
        })
        .map_err(Failure::from)
}

/// `--once JOB`.
fn once(config_path: &Path, job_name: &str, options: &OnceOptions) -> Result<ExitCode, Failure> {
    let config = Arc::new(load_config(config_path)?);
    let job = find_job(&config, job_name)?.clone();
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
    let report = crate::scheduler::run_once(&job, &resources, Trigger::Once, run_options)?;
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

/// `check`: the configuration is valid; each job with its next fire times.
fn check(config_path: &Path, args: &CheckArgs) -> Result<ExitCode, Failure> {
    let config = load_config(config_path)?;
    let after = args.after.unwrap_or_else(Utc::now);
    print_out(&check_report(&config, after, args.fire_times))?;
    Ok(ExitCode::SUCCESS)
}

/// The text `check` prints.
pub fn check_report(config: &Config, after: DateTime<Utc>, fire_times: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: ok, {} job(s)",
        config.path.display(),
        config.jobs.len()
    );
    for job in &config.jobs {
        let _ = writeln!(out);
        let _ = writeln!(out, "job {}", job.name);
        let _ = writeln!(out, "  handler   {}", job.handler.name());
        let _ = writeln!(
            out,
            "  enabled   {}",
            if job.enabled {
                "yes"
            } else {
                "no (runs only with --once)"
            }
        );
        let _ = writeln!(out, "  schedule  {}", job.schedule.expression);
        let _ = writeln!(out, "  timezone  {}", job.schedule.timezone.name());
        let mut next = Vec::new();
        let mut from = after;
        while next.len() < fire_times {
            let Some(fire) = crate::scheduler::next_fire(&job.schedule, from) else {
                break;
            };
            next.push(fire);
            from = fire;
        }
        if next.is_empty() {
            let _ = writeln!(out, "  next      never");
        }
        for (index, fire) in next.iter().enumerate() {
            let label = if index == 0 { "next" } else { "" };
            let local = fire.with_timezone(&job.schedule.timezone);
            let _ = writeln!(
                out,
                "  {label:<8}  {}",
                local.format("%Y-%m-%d %H:%M:%S %:z")
            );
        }
    }
    for scanner in &config.security {
        let _ = writeln!(out);
        let _ = writeln!(out, "scanner {}", scanner.kind.name());
        let _ = writeln!(
            out,
            "  enabled   {}",
            if scanner.enabled { "yes" } else { "no" }
        );
        if let Some(server) = &scanner.server {
            let _ = writeln!(out, "  server    {server}");
        }
        if let Some(file) = &scanner.file {
            let _ = writeln!(out, "  file      {}", file.display());
        }
    }
    out
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The configuration file.
    pub config: String,
    /// The database, without secrets.
    pub database: String,
    /// Every configured job with its last runs, in file order.
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

/// One job in `status`.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Handler name.
    pub handler: String,
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// The cron expression.
    pub schedule: String,
    /// IANA time zone.
    pub timezone: String,
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

/// `status`: recent runs and queue depths, from the database.
fn status(config_path: &Path, args: &StatusArgs) -> Result<ExitCode, Failure> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    // Runs whose process died show as such: they are recorded abandoned
    // here once their heartbeat has expired, as a daemon would.
    crate::scheduler::record_abandoned_runs(store.as_ref(), None, config.daemon.abandon_after);
    let mut jobs = Vec::new();
    for job in &config.jobs {
        let runs = store
            .recent_runs(&job.name, args.runs)
            .with_context(|| format!("reading the runs of job {}", job.name))?;
        jobs.push(JobStatus {
            name: job.name.clone(),
            handler: job.handler.name().to_string(),
            enabled: job.enabled,
            schedule: job.schedule.expression.clone(),
            timezone: job.schedule.timezone.name().to_string(),
            runs: runs.into_iter().map(RunStatus::from).collect(),
        });
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
    for job in &report.jobs {
        let _ = writeln!(out);
        let enabled = if job.enabled { "enabled" } else { "disabled" };
        let _ = writeln!(
            out,
            "job {} ({}, {enabled}, \"{}\" {})",
            job.name, job.handler, job.schedule, job.timezone
        );
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

/// `Critical=1 High=2 ...`, worst first.
fn severity_counts(counts: &BTreeMap<String, i64>) -> String {
    let mut words: Vec<&String> = counts.keys().collect();
    words.sort_by_key(|word| std::cmp::Reverse(severity_rank(word)));
    words
        .into_iter()
        .map(|word| format!("{word}={}", counts[word]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn severity_rank(word: &str) -> usize {
    crate::store::scans::SEVERITIES
        .iter()
        .position(|known| *known == word)
        .unwrap_or(0)
}

/// What `vulns --json` prints.
#[derive(Debug, Serialize)]
pub struct VulnsReport {
    /// Full repository name.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// `none`, `working`, `done` or `failed`.
    pub scan: String,
    /// Failed attempts since the last successful scan.
    pub attempts: i64,
    /// The last scan failure.
    pub last_error: Option<String>,
    /// When the results were stored (RFC 3339).
    pub scanned_at: Option<String>,
    /// Each scanner's report on the digest: the enabled scanners in file
    /// order, then any no longer enabled whose results are still stored.
    pub reports: Vec<ReportStatus>,
    /// Vulnerabilities, worst first.
    pub vulnerabilities: Vec<VulnStatus>,
}

/// One scanner's report in `vulns`.
#[derive(Debug, Serialize)]
pub struct ReportStatus {
    /// The scanner.
    pub scanner: String,
    /// `current`; `stale` (its latest attempt failed: the results shown
    /// are from `scanned_at`); `none` (no report yet); `failed` (failed for
    /// good; any results shown are stale); `not enabled`.
    pub report: String,
    /// When the report shown was taken (RFC 3339).
    pub scanned_at: Option<String>,
    /// Failed attempts since then.
    pub attempts: i64,
    /// The latest attempt's error, when it failed.
    pub last_error: Option<String>,
    /// When the latest attempt failed (RFC 3339).
    pub failed_at: Option<String>,
    /// No new try before this (RFC 3339).
    pub retry_after: Option<String>,
}

/// The reports of `vulns`: every enabled scanner, then the rest stored.
fn report_statuses(enabled: &[&str], reports: Vec<crate::store::ScanReport>) -> Vec<ReportStatus> {
    let mut statuses: Vec<ReportStatus> = enabled
        .iter()
        .map(|scanner| ReportStatus {
            scanner: scanner.to_string(),
            report: "none".to_string(),
            scanned_at: None,
            attempts: 0,
            last_error: None,
            failed_at: None,
            retry_after: None,
        })
        .collect();
    for report in reports {
        let word = if !enabled.contains(&report.scanner.as_str()) {
            "not enabled"
        } else if report.failed {
            "failed"
        } else if report.current() {
            "current"
        } else if report.scanned_at.is_some() {
            "stale"
        } else {
            "none"
        };
        let status = ReportStatus {
            report: word.to_string(),
            scanned_at: report.scanned_at.map(format_ms),
            attempts: report.attempts,
            failed_at: report
                .last_error
                .as_ref()
                .map(|_| format_ms(report.attempted_at)),
            retry_after: report
                .not_before
                .filter(|_| report.last_error.is_some() && !report.failed)
                .map(format_ms),
            last_error: report.last_error,
            scanner: report.scanner,
        };
        match statuses
            .iter_mut()
            .find(|shown| shown.scanner == status.scanner)
        {
            Some(shown) => *shown = status,
            None => statuses.push(status),
        }
    }
    statuses
}

/// One vulnerability in `vulns`.
#[derive(Debug, Serialize)]
pub struct VulnStatus {
    /// e.g. `CVE-2016-6301`.
    pub name: String,
    /// The scanner that reported it.
    pub scanner: String,
    /// Normalised severity.
    pub severity: String,
    /// The scanner's own word.
    pub severity_raw: String,
    /// Link(s), space-separated.
    pub link: String,
    /// Fixed-in version.
    pub fixed_by: String,
    /// Description.
    pub description: String,
    /// Other details the scanner gave.
    pub metadata: serde_json::Value,
}

/// Splits `REPOSITORY:TAG` at the last `:` (a tag has no `/`).
pub fn split_image(image: &str) -> Option<(&str, &str)> {
    let (repository, tag) = image.rsplit_once(':')?;
    (!repository.is_empty() && !tag.is_empty() && !tag.contains('/')).then_some((repository, tag))
}

/// `vulns`: one image's scan state and vulnerabilities.
fn vulns(config_path: &Path, args: &VulnsArgs) -> Result<ExitCode, Failure> {
    let Some((repository, tag)) = split_image(&args.image) else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "expected REPOSITORY:TAG, e.g. ns/app:1.0, not {:?}",
            args.image
        )));
    };
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let hostname = crate::jobs::registry_hostname(&config.registry.url);
    let registry_id = store
        .ensure_registry(&hostname)
        .with_context(|| format!("finding the registry {hostname}"))?;
    let Some(image) = store.image_vulnerabilities(registry_id, repository, tag)? else {
        return Err(Failure::Failed(anyhow::anyhow!(
            "no tag {repository}:{tag} in the database"
        )));
    };
    let report = VulnsReport {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: image.digest,
        scan: scan_state_word(image.state.scanned).to_string(),
        attempts: image.state.attempts,
        last_error: image.state.last_error,
        scanned_at: image.state.scanned_at.map(format_ms),
        reports: report_statuses(
            &config
                .security
                .iter()
                .filter(|scanner| scanner.enabled)
                .map(|scanner| scanner.kind.name())
                .collect::<Vec<_>>(),
            image.reports,
        ),
        vulnerabilities: image
            .vulnerabilities
            .into_iter()
            .map(|v| VulnStatus {
                metadata: v
                    .metadata
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok())
                    .unwrap_or(serde_json::Value::Null),
                name: v.name,
                scanner: v.scanner,
                severity: v.severity,
                severity_raw: v.severity_raw,
                link: v.link,
                fixed_by: v.fixed_by,
                description: v.description,
            })
            .collect(),
    };
    if args.json {
        let json =
            serde_json::to_string_pretty(&report).context("writing the vulnerabilities as JSON")?;
        print_out(&format!("{json}\n"))?;
    } else {
        print_out(&vulns_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable `vulns`: a line on the scan, then one line per
/// vulnerability (the first link only; `--json` has everything).
pub fn vulns_table(report: &VulnsReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = write!(
        out,
        "{}:{} {} scan {}",
        report.repository,
        report.tag,
        short_digest(&report.digest),
        report.scan
    );
    if let Some(at) = &report.scanned_at {
        let _ = write!(out, ", results of {at}");
    }
    if report.attempts > 0 {
        let _ = write!(out, ", {} failed attempts", report.attempts);
    }
    let _ = writeln!(out, ": {} vulnerabilities", report.vulnerabilities.len());
    if report.reports.is_empty() {
        if let Some(error) = &report.last_error {
            let _ = writeln!(out, "last error: {error}");
        }
    } else {
        // Per scanner: its report's age, and why it is stale or missing.
        let header = ["SCANNER", "REPORT", "TAKEN", "ATTEMPTS", "LAST ERROR"].map(str::to_string);
        let rows: Vec<[String; 5]> = report
            .reports
            .iter()
            .map(|shown| {
                let error = match (&shown.failed_at, &shown.last_error) {
                    (Some(at), Some(error)) => {
                        let retry = shown
                            .retry_after
                            .as_ref()
                            .map_or(String::new(), |retry| format!(" (retry after {retry})"));
                        format!("{at} {}{retry}", error.replace('\n', " "))
                    }
                    _ => String::new(),
                };
                [
                    shown.scanner.clone(),
                    shown.report.clone(),
                    shown.scanned_at.clone().unwrap_or("-".to_string()),
                    shown.attempts.to_string(),
                    error,
                ]
            })
            .collect();
        write_table(&mut out, &header, &rows);
    }
    if report.vulnerabilities.is_empty() {
        return out;
    }
    let header = ["SEVERITY", "NAME", "SCANNER", "FIXED BY", "LINK"].map(str::to_string);
    let rows: Vec<[String; 5]> = report
        .vulnerabilities
        .iter()
        .map(|v| {
            [
                v.severity.clone(),
                v.name.clone(),
                v.scanner.clone(),
                if v.fixed_by.is_empty() {
                    "-".to_string()
                } else {
                    v.fixed_by.clone()
                },
                v.link.split_whitespace().next().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    write_table(&mut out, &header, &rows);
    out
}

/// One tag in `tags --json`.
#[derive(Debug, Serialize)]
pub struct TagStatus {
    /// Full repository name.
    pub repository: String,
    /// Tag name.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// Config digest without `sha256:`; empty for an index.
    pub image_id: String,
    /// Manifest media type.
    pub media_type: String,
    /// Size in bytes, when known.
    pub size: Option<i64>,
    /// Scan state: `none`, `working`, `done` or `failed`.
    pub scanned: String,
    /// Last pull, RFC 3339 UTC.
    pub pulled_at: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl From<TagRecord> for TagStatus {
    fn from(tag: TagRecord) -> TagStatus {
        TagStatus {
            scanned: scan_state_word(tag.scanned).to_string(),
            pulled_at: tag.pulled_at.map(format_ms),
            created_at: format_ms(tag.created_at),
            updated_at: format_ms(tag.updated_at),
            repository: tag.repository,
            tag: tag.tag,
            digest: tag.digest,
            image_id: tag.image_id,
            media_type: tag.media_type,
            size: tag.size,
        }
    }
}

/// `tags`: the tags of the configured registry as the database holds them.
fn tags(config_path: &Path, args: &TagsArgs) -> Result<ExitCode, Failure> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let hostname = crate::jobs::registry_hostname(&config.registry.url);
    let registry_id = store
        .ensure_registry(&hostname)
        .with_context(|| format!("finding the registry {hostname}"))?;
    let tags: Vec<TagStatus> = store
        .tags(registry_id, args.repository.as_deref())?
        .into_iter()
        .map(TagStatus::from)
        .collect();
    if args.json {
        let json = serde_json::to_string_pretty(&tags).context("writing the tags as JSON")?;
        print_out(&format!("{json}\n"))?;
    } else {
        print_out(&tags_table(&tags))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable `tags`: one line per tag, digests shortened to 12
/// hex digits (`--json` has them whole).
pub fn tags_table(tags: &[TagStatus]) -> String {
    if tags.is_empty() {
        return "no tags\n".to_string();
    }
    let header = ["REPOSITORY", "TAG", "DIGEST", "SIZE", "TYPE", "SCAN"].map(str::to_string);
    let rows: Vec<[String; 6]> = tags
        .iter()
        .map(|tag| {
            [
                tag.repository.clone(),
                tag.tag.clone(),
                short_digest(&tag.digest),
                tag.size.map_or("-".to_string(), format_size),
                media_type_word(&tag.media_type).to_string(),
                tag.scanned.clone(),
            ]
        })
        .collect();
    let mut out = String::new();
    write_table(&mut out, &header, &rows);
    out
}

/// `sha256:` and the first 12 hex digits.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.to_string(),
    }
}

/// `812 B`, `1.5 KiB`, `23.4 MiB`.
fn format_size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A short name for a manifest media type; the type itself when unknown.
fn media_type_word(media_type: &str) -> &str {
    match media_type {
        "application/vnd.oci.image.manifest.v1+json" => "oci",
        "application/vnd.oci.image.index.v1+json" => "oci-index",
        "application/vnd.docker.distribution.manifest.v2+json" => "docker-v2",
        "application/vnd.docker.distribution.manifest.list.v2+json" => "docker-list",
        "application/vnd.docker.distribution.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v1+prettyjws" => "docker-v1",
        "" => "-",
        other => other,
    }
}

/// `tags.scanned` as a word, as `status` counts them.
fn scan_state_word(state: i64) -> &'static str {
    match state {
        0 => "none",
        1 => "working",
        2 => "done",
        3 => "failed",
        _ => "unknown",
    }
}

/// Writes rows with columns padded to their widest cell, indented by two
/// spaces; the last column is not padded.
fn write_table<const N: usize>(out: &mut String, header: &[String; N], rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::from(" ");
        for (index, cell) in row.iter().enumerate() {
            line.push(' ');
            if index + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$} ", width = widths[index]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "none"
    } else {
        text
    }
}

/// `a=1 b=2`.
fn format_counts(counts: &BTreeMap<String, i64>) -> String {
    counts
        .iter()
        .map(|(name, count)| format!("{name}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// `0.012s`, `3.400s`, `75.0s`.
fn format_duration_ms(ms: u128) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

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

    #[test]
    fn check_report_shows_fire_times_in_the_job_time_zone() {
        let text = "[registry]\nurl = \"http://r\"\n\
            [jobs.ev]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n\
            [jobs.nightly]\nhandler = \"sync\"\nschedule = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nenabled = false\n\
            [jobs.past]\nhandler = \"sync\"\nschedule = \"0 0 0 1 1 * 2020\"\n\
            [security.fixture]\nfile = \"f.json\"\n";
        let config = crate::config::parse(text, Path::new("schedules.toml")).unwrap();
        // The night the clocks go forward in Berlin: 02:30 does not exist.
        let after = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        assert_eq!(
            check_report(&config, after, 3),
            "schedules.toml: ok, 3 job(s)

job ev
  handler   events
  enabled   yes
  schedule  */2 * * * * *
  timezone  UTC
  next      2026-03-28 12:00:02 +00:00
            2026-03-28 12:00:04 +00:00
            2026-03-28 12:00:06 +00:00

job nightly
  handler   sync
  enabled   no (runs only with --once)
  schedule  0 30 2 * * *
  timezone  Europe/Berlin
  next      2026-03-29 03:00:00 +02:00
            2026-03-30 02:30:00 +02:00
            2026-03-31 02:30:00 +02:00

job past
  handler   sync
  enabled   yes
  schedule  0 0 0 1 1 * 2020
  timezone  UTC
  next      never

scanner fixture
  enabled   yes
  file      f.json
"
        );
    }

    #[test]
    fn status_table_lays_out_runs_and_queues() {
        let report = StatusReport {
            config: "schedules.toml".into(),
            database: "sqlite://regkeeper.db".into(),
            jobs: vec![
                JobStatus {
                    name: "ev".into(),
                    handler: "events".into(),
                    enabled: true,
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

job ev (events, enabled, \"*/2 * * * * *\" UTC)
  RUN  TRIGGER   STARTED                   DURATION  OUTCOME  COUNTS     ERROR
  12   schedule  2025-11-30T04:40:00.000Z  0.250s    ok       applied=2
  11   once      2025-11-30T04:38:20.000Z  1.000s    failed              claiming events: database is locked
  13   wake      2025-11-30T04:40:02.000Z  -         running

job sync (sync, disabled, \"*/20 * * * * *\" UTC)
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

    #[test]
    fn config_errors_in_the_chain_are_usage_errors() {
        let usage =
            anyhow::Error::new(ConfigError::new("job x: handler missing")).context("starting");
        assert!(matches!(Failure::from(usage), Failure::Usage(_)));
        assert!(matches!(
            Failure::from(anyhow::anyhow!("database down")),
            Failure::Failed(_)
        ));
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "regkeeper",
            "--once",
            "ev",
            "--dry-run",
            "--config",
            "x.toml",
        ])
        .unwrap();
        assert_eq!(cli.once.as_deref(), Some("ev"));
        assert!(cli.run_options.dry_run);
        assert_eq!(cli.config, PathBuf::from("x.toml"));
        let cli = Cli::try_parse_from(["regkeeper", "check", "--config", "y.toml"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Check(_))));
        assert_eq!(cli.config, PathBuf::from("y.toml"));
        let cli = Cli::try_parse_from(["regkeeper", "-c", "z.toml", "status", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Status(StatusArgs {
                json: true,
                runs: 5
            }))
        ));
        assert!(Cli::try_parse_from(["regkeeper", "--dry-run"]).is_err());
        let both = Cli::try_parse_from(["regkeeper", "--once", "ev", "check"]).unwrap();
        assert!(matches!(run(both), Err(Failure::Usage(_))));
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1_905), "1.9 KiB");
        assert_eq!(format_size(3_500_000), "3.3 MiB");
        assert_eq!(format_size(5 << 40), "5.0 TiB");
        assert_eq!(format_size(5 << 50), "5120.0 TiB");
    }

    #[test]
    fn digests_shorten_to_twelve_hex_digits() {
        assert_eq!(
            short_digest("sha256:8ffca51699b92830196fe8404d4d509ea345ba3cde251383a6c824630893f3f3"),
            "sha256:8ffca51699b9"
        );
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
        assert_eq!(short_digest("odd"), "odd");
    }

    #[test]
    fn images_split_at_the_last_colon() {
        assert_eq!(split_image("ns/app:1.0"), Some(("ns/app", "1.0")));
        assert_eq!(split_image("a/b/c:latest"), Some(("a/b/c", "latest")));
        assert_eq!(split_image("ns/app"), None);
        assert_eq!(split_image("ns/app:"), None);
        assert_eq!(split_image(":1"), None);
    }

    #[test]
    fn vulns_table_shows_the_scan_then_worst_first() {
        let vuln = |name: &str, severity: &str, fixed_by: &str, link: &str| VulnStatus {
            name: name.into(),
            scanner: "clair".into(),
            severity: severity.into(),
            severity_raw: severity.into(),
            link: link.into(),
            fixed_by: fixed_by.into(),
            description: String::new(),
            metadata: serde_json::Value::Null,
        };
        let report = VulnsReport {
            repository: "ns/app".into(),
            tag: "1.0".into(),
            digest: "sha256:4f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
                .into(),
            scan: "done".into(),
            attempts: 0,
            last_error: None,
            scanned_at: Some("2024-05-01T10:00:00.000Z".into()),
            reports: vec![],
            vulnerabilities: vec![
                vuln(
                    "CVE-2016-6301",
                    "High",
                    "1.24.2-r12",
                    "https://cve.example/a https://b.example/a",
                ),
                vuln("CVE-2016-9840", "Low", "", ""),
            ],
        };
        assert_eq!(
            vulns_table(&report),
            "ns/app:1.0 sha256:4f1c2a3b4c5d scan done, results of 2024-05-01T10:00:00.000Z: 2 vulnerabilities
  SEVERITY  NAME           SCANNER  FIXED BY    LINK
  High      CVE-2016-6301  clair    1.24.2-r12  https://cve.example/a
  Low       CVE-2016-9840  clair    -           -
"
        );
        let failed = VulnsReport {
            scan: "failed".into(),
            attempts: 5,
            last_error: Some("scanner clair: timed out after 15m".into()),
            scanned_at: None,
            vulnerabilities: vec![],
            ..report
        };
        assert_eq!(
            vulns_table(&failed),
            "ns/app:1.0 sha256:4f1c2a3b4c5d scan failed, 5 failed attempts: 0 vulnerabilities
last error: scanner clair: timed out after 15m
"
        );
        let counts = BTreeMap::from([
            ("High".to_string(), 2),
            ("Critical".to_string(), 1),
            ("Low".to_string(), 0),
        ]);
        assert_eq!(severity_counts(&counts), "Critical=1 High=2 Low=0");
    }
}
