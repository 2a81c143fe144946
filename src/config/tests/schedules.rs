//! Cron schedules: seconds, the optional year, `L`, `W` and `#`, and
//! day-of-month OR day-of-week.

use super::*;

fn schedule_of(expression: &str) -> Schedule {
    let config = parse_ok(&format!(
        "{REGISTRY}[jobs.j]\nhandler = \"events\"\nschedule = \"{expression}\"\n"
    ));
    job(&config, "j").schedule.clone()
}

fn next_after(schedule: &Schedule, after: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    schedule
        .cron
        .find_next_occurrence(&after, false)
        .expect("a next fire time")
}

#[test]
fn schedules_have_seconds_and_an_optional_year() {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    let every_two = schedule_of("*/2 * * * * *");
    assert_eq!(
        next_after(&every_two, start),
        Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 2).unwrap()
    );
    let with_year = schedule_of("30 15 4 1 6 * 2027");
    assert_eq!(
        next_after(&with_year, start),
        Utc.with_ymd_and_hms(2027, 6, 1, 4, 15, 30).unwrap()
    );
    let named = schedule_of("0 0 12 * JAN-MAR MON-FRI");
    assert_eq!(
        next_after(&named, start),
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap()
    );
    let nickname = schedule_of("@daily");
    assert_eq!(
        next_after(&nickname, start),
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    );
    assert_eq!(schedule_of("  0 0 * * * *  ").expression, "0 0 * * * *");
}

#[test]
fn last_day_nearest_weekday_and_nth_weekday_parse() {
    let start = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let last = schedule_of("0 0 0 L * *");
    assert_eq!(
        next_after(&last, start),
        Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap()
    );
    // 2026-02-15 is a Sunday: the nearest weekday is Monday the 16th.
    let weekday = schedule_of("0 0 0 15W * *");
    assert_eq!(
        next_after(&weekday, start),
        Utc.with_ymd_and_hms(2026, 2, 16, 0, 0, 0).unwrap()
    );
    let second_monday = schedule_of("0 0 0 * * MON#2");
    assert_eq!(
        next_after(&second_monday, start),
        Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap()
    );
}

#[test]
fn day_of_month_and_day_of_week_combine_with_or() {
    // Vixie cron: when both are restricted, either matching fires. 2026-03-01
    // is a Sunday; the next Monday is the 2nd, the next 15th is later.
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 1).unwrap();
    let schedule = schedule_of("0 0 0 15 * MON");
    assert_eq!(
        next_after(&schedule, start),
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    );
    let after_monday = Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 1).unwrap();
    assert_eq!(
        next_after(&schedule, after_monday),
        Utc.with_ymd_and_hms(2026, 3, 15, 0, 0, 0).unwrap()
    );
}
