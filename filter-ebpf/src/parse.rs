//! Bounds-checked header parsing: Ethernet, up to two VLAN tags, IPv4 (options,
//! fragments), IPv6 with a bounded walk of extension headers, and the L4 fields the
//! classifier keys on. Every read goes through [`Cursor::read`], which checks the
//! frame's end, and every offset stays below `MAX_HEADER_BYTES` for the verifier.

use filter_common::{
    FAMILY_V4, FAMILY_V6, ICMP_NONE, MAX_HEADER_BYTES, MAX_IPV6_EXT, Malformed, PORT_NONE, TCP_FLAGS_NONE, VLAN_NONE,
};

use filter_common::wire::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};

/// The classifier's keys for one packet (see filter-common for their encodings).
pub struct Fields {
    /// FAMILY_V4 or FAMILY_V6.
    pub family: u32,
    pub proto: u8,
    /// The addresses in the packet (4 or 16 bytes by `family`). Pointers, not copies:
    /// the packet outlives the program run, and copying 32 unaligned bytes through
    /// every call costs more than the rest of the parse.
    pub src: *const u8,
    pub dst: *const u8,
    pub sport_key: u32,
    pub dport_key: u32,
    pub tcp_flags_key: u32,
    pub icmp_key: u32,
    /// ICMP/ICMPv6 echo identifier (bytes 4-5), when `icmp_key` is set.
    pub icmp_id: u16,
    /// TCP: the number connection tracking checks a handshake by: a SYN-ACK's
    /// sequence number, any other segment's acknowledgement number (one field, not two:
    /// `Fields` lives on the stack all the classifier's calls share).
    pub tcp_handshake: u32,
    pub vlan_key: u32,
}

pub enum Outcome {
    Ip(Fields),
    /// ARP, LLDP, ...: not ours to judge.
    NonIp,
    Malformed(Malformed),
}

/// A position in the frame.
struct Cursor {
    start: usize,
    end: usize,
    off: usize,
    /// Offset where the packet ends when its IP length field says it ends before the
    /// frame does (Ethernet padding is not packet); `usize::MAX` until then. Checked
    /// beside `end`, never instead of it: the verifier bounds reads by the frame's end
    /// pointer only.
    limit: usize,
}

impl Cursor {
    /// `N` bytes at the cursor, or `None` when the packet is shorter or the offset is
    /// beyond `MAX_HEADER_BYTES`. The frame lives as long as the program runs, hence
    /// `'static`.
    #[inline(always)]
    fn read<const N: usize>(&self) -> Option<&'static [u8; N]> {
        if self.off > MAX_HEADER_BYTES {
            return None;
        }
        let p = self.start + self.off;
        if p + N > self.end {
            return None;
        }
        if self.off + N > self.limit {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the frame, checked just above.
        Some(unsafe { &*(p as *const [u8; N]) })
    }

    /// Ends the packet `len` bytes after offset `at`, if that is within the frame.
    #[inline(always)]
    fn set_packet_end(&mut self, at: usize, len: usize) -> bool {
        if at + len > self.end - self.start {
            return false;
        }
        // Opaque to LLVM: knowing the limit lies within the frame, it would fold the
        // frame-end check of `read` into the limit's, which the verifier cannot use.
        self.limit = core::hint::black_box(at + len);
        true
    }
}

#[inline(always)]
fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

macro_rules! read_or {
    ($cur:expr, $n:literal, $reason:expr) => {
        match $cur.read::<$n>() {
            Some(b) => b,
            None => return Outcome::Malformed($reason),
        }
    };
}

/// Parses the frame in `[start, end)` (packet pointers of an XDP or TC context).
///
/// `LENGTHS`: check the IP length fields against the frame and read no further than
/// they say. XDP sees whole frames; TC egress sees an skb's linear part only, and GSO
/// packets whose length fields describe the whole super-packet, so it does not check.
#[inline(always)]
pub fn parse<const LENGTHS: bool>(start: usize, end: usize) -> Outcome {
    parse_at::<LENGTHS>(start, end, &mut Offsets::default())
}

/// Where the headers of a parsed IP packet start: what an answer to it is built from.
/// Kept out of [`Fields`], which lives on the stack the classifier's calls share.
#[derive(Clone, Copy, Default)]
pub struct Offsets {
    /// The IP header (after Ethernet and VLAN tags).
    pub l3: usize,
    /// The upper-layer header, or 0 when this packet has none (a later fragment).
    pub l4: usize,
}

