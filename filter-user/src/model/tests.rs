//! The model on hand-made frames: header dissection at every documented limit, and
//! rule matching field by field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use filter_common::Malformed;

use super::packet::{Dissected, Fields, Transport, dissect};
use super::*;
use crate::rules::parse_str;

// ---- frames, byte by byte ----

const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [198, 51, 100, 7];

fn src6() -> [u8; 16] {
    "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()
}
fn dst6() -> [u8; 16] {
    "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets()
}

/// Ethernet header with `tags` VLAN tags (802.1ad outside, then 802.1Q) and `ethertype`.
fn eth(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for (i, vid) in tags.iter().enumerate() {
        let tpid: u16 = if i == 0 && tags.len() > 1 { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        // PCP 5 and DEI set: only the low 12 bits are the id.
        f.extend_from_slice(&(0xb000 | vid).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 header with `options` (a multiple of 4 bytes), fragment field `frag`.
fn ipv4(proto: u8, frag: u16, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = (20 + options.len()) / 4;
    let mut h = vec![0x40 | ihl as u8, 0, 0, 0, 0, 1];
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&SRC4);
    h.extend_from_slice(&DST4);
    h.extend_from_slice(options);
    h
}

fn ipv6(next: u8) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
    h.extend_from_slice(&src6());
    h.extend_from_slice(&dst6());
    h
}

/// An options-type extension header (hop-by-hop, routing, dest-opts): `(units + 1) * 8` bytes.
fn opts_ext(next: u8, units: u8) -> Vec<u8> {
    let mut h = vec![next, units];
    h.resize((units as usize + 1) * 8, 0);
    h
}

/// AH with Payload Len `len`: `(len + 2) * 4` bytes.
fn ah(next: u8, len: u8) -> Vec<u8> {
    let mut h = vec![next, len];
    h.resize((len as usize + 2) * 4, 0);
    h
}

fn frag_ext(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&(offset << 3 | more as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 9]);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 8, 0, 0]);
    h
}

