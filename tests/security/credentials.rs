//! What the scanners are handed to pull layers, recorded by the stand-in
//! scanners: a pull token for one repository with token auth; with Basic
//! auth the scanners' own account, the main password only when the
//! operator opted in, and otherwise nothing (the scan fails saying why).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use regkeeper::jobs::Handler;
use regkeeper::scanner::{self, Scanner, ScannerKind as Kind};
use regkeeper_test_support as support;
use support::registry::{Auth, Options, TestRegistry};
use support::scanners::{Api, ScannerServer};
use support::Backend;

use crate::world::{at, count, options, world, world_from};
use crate::{settings, T0};

const MAIN: &str = "keeper";
const MAIN_PASSWORD: &str = "main-password-1";
const READER: &str = "reader";
const READER_PASSWORD: &str = "reader-password-2";

fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// The three scanner APIs, each with a stand-in that downloads the layers
/// with the credential it got (as the real scanners do).
fn stand_ins() -> Vec<(ScannerServer, Arc<dyn Scanner>)> {
    [
        (Api::Clair, Kind::Clair, "clair"),
        (Api::Clair4, Kind::Clair4, "clair4"),
        (Api::Adapter, Kind::Adapter, "adapter"),
    ]
    .into_iter()
    .map(|(api, kind, name)| {
        let server = ScannerServer::start(api);
        server.set(|s| s.fetch_layers = true);
        let client = scanner::build(
            kind,
            &settings(name, &server.url(), Duration::from_secs(10)),
        )
        .unwrap();
        (server, client)
    })
    .collect()
}

/// Everything a stand-in received, headers and bodies, as one text.
fn received(server: &ScannerServer) -> String {
    server
        .requests()
        .iter()
        .map(|request| {
            let headers: Vec<String> = request
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            format!("{}\n{}", headers.join("\n"), request.text())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An htpasswd registry with the main account and a read-only one.
fn basic_registry() -> TestRegistry {
    let mut registry = TestRegistry::start(Options {
        auth: Auth::htpasswd(MAIN, MAIN_PASSWORD),
        ..Options::default()
    });
    registry.add_htpasswd_user(READER, READER_PASSWORD);
    registry
}

#[test]
fn scanners_of_a_basic_registry_get_no_password_unless_configured() {
    let registry = basic_registry();
    let mut config = registry.client_config();
    config.share_password_with_scanners = false;
    let world = world_from(Backend::Sqlite, registry, &config);
    world.push("ns/app", "1");
    let scanners = stand_ins();
    let handler = world.handler(
        scanners.iter().map(|(_, client)| client.clone()).collect(),
        options(),
        at(T0),
    );
    let outcome = handler.run(&world.context("d")).unwrap();
    assert_eq!(count(&outcome, "scanner_failures"), 3, "{outcome:?}");
    let encoded = basic(MAIN, MAIN_PASSWORD);
    for (server, _) in &scanners {
        let text = received(server);
        assert!(
            !text.contains(&encoded) && !text.contains(MAIN_PASSWORD),
            "{text}"
        );
    }
    let state = world.state("ns/app", "1");
    assert_eq!(state.reports.len(), 3, "{:?}", state.reports);
    for report in &state.reports {
        let error = report.last_error.as_deref().unwrap_or("");
        assert!(
            error.contains("no credential is configured for scanners")
                && error.contains("scanner_username"),
            "{}: {error}",
            report.scanner
        );
    }
}

#[test]
fn scanners_of_a_basic_registry_get_the_scanner_account_not_the_main_one() {
    let registry = basic_registry();
    let mut config = registry.client_config();
    config.share_password_with_scanners = false;
    config.scanner_username = Some(READER.into());
    config.scanner_password = Some(READER_PASSWORD.into());
    let world = world_from(Backend::Sqlite, registry, &config);
    world.push("ns/app", "1");
    let scanners = stand_ins();
    let handler = world.handler(
        scanners.iter().map(|(_, client)| client.clone()).collect(),
        options(),
        at(T0),
    );
    let outcome = handler.run(&world.context("d")).unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{outcome:?}");
    assert_eq!(count(&outcome, "scanner_failures"), 0, "{outcome:?}");
    for (server, _) in &scanners {
        let text = received(server);
        assert!(text.contains(&basic(READER, READER_PASSWORD)), "{text}");
        assert!(
            !text.contains(&basic(MAIN, MAIN_PASSWORD)) && !text.contains(MAIN_PASSWORD),
            "{text}"
        );
    }
}

#[test]
fn scanners_of_a_token_registry_get_a_pull_token_and_never_the_password() {
    let world = world(Backend::Sqlite, Auth::token(MAIN, MAIN_PASSWORD));
    world.push("ns/app", "1");
    let scanners = stand_ins();
    let handler = world.handler(
        scanners.iter().map(|(_, client)| client.clone()).collect(),
        options(),
        at(T0),
    );
    let outcome = handler.run(&world.context("d")).unwrap();
    assert_eq!(count(&outcome, "scanned"), 1, "{outcome:?}");
    for (server, _) in &scanners {
        let text = received(server);
        assert!(text.contains("Bearer "), "{text}");
        assert!(
            !text.contains(&basic(MAIN, MAIN_PASSWORD)) && !text.contains(MAIN_PASSWORD),
            "{text}"
        );
    }
}
