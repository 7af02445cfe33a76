//! What a frame says, as the rules see it: the model's own header dissection, written
//! from the formats (IEEE 802.3/802.1Q/802.1ad, RFC 791, RFC 8200, RFC 4302, RFC 9293,
//! RFC 768, RFC 9260, RFC 792, RFC 4443) and the limits the data plane documents, not
//! from the XDP program.
//!
//! Offsets are counted from the first byte of the Ethernet header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{MAX_HEADER_BYTES, MAX_IPV6_EXT, Malformed};

/// Ethernet header: two MAC addresses and the EtherType.
const ETH_LEN: usize = 14;
/// One VLAN tag as seen after the TPID: TCI and the inner EtherType.
const VLAN_TAG_LEN: usize = 4;
/// Most VLAN tags looked through (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;
/// Fixed IPv4 header (IHL 5).
const IPV4_MIN_LEN: usize = 20;
/// Fixed IPv6 header.
const IPV6_LEN: usize = 40;

use filter_common::wire::{ETH_P_IP as ETHERTYPE_IPV4, ETH_P_IPV6 as ETHERTYPE_IPV6};
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

const PROTO_HOPOPTS: u8 = 0;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ROUTING: u8 = 43;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_AH: u8 = 51;
const PROTO_ICMPV6: u8 = 58;
const PROTO_DSTOPTS: u8 = 60;
const PROTO_SCTP: u8 = 132;

/// The transport-layer fields of a packet, when it has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No transport fields: a protocol without ports or types, or a fragment other
    /// than the first.
    None,
    /// TCP, UDP or SCTP ports; `tcp_flags` is the flags byte of TCP, `None` otherwise.
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// TCP flags (FIN 0x01 ... CWR 0x80), for TCP only.
        tcp_flags: Option<u8>,
    },
    /// ICMP (in IPv4) or ICMPv6 (in IPv6) type and code.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
        /// Bytes 4-5 of the header: the Identifier of an echo request or reply
        /// (RFC 792, RFC 4443 section 4); other types put other things there.
        ident: u16,
    },
}

/// The fields of an IPv4 or IPv6 packet that a rule can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// VLAN id of the outermost tag, if tagged.
    pub vlan: Option<u16>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol: IPv4's Protocol, or the Next Header that ends the IPv6
    /// extension header chain.
    pub protocol: u8,
    /// Ports, flags, ICMP type and code.
    pub transport: Transport,
}

/// What kind of frame this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dissected {
    /// An IP packet to judge.
    Ip(Fields),
    /// Not IPv4 nor IPv6 (ARP, LLDP, ...).
    NonIp,
    /// Dropped before any rule looks at it.
    Malformed(Malformed),
}

/// `len` bytes at `at`, if the frame has them.
fn bytes(frame: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    frame.get(at..at.checked_add(len)?)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// Reads a frame's headers.
pub fn dissect(frame: &[u8]) -> Dissected {
    match dissect_inner(frame) {
        Ok(Some(fields)) => Dissected::Ip(fields),
        Ok(None) => Dissected::NonIp,
        Err(reason) => Dissected::Malformed(reason),
    }
}

fn dissect_inner(frame: &[u8]) -> Result<Option<Fields>, Malformed> {
    if frame.len() < ETH_LEN {
        return Err(Malformed::EthTruncated);
    }
    let mut ethertype = u16_at(frame, 12);
    let mut at = ETH_LEN;

    let mut tags = 0;
    let mut vlan = None;
    while ethertype == TPID_8021Q || ethertype == TPID_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Err(Malformed::VlanTooMany);
        }
        let tag = bytes(frame, at, VLAN_TAG_LEN).ok_or(Malformed::VlanTruncated)?;
        // TCI: PCP (3 bits), DEI (1 bit), VID (12 bits). Only the outer VID counts.
        if vlan.is_none() {
            vlan = Some(u16_at(tag, 0) & 0x0fff);
        }
        ethertype = u16_at(tag, 2);
        at += VLAN_TAG_LEN;
        tags += 1;
    }

    let network = match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, at)?,
        ETHERTYPE_IPV6 => ipv6(frame, at)?,
        _ => return Ok(None),
    };
    // The packet ends where its IP length says; bytes after that (Ethernet padding)
    // are not part of it.
    let packet = &frame[..network.end];
    let transport = if network.first_fragment {
        transport(packet, network.upper_at, network.protocol, network.v6, network.more_fragments)?
    } else {
        Transport::None
    };
    Ok(Some(Fields { vlan, src: network.src, dst: network.dst, protocol: network.protocol, transport }))
}

