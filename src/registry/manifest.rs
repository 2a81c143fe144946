//! Pure manifest parsing: Docker schema 2, Docker manifest list, OCI image
//! manifest, OCI image index, and schema 1 (digest and layers only). No I/O.

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

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// From `Docker-Content-Digest`.
    pub digest: String,
    /// From `Content-Type`.
    pub media_type: String,
    /// From `Content-Length`.
    pub size: i64,
}
