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
//!   has waited longest for its request head: that one is closed, and the
//!   loop accepts nothing more until its socket is. When every open
//!   connection is inside a request, the new one is closed at once. A flood
//!   of idle sockets therefore never locks the registry out, and the intake
//!   never holds more than one descriptor beyond the cap.
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

/// How long a connection that gave up its slot may take to close before
/// the new one is refused instead.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

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
pub(crate) async fn serve(
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
        let admitted = slots.admit().await;
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
    /// Notified whenever a connection gives its slot back.
    released: Notify,
}

#[derive(Default)]
struct SlotTable {
    next_id: u64,
    open: BTreeMap<u64, SlotState>,
}

struct SlotState {
    /// Since when the connection waits for a request head; None inside a request.
    waiting_since: Option<Instant>,
    /// Closes the connection (its slot is taken, or the intake stops);
    /// None once used.
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
            released: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        // The table stays consistent across a panic (each change is one
        // insert, update or remove), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, else the one of the
    /// connection that has waited longest for a request, once that one has
    /// closed; else none.
    async fn admit(self: &Arc<Slots>) -> Admission {
        let victim = {
            let mut table = self.lock();
            if table.open.len() < self.capacity {
                return Admission::Admitted {
                    slot: self.insert(&mut table),
                    evicted: false,
                };
            }
            let longest_waiting = table
                .open
                .iter()
                .filter(|(_, state)| state.close.is_some())
                .filter_map(|(id, state)| state.waiting_since.map(|since| (since, *id)))
                .min();
            let Some((_, victim)) = longest_waiting else {
                return Admission::Refused;
            };
            if let Some(close) = table
                .open
                .get_mut(&victim)
                .and_then(|state| state.close.take())
            {
                let _ = close.send(());
            }
            victim
        };
        // Its socket is closed before its slot is given back.
        if tokio::time::timeout(EVICTION_WAIT, self.released_slot(victim))
            .await
            .is_err()
        {
            return Admission::Refused;
        }
        let mut table = self.lock();
        if table.open.len() >= self.capacity {
            return Admission::Refused;
        }
        Admission::Admitted {
            slot: self.insert(&mut table),
            evicted: true,
        }
    }

    fn insert(self: &Arc<Slots>, table: &mut SlotTable) -> Slot {
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
        Slot {
            id,
            slots: Arc::clone(self),
            closed: Some(closed),
        }
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(state) = self.lock().open.get_mut(&id) {
            state.waiting_since = waiting.then(Instant::now);
        }
    }

    fn release(&self, id: u64) {
        self.lock().open.remove(&id);
        self.released.notify_waiters();
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

    /// Resolves once `condition` holds of the table, checked after every
    /// release.
    async fn released_until(&self, condition: impl Fn(&SlotTable) -> bool) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is seen.
            released.as_mut().enable();
            if condition(&self.lock()) {
                return;
            }
            released.await;
        }
    }

    /// Resolves once connection `id` has given its slot back.
    async fn released_slot(&self, id: u64) {
        self.released_until(|table| !table.open.contains_key(&id))
            .await
    }

    /// Resolves once no connection is open.
    async fn empty(&self) {
        self.released_until(|table| table.open.is_empty()).await
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

    /// Plays a connection: drops its slot (closes) when told to.
    fn close_when_told(mut slot: Slot) -> tokio::task::JoinHandle<()> {
        let closed = slot.closed.take().expect("a close signal");
        tokio::spawn(async move {
            let _ = closed.await;
            drop(slot);
        })
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_waiting_connection_gives_up_its_slot() {
        let slots = Arc::new(Slots::new(2));
        let (first, evicted) = admitted(slots.admit().await);
        assert!(!evicted);
        let first = close_when_told(first);
        let (mut second, _) = admitted(slots.admit().await);
        let (_third, evicted) = admitted(slots.admit().await);
        assert!(evicted);
        first.await.expect("the oldest one was closed");
        assert_eq!(slots.open(), 2);
        let mut second_closed = second.closed.take().expect("a close signal");
        assert!(second_closed.try_recv().is_err(), "the newer one stays");
    }

    #[tokio::test]
    async fn a_connection_that_does_not_close_in_time_keeps_its_slot() {
        let slots = Arc::new(Slots::new(1));
        let (_stuck, _) = admitted(slots.admit().await);
        assert!(matches!(slots.admit().await, Admission::Refused));
        assert_eq!(slots.open(), 1);
    }

    #[tokio::test]
    async fn connections_inside_a_request_keep_their_slots_and_the_new_one_is_refused() {
        let slots = Arc::new(Slots::new(2));
        let (first, _) = admitted(slots.admit().await);
        let (second, _) = admitted(slots.admit().await);
        let busy_first = first.tracker().start_request();
        let busy_second = second.tracker().start_request();
        assert!(matches!(slots.admit().await, Admission::Refused));
        drop(busy_second);
        let second = close_when_told(second);
        let (_third, evicted) = admitted(slots.admit().await);
        assert!(evicted, "the one that finished its request waits again");
        second.await.expect("it was closed");
        drop(busy_first);
        drop(first);
        assert_eq!(slots.open(), 1);
    }

    #[tokio::test]
    async fn stopping_closes_the_waiting_connections_only() {
        let slots = Arc::new(Slots::new(4));
        let (mut waiting, _) = admitted(slots.admit().await);
        let (mut busy, _) = admitted(slots.admit().await);
        let _in_request = busy.tracker().start_request();
        slots.close_waiting();
        let mut waiting_closed = waiting.closed.take().expect("a close signal");
        let mut busy_closed = busy.closed.take().expect("a close signal");
        assert_eq!(waiting_closed.try_recv(), Ok(()));
        assert!(busy_closed.try_recv().is_err());
    }
}
