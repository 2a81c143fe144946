use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::config::{GcPolicy, Glob};

const DAY: i64 = 24 * 3600 * 1000;
const NOW: i64 = 100 * DAY;

fn globs(patterns: &[&str]) -> Vec<Glob> {
    patterns
        .iter()
        .map(|pattern| Glob::new(pattern).expect("pattern"))
        .collect()
}

fn policy(name: &str, repositories: &[&str]) -> GcPolicy {
    GcPolicy {
        name: name.to_string(),
        repositories: globs(repositories),
        exclude: Vec::new(),
        keep_latest: None,
        keep_pushed_within: None,
        keep_pulled_within: None,
        keep_tags: Vec::new(),
    }
}

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// A tag pushed `age_days` ago with digest number `digest_n`.
fn tag(name: &str, digest_n: u32, age_days: i64) -> TagFacts {
    TagFacts {
        tag: name.to_string(),
        digest: digest(digest_n),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        pushed_at: NOW - age_days * DAY,
        pulled_at: None,
    }
}

fn store(repositories: &[(&str, Vec<TagFacts>)]) -> BTreeMap<String, Vec<TagFacts>> {
    repositories
        .iter()
        .map(|(name, tags)| (name.to_string(), tags.clone()))
        .collect()
}

/// The tags to delete, `repository:tag`, sorted.
fn deleted(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = plan
        .repositories
        .iter()
        .flat_map(|repository| {
            repository
                .tags
                .iter()
                .filter(|decision| matches!(decision.verdict, Verdict::Delete(_)))
                .map(|decision| format!("{}:{}", repository.repository, decision.facts.tag))
        })
        .collect();
    names.sort();
    names
}

fn verdict<'a>(plan: &'a Plan, repository: &str, tag: &str) -> &'a Verdict {
    &plan
        .repositories
        .iter()
        .find(|entry| entry.repository == repository)
        .expect("repository")
        .tags
        .iter()
        .find(|decision| decision.facts.tag == tag)
        .expect("tag")
        .verdict
}

