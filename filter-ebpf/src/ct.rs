//! Connection tracking: the fast path for packets of known flows, and flow creation
//! by `keep state` rules. Tables shared by all CPUs and both programs (XDP ingress, TC
//! egress), keyed by the flow's endpoints in canonical order, so replies match
//! whichever interface or core they arrive on.
//!
//! Two LRU tables, so that a flood of flows nobody answers (spoofed sources) cannot
//! evict the flows that matter: new flows start in `STATES_NEW` and move to `STATES`
//! once answered (TCP: the handshake completed; UDP: the responder replied), as Linux
//! conntrack drops unassured entries first. A flood then only evicts other unanswered
//! flows. A flow is in exactly one table, and which one follows from its state
//! ([`answered`]); an RST moves it back (a closed flow needs no protection, and a
//! blind attacker who completes handshakes for spoofed sources gets them reset).
//!
//! A TCP handshake completes only with the acknowledgement number of the responder's
//! SYN-ACK, which a blind attacker does not see; a wrong one closes the flow, so each
//! spoofed SYN buys one guess in 2^32. Limits per source judge sources by completed
//! handshakes (see `source`).

use aya_ebpf::{
    Global,
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use filter_common::{FAMILY_V4, FlowKey, FlowState, ICMP_NONE, PORT_NONE, flow, timeout};

use crate::parse::Fields;
use crate::source::{self, REFUSED, SourceArgs};

use filter_common::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

// The flags as they sit in `Fields::tcp_flags_key`.
const TCP_FIN: u32 = filter_common::wire::TCP_FIN as u32;
const TCP_SYN: u32 = filter_common::wire::TCP_SYN as u32;
const TCP_RST: u32 = filter_common::wire::TCP_RST as u32;
const TCP_ACK: u32 = filter_common::wire::TCP_ACK as u32;

shared_map! {
    /// Answered flows. Pinned: flows outlive a ruleset apply. Its size is `set limit
    /// states N` at load.
    STATES: LruHashMap<FlowKey, FlowState> = LruHashMap::pinned(1, 0);
}
shared_map! {
    /// Flows not answered yet. Pinned, sized at load (half of `STATES`).
    STATES_NEW: LruHashMap<FlowKey, FlowState> = LruHashMap::pinned(1, 0);
}
shared_map! {
    /// A new flow's entry, built here before it is inserted (too big for the stack).
    FLOW_SCRATCH: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);
}

// Timeouts in seconds per state (`set timeout NAME N`), load-time constants.
shared_global! { TIMEOUT_TCP_FIRST: u32 = timeout::TCP_FIRST.default_secs; }
shared_global! { TIMEOUT_TCP_OPENING: u32 = timeout::TCP_OPENING.default_secs; }
shared_global! { TIMEOUT_TCP_ESTABLISHED: u32 = timeout::TCP_ESTABLISHED.default_secs; }
shared_global! { TIMEOUT_TCP_CLOSING: u32 = timeout::TCP_CLOSING.default_secs; }
shared_global! { TIMEOUT_TCP_FINWAIT: u32 = timeout::TCP_FINWAIT.default_secs; }
shared_global! { TIMEOUT_TCP_CLOSED: u32 = timeout::TCP_CLOSED.default_secs; }
shared_global! { TIMEOUT_UDP_FIRST: u32 = timeout::UDP_FIRST.default_secs; }
shared_global! { TIMEOUT_UDP_MULTIPLE: u32 = timeout::UDP_MULTIPLE.default_secs; }
shared_global! { TIMEOUT_ICMP: u32 = timeout::ICMP.default_secs; }

#[inline(always)]
fn timeout_ns(state: u8) -> u64 {
    let secs = match state {
        flow::TCP_SYN_SENT => TIMEOUT_TCP_FIRST.load(),
        flow::TCP_SYN_RECEIVED => TIMEOUT_TCP_OPENING.load(),
        flow::TCP_ESTABLISHED => TIMEOUT_TCP_ESTABLISHED.load(),
        flow::TCP_CLOSING => TIMEOUT_TCP_CLOSING.load(),
        flow::TCP_FIN_WAIT => TIMEOUT_TCP_FINWAIT.load(),
        flow::TCP_CLOSED => TIMEOUT_TCP_CLOSED.load(),
        flow::UDP_SINGLE => TIMEOUT_UDP_FIRST.load(),
        flow::UDP_MULTIPLE => TIMEOUT_UDP_MULTIPLE.load(),
        _ => TIMEOUT_ICMP.load(),
    };
    secs as u64 * 1_000_000_000
}

