//! The statement parser: `set`, `table` and the dispatch to rules; builds the
//! [`Ruleset`] and checks table references once the whole file is read.
//!
//! The data plane's limits (rules per ruleset, entries per table) and the uniqueness of
//! labels are checked here, where the rule or table that crosses them has a position.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::addr;
use super::antispoof;
use super::ast::{Action, BlockPolicy, Options, Pos, Rule, Ruleset, Table};
use super::block;
use super::cursor::{Cursor, suggest};
use super::error::{RulesError, clip, clip_path};
use super::files::TableFiles;
use super::interfaces::{self, IfaceAddr};
use super::lexer::{Kind, Lexer, unquote};
use super::macros::Macros;
use super::rule;
use super::scope;
use super::source::{self, MAX_RULESET_BYTES, MAX_TABLE_FILE_BYTES, ReadError};
use super::tables::{self, TableTextError};
use super::validate;
use crate::compile::MAX_TABLE_ENTRIES;
use filter_common::{MAX_RATE_RULES, MAX_RULES};

/// How to read a ruleset.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Skip statements that use constructs xdpwall leaves to other tools (NAT, routing
    /// options, scrub, queues, anchors, ...) instead of refusing the file; each one is
    /// listed in [`Parsed::skipped`].
    pub skip_unsupported: bool,
}

/// A ruleset with what reading it had to say.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The ruleset.
    pub ruleset: Ruleset,
    /// Accepted constructs that do less here than in pf (`modulate state`, `set
    /// loginterface`, ...), at their position.
    pub warnings: Vec<RulesError>,
    /// Statements skipped with `skip_unsupported`: the statement's position and why.
    pub skipped: Vec<RulesError>,
}

/// Deepest `include` nesting.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Parses a whole ruleset (see the module documentation of `rules` for the language).
pub(super) fn parse(src: &str, file: &str, base_dir: &Path) -> Result<Ruleset, RulesError> {
    parse_with(src, file, TableFiles { base_dir, confined: false })
}

/// [`parse`] with table files resolved by `files` (confined to a directory for the API).
pub(super) fn parse_with(src: &str, file: &str, files: TableFiles<'_>) -> Result<Ruleset, RulesError> {
    parse_full(src, file, files, ParseOptions::default()).map(|p| p.ruleset)
}

/// Like [`parse_with`], with options, returning warnings and skipped statements too.
pub(super) fn parse_full(
    src: &str,
    file: &str,
    files: TableFiles<'_>,
    options: ParseOptions,
) -> Result<Parsed, RulesError> {
    let mut st = State { options, ..State::default() };
    st.file(src, file, files, 0)?;
    for (file, pos, r) in std::mem::take(&mut st.iface_refs) {
        let (name, table) = interfaces::reference_table(&r);
        if st.defined_at.contains_key(&name) {
            return Err(RulesError::at(
                &file,
                pos,
                format!("`{name}` names a table of its own; rename table <{name}>"),
            ));
        }
        st.settings.interface_tables.insert(name.clone(), vec![r]);
        st.tables.insert(name, table);
    }
    for (file, pos, name) in &st.references {
        if !st.tables.contains_key(name) {
            return Err(RulesError::at(file, *pos, format!("unknown table <{name}>")));
        }
    }
    check_dynamic_tables(&st.tables, &st.rules).map_err(|(pos, message)| RulesError::at(file, pos, message))?;
    let ruleset = Ruleset {
        default_action: st.default.map_or(Action::Pass, |(action, _)| action),
        tables: st.tables,
        rules: st.rules,
        options: st.settings,
    };
    Ok(Parsed { ruleset, warnings: st.warnings, skipped: st.skipped })
}

/// What the statements read so far (in this file and the files it includes) built.
#[derive(Default)]
struct State {
    options: ParseOptions,
    default: Option<(Action, Pos)>,
    tables: BTreeMap<String, Table>,
    defined_at: HashMap<String, Pos>,
    // Table references are checked at the end so that tables may be defined anywhere.
    references: Vec<(String, Pos, String)>,
    rules: Vec<Rule>,
    settings: Options,
    labels: HashMap<String, Pos>,
    macros: Macros,
    warnings: Vec<RulesError>,
    skipped: Vec<RulesError>,
    /// Files being read (the include chain), to refuse an include cycle by name.
    open_files: Vec<PathBuf>,
    /// Rules with a rate limit so far.
    rate_rules: u32,
    /// Interface addresses in rules (`(em0)`, `em0:network`, `self`): each a table of
    /// its own, added at the end.
    iface_refs: Vec<(String, Pos, IfaceAddr)>,
}

