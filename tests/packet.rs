//! A builder for test frames, e.g. for BPF_PROG_TEST_RUN:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use xdpwall_tests::packet::{LayerKind, PacketBuilder, TCP_SYN};
//!
//! let src = Ipv4Addr::new(192, 0, 2, 1);
//! let dst = Ipv4Addr::new(192, 0, 2, 2);
//! let p = PacketBuilder::eth().vlan(100).ipv4(src, dst).tcp(1234, 22, TCP_SYN).payload(b"x").build();
//! assert_eq!(p.bytes.len(), 14 + 4 + 20 + 20 + 1);
//! assert_eq!(p.layer_at(40).unwrap().kind, LayerKind::Tcp); // a cut at byte 40 splits TCP
//! ```
//!
//! Lengths and checksums (IPv4 header, TCP, UDP, ICMP, ICMPv6) are computed; SCTP's CRC32c is
//! left 0. Frames are not padded to the Ethernet minimum. To make a malformed frame, build a
//! good one and patch [`Packet::bytes`] at the offsets that [`Packet::layers`] gives.
//! Builder methods that modify a layer (`ttl`, `ident`, `seq_ack`, ...) panic when the packet has
//! no such layer: that is a mistake in the test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

pub use filter_common::wire::*;

/// Local experimental EtherType, used for frames with no L3 and no explicit `ethertype`.
pub const ETH_P_EXPERIMENTAL: u16 = 0x88b5;

/// Which header a byte range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Ethernet: destination, source, EtherType (14 bytes).
    Eth,
    /// One VLAN tag as parsers see it: TCI and the next EtherType (4 bytes; its TPID is the
    /// previous header's EtherType).
    Vlan,
    /// IPv4 header with options.
    Ipv4,
    /// IPv6 fixed header (40 bytes).
    Ipv6,
    /// One IPv6 extension header.
    Ipv6Ext,
    /// TCP header (20 bytes).
    Tcp,
    /// UDP header (8 bytes).
    Udp,
    /// SCTP common header (12 bytes).
    Sctp,
    /// ICMP header (8 bytes).
    Icmp,
    /// ICMPv6 header (8 bytes).
    Icmp6,
    /// ARP body for Ethernet/IPv4 (28 bytes).
    Arp,
    /// Payload, or the raw L4 bytes of another protocol.
    Payload,
}

/// One header of a built packet: its kind and where it is in [`Packet::bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    /// What the bytes are.
    pub kind: LayerKind,
    /// Offset of the first byte.
    pub start: usize,
    /// Offset just past the last byte.
    pub end: usize,
}

impl Layer {
    /// `start..end`.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// A built frame and the position of each of its headers, outermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The frame, starting with the Ethernet header.
    pub bytes: Vec<u8>,
    /// The headers in order; they cover `bytes` without gaps.
    pub layers: Vec<Layer>,
}

impl Packet {
    /// The first layer of this kind.
    pub fn layer(&self, kind: LayerKind) -> Option<&Layer> {
        self.layers.iter().find(|l| l.kind == kind)
    }

    /// The layer that byte `offset` belongs to (so a frame cut to `offset` bytes ends inside
    /// or just before it); None past the end.
    pub fn layer_at(&self, offset: usize) -> Option<&Layer> {
        self.layers.iter().find(|l| l.range().contains(&offset))
    }

    /// The bytes of the first layer of this kind. Panics if there is none.
    pub fn header(&self, kind: LayerKind) -> &[u8] {
        let layer = self.layer(kind).unwrap_or_else(|| panic!("packet has no {kind:?} layer"));
        &self.bytes[layer.range()]
    }
}

/// An IPv6 extension header; lengths are in the header's own 8-octet units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-hop options (next header 0), `8 * (1 + extra)` bytes of PadN.
    HopByHop {
        /// Hdr Ext Len: 8-octet units beyond the first 8.
        extra: u8,
    },
    /// Routing header (43), `8 * (1 + extra)` bytes.
    Routing {
        /// Routing type.
        routing_type: u8,
        /// Segments left.
        segments_left: u8,
        /// Hdr Ext Len: 8-octet units beyond the first 8.
        extra: u8,
    },
    /// Fragment header (44), 8 bytes.
    Fragment {
        /// Fragment offset in 8-octet units (13 bits).
        offset: u16,
        /// M flag: more fragments follow.
        more: bool,
        /// Identification.
        id: u32,
    },
    /// Destination options (60), `8 * (1 + extra)` bytes of PadN.
    DestOpts {
        /// Hdr Ext Len: 8-octet units beyond the first 8.
        extra: u8,
    },
}

impl Ipv6Ext {
    /// The next-header value that announces this header.
    pub fn code(&self) -> u8 {
        match self {
            Ipv6Ext::HopByHop { .. } => IPPROTO_HOPOPTS,
            Ipv6Ext::Routing { .. } => IPPROTO_ROUTING,
            Ipv6Ext::Fragment { .. } => IPPROTO_FRAGMENT,
            Ipv6Ext::DestOpts { .. } => IPPROTO_DSTOPTS,
        }
    }

