//! A real docker-registry per test: [`TestRegistry::start`] writes a config in
//! a temp dir, runs `/usr/bin/docker-registry serve CONFIG` on a free
//! 127.0.0.1 port with its own storage (delete enabled unless
//! `Options::delete_disabled`), waits for `/v2/`, and
//! kills the process on Drop (also when the test panics). Auth is anonymous,
//! htpasswd (Basic), or token auth against [`TokenServer`] (`token.rs`), a
//! token server of ours minting RS256 JWTs with an `x5c` header. Image
//! helpers push through the HTTP API (blob upload + manifest PUT) with unique
//! content per call. The stand-in registries ([`ScriptedServer`],
//! [`DigestStrippingProxy`], `scripted.rs`) are re-exported here beside it.
//!
//! Nothing here touches the product's code except [`TestRegistry::client_config`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::Digest as _;

/// The request type under its name from before the one stand-in server,
/// for stand-ins written against that name.
pub use crate::http::Request as SeenRequest;
pub use crate::http::{Reply, Request};
pub use crate::scripted::{DigestStrippingProxy, ScriptedServer};
pub use crate::token::{TokenPolicy, TokenRequest, TokenServer, TOKEN_ISSUER, TOKEN_SERVICE};

/// The registry binary (Debian package `docker-registry`).
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// How the registry authenticates clients.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// No auth at all.
    #[default]
    Anonymous,
    /// `auth.htpasswd` with one bcrypt user (Basic challenges).
    Htpasswd {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `auth.token` against a [`TokenServer`] started with the registry.
    Token(TokenPolicy),
}

impl Auth {
    /// htpasswd auth with one user.
    pub fn htpasswd(username: &str, password: &str) -> Auth {
        Auth::Htpasswd {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Token auth where `username`/`password` get every action everywhere.
    pub fn token(username: &str, password: &str) -> Auth {
        Auth::Token(TokenPolicy::full(username, password))
    }
}

/// What the token server grants to whom.
/// A notifications endpoint for the registry.
#[derive(Clone, Debug)]
pub struct Notifications {
    /// Where events are POSTed, e.g. `http://127.0.0.1:PORT/v2/webhooks/events`.
    pub url: String,
    /// The `Authorization` header value sent with each POST, if any.
    pub authorization: Option<String>,
}

/// How to start a [`TestRegistry`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Authentication mode.
    pub auth: Auth,
    /// Optional notifications endpoint (`includereferences: true`, 1 s
    /// timeout, threshold 3, 1 s backoff).
    pub notifications: Option<Notifications>,
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a test CA
    /// (see [`TestRegistry::ca_file`]); the helpers skip verification.
    pub tls: bool,
    /// Start with `storage.delete.enabled: false`: manifest DELETEs are
    /// refused (405, `UNSUPPORTED`).
    pub delete_disabled: bool,
}

/// A pushed image manifest (Docker schema 2 or OCI).
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// Repository name.
    pub repository: String,
    /// Tag it was pushed under (None when pushed by digest only).
    pub tag: Option<String>,
    /// `sha256:...` of the manifest bytes.
    pub digest: String,
    /// Media type of the manifest.
    pub media_type: String,
    /// The manifest bytes as pushed.
    pub manifest: Vec<u8>,
    /// Config digest (`sha256:...`).
    pub config_digest: String,
    /// Config digest without `sha256:`.
    pub image_id: String,
    /// Config size + layer sizes.
    pub size: i64,
    /// Layers, base first: (digest, size).
    pub layers: Vec<(String, i64)>,
}

/// A pushed OCI index with two platforms.
#[derive(Clone, Debug)]
pub struct PushedIndex {
    /// Repository name.
    pub repository: String,
    /// Tag it was pushed under.
    pub tag: String,
    /// `sha256:...` of the index bytes.
    pub digest: String,
    /// The index bytes as pushed.
    pub manifest: Vec<u8>,
    /// The children, in index order: (os, architecture, image).
    pub children: Vec<(String, String, PushedImage)>,
}

