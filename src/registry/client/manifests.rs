//! Manifests and blobs: HEAD (with the fallback to GET for registries
//! that drop `Docker-Content-Digest`), GET with the digest verified,
//! DELETE by digest, and the URLs of manifests and blobs. Requests go
//! through `handshake.rs`; nothing here handles credentials.

use std::sync::atomic::Ordering;

use super::super::auth;
use super::super::manifest::{self, Manifest, ManifestHead};
use super::super::{RegistryError, MANIFEST_MEDIA_TYPES};
use super::send::Method;
use super::{encode_path, origin, Client};

impl Client {
    /// The URL of a blob: `BASE/v2/REPOSITORY/blobs/DIGEST`, for a digest
    /// of the digest grammar only ([`manifest::is_valid_digest`]), so that a
    /// digest from a manifest cannot change the shape of the path.
    pub fn blob_url(&self, repository: &str, digest: &str) -> Result<String, RegistryError> {
        if !manifest::is_valid_digest(digest) {
            return Err(RegistryError::Malformed(format!(
                "blob digest {digest:?} of {repository} is not a valid digest (algorithm:hex)"
            )));
        }
        Ok(self
            .endpoint(&format!(
                "v2/{}/blobs/{}",
                encode_path(repository),
                encode_path(digest)
            ))
            .to_string())
    }

    /// `HEAD` of a manifest by tag or digest, with every manifest type in
    /// `Accept`: one request when the registry sends `Docker-Content-Digest`.
    ///
    /// Some registries and caching proxies drop that header. A tag is then
    /// read with GET and its digest computed from the body (sha256 of the
    /// exact bytes, checked as [`Client::manifest`] checks it), returned in
    /// [`ManifestHead::manifest`] so that the caller need not fetch it again.
    /// The first such answer is logged once; from then on this client reads
    /// tags of this registry with GET alone, one request each. A HEAD by
    /// digest needs no header: the success answer vouches for the digest.
    pub fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ManifestHead, RegistryError> {
        let by_digest = manifest::is_digest(reference);
        if by_digest || !self.omits_digest_header.load(Ordering::Relaxed) {
            let url = self.manifest_url(repository, reference);
            let scope = auth::pull_scope(repository);
            let answer = self.request(Method::Head, url, Some(&accept_header()), Some(&scope))?;
            let header_digest = answer.header("docker-content-digest");
            if manifest::head_tells_digest(reference, header_digest) {
                return manifest::parse_manifest_head(
                    repository,
                    reference,
                    header_digest,
                    answer.header("content-type"),
                    answer.header("content-length"),
                );
            }
            if !self.omits_digest_header.swap(true, Ordering::Relaxed) {
                log::info!(
                    "the registry at {} answers manifest HEAD requests without \
                     Docker-Content-Digest; reading manifests with GET to learn their digests",
                    origin(&self.base)
                );
            }
        }
        let (manifest, size) = self.fetch_manifest(repository, reference)?;
        Ok(ManifestHead {
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            size,
            manifest: Some(manifest),
        })
    }

    /// `GET` of a manifest by tag or digest, with every manifest type in
    /// `Accept`, parsed and its digest verified.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, RegistryError> {
        self.fetch_manifest(repository, reference)
            .map(|(manifest, _)| manifest)
    }

    /// [`Client::manifest`] and the size of the body in bytes.
    fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Manifest, i64), RegistryError> {
        let url = self.manifest_url(repository, reference);
        let scope = auth::pull_scope(repository);
        let answer = self.request(Method::Get, url, Some(&accept_header()), Some(&scope))?;
        let manifest = manifest::parse_manifest(
            repository,
            reference,
            answer.header("docker-content-digest"),
            answer.header("content-type"),
            &answer.body,
        )?;
        Ok((
            manifest,
            i64::try_from(answer.body.len()).unwrap_or(i64::MAX),
        ))
    }

    /// `DELETE` of a manifest by digest (202). Never retried blindly: a
    /// transport error or a 5xx is returned as is. 404 (already gone) and
    /// 405 (deletion disabled) are [`RegistryError::NotFound`] with the
    /// registry's code.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> Result<(), RegistryError> {
        let url = self.manifest_url(repository, digest);
        let scope = auth::delete_scope(repository);
        self.request(Method::Delete, url, None, Some(&scope))
            .map(|_| ())
    }

    fn manifest_url(&self, repository: &str, reference: &str) -> url::Url {
        self.endpoint(&format!(
            "v2/{}/manifests/{}",
            encode_path(repository),
            encode_path(reference)
        ))
    }
}

fn accept_header() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
}
