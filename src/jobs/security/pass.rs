//! One pass of the `security` job: the [`Handler`] implementation, the
//! feeder that hands candidates from the store to the worker threads (each
//! digest at most once per pass), the totals and the pass's error. The work
//! on one digest is `scan.rs`; nothing here asks a scanner or the registry.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::store::{ScanCandidate, ScanState, Store};

use super::outages::Outages;
use super::scan::Done;
use super::{Security, BATCH};
use crate::jobs::{Handler, JobContext, Outcome};

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
