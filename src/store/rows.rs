//! The bottom layer of the store's SQL: reading columns of a [`Row`] (a
//! surprising column is an error, never a panic), binding values, counting
//! rows by a small code, and cutting long lists into power-of-two chunks for
//! `IN (...)` lists and multi-row INSERTs. Knows no table and imports nothing
//! of the store but [`Conn`], [`Row`] and [`Value`]; every other SQL file
//! builds on it.

use std::collections::BTreeMap;

use super::{Conn, Row, Value};

/// Column `index` as an integer.
pub fn int(row: &Row, index: usize) -> anyhow::Result<i64> {
    match row.get(index) {
        Some(Value::Int(number)) => Ok(*number),
        other => anyhow::bail!(
            "column {index}: expected an integer, found {}",
            shown(other)
        ),
    }
}

/// Column `index` as an integer or NULL.
pub fn opt_int(row: &Row, index: usize) -> anyhow::Result<Option<i64>> {
    match row.get(index) {
        Some(Value::Int(number)) => Ok(Some(*number)),
        Some(Value::Null) => Ok(None),
        other => anyhow::bail!(
            "column {index}: expected an integer or null, found {}",
            shown(other)
        ),
    }
}

/// Column `index` as text.
pub fn text(row: &Row, index: usize) -> anyhow::Result<String> {
    match row.get(index) {
        Some(Value::Text(text)) => Ok(text.clone()),
        other => anyhow::bail!("column {index}: expected text, found {}", shown(other)),
    }
}

/// Column `index` as text or NULL.
pub fn opt_text(row: &Row, index: usize) -> anyhow::Result<Option<String>> {
    match row.get(index) {
        Some(Value::Text(text)) => Ok(Some(text.clone())),
        Some(Value::Null) => Ok(None),
        other => anyhow::bail!(
            "column {index}: expected text or null, found {}",
            shown(other)
        ),
    }
}

/// The only row of a query, or an error naming `what`.
pub fn single(rows: Vec<Row>, what: &str) -> anyhow::Result<Row> {
    let count = rows.len();
    let mut rows = rows.into_iter();
    match (rows.next(), count) {
        (Some(row), 1) => Ok(row),
        _ => anyhow::bail!("expected one row for {what}, found {count}"),
    }
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None => "no such column".to_string(),
        Some(Value::Null) => "null".to_string(),
        Some(Value::Int(number)) => format!("integer {number}"),
        Some(Value::Text(_)) => "text".to_string(),
    }
}

/// Binds an optional integer.
pub(super) fn opt(value: Option<i64>) -> Value {
    value.map_or(Value::Null, Value::Int)
}

/// Binds text.
pub(super) fn txt(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// Binds a count given as `usize`.
pub(super) fn count(value: usize) -> Value {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Counts rows grouped by a small integer code, named by `words`; every word
/// appears (with 0 when absent), unknown codes as `code N`.
pub(super) fn counts_by_code(
    conn: &mut dyn Conn,
    sql: &str,
    words: &[&str],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, i64> =
        words.iter().map(|word| (word.to_string(), 0)).collect();
    for row in conn.query(sql, &[])? {
        let code = int(&row, 0)?;
        let word = usize::try_from(code)
            .ok()
            .and_then(|index| words.get(index))
            .map_or_else(|| format!("code {code}"), |word| word.to_string());
        *counts.entry(word).or_insert(0) += int(&row, 1)?;
    }
    Ok(counts)
}

/// Most rows per chunked statement (multi-row INSERTs of up to 7 parameters a
/// row, `IN (...)` lists): far below both databases' limits on bound
/// parameters. Chunks are powers of two, so that only a few statement texts
/// exist and stay prepared.
const CHUNK_ROWS: usize = 128;

/// Runs `each` over `items` cut into chunks of [`chunk_rows`] sizes.
pub(super) fn for_chunks<T>(
    items: &[T],
    mut each: impl FnMut(&[T]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut rest = items;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(chunk_rows(rest.len()));
        each(chunk)?;
        rest = after;
    }
    Ok(())
}

/// `count` numbered placeholders from `$first` on, for an `IN (...)` list.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    let numbers: Vec<String> = (first..first + count)
        .map(|number| format!("${number}"))
        .collect();
    numbers.join(", ")
}

/// The largest power of two at most `remaining` and [`CHUNK_ROWS`].
fn chunk_rows(remaining: usize) -> usize {
    let mut rows = CHUNK_ROWS;
    while rows > remaining {
        rows /= 2;
    }
    rows.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_accessors_explain_mismatches() {
        let row: Row = vec![Value::Int(7), Value::Null, Value::Text("x".into())];
        assert_eq!(int(&row, 0).unwrap(), 7);
        assert_eq!(opt_int(&row, 1).unwrap(), None);
        assert_eq!(opt_text(&row, 1).unwrap(), None);
        assert_eq!(text(&row, 2).unwrap(), "x");
        assert_eq!(
            format!("{:#}", int(&row, 2).unwrap_err()),
            "column 2: expected an integer, found text"
        );
        assert_eq!(
            format!("{:#}", text(&row, 5).unwrap_err()),
            "column 5: expected text, found no such column"
        );
        assert_eq!(
            format!("{:#}", int(&row, 1).unwrap_err()),
            "column 1: expected an integer, found null"
        );
    }

    #[test]
    fn statements_are_cut_into_powers_of_two() {
        assert_eq!(chunk_rows(1), 1);
        assert_eq!(chunk_rows(10), 8);
        assert_eq!(chunk_rows(2), 2);
        assert_eq!(chunk_rows(127), 64);
        assert_eq!(chunk_rows(1000), CHUNK_ROWS);
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }

    #[test]
    fn single_wants_exactly_one_row() {
        assert!(single(vec![], "x").is_err());
        assert!(single(vec![vec![], vec![]], "x").is_err());
        assert!(single(vec![vec![Value::Int(1)]], "x").is_ok());
    }
}
