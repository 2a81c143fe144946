//! Runs the real `regkeeper` binary against a configuration in a temp dir.
//! [`CliEnv`] owns the temp dir (a SQLite database file lives there); every
//! run has a deadline and its process is killed if it overruns, so a hung
//! binary fails the test instead of hanging it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one CLI invocation may take before the test fails.
pub const CLI_DEADLINE: Duration = Duration::from_secs(120);

/// The registry section used when a test does not talk to a registry: a
/// port nobody listens on.
pub const UNUSED_REGISTRY: &str = "[registry]\nurl = \"http://127.0.0.1:9\"\n";

/// A temp dir with a configuration file for the binary.
pub struct CliEnv {
    /// The temp dir; removed on drop.
    pub dir: tempfile::TempDir,
}

/// What a finished run of the binary left.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl CliEnv {
    /// A fresh temp dir without a configuration.
    pub fn new() -> CliEnv {
        CliEnv {
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    /// A temp dir whose `schedules.toml` is the SQLite database in the dir,
    /// the registry section `registry` (e.g. [`UNUSED_REGISTRY`]) and `rest`.
    pub fn with_sqlite(registry: &str, rest: &str) -> CliEnv {
        let env = CliEnv::new();
        env.write_config(&format!("{}{registry}{rest}", env.sqlite_section()));
        env
    }

    /// `[database]` pointing at `regkeeper.db` in the temp dir.
    pub fn sqlite_section(&self) -> String {
        format!(
            "[database]\nurl = \"sqlite://{}\"\n",
            self.database_path().display()
        )
    }

    /// The SQLite file the configuration names.
    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("regkeeper.db")
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("schedules.toml")
    }

    /// Writes the configuration file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("writing schedules.toml");
    }

    /// Runs `regkeeper ARGS --config FILE` in the temp dir.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        let config = self.config_path();
        let mut all: Vec<&str> = args.to_vec();
        all.push("--config");
        all.push(config.to_str().expect("utf-8 temp path"));
        run_binary(self.dir.path(), &all)
    }
}

impl Default for CliEnv {
    fn default() -> CliEnv {
        CliEnv::new()
    }
}

/// Runs the binary with exactly `args` in `dir`, with RUST_LOG and
/// REGKEEPER_* variables cleared, and waits for it with [`CLI_DEADLINE`].
pub fn run_binary(dir: &Path, args: &[&str]) -> CliOutput {
    run_binary_with_env(dir, args, &[])
}

/// Like [`run_binary`], with the environment variables `env` set.
pub fn run_binary_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut command = Command::new(crate::binary());
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("REGKEEPER_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("starting regkeeper");
    // Pipes are drained by threads so that a chatty child never blocks.
    let stdout = child.stdout.take().expect("stdout pipe");
    let stderr = child.stderr.take().expect("stderr pipe");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(stdout));
    let stderr = read(Box::new(stderr));
    let exited = crate::wait::poll(CLI_DEADLINE, || {
        child.try_wait().expect("waiting for regkeeper")
    });
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("regkeeper {args:?} did not finish within {CLI_DEADLINE:?}");
    };
    CliOutput {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
