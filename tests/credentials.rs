//! Where the registry's credentials may go, attacked with real servers on
//! 127.0.0.1: a challenge naming a token realm on another origin, a
//! redirect to another origin that asks for credentials, an `http` realm of
//! an `https` registry. The stand-ins record every request, so each test
//! checks what reached them, not only what the client said.

use regkeeper_test_support as support;

use base64::Engine as _;
use regkeeper::registry::{Client, RegistryError};
use support::http::{HttpServer, Reply, Request};
use support::registry::{Auth, Options, TestRegistry, TokenPolicy};

const USERNAME: &str = "alice";
const PASSWORD: &str = "s3cret-password";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"))
    )
}

/// A `[registry]` configuration with the test credentials for `url`.
fn config_for(url: &str) -> regkeeper::config::RegistryConfig {
    regkeeper::config::RegistryConfig {
        url: url::Url::parse(url).expect("url"),
        username: Some(USERNAME.into()),
        password: Some(PASSWORD.into()),
        ca_file: None,
        insecure_skip_tls_verify: false,
        timeout: std::time::Duration::from_secs(10),
        concurrency: 2,
        catalog_page_size: 100,
        token_realms: Vec::new(),
        scanner_username: None,
        scanner_password: None,
        share_password_with_scanners: false,
    }
}

fn client(config: &regkeeper::config::RegistryConfig) -> Client {
    Client::new(config).expect("client")
}

