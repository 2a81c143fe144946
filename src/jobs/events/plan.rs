//! What one stored event does, decided without I/O: [`plan`] turns a parsed
//! event into a write (or a manifest fetch first), [`write_from_manifest`]
//! turns a fetched manifest into the tag write, and [`read_stored`] reads a
//! stored event back with the intake's rules. Pure: no store, no registry,
//! no clock.

use super::Failure;
use crate::notification::{self, Action, Event, Verdict};
use crate::registry::Manifest;
use crate::store::{ClaimedEvent, EventEffect, TagWrite};

/// What one claimed event needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Write this (possibly nothing) and mark it done.
    Apply(EventEffect),
    /// Fetch the manifest `digest` of `repository`, then write the tag.
    Fetch {
        /// Full repository name.
        repository: String,
        /// Tag to write.
        tag: String,
        /// Manifest digest to fetch.
        digest: String,
    },
}

/// Decides what an event does, without I/O: a push with a tag becomes a tag
/// write (from `references` when they tell everything, else after a manifest
/// fetch); a push without a tag writes nothing (no guessing); a delete by
/// digest removes the tags with that digest, a per-tag delete that tag; a
/// pull records the event time on the tag (or on the tags of the digest).
pub fn plan(event: &Event) -> Plan {
    match event.action {
        Action::Push => {
            let (Some(tag), Some(digest)) = (&event.tag, &event.digest) else {
                return Plan::Apply(EventEffect::Nothing);
            };
            match notification::image_facts(event) {
                Some(facts) => Plan::Apply(EventEffect::Upsert(TagWrite {
                    repository: event.repository.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                    image_id: facts.image_id,
                    media_type: event.media_type.clone().unwrap_or_default(),
                    size: Some(facts.size),
                    platforms: None,
                })),
                None => Plan::Fetch {
                    repository: event.repository.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                },
            }
        }
        Action::Delete => match (&event.tag, &event.digest) {
            (Some(tag), _) => Plan::Apply(EventEffect::DeleteTag {
                repository: event.repository.clone(),
                tag: tag.clone(),
            }),
            (None, Some(digest)) => Plan::Apply(EventEffect::DeleteDigest {
                repository: event.repository.clone(),
                digest: digest.clone(),
            }),
            (None, None) => Plan::Apply(EventEffect::Nothing),
        },
        Action::Pull => Plan::Apply(EventEffect::Pull {
            repository: event.repository.clone(),
            tag: event.tag.clone(),
            digest: if event.tag.is_some() {
                None
            } else {
                event.digest.clone()
            },
            at: event.timestamp,
        }),
    }
}

/// The tag write of a pushed tag whose manifest was fetched. The event's
/// digest wins: it is what was pushed under the tag.
pub fn write_from_manifest(
    repository: &str,
    tag: &str,
    digest: &str,
    manifest: &Manifest,
) -> TagWrite {
    let platforms: Vec<serde_json::Value> = manifest
        .children
        .iter()
        .filter_map(|child| child.platform.as_ref())
        .map(|platform| {
            let mut value =
                serde_json::json!({ "os": platform.os, "architecture": platform.architecture });
            if let Some(variant) = &platform.variant {
                value["variant"] = serde_json::Value::String(variant.clone());
            }
            value
        })
        .collect();
    let is_index = !manifest.children.is_empty();
    TagWrite {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: digest.to_string(),
        image_id: manifest.image_id.clone(),
        media_type: manifest.media_type.clone(),
        size: Some(manifest.size),
        platforms: if is_index {
            Some(serde_json::Value::Array(platforms).to_string())
        } else {
            None
        },
    }
}

