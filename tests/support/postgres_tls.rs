//! A PostgreSQL cluster of one test's own with TLS on: a test CA, a server
//! certificate for the host name [`SERVER_NAME`] and a client certificate
//! for the role [`CLIENT_ROLE`], all made with the openssl CLI, plus a
//! second CA that signed nothing here. Its pg_hba.conf accepts only TLS
//! connections (`hostssl`) from 127.0.0.1. The postmaster is started
//! directly (as the `postgres` user when the tests run as root, since
//! PostgreSQL refuses root), so it is our child: Drop stops it by PID, also
//! when the test fails. The server binaries are those `scripts/test.sh`
//! installs (`PG_BIN`, default `/usr/lib/postgresql/15/bin`).

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The DNS name in the server certificate (and only that name: not
/// 127.0.0.1). Reserved, never resolved: URLs pair it with
/// `hostaddr=127.0.0.1`.
pub const SERVER_NAME: &str = "db.regkeeper.test";

/// The role that logs in with the client certificate (`cert` auth).
pub const CLIENT_ROLE: &str = "regkeeper_client";

/// How long the cluster may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running TLS-only cluster; stopped and removed on Drop.
pub struct TlsCluster {
    // Fields drop in order: the server stops before its dir goes.
    _postmaster: Postmaster,
    port: u16,
    dir: tempfile::TempDir,
}

/// The server process, our child; stopped by PID on Drop.
struct Postmaster(Child);

impl TlsCluster {
    /// Makes the certificates, initialises the cluster and starts it on a
    /// free 127.0.0.1 port; panics with the server's log when it does not
    /// come up.
    pub fn start() -> TlsCluster {
        let dir = tempfile::Builder::new()
            .prefix("regkeeper-pgtls")
            .tempdir()
            .expect("creating a temp dir");
        make_certificates(dir.path());
        for key in ["server.key", "client.key", "ca.key", "other-ca.key"] {
            // The server refuses a key others may read.
            std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o600))
                .expect("making a key private");
        }
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            // The server must read its key and write its data dir.
            chown_tree(dir.path(), uid, gid);
        }
        let bin = pg_bin();
        let initdb = Command::new(bin.join("initdb"))
            .args(["-D", "data", "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync"])
            .current_dir(dir.path())
            .as_server_user(owner)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "running {}/initdb (run scripts/test.sh, which installs PostgreSQL): {error}",
                    bin.display()
                )
            });
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        // TLS only: no `host` line, so plain TCP connections are refused.
        let hba = dir.path().join("data/pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "local all all trust\n\
                 hostssl all {CLIENT_ROLE} 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 trust\n"
            ),
        )
        .expect("writing pg_hba.conf");
        if let Some((uid, gid)) = owner {
            chown(&hba, uid, gid);
        }
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = super::registry::free_port();
            let log = std::fs::File::create(dir.path().join("postgres.log"))
                .expect("creating postgres.log");
            let postmaster = Postmaster(
                Command::new(bin.join("postgres"))
                    .args(["-D", "data", "-p", &port.to_string()])
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .arg("-c")
                    .arg(format!("unix_socket_directories={}", dir.path().display()))
                    .args(["-c", "ssl=on", "-c", "ssl_cert_file=../server.crt"])
                    .args([
                        "-c",
                        "ssl_key_file=../server.key",
                        "-c",
                        "ssl_ca_file=../ca.crt",
                    ])
                    .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
                    .args(["-c", "max_connections=40"])
                    .current_dir(dir.path())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("cloning the log handle"))
                    .stderr(log)
                    .as_server_user(owner)
                    .spawn()
                    .expect("starting postgres"),
            );
            let mut postmaster = postmaster;
            if postmaster.wait_ready(&bin, port) {
                return TlsCluster {
                    _postmaster: postmaster,
                    port,
                    dir,
                };
            }
            drop(postmaster);
            last_log = std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
        }
        panic!("the TLS PostgreSQL cluster did not start:\n{last_log}");
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server and client certificates.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A CA that signed nothing this server presents.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.crt")
    }

    /// The client certificate for [`CLIENT_ROLE`] and its key.
    pub fn client_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("client.crt"),
            self.dir.path().join("client.key"),
        )
    }

    /// `postgres://USER@HOST:PORT/postgres?hostaddr=127.0.0.1&PARAMETERS`:
    /// the TCP connection always goes to 127.0.0.1, `host` is the name the
    /// certificate is checked against.
    pub fn url(&self, user: &str, host: &str, parameters: &str) -> String {
        let mut url = format!(
            "postgres://{user}@{host}:{}/postgres?hostaddr=127.0.0.1",
            self.port
        );
        if !parameters.is_empty() {
            url.push('&');
            url.push_str(parameters);
        }
        url
    }
}

