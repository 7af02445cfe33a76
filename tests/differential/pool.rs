//! The pool: the values one case draws its rules and packets from.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) v4: Vec<Ipv4Net>,
    pub(crate) v6: Vec<Ipv6Net>,
    pub(crate) ports: Vec<u16>,
    pub(crate) vlans: Vec<u16>,
    pub(crate) icmp: Vec<(u8, u8)>,
    pub(crate) protos: Vec<u8>,
}

/// A chain of nested prefixes around one address, with siblings (the neighbouring
/// prefix of the same length) now and then. `bits`: 32 or 128.
pub(crate) fn nested(base: u128, lens: Vec<u8>, siblings: bool, bits: u8) -> Vec<(u128, u8)> {
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

pub(crate) fn mask(a: u128, len: u8, bits: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let host = (bits - len) as u32;
        (a >> host).checked_shl(host).unwrap_or(0)
    }
}

pub(crate) fn v4_lens() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0u8..=32, 1 => Just(32), 1 => Just(31), 1 => Just(24), 1 => Just(16),
        1 => Just(8), 1 => Just(1), 1 => Just(0)]
}

pub(crate) fn v6_lens() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0u8..=128, 1 => Just(128), 1 => Just(127), 1 => Just(64), 1 => Just(48),
        1 => Just(32), 1 => Just(1), 1 => Just(0)]
}

pub(crate) fn pool() -> impl Strategy<Value = Pool> {
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
