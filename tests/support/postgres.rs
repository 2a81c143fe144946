//! A fresh PostgreSQL database per test, inside the cluster that
//! `scripts/test.sh` starts and names in `REGKEEPER_TEST_POSTGRES_URL`.
//! The database is dropped when the [`TestDatabase`] is dropped. Admin work
//! runs on its own thread, so this works from async tests too (the
//! synchronous driver must not run on an async worker).

use std::sync::atomic::{AtomicU32, Ordering};

/// The variable `scripts/test.sh` sets to the cluster's admin URL.
pub const URL_VARIABLE: &str = "REGKEEPER_TEST_POSTGRES_URL";

/// A uniquely named, empty database; dropped on Drop.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates the database. Panics, saying to run `scripts/test.sh`, when
    /// the cluster's URL is not set.
    pub fn create() -> TestDatabase {
        let admin_url = std::env::var(URL_VARIABLE).unwrap_or_else(|_| {
            panic!("{URL_VARIABLE} is not set: run the tests with `scripts/test.sh`, which starts PostgreSQL")
        });
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "regkeeper_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            rand::random::<u32>()
        );
        let mut url = url::Url::parse(&admin_url).expect("REGKEEPER_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        admin(&admin_url, format!("CREATE DATABASE {name}"));
        TestDatabase {
            name,
            url: url.to_string(),
            admin_url,
        }
    }

    /// The database's URL (no password: the test cluster trusts 127.0.0.1).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database as regkeeper's configuration describes it.
    pub fn config(&self) -> regkeeper::config::Database {
        regkeeper::config::Database::Postgres {
            url: self.url.clone(),
            password: None,
            pool_size: 4,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = self.admin_url.clone();
        let result = std::thread::spawn(move || run_admin(&admin_url, &statement)).join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Runs one admin statement on its own thread; panics with the error.
fn admin(admin_url: &str, statement: String) {
    let admin_url = admin_url.to_string();
    let shown = statement.clone();
    match std::thread::spawn(move || run_admin(&admin_url, &statement)).join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("{shown}: {error}"),
        Err(_) => panic!("{shown}: the admin thread panicked"),
    }
}

fn run_admin(admin_url: &str, statement: &str) -> Result<(), postgres::Error> {
    let mut client = postgres::Client::connect(admin_url, postgres::NoTls)?;
    client.batch_execute(statement)
}
