//! How a failed attempt at an event counts: [`Failure`] sorts it into
//! transient, permanent or unreachable, [`backoff_after`] says how long a
//! transient one waits. Pure: no store, no registry, no clock.

use std::time::Duration;

use super::Settings;
use crate::registry::RegistryError;

/// How a failed attempt counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// May work later: registry unreachable, 5xx, 429 (with its
    /// `Retry-After`), refused credentials (an operator can fix them).
    Transient {
        /// What went wrong.
        error: String,
        /// The registry's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Will never work: malformed data, manifest gone.
    Permanent {
        /// What went wrong.
        error: String,
    },
    /// The registry is unreachable (the client's breaker opened): the event
    /// is put back without using an attempt, and the run stops, so that an
    /// outage costs the events nothing.
    Unreachable {
        /// What went wrong.
        error: String,
    },
}

/// Sorts a registry error into transient or permanent.
pub fn failure_from_registry(context: &str, error: &RegistryError) -> Failure {
    let text = format!("{context}: {error}");
    match error {
        RegistryError::RateLimited { retry_after } => Failure::Transient {
            error: text,
            retry_after: *retry_after,
        },
        RegistryError::Unauthorized { .. } => Failure::Transient {
            error: text,
            retry_after: None,
        },
        _ if error.is_transient() => Failure::Transient {
            error: text,
            retry_after: None,
        },
        _ => Failure::Permanent { error: text },
    }
}

/// The wait before the next try after `attempts` failed attempts (1 for the
/// first failure): `backoff` doubling per attempt, capped at `max_backoff`,
/// and never shorter than the registry's `Retry-After`.
pub fn backoff_after(
    attempts: u32,
    settings: &Settings,
    retry_after: Option<Duration>,
) -> Duration {
    let wait = crate::time::backoff(settings.backoff, settings.max_backoff, attempts);
    wait.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_sort_into_transient_and_permanent() {
        let transient = [
            RegistryError::Transport("connection refused".into()),
            RegistryError::Server {
                status: 503,
                message: String::new(),
            },
            RegistryError::RateLimited {
                retry_after: Some(Duration::from_secs(9)),
            },
            RegistryError::Unauthorized {
                scope: None,
                message: String::new(),
            },
        ];
        for error in &transient {
            assert!(
                matches!(failure_from_registry("x", error), Failure::Transient { .. }),
                "{error}"
            );
        }
        let permanent = [
            RegistryError::NotFound {
                code: Some("MANIFEST_UNKNOWN".into()),
                message: String::new(),
            },
            RegistryError::Malformed("bad".into()),
            RegistryError::Server {
                status: 400,
                message: String::new(),
            },
        ];
        for error in &permanent {
            assert!(
                matches!(failure_from_registry("x", error), Failure::Permanent { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let settings = Settings {
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            ..Settings::default()
        };
        let waits: Vec<u64> = (1..=7)
            .map(|attempt| backoff_after(attempt, &settings, None).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff_after(100, &settings, None), Duration::from_secs(60));
        assert_eq!(
            backoff_after(1, &settings, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }
}