fn icmp(t: u8, c: u8) -> Vec<u8> {
    vec![t, c, 0, 0, 0, 1, 0, 1]
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn v4_frame(tags: &[u16], l3: &[u8], l4: &[u8]) -> Vec<u8> {
    cat(&[&eth(tags, 0x0800), l3, l4])
}

fn v6_frame(rest: &[&[u8]]) -> Vec<u8> {
    let mut f = eth(&[], 0x86dd);
    for p in rest {
        f.extend_from_slice(p);
    }
    f
}

fn fields(frame: &[u8]) -> Fields {
    match dissect(frame) {
        Dissected::Ip(f) => f,
        other => panic!("expected an IP packet, got {other:?}"),
    }
}

fn malformed(frame: &[u8]) -> Malformed {
    match dissect(frame) {
        Dissected::Malformed(m) => m,
        other => panic!("expected a malformed packet, got {other:?}"),
    }
}

fn ports(src: u16, dst: u16, tcp_flags: Option<u8>) -> Transport {
    Transport::Ports { src, dst, tcp_flags }
}

// ---- dissection ----

#[test]
fn ethernet_and_vlan_tags() {
    assert_eq!(malformed(&[0; 13]), Malformed::EthTruncated);
    assert_eq!(dissect(&eth(&[], 0x0806)), Dissected::NonIp);
    assert_eq!(dissect(&eth(&[7, 8], 0x88cc)), Dissected::NonIp);

    let l3 = ipv4(17, 0, &[]);
    let f = fields(&v4_frame(&[], &l3, &udp(1, 2)));
    assert_eq!(f.vlan, None);
    assert_eq!(f.transport, ports(1, 2, None));
    assert_eq!(fields(&v4_frame(&[100], &l3, &udp(1, 2))).vlan, Some(100));
    // The outer tag is the one that counts; PCP/DEI bits are not part of the id.
    assert_eq!(fields(&v4_frame(&[4095, 5], &l3, &udp(1, 2))).vlan, Some(4095));
    assert_eq!(fields(&v4_frame(&[0, 5], &l3, &udp(1, 2))).vlan, Some(0));
    assert_eq!(malformed(&v4_frame(&[1, 2, 3], &l3, &udp(1, 2))), Malformed::VlanTooMany);
    // Two tags and the third TPID, with nothing after it: still "too many".
    assert_eq!(malformed(&eth(&[1, 2], 0x8100)), Malformed::VlanTooMany);
    let tagged = eth(&[1], 0x0800);
    assert_eq!(malformed(&tagged[..17]), Malformed::VlanTruncated);
    assert_eq!(malformed(&tagged), Malformed::Ipv4Truncated);
}

#[test]
fn ipv4_header_checks() {
    let good = v4_frame(&[], &ipv4(6, 0, &[1, 1, 1, 0]), &tcp(1000, 22, 0x12));
    let f = fields(&good);
    assert_eq!(f.src, IpAddr::V4(Ipv4Addr::from(SRC4)));
    assert_eq!(f.dst, IpAddr::V4(Ipv4Addr::from(DST4)));
    assert_eq!(f.protocol, 6);
    assert_eq!(f.transport, ports(1000, 22, Some(0x12)));

    assert_eq!(malformed(&good[..14 + 19]), Malformed::Ipv4Truncated);
    // 20 bytes are there but the options are not.
    assert_eq!(malformed(&good[..14 + 23]), Malformed::Ipv4Truncated);
    let mut bad = good.clone();
    bad[14] = 0x65;
    assert_eq!(malformed(&bad), Malformed::Ipv4BadHeader);
    bad[14] = 0x44;
    assert_eq!(malformed(&bad), Malformed::Ipv4BadHeader);
    // A bad version in a frame too short for 20 bytes: truncated comes first.
    assert_eq!(malformed(&bad[..30]), Malformed::Ipv4Truncated);
    // IHL 15 in a frame that ends right after 60 bytes of header, with no L4 needed.
    let big = v4_frame(&[], &ipv4(47, 0, &[0; 40]), &[]);
    assert_eq!(fields(&big).protocol, 47);
    assert_eq!(fields(&big).transport, Transport::None);

    // TCP cut at 19 bytes; UDP, SCTP, ICMP need 8, 12, 8.
    assert_eq!(malformed(&good[..good.len() - 1]), Malformed::L4Truncated);
    let sctp = v4_frame(&[], &ipv4(132, 0, &[]), &[0, 9, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(fields(&sctp).transport, ports(9, 10, None));
    assert_eq!(malformed(&sctp[..sctp.len() - 1]), Malformed::L4Truncated);
    let ping = v4_frame(&[], &ipv4(1, 0, &[]), &icmp(8, 3));
    assert_eq!(fields(&ping).transport, Transport::Icmp { icmp_type: 8, code: 3, ident: 1 });
    assert_eq!(malformed(&ping[..ping.len() - 1]), Malformed::L4Truncated);
    // ICMPv6's number in IPv4 is just another protocol.
    let odd = v4_frame(&[], &ipv4(58, 0, &[]), &[]);
    assert_eq!(fields(&odd).transport, Transport::None);
}

#[test]
fn ipv4_fragments() {
    // MF set, offset 0: the first fragment has its ports.
    let first = v4_frame(&[], &ipv4(6, 0x2000, &[]), &tcp(1, 2, 0x10));
    assert_eq!(fields(&first).transport, ports(1, 2, Some(0x10)));
    // DF alone is not a fragment.
    let df = v4_frame(&[], &ipv4(17, 0x4000, &[]), &udp(1, 2));
    assert_eq!(fields(&df).transport, ports(1, 2, None));
    // A later fragment: no L4, even when its bytes look like one, and no truncation
    // either.
    let later = v4_frame(&[], &ipv4(6, 0x0002, &[]), &[0; 3]);
    let f = fields(&later);
    assert_eq!((f.protocol, f.transport), (6, Transport::None));
    let later = v4_frame(&[], &ipv4(1, 0x1fff, &[]), &icmp(8, 0));
    assert_eq!(fields(&later).transport, Transport::None);
    // TCP at offset 1 (8 bytes) would overwrite the first fragment's flags (RFC 1858);
    // other protocols there are ordinary later fragments.
    let overlap = v4_frame(&[], &ipv4(6, 0x0001, &[]), &[0; 8]);
    assert_eq!(malformed(&overlap), Malformed::FragmentOverlap);
    let overlap_last = v4_frame(&[], &ipv4(6, 0x2001, &[]), &[0; 8]);
    assert_eq!(malformed(&overlap_last), Malformed::FragmentOverlap);
    let udp_at_1 = v4_frame(&[], &ipv4(17, 0x2001, &[]), &[0; 8]);
    assert_eq!(fields(&udp_at_1).transport, Transport::None);
    // A first fragment must hold the whole TCP header (RFC 1858, RFC 3128); a whole
    // packet cut short is truncated instead.
    let t = tcp(1, 2, 0x02);
    let tiny = v4_frame(&[], &ipv4(6, 0x2000, &[]), &t[..8]);
    assert_eq!(malformed(&tiny), Malformed::FragmentTiny);
    let tiny = v4_frame(&[], &ipv4(6, 0x2000, &[]), &t[..19]);
    assert_eq!(malformed(&tiny), Malformed::FragmentTiny);
    let cut = v4_frame(&[], &ipv4(6, 0, &[]), &t[..19]);
    assert_eq!(malformed(&cut), Malformed::L4Truncated);
    let small_sctp = v4_frame(&[], &ipv4(132, 0x2000, &[]), &[0; 8]);
    assert_eq!(malformed(&small_sctp), Malformed::FragmentTiny);
}

/// Sets an IPv4 frame's Total Length (the IPv4 header starts at 14).
fn with_total_length(mut frame: Vec<u8>, len: u16) -> Vec<u8> {
    frame[16..18].copy_from_slice(&len.to_be_bytes());
    frame
}

#[test]
fn ip_length_fields() {
    let good = v4_frame(&[], &ipv4(6, 0, &[]), &tcp(1, 2, 0x10));
    // 0 leaves the frame's end (the helpers' frames all say 0).
    assert_eq!(fields(&good).transport, ports(1, 2, Some(0x10)));
    assert_eq!(fields(&with_total_length(good.clone(), 40)).transport, ports(1, 2, Some(0x10)));
    assert_eq!(malformed(&with_total_length(good.clone(), 41)), Malformed::Ipv4BadLength);
    assert_eq!(malformed(&with_total_length(good.clone(), 19)), Malformed::Ipv4BadLength);
    // The packet ends at 39 bytes: its TCP header is cut, whatever follows in the frame.
    assert_eq!(malformed(&with_total_length(good.clone(), 39)), Malformed::L4Truncated);
    let mut padded = with_total_length(good.clone(), 40);
    padded.extend_from_slice(&[0xee; 20]);
    assert_eq!(fields(&padded).transport, ports(1, 2, Some(0x10)));
    // Padding does not make a tiny first fragment whole.
    let mut tiny = with_total_length(v4_frame(&[], &ipv4(6, 0x2000, &[]), &tcp(1, 2, 0x02)[..8]), 28);
    tiny.extend_from_slice(&[0x12; 18]);
    assert_eq!(malformed(&tiny), Malformed::FragmentTiny);
    // Options: Total Length covers them.
    let opts = v4_frame(&[], &ipv4(17, 0, &[1; 8]), &udp(1, 2));
    assert_eq!(malformed(&with_total_length(opts.clone(), 27)), Malformed::Ipv4BadLength);
    assert_eq!(malformed(&with_total_length(opts.clone(), 28)), Malformed::L4Truncated);
    assert_eq!(fields(&with_total_length(opts, 36)).transport, ports(1, 2, None));

    let mut v6 = v6_frame(&[&ipv6(17), &udp(5, 6)]);
    for (len, want) in [(8u16, None), (9, Some(Malformed::Ipv6BadLength)), (7, Some(Malformed::L4Truncated))] {
        v6[18..20].copy_from_slice(&len.to_be_bytes());
        match want {
            None => assert_eq!(fields(&v6).transport, ports(5, 6, None)),
            Some(m) => assert_eq!(malformed(&v6), m, "payload length {len}"),
        }
    }
}

#[test]
fn tcp_data_offset() {
    let with_offset = |frame: &[u8], at: usize, words: u8| {
        let mut f = frame.to_vec();
        f[at + 12] = words << 4;
        f
    };
    // 4 bytes after the fixed header: room for a data offset of 6, not 7.
    let seg = cat(&[&tcp(1, 2, 0x10), &[1, 1, 1, 0]]);
    let whole = v4_frame(&[], &ipv4(6, 0, &[]), &seg);
    let first = v4_frame(&[], &ipv4(6, 0x2000, &[]), &seg);
    let v6 = v6_frame(&[&ipv6(6), &seg]);
    for frame in [&whole, &first, &v6] {
        let at = frame.len() - seg.len();
        for words in 0..5 {
            assert_eq!(malformed(&with_offset(frame, at, words)), Malformed::TcpBadDataOffset, "{words}");
        }
        assert_eq!(fields(&with_offset(frame, at, 6)).transport, ports(1, 2, Some(0x10)));
    }
    // Past the segment: a whole segment is malformed, a first fragment leaves the
    // rest of its options to the next fragment.
    for words in 7..16 {
        assert_eq!(malformed(&with_offset(&whole, 34, words)), Malformed::TcpBadDataOffset, "{words}");
        assert_eq!(malformed(&with_offset(&v6, 54, words)), Malformed::TcpBadDataOffset, "{words}");
        assert_eq!(fields(&with_offset(&first, 34, words)).transport, ports(1, 2, Some(0x10)));
    }
}

#[test]
fn ipv6_extension_chains() {
    let f = fields(&v6_frame(&[&ipv6(17), &udp(5, 6)]));
    assert_eq!(f.src, IpAddr::V6(Ipv6Addr::from(src6())));
    assert_eq!(f.dst, IpAddr::V6(Ipv6Addr::from(dst6())));
    assert_eq!((f.protocol, f.transport), (17, ports(5, 6, None)));

    let chain = v6_frame(&[
        &ipv6(0),
        &opts_ext(43, 0),
        &opts_ext(51, 2),
        &ah(44, 4),
        &frag_ext(60, 0, true),
        &opts_ext(6, 1),
        &tcp(7, 8, 2),
    ]);
    let f = fields(&chain);
    assert_eq!((f.protocol, f.transport), (6, ports(7, 8, Some(2))));

    assert_eq!(malformed(&chain[..14 + 39]), Malformed::Ipv6Truncated);
    let mut bad = chain.clone();
    bad[14] = 0x40;
    assert_eq!(malformed(&bad), Malformed::Ipv6BadHeader);
    // Headers end at 62 (hop-by-hop), 86 (routing), 110 (AH), 118 (fragment), 134
    // (dest-opts); TCP at 134..154. A cut anywhere in them is caught; after the
    // Fragment header of a first fragment (M set), the fragment is tiny: it must hold
    // the whole chain and the upper-layer header (RFC 8200 section 4.5).
    assert_eq!(chain.len(), 154);
    for cut in 54..118 {
        assert_eq!(malformed(&chain[..cut]), Malformed::Ipv6ExtTruncated, "cut at {cut}");
    }
    for cut in 118..154 {
        assert_eq!(malformed(&chain[..cut]), Malformed::FragmentTiny, "cut at {cut}");
    }
    // The same chain with an atomic fragment (offset 0, no M): a whole packet.
    let mut atomic = chain.clone();
    atomic[113] = 0;
    for cut in 118..134 {
        assert_eq!(malformed(&atomic[..cut]), Malformed::Ipv6ExtTruncated, "cut at {cut}");
    }
    for cut in 134..154 {
        assert_eq!(malformed(&atomic[..cut]), Malformed::L4Truncated, "cut at {cut}");
    }
    // TCP at offset 1 after a Fragment header overlaps the first fragment's flags.
    let overlap = v6_frame(&[&ipv6(44), &frag_ext(6, 1, true), &[0; 8]]);
    assert_eq!(malformed(&overlap), Malformed::FragmentOverlap);
    let at_2 = v6_frame(&[&ipv6(44), &frag_ext(6, 2, true), &[0; 8]]);
    assert_eq!(fields(&at_2).transport, Transport::None);

    // Non-first fragment: protocol known, no L4.
    let later = v6_frame(&[&ipv6(44), &frag_ext(58, 3, false), &icmp(128, 0)]);
    let f = fields(&later);
    assert_eq!((f.protocol, f.transport), (58, Transport::None));
    // ICMP's number in IPv6 has no type field for us.
    let odd = v6_frame(&[&ipv6(1), &icmp(8, 0)]);
    assert_eq!(fields(&odd).transport, Transport::None);
    let ping6 = v6_frame(&[&ipv6(58), &icmp(128, 0)]);
    assert_eq!(fields(&ping6).transport, Transport::Icmp { icmp_type: 128, code: 0, ident: 1 });
}

#[test]
fn a_later_fragment_stays_later() {
    // An offset-0 fragment header after a non-zero one does not make the bytes after
    // it a transport header: they are the middle of another packet. The walk ends at
    // the later fragment, whose Next Header (here 44) is the protocol.
    let f = fields(&v6_frame(&[&ipv6(44), &frag_ext(44, 100, true), &frag_ext(6, 0, false), &tcp(1, 22, 2)]));
    assert_eq!((f.protocol, f.transport), (44, Transport::None));
}

#[test]
fn ipv6_extension_limits() {
    let mut eight: Vec<Vec<u8>> = vec![ipv6(60)];
    for i in 0..8 {
        eight.push(opts_ext(if i == 7 { 17 } else { 60 }, 0));
    }
    eight.push(udp(1, 2));
    let parts: Vec<&[u8]> = eight.iter().map(Vec::as_slice).collect();
    assert_eq!(fields(&v6_frame(&parts)).protocol, 17);

    let mut nine: Vec<Vec<u8>> = vec![ipv6(60)];
    for i in 0..9 {
        nine.push(opts_ext(if i == 8 { 17 } else { 60 }, 0));
    }
    nine.push(udp(1, 2));
    let parts: Vec<&[u8]> = nine.iter().map(Vec::as_slice).collect();
    assert_eq!(malformed(&v6_frame(&parts)), Malformed::Ipv6ExtTooMany);
    // After 8 headers the next is one too, even cut short: too many.
    let parts: Vec<&[u8]> = nine[..9].iter().map(Vec::as_slice).collect();
    assert_eq!(malformed(&v6_frame(&parts)), Malformed::Ipv6ExtTooMany);

    // Headers start at 54 and every length is a multiple of 4, so headers end at
    // 54 + 4k. Ending at 510 (last byte 509) is fine; at 514 (last byte 513) it is past
    // the 512-byte budget.
    let at_510 = v6_frame(&[&ipv6(0), &opts_ext(51, 55), &ah(17, 0), &udp(1, 2)]);
    assert_eq!(fields(&at_510).transport, ports(1, 2, None));
    let to_514 = v6_frame(&[&ipv6(0), &opts_ext(51, 55), &ah(17, 1), &udp(1, 2)]);
    assert_eq!(malformed(&to_514), Malformed::Ipv6ExtTooMany);
    // Cut short as well as too long: the budget is checked first.
    assert_eq!(malformed(&to_514[..512]), Malformed::Ipv6ExtTooMany);
    // ... but a cut in an earlier header that fits the budget is a cut.
    assert_eq!(malformed(&to_514[..100]), Malformed::Ipv6ExtTruncated);
    let long = v6_frame(&[&ipv6(0), &opts_ext(17, 57), &udp(1, 2)]);
    assert_eq!(malformed(&long), Malformed::Ipv6ExtTooMany);
    assert_eq!(malformed(&long[..100]), Malformed::Ipv6ExtTooMany);
    // A fragment header at 510: its 8 bytes are read first (truncated when the frame
    // ends before 518), then its last byte, 517, is past the budget.
    let frag = v6_frame(&[&ipv6(0), &opts_ext(44, 56), &frag_ext(17, 0, false), &udp(1, 2)]);
    assert_eq!(malformed(&frag), Malformed::Ipv6ExtTooMany);
    assert_eq!(malformed(&frag[..517]), Malformed::Ipv6ExtTruncated);
    assert_eq!(malformed(&frag[..511]), Malformed::Ipv6ExtTruncated);
    // The same shifted by two VLAN tags: 62 + 448 = 510.
    let mut tagged = eth(&[3, 4], 0x86dd);
    tagged.extend_from_slice(&cat(&[&ipv6(0), &opts_ext(6, 55), &tcp(1, 2, 3)]));
    assert_eq!(fields(&tagged).transport, ports(1, 2, Some(3)));
    // One tag: 58 + 456 = 514.
    let mut tagged = eth(&[3], 0x86dd);
    tagged.extend_from_slice(&cat(&[&ipv6(0), &opts_ext(6, 56), &tcp(1, 2, 3)]));
    assert_eq!(malformed(&tagged), Malformed::Ipv6ExtTooMany);
}

// ---- rules ----

fn rs(src: &str) -> Ruleset {
    parse_str(src, "model-test.conf", Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

fn v4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut l3 = ipv4(17, 0, &[]);
    l3[12..16].copy_from_slice(&src);
    l3[16..20].copy_from_slice(&dst);
    v4_frame(&[], &l3, &udp(sport, dport))
}

fn v6_udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let mut l3 = ipv6(17);
    l3[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
    l3[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    v6_frame(&[&l3, &udp(sport, dport)])
}

#[test]
fn first_matching_quick_rule_wins_and_default() {
    let r = rs("set default block\n\
                block in quick proto udp to port 53\n\
                pass in quick proto udp to port 50:60\n");
    let d = |p| decide(&r, &v4_udp(SRC4, DST4, 1, p), None);
    assert_eq!(d(53), ModelDecision::Rule(0));
    assert_eq!(d(50), ModelDecision::Rule(1));
    assert_eq!(d(60), ModelDecision::Rule(1));
    assert_eq!(d(49), ModelDecision::Default);
    assert_eq!(d(61), ModelDecision::Default);
    assert_eq!(action(&r, &ModelDecision::Rule(0)), Action::Block);
    assert_eq!(action(&r, &ModelDecision::Rule(1)), Action::Pass);
    assert_eq!(action(&r, &ModelDecision::Default), Action::Block);
    assert_eq!(action(&r, &ModelDecision::NonIp), Action::Pass);
    assert_eq!(action(&r, &ModelDecision::Malformed(Malformed::L4Truncated)), Action::Block);
    assert_eq!(decide(&r, &eth(&[], 0x0806), None), ModelDecision::NonIp);
    assert_eq!(decide(&r, &[0; 13], None), ModelDecision::Malformed(Malformed::EthTruncated));
}

#[test]
fn addresses_tables_and_negation() {
    let r = rs("table <t> { 10.0.0.0/8, 10.1.0.0/16, 2001:db8::/32 }\n\
                table <empty> { }\n\
                pass in quick from <empty>\n\
                pass in quick from 10.1.2.3 to !<t>\n\
                pass in quick from !{ 10.0.0.0/8, 2001:db8:1::/48 } to 198.51.100.0/24\n\
                block in quick from <t>\n");
    let d = |s, dst, port| decide(&r, &v4_udp(s, dst, 1, port), None);
    // A host inside the table's /8: rule 1 wants a destination outside <t>.
    assert_eq!(d([10, 1, 2, 3], DST4, 1), ModelDecision::Rule(1));
    assert_eq!(d([10, 1, 2, 3], [10, 200, 0, 0], 1), ModelDecision::Rule(3));
    assert_eq!(d([10, 1, 2, 4], DST4, 1), ModelDecision::Rule(3));
    // 11.0.0.0 is just past 10.0.0.0/8: not in the negated list.
    assert_eq!(d([11, 0, 0, 0], DST4, 1), ModelDecision::Rule(2));
    assert_eq!(d([9, 255, 255, 255], [198, 51, 100, 255], 1), ModelDecision::Rule(2));
    assert_eq!(d([9, 255, 255, 255], [198, 51, 101, 0], 1), ModelDecision::Default);
    let v6 = |s: &str, dst: &str| decide(&r, &v6_udp(s, dst, 1, 1), None);
    // A v6 source is in none of the negated v4 items.
    assert_eq!(v6("2001:db9::1", "::"), ModelDecision::Default);
    assert_eq!(v6("2001:db8:ffff::1", "::"), ModelDecision::Rule(3));
}

#[test]
fn negation_covers_the_other_family() {
    let r = rs("pass in quick from !10.0.0.0/8\nblock in quick from !2001:db8::/32\n");
    assert_eq!(decide(&r, &v6_udp("2001:db8::9", "::1", 1, 1), None), ModelDecision::Rule(0));
    assert_eq!(decide(&r, &v4_udp([10, 0, 0, 1], DST4, 1, 1), None), ModelDecision::Rule(1));
}

#[test]
fn ports_flags_icmp_vlan_interface() {
    let r = rs("pass in quick on lo proto tcp to port { 22, 80:90 } flags S/SA no state\n\
                pass in quick proto { tcp udp } from port 0:1 no state\n\
                pass in quick proto icmp icmp-type echoreq code 0 no state\n\
                pass in quick proto icmp icmp-type unreach no state\n\
                pass in quick inet6 proto icmp6 icmp6-type 128 no state\n\
                pass in quick vlan 0 no state\n\
                pass in quick inet6 no state\n");
    let t = |l4: &[u8], iface| decide(&r, &v4_frame(&[], &ipv4(6, 0, &[]), l4), iface);
    assert_eq!(t(&tcp(9, 22, 0x02), Some("lo")), ModelDecision::Rule(0));
    assert_eq!(t(&tcp(9, 90, 0x02 | 0x08), Some("lo")), ModelDecision::Rule(0));
    assert_eq!(t(&tcp(9, 90, 0x12), Some("lo")), ModelDecision::Default);
    assert_eq!(t(&tcp(9, 91, 0x02), Some("lo")), ModelDecision::Default);
    assert_eq!(t(&tcp(9, 22, 0x02), Some("eth0")), ModelDecision::Default);
    assert_eq!(t(&tcp(9, 22, 0x02), None), ModelDecision::Default);
    assert_eq!(t(&tcp(1, 22, 0x10), None), ModelDecision::Rule(1));
    // A later fragment of the same has no ports.
    let later = v4_frame(&[], &ipv4(6, 5, &[]), &tcp(1, 22, 0x02));
    assert_eq!(decide(&r, &later, Some("lo")), ModelDecision::Default);

    let i = |ty, code| decide(&r, &v4_frame(&[], &ipv4(1, 0, &[]), &icmp(ty, code)), None);
    assert_eq!(i(8, 0), ModelDecision::Rule(2));
    assert_eq!(i(8, 1), ModelDecision::Default);
    assert_eq!(i(3, 13), ModelDecision::Rule(3));
    let ping6 = v6_frame(&[&ipv6(58), &icmp(128, 9)]);
    assert_eq!(decide(&r, &ping6, None), ModelDecision::Rule(4));
    // Untagged never matches `vlan 0`; tagged 0 does.
    let u = |tags: &[u16]| decide(&r, &v4_frame(tags, &ipv4(17, 0, &[]), &udp(5, 5)), None);
    assert_eq!(u(&[]), ModelDecision::Default);
    assert_eq!(u(&[0]), ModelDecision::Rule(5));
    assert_eq!(u(&[0, 9]), ModelDecision::Rule(5));
    assert_eq!(u(&[9, 0]), ModelDecision::Default);
    assert_eq!(decide(&r, &v6_udp("::1", "::2", 5, 5), None), ModelDecision::Rule(6));
}

// ---- connection tracking ----

use super::state::{FlowState, TcpState, Tracker};

const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 7];

fn v4_with(proto: u8, src: [u8; 4], dst: [u8; 4], tags: &[u16], l4: &[u8]) -> Vec<u8> {
    let mut l3 = ipv4(proto, 0, &[]);
    l3[12..16].copy_from_slice(&src);
    l3[16..20].copy_from_slice(&dst);
    v4_frame(tags, &l3, l4)
}

fn v4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    v4_with(6, src, dst, &[], &tcp(sport, dport, flags))
}

fn v4_echo(src: [u8; 4], dst: [u8; 4], t: u8, id: u16) -> Vec<u8> {
    let mut h = icmp(t, 0);
    h[4..6].copy_from_slice(&id.to_be_bytes());
    v4_with(1, src, dst, &[], &h)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const PSH_ACK: u8 = 0x18;

const STATEFUL: &str = "set default block\n\
                        pass in proto tcp to port 80 flags any keep state\n\
                        pass in proto udp to port 53 keep state\n\
                        pass in proto icmp icmp-type echoreq keep state\n";

#[test]
fn tcp_handshake_data_and_close_pass_by_state() {
    let r = rs(STATEFUL);
    let mut t = Tracker::new();
    let out = |flags| v4_tcp(CLIENT, SERVER, 40000, 80, flags);
    let back = |flags| v4_tcp(SERVER, CLIENT, 80, 40000, flags);
    // Before the handshake, a reply claims a flow nobody opened.
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    assert_eq!(t.len(), 1);
    // The SYN again passes by state; data from the responder before its SYN-ACK does not.
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &back(ACK), None), ModelDecision::Default);
    // The opener's ACK before the SYN-ACK is not explained: the rule passes it.
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::State);
    let (_, flow) = t.flows().next().unwrap();
    assert_eq!(flow.state, FlowState::Tcp(TcpState::Established));
    assert_eq!(flow.rule, 0);
    for flags in [PSH_ACK, ACK, 0] {
        assert_eq!(t.decide(&r, &out(flags), None), ModelDecision::State);
        assert_eq!(t.decide(&r, &back(flags), None), ModelDecision::State);
    }
    // A reply through another "interface" or VLAN finds the same flow.
    let tagged = v4_with(6, SERVER, CLIENT, &[7], &tcp(80, 40000, ACK));
    assert_eq!(t.decide(&r, &tagged, Some("wan0")), ModelDecision::State);
    assert_eq!(t.decide(&r, &back(FIN_ACK), None), ModelDecision::State);
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::Tcp(TcpState::Closing));
    assert_eq!(t.decide(&r, &out(FIN_ACK), None), ModelDecision::State);
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::Tcp(TcpState::FinWait));
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::State);
    // RST passes by state and closes; anything after it (another RST too) goes
    // through the rules.
    assert_eq!(t.decide(&r, &back(RST), None), ModelDecision::State);
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::Tcp(TcpState::Closed));
    assert_eq!(t.decide(&r, &back(RST), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &back(ACK), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::Rule(0));
    // A new SYN reopens it.
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::Tcp(TcpState::SynSent));
    assert_eq!(t.len(), 1);
}

