//! Limits per source of rules that keep state (pf's `max-src-states`, `max-src-conn`,
//! `max-src-conn-rate`, `overload <t> [flush [global]]`).
//!
//! A source is the address that opened a flow, counted per rule (by the rule's counter
//! slot, which its flows carry). Its [`SourceNode`] has one slot per flow it holds: a
//! time after which the slot is free. Flows never report their end (the flow tables are
//! LRU maps, and most flows just stop), so a count would only grow; a slot instead frees
//! itself when its time passes, and a live flow keeps pushing its slot's time past its
//! own expiry. Slots are taken with a compare-and-swap, so CPUs opening flows of one
//! source at once never share one.
//!
//! Connections are judged only when a TCP handshake completes with the acknowledgement
//! number of the responder's SYN-ACK (checked in `ct`), which a spoofed source never
//! sees: no one can be put into an overload table, or have their flows flushed, in
//! someone else's name.

use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg, atomic_xadd};

use aya_ebpf::{
    Global,
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use filter_common::{
    FLUSH_GLOBAL, FLUSH_GLOBAL_RULE, FLUSH_NONE, FlowKey, SLOT_CONNECTED, SOURCE_SLOTS, SourceKey, SourceLimit,
    SourceNode,
};

shared_global! {
    /// Non-zero when some rule has a limit per source: flows take slots and completed
    /// handshakes are judged.
    SOURCE_LIMITED: u32 = 0;
}
shared_global! {
    /// Non-zero when some rule's `overload` flushes: flows check `FLUSH_EPOCH`.
    HAS_FLUSH: u32 = 0;
}

shared_map! {
    /// The limits of each rule that has some, by counter slot. One set per ruleset.
    SOURCE_LIMITS: Array<SourceLimit> = Array::with_max_entries(1, 0);
}
shared_map! {
    /// What each source holds through each limited rule. Sized by `set limit
    /// src-nodes`; a forgotten source starts again with no flows counted.
    SOURCE_NODES: LruHashMap<SourceKey, SourceNode> = LruHashMap::with_max_entries(1, 0);
}
shared_map! {
    /// A new `SOURCE_NODES` entry (too big for the stack). Only `created_ns` and
    /// `conn_tat_ns` are ever written here, so its slots stay free.
    SOURCE_SCRATCH: PerCpuArray<SourceNode> = PerCpuArray::with_max_entries(1, 0);
}
shared_map! {
    /// Sources whose flows an `overload ... flush` ended: when (coarse monotonic ns),
    /// by source and rule (counter slot, or `FLUSH_GLOBAL_RULE` for every rule).
    FLUSH_MARKS: LruHashMap<SourceKey, u64> = LruHashMap::with_max_entries(1, 0);
}
shared_map! {
    /// Flushes so far: a flow compares it with the one it last saw before it looks
    /// at `FLUSH_MARKS`, so flows pay one load per packet, not a lookup.
    FLUSH_EPOCH: Array<u64> = Array::with_max_entries(1, 0);
}

/// Whether some rule has a limit per source (a load-time constant).
#[inline(always)]
pub fn limited() -> bool {
    SOURCE_LIMITED.load() != 0
}

/// Whether some rule's `overload` flushes (a load-time constant).
#[inline(always)]
pub fn flushing() -> bool {
    HAS_FLUSH.load() != 0
}

/// What [`xdpwall_source_open`] and [`xdpwall_source_connected`] return when the
/// source is over the rule's limit.
pub const REFUSED: u32 = u32::MAX;

/// A request to the global functions below: scalars in stack memory (a global
/// function takes at most five arguments).
#[repr(C)]
pub struct SourceArgs {
    /// The source's address (IPv4 in the first 4 bytes). Bytes, as in the keys: a
    /// conversion to and from numbers spilled across the stack.
    pub addr: [u8; 16],
    /// When the flow was created (`FlowState::created_ns`).
    pub created_ns: u64,
    /// When the flow's slot is to free.
    pub until_ns: u64,
    /// Now (coarse monotonic ns).
    pub now: u64,
    /// The rule's counter slot.
    pub counter: u32,
    pub family: u32,
    /// The flow's slot + 1, 0: none.
    pub slot: u32,
    pub _pad: u32,
}

#[inline(always)]
fn node_key(family: u32, addr: &[u8; 16], rule: u16) -> SourceKey {
    SourceKey { addr: *addr, rule, family: family as u8, _pad: 0 }
}

/// The address that opened `key`'s flow (`orig`: 0 = a, 1 = b).
#[inline(always)]
pub fn opener(key: &FlowKey, orig: u8) -> &[u8; 16] {
    if orig == 0 { &key.addr_a } else { &key.addr_b }
}

/// The source's node for the rule, made if it has none (`None` only if the map
/// refuses it).
#[inline(always)]
fn node(a: &SourceArgs) -> Option<*mut SourceNode> {
    let key = node_key(a.family, &a.addr, a.counter as u16);
    if let Some(n) = SOURCE_NODES.get_ptr_mut(&key) {
        return Some(n);
    }
    let scratch = SOURCE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch value, used only here while the program runs.
    unsafe {
        (*scratch).created_ns = a.now;
        (*scratch).conn_tat_ns = 0;
        // Another CPU may have made it meanwhile: then that one is used.
        let _ = SOURCE_NODES.insert(&key, &*scratch, BPF_NOEXIST as u64);
    }
    SOURCE_NODES.get_ptr_mut(&key)
}

/// The flow's slot in `n` (0-based), if it holds one: a node made after the flow
/// holds none of its slots (it was forgotten and made again, or the flow is older
/// than the ruleset).
#[inline(always)]
fn own_slot(n: *const SourceNode, a: &SourceArgs) -> Option<usize> {
    // SAFETY: a map value pointer, valid while the program runs.
    let created = unsafe { (*n).created_ns };
    (a.slot != 0 && created <= a.created_ns).then_some((a.slot - 1) as usize & (SOURCE_SLOTS - 1))
}

/// Takes a free slot among the first `slots` of node `n` for `value`: its index + 1,
/// or 0 when all are held.
#[inline(always)]
fn take(n: *mut SourceNode, slots: u32, value: u64, now: u64) -> u32 {
    for i in 0..SOURCE_SLOTS {
        if i as u32 >= slots {
            break;
        }
        // SAFETY: a map value pointer; slots are only ever written by compare-and-swap
        // or by the flow that holds them.
        let p = unsafe { &raw mut (*n).slots[i] };
        let seen = unsafe { core::ptr::read_volatile(p) };
        if seen & !SLOT_CONNECTED > now {
            continue;
        }
        // A failed swap: another CPU took it a moment ago; look on.
        if unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(p, seen, value) }.1 {
            return i as u32 + 1;
        }
    }
    0
}

