//! Splits ruleset text into statements of tokens, each token with its position.
//!
//! A statement ends at a newline, except that a newline inside `{ ... }` is plain
//! whitespace (so lists may span lines) and a `\` as the last character of a line joins
//! the next line. `#` starts a comment that runs to the end of the line.
//!
//! The lexer works on bytes: every character with meaning to the language is ASCII, so
//! multi-byte UTF-8 sequences only occur inside words, strings and comments. Columns are
//! counted in characters by not counting UTF-8 continuation bytes.
//!
//! Input is bounded here: control characters (NUL, ESC, ...) are refused wherever they
//! are, words are at most [`MAX_WORD`] bytes, strings [`MAX_STRING`], table names
//! [`MAX_TABLE_NAME`], so that nothing after the lexer meets a huge or invisible token,
//! and a statement has at most [`MAX_TOKENS`] tokens.

use super::ast::Pos;
use super::error::RulesError;
use super::source::{control_name, is_control_start};

/// Longest word, in bytes: no keyword, number, address or prefix comes close.
pub const MAX_WORD: usize = 256;
/// Longest string between the quotes, in bytes: a path (`PATH_MAX`).
pub const MAX_STRING: usize = 4096;
/// Longest table name between `<` and `>`, in bytes.
pub const MAX_TABLE_NAME: usize = 63;
/// Most tokens in one statement: the longest a statement needs to be is an inline table
/// of the most entries a table may hold, with commas. Bounds the parser's memory.
pub const MAX_TOKENS: usize = 2 * crate::compile::MAX_TABLE_ENTRIES + 64;

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
    /// `(` opening a rule's state options, as in `keep state (max-src-conn 10)`. The
    /// lexer never makes one: `(` and `)` are word characters (interface addresses
    /// `(em0)`, `return-icmp(port-unr)`); only [`super::cursor::Cursor::split_parens`]
    /// does, once the parser knows a list of state options starts.
    LParen,
    /// `)` closing a rule's state options; made only by `Cursor::split_parens`, as [`Kind::LParen`].
    RParen,
    /// A comparison of pf's port syntax: `<`, `<=`, `>`, `>=`, `<>`, `><`, `!=` (a `<`
    /// right before a name character starts a table name instead).
    Op,
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
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c | b'{' | b'}' | b',' | b'!' | b'"' | b'<' | b'>' | b'#' | b'\\')
}

/// Whether `rest` holds nothing but whitespace and comments up to the end of the file.
/// Stops at the first other byte, so each continuation scans only up to the next token.
fn only_blanks_and_comments(rest: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0c => i += 1,
            b'#' => {
                i += rest[i..].iter().position(|&b| b == b'\n').unwrap_or(rest.len() - i);
            }
            _ => return false,
        }
    }
    true
}

