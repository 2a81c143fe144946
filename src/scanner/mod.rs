//! Vulnerability scanner clients, one file per API: `clair.rs` (Clair v2,
//! API v1), `clair4.rs` (Clair v4), `adapter.rs` (the Harbor pluggable
//! scanner API v1.x as served by the Trivy adapter) and `fixture.rs` (a JSON
//! file in Portus's "dummy" format). Pure report parsers live beside the HTTP
//! code and are unit tested on literal inputs.
//!
//! This module owns the common vocabulary: a [`Target`] (one image manifest
//! and where its blobs are), a [`Finding`] (one vulnerability as a scanner
//! reported it, with a normalised [`Severity`]), the [`Scanner`] trait, and
//! the HTTP helper every client uses. Only this folder talks to scanners.
//! It never touches the database and never decides when to scan: that is
//! `jobs/security.rs`.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod adapter;
pub(crate) mod clair;
pub(crate) mod clair4;
pub(crate) mod fixture;

/// The empty gzip'd tar that Docker puts in manifests for layers without
/// content. Scanners cannot index it, so it is skipped.
pub const EMPTY_LAYER_DIGEST: &str =
    "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

/// Largest scanner answer read into memory.
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// The common severity scale (Clair's and Harbor's), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Not rated, or a word no scale knows.
    Unknown,
    /// Theoretical only.
    Negligible,
    /// Hard to exploit.
    Low,
    /// A real problem for many.
    Medium,
    /// Exploitable in a default installation.
    High,
    /// World-burning.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The word stored in `vulnerabilities.severity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Negligible => "Negligible",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// Maps a scanner's own word onto the common scale, ignoring case and
    /// surrounding space. Words of other scales (`Moderate`, `Important`,
    /// Clair v2's `Defcon1`) are mapped to their neighbours; anything else
    /// is `Unknown`.
    pub fn normalise(word: &str) -> Severity {
        match word.trim().to_ascii_lowercase().as_str() {
            "negligible" | "none" | "informational" | "info" => Severity::Negligible,
            "low" | "minor" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" | "major" => Severity::High,
            "critical" | "defcon1" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }

    /// Parses a word written by [`Severity::as_str`] (exact, as stored).
    pub fn from_stored(word: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == word)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One vulnerability as a scanner reported it for an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Identifier, e.g. `CVE-2016-6301`.
    pub name: String,
    /// Normalised severity.
    pub severity: Severity,
    /// The scanner's own severity word.
    pub severity_raw: String,
    /// Link(s) to more information, space-separated when several.
    pub link: String,
    /// The version that fixes it, empty when none is known.
    pub fixed_by: String,
    /// Human-readable description.
    pub description: String,
    /// Everything else the scanner said, as a JSON object (`namespace`,
    /// `package`, `version`, `details`), or `Null` when it said nothing.
    pub metadata: serde_json::Value,
}

/// Keeps the first finding of each name (dropping blank names) and sorts by
/// name, byte-wise (`CVE-2016-10000` before `CVE-2016-9840`), as Portus did.
pub(crate) fn dedupe_sorted(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Finding> = findings
        .into_iter()
        .filter(|finding| !finding.name.trim().is_empty() && seen.insert(finding.name.clone()))
        .collect();
    kept.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    kept
}

/// Hands out the `Authorization` header value a scanner sends to the
/// registry to pull blobs (a pull-scoped bearer token, or Basic). Asked
/// again before each request so a long scan never carries an expired token.
pub trait PullCredential: Send + Sync {
    /// The header value, or None when the registry needs no credentials.
    fn authorization(&self) -> anyhow::Result<Option<String>>;
}

/// A credential that never changes (tests, anonymous registries).
pub struct FixedCredential(pub Option<String>);

impl PullCredential for FixedCredential {
    fn authorization(&self) -> anyhow::Result<Option<String>> {
        Ok(self.0.clone())
    }
}

/// One layer of an image, base first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:...`.
    pub digest: String,
    /// The layer's media type.
    pub media_type: String,
    /// Where the scanner downloads it: the registry's blob URL.
    pub url: String,
}

/// One image manifest to scan.
#[derive(Clone)]
pub struct Target {
    /// A repository that holds the manifest.
    pub repository: String,
    /// A tag naming it there (some scanners want one).
    pub tag: String,
    /// The manifest digest: the unit of work and of results.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// Layers, base first, as the manifest lists them.
    pub layers: Vec<Layer>,
    /// The registry's base URL as a scanner reaches it.
    pub registry_url: String,
    /// The credential scanners use to pull blobs.
    pub credential: Arc<dyn PullCredential>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("repository", &self.repository)
            .field("tag", &self.tag)
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .field("layers", &self.layers)
            .field("registry_url", &self.registry_url)
            .field("credential", &crate::config::REDACTED)
            .finish()
    }
}

