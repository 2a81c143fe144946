//! Answers to the registry's challenges: the configured credentials (never
//! in a log or a `Debug`), the scheme learned from the last challenge, and
//! the per-scope token cache. No I/O here: `client.rs` fetches tokens and
//! hands them over; expiry logic takes `now` as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// User name and password from the configuration.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password; never logged.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &crate::config::REDACTED)
            .finish()
    }
}

impl Credentials {
    /// The `Authorization` value for Basic auth.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// How the registry wants to be authenticated, learned from its challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// No challenge seen yet (or none ever: an anonymous registry).
    Unknown,
    /// `Basic realm=...` (htpasswd).
    Basic,
    /// `Bearer realm=...,service=...`: tokens from the realm.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` to ask for.
        service: Option<String>,
    },
}

/// The scope for pulling from a repository.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope for deleting in a repository.
pub fn delete_scope(repository: &str) -> String {
    format!("repository:{repository}:delete")
}

/// The scope for the catalog.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// The cache key for a set of scopes: sorted, space-separated.
pub fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(" ")
}

/// Tokens refresh this long before they expire, at most a quarter of their life.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// No token is kept longer than this, whatever lifetime the realm gives
/// (an `expires_in` of 2^64 seconds would overflow the clock).
pub const MAX_CACHED_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

struct CachedToken {
    token: String,
    usable_until: Instant,
}

/// Bearer tokens by scope key, each usable until shortly before it expires.
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<String, CachedToken>,
}

impl TokenCache {
    /// The token for `scope_key` if it is still usable at `now`.
    pub fn get(&self, scope_key: &str, now: Instant) -> Option<String> {
        self.tokens
            .get(scope_key)
            .filter(|cached| now < cached.usable_until)
            .map(|cached| cached.token.clone())
    }

    /// Keeps `token` for `scope_key`; it lives `lifetime` from `now` and is
    /// dropped [`REFRESH_MARGIN`] (or a quarter of its life) before that,
    /// and after [`MAX_CACHED_LIFETIME`] at the latest.
    pub fn insert(&mut self, scope_key: &str, token: String, lifetime: Duration, now: Instant) {
        let lifetime = lifetime.min(MAX_CACHED_LIFETIME);
        let margin = REFRESH_MARGIN.min(lifetime / 4);
        self.tokens.insert(
            scope_key.to_string(),
            CachedToken {
                token,
                usable_until: now + (lifetime - margin),
            },
        );
    }

    /// Forgets the token for `scope_key` (the registry refused it).
    pub fn remove(&mut self, scope_key: &str) {
        self.tokens.remove(scope_key);
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("scopes", &self.tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_living_u64_max_seconds_is_kept_a_day_not_a_clock_overflow() {
        let now = Instant::now();
        let mut cache = TokenCache::default();
        cache.insert("s", "t".into(), Duration::from_secs(u64::MAX), now);
        assert_eq!(cache.get("s", now).as_deref(), Some("t"));
        assert_eq!(cache.get("s", now + MAX_CACHED_LIFETIME), None);
    }

    #[test]
    fn tokens_expire_shortly_before_their_lifetime() {
        let now = Instant::now();
        let mut cache = TokenCache::default();
        cache.insert(
            "repository:a:pull",
            "t1".into(),
            Duration::from_secs(300),
            now,
        );
        assert_eq!(
            cache
                .get("repository:a:pull", now + Duration::from_secs(269))
                .as_deref(),
            Some("t1")
        );
        assert_eq!(
            cache.get("repository:a:pull", now + Duration::from_secs(270)),
            None
        );
        assert_eq!(cache.get("repository:b:pull", now), None);
        cache.insert("short", "t2".into(), Duration::from_secs(60), now);
        assert_eq!(
            cache.get("short", now + Duration::from_secs(44)).as_deref(),
            Some("t2")
        );
        assert_eq!(cache.get("short", now + Duration::from_secs(45)), None);
        cache.remove("repository:a:pull");
        assert_eq!(cache.get("repository:a:pull", now), None);
        assert!(!format!("{cache:?}").contains("t2"));
    }

    #[test]
    fn scope_keys_are_order_free() {
        let scopes = vec![
            "repository:b:pull".to_string(),
            "repository:a:pull".to_string(),
            "repository:b:pull".to_string(),
        ];
        assert_eq!(scope_key(&scopes), "repository:a:pull repository:b:pull");
    }

    #[test]
    fn credentials_are_redacted() {
        let credentials = Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert_eq!(credentials.basic(), "Basic YWxpY2U6czNjcmV0");
    }
}
