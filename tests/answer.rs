//! `block return`: blocked packets answered from the data plane (XDP_TX). Real frames
//! through the real program (BPF_PROG_TEST_RUN), the answer parsed field by field with
//! its checksums recomputed here, and real sockets over a veth pair that see the
//! answers as ECONNREFUSED.

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use filter_common::{answer, slot};
use filter_user::{compile, rules};
use xdpwall_tests::{
    TempDir,
    bpf::{self, LO},
    cli::Xdpwall,
    netns::{Netns, VethPair},
    packet::{self, PacketBuilder, checksum},
};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;

const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 10);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

/// A ruleset's program loaded on the shared test bed (test runs arrive on `lo`).
struct Loaded(bpf::Bed);

impl Loaded {
    fn new(src: &str) -> Loaded {
        let rs = rules::parse_str(src, "answer-test.conf", std::path::Path::new(".")).expect("ruleset parses");
        let compiled = compile::compile(&rs).expect("ruleset compiles");
        Loaded(bpf::Bed::load(&compiled, Some("lo"), false, "answer").expect("program loads and verifies"))
    }

    fn counter(&self, s: u32) -> u64 {
        self.0.counters(s + 1).expect("counters readable")[s as usize].packets
    }

    fn test_run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.0.program.test_run_frame(frame, LO).expect("test run")
    }

    /// Runs `frame` received on `lo`: the action and the frame as the program left it;
    /// checks that the answer counters moved as the action says.
    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let sent = self.counter(slot::ANSWERS_SENT);
        let (action, out) = self.test_run(frame);
        let sent_now = self.counter(slot::ANSWERS_SENT);
        assert_eq!(sent_now - sent, u64::from(action == XDP_TX), "answers-sent counts every XDP_TX");
        (action, out)
    }

    /// Runs `frame` and expects it dropped without an answer.
    fn expect_drop(&mut self, name: &str, frame: &[u8]) {
        let (action, _) = self.run(frame);
        assert_eq!(action, XDP_DROP, "{name}: dropped without an answer");
    }
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Checks the answer's link header against the blocked frame's: MACs swapped, the
/// tags kept; returns the offset of the answer's IP header.
fn check_link(answer: &[u8], blocked: &[u8], l3: usize) -> usize {
    assert_eq!(answer[..6], blocked[6..12], "destination MAC is the sender's");
    assert_eq!(answer[6..12], blocked[..6], "source MAC is the one the packet was sent to");
    assert_eq!(answer[12..l3], blocked[12..l3], "VLAN tags and EtherType kept");
    l3
}

/// Checks an IPv4 header at `ip`: version, length, protocol, TTL, addresses and checksum.
fn check_ipv4(a: &[u8], ip: usize, proto: u8, src: Ipv4Addr, dst: Ipv4Addr) {
    let h = &a[ip..ip + 20];
    assert_eq!(h[0], 0x45, "IPv4 without options");
    assert_eq!(be16(h, 2) as usize, a.len() - ip, "IPv4 total length is the frame's rest");
    assert_eq!(be16(h, 6) & 0x3fff, 0, "not a fragment");
    assert_eq!(h[8], answer::TTL, "TTL");
    assert_eq!(h[9], proto, "protocol");
    assert_eq!(Ipv4Addr::from(be32(h, 12)), src, "source is the blocked packet's destination");
    assert_eq!(Ipv4Addr::from(be32(h, 16)), dst, "destination is the blocked packet's source");
    assert_eq!(checksum(&[h]), 0, "IPv4 header checksum");
}

/// Checks an IPv6 header at `ip`; returns the pseudo-header for the upper-layer checksum.
fn check_ipv6(a: &[u8], ip: usize, next: u8, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let h = &a[ip..ip + 40];
    assert_eq!(h[0] >> 4, 6, "IPv6");
    assert_eq!(be16(h, 4) as usize, a.len() - ip - 40, "payload length is the frame's rest");
    assert_eq!(h[6], next, "next header (no extension headers)");
    assert_eq!(h[7], answer::TTL, "hop limit");
    assert_eq!(Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).unwrap()), src, "source");
    assert_eq!(Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).unwrap()), dst, "destination");
    let mut pseudo = h[8..40].to_vec();
    pseudo.extend_from_slice(&((a.len() - ip - 40) as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, next]);
    pseudo
}

