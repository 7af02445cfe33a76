//! Table-driven BPF_PROG_TEST_RUN tests: real frames through the real XDP program,
//! checking the verdict and that exactly the expected counter moved.

use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::{Counter, Malformed, names, slot};
use filter_user::{compile, rules};
use xdpwall_tests::{
    bpf::{Bed, LO},
    packet::{self, Ipv6Ext, LayerKind, Packet, PacketBuilder},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// What should decide a packet.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Rule number (0-based) with its action.
    Rule(usize, u32),
    /// The default policy.
    Default,
    /// Passed unjudged.
    NonIp,
    /// Dropped as malformed.
    Malformed(Malformed),
    /// Passed on the fast path of a tracked flow.
    State,
}

/// A ruleset loaded into the kernel (not attached), counting into its own pin dir.
struct Harness {
    bed: Bed,
    default_slot: u32,
    rule_actions: Vec<u32>,
}

impl Harness {
    /// Test runs receive on the loopback device; `lo` is loaded under the name "lo".
    fn new(src: &str) -> Harness {
        Harness::with_lo_named(src, Some("lo"))
    }

    /// `lo_name`: the name the filter knows the loopback device by (`None`: not loaded,
    /// as if the program ran on an interface it has no entry for).
    fn with_lo_named(src: &str, lo_name: Option<&str>) -> Harness {
        let rs = rules::parse_str(src, "kernel-test.conf", std::path::Path::new(".")).expect("ruleset parses");
        let compiled = compile::compile(&rs).expect("ruleset compiles");
        let bed = Bed::load(&compiled, lo_name, false, "kt").expect("program loads and verifies");
        let default_slot = match rs.default_action {
            rules::Action::Pass => slot::DEFAULT_PASS,
            rules::Action::Block => slot::DEFAULT_BLOCK,
        };
        let rule_actions =
            rs.rules.iter().map(|r| if r.action == rules::Action::Pass { XDP_PASS } else { XDP_DROP }).collect();
        Harness { bed, default_slot, rule_actions }
    }

    /// Entries in this harness's flow tables: (answered, not answered).
    fn flow_counts(&self) -> (usize, usize) {
        let count = |table| self.bed.flows(table).expect("flow table readable").len();
        (count(names::STATES), count(names::STATES_NEW))
    }

    /// Runs `frame` as sent by the host (TC egress on `lo`) and checks that it passes
    /// by the state of its flow: TC_ACT_OK and the state counter moved.
    fn check_egress_state(&mut self, name: &str, frame: &[u8]) {
        let before = self.counters()[slot::STATE as usize].packets;
        let action = self.bed.program.test_run_egress(frame).expect("egress test run");
        let after = self.counters()[slot::STATE as usize].packets;
        assert_eq!((action, after - before), (0, 1), "{name}: (TC action, packets passed by state)");
    }

    /// The counters the program can touch: the reserved slots and one per rule
    /// (reading all of COUNTERS per packet would dominate the test's run time).
    fn counters(&self) -> Vec<Counter> {
        self.bed.counters(slot::RESERVED + self.rule_actions.len() as u32).expect("COUNTERS readable")
    }

