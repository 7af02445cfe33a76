//! Shadowed rules: a rule that can never decide a packet, because a rule that wins over
//! it in pf's order (an earlier matching `quick` rule, or a later matching rule when it
//! is not `quick` itself) matches every packet it matches. `check` reports them.
//!
//! Conservative: "covers" is decided field by field, and a field is only taken as
//! covered when that is plain (no condition, the same condition, a protocol list that
//! holds the other's, prefixes inside the other's prefixes, port ranges inside the
//! other's). A rule reported is shadowed; a shadowed rule may go unreported (say when
//! two rules together cover it, or tables that happen to hold each other).

use super::ast::{AddrItem, AddrMatch, Endpoint, Rule, Ruleset};

/// A rule that never decides a packet, and one rule that wins over it and covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadowed {
    /// The shadowed rule (index in file order).
    pub rule: usize,
    /// The rule that covers it (index in file order).
    pub by: usize,
}

/// Every shadowed rule, in file order, each with the first covering rule found (the
/// one that decides in its place when several do: the earliest `quick` one, else the
/// last).
pub fn shadowed(rs: &Ruleset) -> Vec<Shadowed> {
    let rules = &rs.rules;
    let mut found = Vec::new();
    for (j, r) in rules.iter().enumerate() {
        // Candidates in the order they would win: quick rules before j in file order
        // (for any j), then, for a non-quick j, the later rules from the last back.
        let earlier_quick = (0..j).filter(|&i| rules[i].quick);
        let later: Box<dyn Iterator<Item = usize>> =
            if r.quick { Box::new(std::iter::empty()) } else { Box::new((j + 1..rules.len()).rev()) };
        // A rule with a rate decides nothing while over its rate (the packet goes on to
        // the other rules), so it shadows nothing.
        let decides_always = |i: &usize| rules[*i].rate.is_none();
        if let Some(by) = earlier_quick.chain(later).filter(decides_always).find(|&i| covers(&rules[i], r)) {
            found.push(Shadowed { rule: j, by });
        }
    }
    found
}

/// Whether every packet `b` matches, `a` matches too (conservatively: see the module).
pub fn covers(a: &Rule, b: &Rule) -> bool {
    a.direction.covers(b.direction)
        && interfaces_cover(a, b)
        && (a.family.is_none() || a.family == b.family)
        && match (&a.protocols, &b.protocols) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(pa), Some(pb)) => pb.iter().all(|p| pa.contains(p)),
        }
        && endpoint_covers(&a.from, &b.from)
        && endpoint_covers(&a.to, &b.to)
        // The flags of `a` hold for what `b` matches when they are the same flags and
        // `b`'s protocols are within `a`'s (checked above), or when `a` has none.
        && (a.tcp_flags.is_none() || a.tcp_flags == b.tcp_flags || never_tcp(b))
        && (a.icmp.is_none() || (b.icmp.is_some() && b.icmp_types().all(|m| a.icmp_types().any(|n| n == m))))
        && (a.vlan.is_none() || a.vlan == b.vlan)
}

/// Whether `b` matches no TCP packet (then flags, which constrain TCP only, never
/// exclude what it matches).
fn never_tcp(b: &Rule) -> bool {
    b.protocols.as_ref().is_some_and(|p| !p.contains(&6))
}

fn interfaces_cover(a: &Rule, b: &Rule) -> bool {
    if a.interface.is_none() {
        return true;
    }
    if b.interface.is_none() {
        return false;
    }
    match (a.interface_negated, b.interface_negated) {
        // a: one of A; b: one of B. B within A.
        (false, false) => b.interfaces().all(|n| a.interfaces().any(|m| m == n)),
        // a: none of A; b: none of B. A within B.
        (true, true) => a.interfaces().all(|n| b.interfaces().any(|m| m == n)),
        // a: none of A; b: one of B: B and A apart.
        (true, false) => b.interfaces().all(|n| a.interfaces().all(|m| m != n)),
        (false, true) => false,
    }
}

fn endpoint_covers(a: &Endpoint, b: &Endpoint) -> bool {
    let ports = match (&a.ports, &b.ports) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pa), Some(pb)) => pb.iter().all(|r| pa.iter().any(|s| s.lo <= r.lo && r.hi <= s.hi)),
    };
    ports && addr_covers(&a.addr, &b.addr)
}

fn addr_covers(a: &AddrMatch, b: &AddrMatch) -> bool {
    match (a, b) {
        (AddrMatch::Any, _) => true,
        (_, AddrMatch::Any) => false,
        (AddrMatch::List { negated: na, items: ia }, AddrMatch::List { negated: nb, items: ib }) => {
            let within = |inner: &[AddrItem], outer: &[AddrItem]| {
                inner.iter().all(|x| {
                    outer.iter().any(|y| match (x, y) {
                        (AddrItem::Net(x), AddrItem::Net(y)) => y.contains(x),
                        (x, y) => x == y,
                    })
                })
            };
            match (na, nb) {
                (false, false) => within(ib, ia),
                // Outside B implies outside A when A lies within B.
                (true, true) => within(ia, ib),
                _ => false,
            }
        }
    }
}
