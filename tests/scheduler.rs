//! The scheduler against a real SQLite store in a temp dir, with handlers of
//! our own: second-level schedules, no overlap, failures isolated and
//! recorded, wake-up coalescing, timeouts, finish-for-good, pruning,
//! reloads and graceful shutdown. Conditions are polled in the database with generous
//! deadlines; nothing asserts on timing.

use regkeeper_test_support as support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use croner::parser::{CronParser, Seconds};
use regkeeper::config::{EventsOptions, HandlerConfig, JobConfig, Schedule};
use regkeeper::jobs::{Handler, JobContext, Outcome, RunOptions, Trigger};
use regkeeper::scheduler::{run_handler, Drain, JobChanges, RunSettings, Scheduler};
use regkeeper::store::{NewRun, RunOutcome, RunRecord, Store};
use support::daemon::Daemon;
use support::registry::{Reply, ScriptedServer};
use support::wait::poll;
use support::{wait_for, wait_until, Backend, TestStore, DEADLINE};

/// A schedule that does not fire during a test: only wake-ups run the job.
const NEVER_SOON: &str = "0 0 0 1 1 * 2099";

struct Fixture {
    store: Arc<dyn Store>,
    _database: TestStore,
}

fn fixture() -> Fixture {
    let database = TestStore::new(Backend::Sqlite);
    Fixture {
        store: database.shared(),
        _database: database,
    }
}

fn settings(store: &Arc<dyn Store>, keep_runs: usize) -> RunSettings {
    RunSettings {
        store: store.clone(),
        claimant: "test:1:0".to_string(),
        keep_runs,
        heartbeat: Duration::from_secs(30),
        abandon_after: Duration::from_secs(300),
    }
}

fn job(name: &str, expression: &str) -> JobConfig {
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .build()
        .parse(expression)
        .expect("a valid test expression");
    JobConfig {
        name: name.to_string(),
        schedule: Schedule {
            expression: expression.to_string(),
            cron,
            timezone: chrono_tz::UTC,
            position: String::new(),
        },
        enabled: true,
        timeout: None,
        jitter: None,
        handler: HandlerConfig::Events(EventsOptions::default()),
    }
}

/// What a test handler does on its `call`-th run (1-based).
type Body = dyn Fn(&JobContext, usize) -> anyhow::Result<Outcome> + Send + Sync;

/// A handler made of a closure, counting its calls and the most runs it saw
/// at once.
struct TestHandler {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    body: Box<Body>,
}

impl TestHandler {
    fn new(
        body: impl Fn(&JobContext, usize) -> anyhow::Result<Outcome> + Send + Sync + 'static,
    ) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            body: Box::new(body),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for TestHandler {
    fn run(&self, ctx: &JobContext) -> anyhow::Result<Outcome> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let now_running = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now_running, Ordering::SeqCst);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.body)(ctx, call)));
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

/// A gate a handler waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().expect("gate lock") = true;
        self.changed.notify_all();
    }

    /// Waits until the gate opens; true when it did, false when `stop` said
    /// to give up first.
    fn wait(&self, stop: impl Fn() -> bool) -> bool {
        let mut open = self.open.lock().expect("gate lock");
        while !*open {
            if stop() {
                return false;
            }
            open = self
                .changed
                .wait_timeout(open, Duration::from_millis(10))
                .expect("gate lock")
                .0;
        }
        true
    }
}

fn counted(name: &str, n: i64) -> Outcome {
    let mut outcome = Outcome::default();
    outcome.add(name, n);
    outcome
}

fn runs(store: &Arc<dyn Store>, job_name: &str) -> Vec<RunRecord> {
    let mut runs = store.recent_runs(job_name, 10_000).expect("reading runs");
    runs.reverse();
    runs
}