impl Postmaster {
    /// Polls pg_isready until the server accepts connections; false when
    /// the postmaster exits first or the deadline passes.
    fn wait_ready(&mut self, bin: &Path, port: u16) -> bool {
        crate::wait::poll(START_DEADLINE, || {
            if let Ok(Some(_)) = self.0.try_wait() {
                return Some(false);
            }
            Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|status| status.success())
                .then_some(true)
        })
        .unwrap_or(false)
    }

    /// Immediate shutdown of the postmaster (our child, by PID); SIGKILL if
    /// it lingers.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: signals our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGQUIT);
        }
        let exited = crate::wait::poll(Duration::from_secs(30), || {
            matches!(self.0.try_wait(), Ok(Some(_))).then_some(())
        });
        if exited.is_some() {
            return;
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the PostgreSQL server binaries are.
fn pg_bin() -> PathBuf {
    PathBuf::from(
        std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string()),
    )
}

/// The `postgres` user's uid and gid when running as root (PostgreSQL
/// refuses to run as root); None otherwise.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls; the passwd record is read before any other
    // call could overwrite it.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let record = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !record.is_null(),
            "running as root and there is no postgres user (install postgresql)"
        );
        Some(((*record).pw_uid, (*record).pw_gid))
    }
}

trait AsServerUser {
    fn as_server_user(&mut self, owner: Option<(u32, u32)>) -> &mut Self;
}

impl AsServerUser for Command {
    fn as_server_user(&mut self, owner: Option<(u32, u32)>) -> &mut Self {
        if let Some((uid, gid)) = owner {
            self.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        self
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|error| panic!("chown {}: {error}", path.display()));
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    chown(dir, uid, gid);
    for entry in std::fs::read_dir(dir).expect("listing the temp dir") {
        chown(&entry.expect("a temp dir entry").path(), uid, gid);
    }
}

/// Writes `ca.crt` (the CA), `server.crt`/`server.key` (for [`SERVER_NAME`]),
/// `client.crt`/`client.key` (CN [`CLIENT_ROLE`]) signed by it, and
/// `other-ca.crt`. P-256 keys: quick to make.
fn make_certificates(dir: &Path) {
    let run = |arguments: &[&str]| crate::registry::openssl(dir, arguments);
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for (name, subject) in [
        ("ca", "/CN=regkeeper-test-db-ca"),
        ("other-ca", "/CN=regkeeper-test-other-ca"),
    ] {
        let (certificate, private_key) = (format!("{name}.crt"), format!("{name}.key"));
        let mut arguments = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
        arguments.extend(key);
        arguments.extend(["-keyout", &private_key, "-out", &certificate]);
        run(&arguments);
    }
    let server_subject = format!("/CN={SERVER_NAME}");
    let server_names = format!("subjectAltName=DNS:{SERVER_NAME}");
    let client_subject = format!("/CN={CLIENT_ROLE}");
    for (name, subject, extension) in [
        ("server", server_subject.as_str(), server_names.as_str()),
        (
            "client",
            client_subject.as_str(),
            "extendedKeyUsage=clientAuth",
        ),
    ] {
        let (certificate, private_key) = (format!("{name}.crt"), format!("{name}.key"));
        let mut arguments = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
        arguments.extend(key);
        arguments.extend(["-CA", "ca.crt", "-CAkey", "ca.key"]);
        arguments.extend(["-addext", extension]);
        arguments.extend(["-addext", "basicConstraints=critical,CA:FALSE"]);
        arguments.extend(["-keyout", &private_key, "-out", &certificate]);
        run(&arguments);
    }
}
