//! Fire times, pure: the first time a job's cron schedule fires strictly
//! after an instant, computed with croner on the wall clock of the job's
//! chrono-tz zone. No timers, no clock reads and no I/O here: callers pass
//! the instant, so every rule (cron(8) at daylight-saving changes, cron(5)'s
//! day-of-month OR day-of-week) is unit tested on literal times.

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};

use crate::config::Schedule;

/// The first fire time of `schedule` strictly after `after`, or None when the
/// expression never fires again (e.g. a year field in the past).
///
/// Times are computed on the wall clock of the schedule's time zone, with
/// cron(8)'s rules at daylight-saving changes: a job fixed to a single wall
/// clock time (single second, minute and hour) that falls into the hour the
/// clock skips runs at the first instant after the gap, and runs once in the
/// hour the clock repeats; a job with a wildcard, range or step in those
/// fields has no ticks in the skipped hour and keeps its interval in real
/// time through the repeated one. Day-of-month and day-of-week combine as
/// cron(5) says: when both are restricted, a day matching either fires.
pub fn next_fire(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Cron works in whole seconds: searching from the start of `after`'s
    // second, exclusively, gives the first fire time strictly after it.
    let whole_second = after.duration_trunc(TimeDelta::seconds(1)).unwrap_or(after);
    let local = whole_second.with_timezone(&schedule.timezone);
    schedule
        .cron
        .find_next_occurrence(&local, false)
        .ok()
        .map(|fire| fire.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use croner::parser::{CronParser, Seconds};

    fn schedule(expression: &str, timezone: chrono_tz::Tz) -> Schedule {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(expression)
            .unwrap_or_else(|error| panic!("parsing {expression}: {error}"));
        Schedule {
            expression: expression.to_string(),
            cron,
            timezone,
            position: String::new(),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|error| panic!("parsing {text}: {error}"))
            .with_timezone(&Utc)
    }

    /// The first `n` fire times after `after`, as RFC 3339 UTC text.
    fn fires(schedule: &Schedule, after: &str, n: usize) -> Vec<String> {
        let mut at = utc(after);
        let mut out = Vec::new();
        for _ in 0..n {
            at = next_fire(schedule, at).expect("a next fire time");
            out.push(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn every_second_fires_strictly_after() {
        let every_second = schedule("* * * * * *", chrono_tz::UTC);
        assert_eq!(
            fires(&every_second, "2026-01-01T10:00:00Z", 2),
            ["2026-01-01T10:00:01Z", "2026-01-01T10:00:02Z"]
        );
        // A sub-second instant: the next whole second, not the same one.
        assert_eq!(
            fires(&every_second, "2026-01-01T10:00:00.999Z", 1),
            ["2026-01-01T10:00:01Z"]
        );
        assert_eq!(
            fires(&every_second, "2026-01-01T10:00:00.001Z", 1),
            ["2026-01-01T10:00:01Z"]
        );
    }

    #[test]
    fn every_two_seconds_in_utc() {
        let every_two = schedule("*/2 * * * * *", chrono_tz::UTC);
        assert_eq!(
            fires(&every_two, "2026-01-01T23:59:57Z", 3),
            [
                "2026-01-01T23:59:58Z",
                "2026-01-02T00:00:00Z",
                "2026-01-02T00:00:02Z"
            ]
        );
    }

    #[test]
    fn daily_job_in_skipped_hour_runs_right_after_spring_forward() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let daily = schedule("0 30 2 * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&daily, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST, right after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn daily_job_in_repeated_hour_fires_once_at_fall_back() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC),
        // so 02:30 happens at 00:30 UTC and again at 01:30 UTC.
        let daily = schedule("0 30 2 * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&daily, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 only
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        // Asked from inside the repeated hour, after the first 02:30: the
        // second 02:30 is not a fire time.
        assert_eq!(
            fires(&daily, "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn every_15_minutes_has_no_ticks_in_skipped_hour() {
        let quarter = schedule("0 */15 * * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&quarter, "2026-03-29T00:30:00Z", 3),
            [
                "2026-03-29T00:45:00Z", // 01:45 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST: 02:00..02:45 do not exist
                "2026-03-29T01:15:00Z", // 03:15 CEST
            ]
        );
    }

    #[test]
    fn every_15_minutes_keeps_real_interval_through_fall_back() {
        let quarter = schedule("0 */15 * * * *", chrono_tz::Europe::Berlin);
        assert_eq!(
            fires(&quarter, "2026-10-25T00:40:00Z", 6),
            [
                "2026-10-25T00:45:00Z", // 02:45 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET, the repeated hour
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T01:45:00Z",
                "2026-10-25T02:00:00Z", // 03:00 CET
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 15th of the month or any Monday (cron(5)); June 2026 starts on a Monday.
        let either = schedule("0 0 12 15 * MON", chrono_tz::UTC);
        assert_eq!(
            fires(&either, "2026-05-31T00:00:00Z", 5),
            [
                "2026-06-01T12:00:00Z", // Monday
                "2026-06-08T12:00:00Z", // Monday
                "2026-06-15T12:00:00Z", // the 15th, also a Monday
                "2026-06-22T12:00:00Z", // Monday
                "2026-06-29T12:00:00Z", // Monday
            ]
        );
        assert_eq!(
            fires(&either, "2026-06-30T00:00:00Z", 2),
            ["2026-07-06T12:00:00Z", "2026-07-13T12:00:00Z"]
        );
        assert_eq!(
            fires(&either, "2026-07-13T13:00:00Z", 2),
            ["2026-07-15T12:00:00Z", "2026-07-20T12:00:00Z"]
        );
    }

    #[test]
    fn day_of_month_alone_when_day_of_week_is_star() {
        let fifteenth = schedule("0 0 12 15 * *", chrono_tz::UTC);
        assert_eq!(
            fires(&fifteenth, "2026-05-31T00:00:00Z", 2),
            ["2026-06-15T12:00:00Z", "2026-07-15T12:00:00Z"]
        );
        let mondays = schedule("0 0 12 * * MON", chrono_tz::UTC);
        assert_eq!(
            fires(&mondays, "2026-06-02T00:00:00Z", 2),
            ["2026-06-08T12:00:00Z", "2026-06-15T12:00:00Z"]
        );
    }

    #[test]
    fn time_zone_shifts_fire_times() {
        let nine = schedule("0 0 9 * * *", chrono_tz::America::New_York);
        // EST (UTC-5) in January, EDT (UTC-4) in July.
        assert_eq!(
            fires(&nine, "2026-01-10T00:00:00Z", 1),
            ["2026-01-10T14:00:00Z"]
        );
        assert_eq!(
            fires(&nine, "2026-07-10T00:00:00Z", 1),
            ["2026-07-10T13:00:00Z"]
        );
    }

    #[test]
    fn expression_in_the_past_never_fires() {
        let past = schedule("0 0 0 1 1 * 2020", chrono_tz::UTC);
        assert_eq!(next_fire(&past, utc("2026-01-01T00:00:00Z")), None);
    }
}
