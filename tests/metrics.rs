//! `GET /metrics` of the real daemon after real work: a docker-registry
//! notifying the intake, the events job applying pushes, a sync pass, a
//! scan by a stand-in Clair and a failing stand-in adapter; the scrape is
//! checked value by value and by `promtool check metrics` (Debian's
//! `prometheus` package, installed by scripts/test.sh). Also the listener of
//! `[metrics] listen` with `/metrics` off on the intake, the safety valve's
//! refusals, a registry that went away, and the age of a waiting event (on
//! SQLite and PostgreSQL). The example alert rules are held to `promtool
//! check rules` and `promtool test rules`. Every daemon and server is
//! stopped by PID when its handle drops.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use regkeeper_test_support as support;
use support::daemon::Daemon;
use support::prometheus::Prometheus;
use support::registry::{free_port, Notifications, Options, TestRegistry};
use support::scanners::{Api, ScannerServer};
use support::{wait_until, Backend, TestStore};

/// Debian's promtool (package `prometheus`).
const PROMTOOL: &str = "/usr/bin/promtool";

/// The Prometheus text format, as `/metrics` names it.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET http://127.0.0.1:PORT/metrics`: its status and body.
fn get_metrics(port: u16) -> (u16, String) {
    let mut response = agent()
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("scraping /metrics");
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .expect("reading the scrape");
    (status, body)
}

/// A scrape that must succeed in the Prometheus text format.
fn scrape(port: u16) -> String {
    let mut response = agent()
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("scraping /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, TEXT_FORMAT);
    response
        .body_mut()
        .read_to_string()
        .expect("reading the scrape")
}

/// One sample line: its name, labels and value.
fn sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_string(), value.trim_matches('"').to_string()))
        })
        .collect();
    Some((name.to_string(), labels, value))
}

/// The sum of the samples called `name` that carry every label of `labels`;
/// None when there is none.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = text
        .lines()
        .filter_map(sample)
        .filter(|(sample_name, sample_labels, _)| {
            sample_name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample_labels.get(*key).map(String::as_str) == Some(value))
        })
        .map(|(_, _, value)| value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Like [`value`], 0 when there is none.
fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels).unwrap_or(0.0)
}

/// Runs `promtool ARGS` with `input` on stdin; its exit status and output.
fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("running {PROMTOOL} (package prometheus): {error}"));
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(input.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("waiting for promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Writes `text` as the daemon's schedules.toml in `dir`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("schedules.toml");
    std::fs::write(&path, text).expect("writing the config");
    path
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("regkeeper.db").display())
}

/// A condition on a scrape's text.
type Condition = dyn Fn(&str) -> bool;

