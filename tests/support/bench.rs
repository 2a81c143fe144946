//! Benchmark samples for `scripts/bench.sh`: when `REGKEEPER_BENCH_SAMPLES`
//! names a file, [`record`] appends one JSON line per measured figure to it,
//! which the suite turns into its table (median, spread, ratio to a floor).
//! Benches keep printing their own lines for people; this is the machine
//! side only. Never used by tests.

use std::io::Write as _;

/// The variable naming the samples file.
pub const SAMPLES_VARIABLE: &str = "REGKEEPER_BENCH_SAMPLES";

/// The variable asking a bench to repeat its measurements (default 1), so
/// that what it sets up once (a registry full of images) serves every run.
pub const RUNS_VARIABLE: &str = "REGKEEPER_BENCH_RUNS";

/// One measured figure of one run.
pub struct Sample<'a> {
    /// The suite: `intake`, `events`, `sync`, `security`, `store`.
    pub suite: &'a str,
    /// What was measured, including the database (`images scanned, fixture (SQLite)`).
    pub figure: &'a str,
    /// `/s`, `s`, `ms`, `MiB`, `requests`, ...
    pub unit: &'a str,
    /// The measurement.
    pub value: f64,
    /// The same work's floor (e.g. `curl -Z` time), where one is defined.
    pub floor: Option<f64>,
}

/// Appends `sample` to the samples file, if one is named.
pub fn record(sample: &Sample<'_>) {
    let Ok(path) = std::env::var(SAMPLES_VARIABLE) else {
        return;
    };
    let mut line = serde_json::json!({
        "suite": sample.suite,
        "figure": sample.figure,
        "unit": sample.unit,
        "value": sample.value,
    });
    if let Some(floor) = sample.floor {
        line["floor"] = serde_json::json!(floor);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(error) = written {
        eprintln!("writing a benchmark sample to {path}: {error}");
    }
}
