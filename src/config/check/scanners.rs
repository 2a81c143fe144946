//! `[security.NAME]`: the vulnerability scanners, one section per known API,
//! with a server (or, for `fixture`, a file), timeouts and credentials. The
//! token files are only recorded here; loading reads them.

use std::time::Duration;

use super::{or_list, Checker, Positive, Scope};
use crate::config::raw::{Ordered, RawScanner};
use crate::config::{ScannerConfig, ScannerKind};

impl Checker<'_> {
    /// `[security.NAME]`: one scanner per known API, in file order.
    pub(super) fn scanners(&self, raw: &Ordered<RawScanner>) -> anyhow::Result<Vec<ScannerConfig>> {
        let mut scanners = Vec::new();
        for (name, scanner) in &raw.0 {
            let Some(kind) = ScannerKind::ALL
                .into_iter()
                .find(|kind| kind.name() == name.get_ref())
            else {
                let known: Vec<&str> = ScannerKind::ALL.iter().map(|kind| kind.name()).collect();
                return Err(self.error(
                    &name.span(),
                    Scope::File,
                    format!(
                        "unknown scanner [security.{}] (expected {})",
                        name.get_ref(),
                        or_list(&known)
                    ),
                ));
            };
            let section_name = format!("security.{}", kind.name());
            let section = Scope::Section(&section_name);
            let values = scanner.get_ref();
            let server = match (&values.server, kind) {
                (Some(server), ScannerKind::Fixture) => {
                    return Err(self.error(
                        &server.span(),
                        section,
                        "server does not apply to the fixture scanner (it reads `file`)",
                    ));
                }
                (Some(server), _) => Some(self.http_url(server, section, "server")?),
                (None, ScannerKind::Fixture) => None,
                (None, _) => {
                    return Err(self.error(
                        &scanner.span(),
                        section,
                        "server is required, e.g. server = \"http://127.0.0.1:6060\"",
                    ));
                }
            };
            let file = match (&values.file, kind) {
                (Some(file), ScannerKind::Fixture) => Some(self.file_path(file.get_ref())),
                (None, ScannerKind::Fixture) => {
                    return Err(self.error(
                        &scanner.span(),
                        section,
                        "file is required (the JSON file with the reports)",
                    ));
                }
                (Some(file), _) => {
                    return Err(self.error(
                        &file.span(),
                        section,
                        "file only applies to the fixture scanner",
                    ));
                }
                (None, _) => None,
            };
            let default_timeout = if kind == ScannerKind::Clair { 900 } else { 300 };
            let timeout = self.duration_or(
                values.timeout.as_ref(),
                section,
                "timeout",
                Duration::from_secs(default_timeout),
                Positive::Yes,
            )?;
            if let (Some(password), None) = (&values.password, &values.username) {
                return Err(self.error(
                    &password.span(),
                    section,
                    "password is set but username is not",
                ));
            }
            if let (Some(token_file), Some(_)) = (&values.token_file, &values.username) {
                return Err(self.error(
                    &token_file.span(),
                    section,
                    "token_file and username are both set (use one)",
                ));
            }
            scanners.push(ScannerConfig {
                kind,
                enabled: values
                    .enabled
                    .as_ref()
                    .is_none_or(|enabled| *enabled.get_ref()),
                server,
                timeout,
                username: values.username.as_ref().map(|name| name.get_ref().clone()),
                password: self.inline_secret(values.password.as_ref(), section, "password")?,
                token: None,
                token_file: values
                    .token_file
                    .as_ref()
                    .map(|file| self.file_path(file.get_ref())),
                file,
            });
        }
        Ok(scanners)
    }
}
