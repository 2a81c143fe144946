//! Job runs: recording, reading back and pruning them, heartbeats, expiry
//! and abandoned runs, also noticed by two processes at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{RunOutcome, Store, Value};
use regkeeper_test_support::{Backend, TestStore};

use crate::{exec, run, run_by, NOW};

/// The job set a daemon records at start-up: replaced as a whole, read
/// back in its order, a job finished for good only by the daemon whose set
/// it is.
fn daemon_jobs_chapter(store: &SqlStore) {
    use regkeeper::store::{DaemonJob, DaemonJobSet};
    assert_eq!(store.daemon_jobs().expect("daemon_jobs"), None);
    let job = |name: &str, enabled: bool| DaemonJob {
        name: name.to_string(),
        handler: "sync".to_string(),
        schedule: "0 */10 * * * *".to_string(),
        timezone: "Europe/Berlin".to_string(),
        enabled,
        finished_at: None,
        finished_reason: None,
    };
    let first = DaemonJobSet {
        claimant: "web1:1:a".to_string(),
        config: "/etc/regkeeper/schedules.toml".to_string(),
        started_at: NOW,
        jobs: vec![job("zeta", true), job("alpha", false)],
    };
    store
        .record_daemon_jobs(&first)
        .expect("record_daemon_jobs");
    assert_eq!(
        store.daemon_jobs().expect("daemon_jobs"),
        Some(first.clone())
    );
    assert!(!store
        .finish_daemon_job("web2:2:b", "zeta", "not mine", NOW + 1)
        .expect("finish_daemon_job"));
    assert!(store
        .finish_daemon_job("web1:1:a", "zeta", "strategy initial: done", NOW + 2)
        .expect("finish_daemon_job"));
    let read = store.daemon_jobs().expect("daemon_jobs").expect("a set");
    assert_eq!(read.jobs[0].finished_at, Some(NOW + 2));
    assert_eq!(
        read.jobs[0].finished_reason.as_deref(),
        Some("strategy initial: done")
    );
    assert_eq!(read.jobs[1], job("alpha", false));
    let second = DaemonJobSet {
        claimant: "web2:2:b".to_string(),
        config: "schedules.toml".to_string(),
        started_at: NOW + 10,
        jobs: vec![job("beta", true)],
    };
    store
        .record_daemon_jobs(&second)
        .expect("record_daemon_jobs");
    assert_eq!(store.daemon_jobs().expect("daemon_jobs"), Some(second));
    assert!(!store
        .finish_daemon_job("web1:1:a", "zeta", "gone", NOW + 11)
        .expect("finish_daemon_job"));
}

