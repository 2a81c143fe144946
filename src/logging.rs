//! Logging on stderr: env_logger with its filter (`RUST_LOG`, `info` when
//! unset) and one of two formats, switchable while the process runs. `text`
//! is env_logger's own line (time, level, target, message); `json` is one
//! object per line with `timestamp`, `level`, `target`, `message` and the
//! record's structured fields (`log`'s key-values: a run's start and end
//! lines carry `job`, `run`, `outcome`, `counts`, ...), written by
//! serde_json.
//!
//! The transport crates (the HTTP client and its TLS, the intake's HTTP
//! stack, the PostgreSQL driver) are held at `info` whatever `RUST_LOG`
//! says: their debug and trace output is raw traffic (request headers with
//! `Authorization: Basic ...`, token responses), and secrets never reach a
//! log line.
//!
//! The format is known before the configuration is read only from
//! `REGKEEPER_LOG_FORMAT`; [`init`] takes it from there, and the daemon
//! calls [`use_config`] with `[daemon] log_format` once it has loaded the
//! file (and again after each reload). The environment wins over the file.
//! Nothing here reads files.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use crate::config::LogFormat;

/// The environment variable that chooses the log format (and wins over
/// `[daemon] log_format`).
pub const ENV_LOG_FORMAT: &str = "REGKEEPER_LOG_FORMAT";

/// Structured fields whose value is JSON text, written as JSON (not as a
/// string) in `json` lines: a run's `counts`.
const JSON_FIELDS: &[&str] = &["counts"];

/// The format in use: 0 text, 1 json.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Set when the environment chose the format: the configuration does not
/// change it then.
static FROM_ENVIRONMENT: AtomicBool = AtomicBool::new(false);

/// Crates whose records above `info` are dropped: the HTTP client and its
/// TLS, the intake's HTTP stack, the PostgreSQL driver.
pub const TRANSPORT_TARGETS: &[&str] = &[
    "ureq",
    "ureq_proto",
    "rustls",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "tower",
    "tower_http",
    "axum",
    "tokio_postgres",
    "postgres",
    "postgres_protocol",
];

/// Whether a record of `target` at `level` may be written.
pub fn admitted(target: &str, level: log::Level) -> bool {
    if level <= log::Level::Info {
        return true;
    }
    let crate_name = target.split("::").next().unwrap_or(target);
    !TRANSPORT_TARGETS.contains(&crate_name)
}

struct HoldBack(env_logger::Logger);