/// [`take`] for [`xdpwall_source_connected`]. A global function, as is
/// [`xdpwall_slots_connected`]: each loop is verified once, on its own (Linux 6.1's
/// verifier, walking one loop's every exit into the next, ran past its million
/// instructions).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xdpwall_slot_take(n: *mut SourceNode, slots: u32, value: u64, now: u64) -> u32 {
    if n.is_null() {
        return 0;
    }
    take(n, slots, value, now)
}

/// Live slots marked connected among the first `slots` of node `n`, but for slot
/// `own` + 1 (0: none).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xdpwall_slots_connected(n: *const SourceNode, slots: u32, own: u32, now: u64) -> u32 {
    if n.is_null() {
        return 0;
    }
    // Without branches: with one, each iteration's paths reached the next with counts
    // of their own, and Linux 6.1's verifier walked them all (a million instructions).
    // `black_box` keeps LLVM from turning the shifts back into comparisons.
    let mut connected = 0u64;
    for i in 0..SOURCE_SLOTS {
        if i as u32 >= slots {
            break;
        }
        // SAFETY: a map value pointer, valid while the program runs.
        let v = unsafe { core::ptr::read_volatile(&raw const (*n).slots[i]) };
        // 1 while the slot's time is ahead of now (times are far below 2^63 ns).
        let live = core::hint::black_box(now.wrapping_sub(v & !SLOT_CONNECTED)) >> 63;
        // 1 unless this is the caller's own slot.
        let other = core::hint::black_box((i as u64 + 1) ^ own as u64);
        let other = (other | other.wrapping_neg()) >> 63;
        connected += v & SLOT_CONNECTED & live & other;
    }
    connected as u32
}

/// A flow opens through a rule with `max-src-states`: the slot + 1 it takes, 0 when
/// the rule does not limit states (or the node cannot be made), [`REFUSED`] when the
/// source holds as many flows as the rule allows.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xdpwall_source_open(a: *const SourceArgs) -> u32 {
    // SAFETY: the caller's stack memory, checked by the verifier.
    let Some(a) = (unsafe { a.as_ref() }) else { return 0 };
    let Some(limit) = SOURCE_LIMITS.get(a.counter) else { return 0 };
    if limit.max_states == 0 {
        return 0;
    }
    let slots = limit.slots;
    let Some(n) = node(a) else { return 0 };
    // Inline here: a call would add a frame to the deepest chain (through `ct::open`).
    match take(n, slots, a.until_ns & !SLOT_CONNECTED, a.now) {
        0 => REFUSED,
        // Masked: the verifier knows nothing of a global function's answer.
        slot => slot & 0x1ff,
    }
}