    fn encode(&self, next: u8) -> Vec<u8> {
        match *self {
            Ipv6Ext::HopByHop { extra } | Ipv6Ext::DestOpts { extra } => {
                let mut h = vec![next, extra];
                pad_options(&mut h, 8 * (1 + extra as usize) - 2);
                h
            }
            Ipv6Ext::Routing { routing_type, segments_left, extra } => {
                let mut h = vec![next, extra, routing_type, segments_left, 0, 0, 0, 0];
                h.resize(8 * (1 + extra as usize), 0);
                h
            }
            Ipv6Ext::Fragment { offset, more, id } => {
                assert!(offset < 1 << 13, "fragment offset {offset} does not fit 13 bits");
                let mut h = vec![next, 0];
                h.extend((offset << 3 | more as u16).to_be_bytes());
                h.extend(id.to_be_bytes());
                h
            }
        }
    }
}

/// Fills `len` bytes of an options area with Pad1/PadN options.
fn pad_options(h: &mut Vec<u8>, mut len: usize) {
    while len > 0 {
        if len == 1 {
            h.push(0); // Pad1
            break;
        }
        let chunk = len.min(257);
        h.extend([1, (chunk - 2) as u8]); // PadN
        h.resize(h.len() + chunk - 2, 0);
        len -= chunk;
    }
}

#[derive(Clone, Debug)]
struct Ipv4Spec {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    options: Vec<u8>,
    ident: u16,
    df: bool,
    mf: bool,
    frag_offset: u16,
    protocol: Option<u8>,
}

#[derive(Clone, Debug)]
struct Ipv6Spec {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    exts: Vec<Ipv6Ext>,
    protocol: Option<u8>,
}

#[derive(Clone, Debug)]
struct ArpSpec {
    op: u16,
    sender_mac: Option<[u8; 6]>,
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
}

#[derive(Clone, Debug)]
enum L3 {
    None,
    Ipv4(Ipv4Spec),
    Ipv6(Ipv6Spec),
    Arp(ArpSpec),
}

#[derive(Clone, Debug)]
enum L4 {
    None,
    Tcp { sport: u16, dport: u16, flags: u8, seq: u32, ack: u32 },
    Udp { sport: u16, dport: u16 },
    Sctp { sport: u16, dport: u16 },
    Icmp { typ: u8, code: u8, rest: [u8; 4] },
    Icmp6 { typ: u8, code: u8, rest: [u8; 4] },
    Raw { proto: u8, bytes: Vec<u8> },
}

impl L4 {
    fn proto(&self) -> u8 {
        match self {
            L4::None => IPPROTO_NONE,
            L4::Tcp { .. } => IPPROTO_TCP,
            L4::Udp { .. } => IPPROTO_UDP,
            L4::Sctp { .. } => IPPROTO_SCTP,
            L4::Icmp { .. } => IPPROTO_ICMP,
            L4::Icmp6 { .. } => IPPROTO_ICMPV6,
            L4::Raw { proto, .. } => *proto,
        }
    }
}

/// Builds a [`Packet`] from the outside in: Ethernet, VLAN tags, L3, L4, payload.
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ethertype: Option<u16>,
    vlans: Vec<(u16, u16)>,
    l3: L3,
    l4: L4,
    payload: Vec<u8>,
}

impl PacketBuilder {
    /// An Ethernet frame from 02:00:00:00:00:01 to 02:00:00:00:00:02.
    pub fn eth() -> Self {
        PacketBuilder {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            ethertype: None,
            vlans: Vec::new(),
            l3: L3::None,
            l4: L4::None,
            payload: Vec::new(),
        }
    }

    /// Source MAC address.
    pub fn src_mac(mut self, mac: [u8; 6]) -> Self {
        self.src_mac = mac;
        self
    }

