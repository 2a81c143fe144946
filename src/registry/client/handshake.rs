//! The auth handshake: which `Authorization` a request carries before
//! any challenge, how a 401 challenge is answered (Basic, or a Bearer
//! token from the realm, cached per scope in `auth.rs`), and the pull
//! credential handed to scanners. This is the only place that decides
//! where the configured credentials are sent: to the registry's own origin,
//! and to a token realm at the registry's origin or in `token_realms` (never
//! an `http` realm of an `https` registry). A challenge is taken only from an
//! answer of the registry's own origin, so a redirect elsewhere cannot
//! choose the realm.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::super::auth::{self, Credentials, Scheme};
use super::super::parse::{self, Challenge, TokenGrant};
use super::super::RegistryError;
use super::send::{check, Answer, Method};
use super::{lock, origin, Client, ScannerBasic};

impl Client {
    /// An `Authorization` header value with which a scanner can pull blobs
    /// of `repository`: a pull-scoped Bearer token from the realm; with a
    /// Basic-auth registry the scanners' own account (`scanner_username`),
    /// or the main credentials only with `share_password_with_scanners`;
    /// None for an anonymous registry. Learns the scheme with a ping when no
    /// challenge has been seen yet.
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
            Scheme::Basic if self.credentials.is_none() => Ok(None),
            Scheme::Basic => match &self.scanner_basic {
                ScannerBasic::Account(credentials) => Ok(Some(credentials.basic())),
                ScannerBasic::Shared => Ok(self.credentials.as_ref().map(Credentials::basic)),
                ScannerBasic::Nothing => Err(RegistryError::Unauthorized {
                    scope: Some(auth::pull_scope(repository)),
                    message: "the registry uses Basic auth and no credential is configured for \
                              scanners: set [registry] scanner_username and \
                              scanner_password_file (a read-only account), or \
                              share_password_with_scanners = true"
                        .into(),
                }),
            },
            Scheme::Bearer { realm, service } => {
                let scope = auth::pull_scope(repository);
                let token = self.token(&realm, service.as_deref(), &[scope])?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Sends a request, answering an auth challenge once, and maps a
    /// non-success status to a typed error. `scope` is what the request
    /// needs in token auth (the challenge's scope wins when it names one).
    pub(super) fn request(
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
        self.own_challenge(method, &answer, scope)?;
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
            self.realm_allowed(realm)?;
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
            self.own_challenge(method, &answer, scope)?;
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
    pub(super) fn preemptive_authorization(
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
    pub(super) fn token(
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
    pub(super) fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<TokenGrant, RegistryError> {
        let key = auth::scope_key(scopes);
        let mut url = self.realm_allowed(realm)?;
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

impl Client {
    /// Refuses a 401 that did not come from the registry's own origin (a
    /// redirect led elsewhere): its challenge is not answered, so no
    /// credential goes there and its realm is not adopted.
    fn own_challenge(
        &self,
        method: Method,
        answer: &Answer,
        scope: Option<&str>,
    ) -> Result<(), RegistryError> {
        if origin(&answer.answered_by) == origin(&self.base) {
            return Ok(());
        }
        log::warn!(
            "{} {} was redirected to {}, which asks for credentials; its challenge is not \
             answered (credentials go only to {})",
            method.name(),
            answer.url.path(),
            origin(&answer.answered_by),
            origin(&self.base)
        );
        Err(RegistryError::Unauthorized {
            scope: scope.map(String::from),
            message: format!(
                "redirected to {}, which asks for credentials; none are sent outside the \
                 registry's origin {}",
                origin(&answer.answered_by),
                origin(&self.base)
            ),
        })
    }

    /// The realm URL if the credentials may go there: http or https, not
    /// `http` for an `https` registry, and at the registry's own origin or
    /// covered by `[registry] token_realms`.
    fn realm_allowed(&self, realm: &str) -> Result<url::Url, RegistryError> {
        let url = url::Url::parse(realm).map_err(|error| {
            RegistryError::Malformed(format!("token realm {realm} is not a URL: {error}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::Malformed(format!(
                "token realm {realm} is not http or https"
            )));
        }
        let refused = |why: String| {
            log::warn!("token realm {} refused: {why}", origin(&url));
            Err(RegistryError::Unauthorized {
                scope: None,
                message: format!("token realm {} refused: {why}", origin(&url)),
            })
        };
        if self.base.scheme() == "https" && url.scheme() == "http" {
            return refused(format!(
                "plain http for the https registry {}; no credentials are sent over http",
                origin(&self.base)
            ));
        }
        let same_origin = origin(&url) == origin(&self.base);
        if same_origin || self.token_realms.iter().any(|allowed| allowed.allows(&url)) {
            return Ok(url);
        }
        refused(format!(
            "it is neither the registry's origin {} nor in [registry] token_realms",
            origin(&self.base)
        ))
    }
}
