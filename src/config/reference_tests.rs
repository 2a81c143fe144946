//! The configuration reference, `docs/configuration.md`, held to the parser:
//! every key the parser accepts has a row in the reference's table of its
//! section, every row names a key the parser accepts, and every environment
//! override is described. The accepted keys come from the parser itself: a
//! document with an unknown key makes serde (`deny_unknown_fields`) list every
//! field of that table. Nothing here reads files at run time.

use std::path::Path;

/// The reference, as the binary is built with it.
const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// A key no table has.
const UNKNOWN_KEY: &str = "zz_unknown";

/// Each table of the file: the header that opens it in a document and the
/// heading of its section in the reference (`""` opens the top level).
const TABLES: [(&str, &str); 7] = [
    ("[database]", "`[database]`"),
    ("[registry]", "`[registry]`"),
    ("[notifications]", "`[notifications]`"),
    ("[daemon]", "`[daemon]`"),
    ("[metrics]", "`[metrics]`"),
    ("[jobs.reference]", "`[jobs.NAME]`"),
    ("[security.reference]", "`[security.NAME]`"),
];

/// Tables within a table of [`TABLES`], with the heading of their section.
const NESTED_TABLES: [(&str, &str); 1] = [("[[jobs.reference.policy]]", "`[[jobs.NAME.policy]]`")];

/// The keys the parser accepts in the table `header` opens (`""`: the top
/// level), read from the error about an unknown key.
fn accepted_keys(header: &str) -> Vec<String> {
    let text = format!("{header}\n{UNKNOWN_KEY} = 1\n");
    let message = match crate::config::parse(&text, Path::new("schedules.toml")) {
        Ok(config) => panic!("{header}: {UNKNOWN_KEY} was accepted: {config:?}"),
        Err(error) => format!("{error:#}"),
    };
    let Some((_, expected)) =
        message.split_once(&format!("unknown field `{UNKNOWN_KEY}`, expected"))
    else {
        panic!("{header}: the error does not list the known keys: {message}");
    };
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "{header}: no keys in {message:?}");
    keys
}

/// The text of the reference's section under the heading `## HEADING...`,
/// up to the next `## ` heading.
fn section(heading: &str) -> &'static str {
    let marker = format!("\n## {heading}");
    let Some(start) = REFERENCE.find(&marker) else {
        panic!("docs/configuration.md has no section \"## {heading}\"");
    };
    let body = &REFERENCE[start + marker.len()..];
    match body.find("\n## ") {
        Some(end) => &body[..end],
        None => body,
    }
}

/// The keys of the key tables (tables whose header row starts with
/// `| key |`) in `text`: the first cell of each row, without its backticks.
fn documented_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut in_key_table = false;
    for line in text.lines() {
        if line.starts_with("| key |") {
            in_key_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let Some(cell) = line.split('|').nth(1).map(str::trim) else {
            continue;
        };
        if in_key_table && !cell.starts_with("---") {
            keys.push(cell.trim_matches('`').to_string());
        }
    }
    keys
}

#[test]
fn every_key_the_parser_accepts_has_a_row_in_the_reference() {
    let mut missing = Vec::new();
    for (header, heading) in TABLES.into_iter().chain(NESTED_TABLES) {
        let documented = documented_keys(section(heading));
        for key in accepted_keys(header) {
            if !documented.contains(&key) {
                missing.push(format!("{heading} `{key}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the configuration accepts but docs/configuration.md does not describe: {}",
        missing.join(", ")
    );
}

#[test]
fn every_row_of_the_reference_names_a_key_the_parser_accepts() {
    let mut unknown = Vec::new();
    for (header, heading) in TABLES.into_iter().chain(NESTED_TABLES) {
        let accepted = accepted_keys(header);
        for key in documented_keys(section(heading)) {
            if !accepted.contains(&key) {
                unknown.push(format!("{heading} `{key}`"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md describes but the configuration refuses: {}",
        unknown.join(", ")
    );
}

#[test]
fn every_top_level_table_has_a_section_in_the_reference() {
    let top_level = accepted_keys("");
    assert_eq!(
        top_level.len(),
        TABLES.len(),
        "top-level tables {top_level:?}: one entry in TABLES each"
    );
    for table in top_level {
        let covered = TABLES.iter().any(|(header, _)| {
            header.strip_prefix('[').is_some_and(|rest| {
                rest.strip_prefix(table.as_str())
                    .is_some_and(|rest| rest.starts_with(']') || rest.starts_with('.'))
            })
        });
        assert!(covered, "top-level table {table} has no entry in TABLES");
    }
    for (_, heading) in TABLES {
        section(heading);
    }
}

#[test]
fn every_environment_override_is_in_the_reference() {
    let environment = section("Environment");
    for variable in [
        crate::config::ENV_DATABASE_URL,
        crate::config::ENV_DATABASE_PASSWORD,
        crate::config::ENV_REGISTRY_PASSWORD,
        crate::config::ENV_REGISTRY_SCANNER_PASSWORD,
        crate::config::ENV_NOTIFY_TOKEN,
    ] {
        assert!(
            environment.contains(&format!("| `{variable}` |")),
            "docs/configuration.md, Environment, does not describe {variable}"
        );
    }
}
