//! The `job_runs` rows in SQL: recording a run's start and end, reading run
//! rows, pruning old runs, renewing a run's heartbeat, and recording runs
//! whose heartbeat expired as abandoned. Every function works inside the
//! caller's transaction; the [`super::Store`] methods in `sql.rs` open it.
//! Built on `rows.rs` only. Nothing here decides how often heartbeats come
//! or how long a run may stay silent: callers pass the times in.
//!
//! A run row carries its `claimant` (the process running it), its last
//! `heartbeat_at` and its own `expires_at`, written by the process that
//! runs it. Whoever notices a run past its expiry compares against the
//! row's expiry, not against its own settings, so processes configured
//! differently never cut each other's runs short. Rows written before
//! heartbeats existed (regkeeper 0.1) have no expiry: they expire a given
//! time after their start.

use std::collections::BTreeMap;

use anyhow::Context as _;

use super::rows::{count, int, opt_int, opt_text, single, text, txt};
use super::{Conn, NewRun, Row, RunOutcome, RunRecord, Value};

/// The columns [`record`] reads, in its order.
pub const RECORD_COLUMNS: &str =
    "id, job, handler, trigger, started_at, finished_at, outcome, counts, error, claimant, heartbeat_at";

/// One row of [`RECORD_COLUMNS`] as a [`RunRecord`].
pub fn record(row: &Row) -> anyhow::Result<RunRecord> {
    let outcome = match opt_text(row, 6)? {
        None => None,
        Some(word) => Some(
            RunOutcome::from_word(&word)
                .with_context(|| format!("unknown run outcome {word:?}"))?,
        ),
    };
    let counts_json = text(row, 7)?;
    let counts: BTreeMap<String, i64> = serde_json::from_str(&counts_json)
        .with_context(|| format!("decoding run counts {counts_json:?}"))?;
    Ok(RunRecord {
        id: int(row, 0)?,
        job: text(row, 1)?,
        handler: text(row, 2)?,
        trigger: text(row, 3)?,
        started_at: int(row, 4)?,
        finished_at: opt_int(row, 5)?,
        outcome,
        counts,
        error: opt_text(row, 8)?,
        claimant: opt_text(row, 9)?,
        heartbeat_at: opt_int(row, 10)?,
    })
}

/// Records the start of `run`; returns its id: [`super::Store::start_run`].
pub fn start(conn: &mut dyn Conn, run: &NewRun) -> anyhow::Result<i64> {
    let rows = conn.query(
        "INSERT INTO job_runs (job, handler, trigger, started_at, counts, claimant, heartbeat_at, expires_at) \
         VALUES ($1, $2, $3, $4, '{}', $5, $4, $6) RETURNING id",
        &[
            txt(&run.job),
            txt(&run.handler),
            txt(&run.trigger),
            Value::Int(run.started_at),
            txt(&run.claimant),
            Value::Int(run.expires_at),
        ],
    )?;
    int(&single(rows, "the new run")?, 0)
}

/// Records the end of run `run_id`, its counts already encoded as JSON:
/// [`super::Store::finish_run`].
pub fn finish(
    conn: &mut dyn Conn,
    run_id: i64,
    finished_at: i64,
    outcome: RunOutcome,
    counts_json: String,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let changed = conn.execute(
        "UPDATE job_runs SET finished_at = $2, outcome = $3, counts = $4, error = $5 WHERE id = $1",
        &[
            Value::Int(run_id),
            Value::Int(finished_at),
            txt(outcome.as_str()),
            Value::Text(counts_json),
            error.map_or(Value::Null, txt),
        ],
    )?;
    anyhow::ensure!(changed == 1, "no such run");
    Ok(())
}

/// Keeps the newest `keep` runs of `job` and deletes the rest:
/// [`super::Store::prune_runs`].
pub fn prune(conn: &mut dyn Conn, job: &str, keep: usize) -> anyhow::Result<u64> {
    conn.execute(
        "DELETE FROM job_runs WHERE job = $1 AND id NOT IN \
         (SELECT id FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2)",
        &[txt(job), count(keep)],
    )
}

