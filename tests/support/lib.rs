//! Shared test support, a crate of its own (`regkeeper-test-support`, a
//! dev-dependency of regkeeper) so that tests, benches and examples use one
//! copy. One file per concern:
//!
//! - `store`: [`TestStore`] on a fresh SQLite file or PostgreSQL database
//!   ([`Backend`]), the one way tests build a store, and [`both_backends!`];
//!   `postgres`: the fresh PostgreSQL database under it; `postgres_tls`: a
//!   TLS-only cluster of one test's own.
//! - `registry`: a real docker-registry per test and its image helpers;
//!   `token`: its token server; `scripted`: stand-in registries and the
//!   digest-stripping proxy; `fault_proxy`: a proxy in front of a real
//!   registry that answers with faults on demand; `scanners`: stand-in scanners. Every stand-in
//!   runs on `http`, the one small HTTP server of ours. `prometheus`: a real
//!   Prometheus server scraping the daemon.
//! - `cli`: the real binary run once; `daemon`: the real binary as a
//!   daemon ([`binary`] finds it).
//! - `wait`: waiting for a condition with a deadline ([`wait_until`]).
//! - `bench`: benchmark samples for `scripts/bench.sh`.
//!
//! Servers run in temp dirs on 127.0.0.1; every process started here is
//! stopped by PID when its handle drops, also when a test fails. It drives
//! regkeeper only through its public API and its binary, and holds no
//! assertions about regkeeper's behaviour: those belong in the tests.

pub mod bench;
pub mod cli;
pub mod daemon;
pub mod fault_proxy;
pub mod http;
pub mod postgres;
pub mod postgres_tls;
pub mod prometheus;
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
