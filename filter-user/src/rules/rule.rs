//! The rule grammar:
//!
//! ```text
//! ACTION [in|out] [log] [quick] [on IFACE] [inet|inet6] [proto P | proto { P, ... }]
//!        [all | [from SRC] [to DST]] [OPTIONS...]
//! ```
//!
//! The parts before the options have a fixed order, as in pf; options come in any
//! order. `log` is also accepted right after the direction, where pf puts it.

use ipnet::IpNet;

use super::addr;
use super::ast::{
    Action, AddrItem, AddrMatch, Direction, Endpoint, Family, IcmpMatch, PortRange, Pos, Rate, Rule, SourceMask,
    TcpFlags,
};
use super::block;
use super::cursor::{Cursor, suggest};
use super::error::{RulesError, clip};
use super::interfaces::{self, IfaceAddr};
use super::lexer::{Kind, Token, unquote};
use super::names;
use super::source_limits::{self, SourceLimitsMeta};
use super::validate::Unsupported;

/// Where the parser is in the fixed-order part of a rule: a part may only appear while
/// the stage is at or before its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Dir,
    Quick,
    On,
    Family,
    Proto,
    Hosts,
    To,
    Options,
}

/// The keywords of each fixed-order part, for "expected ..." messages.
const PARTS: &[(Stage, &[&str])] = &[
    (Stage::Dir, &["in", "out"]),
    (Stage::Quick, &["quick"]),
    (Stage::On, &["on"]),
    (Stage::Family, &["inet", "inet6"]),
    (Stage::Proto, &["proto"]),
    (Stage::Hosts, &["all", "from"]),
    (Stage::To, &["to"]),
];

/// Option keywords.
const OPTIONS: &[&str] = &[
    "flags",
    "icmp-type",
    "icmp6-type",
    "vlan",
    "keep",
    "modulate",
    "no",
    "synproxy",
    "log",
    "label",
    "rate",
    "max-pkt-rate",
    "overload",
    "max-src-conn-rate",
    "max-src-states",
    "max-src-conn",
];

/// pf's `flags S/SA`, implied on TCP by every rule that keeps state without flags.
const PF_DEFAULT_FLAGS: TcpFlags = TcpFlags { set: filter_common::wire::TCP_SYN, mask: TCP_SYN_ACK };
const TCP_SYN_ACK: u8 = filter_common::wire::TCP_SYN | filter_common::wire::TCP_ACK;

/// Words that cannot be an interface name, so that `on from ...` gets a clear error.
const NOT_INTERFACES: &[&str] =
    &["in", "out", "quick", "on", "inet", "inet6", "proto", "all", "from", "to", "any", "port"];

/// Longest label, in bytes: labels are shown in `status` and are the rule's identity
/// across applies, not a place for text.
pub const MAX_LABEL: usize = 63;

/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_IFACE_LEN: usize = 15;

/// Which numbering an `icmp-type` / `icmp6-type` option uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IcmpKind {
    /// `icmp-type`
    V4,
    /// `icmp6-type`
    V6,
}

/// What the parser learned about a rule beyond the AST: the positions that checks of
/// the whole rule report at.
#[derive(Debug, Default)]
pub(super) struct RuleMeta {
    /// Every `port` keyword.
    pub ports: Vec<Pos>,
    /// The `flags` keyword, unless the value was `any`.
    pub flags: Option<Pos>,
    /// `flags any`: no flags, not even pf's default `S/SA`.
    pub flags_any: bool,
    /// The state option as written (`keep`, `modulate`, `no`), with its position.
    pub state: Option<(Pos, StateOption)>,
    /// Things to tell the operator about an accepted rule (`check` prints them).
    pub warnings: Vec<(Pos, String)>,
    /// The `icmp-type` or `icmp6-type` keyword.
    pub icmp: Option<(Pos, IcmpKind)>,
    /// Every address or prefix, for the family check.
    pub addrs: Vec<(Pos, IpNet)>,
    /// Every `<table>` reference.
    pub table_refs: Vec<(Pos, String)>,
    /// Every interface address (`(em0)`, `em0:network`, `self`): each stands for a
    /// table of its own (see `interfaces`).
    pub iface_refs: Vec<(Pos, IfaceAddr)>,
    /// The label's string.
    pub label: Option<Pos>,
    /// The `rate` or `max-pkt-rate` keyword.
    pub rate: Option<Pos>,
    /// Features that are parsed but not enforced yet.
    pub unsupported: Unsupported,
    /// Where the per-source limits and `overload` were written.
    pub source_limits: SourceLimitsMeta,
    /// Options given so far, to refuse repeats.
    seen: Vec<&'static str>,
}