#[test]
fn tcp_packets_the_state_does_not_explain_go_through_the_rules() {
    let r = rs(STATEFUL);
    let mut t = Tracker::new();
    let out = |flags| v4_tcp(CLIENT, SERVER, 40001, 80, flags);
    let back = |flags| v4_tcp(SERVER, CLIENT, 80, 40001, flags);
    // A mid-stream segment passed by a keep-state rule opens no flow.
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::Rule(0));
    assert!(t.is_empty());
    // Nor does a SYN with ACK or RST.
    assert_eq!(t.decide(&r, &out(SYN_ACK), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &out(SYN | RST), None), ModelDecision::Rule(0));
    assert!(t.is_empty());
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    // A SYN-ACK from the opener; a SYN without ACK from the responder.
    assert_eq!(t.decide(&r, &out(SYN_ACK), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &back(SYN), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::State);
    // In SYN_RECEIVED: the responder's data is not explained, the opener's ACK is.
    assert_eq!(t.decide(&r, &back(PSH_ACK), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &out(SYN_ACK), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &out(PSH_ACK), None), ModelDecision::State);
    // A new SYN on an established flow, from either side.
    assert_eq!(t.decide(&r, &back(SYN), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::Default);
    // ... and from the opener, passed by the keep-state rule: a new flow replaces it.
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::Tcp(TcpState::SynSent));
    assert_eq!(t.decide(&r, &back(ACK), None), ModelDecision::Default);
    // Another port pair is another flow.
    let other = v4_tcp(SERVER, CLIENT, 80, 40002, SYN_ACK);
    assert_eq!(t.decide(&r, &other, None), ModelDecision::Default);
    // RST in SYN_SENT passes and closes.
    assert_eq!(t.decide(&r, &back(RST | ACK), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::Default);
}

#[test]
fn udp_and_icmp_echo_flows() {
    let r = rs(STATEFUL);
    let mut t = Tracker::new();
    let q = v4_udp(CLIENT, SERVER, 5353, 53);
    let a = v4_udp(SERVER, CLIENT, 53, 5353);
    assert_eq!(t.decide(&r, &a, None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &q, None), ModelDecision::Rule(1));
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::UdpSingle);
    assert_eq!(t.decide(&r, &q, None), ModelDecision::State);
    assert_eq!(t.decide(&r, &a, None), ModelDecision::State);
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::UdpMultiple);
    assert_eq!(t.decide(&r, &q, None), ModelDecision::State);
    // A reply from the wrong port, or to the wrong one.
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 54, 5353), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 53, 5354), None), ModelDecision::Default);
    t.clear();

    let req = |id| v4_echo(CLIENT, SERVER, 8, id);
    let rep = |id| v4_echo(SERVER, CLIENT, 0, id);
    assert_eq!(t.decide(&r, &rep(7), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &req(7), None), ModelDecision::Rule(2));
    assert_eq!(t.decide(&r, &rep(7), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &rep(8), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &req(7), None), ModelDecision::State);
    // A reply from the opener, a request from the responder.
    assert_eq!(t.decide(&r, &v4_echo(CLIENT, SERVER, 0, 7), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &v4_echo(SERVER, CLIENT, 8, 7), None), ModelDecision::Rule(2));
    // ... which, passed by the keep-state rule, made the server the opener.
    assert_eq!(t.decide(&r, &rep(7), None), ModelDecision::Default);
    assert_eq!(t.decide(&r, &v4_echo(CLIENT, SERVER, 0, 7), None), ModelDecision::State);
    // Other ICMP types have no flow.
    assert_eq!(t.decide(&r, &v4_echo(SERVER, CLIENT, 3, 7), None), ModelDecision::Default);
}

