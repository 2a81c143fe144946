//! The checks: [`Checker`] turns the serde mirror (`raw.rs`) into the
//! validated model (`model.rs`) once, one file per section (`database.rs`,
//! `registry.rs`, `notifications.rs`, `daemon.rs`, `metrics.rs`, `scanners.rs`,
//! `jobs.rs` with each handler's options). This file holds what every section uses:
//! the error format `FILE:LINE:COL: [section] | job "NAME": message`, and
//! the URL, duration and integer checks. Checks are pure: no file, no
//! environment variable (the caller passes a lookup), no connection.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::position::{line_column, locate, TableLabel};
use super::raw::RawConfig;
use super::{Config, SecretFiles};

mod daemon;
mod database;
mod jobs;
mod metrics;
mod notifications;
mod registry;
mod scanners;

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
pub(super) struct Checker<'a> {
    text: &'a str,
    file: String,
}

impl Checker<'_> {
    /// A checker of `text`, naming `path` in its errors.
    pub(super) fn new<'a>(text: &'a str, path: &Path) -> Checker<'a> {
        Checker {
            text,
            file: path.display().to_string(),
        }
    }

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
    pub(super) fn toml_error(&self, error: &toml::de::Error) -> anyhow::Error {
        let span = error.span().unwrap_or(0..0);
        let (label, key) = locate(self.text, span.start);
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

    /// Validates the whole document, section by section; the first error
    /// found is the one reported.
    pub(super) fn config(
        &self,
        raw: RawConfig,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let database_wait = self.database_wait(raw.database.as_ref())?;
        let database = self.database(raw.database.as_ref(), env)?;
        let registry = self.registry(raw.registry.as_ref(), env)?;
        let notifications = self.notifications(raw.notifications.as_ref(), env)?;
        let daemon = self.daemon(raw.daemon.as_ref(), database_wait)?;
        let metrics = self.metrics(raw.metrics.as_ref(), &notifications)?;
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
            metrics,
            jobs,
            security,
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

/// The longest duration a key accepts: longer ones overflow the clock
/// (`Instant + Duration`) or milliseconds in `i64` where they are used.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Whether a zero duration is an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Positive {
    Yes,
    No,
}

/// "a, b, c or d".
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
