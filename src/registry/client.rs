//! HTTP to the registry through one shared ureq agent: timeouts, TLS,
//! retries of idempotent requests, the auth handshake (driving `auth.rs`),
//! the endpoints, and the bounded worker pool handlers use for fan-out.
//! Parsing is left to the pure `parse.rs` and `manifest.rs`. Nothing here
//! logs a credential or a token.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use rand::Rng as _;

use super::auth::{self, Credentials, Scheme, TokenCache};
use super::breaker::Breaker;
use super::manifest::{self, Manifest, ManifestHead};
use super::parse::{self, Challenge, TokenGrant};
use super::{RegistryError, MANIFEST_MEDIA_TYPES};

/// The largest body read from the registry (manifests, catalog pages, tag lists).
const BODY_LIMIT: u64 = 64 << 20;

/// How GET/HEAD requests are retried on transport errors, 5xx and 429.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles per retry, with jitter.
    pub base_delay: Duration,
    /// Cap of one delay.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 250 ms then 500 ms (each jittered down to half), at most 2 s
    /// a delay, `Retry-After` honoured up to 10 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential, capped,
    /// with jitter between half and all of it.
    fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exponential.min(self.max_delay);
        let jitter = rand::rng().random_range(0.5..=1.0);
        capped.mul_f64(jitter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
        }
    }
}

/// A request that got no HTTP answer, and whether trying again may help.
struct SendFailure {
    error: RegistryError,
    retryable: bool,
}

/// One HTTP answer, body read.
struct Answer {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
    url: url::Url,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse::parse_www_authenticate)
            .collect()
    }

    fn message(&self) -> String {
        parse::parse_error_body(&self.body)
            .map(|body| body.message)
            .filter(|message| !message.is_empty())
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    fn code(&self) -> Option<String> {
        parse::parse_error_body(&self.body).and_then(|body| body.code)
    }
}

