//! `[database]`: a `sqlite://PATH` or a `postgres://` url (its TLS
//! parameters checked here, the files they name read only when connecting),
//! the password moved out of the url, and the pool size.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{Checker, Positive, Scope};
use crate::config::postgres_url::{percent_decode, redact_url, split_url};
use crate::config::raw::RawDatabase;
use crate::config::{Database, ENV_DATABASE_PASSWORD, ENV_DATABASE_URL};

impl Checker<'_> {
    /// `[database] wait`: how long start-up waits for the database.
    pub(super) fn database_wait(
        &self,
        raw: Option<&Spanned<RawDatabase>>,
    ) -> anyhow::Result<Duration> {
        let section = Scope::Section("database");
        let raw_database = raw.map(Spanned::get_ref);
        let wait = raw_database.and_then(|database| database.wait.as_ref());
        self.duration_or(wait, section, "wait", Duration::from_secs(90), Positive::No)
    }

    /// `[database]`: the url (or REGKEEPER_DATABASE_URL), its password and
    /// the pool size.
    pub(super) fn database(
        &self,
        raw: Option<&Spanned<RawDatabase>>,
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
        let env_url = self.env_secret(env, ENV_DATABASE_URL)?;
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
            // A path from the environment is taken as written (relative to
            // the working directory); one from the file (or the default) is
            // relative to the file's directory.
            let path = if env_url.is_some() {
                PathBuf::from(file)
            } else {
                self.file_path(file)
            };
            return Ok(Database::Sqlite { path });
        }
        let redacted = redact_url(url_text);
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
        split_url(url_text).map_err(|error| fail(format!("url: {error:#}")))?;
        let mut password = url.password().map(percent_decode);
        // The password never stays in the URL, which is logged.
        let _ = url.set_password(None);
        if let Some(from_env) = self.env_secret(env, ENV_DATABASE_PASSWORD)? {
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
}
