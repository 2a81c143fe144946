//! Unit tests of `parse`: every valid form, and every error message as a
//! literal snapshot (one table per family of errors).
//! The cron schedules are in `schedules.rs`, loading from files and the
//! environment in `load.rs`, the error snapshots in `errors.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::position::line_column;
use super::*;

const REGISTRY: &str = "[registry]\nurl = \"http://127.0.0.1:5000\"\n";

fn parse_ok(text: &str) -> Config {
    match parse(text, Path::new("schedules.toml")) {
        Ok(config) => config,
        Err(error) => panic!("unexpected error: {error:#}"),
    }
}

fn parse_ok_at(text: &str, path: &Path) -> Config {
    match parse(text, path) {
        Ok(config) => config,
        Err(error) => panic!("unexpected error: {error:#}"),
    }
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_with_env(text, Path::new("schedules.toml"), &|name| {
        vars.get(name).cloned()
    })
}

fn error_of(text: &str) -> String {
    match parse(text, Path::new("schedules.toml")) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => format!("{error:#}"),
    }
}

/// Checks each `(config text, expected message)` pair.
fn assert_errors(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let actual = error_of(text);
        if actual != *expected {
            failures.push(format!(
                "config:\n{text}\nexpected: {expected}\nactual:   {actual}\n"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn job<'a>(config: &'a Config, name: &str) -> &'a JobConfig {
    config.job(name).unwrap_or_else(|| panic!("no job {name}"))
}

#[test]
fn the_shipped_schedules_toml_is_valid() {
    let config = parse_ok(include_str!("../../../schedules.toml"));
    let names: Vec<&str> = config.jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(names, ["registry-events", "registry-sync", "security-scan"]);
    let handlers: Vec<&str> = config.jobs.iter().map(|job| job.handler.name()).collect();
    assert_eq!(handlers, ["events", "sync", "security"]);
    assert!(
        matches!(&config.database, Database::Sqlite { path } if path == Path::new("regkeeper.db"))
    );
    assert_eq!(config.registry.url.as_str(), "http://127.0.0.1:5000/");
    assert_eq!(
        config.notifications.listen,
        Some("127.0.0.1:5055".parse().unwrap())
    );
    assert!(job(&config, "registry-events").enabled);
    assert!(!job(&config, "security-scan").enabled);
    assert_eq!(
        job(&config, "registry-sync").schedule.expression,
        "0 */10 * * * *"
    );
    // The shipped sync corrects drift after lost notifications and never
    // deletes: update, not initial (done for good at once) nor
    // update-delete (the opt-in).
    assert!(
        matches!(&job(&config, "registry-sync").handler, HandlerConfig::Sync(options) if options.strategy == Strategy::Update)
    );
    assert!(config.security.is_empty());
}

#[test]
fn a_config_with_only_the_registry_url_gets_every_default() {
    let config = parse_ok(REGISTRY);
    assert!(
        matches!(&config.database, Database::Sqlite { path } if path == Path::new("regkeeper.db"))
    );
    let registry = &config.registry;
    assert_eq!(registry.username, None);
    assert_eq!(registry.password, None);
    assert_eq!(registry.ca_file, None);
    assert!(!registry.insecure_skip_tls_verify);
    assert_eq!(registry.timeout, Duration::from_secs(30));
    assert_eq!(registry.concurrency, 8);
    assert_eq!(registry.catalog_page_size, 1000);
    let notifications = &config.notifications;
    assert_eq!(
        notifications.listen,
        Some("127.0.0.1:5055".parse().unwrap())
    );
    assert_eq!(notifications.token, None);
    assert!(!notifications.allow_unauthenticated);
    assert_eq!(notifications.body_limit, 1024 * 1024);
    assert_eq!(config.daemon.grace_period, Duration::from_secs(30));
    assert_eq!(config.daemon.keep_runs, 100);
    assert_eq!(config.daemon.database_wait, Duration::from_secs(90));
    assert_eq!(config.daemon.heartbeat, Duration::from_secs(30));
    assert_eq!(config.daemon.abandon_after, Duration::from_secs(300));
    assert_eq!(config.metrics.listen, None);
    assert!(config.metrics.intake);
    assert_eq!(config.metrics.queue_refresh, Duration::from_secs(5));
    assert_eq!(config.daemon.log_format, crate::config::LogFormat::Text);
    assert!(config.jobs.is_empty());
    assert!(config.security.is_empty());
}

#[test]
fn every_key_can_be_set() {
    let config = parse_ok(
        r#"
[database]
url = "postgres://keeper@db.example:5433/regkeeper"
password_file = "/run/secrets/db"
pool_size = 3
wait = "2m"

[registry]
url = "https://registry.example:5000"
username = "keeper"
password_file = "/run/secrets/registry"
ca_file = "/etc/ca.pem"
insecure_skip_tls_verify = true
timeout = "10s"
concurrency = 64
catalog_page_size = 1

[notifications]
listen = "0.0.0.0:6000"
token_file = "/run/secrets/token"
body_limit = "512KiB"

[daemon]
grace_period = "0s"
keep_runs = 7
heartbeat = "10s"
abandon_after = "2m"
log_format = "json"

[metrics]
listen = "[::1]:9185"
intake = false
queue_refresh = "30s"

[jobs.ev]
handler = "events"
schedule = "0 */5 * * * *"
enabled = false
timeout = "1m"
jitter = "3s"
timezone = "Europe/Berlin"
max_attempts = 3
retain_done = "1d"
lease = "1m"
batch_size = 50
backoff = "1s"
max_backoff = "1m"

[jobs.sy]
handler = "sync"
schedule = "0 0 3 * * * 2030"
strategy = "update-delete"
max_delete_fraction = 1.0

[jobs.sec]
handler = "security"
schedule = "@hourly"
rescan_after = "12h"
concurrency = 4
max_attempts = 2
lease = "10m"

[security.clair]
server = "http://clair:6060"

[security.clair4]
enabled = false
server = "http://clair4:6060"
token_file = "/run/secrets/clair4"
timeout = "1m"

[security.adapter]
server = "https://trivy:8080/"
username = "u"
password = "p"

[security.fixture]
file = "fixture.json"
"#,
    );
    match &config.database {
        Database::Postgres {
            url,
            password,
            pool_size,
        } => {
            assert_eq!(url, "postgres://keeper@db.example:5433/regkeeper");
            assert_eq!(password, &None);
            assert_eq!(*pool_size, 3);
        }
        other => panic!("not postgres: {other:?}"),
    }
    assert_eq!(
        config
            .secret_files
            .database_password
            .as_ref()
            .map(|file| file.path.as_path()),
        Some(Path::new("/run/secrets/db"))
    );
    assert_eq!(config.daemon.database_wait, Duration::from_secs(120));
    let registry = &config.registry;
    assert_eq!(registry.url.as_str(), "https://registry.example:5000/");
    assert_eq!(registry.username.as_deref(), Some("keeper"));
    assert_eq!(
        config
            .secret_files
            .registry_password
            .as_ref()
            .map(|file| file.path.as_path()),
        Some(Path::new("/run/secrets/registry"))
    );
    assert_eq!(registry.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert!(registry.insecure_skip_tls_verify);
    assert_eq!(registry.timeout, Duration::from_secs(10));
    assert_eq!(registry.concurrency, 64);
    assert_eq!(registry.catalog_page_size, 1);
    assert_eq!(
        config.notifications.listen,
        Some("0.0.0.0:6000".parse().unwrap())
    );
    assert_eq!(
        config
            .secret_files
            .notify_token
            .as_ref()
            .map(|file| file.path.as_path()),
        Some(Path::new("/run/secrets/token"))
    );
    assert_eq!(config.notifications.body_limit, 512 * 1024);
    assert_eq!(config.daemon.grace_period, Duration::ZERO);
    assert_eq!(config.daemon.keep_runs, 7);
    assert_eq!(config.daemon.heartbeat, Duration::from_secs(10));
    assert_eq!(config.daemon.abandon_after, Duration::from_secs(120));
    assert_eq!(config.metrics.listen, Some("[::1]:9185".parse().unwrap()));
    assert!(!config.metrics.intake);
    assert_eq!(config.metrics.queue_refresh, Duration::from_secs(30));
    assert_eq!(config.daemon.log_format, crate::config::LogFormat::Json);

    let events = job(&config, "ev");
    assert!(!events.enabled);
    assert_eq!(events.timeout, Some(Duration::from_secs(60)));
    assert_eq!(events.jitter, Some(Duration::from_secs(3)));
    assert_eq!(events.schedule.timezone, chrono_tz::Europe::Berlin);
    let HandlerConfig::Events(options) = &events.handler else {
        panic!("not events")
    };
    assert_eq!(
        options,
        &EventsOptions {
            max_attempts: 3,
            retain_done: Duration::from_secs(86400),
            lease: Duration::from_secs(60),
            batch_size: 50,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    );
    let HandlerConfig::Sync(options) = &job(&config, "sy").handler else {
        panic!("not sync")
    };
    assert_eq!(
        options,
        &SyncOptions {
            strategy: Strategy::UpdateDelete,
            max_delete_fraction: 1.0
        }
    );
    let HandlerConfig::Security(options) = &job(&config, "sec").handler else {
        panic!("not security")
    };
    assert_eq!(
        options,
        &SecurityOptions {
            rescan_after: Duration::from_secs(12 * 3600),
            concurrency: 4,
            max_attempts: 2,
            lease: Duration::from_secs(600),
        }
    );

    let kinds: Vec<ScannerKind> = config.security.iter().map(|scanner| scanner.kind).collect();
    assert_eq!(
        kinds,
        [
            ScannerKind::Clair,
            ScannerKind::Clair4,
            ScannerKind::Adapter,
            ScannerKind::Fixture
        ]
    );
    let clair = &config.security[0];
    assert!(clair.enabled);
    assert_eq!(clair.timeout, Duration::from_secs(900));
    assert_eq!(
        clair.server.as_ref().map(url::Url::as_str),
        Some("http://clair:6060/")
    );
    let clair4 = &config.security[1];
    assert!(!clair4.enabled);
    assert_eq!(clair4.timeout, Duration::from_secs(60));
    assert_eq!(
        clair4.token_file.as_deref(),
        Some(Path::new("/run/secrets/clair4"))
    );
    let adapter = &config.security[2];
    assert_eq!(adapter.timeout, Duration::from_secs(300));
    assert_eq!(adapter.username.as_deref(), Some("u"));
    assert_eq!(adapter.password.as_deref(), Some("p"));
    let fixture = &config.security[3];
    assert_eq!(fixture.server, None);
    assert_eq!(fixture.file.as_deref(), Some(Path::new("fixture.json")));
}

#[test]
fn handler_options_default_when_absent() {
    let config = parse_ok(&format!(
        "{REGISTRY}
[jobs.e]
handler = \"events\"
schedule = \"* * * * * *\"
[jobs.s]
handler = \"sync\"
schedule = \"* * * * * *\"
[jobs.x]
handler = \"security\"
schedule = \"* * * * * *\"
"
    ));
    assert!(
        matches!(&job(&config, "e").handler, HandlerConfig::Events(options) if *options == EventsOptions::default())
    );
    assert!(
        matches!(&job(&config, "s").handler, HandlerConfig::Sync(options) if *options == SyncOptions::default())
    );
    assert!(
        matches!(&job(&config, "x").handler, HandlerConfig::Security(options) if *options == SecurityOptions::default())
    );
    let e = job(&config, "e");
    assert!(e.enabled);
    assert_eq!(e.timeout, None);
    assert_eq!(e.jitter, None);
    assert_eq!(e.schedule.timezone, chrono_tz::Tz::UTC);
    assert_eq!(
        EventsOptions::default().retain_done,
        Duration::from_secs(7 * 86400)
    );
    assert_eq!(SyncOptions::default().max_delete_fraction, 0.5);
}

#[test]
fn jobs_keep_file_order() {
    let config = parse_ok(&format!(
        "{REGISTRY}
[jobs.zeta]
handler = \"events\"
schedule = \"* * * * * *\"
[jobs.alpha]
handler = \"sync\"
schedule = \"* * * * * *\"
[jobs.\"mid.dle_1\"]
handler = \"sync\"
schedule = \"* * * * * *\"
"
    ));
    let names: Vec<&str> = config.jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid.dle_1"]);
}

#[test]
fn every_strategy_parses() {
    for strategy in Strategy::ALL {
        let config = parse_ok(&format!(
            "{REGISTRY}[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nstrategy = \"{}\"\n",
            strategy.name()
        ));
        assert!(
            matches!(&job(&config, "s").handler, HandlerConfig::Sync(options) if options.strategy == strategy)
        );
    }
}
#[test]
fn database_urls() {
    let sqlite = parse_ok(&format!(
        "[database]\nurl = \"sqlite:///var/lib/regkeeper/db.sqlite\"\n{REGISTRY}"
    ));
    assert!(
        matches!(&sqlite.database, Database::Sqlite { path } if path == Path::new("/var/lib/regkeeper/db.sqlite"))
    );
    let postgresql = parse_ok(&format!(
        "[database]\nurl = \"postgresql://u@h/db\"\n{REGISTRY}"
    ));
    assert!(
        matches!(&postgresql.database, Database::Postgres { url, .. } if url == "postgresql://u@h/db")
    );
    // TLS parameters are validated and kept in the url.
    let tls = parse_ok(&format!(
        "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/regkeeper/db-ca.pem\"\n{REGISTRY}"
    ));
    assert!(
        matches!(&tls.database, Database::Postgres { url, .. } if url == "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/regkeeper/db-ca.pem")
    );
}

#[test]
fn a_password_in_the_database_url_moves_out_of_the_url() {
    let config = parse_ok(&format!(
        "[database]\nurl = \"postgres://u:s%40cret@h:5432/db\"\n{REGISTRY}"
    ));
    match &config.database {
        Database::Postgres { url, password, .. } => {
            assert_eq!(url, "postgres://u@h:5432/db");
            assert_eq!(password.as_deref(), Some("s@cret"));
        }
        other => panic!("not postgres: {other:?}"),
    }
    assert!(!format!("{config:?}").contains("s@cret"));
    let in_query = parse_ok(&format!(
        "[database]\nurl = \"postgres://u@h:5432/db?password=qu3ry&sslmode=require\"\n{REGISTRY}"
    ));
    let shown = format!("{in_query:?}");
    assert!(!shown.contains("qu3ry"), "{shown}");
    assert!(shown.contains("sslmode=require"), "{shown}");
}

#[test]
fn a_database_password_with_percent_a_before_a_multibyte_character_is_kept_as_written() {
    // `%a` is no escape: the password is the text as written, `é` included.
    let config = parse_ok(&format!(
        "[database]\nurl = \"postgres://u:%aé@h/db\"\n{REGISTRY}"
    ));
    match &config.database {
        Database::Postgres { url, password, .. } => {
            assert_eq!(url, "postgres://u@h/db");
            assert_eq!(password.as_deref(), Some("%aé"));
        }
        other => panic!("not postgres: {other:?}"),
    }
}

#[test]
fn environment_overrides() {
    let text = "[database]\nurl = \"sqlite://file.db\"\n[registry]\nurl = \"http://r:5000\"\nusername = \"u\"\npassword = \"inline\"\n";
    let config = parse_env(
        text,
        &[
            (ENV_DATABASE_URL, "postgres://env@127.0.0.1:5432/envdb"),
            (ENV_DATABASE_PASSWORD, "dbsecret"),
            (ENV_REGISTRY_PASSWORD, "regsecret"),
            (ENV_NOTIFY_TOKEN, "Bearer t"),
        ],
    )
    .unwrap();
    match &config.database {
        Database::Postgres { url, password, .. } => {
            assert_eq!(url, "postgres://env@127.0.0.1:5432/envdb");
            assert_eq!(password.as_deref(), Some("dbsecret"));
        }
        other => panic!("not postgres: {other:?}"),
    }
    assert_eq!(config.registry.password.as_deref(), Some("regsecret"));
    assert_eq!(config.notifications.token.as_deref(), Some("Bearer t"));
    // Without the environment, the file's values stand.
    let plain = parse_env(text, &[]).unwrap();
    assert!(matches!(&plain.database, Database::Sqlite { path } if path == Path::new("file.db")));
    assert_eq!(plain.registry.password.as_deref(), Some("inline"));
}

#[test]
fn notifications_listen_forms() {
    let disabled = parse_ok(&format!("{REGISTRY}[notifications]\nlisten = \"\"\n"));
    assert_eq!(disabled.notifications.listen, None);
    let ipv6 = parse_ok(&format!(
        "{REGISTRY}[notifications]\nlisten = \"[::1]:5055\"\n"
    ));
    assert_eq!(
        ipv6.notifications.listen,
        Some("[::1]:5055".parse().unwrap())
    );
    let open = parse_ok(&format!(
        "{REGISTRY}[notifications]\nlisten = \"0.0.0.0:5055\"\nallow_unauthenticated = true\n"
    ));
    assert!(open.notifications.allow_unauthenticated);
    let with_env_token = parse_env(
        &format!("{REGISTRY}[notifications]\nlisten = \"0.0.0.0:5055\"\n"),
        &[(ENV_NOTIFY_TOKEN, "Bearer x")],
    )
    .unwrap();
    assert_eq!(
        with_env_token.notifications.listen,
        Some("0.0.0.0:5055".parse().unwrap())
    );
}

#[test]
fn body_limit_forms() {
    for (written, bytes) in [
        ("2048", 2048),
        ("\"2048\"", 2048),
        ("\"1MiB\"", 1 << 20),
        ("\"1MB\"", 1_000_000),
        ("\"2 KiB\"", 2048),
        ("\"1GiB\"", 1 << 30),
    ] {
        let config = parse_ok(&format!(
            "{REGISTRY}[notifications]\nbody_limit = {written}\n"
        ));
        assert_eq!(config.notifications.body_limit, bytes, "{written}");
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let config = parse_env(
        "[database]\nurl = \"postgres://u:dbpass@h/db\"\n[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = \"regpass\"\n[security.adapter]\nserver = \"http://s\"\nusername = \"u\"\npassword = \"scanpass\"\n",
        &[(ENV_NOTIFY_TOKEN, "Bearer notifytoken")],
    )
    .unwrap();
    let debug = format!("{config:?}");
    for secret in ["dbpass", "regpass", "scanpass", "notifytoken"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("<redacted>"));
}

mod errors;
mod load;
mod schedules;