impl State {
    /// Reads the statements of one file (`depth`: how many includes deep).
    fn file(&mut self, src: &str, file: &str, files: TableFiles<'_>, depth: usize) -> Result<(), RulesError> {
        let mut lexer = Lexer::new(src, file);
        while let Some(toks) = lexer.next_statement()? {
            let raw = Cursor::new(src, file, toks);
            if let Some((pos, message)) = scope::refused(&raw) {
                if self.options.skip_unsupported {
                    self.skipped.push(raw.err(pos, message));
                    continue;
                }
                return Err(raw.err(pos, message));
            }
            let toks = raw.into_tokens();
            if self.macros.define(&toks, |t| &src[t.start..t.end], file)? {
                continue;
            }
            // Only statements that begin with a keyword are expanded: a file that is not
            // a ruleset fails at its first word, quoted briefly, not inside an expansion.
            let keyword = matches!(
                toks.first().filter(|t| t.kind == Kind::Word).map(|t| &src[t.start..t.end]),
                Some("pass" | "block" | "table" | "set" | "include" | "antispoof")
            );
            let expanded =
                if keyword { self.macros.expand(&toks, |t| &src[t.start..t.end], src.len(), file)? } else { None };
            let (toks, extra) = expanded.unwrap_or((toks, String::new()));
            let mut c = Cursor::with_expansions(src, &extra, file, toks);
            self.statement(&mut c, file, files, depth)?;
        }
        Ok(())
    }