/// A packet's flow: the canonical key and which endpoint sent it (0 = a, 1 = b).
pub struct Flow {
    key: FlowKey,
    from: u8,
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&a[..8]);
    lo.copy_from_slice(&a[8..]);
    (u64::from_be_bytes(hi), u64::from_be_bytes(lo))
}

/// Echo request/reply types of the packet's ICMP family: (request, reply).
#[inline(always)]
fn echo_types(f: &Fields) -> (u32, u32) {
    if f.family == FAMILY_V4 { (8, 0) } else { (128, 129) }
}

/// The flow a packet belongs to, for TCP and UDP with ports and ICMP echo; `None`
/// for everything else (fragments, other protocols, other ICMP types).
#[inline(always)]
fn flow_of(f: &Fields) -> Option<Flow> {
    let (sport, dport) = match f.proto {
        IPPROTO_TCP | IPPROTO_UDP if f.sport_key != PORT_NONE => (f.sport_key as u16, f.dport_key as u16),
        IPPROTO_ICMP | IPPROTO_ICMPV6 if f.icmp_key != ICMP_NONE => {
            let (req, rep) = echo_types(f);
            let t = f.icmp_key >> 8;
            if t != req && t != rep {
                return None;
            }
            (f.icmp_id, f.icmp_id)
        }
        _ => return None,
    };
    let (src, dst) = (f.addr16(f.src), f.addr16(f.dst));
    let s = (halves(&src), sport);
    let d = (halves(&dst), dport);
    let from_a = s <= d;
    let (addr_a, addr_b, port_a, port_b) = if from_a { (src, dst, sport, dport) } else { (dst, src, dport, sport) };
    Some(Flow {
        key: FlowKey { addr_a, addr_b, port_a, port_b, proto: f.proto, family: f.family as u8, _pad: [0; 2] },
        from: !from_a as u8,
    })
}

/// What the flow's state machine makes of the next packet: `true` to pass it on the
/// fast path. A packet the state cannot explain (a SYN-ACK from the opener, a new
/// SYN on an established flow, ...) returns `false` and goes through the rules.
#[inline(always)]
fn advance(st: &mut FlowState, from: u8, f: &Fields) -> bool {
    let by_opener = from == st.orig;
    match st.state {
        flow::UDP_SINGLE | flow::UDP_MULTIPLE => {
            if !by_opener {
                st.state = flow::UDP_MULTIPLE;
            }
            true
        }
        flow::ICMP_ECHO => {
            let (req, rep) = echo_types(f);
            let t = f.icmp_key >> 8;
            (by_opener && t == req) || (!by_opener && t == rep)
        }
        // After RST nothing is explained by the flow, not even another RST.
        flow::TCP_CLOSED => false,
        state => {
            let flags = f.tcp_flags_key;
            let syn = flags & TCP_SYN != 0;
            let ack = flags & TCP_ACK != 0;
            if flags & TCP_RST != 0 {
                st.state = flow::TCP_CLOSED;
                return true;
            }
            match state {
                flow::TCP_SYN_SENT => {
                    if by_opener && syn && !ack {
                        true
                    } else if !by_opener && syn && ack {
                        st.state = flow::TCP_SYN_RECEIVED;
                        st.ack_expected = f.tcp_handshake.wrapping_add(1);
                        true
                    } else {
                        false
                    }
                }
                flow::TCP_SYN_RECEIVED => {
                    if by_opener && syn && !ack {
                        true
                    } else if !by_opener && syn && ack {
                        // A retransmitted SYN-ACK: the opener acknowledges the last one.
                        st.ack_expected = f.tcp_handshake.wrapping_add(1);
                        true
                    } else if by_opener && ack && !syn {
                        if f.tcp_handshake != st.ack_expected {
                            // A guess: the opener never saw the SYN-ACK.
                            st.state = flow::TCP_CLOSED;
                            return false;
                        }
                        st.state = flow::TCP_ESTABLISHED;
                        close_side(st, from, flags);
                        true
                    } else {
                        false
                    }
                }
                _ => {
                    if syn {
                        return false;
                    }
                    close_side(st, from, flags);
                    true
                }
            }
        }
    }
}

