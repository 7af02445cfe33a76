//! Interface addresses in address positions and tables, as pf writes them, resolved
//! against the host's interfaces when a ruleset is loaded or applied:
//!
//! ```text
//! em0             every address of em0             (em0)   the same (pf: follows changes)
//! em0:network     the networks em0's addresses are in (IPv6 link-local ones left out)
//! em0:broadcast   em0's IPv4 broadcast addresses
//! em0:peer        the peer addresses of a point-to-point em0
//! em0:0           the first address of each family only (no aliases); combines: (em0:network:0)
//! self            every address of every interface of the host
//! ```
//!
//! The parser turns each such word into a reference to a table of its own, named as
//! written (`<(em0)>`, `<self>`), and records in `Options::interface_tables` what to fill
//! it (or an inline table that lists interfaces) with; [`resolve`] fills it from a
//! [`HostAddrs`] snapshot. Everything downstream (compiler,
//! model) sees ordinary tables. A ruleset is resolved again whenever it is applied, so
//! both forms follow address changes at the next apply (a daemon calls [`resolve`]
//! when the kernel reports a change). An interface that does not exist or has no
//! address of the kind asked for resolves to nothing: the rule matches no address
//! there, and [`resolve`] says so.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ast::{Ruleset, Table};
use super::cursor::Cursor;
use super::error::RulesError;
use super::lexer::Kind;

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFACE_NAME: usize = 15;

/// The word pf uses for every address of the host.
pub const SELF: &str = "self";

/// Which addresses of an interface a reference stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfaceAddrKind {
    /// Its addresses (`em0`, `(em0)`).
    Address,
    /// The networks of its addresses (`em0:network`).
    Network,
    /// Its IPv4 broadcast addresses (`em0:broadcast`).
    Broadcast,
    /// The other end of a point-to-point link (`em0:peer`).
    Peer,
}

/// An interface's addresses, as written in a rule or table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceAddr {
    /// Interface name; [`SELF`] for every interface of the host.
    pub name: String,
    /// Which of its addresses.
    pub kind: IfaceAddrKind,
    /// `:0`: the first address of each family only.
    #[serde(default)]
    pub first_only: bool,
    /// Written in parentheses (pf's dynamic form).
    #[serde(default)]
    pub dynamic: bool,
}

/// A name Linux could give an interface: letters, digits, `_`, `-`, `.`, starting with
/// a letter, at most 15 bytes.
pub(super) fn is_iface_name(w: &str) -> bool {
    w.len() <= MAX_IFACE_NAME
        && w.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The interface reference `word` is, if it is one: `NAME[:MOD...]`, `(NAME[:MOD...])`
/// or `self`. `Err` for a word that looks like one but is wrong (`em0:nets`), with the
/// message. Words that are addresses are not references.
pub(super) fn parse_word(word: &str) -> Option<Result<IfaceAddr, String>> {
    if word.parse::<IpAddr>().is_ok() || word.parse::<IpNet>().is_ok() {
        return None;
    }
    let (inner, dynamic) = match word.strip_prefix('(') {
        Some(rest) => match rest.strip_suffix(')') {
            Some(inner) => (inner, true),
            None => return Some(Err(format!("`{word}` has no closing `)`"))),
        },
        None => (word, false),
    };
    let mut parts = inner.split(':');
    let name = parts.next().unwrap_or_default();
    if !is_iface_name(name) {
        return dynamic.then(|| Err(format!("expected an interface name in `{word}`, like `(em0)`")));
    }
    let mut addr = IfaceAddr { name: name.to_owned(), kind: IfaceAddrKind::Address, first_only: false, dynamic };
    for modifier in parts {
        let kind = match modifier {
            "0" if !addr.first_only => {
                addr.first_only = true;
                continue;
            }
            "network" => IfaceAddrKind::Network,
            "broadcast" => IfaceAddrKind::Broadcast,
            "peer" => IfaceAddrKind::Peer,
            _ => {
                return Some(Err(format!(
                    "unknown interface modifier `:{modifier}` in `{word}`; the modifiers are :network, \
                     :broadcast, :peer and :0"
                )));
            }
        };
        if addr.kind != IfaceAddrKind::Address {
            return Some(Err(format!("`{word}` names more than one of :network, :broadcast and :peer")));
        }
        addr.kind = kind;
    }
    if addr.name == SELF && (addr.kind != IfaceAddrKind::Address || addr.first_only) {
        return Some(Err(format!("`{word}`: `self` takes no modifier")));
    }
    Some(Ok(addr))
}

/// Whether `word` is a plain interface name (`em0`), which is easiest to mistype for
/// a keyword; the parser accepts it in rules only when it is no likely typo of one,
/// and in tables not at all (write `(em0)` there).
pub(super) fn is_bare(word: &str) -> bool {
    !word.starts_with('(') && !word.contains(':') && word != SELF
}

/// `on IF` or `on { IF ... }` after `set skip`: the interfaces left unfiltered.
pub(super) fn parse_skip(c: &mut Cursor<'_>) -> Result<Vec<String>, RulesError> {
    let on = c.next();
    if !c.is_word(on, "on") {
        return Err(c.unexpected_kw(on, "`on` after `set skip`", &["on"]));
    }
    let names = names_or_list(c, "an interface name like `lo`")?;
    c.expect_end("end of line after `set skip on IF`")?;
    Ok(names)
}

/// `IF` or `{ IF ... }` (`set skip on`, `antispoof for`): interface names, at least
/// one; `expected` names one in errors.
pub(super) fn names_or_list(c: &mut Cursor<'_>, expected: &str) -> Result<Vec<String>, RulesError> {
    let name = |c: &mut Cursor<'_>, _: &str| {
        let tok = c.next();
        match c.word(tok) {
            Some(w) if is_iface_name(w) => Ok(w.to_owned()),
            _ => Err(c.unexpected(tok, expected)),
        }
    };
    if c.peek().kind == Kind::LBrace {
        c.next();
        return c.braced_list(expected, name);
    }
    Ok(vec![name(c, expected)?])
}

