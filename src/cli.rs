//! The command line: `regkeeper [--config FILE]`, `--once JOB`, `check`,
//! `status`. Parses arguments with clap, sets up env_logger, dispatches to the
//! daemon or a one-off command, and turns the result into an exit code.
//! Owns no business logic.

use std::process::ExitCode;

/// Exit code for a run that failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    ExitCode::from(EXIT_USAGE)
}
