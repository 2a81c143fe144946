//! The scheduler: fires each job at the times its cron schedule gives (in its
//! time zone), runs the handler on the blocking pool, never overlaps two runs
//! of one job, records every run, and drains runs in flight on shutdown.
