//! The work on one digest: building the scanner clients from the
//! configuration, asking each due scanner about each image of a candidate,
//! and claiming, renewing and settling the digest in the store. The pass
//! loop that hands out candidates lives in `pass.rs`; outages in
//! `outages.rs`. Nothing here talks HTTP itself.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ScannerConfig;
use crate::scanner::{self, Finding, Scanner};
use crate::store::{
    ScanCandidate, ScanReport, ScanSettled, ScanSettlement, ScanState, ScannerOutcome,
    ScannerResult, Store, VulnerabilityWrite,
};

use super::outages::{registry_unreachable, Outages};
use super::{backoff, due_scanners, Security};
use crate::time::duration_ms;

/// Builds the scanner clients of the enabled `[security.NAME]` sections.
pub fn scanners(configs: &[ScannerConfig]) -> anyhow::Result<Vec<Arc<dyn Scanner>>> {
    configs
        .iter()
        .filter(|config| config.enabled)
        .map(|config| {
            let authorization = match (&config.username, &config.password, &config.token) {
                (Some(username), password, _) => {
                    use base64::Engine as _;
                    let pair = format!("{username}:{}", password.as_deref().unwrap_or(""));
                    Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ))
                }
                (None, _, Some(token)) => Some(format!("Bearer {token}")),
                _ => None,
            };
            let settings = scanner::Settings {
                name: config.kind.name().to_string(),
                server: config.server.clone(),
                timeout: config.timeout,
                authorization,
                file: config.file.clone(),
            };
            scanner::build(config.kind, &settings).map_err(|error| {
                anyhow::anyhow!(
                    "building scanner [security.{}]: {error:#}",
                    config.kind.name()
                )
            })
        })
        .collect()
}

/// What happened to one digest.
pub(super) enum Done {
    /// Settled: the tags' new state (unscanned: a scanner will be retried),
    /// the reports stored and the scanners that failed.
    Settled {
        scanned: ScanState,
        reports: i64,
        failures: i64,
        vulnerabilities: u64,
    },
    Discarded,
    Lost,
    /// Given back without an attempt: the registry or every due scanner
    /// is unreachable.
    Waiting,
}

impl Security {
    /// Asks each scanner in `due` about one image; what each made of it.
    /// A scanner that fails gets its next try after [`backoff`] of its
    /// failures so far (in `reports`) plus this one.
    fn scan(
        &self,
        candidate: &ScanCandidate,
        due: &[String],
        reports: &[ScanReport],
        outages: &Outages,
    ) -> Vec<ScannerOutcome> {
        if due.is_empty() {
            return Vec::new();
        }
        let failed = |scanner: &str, error: String| {
            let attempts = reports
                .iter()
                .find(|report| report.scanner == scanner)
                .map_or(0, |report| report.attempts)
                + 1;
            ScannerOutcome {
                scanner: scanner.to_string(),
                result: ScannerResult::Failed {
                    error,
                    not_before: (self.clock)().saturating_add(duration_ms(backoff(attempts))),
                },
            }
        };
        let targets = match self.images.targets(candidate) {
            Ok(targets) => targets,
            // The registry is down, not the image at fault: nobody is asked.
            Err(error) if registry_unreachable(&error) => {
                outages.registry_failed(format!("{error:#}"));
                return Vec::new();
            }
            // Without the image no scanner can be asked: each of them failed.
            Err(error) => {
                let message = format!("{error:#}");
                return due
                    .iter()
                    .map(|scanner| failed(scanner, message.clone()))
                    .collect();
            }
        };
        let mut outcomes = Vec::with_capacity(due.len());
        for scanner in &self.scanners {
            if !due.iter().any(|name| name == scanner.name())
                || outages.scanner_down(scanner.name())
            {
                continue;
            }
            let mut findings: Vec<Finding> = Vec::new();
            let mut error = None;
            let mut down = false;
            for target in &targets {
                match scanner.scan(target) {
                    Ok(found) => findings.extend(found),
                    // The scanner is down: no outcome, so no attempt, and
                    // it is asked no more this pass.
                    Err(failure) if scanner::is_unreachable(&failure) => {
                        outages.scanner_failed(scanner.name(), format!("{failure:#}"));
                        down = true;
                        break;
                    }
                    Err(failure) => {
                        error = Some(format!("{failure:#}"));
                        break;
                    }
                }
            }
            if down {
                continue;
            }
            if let Some(error) = error {
                outcomes.push(failed(scanner.name(), error));
                continue;
            }
            // An index's platform images share most findings.
            let writes = scanner::dedupe_sorted(findings)
                .into_iter()
                .map(|finding| VulnerabilityWrite {
                    name: finding.name,
                    scanner: scanner.name().to_string(),
                    severity: finding.severity.as_str().to_string(),
                    severity_raw: finding.severity_raw,
                    link: finding.link,
                    fixed_by: finding.fixed_by,
                    description: finding.description,
                    metadata: (!finding.metadata.is_null()).then(|| finding.metadata.to_string()),
                })
                .collect();
            outcomes.push(ScannerOutcome {
                scanner: scanner.name().to_string(),
                result: ScannerResult::Report(writes),
            });
        }
        outcomes
    }

