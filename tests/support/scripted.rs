//! Stand-in registries of ours for what a real docker-registry cannot be
//! made to show on demand: [`ScriptedServer`] answers from a script or a
//! handler (stalls, 5xx, bad bodies) and records every request;
//! [`DigestStrippingProxy`] sits in front of a real registry and drops
//! `Docker-Content-Digest`, as some caching proxies do. Both run on the one
//! stand-in server ([`crate::http`]) and stop on Drop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::{HttpServer, Reply, Request};

/// A stand-in registry that answers from a script: each request gets the
/// next [`Reply`] (the last one repeats), or what a handler says. It
/// records requests and counts connections.
pub struct ScriptedServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    server: HttpServer,
}

impl ScriptedServer {
    /// Starts answering with `replies` in order; the last one repeats.
    pub fn start(replies: Vec<Reply>) -> ScriptedServer {
        ScriptedServer::with_handler(move |index, _request| {
            replies
                .get(index)
                .or(replies.last())
                .cloned()
                .unwrap_or_else(|| Reply::json(500, "{}"))
        })
    }

    /// Starts answering with `handler(request_index, request)`.
    pub fn with_handler(
        handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> ScriptedServer {
        let server = HttpServer::start(handler);
        ScriptedServer {
            url: server.url(),
            server,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// A `[registry]` configuration pointing here (anonymous, 10 s timeout).
    pub fn client_config(&self) -> regkeeper::config::RegistryConfig {
        regkeeper::config::RegistryConfig {
            url: url::Url::parse(&self.url).expect("the scripted server url parses"),
            username: None,
            password: None,
            ca_file: None,
            insecure_skip_tls_verify: false,
            timeout: Duration::from_secs(10),
            concurrency: 4,
            catalog_page_size: 100,
            token_realms: Vec::new(),
            scanner_username: None,
            scanner_password: None,
            share_password_with_scanners: false,
        }
    }
}

/// A reverse proxy of ours in front of a real registry that drops
/// `Docker-Content-Digest` from every answer, as some caching proxies do.
/// GET and HEAD only (anonymous registries); a HEAD is answered from an
/// upstream GET so that `Content-Length` stays the manifest's. The body of
/// one path can be replaced ([`DigestStrippingProxy::substitute`]) to play a
/// proxy serving the wrong content. Stops on Drop.
pub struct DigestStrippingProxy {
    server: ScriptedServer,
    substitutes: Substitutes,
}

/// Bodies served instead of the registry's: path -> body.
type Substitutes = Arc<Mutex<std::collections::BTreeMap<String, Vec<u8>>>>;

impl DigestStrippingProxy {
    /// Starts a proxy for `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> DigestStrippingProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let substitutes: Substitutes = Arc::default();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .build()
            .into();
        let replacements = Arc::clone(&substitutes);
        let server = ScriptedServer::with_handler(move |_, request| {
            if request.method != "GET" && request.method != "HEAD" {
                return Reply::json(405, r#"{"errors":[{"code":"UNSUPPORTED"}]}"#);
            }
            let mut upstream_request = agent.get(&format!("{upstream}{}", request.target));
            for name in ["accept", "authorization"] {
                if let Some(value) = request.header(name) {
                    upstream_request = upstream_request.header(name, value);
                }
            }
            let mut response = match upstream_request.call() {
                Ok(response) => response,
                Err(error) => return Reply::json(502, &format!(r#"{{"message":"{error}"}}"#)),
            };
            let mut reply = Reply::new(
                response.status().as_u16(),
                response
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .unwrap_or_default(),
            );
            for (name, value) in response.headers() {
                let dropped = matches!(
                    name.as_str(),
                    "docker-content-digest"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "keep-alive"
                );
                if let (false, Ok(value)) = (dropped, value.to_str()) {
                    reply.headers.push((name.to_string(), value.to_string()));
                }
            }
            if let Ok(list) = replacements.lock() {
                if let Some(body) = list.get(request.path()) {
                    reply.body = body.clone();
                }
            }
            reply
        });
        DigestStrippingProxy {
            server,
            substitutes,
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Serves `body` for `path` (e.g. `/v2/ns/app/manifests/sha256:...`)
    /// instead of what the registry answers.
    pub fn substitute(&self, path: &str, body: &[u8]) {
        self.substitutes
            .lock()
            .expect("the substitutes lock")
            .insert(path.to_string(), body.to_vec());
    }

    /// `(method, path)` of every request the proxy received, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.server
            .requests()
            .into_iter()
            .map(|request| (request.method.clone(), request.path().to_string()))
            .collect()
    }

    /// A `[registry]` configuration pointing at the proxy (anonymous, 10 s
    /// timeout, concurrency 4).
    pub fn client_config(&self) -> regkeeper::config::RegistryConfig {
        self.server.client_config()
    }
}
