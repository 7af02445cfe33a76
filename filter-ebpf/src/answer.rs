//! `block return`: a blocked packet answered from the data plane, as pf answers it.
//!
//! The frame is rewritten in place into the answer and sent back out of the interface
//! it came in on (XDP_TX): the MAC addresses swapped, VLAN tags kept, the IP addresses
//! swapped (the answer comes from the blocked packet's destination), and then
//! - TCP (`return`, `return-rst`): an RST per RFC 9293 3.10.7.1: to a segment with ACK,
//!   `<SEQ=SEG.ACK><CTL=RST>`; to one without, `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`
//!   (SYN and FIN count in SEG.LEN). IP options, extension headers and TCP options
//!   are not copied: the answer is 40 (IPv4) or 60 (IPv6) bytes after the link header.
//! - anything else (`return`, `return-icmp`, `return-icmp6`; TCP too with
//!   `return-icmp`): an ICMP destination unreachable quoting the blocked packet's IP
//!   header and the first 8 bytes of its payload (RFC 792), or an ICMPv6 destination
//!   unreachable quoting as much of the packet as fits in 1280 bytes (RFC 4443). The
//!   frame grows at its head (`bpf_xdp_adjust_head`) and is cut after the quote
//!   (`bpf_xdp_adjust_tail`).
//!
//! Never answered (dropped, as pf and RFC 1122/1812/4443 want): RSTs, ICMP errors and
//! any ICMP (ICMPv6 over IPv6), later fragments, frames to or from an Ethernet
//! multicast or broadcast address, packets to a multicast or broadcast IP address,
//! or from an address that names no single host (unspecified, loopback, multicast,
//! IPv4 class E and limited broadcast). A spoofed flood can make the box reflect at
//! most `answer::RATE_PER_CPU` answers a second per CPU (a per-CPU GCRA bucket);
//! blocked packets over the rate are dropped and counted as suppressed.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::{map, xdp},
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use filter_common::{
    FAMILY_V4, RULE_ICMP_CODE_SHIFT, RULE_ICMP6_CODE_SHIFT, RULE_RETURN_ICMP, RULE_RETURN_RST, answer, slot,
    wire::{
        ICMP_UNREACH, ICMP6_DST_UNREACH, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
};

use crate::parse::{Fields, Offsets, Outcome};

/// What an answer needs of a blocked packet's parse, in one register (the parse's
/// [`Fields`] are not kept alive past the verdict: they would cost stack elsewhere).
#[derive(Clone, Copy)]
pub struct Blocked(u64);

impl Blocked {
    /// Packs the fields an answer reads.
    #[inline(always)]
    pub fn of(f: &Fields, at: Offsets) -> Blocked {
        Blocked(
            (at.l3 & 0xffff) as u64
                | ((at.l4 & 0xffff) as u64) << 16
                | (f.proto as u64) << 32
                | ((f.family == FAMILY_V4) as u64) << 40
                | ((f.tcp_flags_key & 0xff) as u64) << 48,
        )
    }
    #[inline(always)]
    fn l3(self) -> usize {
        (self.0 & 0xffff) as usize
    }
    #[inline(always)]
    fn l4(self) -> usize {
        ((self.0 >> 16) & 0xffff) as usize
    }
    #[inline(always)]
    fn proto(self) -> u8 {
        (self.0 >> 32) as u8
    }
    #[inline(always)]
    fn v4(self) -> bool {
        (self.0 >> 40) & 1 != 0
    }
    #[inline(always)]
    fn tcp_flags(self) -> u8 {
        (self.0 >> 48) as u8
    }
}

// All three pinned, shared by every generation: during an apply, the old generation's
// filter may tail-call the new generation's answer program.
shared_map! {
    /// Per CPU: the time (ns) from which the next answer conforms to the rate (GCRA's
    /// theoretical arrival time).
    ANSWER_BUCKET: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);
}
shared_map! {
    /// The answer program at index 0, set by the loader.
    ANSWER_PROGS: ProgramArray = ProgramArray::pinned(1, 0);
}
shared_map! {
    /// Per CPU: the deciding rule's answer flags, for the answer program.
    ANSWER_ARGS: PerCpuArray<u32> = PerCpuArray::pinned(1, 0);
}