    /// Runs `frame` (received on `lo`) and checks verdict and counters.
    fn check(&mut self, name: &str, frame: &[u8], expect: Expect) {
        let (want_action, want_slot) = match expect {
            Expect::Rule(i, _) => (self.rule_actions[i], slot::RESERVED + i as u32),
            Expect::Default => {
                (if self.default_slot == slot::DEFAULT_PASS { XDP_PASS } else { XDP_DROP }, self.default_slot)
            }
            Expect::NonIp => (XDP_PASS, slot::NON_IP),
            Expect::State => (XDP_PASS, slot::STATE),
            Expect::Malformed(m) => (XDP_DROP, m.slot()),
        };
        if let Expect::Rule(i, action) = expect {
            assert_eq!(self.rule_actions[i], action, "{name}: test table names the wrong action for rule {i}");
        }
        let before = self.counters();
        let action = self.bed.program.test_run(frame, Some(LO)).expect("test run");
        let after = self.counters();
        assert_eq!(action, want_action, "{name}: verdict (2 pass, 1 drop), expected {expect:?}");
        for (s, (b, a)) in before.iter().zip(&after).enumerate() {
            let (dp, db) = (a.packets - b.packets, a.bytes - b.bytes);
            if s as u32 == want_slot {
                assert_eq!((dp, db), (1, frame.len() as u64), "{name}: counter of {expect:?} (slot {s})");
            } else {
                assert_eq!((dp, db), (0, 0), "{name}: slot {s} moved, expected only {expect:?} (slot {want_slot})");
            }
        }
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const SRC4: &str = "192.0.2.1";
const DST4: &str = "198.51.100.1";
const SRC6: &str = "2001:db8:f::1";
const DST6: &str = "2001:db8:e::1";

fn ip4() -> PacketBuilder {
    PacketBuilder::eth().ipv4(v4(SRC4), v4(DST4))
}
fn ip4_from(src: &str) -> PacketBuilder {
    PacketBuilder::eth().ipv4(v4(src), v4(DST4))
}
fn ip6() -> PacketBuilder {
    PacketBuilder::eth().ipv6(v6(SRC6), v6(DST6))
}
fn bytes(b: PacketBuilder) -> Vec<u8> {
    b.payload(b"xdpwall").build().bytes
}

/// One rule per match field, default block; each case reaches exactly one rule.
const EVERY_FIELD: &str = r#"
set default block
table <nets> { 10.9.0.0/16, 2001:db8:9::/48 }
pass  in quick on lo proto udp to port 1001 no state
pass  in quick inet proto udp to port 1002 no state
pass  in quick inet6 proto udp to port 1002 no state
pass  in quick proto sctp no state
pass  in quick from 10.1.0.0/16 no state
pass  in quick from 2001:db8:1::/48 no state
pass  in quick to 10.2.2.2 no state
block in quick from !<nets> to 10.3.0.0/16
pass  in quick from <nets> to 10.3.0.0/16 no state
pass  in quick proto tcp from port 5000:5010 no state
pass  in quick proto tcp to port { 22, 80 } no state
pass  in quick proto tcp to port 8000 flags S/SA no state
pass  in quick proto icmp icmp-type echoreq no state
pass  in quick proto icmp6 icmp6-type echoreq no state
pass  in quick proto icmp icmp-type unreach code 3 no state
pass  in quick vlan 100 no state
block in quick to 2001:db8:d::/48
"#;

#[test]
fn every_match_field() {
    use Expect::*;
    let mut h = Harness::new(EVERY_FIELD);
    let udp = |b: PacketBuilder, d| bytes(b.udp(40000, d));
    let tcp = |b: PacketBuilder, s, d, f| bytes(b.tcp(s, d, f));
    let ack = packet::TCP_ACK;
    let syn = packet::TCP_SYN;

    h.check("on lo", &udp(ip4(), 1001), Rule(0, XDP_PASS));
    h.check("inet", &udp(ip4(), 1002), Rule(1, XDP_PASS));
    h.check("inet6", &udp(ip6(), 1002), Rule(2, XDP_PASS));
    h.check("proto sctp v4", &bytes(ip4().sctp(1, 2)), Rule(3, XDP_PASS));
    h.check("proto sctp v6", &bytes(ip6().sctp(1, 2)), Rule(3, XDP_PASS));
    h.check("udp other port", &udp(ip4(), 9999), Default);
    h.check("src v4 prefix", &udp(ip4_from("10.1.200.3"), 9999), Rule(4, XDP_PASS));
    h.check("src v4 outside prefix", &udp(ip4_from("10.4.0.1"), 9999), Default);
    h.check(
        "src v6 prefix",
        &udp(PacketBuilder::eth().ipv6(v6("2001:db8:1:ffff::9"), v6(DST6)), 9999),
        Rule(5, XDP_PASS),
    );
    h.check("dst host", &udp(PacketBuilder::eth().ipv4(v4(SRC4), v4("10.2.2.2")), 9999), Rule(6, XDP_PASS));
    h.check("dst host neighbour", &udp(PacketBuilder::eth().ipv4(v4(SRC4), v4("10.2.2.3")), 9999), Default);
    let to_10_3 = |src: &str| udp(PacketBuilder::eth().ipv4(v4(src), v4("10.3.1.1")), 9999);
    h.check("negated table, not in table", &to_10_3(SRC4), Rule(7, XDP_DROP));
    h.check("negated table, in table", &to_10_3("10.9.4.4"), Rule(8, XDP_PASS));
    h.check("sport range low", &tcp(ip4(), 5000, 9999, ack), Rule(9, XDP_PASS));
    h.check("sport range high", &tcp(ip4(), 5010, 9999, ack), Rule(9, XDP_PASS));
    h.check("sport range above", &tcp(ip4(), 5011, 9999, ack), Default);
    h.check("sport range below", &tcp(ip4(), 4999, 9999, ack), Default);
    h.check("dport list 22", &tcp(ip4(), 40000, 22, ack), Rule(10, XDP_PASS));
    h.check("dport list 80 v6", &tcp(ip6(), 40000, 80, ack), Rule(10, XDP_PASS));
    h.check("dport list miss", &tcp(ip4(), 40000, 81, ack), Default);
    h.check("udp to a tcp port", &udp(ip4(), 22), Default);
    h.check("flags S/SA: syn", &tcp(ip4(), 40000, 8000, syn), Rule(11, XDP_PASS));
    h.check("flags S/SA: syn|psh", &tcp(ip4(), 40000, 8000, syn | packet::TCP_PSH), Rule(11, XDP_PASS));
    h.check("flags S/SA: syn|ack", &tcp(ip4(), 40000, 8000, syn | ack), Default);
    h.check("icmp echo request", &bytes(ip4().icmp_echo(1, 1)), Rule(12, XDP_PASS));
    h.check("icmp echo reply", &bytes(ip4().icmp(0, 0)), Default);
    h.check("icmp6 echo request", &bytes(ip6().icmp6_echo(1, 1)), Rule(13, XDP_PASS));
    h.check("icmp6 echo reply", &bytes(ip6().icmp6(129, 0)), Default);
    h.check("icmp type 8 in ipv6 proto 1 is not icmp6", &bytes(ip6().l4_raw(1, &[8, 0, 0, 0, 0, 0, 0, 0])), Default);
    h.check("icmp unreach code 3", &bytes(ip4().icmp(3, 3)), Rule(14, XDP_PASS));
    h.check("icmp unreach code 1", &bytes(ip4().icmp(3, 1)), Default);
    h.check("vlan 100", &udp(PacketBuilder::eth().vlan(100).ipv4(v4(SRC4), v4(DST4)), 9999), Rule(15, XDP_PASS));
    h.check("vlan 101", &udp(PacketBuilder::eth().vlan(101).ipv4(v4(SRC4), v4(DST4)), 9999), Default);
    h.check(
        "qinq outer 100",
        &udp(PacketBuilder::eth().qinq(100, 7).ipv6(v6(SRC6), v6(DST6)), 9999),
        Rule(15, XDP_PASS),
    );
    h.check("qinq inner 100", &udp(PacketBuilder::eth().qinq(7, 100).ipv4(v4(SRC4), v4(DST4)), 9999), Default);
    h.check(
        "802.1ad single tag",
        &udp(PacketBuilder::eth().vlan_ad(100).ipv4(v4(SRC4), v4(DST4)), 9999),
        Rule(15, XDP_PASS),
    );
    h.check(
        "vlan tagged tcp 22",
        &tcp(PacketBuilder::eth().qinq(5, 6).ipv4(v4(SRC4), v4(DST4)), 1, 22, ack),
        Rule(10, XDP_PASS),
    );
    h.check("block v6 dst", &udp(PacketBuilder::eth().ipv6(v6(SRC6), v6("2001:db8:d::1")), 9999), Rule(16, XDP_DROP));
    h.check("arp", &PacketBuilder::eth().arp_request(v4(SRC4), v4(DST4)).build().bytes, NonIp);
    h.check("unknown ethertype", &bytes(PacketBuilder::eth().ethertype(packet::ETH_P_EXPERIMENTAL)), NonIp);
}

#[test]
fn ipv4_options_and_fragments() {
    use Expect::*;
    let mut h = Harness::new(EVERY_FIELD);
    let ack = packet::TCP_ACK;
    let opts = [1, 1, 1, 0, 0x94, 4, 0, 0, 1, 1, 1, 1]; // NOPs, EOL, router alert, NOPs
    h.check("ipv4 options, tcp 22", &bytes(ip4().ip_options(&opts).tcp(1, 22, ack)), Rule(10, XDP_PASS));
    h.check("40 bytes of options", &bytes(ip4().ip_options(&[1; 40]).tcp(1, 22, ack)), Rule(10, XDP_PASS));
    h.check("first fragment has ports", &bytes(ip4().fragment(0, true).tcp(1, 22, ack)), Rule(10, XDP_PASS));
    h.check("later fragment has none", &bytes(ip4().fragment(185, true).tcp(1, 22, ack)), Default);
    h.check("last fragment has none", &bytes(ip4().fragment(185, false).udp(1, 1002)), Default);
    h.check(
        "later fragment matches on address",
        &bytes(ip4_from("10.1.0.1").fragment(185, false).tcp(1, 22, ack)),
        Rule(4, XDP_PASS),
    );
    h.check("later fragment matches on proto", &bytes(ip4().fragment(8, false).sctp(1, 2)), Rule(3, XDP_PASS));
    // A later fragment whose bytes look like an ICMP echo request must not match icmp-type.
    h.check("later icmp fragment", &bytes(ip4().fragment(3, false).icmp_echo(1, 1)), Default);
    let mut bad_ihl = bytes(ip4().udp(1, 1002));
    bad_ihl[14] = 0x44;
    h.check("ihl 4", &bad_ihl, Malformed(filter_common::Malformed::Ipv4BadHeader));
    let mut bad_version = bytes(ip4().udp(1, 1002));
    bad_version[14] = 0x65;
    h.check("version 6 in an ipv4 frame", &bad_version, Malformed(filter_common::Malformed::Ipv4BadHeader));
    let mut v6_bad = bytes(ip6().udp(1, 1002));
    v6_bad[14] = 0x40;
    h.check("version 4 in an ipv6 frame", &v6_bad, Malformed(filter_common::Malformed::Ipv6BadHeader));
    let three = PacketBuilder::eth().vlan(100).vlan(101).vlan(102).ipv4(v4(SRC4), v4(DST4)).udp(1, 2);
    h.check("three vlan tags", &bytes(three), Malformed(filter_common::Malformed::VlanTooMany));
}

#[test]
fn ipv6_extension_header_chains() {
    use Expect::*;
    let mut h = Harness::new(EVERY_FIELD);
    let ack = packet::TCP_ACK;
    let chain = ip6()
        .hop_by_hop()
        .ipv6_ext(Ipv6Ext::Routing { routing_type: 4, segments_left: 0, extra: 2 })
        .ipv6_ext(Ipv6Ext::DestOpts { extra: 1 });
    h.check("hbh, routing, dstopts, udp", &bytes(chain.clone().udp(1, 1002)), Rule(2, XDP_PASS));
    h.check("hbh, routing, dstopts, tcp 80", &bytes(chain.tcp(1, 80, ack)), Rule(10, XDP_PASS));
    let frag = |offset| ip6().hop_by_hop().ipv6_ext(Ipv6Ext::Fragment { offset, more: true, id: 7 });
    h.check("v6 first fragment", &bytes(frag(0).tcp(1, 22, ack)), Rule(10, XDP_PASS));
    h.check("v6 later fragment", &bytes(frag(100).tcp(1, 22, ack)), Default);
    h.check("v6 later fragment, icmp6", &bytes(frag(100).icmp6_echo(1, 1)), Default);
    let mut eight = ip6();
    for _ in 0..8 {
        eight = eight.dest_opts();
    }
    h.check("8 extension headers", &bytes(eight.clone().udp(1, 1002)), Rule(2, XDP_PASS));
    h.check(
        "9 extension headers",
        &bytes(eight.dest_opts().udp(1, 1002)),
        Malformed(filter_common::Malformed::Ipv6ExtTooMany),
    );
    let long = ip6().ipv6_ext(Ipv6Ext::DestOpts { extra: 70 }).udp(1, 1002);
    h.check("600 bytes of headers", &bytes(long), Malformed(filter_common::Malformed::Ipv6ExtTooMany));
    h.check("no next header", &bytes(ip6().l4_raw(packet::IPPROTO_NONE, &[])), Default);
}

#[test]
fn default_pass_and_rule_order() {
    use Expect::*;
    let mut h = Harness::new(
        "block in quick proto udp to port 53\n\
         pass  in quick proto udp to port 53:54 no state\n\
         block in quick from 10.0.0.0/8\n\
         pass  in quick from 10.1.0.0/16 no state\n",
    );
    h.check("first match wins over a later pass", &bytes(ip4().udp(1, 53)), Rule(0, XDP_DROP));
    h.check("second rule", &bytes(ip4().udp(1, 54)), Rule(1, XDP_PASS));
    h.check("default pass", &bytes(ip4().udp(1, 55)), Default);
    h.check("/8 before its /16", &bytes(ip4_from("10.1.2.3").udp(1, 55)), Rule(2, XDP_DROP));
}

#[test]
fn empty_ruleset_uses_the_default() {
    let mut h = Harness::new("set default block\n");
    h.check("tcp", &bytes(ip4().tcp(1, 2, packet::TCP_SYN)), Expect::Default);
    h.check("arp still passes", &PacketBuilder::eth().arp_request(v4(SRC4), v4(DST4)).build().bytes, Expect::NonIp);
}

/// What a frame cut to `len` bytes must count as. With `lengths_fixed` (the IP length
/// field made to match the cut), the header the cut ends inside is truncated, or, past
/// `tiny_after` (the end of a first fragment's IP or Fragment header), the fragment is
/// tiny; a frame cut only in its payload is judged normally. Without, a cut past the
/// IP header leaves a length field that claims more than the frame holds.
fn truncated_expectation(
    p: &Packet,
    len: usize,
    full: Expect,
    lengths_fixed: bool,
    tiny_after: Option<usize>,
) -> Expect {
    let Some(layer) = p.layers.iter().find(|l| l.end > len) else {
        return full;
    };
    let ip = p.layers.iter().find(|l| matches!(l.kind, LayerKind::Ipv4 | LayerKind::Ipv6));
    if let Some(ip) = ip
        && !lengths_fixed
        && len >= ip.end
    {
        return Expect::Malformed(if ip.kind == LayerKind::Ipv4 {
            Malformed::Ipv4BadLength
        } else {
            Malformed::Ipv6BadLength
        });
    }
    let reason = match layer.kind {
        LayerKind::Eth => Malformed::EthTruncated,
        LayerKind::Vlan => Malformed::VlanTruncated,
        LayerKind::Ipv4 => Malformed::Ipv4Truncated,
        LayerKind::Ipv6 => Malformed::Ipv6Truncated,
        _ if tiny_after.is_some_and(|at| layer.start >= at) && layer.kind != LayerKind::Payload => {
            Malformed::FragmentTiny
        }
        LayerKind::Ipv6Ext => Malformed::Ipv6ExtTruncated,
        LayerKind::Tcp | LayerKind::Udp | LayerKind::Sctp | LayerKind::Icmp | LayerKind::Icmp6 => {
            Malformed::L4Truncated
        }
        LayerKind::Arp | LayerKind::Payload => return full,
    };
    Expect::Malformed(reason)
}

/// `frame` cut to `len` bytes with its IP length field (IPv4 Total Length, IPv6 Payload
/// Length) saying so, where the cut leaves that field whole.
fn cut_with_length(p: &Packet, len: usize) -> Vec<u8> {
    let mut b = p.bytes[..len].to_vec();
    if let Some(ip) = p.layer(LayerKind::Ipv4)
        && len >= ip.start + 4
    {
        b[ip.start + 2..ip.start + 4].copy_from_slice(&((len - ip.start) as u16).to_be_bytes());
    }
    if let Some(ip) = p.layer(LayerKind::Ipv6)
        && len >= ip.start + 40
    {
        b[ip.start + 4..ip.start + 6].copy_from_slice(&((len - ip.start - 40) as u16).to_be_bytes());
    }
    b
}

#[test]
fn truncated_at_every_byte() {
    use Expect::*;
    let mut h = Harness::new(EVERY_FIELD);
    let ack = packet::TCP_ACK;
    let v6_chain = ip6()
        .hop_by_hop()
        .ipv6_ext(Ipv6Ext::Routing { routing_type: 4, segments_left: 0, extra: 1 })
        .ipv6_ext(Ipv6Ext::Fragment { offset: 0, more: true, id: 1 })
        .dest_opts()
        .tcp(1, 80, ack)
        .build();
    // After its Fragment header (the third extension header), a cut makes a tiny fragment.
    let v6_tiny_after = v6_chain.layers.iter().filter(|l| l.kind == LayerKind::Ipv6Ext).nth(2).map(|l| l.end);
    let v4_first = ip4().fragment(0, true).tcp(1, 22, ack).payload(b"xyzw").build();
    let v4_tiny_after = v4_first.layer(LayerKind::Ipv4).map(|l| l.end);
    let cases: Vec<(&str, Packet, Expect, Option<usize>)> = vec![
        (
            "tcp/ipv4 with options",
            ip4().ip_options(&[1; 8]).tcp(1, 22, ack).payload(b"xy").build(),
            Rule(10, XDP_PASS),
            None,
        ),
        (
            "udp/ipv4 in qinq",
            PacketBuilder::eth().qinq(100, 5).ipv4(v4(SRC4), v4(DST4)).udp(1, 1002).build(),
            Rule(1, XDP_PASS),
            None,
        ),
        ("icmp/ipv4", ip4().icmp_echo(1, 2).payload(b"ping").build(), Rule(12, XDP_PASS), None),
        ("sctp/ipv6", ip6().sctp(1, 2).build(), Rule(3, XDP_PASS), None),
        ("icmp6/ipv6", ip6().icmp6_echo(1, 1).build(), Rule(13, XDP_PASS), None),
        ("tcp/ipv6 first fragment with extension chain", v6_chain, Rule(10, XDP_PASS), v6_tiny_after),
        ("tcp/ipv4 first fragment", v4_first, Rule(10, XDP_PASS), v4_tiny_after),
    ];
    for (name, p, full, tiny_after) in cases {
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, so cuts
        // start at 14 bytes.
        for len in 14..=p.bytes.len() {
            let expect = truncated_expectation(&p, len, full, false, tiny_after);
            h.check(&format!("{name} cut to {len} bytes"), &p.bytes[..len], expect);
            let expect = truncated_expectation(&p, len, full, true, tiny_after);
            h.check(&format!("{name} cut to {len} bytes, length field too"), &cut_with_length(&p, len), expect);
        }
    }
}

/// Packets whose headers disagree with each other or with the frame are dropped by
/// reason before any rule sees them; fragments that could rewrite the TCP header a
/// rule judged (RFC 1858, RFC 3128) likewise.
#[test]
fn packet_sanity() {
    use Expect::*;
    // pf's classic: SYNs to 22 are blocked, other TCP passes.
    let mut h = Harness::new(
        "set default block
         block in quick proto tcp to port 22 flags S/SA
         pass  in quick proto tcp no state
         pass  in quick proto udp no state
",
    );
    let (syn, ack) = (packet::TCP_SYN, packet::TCP_ACK);
    let tcp_at = |p: &Packet| p.layer(LayerKind::Tcp).expect("a TCP layer").start;

    // TCP Data Offset.
    for (doff, expect) in [
        (0u8, Malformed(filter_common::Malformed::TcpBadDataOffset)),
        (4, Malformed(filter_common::Malformed::TcpBadDataOffset)),
        (5, Rule(1, XDP_PASS)),
        // 4 bytes of options (the payload read as options): still inside the segment.
        (6, Rule(1, XDP_PASS)),
        (7, Malformed(filter_common::Malformed::TcpBadDataOffset)),
        (15, Malformed(filter_common::Malformed::TcpBadDataOffset)),
    ] {
        for b in [ip4(), ip6()] {
            let p = b.tcp(40000, 80, ack).payload(b"abcd").build();
            let mut f = p.bytes.clone();
            let at = tcp_at(&p);
            f[at + 12] = doff << 4;
            h.check(&format!("tcp data offset {doff}"), &f, expect);
        }
    }
    // A first fragment may leave the options to the next one.
    let p = ip4().fragment(0, true).tcp(40000, 80, ack).payload(b"abcd").build();
    let mut f = p.bytes.clone();
    f[tcp_at(&p) + 12] = 15 << 4;
    h.check("first fragment, options in the next", &f, Rule(1, XDP_PASS));
    f[tcp_at(&p) + 12] = 4 << 4;
    h.check("first fragment, data offset 4", &f, Malformed(filter_common::Malformed::TcpBadDataOffset));

    // IPv4 Total Length.
    let p = ip4().tcp(40000, 80, ack).build();
    let ip = p.layer(LayerKind::Ipv4).unwrap().start;
    let total = |n: u16| {
        let mut f = p.bytes.clone();
        f[ip + 2..ip + 4].copy_from_slice(&n.to_be_bytes());
        f
    };
    let real = (p.bytes.len() - ip) as u16;
    h.check("total length = frame", &total(real), Rule(1, XDP_PASS));
    h.check("total length beyond the frame", &total(real + 1), Malformed(filter_common::Malformed::Ipv4BadLength));
    h.check("total length 65535", &total(u16::MAX), Malformed(filter_common::Malformed::Ipv4BadLength));
    h.check("total length below the header", &total(19), Malformed(filter_common::Malformed::Ipv4BadLength));
    h.check(
        "total length = header: the tcp header is not in the packet",
        &total(20),
        Malformed(filter_common::Malformed::L4Truncated),
    );
    h.check("total length 0 (BIG TCP GRO): the frame ends the packet", &total(0), Rule(1, XDP_PASS));
    let mut padded = p.bytes.clone();
    padded.resize(80, 0xee);
    h.check("ethernet padding after the packet", &padded, Rule(1, XDP_PASS));

    // IPv6 Payload Length.
    let p = ip6().udp(1, 2).build();
    let ip = p.layer(LayerKind::Ipv6).unwrap().start;
    let payload = |n: u16| {
        let mut f = p.bytes.clone();
        f[ip + 4..ip + 6].copy_from_slice(&n.to_be_bytes());
        f
    };
    h.check("payload length = frame", &payload(8), Rule(2, XDP_PASS));
    h.check("payload length beyond the frame", &payload(9), Malformed(filter_common::Malformed::Ipv6BadLength));
    h.check("payload length short of the udp header", &payload(7), Malformed(filter_common::Malformed::L4Truncated));
    h.check("payload length 0 (jumbogram): the frame ends the packet", &payload(0), Rule(2, XDP_PASS));

    // RFC 1858 overlapping fragments: the first fragment, an ACK to 22, passes; the
    // second, 8 bytes in, would rewrite the flags to SYN on reassembly.
    let rewrite = [0, 0, 0, 0, 0x50, syn, 0xfa, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0];
    h.check(
        "first fragment, ACK to 22",
        &bytes(ip4().ident(7).fragment(0, true).tcp(40000, 22, ack).payload(b"abcd")),
        Rule(1, XDP_PASS),
    );
    h.check(
        "tcp fragment at offset 1 rewriting the flags",
        &ip4().ident(7).fragment(1, false).protocol(6).payload(&rewrite).build().bytes,
        Malformed(filter_common::Malformed::FragmentOverlap),
    );
    h.check("the unfragmented SYN it would make is blocked", &bytes(ip4().tcp(40000, 22, syn)), Rule(0, XDP_DROP));
    h.check(
        "tcp fragment at offset 2 lies past the flags",
        &ip4().fragment(2, false).protocol(6).payload(&rewrite).build().bytes,
        Rule(1, XDP_PASS),
    );
    h.check(
        "udp fragment at offset 1",
        &ip4().fragment(1, false).protocol(17).payload(&rewrite).build().bytes,
        Rule(2, XDP_PASS),
    );
    h.check(
        "v6 tcp fragment at offset 1",
        &ip6().fragment(1, false).protocol(6).payload(&rewrite).build().bytes,
        Malformed(filter_common::Malformed::FragmentOverlap),
    );
    h.check(
        "v6 tcp fragment at offset 2",
        &ip6().fragment(2, false).protocol(6).payload(&rewrite).build().bytes,
        Rule(1, XDP_PASS),
    );

    // Tiny first fragments: the first 8 bytes of a TCP header (ports and sequence
    // number), the flags left to the next fragment (RFC 1858), or RFC 3128's second
    // offset-0 fragment that rewrites the port of a first one the rules passed.
    let syn_to_25 = ip4().tcp(40000, 25, syn).build();
    let first8 = &syn_to_25.bytes[tcp_at(&syn_to_25)..][..8];
    let tiny4 = ip4().fragment(0, true).l4_raw(6, first8).build().bytes;
    h.check("tiny first fragment", &tiny4, Malformed(filter_common::Malformed::FragmentTiny));
    let mut tiny4_padded = tiny4.clone();
    tiny4_padded.resize(60, 0x12);
    h.check(
        "tiny first fragment padded to 60 bytes (padding is not packet)",
        &tiny4_padded,
        Malformed(filter_common::Malformed::FragmentTiny),
    );
    h.check(
        "a first fragment holding the whole header",
        &bytes(ip4().fragment(0, true).tcp(40000, 25, ack).payload(b"abcd")),
        Rule(1, XDP_PASS),
    );
    h.check(
        "tiny udp first fragment",
        &ip4().fragment(0, true).l4_raw(17, &[0, 1, 0]).build().bytes,
        Malformed(filter_common::Malformed::FragmentTiny),
    );
    h.check(
        "the same bytes unfragmented are truncated",
        &ip4().l4_raw(17, &[0, 1, 0]).build().bytes,
        Malformed(filter_common::Malformed::L4Truncated),
    );
    h.check(
        "v6 tiny first fragment",
        &ip6().fragment(0, true).l4_raw(6, first8).build().bytes,
        Malformed(filter_common::Malformed::FragmentTiny),
    );
    h.check(
        "v6 first fragment whose chain ends in the next fragment",
        &ip6().fragment(0, true).l4_raw(packet::IPPROTO_DSTOPTS, &[6, 1, 0, 0, 0, 0, 0, 0]).build().bytes,
        Malformed(filter_common::Malformed::FragmentTiny),
    );
    h.check(
        "v6 atomic fragment (offset 0, no M) cut short is truncated",
        &ip6().fragment(0, false).l4_raw(6, first8).build().bytes,
        Malformed(filter_common::Malformed::L4Truncated),
    );
}

#[test]
fn interface_field_uses_the_receiving_interface() {
    let src = "set default pass\nblock in quick on lo proto udp\nblock in quick on wan0 proto tcp\n";
    let udp = bytes(ip4().udp(1, 2));
    let tcp = bytes(ip4().tcp(1, 2, packet::TCP_SYN));
    let mut h = Harness::new(src);
    h.check("udp on lo", &udp, Expect::Rule(0, XDP_DROP));
    h.check("tcp on lo", &tcp, Expect::Default);
    let mut h = Harness::with_lo_named(src, Some("wan0"));
    h.check("udp on wan0", &udp, Expect::Default);
    h.check("tcp on wan0", &tcp, Expect::Rule(1, XDP_DROP));
    let mut h = Harness::with_lo_named(src, None);
    h.check("udp on an interface without an entry", &udp, Expect::Default);
    h.check("tcp on an interface without an entry", &tcp, Expect::Default);
}

/// Connection tracking, packet by packet: both directions arrive through XDP (as on
/// a router, where each direction enters on its own interface).
const STATEFUL: &str = r#"
set default block
set timeout udp.first 1
pass in quick proto tcp to port 80 flags any keep state
pass in quick proto udp to port 53 keep state
pass in quick proto icmp icmp-type echoreq keep state
pass in quick proto icmp6 icmp6-type echoreq keep state
"#;

const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";

fn tcp_pkt(from_client: bool, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let (s, d) = if from_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
    bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).tcp(sport, dport, flags))
}

