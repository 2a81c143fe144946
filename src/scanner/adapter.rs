//! The Harbor pluggable scanner API v1.x, as served by the Trivy adapter.
//! `POST /api/v1/scan` with the registry URL, a pull credential and the
//! artifact (answer 202 with an id), then poll `GET
//! /api/v1/scan/{id}/report` asking for
//! `application/vnd.security.vulnerability.report; version=1.1` until it
//! answers 200; a 302 means "not ready", to be asked again after
//! `Refresh-After` seconds. Polling gives up after the scanner's `timeout`.

use anyhow::Context as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{dedupe_sorted, endpoint, metadata, Finding, Http, Settings, Severity, Target};

/// The report format asked for.
pub const REPORT_MEDIA_TYPE: &str = "application/vnd.security.vulnerability.report; version=1.1";
/// The scan request's media type.
pub const SCAN_REQUEST_MEDIA_TYPE: &str =
    "application/vnd.scanner.adapter.scan.request+json; version=1.0";
/// The scan response's media type.
pub const SCAN_RESPONSE_MEDIA_TYPE: &str =
    "application/vnd.scanner.adapter.scan.response+json; version=1.0";

/// Wait between polls when the adapter sends no `Refresh-After`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(1);
/// Longest wait between polls, whatever the adapter asks.
const MAX_REFRESH: Duration = Duration::from_secs(60);

/// A scanner-adapter client.
pub struct Adapter {
    name: String,
    server: url::Url,
    http: Http,
    timeout: Duration,
}

impl Adapter {
    /// Builds the client; `settings.server` is required (the adapter's base
    /// URL, without `/api/v1`).
    pub fn new(settings: &Settings) -> anyhow::Result<Adapter> {
        Ok(Adapter {
            name: settings.name.clone(),
            server: super::require_server(settings)?,
            http: Http::new(settings),
            timeout: settings.timeout,
        })
    }

    fn request_scan(&self, target: &Target) -> anyhow::Result<String> {
        let authorization = target.credential.authorization().map_err(|error| {
            anyhow::anyhow!(
                "getting a pull credential for {}: {error:#}",
                target.repository
            )
        })?;
        let request = ScanRequest {
            registry: RegistryBody {
                url: &target.registry_url,
                authorization: authorization.as_deref(),
            },
            artifact: Artifact {
                repository: &target.repository,
                digest: &target.digest,
                tag: &target.tag,
                mime_type: &target.media_type,
            },
        };
        let body = serde_json::to_vec(&request)
            .map_err(|error| anyhow::anyhow!("encoding the request: {error}"))?;
        let reply = self.http.post(
            &endpoint(&self.server, "/api/v1/scan"),
            SCAN_REQUEST_MEDIA_TYPE,
            SCAN_RESPONSE_MEDIA_TYPE,
            &body,
        )?;
        if !(200..300).contains(&reply.status) {
            anyhow::bail!("{}", reply.error_text());
        }
        let response: ScanResponse = serde_json::from_str(&reply.body)
            .map_err(|error| anyhow::anyhow!("not a scan response: {error}"))?;
        if response.id.is_empty() || response.id.contains('/') {
            anyhow::bail!("the scan response has no usable id");
        }
        Ok(response.id)
    }
}

impl super::Scanner for Adapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn scan(&self, target: &Target) -> anyhow::Result<Vec<Finding>> {
        let started = Instant::now();
        let id = self.request_scan(target).map_err(|error| {
            anyhow::anyhow!("asking the scanner to scan {}: {error:#}", target.digest)
        })?;
        let url = endpoint(&self.server, &format!("/api/v1/scan/{id}/report"));
        loop {
            let reply = self
                .http
                .get(&url, REPORT_MEDIA_TYPE)
                .with_context(|| format!("fetching scan report {id}"))?;
            match reply.status {
                200 => {
                    return parse_report(&reply.body)
                        .map_err(|error| anyhow::anyhow!("reading scan report {id}: {error:#}"));
                }
                302 => {
                    let wait = reply
                        .header("Refresh-After")
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(DEFAULT_REFRESH)
                        .min(MAX_REFRESH);
                    let elapsed = started.elapsed();
                    if elapsed + wait > self.timeout {
                        anyhow::bail!(
                            "scan report {id} not ready after {}",
                            humantime::format_duration(Duration::from_secs(self.timeout.as_secs()))
                        );
                    }
                    std::thread::sleep(wait);
                }
                _ => anyhow::bail!("fetching scan report {id}: {}", reply.error_text()),
            }
        }
    }
}

#[derive(Serialize)]
struct ScanRequest<'a> {
    registry: RegistryBody<'a>,
    artifact: Artifact<'a>,
}

#[derive(Serialize)]
struct RegistryBody<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<&'a str>,
}

#[derive(Serialize)]
struct Artifact<'a> {
    repository: &'a str,
    digest: &'a str,
    tag: &'a str,
    mime_type: &'a str,
}

