//! The real binary's intake under attack, on 127.0.0.1 with SQLite: idle
//! sockets and a slow-loris client do not starve it (nor the daemon's other
//! sockets) and are closed; a token-less loopback intake accepts only
//! loopback `Host` names (DNS rebinding); a flood of malformed events is one
//! log line with ids escaped; a `../` repository name never becomes a
//! request outside `/v2/<name>/`. Every daemon is killed by PID on drop.
//! The library's intake, started in the test with short limits, shows the
//! body timeout and that an intake with a token takes any `Host`.

use regkeeper_test_support as support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regkeeper::intake::{self, Intake, Limits, RunningIntake, Settings};
use regkeeper::store::sql::SqlStore;
use regkeeper::store::{NewEvent, Store, Value};
use support::daemon::Daemon;
use support::registry::{free_port, Reply, ScriptedServer, TestRegistry};
use support::{wait_until, DEADLINE};

const TOKEN: &str = "Token intake-attacks-token";
const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
/// A digest of the OCI form, for events about manifests nobody has.
const SOME_DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A temp dir with the daemon's SQLite database and configuration.
struct World {
    dir: tempfile::TempDir,
    port: u16,
}

/// What a test's configuration varies.
struct Setup<'a> {
    registry_url: &'a str,
    token: bool,
    /// `schedule` of the events job.
    schedule: &'a str,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
        }
    }

    fn store(&self) -> SqlStore {
        support::store::sqlite_file(&self.dir.path().join("regkeeper.db"))
    }

    fn config(&self, setup: &Setup) -> PathBuf {
        let token = if setup.token {
            let token_file = self.dir.path().join("notify-token");
            std::fs::write(&token_file, format!("{TOKEN}\n")).expect("writing the token file");
            format!("token_file = \"{}\"\n", token_file.display())
        } else {
            String::new()
        };
        let config = format!(
            "[database]\nurl = \"sqlite://{database}\"\n\n\
             [registry]\nurl = \"{registry}\"\ntimeout = \"60s\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{port}\"\n{token}\n\
             [daemon]\ngrace_period = \"5s\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"{schedule}\"\n",
            database = self.dir.path().join("regkeeper.db").display(),
            registry = setup.registry_url,
            port = self.port,
            schedule = setup.schedule,
        );
        let path = self.dir.path().join("schedules.toml");
        std::fs::write(&path, config).expect("writing the config");
        path
    }

    /// Starts the daemon; with `open_files`, under that RLIMIT_NOFILE.
    fn start(&self, setup: &Setup, open_files: Option<u64>) -> Daemon {
        let config = self.config(setup);
        let mut daemon = match open_files {
            Some(limit) => Daemon::start_with_open_files(&config, limit),
            None => Daemon::start(&config),
        };
        daemon.wait_for_intake(self.port);
        daemon
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET on the intake; None when the request failed.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut response = agent()
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    let status = response.status().as_u16();
    Some((
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

/// POSTs an envelope with the token; None when the request failed.
fn notify(port: u16, body: &str) -> Option<(u16, serde_json::Value)> {
    let mut response = agent()
        .post(&format!("http://127.0.0.1:{port}/v2/webhooks/events"))
        .header("Content-Type", EVENTS_V1)
        .header("Authorization", TOKEN)
        .send(body.as_bytes())
        .ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Some((status, serde_json::from_str(&text).unwrap_or_default()))
}

/// One raw HTTP/1.1 POST of `body` with exactly this `Host` header (and
/// `authorization`, if any): the status answered.
fn post_with_host(port: u16, host: &str, authorization: Option<&str>, body: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the intake");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    let authorization =
        authorization.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    let request = format!(
        "POST /v2/webhooks/events HTTP/1.1\r\nHost: {host}\r\n{authorization}\
         Content-Type: {EVENTS_V1}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("sending the request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer for Host {host:?}: {answer:?}"))
}

fn envelope(events: &[String]) -> String {
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

fn delete_event(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","timestamp":"2026-01-02T03:04:05Z","action":"delete",
        "target":{{"repository":"ns/app","tag":"old"}},"request":{{"method":"DELETE"}},"actor":{{}}}}"#
    )
}

/// A push event without `references`: the events job must GET the manifest.
fn push_event(id: &str, repository: &str, digest: &str, media_type: &str, tag: &str) -> String {
    serde_json::json!({
        "id": id,
        "timestamp": "2026-01-02T03:04:05.123Z",
        "action": "push",
        "target": {"mediaType": media_type, "digest": digest, "repository": repository, "tag": tag},
        "request": {"id": "r", "method": "PUT", "useragent": "test"},
        "actor": {},
    })
    .to_string()
}

/// `(event_id, status, last_error)` of every stored event, in arrival order.
fn stored_events(store: &SqlStore) -> Vec<(String, i64, Option<String>)> {
    let rows = store
        .tx(|conn| {
            conn.query(
                "SELECT event_id, status, last_error FROM registry_events ORDER BY id",
                &[],
            )
        })
        .expect("reading events");
    rows.iter()
        .map(|row| {
            let text = |value: &Value| match value {
                Value::Text(text) => Some(text.clone()),
                _ => None,
            };
            let status = match &row[1] {
                Value::Int(status) => *status,
                other => panic!("status {other:?}"),
            };
            (text(&row[0]).unwrap_or_default(), status, text(&row[2]))
        })
        .collect()
}

/// Whether the daemon has closed (or answered on) a socket that sent
/// nothing: a read that does not block.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        // End of stream, or an answer (then the close follows).
        Ok(0 | 1..) => true,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn idle_sockets_and_a_slow_loris_neither_starve_the_daemon_nor_stay_open() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_oci_image("ns/app", "1.0");
    let world = World::new();
    let setup = Setup {
        registry_url: &registry.url,
        token: true,
        schedule: "*/2 * * * * *",
    };
    // The daemon needs some 15 descriptors of its own: as many idle sockets
    // as its descriptor limit exhaust it unless the intake caps its
    // connections. `scripts/chaos.sh` opens 1,000.
    let sockets: u64 = std::env::var("REGKEEPER_CHAOS_IDLE_SOCKETS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(300);
    let mut daemon = world.start(&setup, Some(sockets));
    let port = world.port;

    let mut idle: Vec<TcpStream> = (0..sockets)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("opening an idle socket"))
        .collect();
    for stream in &idle {
        stream.set_nonblocking(true).expect("a non-blocking socket");
    }
    let slow_loris = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting slowly");
        stream
            .write_all(b"POST /v2/webhooks/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .expect("starting a header");
        stream.set_nonblocking(true).expect("a non-blocking socket");
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if stream.write_all(b"a").is_err() || closed_by_peer(&mut stream) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    });

    // Meanwhile the intake answers, and a notification is stored and applied
    // (which needs the registry's socket and the database's).
    let store = world.store();
    let body = envelope(&[push_event(
        "during-flood",
        "ns/app",
        &image.digest,
        &image.media_type,
        "1.0",
    )]);
    let started = Instant::now();
    wait_until("the notification is accepted during the flood", || {
        matches!(notify(port, &body), Some((202, _)))
    });
    let accepted_after = started.elapsed();
    assert!(
        matches!(get(port, "/healthz"), Some((200, _))),
        "{}",
        daemon.log()
    );
    let host = registry.url.trim_start_matches("http://").to_string();
    wait_until("the events job applied the notification", || {
        let registry_id = store.ensure_registry(&host).expect("registry row");
        store
            .tags(registry_id, None)
            .expect("tags")
            .iter()
            .any(|tag| tag.tag == "1.0" && tag.image_id == image.image_id)
    });

    wait_until("the daemon closed every idle socket", || {
        idle.retain_mut(|stream| !closed_by_peer(stream));
        idle.is_empty()
    });
    let slow_loris_closed = slow_loris.join().expect("the slow-loris thread");
    assert!(
        slow_loris_closed.is_some(),
        "the slow-loris connection stayed open"
    );
    daemon.assert_running();
    let log = daemon.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(accepted_after < DEADLINE, "{accepted_after:?}");
    let peak_rss = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmHWM:")
                .map(|value| value.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "chaos: intake-abuse idle-sockets={sockets} slow-loris-closed-after={:.1}s \
         valid-notification-accepted-after={:.2}s peak-rss={peak_rss}",
        slow_loris_closed.map_or(0.0, |elapsed| elapsed.as_secs_f64()),
        accepted_after.as_secs_f64()
    );
}

