//! Loading: [`load`] reads the file, the environment and the `*_file`
//! secrets; [`parse`] and [`parse_with_env`] are pure (the environment comes
//! in as a function) and hand the text to the checks. Loading never writes
//! files.

use std::path::Path;

use anyhow::Context as _;

use super::check::Checker;
use super::raw::RawConfig;
use super::{Config, ConfigError, Database, KeyedFile};

/// Environment variable that replaces `[database] url`.
pub const ENV_DATABASE_URL: &str = "REGKEEPER_DATABASE_URL";
/// Environment variable with the database password.
pub const ENV_DATABASE_PASSWORD: &str = "REGKEEPER_DATABASE_PASSWORD";
/// Environment variable with the registry password.
pub const ENV_REGISTRY_PASSWORD: &str = "REGKEEPER_REGISTRY_PASSWORD";
/// Environment variable with the password of `[registry] scanner_username`.
pub const ENV_REGISTRY_SCANNER_PASSWORD: &str = "REGKEEPER_REGISTRY_SCANNER_PASSWORD";
/// Environment variable with the notification token.
pub const ENV_NOTIFY_TOKEN: &str = "REGKEEPER_NOTIFY_TOKEN";

/// Reads and validates a configuration file, applies the environment
/// overrides, reads the secret files (`password_file`, `token_file`) and
/// checks the other files it names: the SQLite database's directory exists,
/// `ca_file`, the PostgreSQL TLS files and a fixture's `file` can be read.
/// Never writes anything.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    load_as(path, Purpose::Run)
}

/// Like [`load`], for the commands that only read the database (`status`,
/// `tags`, `vulns`): only the database's own secret and files are read or
/// checked; a registry or scanner secret file that is missing or unreadable
/// does not matter to them.
pub fn load_for_reading(path: &Path) -> anyhow::Result<Config> {
    load_as(path, Purpose::Read)
}

/// What a loaded configuration is for: which files must be there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The daemon, `--once`, `check`: everything.
    Run,
    /// The read-only commands: the database only.
    Read,
}

fn load_as(path: &Path, purpose: Purpose) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = parse_with_env(&text, path, &|name| std::env::var(name).ok())?;
    read_secret_files(&mut config, purpose)?;
    check_files(&config, purpose)?;
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
    let checker = Checker::new(text, path);
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => return Err(checker.toml_error(&error)),
    };
    checker.config(raw, path, env)
}

/// Reads every `*_file` secret into its field, unless the environment
/// already provided that secret (for [`Purpose::Read`], only the
/// database's). A trailing newline is dropped; an empty secret is an error
/// naming the key and its line.
fn read_secret_files(config: &mut Config, purpose: Purpose) -> anyhow::Result<()> {
    let secret_files = config.secret_files.clone();
    if let (Database::Postgres { password, .. }, Some(secret)) =
        (&mut config.database, &secret_files.database_password)
    {
        if password.is_none() {
            *password = Some(read_secret(secret)?);
        }
    }
    if purpose == Purpose::Read {
        return Ok(());
    }
    if let (None, Some(secret)) = (&config.registry.password, &secret_files.registry_password) {
        config.registry.password = Some(read_secret(secret)?);
    }
    if let (None, Some(secret)) = (
        &config.registry.scanner_password,
        &secret_files.registry_scanner_password,
    ) {
        config.registry.scanner_password = Some(read_secret(secret)?);
    }
    if let (None, Some(secret)) = (&config.notifications.token, &secret_files.notify_token) {
        config.notifications.token = Some(read_secret(secret)?);
    }
    for (scanner, secret) in config.security.iter_mut().zip(&secret_files.scanner_tokens) {
        if let (None, Some(secret)) = (&scanner.token, secret) {
            scanner.token = Some(read_secret(secret)?);
        }
    }
    Ok(())
}

/// Reads one secret file, dropping the trailing newline. Empty, or only
/// white space, is an error.
fn read_secret(secret: &KeyedFile) -> anyhow::Result<String> {
    let path = &secret.path;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .with_context(|| secret.origin.clone())?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.trim().is_empty() {
        return Err(ConfigError::new(format!(
            "{}: {} is empty (the file holds the secret alone)",
            secret.origin,
            path.display()
        ))
        .into());
    }
    Ok(value)
}

/// Checks the files that are read later, so that `check` finds them: the
/// SQLite database's directory exists (the file itself is created by the
/// daemon), the other files can be opened. For [`Purpose::Read`] only
/// the database's files.
fn check_files(config: &Config, purpose: Purpose) -> anyhow::Result<()> {
    let needed = |file: &&KeyedFile| purpose == Purpose::Run || file.needed_for_reading;
    if let Some(database) = config.secret_files.database_file.as_ref().filter(needed) {
        // Read-only commands need the file itself; the store says so.
        if purpose == Purpose::Run {
            let directory = match database.path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if !directory.is_dir() {
                return Err(ConfigError::new(format!(
                    "{}: the directory {} of the database file {} does not exist",
                    database.origin,
                    directory.display(),
                    database.path.display()
                ))
                .into());
            }
        }
    }
    for file in config.secret_files.read_files.iter().filter(needed) {
        std::fs::File::open(&file.path)
            .with_context(|| format!("reading {}", file.path.display()))
            .with_context(|| file.origin.clone())?;
    }
    Ok(())
}
