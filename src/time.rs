//! Time as the database keeps it: integer milliseconds since the Unix
//! epoch, UTC. The one reading of the wall clock ([`now_ms`]) and the one
//! conversion of a `Duration` to milliseconds ([`duration_ms`]), and the one
//! exponential backoff every retry uses ([`backoff`]). Logic that depends
//! on time takes `now` as an argument instead of calling the clock.

use std::time::Duration;

/// The current time in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

/// The milliseconds of a duration as an i64, saturating at `i64::MAX`.
pub fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The wait before try `attempt + 1` after `attempt` failed tries (1 for
/// the first failure; 0 counts as 1): `base` doubling per failure, capped at
/// `max`, never overflowing.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    base.saturating_mul(1u32 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_up_to_max() {
        let second = Duration::from_secs(1);
        let waits: Vec<u64> = (0..=8)
            .map(|attempt| backoff(second, Duration::from_secs(100), attempt).as_secs())
            .collect();
        assert_eq!(waits, [1, 1, 2, 4, 8, 16, 32, 64, 100]);
        assert_eq!(backoff(Duration::MAX, second, 40), second);
        assert_eq!(backoff(second, Duration::MAX, u32::MAX), second * (1 << 30));
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
        assert!(now_ms() > 1_700_000_000_000);
    }
}
