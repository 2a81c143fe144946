//! Configuration: `raw.rs` mirrors schedules.toml with serde
//! (`deny_unknown_fields`, no logic); this module validates it once into
//! real types. [`load`] does the I/O, [`parse`] is pure. Errors name the
//! file, line and column, the job and the value. Loading never writes files.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use toml::Spanned;

pub mod raw;

use raw::{ByteSize, Ordered, RawConfig, RawJob, RawScanner};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `[database]`.
    pub database: Database,
    /// `[registry]`.
    pub registry: RegistryConfig,
    /// `[notifications]`.
    pub notifications: NotificationsConfig,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[jobs.NAME]`, in file order.
    pub jobs: Vec<JobConfig>,
    /// `[security.NAME]`: the vulnerability scanners, in file order.
    pub security: Vec<ScannerConfig>,
    /// Where secrets are read from (`*_file` keys).
    pub secret_files: SecretFiles,
}

/// The `*_file` keys of secrets, as written. [`parse`] only records them;
/// [`load`] reads each into its secret unless the environment set it.
#[derive(Debug, Clone, Default)]
pub struct SecretFiles {
    /// `[database] password_file`, into `Database::Postgres::password`.
    pub database_password: Option<PathBuf>,
    /// `[registry] password_file`, into `RegistryConfig::password`.
    pub registry_password: Option<PathBuf>,
    /// `[notifications] token_file`, into `NotificationsConfig::token`.
    pub notify_token: Option<PathBuf>,
}

impl Config {
    /// The job called `name`, if any.
    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|job| job.name == name)
    }
}

/// Where the database is.
#[derive(Clone)]
pub enum Database {
    /// `sqlite://PATH` (relative paths are relative to the working directory).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// `postgres://...`.
    Postgres {
        /// The URL without password.
        url: String,
        /// From REGKEEPER_DATABASE_PASSWORD, `password_file` or the URL;
        /// never logged.
        password: Option<String>,
        /// Connections in the pool.
        pool_size: u32,
    },
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Database::Postgres {
                url,
                password,
                pool_size,
            } => f
                .debug_struct("Postgres")
                // A `?password=` parameter stays in the url: hide it too.
                .field("url", &crate::store::postgres::redact_url(url))
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .field("pool_size", pool_size)
                .finish(),
        }
    }
}

/// `[registry]`.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:5000`.
    pub url: url::Url,
    /// User name for Basic or token auth.
    pub username: Option<String>,
    /// Password (from `password`, `password_file` or REGKEEPER_REGISTRY_PASSWORD); never logged.
    pub password: Option<String>,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (explicit opt-in).
    pub insecure_skip_tls_verify: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Size of the worker pool handlers use for fan-out.
    pub concurrency: usize,
    /// `n` for catalog pages (max 1000).
    pub catalog_page_size: u32,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url.as_str())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("catalog_page_size", &self.catalog_page_size)
            .finish()
    }
}

/// `[notifications]`: the intake.
#[derive(Clone)]
pub struct NotificationsConfig {
    /// Address to listen on; None disables the intake.
    pub listen: Option<std::net::SocketAddr>,
    /// The exact `Authorization` header value required; never logged.
    pub token: Option<String>,
    /// Allow a non-loopback `listen` without a token.
    pub allow_unauthenticated: bool,
    /// Largest accepted body.
    pub body_limit: usize,
}

impl std::fmt::Debug for NotificationsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationsConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// How long shutdown waits for runs in flight.
    pub grace_period: Duration,
    /// Runs kept per job in `job_runs`.
    pub keep_runs: usize,
    /// How long start-up waits for the database.
    pub database_wait: Duration,
    /// How often a run in progress renews its heartbeat in `job_runs`.
    pub heartbeat: Duration,
    /// How long a run may go without a heartbeat before whoever notices
    /// records it abandoned (at least [`MIN_HEARTBEATS_PER_EXPIRY`] heartbeats).
    pub abandon_after: Duration,
}

/// `abandon_after` is at least this many heartbeats, so that a heartbeat or
/// two delayed by a busy database never makes a live run look abandoned.
pub const MIN_HEARTBEATS_PER_EXPIRY: u32 = 3;

/// One `[jobs.NAME]` table.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The user's name for the job.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Disabled jobs are not scheduled but can still run with `--once`.
    pub enabled: bool,
    /// A run longer than this is marked timed out.
    pub timeout: Option<Duration>,
    /// Random delay up to this added to each scheduled run.
    pub jitter: Option<Duration>,
    /// The handler and its own options.
    pub handler: HandlerConfig,
}

/// A parsed cron schedule with seconds, in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as written.
    pub expression: String,
    /// The parsed expression.
    pub cron: croner::Cron,
    /// IANA time zone; UTC when absent.
    pub timezone: chrono_tz::Tz,
}

/// The handler of a job with its handler-specific keys.
#[derive(Debug, Clone)]
pub enum HandlerConfig {
    /// `events`.
    Events(EventsOptions),
    /// `sync`.
    Sync(SyncOptions),
    /// `security`.
    Security(SecurityOptions),
}

impl HandlerConfig {
    /// The handler's name as written in `handler = "..."`.
    pub fn name(&self) -> &'static str {
        match self {
            HandlerConfig::Events(_) => "events",
            HandlerConfig::Sync(_) => "sync",
            HandlerConfig::Security(_) => "security",
        }
    }
}

/// The handlers that exist, as `handler = "..."` names them.
pub const HANDLERS: [&str; 3] = ["events", "sync", "security"];