/// A flow's TCP handshake completed (with the right acknowledgement number) through a
/// rule with limits per source. Admitted: the flow's slot + 1 (0: none), moved to
/// `a.until_ns` (the established flow's) and marked connected. Over `max-src-conn` or
/// `max-src-conn-rate`: [`REFUSED`], after freeing the flow's slot, putting the source
/// into the overload table and marking its flows flushed.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xdpwall_source_connected(a: *const SourceArgs) -> u32 {
    // SAFETY: the caller's stack memory, checked by the verifier.
    let Some(a) = (unsafe { a.as_ref() }) else { return 0 };
    let Some(limit) = SOURCE_LIMITS.get(a.counter) else { return 0 };
    if limit.slots == 0 && limit.conn_interval_ns == 0 {
        return a.slot;
    }
    let Some(n) = node(a) else { return a.slot };
    let own = own_slot(n, a);
    let own_id = own.map_or(0, |i| i as u32 + 1);
    let mut over = limit.max_conn != 0 && xdpwall_slots_connected(n, limit.slots, own_id, a.now) >= limit.max_conn;
    if !over && limit.conn_interval_ns != 0 {
        // SAFETY: a map value pointer; `conn_tat_ns` is only accessed atomically here.
        let tat = unsafe { &raw mut (*n).conn_tat_ns };
        over = !crate::rate::conforms(tat, limit.conn_interval_ns, limit.conn_tolerance_ns, a.now);
    }
    let connected = (a.until_ns & !SLOT_CONNECTED) | SLOT_CONNECTED;
    let mut slot = own_id;
    // A flow without a slot of its own (older than the node) takes one last, already
    // marked: then a refusal has nothing to give back.
    if !over && limit.max_conn != 0 && own.is_none() {
        slot = xdpwall_slot_take(n, limit.slots, connected, a.now);
        over = slot == 0;
    }
    if over {
        if let Some(i) = own {
            // SAFETY: a map value pointer; the slot is this flow's, which is ending.
            unsafe { core::ptr::write_volatile(&raw mut (*n).slots[i], 0) };
        }
        overload(a, limit);
        return REFUSED;
    }
    if let Some(i) = own {
        // SAFETY: as above; the slot is this flow's.
        unsafe { core::ptr::write_volatile(&raw mut (*n).slots[i], connected) };
    }
    slot
}

/// `overload <t> [flush [global]]` for the source in `a`.
#[inline(always)]
fn overload(a: &SourceArgs, limit: &SourceLimit) {
    if limit.overload != 0 {
        let until =
            if limit.overload_secs == 0 { u64::MAX } else { a.now + limit.overload_secs as u64 * 1_000_000_000 };
        let b = &a.addr;
        let hi = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let lo = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        crate::rate::put_in_dyn_table(a.family, hi, lo, (limit.overload - 1) as usize, until);
    }
    if limit.flush != FLUSH_NONE {
        let rule = if limit.flush == FLUSH_GLOBAL { FLUSH_GLOBAL_RULE } else { a.counter as u16 };
        // A copy on the stack: Linux 6.1 takes no pointer into a global function's
        // argument memory as a map value.
        let at = a.now;
        let _ = FLUSH_MARKS.insert(&node_key(a.family, &a.addr, rule), &at, 0);
        if let Some(epoch) = FLUSH_EPOCH.get_ptr_mut(0) {
            // SAFETY: a map value pointer; every CPU adds atomically.
            unsafe { atomic_xadd::<u64, u64, { Relaxed }>(epoch, 1) };
        }
    }
}

/// Moves the flow's slot to free at `a.until_ns` (keeping its connected mark): the
/// flow lives on, or its state now ends sooner.
#[inline(always)]
pub fn refresh(a: &SourceArgs) {
    let key = node_key(a.family, &a.addr, a.counter as u16);
    let Some(n) = SOURCE_NODES.get_ptr_mut(&key) else { return };
    let Some(i) = own_slot(n, a) else { return };
    // SAFETY: a map value pointer; the slot is this flow's.
    unsafe {
        let p = &raw mut (*n).slots[i];
        let connected = core::ptr::read_volatile(p) & SLOT_CONNECTED;
        core::ptr::write_volatile(p, (a.until_ns & !SLOT_CONNECTED) | connected);
    }
}

/// The current flush epoch (low 32 bits: a flow only compares it for a change).
#[inline(always)]
pub fn flush_epoch() -> u32 {
    FLUSH_EPOCH.get(0).map_or(0, |e| *e as u32)
}

/// Whether an `overload ... flush` ended the flow: its opener `addr` was flushed for the
/// flow's rule, or globally, after the flow was created.
#[inline(always)]
pub fn flushed(family: u32, addr: &[u8; 16], counter: u32, created_ns: u64) -> bool {
    let after = |rule: u16| {
        // SAFETY: plain data, read at once.
        unsafe { FLUSH_MARKS.get(&node_key(family, addr, rule)) }.is_some_and(|at| *at >= created_ns)
    };
    after(counter as u16) || after(FLUSH_GLOBAL_RULE)
}
