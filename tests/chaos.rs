//! The reliability suite's own scenarios (`scripts/chaos.sh` runs them with
//! the long setting; the test suite with the short one): daemons SIGKILLed
//! at random moments while a real registry notifies them, three daemons on
//! one PostgreSQL sharing one stream of notifications, and every credential
//! kept out of every log and output. The fault-injecting proxy and intake
//! abuse scenarios live in `sync_faults.rs` and `intake_attacks.rs`, which
//! `scripts/chaos.sh` runs too.
//!
//! Sizes come from the environment (`REGKEEPER_CHAOS_KILLS`,
//! `REGKEEPER_CHAOS_NOTIFICATIONS`); each scenario prints one `chaos:` line
//! of figures.

use regkeeper_test_support as support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regkeeper::store::sql::SqlStore;
use regkeeper::store::{Store, Value};
use support::cli::run_binary_with_env;
use support::daemon::Daemon;
use support::registry::{
    free_port, unique_token, Auth, Notifications, Options, PushedImage, TestRegistry,
};
use support::{wait_until, Backend, TestStore};

const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

/// A size from the environment, or the short setting's.
fn setting(name: &str, short: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(short)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent("chaos-client")
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Every tag the registry holds, as `repository:tag` -> digest, read from
/// the registry itself (catalog, tag lists, manifest HEADs). The reads go
/// under regkeeper's user agent, so the intake drops the pull events they
/// cause as its own: the check must not set the pull times it checks.
fn registry_tags(registry: &TestRegistry, authorization: Option<&str>) -> BTreeMap<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent("regkeeper/chaos-check")
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let get = |path: &str| {
        let mut request = agent.get(&format!("{}{path}", registry.url));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request.call().expect("reading the registry");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        let text = response.body_mut().read_to_string().expect("a body");
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON from the registry")
    };
    let mut tags = BTreeMap::new();
    let catalog = get("/v2/_catalog?n=1000");
    for repository in catalog["repositories"].as_array().into_iter().flatten() {
        let repository = repository.as_str().expect("a repository name");
        let list = get(&format!("/v2/{repository}/tags/list"));
        for tag in list["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().expect("a tag name");
            let mut request = agent
                .head(&format!("{}/v2/{repository}/manifests/{tag}", registry.url))
                .header(
                    "Accept",
                    "application/vnd.docker.distribution.manifest.v2+json, \
                     application/vnd.oci.image.manifest.v1+json",
                );
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let response = request.call().expect("a manifest HEAD");
            let digest = response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|value| value.to_str().ok())
                .expect("a digest header")
                .to_string();
            tags.insert(format!("{repository}:{tag}"), digest);
        }
    }
    tags
}

/// Every tag of `registry` in the database, `repository:tag` -> (digest,
/// pulled).
fn database_tags(store: &SqlStore, registry: &str) -> BTreeMap<String, (String, bool)> {
    let registry_id = store.ensure_registry(registry).expect("the registry's row");
    store
        .tags(registry_id, None)
        .expect("listing tags")
        .into_iter()
        .map(|tag| {
            (
                format!("{}:{}", tag.repository, tag.tag),
                (tag.digest, tag.pulled_at.is_some()),
            )
        })
        .collect()
}

/// Events by status (0 done, 1 in progress, 2 fresh, 3 failed), and how
/// many were attempted more than once.
struct EventFigures {
    by_status: BTreeMap<i64, usize>,
    retried: usize,
    total: usize,
}

fn event_figures(store: &SqlStore) -> EventFigures {
    let rows = store
        .tx(|conn| conn.query("SELECT status, attempts FROM registry_events", &[]))
        .expect("reading events");
    let int = |value: &Value| match value {
        Value::Int(number) => *number,
        other => panic!("expected an integer, got {other:?}"),
    };
    let mut figures = EventFigures {
        by_status: BTreeMap::new(),
        retried: 0,
        total: rows.len(),
    };
    for row in &rows {
        *figures.by_status.entry(int(&row[0])).or_default() += 1;
        if int(&row[1]) > 1 {
            figures.retried += 1;
        }
    }
    figures
}

