//! The scan lifecycle in SQL: which manifest digests are due, claiming one
//! under a lease, settling a scan (only while the claim still holds),
//! recording a failure with backoff, and reading results back. Every
//! function runs inside the caller's transaction; the [`super::Store`]
//! methods in `sql.rs` open it. State lives on `tags` (`scanned`, a
//! [`ScanState`]) but work and results are per digest: every
//! tag with that digest moves together. Each scanner's report on a digest
//! (`scan_reports`: when it was taken, failures since) stands on its own:
//! settling a scan replaces only the results of the scanners that answered
//! (`scan_results.rs` writes them), and the tags are done only when every
//! enabled scanner's report is current ([`digest_state`]). Built on
//! `rows.rs`, `registries.rs` and `scan_results.rs`.

use std::collections::BTreeMap;

use super::codes::{scan_state, scan_state_at, ScanState};
use super::registries::{join_repository, split_repository};
use super::rows::{int, opt_int, opt_text, single, text, txt};
use super::scan_results::replace_results;
use super::{
    Conn, ImageVulnerabilities, ScanCandidate, ScanClaim, ScanPolicy, ScanReport, ScanSettled,
    ScanSettlement, ScannerResult, ScannerSummary, TagScanState, Value, VulnerabilityRecord,
};

/// Severity words, as stored, lowest first.
pub const SEVERITIES: [&str; 6] = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"];

/// The condition a tag row meets when it is due for a scan; binds $1 now,
/// $2 lease cutoff, $3 rescan cutoff, $4 retry failed (0/1).
const DUE: &str = concat!(
    "digest <> '' AND ( \
     (scanned = ",
    scan_state!(unscanned),
    " AND (scan_not_before IS NULL OR scan_not_before <= $1)) \
  OR (scanned = ",
    scan_state!(working),
    " AND (scan_claimed_at IS NULL OR scan_claimed_at <= $2)) \
  OR (scanned = ",
    scan_state!(done),
    " AND (scanned_at IS NULL OR scanned_at <= $3)) \
  OR (scanned = ",
    scan_state!(failed),
    " AND $4 = 1))"
);

fn due_params(policy: &ScanPolicy) -> [Value; 4] {
    [
        Value::Int(policy.now),
        Value::Int(policy.now.saturating_sub(policy.lease_ms)),
        Value::Int(match policy.rescan_after_ms {
            Some(after) => policy.now.saturating_sub(after),
            None => i64::MIN,
        }),
        Value::Int(policy.retry_failed.into()),
    ]
}

/// Digests due for a scan, each with the oldest tag naming it; new and
/// failed-and-retried work before rescans, oldest first.
pub fn candidates(
    conn: &mut dyn Conn,
    registry_id: i64,
    policy: &ScanPolicy,
) -> anyhow::Result<Vec<ScanCandidate>> {
    let mut params = due_params(policy).to_vec();
    params.push(Value::Int(registry_id));
    params.push(Value::Int(i64::try_from(policy.limit).unwrap_or(i64::MAX)));
    let rows = conn.query(
        &format!(
            concat!("SELECT t.digest, n.name, r.name, t.name, t.media_type FROM tags t \
             JOIN repositories r ON r.id = t.repository_id JOIN namespaces n ON n.id = r.namespace_id \
             WHERE n.registry_id = $5 AND t.id IN (SELECT MIN(id) FROM tags WHERE {DUE} GROUP BY digest) \
             ORDER BY CASE WHEN t.scanned = ", scan_state!(done), " THEN 1 ELSE 0 END, t.id LIMIT $6"), DUE = DUE
        ),
        &params,
    )?;
    rows.iter()
        .map(|row| {
            Ok(ScanCandidate {
                digest: text(row, 0)?,
                repository: join_repository(&text(row, 1)?, &text(row, 2)?),
                tag: text(row, 3)?,
                media_type: text(row, 4)?,
            })
        })
        .collect()
}

