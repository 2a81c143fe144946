//! The `sync` handler: reconciles the database with the registry catalog.
//! `plan.rs` decides (pure); this file walks the registry and applies.

pub mod plan;