#[test]
fn tcp_flows_follow_the_handshake() {
    use Expect::*;
    let state = Expect::State;
    let mut h = Harness::new(STATEFUL);
    let (syn, ack, fin, rst, psh) =
        (packet::TCP_SYN, packet::TCP_ACK, packet::TCP_FIN, packet::TCP_RST, packet::TCP_PSH);
    h.check("client SYN opens the flow", &tcp_pkt(true, 40000, 80, syn), Rule(0, XDP_PASS));
    h.check("SYN retransmitted", &tcp_pkt(true, 40000, 80, syn), state);
    h.check("SYN-ACK from the server", &tcp_pkt(false, 80, 40000, syn | ack), state);
    h.check("client ACK: established", &tcp_pkt(true, 40000, 80, ack), state);
    h.check("server data", &tcp_pkt(false, 80, 40000, ack | psh), state);
    h.check("client data", &tcp_pkt(true, 40000, 80, ack | psh), state);
    h.check("a new SYN on an established flow goes to the rules", &tcp_pkt(false, 80, 40000, syn), Default);
    h.check("client FIN", &tcp_pkt(true, 40000, 80, fin | ack), state);
    h.check("server FIN", &tcp_pkt(false, 80, 40000, fin | ack), state);
    h.check("last ACK", &tcp_pkt(true, 40000, 80, ack), state);

    h.check("SYN-ACK nobody asked for", &tcp_pkt(false, 80, 40001, syn | ack), Default);
    h.check("stray ACK from a server", &tcp_pkt(false, 80, 40002, ack), Default);
    h.check(
        "mid-stream ACK to port 80 matches the rule, opens nothing",
        &tcp_pkt(true, 40003, 80, ack),
        Rule(0, XDP_PASS),
    );
    h.check("so the server's answer to it is blocked", &tcp_pkt(false, 80, 40003, ack), Default);

    h.check("second flow SYN", &tcp_pkt(true, 40004, 80, syn), Rule(0, XDP_PASS));
    h.check("ACK before the SYN-ACK is not in the handshake", &tcp_pkt(true, 40004, 80, ack), Rule(0, XDP_PASS));
    h.check("SYN-ACK from the client side is not either", &tcp_pkt(true, 40004, 80, syn | ack), Rule(0, XDP_PASS));
    h.check("server RST closes", &tcp_pkt(false, 80, 40004, rst), state);
    h.check("after RST the server cannot talk", &tcp_pkt(false, 80, 40004, ack), Default);

    // A handshake completes only with the SYN-ACK's sequence number + 1: a blind
    // spoofer who sent the SYN never saw it, and one wrong guess closes the flow.
    let with = |from_client: bool, sport, dport, flags, seq, ack_no| {
        let (s, d) = if from_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).tcp(sport, dport, flags).seq_ack(seq, ack_no))
    };
    h.check("third flow SYN", &with(true, 40005, 80, syn, 100, 0), Rule(0, XDP_PASS));
    h.check("its SYN-ACK", &with(false, 80, 40005, syn | ack, 7_000_000, 101), state);
    // (This ruleset passes any client segment to port 80 by rule, without state.)
    let guess = with(true, 40005, 80, ack, 101, 12345);
    h.check("an ACK with a guessed number is not the handshake", &guess, Rule(0, XDP_PASS));
    h.check("nor is the right one after that guess", &with(true, 40005, 80, ack, 101, 7_000_001), Rule(0, XDP_PASS));
    h.check("the guess closed the flow", &with(false, 80, 40005, ack | psh, 7_000_001, 101), Default);
    h.check("fourth flow SYN", &with(true, 40006, 80, syn, 100, 0), Rule(0, XDP_PASS));
    h.check("its SYN-ACK", &with(false, 80, 40006, syn | ack, u32::MAX, 101), state);
    h.check("the number wraps: ACK 0 completes it", &with(true, 40006, 80, ack, 101, 0), state);
    h.check("established", &with(false, 80, 40006, ack | psh, 0, 101), state);
}

