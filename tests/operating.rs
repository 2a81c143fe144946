//! Everyday operation through the real binary and the library's intake:
//! JSON logs (one valid object per line, run lines with their fields; the
//! environment wins over the file) and `/readyz` (200 when the database
//! answers with every migration applied, 503 with a reason on SQLite that
//! was never migrated and on a PostgreSQL server that stopped answering).

use regkeeper_test_support as support;

use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use regkeeper::intake::{self, Intake};
use regkeeper::store::Store;
use support::cli::CliEnv;
use support::daemon::Daemon;
use support::registry::free_port;
use support::{Backend, TestStore};

/// `GET url`: status and body.
fn get(url: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(url).call().expect("the intake answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Writes a daemon configuration (SQLite in `env`'s dir, the intake on
/// `port`, `daemon_keys` in `[daemon]`, one events job every second).
fn daemon_config(env: &CliEnv, port: u16, daemon_keys: &str) {
    env.write_config(&format!(
        "{}[registry]\nurl = \"http://127.0.0.1:9\"\n\n[notifications]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [daemon]\ngrace_period = \"5s\"\n{daemon_keys}\n\
         [jobs.ev]\nhandler = \"events\"\nschedule = \"* * * * * *\"\n",
        env.sqlite_section()
    ));
}

#[test]
fn json_logs_are_one_object_per_line_and_run_ends_carry_their_fields() {
    let env = CliEnv::new();
    let port = free_port();
    daemon_config(&env, port, "log_format = \"json\"\n");
    let mut daemon = Daemon::start(&env.config_path());
    daemon.wait_for_intake(port);
    daemon.wait_for_log("finished: outcome=ok");
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());

    let log = daemon.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "{field} missing: {line}");
        }
    }
    let end = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.contains(" finished: "))
        })
        .expect("a run's end line");
    assert_eq!(end["job"], "ev", "{end}");
    assert!(end["run"].as_i64().is_some_and(|run| run > 0), "{end}");
    assert_eq!(end["outcome"], "ok", "{end}");
    assert_eq!(end["trigger"], "schedule", "{end}");
    assert!(end["counts"].is_object(), "{end}");
    assert!(end["duration_seconds"].is_number(), "{end}");
    assert!(end["error"].is_null(), "{end}");
    assert!(
        end["message"]
            .as_str()
            .is_some_and(|message| message.starts_with(&format!("job=ev run={} ", end["run"]))),
        "the message is the text line's: {end}"
    );
}

#[test]
fn regkeeper_log_format_wins_over_the_file_and_a_bad_value_is_refused() {
    let env = CliEnv::new();
    daemon_config(&env, free_port(), "log_format = \"text\"\n");
    let config = env.config_path();
    let config = config.to_str().expect("a utf-8 temp path");
    let output = support::cli::run_binary_with_env(
        env.dir.path(),
        &["--once", "ev", "--config", config],
        &[("REGKEEPER_LOG_FORMAT", "json")],
    );
    assert_eq!(output.code, Some(0), "{output:?}");
    let lines: Vec<serde_json::Value> = output
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let end = lines
        .iter()
        .find(|line| line["outcome"].is_string())
        .unwrap_or_else(|| panic!("no run end line: {}", output.stderr));
    assert_eq!(end["job"], "ev");
    assert_eq!(end["trigger"], "once");

    let output = support::cli::run_binary_with_env(
        env.dir.path(),
        &["check", "--config", config],
        &[("REGKEEPER_LOG_FORMAT", "yaml")],
    );
    assert_eq!(output.code, Some(2), "{output:?}");
    assert_eq!(
        output.stderr,
        "error: REGKEEPER_LOG_FORMAT: unknown log format \"yaml\" (expected \"text\" or \"json\")\n"
    );
}

#[test]
fn readyz_of_a_daemon_on_sqlite_is_200_and_healthz_stays() {
    let env = CliEnv::new();
    let port = free_port();
    daemon_config(&env, port, "");
    let mut daemon = Daemon::start(&env.config_path());
    daemon.wait_for_intake(port);
    let (status, body) = get(&format!("http://127.0.0.1:{port}/readyz"));
    assert_eq!(
        (status, body.clone()),
        (200, serde_json::json!({"ready": true})),
        "{body}"
    );
    let (status, body) = get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());
}

/// The library's intake on `store`, in a runtime of its own.
struct TestIntake {
    url: String,
    runtime: tokio::runtime::Runtime,
    running: Option<intake::RunningIntake>,
}

impl TestIntake {
    fn start(store: Arc<dyn Store>) -> TestIntake {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let running = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding 127.0.0.1:0");
            let intake = Intake {
                store,
                token: None,
                body_limit: 1 << 20,
                waker: None,
            };
            intake::spawn(listener, intake).expect("starting the intake")
        });
        TestIntake {
            url: format!("http://{}", running.address),
            runtime,
            running: Some(running),
        }
    }

    fn readyz(&self) -> (u16, serde_json::Value) {
        get(&format!("{}/readyz", self.url))
    }
}

impl Drop for TestIntake {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.stop());
        }
    }
}

#[test]
fn readyz_is_503_naming_the_migrations_a_database_lacks() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let database = TestStore::unmigrated(backend);
        let intake = TestIntake::start(database.shared());
        let (status, body) = intake.readyz();
        assert_eq!(status, 503, "{backend:?}: {body}");
        assert_eq!(body["ready"], false);
        assert_eq!(
            body["reason"], "migrations not applied: 1, 2, 3, 4, 5, 6",
            "{backend:?}"
        );
        database.migrate().expect("migrating");
        assert_eq!(intake.readyz().0, 200, "{backend:?}");
    }
}

#[test]
fn readyz_is_503_when_postgres_stops_answering() {
    let database = TestStore::new(Backend::Postgres);
    let url = url::Url::parse(&database.url()).expect("the database url");
    let relay = Relay::start(&format!(
        "{}:{}",
        url.host_str().expect("a host"),
        url.port().expect("a port")
    ));
    let mut relayed = url.clone();
    relayed
        .set_port(Some(relay.port))
        .expect("a url with a port");
    let store = regkeeper::store::open(
        &regkeeper::config::Database::Postgres {
            url: relayed.to_string(),
            password: None,
            pool_size: 2,
        },
        Duration::from_secs(60),
    )
    .expect("opening through the relay");
    let intake = TestIntake::start(store);
    assert_eq!(intake.readyz().0, 200);

    relay.cut();
    let (status, body) = intake.readyz();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"ready": false, "reason": "the database does not answer"})
    );
}

/// A TCP relay in front of the test's PostgreSQL server that can be cut:
/// every relayed connection is shut down and new ones are closed at once,
/// as when the server stops. Stopped on Drop.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
        let port = listener.local_addr().expect("its address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (cut, stopping, streams) = (cut.clone(), stopping.clone(), streams.clone());
            let upstream = upstream.to_string();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    let pair = (client.try_clone(), server.try_clone());
                    let (Ok(mut client_read), Ok(mut server_write)) = pair else {
                        continue;
                    };
                    streams
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(
                            [client.try_clone(), server.try_clone()]
                                .into_iter()
                                .flatten(),
                        );
                    std::thread::spawn(move || copy(&mut client_read, &mut server_write));
                    let (mut server_read, mut client_write) = (server, client);
                    std::thread::spawn(move || copy(&mut server_read, &mut client_write));
                }
            })
        };
        Relay {
            port,
            cut,
            stopping,
            streams,
            thread: Some(thread),
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stopping`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
