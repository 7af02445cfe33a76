//! Table contents: duplicate removal, and the reader for table files (one address or
//! prefix per line, `#` comments, blank lines).
//!
//! Table files can hold a million lines (blocklists), so the reader works on one
//! borrowed slice per line, never allocates per line, and formats messages only when
//! there is an error.

use ipnet::IpNet;

use super::addr;
use super::ast::Pos;
use super::error::{RulesError, clip};
use super::source::saturate;

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
/// file's own line and column.
pub(super) fn parse_table_text(text: &str, file: &str) -> Result<Vec<IpNet>, RulesError> {
    let mut entries = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
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
        let at = |s: &str| Pos {
            line: saturate(index + 1),
            col: column_of(s),
        };
        if let Some(space) = entry.find(|c: char| c.is_ascii_whitespace()) {
            let extra = entry[space..].trim_ascii_start();
            let extra_word = extra.split_ascii_whitespace().next().unwrap_or(extra);
            return Err(RulesError::at(
                file,
                at(extra),
                format!(
                    "expected one address or prefix per line, found `{}` after `{}`",
                    clip(extra_word),
                    clip(&entry[..space])
                ),
            ));
        }
        let net = addr::parse_net(entry).map_err(|m| RulesError::at(file, at(entry), m))?;
        entries.push(net);
    }
    dedup_keep_order(&mut entries);
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
        let mut v = nets(&[
            "10.0.0.0/8",
            "::/0",
            "10.0.0.0/8",
            "1.2.3.4/32",
            "::/0",
            "10.0.0.0/8",
        ]);
        dedup_keep_order(&mut v);
        assert_eq!(v, nets(&["10.0.0.0/8", "::/0", "1.2.3.4/32"]));
        let mut v = nets(&["10.0.0.0/8"]);
        dedup_keep_order(&mut v);
        assert_eq!(v, nets(&["10.0.0.0/8"]));
    }

    #[test]
    fn comments_blanks_duplicates() {
        let text =
            "# bogons\n10.0.0.0/8\r\n\n  192.0.2.1   # a host\n2001:db8::/32\n10.0.0.0/8\n\t\n";
        assert_eq!(
            parse_table_text(text, "b.txt").unwrap(),
            nets(&["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"])
        );
        assert_eq!(parse_table_text("", "b.txt").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_table_file_line_and_column() {
        assert_eq!(
            parse_table_text("10.0.0.0/8\n\n  10.1.2.3/8\n", "b.txt")
                .unwrap_err()
                .to_string(),
            "b.txt:3:3: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"
        );
        assert_eq!(
            parse_table_text("# x\n 10.0.0.1  10.0.0.2 # two\n", "b.txt")
                .unwrap_err()
                .to_string(),
            "b.txt:2:12: expected one address or prefix per line, found `10.0.0.2` after `10.0.0.1`"
        );
        assert_eq!(
            parse_table_text("é 1.2.3.4/40", "b.txt")
                .unwrap_err()
                .to_string(),
            "b.txt:1:3: expected one address or prefix per line, found `1.2.3.4/40` after `é`"
        );
        assert_eq!(
            parse_table_text("1.2.3.4/40", "b.txt")
                .unwrap_err()
                .to_string(),
            "b.txt:1:1: bad address or prefix `1.2.3.4/40`: prefix length 40 is more than 32"
        );
    }
}
