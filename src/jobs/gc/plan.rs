//! What a gc pass deletes, pure: from the database's tags and the job's
//! policies, per repository, which tags each policy keeps and why, which
//! digests may be deleted, and why the others stay. No I/O, no clock: `now`
//! is an argument, the children of kept indexes are handed in.
//!
//! Semantics (Harbor's "retain"): a repository no policy selects is never
//! touched; in a selected one, a tag is deleted only when no rule of any
//! policy selecting the repository keeps it. Rules count per repository.
//! A DELETE by digest removes every tag on that digest, so a digest is
//! deleted only when every tag on it is to be deleted; the others are
//! kept "for the digest". A manifest a kept index of the repository lists
//! is never deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::config::GcPolicy;

/// One tag as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFacts {
    /// Tag name.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Push time (the first push event or sync that saw it), ms.
    pub pushed_at: i64,
    /// Last pull, ms; None when no pull is recorded.
    pub pulled_at: Option<i64>,
}

/// What happens to one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept by these rules (`policy: rule`), each listed.
    Keep(Vec<String>),
    /// Deleted with its digest; why no rule kept it.
    Delete(String),
    /// No rule keeps it, but its digest carries these kept tags.
    KeptForDigest(Vec<String>),
    /// No rule keeps it, but the kept index at this digest lists it.
    KeptAsIndexChild(String),
}

/// One tag and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDecision {
    /// The tag.
    pub facts: TagFacts,
    /// What happens to it.
    pub verdict: Verdict,
}

/// One selected repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPlan {
    /// Full name.
    pub repository: String,
    /// The policies that select it.
    pub policies: Vec<String>,
    /// Its tags, newest push first.
    pub tags: Vec<TagDecision>,
}

impl RepositoryPlan {
    /// The digests to delete, indexes first (an index goes before the
    /// manifests it lists), each once.
    pub fn delete_digests(&self) -> Vec<String> {
        let mut digests: Vec<(bool, String)> = Vec::new();
        for decision in &self.tags {
            if matches!(decision.verdict, Verdict::Delete(_))
                && !digests
                    .iter()
                    .any(|(_, digest)| *digest == decision.facts.digest)
            {
                let is_index = crate::registry::media_type::INDEXES
                    .contains(&decision.facts.media_type.as_str());
                digests.push((!is_index, decision.facts.digest.clone()));
            }
        }
        digests.sort_by_key(|(is_image, _)| *is_image);
        digests.into_iter().map(|(_, digest)| digest).collect()
    }

    /// Kept digests that are image indexes: their children must stay.
    pub fn kept_indexes(&self) -> BTreeSet<String> {
        self.tags
            .iter()
            .filter(|decision| !matches!(decision.verdict, Verdict::Delete(_)))
            .filter(|decision| {
                crate::registry::media_type::INDEXES.contains(&decision.facts.media_type.as_str())
            })
            .map(|decision| decision.facts.digest.clone())
            .collect()
    }

    /// Keeps every tag on a digest that the kept index `index` lists.
    pub fn protect_children(&mut self, index: &str, children: &BTreeSet<String>) {
        for decision in &mut self.tags {
            if matches!(decision.verdict, Verdict::Delete(_))
                && children.contains(&decision.facts.digest)
            {
                decision.verdict = Verdict::KeptAsIndexChild(index.to_string());
            }
        }
    }

    /// Keeps every tag of the repository that was to be deleted: `reason`
    /// says why the repository is left alone.
    pub fn keep_all(&mut self, reason: &str) {
        for decision in &mut self.tags {
            if matches!(decision.verdict, Verdict::Delete(_)) {
                decision.verdict = Verdict::Keep(vec![reason.to_string()]);
            }
        }
    }
}

/// The plan of one pass: the selected repositories, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every repository some policy selects.
    pub repositories: Vec<RepositoryPlan>,
}

/// Counts of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTotals {
    /// Tags of the selected repositories.
    pub tags_selected: usize,
    /// Tags kept by a rule.
    pub tags_kept: usize,
    /// Tags to delete.
    pub tags_deleted: usize,
    /// Digests to delete.
    pub digests_deleted: usize,
    /// Tags kept because their digest carries a kept tag.
    pub kept_for_digest: usize,
    /// Tags kept because a kept index lists their digest.
    pub kept_as_index_child: usize,
}

impl Plan {
    /// The plan's counts.
    pub fn totals(&self) -> PlanTotals {
        let mut totals = PlanTotals::default();
        for repository in &self.repositories {
            totals.tags_selected += repository.tags.len();
            totals.digests_deleted += repository.delete_digests().len();
            for decision in &repository.tags {
                match decision.verdict {
                    Verdict::Keep(_) => totals.tags_kept += 1,
                    Verdict::Delete(_) => totals.tags_deleted += 1,
                    Verdict::KeptForDigest(_) => totals.kept_for_digest += 1,
                    Verdict::KeptAsIndexChild(_) => totals.kept_as_index_child += 1,
                }
            }
        }
        totals
    }

    /// Why the plan deletes too much: more than `fraction` of the tags
    /// its policies select. None when it is within the valve.
    pub fn exceeds_delete_fraction(&self, fraction: f64) -> Option<String> {
        let totals = self.totals();
        if totals.tags_deleted == 0 {
            return None;
        }
        let share = totals.tags_deleted as f64 / totals.tags_selected as f64;
        (share > fraction).then(|| {
            format!(
                "the pass would delete {} of the {} tags its policies select ({:.0}%, more than max_delete_fraction {fraction})",
                totals.tags_deleted,
                totals.tags_selected,
                share * 100.0
            )
        })
    }