impl RuleMeta {
    /// Records the option `name` at `kw`, or refuses it when the rule gave it before.
    pub fn first_time(&mut self, c: &Cursor<'_>, kw: Token, name: &'static str) -> Result<(), RulesError> {
        if self.seen.contains(&name) {
            return Err(c.err(kw.pos, format!("`{name}` is given twice in this rule")));
        }
        self.seen.push(name);
        Ok(())
    }
}

/// The state option of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StateOption {
    /// `keep state`
    Keep,
    /// `modulate state`: kept as `keep state` (sequence numbers are not modulated).
    Modulate,
    /// `no state`
    No,
}

/// Column `n` characters to the right of `pos` (for errors inside a word).
fn shift(pos: Pos, n: usize) -> Pos {
    Pos { line: pos.line, col: pos.col.saturating_add(u32::try_from(n).unwrap_or(u32::MAX)) }
}

/// Parses one rule; the cursor is at the action keyword.
pub(super) fn parse_rule(c: &mut Cursor<'_>) -> Result<(Rule, RuleMeta), RulesError> {
    let first = c.next();
    let action = match c.word(first) {
        Some("pass") => Action::Pass,
        Some("block") => Action::Block,
        _ => return Err(c.unexpected(first, "`pass` or `block`")),
    };
    let mut rule = Rule::new(first.pos, c.statement_text(), action);
    if action == Action::Block
        && let Some(mode) = block::parse_mode(c)?
    {
        rule.block_mode = mode;
    }
    let mut meta = RuleMeta::default();
    let mut stage = Stage::Dir;
    // True right after `from ADDR` / `to ADDR` without a port: `port` may follow.
    let mut port_may_follow = false;

    loop {
        let tok = c.peek();
        if tok.kind == Kind::End {
            break;
        }
        let after_addr = std::mem::replace(&mut port_may_follow, false);
        match c.word(tok) {
            Some(w @ ("in" | "out")) if stage <= Stage::Dir => {
                c.next();
                rule.direction = Direction::In;
                if w == "out" {
                    rule.direction = Direction::Out;
                    meta.unsupported.out = Some(tok.pos);
                }
                stage = Stage::Quick;
            }
            Some("log") if stage <= Stage::Quick => {
                option(c, &mut rule, &mut meta)?;
                stage = Stage::Quick;
            }
            Some("quick") if stage <= Stage::Quick => {
                c.next();
                rule.quick = true;
                stage = Stage::On;
            }
            Some("on") if stage <= Stage::On => {
                c.next();
                if c.peek().kind == Kind::Bang {
                    c.next();
                    rule.interface_negated = true;
                }
                if c.peek().kind == Kind::LBrace {
                    c.next();
                    let mut names = list(c, "an interface name", |c, tok, expected| match c.word(tok) {
                        Some(_) => interface_name(c, tok),
                        None => Err(c.unexpected(tok, expected)),
                    })?;
                    rule.interface = Some(names.remove(0));
                    rule.interfaces_also = names;
                } else {
                    rule.interface = Some(interface(c)?);
                }
                stage = Stage::Family;
            }
            Some(w @ ("inet" | "inet6")) if stage <= Stage::Family => {
                c.next();
                rule.family = Some(if w == "inet" { Family::Inet } else { Family::Inet6 });
                stage = Stage::Proto;
            }
            Some("proto") if stage <= Stage::Proto => {
                c.next();
                rule.protocols = Some(protocols(c)?);
                stage = Stage::Hosts;
            }
            Some("all") if stage <= Stage::Hosts => {
                c.next();
                stage = Stage::Options;
            }
            Some("from") if stage <= Stage::Hosts => {
                c.next();
                (rule.from, port_may_follow) = endpoint(c, "from", &mut meta)?;
                stage = Stage::To;
            }
            Some("to") if stage <= Stage::To => {
                c.next();
                (rule.to, port_may_follow) = endpoint(c, "to", &mut meta)?;
                stage = Stage::Options;
            }
            Some(w) if OPTIONS.contains(&w) => {
                option(c, &mut rule, &mut meta)?;
                stage = Stage::Options;
            }
            Some(w) if stage == Stage::Options && w.starts_with('(') => {
                return Err(c.err(
                    tok.pos,
                    format!(
                        "state options in parentheses go right after `keep state` or `modulate state`, found `{}`",
                        clip(w)
                    ),
                ));
            }
            _ => {
                let mut keywords: Vec<&str> = Vec::new();
                if after_addr {
                    keywords.push("port");
                }
                for (part, words) in PARTS {
                    if stage <= *part {
                        keywords.extend_from_slice(words);
                    }
                }
                let mut expected: String = keywords.iter().map(|k| format!("`{k}`, ")).collect();
                expected.push_str("an option or end of rule");
                keywords.extend_from_slice(OPTIONS);
                return Err(c.unexpected_kw(tok, &expected, &keywords));
            }
        }
    }
    apply_pf_defaults(&mut rule, &meta);
    Ok((rule, meta))
}

