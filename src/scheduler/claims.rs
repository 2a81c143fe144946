//! Processes that are gone: runs a dead process left unfinished are
//! recorded abandoned once their heartbeat expired, and the event and scan
//! claims of regkeeper processes of this host that no longer run are given
//! back at once. The claimant id (`host:pid:random`) every run and claim
//! carries is made here. Blocking; nothing here runs a handler.

use std::time::Duration;

use log::{error, warn};

use crate::store::{RunOutcome, RunRecord, Store};
use crate::time::{duration_ms, now_ms};

/// Records as abandoned the runs (of `job`, or of every job) whose process
/// stopped without finishing them: their heartbeat expired. Logs each one
/// and returns them; a failure to record is logged and returns nothing.
/// Blocking. Called at daemon start-up and before each run of a job
/// (`regkeeper status` only shows such runs); see
/// [`Store::abandon_expired_runs`].
pub fn record_abandoned_runs(
    store: &dyn Store,
    job: Option<&str>,
    abandon_after: Duration,
) -> Vec<RunRecord> {
    match store.abandon_expired_runs(job, now_ms(), duration_ms(abandon_after)) {
        Ok(abandoned) => {
            for run in &abandoned {
                crate::metrics::job_outcome(&run.job, RunOutcome::Abandoned);
                warn!(
                    "job={} run={} finished: outcome=abandoned error: {}",
                    run.job,
                    run.id,
                    run.error.as_deref().unwrap_or_default()
                );
            }
            abandoned
        }
        Err(cause) => {
            match job {
                Some(job_name) => error!("job={job_name} recording abandoned runs: {cause:#}"),
                None => error!("recording abandoned runs: {cause:#}"),
            }
            Vec::new()
        }
    }
}

/// Gives back at once the event and scan claims of regkeeper processes on
/// this host that are gone (a SIGKILLed or crashed daemon, a `--once` run
/// that died): their claims would otherwise hold back later events of their
/// repositories until their lease expired (5 minutes by default). A claim
/// of another host, or of a process that still runs, waits for its lease as
/// before. Blocking; a failure is logged. Called at daemon start-up and
/// before a `--once` run. Returns how many (events, tags) were given back.
pub fn release_claims_of_dead_processes(store: &dyn Store) -> (u64, u64) {
    let this_host = claimant_host();
    let claimants = match store.claimants() {
        Ok(claimants) => claimants,
        Err(cause) => {
            error!("reading who holds claims: {cause:#}");
            return (0, 0);
        }
    };
    let mut released = (0, 0);
    for claimant in claimants {
        if !claimant_is_gone(&claimant, &this_host, process_is_regkeeper) {
            continue;
        }
        match store.release_claims_of(&claimant) {
            Ok((events, tags)) => {
                if events + tags > 0 {
                    warn!(
                        "gave back {events} events and {tags} tags claimed by {claimant}, a \
                         process of this host that is gone"
                    );
                }
                released.0 += events;
                released.1 += tags;
            }
            Err(cause) => error!("{cause:#}"),
        }
    }
    released
}

/// Whether `claimant` (`host:pid:random`, see [`new_claimant`]) names a
/// process of `this_host` that `is_regkeeper(pid)` says is no regkeeper
/// process any more. Claimants of other hosts, of this very process, and
/// ids of another shape are never gone: only their lease frees them.
pub fn claimant_is_gone(
    claimant: &str,
    this_host: &str,
    is_regkeeper: impl Fn(u32) -> bool,
) -> bool {
    let mut parts = claimant.rsplitn(3, ':');
    let (Some(random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    random.len() == 8 && host == this_host && pid != std::process::id() && !is_regkeeper(pid)
}

/// Whether process `pid` runs now and is a regkeeper (its command name);
/// a pid taken again by another program is not.
fn process_is_regkeeper(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|name| name.trim_end() == "regkeeper")
}

/// This host's name as claimant ids carry it.
fn claimant_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A claimant id for this process: `host:pid:random`.
pub fn new_claimant() -> String {
    let host = claimant_host();
    let random: u32 = rand::random();
    format!("{host}:{}:{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gone_processes_of_this_host_lose_their_claims() {
        let gone = |claimant: &str| claimant_is_gone(claimant, "db-1", |pid| pid == 42);
        assert!(gone("db-1:7:0000abcd"), "a pid that is no regkeeper");
        assert!(!gone("db-1:42:0000abcd"), "a regkeeper still running");
        assert!(!gone("db-2:7:0000abcd"), "another host");
        assert!(!gone("db-1:x:0000abcd"), "no pid");
        assert!(!gone("db-1:7"), "another shape");
        let own = format!("db-1:{}:0000abcd", std::process::id());
        assert!(!claimant_is_gone(&own, "db-1", |_| false), "this process");
        // Host names may hold colons (IPv6 literals); the pid and random
        // part are taken from the right.
        assert!(claimant_is_gone("fe80::1:7:0000abcd", "fe80::1", |_| false));
    }

    #[test]
    fn claimant_has_host_pid_and_random_parts() {
        let claimant = new_claimant();
        let parts: Vec<&str> = claimant.rsplitn(3, ':').collect();
        assert_eq!(parts.len(), 3, "{claimant}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert_ne!(new_claimant(), claimant);
    }
}
