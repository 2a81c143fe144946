//! Time as the database keeps it: integer milliseconds since the Unix
//! epoch, UTC. The one reading of the wall clock ([`now_ms`]) and the one
//! conversion of a `Duration` to milliseconds ([`duration_ms`]). Logic that
//! depends on time takes `now` as an argument instead of calling these.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
        assert!(now_ms() > 1_700_000_000_000);
    }
}
