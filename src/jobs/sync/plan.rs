//! The pure half of a sync pass: from a snapshot of the database and what the
//! walk of the registry observed, decide per repository what to create,
//! update, delete or skip, check the safety valve, and render the plan for
//! `--dry-run`. No I/O and no clock here; everything comes in as arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::store::TagWrite;

/// The database's side of a pass: repository full name -> tag -> digest.
/// Repositories without tags appear with an empty map.
pub type Snapshot = BTreeMap<String, BTreeMap<String, String>>;

/// What the walk saw of one tag.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedTag {
    /// A HEAD gave the digest the database already has.
    Same,
    /// A GET gave the manifest (new tag, or the digest changed).
    Manifest(TagWrite),
}

/// What the walk saw of one repository of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The tag list and every manifest request succeeded.
    Tags(BTreeMap<String, ObservedTag>),
    /// The registry lists no tags (`tags: null` or `[]`): every manifest
    /// was deleted, and docker-registry keeps the name in the catalog.
    NoTags,
    /// The tag list or a manifest request failed; the cause, with context.
    Failed(String),
}

/// Whether the strategy removes from the database what the registry lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletes {
    /// `initial`, `update`: add and update only.
    Never,
    /// `on-start`, `update-delete`.
    Missing,
}

/// Why a repository is deleted from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The catalog no longer lists it.
    MissingFromCatalog,
    /// The catalog lists it with no tags.
    NoTags,
}

/// Why a repository is left exactly as it is this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Registry events for it are pending or arrived during the pass; the
    /// events job is the source of truth for recent changes.
    RecentEvents,
    /// The registry could not tell us its tags or manifests (an error).
    Unreadable(String),
    /// A deletion the plan made was not confirmed by the registry when
    /// asked again (an error): the registry still serves what looked gone,
    /// or the confirming request failed.
    Unconfirmed(String),
}

/// A deletion a pass asks the registry to confirm before it writes it
/// ([`Plan::deletions`]): an answer that merely looks empty (a short
/// catalog page, `tags: null`) must never delete what the registry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// A tag its repository's list no longer names: confirmed when a
    /// manifest request for it answers 404 `MANIFEST_UNKNOWN`.
    Tag {
        /// Full repository name.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// A repository missing from the catalog or listing no tags:
    /// confirmed when its tag list answers 404 `NAME_UNKNOWN`, or no tags
    /// again and a manifest request for every tag the database knows
    /// answers 404.
    Repository {
        /// Full repository name.
        repository: String,
        /// Its tags in the database.
        known_tags: Vec<String>,
    },
}

impl Deletion {
    /// The repository the deletion is in.
    pub fn repository(&self) -> &str {
        match self {
            Deletion::Tag { repository, .. } | Deletion::Repository { repository, .. } => {
                repository
            }
        }
    }
}

/// A tag whose digest changed.
#[derive(Debug, Clone, PartialEq)]
pub struct TagUpdate {
    /// The digest the database had.
    pub old_digest: String,
    /// What the registry serves now.
    pub write: TagWrite,
}

/// Tag changes in one repository the catalog lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagChanges {
    /// Tags the database does not know.
    pub create: Vec<TagWrite>,
    /// Tags whose digest changed.
    pub update: Vec<TagUpdate>,
    /// Tags the registry no longer lists (deleting strategies only).
    pub delete: Vec<String>,
    /// Tags the registry no longer lists, kept because the strategy never deletes.
    pub kept: usize,
    /// Tags whose digest is unchanged.
    pub unchanged: usize,
}

impl TagChanges {
    /// Whether applying these changes writes anything.
    pub fn writes_nothing(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// What happens to one repository.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create, update and delete tags (possibly nothing at all).
    Sync(TagChanges),
    /// Delete the repository and its `tags` tags from the database.
    Delete {
        /// Why.
        reason: DeleteReason,
        /// How many tags it has in the database.
        tags: usize,
    },
    /// Leave it exactly as it is.
    Skip(SkipReason),
}

/// The plan for one repository.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryPlan {
    /// Full repository name.
    pub repository: String,
    /// What to do.
    pub action: Action,
}