/// A realm of ours that would hand out a token to anyone; it records what
/// it received.
fn realm_server() -> HttpServer {
    HttpServer::start(|_, _| Reply::json(200, r#"{"token":"stolen-token","expires_in":300}"#))
}

/// A registry stand-in whose every answer is a 401 naming `realm`.
fn challenging_registry(realm: String) -> HttpServer {
    HttpServer::start(move |_, _| {
        Reply::json(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
        .header("Docker-Distribution-Api-Version", "registry/2.0")
        .header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="{realm}",service="evil",scope="registry:catalog:*""#),
        )
    })
}

fn authorizations(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|request| request.header("authorization").map(String::from))
        .collect()
}

fn assert_refused(result: Result<Vec<String>, RegistryError>, expected: &str) {
    match result {
        Err(RegistryError::Unauthorized { message, .. }) => {
            assert!(message.contains(expected), "{message}")
        }
        other => panic!("expected a refusal naming {expected:?}, got {other:?}"),
    }
}

#[test]
fn a_bearer_realm_on_another_port_gets_no_credentials() {
    let realm = realm_server();
    let registry = challenging_registry(format!("{}/token", realm.url()));
    let client = client(&config_for(&registry.url()));
    assert_refused(client.catalog(), "nor in [registry] token_realms");
    assert!(
        realm.requests().is_empty(),
        "the foreign realm was asked: {:?}",
        realm.requests()
    );
    // The realm was not adopted: the next request carries nothing either.
    assert_refused(client.catalog(), "token_realms");
    assert!(realm.requests().is_empty());
    assert!(authorizations(&registry.requests()).is_empty());
}

#[test]
fn a_bearer_realm_on_another_host_gets_no_credentials() {
    let realm = realm_server();
    let port = realm.address().port();
    let registry = challenging_registry(format!("http://localhost:{port}/token"));
    let client = client(&config_for(&registry.url()));
    assert_refused(client.catalog(), "token realm http://localhost:");
    assert!(realm.requests().is_empty(), "{:?}", realm.requests());
}

#[test]
fn a_listed_token_realm_host_is_asked_with_the_credentials() {
    let realm = realm_server();
    let registry = challenging_registry(format!("{}/token", realm.url()));
    let mut config = config_for(&registry.url());
    config.token_realms = vec![regkeeper::config::TokenRealm::Host("127.0.0.1".into())];
    let client = client(&config);
    // The realm answers, the registry still refuses the token: what matters
    // is that the listed realm got the credentials.
    assert!(client.catalog().is_err());
    assert_eq!(authorizations(&realm.requests()), [basic()]);
}

#[test]
fn a_redirect_to_another_origin_answering_401_gets_no_credentials() {
    let realm = realm_server();
    let elsewhere = challenging_registry(format!("{}/token", realm.url()));
    let target = elsewhere.url();
    let registry = HttpServer::start(move |_, request: &Request| {
        if request.path() == "/v2/" {
            return Reply::json(401, "{}")
                .header("Docker-Distribution-Api-Version", "registry/2.0")
                .header("WWW-Authenticate", r#"Basic realm="registry""#);
        }
        Reply::new(302, "").header("Location", &format!("{target}{}", request.target))
    });
    let mut config = config_for(&registry.url());
    // Even a realm the operator allowed is not taken from a foreign answer.
    config.token_realms = vec![regkeeper::config::TokenRealm::Host("127.0.0.1".into())];
    let client = client(&config);
    // The registry itself asks for Basic: its own origin gets the password.
    assert!(client.ping().is_err());
    assert_refused(
        client.catalog(),
        "none are sent outside the registry's origin",
    );
    assert_refused(
        client.tags("ns/app").map(|tags| tags.unwrap_or_default()),
        "redirected to",
    );
    assert!(
        authorizations(&elsewhere.requests()).is_empty(),
        "credentials followed the redirect: {:?}",
        elsewhere.requests()
    );
    assert!(realm.requests().is_empty(), "{:?}", realm.requests());
    // The registry's own origin got its credentials only after it asked.
    assert!(authorizations(&registry.requests())
        .iter()
        .all(|value| *value == basic()));
}

#[test]
fn token_auth_with_the_realm_outside_the_allowed_list_is_refused() {
    let registry = TestRegistry::start(Options {
        auth: Auth::Token(TokenPolicy::full(USERNAME, PASSWORD)),
        ..Options::default()
    });
    registry.push_image("ns/app", "v1");
    let mut config = registry.client_config();
    assert!(!config.token_realms.is_empty());
    // Allowed: the usual path works.
    assert_eq!(client(&config).catalog().expect("catalog"), ["ns/app"]);
    let server = registry.token_server.as_ref().expect("token server");
    let asked = server.requests().len();
    config.token_realms.clear();
    assert_refused(client(&config).catalog(), "nor in [registry] token_realms");
    assert_eq!(server.requests().len(), asked, "the token server was asked");
}

#[test]
fn an_http_realm_of_an_https_registry_is_refused_even_when_listed() {
    let registry = TestRegistry::start(Options {
        auth: Auth::Token(TokenPolicy::full(USERNAME, PASSWORD)),
        tls: true,
        ..Options::default()
    });
    let config = registry.client_config();
    assert!(config.url.scheme() == "https" && !config.token_realms.is_empty());
    assert_refused(
        client(&config).catalog(),
        "plain http for the https registry",
    );
    let server = registry.token_server.as_ref().expect("token server");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

/// Runs `--once sync` of the real binary at `RUST_LOG=trace` against
/// `registry` and returns its stderr.
fn sync_at_trace(registry: &TestRegistry, extra: &str) -> String {
    registry.push_image("ns/app", "v1");
    let env = support::cli::CliEnv::with_sqlite(
        &format!(
            "[registry]\nurl = \"{}\"\nusername = \"{USERNAME}\"\npassword = \"{PASSWORD}\"\n{extra}",
            registry.url
        ),
        "\n[jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 0 1 1 *\"\nstrategy = \"update\"\n",
    );
    let config = env.config_path();
    let output = support::cli::run_binary_with_env(
        env.config_path().parent().expect("temp dir"),
        &[
            "--once",
            "sync",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &[("RUST_LOG", "trace")],
    );
    assert_eq!(output.code, Some(0), "{output:?}");
    // Trace was on: our own trace lines are there.
    assert!(output.stderr.contains("TRACE"), "{}", output.stderr);
    output.stderr
}

fn assert_no_secret(stderr: &str) {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
    for secret in [PASSWORD, encoded.as_str(), "eyJ"] {
        assert_eq!(
            stderr.matches(secret).count(),
            0,
            "{secret} in the trace log:\n{stderr}"
        );
    }
}

#[test]
fn trace_logs_of_an_htpasswd_registry_hold_no_password() {
    let registry = TestRegistry::start(Options {
        auth: Auth::htpasswd(USERNAME, PASSWORD),
        ..Options::default()
    });
    assert_no_secret(&sync_at_trace(&registry, ""));
}

#[test]
fn trace_logs_of_a_token_registry_hold_no_password_and_no_token() {
    let registry = TestRegistry::start(Options {
        auth: Auth::Token(TokenPolicy::full(USERNAME, PASSWORD)),
        ..Options::default()
    });
    let realm = url::Url::parse(
        &registry
            .token_server
            .as_ref()
            .expect("token server")
            .realm(),
    )
    .expect("realm");
    let stderr = sync_at_trace(
        &registry,
        &format!(
            "token_realms = [\"{}\"]\n",
            realm.origin().ascii_serialization()
        ),
    );
    assert_no_secret(&stderr);
    assert!(registry.token_server.as_ref().unwrap().tokens_issued() > 0);
}