/// Keys of an `events` job.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsOptions {
    /// Attempts at one event before it is marked failed.
    pub max_attempts: u32,
    /// How long processed events are kept before they are deleted.
    pub retain_done: Duration,
    /// How long a claim on a batch of events lasts.
    pub lease: Duration,
    /// Events claimed per batch.
    pub batch_size: u32,
    /// Delay before the first retry of a failed event; doubles per attempt.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for EventsOptions {
    fn default() -> EventsOptions {
        EventsOptions {
            max_attempts: 10,
            retain_done: Duration::from_secs(7 * 24 * 3600),
            lease: Duration::from_secs(5 * 60),
            batch_size: 500,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10 * 60),
        }
    }
}

/// Sync strategies (Portus's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only while the database has no repositories; finishes for good.
    #[default]
    Initial,
    /// Once per daemon start; finishes for good.
    OnStart,
    /// Every tick, never deletes.
    Update,
    /// Every tick, deletes what the registry no longer has.
    UpdateDelete,
}

impl Strategy {
    /// Every strategy, in the order the docs list them.
    pub const ALL: [Strategy; 4] = [
        Strategy::Initial,
        Strategy::OnStart,
        Strategy::Update,
        Strategy::UpdateDelete,
    ];

    /// The name as written in `strategy = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Initial => "initial",
            Strategy::OnStart => "on-start",
            Strategy::Update => "update",
            Strategy::UpdateDelete => "update-delete",
        }
    }
}

/// Keys of a `sync` job.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    /// The strategy.
    pub strategy: Strategy,
    /// Largest fraction (0..=1) of the stored tags one pass may delete
    /// without `--force`.
    pub max_delete_fraction: f64,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            strategy: Strategy::Initial,
            max_delete_fraction: 0.5,
        }
    }
}

/// Keys of a `security` job.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityOptions {
    /// Scan a tag again after this long.
    pub rescan_after: Duration,
    /// Tags scanned at once.
    pub concurrency: usize,
    /// Attempts at one tag before it is marked failed.
    pub max_attempts: u32,
    /// How long a claim on a tag lasts.
    pub lease: Duration,
}

impl Default for SecurityOptions {
    fn default() -> SecurityOptions {
        SecurityOptions {
            rescan_after: Duration::from_secs(24 * 3600),
            concurrency: 2,
            max_attempts: 5,
            lease: Duration::from_secs(30 * 60),
        }
    }
}

/// Which scanner API a `[security.NAME]` section speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerKind {
    /// `[security.clair]`: the Clair v2 API.
    Clair,
    /// `[security.clair4]`: the Clair v4 indexer/matcher API.
    Clair4,
    /// `[security.adapter]`: the Harbor scanner-adapter API (e.g. Trivy's adapter).
    Adapter,
    /// `[security.fixture]`: reports read from a JSON file (tests, demos).
    Fixture,
}

impl ScannerKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ScannerKind; 4] = [
        ScannerKind::Clair,
        ScannerKind::Clair4,
        ScannerKind::Adapter,
        ScannerKind::Fixture,
    ];

    /// The section name, as in `[security.NAME]`.
    pub fn name(self) -> &'static str {
        match self {
            ScannerKind::Clair => "clair",
            ScannerKind::Clair4 => "clair4",
            ScannerKind::Adapter => "adapter",
            ScannerKind::Fixture => "fixture",
        }
    }
}

/// One `[security.NAME]` section: a vulnerability scanner.
#[derive(Clone)]
pub struct ScannerConfig {
    /// Which API.
    pub kind: ScannerKind,
    /// Whether the security handler uses it.
    pub enabled: bool,
    /// Base URL of the scanner (None only for `fixture`).
    pub server: Option<url::Url>,
    /// Per-scan timeout.
    pub timeout: Duration,
    /// User name for Basic auth.
    pub username: Option<String>,
    /// Password for Basic auth; never logged.
    pub password: Option<String>,
    /// Bearer token, read by [`load`] from `token_file`; never logged.
    pub token: Option<String>,
    /// `token_file` as written.
    pub token_file: Option<PathBuf>,
    /// `fixture`: the JSON file with the reports.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for ScannerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScannerConfig")
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .field("server", &self.server.as_ref().map(url::Url::as_str))
            .field("timeout", &self.timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("file", &self.file)
            .finish()
    }
}

/// Environment variable that replaces `[database] url`.
pub const ENV_DATABASE_URL: &str = "REGKEEPER_DATABASE_URL";
/// Environment variable with the database password.
pub const ENV_DATABASE_PASSWORD: &str = "REGKEEPER_DATABASE_PASSWORD";
/// Environment variable with the registry password.
pub const ENV_REGISTRY_PASSWORD: &str = "REGKEEPER_REGISTRY_PASSWORD";
/// Environment variable with the notification token.
pub const ENV_NOTIFY_TOKEN: &str = "REGKEEPER_NOTIFY_TOKEN";

/// Reads and validates a configuration file, applies the environment
/// overrides and reads the secret files (`password_file`, `token_file`).
/// Never writes anything.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = parse_with_env(&text, path, &|name| std::env::var(name).ok())?;
    read_secret_files(&mut config)?;
    Ok(config)
}

/// Validates configuration text without looking at the environment or
/// reading any file; `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
    parse_with_env(text, path, &|_| None)
}

/// Like [`parse`], with environment overrides looked up through `env`
/// (`REGKEEPER_DATABASE_URL`, `REGKEEPER_DATABASE_PASSWORD`,
/// `REGKEEPER_REGISTRY_PASSWORD`, `REGKEEPER_NOTIFY_TOKEN`). Secret files
/// are not read here.
pub fn parse_with_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    let checker = Checker {
        text,
        file: path.display().to_string(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => return Err(checker.toml_error(&error)),
    };
    checker.config(raw, path, env)
}