/// Hands the blocked packet to the answer program with the deciding rule's answer
/// flags (a tail call: verified on its own, so the filter's verification does not grow
/// with the answer's every path; the answer program parses the packet again for the
/// header offsets, which the filter does not keep). Returns only when the answer
/// program could not be called: the packet is then dropped.
#[inline(always)]
pub fn tail_call(ctx: &XdpContext, flags: u32) {
    let Some(args) = ANSWER_ARGS.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot; the tail call below runs on this CPU before any other
    // program here can write it.
    unsafe {
        *args = flags;
        let _ = ANSWER_PROGS.tail_call(ctx, 0);
    }
}

shared_program!(xdpwall_answer, PROGRAM_ANSWER);

/// The answer program: answers the packet `ANSWER_ARGS` describes (XDP_TX) or drops it,
/// and counts which.
#[xdp]
pub fn xdpwall_answer(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let Some(&flags) = ANSWER_ARGS.get(0) else { return xdp_action::XDP_DROP };
    let mut at = Offsets::default();
    let Outcome::Ip(fields) = crate::parse::parse_at::<true>(ctx.data(), ctx.data_end(), &mut at) else {
        return xdp_action::XDP_DROP;
    };
    match answer(&ctx, Blocked::of(&fields, at), flags) {
        Answer::Sent => {
            crate::count(slot::ANSWERS_SENT, len);
            xdp_action::XDP_TX
        }
        Answer::Suppressed => {
            crate::count(slot::ANSWERS_SUPPRESSED, len);
            xdp_action::XDP_DROP
        }
        Answer::None => xdp_action::XDP_DROP,
    }
}

/// What became of a blocked packet that a `block return` rule would answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The frame is now the answer: send it (XDP_TX).
    Sent,
    /// Over the rate: drop it without an answer.
    Suppressed,
    /// Not to be answered (or the frame could not be rewritten): drop it.
    None,
}

/// Longest link header: Ethernet and two VLAN tags.
const MAX_L2: usize = 22;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
/// ICMP and ICMPv6 error headers: type, code, checksum, 4 unused bytes.
const ICMP_LEN: usize = 8;

/// Answers the blocked packet `f` as the rule's `flags` say (see the module docs).
#[inline(always)]
fn answer(ctx: &XdpContext, f: Blocked, flags: u32) -> Answer {
    let v4 = f.v4();
    let tcp = f.proto() == IPPROTO_TCP;
    let rst = tcp && flags & RULE_RETURN_RST != 0;
    let icmp_proto = if v4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
    if !rst && (flags & RULE_RETURN_ICMP == 0 || f.proto() == icmp_proto) {
        return Answer::None;
    }
    if f.l4() == 0 || !may_answer(ctx, f) {
        return Answer::None;
    }
    if tcp && f.tcp_flags() & TCP_RST != 0 {
        return Answer::None;
    }
    if !conforms() {
        return Answer::Suppressed;
    }
    let sent = match (rst, v4) {
        (true, true) => tcp_rst::<true>(ctx, f),
        (true, false) => tcp_rst::<false>(ctx, f),
        (false, true) => icmp4(ctx, f, (flags >> RULE_ICMP_CODE_SHIFT) as u8),
        (false, false) => icmp6(ctx, f, (flags >> RULE_ICMP6_CODE_SHIFT) as u8),
    };
    if sent.is_some() { Answer::Sent } else { Answer::None }
}