/// Records a FIN from `from` and moves to CLOSING / FIN_WAIT.
#[inline(always)]
fn close_side(st: &mut FlowState, from: u8, flags: u32) {
    if flags & TCP_FIN != 0 {
        st.fins |= 1 << (from & 1);
        st.state = if st.fins == 3 { flow::TCP_FIN_WAIT } else { flow::TCP_CLOSING };
    }
}

/// Whether the other side has answered the flow, so that it belongs in `STATES`: a TCP
/// handshake that completed (a SYN-ACK alone proves only that a port is open: every
/// listener answers a spoofed SYN), a UDP flow the responder replied to. ICMP echo
/// never: every host answers pings, and the flows last one exchange.
#[inline(always)]
fn answered(state: u8) -> bool {
    matches!(state, flow::TCP_ESTABLISHED | flow::TCP_CLOSING | flow::TCP_FIN_WAIT | flow::UDP_MULTIPLE)
}

/// What the flow tables make of a packet: [`Tracked::UNKNOWN`], [`Tracked::PASS`], or
/// the counter slot of the rule whose limit per source refused the handshake it
/// completed (`max-src-conn`, `max-src-conn-rate`): then it is dropped and the flow
/// closed. One word, not an enum with data: that is returned through the caller's
/// stack, and the verifier refuses a function returning a stack pointer.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tracked(u32);

impl Tracked {
    /// No live flow explains the packet: the rules decide.
    pub const UNKNOWN: Tracked = Tracked(u32::MAX);
    /// A live flow accepts it (the fast path).
    pub const PASS: Tracked = Tracked(u32::MAX - 1);

    /// The counter slot of the rule that refused the packet, if one did.
    #[inline(always)]
    pub fn refused_by(self) -> Option<u32> {
        (self != Self::UNKNOWN && self != Self::PASS).then_some(self.0)
    }
}

/// The fast path: whether the packet belongs to a live flow that accepts it.
// Out of line: its locals need not share the caller's 512-byte stack frame.
#[inline(never)]
pub fn track(f: &Fields, len: u64) -> Tracked {
    let Some(flow) = flow_of(f) else { return Tracked::UNKNOWN };
    // Answered flows first: established traffic costs one lookup.
    let (st, in_new) = match STATES.get_ptr_mut(&flow.key) {
        Some(st) => (st, false),
        None => match STATES_NEW.get_ptr_mut(&flow.key) {
            Some(st) => (st, true),
            None => return Tracked::UNKNOWN,
        },
    };
    // SAFETY: a valid map value; concurrent updates from other CPUs only race on
    // timestamps, state and counters, which stay plausible whichever write wins.
    let st = unsafe { &mut *st };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if st.expires_ns <= now {
        return Tracked::UNKNOWN;
    }
    if source::flushing() && flushed(&flow.key, st) {
        let _ = if in_new { STATES_NEW.remove(&flow.key) } else { STATES.remove(&flow.key) };
        return Tracked::UNKNOWN;
    }
    let was = st.state;
    if !advance(st, flow.from, f) {
        return Tracked::UNKNOWN;
    }
    let from = (flow.from & 1) as usize;
    st.packets[from] += 1;
    st.bytes[from] += len;
    st.expires_ns = now + timeout_ns(st.state);
    if source::limited() {
        // The source's node is touched only when the handshake completes or the slot's
        // time must move, not on every packet.
        let completed = was == flow::TCP_SYN_RECEIVED && st.state == flow::TCP_ESTABLISHED;
        let moved = st.source_slot != 0 && (st.state != was || st.expires_ns > st.slot_until_ns);
        if completed || moved {
            let a = source_args(&flow.key, st, now);
            if completed {
                let slot = source::xdpwall_source_connected(&a);
                if slot == REFUSED {
                    st.state = flow::TCP_CLOSED;
                    st.expires_ns = now + timeout_ns(flow::TCP_CLOSED);
                    st.source_slot = 0;
                    return Tracked(st.rule_counter);
                }
                // Masked: the verifier knows nothing of a global function's answer.
                st.source_slot = (slot & 0xffff) as u16;
            } else {
                source::refresh(&a);
            }
            st.slot_until_ns = a.until_ns;
        }
    }
    // Answered now (promote), or no longer (an RST: demote). Insert first, then
    // delete: a packet on another CPU meanwhile finds the flow in one table or both,
    // never in neither.
    // (The value is copied from the map it is in: a copy on the stack would take 80 of
    // the bytes the deepest chain of calls shares.)
    if answered(st.state) == in_new {
        if in_new {
            let _ = STATES.insert(&flow.key, st, 0);
            let _ = STATES_NEW.remove(&flow.key);
        } else {
            let _ = STATES_NEW.insert(&flow.key, st, 0);
            let _ = STATES.remove(&flow.key);
        }
    }
    Tracked::PASS
}

