//! Table contents: duplicate removal, and the reader for table files (one address or
//! prefix per line, `#` comments, blank lines).
//!
//! Table files can hold a million lines (blocklists), so the reader works on one
//! borrowed slice per line, never allocates per line, and formats messages only when
//! there is an error.

use std::collections::HashSet;

use ipnet::IpNet;

use super::addr;
use super::ast::Pos;
use super::error::RulesError;
use super::source::saturate;

/// Collects entries, dropping repeats and keeping the order in which entries were
/// first seen (so that the compiled tables do not depend on hash order).
#[derive(Default)]
pub(super) struct Dedup {
    seen: HashSet<IpNet>,
    entries: Vec<IpNet>,
}

impl Dedup {
    /// Adds `net` unless it is already there.
    pub fn push(&mut self, net: IpNet) {
        if self.seen.insert(net) {
            self.entries.push(net);
        }
    }

    /// The distinct entries in first-seen order.
    pub fn finish(self) -> Vec<IpNet> {
        self.entries
    }
}

/// Parses the text of a table file; `file` names it in errors, which carry the table
/// file's own line and column.
pub(super) fn parse_table_text(text: &str, file: &str) -> Result<Vec<IpNet>, RulesError> {
    let mut entries = Dedup::default();
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
                format!("expected one address or prefix per line, found `{extra_word}` after `{}`", &entry[..space]),
            ));
        }
        let net = addr::parse_net(entry).map_err(|m| RulesError::at(file, at(entry), m))?;
        entries.push(net);
    }
    Ok(entries.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn comments_blanks_duplicates() {
        let text = "# bogons\n10.0.0.0/8\r\n\n  192.0.2.1   # a host\n2001:db8::/32\n10.0.0.0/8\n\t\n";
        assert_eq!(
            parse_table_text(text, "b.txt").unwrap(),
            nets(&["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"])
        );
        assert_eq!(parse_table_text("", "b.txt").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_table_file_line_and_column() {
        assert_eq!(
            parse_table_text("10.0.0.0/8\n\n  10.1.2.3/8\n", "b.txt").unwrap_err().to_string(),
            "b.txt:3:3: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"
        );
        assert_eq!(
            parse_table_text("# x\n 10.0.0.1  10.0.0.2 # two\n", "b.txt").unwrap_err().to_string(),
            "b.txt:2:12: expected one address or prefix per line, found `10.0.0.2` after `10.0.0.1`"
        );
        assert_eq!(
            parse_table_text("é 1.2.3.4/40", "b.txt").unwrap_err().to_string(),
            "b.txt:1:3: expected one address or prefix per line, found `1.2.3.4/40` after `é`"
        );
        assert_eq!(
            parse_table_text("1.2.3.4/40", "b.txt").unwrap_err().to_string(),
            "b.txt:1:1: bad address or prefix `1.2.3.4/40`: prefix length 40 is more than 32"
        );
    }
}
