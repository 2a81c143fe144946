//! Unit tests of the manifest parsers on literal bodies: every manifest
//! kind, digests checked against the body, malformed bodies, what a HEAD
//! answer tells, and the references of a push notification.

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
    let head = parse_manifest_head("a/b", digest, None, Some(OCI_MANIFEST), Some("528")).unwrap();
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
fn layer_digests_that_could_leave_the_url_path_are_invalid() {
    let sha256 = format!("sha256:{}", "a".repeat(64));
    assert!(is_valid_digest(&sha256));
    assert!(is_valid_digest(&format!("sha512:{}", "0".repeat(128))));
    assert!(is_valid_digest(
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
    ));
    for bad in [
        "".to_string(),
        "sha256".to_string(),
        "sha256:".to_string(),
        "sha256:../../../admin/secret".to_string(),
        "sha256:abc".to_string(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}/..", "a".repeat(64)),
        format!("sha256:{}%2F", "a".repeat(64)),
        "../blobs:x".to_string(),
        "SHA256:abc".to_string(),
    ] {
        assert!(!is_valid_digest(&bad), "{bad:?}");
    }
}
