//! The scheduler: fires each job at the times its cron schedule gives (in its
//! time zone), runs the handler on the blocking pool, never overlaps two runs
//! of one job in this process, records every run, renews the heartbeat of
//! each run in progress, records runs whose process died as abandoned, and
//! drains runs in flight on shutdown.
//!
//! Fire times are computed here with croner in the job's chrono-tz zone
//! ([`next_fire`]) and waited for with tokio timers; nothing else in the
//! crate touches timers or `spawn_blocking` for jobs. Handlers never run on
//! an async worker thread, and this module never interprets what a handler
//! does: it only runs it, isolates its failures and records the outcome.
//!
//! What lives here, one file per part:
//! - `fire.rs`: [`next_fire`], pure: the first fire time of a schedule after
//!   an instant, with cron(8)'s rules at daylight-saving changes. Only the
//!   scheduler computes fire times (`regkeeper check` asks it too).
//! - `claims.rs`: processes that are gone: [`record_abandoned_runs`],
//!   [`release_claims_of_dead_processes`], the claimant id
//!   ([`new_claimant`]).
//! - `run.rs`: one run, blocking: [`RunSettings`], the start, the handler under `catch_unwind`, heartbeats, the end,
//!   pruning and the log lines, skipped ticks; [`run_once`] and
//!   [`run_handler`] for `--once`, with a watchdog thread for heartbeats and
//!   the timeout; [`RunReport`].
//! - `tasks.rs`: the async per-job task loop: [`Scheduler`] starts one tokio
//!   task per enabled job (timers, [`Waker`] wake-ups, jitter, overlapping
//!   ticks skipped, timeout, heartbeats), [`RunningScheduler::reload`]
//!   stops and starts tasks by job name without cutting a run
//!   ([`JobChanges`]), [`RunningScheduler::shutdown`] drains, then cancels
//!   ([`Drain`]).
//!
//! What may not: no SQL (runs are recorded through the
//! [`Store`](crate::store::Store) methods) and no registry I/O; handlers'
//! work stays in `src/jobs/`.

mod claims;
mod fire;
mod run;
mod tasks;

pub use claims::{
    claimant_is_gone, new_claimant, record_abandoned_runs, release_claims_of_dead_processes,
};
pub use fire::next_fire;
pub use run::{run_handler, run_once, RunReport, RunSettings};
pub use tasks::{Drain, JobChanges, RunningScheduler, Scheduler, Waker, CANCEL_WAIT};
