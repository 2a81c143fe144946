//! The serde mirror of schedules.toml: every table and key the file may
//! contain, with `deny_unknown_fields` and `Spanned` positions. No defaults,
//! no validation and no logic live here; `check/` turns this into the
//! validated `Config` once.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[database]`.
    pub database: Option<Spanned<RawDatabase>>,
    /// `[registry]`.
    pub registry: Option<Spanned<RawRegistry>>,
    /// `[notifications]`.
    pub notifications: Option<Spanned<RawNotifications>>,
    /// `[daemon]`.
    pub daemon: Option<Spanned<RawDaemon>>,
    /// `[metrics]`.
    pub metrics: Option<Spanned<RawMetrics>>,
    /// `[jobs.NAME]`, in file order.
    pub jobs: Option<Ordered<RawJob>>,
    /// `[security.NAME]`, in file order.
    pub security: Option<Ordered<RawScanner>>,
}

/// `[database]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `sqlite://PATH` or `postgres://user@host:port/db`.
    pub url: Option<Spanned<String>>,
    /// File holding the PostgreSQL password.
    pub password_file: Option<Spanned<String>>,
    /// Connections in the pool.
    pub pool_size: Option<Spanned<i64>>,
    /// How long start-up waits for the database.
    pub wait: Option<Spanned<String>>,
}

/// `[registry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// Base URL.
    pub url: Option<Spanned<String>>,
    /// User name.
    pub username: Option<Spanned<String>>,
    /// Password written inline.
    pub password: Option<Spanned<String>>,
    /// File holding the password.
    pub password_file: Option<Spanned<String>>,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<Spanned<String>>,
    /// Skip TLS verification.
    pub insecure_skip_tls_verify: Option<Spanned<bool>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<String>>,
    /// Worker pool size.
    pub concurrency: Option<Spanned<i64>>,
    /// `n` of catalog pages.
    pub catalog_page_size: Option<Spanned<i64>>,
    /// Token realms (hosts or origins) the credentials may go to.
    pub token_realms: Option<Spanned<Vec<Spanned<String>>>>,
    /// Read-only account handed to scanners of a Basic-auth registry.
    pub scanner_username: Option<Spanned<String>>,
    /// Its password written inline.
    pub scanner_password: Option<Spanned<String>>,
    /// File holding its password.
    pub scanner_password_file: Option<Spanned<String>>,
    /// Hand scanners the main credentials (explicit opt-in).
    pub share_password_with_scanners: Option<Spanned<bool>>,
}

/// `[notifications]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// `host:port`, or `""` to disable the intake.
    pub listen: Option<Spanned<String>>,
    /// File holding the exact `Authorization` header value.
    pub token_file: Option<Spanned<String>>,
    /// Allow a non-loopback listen without a token.
    pub allow_unauthenticated: Option<Spanned<bool>>,
    /// Largest accepted body: bytes, or text like `"1MiB"`.
    pub body_limit: Option<Spanned<ByteSize>>,
}

/// A size written as a number of bytes or as text with a unit.
#[derive(Debug)]
pub enum ByteSize {
    /// A plain number of bytes.
    Bytes(i64),
    /// Text like `"1MiB"`.
    Text(String),
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;

