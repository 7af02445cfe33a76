//! The statement parser: `set`, `table` and the dispatch to rules; builds the
//! [`Ruleset`] and checks table references once the whole file is read.
//!
//! The data plane's limits (rules per ruleset, entries per table) and the uniqueness of
//! labels are checked here, where the rule or table that crosses them has a position.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::addr;
use super::antispoof;
use super::ast::{Action, BlockPolicy, Options, Pos, Ruleset, Table};
use super::block;
use super::cursor::{Cursor, suggest};
use super::error::{RulesError, clip, clip_path};
use super::files::TableFiles;
use super::interfaces::{self, IfaceAddr};
use super::lexer::{Kind, Lexer, unquote};
use super::rule;
use super::source::{self, MAX_TABLE_FILE_BYTES, ReadError};
use super::tables::{self, TableTextError};
use super::validate;
use crate::compile::MAX_TABLE_ENTRIES;
use filter_common::MAX_RULES;

/// Parses a whole ruleset (see the module documentation of `rules` for the language).
pub(super) fn parse(src: &str, file: &str, base_dir: &Path) -> Result<Ruleset, RulesError> {
    parse_with(src, file, TableFiles { base_dir, confined: false })
}

/// [`parse`] with table files resolved by `files` (confined to a directory for the API).
pub(super) fn parse_with(src: &str, file: &str, files: TableFiles<'_>) -> Result<Ruleset, RulesError> {
    let mut lexer = Lexer::new(src, file);
    let mut default: Option<(Action, Pos)> = None;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut defined_at: HashMap<String, Pos> = HashMap::new();
    // Table references are checked at the end so that tables may be defined anywhere.
    let mut references: Vec<(Pos, String)> = Vec::new();
    let mut rules = Vec::new();
    let mut options = Options::default();
    let mut labels: HashMap<String, Pos> = HashMap::new();
    // Interface addresses in rules: each a table of its own, added at the end.
    let mut iface_refs: Vec<(Pos, IfaceAddr)> = Vec::new();

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
                iface_refs.extend(meta.iface_refs);
                rules.push(rule);
            }
            Some("antispoof") => {
                for (rule, meta) in antispoof::parse(&mut c, file)? {
                    if rules.len() == MAX_RULES {
                        return Err(c.err(
                            first.pos,
                            format!("this makes rule {}; a ruleset holds at most {MAX_RULES} rules", MAX_RULES + 1),
                        ));
                    }
                    iface_refs.extend(meta.iface_refs);
                    rules.push(rule);
                }
            }
            Some("table") => {
                let (name, pos, table, ifaces) = parse_table(&mut c, files)?;
                if !ifaces.is_empty() {
                    options.interface_tables.insert(name.clone(), ifaces);
                }
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
                Setting::BlockPolicy(policy) => options.block_policy = policy,
                Setting::Skip(names) => {
                    for name in names {
                        if !options.skip.contains(&name) {
                            options.skip.push(name);
                        }
                    }
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

    for (pos, r) in iface_refs {
        let (name, table) = interfaces::reference_table(&r);
        if defined_at.contains_key(&name) {
            return Err(RulesError::at(file, pos, format!("`{name}` names a table of its own; rename table <{name}>")));
        }
        options.interface_tables.insert(name.clone(), vec![r]);
        tables.insert(name, table);
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
    /// `set block-policy drop|return`.
    BlockPolicy(BlockPolicy),
    /// `set skip on IF` or `set skip on { IF ... }`.
    Skip(Vec<String>),
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
        Some("block-policy") => return Ok(Setting::BlockPolicy(block::parse_policy(c)?)),
        Some("skip") => return Ok(Setting::Skip(interfaces::parse_skip(c)?)),
        _ => {
            return Err(c.unexpected_kw(
                what,
                "`default`, `limit`, `timeout`, `block-policy` or `skip` after `set`",
                &["default", "limit", "timeout", "block-policy", "skip"],
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
fn parse_table(c: &mut Cursor<'_>, files: TableFiles<'_>) -> Result<(String, Pos, Table, Vec<IfaceAddr>), RulesError> {
    c.next();
    let name_tok = c.next();
    if name_tok.kind != Kind::Table {
        return Err(c.unexpected(name_tok, "a table name like `<name>` after `table`"));
    }
    let text = c.text(name_tok);
    let name = text[1..text.len() - 1].to_owned();

    let tok = c.next();
    let mut ifaces = Vec::new();
    let table = match tok.kind {
        Kind::LBrace => {
            let mut entries = Vec::new();
            loop {
                let item = c.next();
                match item.kind {
                    Kind::RBrace => break,
                    Kind::Word
                        if !interfaces::is_bare(c.text(item))
                            && let Some(r) = interfaces::parse_word(c.text(item)) =>
                    {
                        ifaces.push(r.map_err(|m| c.err(item.pos, m))?);
                    }
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
            let path = files.resolve(&written).map_err(|m| c.err(path_tok.pos, m))?;
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
    Ok((name, name_tok.pos, table, ifaces))
}