/// pf's defaults: a `pass` rule keeps state unless it says `no state`, and a rule that
/// keeps state matches TCP only on a connection's first packet (`flags S/SA`) unless
/// it names its flags or says `flags any`; later packets pass by the state it opens.
fn apply_pf_defaults(rule: &mut Rule, meta: &RuleMeta) {
    let state = meta.state.map(|(_, s)| s);
    rule.keep_state = match state {
        Some(StateOption::Keep | StateOption::Modulate) => true,
        Some(StateOption::No) => false,
        None => rule.action == Action::Pass,
    };
    let may_be_tcp = rule.protocols.as_ref().is_none_or(|p| p.contains(&names::TCP));
    if rule.keep_state && rule.tcp_flags.is_none() && !meta.flags_any && may_be_tcp {
        rule.tcp_flags = Some(PF_DEFAULT_FLAGS);
    }
}

/// `on IFACE`: the interface name.
fn interface(c: &mut Cursor<'_>) -> Result<String, RulesError> {
    let tok = c.next();
    interface_name(c, tok)
}

/// The interface name at `tok`.
fn interface_name(c: &Cursor<'_>, tok: Token) -> Result<String, RulesError> {
    match c.word(tok) {
        Some(w) if !NOT_INTERFACES.contains(&w) && !OPTIONS.contains(&w) => {
            if w.len() > MAX_IFACE_LEN {
                return Err(c.err(
                    tok.pos,
                    format!("interface name `{}` is too long (at most {MAX_IFACE_LEN} characters)", clip(w)),
                ));
            }
            Ok(w.to_owned())
        }
        _ => Err(c.unexpected(tok, "an interface name after `on`")),
    }
}

