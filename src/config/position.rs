//! Positions in the TOML text for error messages: which table (section or
//! job) and which key a byte offset falls in, and its line and column. Reads
//! only the text; knows nothing of what the keys mean beyond the names of
//! the sections.

use super::ScannerKind;

/// Where a table sits, for the prefix of error messages.
#[derive(Clone)]
pub(super) enum TableLabel {
    /// Top level.
    Top,
    /// `[database]`, `[security.clair]`, ...
    Section(String),
    /// `[jobs.NAME]` and anything below it.
    Job(String),
}

/// The table and the key whose value hold byte `offset` of `text`.
pub(super) fn locate(text: &str, offset: usize) -> (TableLabel, Option<String>) {
    let Ok(document) = toml::de::DeTable::parse(text) else {
        return (TableLabel::Top, None);
    };
    // Standard tables are spanned by their header only: the table that
    // holds `offset` is the one whose header comes last before it.
    let mut headers = vec![(0, TableLabel::Top)];
    let mut key = None;
    walk_tables(
        document.get_ref(),
        &mut Vec::new(),
        offset,
        &mut headers,
        &mut key,
    );
    let label = headers
        .into_iter()
        .filter(|(start, _)| *start <= offset)
        .max_by_key(|(start, _)| *start)
        .map_or(TableLabel::Top, |(_, label)| label);
    (label, key)
}

/// Collects the start of every table (with its label) and the key whose
/// value span holds `offset`.
fn walk_tables(
    table: &toml::de::DeTable<'_>,
    path: &mut Vec<String>,
    offset: usize,
    headers: &mut Vec<(usize, TableLabel)>,
    key: &mut Option<String>,
) {
    for (name, value) in table.iter() {
        let Some(inner) = value.get_ref().as_table() else {
            if value.span().contains(&offset) {
                *key = Some(name.get_ref().to_string());
            }
            continue;
        };
        path.push(name.get_ref().to_string());
        let is_section = |name: &str| {
            ["database", "registry", "notifications", "daemon", "metrics"].contains(&name)
        };
        let is_scanner = |name: &str| ScannerKind::ALL.iter().any(|kind| kind.name() == name);
        let label = match path.as_slice() {
            [jobs, job, ..] if jobs == "jobs" => Some(TableLabel::Job(job.clone())),
            // `jobs` and `security` are implicit tables whose span is the
            // first word of the first `[jobs.NAME]` header.
            [only] if only == "jobs" || only == "security" => None,
            [section, ..] if is_section(section) => Some(TableLabel::Section(section.clone())),
            [security, scanner, ..] if security == "security" && is_scanner(scanner) => {
                Some(TableLabel::Section(format!("{security}.{scanner}")))
            }
            // Unknown tables are reported by name in the error itself.
            _ => Some(TableLabel::Top),
        };
        // A table where a key's value belongs (`[database.url]`, `url = {}`)
        // is that key's wrong value: name the key.
        let is_key_position = match path.as_slice() {
            [section, _] => is_section(section),
            [outer, _, _] => outer == "jobs" || outer == "security",
            _ => false,
        };
        if is_key_position && value.span().contains(&offset) {
            *key = Some(name.get_ref().to_string());
        }
        if let Some(label) = label {
            headers.push((value.span().start, label));
        }
        walk_tables(inner, path, offset, headers, key);
        path.pop();
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