    /// The plan for people: per repository each tag, what happens to it
    /// and why, then a summary line.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for repository in &self.repositories {
            let _ = writeln!(
                text,
                "{} (policies: {})",
                repository.repository,
                repository.policies.join(", ")
            );
            for decision in &repository.tags {
                let short = short_digest(&decision.facts.digest);
                let tag = &decision.facts.tag;
                let _ = match &decision.verdict {
                    Verdict::Keep(rules) => {
                        writeln!(text, "  keep   {tag} ({short}): {}", rules.join("; "))
                    }
                    Verdict::Delete(why) => writeln!(text, "  delete {tag} ({short}): {why}"),
                    Verdict::KeptForDigest(tags) => writeln!(
                        text,
                        "  keep   {tag} ({short}): no rule keeps it, but its digest also carries {} (a DELETE by digest would remove them too)",
                        tags.join(", ")
                    ),
                    Verdict::KeptAsIndexChild(index) => writeln!(
                        text,
                        "  keep   {tag} ({short}): no rule keeps it, but the kept index {} lists it",
                        short_digest(index)
                    ),
                };
            }
        }
        let totals = self.totals();
        let _ = writeln!(
            text,
            "{} repositories selected, {} tags: {} kept by a rule, {} kept for their digest, {} kept as index children, {} to delete ({} digests)",
            self.repositories.len(),
            totals.tags_selected,
            totals.tags_kept,
            totals.kept_for_digest,
            totals.kept_as_index_child,
            totals.tags_deleted,
            totals.digests_deleted
        );
        text
    }
}

/// `sha256:` and the first 12 hex digits.
fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// A duration as the configuration writes it, e.g. `30days`.
fn written(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `1st`, `2nd`, `3rd`, `4th`, ...
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Plans a pass over `tags` (full repository name to its tags) at `now`
/// (ms): the verdict of every tag of every selected repository, before the
/// children of kept indexes are known ([`RepositoryPlan::protect_children`]).
pub fn plan(policies: &[GcPolicy], tags: &BTreeMap<String, Vec<TagFacts>>, now: i64) -> Plan {
    let mut plan = Plan::default();
    for (repository, repository_tags) in tags {
        let selecting: Vec<&GcPolicy> = policies
            .iter()
            .filter(|policy| policy.selects(repository))
            .collect();
        if selecting.is_empty() {
            continue;
        }
        let mut sorted = repository_tags.clone();
        // Newest push first; equal times by name, so that a plan is the
        // same every time.
        sorted.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.tag.cmp(&b.tag)));
        let mut decisions: Vec<TagDecision> = sorted
            .into_iter()
            .enumerate()
            .map(|(rank, facts)| {
                let mut keeps = Vec::new();
                let mut misses = Vec::new();
                for policy in &selecting {
                    let (kept, missed) = judge(policy, &facts, rank, now);
                    keeps.extend(
                        kept.into_iter()
                            .map(|rule| format!("{}: {rule}", policy.name)),
                    );
                    misses.push(format!("{}: {}", policy.name, missed.join(", ")));
                }
                let verdict = if keeps.is_empty() {
                    Verdict::Delete(misses.join("; "))
                } else {
                    Verdict::Keep(keeps)
                };
                TagDecision { facts, verdict }
            })
            .collect();
        // Digest safety: a digest goes only with all of its tags.
        let mut kept_on_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for decision in &decisions {
            if let Verdict::Keep(_) = decision.verdict {
                kept_on_digest
                    .entry(decision.facts.digest.clone())
                    .or_default()
                    .push(decision.facts.tag.clone());
            }
        }
        for decision in &mut decisions {
            if let Verdict::Delete(_) = decision.verdict {
                if let Some(kept) = kept_on_digest.get(&decision.facts.digest) {
                    decision.verdict = Verdict::KeptForDigest(kept.clone());
                }
            }
        }
        plan.repositories.push(RepositoryPlan {
            repository: repository.clone(),
            policies: selecting.iter().map(|policy| policy.name.clone()).collect(),
            tags: decisions,
        });
    }
    plan
}

/// The rules of `policy` that keep the tag at `rank` (0: newest), and why
/// each of the others does not.
fn judge(policy: &GcPolicy, facts: &TagFacts, rank: usize, now: i64) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut missed = Vec::new();
    if let Some(latest) = policy.keep_latest {
        if rank < latest as usize {
            kept.push(format!(
                "keep_latest {latest} ({} newest)",
                ordinal(rank + 1)
            ));
        } else {
            missed.push(format!(
                "beyond keep_latest {latest} ({} newest)",
                ordinal(rank + 1)
            ));
        }
    }
    if let Some(within) = policy.keep_pushed_within {
        let within_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(facts.pushed_at) <= within_ms {
            kept.push(format!("keep_pushed_within {}", written(within)));
        } else {
            missed.push(format!("pushed more than {} ago", written(within)));
        }
    }
    if let Some(within) = policy.keep_pulled_within {
        let within_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        match facts.pulled_at {
            Some(pulled_at) if now.saturating_sub(pulled_at) <= within_ms => {
                kept.push(format!("keep_pulled_within {}", written(within)));
            }
            Some(_) => missed.push(format!("not pulled within {}", written(within))),
            None => missed.push("no pull recorded".to_string()),
        }
    }
    if !policy.keep_tags.is_empty() {
        match policy
            .keep_tags
            .iter()
            .find(|pattern| pattern.matches(&facts.tag))
        {
            Some(pattern) => kept.push(format!("keep_tags {pattern}")),
            None => missed.push("matches no keep_tags".to_string()),
        }
    }
    (kept, missed)
}

#[cfg(test)]
mod tests;
