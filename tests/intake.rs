//! The notification intake over HTTP on 127.0.0.1, storing into real SQLite
//! and PostgreSQL databases: authentication, limits, filtering, duplicates,
//! durability answers and the wake-up of the events job.

use regkeeper_test_support as support;

use std::future::Future as _;
use std::sync::Arc;
use std::time::Duration;

use regkeeper::intake::{self, Intake, RunningIntake};
use regkeeper::scheduler::Waker;
use regkeeper::store::sql::SqlStore;
use regkeeper::store::{EventClaim, Store};
use support::{Backend, TestStore};

const TOKEN: &str = "Token s3cret-intake-token";
const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

/// An intake on a free port with its own runtime; stopped on Drop.
struct TestIntake {
    url: String,
    store: Arc<SqlStore>,
    waker: Waker,
    runtime: tokio::runtime::Runtime,
    running: Option<RunningIntake>,
    _database: TestStore,
}

impl TestIntake {
    fn sqlite(token: Option<&str>, body_limit: usize) -> TestIntake {
        TestIntake::start(Backend::Sqlite, token, body_limit)
    }

    fn start(backend: Backend, token: Option<&str>, body_limit: usize) -> TestIntake {
        let database = TestStore::new(backend);
        let store = database.sql();
        let waker = Waker::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let intake = Intake {
            store: store.clone(),
            token: token.map(String::from),
            body_limit,
            waker: Some(waker.clone()),
        };
        let running = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding 127.0.0.1:0");
            intake::spawn(listener, intake).expect("starting the intake")
        });
        TestIntake {
            url: format!("http://{}", running.address),
            store,
            waker,
            runtime,
            running: Some(running),
            _database: database,
        }
    }

    /// POSTs `body`; returns the status and the body of the answer.
    fn post(
        &self,
        path: &str,
        authorization: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut request = agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", content_type);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = request.send(body).expect("posting to the intake");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    }

    fn notify(&self, body: &str) -> (u16, String) {
        self.post(
            "/v2/webhooks/events",
            Some(TOKEN),
            EVENTS_V1,
            body.as_bytes(),
        )
    }

    fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut response = agent
            .get(&format!("{}{path}", self.url))
            .call()
            .expect("getting from the intake");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Every stored event id, in arrival order (claims them).
    fn stored_ids(&self) -> Vec<String> {
        let claimed = self
            .store
            .claim_events(&EventClaim {
                claimant: "test".into(),
                now: i64::MAX / 2,
                expired_before: 0,
                limit: 10_000,
            })
            .expect("claiming");
        claimed.into_iter().map(|event| event.event_id).collect()
    }

    fn fresh_count(&self) -> i64 {
        self.store
            .queue_counts()
            .expect("queue counts")
            .events
            .get("fresh")
            .copied()
            .unwrap_or(0)
    }

    /// Whether a wake-up of the events job is pending right now, without
    /// waiting (it is consumed). The intake wakes the job before it
    /// answers, so after an answer this is exact.
    fn wake_pending(&self) -> bool {
        let mut woken = std::pin::pin!(self.waker.woken());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        woken.as_mut().poll(&mut context).is_ready()
    }

    /// Whether the events job was woken (waits a generous while).
    fn was_woken(&self) -> bool {
        let waker = self.waker.clone();
        self.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(30), waker.woken())
                .await
                .is_ok()
        })
    }
}

impl Drop for TestIntake {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.stop());
        }
    }
}

