//! The validated configuration: real types (parsed cron, `Duration`, URLs,
//! enums) as the rest of the program uses them, and their `Debug` output,
//! which never shows a secret. Only types and their defaults live here: no
//! parsing, no I/O.

use std::path::PathBuf;
use std::time::Duration;

/// What a secret is shown as in `Debug` output, logs and messages: the one
/// marker, in URLs too.
pub const REDACTED: &str = "<redacted>";

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
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[jobs.NAME]`, in file order.
    pub jobs: Vec<JobConfig>,
    /// `[security.NAME]`: the vulnerability scanners, in file order.
    pub security: Vec<ScannerConfig>,
    /// Where secrets are read from (`*_file` keys).
    pub secret_files: SecretFiles,
}

/// The files the configuration names, each with where its key is written,
/// for the checks of [`load`](super::load()) and their messages. Relative
/// paths are already resolved against the configuration file's directory.
/// [`parse`](super::parse) only records them; `load` reads each secret
/// into its field unless the environment set it, and checks that the other
/// files can be read.
#[derive(Debug, Clone, Default)]
pub struct SecretFiles {
    /// `[database] password_file`, into `Database::Postgres::password`.
    pub database_password: Option<KeyedFile>,
    /// `[registry] password_file`, into `RegistryConfig::password`.
    pub registry_password: Option<KeyedFile>,
    /// `[registry] scanner_password_file`, into `RegistryConfig::scanner_password`.
    pub registry_scanner_password: Option<KeyedFile>,
    /// `[notifications] token_file`, into `NotificationsConfig::token`.
    pub notify_token: Option<KeyedFile>,
    /// `[security.NAME] token_file` of each scanner, in the order of
    /// [`Config::security`].
    pub scanner_tokens: Vec<Option<KeyedFile>>,
    /// The SQLite database file (its directory must exist).
    pub database_file: Option<KeyedFile>,
    /// Files read when a command starts or connects: `[registry] ca_file`,
    /// the PostgreSQL URL's `sslrootcert`, `sslcert` and `sslkey`, a
    /// fixture scanner's `file`. Not needed by the read-only commands
    /// except the database's own.
    pub read_files: Vec<KeyedFile>,
}

/// A file a key names.
#[derive(Debug, Clone)]
pub struct KeyedFile {
    /// The path, resolved against the configuration file's directory.
    pub path: PathBuf,
    /// Where the key is written, the prefix of messages about the file:
    /// `FILE:LINE:COLUMN: [section] key` (or the environment variable).
    pub origin: String,
    /// Whether the read-only commands (`status`, `tags`, `vulns`) need it.
    pub needed_for_reading: bool,
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
    /// `sqlite://PATH` (a relative path in the file is resolved against the
    /// configuration file's directory).
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
                .field("url", &super::postgres_url::redact_url(url))
                .field("password", &password.as_ref().map(|_| REDACTED))
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
    /// Token realms besides the registry's own origin that may receive the
    /// credentials (`token_realms`).
    pub token_realms: Vec<TokenRealm>,
    /// The read-only account scanners get from a Basic-auth registry.
    pub scanner_username: Option<String>,
    /// Its password (from `scanner_password`, `scanner_password_file` or
    /// REGKEEPER_REGISTRY_SCANNER_PASSWORD); never logged.
    pub scanner_password: Option<String>,
    /// Scanners of a Basic-auth registry get `username`/`password` when no
    /// scanner account is configured (explicit opt-in).
    pub share_password_with_scanners: bool,
}

/// One entry of `[registry] token_realms`: where a token realm may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRealm {
    /// A host name or address: any port, the scheme as the registry allows.
    Host(String),
    /// `scheme://host:port` exactly (ascii serialisation of the origin).
    Origin(String),
}