#[test]
fn state_needs_keep_state_and_pass() {
    // Without keep state, and for the stateless model, nothing is remembered.
    let r = rs("set default block\npass in proto udp to port 53 no state\n");
    let mut t = Tracker::new();
    assert_eq!(t.decide(&r, &v4_udp(CLIENT, SERVER, 5353, 53), None), ModelDecision::Rule(0));
    assert!(t.is_empty());
    let r = rs(STATEFUL);
    let q = v4_udp(CLIENT, SERVER, 5353, 53);
    assert_eq!(decide(&r, &q, None), ModelDecision::Rule(1));
    assert_eq!(decide(&r, &q, None), ModelDecision::Rule(1));
    // A later fragment has no ports, hence no flow.
    let mut frag = ipv4(17, 0x0010, &[]);
    frag[12..16].copy_from_slice(&CLIENT);
    frag[16..20].copy_from_slice(&SERVER);
    let r = rs("pass in proto udp keep state\n");
    let mut t = Tracker::new();
    assert_eq!(t.decide(&r, &v4_frame(&[], &frag, &udp(1, 2)), None), ModelDecision::Rule(0));
    assert!(t.is_empty());
    // `out` rules never judge received packets, so they open nothing here.
    let r = rs("set default block\npass out proto udp keep state\n");
    assert_eq!(t.decide(&r, &q, None), ModelDecision::Default);
    assert!(t.is_empty());
}

