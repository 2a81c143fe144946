//! The real binary as a daemon: [`Daemon::start`] runs `regkeeper --config
//! CONFIG` with the environment's `REGKEEPER_*` and `RUST_LOG` cleared, its
//! stdout and stderr in a log file beside the config; the test waits for its
//! intake ([`Daemon::wait_for_intake`]) or a log line, signals it, and reads
//! its exit code. Dropping the handle SIGKILLs a daemon still running (by its
//! PID, our child) and reaps it, also when the test fails.
//!
//! It starts nothing but the daemon; one-off commands are `crate::cli`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The log filter daemons of the tests run with.
pub const TEST_LOG: &str = "info,regkeeper=debug";

/// A running `regkeeper` daemon, our child.
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
}

impl Daemon {
    /// Starts the binary of this build ([`crate::binary`]) on `config`,
    /// logging at [`TEST_LOG`] into `CONFIG` with the extension `log`.
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with(&crate::binary(), config, TEST_LOG)
    }

    /// Starts `binary` on `config` with `RUST_LOG=rust_log`, in the config's
    /// directory, logging into `CONFIG` with the extension `log`.
    pub fn start_with(binary: &Path, config: &Path, rust_log: &str) -> Daemon {
        Daemon::spawn(binary, config, rust_log, None, &[])
    }

    /// [`Daemon::start`] with the environment variables `env` set (after
    /// the environment's `REGKEEPER_*` were cleared).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(&crate::binary(), config, TEST_LOG, None, env)
    }

    /// [`Daemon::start`] under an open-file limit (RLIMIT_NOFILE) of
    /// `open_files`, for tests that exhaust descriptors.
    pub fn start_with_open_files(config: &Path, open_files: u64) -> Daemon {
        Daemon::spawn(&crate::binary(), config, TEST_LOG, Some(open_files), &[])
    }

    fn spawn(
        binary: &Path,
        config: &Path,
        rust_log: &str,
        open_files: Option<u64>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let log_path = config.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("creating the daemon log");
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        if let Some(directory) = config.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            command.current_dir(directory);
        }
        for (name, _) in std::env::vars() {
            if name.starts_with("REGKEEPER_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit(2) is async-signal-safe; the closure
            // allocates nothing and only lowers the child's own limit.
            unsafe {
                command.pre_exec(move || {
                    let limits = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limits) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        Daemon { child, log_path }
    }

    /// Its exit status, once it has exited (reaped then).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("polling the daemon")
    }

    /// Panics with its log when it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the daemon exited ({status}); its log:\n{}", self.log());
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until its intake on 127.0.0.1:`port` answers `GET /healthz`
    /// with 200; panics with its log when it exits first or the deadline
    /// passes.
    pub fn wait_for_intake(&mut self, port: u16) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let url = format!("http://127.0.0.1:{port}/healthz");
        self.wait_while_running(&format!("its intake answers {url}"), |_log| {
            agent
                .get(&url)
                .call()
                .is_ok_and(|response| response.status().as_u16() == 200)
        });
    }

    /// Waits until its log contains `text`; panics with its log when it
    /// exits first or the deadline passes.
    pub fn wait_for_log(&mut self, text: &str) {
        self.wait_while_running(&format!("it logs {text:?}"), |log| log.contains(text));
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on the pid of our child, which has not been reaped
        // (reaping takes `&mut self`).
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "sending signal {signal} to the daemon");
    }

    /// SIGKILL: no chance to clean up. Reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then [`Daemon::wait_exit`]: how a daemon is stopped.
    pub fn terminate(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits for it to exit; its exit code, or 128 + the signal that killed
    /// it. Panics with its log when the deadline passes first.
    pub fn wait_exit(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt as _;
        let exited = crate::wait::poll(crate::DEADLINE, || {
            self.child.try_wait().expect("polling the daemon")
        });
        let Some(status) = exited else {
            panic!("the daemon did not exit; its log:\n{}", self.log());
        };
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    /// Polls `condition` (given the log so far) until it holds; panics with
    /// the log when the daemon exits first or the deadline passes.
    fn wait_while_running(&mut self, what: &str, mut condition: impl FnMut(&str) -> bool) {
        let reached = crate::wait::poll(crate::DEADLINE, || {
            if condition(&self.log()) {
                return Some(Ok(()));
            }
            match self.child.try_wait() {
                Ok(Some(status)) => Some(Err(status)),
                _ => None,
            }
        });
        match reached {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!(
                "the daemon exited ({status}) before {what}; its log:\n{}",
                self.log()
            ),
            None => panic!("timed out waiting until {what}; its log:\n{}", self.log()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
