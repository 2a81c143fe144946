//! `[notifications]`: the intake's listen address (a non-loopback one only
//! with a token or an explicit opt-out), its token and its body limit.

use std::net::SocketAddr;

use toml::Spanned;

use super::{Checker, Scope};
use crate::config::raw::{ByteSize, RawNotifications};
use crate::config::{NotificationsConfig, ENV_NOTIFY_TOKEN};

impl Checker<'_> {
    /// `[notifications]`: the intake's address, token and body limit.
    pub(super) fn notifications(
        &self,
        raw: Option<&Spanned<RawNotifications>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<NotificationsConfig> {
        let section = Scope::Section("notifications");
        let notifications = raw.map(Spanned::get_ref);
        let listen_value = notifications.and_then(|notifications| notifications.listen.as_ref());
        let listen = match listen_value {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 5055))),
            Some(value) if value.get_ref().is_empty() => None,
            Some(value) => Some(value.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.error(
                    &value.span(),
                    section,
                    format!("listen: invalid address {:?} (expected IP:PORT like \"127.0.0.1:5055\", or \"\" to disable the intake)", value.get_ref()),
                )
            })?),
        };
        let token = self.env_secret(env, ENV_NOTIFY_TOKEN)?;
        let token_file = notifications.and_then(|notifications| notifications.token_file.as_ref());
        let allow_unauthenticated = notifications
            .and_then(|notifications| notifications.allow_unauthenticated.as_ref())
            .is_some_and(|allow| *allow.get_ref());
        if let (Some(address), Some(value)) = (listen, listen_value) {
            if !address.ip().is_loopback()
                && token.is_none()
                && token_file.is_none()
                && !allow_unauthenticated
            {
                return Err(self.error(
                    &value.span(),
                    section,
                    format!(
                        "listen: {address} is reachable from other hosts but no token is set (set token_file or {ENV_NOTIFY_TOKEN}, or allow_unauthenticated = true)"
                    ),
                ));
            }
        }
        let body_limit = match notifications
            .and_then(|notifications| notifications.body_limit.as_ref())
        {
            None => 1024 * 1024,
            Some(value) => {
                let bytes = match value.get_ref() {
                    ByteSize::Bytes(bytes) => u64::try_from(*bytes).ok().filter(|bytes| *bytes > 0),
                    ByteSize::Text(text) => parse_byte_size(text).filter(|bytes| *bytes > 0),
                };
                let written = match value.get_ref() {
                    ByteSize::Bytes(bytes) => bytes.to_string(),
                    ByteSize::Text(text) => format!("{text:?}"),
                };
                let bytes = bytes.and_then(|bytes| usize::try_from(bytes).ok()).ok_or_else(|| {
                    self.error(
                        &value.span(),
                        section,
                        format!("body_limit: invalid size {written} (expected a positive number of bytes or text like \"1MiB\", \"512KiB\")"),
                    )
                })?;
                bytes
            }
        };
        Ok(NotificationsConfig {
            listen,
            token,
            allow_unauthenticated,
            body_limit,
        })
    }
}

/// Parses `"1048576"`, `"512KiB"`, `"1MiB"`, `"10MB"`, `"1 GiB"` into bytes.
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits_end].parse().ok()?;
    let unit = text[digits_end..].trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}