// ---- pf's evaluation ----

#[test]
fn last_match_wins_unless_quick() {
    // The pf FAQ's home firewall: `block in` then a pass for echo requests.
    let r = rs("block in all\npass in inet proto icmp all icmp-type echoreq\n");
    let ping = v4_echo(CLIENT, SERVER, 8, 1);
    assert_eq!(decide(&r, &ping, None), ModelDecision::Rule(1), "the last match decides");
    assert_eq!(decide(&r, &v4_echo(CLIENT, SERVER, 0, 1), None), ModelDecision::Rule(0));
    // `pass in ... to 10.0.0.1` then `block`: the later block wins.
    let r = rs("pass in proto udp to 10.0.0.1\nblock all\n");
    assert_eq!(decide(&r, &v4_udp(CLIENT, [10, 0, 0, 1], 1, 2), None), ModelDecision::Rule(1));
    // A quick rule decides at once, whatever matches after it; a later quick rule
    // does not win over an earlier one, and an earlier non-quick match loses to it.
    let r = rs("pass in all\nblock in quick proto udp\npass in quick proto udp to port 53\npass in all\n");
    assert_eq!(decide(&r, &v4_udp(CLIENT, SERVER, 1, 53), None), ModelDecision::Rule(1));
    assert_eq!(decide(&r, &v4_echo(CLIENT, SERVER, 8, 1), None), ModelDecision::Rule(3));
}

