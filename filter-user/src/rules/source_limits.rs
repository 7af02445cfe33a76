//! pf's limits per source (pf.conf(5), "Stateful Tracking Options"): `max-src-states N`,
//! `max-src-conn N`, `max-src-conn-rate N/S` and `overload <t> [flush [global]]`, with
//! our `for N` (seconds in the table) after them.
//!
//! pf writes them in parentheses after the state option,
//!
//! ```text
//! pass in proto tcp to port ssh keep state (max-src-conn 15, max-src-conn-rate 5/3, overload <bruteforce> flush global)
//! ```
//!
//! and xdpwall also takes them as options of their own (`pass in proto udp to port 53
//! max-src-states 100`). The other state options pf allows in the parentheses are
//! accepted when they say what xdpwall does anyway (`source-track rule`, `floating`),
//! accepted with a warning when they would need what xdpwall has not (`no-sync`,
//! `pflow`), and refused by name otherwise. The checks that need the whole rule (state
//! kept, TCP matched, what `overload` and `flush` depend on) are in [`problems`], which
//! the API's JSON form shares.

use filter_common::SOURCE_SLOTS;

use super::ast::{ConnRate, Flush, Overload, Pos, Rule};
use super::cursor::Cursor;
use super::error::RulesError;
use super::lexer::{Kind, Token};
use super::names::TCP;
use super::rule::{self, RuleMeta};

/// Where a rule's per-source options were written, for the checks of the whole rule.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct SourceLimitsMeta {
    /// The `max-src-states` keyword.
    pub max_states: Option<Pos>,
    /// The `max-src-conn` keyword.
    pub max_conn: Option<Pos>,
    /// The `max-src-conn-rate` keyword.
    pub max_conn_rate: Option<Pos>,
    /// The `overload` keyword.
    pub overload: Option<Pos>,
    /// The `flush` after `overload <t>`.
    pub flush: Option<Pos>,
}

/// The options that are both rule options and state options: parsed by [`limit`].
pub(super) const LIMITS: &[&str] = &["max-src-states", "max-src-conn", "max-src-conn-rate", "overload"];

/// pf's other state options (pf.conf(5)), for "did you mean" in the parentheses.
const OTHER_STATE_OPTIONS: &[&str] =
    &["source-track", "floating", "no-sync", "pflow", "max", "max-src-nodes", "if-bound", "sloppy"];

/// State options accepted but without effect here, with what xdpwall does instead.
const IGNORED: &[(&str, &str)] = &[("no-sync", "xdpwall has no pfsync"), ("pflow", "xdpwall exports no pflow records")];

/// Most connections per period of `max-src-conn-rate`.
const MAX_CONN_RATE: u64 = 1_000_000;

/// Why `max-src-states` and `max-src-conn` have a maximum, for their range message.
const SLOTS_WHY: &str = "the data plane keeps a source's flows through a rule in a fixed array of that many slots";

/// `( OPTION [,] OPTION ... )` after `keep state` / `modulate state` (or `no state`,
/// refused by [`check`]); the cursor is at the word that starts with `(`. Items are
/// separated by commas, or by nothing but whitespace as pf's grammar allows; the list
/// is not empty and does not end with a comma.
pub(super) fn parenthesized(c: &mut Cursor<'_>, rule: &mut Rule, meta: &mut RuleMeta) -> Result<(), RulesError> {
    c.split_parens();
    let open = c.next();
    debug_assert_eq!(open.kind, Kind::LParen);
    let mut items = 0;
    let mut after_comma = false;
    loop {
        let tok = c.next();
        match tok.kind {
            Kind::RParen if items > 0 && !after_comma => return Ok(()),
            Kind::Word => {
                state_option(c, tok, rule, meta)?;
                items += 1;
                after_comma = false;
                if c.peek().kind == Kind::Comma {
                    c.next();
                    after_comma = true;
                }
            }
            Kind::End => return Err(c.err(open.pos, "this `(` is never closed; expected `)`")),
            _ => {
                let expected = if after_comma {
                    "a state option after `,`"
                } else if items == 0 {
                    "a state option like `max-src-conn 10` after `(`"
                } else {
                    "`,`, `)` or a state option"
                };
                return Err(c.unexpected(tok, expected));
            }
        }
    }
}