    fn statement(
        &mut self,
        c: &mut Cursor<'_>,
        file: &str,
        files: TableFiles<'_>,
        depth: usize,
    ) -> Result<(), RulesError> {
        let first = c.peek();
        match c.word(first) {
            Some("pass" | "block") => {
                if self.rules.len() == MAX_RULES {
                    return Err(c.err(
                        first.pos,
                        format!("this is rule {}; a ruleset holds at most {MAX_RULES} rules", MAX_RULES + 1),
                    ));
                }
                let (mut rule, meta) = rule::parse_rule(c)?;
                if let Some((pos, message)) = validate::check_rule(&rule, &meta) {
                    return Err(c.err(pos, message));
                }
                if let (Some(label), Some(pos)) = (&rule.label, meta.label) {
                    if let Some(earlier) = self.labels.get(label) {
                        return Err(c.err(
                            pos,
                            format!(
                                "label \"{}\" is already used on line {}; labels name one rule each",
                                clip(label),
                                earlier.line
                            ),
                        ));
                    }
                    self.labels.insert(label.clone(), pos);
                }
                if let Some(pos) = meta.rate {
                    self.rate_rules += 1;
                    if self.rate_rules > MAX_RATE_RULES {
                        return Err(c.err(
                            pos,
                            format!(
                                "this is rule {} with a rate limit; a ruleset holds at most {MAX_RATE_RULES}",
                                self.rate_rules
                            ),
                        ));
                    }
                }
                self.warnings.extend(meta.warnings.iter().map(|(pos, m)| c.err(*pos, m.clone())));
                self.references.extend(meta.table_refs.iter().map(|(pos, name)| (file.to_owned(), *pos, name.clone())));
                self.iface_refs.extend(meta.iface_refs.iter().map(|(pos, r)| (file.to_owned(), *pos, r.clone())));
                if depth > 0 {
                    rule.file = Some(file.to_owned());
                }
                self.rules.push(rule);
            }
            Some("antispoof") => {
                for (rule, meta) in antispoof::parse(c, file)? {
                    if self.rules.len() == MAX_RULES {
                        return Err(c.err(
                            first.pos,
                            format!("this makes rule {}; a ruleset holds at most {MAX_RULES} rules", MAX_RULES + 1),
                        ));
                    }
                    self.iface_refs.extend(meta.iface_refs.iter().map(|(pos, r)| (file.to_owned(), *pos, r.clone())));
                    self.rules.push(rule);
                }
            }
            Some("table") => {
                let (name, pos, table, ifaces) = parse_table(c, files)?;
                if !ifaces.is_empty() {
                    self.settings.interface_tables.insert(name.clone(), ifaces);
                }
                if let Some(first) = self.defined_at.get(&name) {
                    return Err(c.err(pos, format!("table <{name}> is already defined on line {}", first.line)));
                }
                self.defined_at.insert(name.clone(), pos);
                self.tables.insert(name, table);
            }
            Some("set") => match parse_set(c)? {
                Setting::Default(action, log, pos) => {
                    self.settings.default_log = log;
                    if let Some((_, first)) = self.default {
                        return Err(c.err(pos, format!("`set default` is already given on line {}", first.line)));
                    }
                    self.default = Some((action, pos));
                }
                Setting::LogRate(n) => self.settings.log_rate = Some(n),
                Setting::BlockPolicy(policy) => self.settings.block_policy = policy,
                Setting::Skip(names) => {
                    for name in names {
                        if !self.settings.skip.contains(&name) {
                            self.settings.skip.push(name);
                        }
                    }
                }
                Setting::Several(items) => {
                    for item in items {
                        match item {
                            SetItem::StateLimit(n) => self.settings.state_limit = Some(n),
                            SetItem::SrcNodes(n) => self.settings.src_nodes = Some(n),
                            SetItem::Timeout(name, secs) => {
                                self.settings.timeouts.insert(name, secs);
                            }
                            SetItem::Ignored(pos, message) => self.warnings.push(c.err(pos, message)),
                        }
                    }
                }
            },
            Some("include") => self.include(c, files, depth)?,
            _ => {
                // Where a file that is not a ruleset fails: quote only a brief excerpt.
                let mut e = c.err(
                    first.pos,
                    format!("expected `pass`, `block`, `table`, `set` or `include`, found {}", c.found_brief(first)),
                );
                let keywords = ["pass", "block", "table", "set", "include"];
                if let Some(guess) = c.word(first).and_then(|w| suggest(w, &keywords)) {
                    e.message.push_str(&format!(" (did you mean `{guess}`?)"));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// `include "FILE"`: the file's statements, read as if they stood here (macros and
    /// tables defined before it are known in it, and the ones it defines after it). A
    /// relative path is relative to the including file's directory (for a ruleset
    /// confined to a directory, the API's, to that directory, and inside it).
    fn include(&mut self, c: &mut Cursor<'_>, files: TableFiles<'_>, depth: usize) -> Result<(), RulesError> {
        let kw = c.next();
        let path_tok = c.next();
        if path_tok.kind != Kind::Str {
            return Err(c.unexpected(path_tok, "a quoted path after `include`"));
        }
        let written = unquote(c.text(path_tok));
        c.expect_end("end of line after `include \"FILE\"`")?;
        if written.is_empty() {
            return Err(c.err(path_tok.pos, "the included file's path is empty"));
        }
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(c.err(kw.pos, format!("includes nest more than {MAX_INCLUDE_DEPTH} deep")));
        }
        let path = files.resolve(&written).map_err(|m| c.err(path_tok.pos, m))?;
        let shown = path.display().to_string();
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if self.open_files.contains(&canonical) {
            return Err(c.err(path_tok.pos, format!("`{}` includes itself (through this include)", clip_path(&shown))));
        }
        let bytes = source::read(&path, MAX_RULESET_BYTES).map_err(|reason: ReadError| {
            c.err(path_tok.pos, format!("cannot read included file `{}`: {reason}", clip_path(&shown)))
        })?;
        let text = source::utf8(&bytes, &shown)?;
        self.open_files.push(canonical);
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let nested = if files.confined { files } else { TableFiles { base_dir: &dir, confined: false } };
        let result = self.file(text, &shown, nested, depth + 1);
        self.open_files.pop();
        result
    }
}

/// Dynamic tables (`persist`) are matched by the data plane outside the classifier's
/// address lookups: as a rule's whole `from` only (`from <t>`, `from !<t>`), at most
/// [`filter_common::MAX_DYN_TABLES`] of them; `overload` names one.
fn check_dynamic_tables(tables: &BTreeMap<String, Table>, rules: &[super::ast::Rule]) -> Result<(), (Pos, String)> {
    use super::ast::{AddrItem, AddrMatch};
    let dynamic = |name: &str| tables.get(name).is_some_and(|t| t.dynamic);
    let count = tables.values().filter(|t| t.dynamic).count();
    if count > filter_common::MAX_DYN_TABLES {
        let pos = rules.first().map_or_else(Pos::default, |r| r.pos);
        return Err((pos, format!("{count} tables are `persist`; at most {} are", filter_common::MAX_DYN_TABLES)));
    }
    for r in rules {
        let uses = |m: &AddrMatch| match m {
            AddrMatch::Any => (false, 0),
            AddrMatch::List { items, .. } => {
                (items.iter().any(|i| matches!(i, AddrItem::Table(t) if dynamic(t))), items.len())
            }
        };
        if uses(&r.to.addr).0 {
            return Err((r.pos, "a `persist` table can only be a rule's `from` (the data plane keeps sources)".into()));
        }
        if let (true, n) = uses(&r.from.addr)
            && n > 1
        {
            return Err((r.pos, "a `persist` table must be the rule's whole `from`, not part of a list".into()));
        }
        if let Some(o) = &r.overload
            && !dynamic(&o.table)
        {
            return Err((r.pos, format!("`overload <{}>` needs `table <{}> persist`", o.table, o.table)));
        }
    }
    Ok(())
}

/// One `set` statement.
enum Setting {
    /// `set default pass|block [log]`, with the position of `set`.
    Default(Action, bool, Pos),
    /// `set log-rate N/s`.
    LogRate(u32),
    /// `set block-policy drop|return`.
    BlockPolicy(BlockPolicy),
    /// `set skip on IF` or `set skip on { IF ... }`.
    Skip(Vec<String>),
    /// `set limit ...`, `set timeout ...` (one item or a `{ ... }` list), and the
    /// settings that are accepted but do nothing here.
    Several(Vec<SetItem>),
}

/// One item of a `set` statement.
enum SetItem {
    /// `set limit states N`.
    StateLimit(u32),
    /// `set limit src-nodes N`.
    SrcNodes(u32),
    /// `set timeout NAME SECONDS`.
    Timeout(String, u32),
    /// Accepted from pf but without effect here: the warning for `check`.
    Ignored(Pos, String),
}

/// pf's timeouts that xdpwall's flow table does not have (pf.conf(5)).
pub(super) const PF_ONLY_TIMEOUTS: &[&str] = &[
    "udp.single",
    "icmp.error",
    "other.first",
    "other.single",
    "other.multiple",
    "frag",
    "interval",
    "src.track",
    "adaptive.start",
    "adaptive.end",
];

/// pf's limits other than `states` (pf.conf(5)).
const PF_ONLY_LIMITS: &[&str] = &["frags", "tables", "table-entries", "pktdelay-pkts", "anchors"];

/// pf settings accepted without effect, with what xdpwall does instead.
const PF_IGNORED_SETTINGS: &[(&str, &str)] = &[
    ("loginterface", "xdpwall counts packets per interface for every interface it filters (see `status`)"),
    ("optimization", "xdpwall's flow timeouts are set one by one with `set timeout`"),
    ("ruleset-optimization", "xdpwall's classifier costs the same per packet whatever the rules' order"),
    ("debug", "xdpwall has no kernel debug levels"),
    ("hostid", "xdpwall has no pfsync"),
    ("fingerprints", "xdpwall has no OS fingerprints"),
    ("state-policy", "xdpwall's flows are floating: not bound to an interface"),
    (
        "reassemble",
        "xdpwall judges fragments as they come (a later fragment carries no ports) and drops overlapping ones",
    ),
];

/// `set default pass|block`, `set limit states N`, `set limit { states N, ... }`,
/// `set timeout NAME SECONDS`, `set timeout { NAME SECONDS, ... }`, and pf's settings
/// that do nothing here (`set loginterface IF`, ...: a warning).
fn parse_set(c: &mut Cursor<'_>) -> Result<Setting, RulesError> {
    let set = c.next();
    let what = c.next();
    match c.word(what) {
        Some("default") => {}
        Some("log-rate") => {
            let tok = c.next();
            let expected = "a rate like `100/s` after `set log-rate`";
            let Some(n) = c.word(tok).and_then(|w| w.strip_suffix("/s")).and_then(|n| n.parse::<u64>().ok()) else {
                return Err(c.unexpected(tok, expected));
            };
            if !(1..=1_000_000).contains(&n) {
                return Err(c.err(tok.pos, format!("log rate {n}/s out of range 1-1000000 per second")));
            }
            c.expect_end("end of line after `set log-rate N/s`")?;
            return Ok(Setting::LogRate(n as u32));
        }
        Some(kind @ ("limit" | "timeout")) => {
            let items = if c.peek().kind == Kind::LBrace {
                c.next();
                let what =
                    if kind == "limit" { "a limit like `states 20000`" } else { "a timeout like `tcp.first 60`" };
                c.braced_list(what, |c, _| set_item(c, kind))?
            } else {
                vec![set_item(c, kind)?]
            };
            c.expect_end(&format!("end of line after `set {kind}`"))?;
            return Ok(Setting::Several(items));
        }
        Some("block-policy") => return Ok(Setting::BlockPolicy(block::parse_policy(c)?)),
        Some("skip") => return Ok(Setting::Skip(interfaces::parse_skip(c)?)),
        Some(name) if PF_IGNORED_SETTINGS.iter().any(|(n, _)| *n == name) => {
            let why = PF_IGNORED_SETTINGS.iter().find(|(n, _)| *n == name).map_or("", |(_, why)| why);
            // The value is pf's business: one word or string, as pf.conf(5) has it.
            let value = c.next();
            if !matches!(value.kind, Kind::Word | Kind::Str) {
                return Err(c.unexpected(value, &format!("a value after `set {name}`")));
            }
            c.expect_end(&format!("end of line after `set {name} VALUE`"))?;
            let message = format!("`set {name}` is accepted and does nothing here: {why}");
            return Ok(Setting::Several(vec![SetItem::Ignored(what.pos, message)]));
        }
        _ => {
            let mut known = vec!["default", "limit", "timeout", "log-rate", "block-policy", "skip"];
            known.extend(PF_IGNORED_SETTINGS.iter().map(|(n, _)| *n));
            return Err(c.unexpected_kw(
                what,
                "`default`, `limit`, `timeout`, `log-rate`, `block-policy`, `skip` or a pf setting after `set`",
                &known,
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
    let log = c.is_word(c.peek(), "log");
    if log {
        c.next();
    }
    c.expect_end("`log` or end of line after `set default pass|block`")?;
    Ok(Setting::Default(action, log, set.pos))
}

/// One `NAME VALUE` of `set limit` or `set timeout` (`kind`).
fn set_item(c: &mut Cursor<'_>, kind: &str) -> Result<SetItem, RulesError> {
    let name_tok = c.next();
    if kind == "limit" {
        return match c.word(name_tok) {
            Some("states") => {
                Ok(SetItem::StateLimit(count(c, "a number of states after `set limit states`", 1, 10_000_000)?))
            }
            Some("src-nodes") => {
                Ok(SetItem::SrcNodes(count(c, "a number of sources after `set limit src-nodes`", 1, 10_000_000)?))
            }
            Some(w) if PF_ONLY_LIMITS.contains(&w) => {
                count(c, &format!("a number after `{w}`"), 0, u64::from(u32::MAX))?;
                Ok(SetItem::Ignored(name_tok.pos, format!("`set limit {w}` is accepted and does nothing here")))
            }
            _ => Err(c.unexpected_kw(name_tok, "`states` or `src-nodes` after `set limit`", &["states", "src-nodes"])),
        };
    }
    let names: Vec<&str> = filter_common::timeout::ALL.iter().map(|t| t.name).collect();
    match c.word(name_tok) {
        Some(w) if names.contains(&w) => {
            let secs = count(c, "seconds after `set timeout NAME`", 1, 10 * 365 * 86400)?;
            Ok(SetItem::Timeout(w.to_owned(), secs))
        }
        Some(w) if PF_ONLY_TIMEOUTS.contains(&w) => {
            count(c, "seconds after `set timeout NAME`", 0, 10 * 365 * 86400)?;
            Ok(SetItem::Ignored(
                name_tok.pos,
                format!("`set timeout {w}` is accepted and does nothing here: the flow table has no such state"),
            ))
        }
        _ => Err(c.unexpected_kw(
            name_tok,
            &format!("a timeout name ({}) after `set timeout`", names.join(", ")),
            &names,
        )),
    }
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

    // pf's table flags. A table of addresses (`{ ... }` or `file`) is kept whether or
    // not a rule names them and changes only by an apply, whatever its flags say;
    // `counters` asks for per-entry counters, which xdpwall does not keep (per-rule ones
    // only). `persist` alone, with no addresses and not `const`, is what pf's overload
    // tables are: a dynamic table that the data plane (`overload`) and `xdpwall table`
    // fill.
    let (mut persist, mut constant, mut flags) = (false, false, 0);
    while let Some(flag @ ("persist" | "const" | "counters")) = c.word(c.peek()) {
        persist |= flag == "persist";
        constant |= flag == "const";
        c.next();
        flags += 1;
    }
    if flags > 0 && c.peek().kind == Kind::End {
        let table = Table { entries: Vec::new(), file: None, dynamic: persist && !constant };
        return Ok((name, name_tok.pos, table, Vec::new()));
    }
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
            Table { entries, file: None, dynamic: false }
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
            Table { entries, file: Some(shown), dynamic: false }
        }
        _ => {
            return Err(c.unexpected_kw(
                tok,
                "`{`, `file`, `persist`, `const` or `counters` after the table name",
                &["file", "persist", "const", "counters"],
            ));
        }
    };
    c.expect_end("end of line after the table")?;
    Ok((name, name_tok.pos, table, ifaces))
}
