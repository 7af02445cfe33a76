//! The reference model: the rule semantics as plain Rust, the executable spec that
//! the XDP program is checked against (tests/differential.rs).
//!
//! It works on the [`Ruleset`] as parsed, never on the compiled tables, and reads
//! frames with its own dissector ([`packet`]), so that a mistake in the compiler or
//! the data plane shows up as a disagreement instead of being shared.
//!
//! What it says, in short:
//! - A frame that is not IPv4 or IPv6 (after at most two VLAN tags) is
//!   [`ModelDecision::NonIp`] and passes; a frame whose headers are cut short, invalid,
//!   or beyond the parser's limits is [`ModelDecision::Malformed`] and is dropped.
//! - Otherwise pf's evaluation: the rules are read in file order; a rule whose every
//!   condition holds and that is `quick` decides at once; else the last rule whose every
//!   condition holds decides; when none does, the default policy decides a packet
//!   arriving (`in`) and a packet leaving (`out`) passes.
//! - A rule without `in` or `out` holds both ways.
//! - `flags` constrain TCP packets only; a TCP packet without its header (a later
//!   fragment) holds them only when the rule names other protocols too, or none.
//! - A condition on something the packet does not have (ports, TCP flags or ICMP type
//!   of a later fragment or of another protocol; the VLAN of an untagged frame; the
//!   interface when the filter does not know the receiving one) does not hold.
//! - A rule with a rate limit (`rate`, `max-pkt-rate`) whose bucket is empty does not
//!   match, and the next rule that matches decides ([`decide_with_buckets`]); the model
//!   knows only the two deterministic states of a bucket, full and empty.
//! - With `keep state` ([`state::Tracker`]): a packet its flow's state explains passes
//!   as [`ModelDecision::State`] before any rule; a `pass ... keep state` rule that
//!   decides an opening packet (TCP SYN, UDP, ICMP echo request) opens a flow, unless
//!   its `max-src-states` refuses the sender another one
//!   ([`ModelDecision::SourceLimited`]: dropped).

pub mod packet;
pub mod state;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use filter_common::Malformed;

use crate::rules::{Action, AddrItem, AddrMatch, Direction, Family, PortRange, Rule, Ruleset, Table};
use packet::{Dissected, Fields, Transport};

const PROTO_TCP: u8 = 6;

/// What decides a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelDecision {
    /// The rule with this index (0-based, in file order).
    Rule(usize),
    /// No rule matched: the default policy.
    Default,
    /// Not an IP packet: passed unjudged.
    NonIp,
    /// Dropped as malformed, for this reason.
    Malformed(Malformed),
    /// Passed by the state of a tracked flow, before any rule ([`state::Tracker`];
    /// never the answer of the stateless [`decide`]).
    State,
    /// Dropped: the `pass ... keep state` rule with this index decided an opening
    /// packet, but its sender already holds as many flows through the rule as its
    /// `max-src-states` allows ([`state::Tracker`]; never the answer of the stateless
    /// [`decide`]). Counted apart from the rule, in the data plane's source-limited
    /// slot.
    SourceLimited(usize),
}

/// Which rule (or policy) decides `frame`, statelessly: `keep state` is ignored (no
/// flow is remembered, none passes a packet). Exact for rulesets without `keep state`;
/// for those with it, see [`state::Tracker::decide`].
///
/// `iface`: the name of the receiving interface as the filter knows it, `None` when the
/// filter has no entry for it (then only rules without `on` can match).
pub fn decide(rs: &Ruleset, frame: &[u8], iface: Option<&str>) -> ModelDecision {
    match packet::dissect(frame) {
        Dissected::NonIp => ModelDecision::NonIp,
        Dissected::Malformed(reason) => ModelDecision::Malformed(reason),
        Dissected::Ip(fields) => decide_fields(rs, &fields, iface),
    }
}

/// Which rule (or the default) decides an IP packet with these fields.
pub fn decide_fields(rs: &Ruleset, p: &Fields, iface: Option<&str>) -> ModelDecision {
    decide_fields_going(rs, p, iface, Direction::In)
}

/// Which rule (or the default) decides `frame` going `way` (`In`: arriving, `Out`:
/// sent by the host), statelessly.
pub fn decide_going(rs: &Ruleset, frame: &[u8], iface: Option<&str>, way: Direction) -> ModelDecision {
    match packet::dissect(frame) {
        Dissected::NonIp => ModelDecision::NonIp,
        Dissected::Malformed(reason) => ModelDecision::Malformed(reason),
        Dissected::Ip(fields) => decide_fields_going(rs, &fields, iface, way),
    }
}

/// pf's evaluation of the rules in file order: the first matching `quick` rule
/// decides, else the last matching rule, else the default.
pub fn decide_fields_going(rs: &Ruleset, p: &Fields, iface: Option<&str>, way: Direction) -> ModelDecision {
    let mut decision = ModelDecision::Default;
    for (i, rule) in rs.rules.iter().enumerate() {
        if rule.direction.covers(way) && matches(rs, rule, p, iface) {
            decision = ModelDecision::Rule(i);
            if rule.quick {
                break;
            }
        }
    }
    decision
}

