//! A scanner that reads its findings from a JSON file, for demos, tests and
//! benchmarks: Portus's "dummy" format, an array of `{Name, Link, Severity,
//! FixedBy, Description, Metadata}` reported for every image. An object
//! keyed by manifest digest (with `"*"` for every other image) gives
//! different images different findings. The file is read once, when the
//! scanner is built.

use std::collections::HashMap;

use serde::Deserialize;

use super::{dedupe_sorted, metadata, Finding, Settings, Severity, Target};

/// A fixture-file scanner.
pub struct Fixture {
    name: String,
    file: FixtureFile,
}

/// The parsed contents of a fixture file.
#[derive(Debug, Clone, Default)]
pub struct FixtureFile {
    /// Findings of particular manifest digests.
    pub by_digest: HashMap<String, Vec<Finding>>,
    /// Findings of every other image.
    pub every: Vec<Finding>,
}

impl Fixture {
    /// Reads and parses `settings.file`.
    pub fn new(settings: &Settings) -> anyhow::Result<Fixture> {
        let path = settings
            .file
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("scanner `{}` has no file", settings.name))?;
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("reading fixture {}: {error}", path.display()))?;
        let file = parse(&text)
            .map_err(|error| anyhow::anyhow!("reading fixture {}: {error:#}", path.display()))?;
        Ok(Fixture {
            name: settings.name.clone(),
            file,
        })
    }
}

impl super::Scanner for Fixture {
    fn name(&self) -> &str {
        &self.name
    }

    fn scan(&self, target: &Target) -> anyhow::Result<Vec<Finding>> {
        Ok(self
            .file
            .by_digest
            .get(&target.digest)
            .unwrap_or(&self.file.every)
            .clone())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    Every(Vec<Entry>),
    ByDigest(HashMap<String, Vec<Entry>>),
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Link", default)]
    link: String,
    #[serde(rename = "Severity", default)]
    severity: String,
    #[serde(rename = "FixedBy", default)]
    fixed_by: String,
    #[serde(rename = "Description", default)]
    description: String,
    #[serde(rename = "Metadata", default)]
    metadata: Option<serde_json::Value>,
}

fn findings(entries: Vec<Entry>) -> Vec<Finding> {
    dedupe_sorted(
        entries
            .into_iter()
            .map(|entry| Finding {
                name: entry.name,
                severity: Severity::normalise(&entry.severity),
                severity_raw: entry.severity,
                link: entry.link,
                fixed_by: entry.fixed_by,
                description: entry.description,
                metadata: metadata(None, None, None, entry.metadata),
            })
            .collect(),
    )
}

/// Parses a fixture file.
pub fn parse(text: &str) -> anyhow::Result<FixtureFile> {
    let file: File = serde_json::from_str(text).map_err(|error| {
        anyhow::anyhow!(
            "expected an array of vulnerabilities or an object of them by digest: {error}"
        )
    })?;
    Ok(match file {
        File::Every(entries) => FixtureFile {
            by_digest: HashMap::new(),
            every: findings(entries),
        },
        File::ByDigest(map) => {
            let mut by_digest: HashMap<String, Vec<Finding>> = map
                .into_iter()
                .map(|(digest, entries)| (digest, findings(entries)))
                .collect();
            let every = by_digest.remove("*").unwrap_or_default();
            FixtureFile { by_digest, every }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_format_is_read() {
        let text = r#"[
          {"Name": "CVE-2016-6304", "Link": "https://cve.example/CVE-2016-6304", "Severity": "High"},
          {"Name": "CVE-2016-7052", "Link": "https://cve.example/CVE-2016-7052", "Severity": "Medium"},
          {"Name": "CVE-2016-2178", "Link": "https://cve.example/CVE-2016-2178", "Severity": "Low"}
        ]"#;
        let FixtureFile { by_digest, every } = parse(text).unwrap();
        assert!(by_digest.is_empty());
        let names: Vec<&str> = every.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["CVE-2016-2178", "CVE-2016-6304", "CVE-2016-7052"]);
        assert_eq!(every[1].severity, Severity::High);
        assert_eq!(every[1].metadata, serde_json::Value::Null);
    }

    #[test]
    fn findings_can_differ_by_digest() {
        let text = r#"{"sha256:a": [{"Name": "CVE-1", "Severity": "Critical", "Metadata": {"k": 1}}], "*": []}"#;
        let FixtureFile { by_digest, every } = parse(text).unwrap();
        assert!(every.is_empty());
        assert_eq!(by_digest["sha256:a"][0].severity, Severity::Critical);
        assert_eq!(by_digest["sha256:a"][0].metadata["details"]["k"], 1);
        assert!(parse("{").is_err());
        assert!(parse("3").is_err());
    }
}
