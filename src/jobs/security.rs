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

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{ScannerConfig, SecurityOptions};
use crate::registry::{Client, Manifest};
use crate::scanner::{self, Finding, PullCredential, Scanner, Target};
use crate::store::{
    ScanCandidate, ScanPolicy, ScanReport, ScanSettled, ScanSettlement, ScanState, ScannerOutcome,
    ScannerResult, Store, VulnerabilityWrite,
};
use crate::time::duration_ms;

use super::{Handler, JobContext, Outcome};

/// Candidates fetched from the store at a time.
const BATCH: usize = 64;
/// First wait after a failed scan; doubles with each attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(60);
/// Longest wait after a failed scan.
const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// A clock in milliseconds since the epoch; tests pass a fixed one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Where scan targets come from: the registry in production.
pub trait Images: Send + Sync {
    /// The images to scan for one candidate: the manifest itself, or each
    /// platform image of an index.
    fn targets(&self, candidate: &ScanCandidate) -> anyhow::Result<Vec<Target>>;
}

/// [`Images`] from the registry: manifests through the client, layers at
/// the registry's blob URLs, pull credentials from the client.
pub struct RegistryImages {
    client: Arc<Client>,
}

impl RegistryImages {
    /// Wraps the shared registry client.
    pub fn new(client: Arc<Client>) -> RegistryImages {
        RegistryImages { client }
    }

    fn target(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Manifest,
        credential: Arc<dyn PullCredential>,
    ) -> Target {
        Target {
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            layers: manifest
                .layers
                .iter()
                .map(|layer| scanner::Layer {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                    url: self.client.blob_url(repository, &layer.digest),
                })
                .collect(),
            registry_url: self
                .client
                .base_url()
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            credential,
        }
    }
}

/// A pull credential for one repository, asked of the registry client each
/// time (the client caches tokens and renews them before they expire).
struct RepositoryCredential {
    client: Arc<Client>,
    repository: String,
}

impl PullCredential for RepositoryCredential {
    fn authorization(&self) -> anyhow::Result<Option<String>> {
        self.client
            .pull_authorization(&self.repository)
            .map_err(|error| anyhow::anyhow!("{error}"))
    }
}

impl Images for RegistryImages {
    fn targets(&self, candidate: &ScanCandidate) -> anyhow::Result<Vec<Target>> {
        let repository = &candidate.repository;
        let manifest = self
            .client
            .manifest(repository, &candidate.digest)
            .map_err(|error| {
                anyhow::Error::new(error).context(format!(
                    "fetching manifest {repository}@{}",
                    candidate.digest
                ))
            })?;
        let credential: Arc<dyn PullCredential> = Arc::new(RepositoryCredential {
            client: self.client.clone(),
            repository: repository.clone(),
        });
        if manifest.children.is_empty() {
            return Ok(vec![self.target(
                repository,
                &candidate.tag,
                &manifest,
                credential,
            )]);
        }
        // An index: scan each platform image; attestations and other
        // non-images (platform unknown/unknown) are skipped.
        let mut targets = Vec::new();
        for child in &manifest.children {
            if child
                .platform
                .as_ref()
                .is_some_and(|platform| platform.os == "unknown")
            {
                continue;
            }
            let image = self
                .client
                .manifest(repository, &child.descriptor.digest)
                .map_err(|error| {
                    anyhow::Error::new(error).context(format!(
                        "fetching manifest {repository}@{}",
                        child.descriptor.digest
                    ))
                })?;
            if image.children.is_empty() {
                targets.push(self.target(repository, &candidate.tag, &image, credential.clone()));
            }
        }
        Ok(targets)
    }
}

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

