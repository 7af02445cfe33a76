//! The cursor over one statement's tokens, with the error helpers every part of the
//! parser shares, and the "did you mean" of unknown words.

use super::ast::Pos;
use super::error::{RulesError, brief, clip};
use super::lexer::{Kind, Token};

/// A cursor over the tokens of one statement (always ending with [`Kind::End`]).
pub(super) struct Cursor<'a> {
    src: &'a str,
    /// Text that tokens from macro expansions point into: offsets from `src.len()` on.
    extra: &'a str,
    file: &'a str,
    toks: Vec<Token>,
    i: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first token of `toks`, which must end with a `Kind::End` token.
    pub fn new(src: &'a str, file: &'a str, toks: Vec<Token>) -> Self {
        Cursor { src, extra: "", file, toks, i: 0 }
    }

    /// Like [`Cursor::new`], for a statement with macros expanded: tokens whose offsets
    /// are at or past `src.len()` are in `extra` (see `macros`).
    pub fn with_expansions(src: &'a str, extra: &'a str, file: &'a str, toks: Vec<Token>) -> Self {
        Cursor { src, extra, file, toks, i: 0 }
    }

    /// Every token of the statement (the last one is [`Kind::End`]).
    pub fn tokens(&self) -> &[Token] {
        &self.toks
    }

    /// The statement's tokens, giving up the cursor.
    pub fn into_tokens(self) -> Vec<Token> {
        self.toks
    }

    /// The next token, not consumed.
    pub fn peek(&self) -> Token {
        self.toks[self.i]
    }

    /// The next token, consumed; at the end, keeps returning the `End` token.
    pub fn next(&mut self) -> Token {
        let tok = self.toks[self.i];
        if tok.kind != Kind::End {
            self.i += 1;
        }
        tok
    }

    /// The source text of a token.
    pub fn text(&self, tok: Token) -> &'a str {
        let n = self.src.len();
        if tok.start >= n && !self.extra.is_empty() {
            &self.extra[tok.start - n..tok.end - n]
        } else {
            &self.src[tok.start..tok.end]
        }
    }

    /// The text of a word token; `None` for other tokens.
    pub fn word(&self, tok: Token) -> Option<&'a str> {
        (tok.kind == Kind::Word).then(|| self.text(tok))
    }

    /// Whether `tok` is the word `w`.
    pub fn is_word(&self, tok: Token, w: &str) -> bool {
        self.word(tok) == Some(w)
    }

    /// The statement's source text: tokens as written, with a single space wherever
    /// the source had whitespace, a comment or a line continuation between them.
    /// Strings keep their inner spacing: they are shown as the operator wrote them.
    pub fn statement_text(&self) -> String {
        let mut text = String::new();
        let mut prev_end = None;
        for tok in self.toks.iter().filter(|t| t.kind != Kind::End) {
            if prev_end.is_some_and(|end| end != tok.start) {
                text.push(' ');
            }
            text.push_str(self.text(*tok));
            prev_end = Some(tok.end);
        }
        text
    }

    /// An error at `pos` in this file.
    pub fn err(&self, pos: Pos, message: impl Into<String>) -> RulesError {
        RulesError::at(self.file, pos, message)
    }

    /// How a token is named in "found ..." messages.
    pub fn found(&self, tok: Token) -> String {
        match tok.kind {
            Kind::End => "end of line".to_owned(),
            _ => format!("`{}`", clip(self.text(tok))),
        }
    }

    /// Like [`Cursor::found`], quoting at most a brief excerpt.
    pub fn found_brief(&self, tok: Token) -> String {
        match tok.kind {
            Kind::End => "end of line".to_owned(),
            _ => format!("`{}`", brief(self.text(tok))),
        }
    }

    /// "expected X, found Y" at `tok`.
    pub fn unexpected(&self, tok: Token, expected: &str) -> RulesError {
        self.err(tok.pos, format!("expected {expected}, found {}", self.found(tok)))
    }

    /// Like [`Cursor::unexpected`], adding "did you mean" when `tok` is a word close
    /// to one of `keywords` (typos such as `frmo` are the commonest mistake).
    pub fn unexpected_kw(&self, tok: Token, expected: &str, keywords: &[&str]) -> RulesError {
        let mut e = self.unexpected(tok, expected);
        if let Some(guess) = self.word(tok).and_then(|w| suggest(w, keywords)) {
            e.message.push_str(&format!(" (did you mean `{guess}`?)"));
        }
        e
    }

    /// Reads the items of a `{ item, item ... }` list once its `{` is consumed, up to and
    /// with the closing `}`: commas and/or whitespace between items, a trailing comma
    /// allowed, at least one item. `item` reads one item from the cursor (at a token
    /// that is not `}`, `,`, `{` or the end) and gets the "expected ..." text to use if
    /// it does not fit; `what` names an item. The one list reader of the language, so
    /// that every list takes the same commas.
    pub fn braced_list<T>(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self, &str) -> Result<T, RulesError>,
    ) -> Result<Vec<T>, RulesError> {
        let mut items = Vec::new();
        let more = format!("`}}` or {what}");
        loop {
            let tok = self.peek();
            let expected = if items.is_empty() { what } else { more.as_str() };
            if tok.kind == Kind::RBrace && !items.is_empty() {
                self.next();
                return Ok(items);
            }
            if matches!(tok.kind, Kind::RBrace | Kind::Comma | Kind::LBrace | Kind::End) {
                return Err(self.unexpected(tok, expected));
            }
            items.push(item(self, expected)?);
            if self.peek().kind == Kind::Comma {
                self.next();
            }
        }
    }

    /// Splits the current token, a word, into two words at byte `at` (a character
    /// boundary inside it): pf's `keep state(max-src-conn 10)` written without a space.
    pub fn split_word_at(&mut self, at: usize) {
        let tok = self.toks[self.i];
        debug_assert!(tok.kind == Kind::Word && at > 0 && tok.start + at < tok.end);
        let chars = self.text(tok)[..at].chars().count();
        let col = tok.pos.col.saturating_add(u32::try_from(chars).unwrap_or(u32::MAX));
        let second =
            Token { kind: Kind::Word, pos: Pos { line: tok.pos.line, col }, start: tok.start + at, end: tok.end };
        self.toks[self.i].end = tok.start + at;
        self.toks.insert(self.i + 1, second);
    }

    /// From the current token on, splits each word's leading `(`s and trailing `)`s off
    /// into tokens of their own ([`Kind::LParen`], [`Kind::RParen`]), keeping every
    /// token's position and byte span. The lexer leaves parentheses inside words, where
    /// interface addresses (`(em0)`) and `return-icmp(port-unr)` need them; the rule
    /// parser calls this once `keep state` is followed by a `(`-word, where the
    /// parentheses enclose the state options (`keep state (max-src-conn 10, ...)`).
    pub fn split_parens(&mut self) {
        let rest = self.toks.split_off(self.i);
        for tok in rest {
            if tok.kind != Kind::Word {
                self.toks.push(tok);
                continue;
            }
            let text = self.text(tok);
            let core = text.trim_start_matches('(');
            let opening = text.len() - core.len();
            let core = core.trim_end_matches(')');
            let closing = text.len() - opening - core.len();
            let at = |offset: usize| Pos {
                line: tok.pos.line,
                // Parentheses are one byte and one character each; the word's own
                // characters are counted as characters.
                col: tok.pos.col.saturating_add(u32::try_from(offset).unwrap_or(u32::MAX)),
            };
            for k in 0..opening {
                self.toks.push(Token { kind: Kind::LParen, pos: at(k), start: tok.start + k, end: tok.start + k + 1 });
            }
            let core_start = tok.start + opening;
            if !core.is_empty() {
                self.toks.push(Token {
                    kind: Kind::Word,
                    pos: at(opening),
                    start: core_start,
                    end: core_start + core.len(),
                });
            }
            let core_chars = core.chars().count();
            for k in 0..closing {
                let start = core_start + core.len() + k;
                self.toks.push(Token { kind: Kind::RParen, pos: at(opening + core_chars + k), start, end: start + 1 });
            }
        }
    }

    /// Consumes the end of the statement, or fails with "expected {expected}".
    pub fn expect_end(&mut self, expected: &str) -> Result<(), RulesError> {
        let tok = self.next();
        if tok.kind == Kind::End { Ok(()) } else { Err(self.unexpected(tok, expected)) }
    }
}

