//! Each scanner API's client on its own against its stand-in: what it
//! sends, how it reads the reports, and which answers are errors.

use std::sync::Arc;
use std::time::Duration;

use regkeeper::scanner::{
    self, FixedCredential, Layer, Scanner, ScannerKind, Settings, Severity, Target,
};
use regkeeper_test_support::scanners::{unreachable_url, Api, ScannerServer, Vuln};

use crate::settings;

fn client(kind: ScannerKind, server: &str) -> Arc<dyn Scanner> {
    scanner::build(kind, &settings("test", server, Duration::from_secs(10))).unwrap()
}

/// A target whose layers live at made-up URLs (the stand-ins only fetch
/// them when told to).
fn target(layers: &[&str]) -> Target {
    Target {
        repository: "ns/app".into(),
        tag: "1.0".into(),
        digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        layers: layers
            .iter()
            .map(|digest| Layer {
                digest: digest.to_string(),
                media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                url: format!("http://registry.invalid/v2/ns/app/blobs/{digest}"),
            })
            .collect(),
        registry_url: "http://registry.invalid".into(),
        credential: Arc::new(FixedCredential(Some("Bearer pull-token".into()))),
    }
}

const LAYER_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LAYER_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const LAYER_C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

#[test]
fn clair_posts_layers_base_first_with_parents_and_reads_the_top_layer() {
    let server = ScannerServer::start(Api::Clair);
    server.set(|s| {
        s.vulns = vec![
            Vuln::new("CVE-2016-9840", "Medium", "1.2.11", "zlib"),
            Vuln::new("CVE-2016-10000", "Low", "", "zlib"),
            Vuln::new("CVE-2016-9840", "High", "other", "zlib-dev"),
        ]
    });
    let findings = client(ScannerKind::Clair, &server.url())
        .scan(&target(&[
            LAYER_A,
            scanner::EMPTY_LAYER_DIGEST,
            LAYER_B,
            LAYER_C,
        ]))
        .unwrap();
    let posts = server.requests_to("POST", "/v1/layers");
    let chain: Vec<(String, String)> = posts
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["Layer"]["Name"].as_str().unwrap().to_string(),
                body["Layer"]["ParentName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            (LAYER_A.to_string(), String::new()),
            (LAYER_B.to_string(), LAYER_A.to_string()),
            (LAYER_C.to_string(), LAYER_B.to_string()),
        ]
    );
    let first = posts[0].json();
    assert_eq!(
        first["Layer"]["Headers"]["Authorization"],
        "Bearer pull-token"
    );
    assert_eq!(
        first["Layer"]["Path"],
        format!("http://registry.invalid/v2/ns/app/blobs/{LAYER_A}")
    );
    assert_eq!(first["Layer"]["Format"], "Docker");
    let gets = server.requests_to("GET", "/v1/layers/");
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].path(), format!("/v1/layers/{LAYER_C}"));
    let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["CVE-2016-10000", "CVE-2016-9840"]);
    assert_eq!(findings[1].fixed_by, "1.2.11");
    assert_eq!(findings[1].severity, Severity::Medium);
}

