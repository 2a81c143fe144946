//! regkeeper's own requests do not come back as pulls: a real docker-registry
//! with htpasswd auth notifies the real daemon; a `--once` sync pass of the
//! daemon's own configuration (a manifest HEAD per tag), a manifest GET with
//! regkeeper's user agent and one by its registry account (as a scanner it
//! drives makes) leave `pulled_at` and `registry_events` as they were,
//! while another user's pull still sets `pulled_at`. The daemon is killed
//! by PID on drop.

use regkeeper_test_support as support;

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use regkeeper::store::sql::SqlStore;
use regkeeper::store::{Store, TagRecord, Value};
use support::daemon::Daemon;
use support::registry::{
    free_port, Auth, Notifications, Options, TestRegistry, DOCKER_MANIFEST, OCI_MANIFEST,
};
use support::wait_until;

const TOKEN: &str = "Token own-pulls-token";
const ACCOUNT: &str = "regkeeper";
const ACCOUNT_PASSWORD: &str = "regkeeper-secret";
const OTHER: &str = "other";
const OTHER_PASSWORD: &str = "other-secret";
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GETs a manifest by tag as `user` with `user_agent`: the registry emits
/// a pull event.
fn pull(
    registry: &TestRegistry,
    user: (&str, &str),
    user_agent: &str,
    repository: &str,
    tag: &str,
) {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.0, user.1));
    let response = agent()
        .get(&format!("{}/v2/{repository}/manifests/{tag}", registry.url))
        .header("Accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
        .header("Authorization", &format!("Basic {credentials}"))
        .header("User-Agent", user_agent)
        .call()
        .expect("pulling a manifest");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{user:?} pulling {repository}:{tag}"
    );
}

fn tags(store: &SqlStore, registry: &TestRegistry) -> Vec<TagRecord> {
    let host = registry.url.trim_start_matches("http://");
    let registry_id = store.ensure_registry(host).expect("registry row");
    store.tags(registry_id, None).expect("listing tags")
}

fn tag<'a>(tags: &'a [TagRecord], name: &str) -> &'a TagRecord {
    tags.iter()
        .find(|tag| format!("{}:{}", tag.repository, tag.tag) == name)
        .unwrap_or_else(|| panic!("no tag {name} in {tags:?}"))
}

/// `(event_id, action, data)` of every stored event, in arrival order.
fn stored_events(store: &SqlStore) -> Vec<(String, String, String)> {
    let rows = store
        .tx(|conn| {
            conn.query(
                "SELECT event_id, action, data FROM registry_events ORDER BY id",
                &[],
            )
        })
        .expect("reading events");
    let text = |value: &Value| match value {
        Value::Text(text) => text.clone(),
        other => panic!("expected text, got {other:?}"),
    };
    rows.iter()
        .map(|row| (text(&row[0]), text(&row[1]), text(&row[2])))
        .collect()
}

#[test]
fn regkeepers_own_pulls_are_not_stored_and_other_pulls_are() {
    let port = free_port();
    let mut registry = TestRegistry::start(Options {
        auth: Auth::htpasswd(ACCOUNT, ACCOUNT_PASSWORD),
        notifications: Some(Notifications {
            url: format!("http://127.0.0.1:{port}/v2/webhooks/events"),
            authorization: Some(TOKEN.to_string()),
        }),
        ..Options::default()
    });
    // A second user.
    registry.add_htpasswd_user(OTHER, OTHER_PASSWORD);

    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("notify-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("writing the token file");
    let database = dir.path().join("regkeeper.db");
    let config = dir.path().join("schedules.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{database}\"\n\n\
             [registry]\nurl = \"{registry}\"\nusername = \"{ACCOUNT}\"\n\
             password = \"{ACCOUNT_PASSWORD}\"\ntimeout = \"60s\"\n\n\
             [notifications]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{token_file}\"\n\n\
             [jobs.registry-events]\nhandler = \"events\"\nschedule = \"*/2 * * * * *\"\n\n\
             [jobs.sync]\nhandler = \"sync\"\nschedule = \"0 0 0 1 1 *\"\nstrategy = \"update\"\n",
            database = database.display(),
            registry = registry.url,
            token_file = token_file.display(),
        ),
    )
    .expect("writing the config");
    let mut daemon = Daemon::start(&config);
    daemon.wait_for_intake(port);
    let store = support::store::sqlite_file(&database);

    // Pushes by regkeeper's own account are kept.
    let first = registry.push_oci_image("ns/app", "1.0");
    let second = registry.push_image("ns/app", "2.0");
    wait_until("both pushed tags are in the database", || {
        tags(&store, &registry).len() == 2
    });
    let events_before = stored_events(&store);
    assert_eq!(events_before.len(), 2, "{events_before:?}");
    assert!(events_before.iter().all(|(_, action, _)| action == "push"));

    // A sync pass of the daemon's own configuration: a HEAD per tag.
    let output = Command::new(env!("CARGO_BIN_EXE_regkeeper"))
        .arg("--config")
        .arg(&config)
        .arg("--once")
        .arg("sync")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("running regkeeper --once sync");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // regkeeper's user agent under another account, and regkeeper's
    // account under another user agent (a scanner it hands the credentials).
    pull(
        &registry,
        (OTHER, OTHER_PASSWORD),
        &format!("regkeeper/{}", env!("CARGO_PKG_VERSION")),
        "ns/app",
        "1.0",
    );
    pull(
        &registry,
        (ACCOUNT, ACCOUNT_PASSWORD),
        "scanner-under-test/1.0",
        "ns/app",
        "1.0",
    );
    // Another user's pull: the registry sends events in order, so once this
    // one is applied every pull above has reached the intake too.
    pull(
        &registry,
        (OTHER, OTHER_PASSWORD),
        "curl/8.5.0",
        "ns/app",
        "2.0",
    );
    wait_until("the other user's pull is recorded", || {
        tag(&tags(&store, &registry), "ns/app:2.0")
            .pulled_at
            .is_some()
    });

    let all = tags(&store, &registry);
    assert_eq!(
        tag(&all, "ns/app:1.0").pulled_at,
        None,
        "regkeeper's own pulls set pulled_at"
    );
    assert_eq!(tag(&all, "ns/app:1.0").digest, first.digest);
    assert_eq!(tag(&all, "ns/app:2.0").digest, second.digest);
    let events_after = stored_events(&store);
    assert_eq!(
        events_after.len(),
        events_before.len() + 1,
        "only the other user's pull is stored: {events_after:#?}"
    );
    assert_eq!(events_after[..events_before.len()], events_before[..]);
    let (_, action, data) = &events_after[events_before.len()];
    assert_eq!(action, "pull");
    let pulled: serde_json::Value = serde_json::from_str(data).expect("stored JSON");
    assert_eq!(pulled["actor"]["name"], OTHER);
    assert_eq!(pulled["request"]["useragent"], "curl/8.5.0");

    // Counted, one debug line per envelope.
    let log = daemon.log();
    let own_pulls: usize = log
        .lines()
        .filter_map(|line| {
            let before = line.split(" own pulls dropped").next()?;
            if before.len() == line.len() {
                return None;
            }
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum();
    assert!(own_pulls >= 4, "{own_pulls} own pulls counted:\n{log}");
}
