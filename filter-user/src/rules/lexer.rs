//! Splits ruleset text into statements of tokens, each token with its position.
//!
//! A statement ends at a newline, except that a newline inside `{ ... }` is plain
//! whitespace (so lists may span lines) and a `\` as the last character of a line joins
//! the next line. `#` starts a comment that runs to the end of the line.
//!
//! The lexer works on bytes: every character with meaning to the language is ASCII, so
//! multi-byte UTF-8 sequences only occur inside words, strings and comments. Columns are
//! counted in characters by not counting UTF-8 continuation bytes.

use super::ast::Pos;
use super::error::RulesError;

/// What a token is. The text is not stored: it is `src[start..end]`, which keeps
/// [`Token`] `Copy` and lets the parser rebuild the rule's source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A run of characters that are not whitespace or punctuation: keywords, numbers,
    /// addresses, port ranges (`8000:8080`), flags (`S/SA`), rates (`10/s`), names.
    Word,
    /// A double-quoted string on one line; the text includes the quotes (see [`unquote`]).
    Str,
    /// `<name>`; the text includes the angle brackets.
    Table,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `!`
    Bang,
    /// End of the statement; positioned just after its last token, so "found end of
    /// line" errors point where something is missing.
    End,
}

/// One token: its kind, where it starts, and its byte span in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    /// What it is.
    pub kind: Kind,
    /// Line and column of its first character.
    pub pos: Pos,
    /// Byte offset of its first byte.
    pub start: usize,
    /// Byte offset just past its last byte.
    pub end: usize,
}

/// Bytes that end a word.
fn ends_word(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'{'
            | b'}'
            | b','
            | b'!'
            | b'"'
            | b'<'
            | b'>'
            | b'#'
            | b'\\'
    )
}

/// Bytes allowed in a table name.
fn table_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The value of a string token: the text between the quotes, with `\"` and `\\`
/// unescaped (any other backslash is kept as written).
pub(super) fn unquote(text: &str) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            match chars.next() {
                Some(next @ ('"' | '\\')) => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Produces statements one at a time, so that errors come out in file order.
pub(super) struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    file: &'a str,
    /// Byte offset of the next byte.
    i: usize,
    /// Line of the next byte.
    line: u32,
    /// Column of the next character.
    col: u32,
    /// Position just after the last token produced.
    last_end: Pos,
}

