//! Differential tests: generated rulesets and packets through the real XDP program
//! (BPF_PROG_TEST_RUN) and through the reference model (`filter_user::model`); both
//! must pick the same rule (or default, non-IP, malformed reason) and the same action.
//!
//! Each case is a pool of values (nested prefixes of both families, ports, VLAN ids,
//! ICMP types, protocols), a ruleset drawn from the pool (every match field, negated
//! lists, tables with nested entries, `on` the loopback's name or another, `out` rules
//! that received packets must skip, default pass or block, sometimes more than 64
//! rules), rendered as pf text and parsed (so the parser is exercised too), and
//! packets drawn from the pool, half of them aimed at a rule of the ruleset (its
//! addresses, ports, flags, ... at and just past their edges). Packets are mangled now
//! and then: VLAN tags (up to 3), IPv4 options and fragments, IPv6 extension chains
//! (up to 11 headers, fragments first and later), bad versions and header lengths,
//! random cuts, random bytes.
//!
//! Default run: 200 rulesets, 500 packets each; `XDPWALL_DIFF_SCALE=N` multiplies the
//! rulesets. The totals, and which rule features decided packets, are printed to
//! stderr. Failures shrink and are saved in `differential.proptest-regressions`
//! (replayed first on every run); concrete ones found so far are the `regression_*`
//! tests at the end. `keep state` on `in` rules is left to the second property,
//! `kernel_agrees_with_model_on_sequences`; `rate` and `log` are not supported yet.
//!
//! The second property checks connection tracking: rulesets with `keep state` on some
//! pass rules, and per ruleset a dozen flows (TCP, UDP, ICMP/ICMPv6 echo between a few
//! hosts) each emitting a scripted sequence in both directions (handshakes, data, FINs,
//! RSTs, reconnections, retransmissions, stray ACKs, unsolicited SYN-ACKs, SYNs on
//! established flows, wrong ports and identifiers, ...) with random mutations,
//! interleaved across flows. Every ruleset gets a freshly loaded program (its own pin
//! dir, so the pinned flow table starts empty) and a fresh `model::state::Tracker`;
//! every packet's decision must agree, "passed by state" included. As on a router,
//! both directions enter through XDP. Default run: 100 rulesets of at least 200
//! packets; `XDPWALL_DIFF_SCALE` multiplies the rulesets.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Instant,
};

use filter_common::{Malformed, slot};
use filter_user::{
    compile,
    dataplane::{Decision, IfaceBinding, LoadedProgram},
    model::{
        self, ModelDecision,
        packet::{Dissected, dissect},
        state::Tracker,
    },
    rules::{self, Action, AddrItem, AddrMatch, Direction, Family, Rule, Ruleset},
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{Index, select},
    test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// ifindex of the loopback device, on which test runs are received.
const LO: u32 = 1;
/// Rulesets per default run.
const RULESETS: u32 = 200;
/// Packets per ruleset.
const PACKETS: usize = 500;
/// Frames are kept below what BPF_PROG_TEST_RUN takes for XDP (a page less head- and
/// tailroom).
const MAX_FRAME: usize = 3000;
/// Interface names rules use; the loopback is loaded as one of the first two or not at all.
const IFACE_NAMES: [&str; 3] = ["lo", "wan0", "eth1"];
const TABLES: usize = 3;

// ---------------------------------------------------------------------------------
// The pool: the values one case draws its rules and packets from.

#[derive(Debug, Clone)]
struct Pool {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
    ports: Vec<u16>,
    vlans: Vec<u16>,
    icmp: Vec<(u8, u8)>,
    protos: Vec<u8>,
}

/// A chain of nested prefixes around one address, with siblings (the neighbouring
/// prefix of the same length) now and then. `bits`: 32 or 128.
fn nested(base: u128, lens: Vec<u8>, siblings: bool, bits: u8) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    for len in lens {
        let len = len.min(bits);
        let net = mask(base, len, bits);
        out.push((net, len));
        if siblings && len > 0 {
            out.push((net ^ (1u128 << (bits - len)), len));
        }
    }
    out
}

fn mask(a: u128, len: u8, bits: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let host = (bits - len) as u32;
        (a >> host).checked_shl(host).unwrap_or(0)
    }
}

fn v4_lens() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0u8..=32, 1 => Just(32), 1 => Just(31), 1 => Just(24), 1 => Just(16),
        1 => Just(8), 1 => Just(1), 1 => Just(0)]
}

fn v6_lens() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0u8..=128, 1 => Just(128), 1 => Just(127), 1 => Just(64), 1 => Just(48),
        1 => Just(32), 1 => Just(1), 1 => Just(0)]
}

fn pool() -> impl Strategy<Value = Pool> {
    let v4 = vec((any::<u32>(), vec(v4_lens(), 1..4), any::<bool>()), 1..3).prop_map(|fams| {
        let mut nets: Vec<Ipv4Net> = Vec::new();
        for (base, lens, sib) in fams {
            for (a, len) in nested(base as u128, lens, sib, 32) {
                let net = Ipv4Net::new(Ipv4Addr::from(a as u32), len).expect("len <= 32");
                if !nets.contains(&net) {
                    nets.push(net);
                }
            }
        }
        nets
    });
    let v6 = vec((any::<u128>(), vec(v6_lens(), 1..4), any::<bool>()), 1..3).prop_map(|fams| {
        let mut nets: Vec<Ipv6Net> = Vec::new();
        for (base, lens, sib) in fams {
            for (a, len) in nested(base, lens, sib, 128) {
                let net = Ipv6Net::new(Ipv6Addr::from(a), len).expect("len <= 128");
                if !nets.contains(&net) {
                    nets.push(net);
                }
            }
        }
        nets
    });
    let port = prop_oneof![4 => any::<u16>(), 2 => 1u16..1024, 1 => Just(0), 1 => Just(65535),
        1 => Just(1), 1 => Just(65534)];
    let vlan = prop_oneof![3 => 0u16..4096, 1 => Just(0), 1 => Just(4095), 1 => Just(1)];
    let icmp_type = prop_oneof![Just(0u8), Just(3), Just(8), Just(11), Just(128), Just(129), Just(135), any::<u8>()];
    let icmp_code = prop_oneof![2 => Just(0u8), 1 => any::<u8>(), 1 => Just(255)];
    let proto = prop_oneof![
        Just(6u8),
        Just(17),
        Just(132),
        Just(1),
        Just(58),
        Just(0),
        Just(47),
        Just(59),
        Just(255),
        Just(43),
        Just(44),
        Just(51),
        Just(60),
        any::<u8>()
    ];
    (v4, v6, vec(port, 2..7), vec(vlan, 1..4), vec((icmp_type, icmp_code), 1..4), vec(proto, 1..4))
        .prop_map(|(v4, v6, ports, vlans, icmp, protos)| Pool { v4, v6, ports, vlans, icmp, protos })
}

// ---------------------------------------------------------------------------------
// Rulesets: a structure that always renders to valid pf text.

#[derive(Debug, Clone)]
struct RulesetSpec {
    default: Option<Action>,
    /// `set limit states N` (syntax only: the flow table stays empty, see `out`).
    state_limit: Option<u32>,
    tables: Vec<Vec<IpNet>>,
    rules: Vec<RuleSpec>,
    /// The name the filter knows `lo` by, or not loaded on it.
    lo_name: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct RuleSpec {
    action: Action,
    /// `in`, `quick`, names instead of numbers, `all`: spelling only.
    spell: u8,
    iface: Option<&'static str>,
    family: Option<Family>,
    protos: Option<Vec<u8>>,
    from: EndpointSpec,
    to: EndpointSpec,
    /// (set, mask) before `set &= mask`; mask 0 renders as `flags any`.
    flags: Option<(u8, u8)>,
    icmp: Option<(u8, Option<u8>)>,
    vlan: Option<u16>,
    label: bool,
    /// An `out` rule (TC egress): never judges a received packet. A third of those
    /// that pass are rendered with `keep state`, so that the XDP program runs its
    /// connection tracking lookup, which finds no flow (only `out` rules open any, at
    /// egress). Not more: a stateful program takes some 0.7 s to load, 3 times more.
    out: bool,
}

#[derive(Debug, Clone)]
struct EndpointSpec {
    negated: bool,
    /// Empty: any.
    items: Vec<ItemSpec>,
    ports: Option<Vec<(u16, u16)>>,
}

#[derive(Debug, Clone)]
enum ItemSpec {
    Net(IpNet),
    Table(usize),
}

fn near(values: Vec<u16>, max: u16) -> impl Strategy<Value = u16> {
    (select(values), prop_oneof![4 => Just(0i32), 1 => Just(-1), 1 => Just(1)])
        .prop_map(move |(v, d)| (v as i32 + d).clamp(0, max as i32) as u16)
}

fn port_ranges(pool: &Pool) -> impl Strategy<Value = Vec<(u16, u16)>> + use<> {
    let p = || near(pool.ports.clone(), u16::MAX);
    let range = prop_oneof![
        3 => p().prop_map(|v| (v, v)),
        2 => (p(), p()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => (p(), 0u16..4).prop_map(|(a, d)| (a, a.saturating_add(d))),
        1 => Just((0, 65535)),
    ];
    vec(range, 1..4)
}

fn item(pool: &Pool) -> impl Strategy<Value = ItemSpec> + use<> {
    prop_oneof![
        3 => select(pool.v4.clone()).prop_map(|n| ItemSpec::Net(IpNet::V4(n))),
        2 => select(pool.v6.clone()).prop_map(|n| ItemSpec::Net(IpNet::V6(n))),
        2 => (0..TABLES).prop_map(ItemSpec::Table),
    ]
}

fn endpoint(pool: &Pool) -> impl Strategy<Value = EndpointSpec> + use<> {
    (
        prop::bool::weighted(0.3),
        prop_oneof![2 => Just(Vec::new()), 3 => vec(item(pool), 1..4)],
        prop::option::weighted(0.4, port_ranges(pool)),
    )
        .prop_map(|(negated, items, ports)| EndpointSpec { negated, items, ports })
}

fn protocols(pool: &Pool) -> impl Strategy<Value = Option<Vec<u8>>> + use<> {
    prop_oneof![
        3 => Just(None),
        4 => Just(Some(vec![6])),
        2 => Just(Some(vec![17])),
        1 => Just(Some(vec![132])),
        2 => Just(Some(vec![1])),
        2 => Just(Some(vec![58])),
        1 => Just(Some(vec![6, 17])),
        1 => Just(Some(vec![17, 132, 6])),
        2 => vec(select(pool.protos.clone()), 1..3).prop_map(Some),
    ]
}

fn rule(pool: &Pool) -> impl Strategy<Value = RuleSpec> + use<> {
    let icmp = (select(pool.icmp.clone()), prop_oneof![Just(0i32), Just(1), Just(-1)], any::<bool>()).prop_map(
        |((t, c), d, with_code)| {
            let t = (t as i32 + d).clamp(0, 255) as u8;
            (t, with_code.then_some(c))
        },
    );
    let flags = prop_oneof![
        2 => any::<(u8, u8)>(),
        2 => Just((0x02, 0x12)),
        1 => Just((0x02, 0x02)),
        1 => Just((0x00, 0x17)),
        1 => Just((0x10, 0x10)),
        1 => Just((0, 0)),
    ];
    let family = prop_oneof![3 => Just(None), 1 => Just(Some(Family::Inet)), 1 => Just(Some(Family::Inet6))];
    let iface = prop_oneof![
        6 => Just(None),
        2 => Just(Some(IFACE_NAMES[0])),
        2 => select(IFACE_NAMES.to_vec()).prop_map(Some),
    ];
    (
        (prop_oneof![Just(Action::Pass), Just(Action::Block)], any::<u8>(), iface, family, protocols(pool)),
        (endpoint(pool), endpoint(pool)),
        (
            prop::option::weighted(0.5, flags),
            prop::option::weighted(0.6, icmp),
            prop::option::weighted(0.15, near(pool.vlans.clone(), 4095)),
            prop::bool::weighted(0.2),
        ),
        prop::bool::weighted(0.1),
    )
        .prop_map(|((action, spell, iface, family, protos), (from, to), (flags, icmp, vlan, label), out)| {
            RuleSpec { action, spell, iface, family, protos, from, to, flags, icmp, vlan, label, out }
        })
}

/// How many conditions a rule has (before the renderer drops those it cannot have).
fn conditions(r: &RuleSpec) -> usize {
    [
        r.iface.is_some(),
        r.family.is_some(),
        r.protos.is_some(),
        !r.from.items.is_empty(),
        !r.to.items.is_empty(),
        r.from.ports.is_some(),
        r.to.ports.is_some(),
        r.flags.is_some(),
        r.icmp.is_some(),
        r.vlan.is_some(),
    ]
    .iter()
    .filter(|c| **c)
    .count()
}

/// `n` prefixes of `net`'s length next to it (its consecutive siblings), so that a
/// table holds enough of one length for the address lookup to hash that length.
fn siblings(net: IpNet, n: usize) -> Vec<IpNet> {
    let (bits, base) = match net {
        IpNet::V4(v4) => (32u32, u128::from(v4.network().to_bits())),
        IpNet::V6(v6) => (128, v6.network().to_bits()),
    };
    let len = u32::from(net.prefix_len());
    if len < 8 {
        return Vec::new();
    }
    (1..=n as u128)
        .map(|i| {
            let a = base ^ (i << (bits - len));
            match net {
                IpNet::V4(_) => IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a as u32), len as u8).expect("len <= 32")),
                IpNet::V6(_) => IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len as u8).expect("len <= 128")),
            }
        })
        .collect()
}

