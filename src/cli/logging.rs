//! The logger of the binary: env_logger on stderr, `RUST_LOG` (default
//! `info`), with the transport crates held at `info` whatever `RUST_LOG`
//! says. Their debug and trace output is raw traffic (request headers with
//! `Authorization: Basic ...`, token responses, TLS secrets), and secrets
//! never reach a log line. Nothing else is decided here.

use log::{LevelFilter, Log, Metadata, Record};

/// Crates whose records above `info` are dropped: the HTTP client and its
/// TLS, the intake's HTTP stack, the PostgreSQL driver.
pub const TRANSPORT_TARGETS: &[&str] = &[
    "ureq",
    "ureq_proto",
    "rustls",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "tower",
    "tower_http",
    "axum",
    "tokio_postgres",
    "postgres",
    "postgres_protocol",
];

/// Whether a record of `target` at `level` may be written.
pub fn admitted(target: &str, level: log::Level) -> bool {
    if level <= log::Level::Info {
        return true;
    }
    let crate_name = target.split("::").next().unwrap_or(target);
    !TRANSPORT_TARGETS.contains(&crate_name)
}

struct HoldBack(env_logger::Logger);

impl Log for HoldBack {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        admitted(metadata.target(), metadata.level()) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if admitted(record.target(), record.level()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the logger; a second call does nothing.
pub fn init() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .target(env_logger::Target::Stderr)
            .build();
    let max_level: LevelFilter = logger.filter();
    if log::set_boxed_logger(Box::new(HoldBack(logger))).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_crates_are_held_at_info_and_ours_are_not() {
        assert!(!admitted(
            "ureq::unversioned::transport::tcp",
            log::Level::Debug
        ));
        assert!(!admitted("ureq_proto::client", log::Level::Trace));
        assert!(!admitted("rustls", log::Level::Trace));
        assert!(admitted("ureq", log::Level::Warn));
        assert!(admitted("regkeeper::registry::client", log::Level::Trace));
        assert!(admitted("ureq_like_but_ours", log::Level::Trace));
    }
}