#[test]
fn udp_and_icmp_echo_pseudo_state() {
    use Expect::*;
    let mut h = Harness::new(STATEFUL);
    let udp = |from_client: bool, sport, dport| {
        let (s, d) = if from_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).udp(sport, dport))
    };
    h.check("dns query", &udp(true, 5000, 53), Rule(1, XDP_PASS));
    h.check("dns answer", &udp(false, 53, 5000), Expect::State);
    h.check("answer to another port", &udp(false, 53, 5001), Default);
    h.check("answer from another port", &udp(false, 54, 5000), Default);
    h.check("second query on the flow", &udp(true, 5000, 53), Expect::State);

    let echo = |from_client: bool, typ: u8, id: u16| {
        let (s, d) = if from_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).icmp(typ, 0).icmp_rest([(id >> 8) as u8, id as u8, 0, 1]))
    };
    h.check("echo request", &echo(true, 8, 77), Rule(2, XDP_PASS));
    h.check("echo reply", &echo(false, 0, 77), Expect::State);
    h.check("reply with another id", &echo(false, 0, 78), Default);
    h.check("a request from the server is not a reply", &echo(false, 8, 77), Rule(2, XDP_PASS));

    let echo6 = |from_client: bool, typ: u8| {
        let (s, d) = if from_client { (SRC6, DST6) } else { (DST6, SRC6) };
        bytes(PacketBuilder::eth().ipv6(v6(s), v6(d)).icmp6(typ, 0).icmp_rest([0, 9, 0, 1]))
    };
    h.check("echo6 request", &echo6(true, 128), Rule(3, XDP_PASS));
    h.check("echo6 reply", &echo6(false, 129), Expect::State);

    // `set timeout udp.first 1`: an answer after the timeout finds no flow.
    h.check("late query", &udp(true, 6000, 53), Rule(1, XDP_PASS));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    h.check("answer after udp.first", &udp(false, 53, 6000), Default);
}