/// Marks every due tag with `digest` working under `claimant`'s lease.
/// None when nothing was due any more (another claimant was faster).
pub fn claim(
    conn: &mut dyn Conn,
    digest: &str,
    claimant: &str,
    policy: &ScanPolicy,
) -> anyhow::Result<Option<ScanClaim>> {
    let mut params = due_params(policy).to_vec();
    params.push(txt(digest));
    params.push(txt(claimant));
    let claimed = conn.execute(
        &format!(
            concat!(
                "UPDATE tags SET scanned = ",
                scan_state!(working),
                ", scan_claimed_at = $1, scan_claimant = $6 \
             WHERE digest = $5 AND {DUE}"
            ),
            DUE = DUE
        ),
        &params,
    )?;
    if claimed == 0 {
        return Ok(None);
    }
    let row = single(
        conn.query(
            concat!(
                "SELECT MAX(scan_attempts), COUNT(*) FROM tags WHERE digest = $1 AND scanned = ",
                scan_state!(working),
                " AND scan_claimant = $2"
            ),
            &[txt(digest), txt(claimant)],
        )?,
        "the claim",
    )?;
    Ok(Some(ScanClaim {
        digest: digest.to_string(),
        attempts: opt_int(&row, 0)?.unwrap_or(0),
        tags: int(&row, 1)?,
    }))
}

/// Whether `claimant` still holds a claim on some tag with `digest` (the
/// tag was neither re-pushed, deleted, nor taken over after its lease).
fn holds(conn: &mut dyn Conn, digest: &str, claimant: &str) -> anyhow::Result<bool> {
    let row = single(
        conn.query(
            concat!(
                "SELECT COUNT(*) FROM tags WHERE digest = $1 AND scanned = ",
                scan_state!(working),
                " AND scan_claimant = $2"
            ),
            &[txt(digest), txt(claimant)],
        )?,
        "the claim count",
    )?;
    Ok(int(&row, 0)? > 0)
}

/// The per-scanner reports on `digest`, by scanner name.
pub fn reports(conn: &mut dyn Conn, digest: &str) -> anyhow::Result<Vec<ScanReport>> {
    let rows = conn.query(
        "SELECT scanner, scanned_at, attempted_at, attempts, last_error, not_before, failed \
         FROM scan_reports WHERE digest = $1",
        &[txt(digest)],
    )?;
    let mut reports = rows
        .iter()
        .map(|row| {
            Ok(ScanReport {
                scanner: text(row, 0)?,
                scanned_at: opt_int(row, 1)?,
                attempted_at: int(row, 2)?,
                attempts: int(row, 3)?,
                last_error: opt_text(row, 4)?,
                not_before: opt_int(row, 5)?,
                failed: int(row, 6)? != 0,
            })
        })
        .collect::<anyhow::Result<Vec<ScanReport>>>()?;
    reports.sort_by(|a, b| a.scanner.as_bytes().cmp(b.scanner.as_bytes()));
    Ok(reports)
}

/// What the tags of a digest say, given the enabled scanners' reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestState {
    /// Unscanned (a scanner is still to be asked), done or failed.
    pub scanned: ScanState,
    /// When done: the oldest of the reports (a rescan is due from it).
    pub scanned_at: Option<i64>,
    /// The most failed attempts of a scanner without a current report.
    pub attempts: i64,
    /// `scanner: error` of each scanner whose latest attempt failed.
    pub last_error: Option<String>,
    /// When pending: the earliest retry of a scanner still retrying.
    pub not_before: Option<i64>,
}

