//! TLS to PostgreSQL, against real servers: a TLS-only cluster of each
//! test's own (`support::postgres_tls`, certificates made by the test) and
//! the suite's cluster from `scripts/test.sh`, which has TLS off. Every
//! connection goes through `PostgresBackend` (the pool and the dedicated
//! advisory-lock connection) or the real binary.

use regkeeper_test_support as support;

use regkeeper::store::postgres::PostgresBackend;
use regkeeper::store::{Backend, Value};
use support::cli::{run_binary_with_env, CliEnv, UNUSED_REGISTRY};
use support::postgres::TestDatabase;
use support::postgres_tls::{TlsCluster, CLIENT_ROLE, SERVER_NAME};

fn connect(url: &str) -> anyhow::Result<PostgresBackend> {
    PostgresBackend::connect(url, None, 2)
}

/// `pg_stat_ssl.ssl` of the session of a pooled connection.
fn encrypted(backend: &PostgresBackend) -> bool {
    let mut rows = Vec::new();
    backend
        .transaction(&mut |conn| {
            rows = conn.query(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )?;
            Ok(())
        })
        .expect("reading pg_stat_ssl");
    match rows.as_slice() {
        [row] => row[0] == Value::Int(1),
        other => panic!("pg_stat_ssl rows for this session: {other:?}"),
    }
}

fn connect_error(url: &str) -> String {
    match connect(url) {
        Ok(_) => panic!("connecting to {url} succeeded"),
        Err(error) => {
            eprintln!("MSG {error:#}");
            format!("{error:#}")
        }
    }
}

#[test]
fn require_encrypts_without_checking_the_certificate() {
    let cluster = TlsCluster::start();
    // 127.0.0.1 is not in the certificate, and its CA is not trusted:
    // `require` encrypts all the same, as libpq does.
    let backend = connect(&cluster.url("postgres", "127.0.0.1", "sslmode=require"))
        .expect("connecting with sslmode=require");
    assert!(encrypted(&backend));
    // The advisory lock's own connection goes through TLS too.
    let lock = backend
        .try_advisory_lock(42)
        .expect("taking an advisory lock over TLS");
    assert!(lock.is_some());
    // The default (prefer) takes TLS when the server offers it.
    let default = connect(&cluster.url("postgres", "127.0.0.1", "")).expect("connecting");
    assert!(encrypted(&default));
}

