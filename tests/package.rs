//! The Debian package end to end (docs/install.md): `scripts/package.sh`
//! builds it, `dpkg -i` installs it on this machine, the installed binary
//! checks the installed configuration as the `regkeeper` user, installing
//! it again (as an upgrade does) keeps the state and an edited
//! configuration, then `dpkg -r` keeps the configuration, the state and the user and `dpkg -P`
//! leaves nothing behind. Also: the systemd unit's hardening score, held to
//! the figure in docs/install.md, and the packaged configuration held to
//! the repository's `schedules.toml`.
//!
//! The install test is the only test that uses dpkg; `.config/nextest.toml`
//! runs it alone. It needs root and says so when it skips. It purges the
//! package whatever happens (a guard), and refuses to start when a
//! `regkeeper` package or user is already on the machine, so that it never
//! removes an install that is not its own. The systemd unit is never
//! started: systemd is not PID 1 on test machines.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Cargo profile the test packages. `dev`: the binary the test build
/// already made, so packaging costs seconds instead of a release build
/// (docs/install.md); the package's layout and scripts do not depend on it.
const PROFILE: &str = "dev";

/// The highest exposure the unit may have: systemd's "OK" or better.
const MAX_EXPOSURE: f64 = 3.0;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to its end; panics if it could not be started.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|error| panic!("running {program}: {error}"))
}

/// Runs a command that must succeed; returns its stdout.
fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `systemd-analyze security --offline=yes`'s overall exposure of `unit`
/// and its rating word ("OK", "MEDIUM", ...).
fn exposure(unit: &Path) -> (f64, String) {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(unit)
        .output()
        .expect("running systemd-analyze (Debian package systemd; scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure in the output of systemd-analyze ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
    // "→ Overall exposure level for regkeeper.service: 1.1 OK 🙂"
    let mut words = line
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .split_whitespace();
    let figure = words.next().and_then(|figure| figure.parse().ok());
    let rating = words.next();
    match (figure, rating) {
        (Some(figure), Some(rating)) => (figure, rating.to_owned()),
        _ => panic!("unexpected exposure line: {line}"),
    }
}

#[test]
fn systemd_analyze_rates_the_unit_ok_with_the_figure_in_the_docs() {
    let (figure, rating) = exposure(&repository().join("packaging/regkeeper.service"));
    assert!(
        figure <= MAX_EXPOSURE,
        "exposure {figure} {rating} is above {MAX_EXPOSURE}"
    );
    let install = std::fs::read_to_string(repository().join("docs/install.md")).unwrap();
    let stated = format!("**{figure:.1} {rating}**");
    assert!(
        install.contains(&stated),
        "docs/install.md must state the unit's exposure as {stated}"
    );
}

#[test]
fn the_packaged_configuration_differs_from_schedules_toml_only_in_paths() {
    let packaged = std::fs::read_to_string(repository().join("packaging/schedules.toml")).unwrap();
    let repository_copy = std::fs::read_to_string(repository().join("schedules.toml")).unwrap();
    // The one line that differs: the SQLite database lives in the state
    // directory, whatever the working directory of a command.
    let with_repository_paths = packaged.replace(
        "url = \"sqlite:///var/lib/regkeeper/regkeeper.db\"   # or",
        "url = \"sqlite://regkeeper.db\"          # or",
    );
    assert_ne!(with_repository_paths, packaged, "the database line moved");
    assert_eq!(
        with_repository_paths, repository_copy,
        "packaging/schedules.toml must be schedules.toml with packaged paths"
    );
}

/// Whether cargo (or nextest) sets the environment variable `name` for a
/// test binary, as opposed to the user's own cargo settings.
fn is_set_by_cargo_for_tests(name: &str) -> bool {
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "NEXTEST_BIN_EXE_"];
    const NAMES: [&str; 7] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
    ];
    NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// Purges the package when dropped, so that a failed test leaves nothing
/// installed.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let output = run("dpkg", &["--purge", "regkeeper"]);
        if !output.status.success() {
            eprintln!(
                "cleaning up: dpkg --purge regkeeper failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// The owner (user, group) and permission bits of `path`.
fn owner_and_mode(path: &str) -> (u32, u32, u32) {
    let metadata =
        std::fs::metadata(path).unwrap_or_else(|error| panic!("{path} is missing: {error}"));
    (metadata.uid(), metadata.gid(), metadata.mode() & 0o7777)
}

/// The fields of the `regkeeper` user's passwd line, if it exists.
fn regkeeper_user() -> Option<Vec<String>> {
    let output = run("getent", &["passwd", "regkeeper"]);
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .split(':')
            .map(str::to_owned)
            .collect()
    })
}