impl EventFigures {
    fn not_done(&self) -> usize {
        self.total - self.by_status.get(&0).copied().unwrap_or(0)
    }
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("writing a config");
    path
}

fn events_config(database_url: &str, registry_url: &str, port: u16, token_file: &Path) -> String {
    format!(
        "[database]\nurl = \"{database_url}\"\n\n\
         [registry]\nurl = \"{registry_url}\"\ntimeout = \"30s\"\n\n\
         [notifications]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{token}\"\n\n\
         [daemon]\ngrace_period = \"5s\"\n\n\
         [jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n",
        token = token_file.display(),
    )
}

// ---------------------------------------------------------------------------
// 1. A pusher pushes, re-tags, deletes and pulls through a real registry that
// notifies the daemon, while the daemon is SIGKILLed and restarted.

/// What the pusher did: the registry as it must be afterwards.
#[derive(Default)]
struct Model {
    /// `repository:tag` -> digest.
    tags: BTreeMap<String, String>,
    /// Tags a client pulled (and that still exist).
    pulled: BTreeSet<String>,
}

impl Model {
    fn tags_of(&self, repository: &str) -> Vec<(String, String)> {
        self.tags
            .iter()
            .filter(|(key, _)| {
                key.split_once(':')
                    .is_some_and(|(name, _)| name == repository)
            })
            .map(|(key, digest)| (key.clone(), digest.clone()))
            .collect()
    }
}

fn pull(registry: &TestRegistry, key: &str) {
    let (repository, tag) = key.split_once(':').expect("repository:tag");
    let response = agent()
        .get(&format!("{}/v2/{repository}/manifests/{tag}", registry.url))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
        .expect("a pull");
    assert_eq!(response.status().as_u16(), 200, "pulling {key}");
}

/// One operation of the pusher on repository `repository`.
fn operate(registry: &TestRegistry, model: &mut Model, rng: &mut StdRng, step: usize) {
    let repository = format!("chaos/r{}", step % 4);
    let existing = model.tags_of(&repository);
    let choice = if existing.is_empty() {
        0
    } else {
        rng.random_range(0..10)
    };
    match choice {
        // Push a new image.
        0..=3 => {
            let tag = format!("t{step}");
            let image = registry.push_image(&repository, &tag);
            model
                .tags
                .insert(format!("{repository}:{tag}"), image.digest);
        }
        // Re-tag an existing image.
        4 | 5 => {
            let (key, digest) = &existing[rng.random_range(0..existing.len())];
            let (_, from) = key.split_once(':').expect("repository:tag");
            let tag = format!("n{step}");
            // Re-tagging reads the manifest: a client's pull of the source.
            registry.tag(&repository, from, &tag);
            model.pulled.insert(key.clone());
            model
                .tags
                .insert(format!("{repository}:{tag}"), digest.clone());
        }
        // Pull one.
        6 | 7 => {
            let (key, _) = &existing[rng.random_range(0..existing.len())];
            pull(registry, key);
            model.pulled.insert(key.clone());
        }
        // Delete an image by digest: every tag on it goes.
        _ => {
            let (_, digest) = existing[rng.random_range(0..existing.len())].clone();
            let status = registry.delete(&repository, &digest);
            assert_eq!(status, 202, "deleting {repository}@{digest}");
            model.tags.retain(|_, kept| *kept != digest);
            model.pulled.retain(|key| model.tags.contains_key(key));
        }
    }
}