fn push_event(id: &str, repository: &str, tag: &str, media_type: &str) -> String {
    format!(
        r#"{{"id":"{id}","timestamp":"2026-01-02T03:04:05.123Z","action":"push",
        "target":{{"mediaType":"{media_type}","size":401,"digest":"sha256:8ffca516","length":401,
        "repository":"{repository}","tag":"{tag}",
        "references":[{{"mediaType":"application/vnd.oci.image.config.v1+json","size":284,"digest":"sha256:9079c54f"}},
                      {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":118,"digest":"sha256:99324dc6"}}]}},
        "request":{{"id":"r-{id}","addr":"127.0.0.1:40662","host":"127.0.0.1:5000","method":"PUT","useragent":"test"}},
        "actor":{{}},"source":{{"addr":"vm:5000","instanceID":"i"}}}}"#
    )
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

const BLOB_PUSH: &str = r#"{"id":"blob-1","timestamp":"2026-01-02T03:04:05Z","action":"push",
    "target":{"mediaType":"application/octet-stream","size":118,"digest":"sha256:99324dc6","length":118,
    "repository":"ns/app","url":"http://127.0.0.1:5000/v2/ns/app/blobs/sha256:99324dc6"},
    "request":{"method":"PUT"},"actor":{}}"#;

const MOUNT: &str = r#"{"id":"mount-1","timestamp":"2026-01-02T03:04:05Z","action":"mount",
    "target":{"mediaType":"application/octet-stream","size":118,"digest":"sha256:99324dc6","length":118,
    "repository":"ns/other","fromRepository":"ns/app"},"request":{"method":"POST"},"actor":{}}"#;

const DELETE_BY_DIGEST: &str = r#"{"id":"delete-1","timestamp":"2026-01-02T03:04:31.57Z","action":"delete",
    "target":{"digest":"sha256:8ffca516","repository":"ns/app"},"request":{"method":"DELETE"},"actor":{}}"#;

