//! Loading: [`load`] reads the file, the environment and the `*_file`
//! secrets; [`parse`] and [`parse_with_env`] are pure (the environment comes
//! in as a function) and hand the text to the checks. Loading never writes
//! files.

use std::path::Path;

use anyhow::Context as _;

use super::check::Checker;
use super::raw::RawConfig;
use super::{Config, Database};

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
    let checker = Checker::new(text, path);
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
    if let (None, Some(secret_path)) = (
        &config.registry.scanner_password,
        &secret_files.registry_scanner_password,
    ) {
        config.registry.scanner_password = Some(
            read_secret(secret_path)
                .with_context(|| format!("{file}: [registry] scanner_password_file"))?,
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
