//! SIGHUP through the real binary: jobs added, rescheduled and disabled take
//! effect, a broken file is refused with the error logged while the old jobs
//! run on and the intake keeps storing, a run in flight finishes under the
//! options it started with, and a key that needs a restart is named as such.
//! SQLite in a temp dir; events jobs with nothing to do are the cheap jobs
//! that run every second.

use regkeeper_test_support as support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::registry::{free_port, Reply, ScriptedServer};
use support::wait_until;

const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

/// A job with the events handler that runs every second.
fn events_job(name: &str) -> String {
    format!("[jobs.{name}]\nhandler = \"events\"\nschedule = \"* * * * * *\"\n")
}

/// A daemon's temp dir and intake port.
struct World {
    dir: tempfile::TempDir,
    port: u16,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("a temp dir"),
            port: free_port(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("schedules.toml")
    }

    /// The configuration: SQLite in the temp dir, the intake on `port`
    /// without a token, the registry at `registry`, and `jobs`.
    fn config(&self, registry: &str, jobs: &str) -> String {
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\n[registry]\nurl = \"{registry}\"\ntimeout = \"300s\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{}\"\n\n[daemon]\ngrace_period = \"5s\"\n\n{jobs}",
            self.dir.path().join("regkeeper.db").display(),
            self.port,
        )
    }

    fn write(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("writing schedules.toml");
    }

    /// Writes the configuration with `jobs` and starts a daemon on it.
    fn start(&self, jobs: &str) -> Daemon {
        self.write(&self.config("http://127.0.0.1:9", jobs));
        let mut daemon = Daemon::start(&self.config_path());
        daemon.wait_for_log("regkeeper running");
        daemon.wait_for_intake(self.port);
        daemon
    }

    /// Rewrites the file with `jobs`, sends SIGHUP and waits for the
    /// reload's summary; returns the log's length before it.
    fn reload(&self, daemon: &mut Daemon, jobs: &str, summary: &str) -> usize {
        self.write(&self.config("http://127.0.0.1:9", jobs));
        hang_up(daemon, summary)
    }

    /// Posts one push event to the intake; its status and body.
    fn post_push(&self, id: &str) -> (u16, serde_json::Value) {
        let body = format!(
            r#"{{"events":[{{"id":"{id}","timestamp":"2026-01-02T03:04:05Z","action":"push",
            "target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":100,
            "digest":"sha256:{digest}","length":100,"repository":"ns/app","tag":"1.0"}},
            "request":{{"method":"PUT"}},"actor":{{}}}}]}}"#,
            digest = "a".repeat(64)
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .post(&format!(
                "http://127.0.0.1:{}/v2/webhooks/events",
                self.port
            ))
            .header("Content-Type", EVENTS_V1)
            .send(body.as_bytes())
            .expect("the intake answers");
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .expect("the intake's answer");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Sends SIGHUP and waits until the log shows `expected` after this point;
/// returns the log's length before the signal.
fn hang_up(daemon: &mut Daemon, expected: &str) -> usize {
    let before = daemon.log().len();
    daemon.signal(libc::SIGHUP);
    wait_for_log_after(daemon, before, expected);
    before
}

/// Waits until the log, from byte `from` on, contains `text`.
fn wait_for_log_after(daemon: &mut Daemon, from: usize, text: &str) {
    let found = support::wait::poll(support::DEADLINE, || {
        daemon
            .log()
            .get(from..)
            .is_some_and(|tail| tail.contains(text))
            .then_some(())
    });
    if found.is_none() {
        panic!("timed out waiting for {text:?}; the log:\n{}", daemon.log());
    }
}

/// Lines of the log from byte `from` on that end a run of `job`.
fn finished_runs(log: &str, from: usize, job: &str) -> usize {
    let prefix = format!("job={job} run=");
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&prefix) && line.contains(" finished: "))
        .count()
}

/// Waits until `job` has finished `runs` runs after byte `from` of the log.
fn wait_for_runs(daemon: &mut Daemon, from: usize, job: &str, runs: usize) {
    let found = support::wait::poll(support::DEADLINE, || {
        (finished_runs(&daemon.log(), from, job) >= runs).then_some(())
    });
    if found.is_none() {
        panic!(
            "timed out waiting for {runs} runs of {job}; the log:\n{}",
            daemon.log()
        );
    }
}

