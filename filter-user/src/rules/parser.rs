//! The statement parser: `set`, `table` and the dispatch to rules; builds the
//! [`Ruleset`] and checks table references once the whole file is read.
//!
//! The data plane's limits (rules per ruleset, entries per table) and the uniqueness of
//! labels are checked here, where the rule or table that crosses them has a position.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::addr;
use super::ast::{Action, Options, Pos, Ruleset, Table};
use super::error::{RulesError, brief, clip, clip_path};
use super::lexer::{Kind, Lexer, Token, unquote};
use super::rule;
use super::source::{self, MAX_TABLE_FILE_BYTES, ReadError};
use super::tables::{self, TableTextError};
use super::validate;
use crate::compile::MAX_TABLE_ENTRIES;
use filter_common::MAX_RULES;

/// Parses a whole ruleset (see the module documentation of `rules` for the language).
pub(super) fn parse(src: &str, file: &str, base_dir: &Path) -> Result<Ruleset, RulesError> {
    let mut lexer = Lexer::new(src, file);
    let mut default: Option<(Action, Pos)> = None;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut defined_at: HashMap<String, Pos> = HashMap::new();
    // Table references are checked at the end so that tables may be defined anywhere.
    let mut references: Vec<(Pos, String)> = Vec::new();
    let mut rules = Vec::new();
    let mut options = Options::default();
    let mut labels: HashMap<String, Pos> = HashMap::new();

    while let Some(toks) = lexer.next_statement()? {
        let mut c = Cursor::new(src, file, toks);
        let first = c.peek();
        match c.word(first) {
            Some("pass" | "block") => {
                if rules.len() == MAX_RULES {
                    return Err(c.err(
                        first.pos,
                        format!("this is rule {}; a ruleset holds at most {MAX_RULES} rules", MAX_RULES + 1),
                    ));
                }
                let (rule, meta) = rule::parse_rule(&mut c)?;
                if let Some((pos, message)) = validate::check_rule(&rule, &meta) {
                    return Err(c.err(pos, message));
                }
                if let Some((pos, message)) = validate::reject_unsupported(&meta.unsupported) {
                    return Err(c.err(pos, message));
                }
                if let (Some(label), Some(pos)) = (&rule.label, meta.label) {
                    if let Some(earlier) = labels.get(label) {
                        return Err(c.err(
                            pos,
                            format!(
                                "label \"{}\" is already used on line {}; labels name one rule each",
                                clip(label),
                                earlier.line
                            ),
                        ));
                    }
                    labels.insert(label.clone(), pos);
                }
                references.extend(meta.table_refs);
                rules.push(rule);
            }
            Some("table") => {
                let (name, pos, table) = parse_table(&mut c, base_dir)?;
                if let Some(first) = defined_at.get(&name) {
                    return Err(c.err(pos, format!("table <{name}> is already defined on line {}", first.line)));
                }
                defined_at.insert(name.clone(), pos);
                tables.insert(name, table);
            }
            Some("set") => match parse_set(&mut c)? {
                Setting::Default(action, pos) => {
                    if let Some((_, first)) = default {
                        return Err(c.err(pos, format!("`set default` is already given on line {}", first.line)));
                    }
                    default = Some((action, pos));
                }
                Setting::StateLimit(n) => options.state_limit = Some(n),
                Setting::Timeout(name, secs) => {
                    options.timeouts.insert(name, secs);
                }
            },
            _ => {
                // Where a file that is not a ruleset fails: quote only a brief excerpt.
                let mut e = c.err(
                    first.pos,
                    format!("expected `pass`, `block`, `table` or `set`, found {}", c.found_brief(first)),
                );
                let keywords = ["pass", "block", "table", "set"];
                if let Some(guess) = c.word(first).and_then(|w| suggest(w, &keywords)) {
                    e.message.push_str(&format!(" (did you mean `{guess}`?)"));
                }
                return Err(e);
            }
        }
    }

    for (pos, name) in references {
        if !tables.contains_key(&name) {
            return Err(RulesError::at(file, pos, format!("unknown table <{name}>")));
        }
    }
    Ok(Ruleset { default_action: default.map_or(Action::Pass, |(action, _)| action), tables, rules, options })
}

/// One `set` statement.
enum Setting {
    /// `set default pass|block`, with the position of `set`.
    Default(Action, Pos),
    /// `set limit states N`.
    StateLimit(u32),
    /// `set timeout NAME SECONDS`.
    Timeout(String, u32),
}

