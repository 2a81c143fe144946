//! The events job end to end: a real docker-registry whose notifications
//! point at the daemon's intake (with a token), the real binary, SQLite and
//! PostgreSQL. Leases, retries and failures are driven with stored events,
//! a registry that goes away, and a registry stand-in that stalls.

use regkeeper_test_support as support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regkeeper::store::sql::SqlStore;
use regkeeper::store::{NewEvent, ScanState, Store, TagRecord, Value};
use support::cli::run_binary_with_env;
use support::daemon::Daemon;
use support::registry::{
    free_port, DigestStrippingProxy, Notifications, Options, PushedImage, Reply, ScriptedServer,
    TestRegistry, DOCKER_MANIFEST, OCI_MANIFEST,
};
use support::{wait_until, Backend, TestStore};

const TOKEN: &str = "Token events-test-token";
/// A test's world: temp dir (configs, logs, the token file) and the
/// daemon's database.
struct World {
    dir: tempfile::TempDir,
    database: TestStore,
}

#[derive(Clone)]
struct Setup {
    registry_url: String,
    listen: Option<u16>,
    schedule: &'static str,
    events_keys: &'static str,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            registry_url: String::new(),
            listen: None,
            schedule: "*/2 * * * * *",
            events_keys: "",
        }
    }
}

impl World {
    fn new(backend: Backend) -> World {
        World {
            dir: tempfile::tempdir().expect("temp dir"),
            database: TestStore::new(backend),
        }
    }

    fn sqlite() -> World {
        World::new(Backend::Sqlite)
    }

    /// The daemon's database, for the test's own reads and writes.
    fn store(&self) -> &SqlStore {
        &self.database
    }

