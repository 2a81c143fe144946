//! Serving the metrics: [`Exporter`] renders them (queue gauges brought up
//! to date first), [`router`] is the `GET /metrics` route the intake merges
//! into its own, and [`start`] runs a listener of its own for
//! `[metrics] listen`, on the intake's accept loop (its connection cap and
//! header-read timeout). The scrape runs on the blocking pool: it may read
//! the database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::queue::QueueGauges;
use crate::config::Config;
use crate::store::Store;

/// The `Content-Type` of a scrape: the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape needs: the queue gauges of the daemon's database. Cheap to
/// clone; every clone shares the same cache.
#[derive(Clone)]
pub struct Exporter {
    queue: Arc<QueueGauges>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter whose queue gauges come from `store`, read at most once
    /// per `queue_refresh`.
    pub fn new(store: Arc<dyn Store>, queue_refresh: Duration) -> Exporter {
        Exporter {
            queue: Arc::new(QueueGauges::new(store, queue_refresh)),
        }
    }

    /// Every metric in the Prometheus text format, the queue gauges brought
    /// up to date first. Blocking (it may read the database).
    pub fn render(&self) -> String {
        self.queue
            .update(Instant::now(), chrono::Utc::now().timestamp_millis());
        super::encode()
    }
}

/// `GET /metrics`, served from `exporter`.
pub fn router(exporter: Exporter) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(exporter)
}

async fn scrape(State(exporter): State<Exporter>) -> Response {
    match tokio::task::spawn_blocking(move || exporter.render()).await {
        Ok(text) => {
            let mut response = text.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(error) => {
            log::error!("metrics: the scrape did not finish: {error}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The listener of `[metrics] listen`, stopped by [`RunningMetrics::stop`].
pub struct RunningMetrics {
    /// The address it listens on.
    pub address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningMetrics {
    /// Stops serving and waits for scrapes in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            log::warn!("the metrics listener ended abnormally: {error}");
        }
    }
}

/// Serves `/metrics` on an already-bound listener in a task of its own.
pub fn spawn(
    listener: tokio::net::TcpListener,
    exporter: Exporter,
) -> anyhow::Result<RunningMetrics> {
    let address = listener
        .local_addr()
        .map_err(|error| anyhow::anyhow!("reading the metrics listener's address: {error}"))?;
    log::info!("metrics listening on http://{address}/metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::intake::serve_router(
        listener,
        router(exporter),
        crate::intake::Limits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Ok(RunningMetrics {
        address,
        stop,
        task,
    })
}

/// Declares the series of the daemon's enabled jobs (see
/// [`super::declare_job`]) and starts the listener `[metrics] listen` asks
/// for (none when unset), saying so when nothing serves `/metrics` at all.
pub async fn start(config: &Config, exporter: Exporter) -> anyhow::Result<Option<RunningMetrics>> {
    for job in config.jobs.iter().filter(|job| job.enabled) {
        super::declare_job(&job.name);
    }
    super::declare_reloads();
    let intake_listens = config.notifications.listen.is_some();
    let config = &config.metrics;
    let Some(listen) = config.listen else {
        if !(intake_listens && config.intake) {
            log::info!(
                "metrics: nothing serves /metrics (no [metrics] listen, and the intake {})",
                if intake_listens {
                    "has intake = false"
                } else {
                    "is off"
                }
            );
        }
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("binding the metrics listener to {listen}: {error}"))?;
    spawn(listener, exporter).map(Some)
}
