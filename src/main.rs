//! The `regkeeper` binary. It only calls [`regkeeper::cli::main`], which
//! parses the command line with clap, sets up logging (env_logger to stderr,
//! filtered by `RUST_LOG`, `info` by default), calls `cli::run` and maps its
//! result to an exit code (0 ok, 1 a job failed, 2 usage or configuration
//! error).

fn main() -> std::process::ExitCode {
    regkeeper::cli::main()
}
