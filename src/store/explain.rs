//! Test builds only: SQLite's query plan of a statement on a freshly
//! migrated throwaway database, so that the tests beside the SQL can hold a
//! statement to the indexes it must use. Goes through `sqlite.rs` and
//! `migrations.rs` directly, not through `sql.rs`; nothing outside the
//! store's unit tests uses it.

use super::rows::text;
use super::sqlite::SqliteBackend;
use super::{migrations, Backend, Value};

/// SQLite's plan of `sql` with `params`, one step per line.
pub(super) fn sqlite_plan(sql: &str, params: &[Value]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("plan.db")).unwrap();
    backend
        .transaction(&mut |conn| migrations::apply(conn, crate::time::now_ms()).map(|_| ()))
        .unwrap();
    let mut steps = Vec::new();
    backend
        .transaction(&mut |conn| {
            let plan = conn.query(&format!("EXPLAIN QUERY PLAN {sql}"), params)?;
            steps = plan
                .iter()
                .map(|row| text(row, 3))
                .collect::<anyhow::Result<Vec<String>>>()?;
            Ok(())
        })
        .unwrap();
    steps.join("\n")
}