/// The network layer of a packet.
struct Network {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    v6: bool,
    /// Whether the upper-layer header is in this packet (not a later fragment).
    first_fragment: bool,
    /// A first fragment with more to follow: the upper-layer header must be whole in
    /// it all the same (RFC 1858, RFC 3128, RFC 8200 section 4.5).
    more_fragments: bool,
    /// Offset of the upper-layer header.
    upper_at: usize,
    /// Offset of the packet's end: the frame's, or the IP length's when shorter.
    end: usize,
}

fn ipv4(frame: &[u8], at: usize) -> Result<Network, Malformed> {
    let h = bytes(frame, at, IPV4_MIN_LEN).ok_or(Malformed::Ipv4Truncated)?;
    let version = h[0] >> 4;
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if version != 4 || header_len < IPV4_MIN_LEN {
        return Err(Malformed::Ipv4BadHeader);
    }
    // Options included, the whole header must be there.
    if at + header_len > frame.len() {
        return Err(Malformed::Ipv4Truncated);
    }
    // Total Length counts the header and the data. 0 is taken as "not given" (Linux's
    // BIG TCP GRO packets have it, and the kernel drops any other): the frame ends it.
    let total_len = usize::from(u16_at(h, 2));
    let end = match total_len {
        0 => frame.len(),
        n if n < header_len || at + n > frame.len() => return Err(Malformed::Ipv4BadLength),
        n => at + n,
    };
    // Flags (3 bits: reserved, DF, MF) and Fragment Offset (13 bits, in 8-octet units).
    let fragment_offset = u16_at(h, 6) & 0x1fff;
    let more_fragments = h[6] & 0x20 != 0;
    let protocol = h[9];
    // A TCP fragment at 8 bytes lands on the first fragment's flags (byte 13): on
    // reassembly it can turn an ACK the rules passed into a SYN (RFC 1858 section 3.2).
    if fragment_offset == 1 && protocol == PROTO_TCP {
        return Err(Malformed::FragmentOverlap);
    }
    Ok(Network {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        protocol,
        v6: false,
        first_fragment: fragment_offset == 0,
        more_fragments: fragment_offset == 0 && more_fragments,
        upper_at: at + header_len,
        end,
    })
}

fn ipv6(frame: &[u8], at: usize) -> Result<Network, Malformed> {
    let h = bytes(frame, at, IPV6_LEN).ok_or(Malformed::Ipv6Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed::Ipv6BadHeader);
    }
    let addr = |i: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[i..i + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    // Payload Length counts what follows the fixed header. 0: a jumbogram (RFC 2675),
    // or a BIG TCP GRO packet; the frame ends it.
    let end = match usize::from(u16_at(h, 4)) {
        0 => frame.len(),
        n if at + IPV6_LEN + n > frame.len() => return Err(Malformed::Ipv6BadLength),
        n => at + IPV6_LEN + n,
    };
    let chain = extension_chain(&frame[..end], at + IPV6_LEN, h[6])?;
    Ok(Network {
        src: addr(8),
        dst: addr(24),
        protocol: chain.protocol,
        v6: true,
        first_fragment: !chain.later_fragment,
        more_fragments: chain.first_fragment,
        upper_at: chain.upper_at,
        end,
    })
}

/// The end of an IPv6 extension header chain.
struct Chain {
    protocol: u8,
    /// A Fragment header with a non-zero offset was seen: the upper-layer header is
    /// in another fragment.
    later_fragment: bool,
    /// A Fragment header with offset 0 and the M flag was seen: a first fragment.
    first_fragment: bool,
    upper_at: usize,
}

fn is_extension(next: u8) -> bool {
    matches!(next, PROTO_HOPOPTS | PROTO_ROUTING | PROTO_FRAGMENT | PROTO_DSTOPTS | PROTO_AH)
}

/// Whether a header ending at `end` (exclusive) is usable: its last byte beyond the
/// header budget is "too many", within it but past the packet is "truncated" (in a
/// first fragment, a tiny fragment: RFC 8200 section 4.5 wants the whole chain up to
/// the upper-layer header in the first fragment).
fn ext_end(frame: &[u8], end: usize, first_fragment: bool) -> Result<(), Malformed> {
    if end - 1 > MAX_HEADER_BYTES {
        return Err(Malformed::Ipv6ExtTooMany);
    }
    if end > frame.len() {
        return Err(short(first_fragment, Malformed::Ipv6ExtTruncated));
    }
    Ok(())
}