/// A registry client, `Send + Sync`, shared by every handler: one ureq agent
/// (connection reuse, timeouts, TLS), transparent auth (anonymous, Basic,
/// Bearer tokens cached per scope), retries, and a bounded worker pool.
pub struct Client {
    agent: ureq::Agent,
    base: url::Url,
    credentials: Option<Credentials>,
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
        let tls = tls_config(config)?;
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
        Ok(Client {
            agent,
            base,
            credentials,
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

    /// Replaces the retry policy (the default is [`RetryPolicy::default`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The registry's base URL (ends with `/`).
    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// Size of the worker pool of [`Client::map_concurrent`].
    pub fn concurrency(&self) -> usize {
        self.concurrency
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

    /// The URL of a blob: `BASE/v2/REPOSITORY/blobs/DIGEST`.
    pub fn blob_url(&self, repository: &str, digest: &str) -> String {
        self.endpoint(&format!(
            "v2/{}/blobs/{}",
            encode_path(repository),
            encode_path(digest)
        ))
        .to_string()
    }

    /// An `Authorization` header value with which a scanner can pull blobs
    /// of `repository`: a pull-scoped Bearer token from the realm, or Basic
    /// credentials, or None for an anonymous registry. Learns the scheme with
    /// a ping when no challenge has been seen yet.
    pub fn pull_authorization(&self, repository: &str) -> Result<Option<String>, RegistryError> {
        if *lock(&self.scheme) == Scheme::Unknown && !self.open.load(Ordering::Relaxed) {
            self.ping()?;
            // `/v2/` answered without asking for credentials: an open registry.
            if *lock(&self.scheme) == Scheme::Unknown {
                self.open.store(true, Ordering::Relaxed);
            }
        }
        let scheme = lock(&self.scheme).clone();
        match scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.credentials.as_ref().map(Credentials::basic)),
            Scheme::Bearer { realm, service } => {
                let scope = auth::pull_scope(repository);
                let token = self.token(&realm, service.as_deref(), &[scope])?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// `GET /v2/`: checks the registry answers as a v2 registry
    /// (`Docker-Distribution-Api-Version: registry/2.0`).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let answer = self.request(Method::Get, self.endpoint("v2/"), None, None)?;
        match answer.header("docker-distribution-api-version") {
            Some(version) if version.to_ascii_lowercase().contains("registry/2.") => Ok(()),
            _ => Err(RegistryError::Malformed(format!(
                "{} answered /v2/ without Docker-Distribution-Api-Version: registry/2.0; is it a registry?",
                self.base
            ))),
        }
    }

    /// Every repository of the catalog, following `Link` pages of
    /// `catalog_page_size` entries.
    pub fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        self.catalog_after(None)
    }

    /// The catalog from the first repository sorting after `last` on
    /// (`?last=`, as a `Link` page continues it), or from the start.
    pub fn catalog_after(&self, last: Option<&str>) -> Result<Vec<String>, RegistryError> {
        let mut url = self.endpoint("v2/_catalog");
        url.query_pairs_mut()
            .append_pair("n", &self.catalog_page_size.to_string());
        if let Some(last) = last {
            url.query_pairs_mut().append_pair("last", last);
        }
        let mut repositories = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let answer = self.request(Method::Get, url.clone(), None, Some(auth::CATALOG_SCOPE))?;
            let page = parse::parse_catalog_page(&answer.body)
                .map_err(|error| RegistryError::Malformed(format!("{url}: {error}")))?;
            repositories.extend(page);
            match self.next_page(&answer, &mut seen)? {
                Some(next) => url = next,
                None => return Ok(repositories),
            }
        }
    }

    /// The tags of a repository (order as the registry gives it, which is
    /// none); `None` when the registry says `tags: null` (every manifest was
    /// deleted). Follows `Link` pages when the registry sends them.
    pub fn tags(&self, repository: &str) -> Result<Option<Vec<String>>, RegistryError> {
        let mut url = self.endpoint(&format!("v2/{}/tags/list", encode_path(repository)));
        let scope = auth::pull_scope(repository);
        let mut tags: Option<Vec<String>> = None;
        let mut seen = HashSet::new();
        loop {
            let answer = self.request(Method::Get, url.clone(), None, Some(&scope))?;
            let page = parse::parse_tags_page(&answer.body).map_err(|error| {
                RegistryError::Malformed(format!("tags of {repository}: {error}"))
            })?;
            if let Some(page_tags) = page {
                tags.get_or_insert_with(Vec::new).extend(page_tags);
            }
            match self.next_page(&answer, &mut seen)? {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    /// `HEAD` of a manifest by tag or digest, with every manifest type in
    /// `Accept`: one request when the registry sends `Docker-Content-Digest`.
    ///
    /// Some registries and caching proxies drop that header. A tag is then
    /// read with GET and its digest computed from the body (sha256 of the
    /// exact bytes, checked as [`Client::manifest`] checks it), returned in
    /// [`ManifestHead::manifest`] so that the caller need not fetch it again.
    /// The first such answer is logged once; from then on this client reads
    /// tags of this registry with GET alone, one request each. A HEAD by
    /// digest needs no header: the success answer vouches for the digest.
    pub fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ManifestHead, RegistryError> {
        let by_digest = manifest::is_digest(reference);
        if by_digest || !self.omits_digest_header.load(Ordering::Relaxed) {
            let url = self.manifest_url(repository, reference);
            let scope = auth::pull_scope(repository);
            let answer = self.request(Method::Head, url, Some(&accept_header()), Some(&scope))?;
            let header_digest = answer.header("docker-content-digest");
            if manifest::head_tells_digest(reference, header_digest) {
                return manifest::parse_manifest_head(
                    repository,
                    reference,
                    header_digest,
                    answer.header("content-type"),
                    answer.header("content-length"),
                );
            }
            if !self.omits_digest_header.swap(true, Ordering::Relaxed) {
                log::info!(
                    "the registry at {} answers manifest HEAD requests without \
                     Docker-Content-Digest; reading manifests with GET to learn their digests",
                    origin(&self.base)
                );
            }
        }
        let (manifest, size) = self.fetch_manifest(repository, reference)?;
        Ok(ManifestHead {
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            size,
            manifest: Some(manifest),
        })
    }

    /// `GET` of a manifest by tag or digest, with every manifest type in
    /// `Accept`, parsed and its digest verified.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, RegistryError> {
        self.fetch_manifest(repository, reference)
            .map(|(manifest, _)| manifest)
    }

    /// [`Client::manifest`] and the size of the body in bytes.
    fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Manifest, i64), RegistryError> {
        let url = self.manifest_url(repository, reference);
        let scope = auth::pull_scope(repository);
        let answer = self.request(Method::Get, url, Some(&accept_header()), Some(&scope))?;
        let manifest = manifest::parse_manifest(
            repository,
            reference,
            answer.header("docker-content-digest"),
            answer.header("content-type"),
            &answer.body,
        )?;
        Ok((
            manifest,
            i64::try_from(answer.body.len()).unwrap_or(i64::MAX),
        ))
    }

    /// `DELETE` of a manifest by digest (202). Never retried blindly: a
    /// transport error or a 5xx is returned as is. 404 (already gone) and
    /// 405 (deletion disabled) are [`RegistryError::NotFound`] with the
    /// registry's code.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> Result<(), RegistryError> {
        let url = self.manifest_url(repository, digest);
        let scope = auth::delete_scope(repository);
        self.request(Method::Delete, url, None, Some(&scope))
            .map(|_| ())
    }

    fn endpoint(&self, path: &str) -> url::Url {
        // `path` holds only percent-encoded segments, so joining cannot fail;
        // fall back to the base rather than panic.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn manifest_url(&self, repository: &str, reference: &str) -> url::Url {
        self.endpoint(&format!(
            "v2/{}/manifests/{}",
            encode_path(repository),
            encode_path(reference)
        ))
    }

    fn next_page(
        &self,
        answer: &Answer,
        seen: &mut HashSet<String>,
    ) -> Result<Option<url::Url>, RegistryError> {
        let Some(target) = answer.header("link").and_then(parse::next_link) else {
            return Ok(None);
        };
        let next = parse::resolve_link(&answer.url, &target).ok_or_else(|| {
            RegistryError::Malformed(format!("unusable Link target {target} on {}", answer.url))
        })?;
        if !seen.insert(next.to_string()) || next == answer.url {
            return Err(RegistryError::Malformed(format!(
                "Link pages loop at {next}"
            )));
        }
        Ok(Some(next))
    }

    /// Sends a request, answering an auth challenge once, and maps a
    /// non-success status to a typed error. `scope` is what the request
    /// needs in token auth (the challenge's scope wins when it names one).
    fn request(
        &self,
        method: Method,
        url: url::Url,
        accept: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Answer, RegistryError> {
        let requested_scopes: Vec<String> = scope.map(String::from).into_iter().collect();
        let (sent, fresh) = self.preemptive_authorization(&requested_scopes)?;
        let answer = self.send(method, &url, accept, sent.as_deref())?;
        if answer.status != 401 {
            return check(answer, scope);
        }
        let challenges = answer.challenges();
        let retry_authorization = if let Some(challenge) = challenges
            .iter()
            .find(|challenge| challenge.scheme == "bearer")
        {
            let realm = challenge.realm().ok_or_else(|| {
                RegistryError::Malformed(format!(
                    "{} {}: Bearer challenge without realm",
                    method.name(),
                    url.path()
                ))
            })?;
            let service = challenge.service().map(String::from);
            *lock(&self.scheme) = Scheme::Bearer {
                realm: realm.to_string(),
                service: service.clone(),
            };
            let mut scopes = challenge.scopes();
            if scopes.is_empty() {
                scopes = requested_scopes.clone();
            }
            let key = auth::scope_key(&scopes);
            let sent_bearer = sent
                .as_deref()
                .is_some_and(|value| value.starts_with("Bearer "));
            if sent_bearer && fresh && key == auth::scope_key(&requested_scopes) {
                // A token fetched just now for exactly this scope was refused:
                // another one would be refused too.
                return Err(unauthorized(&key, challenge, &answer));
            }
            lock(&self.tokens).remove(&key);
            let token = self.token(realm, service.as_deref(), &scopes)?;
            format!("Bearer {token}")
        } else if challenges
            .iter()
            .any(|challenge| challenge.scheme == "basic")
        {
            *lock(&self.scheme) = Scheme::Basic;
            let Some(credentials) = &self.credentials else {
                return Err(RegistryError::Unauthorized {
                    scope: scope.map(String::from),
                    message: "the registry asks for Basic credentials and none are configured"
                        .into(),
                });
            };
            if sent.is_some() {
                return Err(RegistryError::Unauthorized {
                    scope: scope.map(String::from),
                    message: format!(
                        "the registry refused the configured credentials: {}",
                        answer.message()
                    ),
                });
            }
            credentials.basic()
        } else {
            return Err(RegistryError::Unauthorized {
                scope: scope.map(String::from),
                message: answer.message(),
            });
        };
        let answer = self.send(method, &url, accept, Some(&retry_authorization))?;
        if answer.status == 401 {
            let challenges = answer.challenges();
            let key = challenges
                .iter()
                .find(|challenge| challenge.scheme == "bearer")
                .map(|challenge| challenge.scopes())
                .filter(|scopes| !scopes.is_empty())
                .map(|scopes| auth::scope_key(&scopes))
                .unwrap_or_else(|| auth::scope_key(&requested_scopes));
            lock(&self.tokens).remove(&key);
            return match challenges
                .iter()
                .find(|challenge| challenge.scheme == "bearer")
            {
                Some(challenge) => Err(unauthorized(&key, challenge, &answer)),
                None => Err(RegistryError::Unauthorized {
                    scope: scope.map(String::from),
                    message: format!(
                        "the registry refused the configured credentials: {}",
                        answer.message()
                    ),
                }),
            };
        }
        check(answer, scope)
    }

    /// The `Authorization` to send before any challenge of this request:
    /// Basic once the registry asked for it, a cached (or freshly fetched)
    /// token once it asked for tokens. The flag says whether the token was
    /// fetched just now.
    fn preemptive_authorization(
        &self,
        scopes: &[String],
    ) -> Result<(Option<String>, bool), RegistryError> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            Scheme::Unknown => Ok((None, false)),
            Scheme::Basic => Ok((self.credentials.as_ref().map(Credentials::basic), false)),
            Scheme::Bearer { realm, service } => {
                let key = auth::scope_key(scopes);
                if let Some(token) = lock(&self.tokens).get(&key, Instant::now()) {
                    return Ok((Some(format!("Bearer {token}")), false));
                }
                let token = self.token(&realm, service.as_deref(), scopes)?;
                Ok((Some(format!("Bearer {token}")), true))
            }
        }
    }

