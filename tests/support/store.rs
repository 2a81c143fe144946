//! A store on either database for one test: [`TestStore::new`] makes a fresh
//! database ([`Backend::Sqlite`]: a file in a temp dir; [`Backend::Postgres`]:
//! a [`TestDatabase`] in the cluster `scripts/test.sh` starts) and a
//! migrated [`SqlStore`] on it; the database goes when the `TestStore` drops.
//! [`connect`] is the one place a test store is built, also for a database
//! the binary made (a CLI test's SQLite file). [`both_backends!`](crate::both_backends) runs a
//! test body on each backend.
//!
//! Tests that exercise the product's own opener (`regkeeper::store::open`:
//! waiting, migrating) call it directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regkeeper::store::postgres::PostgresBackend;
use regkeeper::store::sql::SqlStore;
use regkeeper::store::sqlite::SqliteBackend;
use regkeeper::store::{Dialect, Store};

use crate::postgres::TestDatabase;

/// Connections in a test store's PostgreSQL pool.
const POOL_SIZE: u32 = 8;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp dir.
    Sqlite,
    /// A database of its own in the test cluster.
    Postgres,
}

impl Backend {
    /// Both, SQLite first.
    pub const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// The SQL dialect the store speaks on it.
    pub fn dialect(self) -> Dialect {
        match self {
            Backend::Sqlite => Dialect::Sqlite,
            Backend::Postgres => Dialect::Postgres,
        }
    }
}

/// Where a test store's database lives; removed on drop.
enum Place {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres(TestDatabase),
}

/// A store on a fresh database of one backend, dereferencing to its
/// [`SqlStore`]; the database is removed on drop.
pub struct TestStore {
    store: Arc<SqlStore>,
    backend: Backend,
    // Declared after the store: connections close before the database goes.
    place: Place,
}

impl TestStore {
    /// A migrated store on a fresh database.
    pub fn new(backend: Backend) -> TestStore {
        let store = TestStore::unmigrated(backend);
        store.migrate().expect("migrating the test database");
        store
    }

    /// A store on a fresh, empty database, not migrated (for tests of the
    /// migrations themselves).
    pub fn unmigrated(backend: Backend) -> TestStore {
        let place = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("creating a temp dir");
                Place::Sqlite {
                    path: dir.path().join("regkeeper.db"),
                    _dir: dir,
                }
            }
            Backend::Postgres => Place::Postgres(TestDatabase::create()),
        };
        let store = Arc::new(connect(&config_of(&place)));
        TestStore {
            store,
            backend,
            place,
        }
    }

    /// The backend it runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The store, shared as the product's code takes it.
    pub fn shared(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The store itself, shared.
    pub fn sql(&self) -> Arc<SqlStore> {
        self.store.clone()
    }

    /// Another store with its own connections on the same database, as a
    /// second process has; not migrated.
    pub fn another(&self) -> SqlStore {
        connect(&self.config())
    }

    /// The database as regkeeper's configuration describes it.
    pub fn config(&self) -> regkeeper::config::Database {
        config_of(&self.place)
    }

    /// The database's URL as a configuration file gives it
    /// (`sqlite://PATH` or the PostgreSQL URL).
    pub fn url(&self) -> String {
        match &self.place {
            Place::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Place::Postgres(database) => database.url().to_string(),
        }
    }

    /// The SQLite file, on [`Backend::Sqlite`].
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.place {
            Place::Sqlite { path, .. } => Some(path),
            Place::Postgres(_) => None,
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = SqlStore;

    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

fn config_of(place: &Place) -> regkeeper::config::Database {
    match place {
        Place::Sqlite { path, .. } => regkeeper::config::Database::Sqlite { path: path.clone() },
        Place::Postgres(database) => regkeeper::config::Database::Postgres {
            url: database.url().to_string(),
            password: None,
            pool_size: POOL_SIZE,
        },
    }
}

/// A store (not migrated) on `database`: the one way tests build one.
pub fn connect(database: &regkeeper::config::Database) -> SqlStore {
    match database {
        regkeeper::config::Database::Sqlite { path } => SqlStore::new(Box::new(
            SqliteBackend::open(path)
                .unwrap_or_else(|error| panic!("opening {}: {error:#}", path.display())),
        )),
        regkeeper::config::Database::Postgres {
            url,
            password,
            pool_size,
        } => SqlStore::new(Box::new(
            PostgresBackend::connect(url, password.as_deref(), *pool_size)
                .unwrap_or_else(|error| panic!("connecting to {url}: {error:#}")),
        )),
    }
}

/// A migrated store on the SQLite file at `path` (one the binary made).
pub fn sqlite_file(path: &Path) -> SqlStore {
    let store = connect(&regkeeper::config::Database::Sqlite {
        path: path.to_path_buf(),
    });
    store.migrate().expect("migrating the sqlite file");
    store
}

/// Runs each named test body on both backends: for every `case`, a
/// function `fn case(backend: Backend)` in the calling module, it defines
/// the tests `sqlite::case` and `postgres::case`. One invocation per module.
#[macro_export]
macro_rules! both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case($crate::store::Backend::Sqlite)
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    super::$case($crate::store::Backend::Postgres)
                }
            )+
        }
    };
}