#[test]
fn rules_without_direction_apply_both_ways() {
    use crate::rules::Direction::{In, Out};
    let r = rs("set default block\nblock all\npass inet6 proto icmp6 all\npass in proto udp\n");
    let ns = v6_frame(&[&ipv6(58), &icmp(135, 0)]);
    assert_eq!(decide_going(&r, &ns, None, In), ModelDecision::Rule(1));
    assert_eq!(decide_going(&r, &ns, None, Out), ModelDecision::Rule(1));
    let q = v4_udp(CLIENT, SERVER, 1, 53);
    assert_eq!(decide_going(&r, &q, None, In), ModelDecision::Rule(2));
    assert_eq!(decide_going(&r, &q, None, Out), ModelDecision::Rule(0), "`in` rules never judge leaving packets");
    // `set default` is for arriving packets: a leaving one no rule decides passes.
    let r = rs("set default block\npass in proto udp\n");
    assert_eq!(decide_going(&r, &q, None, Out), ModelDecision::Default);
    assert_eq!(action_going(&r, &ModelDecision::Default, Out), Action::Pass);
    assert_eq!(action_going(&r, &ModelDecision::Default, In), Action::Block);
}

#[test]
fn pass_keeps_state_and_opens_tcp_only_on_syn() {
    use crate::rules::Direction::{In, Out};
    // `block in` / `pass out`: the replies to the host's own connections pass by state.
    let r = rs("block in all\npass out all\n");
    let mut t = Tracker::new();
    let syn = v4_tcp(CLIENT, SERVER, 40000, 80, SYN);
    let syn_ack = v4_tcp(SERVER, CLIENT, 80, 40000, SYN_ACK);
    assert_eq!(t.decide_going(&r, &syn, None, Out), ModelDecision::Rule(1));
    assert_eq!(t.decide_going(&r, &syn_ack, None, In), ModelDecision::State);
    assert_eq!(t.decide_going(&r, &v4_tcp(CLIENT, SERVER, 40000, 80, ACK), None, Out), ModelDecision::State);
    // A mid-stream segment of no tracked flow matches no `flags S/SA` rule.
    let mut t = Tracker::new();
    let stray = v4_tcp(CLIENT, SERVER, 40001, 80, ACK);
    assert_eq!(t.decide_going(&r, &stray, None, Out), ModelDecision::Default);
    assert!(t.is_empty());
    // `no state`: stateless, and no implicit flags.
    let r = rs("block in all\npass out all no state\n");
    assert_eq!(t.decide_going(&r, &stray, None, Out), ModelDecision::Rule(1));
    assert_eq!(t.decide_going(&r, &syn, None, Out), ModelDecision::Rule(1));
    assert!(t.is_empty());
    assert_eq!(t.decide_going(&r, &syn_ack, None, In), ModelDecision::Rule(0));
    // UDP has no flags: every datagram may open a flow.
    let r = rs("block in all\npass out proto udp\n");
    let mut t = Tracker::new();
    assert_eq!(t.decide_going(&r, &v4_udp(CLIENT, SERVER, 5353, 53), None, Out), ModelDecision::Rule(1));
    assert_eq!(t.decide_going(&r, &v4_udp(SERVER, CLIENT, 53, 5353), None, In), ModelDecision::State);
}

