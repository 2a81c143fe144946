//! The registry client against a real docker-registry in anonymous, htpasswd
//! and token mode, plus tiny local servers of ours for failures (stalls,
//! 5xx, malformed bodies).

mod support;

use std::time::{Duration, Instant};

use support::registry::{Auth, Notifications, Options, Reply, ScriptedServer, TestRegistry};

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
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let found = endpoint.requests().into_iter().find(|request| {
            String::from_utf8_lossy(&request.body).contains(&image.digest)
                && String::from_utf8_lossy(&request.body).contains("\"references\"")
        });
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
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
