//! Confirms a plan's deletions with the registry before a pass writes them.
//!
//! An answer can look valid and still be wrong: a catalog page of 200
//! `{"repositories":[]}` in the middle of the catalog, a tag list of
//! `{"tags": null}` or `{"tags": []}` from a registry or proxy in trouble.
//! Deleting on such an answer throws away history, scan results and pull
//! times that the next pass cannot bring back. So every deletion is asked
//! once more through a path of its own: a tag only goes after a manifest
//! request for it answers 404 `MANIFEST_UNKNOWN`; a repository only after
//! its tag list answers 404 `NAME_UNKNOWN`, or no tags again and a manifest
//! request for every tag the database knows answers 404. A confirmation
//! that fails or disagrees leaves the whole repository as it is this pass
//! and counts as an error ([`SkipReason::Unconfirmed`]).
//!
//! The requests go through the client's worker pool and cost nothing on a
//! pass that deletes nothing. What this file must not do: write anything,
//! or take a 404 without the registry's error code as a confirmation (a
//! misrouted proxy answers 404 too).
//!
//! [`SkipReason::Unconfirmed`]: super::plan::SkipReason::Unconfirmed

use std::collections::BTreeMap;

use super::plan::{Deletion, Plan, Snapshot};
use crate::jobs::Cancel;
use crate::registry::{Client, RegistryError};

/// What confirming a pass's deletions found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// Deletions the registry confirmed.
    pub confirmed: usize,
    /// Repositories left alone because one of their deletions was not confirmed.
    pub refused: usize,
}

/// Asks the registry about every deletion of `plan` and turns each
/// repository with an unconfirmed deletion into a skip. Returns the counts.
/// A cancelled run confirms nothing: every deletion is then refused.
pub fn confirm_deletions(
    registry: &Client,
    plan: &mut Plan,
    snapshot: &Snapshot,
    cancel: &Cancel,
) -> Confirmed {
    let deletions = plan.deletions(snapshot);
    if deletions.is_empty() {
        return Confirmed::default();
    }
    // First round: one request per deletion (the tag's manifest, or the
    // repository's tag list).
    let first: Vec<Verdict> = registry.map_concurrent(deletions.iter().collect(), |deletion| {
        if cancel.is_cancelled() {
            return Verdict::Refused("the run was cancelled".to_string());
        }
        match deletion {
            Deletion::Tag { repository, tag } => manifest_gone(registry, repository, tag),
            Deletion::Repository { repository, .. } => tag_list_gone(registry, repository),
        }
    });
    // Second round: the known tags of every repository that listed no tags
    // again, each by a manifest request of its own.
    let mut second_round: Vec<(usize, &str, &str)> = Vec::new();
    for (index, (deletion, verdict)) in deletions.iter().zip(&first).enumerate() {
        if let (
            Deletion::Repository {
                repository,
                known_tags,
            },
            Verdict::ListsNoTags,
        ) = (deletion, verdict)
        {
            second_round.extend(
                known_tags
                    .iter()
                    .map(|tag| (index, repository.as_str(), tag.as_str())),
            );
        }
    }
    let second: Vec<Verdict> =
        registry.map_concurrent(second_round.iter().collect(), |(_, repository, tag)| {
            if cancel.is_cancelled() {
                return Verdict::Refused("the run was cancelled".to_string());
            }
            manifest_gone(registry, repository, tag)
        });
    let mut verdicts: Vec<Verdict> = first
        .into_iter()
        .map(|verdict| match verdict {
            Verdict::ListsNoTags => Verdict::Gone,
            other => other,
        })
        .collect();
    for ((index, _, _), verdict) in second_round.iter().zip(second) {
        if let (Verdict::Gone, Verdict::Refused(_)) = (&verdicts[*index], &verdict) {
            verdicts[*index] = verdict;
        }
    }

    // The first refusal of each repository is its cause.
    let mut refusals: BTreeMap<&str, String> = BTreeMap::new();
    let mut counts = Confirmed::default();
    for (deletion, verdict) in deletions.iter().zip(verdicts) {
        match verdict {
            Verdict::Refused(cause) => {
                refusals.entry(deletion.repository()).or_insert(cause);
            }
            _ => counts.confirmed += 1,
        }
    }
    for (repository, cause) in refusals {
        plan.refuse(repository, cause);
        counts.refused += 1;
    }
    counts
}

/// The registry's word on one deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Confirmed gone.
    Gone,
    /// The repository's tag list names no tags again: its known tags are
    /// asked one by one.
    ListsNoTags,
    /// Not confirmed, and why.
    Refused(String),
}

/// A manifest request for `repository:tag`: gone on 404 with the
/// registry's code for a missing manifest or repository.
fn manifest_gone(registry: &Client, repository: &str, tag: &str) -> Verdict {
    match registry.manifest(repository, tag) {
        Err(error) if error.says_gone() => Verdict::Gone,
        Ok(manifest) => Verdict::Refused(format!(
            "the registry still serves {repository}:{tag} ({})",
            manifest.digest
        )),
        Err(RegistryError::NotFound { code, .. }) => Verdict::Refused(format!(
            "{repository}:{tag} answered 404 without MANIFEST_UNKNOWN (code {})",
            code.as_deref().unwrap_or("none")
        )),
        Err(error) => Verdict::Refused(format!("asking again for {repository}:{tag}: {error}")),
    }
}

/// The tag list of `repository`: gone on 404 `NAME_UNKNOWN`.
fn tag_list_gone(registry: &Client, repository: &str) -> Verdict {
    match registry.tags(repository) {
        Err(RegistryError::NotFound {
            code: Some(code), ..
        }) if code == "NAME_UNKNOWN" => Verdict::Gone,
        Ok(Some(tags)) if !tags.is_empty() => Verdict::Refused(format!(
            "the registry lists {} tags of {repository} when asked again",
            tags.len()
        )),
        Ok(_) => Verdict::ListsNoTags,
        Err(RegistryError::NotFound { code, .. }) => Verdict::Refused(format!(
            "the tag list of {repository} answered 404 without NAME_UNKNOWN (code {})",
            code.as_deref().unwrap_or("none")
        )),
        Err(error) => Verdict::Refused(format!(
            "asking again for the tags of {repository}: {error}"
        )),
    }
}
