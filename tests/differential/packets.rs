//! Packets.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

#[derive(Debug, Clone)]
pub(crate) struct Tag {
    /// 802.1ad TPID (else 802.1Q).
    pub(crate) ad: bool,
    pub(crate) tci: u16,
}

#[derive(Debug, Clone)]
pub(crate) enum Ext {
    /// Hop-by-hop (0), routing (43) or destination options (60): `(units + 1) * 8` bytes.
    Opts { code: u8, units: u8 },
    /// AH: `(len + 2) * 4` bytes.
    Ah { len: u8 },
    /// Fragment: offset (13 bits) and the low 3 bits (reserved, M).
    Frag { offset: u16, low: u8 },
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Ip,
    /// Another EtherType with `payload` after it.
    Other(u16),
    /// This EtherType followed by `payload` only: random bytes where headers should be.
    Raw(u16),
}

#[derive(Debug, Clone)]
pub(crate) struct PacketSpec {
    pub(crate) tags: Vec<Tag>,
    pub(crate) kind: Kind,
    pub(crate) v6: bool,
    pub(crate) src4: u32,
    pub(crate) dst4: u32,
    pub(crate) src6: u128,
    pub(crate) dst6: u128,
    /// Replaces the IP version nibble.
    pub(crate) bad_version: Option<u8>,
    /// IPv4 IHL (5-15, now and then less).
    pub(crate) ihl: u8,
    /// IPv4 flags and fragment offset, as on the wire.
    pub(crate) frag4: u16,
    pub(crate) exts: Vec<Ext>,
    /// The upper-layer protocol; it decides which L4 header is written.
    pub(crate) proto: u8,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) tcp_flags: u8,
    pub(crate) icmp: (u8, u8),
    pub(crate) payload: Vec<u8>,
    /// Aim at rule `index` of the ruleset, with these random bits for its choices.
    pub(crate) aim: Option<(Index, u64)>,
    /// Cut the frame to a length in 14..=len; with `true`, the IP length field
    /// (IPv4 Total Length, IPv6 Payload Length) is made to say so, where it is left whole.
    pub(crate) cut: Option<(Index, bool)>,
    /// Overwrite bytes (in the first 100).
    pub(crate) patches: Vec<(Index, u8)>,
    /// Bytes after the packet that its IP length does not cover (Ethernet padding).
    pub(crate) pad: u8,
    /// TCP Data Offset (5, now and then anything).
    pub(crate) tcp_doff: u8,
}

pub(crate) fn addr_near<T: Copy + fmt::Debug + 'static>(
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
pub(crate) fn edge(first: u128, last: u128, max: u128, mode: u8, r: u128) -> u128 {
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

pub(crate) fn v4_range(n: &Ipv4Net) -> (u128, u128) {
    (u32::from(n.network()) as u128, u32::from(n.broadcast()) as u128)
}

pub(crate) fn v6_range(n: &Ipv6Net) -> (u128, u128) {
    (u128::from(n.network()), u128::from(n.broadcast()))
}

pub(crate) fn ext() -> impl Strategy<Value = Ext> {
    let units = prop_oneof![12 => 0u8..4, 1 => 0u8..70];
    prop_oneof![
        3 => (select(vec![0u8, 43, 60]), units).prop_map(|(code, units)| Ext::Opts { code, units }),
        1 => prop_oneof![4 => 0u8..8, 1 => any::<u8>()].prop_map(|len| Ext::Ah { len }),
        2 => (prop_oneof![3 => Just(0u16), 1 => Just(1), 1 => 1u16..8192, 1 => Just(8191)], 0u8..8)
            .prop_map(|(offset, low)| Ext::Frag { offset, low }),
    ]
}

pub(crate) fn packet(pool: &Pool) -> impl Strategy<Value = PacketSpec> + use<> {
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

/// A small deterministic generator for the choices of an aimed packet, seeded by the
/// case (so a failing case replays and shrinks).
pub(crate) struct Bits(fastrand::Rng);

impl Bits {
    pub(crate) fn new(seed: u64) -> Bits {
        Bits(fastrand::Rng::with_seed(seed))
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

/// The nets of an address condition, tables expanded.
pub(crate) fn nets_of(m: &AddrMatch, rs: &Ruleset) -> (bool, Vec<IpNet>) {
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
pub(crate) fn aim(p: &mut PacketSpec, rule: &Rule, rs: &Ruleset, b: &mut Bits) {
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

pub(crate) fn ext_code(e: &Ext) -> u8 {
    match e {
        Ext::Opts { code, .. } => *code,
        Ext::Ah { .. } => 51,
        Ext::Frag { .. } => 44,
    }
}

/// The frame a packet spec describes (after aiming it at a rule of `rs`).
pub(crate) fn build(spec: &PacketSpec, rs: &Ruleset) -> Vec<u8> {
    let mut p = spec.clone();
    if let Some((index, bits)) = p.aim.take()
        && !rs.rules.is_empty()
    {
        let rule = &rs.rules[index.index(rs.rules.len())];
        aim(&mut p, rule, rs, &mut Bits::new(bits));
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
            let mut b = Bits::new(p.src6 as u64 ^ p.dst4 as u64);
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

pub(crate) fn l4_bytes(p: &PacketSpec) -> Vec<u8> {
    let ports = [p.sport.to_be_bytes(), p.dport.to_be_bytes()].concat();
    match p.proto {
        6 => {
            // Sequence number 1, acknowledgement 2: a SYN-ACK's number plus one, so that
            // handshakes complete in the kernel as in the model, which does not track
            // numbers (tests/kernel.rs checks a wrong acknowledgement).
            let mut h = ports;
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, p.tcp_doff << 4, p.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
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

pub(crate) fn ext_bytes(e: &Ext, next: u8) -> Vec<u8> {
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