/// Parses a stored event with the intake's rules: None for an event the
/// intake would have dropped (nothing to do); anything unreadable is a
/// permanent failure.
pub(super) fn read_stored(claimed: &ClaimedEvent) -> Result<Option<Event>, Failure> {
    let value: serde_json::Value =
        serde_json::from_str(&claimed.data).map_err(|error| Failure::Permanent {
            error: format!("malformed stored event: not JSON: {error}"),
        })?;
    match notification::classify(&value) {
        Verdict::Keep(event) => Ok(Some(event)),
        Verdict::Drop(_) => Ok(None),
        Verdict::Malformed(error) => Err(Failure::Permanent {
            error: format!("malformed stored event: {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Descriptor, Platform, PlatformManifest};

    fn event(json: &str) -> Event {
        notification::parse_event(&serde_json::from_str(json).unwrap()).unwrap()
    }

    const PUSH_WITH_REFERENCES: &str = r#"{"id":"a","timestamp":"2026-01-02T03:04:05Z","action":"push",
        "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m1","repository":"ns/app","tag":"1.0",
        "references":[{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":"sha256:c1"},
                      {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":100,"digest":"sha256:l1"}]}}"#;

    #[test]
    fn push_with_references_needs_no_registry_request() {
        assert_eq!(
            plan(&event(PUSH_WITH_REFERENCES)),
            Plan::Apply(EventEffect::Upsert(TagWrite {
                repository: "ns/app".into(),
                tag: "1.0".into(),
                digest: "sha256:m1".into(),
                image_id: "c1".into(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: Some(110),
                platforms: None,
            }))
        );
    }

    #[test]
    fn push_without_references_fetches_the_manifest() {
        let json = r#"{"id":"a","timestamp":"2026-01-02T03:04:05Z","action":"push",
            "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:m1","repository":"app","tag":"t"}}"#;
        assert_eq!(
            plan(&event(json)),
            Plan::Fetch {
                repository: "app".into(),
                tag: "t".into(),
                digest: "sha256:m1".into()
            }
        );
    }

    #[test]
    fn push_without_tag_creates_nothing() {
        let json = PUSH_WITH_REFERENCES.replace(r#","tag":"1.0""#, "");
        assert_eq!(plan(&event(&json)), Plan::Apply(EventEffect::Nothing));
    }

    #[test]
    fn deletes_by_digest_and_by_tag() {
        let by_digest = r#"{"id":"d","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"digest":"sha256:m1","repository":"ns/app"}}"#;
        assert_eq!(
            plan(&event(by_digest)),
            Plan::Apply(EventEffect::DeleteDigest {
                repository: "ns/app".into(),
                digest: "sha256:m1".into()
            })
        );
        let by_tag = r#"{"id":"d","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"tag":"x","repository":"ns/app"}}"#;
        assert_eq!(
            plan(&event(by_tag)),
            Plan::Apply(EventEffect::DeleteTag {
                repository: "ns/app".into(),
                tag: "x".into()
            })
        );
    }

    #[test]
    fn pulls_record_the_event_time() {
        let by_tag = r#"{"id":"p","timestamp":"2026-01-02T03:04:05Z","action":"pull",
            "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m1","repository":"app","tag":"t"}}"#;
        assert_eq!(
            plan(&event(by_tag)),
            Plan::Apply(EventEffect::Pull {
                repository: "app".into(),
                tag: Some("t".into()),
                digest: None,
                at: 1_767_323_045_000
            })
        );
        let by_digest = by_tag.replace(r#","tag":"t""#, "");
        assert_eq!(
            plan(&event(&by_digest)),
            Plan::Apply(EventEffect::Pull {
                repository: "app".into(),
                tag: None,
                digest: Some("sha256:m1".into()),
                at: 1_767_323_045_000
            })
        );
    }

    #[test]
    fn an_index_write_carries_its_platforms() {
        let child = |os: &str, architecture: &str, variant: Option<&str>| PlatformManifest {
            descriptor: Descriptor {
                digest: format!("sha256:{architecture}"),
                size: 5,
                media_type: String::new(),
            },
            platform: Some(Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: variant.map(Into::into),
            }),
        };
        let manifest = Manifest {
            digest: "sha256:other".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            image_id: String::new(),
            size: 1234,
            config: None,
            layers: Vec::new(),
            children: vec![
                child("linux", "amd64", None),
                child("linux", "arm64", Some("v8")),
            ],
        };
        let write = write_from_manifest("ns/app", "multi", "sha256:index", &manifest);
        assert_eq!(write.digest, "sha256:index");
        assert_eq!(write.size, Some(1234));
        assert_eq!(
            write.platforms.as_deref(),
            Some(
                r#"[{"architecture":"amd64","os":"linux"},{"architecture":"arm64","os":"linux","variant":"v8"}]"#
            )
        );
    }

    #[test]
    fn unreadable_stored_events_fail_for_good() {
        let claimed = |data: &str| ClaimedEvent {
            id: 1,
            event_id: "x".into(),
            action: "push".into(),
            repository: "app".into(),
            data: data.into(),
            attempts: 0,
        };
        for data in [
            "not json",
            r#"{"id":"x"}"#,
            r#"{"id":"x","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"repository":"app"}}"#,
        ] {
            assert!(
                matches!(read_stored(&claimed(data)), Err(Failure::Permanent { .. })),
                "{data}"
            );
        }
    }
}
