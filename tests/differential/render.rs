//! The renderer: ruleset structure -> pf text. Conditions that the rule language would
//! refuse (ports without tcp/udp/sctp, flags without tcp, ...) are left out, so every
//! shrunk ruleset still parses.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

pub(crate) const PORT_PROTOS: [u8; 3] = [6, 17, 132];

pub(crate) fn proto_name(p: u8, spell: bool) -> String {
    match (p, spell) {
        (6, true) => "tcp".into(),
        (17, true) => "udp".into(),
        (1, true) => "icmp".into(),
        (58, true) => "icmp6".into(),
        (132, true) => "sctp".into(),
        _ => p.to_string(),
    }
}

pub(crate) fn service(port: u16) -> Option<&'static str> {
    Some(match port {
        22 => "ssh",
        53 => "domain",
        80 => "http",
        443 => "https",
        123 => "ntp",
        _ => return None,
    })
}

pub(crate) fn net_text(net: &IpNet, bare_host: bool) -> String {
    if bare_host && net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() }
}

pub(crate) fn flags_text(bits: u8) -> String {
    "FSRPAUEW".chars().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, c)| c).collect()
}

/// `{ a, b }` or `{ a b }` (or just `a` when `single` and there is one).
pub(crate) fn list(items: &[String], commas: bool, single: bool) -> String {
    if single && items.len() == 1 {
        return items[0].clone();
    }
    let sep = if commas { ", " } else { " " };
    format!("{{ {} }}", items.join(sep))
}

pub(crate) fn render_endpoint(ep: &EndpointSpec, family: Option<Family>, ports_ok: bool, spell: u8) -> String {
    let names = spell & 4 != 0;
    // Addresses of the family the rule excludes would be refused.
    let items: Vec<String> = ep
        .items
        .iter()
        .filter_map(|i| match i {
            ItemSpec::Net(n) => {
                let excluded =
                    matches!((family, n), (Some(Family::Inet), IpNet::V6(_)) | (Some(Family::Inet6), IpNet::V4(_)));
                (!excluded).then(|| net_text(n, spell & 8 != 0))
            }
            ItemSpec::Table(t) => Some(format!("<t{t}>")),
        })
        .collect();
    let mut out = String::new();
    if !items.is_empty() {
        if ep.negated {
            out.push('!');
        }
        out.push_str(&list(&items, spell & 16 != 0, spell & 32 != 0));
    } else if spell & 64 != 0 {
        out.push_str("any");
    }
    if let Some(ranges) = ep.ports.as_ref().filter(|_| ports_ok) {
        let texts: Vec<String> = ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo != hi {
                    format!("{lo}:{hi}")
                } else if let Some(name) = service(lo).filter(|_| names) {
                    name.to_owned()
                } else {
                    lo.to_string()
                }
            })
            .collect();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("port ");
        out.push_str(&list(&texts, spell & 16 != 0, true));
    }
    out
}

pub(crate) fn render_rule(r: &RuleSpec, i: usize) -> String {
    let mut protos: Vec<u8> = Vec::new();
    for p in r.protos.iter().flatten() {
        if !protos.contains(p) {
            protos.push(*p);
        }
    }
    let has_proto = r.protos.is_some() && !protos.is_empty();
    let ports_ok = has_proto && protos.iter().all(|p| PORT_PROTOS.contains(p));
    let names = r.spell & 4 != 0;

    let mut s = String::new();
    s.push_str(match r.action {
        Action::Pass => "pass",
        Action::Block => "block",
    });
    if r.out {
        s.push_str(" out");
    } else if r.spell & 1 == 0 {
        s.push_str(" in");
    }
    if r.spell & 2 != 0 {
        s.push_str(" quick");
    }
    if let Some(name) = r.iface {
        write!(s, " on {name}").unwrap();
    }
    match r.family {
        Some(Family::Inet) => s.push_str(" inet"),
        Some(Family::Inet6) => s.push_str(" inet6"),
        None => {}
    }
    if has_proto {
        let texts: Vec<String> = protos.iter().map(|p| proto_name(*p, names)).collect();
        write!(s, " proto {}", list(&texts, r.spell & 16 != 0, true)).unwrap();
    }
    let from = render_endpoint(&r.from, r.family, ports_ok, r.spell);
    let to = render_endpoint(&r.to, r.family, ports_ok, r.spell);
    if from.is_empty() && to.is_empty() {
        if r.spell & 128 != 0 {
            s.push_str(" all");
        }
    } else {
        if !from.is_empty() {
            write!(s, " from {from}").unwrap();
        }
        if !to.is_empty() {
            write!(s, " to {to}").unwrap();
        }
    }
    if let Some((set, mask)) = r.flags
        && protos == [6]
    {
        if mask == 0 {
            s.push_str(" flags any");
        } else {
            write!(s, " flags {}/{}", flags_text(set & mask), flags_text(mask)).unwrap();
        }
    }
    if let Some((t, code)) = r.icmp {
        let keyword = match protos.as_slice() {
            [1] => Some("icmp-type"),
            [58] => Some("icmp6-type"),
            _ => None,
        };
        if let Some(keyword) = keyword {
            let named = match (t, keyword) {
                (8, "icmp-type") if names => "echoreq".to_owned(),
                (3, "icmp-type") if names => "unreach".to_owned(),
                (128, "icmp6-type") if names => "echo-request".to_owned(),
                (129, "icmp6-type") if names => "echorep".to_owned(),
                _ => t.to_string(),
            };
            write!(s, " {keyword} {named}").unwrap();
            if let Some(c) = code {
                write!(s, " code {c}").unwrap();
            }
        }
    }
    if let Some(v) = r.vlan {
        write!(s, " vlan {v}").unwrap();
    }
    if r.out && r.action == Action::Pass && r.spell.is_multiple_of(3) {
        s.push_str(" keep state");
    }
    if r.label {
        write!(s, " label \"rule {i}\"").unwrap();
    }
    s
}

pub(crate) fn render(spec: &RulesetSpec) -> String {
    let mut s = String::from("# generated by tests/differential.rs\n");
    match spec.default {
        Some(Action::Pass) => s.push_str("set default pass\n"),
        Some(Action::Block) => s.push_str("set default block\n"),
        None => {}
    }
    if let Some(n) = spec.state_limit {
        writeln!(s, "set limit states {n}").unwrap();
    }
    for (i, entries) in spec.tables.iter().enumerate() {
        let texts: Vec<String> = entries.iter().map(|n| net_text(n, i % 2 == 0)).collect();
        if texts.is_empty() {
            writeln!(s, "table <t{i}> {{ }}").unwrap();
        } else {
            writeln!(s, "table <t{i}> {}", list(&texts, i != 1, false)).unwrap();
        }
    }
    for (i, r) in spec.rules.iter().enumerate() {
        s.push_str(&render_rule(r, i));
        s.push('\n');
    }
    s
}