    /// A token for `scopes`: from the cache, or from the realm (then cached).
    fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let key = auth::scope_key(scopes);
        if let Some(token) = lock(&self.tokens).get(&key, Instant::now()) {
            return Ok(token);
        }
        let grant = self.fetch_token(realm, service, scopes)?;
        let lifetime = grant.lifetime(SystemTime::now());
        lock(&self.tokens).insert(&key, grant.token.clone(), lifetime, Instant::now());
        Ok(grant.token)
    }

    /// `GET REALM?service=&scope=...&account=` with the configured
    /// credentials as Basic, or anonymously without them.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<TokenGrant, RegistryError> {
        let key = auth::scope_key(scopes);
        let mut url = url::Url::parse(realm).map_err(|error| {
            RegistryError::Malformed(format!("token realm {realm} is not a URL: {error}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::Malformed(format!(
                "token realm {realm} is not http or https"
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
            if let Some(credentials) = &self.credentials {
                query.append_pair("account", &credentials.username);
            }
        }
        log::debug!("fetching a registry token for scope {key:?} from {realm}");
        let authorization = self.credentials.as_ref().map(Credentials::basic);
        let answer = self.send(Method::Get, &url, None, authorization.as_deref())?;
        match answer.status {
            200..=299 => parse::parse_token_response(&answer.body)
                .map_err(|error| RegistryError::Malformed(format!("token realm {realm}: {error}"))),
            401 | 403 => Err(RegistryError::Unauthorized {
                scope: Some(key),
                message: format!(
                    "the token realm refused {}: {}",
                    if self.credentials.is_some() {
                        "the configured credentials"
                    } else {
                        "an anonymous request"
                    },
                    answer.message()
                ),
            }),
            _ => check(answer, Some(&key)).and_then(|_| {
                Err(RegistryError::Malformed(format!(
                    "token realm {realm} answered without a token"
                )))
            }),
        }
    }

    /// Sends one request; GET and HEAD are retried on transport errors, 5xx
    /// and 429 per the retry policy, DELETE never.
    fn send(
        &self,
        method: Method,
        url: &url::Url,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Answer, RegistryError> {
        if let Err(refusal) = self.breaker.admit(Instant::now()) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            crate::metrics::registry_request_refused();
            return Err(RegistryError::Transport(refusal));
        }
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.send_once(method, url, accept, authorization);
            crate::metrics::registry_request(
                method.name(),
                result.as_ref().ok().map(|answer| answer.status),
                started.elapsed(),
            );
            let retry_after = match &result {
                Ok(answer) if answer.status == 429 || answer.status >= 500 => answer
                    .header("retry-after")
                    .and_then(|value| parse::parse_retry_after(value, SystemTime::now())),
                Err(failure) if failure.retryable => None,
                _ => return self.settle(result),
            };
            // Another request found the registry gone meanwhile: do not
            // keep retrying this one.
            if method == Method::Delete
                || attempt >= self.retry.attempts
                || self.breaker.is_open(Instant::now())
            {
                return self.settle(result);
            }
            let delay = match retry_after {
                Some(after) if after > self.retry.max_retry_after => return self.settle(result),
                Some(after) => after,
                None => self.retry.backoff(attempt),
            };
            let what = match &result {
                Ok(answer) => format!("HTTP {}", answer.status),
                Err(failure) => failure.error.to_string(),
            };
            log::debug!(
                "retrying {} {} in {delay:?} after {what}",
                method.name(),
                url.path()
            );
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// The last attempt's result, told to the breaker: an answer below 500
    /// proves the registry alive, a 5xx or a retryable transport failure
    /// counts against it.
    fn settle(&self, result: Result<Answer, SendFailure>) -> Result<Answer, RegistryError> {
        match &result {
            Ok(answer) if answer.status < 500 => self.breaker.succeeded(),
            Ok(answer) => self.breaker.failed(
                Instant::now(),
                &format!("HTTP {} from {}", answer.status, answer.url.path()),
            ),
            Err(failure) if failure.retryable => self
                .breaker
                .failed(Instant::now(), &failure.error.to_string()),
            Err(_) => {}
        }
        result.map_err(|failure| failure.error)
    }

    fn send_once(
        &self,
        method: Method,
        url: &url::Url,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Answer, SendFailure> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = match method {
            Method::Get => self.agent.get(url.as_str()),
            Method::Head => self.agent.head(url.as_str()),
            Method::Delete => self.agent.delete(url.as_str()),
        };
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let transport = |error: ureq::Error| SendFailure {
            // Certificate and protocol-level refusals do not heal by retrying
            // (rustls reports a refused certificate as InvalidData I/O).
            retryable: !matches!(
                &error,
                ureq::Error::Tls(_)
                    | ureq::Error::Rustls(_)
                    | ureq::Error::BadUri(_)
                    | ureq::Error::BodyExceedsLimit(_)
                    | ureq::Error::TlsRequired
            ) && !matches!(&error, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData),
            error: RegistryError::Transport(format!(
                "{} {}{}: {error}",
                method.name(),
                origin(url),
                url.path()
            )),
        };
        let mut response = request.call().map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if method == Method::Head {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_vec()
                .map_err(transport)?
        };
        log::trace!("{} {} -> {status}", method.name(), url.path());
        Ok(Answer {
            status,
            headers,
            body,
            url: url.clone(),
        })
    }
}

/// The scheme, host and port of `url`, without user info or query.
fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

fn accept_header() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
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

fn unauthorized(scope_key: &str, challenge: &Challenge, answer: &Answer) -> RegistryError {
    let hint = match challenge.error() {
        Some(error) => format!("{error}: "),
        None => String::new(),
    };
    RegistryError::Unauthorized {
        scope: Some(scope_key.to_string()).filter(|key| !key.is_empty()),
        message: format!("{hint}{}", answer.message()),
    }
}

/// Maps a final answer to a typed error unless it is a success.
fn check(answer: Answer, scope: Option<&str>) -> Result<Answer, RegistryError> {
    match answer.status {
        200..=299 => Ok(answer),
        401 | 403 => Err(RegistryError::Unauthorized {
            scope: scope.map(String::from),
            message: answer.message(),
        }),
        404 | 405 => Err(RegistryError::NotFound {
            code: answer.code(),
            message: answer.message(),
        }),
        429 => Err(RegistryError::RateLimited {
            retry_after: answer
                .header("retry-after")
                .and_then(|value| parse::parse_retry_after(value, SystemTime::now())),
        }),
        status => Err(RegistryError::Server {
            status,
            message: answer.message(),
        }),
    }
}

fn tls_config(config: &crate::config::RegistryConfig) -> anyhow::Result<ureq::tls::TlsConfig> {
    if config.insecure_skip_tls_verify {
        log::warn!("registry TLS certificates are not verified (insecure_skip_tls_verify = true)");
        return Ok(ureq::tls::TlsConfig::builder()
            .disable_verification(true)
            .build());
    }
    let mut certificates: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        log::debug!("reading a system root certificate: {error}");
    }
    for certificate in native.certs {
        certificates.push(ureq::tls::Certificate::from_der(certificate.as_ref()).to_owned());
    }
    if let Some(ca_file) = &config.ca_file {
        let pem = std::fs::read(ca_file)
            .with_context(|| format!("reading registry ca_file {}", ca_file.display()))?;
        let mut found = 0;
        for item in ureq::tls::parse_pem(&pem) {
            let item =
                item.with_context(|| format!("parsing registry ca_file {}", ca_file.display()))?;
            if let ureq::tls::PemItem::Certificate(certificate) = item {
                certificates.push(certificate);
                found += 1;
            }
        }
        if found == 0 {
            anyhow::bail!(
                "registry ca_file {} holds no PEM certificate",
                ca_file.display()
            );
        }
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certificates))
        .build())
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
    fn backoff_is_bounded_and_grows() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(
                first >= Duration::from_millis(125) && first <= Duration::from_millis(250),
                "{first:?}"
            );
            assert!(policy.backoff(10) <= policy.max_delay);
        }
    }

    #[test]
    fn client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
    }
}