/// [`super::Store::fold_idle_run`]: when the run before `run_id` ended ok
/// with nothing but zero counts, it is deleted and `run_id` counts it.
pub fn fold_idle(conn: &mut dyn Conn, job: &str, run_id: i64) -> anyhow::Result<bool> {
    let rows = conn.query(
        "SELECT id, outcome, counts FROM job_runs WHERE job = $1 AND id < $2 \
         ORDER BY id DESC LIMIT 1",
        &[txt(job), Value::Int(run_id)],
    )?;
    let Some(previous) = rows.first() else {
        return Ok(false);
    };
    let previous_id = int(previous, 0)?;
    let counts_of =
        |text: &str| -> BTreeMap<String, i64> { serde_json::from_str(text).unwrap_or_default() };
    let before = counts_of(&text(previous, 2)?);
    let idle = opt_text(previous, 1)?.as_deref() == Some(RunOutcome::Ok.as_str())
        && before
            .iter()
            .all(|(name, value)| *value == 0 || name == super::IDLE_RUNS);
    if !idle {
        return Ok(false);
    }
    let rows = conn.query(
        "SELECT counts FROM job_runs WHERE id = $1",
        &[Value::Int(run_id)],
    )?;
    let mut counts = counts_of(&text(&single(rows, "the idle run")?, 0)?);
    let folded = before.get(super::IDLE_RUNS).copied().unwrap_or(1).max(1)
        + counts.get(super::IDLE_RUNS).copied().unwrap_or(1).max(1);
    counts.insert(super::IDLE_RUNS.to_string(), folded);
    conn.execute(
        "UPDATE job_runs SET counts = $2 WHERE id = $1",
        &[
            Value::Int(run_id),
            Value::Text(serde_json::to_string(&counts)?),
        ],
    )?;
    conn.execute(
        "DELETE FROM job_runs WHERE id = $1",
        &[Value::Int(previous_id)],
    )?;
    Ok(true)
}

/// The newest `limit` runs of `job`, newest first: [`super::Store::recent_runs`].
pub fn recent(conn: &mut dyn Conn, job: &str, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
    let rows = conn.query(
        &format!("SELECT {RECORD_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2"),
        &[txt(job), count(limit)],
    )?;
    rows.iter().map(record).collect()
}

