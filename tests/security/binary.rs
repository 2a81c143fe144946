//! The `security` job through the real binary (`--once`), and what `vulns`
//! and `status` show of its reports and errors.

use regkeeper::store::{Store, TagWrite};
use regkeeper_test_support as support;
use support::cli::CliEnv;
use support::registry::{PushedImage, TestRegistry};
use support::scanners::{Api, ScannerServer, Vuln};

use crate::T0;

#[test]
fn the_binary_scans_then_vulns_and_status_show_the_results() {
    let registry = TestRegistry::anonymous();
    let server = ScannerServer::start(Api::Clair);
    server.set(|s| {
        s.vulns = vec![
            Vuln::new("CVE-2016-9840", "Low", "", "zlib"),
            Vuln::new("CVE-2016-6301", "High", "1.24.2-r12", "busybox"),
        ]
    });
    let env = CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"{}\"\n", registry.url),
        &format!(
            "
[jobs.security-scan]
handler = \"security\"
schedule = \"*/10 * * * * *\"
enabled = false

[security.clair]
server = \"{}\"
timeout = \"30s\"
",
            server.url()
        ),
    );
    // The tag as the events or sync job would have recorded it.
    let image = registry.push_image("ns/app", "1.0");
    record_in_file(&env.database_path(), &registry, &image, "ns/app", "1.0");
    let output = env.run(&["--once", "security-scan"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout.contains("scanned=1"), "{}", output.stdout);

    let output = env.run(&["vulns", "ns/app:1.0"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ns/app:1.0 sha256:"),
        "{}",
        output.stdout
    );
    assert!(
        lines[0].ends_with(": 2 vulnerabilities"),
        "{}",
        output.stdout
    );
    assert!(
        lines[2].trim_start().starts_with("clair    current  "),
        "{}",
        output.stdout
    );
    assert!(
        lines[4]
            .trim_start()
            .starts_with("High      CVE-2016-6301  clair    1.24.2-r12"),
        "{}",
        output.stdout
    );
    assert!(
        lines[5]
            .trim_start()
            .starts_with("Low       CVE-2016-9840  clair    -"),
        "{}",
        output.stdout
    );

    let output = env.run(&["vulns", "ns/app:1.0", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(json["digest"], image.digest.as_str());
    assert_eq!(json["scan"], "done");
    assert_eq!(json["vulnerabilities"][0]["name"], "CVE-2016-6301");
    assert_eq!(json["vulnerabilities"][0]["metadata"]["package"], "busybox");

    let output = env.run(&["status", "--json"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(json["queues"]["vulnerabilities"]["High"], 1);
    assert_eq!(json["queues"]["vulnerabilities"]["Low"], 1);
    assert_eq!(json["queues"]["tags_by_scan"]["done"], 1);
    let output = env.run(&["status"]);
    assert!(
        output
            .stdout
            .contains("vulns         Critical=0 High=1 Medium=0 Low=1 Negligible=0 Unknown=0"),
        "{}",
        output.stdout
    );

    let output = env.run(&["vulns", "ns/app:nope"]);
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(
        output.stderr.contains("no tag ns/app:nope in the database"),
        "{}",
        output.stderr
    );
    let output = env.run(&["vulns", "ns/app"]);
    assert_eq!(output.code, Some(2), "{output:?}");
}

/// Records `image` as `repository:tag` in the SQLite file the binary uses,
/// as the events or sync job would have.
fn record_in_file(
    database: &std::path::Path,
    registry: &TestRegistry,
    image: &PushedImage,
    repository: &str,
    tag: &str,
) {
    let store = support::store::sqlite_file(database);
    let registry_id = store
        .ensure_registry(&regkeeper::jobs::registry_hostname(
            &url::Url::parse(&registry.url).unwrap(),
        ))
        .unwrap();
    store
        .upsert_tag(
            registry_id,
            &TagWrite {
                repository: repository.into(),
                tag: tag.into(),
                digest: image.digest.clone(),
                image_id: image.image_id.clone(),
                media_type: image.media_type.clone(),
                size: Some(image.size),
                platforms: None,
            },
            T0,
        )
        .unwrap();
}

/// `vulns` and `status` of the real binary show each scanner's report
/// and the last error of one whose latest attempt failed.
#[test]
fn status_and_vulns_show_each_scanners_report_and_last_error() {
    let registry = TestRegistry::anonymous();
    let clair = ScannerServer::start(Api::Clair);
    let adapter = ScannerServer::start(Api::Adapter);
    adapter.set(|s| s.fail_submit = Some((500, "scanner database unavailable".into())));
    let env = CliEnv::with_sqlite(
        &format!("[registry]\nurl = \"{}\"\n", registry.url),
        &format!(
            "
[jobs.security-scan]
handler = \"security\"
schedule = \"*/10 * * * * *\"
enabled = false

[security.clair]
server = \"{}\"
timeout = \"30s\"

[security.adapter]
server = \"{}\"
timeout = \"30s\"
",
            clair.url(),
            adapter.url()
        ),
    );
    let image = registry.push_image("ns/app", "1.0");
    record_in_file(&env.database_path(), &registry, &image, "ns/app", "1.0");
    let output = env.run(&["--once", "security-scan"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout.contains("failed=1"), "{}", output.stdout);

    let output = env.run(&["vulns", "ns/app:1.0"]);
    assert_eq!(output.code, Some(0), "{output:?}");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert!(
        lines[0].contains(" scan none") && lines[0].ends_with(": 2 vulnerabilities"),
        "{}",
        output.stdout
    );
    assert!(
        lines[1].trim_start().starts_with("SCANNER  REPORT"),
        "{}",
        output.stdout
    );
    assert!(
        lines[2].trim_start().starts_with("clair    current  "),
        "{}",
        output.stdout
    );
    assert!(
        lines[3].trim_start().starts_with("adapter  none     -")
            && lines[3].contains("scanner database unavailable (retry after "),
        "{}",
        output.stdout
    );

    let output = env.run(&["vulns", "ns/app:1.0", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(json["reports"][0]["scanner"], "clair");
    assert_eq!(json["reports"][0]["report"], "current");
    assert!(json["reports"][0]["scanned_at"].is_string());
    assert!(json["reports"][0]["last_error"].is_null());
    assert_eq!(json["reports"][1]["scanner"], "adapter");
    assert_eq!(json["reports"][1]["report"], "none");
    assert_eq!(json["reports"][1]["attempts"], 1);
    assert!(json["reports"][1]["last_error"]
        .as_str()
        .unwrap()
        .contains("scanner database unavailable"));
    assert!(json["reports"][1]["retry_after"].is_string());

    let output = env.run(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let scanners = json["scanners"].as_array().unwrap();
    assert_eq!(scanners[0]["scanner"], "clair");
    assert_eq!(scanners[0]["reports"], 1);
    assert_eq!(scanners[0]["failing"], 0);
    assert!(scanners[0]["last_report_at"].is_string());
    assert_eq!(scanners[1]["scanner"], "adapter");
    assert_eq!(scanners[1]["reports"], 0);
    assert_eq!(scanners[1]["failing"], 1);
    assert!(scanners[1]["last_report_at"].is_null());
    assert!(scanners[1]["last_error"]
        .as_str()
        .unwrap()
        .contains("scanner database unavailable"));
    let output = env.run(&["status"]);
    assert!(
        output
            .stdout
            .contains("scanners\n  SCANNER  ENABLED  REPORTS  FAILING"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.lines().any(|line| line
            .starts_with("  adapter  yes      0        1        -")
            && line.contains("scanner database unavailable")),
        "{}",
        output.stdout
    );
}
