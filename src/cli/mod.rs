//! The command line: `regkeeper [--config FILE]` runs the daemon,
//! `--once JOB` runs one job now, `check` validates the configuration and
//! shows fire times, `status` shows recent runs and queue depths, `tags`
//! lists the tags the database holds, `vulns` shows one image's
//! vulnerabilities, `gc-log` the gc audit, `completions` and `man` print the shell completions and
//! the manual page generated from these definitions. This file holds the
//! clap definitions, [`main`] (parses the arguments, sets up logging on
//! stderr (`crate::logging`), calls [`run`] and turns the
//! result into an exit code), the dispatch, and what every subcommand
//! shares (loading the configuration, opening the store, writing to
//! stdout). Each subcommand has a file of its own with its report structs
//! and its table: `once.rs`, `check.rs`, `status.rs`, `tags.rs`, `vulns.rs`,
//! `gc_log.rs`, `completions.rs`, `man.rs`;
//! `format.rs` holds the table and formatting helpers they share. No
//! business logic lives here: the work is the scheduler's, the daemon's and
//! the store's. Results go to stdout, diagnostics to stderr.
//!
//! To add a subcommand: a variant of [`Command`] with its own `Args`
//! struct, and a file here with one `fn` that returns
//! `Result<ExitCode, Failure>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::store::Store;

mod check;
mod completions;
mod format;
mod gc_log;
mod man;
mod once;
mod status;
mod tags;
mod vulns;

pub use completions::completion_script;
pub use man::main_page;
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
    /// List what gc jobs deleted (and their dry runs would have), newest first.
    GcLog(GcLogArgs),
    /// Print the shell completion script for SHELL.
    Completions(CompletionsArgs),
    /// Print the manual page regkeeper(1) in roff, or write every page to a directory.
    Man(ManArgs),
}

/// `regkeeper completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `regkeeper man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write regkeeper.1 and a page per subcommand (regkeeper-check.1, ...)
    /// into this existing directory instead of printing regkeeper(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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

/// `regkeeper gc-log`.
#[derive(Debug, Args)]
pub struct GcLogArgs {
    /// Rows shown, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Leave out the decisions of dry runs.
    #[arg(long)]
    pub deleted_only: bool,
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
    if let Err(error) = crate::logging::init() {
        eprintln!("error: {error:#}");
        return ExitCode::from(EXIT_USAGE);
    }
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
        (Some(Command::Check(args)), _) => check::check(&cli.config, args),
        (Some(Command::Status(args)), _) => status::status(&cli.config, args),
        (Some(Command::Tags(args)), _) => tags::tags(&cli.config, args),
        (Some(Command::Vulns(args)), _) => vulns::vulns(&cli.config, args),
        (Some(Command::GcLog(args)), _) => gc_log::gc_log(&cli.config, args),
        (Some(Command::Completions(args)), _) => completions::completions(args),
        (Some(Command::Man(args)), _) => man::man(args),
        (None, Some(job_name)) => once::once(&cli.config, job_name, &cli.run_options),
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

/// Loads the configuration for a command that only reads the database:
/// registry and scanner secrets are not read.
fn load_config_for_reading(path: &Path) -> Result<Config, Failure> {
    crate::config::load_for_reading(path).map_err(Failure::Usage)
}

/// Opens the database the configuration names read-only, without
/// migrating it: a missing database or one that is not migrated fails
/// (exit 1) saying so.
fn open_store_read_only(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    crate::store::open_read_only(&config.database, config.daemon.database_wait)
        .with_context(|| {
            format!(
                "opening the database {} read-only",
                crate::store::describe(&config.database)
            )
        })
        .map_err(Failure::from)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
