//! Clair v4. For each image: `GET /indexer/api/v1/index_state`; when this
//! client has not indexed the manifest under that state yet, `POST
//! /indexer/api/v1/index_report` with the manifest (`hash`, and each layer's
//! `uri` and `headers`); then `GET /matcher/api/v1/vulnerability_report/{digest}`.
//! Both the index and the report answer 201 on success (200 is accepted
//! too). A report answered 404 (Clair lost the manifest) re-indexes once.
//!
//! The states under which manifests were indexed are kept in memory: after
//! a restart every manifest is submitted once more, which Clair answers
//! quickly when nothing changed.

use anyhow::Context as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{dedupe_sorted, endpoint, metadata, Finding, Http, Settings, Severity, Target};

/// Manifests indexed under one state are forgotten beyond this many.
const MAX_REMEMBERED: usize = 100_000;

/// A Clair v4 client.
pub struct Clair4 {
    name: String,
    server: url::Url,
    http: Http,
    /// Manifest digest -> the index state it was indexed under.
    indexed: Mutex<HashMap<String, String>>,
}

impl Clair4 {
    /// Builds the client; `settings.server` is required.
    pub fn new(settings: &Settings) -> anyhow::Result<Clair4> {
        Ok(Clair4 {
            name: settings.name.clone(),
            server: super::require_server(settings)?,
            http: Http::new(settings),
            indexed: Mutex::new(HashMap::new()),
        })
    }

    fn index_state(&self) -> anyhow::Result<String> {
        let reply = self.http.get(
            &endpoint(&self.server, "/indexer/api/v1/index_state"),
            "application/json",
        )?;
        if reply.status != 200 {
            anyhow::bail!("{}", reply.error_text());
        }
        let state: IndexState = serde_json::from_str(&reply.body)
            .map_err(|error| anyhow::anyhow!("not an index state: {error}"))?;
        Ok(state.state)
    }

    fn remembered_state(&self, digest: &str) -> Option<String> {
        self.indexed.lock().ok()?.get(digest).cloned()
    }

    fn remember(&self, digest: &str, state: Option<&str>) {
        if let Ok(mut indexed) = self.indexed.lock() {
            match state {
                Some(state) => {
                    if indexed.len() >= MAX_REMEMBERED {
                        indexed.clear();
                    }
                    indexed.insert(digest.to_string(), state.to_string());
                }
                None => {
                    indexed.remove(digest);
                }
            }
        }
    }

    fn index(&self, target: &Target) -> anyhow::Result<()> {
        let authorization = target.credential.authorization().map_err(|error| {
            anyhow::anyhow!(
                "getting a pull credential for {}: {error:#}",
                target.repository
            )
        })?;
        let layers = target
            .scannable_layers()
            .into_iter()
            .map(|layer| {
                let mut headers = BTreeMap::new();
                if let Some(authorization) = &authorization {
                    headers.insert("Authorization".to_string(), vec![authorization.clone()]);
                }
                ManifestLayer {
                    hash: layer.digest.clone(),
                    uri: layer.url.clone(),
                    headers,
                }
            })
            .collect();
        let manifest = ManifestBody {
            hash: target.digest.clone(),
            layers,
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|error| anyhow::anyhow!("encoding the manifest: {error}"))?;
        let reply = self.http.post(
            &endpoint(&self.server, "/indexer/api/v1/index_report"),
            "application/json",
            "application/json",
            &body,
        )?;
        if reply.status != 201 && reply.status != 200 {
            anyhow::bail!("{}", reply.error_text());
        }
        parse_index_report(&reply.body)
    }

    fn report(&self, digest: &str) -> anyhow::Result<Option<Vec<Finding>>> {
        let url = endpoint(
            &self.server,
            &format!("/matcher/api/v1/vulnerability_report/{digest}"),
        );
        let reply = self.http.get(&url, "application/json")?;
        match reply.status {
            200 | 201 => parse_vulnerability_report(&reply.body).map(Some),
            404 => Ok(None),
            _ => anyhow::bail!("{}", reply.error_text()),
        }
    }
}

impl super::Scanner for Clair4 {
    fn name(&self) -> &str {
        &self.name
    }