#[test]
fn a_full_flow_table_evicts_the_least_recently_used() {
    let mut h = Harness::new("set default block\nset limit states 64\npass in quick proto udp to port 53 keep state\n");
    let query = |sport: u16| bytes(PacketBuilder::eth().ipv4(v4(CLIENT), v4(SERVER)).udp(sport, 53));
    let answer = |dport: u16| bytes(PacketBuilder::eth().ipv4(v4(SERVER), v4(CLIENT)).udp(53, dport));
    for sport in 10000..10300 {
        h.check("query", &query(sport), Expect::Rule(0, XDP_PASS));
    }
    // Unanswered, they all go to the table of unanswered flows (64 / 2 entries).
    let (answered, unanswered) = h.flow_counts();
    assert_eq!(answered, 0);
    assert!(unanswered <= 32, "the table holds at most its limit: {unanswered}");
    h.check("the newest flow is tracked", &answer(10299), Expect::State);
    h.check("the oldest flow was evicted", &answer(10000), Expect::Default);
}

/// A flow lives in the table of unanswered flows until the other side answers (TCP:
/// the handshake completes; UDP: the responder replies), then in the answered table;
/// an RST moves it back. ICMP echo flows are never answered ones.
#[test]
fn answered_flows_move_to_their_own_table() {
    use Expect::*;
    let mut h = Harness::new(STATEFUL);
    let (syn, ack, fin, rst) = (packet::TCP_SYN, packet::TCP_ACK, packet::TCP_FIN, packet::TCP_RST);
    h.check("SYN", &tcp_pkt(true, 40000, 80, syn), Rule(0, XDP_PASS));
    assert_eq!(h.flow_counts(), (0, 1), "after the SYN");
    h.check("SYN-ACK", &tcp_pkt(false, 80, 40000, syn | ack), State);
    assert_eq!(h.flow_counts(), (0, 1), "a SYN-ACK alone does not make the flow answered");
    h.check("ACK", &tcp_pkt(true, 40000, 80, ack), State);
    assert_eq!(h.flow_counts(), (1, 0), "the handshake completed");
    h.check("data, from the answered table", &tcp_pkt(false, 80, 40000, ack), State);
    h.check("FIN", &tcp_pkt(true, 40000, 80, fin | ack), State);
    assert_eq!(h.flow_counts(), (1, 0), "closing flows stay answered");
    h.check("RST", &tcp_pkt(false, 80, 40000, rst), State);
    assert_eq!(h.flow_counts(), (0, 1), "reset flows are unanswered again");
    h.check("after RST, the rules", &tcp_pkt(false, 80, 40000, ack), Default);
    // A reconnect on the same ports replaces an answered flow.
    h.check("SYN 2", &tcp_pkt(true, 40001, 80, syn), Rule(0, XDP_PASS));
    h.check("SYN-ACK 2", &tcp_pkt(false, 80, 40001, syn | ack), State);
    h.check("ACK 2", &tcp_pkt(true, 40001, 80, ack), State);
    assert_eq!(h.flow_counts(), (1, 1));
    h.check("a new SYN on the established flow goes to the rules", &tcp_pkt(true, 40001, 80, syn), Rule(0, XDP_PASS));
    assert_eq!(h.flow_counts(), (0, 2), "the reopened flow starts over, unanswered");
    h.check("its SYN-ACK is found in the unanswered table", &tcp_pkt(false, 80, 40001, syn | ack), State);

    let udp = |from_client: bool| {
        let (s, d, sp, dp) = if from_client { (CLIENT, SERVER, 5000, 53) } else { (SERVER, CLIENT, 53, 5000) };
        bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).udp(sp, dp))
    };
    h.check("query", &udp(true), Rule(1, XDP_PASS));
    assert_eq!(h.flow_counts(), (0, 3));
    h.check("answer", &udp(false), State);
    assert_eq!(h.flow_counts(), (1, 2), "the UDP flow was answered");
    h.check("next query, from the answered table", &udp(true), State);

    let echo = |from_client: bool, typ: u8| {
        let (s, d) = if from_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).icmp(typ, 0).icmp_rest([0, 77, 0, 1]))
    };
    h.check("echo request", &echo(true, 8), Rule(2, XDP_PASS));
    h.check("echo reply", &echo(false, 0), State);
    assert_eq!(h.flow_counts(), (1, 3), "echo flows stay unanswered");
}

