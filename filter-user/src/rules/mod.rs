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
//! statement; `{ ... }` lists may span lines. Rules are evaluated in order and the first
//! match wins. Tables may be defined anywhere in the file. Every error carries the
//! file, line and column of the offending token (for table files: the table file's).
//!
//! Modules: `lexer` (tokens and statements), `parser` (statements, tables, ruleset),
//! `rule` (the rule grammar), `validate` (whole-rule checks and the features not
//! supported yet), `addr` (addresses and prefixes), `names` (ports, protocols, ICMP
//! types), `tables` (table files), `source` (file reading), `error`.

pub mod ast;

mod addr;
mod error;
mod lexer;
mod names;
mod parser;
mod rule;
mod source;
mod tables;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use ast::*;
pub use error::RulesError;

/// Reads and parses the ruleset at `path`. Table files named with a relative path are
/// resolved against the ruleset's directory.
pub fn parse_file(path: &Path) -> Result<Ruleset, RulesError> {
    let name = path.display().to_string();
    let bytes = source::read(path).map_err(|reason| {
        RulesError::whole_file(&name, format!("cannot read ruleset: {reason}"))
    })?;
    let src = source::utf8(&bytes, &name)?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    parser::parse(src, &name, base_dir)
}

/// Parses ruleset text. `file_name` is used in errors; table files named with a
/// relative path are resolved against `base_dir`.
pub fn parse_str(src: &str, file_name: &str, base_dir: &Path) -> Result<Ruleset, RulesError> {
    parser::parse(src, file_name, base_dir)
}