#[test]
fn daemons_killed_at_random_lose_no_event_and_end_equal_to_the_registry() {
    let kills_wanted = setting("REGKEEPER_CHAOS_KILLS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestStore::new(Backend::Sqlite);
    let port = free_port();
    let token = format!("Token {}", unique_token());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).expect("writing the token");
    let registry = TestRegistry::start(Options {
        notifications: Some(Notifications {
            url: format!("http://127.0.0.1:{port}/v2/webhooks/events"),
            authorization: Some(token.clone()),
        }),
        ..Options::default()
    });
    let config = write_config(
        dir.path(),
        "daemon",
        &events_config(&database.url(), &registry.url, port, &token_file),
    );
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(port);

    let pushing_done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let pushing_done = pushing_done.clone();
        let kills = kills.clone();
        let config = config.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(0xc4a05);
            let mut earlier_logs = String::new();
            while !pushing_done.load(Ordering::SeqCst) {
                // The moment of the kill is the scenario's input, random on
                // purpose: mid-claim, mid-apply, mid-request, idle.
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                daemon.kill();
                earlier_logs.push_str(&daemon.log());
                earlier_logs.push_str("---- killed\n");
                kills.fetch_add(1, Ordering::SeqCst);
                daemon = Daemon::start(&config);
                daemon.wait_for_intake(port);
            }
            (daemon, earlier_logs)
        })
    };

    let mut model = Model::default();
    let mut rng = StdRng::seed_from_u64(0x9054);
    let mut steps = 0;
    while kills.load(Ordering::SeqCst) < kills_wanted || steps < 40 {
        operate(&registry, &mut model, &mut rng, steps);
        steps += 1;
    }
    pushing_done.store(true, Ordering::SeqCst);
    let last_kill = Instant::now();
    let (mut daemon, earlier_logs) = killer.join().expect("the killer thread");

    assert_eq!(
        registry_tags(&registry, None),
        model.tags,
        "the registry holds what the pusher did"
    );
    let host = host_of(&registry.url);
    let expected: BTreeMap<String, (String, bool)> = model
        .tags
        .iter()
        .map(|(key, digest)| (key.clone(), (digest.clone(), model.pulled.contains(key))))
        .collect();
    let settled = support::wait::poll(support::DEADLINE, || {
        let figures = event_figures(&database);
        (figures.not_done() == 0 && database_tags(&database, &host) == expected).then_some(figures)
    });
    let Some(figures) = settled else {
        let figures = event_figures(&database);
        panic!(
            "the database did not come to equal the registry: events by status {:?}\n\
             missing or different: {:?}\nextra: {:?}\ndaemon logs:\n{earlier_logs}{}",
            figures.by_status,
            expected
                .iter()
                .filter(|(key, value)| database_tags(&database, &host).get(*key) != Some(value))
                .collect::<Vec<_>>(),
            database_tags(&database, &host)
                .keys()
                .filter(|key| !expected.contains_key(*key))
                .collect::<Vec<_>>(),
            daemon.log()
        );
    };
    println!(
        "chaos: sigkill-loop kills={} operations={steps} events={} lost=0 stuck=0 \
         failed=0 re-applied-after-a-kill={} tags={} settled-in={:.1}s",
        kills.load(Ordering::SeqCst),
        figures.total,
        figures.retried,
        model.tags.len(),
        last_kill.elapsed().as_secs_f64()
    );
    assert_eq!(daemon.terminate(), 0, "its log:\n{}", daemon.log());
}

// ---------------------------------------------------------------------------
// 3. Three daemons on one PostgreSQL; the notifications of each repository
// come through one of their intakes (as one registry endpoint would send
// them), and the daemons are SIGKILLed and restarted meanwhile.

/// A push event as docker-registry sends it, with `references` when
/// `includereferences: true` (else the events job GETs the manifest).
fn push_event(
    id: &str,
    image: &PushedImage,
    tag: &str,
    with_references: bool,
) -> serde_json::Value {
    let config_size = image.size - image.layers.iter().map(|(_, size)| size).sum::<i64>();
    let mut references = vec![serde_json::json!({
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": config_size,
        "digest": image.config_digest,
    })];
    for (digest, size) in &image.layers {
        references.push(serde_json::json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": size,
            "digest": digest,
        }));
    }
    serde_json::json!({
        "id": id,
        "timestamp": "2026-01-02T03:04:05.123Z",
        "action": "push",
        "target": {
            "mediaType": image.media_type,
            "size": image.manifest.len(),
            "digest": image.digest,
            "length": image.manifest.len(),
            "repository": image.repository,
            "tag": tag,
            "references": if with_references { serde_json::Value::from(references) } else { serde_json::Value::Null },
        },
        "request": {"id": id, "method": "PUT", "useragent": "chaos-pusher"},
        "actor": {},
    })
}

fn pull_event(id: &str, image: &PushedImage, tag: &str) -> serde_json::Value {
    let mut event = push_event(id, image, tag, true);
    event["action"] = "pull".into();
    event["request"]["method"] = "GET".into();
    event
}

