//! Every error message as a literal snapshot, one table per family.

use super::*;

#[test]
fn errors_toml_syntax_and_types() {
    assert_errors(&[
        ("[registry\nurl = 1\n", "schedules.toml:1:10: unclosed table, expected `]`"),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nenabled = \"yes\"\n",
            "schedules.toml:6:11: job \"j\": enabled: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[registry]\nurl = \"http://r\"\nconcurrency = \"8\"\n",
            "schedules.toml:3:15: [registry] concurrency: invalid type: string \"8\", expected i64",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nbody_limit = true\n",
            "schedules.toml:4:14: [notifications] body_limit: invalid type: boolean `true`, expected a number of bytes or text like \"1MiB\"",
        ),
    ]);
}

#[test]
fn errors_unknown_keys_and_sections() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\nuser = \"x\"\n",
            "schedules.toml:3:1: [registry] unknown field `user`, expected one of `url`, `username`, `password`, `password_file`, `ca_file`, `insecure_skip_tls_verify`, `timeout`, `concurrency`, `catalog_page_size`, `token_realms`, `scanner_username`, `scanner_password`, `scanner_password_file`, `share_password_with_scanners`",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nschedual = \"x\"\n",
            "schedules.toml:6:1: job \"j\": unknown field `schedual`, expected one of `handler`, `schedule`, `enabled`, `timeout`, `jitter`, `timezone`, `max_attempts`, `retain_done`, `lease`, `batch_size`, `backoff`, `max_backoff`, `strategy`, `max_delete_fraction`, `policy`, `rescan_after`, `concurrency`",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[deamon]\n",
            "schedules.toml:3:2: unknown field `deamon`, expected one of `database`, `registry`, `notifications`, `daemon`, `metrics`, `jobs`, `security`",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.snyk]\nserver = \"http://s\"\n",
            "schedules.toml:3:11: unknown scanner [security.snyk] (expected clair, clair4, adapter or fixture)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.fixture]\nfile = \"f.json\"\nurl = \"x\"\n",
            "schedules.toml:5:1: [security.fixture] unknown field `url`, expected one of `enabled`, `server`, `timeout`, `token_file`, `username`, `password`, `file`",
        ),
    ]);
}

#[test]
fn errors_jobs_handler_and_keys() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nschedule = \"* * * * * *\"\n",
            "schedules.toml:3:7: job \"j\": handler is required (events, sync, security or gc)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"prune\"\nschedule = \"* * * * * *\"\n",
            "schedules.toml:4:11: job \"j\": unknown handler \"prune\" (expected events, sync, security or gc)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"sync\"\n",
            "schedules.toml:3:7: job \"j\": schedule is required (cron with seconds: sec min hour dom mon dow [year], e.g. \"*/10 * * * * *\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.\"bad name\"]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n",
            "schedules.toml:3:7: invalid job name \"bad name\" (use letters, digits, '-', '_' and '.')",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.registry-events]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nstrategy = \"update\"\n",
            "schedules.toml:6:12: job \"registry-events\": key strategy belongs to the \"sync\" handler, not \"events\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nlease = \"1m\"\n",
            "schedules.toml:6:9: job \"s\": key lease belongs to the \"events\" and \"security\" handler, not \"sync\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"security\"\nschedule = \"* * * * * *\"\nbatch_size = 5\n",
            "schedules.toml:6:14: job \"s\": key batch_size belongs to the \"events\" handler, not \"security\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"*/20 * * * * *\"\nstrategy = \"sometimes\"\n",
            "schedules.toml:6:12: job \"registry-sync\": unknown strategy \"sometimes\" (expected initial, on-start, update or update-delete)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nmax_delete_fraction = 1.5\n",
            "schedules.toml:6:23: job \"s\": max_delete_fraction 1.5 is out of range (expected 0.0 to 1.0)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.e]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nbackoff = \"1m\"\nmax_backoff = \"10s\"\n",
            "schedules.toml:7:15: job \"e\": max_backoff (10s) is shorter than backoff (1m)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.e]\nhandler = \"events\"\nschedule = \"* * * * * *\"\ntimezone = \"Mars/Olympus\"\n",
            "schedules.toml:6:12: job \"e\": unknown timezone \"Mars/Olympus\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")",
        ),
    ]);
}