fn finished_with(store: &Arc<dyn Store>, job_name: &str, outcome: RunOutcome) -> Vec<RunRecord> {
    runs(store, job_name)
        .into_iter()
        .filter(|run| run.outcome == Some(outcome))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_schedule_runs_and_records_counts() {
    let fixture = fixture();
    let handler = TestHandler::new(|_, _| Ok(counted("applied", 2)));
    let scheduler = Scheduler::new(
        vec![(job("tick", "* * * * * *"), handler.clone())],
        settings(&fixture.store, 100),
    );
    let running = scheduler.start();

    wait_until("three runs finished", || {
        finished_with(&fixture.store, "tick", RunOutcome::Ok).len() >= 3
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    for run in finished_with(&fixture.store, "tick", RunOutcome::Ok) {
        assert_eq!(run.trigger, "schedule");
        assert_eq!(run.handler, "events");
        assert_eq!(run.counts, BTreeMap::from([("applied".to_string(), 2)]));
        assert_eq!(run.error, None);
        assert!(run
            .finished_at
            .is_some_and(|finished| finished >= run.started_at));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_tick_is_skipped_and_recorded() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let handler_gate = gate.clone();
    let handler = TestHandler::new(move |_, call| {
        if call == 1 {
            handler_gate.wait(|| false);
        }
        Ok(Outcome::default())
    });
    let scheduler = Scheduler::new(
        vec![(job("slow", "* * * * * *"), handler.clone())],
        settings(&fixture.store, 100),
    );
    let running = scheduler.start();

    wait_until("two ticks skipped", || {
        finished_with(&fixture.store, "slow", RunOutcome::Skipped)
            .iter()
            .any(|skipped| skipped.counts.get("ticks").is_some_and(|ticks| *ticks >= 2))
    });
    gate.open();
    wait_until("a run after the slow one", || {
        finished_with(&fixture.store, "slow", RunOutcome::Ok).len() >= 2
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    let first = runs(&fixture.store, "slow")
        .into_iter()
        .next()
        .expect("the first run");
    assert_eq!(first.outcome, Some(RunOutcome::Ok));
    // Every tick skipped during the slow run is counted in one row that
    // names the run.
    let skipped = finished_with(&fixture.store, "slow", RunOutcome::Skipped);
    let during_first: Vec<&RunRecord> = skipped
        .iter()
        .filter(|row| {
            row.error.as_deref() == Some(&*format!("previous run {} still going", first.id))
        })
        .collect();
    assert_eq!(during_first.len(), 1, "{skipped:?}");
    assert_eq!(during_first[0].trigger, "schedule");
    assert!(during_first[0].counts["ticks"] >= 2, "{skipped:?}");
    assert!(during_first[0].finished_at >= Some(during_first[0].started_at));
    assert_eq!(
        handler.most_in_flight.load(Ordering::SeqCst),
        1,
        "two runs of one job overlapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_is_a_failed_run_and_the_job_keeps_running() {
    let fixture = fixture();
    let handler = TestHandler::new(|_, call| {
        if call == 1 {
            panic!("boom in the handler");
        }
        Ok(Outcome::default())
    });
    let scheduler = Scheduler::new(
        vec![(job("panics", "* * * * * *"), handler.clone())],
        settings(&fixture.store, 100),
    );
    let running = scheduler.start();

    wait_until("a run after the panic", || {
        !finished_with(&fixture.store, "panics", RunOutcome::Ok).is_empty()
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    let first = runs(&fixture.store, "panics")
        .into_iter()
        .next()
        .expect("the first run");
    assert_eq!(first.outcome, Some(RunOutcome::Failed));
    assert_eq!(
        first.error.as_deref(),
        Some("handler panicked: boom in the handler")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_is_recorded_with_its_cause_chain() {
    let fixture = fixture();
    let handler = TestHandler::new(|_, _| {
        Err(anyhow::anyhow!("connection refused"))
            .map_err(|cause| cause.context("listing tags of app"))
    });
    let scheduler = Scheduler::new(
        vec![(job("fails", "* * * * * *"), handler.clone())],
        settings(&fixture.store, 100),
    );
    let running = scheduler.start();

    wait_until("two failed runs", || {
        finished_with(&fixture.store, "fails", RunOutcome::Failed).len() >= 2
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    for failed in finished_with(&fixture.store, "fails", RunOutcome::Failed) {
        assert_eq!(
            failed.error.as_deref(),
            Some("listing tags of app: connection refused")
        );
        assert!(failed.counts.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakes_during_a_run_coalesce_into_one_more_run() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let handler_gate = gate.clone();
    let handler = TestHandler::new(move |_, call| {
        if call == 1 {
            handler_gate.wait(|| false);
        }
        Ok(counted("call", call as i64))
    });
    let scheduler = Scheduler::new(
        vec![(job("woken", NEVER_SOON), handler.clone())],
        settings(&fixture.store, 100),
    );
    let waker = scheduler
        .waker("woken")
        .expect("a waker for a scheduled job");
    assert!(scheduler.waker("unknown").is_none());
    let running = scheduler.start();

    waker.wake();
    wait_until("the first run started", || handler.calls() == 1);
    for _ in 0..10 {
        waker.wake();
    }
    gate.open();
    wait_until("the second run finished", || {
        finished_with(&fixture.store, "woken", RunOutcome::Ok).len() >= 2
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    let all = runs(&fixture.store, "woken");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all
        .iter()
        .all(|run| run.trigger == "wake" && run.outcome == Some(RunOutcome::Ok)));
    assert_eq!(handler.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_slow_run() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let handler_gate = gate.clone();
    let cancel_seen = Arc::new(AtomicBool::new(false));
    let handler_cancel_seen = cancel_seen.clone();
    let handler = TestHandler::new(move |ctx, _| {
        handler_gate.wait(|| false);
        handler_cancel_seen.store(ctx.cancel.is_cancelled(), Ordering::SeqCst);
        Ok(counted("drained", 1))
    });
    let scheduler = Scheduler::new(
        vec![(job("slow", NEVER_SOON), handler.clone())],
        settings(&fixture.store, 100),
    );
    scheduler.waker("slow").expect("a waker").wake();
    let running = scheduler.start();
    wait_until("the run started", || handler.calls() == 1);

    let shutdown = tokio::spawn(running.shutdown(DEADLINE));
    gate.open();
    assert_eq!(shutdown.await.expect("shutdown task"), Drain::Complete);

    let all = runs(&fixture.store, "slow");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(all[0].counts, BTreeMap::from([("drained".to_string(), 1)]));
    assert!(
        !cancel_seen.load(Ordering::SeqCst),
        "a run that finished within the grace period was cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_deadline_cancels_the_run() {
    let fixture = fixture();
    let handler = TestHandler::new(|ctx, _| {
        // Runs until asked to stop, as a long handler polls its cancel flag.
        let gate = Gate::default();
        gate.wait(|| ctx.cancel.is_cancelled());
        anyhow::bail!("stopped early: cancelled")
    });
    let scheduler = Scheduler::new(
        vec![(job("endless", NEVER_SOON), handler.clone())],
        settings(&fixture.store, 100),
    );
    scheduler.waker("endless").expect("a waker").wake();
    let running = scheduler.start();
    wait_until("the run started", || handler.calls() == 1);

    assert_eq!(
        running.shutdown(Duration::from_millis(200)).await,
        Drain::Cancelled
    );
    wait_until("the cancelled run recorded", || {
        !finished_with(&fixture.store, "endless", RunOutcome::Failed).is_empty()
    });
    let all = runs(&fixture.store, "endless");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].error.as_deref(), Some("stopped early: cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ignoring_cancel_is_recorded_as_abandoned_at_shutdown() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let handler_gate = gate.clone();
    let handler = TestHandler::new(move |_, _| {
        handler_gate.wait(|| false);
        Ok(Outcome::default())
    });
    let scheduler = Scheduler::new(
        vec![(job("stuck", NEVER_SOON), handler.clone())],
        settings(&fixture.store, 100),
    );
    scheduler.waker("stuck").expect("a waker").wake();
    let running = scheduler.start();
    wait_until("the run started", || {
        runs(&fixture.store, "stuck").len() == 1
    });

    assert_eq!(
        running.shutdown(Duration::from_millis(100)).await,
        Drain::Cancelled
    );
    let all = runs(&fixture.store, "stuck");
    // Let the blocking thread end, or the test runtime would wait for it.
    gate.open();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].outcome, Some(RunOutcome::Failed));
    assert!(
        all[0]
            .error
            .as_deref()
            .is_some_and(|error| error.starts_with("abandoned at shutdown")),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_for_good_removes_the_job() {
    let fixture = fixture();
    let once = TestHandler::new(|_, _| {
        let mut outcome = counted("synced", 3);
        outcome.finished = Some("ordered to run once, and it has".to_string());
        Ok(outcome)
    });
    let clock = TestHandler::new(|_, _| Ok(Outcome::default()));
    let scheduler = Scheduler::new(
        vec![
            (job("once", "* * * * * *"), once.clone()),
            (job("clock", "* * * * * *"), clock.clone()),
        ],
        settings(&fixture.store, 100),
    );
    let once_waker = scheduler.waker("once").expect("a waker");
    let running = scheduler.start();

    wait_until("the job finished for good", || {
        once.calls() == 1
            && runs(&fixture.store, "once")
                .iter()
                .all(|run| run.outcome.is_some())
    });
    // Three ticks of another every-second job later, and after a wake-up,
    // the finished job has still run only once.
    once_waker.wake();
    let clock_runs = clock.calls();
    wait_until("three more ticks of the clock job", || {
        clock.calls() >= clock_runs + 3
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    // A slow machine may skip a tick while the one run goes on; nothing else.
    let all: Vec<RunRecord> = runs(&fixture.store, "once")
        .into_iter()
        .filter(|run| run.outcome != Some(RunOutcome::Skipped))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(all[0].counts, BTreeMap::from([("synced".to_string(), 3)]));
    assert_eq!(once.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrun_is_marked_timed_out_and_ticks_meanwhile_are_skipped() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let handler_gate = gate.clone();
    let cancel_seen = Arc::new(AtomicBool::new(false));
    let handler_cancel_seen = cancel_seen.clone();
    let handler = TestHandler::new(move |ctx, call| {
        if call == 1 {
            // Ignores its cancel flag until the test opens the gate, then
            // reports whether the flag was set.
            handler_gate.wait(|| {
                if ctx.cancel.is_cancelled() {
                    handler_cancel_seen.store(true, Ordering::SeqCst);
                }
                false
            });
            return Ok(counted("done", 1));
        }
        Ok(Outcome::default())
    });
    let mut overrunning = job("overruns", "* * * * * *");
    overrunning.timeout = Some(Duration::from_millis(300));
    let scheduler = Scheduler::new(
        vec![(overrunning, handler.clone())],
        settings(&fixture.store, 100),
    );
    let running = scheduler.start();

    wait_until("the run was asked to stop", || {
        cancel_seen.load(Ordering::SeqCst)
    });
    wait_until("a tick skipped", || {
        !finished_with(&fixture.store, "overruns", RunOutcome::Skipped).is_empty()
    });
    gate.open();
    wait_until("the overrun recorded", || {
        !finished_with(&fixture.store, "overruns", RunOutcome::TimedOut).is_empty()
    });
    wait_until("a later run", || {
        !finished_with(&fixture.store, "overruns", RunOutcome::Ok).is_empty()
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    let timed_out = finished_with(&fixture.store, "overruns", RunOutcome::TimedOut);
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert_eq!(
        timed_out[0].error.as_deref(),
        Some("run exceeded its timeout of 300ms")
    );
    assert_eq!(
        timed_out[0].counts,
        BTreeMap::from([("done".to_string(), 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_job_does_not_delay_another_job() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let handler_gate = gate.clone();
    let slow = TestHandler::new(move |_, _| {
        handler_gate.wait(|| false);
        Ok(Outcome::default())
    });
    // Runs that do something, so that each keeps a row of its own (idle
    // runs fold into one).
    let fast = TestHandler::new(|_, call| Ok(counted("call", call as i64)));
    let scheduler = Scheduler::new(
        vec![
            (job("slow-scan", "* * * * * *"), slow.clone()),
            (job("events", "* * * * * *"), fast.clone()),
        ],
        settings(&fixture.store, 100),
    );
    let running = scheduler.start();

    wait_until("the slow run started", || slow.calls() == 1);
    wait_until("three runs of the other job", || {
        finished_with(&fixture.store, "events", RunOutcome::Ok).len() >= 3
    });
    assert_eq!(slow.calls(), 1);
    assert!(
        finished_with(&fixture.store, "slow-scan", RunOutcome::Ok).is_empty(),
        "the slow run ended before the gate opened"
    );
    gate.open();
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_runs_prunes_old_runs_per_job() {
    let fixture = fixture();
    let frequent = TestHandler::new(|_, call| Ok(counted("call", call as i64)));
    let rare = TestHandler::new(|_, _| Ok(Outcome::default()));
    let scheduler = Scheduler::new(
        vec![
            (job("frequent", "* * * * * *"), frequent.clone()),
            (job("rare", NEVER_SOON), rare.clone()),
        ],
        settings(&fixture.store, 3),
    );
    scheduler.waker("rare").expect("a waker").wake();
    let running = scheduler.start();

    wait_until("six runs of the frequent job", || frequent.calls() >= 6);
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);

    let kept = runs(&fixture.store, "frequent");
    assert_eq!(kept.len(), 3, "{kept:?}");
    // The newest runs are kept (a slow machine may have skipped a tick among them).
    let newest = frequent.calls() as i64;
    let kept_calls: Vec<i64> = kept
        .iter()
        .filter_map(|run| run.counts.get("call").copied())
        .collect();
    let expected: Vec<i64> = (newest - kept_calls.len() as i64 + 1..=newest).collect();
    assert_eq!(kept_calls, expected);
    assert_eq!(
        runs(&fixture.store, "rare").len(),
        1,
        "pruning one job touched another"
    );
}

#[test]
fn runs_that_did_nothing_are_one_row_counting_them() {
    let fixture = fixture();
    let settings = settings(&fixture.store, 3);
    // Calls 1-3 and 5-6 find nothing to do; call 4 does some work.
    let handler = TestHandler::new(|_, call| {
        Ok(if call == 4 {
            counted("applied", 2)
        } else {
            counted("applied", 0)
        })
    });
    let job = job("poll", NEVER_SOON);
    for _ in 0..6 {
        run_handler(
            &job,
            handler.clone(),
            &settings,
            Trigger::Wake,
            RunOptions::default(),
        )
        .expect("recorded run");
    }
    let kept = runs(&fixture.store, "poll");
    let shape: Vec<(i64, i64)> = kept
        .iter()
        .map(|run| {
            (
                run.counts.get("applied").copied().unwrap_or(-1),
                run.counts.get("idle_runs").copied().unwrap_or(1),
            )
        })
        .collect();
    // Three idle runs in one row, the run that worked, two idle runs in
    // one row; keep_runs = 3 keeps all of it.
    assert_eq!(shape, vec![(0, 3), (2, 1), (0, 2)], "{kept:?}");
    // A run by hand is always a row of its own.
    run_handler(
        &job,
        handler,
        &settings,
        Trigger::Once,
        RunOptions::default(),
    )
    .expect("recorded run");
    let kept = runs(&fixture.store, "poll");
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[2].trigger, "once", "{kept:?}");
    assert_eq!(kept[1].counts.get("applied"), Some(&0), "{kept:?}");
}

#[test]
fn run_handler_records_once_runs_and_isolates_panics() {
    let fixture = fixture();
    let settings = settings(&fixture.store, 100);
    let ok = TestHandler::new(|ctx, _| {
        assert_eq!(ctx.trigger, Trigger::Once);
        assert!(ctx.options.dry_run);
        Ok(counted("planned", 4))
    });
    let options = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let report = run_handler(
        &job("once", NEVER_SOON),
        ok,
        &settings,
        Trigger::Once,
        options,
    )
    .expect("recorded run");
    assert_eq!(report.outcome, RunOutcome::Ok);
    assert_eq!(
        report.result.counts,
        BTreeMap::from([("planned".to_string(), 4)])
    );

    let panics = TestHandler::new(|_, _| panic!("index out of bounds"));
    let report = run_handler(
        &job("once", NEVER_SOON),
        panics,
        &settings,
        Trigger::Once,
        RunOptions::default(),
    )
    .expect("recorded run");
    assert_eq!(report.outcome, RunOutcome::Failed);
    assert_eq!(
        report.error.as_deref(),
        Some("handler panicked: index out of bounds")
    );

    let all = runs(&fixture.store, "once");
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|run| run.trigger == "once"));
    assert_eq!(all[0].id, report.run_id - 1);
    assert_eq!(all[1].outcome, Some(RunOutcome::Failed));
}

/// A handler that returns once its own run's heartbeat has been renewed
/// in the store (or fails after [`DEADLINE`]).
fn waits_for_its_heartbeat() -> Arc<TestHandler> {
    TestHandler::new(|ctx, _| {
        let renewed = poll(DEADLINE, || {
            let own = ctx.store.recent_runs(&ctx.job_name, 10).and_then(|runs| {
                runs.into_iter()
                    .find(|run| run.id == ctx.run_id)
                    .ok_or_else(|| anyhow::anyhow!("run {} not recorded", ctx.run_id))
            });
            match own {
                Ok(own) if own.heartbeat_at.is_some_and(|at| at > own.started_at) => Some(Ok(())),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            }
        });
        renewed.unwrap_or_else(|| Err(anyhow::anyhow!("no heartbeat renewed")))?;
        Ok(counted("heartbeats_seen", 1))
    })
}

fn beating(store: &Arc<dyn Store>) -> RunSettings {
    RunSettings {
        heartbeat: Duration::from_millis(50),
        abandon_after: Duration::from_secs(1),
        ..settings(store, 100)
    }
}

#[test]
fn run_handler_renews_the_heartbeat_while_the_run_goes_on() {
    let fixture = fixture();
    let report = run_handler(
        &job("once-beating", NEVER_SOON),
        waits_for_its_heartbeat(),
        &beating(&fixture.store),
        Trigger::Once,
        RunOptions::default(),
    )
    .expect("recorded run");
    assert_eq!(report.outcome, RunOutcome::Ok, "{:?}", report.error);
    let run = &runs(&fixture.store, "once-beating")[0];
    assert_eq!(run.claimant.as_deref(), Some("test:1:0"));
    assert!(run.heartbeat_at.is_some_and(|at| at > run.started_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_run_renews_its_heartbeat() {
    let fixture = fixture();
    let scheduler = Scheduler::new(
        vec![(job("beating", NEVER_SOON), waits_for_its_heartbeat())],
        beating(&fixture.store),
    );
    let running = scheduler.start();
    running.waker("beating").expect("a waker").wake();
    wait_until("the run saw its heartbeat renewed", || {
        !finished_with(&fixture.store, "beating", RunOutcome::Ok).is_empty()
    });
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);
    assert!(finished_with(&fixture.store, "beating", RunOutcome::Failed).is_empty());
}

/// Before a run starts, the job's earlier runs whose process died are
/// recorded abandoned; live runs and other jobs' runs are left alone.
#[test]
fn a_run_first_records_the_expired_runs_of_its_job_abandoned() {
    let fixture = fixture();
    let now = chrono::Utc::now().timestamp_millis();
    let new_run = |job: &str, claimant: &str, expires_at: i64| NewRun {
        job: job.to_string(),
        handler: "events".to_string(),
        trigger: "schedule".to_string(),
        started_at: now - 10_000,
        claimant: claimant.to_string(),
        expires_at,
    };
    let store = &fixture.store;
    let dead = store
        .start_run(&new_run("once", "gone:1:00000001", now - 5_000))
        .expect("start_run");
    let live = store
        .start_run(&new_run("once", "alive:2:00000002", now + 600_000))
        .expect("start_run");
    let other_job = store
        .start_run(&new_run("other", "gone:1:00000001", now - 5_000))
        .expect("start_run");

    let report = run_handler(
        &job("once", NEVER_SOON),
        TestHandler::new(|_, _| Ok(Outcome::default())),
        &settings(store, 100),
        Trigger::Once,
        RunOptions::default(),
    )
    .expect("recorded run");
    assert_eq!(report.outcome, RunOutcome::Ok);

    let all = runs(store, "once");
    let by_id = |id: i64| all.iter().find(|run| run.id == id).expect("the run");
    assert_eq!(by_id(dead).outcome, Some(RunOutcome::Abandoned));
    assert_eq!(by_id(dead).finished_at, Some(now - 10_000));
    assert!(by_id(dead)
        .error
        .as_deref()
        .is_some_and(|error| error.starts_with("the daemon gone:1:00000001 that ran it")));
    assert_eq!(by_id(live).outcome, None);
    assert_eq!(runs(store, "other")[0].id, other_job);
    assert_eq!(runs(store, "other")[0].outcome, None);
}

#[test]
fn run_handler_marks_an_overrun_timed_out() {
    let fixture = fixture();
    let handler = TestHandler::new(|ctx, _| {
        let gate = Gate::default();
        gate.wait(|| ctx.cancel.is_cancelled());
        Ok(counted("partial", 1))
    });
    let mut overrunning = job("once-slow", NEVER_SOON);
    overrunning.timeout = Some(Duration::from_millis(100));
    let report = run_handler(
        &overrunning,
        handler,
        &settings(&fixture.store, 100),
        Trigger::Once,
        RunOptions::default(),
    )
    .expect("recorded run");
    assert_eq!(report.outcome, RunOutcome::TimedOut);
    assert_eq!(
        report.error.as_deref(),
        Some("run exceeded its timeout of 100ms")
    );
    let all = runs(&fixture.store, "once-slow");
    assert_eq!(all[0].outcome, Some(RunOutcome::TimedOut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lets_the_run_in_flight_finish_before_the_new_handler_runs() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let old_gate = gate.clone();
    let old = TestHandler::new(move |ctx, _| {
        old_gate.wait(|| ctx.cancel.is_cancelled());
        Ok(counted("old", 1))
    });
    let overlapped = Arc::new(AtomicBool::new(false));
    let (watched, overlap) = (old.clone(), overlapped.clone());
    let new = TestHandler::new(move |_, _| {
        if watched.in_flight.load(Ordering::SeqCst) > 0 {
            overlap.store(true, Ordering::SeqCst);
        }
        Ok(counted("new", 1))
    });
    let mut running = Scheduler::new(
        vec![(job("swapped", NEVER_SOON), old.clone())],
        settings(&fixture.store, 100),
    )
    .start();
    let waker = running.waker("swapped").expect("a waker");
    waker.wake();
    wait_until("the old handler runs", || old.calls() == 1);

    running.reload(JobChanges {
        stop: vec!["swapped".to_string()],
        start: vec![(job("swapped", NEVER_SOON), new.clone())],
    });
    // The waker taken before the reload reaches the job's new task, once
    // the old run has finished.
    waker.wake();
    assert_eq!(new.calls(), 0, "the new task waits for the run in flight");
    gate.open();
    wait_until("the new handler ran", || new.calls() == 1);
    assert!(!overlapped.load(Ordering::SeqCst), "two runs overlapped");
    assert_eq!(old.calls(), 1);
    let outcomes: Vec<_> = runs(&fixture.store, "swapped")
        .iter()
        .map(|run| (run.outcome, run.counts.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                Some(RunOutcome::Ok),
                BTreeMap::from([("old".to_string(), 1)])
            ),
            (
                Some(RunOutcome::Ok),
                BTreeMap::from([("new".to_string(), 1)])
            ),
        ]
    );

    // Removed: no waker any more, and shutdown has nothing to wait for.
    running.reload(JobChanges {
        stop: vec!["swapped".to_string()],
        start: Vec::new(),
    });
    assert!(running.waker("swapped").is_none());
    waker.wake();
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);
    assert_eq!(new.calls(), 1);
}

/// Regression guard: a second reload while the first replacement still
/// waits for the run in flight must not let the third task run beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reloads_during_one_run_still_run_one_at_a_time() {
    let fixture = fixture();
    let gate = Arc::new(Gate::default());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = |gated: bool| {
        let (gate, in_flight, most) = (gate.clone(), in_flight.clone(), most.clone());
        TestHandler::new(move |ctx, _| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            if gated {
                gate.wait(|| ctx.cancel.is_cancelled());
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(counted("ran", 1))
        })
    };
    let (first, second, third) = (handler(true), handler(false), handler(false));
    let mut running = Scheduler::new(
        vec![(job("twice", NEVER_SOON), first.clone())],
        settings(&fixture.store, 100),
    )
    .start();
    let waker = running.waker("twice").expect("a waker");
    waker.wake();
    wait_until("the first handler runs", || first.calls() == 1);
    for replacement in [&second, &third] {
        running.reload(JobChanges {
            stop: vec!["twice".to_string()],
            start: vec![(job("twice", NEVER_SOON), (*replacement).clone())],
        });
    }
    waker.wake();
    gate.open();
    wait_until("the last handler ran", || third.calls() == 1);
    assert_eq!(
        second.calls(),
        0,
        "the task replaced before it ran never ran"
    );
    assert_eq!(most.load(Ordering::SeqCst), 1, "two runs overlapped");
    assert_eq!(running.shutdown(DEADLINE).await, Drain::Complete);
}

/// Writes `config_text` as `schedules.toml` in `dir` and starts the daemon on it.
fn start_daemon(dir: &std::path::Path, config_text: &str) -> Daemon {
    let config_path = dir.join("schedules.toml");
    std::fs::write(&config_path, config_text).expect("writing the test config");
    Daemon::start(&config_path)
}

/// A configuration for the binary: SQLite in `dir`, the intake off, the
/// registry at `registry`, and `jobs` appended.
fn daemon_config(dir: &std::path::Path, registry: &str, grace_period: &str, jobs: &str) -> String {
    daemon_config_with(
        dir,
        registry,
        &format!("grace_period = \"{grace_period}\"\n"),
        jobs,
    )
}

/// Like [`daemon_config`], with `daemon_keys` as the `[daemon]` section.
fn daemon_config_with(
    dir: &std::path::Path,
    registry: &str,
    daemon_keys: &str,
    jobs: &str,
) -> String {
    format!(
        "[database]\nurl = \"sqlite://{}\"\n\n[registry]\nurl = \"{registry}\"\ntimeout = \"300s\"\n\n\
         [notifications]\nlisten = \"\"\n\n[daemon]\n{daemon_keys}\n{jobs}",
        dir.join("regkeeper.db").display()
    )
}

#[test]
fn sigterm_stops_an_idle_daemon_with_exit_0() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let jobs = "[jobs.security-scan]\nhandler = \"security\"\nschedule = \"* * * * * *\"\nenabled = false\n";
    let mut daemon = start_daemon(
        dir.path(),
        &daemon_config(dir.path(), "http://127.0.0.1:9", "30s", jobs),
    );
    daemon.wait_for_log("regkeeper running");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), 0, "its log:\n{}", daemon.log());
    assert!(
        daemon.log().contains("SIGTERM received: stopping"),
        "{}",
        daemon.log()
    );
}
/// A registry address that accepts connections and never answers, so a
/// sync run stays in flight as long as the test needs.
fn silent_registry() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a silent registry");
    let address = listener.local_addr().expect("its address");
    (listener, format!("http://{address}"))
}

const SYNC_JOB: &str =
    "[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nstrategy = \"update\"\n";

/// Waits until the job has a run in flight in the daemon's database.
fn wait_for_run_in_flight(dir: &std::path::Path, job_name: &str) {
    let store: Arc<dyn Store> = Arc::new(support::store::sqlite_file(&dir.join("regkeeper.db")));
    wait_until(&format!("a run of {job_name} started"), || {
        runs(&store, job_name)
            .iter()
            .any(|run| run.finished_at.is_none())
    });
}

#[test]
fn sigterm_stops_a_daemon_on_postgres_with_exit_0() {
    // Dropping the PostgreSQL pool inside the async runtime aborted the
    // process after "regkeeper stopped" (exit 134).
    let dir = tempfile::tempdir().expect("a temp dir");
    let database = support::postgres::TestDatabase::create();
    let jobs = "[jobs.registry-events]\nhandler = \"events\"\nschedule = \"* * * * * *\"\n";
    let config = daemon_config(dir.path(), "http://127.0.0.1:9", "30s", jobs).replace(
        &format!("sqlite://{}", dir.path().join("regkeeper.db").display()),
        database.url(),
    );
    let mut daemon = start_daemon(dir.path(), &config);
    daemon.wait_for_log("regkeeper running");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), 0, "its log:\n{}", daemon.log());
    assert!(
        daemon.log().contains("regkeeper stopped"),
        "{}",
        daemon.log()
    );
}

#[test]
fn grace_period_deadline_through_the_binary_cancels_and_exits_0() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_registry, registry_url) = silent_registry();
    let mut daemon = start_daemon(
        dir.path(),
        &daemon_config(dir.path(), &registry_url, "1s", SYNC_JOB),
    );
    daemon.wait_for_log("regkeeper running");
    wait_for_run_in_flight(dir.path(), "registry-sync");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), 0, "its log:\n{}", daemon.log());
    assert!(
        daemon
            .log()
            .contains("grace period of 1s passed: cancelling runs in flight"),
        "{}",
        daemon.log()
    );
}

#[test]
fn second_signal_exits_at_once_with_143() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_registry, registry_url) = silent_registry();
    let mut daemon = start_daemon(
        dir.path(),
        &daemon_config(dir.path(), &registry_url, "300s", SYNC_JOB),
    );
    daemon.wait_for_log("regkeeper running");
    wait_for_run_in_flight(dir.path(), "registry-sync");
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_log("SIGTERM received: stopping");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(), 143, "its log:\n{}", daemon.log());
    assert!(
        daemon
            .log()
            .contains("second SIGTERM received: exiting at once"),
        "{}",
        daemon.log()
    );
}

/// A registry stand-in with an empty catalog whose first catalog request
/// stalls, so the first sync run stays in flight until its daemon is
/// killed; later requests answer at once.
fn registry_stalling_once() -> ScriptedServer {
    let stalled = AtomicBool::new(false);
    ScriptedServer::with_handler(move |_, request| {
        let reply = Reply::json(200, r#"{"repositories":[]}"#)
            .header("Docker-Distribution-Api-Version", "registry/2.0");
        if request.path().contains("_catalog") && !stalled.swap(true, Ordering::SeqCst) {
            reply.delayed(Duration::from_secs(600))
        } else {
            reply
        }
    })
}

/// Polls the daemon's database until `condition` holds for the runs of
/// `job_name` (oldest first); returns them then.
fn wait_for_runs(
    store: &Arc<dyn Store>,
    job_name: &str,
    what: &str,
    condition: impl Fn(&[RunRecord]) -> bool,
) -> Vec<RunRecord> {
    let found = poll(DEADLINE, || {
        let all = runs(store, job_name);
        condition(&all).then_some(all)
    });
    found.unwrap_or_else(|| {
        panic!(
            "timed out waiting until {what}; runs: {:#?}",
            runs(store, job_name)
        )
    })
}

/// Regression: a daemon killed with SIGKILL mid-run left its `job_runs` row
/// without an end, and `status` showed the job running forever.
#[test]
fn run_of_a_killed_daemon_is_shown_abandoned_and_the_job_runs_again() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry_stalling_once();
    let config = daemon_config_with(
        dir.path(),
        &registry.url,
        "heartbeat = \"200ms\"\nabandon_after = \"3s\"\n",
        SYNC_JOB,
    );
    let mut first = start_daemon(dir.path(), &config);
    first.wait_for_log("regkeeper running");
    let store: Arc<dyn Store> = Arc::new(support::store::sqlite_file(
        &dir.path().join("regkeeper.db"),
    ));

    // The run in flight renews its heartbeat.
    let in_flight = wait_for_runs(
        &store,
        "registry-sync",
        "a run in flight renewed its heartbeat",
        |all| {
            all.iter().any(|run| {
                run.outcome.is_none() && run.heartbeat_at.is_some_and(|at| at > run.started_at)
            })
        },
    );
    let killed_run = in_flight
        .iter()
        .find(|run| run.outcome.is_none())
        .expect("the run in flight")
        .clone();
    let claimant = killed_run.claimant.clone().expect("the run's claimant");
    assert!(
        claimant.contains(&format!(":{}:", first.pid())),
        "{claimant} names the daemon's pid {}",
        first.pid()
    );
    first.signal(libc::SIGKILL);
    assert_eq!(first.wait_exit(), 128 + libc::SIGKILL);

    // `status` notices the expired heartbeat and shows the run abandoned,
    // finished at its last heartbeat, naming the daemon that ran it; it
    // only reads: the next daemon records it so.
    let config_path = dir.path().join("schedules.toml");
    let config_arg = config_path.to_str().expect("a utf-8 temp path");
    let shown = wait_for(
        "status shows the run of the killed daemon no longer running",
        || {
            let output = support::cli::run_binary(
                dir.path(),
                &["status", "--json", "--runs", "1000", "--config", config_arg],
            );
            assert_eq!(output.code, Some(0), "{output:?}");
            let status: serde_json::Value =
                serde_json::from_str(&output.stdout).expect("status --json is JSON");
            let shown = status["jobs"][0]["runs"]
                .as_array()
                .expect("runs array")
                .iter()
                .find(|run| run["id"] == killed_run.id)
                .cloned()
                .expect("the killed run in status");
            (shown["outcome"] != "running").then_some(shown)
        },
    );
    assert_eq!(shown["outcome"], "abandoned", "{shown}");
    assert_eq!(shown["claimant"], claimant.as_str());
    assert_eq!(shown["finished_at"], shown["heartbeat_at"], "{shown}");
    let error = shown["error"].as_str().expect("an error text");
    assert!(
        error.starts_with(&format!(
            "the daemon {claimant} that ran it stopped without finishing it (last heartbeat "
        )),
        "{error}"
    );
    let recorded = runs(&store, "registry-sync")
        .into_iter()
        .find(|run| run.id == killed_run.id)
        .expect("the killed run");
    assert_eq!(recorded.outcome, None, "status wrote to the database");

    // A restarted daemon runs the job again normally.
    let mut second = start_daemon(dir.path(), &config);
    second.wait_for_log("regkeeper running");
    let after = wait_for_runs(
        &store,
        "registry-sync",
        "the restarted daemon finished a run",
        |all| {
            all.iter()
                .any(|run| run.id > killed_run.id && run.outcome == Some(RunOutcome::Ok))
        },
    );
    let again = after
        .iter()
        .find(|run| run.id > killed_run.id && run.outcome == Some(RunOutcome::Ok))
        .expect("a run after the restart");
    assert_ne!(again.claimant.as_deref(), Some(claimant.as_str()));
    let killed_after = after
        .iter()
        .find(|run| run.id == killed_run.id)
        .expect("the killed run");
    assert_eq!(killed_after.outcome, Some(RunOutcome::Abandoned));
    assert_eq!(killed_after.finished_at, killed_after.heartbeat_at);
    assert_eq!(killed_after.error.as_deref(), Some(error));
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(), 0, "its log:\n{}", second.log());
}