#[test]
fn a_scrape_after_real_work_reports_it_and_passes_promtool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let intake_port = free_port();
    let metrics_port = free_port();
    let registry = TestRegistry::start(Options {
        notifications: Some(Notifications {
            url: format!("http://127.0.0.1:{intake_port}/v2/webhooks/events"),
            authorization: None,
        }),
        ..Options::default()
    });
    let clair = ScannerServer::start(Api::Clair);
    let adapter = ScannerServer::start(Api::Adapter);
    adapter.set(|switches| switches.fail_submit = Some((500, "scanner broke".to_string())));
    let config = write_config(
        dir.path(),
        &format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"{registry}\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{intake_port}\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
             [daemon]\ngrace_period = \"5s\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n\n\
             [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"*/2 * * * * *\"\n\
             strategy = \"update\"\n\n\
             [jobs.security-scan]\nhandler = \"security\"\nschedule = \"*/2 * * * * *\"\n\n\
             [security.clair]\nserver = \"{clair}\"\n\n\
             [security.adapter]\nserver = \"{adapter}\"\n",
            database = sqlite_url(dir.path()),
            registry = registry.url,
            clair = clair.url(),
            adapter = adapter.url(),
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(intake_port);

    // Before any work: every scheduled job's runs and every scanner's scans
    // are there at 0, so that an alert sees the first failure.
    let text = scrape(intake_port);
    for job in ["registry-events", "registry-sync", "security-scan"] {
        for outcome in ["ok", "failed", "timed_out"] {
            assert!(
                value(
                    &text,
                    "regkeeper_job_runs_total",
                    &[("job", job), ("outcome", outcome)]
                )
                .is_some(),
                "{job} {outcome} missing:\n{text}"
            );
        }
    }
    for scanner in ["clair", "adapter"] {
        assert!(
            value(
                &text,
                "regkeeper_scanner_scans_total",
                &[("scanner", scanner), ("outcome", "unreachable")]
            )
            .is_some(),
            "{scanner} missing:\n{text}"
        );
    }

    // A push reaches the database through a notification and the events
    // job; the events job's own manifest GET comes back as a pull and is
    // dropped; sync walks the registry; the tag is scanned.
    registry.push_image("ns/app", "1.0");
    let mut last = String::new();
    let conditions: [(&str, &Condition); 11] = [
        ("a notification answered 202", &|text| {
            count(
                text,
                "regkeeper_intake_notifications_total",
                &[("code", "202")],
            ) >= 1.0
        }),
        ("an event stored", &|text| {
            count(text, "regkeeper_intake_events_stored_total", &[]) >= 1.0
        }),
        ("regkeeper's own pull dropped", &|text| {
            count(
                text,
                "regkeeper_intake_events_dropped_total",
                &[("reason", "own_pull")],
            ) >= 1.0
        }),
        ("an event applied", &|text| {
            count(
                text,
                "regkeeper_job_items_total",
                &[("job", "registry-events"), ("kind", "applied")],
            ) >= 1.0
        }),
        ("the events done and none waiting", &|text| {
            count(text, "regkeeper_queue_events", &[("status", "done")]) >= 1.0
                && count(text, "regkeeper_queue_events", &[("status", "fresh")]) == 0.0
                && count(text, "regkeeper_queue_events", &[("status", "progress")]) == 0.0
                && value(text, "regkeeper_queue_oldest_event_age_seconds", &[]) == Some(0.0)
        }),
        ("a sync pass ok", &|text| {
            count(
                text,
                "regkeeper_job_runs_total",
                &[("job", "registry-sync"), ("outcome", "ok")],
            ) >= 1.0
        }),
        ("a clair scan ok", &|text| {
            count(
                text,
                "regkeeper_scanner_scans_total",
                &[("scanner", "clair"), ("outcome", "ok")],
            ) >= 1.0
                && count(
                    text,
                    "regkeeper_scanner_request_duration_seconds_count",
                    &[("scanner", "clair"), ("method", "POST"), ("status", "2xx")],
                ) >= 1.0
        }),
        ("an adapter scan failed with 5xx", &|text| {
            count(
                text,
                "regkeeper_scanner_scans_total",
                &[("scanner", "adapter"), ("outcome", "failed")],
            ) >= 1.0
                && count(
                    text,
                    "regkeeper_scanner_request_duration_seconds_count",
                    &[
                        ("scanner", "adapter"),
                        ("method", "POST"),
                        ("status", "5xx"),
                    ],
                ) >= 1.0
        }),
        ("the tag counted by scan state", &|text| {
            count(text, "regkeeper_queue_tags", &[]) == 1.0
        }),
        ("registry requests counted", &|text| {
            count(
                text,
                "regkeeper_registry_request_duration_seconds_count",
                &[("method", "GET"), ("status", "2xx")],
            ) >= 1.0
        }),
        ("a last success of each job", &|text| {
            ["registry-events", "registry-sync", "security-scan"]
                .iter()
                .all(|job| {
                    value(
                        text,
                        "regkeeper_job_last_success_timestamp_seconds",
                        &[("job", job)],
                    )
                    .is_some_and(|at| at > 1.7e9)
                })
        }),
    ];
    for (what, condition) in conditions {
        wait_until(&format!("the metrics show {what}"), || {
            last = scrape(intake_port);
            condition(&last)
        });
    }
    let text = last;
    // Durations: one observation per run that ended.
    let runs = count(
        &text,
        "regkeeper_job_runs_total",
        &[("job", "registry-sync"), ("outcome", "ok")],
    );
    let observed = count(
        &text,
        "regkeeper_job_run_duration_seconds_count",
        &[("job", "registry-sync")],
    );
    assert!(observed >= runs, "{observed} < {runs}:\n{text}");
    assert!(
        text.contains("# TYPE regkeeper_job_run_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        !text.contains("ns/app"),
        "no repository is a label:\n{text}"
    );

    let (ok, output) = promtool(&["check", "metrics"], &text);
    assert!(ok && output.trim().is_empty(), "promtool: {output}\n{text}");

    // The listener of its own serves the same metrics.
    let own = scrape(metrics_port);
    assert!(
        value(&own, "regkeeper_intake_events_stored_total", &[]).is_some_and(|n| n >= 1.0),
        "{own}"
    );
    let (ok, output) = promtool(&["check", "metrics"], &own);
    assert!(ok && output.trim().is_empty(), "promtool: {output}\n{own}");

    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn the_own_listener_serves_metrics_off_the_intake_and_counts_valve_refusals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let intake_port = free_port();
    let metrics_port = free_port();
    let registry = TestRegistry::anonymous();
    let first = registry.push_image("ns/app", "1.0");
    let second = registry.push_image("ns/app", "2.0");
    let config = write_config(
        dir.path(),
        &format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"{registry}\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{intake_port}\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\nintake = false\n\n\
             [daemon]\ngrace_period = \"5s\"\n\n\
             [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n\
             strategy = \"update-delete\"\nmax_delete_fraction = 0.4\n",
            database = sqlite_url(dir.path()),
            registry = registry.url,
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(intake_port);
    let (status, _) = get_metrics(intake_port);
    assert_eq!(status, 404, "intake = false: no /metrics on the intake");

    wait_until("the sync job records both tags", || {
        count(
            &scrape(metrics_port),
            "regkeeper_job_items_total",
            &[("job", "registry-sync"), ("kind", "tags_created")],
        ) >= 2.0
    });
    // Either tag alone is half of them, more than 0.4: whether a pass runs
    // between the two deletions or after both, the valve refuses it.
    assert_eq!(registry.delete("ns/app", &first.digest), 202);
    assert_eq!(registry.delete("ns/app", &second.digest), 202);
    let mut text = String::new();
    wait_until("a pass is refused by the safety valve", || {
        text = scrape(metrics_port);
        count(
            &text,
            "regkeeper_sync_valve_refusals_total",
            &[("job", "registry-sync")],
        ) >= 1.0
    });
    assert!(
        count(
            &text,
            "regkeeper_job_runs_total",
            &[("job", "registry-sync"), ("outcome", "failed")],
        ) >= 1.0,
        "{text}"
    );
    // The queue gauges may be a few seconds old: wait for them.
    wait_until("the gauges show both tags still there", || {
        text = scrape(metrics_port);
        count(&text, "regkeeper_queue_tags", &[]) == 2.0
    });
    let (ok, output) = promtool(&["check", "metrics"], &text);
    assert!(ok && output.trim().is_empty(), "promtool: {output}\n{text}");
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

/// On both databases: the queue gauges come from `Store::queue_depths`.
fn a_waiting_event_ages_in_the_metrics(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestStore::new(backend);
    let intake_port = free_port();
    // No events job: what the intake stores waits.
    let config = write_config(
        dir.path(),
        &format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:9\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{intake_port}\"\n\n\
             [metrics]\nqueue_refresh = \"0s\"\n",
            database = database.url(),
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(intake_port);
    let text = scrape(intake_port);
    assert_eq!(
        value(&text, "regkeeper_queue_oldest_event_age_seconds", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        count(&text, "regkeeper_queue_events", &[("status", "fresh")]),
        0.0
    );

    let event = r#"{"id":"metrics-1","timestamp":"2026-01-02T03:04:05.123Z","action":"push",
        "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":401,
        "digest":"sha256:8ffca516","length":401,"repository":"ns/app","tag":"1.0"},
        "request":{"id":"r-1","addr":"127.0.0.1:40662","host":"127.0.0.1:5000","method":"PUT","useragent":"test"},
        "actor":{},"source":{"addr":"vm:5000","instanceID":"i"}}"#;
    let response = agent()
        .post(&format!(
            "http://127.0.0.1:{intake_port}/v2/webhooks/events"
        ))
        .header("Content-Type", EVENTS_V1)
        .send(format!(r#"{{"events":[{event}]}}"#))
        .expect("posting a notification");
    assert_eq!(response.status().as_u16(), 202);
    let response = agent()
        .post(&format!(
            "http://127.0.0.1:{intake_port}/v2/webhooks/events"
        ))
        .header("Content-Type", "text/plain")
        .send("{}")
        .expect("posting a notification");
    assert_eq!(response.status().as_u16(), 415);

    let mut text = String::new();
    wait_until("the stored event has waited a second", || {
        text = scrape(intake_port);
        value(&text, "regkeeper_queue_oldest_event_age_seconds", &[]).is_some_and(|age| age >= 1.0)
    });
    assert_eq!(
        count(&text, "regkeeper_queue_events", &[("status", "fresh")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        count(
            &text,
            "regkeeper_intake_notifications_total",
            &[("code", "202")]
        ),
        1.0
    );
    assert_eq!(
        count(
            &text,
            "regkeeper_intake_notifications_total",
            &[("code", "415")]
        ),
        1.0
    );
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn a_registry_that_went_away_shows_as_failed_and_refused_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let intake_port = free_port();
    // Nothing listens there: every request is refused at connect.
    let gone = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:{gone}\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{intake_port}\"\n\n\
             [metrics]\nqueue_refresh = \"0s\"\n\n\
             [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n\
             strategy = \"update\"\n",
            database = sqlite_url(dir.path()),
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(intake_port);
    let mut text = String::new();
    wait_until("requests are refused without being sent", || {
        text = scrape(intake_port);
        count(&text, "regkeeper_registry_requests_refused_total", &[]) >= 1.0
    });
    assert!(
        count(
            &text,
            "regkeeper_registry_request_duration_seconds_count",
            &[("method", "GET"), ("status", "error")],
        ) >= 4.0,
        "the breaker opens after 4 failed requests:\n{text}"
    );
    assert!(
        count(
            &text,
            "regkeeper_job_runs_total",
            &[("job", "registry-sync"), ("outcome", "failed")],
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn with_the_intake_off_and_no_listen_nothing_serves_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:9\"\n\n\
             [notifications]\nlisten = \"\"\n",
            database = sqlite_url(dir.path()),
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_log(
        "metrics: nothing serves /metrics (no [metrics] listen, and the intake is off)",
    );
    daemon.wait_for_log("regkeeper running");
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

support::both_backends!(a_waiting_event_ages_in_the_metrics);

/// The shipped alert rules.
fn alerts_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/alerts.yml")
}

/// The scrape config of docs/operating.md, in a real Prometheus with the
/// shipped rules: regkeeper's `job` label survives, `up` keeps the scrape
/// job's, and a job whose runs fail (a sync of a registry that is not
/// there) fires `RegkeeperJobFailing` while the events job does not.
#[test]
fn a_real_prometheus_scrapes_the_daemon_and_fires_the_example_alerts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let intake_port = free_port();
    let gone = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"http://127.0.0.1:{gone}\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{intake_port}\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"* * * * * *\"\n\n\
             [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n\
             strategy = \"update\"\n",
            database = sqlite_url(dir.path()),
        ),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(intake_port);
    let alerts = alerts_file();
    let prometheus = Prometheus::start(
        "regkeeper",
        &[format!("127.0.0.1:{intake_port}")],
        "    honor_labels: true\n",
        &[alerts.as_path()],
    );
    let target = format!("127.0.0.1:{intake_port}");
    wait_until("Prometheus has scraped the daemon", || {
        prometheus.query("up").iter().any(|(labels, value)| {
            labels["job"] == "regkeeper" && labels["instance"] == target.as_str() && *value == 1.0
        })
    });
    wait_until("the events job's runs are there under its own name", || {
        prometheus
            .query(r#"regkeeper_job_runs_total{job="registry-events",outcome="ok"}"#)
            .iter()
            .any(|(labels, value)| labels["instance"] == target.as_str() && *value >= 1.0)
    });
    wait_until("RegkeeperJobFailing fires for the sync job", || {
        prometheus
            .query(r#"ALERTS{alertname="RegkeeperJobFailing",alertstate="firing"}"#)
            .iter()
            .any(|(labels, _)| labels["job"] == "registry-sync")
    });
    let firing = prometheus.query(r#"ALERTS{alertname="RegkeeperJobFailing"}"#);
    assert!(
        firing
            .iter()
            .all(|(labels, _)| labels["job"] == "registry-sync"),
        "only the sync job fails: {firing:?}"
    );
    let rules = prometheus.api("rules", None).expect("the rules");
    let loaded: Vec<(String, String)> = rules["groups"][0]["rules"]
        .as_array()
        .expect("the rules of the group")
        .iter()
        .map(|rule| {
            (
                rule["name"].as_str().unwrap_or_default().to_string(),
                rule["health"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(loaded.len(), 7, "{loaded:?}\n{}", prometheus.log());
    assert!(
        loaded.iter().all(|(_, health)| health == "ok"),
        "{loaded:?}\n{}",
        prometheus.log()
    );
    drop(prometheus);
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

#[test]
fn the_example_alert_rules_pass_promtool() {
    let output = Command::new(PROMTOOL)
        .arg("check")
        .arg("rules")
        .arg(alerts_file())
        .output()
        .unwrap_or_else(|error| panic!("running {PROMTOOL} (package prometheus): {error}"));
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_example_alert_rules_fire_as_their_tests_say() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/alerts.test.yml");
    let output = Command::new(PROMTOOL)
        .arg("test")
        .arg("rules")
        .arg(&tests)
        .current_dir(tests.parent().expect("packaging/"))
        .output()
        .unwrap_or_else(|error| panic!("running {PROMTOOL} (package prometheus): {error}"));
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
