//! `regkeeper gc-log`: the newest rows of the gc audit (`gc_deletions`):
//! what `gc` jobs deleted and why, and what their dry runs would have
//! deleted (marked), as a table or JSON. Does not ask the registry.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::format::{format_ms, short_digest, write_table};
use super::{load_config_for_reading, open_store_read_only, print_out, Failure, GcLogArgs};
use crate::store::GcDeletion;

/// One row of `gc-log --json`.
#[derive(Debug, Serialize)]
pub struct GcLogEntry {
    /// RFC 3339, UTC.
    pub deleted_at: String,
    /// The registry's name (`host:port`).
    pub registry: String,
    /// Full repository name.
    pub repository: String,
    /// Tag name.
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// The policies that select the repository.
    pub policy: String,
    /// Why no rule kept the tag.
    pub rule: String,
    /// The `job_runs` row of the pass.
    pub run_id: i64,
    /// A dry run's decision: nothing was deleted.
    pub dry_run: bool,
}

impl From<GcDeletion> for GcLogEntry {
    fn from(row: GcDeletion) -> GcLogEntry {
        GcLogEntry {
            deleted_at: format_ms(row.deleted_at),
            registry: row.registry,
            repository: row.repository,
            tag: row.tag,
            digest: row.digest,
            policy: row.policy,
            rule: row.rule,
            run_id: row.run_id,
            dry_run: row.dry_run,
        }
    }
}

/// `gc-log`: the newest `--limit` rows, newest first.
pub(super) fn gc_log(config_path: &Path, args: &GcLogArgs) -> Result<ExitCode, Failure> {
    let config = load_config_for_reading(config_path)?;
    let store = open_store_read_only(&config)?;
    let entries: Vec<GcLogEntry> = store
        .gc_deletions(args.limit)?
        .into_iter()
        .filter(|row| !args.deleted_only || !row.dry_run)
        .map(GcLogEntry::from)
        .collect();
    if args.json {
        let json = serde_json::to_string_pretty(&entries).context("writing the gc log as JSON")?;
        print_out(&format!("{json}\n"))?;
    } else {
        print_out(&gc_log_table(&entries))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable `gc-log`: one line per tag, digests shortened.
pub fn gc_log_table(entries: &[GcLogEntry]) -> String {
    if entries.is_empty() {
        return "no gc deletions\n".to_string();
    }
    let header = [
        "TIME",
        "RUN",
        "ACTION",
        "REPOSITORY",
        "TAG",
        "DIGEST",
        "WHY",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|entry| {
            [
                entry.deleted_at.clone(),
                entry.run_id.to_string(),
                if entry.dry_run { "dry-run" } else { "deleted" }.to_string(),
                entry.repository.clone(),
                entry.tag.clone(),
                short_digest(&entry.digest),
                entry.rule.clone(),
            ]
        })
        .collect();
    let mut out = String::new();
    write_table(&mut out, &header, &rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_log_table_marks_dry_runs_and_names_the_rule() {
        let entry = |tag: &str, dry_run: bool| GcLogEntry {
            deleted_at: "2026-12-03T07:00:00Z".to_string(),
            registry: "127.0.0.1:5000".to_string(),
            repository: "ci/app".to_string(),
            tag: tag.to_string(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            policy: "ci".to_string(),
            rule: "ci: beyond keep_latest 5 (6th newest)".to_string(),
            run_id: 12,
            dry_run,
        };
        assert_eq!(gc_log_table(&[]), "no gc deletions\n");
        let table = gc_log_table(&[entry("b-6", false), entry("b-7", true)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[1].contains("deleted") && lines[1].contains("b-6"),
            "{table}"
        );
        assert!(
            lines[2].contains("dry-run") && lines[2].contains("ci: beyond keep_latest 5"),
            "{table}"
        );
    }
}