/// One interface of the host, as [`resolve`] needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostIface {
    /// Name.
    pub name: String,
    /// Whether it is a loopback device.
    pub loopback: bool,
    /// Its addresses in the kernel's order (the primary address of a subnet first).
    pub addrs: Vec<HostAddr>,
}

/// One address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr {
    /// The address and the length of its network's prefix.
    pub net: IpNet,
    /// The IPv4 broadcast address, if the interface has one.
    pub broadcast: Option<Ipv4Addr>,
    /// The other end of a point-to-point link.
    pub peer: Option<IpAddr>,
}

/// The host's interfaces and their addresses at one moment (see
/// `crate::host::read_addresses` for this host's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostAddrs {
    /// Every interface, with or without addresses.
    pub ifaces: Vec<HostIface>,
}

impl HostAddrs {
    /// The addresses `r` stands for, and whether the interface exists.
    pub fn lookup(&self, r: &IfaceAddr) -> (Vec<IpNet>, bool) {
        let ifaces: Vec<&HostIface> = if r.name == SELF {
            self.ifaces.iter().collect()
        } else {
            self.ifaces.iter().filter(|i| i.name == r.name).collect()
        };
        let exists = !ifaces.is_empty();
        let mut out = Vec::new();
        for iface in ifaces {
            let (mut got4, mut got6) = (false, false);
            for a in &iface.addrs {
                let v4 = a.net.addr().is_ipv4();
                if r.first_only && (if v4 { got4 } else { got6 }) {
                    continue;
                }
                let net = match r.kind {
                    IfaceAddrKind::Address => Some(IpNet::from(a.net.addr())),
                    // Every interface has a link-local network: antispoof would block
                    // link-local traffic arriving everywhere else.
                    IfaceAddrKind::Network if is_link_local(a.net.addr()) => None,
                    IfaceAddrKind::Network => Some(a.net.trunc()),
                    IfaceAddrKind::Broadcast => a.broadcast.map(|b| IpNet::from(IpAddr::V4(b))),
                    IfaceAddrKind::Peer => a.peer.map(IpNet::from),
                };
                if let Some(net) = net {
                    out.push(net);
                    if v4 { got4 = true } else { got6 = true }
                }
            }
        }
        (out, exists)
    }
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// What [`resolve`] did to one table, for `check` and the commands to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The table (for a rule's reference: as written, like `(em0)`).
    pub table: String,
    /// Addresses it now holds from interfaces.
    pub addresses: Vec<IpNet>,
    /// What is worth a warning: an interface missing or without such an address.
    pub warnings: Vec<String>,
}