fn ruleset(pool: &Pool) -> impl Strategy<Value = RulesetSpec> + use<> {
    let net = prop_oneof![
        3 => select(pool.v4.clone()).prop_map(IpNet::V4),
        2 => select(pool.v6.clone()).prop_map(IpNet::V6),
    ];
    // Now and then a bulk table: a pool prefix with enough siblings of its length to be
    // hashed (IPv6), or to fill direct-array groups (IPv4).
    let bulk = compile::V6_HASH_MIN_PREFIXES;
    let table = (vec(net.clone(), 0..5), prop_oneof![7 => Just(None), 1 => net.prop_map(Some)]).prop_map(
        move |(mut entries, bulk_around)| {
            if let Some(n) = bulk_around {
                entries.push(n);
                entries.extend(siblings(n, bulk));
            }
            entries
        },
    );
    (
        prop_oneof![Just(None), Just(Some(Action::Pass)), Just(Some(Action::Block))],
        vec(table, TABLES..=TABLES),
        // Now and then more than 64 rules, so that several bitmap words are used.
        // Their rules are narrower, so that packets get past the first 64 now and then.
        prop_oneof![
            10 => vec(rule(pool), 0..14),
            1 => vec(rule(pool).prop_filter("narrow rules", |r| conditions(r) >= 3), 60..150),
        ],
        prop_oneof![3 => Just(Some("lo")), 1 => Just(Some("wan0")), 1 => Just(None)],
        prop_oneof![1 => Just(None), 4 => select(vec![1u32, 16, 1000]).prop_map(Some)],
    )
        .prop_map(|(default, tables, rules, lo_name, state_limit)| RulesetSpec {
            default,
            state_limit,
            tables,
            rules,
            lo_name,
        })
}

// ---------------------------------------------------------------------------------
// The renderer: ruleset structure -> pf text. Conditions that the rule language would
// refuse (ports without tcp/udp/sctp, flags without tcp, ...) are left out, so every
// shrunk ruleset still parses.

const PORT_PROTOS: [u8; 3] = [6, 17, 132];

fn proto_name(p: u8, spell: bool) -> String {
    match (p, spell) {
        (6, true) => "tcp".into(),
        (17, true) => "udp".into(),
        (1, true) => "icmp".into(),
        (58, true) => "icmp6".into(),
        (132, true) => "sctp".into(),
        _ => p.to_string(),
    }
}

fn service(port: u16) -> Option<&'static str> {
    Some(match port {
        22 => "ssh",
        53 => "domain",
        80 => "http",
        443 => "https",
        123 => "ntp",
        _ => return None,
    })
}

fn net_text(net: &IpNet, bare_host: bool) -> String {
    if bare_host && net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() }
}

fn flags_text(bits: u8) -> String {
    "FSRPAUEW".chars().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, c)| c).collect()
}

/// `{ a, b }` or `{ a b }` (or just `a` when `single` and there is one).
fn list(items: &[String], commas: bool, single: bool) -> String {
    if single && items.len() == 1 {
        return items[0].clone();
    }
    let sep = if commas { ", " } else { " " };
    format!("{{ {} }}", items.join(sep))
}

fn render_endpoint(ep: &EndpointSpec, family: Option<Family>, ports_ok: bool, spell: u8) -> String {
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

fn render_rule(r: &RuleSpec, i: usize) -> String {
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

fn render(spec: &RulesetSpec) -> String {
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

// ---------------------------------------------------------------------------------
// Packets.

#[derive(Debug, Clone)]
struct Tag {
    /// 802.1ad TPID (else 802.1Q).
    ad: bool,
    tci: u16,
}

#[derive(Debug, Clone)]
enum Ext {
    /// Hop-by-hop (0), routing (43) or destination options (60): `(units + 1) * 8` bytes.
    Opts { code: u8, units: u8 },
    /// AH: `(len + 2) * 4` bytes.
    Ah { len: u8 },
    /// Fragment: offset (13 bits) and the low 3 bits (reserved, M).
    Frag { offset: u16, low: u8 },
}

#[derive(Debug, Clone)]
enum Kind {
    Ip,
    /// Another EtherType with `payload` after it.
    Other(u16),
    /// This EtherType followed by `payload` only: random bytes where headers should be.
    Raw(u16),
}

#[derive(Debug, Clone)]
struct PacketSpec {
    tags: Vec<Tag>,
    kind: Kind,
    v6: bool,
    src4: u32,
    dst4: u32,
    src6: u128,
    dst6: u128,
    /// Replaces the IP version nibble.
    bad_version: Option<u8>,
    /// IPv4 IHL (5-15, now and then less).
    ihl: u8,
    /// IPv4 flags and fragment offset, as on the wire.
    frag4: u16,
    exts: Vec<Ext>,
    /// The upper-layer protocol; it decides which L4 header is written.
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    icmp: (u8, u8),
    payload: Vec<u8>,
    /// Aim at rule `index` of the ruleset, with these random bits for its choices.
    aim: Option<(Index, u64)>,
    /// Cut the frame to a length in 14..=len; with `true`, the IP length field
    /// (IPv4 Total Length, IPv6 Payload Length) is made to say so, where it is left whole.
    cut: Option<(Index, bool)>,
    /// Overwrite bytes (in the first 100).
    patches: Vec<(Index, u8)>,
    /// Bytes after the packet that its IP length does not cover (Ethernet padding).
    pad: u8,
    /// TCP Data Offset (5, now and then anything).
    tcp_doff: u8,
}

fn addr_near<T: Copy + fmt::Debug + 'static>(
    nets: Vec<T>,
    range: impl Fn(&T) -> (u128, u128) + 'static,
    max: u128,
    random: impl Strategy<Value = u128>,
) -> impl Strategy<Value = u128> {
    let from_pool = (select(nets), 0u8..8, any::<u128>()).prop_map(move |(n, mode, r)| {
        let (first, last) = range(&n);
        edge(first, last, max, mode, r)
    });
    prop_oneof![3 => from_pool, 1 => random]
}

/// An address or port at, inside or just outside `first..=last` (wrapping in
/// `0..=max`): mode 0 first, 1 last, 2 first - 1, 3 last + 1, else inside.
fn edge(first: u128, last: u128, max: u128, mode: u8, r: u128) -> u128 {
    match mode {
        0 => first,
        1 => last,
        2 => {
            if first == 0 {
                max
            } else {
                first - 1
            }
        }
        3 => {
            if last == max {
                0
            } else {
                last + 1
            }
        }
        _ => first + r % (last - first).saturating_add(1).max(1),
    }
}

fn v4_range(n: &Ipv4Net) -> (u128, u128) {
    (u32::from(n.network()) as u128, u32::from(n.broadcast()) as u128)
}

fn v6_range(n: &Ipv6Net) -> (u128, u128) {
    (u128::from(n.network()), u128::from(n.broadcast()))
}

fn ext() -> impl Strategy<Value = Ext> {
    let units = prop_oneof![12 => 0u8..4, 1 => 0u8..70];
    prop_oneof![
        3 => (select(vec![0u8, 43, 60]), units).prop_map(|(code, units)| Ext::Opts { code, units }),
        1 => prop_oneof![4 => 0u8..8, 1 => any::<u8>()].prop_map(|len| Ext::Ah { len }),
        2 => (prop_oneof![3 => Just(0u16), 1 => Just(1), 1 => 1u16..8192, 1 => Just(8191)], 0u8..8)
            .prop_map(|(offset, low)| Ext::Frag { offset, low }),
    ]
}

fn packet(pool: &Pool) -> impl Strategy<Value = PacketSpec> + use<> {
    let tci = || (near(pool.vlans.clone(), 4095), 0u16..16).prop_map(|(vid, prio)| (prio << 12) | (vid & 0x0fff));
    let tags = prop_oneof![
        12 => Just(Vec::new()),
        4 => vec((any::<bool>(), tci()), 1..=1),
        3 => vec((any::<bool>(), tci()), 2..=2),
        1 => vec((any::<bool>(), tci()), 3..=3),
    ]
    .prop_map(|t| t.into_iter().map(|(ad, tci)| Tag { ad, tci }).collect::<Vec<_>>());
    let kind = prop_oneof![
        30 => Just(Kind::Ip),
        1 => select(vec![0x0806u16, 0x88cc, 0x88b5, 0x86dc, 0x0000, 0xffff]).prop_map(Kind::Other),
        2 => select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8]).prop_map(Kind::Raw),
    ];
    let v4 = || {
        addr_near(pool.v4.clone(), v4_range, u32::MAX as u128, any::<u32>().prop_map(u128::from)).prop_map(|a| a as u32)
    };
    let v6 = || addr_near(pool.v6.clone(), v6_range, u128::MAX, any::<u128>());
    let proto = prop_oneof![
        4 => Just(6u8), 3 => Just(17), 1 => Just(132), 2 => Just(1), 2 => Just(58),
        2 => select(pool.protos.clone()), 1 => any::<u8>(),
    ];
    let port = || prop_oneof![4 => near(pool.ports.clone(), u16::MAX), 1 => any::<u16>()];
    let flags = prop_oneof![2 => any::<u8>(), 1 => select(vec![0x02u8, 0x12, 0x10, 0x11, 0x04, 0x18, 0])];
    let icmp = prop_oneof![
        3 => (select(pool.icmp.clone()), -1i32..=1).prop_map(|((t, c), d)| (t, (c as i32 + d).clamp(0, 255) as u8)),
        1 => any::<(u8, u8)>(),
    ];
    let frag4 = prop_oneof![
        6 => Just(0u16),
        1 => Just(0x4000),
        1 => Just(0x2000),
        2 => any::<u16>(),
        1 => (1u16..0x2000).prop_map(|o| o | 0x2000),
        // Offset 1: TCP there overlaps a first fragment's flags.
        1 => select(vec![0x0001u16, 0x2001]),
    ];
    let ihl = prop_oneof![20 => Just(5u8), 4 => 6u8..=15, 1 => 0u8..5];
    let exts = prop_oneof![
        10 => Just(Vec::new()),
        6 => vec(ext(), 1..4),
        2 => vec(ext(), 6..12),
    ];
    (
        (tags, kind, any::<bool>(), v4(), v4(), v6(), v6()),
        (prop::option::weighted(0.02, 0u8..16), ihl, frag4, exts, proto),
        (port(), port(), flags, icmp, vec(any::<u8>(), 0..24)),
        (
            prop::option::weighted(0.5, (any::<Index>(), any::<u64>())),
            prop::option::weighted(0.12, (any::<Index>(), any::<bool>())),
            prop_oneof![20 => Just(Vec::new()), 1 => vec((any::<Index>(), any::<u8>()), 1..4)],
            prop_oneof![8 => Just(0u8), 1 => 1u8..40],
            prop_oneof![12 => Just(5u8), 1 => 0u8..16],
        ),
    )
        .prop_map(
            |(
                (tags, kind, v6, src4, dst4, src6, dst6),
                (bad_version, ihl, frag4, exts, proto),
                (sport, dport, tcp_flags, icmp, payload),
                (aim, cut, patches, pad, tcp_doff),
            )| PacketSpec {
                tags,
                kind,
                v6,
                src4,
                dst4,
                src6,
                dst6,
                bad_version,
                ihl,
                frag4,
                exts,
                proto,
                sport,
                dport,
                tcp_flags,
                icmp,
                payload,
                aim,
                cut,
                patches,
                pad,
                tcp_doff,
            },
        )
}

