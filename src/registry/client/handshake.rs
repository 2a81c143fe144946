//! The auth handshake: which `Authorization` a request carries before
//! any challenge, how a 401 challenge is answered (Basic, or a Bearer
//! token from the realm, cached per scope in `auth.rs`), and the pull
//! credential handed to scanners. This is the only place that decides
//! where the configured credentials are sent.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::super::auth::{self, Credentials, Scheme};
use super::super::parse::{self, Challenge, TokenGrant};
use super::super::RegistryError;
use super::send::{check, Answer, Method};
use super::{lock, Client};

impl Client {
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
