//! Checks that need the whole rule (protocol-dependent fields, address families).

use super::ast::{Action, Family, Pos, Rule};
use super::names::{ICMP, ICMP6, SCTP, TCP, UDP};
use super::rule::{IcmpKind, RuleMeta};

/// Positions of features that need a check of the whole rule (`None`: not used).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unsupported {
    /// The `out` keyword.
    pub out: Option<Pos>,
    /// The `keep` of `keep state`.
    pub keep_state: Option<Pos>,
}

/// Sort key for positions: the error reported is the first one in the rule.
fn order(pos: &Pos) -> (u32, u32) {
    (pos.line, pos.col)
}

/// The first (leftmost) problem that makes a syntactically valid rule meaningless:
/// ports or TCP flags or ICMP types without the protocol that has them, and addresses
/// of the family the rule excludes. Table entries are not checked against the family:
/// a table may mix families and the rule uses the part that fits.
pub(super) fn check_rule(rule: &Rule, meta: &RuleMeta) -> Option<(Pos, String)> {
    let mut problems: Vec<(Pos, String)> = Vec::new();
    if let Some(pos) = meta.unsupported.keep_state
        && rule.action == Action::Block
    {
        problems.push((pos, "`keep state` needs `pass`: a blocked packet opens no flow".to_owned()));
    }
    let protocols = rule.protocols.as_deref();

    let all_have_ports = protocols.is_some_and(|list| list.iter().all(|p| matches!(*p, TCP | UDP | SCTP)));
    if !all_have_ports {
        for &pos in &meta.ports {
            problems.push((pos, "port needs `proto tcp`, `udp` or `sctp`".to_owned()));
        }
    }
    if let Some(pos) = meta.flags
        && protocols != Some(&[TCP])
    {
        problems.push((pos, "`flags` needs `proto tcp`".to_owned()));
    }
    match meta.icmp {
        Some((pos, IcmpKind::V4)) if protocols != Some(&[ICMP]) => {
            problems.push((pos, "`icmp-type` needs `proto icmp`".to_owned()));
        }
        Some((pos, IcmpKind::V6)) if protocols != Some(&[ICMP6]) => {
            problems.push((pos, "`icmp6-type` needs `proto icmp6`".to_owned()));
        }
        _ => {}
    }
    if let Some(family) = rule.family {
        for (pos, net) in &meta.addrs {
            let (is_v6, name) = match net {
                ipnet::IpNet::V4(_) => (false, "IPv4"),
                ipnet::IpNet::V6(_) => (true, "IPv6"),
            };
            if is_v6 != (family == Family::Inet6) {
                // Show a host as it was most likely written: without `/32` or `/128`.
                let (shown, what) = if net.prefix_len() == net.max_prefix_len() {
                    (net.addr().to_string(), "address")
                } else {
                    (net.to_string(), "prefix")
                };
                let keyword = if family == Family::Inet { "inet" } else { "inet6" };
                problems.push((*pos, format!("{shown} is an {name} {what} but the rule says `{keyword}`")));
            }
        }
    }
    super::source_limits::check(rule, &meta.source_limits, &mut problems);
    problems.into_iter().min_by_key(|(pos, _)| order(pos))
}
