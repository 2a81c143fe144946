//! Configuration: schedules.toml read once into validated types. Raw, then
//! validated, once: the serde mirror knows no rules, the checks know no I/O,
//! and only loading touches files and the environment. Errors name the
//! file, line and column, the section or job, and the value. Loading never
//! writes files. Nothing here opens a connection or imports the store.
//!
//! - `model.rs`: the validated types ([`Config`], [`Database`],
//!   [`JobConfig`], [`HandlerConfig`] and the handlers' options, the
//!   scanners) and their `Debug` output, which hides every secret.
//! - `load.rs`: [`load`](load()) (file, environment, `*_file` secrets), [`parse`]
//!   and [`parse_with_env`] (pure).
//! - `raw.rs`: the serde mirror of the file (`deny_unknown_fields`,
//!   positions, `[jobs.NAME]` in file order); no defaults, no logic.
//! - `check/`: the checks that turn the raw file into the model, one file
//!   per section.
//! - `glob.rs`: the glob patterns of the `gc` policies ([`Glob`]), pure.
//! - `position.rs`: which table and key a byte offset of the text falls in,
//!   and its line and column.
//! - `postgres_url.rs`: PostgreSQL URLs, pure: the TLS parameters taken out
//!   and validated (`split_url`), secrets hidden for messages
//!   (`redact_url`); shared with the store, which connects.
//! - `tests.rs` (every valid form, every error message as a literal) and
//!   `properties.rs` (a hostile value for every known key).

mod check;
mod glob;
mod load;
mod model;
mod position;
pub(crate) mod postgres_url;
pub(crate) mod raw;

pub use glob::Glob;
pub use load::{load, load_for_reading, parse, parse_with_env};
pub(crate) use load::{
    ENV_DATABASE_PASSWORD, ENV_DATABASE_URL, ENV_NOTIFY_TOKEN, ENV_REGISTRY_PASSWORD,
    ENV_REGISTRY_SCANNER_PASSWORD,
};
pub use model::MIN_HEARTBEATS_PER_EXPIRY;
pub use model::{
    Config, DaemonConfig, Database, EventsOptions, GcOptions, GcPolicy, HandlerConfig, JobConfig,
    KeyedFile, LogFormat, MetricsConfig, NotificationsConfig, RegistryConfig, ScannerConfig,
    ScannerKind, Schedule, SecretFiles, SecurityOptions, Strategy, SyncOptions, TokenRealm,
};
pub(crate) use model::{HANDLERS, REDACTED};

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
