//! Registry notification envelopes, parsed and filtered without I/O.
//!
//! The registry POSTs `{"events":[...]}`; each event has an `id`, a
//! `timestamp`, an `action` (`push`, `pull`, `mount`, `delete`) and a
//! `target` (`mediaType`, `digest`, `repository`, `tag`, `references`).
//! [`parse_envelope`] sorts the events of one envelope into kept events,
//! dropped ones (blob events, `mount`, unknown actions, non-manifest media
//! types) and malformed ones, never failing the whole envelope for one bad
//! event; [`parse_envelope_with`] also drops the pulls regkeeper caused
//! itself ([`OwnRequests`]). [`parse_event`] is the same parser the events
//! job uses on the stored JSON: names, tags and digests outside the
//! distribution grammar (`reference.rs`) make an event malformed, so none
//! of them reaches a URL. Nothing here stores, wakes, logs or talks to the
//! registry.

pub mod reference;

use serde_json::Value;

use crate::registry::Descriptor;

/// The start of the `User-Agent` of regkeeper's registry client
/// (`regkeeper/VERSION`), as the registry reports it in `request.useragent`.
pub const OWN_USER_AGENT_PREFIX: &str = "regkeeper/";

/// Longest event id kept, in bytes. docker-registry sends UUIDs; the id is
/// the deduplication key of the stored events.
pub const ID_MAX_LENGTH: usize = 256;

use crate::registry::media_type::{self, DOCKER_CONFIG, OCI_CONFIG};
pub(crate) use crate::registry::media_type::{EVENTS_V1, EVENTS_V2};

/// Whether a `Content-Type` header value names a notification envelope
/// (the v1 or v2 events type, or plain JSON; parameters are ignored).
pub(crate) fn is_envelope_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    [EVENTS_V1, EVENTS_V2, "application/json"]
        .iter()
        .any(|known| essence.eq_ignore_ascii_case(known))
}

/// What happened in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A manifest was uploaded.
    Push,
    /// A manifest was fetched (GET or HEAD).
    Pull,
    /// A manifest was deleted (by digest), or one of its tags went with it.
    Delete,
}

impl Action {
    /// The word the registry uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
        }
    }
}

/// One kept event, in the terms the events job applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The registry's event id (deduplication key).
    pub id: String,
    /// When it happened, milliseconds since the epoch.
    pub timestamp: i64,
    /// What happened.
    pub action: Action,
    /// Full repository name (`app`, `ns/app`, `ns/a/b`).
    pub repository: String,
    /// The tag, when the manifest was addressed by tag.
    pub tag: Option<String>,
    /// The manifest digest; absent on the per-tag delete events.
    pub digest: Option<String>,
    /// The manifest media type; absent on delete events.
    pub media_type: Option<String>,
    /// `target.references` (config and layers of an image, children of an
    /// index), when the registry includes them.
    pub references: Option<Vec<Descriptor>>,
}

impl Event {
    /// Whether the event is about a manifest list / OCI index.
    pub fn is_index(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|media_type| media_type::INDEXES.contains(&media_type))
    }
}

/// Why an event was not kept although it was well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// A push or pull of a blob (layer or config), not of a manifest.
    Blob,
    /// A cross-repository blob mount.
    Mount,
    /// An action this program does not know.
    UnknownAction(String),
}

/// The verdict on one event of an envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Store it.
    Keep(Event),
    /// Well formed but irrelevant.
    Drop(Dropped),
    /// Not an event this program can read; the text says why.
    Malformed(String),
}

/// A kept event with the JSON text to store.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptEvent {
    /// The parsed event.
    pub event: Event,
    /// The event's JSON, as received (re-serialised compactly).
    pub data: String,
}

/// One envelope, sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// Events to store, in envelope order.
    pub kept: Vec<KeptEvent>,
    /// Well-formed events that are irrelevant (blobs, mounts, unknown actions).
    pub dropped: usize,
    /// Well-formed pulls regkeeper caused itself ([`OwnRequests`]); not kept.
    pub own_pulls: usize,
    /// Events that could not be read, in envelope order.
    pub malformed: Vec<Malformed>,
}

/// An event of an envelope that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The event's `id`, when it has a non-empty string one (as sent: it may
    /// hold anything, so escape it before it reaches a log line).
    pub id: Option<String>,
    /// Why, naming the field; values from the event are quoted and escaped.
    pub reason: String,
}

impl std::fmt::Display for Malformed {
    /// `event ID: REASON`, the id with control characters escaped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "event {}: {}", id.escape_debug(), self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// A malformed event equals the message it is shown with.
impl PartialEq<String> for Malformed {
    fn eq(&self, message: &String) -> bool {
        message.as_str() == self.to_string().as_str()
    }
}

/// Who regkeeper is to the registry, so that the pulls it caused itself
/// (the manifest HEADs of a sync pass, the GETs of the events job, the
/// scanners pulling with the credentials regkeeper hands them) are dropped
/// instead of setting `pulled_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnRequests {
    /// Pulls whose `request.useragent` starts with this are regkeeper's own
    /// ([`OWN_USER_AGENT_PREFIX`]).
    pub user_agent_prefix: Option<String>,
    /// The registry account regkeeper uses (`registry.username`): pulls by
    /// this `actor.name` are its own. None for an anonymous registry.
    pub account: Option<String>,
}