/// Fills every table that holds interface references with the addresses `host` gives
/// them (after the table's own entries), and says what each became. The ruleset is
/// copied: keep the unresolved one to resolve again when addresses change.
pub fn resolve(rs: &Ruleset, host: &HostAddrs) -> (Ruleset, Vec<Resolved>) {
    let mut out = rs.clone();
    let mut report = Vec::new();
    for (name, refs) in &rs.options.interface_tables {
        let Some(table) = out.tables.get_mut(name) else { continue };
        let mut resolved = Resolved { table: name.clone(), addresses: Vec::new(), warnings: Vec::new() };
        let mut seen: BTreeSet<IpNet> = table.entries.iter().copied().collect();
        for r in refs {
            let (nets, exists) = host.lookup(r);
            let shown = written(r);
            if !exists {
                resolved.warnings.push(format!("no interface `{}` on this host: `{shown}` matches no address", r.name));
            } else if nets.is_empty() {
                let what = match r.kind {
                    IfaceAddrKind::Address => "no address",
                    IfaceAddrKind::Network => "no address outside link-local networks",
                    IfaceAddrKind::Broadcast => "no IPv4 broadcast address",
                    IfaceAddrKind::Peer => "no point-to-point peer",
                };
                resolved.warnings.push(format!("`{}` has {what}: `{shown}` matches no address", r.name));
            }
            for net in nets {
                if seen.insert(net) {
                    table.entries.push(net);
                    resolved.addresses.push(net);
                }
            }
        }
        report.push(resolved);
    }
    (out, report)
}

/// An interface reference as pf writes it.
pub fn written(r: &IfaceAddr) -> String {
    let mut s = r.name.clone();
    match r.kind {
        IfaceAddrKind::Address => {}
        IfaceAddrKind::Network => s.push_str(":network"),
        IfaceAddrKind::Broadcast => s.push_str(":broadcast"),
        IfaceAddrKind::Peer => s.push_str(":peer"),
    }
    if r.first_only {
        s.push_str(":0");
    }
    if r.dynamic { format!("({s})") } else { s }
}

