//! Progress of a sync pass's walk: a log line every few seconds and, under
//! `--once` on a terminal, a bar on stderr. Display only: nothing here
//! decides anything about the pass.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a progress line is logged.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of the walk: a log line every few seconds and, under `--once`
/// on a terminal, a bar on stderr.
pub(super) struct Progress {
    job_name: String,
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last_log: Mutex<Instant>,
    last_draw: Mutex<Instant>,
    bar: bool,
}

impl Progress {
    pub(super) fn new(job_name: &str, total: usize, bar: bool) -> Progress {
        let now = Instant::now();
        Progress {
            job_name: job_name.to_string(),
            total,
            done: AtomicUsize::new(0),
            started: now,
            last_log: Mutex::new(now),
            last_draw: Mutex::new(now),
            bar: bar && std::io::stderr().is_terminal(),
        }
    }

    pub(super) fn advance(&self, repositories: usize) {
        let done = self.done.fetch_add(repositories, Ordering::SeqCst) + repositories;
        let elapsed = self.started.elapsed();
        if let Ok(mut last_log) = self.last_log.try_lock() {
            if last_log.elapsed() >= PROGRESS_LOG_EVERY {
                *last_log = Instant::now();
                log::info!(
                    "job={} {}",
                    self.job_name,
                    progress_line(done, self.total, elapsed)
                );
            }
        }
        if self.bar {
            if let Ok(mut last_draw) = self.last_draw.try_lock() {
                if last_draw.elapsed() >= Duration::from_millis(100) || done == self.total {
                    *last_draw = Instant::now();
                    eprint!("\r{}", progress_bar(done, self.total, elapsed, 30));
                }
            }
        }
    }

    pub(super) fn finish(&self) {
        let done = self.done.load(Ordering::SeqCst);
        let elapsed = self.started.elapsed();
        if self.bar {
            eprintln!("\r{}", progress_bar(done, self.total, elapsed, 30));
        }
        log::info!(
            "job={} walked {}",
            self.job_name,
            progress_line(done, self.total, elapsed)
        );
    }
}

/// `120/1000 repositories, 40.0/s`.
fn progress_line(done: usize, total: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    format!("{done}/{total} repositories, {rate:.1}/s")
}

/// `[#######-------] 120/1000 repositories, 40.0/s`, `width` cells wide.
fn progress_bar(done: usize, total: usize, elapsed: Duration, width: usize) -> String {
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!(
        "[{}{}] {}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        progress_line(done, total, elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_fills_with_done_repositories() {
        let elapsed = Duration::from_secs(2);
        assert_eq!(progress_line(10, 40, elapsed), "10/40 repositories, 5.0/s");
        assert_eq!(
            progress_bar(10, 40, elapsed, 8),
            "[##------] 10/40 repositories, 5.0/s"
        );
        assert_eq!(
            progress_bar(0, 0, elapsed, 4),
            "[####] 0/0 repositories, 0.0/s"
        );
    }
}