/// Reads every `*_file` secret into its field, unless the environment
/// already provided that secret. A trailing newline is dropped.
fn read_secret_files(config: &mut Config) -> anyhow::Result<()> {
    let file = config.path.display().to_string();
    let secret_files = config.secret_files.clone();
    if let (Database::Postgres { password, .. }, Some(secret_path)) =
        (&mut config.database, &secret_files.database_password)
    {
        if password.is_none() {
            *password = Some(
                read_secret(secret_path)
                    .with_context(|| format!("{file}: [database] password_file"))?,
            );
        }
    }
    if let (None, Some(secret_path)) = (&config.registry.password, &secret_files.registry_password)
    {
        config.registry.password = Some(
            read_secret(secret_path)
                .with_context(|| format!("{file}: [registry] password_file"))?,
        );
    }
    if let (None, Some(secret_path)) = (&config.notifications.token, &secret_files.notify_token) {
        config.notifications.token = Some(
            read_secret(secret_path)
                .with_context(|| format!("{file}: [notifications] token_file"))?,
        );
    }
    for scanner in &mut config.security {
        if let (None, Some(secret_path)) = (&scanner.token, &scanner.token_file) {
            let section = scanner.kind.name();
            scanner.token = Some(
                read_secret(secret_path)
                    .with_context(|| format!("{file}: [security.{section}] token_file"))?,
            );
        }
    }
    Ok(())
}

/// Reads one secret file, dropping the trailing newline.
fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!secret.is_empty(), "{} is empty", path.display());
    Ok(secret)
}

/// Who an error is about: prefixes the message.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// The file as a whole.
    File,
    /// A top-level section such as `[registry]`.
    Section(&'a str),
    /// `[jobs.NAME]`.
    Job(&'a str),
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::File => Ok(()),
            Scope::Section(section) => write!(f, "[{section}] "),
            Scope::Job(name) => write!(f, "job {name:?}: "),
        }
    }
}

/// Validation state: the text (for line and column) and the file name.
struct Checker<'a> {
    text: &'a str,
    file: String,
}

