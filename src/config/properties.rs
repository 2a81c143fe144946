//! Property tests of `parse` on generated documents: a full valid
//! configuration with one known key given a hostile value (a wrong type, an
//! edge number, a strange string) or removed. `parse` never panics, an
//! error names the file and the key, and what it accepts can be used.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use toml::{Table, Value};

use super::{parse, Config, HandlerConfig};
use crate::testing::hostile;

/// Every table with every key a valid document of that table may hold.
const FULL: &str = r#"
[database]
url = "sqlite://regkeeper.db"
pool_size = 4
wait = "90s"

[registry]
url = "http://127.0.0.1:5000"
username = "u"
password = "p"
timeout = "30s"
concurrency = 4
catalog_page_size = 100
insecure_skip_tls_verify = false

[notifications]
listen = "127.0.0.1:5055"
allow_unauthenticated = true
body_limit = "1MiB"

[daemon]
grace_period = "30s"
keep_runs = 100

[jobs.e]
handler = "events"
schedule = "*/2 * * * * *"
enabled = true
timeout = "1m"
jitter = "1s"
timezone = "Europe/Berlin"
max_attempts = 5
retain_done = "7d"
lease = "5m"
batch_size = 100
backoff = "1s"
max_backoff = "1m"

[jobs.s]
handler = "sync"
schedule = "*/20 * * * * *"
strategy = "update-delete"
max_delete_fraction = 0.5

[jobs.x]
handler = "security"
schedule = "*/10 * * * * *"
rescan_after = "1d"
lease = "5m"
concurrency = 2

[security.clair]
server = "http://127.0.0.1:6060"
timeout = "10s"
"#;

/// `(table path, key)` of every key in [`FULL`].
fn keys(table: &Table) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for (name, value) in table {
        if let Value::Table(inner) = value {
            for (key, leaf) in inner {
                match leaf {
                    Value::Table(job) => {
                        for job_key in job.keys() {
                            out.push((vec![name.clone(), key.clone()], job_key.clone()));
                        }
                    }
                    _ => out.push((vec![name.clone()], key.clone())),
                }
            }
        }
    }
    out
}

/// A TOML value chosen to break a reader.
fn hostile_toml() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Boolean),
        prop_oneof![
            Just(i64::MIN),
            Just(-1i64),
            Just(0i64),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Value::Integer),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1e308),
            Just(1.5),
        ]
        .prop_map(Value::Float),
        prop_oneof![
            Just(String::new()),
            Just("-1s".to_string()),
            Just("0s".to_string()),
            Just("18446744073709551615s".to_string()),
            Just("500000000000y".to_string()),
            Just("100000000000y".to_string()),
            Just("99999999999999999999".to_string()),
            Just("-5".to_string()),
            Just("1EiB".to_string()),
            Just("*/0 * * * * *".to_string()),
            Just("99 99 99 * * *".to_string()),
            Just("http://[::1".to_string()),
            Just("postgres://u:secret@127.0.0.1:0/x?sslmode=bogus".to_string()),
            Just("Mars/Olympus".to_string()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
        Just(Value::Array(vec![Value::Integer(1)])),
        Just(Value::Table(Table::new())),
    ]
}

/// The document with `key` of `table_path` replaced (or removed on None).
fn with_value(base: &Table, table_path: &[String], key: &str, value: Option<Value>) -> Table {
    let mut document = base.clone();
    let mut table = &mut document;
    for name in table_path {
        table = match table.get_mut(name) {
            Some(Value::Table(inner)) => inner,
            _ => unreachable!("the path exists in FULL"),
        };
    }
    match value {
        Some(value) => {
            table.insert(key.to_string(), value);
        }
        None => {
            table.remove(key);
        }
    }
    document
}

/// Every duration of an accepted configuration can be added to the clock.
fn durations(config: &Config) -> Vec<Duration> {
    let mut all = vec![
        config.registry.timeout,
        config.daemon.grace_period,
        config.daemon.database_wait,
    ];
    for job in &config.jobs {
        all.extend(job.timeout);
        all.extend(job.jitter);
        match &job.handler {
            HandlerConfig::Events(options) => all.extend([
                options.retain_done,
                options.lease,
                options.backoff,
                options.max_backoff,
            ]),
            HandlerConfig::Security(options) => all.extend([options.lease, options.rescan_after]),
            HandlerConfig::Sync(_) => {}
            HandlerConfig::Gc(options) => {
                for policy in &options.policies {
                    all.extend(policy.keep_pushed_within);
                    all.extend(policy.keep_pulled_within);
                }
            }
        }
    }
    all
}

fn base() -> Table {
    toml::from_str(FULL).expect("FULL is TOML")
}

proptest! {
    #![proptest_config(hostile::config(512))]

    #[test]
    fn a_hostile_value_for_any_key_is_accepted_or_an_error_naming_the_key(
        (table_path, key) in prop::sample::select(keys(&base())),
        value in prop::option::weighted(0.9, hostile_toml()),
    ) {
        let document = with_value(&base(), &table_path, &key, value);
        let text = toml::to_string(&document).expect("a TOML document");
        match parse(&text, Path::new("schedules.toml")) {
            Ok(config) => {
                let now = Instant::now();
                for duration in durations(&config) {
                    prop_assert!(now.checked_add(duration).is_some(), "{duration:?} overflows the clock");
                    prop_assert!(i64::try_from(duration.as_millis()).is_ok(), "{duration:?} overflows ms");
                }
            }
            Err(error) => {
                let message = format!("{error:#}");
                prop_assert!(message.starts_with("schedules.toml"), "{message:?} names no file");
                prop_assert!(
                    message.contains(key.as_str())
                        || table_path.iter().any(|name| message.contains(name.as_str())),
                    "{message:?} names neither {key} nor {table_path:?}"
                );
            }
        }
    }

    #[test]
    fn any_text_is_a_config_or_an_error_naming_the_file(text in ".{0,200}") {
        if let Err(error) = parse(&text, Path::new("schedules.toml")) {
            let message = format!("{error:#}");
            prop_assert!(message.starts_with("schedules.toml"), "{message:?} names no file");
        }
    }
}

#[test]
fn the_full_document_is_valid() {
    parse(FULL, Path::new("schedules.toml")).expect("FULL is valid");
}

#[test]
fn a_duration_that_overflows_the_clock_is_an_error_naming_the_key() {
    let text = "[registry]\nurl = \"http://127.0.0.1:5000\"\ntimeout = \"18446744073709551615s\"\n";
    let error = parse(text, Path::new("schedules.toml")).unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        "schedules.toml:3:11: [registry] timeout: duration \"18446744073709551615s\" \
         is too long (at most 100 years)"
    );
}

#[test]
fn a_table_where_a_value_belongs_is_an_error_naming_the_key() {
    let text = "[database]\nurl = {}\n[registry]\nurl = \"http://127.0.0.1:5000\"\n";
    let error = parse(text, Path::new("schedules.toml")).unwrap_err();
    assert!(
        format!("{error:#}").contains("[database] url: invalid type: map"),
        "{error:#}"
    );
}