/// Bytes allowed in a table name.
fn table_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The value of a string token: the text between the quotes, with `\"` and `\\`
/// unescaped (any other backslash is kept as written).
pub(super) fn unquote(text: &str) -> String {
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
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
        Lexer { src, bytes: src.as_bytes(), file, i: 0, line: 1, col: 1, last_end: Pos { line: 1, col: 1 } }
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
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

    /// An error if the character at the current position is a control character.
    fn refuse_control(&self) -> Result<(), RulesError> {
        let b = self.bytes[self.i];
        if !is_control_start(b, self.bytes.get(self.i + 1).copied()) {
            return Ok(());
        }
        let name = self.src[self.i..].chars().next().and_then(control_name).unwrap_or_default();
        Err(self.err(self.pos(), format!("unexpected control character {name}; a ruleset is plain text")))
    }

    /// How to name the character at the current position in a "found ..." message.
    fn found_here(&self) -> String {
        match self.src[self.i..].chars().next() {
            None | Some('\n' | '\r') => "end of line".to_owned(),
            Some('\t') => "a tab".to_owned(),
            Some(ch) => format!("`{}`", super::error::clip(ch.encode_utf8(&mut [0; 4]))),
        }
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> RulesError {
        RulesError::at(self.file, pos, message)
    }

    /// The next statement, ending with a [`Kind::End`] token, or `None` at end of file.
    pub fn next_statement(&mut self) -> Result<Option<Vec<Token>>, RulesError> {
        let mut toks: Vec<Token> = Vec::new();
        // How many `{` are not yet closed, and where the first of them is; newlines
        // inside them do not end the statement.
        let mut open: u64 = 0;
        let mut first_open = Pos::default();
        loop {
            let Some(b) = self.peek() else {
                if open > 0 {
                    return Err(self.err(first_open, "this `{` is never closed; expected `}`"));
                }
                return Ok(self.finish(toks));
            };
            let start = self.i;
            let pos = self.pos();
            let kind = match b {
                b' ' | b'\t' | b'\r' | 0x0c => {
                    self.bump();
                    continue;
                }
                b'\n' => {
                    self.newline();
                    if open == 0 && !toks.is_empty() {
                        return Ok(self.finish(toks));
                    }
                    continue;
                }
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.refuse_control()?;
                        self.bump();
                    }
                    continue;
                }
                b'\\' => {
                    self.continuation()?;
                    continue;
                }
                b'{' => {
                    if open == 0 {
                        first_open = pos;
                    }
                    open += 1;
                    self.bump();
                    Kind::LBrace
                }
                b'}' => {
                    // A stray `}` is left for the parser to report in context.
                    open = open.saturating_sub(1);
                    self.bump();
                    Kind::RBrace
                }
                b',' => {
                    self.bump();
                    Kind::Comma
                }
                b'!' if self.bytes.get(self.i + 1) == Some(&b'=') => {
                    self.bump();
                    self.bump();
                    Kind::Op
                }
                b'!' => {
                    self.bump();
                    Kind::Bang
                }
                b'"' => {
                    self.string(pos)?;
                    Kind::Str
                }
                b'<' if self.bytes.get(self.i + 1).is_some_and(|&b| table_name_byte(b)) => {
                    self.table(pos)?;
                    Kind::Table
                }
                b'<' | b'>' => {
                    self.bump();
                    if matches!(self.peek(), Some(b'=' | b'<' | b'>')) && self.bytes[self.i - 1] != self.bytes[self.i] {
                        self.bump();
                    }
                    Kind::Op
                }
                _ => {
                    while self.peek().is_some_and(|b| !ends_word(b)) {
                        self.refuse_control()?;
                        if self.i - start == MAX_WORD {
                            return Err(self.err(
                                pos,
                                format!(
                                    "this word is longer than {MAX_WORD} bytes; no keyword, \
                                     number or address is that long"
                                ),
                            ));
                        }
                        self.bump();
                    }
                    Kind::Word
                }
            };
            if toks.len() == MAX_TOKENS {
                return Err(self.err(
                    pos,
                    format!(
                        "this statement has more than {MAX_TOKENS} words and signs; the longest \
                         a statement needs is a table of {} entries",
                        crate::compile::MAX_TABLE_ENTRIES
                    ),
                ));
            }
            toks.push(Token { kind, pos, start, end: self.i });
            self.last_end = self.pos();
        }
    }

    /// Closes a statement with its `End` token; `None` if it has no tokens.
    fn finish(&self, mut toks: Vec<Token>) -> Option<Vec<Token>> {
        let end = toks.last()?.end;
        toks.push(Token { kind: Kind::End, pos: self.last_end, start: end, end });
        Some(toks)
    }

    /// A `\`: only valid as the last character of a line (trailing blanks are
    /// forgiven: they are invisible in most editors). Joins the next line, which must
    /// exist: a `\` on the last line is what a truncated file looks like, and the rule
    /// it cuts short may match far more than the whole rule would.
    fn continuation(&mut self) -> Result<(), RulesError> {
        let pos = self.pos();
        let rest = &self.bytes[self.i + 1..];
        let blanks = rest.iter().take_while(|&&b| matches!(b, b' ' | b'\t' | b'\r' | 0x0c)).count();
        match rest.get(blanks) {
            None => Err(self.dangling(pos)),
            Some(b'\n') if only_blanks_and_comments(&rest[blanks..]) => Err(self.dangling(pos)),
            Some(b'\n') => {
                for _ in 0..=blanks {
                    self.bump();
                }
                self.newline();
                Ok(())
            }
            Some(_) => Err(self.err(pos, "unexpected `\\`; a `\\` joins lines only as the last character of a line")),
        }
    }

    fn dangling(&self, pos: Pos) -> RulesError {
        self.err(pos, "this `\\` continues the statement after the end of the file; is the file cut short?")
    }

    /// A double-quoted string; the opening quote is at the current position.
    fn string(&mut self, pos: Pos) -> Result<(), RulesError> {
        let start = self.i;
        self.bump();
        loop {
            if self.i - start - 1 > MAX_STRING {
                return Err(self.err(
                    pos,
                    format!(
                        "this string is longer than {MAX_STRING} bytes (labels are at most \
                         {} bytes, paths {MAX_STRING})",
                        super::rule::MAX_LABEL
                    ),
                ));
            }
            if self.i < self.bytes.len() {
                self.refuse_control()?;
            }
            match self.peek() {
                None | Some(b'\n') => {
                    return Err(self.err(pos, "this string is never closed; expected `\"` before the end of the line"));
                }
                Some(b'"') => {
                    self.bump();
                    return Ok(());
                }
                Some(b'\\') => {
                    self.bump();
                    if self.peek().is_some_and(|b| b != b'\n') {
                        self.refuse_control()?;
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
        let name_start = self.i;
        while self.peek().is_some_and(table_name_byte) {
            if self.i - name_start == MAX_TABLE_NAME {
                return Err(self.err(pos, format!("table name longer than {MAX_TABLE_NAME} characters")));
            }
            self.bump();
        }
        if self.i < self.bytes.len() {
            self.refuse_control()?;
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
            out.push(toks.iter().map(|t| (t.kind, &src[t.start..t.end], t.pos.line, t.pos.col)).collect());
        }
        Ok(out)
    }

    #[test]
    fn tokens_and_positions() {
        let s = lex("pass in from !<t> to { 10.0.0.0/8, ::1 } label \"a \\\"b\\\"\" # c\n").unwrap();
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
        let s = lex("# header\n\nset default block\r\npass \\  \n  in\ttable <x> {\n 1.2.3.4 # c\n}\nblock").unwrap();
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
        assert_eq!(s[2], vec![(Kind::Word, "block", 8, 1), (Kind::End, "", 8, 6)]);
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
        // pf's port comparisons are operators; a `<` before a name character is a table.
        let ops = lex("port <> != < <= > >= >< <t>\u{c}x").unwrap();
        let kinds: Vec<(Kind, &str)> = ops[0].iter().filter(|t| t.0 != Kind::End).map(|t| (t.0, t.1)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Word, "port"),
                (Kind::Op, "<>"),
                (Kind::Op, "!="),
                (Kind::Op, "<"),
                (Kind::Op, "<="),
                (Kind::Op, ">"),
                (Kind::Op, ">="),
                (Kind::Op, "><"),
                (Kind::Table, "<t>"),
                (Kind::Word, "x"),
            ],
            "a form feed is whitespace"
        );
        assert_eq!(lex("table <t> {\n1.2.3.4\n").unwrap_err(), "t.conf:1:11: this `{` is never closed; expected `}`");
    }

    #[test]
    fn backslash_at_end_of_file() {
        let dangling = "this `\\` continues the statement after the end of the file; is the file cut short?";
        for src in ["pass \\", "pass \\  ", "pass \\\n", "pass \\ \r\n\n  # c\n\n", "x\nblock \\\n# end"] {
            let line = if src.starts_with('x') { 2 } else { 1 };
            let col = if line == 2 { 7 } else { 6 };
            assert_eq!(lex(src).unwrap_err(), format!("t.conf:{line}:{col}: {dangling}"), "{src:?}");
        }
        // A continuation onto an empty line in the middle of the file ends the statement.
        assert_eq!(lex("pass \\\n\nblock").unwrap().len(), 2);
    }

    #[test]
    fn control_characters_are_refused_everywhere() {
        for (src, col, name) in [
            ("pass in proto tcp\0", 18, "U+0000 (NUL)"),
            ("pass \u{1b}[31m", 6, "U+001B (ESC)"),
            ("pass # comment \u{7}", 16, "U+0007 (BEL)"),
            ("pass label \"a\u{0}\"", 14, "U+0000 (NUL)"),
            ("pass label \"a\\\u{0}\"", 15, "U+0000 (NUL)"),
            ("from <a\u{0}>", 8, "U+0000 (NUL)"),
            ("pass\u{b}in", 5, "U+000B (VT)"),
            ("pass é\u{85}", 7, "U+0085"),
            ("pass \u{7f}", 6, "U+007F (DEL)"),
        ] {
            assert_eq!(
                lex(src).unwrap_err(),
                format!("t.conf:1:{col}: unexpected control character {name}; a ruleset is plain text"),
                "{src:?}"
            );
        }
        assert!(lex("pass\tin\r\n").is_ok());
        assert_eq!(
            lex("from <a\tb>").unwrap_err(),
            "t.conf:1:8: expected a letter, digit, `_`, `-`, `.` or `>` in the table name, found a tab"
        );
    }

    #[test]
    fn long_tokens_are_refused() {
        let word = "x".repeat(MAX_WORD);
        assert!(lex(&format!("pass {word}")).is_ok());
        assert_eq!(
            lex(&format!("pass {word}x")).unwrap_err(),
            "t.conf:1:6: this word is longer than 256 bytes; no keyword, number or address is that long"
        );
        let string = "é".repeat(MAX_STRING / 2);
        assert!(lex(&format!("label \"{string}\"")).is_ok());
        assert_eq!(
            lex(&format!("label \"{string}x\"")).unwrap_err(),
            "t.conf:1:7: this string is longer than 4096 bytes (labels are at most 63 bytes, paths 4096)"
        );
        let name = "t".repeat(MAX_TABLE_NAME);
        assert!(lex(&format!("from <{name}>")).is_ok());
        assert_eq!(lex(&format!("from <{name}t>")).unwrap_err(), "t.conf:1:6: table name longer than 63 characters");
    }

    #[test]
    fn statements_have_a_bounded_number_of_tokens() {
        let ok = format!("t {}", ",".repeat(MAX_TOKENS - 1));
        assert_eq!(lex(&ok).unwrap()[0].len(), MAX_TOKENS + 1, "with the End token");
        assert_eq!(
            lex(&format!("{ok},")).unwrap_err(),
            format!(
                "t.conf:1:{}: this statement has more than 2000064 words and signs; the longest a statement needs is a table of 1000000 entries",
                MAX_TOKENS + 2
            )
        );
    }

    #[test]
    fn deep_braces_take_no_memory() {
        let src = format!("pass {}", "{".repeat(100_000));
        assert_eq!(lex(&src).unwrap_err(), "t.conf:1:6: this `{` is never closed; expected `}`");
    }
}