#[test]
fn an_empty_notify_token_in_the_environment_neither_replaces_token_file_nor_turns_authentication_off(
) {
    // An unset `${VAR}` in compose: REGKEEPER_NOTIFY_TOKEN set but empty.
    // It used to replace token_file, and the empty token let a POST without
    // Authorization store a forged delete while the real token got 401.
    let world = World::new();
    let setup = Setup {
        registry_url: "http://127.0.0.1:9",
        token: true,
        schedule: "0 0 0 1 1 *",
    };
    let config = world.config(&setup);
    let mut daemon = Daemon::start_with_env(&config, &[("REGKEEPER_NOTIFY_TOKEN", "")]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.exit_status() {
            break status;
        }
        // A daemon that started anyway: attack it, then fail.
        if let Some((200, _)) = get(world.port, "/healthz") {
            let forged = envelope(&[delete_event("forged")]);
            let answer = post_with_host(
                world.port,
                &format!("127.0.0.1:{}", world.port),
                None,
                &forged,
            );
            panic!(
                "the daemon started with an empty token (a POST without Authorization got {answer}):\n{}",
                daemon.log()
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the daemon neither exited nor listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2), "{}", daemon.log());
    assert!(
        daemon
            .log()
            .contains("REGKEEPER_NOTIFY_TOKEN is set but empty (unset it, or give it a value)"),
        "{}",
        daemon.log()
    );
    assert!(stored_events(&world.store()).is_empty());

    // With the variable unset, token_file holds: no Authorization, no event.
    let daemon = world.start(&setup, None);
    let port = world.port;
    let forged = envelope(&[delete_event("forged")]);
    assert_eq!(
        post_with_host(port, &format!("127.0.0.1:{port}"), None, &forged),
        401,
        "{}",
        daemon.log()
    );
    assert_eq!(
        post_with_host(port, &format!("127.0.0.1:{port}"), Some(""), &forged),
        401
    );
    let (status, _) = notify(port, &envelope(&[delete_event("real")])).expect("the real token");
    assert_eq!(status, 202);
    let ids: Vec<String> = stored_events(&world.store())
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["real"]);
}

