//! Table contents: duplicate removal, and the reader for table files (one address or
//! prefix per line, `#` comments, blank lines).
//!
//! Table files can hold a million lines (blocklists), so the reader works on one
//! borrowed slice per line, never allocates per line, and formats messages only when
//! there is an error. A table file may be any file the ruleset names, so messages quote
//! only brief excerpts of it, and a file of more distinct entries than a table may hold
//! is refused as soon as that is known, holding at most twice the limit in memory.

use ipnet::IpNet;

use super::addr;
use super::ast::Pos;
use super::error::{RulesError, brief};
use super::source::{find_control, saturate};

/// Why a table file's text is refused.
#[derive(Debug)]
pub(super) enum TableTextError {
    /// A line that is not one address or prefix; positioned in the table file.
    Line(RulesError),
    /// More distinct entries than the limit given.
    TooMany,
}

/// Removes repeated entries, keeping each entry's first occurrence and the order of
/// first occurrences (so compiled tables do not depend on hash order).
///
/// Sorting (entry, index) pairs puts the copies of an entry next to each other, first
/// occurrence first. This is O(n log n) without hashing: faster than a `HashSet` on a
/// million entries, and a hostile blocklist cannot degrade it with collisions.
pub(super) fn dedup_keep_order(entries: &mut Vec<IpNet>) {
    if entries.len() < 2 {
        return;
    }
    let mut keyed: Vec<(IpNet, usize)> = entries.iter().copied().zip(0..).collect();
    keyed.sort_unstable();
    let mut duplicate = vec![false; entries.len()];
    let mut any = false;
    for pair in keyed.windows(2) {
        if pair[0].0 == pair[1].0 {
            duplicate[pair[1].1] = true;
            any = true;
        }
    }
    if any {
        // `retain` visits the elements in order, so `index` follows their positions.
        let mut index = 0;
        entries.retain(|_| {
            let keep = !duplicate[index];
            index += 1;
            keep
        });
    }
}

