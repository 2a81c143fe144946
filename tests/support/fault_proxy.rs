//! A fault-injecting reverse proxy of ours in front of a real registry.
//!
//! It forwards GET and HEAD, and DELETE of manifests (anonymous
//! registries), and, where a rule says so, answers instead with a fault: a 5xx, a stall, a truncated body, a
//! wrong `Docker-Content-Digest`, or one of the answers that look valid but
//! are not — an empty catalog page without `Link`, a tag list of
//! `{"tags": null}` or `{"tags": []}`. Rules see every request and its
//! number; [`FaultProxy::random`] faults a share of all requests with a
//! seeded generator, so a failing run can be replayed. Stops on Drop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};

use crate::http::{Reply, Request as SeenRequest};
use crate::scripted::ScriptedServer;

/// One way to answer wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status with a JSON error body.
    Status(u16),
    /// The registry's answer, after this long (a stall).
    Delay(Duration),
    /// The first half of the registry's body (a cut connection).
    Truncated,
    /// `{"repositories":[]}` with no `Link` (catalog pages only).
    EmptyCatalogPage,
    /// `{"name": ..., "tags": null}` (tag lists only).
    NullTags,
    /// `{"name": ..., "tags": []}` (tag lists only).
    EmptyTags,
    /// The registry's tag list cut to its first tag (tag lists only).
    PartialTags,
    /// The registry's answer with a `Docker-Content-Digest` of other bytes.
    WrongDigest,
}

impl Fault {
    /// Every fault shape, for random choices.
    pub const ALL: [Fault; 9] = [
        Fault::Status(500),
        Fault::Status(503),
        Fault::Delay(Duration::from_millis(300)),
        Fault::Truncated,
        Fault::EmptyCatalogPage,
        Fault::NullTags,
        Fault::EmptyTags,
        Fault::PartialTags,
        Fault::WrongDigest,
    ];
}

/// What a request is, for rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/v2/_catalog`, with the `last` parameter when it has one.
    Catalog { last: Option<String> },
    /// `/v2/NAME/tags/list`.
    Tags { repository: String },
    /// `/v2/NAME/manifests/REFERENCE`.
    Manifest {
        repository: String,
        reference: String,
    },
    /// `DELETE /v2/NAME/manifests/REFERENCE`.
    Delete {
        repository: String,
        reference: String,
    },
    /// Anything else.
    Other,
}

impl Target {
    /// Classifies a request path (with its query).
    pub fn of(request: &SeenRequest) -> Target {
        let path = request.path();
        if path == "/v2/_catalog" {
            let last = request
                .query()
                .into_iter()
                .find(|(key, _)| key == "last")
                .map(|(_, value)| value);
            return Target::Catalog { last };
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Target::Other;
        };
        if let Some(repository) = rest.strip_suffix("/tags/list") {
            return Target::Tags {
                repository: repository.to_string(),
            };
        }
        if let Some((repository, reference)) = rest.rsplit_once("/manifests/") {
            if request.method == "DELETE" {
                return Target::Delete {
                    repository: repository.to_string(),
                    reference: reference.to_string(),
                };
            }
            return Target::Manifest {
                repository: repository.to_string(),
                reference: reference.to_string(),
            };
        }
        Target::Other
    }
}

/// Decides per request (its number, what it is) whether to fault it.
type Rule = dyn Fn(usize, &Target) -> Option<Fault> + Send + Sync;

/// The proxy. Faults served so far are counted per shape.
pub struct FaultProxy {
    server: ScriptedServer,
    rule: Arc<Mutex<Arc<Rule>>>,
    faults: Arc<Mutex<Vec<(Fault, Target)>>>,
}