/// Issue 11's flood: with `set limit states 1000`, 1600 spoofed sources send 3 packets
/// each (a SYN to the SSH port, a UDP datagram to the DNS port, the SYN again), none
/// ever answered. An established inbound TCP connection and the host's own UDP flow
/// (opened by TC egress, answered) keep working through it and after it.
#[test]
fn a_spoofed_flood_cannot_evict_answered_flows() {
    use Expect::*;
    let mut h = Harness::new(
        "set default block
         set limit states 1000
         pass in  quick proto tcp to port 22 flags any keep state
         pass in  quick proto udp to port 53 keep state
         pass out quick proto udp keep state
",
    );
    let host = "198.51.100.20";
    let (syn, ack, psh) = (packet::TCP_SYN, packet::TCP_ACK, packet::TCP_PSH);
    let tcp = |from_client: bool, flags: u8| {
        let (s, d, sp, dp) = if from_client { (CLIENT, host, 50022, 22) } else { (host, CLIENT, 22, 50022) };
        bytes(PacketBuilder::eth().ipv4(v4(s), v4(d)).tcp(sp, dp, flags))
    };
    // The host's own query to a resolver, and the resolver's answer.
    let resolver = "203.0.113.53";
    let query = bytes(PacketBuilder::eth().ipv4(v4(host), v4(resolver)).udp(41000, 53));
    let reply = bytes(PacketBuilder::eth().ipv4(v4(resolver), v4(host)).udp(53, 41000));

    h.check("client SYN", &tcp(true, syn), Rule(0, XDP_PASS));
    h.check_egress_state("host SYN-ACK", &tcp(false, syn | ack));
    h.check("client ACK", &tcp(true, ack), State);
    let before = h.counters()[slot::STATE as usize].packets;
    assert_eq!(h.bed.program.test_run_egress(&query).expect("egress test run"), 0, "the host's query passes");
    assert_eq!(h.counters()[slot::STATE as usize].packets, before, "the query opened its flow by rule");
    h.check("resolver reply", &reply, State);
    assert_eq!(h.flow_counts(), (2, 0), "both flows answered");

    let mut first_spoofed = None;
    let mut last_spoofed = Vec::new();
    for i in 0..1600u32 {
        let src = Ipv4Addr::from(0x0a00_0000 | (i * 7919) & 0x00ff_ffff);
        let spoofed = |b: PacketBuilder| bytes(b);
        let syn_pkt = spoofed(PacketBuilder::eth().ipv4(src, v4(host)).tcp(1024 + i as u16, 22, syn));
        let udp_pkt = spoofed(PacketBuilder::eth().ipv4(src, v4(host)).udp(1024 + i as u16, 53));
        let first = h.bed.program.test_run(&syn_pkt, Some(LO)).expect("test run");
        let second = h.bed.program.test_run(&udp_pkt, Some(LO)).expect("test run");
        let third = h.bed.program.test_run(&syn_pkt, Some(LO)).expect("test run");
        assert_eq!(
            (first, second, third),
            (XDP_PASS, XDP_PASS, XDP_PASS),
            "spoofed packets of source {i} pass by rule or state"
        );
        if i == 1000 {
            // Mid-flood, 2000 unanswered flows later (twice the limit), the answered
            // flows still pass both ways. (Checked rarely: every check refreshes them.)
            h.check(&format!("client data during the flood ({i})"), &tcp(true, ack | psh), State);
            h.check_egress_state(&format!("host data during the flood ({i})"), &tcp(false, ack | psh));
            h.check(&format!("resolver reply during the flood ({i})"), &reply, State);
        }
        if i == 0 {
            first_spoofed = Some(udp_pkt.clone());
        }
        if i >= 1590 {
            last_spoofed.push(udp_pkt);
        }
    }
    let (answered, unanswered) = h.flow_counts();
    assert_eq!(answered, 2, "the flood's flows never reach the answered table");
    // (How many remain varies: the kernel's LRU evicts in batches, per CPU.)
    assert!(unanswered <= 500, "unanswered flows stay within their table: {unanswered}");
    h.check("client data after the flood", &tcp(true, ack | psh), State);
    h.check_egress_state("host data after the flood", &tcp(false, ack | psh));
    h.check_egress_state("the host's next query", &query);
    h.check("resolver reply after the flood", &reply, State);
    // The flood evicted its own oldest flows, and keeps its newest.
    let newest = last_spoofed.last().expect("flood packets");
    h.check("the flood's newest flow passes by state", newest, State);
    let oldest = first_spoofed.expect("flood packets");
    h.check("the flood's oldest flow was evicted: back to its rule", &oldest, Rule(1, XDP_PASS));
}

