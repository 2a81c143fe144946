//! Pure parsers of what the registry and its token realm send back:
//! `WWW-Authenticate` challenges, `Link` headers, `{"errors":[...]}` bodies,
//! `Retry-After`, and token responses. No I/O, no clock: callers pass `now`.

use std::time::{Duration, SystemTime};

/// One challenge of a `WWW-Authenticate` header, e.g.
/// `Bearer realm="...",service="...",scope="..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic`, `bearer`).
    pub scheme: String,
    /// Parameters in order, keys lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first parameter called `key` (give it lowercased).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// `realm`.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// `service`.
    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    /// `error`, e.g. `insufficient_scope` or `invalid_token`.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    /// Every scope: all `scope` parameters, each split on spaces.
    pub fn scopes(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(name, _)| name == "scope")
            .flat_map(|(_, value)| {
                value
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Parses a `WWW-Authenticate` value into its challenges. Schemes and keys
/// are case-insensitive (lowercased here); quoted values may hold `=`, `,`
/// and backslash escapes; several challenges may share one header.
/// Garbage yields whatever challenges could be read, never a panic.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let chars: Vec<char> = header.chars().collect();
    let mut position = 0;
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        while position < chars.len() && (chars[position].is_whitespace() || chars[position] == ',')
        {
            position += 1;
        }
        if position >= chars.len() {
            break;
        }
        if chars[position] == '"' {
            // A stray quoted string where a token should be: skip it.
            let _ = read_quoted(&chars, &mut position);
            continue;
        }
        let start = position;
        while position < chars.len() && !is_separator(chars[position]) {
            position += 1;
        }
        let token: String = chars[start..position].iter().collect();
        if token.is_empty() {
            // A lone '=': skip it.
            position += 1;
            continue;
        }
        let mut lookahead = position;
        while lookahead < chars.len() && chars[lookahead].is_whitespace() {
            lookahead += 1;
        }
        let is_param = lookahead < chars.len() && chars[lookahead] == '=';
        match (is_param, challenges.last_mut()) {
            (true, Some(challenge)) => {
                position = lookahead + 1;
                while position < chars.len() && chars[position].is_whitespace() {
                    position += 1;
                }
                let value = if position < chars.len() && chars[position] == '"' {
                    read_quoted(&chars, &mut position)
                } else {
                    let value_start = position;
                    while position < chars.len()
                        && chars[position] != ','
                        && !chars[position].is_whitespace()
                    {
                        position += 1;
                    }
                    chars[value_start..position].iter().collect()
                };
                challenge.params.push((token.to_ascii_lowercase(), value));
            }
            (true, None) => {
                // A parameter before any scheme: skip its value.
                position = lookahead + 1;
            }
            (false, _) => challenges.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            }),
        }
    }
    challenges
}

fn is_separator(character: char) -> bool {
    character.is_whitespace() || character == ',' || character == '=' || character == '"'
}

/// Reads a quoted string starting at `chars[*position] == '"'`, honouring
/// backslash escapes; an unterminated string runs to the end.
fn read_quoted(chars: &[char], position: &mut usize) -> String {
    let mut value = String::new();
    *position += 1;
    while *position < chars.len() {
        let character = chars[*position];
        *position += 1;
        match character {
            '\\' if *position < chars.len() => {
                value.push(chars[*position]);
                *position += 1;
            }
            '"' => return value,
            _ => value.push(character),
        }
    }
    value
}

/// The target of the `rel="next"` link in a `Link` header, as written
/// (relative or absolute). Accepts several links, `rel=next` unquoted, and
/// quotes escaped with backslashes (`rel=\"next\"`).
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after_open = &rest[open + 1..];
        let close = after_open.find('>')?;
        let target = after_open[..close].trim();
        let after_close = &after_open[close + 1..];
        let params_end = after_close.find('<').unwrap_or(after_close.len());
        let params = &after_close[..params_end];
        for param in params.split(';') {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if !key.trim().eq_ignore_ascii_case("rel") {
                continue;
            }
            let value: String = value
                .chars()
                .filter(|character| !matches!(character, '"' | '\\'))
                .collect();
            let value = value.trim().trim_end_matches(',');
            if value
                .split_whitespace()
                .any(|relation| relation.eq_ignore_ascii_case("next"))
            {
                return Some(target.to_string());
            }
        }
        rest = after_close;
    }
    None
}

/// Resolves a `Link` target against the URL of the page that carried it.
/// A target on another origin (a registry behind a proxy advertising its
/// internal name) keeps only its path and query, on the registry's origin,
/// so credentials never go to a host that was not configured.
pub fn resolve_link(current: &url::Url, target: &str) -> Option<url::Url> {
    let resolved = current.join(target).ok()?;
    if resolved.origin() == current.origin() {
        return Some(resolved);
    }
    let mut rebased = current.clone();
    rebased.set_path(resolved.path());
    rebased.set_query(resolved.query());
    Some(rebased)
}

/// What a registry error body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// The first error's `code`, e.g. `NAME_UNKNOWN`.
    pub code: Option<String>,
    /// The messages, joined with `; `.
    pub message: String,
}

