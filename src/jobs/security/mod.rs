//! The `security` handler: scans images with every enabled scanner and
//! stores what they find. Work is per manifest digest (one scan serves every
//! tag with that digest, in every repository). A digest is due when it is
//! new or re-pushed, when its last scan is older than `rescan_after`, when a
//! crashed run's lease on it expired, or (with `--retry-failed`) when it
//! failed for good. Each digest is claimed under a lease and asked of the
//! scanners whose own report on it is due ([`due_scanners`]); the results
//! are stored only if the claim still holds (a re-push, delete or takeover
//! during the scan wins), in one transaction. Each scanner's report stands
//! on its own: one that answered replaces only its own previous results;
//! one that failed (error, timeout, unreachable) keeps its previous results
//! (stale), counts an attempt, records the error and backs off, and only it
//! is asked again; after `max_attempts` it has failed for good. Tags are
//! done when every enabled scanner has a current report, failed when the
//! scanners without one have all failed for good.
//!
//! Scans run on up to `concurrency` std threads inside one run; the handler
//! stays synchronous. It never touches HTTP itself: manifests come from the
//! registry client and reports from `crate::scanner`.

mod images;
mod outages;
mod pass;
mod scan;

use std::sync::Arc;
use std::time::Duration;

use crate::config::SecurityOptions;
use crate::scanner::Scanner;
use crate::store::{ScanPolicy, ScanReport};

pub use images::{Images, RegistryImages};
pub use scan::scanners;

/// Candidates fetched from the store at a time.
const BATCH: usize = 64;
/// First wait after a failed scan; doubles with each attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(60);
/// Longest wait after a failed scan.
const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// A clock in milliseconds since the epoch; tests pass a fixed one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How long to wait before trying a digest again after its `attempts`-th
/// failure: one minute, doubling, at most an hour.
pub fn backoff(attempts: i64) -> Duration {
    let attempts = u32::try_from(attempts.max(0)).unwrap_or(u32::MAX);
    crate::time::backoff(BACKOFF_BASE, BACKOFF_MAX, attempts)
}

/// The `security` handler.
pub struct Security {
    scanners: Vec<Arc<dyn Scanner>>,
    images: Arc<dyn Images>,
    options: SecurityOptions,
    registry_host: String,
    clock: Clock,
}

impl Security {
    /// A handler over these scanners and images, for the tags of the
    /// registry `registry_host` (`host:port`), reading time from `clock`.
    pub fn new(
        scanners: Vec<Arc<dyn Scanner>>,
        images: Arc<dyn Images>,
        options: SecurityOptions,
        registry_host: String,
        clock: Clock,
    ) -> Security {
        Security {
            scanners,
            images,
            options,
            registry_host,
            clock,
        }
    }

    /// The handler of a `security` job: the enabled `[security.NAME]`
    /// scanners, images from the shared registry client, the wall clock.
    pub fn from_resources(
        options: &SecurityOptions,
        resources: &super::Resources,
    ) -> anyhow::Result<Security> {
        // The registry's row, named as every handler names it.
        let registry_host = super::registry_hostname(&resources.config.registry.url);
        Ok(Security::new(
            scanners(&resources.config.security)?,
            Arc::new(RegistryImages::new(resources.registry.clone())),
            options.clone(),
            registry_host,
            Arc::new(crate::time::now_ms),
        ))
    }

    fn policy(&self, retry_failed: bool, limit: usize) -> ScanPolicy {
        ScanPolicy {
            now: (self.clock)(),
            lease_ms: crate::time::duration_ms(self.options.lease),
            rescan_after_ms: Some(crate::time::duration_ms(self.options.rescan_after)),
            retry_failed,
            limit,
        }
    }

    /// The names of the enabled scanners.
    fn enabled(&self) -> Vec<String> {
        self.scanners
            .iter()
            .map(|scanner| scanner.name().to_string())
            .collect()
    }
}

