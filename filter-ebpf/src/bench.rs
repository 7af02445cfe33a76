//! Reference programs for benchmarks, in the same object so they are built and
//! loaded exactly like the filter (see benches/ and `cargo xtask bench`).
//!
//! - [`bench_drop`]: the ceiling every throughput figure is compared with.
//! - [`bench_tx`]: the traffic generator. BPF_PROG_TEST_RUN with XDP live frames runs
//!   it on a template frame and XDP_TX sends the result out of the interface named
//!   by the run's `ingress_ifindex`, at several Mpps, with no pktgen module.

use aya_ebpf::{
    Global, bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::xdp,
    programs::XdpContext,
};

/// The ceiling: drop everything, doing nothing else.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Flows `bench_tx` spreads its frames over (1: send the template unchanged).
#[unsafe(no_mangle)]
static BENCH_FLOWS: Global<u32> = Global::new(1);

/// Ethernet + IPv4 (no options) + UDP: the template the generator rewrites.
const ETH_LEN: usize = 14;
const IP_SRC_LAST: usize = ETH_LEN + 15;
const IP_CSUM: usize = ETH_LEN + 10;
const UDP_SPORT: usize = ETH_LEN + 20;
const UDP_CSUM: usize = ETH_LEN + 26;
const HEADERS: usize = ETH_LEN + 20 + 8;

/// The generator: sends the frame back out (XDP_TX). With `BENCH_FLOWS` = N > 1,
/// each frame becomes one of N flows drawn at random: flow f gets source address
/// `template & !15 | f % 16` (it stays in the template's /28) and source port
/// `32768 + f / 16`, with the IPv4 checksum fixed and the UDP checksum cleared
/// (zero means "none" for UDP over IPv4). The template must be an untagged
/// IPv4/UDP frame without IP options; anything else is sent unchanged.
#[xdp]
pub fn bench_tx(ctx: XdpContext) -> u32 {
    let flows = BENCH_FLOWS.load();
    if flows > 1 {
        set_flow(&ctx, flows);
    }
    xdp_action::XDP_TX
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