/// What happens to a packet going `way` so decided: as [`action`], except that a
/// packet leaving that no rule decides passes (`set default` is for arriving packets).
pub fn action_going(rs: &Ruleset, d: &ModelDecision, way: Direction) -> Action {
    match (d, way) {
        (ModelDecision::Default, Direction::Out) => Action::Pass,
        _ => action(rs, d),
    }
}

/// Like [`decide`], with the rate-limited rules for which `empty(i)` is true over their
/// rate (their bucket empty: they do not match); every other bucket is full.
pub fn decide_with_buckets(
    rs: &Ruleset,
    frame: &[u8],
    iface: Option<&str>,
    empty: &dyn Fn(usize) -> bool,
) -> ModelDecision {
    match packet::dissect(frame) {
        Dissected::NonIp => ModelDecision::NonIp,
        Dissected::Malformed(reason) => ModelDecision::Malformed(reason),
        Dissected::Ip(fields) => {
            // pf's evaluation (as `decide_fields_going`, arriving), a rule over its
            // rate counting as not matching.
            let mut decision = ModelDecision::Default;
            for (i, rule) in rs.rules.iter().enumerate() {
                let over = rule.rate.is_some() && empty(i);
                if !over && rule.direction.covers(Direction::In) && matches(rs, rule, &fields, iface) {
                    decision = ModelDecision::Rule(i);
                    if rule.quick {
                        break;
                    }
                }
            }
            decision
        }
    }
}

/// What happens to a frame so decided: non-IP frames pass, malformed ones are dropped.
pub fn action(rs: &Ruleset, d: &ModelDecision) -> Action {
    match *d {
        ModelDecision::Rule(i) => rs.rules[i].action,
        ModelDecision::Default => rs.default_action,
        ModelDecision::NonIp | ModelDecision::State => Action::Pass,
        ModelDecision::Malformed(_) | ModelDecision::SourceLimited(_) => Action::Block,
    }
}

/// Whether every condition of `rule` but its direction holds for the packet.
pub fn matches(rs: &Ruleset, rule: &Rule, p: &Fields, iface: Option<&str>) -> bool {
    if !rule.holds_on(iface) {
        return false;
    }
    if let Some(family) = rule.family {
        let v6 = p.src.is_ipv6();
        if v6 != (family == Family::Inet6) {
            return false;
        }
    }
    if let Some(protocols) = &rule.protocols
        && !protocols.contains(&p.protocol)
    {
        return false;
    }
    let (src_port, dst_port, tcp_flags, icmp) = match p.transport {
        Transport::None => (None, None, None, None),
        Transport::Ports { src, dst, tcp_flags } => (Some(src), Some(dst), tcp_flags, None),
        Transport::Icmp { icmp_type, code, .. } => (None, None, None, Some((icmp_type, code))),
    };
    if !addr_matches(&rule.from.addr, p.src, rs)
        || !addr_matches(&rule.to.addr, p.dst, rs)
        || !port_matches(rule.from.ports.as_deref(), src_port)
        || !port_matches(rule.to.ports.as_deref(), dst_port)
    {
        return false;
    }
    if let Some(f) = rule.tcp_flags {
        let holds = match tcp_flags {
            Some(flags) => flags & f.mask == f.set,
            // Not TCP, or TCP without its header: flags constrain TCP packets only,
            // and a rule for TCP alone needs the header to judge them.
            None => rule.protocols.as_deref() != Some(&[PROTO_TCP]),
        };
        if !holds {
            return false;
        }
    }
    if rule.icmp.is_some() {
        let any = icmp
            .is_some_and(|(t, c)| rule.icmp_types().any(|m| t == m.icmp_type && m.code.is_none_or(|want| want == c)));
        if !any {
            return false;
        }
    }
    if let Some(id) = rule.vlan
        && p.vlan != Some(id)
    {
        return false;
    }
    true
}

/// `from`/`to` addresses: any; in one of the items; or (negated) in none of them,
/// whatever its family.
fn addr_matches(m: &AddrMatch, addr: IpAddr, rs: &Ruleset) -> bool {
    match m {
        AddrMatch::Any => true,
        AddrMatch::List { negated, items } => {
            let inside = items.iter().any(|item| match item {
                AddrItem::Net(net) => net.contains(&addr),
                AddrItem::Table(name) => {
                    rs.tables.get(name).is_some_and(|t: &Table| t.entries.iter().any(|net| net.contains(&addr)))
                }
            });
            inside != *negated
        }
    }
}

/// A port condition holds when the packet has ports and the port is in a range.
fn port_matches(ranges: Option<&[PortRange]>, port: Option<u16>) -> bool {
    match (ranges, port) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(ranges), Some(port)) => ranges.iter().any(|r| r.lo <= port && port <= r.hi),
    }
}