impl OwnRequests {
    /// Nothing is regkeeper's own: every pull is kept.
    pub fn none() -> OwnRequests {
        OwnRequests::default()
    }

    /// regkeeper's user agent, and `account` when it has one.
    pub fn regkeeper(account: Option<String>) -> OwnRequests {
        OwnRequests {
            user_agent_prefix: Some(OWN_USER_AGENT_PREFIX.to_string()),
            account: account.filter(|account| !account.is_empty()),
        }
    }

    /// Whether `raw` (an event) was caused by regkeeper: its
    /// `request.useragent` starts with the prefix or its `actor.name` is
    /// the account.
    pub fn caused(&self, raw: &Value) -> bool {
        let text = |pointer: &str| raw.pointer(pointer).and_then(Value::as_str).unwrap_or("");
        let by_user_agent = self.user_agent_prefix.as_deref().is_some_and(|prefix| {
            !prefix.is_empty() && text("/request/useragent").starts_with(prefix)
        });
        let by_account = self
            .account
            .as_deref()
            .is_some_and(|account| !account.is_empty() && text("/actor/name") == account);
        by_user_agent || by_account
    }
}

/// Why a body is not an envelope at all (the intake answers 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is not JSON.
    NotJson(String),
    /// JSON, but not `{"events":[...]}`.
    NotEnvelope,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::NotJson(error) => write!(f, "body is not JSON: {error}"),
            EnvelopeError::NotEnvelope => write!(
                f,
                "body is not a notification envelope: expected {{\"events\":[...]}}"
            ),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Parses and sorts one envelope, keeping every pull. Only a body that is
/// not JSON or not an object with an `events` array is an error; single bad
/// events are counted.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    parse_envelope_with(body, &OwnRequests::none())
}

/// Like [`parse_envelope`], and drops (counts in [`Envelope::own_pulls`])
/// the well-formed pulls `own` says regkeeper caused. Pushes and deletes
/// are kept whoever made them.
pub fn parse_envelope_with(body: &[u8], own: &OwnRequests) -> Result<Envelope, EnvelopeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| EnvelopeError::NotJson(error.to_string()))?;
    let events = value
        .as_object()
        .and_then(|object| object.get("events"))
        .and_then(Value::as_array)
        .ok_or(EnvelopeError::NotEnvelope)?;
    let mut envelope = Envelope::default();
    for raw in events {
        match sort(raw) {
            Sorted::Keep(event) if event.action == Action::Pull && own.caused(raw) => {
                envelope.own_pulls += 1
            }
            Sorted::Keep(event) => envelope.kept.push(KeptEvent {
                event,
                data: raw.to_string(),
            }),
            Sorted::Drop(_) => envelope.dropped += 1,
            Sorted::Malformed(malformed) => envelope.malformed.push(malformed),
        }
    }
    Ok(envelope)
}

/// [`Verdict`] with the malformed event's id and reason apart.
enum Sorted {
    Keep(Event),
    Drop(Dropped),
    Malformed(Malformed),
}

/// Decides what to do with one event: keep push and pull of manifests
/// (Docker schema 1 and 2, manifest list, OCI manifest and index) and every
/// delete; drop blob events, mounts and unknown actions.
/// The message of a malformed event is `event ID: REASON` (see
/// [`Malformed`]).
pub(crate) fn classify(raw: &Value) -> Verdict {
    match sort(raw) {
        Sorted::Keep(event) => Verdict::Keep(event),
        Sorted::Drop(dropped) => Verdict::Drop(dropped),
        Sorted::Malformed(malformed) => Verdict::Malformed(malformed.to_string()),
    }
}

fn sort(raw: &Value) -> Sorted {
    match raw.get("action").and_then(Value::as_str) {
        Some("push" | "pull" | "delete") => {}
        Some("mount") => return Sorted::Drop(Dropped::Mount),
        Some(other) => return Sorted::Drop(Dropped::UnknownAction(other.to_string())),
        None => return Sorted::Malformed(malformed(raw, "no action".to_string())),
    }
    let event = match parse_event(raw) {
        Ok(event) => event,
        Err(reason) => return Sorted::Malformed(malformed(raw, reason)),
    };
    match (event.action, event.media_type.as_deref()) {
        (Action::Delete, _) => Sorted::Keep(event),
        (_, Some(media_type)) if media_type::MANIFESTS.contains(&media_type) => Sorted::Keep(event),
        _ => Sorted::Drop(Dropped::Blob),
    }
}

fn malformed(raw: &Value, reason: String) -> Malformed {
    let id = raw
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(String::from);
    Malformed { id, reason }
}