fn envelope(events: &[&str]) -> String {
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

#[test]
fn a_wrong_or_missing_token_is_401_and_stores_nothing() {
    let intake = TestIntake::sqlite(Some(TOKEN), 1 << 20);
    let body = envelope(&[&push_event("e1", "ns/app", "1.0", OCI_MANIFEST)]);
    for authorization in [
        None,
        Some("Token wrong"),
        Some("Token s3cret-intake-tokenX"),
        Some("token s3cret-intake-token"),
    ] {
        let (status, _) = intake.post(
            "/v2/webhooks/events",
            authorization,
            EVENTS_V1,
            body.as_bytes(),
        );
        assert_eq!(status, 401, "{authorization:?}");
    }
    assert_eq!(intake.fresh_count(), 0);
    let (status, answer) = intake.notify(&body);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(intake.fresh_count(), 1);
}

#[test]
fn an_oversized_body_is_413_and_stores_nothing() {
    let intake = TestIntake::sqlite(Some(TOKEN), 4096);
    let events: Vec<String> = (0..20)
        .map(|index| push_event(&format!("big-{index}"), "ns/app", "t", OCI_MANIFEST))
        .collect();
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    let body = envelope(&refs);
    assert!(body.len() > 4096);
    let (status, _) = intake.notify(&body);
    assert_eq!(status, 413);
    assert_eq!(intake.fresh_count(), 0);
}

#[test]
fn garbage_and_non_envelopes_are_400_and_store_nothing() {
    let intake = TestIntake::sqlite(Some(TOKEN), 1 << 20);
    for body in ["garbage", "", "[]", "{}", r#"{"events":"no"}"#] {
        let (status, answer) = intake.notify(body);
        assert_eq!(status, 400, "{body:?}: {answer}");
    }
    let (status, _) = intake.post(
        "/v2/webhooks/events",
        Some(TOKEN),
        "text/plain",
        envelope(&[DELETE_BY_DIGEST]).as_bytes(),
    );
    assert_eq!(status, 415);
    assert_eq!(intake.fresh_count(), 0);
}

#[test]
fn blob_and_mount_events_are_dropped_and_manifest_events_kept() {
    let intake = TestIntake::sqlite(Some(TOKEN), 1 << 20);
    let oci_index = push_event(
        "index-1",
        "ns/multi",
        "all",
        "application/vnd.oci.image.index.v1+json",
    );
    let schema2 = push_event(
        "schema2-1",
        "app",
        "latest",
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    let oci = push_event("oci-1", "ns/app", "1.0", OCI_MANIFEST);
    let malformed = r#"{"id":"bad-1","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"repository":"a","tag":"t"}}"#;
    let unknown = r#"{"id":"odd-1","timestamp":"2026-01-02T03:04:05Z","action":"frobnicate","target":{"repository":"a"}}"#;
    let body = envelope(&[
        BLOB_PUSH,
        &oci,
        MOUNT,
        malformed,
        &schema2,
        unknown,
        &oci_index,
        DELETE_BY_DIGEST,
    ]);
    let (status, answer) = intake.notify(&body);
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("the answer is JSON");
    assert_eq!(answer["stored"], 4);
    assert_eq!(answer["dropped"], 3);
    assert_eq!(answer["malformed"], 1);
    assert!(intake.was_woken());
    assert_eq!(
        intake.stored_ids(),
        ["oci-1", "schema2-1", "index-1", "delete-1"]
    );
}

#[test]
fn an_envelope_of_dropped_events_is_accepted_without_a_wake_up() {
    let intake = TestIntake::sqlite(None, 1 << 20);
    let (status, _) = intake.post(
        "/events",
        None,
        "application/json",
        envelope(&[BLOB_PUSH, MOUNT]).as_bytes(),
    );
    assert_eq!(status, 202);
    assert_eq!(intake.fresh_count(), 0);
    assert!(
        !intake.wake_pending(),
        "an envelope of dropped events woke the events job"
    );
    // The same intake does wake it for an event it keeps.
    let kept = push_event("kept-1", "ns/app", "1.0", OCI_MANIFEST);
    let (status, _) = intake.post(
        "/events",
        None,
        "application/json",
        envelope(&[BLOB_PUSH, &kept]).as_bytes(),
    );
    assert_eq!(status, 202);
    assert!(intake.wake_pending(), "a kept event did not wake the job");
}

fn duplicates_are_stored_once(intake: &TestIntake) {
    let first = push_event("dup-1", "ns/app", "1.0", OCI_MANIFEST);
    let second = push_event("dup-2", "ns/app", "1.1", OCI_MANIFEST);
    let (status, _) = intake.notify(&envelope(&[&first]));
    assert_eq!(status, 202);
    // The registry redelivers an event it got no 2xx for: same id again.
    let (status, answer) = intake.notify(&envelope(&[&first, &second, &second]));
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["stored"], 1);
    assert_eq!(answer["duplicates"], 2);
    let (status, _) = intake.post(
        "/events",
        Some(TOKEN),
        "application/vnd.docker.distribution.events.v2+json",
        envelope(&[&first]).as_bytes(),
    );
    assert_eq!(status, 202);
    assert_eq!(intake.stored_ids(), ["dup-1", "dup-2"]);
}

fn duplicate_event_ids_are_stored_once(backend: Backend) {
    duplicates_are_stored_once(&TestIntake::start(backend, Some(TOKEN), 1 << 20));
}

support::both_backends!(duplicate_event_ids_are_stored_once);

#[test]
fn a_failed_database_write_is_503_and_the_redelivery_is_stored() {
    let intake = TestIntake::sqlite(Some(TOKEN), 1 << 20);
    intake
        .store
        .tx(|conn| {
            conn.execute(
                "ALTER TABLE registry_events RENAME TO registry_events_away",
                &[],
            )
        })
        .expect("hiding the events table");
    let body = envelope(&[
        &push_event("e1", "ns/app", "1.0", OCI_MANIFEST),
        DELETE_BY_DIGEST,
    ]);
    let (status, _) = intake.notify(&body);
    assert_eq!(status, 503);
    intake
        .store
        .tx(|conn| {
            conn.execute(
                "ALTER TABLE registry_events_away RENAME TO registry_events",
                &[],
            )
        })
        .expect("restoring the events table");
    let (status, _) = intake.notify(&body);
    assert_eq!(status, 202);
    assert_eq!(intake.stored_ids(), ["e1", "delete-1"]);
}

#[test]
fn healthz_reports_the_database() {
    let intake = TestIntake::sqlite(Some(TOKEN), 1 << 20);
    let (status, body) = intake.get("/healthz");
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["daemon"], "ok");
    assert_eq!(body["database"], "ok");
}