/// Whether the frame comes from and goes to one host: no Ethernet group address, no
/// IP address that names many hosts or none.
#[inline(always)]
fn may_answer(ctx: &XdpContext, f: Blocked) -> bool {
    let (start, end) = (ctx.data(), ctx.data_end());
    let l3 = f.l3();
    // The Ethernet header at a constant offset, for the verifier (the IP header's check
    // below has a variable one).
    if start + 14 > end || l3 > MAX_L2 {
        return false;
    }
    let ip = at(start, l3);
    if ip + IPV6_LEN > end && !f.v4() || ip + IPV4_LEN > end {
        return false;
    }
    // SAFETY: the 12 MAC bytes lie inside the frame (before the IP header, checked above).
    let (dst_mac0, src_mac0) = unsafe { (*(start as *const u8), *((start + 6) as *const u8)) };
    if (dst_mac0 | src_mac0) & 1 != 0 {
        return false;
    }
    // SAFETY: the IP header lies inside the frame (checked above).
    unsafe {
        if f.v4() {
            let (src, dst) = (get32(ip + 12) >> 24, get32(ip + 16) >> 24);
            // 0/8 (this network), 127/8 (loopback), 224/4 (multicast), 240/4 (class E
            // and the limited broadcast).
            src != 0 && src != 127 && src < 224 && dst < 224
        } else {
            let src = get_addr::<false>(ip + 8);
            let unspecified_or_loopback = src[0] | src[1] | src[2] == 0 && src[3] <= 1;
            // ff00::/8: multicast.
            !unspecified_or_loopback && src[0] >> 24 != 0xff && get32(ip + 24) >> 24 != 0xff
        }
    }
}

/// Takes one answer from this CPU's bucket, if the rate allows it (GCRA: one answer
/// every `1 / RATE_PER_CPU` s, up to `BURST` at once).
#[inline(always)]
fn conforms() -> bool {
    const INTERVAL: u64 = 1_000_000_000 / answer::RATE_PER_CPU;
    let Some(tat) = ANSWER_BUCKET.get_ptr_mut(0) else { return false };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: this CPU's value; nothing else writes it while the program runs here.
    let tat = unsafe { &mut *tat };
    let next = if *tat > now { *tat } else { now };
    if next - now >= INTERVAL * answer::BURST {
        return false;
    }
    *tat = next + INTERVAL;
    true
}

/// Reads a big-endian u16 at `p`.
///
/// # Safety
/// `p..p + 2` must lie inside the frame.
#[inline(always)]
unsafe fn get16(p: usize) -> u16 {
    // SAFETY: the caller's.
    unsafe { u16::from_be_bytes(*(p as *const [u8; 2])) }
}

/// Reads a big-endian u32 at `p`.
///
/// # Safety
/// `p..p + 4` must lie inside the frame.
#[inline(always)]
unsafe fn get32(p: usize) -> u32 {
    // SAFETY: the caller's.
    unsafe { u32::from_be_bytes(*(p as *const [u8; 4])) }
}

// Headers are written field by field into the frame and summed from there: arrays on
// the stack, copied in, made LLVM lower the copies in a way that blew the stack of
// other functions (connection tracking's) past the BPF limit.

/// Writes a byte at `p`.
///
/// # Safety
/// `p` must lie inside the frame.
#[inline(always)]
unsafe fn put8(p: usize, v: u8) {
    // SAFETY: the caller's.
    unsafe { *(p as *mut u8) = v }
}

/// Writes `v` big-endian at `p`.
///
/// # Safety
/// `p..p + 2` must lie inside the frame.
#[inline(always)]
unsafe fn put16(p: usize, v: u16) {
    // SAFETY: the caller's.
    unsafe {
        put8(p, (v >> 8) as u8);
        put8(p + 1, v as u8);
    }
}

/// Writes `v` big-endian at `p`.
///
/// # Safety
/// `p..p + 4` must lie inside the frame.
#[inline(always)]
unsafe fn put32(p: usize, v: u32) {
    // SAFETY: the caller's.
    unsafe {
        put16(p, (v >> 16) as u16);
        put16(p + 2, v as u16);
    }
}

