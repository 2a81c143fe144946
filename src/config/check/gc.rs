//! The keys of a `gc` job: `max_delete_fraction` and its
//! `[[jobs.NAME.policy]]` tables (repository patterns, exclusions and the
//! keep rules). Errors name the job, the policy (`policy[N]`, 1-based) and
//! the key.

use toml::Spanned;

use super::{Checker, Positive, Scope};
use crate::config::model::GC_MAX_DELETE_FRACTION;
use crate::config::raw::{RawJob, RawPolicy};
use crate::config::{GcOptions, GcPolicy, Glob};

impl Checker<'_> {
    /// The keys of a `gc` job: at least one policy.
    pub(super) fn gc_options(
        &self,
        name: &Spanned<String>,
        job: &RawJob,
    ) -> anyhow::Result<GcOptions> {
        let scope = Scope::Job(name.get_ref());
        let policies = match &job.policy {
            Some(policies) if !policies.get_ref().is_empty() => policies,
            _ => {
                return Err(self.error(
                    &name.span(),
                    scope,
                    "a gc job needs at least one [[jobs.NAME.policy]] table (repositories and what to keep)",
                ))
            }
        };
        let mut checked = Vec::new();
        for (index, policy) in policies.get_ref().iter().enumerate() {
            checked.push(self.policy(scope, index + 1, policy)?);
        }
        Ok(GcOptions {
            policies: checked,
            max_delete_fraction: self.fraction_or(
                job.max_delete_fraction.as_ref(),
                scope,
                "max_delete_fraction",
                GC_MAX_DELETE_FRACTION,
            )?,
        })
    }

    /// One `[[jobs.NAME.policy]]`, number `number` in file order.
    fn policy(
        &self,
        scope: Scope<'_>,
        number: usize,
        raw: &Spanned<RawPolicy>,
    ) -> anyhow::Result<GcPolicy> {
        let policy = raw.get_ref();
        let key = |key: &str| format!("policy[{number}].{key}");
        let name = match &policy.name {
            None => format!("policy {number}"),
            Some(value) if value.get_ref().trim().is_empty() => {
                return Err(self.error(
                    &value.span(),
                    scope,
                    format!("{}: empty name", key("name")),
                ))
            }
            Some(value) => value.get_ref().clone(),
        };
        let Some(repositories) = &policy.repositories else {
            return Err(self.error(
                &raw.span(),
                scope,
                format!(
                    "{} is required (glob patterns such as [\"ci/**\"]; a policy touches only the repositories it names)",
                    key("repositories")
                ),
            ));
        };
        let repositories = self.globs(repositories, scope, &key("repositories"))?;
        if repositories.is_empty() {
            return Err(self.error(
                &policy
                    .repositories
                    .as_ref()
                    .map_or(raw.span(), Spanned::span),
                scope,
                format!(
                    "{}: the list is empty, so the policy selects nothing",
                    key("repositories")
                ),
            ));
        }
        let exclude = match &policy.exclude {
            None => Vec::new(),
            Some(values) => self.globs(values, scope, &key("exclude"))?,
        };
        let keep_latest = match &policy.keep_latest {
            None => None,
            Some(_) => Some(self.integer_or(
                policy.keep_latest.as_ref(),
                scope,
                &key("keep_latest"),
                1,
                1..=1_000_000,
            )? as u32),
        };
        let keep_pushed_within = self.optional_duration(
            policy.keep_pushed_within.as_ref(),
            scope,
            &key("keep_pushed_within"),
            Positive::Yes,
        )?;
        let keep_pulled_within = self.optional_duration(
            policy.keep_pulled_within.as_ref(),
            scope,
            &key("keep_pulled_within"),
            Positive::Yes,
        )?;
        let keep_tags = match &policy.keep_tags {
            None => Vec::new(),
            Some(values) => self.globs(values, scope, &key("keep_tags"))?,
        };
        if keep_latest.is_none()
            && keep_pushed_within.is_none()
            && keep_pulled_within.is_none()
            && keep_tags.is_empty()
        {
            return Err(self.error(
                &raw.span(),
                scope,
                format!(
                    "policy[{number}] ({name}) has no keep rule, so it would delete every tag it selects; give at least one of keep_latest, keep_pushed_within, keep_pulled_within or keep_tags"
                ),
            ));
        }
        Ok(GcPolicy {
            name,
            repositories,
            exclude,
            keep_latest,
            keep_pushed_within,
            keep_pulled_within,
            keep_tags,
        })
    }

    /// A list of glob patterns.
    fn globs(
        &self,
        values: &Spanned<Vec<Spanned<String>>>,
        scope: Scope<'_>,
        key: &str,
    ) -> anyhow::Result<Vec<Glob>> {
        values
            .get_ref()
            .iter()
            .map(|value| {
                Glob::new(value.get_ref()).map_err(|problem| {
                    self.error(
                        &value.span(),
                        scope,
                        format!("{key}: pattern {:?}: {problem}", value.get_ref()),
                    )
                })
            })
            .collect()
    }
}