fn v4_pseudo(a: &[u8], ip: usize, proto: u8) -> Vec<u8> {
    let mut pseudo = a[ip + 12..ip + 20].to_vec();
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&((a.len() - ip - 20) as u16).to_be_bytes());
    pseudo
}

/// Checks a TCP RST at `t` (20 bytes, no options) and its checksum.
fn check_rst(a: &[u8], t: usize, pseudo: &[u8], ports: (u16, u16), seq: u32, ack: Option<u32>) {
    let h = &a[t..];
    assert_eq!(h.len(), 20, "an RST without options or data");
    assert_eq!((be16(h, 0), be16(h, 2)), ports, "ports swapped");
    assert_eq!(be32(h, 4), seq, "sequence number");
    assert_eq!(h[12], 5 << 4, "data offset 5");
    match ack {
        Some(ack) => {
            assert_eq!(h[13], packet::TCP_RST | packet::TCP_ACK, "RST, ACK");
            assert_eq!(be32(h, 8), ack, "acknowledgement number");
        }
        None => {
            assert_eq!(h[13], packet::TCP_RST, "RST alone");
            assert_eq!(be32(h, 8), 0, "no acknowledgement number");
        }
    }
    assert_eq!(checksum(&[pseudo, h]), 0, "TCP checksum");
}

#[test]
fn rst_to_a_syn_over_ipv4_keeps_the_vlan_tag() {
    let mut fw = Loaded::new("block return in quick proto tcp to port 81\n");
    let blocked = PacketBuilder::eth()
        .vlan(100)
        .ipv4(CLIENT4, SERVER4)
        .ip_options(&[1, 1, 1, 1])
        .tcp(40000, 81, packet::TCP_SYN)
        .seq_ack(1000, 0)
        .build();
    let (action, a) = fw.run(&blocked.bytes);
    assert_eq!(action, XDP_TX, "answered");
    assert_eq!(a.len(), 18 + 40, "Ethernet + tag + IPv4 + TCP");
    let ip = check_link(&a, &blocked.bytes, 18);
    check_ipv4(&a, ip, packet::IPPROTO_TCP, SERVER4, CLIENT4);
    // RFC 9293: to a segment without ACK, SEQ=0 ACK=SEG.SEQ+SEG.LEN (the SYN counts 1).
    check_rst(&a, ip + 20, &v4_pseudo(&a, ip, packet::IPPROTO_TCP), (81, 40000), 0, Some(1001));
}

#[test]
fn rst_to_an_ack_over_ipv6_with_an_extension_header() {
    let mut fw = Loaded::new("block return-rst in quick inet6 proto tcp\n");
    let blocked = PacketBuilder::eth()
        .ipv6(CLIENT6, SERVER6)
        .hop_by_hop()
        .tcp(40001, 443, packet::TCP_ACK | packet::TCP_PSH)
        .seq_ack(5000, 7000)
        .payload(b"hello")
        .build();
    let (action, a) = fw.run(&blocked.bytes);
    assert_eq!(action, XDP_TX, "answered");
    assert_eq!(a.len(), 14 + 60, "Ethernet + IPv6 + TCP");
    let ip = check_link(&a, &blocked.bytes, 14);
    let pseudo = check_ipv6(&a, ip, packet::IPPROTO_TCP, SERVER6, CLIENT6);
    // RFC 9293: to a segment with ACK, SEQ=SEG.ACK and RST alone.
    check_rst(&a, ip + 40, &pseudo, (443, 40001), 7000, None);

    // Without ACK, with data and FIN: ACK = SEQ + 5 bytes + FIN.
    let blocked = PacketBuilder::eth()
        .ipv6(CLIENT6, SERVER6)
        .tcp(40001, 443, packet::TCP_FIN)
        .seq_ack(u32::MAX - 2, 0)
        .payload(b"hello")
        .build();
    let (action, a) = fw.run(&blocked.bytes);
    assert_eq!(action, XDP_TX, "answered");
    let pseudo = check_ipv6(&a, 14, packet::IPPROTO_TCP, SERVER6, CLIENT6);
    check_rst(&a, 54, &pseudo, (443, 40001), 0, Some(3));
}