impl FaultProxy {
    /// A proxy for `upstream` (`http://127.0.0.1:PORT`) that forwards
    /// everything until [`FaultProxy::set_rule`] says otherwise.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let rule: Arc<Mutex<Arc<Rule>>> = Arc::new(Mutex::new(Arc::new(|_, _| None)));
        let faults: Arc<Mutex<Vec<(Fault, Target)>>> = Arc::default();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .build()
            .into();
        let server = {
            let rule = Arc::clone(&rule);
            let faults = Arc::clone(&faults);
            ScriptedServer::with_handler(move |index, request| {
                let target = Target::of(request);
                let forwarded = matches!(request.method.as_str(), "GET" | "HEAD")
                    || matches!(target, Target::Delete { .. });
                if !forwarded {
                    return Reply::json(405, r#"{"errors":[{"code":"UNSUPPORTED"}]}"#);
                }
                let current = Arc::clone(&rule.lock().expect("the rule lock"));
                let fault = current(index, &target).filter(|fault| applies(*fault, &target));
                if let Some(fault) = fault {
                    faults
                        .lock()
                        .expect("the faults lock")
                        .push((fault, target.clone()));
                }
                match (fault, &target) {
                    (Some(Fault::Status(status)), _) => {
                        return Reply::json(
                            status,
                            r#"{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}"#,
                        )
                    }
                    (Some(Fault::EmptyCatalogPage), _) => {
                        return Reply::json(200, r#"{"repositories":[]}"#)
                    }
                    (Some(Fault::NullTags), Target::Tags { repository }) => {
                        return Reply::json(
                            200,
                            &format!(r#"{{"name":"{repository}","tags":null}}"#),
                        )
                    }
                    (Some(Fault::EmptyTags), Target::Tags { repository }) => {
                        return Reply::json(200, &format!(r#"{{"name":"{repository}","tags":[]}}"#))
                    }
                    _ => {}
                }
                let mut reply = forward(&agent, &upstream, request);
                match fault {
                    Some(Fault::Delay(delay)) => reply = reply.delayed(delay),
                    Some(Fault::Truncated) => {
                        let half = reply.body.len() / 2;
                        reply.body.truncate(half);
                    }
                    Some(Fault::PartialTags) => reply.body = first_tag_only(&reply.body),
                    Some(Fault::WrongDigest) => {
                        reply.headers.retain(|(name, _)| {
                            !name.eq_ignore_ascii_case("docker-content-digest")
                        });
                        reply.headers.push((
                            "Docker-Content-Digest".into(),
                            crate::registry::sha256_digest(b"not this manifest"),
                        ));
                    }
                    _ => {}
                }
                reply
            })
        };
        FaultProxy {
            server,
            rule,
            faults,
        }
    }

    /// Replaces the rule; requests already being answered keep the old one.
    pub fn set_rule(&self, rule: impl Fn(usize, &Target) -> Option<Fault> + Send + Sync + 'static) {
        *self.rule.lock().expect("the rule lock") = Arc::new(rule);
    }

    /// Faults about `percent` of all requests with shapes from `shapes`,
    /// chosen by a generator seeded with `seed`.
    pub fn random(&self, seed: u64, percent: u32, shapes: &[Fault]) {
        let generator = Mutex::new(rand::rngs::StdRng::seed_from_u64(seed));
        let shapes = shapes.to_vec();
        self.set_rule(move |_, _| {
            let mut generator = generator.lock().expect("the generator lock");
            (generator.random_range(0..100) < percent)
                .then(|| shapes[generator.random_range(0..shapes.len())])
        });
    }

    /// Forwards everything again.
    pub fn clear(&self) {
        self.set_rule(|_, _| None);
    }

    /// Every fault served so far, with what it hit.
    pub fn faults(&self) -> Vec<(Fault, Target)> {
        self.faults.lock().expect("the faults lock").clone()
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// A `[registry]` configuration pointing at the proxy.
    pub fn client_config(&self) -> regkeeper::config::RegistryConfig {
        self.server.client_config()
    }
}

/// Whether `fault` fits the request: the shapes of a catalog page or a tag
/// list only fault those, a wrong digest only manifests.
fn applies(fault: Fault, target: &Target) -> bool {
    match fault {
        Fault::EmptyCatalogPage => matches!(target, Target::Catalog { .. }),
        Fault::NullTags | Fault::EmptyTags | Fault::PartialTags => {
            matches!(target, Target::Tags { .. })
        }
        Fault::WrongDigest => matches!(target, Target::Manifest { .. }),
        Fault::Status(_) | Fault::Delay(_) | Fault::Truncated => true,
    }
}

/// A tag list body with its first tag only.
fn first_tag_only(body: &[u8]) -> Vec<u8> {
    let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    if let Some(tags) = list["tags"].as_array_mut() {
        tags.truncate(1);
    }
    serde_json::to_vec(&list).unwrap_or_else(|_| body.to_vec())
}

/// The registry's answer to `request`, read with GET (a HEAD is answered
/// from it, so that `Content-Length` stays the manifest's); a DELETE is
/// forwarded as one.
fn forward(agent: &ureq::Agent, upstream: &str, request: &SeenRequest) -> Reply {
    let url = format!("{upstream}{}", request.target);
    let headers = ["accept", "authorization"]
        .into_iter()
        .filter_map(|name| request.header(name).map(|value| (name, value)));
    let answer = if request.method == "DELETE" {
        let mut upstream_request = agent.delete(&url);
        for (name, value) in headers {
            upstream_request = upstream_request.header(name, value);
        }
        upstream_request.call()
    } else {
        let mut upstream_request = agent.get(&url);
        for (name, value) in headers {
            upstream_request = upstream_request.header(name, value);
        }
        upstream_request.call()
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(error) => return Reply::json(502, &format!(r#"{{"message":"{error}"}}"#)),
    };
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap_or_default();
    let mut reply = Reply {
        status: response.status().as_u16(),
        headers: Vec::new(),
        body,
        delay: Duration::ZERO,
    };
    for (name, value) in response.headers() {
        let hop_by_hop = matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        );
        if let (false, Ok(value)) = (hop_by_hop, value.to_str()) {
            reply.headers.push((name.to_string(), value.to_string()));
        }
    }
    reply
}