impl Checker<'_> {
    /// `file:line:column: scope message`.
    fn error(
        &self,
        span: &Range<usize>,
        scope: Scope<'_>,
        message: impl std::fmt::Display,
    ) -> anyhow::Error {
        let (line, column) = line_column(self.text, span.start);
        anyhow::anyhow!("{}:{line}:{column}: {scope}{message}", self.file)
    }

    /// An error of the TOML parser or of serde, with the table and the key
    /// it is in when the document can be parsed far enough to tell.
    fn toml_error(&self, error: &toml::de::Error) -> anyhow::Error {
        let span = error.span().unwrap_or(0..0);
        let (label, key) = self.locate(span.start);
        let scope = match &label {
            TableLabel::Top => Scope::File,
            TableLabel::Section(section) => Scope::Section(section),
            TableLabel::Job(name) => Scope::Job(name),
        };
        let message = error.message().trim_end();
        match key {
            Some(key) => self.error(&span, scope, format!("{key}: {message}")),
            None => self.error(&span, scope, message),
        }
    }

    /// The table and the key whose value hold byte `offset`.
    fn locate(&self, offset: usize) -> (TableLabel, Option<String>) {
        let Ok(document) = toml::de::DeTable::parse(self.text) else {
            return (TableLabel::Top, None);
        };
        // Standard tables are spanned by their header only: the table that
        // holds `offset` is the one whose header comes last before it.
        let mut headers = vec![(0, TableLabel::Top)];
        let mut key = None;
        walk_tables(
            document.get_ref(),
            &mut Vec::new(),
            offset,
            &mut headers,
            &mut key,
        );
        let label = headers
            .into_iter()
            .filter(|(start, _)| *start <= offset)
            .max_by_key(|(start, _)| *start)
            .map_or(TableLabel::Top, |(_, label)| label);
        (label, key)
    }

    fn config(
        &self,
        raw: RawConfig,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let database_wait;
        let database = {
            let section = Scope::Section("database");
            let raw_database = raw.database.as_ref().map(Spanned::get_ref);
            let wait = raw_database.and_then(|database| database.wait.as_ref());
            database_wait =
                self.duration_or(wait, section, "wait", Duration::from_secs(90), Positive::No)?;
            self.database(raw.database.as_ref(), env)?
        };
        let registry = self.registry(raw.registry.as_ref(), env)?;
        let notifications = self.notifications(raw.notifications.as_ref(), env)?;
        let daemon = {
            let section = Scope::Section("daemon");
            let raw_daemon = raw.daemon.as_ref().map(Spanned::get_ref);
            let grace_period = self.duration_or(
                raw_daemon.and_then(|daemon| daemon.grace_period.as_ref()),
                section,
                "grace_period",
                Duration::from_secs(30),
                Positive::No,
            )?;
            let keep_runs = self.integer_or(
                raw_daemon.and_then(|daemon| daemon.keep_runs.as_ref()),
                section,
                "keep_runs",
                100,
                1..=1_000_000,
            )?;
            let raw_heartbeat = raw_daemon.and_then(|daemon| daemon.heartbeat.as_ref());
            let raw_abandon_after = raw_daemon.and_then(|daemon| daemon.abandon_after.as_ref());
            let heartbeat = self.duration_or(
                raw_heartbeat,
                section,
                "heartbeat",
                Duration::from_secs(30),
                Positive::Yes,
            )?;
            let abandon_after = self.duration_or(
                raw_abandon_after,
                section,
                "abandon_after",
                Duration::from_secs(5 * 60),
                Positive::Yes,
            )?;
            if abandon_after < heartbeat * MIN_HEARTBEATS_PER_EXPIRY {
                let span = raw_abandon_after
                    .or(raw_heartbeat)
                    .map_or(0..0, Spanned::span);
                return Err(self.error(
                    &span,
                    section,
                    format!(
                        "abandon_after ({}) must be at least {MIN_HEARTBEATS_PER_EXPIRY} times heartbeat ({})",
                        humantime::format_duration(abandon_after),
                        humantime::format_duration(heartbeat)
                    ),
                ));
            }
            DaemonConfig {
                grace_period,
                keep_runs: keep_runs as usize,
                database_wait,
                heartbeat,
                abandon_after,
            }
        };
        let security = match &raw.security {
            Some(scanners) => self.scanners(scanners)?,
            None => Vec::new(),
        };
        let jobs = match &raw.jobs {
            Some(jobs) => self.jobs(jobs)?,
            None => Vec::new(),
        };
        let path_of =
            |value: Option<&Spanned<String>>| value.map(|value| PathBuf::from(value.get_ref()));
        let secret_files = SecretFiles {
            database_password: path_of(
                raw.database
                    .as_ref()
                    .and_then(|database| database.get_ref().password_file.as_ref()),
            ),
            registry_password: path_of(
                raw.registry
                    .as_ref()
                    .and_then(|registry| registry.get_ref().password_file.as_ref()),
            ),
            notify_token: path_of(
                raw.notifications
                    .as_ref()
                    .and_then(|notifications| notifications.get_ref().token_file.as_ref()),
            ),
        };
        Ok(Config {
            secret_files,
            path: path.to_path_buf(),
            database,
            registry,
            notifications,
            daemon,
            jobs,
            security,
        })
    }

    fn database(
        &self,
        raw: Option<&Spanned<raw::RawDatabase>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Database> {
        let section = Scope::Section("database");
        let raw_database = raw.map(Spanned::get_ref);
        let pool_size = self.integer_or(
            raw_database.and_then(|database| database.pool_size.as_ref()),
            section,
            "pool_size",
            8,
            1..=1000,
        )?;
        let password_file = raw_database.and_then(|database| database.password_file.as_ref());
        let env_url = env(ENV_DATABASE_URL);
        let (url_text, span) = match (
            &env_url,
            raw_database.and_then(|database| database.url.as_ref()),
        ) {
            (Some(url), _) => (url.as_str(), None),
            (None, Some(url)) => (url.get_ref().as_str(), Some(url.span())),
            (None, None) => ("sqlite://regkeeper.db", None),
        };
        let fail = |message: String| match &span {
            Some(span) => self.error(span, section, message),
            None if env_url.is_some() => {
                anyhow::anyhow!("{}: {ENV_DATABASE_URL}: {message}", self.file)
            }
            None => anyhow::anyhow!("{}: {message}", self.file),
        };
        if let Some(file) = url_text.strip_prefix("sqlite://") {
            if file.is_empty() {
                return Err(fail(format!(
                    "url: {url_text:?} names no file (write sqlite://PATH)"
                )));
            }
            if let Some(password_file) = password_file {
                return Err(self.error(
                    &password_file.span(),
                    section,
                    "password_file is only used with a postgres:// url",
                ));
            }
            return Ok(Database::Sqlite {
                path: PathBuf::from(file),
            });
        }
        let redacted = redact_userinfo(url_text);
        if !(url_text.starts_with("postgres://") || url_text.starts_with("postgresql://")) {
            return Err(fail(format!(
                "url: unsupported database url {redacted:?} (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)"
            )));
        }
        let mut url = url::Url::parse(url_text)
            .map_err(|error| fail(format!("url: invalid database url {redacted:?} ({error})")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(fail(format!(
                "url: database url {redacted:?} names no host"
            )));
        }
        // TLS parameters are checked here so that `regkeeper check` finds
        // them; the files they name are read when connecting.
        crate::store::postgres_tls::split_url(url_text)
            .map_err(|error| fail(format!("url: {error:#}")))?;
        let mut password = url.password().map(percent_decode);
        // The password never stays in the URL, which is logged.
        let _ = url.set_password(None);
        if let Some(from_env) = env(ENV_DATABASE_PASSWORD) {
            password = Some(from_env);
        } else if password.is_some() && password_file.is_some() {
            return Err(fail(
                "url: the url has a password and password_file is set too (use one)".to_string(),
            ));
        }
        Ok(Database::Postgres {
            url: url.to_string(),
            password,
            pool_size: pool_size as u32,
        })
    }

    fn registry(
        &self,
        raw: Option<&Spanned<raw::RawRegistry>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<RegistryConfig> {
        let section = Scope::Section("registry");
        let Some(raw) = raw else {
            return Err(self.error(
                &(0..0),
                Scope::File,
                "missing [registry] section (at least url = \"http://HOST:PORT\")",
            ));
        };
        let registry = raw.get_ref();
        let Some(url_value) = &registry.url else {
            return Err(self.error(
                &raw.span(),
                section,
                "url is required, e.g. url = \"http://127.0.0.1:5000\"",
            ));
        };
        let url = self.http_url(url_value, section, "url")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.error(
                &url_value.span(),
                section,
                "url: put credentials in username and password, not in the url",
            ));
        }
        let username = registry
            .username
            .as_ref()
            .map(|name| name.get_ref().clone());
        if let (Some(password), Some(_)) = (&registry.password, &registry.password_file) {
            return Err(self.error(
                &password.span(),
                section,
                "password and password_file are both set (use one)",
            ));
        }
        let mut password = registry
            .password
            .as_ref()
            .map(|password| password.get_ref().clone());
        if let Some(from_env) = env(ENV_REGISTRY_PASSWORD) {
            password = Some(from_env);
        }
        if username.is_none() {
            if let Some(password_value) = &registry.password {
                return Err(self.error(
                    &password_value.span(),
                    section,
                    "password is set but username is not",
                ));
            }
            if let Some(file) = &registry.password_file {
                return Err(self.error(
                    &file.span(),
                    section,
                    "password_file is set but username is not",
                ));
            }
            if password.is_some() {
                return Err(self.error(
                    &raw.span(),
                    section,
                    format!("{ENV_REGISTRY_PASSWORD} is set but username is not"),
                ));
            }
        }
        let timeout = self.duration_or(
            registry.timeout.as_ref(),
            section,
            "timeout",
            Duration::from_secs(30),
            Positive::Yes,
        )?;
        let concurrency = self.integer_or(
            registry.concurrency.as_ref(),
            section,
            "concurrency",
            8,
            1..=64,
        )?;
        let catalog_page_size = self.integer_or(
            registry.catalog_page_size.as_ref(),
            section,
            "catalog_page_size",
            1000,
            1..=1000,
        )?;
        Ok(RegistryConfig {
            url,
            username,
            password,
            ca_file: registry
                .ca_file
                .as_ref()
                .map(|file| PathBuf::from(file.get_ref())),
            insecure_skip_tls_verify: registry
                .insecure_skip_tls_verify
                .as_ref()
                .is_some_and(|skip| *skip.get_ref()),
            timeout,
            concurrency: concurrency as usize,
            catalog_page_size: catalog_page_size as u32,
        })
    }

    fn notifications(
        &self,
        raw: Option<&Spanned<raw::RawNotifications>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<NotificationsConfig> {
        let section = Scope::Section("notifications");
        let notifications = raw.map(Spanned::get_ref);
        let listen_value = notifications.and_then(|notifications| notifications.listen.as_ref());
        let listen = match listen_value {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 5055))),
            Some(value) if value.get_ref().is_empty() => None,
            Some(value) => Some(value.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.error(
                    &value.span(),
                    section,
                    format!("listen: invalid address {:?} (expected IP:PORT like \"127.0.0.1:5055\", or \"\" to disable the intake)", value.get_ref()),
                )
            })?),
        };
        let token = env(ENV_NOTIFY_TOKEN);
        let token_file = notifications.and_then(|notifications| notifications.token_file.as_ref());
        let allow_unauthenticated = notifications
            .and_then(|notifications| notifications.allow_unauthenticated.as_ref())
            .is_some_and(|allow| *allow.get_ref());
        if let (Some(address), Some(value)) = (listen, listen_value) {
            if !address.ip().is_loopback()
                && token.is_none()
                && token_file.is_none()
                && !allow_unauthenticated
            {
                return Err(self.error(
                    &value.span(),
                    section,
                    format!(
                        "listen: {address} is reachable from other hosts but no token is set (set token_file or {ENV_NOTIFY_TOKEN}, or allow_unauthenticated = true)"
                    ),
                ));
            }
        }
        let body_limit = match notifications
            .and_then(|notifications| notifications.body_limit.as_ref())
        {
            None => 1024 * 1024,
            Some(value) => {
                let bytes = match value.get_ref() {
                    ByteSize::Bytes(bytes) => u64::try_from(*bytes).ok().filter(|bytes| *bytes > 0),
                    ByteSize::Text(text) => parse_byte_size(text).filter(|bytes| *bytes > 0),
                };
                let written = match value.get_ref() {
                    ByteSize::Bytes(bytes) => bytes.to_string(),
                    ByteSize::Text(text) => format!("{text:?}"),
                };
                let bytes = bytes.and_then(|bytes| usize::try_from(bytes).ok()).ok_or_else(|| {
                    self.error(
                        &value.span(),
                        section,
                        format!("body_limit: invalid size {written} (expected a positive number of bytes or text like \"1MiB\", \"512KiB\")"),
                    )
                })?;
                bytes
            }
        };
        Ok(NotificationsConfig {
            listen,
            token,
            allow_unauthenticated,
            body_limit,
        })
    }

    fn scanners(&self, raw: &Ordered<RawScanner>) -> anyhow::Result<Vec<ScannerConfig>> {
        let mut scanners = Vec::new();
        for (name, scanner) in &raw.0 {
            let Some(kind) = ScannerKind::ALL
                .into_iter()
                .find(|kind| kind.name() == name.get_ref())
            else {
                let known: Vec<&str> = ScannerKind::ALL.iter().map(|kind| kind.name()).collect();
                return Err(self.error(
                    &name.span(),
                    Scope::File,
                    format!(
                        "unknown scanner [security.{}] (expected {})",
                        name.get_ref(),
                        or_list(&known)
                    ),
                ));
            };
            let section_name = format!("security.{}", kind.name());
            let section = Scope::Section(&section_name);
            let values = scanner.get_ref();
            let server = match (&values.server, kind) {
                (Some(server), ScannerKind::Fixture) => {
                    return Err(self.error(
                        &server.span(),
                        section,
                        "server does not apply to the fixture scanner (it reads `file`)",
                    ));
                }
                (Some(server), _) => Some(self.http_url(server, section, "server")?),
                (None, ScannerKind::Fixture) => None,
                (None, _) => {
                    return Err(self.error(
                        &scanner.span(),
                        section,
                        "server is required, e.g. server = \"http://127.0.0.1:6060\"",
                    ));
                }
            };
            let file = match (&values.file, kind) {
                (Some(file), ScannerKind::Fixture) => Some(PathBuf::from(file.get_ref())),
                (None, ScannerKind::Fixture) => {
                    return Err(self.error(
                        &scanner.span(),
                        section,
                        "file is required (the JSON file with the reports)",
                    ));
                }
                (Some(file), _) => {
                    return Err(self.error(
                        &file.span(),
                        section,
                        "file only applies to the fixture scanner",
                    ));
                }
                (None, _) => None,
            };
            let default_timeout = if kind == ScannerKind::Clair { 900 } else { 300 };
            let timeout = self.duration_or(
                values.timeout.as_ref(),
                section,
                "timeout",
                Duration::from_secs(default_timeout),
                Positive::Yes,
            )?;
            if let (Some(password), None) = (&values.password, &values.username) {
                return Err(self.error(
                    &password.span(),
                    section,
                    "password is set but username is not",
                ));
            }
            if let (Some(token_file), Some(_)) = (&values.token_file, &values.username) {
                return Err(self.error(
                    &token_file.span(),
                    section,
                    "token_file and username are both set (use one)",
                ));
            }
            scanners.push(ScannerConfig {
                kind,
                enabled: values
                    .enabled
                    .as_ref()
                    .is_none_or(|enabled| *enabled.get_ref()),
                server,
                timeout,
                username: values.username.as_ref().map(|name| name.get_ref().clone()),
                password: values
                    .password
                    .as_ref()
                    .map(|password| password.get_ref().clone()),
                token: None,
                token_file: values
                    .token_file
                    .as_ref()
                    .map(|file| PathBuf::from(file.get_ref())),
                file,
            });
        }
        Ok(scanners)
    }

    fn jobs(&self, raw: &Ordered<RawJob>) -> anyhow::Result<Vec<JobConfig>> {
        let mut jobs = Vec::new();
        for (name, job) in &raw.0 {
            let job_name = name.get_ref();
            let valid_name = !job_name.is_empty()
                && job_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_name {
                return Err(self.error(
                    &name.span(),
                    Scope::File,
                    format!(
                        "invalid job name {job_name:?} (use letters, digits, '-', '_' and '.')"
                    ),
                ));
            }
            jobs.push(self.job(name, job)?);
        }
        Ok(jobs)
    }

    fn job(&self, name: &Spanned<String>, raw: &Spanned<RawJob>) -> anyhow::Result<JobConfig> {
        let scope = Scope::Job(name.get_ref());
        let job = raw.get_ref();
        let Some(handler_value) = &job.handler else {
            return Err(self.error(
                &name.span(),
                scope,
                format!("handler is required ({})", or_list(&HANDLERS)),
            ));
        };
        let handler_name = handler_value.get_ref().as_str();
        if !HANDLERS.contains(&handler_name) {
            return Err(self.error(
                &handler_value.span(),
                scope,
                format!(
                    "unknown handler {handler_name:?} (expected {})",
                    or_list(&HANDLERS)
                ),
            ));
        }
        let Some(schedule_value) = &job.schedule else {
            return Err(self.error(
                &name.span(),
                scope,
                "schedule is required (cron with seconds: sec min hour dom mon dow [year], e.g. \"*/10 * * * * *\")",
            ));
        };
        let timezone = match &job.timezone {
            None => chrono_tz::Tz::UTC,
            Some(value) => value.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
                self.error(
                    &value.span(),
                    scope,
                    format!("unknown timezone {:?} (expected an IANA name like \"Europe/Berlin\" or \"UTC\")", value.get_ref()),
                )
            })?,
        };
        let schedule = self.schedule(schedule_value, scope, timezone)?;
        self.foreign_keys(job, handler_name, scope)?;
        let handler = match handler_name {
            "events" => {
                let defaults = EventsOptions::default();
                let backoff = self.duration_or(
                    job.backoff.as_ref(),
                    scope,
                    "backoff",
                    defaults.backoff,
                    Positive::Yes,
                )?;
                let max_backoff = self.duration_or(
                    job.max_backoff.as_ref(),
                    scope,
                    "max_backoff",
                    defaults.max_backoff,
                    Positive::Yes,
                )?;
                if max_backoff < backoff {
                    let span = job
                        .max_backoff
                        .as_ref()
                        .or(job.backoff.as_ref())
                        .map(Spanned::span)
                        .unwrap_or(name.span());
                    return Err(self.error(
                        &span,
                        scope,
                        format!(
                            "max_backoff ({}) is shorter than backoff ({})",
                            humantime::format_duration(max_backoff),
                            humantime::format_duration(backoff)
                        ),
                    ));
                }
                HandlerConfig::Events(EventsOptions {
                    max_attempts: self.integer_or(
                        job.max_attempts.as_ref(),
                        scope,
                        "max_attempts",
                        10,
                        1..=1000,
                    )? as u32,
                    retain_done: self.duration_or(
                        job.retain_done.as_ref(),
                        scope,
                        "retain_done",
                        defaults.retain_done,
                        Positive::No,
                    )?,
                    lease: self.duration_or(
                        job.lease.as_ref(),
                        scope,
                        "lease",
                        defaults.lease,
                        Positive::Yes,
                    )?,
                    batch_size: self.integer_or(
                        job.batch_size.as_ref(),
                        scope,
                        "batch_size",
                        500,
                        1..=100_000,
                    )? as u32,
                    backoff,
                    max_backoff,
                })
            }
            "sync" => {
                let strategy = match &job.strategy {
                    None => Strategy::default(),
                    Some(value) => Strategy::ALL
                        .into_iter()
                        .find(|strategy| strategy.name() == value.get_ref())
                        .ok_or_else(|| {
                            let known: Vec<&str> = Strategy::ALL
                                .iter()
                                .map(|strategy| strategy.name())
                                .collect();
                            self.error(
                                &value.span(),
                                scope,
                                format!(
                                    "unknown strategy {:?} (expected {})",
                                    value.get_ref(),
                                    or_list(&known)
                                ),
                            )
                        })?,
                };
                let max_delete_fraction = match &job.max_delete_fraction {
                    None => SyncOptions::default().max_delete_fraction,
                    Some(value) => {
                        let fraction = *value.get_ref();
                        if !(0.0..=1.0).contains(&fraction) {
                            return Err(self.error(
                                &value.span(),
                                scope,
                                format!("max_delete_fraction {fraction} is out of range (expected 0.0 to 1.0)"),
                            ));
                        }
                        fraction
                    }
                };
                HandlerConfig::Sync(SyncOptions {
                    strategy,
                    max_delete_fraction,
                })
            }
            _ => {
                let defaults = SecurityOptions::default();
                HandlerConfig::Security(SecurityOptions {
                    rescan_after: self.duration_or(
                        job.rescan_after.as_ref(),
                        scope,
                        "rescan_after",
                        defaults.rescan_after,
                        Positive::No,
                    )?,
                    concurrency: self.integer_or(
                        job.concurrency.as_ref(),
                        scope,
                        "concurrency",
                        2,
                        1..=64,
                    )? as usize,
                    max_attempts: self.integer_or(
                        job.max_attempts.as_ref(),
                        scope,
                        "max_attempts",
                        5,
                        1..=1000,
                    )? as u32,
                    lease: self.duration_or(
                        job.lease.as_ref(),
                        scope,
                        "lease",
                        defaults.lease,
                        Positive::Yes,
                    )?,
                })
            }
        };
        Ok(JobConfig {
            name: name.get_ref().clone(),
            schedule,
            enabled: job
                .enabled
                .as_ref()
                .is_none_or(|enabled| *enabled.get_ref()),
            timeout: self.optional_duration(
                job.timeout.as_ref(),
                scope,
                "timeout",
                Positive::Yes,
            )?,
            jitter: self.optional_duration(job.jitter.as_ref(), scope, "jitter", Positive::No)?,
            handler,
        })
    }

    /// Rejects a key that belongs to another handler.
    fn foreign_keys(&self, job: &RawJob, handler: &str, scope: Scope<'_>) -> anyhow::Result<()> {
        fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
            value.as_ref().map(Spanned::span)
        }
        let keys: [KeyOwners; 10] = [
            (
                "max_attempts",
                span(&job.max_attempts),
                &["events", "security"],
            ),
            ("retain_done", span(&job.retain_done), &["events"]),
            ("lease", span(&job.lease), &["events", "security"]),
            ("batch_size", span(&job.batch_size), &["events"]),
            ("backoff", span(&job.backoff), &["events"]),
            ("max_backoff", span(&job.max_backoff), &["events"]),
            ("strategy", span(&job.strategy), &["sync"]),
            (
                "max_delete_fraction",
                span(&job.max_delete_fraction),
                &["sync"],
            ),
            ("rescan_after", span(&job.rescan_after), &["security"]),
            ("concurrency", span(&job.concurrency), &["security"]),
        ];
        for (key, key_span, handlers) in keys {
            if let Some(key_span) = key_span {
                if !handlers.contains(&handler) {
                    let owners = handlers
                        .iter()
                        .map(|owner| format!("{owner:?}"))
                        .collect::<Vec<_>>()
                        .join(" and ");
                    return Err(self.error(
                        &key_span,
                        scope,
                        format!("key {key} belongs to the {owners} handler, not {handler:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn schedule(
        &self,
        value: &Spanned<String>,
        scope: Scope<'_>,
        timezone: chrono_tz::Tz,
    ) -> anyhow::Result<Schedule> {
        let expression = value.get_ref().trim();
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let fail = |message: String| self.error(&value.span(), scope, message);
        if !expression.starts_with('@') {
            if fields.len() == 5 {
                return Err(fail(format!(
                    "schedule {expression:?} has 5 fields, but seconds come first: sec min hour dom mon dow [year] (did you mean \"0 {expression}\"?)"
                )));
            }
            if !(6..=7).contains(&fields.len()) {
                return Err(fail(format!(
                    "schedule {expression:?} has {} fields (expected 6 or 7: sec min hour dom mon dow [year])",
                    fields.len()
                )));
            }
            if fields[5].starts_with('+') {
                return Err(fail(format!(
                    "schedule {expression:?}: the '+' day-of-week modifier is not supported (day-of-month and day-of-week combine with OR when both are set)"
                )));
            }
        }
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .year(croner::parser::Year::Optional)
            .build();
        let cron = parser.parse(expression).map_err(|error| {
            // croner does not say which field is wrong: find it by parsing
            // each field alone.
            const FIELD_NAMES: [&str; 7] = [
                "second",
                "minute",
                "hour",
                "day-of-month",
                "month",
                "day-of-week",
                "year",
            ];
            let bad_field = (0..fields.len()).find(|&index| {
                let mut alone = vec!["*"; fields.len()];
                alone[index] = fields[index];
                parser.parse(&alone.join(" ")).is_err()
            });
            match bad_field {
                Some(index) if !expression.starts_with('@') => fail(format!(
                    "invalid schedule {expression:?}: {} field {:?} ({error})",
                    FIELD_NAMES[index], fields[index]
                )),
                _ => fail(format!("invalid schedule {expression:?} ({error})")),
            }
        })?;
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
            timezone,
        })
    }

    fn http_url(
        &self,
        value: &Spanned<String>,
        scope: Scope<'_>,
        key: &str,
    ) -> anyhow::Result<url::Url> {
        let text = value.get_ref();
        let url = url::Url::parse(text).map_err(|error| {
            let message = match error {
                url::ParseError::RelativeUrlWithoutBase => {
                    format!("{key}: URL {text:?} has no scheme (write e.g. \"http://{text}\")")
                }
                error => format!("{key}: invalid URL {text:?} ({error})"),
            };
            self.error(&value.span(), scope, message)
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key}: URL {text:?} is not http:// or https://"),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key}: URL {text:?} names no host"),
            ));
        }
        Ok(url)
    }

    fn optional_duration(
        &self,
        value: Option<&Spanned<String>>,
        scope: Scope<'_>,
        key: &str,
        positive: Positive,
    ) -> anyhow::Result<Option<Duration>> {
        let Some(value) = value else { return Ok(None) };
        let text = value.get_ref();
        let duration = humantime::parse_duration(text).map_err(|error| {
            self.error(
                &value.span(),
                scope,
                format!("{key}: invalid duration {text:?} ({error}; write e.g. \"30s\", \"5m\", \"24h\")"),
            )
        })?;
        if duration > MAX_DURATION {
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key}: duration {text:?} is too long (at most 100 years)"),
            ));
        }
        if positive == Positive::Yes && duration.is_zero() {
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key}: duration {text:?} must be greater than zero"),
            ));
        }
        Ok(Some(duration))
    }

    fn duration_or(
        &self,
        value: Option<&Spanned<String>>,
        scope: Scope<'_>,
        key: &str,
        default: Duration,
        positive: Positive,
    ) -> anyhow::Result<Duration> {
        Ok(self
            .optional_duration(value, scope, key, positive)?
            .unwrap_or(default))
    }

    fn integer_or(
        &self,
        value: Option<&Spanned<i64>>,
        scope: Scope<'_>,
        key: &str,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> anyhow::Result<i64> {
        let Some(value) = value else {
            return Ok(default);
        };
        let number = *value.get_ref();
        if !range.contains(&number) {
            return Err(self.error(
                &value.span(),
                scope,
                format!(
                    "{key} {number} is out of range (expected {} to {})",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(number)
    }
}

/// Where a table sits, for the prefix of error messages.
#[derive(Clone)]
enum TableLabel {
    /// Top level.
    Top,
    /// `[database]`, `[security.clair]`, ...
    Section(String),
    /// `[jobs.NAME]` and anything below it.
    Job(String),
}

/// Collects the start of every table (with its label) and the key whose
/// value span holds `offset`.
fn walk_tables(
    table: &toml::de::DeTable<'_>,
    path: &mut Vec<String>,
    offset: usize,
    headers: &mut Vec<(usize, TableLabel)>,
    key: &mut Option<String>,
) {
    for (name, value) in table.iter() {
        let Some(inner) = value.get_ref().as_table() else {
            if value.span().contains(&offset) {
                *key = Some(name.get_ref().to_string());
            }
            continue;
        };
        path.push(name.get_ref().to_string());
        let is_section =
            |name: &str| ["database", "registry", "notifications", "daemon"].contains(&name);
        let is_scanner = |name: &str| ScannerKind::ALL.iter().any(|kind| kind.name() == name);
        let label = match path.as_slice() {
            [jobs, job, ..] if jobs == "jobs" => Some(TableLabel::Job(job.clone())),
            // `jobs` and `security` are implicit tables whose span is the
            // first word of the first `[jobs.NAME]` header.
            [only] if only == "jobs" || only == "security" => None,
            [section, ..] if is_section(section) => Some(TableLabel::Section(section.clone())),
            [security, scanner, ..] if security == "security" && is_scanner(scanner) => {
                Some(TableLabel::Section(format!("{security}.{scanner}")))
            }
            // Unknown tables are reported by name in the error itself.
            _ => Some(TableLabel::Top),
        };
        // A table where a key's value belongs (`[database.url]`, `url = {}`)
        // is that key's wrong value: name the key.
        let is_key_position = match path.as_slice() {
            [section, _] => is_section(section),
            [outer, _, _] => outer == "jobs" || outer == "security",
            _ => false,
        };
        if is_key_position && value.span().contains(&offset) {
            *key = Some(name.get_ref().to_string());
        }
        if let Some(label) = label {
            headers.push((value.span().start, label));
        }
        walk_tables(inner, path, offset, headers, key);
        path.pop();
    }
}

/// A handler-specific key: its name, where it is written (if it is) and
/// the handlers it belongs to.
type KeyOwners = (&'static str, Option<Range<usize>>, &'static [&'static str]);

/// The longest duration a key accepts: longer ones overflow the clock
/// (`Instant + Duration`) or milliseconds in `i64` where they are used.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Whether a zero duration is an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Positive {
    Yes,
    No,
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// "a, b, c or d".
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Replaces the password of `scheme://user:password@host` with `<redacted>`
/// so that URLs can appear in error messages.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:<redacted>{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// Decodes `%XX` escapes of a URL component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                decoded.push(byte);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Parses `"1048576"`, `"512KiB"`, `"1MiB"`, `"10MB"`, `"1 GiB"` into bytes.
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits_end].parse().ok()?;
    let unit = text[digits_end..].trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// A configuration problem found after loading, e.g. a job whose handler this
/// version lacks. The command line exits 2 on it, as on a parse error.
#[derive(Debug)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// A message that names the job and the value.
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;

#[cfg(test)]
mod reference_tests;
