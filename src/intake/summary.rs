//! What the intake writes to the log about an envelope: one line however
//! many events it holds (a 1 MiB envelope holds some 350,000), and strings
//! from the registry (event ids, names, header values) shortened and with
//! control characters escaped, so that no sender can flood the log or
//! forge lines in it. Pure; the caller logs.

use std::collections::HashMap;

use crate::notification::Malformed;

/// Reasons named in one line; the others are counted.
const REASONS_SHOWN: usize = 5;
/// Ids named per reason.
const IDS_SHOWN: usize = 3;
/// Characters shown of one id, reason or header value.
const SHOWN_CHARS: usize = 120;

/// The warning about the malformed events of an envelope of `events`
/// events: how many per reason, most frequent first, with the first ids of
/// each. None when none was malformed.
pub(super) fn malformed_line(malformed: &[Malformed], events: usize) -> Option<String> {
    if malformed.is_empty() {
        return None;
    }
    let mut groups: Vec<(&str, usize, Vec<&str>)> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for event in malformed {
        let index = *index_of.entry(event.reason.as_str()).or_insert_with(|| {
            groups.push((event.reason.as_str(), 0, Vec::new()));
            groups.len() - 1
        });
        let (_, count, ids) = &mut groups[index];
        *count += 1;
        if let (Some(id), true) = (&event.id, ids.len() < IDS_SHOWN) {
            ids.push(id.as_str());
        }
    }
    // Stable: equally frequent reasons stay in envelope order.
    groups.sort_by_key(|group| std::cmp::Reverse(group.1));
    let mut line = format!(
        "intake: dropped {} malformed of {events} events in an envelope: ",
        malformed.len()
    );
    for (position, (reason, count, ids)) in groups.iter().take(REASONS_SHOWN).enumerate() {
        if position > 0 {
            line.push_str("; ");
        }
        line.push_str(&format!("{count} x {}", escaped(reason)));
        if !ids.is_empty() {
            let quoted: Vec<String> = ids.iter().map(|id| quoted(id)).collect();
            let more = if *count > ids.len() { ", ..." } else { "" };
            line.push_str(&format!(" (ids {}{more})", quoted.join(", ")));
        }
    }
    if groups.len() > REASONS_SHOWN {
        let rest: usize = groups[REASONS_SHOWN..].iter().map(|group| group.1).sum();
        line.push_str(&format!(
            "; {rest} more for {} other reasons",
            groups.len() - REASONS_SHOWN
        ));
    }
    Some(line)
}

/// `text` cut to [`SHOWN_CHARS`] characters, quoted and escaped as `{:?}`
/// does (`"a\nb"`): for ids and header values, which may hold anything.
pub(super) fn quoted(text: &str) -> String {
    let (shown, cut) = shortened(text);
    format!("{shown:?}{}", if cut { "..." } else { "" })
}

/// `text` cut to [`SHOWN_CHARS`] characters with control characters
/// escaped (`\n`, `\u{1b}`) and nothing else changed: for reasons, which
/// already quote the values they name.
fn escaped(text: &str) -> String {
    let (shown, cut) = shortened(text);
    let mut out = String::with_capacity(shown.len());
    for character in shown.chars() {
        if character.is_control() {
            out.extend(character.escape_debug());
        } else {
            out.push(character);
        }
    }
    if cut {
        out.push_str("...");
    }
    out
}

fn shortened(text: &str) -> (&str, bool) {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, reason: &str) -> Malformed {
        Malformed {
            id: id.map(String::from),
            reason: reason.to_string(),
        }
    }

    #[test]
    fn nothing_malformed_is_no_line() {
        assert_eq!(malformed_line(&[], 3), None);
    }

    #[test]
    fn reasons_are_counted_most_frequent_first_with_their_first_ids() {
        let malformed = vec![
            event(Some("a1"), "target has no repository"),
            event(None, "no action"),
            event(Some("a2"), "target has no repository"),
            event(None, "no action"),
            event(Some("a3"), "target has no repository"),
            event(Some("a4"), "target has no repository"),
        ];
        assert_eq!(
            malformed_line(&malformed, 9).as_deref(),
            Some(
                "intake: dropped 6 malformed of 9 events in an envelope: \
                 4 x target has no repository (ids \"a1\", \"a2\", \"a3\", ...); 2 x no action"
            )
        );
    }

    #[test]
    fn a_flood_of_one_reason_is_one_short_line() {
        let malformed = vec![event(None, "event is not an object"); 349_518];
        let line = malformed_line(&malformed, 349_518).expect("a line");
        assert_eq!(
            line,
            "intake: dropped 349518 malformed of 349518 events in an envelope: \
             349518 x event is not an object"
        );
    }

    #[test]
    fn many_reasons_are_cut_and_counted() {
        let malformed: Vec<Malformed> = (0..20)
            .map(|index| {
                event(
                    Some(&format!("e{index}")),
                    &format!("bad digest \"x{index}\""),
                )
            })
            .collect();
        let line = malformed_line(&malformed, 20).expect("a line");
        assert!(line.ends_with("; 15 more for 15 other reasons"), "{line}");
        assert_eq!(line.matches("bad digest").count(), REASONS_SHOWN);
    }

    #[test]
    fn ids_and_reasons_are_escaped_and_shortened() {
        let long = "x".repeat(10_000);
        let malformed = vec![
            event(Some("evil\n\u{1b}[31mFAKE LINE"), "no timestamp"),
            event(Some(&long), "bad repository name \"a\u{7}\""),
        ];
        let line = malformed_line(&malformed, 2).expect("a line");
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains(r#""evil\n\u{1b}[31mFAKE LINE""#), "{line}");
        assert!(line.contains(r#"bad repository name "a\u{7}""#), "{line}");
        assert!(line.len() < 1000, "{}", line.len());
        assert!(line.contains(&format!("\"{}\"...", "x".repeat(SHOWN_CHARS))));
    }
}
