//! Benchmark helper (not a test): writes a docker-registry storage tree
//! directly on disk, much faster than pushing over HTTP, and the URL lists
//! the `curl -Z` floor of `scripts/bench-sync.sh` replays.
//!
//! ```text
//! gen_registry generate ROOT REPOSITORIES TAGS     # a fresh tree under ROOT/data
//! gen_registry mutate ROOT PERCENT                 # re-point PERCENT% of the tags at new manifests
//! gen_registry delete ROOT PERCENT                 # remove PERCENT% of the tags (as a tag delete does)
//! gen_registry urls ROOT BASE_URL                  # ROOT/{tags,heads,gets}.curl for curl -K
//! ```
//!
//! Repositories are `ns{k}/app{i}` (50 per namespace); every tag has its own
//! small config and an OCI or Docker schema-2 manifest (alternating), all
//! sharing one layer. Layout: registry-facts of the project's reference
//! notes; each `link` file holds `sha256:<hex>` without a newline.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["generate", root, repositories, tags] => parse(repositories)
            .and_then(|repositories| parse(tags).and_then(|tags| generate(Path::new(root), repositories, tags))),
        ["mutate", root, percent] => parse(percent).and_then(|percent| mutate(Path::new(root), percent)),
        ["delete", root, percent] => parse(percent).and_then(|percent| delete(Path::new(root), percent)),
        ["urls", root, base] => urls(Path::new(root), base),
        _ => {
            Err("usage: gen_registry generate ROOT REPOSITORIES TAGS | mutate ROOT PERCENT | delete ROOT PERCENT | urls ROOT BASE_URL".into())
        }
    };
    if let Err(error) = result {
        eprintln!("gen_registry: {error}");
        std::process::exit(2);
    }
}

type Result<T> = std::result::Result<T, String>;

fn parse(text: &str) -> Result<usize> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

fn io<T>(result: std::io::Result<T>, doing: &str) -> Result<T> {
    result.map_err(|error| format!("{doing}: {error}"))
}

fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn v2(root: &Path) -> PathBuf {
    root.join("data/docker/registry/v2")
}

fn repository_name(index: usize) -> String {
    format!("ns{}/app{}", index / 50, index)
}

/// Writes a blob once; returns its hex digest.
fn put_blob(root: &Path, bytes: &[u8]) -> Result<String> {
    let hex = hex_digest(bytes);
    let dir = v2(root).join("blobs/sha256").join(&hex[..2]).join(&hex);
    if !dir.join("data").exists() {
        io(fs::create_dir_all(&dir), "creating a blob dir")?;
        io(fs::write(dir.join("data"), bytes), "writing a blob")?;
    }
    Ok(hex)
}

fn put_link(path: &Path, hex: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        io(fs::create_dir_all(parent), "creating a link dir")?;
    }
    io(fs::write(path, format!("sha256:{hex}")), "writing a link")
}

/// Writes one tag's config and manifest and points the tag at it.
fn put_tag(
    root: &Path,
    repository: &str,
    tag: &str,
    generation: usize,
    layer: &(String, usize),
) -> Result<()> {
    let repo_dir = v2(root).join("repositories").join(repository);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"repository":"{repository}","tag":"{tag}","generation":"{generation}"}}}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        layer.0
    );
    let config_hex = put_blob(root, config.as_bytes())?;
    let oci = (repository.len() + tag.len()).is_multiple_of(2);
    let (media_type, config_type, layer_type) = if oci {
        (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    } else {
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","size":{},"digest":"sha256:{config_hex}"}},"layers":[{{"mediaType":"{layer_type}","size":{},"digest":"sha256:{}"}}]}}"#,
        config.len(),
        layer.1,
        layer.0
    );
    let manifest_hex = put_blob(root, manifest.as_bytes())?;
    put_link(
        &repo_dir
            .join("_layers/sha256")
            .join(&config_hex)
            .join("link"),
        &config_hex,
    )?;
    put_link(
        &repo_dir.join("_layers/sha256").join(&layer.0).join("link"),
        &layer.0,
    )?;
    put_link(
        &repo_dir
            .join("_manifests/revisions/sha256")
            .join(&manifest_hex)
            .join("link"),
        &manifest_hex,
    )?;
    let tag_dir = repo_dir.join("_manifests/tags").join(tag);
    put_link(&tag_dir.join("current/link"), &manifest_hex)?;
    put_link(
        &tag_dir
            .join("index/sha256")
            .join(&manifest_hex)
            .join("link"),
        &manifest_hex,
    )
}