/// The sum of the `N` big-endian 16-bit words at `p`, unfolded.
///
/// # Safety
/// `p..p + 2 * N` must lie inside the frame.
#[inline(always)]
unsafe fn sum_at<const N: usize>(p: usize) -> u32 {
    let mut sum = 0u32;
    for i in 0..N {
        // SAFETY: the caller's.
        sum += unsafe { get16(p + 2 * i) } as u32;
    }
    sum
}

/// `start + off` as a pointer LLVM cannot recompute: the verifier learns a pointer's
/// bounds from the check made on that very register, and LLVM would otherwise fold
/// `start + off + N > end` into another sum and use a fresh `start + off` after it.
#[inline(always)]
fn at(start: usize, off: usize) -> usize {
    core::hint::black_box(start + off)
}

/// Folds a sum of 16-bit words into the Internet checksum (RFC 1071).
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// An IP address (4 or 16 bytes) in four big-endian words, the unused ones 0.
type Addr = [u32; 4];

/// Reads the address at `p`.
///
/// # Safety
/// `p..p + 4` (`V4`) or `p..p + 16` must lie inside the frame.
#[inline(always)]
unsafe fn get_addr<const V4: bool>(p: usize) -> Addr {
    // SAFETY: the caller's.
    unsafe { if V4 { [get32(p), 0, 0, 0] } else { [get32(p), get32(p + 4), get32(p + 8), get32(p + 12)] } }
}

/// Writes the address `a` at `p`.
///
/// # Safety
/// As [`get_addr`].
#[inline(always)]
unsafe fn put_addr<const V4: bool>(p: usize, a: Addr) {
    // SAFETY: the caller's.
    unsafe {
        put32(p, a[0]);
        if !V4 {
            put32(p + 4, a[1]);
            put32(p + 8, a[2]);
            put32(p + 12, a[3]);
        }
    }
}

/// The sum of an address's 16-bit words (for pseudo-headers).
#[inline(always)]
fn addr_sum(a: Addr) -> u32 {
    let mut sum = 0;
    for w in a {
        sum += (w >> 16) + (w & 0xffff);
    }
    sum
}

/// Writes an IP header at `ip`: `len` bytes of packet (IPv4) or of payload (IPv6) from
/// `src` to `dst`, with the checksum (IPv4).
///
/// # Safety
/// The header's 20 (`V4`) or 40 bytes at `ip` must lie inside the frame.
#[inline(always)]
unsafe fn put_ip_header<const V4: bool>(ip: usize, len: u16, proto: u8, src: Addr, dst: Addr) {
    // SAFETY: the caller's.
    unsafe {
        if V4 {
            put32(ip, 0x4500_0000 | len as u32);
            put32(ip + 4, 0); // identification, flags, fragment offset
            put8(ip + 8, answer::TTL);
            put8(ip + 9, proto);
            put16(ip + 10, 0);
            put_addr::<true>(ip + 12, src);
            put_addr::<true>(ip + 16, dst);
            put16(ip + 10, fold(sum_at::<10>(ip)));
        } else {
            put32(ip, 0x6000_0000);
            put16(ip + 4, len);
            put8(ip + 6, proto);
            put8(ip + 7, answer::TTL);
            put_addr::<false>(ip + 8, src);
            put_addr::<false>(ip + 24, dst);
        }
    }
}

/// Swaps the frame's MAC addresses (the link header's first 12 bytes).
///
/// # Safety
/// `start..start + 12` must lie inside the frame.
#[inline(always)]
unsafe fn swap_macs(start: usize) {
    // SAFETY: the caller's.
    unsafe {
        let (dst_hi, dst_lo) = (get32(start), get16(start + 4));
        let (src_hi, src_lo) = (get32(start + 6), get16(start + 10));
        put32(start, src_hi);
        put16(start + 4, src_lo);
        put32(start + 6, dst_hi);
        put16(start + 10, dst_lo);
    }
}

