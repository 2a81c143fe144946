//! Opening a store: two stores on one SQLite file, a database that does
//! not answer (yet), a SQLite path that cannot be opened.

use std::sync::Arc;
use std::time::Duration;

use regkeeper::store::{self, Store};
use regkeeper_test_support::postgres::TestDatabase;

use crate::{write, NOW};

/// The daemon and a `regkeeper --once` share one SQLite file.
#[test]
fn two_stores_on_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = regkeeper::config::Database::Sqlite {
        path: dir.path().join("regkeeper.db"),
    };
    let first = store::open(&config, Duration::from_secs(5)).expect("opening the first store");
    let second = store::open(&config, Duration::from_secs(5)).expect("opening the second store");
    let registry = first
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    assert_eq!(
        second
            .ensure_registry("127.0.0.1:5000")
            .expect("ensure_registry"),
        registry
    );

    let writers: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .enumerate()
        .map(|(writer, store): (usize, Arc<dyn Store>)| {
            std::thread::spawn(move || {
                for n in 0..50 {
                    let tag = write(
                        &format!("ns/repo{writer}"),
                        &format!("t{n}"),
                        &format!("sha256:{writer}{n}"),
                    );
                    store.upsert_tag(registry, &tag, NOW).expect("upsert_tag");
                    store.queue_counts().expect("queue_counts");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    assert_eq!(first.queue_counts().unwrap().tags, 100);
    assert_eq!(second.tags(registry, Some("ns/repo0")).unwrap().len(), 50);
    assert_eq!(
        second.repositories(registry).unwrap(),
        vec!["ns/repo0", "ns/repo1"]
    );
}

#[test]
fn open_gives_up_after_the_wait_with_the_cause() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = regkeeper::config::Database::Postgres {
        url: format!("postgres://regkeeper@127.0.0.1:{port}/regkeeper"),
        password: Some("s3cret-password".to_string()),
        pool_size: 2,
    };
    let error = match store::open(&config, Duration::from_millis(600)) {
        Ok(_) => panic!("opening a database nobody serves succeeded"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("did not answer within 600ms"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("connecting to"), "{error}");
    assert!(!error.contains("s3cret-password"), "{error}");
}

/// A SQLite file is not a server that may still be starting: a bad path fails
/// at once instead of retrying for the whole wait.
#[test]
fn open_sqlite_in_a_missing_directory_fails_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing").join("regkeeper.db");
    let config = regkeeper::config::Database::Sqlite { path: path.clone() };
    let error = match store::open(&config, Duration::from_secs(24 * 3600)) {
        Ok(_) => panic!("opening {} succeeded", path.display()),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains(&format!("opening sqlite database {}", path.display())),
        "{error}"
    );
}

/// A database that refuses the first connection and answers the next: start-up
/// retries instead of giving up. A relay in front of the test cluster drops
/// its first connection, then forwards.
#[test]
fn open_waits_for_the_database_to_answer() {
    use std::io::copy;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let database = TestDatabase::create();
    let mut url = url::Url::parse(database.url()).expect("database url");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let relay = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
    url.set_port(Some(relay.local_addr().unwrap().port()))
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let relay_accepted = accepted.clone();
    std::thread::spawn(move || {
        for client in relay.incoming() {
            let Ok(client) = client else { continue };
            if relay_accepted.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || copy(&mut client_read, &mut server_write));
            let (mut server_read, mut client_write) = (server, client);
            std::thread::spawn(move || copy(&mut server_read, &mut client_write));
        }
    });

    let config = regkeeper::config::Database::Postgres {
        url: url.to_string(),
        password: None,
        pool_size: 2,
    };
    let store =
        store::open(&config, Duration::from_secs(120)).expect("opening after a refused attempt");
    store.ping().expect("ping through the relay");
    assert!(
        accepted.load(Ordering::SeqCst) >= 2,
        "the first attempt was refused, a later one answered"
    );
}

/// The read-only commands' store: nothing is created or migrated, a
/// database without the schema is refused saying so, and the database
/// refuses writes; on both backends.
fn read_only_opening_checks_the_schema_and_writes_nothing(config: regkeeper::config::Database) {
    let wait = Duration::from_secs(30);
    let error = format!(
        "{:#}",
        store::open_read_only(&config, wait)
            .err()
            .expect("no schema yet")
    );
    assert!(
        error.contains("the database has no regkeeper schema (the daemon or `regkeeper --once JOB` creates it)"),
        "{error}"
    );
    let writer = store::open(&config, wait).expect("opening and migrating");
    let registry = writer
        .ensure_registry("127.0.0.1:5000")
        .expect("ensure_registry");
    writer
        .upsert_tag(registry, &write("ns/app", "1.0", "sha256:a"), NOW)
        .expect("upsert_tag");
    let reader = store::open_read_only(&config, wait).expect("opening read-only");
    assert_eq!(
        reader.find_registry("127.0.0.1:5000").unwrap(),
        Some(registry)
    );
    assert_eq!(reader.tags(registry, None).unwrap().len(), 1);
    assert!(
        reader.ensure_registry("127.0.0.1:5001").is_err(),
        "a read-only store wrote"
    );
    assert_eq!(writer.find_registry("127.0.0.1:5001").unwrap(), None);
}

#[test]
fn read_only_opening_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("regkeeper.db");
    let config = regkeeper::config::Database::Sqlite { path: path.clone() };
    let error = format!(
        "{:#}",
        store::open_read_only(&config, Duration::from_secs(5))
            .err()
            .expect("no file")
    );
    assert!(error.contains("does not exist"), "{error}");
    assert!(!path.exists(), "opening read-only created the file");
    std::fs::write(&path, "").expect("an empty database file");
    read_only_opening_checks_the_schema_and_writes_nothing(config);
}

#[test]
fn read_only_opening_on_postgres() {
    let database = TestDatabase::create();
    read_only_opening_checks_the_schema_and_writes_nothing(database.config());
}
