//! `[registry]`: the registry's url (credentials never in it), the
//! username and its password (inline, `password_file` or
//! REGKEEPER_REGISTRY_PASSWORD), the token realms the credentials may go
//! to, the scanners' account, timeouts and the worker pool.

use std::time::Duration;

use toml::Spanned;

use super::{Checker, Positive, Scope};
use crate::config::raw::RawRegistry;
use crate::config::{
    RegistryConfig, TokenRealm, ENV_REGISTRY_PASSWORD, ENV_REGISTRY_SCANNER_PASSWORD,
};

impl Checker<'_> {
    /// `[registry]`: the url, the credentials, timeouts and the worker pool.
    pub(super) fn registry(
        &self,
        raw: Option<&Spanned<RawRegistry>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<RegistryConfig> {
        let section = Scope::Section("registry");
        let Some(raw) = raw else {
            return Err(self.error(
                &(0..0),
                Scope::File,
                "missing [registry] section (at least url = \"http://HOST:PORT\")",
            ));
        };
        let registry = raw.get_ref();
        let Some(url_value) = &registry.url else {
            return Err(self.error(
                &raw.span(),
                section,
                "url is required, e.g. url = \"http://127.0.0.1:5000\"",
            ));
        };
        let url = self.http_url(url_value, section, "url")?;
        let segments: Vec<&str> = url
            .path()
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        if segments.last() == Some(&"v2") {
            let mut base = url.clone();
            let prefix = segments[..segments.len() - 1].join("/");
            base.set_path(&prefix);
            let base = base.as_str().trim_end_matches('/').to_string();
            return Err(self.error(
                &url_value.span(),
                section,
                format!(
                    "url: {:?} ends in /v2: the url is the registry's base, regkeeper adds /v2/ itself (write {base:?})",
                    url_value.get_ref()
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.error(
                &url_value.span(),
                section,
                "url: put credentials in username and password, not in the url",
            ));
        }
        let username = registry
            .username
            .as_ref()
            .map(|name| name.get_ref().clone());
        if let (Some(password), Some(_)) = (&registry.password, &registry.password_file) {
            return Err(self.error(
                &password.span(),
                section,
                "password and password_file are both set (use one)",
            ));
        }
        let mut password = self.inline_secret(registry.password.as_ref(), section, "password")?;
        if let Some(from_env) = self.env_secret(env, ENV_REGISTRY_PASSWORD)? {
            password = Some(from_env);
        }
        if username.is_none() {
            if let Some(password_value) = &registry.password {
                return Err(self.error(
                    &password_value.span(),
                    section,
                    "password is set but username is not",
                ));
            }
            if let Some(file) = &registry.password_file {
                return Err(self.error(
                    &file.span(),
                    section,
                    "password_file is set but username is not",
                ));
            }
            if password.is_some() {
                return Err(self.error(
                    &raw.span(),
                    section,
                    format!("{ENV_REGISTRY_PASSWORD} is set but username is not"),
                ));
            }
        }
        let timeout = self.duration_or(
            registry.timeout.as_ref(),
            section,
            "timeout",
            Duration::from_secs(30),
            Positive::Yes,
        )?;
        let concurrency = self.integer_or(
            registry.concurrency.as_ref(),
            section,
            "concurrency",
            8,
            1..=64,
        )?;
        let catalog_page_size = self.integer_or(
            registry.catalog_page_size.as_ref(),
            section,
            "catalog_page_size",
            1000,
            1..=1000,
        )?;
        let token_realms = match &registry.token_realms {
            Some(list) => list
                .get_ref()
                .iter()
                .map(|entry| self.token_realm(entry, section))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let scanner_username = registry
            .scanner_username
            .as_ref()
            .map(|name| name.get_ref().clone());
        if let (Some(password), Some(_)) =
            (&registry.scanner_password, &registry.scanner_password_file)
        {
            return Err(self.error(
                &password.span(),
                section,
                "scanner_password and scanner_password_file are both set (use one)",
            ));
        }
        let mut scanner_password = self.inline_secret(
            registry.scanner_password.as_ref(),
            section,
            "scanner_password",
        )?;
        if let Some(from_env) = self.env_secret(env, ENV_REGISTRY_SCANNER_PASSWORD)? {
            scanner_password = Some(from_env);
        }
        if scanner_username.is_none() {
            let stray = registry
                .scanner_password
                .as_ref()
                .map(|value| (value.span(), "scanner_password"))
                .or_else(|| {
                    registry
                        .scanner_password_file
                        .as_ref()
                        .map(|value| (value.span(), "scanner_password_file"))
                });
            if let Some((span, key)) = stray {
                return Err(self.error(
                    &span,
                    section,
                    format!("{key} is set but scanner_username is not"),
                ));
            }
            if scanner_password.is_some() {
                return Err(self.error(
                    &raw.span(),
                    section,
                    format!("{ENV_REGISTRY_SCANNER_PASSWORD} is set but scanner_username is not"),
                ));
            }
        }
        Ok(RegistryConfig {
            url,
            username,
            password,
            ca_file: registry
                .ca_file
                .as_ref()
                .map(|file| self.file_path(file.get_ref())),
            insecure_skip_tls_verify: registry
                .insecure_skip_tls_verify
                .as_ref()
                .is_some_and(|skip| *skip.get_ref()),
            timeout,
            concurrency: concurrency as usize,
            catalog_page_size: catalog_page_size as u32,
            token_realms,
            scanner_username,
            scanner_password,
            share_password_with_scanners: registry
                .share_password_with_scanners
                .as_ref()
                .is_some_and(|share| *share.get_ref()),
        })
    }

    /// One `token_realms` entry: a host (`auth.example.com`) or an origin
    /// (`https://auth.example.com:5001`), nothing more.
    fn token_realm(
        &self,
        entry: &Spanned<String>,
        section: Scope<'_>,
    ) -> anyhow::Result<TokenRealm> {
        let text = entry.get_ref().trim();
        if text.contains("://") {
            let url = self.http_url(entry, section, "token_realms")?;
            if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
                return Err(self.error(
                    &entry.span(),
                    section,
                    format!(
                        "token_realms: {text:?} is not a host or an origin \
                         (write \"auth.example.com\" or \"https://auth.example.com:5001\")"
                    ),
                ));
            }
            return Ok(TokenRealm::Origin(url.origin().ascii_serialization()));
        }
        let host = url::Host::parse(text).ok().filter(|_| {
            !text.is_empty() && !text.contains(['/', ':', '@', '?', '#']) || text.starts_with('[')
        });
        match host {
            Some(host) => Ok(TokenRealm::Host(host.to_string())),
            None => Err(self.error(
                &entry.span(),
                section,
                format!(
                    "token_realms: {text:?} is not a host or an origin \
                     (write \"auth.example.com\" or \"https://auth.example.com:5001\")"
                ),
            )),
        }
    }
}