/// Where the IP packet ends: its length field, or the frame's end when the field says
/// nothing (0: a jumbogram or GRO packet).
#[inline(always)]
fn ip_len(start: usize, end: usize, l3: usize, v4: bool) -> Option<usize> {
    let header = if v4 { IPV4_LEN } else { IPV6_LEN };
    let ip = at(start, l3);
    if ip + header > end {
        return None;
    }
    // SAFETY: the IP header's first 20 bytes lie inside the frame (checked above).
    let field = unsafe { if v4 { get16(ip + 2) as usize } else { get16(ip + 4) as usize } };
    Some(match (v4, field) {
        (_, 0) => end - start - l3,
        (true, n) => n,
        (false, n) => IPV6_LEN + n,
    })
}

/// Cuts (or grows) the frame to `len` bytes; false if the kernel refuses.
#[inline(always)]
fn set_len(ctx: &XdpContext, len: usize) -> bool {
    let delta = len as i64 - (ctx.data_end() - ctx.data()) as i64;
    // SAFETY: the helper checks `delta` against the frame itself.
    delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0
}

/// Rewrites the TCP segment into an RST back to its sender (see the module docs).
// Out of line, as are the ICMP answers: each needs a stack frame of its own.
#[inline(never)]
fn tcp_rst<const V4: bool>(ctx: &XdpContext, f: Blocked) -> Option<()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let l3 = f.l3();
    let l4 = f.l4();
    if l3 > MAX_L2 || l4 > filter_common::MAX_HEADER_BYTES || l4 < l3 {
        return None;
    }
    let ip_hdr = if V4 { IPV4_LEN } else { IPV6_LEN };
    // The answer fits in the segment's own bytes: its IP and TCP headers are at least
    // as long as the answer's. (The Ethernet header's check is for the verifier.)
    let (ip, t) = (at(start, l3), at(start, l4));
    if start + 14 > end || t + TCP_LEN > end || ip + ip_hdr + TCP_LEN > end {
        return None;
    }
    let total = ip_len(start, end, l3, V4)?;
    // SAFETY: the TCP header and the IP addresses lie inside the frame (checked above).
    let (sport, dport, seq, ack, off_flags, src, dst) = unsafe {
        let (src, dst) = if V4 {
            (get_addr::<true>(ip + 12), get_addr::<true>(ip + 16))
        } else {
            (get_addr::<false>(ip + 8), get_addr::<false>(ip + 24))
        };
        (get16(t), get16(t + 2), get32(t + 4), get32(t + 8), get16(t + 12), src, dst)
    };
    let flags = off_flags as u8;
    let data_off = ((off_flags >> 12) as usize) * 4;
    let payload = total.saturating_sub(l4 - l3 + data_off) as u32;
    let seg_len = payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
    let (rst_seq, rst_ack, rst_flags) =
        if flags & TCP_ACK != 0 { (ack, 0, TCP_RST) } else { (0, seq.wrapping_add(seg_len), TCP_RST | TCP_ACK) };

    // SAFETY: the link header and the answer's IP and TCP headers lie inside the frame
    // (checked above).
    unsafe {
        swap_macs(start);
        let ip_total = if V4 { IPV4_LEN + TCP_LEN } else { TCP_LEN };
        put_ip_header::<V4>(ip, ip_total as u16, IPPROTO_TCP, dst, src);
        let t = ip + ip_hdr;
        put16(t, dport);
        put16(t + 2, sport);
        put32(t + 4, rst_seq);
        put32(t + 8, rst_ack);
        put8(t + 12, 5 << 4);
        put8(t + 13, rst_flags);
        put32(t + 14, 0); // window, checksum
        put16(t + 18, 0); // urgent pointer
        let pseudo = addr_sum(src) + addr_sum(dst) + IPPROTO_TCP as u32 + TCP_LEN as u32;
        put16(t + 16, fold(pseudo + sum_at::<{ TCP_LEN / 2 }>(t)));
    }
    set_len(ctx, l3 + ip_hdr + TCP_LEN).then_some(())
}

