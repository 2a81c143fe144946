//! The SQLite backend (rusqlite, bundled): WAL, busy timeout, foreign keys.
