//! The notification intake: an HTTP server that receives the registry's
//! notification envelopes, filters them, stores kept events durably and wakes
//! the events job. It never does registry I/O.
//!
//! `POST /v2/webhooks/events` (and `/events`): without a token on a loopback
//! address, the `Host` header must name the loopback interface (421,
//! `host.rs`); the `Authorization` header is checked first (constant time)
//! when a token is configured (401), then the body limit (413) and the time
//! the body takes (408, `server::BODY_READ_TIMEOUT`), the content type (415)
//! and the envelope (400). Malformed events, the pulls regkeeper caused
//! itself and irrelevant events are dropped. All kept events of one envelope
//! go into one transaction on the blocking pool; the answer is 202 only
//! after the commit and 503 only when the database write failed (the
//! registry then redelivers, with the same event ids). Dropped and malformed
//! events are answered 202 too: the registry retries any other answer
//! forever and holds every later event back meanwhile. One WARN line per
//! envelope sums up its malformed events (`summary.rs`).
//! `GET /healthz` reports the daemon and the database (liveness);
//! `GET /readyz` answers 200 only when the database answers and has every
//! migration of this version, else 503 with a short reason (readiness);
//! `GET /metrics` (when the daemon asks for it, see `crate::metrics`) the
//! metrics. Every answer to a notification is counted by its status code.
//!
//! `server.rs` is the accept loop with the connection cap and the
//! header-read timeout that keep the intake reachable under a flood of idle
//! or slow connections.

mod host;
mod server;
mod summary;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::{NotificationsConfig, RegistryConfig};
use crate::notification::{self, OwnRequests};
use crate::scheduler::Waker;
use crate::store::{NewEvent, Store};

use host::LoopbackHosts;
pub(crate) use server::serve as serve_router;
pub use server::{Limits, BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

/// The paths the registry may be pointed at.
pub(crate) const EVENT_PATHS: &[&str] = &["/v2/webhooks/events", "/events"];

/// What the intake needs: where to store, what to check, whom to wake.
#[derive(Clone)]
pub struct Intake {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The exact `Authorization` header value required, if any; never logged.
    pub token: Option<String>,
    /// Largest accepted body in bytes.
    pub body_limit: usize,
    /// Wakes the events job after new events were stored.
    pub waker: Option<Waker>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field(
                "token",
                &self.token.as_ref().map(|_| crate::config::REDACTED),
            )
            .field("body_limit", &self.body_limit)
            .field("waker", &self.waker.is_some())
            .finish()
    }
}

/// Refuses a configuration that would accept unauthenticated notifications
/// from other machines: a non-loopback `listen` needs a token, unless
/// `allow_unauthenticated` says otherwise.
pub(crate) fn check_listen(config: &NotificationsConfig, listen: SocketAddr) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || config.token.is_some() || config.allow_unauthenticated {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen for notifications on {listen} without a token: anyone who can reach it could \
         rewrite the database; configure a token (notifications.token_file) or set \
         notifications.allow_unauthenticated = true"
    )
}

/// How the intake serves, beyond what [`Intake`] holds.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Timeouts and the connection cap.
    pub limits: Limits,
    /// Whose pulls are regkeeper's own (dropped, never stored).
    pub own_requests: OwnRequests,
    /// Serves `GET /metrics` too when set.
    pub metrics: Option<crate::metrics::Exporter>,
}

/// What the handlers share: the intake and what serving derived.
struct Shared {
    intake: Intake,
    own_requests: OwnRequests,
    body_read: Duration,
    /// Set when the intake runs without a token on a loopback address.
    loopback_hosts: Option<LoopbackHosts>,
}

fn router(shared: Shared, metrics: Option<crate::metrics::Exporter>) -> Router {
    let state = Arc::new(shared);
    let mut events = Router::new();
    for path in EVENT_PATHS {
        events = events.route(path, post(receive));
    }
    let events = events
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .layer(DefaultBodyLimit::max(state.intake.body_limit))
        .layer(axum::middleware::from_fn(count_answer));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(events)
        .with_state(state);
    match metrics {
        Some(exporter) => router.merge(crate::metrics::router(exporter)),
        None => router,
    }
}

/// Counts every answer to a notification, refusals included.
async fn count_answer(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    crate::metrics::notification(response.status().as_u16());
    response
}

