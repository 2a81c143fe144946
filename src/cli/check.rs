//! `regkeeper check`: the configuration loads (the same path as the
//! daemon's), then each job's next fire times in its own time zone and each
//! scanner. Touches neither the database nor the registry.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{load_config, print_out, CheckArgs, Failure};
use crate::config::Config;

/// `check`: the configuration is valid; each job with its next fire times.
pub(super) fn check(config_path: &Path, args: &CheckArgs) -> Result<ExitCode, Failure> {
    let config = load_config(config_path)?;
    let after = args.after.unwrap_or_else(Utc::now);
    if let Some(message) = never_firing(&config, after) {
        return Err(Failure::Usage(anyhow::anyhow!(message)));
    }
    for warning in check_warnings(&config)
        .into_iter()
        .chain(credential_warnings(&config))
    {
        eprintln!("warning: {warning}");
    }
    print_out(&check_report(&config, after, args.fire_times))?;
    Ok(ExitCode::SUCCESS)
}

/// How far ahead a schedule must fire at least once.
const FIRE_HORIZON_DAYS: i64 = 5 * 366;

/// The first job whose schedule has no fire time within the next 5 years
/// after `after` (`0 0 0 31 2 *`, a year long past): it does not mean what
/// it says.
pub fn never_firing(config: &Config, after: DateTime<Utc>) -> Option<String> {
    let horizon = after + chrono::TimeDelta::days(FIRE_HORIZON_DAYS);
    config.jobs.iter().find_map(|job| {
        let fires =
            crate::scheduler::next_fire(&job.schedule, after).is_some_and(|fire| fire <= horizon);
        (!fires).then(|| {
            format!(
                "{}: job {:?}: schedule {:?} has no fire time in the next 5 years",
                job.schedule.position, job.name, job.schedule.expression
            )
        })
    })
}

/// What `check` warns about on stderr: settings that are valid but unsafe.
pub fn check_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.registry.insecure_skip_tls_verify {
        warnings.push(format!(
            "{}: [registry] insecure_skip_tls_verify = true: the registry's TLS certificate is not verified (anyone on the path can read the credentials and forge answers)",
            config.path.display()
        ));
    }
    for job in &config.jobs {
        let crate::config::HandlerConfig::Gc(options) = &job.handler else {
            continue;
        };
        for policy in &options.policies {
            if let Some(within) = policy.keep_pulled_within {
                warnings.push(format!(
                    "{}: job {:?}: policy {:?}: keep_pulled_within = \"{}\" relies on the registry's pull events: if its notification endpoint's `ignore` drops pulls (actions: [pull]) or notifications do not reach regkeeper, no pull is recorded and every tag counts as not pulled, so this rule keeps nothing",
                    job.schedule.position,
                    job.name,
                    policy.name,
                    humantime::format_duration(within)
                ));
            }
        }
    }
    warnings
}

/// What `check` warns about on stderr: a credential that would travel to a
/// scanner over plain HTTP (the registry pull credential handed to it, or
/// the scanner's own `username`/`token_file`).
pub fn credential_warnings(config: &Config) -> Vec<String> {
    let registry = &config.registry;
    let handed = if registry.username.is_none() {
        None
    } else if registry.scanner_username.is_some() {
        Some("the scanner account ([registry] scanner_username)")
    } else if registry.share_password_with_scanners {
        Some("the registry password (share_password_with_scanners = true)")
    } else {
        Some("a pull token of the registry (with token auth)")
    };
    let mut warnings = Vec::new();
    for scanner in config.security.iter().filter(|scanner| scanner.enabled) {
        let Some(server) = scanner.server.as_ref().filter(|url| url.scheme() == "http") else {
            continue;
        };
        let name = scanner.kind.name();
        let origin = server.origin().ascii_serialization();
        if let Some(what) = handed {
            warnings.push(format!(
                "[security.{name}] server {origin} is plain http: {what} travels to it unencrypted"
            ));
        }
        if scanner.username.is_some() || scanner.token.is_some() || scanner.token_file.is_some() {
            warnings.push(format!(
                "[security.{name}] server {origin} is plain http: its own credentials travel to it \
                 unencrypted"
            ));
        }
    }
    warnings
}

