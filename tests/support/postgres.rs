//! Test support: see tests/support/mod.rs.