#[test]
fn a_token_less_loopback_intake_accepts_only_loopback_host_names() {
    let world = World::new();
    let setup = Setup {
        registry_url: "http://127.0.0.1:9",
        token: false,
        // Runs only when the intake wakes it.
        schedule: "0 0 0 1 1 *",
    };
    let daemon = world.start(&setup, None);
    let port = world.port;
    let store = world.store();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        String::new(),
    ] {
        let body = envelope(&[delete_event("rebound")]);
        assert_eq!(
            post_with_host(port, &host, None, &body),
            421,
            "Host {host:?}: {}",
            daemon.log()
        );
    }
    assert!(stored_events(&store).is_empty());

    let allowed = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ];
    for (index, host) in allowed.iter().enumerate() {
        let body = envelope(&[delete_event(&format!("local-{index}"))]);
        assert_eq!(
            post_with_host(port, host, None, &body),
            202,
            "Host {host:?}"
        );
    }
    let ids: Vec<String> = stored_events(&store)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["local-0", "local-1", "local-2", "local-3"]);
}

#[test]
fn a_flood_of_malformed_events_is_one_warning_line_with_ids_escaped() {
    let world = World::new();
    let setup = Setup {
        registry_url: "http://127.0.0.1:9",
        token: true,
        schedule: "0 0 0 1 1 *",
    };
    let daemon = world.start(&setup, None);
    let port = world.port;
    let lines_before = daemon.log().lines().count();

    // As many `{}` as fit the default 1 MiB limit.
    let count = (1024 * 1024 - r#"{"events":[]}"#.len()) / 3;
    let flood = format!(r#"{{"events":[{}{{}}]}}"#, "{},".repeat(count - 1));
    assert!(flood.len() <= 1024 * 1024);
    let (status, answer) = notify(port, &flood).expect("posting the flood");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["malformed"], count);

    // An id and a name meant to forge log lines.
    let forged = envelope(&[
        push_event(
            "evil\n\u{1b}[31mFORGED 2026-01-02 ERROR",
            "ns/app",
            SOME_DIGEST,
            "application/vnd.oci.image.manifest.v1+json",
            "1.0",
        ),
        push_event(
            "bad-name",
            "ns/app\n\u{1b}[2J",
            SOME_DIGEST,
            "application/vnd.oci.image.manifest.v1+json",
            "1.0",
        ),
    ]);
    let (status, answer) = notify(port, &forged).expect("posting forged ids");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["malformed"], 2);

    let log = daemon.log();
    let new_lines: Vec<&str> = log.lines().skip(lines_before).collect();
    assert!(
        new_lines.len() <= 10,
        "{} log lines for two envelopes:\n{}",
        new_lines.len(),
        new_lines[..new_lines.len().min(20)].join("\n")
    );
    assert!(log.len() < 64 * 1024, "{} bytes of log", log.len());
    let warnings: Vec<&&str> = new_lines
        .iter()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 2, "one warning per envelope: {warnings:#?}");
    assert!(
        warnings[0].contains(&format!("{count} x no action")),
        "{}",
        warnings[0]
    );
    assert!(!log.contains('\u{1b}'), "a raw escape reached the log");
    assert!(
        !log.lines().any(|line| line.starts_with("FORGED")),
        "a forged line"
    );
    assert!(
        warnings[1].contains(r#""evil\n\u{1b}[31mFORGED 2026-01-02 ERROR""#),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[1].contains(r#"bad repository name "ns/app\n\u{1b}[2J""#),
        "{}",
        warnings[1]
    );
}