/// [`parse`], also recording where the IP and upper-layer headers start.
#[inline(always)]
pub fn parse_at<const LENGTHS: bool>(start: usize, end: usize, offsets: &mut Offsets) -> Outcome {
    let mut cur = Cursor { start, end, off: 0, limit: usize::MAX };
    let eth = read_or!(cur, 14, Malformed::EthTruncated);
    let mut ethertype = be16(eth, 12);
    cur.off = 14;

    // The outer tag is the one `vlan N` matches (as nftables' `vlan id` does).
    let mut vlan_key = VLAN_NONE;
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag = read_or!(cur, 4, Malformed::VlanTruncated);
        if vlan_key == VLAN_NONE {
            vlan_key = (be16(tag, 0) & 0x0fff) as u32;
        }
        ethertype = be16(tag, 2);
        cur.off += 4;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Outcome::Malformed(Malformed::VlanTooMany);
    }

    offsets.l3 = cur.off;
    // `has_l4`: the upper-layer header is in this packet (not a later fragment);
    // `partial`: this is a first fragment, more follow.
    let (family, src, dst, proto, has_l4, partial) = match ethertype {
        ETH_P_IP => {
            let l3 = cur.off;
            let ip = read_or!(cur, 20, Malformed::Ipv4Truncated);
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 {
                return Outcome::Malformed(Malformed::Ipv4BadHeader);
            }
            let frag = be16(ip, 6);
            let frag_offset = frag & 0x1fff;
            let (src, dst) = (ip[12..].as_ptr(), ip[16..].as_ptr());
            let proto = ip[9];
            // Options: the whole header must be in the frame.
            cur.off += ihl - 1;
            read_or!(cur, 1, Malformed::Ipv4Truncated);
            cur.off += 1;
            // Total Length 0 says nothing (BIG TCP GRO packets seen by generic XDP):
            // the frame's end applies. The kernel drops other zero lengths itself.
            let total = be16(ip, 2) as usize;
            if LENGTHS && total != 0 && (total < ihl || !cur.set_packet_end(l3, total)) {
                return Outcome::Malformed(Malformed::Ipv4BadLength);
            }
            if frag_offset == 1 && proto == IPPROTO_TCP {
                return Outcome::Malformed(Malformed::FragmentOverlap);
            }
            (FAMILY_V4, src, dst, proto, frag_offset == 0, frag_offset == 0 && frag & 0x2000 != 0)
        }
        ETH_P_IPV6 => {
            let l3 = cur.off;
            let ip = read_or!(cur, 40, Malformed::Ipv6Truncated);
            if ip[0] >> 4 != 6 {
                return Outcome::Malformed(Malformed::Ipv6BadHeader);
            }
            let (src, dst) = (ip[8..].as_ptr(), ip[24..].as_ptr());
            cur.off += 40;
            // Payload Length 0: a jumbogram (RFC 2675) or a BIG TCP GRO packet; the
            // frame's end applies.
            let payload = be16(ip, 4) as usize;
            if LENGTHS && payload != 0 && !cur.set_packet_end(l3, 40 + payload) {
                return Outcome::Malformed(Malformed::Ipv6BadLength);
            }
            let (proto, has_l4, partial) = match walk_ipv6_ext(&mut cur, ip[6]) {
                Ok(v) => v,
                Err(reason) => return Outcome::Malformed(reason),
            };
            (FAMILY_V6, src, dst, proto, has_l4, partial)
        }
        _ => return Outcome::NonIp,
    };

    let mut fields = Fields {
        family,
        proto,
        src,
        dst,
        sport_key: PORT_NONE,
        dport_key: PORT_NONE,
        tcp_flags_key: TCP_FLAGS_NONE,
        icmp_key: ICMP_NONE,
        icmp_id: 0,
        tcp_handshake: 0,
        vlan_key,
    };
    // Only the first fragment carries the L4 header.
    if !has_l4 {
        return Outcome::Ip(fields);
    }
    offsets.l4 = cur.off;
    // An L4 header cut short: in a first fragment, the rest of it is in another
    // fragment, where no rule can see it.
    let short = if partial { Malformed::FragmentTiny } else { Malformed::L4Truncated };
    match proto {
        IPPROTO_TCP => {
            let tcp = read_or!(cur, 20, short);
            fields.sport_key = be16(tcp, 0) as u32;
            fields.dport_key = be16(tcp, 2) as u32;
            fields.tcp_flags_key = tcp[13] as u32;
            let syn_ack = filter_common::wire::TCP_SYN | filter_common::wire::TCP_ACK;
            let at = if tcp[13] & syn_ack == syn_ack { 4 } else { 8 };
            fields.tcp_handshake = u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
            // A first fragment may leave options to the next one; a whole segment
            // must hold its header (the kernel drops it otherwise).
            let data_offset = (tcp[12] >> 4) as usize * 4;
            let past_end = cur.off + data_offset > cur.limit || cur.off + data_offset > end - start;
            if data_offset < 20 || LENGTHS && !partial && past_end {
                return Outcome::Malformed(Malformed::TcpBadDataOffset);
            }
        }
        IPPROTO_UDP => {
            let udp = read_or!(cur, 8, short);
            fields.sport_key = be16(udp, 0) as u32;
            fields.dport_key = be16(udp, 2) as u32;
        }
        IPPROTO_SCTP => {
            let sctp = read_or!(cur, 12, short);
            fields.sport_key = be16(sctp, 0) as u32;
            fields.dport_key = be16(sctp, 2) as u32;
        }
        IPPROTO_ICMP if family == FAMILY_V4 => {
            let icmp = read_or!(cur, 8, short);
            fields.icmp_key = (icmp[0] as u32) << 8 | icmp[1] as u32;
            fields.icmp_id = be16(icmp, 4);
        }
        IPPROTO_ICMPV6 if family == FAMILY_V6 => {
            let icmp = read_or!(cur, 8, short);
            fields.icmp_key = (icmp[0] as u32) << 8 | icmp[1] as u32;
            fields.icmp_id = be16(icmp, 4);
        }
        _ => {}
    }
    Outcome::Ip(fields)
}