        impl Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a number of bytes or text like \"1MiB\"")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<ByteSize, E> {
                Ok(ByteSize::Bytes(value))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ByteSize, E> {
                Ok(ByteSize::Bytes(i64::try_from(value).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ByteSize, E> {
                Ok(ByteSize::Text(value.to_string()))
            }
        }

        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// `[daemon]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// How long shutdown waits for runs in flight.
    pub grace_period: Option<Spanned<String>>,
    /// Runs kept per job.
    pub keep_runs: Option<Spanned<i64>>,
    /// How often a run in progress renews its heartbeat.
    pub heartbeat: Option<Spanned<String>>,
    /// How long a run may go without a heartbeat before it is abandoned.
    pub abandon_after: Option<Spanned<String>>,
    /// `text` or `json`.
    pub log_format: Option<Spanned<String>>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `host:port` of a listener of its own, or `""` for none.
    pub listen: Option<Spanned<String>>,
    /// Whether the intake's listener serves `/metrics` too.
    pub intake: Option<Spanned<bool>>,
    /// How long the queue gauges are reused between scrapes.
    pub queue_refresh: Option<Spanned<String>>,
}

/// `[jobs.NAME]`: the common keys and every handler's own keys; which keys
/// fit which handler is checked by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// `events`, `sync`, `security` or `gc`.
    pub handler: Option<Spanned<String>>,
    /// Cron with seconds.
    pub schedule: Option<Spanned<String>>,
    /// Whether the scheduler runs it.
    pub enabled: Option<Spanned<bool>>,
    /// Longest run.
    pub timeout: Option<Spanned<String>>,
    /// Random delay added to each scheduled run.
    pub jitter: Option<Spanned<String>>,
    /// IANA time zone.
    pub timezone: Option<Spanned<String>>,
    /// events, security: attempts before an item is failed.
    pub max_attempts: Option<Spanned<i64>>,
    /// events: how long done events are kept.
    pub retain_done: Option<Spanned<String>>,
    /// events, security: how long a claim lasts.
    pub lease: Option<Spanned<String>>,
    /// events: events claimed per batch.
    pub batch_size: Option<Spanned<i64>>,
    /// events: first retry delay.
    pub backoff: Option<Spanned<String>>,
    /// events: longest retry delay.
    pub max_backoff: Option<Spanned<String>>,
    /// sync: the strategy.
    pub strategy: Option<Spanned<String>>,
    /// sync, gc: largest fraction of tags one pass may delete.
    pub max_delete_fraction: Option<Spanned<f64>>,
    /// gc: `[[jobs.NAME.policy]]`, the retention policies.
    pub policy: Option<Spanned<Vec<Spanned<RawPolicy>>>>,
    /// security: scan a tag again after this long.
    pub rescan_after: Option<Spanned<String>>,
    /// security: tags scanned at once.
    pub concurrency: Option<Spanned<i64>>,
}

/// `[[jobs.NAME.policy]]`: one retention policy of a `gc` job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Name used in reports and the audit.
    pub name: Option<Spanned<String>>,
    /// Glob patterns of the repositories it selects.
    pub repositories: Option<Spanned<Vec<Spanned<String>>>>,
    /// Glob patterns of repositories it leaves out.
    pub exclude: Option<Spanned<Vec<Spanned<String>>>>,
    /// Keep the newest N tags by push time, per repository.
    pub keep_latest: Option<Spanned<i64>>,
    /// Keep tags pushed within this long.
    pub keep_pushed_within: Option<Spanned<String>>,
    /// Keep tags pulled within this long.
    pub keep_pulled_within: Option<Spanned<String>>,
    /// Glob patterns of tag names to keep.
    pub keep_tags: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[security.NAME]`: one scanner.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScanner {
    /// Whether the scanner is used.
    pub enabled: Option<Spanned<bool>>,
    /// Base URL of the scanner.
    pub server: Option<Spanned<String>>,
    /// Per-scan timeout.
    pub timeout: Option<Spanned<String>>,
    /// File holding a bearer token.
    pub token_file: Option<Spanned<String>>,
    /// User name.
    pub username: Option<Spanned<String>>,
    /// Password.
    pub password: Option<Spanned<String>>,
    /// fixture: the JSON report file.
    pub file: Option<Spanned<String>>,
}

/// A table of named sub-tables, kept in file order with the positions of
/// names and values.
#[derive(Debug)]
pub struct Ordered<T>(pub Vec<(Spanned<String>, Spanned<T>)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedVisitor<T> {
            type Value = Ordered<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a table of named tables")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<T>>()?;
                    entries.push((name, value));
                }
                Ok(Ordered(entries))
            }
        }

        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}
