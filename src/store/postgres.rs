//! The PostgreSQL backend: the synchronous `postgres` crate behind an r2d2
//! pool, driven from blocking threads (never from an async task: the driver
//! runs its own runtime). Each pooled connection keeps its prepared
//! statements, so a statement text is parsed once per connection, not once
//! per call. Converts [`Value`] to and from PostgreSQL's types and turns
//! driver errors into anyhow errors that say what was being done. This file
//! knows nothing of the domain.
//!
//! The password is given separately from the URL and never logged. TLS
//! follows the URL's `sslmode` and certificate parameters (see
//! `postgres_tls.rs`); one connector is built per backend and used by every
//! connection, pooled or not.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::postgres_tls;
use super::{one_line, Backend, Conn, Dialect, Row, Value};
use crate::config::postgres_url::{redact_url, split_url};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection; past this the cache starts over
/// (statement texts are a fixed set, so this only guards against a caller
/// that builds texts from data).
const STATEMENT_CACHE: usize = 256;

/// Makes pooled connections for r2d2.
struct Manager {
    config: postgres::Config,
    tls: MakeRustlsConnect,
}

/// A pooled connection and the statements prepared on it.
struct PooledClient {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PooledClient, postgres::Error> {
        let client = self.config.connect(self.tls.clone())?;
        Ok(PooledClient {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, connection: &mut PooledClient) -> Result<(), postgres::Error> {
        connection.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, connection: &mut PooledClient) -> bool {
        connection.client.is_closed()
    }
}

/// A pool of connections to one PostgreSQL database.
pub struct PostgresBackend {
    /// The URL without secrets, for messages.
    name: String,
    pool: r2d2::Pool<Manager>,
    /// For connections outside the pool (advisory locks).
    config: postgres::Config,
    tls: MakeRustlsConnect,
    /// Every transaction is `READ ONLY` (the read-only commands).
    read_only: bool,
}

/// Marks an error in the connection settings themselves (the URL, its TLS
/// parameters, the certificate files): trying again cannot help, so
/// start-up gives up at once instead of waiting for the database.
#[derive(Debug)]
pub struct SettingsError(String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl PostgresBackend {
    /// Reads the URL's TLS parameters and certificate files (an error there
    /// carries [`SettingsError`]), connects once to check that the server
    /// answers (so the caller sees the real cause when it does not), then
    /// builds the pool.
    pub fn connect(
        url: &str,
        password: Option<&str>,
        pool_size: u32,
    ) -> anyhow::Result<PostgresBackend> {
        let name = redact_url(url);
        let settings_error =
            |error: anyhow::Error| error.context(SettingsError(format!("database url {name}")));
        let (driver_url, tls_options) = split_url(url).map_err(settings_error)?;
        let mut config = postgres::Config::from_str(&driver_url)
            .map_err(|error| settings_error(error.into()))?;
        config.ssl_mode(tls_options.driver_mode());
        let tls = tls_options.connector().map_err(settings_error)?;
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("regkeeper");
        }
        let mut client = config
            .connect(tls.clone())
            .map_err(|error| driver_error(error, &format!("connecting to {name}")))?;
        client
            .simple_query("SELECT 1")
            .map_err(|error| driver_error(error, &format!("querying {name}")))?;
        drop(client);
        log::debug!(
            "database {name}: connected with sslmode {}",
            tls_options.mode.name()
        );
        let manager = Manager {
            config: config.clone(),
            tls: tls.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT * 3)
            // A broken connection is noticed by the driver (`is_closed`) and
            // dropped; checking every checkout would double the round trips.
            .test_on_check_out(false)
            .build_unchecked(manager);
        Ok(PostgresBackend {
            name,
            pool,
            config,
            tls,
            read_only: false,
        })
    }

    /// The same backend with every transaction `READ ONLY`: the server
    /// refuses any write (the read-only commands).
    pub fn read_only(mut self) -> PostgresBackend {
        self.read_only = true;
        self
    }
}

impl Backend for PostgresBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn try_advisory_lock(&self, key: i64) -> anyhow::Result<Option<super::AdvisoryLock>> {
        // A dedicated connection, not a pooled one: a session lock lives as
        // long as its connection, and a pooled connection would go back to
        // the pool still holding it.
        let mut client = self.config.connect(self.tls.clone()).map_err(|error| {
            driver_error(
                error,
                &format!("connecting to {} for an advisory lock", self.name),
            )
        })?;
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .and_then(|row| row.try_get(0))
            .map_err(|error| driver_error(error, &format!("taking advisory lock {key}")))?;
        if !taken {
            return Ok(None);
        }
        Ok(Some(super::AdvisoryLock::held_by(Box::new(HeldLock {
            client,
            key,
        }))))
    }

