//! The observing half of a sync pass: the tag list of every repository of
//! the catalog, then one request per tag (a HEAD for a tag the database
//! knows, a GET only when its digest changed or for a new tag), both through
//! the client's worker pool. What it saw goes into the walk for `plan.rs`;
//! nothing here writes to the database.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::plan::{Observed, ObservedTag};
use super::progress::Progress;
use super::{SyncHandler, Walk};
use crate::jobs::JobContext;
use crate::registry::{Client, Manifest, RegistryError};
use crate::store::TagWrite;

impl SyncHandler {
    /// Lists the tags of every repository of the catalog, then HEADs or GETs
    /// every tag, both concurrently through the client's worker pool.
    /// Per-repository failures become `Observed::Failed`. Fails, having
    /// written nothing, when the run is cancelled or when the registry
    /// stopped answering (transport errors): a pass then counts nothing.
    pub fn observe(&self, ctx: &JobContext, walk: &mut Walk) -> anyhow::Result<()> {
        let catalog = &walk.catalog;
        let progress = Progress::new(&ctx.job_name, catalog.len(), ctx.options.progress);
        let registry = &self.registry;
        let cancel = &ctx.cancel;
        let tag_lists: Vec<Result<Option<Vec<String>>, Failure>> =
            registry.map_concurrent(catalog.iter().collect(), |repository: &String| {
                if cancel.is_cancelled() {
                    return Err(Failure::cancelled());
                }
                registry
                    .tags(repository)
                    .map_err(|error| Failure::new(format!("listing tags of {repository}"), error))
            });
        if cancel.is_cancelled() {
            anyhow::bail!("the pass was cut short while listing tags");
        }

        // One request per tag, flattened so that one large repository does
        // not serialise the walk.
        let empty = BTreeMap::new();
        let mut requests: Vec<TagRequest> = Vec::new();
        let pending: Vec<AtomicUsize> = catalog.iter().map(|_| AtomicUsize::new(0)).collect();
        for (index, (repository, listed)) in catalog.iter().zip(&tag_lists).enumerate() {
            let known = walk.snapshot.get(repository).unwrap_or(&empty);
            match listed {
                Ok(Some(tags)) if !tags.is_empty() => {
                    pending[index].store(tags.len(), Ordering::SeqCst);
                    for tag in tags {
                        requests.push(TagRequest {
                            index,
                            tag: tag.clone(),
                            known_digest: known.get(tag).cloned(),
                        });
                    }
                }
                _ => progress.advance(1),
            }
        }
        let answers: Vec<Result<ObservedTag, Failure>> =
            registry.map_concurrent(requests.iter().collect(), |request: &TagRequest| {
                let answer = if cancel.is_cancelled() {
                    Err(Failure::cancelled())
                } else {
                    observe_tag(registry, &catalog[request.index], request)
                };
                if pending[request.index].fetch_sub(1, Ordering::SeqCst) == 1 {
                    progress.advance(1);
                }
                answer
            });
        progress.finish();
        if cancel.is_cancelled() {
            anyhow::bail!("the pass was cut short while reading manifests");
        }

        let mut per_repository: Vec<Result<BTreeMap<String, ObservedTag>, Failure>> =
            tag_lists.iter().map(|_| Ok(BTreeMap::new())).collect();
        for (request, answer) in requests.into_iter().zip(answers) {
            let slot = &mut per_repository[request.index];
            match (slot.as_mut(), answer) {
                (Ok(tags), Ok(seen)) => {
                    tags.insert(request.tag, seen);
                }
                (Ok(_), Err(failure)) => *slot = Err(failure),
                (Err(_), _) => {}
            }
        }
        let mut unreachable: (usize, Option<String>) = (0, None);
        for ((repository, listed), tags) in catalog.iter().zip(tag_lists).zip(per_repository) {
            let seen = match (listed, tags) {
                (Err(failure), _) | (Ok(_), Err(failure)) => {
                    if failure.unreachable {
                        unreachable.0 += 1;
                        unreachable.1.get_or_insert_with(|| failure.cause.clone());
                    }
                    Observed::Failed(failure.cause)
                }
                (Ok(None), _) => Observed::NoTags,
                (Ok(Some(listed)), _) if listed.is_empty() => Observed::NoTags,
                (Ok(Some(_)), Ok(tags)) => Observed::Tags(tags),
            };
            walk.observed.insert(repository.clone(), seen);
        }
        walk.requests = self
            .registry
            .requests_made()
            .saturating_sub(walk.requests_before);
        if let (count, Some(first)) = unreachable {
            let not_sent = self
                .registry
                .requests_refused()
                .saturating_sub(walk.refused_before);
            anyhow::bail!(
                "registry unreachable: the registry stopped answering during the pass ({count} \
                 repositories could not be read, {not_sent} requests were not sent; first: \
                 {first}); nothing was written"
            );
        }
        Ok(())
    }
}

/// Why one repository could not be observed.
struct Failure {
    /// What was being done and the registry's error.
    cause: String,
    /// The registry did not answer at all (connection refused, reset, timed out).
    unreachable: bool,
}

impl Failure {
    fn new(doing: String, error: RegistryError) -> Failure {
        let unreachable = matches!(error, RegistryError::Transport(_));
        Failure {
            cause: format!("{doing}: {error}"),
            unreachable,
        }
    }

    fn cancelled() -> Failure {
        Failure {
            cause: "cancelled".to_string(),
            unreachable: false,
        }
    }
}

/// One tag to ask the registry about.
struct TagRequest {
    /// Index of the repository in the catalog.
    index: usize,
    tag: String,
    /// The digest the database has, if it knows the tag.
    known_digest: Option<String>,
}

/// HEAD for a known tag (GET only when the digest changed; GET alone from a
/// registry that omits the digest header on HEAD), GET for a new one.
fn observe_tag(
    registry: &Client,
    repository: &str,
    request: &TagRequest,
) -> Result<ObservedTag, Failure> {
    let tag = &request.tag;
    let failed = |what: &str, error: RegistryError| {
        Failure::new(format!("{what} of {repository}:{tag}"), error)
    };
    if let Some(known) = &request.known_digest {
        let head = registry
            .head_manifest(repository, tag)
            .map_err(|error| failed("reading the manifest digest", error))?;
        if head.digest == *known {
            return Ok(ObservedTag::Same);
        }
        // A registry without Docker-Content-Digest on HEAD: the client
        // already read the manifest with GET.
        if let Some(manifest) = &head.manifest {
            return Ok(ObservedTag::Manifest(tag_write(repository, tag, manifest)));
        }
    }
    let manifest = registry
        .manifest(repository, tag)
        .map_err(|error| failed("reading the manifest", error))?;
    Ok(ObservedTag::Manifest(tag_write(repository, tag, &manifest)))
}

/// The tag row a manifest describes.
pub fn tag_write(repository: &str, tag: &str, manifest: &Manifest) -> TagWrite {
    let platforms: Vec<serde_json::Value> = manifest
        .children
        .iter()
        .filter_map(|child| child.platform.as_ref())
        .map(|platform| {
            let mut entry =
                serde_json::json!({"os": platform.os, "architecture": platform.architecture});
            if let Some(variant) = &platform.variant {
                entry["variant"] = serde_json::Value::String(variant.clone());
            }
            entry
        })
        .collect();
    TagWrite {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: manifest.digest.clone(),
        image_id: manifest.image_id.clone(),
        media_type: manifest.media_type.clone(),
        size: Some(manifest.size),
        platforms: (!platforms.is_empty()).then(|| serde_json::Value::Array(platforms).to_string()),
    }
}
