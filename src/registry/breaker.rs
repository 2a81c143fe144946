//! The client's circuit breaker: when the registry stops answering, stop
//! asking it.
//!
//! Without it a pass against a registry that went away retries every one
//! of its remaining requests (three attempts with backoff each): a sync of
//! 15,000 tags would drag on for more than 20 minutes, holding the sync lock
//! and skipping every scheduled tick. The breaker counts requests that
//! ended, after their retries, without an answer (connection refused, reset,
//! timed out) or with a 5xx. After [`TRIP_AFTER`] of them in a row it opens:
//! requests fail at once without being sent, retries in flight give up,
//! and the callers (the jobs) see a transport error saying the registry is
//! unreachable. After a cool-down one request is let through as a probe
//! (half open): an answer closes the breaker, a failure opens it again for
//! twice as long, up to [`MAX_COOL_DOWN`]. Any answer below 500 (404 and
//! 401 included) proves the registry alive and resets the count.
//!
//! Pure state with `now` passed in; the client owns one per registry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests failing in a row that open the breaker.
pub const TRIP_AFTER: u32 = 4;
/// The first cool-down after the breaker opened.
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(1);
/// The longest cool-down.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(30);

/// The breaker of one registry.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Requests that failed in a row.
    failures: u32,
    /// While open: until when requests are refused.
    open_until: Option<Instant>,
    /// The next cool-down.
    cool_down: Option<Duration>,
    /// The last failure, for messages.
    last_error: String,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request may be sent now. Refused: the sentence why. When
    /// a cool-down is over, the first caller is let through as the probe and
    /// the others are refused until it ends.
    pub fn admit(&self, now: Instant) -> Result<(), String> {
        let mut state = self.state();
        let Some(until) = state.open_until else {
            return Ok(());
        };
        if now < until {
            return Err(format!(
                "registry unreachable: {} requests in a row failed, the last with {}; not asking \
                 it again for {}",
                state.failures,
                state.last_error,
                humantime::format_duration(round_to_millis(until - now))
            ));
        }
        // Half open: this request is the probe; hold the others back for
        // as long as the next cool-down.
        let hold = state.cool_down.unwrap_or(FIRST_COOL_DOWN);
        state.open_until = Some(now + hold);
        Ok(())
    }

    /// Whether requests are refused at `now` (retries in flight give up).
    pub fn is_open(&self, now: Instant) -> bool {
        self.state().open_until.is_some_and(|until| now < until)
    }

    /// Whether the breaker opened and no answer has closed it since: the
    /// registry is down as far as this client knows, cool-down or not.
    pub fn tripped(&self) -> bool {
        self.state().failures >= TRIP_AFTER
    }

    /// The registry answered (below 500): close.
    pub fn succeeded(&self) {
        let mut state = self.state();
        if state.failures > 0 || state.open_until.is_some() {
            *state = State::default();
        }
    }

    /// A request ended without an answer or with a 5xx, after its retries.
    pub fn failed(&self, now: Instant, error: &str) {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        state.last_error = error.to_string();
        if state.failures >= TRIP_AFTER {
            let cool_down = state.cool_down.unwrap_or(FIRST_COOL_DOWN);
            state.open_until = Some(now + cool_down);
            state.cool_down = Some((cool_down * 2).min(MAX_COOL_DOWN));
        }
    }
}

fn round_to_millis(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_an_answer_resets_the_count() {
        let breaker = Breaker::default();
        let now = Instant::now();
        for _ in 0..TRIP_AFTER - 1 {
            breaker.failed(now, "GET /v2/: connection refused");
        }
        assert_eq!(breaker.admit(now), Ok(()));
        breaker.succeeded();
        for _ in 0..TRIP_AFTER - 1 {
            breaker.failed(now, "GET /v2/: connection refused");
        }
        assert_eq!(breaker.admit(now), Ok(()), "the answer reset the count");
        breaker.failed(now, "GET /v2/a/tags/list: connection refused");
        assert!(breaker.is_open(now));
        assert!(breaker.tripped());
        let refused = breaker.admit(now).expect_err("open");
        assert_eq!(
            refused,
            "registry unreachable: 4 requests in a row failed, the last with GET \
             /v2/a/tags/list: connection refused; not asking it again for 1s"
        );
    }

    #[test]
    fn one_probe_after_the_cool_down_and_a_failed_probe_doubles_it() {
        let breaker = Breaker::default();
        let start = Instant::now();
        for _ in 0..TRIP_AFTER {
            breaker.failed(start, "boom");
        }
        let later = start + FIRST_COOL_DOWN;
        assert_eq!(breaker.admit(later), Ok(()), "the probe");
        assert!(breaker.admit(later).is_err(), "others wait for the probe");
        breaker.failed(later, "boom");
        assert!(breaker.is_open(later + FIRST_COOL_DOWN));
        assert!(!breaker.is_open(later + FIRST_COOL_DOWN * 2));
        // The cool-down doubles up to its cap.
        let mut now = later;
        for _ in 0..10 {
            now += MAX_COOL_DOWN;
            assert_eq!(breaker.admit(now), Ok(()));
            breaker.failed(now, "boom");
        }
        assert!(breaker.is_open(now + MAX_COOL_DOWN - Duration::from_millis(1)));
        assert!(!breaker.is_open(now + MAX_COOL_DOWN));
        // A probe that is answered closes it.
        assert_eq!(breaker.admit(now + MAX_COOL_DOWN), Ok(()));
        assert!(breaker.tripped(), "tripped until an answer");
        breaker.succeeded();
        assert!(!breaker.is_open(now + MAX_COOL_DOWN));
        assert!(!breaker.tripped());
        for _ in 0..TRIP_AFTER {
            breaker.failed(now, "boom");
        }
        assert!(breaker.is_open(now + FIRST_COOL_DOWN - Duration::from_millis(1)));
    }
}