#[test]
fn a_repository_name_with_dot_dot_never_becomes_a_request_outside_v2_name() {
    // A stand-in registry that knows no manifest and records every request.
    let registry = ScriptedServer::with_handler(|_, _| {
        Reply::json(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .header("Docker-Distribution-Api-Version", "registry/2.0")
    });
    let world = World::new();
    let store = world.store();
    // As an older version stored it.
    let traversal = "../../../admin/secret";
    store
        .insert_events(
            &[NewEvent {
                event_id: "stored-traversal".into(),
                action: "push".into(),
                repository: traversal.into(),
                data: push_event(
                    "stored-traversal",
                    traversal,
                    SOME_DIGEST,
                    "application/vnd.oci.image.manifest.v1+json",
                    "1.0",
                ),
            }],
            1,
        )
        .expect("storing an event");
    let setup = Setup {
        registry_url: &registry.url,
        token: true,
        schedule: "* * * * * *",
    };
    let daemon = world.start(&setup, None);
    let port = world.port;
    let body = envelope(&[
        push_event(
            "posted-traversal",
            traversal,
            SOME_DIGEST,
            "application/vnd.oci.image.manifest.v1+json",
            "1.0",
        ),
        push_event(
            "posted-valid",
            "ns/app",
            SOME_DIGEST,
            "application/vnd.oci.image.manifest.v1+json",
            "1.0",
        ),
    ]);
    let (status, answer) = notify(port, &body).expect("posting");
    assert_eq!(status, 202, "{answer}");

    let valid_path = format!("/v2/ns/app/manifests/{SOME_DIGEST}");
    let paths = || -> Vec<String> {
        registry
            .requests()
            .iter()
            .map(|request| request.path().to_string())
            .collect()
    };
    // The valid one's manifest is unknown to the stand-in, so its push is
    // undone (done) after a second GET of its tag; the traversal fails.
    wait_until(
        "every stored event ended and the valid one was fetched",
        || {
            let events = stored_events(&store);
            events.len() >= 2
                && events
                    .iter()
                    .all(|(_, status, _)| *status == 3 || *status == 0)
                && paths().contains(&valid_path)
        },
    );
    let paths = paths();
    for path in &paths {
        assert!(
            path == "/v2/" || path.starts_with("/v2/ns/app/"),
            "a request outside /v2/ns/app/: {path} (all: {paths:?})"
        );
    }
    assert_eq!(answer["malformed"], 1, "{answer}");
    assert_eq!(answer["stored"], 1, "{answer}");
    let events = stored_events(&store);
    let ids: Vec<&str> = events.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["stored-traversal", "posted-valid"]);
    assert_eq!(events[0].1, 3, "{events:?}");
    let error = events[0].2.clone().unwrap_or_default();
    assert!(error.contains("bad repository name"), "{error}");
    let log = daemon.log();
    assert!(
        log.contains(r#"bad repository name "../../../admin/secret" (ids "posted-traversal")"#),
        "{log}"
    );
}

/// An intake of the library on 127.0.0.1 with `settings`, on a runtime of
/// its own; stopped on drop.
struct InProcessIntake {
    port: u16,
    store: Arc<SqlStore>,
    runtime: tokio::runtime::Runtime,
    running: Option<RunningIntake>,
    _dir: tempfile::TempDir,
}

impl InProcessIntake {
    fn start(token: Option<&str>, settings: Settings) -> InProcessIntake {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(support::store::sqlite_file(
            &dir.path().join("regkeeper.db"),
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let intake = Intake {
            store: store.clone(),
            token: token.map(String::from),
            body_limit: 1 << 20,
            waker: None,
        };
        let running = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding 127.0.0.1:0");
            intake::spawn_with(listener, intake, settings).expect("starting the intake")
        });
        InProcessIntake {
            port: running.address.port(),
            store,
            runtime,
            running: Some(running),
            _dir: dir,
        }
    }
}

impl Drop for InProcessIntake {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.stop());
        }
    }
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed() {
    let intake = InProcessIntake::start(
        Some(TOKEN),
        Settings {
            limits: Limits {
                body_read: Duration::from_millis(500),
                ..Limits::default()
            },
            ..Settings::default()
        },
    );
    let mut stream =
        TcpStream::connect(("127.0.0.1", intake.port)).expect("connecting to the intake");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    let head = format!(
        "POST /v2/webhooks/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {TOKEN}\r\n\
         Content-Type: {EVENTS_V1}\r\nContent-Length: 1000\r\n\r\n{{\"events\":["
    );
    stream.write_all(head.as_bytes()).expect("sending the head");
    let started = Instant::now();
    let mut answer = String::new();
    // Answered, then closed: read_to_string returns at the end of stream.
    stream
        .read_to_string(&mut answer)
        .expect("reading the answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < DEADLINE);
    assert!(stored_events(&intake.store).is_empty());
}

#[test]
fn an_intake_with_a_token_on_loopback_does_not_check_the_host() {
    let intake = InProcessIntake::start(Some(TOKEN), Settings::default());
    let body = envelope(&[delete_event("with-token")]);
    let status = post_with_host(
        intake.port,
        "registry-notifier.example:8080",
        Some(TOKEN),
        &body,
    );
    assert_eq!(status, 202);
    let ids: Vec<String> = stored_events(&intake.store)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["with-token"]);
}