    /// Destination MAC address.
    pub fn dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = mac;
        self
    }

    /// Sets the innermost EtherType (after any VLAN tags), overriding the one the L3 implies.
    /// Without L3 and without this, frames carry [`ETH_P_EXPERIMENTAL`].
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.ethertype = Some(ethertype);
        self
    }

    /// Adds an 802.1Q tag (TPID 0x8100) with this VLAN id, inside the tags added before.
    pub fn vlan(self, vid: u16) -> Self {
        self.vlan_tag(ETH_P_8021Q, vid)
    }

    /// Adds an 802.1ad service tag (TPID 0x88a8), inside the tags added before.
    pub fn vlan_ad(self, vid: u16) -> Self {
        self.vlan_tag(ETH_P_8021AD, vid)
    }

    /// Q-in-Q: an 802.1ad outer tag, then an 802.1Q inner tag.
    pub fn qinq(self, outer_vid: u16, inner_vid: u16) -> Self {
        self.vlan_ad(outer_vid).vlan(inner_vid)
    }

    /// Adds a tag with any TPID and TCI (priority, DEI, VLAN id), inside the tags added before.
    pub fn vlan_tag(mut self, tpid: u16, tci: u16) -> Self {
        self.vlans.push((tpid, tci));
        self
    }

    /// An IPv4 header (TTL 64, no options, not fragmented).
    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.l3 = L3::Ipv4(Ipv4Spec {
            src,
            dst,
            ttl: 64,
            options: Vec::new(),
            ident: 0,
            df: false,
            mf: false,
            frag_offset: 0,
            protocol: None,
        });
        self
    }

    /// An IPv6 header (hop limit 64, no extension headers).
    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.l3 = L3::Ipv6(Ipv6Spec { src, dst, hop_limit: 64, exts: Vec::new(), protocol: None });
        self
    }

    /// [`ipv4`](Self::ipv4) or [`ipv6`](Self::ipv6) by the addresses' family (which must agree).
    pub fn ip(self, src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.ipv6(s, d),
            _ => panic!("ip({src}, {dst}): mixed address families"),
        }
    }

    /// IPv4 TTL or IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        match &mut self.l3 {
            L3::Ipv4(v4) => v4.ttl = ttl,
            L3::Ipv6(v6) => v6.hop_limit = ttl,
            _ => panic!("ttl() needs ipv4() or ipv6() first"),
        }
        self
    }

    /// Sets the IP protocol field (IPv6: the last next-header, the one naming L4) regardless of
    /// the L4 layer. Checksums still use the real L4 protocol.
    pub fn protocol(mut self, protocol: u8) -> Self {
        match &mut self.l3 {
            L3::Ipv4(v4) => v4.protocol = Some(protocol),
            L3::Ipv6(v6) => v6.protocol = Some(protocol),
            _ => panic!("protocol() needs ipv4() or ipv6() first"),
        }
        self
    }

    /// IPv4 options, padded with zero (end of options) to a multiple of 4; IHL follows.
    pub fn ip_options(mut self, options: &[u8]) -> Self {
        let v4 = self.v4("ip_options");
        assert!(options.len() <= 40, "IPv4 options are at most 40 bytes");
        v4.options = options.to_vec();
        self
    }

    /// IPv4 identification.
    pub fn ident(mut self, ident: u16) -> Self {
        self.v4("ident").ident = ident;
        self
    }

    /// Sets IPv4's DF (don't fragment) flag.
    pub fn dont_fragment(mut self) -> Self {
        self.v4("dont_fragment").df = true;
        self
    }

    /// Makes the packet a fragment: IPv4 sets the MF flag and fragment offset; IPv6 adds a
    /// fragment extension header (after those added so far). `offset` is in 8-octet units, as
    /// in the header; offset 0 with `more` is a first fragment. Non-first fragments should carry
    /// no L4 header: use [`payload`](Self::payload) alone.
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        assert!(offset < 1 << 13, "fragment offset {offset} does not fit 13 bits");
        match &mut self.l3 {
            L3::Ipv4(v4) => {
                v4.frag_offset = offset;
                v4.mf = more;
            }
            L3::Ipv6(v6) => v6.exts.push(Ipv6Ext::Fragment { offset, more, id: 0x1234_5678 }),
            _ => panic!("fragment() needs ipv4() or ipv6() first"),
        }
        self
    }

    /// Adds an IPv6 extension header after those added so far.
    pub fn ipv6_ext(mut self, ext: Ipv6Ext) -> Self {
        match &mut self.l3 {
            L3::Ipv6(v6) => v6.exts.push(ext),
            _ => panic!("ipv6_ext() needs ipv6() first"),
        }
        self
    }

    /// Adds an 8-byte hop-by-hop options header.
    pub fn hop_by_hop(self) -> Self {
        self.ipv6_ext(Ipv6Ext::HopByHop { extra: 0 })
    }

    /// Adds an 8-byte routing header (type 0, no segments left).
    pub fn routing(self) -> Self {
        self.ipv6_ext(Ipv6Ext::Routing { routing_type: 0, segments_left: 0, extra: 0 })
    }

    /// Adds an 8-byte destination options header.
    pub fn dest_opts(self) -> Self {
        self.ipv6_ext(Ipv6Ext::DestOpts { extra: 0 })
    }

    /// A TCP header (data offset 5, window 64240, seq 1, ack 2) with these flags. Both
    /// sides' defaults make a handshake that completes as connection tracking checks
    /// it: the opener's ACK acknowledges 2, the SYN-ACK's sequence number 1 plus one.
    pub fn tcp(mut self, sport: u16, dport: u16, flags: u8) -> Self {
        self.l4 = L4::Tcp { sport, dport, flags, seq: 1, ack: 2 };
        self
    }

    /// TCP sequence and acknowledgement numbers.
    pub fn seq_ack(mut self, seq_no: u32, ack_no: u32) -> Self {
        match &mut self.l4 {
            L4::Tcp { seq, ack, .. } => (*seq, *ack) = (seq_no, ack_no),
            _ => panic!("seq_ack() needs tcp() first"),
        }
        self
    }

    /// A UDP header; length covers the payload.
    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Udp { sport, dport };
        self
    }

    /// An SCTP common header (verification tag 0, checksum 0).
    pub fn sctp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Sctp { sport, dport };
        self
    }

    /// An ICMP header; the 4 bytes after the checksum are 0 (see [`icmp_rest`](Self::icmp_rest)).
    pub fn icmp(mut self, typ: u8, code: u8) -> Self {
        self.l4 = L4::Icmp { typ, code, rest: [0; 4] };
        self
    }

    /// An ICMP echo request (type 8) with this identifier and sequence number.
    pub fn icmp_echo(self, id: u16, seq: u16) -> Self {
        self.icmp(8, 0).icmp_rest(id_seq(id, seq))
    }

    /// An ICMPv6 header; the 4 bytes after the checksum are 0.
    pub fn icmp6(mut self, typ: u8, code: u8) -> Self {
        self.l4 = L4::Icmp6 { typ, code, rest: [0; 4] };
        self
    }

    /// An ICMPv6 echo request (type 128) with this identifier and sequence number.
    pub fn icmp6_echo(self, id: u16, seq: u16) -> Self {
        self.icmp6(128, 0).icmp_rest(id_seq(id, seq))
    }

    /// The 4 bytes after an ICMP/ICMPv6 checksum (id and sequence, MTU, pointer, ...).
    pub fn icmp_rest(mut self, bytes: [u8; 4]) -> Self {
        match &mut self.l4 {
            L4::Icmp { rest, .. } | L4::Icmp6 { rest, .. } => *rest = bytes,
            _ => panic!("icmp_rest() needs icmp() or icmp6() first"),
        }
        self
    }

    /// Any other L4 protocol: its number and raw bytes (recorded as a Payload layer).
    pub fn l4_raw(mut self, proto: u8, bytes: &[u8]) -> Self {
        self.l4 = L4::Raw { proto, bytes: bytes.to_vec() };
        self
    }

    /// An ARP body for Ethernet/IPv4 (EtherType 0x0806). `op` 1 is a request, 2 a reply.
    /// The sender MAC is the frame's source MAC.
    pub fn arp(mut self, op: u16, sender_ip: Ipv4Addr, target_mac: [u8; 6], target_ip: Ipv4Addr) -> Self {
        self.l3 = L3::Arp(ArpSpec { op, sender_mac: None, sender_ip, target_mac, target_ip });
        self
    }

    /// An ARP request ("who has `target_ip`") to the broadcast address.
    pub fn arp_request(self, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        self.dst_mac([0xff; 6]).arp(1, sender_ip, [0; 6], target_ip)
    }

    /// Bytes after the last header.
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    fn v4(&mut self, what: &str) -> &mut Ipv4Spec {
        match &mut self.l3 {
            L3::Ipv4(v4) => v4,
            _ => panic!("{what}() needs ipv4() first"),
        }
    }

    /// Assembles the frame.
    pub fn build(&self) -> Packet {
        let (l4_kind, mut l4) = self.l4_header();
        let upper_len = l4.len() + self.payload.len();
        let pseudo = self.pseudo_header(upper_len);
        let csum_at = match l4_kind {
            Some(LayerKind::Tcp) => Some(16),
            Some(LayerKind::Udp) => Some(6),
            Some(LayerKind::Icmp) => Some(2),
            Some(LayerKind::Icmp6) => Some(2),
            _ => None,
        };
        if let Some(at) = csum_at {
            // ICMP (v4) has no pseudo-header.
            let pseudo: &[u8] = if l4_kind == Some(LayerKind::Icmp) { &[] } else { &pseudo };
            let mut sum = checksum(&[pseudo, &l4, &self.payload]);
            if sum == 0 && l4_kind == Some(LayerKind::Udp) {
                sum = 0xffff; // 0 means "no checksum" in UDP
            }
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }

        let mut p = Packet { bytes: Vec::new(), layers: Vec::new() };
        let inner_type = self.ethertype.unwrap_or(match self.l3 {
            L3::None => ETH_P_EXPERIMENTAL,
            L3::Ipv4(_) => ETH_P_IP,
            L3::Ipv6(_) => ETH_P_IPV6,
            L3::Arp(_) => ETH_P_ARP,
        });
        // Each EtherType field names what follows: the next tag's TPID, finally the L3 type.
        let mut types = self.vlans.iter().map(|&(tpid, _)| tpid).chain([inner_type]);

        let mut eth = [self.dst_mac, self.src_mac].concat();
        eth.extend(types.next().expect("chain is never empty").to_be_bytes());
        push(&mut p, LayerKind::Eth, &eth);
        for (&(_, tci), next) in self.vlans.iter().zip(types) {
            push(&mut p, LayerKind::Vlan, &[tci.to_be_bytes(), next.to_be_bytes()].concat());
        }

        let proto = self.l4.proto();
        match &self.l3 {
            L3::None => {}
            L3::Ipv4(v4) => push(&mut p, LayerKind::Ipv4, &ipv4_header(v4, proto, upper_len)),
            L3::Ipv6(v6) => {
                let last = v6.protocol.unwrap_or(proto);
                let codes: Vec<u8> = v6.exts.iter().map(Ipv6Ext::code).chain([last]).collect();
                let exts: Vec<Vec<u8>> = v6.exts.iter().zip(&codes[1..]).map(|(ext, &next)| ext.encode(next)).collect();
                let payload_len = exts.iter().map(Vec::len).sum::<usize>() + upper_len;
                let payload_len = u16::try_from(payload_len).expect("IPv6 payload over 65535 bytes");
                let mut h = vec![0x60, 0, 0, 0];
                h.extend(payload_len.to_be_bytes());
                h.extend([codes[0], v6.hop_limit]);
                h.extend(v6.src.octets());
                h.extend(v6.dst.octets());
                push(&mut p, LayerKind::Ipv6, &h);
                for ext in &exts {
                    push(&mut p, LayerKind::Ipv6Ext, ext);
                }
            }
            L3::Arp(arp) => {
                let mut h = vec![0, 1, 0x08, 0x00, 6, 4];
                h.extend(arp.op.to_be_bytes());
                h.extend(arp.sender_mac.unwrap_or(self.src_mac));
                h.extend(arp.sender_ip.octets());
                h.extend(arp.target_mac);
                h.extend(arp.target_ip.octets());
                push(&mut p, LayerKind::Arp, &h);
            }
        }
        if let Some(kind) = l4_kind {
            push(&mut p, kind, &l4);
        }
        push(&mut p, LayerKind::Payload, &self.payload);
        p
    }

    /// The L4 header with its checksum field zero.
    fn l4_header(&self) -> (Option<LayerKind>, Vec<u8>) {
        let mut h = Vec::new();
        let kind = match &self.l4 {
            L4::None => return (None, h),
            L4::Tcp { sport, dport, flags, seq, ack } => {
                h.extend(sport.to_be_bytes());
                h.extend(dport.to_be_bytes());
                h.extend(seq.to_be_bytes());
                h.extend(ack.to_be_bytes());
                h.extend([5 << 4, *flags]);
                h.extend(64240u16.to_be_bytes()); // window
                h.extend([0; 4]); // checksum, urgent pointer
                LayerKind::Tcp
            }
            L4::Udp { sport, dport } => {
                let len = u16::try_from(8 + self.payload.len()).expect("UDP datagram over 65535 bytes");
                h.extend(sport.to_be_bytes());
                h.extend(dport.to_be_bytes());
                h.extend(len.to_be_bytes());
                h.extend([0; 2]);
                LayerKind::Udp
            }
            L4::Sctp { sport, dport } => {
                h.extend(sport.to_be_bytes());
                h.extend(dport.to_be_bytes());
                h.extend([0; 8]); // verification tag, checksum
                LayerKind::Sctp
            }
            L4::Icmp { typ, code, rest } | L4::Icmp6 { typ, code, rest } => {
                h.extend([*typ, *code, 0, 0]);
                h.extend(rest);
                if matches!(self.l4, L4::Icmp { .. }) { LayerKind::Icmp } else { LayerKind::Icmp6 }
            }
            L4::Raw { bytes, .. } => {
                h.extend(bytes);
                LayerKind::Payload
            }
        };
        (Some(kind), h)
    }

    /// The pseudo-header for TCP/UDP/ICMPv6 checksums (empty without IP).
    fn pseudo_header(&self, upper_len: usize) -> Vec<u8> {
        let proto = self.l4.proto();
        let mut h = Vec::new();
        match &self.l3 {
            L3::Ipv4(v4) => {
                h.extend(v4.src.octets());
                h.extend(v4.dst.octets());
                h.extend([0, proto]);
                h.extend((upper_len as u16).to_be_bytes());
            }
            L3::Ipv6(v6) => {
                h.extend(v6.src.octets());
                h.extend(v6.dst.octets());
                h.extend((upper_len as u32).to_be_bytes());
                h.extend([0, 0, 0, proto]);
            }
            L3::None | L3::Arp(_) => {}
        }
        h
    }
}