impl Log for HoldBack {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        admitted(metadata.target(), metadata.level()) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if admitted(record.target(), record.level()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Sets up the logger on stderr, in the format `REGKEEPER_LOG_FORMAT`
/// names (text when unset). An unknown value is an error naming it; the
/// logger is set up in text then.
pub fn init() -> anyhow::Result<()> {
    let chosen = std::env::var(ENV_LOG_FORMAT).ok();
    let from_environment = match chosen.as_deref() {
        None | Some("") => Ok(None),
        Some(name) => LogFormat::from_name(name).map(Some).ok_or_else(|| {
            anyhow::anyhow!(
                "{ENV_LOG_FORMAT}: unknown log format {name:?} (expected \"text\" or \"json\")"
            )
        }),
    };
    if let Ok(Some(format)) = from_environment {
        set(format);
        FROM_ENVIRONMENT.store(true, Ordering::SeqCst);
    }
    let text = env_logger::fmt::ConfigurableFormat::default();
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .target(env_logger::Target::Stderr)
            .format(move |buf, record| match current() {
                LogFormat::Text => text.format(buf, record),
                LogFormat::Json => {
                    let line = json_line(record, chrono::Utc::now());
                    writeln!(buf, "{line}")
                }
            })
            .build();
    let max_level: LevelFilter = logger.filter();
    if log::set_boxed_logger(Box::new(HoldBack(logger))).is_ok() {
        log::set_max_level(max_level);
    }
    from_environment.map(|_| ())
}

/// Switches to `[daemon] log_format`, unless `REGKEEPER_LOG_FORMAT` chose
/// the format.
pub fn use_config(format: LogFormat) {
    if !FROM_ENVIRONMENT.load(Ordering::SeqCst) {
        set(format);
    }
}

/// The format lines are written in now.
pub fn current() -> LogFormat {
    match FORMAT.load(Ordering::SeqCst) {
        1 => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

fn set(format: LogFormat) {
    let code = match format {
        LogFormat::Text => 0,
        LogFormat::Json => 1,
    };
    FORMAT.store(code, Ordering::SeqCst);
}

/// One `json` line: the fixed fields first, then the record's own.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'static str,
    target: &'a str,
    message: String,
    #[serde(flatten)]
    fields: serde_json::Map<String, serde_json::Value>,
}

/// One record as a JSON line (without its newline).
fn json_line(record: &log::Record<'_>, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut fields = Fields(serde_json::Map::new());
    // A field that cannot be read is left out; the message still says it.
    let _ = record.key_values().visit(&mut fields);
    let line = JsonLine {
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        level: record.level().as_str(),
        target: record.target(),
        message: record.args().to_string(),
        fields: fields.0,
    };
    serde_json::to_string(&line).unwrap_or_else(|error| {
        serde_json::json!({ "level": "ERROR", "message": format!("writing a log line: {error}") })
            .to_string()
    })
}

/// Collects a record's key-values. A field never replaces one of the four
/// fixed ones.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let name = key.as_str();
        if ["timestamp", "level", "target", "message"].contains(&name) {
            return Ok(());
        }
        let mut json = JsonValue(serde_json::Value::Null);
        value.visit(&mut json)?;
        let json = match json.0 {
            serde_json::Value::String(text) if JSON_FIELDS.contains(&name) => {
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
            }
            other => other,
        };
        self.0.insert(name.to_string(), json);
        Ok(())
    }
}

/// One key-value's value as JSON.
struct JsonValue(serde_json::Value);

impl<'v> log::kv::VisitValue<'v> for JsonValue {
    fn visit_any(&mut self, value: log::kv::Value<'_>) -> Result<(), log::kv::Error> {
        self.0 = serde_json::Value::String(value.to_string());
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        self.0 = serde_json::Value::Null;
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_f64(&mut self, value: f64) -> Result<(), log::kv::Error> {
        self.0 = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string().into(), serde_json::Value::Number);
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), log::kv::Error> {
        self.0 = value.into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_has_the_fixed_fields_and_the_structured_ones() {
        let counts = r#"{"applied":12,"skipped":2}"#;
        let fields: [(&str, log::kv::Value<'_>); 5] = [
            ("job", log::kv::Value::from("ev")),
            ("run", log::kv::Value::from(7_i64)),
            ("outcome", log::kv::Value::from("ok")),
            ("counts", log::kv::Value::from(counts)),
            ("message", log::kv::Value::from("not this one")),
        ];
        let args = format_args!("job=ev run=7 finished: \"quoted\"\n\tnext");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("regkeeper::scheduler::run")
            .key_values(&fields)
            .build();
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T05:46:32.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let line = json_line(&record, at);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with(r#"{"timestamp":"2026-12-03T05:46:32.500Z","level":"INFO","#));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "timestamp": "2026-12-03T05:46:32.500Z",
                "level": "INFO",
                "target": "regkeeper::scheduler::run",
                "message": "job=ev run=7 finished: \"quoted\"\n\tnext",
                "job": "ev",
                "run": 7,
                "outcome": "ok",
                "counts": {"applied": 12, "skipped": 2},
            })
        );
    }

    #[test]
    fn transport_crates_are_held_at_info_and_ours_are_not() {
        assert!(!admitted(
            "ureq::unversioned::transport::tcp",
            log::Level::Debug
        ));
        assert!(!admitted("ureq_proto::client", log::Level::Trace));
        assert!(!admitted("rustls", log::Level::Trace));
        assert!(admitted("ureq", log::Level::Warn));
        assert!(admitted("regkeeper::registry::client", log::Level::Trace));
        assert!(admitted("ureq_like_but_ours", log::Level::Trace));
    }
}