fn regkeeper_group_exists() -> bool {
    run("getent", &["group", "regkeeper"]).status.success()
}

/// The package's status in dpkg's database, unless it is not installed.
fn package_status() -> Option<String> {
    let output = run("dpkg-query", &["-W", "-f=${Status}", "regkeeper"]);
    let status = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success() && !status.ends_with("not-installed")).then_some(status)
}

/// Everything the package installs that `dpkg -r` removes.
const PACKAGE_FILES: [&str; 11] = [
    "/usr/bin/regkeeper",
    "/usr/lib/systemd/system/regkeeper.service",
    "/usr/lib/sysusers.d/regkeeper.conf",
    "/usr/share/man/man1/regkeeper.1.gz",
    "/usr/share/man/man1/regkeeper-check.1.gz",
    "/usr/share/man/man1/regkeeper-status.1.gz",
    "/usr/share/bash-completion/completions/regkeeper",
    "/usr/share/zsh/vendor-completions/_regkeeper",
    "/usr/share/fish/vendor_completions.d/regkeeper.fish",
    "/usr/share/doc/regkeeper/README.md",
    "/usr/share/doc/regkeeper/install.md",
];

/// What the systemd helpers may leave behind for the unit.
const UNIT_STATE: [&str; 3] = [
    "/etc/systemd/system/regkeeper.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/regkeeper.service.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-masked/regkeeper.service",
];

