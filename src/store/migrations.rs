//! The append-only list of schema migrations and the code that applies them.
//! Entry 1 is the whole schema (`schema.sql` / `schema.postgres.sql`); later
//! entries are appended, never edited once released. Applying runs in one
//! transaction, records each version in `schema_migrations`, and skips what
//! is already there, so it is safe at every start-up and from two processes
//! at once (SQLite's write lock, PostgreSQL's advisory lock).

use super::{Conn, Dialect, Value};

/// One schema change, written once per dialect.
pub struct Migration {
    /// Increasing version number, recorded in `schema_migrations`.
    pub version: i64,
    /// What it does, for logs.
    pub description: &'static str,
    /// The SQLite statements.
    pub sqlite: &'static str,
    /// The PostgreSQL statements.
    pub postgres: &'static str,
}

/// Every migration, oldest first. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sqlite: include_str!("../../schema.sql"),
        postgres: include_str!("../../schema.postgres.sql"),
    },
    Migration {
        version: 2,
        description: "indexes of the events that block a claim",
        sqlite: BLOCKING_EVENT_INDEXES,
        postgres: BLOCKING_EVENT_INDEXES,
    },
    Migration {
        version: 3,
        description: "claimant, heartbeat and expiry of job runs",
        sqlite: RUN_HEARTBEATS_SQLITE,
        postgres: RUN_HEARTBEATS_POSTGRES,
    },
    Migration {
        version: 4,
        description: "scan reports per digest and scanner",
        sqlite: SCAN_REPORTS_SQLITE,
        postgres: SCAN_REPORTS_POSTGRES,
    },
    Migration {
        version: 5,
        description: "the job set a daemon runs",
        sqlite: DAEMON_JOBS_SQLITE,
        postgres: DAEMON_JOBS_POSTGRES,
    },
    Migration {
        version: 6,
        description: "the audit of gc deletions",
        sqlite: GC_DELETIONS_SQLITE,
        postgres: GC_DELETIONS_POSTGRES,
    },
];

/// Migration 6 (SQLite): every tag a `gc` pass deleted, or would have
/// deleted on a dry run (`dry_run` 1), with the policy that selected its
/// repository and why no rule kept it. Append only: nothing updates or
/// deletes these rows.
const GC_DELETIONS_SQLITE: &str = "
CREATE TABLE gc_deletions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    policy     TEXT NOT NULL,
    rule       TEXT NOT NULL,
    run_id     INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL,
    dry_run    INTEGER NOT NULL
);
CREATE INDEX gc_deletions_deleted_at ON gc_deletions (deleted_at);
";

/// Migration 6 (PostgreSQL): as [`GC_DELETIONS_SQLITE`].
const GC_DELETIONS_POSTGRES: &str = "
CREATE TABLE gc_deletions (
    id         BIGSERIAL PRIMARY KEY,
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    policy     TEXT NOT NULL,
    rule       TEXT NOT NULL,
    run_id     BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL,
    dry_run    BIGINT NOT NULL
);
CREATE INDEX gc_deletions_deleted_at ON gc_deletions (deleted_at);
";

/// Migration 5 (SQLite): the jobs the last daemon to start runs, as it
/// read them (`status` shows these, not the file on disk, and says when
/// the file differs). Replaced as a whole at each daemon's start-up; a job
/// that finished for good (sync `initial`, `on-start`) gets `finished_at`
/// and the reason.
const DAEMON_JOBS_SQLITE: &str = "
CREATE TABLE daemon_jobs (
    job             TEXT NOT NULL PRIMARY KEY,
    position        INTEGER NOT NULL,
    handler         TEXT NOT NULL,
    schedule        TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    claimant        TEXT NOT NULL,
    config          TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    finished_reason TEXT
);
";

/// Migration 5 (PostgreSQL): as [`DAEMON_JOBS_SQLITE`].
const DAEMON_JOBS_POSTGRES: &str = "
CREATE TABLE daemon_jobs (
    job             TEXT NOT NULL PRIMARY KEY,
    position        BIGINT NOT NULL,
    handler         TEXT NOT NULL,
    schedule        TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    enabled         BIGINT NOT NULL,
    claimant        TEXT NOT NULL,
    config          TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    finished_reason TEXT
);
";

/// Migration 2, the same in both dialects. The claim asks, per candidate
/// event, whether an earlier event of its repository is waiting for a
/// retry or claimed under a live lease; these indexes answer that from the
/// few such events instead of walking every pending event of the
/// repository (which made claiming a backlog quadratic per repository).
const BLOCKING_EVENT_INDEXES: &str = "
-- Fresh events waiting for a retry, by repository and retry time (a new
-- event has no retry time, so the intake does not write this index).
CREATE INDEX registry_events_waiting ON registry_events (repository, not_before) WHERE status = 2 AND not_before IS NOT NULL;
-- Claimed events by repository and claim time: live claims block.
CREATE INDEX registry_events_claimed ON registry_events (repository, claimed_at) WHERE status = 1;
";