/// [`Cursor::braced_list`] for items read from their first token, which `item` gets
/// consumed, along with the "expected" text to use if it does not fit.
fn list<T>(
    c: &mut Cursor<'_>,
    what: &str,
    mut item: impl FnMut(&mut Cursor<'_>, Token, &str) -> Result<T, RulesError>,
) -> Result<Vec<T>, RulesError> {
    c.braced_list(what, |c, expected| {
        let tok = c.next();
        item(c, tok, expected)
    })
}

const PROTO_EXPECTED: &str = "a protocol (`tcp`, `udp`, `icmp`, `icmp6`, `sctp` or a number 0-255)";

/// `proto P` or `proto { P, ... }`: protocol numbers, repeats removed.
fn protocols(c: &mut Cursor<'_>) -> Result<Vec<u8>, RulesError> {
    let tok = c.next();
    let list = if tok.kind == Kind::LBrace {
        list(c, PROTO_EXPECTED, protocol)?
    } else {
        vec![protocol(c, tok, &format!("{PROTO_EXPECTED} or `{{` after `proto`"))?]
    };
    let mut unique = Vec::with_capacity(list.len());
    for p in list {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    Ok(unique)
}

fn protocol(c: &mut Cursor<'_>, tok: Token, expected: &str) -> Result<u8, RulesError> {
    let Some(w) = c.word(tok) else {
        return Err(c.unexpected(tok, expected));
    };
    if let Some(n) = names::number(w) {
        return u8::try_from(n).map_err(|_| c.err(tok.pos, format!("protocol {w} out of range 0-255")));
    }
    names::protocol(w).ok_or_else(|| {
        let known: Vec<&str> = names::protocol_names().collect();
        c.unexpected_kw(tok, expected, &known)
    })
}

/// `from ...` / `to ...` after the keyword. Returns the endpoint and whether a `port`
/// could still follow (an address was given without one).
fn endpoint(c: &mut Cursor<'_>, keyword: &str, meta: &mut RuleMeta) -> Result<(Endpoint, bool), RulesError> {
    let tok = c.peek();
    let mut ep = Endpoint::default();
    let mut addr_given = true;
    match tok.kind {
        Kind::Word if c.text(tok) == "port" => addr_given = false,
        Kind::Word if c.text(tok) == "any" => {
            c.next();
        }
        Kind::Bang => {
            c.next();
            let items = addr_items(c, meta, "an address, prefix, `<table>` or `{` after `!`")?;
            ep.addr = AddrMatch::List { negated: true, items };
        }
        _ => {
            let expected = format!("an address, prefix, `<table>`, `{{`, `!`, `any` or `port` after `{keyword}`");
            let items = addr_items(c, meta, &expected)?;
            ep.addr = AddrMatch::List { negated: false, items };
        }
    }
    if c.is_word(c.peek(), "port") {
        let kw = c.next();
        meta.ports.push(kw.pos);
        ep.ports = Some(ports(c)?);
        return Ok((ep, false));
    }
    Ok((ep, addr_given))
}

/// One address item, or a `{ ... }` list of them.
fn addr_items(c: &mut Cursor<'_>, meta: &mut RuleMeta, expected: &str) -> Result<Vec<AddrItem>, RulesError> {
    let tok = c.next();
    if tok.kind == Kind::LBrace {
        list(c, "an address, prefix or `<table>`", |c, tok, expected| addr_item(c, tok, meta, expected, true))
    } else {
        Ok(vec![addr_item(c, tok, meta, expected, false)?])
    }
}

fn addr_item(
    c: &mut Cursor<'_>,
    tok: Token,
    meta: &mut RuleMeta,
    expected: &str,
    in_list: bool,
) -> Result<AddrItem, RulesError> {
    let text = c.text(tok);
    // A plain name close to a keyword (`ayn`) is a typo, not an interface.
    let keyword = NOT_INTERFACES.contains(&text)
        || OPTIONS.contains(&text)
        || interfaces::is_bare(text) && suggest(text, &["any", "port", "all", "from", "to"]).is_some();
    match tok.kind {
        Kind::Word if !keyword && let Some(r) = interfaces::parse_word(text) => {
            let r = r.map_err(|m| c.err(tok.pos, m))?;
            let name = interfaces::written(&r);
            meta.iface_refs.push((tok.pos, r));
            Ok(AddrItem::Table(name))
        }
        Kind::Word if addr::looks_like_address(c.text(tok)) => {
            let net = addr::parse_net(c.text(tok)).map_err(|m| c.err(tok.pos, m))?;
            meta.addrs.push((tok.pos, net));
            Ok(AddrItem::Net(net))
        }
        Kind::Table => {
            let text = c.text(tok);
            let name = text[1..text.len() - 1].to_owned();
            meta.table_refs.push((tok.pos, name.clone()));
            Ok(AddrItem::Table(name))
        }
        Kind::Bang if in_list => Err(c.err(tok.pos, "`!` can only negate a whole address list, written `!{ ... }`")),
        _ if in_list => Err(c.unexpected(tok, expected)),
        _ => Err(c.unexpected_kw(tok, expected, &["any", "port"])),
    }
}

/// After `port`: one port item or `{ item, ... }`; an item is `P`, `P:Q`, pf's
/// comparisons `= P`, `!= P`, `< P`, `<= P`, `> P`, `>= P`, or its ranges `P >< Q`
/// (between, exclusive) and `P <> Q` (outside, exclusive).
fn ports(c: &mut Cursor<'_>) -> Result<Vec<PortRange>, RulesError> {
    let tok = c.next();
    match tok.kind {
        Kind::Word | Kind::Op => port_item(c, tok),
        Kind::LBrace => Ok(list(c, "a port or port range", |c, tok, expected| {
            if matches!(tok.kind, Kind::Word | Kind::Op) { port_item(c, tok) } else { Err(c.unexpected(tok, expected)) }
        })?
        .into_iter()
        .flatten()
        .collect()),
        _ => Err(c.unexpected(tok, "a port, a port range like `8000:8080` or `{` after `port`")),
    }
}

/// One port item starting at `tok` (see [`ports`]) as inclusive ranges.
fn port_item(c: &mut Cursor<'_>, tok: Token) -> Result<Vec<PortRange>, RulesError> {
    const MAX: u16 = u16::MAX;
    let op = c.text(tok);
    let ranges: Vec<(u32, u32)> = if tok.kind == Kind::Op || op == "=" {
        if matches!(op, "><" | "<>") {
            return Err(c.err(tok.pos, format!("`{op}` goes between two ports, like `1000 {op} 2000`")));
        }
        let port_tok = c.next();
        let Some(w) = c.word(port_tok) else {
            return Err(c.unexpected(port_tok, &format!("a port after `{op}`")));
        };
        let p = u32::from(port(c, w, port_tok.pos)?);
        match op {
            "=" => vec![(p, p)],
            "!=" => vec![(0, p.wrapping_sub(1)), (p + 1, MAX.into())],
            "<" => vec![(0, p.wrapping_sub(1))],
            "<=" => vec![(0, p)],
            ">" => vec![(p + 1, MAX.into())],
            _ => vec![(p, MAX.into())],
        }
    } else if c.peek().kind == Kind::Op && matches!(c.text(c.peek()), "><" | "<>") {
        let lo = u32::from(port(c, op, tok.pos)?);
        let op_tok = c.next();
        let op = c.text(op_tok);
        let hi_tok = c.next();
        let Some(w) = c.word(hi_tok) else {
            return Err(c.unexpected(hi_tok, &format!("a port after `{op}`")));
        };
        let hi = u32::from(port(c, w, hi_tok.pos)?);
        if lo > hi {
            return Err(c.err(tok.pos, format!("bad port range `{lo} {op} {hi}`: {lo} is greater than {hi}")));
        }
        if op == "><" {
            vec![(lo + 1, hi.wrapping_sub(1))]
        } else {
            vec![(0, lo.wrapping_sub(1)), (hi + 1, MAX.into())]
        }
    } else {
        return Ok(vec![port_range(c, tok)?]);
    };
    // An empty side (`< 0`, `> 65535`, `5 >< 6`) is dropped; nothing left is an error.
    let kept: Vec<PortRange> = ranges
        .into_iter()
        .filter(|&(lo, hi)| lo <= hi && hi <= u32::from(MAX))
        .map(|(lo, hi)| PortRange { lo: lo as u16, hi: hi as u16 })
        .collect();
    if kept.is_empty() {
        return Err(c.err(tok.pos, "this port condition matches no port"));
    }
    Ok(kept)
}

fn port_range(c: &mut Cursor<'_>, tok: Token) -> Result<PortRange, RulesError> {
    let w = c.text(tok);
    let Some((first, last)) = w.split_once(':') else {
        let port = port(c, w, tok.pos)?;
        return Ok(PortRange { lo: port, hi: port });
    };
    if first.is_empty() || last.is_empty() {
        return Err(c.err(tok.pos, format!("bad port range `{w}`: it needs a first and a last port, like `8000:8080`")));
    }
    let lo = port(c, first, tok.pos)?;
    let hi = port(c, last, shift(tok.pos, first.chars().count() + 1))?;
    if lo > hi {
        return Err(c.err(tok.pos, format!("bad port range `{w}`: {lo} is greater than {hi}")));
    }
    Ok(PortRange { lo, hi })
}

/// A port number or service name; `pos` is where `s` starts.
fn port(c: &Cursor<'_>, s: &str, pos: Pos) -> Result<u16, RulesError> {
    if let Some(n) = names::number(s) {
        return u16::try_from(n).map_err(|_| c.err(pos, format!("port {s} out of range 0-65535")));
    }
    names::service_port(s).ok_or_else(|| {
        let mut e = c.err(pos, format!("expected a port number 0-65535 or a service name like `ssh`, found `{s}`"));
        let known: Vec<&str> = names::service_names().collect();
        if let Some(guess) = suggest(s, &known) {
            e.message.push_str(&format!(" (did you mean `{guess}`?)"));
        }
        e
    })
}

/// An option; the cursor is at its keyword.
fn option(c: &mut Cursor<'_>, rule: &mut Rule, meta: &mut RuleMeta) -> Result<(), RulesError> {
    let kw = c.next();
    let text = c.text(kw);
    let Some(&name) = OPTIONS.iter().find(|o| **o == text) else {
        return Err(c.unexpected(kw, "an option"));
    };
    if matches!(name, "icmp-type" | "icmp6-type") && meta.icmp.is_some() {
        return Err(c.err(kw.pos, "only one `icmp-type` or `icmp6-type` is allowed in a rule"));
    }
    meta.first_time(c, kw, name)?;
    if matches!(name, "rate" | "max-pkt-rate") && rule.rate.is_some() {
        return Err(c.err(kw.pos, "only one `rate` or `max-pkt-rate` is allowed in a rule"));
    }
    match name {
        "flags" => {
            let tok = c.next();
            const EXPECTED: &str = "flags like `S/SA`, `/SA` or `any` after `flags`";
            match c.word(tok) {
                Some("any") => meta.flags_any = true,
                Some(w) => {
                    rule.tcp_flags = Some(tcp_flags(c, tok, w, EXPECTED)?);
                    meta.flags = Some(kw.pos);
                }
                None => return Err(c.unexpected(tok, EXPECTED)),
            }
        }
        "icmp-type" | "icmp6-type" => {
            let kind = if name == "icmp6-type" { IcmpKind::V6 } else { IcmpKind::V4 };
            if c.peek().kind == Kind::LBrace {
                c.next();
                let what = if kind == IcmpKind::V6 { "an ICMPv6 type" } else { "an ICMP type" };
                let mut types = c.braced_list(what, |c, _| icmp(c, kind))?;
                rule.icmp = Some(types.remove(0));
                rule.icmp_also = types;
            } else {
                rule.icmp = Some(icmp(c, kind)?);
            }
            meta.icmp = Some((kw.pos, kind));
        }
        "vlan" => {
            let tok = c.next();
            let id = bounded(c, tok, 4095, "vlan", "a VLAN id 0-4095 after `vlan`")?;
            rule.vlan = Some(u16::try_from(id).unwrap_or(u16::MAX));
        }
        "keep" | "modulate" | "no" | "synproxy" => {
            if c.word(c.peek()).is_some_and(|w| w.starts_with("state(")) {
                c.split_word_at("state".len());
            }
            let tok = c.next();
            if !c.is_word(tok, "state") {
                return Err(c.unexpected_kw(tok, &format!("`state` after `{name}`"), &["state"]));
            }
            if name == "synproxy" {
                return Err(c.err(
                    kw.pos,
                    "`synproxy state` is not supported: xdpwall does not complete TCP handshakes on \
                     behalf of a server; use `keep state` (with a `rate` once supported) instead",
                ));
            }
            if meta.state.is_some() {
                return Err(c.err(kw.pos, "a rule has one state option (`keep`, `modulate` or `no state`)"));
            }
            let option = match name {
                "keep" => StateOption::Keep,
                "modulate" => {
                    meta.warnings.push((
                        kw.pos,
                        "`modulate state` is kept as `keep state`: xdpwall does not modulate TCP \
                         sequence numbers"
                            .to_owned(),
                    ));
                    StateOption::Modulate
                }
                _ => StateOption::No,
            };
            meta.state = Some((kw.pos, option));
            if option != StateOption::No {
                meta.unsupported.keep_state = Some(kw.pos);
            }
            // pf's state options: `keep state (max-src-conn 10, ...)`.
            if c.word(c.peek()).is_some_and(|w| w.starts_with('(')) {
                source_limits::parenthesized(c, rule, meta)?;
            }
        }
        "log" => {
            rule.log = true;
        }
        "label" => {
            let tok = c.next();
            if tok.kind != Kind::Str {
                return Err(c.unexpected(tok, "a quoted label like `\"web\"` after `label`"));
            }
            let label = unquote(c.text(tok));
            if label.len() > MAX_LABEL {
                return Err(c.err(
                    tok.pos,
                    format!("this label is {} bytes long; labels are at most {MAX_LABEL} bytes", label.len()),
                ));
            }
            rule.label = Some(label);
            meta.label = Some(tok.pos);
        }
        "max-src-states" | "max-src-conn" | "max-src-conn-rate" | "overload" => {
            source_limits::limit(c, kw, name, rule, meta)?;
        }
        "max-pkt-rate" => {
            rule.rate = Some(max_pkt_rate(c)?);
            meta.rate = Some(kw.pos);
        }
        _ => {
            rule.rate = Some(rate(c)?);
            meta.rate = Some(kw.pos);
        }
    }
    Ok(())
}

/// A decimal number in `0..=max`; `what` names it in the out-of-range message.
pub(super) fn bounded(c: &Cursor<'_>, tok: Token, max: u64, what: &str, expected: &str) -> Result<u64, RulesError> {
    match c.word(tok).map(|w| (w, names::number(w))) {
        Some((_, Some(n))) if n <= max => Ok(n),
        Some((w, Some(_))) => Err(c.err(tok.pos, format!("{what} {w} out of range 0-{max}"))),
        _ => Err(c.unexpected(tok, expected)),
    }
}

/// `SET/MASK` of `flags`, with `w` the word at `tok`.
fn tcp_flags(c: &Cursor<'_>, tok: Token, w: &str, expected: &str) -> Result<TcpFlags, RulesError> {
    let Some((set_text, mask_text)) = w.split_once('/') else {
        return Err(c.unexpected(tok, expected));
    };
    if mask_text.is_empty() {
        return Err(c.err(tok.pos, format!("bad flags `{w}`: the mask after `/` is empty")));
    }
    let set = flag_bits(c, set_text, tok.pos)?;
    let mask = flag_bits(c, mask_text, shift(tok.pos, set_text.chars().count() + 1))?;
    if let Some(extra) = set_text.chars().find(|ch| !mask_text.contains(*ch)) {
        return Err(
            c.err(tok.pos, format!("bad flags `{w}`: `{extra}` is in the set but not in the mask `{mask_text}`"))
        );
    }
    debug_assert_eq!(set & !mask, 0);
    Ok(TcpFlags { set, mask })
}

/// The bits of flag letters; `pos` is where `letters` starts.
fn flag_bits(c: &Cursor<'_>, letters: &str, pos: Pos) -> Result<u8, RulesError> {
    let mut bits = 0u8;
    for (i, ch) in letters.chars().enumerate() {
        bits |= filter_common::wire::tcp_flag(ch).ok_or_else(|| {
            c.err(shift(pos, i), format!("unknown TCP flag `{ch}`; the flags are F, S, R, P, A, U, E and W"))
        })?;
    }
    Ok(bits)
}

/// `T [code C]` after `icmp-type` / `icmp6-type`.
fn icmp(c: &mut Cursor<'_>, kind: IcmpKind) -> Result<IcmpMatch, RulesError> {
    let v6 = kind == IcmpKind::V6;
    let (family, other_keyword, other_family) =
        if v6 { ("ICMPv6", "icmp-type", "ICMP") } else { ("ICMP", "icmp6-type", "ICMPv6") };
    let tok = c.next();
    let expected = format!("an {family} type name like `echoreq` or a number 0-255");
    let icmp_type = match c.word(tok) {
        Some(w) => match names::number(w) {
            Some(n) => u8::try_from(n).map_err(|_| c.err(tok.pos, format!("{family} type {w} out of range 0-255")))?,
            None => match names::icmp_type(w, v6) {
                Some(t) => t,
                None if names::icmp_type(w, !v6).is_some() => {
                    return Err(
                        c.err(tok.pos, format!("`{w}` is an {other_family} type name; use it with `{other_keyword}`"))
                    );
                }
                None => {
                    let known: Vec<&str> = names::icmp_type_names(v6).collect();
                    return Err(c.unexpected_kw(tok, &expected, &known));
                }
            },
        },
        None => return Err(c.unexpected(tok, &expected)),
    };
    let mut code = None;
    if c.is_word(c.peek(), "code") {
        c.next();
        let tok = c.next();
        let what = format!("{family} code");
        let n = bounded(c, tok, 255, &what, &format!("an {family} code 0-255 after `code`"))?;
        code = Some(u8::try_from(n).unwrap_or(u8::MAX));
    }
    Ok(IcmpMatch { icmp_type, code })
}

/// Most packets per second a rate may allow (one per nanosecond).
const MAX_RATE: u64 = 1_000_000_000;
/// Longest period of `max-pkt-rate N/S`, in seconds (a day).
pub(super) const MAX_RATE_PERIOD: u64 = 86_400;

/// `N/s [burst M] [per-source [mask /A [/B]]]` after `rate` (or `/m`, `/h`, `/d`) (burst and per-source in
/// either order).
fn rate(c: &mut Cursor<'_>) -> Result<Rate, RulesError> {
    let tok = c.next();
    let expected = "a rate like `10/s` after `rate`";
    let Some((count, unit)) = c.word(tok).and_then(|w| w.split_once('/')) else {
        return Err(c.unexpected(tok, expected));
    };
    let packets = match names::number(count) {
        Some(n) if (1..=MAX_RATE).contains(&n) => n as u32,
        Some(_) => {
            return Err(c.err(tok.pos, format!("rate {count}/s out of range 1-{MAX_RATE} per second")));
        }
        None => return Err(c.unexpected(tok, expected)),
    };
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(c.err(
                shift(tok.pos, count.chars().count() + 1),
                format!(
                    "unknown rate unit `{unit}`; rates are per second, minute, hour or day: `10/s`, `/m`, `/h`, `/d`"
                ),
            ));
        }
    };
    let mut rate = Rate { packets, seconds, burst: packets, per_source: None };
    let mut burst = false;
    loop {
        let next = c.peek();
        if !burst && c.is_word(next, "burst") {
            c.next();
            burst = true;
            let tok = c.next();
            let expected = "a burst size (packets) after `burst`";
            rate.burst = match c.word(tok).and_then(names::number) {
                Some(n) if (1..=MAX_RATE).contains(&n) => n as u32,
                Some(_) => {
                    let w = c.text(tok);
                    return Err(c.err(tok.pos, format!("burst {w} out of range 1-{MAX_RATE}")));
                }
                None => return Err(c.unexpected(tok, expected)),
            };
        } else if rate.per_source.is_none() && c.is_word(next, "per-source") {
            c.next();
            rate.per_source = Some(source_mask(c)?);
        } else {
            return Ok(rate);
        }
    }
}