// ---- max-src-states ----

const OTHER_CLIENT: [u8; 4] = [192, 0, 2, 99];

#[test]
fn max_src_states_lets_a_source_open_n_flows_per_rule() {
    let r = rs("set default block\n\
                pass in proto udp to port 53 keep state (max-src-states 2)\n\
                pass in proto tcp to port 80 keep state (max-src-states 1)\n\
                pass in proto udp to port 123 keep state\n");
    let mut t = Tracker::new();
    let query = |src, sport| v4_udp(src, SERVER, sport, 53);
    let client = IpAddr::V4(CLIENT.into());
    // Two flows pass through rule 0 and are tracked.
    assert_eq!(t.decide(&r, &query(CLIENT, 1000), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &query(CLIENT, 1001), None), ModelDecision::Rule(0));
    assert_eq!((t.len(), t.source_flows(0, client)), (2, 2));
    // The third is refused: dropped, no flow; its next datagram and its reply meet
    // no flow either (the reply goes to the default).
    assert_eq!(t.decide(&r, &query(CLIENT, 1002), None), ModelDecision::SourceLimited(0));
    assert_eq!(action(&r, &ModelDecision::SourceLimited(0)), Action::Block);
    assert_eq!(t.decide(&r, &query(CLIENT, 1002), None), ModelDecision::SourceLimited(0));
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 53, 1002), None), ModelDecision::Default);
    assert_eq!((t.len(), t.source_flows(0, client)), (2, 2));
    // The flows it holds live on, both ways.
    assert_eq!(t.decide(&r, &query(CLIENT, 1001), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 53, 1000), None), ModelDecision::State);
    // Another source counts on its own.
    assert_eq!(t.decide(&r, &query(OTHER_CLIENT, 1002), None), ModelDecision::Rule(0));
    assert_eq!(t.source_flows(0, IpAddr::V4(OTHER_CLIENT.into())), 1);
    // So does the same source through another rule, with its own limit.
    let syn = |sport| v4_tcp(CLIENT, SERVER, sport, 80, SYN);
    assert_eq!(t.decide(&r, &syn(40000), None), ModelDecision::Rule(1));
    assert_eq!(t.decide(&r, &syn(40001), None), ModelDecision::SourceLimited(1));
    assert_eq!(t.source_flows(1, client), 1);
    // A rule without the limit counts nothing and refuses nothing.
    for sport in 2000..2010 {
        assert_eq!(t.decide(&r, &v4_udp(CLIENT, SERVER, sport, 123), None), ModelDecision::Rule(2));
    }
    assert_eq!(t.source_flows(2, client), 0);
    // The source is the address, whatever its ports; an IPv6 source is another one.
    let v6 = rs("pass in proto udp keep state (max-src-states 1)\n");
    let mut t = Tracker::new();
    assert_eq!(t.decide(&v6, &v6_udp("2001:db8::1", "2001:db8::2", 1, 2), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&v6, &v6_udp("2001:db8::1", "2001:db8::3", 3, 4), None), ModelDecision::SourceLimited(0));
    assert_eq!(t.decide(&v6, &v4_udp(CLIENT, SERVER, 1, 2), None), ModelDecision::Rule(0));
}