/// The plan of a pass, sorted by repository name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// One entry per repository of the catalog or the database.
    pub repositories: Vec<RepositoryPlan>,
}

/// The six counters of a pass: a plan's totals as counted before applying
/// it ([`Plan::totals`]), and what applying it did (the sync handler's
/// `PassCounts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTotals {
    /// Tags to create.
    pub tags_created: usize,
    /// Tags whose digest changes.
    pub tags_updated: usize,
    /// Tags to delete, including those of deleted repositories.
    pub tags_deleted: usize,
    /// Repositories to delete.
    pub repositories_deleted: usize,
    /// Repositories skipped because of racing events.
    pub skipped: usize,
    /// Repositories skipped because they could not be read.
    pub errors: usize,
}

impl PlanTotals {
    /// Every counter with the name it is recorded under in a run's counts.
    pub fn named(&self) -> [(&'static str, usize); 6] {
        [
            ("tags_created", self.tags_created),
            ("tags_updated", self.tags_updated),
            ("tags_deleted", self.tags_deleted),
            ("repositories_deleted", self.repositories_deleted),
            ("skipped", self.skipped),
            ("errors", self.errors),
        ]
    }
}

/// Decides what a pass does. `busy` holds the repositories with pending or
/// recent registry events; they are skipped whatever the walk saw.
///
/// `observed` is taken by value: the manifests it holds move into the plan
/// instead of being copied (a first pass of 50,000 tags holds one copy).
pub fn plan(
    snapshot: &Snapshot,
    mut observed: BTreeMap<String, Observed>,
    busy: &BTreeSet<String>,
    deletes: Deletes,
) -> Plan {
    let names: BTreeSet<String> = snapshot.keys().chain(observed.keys()).cloned().collect();
    let empty = BTreeMap::new();
    let mut repositories = Vec::with_capacity(names.len());
    for name in names {
        let known = snapshot.get(&name);
        let seen = observed.remove(&name);
        let action = if busy.contains(&name) {
            Action::Skip(SkipReason::RecentEvents)
        } else {
            match (seen, known) {
                (Some(Observed::Failed(cause)), _) => Action::Skip(SkipReason::Unreadable(cause)),
                (Some(Observed::Tags(tags)), known) => {
                    Action::Sync(tag_changes(known.unwrap_or(&empty), tags, deletes))
                }
                (Some(Observed::NoTags), Some(known)) if deletes == Deletes::Missing => {
                    Action::Delete {
                        reason: DeleteReason::NoTags,
                        tags: known.len(),
                    }
                }
                (Some(Observed::NoTags), known) => Action::Sync(TagChanges {
                    kept: known.map_or(0, BTreeMap::len),
                    ..TagChanges::default()
                }),
                (None, Some(known)) if deletes == Deletes::Missing => Action::Delete {
                    reason: DeleteReason::MissingFromCatalog,
                    tags: known.len(),
                },
                (None, known) => Action::Sync(TagChanges {
                    kept: known.map_or(0, BTreeMap::len),
                    ..TagChanges::default()
                }),
            }
        };
        repositories.push(RepositoryPlan {
            repository: name,
            action,
        });
    }
    Plan { repositories }
}

fn tag_changes(
    known: &BTreeMap<String, String>,
    observed: BTreeMap<String, ObservedTag>,
    deletes: Deletes,
) -> TagChanges {
    let mut changes = TagChanges::default();
    for tag in known.keys().filter(|tag| !observed.contains_key(*tag)) {
        match deletes {
            Deletes::Missing => changes.delete.push(tag.clone()),
            Deletes::Never => changes.kept += 1,
        }
    }
    for (tag, seen) in observed {
        match (seen, known.get(&tag)) {
            (ObservedTag::Same, _) => changes.unchanged += 1,
            (ObservedTag::Manifest(write), None) => changes.create.push(write),
            (ObservedTag::Manifest(write), Some(old_digest)) if *old_digest == write.digest => {
                changes.unchanged += 1
            }
            (ObservedTag::Manifest(write), Some(old_digest)) => changes.update.push(TagUpdate {
                old_digest: old_digest.clone(),
                write,
            }),
        }
    }
    changes
}

impl Plan {
    /// Counts what the plan would do.
    pub fn totals(&self) -> PlanTotals {
        let mut totals = PlanTotals::default();
        for entry in &self.repositories {
            match &entry.action {
                Action::Sync(changes) => {
                    totals.tags_created += changes.create.len();
                    totals.tags_updated += changes.update.len();
                    totals.tags_deleted += changes.delete.len();
                }
                Action::Delete { tags, .. } => {
                    totals.repositories_deleted += 1;
                    totals.tags_deleted += tags;
                }
                Action::Skip(SkipReason::RecentEvents) => totals.skipped += 1,
                Action::Skip(SkipReason::Unreadable(_) | SkipReason::Unconfirmed(_)) => {
                    totals.errors += 1
                }
            }
        }
        totals
    }