fn delete_event(id: &str, image: &PushedImage) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "timestamp": "2026-01-02T03:04:05.123Z",
        "action": "delete",
        "target": {"digest": image.digest, "repository": image.repository},
        "request": {"id": id, "method": "DELETE", "useragent": "chaos-pusher"},
        "actor": {},
    })
}

/// POSTs one envelope until an intake stores it (202), as a registry's
/// endpoint queue retries: the intake may be down for a restart.
fn deliver(port: u16, token: &str, envelope: &str) {
    let agent = agent();
    let delivered = support::wait::poll(support::DEADLINE, || {
        let response = agent
            .post(&format!("http://127.0.0.1:{port}/v2/webhooks/events"))
            .header("Content-Type", EVENTS_V1)
            .header("Authorization", token)
            .send(envelope.as_bytes())
            .ok()?;
        (response.status().as_u16() == 202).then_some(())
    });
    assert!(
        delivered.is_some(),
        "no intake on port {port} stored an envelope"
    );
}

#[test]
fn three_daemons_on_one_postgres_apply_every_event_once_through_kills() {
    let notifications = setting("REGKEEPER_CHAOS_NOTIFICATIONS", 3000);
    let kills_wanted = setting("REGKEEPER_CHAOS_KILLS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestStore::new(Backend::Postgres);
    let registry = TestRegistry::anonymous();
    let token = format!("Token {}", unique_token());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).expect("writing the token");

    // 24 repositories x 4 images, one re-tag and one deletion each; the rest
    // of the notifications are pulls. Half the repositories' pushes come
    // without references, so their manifests are fetched (and the deleted
    // image's push is undone).
    let mut per_repository: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut images_left = Vec::new();
    let mut next_id = 0;
    let mut id = || {
        next_id += 1;
        format!("chaos-{next_id}")
    };
    for index in 0..24 {
        let repository = format!("team{}/app{index}", index % 3);
        let images: Vec<PushedImage> = (0..4)
            .map(|number| registry.push_image(&repository, &format!("v{number}")))
            .collect();
        registry.tag(&repository, "v3", "latest");
        assert_eq!(registry.delete(&repository, &images[0].digest), 202);
        let mut events: Vec<serde_json::Value> = images
            .iter()
            .enumerate()
            .map(|(number, image)| push_event(&id(), image, &format!("v{number}"), index % 2 == 0))
            .collect();
        events.push(push_event(&id(), &images[3], "latest", index % 2 == 0));
        events.push(delete_event(&id(), &images[0]));
        per_repository.push(events);
        images_left.push(images);
    }
    let mut rng = StdRng::seed_from_u64(0x3da3);
    let mut total: usize = per_repository.iter().map(Vec::len).sum();
    while total < notifications {
        let index = rng.random_range(0..per_repository.len());
        let number = rng.random_range(1..4);
        let event = pull_event(&id(), &images_left[index][number], &format!("v{number}"));
        per_repository[index].push(event);
        total += 1;
    }

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let configs: Vec<PathBuf> = ports
        .iter()
        .enumerate()
        .map(|(number, port)| {
            write_config(
                dir.path(),
                &format!("daemon{number}"),
                &events_config(&database.url(), &registry.url, *port, &token_file),
            )
        })
        .collect();
    let mut daemons: Vec<Daemon> = configs.iter().map(|config| Daemon::start(config)).collect();
    for (daemon, port) in daemons.iter_mut().zip(&ports) {
        daemon.wait_for_intake(*port);
    }

    let started = Instant::now();
    let posting_done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let posting_done = posting_done.clone();
        let kills = kills.clone();
        let configs = configs.clone();
        let ports = ports.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(0x6111);
            while !posting_done.load(Ordering::SeqCst)
                || kills.load(Ordering::SeqCst) < kills_wanted
            {
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1200)));
                let victim = rng.random_range(0..daemons.len());
                daemons[victim].kill();
                kills.fetch_add(1, Ordering::SeqCst);
                daemons[victim] = Daemon::start(&configs[victim]);
                daemons[victim].wait_for_intake(ports[victim]);
            }
            daemons
        })
    };

    // One poster per intake; a repository's events always go through the
    // same intake, in order, ten to an envelope.
    let posters: Vec<_> = (0..3)
        .map(|number| {
            let port = ports[number];
            let token = token.clone();
            let streams: Vec<Vec<serde_json::Value>> = per_repository
                .iter()
                .enumerate()
                .filter(|(index, _)| index % 3 == number)
                .map(|(_, events)| events.clone())
                .collect();
            std::thread::spawn(move || {
                for events in streams {
                    for chunk in events.chunks(10) {
                        let envelope = serde_json::json!({ "events": chunk }).to_string();
                        deliver(port, &token, &envelope);
                    }
                }
            })
        })
        .collect();
    for poster in posters {
        poster.join().expect("a poster thread");
    }
    posting_done.store(true, Ordering::SeqCst);
    let mut daemons = killer.join().expect("the killer thread");

    let host = host_of(&registry.url);
    let expected: BTreeMap<String, String> = registry_tags(&registry, None);
    assert_eq!(
        expected.len(),
        24 * 4,
        "3 images and latest left per repository"
    );
    let settled = support::wait::poll(support::DEADLINE, || {
        let figures = event_figures(&database);
        let tags: BTreeMap<String, String> = database_tags(&database, &host)
            .into_iter()
            .map(|(key, (digest, _))| (key, digest))
            .collect();
        (figures.total == total && figures.not_done() == 0 && tags == expected).then_some(figures)
    });
    let Some(figures) = settled else {
        let figures = event_figures(&database);
        let failed = database
            .tx(|conn| {
                conn.query(
                    "SELECT event_id, action, last_error FROM registry_events WHERE status <> 0 LIMIT 5",
                    &[],
                )
            })
            .expect("reading events");
        let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
        panic!(
            "the database did not settle equal to the registry: {} of {total} events stored, \
             by status {:?}, some not done: {failed:?}\nlogs:\n{}",
            figures.total,
            figures.by_status,
            logs.join("\n----\n")
        );
    };
    println!(
        "chaos: three-daemons notifications={total} kills={} stored={} applied-once={} \
         re-applied-after-a-kill={} failed=0 tags-equal=yes settled-in={:.1}s",
        kills.load(Ordering::SeqCst),
        figures.total,
        figures.total - figures.retried,
        figures.retried,
        started.elapsed().as_secs_f64()
    );
    for daemon in &mut daemons {
        assert_eq!(daemon.terminate(), 0, "its log:\n{}", daemon.log());
    }
}

