//! `[daemon]`: the process-wide settings, and the rule that a run's expiry
//! spans several heartbeats.

use std::time::Duration;

use toml::Spanned;

use super::{Checker, Positive, Scope};
use crate::config::raw::RawDaemon;
use crate::config::{DaemonConfig, LogFormat, MIN_HEARTBEATS_PER_EXPIRY};

impl Checker<'_> {
    /// `[daemon]`; `database_wait` comes from `[database] wait`.
    pub(super) fn daemon(
        &self,
        raw: Option<&Spanned<RawDaemon>>,
        database_wait: Duration,
    ) -> anyhow::Result<DaemonConfig> {
        let section = Scope::Section("daemon");
        let raw_daemon = raw.map(Spanned::get_ref);
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
        let log_format = match raw_daemon.and_then(|daemon| daemon.log_format.as_ref()) {
            None => LogFormat::default(),
            Some(value) => LogFormat::from_name(value.get_ref()).ok_or_else(|| {
                self.error(
                    &value.span(),
                    section,
                    format!(
                        "unknown log_format {:?} (expected \"text\" or \"json\")",
                        value.get_ref()
                    ),
                )
            })?,
        };
        Ok(DaemonConfig {
            grace_period,
            keep_runs: keep_runs as usize,
            database_wait,
            heartbeat,
            abandon_after,
            log_format,
        })
    }
}
