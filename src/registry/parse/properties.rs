//! Property tests on generated input: no header, body or token response
//! makes these parsers panic, and well-formed headers read back as written.

use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::registry::auth::TokenCache;
use crate::testing::hostile;

/// Text rich in the characters the header grammars care about.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,64}", r#"[a-zA-Z =,;"\\<>/:é\t]{0,64}"#,]
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_.:/-]{0,10}"
}

/// A parameter value: anything, including quotes, backslashes, commas
/// and `=`, which the header carries quoted and escaped.
fn quoted_value() -> impl Strategy<Value = String> {
    r#"[a-zA-Z0-9 =,;"\\:/*.é]{0,16}"#
}

fn quote(value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|character| match character {
            '"' | '\\' => vec!['\\', character],
            _ => vec![character],
        })
        .collect();
    format!("\"{escaped}\"")
}

proptest! {
    #![proptest_config(hostile::config(512))]

    #[test]
    fn any_www_authenticate_reads_without_panicking(header in header_text()) {
        for challenge in parse_www_authenticate(&header) {
            prop_assert!(!challenge.scheme.is_empty());
            prop_assert_eq!(challenge.scheme.to_ascii_lowercase(), challenge.scheme.clone());
            for (key, _) in &challenge.params {
                prop_assert!(!key.is_empty());
            }
            let _ = challenge.scopes();
        }
    }

    #[test]
    fn written_challenges_read_back_as_written(
        challenges in prop::collection::vec(
            (token(), prop::collection::vec((token(), quoted_value()), 0..4)),
            1..3,
        )
    ) {
        let header = challenges
            .iter()
            .map(|(scheme, params)| {
                let params: Vec<String> = params
                    .iter()
                    .map(|(key, value)| format!("{key}={}", quote(value)))
                    .collect();
                format!("{scheme} {}", params.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let expected: Vec<Challenge> = challenges
            .iter()
            .map(|(scheme, params)| Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params: params
                    .iter()
                    .map(|(key, value)| (key.to_ascii_lowercase(), value.clone()))
                    .collect(),
            })
            .collect();
        prop_assert_eq!(parse_www_authenticate(&header), expected, "header {}", header);
    }

    #[test]
    fn any_link_header_reads_without_panicking(header in header_text()) {
        if let Some(target) = next_link(&header) {
            prop_assert!(!target.contains('>'));
        }
    }

    #[test]
    fn a_next_link_reads_back_among_other_links(
        target in "[a-zA-Z0-9/?=&%._-]{0,24}",
        before in prop::option::of("[a-z/?=]{0,8}"),
        quoted in any::<bool>(),
    ) {
        let relation = if quoted { "\"next\"" } else { "next" };
        let mut header = String::new();
        if let Some(before) = &before {
            header.push_str(&format!("<{before}>; rel=\"prev\", "));
        }
        header.push_str(&format!("<{target}>; rel={relation}"));
        prop_assert_eq!(next_link(&header), Some(target.trim().to_string()));
    }

    #[test]
    fn a_resolved_link_never_leaves_the_registry(target in header_text()) {
        let current = url::Url::parse("http://127.0.0.1:5000/v2/_catalog?n=10").expect("a url");
        if let Some(resolved) = resolve_link(&current, &target) {
            prop_assert_eq!(resolved.origin(), current.origin());
        }
    }

    #[test]
    fn any_error_body_reads_without_panicking(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        hostile::json_value().prop_map(|value| value.to_string().into_bytes()),
        ".{0,300}".prop_map(String::into_bytes),
    ]) {
        if let Some(error) = parse_error_body(&body) {
            let _ = error.message;
        }
    }

    #[test]
    fn any_page_body_is_a_page_or_an_error(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        hostile::json_value().prop_map(|value| value.to_string().into_bytes()),
    ]) {
        if let Err(message) = parse_catalog_page(&body) {
            prop_assert!(message.starts_with("catalog page"));
        }
        if let Err(message) = parse_tags_page(&body) {
            prop_assert!(message.starts_with("tags list"));
        }
    }

    #[test]
    fn any_retry_after_reads_without_panicking(value in prop_oneof![
        header_text(),
        any::<u64>().prop_map(|seconds| seconds.to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        Just("Thu, 01 Jan 1970 00:00:00 GMT".to_string()),
    ]) {
        let _ = parse_retry_after(&value, SystemTime::now());
    }

    #[test]
    fn any_token_response_is_cached_or_an_error_naming_it(
        token in prop_oneof![Just(None), Just(Some(serde_json::json!("a-token"))), hostile::hostile_leaf().prop_map(Some)],
        expires_in in prop::option::of(hostile::hostile_leaf()),
        issued_at in prop::option::of(prop_oneof![
            hostile::hostile_leaf(),
            Just(serde_json::json!("9999-12-31T23:59:59Z")),
            Just(serde_json::json!("1970-01-01T00:00:00Z")),
            Just(serde_json::json!("0001-01-01T00:00:00Z")),
        ]),
    ) {
        let mut body = serde_json::Map::new();
        for (key, value) in [("token", token), ("expires_in", expires_in), ("issued_at", issued_at)] {
            if let Some(value) = value {
                body.insert(key.to_string(), value);
            }
        }
        let body = serde_json::Value::Object(body).to_string();
        match parse_token_response(body.as_bytes()) {
            Ok(grant) => {
                let lifetime = grant.lifetime(SystemTime::now());
                let now = Instant::now();
                let mut cache = TokenCache::default();
                cache.insert("scope", grant.token.clone(), lifetime, now);
                prop_assert_eq!(cache.get("scope", now), Some(grant.token));
            }
            Err(message) => prop_assert!(message.starts_with("token response"), "{}", message),
        }
    }
}
