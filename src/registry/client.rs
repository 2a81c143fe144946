//! HTTP to the registry through one shared ureq agent.

use super::{Manifest, ManifestHead, RegistryError};

/// A registry client, `Send + Sync`, shared by every handler.
pub struct Client {}

impl Client {
    /// Builds the client from the `[registry]` configuration.
    pub fn new(config: &crate::config::RegistryConfig) -> anyhow::Result<Client> {
        let _ = config;
        Ok(Client {})
    }

    /// `GET /v2/`: checks the registry answers as a v2 registry.
    pub fn ping(&self) -> Result<(), RegistryError> {
        Err(RegistryError::Transport(
            "not implemented in this version".into(),
        ))
    }

    /// Every repository of the catalog, following `Link` pages.
    pub fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        Err(RegistryError::Transport(
            "not implemented in this version".into(),
        ))
    }

    /// The tags of a repository; `None` when the registry says `tags: null`.
    pub fn tags(&self, repository: &str) -> Result<Option<Vec<String>>, RegistryError> {
        let _ = repository;
        Err(RegistryError::Transport(
            "not implemented in this version".into(),
        ))
    }

    /// `HEAD` of a manifest by tag or digest.
    pub fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ManifestHead, RegistryError> {
        let _ = (repository, reference);
        Err(RegistryError::Transport(
            "not implemented in this version".into(),
        ))
    }

    /// `GET` of a manifest by tag or digest, parsed.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, RegistryError> {
        let _ = (repository, reference);
        Err(RegistryError::Transport(
            "not implemented in this version".into(),
        ))
    }

    /// `DELETE` of a manifest by digest.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> Result<(), RegistryError> {
        let _ = (repository, digest);
        Err(RegistryError::Transport(
            "not implemented in this version".into(),
        ))
    }
}