/// The text `check` prints.
pub fn check_report(config: &Config, after: DateTime<Utc>, fire_times: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: ok, {} job(s)",
        config.path.display(),
        config.jobs.len()
    );
    for job in &config.jobs {
        let _ = writeln!(out);
        let _ = writeln!(out, "job {}", job.name);
        let _ = writeln!(out, "  handler   {}", job.handler.name());
        let _ = writeln!(
            out,
            "  enabled   {}",
            if job.enabled {
                "yes"
            } else {
                "no (runs only with --once)"
            }
        );
        let _ = writeln!(out, "  schedule  {}", job.schedule.expression);
        let _ = writeln!(out, "  timezone  {}", job.schedule.timezone.name());
        let mut next = Vec::new();
        let mut from = after;
        while next.len() < fire_times {
            let Some(fire) = crate::scheduler::next_fire(&job.schedule, from) else {
                break;
            };
            next.push(fire);
            from = fire;
        }
        if next.is_empty() {
            let _ = writeln!(out, "  next      never");
        }
        for (index, fire) in next.iter().enumerate() {
            let label = if index == 0 { "next" } else { "" };
            let local = fire.with_timezone(&job.schedule.timezone);
            let _ = writeln!(
                out,
                "  {label:<8}  {}",
                local.format("%Y-%m-%d %H:%M:%S %:z")
            );
        }
    }
    for scanner in &config.security {
        let _ = writeln!(out);
        let _ = writeln!(out, "scanner {}", scanner.kind.name());
        let _ = writeln!(
            out,
            "  enabled   {}",
            if scanner.enabled { "yes" } else { "no" }
        );
        if let Some(server) = &scanner.server {
            let _ = writeln!(out, "  server    {server}");
        }
        if let Some(file) = &scanner.file {
            let _ = writeln!(out, "  file      {}", file.display());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn check_warns_when_a_gc_policy_keeps_by_pull_time() {
        let text = "[registry]\nurl = \"http://127.0.0.1:5000\"\n[jobs.prune]\nhandler = \"gc\"\nschedule = \"0 0 3 * * *\"\n[[jobs.prune.policy]]\nname = \"ci\"\nrepositories = [\"ci/**\"]\nkeep_pulled_within = \"30d\"\n[[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 3\n";
        let config =
            crate::config::parse(text, std::path::Path::new("schedules.toml")).expect("config");
        assert_eq!(
            check_warnings(&config),
            ["schedules.toml:5:12: job \"prune\": policy \"ci\": keep_pulled_within = \"30days\" relies on the registry's pull events: if its notification endpoint's `ignore` drops pulls (actions: [pull]) or notifications do not reach regkeeper, no pull is recorded and every tag counts as not pulled, so this rule keeps nothing"]
        );
    }

    #[test]
    fn check_warns_when_a_credential_would_travel_to_a_scanner_over_plain_http() {
        let warnings = |registry: &str, scanners: &str| {
            let text = format!("[registry]\nurl = \"https://r\"\n{registry}{scanners}");
            let config = crate::config::parse(&text, Path::new("schedules.toml")).unwrap();
            credential_warnings(&config)
        };
        let scanners = "[security.clair]\nserver = \"http://clair:6060\"\n\
                        [security.clair4]\nserver = \"https://clair4\"\n\
                        [security.adapter]\nserver = \"http://adapter:8080\"\nusername = \"u\"\npassword = \"p\"\nenabled = false\n";
        assert_eq!(
            warnings("username = \"keeper\"\npassword = \"p\"\n", scanners),
            ["[security.clair] server http://clair:6060 is plain http: a pull token of the registry \
              (with token auth) travels to it unencrypted"]
        );
        assert_eq!(
            warnings(
                "username = \"keeper\"\npassword = \"p\"\nshare_password_with_scanners = true\n",
                &scanners.replace("enabled = false\n", "")
            ),
            [
                "[security.clair] server http://clair:6060 is plain http: the registry password \
                 (share_password_with_scanners = true) travels to it unencrypted",
                "[security.adapter] server http://adapter:8080 is plain http: the registry password \
                 (share_password_with_scanners = true) travels to it unencrypted",
                "[security.adapter] server http://adapter:8080 is plain http: its own credentials \
                 travel to it unencrypted",
            ]
        );
        assert!(warnings("", scanners).is_empty());
    }

    #[test]
    fn check_report_shows_fire_times_in_the_job_time_zone() {
        let text = "[registry]\nurl = \"http://r\"\n\
            [jobs.ev]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n\
            [jobs.nightly]\nhandler = \"sync\"\nschedule = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nenabled = false\n\
            [jobs.past]\nhandler = \"sync\"\nschedule = \"0 0 0 1 1 * 2020\"\n\
            [security.fixture]\nfile = \"f.json\"\n";
        let config = crate::config::parse(text, Path::new("schedules.toml")).unwrap();
        // The night the clocks go forward in Berlin: 02:30 does not exist.
        let after = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        assert_eq!(
            check_report(&config, after, 3),
            "schedules.toml: ok, 3 job(s)

job ev
  handler   events
  enabled   yes
  schedule  */2 * * * * *
  timezone  UTC
  next      2026-03-28 12:00:02 +00:00
            2026-03-28 12:00:04 +00:00
            2026-03-28 12:00:06 +00:00

job nightly
  handler   sync
  enabled   no (runs only with --once)
  schedule  0 30 2 * * *
  timezone  Europe/Berlin
  next      2026-03-29 03:00:00 +02:00
            2026-03-30 02:30:00 +02:00
            2026-03-31 02:30:00 +02:00

job past
  handler   sync
  enabled   yes
  schedule  0 0 0 1 1 * 2020
  timezone  UTC
  next      never

scanner fixture
  enabled   yes
  file      f.json
"
        );
    }
}

#[cfg(test)]
mod never_firing_tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn a_schedule_without_a_fire_time_in_five_years_is_refused_naming_the_job_and_line() {
        let after = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let config = |schedule: &str| {
            let text = format!(
                "[registry]\nurl = \"http://r\"\n[jobs.ok]\nhandler = \"events\"\nschedule = \"* * * * * *\"\n\
                 [jobs.feb31]\nhandler = \"sync\"\nschedule = \"{schedule}\"\n"
            );
            crate::config::parse(&text, Path::new("schedules.toml")).unwrap()
        };
        assert_eq!(
            never_firing(&config("0 0 0 31 2 *"), after).as_deref(),
            Some("schedules.toml:8:12: job \"feb31\": schedule \"0 0 0 31 2 *\" has no fire time in the next 5 years")
        );
        assert_eq!(
            never_firing(&config("0 0 0 1 1 * 2020"), after).as_deref(),
            Some("schedules.toml:8:12: job \"feb31\": schedule \"0 0 0 1 1 * 2020\" has no fire time in the next 5 years")
        );
        assert!(never_firing(&config("0 0 0 1 1 * 2040"), after).is_some());
        assert_eq!(never_firing(&config("0 0 0 29 2 *"), after), None);
        assert_eq!(never_firing(&config("0 0 0 1 1 * 2030"), after), None);
    }

    #[test]
    fn insecure_skip_tls_verify_is_a_warning() {
        let text = "[registry]\nurl = \"https://r\"\ninsecure_skip_tls_verify = true\n";
        let config = crate::config::parse(text, Path::new("schedules.toml")).unwrap();
        assert_eq!(
            check_warnings(&config),
            ["schedules.toml: [registry] insecure_skip_tls_verify = true: the registry's TLS certificate is not verified (anyone on the path can read the credentials and forge answers)"]
        );
        let safe = crate::config::parse(
            "[registry]\nurl = \"https://r\"\n",
            Path::new("schedules.toml"),
        )
        .unwrap();
        assert!(check_warnings(&safe).is_empty());
    }
}