/// Reads a registry error body: `{"errors":[{"code","message","detail"}]}`,
/// a token realm's `{"error":"..."}` or `{"message":"..."}`, JSON too broken
/// to parse (codes and messages are then picked out of the text), or a
/// short plain-text body. None when there is nothing useful.
pub fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(errors) = value.get("errors").and_then(|errors| errors.as_array()) {
            let code = errors
                .iter()
                .find_map(|error| error.get("code").and_then(|code| code.as_str()))
                .map(String::from);
            let messages: Vec<String> = errors
                .iter()
                .filter_map(|error| {
                    error
                        .get("message")
                        .and_then(|message| message.as_str())
                        .or_else(|| error.get("code").and_then(|code| code.as_str()))
                        .map(String::from)
                })
                .collect();
            return Some(ErrorBody {
                code,
                message: messages.join("; "),
            });
        }
        for key in ["error", "message", "details"] {
            if let Some(message) = value.get(key).and_then(|message| message.as_str()) {
                return Some(ErrorBody {
                    code: None,
                    message: message.to_string(),
                });
            }
        }
        return None;
    }
    let codes = quoted_values_after(text, "code");
    let messages = quoted_values_after(text, "message");
    if !codes.is_empty() || !messages.is_empty() {
        let message = if messages.is_empty() {
            codes.join("; ")
        } else {
            messages.join("; ")
        };
        return Some(ErrorBody {
            code: codes.into_iter().next(),
            message,
        });
    }
    if text.starts_with('{') || text.starts_with('<') {
        return None;
    }
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    Some(ErrorBody {
        code: None,
        message: line,
    })
}

/// Every `"KEY" : "VALUE"` value in `text`, for JSON too broken to parse.
fn quoted_values_after(text: &str, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\"");
    let mut values = Vec::new();
    let mut rest = text;
    while let Some(found) = rest.find(&needle) {
        rest = &rest[found + needle.len()..];
        let trimmed = rest.trim_start();
        let Some(after_colon) = trimmed.strip_prefix(':') else {
            continue;
        };
        let after_colon = after_colon.trim_start();
        let Some(quoted) = after_colon.strip_prefix('"') else {
            continue;
        };
        let chars: Vec<char> = std::iter::once('"').chain(quoted.chars()).collect();
        let mut position = 0;
        values.push(read_quoted(&chars, &mut position));
    }
    values
}

/// `Retry-After`: delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(date.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The repositories of one catalog page, `{"repositories":[...]}`; a page
/// without the key (or with `null`) has none.
pub fn parse_catalog_page(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        repositories: Option<Vec<String>>,
    }
    let page: Page = serde_json::from_slice(body)
        .map_err(|error| format!("catalog page is not valid: {error}"))?;
    Ok(page.repositories.unwrap_or_default())
}

/// The tags of one tags-list page, `{"name":...,"tags":[...]}`; `None` when
/// `tags` is `null` or absent (a repository whose manifests were all deleted).
pub fn parse_tags_page(body: &[u8]) -> Result<Option<Vec<String>>, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        tags: Option<Vec<String>>,
    }
    let page: Page =
        serde_json::from_slice(body).map_err(|error| format!("tags list is not valid: {error}"))?;
    Ok(page.tags)
}

/// A token from the realm.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// `token`, or `access_token` when `token` is absent.
    pub token: String,
    /// How long it is valid from the moment it was issued.
    pub expires_in: Duration,
    /// `issued_at`, when the realm sent a readable one.
    pub issued_at: Option<SystemTime>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

impl TokenGrant {
    /// How long the token stays usable from `now`: `expires_in` counted
    /// from `issued_at` when that lies in the last `expires_in` (a clock
    /// ahead or far behind falls back to counting from `now`).
    pub fn lifetime(&self, now: SystemTime) -> Duration {
        match self
            .issued_at
            .and_then(|issued| now.duration_since(issued).ok())
        {
            Some(age) if age < self.expires_in => self.expires_in - age,
            _ => self.expires_in,
        }
    }
}

/// The default lifetime of a token without `expires_in` (the token spec's).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Reads a token response: `{"token": ..., "access_token": ...,
/// "expires_in": seconds, "issued_at": RFC 3339}`.
pub fn parse_token_response(body: &[u8]) -> Result<TokenGrant, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("token response is not JSON: {error}"))?;
    let token = ["token", "access_token"]
        .iter()
        .find_map(|key| {
            value
                .get(*key)
                .and_then(|token| token.as_str())
                .filter(|token| !token.is_empty())
        })
        .ok_or_else(|| "token response has neither token nor access_token".to_string())?;
    let expires_in = value
        .get("expires_in")
        .and_then(|seconds| {
            seconds
                .as_u64()
                .or_else(|| seconds.as_f64().map(|seconds| seconds.max(0.0) as u64))
        })
        .filter(|seconds| *seconds > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let issued_at = value
        .get("issued_at")
        .and_then(|issued| issued.as_str())
        .and_then(|issued| chrono::DateTime::parse_from_rfc3339(issued).ok())
        .and_then(|issued| u64::try_from(issued.timestamp()).ok())
        .map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
    Ok(TokenGrant {
        token: token.to_string(),
        expires_in,
        issued_at,
    })
}

#[cfg(test)]
mod tests {
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
}

/// Property tests on generated input: no header, body or token response
/// makes these parsers panic, and well-formed headers read back as written.
#[cfg(test)]
mod properties {
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;
    use crate::hostile;
    use crate::registry::auth::TokenCache;

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
}