#[test]
fn keep_latest_keeps_the_newest_by_push_time() {
    let mut latest = policy("ci", &["app"]);
    latest.keep_latest = Some(2);
    let tags = store(&[(
        "app",
        vec![tag("old", 1, 30), tag("new", 2, 1), tag("mid", 3, 10)],
    )]);
    let plan = plan(&[latest], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:old"]);
    assert_eq!(
        verdict(&plan, "app", "new"),
        &Verdict::Keep(vec!["ci: keep_latest 2 (1st newest)".to_string()])
    );
    assert_eq!(
        verdict(&plan, "app", "old"),
        &Verdict::Delete("ci: beyond keep_latest 2 (3rd newest)".to_string())
    );
}

/// Portus counted `keep_latest` over every tag of the database (#2330):
/// a busy repository made a quiet one lose its only tags.
#[test]
fn keep_latest_counts_per_repository_not_over_the_database() {
    let mut latest = policy("all", &["**"]);
    latest.keep_latest = Some(2);
    let busy: Vec<TagFacts> = (0..10)
        .map(|n| tag(&format!("b{n}"), n, i64::from(n)))
        .collect();
    let tags = store(&[
        ("busy", busy),
        ("quiet", vec![tag("only", 100, 300), tag("other", 101, 200)]),
    ]);
    let plan = plan(&[latest], &tags, NOW);
    let deleted = deleted(&plan);
    assert_eq!(deleted.len(), 8);
    assert!(deleted.iter().all(|name| name.starts_with("busy:")));
}

#[test]
fn keep_pushed_within_keeps_recent_pushes() {
    let mut recent = policy("p", &["app"]);
    recent.keep_pushed_within = Some(Duration::from_secs(30 * 24 * 3600));
    let tags = store(&[("app", vec![tag("fresh", 1, 29), tag("stale", 2, 31)])]);
    let plan = plan(&[recent], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:stale"]);
    assert_eq!(
        verdict(&plan, "app", "stale"),
        &Verdict::Delete("p: pushed more than 30days ago".to_string())
    );
}

#[test]
fn keep_pulled_within_keeps_recent_pulls_and_says_when_no_pull_is_known() {
    let mut pulled = policy("p", &["app"]);
    pulled.keep_pulled_within = Some(Duration::from_secs(7 * 24 * 3600));
    let mut used = tag("used", 1, 90);
    used.pulled_at = Some(NOW - 2 * DAY);
    let mut long_ago = tag("long-ago", 2, 90);
    long_ago.pulled_at = Some(NOW - 20 * DAY);
    let tags = store(&[("app", vec![used, long_ago, tag("never", 3, 90)])]);
    let plan = plan(&[pulled], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:long-ago", "app:never"]);
    assert_eq!(
        verdict(&plan, "app", "never"),
        &Verdict::Delete("p: no pull recorded".to_string())
    );
    assert_eq!(
        verdict(&plan, "app", "long-ago"),
        &Verdict::Delete("p: not pulled within 7days".to_string())
    );
}

#[test]
fn keep_tags_keeps_matching_names() {
    let mut named = policy("p", &["app"]);
    named.keep_tags = globs(&["latest", "v*"]);
    let tags = store(&[(
        "app",
        vec![
            tag("latest", 1, 90),
            tag("v1.2", 2, 90),
            tag("build-7", 3, 90),
        ],
    )]);
    let plan = plan(&[named], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:build-7"]);
    assert_eq!(
        verdict(&plan, "app", "v1.2"),
        &Verdict::Keep(vec!["p: keep_tags v*".to_string()])
    );
}

#[test]
fn rules_of_one_policy_combine_any_rule_keeps() {
    let mut combined = policy("p", &["app"]);
    combined.keep_latest = Some(1);
    combined.keep_tags = globs(&["release-*"]);
    combined.keep_pushed_within = Some(Duration::from_secs(5 * 24 * 3600));
    let tags = store(&[(
        "app",
        vec![
            tag("newest", 1, 1),
            tag("recent", 2, 3),
            tag("release-1", 3, 60),
            tag("old", 4, 60),
        ],
    )]);
    let plan = plan(&[combined], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:old"]);
    assert_eq!(
        verdict(&plan, "app", "old"),
        &Verdict::Delete(
            "p: beyond keep_latest 1 (3rd newest), pushed more than 5days ago, matches no keep_tags"
                .to_string()
        )
    );
    assert_eq!(
        verdict(&plan, "app", "newest"),
        &Verdict::Keep(vec![
            "p: keep_latest 1 (1st newest)".to_string(),
            "p: keep_pushed_within 5days".to_string()
        ])
    );
}

#[test]
fn a_tag_any_selecting_policy_keeps_survives() {
    let mut few = policy("few", &["team/**"]);
    few.keep_latest = Some(1);
    let mut named = policy("named", &["team/app"]);
    named.keep_tags = globs(&["stable"]);
    let tags = store(&[
        (
            "team/app",
            vec![tag("new", 1, 1), tag("stable", 2, 50), tag("x", 3, 60)],
        ),
        ("team/db", vec![tag("new", 4, 1), tag("stable", 5, 50)]),
    ]);
    let plan = plan(&[few, named], &tags, NOW);
    assert_eq!(deleted(&plan), ["team/app:x", "team/db:stable"]);
}

#[test]
fn repositories_no_policy_selects_are_not_in_the_plan() {
    let mut ci = policy("ci", &["ci/*"]);
    ci.exclude = globs(&["ci/keep"]);
    ci.keep_latest = Some(1);
    let tags = store(&[
        ("ci/app", vec![tag("a", 1, 1), tag("b", 2, 2)]),
        ("ci/keep", vec![tag("a", 3, 1), tag("b", 4, 2)]),
        ("ci/deep/app", vec![tag("a", 5, 1), tag("b", 6, 2)]),
        ("prod", vec![tag("a", 7, 1), tag("b", 8, 2)]),
    ]);
    let plan = plan(&[ci], &tags, NOW);
    let names: Vec<&str> = plan
        .repositories
        .iter()
        .map(|entry| entry.repository.as_str())
        .collect();
    assert_eq!(names, ["ci/app"]);
    assert_eq!(deleted(&plan), ["ci/app:b"]);
}

/// Portus deleted by digest and took re-tags such as `latest` with it
/// (#2238).
#[test]
fn a_retag_sharing_its_digest_with_a_kept_tag_is_kept() {
    let mut named = policy("p", &["app"]);
    named.keep_tags = globs(&["latest"]);
    let tags = store(&[(
        "app",
        vec![
            tag("latest", 1, 90),
            tag("build-1", 1, 90),
            tag("build-0", 2, 95),
        ],
    )]);
    let plan = plan(&[named], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:build-0"]);
    assert_eq!(
        verdict(&plan, "app", "build-1"),
        &Verdict::KeptForDigest(vec!["latest".to_string()])
    );
    assert_eq!(plan.repositories[0].delete_digests(), [digest(2)]);
    let totals = plan.totals();
    assert_eq!(
        (
            totals.tags_deleted,
            totals.digests_deleted,
            totals.kept_for_digest
        ),
        (1, 1, 1)
    );
}

#[test]
fn tags_sharing_a_deleted_digest_go_with_one_delete() {
    let mut latest = policy("p", &["app"]);
    latest.keep_latest = Some(1);
    let tags = store(&[(
        "app",
        vec![tag("new", 1, 1), tag("a", 2, 10), tag("b", 2, 10)],
    )]);
    let plan = plan(&[latest], &tags, NOW);
    assert_eq!(deleted(&plan), ["app:a", "app:b"]);
    assert_eq!(plan.repositories[0].delete_digests(), [digest(2)]);
}

#[test]
fn children_of_a_kept_index_are_kept_and_indexes_are_deleted_first() {
    let mut named = policy("p", &["app"]);
    named.keep_tags = globs(&["multi"]);
    let mut multi = tag("multi", 1, 50);
    multi.media_type = "application/vnd.oci.image.index.v1+json".to_string();
    let mut old_index = tag("old-multi", 4, 60);
    old_index.media_type = multi.media_type.clone();
    let tags = store(&[(
        "app",
        vec![multi, tag("amd64", 2, 50), tag("stray", 3, 50), old_index],
    )]);
    let mut plan = plan(&[named], &tags, NOW);
    let repository = &mut plan.repositories[0];
    assert_eq!(repository.kept_indexes(), BTreeSet::from([digest(1)]));
    repository.protect_children(&digest(1), &BTreeSet::from([digest(2)]));
    assert_eq!(
        verdict(&plan, "app", "amd64"),
        &Verdict::KeptAsIndexChild(digest(1))
    );
    assert_eq!(
        plan.repositories[0].delete_digests(),
        [digest(4), digest(3)]
    );
}

#[test]
fn the_valve_counts_the_tags_the_policies_select() {
    let mut latest = policy("p", &["app"]);
    latest.keep_latest = Some(1);
    let tags = store(&[
        ("app", vec![tag("a", 1, 1), tag("b", 2, 2), tag("c", 3, 3)]),
        (
            "other",
            (0..20).map(|n| tag(&format!("t{n}"), 10 + n, 1)).collect(),
        ),
    ]);
    let plan = plan(&[latest], &tags, NOW);
    assert_eq!(
        plan.exceeds_delete_fraction(0.5).as_deref(),
        Some("the pass would delete 2 of the 3 tags its policies select (67%, more than max_delete_fraction 0.5)")
    );
    assert_eq!(plan.exceeds_delete_fraction(0.7), None);
}

#[test]
fn render_names_each_tag_its_fate_and_the_rule() {
    let mut named = policy("p", &["app"]);
    named.keep_tags = globs(&["latest"]);
    let tags = store(&[(
        "app",
        vec![tag("latest", 1, 90), tag("re", 1, 90), tag("old", 2, 95)],
    )]);
    assert_eq!(
        plan(&[named], &tags, NOW).render(),
        "app (policies: p)\n  \
         keep   latest (sha256:000000000000): p: keep_tags latest\n  \
         keep   re (sha256:000000000000): no rule keeps it, but its digest also carries latest (a DELETE by digest would remove them too)\n  \
         delete old (sha256:000000000000): p: matches no keep_tags\n\
         1 repositories selected, 3 tags: 1 kept by a rule, 1 kept for their digest, 0 kept as index children, 1 to delete (1 digests)\n"
    );
}
