//! Rate limits (`rate N/s [burst M] [per-source]`, pf's `max-pkt-rate`): a rule over its
//! rate does not match, and the classifier goes on to the next candidate rule.
//!
//! Each limiter is GCRA on one word (see `filter_common::RateLimit`), moved forward
//! with a compare-and-swap: the CPUs that judge one rule's packets at the same time
//! share one limiter, so N CPUs never pass N times the rate. Per-source limiters live
//! in an LRU hash shared by all CPUs, one per rule and source prefix.

use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use filter_common::{
    COUNTER_SLOTS, DYN_SOURCES_ENTRIES, DynEntry, DynName, FAMILY_V4, MAX_DYN_TABLES, RULE_DYN_FROM, RULE_DYN_NEGATED,
    RULE_RATE, RULE_RATE_PER_SOURCE, RateLimit, RuleEvents, SourceKey,
};

use crate::RULES;

shared_map! {
    /// One limiter per rule (by rule index); only rules with `RULE_RATE` use theirs.
    /// One set per ruleset: an apply starts every limiter with a full bucket.
    RATE_LIMITS: Array<RateLimit> = Array::with_max_entries(1, 0);
}
shared_map! {
    /// Per-source limiters: the theoretical arrival time by rule and source prefix.
    /// Sized by `set limit src-nodes`; the least recently used source is forgotten
    /// first (a forgotten source starts again with a full bucket).
    SOURCE_RATES: LruHashMap<SourceKey, u64> = LruHashMap::with_max_entries(1, 0);
}
shared_map! {
    /// Sources in dynamic tables (`table <t> persist`), put there by `overload` or by
    /// `xdpwall table NAME add`. Pinned: they outlive applies.
    DYN_SOURCES: LruHashMap<SourceKey, DynEntry> = LruHashMap::pinned(DYN_SOURCES_ENTRIES, 0);
}
shared_map! {
    /// Scratch space for a new `DYN_SOURCES` entry (too big for the stack).
    DYN_SCRATCH: PerCpuArray<DynEntry> = PerCpuArray::with_max_entries(1, 0);
}
shared_map! {
    /// Which dynamic table each slot holds (the loader's and the CLI's; the program
    /// never reads it). Pinned.
    DYN_NAMES: Array<DynName> = Array::pinned(MAX_DYN_TABLES as u32, 0);
}
shared_map! {
    /// Per-rule events by counter slot (packets over rate, packets logged). Pinned, so
    /// they carry over an apply like the counters.
    RULE_EVENTS: PerCpuArray<RuleEvents> = PerCpuArray::pinned(COUNTER_SLOTS, 0);
}

/// The `DYN_SOURCES` key of a source: the whole address.
#[inline(always)]
fn dyn_key(family: u32, hi: u64, lo: u64) -> SourceKey {
    let mut key = SourceKey { addr: [0; 16], rule: 0, family: family as u8, _pad: 0 };
    let mut i = 0;
    while i < 8 {
        key.addr[i] = (hi >> (56 - 8 * i)) as u8;
        key.addr[8 + i] = (lo >> (56 - 8 * i)) as u8;
        i += 1;
    }
    key
}

/// Whether the source is in dynamic table `slot` now.
#[inline(always)]
fn in_dyn_table(family: u32, hi: u64, lo: u64, slot: usize, now: u64) -> bool {
    let key = dyn_key(family, hi, lo);
    // SAFETY: plain data, read at once.
    match unsafe { DYN_SOURCES.get(&key) } {
        Some(e) => e.expires_ns[slot & (MAX_DYN_TABLES - 1)] > now,
        None => false,
    }
}

/// Puts the source into dynamic table `slot` until `until` (`overload`).
#[inline(always)]
pub(crate) fn put_in_dyn_table(family: u32, hi: u64, lo: u64, slot: usize, until: u64) {
    let key = dyn_key(family, hi, lo);
    if let Some(e) = DYN_SOURCES.get_ptr_mut(&key) {
        // SAFETY: a map value pointer; a racing writer can only set another deadline.
        unsafe { (*e).expires_ns[slot & (MAX_DYN_TABLES - 1)] = until };
        return;
    }
    // The new entry is built in a per-CPU scratch value, not on the stack: this frame
    // is the last of the deepest chain of calls (512 bytes for all of them).
    let Some(e) = DYN_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch value, used only here while the program runs.
    unsafe {
        (*e).expires_ns = [0; MAX_DYN_TABLES];
        (*e).expires_ns[slot & (MAX_DYN_TABLES - 1)] = until;
        let _ = DYN_SOURCES.insert(&key, &*e, 0);
    }
}

/// Counts a record the log wrote for the rule with this counter slot.
#[inline(always)]
pub fn count_logged(counter: u32) {
    if let Some(e) = RULE_EVENTS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { (*e).logged += 1 };
    }
}

/// Counts a packet the rule with this counter slot passed and a limit per source
/// dropped.
#[inline(always)]
pub fn count_source_limited(counter: u32) {
    if let Some(e) = RULE_EVENTS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { (*e).source_limited += 1 };
    }
}

/// Compare-and-swap attempts before a packet counts as over the rate: each failure
/// means another CPU just spent a token of the same limiter, so giving up errs on the
/// side of the limit.
const CAS_TRIES: u32 = 4;