impl Target {
    /// The layers a scanner should index: without the empty layer and
    /// without repeats (a repeated digest would be its own parent), base
    /// first.
    pub fn scannable_layers(&self) -> Vec<&Layer> {
        let mut seen = HashSet::new();
        self.layers
            .iter()
            .filter(|layer| {
                layer.digest != EMPTY_LAYER_DIGEST && seen.insert(layer.digest.as_str())
            })
            .collect()
    }
}

/// A vulnerability scanner.
pub trait Scanner: Send + Sync {
    /// The scanner's name (`[security.NAME]`), stored in the `scanner` column.
    fn name(&self) -> &str;
    /// Scans one image. Returns its findings de-duplicated by name and
    /// sorted; any failure (unreachable, timeout, error answer, unreadable
    /// report) is an error, never an empty result.
    fn scan(&self, target: &Target) -> anyhow::Result<Vec<Finding>>;
}

/// Which API a scanner speaks: the one enum, defined with the
/// configuration that names it.
pub use crate::config::ScannerKind;

/// How a client reaches one scanner.
#[derive(Clone)]
pub struct Settings {
    /// The `[security.NAME]` name.
    pub name: String,
    /// Base URL of the scanner (unused by `fixture`).
    pub server: Option<url::Url>,
    /// Per-request timeout (and the adapter's polling deadline).
    pub timeout: Duration,
    /// `Authorization` header value sent to the scanner itself; never logged.
    pub authorization: Option<String>,
    /// The fixture file.
    pub file: Option<std::path::PathBuf>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("server", &self.server.as_ref().map(|url| url.as_str()))
            .field("timeout", &self.timeout)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| crate::config::REDACTED),
            )
            .field("file", &self.file)
            .finish()
    }
}

/// Builds the client of one scanner, its scans counted and timed in the
/// metrics under its name.
pub fn build(kind: ScannerKind, settings: &Settings) -> anyhow::Result<Arc<dyn Scanner>> {
    let client: Arc<dyn Scanner> = match kind {
        ScannerKind::Clair => Arc::new(clair::Clair::new(settings)?),
        ScannerKind::Clair4 => Arc::new(clair4::Clair4::new(settings)?),
        ScannerKind::Adapter => Arc::new(adapter::Adapter::new(settings)?),
        ScannerKind::Fixture => Arc::new(fixture::Fixture::new(settings)?),
    };
    crate::metrics::declare_scanner(client.name());
    Ok(Arc::new(Measured(client)))
}

/// A scanner whose every scan is recorded in the metrics.
struct Measured(Arc<dyn Scanner>);

impl Scanner for Measured {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn scan(&self, target: &Target) -> anyhow::Result<Vec<Finding>> {
        let started = std::time::Instant::now();
        let result = self.0.scan(target);
        let outcome = match &result {
            Ok(_) => crate::metrics::ScanOutcome::Ok,
            Err(error) if is_unreachable(error) => crate::metrics::ScanOutcome::Unreachable,
            Err(_) => crate::metrics::ScanOutcome::Failed,
        };
        crate::metrics::scan(self.0.name(), outcome, started.elapsed());
        result
    }
}

/// A scanner that could not be reached at all (connection refused or
/// reset, host not found): the scanner is down, not the image at fault.
/// The security job asks such a scanner once per pass and charges no image
/// an attempt for it. A timeout is not this: a scanner may be slow on one
/// large image.
#[derive(Debug)]
pub(crate) struct Unreachable(pub String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreachable: {}", self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Whether `error` (anywhere in its chain) says the scanner was unreachable.
pub(crate) fn is_unreachable(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<Unreachable>().is_some())
}

/// An HTTP answer read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A short description of an unexpected answer: the scanner's error
    /// message when the body is JSON that has one, else the start of the body.
    pub fn error_text(&self) -> String {
        let message = error_message(&self.body);
        format!("answered {}: {}", self.status, message)
    }
}

/// The message of a scanner error body: `{"Error":{"Message":..}}` (Clair
/// v2), `{"message":..}` (Clair v4), `{"error":{"message":..}}` (adapter),
/// else the first 200 characters of the body with control characters removed.
pub(crate) fn error_message(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let candidates = [
            value.pointer("/Error/Message"),
            value.pointer("/error/message"),
            value.pointer("/message"),
            value.pointer("/error"),
        ];
        for candidate in candidates.into_iter().flatten() {
            if let Some(text) = candidate.as_str() {
                return text.to_string();
            }
        }
    }
    let cleaned: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let cleaned = cleaned.trim().to_string();
    if cleaned.is_empty() {
        "(empty body)".to_string()
    } else {
        cleaned
    }
}