/// Reads one event (push, pull or delete). Errors say what is missing or
/// wrong, with values from the event quoted and escaped (`{:?}`); they never
/// name secrets because events carry none. The id must be printable and at
/// most [`ID_MAX_LENGTH`] bytes; the repository, the tag and every digest
/// must be of the distribution grammar ([`reference`](mod@reference)).
pub fn parse_event(raw: &Value) -> Result<Event, String> {
    let object = raw.as_object().ok_or("event is not an object")?;
    let id = non_empty_str(object.get("id")).ok_or("no id")?.to_string();
    if id.len() > ID_MAX_LENGTH {
        return Err(format!(
            "id is longer than {ID_MAX_LENGTH} bytes ({})",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("id holds control characters".to_string());
    }
    let action = match object.get("action").and_then(Value::as_str) {
        Some("push") => Action::Push,
        Some("pull") => Action::Pull,
        Some("delete") => Action::Delete,
        Some(other) => return Err(format!("unknown action {other:?}")),
        None => return Err("no action".to_string()),
    };
    let timestamp_text = non_empty_str(object.get("timestamp")).ok_or("no timestamp")?;
    let timestamp = chrono::DateTime::parse_from_rfc3339(timestamp_text)
        .map_err(|error| format!("bad timestamp {timestamp_text:?}: {error}"))?
        .timestamp_millis();
    let target = object
        .get("target")
        .and_then(Value::as_object)
        .ok_or("target is missing or not an object")?;
    let repository = non_empty_str(target.get("repository")).ok_or("target has no repository")?;
    if !reference::is_repository_name(repository) {
        return Err(format!("bad repository name {repository:?}"));
    }
    let tag = optional_str(target.get("tag"), "target.tag")?;
    if let Some(tag) = &tag {
        if !reference::is_tag(tag) {
            return Err(format!("bad target.tag {tag:?}"));
        }
    }
    let digest = optional_str(target.get("digest"), "target.digest")?;
    if let Some(digest) = &digest {
        check_digest(digest)?;
    }
    let media_type = optional_str(target.get("mediaType"), "target.mediaType")?;
    let references = match target.get("references") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(parse_descriptor)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("target.references is not an array".to_string()),
    };
    match action {
        Action::Push | Action::Pull => {
            if media_type.is_none() {
                return Err(format!(
                    "{} event without target.mediaType",
                    action.as_str()
                ));
            }
            if digest.is_none() {
                return Err(format!("{} event without target.digest", action.as_str()));
            }
        }
        Action::Delete => {
            if digest.is_none() && tag.is_none() {
                return Err("delete event with neither target.digest nor target.tag".to_string());
            }
        }
    }
    Ok(Event {
        id,
        timestamp,
        action,
        repository: repository.to_string(),
        tag,
        digest,
        media_type,
        references,
    })
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// An optional string field: absent, null or "" are None; any other
/// non-string is malformed.
fn optional_str(value: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    if reference::is_digest(digest) {
        Ok(())
    } else {
        Err(format!("bad digest {digest:?}"))
    }
}

fn parse_descriptor(raw: &Value) -> Result<Descriptor, String> {
    let digest = non_empty_str(raw.get("digest")).ok_or("a reference has no digest")?;
    check_digest(digest)?;
    let size = raw
        .get("size")
        .and_then(Value::as_i64)
        .filter(|size| *size >= 0)
        .ok_or_else(|| format!("reference {digest} has no valid size"))?;
    let media_type = raw
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Descriptor {
        digest: digest.to_string(),
        size,
        media_type,
    })
}

/// What an image push tells about the image without asking the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// Config digest without `sha256:`.
    pub image_id: String,
    /// Config + layers, in bytes.
    pub size: i64,
}

/// Takes `image_id` and `size` from `target.references` of an image
/// manifest push (Docker schema 2 or OCI manifest): the config descriptor
/// gives the image id, the size is config + layers (as the registry client
/// computes it from the manifest). None when the event cannot tell (no
/// references, an index or schema 1, no config among the references): then
/// the manifest must be fetched. None too when the sizes add up past `i64`.
pub fn image_facts(event: &Event) -> Option<ImageFacts> {
    let media_type = event.media_type.as_deref()?;
    if !media_type::IMAGES.contains(&media_type) {
        return None;
    }
    let references = event.references.as_ref()?;
    let config = references
        .iter()
        .find(|reference| is_config_media_type(&reference.media_type))?;
    let image_id = config
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&config.digest)
        .to_string();
    // Sizes come from the registry's event: a sum past i64 is no size at
    // all, and the manifest (whose parser reports the overflow) is fetched.
    let size = references
        .iter()
        .try_fold(0i64, |total, reference| total.checked_add(reference.size))?;
    Some(ImageFacts { image_id, size })
}