impl TokenRealm {
    /// Whether a realm at `url` is covered by this entry.
    pub fn allows(&self, url: &url::Url) -> bool {
        match self {
            TokenRealm::Host(host) => url
                .host_str()
                .is_some_and(|realm_host| realm_host.eq_ignore_ascii_case(host)),
            TokenRealm::Origin(origin) => url.origin().ascii_serialization() == *origin,
        }
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url.as_str())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("catalog_page_size", &self.catalog_page_size)
            .field("token_realms", &self.token_realms)
            .field("scanner_username", &self.scanner_username)
            .field(
                "scanner_password",
                &self.scanner_password.as_ref().map(|_| REDACTED),
            )
            .field(
                "share_password_with_scanners",
                &self.share_password_with_scanners,
            )
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
            .field("token", &self.token.as_ref().map(|_| REDACTED))
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
    /// How log lines are written (`REGKEEPER_LOG_FORMAT` overrides it).
    pub log_format: LogFormat,
}

/// `[daemon] log_format`: how log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line of text per record: time, level, target, message.
    #[default]
    Text,
    /// One JSON object per line, with the structured fields of run lines.
    Json,
}

impl LogFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The name as written in `log_format = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format called `name`, if any.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        LogFormat::ALL
            .into_iter()
            .find(|format| format.name() == name)
    }
}

/// `[metrics]`: where `GET /metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// A listener of its own for `/metrics`; None for none.
    pub listen: Option<std::net::SocketAddr>,
    /// Whether the intake's listener serves `/metrics` too.
    pub intake: bool,
    /// How long the queue gauges, read from the database, are reused
    /// between scrapes.
    pub queue_refresh: Duration,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            listen: None,
            intake: true,
            queue_refresh: Duration::from_secs(5),
        }
    }
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
    /// Where the schedule is written (`FILE:LINE:COLUMN`), for messages;
    /// empty when it was not read from a file.
    pub position: String,
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
    /// `gc`.
    Gc(GcOptions),
}

impl HandlerConfig {
    /// The handler's name as written in `handler = "..."`.
    pub fn name(&self) -> &'static str {
        match self {
            HandlerConfig::Events(_) => "events",
            HandlerConfig::Sync(_) => "sync",
            HandlerConfig::Security(_) => "security",
            HandlerConfig::Gc(_) => "gc",
        }
    }
}

/// The handlers that exist, as `handler = "..."` names them.
pub const HANDLERS: [&str; 4] = ["events", "sync", "security", "gc"];

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

/// Keys of a `gc` job.
#[derive(Debug, Clone, PartialEq)]
pub struct GcOptions {
    /// `[[jobs.NAME.policy]]`, in file order; at least one.
    pub policies: Vec<GcPolicy>,
    /// Largest fraction (0..=1) of the tags the policies select that one
    /// pass may delete without `--force`.
    pub max_delete_fraction: f64,
}

/// The default of `max_delete_fraction` of a `gc` job.
pub const GC_MAX_DELETE_FRACTION: f64 = 0.5;

/// One `[[jobs.NAME.policy]]`: which repositories it selects and what it
/// keeps there. A tag of a selected repository that no rule keeps is
/// deleted, unless another policy selecting the repository keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct GcPolicy {
    /// `name`, or `policy N` (1-based, in file order).
    pub name: String,
    /// Repositories it selects (any pattern matches).
    pub repositories: Vec<crate::config::Glob>,
    /// Repositories it leaves out even when `repositories` matches.
    pub exclude: Vec<crate::config::Glob>,
    /// Keep the newest N tags by push time in each repository.
    pub keep_latest: Option<u32>,
    /// Keep tags pushed within this long.
    pub keep_pushed_within: Option<Duration>,
    /// Keep tags pulled within this long.
    pub keep_pulled_within: Option<Duration>,
    /// Keep tags whose name matches any of these.
    pub keep_tags: Vec<crate::config::Glob>,
}

impl GcPolicy {
    /// Whether the policy selects `repository`.
    pub fn selects(&self, repository: &str) -> bool {
        self.repositories
            .iter()
            .any(|pattern| pattern.matches(repository))
            && !self
                .exclude
                .iter()
                .any(|pattern| pattern.matches(repository))
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
#[derive(Clone, PartialEq)]
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
    /// Bearer token, read by [`load`](super::load()) from `token_file`; never
    /// logged.
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
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("file", &self.file)
            .finish()
    }
}