/// The tag state of a digest: done when every enabled scanner has a
/// current report; else none while some scanner without one may still be
/// tried (at the earliest of their retry times), failed when all of those
/// gave up. Scanners not enabled do not count.
pub fn digest_state(enabled: &[String], reports: &[ScanReport]) -> DigestState {
    let mut oldest_report: Option<i64> = None;
    let mut all_current = true;
    let mut pending: Option<Option<i64>> = None;
    let mut attempts = 0;
    let mut errors = Vec::new();
    for scanner in enabled {
        let report = reports.iter().find(|report| &report.scanner == scanner);
        match report {
            Some(report) if report.current() => {
                let at = report.scanned_at.unwrap_or(0);
                oldest_report = Some(oldest_report.map_or(at, |oldest| oldest.min(at)));
            }
            Some(report) => {
                all_current = false;
                attempts = attempts.max(report.attempts);
                if let Some(error) = &report.last_error {
                    errors.push(format!("{scanner}: {error}"));
                }
                if !report.failed {
                    // None (no retry time) sorts first: due at once.
                    pending = Some(match pending {
                        Some(earliest) => earliest.min(report.not_before),
                        None => report.not_before,
                    });
                }
            }
            None => {
                all_current = false;
                pending = Some(None);
            }
        }
    }
    let last_error = (!errors.is_empty()).then(|| errors.join("; "));
    if all_current {
        return DigestState {
            scanned: ScanState::Done,
            scanned_at: oldest_report,
            attempts: 0,
            last_error: None,
            not_before: None,
        };
    }
    match pending {
        Some(not_before) => DigestState {
            scanned: ScanState::Unscanned,
            scanned_at: None,
            attempts,
            last_error,
            not_before,
        },
        None => DigestState {
            scanned: ScanState::Failed,
            scanned_at: None,
            attempts,
            last_error,
            not_before: None,
        },
    }
}

/// Settles a claimed scan of `digest` if `claimant` still holds it: each
/// scanner that answered replaces only its own results and report, each
/// that failed keeps its results and records the failure; then the tags
/// take the state [`digest_state`] gives.
pub fn settle(
    conn: &mut dyn Conn,
    digest: &str,
    claimant: &str,
    settlement: &ScanSettlement,
    now: i64,
) -> anyhow::Result<ScanSettled> {
    if !holds(conn, digest, claimant)? {
        return Ok(ScanSettled::Discarded);
    }
    let mut vulnerabilities = 0;
    for outcome in &settlement.outcomes {
        match &outcome.result {
            ScannerResult::Report(writes) => {
                vulnerabilities += replace_results(conn, digest, &outcome.scanner, writes, now)?;
                conn.execute(
                    "INSERT INTO scan_reports (digest, scanner, scanned_at, attempted_at, attempts, last_error, \
                     not_before, failed) VALUES ($1, $2, $3, $3, 0, NULL, NULL, 0) \
                     ON CONFLICT (digest, scanner) DO UPDATE SET scanned_at = $3, attempted_at = $3, \
                     attempts = 0, last_error = NULL, not_before = NULL, failed = 0",
                    &[txt(digest), txt(&outcome.scanner), Value::Int(now)],
                )?;
            }
            ScannerResult::Failed { error, not_before } => {
                conn.execute(
                    "INSERT INTO scan_reports (digest, scanner, scanned_at, attempted_at, attempts, last_error, \
                     not_before, failed) VALUES ($1, $2, NULL, $3, 1, $4, $5, $7) \
                     ON CONFLICT (digest, scanner) DO UPDATE SET attempted_at = $3, \
                     attempts = scan_reports.attempts + 1, last_error = $4, not_before = $5, \
                     failed = CASE WHEN scan_reports.attempts + 1 >= $6 THEN 1 ELSE 0 END",
                    &[
                        txt(digest),
                        txt(&outcome.scanner),
                        Value::Int(now),
                        txt(error),
                        Value::Int(*not_before),
                        Value::Int(settlement.max_attempts),
                        Value::Int((settlement.max_attempts <= 1).into()),
                    ],
                )?;
            }
        }
    }
    let state = digest_state(&settlement.enabled, &reports(conn, digest)?);
    let tags = conn.execute(
        concat!("UPDATE tags SET scanned = $3, scanned_at = $4, scan_attempts = $5, scan_last_error = $6, \
         scan_not_before = $7, scan_claimed_at = NULL, scan_claimant = NULL \
         WHERE digest = $1 AND NOT (scanned = ", scan_state!(working), " AND scan_claimant IS NOT NULL AND scan_claimant <> $2)"),
        &[
            txt(digest),
            txt(claimant),
            Value::Int(state.scanned.code()),
            state.scanned_at.map_or(Value::Null, Value::Int),
            Value::Int(state.attempts),
            state.last_error.as_deref().map_or(Value::Null, txt),
            state.not_before.map_or(Value::Null, Value::Int),
        ],
    )?;
    Ok(ScanSettled::Settled {
        tags,
        scanned: state.scanned,
        vulnerabilities,
    })
}

