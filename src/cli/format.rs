//! The table and formatting helpers the subcommands share: aligned
//! tables, short digests, sizes in binary units, times as RFC 3339,
//! durations, counts, media type and scan state words. Pure functions of
//! their arguments; no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::registry::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED,
    OCI_INDEX, OCI_MANIFEST,
};

/// `sha256:` and the first 12 hex digits.
pub(super) fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.to_string(),
    }
}

/// `812 B`, `1.5 KiB`, `23.4 MiB`.
pub(super) fn format_size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A short name for a manifest media type; the type itself when unknown.
pub(super) fn media_type_word(media_type: &str) -> &str {
    match media_type {
        OCI_MANIFEST => "oci",
        OCI_INDEX => "oci-index",
        DOCKER_MANIFEST => "docker-v2",
        DOCKER_MANIFEST_LIST => "docker-list",
        DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => "docker-v1",
        "" => "-",
        other => other,
    }
}

/// Writes rows with columns padded to their widest cell, indented by two
/// spaces; the last column is not padded.
pub(super) fn write_table<const N: usize>(
    out: &mut String,
    header: &[String; N],
    rows: &[[String; N]],
) {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::from(" ");
        for (index, cell) in row.iter().enumerate() {
            line.push(' ');
            if index + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$} ", width = widths[index]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// `none` for an empty text.
pub(super) fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "none"
    } else {
        text
    }
}

/// `a=1 b=2`.
pub(super) fn format_counts(counts: &BTreeMap<String, i64>) -> String {
    counts
        .iter()
        .map(|(name, count)| format!("{name}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub(super) fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// `0.012s`, `3.400s`, `75.0s`.
pub(super) fn format_duration_ms(ms: u128) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// `Critical=1 High=2 ...`, worst first.
pub(super) fn severity_counts(counts: &BTreeMap<String, i64>) -> String {
    let mut words: Vec<&String> = counts.keys().collect();
    words.sort_by_key(|word| std::cmp::Reverse(severity_rank(word)));
    words
        .into_iter()
        .map(|word| format!("{word}={}", counts[word]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn severity_rank(word: &str) -> usize {
    crate::store::scans::SEVERITIES
        .iter()
        .position(|known| *known == word)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1_905), "1.9 KiB");
        assert_eq!(format_size(3_500_000), "3.3 MiB");
        assert_eq!(format_size(5 << 40), "5.0 TiB");
        assert_eq!(format_size(5 << 50), "5120.0 TiB");
    }

    #[test]
    fn digests_shorten_to_twelve_hex_digits() {
        assert_eq!(
            short_digest("sha256:8ffca51699b92830196fe8404d4d509ea345ba3cde251383a6c824630893f3f3"),
            "sha256:8ffca51699b9"
        );
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
        assert_eq!(short_digest("odd"), "odd");
    }
}