/// The enabled scanners to ask about a digest under `policy`: those with
/// no report yet, those whose report is older than `rescan_after`, those
/// whose latest attempt failed once their backoff is over, and (with
/// `retry_failed`) those that failed for good. A scanner with a current
/// report is not asked again before `rescan_after`.
pub fn due_scanners(
    enabled: &[String],
    reports: &[ScanReport],
    policy: &ScanPolicy,
) -> Vec<String> {
    let rescan_cutoff = policy
        .rescan_after_ms
        .map(|after| policy.now.saturating_sub(after));
    enabled
        .iter()
        .filter(|scanner| {
            let Some(report) = reports.iter().find(|report| &report.scanner == *scanner) else {
                return true;
            };
            if report.failed {
                policy.retry_failed
            } else if report.last_error.is_some() || report.scanned_at.is_none() {
                report.not_before.is_none_or(|at| at <= policy.now)
            } else {
                match (report.scanned_at, rescan_cutoff) {
                    (Some(scanned_at), Some(cutoff)) => scanned_at <= cutoff,
                    _ => false,
                }
            }
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScannerConfig, ScannerKind};

    #[test]
    fn enabled_scanners_are_built_by_kind_name() {
        let config = |kind, enabled| ScannerConfig {
            kind,
            enabled,
            server: Some(url::Url::parse("http://127.0.0.1:6060").unwrap()),
            timeout: Duration::from_secs(5),
            username: Some("user".into()),
            password: Some("pass".into()),
            token: None,
            token_file: None,
            file: None,
        };
        let built = scanners(&[
            config(ScannerKind::Clair, true),
            config(ScannerKind::Adapter, false),
        ])
        .unwrap();
        let names: Vec<&str> = built.iter().map(|scanner| scanner.name()).collect();
        assert_eq!(names, ["clair"]);
        let fixture = ScannerConfig {
            server: None,
            file: Some("/nonexistent/fixture.json".into()),
            ..config(ScannerKind::Fixture, true)
        };
        let error = scanners(&[fixture]).err().unwrap();
        assert!(format!("{error:#}")
            .starts_with("building scanner [security.fixture]: reading fixture"));
    }

    fn report(scanner: &str, scanned_at: Option<i64>, error: Option<&str>) -> ScanReport {
        ScanReport {
            scanner: scanner.into(),
            scanned_at,
            attempted_at: 0,
            attempts: u8::from(error.is_some()).into(),
            last_error: error.map(str::to_string),
            not_before: error.map(|_| 1_000),
            failed: false,
        }
    }

    #[test]
    fn only_scanners_whose_own_report_is_due_are_asked() {
        let enabled = [
            "adapter".to_string(),
            "clair".to_string(),
            "fixture".to_string(),
        ];
        let policy = |now: i64, retry_failed: bool| ScanPolicy {
            now,
            lease_ms: 60_000,
            rescan_after_ms: Some(10_000),
            retry_failed,
            limit: 1,
        };
        let reports = [
            report("adapter", Some(100), Some("answered 500")),
            report("clair", Some(500), None),
            report("removed", None, Some("gone")),
        ];
        // No report (fixture) is due at once; a failed one after its backoff;
        // a current one after rescan_after.
        assert_eq!(
            due_scanners(&enabled, &reports, &policy(999, false)),
            ["fixture"]
        );
        assert_eq!(
            due_scanners(&enabled, &reports, &policy(1_000, false)),
            ["adapter", "fixture"]
        );
        assert_eq!(
            due_scanners(&enabled, &reports, &policy(10_500, false)),
            ["adapter", "clair", "fixture"]
        );
        let gave_up = [ScanReport {
            failed: true,
            ..report("adapter", Some(100), Some("answered 500"))
        }];
        assert!(due_scanners(&enabled[..1], &gave_up, &policy(5_000, false)).is_empty());
        assert_eq!(
            due_scanners(&enabled[..1], &gave_up, &policy(5_000, true)),
            ["adapter"]
        );
        let never = ScanPolicy {
            rescan_after_ms: None,
            ..policy(i64::MAX, false)
        };
        assert!(due_scanners(&enabled[1..2], &reports, &never).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(7), Duration::from_secs(3600));
        assert_eq!(backoff(1000), Duration::from_secs(3600));
        assert_eq!(backoff(0), Duration::from_secs(60));
    }
}
