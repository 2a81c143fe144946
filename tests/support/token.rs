//! The token server of a token-auth [`TestRegistry`](crate::registry::TestRegistry):
//! the realm that checks Basic credentials against a [`TokenPolicy`] and
//! mints RS256 JWTs the registry trusts, on the one stand-in server
//! ([`crate::http`]). Records what it was asked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::http::{HttpServer, Reply, Request};
use crate::registry::{openssl, unique_token};

/// What the token server grants to whom.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// The one user the realm knows.
    pub username: String,
    /// Its password; a wrong one is a 401 from the realm.
    pub password: String,
    /// Repository actions granted to that user on every repository
    /// (`pull`, `push`, `delete`, `*`); requested actions outside this are left out
    /// of the token, which the registry then answers with `insufficient_scope`.
    pub user_actions: Vec<String>,
    /// Whether the user gets `registry:catalog:*`.
    pub user_catalog: bool,
    /// Repository actions granted to a request without credentials.
    pub anonymous_actions: Vec<String>,
    /// `expires_in` of minted tokens, in seconds.
    pub expires_in: u64,
    /// `iss` of tokens the realm mints; anything but [`TOKEN_ISSUER`] makes
    /// the registry answer `invalid_token`.
    pub issuer: String,
}

impl TokenPolicy {
    /// Everything for the user, nothing for anonymous requests, 300 s tokens.
    pub fn full(username: &str, password: &str) -> TokenPolicy {
        TokenPolicy {
            username: username.into(),
            password: password.into(),
            user_actions: vec!["pull".into(), "push".into(), "delete".into()],
            user_catalog: true,
            anonymous_actions: Vec::new(),
            expires_in: 300,
            issuer: TOKEN_ISSUER.into(),
        }
    }
}

/// `service` of the token-auth registry.
pub const TOKEN_SERVICE: &str = "regkeeper-test-registry";
/// `issuer` of the token-auth registry.
pub const TOKEN_ISSUER: &str = "regkeeper-test-issuer";

/// One request the token server answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The `account` query parameter.
    pub account: Option<String>,
    /// The `service` query parameter.
    pub service: Option<String>,
    /// Every `scope` query parameter.
    pub scopes: Vec<String>,
    /// Whether Basic credentials were sent.
    pub with_credentials: bool,
    /// The status answered.
    pub status: u16,
}

struct TokenKeys {
    key_pair: ring::rsa::KeyPair,
    cert_der: Vec<u8>,
}

/// A token server of ours (the realm): `GET /token?service=&scope=&account=`
/// with optional Basic credentials; mints RS256 JWTs with an `x5c` header
/// carrying a self-signed certificate that is the registry's `rootcertbundle`.
/// Stops on Drop.
pub struct TokenServer {
    /// `127.0.0.1:PORT`.
    pub address: std::net::SocketAddr,
    /// The certificate (PEM) the registry trusts.
    pub cert_path: PathBuf,
    keys: Arc<TokenKeys>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    _server: HttpServer,
}

impl TokenServer {
    /// Generates a key and certificate in `dir` (openssl CLI) and starts serving.
    pub fn start(dir: &Path, policy: TokenPolicy) -> TokenServer {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=regkeeper-test-token",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
            ],
        );
        let cert_path = dir.join("token.crt");
        // `openssl req -newkey` writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3.
        let key_der = pem_body(
            &std::fs::read_to_string(dir.join("token.key")).expect("reading the token key"),
        );
        let cert_der =
            pem_body(&std::fs::read_to_string(&cert_path).expect("reading the token cert"));
        let key_pair =
            ring::rsa::KeyPair::from_pkcs8(&key_der).expect("parsing the token key as PKCS#8");
        let keys = Arc::new(TokenKeys { key_pair, cert_der });
        let requests = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let keys = keys.clone();
            let requests = requests.clone();
            HttpServer::start(move |_, request| {
                let (seen, reply) = answer(request, &keys, &policy);
                if let Ok(mut list) = requests.lock() {
                    list.push(seen);
                }
                reply
            })
        };
        TokenServer {
            address: server.address(),
            cert_path,
            keys,
            requests,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.address)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }

    /// Tokens minted so far (answers with status 200).
    pub fn tokens_issued(&self) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.status == 200)
            .count()
    }

    /// Mints a token for `subject` with `access` entries, valid `expires_in` s.
    pub fn mint(&self, subject: &str, access: Vec<serde_json::Value>, expires_in: u64) -> String {
        mint_token(&self.keys, TOKEN_ISSUER, subject, access, expires_in)
    }
}

/// Answers one token request the way `policy` says; what was asked, and the reply.
fn answer(request: &Request, keys: &TokenKeys, policy: &TokenPolicy) -> (TokenRequest, Reply) {
    let query = request.query();
    let values = |key: &str| -> Vec<String> {
        query
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let credentials = request
        .header("authorization")
        .and_then(|value| {
            value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let scopes: Vec<String> = values("scope")
        .iter()
        .flat_map(|scope| scope.split(' ').map(String::from).collect::<Vec<_>>())
        .collect();
    let mut seen = TokenRequest {
        account: values("account").into_iter().next(),
        service: values("service").into_iter().next(),
        scopes: scopes.clone(),
        with_credentials: credentials.is_some(),
        status: 200,
    };
    let (subject, actions, catalog) = match &credentials {
        Some(pair) if *pair == format!("{}:{}", policy.username, policy.password) => (
            policy.username.clone(),
            policy.user_actions.clone(),
            policy.user_catalog,
        ),
        Some(_) => (String::new(), Vec::new(), false),
        None => (String::new(), policy.anonymous_actions.clone(), false),
    };
    let reply = if credentials.is_some() && subject.is_empty() {
        seen.status = 401;
        Reply::json(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#,
        )
    } else {
        let mut access = Vec::new();
        for scope in &scopes {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            // Names may not contain ':', but actions follow the last one.
            let scope_rest = &scope[kind.len() + 1..];
            let Some((name, wanted)) = scope_rest.rsplit_once(':') else {
                continue;
            };
            let _ = rest;
            let granted: Vec<String> = wanted
                .split(',')
                .filter(|action| match kind {
                    "registry" => catalog && name == "catalog",
                    _ => actions
                        .iter()
                        .any(|allowed| allowed == "*" || allowed == action),
                })
                .map(String::from)
                .collect();
            access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
        }
        let token = mint_token(keys, &policy.issuer, &subject, access, policy.expires_in);
        let issued_at = chrono::Utc::now().to_rfc3339();
        Reply::json(
            200,
            &serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": policy.expires_in,
                "issued_at": issued_at,
            })
            .to_string(),
        )
    };
    (seen, reply)
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("decoding PEM base64")
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn mint_token(
    keys: &TokenKeys,
    issuer: &str,
    subject: &str,
    access: Vec<serde_json::Value>,
    expires_in: u64,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&keys.cert_der)],
    });
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": TOKEN_SERVICE,
        "sub": subject,
        "exp": now + expires_in,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": unique_token(),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let mut signature = vec![0u8; keys.key_pair.public().modulus_len()];
    keys.key_pair
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &rng,
            signing_input.as_bytes(),
            &mut signature,
        )
        .expect("signing a token");
    format!("{signing_input}.{}", base64url(&signature))
}
