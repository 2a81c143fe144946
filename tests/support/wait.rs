//! Waiting for a condition with a deadline, the one way tests wait: poll,
//! never sleep a fixed time and hope. Deadlines are generous because the
//! machine running the tests may be shared and slow; they only matter when
//! something is broken.

use std::time::{Duration, Instant};

/// How long any condition may take to come true on a slow, busy machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// How often a condition is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it gives a value; panics naming `what` when
/// [`DEADLINE`] passes first.
///
/// In a `#[tokio::test]` body this blocks the test's own thread (the one
/// `block_on` runs on), never a runtime worker, so tasks keep running.
pub fn wait_for<T>(what: &str, condition: impl FnMut() -> Option<T>) -> T {
    poll(DEADLINE, condition).unwrap_or_else(|| panic!("timed out waiting until {what}"))
}

/// Polls `condition` until it holds; panics naming `what` when [`DEADLINE`]
/// passes first.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(what, || condition().then_some(()))
}

/// Polls `condition` until it gives a value, for at most `deadline`; None
/// when the deadline passes first. For callers that try again on their own
/// (a server that lost its port to another process).
pub fn poll<T>(deadline: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if started.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