impl<'a> Lexer<'a> {
    /// A lexer over `src`; `file` is used in errors.
    pub fn new(src: &'a str, file: &'a str) -> Self {
        Lexer {
            src,
            bytes: src.as_bytes(),
            file,
            i: 0,
            line: 1,
            col: 1,
            last_end: Pos { line: 1, col: 1 },
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    /// Steps over one byte that is not a newline.
    fn bump(&mut self) {
        if self.bytes[self.i] & 0xC0 != 0x80 {
            self.col += 1;
        }
        self.i += 1;
    }

    /// Steps over a newline byte.
    fn newline(&mut self) {
        self.i += 1;
        self.line += 1;
        self.col = 1;
    }

    /// How to name the character at the current position in a "found ..." message.
    fn found_here(&self) -> String {
        match self.src[self.i..].chars().next() {
            None | Some('\n' | '\r') => "end of line".to_owned(),
            Some(ch) => format!("`{ch}`"),
        }
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> RulesError {
        RulesError::at(self.file, pos, message)
    }

    /// The next statement, ending with a [`Kind::End`] token, or `None` at end of file.
    pub fn next_statement(&mut self) -> Result<Option<Vec<Token>>, RulesError> {
        let mut toks: Vec<Token> = Vec::new();
        // Positions of the `{` not yet closed; newlines inside them do not end the
        // statement.
        let mut open: Vec<Pos> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                if let Some(&first) = open.first() {
                    return Err(self.err(first, "this `{` is never closed; expected `}`"));
                }
                return Ok(self.finish(toks));
            };
            let start = self.i;
            let pos = self.pos();
            let kind = match b {
                b' ' | b'\t' | b'\r' => {
                    self.bump();
                    continue;
                }
                b'\n' => {
                    self.newline();
                    if open.is_empty() && !toks.is_empty() {
                        return Ok(self.finish(toks));
                    }
                    continue;
                }
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.bump();
                    }
                    continue;
                }
                b'\\' => {
                    self.continuation()?;
                    continue;
                }
                b'{' => {
                    open.push(pos);
                    self.bump();
                    Kind::LBrace
                }
                b'}' => {
                    // A stray `}` is left for the parser to report in context.
                    open.pop();
                    self.bump();
                    Kind::RBrace
                }
                b',' => {
                    self.bump();
                    Kind::Comma
                }
                b'!' => {
                    self.bump();
                    Kind::Bang
                }
                b'"' => {
                    self.string(pos)?;
                    Kind::Str
                }
                b'<' => {
                    self.table(pos)?;
                    Kind::Table
                }
                b'>' => {
                    return Err(self.err(pos, "unexpected `>`; table names are written `<name>`"));
                }
                _ => {
                    while self.peek().is_some_and(|b| !ends_word(b)) {
                        self.bump();
                    }
                    Kind::Word
                }
            };
            toks.push(Token {
                kind,
                pos,
                start,
                end: self.i,
            });
            self.last_end = self.pos();
        }
    }

    /// Closes a statement with its `End` token; `None` if it has no tokens.
    fn finish(&self, mut toks: Vec<Token>) -> Option<Vec<Token>> {
        let end = toks.last()?.end;
        toks.push(Token {
            kind: Kind::End,
            pos: self.last_end,
            start: end,
            end,
        });
        Some(toks)
    }

    /// A `\`: only valid as the last character of a line (trailing blanks are
    /// forgiven: they are invisible in most editors). Joins the next line.
    fn continuation(&mut self) -> Result<(), RulesError> {
        let pos = self.pos();
        let rest = &self.bytes[self.i + 1..];
        let blanks = rest
            .iter()
            .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\r'))
            .count();
        match rest.get(blanks) {
            None => {
                self.i = self.bytes.len();
                Ok(())
            }
            Some(b'\n') => {
                for _ in 0..=blanks {
                    self.bump();
                }
                self.newline();
                Ok(())
            }
            Some(_) => Err(self.err(
                pos,
                "unexpected `\\`; a `\\` joins lines only as the last character of a line",
            )),
        }
    }

    /// A double-quoted string; the opening quote is at the current position.
    fn string(&mut self, pos: Pos) -> Result<(), RulesError> {
        self.bump();
        loop {
            match self.peek() {
                None | Some(b'\n') => {
                    return Err(self.err(
                        pos,
                        "this string is never closed; expected `\"` before the end of the line",
                    ));
                }
                Some(b'"') => {
                    self.bump();
                    return Ok(());
                }
                Some(b'\\') => {
                    self.bump();
                    if self.peek().is_some_and(|b| b != b'\n') {
                        self.bump();
                    }
                }
                Some(_) => self.bump(),
            }
        }
    }

    /// `<name>`; the `<` is at the current position.
    fn table(&mut self, pos: Pos) -> Result<(), RulesError> {
        self.bump();
        while self.peek().is_some_and(table_name_byte) {
            self.bump();
        }
        if self.peek() != Some(b'>') {
            return Err(self.err(
                self.pos(),
                format!(
                    "expected a letter, digit, `_`, `-`, `.` or `>` in the table name, found {}",
                    self.found_here()
                ),
            ));
        }
        if self.bytes[self.i - 1] == b'<' {
            return Err(self.err(pos, "empty table name `<>`"));
        }
        self.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token as (kind, text, line, col).
    type Tok<'a> = (Kind, &'a str, u32, u32);

    /// All statements as token lists.
    fn lex(src: &str) -> Result<Vec<Vec<Tok<'_>>>, String> {
        let mut lx = Lexer::new(src, "t.conf");
        let mut out = Vec::new();
        while let Some(toks) = lx.next_statement().map_err(|e| e.to_string())? {
            out.push(
                toks.iter()
                    .map(|t| (t.kind, &src[t.start..t.end], t.pos.line, t.pos.col))
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn tokens_and_positions() {
        let s =
            lex("pass in from !<t> to { 10.0.0.0/8, ::1 } label \"a \\\"b\\\"\" # c\n").unwrap();
        assert_eq!(
            s,
            vec![vec![
                (Kind::Word, "pass", 1, 1),
                (Kind::Word, "in", 1, 6),
                (Kind::Word, "from", 1, 9),
                (Kind::Bang, "!", 1, 14),
                (Kind::Table, "<t>", 1, 15),
                (Kind::Word, "to", 1, 19),
                (Kind::LBrace, "{", 1, 22),
                (Kind::Word, "10.0.0.0/8", 1, 24),
                (Kind::Comma, ",", 1, 34),
                (Kind::Word, "::1", 1, 36),
                (Kind::RBrace, "}", 1, 40),
                (Kind::Word, "label", 1, 42),
                (Kind::Str, "\"a \\\"b\\\"\"", 1, 48),
                (Kind::End, "", 1, 57),
            ]]
        );
        assert_eq!(unquote("\"a \\\"b\\\" \\n\""), "a \"b\" \\n");
    }

    #[test]
    fn statements_lines_and_continuations() {
        let s = lex(
            "# header\n\nset default block\r\npass \\  \n  in\ttable <x> {\n 1.2.3.4 # c\n}\nblock",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            vec![
                (Kind::Word, "set", 3, 1),
                (Kind::Word, "default", 3, 5),
                (Kind::Word, "block", 3, 13),
                (Kind::End, "", 3, 18),
            ]
        );
        assert_eq!(s[1][1], (Kind::Word, "in", 5, 3));
        assert_eq!(s[1][5], (Kind::Word, "1.2.3.4", 6, 2));
        assert_eq!(s[1][6], (Kind::RBrace, "}", 7, 1));
        assert_eq!(s[1][7], (Kind::End, "", 7, 2));
        assert_eq!(
            s[2],
            vec![(Kind::Word, "block", 8, 1), (Kind::End, "", 8, 6)]
        );
    }

    #[test]
    fn columns_count_characters() {
        let s = lex("label \"é€\" x").unwrap();
        assert_eq!(s[0][2], (Kind::Word, "x", 1, 12));
    }

    #[test]
    fn lexer_errors() {
        assert_eq!(
            lex("pass \\ x").unwrap_err(),
            "t.conf:1:6: unexpected `\\`; a `\\` joins lines only as the last character of a line"
        );
        assert_eq!(
            lex("label \"abc\nx").unwrap_err(),
            "t.conf:1:7: this string is never closed; expected `\"` before the end of the line"
        );
        assert_eq!(
            lex("\n  from <a b>").unwrap_err(),
            "t.conf:2:10: expected a letter, digit, `_`, `-`, `.` or `>` in the table name, found ` `"
        );
        assert_eq!(
            lex("from <ab").unwrap_err(),
            "t.conf:1:9: expected a letter, digit, `_`, `-`, `.` or `>` in the table name, found end of line"
        );
        assert_eq!(
            lex("from <>").unwrap_err(),
            "t.conf:1:6: empty table name `<>`"
        );
        assert_eq!(
            lex("a > b").unwrap_err(),
            "t.conf:1:3: unexpected `>`; table names are written `<name>`"
        );
        assert_eq!(
            lex("table <t> {\n1.2.3.4\n").unwrap_err(),
            "t.conf:1:11: this `{` is never closed; expected `}`"
        );
    }

    #[test]
    fn backslash_at_end_of_file() {
        let s = lex("pass \\").unwrap();
        assert_eq!(
            s,
            vec![vec![(Kind::Word, "pass", 1, 1), (Kind::End, "", 1, 5)]]
        );
    }
}