    /// Claims, scans and settles one digest: only the scanners whose
    /// report is due are asked; the others' reports stand.
    pub(super) fn process(
        &self,
        store: &dyn Store,
        claimant: &str,
        candidate: &ScanCandidate,
        retry_failed: bool,
        outages: &Outages,
    ) -> anyhow::Result<Done> {
        let policy = self.policy(retry_failed, 1);
        if store
            .claim_scan(&candidate.digest, claimant, &policy)?
            .is_none()
        {
            return Ok(Done::Lost);
        }
        let reports = store.scan_reports(&candidate.digest)?;
        let enabled = self.enabled();
        let due = due_scanners(&enabled, &reports, &policy);
        // Renew the lease while the scanners work (a third of the lease at a
        // time), so a long scan is not taken over as if its daemon had died.
        let outcomes = std::thread::scope(|scope| {
            let (finished, wait) = std::sync::mpsc::channel::<()>();
            let renew_every = (self.options.lease / 3).max(Duration::from_millis(100));
            scope.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    wait.recv_timeout(renew_every)
                {
                    if let Err(error) =
                        store.renew_scan(&candidate.digest, claimant, (self.clock)())
                    {
                        log::warn!("renewing the lease on {}: {error:#}", candidate.digest);
                    }
                }
            });
            let outcomes = self.scan(candidate, &due, &reports, outages);
            drop(finished);
            outcomes
        });
        // Nobody due could be asked (the registry or the scanners are
        // down): give the claim back as it was, costing no attempt.
        if !due.is_empty() && outcomes.is_empty() {
            store.release_scan(&candidate.digest, claimant)?;
            return Ok(Done::Waiting);
        }
        let max_attempts = i64::from(self.options.max_attempts);
        let settlement = ScanSettlement {
            enabled,
            outcomes,
            max_attempts,
        };
        let settled =
            store.settle_scan(&candidate.digest, claimant, &settlement, (self.clock)())?;
        let (scanned, vulnerabilities) = match settled {
            ScanSettled::Settled {
                scanned,
                vulnerabilities,
                ..
            } => (scanned, vulnerabilities),
            ScanSettled::Discarded => {
                log::info!(
                    "scan of {} discarded: its tags changed during the scan",
                    candidate.digest
                );
                return Ok(Done::Discarded);
            }
        };
        let mut failures = 0;
        for outcome in &settlement.outcomes {
            let ScannerResult::Failed { error, .. } = &outcome.result else {
                continue;
            };
            failures += 1;
            let attempts = reports
                .iter()
                .find(|report| report.scanner == outcome.scanner)
                .map_or(0, |report| report.attempts)
                + 1;
            let kept = if reports
                .iter()
                .any(|report| report.scanner == outcome.scanner && report.scanned_at.is_some())
            {
                "; its previous report is kept"
            } else {
                ""
            };
            if attempts >= max_attempts {
                log::warn!(
                    "scanner {} failed for good on {} ({}:{}) after {attempts} attempts{kept}: {error}",
                    outcome.scanner,
                    candidate.digest,
                    candidate.repository,
                    candidate.tag
                );
            } else {
                log::warn!(
                    "scanner {} failed on {} ({}:{}) (attempt {attempts} of {max_attempts}){kept}: {error}",
                    outcome.scanner,
                    candidate.digest,
                    candidate.repository,
                    candidate.tag
                );
            }
        }
        let reports_stored = settlement.outcomes.len() as i64 - failures;
        Ok(Done::Settled {
            scanned,
            reports: reports_stored,
            failures,
            vulnerabilities,
        })
    }
}