/// A small deterministic generator for the choices of an aimed packet.
struct Bits(u64);

impl Bits {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

/// The nets of an address condition, tables expanded.
fn nets_of(m: &AddrMatch, rs: &Ruleset) -> (bool, Vec<IpNet>) {
    match m {
        AddrMatch::Any => (false, Vec::new()),
        AddrMatch::List { negated, items } => {
            let mut out = Vec::new();
            for i in items {
                match i {
                    AddrItem::Net(n) => out.push(*n),
                    AddrItem::Table(t) => out.extend(rs.tables[t].entries.iter().copied()),
                }
            }
            (*negated, out)
        }
    }
}

/// Moves the packet's fields toward what `rule` wants: mostly inside its conditions,
/// sometimes just outside (the next port, the address past the prefix, a flag off).
fn aim(p: &mut PacketSpec, rule: &Rule, rs: &Ruleset, b: &mut Bits) {
    p.kind = Kind::Ip;
    p.bad_version = None;
    if b.chance(9, 10) {
        p.cut = None;
        p.patches.clear();
        p.tcp_doff = 5;
    }
    if b.chance(4, 5) {
        p.frag4 &= 0xe000;
        for e in &mut p.exts {
            if let Ext::Frag { offset, .. } = e {
                *offset = 0;
            }
        }
    }
    if p.ihl < 5 {
        p.ihl = 5;
    }
    let (from_neg, from_nets) = nets_of(&rule.from.addr, rs);
    let (to_neg, to_nets) = nets_of(&rule.to.addr, rs);
    // Family: the rule's, else that of a listed prefix, else the packet's.
    p.v6 = match rule.family {
        Some(f) => f == Family::Inet6,
        None => {
            let listed: Vec<&IpNet> = from_nets.iter().chain(&to_nets).collect();
            if listed.is_empty() || b.chance(1, 5) {
                p.v6
            } else {
                matches!(listed[b.below(listed.len())], IpNet::V6(_))
            }
        }
    };
    if let Some(protos) = &rule.protocols {
        p.proto = protos[b.below(protos.len())];
    }
    let v6 = p.v6;
    let mut pick = |neg: bool, nets: &[IpNet], addr4: &mut u32, addr6: &mut u128| {
        let fitting: Vec<&IpNet> = nets.iter().filter(|n| n.addr().is_ipv6() == v6).collect();
        if fitting.is_empty() || (neg && b.chance(1, 2)) {
            return;
        }
        let n = fitting[b.below(fitting.len())];
        // Mostly inside, sometimes at or just past an edge; for a negated list, just
        // past an edge (which may be inside another item).
        let mode = if neg {
            2 + b.below(2) as u8
        } else if b.chance(5, 8) {
            4
        } else {
            b.below(4) as u8
        };
        let r = (b.next() as u128) << 64 | b.next() as u128;
        match n {
            IpNet::V4(n) => {
                let (first, last) = v4_range(n);
                *addr4 = edge(first, last, u32::MAX as u128, mode, r) as u32;
            }
            IpNet::V6(n) => {
                let (first, last) = v6_range(n);
                *addr6 = edge(first, last, u128::MAX, mode, r);
            }
        }
    };
    pick(from_neg, &from_nets, &mut p.src4, &mut p.src6);
    pick(to_neg, &to_nets, &mut p.dst4, &mut p.dst6);
    let mut port = |ranges: &Option<Vec<rules::PortRange>>, port: &mut u16| {
        if let Some(ranges) = ranges {
            let r = ranges[b.below(ranges.len())];
            let mode = if b.chance(3, 4) { 4 } else { b.below(4) as u8 };
            *port = edge(r.lo as u128, r.hi as u128, 65535, mode, b.next() as u128) as u16;
        }
    };
    port(&rule.from.ports, &mut p.sport);
    port(&rule.to.ports, &mut p.dport);
    if let Some(f) = rule.tcp_flags {
        p.tcp_flags = (p.tcp_flags & !f.mask) | f.set;
        if f.mask != 0 && b.chance(1, 6) {
            // One looked-at flag the other way.
            let bits: Vec<u8> = (0..8).map(|i| 1u8 << i).filter(|x| f.mask & x != 0).collect();
            p.tcp_flags ^= bits[b.below(bits.len())];
        }
    }
    if let Some(m) = rule.icmp {
        p.icmp.0 = m.icmp_type;
        if let Some(c) = m.code {
            p.icmp.1 = c;
        }
        if b.chance(1, 6) {
            if b.chance(1, 2) {
                p.icmp.0 = p.icmp.0.wrapping_add(1);
            } else {
                p.icmp.1 = p.icmp.1.wrapping_sub(1);
            }
        }
    }
    if let Some(v) = rule.vlan {
        if p.tags.is_empty() {
            p.tags.push(Tag { ad: false, tci: 0 });
        }
        let vid = if b.chance(1, 6) { v.wrapping_add(1) & 0x0fff } else { v };
        p.tags[0].tci = (p.tags[0].tci & 0xf000) | vid;
        if p.tags.len() > 2 && b.chance(4, 5) {
            p.tags.truncate(2);
        }
    }
}

use filter_common::wire::{ETH_P_IP, ETH_P_IPV6};

fn ext_code(e: &Ext) -> u8 {
    match e {
        Ext::Opts { code, .. } => *code,
        Ext::Ah { .. } => 51,
        Ext::Frag { .. } => 44,
    }
}

/// The frame a packet spec describes (after aiming it at a rule of `rs`).
fn build(spec: &PacketSpec, rs: &Ruleset) -> Vec<u8> {
    let mut p = spec.clone();
    if let Some((index, bits)) = p.aim.take()
        && !rs.rules.is_empty()
    {
        let rule = &rs.rules[index.index(rs.rules.len())];
        aim(&mut p, rule, rs, &mut Bits(bits));
    }
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for t in &p.tags {
        f.extend_from_slice(&(if t.ad { 0x88a8u16 } else { 0x8100 }).to_be_bytes());
        f.extend_from_slice(&t.tci.to_be_bytes());
    }
    let ethertype = match p.kind {
        Kind::Ip if p.v6 => ETH_P_IPV6,
        Kind::Ip => ETH_P_IP,
        Kind::Other(t) | Kind::Raw(t) => t,
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    if let Kind::Ip = p.kind {
        let mut l4 = l4_bytes(&p);
        l4.extend_from_slice(&p.payload);
        if p.v6 {
            let first = p.exts.first().map_or(p.proto, ext_code);
            let mut exts = Vec::new();
            for (i, e) in p.exts.iter().enumerate() {
                let next = p.exts.get(i + 1).map_or(p.proto, ext_code);
                exts.extend_from_slice(&ext_bytes(e, next));
            }
            let plen = (exts.len() + l4.len()).min(65535) as u16;
            let version = p.bad_version.unwrap_or(6);
            f.extend_from_slice(&[version << 4, 0, 0, 0]);
            f.extend_from_slice(&plen.to_be_bytes());
            f.extend_from_slice(&[first, 64]);
            f.extend_from_slice(&p.src6.to_be_bytes());
            f.extend_from_slice(&p.dst6.to_be_bytes());
            f.extend_from_slice(&exts);
        } else {
            let hlen = (p.ihl as usize * 4).max(20);
            let total = (hlen + l4.len()).min(65535) as u16;
            let version = p.bad_version.unwrap_or(4);
            f.push(version << 4 | p.ihl);
            f.push(0);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]);
            f.extend_from_slice(&p.frag4.to_be_bytes());
            f.extend_from_slice(&[64, p.proto, 0, 0]);
            f.extend_from_slice(&p.src4.to_be_bytes());
            f.extend_from_slice(&p.dst4.to_be_bytes());
            // Options: NOPs and an end-of-list, as far as the IHL says.
            f.extend((20..hlen).map(|i| if i + 1 == hlen { 0 } else { 1 }));
        }
        f.extend_from_slice(&l4);
    } else {
        f.extend_from_slice(&p.payload);
        if let Kind::Raw(_) = p.kind {
            // More random-looking bytes, enough to reach headers' ends.
            let mut b = Bits(p.src6 as u64 ^ p.dst4 as u64);
            let n = b.below(80);
            f.extend((0..n).map(|_| b.next() as u8));
        }
    }
    f.extend((0..p.pad).map(|i| i.wrapping_mul(37)));
    f.truncate(MAX_FRAME);
    let head = f.len().min(100);
    for (at, byte) in &p.patches {
        f[at.index(head)] = *byte;
    }
    if let Some((cut, fix_length)) = p.cut {
        let len = 14 + cut.index(f.len() - 14 + 1);
        f.truncate(len);
        let l3 = 14 + 4 * p.tags.len();
        if fix_length && matches!(p.kind, Kind::Ip) {
            let (field, header) = if p.v6 { (l3 + 4, 40) } else { (l3 + 2, 0) };
            if len >= field + 2 && len >= l3 + header {
                f[field..field + 2].copy_from_slice(&((len - l3 - header) as u16).to_be_bytes());
            }
        }
    }
    f
}