/// A running docker-registry, killed on Drop.
pub struct TestRegistry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// The token server, in token mode.
    pub token_server: Option<TokenServer>,
    auth: Auth,
    tls: bool,
    child: Child,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn anonymous() -> TestRegistry {
        TestRegistry::start(Options::default())
    }

    /// Starts a registry; panics with its log if it does not come up.
    pub fn start(options: Options) -> TestRegistry {
        let dir = tempfile::tempdir().expect("creating the registry's temp dir");
        let token_server = match &options.auth {
            Auth::Token(policy) => Some(TokenServer::start(dir.path(), policy.clone())),
            _ => None,
        };
        if let Auth::Htpasswd { username, password } = &options.auth {
            write_htpasswd(&dir.path().join("htpasswd"), username, password, "-Bbc");
        }
        if options.tls {
            make_tls_certificates(dir.path());
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(options.tls)
                    .build(),
            )
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .build()
            .into();
        // A port picked by binding :0 can be taken again before the registry
        // binds it; start again on a fresh port when that happens.
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        for _attempt in 0..3 {
            let port = free_port();
            let config = registry_config(dir.path(), port, &options, token_server.as_ref());
            std::fs::write(&config_path, config).expect("writing the registry config");
            let log = std::fs::File::create(&log_path).expect("creating the registry log");
            let mut child = Command::new(REGISTRY_BINARY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cloning the log handle"))
                .stderr(log)
                .spawn()
                .expect("starting docker-registry (apt-get install docker-registry)");
            let url = format!(
                "{}://127.0.0.1:{port}",
                if options.tls { "https" } else { "http" }
            );
            if wait_ready(&mut child, &agent, &url) {
                return TestRegistry {
                    url,
                    port,
                    token_server,
                    auth: options.auth.clone(),
                    tls: options.tls,
                    child,
                    agent,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("docker-registry did not start; its log:\n{log}");
    }

    /// The registry's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The temp dir holding config, storage, htpasswd and token keys.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The storage root (`storage.filesystem.rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The CA certificate (PEM) that signed the registry's certificate, with `tls`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.crt"))
    }

    /// A `[registry]` configuration for the product pointing here, with the
    /// credentials of the auth mode, the test CA as `ca_file` with `tls`, a
    /// 10 s timeout, concurrency 4, pages of 100; with token auth the token
    /// server's origin in `token_realms`, with htpasswd the credentials
    /// shared with scanners.
    pub fn client_config(&self) -> regkeeper::config::RegistryConfig {
        let (username, password) = match &self.auth {
            Auth::Anonymous => (None, None),
            Auth::Htpasswd { username, password } => {
                (Some(username.clone()), Some(password.clone()))
            }
            Auth::Token(policy) => (Some(policy.username.clone()), Some(policy.password.clone())),
        };
        regkeeper::config::RegistryConfig {
            url: url::Url::parse(&self.url).expect("the registry url parses"),
            username,
            password,
            ca_file: self.ca_file(),
            insecure_skip_tls_verify: false,
            timeout: Duration::from_secs(10),
            concurrency: 4,
            catalog_page_size: 100,
            token_realms: self
                .token_server
                .as_ref()
                .map(|server| {
                    let realm = url::Url::parse(&server.realm()).expect("the realm parses");
                    regkeeper::config::TokenRealm::Origin(realm.origin().ascii_serialization())
                })
                .into_iter()
                .collect(),
            scanner_username: None,
            scanner_password: None,
            share_password_with_scanners: matches!(self.auth, Auth::Htpasswd { .. }),
        }
    }

    /// The `Authorization` value the helpers use for `repository` (all actions).
    fn authorization(&self, repository: Option<&str>) -> Option<String> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Htpasswd { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Auth::Token(policy) => {
                let server = self.token_server.as_ref()?;
                let mut access = vec![
                    serde_json::json!({"type": "registry", "name": "catalog", "actions": ["*"]}),
                ];
                if let Some(repository) = repository {
                    access.push(serde_json::json!({
                        "type": "repository", "name": repository, "actions": ["pull", "push", "delete"]
                    }));
                }
                Some(format!(
                    "Bearer {}",
                    server.mint(&policy.username, access, 300)
                ))
            }
        }
    }

    fn send(
        &self,
        method: &str,
        path_or_url: &str,
        repository: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.url)
        };
        let authorization = self.authorization(repository);
        let result = match method {
            "GET" | "HEAD" | "DELETE" => {
                let mut request = match method {
                    "GET" => self.agent.get(&url),
                    "HEAD" => self.agent.head(&url),
                    _ => self.agent.delete(&url),
                };
                if let Some(value) = &authorization {
                    request = request.header("Authorization", value);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            _ => {
                let mut request = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(value) = &authorization {
                    request = request.header("Authorization", value);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body.unwrap_or(&[]))
            }
        };
        let mut response = result.unwrap_or_else(|error| panic!("{method} {url}: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap_or_default()
        };
        (status, headers, body)
    }

    /// Uploads a blob (POST + monolithic PUT) and returns its digest.
    pub fn upload_blob(&self, repository: &str, content: &[u8]) -> String {
        let digest = sha256_digest(content);
        let (status, headers, body) = self.send(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            Some(repository),
            &[],
            None,
        );
        assert_eq!(
            status,
            202,
            "starting a blob upload to {repository}: {}",
            String::from_utf8_lossy(&body)
        );
        let location = header(&headers, "Location").expect("upload Location");
        let separator = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{separator}digest={digest}");
        let (status, _, body) = self.send(
            "PUT",
            &put_url,
            Some(repository),
            &[("Content-Type", "application/octet-stream")],
            Some(content),
        );
        assert_eq!(
            status,
            201,
            "finishing a blob upload to {repository}: {}",
            String::from_utf8_lossy(&body)
        );
        digest
    }

    /// PUTs manifest bytes under a tag or digest; returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> String {
        let (status, headers, body) = self.send(
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            Some(repository),
            &[("Content-Type", media_type)],
            Some(manifest),
        );
        assert_eq!(
            status,
            201,
            "putting manifest {repository}:{reference}: {}",
            String::from_utf8_lossy(&body)
        );
        header(&headers, "Docker-Content-Digest").unwrap_or_else(|| sha256_digest(manifest))
    }

    /// Pushes a Docker schema-2 image with unique content (2 layers) under `tag`.
    pub fn push_image(&self, repository: &str, tag: &str) -> PushedImage {
        self.push_image_manifest(repository, Some(tag), DOCKER_MANIFEST, "amd64")
    }

    /// Pushes an OCI image manifest with unique content (2 layers) under `tag`.
    pub fn push_oci_image(&self, repository: &str, tag: &str) -> PushedImage {
        self.push_image_manifest(repository, Some(tag), OCI_MANIFEST, "amd64")
    }

    /// Pushes an image manifest of `media_type` (Docker schema 2 or OCI) for
    /// `architecture`, under `tag` or by digest only.
    pub fn push_image_manifest(
        &self,
        repository: &str,
        tag: Option<&str>,
        media_type: &str,
        architecture: &str,
    ) -> PushedImage {
        let unique = unique_token();
        let (config_type, layer_type) = if media_type == OCI_MANIFEST {
            (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        };
        let layers: Vec<Vec<u8>> = (0..2)
            .map(|index| {
                format!(
                    "layer {index} of {repository} {unique} {}",
                    "x".repeat(100 * (index + 1))
                )
                .into_bytes()
            })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|layer| sha256_digest(layer)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Labels": {"regkeeper.test.unique": unique}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "regkeeper test support"}],
        }))
        .expect("serializing a config");
        let config_digest = self.upload_blob(repository, &config);
        let mut layer_descriptors = Vec::new();
        let mut layer_list = Vec::new();
        for layer in &layers {
            let digest = self.upload_blob(repository, layer);
            layer_descriptors.push(
                serde_json::json!({"mediaType": layer_type, "size": layer.len(), "digest": digest}),
            );
            layer_list.push((digest, layer.len() as i64));
        }
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": layer_descriptors,
        }))
        .expect("serializing a manifest");
        let digest = sha256_digest(&manifest);
        let reported = self.put_manifest(repository, tag.unwrap_or(&digest), media_type, &manifest);
        assert_eq!(reported, digest, "registry digest of {repository}");
        let size = config.len() as i64 + layer_list.iter().map(|(_, size)| size).sum::<i64>();
        PushedImage {
            repository: repository.into(),
            tag: tag.map(String::from),
            digest,
            media_type: media_type.into(),
            manifest,
            image_id: config_digest.trim_start_matches("sha256:").to_string(),
            config_digest,
            size,
            layers: layer_list,
        }
    }

    /// Pushes an OCI index (or a Docker manifest list when `media_type` is
    /// [`DOCKER_MANIFEST_LIST`]) with linux/amd64 and linux/arm64 children.
    pub fn push_index_of(&self, repository: &str, tag: &str, media_type: &str) -> PushedIndex {
        let child_type = if media_type == OCI_INDEX {
            OCI_MANIFEST
        } else {
            DOCKER_MANIFEST
        };
        let mut children = Vec::new();
        let mut entries = Vec::new();
        for architecture in ["amd64", "arm64"] {
            let image = self.push_image_manifest(repository, None, child_type, architecture);
            let mut platform = serde_json::json!({"architecture": architecture, "os": "linux"});
            if architecture == "arm64" {
                platform["variant"] = "v8".into();
            }
            entries.push(serde_json::json!({
                "mediaType": child_type,
                "size": image.manifest.len(),
                "digest": image.digest,
                "platform": platform,
            }));
            children.push(("linux".to_string(), architecture.to_string(), image));
        }
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": entries,
        }))
        .expect("serializing an index");
        let digest = self.put_manifest(repository, tag, media_type, &manifest);
        assert_eq!(digest, sha256_digest(&manifest));
        PushedIndex {
            repository: repository.into(),
            tag: tag.into(),
            digest,
            manifest,
            children,
        }
    }

    /// Pushes an OCI index with linux/amd64 and linux/arm64 children.
    pub fn push_oci_index(&self, repository: &str, tag: &str) -> PushedIndex {
        self.push_index_of(repository, tag, OCI_INDEX)
    }

    /// Puts the manifest at `reference` under another tag too (two tags, one digest).
    pub fn tag(&self, repository: &str, reference: &str, new_tag: &str) -> String {
        let (status, headers, body) = self.send(
            "GET",
            &format!("/v2/{repository}/manifests/{reference}"),
            Some(repository),
            &[("Accept", ACCEPT_ALL)],
            None,
        );
        assert_eq!(status, 200, "getting manifest {repository}:{reference}");
        let media_type = header(&headers, "Content-Type").expect("manifest Content-Type");
        self.put_manifest(repository, new_tag, &media_type, &body)
    }

    /// Deletes a manifest by digest; returns the status (202 when deleted).
    pub fn delete(&self, repository: &str, digest: &str) -> u16 {
        self.send(
            "DELETE",
            &format!("/v2/{repository}/manifests/{digest}"),
            Some(repository),
            &[],
            None,
        )
        .0
    }

    /// Deletes every tagged manifest of `repository`, so its tags list becomes `null`.
    pub fn empty_repository(&self, repository: &str) {
        let (status, _, body) = self.send(
            "GET",
            &format!("/v2/{repository}/tags/list"),
            Some(repository),
            &[],
            None,
        );
        assert_eq!(status, 200, "listing tags of {repository}");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("tags list json");
        let tags: Vec<String> = value["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|tag| tag.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for tag in tags {
            let (status, headers, _) = self.send(
                "HEAD",
                &format!("/v2/{repository}/manifests/{tag}"),
                Some(repository),
                &[("Accept", ACCEPT_ALL)],
                None,
            );
            if status != 200 {
                continue;
            }
            if let Some(digest) = header(&headers, "Docker-Content-Digest") {
                self.delete(repository, &digest);
            }
        }
    }

    /// Adds another htpasswd user (bcrypt) and restarts the registry, which
    /// reads its htpasswd file at start.
    pub fn add_htpasswd_user(&mut self, username: &str, password: &str) {
        write_htpasswd(&self.dir.path().join("htpasswd"), username, password, "-Bb");
        self.restart();
    }

    /// Stops the registry process; storage and config stay, so
    /// [`TestRegistry::restart`] brings the same registry back (a registry
    /// that is down meanwhile).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again on the same port with the same storage;
    /// panics with its log if it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("opening the registry log");
        self.child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("restarting docker-registry");
        if !wait_ready(&mut self.child, &self.agent, &self.url) {
            panic!("docker-registry did not restart; its log:\n{}", self.log());
        }
    }

    /// Writes `tags` into each of `repositories` straight into the storage
    /// (no HTTP; the registry serves them at once): one shared config and
    /// layer, and a distinct tiny OCI manifest per repository and tag.
    /// Returns the manifest digests, repository-major. For large registries
    /// in benchmarks; tests push through the API.
    pub fn write_images_on_disk(&self, repositories: &[String], tags: &[String]) -> Vec<String> {
        let root = self.storage_dir().join("docker/registry/v2");
        let write_blob = |content: &[u8]| -> String {
            let digest = sha256_digest(content);
            let hex = &digest["sha256:".len()..];
            let dir = root.join("blobs/sha256").join(&hex[..2]).join(hex);
            std::fs::create_dir_all(&dir).expect("creating a blob dir");
            std::fs::write(dir.join("data"), content).expect("writing a blob");
            digest
        };
        let write_link = |path: PathBuf, digest: &str| {
            std::fs::create_dir_all(&path).expect("creating a link dir");
            std::fs::write(path.join("link"), digest).expect("writing a link");
        };
        let unique = unique_token();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"regkeeper.test.unique": unique}},
        }))
        .expect("serializing a config");
        let layer = format!("shared layer {unique}").into_bytes();
        let config_digest = write_blob(&config);
        let layer_digest = write_blob(&layer);
        let mut digests = Vec::with_capacity(repositories.len() * tags.len());
        for repository in repositories {
            let repository_dir = root.join("repositories").join(repository);
            for blob in [&config_digest, &layer_digest] {
                write_link(
                    repository_dir
                        .join("_layers/sha256")
                        .join(&blob["sha256:".len()..]),
                    blob,
                );
            }
            for tag in tags {
                let manifest = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": layer_digest}],
                    "annotations": {"org.opencontainers.image.ref.name": format!("{repository}:{tag}")},
                }))
                .expect("serializing a manifest");
                let digest = write_blob(&manifest);
                let hex = &digest["sha256:".len()..];
                write_link(
                    repository_dir.join("_manifests/revisions/sha256").join(hex),
                    &digest,
                );
                let tag_dir = repository_dir.join("_manifests/tags").join(tag);
                write_link(tag_dir.join("current"), &digest);
                write_link(tag_dir.join("index/sha256").join(hex), &digest);
                digests.push(digest);
            }
        }
        digests
    }

    /// Makes `repository` unreadable while it stays in the catalog: its
    /// `_manifests/tags` directory is replaced by a file, so listing its tags
    /// and resolving its tags fail with a 500 (tests run as root, where
    /// chmod does not deny reads).
    pub fn break_repository(&self, repository: &str) {
        let tags = self
            .storage_dir()
            .join("docker/registry/v2/repositories")
            .join(repository)
            .join("_manifests/tags");
        std::fs::remove_dir_all(&tags).expect("removing the tags dir of the broken repository");
        std::fs::write(&tags, b"not a directory")
            .expect("writing garbage in place of the tags dir");
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/v2/` until it answers as a registry, with a generous deadline;
/// false when the process exits first or the deadline passes.
fn wait_ready(child: &mut Child, agent: &ureq::Agent, url: &str) -> bool {
    crate::wait::poll(crate::DEADLINE, || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(false);
        }
        let answered = agent
            .get(&format!("{url}/v2/"))
            .call()
            .is_ok_and(|response| {
                response
                    .headers()
                    .contains_key("Docker-Distribution-Api-Version")
            });
        answered.then_some(true)
    })
    .unwrap_or(false)
}

/// Runs the openssl CLI with `arguments` in `dir`; panics with its stderr
/// when it fails.
pub fn openssl(dir: &Path, arguments: &[&str]) {
    let output = Command::new("openssl")
        .args(arguments)
        .current_dir(dir)
        .output()
        .expect("running openssl (apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `ca.crt`/`ca.key` (a test CA) and `tls.crt`/`tls.key` (a
/// certificate for IP 127.0.0.1 signed by it) into `dir` with the openssl CLI.
fn make_tls_certificates(dir: &Path) {
    let run = |arguments: &[&str]| openssl(dir, arguments);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=regkeeper-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        "tls.key",
        "-out",
        "tls.crt",
    ]);
}

fn registry_config(
    dir: &Path,
    port: u16,
    options: &Options,
    token_server: Option<&TokenServer>,
) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: {delete}\n  cache:\n    blobdescriptor: inmemory\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: regkeeper-test-{unique}\n{tls}\
         health:\n  storagedriver:\n    enabled: false\n",
        data = dir.join("data").display(),
        delete = !options.delete_disabled,
        unique = unique_token(),
        tls = if options.tls {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("tls.crt").display(),
                dir.join("tls.key").display()
            )
        } else {
            String::new()
        },
    );
    match &options.auth {
        Auth::Anonymous => {}
        Auth::Htpasswd { .. } => {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: regkeeper-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        Auth::Token(_) => {
            let server = token_server.expect("token server in token mode");
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {bundle}\n",
                realm = server.realm(),
                service = TOKEN_SERVICE,
                issuer = TOKEN_ISSUER,
                bundle = server.cert_path.display(),
            ));
        }
    }
    if let Some(notifications) = &options.notifications {
        config.push_str(&format!(
            "notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: regkeeper\n      url: {}\n",
            notifications.url
        ));
        if let Some(authorization) = &notifications.authorization {
            config.push_str(&format!(
                "      headers:\n        Authorization: [{}]\n",
                serde_json::to_string(authorization).expect("quoting a header")
            ));
        }
        config.push_str("      timeout: 1s\n      threshold: 3\n      backoff: 1s\n");
    }
    config
}

/// Runs `htpasswd FLAGS FILE USER PASSWORD` (`-Bbc` creates the file).
fn write_htpasswd(file: &Path, username: &str, password: &str, flags: &str) {
    let status = Command::new("htpasswd")
        .arg(flags)
        .arg(file)
        .arg(username)
        .arg(password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running htpasswd (apt-get install apache2-utils)");
    assert!(status.success(), "htpasswd failed");
}

/// A free 127.0.0.1 port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding 127.0.0.1:0")
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A string unique to this process and call.
pub fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(String::from)
}
