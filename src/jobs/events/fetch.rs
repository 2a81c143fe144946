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
        let gone = self.pushes_gone(pending, &results, outcome);
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
            if let Some(verdict) = gone.get(&(repository.clone(), tag.clone(), digest.clone())) {
                item.plan = verdict.clone();
                continue;
            }
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

    /// What becomes of pushes whose manifest the registry says is gone (it
    /// was deleted after the push, before this event came up): the tag is
    /// asked for once more, and when the registry says it is gone too, the
    /// push was undone and the tag goes from the database; when the tag now
    /// names another manifest, that push's own event brings it and this one
    /// does nothing. Anything else (the tag still names the digest, the
    /// second answer fails) is left to the usual failure handling, so a
    /// registry in trouble never costs a tag.
    fn pushes_gone(
        &self,
        pending: &[Pending],
        results: &HashMap<(String, String), Result<Manifest, RegistryError>>,
        outcome: &mut Outcome,
    ) -> HashMap<(String, String, String), Result<Plan, Failure>> {
        let mut asked: Vec<(String, String, String)> = Vec::new();
        for item in pending {
            if let Ok(Plan::Fetch {
                repository,
                tag,
                digest,
            }) = &item.plan
            {
                let key = (repository.clone(), digest.clone());
                let gone = matches!(results.get(&key), Some(Err(error)) if error.says_gone());
                let entry = (repository.clone(), tag.clone(), digest.clone());
                if gone && !asked.contains(&entry) {
                    asked.push(entry);
                }
            }
        }
        if asked.is_empty() {
            return HashMap::new();
        }
        let answers = self
            .registry
            .map_concurrent(asked.clone(), |(repository, tag, _)| {
                // A GET: a HEAD's 404 has no body, so no error code.
                self.registry.manifest(&repository, &tag)
            });
        let mut verdicts = HashMap::new();
        for ((repository, tag, digest), answer) in asked.into_iter().zip(answers) {
            let verdict = match answer {
                Err(error) if error.says_gone() => {
                    log::info!(
                        "the push of {repository}:{tag} ({digest}) was undone in the registry \
                         before its event was applied: the tag goes"
                    );
                    outcome.add("pushes_undone", 1);
                    Ok(Plan::Apply(EventEffect::DeleteTag {
                        repository: repository.clone(),
                        tag: tag.clone(),
                    }))
                }
                Ok(manifest) if manifest.digest != digest => {
                    outcome.add("pushes_undone", 1);
                    Ok(Plan::Apply(EventEffect::Nothing))
                }
                Ok(_) => Err(Failure::Transient {
                    error: format!(
                        "the registry says {repository}@{digest} is unknown while \
                         {repository}:{tag} names it"
                    ),
                    retry_after: None,
                }),
                Err(error) => Err(failure_from_registry(
                    &format!("asking again for {repository}:{tag}"),
                    &error,
                )),
            };
            verdicts.insert((repository, tag, digest), verdict);
        }
        verdicts
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
