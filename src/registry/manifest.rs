//! Pure manifest parsing: Docker schema 2, Docker manifest list, OCI image
//! manifest, OCI image index, and schema 1 (digest and layers only). No I/O.
//!
//! Sizes: for an image manifest, `size` is the config size plus the layer
//! sizes (the compressed bytes a pull downloads, as the manifest lists
//! them). For a manifest list / OCI index, `size` is the sum of the child
//! manifest sizes as listed in the index: the bytes of the child manifests
//! themselves, not of their images, because the index alone does not say
//! more and parsing stays free of I/O; a caller wanting the images' sizes
//! fetches the children (`children`). Schema 1 lists no sizes: `size` is 0.

use base64::Engine as _;
use sha2::Digest as _;

use super::RegistryError;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1, signed.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker schema 1, unsigned.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// The layer media type given to schema 1 layers, which carry none.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A content descriptor (config, layer, or child manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
}

/// A platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `v8`.
    pub variant: Option<String>,
}

/// One child manifest of a manifest list / OCI index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformManifest {
    /// The child manifest.
    pub descriptor: Descriptor,
    /// Its platform, when the index gives one.
    pub platform: Option<Platform>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `sha256:...` of the body.
    pub digest: String,
    /// Media type of the body.
    pub media_type: String,
    /// Config digest without `sha256:`; empty for an index or schema 1.
    pub image_id: String,
    /// Config + layers for an image; for an index, see the module docs.
    pub size: i64,
    /// The config descriptor of an image manifest.
    pub config: Option<Descriptor>,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// Children of an index.
    pub children: Vec<PlatformManifest>,
}

