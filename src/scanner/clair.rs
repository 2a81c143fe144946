//! Clair v2 (API v1), the scanner Portus used. For each image: `POST
//! /v1/layers` for every layer base first, each naming the previous one as
//! `ParentName`, with the registry blob URL as `Path` and a pull credential
//! in `Headers.Authorization`; then `GET /v1/layers/{top}?features&vulnerabilities`
//! and collect the vulnerabilities of every feature. Unlike Portus, any
//! failed request is an error (never "no vulnerabilities"), and a body that
//! is not JSON is an error, not a crash.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{dedupe_sorted, endpoint, metadata, Finding, Http, Settings, Severity, Target};

/// A Clair v2 client.
pub struct Clair {
    name: String,
    server: url::Url,
    http: Http,
}

impl Clair {
    /// Builds the client; `settings.server` is required.
    pub fn new(settings: &Settings) -> anyhow::Result<Clair> {
        Ok(Clair {
            name: settings.name.clone(),
            server: super::require_server(settings)?,
            http: Http::new(settings),
        })
    }

    fn post_layer(&self, body: &PostLayer<'_>) -> anyhow::Result<()> {
        let text = serde_json::to_vec(body)
            .map_err(|error| anyhow::anyhow!("encoding the layer: {error}"))?;
        let reply = self.http.post(
            &endpoint(&self.server, "/v1/layers"),
            "application/json",
            "application/json",
            &text,
        )?;
        match reply.status {
            200 | 201 => Ok(()),
            _ => anyhow::bail!("{}", reply.error_text()),
        }
    }
}

impl super::Scanner for Clair {
    fn name(&self) -> &str {
        &self.name
    }

    fn scan(&self, target: &Target) -> anyhow::Result<Vec<Finding>> {
        let layers = target.scannable_layers();
        let Some(top) = layers.last() else {
            // Nothing but empty layers: nothing to index, nothing vulnerable.
            return Ok(Vec::new());
        };
        let mut parent = "";
        for layer in &layers {
            let authorization = target.credential.authorization().map_err(|error| {
                anyhow::anyhow!(
                    "getting a pull credential for {}: {error:#}",
                    target.repository
                )
            })?;
            let body = PostLayer {
                layer: PostLayerBody {
                    name: &layer.digest,
                    namespace_name: "",
                    path: &layer.url,
                    headers: PostHeaders {
                        authorization: authorization.as_deref(),
                    },
                    parent_name: parent,
                    format: "Docker",
                    indexed_by_version: 0,
                    features: [],
                },
            };
            self.post_layer(&body)
                .with_context(|| format!("posting layer {} to clair", layer.digest))?;
            parent = &layer.digest;
        }
        let url = endpoint(
            &self.server,
            &format!("/v1/layers/{}?features&vulnerabilities", top.digest),
        );
        let reply = self
            .http
            .get(&url, "application/json")
            .with_context(|| format!("fetching layer {} from clair", top.digest))?;
        if reply.status != 200 {
            anyhow::bail!(
                "fetching layer {} from clair: {}",
                top.digest,
                reply.error_text()
            );
        }
        parse_layer(&reply.body)
            .map_err(|error| anyhow::anyhow!("reading clair's report of {}: {error:#}", top.digest))
    }
}

/// The body of `POST /v1/layers`, keys in Portus's order.
#[derive(Serialize)]
struct PostLayer<'a> {
    #[serde(rename = "Layer")]
    layer: PostLayerBody<'a>,
}

#[derive(Serialize)]
struct PostLayerBody<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "NamespaceName")]
    namespace_name: &'a str,
    #[serde(rename = "Path")]
    path: &'a str,
    #[serde(rename = "Headers")]
    headers: PostHeaders<'a>,
    #[serde(rename = "ParentName")]
    parent_name: &'a str,
    #[serde(rename = "Format")]
    format: &'a str,
    #[serde(rename = "IndexedByVersion")]
    indexed_by_version: u32,
    #[serde(rename = "Features")]
    features: [u8; 0],
}

#[derive(Serialize)]
struct PostHeaders<'a> {
    #[serde(rename = "Authorization", skip_serializing_if = "Option::is_none")]
    authorization: Option<&'a str>,
}

