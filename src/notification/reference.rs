//! The distribution grammar of the names an event carries: repository
//! names, tags and digests, checked before an event is stored or used.
//!
//! Every one of them ends up in a URL path (`/v2/NAME/manifests/DIGEST`),
//! and a URL parser resolves `..` segments: a name like
//! `../../../admin/secret` would send the registry credentials to
//! `/admin/secret/...`. A name, tag or digest this grammar accepts has no
//! `.` or `..` segment and no `%`, `?`, `#`, `\` or control character, so
//! the path stays under `/v2/NAME/` as written. Pure functions on `&str`;
//! nothing here allocates.
//!
//! The grammar is distribution's `reference` package:
//! - name: `path-component ("/" path-component)*`, at most 255 bytes, where
//!   `path-component ::= [a-z0-9]+ (separator [a-z0-9]+)*` and
//!   `separator ::= "." | "_" | "__" | "-"+` (docker-registry accepts
//!   `a__b` and `a--b`, so the separator is not just one of `._-`);
//! - tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
//! - digest: the OCI form `algorithm ":" encoded`, where
//!   `algorithm ::= [a-z0-9]+ ([+._-] [a-z0-9]+)*` and
//!   `encoded ::= [A-Za-z0-9=_-]+` (`sha256:` and 64 lowercase hex digits
//!   is one instance). The length each algorithm gives its encoded part is
//!   left to the registry, which answers a digest it does not hold with
//!   404; what matters here is that a digest cannot leave its segment.

/// Longest repository name distribution accepts, in bytes.
pub const NAME_MAX_LENGTH: usize = 255;

/// Longest tag distribution accepts, in bytes.
pub const TAG_MAX_LENGTH: usize = 128;

/// Whether `name` is a repository name of the distribution grammar
/// (`app`, `ns/app`, `team/a/b`, `my-org/app_1.2`).
pub fn is_repository_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX_LENGTH && name.split('/').all(is_path_component)
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` with `separator ::= "." | "_" | "__" | "-"+`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut at = 0;
    loop {
        let start = at;
        while at < bytes.len() && is_lower_alphanumeric(bytes[at]) {
            at += 1;
        }
        if at == start {
            // Empty, or a separator at the start or after another one.
            return false;
        }
        if at == bytes.len() {
            return true;
        }
        let separator_start = at;
        while at < bytes.len() && matches!(bytes[at], b'.' | b'_' | b'-') {
            at += 1;
        }
        let separator = &bytes[separator_start..at];
        let allowed = matches!(separator, b"." | b"_" | b"__")
            || (!separator.is_empty() && separator.iter().all(|byte| *byte == b'-'));
        if !allowed {
            return false;
        }
    }
}

fn is_lower_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

/// Whether `tag` is a tag of the distribution grammar:
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |byte: &u8| byte.is_ascii_alphanumeric() || *byte == b'_';
    match bytes.split_first() {
        Some((first, rest)) => {
            bytes.len() <= TAG_MAX_LENGTH
                && word(first)
                && rest
                    .iter()
                    .all(|byte| word(byte) || *byte == b'.' || *byte == b'-')
        }
        None => false,
    }
}

/// Whether `digest` is an OCI digest `algorithm:encoded`
/// (`sha256:8ffca516...`, `sha512:...`, `multihash+base58:...`).
pub fn is_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|component| !component.is_empty() && component.bytes().all(is_lower_alphanumeric));
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'=' | b'_' | b'-'));
    algorithm_ok && encoded_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_of_the_grammar_are_accepted() {
        for name in [
            "a",
            "app",
            "ns/app",
            "team/a/b",
            "my-org/app_1.2",
            "a__b",
            "a--b",
            "a---b/c.d",
            "0",
            "library/ubuntu",
            &"a".repeat(NAME_MAX_LENGTH),
        ] {
            assert!(is_repository_name(name), "{name:?}");
        }
    }

    #[test]
    fn repository_names_outside_the_grammar_are_refused() {
        for name in [
            "",
            "../../../admin/secret",
            "..",
            ".",
            "ns/../app",
            "ns/./app",
            "/app",
            "app/",
            "ns//app",
            "App",
            "ns/App",
            "a___b",
            "a_.b",
            "a.-b",
            "a..b",
            "-a",
            "a-",
            "_a",
            "a.",
            "a b",
            "a\nb",
            "a\u{1b}[31m",
            "a%2e%2e",
            "a?b",
            "a#b",
            "a:b",
            "a\\b",
            "é",
            &"a".repeat(NAME_MAX_LENGTH + 1),
        ] {
            assert!(!is_repository_name(name), "{name:?}");
        }
    }

    #[test]
    fn tags_of_the_grammar_are_accepted_and_others_refused() {
        for tag in [
            "1.0",
            "latest",
            "v1.2.3-rc.1",
            "_x",
            "A_b-C.d",
            &"t".repeat(TAG_MAX_LENGTH),
        ] {
            assert!(is_tag(tag), "{tag:?}");
        }
        for tag in [
            "",
            ".hidden",
            "-x",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\n",
            "a@sha256",
            "ä",
            &"t".repeat(TAG_MAX_LENGTH + 1),
        ] {
            assert!(!is_tag(tag), "{tag:?}");
        }
    }

    #[test]
    fn digests_of_the_oci_form_are_accepted_and_others_refused() {
        let sha256 = format!("sha256:{}", "0123456789abcdef".repeat(4));
        for digest in [
            sha256.as_str(),
            "sha256:8ffca516",
            "sha512:abc",
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "sha256:m1",
            "a.b_c-d:x=_-Y",
        ] {
            assert!(is_digest(digest), "{digest:?}");
        }
        for digest in [
            "",
            ":",
            "sha256:",
            ":abc",
            "nodigest",
            "SHA256:abc",
            "sha256+:abc",
            "+sha256:abc",
            "sha256:ab/cd",
            "sha256:..",
            "sha256:a.b",
            "../x:abc",
            "sha256:abc:def",
            "sha256:a%2f",
            "sha256:a\n",
        ] {
            assert!(!is_digest(digest), "{digest:?}");
        }
    }
}

/// Property tests: whatever a name, tag and digest the grammar accepts, the
/// manifest URL built from them keeps its path as written, under
/// `/v2/NAME/` (no `..` resolved away, nothing percent-decoded or cut off).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::hostile;

    /// Strings made of the pieces that could break out of a path.
    fn name_like() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                "[a-z0-9]{1,4}",
                Just("/".to_string()),
                Just(".".to_string()),
                Just("..".to_string()),
                Just("_".to_string()),
                Just("__".to_string()),
                Just("-".to_string()),
                Just("%2e".to_string()),
                Just("?".to_string()),
                Just("#".to_string()),
                Just("\\".to_string()),
                Just(":".to_string()),
                Just("\n".to_string()),
                ".{0,3}",
            ],
            0..12,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(hostile::config(512))]

        #[test]
        fn an_accepted_name_and_reference_stay_under_v2_name(
            name in name_like(),
            tag in name_like(),
            digest in name_like(),
        ) {
            for reference in [&tag, &digest] {
                let accepted = is_repository_name(&name)
                    && (is_tag(reference) || is_digest(reference));
                if !accepted {
                    continue;
                }
                let path = format!("/v2/{name}/manifests/{reference}");
                let url = url::Url::parse(&format!("http://registry.test{path}"))
                    .expect("an accepted name makes a URL");
                prop_assert_eq!(url.path(), path.as_str());
                prop_assert!(url.query().is_none() && url.fragment().is_none());
            }
        }
    }
}
