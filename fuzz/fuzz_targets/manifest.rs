//! Fuzzes the manifest parser: the first byte picks the `Content-Type`, the
//! rest is the body, read by tag and by its own digest; never a panic, and a
//! body read by its digest keeps that digest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::registry::manifest::{
    parse_manifest, sha256_digest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED, OCI_INDEX, OCI_MANIFEST,
};

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some(DOCKER_MANIFEST),
    Some(DOCKER_MANIFEST_LIST),
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST_V1),
    Some(DOCKER_MANIFEST_V1_SIGNED),
    Some("application/json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    let _ = parse_manifest("app", "latest", None, content_type, body);
    let digest = sha256_digest(body);
    if let Ok(manifest) = parse_manifest("app", &digest, Some(&digest), content_type, body) {
        assert_eq!(manifest.digest, digest);
        assert!(manifest.size >= 0);
    }
});