fn l4_bytes(p: &PacketSpec) -> Vec<u8> {
    let ports = [p.sport.to_be_bytes(), p.dport.to_be_bytes()].concat();
    match p.proto {
        6 => {
            let mut h = ports;
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, p.tcp_doff << 4, p.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
            h
        }
        17 => {
            let mut h = ports;
            h.extend_from_slice(&[0, 8, 0, 0]);
            h
        }
        132 => {
            let mut h = ports;
            h.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
            h
        }
        1 | 58 => vec![p.icmp.0, p.icmp.1, 0, 0, 0, 1, 0, 1],
        _ => Vec::new(),
    }
}

fn ext_bytes(e: &Ext, next: u8) -> Vec<u8> {
    match *e {
        Ext::Opts { units, .. } => {
            let len = (units as usize + 1) * 8;
            // PadN filling the rest.
            let mut h = vec![next, units, 1, (len - 4) as u8];
            h.resize(len, 0);
            h
        }
        Ext::Ah { len } => {
            let mut h = vec![next, len, 0, 0, 0, 0, 0x10, 0x01];
            h.resize((len as usize + 2) * 4, 0xa5);
            h
        }
        Ext::Frag { offset, low } => {
            let mut h = vec![next, 0];
            h.extend_from_slice(&((offset << 3) | (low as u16 & 7)).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x12, 0x34]);
            h
        }
    }
}

// ---------------------------------------------------------------------------------
// Running both sides.

/// A ruleset loaded into the kernel with tracing, counting into its own pin dir.
struct Loaded {
    key: String,
    program: LoadedProgram,
    pin_dir: PathBuf,
}

impl Loaded {
    fn new(rs: &Ruleset, key: String, lo_name: Option<&str>) -> Result<Loaded, String> {
        let compiled = compile::compile(rs).map_err(|e| format!("compile: {e}"))?;
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/xdpwall-diff-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&pin_dir)
            .map_err(|e| format!("{}: {e} (is bpffs mounted? cargo xtask setup)", pin_dir.display()))?;
        let slots: Vec<u32> = (0..compiled.rules.len() as u32).map(|i| slot::RESERVED + i).collect();
        let bindings: Vec<IfaceBinding> =
            lo_name.map(|name| IfaceBinding { name: name.into(), ifindex: LO, stats_slot: 0 }).into_iter().collect();
        let loaded = Loaded {
            key,
            program: match LoadedProgram::load_traced(&compiled, &slots, &bindings, &pin_dir) {
                Ok(p) => p,
                Err(e) => {
                    remove_pins(&pin_dir);
                    return Err(format!("load: {e:?}"));
                }
            },
            pin_dir,
        };
        Ok(loaded)
    }
}

