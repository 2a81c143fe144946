//! Manifests only a hostile or broken registry serves, from a stand-in
//! registry of ours: a layer digest outside the digest grammar fails the
//! scan of that image with an error naming it and the digest, never goes
//! into a blob URL or a scanner's path, and the pass goes on with the
//! other images.

use std::sync::Arc;

use regkeeper::jobs::security::{RegistryImages, Security};
use regkeeper::jobs::{Cancel, Handler, JobContext, RunOptions, Trigger};
use regkeeper::store::{ScanState, TagWrite};
use regkeeper_test_support as support;
use support::registry::{sha256_digest, Reply, ScriptedServer};
use support::scanners::{Api, ScannerServer};
use support::{Backend, TestStore};

use crate::world::{at, clair_of, count, options};
use crate::T0;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn manifest(layer_digest: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:{config}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"{layer_digest}"}}]}}"#,
        config = "c".repeat(64)
    )
}

#[test]
fn a_manifest_naming_a_bad_layer_digest_fails_that_image_only() {
    let bad_layer = "sha256:../../../admin/secret";
    let bad = manifest(bad_layer);
    let good = manifest(&format!("sha256:{}", "b".repeat(64)));
    let bad_digest = sha256_digest(bad.as_bytes());
    let good_digest = sha256_digest(good.as_bytes());
    let bodies = [
        (bad_digest.clone(), bad.clone()),
        (good_digest.clone(), good.clone()),
    ];
    let registry = ScriptedServer::with_handler(move |_, request| {
        for (digest, body) in &bodies {
            if request.path() == format!("/v2/ns/app/manifests/{digest}") {
                return Reply::new(200, body.as_bytes())
                    .header("Content-Type", DOCKER_MANIFEST)
                    .header("Docker-Content-Digest", digest)
                    .header("Docker-Distribution-Api-Version", "registry/2.0");
            }
        }
        Reply::json(200, "{}").header("Docker-Distribution-Api-Version", "registry/2.0")
    });
    let client = Arc::new(regkeeper::registry::Client::new(&registry.client_config()).unwrap());
    let database = TestStore::new(Backend::Sqlite);
    let store = database.shared();
    let host = url::Url::parse(&registry.url)
        .map(|url| regkeeper::jobs::registry_hostname(&url))
        .unwrap();
    let registry_id = store.ensure_registry(&host).unwrap();
    for (tag, digest) in [("bad", &bad_digest), ("good", &good_digest)] {
        store
            .upsert_tag(
                registry_id,
                &TagWrite {
                    repository: "ns/app".into(),
                    tag: tag.into(),
                    digest: digest.clone(),
                    image_id: String::new(),
                    media_type: DOCKER_MANIFEST.into(),
                    size: None,
                    platforms: None,
                },
                T0,
            )
            .unwrap();
    }
    let scanner = ScannerServer::start(Api::Clair);
    let handler = Security::new(
        vec![clair_of(&scanner)],
        Arc::new(RegistryImages::new(client)),
        options(),
        host,
        at(T0),
    );
    let context = JobContext {
        job_name: "security".into(),
        run_id: 1,
        trigger: Trigger::Once,
        claimant: "d".into(),
        store: store.clone(),
        options: RunOptions::default(),
        cancel: Cancel::default(),
    };
    let outcome = handler.run(&context).expect("the pass goes on");
    assert_eq!(count(&outcome, "scanned"), 1, "{outcome:?}");
    assert_eq!(count(&outcome, "scanner_failures"), 1, "{outcome:?}");
    let state = store
        .image_vulnerabilities(registry_id, "ns/app", "bad")
        .unwrap()
        .expect("the tag exists");
    let error = state.reports[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("image ns/app@{bad_digest}"))
            && error.contains(&format!("{bad_layer:?}"))
            && error.contains("not a valid digest"),
        "{error}"
    );
    let good_state = store
        .image_vulnerabilities(registry_id, "ns/app", "good")
        .unwrap()
        .expect("the tag exists");
    assert_eq!(good_state.state.scanned, ScanState::Done);
    // The bad digest reached neither the scanner nor the registry as a path.
    for request in scanner.requests() {
        assert!(!request.text().contains("admin"), "{}", request.text());
        assert!(!request.target.contains("admin"), "{}", request.target);
    }
    for request in registry.requests() {
        assert!(!request.target.contains("admin"), "{}", request.target);
    }
}