/// Parses the text of a table file; `file` names it in errors, which carry the table
/// file's own line and column. More than `max_entries` distinct entries is
/// [`TableTextError::TooMany`].
pub(super) fn parse_table_text(text: &str, file: &str, max_entries: usize) -> Result<Vec<IpNet>, TableTextError> {
    let mut entries = Vec::new();
    // Duplicates are removed whenever the list reaches this length; each removal is
    // preceded by at least `max_entries` new lines, so the cost stays O(n log n).
    let mut dedup_at = max_entries.saturating_mul(2).max(1);
    for (index, raw) in text.split('\n').enumerate() {
        if let Some((col, name)) = find_control(raw) {
            let pos = Pos { line: saturate(index + 1), col };
            return Err(TableTextError::Line(RulesError::at(
                file,
                pos,
                format!("unexpected control character {name}; a table file is plain text"),
            )));
        }
        let content = match raw.find('#') {
            Some(i) => &raw[..i],
            None => raw,
        };
        let entry = content.trim_ascii();
        if entry.is_empty() {
            continue;
        }
        // Pointer arithmetic on sub-slices of `raw`: where the entry starts in its line.
        let column_of = |s: &str| {
            let offset = s.as_ptr() as usize - raw.as_ptr() as usize;
            saturate(raw[..offset].chars().count() + 1)
        };
        let at = |s: &str| Pos { line: saturate(index + 1), col: column_of(s) };
        if let Some(space) = entry.find(|c: char| c.is_ascii_whitespace()) {
            let extra = entry[space..].trim_ascii_start();
            let extra_word = extra.split_ascii_whitespace().next().unwrap_or(extra);
            return Err(TableTextError::Line(RulesError::at(
                file,
                at(extra),
                format!(
                    "expected one address or prefix per line, found `{}` after `{}`",
                    brief(extra_word),
                    brief(&entry[..space])
                ),
            )));
        }
        let net = addr::parse_net_brief(entry).map_err(|m| TableTextError::Line(RulesError::at(file, at(entry), m)))?;
        entries.push(net);
        if entries.len() >= dedup_at {
            dedup_keep_order(&mut entries);
            if entries.len() > max_entries {
                return Err(TableTextError::TooMany);
            }
            dedup_at = entries.len() + max_entries.max(1);
        }
    }
    dedup_keep_order(&mut entries);
    if entries.len() > max_entries {
        return Err(TableTextError::TooMany);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        let mut v = nets(&["10.0.0.0/8", "::/0", "10.0.0.0/8", "1.2.3.4/32", "::/0", "10.0.0.0/8"]);
        dedup_keep_order(&mut v);
        assert_eq!(v, nets(&["10.0.0.0/8", "::/0", "1.2.3.4/32"]));
        let mut v = nets(&["10.0.0.0/8"]);
        dedup_keep_order(&mut v);
        assert_eq!(v, nets(&["10.0.0.0/8"]));
    }

    #[test]
    fn comments_blanks_duplicates() {
        let text = "# bogons\n10.0.0.0/8\r\n\n  192.0.2.1   # a host\n2001:db8::/32\n10.0.0.0/8\n\t\n";
        assert_eq!(
            parse_table_text(text, "b.txt", 10).unwrap(),
            nets(&["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"])
        );
        assert_eq!(parse_table_text("", "b.txt", 10).unwrap(), vec![]);
    }

    fn err(text: &str) -> String {
        match parse_table_text(text, "b.txt", 10) {
            Err(TableTextError::Line(e)) => e.to_string(),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn entries_beyond_the_limit_are_refused_early() {
        let text: String = (0..10u8).map(|i| format!("10.0.0.{i}\n")).collect();
        assert_eq!(parse_table_text(&text, "b.txt", 10).unwrap().len(), 10);
        // Duplicates do not count, wherever they are.
        let twice = format!("{text}{text}{text}");
        assert_eq!(parse_table_text(&twice, "b.txt", 10).unwrap().len(), 10);
        let more = format!("{text}10.0.0.10\n{text}");
        assert!(matches!(parse_table_text(&more, "b.txt", 10), Err(TableTextError::TooMany)));
        // Refused before the end of a file that is far too big: the bad line after
        // 20 distinct entries is never reached.
        let many: String = (0..30u8).map(|i| format!("10.0.1.{i}\n")).collect();
        assert!(matches!(parse_table_text(&format!("{many}bad\n"), "b.txt", 10), Err(TableTextError::TooMany)));
    }

    #[test]
    fn control_characters_and_foreign_text() {
        assert_eq!(
            err("10.0.0.1\n10.0.0.2\u{0}\n"),
            "b.txt:2:9: unexpected control character U+0000 (NUL); a table file is plain text"
        );
        assert_eq!(
            err("root:x:0:0:secret-secret:/root:/bin/sh\n"),
            "b.txt:1:1: bad address or prefix `root:x:0:0:secre…`: `root:x:0:0:secre…` is not an IPv4 or IPv6 address"
        );
    }

    #[test]
    fn errors_name_the_table_file_line_and_column() {
        assert_eq!(
            err("10.0.0.0/8\n\n  10.1.2.3/8\n"),
            "b.txt:3:3: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"
        );
        assert_eq!(
            err("# x\n 10.0.0.1  10.0.0.2 # two\n"),
            "b.txt:2:12: expected one address or prefix per line, found `10.0.0.2` after `10.0.0.1`"
        );
        assert_eq!(
            err("é 1.2.3.4/40"),
            "b.txt:1:3: expected one address or prefix per line, found `1.2.3.4/40` after `é`"
        );
        assert_eq!(
            err("1.2.3.4/40"),
            "b.txt:1:1: bad address or prefix `1.2.3.4/40`: prefix length 40 is more than 32"
        );
    }
}