/// One option inside the parentheses; `kw` is its keyword, consumed.
fn state_option(c: &mut Cursor<'_>, kw: Token, rule: &mut Rule, meta: &mut RuleMeta) -> Result<(), RulesError> {
    let word = c.text(kw);
    if let Some(&name) = LIMITS.iter().find(|l| **l == word) {
        meta.first_time(c, kw, name)?;
        return limit(c, kw, name, rule, meta);
    }
    if let Some((name, why)) = IGNORED.iter().find(|(n, _)| *n == word) {
        meta.warnings.push((kw.pos, format!("`{name}` is accepted and does nothing here: {why}")));
        return Ok(());
    }
    let refusal = match word {
        // Ours are floating: a flow is found whatever interface its packets use.
        "floating" => return Ok(()),
        "source-track" => {
            let next = c.peek();
            match c.word(next) {
                Some("rule") => {
                    c.next();
                }
                Some("global") => {
                    return Err(c.err(
                        next.pos,
                        "`source-track global` is not supported: sources are counted per rule \
                         (`source-track rule`)",
                    ));
                }
                _ => {}
            }
            return Ok(());
        }
        "max" => "`max` is not supported: `set limit states` bounds all flows",
        "max-src-nodes" => {
            "`max-src-nodes` is not supported: `set limit src-nodes` bounds the sources kept for all rules"
        }
        "if-bound" => "`if-bound` is not supported: flows are floating (not bound to an interface)",
        "sloppy" => "`sloppy` is not supported: a flow follows its TCP handshake, so it must see both directions",
        w if is_timeout_name(w) => {
            return Err(c.err(
                kw.pos,
                format!("per-rule timeouts are not supported: timeouts are global, with `set timeout {w} SECONDS`"),
            ));
        }
        _ => {
            let mut known = LIMITS.to_vec();
            known.extend_from_slice(OTHER_STATE_OPTIONS);
            return Err(c.unexpected_kw(
                kw,
                "a state option (`max-src-states`, `max-src-conn`, `max-src-conn-rate`, `overload`, \
                 `source-track rule`, `floating`)",
                &known,
            ));
        }
    };
    Err(c.err(kw.pos, refusal))
}

/// Whether `w` names a timeout, ours or pf's (pf lets a rule set its own).
fn is_timeout_name(w: &str) -> bool {
    filter_common::timeout::ALL.iter().any(|t| t.name == w) || super::parser::PF_ONLY_TIMEOUTS.contains(&w)
}

/// `max-src-states N`, `max-src-conn N`, `max-src-conn-rate N/S` or `overload <t>
/// [flush [global]] [for N]`, in the parentheses or as a rule option; `kw` is the
/// keyword (`name`), consumed and not given before in the rule.
pub(super) fn limit(
    c: &mut Cursor<'_>,
    kw: Token,
    name: &str,
    rule: &mut Rule,
    meta: &mut RuleMeta,
) -> Result<(), RulesError> {
    let limits = &mut rule.source_limits;
    match name {
        "max-src-states" => {
            limits.max_states = Some(slots(c, name, "flows")?);
            meta.source_limits.max_states = Some(kw.pos);
        }
        "max-src-conn" => {
            limits.max_conn = Some(slots(c, name, "connections")?);
            meta.source_limits.max_conn = Some(kw.pos);
        }
        "max-src-conn-rate" => {
            let tok = c.next();
            let expected = "a rate like `5/3` (connections/seconds) after `max-src-conn-rate`";
            let (connections, seconds) = rule::count_per_period(c, tok, expected, "connections", MAX_CONN_RATE)?;
            limits.max_conn_rate = Some(ConnRate { connections, seconds });
            meta.source_limits.max_conn_rate = Some(kw.pos);
        }
        _ => {
            rule.overload = Some(overload(c, meta)?);
            meta.source_limits.overload = Some(kw.pos);
        }
    }
    Ok(())
}

/// The number after `max-src-states` / `max-src-conn`: 1 to [`SOURCE_SLOTS`].
fn slots(c: &mut Cursor<'_>, name: &str, what: &str) -> Result<u32, RulesError> {
    let tok = c.next();
    match c.word(tok).map(|w| (w, super::names::number(w))) {
        Some((_, Some(n))) if (1..=SOURCE_SLOTS as u64).contains(&n) => Ok(n as u32),
        Some((w, Some(_))) => Err(c.err(tok.pos, format!("{name} {w} out of range 1-{SOURCE_SLOTS}: {SLOTS_WHY}"))),
        _ => Err(c.unexpected(tok, &format!("a number of {what} 1-{SOURCE_SLOTS} after `{name}`"))),
    }
}

