//! What the workers of one pass share about servers that stopped
//! answering (the registry, each scanner), and how a registry outage is
//! told from a bad image. No I/O and no store access here.

use std::sync::Mutex;

/// What the workers of one run share about unreachable servers: a
/// registry that cannot be reached stops the pass; a scanner that cannot be
/// reached is asked no more in this pass. Neither costs an image an attempt.
#[derive(Default)]
pub(super) struct Outages {
    registry: Mutex<Option<String>>,
    scanners: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Outages {
    pub(super) fn registry_down(&self) -> bool {
        self.registry.lock().is_ok_and(|down| down.is_some())
    }

    pub(super) fn scanner_down(&self, scanner: &str) -> bool {
        self.scanners
            .lock()
            .is_ok_and(|down| down.contains_key(scanner))
    }

    pub(super) fn registry_failed(&self, error: String) {
        if let Ok(mut down) = self.registry.lock() {
            down.get_or_insert(error);
        }
    }

    pub(super) fn scanner_failed(&self, scanner: &str, error: String) {
        if let Ok(mut down) = self.scanners.lock() {
            down.entry(scanner.to_string()).or_insert(error);
        }
    }

    /// The run's error, if something was unreachable.
    pub(super) fn error(&self, waiting: i64) -> Option<anyhow::Error> {
        if let Some(error) = self.registry.lock().ok().and_then(|down| down.clone()) {
            return Some(anyhow::anyhow!(
                "registry unreachable: {waiting} images wait for it and were given back without \
                 an attempt ({error})"
            ));
        }
        let down = self.scanners.lock().ok()?;
        let (first, error) = down.iter().next()?;
        let names: Vec<&str> = down.keys().map(String::as_str).collect();
        Some(anyhow::anyhow!(
            "scanner {} unreachable: asked once this pass, {waiting} images wait for it without \
             an attempt ({first}: {error})",
            names.join(", ")
        ))
    }
}

/// Whether `error` says the registry could not be reached (no answer
/// after the client's retries, or its breaker open).
pub(super) fn registry_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<crate::registry::RegistryError>(),
            Some(crate::registry::RegistryError::Transport(_))
        )
    })
}