    /// Every deletion of the plan, in plan order, for the registry to
    /// confirm before anything is written.
    pub fn deletions(&self, snapshot: &Snapshot) -> Vec<Deletion> {
        let mut deletions = Vec::new();
        for entry in &self.repositories {
            match &entry.action {
                Action::Sync(changes) => {
                    deletions.extend(changes.delete.iter().map(|tag| Deletion::Tag {
                        repository: entry.repository.clone(),
                        tag: tag.clone(),
                    }))
                }
                Action::Delete { .. } => deletions.push(Deletion::Repository {
                    repository: entry.repository.clone(),
                    known_tags: snapshot
                        .get(&entry.repository)
                        .map(|tags| tags.keys().cloned().collect())
                        .unwrap_or_default(),
                }),
                Action::Skip(_) => {}
            }
        }
        deletions
    }

    /// Leaves `repository` exactly as it is this pass because a deletion
    /// in it was not confirmed, for `cause`.
    pub fn refuse(&mut self, repository: &str, cause: String) {
        if let Some(entry) = self
            .repositories
            .iter_mut()
            .find(|entry| entry.repository == repository)
        {
            entry.action = Action::Skip(SkipReason::Unconfirmed(cause));
        }
    }

    /// Whether the plan deletes too much of the database: more than
    /// `max_fraction` of its repositories or of its tags. Returns a sentence
    /// saying which when it does.
    pub fn exceeds_delete_fraction(
        &self,
        snapshot: &Snapshot,
        max_fraction: f64,
    ) -> Option<String> {
        let totals = self.totals();
        let repositories_known = snapshot.len();
        let tags_known: usize = snapshot.values().map(BTreeMap::len).sum();
        let too_many = |n: usize, of: usize| of > 0 && n as f64 > max_fraction * of as f64;
        if too_many(totals.repositories_deleted, repositories_known) {
            return Some(format!(
                "the pass would delete {} of {} repositories, more than max_delete_fraction = {}",
                totals.repositories_deleted, repositories_known, max_fraction
            ));
        }
        if too_many(totals.tags_deleted, tags_known) {
            return Some(format!(
                "the pass would delete {} of {} tags, more than max_delete_fraction = {}",
                totals.tags_deleted, tags_known, max_fraction
            ));
        }
        None
    }