#[test]
fn verify_full_connects_with_the_right_ca_and_host_name() {
    let cluster = TlsCluster::start();
    let ca = cluster.ca_file();
    let url = cluster.url(
        "postgres",
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let backend = connect(&url).expect("connecting with sslmode=verify-full");
    assert!(encrypted(&backend));
    // verify-ca checks the chain only: a host name the certificate does
    // not carry is fine.
    let chain_only = connect(&cluster.url(
        "postgres",
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
    ))
    .expect("connecting with sslmode=verify-ca");
    assert!(encrypted(&chain_only));

    // The daemon's own path: the binary opens the store (migrations
    // included, by a `--once` run) over verify-full, then `status` reads it
    // read-only, and prints the url without the password.
    let env = CliEnv::new();
    env.write_config(&format!(
        "[database]\nurl = \"{url}\"\nwait = \"10s\"\n{UNUSED_REGISTRY}\
         [jobs.ev]\nhandler = \"events\"\nschedule = \"* * * * * *\"\nenabled = false\n"
    ));
    let config = env.config_path();
    let once = run_binary_with_env(
        env.dir.path(),
        &[
            "--once",
            "ev",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
        &[("REGKEEPER_DATABASE_PASSWORD", "tls-test-secret")],
    );
    assert_eq!(once.code, Some(0), "{once:?}");
    let output = run_binary_with_env(
        env.dir.path(),
        &["status", "--config", config.to_str().expect("utf-8 path")],
        &[("REGKEEPER_DATABASE_PASSWORD", "tls-test-secret")],
    );
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(
        output.stdout.starts_with(&format!("database {url}\n")),
        "{output:?}"
    );
    assert!(
        !format!("{output:?}").contains("tls-test-secret"),
        "{output:?}"
    );
}

#[test]
fn verify_full_refuses_a_wrong_ca_or_host_name() {
    let cluster = TlsCluster::start();
    let other_ca = cluster.other_ca_file();
    let message = connect_error(&cluster.url(
        "postgres",
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    ));
    assert!(
        message.contains(
            "error performing TLS handshake: invalid peer certificate: UnknownIssuer (the server's certificate is not signed by a CA in sslrootcert)"
        ),
        "{message}"
    );
    // As libpq: `require` with a root certificate checks the chain too.
    let message = connect_error(&cluster.url(
        "postgres",
        SERVER_NAME,
        &format!("sslmode=require&sslrootcert={}", other_ca.display()),
    ));
    assert!(
        message.contains("the server's certificate is not signed by a CA in sslrootcert"),
        "{message}"
    );
    // The right CA, but the url's host is not in the certificate.
    let message = connect_error(&cluster.url(
        "postgres",
        "127.0.0.1",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            cluster.ca_file().display()
        ),
    ));
    assert!(
        message.contains(
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"db.regkeeper.test\") (the server's certificate does not name the url's host; verify-full checks it, verify-ca does not)"
        ),
        "{message}"
    );
}

#[test]
fn disable_is_refused_by_a_server_that_accepts_only_tls() {
    let cluster = TlsCluster::start();
    let message = connect_error(&cluster.url("postgres", "127.0.0.1", "sslmode=disable"));
    assert!(
        message.contains("no pg_hba.conf entry") && message.contains("no encryption"),
        "{message}"
    );
    assert!(message.contains("(28000)"), "{message}");
}

#[test]
fn a_client_certificate_logs_in_a_role_with_cert_auth() {
    let cluster = TlsCluster::start();
    let admin = connect(&cluster.url("postgres", "127.0.0.1", "sslmode=require")).expect("admin");
    admin
        .transaction(&mut |conn| conn.execute_batch(&format!("CREATE ROLE {CLIENT_ROLE} LOGIN")))
        .expect("creating the client role");
    let ca = cluster.ca_file();
    let (certificate, key) = cluster.client_files();
    let backend = connect(&cluster.url(
        CLIENT_ROLE,
        SERVER_NAME,
        &format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            ca.display(),
            certificate.display(),
            key.display()
        ),
    ))
    .expect("connecting with a client certificate");
    assert!(encrypted(&backend));
    // Without it the server refuses the role.
    let message = connect_error(&cluster.url(
        CLIENT_ROLE,
        SERVER_NAME,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ));
    assert!(
        message.contains("connection requires a valid client certificate (28000)"),
        "{message}"
    );
}

#[test]
fn prefer_falls_back_to_plain_on_a_server_without_tls() {
    // The suite's cluster has TLS off.
    let database = TestDatabase::create();
    for parameters in ["", "?sslmode=prefer"] {
        let backend = connect(&format!("{}{parameters}", database.url()))
            .expect("connecting with sslmode=prefer");
        assert!(!encrypted(&backend), "{parameters}");
    }
    let message = connect_error(&format!("{}?sslmode=require", database.url()));
    assert!(
        message.contains("error performing TLS handshake: server does not support TLS"),
        "{message}"
    );
}

#[test]
fn a_missing_certificate_file_stops_start_up_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing-ca.pem");
    // Nothing listens on port 9: only the file is in question.
    let database = regkeeper::config::Database::Postgres {
        url: format!(
            "postgres://app@127.0.0.1:9/reg?sslmode=verify-full&sslrootcert={}",
            missing.display()
        ),
        password: Some("tls-test-secret".to_string()),
        pool_size: 1,
    };
    let message = match regkeeper::store::open(&database, std::time::Duration::from_secs(60)) {
        Ok(_) => panic!("opened a store without its sslrootcert"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        message.starts_with(&format!(
            "database url postgres://app@127.0.0.1:9/reg?sslmode=verify-full&sslrootcert={0}: sslrootcert: reading {0}:",
            missing.display()
        )),
        "{message}"
    );
    assert!(!message.contains("did not answer"), "{message}");
}

#[test]
fn an_invalid_sslmode_is_a_config_error_naming_it() {
    let env = CliEnv::new();
    env.write_config(&format!(
        "[database]\nurl = \"postgres://app@127.0.0.1:9/reg?sslmode=verify_full\"\n{UNUSED_REGISTRY}"
    ));
    let output = env.run(&["check"]);
    assert_eq!(output.code, Some(2), "{output:?}");
    assert!(
        output.stderr.contains(
            "[database] url: sslmode: unsupported value \"verify_full\" (expected disable, prefer, require, verify-ca or verify-full)"
        ),
        "{output:?}"
    );
}
