//! The world of a handler test: a real registry, a store on one backend,
//! the registry client, and the handler and run context built on them;
//! the options, clock and scanner clients the tests share.

use std::sync::Arc;
use std::time::Duration;

use regkeeper::config::SecurityOptions;
use regkeeper::jobs::security::{Clock, RegistryImages, Security};
use regkeeper::jobs::{Cancel, JobContext, Outcome, RunOptions, Trigger};
use regkeeper::scanner::{self, Scanner, ScannerKind};
use regkeeper::store::{Store, TagWrite};
use regkeeper_test_support as support;
use support::registry::{Auth, Options, PushedImage, TestRegistry};
use support::scanners::ScannerServer;
use support::{Backend, TestStore};

use crate::{settings, T0};

/// A registry, a store and the client, for one test.
pub(crate) struct World {
    pub(crate) registry: TestRegistry,
    pub(crate) client: Arc<regkeeper::registry::Client>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry_id: i64,
    pub(crate) host: String,
    /// The store's database, kept while the store is used.
    _database: TestStore,
}

/// A world on `backend` with a registry authenticating with `auth`.
pub(crate) fn world(backend: Backend, auth: Auth) -> World {
    let registry = TestRegistry::start(Options {
        auth,
        ..Options::default()
    });
    let config = registry.client_config();
    world_from(backend, registry, &config)
}

/// A world on `backend` around `registry`, its client built from `config`.
pub(crate) fn world_from(
    backend: Backend,
    registry: TestRegistry,
    config: &regkeeper::config::RegistryConfig,
) -> World {
    let database = TestStore::new(backend);
    let store = database.shared();
    let client = Arc::new(regkeeper::registry::Client::new(config).unwrap());
    let host = format!("127.0.0.1:{}", registry.port);
    let registry_id = store.ensure_registry(&host).unwrap();
    World {
        registry,
        client,
        store,
        registry_id,
        host,
        _database: database,
    }
}

impl World {
    /// Records a tag as the events or sync job would.
    pub(crate) fn record(&self, repository: &str, tag: &str, digest: &str) {
        self.store
            .upsert_tag(
                self.registry_id,
                &TagWrite {
                    repository: repository.into(),
                    tag: tag.into(),
                    digest: digest.into(),
                    image_id: String::new(),
                    media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
                    size: None,
                    platforms: None,
                },
                T0,
            )
            .unwrap();
    }

    /// Pushes an image and records its tag.
    pub(crate) fn push(&self, repository: &str, tag: &str) -> PushedImage {
        let image = self.registry.push_image(repository, tag);
        self.record(repository, tag, &image.digest);
        image
    }

    pub(crate) fn handler(
        &self,
        scanners: Vec<Arc<dyn Scanner>>,
        options: SecurityOptions,
        clock: Clock,
    ) -> Security {
        Security::new(
            scanners,
            Arc::new(RegistryImages::new(self.client.clone())),
            options,
            self.host.clone(),
            clock,
        )
    }

    pub(crate) fn context(&self, claimant: &str) -> JobContext {
        JobContext {
            job_name: "security".into(),
            run_id: 1,
            trigger: Trigger::Once,
            claimant: claimant.into(),
            store: self.store.clone(),
            options: RunOptions::default(),
            cancel: Cancel::default(),
        }
    }

    pub(crate) fn state(
        &self,
        repository: &str,
        tag: &str,
    ) -> regkeeper::store::ImageVulnerabilities {
        self.store
            .image_vulnerabilities(self.registry_id, repository, tag)
            .unwrap()
            .expect("the tag exists")
    }

    pub(crate) fn names(&self, repository: &str, tag: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .state(repository, tag)
            .vulnerabilities
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        names
    }
}

/// A clock standing still at `now`.
pub(crate) fn at(now: i64) -> Clock {
    Arc::new(move || now)
}

/// The job's options of most tests: a day to rescan, two scans at once,
/// three attempts, a half-hour lease.
pub(crate) fn options() -> SecurityOptions {
    SecurityOptions {
        rescan_after: Duration::from_secs(24 * 3600),
        concurrency: 2,
        max_attempts: 3,
        lease: Duration::from_secs(30 * 60),
    }
}

/// The run count `name` of `outcome` (0 when absent).
pub(crate) fn count(outcome: &Outcome, name: &str) -> i64 {
    outcome.counts.get(name).copied().unwrap_or(0)
}

/// A Clair v2 client of the stand-in `server`, answering within 10 s.
pub(crate) fn clair_of(server: &ScannerServer) -> Arc<dyn Scanner> {
    scanner::build(
        ScannerKind::Clair,
        &settings("clair", &server.url(), Duration::from_secs(10)),
    )
    .unwrap()
}

/// A client of the adapter stand-in `server`, answering within `timeout`.
pub(crate) fn adapter_of(server: &ScannerServer, timeout: Duration) -> Arc<dyn Scanner> {
    scanner::build(
        ScannerKind::Adapter,
        &settings("adapter", &server.url(), timeout),
    )
    .unwrap()
}
