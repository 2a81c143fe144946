//! The intake's HTTP/1 server: its own accept loop over hyper, so that no
//! client can starve the intake (or the daemon's other sockets) before it
//! has even been authenticated.
//!
//! - A connection must send a complete request head within
//!   [`Limits::header_read`] of being accepted or of the previous response
//!   (hyper's `header_read_timeout` with tokio's timer). This is also the
//!   idle timeout: hyper starts that timer whenever a connection waits for a
//!   request, so a socket that sends nothing, a keep-alive connection left
//!   idle and a slow-loris header are all closed after it.
//! - At most [`Limits::max_connections`] connections are open at once, which
//!   leaves file descriptors for the database, the registry client and the
//!   scanners. At the cap, a new connection takes the slot of the one that
//!   has waited longest for its request head (that one is closed); when
//!   every open connection is inside a request, the new one is closed at
//!   once. A flood of idle sockets therefore never locks the registry out.
//! - The body of a request must arrive within [`Limits::body_read`]; the
//!   handler enforces it (see `intake::receive`).
//!
//! Stopping: no new connections, connections waiting for a request are
//! closed, requests in flight get [`DRAIN_TIMEOUT`] to finish (a cut request
//! is redelivered by the registry, and a redelivered event is stored once).
//! Nothing here parses notifications or touches the store.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{oneshot, watch, Notify};

/// How long a connection may take to send a complete request head,
/// counted from its accept or from the end of its previous response. The
/// registry sends a whole envelope at once; 10 s is generous for it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the body of a request may take to arrive once its head has:
/// a 1 MiB envelope within 60 s is 17 KiB/s, far below any registry's link.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections open at once. 256 leaves three quarters of the usual 1,024
/// file descriptors to the database pool, the registry client's worker pool
/// and the scanners; a registry needs a handful.
pub const MAX_CONNECTIONS: usize = 256;

/// How long stopping waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error other than a connection's own (running out
/// of file descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How often, at most, a warning about the connection cap is logged.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The intake's limits against clients that hold connections open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request head (also the idle timeout).
    pub header_read: Duration,
    /// Time for a request body to arrive after its head.
    pub body_read: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// [`HEADER_READ_TIMEOUT`], [`BODY_READ_TIMEOUT`], [`MAX_CONNECTIONS`].
    fn default() -> Limits {
        Limits {
            header_read: HEADER_READ_TIMEOUT,
            body_read: BODY_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then drains (see the module documentation).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Slots::new(limits.max_connections.max(1)));
    let (stopping, stop) = watch::channel(false);
    let mut cap = CapWarnings::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                log::warn!("intake: accepting a connection: {error}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let admitted = slots.admit();
        cap.note(&admitted, limits.max_connections);
        let Admission::Admitted { slot, .. } = admitted else {
            // Dropping the stream closes it at once.
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            slot,
            limits,
            stop.clone(),
        ));
    }
    drop(listener);
    let _ = stopping.send(true);
    slots.close_waiting();
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.empty())
        .await
        .is_err()
    {
        log::warn!(
            "intake: {} requests still in flight after {}; leaving them",
            slots.open(),
            humantime::format_duration(DRAIN_TIMEOUT)
        );
    }
}

/// Errors of one connection that `accept` reports; the next accept is fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One connection, from accept to close: hyper with the header-read timer,
/// closed early when its slot is taken or the intake stops.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    mut slot: Slot,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut closed) = slot.closed.take() else {
        return;
    };
    let tower = TowerToHyperService::new(router);
    let requests = slot.tracker();
    let service = hyper::service::service_fn(move |request| {
        let in_request = requests.start_request();
        let response = hyper::service::Service::call(&tower, request);
        async move {
            let response = response.await;
            drop(in_request);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                log::debug!("intake: a connection ended: {error}");
            }
            return;
        }
        _ = &mut closed => return,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    // Stopping: hyper finishes the request in flight, then closes.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = &mut closed => {}
    }
}

/// The table of open connections: which of them are inside a request and
/// since when the others wait for one.
struct Slots {
    capacity: usize,
    table: Mutex<SlotTable>,
    emptied: Notify,
}

#[derive(Default)]
struct SlotTable {
    next_id: u64,
    open: BTreeMap<u64, SlotState>,
}

struct SlotState {
    /// Since when the connection waits for a request head; None inside a request.
    waiting_since: Option<Instant>,
    /// Closes the connection (taken by a newer one, or the intake stops).
    close: Option<oneshot::Sender<()>>,
}

/// What became of an accepted connection.
enum Admission {
    /// It has a slot; `evicted` says whether another connection lost it.
    Admitted { slot: Slot, evicted: bool },
    /// Every slot is inside a request: closed at once.
    Refused,
}

