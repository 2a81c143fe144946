//! Unit tests of `parse`: every valid form, and every error message as a
//! literal snapshot (one table per family of errors).

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
    let config = parse_ok(include_str!("../../schedules.toml"));
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

fn schedule_of(expression: &str) -> Schedule {
    let config = parse_ok(&format!(
        "{REGISTRY}[jobs.j]\nhandler = \"events\"\nschedule = \"{expression}\"\n"
    ));
    job(&config, "j").schedule.clone()
}

fn next_after(schedule: &Schedule, after: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    schedule
        .cron
        .find_next_occurrence(&after, false)
        .expect("a next fire time")
}

#[test]
fn schedules_have_seconds_and_an_optional_year() {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    let every_two = schedule_of("*/2 * * * * *");
    assert_eq!(
        next_after(&every_two, start),
        Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 2).unwrap()
    );
    let with_year = schedule_of("30 15 4 1 6 * 2027");
    assert_eq!(
        next_after(&with_year, start),
        Utc.with_ymd_and_hms(2027, 6, 1, 4, 15, 30).unwrap()
    );
    let named = schedule_of("0 0 12 * JAN-MAR MON-FRI");
    assert_eq!(
        next_after(&named, start),
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap()
    );
    let nickname = schedule_of("@daily");
    assert_eq!(
        next_after(&nickname, start),
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    );
    assert_eq!(schedule_of("  0 0 * * * *  ").expression, "0 0 * * * *");
}

#[test]
fn last_day_nearest_weekday_and_nth_weekday_parse() {
    let start = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let last = schedule_of("0 0 0 L * *");
    assert_eq!(
        next_after(&last, start),
        Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap()
    );
    // 2026-02-15 is a Sunday: the nearest weekday is Monday the 16th.
    let weekday = schedule_of("0 0 0 15W * *");
    assert_eq!(
        next_after(&weekday, start),
        Utc.with_ymd_and_hms(2026, 2, 16, 0, 0, 0).unwrap()
    );
    let second_monday = schedule_of("0 0 0 * * MON#2");
    assert_eq!(
        next_after(&second_monday, start),
        Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap()
    );
}

#[test]
fn day_of_month_and_day_of_week_combine_with_or() {
    // Vixie cron: when both are restricted, either matching fires. 2026-03-01
    // is a Sunday; the next Monday is the 2nd, the next 15th is later.
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 1).unwrap();
    let schedule = schedule_of("0 0 0 15 * MON");
    assert_eq!(
        next_after(&schedule, start),
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    );
    let after_monday = Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 1).unwrap();
    assert_eq!(
        next_after(&schedule, after_monday),
        Utc.with_ymd_and_hms(2026, 3, 15, 0, 0, 0).unwrap()
    );
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

#[test]
fn load_reads_secret_files_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let registry_file = secret("registry", "regpass\n");
    let token_file = secret("token", "Bearer tok\r\n");
    let scanner_file = secret("scanner", "scantoken");
    let config_path = dir.path().join("schedules.toml");
    std::fs::write(
        &config_path,
        format!(
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"{registry_file}\"\n\
             [notifications]\ntoken_file = \"{token_file}\"\n\
             [security.adapter]\nserver = \"http://s\"\ntoken_file = \"{scanner_file}\"\n"
        ),
    )
    .unwrap();
    let config = load(&config_path).unwrap();
    assert_eq!(config.registry.password.as_deref(), Some("regpass"));
    assert_eq!(config.notifications.token.as_deref(), Some("Bearer tok"));
    assert_eq!(config.security[0].token.as_deref(), Some("scantoken"));
    assert_eq!(config.path, config_path);
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let error = format!("{:#}", load(&missing).unwrap_err());
    assert!(
        error.starts_with(&format!("reading {}: ", missing.display())),
        "{error}"
    );

    let config_path = dir.path().join("schedules.toml");
    let secret_path = dir.path().join("absent-secret");
    std::fs::write(
        &config_path,
        format!(
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"{}\"\n",
            secret_path.display()
        ),
    )
    .unwrap();
    let error = format!("{:#}", load(&config_path).unwrap_err());
    let expected = format!(
        "{}:4:17: [registry] password_file: reading {}: ",
        config_path.display(),
        secret_path.display()
    );
    assert!(error.starts_with(&expected), "{error}");
}