/// Migration 3 (SQLite). Who runs a run and its last sign of life, so
/// that a run left unfinished by a process that died is noticed once its
/// expiry passes (`store::runs`). Rows from before have NULL in all three.
/// The partial index holds only unfinished runs: the few rows that the
/// check before every run reads.
const RUN_HEARTBEATS_SQLITE: &str = "
ALTER TABLE job_runs ADD COLUMN claimant TEXT;
ALTER TABLE job_runs ADD COLUMN heartbeat_at INTEGER;
ALTER TABLE job_runs ADD COLUMN expires_at INTEGER;
CREATE INDEX job_runs_unfinished ON job_runs (job, expires_at) WHERE finished_at IS NULL;
";

/// Migration 3 (PostgreSQL): as [`RUN_HEARTBEATS_SQLITE`].
const RUN_HEARTBEATS_POSTGRES: &str = "
ALTER TABLE job_runs ADD COLUMN claimant TEXT;
ALTER TABLE job_runs ADD COLUMN heartbeat_at BIGINT;
ALTER TABLE job_runs ADD COLUMN expires_at BIGINT;
CREATE INDEX job_runs_unfinished ON job_runs (job, expires_at) WHERE finished_at IS NULL;
";

/// Migration 4 for SQLite: one row per (manifest digest, scanner) saying
/// when that scanner's report was taken and how its latest attempts went,
/// so one failing scanner no longer throws away the others' results. A 0.1
/// database gets a row for every scanner that has results for a digest,
/// taken when the digest's tags were last scanned; a scanner that found
/// nothing there has no row and is asked at the digest's next scan.
const SCAN_REPORTS_SQLITE: &str = "
-- scanned_at: when the stored report was taken (NULL: never); attempts,
-- last_error, not_before: failures since then (last_error NULL: the latest
-- attempt succeeded); failed: 1 once attempts reached max_attempts.
CREATE TABLE scan_reports (
    digest       TEXT NOT NULL,
    scanner      TEXT NOT NULL,
    scanned_at   INTEGER,
    attempted_at INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    not_before   INTEGER,
    failed       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (digest, scanner)
);
INSERT INTO scan_reports (digest, scanner, scanned_at, attempted_at)
SELECT s.digest, s.scanner, COALESCE(MAX(t.scanned_at), MAX(s.created_at)), COALESCE(MAX(t.scanned_at), MAX(s.created_at))
FROM scan_results s LEFT JOIN tags t ON t.digest = s.digest GROUP BY s.digest, s.scanner;
CREATE INDEX scan_results_digest_scanner ON scan_results (digest, scanner);
";

/// Migration 4 for PostgreSQL; see [`SCAN_REPORTS_SQLITE`].
const SCAN_REPORTS_POSTGRES: &str = "
-- scanned_at: when the stored report was taken (NULL: never); attempts,
-- last_error, not_before: failures since then (last_error NULL: the latest
-- attempt succeeded); failed: 1 once attempts reached max_attempts.
CREATE TABLE scan_reports (
    digest       TEXT NOT NULL,
    scanner      TEXT NOT NULL,
    scanned_at   BIGINT,
    attempted_at BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT,
    not_before   BIGINT,
    failed       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (digest, scanner)
);
INSERT INTO scan_reports (digest, scanner, scanned_at, attempted_at)
SELECT s.digest, s.scanner, COALESCE(MAX(t.scanned_at), MAX(s.created_at)), COALESCE(MAX(t.scanned_at), MAX(s.created_at))
FROM scan_results s LEFT JOIN tags t ON t.digest = s.digest GROUP BY s.digest, s.scanner;
CREATE INDEX scan_results_digest_scanner ON scan_results (digest, scanner);
";

/// Key of the PostgreSQL advisory lock that serialises migrations of
/// daemons starting together ("regkeep" in ASCII).
const ADVISORY_LOCK_KEY: i64 = 0x0072_6567_6b65_6570;

/// What the database's schema is, compared with the migrations this
/// version knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Every known migration is applied.
    Current,
    /// These known migrations are not applied (all of them for a database
    /// regkeeper never migrated).
    Pending(Vec<i64>),
    /// A newer regkeeper migrated it to this version.
    Newer(i64),
}

/// Reads which migrations `conn` has, without changing anything.
pub fn state(conn: &mut dyn Conn) -> anyhow::Result<SchemaState> {
    // The bookkeeping table exists once any regkeeper migrated the database.
    let exists_sql = match conn.dialect() {
        Dialect::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        }
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        }
    };
    let exists = conn
        .query(exists_sql, &[])?
        .first()
        .map(|row| super::rows::int(row, 0))
        .transpose()?
        .unwrap_or(0)
        > 0;
    let mut applied = Vec::new();
    if exists {
        for row in conn.query("SELECT version FROM schema_migrations", &[])? {
            applied.push(super::rows::int(&row, 0)?);
        }
    }
    Ok(state_of(&applied))
}

