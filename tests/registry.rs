//! The registry client against a real docker-registry in anonymous, htpasswd
//! and token mode, plus tiny local servers of ours for failures a real
//! registry cannot show on demand (stalls, 5xx, 429, malformed bodies), and
//! a proxy of ours that drops `Docker-Content-Digest` in front of a real one.
//! The `support_*` tests check the test support itself.

use regkeeper_test_support as support;

use std::time::{Duration, Instant};

use regkeeper::registry::{Client, RegistryError};
use support::registry::{
    free_port, Auth, DigestStrippingProxy, Notifications, Options, Reply, ScriptedServer,
    TestRegistry, TokenPolicy, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};

#[test]
fn support_pushes_every_image_kind_anonymously() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("a/b/c", "v1");
    let oci = registry.push_oci_image("oci", "v1");
    let index = registry.push_oci_index("multi", "latest");
    assert_eq!(registry.tag("a/b/c", "v1", "v2"), image.digest);
    assert_ne!(registry.push_image("a/b/c", "v3").digest, image.digest);
    assert_eq!(index.children.len(), 2);
    assert_eq!(registry.delete("oci", &oci.digest), 202);
}

#[test]
fn support_pushes_with_htpasswd_and_token_auth() {
    let htpasswd = TestRegistry::start(Options {
        auth: Auth::htpasswd("alice", "secret"),
        ..Options::default()
    });
    htpasswd.push_image("ns/app", "v1");
    let token = TestRegistry::start(Options {
        auth: Auth::token("alice", "secret"),
        ..Options::default()
    });
    token.push_oci_index("ns/app", "v1");
}

