//! The one small HTTP/1.1 server behind every stand-in of ours: scripted
//! registries and the digest-stripping proxy (`registry`), the token server
//! (`token`), the scanner stand-ins (`scanners`). It is axum (already built
//! for the intake) on a runtime of its own thread, bound to 127.0.0.1:0.
//!
//! Each request is read whole and handed, with its arrival index, to a plain
//! synchronous handler on the runtime's blocking pool, so a handler may block
//! (hold an answer, call another server). Every request is logged, every TCP
//! connection counted. Dropping the server stops it: answers still waiting
//! for a [`Reply::delay`] end at once, connections are closed.
//!
//! It must not grow behaviour of any one stand-in: those live beside their
//! handlers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;

/// Largest request body read.
const BODY_LIMIT: usize = 64 << 20;

/// How long a stopping server waits for handlers still running.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A request as a stand-in sees it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header (lowercased name, value) pairs, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query parameters, percent-decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        match self.target.split_once('?') {
            Some((_, query)) => url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            None => Vec::new(),
        }
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (Null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An answer of a stand-in.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (Content-Length is added from the body).
    pub headers: Vec<(String, String)>,
    /// Body (its length is sent for HEAD requests, the body is not).
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow or stalled server); cut
    /// short when the server stops.
    pub delay: Duration,
}

impl Reply {
    /// A reply with `status`, no headers and `body`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// A reply with `status`, JSON content type and `body`.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::new(status, body).header("Content-Type", "application/json")
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Delays the answer.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// What answers the requests: called with the request's arrival index
/// (0-based) and the request, on a thread that may block.
pub type Handler = dyn Fn(usize, &Request) -> Reply + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    log: Mutex<Vec<Request>>,
    arrived: AtomicUsize,
    connections: AtomicUsize,
    stopping: AtomicBool,
}

/// A running server; stopped on Drop.
pub struct HttpServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HttpServer {
    /// Starts answering with `handler` on a free 127.0.0.1 port.
    pub fn start(handler: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding a stand-in server");
        let address = listener.local_addr().expect("the stand-in's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            log: Mutex::new(Vec::new()),
            arrived: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || serve(listener, shared, stopped))
        };
        HttpServer {
            address,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every request received so far (since the last [`HttpServer::clear_requests`]).
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the request log (arrival indexes keep counting).
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server thread: serves until told to stop, then drops every
/// connection and gives running handlers [`STOP_GRACE`] to return.
fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the stand-in's runtime");
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the stand-in's listener");
        let counted = shared.clone();
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, Ordering::SeqCst);
        });
        let answering = shared.clone();
        let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let shared = answering.clone();
            async move { answer(shared, request).await }
        });
        tokio::select! {
            _ = stopped => {}
            result = axum::serve(listener, router) => {
                if let Err(error) = result {
                    eprintln!("a stand-in server stopped: {error}");
                }
            }
        }
    });
    runtime.shutdown_timeout(STOP_GRACE);
}

async fn answer(shared: Arc<Shared>, request: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(body) => body.to_vec(),
        Err(error) => return plain(400, &format!("reading the request body: {error}")),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |target| target.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let reply = tokio::task::spawn_blocking(move || {
        let index = {
            let mut log = lock(&shared.log);
            log.push(request.clone());
            shared.arrived.fetch_add(1, Ordering::SeqCst)
        };
        let reply = (shared.handler)(index, &request);
        let until = Instant::now() + reply.delay;
        while Instant::now() < until && !shared.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        reply
    })
    .await;
    match reply {
        Ok(reply) => response(reply),
        Err(error) => plain(500, &format!("the stand-in's handler failed: {error}")),
    }
}

fn response(reply: Reply) -> axum::response::Response {
    let mut builder = axum::http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(axum::body::Body::from(reply.body))
        .unwrap_or_else(|error| plain(500, &format!("an invalid stand-in reply: {error}")))
}

fn plain(status: u16, message: &str) -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::from(message.to_string()));
    *response.status_mut() =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    response
}