/// Job runs: start, finish, read back, prune.
pub(crate) fn chapter(store: &SqlStore) {
    daemon_jobs_chapter(store);
    let first = store.start_run(&run("sync-job", NOW)).expect("start_run");
    let running = store.recent_runs("sync-job", 10).expect("recent_runs");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, first);
    assert_eq!(running[0].job, "sync-job");
    assert_eq!(running[0].handler, "sync");
    assert_eq!(running[0].trigger, "schedule");
    assert_eq!(running[0].started_at, NOW);
    assert_eq!(running[0].finished_at, None);
    assert_eq!(running[0].outcome, None);
    assert!(running[0].counts.is_empty());
    let counts = BTreeMap::from([("created".to_string(), 3), ("deleted".to_string(), 0)]);
    store
        .finish_run(first, NOW + 5, RunOutcome::Ok, &counts, None)
        .expect("finish_run");
    let finished = store.recent_runs("sync-job", 10).expect("recent_runs");
    assert_eq!(finished[0].finished_at, Some(NOW + 5));
    assert_eq!(finished[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(finished[0].counts, counts);
    assert_eq!(finished[0].error, None);
    let missing = store
        .finish_run(first + 1000, NOW, RunOutcome::Ok, &BTreeMap::new(), None)
        .unwrap_err();
    assert!(
        format!("{missing:#}").contains("no such run"),
        "{missing:#}"
    );

    let outcomes = [
        RunOutcome::Failed,
        RunOutcome::Skipped,
        RunOutcome::TimedOut,
        RunOutcome::Ok,
    ];
    let mut ids = vec![first];
    for (offset, outcome) in (1..).zip(outcomes) {
        let id = store
            .start_run(&run("sync-job", NOW + offset * 10))
            .expect("start_run");
        let error = (outcome == RunOutcome::Failed).then_some("listing tags of app: boom");
        store
            .finish_run(id, NOW + offset * 10 + 1, outcome, &BTreeMap::new(), error)
            .expect("finish_run");
        ids.push(id);
    }
    let other_job = store.start_run(&run("other-job", NOW)).expect("start_run");
    let all = store.recent_runs("sync-job", 100).expect("recent_runs");
    assert_eq!(
        all.iter().map(|run| run.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(all[3].error.as_deref(), Some("listing tags of app: boom"));
    assert_eq!(all[3].outcome, Some(RunOutcome::Failed));
    assert_eq!(
        store.recent_runs("sync-job", 2).expect("recent_runs").len(),
        2
    );
    assert_eq!(store.prune_runs("sync-job", 2).expect("prune_runs"), 3);
    assert_eq!(store.prune_runs("sync-job", 2).expect("prune_runs"), 0);
    let kept = store.recent_runs("sync-job", 100).expect("recent_runs");
    assert_eq!(
        kept.iter().map(|run| run.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    assert_eq!(kept[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(kept[1].outcome, Some(RunOutcome::TimedOut));
    assert_eq!(
        store.recent_runs("other-job", 100).expect("recent_runs")[0].id,
        other_job
    );
    assert!(store
        .recent_runs("no-such-job", 10)
        .expect("recent_runs")
        .is_empty());
}

/// Heartbeats, expiry and abandoned runs, with explicit times.
pub(crate) fn liveness_chapter(store: &SqlStore) {
    const ABANDON_AFTER: i64 = 300_000;
    let live = store
        .start_run(&run_by("scan-job", "host-a:1:0000000a", NOW, NOW + 1_000))
        .expect("start_run");
    let dead = store
        .start_run(&run_by("scan-job", "host-b:2:0000000b", NOW, NOW + 1_000))
        .expect("start_run");
    let elsewhere = store
        .start_run(&run_by("index-job", "host-b:2:0000000b", NOW, NOW + 1_000))
        .expect("start_run");
    let started = store.recent_runs("scan-job", 10).expect("recent_runs");
    assert_eq!(started[0].claimant.as_deref(), Some("host-b:2:0000000b"));
    assert_eq!(
        started[0].heartbeat_at,
        Some(NOW),
        "the start is the first heartbeat"
    );

    // Up to and at its expiry a run is alive.
    assert!(store
        .abandon_expired_runs(None, NOW + 1_000, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());
    assert!(store
        .heartbeat_run(live, NOW + 900, NOW + 1_900)
        .expect("heartbeat_run"));

    // Past it, the run that missed its heartbeat is abandoned, only in the
    // job asked about; the renewed one is left alone.
    let abandoned = store
        .abandon_expired_runs(Some("scan-job"), NOW + 1_500, ABANDON_AFTER)
        .expect("abandon_expired_runs");
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert_eq!(abandoned[0].id, dead);
    assert_eq!(abandoned[0].outcome, Some(RunOutcome::Abandoned));
    assert_eq!(abandoned[0].finished_at, Some(NOW), "its last heartbeat");
    let error = abandoned[0].error.clone().unwrap_or_default();
    assert_eq!(
        error,
        "the daemon host-b:2:0000000b that ran it stopped without finishing it \
         (last heartbeat 2023-11-14T22:13:20.000Z)"
    );
    let runs = store.recent_runs("scan-job", 10).expect("recent_runs");
    assert_eq!(runs[0], abandoned[0], "recorded as returned");
    assert_eq!(runs[1].id, live);
    assert_eq!(runs[1].outcome, None);
    assert_eq!(runs[1].heartbeat_at, Some(NOW + 900));

    // Noticed again (another process, later): recorded once only.
    assert!(store
        .abandon_expired_runs(Some("scan-job"), NOW + 1_600, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());
    // Its late heartbeat does not revive it; its own end, if it ever
    // records one, replaces the abandonment.
    assert!(!store
        .heartbeat_run(dead, NOW + 1_700, NOW + 2_700)
        .expect("heartbeat_run"));
    assert_eq!(
        store.recent_runs("scan-job", 10).expect("recent_runs")[0].finished_at,
        Some(NOW)
    );
    store
        .finish_run(dead, NOW + 1_800, RunOutcome::Ok, &BTreeMap::new(), None)
        .expect("finish_run");
    let late = &store.recent_runs("scan-job", 10).expect("recent_runs")[0];
    assert_eq!(late.outcome, Some(RunOutcome::Ok));
    assert_eq!(late.error, None);

    // Every job at once; the renewed run lapses later.
    let everywhere = store
        .abandon_expired_runs(None, NOW + 1_901, ABANDON_AFTER)
        .expect("abandon_expired_runs");
    assert_eq!(
        everywhere.iter().map(|run| run.id).collect::<Vec<_>>(),
        vec![live, elsewhere]
    );
    assert_eq!(everywhere[0].finished_at, Some(NOW + 900));

    // A finished run has no heartbeat to renew.
    let finished = store
        .start_run(&run_by(
            "scan-job",
            "host-a:1:0000000a",
            NOW + 2_000,
            NOW + 3_000,
        ))
        .expect("start_run");
    store
        .finish_run(
            finished,
            NOW + 2_100,
            RunOutcome::Failed,
            &BTreeMap::new(),
            Some("boom"),
        )
        .expect("finish_run");
    assert!(!store
        .heartbeat_run(finished, NOW + 2_200, NOW + 3_200)
        .expect("heartbeat_run"));
    assert!(store
        .abandon_expired_runs(Some("scan-job"), NOW + 10_000, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());

    // A run recorded before heartbeats (no claimant, no expiry) expires
    // `abandon_after` after its start.
    exec(
        store,
        "INSERT INTO job_runs (job, handler, trigger, started_at, counts) VALUES ('legacy-job', 'sync', 'wake', $1, '{}')",
        &[Value::Int(NOW)],
    );
    assert!(store
        .abandon_expired_runs(Some("legacy-job"), NOW + ABANDON_AFTER, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .is_empty());
    let legacy = store
        .abandon_expired_runs(Some("legacy-job"), NOW + ABANDON_AFTER + 1, ABANDON_AFTER)
        .expect("abandon_expired_runs");
    assert_eq!(legacy.len(), 1);
    assert_eq!(legacy[0].claimant, None);
    assert_eq!(legacy[0].heartbeat_at, None);
    assert_eq!(legacy[0].finished_at, Some(NOW));
    assert_eq!(
        legacy[0].error.as_deref(),
        Some(
            "the daemon that ran it stopped without finishing it (recorded by a version \
             without heartbeats; started 2023-11-14T22:13:20.000Z)"
        )
    );
    assert!(store
        .abandon_expired_runs(None, NOW + ABANDON_AFTER + 1, ABANDON_AFTER)
        .expect("abandon_expired_runs")
        .iter()
        .all(|run| run.job != "legacy-job" && run.job != "scan-job"));
}

/// Two processes noticing the same expired runs at once (two daemons, or a
/// daemon and `regkeeper status`) record each exactly once between them,
/// without an error, and leave a run with a current heartbeat alone.
fn notice_together(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let mut expired: Vec<i64> = (0..20)
        .map(|n| {
            first
                .start_run(&run_by(
                    "race-job",
                    "host-d:4:0000000d",
                    NOW + n,
                    NOW + 1_000 + n,
                ))
                .expect("start_run")
        })
        .collect();
    let live = first
        .start_run(&run_by(
            "race-job",
            "host-e:5:0000000e",
            NOW,
            NOW + 1_000_000,
        ))
        .expect("start_run");
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let noticers: Vec<_> = [first.clone(), second]
        .into_iter()
        .map(|store| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut recorded = Vec::new();
                for _ in 0..5 {
                    recorded.extend(
                        store
                            .abandon_expired_runs(Some("race-job"), NOW + 5_000, 300_000)
                            .expect("abandon_expired_runs")
                            .into_iter()
                            .map(|run| run.id),
                    );
                }
                recorded
            })
        })
        .collect();
    let mut recorded: Vec<i64> = noticers
        .into_iter()
        .flat_map(|noticer| noticer.join().expect("noticer thread"))
        .collect();
    recorded.sort_unstable();
    expired.sort_unstable();
    assert_eq!(recorded, expired, "each expired run recorded exactly once");
    let runs = first.recent_runs("race-job", 100).expect("recent_runs");
    let live_run = runs
        .iter()
        .find(|run| run.id == live)
        .expect("the live run");
    assert_eq!(live_run.outcome, None);
    assert_eq!(live_run.finished_at, None);
    assert!(runs
        .iter()
        .filter(|run| run.id != live)
        .all(|run| run.outcome == Some(RunOutcome::Abandoned)));
}

fn noticing_together_records_each_abandoned_run_once(backend: Backend) {
    let database = TestStore::new(backend);
    let first: Arc<dyn Store> = Arc::new(database.another());
    let second: Arc<dyn Store> = Arc::new(database.another());
    notice_together(first, second);
}

regkeeper_test_support::both_backends!(noticing_together_records_each_abandoned_run_once);
