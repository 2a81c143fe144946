//! `[jobs.NAME]`: the job's name, handler, cron schedule and time zone,
//! timeout and jitter, and each handler's own keys (`events`, `sync`,
//! `security` options; `gc` in `gc.rs`), a key of another handler being an error that names
//! its owner.

use std::ops::Range;

use toml::Spanned;

use super::{line_column, or_list, Checker, Positive, Scope};
use crate::config::raw::{Ordered, RawJob};
use crate::config::{
    EventsOptions, HandlerConfig, JobConfig, Schedule, SecurityOptions, Strategy, SyncOptions,
    HANDLERS,
};

/// A handler-specific key: its name, where it is written (if it is) and
/// the handlers it belongs to.
type KeyOwners = (&'static str, Option<Range<usize>>, &'static [&'static str]);

impl Checker<'_> {
    /// `[jobs.NAME]`, in file order: each name checked, then each job.
    pub(super) fn jobs(&self, raw: &Ordered<RawJob>) -> anyhow::Result<Vec<JobConfig>> {
        let mut jobs = Vec::new();
        for (name, job) in &raw.0 {
            let job_name = name.get_ref();
            let valid_name = !job_name.is_empty()
                && job_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_name {
                return Err(self.error(
                    &name.span(),
                    Scope::File,
                    format!(
                        "invalid job name {job_name:?} (use letters, digits, '-', '_' and '.')"
                    ),
                ));
            }
            jobs.push(self.job(name, job)?);
        }
        Ok(jobs)
    }

    /// One `[jobs.NAME]` table: handler, schedule and time zone, then the
    /// handler's own keys, then timeout and jitter.
    fn job(&self, name: &Spanned<String>, raw: &Spanned<RawJob>) -> anyhow::Result<JobConfig> {
        let scope = Scope::Job(name.get_ref());
        let job = raw.get_ref();
        let Some(handler_value) = &job.handler else {
            return Err(self.error(
                &name.span(),
                scope,
                format!("handler is required ({})", or_list(&HANDLERS)),
            ));
        };
        let handler_name = handler_value.get_ref().as_str();
        if !HANDLERS.contains(&handler_name) {
            return Err(self.error(
                &handler_value.span(),
                scope,
                format!(
                    "unknown handler {handler_name:?} (expected {})",
                    or_list(&HANDLERS)
                ),
            ));
        }
        let Some(schedule_value) = &job.schedule else {
            return Err(self.error(
                &name.span(),
                scope,
                "schedule is required (cron with seconds: sec min hour dom mon dow [year], e.g. \"*/10 * * * * *\")",
            ));
        };
        let timezone = match &job.timezone {
            None => chrono_tz::Tz::UTC,
            Some(value) => value.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
                self.error(
                    &value.span(),
                    scope,
                    format!("unknown timezone {:?} (expected an IANA name like \"Europe/Berlin\" or \"UTC\")", value.get_ref()),
                )
            })?,
        };
        let schedule = self.schedule(schedule_value, scope, timezone)?;
        self.foreign_keys(job, handler_name, scope)?;
        let handler = match handler_name {
            "events" => HandlerConfig::Events(self.events_options(name, job)?),
            "sync" => HandlerConfig::Sync(self.sync_options(name, job)?),
            "gc" => HandlerConfig::Gc(self.gc_options(name, job)?),
            _ => HandlerConfig::Security(self.security_options(name, job)?),
        };
        Ok(JobConfig {
            name: name.get_ref().clone(),
            schedule,
            enabled: job
                .enabled
                .as_ref()
                .is_none_or(|enabled| *enabled.get_ref()),
            timeout: self.optional_duration(
                job.timeout.as_ref(),
                scope,
                "timeout",
                Positive::Yes,
            )?,
            jitter: self.optional_duration(job.jitter.as_ref(), scope, "jitter", Positive::No)?,
            handler,
        })
    }

    /// The keys of an `events` job.
    fn events_options(
        &self,
        name: &Spanned<String>,
        job: &RawJob,
    ) -> anyhow::Result<EventsOptions> {
        let scope = Scope::Job(name.get_ref());
        let defaults = EventsOptions::default();
        let backoff = self.duration_or(
            job.backoff.as_ref(),
            scope,
            "backoff",
            defaults.backoff,
            Positive::Yes,
        )?;
        let max_backoff = self.duration_or(
            job.max_backoff.as_ref(),
            scope,
            "max_backoff",
            defaults.max_backoff,
            Positive::Yes,
        )?;
        if max_backoff < backoff {
            let span = job
                .max_backoff
                .as_ref()
                .or(job.backoff.as_ref())
                .map(Spanned::span)
                .unwrap_or(name.span());
            return Err(self.error(
                &span,
                scope,
                format!(
                    "max_backoff ({}) is shorter than backoff ({})",
                    humantime::format_duration(max_backoff),
                    humantime::format_duration(backoff)
                ),
            ));
        }
        Ok(EventsOptions {
            max_attempts: self.integer_or(
                job.max_attempts.as_ref(),
                scope,
                "max_attempts",
                10,
                1..=1000,
            )? as u32,
            retain_done: self.duration_or(
                job.retain_done.as_ref(),
                scope,
                "retain_done",
                defaults.retain_done,
                Positive::No,
            )?,
            lease: self.duration_or(
                job.lease.as_ref(),
                scope,
                "lease",
                defaults.lease,
                Positive::Yes,
            )?,
            batch_size: self.integer_or(
                job.batch_size.as_ref(),
                scope,
                "batch_size",
                500,
                1..=100_000,
            )? as u32,
            backoff,
            max_backoff,
        })
    }

    /// The keys of a `sync` job.
    fn sync_options(&self, name: &Spanned<String>, job: &RawJob) -> anyhow::Result<SyncOptions> {
        let scope = Scope::Job(name.get_ref());
        let strategy = match &job.strategy {
            None => Strategy::default(),
            Some(value) => Strategy::ALL
                .into_iter()
                .find(|strategy| strategy.name() == value.get_ref())
                .ok_or_else(|| {
                    let known: Vec<&str> = Strategy::ALL
                        .iter()
                        .map(|strategy| strategy.name())
                        .collect();
                    self.error(
                        &value.span(),
                        scope,
                        format!(
                            "unknown strategy {:?} (expected {})",
                            value.get_ref(),
                            or_list(&known)
                        ),
                    )
                })?,
        };
        let max_delete_fraction = self.fraction_or(
            job.max_delete_fraction.as_ref(),
            scope,
            "max_delete_fraction",
            SyncOptions::default().max_delete_fraction,
        )?;
        Ok(SyncOptions {
            strategy,
            max_delete_fraction,
        })
    }

    /// The keys of a `security` job.
    fn security_options(
        &self,
        name: &Spanned<String>,
        job: &RawJob,
    ) -> anyhow::Result<SecurityOptions> {
        let scope = Scope::Job(name.get_ref());
        let defaults = SecurityOptions::default();
        Ok(SecurityOptions {
            rescan_after: self.duration_or(
                job.rescan_after.as_ref(),
                scope,
                "rescan_after",
                defaults.rescan_after,
                Positive::No,
            )?,
            concurrency: self.integer_or(
                job.concurrency.as_ref(),
                scope,
                "concurrency",
                2,
                1..=64,
            )? as usize,
            max_attempts: self.integer_or(
                job.max_attempts.as_ref(),
                scope,
                "max_attempts",
                5,
                1..=1000,
            )? as u32,
            lease: self.duration_or(
                job.lease.as_ref(),
                scope,
                "lease",
                defaults.lease,
                Positive::Yes,
            )?,
        })
    }

    /// Rejects a key that belongs to another handler.
    fn foreign_keys(&self, job: &RawJob, handler: &str, scope: Scope<'_>) -> anyhow::Result<()> {
        fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
            value.as_ref().map(Spanned::span)
        }
        let keys: [KeyOwners; 11] = [
            (
                "max_attempts",
                span(&job.max_attempts),
                &["events", "security"],
            ),
            ("retain_done", span(&job.retain_done), &["events"]),
            ("lease", span(&job.lease), &["events", "security"]),
            ("batch_size", span(&job.batch_size), &["events"]),
            ("backoff", span(&job.backoff), &["events"]),
            ("max_backoff", span(&job.max_backoff), &["events"]),
            ("strategy", span(&job.strategy), &["sync"]),
            (
                "max_delete_fraction",
                span(&job.max_delete_fraction),
                &["sync", "gc"],
            ),
            ("policy", span(&job.policy), &["gc"]),
            ("rescan_after", span(&job.rescan_after), &["security"]),
            ("concurrency", span(&job.concurrency), &["security"]),
        ];
        for (key, key_span, handlers) in keys {
            if let Some(key_span) = key_span {
                if !handlers.contains(&handler) {
                    let owners = handlers
                        .iter()
                        .map(|owner| format!("{owner:?}"))
                        .collect::<Vec<_>>()
                        .join(" and ");
                    return Err(self.error(
                        &key_span,
                        scope,
                        format!("key {key} belongs to the {owners} handler, not {handler:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A cron expression with seconds, naming the wrong field when croner
    /// refuses it.
    fn schedule(
        &self,
        value: &Spanned<String>,
        scope: Scope<'_>,
        timezone: chrono_tz::Tz,
    ) -> anyhow::Result<Schedule> {
        let expression = value.get_ref().trim();
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let fail = |message: String| self.error(&value.span(), scope, message);
        if !expression.starts_with('@') {
            if fields.len() == 5 {
                return Err(fail(format!(
                    "schedule {expression:?} has 5 fields, but seconds come first: sec min hour dom mon dow [year] (did you mean \"0 {expression}\"?)"
                )));
            }
            if !(6..=7).contains(&fields.len()) {
                return Err(fail(format!(
                    "schedule {expression:?} has {} fields (expected 6 or 7: sec min hour dom mon dow [year])",
                    fields.len()
                )));
            }
            if fields[5].starts_with('+') {
                return Err(fail(format!(
                    "schedule {expression:?}: the '+' day-of-week modifier is not supported (day-of-month and day-of-week combine with OR when both are set)"
                )));
            }
        }
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .year(croner::parser::Year::Optional)
            .build();
        let cron = parser.parse(expression).map_err(|error| {
            // croner does not say which field is wrong: find it by parsing
            // each field alone.
            const FIELD_NAMES: [&str; 7] = [
                "second",
                "minute",
                "hour",
                "day-of-month",
                "month",
                "day-of-week",
                "year",
            ];
            let bad_field = (0..fields.len()).find(|&index| {
                let mut alone = vec!["*"; fields.len()];
                alone[index] = fields[index];
                parser.parse(&alone.join(" ")).is_err()
            });
            match bad_field {
                Some(index) if !expression.starts_with('@') => fail(format!(
                    "invalid schedule {expression:?}: {} field {:?} ({error})",
                    FIELD_NAMES[index], fields[index]
                )),
                _ => fail(format!("invalid schedule {expression:?} ({error})")),
            }
        })?;
        if !expression.starts_with('@') {
            for (index, field) in fields.iter().enumerate() {
                if let Some(message) = oversized_step(index, field) {
                    return Err(fail(format!("schedule {expression:?}: {message}")));
                }
            }
        }
        let (line, column) = line_column(self.text, value.span().start);
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
            timezone,
            position: format!("{}:{line}:{column}", self.file),
        })
    }
}

/// Each cron field's name, first and last value.
const CRON_FIELDS: [(&str, u32, u32); 7] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
    ("year", 1970, 2099),
];

/// Why a step in field `index` does not mean what it says: `*/61` in the
/// minutes steps past the field's 60 values and fires only at the first
/// one (hourly), as `5-10/7` does within its range. None when every step
/// fits (or the field has none, or is not a plain `*`, `N`, `N-M` base).
fn oversized_step(index: usize, field: &str) -> Option<String> {
    let (name, first, last) = *CRON_FIELDS.get(index)?;
    for part in field.split(',') {
        let Some((base, step)) = part.split_once('/') else {
            continue;
        };
        let Ok(step) = step.parse::<u32>() else {
            continue;
        };
        let value = |text: &str| cron_value(index, text);
        let (low, high, over) = match base.split_once('-') {
            _ if base == "*" => (first, last, format!("the {name} field")),
            Some((low, high)) => match (value(low), value(high)) {
                (Some(low), Some(high)) => (low, high, format!("the range {base}")),
                _ => continue,
            },
            None => match value(base) {
                Some(low) => (low, last, format!("{base} to {last}")),
                None => continue,
            },
        };
        // Day-of-week 7 is Sunday again: the field has 7 values.
        let count = if index == 5 && base == "*" {
            7
        } else {
            high.saturating_sub(low) + 1
        };
        if step > count {
            return Some(format!(
                "{name} step /{step} is larger than {over} ({count} values), so it fires only at {low}"
            ));
        }
    }
    None
}

/// A value of field `index`: a number, or a month or day name.
fn cron_value(index: usize, text: &str) -> Option<u32> {
    if let Ok(number) = text.parse::<u32>() {
        return Some(number);
    }
    let names: &[&str] = match index {
        4 => &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        5 => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        _ => return None,
    };
    let upper = text.to_ascii_uppercase();
    let position = names.iter().position(|name| *name == upper)? as u32;
    Some(if index == 4 { position + 1 } else { position })
}
