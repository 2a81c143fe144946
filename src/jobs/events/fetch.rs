//! The manifests of pushed tags whose event did not tell everything: taken
//! from what the tags already record of the digest, else fetched from the
//! registry on the client's worker pool. Turns every `Plan::Fetch` of a
//! batch into a tag write or a [`Failure`]; writes nothing itself.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{failure_from_registry, write_from_manifest, EventsHandler, Failure, Pending, Plan};
use crate::jobs::Outcome;
use crate::registry::{Manifest, RegistryError};
use crate::store::{EventEffect, TagWrite};

impl EventsHandler {
    /// Turns every `Plan::Fetch` into a tag write or a failure: from what the
    /// tags already record of the digest when a complete row has it (a
    /// manifest digest names its content), otherwise by fetching the
    /// manifest, each (repository, digest) once, on the registry client's
    /// worker pool.
    pub(super) fn fetch_manifests(
        &self,
        registry_id: i64,
        pending: &mut [Pending],
        outcome: &mut Outcome,
    ) {
        self.reuse_known_manifests(registry_id, pending, outcome);
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        for item in pending.iter() {
            if let Ok(Plan::Fetch {
                repository, digest, ..
            }) = &item.plan
            {
                if seen.insert((repository.clone(), digest.clone())) {
                    wanted.push((repository.clone(), digest.clone()));
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let fetched = self
            .registry
            .map_concurrent(wanted.clone(), |(repository, digest)| {
                self.registry.manifest(&repository, &digest)
            });
        let results: HashMap<(String, String), Result<Manifest, RegistryError>> =
            wanted.iter().cloned().zip(fetched).collect();
        outcome.add("manifests_fetched", wanted.len() as i64);
        let unreachable = self.registry.is_unreachable();
        for item in pending.iter_mut() {
            let Ok(Plan::Fetch {
                repository,
                tag,
                digest,
            }) = &item.plan
            else {
                continue;
            };
            let context = format!("fetching manifest {repository}@{digest}");
            item.plan = match results.get(&(repository.clone(), digest.clone())) {
                Some(Ok(manifest)) => Ok(Plan::Apply(EventEffect::Upsert(write_from_manifest(
                    repository, tag, digest, manifest,
                )))),
                Some(Err(error @ RegistryError::Transport(_))) if unreachable => {
                    Err(Failure::Unreachable {
                        error: format!("{context}: {error}"),
                    })
                }
                Some(Err(error)) => Err(failure_from_registry(&context, error)),
                None => Err(Failure::Transient {
                    error: format!("{context}: no answer"),
                    retry_after: None,
                }),
            };
        }
    }

    /// Writes the tags of `Plan::Fetch` events whose digest the tags already
    /// record, without a registry request. A failed lookup only costs the
    /// fetches.
    fn reuse_known_manifests(
        &self,
        registry_id: i64,
        pending: &mut [Pending],
        outcome: &mut Outcome,
    ) {
        let digests: BTreeSet<String> = pending
            .iter()
            .filter_map(|item| match &item.plan {
                Ok(Plan::Fetch { digest, .. }) => Some(digest.clone()),
                _ => None,
            })
            .collect();
        if digests.is_empty() {
            return;
        }
        let digests: Vec<String> = digests.into_iter().collect();
        let known = match self.store.known_manifests(registry_id, &digests) {
            Ok(known) => known,
            Err(error) => {
                log::warn!("looking up known manifests failed, fetching them all: {error:#}");
                return;
            }
        };
        let mut reused = 0;
        for item in pending.iter_mut() {
            let Ok(Plan::Fetch {
                repository,
                tag,
                digest,
            }) = &item.plan
            else {
                continue;
            };
            let Some(manifest) = known.get(digest) else {
                continue;
            };
            item.plan = Ok(Plan::Apply(EventEffect::Upsert(TagWrite {
                repository: repository.clone(),
                tag: tag.clone(),
                digest: digest.clone(),
                image_id: manifest.image_id.clone(),
                media_type: manifest.media_type.clone(),
                size: Some(manifest.size),
                platforms: manifest.platforms.clone(),
            })));
            reused += 1;
        }
        outcome.add("manifests_reused", reused);
    }
}