/// Serves the intake on an already-bound listener with `settings` until
/// `shutdown` resolves, then lets requests in flight finish.
pub(crate) async fn serve_with(
    listener: tokio::net::TcpListener,
    intake: Intake,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .map_err(|error| anyhow::anyhow!("reading the intake's address: {error}"))?;
    // Without a token on loopback, the address is the only protection, and
    // DNS rebinding gets around it unless the Host header is checked.
    let loopback_hosts =
        (intake.token.is_none() && address.ip().is_loopback()).then_some(LoopbackHosts {
            listen: address.ip(),
        });
    log::info!(
        "intake listening on http://{address}{} ({})",
        EVENT_PATHS[0],
        match (&intake.token, loopback_hosts) {
            (Some(_), _) => "token required",
            (None, Some(_)) => "no token, loopback Host names only",
            (None, None) => "no token",
        }
    );
    let shared = Shared {
        intake,
        own_requests: settings.own_requests,
        body_read: settings.limits.body_read,
        loopback_hosts,
    };
    server::serve(
        listener,
        router(shared, settings.metrics),
        settings.limits,
        shutdown,
    )
    .await;
    Ok(())
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Checks the `Host` header (token-less loopback intake) and the
/// `Authorization` header (intake with a token) before the body is read.
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(loopback_hosts) = &shared.loopback_hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .map(|value| String::from_utf8_lossy(value.as_bytes()));
        if !loopback_hosts.allow(host.as_deref()) {
            log::warn!(
                "intake: rejected a notification for Host {}: without a token only loopback names \
                 are accepted",
                host.as_deref()
                    .map_or("(none)".to_string(), summary::quoted)
            );
            return error_response(
                StatusCode::MISDIRECTED_REQUEST,
                "without a token the intake accepts only Host 127.0.0.1, localhost or [::1]",
            );
        }
    }
    if let Some(token) = &shared.intake.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|value| value.as_bytes())
            .unwrap_or(b"");
        if !bool::from(given.ct_eq(token.as_bytes())) {
            log::warn!(
                "intake: rejected a notification with a missing or wrong Authorization header"
            );
            return error_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong Authorization header",
            );
        }
    }
    next.run(request).await
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    // The body limit (413) is the extractor's, set by DefaultBodyLimit.
    let body = match tokio::time::timeout(shared.body_read, Bytes::from_request(request, &())).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) => return rejection.into_response(),
        Err(_) => {
            log::debug!(
                "intake: a request body did not arrive within {}",
                humantime::format_duration(shared.body_read)
            );
            let mut response = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    if !notification::is_envelope_content_type(&content_type) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {content_type:?} is not {}",
                notification::EVENTS_V1
            ),
        );
    }
    let envelope = match notification::parse_envelope_with(&body, &shared.own_requests) {
        Ok(envelope) => envelope,
        Err(error) => {
            log::warn!("intake: rejected a notification: {error}");
            return error_response(StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    let received = envelope.kept.len();
    let total = received + envelope.dropped + envelope.own_pulls + envelope.malformed.len();
    if let Some(line) = summary::malformed_line(&envelope.malformed, total) {
        log::warn!("{line}");
    }
    let events: Vec<NewEvent> = envelope
        .kept
        .iter()
        .map(|kept| NewEvent {
            event_id: kept.event.id.clone(),
            action: kept.event.action.as_str().to_string(),
            repository: kept.event.repository.clone(),
            data: kept.data.clone(),
        })
        .collect();
    let stored = if events.is_empty() {
        0
    } else {
        let store = shared.intake.store.clone();
        let now = crate::time::now_ms();
        let written = tokio::task::spawn_blocking(move || store.insert_events(&events, now)).await;
        match written {
            Ok(Ok(stored)) => stored,
            Ok(Err(error)) => {
                log::error!("intake: storing {received} events: {error:#}");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the events could not be stored",
                );
            }
            Err(error) => {
                log::error!(
                    "intake: storing {received} events: the writer did not finish: {error}"
                );
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the events could not be stored",
                );
            }
        }
    };
    let duplicates = received as u64 - stored.min(received as u64);
    crate::metrics::intake_events(&crate::metrics::EventTally {
        stored,
        duplicates,
        irrelevant: envelope.dropped as u64,
        own_pulls: envelope.own_pulls as u64,
        malformed: envelope.malformed.len() as u64,
    });
    log::debug!(
        "intake: {total} events: {stored} stored, {duplicates} already known, {} dropped, \
         {} own pulls dropped, {} malformed",
        envelope.dropped,
        envelope.own_pulls,
        envelope.malformed.len()
    );
    if stored > 0 {
        if let Some(waker) = &shared.intake.waker {
            waker.wake();
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "stored": stored,
            "duplicates": duplicates,
            "dropped": envelope.dropped,
            "own_pulls": envelope.own_pulls,
            "malformed": envelope.malformed.len(),
        })),
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.intake.store.clone();
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({ "daemon": "ok", "database": "ok" })),
        )
            .into_response(),
        Ok(Err(error)) => {
            log::warn!("healthz: the database does not answer: {error:#}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "daemon": "ok", "database": "unreachable" })),
            )
                .into_response()
        }
        Err(error) => {
            log::warn!("healthz: the database check did not finish: {error}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "daemon": "ok", "database": "unknown" })),
            )
                .into_response()
        }
    }
}

