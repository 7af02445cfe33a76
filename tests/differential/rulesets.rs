//! Rulesets: a structure that always renders to valid pf text.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

#[derive(Debug, Clone)]
pub(crate) struct RulesetSpec {
    pub(crate) default: Option<Action>,
    /// `set limit states N` (syntax only: the flow table stays empty, see `out`).
    pub(crate) state_limit: Option<u32>,
    pub(crate) tables: Vec<Vec<IpNet>>,
    pub(crate) rules: Vec<RuleSpec>,
    /// The name the filter knows `lo` by, or not loaded on it.
    pub(crate) lo_name: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    pub(crate) action: Action,
    /// `in`, `quick`, names instead of numbers, `all`: spelling only.
    pub(crate) spell: u8,
    pub(crate) iface: Option<&'static str>,
    pub(crate) family: Option<Family>,
    pub(crate) protos: Option<Vec<u8>>,
    pub(crate) from: EndpointSpec,
    pub(crate) to: EndpointSpec,
    /// (set, mask) before `set &= mask`; mask 0 renders as `flags any`.
    pub(crate) flags: Option<(u8, u8)>,
    pub(crate) icmp: Option<(u8, Option<u8>)>,
    pub(crate) vlan: Option<u16>,
    pub(crate) label: bool,
    /// An `out` rule (TC egress): never judges a received packet. A third of those
    /// that pass are rendered with `keep state`, so that the XDP program runs its
    /// connection tracking lookup, which finds no flow (only `out` rules open any, at
    /// egress). Not more: a stateful program takes some 0.7 s to load, 3 times more.
    pub(crate) out: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct EndpointSpec {
    pub(crate) negated: bool,
    /// Empty: any.
    pub(crate) items: Vec<ItemSpec>,
    pub(crate) ports: Option<Vec<(u16, u16)>>,
}

#[derive(Debug, Clone)]
pub(crate) enum ItemSpec {
    Net(IpNet),
    Table(usize),
}

pub(crate) fn near(values: Vec<u16>, max: u16) -> impl Strategy<Value = u16> {
    (select(values), prop_oneof![4 => Just(0i32), 1 => Just(-1), 1 => Just(1)])
        .prop_map(move |(v, d)| (v as i32 + d).clamp(0, max as i32) as u16)
}

pub(crate) fn port_ranges(pool: &Pool) -> impl Strategy<Value = Vec<(u16, u16)>> + use<> {
    let p = || near(pool.ports.clone(), u16::MAX);
    let range = prop_oneof![
        3 => p().prop_map(|v| (v, v)),
        2 => (p(), p()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => (p(), 0u16..4).prop_map(|(a, d)| (a, a.saturating_add(d))),
        1 => Just((0, 65535)),
    ];
    vec(range, 1..4)
}

pub(crate) fn item(pool: &Pool) -> impl Strategy<Value = ItemSpec> + use<> {
    prop_oneof![
        3 => select(pool.v4.clone()).prop_map(|n| ItemSpec::Net(IpNet::V4(n))),
        2 => select(pool.v6.clone()).prop_map(|n| ItemSpec::Net(IpNet::V6(n))),
        2 => (0..TABLES).prop_map(ItemSpec::Table),
    ]
}

pub(crate) fn endpoint(pool: &Pool) -> impl Strategy<Value = EndpointSpec> + use<> {
    (
        prop::bool::weighted(0.3),
        prop_oneof![2 => Just(Vec::new()), 3 => vec(item(pool), 1..4)],
        prop::option::weighted(0.4, port_ranges(pool)),
    )
        .prop_map(|(negated, items, ports)| EndpointSpec { negated, items, ports })
}

pub(crate) fn protocols(pool: &Pool) -> impl Strategy<Value = Option<Vec<u8>>> + use<> {
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

pub(crate) fn rule(pool: &Pool) -> impl Strategy<Value = RuleSpec> + use<> {
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
pub(crate) fn conditions(r: &RuleSpec) -> usize {
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
pub(crate) fn siblings(net: IpNet, n: usize) -> Vec<IpNet> {
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

pub(crate) fn ruleset(pool: &Pool) -> impl Strategy<Value = RulesetSpec> + use<> {
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