    fn scan(&self, target: &Target) -> anyhow::Result<Vec<Finding>> {
        let state = self
            .index_state()
            .context("asking clair for its index state")?;
        if self.remembered_state(&target.digest).as_deref() != Some(state.as_str()) {
            self.index(target)
                .with_context(|| format!("indexing {} in clair", target.digest))?;
            self.remember(&target.digest, Some(&state));
        }
        let report = self
            .report(&target.digest)
            .with_context(|| format!("fetching clair's report of {}", target.digest))?;
        if let Some(findings) = report {
            return Ok(findings);
        }
        // Clair no longer knows the manifest (its database was reset): index
        // it again and ask once more.
        self.remember(&target.digest, None);
        self.index(target)
            .with_context(|| format!("indexing {} in clair again", target.digest))?;
        self.remember(&target.digest, Some(&state));
        match self
            .report(&target.digest)
            .with_context(|| format!("fetching clair's report of {}", target.digest))?
        {
            Some(findings) => Ok(findings),
            None => anyhow::bail!(
                "clair has no report of {} even after indexing it",
                target.digest
            ),
        }
    }
}

#[derive(Serialize)]
struct ManifestBody {
    hash: String,
    layers: Vec<ManifestLayer>,
}

#[derive(Serialize)]
struct ManifestLayer {
    hash: String,
    uri: String,
    headers: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct IndexState {
    state: String,
}

#[derive(Deserialize)]
struct IndexReport {
    #[serde(default)]
    state: String,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    err: Option<String>,
}

/// Reads the answer of `POST /indexer/api/v1/index_report`: an error when
/// Clair says the index did not succeed.
pub fn parse_index_report(body: &str) -> anyhow::Result<()> {
    let report: IndexReport = super::from_json(body, "not an index report")?;
    if report.success == Some(false) || report.state == "IndexError" {
        // Without Clair's own err, say which of the two fields told.
        let reason =
            report
                .err
                .filter(|err| !err.is_empty())
                .unwrap_or_else(|| match report.success {
                    Some(false) => format!("success is false (state {:?})", report.state),
                    _ => format!("state {:?}", report.state),
                });
        anyhow::bail!("index failed: {reason}");
    }
    Ok(())
}

#[derive(Deserialize)]
struct VulnerabilityReport {
    #[serde(default)]
    vulnerabilities: Option<BTreeMap<String, Vulnerability>>,
}

#[derive(Deserialize)]
struct Vulnerability {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    updater: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    issued: Option<String>,
    #[serde(default)]
    links: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    normalized_severity: Option<String>,
    #[serde(default)]
    fixed_in_version: Option<String>,
    #[serde(default)]
    package: Option<Package>,
    #[serde(default)]
    dist: Option<serde_json::Value>,
    #[serde(default)]
    repo: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// Reads a `vulnerability_report`: every vulnerability (in the order of
/// their report ids), de-duplicated by name and sorted. The severity is
/// Clair's `normalized_severity` when it is one of the common words, else
/// the vendor word normalised; the vendor word is kept as the raw severity.
pub fn parse_vulnerability_report(body: &str) -> anyhow::Result<Vec<Finding>> {
    let report: VulnerabilityReport = super::from_json(body, "not a vulnerability report")?;
    let mut findings = Vec::new();
    for (_, vulnerability) in report.vulnerabilities.unwrap_or_default() {
        let vendor = vulnerability.severity.clone().unwrap_or_default();
        let normalised = vulnerability
            .normalized_severity
            .clone()
            .unwrap_or_default();
        let severity =
            Severity::from_stored(&normalised).unwrap_or_else(|| Severity::normalise(&vendor));
        let severity_raw = if vendor.is_empty() {
            normalised
        } else {
            vendor
        };
        let namespace = vulnerability
            .dist
            .as_ref()
            .and_then(|dist| {
                let did = dist.get("did")?.as_str()?;
                let version = dist
                    .get("version_id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                Some(if version.is_empty() {
                    did.to_string()
                } else {
                    format!("{did}:{version}")
                })
            })
            .or_else(|| vulnerability.updater.clone());
        let mut details = serde_json::Map::new();
        for (key, value) in [
            (
                "updater",
                vulnerability.updater.clone().map(serde_json::Value::String),
            ),
            (
                "issued",
                vulnerability.issued.clone().map(serde_json::Value::String),
            ),
            ("dist", vulnerability.dist.clone()),
            ("repo", vulnerability.repo.clone()),
        ] {
            if let Some(value) = value.filter(|value| !value.is_null()) {
                details.insert(key.to_string(), value);
            }
        }
        let package = vulnerability.package.as_ref();
        findings.push(Finding {
            name: vulnerability.name.clone().unwrap_or_default(),
            severity,
            severity_raw,
            link: vulnerability.links.clone().unwrap_or_default(),
            fixed_by: vulnerability.fixed_in_version.clone().unwrap_or_default(),
            description: vulnerability.description.clone().unwrap_or_default(),
            metadata: metadata(
                namespace.as_deref(),
                package.and_then(|p| p.name.as_deref()),
                package.and_then(|p| p.version.as_deref()),
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
      "manifest_hash": "sha256:fc84",
      "packages": {"0": {"id": "0", "name": "glibc", "version": "2.27-0ubuntu1"}},
      "distributions": {"0": {"id": "0", "did": "ubuntu", "version_id": "18.04"}},
      "environments": {},
      "package_vulnerabilities": {"0": ["356835", "356836", "356837"]},
      "vulnerabilities": {
        "356835": {
          "id": "356835", "updater": "ubuntu", "name": "CVE-2009-5155",
          "description": "parse_reg_exp misparses alternatives",
          "links": "https://cve.example/CVE-2009-5155 https://bugs.example/11053",
          "severity": "Low", "normalized_severity": "Low",
          "package": {"id": "0", "name": "glibc", "version": "2.27-0ubuntu1", "kind": "binary", "source": null},
          "dist": {"id": "0", "did": "ubuntu", "name": "Ubuntu", "version_id": "18.04", "arch": "amd64"},
          "repo": {"id": "0", "name": "Ubuntu 18.04.3 LTS"},
          "issued": "2019-10-12T07:20:50.52Z",
          "fixed_in_version": "2.28-0ubuntu1"
        },
        "356836": {
          "id": "356836", "updater": "ubuntu", "name": "CVE-2018-11236",
          "severity": "Moderate", "normalized_severity": "Medium",
          "package": {"id": "0", "name": "glibc", "version": "2.27-0ubuntu1"}
        },
        "356837": {
          "id": "356837", "updater": "osv", "name": "CVE-2009-5155",
          "severity": "", "normalized_severity": "High"
        }
      }
    }"#;

    #[test]
    fn a_vulnerability_report_gives_findings() {
        let findings = parse_vulnerability_report(REPORT).unwrap();
        let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["CVE-2009-5155", "CVE-2018-11236"]);
        let glibc = &findings[0];
        assert_eq!(glibc.severity, Severity::Low);
        assert_eq!(glibc.severity_raw, "Low");
        assert_eq!(glibc.fixed_by, "2.28-0ubuntu1");
        assert_eq!(
            glibc.link,
            "https://cve.example/CVE-2009-5155 https://bugs.example/11053"
        );
        assert_eq!(glibc.metadata["namespace"], "ubuntu:18.04");
        assert_eq!(glibc.metadata["package"], "glibc");
        assert_eq!(
            glibc.metadata["details"]["issued"],
            "2019-10-12T07:20:50.52Z"
        );
        let moderate = &findings[1];
        assert_eq!(moderate.severity, Severity::Medium);
        assert_eq!(moderate.severity_raw, "Moderate");
    }

    #[test]
    fn a_report_without_vulnerabilities_is_empty() {
        let body = r#"{"manifest_hash":"sha256:x","packages":{},"distributions":{},"environments":{},
          "package_vulnerabilities":{},"vulnerabilities":{}}"#;
        assert!(parse_vulnerability_report(body).unwrap().is_empty());
        assert!(parse_vulnerability_report("not json").is_err());
    }

    #[test]
    fn a_failed_index_is_an_error() {
        assert!(parse_index_report(
            r#"{"manifest_hash":"sha256:x","state":"IndexFinished","success":true}"#
        )
        .is_ok());
        let error = parse_index_report(
            r#"{"manifest_hash":"sha256:x","state":"IndexError","success":false,"err":"fetching layer: 401"}"#,
        )
        .unwrap_err();
        assert_eq!(format!("{error:#}"), "index failed: fetching layer: 401");
    }

    #[test]
    fn index_failed_by_success_false_names_success_not_the_finished_state() {
        let error = parse_index_report(r#"{"state":"IndexFinished","success":false}"#).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "index failed: success is false (state \"IndexFinished\")"
        );
    }

    #[test]
    fn the_manifest_body_has_headers_as_lists() {
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_string(), vec!["Bearer t".to_string()]);
        let body = ManifestBody {
            hash: "sha256:m".into(),
            layers: vec![ManifestLayer {
                hash: "sha256:a".into(),
                uri: "http://registry/v2/app/blobs/sha256:a".into(),
                headers,
            }],
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"hash":"sha256:m","layers":[{"hash":"sha256:a","uri":"http://registry/v2/app/blobs/sha256:a","headers":{"Authorization":["Bearer t"]}}]}"#
        );
    }
}