#[test]
fn an_empty_secret_file_is_an_error_naming_the_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    let config_path = dir.path().join("schedules.toml");
    let cases = [
        ("[registry]\nurl = \"http://r\"\n[notifications]\ntoken_file = \"secret\"\n", "4:14: [notifications] token_file"),
        ("[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"secret\"\n", "4:17: [registry] password_file"),
        ("[database]\nurl = \"postgres://u@h/db\"\npassword_file = \"secret\"\n[registry]\nurl = \"http://r\"\n", "3:17: [database] password_file"),
        ("[registry]\nurl = \"http://r\"\n[security.adapter]\nserver = \"http://s\"\ntoken_file = \"secret\"\n", "5:14: [security.adapter] token_file"),
    ];
    for (text, origin) in cases {
        std::fs::write(&config_path, text).unwrap();
        for empty in ["", "\n", "\r\n", " \n"] {
            std::fs::write(&secret_path, empty).unwrap();
            let error = load(&config_path).unwrap_err();
            assert!(
                error.chain().any(|cause| cause.is::<ConfigError>()),
                "{error:#}"
            );
            assert_eq!(
                format!("{error:#}"),
                format!(
                    "{}:{origin}: {} is empty (the file holds the secret alone)",
                    config_path.display(),
                    secret_path.display()
                )
            );
        }
    }
}

#[test]
fn relative_paths_resolve_against_the_configuration_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("token"), "Token t\n").unwrap();
    std::fs::write(etc.join("ca.pem"), "").unwrap();
    std::fs::write(etc.join("fixture.json"), "{}").unwrap();
    let config_path = etc.join("schedules.toml");
    std::fs::write(
        &config_path,
        "[database]\nurl = \"sqlite://regkeeper.db\"\n[registry]\nurl = \"https://r\"\nca_file = \"ca.pem\"\n\
         [notifications]\ntoken_file = \"token\"\n[security.fixture]\nfile = \"fixture.json\"\n",
    )
    .unwrap();
    let config = load(&config_path).unwrap();
    assert!(
        matches!(&config.database, Database::Sqlite { path } if *path == etc.join("regkeeper.db")),
        "{:?}",
        config.database
    );
    assert_eq!(config.registry.ca_file, Some(etc.join("ca.pem")));
    assert_eq!(config.notifications.token.as_deref(), Some("Token t"));
    assert_eq!(config.security[0].file, Some(etc.join("fixture.json")));
    // Without a [database] section the default file sits beside the configuration too.
    let default = parse_ok_at("[registry]\nurl = \"http://r\"\n", &config_path);
    assert!(
        matches!(&default.database, Database::Sqlite { path } if *path == etc.join("regkeeper.db"))
    );
}

#[test]
fn files_named_by_keys_are_checked_by_load_naming_the_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("schedules.toml");
    let missing = dir.path().join("missing");
    let cases = [
        (
            format!("[database]\nurl = \"sqlite://{}/regkeeper.db\"\n[registry]\nurl = \"http://r\"\n", missing.display()),
            format!(
                "{}:2:7: [database] url: the directory {} of the database file {}/regkeeper.db does not exist",
                config_path.display(),
                missing.display(),
                missing.display()
            ),
        ),
        (
            "[registry]\nurl = \"https://r\"\nca_file = \"missing\"\n".to_string(),
            format!(
                "{}:3:11: [registry] ca_file: reading {}: No such file or directory (os error 2)",
                config_path.display(),
                missing.display()
            ),
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem\"\n[registry]\nurl = \"http://r\"\n".to_string(),
            format!(
                "{}:2:7: [database] url sslrootcert: reading /nonexistent/ca.pem: No such file or directory (os error 2)",
                config_path.display()
            ),
        ),
        (
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"missing\"\n".to_string(),
            format!(
                "{}:4:17: [registry] password_file: reading {}: No such file or directory (os error 2)",
                config_path.display(),
                missing.display()
            ),
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config_path, &text).unwrap();
        assert_eq!(
            format!("{:#}", load(&config_path).unwrap_err()),
            expected,
            "{text}"
        );
    }
}

#[test]
fn load_for_reading_needs_no_registry_or_scanner_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("schedules.toml");
    std::fs::write(
        &config_path,
        "[registry]\nurl = \"https://r\"\nusername = \"u\"\npassword_file = \"absent\"\nca_file = \"absent.pem\"\n\
         [notifications]\ntoken_file = \"absent-token\"\n[security.adapter]\nserver = \"http://s\"\ntoken_file = \"absent\"\n",
    )
    .unwrap();
    assert!(load(&config_path).is_err());
    let config = load_for_reading(&config_path).unwrap();
    assert_eq!(config.registry.password, None);
}