/// Renews run `run_id`'s heartbeat while it is unfinished; true when it was.
pub fn heartbeat(
    conn: &mut dyn Conn,
    run_id: i64,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<bool> {
    let changed = conn.execute(
        "UPDATE job_runs SET heartbeat_at = $2, expires_at = $3 WHERE id = $1 AND finished_at IS NULL",
        &[Value::Int(run_id), Value::Int(now), Value::Int(expires_at)],
    )?;
    Ok(changed == 1)
}

/// The condition of an expired run: unfinished, and past its own expiry,
/// or (a row without one) started more than the fallback ago. `$1` is now,
/// `$2` the latest start of a row without an expiry that has expired.
const EXPIRED: &str =
    "finished_at IS NULL AND (expires_at < $1 OR (expires_at IS NULL AND started_at < $2))";

/// The expired runs, of job `$3` when `of_one_job`. Reads the partial index
/// `job_runs_unfinished` (migration 3): only unfinished runs, however many
/// finished runs are kept.
fn candidates_sql(of_one_job: bool) -> String {
    let job = if of_one_job { " AND job = $3" } else { "" };
    format!("SELECT {RECORD_COLUMNS} FROM job_runs WHERE {EXPIRED}{job}")
}

/// Records the expired runs (of `job` when given) as abandoned; returns
/// those this call recorded. A run another process recorded first, or whose
/// heartbeat was renewed after it was read here, is skipped by the
/// conditional UPDATE: on PostgreSQL the UPDATE waits for the other
/// transaction and re-checks the condition on the row it committed.
pub fn abandon_expired(
    conn: &mut dyn Conn,
    job: Option<&str>,
    now: i64,
    abandon_after_ms: i64,
) -> anyhow::Result<Vec<RunRecord>> {
    let started_before = now.saturating_sub(abandon_after_ms);
    let candidates = match job {
        Some(job) => conn.query(
            &candidates_sql(true),
            &[
                Value::Int(now),
                Value::Int(started_before),
                Value::Text(job.to_string()),
            ],
        )?,
        None => conn.query(
            &candidates_sql(false),
            &[Value::Int(now), Value::Int(started_before)],
        )?,
    };
    let mut candidates = candidates
        .iter()
        .map(record)
        .collect::<anyhow::Result<Vec<RunRecord>>>()?;
    // Sorted here rather than in SQL, which would rather walk every run of
    // the job in id order than the few unfinished ones.
    candidates.sort_by_key(|run| run.id);
    let mut abandoned = Vec::new();
    for mut run in candidates {
        let finished_at = run.heartbeat_at.unwrap_or(run.started_at);
        let error = abandoned_text(&run);
        let changed = conn.execute(
            &format!(
                "UPDATE job_runs SET finished_at = $3, outcome = $4, error = $5 WHERE id = $6 AND {EXPIRED}"
            ),
            &[
                Value::Int(now),
                Value::Int(started_before),
                Value::Int(finished_at),
                Value::Text(RunOutcome::Abandoned.as_str().to_string()),
                Value::Text(error.clone()),
                Value::Int(run.id),
            ],
        )?;
        if changed == 1 {
            run.finished_at = Some(finished_at);
            run.outcome = Some(RunOutcome::Abandoned);
            run.error = Some(error);
            abandoned.push(run);
        }
    }
    Ok(abandoned)
}

/// The error of an abandoned run: who ran it and when it was last alive.
pub fn abandoned_text(run: &RunRecord) -> String {
    let who = if run.trigger == "once" {
        "the regkeeper --once process"
    } else {
        "the daemon"
    };
    match (&run.claimant, run.heartbeat_at) {
        (Some(claimant), Some(heartbeat_at)) => format!(
            "{who} {claimant} that ran it stopped without finishing it \
             (last heartbeat {})",
            rfc3339(heartbeat_at)
        ),
        (Some(claimant), None) => {
            format!("{who} {claimant} that ran it stopped without finishing it")
        }
        (None, _) => format!(
            "{who} that ran it stopped without finishing it \
             (recorded by a version without heartbeats; started {})",
            rfc3339(run.started_at)
        ),
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(trigger: &str, claimant: Option<&str>, heartbeat_at: Option<i64>) -> RunRecord {
        RunRecord {
            id: 7,
            job: "registry-sync".into(),
            handler: "sync".into(),
            trigger: trigger.into(),
            started_at: 1_764_477_600_000,
            finished_at: None,
            outcome: None,
            counts: BTreeMap::new(),
            error: None,
            claimant: claimant.map(str::to_string),
            heartbeat_at,
        }
    }

    /// The check before every run reads only unfinished runs of the job.
    #[test]
    fn sqlite_finds_expired_runs_through_the_unfinished_index() {
        let params = [Value::Int(1), Value::Int(0), Value::Text("j".into())];
        let plan = super::super::explain::sqlite_plan(&candidates_sql(true), &params);
        assert!(plan.contains("job_runs_unfinished (job=?"), "{plan}");
    }

    #[test]
    fn abandoned_text_names_the_claimant_and_its_last_heartbeat() {
        assert_eq!(
            abandoned_text(&run(
                "schedule",
                Some("web1:4242:0badf00d"),
                Some(1_764_477_630_500)
            )),
            "the daemon web1:4242:0badf00d that ran it stopped without finishing it \
             (last heartbeat 2025-11-30T04:40:30.500Z)"
        );
        assert_eq!(
            abandoned_text(&run("once", Some("web1:99:00000001"), None)),
            "the regkeeper --once process web1:99:00000001 that ran it stopped \
             without finishing it"
        );
        assert_eq!(
            abandoned_text(&run("wake", None, None)),
            "the daemon that ran it stopped without finishing it (recorded by a \
             version without heartbeats; started 2025-11-30T04:40:00.000Z)"
        );
    }
}
