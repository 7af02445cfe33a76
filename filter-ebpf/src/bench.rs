//! Reference programs for benchmarks, in the same object so they are built and
//! loaded exactly like the filter (see benches/ and `cargo xtask bench`).
//!
//! - [`bench_drop`]: the ceiling every throughput figure is compared with.
//! - [`bench_tx`]: the traffic generator. BPF_PROG_TEST_RUN with XDP live frames runs
//!   it on a template frame and XDP_TX sends the result out of the interface named
//!   by the run's `ingress_ifindex`, at several Mpps, with no pktgen module.

use aya_ebpf::{Global, bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::xdp, programs::XdpContext};

/// The ceiling: drop everything, doing nothing else.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Flows `bench_tx` spreads its frames over (1: send the template unchanged).
#[unsafe(no_mangle)]
static BENCH_FLOWS: Global<u32> = Global::new(1);

/// Spoofed-source mode: when not 0, `bench_tx` replaces the low `BENCH_SPOOF_BITS` bits of
/// every frame's source address by random bits (at most 32 for IPv4, 128 for IPv6), and
/// `BENCH_FLOWS` is ignored. 24 on an IPv4 template: sources from the whole /8 (16M
/// addresses); 96 on an IPv6 one: sources from the whole /32.
#[unsafe(no_mangle)]
static BENCH_SPOOF_BITS: Global<u32> = Global::new(0);

const ETH_LEN: usize = 14;
/// Ethernet + IPv4 (no options) + UDP: the template the flow and IPv4 spoof modes rewrite.
const IP_SRC: usize = ETH_LEN + 12;
const IP_SRC_LAST: usize = ETH_LEN + 15;
const IP_CSUM: usize = ETH_LEN + 10;
const UDP_SPORT: usize = ETH_LEN + 20;
const UDP_CSUM: usize = ETH_LEN + 26;
const HEADERS: usize = ETH_LEN + 20 + 8;
/// Ethernet + IPv6 (no extension headers) + UDP: the IPv6 spoof mode's template.
const IP6_SRC: usize = ETH_LEN + 8;
const UDP6_CSUM: usize = ETH_LEN + 40 + 6;
const HEADERS6: usize = ETH_LEN + 40 + 8;

/// The generator: sends the frame back out (XDP_TX).
///
/// - `BENCH_SPOOF_BITS` = B > 0: each frame gets a source address whose low B bits are
///   random (`bpf_get_prandom_u32`, per frame), the rest the template's; the IPv4 header
///   checksum and the UDP checksum are updated incrementally (RFC 1624), so every frame is
///   valid. The template must be an untagged IPv4/UDP frame without options or an
///   untagged IPv6/UDP frame without extension headers; anything else is sent unchanged.
/// - Else `BENCH_FLOWS` = N > 1: each frame becomes one of N flows drawn at random: flow
///   f gets source address `template & !15 | f % 16` (it stays in the template's /28)
///   and source port `32768 + f / 16`, with the IPv4 checksum fixed and the UDP checksum
///   cleared (zero means "none" for UDP over IPv4). The template must be an untagged
///   IPv4/UDP frame without IP options; anything else is sent unchanged.
#[xdp]
pub fn bench_tx(ctx: XdpContext) -> u32 {
    let bits = BENCH_SPOOF_BITS.load();
    if bits > 0 {
        spoof(&ctx, bits);
    } else {
        let flows = BENCH_FLOWS.load();
        if flows > 1 {
            set_flow(&ctx, flows);
        }
    }
    xdp_action::XDP_TX
}

/// Random bits for the low `bits` of a 32-bit word whose lowest bit is bit `base` of the
/// address (counted from its end), and the mask of the bits replaced.
#[inline(always)]
fn random_word(bits: u32, base: u32) -> (u32, u32) {
    let mask = if bits >= base + 32 {
        u32::MAX
    } else if bits > base {
        (1u32 << (bits - base)) - 1
    } else {
        return (0, 0);
    };
    // SAFETY: a helper without arguments or side effects on the program's state.
    (unsafe { bpf_get_prandom_u32() } & mask, mask)
}

/// Replaces the big-endian 32-bit word at `p` by `(old & !mask) | random`; returns the
/// one's-complement sum of the new words' halves plus the complement of the old ones',
/// which an Internet checksum over the word takes in (RFC 1624: HC' = ~(~HC + ~m + m')).
///
/// # Safety
/// `p..p + 4` must be inside the packet.
#[inline(always)]
unsafe fn rewrite_word(p: *mut u8, random: u32, mask: u32) -> u32 {
    // SAFETY: the caller checked the bounds.
    unsafe {
        let old = u32::from_be_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
        let new = (old & !mask) | random;
        let b = new.to_be_bytes();
        *p = b[0];
        *p.add(1) = b[1];
        *p.add(2) = b[2];
        *p.add(3) = b[3];
        (!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff)
    }
}