/// Moves the link header `GROW` bytes to the front after the frame grew by that much,
/// swapping its MAC addresses. Copies `MAX_L2` bytes whatever the header's length: the
/// bytes past it are overwritten by the new IP header next.
///
/// # Safety
/// The frame must hold at least `GROW + MAX_L2` bytes.
#[inline(always)]
unsafe fn move_link_header<const GROW: usize>(start: usize) {
    const { assert!(GROW >= MAX_L2) };
    // SAFETY: the caller's; source and destination do not overlap.
    unsafe {
        for i in 0..MAX_L2 / 2 {
            put16(start + 2 * i, get16(start + GROW + 2 * i));
        }
        swap_macs(start);
    }
}

/// Rewrites an IPv4 packet into an ICMP destination unreachable (`code`) back to its
/// sender, quoting its IP header and the first 8 bytes of its payload.
#[inline(never)]
fn icmp4(ctx: &XdpContext, f: Blocked, code: u8) -> Option<()> {
    const GROW: usize = IPV4_LEN + ICMP_LEN;
    let (start, end) = (ctx.data(), ctx.data_end());
    let l3 = f.l3();
    let (ip, total) = blocked_ip::<true>(start, end, l3)?;
    // SAFETY: the IPv4 header's fixed part lies inside the frame (`blocked_ip`).
    let (ihl, src, dst) =
        unsafe { (((get16(ip) >> 8) as usize & 0x0f) * 4, get_addr::<true>(ip + 12), get_addr::<true>(ip + 16)) };
    // The quote: the whole IP header and 8 bytes of payload, all in the packet (not
    // Ethernet padding). Shorter packets are not answered.
    let quote = ihl + answer::ICMP_QUOTE_PAYLOAD;
    if quote > total || ip + quote > end {
        return None;
    }
    let (start, ip) = grow::<GROW>(ctx, l3)?;
    // SAFETY: the frame holds GROW + MAX_L2 bytes, and the new headers end before
    // `l3 + GROW` (both checked by `grow`).
    unsafe {
        move_link_header::<GROW>(start);
        put_ip_header::<true>(ip, (GROW + quote) as u16, IPPROTO_ICMP, dst, src);
        let icmp = ip + IPV4_LEN;
        put_unreach_header(icmp, ICMP_UNREACH, code);
    }
    if !set_len(ctx, l3 + GROW + quote) {
        return None;
    }
    // At most 60 + 8 quoted bytes after the 8-byte header.
    finish_icmp_checksum::<{ (ICMP_LEN + 68) / 2 }>(ctx, l3 + IPV4_LEN, 0)
}

