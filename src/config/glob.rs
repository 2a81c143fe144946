//! Glob patterns of the `gc` policies (`repositories`, `exclude`,
//! `keep_tags`): `*` matches any run of characters but `/`, `**` any run
//! including `/`, `?` one character but `/`; everything else matches
//! itself. A pattern matches the whole name. Pure: parsed once by the
//! checks, matched by the planner.

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A character matching itself.
    Literal(char),
    /// `?`.
    One,
    /// `*`.
    Segment,
    /// `**`.
    Deep,
}

/// A parsed glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    pieces: Vec<Piece>,
}

impl Glob {
    /// Parses `text`; an empty pattern is an error.
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("an empty pattern matches nothing".to_string());
        }
        let mut pieces = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            pieces.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    while chars.peek() == Some(&'*') {
                        chars.next();
                    }
                    Piece::Deep
                }
                '*' => Piece::Segment,
                '?' => Piece::One,
                other => Piece::Literal(other),
            });
        }
        Ok(Glob {
            text: text.to_string(),
            pieces,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` matches. Linear in pattern times name
    /// (no backtracking blow-up).
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // reachable[j]: the pieces so far can match name[..j].
        let mut reachable = vec![false; name.len() + 1];
        reachable[0] = true;
        for piece in &self.pieces {
            let mut next = vec![false; name.len() + 1];
            match piece {
                Piece::Literal(c) => {
                    for j in 0..name.len() {
                        next[j + 1] = reachable[j] && name[j] == *c;
                    }
                }
                Piece::One => {
                    for j in 0..name.len() {
                        next[j + 1] = reachable[j] && name[j] != '/';
                    }
                }
                Piece::Segment => {
                    next[0] = reachable[0];
                    for j in 0..name.len() {
                        next[j + 1] = reachable[j + 1] || (next[j] && name[j] != '/');
                    }
                }
                Piece::Deep => {
                    next[0] = reachable[0];
                    for j in 0..name.len() {
                        next[j + 1] = reachable[j + 1] || next[j];
                    }
                }
            }
            reachable = next;
        }
        reachable[name.len()]
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn matches(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).expect("pattern").matches(name)
    }

    #[test]
    fn star_stays_within_one_path_segment() {
        assert!(matches("ci/*", "ci/app"));
        assert!(!matches("ci/*", "ci/team/app"));
        assert!(!matches("ci/*", "ci"));
        assert!(matches("v*", "v1.2"));
        assert!(matches("v*", "v"));
        assert!(!matches("v*", "latest"));
        assert!(matches("*-rc*", "1.0-rc2"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(matches("ci/**", "ci/team/app"));
        assert!(matches("ci/**", "ci/app"));
        assert!(!matches("ci/**", "ops/app"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**/cache", "a/b/cache"));
        assert!(!matches("**/cache", "a/b/cache2"));
    }

    #[test]
    fn question_mark_and_literals_match_the_whole_name() {
        assert!(matches("v?", "v1"));
        assert!(!matches("v?", "v10"));
        assert!(!matches("latest", "latest2"));
        assert!(!matches("latest", "xlatest"));
        assert!(matches("latest", "latest"));
    }

    #[test]
    fn an_empty_pattern_is_refused() {
        assert!(Glob::new("").is_err());
    }
}
