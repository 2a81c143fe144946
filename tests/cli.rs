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
    support::store::sqlite_file(&other);
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
    // A relative database path and a relative configuration path (the
    // binary runs in the temp dir): the output has nothing that changes
    // from run to run.
    let env = CliEnv::new();
    env.write_config(&format!(
        "[database]\nurl = \"sqlite://regkeeper.db\"\n{UNUSED_REGISTRY}{JOBS}"
    ));
    support::store::sqlite_file(&env.database_path());
    let output = run_binary(env.dir.path(), &["status", "--config", "schedules.toml"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert_eq!(
        output.stdout,
        "database sqlite://regkeeper.db
no daemon has recorded its jobs: the jobs of the file

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
    support::store::sqlite_file(&env.database_path());
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
    // The fixture file is not JSON: building the handler fails, which is
    // a configuration problem.
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, SECURITY_JOB);
    std::fs::write(env.dir.path().join("scan-fixture.json"), "not json").expect("fixture");
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
    support::store::sqlite_file(&env.database_path());
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

// ---- read-only commands ----

#[test]
fn read_only_commands_on_a_missing_database_fail_and_create_nothing() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    for args in [&["status"][..], &["tags"], &["vulns", "ns/app:1.0"]] {
        let output = env.run(args);
        assert_eq!(output.code, Some(1), "{args:?}: {output:?}");
        assert_eq!(output.stdout, "");
        assert!(
            output.stderr.contains(&format!(
                "sqlite database {} does not exist (the daemon or `regkeeper --once JOB` creates it)",
                env.database_path().display()
            )),
            "{}",
            output.stderr
        );
        assert!(
            !env.database_path().exists(),
            "{args:?} created the database"
        );
    }
}

#[test]
fn read_only_commands_on_a_database_that_is_not_migrated_fail_and_write_nothing() {
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    std::fs::write(env.database_path(), "").expect("an empty database file");
    for args in [&["status"][..], &["tags"]] {
        let output = env.run(args);
        assert_eq!(output.code, Some(1), "{args:?}: {output:?}");
        assert!(
            output
                .stderr
                .contains("the database has no regkeeper schema (the daemon or `regkeeper --once JOB` creates it)"),
            "{}",
            output.stderr
        );
    }
    assert_eq!(
        std::fs::metadata(env.database_path())
            .expect("the file")
            .len(),
        0
    );
}

#[test]
fn read_only_commands_run_from_another_directory_read_the_database_beside_the_configuration() {
    // The file names its database relatively: it is the one beside the
    // file, not one in the working directory.
    let env = CliEnv::new();
    env.write_config(&format!(
        "[database]\nurl = \"sqlite://regkeeper.db\"\n{UNUSED_REGISTRY}{JOBS}"
    ));
    seed_tags(
        &env,
        "127.0.0.1:9",
        &[("ns/app", "1.0", DIGEST_A, OCI, Some(10))],
    );
    let elsewhere = tempfile::tempdir().expect("another temp dir");
    let config = env.config_path();
    let config = config.to_str().expect("utf-8");
    let tags = run_binary(elsewhere.path(), &["tags", "--json", "--config", config]);
    assert_eq!(tags.code, Some(0), "{tags:?}");
    let tags: serde_json::Value = serde_json::from_str(&tags.stdout).expect("JSON");
    assert_eq!(tags[0]["repository"], "ns/app");
    let status = run_binary(elsewhere.path(), &["status", "--config", config]);
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(
        status.stdout.starts_with(&format!(
            "database sqlite://{}\n",
            env.database_path().display()
        )),
        "{}",
        status.stdout
    );
    let vulns = run_binary(
        elsewhere.path(),
        &["vulns", "ns/app:1.0", "--config", config],
    );
    assert_eq!(vulns.code, Some(0), "{vulns:?}");
    assert_eq!(
        std::fs::read_dir(elsewhere.path())
            .expect("listing")
            .count(),
        0,
        "nothing was created in the working directory"
    );
}

#[test]
fn read_only_commands_need_no_registry_or_scanner_secret_files() {
    let env = CliEnv::new();
    env.write_config(&format!(
        "{}[registry]\nurl = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword_file = \"absent-password\"\n\
         [notifications]\ntoken_file = \"absent-token\"\n\
         [security.adapter]\nserver = \"http://127.0.0.1:9\"\ntoken_file = \"absent-scanner-token\"\n{JOBS}",
        env.sqlite_section()
    ));
    support::store::sqlite_file(&env.database_path());
    for args in [&["status"][..], &["tags"], &["vulns", "ns/app:1.0"]] {
        let output = env.run(args);
        let expected = if args[0] == "vulns" { 1 } else { 0 };
        assert_eq!(output.code, Some(expected), "{args:?}: {output:?}");
        assert!(!output.stderr.contains("absent"), "{}", output.stderr);
    }
    // The commands that use them still need them.
    let check = env.run(&["check"]);
    assert_eq!(check.code, Some(2), "{check:?}");
    assert!(
        check.stderr.contains(&format!(
            "{}:6:17: [registry] password_file: reading {}: No such file or directory",
            env.config_path().display(),
            env.dir.path().join("absent-password").display()
        )),
        "{}",
        check.stderr
    );
}

#[test]
fn status_shows_an_expired_run_as_abandoned_without_writing() {
    use regkeeper::store::{NewRun, Store};
    let env = CliEnv::with_sqlite(UNUSED_REGISTRY, JOBS);
    let store = support::store::sqlite_file(&env.database_path());
    // A run whose process died long ago: its heartbeat expired.
    let run_id = store
        .start_run(&NewRun {
            job: "registry-events".into(),
            handler: "events".into(),
            trigger: "schedule".into(),
            started_at: 1_764_477_600_000,
            claimant: "gone-host:1:abc".into(),
            expires_at: 1_764_477_900_000,
        })
        .expect("a run");
    drop(store);
    let output = env.run(&["status", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let status: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON");
    let run = &status["jobs"][0]["runs"][0];
    assert_eq!(run["id"], run_id);
    assert_eq!(run["outcome"], "abandoned");
    assert_eq!(run["finished_at"], "2025-11-30T04:40:00.000Z");
    assert_eq!(
        run["error"],
        "the daemon gone-host:1:abc that ran it stopped without finishing it (last heartbeat 2025-11-30T04:40:00.000Z)"
    );
    let store = support::store::sqlite_file(&env.database_path());
    let runs = store.recent_runs("registry-events", 5).expect("runs");
    assert_eq!(runs[0].outcome, None, "status recorded the run");
}

// ---- what check refuses ----

/// `check` of `config` (after `{UNUSED_REGISTRY}`-less text) with `env`
/// set: exit 2, and stderr, which must name `expected`.
fn check_refuses(env_vars: &[(&str, &str)], config: &str, expected: &str) {
    let env = CliEnv::new();
    if config.contains("[database]") {
        env.write_config(config);
    } else {
        env.write_config(&format!("{}{config}", env.sqlite_section()));
    }
    let output = run_binary_with_env(
        env.dir.path(),
        &["check", "--config", "schedules.toml"],
        env_vars,
    );
    assert_eq!(output.code, Some(2), "{config}: {output:?}");
    assert_eq!(output.stdout, "");
    assert!(
        output.stderr.contains(expected),
        "{config}\nexpected {expected}\nin {}",
        output.stderr
    );
}

#[test]
fn check_refuses_an_empty_secret_naming_its_source() {
    let env = CliEnv::new();
    std::fs::write(env.dir.path().join("token"), "Token s3cret\n").expect("token file");
    let with_token_file = format!(
        "{UNUSED_REGISTRY}[notifications]\nlisten = \"0.0.0.0:5055\"\ntoken_file = \"{}\"\n",
        env.dir.path().join("token").display()
    );
    check_refuses(
        &[("REGKEEPER_NOTIFY_TOKEN", "")],
        &with_token_file,
        "schedules.toml: REGKEEPER_NOTIFY_TOKEN is set but empty (unset it, or give it a value)",
    );
    check_refuses(
        &[("REGKEEPER_REGISTRY_PASSWORD", "")],
        "[registry]\nurl = \"http://127.0.0.1:9\"\nusername = \"u\"\n",
        "schedules.toml: REGKEEPER_REGISTRY_PASSWORD is set but empty",
    );
    check_refuses(
        &[("REGKEEPER_DATABASE_PASSWORD", "")],
        "[registry]\nurl = \"http://127.0.0.1:9\"\n[database]\nurl = \"postgres://u@127.0.0.1:9/db\"\n",
        "REGKEEPER_DATABASE_PASSWORD is set but empty",
    );
    for empty in ["", "\n"] {
        std::fs::write(env.dir.path().join("token"), empty).expect("token file");
        check_refuses(
            &[],
            &with_token_file,
            &format!(
                "schedules.toml:7:14: [notifications] token_file: {} is empty (the file holds the secret alone)",
                env.dir.path().join("token").display()
            ),
        );
    }
}

#[test]
fn check_refuses_schedules_that_do_not_mean_what_they_say() {
    let job = |schedule: &str| {
        format!("{UNUSED_REGISTRY}[jobs.hourly]\nhandler = \"events\"\nschedule = \"{schedule}\"\n")
    };
    check_refuses(
        &[],
        &job("0 */61 * * * *"),
        "schedules.toml:7:12: job \"hourly\": schedule \"0 */61 * * * *\": minute step /61 is larger than the minute field (60 values), so it fires only at 0",
    );
    check_refuses(
        &[],
        &job("0 0 0 31 2 *"),
        "schedules.toml:7:12: job \"hourly\": schedule \"0 0 0 31 2 *\" has no fire time in the next 5 years",
    );
}

#[test]
fn check_refuses_a_v2_registry_url_a_wrong_scheme_and_a_database_in_a_missing_directory() {
    check_refuses(
        &[],
        "[registry]\nurl = \"http://127.0.0.1:5000/v2/\"\n",
        "schedules.toml:4:7: [registry] url: \"http://127.0.0.1:5000/v2/\" ends in /v2: the url is the registry's base, regkeeper adds /v2/ itself (write \"http://127.0.0.1:5000\")",
    );
    check_refuses(
        &[],
        "[registry]\nurl = \"http//127.0.0.1:5000\"\n",
        "schedules.toml:4:7: [registry] url: URL \"http//127.0.0.1:5000\" has no scheme (did you mean \"http://127.0.0.1:5000\"?)",
    );
    let env = CliEnv::new();
    env.write_config(&format!(
        "[database]\nurl = \"sqlite://no/such/dir/regkeeper.db\"\n{UNUSED_REGISTRY}"
    ));
    let output = run_binary(env.dir.path(), &["check", "--config", "schedules.toml"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(
        output.stderr.contains(
            "schedules.toml:2:7: [database] url: the directory no/such/dir of the database file no/such/dir/regkeeper.db does not exist"
        ),
        "{}",
        output.stderr
    );
}

#[test]
fn check_warns_about_insecure_skip_tls_verify() {
    let env = CliEnv::new();
    env.write_config(&format!(
        "{}[registry]\nurl = \"https://127.0.0.1:9\"\ninsecure_skip_tls_verify = true\n",
        env.sqlite_section()
    ));
    let output = run_binary(env.dir.path(), &["check", "--config", "schedules.toml"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output.stderr.contains(
            "warning: schedules.toml: [registry] insecure_skip_tls_verify = true: the registry's TLS certificate is not verified"
        ),
        "{}",
        output.stderr
    );
}

#[test]
fn the_sqlite_database_and_its_wal_files_are_created_0600() {
    use regkeeper::store::Store;
    use std::os::unix::fs::PermissionsExt as _;
    let env = CliEnv::new();
    let store = support::store::sqlite_file(&env.database_path());
    store
        .ensure_registry("127.0.0.1:9")
        .expect("a write, so the WAL exists");
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", env.database_path().display()));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{}: {:o}",
            path.display(),
            mode & 0o777
        );
    }
}

// ---- status shows what the daemon runs ----

/// A daemon on `backend` runs an events job and an `initial` sync of an
/// empty registry (which finishes for good at once); then the file on disk
/// changes. `status` shows the daemon's job set, the sync done for good,
/// and what the file changed.
fn status_shows_the_job_set_the_daemon_runs(backend: support::Backend) {
    use regkeeper::store::Store;
    let database = support::TestStore::new(backend);
    let registry = support::registry::TestRegistry::anonymous();
    let env = CliEnv::new();
    let head = format!(
        "[database]\nurl = \"{}\"\n[registry]\nurl = \"{}\"\n[notifications]\nlisten = \"\"\n",
        database.url(),
        registry.url
    );
    let jobs = "[jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n\
                [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nstrategy = \"initial\"\n";
    env.write_config(&format!("{head}{jobs}"));
    let mut daemon = support::daemon::Daemon::start(&env.config_path());
    support::wait::wait_until("the daemon recorded the sync finished for good", || {
        database
            .daemon_jobs()
            .expect("reading the daemon's jobs")
            .is_some_and(|set| set.jobs.iter().any(|job| job.finished_at.is_some()))
    });
    let recorded = database.daemon_jobs().unwrap().expect("a job set");
    let claimant = recorded.claimant.clone();
    assert!(
        claimant.contains(&format!(":{}:", daemon.pid())),
        "{claimant}"
    );

    // The file changes while the daemon runs on what it read.
    env.write_config(&format!(
        "{head}[jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/5 * * * * *\"\n\
         [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"* * * * * *\"\nstrategy = \"initial\"\n\
         [jobs.security-scan]\nhandler = \"security\"\nschedule = \"0 0 * * * *\"\nenabled = false\n"
    ));
    let output = env.run(&["status", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let status: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON");
    assert_eq!(status["daemon"]["claimant"], claimant.as_str());
    let jobs = status["jobs"].as_array().expect("jobs");
    let brief: Vec<(String, String, String, serde_json::Value)> = jobs
        .iter()
        .map(|job| {
            (
                job["name"].as_str().unwrap_or_default().to_string(),
                job["state"].as_str().unwrap_or_default().to_string(),
                job["schedule"].as_str().unwrap_or_default().to_string(),
                job["file_differs"].clone(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (
                "registry-events".to_string(),
                "enabled".to_string(),
                "*/2 * * * * *".to_string(),
                serde_json::json!(["schedule \"*/5 * * * * *\""])
            ),
            (
                "registry-sync".to_string(),
                "finished".to_string(),
                "* * * * * *".to_string(),
                serde_json::json!([])
            ),
            (
                "security-scan".to_string(),
                "not-running".to_string(),
                "0 0 * * * *".to_string(),
                serde_json::json!(["only in the file"])
            ),
        ]
    );
    assert_eq!(jobs[1]["enabled"], false);
    assert!(
        jobs[1]["finished_reason"]
            .as_str()
            .is_some_and(|reason| !reason.is_empty()),
        "{}",
        jobs[1]
    );
    let table = env.run(&["status"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(
        table
            .stdout
            .contains("job registry-sync (sync, done for good, \"* * * * * *\" UTC)"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains(
            "  the file on disk differs: schedule \"*/5 * * * * *\" (the daemon reads it at start-up)"
        ),
        "{}",
        table.stdout
    );
    assert_eq!(daemon.terminate(), 0, "{}", daemon.log());

    // A daemon started on the new file replaces the set: nothing differs.
    let mut second = support::daemon::Daemon::start(&env.config_path());
    support::wait::wait_until("the second daemon recorded its jobs", || {
        database
            .daemon_jobs()
            .expect("reading the daemon's jobs")
            .is_some_and(|set| set.claimant != claimant && set.jobs.len() == 3)
    });
    let status: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).expect("JSON");
    for job in status["jobs"].as_array().expect("jobs") {
        assert_eq!(job["file_differs"], serde_json::json!([]), "{job}");
    }
    assert_eq!(second.terminate(), 0, "{}", second.log());
}

support::both_backends!(status_shows_the_job_set_the_daemon_runs);

/// The subcommands every generated completion script and man page names.
const SUBCOMMANDS: [&str; 7] = [
    "check",
    "status",
    "tags",
    "vulns",
    "gc-log",
    "completions",
    "man",
];

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
            "regkeeper-gc-log.1",
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
