//! The checks: [`Checker`] turns the serde mirror (`raw.rs`) into the
//! validated model (`model.rs`) once, one file per section (`database.rs`,
//! `registry.rs`, `notifications.rs`, `daemon.rs`, `metrics.rs`, `scanners.rs`,
//! `jobs.rs` with each handler's options, `gc.rs` the `gc` policies). This file holds what every section uses:
//! the error format `FILE:LINE:COL: [section] | job "NAME": message`, and
//! the URL, duration and integer checks. Checks are pure: no file, no
//! environment variable (the caller passes a lookup), no connection.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::position::{line_column, locate, TableLabel};
use super::raw::RawConfig;
use super::{Config, Database, KeyedFile, ScannerKind, SecretFiles};

mod daemon;
mod database;
mod gc;
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
    /// The configuration file's directory: relative paths in the file are
    /// resolved against it, not against the working directory.
    base: PathBuf,
}

impl Checker<'_> {
    /// A checker of `text`, naming `path` in its errors.
    pub(super) fn new<'a>(text: &'a str, path: &Path) -> Checker<'a> {
        Checker {
            text,
            file: path.display().to_string(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// A path written in the file, resolved against the file's directory.
    fn file_path(&self, written: &str) -> PathBuf {
        let path = Path::new(written);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// `file:line:column: scope key`, the prefix of messages about what
    /// the key names.
    fn origin(&self, span: &Range<usize>, scope: Scope<'_>, key: &str) -> String {
        let (line, column) = line_column(self.text, span.start);
        format!("{}:{line}:{column}: {scope}{key}", self.file)
    }

    /// The file a key names, resolved, with where the key is written.
    fn keyed_file(
        &self,
        value: &Spanned<String>,
        scope: Scope<'_>,
        key: &str,
        needed_for_reading: bool,
    ) -> KeyedFile {
        KeyedFile {
            path: self.file_path(value.get_ref()),
            origin: self.origin(&value.span(), scope, key),
            needed_for_reading,
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
        let env_database_url = env(super::ENV_DATABASE_URL).is_some();
        let secret_files = self.secret_files(&raw, &database, &security, env_database_url);
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

    /// The files the configuration names, with where each key is written.
    fn secret_files(
        &self,
        raw: &RawConfig,
        database: &Database,
        security: &[super::ScannerConfig],
        env_database_url: bool,
    ) -> SecretFiles {
        let raw_database = raw.database.as_ref().map(Spanned::get_ref);
        let raw_registry = raw.registry.as_ref().map(Spanned::get_ref);
        let raw_notifications = raw.notifications.as_ref().map(Spanned::get_ref);
        let database_section = Scope::Section("database");
        let registry_section = Scope::Section("registry");
        let database_password = raw_database
            .and_then(|database| database.password_file.as_ref())
            .map(|value| self.keyed_file(value, database_section, "password_file", true));
        let registry_password = raw_registry
            .and_then(|registry| registry.password_file.as_ref())
            .map(|value| self.keyed_file(value, registry_section, "password_file", false));
        let registry_scanner_password = raw_registry
            .and_then(|registry| registry.scanner_password_file.as_ref())
            .map(|value| self.keyed_file(value, registry_section, "scanner_password_file", false));
        let notify_token = raw_notifications
            .and_then(|notifications| notifications.token_file.as_ref())
            .map(|value| {
                self.keyed_file(value, Scope::Section("notifications"), "token_file", false)
            });
        let raw_url = raw_database.and_then(|database| database.url.as_ref());
        // Where the database url comes from: the environment, the file, or
        // the default.
        let url_origin = if env_database_url {
            format!("{}: {}", self.file, super::ENV_DATABASE_URL)
        } else {
            match raw_url {
                Some(url) => self.origin(&url.span(), database_section, "url"),
                None => format!("{}: [database] url (default)", self.file),
            }
        };
        let mut read_files = Vec::new();
        let database_file = match database {
            Database::Sqlite { path } => Some(KeyedFile {
                path: path.clone(),
                origin: url_origin,
                needed_for_reading: true,
            }),
            Database::Postgres { url, .. } => {
                if let Ok((_, tls)) = super::postgres_url::split_url(url) {
                    let mut tls_files = Vec::new();
                    if let Some(super::postgres_url::RootCerts::File(path)) = tls.root_certs {
                        tls_files.push(("sslrootcert", path));
                    }
                    if let Some(client) = tls.client_certificate {
                        tls_files.push(("sslcert", client.certificate));
                        tls_files.push(("sslkey", client.key));
                    }
                    for (parameter, path) in tls_files {
                        read_files.push(KeyedFile {
                            path,
                            origin: format!("{url_origin} {parameter}"),
                            needed_for_reading: true,
                        });
                    }
                }
                None
            }
        };
        if let Some(ca_file) = raw_registry.and_then(|registry| registry.ca_file.as_ref()) {
            read_files.push(self.keyed_file(ca_file, registry_section, "ca_file", false));
        }
        let mut scanner_tokens = Vec::new();
        let raw_scanners = raw
            .security
            .as_ref()
            .map_or(&[][..], |scanners| &scanners.0[..]);
        for scanner in security {
            let raw_scanner = raw_scanners
                .iter()
                .find(|(name, _)| name.get_ref() == scanner.kind.name())
                .map(|(_, raw_scanner)| raw_scanner.get_ref());
            let section_name = format!("security.{}", scanner.kind.name());
            let section = Scope::Section(&section_name);
            scanner_tokens.push(
                raw_scanner
                    .and_then(|raw_scanner| raw_scanner.token_file.as_ref())
                    .map(|value| self.keyed_file(value, section, "token_file", false)),
            );
            if let (ScannerKind::Fixture, Some(file)) = (
                scanner.kind,
                raw_scanner.and_then(|raw_scanner| raw_scanner.file.as_ref()),
            ) {
                read_files.push(self.keyed_file(file, section, "file", false));
            }
        }
        SecretFiles {
            database_password,
            registry_password,
            registry_scanner_password,
            notify_token,
            scanner_tokens,
            database_file,
            read_files,
        }
    }

    /// A secret from the environment variable `name`: None when it is
    /// unset. Set but empty (or only white space) is an error naming the
    /// variable: an empty value never replaces a secret file nor turns a
    /// secret off (an unset `${VAR}` in compose, a placeholder line in an
    /// EnvironmentFile).
    fn env_secret(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        name: &str,
    ) -> anyhow::Result<Option<String>> {
        match env(name) {
            Some(value) if value.trim().is_empty() => Err(anyhow::anyhow!(
                "{}: {name} is set but empty (unset it, or give it a value)",
                self.file
            )),
            value => Ok(value),
        }
    }

    /// A secret written inline: empty (or only white space) is an error.
    fn inline_secret(
        &self,
        value: Option<&Spanned<String>>,
        scope: Scope<'_>,
        key: &str,
    ) -> anyhow::Result<Option<String>> {
        let Some(value) = value else { return Ok(None) };
        if value.get_ref().trim().is_empty() {
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key} is empty (remove the key, or write the secret)"),
            ));
        }
        Ok(Some(value.get_ref().clone()))
    }

    fn http_url(
        &self,
        value: &Spanned<String>,
        scope: Scope<'_>,
        key: &str,
    ) -> anyhow::Result<url::Url> {
        let text = value.get_ref();
        let url = url::Url::parse(text).map_err(|error| {
            let message = match (error, url_suggestion(text)) {
                (url::ParseError::RelativeUrlWithoutBase, Some(suggestion)) => {
                    format!("{key}: URL {text:?} has no scheme (did you mean {suggestion:?}?)")
                }
                (url::ParseError::RelativeUrlWithoutBase, None) => {
                    format!("{key}: URL {text:?} has no scheme (write http:// or https:// and the host)")
                }
                (error, _) => format!("{key}: invalid URL {text:?} ({error})"),
            };
            self.error(&value.span(), scope, message)
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            // `localhost:5000` parses as the scheme `localhost`.
            let suggestion = url_suggestion(text).map_or(String::new(), |suggestion| {
                format!(" (did you mean {suggestion:?}?)")
            });
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key}: URL {text:?} is not http:// or https://{suggestion}"),
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

    /// A fraction from 0.0 to 1.0.
    fn fraction_or(
        &self,
        value: Option<&Spanned<f64>>,
        scope: Scope<'_>,
        key: &str,
        default: f64,
    ) -> anyhow::Result<f64> {
        let Some(value) = value else {
            return Ok(default);
        };
        let fraction = *value.get_ref();
        if !(0.0..=1.0).contains(&fraction) {
            return Err(self.error(
                &value.span(),
                scope,
                format!("{key} {fraction} is out of range (expected 0.0 to 1.0)"),
            ));
        }
        Ok(fraction)
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

/// What a URL without a (known) scheme was probably meant to be: `http//h`
/// and `https//h` with the colon missing, `h:5000` or `h` without a
/// scheme. None when it cannot be told (no guess is better than a wrong
/// one).
fn url_suggestion(text: &str) -> Option<String> {
    for scheme in ["https", "http"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            let rest = rest.trim_start_matches([':', '/']);
            let separator = &text[scheme.len()..text.len() - rest.len()];
            if separator != "://" && !separator.is_empty() && !rest.is_empty() {
                return Some(format!("{scheme}://{rest}"));
            }
        }
    }
    // A bare host, optionally with a port and a path: `127.0.0.1:5000`,
    // `registry.example:5000/v2`.
    let host_port = text.split('/').next().unwrap_or(text);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()));
    (host_ok && port_ok && !text.contains("//")).then(|| format!("http://{text}"))
}

/// "a, b, c or d".
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
