//! `regkeeper vulns REPOSITORY:TAG`: one image's scan state, each
//! scanner's report on its digest and its vulnerabilities worst first, from
//! the database, as a table or JSON. Does not scan.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::format::{format_ms, short_digest, write_table};
use super::{load_config_for_reading, open_store_read_only, print_out, Failure, VulnsArgs};

/// What `vulns --json` prints.
#[derive(Debug, Serialize)]
pub struct VulnsReport {
    /// Full repository name.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// `none`, `working`, `done` or `failed`.
    pub scan: String,
    /// Failed attempts since the last successful scan.
    pub attempts: i64,
    /// The last scan failure.
    pub last_error: Option<String>,
    /// When the results were stored (RFC 3339).
    pub scanned_at: Option<String>,
    /// Each scanner's report on the digest: the enabled scanners in file
    /// order, then any no longer enabled whose results are still stored.
    pub reports: Vec<ReportStatus>,
    /// Vulnerabilities, worst first.
    pub vulnerabilities: Vec<VulnStatus>,
}

/// One scanner's report in `vulns`.
#[derive(Debug, Serialize)]
pub struct ReportStatus {
    /// The scanner.
    pub scanner: String,
    /// `current`; `stale` (its latest attempt failed: the results shown
    /// are from `scanned_at`); `none` (no report yet); `failed` (failed for
    /// good; any results shown are stale); `not enabled`.
    pub report: String,
    /// When the report shown was taken (RFC 3339).
    pub scanned_at: Option<String>,
    /// Failed attempts since then.
    pub attempts: i64,
    /// The latest attempt's error, when it failed.
    pub last_error: Option<String>,
    /// When the latest attempt failed (RFC 3339).
    pub failed_at: Option<String>,
    /// No new try before this (RFC 3339).
    pub retry_after: Option<String>,
}

/// The reports of `vulns`: every enabled scanner, then the rest stored.
fn report_statuses(enabled: &[&str], reports: Vec<crate::store::ScanReport>) -> Vec<ReportStatus> {
    let mut statuses: Vec<ReportStatus> = enabled
        .iter()
        .map(|scanner| ReportStatus {
            scanner: scanner.to_string(),
            report: "none".to_string(),
            scanned_at: None,
            attempts: 0,
            last_error: None,
            failed_at: None,
            retry_after: None,
        })
        .collect();
    for report in reports {
        let word = if !enabled.contains(&report.scanner.as_str()) {
            "not enabled"
        } else if report.failed {
            "failed"
        } else if report.current() {
            "current"
        } else if report.scanned_at.is_some() {
            "stale"
        } else {
            "none"
        };
        let status = ReportStatus {
            report: word.to_string(),
            scanned_at: report.scanned_at.map(format_ms),
            attempts: report.attempts,
            failed_at: report
                .last_error
                .as_ref()
                .map(|_| format_ms(report.attempted_at)),
            retry_after: report
                .not_before
                .filter(|_| report.last_error.is_some() && !report.failed)
                .map(format_ms),
            last_error: report.last_error,
            scanner: report.scanner,
        };
        match statuses
            .iter_mut()
            .find(|shown| shown.scanner == status.scanner)
        {
            Some(shown) => *shown = status,
            None => statuses.push(status),
        }
    }
    statuses
}

/// One vulnerability in `vulns`.
#[derive(Debug, Serialize)]
pub struct VulnStatus {
    /// e.g. `CVE-2016-6301`.
    pub name: String,
    /// The scanner that reported it.
    pub scanner: String,
    /// Normalised severity.
    pub severity: String,
    /// The scanner's own word.
    pub severity_raw: String,
    /// Link(s), space-separated.
    pub link: String,
    /// Fixed-in version.
    pub fixed_by: String,
    /// Description.
    pub description: String,
    /// Other details the scanner gave.
    pub metadata: serde_json::Value,
}

/// Splits `REPOSITORY:TAG` at the last `:` (a tag has no `/`).
pub fn split_image(image: &str) -> Option<(&str, &str)> {
    let (repository, tag) = image.rsplit_once(':')?;
    (!repository.is_empty() && !tag.is_empty() && !tag.contains('/')).then_some((repository, tag))
}