#[derive(Deserialize)]
struct ScanResponse {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    vulnerabilities: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    fix_version: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    links: Option<Vec<String>>,
    #[serde(default)]
    preferred_cvss: Option<serde_json::Value>,
    #[serde(default)]
    cwe_ids: Option<serde_json::Value>,
    #[serde(default)]
    vendor_attributes: Option<serde_json::Value>,
}

/// Reads a Harbor vulnerability report (`version=1.1` or the older
/// `harbor+json; version=1.0`, same schema): its `vulnerabilities`
/// de-duplicated by id and sorted. `vulnerabilities: null` means none.
pub fn parse_report(body: &str) -> anyhow::Result<Vec<Finding>> {
    let report: Report = super::from_json(body, "not a vulnerability report")?;
    let mut findings = Vec::new();
    for item in report.vulnerabilities.unwrap_or_default() {
        let severity_raw = item.severity.clone().unwrap_or_default();
        let mut details = serde_json::Map::new();
        for (key, value) in [
            ("preferred_cvss", item.preferred_cvss),
            ("cwe_ids", item.cwe_ids),
            ("vendor_attributes", item.vendor_attributes),
        ] {
            if let Some(value) = value.filter(|value| !value.is_null()) {
                details.insert(key.to_string(), value);
            }
        }
        findings.push(Finding {
            name: item.id.unwrap_or_default(),
            severity: Severity::normalise(&severity_raw),
            severity_raw,
            link: item.links.unwrap_or_default().join(" "),
            fixed_by: item.fix_version.unwrap_or_default(),
            description: item.description.unwrap_or_default(),
            metadata: metadata(
                None,
                item.package.as_deref(),
                item.version.as_deref(),
                (!details.is_empty()).then_some(serde_json::Value::Object(details)),
            ),
        });
    }
    Ok(dedupe_sorted(findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{
      "generated_at": "2024-05-01T10:00:00Z",
      "artifact": {"repository": "library/mongo", "digest": "sha256:6c3c", "mime_type": "application/vnd.docker.distribution.manifest.v2+json"},
      "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.50.0"},
      "severity": "High",
      "vulnerabilities": [
        {"id": "CVE-2017-8283", "package": "dpkg", "version": "1.17.27", "fix_version": "1.18.0",
         "severity": "High", "description": "dpkg-source directory traversal",
         "links": ["https://tracker.example/CVE-2017-8283", "https://nvd.example/CVE-2017-8283"],
         "preferred_cvss": {"score_v3": 9.8, "vector_v3": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
         "cwe_ids": ["CWE-22"], "vendor_attributes": {"CVSS": {"nvd": {"V3Score": 9.8}}}},
        {"id": "CVE-2019-0001", "package": "zlib", "version": "1.2", "severity": "Critical"},
        {"id": "CVE-2017-8283", "package": "dpkg-dev", "version": "1.17.27", "severity": "Low"},
        {"id": "GHSA-xxxx", "package": "lodash", "version": "4.0.0", "severity": "UNKNOWN"}
      ]
    }"#;

    #[test]
    fn a_harbor_report_gives_findings() {
        let findings = parse_report(REPORT).unwrap();
        let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["CVE-2017-8283", "CVE-2019-0001", "GHSA-xxxx"]);
        let dpkg = &findings[0];
        assert_eq!(dpkg.severity, Severity::High);
        assert_eq!(dpkg.fixed_by, "1.18.0");
        assert_eq!(
            dpkg.link,
            "https://tracker.example/CVE-2017-8283 https://nvd.example/CVE-2017-8283"
        );
        assert_eq!(dpkg.metadata["package"], "dpkg");
        assert_eq!(dpkg.metadata["details"]["preferred_cvss"]["score_v3"], 9.8);
        assert_eq!(dpkg.metadata["details"]["cwe_ids"][0], "CWE-22");
        assert_eq!(findings[1].severity, Severity::Critical);
        assert_eq!(findings[1].fixed_by, "");
        assert_eq!(findings[2].severity, Severity::Unknown);
        assert_eq!(findings[2].severity_raw, "UNKNOWN");
    }

    #[test]
    fn null_vulnerabilities_are_none() {
        assert!(parse_report(r#"{"vulnerabilities": null}"#)
            .unwrap()
            .is_empty());
        assert!(parse_report(r#"{"generated_at": "2024-05-01T10:00:00Z"}"#)
            .unwrap()
            .is_empty());
        assert!(parse_report("<html>").is_err());
    }

    #[test]
    fn the_scan_request_names_registry_and_artifact() {
        let request = ScanRequest {
            registry: RegistryBody {
                url: "http://127.0.0.1:5000",
                authorization: Some("Bearer t"),
            },
            artifact: Artifact {
                repository: "ns/app",
                digest: "sha256:m",
                tag: "1.0",
                mime_type: "application/vnd.oci.image.manifest.v1+json",
            },
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"registry":{"url":"http://127.0.0.1:5000","authorization":"Bearer t"},"artifact":{"repository":"ns/app","digest":"sha256:m","tag":"1.0","mime_type":"application/vnd.oci.image.manifest.v1+json"}}"#
        );
    }
}