#[test]
fn icmp_port_unreachable_quotes_the_ip_header_and_8_bytes() {
    let mut fw = Loaded::new("block return in quick proto udp to port 53\n");
    let blocked = PacketBuilder::eth()
        .ipv4(CLIENT4, SERVER4)
        .ip_options(&[1, 1, 1, 1])
        .udp(5000, 53)
        .payload(&[0xab; 100])
        .build();
    let (action, a) = fw.run(&blocked.bytes);
    assert_eq!(action, XDP_TX, "answered");
    let ip = check_link(&a, &blocked.bytes, 14);
    check_ipv4(&a, ip, packet::IPPROTO_ICMP, SERVER4, CLIENT4);
    let icmp = &a[ip + 20..];
    assert_eq!((icmp[0], icmp[1]), (3, 3), "destination unreachable, port unreachable");
    assert_eq!(be32(icmp, 4), 0, "unused");
    let quoted = &blocked.bytes[14..14 + 24 + 8];
    assert_eq!(&icmp[8..], quoted, "quotes the IP header (with options) and the UDP header");
    assert_eq!(checksum(&[icmp]), 0, "ICMP checksum");
}

#[test]
fn icmp6_port_unreachable_quotes_up_to_the_minimum_mtu() {
    let mut fw = Loaded::new("block return in quick proto udp\n");
    for payload in [10usize, 1400] {
        let blocked =
            PacketBuilder::eth().vlan(7).ipv6(CLIENT6, SERVER6).udp(5000, 53).payload(&vec![0x5a; payload]).build();
        let (action, a) = fw.run(&blocked.bytes);
        assert_eq!(action, XDP_TX, "{payload}: answered");
        let ip = check_link(&a, &blocked.bytes, 18);
        let pseudo = check_ipv6(&a, ip, packet::IPPROTO_ICMPV6, SERVER6, CLIENT6);
        let icmp = &a[ip + 40..];
        assert_eq!((icmp[0], icmp[1]), (1, 4), "{payload}: destination unreachable, port unreachable");
        let original = &blocked.bytes[18..];
        let quote = original.len().min(answer::ICMP6_QUOTE_MAX);
        assert_eq!(&icmp[8..], &original[..quote], "{payload}: quotes the packet, at most 1232 bytes");
        assert!(a.len() - ip <= 1280, "{payload}: the answer fits in the IPv6 minimum MTU");
        assert_eq!(checksum(&[&pseudo, icmp]), 0, "{payload}: ICMPv6 checksum");
    }
}

#[test]
fn return_icmp_codes_and_block_policy() {
    let rules = "set block-policy return\n\
                 block return-icmp(filter-prohib, admin-unr) in quick proto tcp to port 80\n\
                 block return-icmp6(addr-unr) in quick proto tcp to port 81\n\
                 block return-rst in quick proto udp to port 82\n\
                 block drop in quick proto udp to port 83\n\
                 block in quick proto udp to port 84\n";
    let mut fw = Loaded::new(rules);
    let icmp_code = |a: &[u8], v4: bool| if v4 { (a[14 + 20], a[14 + 21]) } else { (a[14 + 40], a[14 + 41]) };

    let tcp4 = |port| PacketBuilder::eth().ipv4(CLIENT4, SERVER4).tcp(1000, port, packet::TCP_SYN).build().bytes;
    let tcp6 = |port| PacketBuilder::eth().ipv6(CLIENT6, SERVER6).tcp(1000, port, packet::TCP_SYN).build().bytes;
    let udp4 = |port| PacketBuilder::eth().ipv4(CLIENT4, SERVER4).udp(1000, port).build().bytes;

    // return-icmp answers TCP with ICMP, with the codes given (13, 1) or pf's defaults.
    for (frame, v4, want) in
        [(tcp4(80), true, (3, 13)), (tcp6(80), false, (1, 1)), (tcp4(81), true, (3, 3)), (tcp6(81), false, (1, 3))]
    {
        let (action, a) = fw.run(&frame);
        assert_eq!((action, icmp_code(&a, v4)), (XDP_TX, want), "return-icmp to TCP");
    }
    // An RST is never answered, not even with an ICMP error.
    let rst = PacketBuilder::eth().ipv4(CLIENT4, SERVER4).tcp(1000, 80, packet::TCP_RST).build().bytes;
    fw.expect_drop("return-icmp to an RST", &rst);
    // return-rst leaves UDP unanswered; drop never answers; plain block follows the policy.
    fw.expect_drop("return-rst to UDP", &udp4(82));
    fw.expect_drop("block drop", &udp4(83));
    let (action, a) = fw.run(&udp4(84));
    assert_eq!((action, icmp_code(&a, true)), (XDP_TX, (3, 3)), "set block-policy return");
}

