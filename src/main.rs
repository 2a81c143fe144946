//! The `regkeeper` binary: parses the command line, sets up logging, calls
//! one `run` and maps the result to an exit code (0 ok, 1 a job failed,
//! 2 usage or configuration error).

fn main() -> std::process::ExitCode {
    regkeeper::cli::main()
}