/// The checksum at `p` (big-endian) updated by `delta` from [`rewrite_word`]s; a UDP
/// checksum that comes out 0 is sent as 0xffff (0 means "none").
///
/// # Safety
/// `p..p + 2` must be inside the packet.
#[inline(always)]
unsafe fn update_csum(p: *mut u8, delta: u32, udp: bool) {
    // SAFETY: the caller checked the bounds.
    unsafe {
        let old = ((*p as u32) << 8) | *p.add(1) as u32;
        if udp && old == 0 {
            // No checksum (UDP over IPv4 only): nothing to update.
            return;
        }
        let mut sum = (!old & 0xffff) + (delta & 0xffff) + (delta >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let mut csum = !(sum as u16);
        if udp && csum == 0 {
            csum = 0xffff;
        }
        *p = (csum >> 8) as u8;
        *p.add(1) = csum as u8;
    }
}

#[inline(always)]
fn spoof(ctx: &XdpContext, bits: u32) {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + HEADERS > end {
        return;
    }
    let p = start as *mut u8;
    // SAFETY: every offset below is inside the first HEADERS bytes (IPv4) or HEADERS6
    // bytes (IPv6, checked before use).
    unsafe {
        if *p.add(12) == 0x08 && *p.add(13) == 0x00 {
            // Version 4, IHL 5, protocol UDP.
            if *p.add(ETH_LEN) != 0x45 || *p.add(ETH_LEN + 9) != 17 {
                return;
            }
            let (random, mask) = random_word(bits, 0);
            let delta = rewrite_word(p.add(IP_SRC), random, mask);
            update_csum(p.add(IP_CSUM), delta, false);
            // The source is in UDP's pseudo-header too.
            update_csum(p.add(UDP_CSUM), delta, true);
        } else if *p.add(12) == 0x86 && *p.add(13) == 0xdd {
            if start + HEADERS6 > end || *p.add(ETH_LEN + 6) != 17 {
                return;
            }
            // The source's four words, last first: word w holds bits 32w..32w+32.
            let mut delta = 0;
            let (r, m) = random_word(bits, 0);
            delta += rewrite_word(p.add(IP6_SRC + 12), r, m);
            let (r, m) = random_word(bits, 32);
            delta += rewrite_word(p.add(IP6_SRC + 8), r, m);
            let (r, m) = random_word(bits, 64);
            delta += rewrite_word(p.add(IP6_SRC + 4), r, m);
            let (r, m) = random_word(bits, 96);
            delta += rewrite_word(p.add(IP6_SRC), r, m);
            update_csum(p.add(UDP6_CSUM), delta, true);
        }
    }
}

#[inline(always)]
fn set_flow(ctx: &XdpContext, flows: u32) {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + HEADERS > end {
        return;
    }
    let p = start as *mut u8;
    // SAFETY: every offset below is inside the first HEADERS bytes, checked above.
    unsafe {
        // Ethertype IPv4, version 4, IHL 5, protocol UDP.
        if *p.add(12) != 0x08 || *p.add(13) != 0x00 || *p.add(ETH_LEN) != 0x45 || *p.add(ETH_LEN + 9) != 17 {
            return;
        }
        // SAFETY: a helper without arguments or side effects on the program's state.
        let flow = bpf_get_prandom_u32() % flows;
        let last = p.add(IP_SRC_LAST);
        *last = (*last & 0xf0) | (flow & 15) as u8;
        let sport = 32768 + (flow >> 4) as u16;
        *p.add(UDP_SPORT) = (sport >> 8) as u8;
        *p.add(UDP_SPORT + 1) = sport as u8;
        *p.add(UDP_CSUM) = 0;
        *p.add(UDP_CSUM + 1) = 0;
        *p.add(IP_CSUM) = 0;
        *p.add(IP_CSUM + 1) = 0;
        let mut sum = 0u32;
        let mut i = 0;
        while i < 20 {
            let at = ETH_LEN + i;
            sum += ((*p.add(at) as u32) << 8) | *p.add(at + 1) as u32;
            i += 2;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let csum = !(sum as u16);
        *p.add(IP_CSUM) = (csum >> 8) as u8;
        *p.add(IP_CSUM + 1) = csum as u8;
    }
}