/// What happened to one digest.
enum Done {
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

/// What the workers of one run share about unreachable servers: a
/// registry that cannot be reached stops the pass; a scanner that cannot be
/// reached is asked no more in this pass. Neither costs an image an attempt.
#[derive(Default)]
struct Outages {
    registry: Mutex<Option<String>>,
    scanners: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Outages {
    fn registry_down(&self) -> bool {
        self.registry.lock().is_ok_and(|down| down.is_some())
    }

    fn scanner_down(&self, scanner: &str) -> bool {
        self.scanners
            .lock()
            .is_ok_and(|down| down.contains_key(scanner))
    }

    fn registry_failed(&self, error: String) {
        if let Ok(mut down) = self.registry.lock() {
            down.get_or_insert(error);
        }
    }

    fn scanner_failed(&self, scanner: &str, error: String) {
        if let Ok(mut down) = self.scanners.lock() {
            down.entry(scanner.to_string()).or_insert(error);
        }
    }

    /// The run's error, if something was unreachable.
    fn error(&self, waiting: i64) -> Option<anyhow::Error> {
        if let Some(error) = self.registry.lock().ok().and_then(|down| down.clone()) {
            return Some(anyhow::anyhow!(
                "registry unreachable: {waiting} images wait for it and were given back without \
                 an attempt ({error})"
            ));
        }
        let down = self.scanners.lock().ok()?;
        let (first, error) = down.iter().next()?;
        let names: Vec<&str> = down.keys().map(String::as_str).collect();
        Some(anyhow::anyhow!(
            "scanner {} unreachable: asked once this pass, {waiting} images wait for it without \
             an attempt ({first}: {error})",
            names.join(", ")
        ))
    }
}

/// Whether `error` says the registry could not be reached (no answer
/// after the client's retries, or its breaker open).
fn registry_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<crate::registry::RegistryError>(),
            Some(crate::registry::RegistryError::Transport(_))
        )
    })
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
            lease_ms: duration_ms(self.options.lease),
            rescan_after_ms: Some(duration_ms(self.options.rescan_after)),
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
    fn process(
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

/// Hands candidates to the workers, refilling from the store; each digest
/// at most once per run.
struct Feeder {
    queue: VecDeque<ScanCandidate>,
    seen: HashSet<String>,
    exhausted: bool,
}

impl Handler for Security {
    fn run(&self, ctx: &JobContext) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        if self.scanners.is_empty() {
            log::info!("job={} no scanner is enabled; nothing to do", ctx.job_name);
            return Ok(outcome);
        }
        let store: &dyn Store = ctx.store.as_ref();
        let registry_id = store.ensure_registry(&self.registry_host)?;
        // A scanner removed from the configuration holds no tag back (the
        // tags' state counts enabled scanners only): its results and
        // reports go, and the tags it held are settled again in this run.
        let forgotten = store.forget_scanners(&self.enabled())?;
        let retry_failed = ctx.options.retry_failed;
        let feeder = Mutex::new(Feeder {
            queue: VecDeque::new(),
            seen: HashSet::new(),
            exhausted: false,
        });
        let outages = Outages::default();
        let next = || -> anyhow::Result<Option<ScanCandidate>> {
            let mut feeder = feeder
                .lock()
                .map_err(|_| anyhow::anyhow!("a scan worker panicked"))?;
            loop {
                // A registry that cannot be reached ends the pass.
                if ctx.cancel.is_cancelled() || outages.registry_down() {
                    return Ok(None);
                }
                if let Some(candidate) = feeder.queue.pop_front() {
                    return Ok(Some(candidate));
                }
                if feeder.exhausted {
                    return Ok(None);
                }
                let fresh: Vec<ScanCandidate> = store
                    .scan_candidates(registry_id, &self.policy(retry_failed, BATCH))?
                    .into_iter()
                    .filter(|candidate| !feeder.seen.contains(&candidate.digest))
                    .collect();
                if fresh.is_empty() {
                    feeder.exhausted = true;
                }
                for candidate in fresh {
                    feeder.seen.insert(candidate.digest.clone());
                    feeder.queue.push_back(candidate);
                }
            }
        };
        let totals = Mutex::new(Outcome::default());
        let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let remember = |error: anyhow::Error| {
            if let Ok(mut slot) = first_error.lock() {
                slot.get_or_insert(error);
            }
        };
        let workers = self.options.concurrency.max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let candidate = match next() {
                        Ok(Some(candidate)) => candidate,
                        Ok(None) => break,
                        Err(error) => {
                            remember(error);
                            break;
                        }
                    };
                    let done =
                        self.process(store, &ctx.claimant, &candidate, retry_failed, &outages);
                    let Ok(mut totals) = totals.lock() else { break };
                    match done {
                        Ok(Done::Settled {
                            scanned,
                            reports,
                            failures,
                            vulnerabilities,
                        }) => {
                            if scanned == ScanState::Done {
                                totals.add("scanned", 1);
                            }
                            if reports > 0 {
                                totals.add("reports", reports);
                                totals.add("vulnerabilities", vulnerabilities as i64);
                            }
                            if failures > 0 {
                                totals.add("failed", 1);
                                totals.add("scanner_failures", failures);
                            }
                            if scanned == ScanState::Failed {
                                totals.add("gave_up", 1);
                            }
                        }
                        Ok(Done::Discarded) => totals.add("discarded", 1),
                        Ok(Done::Waiting) => totals.add("waiting", 1),
                        Ok(Done::Lost) => totals.add("taken_elsewhere", 1),
                        Err(error) => {
                            // A database error: stop this worker, report it.
                            drop(totals);
                            remember(error);
                            break;
                        }
                    }
                });
            }
        });
        if let Ok(totals) = totals.into_inner() {
            outcome = totals;
        }
        if forgotten > 0 {
            outcome.add("forgotten_results", forgotten as i64);
        }
        let pruned = store.prune_scan_results()?;
        if pruned > 0 {
            outcome.add("pruned_results", pruned as i64);
        }
        if let Ok(Some(error)) = first_error.into_inner() {
            return Err(error.context("scanning images"));
        }
        let waiting = outcome.counts.get("waiting").copied().unwrap_or(0);
        if let Some(error) = outages.error(waiting) {
            return Err(error);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScannerKind;

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