/// `vulns`: one image's scan state and vulnerabilities.
pub(super) fn vulns(config_path: &Path, args: &VulnsArgs) -> Result<ExitCode, Failure> {
    let Some((repository, tag)) = split_image(&args.image) else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "expected REPOSITORY:TAG, e.g. ns/app:1.0, not {:?}",
            args.image
        )));
    };
    let config = load_config_for_reading(config_path)?;
    let store = open_store_read_only(&config)?;
    let hostname = crate::jobs::registry_hostname(&config.registry.url);
    let registry_id = store
        .find_registry(&hostname)
        .with_context(|| format!("finding the registry {hostname}"))?;
    let image = match registry_id {
        Some(registry_id) => store.image_vulnerabilities(registry_id, repository, tag)?,
        None => None,
    };
    let Some(image) = image else {
        return Err(Failure::Failed(anyhow::anyhow!(
            "no tag {repository}:{tag} in the database"
        )));
    };
    let report = VulnsReport {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: image.digest,
        scan: image.state.scanned.word().to_string(),
        attempts: image.state.attempts,
        last_error: image.state.last_error,
        scanned_at: image.state.scanned_at.map(format_ms),
        reports: report_statuses(
            &config
                .security
                .iter()
                .filter(|scanner| scanner.enabled)
                .map(|scanner| scanner.kind.name())
                .collect::<Vec<_>>(),
            image.reports,
        ),
        vulnerabilities: image
            .vulnerabilities
            .into_iter()
            .map(|v| VulnStatus {
                metadata: v
                    .metadata
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok())
                    .unwrap_or(serde_json::Value::Null),
                name: v.name,
                scanner: v.scanner,
                severity: v.severity,
                severity_raw: v.severity_raw,
                link: v.link,
                fixed_by: v.fixed_by,
                description: v.description,
            })
            .collect(),
    };
    if args.json {
        let json =
            serde_json::to_string_pretty(&report).context("writing the vulnerabilities as JSON")?;
        print_out(&format!("{json}\n"))?;
    } else {
        print_out(&vulns_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable `vulns`: a line on the scan, then one line per
/// vulnerability (the first link only; `--json` has everything).
pub fn vulns_table(report: &VulnsReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = write!(
        out,
        "{}:{} {} scan {}",
        report.repository,
        report.tag,
        short_digest(&report.digest),
        report.scan
    );
    if let Some(at) = &report.scanned_at {
        let _ = write!(out, ", results of {at}");
    }
    if report.attempts > 0 {
        let _ = write!(out, ", {} failed attempts", report.attempts);
    }
    let _ = writeln!(out, ": {} vulnerabilities", report.vulnerabilities.len());
    if report.reports.is_empty() {
        if let Some(error) = &report.last_error {
            let _ = writeln!(out, "last error: {error}");
        }
    } else {
        // Per scanner: its report's age, and why it is stale or missing.
        let header = ["SCANNER", "REPORT", "TAKEN", "ATTEMPTS", "LAST ERROR"].map(str::to_string);
        let rows: Vec<[String; 5]> = report
            .reports
            .iter()
            .map(|shown| {
                let error = match (&shown.failed_at, &shown.last_error) {
                    (Some(at), Some(error)) => {
                        let retry = shown
                            .retry_after
                            .as_ref()
                            .map_or(String::new(), |retry| format!(" (retry after {retry})"));
                        format!("{at} {}{retry}", error.replace('\n', " "))
                    }
                    _ => String::new(),
                };
                [
                    shown.scanner.clone(),
                    shown.report.clone(),
                    shown.scanned_at.clone().unwrap_or("-".to_string()),
                    shown.attempts.to_string(),
                    error,
                ]
            })
            .collect();
        write_table(&mut out, &header, &rows);
    }
    if report.vulnerabilities.is_empty() {
        return out;
    }
    let header = ["SEVERITY", "NAME", "SCANNER", "FIXED BY", "LINK"].map(str::to_string);
    let rows: Vec<[String; 5]> = report
        .vulnerabilities
        .iter()
        .map(|v| {
            [
                v.severity.clone(),
                v.name.clone(),
                v.scanner.clone(),
                if v.fixed_by.is_empty() {
                    "-".to_string()
                } else {
                    v.fixed_by.clone()
                },
                v.link.split_whitespace().next().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    write_table(&mut out, &header, &rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::format::severity_counts;
    use std::collections::BTreeMap;

    #[test]
    fn images_split_at_the_last_colon() {
        assert_eq!(split_image("ns/app:1.0"), Some(("ns/app", "1.0")));
        assert_eq!(split_image("a/b/c:latest"), Some(("a/b/c", "latest")));
        assert_eq!(split_image("ns/app"), None);
        assert_eq!(split_image("ns/app:"), None);
        assert_eq!(split_image(":1"), None);
    }

    #[test]
    fn vulns_table_shows_the_scan_then_worst_first() {
        let vuln = |name: &str, severity: &str, fixed_by: &str, link: &str| VulnStatus {
            name: name.into(),
            scanner: "clair".into(),
            severity: severity.into(),
            severity_raw: severity.into(),
            link: link.into(),
            fixed_by: fixed_by.into(),
            description: String::new(),
            metadata: serde_json::Value::Null,
        };
        let report = VulnsReport {
            repository: "ns/app".into(),
            tag: "1.0".into(),
            digest: "sha256:4f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
                .into(),
            scan: "done".into(),
            attempts: 0,
            last_error: None,
            scanned_at: Some("2024-05-01T10:00:00.000Z".into()),
            reports: vec![],
            vulnerabilities: vec![
                vuln(
                    "CVE-2016-6301",
                    "High",
                    "1.24.2-r12",
                    "https://cve.example/a https://b.example/a",
                ),
                vuln("CVE-2016-9840", "Low", "", ""),
            ],
        };
        assert_eq!(
            vulns_table(&report),
            "ns/app:1.0 sha256:4f1c2a3b4c5d scan done, results of 2024-05-01T10:00:00.000Z: 2 vulnerabilities
  SEVERITY  NAME           SCANNER  FIXED BY    LINK
  High      CVE-2016-6301  clair    1.24.2-r12  https://cve.example/a
  Low       CVE-2016-9840  clair    -           -
"
        );
        let failed = VulnsReport {
            scan: "failed".into(),
            attempts: 5,
            last_error: Some("scanner clair: timed out after 15m".into()),
            scanned_at: None,
            vulnerabilities: vec![],
            ..report
        };
        assert_eq!(
            vulns_table(&failed),
            "ns/app:1.0 sha256:4f1c2a3b4c5d scan failed, 5 failed attempts: 0 vulnerabilities
last error: scanner clair: timed out after 15m
"
        );
        let counts = BTreeMap::from([
            ("High".to_string(), 2),
            ("Critical".to_string(), 1),
            ("Low".to_string(), 0),
        ]);
        assert_eq!(severity_counts(&counts), "Critical=1 High=2 Low=0");
    }
}
