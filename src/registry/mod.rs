//! The registry client: the Docker Registry HTTP API v2 and OCI distribution.
//! Only this folder touches ureq. `client/` does HTTP (retries, timeouts,
//! TLS, the auth handshake, the endpoints); `breaker.rs` stops asking a registry that stopped answering;
//! `auth.rs` answers challenges (Basic, Bearer tokens with a per-scope
//! cache); `parse.rs` and `manifest.rs` are pure parsers of headers, error
//! bodies and manifests, unit tested on literal inputs; `media_type.rs` the
//! media-type strings, for the whole crate.
//!
//! What may not: no database (the jobs decide what a registry answer
//! changes), no scanner, no async; a registry answer is never trusted
//! before a parser here has read it.

use std::fmt;
use std::time::Duration;

pub(crate) mod auth;
mod breaker;
mod client;
pub mod manifest;
pub mod media_type;
pub(crate) mod parse;

pub use client::Client;
pub use manifest::{Descriptor, Manifest, ManifestHead, Platform, PlatformManifest};

/// Media types sent in `Accept` for every manifest request.
pub(crate) use media_type::MANIFESTS as MANIFEST_MEDIA_TYPES;

/// A failed registry request, typed where callers branch on it.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryError {
    /// 401/403, or the token realm refused us. `scope` is the scope asked for.
    Unauthorized {
        scope: Option<String>,
        message: String,
    },
    /// 404 (or 405 for DELETE with deletion disabled) with the registry's
    /// error code such as `NAME_UNKNOWN` or `MANIFEST_UNKNOWN`.
    NotFound {
        code: Option<String>,
        message: String,
    },
    /// 429, with `Retry-After` when the registry sent one.
    RateLimited { retry_after: Option<Duration> },
    /// Any other non-success status.
    Server { status: u16, message: String },
    /// Connection refused, reset, timed out, TLS failure.
    Transport(String),
    /// The registry answered, but the body or headers make no sense.
    Malformed(String),
}

impl RegistryError {
    /// Whether this is the registry's own word that a manifest or its
    /// repository is unknown: 404 with `MANIFEST_UNKNOWN` or `NAME_UNKNOWN`.
    /// A 404 without the code (a misrouted proxy, a wrong base URL) is not.
    pub fn says_gone(&self) -> bool {
        matches!(
            self,
            RegistryError::NotFound { code: Some(code), .. }
                if code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN"
        )
    }

    /// Whether a later retry may succeed (transport, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport(_) | RegistryError::RateLimited { .. } => true,
            RegistryError::Server { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Unauthorized {
                scope: Some(scope),
                message,
            } => {
                write!(f, "unauthorized for scope {scope}: {message}")
            }
            RegistryError::Unauthorized {
                scope: None,
                message,
            } => write!(f, "unauthorized: {message}"),
            RegistryError::NotFound {
                code: Some(code),
                message,
            } => write!(f, "not found ({code}): {message}"),
            RegistryError::NotFound {
                code: None,
                message,
            } => write!(f, "not found: {message}"),
            RegistryError::RateLimited {
                retry_after: Some(after),
            } => {
                write!(f, "rate limited, retry after {}s", after.as_secs())
            }
            RegistryError::RateLimited { retry_after: None } => write!(f, "rate limited"),
            RegistryError::Server { status, message } => {
                write!(f, "registry answered {status}: {message}")
            }
            RegistryError::Transport(message) => write!(f, "transport error: {message}"),
            RegistryError::Malformed(message) => write!(f, "malformed answer: {message}"),
        }
    }
}

impl std::error::Error for RegistryError {}