/// `<t> [flush [global]] [for N]` after `overload`.
fn overload(c: &mut Cursor<'_>, meta: &mut RuleMeta) -> Result<Overload, RulesError> {
    let tok = c.next();
    if tok.kind != Kind::Table {
        return Err(c.unexpected(tok, "a table like `<flooders>` after `overload`"));
    }
    let text = c.text(tok);
    let table = text[1..text.len() - 1].to_owned();
    meta.table_refs.push((tok.pos, table.clone()));
    let mut flush = Flush::None;
    let next = c.peek();
    if c.is_word(next, "flush") {
        c.next();
        meta.source_limits.flush = Some(next.pos);
        flush = Flush::Rule;
        if c.is_word(c.peek(), "global") {
            c.next();
            flush = Flush::Global;
        }
    }
    let mut secs = 0;
    if c.is_word(c.peek(), "for") {
        c.next();
        let t = c.next();
        secs = rule::bounded(c, t, 365 * 86_400, "seconds", "seconds after `overload <table> for`")? as u32;
        if secs == 0 {
            return Err(c.err(t.pos, "seconds 0 out of range 1-31536000"));
        }
    }
    Ok(Overload { table, secs, flush })
}

/// The keyword a problem of [`problems`] is reported at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    MaxStates,
    MaxConn,
    MaxConnRate,
    Overload,
    Flush,
}

/// The problems of a rule's limits per source, from the rule alone (the text form's
/// checks and the JSON form's are the same), each with the keyword to report it at:
/// the limits count flows a `pass` rule opens, so the rule must keep state; the
/// connection limits count TCP handshakes, so it must match TCP; `overload` needs
/// something that judges a source; `flush` needs a judgement by connections, which a
/// spoofed source cannot make. Values out of range only come from the JSON form (the
/// parser refuses them where they are written).
pub(super) fn problems(rule: &Rule) -> Vec<(Keyword, String)> {
    let mut found = Vec::new();
    let limits = &rule.source_limits;
    let counts = [
        (limits.max_states, Keyword::MaxStates, "max-src-states"),
        (limits.max_conn, Keyword::MaxConn, "max-src-conn"),
        (limits.max_conn_rate.map(|r| r.connections), Keyword::MaxConnRate, "max-src-conn-rate"),
    ];
    for (value, keyword, name) in counts {
        let Some(n) = value else { continue };
        match keyword {
            Keyword::MaxConnRate => {
                let seconds = limits.max_conn_rate.map_or(0, |r| r.seconds);
                if !(1..=MAX_CONN_RATE).contains(&u64::from(n))
                    || !(1..=rule::MAX_RATE_PERIOD).contains(&u64::from(seconds))
                {
                    found.push((
                        keyword,
                        format!(
                            "{name} {n}/{seconds} out of range: 1-{MAX_CONN_RATE} connections per 1-{} seconds",
                            rule::MAX_RATE_PERIOD
                        ),
                    ));
                }
            }
            _ if !(1..=SOURCE_SLOTS as u64).contains(&u64::from(n)) => {
                found.push((keyword, format!("{name} {n} out of range 1-{SOURCE_SLOTS}: {SLOTS_WHY}")));
            }
            _ => {}
        }
        if rule.action == super::ast::Action::Block {
            found.push((keyword, format!("`{name}` needs a `pass` rule: a blocked packet opens no flow to count")));
        } else if !rule.keep_state {
            found.push((keyword, format!("`{name}` needs a rule that keeps state: with `no state` it opens no flows")));
        } else if keyword != Keyword::MaxStates && rule.protocols.as_ref().is_some_and(|p| !p.contains(&TCP)) {
            found.push((
                keyword,
                format!("`{name}` counts TCP connections, and this rule matches no TCP (it needs `proto tcp`)"),
            ));
        }
    }
    let Some(overload) = &rule.overload else { return found };
    let by_connections = limits.judges_connections();
    if !by_connections && rule.rate.is_none_or(|r| r.per_source.is_none()) {
        found.push((
            Keyword::Overload,
            "`overload` needs what judges a source: `max-src-conn`, `max-src-conn-rate` or a per-source rate \
             (`rate N/s per-source`)"
                .to_owned(),
        ));
    }
    if overload.flush != Flush::None && !by_connections {
        found.push((
            Keyword::Flush,
            "`flush` needs `max-src-conn` or `max-src-conn-rate`: a packet rate can be tripped by spoofed \
             packets, which must not end someone else's flows"
                .to_owned(),
        ));
    }
    found
}

/// [`problems`] at the keywords as written, for the parser's check of the whole rule.
pub(super) fn check(rule: &Rule, meta: &SourceLimitsMeta, out: &mut Vec<(Pos, String)>) {
    for (keyword, message) in problems(rule) {
        let pos = match keyword {
            Keyword::MaxStates => meta.max_states,
            Keyword::MaxConn => meta.max_conn,
            Keyword::MaxConnRate => meta.max_conn_rate,
            Keyword::Overload => meta.overload,
            Keyword::Flush => meta.flush,
        };
        // Every keyword the rule's fields come from was written, so it has a place.
        out.push((pos.unwrap_or(rule.pos), message));
    }
}