const GC_JOB: &str =
    "[registry]\nurl = \"http://r\"\n[jobs.prune]\nhandler = \"gc\"\nschedule = \"0 0 3 * * *\"\n";

#[test]
fn gc_job_reads_its_policies() {
    let config = parse_ok(&format!(
        "{GC_JOB}max_delete_fraction = 0.2\n\
         [[jobs.prune.policy]]\nname = \"ci\"\nrepositories = [\"ci/**\"]\nexclude = [\"ci/base\"]\n\
         keep_latest = 5\nkeep_pushed_within = \"30d\"\nkeep_pulled_within = \"7d\"\nkeep_tags = [\"latest\", \"v*\"]\n\
         [[jobs.prune.policy]]\nrepositories = [\"app\"]\nkeep_latest = 1\n"
    ));
    let HandlerConfig::Gc(options) = &job(&config, "prune").handler else {
        panic!("not a gc job");
    };
    assert_eq!(options.max_delete_fraction, 0.2);
    assert_eq!(options.policies.len(), 2);
    let ci = &options.policies[0];
    assert_eq!(ci.name, "ci");
    assert!(ci.selects("ci/team/app"));
    assert!(!ci.selects("ci/base"));
    assert!(!ci.selects("app"));
    assert_eq!(ci.keep_latest, Some(5));
    assert_eq!(
        ci.keep_pushed_within,
        Some(Duration::from_secs(30 * 24 * 3600))
    );
    assert_eq!(
        ci.keep_pulled_within,
        Some(Duration::from_secs(7 * 24 * 3600))
    );
    let tags: Vec<&str> = ci.keep_tags.iter().map(Glob::as_str).collect();
    assert_eq!(tags, ["latest", "v*"]);
    assert_eq!(options.policies[1].name, "policy 2");
    assert!(crate::jobs::supports_dry_run(
        &job(&config, "prune").handler
    ));
}

#[test]
fn errors_gc_policies() {
    let gc = |rest: &str| format!("{GC_JOB}{rest}");
    let cases = [
        (
            gc(""),
            "schedules.toml:3:7: job \"prune\": a gc job needs at least one [[jobs.NAME.policy]] table (repositories and what to keep)",
        ),
        (
            gc("[[jobs.prune.policy]]\nkeep_latest = 3\n"),
            "schedules.toml:6:1: job \"prune\": policy[1].repositories is required (glob patterns such as [\"ci/**\"]; a policy touches only the repositories it names)",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = []\nkeep_latest = 3\n"),
            "schedules.toml:7:16: job \"prune\": policy[1].repositories: the list is empty, so the policy selects nothing",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"ci/*\"]\n"),
            "schedules.toml:6:1: job \"prune\": policy[1] (policy 1) has no keep rule, so it would delete every tag it selects; give at least one of keep_latest, keep_pushed_within, keep_pulled_within or keep_tags",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_latest = 1\n[[jobs.prune.policy]]\nrepositories = [\"b\"]\nkeep_latest = 0\n"),
            "schedules.toml:11:15: job \"prune\": policy[2].keep_latest 0 is out of range (expected 1 to 1000000)",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_pushed_within = \"soon\"\n"),
            "schedules.toml:8:22: job \"prune\": policy[1].keep_pushed_within: invalid duration \"soon\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            gc("[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_tags = [\"\"]\n"),
            "schedules.toml:8:14: job \"prune\": policy[1].keep_tags: pattern \"\": an empty pattern matches nothing",
        ),
        (
            gc("max_delete_fraction = 2.0\n[[jobs.prune.policy]]\nrepositories = [\"a\"]\nkeep_latest = 1\n"),
            "schedules.toml:6:23: job \"prune\": max_delete_fraction 2 is out of range (expected 0.0 to 1.0)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.s]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\n[[jobs.s.policy]]\nrepositories = [\"a\"]\n".to_string(),
            "schedules.toml:6:1: job \"s\": key policy belongs to the \"gc\" handler, not \"sync\"",
        ),
    ];
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|(text, expected)| (text.as_str(), *expected))
        .collect();
    assert_errors(&cases);
}

