//! The registry client: one shared ureq agent (timeouts, TLS), the
//! [`Client`] type with its accessors, URL building and the bounded worker
//! pool handlers use for fan-out. The rest is split by concern:
//! `send.rs` one request with retries and the breaker, `handshake.rs` the
//! auth handshake (driving `auth.rs`), `catalog.rs` the catalog and tag
//! lists, `manifests.rs` manifests and blob URLs, `tls.rs` the TLS set-up.
//! Parsing is left to the pure `parse.rs` and `manifest.rs`. Nothing here
//! logs a credential or a token.

mod catalog;
mod handshake;
mod manifests;
mod send;
mod tls;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::auth::{Credentials, Scheme, TokenCache};
use super::breaker::Breaker;

pub use send::RetryPolicy;

/// A registry client, `Send + Sync`, shared by every handler: one ureq agent
/// (connection reuse, timeouts, TLS), transparent auth (anonymous, Basic,
/// Bearer tokens cached per scope), retries, and a bounded worker pool.
pub struct Client {
    agent: ureq::Agent,
    base: url::Url,
    credentials: Option<Credentials>,
    /// Token realms besides the registry's origin that may get `credentials`.
    token_realms: Vec<crate::config::TokenRealm>,
    /// What scanners get from a Basic-auth registry (see `handshake.rs`).
    scanner_basic: ScannerBasic,
    concurrency: usize,
    catalog_page_size: u32,
    retry: RetryPolicy,
    scheme: Mutex<Scheme>,
    tokens: Mutex<TokenCache>,
    requests: AtomicU64,
    /// Requests not sent because the breaker was open.
    refused: AtomicU64,
    breaker: Breaker,
    open: AtomicBool,
    /// The registry answered a manifest HEAD of a tag without
    /// `Docker-Content-Digest`: tags are read with GET from then on.
    omits_digest_header: AtomicBool,
}

/// The Basic credential handed to scanners when the registry asks for
/// Basic auth: never the main one unless the operator opted in.
#[derive(Debug)]
enum ScannerBasic {
    /// `[registry] scanner_username` (a read-only account).
    Account(Credentials),
    /// `share_password_with_scanners = true`: the main credentials.
    Shared,
    /// Neither: scanners get no credential, and the scan says why.
    Nothing,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Builds the client from the `[registry]` configuration: one agent with
    /// connect and read timeouts of `timeout`, `User-Agent: regkeeper/VERSION`,
    /// TLS through rustls with the system roots plus `ca_file`, or no
    /// verification at all when `insecure_skip_tls_verify` is set.
    pub fn new(config: &crate::config::RegistryConfig) -> anyhow::Result<Client> {
        let mut base = config.url.clone();
        if !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("registry url {} is not http or https", base);
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        let tls = tls::tls_config(config)?;
        let concurrency = config.concurrency.max(1);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(format!("regkeeper/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(config.timeout))
            .timeout_send_request(Some(config.timeout))
            .timeout_recv_response(Some(config.timeout))
            .timeout_recv_body(Some(config.timeout))
            .max_idle_connections(concurrency * 2)
            .max_idle_connections_per_host(concurrency)
            .tls_config(tls)
            .build()
            .into();
        let credentials = config.username.as_ref().map(|username| Credentials {
            username: username.clone(),
            password: config.password.clone().unwrap_or_default(),
        });
        let scanner_basic = match (
            &config.scanner_username,
            config.share_password_with_scanners,
        ) {
            (Some(username), _) => ScannerBasic::Account(Credentials {
                username: username.clone(),
                password: config.scanner_password.clone().unwrap_or_default(),
            }),
            (None, true) => ScannerBasic::Shared,
            (None, false) => ScannerBasic::Nothing,
        };
        Ok(Client {
            agent,
            base,
            credentials,
            token_realms: config.token_realms.clone(),
            scanner_basic,
            concurrency,
            catalog_page_size: config.catalog_page_size.clamp(1, 1000),
            retry: RetryPolicy::default(),
            scheme: Mutex::new(Scheme::Unknown),
            tokens: Mutex::new(TokenCache::default()),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            breaker: Breaker::default(),
            open: AtomicBool::new(false),
            omits_digest_header: AtomicBool::new(false),
        })
    }

    /// The registry's base URL (ends with `/`).
    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// HTTP requests sent so far (registry and token realm, retries included).
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests not sent so far because the registry was unreachable (the
    /// client's circuit breaker, see `breaker.rs`, was open).
    pub fn requests_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether the registry stopped answering as far as this client knows:
    /// requests failed in a row until the breaker opened, and no answer
    /// has come since.
    pub fn is_unreachable(&self) -> bool {
        self.breaker.tripped()
    }

    /// Applies `f` to every item on at most `concurrency` threads and returns
    /// the results in input order. A panic in `f` propagates to the caller
    /// once the other workers have stopped.
    pub fn map_concurrent<T: Send, R: Send>(
        &self,
        items: Vec<T>,
        f: impl Fn(T) -> R + Sync,
    ) -> Vec<R> {
        let count = items.len();
        let workers = self.concurrency.min(count);
        if workers <= 1 {
            return items.into_iter().map(f).collect();
        }
        let queue = Mutex::new(items.into_iter().enumerate());
        let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let next = lock(&queue).next();
                    let Some((index, item)) = next else { break };
                    let result = f(item);
                    lock(&results)[index] = Some(result);
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .flatten()
            .collect()
    }

    fn endpoint(&self, path: &str) -> url::Url {
        // `path` holds only percent-encoded segments, so joining cannot fail;
        // fall back to the base rather than panic.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }
}

/// The scheme, host and port of `url`, without user info or query.
fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// Percent-encodes everything but unreserved characters, `/` and `:`, so a
/// repository name or reference cannot change the shape of the URL.
fn encode_path(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode_path("a/b/c"), "a/b/c");
        assert_eq!(encode_path("sha256:abc"), "sha256:abc");
        assert_eq!(encode_path("a b?c#d"), "a%20b%3Fc%23d");
    }

    #[test]
    fn client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
    }
}
