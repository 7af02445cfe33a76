//! The packet log (`log` on a rule, `set default block log`): the first bytes of the
//! packet with the deciding rule, action, interface, direction and time go into a ring
//! buffer (`LOG_RING`, pinned: `xdpwall log` reads it), at most `set log-rate` records a
//! second. Written, suppressed (over the log rate) and lost (ring full) are counted.

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use filter_common::{LOG_CAPTURE, LOG_RING_BYTES, LogCounters, LogRecord, RateLimit};

use crate::rate::{conforms, count_logged};

shared_map! {
    /// Logged packets. Pinned: the reader outlives rulesets.
    LOG_RING: RingBuf = RingBuf::pinned(LOG_RING_BYTES, 0);
}
shared_map! {
    /// The log's rate limiter (`set log-rate`), shared by all CPUs and both hooks.
    LOG_LIMIT: Array<RateLimit> = Array::with_max_entries(1, 0);
}
shared_map! {
    /// Records written, suppressed and lost. Pinned.
    LOG_COUNTERS: PerCpuArray<LogCounters> = PerCpuArray::pinned(1, 0);
}

/// Where the packet's bytes come from.
#[derive(Clone, Copy)]
pub enum Frame {
    /// An XDP frame.
    Xdp(*mut xdp_md),
    /// A socket buffer (TC egress).
    Skb(*mut __sk_buff),
}

/// What is logged about the packet besides its bytes.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Rule number from 1, or `LOG_RULE_DEFAULT`.
    pub rule: u32,
    /// The rule's counter slot (its `RULE_EVENTS` entry counts the record), or
    /// `u32::MAX` for the default policy.
    pub counter: u32,
    pub action: u32,
    pub ifindex: u32,
    pub len: u32,
    pub direction: u8,
}

/// Logs one packet, unless the log is over its rate or the ring is full (counted).
#[inline(never)]
pub fn record(frame: Frame, e: &Entry) {
    let Some(counters) = LOG_COUNTERS.get_ptr_mut(0) else { return };
    let Some(limit) = LOG_LIMIT.get_ptr_mut(0) else { return };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: map value pointers, valid while the program runs; the counters are per
    // CPU, the limiter's word only ever accessed atomically.
    unsafe {
        if !conforms(&raw mut (*limit).tat_ns, (*limit).interval_ns, (*limit).tolerance_ns, now) {
            (*counters).suppressed += 1;
            return;
        }
    }
    let Some(mut slot) = LOG_RING.reserve::<LogRecord>(0) else {
        // SAFETY: as above.
        unsafe { (*counters).lost += 1 };
        return;
    };
    let rec = slot.as_mut_ptr();
    // The length is masked into 1..=LOG_CAPTURE where the verifier can see it.
    let want = if e.len < LOG_CAPTURE as u32 { e.len } else { LOG_CAPTURE as u32 };
    let want = (want & (2 * LOG_CAPTURE as u32 - 1)).clamp(1, LOG_CAPTURE as u32);
    // SAFETY: `rec` is a reserved record of the ring, written field by field here (it
    // is too big for the stack) and then submitted.
    unsafe {
        let data = (&raw mut (*rec).data).cast();
        let copied = match frame {
            Frame::Xdp(ctx) => bpf_xdp_load_bytes(ctx, 0, data, want),
            Frame::Skb(skb) => bpf_skb_load_bytes(skb.cast(), 0, data, want),
        };
        (*rec).time_ns = now;
        (*rec).ifindex = e.ifindex;
        (*rec).rule = e.rule;
        (*rec).packet_len = e.len;
        (*rec).captured = if copied == 0 { want } else { 0 };
        (*rec).action = e.action as u8;
        (*rec).direction = e.direction;
        (*rec)._pad = [0; 6];
    }
    slot.submit(0);
    // SAFETY: as above.
    unsafe { (*counters).written += 1 };
    count_logged(e.counter);
}