/// The kernel's flow tables against the model's flows: the same flows, opened by the
/// same endpoint, in the same state, each in the table its state puts it in (answered
/// flows in `STATES`, the others in `STATES_NEW`), none in both.
fn flow_tables_agree(pin_dir: &Path, tracker: &Tracker) -> Result<(), String> {
    use std::collections::HashMap;

    use filter_user::model::state::{Endpoint, FlowKey, FlowState, TcpState};
    let mut kernel = HashMap::new();
    for (answered, name) in [(true, "STATES"), (false, "STATES_NEW")] {
        let data = aya::maps::MapData::from_pin(pin_dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let map = aya::maps::Map::from_map_data(data).map_err(|e| format!("{name}: {e}"))?;
        let map: aya::maps::HashMap<_, filter_common::FlowKey, filter_common::FlowState> =
            aya::maps::HashMap::try_from(map).map_err(|e| format!("{name}: {e}"))?;
        for item in map.iter() {
            let (k, st) = item.map_err(|e| format!("{name}: {e}"))?;
            let addr = |a: [u8; 16]| {
                if u32::from(k.family) == filter_common::FAMILY_V4 {
                    IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                } else {
                    IpAddr::V6(Ipv6Addr::from(a))
                }
            };
            let a = Endpoint { addr: addr(k.addr_a), port: k.port_a };
            let b = Endpoint { addr: addr(k.addr_b), port: k.port_b };
            let key = FlowKey::new(k.proto, a, b);
            let opener = if st.orig == 0 { a } else { b };
            if kernel.insert(key, (answered, st.state, opener)).is_some() {
                return Err(format!("{key:?} is in both tables"));
            }
        }
    }
    for (key, flow) in tracker.flows() {
        use filter_common::flow as k;
        let want = match flow.state {
            FlowState::Tcp(TcpState::SynSent) => k::TCP_SYN_SENT,
            FlowState::Tcp(TcpState::SynReceived) => k::TCP_SYN_RECEIVED,
            FlowState::Tcp(TcpState::Established) => k::TCP_ESTABLISHED,
            FlowState::Tcp(TcpState::Closing) => k::TCP_CLOSING,
            FlowState::Tcp(TcpState::FinWait) => k::TCP_FIN_WAIT,
            FlowState::Tcp(TcpState::Closed) => k::TCP_CLOSED,
            FlowState::UdpSingle => k::UDP_SINGLE,
            FlowState::UdpMultiple => k::UDP_MULTIPLE,
            FlowState::IcmpEcho => k::ICMP_ECHO,
        };
        let want = (flow.state.answered(), want, flow.opener);
        match kernel.remove(key) {
            None => return Err(format!("the model tracks {key:?} ({flow:?}), the kernel does not")),
            Some(got) if got != want => {
                return Err(format!("{key:?}: kernel (answered table, state, opener) {got:?}, model {want:?}"));
            }
            Some(_) => {}
        }
    }
    match kernel.keys().next() {
        Some(key) => Err(format!("the kernel tracks {key:?}, the model does not")),
        None => Ok(()),
    }
}

/// Removes a pin dir and every map pinned in it (counters, connection table, ...).
fn remove_pins(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Loaded {
    fn drop(&mut self) {
        remove_pins(&self.pin_dir);
    }
}

/// Totals over a run, printed at the end.
#[derive(Default)]
struct Stats {
    rulesets: AtomicU64,
    packets: AtomicU64,
    rules: AtomicU64,
    default: AtomicU64,
    non_ip: AtomicU64,
    malformed: AtomicU64,
    /// Time spent loading programs (µs).
    load_us: AtomicU64,
    /// Time spent in BPF_PROG_TEST_RUN and reading the trace (µs).
    run_us: AtomicU64,
    /// Packets decided by a rule using each feature (see [`FEATURES`]).
    features: [AtomicU64; FEATURES.len()],
    /// Packets that an earlier `out` rule would have matched, were it an `in` rule.
    out_skipped: AtomicU64,
    /// Malformed packets by reason (`Malformed::ALL` order), to show the generator
    /// reaches every reason.
    reasons: [AtomicU64; Malformed::ALL.len()],
}

/// What the deciding rules used, to show that the generator reaches every field.
const FEATURES: [&str; 12] = [
    "on",
    "inet/inet6",
    "proto",
    "from/to",
    "negated",
    "table",
    "port",
    "port range",
    "flags",
    "icmp-type",
    "vlan",
    "rule >= 64",
];

fn features(rule: &Rule, index: usize) -> [bool; FEATURES.len()] {
    let lists = [&rule.from.addr, &rule.to.addr];
    let has_table = lists.iter().any(|m| match m {
        AddrMatch::List { items, .. } => items.iter().any(|i| matches!(i, AddrItem::Table(_))),
        AddrMatch::Any => false,
    });
    let ports: Vec<&rules::PortRange> = rule.from.ports.iter().chain(&rule.to.ports).flatten().collect();
    [
        rule.interface.is_some(),
        rule.family.is_some(),
        rule.protocols.is_some(),
        lists.iter().any(|m| **m != AddrMatch::Any),
        lists.iter().any(|m| matches!(m, AddrMatch::List { negated: true, .. })),
        has_table,
        !ports.is_empty(),
        ports.iter().any(|r| r.lo != r.hi),
        rule.tcp_flags.is_some(),
        rule.icmp.is_some(),
        rule.vlan.is_some(),
        index >= 64,
    ]
}

fn xdp(a: Action) -> u32 {
    match a {
        Action::Pass => XDP_PASS,
        Action::Block => XDP_DROP,
    }
}

/// What the kernel must answer for the model's decision.
fn expected(rs: &Ruleset, d: &ModelDecision) -> Decision {
    let slot = match *d {
        ModelDecision::Rule(i) => slot::RESERVED + i as u32,
        ModelDecision::Default => match rs.default_action {
            Action::Pass => slot::DEFAULT_PASS,
            Action::Block => slot::DEFAULT_BLOCK,
        },
        ModelDecision::NonIp => slot::NON_IP,
        ModelDecision::Malformed(m) => m.slot(),
        ModelDecision::State => slot::STATE,
    };
    Decision { action: xdp(model::action(rs, d)), slot }
}

/// A counter slot in words.
fn slot_name(s: u32) -> String {
    match s {
        slot::DEFAULT_PASS => "default pass".into(),
        slot::DEFAULT_BLOCK => "default block".into(),
        slot::NON_IP => "non-IP".into(),
        slot::STATE => "passed by state".into(),
        s if s >= slot::RESERVED => format!("rule {}", s - slot::RESERVED),
        s => Malformed::ALL
            .iter()
            .find(|m| m.slot() == s)
            .map_or(format!("slot {s}"), |m| format!("malformed {}", m.name())),
    }
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(d: &Decision) -> String {
    let action = match d.action {
        XDP_PASS => "pass",
        XDP_DROP => "drop",
        _ => "?",
    };
    format!("{action}, counted as {}", slot_name(d.slot))
}

/// Runs `frame` through the kernel and the model; `Err` describes a disagreement.
fn check_frame(
    loaded: &mut Loaded,
    rs: &Ruleset,
    text: &str,
    lo_name: Option<&str>,
    frame: &[u8],
) -> Result<ModelDecision, String> {
    let d = model::decide(rs, frame, lo_name);
    let want = expected(rs, &d);
    let got = loaded.program.test_run_traced(frame, Some(LO)).map_err(|e| format!("test run: {e:?}"))?;
    if got != want {
        return Err(format!(
            "kernel and model disagree\n\
             --- ruleset (lo known as {lo_name:?}) ---\n{text}\
             --- frame ({} bytes) ---\n{}\n\
             model:  {d:?}: {}\n\
             kernel: {}",
            frame.len(),
            hex(frame),
            describe(&want),
            describe(&got),
        ));
    }
    Ok(d)
}

fn parse(text: &str) -> Result<Ruleset, String> {
    rules::parse_str(text, "differential.conf", Path::new("/nonexistent"))
        .map_err(|e| format!("generated ruleset does not parse: {e}\n{text}"))
}

/// One generated case: a ruleset and packets for it.
#[derive(Clone)]
struct Case {
    ruleset: RulesetSpec,
    packets: Vec<PacketSpec>,
}

impl fmt::Debug for Case {
    /// The ruleset as text (the failure message shows the frame that disagreed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lo known as {:?}", self.ruleset.lo_name)?;
        writeln!(f, "{}", render(&self.ruleset))?;
        write!(f, "({} packets)", self.packets.len())
    }
}

fn case() -> impl Strategy<Value = Case> {
    // The packet list has a fixed length (it does not shrink): a failure reports the
    // one frame that disagreed, and shrinking works on the ruleset and that frame's
    // fields.
    pool().prop_flat_map(|pool| {
        (ruleset(&pool), vec(packet(&pool), PACKETS..=PACKETS)).prop_map(|(ruleset, packets)| Case { ruleset, packets })
    })
}

fn scale() -> u32 {
    std::env::var("XDPWALL_DIFF_SCALE").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(1)
}

#[test]
fn kernel_agrees_with_model() {
    let scale = scale();
    let mut config = Config {
        cases: RULESETS * scale,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/differential.proptest-regressions"
        )))),
        // Each shrink step may load a program: bound the effort.
        max_shrink_iters: 2000,
        max_shrink_time: 180_000,
        ..Config::default()
    };
    config.source_file = Some(file!());
    let mut runner = TestRunner::new(config);
    let stats = Stats::default();
    // The last program loaded, reused while shrinking only changes the packets.
    let cache: RefCell<Option<Loaded>> = RefCell::new(None);
    let started = Instant::now();

    let result = runner.run(&case(), |case| {
        let text = render(&case.ruleset);
        let rs = parse(&text).map_err(TestCaseError::fail)?;
        let lo_name = case.ruleset.lo_name;
        let key = format!("{lo_name:?}\n{text}");
        let mut cache = cache.borrow_mut();
        if cache.as_ref().is_none_or(|l| l.key != key) {
            *cache = None;
            let t = Instant::now();
            *cache = Some(Loaded::new(&rs, key, lo_name).map_err(TestCaseError::fail)?);
            stats.load_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        let loaded = cache.as_mut().expect("just loaded");
        stats.rulesets.fetch_add(1, Ordering::Relaxed);
        // `out` rules turned around, to count the packets the XDP program had to skip
        // them for.
        let turned: Vec<(usize, Rule)> = rs
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.direction == Direction::Out)
            .map(|(i, r)| {
                let mut r = r.clone();
                r.direction = Direction::In;
                (i, r)
            })
            .collect();
        for p in &case.packets {
            let frame = build(p, &rs);
            let t = Instant::now();
            let d = check_frame(loaded, &rs, &text, lo_name, &frame).map_err(TestCaseError::fail)?;
            stats.run_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            stats.packets.fetch_add(1, Ordering::Relaxed);
            if let (Dissected::Ip(f), false) = (dissect(&frame), turned.is_empty()) {
                let before = match d {
                    ModelDecision::Rule(i) => i,
                    _ => usize::MAX,
                };
                if turned.iter().any(|(j, r)| *j < before && model::matches(&rs, r, &f, lo_name)) {
                    stats.out_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let ModelDecision::Rule(i) = d {
                for (n, used) in features(&rs.rules[i], i).iter().enumerate() {
                    if *used {
                        stats.features[n].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let ModelDecision::Malformed(m) = d {
                stats.reasons[m as usize].fetch_add(1, Ordering::Relaxed);
            }
            match d {
                ModelDecision::Rule(_) => &stats.rules,
                ModelDecision::Default => &stats.default,
                ModelDecision::NonIp => &stats.non_ip,
                ModelDecision::Malformed(_) => &stats.malformed,
                // Never from the stateless model.
                ModelDecision::State => &stats.rules,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    drop(cache.borrow_mut().take());

    let rulesets = stats.rulesets.load(Ordering::Relaxed);
    let packets = stats.packets.load(Ordering::Relaxed);
    let pct = |n: &AtomicU64| 100.0 * n.load(Ordering::Relaxed) as f64 / packets.max(1) as f64;
    let features: Vec<String> =
        FEATURES.iter().zip(&stats.features).map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed))).collect();
    // Straight to stderr, past the test harness's capture: these numbers are the point.
    let _ = writeln!(
        std::io::stderr(),
        "differential: {rulesets} rulesets, {packets} packets checked in {:.1} s \
         ({:.1} s loading programs, {:.1} s running packets)\n\
         differential: decided by a rule {:.1}%, default {:.1}%, non-IP {:.1}%, malformed {:.1}% ({})\n\
         differential: packets decided by rules using: {}\n\
         differential: packets an earlier `out` rule would have matched: {}",
        started.elapsed().as_secs_f64(),
        stats.load_us.load(Ordering::Relaxed) as f64 / 1e6,
        stats.run_us.load(Ordering::Relaxed) as f64 / 1e6,
        pct(&stats.rules),
        pct(&stats.default),
        pct(&stats.non_ip),
        pct(&stats.malformed),
        Malformed::ALL
            .iter()
            .zip(&stats.reasons)
            .map(|(m, n)| format!("{} {}", m.name(), n.load(Ordering::Relaxed)))
            .collect::<Vec<_>>()
            .join(", "),
        features.join(", "),
        stats.out_skipped.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(rulesets >= u64::from(RULESETS * scale));
    assert!(packets >= u64::from(RULESETS * scale) * PACKETS as u64);
}

// ---------------------------------------------------------------------------------
// Packet sequences through connection tracking: `kernel_agrees_with_model_on_sequences`.

/// Rulesets per default run of the sequence property.
const SEQ_RULESETS: u32 = 100;
/// Fewest packets one ruleset's sequence has.
const SEQ_MIN_PACKETS: usize = 200;
/// Fewest packets one flow emits (its scenarios are repeated up to this).
const SEQ_MIN_FLOW_PACKETS: usize = 20;

/// The hosts and server ports one sequence case draws from: v4 hosts in two /24s
/// and v6 hosts in two /64s, so that prefixes group some of them.
#[derive(Debug, Clone)]
struct SeqPool {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    ports: Vec<u16>,
}

fn seq_pool() -> impl Strategy<Value = SeqPool> {
    let v4 = vec((0u8..2, 1u8..255), 3..5)
        .prop_map(|hs| hs.into_iter().map(|(net, host)| Ipv4Addr::new(10, 77, net, host)).collect());
    let v6 = vec((0u16..2, 1u16..0xffff), 2..4).prop_map(|hs| {
        hs.into_iter().map(|(net, host)| Ipv6Addr::new(0x2001, 0xdb8, 0x77, net, 0, 0, 0, host)).collect()
    });
    let port = prop_oneof![Just(80u16), Just(443), Just(53), Just(22), 1u16..1024, any::<u16>()];
    (v4, v6, vec(port, 2..5)).prop_map(|(v4, v6, ports)| SeqPool { v4, v6, ports })
}

/// An address condition: a host of the pool (either family), as itself or its prefix.
#[derive(Debug, Clone)]
struct SeqAddr {
    negated: bool,
    v6: bool,
    host: Index,
    /// The host itself, else its /24 or /64.
    exact: bool,
}

#[derive(Debug, Clone)]
enum SeqPort {
    Pool(Index),
    /// A range from a pool port, `width` more.
    Range(Index, u16),
    Any(u16),
}

#[derive(Debug, Clone)]
struct SeqRule {
    action: Action,
    keep: bool,
    out: bool,
    iface: Option<&'static str>,
    family: Option<Family>,
    /// 0 any, 1 tcp, 2 udp, 3 icmp, 4 icmp6, 5 { tcp udp }.
    proto: u8,
    from: Option<SeqAddr>,
    to: Option<SeqAddr>,
    from_port: Option<SeqPort>,
    to_port: Option<SeqPort>,
    flags: Option<&'static str>,
    /// 0 echo request, 1 echo reply, 2 unreachable.
    icmp: Option<u8>,
    vlan: Option<u16>,
    /// Aimed at flow `Index` of the case instead (its protocol, hosts and server
    /// port, each kept with some probability from the bits; bit 0: the other way).
    aim: Option<(Index, u8)>,
}

#[derive(Debug, Clone)]
struct SeqRuleset {
    default: Option<Action>,
    rules: Vec<SeqRule>,
    lo_name: Option<&'static str>,
}

fn seq_addr() -> impl Strategy<Value = SeqAddr> {
    (prop::bool::weighted(0.15), prop::bool::weighted(0.3), any::<Index>(), prop::bool::weighted(0.7))
        .prop_map(|(negated, v6, host, exact)| SeqAddr { negated, v6, host, exact })
}

fn seq_port() -> impl Strategy<Value = SeqPort> {
    prop_oneof![
        6 => any::<Index>().prop_map(SeqPort::Pool),
        2 => (any::<Index>(), 1u16..100).prop_map(|(i, w)| SeqPort::Range(i, w)),
        1 => any::<u16>().prop_map(SeqPort::Any),
    ]
}

fn seq_rule() -> impl Strategy<Value = SeqRule> {
    (
        (
            prop_oneof![4 => Just(Action::Pass), 1 => Just(Action::Block)],
            prop::bool::weighted(0.75),
            prop::bool::weighted(0.08),
            prop_oneof![10 => Just(None), 1 => Just(Some("lo")), 1 => Just(Some("wan0"))],
            prop_oneof![6 => Just(None), 1 => Just(Some(Family::Inet)), 1 => Just(Some(Family::Inet6))],
            prop_oneof![2 => Just(0u8), 4 => Just(1), 3 => Just(2), 2 => Just(3), 2 => Just(4), 1 => Just(5)],
        ),
        (
            prop::option::weighted(0.35, seq_addr()),
            prop::option::weighted(0.35, seq_addr()),
            prop::option::weighted(0.1, seq_port()),
            prop::option::weighted(0.5, seq_port()),
        ),
        (
            prop::option::weighted(0.3, select(vec!["S/SA", "S/S", "A/A", "any", "F/F", "R/R", "SA/SA", "/SA"])),
            prop::option::weighted(0.4, 0u8..3),
            prop::option::weighted(0.05, prop_oneof![Just(0u16), Just(7)]),
        ),
        prop::option::weighted(0.7, (any::<Index>(), any::<u8>())),
    )
        .prop_map(
            |((action, keep, out, iface, family, proto), (from, to, from_port, to_port), (flags, icmp, vlan), aim)| {
                SeqRule {
                    action,
                    keep,
                    out,
                    iface,
                    family,
                    proto,
                    from,
                    to,
                    from_port,
                    to_port,
                    flags,
                    icmp,
                    vlan,
                    aim,
                }
            },
        )
}

fn seq_ruleset() -> impl Strategy<Value = SeqRuleset> {
    (
        prop_oneof![1 => Just(None), 1 => Just(Some(Action::Pass)), 2 => Just(Some(Action::Block))],
        vec(seq_rule(), 1..7),
        prop_oneof![6 => Just(Some("lo")), 1 => Just(Some("wan0")), 1 => Just(None)],
    )
        .prop_map(|(default, rules, lo_name)| SeqRuleset { default, rules, lo_name })
}

fn seq_port_text(p: &SeqPort, pool: &SeqPool) -> String {
    match p {
        SeqPort::Pool(i) => pool.ports[i.index(pool.ports.len())].to_string(),
        SeqPort::Range(i, w) => {
            let lo = pool.ports[i.index(pool.ports.len())];
            format!("{lo}:{}", lo.saturating_add(*w))
        }
        SeqPort::Any(p) => p.to_string(),
    }
}

fn seq_addr_text(a: &SeqAddr, pool: &SeqPool) -> String {
    let net = if a.v6 {
        let h = pool.v6[a.host.index(pool.v6.len())];
        let len = if a.exact { 128 } else { 64 };
        IpNet::V6(Ipv6Net::new(h, len).expect("len <= 128").trunc())
    } else {
        let h = pool.v4[a.host.index(pool.v4.len())];
        let len = if a.exact { 32 } else { 24 };
        IpNet::V4(Ipv4Net::new(h, len).expect("len <= 32").trunc())
    };
    format!("{}{}", if a.negated { "!" } else { "" }, net_text(&net, true))
}

/// A rule aimed at a flow: its protocol, addresses and server port, mostly.
fn aimed_rule(r: &SeqRule, flow: &FlowSpec, bits: u8, pool: &SeqPool) -> SeqRule {
    let mut r = r.clone();
    r.aim = None;
    r.family = None;
    let reverse = bits & 1 != 0;
    r.proto = match (flow.kind, flow.v6) {
        (FlowKind::Tcp, _) => 1,
        (FlowKind::Udp, _) => 2,
        (FlowKind::Echo, false) => 3,
        (FlowKind::Echo, true) => 4,
    };
    let addr =
        |host: Index, keep: bool| keep.then_some(SeqAddr { negated: false, v6: flow.v6, host, exact: bits & 8 == 0 });
    let (client, server) = (addr(flow.client, bits & 2 != 0), addr(flow.server, bits & 4 != 0));
    (r.from, r.to) = if reverse { (server, client) } else { (client, server) };
    let port = flow.server_port.map_or(SeqPort::Any(flow.server_port(pool)), SeqPort::Pool);
    let port = (bits & 16 != 0).then_some(port);
    (r.from_port, r.to_port) = if reverse { (port, None) } else { (None, port) };
    if bits & 32 == 0 {
        r.flags = None;
    }
    if bits & 64 == 0 {
        r.icmp = None;
    }
    r.vlan = None;
    r
}

fn render_seq_rule(r: &SeqRule, pool: &SeqPool, flows: &[FlowSpec]) -> String {
    if let Some((i, bits)) = r.aim
        && !flows.is_empty()
    {
        let aimed = aimed_rule(r, &flows[i.index(flows.len())], bits, pool);
        return render_seq_rule(&aimed, pool, flows);
    }
    let mut s = String::from(match r.action {
        Action::Pass => "pass",
        Action::Block => "block",
    });
    s.push_str(if r.out { " out" } else { " in" });
    if let Some(name) = r.iface {
        write!(s, " on {name}").unwrap();
    }
    // Drop what the rule language would refuse: a family against the protocol or
    // the addresses, ports without tcp/udp, flags without tcp, a type without icmp.
    let mut family = r.family;
    if matches!((r.proto, family), (3, Some(Family::Inet6)) | (4, Some(Family::Inet))) {
        family = None;
    }
    let fits = |a: &&SeqAddr| family.is_none_or(|f| a.v6 == (f == Family::Inet6));
    let from = r.from.as_ref().filter(fits);
    let to = r.to.as_ref().filter(fits);
    match family {
        Some(Family::Inet) => s.push_str(" inet"),
        Some(Family::Inet6) => s.push_str(" inet6"),
        None => {}
    }
    s.push_str(match r.proto {
        1 => " proto tcp",
        2 => " proto udp",
        3 => " proto icmp",
        4 => " proto icmp6",
        5 => " proto { tcp udp }",
        _ => "",
    });
    let ports_ok = matches!(r.proto, 1 | 2 | 5);
    let endpoint = |a: Option<&SeqAddr>, p: &Option<SeqPort>| {
        let mut e = a.map(|a| seq_addr_text(a, pool)).unwrap_or_default();
        if let Some(p) = p.as_ref().filter(|_| ports_ok) {
            if !e.is_empty() {
                e.push(' ');
            }
            write!(e, "port {}", seq_port_text(p, pool)).unwrap();
        }
        e
    };
    let (f, t) = (endpoint(from, &r.from_port), endpoint(to, &r.to_port));
    if !f.is_empty() {
        write!(s, " from {f}").unwrap();
    }
    if !t.is_empty() {
        write!(s, " to {t}").unwrap();
    }
    if let Some(flags) = r.flags.filter(|_| r.proto == 1) {
        write!(s, " flags {flags}").unwrap();
    }
    match (r.icmp, r.proto) {
        (Some(t), 3) => write!(s, " icmp-type {}", [8, 0, 3][t as usize]).unwrap(),
        (Some(t), 4) => write!(s, " icmp6-type {}", [128, 129, 1][t as usize]).unwrap(),
        _ => {}
    }
    if let Some(v) = r.vlan {
        write!(s, " vlan {v}").unwrap();
    }
    if r.keep && r.action == Action::Pass {
        s.push_str(" keep state");
    }
    s
}

fn render_seq(rs: &SeqRuleset, pool: &SeqPool, flows: &[FlowSpec]) -> String {
    let mut s = String::from("# generated by tests/differential.rs (sequences)\n");
    match rs.default {
        Some(Action::Pass) => s.push_str("set default pass\n"),
        Some(Action::Block) => s.push_str("set default block\n"),
        None => {}
    }
    for r in &rs.rules {
        s.push_str(&render_seq_rule(r, pool, flows));
        s.push('\n');
    }
    s
}

// ---- flows and their packets ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowKind {
    Tcp,
    Udp,
    Echo,
}

/// One flow: a client and a server of one family, its scripted scenarios (each a
/// little conversation, see [`scenario_steps`]) and mutations of the script.
#[derive(Debug, Clone)]
struct FlowSpec {
    kind: FlowKind,
    v6: bool,
    client: Index,
    server: Index,
    client_port: u16,
    /// A pool port (else `other_port`).
    server_port: Option<Index>,
    other_port: u16,
    /// Echo identifier.
    ident: u16,
    scenarios: Vec<u8>,
    /// TCP: data exchanges in the middle of a scenario.
    data: u8,
    /// (step, what, value): see [`mutate`].
    noise: Vec<(Index, u8, u8)>,
}

/// One packet of a flow's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// From the server to the client.
    back: bool,
    /// TCP flags, or the ICMP type as an echo request (0) / reply (1) / other (2+).
    what: u8,
    /// The sender's port (identifier) off by one: another flow.
    wrong_sport: bool,
    /// The receiver's port off by one.
    wrong_dport: bool,
    /// A VLAN tag (flows do not depend on it).
    vlan: bool,
    /// A later fragment (no ports: no flow).
    later_fragment: bool,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

const ECHO_REQ: u8 = 0;
const ECHO_REP: u8 = 1;
const ECHO_OTHER: u8 = 2;

fn step(back: bool, what: u8) -> Step {
    Step { back, what, wrong_sport: false, wrong_dport: false, vlan: false, later_fragment: false }
}

const TCP_SCENARIOS: u8 = 11;
const UDP_SCENARIOS: u8 = 5;
const ECHO_SCENARIOS: u8 = 5;

/// The packets of scenario `n` of a flow of `kind` (F: client to server, B: back).
fn scenario_steps(kind: FlowKind, n: u8, data: u8) -> Vec<Step> {
    let f = |w| step(false, w);
    let b = |w| step(true, w);
    let exchange = |v: &mut Vec<Step>| {
        for _ in 0..data {
            v.extend([f(PSH | ACK), b(ACK), b(PSH | ACK), f(ACK)]);
        }
    };
    let mut v = Vec::new();
    match kind {
        FlowKind::Tcp => {
            let handshake = [f(SYN), b(SYN | ACK), f(ACK)];
            match n % TCP_SCENARIOS {
                // Open, talk, close both ways.
                0 => {
                    v.extend(handshake);
                    exchange(&mut v);
                    v.extend([f(FIN | ACK), b(ACK), b(FIN | ACK), f(ACK)]);
                }
                // Reset by the server mid-stream; what follows is not explained.
                1 => {
                    v.extend(handshake);
                    exchange(&mut v);
                    v.extend([b(RST | ACK), f(ACK), b(ACK), f(RST)]);
                }
                // Refused, then retried.
                2 => v.extend([f(SYN), b(RST | ACK), f(SYN), b(SYN | ACK), f(ACK), b(PSH | ACK)]),
                // Stray mid-stream segments of a flow nobody opened.
                3 => v.extend([f(ACK), b(ACK), f(PSH | ACK), b(FIN | ACK), f(RST)]),
                // An unsolicited SYN-ACK, then its ACK.
                4 => v.extend([b(SYN | ACK), f(ACK), b(PSH | ACK)]),
                // A new SYN on an established flow, from the client and the server.
                5 => {
                    v.extend(handshake);
                    v.extend([f(SYN), b(SYN | ACK), f(ACK), b(SYN), f(PSH | ACK)]);
                }
                // A SYN-ACK from the opener; a SYN from the responder.
                6 => v.extend([f(SYN), f(SYN | ACK), b(SYN), b(SYN | ACK), f(SYN | ACK), f(ACK)]),
                // Retransmissions everywhere.
                7 => {
                    v.extend([f(SYN), f(SYN), b(SYN | ACK), b(SYN | ACK), f(SYN), f(ACK), f(ACK)]);
                    exchange(&mut v);
                }
                // The server opens (the rules decide whether that is allowed).
                8 => {
                    v.extend([b(SYN), f(SYN | ACK), b(ACK), f(PSH | ACK)]);
                    v.extend([b(FIN | ACK), f(FIN | ACK), b(ACK)]);
                }
                // Half close, data after one FIN, RST after both, RST after RST.
                9 => {
                    v.extend(handshake);
                    v.extend([f(FIN | ACK), b(PSH | ACK), f(ACK), b(FIN | ACK), f(ACK)]);
                    v.extend([f(RST | ACK), b(RST), f(RST), b(ACK)]);
                }
                // Out of order: the ACK before the SYN-ACK, data before the ACK,
                // odd flag combinations.
                _ => v.extend([
                    f(SYN),
                    f(ACK),
                    b(PSH | ACK),
                    b(SYN | ACK),
                    b(PSH | ACK),
                    f(SYN | FIN),
                    f(ACK | FIN),
                    b(0),
                    f(SYN | RST),
                    b(0xff),
                ]),
            }
        }
        FlowKind::Udp => match n % UDP_SCENARIOS {
            0 => v.extend([f(0), b(0), f(0), b(0)]),
            1 => v.extend([b(0), f(0), b(0), b(0)]),
            2 => v.extend([f(0), f(0), f(0), b(0)]),
            3 => {
                let mut wrong = b(0);
                wrong.wrong_sport = true;
                let mut wrong_to = b(0);
                wrong_to.wrong_dport = true;
                v.extend([f(0), wrong, wrong_to, b(0)]);
            }
            _ => v.extend([b(0), f(0), b(0), f(0)]),
        },
        FlowKind::Echo => match n % ECHO_SCENARIOS {
            0 => v.extend([f(ECHO_REQ), b(ECHO_REP), f(ECHO_REQ), b(ECHO_REP)]),
            1 => {
                let mut other_id = b(ECHO_REP);
                other_id.wrong_sport = true;
                v.extend([b(ECHO_REP), f(ECHO_REQ), other_id, b(ECHO_REP)]);
            }
            2 => v.extend([f(ECHO_REQ), f(ECHO_REP), b(ECHO_REQ), b(ECHO_REP), f(ECHO_REP)]),
            3 => v.extend([f(ECHO_REQ), b(ECHO_OTHER), b(ECHO_REP), b(ECHO_REP)]),
            _ => v.extend([b(ECHO_REQ), f(ECHO_REP), b(ECHO_REQ), f(ECHO_REQ), f(ECHO_REP)]),
        },
    }
    v
}

/// Interesting TCP flag combinations for mutations.
const ODD_FLAGS: [u8; 12] =
    [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, FIN, 0, SYN | FIN, SYN | RST, 0xff];

/// Applies one mutation to step `i`: 0-1 other flags / type, 2 the other direction,
/// 3 sent twice, 4 lost, 5 a wrong port or identifier, 6 a VLAN tag, 7 a later
/// fragment.
fn mutate(steps: &mut Vec<Step>, kind: FlowKind, i: usize, what: u8, value: u8) {
    if steps.is_empty() {
        return;
    }
    let s = &mut steps[i];
    match what % 8 {
        0 | 1 => {
            s.what = match kind {
                FlowKind::Tcp if what.is_multiple_of(8) => ODD_FLAGS[value as usize % ODD_FLAGS.len()],
                FlowKind::Tcp => value,
                FlowKind::Udp => 0,
                FlowKind::Echo => value % 4,
            }
        }
        2 => s.back = !s.back,
        3 => {
            let s = *s;
            steps.insert(i, s);
        }
        4 => {
            steps.remove(i);
        }
        5 => {
            if value & 1 == 0 {
                s.wrong_sport = true;
            } else {
                s.wrong_dport = true;
            }
        }
        6 => s.vlan = true,
        _ => s.later_fragment = true,
    }
}

fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        (
            prop_oneof![5 => Just(FlowKind::Tcp), 3 => Just(FlowKind::Udp), 2 => Just(FlowKind::Echo)],
            prop::bool::weighted(0.35),
            any::<Index>(),
            any::<Index>(),
            prop_oneof![4 => 1024u16..=65535, 1 => any::<u16>()],
            prop::option::weighted(0.85, any::<Index>()),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            vec(any::<u8>(), 1..5),
            0u8..3,
            prop_oneof![2 => Just(Vec::new()), 3 => vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..5)],
        ),
    )
        .prop_map(
            |((kind, v6, client, server, client_port, server_port, other_port, ident), (scenarios, data, noise))| {
                FlowSpec {
                    kind,
                    v6,
                    client,
                    server,
                    client_port,
                    server_port,
                    other_port,
                    ident,
                    scenarios,
                    data,
                    noise,
                }
            },
        )
}

impl FlowSpec {
    /// The flow's packets in order: its scenarios, repeated up to
    /// [`SEQ_MIN_FLOW_PACKETS`], then the mutations.
    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        'fill: loop {
            for &n in &self.scenarios {
                steps.extend(scenario_steps(self.kind, n, self.data));
                if steps.len() >= SEQ_MIN_FLOW_PACKETS {
                    break 'fill;
                }
            }
        }
        for &(i, what, value) in &self.noise {
            let at = i.index(steps.len().max(1));
            mutate(&mut steps, self.kind, at, what, value);
        }
        steps
    }

    /// (client, server) addresses.
    fn hosts(&self, pool: &SeqPool) -> (IpAddr, IpAddr) {
        if self.v6 {
            let n = pool.v6.len();
            (pool.v6[self.client.index(n)].into(), pool.v6[self.server.index(n)].into())
        } else {
            let n = pool.v4.len();
            (pool.v4[self.client.index(n)].into(), pool.v4[self.server.index(n)].into())
        }
    }

    fn server_port(&self, pool: &SeqPool) -> u16 {
        self.server_port.map_or(self.other_port, |i| pool.ports[i.index(pool.ports.len())])
    }
}