impl Slots {
    fn new(capacity: usize) -> Slots {
        Slots {
            capacity,
            table: Mutex::new(SlotTable::default()),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        // The table stays consistent across a panic (each change is one
        // insert or remove), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, else the one of the
    /// connection that has waited longest for a request (closed), else none.
    fn admit(self: &Arc<Slots>) -> Admission {
        let mut table = self.lock();
        let mut evicted = false;
        if table.open.len() >= self.capacity {
            let longest_waiting = table
                .open
                .iter()
                .filter_map(|(id, state)| state.waiting_since.map(|since| (since, *id)))
                .min();
            let Some((_, id)) = longest_waiting else {
                return Admission::Refused;
            };
            if let Some(mut state) = table.open.remove(&id) {
                if let Some(close) = state.close.take() {
                    let _ = close.send(());
                }
            }
            evicted = true;
        }
        let id = table.next_id;
        table.next_id += 1;
        let (close, closed) = oneshot::channel();
        table.open.insert(
            id,
            SlotState {
                waiting_since: Some(Instant::now()),
                close: Some(close),
            },
        );
        Admission::Admitted {
            slot: Slot {
                id,
                slots: Arc::clone(self),
                closed: Some(closed),
            },
            evicted,
        }
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(state) = self.lock().open.get_mut(&id) {
            state.waiting_since = waiting.then(Instant::now);
        }
    }

    fn release(&self, id: u64) {
        let mut table = self.lock();
        table.open.remove(&id);
        if table.open.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Closes every connection that waits for a request.
    fn close_waiting(&self) {
        let mut table = self.lock();
        for state in table.open.values_mut() {
            if state.waiting_since.is_some() {
                if let Some(close) = state.close.take() {
                    let _ = close.send(());
                }
            }
        }
    }

    fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Resolves once no connection is open.
    async fn empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a release in between is seen.
            emptied.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            emptied.await;
        }
    }
}

/// A connection's place in [`Slots`], given back when it is dropped.
struct Slot {
    id: u64,
    slots: Arc<Slots>,
    closed: Option<oneshot::Receiver<()>>,
}

impl Slot {
    fn tracker(&self) -> RequestTracker {
        RequestTracker {
            id: self.id,
            slots: Arc::clone(&self.slots),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

/// Marks a connection inside a request while an [`InRequest`] lives.
#[derive(Clone)]
struct RequestTracker {
    id: u64,
    slots: Arc<Slots>,
}

impl RequestTracker {
    fn start_request(&self) -> InRequest {
        self.slots.set_waiting(self.id, false);
        InRequest(self.clone())
    }
}

struct InRequest(RequestTracker);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.slots.set_waiting(self.0.id, true);
    }
}

/// At most one warning per [`CAP_WARNING_INTERVAL`] about connections
/// closed at the cap, with the counts since the last one.
#[derive(Default)]
struct CapWarnings {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
}

impl CapWarnings {
    fn note(&mut self, admission: &Admission, max_connections: usize) {
        match admission {
            Admission::Admitted { evicted: false, .. } => return,
            Admission::Admitted { evicted: true, .. } => self.evicted += 1,
            Admission::Refused => self.refused += 1,
        }
        if self
            .last
            .is_some_and(|last| last.elapsed() < CAP_WARNING_INTERVAL)
        {
            return;
        }
        log::warn!(
            "intake: {max_connections} connections open (the cap): closed {} that waited longest \
             for a request and refused {} new ones since the last warning",
            self.evicted,
            self.refused
        );
        self.last = Some(Instant::now());
        self.evicted = 0;
        self.refused = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> (Slot, bool) {
        match admission {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_gives_up_its_slot() {
        let slots = Arc::new(Slots::new(2));
        let (mut first, evicted) = admitted(slots.admit());
        assert!(!evicted);
        let (mut second, _) = admitted(slots.admit());
        let (_third, evicted) = admitted(slots.admit());
        assert!(evicted);
        assert_eq!(slots.open(), 2);
        let mut first_closed = first.closed.take().expect("a close signal");
        assert_eq!(first_closed.try_recv(), Ok(()), "the oldest one is closed");
        let mut second_closed = second.closed.take().expect("a close signal");
        assert!(second_closed.try_recv().is_err(), "the newer one stays");
        drop(first);
        assert_eq!(slots.open(), 2, "the evicted slot was handed over already");
    }

    #[test]
    fn connections_inside_a_request_keep_their_slots_and_the_new_one_is_refused() {
        let slots = Arc::new(Slots::new(2));
        let (first, _) = admitted(slots.admit());
        let (second, _) = admitted(slots.admit());
        let busy_first = first.tracker().start_request();
        let busy_second = second.tracker().start_request();
        assert!(matches!(slots.admit(), Admission::Refused));
        drop(busy_second);
        let (_third, evicted) = admitted(slots.admit());
        assert!(evicted, "the one that finished its request waits again");
        drop(busy_first);
        drop(first);
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn stopping_closes_the_waiting_connections_only() {
        let slots = Arc::new(Slots::new(4));
        let (mut waiting, _) = admitted(slots.admit());
        let (mut busy, _) = admitted(slots.admit());
        let _in_request = busy.tracker().start_request();
        slots.close_waiting();
        let mut waiting_closed = waiting.closed.take().expect("a close signal");
        let mut busy_closed = busy.closed.take().expect("a close signal");
        assert_eq!(waiting_closed.try_recv(), Ok(()));
        assert!(busy_closed.try_recv().is_err());
    }
}