/// How long `/readyz` waits for the database before it answers 503: a
/// server that stopped answering would otherwise hold the probe for the
/// pool's whole connection timeout.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the daemon can do its work: the database answers (within
/// [`READY_TIMEOUT`]) and its schema is this version's. 200
/// `{"ready":true}`, or 503 `{"ready":false,"reason":...}` with the cause
/// logged at warn.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.intake.store.clone();
    let checking = tokio::task::spawn_blocking(move || readiness(store.as_ref()));
    let reason = match tokio::time::timeout(READY_TIMEOUT, checking).await {
        Ok(Ok(Ok(()))) => {
            return (StatusCode::OK, Json(json!({ "ready": true }))).into_response();
        }
        Ok(Ok(Err((reason, cause)))) => {
            log::warn!("readyz: {reason}: {cause}");
            reason
        }
        Err(_) => {
            log::warn!(
                "readyz: the database did not answer within {}",
                humantime::format_duration(READY_TIMEOUT)
            );
            DOES_NOT_ANSWER.to_string()
        }
        Ok(Err(error)) => {
            log::warn!("readyz: the database check did not finish: {error}");
            "the database check did not finish".to_string()
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "ready": false, "reason": reason })),
    )
        .into_response()
}

/// The reason `/readyz` gives for a database that does not answer.
const DOES_NOT_ANSWER: &str = "the database does not answer";

/// Checks readiness (blocking): Err with a short reason and the details.
fn readiness(store: &dyn Store) -> Result<(), (String, String)> {
    use crate::store::migrations::SchemaState;
    let unreachable = |error: anyhow::Error| (DOES_NOT_ANSWER.to_string(), format!("{error:#}"));
    store.ping().map_err(unreachable)?;
    match store.schema_state().map_err(unreachable)? {
        SchemaState::Current => Ok(()),
        SchemaState::Pending(versions) => {
            let versions: Vec<String> = versions.iter().map(i64::to_string).collect();
            let reason = format!("migrations not applied: {}", versions.join(", "));
            Err((reason, "the daemon applies them when it starts".to_string()))
        }
        SchemaState::Newer(version) => Err((
            format!("the database schema is at version {version}, newer than this regkeeper"),
            "upgrade regkeeper".to_string(),
        )),
    }
}

/// A running intake, stopped by [`RunningIntake::stop`].
pub struct RunningIntake {
    /// The address it listens on.
    pub address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningIntake {
    /// Stops accepting notifications and waits for requests in flight.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|error| anyhow::anyhow!("the intake task ended abnormally: {error}"))?
    }
}

/// Serves the intake on an already-bound listener in a task of its own,
/// with the default [`Settings`] (every pull kept).
pub fn spawn(listener: tokio::net::TcpListener, intake: Intake) -> anyhow::Result<RunningIntake> {
    spawn_with(listener, intake, Settings::default())
}

/// Serves the intake on an already-bound listener with `settings` in a task
/// of its own.
pub fn spawn_with(
    listener: tokio::net::TcpListener,
    intake: Intake,
    settings: Settings,
) -> anyhow::Result<RunningIntake> {
    let address = listener
        .local_addr()
        .map_err(|error| anyhow::anyhow!("reading the intake's address: {error}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(listener, intake, settings, async {
        let _ = stopped.await;
    }));
    Ok(RunningIntake {
        address,
        stop,
        task,
    })
}

/// Starts the intake the configuration asks for (none when `listen` is
/// unset): refuses an unauthenticated non-loopback address, binds, serves
/// with the default [`Limits`], and `GET /metrics` when `metrics` is set.
/// Pulls by the account of `registry` (its `username`) or with regkeeper's
/// user agent are regkeeper's own and dropped.
pub(crate) async fn start(
    config: &NotificationsConfig,
    registry: &RegistryConfig,
    store: Arc<dyn Store>,
    waker: Option<Waker>,
    metrics: Option<crate::metrics::Exporter>,
) -> anyhow::Result<Option<RunningIntake>> {
    let Some(listen) = config.listen else {
        log::info!("notifications: no listen address configured, the intake is off");
        return Ok(None);
    };
    check_listen(config, listen)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("binding the notification intake to {listen}: {error}"))?;
    let intake = Intake {
        store,
        token: config.token.clone(),
        body_limit: config.body_limit,
        waker,
    };
    let settings = Settings {
        limits: Limits::default(),
        own_requests: OwnRequests::regkeeper(registry.username.clone()),
        metrics,
    };
    spawn_with(listener, intake, settings).map(Some)
}
