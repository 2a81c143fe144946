//! regkeeper keeps a SQL database in step with a Docker Registry v2 / OCI
//! distribution registry.
//!
//! The library holds everything, the command line included: `src/main.rs`
//! only calls [`cli::main`], which parses the arguments, sets up logging
//! (env_logger to stderr), calls [`cli::run`] and maps its result to an exit
//! code.
//! See ARCHITECTURE.md for the map and the invariants between modules.

pub mod cli;
pub mod config;
pub(crate) mod daemon;
pub mod intake;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod notification;
pub mod registry;
pub mod scanner;
pub mod scheduler;
pub mod store;
#[cfg(test)]
mod testing;
pub mod time;