/// Longest word "did you mean" looks at, in characters: more than the longest keyword
/// (`tcp.established`, 15) plus the two edits allowed. A longer word is no typo of a
/// keyword, and is not worth any work.
const MAX_SUGGEST_LEN: usize = 24;

/// The keyword closest to `word`, if it is close enough to be a likely typo: at most
/// one edit for short words, two for longer ones (a swap of neighbours counts as one).
pub(super) fn suggest<'k>(word: &str, keywords: &[&'k str]) -> Option<&'k str> {
    if word.len() > 4 * MAX_SUGGEST_LEN || word.chars().count() > MAX_SUGGEST_LEN {
        return None;
    }
    let limit = if word.chars().count() <= 3 { 1 } else { 2 };
    keywords
        .iter()
        .filter_map(|k| edit_distance_within(word, k, limit).map(|d| (d, *k)))
        .filter(|&(d, k)| d > 0 && k.len() > 1)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions) when it
/// is at most `limit`, else `None`. Keeps three rows, not a matrix, and stops as soon as
/// every entry of a row exceeds `limit` (the distance can only grow from there).
fn edit_distance_within(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    // prev2, prev, cur: rows i-2, i-1, i; row[j] = distance between a[..i] and b[..j].
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(prev2[j - 2] + 1);
            }
            cur[j] = best;
        }
        if cur.iter().all(|&d| d > limit) {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    Some(prev[b.len()]).filter(|&d| d <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lexer::Lexer;

    #[test]
    fn parentheses_are_split_off_words_from_the_cursor_on() {
        let src = "(em0) state (é x, ((y)) (z)é)";
        let toks = Lexer::new(src, "t.conf").next_statement().unwrap().unwrap();
        let mut c = Cursor::new(src, "t.conf", toks);
        c.next();
        c.split_parens();
        let got: Vec<(Kind, &str, u32)> = c.tokens().iter().map(|t| (t.kind, c.text(*t), t.pos.col)).collect();
        assert_eq!(
            got,
            [
                (Kind::Word, "(em0)", 1),
                (Kind::Word, "state", 7),
                (Kind::LParen, "(", 13),
                (Kind::Word, "é", 14),
                (Kind::Word, "x", 16),
                (Kind::Comma, ",", 17),
                (Kind::LParen, "(", 19),
                (Kind::LParen, "(", 20),
                (Kind::Word, "y", 21),
                (Kind::RParen, ")", 22),
                (Kind::RParen, ")", 23),
                (Kind::LParen, "(", 25),
                (Kind::Word, "z)é", 26),
                (Kind::RParen, ")", 29),
                (Kind::End, "", 30),
            ],
            "columns count characters; a parenthesis inside a word stays there"
        );
        assert_eq!(c.statement_text(), src, "the text is as written");
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance_within("frmo", "from", 2), Some(1));
        assert_eq!(edit_distance_within("kitten", "sitting", 3), Some(3));
        assert_eq!(edit_distance_within("kitten", "sitting", 2), None);
        assert_eq!(edit_distance_within("ab", "abcd", 1), None);
        assert_eq!(edit_distance_within("ca", "abc", 3), Some(3));
        assert_eq!(edit_distance_within("", "to", 2), Some(2));
        assert_eq!(suggest("frmo", &["from", "to"]), Some("from"));
        assert_eq!(suggest("pas", &["pass", "block"]), Some("pass"));
        assert_eq!(suggest("xyz", &["from", "to"]), None);
        assert_eq!(suggest("from", &["from"]), None);
        // Long words get no suggestion and no work: not even the distance to a
        // keyword they start with.
        assert_eq!(suggest("tcp.establishedxx", &["tcp.established"]), Some("tcp.established"));
        assert_eq!(suggest(&"x".repeat(25), &[&"x".repeat(24)]), None);
        assert_eq!(suggest(&"x".repeat(10_000_000), &["pass"]), None);
    }
}
