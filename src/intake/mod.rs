//! The notification intake: an HTTP server that receives the registry's
//! notification envelopes, filters them, stores kept events durably and wakes
//! the events job. It never does registry I/O.
//!
//! `POST /v2/webhooks/events` (and `/events`): the `Authorization` header is
//! checked first (constant time) when a token is configured (401), then the
//! body limit (413), the content type (415) and the envelope (400). All kept
//! events of one envelope go into one transaction on the blocking pool; the
//! answer is 202 only after the commit and 503 only when the database write
//! failed (the registry then redelivers, with the same event ids). Dropped
//! and malformed events are answered 202 too: the registry retries any other
//! answer forever and holds every later event back meanwhile.
//! `GET /healthz` reports the daemon and the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::NotificationsConfig;
use crate::notification;
use crate::scheduler::Waker;
use crate::store::{NewEvent, Store};

/// The paths the registry may be pointed at.
pub const EVENT_PATHS: &[&str] = &["/v2/webhooks/events", "/events"];

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
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("body_limit", &self.body_limit)
            .field("waker", &self.waker.is_some())
            .finish()
    }
}

/// Refuses a configuration that would accept unauthenticated notifications
/// from other machines: a non-loopback `listen` needs a token, unless
/// `allow_unauthenticated` says otherwise.
pub fn check_listen(config: &NotificationsConfig, listen: SocketAddr) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || config.token.is_some() || config.allow_unauthenticated {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen for notifications on {listen} without a token: anyone who can reach it could \
         rewrite the database; configure a token (notifications.token_file) or set \
         notifications.allow_unauthenticated = true"
    )
}

/// The intake's routes, for [`serve`] and for tests.
pub fn router(intake: Intake) -> Router {
    let state = Arc::new(intake);
    let mut events = Router::new();
    for path in EVENT_PATHS {
        events = events.route(path, post(receive));
    }
    let events = events
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .layer(DefaultBodyLimit::max(state.body_limit));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(events)
        .with_state(state)
}

/// Serves the intake on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    intake: Intake,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().ok();
    if let Some(address) = address {
        log::info!(
            "intake listening on http://{address}{} ({})",
            EVENT_PATHS[0],
            if intake.token.is_some() {
                "token required"
            } else {
                "no token"
            }
        );
    }
    axum::serve(listener, router(intake))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|error| anyhow::anyhow!("serving notifications: {error}"))
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Checks the `Authorization` header before the body is read.
async fn authorize(State(intake): State<Arc<Intake>>, request: Request, next: Next) -> Response {
    if let Some(token) = &intake.token {
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

async fn receive(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !notification::is_envelope_content_type(content_type) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {content_type:?} is not {}",
                notification::EVENTS_V1
            ),
        );
    }
    let envelope = match notification::parse_envelope(&body) {
        Ok(envelope) => envelope,
        Err(error) => {
            log::warn!("intake: rejected a notification: {error}");
            return error_response(StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    for reason in &envelope.malformed {
        log::warn!("intake: dropped a malformed event: {reason}");
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
    let received = events.len();
    let stored = if events.is_empty() {
        0
    } else {
        let store = intake.store.clone();
        let now = chrono::Utc::now().timestamp_millis();
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
    log::debug!(
        "intake: {} events: {stored} stored, {} already known, {} dropped, {} malformed",
        received + envelope.dropped + envelope.malformed.len(),
        received as u64 - stored.min(received as u64),
        envelope.dropped,
        envelope.malformed.len()
    );
    if stored > 0 {
        if let Some(waker) = &intake.waker {
            waker.wake();
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "stored": stored,
            "duplicates": received as u64 - stored.min(received as u64),
            "dropped": envelope.dropped,
            "malformed": envelope.malformed.len(),
        })),
    )
        .into_response()
}

async fn healthz(State(intake): State<Arc<Intake>>) -> Response {
    let store = intake.store.clone();
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

/// Serves the intake on an already-bound listener in a task of its own.
pub fn spawn(listener: tokio::net::TcpListener, intake: Intake) -> anyhow::Result<RunningIntake> {
    let address = listener
        .local_addr()
        .map_err(|error| anyhow::anyhow!("reading the intake's address: {error}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, intake, async {
        let _ = stopped.await;
    }));
    Ok(RunningIntake {
        address,
        stop,
        task,
    })
}

/// Starts the intake the configuration asks for (none when `listen` is
/// unset): refuses an unauthenticated non-loopback address, binds, serves.
pub async fn start(
    config: &NotificationsConfig,
    store: Arc<dyn Store>,
    waker: Option<Waker>,
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
    spawn(listener, intake).map(Some)
}