// ---- error snapshots, one table per family ----

#[test]
fn errors_toml_syntax_and_types() {
    assert_errors(&[
        ("[registry\nurl = 1\n", "schedules.toml:1:10: unclosed table, expected `]`"),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nenabled = \"yes\"\n",
            "schedules.toml:6:11: job \"j\": enabled: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[registry]\nurl = \"http://r\"\nconcurrency = \"8\"\n",
            "schedules.toml:3:15: [registry] concurrency: invalid type: string \"8\", expected i64",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nbody_limit = true\n",
            "schedules.toml:4:14: [notifications] body_limit: invalid type: boolean `true`, expected a number of bytes or text like \"1MiB\"",
        ),
    ]);
}

#[test]
fn errors_unknown_keys_and_sections() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\nuser = \"x\"\n",
            "schedules.toml:3:1: [registry] unknown field `user`, expected one of `url`, `username`, `password`, `password_file`, `ca_file`, `insecure_skip_tls_verify`, `timeout`, `concurrency`, `catalog_page_size`, `token_realms`, `scanner_username`, `scanner_password`, `scanner_password_file`, `share_password_with_scanners`",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nschedual = \"x\"\n",
            "schedules.toml:6:1: job \"j\": unknown field `schedual`, expected one of `handler`, `schedule`, `enabled`, `timeout`, `jitter`, `timezone`, `max_attempts`, `retain_done`, `lease`, `batch_size`, `backoff`, `max_backoff`, `strategy`, `max_delete_fraction`, `policy`, `rescan_after`, `concurrency`",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[deamon]\n",
            "schedules.toml:3:2: unknown field `deamon`, expected one of `database`, `registry`, `notifications`, `daemon`, `metrics`, `jobs`, `security`",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.snyk]\nserver = \"http://s\"\n",
            "schedules.toml:3:11: unknown scanner [security.snyk] (expected clair, clair4, adapter or fixture)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.fixture]\nfile = \"f.json\"\nurl = \"x\"\n",
            "schedules.toml:5:1: [security.fixture] unknown field `url`, expected one of `enabled`, `server`, `timeout`, `token_file`, `username`, `password`, `file`",
        ),
    ]);
}

#[test]
fn errors_jobs_handler_and_keys() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nschedule = \"* * * * * *\"\n",
            "schedules.toml:3:7: job \"j\": handler is required (events, sync, security or gc)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"prune\"\nschedule = \"* * * * * *\"\n",
            "schedules.toml:4:11: job \"j\": unknown handler \"prune\" (expected events, sync, security or gc)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"sync\"\n",
            "schedules.toml:3:7: job \"j\": schedule is required (cron with seconds: sec min hour dom mon dow [year], e.g. \"*/10 * * * * *\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.\"bad name\"]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n",
            "schedules.toml:3:7: invalid job name \"bad name\" (use letters, digits, '-', '_' and '.')",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.registry-events]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nstrategy = \"update\"\n",
            "schedules.toml:6:12: job \"registry-events\": key strategy belongs to the \"sync\" handler, not \"events\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nlease = \"1m\"\n",
            "schedules.toml:6:9: job \"s\": key lease belongs to the \"events\" and \"security\" handler, not \"sync\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"security\"\nschedule = \"* * * * * *\"\nbatch_size = 5\n",
            "schedules.toml:6:14: job \"s\": key batch_size belongs to the \"events\" handler, not \"security\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"*/20 * * * * *\"\nstrategy = \"sometimes\"\n",
            "schedules.toml:6:12: job \"registry-sync\": unknown strategy \"sometimes\" (expected initial, on-start, update or update-delete)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nmax_delete_fraction = 1.5\n",
            "schedules.toml:6:23: job \"s\": max_delete_fraction 1.5 is out of range (expected 0.0 to 1.0)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.e]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nbackoff = \"1m\"\nmax_backoff = \"10s\"\n",
            "schedules.toml:7:15: job \"e\": max_backoff (10s) is shorter than backoff (1m)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.e]\nhandler = \"events\"\nschedule = \"* * * * * *\"\ntimezone = \"Mars/Olympus\"\n",
            "schedules.toml:6:12: job \"e\": unknown timezone \"Mars/Olympus\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")",
        ),
    ]);
}