/// Until when a flow's slot in its source's node is held: past the flow's expiry by
/// half a timeout, so that a flow busy for hours moves its slot only now and then.
#[inline(always)]
fn slot_until(expires_ns: u64, state: u8) -> u64 {
    expires_ns + timeout_ns(state) / 2
}

/// The request about the flow's source (its opener) for `source`.
#[inline(always)]
fn source_args(key: &FlowKey, st: &FlowState, now: u64) -> SourceArgs {
    SourceArgs {
        addr: *source::opener(key, st.orig),
        created_ns: st.created_ns,
        until_ns: slot_until(st.expires_ns, st.state),
        now,
        counter: st.rule_counter,
        family: key.family as u32,
        slot: st.source_slot as u32,
        _pad: 0,
    }
}

/// Whether an `overload ... flush` ended the flow since it last looked.
#[inline(always)]
fn flushed(key: &FlowKey, st: &mut FlowState) -> bool {
    let epoch = source::flush_epoch();
    if st.flush_epoch == epoch {
        return false;
    }
    if source::flushed(key.family as u32, source::opener(key, st.orig), st.rule_counter, st.created_ns) {
        return true;
    }
    st.flush_epoch = epoch;
    false
}

/// Creates the flow's entry after a `keep state` rule passed its first packet: a
/// TCP SYN (without ACK), any UDP packet, an ICMP echo request. Other packets (a
/// mid-stream TCP segment) pass by the rule but open no flow. `false` when the
/// rule's `max-src-states` refuses the flow: the packet is to be dropped.
#[inline(never)]
pub fn open(f: &Fields, len: u64, rule_counter: u32) -> bool {
    let Some(flow) = flow_of(f) else { return true };
    let state = match f.proto {
        IPPROTO_TCP if f.tcp_flags_key & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN => flow::TCP_SYN_SENT,
        IPPROTO_UDP => flow::UDP_SINGLE,
        IPPROTO_ICMP | IPPROTO_ICMPV6 if f.icmp_key >> 8 == echo_types(f).0 => flow::ICMP_ECHO,
        _ => return true,
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let expires_ns = now + timeout_ns(state);
    // The source's slot first, the flow's entry after: the two never share the stack
    // (the deepest chain of calls, through here, has no room for both).
    let (mut source_slot, mut slot_until_ns) = (0, 0);
    if source::limited() {
        let until_ns = slot_until(expires_ns, state);
        let a = SourceArgs {
            addr: *source::opener(&flow.key, flow.from),
            created_ns: now,
            until_ns,
            now,
            counter: rule_counter,
            family: flow.key.family as u32,
            slot: 0,
            _pad: 0,
        };
        let slot = source::xdpwall_source_open(&a);
        if slot == REFUSED {
            return false;
        }
        (source_slot, slot_until_ns) = ((slot & 0xffff) as u16, until_ns);
    }
    // Built in a per-CPU scratch value, not on the stack (as above).
    let Some(st) = FLOW_SCRATCH.get_ptr_mut(0) else { return true };
    // SAFETY: this CPU's scratch value, used only here while the program runs.
    let st = unsafe { &mut *st };
    *st = FlowState {
        expires_ns,
        created_ns: now,
        packets: [0; 2],
        bytes: [0; 2],
        rule_counter,
        state,
        orig: flow.from,
        fins: 0,
        _pad: 0,
        ack_expected: 0,
        flush_epoch: 0,
        slot_until_ns,
        source_slot,
        _pad2: [0; 6],
    };
    let from = (flow.from & 1) as usize;
    st.packets[from] = 1;
    st.bytes[from] = len;
    if source::flushing() {
        st.flush_epoch = source::flush_epoch();
    }
    // The new flow replaces the old one (a reconnect on the same ports), which may be
    // an answered one; a lookup first, since deleting takes the bucket's lock.
    if STATES.get_ptr(&flow.key).is_some() {
        let _ = STATES.remove(&flow.key);
    }
    let _ = STATES_NEW.insert(&flow.key, st, 0);
    true
}
