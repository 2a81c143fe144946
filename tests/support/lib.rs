//! Shared test support, a crate of its own (`regkeeper-test-support`, a
//! dev-dependency) so that tests, benches and examples use one copy: real
//! servers in temp dirs on 127.0.0.1 (PostgreSQL databases, docker-registry,
//! stand-in scanners and registries of ours on one small HTTP server), a
//! store on either database, the real binary run once or as a daemon, and
//! waiting with a deadline. Every process it starts is stopped by PID when
//! its handle drops, also when a test fails.
//!
//! It drives regkeeper only through its public API and its binary; it holds
//! no assertions of its own about regkeeper's behaviour.

pub mod bench;
pub mod cli;
pub mod daemon;
pub mod http;
pub mod postgres;
pub mod postgres_tls;
pub mod registry;
pub mod scanners;
pub mod scripted;
pub mod store;
pub mod token;
pub mod wait;

pub use store::{Backend, TestStore};
pub use wait::{wait_for, wait_until, DEADLINE};

use std::path::PathBuf;

/// The `regkeeper` binary of the build that runs the caller: the path cargo
/// or nextest names at run time, else `regkeeper` next to the directory of
/// the running executable (`target/PROFILE/deps/TEST` or
/// `target/PROFILE/examples/EXAMPLE`). Cargo builds it for integration tests
/// and benches; examples that run it say to build it first.
pub fn binary() -> PathBuf {
    for variable in ["NEXTEST_BIN_EXE_regkeeper", "CARGO_BIN_EXE_regkeeper"] {
        if let Some(path) = std::env::var_os(variable) {
            return PathBuf::from(path);
        }
    }
    let executable = std::env::current_exe().expect("the path of the running executable");
    executable
        .parent()
        .and_then(|directory| directory.parent())
        .map(|profile| profile.join("regkeeper"))
        .expect("the running executable lies in target/PROFILE/SUBDIRECTORY")
}