const GC_JOB: &str =
    "[registry]\nurl = \"http://r\"\n[jobs.prune]\nhandler = \"gc\"\nschedule = \"0 0 3 * * *\"\n";

#[test]
fn gc_job_reads_its_policies() {
    let config = parse_ok(&format!(
        "{GC_JOB}max_delete_fraction = 0.2\n\
         [[jobs.prune.policy]]\nname = \"ci\"\nrepositories = [\"ci/**\"]\nexclude = [\"ci/base\"]\n\
         keep_latest = 5\nkeep_pushed_within = \"30d\"\nkeep_pulled_within = \"7d\"\nkeep_tags = [\"latest\", \"v*\"]\n\
         [[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n"
    ));
    let HandlerConfig::Gc(options) = &job(&config, "prune").handler else {
        panic!("not a gc job");
    };
    assert_eq!(options.max_delete_fraction, 0.2);
    assert_eq!(options.policies.len(), 2);
    let ci = &options.policies[0];
    assert_eq!(ci.name, "ci");
    assert!(ci.selects("ci/team/app"));
    assert!(!ci.selects("ci/base"));
    assert!(!ci.selects("app"));
    assert_eq!(ci.keep_latest, Some(5));
    assert_eq!(
        ci.keep_pushed_within,
        Some(Duration::from_secs(30 * 24 * 3600))
    );
    assert_eq!(
        ci.keep_pulled_within,
        Some(Duration::from_secs(7 * 24 * 3600))
    );
    let tags: Vec<&str> = ci.keep_tags.iter().map(Glob::as_str).collect();
    assert_eq!(tags, ["latest", "v*"]);
    assert_eq!(options.policies[1].name, "policy 2");
    assert!(crate::jobs::supports_dry_run(
        &job(&config, "prune").handler
    ));
}

#[test]
fn errors_gc_policies() {
    let gc = |rest: &str| format!("{GC_JOB}{rest}");
    let cases = [
        (
            gc(""),
            "schedules.toml:3:7: job \"prune\": a gc job needs at least one [[jobs.NAME.policy]] table (repositories and what to keep)",
        ),
        (
            gc("[[jobs.prune.policy]]\nkeep_latest = 3\n"),
            "schedules.toml:6:1: job \"prune\": policy[1].repositories is required (glob patterns such as [\"ci/**\"]; a policy touches only the repositories it names)",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = []\nkeep_latest = 3\n"),
            "schedules.toml:7:16: job \"prune\": policy[1].repositories: the list is empty, so the policy selects nothing",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"ci/*\"]\n"),
            "schedules.toml:6:1: job \"prune\": policy[1] (policy 1) has no keep rule, so it would delete every tag it selects; give at least one of keep_latest, keep_pushed_within, keep_pulled_within or keep_tags",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_latest = 1\n[[jobs.prune.policy]]\nrepositories = [\"b\"]\nkeep_latest = 0\n"),
            "schedules.toml:11:15: job \"prune\": policy[2].keep_latest 0 is out of range (expected 1 to 1000000)",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_pushed_within = \"soon\"\n"),
            "schedules.toml:8:22: job \"prune\": policy[1].keep_pushed_within: invalid duration \"soon\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_tags = [\"\"]\n"),
            "schedules.toml:8:14: job \"prune\": policy[1].keep_tags: pattern \"\": an empty pattern matches nothing",
        ),
        (
            gc("max_delete_fraction = 2.0\n[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_latest = 1\n"),
            "schedules.toml:6:23: job \"prune\": max_delete_fraction 2 is out of range (expected 0.0 to 1.0)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n[[jobs.s.policy]]\nrepositories = [\"a\"]\n".to_string(),
            "schedules.toml:6:1: job \"s\": key policy belongs to the \"gc\" handler, not \"sync\"",
        ),
    ];
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|(text, expected)| (text.as_str(), *expected))
        .collect();
    assert_errors(&cases);
}