/// The table a rule's reference `r` is put in: named as written, empty until resolved.
pub(super) fn reference_table(r: &IfaceAddr) -> (String, Table) {
    (written(r), Table { entries: Vec::new(), file: None, dynamic: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{AddrItem, AddrMatch, parse_str};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn host() -> HostAddrs {
        let addr =
            |n: &str, b: Option<&str>| HostAddr { net: net(n), broadcast: b.map(|b| b.parse().unwrap()), peer: None };
        HostAddrs {
            ifaces: vec![
                HostIface { name: "lo".into(), loopback: true, addrs: vec![addr("127.0.0.1/8", None)] },
                HostIface {
                    name: "em0".into(),
                    loopback: false,
                    addrs: vec![
                        addr("192.0.2.1/24", Some("192.0.2.255")),
                        addr("192.0.2.7/24", Some("192.0.2.255")),
                        addr("2001:db8::1/64", None),
                        addr("fe80::1/64", None),
                    ],
                },
                HostIface { name: "em1".into(), loopback: false, addrs: vec![] },
                HostIface {
                    name: "ppp0".into(),
                    loopback: false,
                    addrs: vec![HostAddr {
                        net: net("198.51.100.1/32"),
                        broadcast: None,
                        peer: Some("198.51.100.2".parse().unwrap()),
                    }],
                },
            ],
        }
    }

    fn table_of(rs: &Ruleset, rule: usize, from: bool) -> Vec<IpNet> {
        let r = &rs.rules[rule];
        let m = if from { &r.from.addr } else { &r.to.addr };
        let AddrMatch::List { items, .. } = m else { panic!("{m:?}") };
        let [AddrItem::Table(t)] = items.as_slice() else { panic!("{items:?}") };
        rs.tables[t].entries.clone()
    }

    #[test]
    fn every_form_resolves_as_pf_does() {
        let src = "pass in from em0\n\
                   pass in from (em0)\n\
                   pass in from em0:network\n\
                   pass in from em0:broadcast\n\
                   pass in from (em0:0)\n\
                   pass in from ppp0:peer\n\
                   pass in to self\n\
                   pass in from (em0:network:0)\n";
        let rs = parse_str(src, "t.conf", ".".as_ref()).unwrap();
        let (rs, report) = resolve(&rs, &host());
        let nets = |v: &[&str]| v.iter().map(|s| net(s)).collect::<Vec<_>>();
        assert_eq!(table_of(&rs, 0, true), nets(&["192.0.2.1/32", "192.0.2.7/32", "2001:db8::1/128", "fe80::1/128"]));
        assert_eq!(table_of(&rs, 1, true), table_of(&rs, 0, true));
        assert_eq!(table_of(&rs, 2, true), nets(&["192.0.2.0/24", "2001:db8::/64"]));
        assert_eq!(table_of(&rs, 3, true), nets(&["192.0.2.255/32"]));
        assert_eq!(table_of(&rs, 4, true), nets(&["192.0.2.1/32", "2001:db8::1/128"]));
        assert_eq!(table_of(&rs, 5, true), nets(&["198.51.100.2/32"]));
        assert_eq!(
            table_of(&rs, 6, false),
            nets(&[
                "127.0.0.1/32",
                "192.0.2.1/32",
                "192.0.2.7/32",
                "2001:db8::1/128",
                "fe80::1/128",
                "198.51.100.1/32"
            ])
        );
        assert_eq!(table_of(&rs, 7, true), nets(&["192.0.2.0/24", "2001:db8::/64"]));
        assert!(report.iter().all(|r| r.warnings.is_empty()), "{report:?}");
    }

    #[test]
    fn interfaces_in_tables_and_missing_ones() {
        let src = "table <mine> { 10.0.0.0/8, (em0:0), (em1), (nosuch0) }\npass in from <mine>\npass in from em1\n";
        let rs = parse_str(src, "t.conf", ".".as_ref()).unwrap();
        let (resolved, report) = resolve(&rs, &host());
        assert_eq!(
            resolved.tables["mine"].entries,
            [net("10.0.0.0/8"), net("192.0.2.1/32"), net("2001:db8::1/128")],
            "the table's own entries first"
        );
        assert_eq!(resolved.tables["em1"].entries, []);
        let warnings: Vec<&String> = report.iter().flat_map(|r| &r.warnings).collect();
        assert_eq!(
            warnings,
            [
                "`em1` has no address: `em1` matches no address",
                "`em1` has no address: `(em1)` matches no address",
                "no interface `nosuch0` on this host: `(nosuch0)` matches no address",
            ]
        );
        // The unresolved ruleset is kept: resolving it again against other addresses
        // gives the new ones only.
        let mut moved = host();
        moved.ifaces[1].addrs.truncate(0);
        moved.ifaces[2].addrs.push(HostAddr { net: net("203.0.113.5/24"), broadcast: None, peer: None });
        let (again, _) = resolve(&rs, &moved);
        assert_eq!(again.tables["em1"].entries, [net("203.0.113.5/32")]);
        assert_eq!(again.tables["mine"].entries, [net("10.0.0.0/8"), net("203.0.113.5/32")]);
    }

    #[test]
    fn set_skip_collects_interfaces() {
        let rs = parse_str("set skip on lo\nset skip on { em0, em1 lo }\npass in\n", "t.conf", ".".as_ref()).unwrap();
        assert_eq!(rs.options.skip, ["lo", "em0", "em1"]);
        let err = |src: &str| parse_str(src, "t.conf", ".".as_ref()).unwrap_err().to_string();
        assert_eq!(err("set skip lo\n"), "t.conf:1:10: expected `on` after `set skip`, found `lo`");
        assert_eq!(err("set skip on { }\n"), "t.conf:1:15: expected an interface name like `lo`, found `}`");
        assert_eq!(err("set skip on 1.2.3.4\n"), "t.conf:1:13: expected an interface name like `lo`, found `1.2.3.4`");
    }

    #[test]
    fn bad_references_say_where_and_what() {
        let err = |src: &str| parse_str(src, "t.conf", ".".as_ref()).unwrap_err().to_string();
        assert_eq!(
            err("pass in from em0:nets\n"),
            "t.conf:1:14: unknown interface modifier `:nets` in `em0:nets`; the modifiers are :network, \
             :broadcast, :peer and :0"
        );
        assert_eq!(err("pass in from (em0\n"), "t.conf:1:14: `(em0` has no closing `)`");
        assert_eq!(err("pass in to self:network\n"), "t.conf:1:12: `self:network`: `self` takes no modifier");
        assert_eq!(
            err("pass in from em0:network:peer\n"),
            "t.conf:1:14: `em0:network:peer` names more than one of :network, :broadcast and :peer"
        );
    }
}
