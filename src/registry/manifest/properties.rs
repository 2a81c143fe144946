//! Property tests on generated input: no body, header or mutation of a
//! valid manifest makes the parsers panic; errors name the manifest and the
//! field; a body that does not hash to its claimed digest is never
//! accepted; valid manifests read the same after a re-serialisation.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::testing::hostile;

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