/// Deletes the results and reports of scanners not in `enabled` (removed
/// from the configuration or disabled). Returns the rows deleted.
pub fn forget_scanners(conn: &mut dyn Conn, enabled: &[String]) -> anyhow::Result<u64> {
    let mut params = Vec::with_capacity(enabled.len());
    let places: Vec<String> = enabled
        .iter()
        .map(|scanner| {
            params.push(txt(scanner));
            format!("${}", params.len())
        })
        .collect();
    let condition = if places.is_empty() {
        String::new()
    } else {
        format!(" WHERE scanner NOT IN ({})", places.join(", "))
    };
    // Tags waiting for (or failed by) a forgotten scanner are looked at
    // again: the next scan settles them on the enabled scanners' reports.
    conn.execute(
        &format!(
            concat!(
                "UPDATE tags SET scanned = ",
                scan_state!(unscanned),
                ", scan_not_before = NULL WHERE scanned IN (",
                scan_state!(unscanned),
                ", ",
                scan_state!(failed),
                ") \
             AND digest IN (SELECT digest FROM scan_reports{condition})"
            ),
            condition = condition
        ),
        &params,
    )?;
    let results = conn.execute(&format!("DELETE FROM scan_results{condition}"), &params)?;
    let reports = conn.execute(&format!("DELETE FROM scan_reports{condition}"), &params)?;
    Ok(results + reports)
}

/// Per scanner, over the digests current tags have: reports held, how
/// many of them are stale or missing because the latest attempt failed,
/// how many gave up, the newest report and the newest failure.
pub fn summaries(conn: &mut dyn Conn) -> anyhow::Result<Vec<ScannerSummary>> {
    let rows = conn.query(
        "SELECT scanner, scanned_at, attempted_at, last_error, failed FROM scan_reports \
         WHERE digest IN (SELECT digest FROM tags)",
        &[],
    )?;
    let mut by_scanner: BTreeMap<String, ScannerSummary> = BTreeMap::new();
    for row in rows {
        let scanner = text(&row, 0)?;
        let scanned_at = opt_int(&row, 1)?;
        let attempted_at = int(&row, 2)?;
        let last_error = opt_text(&row, 3)?;
        let failed = int(&row, 4)? != 0;
        let summary = by_scanner
            .entry(scanner.clone())
            .or_insert_with(|| ScannerSummary {
                scanner,
                ..ScannerSummary::default()
            });
        if scanned_at.is_some() {
            summary.reports += 1;
            summary.last_report_at = summary.last_report_at.max(scanned_at);
        }
        if let Some(error) = last_error {
            summary.failing += 1;
            if failed {
                summary.failed += 1;
            }
            if summary.last_error_at.is_none_or(|at| at < attempted_at) {
                summary.last_error_at = Some(attempted_at);
                summary.last_error = Some(error);
            }
        }
    }
    Ok(by_scanner.into_values().collect())
}

