//! The SQLite backend (rusqlite, bundled): WAL, a busy timeout, foreign keys
//! on, `synchronous=NORMAL`, and every transaction started with
//! `BEGIN IMMEDIATE` so that two processes on one file (the daemon and a
//! `regkeeper --once`) queue for the write lock instead of failing with
//! "database is locked" halfway through a transaction.
//!
//! SQL arrives written for PostgreSQL (`$1` placeholders); it is rewritten
//! once per statement text to SQLite's `?1` and the result cached, and
//! statements are prepared through rusqlite's statement cache. This file
//! knows nothing of the domain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{one_line, Backend, Conn, Dialect, Row, Value};

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// One SQLite database file behind one connection. Transactions of this
/// process take turns on the mutex; other processes wait on SQLite's lock.
pub struct SqliteBackend {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Opened read-only: transactions are deferred (they take no write
    /// lock) and SQLite refuses any write.
    read_only: bool,
}

struct Inner {
    connection: Connection,
    /// `$N` statement text -> `?N` statement text.
    rewritten: HashMap<String, String>,
}

impl SqliteBackend {
    /// Opens (creating when missing) the database file and sets it up. A
    /// new file, and the WAL and shared-memory files beside it, are
    /// readable by the owner only (0600): the database holds the registry's
    /// contents and its event history.
    pub fn open(path: &Path) -> anyhow::Result<SqliteBackend> {
        if path != Path::new(":memory:") {
            create_owner_only(path)
                .with_context(|| format!("opening sqlite database {}", path.display()))?;
        }
        let connection = Connection::open(path)
            .with_context(|| format!("opening sqlite database {}", path.display()))?;
        busy_timeout(&connection, path)?;
        // journal_mode answers with a row, so it is read rather than executed.
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .with_context(|| format!("switching {} to WAL", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(
                "sqlite database {} stays in journal mode {mode}",
                path.display()
            );
        }
        connection
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .with_context(|| format!("setting pragmas of {}", path.display()))?;
        SqliteBackend::ready(path, connection, false)
    }

    /// Opens an existing database file read-only: no file is created, no
    /// pragma is changed, and SQLite refuses any write. A missing file is
    /// an error that says so.
    pub fn open_read_only(path: &Path) -> anyhow::Result<SqliteBackend> {
        if !path.is_file() {
            anyhow::bail!(
                "sqlite database {} does not exist (the daemon or `regkeeper --once JOB` creates it)",
                path.display()
            );
        }
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening sqlite database {} read-only", path.display()))?;
        busy_timeout(&connection, path)?;
        SqliteBackend::ready(path, connection, true)
    }

    /// What every connection gets last, read-write or not: stable query
    /// plans and the statement cache.
    fn ready(
        path: &Path,
        connection: Connection,
        read_only: bool,
    ) -> anyhow::Result<SqliteBackend> {
        // Without the query planner stability guarantee SQLite re-prepares a
        // cached statement whenever a new value is bound to a parameter the
        // planner looked at (the tag lookup of every applied event was
        // re-parsed each time: 40% of applying an event). Our plans never
        // depend on the bound values.
        connection
            .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .with_context(|| format!("fixing the query plans of {}", path.display()))?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteBackend {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                connection,
                rewritten: HashMap::new(),
            }),
            read_only,
        })
    }
}

/// Waits up to [`BUSY_TIMEOUT`] for another connection's lock.
fn busy_timeout(connection: &Connection, path: &Path) -> anyhow::Result<()> {
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .with_context(|| format!("setting the busy timeout of {}", path.display()))
}

impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn try_advisory_lock(&self, _key: i64) -> anyhow::Result<Option<super::AdvisoryLock>> {
        // Writers to one SQLite file are serialised by its write lock
        // (`BEGIN IMMEDIATE`); there is nothing more to hold.
        Ok(Some(super::AdvisoryLock::none()))
    }

    fn transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        // A panic inside an earlier transaction rolled it back when the
        // transaction was dropped, so the connection is still usable.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Inner {
            connection,
            rewritten,
        } = &mut *inner;
        let transaction = connection
            .transaction_with_behavior(if self.read_only {
                TransactionBehavior::Deferred
            } else {
                TransactionBehavior::Immediate
            })
            .with_context(|| format!("beginning a transaction on {}", self.path.display()))?;
        let mut conn = SqliteConn {
            transaction: &transaction,
            rewritten,
        };
        work(&mut conn)?;
        transaction
            .commit()
            .with_context(|| format!("committing a transaction on {}", self.path.display()))
    }
}

/// Creates the database file, when missing, readable and writable by the
/// owner only (0600). SQLite gives the WAL and shared-memory files it
/// creates later the mode of the database file, so they are 0600 too. An
/// empty file is an empty database.
fn create_owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}

/// A connection inside a transaction.
struct SqliteConn<'a> {
    transaction: &'a Connection,
    rewritten: &'a mut HashMap<String, String>,
}

impl SqliteConn<'_> {
    fn statement(&mut self, sql: &str) -> anyhow::Result<rusqlite::CachedStatement<'_>> {
        if !self.rewritten.contains_key(sql) {
            self.rewritten
                .insert(sql.to_string(), rewrite_placeholders(sql));
        }
        let text = self.rewritten.get(sql).map(String::as_str).unwrap_or(sql);
        self.transaction
            .prepare_cached(text)
            .with_context(|| format!("preparing `{}`", one_line(sql)))
    }
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let mut statement = self.statement(sql)?;
        let changed = statement
            .execute(rusqlite::params_from_iter(params.iter()))
            .with_context(|| format!("running `{}`", one_line(sql)))?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        let mut statement = self.statement(sql)?;
        let columns = statement.column_count();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params.iter()))
            .with_context(|| format!("running `{}`", one_line(sql)))?;
        let mut result = Vec::new();
        while let Some(row) = rows
            .next()
            .with_context(|| format!("reading rows of `{}`", one_line(sql)))?
        {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                let value = match row.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(number) => Value::Int(number),
                    ValueRef::Text(bytes) => {
                        Value::Text(String::from_utf8(bytes.to_vec()).with_context(|| {
                            format!("column {index} of `{}` is not UTF-8", one_line(sql))
                        })?)
                    }
                    ValueRef::Real(number) => {
                        anyhow::bail!(
                            "column {index} of `{}` is a float ({number})",
                            one_line(sql)
                        )
                    }
                    ValueRef::Blob(_) => {
                        anyhow::bail!("column {index} of `{}` is a blob", one_line(sql))
                    }
                };
                values.push(value);
            }
            result.push(values);
        }
        Ok(result)
    }

    fn execute_batch(&mut self, sql: &str) -> anyhow::Result<()> {
        self.transaction
            .execute_batch(sql)
            .context("running a batch of statements")
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(number) => ToSqlOutput::Borrowed(ValueRef::Integer(*number)),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

/// Rewrites PostgreSQL's `$N` placeholders to SQLite's `?N`, leaving quoted
/// text and identifiers alone. (SQLite would read `$1` as a *named*
/// parameter numbered by first appearance, which breaks `$2 ... $1`.)
pub fn rewrite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(open) => {
                out.push(c);
                if c == open {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('?'),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_numbered_placeholders() {
        assert_eq!(
            rewrite_placeholders("SELECT a FROM t WHERE b = $2 AND c = $1 OR d = $10"),
            "SELECT a FROM t WHERE b = ?2 AND c = ?1 OR d = ?10"
        );
    }

    #[test]
    fn leaves_quoted_dollars_alone() {
        assert_eq!(
            rewrite_placeholders("SELECT '$1', \"$2\" FROM t WHERE x = $3 AND y = 'it''s $4'"),
            "SELECT '$1', \"$2\" FROM t WHERE x = ?3 AND y = 'it''s $4'"
        );
    }

    #[test]
    fn leaves_lone_dollars_alone() {
        assert_eq!(rewrite_placeholders("SELECT $ + $a"), "SELECT $ + $a");
    }
}
