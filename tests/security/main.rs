//! The `security` job and the scanner clients against stand-in scanners of
//! ours (the support crate's `scanners`), a real docker-registry, and SQLite
//! and PostgreSQL: `clients` (each scanner API's client on its own), `job`
//! (the handler's lifecycle, on both databases), `reports` (several
//! scanners, each with its own report), `credentials` (what scanners are
//! handed to pull layers), `hostile` (manifests of a hostile registry), `binary` (the job through the real
//! binary, and what `vulns` and `status` show); `world` holds what the
//! handler tests share.

mod binary;
mod clients;
mod credentials;
mod hostile;
mod job;
mod reports;
mod world;

use std::time::Duration;

use regkeeper::scanner::Settings;

/// The clock of the handler tests and of the tags they record.
const T0: i64 = 1_800_000_000_000;

/// A scanner called `name` at `server`, answering within `timeout`.
fn settings(name: &str, server: &str, timeout: Duration) -> Settings {
    Settings {
        name: name.to_string(),
        server: Some(url::Url::parse(server).unwrap()),
        timeout,
        authorization: None,
        file: None,
    }
}