/// pf's `max-pkt-rate N/S`: N packets per S seconds, N at once.
fn max_pkt_rate(c: &mut Cursor<'_>) -> Result<Rate, RulesError> {
    let tok = c.next();
    let expected = "a rate like `100/10` (packets/seconds) after `max-pkt-rate`";
    let (n, secs) = count_per_period(c, tok, expected, "packets", MAX_RATE)?;
    Ok(Rate { packets: n, seconds: secs, burst: n, per_source: None })
}

/// pf's `N/S` at `tok` (`max-pkt-rate`, `max-src-conn-rate`): N `what` (1 to `max`)
/// per S seconds (1 to a day).
pub(super) fn count_per_period(
    c: &Cursor<'_>,
    tok: Token,
    expected: &str,
    what: &str,
    max: u64,
) -> Result<(u32, u32), RulesError> {
    let Some((count, period)) = c.word(tok).and_then(|w| w.split_once('/')) else {
        return Err(c.unexpected(tok, expected));
    };
    let (Some(n), Some(secs)) = (names::number(count), names::number(period)) else {
        return Err(c.unexpected(tok, expected));
    };
    if !(1..=max).contains(&n) {
        return Err(c.err(tok.pos, format!("{what} {count} out of range 1-{max}")));
    }
    if !(1..=MAX_RATE_PERIOD).contains(&secs) {
        return Err(c.err(
            shift(tok.pos, count.chars().count() + 1),
            format!("seconds {period} out of range 1-{MAX_RATE_PERIOD}"),
        ));
    }
    Ok((n as u32, secs as u32))
}