    fn transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut pooled = self.pool.get().map_err(|error| {
            anyhow::anyhow!(
                "taking a connection to {} from the pool: {error}",
                self.name
            )
        })?;
        let PooledClient { client, statements } = &mut *pooled;
        let transaction = client
            .build_transaction()
            .read_only(self.read_only)
            .start()
            .map_err(|error| {
                driver_error(error, &format!("beginning a transaction on {}", self.name))
            })?;
        let mut conn = PostgresConn {
            transaction,
            statements,
        };
        let result = work(&mut conn).and_then(|()| {
            conn.transaction.commit().map_err(|error| {
                driver_error(error, &format!("committing a transaction on {}", self.name))
            })
        });
        if result.is_err() {
            // Prepared statements outlive a rollback, but a failure may
            // come from one gone stale (say, after a schema change): start
            // over rather than keep a bad one.
            conn.statements.clear();
        }
        result
    }
}

/// A session-level advisory lock and the dedicated connection holding it.
struct HeldLock {
    client: postgres::Client,
    key: i64,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Closing the connection would release the lock too; unlocking
        // first releases it at once even if the close lingers.
        if let Err(error) = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
        {
            log::warn!("releasing advisory lock {}: {error}", self.key);
        }
    }
}

/// A connection inside a transaction.
struct PostgresConn<'a> {
    transaction: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl PostgresConn<'_> {
    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&mut self, sql: &str) -> anyhow::Result<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .transaction
            .prepare(sql)
            .map_err(|error| driver_error(error, &format!("preparing `{}`", one_line(sql))))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl Conn for PostgresConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let statement = self.statement(sql)?;
        self.transaction
            .execute(&statement, &bind(params))
            .map_err(|error| driver_error(error, &format!("running `{}`", one_line(sql))))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let rows = self
            .transaction
            .query(&statement, &bind(params))
            .map_err(|error| driver_error(error, &format!("running `{}`", one_line(sql))))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|index| {
                        column_value(row, index)
                            .with_context(|| format!("reading `{}`", one_line(sql)))
                    })
                    .collect()
            })
            .collect()
    }

    fn execute_batch(&mut self, sql: &str) -> anyhow::Result<()> {
        self.transaction
            .batch_execute(sql)
            .map_err(|error| driver_error(error, "running a batch of statements"))
    }
}

/// Parameters as the driver takes them.
fn bind(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

/// Reads one column as a [`Value`].
fn column_value(row: &postgres::Row, index: usize) -> anyhow::Result<Value> {
    let column_type = row.columns()[index].type_().clone();
    let name = row.columns()[index].name().to_string();
    let read =
        |error: postgres::Error| anyhow::anyhow!("reading column {name} ({column_type}): {error}");
    Ok(match column_type {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map_err(read)?
            .map_or(Value::Null, Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(read)?
            .map_or(Value::Null, |number| Value::Int(number.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map_err(read)?
            .map_or(Value::Null, |number| Value::Int(number.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(read)?
            .map_or(Value::Null, |flag| Value::Int(flag.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(index)
            .map_err(read)?
            .map_or(Value::Null, Value::Text),
        Type::VOID => Value::Null,
        other => anyhow::bail!("column {name} has unsupported type {other}"),
    })
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(number) => match *ty {
                Type::INT8 => number.to_sql(ty, out),
                Type::INT4 => i32::try_from(*number)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*number)?.to_sql(ty, out),
                Type::BOOL => (*number != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    number.to_string().as_str().to_sql(ty, out)
                }
                ref other => Err(format!("cannot bind an integer to a {other} parameter").into()),
            },
            Value::Text(text) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    text.as_str().to_sql(ty, out)
                }
                ref other => Err(format!("cannot bind text to a {other} parameter").into()),
            },
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Checked per value in `to_sql`, where the variant is known.
        true
    }

    postgres::types::to_sql_checked!();
}

/// Turns a driver error into an anyhow error naming what was being done,
/// with the server's message, detail and hint when there are any, else the
/// driver's message and its causes (the driver's own message leaves them
/// out: "error performing TLS handshake" alone), and what a refused server
/// certificate means.
fn driver_error(error: postgres::Error, doing: &str) -> anyhow::Error {
    if let Some(db) = error.as_db_error() {
        let mut message = format!("{doing}: {} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return anyhow::anyhow!(message);
    }
    let mut message = format!("{doing}: {error}");
    let mut cause = StdError::source(&error);
    while let Some(current) = cause {
        message.push_str(&format!(": {current}"));
        cause = current.source();
    }
    if let Some(hint) = postgres_tls::handshake_hint(&error) {
        message.push_str(&format!(" ({hint})"));
    }
    anyhow::anyhow!(message)
}
