//! pf constructs that are outside what xdpwall does (address translation, policy
//! routing, normalisation, queueing, anchors, ...): refused by name with one line on
//! what to do instead, before anything else reads the statement, so that a pf.conf
//! gets a message about what it asks for rather than about its syntax. With
//! `check --skip-unsupported` the statement is skipped and listed instead.

use super::ast::Pos;
use super::cursor::Cursor;
use super::lexer::Kind;

const TRANSLATION: &str = "xdpwall filters; address translation stays in nftables or pf";
const ROUTING: &str = "xdpwall filters; policy routing stays in the kernel's routing (`ip rule`) or pf";
const NORMALISATION: &str = "xdpwall does not rewrite packets: it drops malformed ones and lets the kernel \
                             reassemble fragments";
const QUEUEING: &str = "xdpwall does not shape traffic; queueing stays in tc or pf";
const ANCHORS: &str = "xdpwall reads one ruleset (split it with `include`); anchors stay in pf";
const TAGS: &str = "xdpwall has no packet tags";
const SOCKETS: &str = "xdpwall sees packets at the driver, before any socket or OS fingerprint";
const ROUTES: &str = "xdpwall does not look up routes; the kernel's reverse path filter (rp_filter) checks \
                      sources against them";
const SYNPROXY: &str = "xdpwall does not complete TCP handshakes for a server; `keep state` tracks them";

/// Statements refused by their first word.
const STATEMENTS: &[(&str, &str)] = &[
    ("nat", TRANSLATION),
    ("rdr", TRANSLATION),
    ("binat", TRANSLATION),
    ("nat-anchor", TRANSLATION),
    ("rdr-anchor", TRANSLATION),
    ("binat-anchor", TRANSLATION),
    ("anchor", ANCHORS),
    ("load", ANCHORS),
    ("scrub", NORMALISATION),
    ("match", "xdpwall has no `match` rules: they carry translation, normalisation and queue options"),
    ("altq", QUEUEING),
    ("queue", QUEUEING),
];

/// Rule options refused wherever they stand in a `pass` or `block` rule.
const OPTIONS: &[(&str, &str)] = &[
    ("nat-to", TRANSLATION),
    ("rdr-to", TRANSLATION),
    ("binat-to", TRANSLATION),
    ("af-to", TRANSLATION),
    ("route-to", ROUTING),
    ("reply-to", ROUTING),
    ("dup-to", ROUTING),
    ("divert-to", ROUTING),
    ("divert-reply", ROUTING),
    ("divert-packet", ROUTING),
    ("rtable", ROUTING),
    ("scrub", NORMALISATION),
    ("queue", QUEUEING),
    ("prio", QUEUEING),
    ("tag", TAGS),
    ("tagged", TAGS),
    ("user", SOCKETS),
    ("group", SOCKETS),
    ("os", SOCKETS),
    ("synproxy", SYNPROXY),
    ("urpf-failed", ROUTES),
    ("no-route", ROUTES),
    ("route", ROUTES),
    ("received-on", "xdpwall judges a packet on the interface it arrives or leaves on"),
    ("probability", "xdpwall's rules decide the same way for every packet"),
    ("once", "xdpwall's rules stay until the next apply"),
];

/// The first out-of-scope construct of the statement, with the message that refuses it.
pub(super) fn refused(c: &Cursor<'_>) -> Option<(Pos, String)> {
    let toks = c.tokens();
    let first = *toks.first()?;
    let word = c.word(first)?;
    if let Some((name, why)) = STATEMENTS.iter().find(|(name, _)| *name == word) {
        let what = if *name == "load" { "load anchor" } else { name };
        return Some((first.pos, format!("`{what}` is not supported: {why}")));
    }
    if !matches!(word, "pass" | "block") {
        return None;
    }
    for (i, &tok) in toks.iter().enumerate() {
        let Some(w) = c.word(tok) else { continue };
        if let Some((name, why)) = OPTIONS.iter().find(|(name, _)| *name == w) {
            let what = if *name == "synproxy" { "synproxy state" } else { name };
            return Some((tok.pos, format!("`{what}` is not supported: {why}")));
        }
        // pf's older translation syntax: `... -> ADDRESS`.
        if w == "-" && toks.get(i + 1).is_some_and(|t| t.kind == Kind::Op && c.text(*t) == ">") {
            return Some((tok.pos, format!("`->` (address translation) is not supported: {TRANSLATION}")));
        }
    }
    None
}