/// Every structure of the address lookups (IPv4 direct array with groups and flagged
/// /24s, hashed longer IPv4 prefixes, hashed IPv6 lengths, the IPv6 trie) against the
/// reference model: a rule per prefix length from 32 to 1 and from 128 to 1 on a
/// nested chain, longest first, so that the deciding rule names the longest matching
/// length; /0 in a rule; hosts and /24s inside the chain's prefixes, some listed twice,
/// both families in one table; negation; source and destination. Probes sit on every
/// prefix's edges and just past them.
#[test]
fn address_lookups_agree_with_the_model_at_every_prefix_length() {
    use std::fmt::Write as _;

    let mut rng = fastrand::Rng::with_seed(0x5eed_cafe_f00d_0001);
    let base4: u32 = 0xcb00_714d; // 203.0.113.77
    let base6: u128 = 0x2001_0db8_aaaa_0000_0000_0000_0000_0077;
    let net4 = |a: u32, len: u32| if len == 0 { 0 } else { a & (u32::MAX << (32 - len)) };
    let net6 = |a: u128, len: u32| if len == 0 { 0 } else { a & (u128::MAX << (128 - len)) };
    let (mut chain, mut hosts) = (Vec::new(), Vec::new());
    let mut probes4: Vec<u32> = vec![0, u32::MAX, base4];
    let mut probes6: Vec<u128> = vec![0, u128::MAX, base6];
    for len in (1..=32u32).rev() {
        let n = net4(base4, len);
        let last = if len == 32 { n } else { n | (u32::MAX >> len) };
        chain.push(format!("{}/{len}", Ipv4Addr::from(n)));
        probes4.extend([n, last, n.wrapping_sub(1), last.wrapping_add(1)]);
    }
    for len in (1..=128u32).rev() {
        let n = net6(base6, len);
        let last = if len == 128 { n } else { n | (u128::MAX >> len) };
        chain.push(format!("{}/{len}", Ipv6Addr::from(n)));
        probes6.extend([n, last, n.wrapping_sub(1), last.wrapping_add(1)]);
    }
    // Enough hosts and prefixes at some lengths for them to be hashed (IPv6 needs 64
    // per length), inside the chains' prefixes; some listed twice.
    for i in 0..300u32 {
        let h = (base4 & 0xffff_0000) | (rng.u64(..) as u32 & 0xffff);
        hosts.push(format!("{}", Ipv4Addr::from(h)));
        probes4.extend([h, h.wrapping_add(1)]);
        if i % 10 == 0 {
            hosts.push(format!("{}", Ipv4Addr::from(h)));
        }
    }
    for _ in 0..80 {
        let n = net4((base4 & 0xfff0_0000) | (rng.u64(..) as u32 & 0x000f_ff00), 24);
        hosts.push(format!("{}/24", Ipv4Addr::from(n)));
        probes4.extend([n, n | 0xff, n.wrapping_sub(1)]);
    }
    for (len, count) in [(128u32, 100), (64, 80), (48, 70)] {
        for _ in 0..count {
            let a = net6(base6 ^ ((u128::from(rng.u64(..)) << 64 | u128::from(rng.u64(..))) >> (len - 24)), len);
            hosts.push(format!("{}/{len}", Ipv6Addr::from(a)));
            probes6.extend([a, a.wrapping_add(1), a.wrapping_sub(1)]);
        }
    }
    for _ in 0..200 {
        probes4.push((base4 & 0xff00_0000) | (rng.u64(..) as u32 & 0x00ff_ffff));
        probes6.push(base6 ^ (u128::from(rng.u64(..)) >> (rng.u64(..) % 64)));
    }

    let mut src = String::from("set default block\n");
    let _ = writeln!(src, "table <hosts> {{ {} }}", hosts.join(", "));
    src.push_str("block in quick proto udp from <hosts> to port 1\n");
    for (i, net) in chain.iter().enumerate() {
        let action = if i % 2 == 0 { "pass " } else { "block" };
        let _ = writeln!(src, "{action} in quick proto udp from {net} to port 1 no state");
    }
    src.push_str(
        "pass  in quick proto udp from !<hosts> to <hosts> port 2 no state\n\
         block in quick proto udp to !<hosts> port 2\n\
         pass  in quick proto udp from 0.0.0.0/0 to port 3 no state\n\
         block in quick proto udp from ::/0 to port 3\n",
    );
    let rs = rules::parse_str(&src, "addresses.conf", std::path::Path::new(".")).expect("ruleset parses");
    let compiled = compile::compile(&rs).expect("ruleset compiles");
    assert!(compiled.src.v6_hashed_lengths().count() >= 3, "IPv6 /128, /64 and /48 are hashed");
    assert!(compiled.src.dir4.len() > filter_common::dir::TOP_ENTRIES as usize, "IPv4 groups exist");
    let mut bed = Bed::load(&compiled, None, true, "kt-addr").expect("program loads and verifies");

    let other4 = Ipv4Addr::new(192, 0, 2, 1);
    let other6: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
    for &a in &probes4 {
        let a = Ipv4Addr::from(a);
        for port in 1..=3 {
            frames.push((format!("{a} -> port {port}"), bytes(PacketBuilder::eth().ipv4(a, other4).udp(9, port))));
        }
        frames.push((format!("{other4} -> {a}"), bytes(PacketBuilder::eth().ipv4(other4, a).udp(9, 2))));
    }
    for &a in &probes6 {
        let a = Ipv6Addr::from(a);
        for port in 1..=3 {
            frames.push((format!("{a} -> port {port}"), bytes(PacketBuilder::eth().ipv6(a, other6).udp(9, port))));
        }
        frames.push((format!("{other6} -> {a}"), bytes(PacketBuilder::eth().ipv6(other6, a).udp(9, 2))));
    }
    let mut decided_by = vec![0usize; rs.rules.len() + 1];
    for (name, frame) in &frames {
        let want = filter_user::model::decide(&rs, frame, None);
        let (want_slot, want_action) = match want {
            filter_user::model::ModelDecision::Rule(i) => {
                decided_by[i] += 1;
                let pass = rs.rules[i].action == rules::Action::Pass;
                (slot::RESERVED + i as u32, if pass { XDP_PASS } else { XDP_DROP })
            }
            filter_user::model::ModelDecision::Default => {
                decided_by[rs.rules.len()] += 1;
                (slot::DEFAULT_BLOCK, XDP_DROP)
            }
            other => panic!("{name}: the model says {other:?}"),
        };
        let got = bed.program.test_run_traced(frame, Some(LO)).expect("test run");
        assert_eq!((got.slot, got.action), (want_slot, want_action), "{name}: (counter slot, action)");
    }
    // Every rule and the default decided some probe: the test reaches every class.
    assert!(decided_by.iter().all(|&n| n > 0), "decisions per rule (last: default): {decided_by:?}");
}