/// HTTP to one scanner: one agent, a timeout, redirects not followed (the
/// adapter's 302 means "not ready yet"), statuses returned rather than
/// raised, and the scanner's own `Authorization` added when configured.
pub(crate) struct Http {
    agent: ureq::Agent,
    timeout: Duration,
    authorization: Option<String>,
    /// The `[security.NAME]` name, for the metrics.
    scanner: String,
}

impl Http {
    pub fn new(settings: &Settings) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("regkeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http {
            agent,
            timeout: settings.timeout,
            authorization: settings.authorization.clone(),
            scanner: settings.name.clone(),
        }
    }

    /// Records one request in the metrics.
    fn measured(
        &self,
        method: &str,
        started: std::time::Instant,
        reply: anyhow::Result<Reply>,
    ) -> anyhow::Result<Reply> {
        let status = reply.as_ref().ok().map(|reply| reply.status);
        crate::metrics::scanner_request(&self.scanner, method, status, started.elapsed());
        reply
    }

    fn describe(&self, error: ureq::Error) -> anyhow::Error {
        match error {
            ureq::Error::Timeout(_) => anyhow::anyhow!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            ),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                anyhow::Error::new(Unreachable(error.to_string()))
            }
            ureq::Error::Io(ref io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::NotConnected
                        | std::io::ErrorKind::AddrNotAvailable
                ) =>
            {
                anyhow::Error::new(Unreachable(error.to_string()))
            }
            other => anyhow::anyhow!("{other}"),
        }
    }

    fn read(&self, mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Reply> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .lossy_utf8(true)
            .read_to_string()
            .map_err(|error| self.describe(error))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET url` with `Accept: accept`.
    pub fn get(&self, url: &str, accept: &str) -> anyhow::Result<Reply> {
        let mut request = self.agent.get(url).header("Accept", accept);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let started = std::time::Instant::now();
        let reply = request
            .call()
            .map_err(|error| self.describe(error))
            .and_then(|response| self.read(response));
        self.measured("GET", started, reply)
    }

    /// `POST url` with a JSON body of `content_type`.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        accept: &str,
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", content_type)
            .header("Accept", accept);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let started = std::time::Instant::now();
        let reply = request
            .send(body)
            .map_err(|error| self.describe(error))
            .and_then(|response| self.read(response));
        self.measured("POST", started, reply)
    }
}

/// `base` joined with `path` (which starts with `/`), keeping any path
/// prefix of `base` (`http://host/clair` + `/v1/layers`).
/// Reads a scanner's JSON answer as `T`. The error says what the body was
/// meant to be (`what`, e.g. "not a clair layer") and, where the JSON
/// itself was readable, the path of the field that was wrong
/// (`Layer.Features[0].Version: invalid type: integer ...`).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    body: &str,
    what: &str,
) -> anyhow::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| anyhow::anyhow!("{what}: {error}"))?;
    deserializer
        .end()
        .map_err(|error| anyhow::anyhow!("{what}: {error}"))?;
    Ok(value)
}

pub(crate) fn endpoint(base: &url::Url, path: &str) -> String {
    let mut text = base.as_str().trim_end_matches('/').to_string();
    text.push_str(path);
    text
}

/// The server URL of a scanner that needs one.
pub(crate) fn require_server(settings: &Settings) -> anyhow::Result<url::Url> {
    settings
        .server
        .clone()
        .ok_or_else(|| anyhow::anyhow!("scanner `{}` has no server", settings.name))
}

