//! The one error type of the rule language: where (file:line:col) and what.

use std::borrow::Cow;

use super::ast::Pos;

/// Longest piece of source text quoted in a message, in characters.
const MAX_QUOTE: usize = 60;

/// Source text to quote in a message, shortened with `…` when long, so that a
/// runaway line (or a binary file given as a table file) cannot produce a huge message.
pub(super) fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTE) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

/// A problem found while reading a ruleset or one of its table files.
///
/// `Display` gives `file:line:col: message`, the form editors and CI logs recognise.
/// A problem with a file as a whole (for example an unreadable ruleset) has line and
/// column 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
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

impl RulesError {
    /// An error at a position in `file`.
    pub(super) fn at(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        RulesError {
            file: file.to_owned(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }

    /// An error about `file` as a whole (line 0, column 0).
    pub(super) fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Self::at(file, Pos { line: 0, col: 0 }, message)
    }

    /// Where the problem is, as a [`Pos`].
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quotes_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long), format!("{}…", "é".repeat(60)));
        assert_eq!(clip(&"x".repeat(60)), "x".repeat(60));
    }
}
