//! `[metrics]`: the address of `/metrics`'s own listener (never the
//! intake's), whether the intake serves it too, and how long the queue
//! gauges are reused.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{Checker, Positive, Scope};
use crate::config::raw::RawMetrics;
use crate::config::{MetricsConfig, NotificationsConfig};

impl Checker<'_> {
    /// `[metrics]`; `notifications` is the intake it may share.
    pub(super) fn metrics(
        &self,
        raw: Option<&Spanned<RawMetrics>>,
        notifications: &NotificationsConfig,
    ) -> anyhow::Result<MetricsConfig> {
        let section = Scope::Section("metrics");
        let metrics = raw.map(Spanned::get_ref);
        let defaults = MetricsConfig::default();
        let listen = match metrics.and_then(|metrics| metrics.listen.as_ref()) {
            None => None,
            Some(value) if value.get_ref().is_empty() => None,
            Some(value) => {
                let address = value.get_ref().parse::<SocketAddr>().map_err(|_| {
                    self.error(
                        &value.span(),
                        section,
                        format!(
                            "listen: invalid address {:?} (expected IP:PORT like \"127.0.0.1:9185\", or \"\" for no listener of its own)",
                            value.get_ref()
                        ),
                    )
                })?;
                if notifications.listen == Some(address) {
                    return Err(self.error(
                        &value.span(),
                        section,
                        format!(
                            "listen: {address} is the intake's address ([notifications] listen), which serves /metrics already (intake = true)"
                        ),
                    ));
                }
                Some(address)
            }
        };
        let intake = metrics
            .and_then(|metrics| metrics.intake.as_ref())
            .map_or(defaults.intake, |intake| *intake.get_ref());
        let queue_refresh = self.duration_or(
            metrics.and_then(|metrics| metrics.queue_refresh.as_ref()),
            section,
            "queue_refresh",
            defaults.queue_refresh,
            Positive::No,
        )?;
        if queue_refresh > MAX_QUEUE_REFRESH {
            let value = metrics.and_then(|metrics| metrics.queue_refresh.as_ref());
            let span = value.map_or(0..0, Spanned::span);
            return Err(self.error(
                &span,
                section,
                format!(
                    "queue_refresh: {} is too long (at most {}: the queue gauges would be older than most scrape intervals)",
                    humantime::format_duration(queue_refresh),
                    humantime::format_duration(MAX_QUEUE_REFRESH)
                ),
            ));
        }
        Ok(MetricsConfig {
            listen,
            intake,
            queue_refresh,
        })
    }
}

/// The longest `queue_refresh`: a scrape interval is rarely longer.
const MAX_QUEUE_REFRESH: Duration = Duration::from_secs(5 * 60);
