//! The real binary end to end: `check`, `status`, `--once`, `--help` and
//! the exit codes (0 ok, 1 a run failed, 2 usage or configuration error).

use regkeeper_test_support as support;

use support::cli::{run_binary, run_binary_with_env, CliEnv, UNUSED_REGISTRY};

const JOBS: &str = "
[jobs.registry-events]
handler = \"events\"
schedule = \"*/2 * * * * *\"

[jobs.registry-sync]
handler = \"sync\"
schedule = \"0 30 2 * * *\"
timezone = \"Europe/Berlin\"
strategy = \"update\"
enabled = false
";

#[test]
fn check_prints_each_job_with_its_next_three_fire_times() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let output = env.run(&["check", "--after", "2026-03-28T12:00:00Z"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let expected = format!(
        "{}: ok, 2 job(s)

job registry-events
  handler   events
  enabled   yes
  schedule  */2 * * * * *
  timezone  UTC
  next      2026-03-28 12:00:02 +00:00
            2026-03-28 12:00:04 +00:00
            2026-03-28 12:00:06 +00:00

job registry-sync
  handler   sync
  enabled   no (runs only with --once)
  schedule  0 30 2 * * *
  timezone  Europe/Berlin
  next      2026-03-29 03:00:00 +02:00
            2026-03-30 02:30:00 +02:00
            2026-03-31 02:30:00 +02:00
",
        env.config_path().display()
    );
    assert_eq!(output.stdout, expected);
    assert!(
        !env.database_path().exists(),
        "check must not touch the database"
    );
}

#[test]
fn check_without_after_uses_now() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let output = env.run(&["check"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let next_lines = output
        .stdout
        .lines()
        .filter(|line| line.contains(" +0"))
        .count();
    assert_eq!(next_lines, 6, "{}", output.stdout);
}

#[test]
fn check_of_an_invalid_config_exits_2_with_the_message_on_stderr() {
    let env = CliEnv::with_sqlite(
        UNUSED_REGISTRY,
        "[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"*/20 * * * * *\"\nstrategy = \"sometimes\"\n",
    );
    let output = env.run(&["check"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert_eq!(output.stdout, "");
    assert_eq!(
        output.stderr,
        format!(
            "error: {}:8:12: job \"registry-sync\": unknown strategy \"sometimes\" (expected initial, on-start, update or update-delete)\n",
            env.config_path().display()
        )
    );
}

#[test]
fn check_of_a_missing_config_exits_2() {
    let env = CliEnv::new();
    let output = env.run(&["check"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(
        output
            .stderr
            .starts_with(&format!("error: reading {}: ", env.config_path().display())),
        "{}",
        output.stderr
    );
}

#[test]
fn the_default_config_file_is_schedules_toml_in_the_working_directory() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let output = run_binary(
        env.dir.path(),
        &["check", "--after", "2026-01-01T00:00:00Z"],
    );
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output.stdout.starts_with("schedules.toml: ok, 2 job(s)\n"),
        "{}",
        output.stdout
    );
}

#[test]
fn regkeeper_config_names_the_config_file() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let config = env.config_path();
    let output = run_binary_with_env(
        env.dir.path(),
        &["check"],
        &[("REGKEEPER_CONFIG", config.to_str().expect("utf-8"))],
    );
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output
            .stdout
            .starts_with(&format!("{}: ok, 2 job(s)\n", config.display())),
        "{}",
        output.stdout
    );
}

#[test]
fn environment_overrides_reach_the_binary() {
    // REGKEEPER_DATABASE_URL replaces the file's url: status opens the
    // database it names.
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let other = env.dir.path().join("other.db");
    let url = format!("sqlite://{}", other.display());
    let output = run_binary_with_env(
        env.dir.path(),
        &[
            "status",
            "--config",
            env.config_path().to_str().expect("utf-8"),
        ],
        &[("REGKEEPER_DATABASE_URL", &url)],
    );
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output.stdout.starts_with(&format!("database {url}\n")),
        "{}",
        output.stdout
    );
    assert!(other.exists());
    assert!(!env.database_path().exists());
}

#[test]
fn the_shipped_schedules_toml_passes_check() {
    let env = CliEnv::new();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/schedules.toml");
    let output = run_binary(env.dir.path(), &["check", "--config", shipped]);
    assert_eq!(output.code, Some(0), "{output:?}");
    for job in [
        "job registry-events",
        "job registry-sync",
        "job security-scan",
    ] {
        assert!(output.stdout.contains(job), "{}", output.stdout);
    }
}

#[test]
fn help_is_available_everywhere() {
    let env = CliEnv::new();
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["status", "--help"],
        &["help", "status"],
    ] {
        let output = run_binary(env.dir.path(), args);
        assert_eq!(output.code, Some(0), "{args:?}: {output:?}");
        assert!(
            output.stdout.contains("Usage: regkeeper"),
            "{args:?}: {}",
            output.stdout
        );
        assert!(
            output.stdout.contains("--config <FILE>"),
            "{args:?}: {}",
            output.stdout
        );
    }
    let top = run_binary(env.dir.path(), &["--help"]).stdout;
    for word in [
        "--once <JOB>",
        "--dry-run",
        "--force",
        "--retry-failed",
        "check",
        "status",
    ] {
        assert!(top.contains(word), "{word} missing from:\n{top}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let env = CliEnv::new();
    let output = run_binary(env.dir.path(), &["--dry-run"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(output.stderr.contains("--once"), "{}", output.stderr);
    let output = run_binary(env.dir.path(), &["frobnicate"]);
    assert_eq!(output.code, Some(2), "{output:?}");
}

#[test]
fn once_with_an_unknown_job_exits_2_and_lists_the_jobs() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let output = env.run(&["--once", "registry-gc"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert_eq!(
        output.stderr,
        format!(
            "error: unknown job \"registry-gc\" (jobs in {}: registry-events, registry-sync)\n",
            env.config_path().display()
        )
    );
    assert_eq!(output.stdout, "");
}

#[test]
fn once_with_an_invalid_config_exits_2() {
    let env = CliEnv::with_sqlite(
        UNUSED_REGISTRY,
        "[jobs.x]\nhandler = \"events\"\nschedule = \"*/5 * * * *\"\n",
    );
    let output = env.run(&["--once", "x"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(
        output.stderr.contains("seconds come first"),
        "{}",
        output.stderr
    );
}

#[test]
fn status_on_a_fresh_sqlite_database() {
    // A relative database path (the binary runs in the temp dir): the
    // output has nothing that changes from run to run.
    let env = CliEnv::new();
    env.write_config(&format!(
        "[database]\nurl = \"sqlite://regkeeper.db\"\n{UNUSED_REGISTRY}{JOBS}"
    ));
    let output = env.run(&["status"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(
        output.stdout,
        "database sqlite://regkeeper.db

job registry-events (events, enabled, \"*/2 * * * * *\" UTC)
  no runs yet

job registry-sync (sync, disabled, \"0 30 2 * * *\" Europe/Berlin)
  no runs yet

queues
  events        done=0 failed=0 fresh=0 progress=0
  tags by scan  done=0 failed=0 none=0 working=0
  repositories  0
  tags          0
  vulns         Critical=0 High=0 Medium=0 Low=0 Negligible=0 Unknown=0
"
    );
    assert!(
        env.database_path().exists(),
        "the database is in the temp dir"
    );
}

#[test]
fn status_json_parses_and_lists_every_job() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let output = env.run(&["status", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let status: serde_json::Value =
        serde_json::from_str(&output.stdout).expect("status --json is JSON");
    let jobs = status["jobs"].as_array().expect("jobs array");
    let names: Vec<&str> = jobs.iter().filter_map(|job| job["name"].as_str()).collect();
    assert_eq!(names, ["registry-events", "registry-sync"]);
    assert_eq!(jobs[0]["handler"], "events");
    assert_eq!(jobs[0]["enabled"], true);
    assert_eq!(jobs[1]["enabled"], false);
    assert_eq!(jobs[1]["timezone"], "Europe/Berlin");
    assert_eq!(jobs[0]["runs"], serde_json::json!([]));
    assert_eq!(status["queues"]["repositories"], 0);
    assert_eq!(status["queues"]["tags"], 0);
    let queued: i64 = status["queues"]["events"]
        .as_object()
        .expect("events object")
        .values()
        .filter_map(|n| n.as_i64())
        .sum();
    assert_eq!(queued, 0);
}

#[test]
fn status_of_an_invalid_config_exits_2() {
    let env = CliEnv::with_sqlite("[registry]\nurl = \"ftp://r\"\n", "");
    let output = env.run(&["status", "--json"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert_eq!(output.stdout, "");
    assert!(
        output.stderr.contains("is not http:// or https://"),
        "{}",
        output.stderr
    );
}

/// A disabled security job with the fixture scanner: the one handler that
/// runs without a registry when there is nothing to scan.
const SECURITY_JOB: &str = "
[jobs.security-scan]
handler = \"security\"
schedule = \"*/10 * * * * *\"
enabled = false

[security.fixture]
file = \"scan-fixture.json\"
";

#[test]
fn once_runs_a_disabled_job_prints_a_summary_and_status_shows_the_run() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, SECURITY_JOB);
    std::fs::write(env.dir.path().join("scan-fixture.json"), "[]").expect("writing the fixture");
    let output = env.run(&["--once", "security-scan"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let summary = output.stdout.trim_end();
    assert!(summary.starts_with("security-scan: ok in "), "{summary}");
    assert!(summary.contains(" (run 1)"), "{summary}");
    assert!(
        output.stderr.contains("job=security-scan run=1 started"),
        "{}",
        output.stderr
    );

    let (_, run) = status_with_one_once_run(&env);
    assert_eq!(run["outcome"], "ok");
    assert!(
        run["duration_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{run:?}"
    );
    assert_eq!(run["error"], serde_json::Value::Null);

    let table = env.run(&["status"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    let run_line = table
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("1 "))
        .expect("a line for run 1");
    assert!(
        run_line.contains(" once ") && run_line.contains(" ok"),
        "{}",
        table.stdout
    );
}

#[test]
fn once_with_a_handler_that_cannot_be_built_exits_2() {
    // The fixture file is missing: building the handler fails, which is a
    // configuration problem.
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, SECURITY_JOB);
    let output = env.run(&["--once", "security-scan"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(output.stderr.contains("security-scan"), "{}", output.stderr);
    assert!(
        output.stderr.contains("scan-fixture.json"),
        "{}",
        output.stderr
    );
}

#[test]
fn once_with_an_unusable_database_exits_1() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, SECURITY_JOB);
    std::fs::write(env.dir.path().join("scan-fixture.json"), "[]").expect("writing the fixture");
    std::fs::write(
        env.database_path(),
        "this is not a database, just some text long enough to be a header".repeat(20),
    )
    .expect("writing a broken database");
    let output = env.run(&["--once", "security-scan"]);
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(
        output
            .stderr
            .contains("error: opening the database sqlite://"),
        "{}",
        output.stderr
    );
    assert_eq!(output.stdout, "");
}

#[test]
fn once_with_a_failing_handler_exits_1_says_why_on_stderr_and_records_the_run() {
    // A port on 127.0.0.1 that was just free: connections are refused.
    let refused_port = support::registry::free_port();
    let env = CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"http://127.0.0.1:{refused_port}\"\n"),
        "[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"update\"\n",
    );
    let config = env.config_path();
    // Logging off: the failure must reach stderr without the run's log line.
    let output = run_binary_with_env(
        env.dir.path(),
        &[
            "--once",
            "registry-sync",
            "--config",
            config.to_str().expect("utf-8 temp path"),
        ],
        &[("RUST_LOG", "off")],
    );
    assert_eq!(output.code, Some(1), "{output:?}");
    let stderr = output.stderr.trim_end();
    assert!(
        stderr.starts_with("error: job registry-sync run 1 failed: walking the registry catalog: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{refused_port}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        output.stdout.starts_with("registry-sync: failed in "),
        "{}",
        output.stdout
    );

    let (status, run) = status_with_one_once_run(&env);
    assert_eq!(run["outcome"], "failed");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("walking the registry catalog: ")
            && error.contains(&format!("127.0.0.1:{refused_port}")),
        "{run:?}"
    );
    assert_eq!(status["queues"]["repositories"], 0, "nothing was written");
}

/// `status --json`, and its first job's only run, which `--once` started
/// (run 1).
fn status_with_one_once_run(env: &CliEnv) -> (serde_json::Value, serde_json::Value) {
    let status = env.run(&["status", "--json"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    let status: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("status --json is JSON");
    let runs = status["jobs"][0]["runs"].as_array().expect("runs array");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = runs[0].clone();
    assert_eq!(run["id"], 1);
    assert_eq!(run["trigger"], "once");
    (status, run)
}

/// Writes tags into the configuration's SQLite database through the store,
/// as the events and sync jobs would, for `host` (the registry's `host:port`).
fn seed_tags(env: &CliEnv, host: &str, tags: &[(&str, &str, &str, &str, Option<i64>)]) {
    use regkeeper::store::{Store, TagWrite};
    let store = support::store::sqlite_file(&env.database_path());
    let registry_id = store.ensure_registry(host).expect("registry row");
    for (repository, tag, digest, media_type, size) in tags {
        store
            .upsert_tag(
                registry_id,
                &TagWrite {
                    repository: repository.to_string(),
                    tag: tag.to_string(),
                    digest: digest.to_string(),
                    image_id: "9079c54f3f99".into(),
                    media_type: media_type.to_string(),
                    size: *size,
                    platforms: None,
                },
                1_764_477_600_000,
            )
            .expect("writing a tag");
    }
}

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DIGEST_A: &str = "sha256:8ffca51699b92830196fe8404d4d509ea345ba3cde251383a6c824630893f3f3";
const DIGEST_B: &str = "sha256:12c9633973134741c34e17e6229978b1a6a9844ff12d9d8bfd57aae0f5c1854a";

#[test]
fn tags_lists_every_repository_with_short_digests_and_sizes() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    seed_tags(
        &env,
        "127.0.0.1:9",
        &[
            ("web/app", "2.0", DIGEST_B, OCI_INDEX, Some(1_905)),
            ("base", "1", DIGEST_A, OCI, Some(402)),
            ("demo/hello", "latest", DIGEST_A, OCI, Some(3_500_000)),
            ("demo/hello", "1.0", DIGEST_A, OCI, None),
        ],
    );
    // Tags of another registry in the same database are not listed.
    seed_tags(
        &env,
        "other.example:5000",
        &[("elsewhere", "1", DIGEST_A, OCI, None)],
    );
    let output = env.run(&["tags"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(
        output.stdout,
        "  REPOSITORY  TAG     DIGEST               SIZE     TYPE       SCAN
  base        1       sha256:8ffca51699b9  402 B    oci        none
  demo/hello  1.0     sha256:8ffca51699b9  -        oci        none
  demo/hello  latest  sha256:8ffca51699b9  3.3 MiB  oci        none
  web/app     2.0     sha256:12c963397313  1.9 KiB  oci-index  none
"
    );
}

#[test]
fn tags_of_one_repository_as_json() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    seed_tags(
        &env,
        "127.0.0.1:9",
        &[
            ("web/app", "2.0", DIGEST_B, OCI_INDEX, Some(1_905)),
            ("base", "1", DIGEST_A, OCI, Some(402)),
        ],
    );
    let output = env.run(&["tags", "web/app", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let tags: serde_json::Value =
        serde_json::from_str(&output.stdout).expect("tags --json is JSON");
    assert_eq!(
        tags,
        serde_json::json!([{
            "repository": "web/app",
            "tag": "2.0",
            "digest": DIGEST_B,
            "image_id": "9079c54f3f99",
            "media_type": OCI_INDEX,
            "size": 1905,
            "scanned": "none",
            "pulled_at": null,
            "created_at": "2025-11-30T04:40:00.000Z",
            "updated_at": "2025-11-30T04:40:00.000Z"
        }])
    );
}

#[test]
fn tags_on_a_fresh_database_says_so() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let output = env.run(&["tags"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(output.stdout, "no tags\n");
    let output = env.run(&["tags", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(output.stdout, "[]\n");
}

#[test]
fn once_sync_against_a_real_registry_with_and_without_dry_run() {
    let registry = support::registry::TestRegistry::anonymous();
    registry.push_image("app", "v1");
    registry.push_image("team/tool", "latest");
    let env = CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"{}\"\n", registry.url),
        "[jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"0 0 * * * *\"\nstrategy = \"update\"\nenabled = false\n",
    );
    let queues = |env: &CliEnv| {
        let output = env.run(&["status", "--json"]);
        assert_eq!(output.code, Some(0), "{output:?}");
        let status: serde_json::Value =
            serde_json::from_str(&output.stdout).expect("status --json is JSON");
        (
            status["queues"]["repositories"].as_i64(),
            status["queues"]["tags"].as_i64(),
            status["jobs"][0]["runs"].clone(),
        )
    };

    let dry = env.run(&["--once", "registry-sync", "--dry-run"]);
    assert_eq!(
        dry.code,
        Some(0),
        "{dry:?}\nregistry log:\n{}",
        registry.log()
    );
    let summary = dry.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("registry-sync: ok in "),
        "{}",
        dry.stdout
    );
    let (repositories, tags, runs) = queues(&env);
    assert_eq!(
        (repositories, tags),
        (Some(0), Some(0)),
        "a dry run writes nothing"
    );
    // Recorded, but apart from the real runs.
    assert_eq!(runs[0]["trigger"], "dry-run");

    let real = env.run(&["--once", "registry-sync"]);
    assert_eq!(
        real.code,
        Some(0),
        "{real:?}\nregistry log:\n{}",
        registry.log()
    );
    assert!(
        real.stdout.starts_with("registry-sync: ok in "),
        "{}",
        real.stdout
    );
    let (repositories, tags, runs) = queues(&env);
    assert_eq!((repositories, tags), (Some(2), Some(2)));
    let outcomes: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|run| run["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["ok", "ok"]);
}

/// The subcommands every generated completion script and man page names.
const SUBCOMMANDS: [&str; 6] = ["check", "status", "tags", "vulns", "completions", "man"];

/// What bash offers for the word after `words` with the completion script
/// `script` loaded, as `complete -F` would call it.
fn bash_completions(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let words_array = words
        .iter()
        .map(|word| format!("'{word}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let previous = words.last().unwrap_or(&"regkeeper");
    let program = format!(
        "source '{}'; COMP_WORDS=({words_array} ''); COMP_CWORD={}; \
         _regkeeper regkeeper '' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.len()
    );
    let output = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("running bash");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_bash_completion_script_completes_every_subcommand_and_shell() {
    let env = CliEnv::new();
    let output = run_binary(env.dir.path(), &["completions", "bash"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output.stdout.contains("complete -F _regkeeper"),
        "{}",
        output.stdout
    );
    let script = env.dir.path().join("regkeeper.bash");
    std::fs::write(&script, &output.stdout).unwrap();
    let offered = bash_completions(&script, &["regkeeper"]);
    for word in SUBCOMMANDS.iter().chain(&["--config", "--once"]) {
        assert!(
            offered.iter().any(|offer| offer == word),
            "{word} not offered: {offered:?}"
        );
    }
    let offered = bash_completions(&script, &["regkeeper", "completions"]);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            offered.iter().any(|offer| offer == shell),
            "{shell} not offered: {offered:?}"
        );
    }
}

#[test]
fn completions_exist_for_every_shell_clap_knows_and_others_are_usage_errors() {
    let env = CliEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = run_binary(env.dir.path(), &["completions", shell]);
        assert_eq!(output.code, Some(0), "{shell}: {output:?}");
        assert!(output.stdout.contains("regkeeper"), "{shell}: {output:?}");
        assert!(output.stdout.contains("vulns"), "{shell}: {output:?}");
    }
    let output = run_binary(env.dir.path(), &["completions", "nushell"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(
        output
            .stderr
            .contains("invalid value 'nushell' for '<SHELL>'"),
        "{output:?}"
    );
}

/// Renders a man page with groff as man(1) does, failing on any warning;
/// returns the plain text.
fn render_man_page(page: &std::path::Path) -> String {
    let output = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-P-c", "-P-b", "-P-u"])
        .arg(page)
        .output()
        .expect("running groff (Debian package groff-base; scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", page.display());
    assert_eq!(stderr, "", "groff warned about {}", page.display());
    String::from_utf8(output.stdout).expect("groff prints UTF-8")
}

#[test]
fn the_man_page_is_roff_that_groff_renders_with_every_subcommand() {
    let env = CliEnv::new();
    let output = run_binary(env.dir.path(), &["man"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output.stdout.contains("\n.TH regkeeper 1 "),
        "{}",
        output.stdout
    );
    let page = env.dir.path().join("regkeeper.1");
    std::fs::write(&page, &output.stdout).unwrap();
    let text = render_man_page(&page);
    for heading in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "FILES",
    ] {
        assert!(
            text.lines().any(|line| line == heading),
            "{heading} missing from:\n{text}"
        );
    }
    for subcommand in SUBCOMMANDS {
        assert!(
            text.contains(&format!("regkeeper-{subcommand}(1)")),
            "{subcommand} missing from:\n{text}"
        );
    }
    assert!(text.contains("--once <JOB>"), "{text}");
    assert!(text.contains("/etc/regkeeper/schedules.toml"), "{text}");
}

#[test]
fn man_with_a_dir_writes_a_page_per_subcommand() {
    let env = CliEnv::new();
    let pages = env.dir.path().join("man");
    std::fs::create_dir(&pages).unwrap();
    let output = run_binary(env.dir.path(), &["man", "--dir", "man"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(output.stdout, "");
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "regkeeper-check.1",
            "regkeeper-completions.1",
            "regkeeper-man.1",
            "regkeeper-status.1",
            "regkeeper-tags.1",
            "regkeeper-vulns.1",
            "regkeeper.1",
        ]
    );
    let text = render_man_page(&pages.join("regkeeper-check.1"));
    assert!(text.contains("regkeeper check"), "{text}");
    assert!(text.contains("--fire-times <N>"), "{text}");

    let output = run_binary(env.dir.path(), &["man", "--dir", "missing"]);
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(
        output
            .stderr
            .starts_with("error: writing manual pages to missing: "),
        "{output:?}"
    );
}