/// Walks IPv6 extension headers from `next` at the cursor; returns the upper-layer
/// protocol, whether its header is in this packet (not a later fragment) and whether
/// this is a first fragment with more to follow, with the cursor on the upper-layer
/// header.
///
/// A Fragment header with a non-zero offset ends the walk: what follows is fragment
/// data, not headers (RFC 8200 4.5), so its Next Header is the protocol and there is
/// no L4 header. Walking on would let a later fragment whose data imitates a second
/// Fragment header (offset 0) and a TCP header be judged by that fake header. At
/// offset 1 (8 bytes) with TCP next, it is the IPv6 form of RFC 1858's overlapping
/// fragment and is dropped. After a first fragment's Fragment header, a header cut
/// short is a tiny fragment: RFC 8200 wants the whole chain up to the upper-layer
/// header in the first fragment.
#[inline(always)]
fn walk_ipv6_ext(cur: &mut Cursor, mut next: u8) -> Result<(u8, bool, bool), Malformed> {
    let mut partial = false;
    for _ in 0..MAX_IPV6_EXT {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h = cur.read::<2>().ok_or(ext_error(cur, partial))?;
                next = h[0];
                (h[1] as usize + 1) * 8
            }
            IPPROTO_AH => {
                let h = cur.read::<2>().ok_or(ext_error(cur, partial))?;
                next = h[0];
                (h[1] as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let h = cur.read::<8>().ok_or(ext_error(cur, partial))?;
                let offset = be16(h, 2) >> 3;
                if offset != 0 {
                    if offset == 1 && h[0] == IPPROTO_TCP {
                        return Err(Malformed::FragmentOverlap);
                    }
                    return Ok((h[0], false, false));
                }
                // M flag: a first fragment (an atomic fragment, offset 0 without M, is
                // a whole packet).
                if h[3] & 1 != 0 {
                    partial = true;
                }
                next = h[0];
                8
            }
            _ => return Ok((next, true, partial)),
        };
        // The whole extension header must be in the frame.
        cur.off += len - 1;
        cur.read::<1>().ok_or(ext_error(cur, partial))?;
        cur.off += 1;
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Err(Malformed::Ipv6ExtTooMany)
        }
        _ => Ok((next, true, partial)),
    }
}

/// A failed read in the extension walk: past the header budget is "too many", else
/// the packet was cut short (in a first fragment: a tiny fragment).
#[inline(always)]
fn ext_error(cur: &Cursor, partial: bool) -> Malformed {
    if cur.off > MAX_HEADER_BYTES {
        Malformed::Ipv6ExtTooMany
    } else if partial {
        Malformed::FragmentTiny
    } else {
        Malformed::Ipv6ExtTruncated
    }
}

impl Fields {
    /// The key of the protocol array: family and protocol (computed, not kept: every
    /// byte of `Fields` is on the stack all the classifier's calls share).
    #[inline(always)]
    pub fn proto_key(&self) -> u32 {
        self.family * 256 + self.proto as u32
    }

    /// An IPv4 address at `p` (from `src`/`dst`).
    #[inline(always)]
    pub fn v4(p: *const u8) -> [u8; 4] {
        // SAFETY: `p` points at 4 address bytes inside the frame, checked by the parse.
        unsafe { core::ptr::read_unaligned(p as *const [u8; 4]) }
    }

    /// An address at `p` widened to 16 bytes (IPv4 in the first 4, the rest zero).
    #[inline(always)]
    pub fn addr16(&self, p: *const u8) -> [u8; 16] {
        if self.family == FAMILY_V4 {
            let a = Self::v4(p);
            [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        } else {
            // SAFETY: `p` points at 16 address bytes inside the frame.
            unsafe { core::ptr::read_unaligned(p as *const [u8; 16]) }
        }
    }
}