/// Extends `claimant`'s lease on `digest` to start at `now` (a long scan
/// is still going). Returns the tags still claimed.
pub fn renew(conn: &mut dyn Conn, digest: &str, claimant: &str, now: i64) -> anyhow::Result<u64> {
    conn.execute(
        concat!(
            "UPDATE tags SET scan_claimed_at = $3 WHERE digest = $1 AND scanned = ",
            scan_state!(working),
            " AND scan_claimant = $2"
        ),
        &[txt(digest), txt(claimant), Value::Int(now)],
    )
}

/// Gives a claim back without counting an attempt (the run was cancelled).
pub fn release(conn: &mut dyn Conn, digest: &str, claimant: &str) -> anyhow::Result<u64> {
    conn.execute(
        concat!(
            "UPDATE tags SET scanned = CASE WHEN scanned_at IS NULL THEN ",
            scan_state!(unscanned),
            " ELSE ",
            scan_state!(done),
            " END, \
         scan_claimed_at = NULL, scan_claimant = NULL \
         WHERE digest = $1 AND scanned = ",
            scan_state!(working),
            " AND scan_claimant = $2"
        ),
        &[txt(digest), txt(claimant)],
    )
}

/// The claimants of scans in progress.
pub fn claimants(conn: &mut dyn Conn) -> anyhow::Result<Vec<String>> {
    let rows = conn.query(
        concat!(
            "SELECT DISTINCT scan_claimant FROM tags WHERE scanned = ",
            scan_state!(working),
            " AND scan_claimant IS NOT NULL"
        ),
        &[],
    )?;
    rows.iter().map(|row| text(row, 0)).collect()
}

/// Gives every scan claim of `claimant` back as [`release`] does.
pub fn release_all_of(conn: &mut dyn Conn, claimant: &str) -> anyhow::Result<u64> {
    conn.execute(
        concat!(
            "UPDATE tags SET scanned = CASE WHEN scanned_at IS NULL THEN ",
            scan_state!(unscanned),
            " ELSE ",
            scan_state!(done),
            " END, \
         scan_claimed_at = NULL, scan_claimant = NULL \
         WHERE scanned = ",
            scan_state!(working),
            " AND scan_claimant = $1"
        ),
        &[txt(claimant)],
    )
}

/// The scan state and vulnerabilities of one tag; None when no such tag.
pub fn image(
    conn: &mut dyn Conn,
    registry_id: i64,
    repository: &str,
    tag: &str,
) -> anyhow::Result<Option<ImageVulnerabilities>> {
    let (namespace, name) = split_repository(repository)?;
    let rows = conn.query(
        "SELECT t.digest, t.scanned, t.scan_attempts, t.scan_last_error, t.scan_not_before, t.scanned_at, t.scan_claimed_at \
         FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN namespaces n ON n.id = r.namespace_id \
         WHERE n.registry_id = $1 AND n.name = $2 AND r.name = $3 AND t.name = $4",
        &[Value::Int(registry_id), txt(namespace), txt(name), txt(tag)],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let digest = text(row, 0)?;
    let state = TagScanState {
        scanned: scan_state_at(row, 1)?,
        attempts: int(row, 2)?,
        last_error: opt_text(row, 3)?,
        not_before: opt_int(row, 4)?,
        scanned_at: opt_int(row, 5)?,
        claimed_at: opt_int(row, 6)?,
    };
    let rows = conn.query(
        "SELECT v.name, v.scanner, v.severity, v.severity_raw, v.link, v.fixed_by, v.description, v.metadata \
         FROM scan_results s JOIN vulnerabilities v ON v.id = s.vulnerability_id WHERE s.digest = $1",
        &[txt(&digest)],
    )?;
    let mut vulnerabilities = rows
        .iter()
        .map(|row| {
            Ok(VulnerabilityRecord {
                name: text(row, 0)?,
                scanner: text(row, 1)?,
                severity: text(row, 2)?,
                severity_raw: text(row, 3)?,
                link: text(row, 4)?,
                fixed_by: text(row, 5)?,
                description: text(row, 6)?,
                metadata: opt_text(row, 7)?,
            })
        })
        .collect::<anyhow::Result<Vec<VulnerabilityRecord>>>()?;
    // Worst first, then by name byte-wise, then scanner; sorted here because
    // collations differ between databases.
    let rank = |word: &str| {
        SEVERITIES
            .iter()
            .position(|known| *known == word)
            .unwrap_or(0)
    };
    vulnerabilities.sort_by(|a, b| {
        rank(&b.severity)
            .cmp(&rank(&a.severity))
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
            .then_with(|| a.scanner.as_bytes().cmp(b.scanner.as_bytes()))
    });
    let reports = reports(conn, &digest)?;
    Ok(Some(ImageVulnerabilities {
        digest,
        state,
        reports,
        vulnerabilities,
    }))
}

/// Distinct vulnerabilities affecting at least one current tag, by
/// severity word (all six words present).
pub fn counts(conn: &mut dyn Conn) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, i64> = SEVERITIES
        .iter()
        .map(|word| (word.to_string(), 0))
        .collect();
    let rows = conn.query(
        "SELECT v.severity, COUNT(*) FROM vulnerabilities v WHERE v.id IN \
         (SELECT s.vulnerability_id FROM scan_results s WHERE s.digest IN (SELECT digest FROM tags)) \
         GROUP BY v.severity",
        &[],
    )?;
    for row in rows {
        *counts.entry(text(&row, 0)?).or_insert(0) += int(&row, 1)?;
    }
    Ok(counts)
}

