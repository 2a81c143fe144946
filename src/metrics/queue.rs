//! The queue gauges: events by status, tags by scan state and the age of
//! the oldest waiting event, read from the database ([`Store::queue_depths`])
//! at most once per refresh interval, however often and however many
//! scrapers ask; between reads a scrape reuses the last depths, and only
//! the age moves on with the clock. Blocking: the scrape calls it on the
//! blocking pool.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::{QueueDepths, Store};

use super::METRICS;

/// The queue gauges of one database, refreshed on demand.
pub(super) struct QueueGauges {
    store: Arc<dyn Store>,
    refresh: Duration,
    /// When the database was last asked, and when the oldest waiting
    /// event then known arrived.
    last: Mutex<Option<Refreshed>>,
}

#[derive(Clone, Copy)]
struct Refreshed {
    at: Instant,
    oldest_waiting_at: Option<i64>,
}

impl QueueGauges {
    pub(super) fn new(store: Arc<dyn Store>, refresh: Duration) -> QueueGauges {
        QueueGauges {
            store,
            refresh,
            last: Mutex::new(None),
        }
    }

    /// Brings the gauges up to date for a scrape at `now` (`now_ms` on the
    /// wall clock): asks the database when the last answer is older than
    /// the refresh interval. Scrapes at the same moment wait for one read.
    /// A failed read is logged and counted; the gauges keep their values,
    /// and the database is asked again after the interval, not at once.
    pub(super) fn update(&self, now: Instant, now_ms: i64) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = last.is_some_and(|refreshed| now.duration_since(refreshed.at) < self.refresh);
        if !fresh {
            let oldest_waiting_at = match self.store.queue_depths() {
                Ok(depths) => {
                    publish_depths(&depths);
                    depths.oldest_waiting_at
                }
                Err(cause) => {
                    log::warn!("metrics: reading the queue depths: {cause:#}");
                    METRICS.queue_refresh_failures.inc();
                    last.and_then(|refreshed| refreshed.oldest_waiting_at)
                }
            };
            *last = Some(Refreshed {
                at: now,
                oldest_waiting_at,
            });
        }
        let oldest_waiting_at = last.and_then(|refreshed| refreshed.oldest_waiting_at);
        METRICS
            .queue_oldest_event_age
            .set(oldest_age_seconds(oldest_waiting_at, now_ms));
    }
}

/// Sets the depth gauges from `depths`.
pub(super) fn publish_depths(depths: &QueueDepths) {
    for (status, count) in &depths.events {
        METRICS
            .queue_events
            .with_label_values(&[status])
            .set(*count);
    }
    for (scan, count) in &depths.tags_by_scan {
        METRICS.queue_tags.with_label_values(&[scan]).set(*count);
    }
}

/// Seconds since `oldest_waiting_at` (ms) at `now_ms`; 0 when nothing
/// waits, and never below 0 when clocks disagree.
fn oldest_age_seconds(oldest_waiting_at: Option<i64>, now_ms: i64) -> f64 {
    oldest_waiting_at.map_or(0.0, |at| (now_ms.saturating_sub(at)).max(0) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_events() -> i64 {
        METRICS.queue_events.with_label_values(&["fresh"]).get()
    }

    /// However often it is scraped, the database is asked once per
    /// refresh interval; the age moves on with the clock in between.
    #[test]
    fn the_database_is_asked_at_most_once_per_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let database = crate::config::Database::Sqlite {
            path: dir.path().join("queue.db"),
        };
        let store = crate::store::open(&database, Duration::from_secs(5)).unwrap();
        let gauges = QueueGauges::new(store.clone(), Duration::from_secs(5));
        let event = |id: &str| crate::store::NewEvent {
            event_id: id.to_string(),
            action: "push".to_string(),
            repository: "ns/app".to_string(),
            data: "{}".to_string(),
        };
        let arrived = 1_700_000_000_000;
        store.insert_events(&[event("e1")], arrived).unwrap();
        let start = Instant::now();
        gauges.update(start, arrived + 2_000);
        assert_eq!(fresh_events(), 1);
        assert_eq!(METRICS.queue_oldest_event_age.get(), 2.0);

        store.insert_events(&[event("e2")], arrived).unwrap();
        gauges.update(start + Duration::from_secs(4), arrived + 6_000);
        assert_eq!(fresh_events(), 1, "within the interval: the last depths");
        assert_eq!(METRICS.queue_oldest_event_age.get(), 6.0);

        gauges.update(start + Duration::from_secs(5), arrived + 7_000);
        assert_eq!(fresh_events(), 2, "the interval passed: asked again");
    }

    #[test]
    fn the_age_is_zero_without_a_waiting_event_and_never_negative() {
        assert_eq!(oldest_age_seconds(None, 10_000), 0.0);
        assert_eq!(oldest_age_seconds(Some(4_000), 10_000), 6.0);
        assert_eq!(oldest_age_seconds(Some(12_000), 10_000), 0.0);
    }
}
