//! What a reload (SIGHUP) changes, pure: [`compare`] splits a newly loaded
//! configuration into what the running daemon takes over (the jobs, the
//! scanners, `grace_period`, `log_format`) and the keys that need a restart
//! (the database, the registry client, the intake, the run settings), and
//! names the jobs added, removed and changed. Every field of the
//! configuration is named here without `..`, so a new one does not compile
//! until someone decides whether it reloads. The I/O (loading, building
//! handlers, telling the scheduler) is the daemon's.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{
    Config, DaemonConfig, Database, HandlerConfig, JobConfig, MetricsConfig, NotificationsConfig,
    RegistryConfig, Schedule, SecretFiles,
};

/// Reloads refused since the daemon started (a file that does not load,
/// a job whose handler cannot be built).
static RELOAD_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How many reloads this process refused so far.
pub fn reload_failures() -> u64 {
    RELOAD_FAILURES.load(Ordering::Relaxed)
}

/// Counts one refused reload.
pub(super) fn count_failure() {
    RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// What a newly loaded configuration changes in the running one.
#[derive(Debug)]
pub(super) struct Comparison {
    /// The keys that changed but need a restart, e.g. `[database] url`.
    pub(super) needs_restart: Vec<&'static str>,
    /// Jobs new in the file, in file order.
    pub(super) added: Vec<String>,
    /// Jobs no longer in the file, in the running order.
    pub(super) removed: Vec<String>,
    /// Jobs whose keys changed (`enabled` too), or security jobs whose
    /// scanners changed, in file order.
    pub(super) changed: Vec<String>,
}

impl Comparison {
    /// The summary line: `reload: jobs added=[..] removed=[..] changed=[..]`.
    pub(super) fn summary(&self) -> String {
        format!(
            "reload: jobs added=[{}] removed=[{}] changed=[{}]",
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}

/// Compares `new` with the `running` configuration. Returns what the
/// daemon runs with from now on (the new file, except for the keys that
/// need a restart, which keep their running values) and what changed.
pub(super) fn compare(running: &Config, new: Config) -> (Config, Comparison) {
    let mut needs_restart = Vec::new();
    let mut restart_if = |key: &'static str, changed: bool| {
        if changed {
            needs_restart.push(key);
        }
    };
    let Config {
        path,
        database,
        registry,
        notifications,
        daemon,
        jobs,
        security,
        secret_files,
        metrics,
    } = new;

    // The store is opened once.
    restart_if("[database] url", !same_place(&running.database, &database));
    restart_if(
        "[database] password",
        database_password(&running.database) != database_password(&database),
    );
    restart_if(
        "[database] pool_size",
        pool_size(&running.database) != pool_size(&database),
    );

    // One registry client is built at start-up and shared by every handler;
    // the intake's filter of regkeeper's own pulls knows its username.
    let RegistryConfig {
        url,
        username,
        password,
        ca_file,
        insecure_skip_tls_verify,
        timeout,
        concurrency,
        catalog_page_size,
        token_realms,
        scanner_username,
        scanner_password,
        share_password_with_scanners,
    } = &registry;
    let old = &running.registry;
    restart_if("[registry] token_realms", *token_realms != old.token_realms);
    restart_if(
        "[registry] scanner_username",
        *scanner_username != old.scanner_username,
    );
    restart_if(
        "[registry] scanner_password",
        *scanner_password != old.scanner_password,
    );
    restart_if(
        "[registry] share_password_with_scanners",
        *share_password_with_scanners != old.share_password_with_scanners,
    );
    restart_if("[registry] url", *url != old.url);
    restart_if("[registry] username", *username != old.username);
    restart_if("[registry] password", *password != old.password);
    restart_if("[registry] ca_file", *ca_file != old.ca_file);
    restart_if(
        "[registry] insecure_skip_tls_verify",
        *insecure_skip_tls_verify != old.insecure_skip_tls_verify,
    );
    restart_if("[registry] timeout", *timeout != old.timeout);
    restart_if("[registry] concurrency", *concurrency != old.concurrency);
    restart_if(
        "[registry] catalog_page_size",
        *catalog_page_size != old.catalog_page_size,
    );

    // The intake keeps its listener and its checks: it must not miss a
    // notification while the file is read again.
    let NotificationsConfig {
        listen,
        token,
        allow_unauthenticated,
        body_limit,
    } = &notifications;
    let old = &running.notifications;
    restart_if("[notifications] listen", *listen != old.listen);
    restart_if("[notifications] token", *token != old.token);
    restart_if(
        "[notifications] allow_unauthenticated",
        *allow_unauthenticated != old.allow_unauthenticated,
    );
    restart_if("[notifications] body_limit", *body_limit != old.body_limit);

    // Secret files: their contents were compared above; a new path to the
    // same secret is still a change of the file that needs a restart.
    // The scanners' token files are read into the scanners, which reload;
    // the database file and the other files read are the keys above.
    let SecretFiles {
        database_password: database_password_file,
        registry_password,
        registry_scanner_password,
        notify_token,
        scanner_tokens: _,
        database_file: _,
        read_files: _,
    } = &secret_files;
    let old = &running.secret_files;
    let file_path =
        |file: &Option<crate::config::KeyedFile>| file.as_ref().map(|file| file.path.clone());
    restart_if(
        "[database] password_file",
        file_path(database_password_file) != file_path(&old.database_password),
    );
    restart_if(
        "[registry] password_file",
        file_path(registry_password) != file_path(&old.registry_password),
    );
    restart_if(
        "[registry] scanner_password_file",
        file_path(registry_scanner_password) != file_path(&old.registry_scanner_password),
    );
    restart_if(
        "[notifications] token_file",
        file_path(notify_token) != file_path(&old.notify_token),
    );

    // The metrics listener is bound once.
    let MetricsConfig {
        listen: metrics_listen,
        intake: metrics_on_intake,
        queue_refresh,
    } = &metrics;
    let old = &running.metrics;
    restart_if("[metrics] listen", *metrics_listen != old.listen);
    restart_if("[metrics] intake", *metrics_on_intake != old.intake);
    restart_if(
        "[metrics] queue_refresh",
        *queue_refresh != old.queue_refresh,
    );

    // `grace_period` is read at shutdown and `log_format` switches at once;
    // the others are the settings every job task records its runs with
    // (one claimant, one heartbeat, one expiry for all jobs) or only
    // matter at start-up.
    let DaemonConfig {
        grace_period,
        keep_runs,
        database_wait,
        heartbeat,
        abandon_after,
        log_format,
    } = daemon;
    let old = &running.daemon;
    restart_if("[daemon] keep_runs", keep_runs != old.keep_runs);
    restart_if("[database] wait", database_wait != old.database_wait);
    restart_if("[daemon] heartbeat", heartbeat != old.heartbeat);
    restart_if("[daemon] abandon_after", abandon_after != old.abandon_after);
    let effective_daemon = DaemonConfig {
        grace_period,
        log_format,
        ..old.clone()
    };

    // The jobs and the scanners reload.
    let scanners_changed = security != running.security;
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for job in &jobs {
        match running.job(&job.name) {
            None => added.push(job.name.clone()),
            Some(old_job) => {
                let uses_scanners = matches!(job.handler, HandlerConfig::Security(_));
                if !same_job(old_job, job) || (uses_scanners && scanners_changed) {
                    changed.push(job.name.clone());
                }
            }
        }
    }
    let removed = running
        .jobs
        .iter()
        .filter(|old_job| !jobs.iter().any(|job| job.name == old_job.name))
        .map(|old_job| old_job.name.clone())
        .collect();

    let effective = Config {
        // The file reloaded is the one the daemon started with.
        path,
        database: running.database.clone(),
        registry: running.registry.clone(),
        notifications: running.notifications.clone(),
        daemon: effective_daemon,
        jobs,
        security,
        secret_files: running.secret_files.clone(),
        metrics: running.metrics.clone(),
    };
    let comparison = Comparison {
        needs_restart,
        added,
        removed,
        changed,
    };
    (effective, comparison)
}

/// Whether two jobs of one name are configured alike.
fn same_job(old: &JobConfig, new: &JobConfig) -> bool {
    let JobConfig {
        name,
        schedule:
            Schedule {
                expression,
                // Parsed from the expression.
                cron: _,
                timezone,
                // Where it is written in the file: moving it changes nothing.
                position: _,
            },
        enabled,
        timeout,
        jitter,
        handler,
    } = new;
    *name == old.name
        && *expression == old.schedule.expression
        && *timezone == old.schedule.timezone
        && *enabled == old.enabled
        && *timeout == old.timeout
        && *jitter == old.jitter
        && same_handler(&old.handler, handler)
}

fn same_handler(old: &HandlerConfig, new: &HandlerConfig) -> bool {
    match (old, new) {
        (HandlerConfig::Events(old), HandlerConfig::Events(new)) => old == new,
        (HandlerConfig::Sync(old), HandlerConfig::Sync(new)) => old == new,
        (HandlerConfig::Security(old), HandlerConfig::Security(new)) => old == new,
        (HandlerConfig::Gc(old), HandlerConfig::Gc(new)) => old == new,
        (
            HandlerConfig::Events(_)
            | HandlerConfig::Sync(_)
            | HandlerConfig::Security(_)
            | HandlerConfig::Gc(_),
            _,
        ) => false,
    }
}

/// Whether both name the same database (file or server and database).
fn same_place(old: &Database, new: &Database) -> bool {
    match (old, new) {
        (Database::Sqlite { path: old }, Database::Sqlite { path: new }) => old == new,
        (Database::Postgres { url: old, .. }, Database::Postgres { url: new, .. }) => old == new,
        (Database::Sqlite { .. } | Database::Postgres { .. }, _) => false,
    }
}

fn database_password(database: &Database) -> Option<&str> {
    match database {
        Database::Sqlite { path: _ } => None,
        Database::Postgres {
            url: _,
            password,
            pool_size: _,
        } => password.as_deref(),
    }
}

fn pool_size(database: &Database) -> Option<u32> {
    match database {
        Database::Sqlite { path: _ } => None,
        Database::Postgres {
            url: _,
            password: _,
            pool_size,
        } => Some(*pool_size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        crate::config::parse(text, Path::new("schedules.toml")).expect("a valid config")
    }

    const BASE: &str = "[database]\nurl = \"sqlite://a.db\"\n[registry]\nurl = \"http://r:5000\"\n\
        [notifications]\nlisten = \"127.0.0.1:5055\"\n[daemon]\ngrace_period = \"30s\"\n";

    const JOBS: &str = "[jobs.ev]\nhandler = \"events\"\nschedule = \"*/5 * * * * *\"\n\
        [jobs.sync]\nhandler = \"sync\"\nschedule = \"0 * * * * *\"\nstrategy = \"update\"\n\
        [jobs.scan]\nhandler = \"security\"\nschedule = \"0 0 * * * *\"\n\
        [security.fixture]\nfile = \"reports.json\"\n";

    #[test]
    fn the_same_file_changes_nothing() {
        let running = parse(&format!("{BASE}{JOBS}"));
        let (_, comparison) = compare(&running, parse(&format!("{BASE}{JOBS}")));
        assert!(comparison.needs_restart.is_empty());
        assert_eq!(
            comparison.summary(),
            "reload: jobs added=[] removed=[] changed=[]"
        );
    }

    #[test]
    fn jobs_added_removed_and_changed_are_named() {
        let running = parse(&format!("{BASE}{JOBS}"));
        let new_jobs = JOBS
            .replace("[jobs.ev]", "[jobs.events]")
            .replace("\"0 * * * * *\"", "\"30 * * * * *\"")
            .replace("reports.json", "other.json");
        let (_, comparison) = compare(&running, parse(&format!("{BASE}{new_jobs}")));
        assert_eq!(comparison.added, ["events"]);
        assert_eq!(comparison.removed, ["ev"]);
        // The scanners changed: the security job is built again.
        assert_eq!(comparison.changed, ["sync", "scan"]);
        assert_eq!(
            comparison.summary(),
            "reload: jobs added=[events] removed=[ev] changed=[sync, scan]"
        );
        let disabled = JOBS.replace(
            "strategy = \"update\"\n",
            "strategy = \"update\"\nenabled = false\n",
        );
        let (_, comparison) = compare(&running, parse(&format!("{BASE}{disabled}")));
        assert_eq!(comparison.changed, ["sync"]);
        let options = JOBS.replace("\"update\"", "\"update-delete\"");
        assert_eq!(
            compare(&running, parse(&format!("{BASE}{options}")))
                .1
                .changed,
            ["sync"]
        );
    }

    #[test]
    fn restart_keys_are_named_and_keep_their_running_values() {
        let running = parse(&format!("{BASE}{JOBS}"));
        let new_base = BASE
            .replace("a.db", "b.db")
            .replace("5055", "5056")
            .replace("http://r:5000", "http://r:5001")
            .replace(
                "grace_period = \"30s\"",
                "grace_period = \"5s\"\nkeep_runs = 3",
            );
        let (effective, comparison) = compare(&running, parse(&format!("{new_base}{JOBS}")));
        assert_eq!(
            comparison.needs_restart,
            [
                "[database] url",
                "[registry] url",
                "[notifications] listen",
                "[daemon] keep_runs"
            ]
        );
        assert_eq!(crate::store::describe(&effective.database), "sqlite://a.db");
        assert_eq!(effective.registry.url.as_str(), "http://r:5000/");
        assert_eq!(effective.notifications.listen, running.notifications.listen);
        assert_eq!(effective.daemon.keep_runs, 100);
        // Reloaded at once.
        assert_eq!(
            effective.daemon.grace_period,
            std::time::Duration::from_secs(5)
        );
        assert!(comparison.changed.is_empty());
    }
}