// ---------------------------------------------------------------------------
// 5. Secrets: the registry password, the database password and the intake
// token, configured throughout, appear in no log and no output.

#[test]
fn no_secret_reaches_a_log_or_an_output() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let registry_password = format!("rp-{}", unique_token());
    let database_password = format!("dp-{}", unique_token());
    let intake_token = unique_token();
    let registry = TestRegistry::start(Options {
        auth: Auth::htpasswd("chaos", &registry_password),
        ..Options::default()
    });
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("chaos:{registry_password}"));
    let secrets = [
        registry_password.as_str(),
        basic.as_str(),
        database_password.as_str(),
        intake_token.as_str(),
    ];
    let image = registry.push_image("secret/app", "1.0");
    registry.tag("secret/app", "1.0", "latest");

    // The test cluster trusts loopback, so any password is accepted: it is
    // still configured, sent and kept by every part that handles the URL.
    let database = TestStore::new(Backend::Postgres);
    let mut database_url = url::Url::parse(&database.url()).expect("a database URL");
    database_url
        .set_password(Some(&database_password))
        .expect("a password in the URL");
    let password_file = dir.path().join("registry-password");
    std::fs::write(&password_file, &registry_password).expect("writing the password file");
    let token_file = dir.path().join("intake-token");
    std::fs::write(&token_file, &intake_token).expect("writing the token file");
    let port = free_port();
    let config_text = |database_url: &str, registry_url: &str| {
        format!(
            "[database]\nurl = \"{database_url}\"\nwait = \"3s\"\n\n\
             [registry]\nurl = \"{registry_url}\"\nusername = \"chaos\"\n\
             password_file = \"{password}\"\ntimeout = \"10s\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{token}\"\n\n\
             [daemon]\ngrace_period = \"5s\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n\n\
             [jobs.registry-sync]\nhandler = \"sync\"\nschedule = \"*/3 * * * * *\"\n\
             strategy = \"update-delete\"\n",
            password = password_file.display(),
            token = token_file.display(),
        )
    };
    let config = write_config(
        dir.path(),
        "daemon",
        &config_text(database_url.as_str(), &registry.url),
    );
    let mut outputs: Vec<(String, String)> = Vec::new();

    let mut daemon = Daemon::start_with(&support::binary(), &config, "debug");
    daemon.wait_for_intake(port);
    let event = push_event("secret-1", &image, "1.0", false);
    deliver(
        port,
        &intake_token,
        &serde_json::json!({ "events": [event] }).to_string(),
    );
    // A wrong token is refused; its answer is an output too.
    let refused = agent()
        .post(&format!("http://127.0.0.1:{port}/v2/webhooks/events"))
        .header("Content-Type", EVENTS_V1)
        .header("Authorization", "wrong")
        .send("{\"events\":[]}".as_bytes())
        .expect("a refused POST");
    assert_eq!(refused.status().as_u16(), 401);
    let host = host_of(&registry.url);
    wait_until("the pushed tags are in the database", || {
        database_tags(&database, &host).len() == 2
    });
    daemon.wait_for_log("job=registry-sync");
    assert_eq!(daemon.terminate(), 0, "its log:\n{}", daemon.log());
    outputs.push(("the daemon's log".into(), daemon.log()));

    let config_arg = config.to_str().expect("a utf-8 path");
    let run = |name: &str, args: &[&str], outputs: &mut Vec<(String, String)>| {
        let output = run_binary_with_env(dir.path(), args, &[("RUST_LOG", "debug")]);
        outputs.push((name.into(), format!("{}{}", output.stdout, output.stderr)));
        output.code
    };
    assert_eq!(
        run("check", &["--config", config_arg, "check"], &mut outputs),
        Some(0)
    );
    run("status", &["--config", config_arg, "status"], &mut outputs);
    run(
        "status --json",
        &["--config", config_arg, "status", "--json"],
        &mut outputs,
    );
    run("tags", &["--config", config_arg, "tags"], &mut outputs);
    run(
        "--once sync",
        &["--config", config_arg, "--once", "registry-sync"],
        &mut outputs,
    );
    // Error paths: a registry that refuses the password, a database that is
    // not there.
    let wrong_password = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong_password,
        config_text(database_url.as_str(), &registry.url)
            .replace("username = \"chaos\"", "username = \"intruder\""),
    )
    .expect("writing a config");
    let failed = run(
        "--once sync refused by the registry",
        &[
            "--config",
            wrong_password.to_str().expect("utf-8"),
            "--once",
            "registry-sync",
        ],
        &mut outputs,
    );
    assert_eq!(failed, Some(1));
    let mut gone = database_url.clone();
    gone.set_port(Some(free_port())).expect("a port");
    let no_database = dir.path().join("no-database.toml");
    std::fs::write(&no_database, config_text(gone.as_str(), &registry.url))
        .expect("writing a config");
    let failed = run(
        "--once sync without its database",
        &[
            "--config",
            no_database.to_str().expect("utf-8"),
            "--once",
            "registry-sync",
        ],
        &mut outputs,
    );
    assert_ne!(failed, Some(0));

    let mut found = Vec::new();
    for (name, text) in &outputs {
        assert!(
            !text.is_empty() || name.starts_with("status"),
            "{name} printed nothing"
        );
        for secret in secrets {
            let count = text.matches(secret).count();
            if count > 0 {
                found.push(format!("{name}: {count}x a secret"));
            }
        }
    }
    assert!(found.is_empty(), "secrets leaked: {found:?}\n{outputs:#?}");
    let bytes: usize = outputs.iter().map(|(_, text)| text.len()).sum();
    println!(
        "chaos: secrets outputs={} bytes={bytes} secrets=4 occurrences=0",
        outputs.len()
    );
}