#[test]
fn max_src_states_counts_every_opening_and_only_openings() {
    let r = rs("set default block\npass in proto tcp to port 80 flags any keep state (max-src-states 3)\n");
    let mut t = Tracker::new();
    let client = IpAddr::V4(CLIENT.into());
    let out = |flags| v4_tcp(CLIENT, SERVER, 40000, 80, flags);
    let back = |flags| v4_tcp(SERVER, CLIENT, 80, 40000, flags);
    // Mid-stream segments the rule passes open nothing and take no slot; neither does
    // the SYN again, which the flow's state passes.
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::Rule(0));
    assert_eq!(t.source_flows(0, client), 0);
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::State);
    assert_eq!(t.source_flows(0, client), 1);
    // A new SYN on the established flow opens it again on the same endpoints: the
    // new flow replaces the old one but takes a slot of its own (the old one's stays
    // held until its timeout).
    assert_eq!(t.decide(&r, &back(SYN_ACK), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    assert_eq!((t.len(), t.source_flows(0, client)), (1, 2));
    // Closed by an RST and opened again: the third slot.
    assert_eq!(t.decide(&r, &back(RST), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::Rule(0));
    assert_eq!((t.len(), t.source_flows(0, client)), (1, 3));
    // Closed again: one endpoint pair has used up the source's three slots, so the
    // next opening is refused and the closed flow stays as it was.
    assert_eq!(t.decide(&r, &back(RST), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &out(SYN), None), ModelDecision::SourceLimited(0));
    assert_eq!(t.flows().next().unwrap().1.state, FlowState::Tcp(TcpState::Closed));
    // What is not an opening still goes through the rule.
    assert_eq!(t.decide(&r, &out(ACK), None), ModelDecision::Rule(0));
    // Forgetting the flows (`flush states`) frees their slots with them.
    t.clear();
    assert!(t.is_empty());
    assert_eq!(t.decide(&r, &v4_tcp(CLIENT, SERVER, 40001, 80, SYN), None), ModelDecision::Rule(0));
    // The source is the opener: the server opening a flow to the client counts for
    // the server.
    let r = rs("pass in proto udp keep state (max-src-states 1)\n");
    let mut t = Tracker::new();
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 53, 1000), None), ModelDecision::Rule(0));
    assert_eq!(t.decide(&r, &v4_udp(CLIENT, SERVER, 1000, 53), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &v4_udp(CLIENT, SERVER, 1001, 53), None), ModelDecision::Rule(0));
    assert_eq!(t.source_flows(0, IpAddr::V4(SERVER.into())), 1);
    assert_eq!(t.source_flows(0, IpAddr::V4(CLIENT.into())), 1);
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 53, 1001), None), ModelDecision::State);
    assert_eq!(t.decide(&r, &v4_udp(SERVER, CLIENT, 53, 1002), None), ModelDecision::SourceLimited(0));
}
