//! The one error type of the rule language: where (file:line:col) and what.

use std::borrow::Cow;

use super::ast::Pos;

/// Longest piece of a ruleset's own text quoted in a message, in characters (a
/// full-length IPv6 prefix fits).
const MAX_QUOTE: usize = 44;

/// Longest piece quoted from text that may not be a ruleset at all: the first word of a
/// statement (a file given by mistake fails there) and the lines of table files (a
/// ruleset may name any file). Enough to recognise a typo, too little to leak a file.
const MAX_BRIEF: usize = 16;

/// Source text to quote in a message, shortened with `…` when long, so that a
/// runaway line cannot produce a huge message, and with control and bidirectional
/// formatting characters escaped, so that what is shown is what is there.
pub(super) fn clip(text: &str) -> Cow<'_, str> {
    clip_to(text, MAX_QUOTE)
}

/// Like [`clip`], shorter: for text that may come from a file that is not a ruleset.
pub(super) fn brief(text: &str) -> Cow<'_, str> {
    clip_to(text, MAX_BRIEF)
}

/// Characters shown escaped in quotes: controls, and the bidirectional overrides and
/// isolates that make text display in another order than it is read.
fn hidden(ch: char) -> bool {
    ch.is_control() || matches!(ch, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A path to show in a message: whole when it is of a sane length, else its start and
/// its end (where the file name is) around a `…`; escaped like [`clip`].
pub(super) fn clip_path(path: &str) -> Cow<'_, str> {
    const HEAD: usize = 40;
    const TAIL: usize = 100;
    let chars = path.chars().count();
    if chars <= HEAD + TAIL {
        return clip_to(path, HEAD + TAIL);
    }
    let tail_start = path.char_indices().nth(chars - TAIL).map_or(0, |(i, _)| i);
    let head = clip_to(path, HEAD);
    let tail = clip_to(&path[tail_start..], TAIL);
    Cow::Owned(format!("{}{tail}", head))
}

fn clip_to(text: &str, max: usize) -> Cow<'_, str> {
    let cut = text.char_indices().nth(max).map(|(i, _)| i);
    let kept = &text[..cut.unwrap_or(text.len())];
    if cut.is_none() && !kept.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(kept.len() + 3);
    for ch in kept.chars() {
        if hidden(ch) {
            out.extend(ch.escape_unicode());
        } else {
            out.push(ch);
        }
    }
    if cut.is_some() {
        out.push('…');
    }
    Cow::Owned(out)
}

/// A problem found while reading a ruleset or one of its table files.
///
/// `Display` gives `file:line:col: message`, the form editors and CI logs recognise.
/// A problem with a file as a whole (for example an unreadable ruleset) has line and
/// column 0 and displays as `file: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// The file the problem is in (the ruleset or a table file), as it was named.
    pub file: String,
    /// Line, from 1; 0 when the problem concerns the whole file.
    pub line: u32,
    /// Column, from 1, counted in characters; 0 when the problem concerns the whole file.
    pub col: u32,
    /// One sentence saying what was expected and what was found.
    pub message: String,
}

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        }
    }
}

impl std::error::Error for RulesError {}

impl RulesError {
    /// An error at a position in `file`.
    pub(super) fn at(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        RulesError { file: file.to_owned(), line: pos.line, col: pos.col, message: message.into() }
    }

    /// An error about `file` as a whole (line 0, column 0).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Self::at(file, Pos { line: 0, col: 0 }, message)
    }

    /// Where the problem is, as a [`Pos`].
    pub fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quotes_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long), format!("{}…", "é".repeat(44)));
        assert_eq!(clip(&"x".repeat(44)), "x".repeat(44));
        assert_eq!(brief(&"x".repeat(44)), format!("{}…", "x".repeat(16)));
    }

    #[test]
    fn long_paths_keep_their_file_name() {
        assert_eq!(clip_path("/etc/x.txt"), "/etc/x.txt");
        let long = format!("/{}/list.txt", "d".repeat(500));
        let shown = clip_path(&long);
        assert!(shown.starts_with(&format!("/{}…", "d".repeat(39))), "{shown}");
        assert!(shown.ends_with(&format!("{}/list.txt", "d".repeat(91))), "{shown}");
        assert_eq!(shown.chars().count(), 141);
    }

    #[test]
    fn hidden_characters_are_escaped() {
        assert_eq!(clip("tcp\0"), "tcp\\u{0}");
        assert_eq!(clip("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(brief("\u{1b}[31mred text that goes on"), "\\u{1b}[31mred text th…");
    }

    #[test]
    fn whole_file_errors_have_no_position() {
        let e = RulesError::whole_file("x.conf", "bad");
        assert_eq!(e.to_string(), "x.conf: bad");
    }
}
