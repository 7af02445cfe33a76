//! Reference programs for benchmarks, in the same object so they are built and
//! loaded exactly like the filter (see benches/ and `cargo xtask bench`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// The ceiling: drop everything, doing nothing else.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}