#[test]
fn errors_schedules() {
    let job = |schedule: &str| {
        format!("[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"{schedule}\"\n")
    };
    assert_errors(&[
        (
            &job("*/5 * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"*/5 * * * *\" has 5 fields, but seconds come first: sec min hour dom mon dow [year] (did you mean \"0 */5 * * * *\"?)",
        ),
        (
            &job("* * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"* * * *\" has 4 fields (expected 6 or 7: sec min hour dom mon dow [year])",
        ),
        (
            &job(""),
            "schedules.toml:5:12: job \"j\": schedule \"\" has 0 fields (expected 6 or 7: sec min hour dom mon dow [year])",
        ),
        (
            &job("0 */61 * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"0 */61 * * * *\": minute step /61 is larger than the minute field (60 values), so it fires only at 0",
        ),
        (
            &job("*/90 * * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"*/90 * * * * *\": second step /90 is larger than the second field (60 values), so it fires only at 0",
        ),
        (
            &job("0 0 5-10/7 * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 5-10/7 * * *\": hour step /7 is larger than the range 5-10 (6 values), so it fires only at 5",
        ),
        (
            &job("0 0 0 1 */13 *"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 0 1 */13 *\": month step /13 is larger than the month field (12 values), so it fires only at 1",
        ),
        (
            &job("0 0 0 * * */8"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 0 * * */8\": day-of-week step /8 is larger than the day-of-week field (7 values), so it fires only at 0",
        ),
        (
            &job("0 0 0 1 * +MON"),
            "schedules.toml:5:12: job \"j\": schedule \"0 0 0 1 * +MON\": the '+' day-of-week modifier is not supported (day-of-month and day-of-week combine with OR when both are set)",
        ),
        (
            &job("61 * * * * *"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"61 * * * * *\": second field \"61\" (Component error: Number out of bounds.)",
        ),
        (
            &job("0 0 25 * * *"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"0 0 25 * * *\": hour field \"25\" (Component error: Number out of bounds.)",
        ),
        (
            &job("0 0 0 * * FUNDAY"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"0 0 0 * * FUNDAY\": day-of-week field \"FUNDAY\" (Pattern contains illegal characters: CronPattern contains illegal character 'F' in part 'FUNDAY')",
        ),
        (
            &job("0 0 0 * * * 1999x"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"0 0 0 * * * 1999x\": year field \"1999x\" (Pattern contains illegal characters: CronPattern contains illegal character 'X' in part '1999X')",
        ),
        (
            &job("* * * * * * * *"),
            "schedules.toml:5:12: job \"j\": schedule \"* * * * * * * *\" has 8 fields (expected 6 or 7: sec min hour dom mon dow [year])",
        ),
        (
            &job("@reboot"),
            "schedules.toml:5:12: job \"j\": invalid schedule \"@reboot\" (Invalid pattern: Pattern must have 6 or 7 fields when seconds are required and years are optional.)",
        ),
    ]);
}

#[test]
fn errors_durations_and_numbers() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\ntimeout = \"soon\"\n",
            "schedules.toml:3:11: [registry] timeout: invalid duration \"soon\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntimeout = \"30\"\n",
            "schedules.toml:3:11: [registry] timeout: invalid duration \"30\" (time unit needed, for example 30sec or 30ms; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntimeout = \"0s\"\n",
            "schedules.toml:3:11: [registry] timeout: duration \"0s\" must be greater than zero",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\ntimeout = \"5 parsecs\"\n",
            "schedules.toml:6:11: job \"j\": timeout: invalid duration \"5 parsecs\" (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nlease = \"0s\"\n",
            "schedules.toml:6:9: job \"j\": lease: duration \"0s\" must be greater than zero",
        ),
        (
            "[database]\nwait = \"later\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:8: [database] wait: invalid duration \"later\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\ngrace_period = \"-1s\"\n",
            "schedules.toml:4:16: [daemon] grace_period: invalid duration \"-1s\" (expected number at 0; write e.g. \"30s\", \"5m\", \"24h\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[metrics]\nlisten = \"localhost:9185\"\n",
            "schedules.toml:4:10: [metrics] listen: invalid address \"localhost:9185\" (expected IP:PORT like \"127.0.0.1:9185\", or \"\" for no listener of its own)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"127.0.0.1:6000\"\n[metrics]\nlisten = \"127.0.0.1:6000\"\n",
            "schedules.toml:6:10: [metrics] listen: 127.0.0.1:6000 is the intake's address ([notifications] listen), which serves /metrics already (intake = true)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[metrics]\nqueue_refresh = \"1h\"\n",
            "schedules.toml:4:17: [metrics] queue_refresh: 1h is too long (at most 5m: the queue gauges would be older than most scrape intervals)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[metrics]\nport = 9185\n",
            "schedules.toml:4:1: [metrics] unknown field `port`, expected one of `listen`, `intake`, `queue_refresh`",
        ),
        (
            "[registry]\nurl = \"http://r\"\nconcurrency = 65\n",
            "schedules.toml:3:15: [registry] concurrency 65 is out of range (expected 1 to 64)",
        ),
        (
            "[registry]\nurl = \"http://r\"\ncatalog_page_size = 0\n",
            "schedules.toml:3:21: [registry] catalog_page_size 0 is out of range (expected 1 to 1000)",
        ),
        (
            "[database]\npool_size = 0\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:13: [database] pool_size 0 is out of range (expected 1 to 1000)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nheartbeat = \"0s\"\n",
            "schedules.toml:4:13: [daemon] heartbeat: duration \"0s\" must be greater than zero",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nheartbeat = \"30s\"\nabandon_after = \"1m\"\n",
            "schedules.toml:5:17: [daemon] abandon_after (1m) must be at least 3 times heartbeat (30s)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nheartbeat = \"2m\"\n",
            "schedules.toml:4:13: [daemon] abandon_after (5m) must be at least 3 times heartbeat (2m)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nlog_format = \"xml\"\n",
            "schedules.toml:4:14: [daemon] unknown log_format \"xml\" (expected \"text\" or \"json\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[daemon]\nkeep_runs = 0\n",
            "schedules.toml:4:13: [daemon] keep_runs 0 is out of range (expected 1 to 1000000)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"security\"\nschedule = \"* * * * * *\"\nconcurrency = 0\n",
            "schedules.toml:6:15: job \"j\": concurrency 0 is out of range (expected 1 to 64)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[jobs.j]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nmax_attempts = 0\n",
            "schedules.toml:6:16: job \"j\": max_attempts 0 is out of range (expected 1 to 1000)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nbody_limit = \"1 lot\"\n",
            "schedules.toml:4:14: [notifications] body_limit: invalid size \"1 lot\" (expected a positive number of bytes or text like \"1MiB\", \"512KiB\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nbody_limit = 0\n",
            "schedules.toml:4:14: [notifications] body_limit: invalid size 0 (expected a positive number of bytes or text like \"1MiB\", \"512KiB\")",
        ),
    ]);
}

#[test]
fn errors_database() {
    assert_errors(&[
        (
            "[database]\nurl = \"mysql://u@h/db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: unsupported database url \"mysql://u@h/db\" (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)",
        ),
        (
            "[database]\nurl = \"mysql://u:hunter2@h/db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: unsupported database url \"mysql://u:<redacted>@h/db\" (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)",
        ),
        (
            "[database]\nurl = \"sqlite://\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: \"sqlite://\" names no file (write sqlite://PATH)",
        ),
        (
            "[database]\nurl = \"postgres://u@h:99999/db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: invalid database url \"postgres://u@h:99999/db\" (invalid port number)",
        ),
        (
            "[database]\nurl = \"postgres:///db\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: database url \"postgres:///db\" names no host",
        ),
        (
            "[database]\nurl = \"sqlite://x.db\"\npassword_file = \"/p\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:3:17: [database] password_file is only used with a postgres:// url",
        ),
        (
            "[database]\nurl = \"postgres://u:p@h/db\"\npassword_file = \"/p\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: the url has a password and password_file is set too (use one)",
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify_full\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: sslmode: unsupported value \"verify_full\" (expected disable, prefer, require, verify-ca or verify-full)",
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: sslmode: verify-full needs sslrootcert=PATH (a PEM file of the CA certificates to trust) or sslrootcert=system",
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=require&sslcrl=/etc/crl.pem\"\n[registry]\nurl = \"http://r\"\n",
            "schedules.toml:2:7: [database] url: sslcrl: not supported (regkeeper reads sslmode, sslrootcert, sslcert and sslkey)",
        ),
    ]);
    let error = format!(
        "{:#}",
        parse_env(REGISTRY, &[(ENV_DATABASE_URL, "redis://h")]).unwrap_err()
    );
    assert_eq!(
        error,
        "schedules.toml: REGKEEPER_DATABASE_URL: url: unsupported database url \"redis://h\" (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)"
    );
}

#[test]
fn an_empty_secret_in_the_environment_is_an_error_naming_the_variable() {
    let text = "[database]\nurl = \"postgres://u@h/db\"\n[registry]\nurl = \"http://r\"\nusername = \"u\"\n[notifications]\ntoken_file = \"/run/token\"\n";
    for variable in [
        ENV_NOTIFY_TOKEN,
        ENV_REGISTRY_PASSWORD,
        ENV_DATABASE_PASSWORD,
        ENV_DATABASE_URL,
    ] {
        for empty in ["", " ", "\n"] {
            let error = format!("{:#}", parse_env(text, &[(variable, empty)]).unwrap_err());
            assert_eq!(
                error,
                format!(
                    "schedules.toml: {variable} is set but empty (unset it, or give it a value)"
                )
            );
        }
    }
}

#[test]
fn errors_registry() {
    assert_errors(&[
        ("", "schedules.toml:1:1: missing [registry] section (at least url = \"http://HOST:PORT\")"),
        ("[registry]\nusername = \"u\"\n", "schedules.toml:1:1: [registry] url is required, e.g. url = \"http://127.0.0.1:5000\""),
        ("[registry]\nurl = \"127.0.0.1:5000\"\n", "schedules.toml:2:7: [registry] url: URL \"127.0.0.1:5000\" has no scheme (did you mean \"http://127.0.0.1:5000\"?)"),
        ("[registry]\nurl = \"localhost:5000\"\n", "schedules.toml:2:7: [registry] url: URL \"localhost:5000\" is not http:// or https:// (did you mean \"http://localhost:5000\"?)"),
        ("[registry]\nurl = \"registry\"\n", "schedules.toml:2:7: [registry] url: URL \"registry\" has no scheme (did you mean \"http://registry\"?)"),
        ("[registry]\nurl = \"http//127.0.0.1:5000\"\n", "schedules.toml:2:7: [registry] url: URL \"http//127.0.0.1:5000\" has no scheme (did you mean \"http://127.0.0.1:5000\"?)"),
        ("[registry]\nurl = \"https//registry.example\"\n", "schedules.toml:2:7: [registry] url: URL \"https//registry.example\" has no scheme (did you mean \"https://registry.example\"?)"),
        ("[registry]\nurl = \"//registry\"\n", "schedules.toml:2:7: [registry] url: URL \"//registry\" has no scheme (write http:// or https:// and the host)"),
        ("[registry]\nurl = \"http://127.0.0.1:5000/v2/\"\n", "schedules.toml:2:7: [registry] url: \"http://127.0.0.1:5000/v2/\" ends in /v2: the url is the registry's base, regkeeper adds /v2/ itself (write \"http://127.0.0.1:5000\")"),
        ("[registry]\nurl = \"https://r.example/mirror/v2\"\n", "schedules.toml:2:7: [registry] url: \"https://r.example/mirror/v2\" ends in /v2: the url is the registry's base, regkeeper adds /v2/ itself (write \"https://r.example/mirror\")"),
        ("[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = \"\"\n", "schedules.toml:4:12: [registry] password is empty (remove the key, or write the secret)"),
        ("[registry]\nurl = \"ftp://r\"\n", "schedules.toml:2:7: [registry] url: URL \"ftp://r\" is not http:// or https://"),
        (
            "[registry]\nurl = \"http://u:p@r\"\n",
            "schedules.toml:2:7: [registry] url: put credentials in username and password, not in the url",
        ),
        (
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = \"p\"\npassword_file = \"/f\"\n",
            "schedules.toml:4:12: [registry] password and password_file are both set (use one)",
        ),
        ("[registry]\nurl = \"http://r\"\npassword = \"p\"\n", "schedules.toml:3:12: [registry] password is set but username is not"),
        ("[registry]\nurl = \"http://r\"\npassword_file = \"/f\"\n", "schedules.toml:3:17: [registry] password_file is set but username is not"),
        (
            "[registry]\nurl = \"http://r\"\ntoken_realms = [\"https://auth.example.com/token\"]\n",
            "schedules.toml:3:17: [registry] token_realms: \"https://auth.example.com/token\" is not a host or an origin (write \"auth.example.com\" or \"https://auth.example.com:5001\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntoken_realms = [\"auth.example.com:5001\"]\n",
            "schedules.toml:3:17: [registry] token_realms: \"auth.example.com:5001\" is not a host or an origin (write \"auth.example.com\" or \"https://auth.example.com:5001\")",
        ),
        (
            "[registry]\nurl = \"http://r\"\ntoken_realms = [\"ftp://auth\"]\n",
            "schedules.toml:3:17: [registry] token_realms: URL \"ftp://auth\" is not http:// or https://",
        ),
        ("[registry]\nurl = \"http://r\"\nscanner_password = \"p\"\n", "schedules.toml:3:20: [registry] scanner_password is set but scanner_username is not"),
        (
            "[registry]\nurl = \"http://r\"\nscanner_username = \"s\"\nscanner_password = \"p\"\nscanner_password_file = \"/f\"\n",
            "schedules.toml:4:20: [registry] scanner_password and scanner_password_file are both set (use one)",
        ),
    ]);
    let error = format!(
        "{:#}",
        parse_env(REGISTRY, &[(ENV_REGISTRY_PASSWORD, "p")]).unwrap_err()
    );
    assert_eq!(
        error,
        "schedules.toml:1:1: [registry] REGKEEPER_REGISTRY_PASSWORD is set but username is not"
    );
}

#[test]
fn token_realms_are_hosts_or_origins_and_the_scanner_account_is_its_own() {
    let config = parse_env(
        "[registry]\nurl = \"https://r\"\nusername = \"u\"\npassword = \"p\"\n\
         token_realms = [\"Auth.Example.com\", \"https://auth.example.com:5001\", \"[::1]\"]\n\
         scanner_username = \"reader\"\n",
        &[(ENV_REGISTRY_SCANNER_PASSWORD, "read-only")],
    )
    .unwrap();
    let registry = &config.registry;
    assert_eq!(
        registry.token_realms,
        [
            TokenRealm::Host("auth.example.com".into()),
            TokenRealm::Origin("https://auth.example.com:5001".into()),
            TokenRealm::Host("[::1]".into()),
        ]
    );
    let realm = |text: &str| url::Url::parse(text).unwrap();
    assert!(registry.token_realms[0].allows(&realm("https://auth.example.com:9/token")));
    assert!(registry.token_realms[1].allows(&realm("https://auth.example.com:5001/t")));
    assert!(!registry.token_realms[1].allows(&realm("http://auth.example.com:5001/t")));
    assert!(!registry.token_realms[0].allows(&realm("https://evil.example.com/t")));
    assert_eq!(registry.scanner_username.as_deref(), Some("reader"));
    assert_eq!(registry.scanner_password.as_deref(), Some("read-only"));
    assert!(!registry.share_password_with_scanners);
    assert!(!format!("{registry:?}").contains("read-only"));
}

#[test]
fn errors_notifications() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"localhost:5055\"\n",
            "schedules.toml:4:10: [notifications] listen: invalid address \"localhost:5055\" (expected IP:PORT like \"127.0.0.1:5055\", or \"\" to disable the intake)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"0.0.0.0:5055\"\n",
            "schedules.toml:4:10: [notifications] listen: 0.0.0.0:5055 is reachable from other hosts but no token is set (set token_file or REGKEEPER_NOTIFY_TOKEN, or allow_unauthenticated = true)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[notifications]\nlisten = \"[::]:5055\"\nallow_unauthenticated = false\n",
            "schedules.toml:4:10: [notifications] listen: [::]:5055 is reachable from other hosts but no token is set (set token_file or REGKEEPER_NOTIFY_TOKEN, or allow_unauthenticated = true)",
        ),
    ]);
}

#[test]
fn errors_scanners() {
    assert_errors(&[
        (
            "[registry]\nurl = \"http://r\"\n[security.clair]\ntimeout = \"1m\"\n",
            "schedules.toml:3:1: [security.clair] server is required, e.g. server = \"http://127.0.0.1:6060\"",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.adapter]\nserver = \"trivy:8080\"\n",
            "schedules.toml:4:10: [security.adapter] server: URL \"trivy:8080\" is not http:// or https:// (did you mean \"http://trivy:8080\"?)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.fixture]\nenabled = true\n",
            "schedules.toml:3:1: [security.fixture] file is required (the JSON file with the reports)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.fixture]\nfile = \"f.json\"\nserver = \"http://s\"\n",
            "schedules.toml:5:10: [security.fixture] server does not apply to the fixture scanner (it reads `file`)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair4]\nserver = \"http://s\"\nfile = \"f.json\"\n",
            "schedules.toml:5:8: [security.clair4] file only applies to the fixture scanner",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair4]\nserver = \"http://s\"\nusername = \"u\"\npassword = \"\"\n",
            "schedules.toml:6:12: [security.clair4] password is empty (remove the key, or write the secret)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair4]\nserver = \"http://s\"\npassword = \"p\"\n",
            "schedules.toml:5:12: [security.clair4] password is set but username is not",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.adapter]\nserver = \"http://s\"\nusername = \"u\"\ntoken_file = \"/t\"\n",
            "schedules.toml:6:14: [security.adapter] token_file and username are both set (use one)",
        ),
        (
            "[registry]\nurl = \"http://r\"\n[security.clair]\nserver = \"http://s\"\ntimeout = \"0s\"\n",
            "schedules.toml:5:11: [security.clair] timeout: duration \"0s\" must be greater than zero",
        ),
    ]);
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é = 1\nx", 3), (1, 3));
    assert_eq!(line_column("ab", 99), (1, 3));
}