/// One step of one flow, as a frame.
fn seq_frame(flow: &FlowSpec, s: &Step, pool: &SeqPool) -> Vec<u8> {
    let (client, server) = flow.hosts(pool);
    let (cport, sport) = match flow.kind {
        FlowKind::Echo => (flow.ident, flow.ident),
        _ => (flow.client_port, flow.server_port(pool)),
    };
    let (src, dst, mut from_port, mut to_port) =
        if s.back { (server, client, sport, cport) } else { (client, server, cport, sport) };
    if s.wrong_sport {
        from_port = from_port.wrapping_add(1);
    }
    if s.wrong_dport {
        to_port = to_port.wrapping_add(1);
    }
    let l4 = match flow.kind {
        FlowKind::Tcp => {
            let mut h = [from_port.to_be_bytes(), to_port.to_be_bytes()].concat();
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, s.what, 0xff, 0xff, 0, 0, 0, 0]);
            h
        }
        FlowKind::Udp => {
            let mut h = [from_port.to_be_bytes(), to_port.to_be_bytes()].concat();
            h.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
            h
        }
        FlowKind::Echo => {
            let types: [u8; 4] = if flow.v6 { [128, 129, 1, 2] } else { [8, 0, 3, 11] };
            // The identifier: the sender's "port"; a reply echoes it.
            let id = if s.wrong_sport || s.wrong_dport { flow.ident.wrapping_add(1) } else { flow.ident };
            let mut h = vec![types[s.what as usize % 4], 0, 0, 0];
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&[0, 1, 0xab, 0xcd]);
            h
        }
    };
    let proto = match (flow.kind, flow.v6) {
        (FlowKind::Tcp, _) => 6,
        (FlowKind::Udp, _) => 17,
        (FlowKind::Echo, false) => 1,
        (FlowKind::Echo, true) => 58,
    };
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    if s.vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    }
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let total = (20 + l4.len()) as u16;
            let frag: u16 = if s.later_fragment { 0x0010 } else { 0x4000 };
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]);
            f.extend_from_slice(&frag.to_be_bytes());
            f.extend_from_slice(&[64, proto, 0, 0]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let ext = if s.later_fragment { 8 } else { 0 };
            let first = if s.later_fragment { 44 } else { proto };
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[first, 64]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
            if s.later_fragment {
                f.extend_from_slice(&[proto, 0, 0, 0x10 << 3, 0, 0, 0x56, 0x78]);
            }
        }
        _ => unreachable!("one family per flow"),
    }
    f.extend_from_slice(&l4);
    f
}

