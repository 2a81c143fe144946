//! One scanner's results on one manifest digest, inside the caller's
//! transaction: the `vulnerabilities` rows it found (upserted in chunks,
//! only those whose contents changed) and the `scan_results` links of the
//! digest to them (stale links deleted, new ones inserted). Another
//! scanner's results are never touched. Built on `rows.rs` only; whether a
//! claim still holds, the reports and the tags' state are `scans.rs`'s.

use std::collections::{BTreeMap, HashMap};

use super::rows::{int, opt_text, text, txt};
use super::{Conn, Value, VulnerabilityWrite};

/// Upserts the vulnerabilities, returning their ids in input order.
fn upsert_vulnerabilities(
    conn: &mut dyn Conn,
    vulnerabilities: &[VulnerabilityWrite],
    now: i64,
) -> anyhow::Result<Vec<i64>> {
    // Many rows per statement: one round trip per chunk, not per row.
    const CHUNK: usize = 100;
    let mut ids = Vec::with_capacity(vulnerabilities.len());
    for chunk in vulnerabilities.chunks(CHUNK) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut params = Vec::with_capacity(chunk.len() * 8 + 1);
        params.push(Value::Int(now));
        for vulnerability in chunk {
            let base = params.len();
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $1, $1)",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6,
                base + 7,
                base + 8
            ));
            params.extend([
                txt(&vulnerability.name),
                txt(&vulnerability.scanner),
                txt(&vulnerability.severity),
                txt(&vulnerability.severity_raw),
                txt(&vulnerability.link),
                txt(&vulnerability.fixed_by),
                txt(&vulnerability.description),
                vulnerability.metadata.as_deref().map_or(Value::Null, txt),
            ]);
        }
        let rows = conn.query(
            &format!(
                "INSERT INTO vulnerabilities (name, scanner, severity, severity_raw, link, fixed_by, description, \
                 metadata, created_at, updated_at) VALUES {} \
                 ON CONFLICT (name, scanner) DO UPDATE SET severity = excluded.severity, \
                 severity_raw = excluded.severity_raw, link = excluded.link, fixed_by = excluded.fixed_by, \
                 description = excluded.description, metadata = excluded.metadata, updated_at = excluded.updated_at \
                 RETURNING id, name, scanner",
                values.join(", ")
            ),
            &params,
        )?;
        // RETURNING promises no order: match rows back by key.
        let mut by_key: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            by_key.insert((text(row, 1)?, text(row, 2)?), int(row, 0)?);
        }
        for vulnerability in chunk {
            let id = by_key
                .get(&(vulnerability.name.clone(), vulnerability.scanner.clone()))
                .copied()
                .ok_or_else(|| {
                    anyhow::anyhow!("no id came back for vulnerability {}", vulnerability.name)
                })?;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The stored rows of these vulnerabilities, by (name, scanner): id and
/// contents, to tell what a scan changed.
fn known_vulnerabilities(
    conn: &mut dyn Conn,
    vulnerabilities: &[VulnerabilityWrite],
) -> anyhow::Result<HashMap<(String, String), (i64, VulnerabilityWrite)>> {
    const CHUNK: usize = 200;
    let mut by_scanner: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for vulnerability in vulnerabilities {
        by_scanner
            .entry(vulnerability.scanner.as_str())
            .or_default()
            .push(vulnerability.name.as_str());
    }
    let mut known = HashMap::with_capacity(vulnerabilities.len());
    for (scanner, names) in by_scanner {
        for chunk in names.chunks(CHUNK) {
            let mut params = vec![txt(scanner)];
            let places: Vec<String> = chunk
                .iter()
                .map(|name| {
                    params.push(txt(name));
                    format!("${}", params.len())
                })
                .collect();
            let rows = conn.query(
                &format!(
                    "SELECT id, name, scanner, severity, severity_raw, link, fixed_by, description, metadata \
                     FROM vulnerabilities WHERE scanner = $1 AND name IN ({})",
                    places.join(", ")
                ),
                &params,
            )?;
            for row in rows {
                let stored = VulnerabilityWrite {
                    name: text(&row, 1)?,
                    scanner: text(&row, 2)?,
                    severity: text(&row, 3)?,
                    severity_raw: text(&row, 4)?,
                    link: text(&row, 5)?,
                    fixed_by: text(&row, 6)?,
                    description: text(&row, 7)?,
                    metadata: opt_text(&row, 8)?,
                };
                known.insert(
                    (stored.name.clone(), stored.scanner.clone()),
                    (int(&row, 0)?, stored),
                );
            }
        }
    }
    Ok(known)
}

/// Replaces the stored results of `scanner` for `digest` with its
/// `vulnerabilities` (others' are left alone); returns how many there are
/// now.
pub(super) fn replace_results(
    conn: &mut dyn Conn,
    digest: &str,
    scanner: &str,
    vulnerabilities: &[VulnerabilityWrite],
    now: i64,
) -> anyhow::Result<u64> {
    // The same name may come from one scanner twice only through a caller's
    // mistake; keep the first so the unique keys hold.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<VulnerabilityWrite> = vulnerabilities
        .iter()
        .filter(|v| v.scanner == scanner)
        .filter(|v| seen.insert((v.name.clone(), v.scanner.clone())))
        .cloned()
        .collect();
    // Rescans mostly find what they found before: write only what changed.
    let known = known_vulnerabilities(conn, &unique)?;
    let mut ids = Vec::with_capacity(unique.len());
    let mut changed = Vec::new();
    for vulnerability in &unique {
        match known.get(&(vulnerability.name.clone(), vulnerability.scanner.clone())) {
            Some((id, stored)) if stored == vulnerability => ids.push(Some(*id)),
            _ => {
                ids.push(None);
                changed.push(vulnerability.clone());
            }
        }
    }
    let mut written = upsert_vulnerabilities(conn, &changed, now)?.into_iter();
    let ids: Vec<i64> = ids
        .into_iter()
        .map(|id| id.or_else(|| written.next()))
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| anyhow::anyhow!("fewer vulnerability ids came back than were written"))?;
    let wanted: HashMap<i64, &str> = ids
        .iter()
        .copied()
        .zip(unique.iter().map(|v| v.scanner.as_str()))
        .collect();
    let mut present = std::collections::HashSet::new();
    let rows = conn.query(
        "SELECT vulnerability_id FROM scan_results WHERE digest = $1 AND scanner = $2",
        &[txt(digest), txt(scanner)],
    )?;
    for row in rows {
        present.insert(int(&row, 0)?);
    }
    const CHUNK: usize = 200;
    let stale: Vec<i64> = present
        .iter()
        .copied()
        .filter(|id| !wanted.contains_key(id))
        .collect();
    for chunk in stale.chunks(CHUNK) {
        let mut params = vec![txt(digest)];
        let places: Vec<String> = chunk
            .iter()
            .map(|id| {
                params.push(Value::Int(*id));
                format!("${}", params.len())
            })
            .collect();
        conn.execute(
            &format!(
                "DELETE FROM scan_results WHERE digest = $1 AND vulnerability_id IN ({})",
                places.join(", ")
            ),
            &params,
        )?;
    }
    let pairs: Vec<(i64, &str)> = ids
        .iter()
        .copied()
        .zip(unique.iter().map(|v| v.scanner.as_str()))
        .filter(|(id, _)| !present.contains(id))
        .collect();
    for chunk in pairs.chunks(CHUNK) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut params = vec![txt(digest), Value::Int(now)];
        for (id, scanner) in chunk {
            let base = params.len();
            values.push(format!("($1, ${}, ${}, $2)", base + 1, base + 2));
            params.push(Value::Int(*id));
            params.push(txt(scanner));
        }
        conn.execute(
            &format!(
                "INSERT INTO scan_results (digest, vulnerability_id, scanner, created_at) VALUES {} \
                 ON CONFLICT (digest, vulnerability_id) DO NOTHING",
                values.join(", ")
            ),
            &params,
        )?;
    }
    Ok(unique.len() as u64)
}
