//! The rows above the tags: `registries`, `namespaces` and `repositories`,
//! inside the caller's transaction. A full repository name (`app`, `ns/app`,
//! `ns/a/b`) is split here at its first `/` into namespace and name, and
//! joined back; repositories are found, created with their namespace when
//! missing, and deleted once they hold no tag. Built on `rows.rs` only: no
//! tag, event or scan SQL lives here, and nothing here opens a transaction.

use super::rows::{int, single, text, txt};
use super::{Conn, Value};

/// Splits a full repository name into its namespace segment and the rest:
/// `ns/a/b` -> (`ns`, `a/b`); `app` -> (`""`, `app`), the global namespace.
pub(super) fn split_repository(full_name: &str) -> anyhow::Result<(&str, &str)> {
    let (namespace, name) = full_name.split_once('/').unwrap_or(("", full_name));
    if name.is_empty() || (full_name.contains('/') && namespace.is_empty()) {
        anyhow::bail!("invalid repository name {full_name:?}");
    }
    Ok((namespace, name))
}

/// Joins a namespace and a repository name back into the full name.
pub(super) fn join_repository(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The id of the registry row for `hostname`, creating it and its global
/// namespace when missing: [`super::Store::ensure_registry`].
pub(super) fn ensure_registry(
    conn: &mut dyn Conn,
    hostname: &str,
    now: i64,
) -> anyhow::Result<i64> {
    conn.execute(
        "INSERT INTO registries (name, hostname, created_at, updated_at) VALUES ($1, $1, $2, $2) \
         ON CONFLICT (hostname) DO NOTHING",
        &[txt(hostname), Value::Int(now)],
    )?;
    let rows = conn.query(
        "SELECT id FROM registries WHERE hostname = $1",
        &[txt(hostname)],
    )?;
    let registry_id = int(&single(rows, "the registry")?, 0)?;
    ensure_namespace(conn, registry_id, "", now)?;
    Ok(registry_id)
}

/// The id of the registry row for `hostname`, if there is one. Reads only.
pub(super) fn find_registry(conn: &mut dyn Conn, hostname: &str) -> anyhow::Result<Option<i64>> {
    let rows = conn.query(
        "SELECT id FROM registries WHERE hostname = $1",
        &[txt(hostname)],
    )?;
    rows.first().map(|row| int(row, 0)).transpose()
}

/// The id of a namespace, creating it when missing.
fn ensure_namespace(
    conn: &mut dyn Conn,
    registry_id: i64,
    namespace: &str,
    now: i64,
) -> anyhow::Result<i64> {
    conn.execute(
        "INSERT INTO namespaces (registry_id, name, global, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (registry_id, name) DO NOTHING",
        &[Value::Int(registry_id), txt(namespace), Value::Int(namespace.is_empty().into()), Value::Int(now)],
    )?;
    let rows = conn.query(
        "SELECT id FROM namespaces WHERE registry_id = $1 AND name = $2",
        &[Value::Int(registry_id), txt(namespace)],
    )?;
    int(&single(rows, "the namespace")?, 0)
}

/// The id of a repository by full name, if it exists.
pub(super) fn find_repository(
    conn: &mut dyn Conn,
    registry_id: i64,
    full_name: &str,
) -> anyhow::Result<Option<i64>> {
    let (namespace, name) = split_repository(full_name)?;
    let rows = conn.query(
        "SELECT r.id FROM repositories r JOIN namespaces n ON n.id = r.namespace_id \
         WHERE n.registry_id = $1 AND n.name = $2 AND r.name = $3",
        &[Value::Int(registry_id), txt(namespace), txt(name)],
    )?;
    rows.first().map(|row| int(row, 0)).transpose()
}

/// The id of a repository, creating it (and its namespace) when missing.
pub(super) fn ensure_repository(
    conn: &mut dyn Conn,
    registry_id: i64,
    full_name: &str,
    now: i64,
) -> anyhow::Result<i64> {
    let (namespace, name) = split_repository(full_name)?;
    let namespace_id = ensure_namespace(conn, registry_id, namespace, now)?;
    conn.execute(
        "INSERT INTO repositories (namespace_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (namespace_id, name) DO NOTHING",
        &[Value::Int(namespace_id), txt(name), Value::Int(now)],
    )?;
    let rows = conn.query(
        "SELECT id FROM repositories WHERE namespace_id = $1 AND name = $2",
        &[Value::Int(namespace_id), txt(name)],
    )?;
    int(&single(rows, "the repository")?, 0)
}

/// Deletes a repository that has no tags left; returns whether it did.
pub(super) fn delete_repository_if_empty(
    conn: &mut dyn Conn,
    repository_id: i64,
) -> anyhow::Result<bool> {
    let deleted = conn.execute(
        "DELETE FROM repositories WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM tags WHERE repository_id = $1)",
        &[Value::Int(repository_id)],
    )?;
    Ok(deleted > 0)
}

/// Full names of the registry's repositories, sorted:
/// [`super::Store::repositories`].
pub(super) fn names(conn: &mut dyn Conn, registry_id: i64) -> anyhow::Result<Vec<String>> {
    let rows = conn.query(
        "SELECT n.name, r.name FROM repositories r JOIN namespaces n ON n.id = r.namespace_id \
         WHERE n.registry_id = $1",
        &[Value::Int(registry_id)],
    )?;
    // Sorted here, not in SQL: collations differ between databases.
    let mut names = rows
        .iter()
        .map(|row| Ok(join_repository(&text(row, 0)?, &text(row, 1)?)))
        .collect::<anyhow::Result<Vec<String>>>()?;
    names.sort();
    Ok(names)
}

/// How many repositories there are, of every registry.
pub(super) fn count(conn: &mut dyn Conn) -> anyhow::Result<i64> {
    int(
        &single(
            conn.query("SELECT COUNT(*) FROM repositories", &[])?,
            "the count",
        )?,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_repository_names_at_the_first_slash() {
        assert_eq!(split_repository("app").unwrap(), ("", "app"));
        assert_eq!(split_repository("ns/app").unwrap(), ("ns", "app"));
        assert_eq!(split_repository("a/b/c").unwrap(), ("a", "b/c"));
        assert!(split_repository("").is_err());
        assert!(split_repository("/app").is_err());
        assert!(split_repository("ns/").is_err());
    }

    #[test]
    fn joins_repository_names_back() {
        for full_name in ["app", "ns/app", "a/b/c"] {
            let (namespace, name) = split_repository(full_name).unwrap();
            assert_eq!(join_repository(namespace, name), full_name);
        }
    }
}
