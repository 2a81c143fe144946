//! `load`: secret files, the environment, relative paths, the files keys
//! name, and `load_for_reading`.

use super::*;

#[test]
fn load_reads_secret_files_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let registry_file = secret("registry", "regpass\n");
    let token_file = secret("token", "Bearer tok\r\n");
    let scanner_file = secret("scanner", "scantoken");
    let config_path = dir.path().join("schedules.toml");
    std::fs::write(
        &config_path,
        format!(
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"{registry_file}\"\n\
             [notifications]\ntoken_file = \"{token_file}\"\n\
             [security.adapter]\nserver = \"http://s\"\ntoken_file = \"{scanner_file}\"\n"
        ),
    )
    .unwrap();
    let config = load(&config_path).unwrap();
    assert_eq!(config.registry.password.as_deref(), Some("regpass"));
    assert_eq!(config.notifications.token.as_deref(), Some("Bearer tok"));
    assert_eq!(config.security[0].token.as_deref(), Some("scantoken"));
    assert_eq!(config.path, config_path);
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let error = format!("{:#}", load(&missing).unwrap_err());
    assert!(
        error.starts_with(&format!("reading {}: ", missing.display())),
        "{error}"
    );

    let config_path = dir.path().join("schedules.toml");
    let secret_path = dir.path().join("absent-secret");
    std::fs::write(
        &config_path,
        format!(
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"{}\"\n",
            secret_path.display()
        ),
    )
    .unwrap();
    let error = format!("{:#}", load(&config_path).unwrap_err());
    let expected = format!(
        "{}:4:17: [registry] password_file: reading {}: ",
        config_path.display(),
        secret_path.display()
    );
    assert!(error.starts_with(&expected), "{error}");
}

#[test]
fn an_empty_secret_file_is_an_error_naming_the_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    let config_path = dir.path().join("schedules.toml");
    let cases = [
        ("[registry]\nurl = \"http://r\"\n[notifications]\ntoken_file = \"secret\"\n", "4:14: [notifications] token_file"),
        ("[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"secret\"\n", "4:17: [registry] password_file"),
        ("[database]\nurl = \"postgres://u@h/db\"\npassword_file = \"secret\"\n[registry]\nurl = \"http://r\"\n", "3:17: [database] password_file"),
        ("[registry]\nurl = \"http://r\"\n[security.adapter]\nserver = \"http://s\"\ntoken_file = \"secret\"\n", "5:14: [security.adapter] token_file"),
    ];
    for (text, origin) in cases {
        std::fs::write(&config_path, text).unwrap();
        for empty in ["", "\n", "\r\n", " \n"] {
            std::fs::write(&secret_path, empty).unwrap();
            let error = load(&config_path).unwrap_err();
            assert!(
                error.chain().any(|cause| cause.is::<ConfigError>()),
                "{error:#}"
            );
            assert_eq!(
                format!("{error:#}"),
                format!(
                    "{}:{origin}: {} is empty (the file holds the secret alone)",
                    config_path.display(),
                    secret_path.display()
                )
            );
        }
    }
}

#[test]
fn relative_paths_resolve_against_the_configuration_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("token"), "Token t\n").unwrap();
    std::fs::write(etc.join("ca.pem"), "").unwrap();
    std::fs::write(etc.join("fixture.json"), "{}").unwrap();
    let config_path = etc.join("schedules.toml");
    std::fs::write(
        &config_path,
        "[database]\nurl = \"sqlite://regkeeper.db\"\n[registry]\nurl = \"https://r\"\nca_file = \"ca.pem\"\n\
         [notifications]\ntoken_file = \"token\"\n[security.fixture]\nfile = \"fixture.json\"\n",
    )
    .unwrap();
    let config = load(&config_path).unwrap();
    assert!(
        matches!(&config.database, Database::Sqlite { path } if *path == etc.join("regkeeper.db")),
        "{:?}",
        config.database
    );
    assert_eq!(config.registry.ca_file, Some(etc.join("ca.pem")));
    assert_eq!(config.notifications.token.as_deref(), Some("Token t"));
    assert_eq!(config.security[0].file, Some(etc.join("fixture.json")));
    // Without a [database] section the default file sits beside the configuration too.
    let default = parse_ok_at("[registry]\nurl = \"http://r\"\n", &config_path);
    assert!(
        matches!(&default.database, Database::Sqlite { path } if *path == etc.join("regkeeper.db"))
    );
}

#[test]
fn files_named_by_keys_are_checked_by_load_naming_the_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("schedules.toml");
    let missing = dir.path().join("missing");
    let cases = [
        (
            format!("[database]\nurl = \"sqlite://{}/regkeeper.db\"\n[registry]\nurl = \"http://r\"\n", missing.display()),
            format!(
                "{}:2:7: [database] url: the directory {} of the database file {}/regkeeper.db does not exist",
                config_path.display(),
                missing.display(),
                missing.display()
            ),
        ),
        (
            "[registry]\nurl = \"https://r\"\nca_file = \"missing\"\n".to_string(),
            format!(
                "{}:3:11: [registry] ca_file: reading {}: No such file or directory (os error 2)",
                config_path.display(),
                missing.display()
            ),
        ),
        (
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem\"\n[registry]\nurl = \"http://r\"\n".to_string(),
            format!(
                "{}:2:7: [database] url sslrootcert: reading /nonexistent/ca.pem: No such file or directory (os error 2)",
                config_path.display()
            ),
        ),
        (
            "[registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"missing\"\n".to_string(),
            format!(
                "{}:4:17: [registry] password_file: reading {}: No such file or directory (os error 2)",
                config_path.display(),
                missing.display()
            ),
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config_path, &text).unwrap();
        assert_eq!(
            format!("{:#}", load(&config_path).unwrap_err()),
            expected,
            "{text}"
        );
    }
}

#[test]
fn load_for_reading_needs_no_registry_or_scanner_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("schedules.toml");
    std::fs::write(
        &config_path,
        "[registry]\nurl = \"https://r\"\nusername = \"u\"\npassword_file = \"absent\"\nca_file = \"absent.pem\"\n\
         [notifications]\ntoken_file = \"absent-token\"\n[security.adapter]\nserver = \"http://s\"\ntoken_file = \"absent\"\n",
    )
    .unwrap();
    assert!(load(&config_path).is_err());
    let config = load_for_reading(&config_path).unwrap();
    assert_eq!(config.registry.password, None);
}
