//! The integer codes the database stores for an event's status
//! (`registry_events.status`) and a tag's scan state (`tags.scanned`), and
//! the Rust enums they map to. The codes follow Portus and are part of the
//! schema: they are written here once, as the enums' discriminants and as
//! the SQL literals of [`event_status!`] and [`scan_state!`] (literals, not
//! bound parameters, so that the partial indexes match the queries). Code
//! outside `store/` sees only the enums.

/// `registry_events.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventStatus {
    /// Applied (pruned after `retain_done`).
    Done = 0,
    /// Claimed by a run under a lease.
    Progress = 1,
    /// Waiting to be claimed (new, or back after a failed attempt).
    Fresh = 2,
    /// Failed for good.
    Failed = 3,
}

/// `tags.scanned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScanState {
    /// Not scanned yet, or a scanner is still to be asked (or retried).
    Unscanned = 0,
    /// Claimed by a scan under a lease.
    Working = 1,
    /// Every enabled scanner's report is current.
    Done = 2,
    /// A scanner gave up on it.
    Failed = 3,
}

impl EventStatus {
    /// Every status, by code.
    pub const ALL: [EventStatus; 4] = [
        EventStatus::Done,
        EventStatus::Progress,
        EventStatus::Fresh,
        EventStatus::Failed,
    ];

    /// The code stored in the database.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The status of a stored code; None for a code no version wrote.
    pub fn from_code(code: i64) -> Option<EventStatus> {
        EventStatus::ALL
            .into_iter()
            .find(|status| status.code() == code)
    }

    /// The word `status` shows.
    pub fn word(self) -> &'static str {
        match self {
            EventStatus::Done => "done",
            EventStatus::Progress => "progress",
            EventStatus::Fresh => "fresh",
            EventStatus::Failed => "failed",
        }
    }
}

impl ScanState {
    /// Every state, by code.
    pub const ALL: [ScanState; 4] = [
        ScanState::Unscanned,
        ScanState::Working,
        ScanState::Done,
        ScanState::Failed,
    ];

    /// The code stored in the database.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The state of a stored code; None for a code no version wrote.
    pub fn from_code(code: i64) -> Option<ScanState> {
        ScanState::ALL
            .into_iter()
            .find(|state| state.code() == code)
    }

    /// The word `status`, `tags` and `vulns` show.
    pub fn word(self) -> &'static str {
        match self {
            ScanState::Unscanned => "none",
            ScanState::Working => "working",
            ScanState::Done => "done",
            ScanState::Failed => "failed",
        }
    }
}

/// Column `index` as a [`ScanState`]; a code no version wrote is an error.
pub(super) fn scan_state_at(row: &super::Row, index: usize) -> anyhow::Result<ScanState> {
    let code = super::rows::int(row, index)?;
    ScanState::from_code(code)
        .ok_or_else(|| anyhow::anyhow!("column {index}: unknown scan state {code}"))
}

/// The SQL literal of an [`EventStatus`], for `concat!`.
macro_rules! event_status {
    (done) => {
        "0"
    };
    (progress) => {
        "1"
    };
    (fresh) => {
        "2"
    };
    (failed) => {
        "3"
    };
}
pub(crate) use event_status;

/// The SQL literal of a [`ScanState`], for `concat!`.
macro_rules! scan_state {
    (unscanned) => {
        "0"
    };
    (working) => {
        "1"
    };
    (done) => {
        "2"
    };
    (failed) => {
        "3"
    };
}
pub(crate) use scan_state;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_literals_are_the_codes() {
        let events = [
            event_status!(done),
            event_status!(progress),
            event_status!(fresh),
            event_status!(failed),
        ];
        for (index, (status, literal)) in EventStatus::ALL.into_iter().zip(events).enumerate() {
            assert_eq!(status.code(), index as i64, "ALL is in code order");
            assert_eq!(literal, status.code().to_string(), "{status:?}");
            assert_eq!(EventStatus::from_code(status.code()), Some(status));
        }
        let scans = [
            scan_state!(unscanned),
            scan_state!(working),
            scan_state!(done),
            scan_state!(failed),
        ];
        for (index, (state, literal)) in ScanState::ALL.into_iter().zip(scans).enumerate() {
            assert_eq!(state.code(), index as i64, "ALL is in code order");
            assert_eq!(literal, state.code().to_string(), "{state:?}");
            assert_eq!(ScanState::from_code(state.code()), Some(state));
        }
        assert_eq!(EventStatus::from_code(4), None);
        assert_eq!(ScanState::from_code(-1), None);
    }
}