/// Per-packet cost of the state paths, for the record (run with `--ignored
/// --nocapture`; it asserts the path each packet took, never a time): an established
/// TCP flow's packets both ways (the fast path), a packet of no flow that goes through
/// the rules (the lookups it misses), and opening new flows (a UDP query per fresh
/// source port, each its own run, median).
#[test]
#[ignore = "measurement: prints per-packet costs"]
fn flow_path_costs() {
    use Expect::*;
    let mut h = Harness::new(STATEFUL);
    let (syn, ack, psh) = (packet::TCP_SYN, packet::TCP_ACK, packet::TCP_PSH);
    h.check("SYN", &tcp_pkt(true, 40000, 80, syn), Rule(0, XDP_PASS));
    h.check("SYN-ACK", &tcp_pkt(false, 80, 40000, syn | ack), State);
    h.check("ACK", &tcp_pkt(true, 40000, 80, ack), State);
    let repeat = 200_000;
    let mut cost = |name: &str, frame: &[u8], want: Expect| {
        h.check(name, frame, want);
        let mut runs: Vec<u128> = (0..5)
            .map(|_| h.bed.program.test_run_repeat(frame, Some(LO), repeat).expect("test run").1.as_nanos())
            .collect();
        runs.sort_unstable();
        println!("{name}: {} ns/packet (median of 5 x {repeat} runs)", runs[2]);
    };
    cost("established, client data", &tcp_pkt(true, 40000, 80, ack | psh), State);
    cost("established, server data", &tcp_pkt(false, 80, 40000, ack | psh), State);
    cost("no flow, through the rules", &tcp_pkt(false, 80, 40009, ack), Default);
    let query = |sport: u16| bytes(PacketBuilder::eth().ipv4(v4(CLIENT), v4(SERVER)).udp(sport, 53));
    let mut opens: Vec<u128> = (20000..40000u16)
        .map(|sport| {
            let (action, took) = h.bed.program.test_run_repeat(&query(sport), Some(LO), 1).expect("test run");
            assert_eq!(action, XDP_PASS);
            took.as_nanos()
        })
        .collect();
    opens.sort_unstable();
    println!(
        "new flow (UDP query, opens a flow): {} ns/packet (median of {} runs)",
        opens[opens.len() / 2],
        opens.len()
    );
    h.check(
        "the last query opened its flow",
        &bytes(PacketBuilder::eth().ipv4(v4(SERVER), v4(CLIENT)).udp(53, 39999)),
        State,
    );
}