/// `[mask /A [/B]]` after `per-source`: IPv4 and IPv6 prefix lengths sources are
/// grouped by.
fn source_mask(c: &mut Cursor<'_>) -> Result<SourceMask, RulesError> {
    let mut mask = SourceMask::default();
    if !c.is_word(c.peek(), "mask") {
        return Ok(mask);
    }
    c.next();
    let tok = c.next();
    mask.v4 = prefix_len(c, tok, 32, "an IPv4 prefix length like `/24` after `mask`")?;
    let next = c.peek();
    if c.word(next).is_some_and(|w| w.starts_with('/')) {
        c.next();
        mask.v6 = prefix_len(c, next, 128, "an IPv6 prefix length like `/48`")?;
    }
    Ok(mask)
}

/// `/N` with N in 1..=max.
fn prefix_len(c: &Cursor<'_>, tok: Token, max: u64, expected: &str) -> Result<u8, RulesError> {
    let Some(digits) = c.word(tok).and_then(|w| w.strip_prefix('/')) else {
        return Err(c.unexpected(tok, expected));
    };
    match names::number(digits) {
        Some(n) if (1..=max).contains(&n) => Ok(n as u8),
        Some(_) => Err(c.err(tok.pos, format!("prefix length /{digits} out of range 1-{max}"))),
        None => Err(c.unexpected(tok, expected)),
    }
}
