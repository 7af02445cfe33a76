//! `antispoof [quick] for IF|{ IF ... } [inet|inet6]`, expanded as pfctl expands it:
//! for each interface,
//!
//! ```text
//! block drop in [quick] on ! IF [inet|inet6] from IF:network   packets from IF's networks arriving elsewhere
//! block drop in [quick] [inet|inet6] from IF                   packets from IF's own addresses (not for lo)
//! ```
//!
//! The rules are written out as text and parsed by the rule grammar, so they mean what
//! the same rules typed by hand mean; `check` lists them under the statement's line.
//! `IF` and `IF:network` resolve like any interface address (see `interfaces`).

use super::ast::{Pos, Rule};
use super::cursor::Cursor;
use super::error::RulesError;
use super::interfaces;
use super::lexer::{Kind, Lexer};
use super::rule::{self, RuleMeta};

/// The loopback device's name on Linux (the one interface with IFF_LOOPBACK in a
/// network namespace): its own addresses arrive on it, so pf makes no second rule.
const LOOPBACK: &str = "lo";

/// Parses an `antispoof` statement (the cursor at `antispoof`) into the rules it
/// stands for, each positioned at the statement.
pub(super) fn parse(c: &mut Cursor<'_>, file: &str) -> Result<Vec<(Rule, RuleMeta)>, RulesError> {
    let first = c.next();
    let mut quick = false;
    loop {
        let tok = c.peek();
        match c.word(tok) {
            Some("quick") if !quick => quick = true,
            Some("log") => return Err(c.err(tok.pos, "`log` is not supported yet")),
            _ => break,
        }
        c.next();
    }
    let for_tok = c.next();
    if !c.is_word(for_tok, "for") {
        return Err(c.unexpected_kw(for_tok, "`for` after `antispoof`", &["for", "quick"]));
    }
    let ifaces = interfaces::names_or_list(c, "an interface name like `em0`")?;
    let family = match c.word(c.peek()) {
        Some(f @ ("inet" | "inet6")) => {
            c.next();
            Some(f)
        }
        _ => None,
    };
    let end = c.peek();
    if end.kind != Kind::End {
        let what = if c.is_word(end, "label") { " (`label` on antispoof is not supported yet)" } else { "" };
        return Err(c.err(end.pos, format!("expected `inet`, `inet6` or end of line, found {}{what}", c.found(end))));
    }
    let quick = if quick { "quick " } else { "" };
    let af = family.map_or(String::new(), |f| format!("{f} "));
    let mut texts = Vec::new();
    for iface in &ifaces {
        texts.push(format!("block drop in {quick}on ! {iface} {af}from {iface}:network"));
        if iface != LOOPBACK {
            texts.push(format!("block drop in {quick}{af}from {iface}"));
        }
    }
    texts.iter().map(|text| expanded(text, file, first.pos)).collect()
}

/// One expanded rule, parsed from its text and placed at the `antispoof` statement.
fn expanded(text: &str, file: &str, pos: Pos) -> Result<(Rule, RuleMeta), RulesError> {
    let mut lexer = Lexer::new(text, file);
    let toks = lexer.next_statement()?.unwrap_or_default();
    let mut c = Cursor::new(text, file, toks);
    let (mut rule, mut meta) = rule::parse_rule(&mut c).map_err(|mut e| {
        e.message = format!("in the expansion `{text}` of this antispoof: {}", e.message);
        e.line = pos.line;
        e.col = pos.col;
        e
    })?;
    rule.pos = pos;
    for (at, _) in &mut meta.iface_refs {
        *at = pos;
    }
    Ok((rule, meta))
}

#[cfg(test)]
mod tests {
    use crate::rules::parse_str;

    fn texts(src: &str) -> Vec<String> {
        parse_str(src, "t.conf", ".".as_ref()).unwrap().rules.into_iter().map(|r| r.text).collect()
    }

    #[test]
    fn expands_as_pfctl_does() {
        assert_eq!(
            texts("antispoof for em0 inet\n"),
            ["block drop in on ! em0 inet from em0:network", "block drop in inet from em0"]
        );
        assert_eq!(
            texts("antispoof quick for { lo em1 }\n"),
            [
                "block drop in quick on ! lo from lo:network",
                "block drop in quick on ! em1 from em1:network",
                "block drop in quick from em1",
            ]
        );
        let rs = parse_str("pass in\nantispoof for em0\n", "t.conf", ".".as_ref()).unwrap();
        assert!(rs.rules[1].interface_negated && rs.rules[1].interface.as_deref() == Some("em0"));
        assert_eq!((rs.rules[1].pos.line, rs.rules[2].pos.line), (2, 2), "placed at the statement");
        assert!(rs.tables.contains_key("em0:network") && rs.tables.contains_key("em0"));
    }

    #[test]
    fn bad_antispoof_says_where_and_what() {
        let err = |src: &str| parse_str(src, "t.conf", ".".as_ref()).unwrap_err().to_string();
        assert_eq!(err("antispoof em0\n"), "t.conf:1:11: expected `for` after `antispoof`, found `em0`");
        assert_eq!(err("antispoof for\n"), "t.conf:1:14: expected an interface name like `em0`, found end of line");
        assert_eq!(err("antispoof log for em0\n"), "t.conf:1:11: `log` is not supported yet");
        assert_eq!(
            err("antispoof for em0 label \"x\"\n"),
            "t.conf:1:19: expected `inet`, `inet6` or end of line, found `label` (`label` on antispoof is not \
             supported yet)"
        );
    }
}
