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

/// `Retry-After`: delay-seconds or an HTTP date (relative to `now`) in any
/// of the three forms HTTP/1.1 allows (IMF-fixdate, RFC 850, asctime).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
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
            .field("token", &crate::config::REDACTED)
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
mod tests;

#[cfg(test)]
mod properties;
