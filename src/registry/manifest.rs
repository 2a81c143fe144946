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

pub use super::media_type::{
    DOCKER_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED, OCI_INDEX, OCI_MANIFEST,
};

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

/// Whether `digest` is a well-formed digest that may go into a URL path:
/// `algorithm:encoded` per the distribution digest grammar (see
/// `crate::notification::reference::is_digest`), and for the registered
/// algorithms exactly their length of lowercase hex (64 for `sha256`, 128
/// for `sha512`). Layer digests come from the registry's manifests and are
/// checked with this before they become a blob URL or a scanner's path.
pub fn is_valid_digest(digest: &str) -> bool {
    if !crate::notification::reference::is_digest(digest) {
        return false;
    }
    let lowercase_hex = |encoded: &str, length: usize| {
        encoded.len() == length
            && encoded
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    match digest.split_once(':') {
        Some(("sha256", encoded)) => lowercase_hex(encoded, 64),
        Some(("sha512", encoded)) => lowercase_hex(encoded, 128),
        Some(_) => true,
        None => false,
    }
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
mod tests;

#[cfg(test)]
mod properties;