/// The state of a schema with the migrations `applied`.
fn state_of(applied: &[i64]) -> SchemaState {
    let newest_known = MIGRATIONS.last().map_or(0, |migration| migration.version);
    if let Some(newest) = applied
        .iter()
        .copied()
        .max()
        .filter(|newest| *newest > newest_known)
    {
        return SchemaState::Newer(newest);
    }
    let pending: Vec<i64> = MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .filter(|version| !applied.contains(version))
        .collect();
    if pending.is_empty() {
        SchemaState::Current
    } else {
        SchemaState::Pending(pending)
    }
}

/// Applies the migrations `conn` does not have yet, inside the caller's
/// transaction, and returns the versions it applied.
pub fn apply(conn: &mut dyn Conn, now: i64) -> anyhow::Result<Vec<i64>> {
    let dialect = conn.dialect();
    let bookkeeping = match dialect {
        Dialect::Sqlite => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        }
        Dialect::Postgres => {
            conn.query("SELECT pg_advisory_xact_lock($1)", &[Value::Int(ADVISORY_LOCK_KEY)])?;
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        }
    };
    conn.execute_batch(bookkeeping)?;
    let mut applied_before = Vec::new();
    for row in conn.query("SELECT version FROM schema_migrations", &[])? {
        applied_before.push(super::rows::int(&row, 0)?);
    }
    let newest_known = MIGRATIONS.last().map_or(0, |migration| migration.version);
    if let Some(newest) = applied_before
        .iter()
        .copied()
        .max()
        .filter(|newest| *newest > newest_known)
    {
        anyhow::bail!(
            "the database schema is at version {newest}, newer than this regkeeper knows ({newest_known}); \
             upgrade regkeeper"
        );
    }
    let mut applied_now = Vec::new();
    for migration in MIGRATIONS {
        if applied_before.contains(&migration.version) {
            continue;
        }
        let statements = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        conn.execute_batch(statements).map_err(|error| {
            error.context(format!(
                "applying migration {} ({})",
                migration.version, migration.description
            ))
        })?;
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[Value::Int(migration.version), Value::Int(now)],
        )?;
        applied_now.push(migration.version);
    }
    Ok(applied_now)
}

/// Checks, without writing, that the schema is the one this version
/// knows: every migration applied and none newer (the read-only commands,
/// which never migrate).
pub fn check_current(conn: &mut dyn Conn) -> anyhow::Result<()> {
    let has_table = match conn.dialect() {
        Dialect::Sqlite => conn.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            &[],
        )?,
        Dialect::Postgres => conn.query(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'schema_migrations' AND schemaname = ANY (current_schemas(false))",
            &[],
        )?,
    };
    let newest_known = MIGRATIONS.last().map_or(0, |migration| migration.version);
    anyhow::ensure!(
        !has_table.is_empty(),
        "the database has no regkeeper schema (the daemon or `regkeeper --once JOB` creates it)"
    );
    let mut applied = Vec::new();
    for row in conn.query("SELECT version FROM schema_migrations", &[])? {
        applied.push(super::rows::int(&row, 0)?);
    }
    let newest = applied.iter().copied().max().unwrap_or(0);
    anyhow::ensure!(
        newest <= newest_known,
        "the database schema is at version {newest}, newer than this regkeeper knows ({newest_known}); upgrade regkeeper"
    );
    let missing: Vec<i64> = MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .filter(|version| !applied.contains(version))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the database schema lacks migrations {missing:?} (the daemon or `regkeeper --once JOB` applies them)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_state_names_pending_and_newer_versions() {
        let all: Vec<i64> = MIGRATIONS
            .iter()
            .map(|migration| migration.version)
            .collect();
        assert_eq!(state_of(&all), SchemaState::Current);
        assert_eq!(state_of(&[]), SchemaState::Pending(all.clone()));
        assert_eq!(state_of(&all[..1]), SchemaState::Pending(all[1..].to_vec()));
        let newer = all.last().copied().unwrap_or(0) + 1;
        let mut ahead = all.clone();
        ahead.push(newer);
        assert_eq!(state_of(&ahead), SchemaState::Newer(newer));
    }

    #[test]
    fn versions_increase() {
        let versions: Vec<i64> = MIGRATIONS
            .iter()
            .map(|migration| migration.version)
            .collect();
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "{versions:?}"
        );
        assert_eq!(versions.first(), Some(&1));
    }

    /// The two schema files differ only in integer types: any other drift
    /// (a column added to one file only) fails here.
    #[test]
    fn both_dialects_declare_the_same_schema() {
        for migration in MIGRATIONS {
            let sqlite = statements(migration.sqlite);
            let postgres = statements(
                &migration
                    .postgres
                    .replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
                    .replace("BIGINT", "INTEGER"),
            );
            assert_eq!(
                sqlite, postgres,
                "migration {} differs between dialects",
                migration.version
            );
        }
    }

    /// The statements without comments and blank lines.
    fn statements(sql: &str) -> Vec<String> {
        sql.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("--"))
            .map(str::to_string)
            .collect()
    }
}