/// Rewrites an IPv6 packet into an ICMPv6 destination unreachable (`code`) back to its
/// sender, quoting as much of it as fits in the IPv6 minimum MTU.
#[inline(never)]
fn icmp6(ctx: &XdpContext, f: Blocked, code: u8) -> Option<()> {
    const GROW: usize = IPV6_LEN + ICMP_LEN;
    let (start, end) = (ctx.data(), ctx.data_end());
    let l3 = f.l3();
    let (ip, total) = blocked_ip::<false>(start, end, l3)?;
    let quote = total.min(end - start - l3).min(answer::ICMP6_QUOTE_MAX);
    // SAFETY: the IPv6 header lies inside the frame (`blocked_ip`).
    let (src, dst) = unsafe { (get_addr::<false>(ip + 8), get_addr::<false>(ip + 24)) };
    let (start, ip) = grow::<GROW>(ctx, l3)?;
    let length = (ICMP_LEN + quote) as u16;
    // SAFETY: as in `icmp4`.
    unsafe {
        move_link_header::<GROW>(start);
        put_ip_header::<false>(ip, length, IPPROTO_ICMPV6, dst, src);
        let icmp = ip + IPV6_LEN;
        put_unreach_header(icmp, ICMP6_DST_UNREACH, code);
    }
    if !set_len(ctx, l3 + GROW + quote) {
        return None;
    }
    // The pseudo-header (RFC 8200 8.1): source, destination, length, next header.
    let pseudo = addr_sum(src) + addr_sum(dst) + length as u32 + IPPROTO_ICMPV6 as u32;
    finish_icmp_checksum::<{ (ICMP_LEN + answer::ICMP6_QUOTE_MAX) / 2 + 1 }>(ctx, l3 + IPV6_LEN, pseudo)
}

/// Writes an ICMP or ICMPv6 destination-unreachable header at `icmp`: type, code, the
/// checksum zeroed (`finish_icmp_checksum` fills it) and the unused word.
///
/// # Safety
/// `icmp..icmp + ICMP_LEN` lies inside the frame.
#[inline(always)]
unsafe fn put_unreach_header(icmp: usize, icmp_type: u8, code: u8) {
    // SAFETY: the caller's.
    unsafe {
        put8(icmp, icmp_type);
        put8(icmp + 1, code);
        put16(icmp + 2, 0);
        put32(icmp + 4, 0);
    }
}

/// The blocked packet's IP header at `l3` (IPv4's fixed 20 bytes when `V4`, else
/// IPv6's 40), all in the frame: its address, and the packet's length by that header.
#[inline(always)]
fn blocked_ip<const V4: bool>(start: usize, end: usize, l3: usize) -> Option<(usize, usize)> {
    if l3 > MAX_L2 {
        return None;
    }
    let ip = at(start, l3);
    if ip + if V4 { IPV4_LEN } else { IPV6_LEN } > end {
        return None;
    }
    Some((ip, ip_len(start, end, l3, V4)?))
}

/// Makes room for `GROW` bytes of new headers before the packet's IP header at `l3`:
/// the frame's new start and the IP header's new place, once the frame is checked to
/// hold `GROW + MAX_L2` bytes and the new headers.
#[inline(always)]
fn grow<const GROW: usize>(ctx: &XdpContext, l3: usize) -> Option<(usize, usize)> {
    // SAFETY: a helper that checks the headroom itself.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(GROW as i32)) } != 0 {
        return None;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    let ip = at(start, l3);
    if start + GROW + MAX_L2 > end || ip + GROW > end {
        return None;
    }
    Some((start, ip))
}

/// Writes the checksum of the ICMP message from `offset` to the frame's end, with
/// `pseudo` (the IPv6 pseudo-header's sum, 0 for ICMP) added; at most `WORDS` 16-bit
/// words are summed.
#[inline(always)]
fn finish_icmp_checksum<const WORDS: usize>(ctx: &XdpContext, offset: usize, pseudo: u32) -> Option<()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if offset > MAX_L2 + IPV6_LEN {
        return None;
    }
    let msg = at(start, offset);
    if msg + ICMP_LEN > end {
        return None;
    }
    let mut sum = pseudo;
    let mut p = msg;
    for _ in 0..WORDS {
        if p + 2 > end {
            break;
        }
        // SAFETY: `p..p + 2` lies inside the frame (checked just above).
        sum += unsafe { get16(p) } as u32;
        p += 2;
    }
    if p < end {
        // SAFETY: the last, odd byte lies inside the frame; it is padded with zero.
        sum += (unsafe { *(p as *const u8) } as u32) << 8;
    }
    // SAFETY: the ICMP header lies inside the frame (checked above).
    unsafe { put16(msg + 2, fold(sum)) };
    Some(())
}
