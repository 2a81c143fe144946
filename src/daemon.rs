//! The daemon: wires configuration, store, registry client, intake and
//! scheduler together, waits for the database, and runs until a signal.
//! Owns start-up order and shutdown; no job logic lives here.

use crate::config::Config;

/// Runs the daemon until SIGINT/SIGTERM; returns after runs in flight have
/// drained (or the grace period passed).
pub fn run(config: Config) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("not implemented in this version")
}
