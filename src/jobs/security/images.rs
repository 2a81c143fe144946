//! Where the images to scan come from: the [`Images`] trait and its
//! registry implementation (manifests through the shared client, layers at
//! the registry's blob URLs, pull credentials asked of the client). It reads
//! the registry only through `crate::registry`; it never asks a scanner
//! anything and never touches the store.

use std::sync::Arc;

use crate::registry::{Client, Manifest};
use crate::scanner::{self, PullCredential, Target};
use crate::store::ScanCandidate;

/// Where scan targets come from: the registry in production.
pub trait Images: Send + Sync {
    /// The images to scan for one candidate: the manifest itself, or each
    /// platform image of an index.
    fn targets(&self, candidate: &ScanCandidate) -> anyhow::Result<Vec<Target>>;
}

/// [`Images`] from the registry: manifests through the client, layers at
/// the registry's blob URLs, pull credentials from the client.
pub struct RegistryImages {
    client: Arc<Client>,
}

impl RegistryImages {
    /// Wraps the shared registry client.
    pub fn new(client: Arc<Client>) -> RegistryImages {
        RegistryImages { client }
    }

    /// The scan target of one image manifest. Every layer digest must be a
    /// valid digest before it becomes a blob URL or part of a scanner's
    /// path: a bad one fails this image, naming it and the digest.
    fn target(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Manifest,
        credential: Arc<dyn PullCredential>,
    ) -> anyhow::Result<Target> {
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            if !crate::registry::manifest::is_valid_digest(&layer.digest) {
                anyhow::bail!(
                    "image {repository}@{} names the layer digest {:?}, which is not a valid \
                     digest (algorithm:hex); the image is not scanned",
                    manifest.digest,
                    layer.digest
                );
            }
            let url = self
                .client
                .blob_url(repository, &layer.digest)
                .map_err(|error| {
                    anyhow::anyhow!("image {repository}@{}: {error}", manifest.digest)
                })?;
            layers.push(scanner::Layer {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                url,
            });
        }
        Ok(Target {
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            layers,
            registry_url: self
                .client
                .base_url()
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            credential,
        })
    }
}

/// A pull credential for one repository, asked of the registry client each
/// time (the client caches tokens and renews them before they expire).
struct RepositoryCredential {
    client: Arc<Client>,
    repository: String,
}

impl PullCredential for RepositoryCredential {
    fn authorization(&self) -> anyhow::Result<Option<String>> {
        self.client
            .pull_authorization(&self.repository)
            .map_err(|error| anyhow::anyhow!("{error}"))
    }
}

impl Images for RegistryImages {
    fn targets(&self, candidate: &ScanCandidate) -> anyhow::Result<Vec<Target>> {
        let repository = &candidate.repository;
        let manifest = self
            .client
            .manifest(repository, &candidate.digest)
            .map_err(|error| {
                anyhow::Error::new(error).context(format!(
                    "fetching manifest {repository}@{}",
                    candidate.digest
                ))
            })?;
        let credential: Arc<dyn PullCredential> = Arc::new(RepositoryCredential {
            client: self.client.clone(),
            repository: repository.clone(),
        });
        if manifest.children.is_empty() {
            return Ok(vec![self.target(
                repository,
                &candidate.tag,
                &manifest,
                credential,
            )?]);
        }
        // An index: scan each platform image; attestations and other
        // non-images (platform unknown/unknown) are skipped.
        let mut targets = Vec::new();
        for child in &manifest.children {
            if child
                .platform
                .as_ref()
                .is_some_and(|platform| platform.os == "unknown")
            {
                continue;
            }
            let image = self
                .client
                .manifest(repository, &child.descriptor.digest)
                .map_err(|error| {
                    anyhow::Error::new(error).context(format!(
                        "fetching manifest {repository}@{}",
                        child.descriptor.digest
                    ))
                })?;
            if image.children.is_empty() {
                targets.push(self.target(
                    repository,
                    &candidate.tag,
                    &image,
                    credential.clone(),
                )?);
            }
        }
        Ok(targets)
    }
}