fn is_config_media_type(media_type: &str) -> bool {
    media_type == DOCKER_CONFIG
        || media_type == OCI_CONFIG
        || (media_type.starts_with("application/")
            && media_type.contains(".config.")
            && media_type.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // Literal envelopes in the shape docker-registry 2.8 sends (ids, digests
    // and addresses made up for these tests).
    const OCI_PUSH: &str = r#"{"events":[{"id":"a1","timestamp":"2026-01-02T03:04:05.123456789Z","action":"push",
        "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":401,
          "digest":"sha256:8ffc","length":401,"repository":"ns/app",
          "url":"http://127.0.0.1:5000/v2/ns/app/manifests/sha256:8ffc","tag":"1.0",
          "references":[
            {"mediaType":"application/vnd.oci.image.config.v1+json","size":284,"digest":"sha256:9079"},
            {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":118,"digest":"sha256:9932"}]},
        "request":{"id":"r1","addr":"127.0.0.1:40662","host":"127.0.0.1:5000","method":"PUT","useragent":"skopeo/1.9.3"},
        "actor":{},"source":{"addr":"vm:5000","instanceID":"i1"}}]}"#;

    const SCHEMA2_PUSH: &str = r#"{"events":[{"id":"a2","timestamp":"2026-01-02T03:04:06Z","action":"push",
        "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":423,
          "digest":"sha256:5fdc","length":423,"repository":"app","tag":"latest",
          "references":[
            {"mediaType":"application/vnd.docker.container.image.v1+json","size":284,"digest":"sha256:9079"},
            {"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":118,"digest":"sha256:9932"},
            {"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1000,"digest":"sha256:aaaa"}]},
        "request":{"id":"r2","host":"127.0.0.1:5000","method":"PUT"},"actor":{"name":"alice"}}]}"#;

    const BLOB_PUSH: &str = r#"{"events":[{"id":"b1","timestamp":"2026-01-02T03:04:05Z","action":"push",
        "target":{"mediaType":"application/octet-stream","size":118,"digest":"sha256:9932","length":118,
          "repository":"ns/app","url":"http://127.0.0.1:5000/v2/ns/app/blobs/sha256:9932"},
        "request":{"id":"r3","method":"PUT"},"actor":{}}]}"#;

    const MOUNT: &str = r#"{"events":[{"id":"m1","timestamp":"2026-01-02T03:04:05Z","action":"mount",
        "target":{"mediaType":"application/octet-stream","size":118,"digest":"sha256:9932","length":118,
          "repository":"ns/other","fromRepository":"ns/app"},"request":{"method":"POST"},"actor":{}}]}"#;

    const PULL: &str = r#"{"events":[{"id":"p1","timestamp":"2026-01-02T03:04:10.5Z","action":"pull",
        "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":401,"digest":"sha256:8ffc",
          "repository":"ns/app","tag":"1.0"},"request":{"method":"GET"},"actor":{}}]}"#;

    const DELETE_DIGEST: &str = r#"{"events":[{"id":"d1","timestamp":"2026-01-02T03:04:31.570535895Z","action":"delete",
        "target":{"digest":"sha256:8ffc","repository":"ns/app"},"request":{"method":"DELETE"},"actor":{}}]}"#;

    const DELETE_TAG: &str = r#"{"events":[{"id":"d2","timestamp":"2026-01-02T03:04:31.571970371Z","action":"delete",
        "target":{"repository":"ns/app","tag":"latest"},"request":{"method":"DELETE"},"actor":{}}]}"#;

    fn only_kept(body: &str) -> Event {
        let envelope = parse_envelope(body.as_bytes()).unwrap();
        assert_eq!(envelope.kept.len(), 1, "{envelope:?}");
        assert_eq!(envelope.dropped, 0);
        assert!(envelope.malformed.is_empty());
        envelope.kept.into_iter().next().unwrap().event
    }

    #[test]
    fn oci_manifest_push_is_kept_with_its_references() {
        let event = only_kept(OCI_PUSH);
        assert_eq!(event.id, "a1");
        assert_eq!(event.action, Action::Push);
        assert_eq!(event.repository, "ns/app");
        assert_eq!(event.tag.as_deref(), Some("1.0"));
        assert_eq!(event.digest.as_deref(), Some("sha256:8ffc"));
        assert_eq!(event.timestamp, 1_767_323_045_123);
        assert_eq!(event.references.as_ref().map(Vec::len), Some(2));
        assert!(!event.is_index());
        assert_eq!(
            image_facts(&event),
            Some(ImageFacts {
                image_id: "9079".into(),
                size: 402
            })
        );
    }

    #[test]
    fn schema2_push_takes_config_and_layers_from_references() {
        let event = only_kept(SCHEMA2_PUSH);
        assert_eq!(event.repository, "app");
        assert_eq!(
            image_facts(&event),
            Some(ImageFacts {
                image_id: "9079".into(),
                size: 1402
            })
        );
    }

    #[test]
    fn stored_data_is_the_event_itself() {
        let envelope = parse_envelope(OCI_PUSH.as_bytes()).unwrap();
        let stored: Value = serde_json::from_str(&envelope.kept[0].data).unwrap();
        assert_eq!(stored["request"]["useragent"], "skopeo/1.9.3");
        assert_eq!(parse_event(&stored).unwrap(), envelope.kept[0].event);
    }

    #[test]
    fn blob_push_and_mount_are_dropped() {
        for body in [BLOB_PUSH, MOUNT] {
            let envelope = parse_envelope(body.as_bytes()).unwrap();
            assert!(envelope.kept.is_empty());
            assert_eq!(envelope.dropped, 1);
            assert!(envelope.malformed.is_empty());
        }
        let blob: Value = serde_json::from_str(BLOB_PUSH).unwrap();
        assert_eq!(classify(&blob["events"][0]), Verdict::Drop(Dropped::Blob));
        let mount: Value = serde_json::from_str(MOUNT).unwrap();
        assert_eq!(classify(&mount["events"][0]), Verdict::Drop(Dropped::Mount));
    }

    #[test]
    fn layer_and_config_media_types_are_dropped_like_blobs() {
        for media_type in [
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ] {
            let body = PULL.replace("application/vnd.oci.image.manifest.v1+json", media_type);
            let envelope = parse_envelope(body.as_bytes()).unwrap();
            assert_eq!(
                (envelope.kept.len(), envelope.dropped),
                (0, 1),
                "{media_type}"
            );
        }
    }

    #[test]
    fn every_manifest_media_type_is_kept() {
        for media_type in media_type::MANIFESTS {
            let body = PULL.replace("application/vnd.oci.image.manifest.v1+json", media_type);
            let event = only_kept(&body);
            assert_eq!(event.media_type.as_deref(), Some(*media_type));
            assert_eq!(
                event.is_index(),
                media_type.contains("index") || media_type.contains("list")
            );
        }
    }

    #[test]
    fn pull_is_kept_with_its_timestamp() {
        let event = only_kept(PULL);
        assert_eq!(event.action, Action::Pull);
        assert_eq!(event.timestamp, 1_767_323_050_500);
        assert_eq!(event.references, None);
        assert_eq!(image_facts(&event), None);
    }

    #[test]
    fn delete_by_digest_and_per_tag_delete_are_kept() {
        let by_digest = only_kept(DELETE_DIGEST);
        assert_eq!(by_digest.action, Action::Delete);
        assert_eq!(by_digest.digest.as_deref(), Some("sha256:8ffc"));
        assert_eq!(by_digest.tag, None);
        assert_eq!(by_digest.media_type, None);
        let by_tag = only_kept(DELETE_TAG);
        assert_eq!(by_tag.digest, None);
        assert_eq!(by_tag.tag.as_deref(), Some("latest"));
    }

    #[test]
    fn unknown_actions_are_dropped() {
        let body = DELETE_TAG.replace("\"delete\"", "\"frobnicate\"");
        let envelope = parse_envelope(body.as_bytes()).unwrap();
        assert_eq!(
            (
                envelope.kept.len(),
                envelope.dropped,
                envelope.malformed.len()
            ),
            (0, 1, 0)
        );
    }

    #[test]
    fn push_without_media_type_is_malformed_not_fatal() {
        // Portus crashed on this (nil.starts_with?) and lost the rest of the envelope.
        let body = r#"{"events":[
            {"id":"x1","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"digest":"sha256:1","repository":"a","tag":"t"}},
            {"id":"x2","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"digest":"sha256:1","repository":"a"}}]}"#;
        let envelope = parse_envelope(body.as_bytes()).unwrap();
        assert_eq!(envelope.kept.len(), 1);
        assert_eq!(envelope.kept[0].event.id, "x2");
        assert_eq!(
            envelope.malformed,
            vec!["event x1: push event without target.mediaType".to_string()]
        );
    }

    #[test]
    fn malformed_events_are_counted_and_the_rest_kept() {
        let body = r#"{"events":[
            "not an object",
            {"timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"digest":"sha256:1","repository":"a"}},
            {"id":"n2","action":"delete","target":{"digest":"sha256:1","repository":"a"}},
            {"id":"n3","timestamp":"yesterday","action":"delete","target":{"digest":"sha256:1","repository":"a"}},
            {"id":"n4","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":"ns/app"},
            {"id":"n5","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"digest":"sha256:1"}},
            {"id":"n6","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"a"}},
            {"id":"n7","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"a","digest":"nodigest"}},
            {"id":"n8","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a","tag":"t"}},
            {"id":"n9","timestamp":"2026-01-02T03:04:05Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a","digest":"sha256:1","references":[{"digest":"sha256:2"}]}},
            {"id":"n10","timestamp":"2026-01-02T03:04:05Z","action":7,"target":{}},
            {"id":"n11","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"/a","digest":"sha256:1"}},
            {"id":"ok","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"a","tag":"t"}}]}"#;
        let envelope = parse_envelope(body.as_bytes()).unwrap();
        assert_eq!(envelope.kept.len(), 1);
        assert_eq!(envelope.kept[0].event.id, "ok");
        assert_eq!(envelope.dropped, 0);
        assert_eq!(envelope.malformed.len(), 12, "{:#?}", envelope.malformed);
    }

    #[test]
    fn several_events_keep_envelope_order() {
        let body = r#"{"events":[
            {"id":"e1","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"a","digest":"sha256:1"}},
            {"id":"e2","timestamp":"2026-01-02T03:04:05Z","action":"mount","target":{}},
            {"id":"e3","timestamp":"2026-01-02T03:04:05Z","action":"delete","target":{"repository":"a","tag":"x"}}]}"#;
        let envelope = parse_envelope(body.as_bytes()).unwrap();
        let ids: Vec<_> = envelope
            .kept
            .iter()
            .map(|kept| kept.event.id.as_str())
            .collect();
        assert_eq!(ids, ["e1", "e3"]);
        assert_eq!(envelope.dropped, 1);
    }

    #[test]
    fn bodies_that_are_not_envelopes_are_errors() {
        assert!(matches!(
            parse_envelope(b"garbage"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            parse_envelope(b""),
            Err(EnvelopeError::NotJson(_))
        ));
        for body in ["[]", "{}", r#"{"events":{}}"#, r#"{"events":null}"#, "42"] {
            assert_eq!(
                parse_envelope(body.as_bytes()),
                Err(EnvelopeError::NotEnvelope),
                "{body}"
            );
        }
        assert_eq!(parse_envelope(br#"{"events":[]}"#), Ok(Envelope::default()));
    }

    #[test]
    fn index_push_needs_the_manifest() {
        let body = OCI_PUSH.replace(
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        );
        let event = only_kept(&body);
        assert!(event.is_index());
        assert_eq!(image_facts(&event), None);
    }

    #[test]
    fn references_without_a_config_need_the_manifest() {
        let body = SCHEMA2_PUSH.replace(
            "application/vnd.docker.container.image.v1+json",
            "application/octet-stream",
        );
        assert_eq!(image_facts(&only_kept(&body)), None);
    }

    #[test]
    fn content_types_of_envelopes() {
        assert!(is_envelope_content_type(EVENTS_V1));
        assert!(is_envelope_content_type(EVENTS_V2));
        assert!(is_envelope_content_type("application/json; charset=utf-8"));
        assert!(is_envelope_content_type("Application/JSON"));
        assert!(!is_envelope_content_type("text/plain"));
        assert!(!is_envelope_content_type(""));
    }

    /// A manifest pull by `actor` with `useragent`, as docker-registry sends it.
    fn pull_by(id: &str, actor: Option<&str>, useragent: &str) -> Value {
        let mut event = json!({"id": id, "timestamp": "2026-01-02T03:04:10Z", "action": "pull",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:8ffc", "repository": "ns/app", "tag": "1.0"},
            "request": {"id": "r", "method": "HEAD", "useragent": useragent},
            "actor": {}});
        if let Some(actor) = actor {
            event["actor"]["name"] = json!(actor);
        }
        event
    }

    fn envelope_of(events: &[Value]) -> Vec<u8> {
        json!({ "events": events }).to_string().into_bytes()
    }

    #[test]
    fn own_pulls_are_dropped_by_user_agent_or_account_and_others_kept() {
        let own = OwnRequests::regkeeper(Some("regkeeper".into()));
        let mut push_by_account =
            serde_json::from_str::<Value>(OCI_PUSH).unwrap()["events"][0].clone();
        push_by_account["actor"] = json!({"name": "regkeeper"});
        push_by_account["request"]["useragent"] = json!("regkeeper/0.1.0");
        let mut delete_by_account =
            serde_json::from_str::<Value>(DELETE_TAG).unwrap()["events"][0].clone();
        delete_by_account["actor"] = json!({"name": "regkeeper"});
        let body = envelope_of(&[
            pull_by("sync-head", Some("regkeeper"), "regkeeper/0.1.0"),
            pull_by("scanner", Some("regkeeper"), "clair/4.7"),
            pull_by("anonymous-regkeeper", None, "regkeeper/0.1.0"),
            pull_by("other-user", Some("other"), "curl/8.5.0"),
            pull_by("anonymous-client", None, "docker/24.0"),
            pull_by("look-alike", Some("regkeeper2"), "Regkeeper/1 (not us)"),
            push_by_account,
            delete_by_account,
        ]);
        let envelope = parse_envelope_with(&body, &own).unwrap();
        let kept: Vec<&str> = envelope
            .kept
            .iter()
            .map(|kept| kept.event.id.as_str())
            .collect();
        assert_eq!(
            kept,
            ["other-user", "anonymous-client", "look-alike", "a1", "d2"]
        );
        assert_eq!(envelope.own_pulls, 3);
        assert_eq!((envelope.dropped, envelope.malformed.len()), (0, 0));

        // Without an account only the user agent tells; an empty account
        // never matches the empty actor of anonymous pulls.
        let anonymous = parse_envelope_with(&body, &OwnRequests::regkeeper(None)).unwrap();
        assert_eq!(anonymous.own_pulls, 2);
        let empty_account = OwnRequests {
            user_agent_prefix: None,
            account: Some(String::new()),
        };
        assert_eq!(
            parse_envelope_with(&body, &empty_account)
                .unwrap()
                .own_pulls,
            0
        );
        // parse_envelope keeps every pull.
        assert_eq!(parse_envelope(&body).unwrap().own_pulls, 0);
        assert_eq!(parse_envelope(&body).unwrap().kept.len(), 8);
    }

    #[test]
    fn own_blob_pulls_stay_dropped_as_blobs() {
        let mut blob = pull_by("blob", Some("regkeeper"), "regkeeper/0.1.0");
        blob["target"]["mediaType"] = json!("application/octet-stream");
        let own = OwnRequests::regkeeper(Some("regkeeper".into()));
        let envelope = parse_envelope_with(&envelope_of(&[blob]), &own).unwrap();
        assert_eq!((envelope.dropped, envelope.own_pulls), (1, 0));
    }

    #[test]
    fn names_tags_and_digests_outside_the_grammar_are_malformed() {
        let base = pull_by("p", None, "curl/8");
        let cases: [(&str, &str, Value, &str); 6] = [
            (
                "traversal",
                "/target/repository",
                json!("../../../admin/secret"),
                r#"bad repository name "../../../admin/secret""#,
            ),
            (
                "upper",
                "/target/repository",
                json!("NS/App"),
                "bad repository name",
            ),
            (
                "control",
                "/target/repository",
                json!("ns/app\n\u{1b}[31m"),
                r#"bad repository name "ns/app\n\u{1b}[31m""#,
            ),
            (
                "tag",
                "/target/tag",
                json!("../x"),
                r#"bad target.tag "../x""#,
            ),
            (
                "digest",
                "/target/digest",
                json!("../../x:abc"),
                r#"bad digest "../../x:abc""#,
            ),
            (
                "long-tag",
                "/target/tag",
                json!("t".repeat(129)),
                "bad target.tag",
            ),
        ];
        for (id, pointer, value, reason) in cases {
            let mut event = base.clone();
            event["id"] = json!(id);
            *event.pointer_mut(pointer).unwrap() = value;
            let envelope = parse_envelope(&envelope_of(&[event.clone()])).unwrap();
            assert!(envelope.kept.is_empty(), "{id}");
            assert_eq!(envelope.malformed.len(), 1, "{id}");
            assert_eq!(envelope.malformed[0].id.as_deref(), Some(id));
            assert!(
                envelope.malformed[0].reason.starts_with(reason),
                "{id}: {:?}",
                envelope.malformed[0]
            );
            assert!(
                matches!(classify(&event), Verdict::Malformed(message) if message.starts_with(&format!("event {id}: {reason}")))
            );
        }
    }

    #[test]
    fn ids_with_control_characters_or_too_long_are_malformed_and_shown_escaped() {
        let mut control = pull_by("evil", None, "curl/8");
        control["id"] = json!("evil\n\u{1b}[31m");
        let mut long = pull_by("x", None, "curl/8");
        long["id"] = json!("x".repeat(ID_MAX_LENGTH + 1));
        let mut longest = pull_by("x", None, "curl/8");
        longest["id"] = json!("x".repeat(ID_MAX_LENGTH));
        let envelope = parse_envelope(&envelope_of(&[control, long, longest])).unwrap();
        assert_eq!(
            envelope.kept.len(),
            1,
            "an id of {ID_MAX_LENGTH} bytes is fine"
        );
        assert_eq!(envelope.malformed.len(), 2);
        assert_eq!(envelope.malformed[0].reason, "id holds control characters");
        assert_eq!(
            envelope.malformed[0].to_string(),
            r"event evil\n\u{1b}[31m: id holds control characters"
        );
        assert!(envelope.malformed[1]
            .reason
            .starts_with("id is longer than 256 bytes"));
    }
}

/// Property tests on generated input: no envelope, event or reference list
/// makes these functions panic, every event of an envelope is accounted
/// for, and a malformed event's reason names the field that broke it.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::testing::hostile;

    fn valid_events() -> Vec<Value> {
        vec![
            json!({"id": "a1", "timestamp": "2026-01-02T03:04:05.123456789Z", "action": "push",
                "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 401,
                    "digest": "sha256:8ffc", "repository": "ns/app", "tag": "1.0",
                    "references": [
                        {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 284, "digest": "sha256:9079"},
                        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 118, "digest": "sha256:9932"}]},
                "request": {"id": "r1", "method": "PUT"}, "actor": {}}),
            json!({"id": "p1", "timestamp": "2026-01-02T03:04:10.5Z", "action": "pull",
                "target": {"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                    "digest": "sha256:8ffc", "repository": "app", "tag": "latest"}}),
            json!({"id": "d1", "timestamp": "2026-01-02T03:04:11Z", "action": "delete",
                "target": {"digest": "sha256:8ffc", "repository": "ns/a/b"}}),
            json!({"id": "d2", "timestamp": "2026-01-02T03:04:12Z", "action": "delete",
                "target": {"repository": "app", "tag": "old"}}),
        ]
    }

    fn any_mutation() -> impl Strategy<Value = hostile::Mutation> {
        prop::sample::select(valid_events()).prop_flat_map(hostile::mutation)
    }

    fn envelope_text(events: &[Value]) -> Vec<u8> {
        json!({ "events": events }).to_string().into_bytes()
    }

    proptest! {
        #![proptest_config(hostile::config(256))]

        #[test]
        fn any_bytes_are_an_envelope_or_an_error(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_envelope(&body);
        }

        #[test]
        fn any_json_is_an_envelope_or_an_error(value in hostile::json_value()) {
            let _ = parse_envelope(value.to_string().as_bytes());
            let _ = classify(&value);
            let _ = parse_event(&value);
        }

        #[test]
        fn every_event_of_an_envelope_is_kept_dropped_or_malformed(
            events in prop::collection::vec(
                prop_oneof![hostile::json_value(), any_mutation().prop_map(|m| m.value)],
                0..8,
            )
        ) {
            let envelope = parse_envelope(&envelope_text(&events)).expect("an envelope");
            prop_assert_eq!(
                envelope.kept.len() + envelope.dropped + envelope.malformed.len(),
                events.len()
            );
        }

        #[test]
        fn a_mutated_event_is_malformed_naming_the_field_or_still_readable(mutation in any_mutation()) {
            match classify(&mutation.value) {
                Verdict::Malformed(reason) => prop_assert!(
                    mutation.named_in(&reason),
                    "{reason:?} does not name {:?}", mutation.path
                ),
                Verdict::Keep(event) => {
                    let again = parse_event(&mutation.value).expect("a kept event parses");
                    prop_assert_eq!(&again, &event);
                    let _ = image_facts(&event);
                }
                Verdict::Drop(_) => {}
            }
        }

        #[test]
        fn kept_events_read_back_from_their_stored_data_unchanged(events in prop::collection::vec(any_mutation().prop_map(|m| m.value), 0..6)) {
            let envelope = parse_envelope(&envelope_text(&events)).expect("an envelope");
            for kept in envelope.kept {
                let stored: Value = serde_json::from_str(&kept.data).expect("stored data is JSON");
                prop_assert_eq!(parse_event(&stored), Ok(kept.event));
            }
        }

        #[test]
        fn image_facts_of_any_references_never_panic(
            sizes in prop::collection::vec(prop_oneof![Just(i64::MAX), 0..i64::MAX], 0..6),
            config_at in any::<prop::sample::Index>(),
        ) {
            let mut references: Vec<Descriptor> = sizes
                .iter()
                .map(|size| Descriptor {
                    digest: "sha256:aa".into(),
                    size: *size,
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                })
                .collect();
            if !references.is_empty() {
                let at = config_at.index(references.len());
                references[at].media_type = "application/vnd.oci.image.config.v1+json".into();
            }
            let event = Event {
                id: "e".into(),
                timestamp: 0,
                action: Action::Push,
                repository: "app".into(),
                tag: None,
                digest: Some("sha256:bb".into()),
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                references: Some(references),
            };
            if let Some(facts) = image_facts(&event) {
                prop_assert!(facts.size >= 0);
            }
        }
    }

    #[test]
    fn valid_events_are_kept_as_before() {
        let envelope = parse_envelope(&envelope_text(&valid_events())).expect("an envelope");
        let ids: Vec<&str> = envelope
            .kept
            .iter()
            .map(|kept| kept.event.id.as_str())
            .collect();
        assert_eq!(ids, ["a1", "p1", "d1", "d2"]);
        let facts = image_facts(&envelope.kept[0].event).expect("facts of an image push");
        assert_eq!(
            facts,
            ImageFacts {
                image_id: "9079".into(),
                size: 402
            }
        );
    }

    #[test]
    fn image_facts_with_sizes_overflowing_i64_is_none_not_a_panic() {
        let mut event = valid_events().remove(0);
        event["target"]["references"][0]["size"] = json!(i64::MAX);
        event["target"]["references"][1]["size"] = json!(i64::MAX);
        let envelope = parse_envelope(&envelope_text(&[event])).expect("an envelope");
        assert_eq!(envelope.kept.len(), 1, "the event itself is kept");
        assert_eq!(image_facts(&envelope.kept[0].event), None);
    }

    #[test]
    fn deeply_nested_envelope_is_not_json() {
        let body = format!("{{\"events\":[{}]}}", hostile::nested_arrays(100_000));
        assert!(matches!(
            parse_envelope(body.as_bytes()),
            Err(EnvelopeError::NotJson(_))
        ));
    }
}