#[test]
fn never_answers_what_must_not_be_answered() {
    let mut fw = Loaded::new("block return in quick\n");
    let v4 = |src: Ipv4Addr, dst: Ipv4Addr| PacketBuilder::eth().ipv4(src, dst);
    let v6 = |src: Ipv6Addr, dst: Ipv6Addr| PacketBuilder::eth().ipv6(src, dst);
    let udp4 = v4(CLIENT4, SERVER4).udp(1, 2);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an RST", v4(CLIENT4, SERVER4).tcp(1, 2, packet::TCP_RST | packet::TCP_ACK).build().bytes),
        ("an ICMP error", v4(CLIENT4, SERVER4).icmp(3, 3).payload(&[0; 28]).build().bytes),
        ("an ICMP echo", v4(CLIENT4, SERVER4).icmp_echo(1, 1).build().bytes),
        ("an ICMPv6 error", v6(CLIENT6, SERVER6).icmp6(1, 4).payload(&[0; 48]).build().bytes),
        ("a later fragment", v4(CLIENT4, SERVER4).fragment(8, false).udp(1, 2).build().bytes),
        ("to Ethernet broadcast", udp4.clone().dst_mac([0xff; 6]).build().bytes),
        ("from an Ethernet multicast", udp4.clone().src_mac([1, 0, 0x5e, 0, 0, 1]).build().bytes),
        ("from 0.0.0.0", v4(Ipv4Addr::UNSPECIFIED, SERVER4).udp(1, 2).build().bytes),
        ("from loopback", v4(Ipv4Addr::LOCALHOST, SERVER4).udp(1, 2).build().bytes),
        ("from a multicast source", v4(Ipv4Addr::new(224, 0, 0, 1), SERVER4).udp(1, 2).build().bytes),
        ("to a multicast group", v4(CLIENT4, Ipv4Addr::new(239, 1, 1, 1)).udp(1, 2).build().bytes),
        ("to the limited broadcast", v4(CLIENT4, Ipv4Addr::BROADCAST).udp(1, 2).build().bytes),
        ("from ::", v6(Ipv6Addr::UNSPECIFIED, SERVER6).udp(1, 2).build().bytes),
        ("to ff02::1", v6(CLIENT6, "ff02::1".parse().unwrap()).udp(1, 2).build().bytes),
        ("an IPv4 packet too short to quote", v4(CLIENT4, SERVER4).l4_raw(253, &[1, 2]).build().bytes),
    ];
    for (name, frame) in &cases {
        fw.expect_drop(name, frame);
    }
    // The same rule answers an ordinary packet (the cases above are refused for what
    // they are, not because the rule never answers).
    let (action, _) = fw.run(&udp4.build().bytes);
    assert_eq!(action, XDP_TX, "an ordinary UDP packet is answered");
}

#[test]
fn a_flood_is_answered_at_the_rate_limit_only() {
    let mut fw = Loaded::new("block return in quick proto udp\n");
    let frame = PacketBuilder::eth().ipv4(CLIENT4, SERVER4).udp(1, 2).build().bytes;
    let runs = 2000u64;
    let start = Instant::now();
    for _ in 0..runs {
        fw.test_run(&frame);
    }
    let (sent, suppressed) = (fw.counter(slot::ANSWERS_SENT), fw.counter(slot::ANSWERS_SUPPRESSED));
    assert_eq!(sent + suppressed, runs, "every blocked packet is answered or counted as suppressed");
    // The burst, plus what the rate refilled while the runs took place, on each CPU the
    // runs happened on.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let refilled = (start.elapsed().as_secs_f64() * answer::RATE_PER_CPU as f64).ceil() as u64 + 1;
    assert!(sent >= answer::BURST.min(runs), "at least a burst is answered: {sent}");
    assert!(sent <= cpus * (answer::BURST + refilled), "{sent} answers to {runs} packets");
}