#[test]
fn support_breaks_one_repository() {
    let registry = TestRegistry::anonymous();
    registry.push_image("good", "v1");
    registry.push_image("bad", "v1");
    registry.break_repository("bad");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str| {
        let mut response = agent
            .get(&format!("{}{path}", registry.url))
            .call()
            .expect("request");
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let catalog = get("/v2/_catalog");
    assert!(catalog.1.contains("bad"));
    assert_eq!(get("/v2/bad/tags/list").0, 500);
}

#[test]
fn support_configures_notifications_with_authorization() {
    let endpoint = ScriptedServer::start(vec![Reply::json(200, "{}")]);
    let registry = TestRegistry::start(Options {
        notifications: Some(Notifications {
            url: format!("{}/v2/webhooks/events", endpoint.url),
            authorization: Some("Token abc".into()),
        }),
        ..Options::default()
    });
    let image = registry.push_image("ns/app", "v1");
    let found = support::wait::poll(support::DEADLINE, || {
        endpoint.requests().into_iter().find(|request| {
            String::from_utf8_lossy(&request.body).contains(&image.digest)
                && String::from_utf8_lossy(&request.body).contains("\"references\"")
        })
    });
    let found = found.unwrap_or_else(|| {
        panic!(
            "no push event for the manifest; got {:?}\nlog: {}",
            endpoint
                .requests()
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>(),
            registry.log()
        )
    });
    assert_eq!(found.header("authorization"), Some("Token abc"));
}

// ---------------------------------------------------------------------------
// The client against a real registry, anonymous.

fn client(config: &regkeeper::config::RegistryConfig) -> Client {
    Client::new(config).expect("building the client")
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[test]
fn anonymous_catalog_tags_head_and_get() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("a/b/c", "v1");
    registry.tag("a/b/c", "v1", "v2");
    let client = client(&registry.client_config());
    client.ping().expect("ping");
    assert_eq!(client.catalog().expect("catalog"), vec!["a/b/c"]);
    assert_eq!(
        sorted(client.tags("a/b/c").expect("tags").expect("some tags")),
        vec!["v1", "v2"]
    );
    let head = client.head_manifest("a/b/c", "v1").expect("head");
    assert_eq!(head.digest, image.digest);
    assert_eq!(head.media_type, DOCKER_MANIFEST);
    assert_eq!(head.size, image.manifest.len() as i64);
    let manifest = client.manifest("a/b/c", "v2").expect("manifest");
    assert_eq!(manifest.digest, image.digest);
    assert_eq!(manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(manifest.image_id, image.image_id);
    assert_eq!(manifest.size, image.size);
    let layers: Vec<(String, i64)> = manifest
        .layers
        .iter()
        .map(|layer| (layer.digest.clone(), layer.size))
        .collect();
    assert_eq!(layers, image.layers);
    let by_digest = client
        .manifest("a/b/c", &image.digest)
        .expect("manifest by digest");
    assert_eq!(by_digest.digest, image.digest);
    assert!(client.requests_made() >= 6);
}

#[test]
fn catalog_pages_with_small_n_and_nested_names() {
    let registry = TestRegistry::anonymous();
    let names = ["ns/app0", "ns/app1", "ns/app10", "ns/app2", "solo"];
    for name in names {
        registry.push_image(name, "v1");
    }
    let mut config = registry.client_config();
    config.catalog_page_size = 2;
    let client = client(&config);
    assert_eq!(client.catalog().expect("catalog"), names);
    // Three pages of at most 2; the last page has no Link.
    assert_eq!(client.requests_made(), 3);
}

#[test]
fn tags_of_an_emptied_repository_are_none() {
    let registry = TestRegistry::anonymous();
    registry.push_image("ns/gone", "v1");
    registry.push_image("ns/gone", "v2");
    registry.empty_repository("ns/gone");
    let client = client(&registry.client_config());
    assert_eq!(client.tags("ns/gone").expect("tags"), None);
    assert_eq!(client.catalog().expect("catalog"), vec!["ns/gone"]);
}

#[test]
fn unknown_repository_and_manifest_are_not_found_with_codes() {
    let registry = TestRegistry::anonymous();
    registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    match client.tags("ns/nope") {
        Err(RegistryError::NotFound { code, .. }) => {
            assert_eq!(code.as_deref(), Some("NAME_UNKNOWN"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    match client.manifest("ns/app", "nope") {
        Err(RegistryError::NotFound { code, .. }) => {
            assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        client.head_manifest("ns/app", "nope"),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn every_accept_type_head_and_get_agree() {
    let registry = TestRegistry::anonymous();
    let docker = registry.push_image("types", "docker");
    let oci = registry.push_oci_image("types", "oci");
    let index = registry.push_oci_index("types", "index");
    let list = registry.push_index_of("types", "list", DOCKER_MANIFEST_LIST);
    let client = client(&registry.client_config());
    for (tag, digest, media_type) in [
        ("docker", &docker.digest, DOCKER_MANIFEST),
        ("oci", &oci.digest, OCI_MANIFEST),
        ("index", &index.digest, OCI_INDEX),
        ("list", &list.digest, DOCKER_MANIFEST_LIST),
    ] {
        let head = client.head_manifest("types", tag).expect("head");
        let manifest = client.manifest("types", tag).expect("manifest");
        assert_eq!(
            (&head.digest, head.media_type.as_str()),
            (digest, media_type),
            "HEAD of {tag}"
        );
        assert_eq!(
            (&manifest.digest, manifest.media_type.as_str()),
            (digest, media_type),
            "GET of {tag}"
        );
    }
    let oci_manifest = client.manifest("types", "oci").expect("oci");
    assert_eq!(
        (oci_manifest.image_id.as_str(), oci_manifest.size),
        (oci.image_id.as_str(), oci.size)
    );
    let index_manifest = client.manifest("types", "index").expect("index");
    assert!(index_manifest.is_index());
    let platforms: Vec<(String, String, Option<String>)> = index_manifest
        .children
        .iter()
        .map(|child| {
            let platform = child.platform.clone().expect("platform");
            (platform.os, platform.architecture, platform.variant)
        })
        .collect();
    assert_eq!(
        platforms,
        vec![
            ("linux".into(), "amd64".into(), None),
            ("linux".into(), "arm64".into(), Some("v8".into()))
        ]
    );
    let child_sizes: i64 = index
        .children
        .iter()
        .map(|(_, _, image)| image.manifest.len() as i64)
        .sum();
    assert_eq!(index_manifest.size, child_sizes);
    let child = client
        .manifest("types", &index.children[1].2.digest)
        .expect("child by digest");
    assert_eq!(child.image_id, index.children[1].2.image_id);
}

#[test]
fn delete_by_digest_then_again_is_not_found() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    registry.tag("ns/app", "v1", "v2");
    let keep = registry.push_image("ns/app", "keep");
    let client = client(&registry.client_config());
    client
        .delete_manifest("ns/app", &image.digest)
        .expect("delete");
    assert_eq!(
        client.tags("ns/app").expect("tags"),
        Some(vec!["keep".to_string()])
    );
    assert!(matches!(
        client.head_manifest("ns/app", &image.digest),
        Err(RegistryError::NotFound { .. })
    ));
    match client.delete_manifest("ns/app", &image.digest) {
        Err(RegistryError::NotFound { code, .. }) => {
            assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(
        client.head_manifest("ns/app", "keep").expect("kept").digest,
        keep.digest
    );
}

#[test]
fn map_concurrent_keeps_input_order_against_the_registry() {
    let registry = TestRegistry::anonymous();
    let mut expected = Vec::new();
    for index in 0..6 {
        expected.push(registry.push_image("ns/app", &format!("t{index}")).digest);
    }
    let client = client(&registry.client_config());
    let tags: Vec<String> = (0..6).map(|index| format!("t{index}")).collect();
    let digests = client.map_concurrent(tags, |tag| {
        client.head_manifest("ns/app", &tag).map(|head| head.digest)
    });
    let digests: Vec<String> = digests
        .into_iter()
        .map(|digest| digest.expect("head"))
        .collect();
    assert_eq!(digests, expected);
    let empty: Vec<u32> = client.map_concurrent(Vec::<u32>::new(), |value| value);
    assert!(empty.is_empty());
}

#[test]
fn anonymous_pull_authorization_is_none_and_blob_url_serves_the_blob() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    assert_eq!(
        client
            .pull_authorization("ns/app")
            .expect("pull authorization"),
        None
    );
    let url = client
        .blob_url("ns/app", &image.config_digest)
        .expect("blob url");
    assert!(client
        .blob_url("ns/app", "sha256:../../../v2/_catalog")
        .is_err());
    assert_eq!(
        url,
        format!("{}/v2/ns/app/blobs/{}", registry.url, image.config_digest)
    );
    let status = ureq::get(&url).call().expect("blob GET").status().as_u16();
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------
// htpasswd (Basic).

fn htpasswd_registry() -> TestRegistry {
    TestRegistry::start(Options {
        auth: Auth::htpasswd("alice", "secret"),
        ..Options::default()
    })
}

#[test]
fn htpasswd_client_answers_the_basic_challenge() {
    let registry = htpasswd_registry();
    let image = registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    client.ping().expect("ping");
    assert_eq!(client.catalog().expect("catalog"), vec!["ns/app"]);
    assert_eq!(
        client.tags("ns/app").expect("tags"),
        Some(vec!["v1".to_string()])
    );
    assert_eq!(
        client.head_manifest("ns/app", "v1").expect("head").digest,
        image.digest
    );
    assert_eq!(
        client.manifest("ns/app", "v1").expect("manifest").digest,
        image.digest
    );
    let authorization = client
        .pull_authorization("ns/app")
        .expect("pull authorization")
        .expect("some");
    assert!(authorization.starts_with("Basic "));
    let blob = ureq::get(
        &client
            .blob_url("ns/app", &image.config_digest)
            .expect("blob url"),
    )
    .header("Authorization", &authorization)
    .call()
    .expect("blob GET");
    assert_eq!(blob.status().as_u16(), 200);
    client
        .delete_manifest("ns/app", &image.digest)
        .expect("delete");
}

#[test]
fn htpasswd_wrong_password_is_unauthorized() {
    let registry = htpasswd_registry();
    registry.push_image("ns/app", "v1");
    let mut config = registry.client_config();
    config.password = Some("wrong".into());
    let client = client(&config);
    match client.tags("ns/app") {
        Err(RegistryError::Unauthorized { message, .. }) => {
            assert!(message.contains("refused"), "{message}");
            assert!(!message.contains("wrong"), "the password leaked: {message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let error = client.catalog().expect_err("catalog with a wrong password");
    assert!(!format!("{error} {error:?} {client:?}").contains("wrong"));
}

#[test]
fn htpasswd_without_credentials_is_unauthorized() {
    let registry = htpasswd_registry();
    let mut config = registry.client_config();
    config.username = None;
    config.password = None;
    let client = client(&config);
    assert!(matches!(
        client.catalog(),
        Err(RegistryError::Unauthorized { .. })
    ));
}

// ---------------------------------------------------------------------------
// Token auth.

fn token_registry(policy: TokenPolicy) -> TestRegistry {
    TestRegistry::start(Options {
        auth: Auth::Token(policy),
        ..Options::default()
    })
}

#[test]
fn token_auth_every_endpoint_with_cached_tokens() {
    let registry = token_registry(TokenPolicy::full("alice", "secret"));
    let image = registry.push_image("ns/app", "v1");
    let index = registry.push_oci_index("a/b/c", "multi");
    let client = client(&registry.client_config());
    client.ping().expect("ping");
    assert_eq!(client.catalog().expect("catalog"), vec!["a/b/c", "ns/app"]);
    assert_eq!(
        client.tags("ns/app").expect("tags"),
        Some(vec!["v1".to_string()])
    );
    assert_eq!(
        client.head_manifest("ns/app", "v1").expect("head").digest,
        image.digest
    );
    assert_eq!(
        client.manifest("a/b/c", "multi").expect("index").digest,
        index.digest
    );
    let server = registry.token_server.as_ref().expect("token server");
    let issued = server.tokens_issued();
    // Same scopes again: every token comes from the cache.
    let before = client.requests_made();
    client.catalog().expect("catalog again");
    client.tags("ns/app").expect("tags again");
    client.manifest("ns/app", "v1").expect("manifest again");
    client.manifest("a/b/c", "multi").expect("index again");
    assert_eq!(server.tokens_issued(), issued);
    assert_eq!(
        client.requests_made() - before,
        4,
        "no challenge round trips once tokens are cached"
    );
    let requests = server.requests();
    assert!(requests
        .iter()
        .all(|request| request.with_credentials && request.account.as_deref() == Some("alice")));
    assert!(requests
        .iter()
        .all(|request| request.service.as_deref() == Some(support::registry::TOKEN_SERVICE)));
    let scopes: Vec<String> = requests
        .iter()
        .flat_map(|request| request.scopes.clone())
        .collect();
    for scope in [
        "registry:catalog:*",
        "repository:ns/app:pull",
        "repository:a/b/c:pull",
    ] {
        assert!(
            scopes.iter().any(|seen| seen == scope),
            "{scope} not requested: {scopes:?}"
        );
    }
    client
        .delete_manifest("ns/app", &image.digest)
        .expect("delete");
    assert!(server.requests().iter().any(|request| request
        .scopes
        .iter()
        .any(|scope| scope == "repository:ns/app:delete")));
}

#[test]
fn token_auth_wrong_password_is_unauthorized_naming_the_scope() {
    let registry = token_registry(TokenPolicy::full("alice", "secret"));
    registry.push_image("ns/app", "v1");
    let mut config = registry.client_config();
    config.password = Some("wrong".into());
    let client = client(&config);
    match client.tags("ns/app") {
        Err(RegistryError::Unauthorized { scope, message }) => {
            assert_eq!(scope.as_deref(), Some("repository:ns/app:pull"));
            assert!(message.contains("token realm refused"), "{message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[test]
fn token_auth_missing_scope_is_unauthorized_insufficient_scope() {
    let mut policy = TokenPolicy::full("alice", "secret");
    policy.user_actions = vec!["pull".into()];
    policy.user_catalog = false;
    let registry = token_registry(policy);
    let image = registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    assert_eq!(
        client
            .manifest("ns/app", "v1")
            .expect("pull is granted")
            .digest,
        image.digest
    );
    match client.delete_manifest("ns/app", &image.digest) {
        Err(RegistryError::Unauthorized { scope, message }) => {
            assert_eq!(scope.as_deref(), Some("repository:ns/app:delete"));
            assert!(message.contains("insufficient_scope"), "{message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    match client.catalog() {
        Err(RegistryError::Unauthorized { scope, .. }) => {
            assert_eq!(scope.as_deref(), Some("registry:catalog:*"))
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(
        client
            .head_manifest("ns/app", "v1")
            .expect("still there")
            .digest,
        image.digest
    );
}

#[test]
fn token_auth_anonymous_pull_without_credentials() {
    let mut policy = TokenPolicy::full("alice", "secret");
    policy.anonymous_actions = vec!["pull".into()];
    let registry = token_registry(policy);
    let image = registry.push_image("ns/app", "v1");
    let mut config = registry.client_config();
    config.username = None;
    config.password = None;
    let client = client(&config);
    assert_eq!(
        client
            .manifest("ns/app", "v1")
            .expect("anonymous pull")
            .digest,
        image.digest
    );
    assert!(matches!(
        client.catalog(),
        Err(RegistryError::Unauthorized { .. })
    ));
    let server = registry.token_server.as_ref().expect("token server");
    let anonymous = server
        .requests()
        .into_iter()
        .filter(|request| !request.with_credentials)
        .collect::<Vec<_>>();
    assert!(!anonymous.is_empty());
    assert!(anonymous.iter().all(|request| request.account.is_none()));
}

#[test]
fn token_pull_authorization_lets_a_scanner_fetch_blobs() {
    let registry = token_registry(TokenPolicy::full("alice", "secret"));
    let image = registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    let authorization = client
        .pull_authorization("ns/app")
        .expect("pull authorization")
        .expect("some");
    assert!(authorization.starts_with("Bearer "));
    let url = client
        .blob_url("ns/app", &image.layers[0].0)
        .expect("blob url");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    assert_eq!(
        agent.get(&url).call().expect("blob GET").status().as_u16(),
        401
    );
    let with_token = agent
        .get(&url)
        .header("Authorization", &authorization)
        .call()
        .expect("blob GET");
    assert_eq!(with_token.status().as_u16(), 200);
}

// ---------------------------------------------------------------------------
// Failures, with tiny local servers of ours.

const TAGS_BODY: &str = r#"{"name":"ns/app","tags":["v1"]}"#;

#[test]
fn registry_down_is_a_transport_error_after_retries() {
    let port = free_port();
    let mut config = ScriptedServer::start(vec![]).client_config();
    config.url = url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
    let client = client(&config);
    match client.tags("ns/app") {
        Err(RegistryError::Transport(message)) => {
            assert!(message.contains(&port.to_string()), "{message}")
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(client.requests_made(), 3);
}

#[test]
fn slow_registry_times_out() {
    let server = ScriptedServer::start(vec![
        Reply::json(200, TAGS_BODY).delayed(Duration::from_secs(30))
    ]);
    let mut config = server.client_config();
    config.timeout = Duration::from_millis(300);
    let client = client(&config);
    let started = Instant::now();
    match client.tags("ns/app") {
        Err(RegistryError::Transport(message)) => {
            assert!(message.to_lowercase().contains("time"), "{message}")
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the client waited for the stalled answer"
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn server_errors_then_success_is_retried() {
    let server = ScriptedServer::start(vec![
        Reply::json(
            503,
            r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#,
        ),
        Reply::json(500, "oops"),
        Reply::json(200, TAGS_BODY),
    ]);
    let client = client(&server.client_config());
    assert_eq!(
        client.tags("ns/app").expect("tags after retries"),
        Some(vec!["v1".to_string()])
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn server_errors_beyond_the_attempts_are_typed() {
    let server = ScriptedServer::start(vec![Reply::json(
        502,
        r#"{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}"#,
    )]);
    let client = client(&server.client_config());
    match client.tags("ns/app") {
        Err(RegistryError::Server { status, message }) => {
            assert_eq!((status, message.as_str()), (502, "unknown error"))
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn rate_limited_honours_retry_after() {
    let server = ScriptedServer::start(vec![
        Reply::json(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
        .header("Retry-After", "1"),
        Reply::json(200, TAGS_BODY),
    ]);
    let client = client(&server.client_config());
    assert_eq!(
        client.tags("ns/app").expect("tags after 429"),
        Some(vec!["v1".to_string()])
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn rate_limited_with_a_long_retry_after_is_returned_at_once() {
    let server = ScriptedServer::start(vec![Reply::json(429, "{}").header("Retry-After", "3600")]);
    let client = client(&server.client_config());
    assert_eq!(
        client.tags("ns/app"),
        Err(RegistryError::RateLimited {
            retry_after: Some(Duration::from_secs(3600))
        })
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn delete_is_not_retried_on_server_error() {
    let server = ScriptedServer::start(vec![Reply::json(500, "{}")]);
    let client = client(&server.client_config());
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    assert!(matches!(
        client.delete_manifest("ns/app", digest),
        Err(RegistryError::Server { status: 500, .. })
    ));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].method, "DELETE");
}

#[test]
fn delete_with_deletion_disabled_is_not_found_unsupported() {
    let server = ScriptedServer::start(vec![Reply::json(
        405,
        r#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#,
    )]);
    let client = client(&server.client_config());
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    match client.delete_manifest("ns/app", digest) {
        Err(RegistryError::NotFound { code, .. }) => {
            assert_eq!(code.as_deref(), Some("UNSUPPORTED"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn malformed_manifest_body_names_repository_and_reference() {
    let server = ScriptedServer::start(vec![Reply::json(
        200,
        r#"{"schemaVersion": 2, "config": {"#,
    )
    .header("Content-Type", DOCKER_MANIFEST)
    .header(
        "Docker-Content-Digest",
        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    )]);
    let client = client(&server.client_config());
    match client.manifest("ns/app", "v1") {
        Err(RegistryError::Malformed(message)) => {
            assert!(message.contains("ns/app:v1"), "{message}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn manifest_whose_body_does_not_match_its_digest_is_malformed() {
    let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:ab","size":1},"layers":[]}"#;
    let server = ScriptedServer::start(vec![Reply::json(200, body)
        .header("Content-Type", OCI_MANIFEST)
        .header(
            "Docker-Content-Digest",
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        )]);
    let client = client(&server.client_config());
    match client.manifest("ns/app", "v1") {
        Err(RegistryError::Malformed(message)) => {
            assert!(message.contains("mismatch"), "{message}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn requests_carry_user_agent_and_every_manifest_type_in_accept() {
    let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:ab","size":1},"layers":[]}"#;
    let server = ScriptedServer::start(vec![
        Reply::json(200, body).header("Content-Type", OCI_MANIFEST)
    ]);
    let client = client(&server.client_config());
    let manifest = client.manifest("ns/app", "v1").expect("manifest");
    assert_eq!(
        manifest.digest,
        support::registry::sha256_digest(body.as_bytes())
    );
    let request = &server.requests()[0];
    assert_eq!(request.path(), "/v2/ns/app/manifests/v1");
    assert_eq!(
        request.header("user-agent"),
        Some(format!("regkeeper/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let accept = request.header("accept").expect("Accept");
    for media_type in [
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        OCI_INDEX,
    ] {
        assert!(
            accept.contains(media_type),
            "{media_type} missing from {accept}"
        );
    }
}

#[test]
fn catalog_follows_absolute_links_on_the_registry_origin() {
    let server = ScriptedServer::with_handler(|_, request| {
        let last = request
            .query()
            .into_iter()
            .find(|(key, _)| key == "last")
            .map(|(_, value)| value);
        match last.as_deref() {
            None => Reply::json(200, r#"{"repositories":["a","ns/b"]}"#).header(
                "Link",
                r#"<http://registry.internal:5000/v2/_catalog?last=ns%2Fb&n=2>; rel="next""#,
            ),
            Some("ns/b") => Reply::json(200, r#"{"repositories":["ns/c"]}"#),
            Some(_) => Reply::json(400, "{}"),
        }
    });
    let mut config = server.client_config();
    config.catalog_page_size = 2;
    let client = client(&config);
    assert_eq!(
        client.catalog().expect("catalog"),
        vec!["a", "ns/b", "ns/c"]
    );
    assert_eq!(server.requests()[0].target, "/v2/_catalog?n=2");
}

#[test]
fn tags_follow_link_pages() {
    let server = ScriptedServer::start(vec![
        Reply::json(200, r#"{"name":"busybox","tags":["1","2"]}"#)
            .header("Link", r#"</v2/busybox/tags/list?last=2&n=2>; rel="next""#),
        Reply::json(200, r#"{"name":"busybox","tags":["3"]}"#),
    ]);
    let client = client(&server.client_config());
    assert_eq!(
        client.tags("busybox").expect("tags"),
        Some(vec!["1".to_string(), "2".into(), "3".into()])
    );
}

#[test]
fn ping_rejects_a_server_that_is_not_a_registry() {
    let server = ScriptedServer::start(vec![Reply::json(200, "{}")]);
    let client = client(&server.client_config());
    assert!(matches!(client.ping(), Err(RegistryError::Malformed(_))));
}

// ---------------------------------------------------------------------------
// TLS.

fn tls_registry() -> TestRegistry {
    TestRegistry::start(Options {
        tls: true,
        ..Options::default()
    })
}

#[test]
fn tls_with_ca_file_verifies_the_registry() {
    let registry = tls_registry();
    let image = registry.push_image("ns/app", "v1");
    assert!(registry.url.starts_with("https://"));
    let client = client(&registry.client_config());
    client.ping().expect("ping over TLS");
    assert_eq!(
        client.head_manifest("ns/app", "v1").expect("head").digest,
        image.digest
    );
}

#[test]
fn tls_without_the_ca_is_a_transport_error() {
    let registry = tls_registry();
    let mut config = registry.client_config();
    config.ca_file = None;
    let client = client(&config);
    assert!(matches!(client.catalog(), Err(RegistryError::Transport(_))));
    assert_eq!(
        client.requests_made(),
        1,
        "a certificate error is not retried"
    );
}

#[test]
fn tls_insecure_skip_verify_is_an_explicit_opt_in() {
    let registry = tls_registry();
    registry.push_image("ns/app", "v1");
    let mut config = registry.client_config();
    config.ca_file = None;
    config.insecure_skip_tls_verify = true;
    let client = client(&config);
    assert_eq!(
        client.catalog().expect("catalog without verification"),
        vec!["ns/app"]
    );
}

#[test]
fn ca_file_without_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("empty.pem");
    std::fs::write(&ca_file, "not a certificate\n").expect("writing");
    let mut config = ScriptedServer::start(vec![]).client_config();
    config.ca_file = Some(ca_file);
    let error = Client::new(&config).expect_err("an empty ca_file");
    assert!(format!("{error:#}").contains("empty.pem"), "{error:#}");
}

#[test]
fn token_auth_invalid_token_is_unauthorized_after_one_retry() {
    let mut policy = TokenPolicy::full("alice", "secret");
    policy.issuer = "someone-else".into();
    let registry = token_registry(policy);
    registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    match client.tags("ns/app") {
        Err(RegistryError::Unauthorized { scope, message }) => {
            assert_eq!(scope.as_deref(), Some("repository:ns/app:pull"));
            assert!(message.contains("invalid_token"), "{message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // One token for the challenge, then no second guess for the same scope.
    assert_eq!(
        registry
            .token_server
            .as_ref()
            .expect("token server")
            .tokens_issued(),
        1
    );
}

#[test]
fn support_writes_images_on_disk_that_the_registry_serves() {
    let registry = TestRegistry::anonymous();
    let repositories = vec!["disk/a".to_string(), "disk/b".to_string()];
    let tags = vec!["v1".to_string(), "v2".to_string()];
    let digests = registry.write_images_on_disk(&repositories, &tags);
    let client = client(&registry.client_config());
    assert_eq!(client.catalog().expect("catalog"), repositories);
    assert_eq!(
        sorted(client.tags("disk/b").expect("tags").expect("some")),
        tags
    );
    let manifest = client.manifest("disk/b", "v2").expect("manifest");
    assert_eq!(manifest.digest, digests[3]);
    assert_eq!(
        client.head_manifest("disk/a", "v1").expect("head").digest,
        digests[0]
    );
}

#[test]
fn connections_are_reused_across_get_and_head() {
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let server = ScriptedServer::with_handler(move |_, request| {
        if request.method == "HEAD" {
            Reply::json(200, r#"{"schemaVersion":2}"#)
                .header("Content-Type", OCI_MANIFEST)
                .header("Docker-Content-Digest", digest)
        } else {
            Reply::json(200, TAGS_BODY)
        }
    });
    let client = client(&server.client_config());
    for _ in 0..5 {
        client.tags("ns/app").expect("tags");
        assert_eq!(
            client.head_manifest("ns/app", "v1").expect("head").digest,
            digest
        );
    }
    assert_eq!(server.requests().len(), 10);
    assert_eq!(
        server.connections(),
        1,
        "one kept-alive connection for sequential requests"
    );
}

#[test]
fn support_proxy_drops_the_digest_header_and_keeps_the_rest() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let proxy = DigestStrippingProxy::start(&registry.url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/v2/ns/app/manifests/v1", proxy.url());
    for head in [false, true] {
        let request = if head {
            agent.head(&url)
        } else {
            agent.get(&url)
        };
        let mut response = request
            .header("Accept", DOCKER_MANIFEST)
            .call()
            .expect("a request through the proxy");
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.headers().get("docker-content-digest").is_none());
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(String::from)
        };
        assert_eq!(header("content-type").as_deref(), Some(DOCKER_MANIFEST));
        assert_eq!(
            header("content-length"),
            Some(image.manifest.len().to_string())
        );
        if !head {
            let body = response.body_mut().read_to_vec().expect("the body");
            assert_eq!(body, image.manifest);
        }
    }
}

#[test]
fn head_without_digest_header_reads_the_digest_with_get_once_then_get_alone() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let index = registry.push_oci_index("ns/app", "multi");
    let proxy = DigestStrippingProxy::start(&registry.url);
    let client = client(&proxy.client_config());
    let manifest_path = |reference: &str| format!("/v2/ns/app/manifests/{reference}");

    let head = client.head_manifest("ns/app", "v1").expect("head of v1");
    assert_eq!(head.digest, image.digest);
    assert_eq!(head.media_type, DOCKER_MANIFEST);
    assert_eq!(head.size, image.manifest.len() as i64);
    let manifest = head.manifest.expect("the manifest read with GET");
    assert_eq!(manifest.digest, image.digest);
    assert_eq!(manifest.image_id, image.image_id);
    assert_eq!(
        proxy.requests(),
        vec![
            ("HEAD".to_string(), manifest_path("v1")),
            ("GET".to_string(), manifest_path("v1")),
        ]
    );
    assert_eq!(client.requests_made(), 2);

    // The client remembers: one GET per tag from now on.
    let head = client
        .head_manifest("ns/app", "multi")
        .expect("head of multi");
    assert_eq!(head.digest, index.digest);
    assert_eq!(head.media_type, OCI_INDEX);
    assert_eq!(head.manifest.expect("the index").children.len(), 2);
    assert_eq!(
        proxy.requests()[2..],
        [("GET".to_string(), manifest_path("multi"))]
    );
    assert_eq!(client.requests_made(), 3);

    // A HEAD by digest needs no header: the answer vouches for the digest.
    let head = client
        .head_manifest("ns/app", &image.digest)
        .expect("head by digest");
    assert_eq!(head.digest, image.digest);
    assert_eq!(head.manifest, None);
    assert_eq!(
        proxy.requests()[3..],
        [("HEAD".to_string(), manifest_path(&image.digest))]
    );
    // ... and a missing manifest is still not found.
    let missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert!(matches!(
        client.head_manifest("ns/app", missing),
        Err(RegistryError::NotFound { .. })
    ));
    assert!(matches!(
        client.head_manifest("ns/app", "nope"),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn head_with_digest_header_is_one_request() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let client = client(&registry.client_config());
    for _ in 0..3 {
        let head = client.head_manifest("ns/app", "v1").expect("head");
        assert_eq!(head.digest, image.digest);
        assert_eq!(head.manifest, None);
    }
    assert_eq!(client.requests_made(), 3);
}

#[test]
fn without_digest_header_a_body_that_does_not_hash_to_the_digest_is_rejected() {
    let registry = TestRegistry::anonymous();
    let image = registry.push_image("ns/app", "v1");
    let other = registry.push_image("ns/app", "v2");
    let proxy = DigestStrippingProxy::start(&registry.url);
    // The proxy serves v2's manifest for v1's digest.
    proxy.substitute(
        &format!("/v2/ns/app/manifests/{}", image.digest),
        &other.manifest,
    );
    let client = client(&proxy.client_config());
    match client.manifest("ns/app", &image.digest) {
        Err(RegistryError::Malformed(message)) => {
            assert!(message.contains("digest mismatch"), "{message}");
            assert!(message.contains(&image.digest), "{message}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(
        client
            .manifest("ns/app", &other.digest)
            .expect("an untouched manifest")
            .digest,
        other.digest
    );
}