fn ipv4_header(v4: &Ipv4Spec, proto: u8, upper_len: usize) -> Vec<u8> {
    let mut options = v4.options.clone();
    options.resize(options.len().next_multiple_of(4), 0);
    let header_len = 20 + options.len();
    let total = u16::try_from(header_len + upper_len).expect("IPv4 packet over 65535 bytes");
    let flags_frag = (v4.df as u16) << 14 | (v4.mf as u16) << 13 | v4.frag_offset;
    let mut h = vec![0x40 | (header_len / 4) as u8, 0];
    h.extend(total.to_be_bytes());
    h.extend(v4.ident.to_be_bytes());
    h.extend(flags_frag.to_be_bytes());
    h.extend([v4.ttl, v4.protocol.unwrap_or(proto), 0, 0]);
    h.extend(v4.src.octets());
    h.extend(v4.dst.octets());
    h.extend(options);
    let sum = checksum(&[&h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

fn id_seq(id: u16, seq: u16) -> [u8; 4] {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    [a, b, c, d]
}

fn push(p: &mut Packet, kind: LayerKind, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let start = p.bytes.len();
    p.bytes.extend_from_slice(bytes);
    p.layers.push(Layer { kind, start, end: p.bytes.len() });
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts`. Over data that includes a
/// correct checksum field it is 0.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None; // a byte left over from the previous part
    for &byte in parts.iter().flat_map(|p| p.iter()) {
        match odd.take() {
            Some(hi) => sum += u64::from(u16::from_be_bytes([hi, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(hi) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_SRC: Ipv4Addr = Ipv4Addr::new(10, 201, 7, 2);
    const V4_DST: Ipv4Addr = Ipv4Addr::new(10, 201, 7, 1);

    fn v6(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x201, 7, 0, 0, 0, 0, last)
    }

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn kinds(p: &Packet) -> Vec<LayerKind> {
        p.layers.iter().map(|l| l.kind).collect()
    }

    /// The pseudo-header sum must come out 0 over a correct checksum.
    fn l4_checksum_ok(p: &Packet, l4: LayerKind) -> bool {
        let l4_layer = p.layer(l4).unwrap();
        let upper = &p.bytes[l4_layer.start..];
        let pseudo = if let Some(ip) = p.layer(LayerKind::Ipv4) {
            let ip = &p.bytes[ip.range()];
            [&ip[12..20], &[0, ip[9]], &(upper.len() as u16).to_be_bytes()[..]].concat()
        } else {
            let ip = p.header(LayerKind::Ipv6);
            let proto = match l4 {
                LayerKind::Tcp => 6,
                LayerKind::Udp => 17,
                _ => 58,
            };
            [&ip[8..40], &(upper.len() as u32).to_be_bytes()[..], &[0, 0, 0, proto]].concat()
        };
        checksum(&[&pseudo, upper]) == 0
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // The example header of the "IPv4 header checksum" article: checksum 0xb861.
        let p = PacketBuilder::eth()
            .ipv4(Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(192, 168, 0, 199))
            .dont_fragment()
            .udp(1, 2)
            .payload(&[0; 0x73 - 28])
            .build();
        let expected = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(p.header(LayerKind::Ipv4), expected);
    }

    #[test]
    fn known_icmp_echo_checksum() {
        let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).icmp_echo(1, 1).build();
        // ~(0x0800 + 0x0001 + 0x0001)
        assert_eq!(p.header(LayerKind::Icmp), [8, 0, 0xf7, 0xfd, 0, 1, 0, 1]);
    }

    #[test]
    fn known_tcp_checksums() {
        // Expected values computed independently (Python, RFC 1071), for seq 1, ack 0.
        let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).tcp(40000, 8080, TCP_SYN).seq_ack(1, 0).build();
        assert_eq!(be16(p.header(LayerKind::Tcp), 16), 0xd58b);
        let p = PacketBuilder::eth().ipv6(v6(2), v6(1)).tcp(40000, 8080, TCP_SYN).seq_ack(1, 0).payload(b"hi!").build();
        assert_eq!(be16(p.header(LayerKind::Tcp), 16), 0x719f);
    }

    #[test]
    fn tcp_over_vlan_ipv4() {
        let p = PacketBuilder::eth()
            .vlan(100)
            .ipv4(V4_SRC, V4_DST)
            .ttl(7)
            .ident(0xbeef)
            .tcp(1234, 22, TCP_SYN | TCP_ACK)
            .seq_ack(0x01020304, 0x0a0b0c0d)
            .payload(b"hello")
            .build();
        let b = &p.bytes;
        assert_eq!(b.len(), 14 + 4 + 20 + 20 + 5);
        assert_eq!(kinds(&p), [LayerKind::Eth, LayerKind::Vlan, LayerKind::Ipv4, LayerKind::Tcp, LayerKind::Payload]);
        assert_eq!(&b[0..6], [2, 0, 0, 0, 0, 2]);
        assert_eq!(&b[6..12], [2, 0, 0, 0, 0, 1]);
        assert_eq!(be16(b, 12), ETH_P_8021Q);
        assert_eq!(be16(b, 14) & 0x0fff, 100);
        assert_eq!(be16(b, 16), ETH_P_IP);
        let ip = p.layer(LayerKind::Ipv4).unwrap();
        assert_eq!((ip.start, ip.end), (18, 38));
        assert_eq!(b[18], 0x45);
        assert_eq!(be16(b, 20), 20 + 20 + 5); // total length
        assert_eq!(be16(b, 22), 0xbeef);
        assert_eq!(be16(b, 24), 0); // no flags, offset 0
        assert_eq!((b[26], b[27]), (7, IPPROTO_TCP));
        assert_eq!(checksum(&[&b[18..38]]), 0);
        assert_eq!(&b[30..34], V4_SRC.octets());
        assert_eq!(&b[34..38], V4_DST.octets());
        let t = p.header(LayerKind::Tcp);
        assert_eq!((be16(t, 0), be16(t, 2)), (1234, 22));
        assert_eq!(&t[4..12], [1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!((t[12], t[13]), (0x50, 0x12));
        assert!(l4_checksum_ok(&p, LayerKind::Tcp));
        assert_eq!(&b[58..], b"hello");
    }

    #[test]
    fn qinq_tags_chain_ethertypes() {
        let p = PacketBuilder::eth().qinq(10, 20).ipv6(v6(2), v6(1)).udp(5353, 53).build();
        let b = &p.bytes;
        assert_eq!(be16(b, 12), ETH_P_8021AD);
        assert_eq!(be16(b, 14), 10);
        assert_eq!(be16(b, 16), ETH_P_8021Q);
        assert_eq!(be16(b, 18), 20);
        assert_eq!(be16(b, 20), ETH_P_IPV6);
        assert_eq!(p.layer(LayerKind::Ipv6).unwrap().range(), 22..62);
        assert_eq!(kinds(&p), [LayerKind::Eth, LayerKind::Vlan, LayerKind::Vlan, LayerKind::Ipv6, LayerKind::Udp]);
    }

    #[test]
    fn ipv4_options_and_fragments() {
        let p = PacketBuilder::eth()
            .ipv4(V4_SRC, V4_DST)
            .ip_options(&[0x94, 0x04, 0x00]) // router alert, 3 of its 4 bytes: padded
            .dont_fragment()
            .fragment(185, true)
            .udp(1000, 53)
            .payload(&[1, 2, 3])
            .build();
        let ip = p.header(LayerKind::Ipv4);
        assert_eq!(ip.len(), 24);
        assert_eq!(ip[0], 0x46);
        assert_eq!(&ip[20..24], [0x94, 0x04, 0x00, 0x00]);
        assert_eq!(be16(ip, 2), 24 + 8 + 3);
        assert_eq!(be16(ip, 6), 0x4000 | 0x2000 | 185);
        assert_eq!(checksum(&[ip]), 0);
        let udp = p.header(LayerKind::Udp);
        assert_eq!(p.layer(LayerKind::Udp).unwrap().start, 14 + 24);
        assert_eq!(be16(udp, 4), 8 + 3);
        assert!(l4_checksum_ok(&p, LayerKind::Udp));

        // A non-first fragment: no L4 header, just bytes.
        let p = PacketBuilder::eth()
            .ipv4(V4_SRC, V4_DST)
            .protocol(IPPROTO_TCP)
            .fragment(3, false)
            .payload(&[9; 16])
            .build();
        assert_eq!(kinds(&p), [LayerKind::Eth, LayerKind::Ipv4, LayerKind::Payload]);
        assert_eq!(be16(p.header(LayerKind::Ipv4), 6), 3);
        assert_eq!(p.header(LayerKind::Ipv4)[9], IPPROTO_TCP);
    }

    #[test]
    fn ipv6_extension_chain() {
        let p = PacketBuilder::eth()
            .ipv6(v6(2), v6(1))
            .hop_by_hop()
            .ipv6_ext(Ipv6Ext::Routing { routing_type: 4, segments_left: 0, extra: 2 })
            .fragment(0, true)
            .ipv6_ext(Ipv6Ext::DestOpts { extra: 1 })
            .udp(1000, 53)
            .payload(b"abcd")
            .build();
        let ranges: Vec<_> = p.layers.iter().map(|l| (l.kind, l.start, l.end)).collect();
        assert_eq!(
            ranges,
            [
                (LayerKind::Eth, 0, 14),
                (LayerKind::Ipv6, 14, 54),
                (LayerKind::Ipv6Ext, 54, 62),  // hop-by-hop, 8
                (LayerKind::Ipv6Ext, 62, 86),  // routing, 8 * 3
                (LayerKind::Ipv6Ext, 86, 94),  // fragment, 8
                (LayerKind::Ipv6Ext, 94, 110), // dest opts, 8 * 2
                (LayerKind::Udp, 110, 118),
                (LayerKind::Payload, 118, 122),
            ]
        );
        let b = &p.bytes;
        assert_eq!(b[14] >> 4, 6);
        assert_eq!(be16(b, 18), 122 - 54); // payload length: extensions + UDP + payload
        assert_eq!(b[20], IPPROTO_HOPOPTS);
        assert_eq!(b[21], 64);
        assert_eq!((b[54], b[55]), (IPPROTO_ROUTING, 0));
        assert_eq!(&b[56..62], [1, 4, 0, 0, 0, 0]); // PadN filling the rest
        assert_eq!((b[62], b[63], b[64], b[65]), (IPPROTO_FRAGMENT, 2, 4, 0));
        assert_eq!((b[86], b[87]), (IPPROTO_DSTOPTS, 0));
        assert_eq!(be16(b, 88), 1); // offset 0, M set
        assert_eq!((b[94], b[95]), (IPPROTO_UDP, 1));
        assert_eq!(&b[96..98], [1, 12]);
        assert!(l4_checksum_ok(&p, LayerKind::Udp));

        let p = PacketBuilder::eth().ipv6(v6(2), v6(1)).fragment(100, false).payload(&[0; 8]).build();
        let frag = p.header(LayerKind::Ipv6Ext);
        assert_eq!(frag[0], IPPROTO_NONE);
        assert_eq!(be16(frag, 2), 100 << 3);
    }

    #[test]
    fn long_options_pad() {
        let p = PacketBuilder::eth().ipv6(v6(2), v6(1)).ipv6_ext(Ipv6Ext::HopByHop { extra: 40 }).build();
        let h = p.header(LayerKind::Ipv6Ext);
        assert_eq!(h.len(), 8 * 41);
        // Walk the options: they must fill the header exactly.
        let mut at = 2;
        while at < h.len() {
            at += if h[at] == 0 { 1 } else { 2 + h[at + 1] as usize };
        }
        assert_eq!(at, h.len());
    }

    #[test]
    fn icmp6_sctp_and_raw() {
        let p = PacketBuilder::eth().ipv6(v6(2), v6(1)).icmp6_echo(7, 9).payload(b"ping").build();
        let icmp = p.header(LayerKind::Icmp6);
        assert_eq!(&icmp[..2], [128, 0]);
        assert_eq!(&icmp[4..], [0, 7, 0, 9]);
        assert_eq!(p.header(LayerKind::Ipv6)[6], IPPROTO_ICMPV6);
        assert!(l4_checksum_ok(&p, LayerKind::Icmp6));

        let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).sctp(5000, 38412).build();
        assert_eq!(p.header(LayerKind::Sctp), [0x13, 0x88, 0x96, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p.header(LayerKind::Ipv4)[9], IPPROTO_SCTP);

        let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).l4_raw(47, &[0, 0, 0x08, 0]).build();
        assert_eq!(p.header(LayerKind::Ipv4)[9], 47);
        assert_eq!(p.header(LayerKind::Payload), [0, 0, 8, 0]);

        let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).build();
        assert_eq!(p.header(LayerKind::Ipv4)[9], IPPROTO_NONE);
        assert_eq!(p.bytes.len(), 34);
    }

    #[test]
    fn arp_and_other_ethertypes() {
        let p = PacketBuilder::eth().arp_request(V4_SRC, V4_DST).build();
        assert_eq!(p.bytes.len(), 14 + 28);
        assert_eq!(&p.bytes[0..6], [0xff; 6]);
        assert_eq!(be16(&p.bytes, 12), ETH_P_ARP);
        let a = p.header(LayerKind::Arp);
        assert_eq!(&a[..8], [0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&a[8..14], [2, 0, 0, 0, 0, 1]);
        assert_eq!(&a[14..18], V4_SRC.octets());
        assert_eq!(&a[24..28], V4_DST.octets());

        let p = PacketBuilder::eth().vlan(5).ethertype(0x88cc).payload(&[1; 10]).build();
        assert_eq!(be16(&p.bytes, 16), 0x88cc);
        assert_eq!(kinds(&p), [LayerKind::Eth, LayerKind::Vlan, LayerKind::Payload]);
    }

    #[test]
    fn layer_at_finds_the_cut_header() {
        let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).udp(1, 53).payload(b"x").build();
        assert_eq!(p.layer_at(0).unwrap().kind, LayerKind::Eth);
        assert_eq!(p.layer_at(13).unwrap().kind, LayerKind::Eth);
        assert_eq!(p.layer_at(14).unwrap().kind, LayerKind::Ipv4);
        assert_eq!(p.layer_at(33).unwrap().kind, LayerKind::Ipv4);
        assert_eq!(p.layer_at(34).unwrap().kind, LayerKind::Udp);
        assert_eq!(p.layer_at(42).unwrap().kind, LayerKind::Payload);
        assert_eq!(p.layer_at(43), None);
        // Layers tile the frame.
        assert!(p.layers.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(p.layers.last().unwrap().end, p.bytes.len());
    }

    #[test]
    fn udp_checksum_never_zero_and_odd_lengths() {
        for len in 0..64 {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let p = PacketBuilder::eth().ipv4(V4_SRC, V4_DST).udp(53, 1024).payload(&payload).build();
            assert_ne!(be16(p.header(LayerKind::Udp), 6), 0);
            assert!(l4_checksum_ok(&p, LayerKind::Udp), "payload length {len}");
        }
        assert_eq!(checksum(&[&[0x12], &[0x34, 0x56]]), checksum(&[&[0x12, 0x34, 0x56]]));
    }
}