#[test]
fn a_job_added_by_a_reload_runs() {
    let world = World::new();
    let mut daemon = world.start(&events_job("ev"));
    wait_for_runs(&mut daemon, 0, "ev", 1);
    let jobs = format!("{}\n{}", events_job("ev"), events_job("added"));
    let before = world.reload(
        &mut daemon,
        &jobs,
        "reload: jobs added=[added] removed=[] changed=[]",
    );
    wait_for_runs(&mut daemon, before, "added", 2);
    wait_for_runs(&mut daemon, before, "ev", 2);
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn a_changed_schedule_takes_effect_from_the_next_run() {
    let world = World::new();
    let rare = "[jobs.rare]\nhandler = \"events\"\nschedule = \"0 0 0 1 1 * 2099\"\n";
    let mut daemon = world.start(&format!("{}\n{rare}", events_job("ev")));
    wait_for_runs(&mut daemon, 0, "ev", 2);
    assert_eq!(
        finished_runs(&daemon.log(), 0, "rare"),
        0,
        "{}",
        daemon.log()
    );
    let before = world.reload(
        &mut daemon,
        &format!("{}\n{}", events_job("ev"), events_job("rare")),
        "reload: jobs added=[] removed=[] changed=[rare]",
    );
    assert!(
        daemon.log()[before..]
            .contains("job=rare scheduled: handler=events schedule=\"* * * * * *\""),
        "{}",
        daemon.log()
    );
    wait_for_runs(&mut daemon, before, "rare", 2);
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn a_disabled_job_stops_running_and_a_removed_one_too() {
    let world = World::new();
    let jobs = format!(
        "{}\n{}\n{}",
        events_job("ev"),
        events_job("other"),
        events_job("gone")
    );
    let mut daemon = world.start(&jobs);
    wait_for_runs(&mut daemon, 0, "ev", 1);
    wait_for_runs(&mut daemon, 0, "gone", 1);
    let jobs = format!(
        "{}enabled = false\n\n{}",
        events_job("ev"),
        events_job("other")
    );
    let before = world.reload(
        &mut daemon,
        &jobs,
        "reload: jobs added=[] removed=[gone] changed=[ev]",
    );
    assert!(
        daemon.log()[before..].contains("job=ev is disabled: not scheduled"),
        "{}",
        daemon.log()
    );
    // A run that was in flight at the reload may still end; none starts
    // afterwards, while the other job goes on every second.
    let after = daemon.log().len();
    wait_for_runs(&mut daemon, after, "other", 4);
    let log = daemon.log();
    for job in ["ev", "gone"] {
        assert!(
            finished_runs(&log, after, job) <= 1,
            "{job} still runs after the reload:\n{log}"
        );
    }
    let third = daemon.log().len();
    wait_for_runs(&mut daemon, third, "other", 2);
    for job in ["ev", "gone"] {
        assert_eq!(
            finished_runs(&daemon.log(), third, job),
            0,
            "{}",
            daemon.log()
        );
    }
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn a_broken_file_is_refused_while_the_old_jobs_run_and_the_intake_stores() {
    let world = World::new();
    let mut daemon = world.start(&events_job("ev"));
    wait_for_runs(&mut daemon, 0, "ev", 1);

    // Not TOML at all.
    let path = world.config_path();
    let good = std::fs::read_to_string(&path).expect("the config");
    world.write(&format!("{good}\n[jobs.broken\nhandler = \"events\"\n"));
    let before = hang_up(&mut daemon, "reload refused (1 since start)");
    let refusal = refusal_line(&daemon.log(), before);
    assert!(
        refusal.contains(&format!("{}:", path.display())),
        "the file is named: {refusal}"
    );
    assert!(refusal.contains("ERROR"), "at error: {refusal}");
    assert!(
        refusal.contains("the running configuration stays"),
        "{refusal}"
    );

    // Valid TOML, an invalid cron expression: file, line and job named.
    let bad_cron = good.replace("schedule = \"* * * * * *\"", "schedule = \"*/5 * * *\"");
    assert_ne!(bad_cron, good);
    world.write(&bad_cron);
    let line_number = bad_cron
        .lines()
        .position(|line| line.starts_with("schedule = \"*/5"))
        .expect("the schedule line")
        + 1;
    let before = hang_up(&mut daemon, "reload refused (2 since start)");
    let refusal = refusal_line(&daemon.log(), before);
    assert!(
        refusal.contains(&format!("{}:{line_number}:", path.display())),
        "file and line named: {refusal}"
    );
    assert!(
        refusal.contains("job \"ev\""),
        "the job is named: {refusal}"
    );

    // Both refusals are counted in the metrics, and no applied reload.
    let metrics = world.metrics();
    assert!(
        metrics.contains("regkeeper_config_reloads_total{outcome=\"refused\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("regkeeper_config_reloads_total{outcome=\"ok\"} 0"),
        "{metrics}"
    );

    // The old job runs on, and the intake stores and wakes it.
    let after = daemon.log().len();
    wait_for_runs(&mut daemon, after, "ev", 2);
    let (status, body) = world.post_push("after-refusal");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["stored"], 1, "{body}");
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

impl World {
    /// The daemon's `GET /metrics` on its intake.
    fn metrics(&self) -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .get(&format!("http://127.0.0.1:{}/metrics", self.port))
            .call()
            .expect("scraping /metrics");
        assert_eq!(response.status().as_u16(), 200);
        response.body_mut().read_to_string().expect("a body")
    }
}

/// The refusal line of the log after byte `from`.
fn refusal_line(log: &str, from: usize) -> String {
    log[from..]
        .lines()
        .find(|line| line.contains("reload refused"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"))
        .to_string()
}

#[test]
fn the_intake_keeps_serving_across_reloads_and_wakes_the_new_events_job() {
    let world = World::new();
    let rare = |name: &str| {
        format!("[jobs.{name}]\nhandler = \"events\"\nschedule = \"0 0 0 1 1 * 2099\"\n")
    };
    let mut daemon = world.start(&rare("first"));
    let (status, _) = world.post_push("e1");
    assert_eq!(status, 202);
    wait_for_runs(&mut daemon, 0, "first", 1);
    // The events job is renamed: the intake's wake-ups reach the new one.
    let before = world.reload(
        &mut daemon,
        &rare("second"),
        "reload: jobs added=[second] removed=[first] changed=[]",
    );
    let (status, body) = world.post_push("e2");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["stored"], 1, "{body}");
    wait_for_runs(&mut daemon, before, "second", 1);
    assert!(
        daemon.log()[before..].contains("job=second run=")
            && daemon.log()[before..].contains("trigger=wake"),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

/// A registry stand-in with an empty catalog whose n-th catalog request
/// waits until `released` reaches n (at most two minutes).
fn gated_registry(released: Arc<AtomicUsize>) -> ScriptedServer {
    let catalog_requests = AtomicUsize::new(0);
    ScriptedServer::with_handler(move |_, request| {
        if request.path().contains("_catalog") {
            let number = catalog_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let deadline = Instant::now() + Duration::from_secs(120);
            while released.load(Ordering::SeqCst) < number && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Reply::json(200, r#"{"repositories":[]}"#)
            .header("Docker-Distribution-Api-Version", "registry/2.0")
    })
}

#[test]
fn a_run_in_flight_finishes_under_its_old_options_and_the_next_uses_the_new() {
    let world = World::new();
    let released = Arc::new(AtomicUsize::new(0));
    let registry = gated_registry(released.clone());
    let sync_job = |timeout: &str| {
        format!(
            "[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n\
             strategy = \"update\"\ntimeout = \"{timeout}\"\n"
        )
    };
    world.write(&world.config(&registry.url, &sync_job("1h")));
    let mut daemon = Daemon::start(&world.config_path());
    daemon.wait_for_log("regkeeper running");
    wait_until("the first catalog request arrived", || {
        registry
            .requests()
            .iter()
            .any(|request| request.path().contains("_catalog"))
    });

    world.write(&world.config(&registry.url, &sync_job("1s")));
    let before = hang_up(
        &mut daemon,
        "reload: jobs added=[] removed=[] changed=[registry-sync]",
    );
    assert!(
        daemon.log()[before..].contains(
            "job=registry-sync stops after its run in flight, which finishes as it started"
        ),
        "{}",
        daemon.log()
    );
    // The run goes on for well over the new timeout (ticks skipped meanwhile
    // count the seconds) and is not stopped by it.
    wait_until("two ticks were skipped after the reload", || {
        daemon.log()[before..]
            .lines()
            .filter(|line| line.contains("job=registry-sync run=") && line.contains(" skipped"))
            .count()
            >= 2
    });
    released.store(1, Ordering::SeqCst);
    wait_for_runs(&mut daemon, 0, "registry-sync", 1);
    let log = daemon.log();
    let (until_first_end, first_end) = log
        .split_inclusive('\n')
        .scan(0, |length, line| {
            *length += line.len();
            Some((*length, line))
        })
        .find(|(_, line)| line.contains("job=registry-sync run=") && line.contains(" finished: "))
        .expect("the first run's end");
    assert!(first_end.contains("outcome=ok"), "{first_end}\n{log}");
    assert!(
        !log[..until_first_end].contains("overran its timeout"),
        "{log}"
    );

    // The next run has the new timeout of 1s.
    wait_for_log_after(
        &mut daemon,
        before,
        "job=registry-sync overran its timeout of 1s, asking it to stop",
    );
    released.store(2, Ordering::SeqCst);
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn keys_that_need_a_restart_are_named_and_keep_their_running_values() {
    let world = World::new();
    let mut daemon = world.start(&events_job("ev"));
    // Another listen address and another database file.
    let text = world
        .config("http://127.0.0.1:9", &events_job("ev"))
        .replace(
            &format!("127.0.0.1:{}", world.port),
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace("regkeeper.db", "other.db");
    world.write(&text);
    let before = hang_up(&mut daemon, "reload: jobs added=[] removed=[] changed=[]");
    let log = daemon.log();
    for key in ["[database] url", "[notifications] listen"] {
        let line = log[before..]
            .lines()
            .find(|line| line.contains(&format!("needs a restart: {key}")))
            .unwrap_or_else(|| panic!("{key} is not named:\n{log}"));
        assert!(line.contains("WARN"), "{line}");
    }
    // The intake still listens where it did, on the database it had.
    let (status, body) = world.post_push("still-here");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["stored"], 1, "{body}");
    assert!(!world.dir.path().join("other.db").exists());
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}
