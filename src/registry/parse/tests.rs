//! Unit tests of the header, body and token-response parsers on literal
//! inputs: `WWW-Authenticate` challenges, `Link` headers, error bodies,
//! catalog and tag list pages, `Retry-After` and token responses.

use super::*;

fn params(challenge: &Challenge) -> Vec<(&str, &str)> {
    challenge
        .params
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

#[test]
fn bearer_challenge_of_the_catalog() {
    let challenges = parse_www_authenticate(
        r#"Bearer realm="http://portus.test.lan/v2/token",service="registry.test.lan",scope="registry:catalog:*""#,
    );
    assert_eq!(challenges.len(), 1);
    assert_eq!(challenges[0].scheme, "bearer");
    assert_eq!(
        challenges[0].realm(),
        Some("http://portus.test.lan/v2/token")
    );
    assert_eq!(challenges[0].service(), Some("registry.test.lan"));
    assert_eq!(challenges[0].scopes(), vec!["registry:catalog:*"]);
}

#[test]
fn bearer_challenge_without_scope_and_with_nested_repository() {
    let challenge = &parse_www_authenticate(
        r#"Bearer realm="http://portus.test.lan/v2/token",service="registry.test.lan""#,
    )[0];
    assert!(challenge.scopes().is_empty());
    let challenge = &parse_www_authenticate(
        r#"Bearer realm="http://portus.test.lan/v2/token",service="registry.test.lan",scope="repository:foo/busybox:pull""#,
    )[0];
    assert_eq!(challenge.scopes(), vec!["repository:foo/busybox:pull"]);
}

#[test]
fn basic_challenge() {
    let challenges = parse_www_authenticate(r#"Basic realm="Application""#);
    assert_eq!(
        challenges,
        vec![Challenge {
            scheme: "basic".into(),
            params: vec![("realm".into(), "Application".into())]
        }]
    );
}

#[test]
fn quoted_values_hold_equals_commas_and_escapes() {
    let challenge = &parse_www_authenticate(
        r#"BEARER Realm="https://auth.example/token?a=b,c=d", SERVICE = "svc", scope="repository:ns/app:pull,push", note="say \"hi\"""#,
    )[0];
    assert_eq!(challenge.scheme, "bearer");
    assert_eq!(
        params(challenge),
        vec![
            ("realm", "https://auth.example/token?a=b,c=d"),
            ("service", "svc"),
            ("scope", "repository:ns/app:pull,push"),
            ("note", r#"say "hi""#),
        ]
    );
}

#[test]
fn several_scopes_in_one_value_and_in_several_params() {
    let challenge = &parse_www_authenticate(
        r#"Bearer realm="r",scope="repository:a:pull repository:b:pull",scope="registry:catalog:*""#,
    )[0];
    assert_eq!(
        challenge.scopes(),
        vec![
            "repository:a:pull",
            "repository:b:pull",
            "registry:catalog:*"
        ]
    );
}

#[test]
fn error_hints() {
    let challenge = &parse_www_authenticate(
        r#"Bearer realm="http://127.0.0.1:5056/token",service="svc",scope="repository:ns/app:delete",error="insufficient_scope""#,
    )[0];
    assert_eq!(challenge.error(), Some("insufficient_scope"));
    let challenge = &parse_www_authenticate(r#"Bearer realm="r",error="invalid_token""#)[0];
    assert_eq!(challenge.error(), Some("invalid_token"));
}

#[test]
fn several_challenges_in_one_header() {
    let challenges = parse_www_authenticate(r#"Basic realm="a", Bearer realm="b",service=s"#);
    assert_eq!(challenges.len(), 2);
    assert_eq!(challenges[0].scheme, "basic");
    assert_eq!(challenges[1].scheme, "bearer");
    assert_eq!(challenges[1].service(), Some("s"));
}

#[test]
fn garbage_challenges_do_not_panic() {
    for header in [
        "",
        "=",
        "\"",
        "Bearer realm=",
        "Bearer realm=\"unterminated",
        ",,,",
        "= x = \"y\"",
        "Bearer ==,",
    ] {
        let _ = parse_www_authenticate(header);
    }
    assert_eq!(
        parse_www_authenticate("Bearer realm=\"unterminated")[0].realm(),
        Some("unterminated")
    );
}

#[test]
fn next_link_relative_with_escaped_quotes() {
    assert_eq!(
        next_link(r#"<_catalog?last=busybox99&n=100>; rel=\"next\""#).as_deref(),
        Some("_catalog?last=busybox99&n=100")
    );
    assert_eq!(
        next_link(r#"<busybox/tags/list?last=102&n=100>; rel=\"next\""#).as_deref(),
        Some("busybox/tags/list?last=102&n=100")
    );
}

#[test]
fn next_link_shapes() {
    assert_eq!(
        next_link(r#"</v2/_catalog?last=ns%2Fapp&n=1>; rel="next""#).as_deref(),
        Some("/v2/_catalog?last=ns%2Fapp&n=1")
    );
    assert_eq!(
        next_link(r#"<https://r.example/v2/_catalog?last=a&n=2>; rel=next"#).as_deref(),
        Some("https://r.example/v2/_catalog?last=a&n=2")
    );
    assert_eq!(
        next_link(r#"</first>; rel="prev", </second>; REL="next""#).as_deref(),
        Some("/second")
    );
    assert_eq!(
        next_link(r#"</x>; title="a,b"; rel="prev next""#).as_deref(),
        Some("/x")
    );
    assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    assert_eq!(next_link(""), None);
    assert_eq!(next_link("<unterminated; rel=next"), None);
}

#[test]
fn resolve_link_relative_absolute_and_foreign() {
    let current = url::Url::parse("http://127.0.0.1:5000/v2/_catalog?n=2").unwrap();
    assert_eq!(
        resolve_link(&current, "_catalog?last=busybox99&n=100")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:5000/v2/_catalog?last=busybox99&n=100"
    );
    assert_eq!(
        resolve_link(&current, "/v2/_catalog?last=ns%2Fapp&n=1")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:5000/v2/_catalog?last=ns%2Fapp&n=1"
    );
    assert_eq!(
        resolve_link(&current, "http://127.0.0.1:5000/v2/_catalog?last=b&n=2")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:5000/v2/_catalog?last=b&n=2"
    );
    assert_eq!(
        resolve_link(&current, "https://internal:443/v2/_catalog?last=b&n=2")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:5000/v2/_catalog?last=b&n=2"
    );
}

#[test]
fn error_body_of_the_registry() {
    let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested resource is not authorized","detail":[{"Type":"repository","Name":"foo/busybox","Action":"pull"}]}]}"#;
    assert_eq!(
        parse_error_body(body),
        Some(ErrorBody {
            code: Some("UNAUTHORIZED".into()),
            message: "access to the requested resource is not authorized".into()
        })
    );
    let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}},{"code":"MANIFEST_UNKNOWN"}]}"#;
    let parsed = parse_error_body(body).unwrap();
    assert_eq!(parsed.code.as_deref(), Some("NAME_UNKNOWN"));
    assert_eq!(
        parsed.message,
        "repository name not known to registry; MANIFEST_UNKNOWN"
    );
}

#[test]
fn error_body_that_is_invalid_json() {
    let body = br#"{[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"another"}}]}"#;
    assert_eq!(
        parse_error_body(body),
        Some(ErrorBody {
            code: Some("NAME_UNKNOWN".into()),
            message: "repository name not known to registry".into()
        })
    );
}

#[test]
fn error_body_of_a_token_realm_and_plain_text() {
    assert_eq!(
        parse_error_body(br#"{"error":"Invalid username or password."}"#),
        Some(ErrorBody {
            code: None,
            message: "Invalid username or password.".into()
        })
    );
    assert_eq!(parse_error_body(b"{}"), None);
    assert_eq!(parse_error_body(b""), None);
    assert_eq!(parse_error_body(b"<html>bad gateway</html>"), None);
    assert_eq!(
        parse_error_body(b"upstream timed out\nmore"),
        Some(ErrorBody {
            code: None,
            message: "upstream timed out".into()
        })
    );
    assert_eq!(parse_error_body(&[0xff, 0xfe]), None);
}

#[test]
fn catalog_pages() {
    assert_eq!(
        parse_catalog_page(br#"{"repositories":["missing/busybox", "busybox"]}"#).unwrap(),
        vec!["missing/busybox", "busybox"]
    );
    assert_eq!(
        parse_catalog_page(br#"{"repositories":[]}"#).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(parse_catalog_page(b"{}").unwrap(), Vec::<String>::new());
    assert!(parse_catalog_page(br#"{"repositories":"busybox"}"#).is_err());
    assert!(parse_catalog_page(b"").is_err());
}

#[test]
fn tags_pages() {
    assert_eq!(
        parse_tags_page(br#"{"name":"busybox", "tags": ["latest"] }"#).unwrap(),
        Some(vec!["latest".to_string()])
    );
    assert_eq!(
        parse_tags_page(br#"{"name":"busybox", "tags":["101", "102"]}"#).unwrap(),
        Some(vec!["101".to_string(), "102".into()])
    );
    assert_eq!(
        parse_tags_page(br#"{"name":"ns/app","tags":null}"#).unwrap(),
        None
    );
    assert_eq!(parse_tags_page(br#"{"name":"ns/app"}"#).unwrap(), None);
    assert!(parse_tags_page(br#"{"tags":[1]}"#).is_err());
}

#[test]
fn retry_after_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn retry_after_reads_all_three_http_date_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
    let in_ten_seconds = Some(Duration::from_secs(10));
    // IMF-fixdate, the form senders must use.
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
        in_ten_seconds
    );
    // RFC 850, obsolete but to be accepted.
    assert_eq!(
        parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
        in_ten_seconds
    );
    // ANSI C asctime(), obsolete but to be accepted.
    assert_eq!(
        parse_retry_after("Wed Oct 21 07:28:10 2015", now),
        in_ten_seconds
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:10 +0100", now),
        None
    );
}

#[test]
fn token_responses() {
    let grant = parse_token_response(br#"{"token":"abc"}"#).unwrap();
    assert_eq!(
        (grant.token.as_str(), grant.expires_in, grant.issued_at),
        ("abc", DEFAULT_TOKEN_LIFETIME, None)
    );
    let grant = parse_token_response(
        br#"{"access_token":"xyz","expires_in":900,"issued_at":"2019-01-10T15:29:18+00:00"}"#,
    )
    .unwrap();
    assert_eq!(grant.token, "xyz");
    assert_eq!(grant.expires_in, Duration::from_secs(900));
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_547_134_158);
    assert_eq!(grant.issued_at, Some(issued));
    assert_eq!(
        grant.lifetime(issued + Duration::from_secs(100)),
        Duration::from_secs(800)
    );
    assert_eq!(
        grant.lifetime(issued + Duration::from_secs(5000)),
        Duration::from_secs(900)
    );
    assert_eq!(
        grant.lifetime(issued - Duration::from_secs(5)),
        Duration::from_secs(900)
    );
    assert!(parse_token_response(br#"{"token":""}"#).is_err());
    assert!(parse_token_response(b"not json").is_err());
    assert!(!format!("{grant:?}").contains("xyz"));
}