    /// The plan for people: one line per change, then a summary line.
    /// Repositories with nothing to do are not listed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for entry in &self.repositories {
            let name = &entry.repository;
            match &entry.action {
                Action::Sync(changes) => {
                    for write in &changes.create {
                        let _ = writeln!(out, "create  {name}:{}  {}", write.tag, write.digest);
                    }
                    for update in &changes.update {
                        let _ = writeln!(
                            out,
                            "update  {name}:{}  {} -> {}",
                            update.write.tag, update.old_digest, update.write.digest
                        );
                    }
                    for tag in &changes.delete {
                        let _ = writeln!(out, "delete  {name}:{tag}  (missing from the registry)");
                    }
                    if changes.kept > 0 {
                        let _ = writeln!(
                            out,
                            "keep    {name}  ({} tags missing from the registry; the strategy never deletes)",
                            changes.kept
                        );
                    }
                }
                Action::Delete { reason, tags } => {
                    let why = match reason {
                        DeleteReason::MissingFromCatalog => "missing from the catalog",
                        DeleteReason::NoTags => "no tags in the registry",
                    };
                    let _ = writeln!(out, "delete  {name}  (repository with {tags} tags; {why})");
                }
                Action::Skip(SkipReason::RecentEvents) => {
                    let _ = writeln!(
                        out,
                        "skip    {name}  (registry events pending or arrived during the pass)"
                    );
                }
                Action::Skip(SkipReason::Unreadable(cause)) => {
                    let _ = writeln!(out, "skip    {name}  (error: {cause})");
                }
                Action::Skip(SkipReason::Unconfirmed(cause)) => {
                    let _ = writeln!(out, "skip    {name}  (deletion not confirmed: {cause})");
                }
            }
        }
        let totals = self.totals();
        let _ = writeln!(
            out,
            "plan: {} repositories; create {} tags, update {}, delete {}; delete {} repositories; skip {} (events), {} (errors)",
            self.repositories.len(),
            totals.tags_created,
            totals.tags_updated,
            totals.tags_deleted,
            totals.repositories_deleted,
            totals.skipped,
            totals.errors
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_name() {
        let totals = PlanTotals {
            tags_created: 1,
            tags_updated: 2,
            tags_deleted: 3,
            repositories_deleted: 4,
            skipped: 5,
            errors: 6,
        };
        assert_eq!(
            totals.named(),
            [
                ("tags_created", 1),
                ("tags_updated", 2),
                ("tags_deleted", 3),
                ("repositories_deleted", 4),
                ("skipped", 5),
                ("errors", 6),
            ]
        );
    }

    fn write(repository: &str, tag: &str, digest: &str) -> TagWrite {
        TagWrite {
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: digest.to_string(),
            image_id: "cfg".to_string(),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            size: Some(10),
            platforms: None,
        }
    }

    fn snapshot(entries: &[(&str, &[(&str, &str)])]) -> Snapshot {
        entries
            .iter()
            .map(|(repository, tags)| {
                let tags = tags
                    .iter()
                    .map(|(tag, digest)| (tag.to_string(), digest.to_string()))
                    .collect();
                (repository.to_string(), tags)
            })
            .collect()
    }

    fn tags(repository: &str, entries: &[(&str, Option<&str>)]) -> Observed {
        Observed::Tags(
            entries
                .iter()
                .map(|(tag, digest)| {
                    let seen = match digest {
                        None => ObservedTag::Same,
                        Some(digest) => ObservedTag::Manifest(write(repository, tag, digest)),
                    };
                    (tag.to_string(), seen)
                })
                .collect(),
        )
    }

    fn observed(entries: Vec<(&str, Observed)>) -> BTreeMap<String, Observed> {
        entries
            .into_iter()
            .map(|(name, seen)| (name.to_string(), seen))
            .collect()
    }

    fn action<'a>(plan: &'a Plan, repository: &str) -> &'a Action {
        match plan
            .repositories
            .iter()
            .find(|entry| entry.repository == repository)
        {
            Some(entry) => &entry.action,
            None => panic!("{repository} is not in the plan"),
        }
    }

    fn no_busy() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn empty_registry_and_empty_database_plan_nothing() {
        let plan = plan(
            &Snapshot::new(),
            BTreeMap::new(),
            &no_busy(),
            Deletes::Missing,
        );
        assert!(plan.repositories.is_empty());
        assert_eq!(plan.totals(), PlanTotals::default());
    }

    #[test]
    fn new_repositories_create_every_tag() {
        let seen = observed(vec![
            ("app", tags("app", &[("latest", Some("sha256:a"))])),
            (
                "ns/a/b",
                tags(
                    "ns/a/b",
                    &[("v1", Some("sha256:b")), ("v2", Some("sha256:c"))],
                ),
            ),
        ]);
        let plan = plan(&Snapshot::new(), seen.clone(), &no_busy(), Deletes::Never);
        let totals = plan.totals();
        assert_eq!(totals.tags_created, 3);
        assert_eq!(totals.tags_deleted, 0);
        match action(&plan, "ns/a/b") {
            Action::Sync(changes) => {
                assert_eq!(changes.create.len(), 2);
                assert_eq!(changes.create[0].tag, "v1");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unchanged_digests_write_nothing() {
        let known = snapshot(&[("app", &[("v1", "sha256:a"), ("v2", "sha256:b")])]);
        let seen = observed(vec![(
            "app",
            tags("app", &[("v1", None), ("v2", Some("sha256:b"))]),
        )]);
        let plan = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        match action(&plan, "app") {
            Action::Sync(changes) => {
                assert!(changes.writes_nothing());
                assert_eq!(changes.unchanged, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn changed_digest_is_an_update_with_the_old_digest() {
        let known = snapshot(&[("app", &[("v1", "sha256:old")])]);
        let seen = observed(vec![("app", tags("app", &[("v1", Some("sha256:new"))]))]);
        let plan = plan(&known, seen.clone(), &no_busy(), Deletes::Never);
        match action(&plan, "app") {
            Action::Sync(changes) => {
                assert_eq!(changes.update.len(), 1);
                assert_eq!(changes.update[0].old_digest, "sha256:old");
                assert_eq!(changes.update[0].write.digest, "sha256:new");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn update_strategy_keeps_tags_missing_from_the_registry() {
        // Portus deleted these under `update`, contrary to its documentation.
        let known = snapshot(&[("app", &[("v1", "sha256:a"), ("gone", "sha256:b")])]);
        let seen = observed(vec![("app", tags("app", &[("v1", None)]))]);
        let plan = plan(&known, seen.clone(), &no_busy(), Deletes::Never);
        match action(&plan, "app") {
            Action::Sync(changes) => {
                assert!(changes.delete.is_empty());
                assert_eq!(changes.kept, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(plan.totals().tags_deleted, 0);
    }

    #[test]
    fn deleting_strategy_deletes_tags_missing_from_the_registry() {
        let known = snapshot(&[("app", &[("v1", "sha256:a"), ("gone", "sha256:b")])]);
        let seen = observed(vec![("app", tags("app", &[("v1", None)]))]);
        let plan = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        match action(&plan, "app") {
            Action::Sync(changes) => assert_eq!(changes.delete, vec!["gone".to_string()]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn repository_missing_from_catalog_deleted_only_under_deleting_strategy() {
        let known = snapshot(&[
            ("old", &[("v1", "sha256:a"), ("v2", "sha256:b")]),
            ("app", &[("v1", "sha256:c")]),
        ]);
        let seen = observed(vec![("app", tags("app", &[("v1", None)]))]);
        let deleting = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        assert_eq!(
            action(&deleting, "old"),
            &Action::Delete {
                reason: DeleteReason::MissingFromCatalog,
                tags: 2
            }
        );
        assert_eq!(deleting.totals().tags_deleted, 2);
        assert_eq!(deleting.totals().repositories_deleted, 1);
        let keeping = plan(&known, seen.clone(), &no_busy(), Deletes::Never);
        match action(&keeping, "old") {
            Action::Sync(changes) => {
                assert!(changes.writes_nothing());
                assert_eq!(changes.kept, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn emptied_repository_deleted_under_deleting_strategy() {
        // Portus conflated `null` with a failed tag list and never cleaned these up.
        let known = snapshot(&[("app", &[("v1", "sha256:a")])]);
        let seen = observed(vec![("app", Observed::NoTags)]);
        let deleting = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        assert_eq!(
            action(&deleting, "app"),
            &Action::Delete {
                reason: DeleteReason::NoTags,
                tags: 1
            }
        );
        let keeping = plan(&known, seen.clone(), &no_busy(), Deletes::Never);
        assert!(
            matches!(action(&keeping, "app"), Action::Sync(changes) if changes.writes_nothing())
        );
    }

    #[test]
    fn every_deletion_is_listed_for_confirmation_and_a_refusal_skips_its_repository() {
        let known = snapshot(&[
            ("app", &[("v1", "sha256:a"), ("gone", "sha256:b")]),
            ("empty", &[("v1", "sha256:c"), ("v2", "sha256:d")]),
            ("old", &[("v1", "sha256:e")]),
        ]);
        let seen = observed(vec![
            ("app", tags("app", &[("v1", None)])),
            ("empty", Observed::NoTags),
        ]);
        let mut plan = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        assert_eq!(
            plan.deletions(&known),
            vec![
                Deletion::Tag {
                    repository: "app".into(),
                    tag: "gone".into()
                },
                Deletion::Repository {
                    repository: "empty".into(),
                    known_tags: vec!["v1".into(), "v2".into()]
                },
                Deletion::Repository {
                    repository: "old".into(),
                    known_tags: vec!["v1".into()]
                },
            ]
        );
        plan.refuse("empty", "the registry still serves empty:v1".into());
        assert_eq!(
            action(&plan, "empty"),
            &Action::Skip(SkipReason::Unconfirmed(
                "the registry still serves empty:v1".into()
            ))
        );
        let totals = plan.totals();
        assert_eq!(totals.errors, 1);
        assert_eq!((totals.tags_deleted, totals.repositories_deleted), (2, 1));
        assert!(plan.render().contains(
            "skip    empty  (deletion not confirmed: the registry still serves empty:v1)"
        ));
        // A plan that never deletes has nothing to confirm.
        let keeping = super::plan(&known, seen.clone(), &no_busy(), Deletes::Never);
        assert!(keeping.deletions(&known).is_empty());
    }

    #[test]
    fn emptied_repository_unknown_to_the_database_is_nothing_to_do() {
        let seen = observed(vec![("app", Observed::NoTags)]);
        let plan = plan(&Snapshot::new(), seen.clone(), &no_busy(), Deletes::Missing);
        assert!(matches!(action(&plan, "app"), Action::Sync(changes) if changes.writes_nothing()));
        assert_eq!(plan.totals(), PlanTotals::default());
    }

    #[test]
    fn unreadable_repository_is_left_alone_and_counted_as_an_error() {
        // Portus deleted the tags of a repository whose tag list failed.
        let known = snapshot(&[("app", &[("v1", "sha256:a")])]);
        let seen = observed(vec![(
            "app",
            Observed::Failed("listing tags of app: boom".into()),
        )]);
        let plan = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        assert_eq!(
            action(&plan, "app"),
            &Action::Skip(SkipReason::Unreadable("listing tags of app: boom".into()))
        );
        let totals = plan.totals();
        assert_eq!(totals.errors, 1);
        assert_eq!(totals.tags_deleted, 0);
    }

    #[test]
    fn repository_with_recent_events_is_skipped_even_when_missing_from_catalog() {
        // A push during the walk creates the repository in the database after
        // the catalog was read: deleting it would undo the push.
        let known = snapshot(&[
            ("pushed", &[("v1", "sha256:a")]),
            ("app", &[("v1", "sha256:b")]),
        ]);
        let seen = observed(vec![("app", tags("app", &[("v1", Some("sha256:c"))]))]);
        let busy: BTreeSet<String> = ["pushed".to_string(), "app".to_string()].into();
        let plan = plan(&known, seen.clone(), &busy, Deletes::Missing);
        assert_eq!(
            action(&plan, "pushed"),
            &Action::Skip(SkipReason::RecentEvents)
        );
        assert_eq!(
            action(&plan, "app"),
            &Action::Skip(SkipReason::RecentEvents)
        );
        let totals = plan.totals();
        assert_eq!(totals.skipped, 2);
        assert_eq!(totals.tags_updated, 0);
    }

    #[test]
    fn safety_valve_counts_repositories_and_tags() {
        let known = snapshot(&[
            ("a", &[("v1", "sha256:1")]),
            ("b", &[("v1", "sha256:2")]),
            (
                "c",
                &[
                    ("v1", "sha256:3"),
                    ("v2", "sha256:4"),
                    ("v3", "sha256:5"),
                    ("v4", "sha256:6"),
                ],
            ),
        ]);
        // Deleting one repository of three (1 tag of 6) is within 0.5.
        let seen = observed(vec![
            ("b", tags("b", &[("v1", None)])),
            (
                "c",
                tags(
                    "c",
                    &[("v1", None), ("v2", None), ("v3", None), ("v4", None)],
                ),
            ),
        ]);
        let within = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        assert_eq!(within.exceeds_delete_fraction(&known, 0.5), None);
        // Two repositories of three is more than half.
        let seen = observed(vec![(
            "c",
            tags(
                "c",
                &[("v1", None), ("v2", None), ("v3", None), ("v4", None)],
            ),
        )]);
        let repositories = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        let reason = repositories.exceeds_delete_fraction(&known, 0.5);
        assert_eq!(
            reason.as_deref(),
            Some("the pass would delete 2 of 3 repositories, more than max_delete_fraction = 0.5")
        );
        // Four tags of six in one repository.
        let seen = observed(vec![
            ("a", tags("a", &[("v1", None)])),
            ("b", tags("b", &[("v1", None)])),
            ("c", tags("c", &[])),
        ]);
        let tags_plan = plan(&known, seen.clone(), &no_busy(), Deletes::Missing);
        assert!(tags_plan
            .exceeds_delete_fraction(&known, 0.5)
            .is_some_and(|reason| reason.contains("4 of 6 tags")));
        assert_eq!(tags_plan.exceeds_delete_fraction(&known, 1.0), None);
    }

    #[test]
    fn safety_valve_never_trips_on_an_empty_database() {
        let seen = observed(vec![("a", tags("a", &[("v1", Some("sha256:1"))]))]);
        let plan = plan(&Snapshot::new(), seen.clone(), &no_busy(), Deletes::Missing);
        assert_eq!(plan.exceeds_delete_fraction(&Snapshot::new(), 0.0), None);
    }

    #[test]
    fn render_lists_every_change_and_a_summary() {
        let known = snapshot(&[
            ("app", &[("v1", "sha256:old"), ("gone", "sha256:g")]),
            ("old", &[("v1", "sha256:o")]),
            ("busy", &[]),
            ("broken", &[]),
        ]);
        let seen = observed(vec![
            (
                "app",
                tags(
                    "app",
                    &[("v1", Some("sha256:new")), ("v2", Some("sha256:two"))],
                ),
            ),
            ("busy", tags("busy", &[("v1", Some("sha256:b"))])),
            (
                "broken",
                Observed::Failed("listing tags of broken: not found".into()),
            ),
        ]);
        let busy: BTreeSet<String> = ["busy".to_string()].into();
        let text = plan(&known, seen.clone(), &busy, Deletes::Missing).render();
        assert_eq!(
            text,
            "create  app:v2  sha256:two\n\
             update  app:v1  sha256:old -> sha256:new\n\
             delete  app:gone  (missing from the registry)\n\
             skip    broken  (error: listing tags of broken: not found)\n\
             skip    busy  (registry events pending or arrived during the pass)\n\
             delete  old  (repository with 1 tags; missing from the catalog)\n\
             plan: 4 repositories; create 1 tags, update 1, delete 2; delete 1 repositories; skip 1 (events), 1 (errors)\n"
        );
    }
}