#[test]
fn errors_schedules() {
    let job = |schedule: &str| {
        format!("[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"{schedule}\"\n")
    };
    assert_errors(&[
        (
            &job("*/5 * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"*/5 * * * *\" has 5 fields, but seconds come first: sec min hour dom mon dow [year] (did you mean \"0 */5 * * * *\"?)",
        ),
        (
            &job("* * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"* * * *\" has 4 fields (expected 6 or 7: sec min hour dom mon dow [year])",
        ),
        (
            &job(""),
            "schedules.toml:5:12: job \"j\": schedule \"\" has 0 fields (expected 6 or 7: sec min hour dom mon dow [year])",
        ),
        (
            &job("0 */61 * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"0 */61 * * * *\": minute step /61 is larger than the minute field (60 values), so it fires only at 0",
        ),
        (
            &job("*/90 * * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"*/90 * * * * *\": second step /90 is larger than the second field (60 values), so it fires only at 0",
        ),
        (
            &job("0 0 5-10/7 * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 5-10/7 * * *\": hour step /7 is larger than the range 5-10 (6 values), so it fires only at 5",
        ),
        (
            &job("0 0 0 1 */13 *"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 0 1 */13 *\": month step /13 is larger than the month field (12 values), so it fires only at 1",
        ),
        (
            &job("0 0 0 * * */8"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 0 * * */8\": day-of-week step /8 is larger than the day-of-week field (7 values), so it fires only at 0",
        ),
        (
            &job("0 0 0 1 * +MON"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 0 1 * +MON\": the '+' day-of-week modifier is not supported (day-of-month and day-of-week combine with OR when both are set)",
        ),
        (
            &job("61 * * * * *"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"61 * * * * *\": second field \"61\" (Component error: Number out of bounds.)",
        ),
        (
            &job("0 0 25 * * *"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"0 0 25 * * *\": hour field \"25\" (Component error: Number out of bounds.)",
        ),
        (
            &job("0 0 0 * * FUNDAY"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"0 0 0 * * FUNDAY\": day-of-week field \"FUNDAY\" (Pattern contains illegal characters: CronPattern contains illegal character 'F' in part 'FUNDAY')",
        ),
        (
            &job("0 0 0 * * * 1999x"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"0 0 0 * * * 1999x\": year field \"1999x\" (Pattern contains illegal characters: CronPattern contains illegal character 'X' in part '1999X')",
        ),
        (
            &job("* * * * * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"* * * * * * * *\" has 8 fields (expected 6 or 7: sec min hour dom mon dow [year])",
        ),
        (
            &job("@reboot"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"@reboot\" (Invalid pattern: Pattern must have 6 or 7 fields when seconds are required and years are optional.)",
        ),
    ]);
}

#[test]
fn errors_durations_and_numbers() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\ntimeout = \"soon\"\n",
            "schedules.toml:3:11: [registry] timeout: invalid duration \"soon\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntimeout = \"30\"\n",
            "schedules.toml:3:11: [registry] timeout: invalid duration \"30\" (time unit needed, for example 30sec or 30ms; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntimeout = \"0s\"\n",
            "schedules.toml:3:11: [registry] timeout: duration \"0s\" must be greater than zero",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\ntimeout = \"5 parsecs\"\n",
            "schedules.toml:6:11: job \"j\": timeout: invalid duration \"5 parsecs\" (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nlease = \"0s\"\n",
            "schedules.toml:6:9: job \"j\": lease: duration \"0s\" must be greater than zero",
        ),
        (
            "[database]\nwait = \"later\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:8: [database] wait: invalid duration \"later\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\ngrace_period = \"-1s\"\n",
            "schedules.toml:4:16: [daemon] grace_period: invalid duration \"-1s\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[metrics]\nlisten = \"localhost:9185\"\n",
            "schedules.toml:4:10: [metrics] listen: invalid address \"localhost:9185\" (expected IP:PORT like \"127.0.0.1:9185\", or \"\" for no listener of its own)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"127.0.0.1:6000\"\n[metrics]\nlisten = \"127.0.0.1:6000\"\n",
            "schedules.toml:6:10: [metrics] listen: 127.0.0.1:6000 is the intake's address ([notifications] listen), which serves /metrics already (intake = true)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[metrics]\nqueue_refresh = \"1h\"\n",
            "schedules.toml:4:17: [metrics] queue_refresh: 1h is too long (at most 5m: the queue gauges would be older than most scrape intervals)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[metrics]\nport = 9185\n",
            "schedules.toml:4:1: [metrics] unknown field `port`, expected one of `listen`, `intake`, `queue_refresh`",
        ),
        (
            "[registry]\nurl = \"http://r\"\nconcurrency = 65\n",
            "schedules.toml:3:15: [registry] concurrency 65 is out of range (expected 1 to 64)",
        ),
        (
            "[registry]\nurl = \"http://r\"\ncatalog_page_size = 0\n",
            "schedules.toml:3:21: [registry] catalog_page_size 0 is out of range (expected 1 to 1000)",
        ),
        (
            "[database]\npool_size = 0\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:13: [database] pool_size 0 is out of range (expected 1 to 1000)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nheartbeat = \"0s\"\n",
            "schedules.toml:4:13: [daemon] heartbeat: duration \"0s\" must be greater than zero",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nheartbeat = \"30s\"\nabandon_after = \"1m\"\n",
            "schedules.toml:5:17: [daemon] abandon_after (1m) must be at least 3 times heartbeat (30s)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nheartbeat = \"2m\"\n",
            "schedules.toml:4:13: [daemon] abandon_after (5m) must be at least 3 times heartbeat (2m)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nlog_format = \"xml\"\n",
            "schedules.toml:4:14: [daemon] unknown log_format \"xml\" (expected \"text\" or \"json\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nkeep_runs = 0\n",
            "schedules.toml:4:13: [daemon] keep_runs 0 is out of range (expected 1 to 1000000)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"security\"\nschedule = \"* * * * * *\"\nconcurrency = 0\n",
            "schedules.toml:6:15: job \"j\": concurrency 0 is out of range (expected 1 to 64)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nmax_attempts = 0\n",
            "schedules.toml:6:16: job \"j\": max_attempts 0 is out of range (expected 1 to 1000)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nbody_limit = \"1 lot\"\n",
            "schedules.toml:4:14: [notifications] body_limit: invalid size \"1 lot\" (expected a positive number of bytes or text like \"1MiB\", \"512KiB\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nbody_limit = 0\n",
            "schedules.toml:4:14: [notifications] body_limit: invalid size 0 (expected a positive number of bytes or text like \"1MiB\", \"512KiB\")",
        ),
    ]);
}

#[test]
fn errors_database() {
    assert_errors(&[
        (
            "[database]\nurl = \"mysql://u@h/db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: unsupported database url \"mysql://u@h/db\" (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)",
        ),
        (
            "[database]\nurl = \"mysql://u:hunter2@h/db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: unsupported database url \"mysql://u:<redacted>@h/db\" (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)",
        ),
        (
            "[database]\nurl = \"sqlite://\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: \"sqlite://\" names no file (write sqlite://PATH)",
        ),
        (
            "[database]\nurl = \"postgres://u@h:99999/db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: invalid database url \"postgres://u@h:99999/db\" (invalid port number)",
        ),
        (
            "[database]\nurl = \"postgres:///db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: database url \"postgres:///db\" names no host",
        ),
        (
            "[database]\nurl = \"sqlite://x.db\"\npassword_file = \"/p\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:3:17: [database] password_file is only used with a postgres:// url",
        ),
        (
            "[database]\nurl = \"postgres://u:p@h/db\"\npassword_file = \"/p\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: the url has a password and password_file is set too (use one)",
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify_full\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: sslmode: unsupported value \"verify_full\" (expected disable, prefer, require, verify-ca or verify-full)",
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: sslmode: verify-full needs sslrootcert=PATH (a PEM file of the CA certificates to trust) or sslrootcert=system",
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=require&sslcrl=/etc/crl.pem\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: sslcrl: not supported (regkeeper reads sslmode, sslrootcert, sslcert and sslkey)",
        ),
    ]);
    let error = format!(
        "{:#}",
        parse_env(REGISTRY, &[(ENV_DATABASE_URL, "redis://h")]).unwrap_err()
    );
    assert_eq!(
        error,
        "schedules.toml: REGKEEPER_DATABASE_URL: url: unsupported database url \"redis://h\" (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)"
    );
}

#[test]
fn an_empty_secret_in_the_environment_is_an_error_naming_the_variable() {
    let text = "[database]\nurl = \"postgres://u@h/db\"\n[registry]\nurl = \"http://r\"\nusername = \"u\"\n[notifications]\ntoken_file = \"/run/token\"\n";
    for variable in [
        ENV_NOTIFY_TOKEN,
        ENV_REGISTRY_PASSWORD,
        ENV_DATABASE_PASSWORD,
        ENV_DATABASE_URL,
    ] {
        for empty in ["", " ", "\n"] {
            let error = format!("{:#}", parse_env(text, &[(variable, empty)]).unwrap_err());
            assert_eq!(
                error,
                format!(
                    "schedules.toml: {variable} is set but empty (unset it, or give it a value)"
                )
            );
        }
    }
}

#[test]
fn errors_registry() {
    assert_errors(&[
        ("", "schedules.toml:1:1: missing [registry] section (at least url = \"http://HOST:PORT\")"),
        ("[registry]\nusername = \"u\"\n", "schedules.toml:1:1: [registry] url is required, e.g. url = \"http://127.0.0.1:5000\""),
        ("[registry]\nurl = \"127.0.0.1:5000\"\n", "schedules.toml:2:7: [registry] url: URL \"127.0.0.1:5000\" has no scheme (did you mean \"http://127.0.0.1:5000\"?)"),
        ("[registry]\nurl = \"localhost:5000\"\n", "schedules.toml:2:7: [registry] url: URL \"localhost:5000\" is not http:// or https:// (did you mean \"http://localhost:5000\"?)"),
        ("[registry]\nurl = \"registry\"\n", "schedules.toml:2:7: [registry] url: URL \"registry\" has no scheme (did you mean \"http://registry\"?)"),
        ("[registry]\nurl = \"http//127.0.0.1:5000\"\n", "schedules.toml:2:7: [registry] url: URL \"http//127.0.0.1:5000\" has no scheme (did you mean \"http://127.0.0.1:5000\"?)"),
        ("[registry]\nurl = \"https//registry.example\"\n", "schedules.toml:2:7: [registry] url: URL \"https//registry.example\" has no scheme (did you mean \"https://registry.example\"?)"),
        ("[registry]\nurl = \"//registry\"\n", "schedules.toml:2:7: [registry] url: URL \"//registry\" has no scheme (write http:// or https:// and the host)"),
        ("[registry]\nurl = \"http://127.0.0.1:5000/v2/\"\n", "schedules.toml:2:7: [registry] url: \"http://127.0.0.1:5000/v2/\" ends in /v2: the url is the registry's base, regkeeper adds /v2/ itself (write \"http://127.0.0.1:5000\")"),
        ("[registry]\nurl = \"https://r.example/mirror/v2\"\n", "schedules.toml:2:7: [registry] url: \"https://r.example/mirror/v2\" ends in /v2: the url is the registry's base, regkeeper adds /v2/ itself (write \"https://r.example/mirror\")"),
        ("[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = \"\"\n", "schedules.toml:4:12: [registry] password is empty (remove the key, or write the secret)"),
        ("[registry]\nurl = \"ftp://r\"\n", "schedules.toml:2:7: [registry] url: URL \"ftp://r\" is not http:// or https://"),
        (
            "[registry]\nurl = \"http://u:p@r\"\n",
            "schedules.toml:2:7: [registry] url: put credentials in username and password, not in the url",
        ),
        (
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = \"p\"\npassword_file = \"/f\"\n",
            "schedules.toml:4:12: [registry] password and password_file are both set (use one)",
        ),
        ("[registry]\nurl = \"http://r\"\npassword = \"p\"\n", "schedules.toml:3:12: [registry] password is set but username is not"),
        ("[registry]\nurl = \"http://r\"\npassword_file = \"/f\"\n", "schedules.toml:3:17: [registry] password_file is set but username is not"),
        (
            "[registry]\nurl = \"http://r\"\ntoken_realms = [\"https://auth.example.com/token\"]\n",
            "schedules.toml:3:17: [registry] token_realms: \"https://auth.example.com/token\" is not a host or an origin (write \"auth.example.com\" or \"https://auth.example.com:5001\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntoken_realms = [\"auth.example.com:5001\"]\n",
            "schedules.toml:3:17: [registry] token_realms: \"auth.example.com:5001\" is not a host or an origin (write \"auth.example.com\" or \"https://auth.example.com:5001\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntoken_realms = [\"ftp://auth\"]\n",
            "schedules.toml:3:17: [registry] token_realms: URL \"ftp://auth\" is not http:// or https://",
        ),
        ("[registry]\nurl = \"http://r\"\nscanner_password = \"p\"\n", "schedules.toml:3:20: [registry] scanner_password is set but scanner_username is not"),
        (
            "[registry]\nurl = \"http://r\"\nscanner_username = \"s\"\nscanner_password = \"p\"\nscanner_password_file = \"/f\"\n",
            "schedules.toml:4:20: [registry] scanner_password and scanner_password_file are both set (use one)",
        ),
    ]);
    let error = format!(
        "{:#}",
        parse_env(REGISTRY, &[(ENV_REGISTRY_PASSWORD, "p")]).unwrap_err()
    );
    assert_eq!(
        error,
        "schedules.toml:1:1: [registry] REGKEEPER_REGISTRY_PASSWORD is set but username is not"
    );
}

#[test]
fn token_realms_are_hosts_or_origins_and_the_scanner_account_is_its_own() {
    let config = parse_env(
        "[registry]\nurl = \"https://r\"\nusername = \"u\"\npassword = \"p\"\n\
         token_realms = [\"Auth.Example.com\", \"https://auth.example.com:5001\", \"[::1]\"]\n\
         scanner_username = \"reader\"\n",
        &[(ENV_REGISTRY_SCANNER_PASSWORD, "read-only")],
    )
    .unwrap();
    let registry = &config.registry;
    assert_eq!(
        registry.token_realms,
        [
            TokenRealm::Host("auth.example.com".into()),
            TokenRealm::Origin("https://auth.example.com:5001".into()),
            TokenRealm::Host("[::1]".into()),
        ]
    );
    let realm = |text: &str| url::Url::parse(text).unwrap();
    assert!(registry.token_realms[0].allows(&realm("https://auth.example.com:9/token")));
    assert!(registry.token_realms[1].allows(&realm("https://auth.example.com:5001/t")));
    assert!(!registry.token_realms[1].allows(&realm("http://auth.example.com:5001/t")));
    assert!(!registry.token_realms[0].allows(&realm("https://evil.example.com/t")));
    assert_eq!(registry.scanner_username.as_deref(), Some("reader"));
    assert_eq!(registry.scanner_password.as_deref(), Some("read-only"));
    assert!(!registry.share_password_with_scanners);
    assert!(!format!("{registry:?}").contains("read-only"));
}

#[test]
fn errors_notifications() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"localhost:5055\"\n",
            "schedules.toml:4:10: [notifications] listen: invalid address \"localhost:5055\" (expected IP:PORT like \"127.0.0.1:5055\", or \"\" to disable the intake)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"0.0.0.0:5055\"\n",
            "schedules.toml:4:10: [notifications] listen: 0.0.0.0:5055 is reachable from other hosts but no token is set (set token_file or REGKEEPER_NOTIFY_TOKEN, or allow_unauthenticated = true)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"[::]:5055\"\nallow_unauthenticated = false\n",
            "schedules.toml:4:10: [notifications] listen: [::]:5055 is reachable from other hosts but no token is set (set token_file or REGKEEPER_NOTIFY_TOKEN, or allow_unauthenticated = true)",
        ),
    ]);
}

#[test]
fn errors_scanners() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\n[security.clair]\ntimeout = \"1m\"\n",
            "schedules.toml:3:1: [security.clair] server is required, e.g. server = \"http://127.0.0.1:6060\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.adapter]\nserver = \"trivy:8080\"\n",
            "schedules.toml:4:10: [security.adapter] server: URL \"trivy:8080\" is not http:// or https:// (did you mean \"http://trivy:8080\"?)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.fixture]\nenabled = true\n",
            "schedules.toml:3:1: [security.fixture] file is required (the JSON file with the reports)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.fixture]\nfile = \"f.json\"\nserver = \"http://s\"\n",
            "schedules.toml:5:10: [security.fixture] server does not apply to the fixture scanner (it reads `file`)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair4]\nserver = \"http://s\"\nfile = \"f.json\"\n",
            "schedules.toml:5:8: [security.clair4] file only applies to the fixture scanner",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair4]\nserver = \"http://s\"\nusername = \"u\"\npassword = \"\"\n",
            "schedules.toml:6:12: [security.clair4] password is empty (remove the key, or write the secret)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair4]\nserver = \"http://s\"\npassword = \"p\"\n",
            "schedules.toml:5:12: [security.clair4] password is set but username is not",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.adapter]\nserver = \"http://s\"\nusername = \"u\"\ntoken_file = \"/t\"\n",
            "schedules.toml:6:14: [security.adapter] token_file and username are both set (use one)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair]\nserver = \"http://s\"\ntimeout = \"0s\"\n",
            "schedules.toml:5:11: [security.clair] timeout: duration \"0s\" must be greater than zero",
        ),
    ]);
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é = 1\nx", 3), (1, 3));
    assert_eq!(line_column("ab", 99), (1, 3));
}
