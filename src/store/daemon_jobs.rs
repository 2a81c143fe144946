//! The `daemon_jobs` rows in SQL: the job set the last daemon to start
//! runs (names, handlers, schedules, enabled), replaced as a whole at its
//! start-up, and the jobs of it that finished for good. Every function
//! works inside the caller's transaction. Built on `rows.rs` only.

use super::rows::{int, opt_int, opt_text, text, txt};
use super::{Conn, DaemonJob, DaemonJobSet, Value};

/// Replaces the recorded job set with `set`: [`super::Store::record_daemon_jobs`].
pub fn record(conn: &mut dyn Conn, set: &DaemonJobSet) -> anyhow::Result<()> {
    conn.execute("DELETE FROM daemon_jobs", &[])?;
    for (position, job) in set.jobs.iter().enumerate() {
        conn.execute(
            "INSERT INTO daemon_jobs (job, position, handler, schedule, timezone, enabled, claimant, config, started_at, finished_at, finished_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                txt(&job.name),
                Value::Int(i64::try_from(position).unwrap_or(i64::MAX)),
                txt(&job.handler),
                txt(&job.schedule),
                txt(&job.timezone),
                Value::Int(job.enabled.into()),
                txt(&set.claimant),
                txt(&set.config),
                Value::Int(set.started_at),
                job.finished_at.map_or(Value::Null, Value::Int),
                job.finished_reason.as_deref().map_or(Value::Null, txt),
            ],
        )?;
    }
    Ok(())
}

/// The recorded job set, None when no daemon recorded one:
/// [`super::Store::daemon_jobs`].
pub fn read(conn: &mut dyn Conn) -> anyhow::Result<Option<DaemonJobSet>> {
    let rows = conn.query(
        "SELECT job, handler, schedule, timezone, enabled, claimant, config, started_at, finished_at, finished_reason \
         FROM daemon_jobs ORDER BY position",
        &[],
    )?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut set = DaemonJobSet {
        claimant: text(first, 5)?,
        config: text(first, 6)?,
        started_at: int(first, 7)?,
        jobs: Vec::new(),
    };
    for row in &rows {
        set.jobs.push(DaemonJob {
            name: text(row, 0)?,
            handler: text(row, 1)?,
            schedule: text(row, 2)?,
            timezone: text(row, 3)?,
            enabled: int(row, 4)? != 0,
            finished_at: opt_int(row, 8)?,
            finished_reason: opt_text(row, 9)?,
        });
    }
    Ok(Some(set))
}

/// Marks `job` of the set `claimant` recorded finished for good:
/// [`super::Store::finish_daemon_job`].
pub fn finish(
    conn: &mut dyn Conn,
    claimant: &str,
    job: &str,
    reason: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let changed = conn.execute(
        "UPDATE daemon_jobs SET finished_at = $1, finished_reason = $2 WHERE job = $3 AND claimant = $4",
        &[Value::Int(now), txt(reason), txt(job), txt(claimant)],
    )?;
    Ok(changed == 1)
}
