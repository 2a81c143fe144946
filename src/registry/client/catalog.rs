//! The listing endpoints: `/v2/` (ping), the catalog and tag lists, with
//! their `Link` pagination (loops refused). Requests go through
//! `handshake.rs`; nothing here handles credentials.

use std::collections::HashSet;

use super::super::auth;
use super::super::parse;
use super::super::RegistryError;
use super::send::{Answer, Method};
use super::{encode_path, Client};

impl Client {
    /// `GET /v2/`: checks the registry answers as a v2 registry
    /// (`Docker-Distribution-Api-Version: registry/2.0`).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let answer = self.request(Method::Get, self.endpoint("v2/"), None, None)?;
        match answer.header("docker-distribution-api-version") {
            Some(version) if version.to_ascii_lowercase().contains("registry/2.") => Ok(()),
            _ => Err(RegistryError::Malformed(format!(
                "{} answered /v2/ without Docker-Distribution-Api-Version: registry/2.0; is it a registry?",
                self.base
            ))),
        }
    }

    /// Every repository of the catalog, following `Link` pages of
    /// `catalog_page_size` entries.
    pub fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        self.catalog_after(None)
    }

    /// The catalog from the first repository sorting after `last` on
    /// (`?last=`, as a `Link` page continues it), or from the start.
    pub fn catalog_after(&self, last: Option<&str>) -> Result<Vec<String>, RegistryError> {
        let mut url = self.endpoint("v2/_catalog");
        url.query_pairs_mut()
            .append_pair("n", &self.catalog_page_size.to_string());
        if let Some(last) = last {
            url.query_pairs_mut().append_pair("last", last);
        }
        let mut repositories = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let answer = self.request(Method::Get, url.clone(), None, Some(auth::CATALOG_SCOPE))?;
            let page = parse::parse_catalog_page(&answer.body)
                .map_err(|error| RegistryError::Malformed(format!("{url}: {error}")))?;
            repositories.extend(page);
            match self.next_page(&answer, &mut seen)? {
                Some(next) => url = next,
                None => return Ok(repositories),
            }
        }
    }

    /// The tags of a repository (order as the registry gives it, which is
    /// none); `None` when the registry says `tags: null` (every manifest was
    /// deleted). Follows `Link` pages when the registry sends them.
    pub fn tags(&self, repository: &str) -> Result<Option<Vec<String>>, RegistryError> {
        let mut url = self.endpoint(&format!("v2/{}/tags/list", encode_path(repository)));
        let scope = auth::pull_scope(repository);
        let mut tags: Option<Vec<String>> = None;
        let mut seen = HashSet::new();
        loop {
            let answer = self.request(Method::Get, url.clone(), None, Some(&scope))?;
            let page = parse::parse_tags_page(&answer.body).map_err(|error| {
                RegistryError::Malformed(format!("tags of {repository}: {error}"))
            })?;
            if let Some(page_tags) = page {
                tags.get_or_insert_with(Vec::new).extend(page_tags);
            }
            match self.next_page(&answer, &mut seen)? {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    fn next_page(
        &self,
        answer: &Answer,
        seen: &mut HashSet<String>,
    ) -> Result<Option<url::Url>, RegistryError> {
        let Some(target) = answer.header("link").and_then(parse::next_link) else {
            return Ok(None);
        };
        let next = parse::resolve_link(&answer.url, &target).ok_or_else(|| {
            RegistryError::Malformed(format!("unusable Link target {target} on {}", answer.url))
        })?;
        if !seen.insert(next.to_string()) || next == answer.url {
            return Err(RegistryError::Malformed(format!(
                "Link pages loop at {next}"
            )));
        }
        Ok(Some(next))
    }
}