/// xdp-tools' pass-everything program, which the peer of a native-mode veth runs so
/// that it takes XDP_TX'd frames (setup installs xdp-tools).
const PEER_XDP: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o";

/// A veth pair with the filter on the host end. In native mode a veth hands XDP_TX'd
/// frames to its peer's XDP ring, which only a peer running an XDP program empties (on
/// Linux 6.18 GRO on the peer was not enough: the frames were queued and never came
/// out), so the peer runs one; generic XDP transmits answers like any packet.
struct Bed {
    ns: Netns,
    veth: VethPair,
    fw: Xdpwall,
    _dir: TempDir,
}

impl Bed {
    fn new(rules: &str, mode: &str) -> Bed {
        let ns = Netns::new("ans").expect("netns");
        let veth = VethPair::new(&ns).expect("veth pair");
        if mode == "native" {
            let out = Command::new("ip")
                .args(["-n", ns.name(), "link", "set", "dev", &veth.peer, "xdpdrv", "obj", PEER_XDP, "sec", "xdp"])
                .output()
                .expect("ip runs");
            assert!(out.status.success(), "XDP on the peer: {}", String::from_utf8_lossy(&out.stderr));
        }
        let fw = Xdpwall::isolated();
        let dir = TempDir::new(&format!("answer-{mode}-{}", veth.subnet));
        let path = dir.write("rules.conf", rules);
        fw.run(["load", &veth.host, path.to_str().unwrap(), "--mode", mode]).expect("load");
        Bed { ns, veth, fw, _dir: dir }
    }
}

/// A listener on the host for each blocked port, so that the host's own stack would
/// accept: the refusal is the filter's. Native and generic XDP.
#[test]
fn connect_and_udp_to_a_blocked_port_are_refused_at_once() {
    for mode in ["native", "generic"] {
        refused_at_once(mode);
    }
}

fn refused_at_once(mode: &str) {
    let bed = Bed::new(
        "block return in quick proto tcp to port 7001\n\
         block return in quick proto udp to port 7002\n",
        mode,
    );
    for host in bed.veth.host_ips() {
        let listener = TcpListener::bind(SocketAddr::new(host, 7001)).expect("listen on the host");
        let server = UdpSocket::bind(SocketAddr::new(host, 7002)).expect("bind on the host");
        let (tcp, udp) = bed.ns.run(|| {
            let started = Instant::now();
            let tcp = TcpStream::connect_timeout(&SocketAddr::new(host, 7001), Duration::from_secs(5))
                .map(|_| ())
                .map_err(|e| (e.kind(), started.elapsed()));
            let any: IpAddr = if host.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
            let s = UdpSocket::bind(SocketAddr::new(any, 0)).unwrap();
            s.connect(SocketAddr::new(host, 7002)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.send(b"hello").unwrap();
            let udp = s.recv(&mut [0u8; 16]).map(|_| ()).map_err(|e| e.kind());
            (tcp, udp)
        });
        let (kind, took) = tcp.expect_err("the connection is refused");
        assert_eq!(kind, ErrorKind::ConnectionRefused, "{mode}, {host}: connect() gets ECONNREFUSED");
        // At once: an RST, not a timeout or a SYN retransmission (the first comes after 1 s).
        assert!(took < Duration::from_secs(1), "{mode}, {host}: refused after {took:?}");
        assert_eq!(udp, Err(ErrorKind::ConnectionRefused), "{mode}, {host}: the ICMP error reaches the UDP socket");
        drop((listener, server));
    }
    let st = bed.fw.status().expect("status");
    assert!(st.answers_sent.packets >= 4, "answers counted: {:?}", st.answers_sent);
    assert_eq!(st.answers_suppressed.packets, 0, "none suppressed");
}

/// A large ruleset with an answering rule loads: the answer program is verified apart,
/// so the filter's verification does not grow with it (this one was refused, E2BIG,
/// when the answer was part of the filter).
#[test]
fn a_large_ruleset_with_answers_passes_the_verifier() {
    let mut fw = Loaded::new(include_str!("rulesets/answer-verifier.conf"));
    let frame = PacketBuilder::eth().ipv4(CLIENT4, SERVER4).udp(1000, 9).build().bytes;
    let (action, _) = fw.run(&frame);
    assert_eq!(action, XDP_TX, "answered by the first rule");
}