/// `set default pass|block`, `set limit states N`, `set timeout NAME SECONDS`.
fn parse_set(c: &mut Cursor<'_>) -> Result<Setting, RulesError> {
    let set = c.next();
    let what = c.next();
    match c.word(what) {
        Some("default") => {}
        Some("limit") => {
            let kind = c.next();
            if !c.is_word(kind, "states") {
                return Err(c.unexpected_kw(kind, "`states` after `set limit`", &["states"]));
            }
            let n = count(c, "a number of states after `set limit states`", 1, 10_000_000)?;
            c.expect_end("end of line after `set limit states N`")?;
            return Ok(Setting::StateLimit(n));
        }
        Some("timeout") => {
            let name_tok = c.next();
            let names: Vec<&str> = filter_common::timeout::ALL.iter().map(|t| t.name).collect();
            let name = match c.word(name_tok) {
                Some(w) if names.contains(&w) => w.to_owned(),
                _ => {
                    return Err(c.unexpected_kw(
                        name_tok,
                        &format!("a timeout name ({}) after `set timeout`", names.join(", ")),
                        &names,
                    ));
                }
            };
            let secs = count(c, "seconds after `set timeout NAME`", 1, 10 * 365 * 86400)?;
            c.expect_end("end of line after `set timeout NAME SECONDS`")?;
            return Ok(Setting::Timeout(name, secs));
        }
        _ => {
            return Err(c.unexpected_kw(
                what,
                "`default`, `limit` or `timeout` after `set`",
                &["default", "limit", "timeout"],
            ));
        }
    }
    let value = c.next();
    let action = match c.word(value) {
        Some("pass") => Action::Pass,
        Some("block") => Action::Block,
        _ => {
            return Err(c.unexpected_kw(value, "`pass` or `block` after `set default`", &["pass", "block"]));
        }
    };
    c.expect_end("end of line after `set default`")?;
    Ok(Setting::Default(action, set.pos))
}

/// A whole number in `min..=max` at the cursor.
fn count(c: &mut Cursor<'_>, expected: &str, min: u64, max: u64) -> Result<u32, RulesError> {
    let tok = c.next();
    match c.word(tok).map(|w| (w, w.parse::<u64>().ok())) {
        Some((_, Some(n))) if (min..=max).contains(&n) => Ok(n as u32),
        Some((w, Some(_))) => Err(c.err(tok.pos, format!("{w} out of range {min}-{max}"))),
        _ => Err(c.unexpected(tok, expected)),
    }
}

/// `table <name> { entries }` or `table <name> file "PATH"`; returns the name, the
/// position of `<name>` and the table.
fn parse_table(c: &mut Cursor<'_>, base_dir: &Path) -> Result<(String, Pos, Table), RulesError> {
    c.next();
    let name_tok = c.next();
    if name_tok.kind != Kind::Table {
        return Err(c.unexpected(name_tok, "a table name like `<name>` after `table`"));
    }
    let text = c.text(name_tok);
    let name = text[1..text.len() - 1].to_owned();

    let tok = c.next();
    let table = match tok.kind {
        Kind::LBrace => {
            let mut entries = Vec::new();
            loop {
                let item = c.next();
                match item.kind {
                    Kind::RBrace => break,
                    Kind::Word if addr::looks_like_address(c.text(item)) => {
                        let net = addr::parse_net(c.text(item)).map_err(|m| c.err(item.pos, m))?;
                        entries.push(net);
                    }
                    _ => return Err(c.unexpected(item, "an address, prefix or `}`")),
                }
                if c.peek().kind == Kind::Comma {
                    c.next();
                }
            }
            tables::dedup_keep_order(&mut entries);
            if entries.len() > MAX_TABLE_ENTRIES {
                return Err(c.err(
                    name_tok.pos,
                    format!(
                        "table <{name}> has {} distinct entries; a table holds at most \
                         {MAX_TABLE_ENTRIES}",
                        entries.len()
                    ),
                ));
            }
            Table { entries, file: None }
        }
        Kind::Word if c.text(tok) == "file" => {
            let path_tok = c.next();
            if path_tok.kind != Kind::Str {
                return Err(c.unexpected(path_tok, "a quoted path after `file`"));
            }
            let written = unquote(c.text(path_tok));
            if written.is_empty() {
                return Err(c.err(path_tok.pos, "the table file path is empty"));
            }
            let path = base_dir.join(&written);
            let shown = path.display().to_string();
            let bytes = source::read(&path, MAX_TABLE_FILE_BYTES).map_err(|reason: ReadError| {
                c.err(path_tok.pos, format!("cannot read table file `{}`: {reason}", clip_path(&shown)))
            })?;
            let text = source::utf8(&bytes, &shown)?;
            let entries = match tables::parse_table_text(text, &shown, MAX_TABLE_ENTRIES) {
                Ok(entries) => entries,
                Err(TableTextError::Line(e)) => return Err(e),
                Err(TableTextError::TooMany) => {
                    return Err(c.err(
                        name_tok.pos,
                        format!(
                            "table <{name}> has more than {MAX_TABLE_ENTRIES} distinct entries \
                             in its file; a table holds at most {MAX_TABLE_ENTRIES}"
                        ),
                    ));
                }
            };
            Table { entries, file: Some(shown) }
        }
        _ => return Err(c.unexpected_kw(tok, "`{` or `file` after the table name", &["file"])),
    };
    c.expect_end("end of line after the table")?;
    Ok((name, name_tok.pos, table))
}

/// A cursor over the tokens of one statement (always ending with [`Kind::End`]).
pub(super) struct Cursor<'a> {
    src: &'a str,
    file: &'a str,
    toks: Vec<Token>,
    i: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first token of `toks`, which must end with a `Kind::End` token.
    pub fn new(src: &'a str, file: &'a str, toks: Vec<Token>) -> Self {
        Cursor { src, file, toks, i: 0 }
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
        &self.src[tok.start..tok.end]
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