#[derive(Deserialize)]
struct LayerEnvelope {
    #[serde(rename = "Layer")]
    layer: Option<LayerBody>,
    #[serde(rename = "Error")]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
struct LayerBody {
    #[serde(rename = "NamespaceName", default)]
    namespace_name: Option<String>,
    #[serde(rename = "NamespaceNames", default)]
    namespace_names: Option<Vec<String>>,
    #[serde(rename = "Features", default)]
    features: Option<Vec<Feature>>,
}

#[derive(Deserialize)]
struct Feature {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "NamespaceName", default)]
    namespace_name: Option<String>,
    #[serde(rename = "Version", default)]
    version: Option<String>,
    #[serde(rename = "Vulnerabilities", default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
struct Vulnerability {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "NamespaceName", default)]
    namespace_name: Option<String>,
    #[serde(rename = "Description", default)]
    description: Option<String>,
    #[serde(rename = "Link", default)]
    link: Option<String>,
    #[serde(rename = "Severity", default)]
    severity: Option<String>,
    #[serde(rename = "FixedBy", default)]
    fixed_by: Option<String>,
    #[serde(rename = "Metadata", default)]
    metadata: Option<serde_json::Value>,
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|text| !text.is_empty())
}

/// Reads the answer of `GET /v1/layers/{name}?vulnerabilities`: the
/// vulnerabilities of every feature (`Features: null` means none),
/// de-duplicated by name (the first wins) and sorted byte-wise. A body
/// without `Layer` is an error, with Clair's message when it gave one.
pub fn parse_layer(body: &str) -> anyhow::Result<Vec<Finding>> {
    let envelope: LayerEnvelope = super::from_json(body, "not a clair layer")?;
    let Some(layer) = envelope.layer else {
        match envelope.error {
            Some(error) => anyhow::bail!("clair answered without a layer: {}", error.message),
            None => anyhow::bail!("clair answered without a layer (no Layer in the body)"),
        }
    };
    // Clair 2.0 names one namespace per layer, later releases a list.
    let layer_namespace = non_empty(&layer.namespace_name)
        .map(str::to_string)
        .or_else(|| {
            layer
                .namespace_names
                .as_ref()
                .filter(|names| !names.is_empty())
                .map(|names| names.join(","))
        });
    let mut findings = Vec::new();
    for feature in layer.features.unwrap_or_default() {
        for vulnerability in feature.vulnerabilities.unwrap_or_default() {
            let severity_raw = vulnerability.severity.clone().unwrap_or_default();
            let namespace = non_empty(&vulnerability.namespace_name)
                .or(non_empty(&feature.namespace_name))
                .map(str::to_string)
                .or_else(|| layer_namespace.clone());
            findings.push(Finding {
                name: vulnerability.name.clone().unwrap_or_default(),
                severity: Severity::normalise(&severity_raw),
                severity_raw,
                link: vulnerability.link.clone().unwrap_or_default(),
                fixed_by: vulnerability.fixed_by.clone().unwrap_or_default(),
                description: vulnerability.description.clone().unwrap_or_default(),
                metadata: metadata(
                    namespace.as_deref(),
                    non_empty(&feature.name),
                    non_empty(&feature.version),
                    vulnerability.metadata.clone(),
                ),
            });
        }
    }
    Ok(dedupe_sorted(findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_without_a_layer_names_the_missing_layer_key() {
        let error = parse_layer(r#"{"Layers":{}}"#).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "clair answered without a layer (no Layer in the body)"
        );
    }

    const LAYER: &str = r#"{"Layer":{"Name":"sha256:top","NamespaceName":"alpine:v3.4","IndexedByVersion":3,
      "Features":[
        {"Name":"busybox","NamespaceName":"alpine:v3.4","VersionFormat":"dpkg","Version":"1.24.2-r11",
         "Vulnerabilities":[{"Name":"CVE-2016-6301","NamespaceName":"alpine:v3.4",
           "Link":"https://cve.example/CVE-2016-6301","Severity":"High",
           "Metadata":{"NVD":{"CVSSv2":{"Score":7.8,"Vectors":"AV:N/AC:L/Au:N/C:N/I:N"}}},"FixedBy":"1.24.2-r12"}]},
        {"Name":"zlib","NamespaceName":"alpine:v3.4","Version":"1.2.8-r2",
         "Vulnerabilities":[
           {"Name":"CVE-2016-9840","Severity":"Medium","FixedBy":"1.2.11-r0","Description":"inflate"},
           {"Name":"CVE-2016-10000","Severity":"Negligible"}]},
        {"Name":"zlib-dev","NamespaceName":"alpine:v3.4","Version":"1.2.8-r2",
         "Vulnerabilities":[{"Name":"CVE-2016-9840","Severity":"Low","FixedBy":"other"},{"Name":""}]},
        {"Name":"musl","NamespaceName":"alpine:v3.4","Version":"1.1.14-r12"},
        {"Name":"libc","Version":"0.7","Vulnerabilities":null}
      ]}}"#;

    #[test]
    fn a_layer_gives_deduplicated_sorted_findings() {
        let findings = parse_layer(LAYER).unwrap();
        let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["CVE-2016-10000", "CVE-2016-6301", "CVE-2016-9840"]);
        let zlib = &findings[2];
        assert_eq!(zlib.fixed_by, "1.2.11-r0", "the first occurrence wins");
        assert_eq!(zlib.severity, Severity::Medium);
        assert_eq!(zlib.description, "inflate");
        assert_eq!(zlib.metadata["namespace"], "alpine:v3.4");
        assert_eq!(zlib.metadata["package"], "zlib");
        let busybox = &findings[1];
        assert_eq!(busybox.severity, Severity::High);
        assert_eq!(busybox.severity_raw, "High");
        assert_eq!(busybox.link, "https://cve.example/CVE-2016-6301");
        assert_eq!(busybox.metadata["details"]["NVD"]["CVSSv2"]["Score"], 7.8);
        assert_eq!(busybox.metadata["version"], "1.24.2-r11");
    }

    #[test]
    fn features_null_gives_no_findings() {
        let body = r#"{"Layer":{"Name":"sha256:top","NamespaceName":"alpine:v3.4","IndexedByVersion":3,"Features":null}}"#;
        assert_eq!(parse_layer(body).unwrap(), Vec::new());
        let body = r#"{"Layer":{"Name":"sha256:top","IndexedByVersion":3}}"#;
        assert_eq!(parse_layer(body).unwrap(), Vec::new());
    }

    #[test]
    fn namespace_names_fill_in_a_missing_namespace() {
        let body = r#"{"Layer":{"Name":"sha256:top","NamespaceNames":["debian:9","debian:10"],
          "Features":[{"Name":"bash","Version":"5","Vulnerabilities":[{"Name":"CVE-1","Severity":"Defcon1"}]}]}}"#;
        let findings = parse_layer(body).unwrap();
        assert_eq!(findings[0].metadata["namespace"], "debian:9,debian:10");
        assert_eq!(findings[0].severity, Severity::Critical);
        assert_eq!(findings[0].severity_raw, "Defcon1");
    }

    #[test]
    fn an_error_body_without_layer_is_an_error() {
        let error = parse_layer(r#"{"Error":{"Message":"Something went wrong when fetching"}}"#)
            .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "clair answered without a layer: Something went wrong when fetching"
        );
        assert!(parse_layer("<html>502 Bad Gateway</html>").is_err());
        assert!(parse_layer("").is_err());
    }

    #[test]
    fn the_post_body_has_portus_keys_in_order() {
        let body = PostLayer {
            layer: PostLayerBody {
                name: "sha256:b",
                namespace_name: "",
                path: "http://registry/v2/app/blobs/sha256:b",
                headers: PostHeaders {
                    authorization: Some("Bearer t"),
                },
                parent_name: "sha256:a",
                format: "Docker",
                indexed_by_version: 0,
                features: [],
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"Layer":{"Name":"sha256:b","NamespaceName":"","Path":"http://registry/v2/app/blobs/sha256:b","Headers":{"Authorization":"Bearer t"},"ParentName":"sha256:a","Format":"Docker","IndexedByVersion":0,"Features":[]}}"#
        );
    }
}
