//! The rule language: a pf-like ruleset, parsed and validated into a [`Ruleset`].
//!
//! ```text
//! set default block                      # policy when no rule matches
//! table <bogons> file "bogons.txt"       # one address or prefix per line
//! table <admins> { 192.0.2.10, 2001:db8::/64 }
//! pass in on eth0 proto tcp from <admins> to port 22
//! pass in proto tcp to port { 80, 443, 8000:8080 } flags S/SA
//! pass in proto udp from any port domain to 10.0.0.0/8 label "dns replies"
//! ```
//!
//! One statement per line; `#` comments; a `\` at the end of a line continues the
//! statement; `{ ... }` lists may span lines. Rules are evaluated as pf evaluates
//! them: the first matching `quick` rule decides, else the last matching rule; a rule
//! without `in`/`out` applies both ways; `pass` keeps state with `flags S/SA` on TCP
//! unless `no state`. pf's macros and `include` are read as pf reads them. Tables may
//! be defined anywhere in the file. Every error carries the file, line and column of
//! the offending token (for table and included files: that file's).
//!
//! Input is bounded: ruleset and table files must be regular files of at most
//! [`MAX_RULESET_BYTES`] and [`MAX_TABLE_FILE_BYTES`]; words, strings, table names and
//! labels have maximum lengths; control characters are refused; at most
//! `filter_common::MAX_RULES` rules and `compile::MAX_TABLE_ENTRIES` entries per table;
//! labels are unique. Messages quote only short, escaped excerpts of the input.
//!
//! Modules: `lexer` (tokens and statements), `parser` (statements, tables, ruleset),
//! `rule` (the rule grammar), `validate` (whole-rule checks and the features not
//! supported yet), `addr` (addresses and prefixes), `names` (ports, protocols, ICMP
//! types), `tables` (table files), `source` (file reading), `error`, `macros` (pf's
//! macros), `scope` (pf constructs out of scope, refused by name), `shadow` (rules that
//! never decide a packet), `source_limits` (pf's limits per source and state options).

pub mod ast;

mod addr;
mod antispoof;
mod block;
mod cursor;
mod error;
mod files;
mod interfaces;
mod lexer;
mod macros;
mod names;
mod parser;
mod rule;
mod scope;
pub mod shadow;
mod source;
mod source_limits;
mod tables;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use ast::*;
pub use error::RulesError;
pub use files::TableFiles;
pub use interfaces::{
    HostAddr, HostAddrs, HostIface, Resolved, resolve as resolve_interfaces, written as interface_written,
};
pub use lexer::{MAX_STRING, MAX_TABLE_NAME, MAX_WORD};
pub use macros::MAX_MACRO_VALUE;
pub use parser::{MAX_INCLUDE_DEPTH, ParseOptions, Parsed};
pub use rule::MAX_LABEL;
pub use source::{MAX_RULESET_BYTES, MAX_TABLE_FILE_BYTES};

/// Reads and parses the ruleset at `path`. Table files named with a relative path are
/// resolved against the ruleset's directory.
pub fn parse_file(path: &Path) -> Result<Ruleset, RulesError> {
    let name = path.display().to_string();
    let bytes = source::read(path, MAX_RULESET_BYTES)
        .map_err(|reason| RulesError::whole_file(&name, format!("cannot read ruleset: {reason}")))?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    parse_bytes(&bytes, &name, base_dir)
}

/// Like [`parse_file`], with options; also returns the warnings (constructs accepted
/// that do less than in pf) and, with `skip_unsupported`, the statements skipped.
pub fn parse_file_with(path: &Path, options: ParseOptions) -> Result<Parsed, RulesError> {
    let name = path.display().to_string();
    let bytes = source::read(path, MAX_RULESET_BYTES)
        .map_err(|reason| RulesError::whole_file(&name, format!("cannot read ruleset: {reason}")))?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let src = source::utf8(&bytes, &name)?;
    parser::parse_full(src, &name, TableFiles { base_dir, confined: false }, options)
}

/// Parses the bytes of a ruleset file: [`parse_str`] after checking that they are
/// UTF-8 (the error points at the first bad byte).
pub fn parse_bytes(bytes: &[u8], file_name: &str, base_dir: &Path) -> Result<Ruleset, RulesError> {
    let src = source::utf8(bytes, file_name)?;
    parser::parse(src, file_name, base_dir)
}

/// The first problem of a rule's limits per source and `overload` (those the parser
/// refuses in text), for rules that did not come from text (the API's JSON form).
pub fn source_limits_problem(rule: &Rule) -> Option<String> {
    source_limits::problems(rule).into_iter().next().map(|(_, message)| message)
}

/// Refuses a ruleset without rules (an empty file, or only comments, settings and
/// tables): it is more often a truncated or wrong file than a policy, and applying it
/// would pass (or block) everything. Callers skip this when the operator insists.
pub fn require_rules(rs: &Ruleset, file_name: &str) -> Result<(), RulesError> {
    if !rs.rules.is_empty() {
        return Ok(());
    }
    let effect = match rs.default_action {
        Action::Pass => "pass every packet",
        Action::Block => "block every inbound packet",
    };
    Err(RulesError::whole_file(
        file_name,
        format!(
            "the ruleset has no rules (it is empty or holds only comments, settings and \
             tables), so it would {effect}; use --allow-empty if that is what you want"
        ),
    ))
}

/// Parses ruleset text. `file_name` is used in errors; table files named with a
/// relative path are resolved against `base_dir`.
pub fn parse_str(src: &str, file_name: &str, base_dir: &Path) -> Result<Ruleset, RulesError> {
    parser::parse(src, file_name, base_dir)
}

/// Parses ruleset text whose table files must lie inside `table_dir` (a ruleset from
/// the API: see [`TableFiles`]).
pub fn parse_str_confined(src: &str, file_name: &str, table_dir: &Path) -> Result<Ruleset, RulesError> {
    parser::parse_with(src, file_name, TableFiles { base_dir: table_dir, confined: true })
}