/// A packet sequence case: a ruleset, flows, and how their packets interleave.
#[derive(Clone)]
struct SeqCase {
    pool: SeqPool,
    ruleset: SeqRuleset,
    flows: Vec<FlowSpec>,
    /// Seeds the interleaving.
    shuffle: u64,
}

impl fmt::Debug for SeqCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lo known as {:?}", self.ruleset.lo_name)?;
        writeln!(f, "{}", render_seq(&self.ruleset, &self.pool, &self.flows))?;
        write!(f, "({} flows, {} packets)", self.flows.len(), self.sequence().len())
    }
}

impl SeqCase {
    /// Every packet, in order: (flow index, step). Flows take turns at random; a
    /// ruleset's flows are repeated (with their scenarios rotated) up to
    /// [`SEQ_MIN_PACKETS`], so reconnections on the same endpoints are common too.
    fn sequence(&self) -> Vec<(usize, Step)> {
        let mut queues: Vec<(usize, std::collections::VecDeque<Step>)> = Vec::new();
        let mut total = 0;
        let mut round = 0usize;
        while total < SEQ_MIN_PACKETS && !self.flows.is_empty() {
            for (i, flow) in self.flows.iter().enumerate() {
                let mut flow = flow.clone();
                let k = flow.scenarios.len();
                flow.scenarios.rotate_left(round % k);
                let steps = flow.steps();
                total += steps.len();
                match queues.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, q)) => q.extend(steps),
                    None => queues.push((i, steps.into())),
                }
            }
            round += 1;
        }
        let mut bits = Bits(self.shuffle);
        let mut out = Vec::with_capacity(total);
        while !queues.is_empty() {
            // Mostly the same flow again for a few packets, else another.
            let q = bits.below(queues.len());
            let burst = 1 + bits.below(3);
            for _ in 0..burst {
                match queues[q].1.pop_front() {
                    Some(s) => out.push((queues[q].0, s)),
                    None => break,
                }
            }
            if queues[q].1.is_empty() {
                queues.swap_remove(q);
            }
        }
        out
    }
}

