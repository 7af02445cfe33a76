//! pf's macros: `name = "value"` (or `name = "a" $other "b"`, parts joined by a space)
//! defines a macro; `$name` anywhere in a word of a later statement is replaced by its
//! value, and the word is read again, so a value may hold a list (`"{ ssh, smtp }"`)
//! or several words. Values are expanded where they are defined, as pfctl does, so a
//! macro refers only to macros defined before it and expansion cannot recurse.
//!
//! Tokens of an expansion carry the position of the word they replace (errors point
//! at the `$name` that brought them) and offsets into a text of their own, which the
//! cursor reads from `src.len()` on (see [`super::cursor::Cursor::with_expansions`]).

use std::collections::HashMap;

use super::ast::Pos;
use super::error::{RulesError, brief, clip};
use super::lexer::{Kind, Lexer, Token, unquote};

/// Longest macro value, in bytes: room for a long list of addresses, small enough that
/// doubling definitions (`b = $a $a`, `c = $b $b`, ...) stop long before memory does.
pub const MAX_MACRO_VALUE: usize = 64 * 1024;

/// Most macros in one ruleset.
const MAX_MACROS: usize = 10_000;

/// Most bytes all expansions of a ruleset may produce together (twice the largest
/// ruleset file): a file of a few `$big` words repeated cannot make gigabytes of rules.
pub const MAX_EXPANDED_TOTAL: usize = 2 * super::source::MAX_RULESET_BYTES as usize;

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The macros defined so far.
#[derive(Debug, Default)]
pub(super) struct Macros {
    values: HashMap<String, String>,
    /// Bytes expanded so far, against [`MAX_EXPANDED_TOTAL`].
    expanded: usize,
}

impl Macros {
    /// If `toks` is a definition (`name = ...` or `name= ...`), records it and returns
    /// true. `text` gives a token's text.
    pub fn define<'t>(
        &mut self,
        toks: &[Token],
        text: impl Fn(Token) -> &'t str,
        file: &str,
    ) -> Result<bool, RulesError> {
        let Some(&first) = toks.first() else { return Ok(false) };
        if first.kind != Kind::Word {
            return Ok(false);
        }
        let word = text(first);
        let (name, rest) = match word.strip_suffix('=') {
            Some(name) => (name, &toks[1..]),
            None if toks.get(1).is_some_and(|t| t.kind == Kind::Word && text(*t) == "=") => (word, &toks[2..]),
            None => return Ok(false),
        };
        if name.is_empty() || !name.bytes().all(ident_byte) || name.as_bytes()[0].is_ascii_digit() {
            return Err(RulesError::at(
                file,
                first.pos,
                format!("bad macro name `{}`: a macro name is letters, digits and `_`", brief(name)),
            ));
        }
        let mut value = String::new();
        for &tok in rest.iter().filter(|t| t.kind != Kind::End) {
            let part = match tok.kind {
                Kind::Str => unquote(text(tok)),
                _ => self.substitute(text(tok), tok.pos, file)?,
            };
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(&part);
            if value.len() > MAX_MACRO_VALUE {
                return Err(RulesError::at(
                    file,
                    first.pos,
                    format!("the value of macro `{name}` is longer than {MAX_MACRO_VALUE} bytes"),
                ));
            }
        }
        if self.values.len() == MAX_MACROS && !self.values.contains_key(name) {
            return Err(RulesError::at(file, first.pos, format!("more than {MAX_MACROS} macros")));
        }
        self.values.insert(name.to_owned(), value);
        Ok(true)
    }

    /// `word` with each `$name` replaced by its value; `pos` is where the word starts.
    fn substitute(&self, word: &str, pos: Pos, file: &str) -> Result<String, RulesError> {
        let mut out = String::new();
        let mut rest = word;
        let mut col = pos.col;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            col += rest[..at].chars().count() as u32;
            let after = &rest[at + 1..];
            let len = after.bytes().take_while(|&b| ident_byte(b)).count();
            let name = &after[..len];
            let here = Pos { line: pos.line, col };
            if name.is_empty() {
                return Err(RulesError::at(file, here, "expected a macro name after `$`"));
            }
            let Some(value) = self.values.get(name) else {
                return Err(RulesError::at(
                    file,
                    here,
                    format!("macro `${}` is not defined (define it before its use: `{0} = \"...\"`)", clip(name)),
                ));
            };
            out.push_str(value);
            if out.len() > MAX_MACRO_VALUE {
                return Err(RulesError::at(
                    file,
                    here,
                    format!("this word expands to more than {MAX_MACRO_VALUE} bytes"),
                ));
            }
            col += 1 + len as u32;
            rest = &after[len..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The statement with every `$name` in its words expanded, or `None` when it has
    /// none. Returns the tokens and the text that tokens at offsets from `src_len` on
    /// point into.
    pub fn expand<'t>(
        &mut self,
        toks: &[Token],
        text: impl Fn(Token) -> &'t str,
        src_len: usize,
        file: &str,
    ) -> Result<Option<(Vec<Token>, String)>, RulesError> {
        if !toks.iter().any(|t| t.kind == Kind::Word && text(*t).contains('$')) {
            return Ok(None);
        }
        let mut extra = String::new();
        let mut out: Vec<Token> = Vec::with_capacity(toks.len());
        for &tok in toks {
            if tok.kind != Kind::Word || !text(tok).contains('$') {
                out.push(tok);
                continue;
            }
            let expanded = self.substitute(text(tok), tok.pos, file)?;
            let base = src_len + extra.len();
            let mut lexer = Lexer::new(&expanded, file);
            while let Some(statement) = lexer.next_statement().map_err(|e| {
                RulesError::at(file, tok.pos, format!("in the expansion of `{}`: {}", clip(text(tok)), e.message))
            })? {
                for t in statement.into_iter().filter(|t| t.kind != Kind::End) {
                    out.push(Token { kind: t.kind, pos: tok.pos, start: base + t.start, end: base + t.end });
                }
            }
            extra.push_str(&expanded);
            extra.push(' ');
            self.expanded += expanded.len() + 1;
            if self.expanded > MAX_EXPANDED_TOTAL {
                return Err(RulesError::at(
                    file,
                    tok.pos,
                    format!("macros expand to more than {MAX_EXPANDED_TOTAL} bytes in this ruleset"),
                ));
            }
            if out.len() > super::lexer::MAX_TOKENS {
                return Err(RulesError::at(
                    file,
                    tok.pos,
                    format!(
                        "with its macros expanded, this statement has more than {} words and signs",
                        super::lexer::MAX_TOKENS
                    ),
                ));
            }
        }
        // The End token sits just after the last real token, wherever that is.
        let last_end = out.iter().rev().find(|t| t.kind != Kind::End).map_or(0, |t| t.end);
        if let Some(end) = out.last_mut().filter(|t| t.kind == Kind::End) {
            end.start = last_end;
            end.end = last_end;
        }
        Ok(Some((out, extra)))
    }
}