impl Manifest {
    /// Whether this is a manifest list / OCI index.
    pub fn is_index(&self) -> bool {
        self.media_type == DOCKER_MANIFEST_LIST || self.media_type == OCI_INDEX
    }
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// From `Docker-Content-Digest` (or the digest the request named, or
    /// the manifest read with GET when the registry omits the header).
    pub digest: String,
    /// From `Content-Type`.
    pub media_type: String,
    /// From `Content-Length` (the manifest's bytes).
    pub size: i64,
    /// The manifest, when the registry answered the HEAD of a tag without
    /// `Docker-Content-Digest` and the client read it with GET to learn the
    /// digest; None after a plain HEAD. Callers needing the manifest use it
    /// instead of fetching it again.
    pub manifest: Option<Manifest>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Whether `reference` is a digest (`algorithm:hex`) rather than a tag.
pub fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

enum Kind {
    Image,
    Index,
    Schema1,
}

/// Parses a manifest body fetched as `repository:reference`.
///
/// `header_digest` is `Docker-Content-Digest` and `content_type` the
/// `Content-Type` of the answer. A sha256 digest from the header or the
/// reference is checked against the body (for signed schema 1, against the
/// signed payload). The media type is the header's when it names a manifest
/// type, else the body's `mediaType`, else inferred from the shape. Any
/// inconsistency is [`RegistryError::Malformed`] naming repository and
/// reference.
pub fn parse_manifest(
    repository: &str,
    reference: &str,
    header_digest: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Manifest, RegistryError> {
    let separator = if is_digest(reference) { '@' } else { ':' };
    let malformed = |reason: String| {
        RegistryError::Malformed(format!(
            "manifest {repository}{separator}{reference}: {reason}"
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| malformed(format!("body is not JSON: {error}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| malformed("body is not a JSON object".into()))?;
    let header_type = content_type
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|value| is_manifest_type(value));
    let body_type = object
        .get("mediaType")
        .and_then(|media_type| media_type.as_str())
        .map(String::from);
    let schema_version = object
        .get("schemaVersion")
        .and_then(|version| version.as_i64());
    let declared = header_type.clone().or_else(|| body_type.clone());
    let kind = match (schema_version, declared.as_deref()) {
        (Some(1), _) | (_, Some(DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED)) => Kind::Schema1,
        (_, Some(DOCKER_MANIFEST_LIST | OCI_INDEX)) => Kind::Index,
        (_, Some(DOCKER_MANIFEST | OCI_MANIFEST)) => Kind::Image,
        (_, Some(other)) if !other.is_empty() => {
            return Err(malformed(format!("unknown media type {other}")))
        }
        _ if object.contains_key("manifests") => Kind::Index,
        _ if object.contains_key("config") => Kind::Image,
        _ => {
            return Err(malformed(
                "neither an image manifest nor an index: no mediaType, config or manifests".into(),
            ))
        }
    };

    let signed = matches!(kind, Kind::Schema1) && object.get("signatures").is_some();
    let computed = if signed {
        schema1_payload(object, body).map(|payload| sha256_digest(&payload))
    } else {
        Some(sha256_digest(body))
    };
    if let Some(computed) = &computed {
        for claimed in [
            header_digest,
            Some(reference).filter(|reference| is_digest(reference)),
        ]
        .into_iter()
        .flatten()
        {
            if claimed.starts_with("sha256:") && claimed != computed {
                return Err(malformed(format!(
                    "digest mismatch: expected {claimed}, body hashes to {computed}"
                )));
            }
        }
    }
    let digest = header_digest
        .map(String::from)
        .or_else(|| Some(reference.to_string()).filter(|reference| is_digest(reference)))
        .or(computed)
        .ok_or_else(|| {
            malformed("no digest: no Docker-Content-Digest and an unreadable signature".into())
        })?;

    match kind {
        Kind::Image => {
            let config = object
                .get("config")
                .ok_or_else(|| malformed("no config".into()))
                .and_then(|config| {
                    descriptor(config).map_err(|reason| malformed(format!("config: {reason}")))
                })?;
            let layers = object
                .get("layers")
                .and_then(|layers| layers.as_array())
                .ok_or_else(|| malformed("no layers array".into()))?
                .iter()
                .enumerate()
                .map(|(index, layer)| {
                    descriptor(layer)
                        .map_err(|reason| malformed(format!("layer {index}: {reason}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let size = layers
                .iter()
                .try_fold(config.size, |total, layer| total.checked_add(layer.size))
                .ok_or_else(|| malformed("sizes overflow".into()))?;
            let media_type = declared.unwrap_or_else(|| OCI_MANIFEST.to_string());
            let image_id = config
                .digest
                .split_once(':')
                .map(|(_, hex)| hex)
                .unwrap_or(&config.digest)
                .to_string();
            Ok(Manifest {
                digest,
                media_type,
                image_id,
                size,
                config: Some(config),
                layers,
                children: Vec::new(),
            })
        }
        Kind::Index => {
            let children = object
                .get("manifests")
                .and_then(|manifests| manifests.as_array())
                .ok_or_else(|| malformed("no manifests array".into()))?
                .iter()
                .enumerate()
                .map(|(index, child)| {
                    let descriptor = descriptor(child)
                        .map_err(|reason| malformed(format!("manifest {index}: {reason}")))?;
                    let platform = child.get("platform").and_then(platform);
                    Ok(PlatformManifest {
                        descriptor,
                        platform,
                    })
                })
                .collect::<Result<Vec<_>, RegistryError>>()?;
            let size = children
                .iter()
                .try_fold(0i64, |total, child| {
                    total.checked_add(child.descriptor.size)
                })
                .ok_or_else(|| malformed("sizes overflow".into()))?;
            let media_type = declared.unwrap_or_else(|| OCI_INDEX.to_string());
            Ok(Manifest {
                digest,
                media_type,
                image_id: String::new(),
                size,
                config: None,
                layers: Vec::new(),
                children,
            })
        }
        Kind::Schema1 => {
            let mut layers = object
                .get("fsLayers")
                .and_then(|layers| layers.as_array())
                .ok_or_else(|| malformed("schema 1 without fsLayers".into()))?
                .iter()
                .enumerate()
                .map(|(index, layer)| {
                    layer
                        .get("blobSum")
                        .and_then(|digest| digest.as_str())
                        .filter(|digest| is_digest(digest))
                        .map(|digest| Descriptor {
                            digest: digest.to_string(),
                            size: 0,
                            media_type: DOCKER_LAYER.into(),
                        })
                        .ok_or_else(|| malformed(format!("fsLayers {index}: no blobSum")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Schema 1 lists the top layer first.
            layers.reverse();
            let media_type = declared.unwrap_or_else(|| {
                if signed {
                    DOCKER_MANIFEST_V1_SIGNED
                } else {
                    DOCKER_MANIFEST_V1
                }
                .to_string()
            });
            Ok(Manifest {
                digest,
                media_type,
                image_id: String::new(),
                size: 0,
                config: None,
                layers,
                children: Vec::new(),
            })
        }
    }
}

/// Reads a `ManifestHead` from a HEAD answer's headers, naming
/// `repository:reference` in errors. Without a `Docker-Content-Digest`, a
/// HEAD by digest is vouched for by the success answer itself; a HEAD by
/// tag tells no digest and is [`RegistryError::Malformed`] (the client
/// reads such a tag with GET instead: [`head_tells_digest`]).
pub fn parse_manifest_head(
    repository: &str,
    reference: &str,
    header_digest: Option<&str>,
    content_type: Option<&str>,
    content_length: Option<&str>,
) -> Result<ManifestHead, RegistryError> {
    let separator = if is_digest(reference) { '@' } else { ':' };
    let malformed = |reason: &str| {
        RegistryError::Malformed(format!(
            "manifest {repository}{separator}{reference}: {reason}"
        ))
    };
    let digest = header_digest
        .filter(|digest| is_digest(digest))
        .or(Some(reference).filter(|reference| is_digest(reference)))
        .ok_or_else(|| malformed("HEAD answered without Docker-Content-Digest"))?;
    if is_digest(reference) && reference != digest {
        return Err(malformed(&format!("HEAD answered with digest {digest}")));
    }
    let media_type = content_type
        .map(|value| value.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    // A negative Content-Length (a broken proxy) tells no size.
    let size = content_length
        .and_then(|length| length.trim().parse::<i64>().ok())
        .filter(|length| *length >= 0)
        .unwrap_or(0);
    Ok(ManifestHead {
        digest: digest.to_string(),
        media_type,
        size,
        manifest: None,
    })
}

/// Whether a HEAD answer with this `Docker-Content-Digest` tells the digest
/// of `reference`: the header holds a digest, or the reference is one.
/// Some registries and caching proxies drop the header; a tag must then be
/// read with GET, whose body gives the digest.
pub fn head_tells_digest(reference: &str, header_digest: Option<&str>) -> bool {
    header_digest.is_some_and(is_digest) || is_digest(reference)
}

/// `(image_id, size)` from the `target.mediaType` and `target.references`
/// of a push notification (`includereferences: true`), with the same
/// meaning as [`Manifest::image_id`] and [`Manifest::size`]: for an image,
/// the config digest without `sha256:` and config + layer sizes; for an
/// index, an empty id and the sum of the child manifest sizes.
pub fn summarize_references(media_type: &str, references: &[Descriptor]) -> (String, i64) {
    let image_id = if media_type == DOCKER_MANIFEST_LIST || media_type == OCI_INDEX {
        String::new()
    } else {
        references
            .iter()
            .find(|reference| is_config_type(&reference.media_type))
            .and_then(|config| {
                config
                    .digest
                    .split_once(':')
                    .map(|(_, hex)| hex.to_string())
            })
            .unwrap_or_default()
    };
    let size = references.iter().fold(0i64, |total, reference| {
        total.saturating_add(reference.size.max(0))
    });
    (image_id, size)
}

fn is_config_type(media_type: &str) -> bool {
    media_type == "application/vnd.docker.container.image.v1+json"
        || media_type == "application/vnd.oci.image.config.v1+json"
}

fn is_manifest_type(media_type: &str) -> bool {
    super::MANIFEST_MEDIA_TYPES.contains(&media_type)
}

fn descriptor(value: &serde_json::Value) -> Result<Descriptor, String> {
    let digest = value
        .get("digest")
        .and_then(|digest| digest.as_str())
        .filter(|digest| is_digest(digest))
        .ok_or("no digest")?;
    let size = value
        .get("size")
        .and_then(|size| size.as_i64())
        .ok_or("no size")?;
    if size < 0 {
        return Err(format!("negative size {size}"));
    }
    let media_type = value
        .get("mediaType")
        .and_then(|media_type| media_type.as_str())
        .unwrap_or("")
        .to_string();
    Ok(Descriptor {
        digest: digest.to_string(),
        size,
        media_type,
    })
}

fn platform(value: &serde_json::Value) -> Option<Platform> {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(|text| text.as_str())
            .map(String::from)
    };
    Some(Platform {
        os: text("os")?,
        architecture: text("architecture")?,
        variant: text("variant"),
    })
}

/// The signed payload of a schema 1 manifest (the body without its
/// `signatures`, as libtrust rebuilds it from `formatLength` and
/// `formatTail`); its sha256 is the manifest's digest.
fn schema1_payload(
    object: &serde_json::Map<String, serde_json::Value>,
    body: &[u8],
) -> Option<Vec<u8>> {
    let protected = object
        .get("signatures")?
        .as_array()?
        .first()?
        .get("protected")?
        .as_str()?;
    let protected = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(protected.trim_end_matches('='))
        .ok()?;
    let protected: serde_json::Value = serde_json::from_slice(&protected).ok()?;
    let length = usize::try_from(protected.get("formatLength")?.as_u64()?).ok()?;
    let tail = protected.get("formatTail")?.as_str()?;
    let tail = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tail.trim_end_matches('='))
        .ok()?;
    let mut payload = body.get(..length)?.to_vec();
    payload.extend_from_slice(&tail);
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_BODY: &str = r#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1522, "digest": "sha256:02674b9cb179d57c68b526733adf38b458bd31ba0abff0c2bf5ceca5bad72cd9"}, "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1967906, "digest": "sha256:cfc728c1c5584d8e0ae69368fc9c34d54d72651355573ba42554c2469a0a6299"}]}"#;

    const OCI_BODY: &str = r#"{
  "schemaVersion": 2,
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 7023, "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
  "layers": [
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 32654, "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 16724, "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b"}
  ]
}"#;

    const INDEX_BODY: &str = r#"{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7143, "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f", "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7682, "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270", "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 500, "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
  ]
}"#;

    const SCHEMA1_UNSIGNED: &str = r#"{
   "schemaVersion": 1,
   "name": "busybox",
   "tag": "latest",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"},
      {"blobSum": "sha256:8ddc19f16526912237dd8af81971d5e4dd0587907234be2b83e249518d5b673f"}
   ],
   "history": [{"v1Compatibility": "{\"id\":\"top\"}"}, {"v1Compatibility": "{\"id\":\"base\"}"}]
}"#;

    #[test]
    fn docker_schema2_from_the_fixture_shape() {
        let digest = sha256_digest(DOCKER_BODY.as_bytes());
        let manifest = parse_manifest(
            "busybox",
            "latest",
            Some(&digest),
            Some(DOCKER_MANIFEST),
            DOCKER_BODY.as_bytes(),
        )
        .unwrap();
        assert_eq!(manifest.digest, digest);
        assert_eq!(manifest.media_type, DOCKER_MANIFEST);
        assert_eq!(
            manifest.image_id,
            "02674b9cb179d57c68b526733adf38b458bd31ba0abff0c2bf5ceca5bad72cd9"
        );
        assert_eq!(manifest.size, 1522 + 1967906);
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].size, 1967906);
        assert!(!manifest.is_index());
    }

    #[test]
    fn oci_manifest_without_media_type_in_body() {
        let manifest = parse_manifest(
            "ns/app",
            "v1",
            None,
            Some("application/json"),
            OCI_BODY.as_bytes(),
        )
        .unwrap();
        assert_eq!(manifest.media_type, OCI_MANIFEST);
        assert_eq!(manifest.digest, sha256_digest(OCI_BODY.as_bytes()));
        assert_eq!(manifest.size, 7023 + 32654 + 16724);
        assert_eq!(
            manifest.layers[1].digest,
            "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b"
        );
        let header = parse_manifest(
            "ns/app",
            "v1",
            None,
            Some(OCI_MANIFEST),
            OCI_BODY.as_bytes(),
        )
        .unwrap();
        assert_eq!(header.media_type, OCI_MANIFEST);
    }

    #[test]
    fn oci_index_children_platforms_and_size() {
        let manifest = parse_manifest(
            "ns/app",
            "multi",
            None,
            Some(OCI_INDEX),
            INDEX_BODY.as_bytes(),
        )
        .unwrap();
        assert!(manifest.is_index());
        assert_eq!(manifest.image_id, "");
        assert_eq!(manifest.size, 7143 + 7682 + 500);
        assert_eq!(manifest.children.len(), 3);
        assert_eq!(
            manifest.children[1].platform,
            Some(Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into())
            })
        );
        assert_eq!(manifest.children[2].platform, None);
    }

    #[test]
    fn docker_manifest_list_by_body_media_type() {
        let body = INDEX_BODY.replace(OCI_INDEX, DOCKER_MANIFEST_LIST);
        let manifest = parse_manifest("ns/app", "multi", None, None, body.as_bytes()).unwrap();
        assert_eq!(manifest.media_type, DOCKER_MANIFEST_LIST);
        assert_eq!(manifest.children.len(), 3);
    }

    #[test]
    fn schema1_layers_base_first_and_digest_of_the_body() {
        let manifest = parse_manifest(
            "busybox",
            "latest",
            None,
            Some(DOCKER_MANIFEST_V1),
            SCHEMA1_UNSIGNED.as_bytes(),
        )
        .unwrap();
        assert_eq!(manifest.media_type, DOCKER_MANIFEST_V1);
        assert_eq!(manifest.digest, sha256_digest(SCHEMA1_UNSIGNED.as_bytes()));
        assert_eq!(
            manifest.layers[0].digest,
            "sha256:8ddc19f16526912237dd8af81971d5e4dd0587907234be2b83e249518d5b673f"
        );
        assert_eq!(manifest.size, 0);
        assert_eq!(manifest.image_id, "");
    }

    #[test]
    fn schema1_signed_digest_is_of_the_payload() {
        let payload = SCHEMA1_UNSIGNED.trim_end().trim_end_matches('}').trim_end();
        let format_length = payload.len();
        let tail = "\n}";
        let protected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::json!({
                "formatLength": format_length,
                "formatTail": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tail),
                "time": "2015-01-01T00:00:00Z"
            })
            .to_string(),
        );
        let body = format!("{payload},\n   \"signatures\": [{{\"header\": {{}}, \"signature\": \"x\", \"protected\": \"{protected}\"}}]\n}}");
        let expected = sha256_digest(format!("{payload}{tail}").as_bytes());
        let manifest = parse_manifest(
            "busybox",
            "latest",
            Some(&expected),
            Some(DOCKER_MANIFEST_V1_SIGNED),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(manifest.digest, expected);
        assert_eq!(manifest.media_type, DOCKER_MANIFEST_V1_SIGNED);
        assert_eq!(manifest.layers.len(), 2);
    }

    #[test]
    fn digest_mismatch_is_malformed_naming_repository_and_reference() {
        let wrong = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let error = parse_manifest(
            "ns/app",
            "v1",
            Some(wrong),
            Some(DOCKER_MANIFEST),
            DOCKER_BODY.as_bytes(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, RegistryError::Malformed(message) if message.contains("ns/app:v1") && message.contains("mismatch")),
            "{error}"
        );
        let error = parse_manifest(
            "ns/app",
            wrong,
            None,
            Some(DOCKER_MANIFEST),
            DOCKER_BODY.as_bytes(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, RegistryError::Malformed(message) if message.contains(&format!("ns/app@{wrong}"))),
            "{error}"
        );
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"[]",
            b"{}",
            br#"{ "tag": "latest", "config": { "size": 1000 }, "layers": [] }"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:ab","size":-1},"layers":[]}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:ab","size":1}}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"size":1}]}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
            br#"{"schemaVersion":1,"fsLayers":[{"nope":1}]}"#,
            br#"{"schemaVersion":2,"mediaType":"text/html","config":{}}"#,
            br#"{"schemaVersion":2,"config":{"digest":"sha256:ab","size":9223372036854775807},"layers":[{"digest":"sha256:cd","size":9223372036854775807}]}"#,
            &[0xff, 0x00, 0x7b],
        ];
        for body in cases {
            let error = parse_manifest("ns/app", "v1", None, None, body).unwrap_err();
            assert!(
                matches!(&error, RegistryError::Malformed(message) if message.starts_with("manifest ns/app:v1: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn head_needs_a_digest() {
        let digest = "sha256:02674b9cb179d57c68b526733adf38b458bd31ba0abff0c2bf5ceca5bad72cd9";
        let head = parse_manifest_head(
            "a/b",
            "v1",
            Some(digest),
            Some(DOCKER_MANIFEST),
            Some("528"),
        )
        .unwrap();
        assert_eq!(
            head,
            ManifestHead {
                digest: digest.into(),
                media_type: DOCKER_MANIFEST.into(),
                size: 528,
                manifest: None,
            }
        );
        assert!(matches!(
            parse_manifest_head("a/b", "v1", None, None, None),
            Err(RegistryError::Malformed(_))
        ));
        assert!(matches!(
            parse_manifest_head("a/b", "v1", Some("garbage"), None, None),
            Err(RegistryError::Malformed(_))
        ));
    }

    #[test]
    fn head_by_digest_without_the_header_is_vouched_for_by_the_answer() {
        let digest = "sha256:02674b9cb179d57c68b526733adf38b458bd31ba0abff0c2bf5ceca5bad72cd9";
        let head =
            parse_manifest_head("a/b", digest, None, Some(OCI_MANIFEST), Some("528")).unwrap();
        assert_eq!(
            (head.digest.as_str(), head.media_type.as_str(), head.size),
            (digest, OCI_MANIFEST, 528)
        );
        // A header naming another digest is still refused.
        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(matches!(
            parse_manifest_head("a/b", digest, Some(other), None, None),
            Err(RegistryError::Malformed(_))
        ));
    }

    #[test]
    fn a_tag_needs_the_header_to_be_told_its_digest() {
        let digest = "sha256:02674b9cb179d57c68b526733adf38b458bd31ba0abff0c2bf5ceca5bad72cd9";
        assert!(head_tells_digest("v1", Some(digest)));
        assert!(!head_tells_digest("v1", None));
        assert!(!head_tells_digest("v1", Some("")));
        assert!(!head_tells_digest("v1", Some("garbage")));
        assert!(head_tells_digest(digest, None));
    }

    #[test]
    fn references_of_a_push_notification() {
        let references = vec![
            Descriptor {
                digest: "sha256:cfg".into(),
                size: 353,
                media_type: "application/vnd.docker.container.image.v1+json".into(),
            },
            Descriptor {
                digest: "sha256:l1".into(),
                size: 146,
                media_type: DOCKER_LAYER.into(),
            },
            Descriptor {
                digest: "sha256:l2".into(),
                size: 246,
                media_type: DOCKER_LAYER.into(),
            },
        ];
        assert_eq!(
            summarize_references(DOCKER_MANIFEST, &references),
            ("cfg".to_string(), 745)
        );
        let children = vec![
            Descriptor {
                digest: "sha256:a".into(),
                size: 700,
                media_type: OCI_MANIFEST.into(),
            },
            Descriptor {
                digest: "sha256:b".into(),
                size: 710,
                media_type: OCI_MANIFEST.into(),
            },
        ];
        assert_eq!(
            summarize_references(OCI_INDEX, &children),
            (String::new(), 1410)
        );
    }
}

/// Property tests on generated input: no body, header or mutation of a
/// valid manifest makes the parsers panic; errors name the manifest and the
/// field; a body that does not hash to its claimed digest is never
/// accepted; valid manifests read the same after a re-serialisation.
#[cfg(test)]
mod properties {
    use base64::Engine as _;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::hostile;

    /// Valid bodies of every kind, with the media type a registry sends.
    fn valid_manifests() -> Vec<(Option<&'static str>, Value)> {
        let digest = |n: u8| format!("sha256:{}", hex::encode([n; 32]));
        vec![
            (
                Some(DOCKER_MANIFEST),
                json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1522, "digest": digest(1)},
                "layers": [{"mediaType": DOCKER_LAYER, "size": 1967906, "digest": digest(2)}]}),
            ),
            (
                None,
                json!({"schemaVersion": 2,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 7023, "digest": digest(3)},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 32654, "digest": digest(4)},
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 16724, "digest": digest(5)}]}),
            ),
            (
                Some(OCI_INDEX),
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "size": 7143, "digest": digest(6), "platform": {"architecture": "amd64", "os": "linux"}},
                    {"mediaType": OCI_MANIFEST, "size": 7682, "digest": digest(7), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]}),
            ),
            (
                Some(DOCKER_MANIFEST_LIST),
                json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
                "manifests": [{"mediaType": DOCKER_MANIFEST, "size": 528, "digest": digest(8), "platform": {"architecture": "amd64", "os": "linux"}}]}),
            ),
            (
                Some(DOCKER_MANIFEST_V1),
                json!({"schemaVersion": 1, "name": "busybox", "tag": "latest", "architecture": "amd64",
                "fsLayers": [{"blobSum": digest(9)}, {"blobSum": digest(10)}],
                "history": [{"v1Compatibility": "{\"id\":\"top\"}"}, {"v1Compatibility": "{\"id\":\"base\"}"}]}),
            ),
        ]
    }

    fn content_type() -> impl Strategy<Value = Option<String>> {
        let mut known: Vec<Option<String>> = MANIFEST_MEDIA_TYPES_FOR_TESTS
            .iter()
            .map(|media_type| Some(media_type.to_string()))
            .collect();
        known.push(None);
        prop_oneof![prop::sample::select(known), ".{0,40}".prop_map(Some),]
    }

    const MANIFEST_MEDIA_TYPES_FOR_TESTS: &[&str] = &[
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST_V1,
        DOCKER_MANIFEST_V1_SIGNED,
    ];

    fn reference() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("latest".to_string()),
            Just(sha256_digest(b"other")),
            ".{0,20}",
        ]
    }

    fn assert_names_the_manifest(
        error: &RegistryError,
        reference: &str,
    ) -> Result<String, TestCaseError> {
        let RegistryError::Malformed(message) = error else {
            return Err(TestCaseError::fail(format!("not Malformed: {error:?}")));
        };
        prop_assert!(
            message.starts_with("manifest app") && message.contains(reference),
            "{message:?} does not name the manifest"
        );
        Ok(message.clone())
    }

    proptest! {
        #![proptest_config(hostile::config(256))]

        #[test]
        fn any_bytes_are_a_manifest_or_a_named_error(
            body in prop::collection::vec(any::<u8>(), 0..256),
            content_type in content_type(),
            reference in reference(),
            header_digest in prop::option::of(prop_oneof![Just(sha256_digest(b"x")), ".{0,20}"]),
        ) {
            let result = parse_manifest("app", &reference, header_digest.as_deref(), content_type.as_deref(), &body);
            if let Err(error) = result {
                assert_names_the_manifest(&error, &reference)?;
            }
        }

        #[test]
        fn any_json_is_a_manifest_or_a_named_error(
            value in hostile::json_value(),
            content_type in content_type(),
        ) {
            let body = value.to_string();
            if let Err(error) = parse_manifest("app", "latest", None, content_type.as_deref(), body.as_bytes()) {
                assert_names_the_manifest(&error, "latest")?;
            }
        }

        #[test]
        fn a_mutated_manifest_is_read_or_its_error_names_the_field(
            (content_type, mutation) in prop::sample::select(valid_manifests())
                .prop_flat_map(|(content_type, valid)| (Just(content_type), hostile::mutation(valid)))
        ) {
            let body = mutation.value.to_string();
            match parse_manifest("app", "latest", None, content_type, body.as_bytes()) {
                Ok(manifest) => {
                    prop_assert!(manifest.size >= 0);
                    prop_assert_eq!(manifest.digest, sha256_digest(body.as_bytes()));
                }
                Err(error) => {
                    let message = assert_names_the_manifest(&error, "latest")?;
                    prop_assert!(
                        mutation.named_in(&message),
                        "{message:?} does not name {:?}", mutation.path
                    );
                }
            }
        }

        #[test]
        fn a_body_that_differs_from_its_digest_is_never_accepted(
            (content_type, valid) in prop::sample::select(valid_manifests()),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            by_reference in any::<bool>(),
        ) {
            let original = valid.to_string().into_bytes();
            let digest = sha256_digest(&original);
            let mut body = original.clone();
            let at = at.index(body.len());
            prop_assume!(body[at] != byte);
            body[at] = byte;
            let result = if by_reference {
                parse_manifest("app", &digest, None, content_type, &body)
            } else {
                parse_manifest("app", "latest", Some(&digest), content_type, &body)
            };
            prop_assert!(result.is_err(), "a changed body was accepted as {digest}");
        }

        #[test]
        fn a_valid_manifest_reads_the_same_after_reserialising(
            (content_type, valid) in prop::sample::select(valid_manifests()),
            pretty in any::<bool>(),
        ) {
            let compact = valid.to_string().into_bytes();
            let other = if pretty {
                serde_json::to_vec_pretty(&valid).expect("serialisable")
            } else {
                format!(" {}\n", valid).into_bytes()
            };
            let first = parse_manifest("app", "latest", Some(&sha256_digest(&compact)), content_type, &compact)
                .expect("a valid manifest");
            let second = parse_manifest("app", &sha256_digest(&other), None, content_type, &other)
                .expect("a valid manifest");
            prop_assert_eq!(Manifest { digest: String::new(), ..first }, Manifest { digest: String::new(), ..second });
        }

        #[test]
        fn signed_schema1_with_any_format_length_and_tail_never_panics(
            format_length in prop_oneof![Just(u64::MAX), Just(usize::MAX as u64), 0..4096u64],
            tail in prop::collection::vec(any::<u8>(), 0..16),
            protected_is_json in any::<bool>(),
        ) {
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let protected = if protected_is_json {
                engine.encode(json!({"formatLength": format_length, "formatTail": engine.encode(&tail)}).to_string())
            } else {
                engine.encode(&tail)
            };
            let body = json!({"schemaVersion": 1, "fsLayers": [{"blobSum": sha256_digest(b"l")}],
                "signatures": [{"header": {}, "signature": "x", "protected": protected}]}).to_string();
            let claimed = sha256_digest(b"claimed");
            let _ = parse_manifest("app", "latest", Some(&claimed), Some(DOCKER_MANIFEST_V1_SIGNED), body.as_bytes());
            let _ = parse_manifest("app", "latest", None, None, body.as_bytes());
        }

        #[test]
        fn any_head_answer_is_read_or_a_named_error(
            reference in reference(),
            header_digest in prop::option::of(".{0,20}"),
            content_type in content_type(),
            content_length in prop::option::of(prop_oneof![".{0,12}", any::<i64>().prop_map(|n| n.to_string())]),
        ) {
            match parse_manifest_head("app", &reference, header_digest.as_deref(), content_type.as_deref(), content_length.as_deref()) {
                Ok(head) => prop_assert!(head.size >= 0, "size {} from {content_length:?}", head.size),
                Err(error) => {
                    assert_names_the_manifest(&error, &reference)?;
                }
            }
        }
    }

    #[test]
    fn layer_sizes_overflowing_i64_are_an_error_naming_them() {
        let body = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"size": i64::MAX, "digest": sha256_digest(b"c")},
            "layers": [{"size": i64::MAX, "digest": sha256_digest(b"l")}]})
        .to_string();
        let error = parse_manifest("app", "latest", None, None, body.as_bytes()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("manifest app:latest: sizes overflow"),
            "{error}"
        );
    }

    #[test]
    fn head_with_a_negative_content_length_has_size_zero_not_negative() {
        let digest = sha256_digest(b"m");
        let head = parse_manifest_head(
            "app",
            "latest",
            Some(&digest),
            Some(OCI_MANIFEST),
            Some("-5"),
        )
        .unwrap();
        assert_eq!(head.size, 0);
    }

    #[test]
    fn manifest_without_media_type_config_or_manifests_names_them() {
        let body = json!({"schemaVersion": 2, "layers": []}).to_string();
        let error = parse_manifest("app", "latest", None, None, body.as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed answer: manifest app:latest: neither an image manifest nor an index: \
             no mediaType, config or manifests"
        );
    }

    #[test]
    fn deeply_nested_manifest_is_an_error_not_a_stack_overflow() {
        let body = format!(
            "{{\"schemaVersion\":2,\"config\":{}}}",
            hostile::nested_arrays(100_000)
        );
        let error = parse_manifest("app", "latest", None, None, body.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("body is not JSON"), "{error}");
    }
}