fn shared_layer(root: &Path) -> Result<(String, usize)> {
    let layer: Vec<u8> = (0..1024u32).map(|n| (n % 251) as u8).collect();
    Ok((put_blob(root, &layer)?, layer.len()))
}

fn generate(root: &Path, repositories: usize, tags: usize) -> Result<()> {
    let layer = shared_layer(root)?;
    for index in 0..repositories {
        let repository = repository_name(index);
        for tag in 0..tags {
            put_tag(root, &repository, &format!("v{tag}"), 0, &layer)?;
        }
    }
    io(
        fs::write(root.join("shape"), format!("{repositories} {tags} 0")),
        "writing the shape",
    )?;
    println!(
        "generated {repositories} repositories x {tags} tags under {}",
        root.display()
    );
    Ok(())
}

fn shape(root: &Path) -> Result<(usize, usize, usize)> {
    let text = io(fs::read_to_string(root.join("shape")), "reading the shape")?;
    let numbers: Vec<usize> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers.as_slice() {
        [repositories, tags, generation] => Ok((*repositories, *tags, *generation)),
        _ => Err(format!("bad shape file: {text:?}")),
    }
}

/// Re-points every `100 / percent`-th tag at a new manifest.
fn mutate(root: &Path, percent: usize) -> Result<()> {
    let (repositories, tags, generation) = shape(root)?;
    let generation = generation + 1;
    let layer = shared_layer(root)?;
    let step = (100 / percent.clamp(1, 100)).max(1);
    let mut changed = 0;
    for index in 0..repositories * tags {
        if index % step == step / 2 {
            put_tag(
                root,
                &repository_name(index / tags),
                &format!("v{}", index % tags),
                generation,
                &layer,
            )?;
            changed += 1;
        }
    }
    io(
        fs::write(
            root.join("shape"),
            format!("{repositories} {tags} {generation}"),
        ),
        "writing the shape",
    )?;
    println!("re-pointed {changed} tags");
    Ok(())
}

/// Removes every `100 / percent`-th tag (others than `mutate` picks) from
/// its repository, as the registry's storage looks after the tag's manifest
/// was deleted: the tag leaves the list and its manifest answers 404.
fn delete(root: &Path, percent: usize) -> Result<()> {
    let (repositories, tags, _) = shape(root)?;
    let step = (100 / percent.clamp(1, 100)).max(1);
    let mut deleted = 0;
    for index in (0..repositories * tags).filter(|index| index % step == 0) {
        let tag_dir = v2(root)
            .join("repositories")
            .join(repository_name(index / tags))
            .join("_manifests/tags")
            .join(format!("v{}", index % tags));
        io(fs::remove_dir_all(&tag_dir), "removing a tag")?;
        deleted += 1;
    }
    println!("deleted {deleted} tags");
    Ok(())
}

/// curl config files: one tag list per repository, one HEAD and one GET per tag.
fn urls(root: &Path, base: &str) -> Result<()> {
    let (repositories, tags, _) = shape(root)?;
    // Options in a curl config apply to every URL: one Accept header (and
    // `head`) at the top, then only URLs.
    let mut tag_lists = String::new();
    let mut heads = format!("head\nheader = \"Accept: {ACCEPT}\"\n");
    let mut gets = format!("header = \"Accept: {ACCEPT}\"\n");
    for index in 0..repositories {
        let repository = repository_name(index);
        tag_lists.push_str(&format!(
            "url = \"{base}/v2/{repository}/tags/list\"\noutput = \"/dev/null\"\n"
        ));
        for tag in 0..tags {
            let url = format!("{base}/v2/{repository}/manifests/v{tag}");
            heads.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
            gets.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
        }
    }
    io(
        fs::write(root.join("tags.curl"), tag_lists),
        "writing tags.curl",
    )?;
    io(
        fs::write(root.join("heads.curl"), heads),
        "writing heads.curl",
    )?;
    io(fs::write(root.join("gets.curl"), gets), "writing gets.curl")?;
    Ok(())
}
