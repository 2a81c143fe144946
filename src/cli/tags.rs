//! `regkeeper tags [REPOSITORY]`: the tags of the configured registry as
//! the database holds them, as a table or JSON. Does not ask the registry.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::format::{format_ms, format_size, media_type_word, short_digest, write_table};
use super::{load_config_for_reading, open_store_read_only, print_out, Failure, TagsArgs};
use crate::store::TagRecord;

/// One tag in `tags --json`.
#[derive(Debug, Serialize)]
pub struct TagStatus {
    /// Full repository name.
    pub repository: String,
    /// Tag name.
    pub tag: String,
    /// Manifest digest.
    pub digest: String,
    /// Config digest without `sha256:`; empty for an index.
    pub image_id: String,
    /// Manifest media type.
    pub media_type: String,
    /// Size in bytes, when known.
    pub size: Option<i64>,
    /// Scan state: `none`, `working`, `done` or `failed`.
    pub scanned: String,
    /// Last pull, RFC 3339 UTC.
    pub pulled_at: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl From<TagRecord> for TagStatus {
    fn from(tag: TagRecord) -> TagStatus {
        TagStatus {
            scanned: tag.scanned.word().to_string(),
            pulled_at: tag.pulled_at.map(format_ms),
            created_at: format_ms(tag.created_at),
            updated_at: format_ms(tag.updated_at),
            repository: tag.repository,
            tag: tag.tag,
            digest: tag.digest,
            image_id: tag.image_id,
            media_type: tag.media_type,
            size: tag.size,
        }
    }
}

/// `tags`: the tags of the configured registry as the database holds them.
pub(super) fn tags(config_path: &Path, args: &TagsArgs) -> Result<ExitCode, Failure> {
    let config = load_config_for_reading(config_path)?;
    let store = open_store_read_only(&config)?;
    let hostname = crate::jobs::registry_hostname(&config.registry.url);
    let registry_id = store
        .find_registry(&hostname)
        .with_context(|| format!("finding the registry {hostname}"))?;
    // A registry nothing was recorded of yet has no tags.
    let tags: Vec<TagStatus> = match registry_id {
        Some(registry_id) => store
            .tags(registry_id, args.repository.as_deref())?
            .into_iter()
            .map(TagStatus::from)
            .collect(),
        None => Vec::new(),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&tags).context("writing the tags as JSON")?;
        print_out(&format!("{json}\n"))?;
    } else {
        print_out(&tags_table(&tags))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable `tags`: one line per tag, digests shortened to 12
/// hex digits (`--json` has them whole).
pub fn tags_table(tags: &[TagStatus]) -> String {
    if tags.is_empty() {
        return "no tags\n".to_string();
    }
    let header = ["REPOSITORY", "TAG", "DIGEST", "SIZE", "TYPE", "SCAN"].map(str::to_string);
    let rows: Vec<[String; 6]> = tags
        .iter()
        .map(|tag| {
            [
                tag.repository.clone(),
                tag.tag.clone(),
                short_digest(&tag.digest),
                tag.size.map_or("-".to_string(), format_size),
                media_type_word(&tag.media_type).to_string(),
                tag.scanned.clone(),
            ]
        })
        .collect();
    let mut out = String::new();
    write_table(&mut out, &header, &rows);
    out
}