#[test]
fn the_package_installs_runs_as_its_user_and_purges_clean() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!(
            "skipped: installing the package with dpkg needs root, and this test runs as uid {euid}"
        );
        return;
    }
    assert_eq!(
        package_status(),
        None,
        "a regkeeper package is already on this machine; this test installs and purges its own \
         (if a killed test run left it: dpkg --purge regkeeper)"
    );
    assert_eq!(
        regkeeper_user(),
        None,
        "a regkeeper user already exists on this machine; the package's purge would remove it"
    );

    let mut package_sh = Command::new("bash");
    package_sh
        .args(["scripts/package.sh", "--profile", PROFILE, "--fast"])
        .current_dir(repository());
    // Without the variables cargo sets for this test: a build script that
    // watches one (ring's watches CARGO_MANIFEST_DIR) would otherwise be
    // rebuilt here, and again by the next cargo command outside a test.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if is_set_by_cargo_for_tests(&name) {
            package_sh.env_remove(&*name);
        }
    }
    let build = package_sh.output().expect("running scripts/package.sh");
    let build_log = String::from_utf8_lossy(&build.stderr);
    assert!(
        build.status.success(),
        "scripts/package.sh failed:\n{build_log}"
    );
    eprintln!("{build_log}");
    let stdout = String::from_utf8_lossy(&build.stdout);
    let deb = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "scripts/package.sh printed no package path: {stdout}\n{build_log}"
    );

    let _purge = PurgeOnDrop;
    run_ok("dpkg", &["--install", &deb]);
    assert_eq!(package_status().as_deref(), Some("install ok installed"));

    // The user: a system user whose home is the state directory.
    let user = regkeeper_user().expect("the package created the regkeeper user");
    let uid: u32 = user[2].parse().unwrap();
    let gid: u32 = user[3].parse().unwrap();
    assert!(uid < 1000, "not a system user: {user:?}");
    assert_eq!(user[5], "/var/lib/regkeeper", "{user:?}");
    assert_eq!(user[6], "/usr/sbin/nologin", "{user:?}");
    assert!(regkeeper_group_exists());

    // The files, their owners and modes.
    assert_eq!(owner_and_mode("/usr/bin/regkeeper"), (0, 0, 0o755));
    for path in &PACKAGE_FILES[1..] {
        assert_eq!(owner_and_mode(path), (0, 0, 0o644), "{path}");
    }
    assert_eq!(
        owner_and_mode("/etc/regkeeper/schedules.toml"),
        (0, 0, 0o644)
    );
    assert_eq!(owner_and_mode("/var/lib/regkeeper"), (uid, gid, 0o750));
    assert_eq!(
        std::fs::read_to_string("/etc/regkeeper/schedules.toml").unwrap(),
        std::fs::read_to_string(repository().join("packaging/schedules.toml")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string("/usr/lib/systemd/system/regkeeper.service").unwrap(),
        std::fs::read_to_string(repository().join("packaging/regkeeper.service")).unwrap()
    );
    let conffiles = run_ok("dpkg-query", &["-W", "-f=${Conffiles}", "regkeeper"]);
    assert!(
        conffiles.contains("/etc/regkeeper/schedules.toml"),
        "not a conffile: {conffiles}"
    );
    let page = run_ok("gzip", &["-dc", "/usr/share/man/man1/regkeeper.1.gz"]);
    assert!(page.contains("\n.TH regkeeper 1 "), "{page}");
    assert!(
        run_ok("gzip", &["-dc", "/usr/share/man/man1/regkeeper-check.1.gz"])
            .contains("\n.TH regkeeper-check 1 ")
    );
    let bash = std::fs::read_to_string(PACKAGE_FILES[6]).unwrap();
    assert!(bash.contains("complete -F _regkeeper"), "{bash}");
    let zsh = std::fs::read_to_string(PACKAGE_FILES[7]).unwrap();
    assert!(zsh.starts_with("#compdef regkeeper"), "{zsh}");
    let fish = std::fs::read_to_string(PACKAGE_FILES[8]).unwrap();
    assert!(fish.contains("complete -c regkeeper"), "{fish}");

    // The installed unit keeps its rating, and systemd finds nothing to
    // say about it now that its binary and its man page are installed.
    let (figure, rating) = exposure(Path::new("/usr/lib/systemd/system/regkeeper.service"));
    assert!(figure <= MAX_EXPOSURE, "installed unit: {figure} {rating}");
    let verify = run(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/regkeeper.service"],
    );
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {verify:?}"
    );

    // The installed binary, as the daemon's user, on the installed
    // configuration; then one run, which creates the database in the state
    // directory.
    let check = run_ok(
        "runuser",
        &[
            "-u",
            "regkeeper",
            "--",
            "/usr/bin/regkeeper",
            "check",
            "--config",
            "/etc/regkeeper/schedules.toml",
        ],
    );
    assert!(
        check.starts_with("/etc/regkeeper/schedules.toml: ok, 3 job(s)\n"),
        "{check}"
    );
    let once = run_ok(
        "runuser",
        &[
            "-u",
            "regkeeper",
            "--",
            "/usr/bin/regkeeper",
            "--config",
            "/etc/regkeeper/schedules.toml",
            "--once",
            "registry-events",
        ],
    );
    assert!(once.starts_with("registry-events: ok in "), "{once}");
    let (database_uid, _, _) = owner_and_mode("/var/lib/regkeeper/regkeeper.db");
    assert_eq!(database_uid, uid);

    // Installing again, as an upgrade does, keeps the state, the user and
    // an edited configuration.
    let edited = format!(
        "{}# edited by the operator\n",
        std::fs::read_to_string("/etc/regkeeper/schedules.toml").unwrap()
    );
    std::fs::write("/etc/regkeeper/schedules.toml", &edited).unwrap();
    run_ok("dpkg", &["--install", &deb]);
    assert_eq!(package_status().as_deref(), Some("install ok installed"));
    assert_eq!(
        std::fs::read_to_string("/etc/regkeeper/schedules.toml").unwrap(),
        edited
    );
    assert_eq!(
        regkeeper_user().expect("the user stays")[2],
        uid.to_string()
    );
    assert_eq!(owner_and_mode("/var/lib/regkeeper"), (uid, gid, 0o750));
    assert_eq!(owner_and_mode("/var/lib/regkeeper/regkeeper.db").0, uid);

    // Removal keeps the configuration, the state and the user.
    run_ok("dpkg", &["--remove", "regkeeper"]);
    assert_eq!(
        package_status().as_deref(),
        Some("deinstall ok config-files")
    );
    for path in PACKAGE_FILES {
        assert!(!Path::new(path).exists(), "{path} is left after dpkg -r");
    }
    assert!(Path::new("/etc/regkeeper/schedules.toml").is_file());
    assert!(Path::new("/var/lib/regkeeper/regkeeper.db").is_file());
    assert!(regkeeper_user().is_some());

    // Purge leaves nothing.
    run_ok("dpkg", &["--purge", "regkeeper"]);
    assert_eq!(package_status(), None);
    for path in ["/etc/regkeeper", "/var/lib/regkeeper"]
        .iter()
        .chain(&UNIT_STATE)
    {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} is left after dpkg -P"
        );
    }
    assert_eq!(regkeeper_user(), None, "the user is left after dpkg -P");
    assert!(!regkeeper_group_exists(), "the group is left after dpkg -P");
}