fn seq_case() -> impl Strategy<Value = SeqCase> {
    (seq_pool(), seq_ruleset(), vec(flow_spec(), 4..12), any::<u64>())
        .prop_map(|(pool, ruleset, flows, shuffle)| SeqCase { pool, ruleset, flows, shuffle })
}

/// One line for a packet of a sequence.
fn describe_step(flow: usize, spec: &FlowSpec, s: &Step, pool: &SeqPool) -> String {
    let frame = seq_frame(spec, s, pool);
    let what = match dissect(&frame) {
        Dissected::Ip(p) => {
            let t = match p.transport {
                model::packet::Transport::Ports { src, dst, tcp_flags } => {
                    let flags = tcp_flags.map_or(String::new(), |f| {
                        format!(" [{}]", if f == 0 { "none".into() } else { flags_text(f) })
                    });
                    format!("{}:{src} -> {}:{dst}{flags}", p.src, p.dst)
                }
                model::packet::Transport::Icmp { icmp_type, ident, .. } => {
                    format!("{} -> {} type {icmp_type} id {ident}", p.src, p.dst)
                }
                model::packet::Transport::None => {
                    format!("{} -> {} (later fragment)", p.src, p.dst)
                }
            };
            let proto = match p.protocol {
                6 => "tcp",
                17 => "udp",
                1 => "icmp",
                58 => "icmp6",
                _ => "?",
            };
            format!("{proto} {t}{}", if s.vlan { " vlan 7" } else { "" })
        }
        other => format!("{other:?}"),
    };
    format!("flow {flow} {}: {what}", if s.back { "server->client" } else { "client->server" })
}

#[derive(Default)]
struct SeqStats {
    rulesets: AtomicU64,
    packets: AtomicU64,
    state: AtomicU64,
    rules: AtomicU64,
    default: AtomicU64,
    opened: AtomicU64,
    kept_rules: AtomicU64,
    load_us: AtomicU64,
    run_us: AtomicU64,
}

#[test]
fn kernel_agrees_with_model_on_sequences() {
    let scale = scale();
    let mut config = Config {
        cases: SEQ_RULESETS * scale,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/differential.proptest-regressions"
        )))),
        // Every shrink step loads a program: bound the effort.
        max_shrink_iters: 1000,
        max_shrink_time: 180_000,
        ..Config::default()
    };
    config.source_file = Some(file!());
    let mut runner = TestRunner::new(config);
    let stats = SeqStats::default();
    let started = Instant::now();

    let result = runner.run(&seq_case(), |case| {
        let text = render_seq(&case.ruleset, &case.pool, &case.flows);
        let rs = parse(&text).map_err(TestCaseError::fail)?;
        let lo_name = case.ruleset.lo_name;
        let t = Instant::now();
        // Always a fresh program: its own pin dir, so an empty flow table.
        let mut loaded = Loaded::new(&rs, String::new(), lo_name).map_err(TestCaseError::fail)?;
        stats.load_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.rulesets.fetch_add(1, Ordering::Relaxed);
        stats.kept_rules.fetch_add(
            rs.rules.iter().filter(|r| r.keep_state && r.direction == Direction::In).count() as u64,
            Ordering::Relaxed,
        );
        let mut tracker = Tracker::new();
        let mut history: Vec<String> = Vec::new();
        let t = Instant::now();
        let sequence = case.sequence();
        for (n, (flow, s)) in sequence.iter().enumerate() {
            let spec = &case.flows[*flow];
            let frame = seq_frame(spec, s, &case.pool);
            let before = tracker.len();
            let d = tracker.decide(&rs, &frame, lo_name);
            if tracker.len() > before {
                stats.opened.fetch_add(1, Ordering::Relaxed);
            }
            let want = expected(&rs, &d);
            let got = loaded
                .program
                .test_run_traced(&frame, Some(LO))
                .map_err(|e| TestCaseError::fail(format!("test run: {e:?}")))?;
            let line = describe_step(*flow, spec, s, &case.pool);
            if got != want {
                return Err(TestCaseError::fail(format!(
                    "kernel and model disagree on packet {n} of the sequence\n\
                     --- ruleset (lo known as {lo_name:?}) ---\n{text}\
                     --- packets before it (model's answer, which the kernel shared) ---\n{}\n\
                     --- the packet ---\n{line}\n{}\n\
                     model:  {d:?}: {}\n\
                     kernel: {}",
                    history.join("\n"),
                    hex(&frame),
                    describe(&want),
                    describe(&got),
                )));
            }
            history.push(format!("{n:4} {line}  => {}", slot_name(want.slot)));
            stats.packets.fetch_add(1, Ordering::Relaxed);
            match d {
                ModelDecision::State => &stats.state,
                ModelDecision::Rule(_) => &stats.rules,
                _ => &stats.default,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        stats.run_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        flow_tables_agree(&loaded.pin_dir, &tracker).map_err(|e| {
            TestCaseError::fail(format!(
                "kernel and model disagree on the flows after the sequence: {e}\n\
                 --- ruleset (lo known as {lo_name:?}) ---\n{text}\
                 --- packets ---\n{}",
                history.join("\n")
            ))
        })?;
        Ok(())
    });

    let rulesets = stats.rulesets.load(Ordering::Relaxed);
    let packets = stats.packets.load(Ordering::Relaxed);
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let pct = |a: &AtomicU64| 100.0 * n(a) as f64 / packets.max(1) as f64;
    let _ = writeln!(
        std::io::stderr(),
        "differential sequences: {rulesets} rulesets ({} `keep state` rules), {packets} packets \
         checked in {:.1} s ({:.1} s loading programs, {:.1} s running packets)\n\
         differential sequences: passed by state {} ({:.1}%), decided by a rule {:.1}%, \
         default {:.1}%; flows opened {}",
        n(&stats.kept_rules),
        started.elapsed().as_secs_f64(),
        n(&stats.load_us) as f64 / 1e6,
        n(&stats.run_us) as f64 / 1e6,
        n(&stats.state),
        pct(&stats.state),
        pct(&stats.rules),
        pct(&stats.default),
        n(&stats.opened),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(rulesets >= u64::from(SEQ_RULESETS * scale));
    assert!(packets >= u64::from(SEQ_RULESETS * scale) * SEQ_MIN_PACKETS as u64);
}

// ---------------------------------------------------------------------------------
// Concrete disagreements found by `kernel_agrees_with_model`, as readable cases. Each
// states what the documented semantics say (the model) and checks the kernel too.

/// Loads `src` (lo known as "lo"), runs `frame` through both sides and checks that
/// the model says `want` and that the kernel agrees.
fn agree(src: &str, frame: &[u8], want: ModelDecision) {
    let rs = parse(src).expect("ruleset parses");
    assert_eq!(model::decide(&rs, frame, Some("lo")), want, "the model's answer");
    let mut loaded = Loaded::new(&rs, String::new(), Some("lo")).expect("program loads");
    if let Err(e) = check_frame(&mut loaded, &rs, src, Some("lo"), frame) {
        panic!("{e}");
    }
}

/// An IPv6 packet whose first Fragment header has a non-zero offset is a later
/// fragment, whatever follows: the bytes after it are the middle of the original
/// packet, here shaped as a second Fragment header (offset 0) and a TCP header to port
/// 80. The XDP program let the last Fragment header decide, took the fake TCP header
/// for real and passed the packet by `to port 80`; a later fragment has no ports, so
/// the default (block) decides.
#[test]
fn regression_later_fragment_stays_later_after_another_fragment_header() {
    use xdpwall_tests::packet::{Ipv6Ext, PacketBuilder, TCP_SYN};
    let frame = PacketBuilder::eth()
        .ipv6("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
        .ipv6_ext(Ipv6Ext::Fragment { offset: 100, more: true, id: 7 })
        .ipv6_ext(Ipv6Ext::Fragment { offset: 0, more: false, id: 7 })
        .tcp(40000, 80, TCP_SYN)
        .build()
        .bytes;
    agree("set default block\npass in proto tcp to port 80\n", &frame, ModelDecision::Default);
}

/// Runs `frames` in order through a fresh program and a fresh [`Tracker`] for `src`
/// (lo known as "lo"); checks the model's answers against `want` and the kernel's
/// against the model's.
fn agree_sequence(src: &str, frames: &[Vec<u8>], want: &[ModelDecision]) {
    let rs = parse(src).expect("ruleset parses");
    let mut loaded = Loaded::new(&rs, String::new(), Some("lo")).expect("program loads");
    let mut tracker = Tracker::new();
    for (i, (frame, want)) in frames.iter().zip(want).enumerate() {
        let d = tracker.decide(&rs, frame, Some("lo"));
        assert_eq!(d, *want, "the model's answer to packet {i}");
        let got = loaded.program.test_run_traced(frame, Some(LO)).expect("test run");
        assert_eq!(got, expected(&rs, &d), "packet {i}: kernel {}, model {d:?}", describe(&got));
    }
}

/// After an RST closed a flow, anything goes through the rules (README, "Connection
/// tracking": "anything after RST"), a second RST too. The data plane's `advance`
/// checks RST before the CLOSED state, so every further RST passed by state; with
/// `set default block`, a block wins instead.
#[test]
fn regression_rst_after_rst_goes_through_the_rules() {
    use xdpwall_tests::packet::PacketBuilder;
    let (client, server) = ("10.77.0.1".parse().unwrap(), "10.77.0.2".parse().unwrap());
    let tcp = |out: bool, flags: u8| {
        let b = PacketBuilder::eth();
        let b = if out { b.ipv4(client, server) } else { b.ipv4(server, client) };
        let (s, d) = if out { (40000, 80) } else { (80, 40000) };
        b.tcp(s, d, flags).build().bytes
    };
    let frames = vec![
        tcp(true, SYN),
        tcp(false, SYN | ACK),
        tcp(true, ACK),
        tcp(false, RST | ACK),
        tcp(false, RST | ACK),
        tcp(true, RST),
        tcp(true, ACK),
    ];
    use ModelDecision::{Default, Rule, State};
    agree_sequence(
        "set default block\npass in proto tcp to port 80 flags S/SA keep state\n",
        &frames,
        &[Rule(0), State, State, State, Default, Default, Default],
    );
}