    /// Writes schedules.toml and the token file; returns the config path.
    fn config(&self, name: &str, setup: &Setup) -> PathBuf {
        let token_file = self.dir.path().join("notify-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("writing the token file");
        let listen = setup
            .listen
            .map_or(String::new(), |port| format!("127.0.0.1:{port}"));
        let config = format!(
            "[database]\nurl = \"{database}\"\n\n\
             [registry]\nurl = \"{registry}\"\ntimeout = \"60s\"\n\n\
             [notifications]\nlisten = \"{listen}\"\ntoken_file = \"{token_file}\"\n\n\
             [daemon]\ngrace_period = \"5s\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"{schedule}\"\n{keys}\n",
            database = self.database.url(),
            registry = setup.registry_url,
            token_file = token_file.display(),
            schedule = setup.schedule,
            keys = setup.events_keys,
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("writing the config");
        path
    }

    fn start(&self, name: &str, setup: &Setup) -> Daemon {
        Daemon::start(&self.config(name, setup))
    }

    fn once(&self, name: &str, setup: &Setup, extra: &[&str]) -> (i32, String) {
        let config = self.config(name, setup);
        let config = config.to_str().expect("a utf-8 temp path");
        let mut args = vec!["--config", config, "--once", "registry-events"];
        args.extend(extra);
        let output = run_binary_with_env(self.dir.path(), &args, &[("RUST_LOG", "info")]);
        (
            output.code.unwrap_or(-1),
            format!("{}{}", output.stdout, output.stderr),
        )
    }
}

/// One `registry_events` row.
#[derive(Debug, Clone)]
struct EventRow {
    event_id: String,
    status: i64,
    action: String,
    repository: String,
    attempts: i64,
    last_error: Option<String>,
    claimant: Option<String>,
    data: String,
}

fn events(store: &SqlStore) -> Vec<EventRow> {
    let rows = store
        .tx(|conn| {
            conn.query(
                "SELECT event_id, status, action, repository, attempts, last_error, claimant, data \
                 FROM registry_events ORDER BY id",
                &[],
            )
        })
        .expect("reading events");
    rows.iter()
        .map(|row| EventRow {
            event_id: as_text(&row[0]),
            status: as_int(&row[1]),
            action: as_text(&row[2]),
            repository: as_text(&row[3]),
            attempts: as_int(&row[4]),
            last_error: as_opt_text(&row[5]),
            claimant: as_opt_text(&row[6]),
            data: as_text(&row[7]),
        })
        .collect()
}

fn as_text(value: &Value) -> String {
    match value {
        Value::Text(text) => text.clone(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn as_opt_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        other => Some(as_text(other)),
    }
}

fn as_int(value: &Value) -> i64 {
    match value {
        Value::Int(number) => *number,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// Sums a count over every finished run of the events job.
fn run_counts(store: &SqlStore, name: &str) -> i64 {
    store
        .recent_runs("registry-events", 1000)
        .expect("reading runs")
        .iter()
        .filter_map(|run| run.counts.get(name))
        .sum()
}

/// Every tag of the registry the daemon writes to, by `repository:tag`.
fn tags(store: &SqlStore, registry: &str) -> BTreeMap<String, TagRecord> {
    let registry_id = store.ensure_registry(registry).expect("registry row");
    store
        .tags(registry_id, None)
        .expect("listing tags")
        .into_iter()
        .map(|tag| (format!("{}:{}", tag.repository, tag.tag), tag))
        .collect()
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// A push event as docker-registry sends it, without `references` (so the
/// job must fetch the manifest) unless `image` facts are given.
fn push_event(id: &str, image: &PushedImage, tag: &str, with_references: bool) -> NewEvent {
    let mut target = serde_json::json!({
        "mediaType": image.media_type,
        "size": image.manifest.len(),
        "digest": image.digest,
        "length": image.manifest.len(),
        "repository": image.repository,
        "tag": tag,
    });
    if with_references {
        let config_type = if image.media_type == OCI_MANIFEST {
            "application/vnd.oci.image.config.v1+json"
        } else {
            "application/vnd.docker.container.image.v1+json"
        };
        let config_size = image.size - image.layers.iter().map(|(_, size)| size).sum::<i64>();
        let mut references = vec![
            serde_json::json!({"mediaType": config_type, "size": config_size, "digest": image.config_digest}),
        ];
        for (digest, size) in &image.layers {
            references.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": size, "digest": digest}));
        }
        target["references"] = serde_json::Value::Array(references);
    }
    let data = serde_json::json!({
        "id": id,
        "timestamp": "2026-01-02T03:04:05.123456789Z",
        "action": "push",
        "target": target,
        "request": {"id": "r", "host": "127.0.0.1", "method": "PUT"},
        "actor": {},
    });
    NewEvent {
        event_id: id.to_string(),
        action: "push".into(),
        repository: image.repository.clone(),
        data: data.to_string(),
    }
}

fn raw_event(id: &str, repository: &str, data: &str) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        action: "push".into(),
        repository: repository.into(),
        data: data.into(),
    }
}

/// GETs a manifest by tag: the registry emits a pull event.
fn pull(registry: &TestRegistry, repository: &str, tag: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = agent
        .get(&format!("{}/v2/{repository}/manifests/{tag}", registry.url))
        .header("Accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
        .call()
        .expect("pulling a manifest");
    assert_eq!(response.status().as_u16(), 200);
}

fn registry_notifying(port: u16) -> TestRegistry {
    TestRegistry::start(Options {
        notifications: Some(Notifications {
            url: format!("http://127.0.0.1:{port}/v2/webhooks/events"),
            authorization: Some(TOKEN.to_string()),
        }),
        ..Options::default()
    })
}

#[test]
fn pushes_pulls_and_deletes_reach_the_database_through_notifications() {
    let world = World::sqlite();
    let port = free_port();
    let registry = registry_notifying(port);
    let setup = Setup {
        registry_url: registry.url.clone(),
        listen: Some(port),
        ..Setup::default()
    };
    let mut daemon = world.start("daemon", &setup);
    daemon.wait_for_intake(port);
    let store = world.store();
    let host = host_of(&registry.url);

    // OCI and schema 2, two tags on one digest, a nested name, an index.
    let oci = registry.push_oci_image("ns/app", "1.0");
    registry.tag("ns/app", "1.0", "stable");
    let schema2 = registry.push_image("plain", "latest");
    let nested = registry.push_oci_image("team/a/b", "v1");
    let index = registry.push_oci_index("ns/multi", "all");
    wait_until("every pushed tag is in the database", || {
        tags(store, &host).len() == 5
    });
    let all = tags(store, &host);
    for (key, image) in [
        ("ns/app:1.0", &oci),
        ("ns/app:stable", &oci),
        ("plain:latest", &schema2),
        ("team/a/b:v1", &nested),
    ] {
        let tag = &all[key];
        assert_eq!(tag.digest, image.digest, "{key}");
        assert_eq!(tag.image_id, image.image_id, "{key}");
        assert_eq!(tag.size, Some(image.size), "{key}");
        assert_eq!(tag.media_type, image.media_type, "{key}");
        assert_eq!(tag.scanned, ScanState::Unscanned, "{key}");
    }
    // The index's children were pushed by digest: no tag was made up for them.
    assert_eq!(all["ns/multi:all"].digest, index.digest);
    assert_eq!(all["ns/multi:all"].media_type, support::registry::OCI_INDEX);
    let repositories = store
        .repositories(store.ensure_registry(&host).expect("registry"))
        .expect("repositories");
    assert_eq!(repositories, ["ns/app", "ns/multi", "plain", "team/a/b"]);

    // A re-push with new content moves the tag and resets its scan state.
    store
        .tx(|conn| conn.execute("UPDATE tags SET scanned = 2", &[]))
        .expect("marking every tag scanned");
    let repushed = registry.push_oci_image("ns/app", "1.0");
    assert_ne!(repushed.digest, oci.digest);
    wait_until("the re-pushed tag has its new digest", || {
        tags(store, &host)["ns/app:1.0"].digest == repushed.digest
    });
    let all = tags(store, &host);
    assert_eq!(all["ns/app:1.0"].scanned, ScanState::Unscanned);
    assert_eq!(all["ns/app:1.0"].image_id, repushed.image_id);
    assert_eq!(
        all["ns/app:stable"].scanned,
        ScanState::Done,
        "the other tag keeps its scan"
    );

    // A pull sets pulled_at to the event's time.
    let before_pull = chrono::Utc::now().timestamp_millis() - 1000;
    pull(&registry, "plain", "latest");
    wait_until("the pull is recorded", || {
        tags(store, &host)["plain:latest"].pulled_at.is_some()
    });
    let pulled_at = tags(store, &host)["plain:latest"]
        .pulled_at
        .unwrap_or_default();
    assert!(pulled_at >= before_pull && pulled_at <= chrono::Utc::now().timestamp_millis() + 1000);

    // Delete by digest: the tags with that digest go; an emptied repository goes.
    assert_eq!(registry.delete("ns/app", &oci.digest), 202);
    wait_until("the tag of the deleted digest is gone", || {
        !tags(store, &host).contains_key("ns/app:stable")
    });
    assert!(tags(store, &host).contains_key("ns/app:1.0"));
    assert_eq!(registry.delete("ns/app", &repushed.digest), 202);
    assert_eq!(registry.delete("team/a/b", &nested.digest), 202);
    wait_until("the emptied repositories are gone", || {
        let repositories = store
            .repositories(store.ensure_registry(&host).expect("registry"))
            .expect("repositories");
        repositories == ["ns/multi", "plain"]
    });
    wait_until("every stored event is done", || {
        events(store).iter().all(|event| event.status == 0)
    });
    let stored = events(store);
    assert!(stored.iter().all(|event| event.action != "mount"));
    assert!(
        stored
            .iter()
            .all(|event| !event.data.contains("application/octet-stream")),
        "blob events were stored"
    );
    assert!(
        daemon.log().contains("intake listening"),
        "{}",
        daemon.log()
    );
}

#[test]
fn events_pushed_while_the_intake_is_down_arrive_once_when_it_is_up() {
    let world = World::sqlite();
    let port = free_port();
    let registry = registry_notifying(port);
    // Nothing listens yet: the registry keeps the events and retries.
    let images: Vec<PushedImage> = (0..3)
        .map(|index| registry.push_oci_image("ns/app", &format!("v{index}")))
        .collect();
    let setup = Setup {
        registry_url: registry.url.clone(),
        listen: Some(port),
        ..Setup::default()
    };
    let mut daemon = world.start("daemon", &setup);
    daemon.wait_for_intake(port);
    let store = world.store();
    let host = host_of(&registry.url);
    wait_until(
        "every tag pushed while the intake was down is in the database",
        || tags(store, &host).len() == 3,
    );
    wait_until("every stored event is done", || {
        let stored = events(store);
        !stored.is_empty() && stored.iter().all(|event| event.status == 0)
    });
    // Push one more while it is up, to see the queue drained in order.
    let late = registry.push_oci_image("ns/app", "late");
    wait_until("the late tag arrives", || {
        tags(store, &host).contains_key("ns/app:late")
    });
    let stored = events(store);
    for image in images.iter().chain(std::iter::once(&late)) {
        let tag = image.tag.clone().unwrap_or_default();
        let pushes = stored
            .iter()
            .filter(|event| {
                event.action == "push" && event.data.contains(&format!("\"tag\":\"{tag}\""))
            })
            .count();
        assert_eq!(pushes, 1, "push events of ns/app:{tag}");
        assert_eq!(
            tags(store, &host)[&format!("ns/app:{tag}")].digest,
            image.digest
        );
    }
}

/// A registry stand-in serving one manifest: the first manifest request
/// stalls (the daemon that made it is killed meanwhile), later ones answer.
fn stalling_registry(image: &PushedImage) -> ScriptedServer {
    let manifest = image.manifest.clone();
    let media_type = image.media_type.clone();
    let digest = image.digest.clone();
    let stalled = std::sync::atomic::AtomicBool::new(false);
    ScriptedServer::with_handler(move |_, request| {
        if !request.path().contains("/manifests/") {
            return Reply::json(200, "{}")
                .header("Docker-Distribution-Api-Version", "registry/2.0");
        }
        let reply = Reply {
            status: 200,
            headers: vec![
                ("Content-Type".into(), media_type.clone()),
                ("Docker-Content-Digest".into(), digest.clone()),
                (
                    "Docker-Distribution-Api-Version".into(),
                    "registry/2.0".into(),
                ),
            ],
            body: manifest.clone(),
            delay: Duration::ZERO,
        };
        if stalled.swap(true, std::sync::atomic::Ordering::SeqCst) {
            reply
        } else {
            reply.delayed(Duration::from_secs(600))
        }
    })
}

#[test]
fn a_daemon_killed_between_claim_and_completion_is_taken_over_after_the_lease() {
    let source = TestRegistry::anonymous();
    let image = source.push_oci_image("ns/app", "1.0");
    let stand_in = stalling_registry(&image);
    let world = World::sqlite();
    let store = world.store();
    store
        .insert_events(&[push_event("killed-1", &image, "1.0", false)], 1)
        .expect("storing the event");
    let setup = Setup {
        registry_url: stand_in.url.clone(),
        schedule: "* * * * * *",
        events_keys: "lease = \"3s\"\nbackoff = \"1s\"\n",
        ..Setup::default()
    };
    let mut first = world.start("first", &setup);
    wait_until(
        "the first daemon claimed the event and asks for its manifest",
        || events(store)[0].status == 1 && !stand_in.requests().is_empty(),
    );
    let first_claimant = events(store)[0].claimant.clone();
    first.kill();
    assert_eq!(
        events(store)[0].status,
        1,
        "the claim outlives the killed daemon"
    );

    let _second = world.start("second", &setup);
    let host = host_of(&stand_in.url);
    wait_until("the second daemon applied the event", || {
        events(store)[0].status == 0
    });
    let event = &events(store)[0];
    assert_ne!(
        event.claimant, first_claimant,
        "applied by the second daemon"
    );
    assert_eq!(event.attempts, 0);
    let all = tags(store, &host);
    assert_eq!(all["ns/app:1.0"].digest, image.digest);
    assert_eq!(all["ns/app:1.0"].image_id, image.image_id);
    assert_eq!(all["ns/app:1.0"].size, Some(image.size));
    assert_eq!(run_counts(store, "applied"), 1, "applied exactly once");
}

#[test]
fn a_restarted_daemon_takes_back_the_claims_of_its_killed_predecessor_at_once() {
    let source = TestRegistry::anonymous();
    let image = source.push_oci_image("ns/app", "1.0");
    let other = source.push_oci_image("ns/other", "1.0");
    let stand_in = stalling_registry(&image);
    let world = World::sqlite();
    let store = world.store();
    store
        .insert_events(&[push_event("killed-1", &image, "1.0", false)], 1)
        .expect("storing the event");
    // A lease far longer than the test: only knowing that the claimant's
    // process is gone can free the claim in time.
    let setup = Setup {
        registry_url: stand_in.url.clone(),
        schedule: "* * * * * *",
        events_keys: "lease = \"1h\"\nbackoff = \"1s\"\n",
        ..Setup::default()
    };
    let mut first = world.start("first", &setup);
    wait_until(
        "the first daemon claimed the event and asks for its manifest",
        || events(store)[0].status == 1 && !stand_in.requests().is_empty(),
    );
    let first_claimant = events(store)[0].claimant.clone();
    first.kill();
    // A claim of a daemon on another host is left to its lease.
    store
        .insert_events(&[push_event("elsewhere-1", &other, "1.0", true)], 1)
        .expect("storing an event");
    let claimed_elsewhere = store
        .claim_events(&regkeeper::store::EventClaim {
            claimant: "another-host:4242:0badcafe".into(),
            now: regkeeper::store::now_ms(),
            expired_before: regkeeper::store::now_ms() - 3_600_000,
            limit: 10,
        })
        .expect("claiming as another host");
    assert_eq!(claimed_elsewhere.len(), 1);

    let second = world.start("second", &setup);
    wait_until("the second daemon applied the event", || {
        events(store)[0].status == 0
    });
    let event = &events(store)[0];
    assert_ne!(
        event.claimant, first_claimant,
        "applied by the second daemon"
    );
    assert_eq!(event.attempts, 0);
    assert!(
        second.log().contains(&format!(
            "gave back 1 events and 0 tags claimed by {}",
            first_claimant.as_deref().unwrap_or_default()
        )),
        "{}",
        second.log()
    );
    let elsewhere = &events(store)[1];
    assert_eq!(
        elsewhere.status, 1,
        "another host's claim waits for its lease"
    );
    assert_eq!(
        elsewhere.claimant.as_deref(),
        Some("another-host:4242:0badcafe")
    );
    assert_eq!(run_counts(store, "applied"), 1, "applied exactly once");
}

#[test]
fn events_wait_for_a_registry_that_is_down_without_using_up_their_attempts() {
    let mut registry = TestRegistry::anonymous();
    let images: Vec<PushedImage> = (0..3)
        .map(|index| registry.push_image(&format!("ns/app{index}"), "1.0"))
        .collect();
    let world = World::sqlite();
    let store = world.store();
    let stored: Vec<NewEvent> = images
        .iter()
        .enumerate()
        .map(|(index, image)| push_event(&format!("down-{index}"), image, "1.0", false))
        .collect();
    store.insert_events(&stored, 1).expect("storing events");
    registry.stop();
    let setup = Setup {
        registry_url: registry.url.clone(),
        schedule: "* * * * * *",
        events_keys: "backoff = \"200ms\"\nmax_backoff = \"1s\"\nmax_attempts = 1000\n",
        ..Setup::default()
    };
    let _daemon = world.start("daemon", &setup);
    // The first run's three fetches fail and use an attempt each; by then
    // the client has seen enough failures to call the registry unreachable,
    // and from the next run on the events are put back without using one.
    wait_until("three runs found the registry unreachable", || {
        store
            .recent_runs("registry-events", 1000)
            .expect("reading runs")
            .iter()
            .filter(|run| {
                run.error
                    .as_deref()
                    .is_some_and(|error| error.starts_with("registry unreachable: "))
            })
            .count()
            >= 3
    });
    for event in events(store) {
        assert_ne!(event.status, 3, "failed during the outage: {event:?}");
        assert!(event.attempts <= 1, "an outage used up attempts: {event:?}");
    }
    registry.restart();
    let host = host_of(&registry.url);
    wait_until("every event applied once the registry is back", || {
        events(store).iter().all(|event| event.status == 0)
    });
    let all = tags(store, &host);
    for image in &images {
        assert_eq!(
            all[&format!("{}:1.0", image.repository)].digest,
            image.digest
        );
        assert_eq!(
            all[&format!("{}:1.0", image.repository)].size,
            Some(image.size)
        );
    }
    assert_eq!(run_counts(store, "failed"), 0);
}

#[test]
fn a_thousand_events_cost_nothing_when_the_registry_is_stopped() {
    let mut registry = TestRegistry::anonymous();
    let repositories: Vec<String> = (0..100).map(|n| format!("ns/app{n:03}")).collect();
    let tag_names: Vec<String> = (0..10).map(|n| format!("v{n}")).collect();
    let digests = registry.write_images_on_disk(&repositories, &tag_names);
    let world = World::sqlite();
    let store = world.store();
    let mut stored = Vec::new();
    for (index, digest) in digests.iter().enumerate() {
        let repository = &repositories[index / tag_names.len()];
        let tag = &tag_names[index % tag_names.len()];
        let id = format!("thousand-{index}");
        let data = serde_json::json!({
            "id": id, "timestamp": "2026-01-02T03:04:05Z", "action": "push",
            "target": {"mediaType": OCI_MANIFEST, "digest": digest, "repository": repository, "tag": tag},
        });
        stored.push(raw_event(&id, repository, &data.to_string()));
    }
    store.insert_events(&stored, 1).expect("storing events");
    registry.stop();
    let setup = Setup {
        registry_url: registry.url.clone(),
        events_keys: "batch_size = 500\n",
        ..Setup::default()
    };
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("registry unreachable"), "{output}");
    let all = events(store);
    assert_eq!(all.len(), 1000);
    let used: i64 = all.iter().map(|event| event.attempts).sum();
    // At most the few fetches that opened the breaker used an attempt.
    assert!(used <= 8, "the outage used {used} attempts: {output}");
    assert!(all.iter().all(|event| event.status != 3), "none failed");
    registry.restart();
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(
        events(store).iter().all(|event| event.status == 0),
        "{output}"
    );
    assert_eq!(tags(store, &host_of(&registry.url)).len(), 1000);
}

/// A push whose image was deleted in the registry before its event came up
/// (a late events job, a queue after an outage): the registry's word that
/// the manifest and the tag are gone undoes the push instead of failing the
/// event, and a tag re-pushed since keeps its newer image.
fn a_push_undone_in_the_registry_before_its_event_removes_the_tag(backend: Backend) {
    let world = World::new(backend);
    let registry = TestRegistry::anonymous();
    let store = world.store();
    let setup = Setup {
        registry_url: registry.url.clone(),
        ..Setup::default()
    };
    let host = host_of(&registry.url);
    // ns/app:1.0 is in the database at an older image.
    let older = registry.push_oci_image("ns/app", "1.0");
    store
        .insert_events(&[push_event("older", &older, "1.0", true)], 1)
        .expect("storing an event");
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(tags(store, &host)["ns/app:1.0"].digest, older.digest);

    // 1.0 is pushed again and that image deleted before the events job runs.
    let undone = registry.push_oci_image("ns/app", "1.0");
    assert_eq!(registry.delete("ns/app", &undone.digest), 202);
    // ns/app:2.0 is pushed, deleted, and pushed again at another image.
    let replaced = registry.push_image("ns/app", "2.0");
    assert_eq!(registry.delete("ns/app", &replaced.digest), 202);
    let current = registry.push_image("ns/app", "2.0");
    store
        .insert_events(
            &[
                push_event("undone", &undone, "1.0", false),
                push_event("replaced", &replaced, "2.0", false),
                push_event("current", &current, "2.0", false),
            ],
            2,
        )
        .expect("storing events");
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert!(
        events(store).iter().all(|event| event.status == 0),
        "{:?}",
        events(store)
    );
    assert_eq!(run_counts(store, "pushes_undone"), 2);
    let all = tags(store, &host);
    assert!(!all.contains_key("ns/app:1.0"), "{all:?}");
    assert_eq!(all["ns/app:2.0"].digest, current.digest);
}

fn a_malformed_stored_event_fails_while_the_others_apply(backend: Backend) {
    let world = World::new(backend);
    let registry = TestRegistry::anonymous();
    let first = registry.push_oci_image("ns/app", "1.0");
    let second = registry.push_image("ns/app", "2.0");
    let store = world.store();
    store
        .insert_events(
            &[
                raw_event("broken-json", "ns/app", "{not json"),
                raw_event(
                    "no-media-type",
                    "ns/app",
                    r#"{"id":"no-media-type","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"digest":"sha256:1","repository":"ns/app","tag":"x"}}"#,
                ),
                push_event("good-1", &first, "1.0", true),
                push_event("good-2", &second, "2.0", false),
            ],
            1,
        )
        .expect("storing events");

    let setup = Setup {
        registry_url: registry.url.clone(),
        ..Setup::default()
    };
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    let by_id: BTreeMap<String, EventRow> = events(store)
        .into_iter()
        .map(|event| (event.event_id.clone(), event))
        .collect();
    for id in ["broken-json", "no-media-type"] {
        assert_eq!(by_id[id].status, 3, "{id}: {:?}", by_id[id]);
        assert_eq!(by_id[id].attempts, 1, "{id}");
    }
    assert_eq!(by_id["broken-json"].repository, "ns/app");
    assert!(by_id["broken-json"]
        .last_error
        .clone()
        .unwrap_or_default()
        .contains("malformed stored event"));
    assert!(by_id["no-media-type"]
        .last_error
        .clone()
        .unwrap_or_default()
        .contains("mediaType"));
    assert_eq!(by_id["good-1"].status, 0);
    assert_eq!(by_id["good-2"].status, 0);
    let host = host_of(&registry.url);
    let all = tags(store, &host);
    assert_eq!(all["ns/app:1.0"].digest, first.digest);
    assert_eq!(all["ns/app:2.0"].digest, second.digest);
    assert_eq!(all["ns/app:2.0"].size, Some(second.size));
    assert!(!all.contains_key("ns/gone:1.0"));

    let config = world.config("once", &setup);
    let output = run_binary_with_env(
        world.dir.path(),
        &[
            "--config",
            config.to_str().expect("a utf-8 temp path"),
            "status",
        ],
        &[],
    );
    let (code, status) = (output.code.unwrap_or(-1), output.stdout);
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("broken-json"), "{status}");

    // Failed events stay failed until asked for.
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        events(store)
            .iter()
            .filter(|event| event.status == 3)
            .count(),
        2
    );
    let (code, output) = world.once("once", &setup, &["--retry-failed"]);
    assert_eq!(code, 0, "{output}");
    let after: Vec<EventRow> = events(store)
        .into_iter()
        .filter(|event| event.status == 3)
        .collect();
    assert_eq!(after.len(), 2, "they fail again");
    assert!(after.iter().all(|event| event.attempts == 1), "{after:?}");
}

#[test]
fn manifests_are_fetched_and_verified_through_a_proxy_that_drops_the_digest_header() {
    let registry = TestRegistry::anonymous();
    let docker = registry.push_image("ns/app", "1.0");
    let oci = registry.push_oci_image("ns/app", "2.0");
    let tampered = registry.push_oci_image("ns/other", "1.0");
    let proxy = DigestStrippingProxy::start(&registry.url);
    // The proxy serves another manifest for this digest.
    proxy.substitute(
        &format!("/v2/ns/other/manifests/{}", tampered.digest),
        &docker.manifest,
    );
    let world = World::sqlite();
    let store = world.store();
    store
        .insert_events(
            &[
                push_event("docker", &docker, "1.0", false),
                push_event("oci", &oci, "2.0", false),
                push_event("tampered", &tampered, "1.0", false),
            ],
            1,
        )
        .expect("storing events");
    let setup = Setup {
        registry_url: proxy.url().to_string(),
        ..Setup::default()
    };
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    let by_id: BTreeMap<String, EventRow> = events(store)
        .into_iter()
        .map(|event| (event.event_id.clone(), event))
        .collect();
    assert_eq!(by_id["docker"].status, 0, "{:?}", by_id["docker"]);
    assert_eq!(by_id["oci"].status, 0, "{:?}", by_id["oci"]);
    assert_eq!(by_id["tampered"].status, 3, "{:?}", by_id["tampered"]);
    let error = by_id["tampered"].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("digest mismatch") && error.contains(&tampered.digest),
        "{error}"
    );
    let all = tags(store, &host_of(proxy.url()));
    assert_eq!(all["ns/app:1.0"].digest, docker.digest);
    assert_eq!(all["ns/app:1.0"].image_id, docker.image_id);
    assert_eq!(all["ns/app:2.0"].digest, oci.digest);
    assert_eq!(all["ns/app:2.0"].size, Some(oci.size));
    assert!(!all.contains_key("ns/other:1.0"), "{all:?}");
    let fetched: Vec<(String, String)> = proxy
        .requests()
        .into_iter()
        .filter(|(_, path)| path.contains("/manifests/"))
        .collect();
    assert_eq!(fetched.len(), 3, "one GET per event: {fetched:?}");
}

/// A push of a tag whose digest another tag already records is written
/// from that row: no manifest GET (registries without `references`).
#[test]
fn a_manifest_the_tags_already_know_is_not_fetched_again() {
    let world = World::sqlite();
    let registry = TestRegistry::anonymous();
    let image = registry.push_oci_image("ns/app", "1.0");
    let store = world.store();
    store
        .insert_events(&[push_event("first", &image, "1.0", false)], 1)
        .expect("storing an event");
    let setup = Setup {
        registry_url: registry.url.clone(),
        ..Setup::default()
    };
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(run_counts(store, "manifests_fetched"), 1);

    registry.put_manifest("ns/app", "2.0", OCI_MANIFEST, &image.manifest);
    // other/app does not hold the manifest at all: a GET would fail the event.
    store
        .insert_events(
            &[
                push_event("second", &image, "2.0", false),
                push_event(
                    "third",
                    &PushedImage {
                        repository: "other/app".into(),
                        ..image.clone()
                    },
                    "1.0",
                    false,
                ),
            ],
            2,
        )
        .expect("storing events");
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(run_counts(store, "manifests_fetched"), 1, "no second GET");
    assert_eq!(run_counts(store, "manifests_reused"), 2);
    let all = tags(store, &host_of(&registry.url));
    let first = &all["ns/app:1.0"];
    for name in ["ns/app:2.0", "other/app:1.0"] {
        let tag = &all[name];
        assert_eq!(
            (&tag.digest, &tag.image_id, &tag.media_type, tag.size),
            (
                &first.digest,
                &first.image_id,
                &first.media_type,
                first.size
            ),
            "{name}"
        );
    }
    assert_eq!(first.size, Some(image.size));
}

support::both_backends!(
    a_malformed_stored_event_fails_while_the_others_apply,
    a_push_undone_in_the_registry_before_its_event_removes_the_tag
);

#[test]
fn two_daemons_on_one_postgres_apply_each_event_once() {
    let registry = TestRegistry::anonymous();
    let world = World::new(Backend::Postgres);
    let store = world.store();
    // Five repositories, each with one tag re-pushed twelve times: only
    // in-order application leaves the last digest behind.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut stored = Vec::new();
    for round in 0..12 {
        for repository in 0..5 {
            let image = registry.push_oci_image(&format!("ns/r{repository}"), "t");
            stored.push(push_event(
                &format!("e-{round}-{repository}"),
                &image,
                "t",
                round % 3 != 0,
            ));
            last.insert(format!("ns/r{repository}:t"), image.digest.clone());
        }
    }
    let setup = Setup {
        registry_url: registry.url.clone(),
        schedule: "* * * * * *",
        events_keys: "batch_size = 7\n",
        ..Setup::default()
    };
    let mut first = world.start("first", &setup);
    let mut second = world.start("second", &setup);
    for chunk in stored.chunks(10) {
        store.insert_events(chunk, 1).expect("storing events");
    }
    wait_until("every event is done", || {
        events(store).iter().all(|event| event.status == 0)
    });
    let host = host_of(&registry.url);
    let all = tags(store, &host);
    for (key, digest) in &last {
        assert_eq!(&all[key].digest, digest, "{key} ends at its last push");
    }
    wait_until("both daemons recorded their runs", || {
        run_counts(store, "claimed") >= 60
    });
    assert_eq!(run_counts(store, "claimed"), 60, "no event claimed twice");
    assert_eq!(run_counts(store, "applied"), 60);
    // Daemons on PostgreSQL used to abort (exit 134) after "regkeeper stopped".
    for daemon in [&mut first, &mut second] {
        assert_eq!(daemon.terminate(), 0, "its log:\n{}", daemon.log());
        assert!(
            daemon.log().contains("regkeeper stopped"),
            "{}",
            daemon.log()
        );
    }
}

#[test]
fn done_events_older_than_retain_done_are_pruned() {
    let world = World::sqlite();
    let store = world.store();
    let delete = r#"{"id":"old","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"a","tag":"t"}}"#;
    store
        .insert_events(&[raw_event("old", "a", delete)], 1)
        .expect("storing");
    let setup = Setup {
        registry_url: "http://127.0.0.1:9".into(),
        events_keys: "retain_done = \"1s\"\n",
        ..Setup::default()
    };
    let (code, output) = world.once("once", &setup, &[]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        events(store).len(),
        1,
        "kept while younger than retain_done"
    );
    wait_until("retain_done has passed and a run pruned it", || {
        let (code, output) = world.once("once", &setup, &[]);
        assert_eq!(code, 0, "{output}");
        events(store).is_empty()
    });
}