#[test]
fn clair_features_null_is_a_clean_result() {
    let server = ScannerServer::start(Api::Clair);
    server.set(|s| s.features_null = true);
    let findings = client(ScannerKind::Clair, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap();
    assert!(findings.is_empty());
}

#[test]
fn clair_errors_are_errors_not_empty_results() {
    let server = ScannerServer::start(Api::Clair);
    server.set(|s| {
        s.fail_submit = Some((
            401,
            r#"{"Error":{"Message":"Something went wrong when posting"}}"#.into(),
        ))
    });
    let error = client(ScannerKind::Clair, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("Something went wrong when posting"),
        "{error:#}"
    );

    server.set(|s| {
        s.fail_submit = None;
        s.fail_report = Some((
            400,
            r#"{"Error":{"Message":"Something went wrong when fetching"}}"#.into(),
        ));
    });
    let error = client(ScannerKind::Clair, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("answered 400: Something went wrong when fetching"),
        "{error:#}"
    );

    // A proxy's HTML error page is an error, not a crash.
    server.set(|s| s.fail_report = Some((502, "<html><body>502 Bad Gateway</body></html>".into())));
    let error = client(ScannerKind::Clair, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("502 Bad Gateway"),
        "{error:#}"
    );

    // 200 without a layer.
    server.set(|s| s.fail_report = Some((200, r#"{"Error":{"Message":"odd"}}"#.into())));
    let error = client(ScannerKind::Clair, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("without a layer: odd"),
        "{error:#}"
    );
}

#[test]
fn clair_unreachable_or_slow_is_an_error() {
    let error = client(ScannerKind::Clair, &unreachable_url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(format!("{error:#}").contains("posting layer"), "{error:#}");

    let server = ScannerServer::start(Api::Clair);
    server.set(|s| s.delay = Duration::from_secs(3));
    let slow = scanner::build(
        ScannerKind::Clair,
        &settings("slow", &server.url(), Duration::from_millis(300)),
    )
    .unwrap();
    let error = slow.scan(&target(&[LAYER_A])).unwrap_err();
    assert!(format!("{error:#}").contains("timed out"), "{error:#}");
}

#[test]
fn clair4_indexes_once_per_index_state_and_reads_the_report() {
    let server = ScannerServer::start(Api::Clair4);
    let clair4 = client(ScannerKind::Clair4, &server.url());
    let image = target(&[LAYER_A, LAYER_B]);
    let findings = clair4.scan(&image).unwrap();
    assert_eq!(
        findings.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["CVE-2016-6301", "CVE-2016-8859"]
    );
    assert_eq!(findings[0].severity, Severity::High);
    assert_eq!(findings[0].metadata["package"], "busybox");
    let posts = server.requests_to("POST", "/indexer/api/v1/index_report");
    assert_eq!(posts.len(), 1);
    let manifest = posts[0].json();
    assert_eq!(manifest["hash"], image.digest.as_str());
    assert_eq!(manifest["layers"][1]["hash"], LAYER_B);
    assert_eq!(manifest["layers"][1]["uri"], image.layers[1].url.as_str());
    assert_eq!(
        manifest["layers"][1]["headers"]["Authorization"][0],
        "Bearer pull-token"
    );

    // Same state: the report alone.
    clair4.scan(&image).unwrap();
    assert_eq!(
        server
            .requests_to("POST", "/indexer/api/v1/index_report")
            .len(),
        1
    );
    assert_eq!(
        server
            .requests_to("GET", "/matcher/api/v1/vulnerability_report/")
            .len(),
        2
    );

    // The indexer changed: index again.
    server.set(|s| s.index_state = "state-2".into());
    clair4.scan(&image).unwrap();
    assert_eq!(
        server
            .requests_to("POST", "/indexer/api/v1/index_report")
            .len(),
        2
    );

    // Clair lost the manifest: the 404 report leads to one more index.
    server.forget();
    clair4.scan(&image).unwrap();
    assert_eq!(
        server
            .requests_to("POST", "/indexer/api/v1/index_report")
            .len(),
        3
    );
}

#[test]
fn clair4_errors_are_errors() {
    let server = ScannerServer::start(Api::Clair4);
    server.set(|s| {
        s.fail_submit = Some((
            500,
            r#"{"code":"internal","message":"database gone"}"#.into(),
        ))
    });
    let error = client(ScannerKind::Clair4, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(format!("{error:#}").contains("database gone"), "{error:#}");
    let error = client(ScannerKind::Clair4, &unreachable_url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(format!("{error:#}").contains("index state"), "{error:#}");
}

#[test]
fn adapter_polls_through_302_until_the_harbor_report() {
    let server = ScannerServer::start(Api::Adapter);
    server.set(|s| {
        s.pending_polls = 3;
        s.refresh_after = 0;
        s.vulns = vec![
            Vuln::new("CVE-2017-8283", "Critical", "1.18.0", "dpkg"),
            Vuln::new("CVE-2017-8283", "Low", "", "dpkg-dev"),
            Vuln::new("GHSA-1234", "Unknown", "", "lodash"),
        ];
    });
    let image = target(&[LAYER_A]);
    let findings = client(ScannerKind::Adapter, &server.url())
        .scan(&image)
        .unwrap();
    assert_eq!(
        findings.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["CVE-2017-8283", "GHSA-1234"]
    );
    assert_eq!(findings[0].severity, Severity::Critical);
    assert_eq!(findings[0].fixed_by, "1.18.0");
    let scans = server.requests_to("POST", "/api/v1/scan");
    assert_eq!(scans.len(), 1);
    let request = scans[0].json();
    assert_eq!(request["registry"]["url"], "http://registry.invalid");
    assert_eq!(request["registry"]["authorization"], "Bearer pull-token");
    assert_eq!(request["artifact"]["repository"], "ns/app");
    assert_eq!(request["artifact"]["digest"], image.digest.as_str());
    assert_eq!(request["artifact"]["tag"], "1.0");
    assert_eq!(
        scans[0].header("content-type"),
        Some("application/vnd.scanner.adapter.scan.request+json; version=1.0")
    );
    let polls = server.requests_to("GET", "/api/v1/scan/");
    assert_eq!(polls.len(), 4, "three 302s, then the report");
    assert_eq!(
        polls[0].header("accept"),
        Some("application/vnd.security.vulnerability.report; version=1.1")
    );
}

#[test]
fn adapter_gives_up_polling_after_its_timeout() {
    let server = ScannerServer::start(Api::Adapter);
    server.set(|s| {
        s.pending_polls = 1000;
        s.refresh_after = 1;
    });
    let adapter = scanner::build(
        ScannerKind::Adapter,
        &settings("trivy", &server.url(), Duration::from_secs(2)),
    )
    .unwrap();
    let error = adapter.scan(&target(&[LAYER_A])).unwrap_err();
    assert!(format!("{error:#}").contains("not ready"), "{error:#}");

    server.set(|s| s.fail_report = Some((500, r#"{"error":{"message":"trivy failed"}}"#.into())));
    let error = client(ScannerKind::Adapter, &server.url())
        .scan(&target(&[LAYER_A]))
        .unwrap_err();
    assert!(format!("{error:#}").contains("trivy failed"), "{error:#}");
}

#[test]
fn fixture_reports_the_file_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dummy.json");
    std::fs::write(
        &path,
        r#"[{"Name":"CVE-2016-6304","Link":"https://cve.example/CVE-2016-6304","Severity":"High"},
            {"Name":"CVE-2016-2178","Link":"https://cve.example/CVE-2016-2178","Severity":"Low"}]"#,
    )
    .unwrap();
    let fixture = scanner::build(
        ScannerKind::Fixture,
        &Settings {
            name: "dummy".into(),
            server: None,
            timeout: Duration::from_secs(1),
            authorization: None,
            file: Some(path),
        },
    )
    .unwrap();
    let findings = fixture.scan(&target(&[LAYER_A])).unwrap();
    assert_eq!(
        findings.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["CVE-2016-2178", "CVE-2016-6304"]
    );
}