/// Why a header cut short is malformed: in a first fragment, the fragment is too
/// small; otherwise `whole`, the header's own reason.
fn short(first_fragment: bool, whole: Malformed) -> Malformed {
    if first_fragment { Malformed::FragmentTiny } else { whole }
}

/// Walks hop-by-hop, routing, fragment, destination options and AH headers from `at`,
/// where a header of type `next` starts (RFC 8200 section 4, RFC 4302 section 2.2).
/// `frame` ends where the packet does.
fn extension_chain(frame: &[u8], mut at: usize, mut next: u8) -> Result<Chain, Malformed> {
    let mut walked = 0;
    let mut first_fragment = false;
    while is_extension(next) {
        if walked == MAX_IPV6_EXT {
            return Err(Malformed::Ipv6ExtTooMany);
        }
        // The fragment header is read whole (8 bytes); the others need their Next
        // Header and Hdr Ext Len to find their length.
        let fixed = if next == PROTO_FRAGMENT { 8 } else { 2 };
        if at > MAX_HEADER_BYTES {
            return Err(Malformed::Ipv6ExtTooMany);
        }
        if at + fixed > frame.len() {
            return Err(short(first_fragment, Malformed::Ipv6ExtTruncated));
        }
        let h = &frame[at..at + fixed];
        let len = match next {
            // Hdr Ext Len in 8-octet units, not counting the first 8 octets.
            PROTO_HOPOPTS | PROTO_ROUTING | PROTO_DSTOPTS => (usize::from(h[1]) + 1) * 8,
            // AH: Payload Len in 4-octet units, minus 2.
            PROTO_AH => (usize::from(h[1]) + 2) * 4,
            // Fragment: Fragment Offset is the top 13 bits of bytes 2-3, the M flag
            // the lowest bit. A later fragment ends the chain: what follows is
            // fragment data, not headers (RFC 8200 4.5), and its Next Header names
            // the protocol. At offset 1 (8 bytes) before TCP it would overlap the
            // first fragment's TCP header: RFC 1858's attack, dropped as in IPv4.
            _ => {
                let offset = u16_at(h, 2) >> 3;
                if offset == 1 && h[0] == PROTO_TCP {
                    return Err(Malformed::FragmentOverlap);
                }
                if offset != 0 {
                    return Ok(Chain { protocol: h[0], later_fragment: true, first_fragment: false, upper_at: at + 8 });
                }
                // Offset 0 without M is an atomic fragment: a whole packet.
                if h[3] & 1 != 0 {
                    first_fragment = true;
                }
                8
            }
        };
        ext_end(frame, at + len, first_fragment)?;
        next = h[0];
        at += len;
        walked += 1;
    }
    Ok(Chain { protocol: next, later_fragment: false, first_fragment, upper_at: at })
}

/// The transport header of a first fragment (or a whole packet) at `at`; `frame`
/// ends where the packet does.
fn transport(frame: &[u8], at: usize, protocol: u8, v6: bool, first_fragment: bool) -> Result<Transport, Malformed> {
    let needed = match protocol {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        PROTO_SCTP => 12,
        PROTO_ICMP if !v6 => 8,
        PROTO_ICMPV6 if v6 => 8,
        _ => return Ok(Transport::None),
    };
    // Past the header budget counts as cut short. (Unreachable in practice: every
    // header length is even and an extension header may not end past byte 512, so a
    // transport header starts at 510 at the latest.)
    if at > MAX_HEADER_BYTES {
        return Err(Malformed::L4Truncated);
    }
    // A first fragment must hold the whole header: the rest, with the ports or flags a
    // rule looks at, would be in a fragment no rule can see (RFC 1858, RFC 3128).
    let h = bytes(frame, at, needed).ok_or(short(first_fragment, Malformed::L4Truncated))?;
    if protocol == PROTO_TCP {
        // Data Offset: the header's length in 32-bit words, at least the fixed 5. A
        // first fragment may leave options to the next; a whole segment must hold it.
        let header_len = usize::from(h[12] >> 4) * 4;
        if header_len < 20 || !first_fragment && at + header_len > frame.len() {
            return Err(Malformed::TcpBadDataOffset);
        }
    }
    Ok(match protocol {
        PROTO_TCP => Transport::Ports { src: u16_at(h, 0), dst: u16_at(h, 2), tcp_flags: Some(h[13]) },
        PROTO_UDP | PROTO_SCTP => Transport::Ports { src: u16_at(h, 0), dst: u16_at(h, 2), tcp_flags: None },
        _ => Transport::Icmp { icmp_type: h[0], code: h[1], ident: u16_at(h, 4) },
    })
}
