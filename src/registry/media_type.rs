//! The media-type strings of manifests, configs and notification envelopes,
//! written once: the manifest parser, the client's `Accept` header, the
//! notification parser and the CLI's short words all name them from here.
//! Constants only: no parsing, no I/O.

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
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Every manifest media type regkeeper reads, in the order of the `Accept`
/// header of every manifest request.
pub const MANIFESTS: &[&str] = &[
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_V1_SIGNED,
    DOCKER_MANIFEST_V1,
];

/// Manifest media types of an index (manifest list, OCI index).
pub const INDEXES: &[&str] = &[DOCKER_MANIFEST_LIST, OCI_INDEX];

/// Image manifest media types that carry a config and layers.
pub const IMAGES: &[&str] = &[DOCKER_MANIFEST, OCI_MANIFEST];

/// The registry's notification envelope media type.
pub const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
/// The envelope media type newer registries announce.
pub const EVENTS_V2: &str = "application/vnd.docker.distribution.events.v2+json";