/// Rule `rule` when it may match a packet from `src`, [`OVER_RATE`] when not (`[hi, lo]`: the address's two
/// halves, IPv4 in the top 32 bits of `hi`) now; when it may not, the packet is counted
/// as over the rule's rate. (The rule comes back, rather than a yes or no, as a value
/// the verifier cannot know: the paths through the classifier's loop then return the
/// same state, and what follows the match is verified once instead of once per path.)
///
/// A global function (exported, C calling convention, scalar arguments): the verifier
/// checks it once on its own instead of once per call, and the classifier calls it in a
/// loop of up to `BITMAP_WORDS + RATE_RULES` steps.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xdpwall_rate_admit(rule: u32, family: u32, hi: u64, lo: u64) -> u32 {
    let Some(action) = RULES.get(rule) else { return rule };
    if action.flags & (RULE_RATE | RULE_DYN_FROM) == 0 {
        return rule;
    }
    let counter = action.counter;
    let flags = action.flags;
    let per_source = flags & RULE_RATE_PER_SOURCE != 0;
    let Some(limit) = RATE_LIMITS.get_ptr_mut(rule) else { return rule };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if flags & RULE_DYN_FROM != 0 {
        // SAFETY: a map value pointer, valid while the program runs.
        let slot = unsafe { (*limit).dyn_from } as usize;
        if in_dyn_table(family, hi, lo, slot, now) == (flags & RULE_DYN_NEGATED != 0) {
            return OVER_RATE;
        }
    }
    if flags & RULE_RATE == 0 {
        return rule;
    }
    // SAFETY: a map value pointer, valid while the program runs; the config fields are
    // written only by the loader before the program is attached.
    let (interval, tolerance) = unsafe { ((*limit).interval_ns, (*limit).tolerance_ns) };
    let ok = if per_source {
        // SAFETY: as above.
        let (mask_v4, mask_v6) = unsafe { ((*limit).mask_v4, (*limit).mask_v6) };
        source_conforms(rule, family, hi, lo, mask_v4, mask_v6, interval, tolerance, now)
    } else {
        // SAFETY: as above; `tat_ns` is only ever accessed atomically by programs.
        conforms(unsafe { &raw mut (*limit).tat_ns }, interval, tolerance, now)
    };
    if !ok && let Some(e) = RULE_EVENTS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { (*e).over_rate += 1 };
    }
    // SAFETY: as above.
    let (overload, secs) = unsafe { ((*limit).overload, (*limit).overload_secs) };
    if !ok && per_source && overload != 0 {
        let until = if secs == 0 { u64::MAX } else { now + secs as u64 * 1_000_000_000 };
        put_in_dyn_table(family, hi, lo, (overload - 1) as usize, until);
    }
    if ok { rule } else { OVER_RATE }
}

/// What [`xdpwall_rate_admit`] returns for a rule over its rate.
pub const OVER_RATE: u32 = u32::MAX;

/// GCRA: the packet conforms when the limiter's theoretical arrival time is at most
/// `tolerance` ahead of now; then it moves one interval on.
#[inline(always)]
pub fn conforms(tat: *mut u64, interval: u64, tolerance: u64, now: u64) -> bool {
    // SAFETY (both): `tat` points into a map value that lives as long as the program
    // runs and is aligned to 8 bytes, so a plain 8-byte load reads it whole (LLVM's
    // BPF backend selects no atomic load for the generic CPU). The BPF target has no
    // `AtomicU64::compare_exchange`; the intrinsic becomes BPF_CMPXCHG.
    let mut seen = unsafe { core::ptr::read_volatile(tat) };
    for _ in 0..CAS_TRIES {
        let base = if seen > now { seen } else { now };
        if base - now > tolerance {
            return false;
        }
        let (current, swapped) = unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(tat, seen, base + interval) };
        if swapped {
            return true;
        }
        seen = current;
    }
    false
}

/// The per-source limiter of the packet's source prefix: created on its first packet
/// (which conforms, and starts the limiter one interval ahead).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn source_conforms(
    rule: u32,
    family: u32,
    hi: u64,
    lo: u64,
    mask_v4: u8,
    mask_v6: u8,
    interval: u64,
    tolerance: u64,
    now: u64,
) -> bool {
    let (hi, lo) = if family == FAMILY_V4 {
        (hi & (prefix_mask32(mask_v4 as u32) as u64) << 32, 0)
    } else {
        let len = mask_v6 as u32;
        if len >= 64 { (hi, lo & prefix_mask64(len - 64)) } else { (hi & prefix_mask64(len), 0) }
    };
    let mut key = SourceKey { addr: [0; 16], rule: rule as u16, family: family as u8, _pad: 0 };
    // Byte by byte: slice copies here make LLVM spill far past the stack limit.
    let mut i = 0;
    while i < 8 {
        key.addr[i] = (hi >> (56 - 8 * i)) as u8;
        key.addr[8 + i] = (lo >> (56 - 8 * i)) as u8;
        i += 1;
    }
    if let Some(tat) = SOURCE_RATES.get_ptr_mut(&key) {
        return conforms(tat, interval, tolerance, now);
    }
    if SOURCE_RATES.insert(&key, &(now + interval), BPF_NOEXIST as u64).is_ok() {
        return true;
    }
    // Another CPU created it in the meantime: spend from that one.
    match SOURCE_RATES.get_ptr_mut(&key) {
        Some(tat) => conforms(tat, interval, tolerance, now),
        None => false,
    }
}

/// The top `len` bits of a u32 (`len` 0 to 32).
#[inline(always)]
fn prefix_mask32(len: u32) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len.min(32)) }
}

/// The top `len` bits of a u64 (`len` 0 to 64).
#[inline(always)]
fn prefix_mask64(len: u32) -> u64 {
    if len == 0 { 0 } else { u64::MAX << (64 - len.min(64)) }
}