/// Deletes the results and reports of digests no tag has any more;
/// returns the results deleted.
pub fn prune(conn: &mut dyn Conn) -> anyhow::Result<u64> {
    conn.execute(
        "DELETE FROM scan_reports WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.digest = scan_reports.digest)",
        &[],
    )?;
    conn.execute(
        "DELETE FROM scan_results WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.digest = scan_results.digest)",
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scanner: &str, scanned_at: Option<i64>, error: Option<(&str, i64)>) -> ScanReport {
        ScanReport {
            scanner: scanner.into(),
            scanned_at,
            attempted_at: 0,
            attempts: u8::from(error.is_some()).into(),
            last_error: error.map(|(error, _)| error.to_string()),
            not_before: error.map(|(_, at)| at),
            failed: false,
        }
    }

    #[test]
    fn a_digest_is_done_when_every_enabled_scanner_is_current() {
        let enabled = ["adapter".to_string(), "clair".to_string()];
        let done = digest_state(
            &enabled,
            &[
                report("adapter", Some(20), None),
                report("clair", Some(10), None),
                report("removed", None, Some(("gone", 5))),
            ],
        );
        assert_eq!(
            done,
            DigestState {
                scanned: ScanState::Done,
                scanned_at: Some(10),
                attempts: 0,
                last_error: None,
                not_before: None,
            }
        );
        // A stale report holds the tag back until its retry.
        let stale = [
            report("adapter", Some(20), Some(("answered 500", 700))),
            report("clair", Some(10), None),
        ];
        assert_eq!(
            digest_state(&enabled, &stale),
            DigestState {
                scanned: ScanState::Unscanned,
                scanned_at: None,
                attempts: 1,
                last_error: Some("adapter: answered 500".into()),
                not_before: Some(700),
            }
        );
        // A scanner never asked is due at once.
        assert_eq!(
            digest_state(&enabled, &stale[..1]).not_before,
            None,
            "clair has no report"
        );
        // Every scanner without a current report gave up: failed.
        let gave_up = [
            ScanReport {
                failed: true,
                ..stale[0].clone()
            },
            stale[1].clone(),
        ];
        let failed = digest_state(&enabled, &gave_up);
        assert_eq!((failed.scanned, failed.attempts), (ScanState::Failed, 1));
        assert_eq!(
            digest_state(&enabled[1..], &gave_up).scanned,
            ScanState::Done
        );
    }
}