/// Puts the optional parts of a finding's metadata into one JSON object;
/// `Null` when every part is absent.
pub(crate) fn metadata(
    namespace: Option<&str>,
    package: Option<&str>,
    version: Option<&str>,
    details: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (key, value) in [
        ("namespace", namespace),
        ("package", package),
        ("version", version),
    ] {
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            object.insert(
                key.to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    }
    if let Some(details) = details.filter(|details| !details.is_null()) {
        object.insert("details".to_string(), details);
    }
    if object.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(name: &str, fixed_by: &str) -> Finding {
        Finding {
            name: name.to_string(),
            severity: Severity::Low,
            severity_raw: "Low".to_string(),
            link: String::new(),
            fixed_by: fixed_by.to_string(),
            description: String::new(),
            metadata: serde_json::Value::Null,
        }
    }

    #[test]
    fn severity_words_map_to_the_common_scale() {
        assert_eq!(Severity::normalise("High"), Severity::High);
        assert_eq!(Severity::normalise(" critical "), Severity::Critical);
        assert_eq!(Severity::normalise("Defcon1"), Severity::Critical);
        assert_eq!(Severity::normalise("Negligible"), Severity::Negligible);
        assert_eq!(Severity::normalise("MODERATE"), Severity::Medium);
        assert_eq!(Severity::normalise("Important"), Severity::High);
        assert_eq!(Severity::normalise(""), Severity::Unknown);
        assert_eq!(Severity::normalise("whatever"), Severity::Unknown);
        for severity in Severity::ALL {
            assert_eq!(Severity::from_stored(severity.as_str()), Some(severity));
            assert_eq!(Severity::normalise(severity.as_str()), severity);
        }
    }

    #[test]
    fn dedupe_keeps_the_first_and_sorts_bytewise() {
        let findings = vec![
            finding("CVE-2016-9840", "a"),
            finding("CVE-2016-10000", "b"),
            finding("CVE-2016-9840", "c"),
            finding("", "d"),
            finding("CVE-2016-6301", "e"),
        ];
        let kept = dedupe_sorted(findings);
        let names: Vec<&str> = kept.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["CVE-2016-10000", "CVE-2016-6301", "CVE-2016-9840"]);
        assert_eq!(kept[2].fixed_by, "a");
    }

    #[test]
    fn error_messages_come_from_each_error_shape() {
        assert_eq!(
            error_message(r#"{"Error":{"Message":"bad layer"}}"#),
            "bad layer"
        );
        assert_eq!(
            error_message(r#"{"code":"x","message":"no such manifest"}"#),
            "no such manifest"
        );
        assert_eq!(error_message(r#"{"error":{"message":"boom"}}"#), "boom");
        assert_eq!(
            error_message("<html>\n<body>502 Bad Gateway</body></html>"),
            "<html> <body>502 Bad Gateway</body></html>"
        );
        assert_eq!(error_message(""), "(empty body)");
    }

    #[test]
    fn scannable_layers_skip_the_empty_layer_and_repeats() {
        let layer = |digest: &str| Layer {
            digest: digest.to_string(),
            media_type: String::new(),
            url: String::new(),
        };
        let target = Target {
            repository: "app".into(),
            tag: "1".into(),
            digest: "sha256:m".into(),
            media_type: String::new(),
            layers: vec![
                layer("sha256:a"),
                layer(EMPTY_LAYER_DIGEST),
                layer("sha256:b"),
                layer("sha256:a"),
            ],
            registry_url: String::new(),
            credential: Arc::new(FixedCredential(None)),
        };
        let digests: Vec<&str> = target
            .scannable_layers()
            .iter()
            .map(|l| l.digest.as_str())
            .collect();
        assert_eq!(digests, ["sha256:a", "sha256:b"]);
        assert!(!format!("{target:?}").contains("Bearer"));
    }

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let base = url::Url::parse("http://127.0.0.1:6060/clair/").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/layers"),
            "http://127.0.0.1:6060/clair/v1/layers"
        );
        let base = url::Url::parse("http://127.0.0.1:6060").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/layers"),
            "http://127.0.0.1:6060/v1/layers"
        );
    }
}

/// Property tests on generated input for every scanner's report parser: no
/// body panics them, an error says which report and which field was wrong,
/// and a valid report gives the same findings after a re-serialisation.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::testing::hostile;

    type Parse = fn(&str) -> anyhow::Result<Vec<Finding>>;

    fn index_report(body: &str) -> anyhow::Result<Vec<Finding>> {
        clair4::parse_index_report(body).map(|()| Vec::new())
    }

    /// Each parser, the prefixes its errors start with, and a valid report.
    fn parsers() -> Vec<(Parse, &'static [&'static str], Value)> {
        vec![
            (
                clair::parse_layer,
                &["not a clair layer", "clair answered without a layer"],
                json!({"Layer": {"Name": "sha256:top", "NamespaceName": "alpine:v3.4", "NamespaceNames": ["a", "b"],
                    "Features": [
                        {"Name": "busybox", "NamespaceName": "alpine:v3.4", "Version": "1.24.2-r11",
                         "Vulnerabilities": [{"Name": "CVE-2016-6301", "NamespaceName": "alpine:v3.4",
                            "Link": "https://cve.example/CVE-2016-6301", "Severity": "High",
                            "Metadata": {"NVD": {"CVSSv2": {"Score": 7.8}}}, "FixedBy": "1.24.2-r12",
                            "Description": "d"}]},
                        {"Name": "zlib", "Version": "1.2.8-r2",
                         "Vulnerabilities": [{"Name": "CVE-2016-9840", "Severity": "Medium"}]}]}}),
            ),
            (
                index_report,
                &["not an index report", "index failed"],
                json!({"manifest_hash": "sha256:fc84", "state": "IndexFinished", "success": true, "err": ""}),
            ),
            (
                clair4::parse_vulnerability_report,
                &["not a vulnerability report"],
                json!({"manifest_hash": "sha256:fc84", "vulnerabilities": {
                    "1": {"id": "1", "updater": "ubuntu", "name": "CVE-2009-5155", "description": "d",
                        "links": "https://cve.example/CVE-2009-5155", "severity": "Low", "normalized_severity": "Low",
                        "package": {"name": "glibc", "version": "2.27"},
                        "dist": {"did": "ubuntu", "version_id": "18.04"}, "repo": {"name": "r"},
                        "issued": "2019-10-12T07:20:50.52Z", "fixed_in_version": "2.28"},
                    "2": {"id": "2", "name": "CVE-2018-11236", "severity": "Moderate", "normalized_severity": "Medium"}}}),
            ),
            (
                adapter::parse_report,
                &["not a vulnerability report"],
                json!({"generated_at": "2024-05-01T10:00:00Z", "vulnerabilities": [
                    {"id": "CVE-2017-8283", "package": "dpkg", "version": "1.17.27", "fix_version": "1.18.0",
                     "severity": "High", "description": "d", "links": ["https://a.example", "https://b.example"],
                     "preferred_cvss": {"score_v3": 9.8}, "cwe_ids": ["CWE-22"], "vendor_attributes": {"x": 1}},
                    {"id": "CVE-2019-0001", "package": "zlib", "version": "1.2", "severity": "Critical"}]}),
            ),
        ]
    }

    fn parser() -> impl Strategy<Value = (Parse, &'static [&'static str], Value)> {
        prop::sample::select(parsers())
    }

    fn check_findings(findings: &[Finding]) -> Result<(), TestCaseError> {
        for pair in findings.windows(2) {
            prop_assert!(
                pair[0].name.as_bytes() < pair[1].name.as_bytes(),
                "sorted, no duplicates"
            );
        }
        prop_assert!(findings
            .iter()
            .all(|finding| !finding.name.trim().is_empty()));
        Ok(())
    }

    fn check_error(error: &anyhow::Error, prefixes: &[&str]) -> Result<String, TestCaseError> {
        let message = format!("{error:#}");
        prop_assert!(
            prefixes.iter().any(|prefix| message.starts_with(prefix)),
            "{message:?} does not say which report"
        );
        Ok(message)
    }

    proptest! {
        #![proptest_config(hostile::config(256))]

        #[test]
        fn any_body_is_a_report_or_a_named_error(
            (parse, prefixes, _) in parser(),
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256)
                    .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
                hostile::json_value().prop_map(|value| value.to_string()),
            ],
        ) {
            match parse(&body) {
                Ok(findings) => check_findings(&findings)?,
                Err(error) => {
                    check_error(&error, prefixes)?;
                }
            }
        }

        #[test]
        fn a_mutated_report_is_read_or_its_error_names_the_field(
            (parse, prefixes, mutation) in parser()
                .prop_flat_map(|(parse, prefixes, valid)| (Just(parse), Just(prefixes), hostile::mutation(valid)))
        ) {
            match parse(&mutation.value.to_string()) {
                Ok(findings) => check_findings(&findings)?,
                Err(error) => {
                    let message = check_error(&error, prefixes)?;
                    prop_assert!(
                        mutation.named_in(&message),
                        "{message:?} does not name {:?}", mutation.path
                    );
                }
            }
        }

        #[test]
        fn a_valid_report_reads_the_same_after_reserialising(
            (parse, _, valid) in parser(),
            pretty in any::<bool>(),
        ) {
            let compact = valid.to_string();
            let other = if pretty {
                serde_json::to_string_pretty(&valid).expect("serialisable")
            } else {
                format!(" {compact}\n")
            };
            let first = parse(&compact).expect("a valid report");
            prop_assert_eq!(parse(&other).expect("a valid report"), first);
        }
    }

    #[test]
    fn a_report_field_of_the_wrong_type_is_named_with_its_path() {
        let body = json!({"Layer": {"Features": [{"Name": "zlib", "Version": 5}]}}).to_string();
        let error = clair::parse_layer(&body).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "not a clair layer: Layer.Features[0].Version: invalid type: integer `5`, \
             expected a string at line 1 column 48"
        );
    }
}
