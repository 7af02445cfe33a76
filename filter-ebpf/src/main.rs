//! xdpwall's classifier: XDP for packets arriving, TC egress for packets leaving.
//!
//! Parse the headers into [`Fields`]; a packet of a tracked flow passes on the fast
//! path (`ct`); otherwise look each used field up in its table to get an equivalence
//! class, AND the classes' rule bitmaps and take the lowest set bit: that is the first
//! rule that matches (bpf-iptables' linear bit-vector search). Cost grows with the
//! number of 64-rule words that can still match, never with table sizes.
#![no_std]
#![no_main]

mod bench;
mod ct;
mod parse;

use aya_ebpf::{
    Global,
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use filter_common::{
    ACTION_PASS, BITMAP_WORDS, FAMILY_V4, COUNTER_SLOTS, Counter, IfaceCounters, IfaceEntry, MAX_IFACES,
    MAX_RULES, PROTO_KEYS, RULE_KEEP_STATE, RuleAction, RuleBitmap, field, slot,
};
use parse::{Fields, Outcome};

// Load-time constants (read-only data): the verifier prunes the branches they rule out,
// so a ruleset pays only for the fields it uses.
/// Bit `1 << field::X` set when some rule constrains field X.
#[unsafe(no_mangle)]
static USED_FIELDS: Global<u32> = Global::new(0);
/// 64-rule words in use: `ceil(rules / 64)`.
#[unsafe(no_mangle)]
static RULE_WORDS: Global<u32> = Global::new(0);
/// `ACTION_PASS` or `ACTION_DROP` when no rule matches.
#[unsafe(no_mangle)]
static DEFAULT_ACTION: Global<u32> = Global::new(ACTION_PASS);
/// Interface-field class of an interface without an `IFACES` entry.
#[unsafe(no_mangle)]
static IFACE_MISS_CLASS: Global<u32> = Global::new(0);
// Class of every key of an array field whose map entry is 0 (entries hold class + 1,
// so only keys off the most common class are written at apply time).
#[unsafe(no_mangle)]
static PROTO_DEFAULT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SPORT_DEFAULT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static DPORT_DEFAULT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TCP_FLAGS_DEFAULT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static ICMP_DEFAULT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static VLAN_DEFAULT: Global<u32> = Global::new(0);
/// Non-zero when some rule keeps state: the fast path and flow creation run.
#[unsafe(no_mangle)]
static STATEFUL: Global<u32> = Global::new(0);
/// Direction-field classes of packets arriving (XDP) and leaving (TC egress).
#[unsafe(no_mangle)]
static DIR_IN_CLASS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static DIR_OUT_CLASS: Global<u32> = Global::new(0);
/// Non-zero when some rule says `out`: TC egress classifies.
#[unsafe(no_mangle)]
static HAS_OUT_RULES: Global<u32> = Global::new(0);
/// Non-zero only in tests: record every decision in `TRACE_LAST` (pruned otherwise).
#[unsafe(no_mangle)]
static TRACE: Global<u32> = Global::new(0);

// Pinned: they outlive a ruleset, so counters carry over an apply.
#[map]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(COUNTER_SLOTS, 0);
#[map]
static IFACE_COUNTERS: PerCpuArray<IfaceCounters> = PerCpuArray::pinned(MAX_IFACES, 0);

// One set per ruleset, filled before the program is attached or swapped in.
#[map]
static IFACES: HashMap<u32, IfaceEntry> = HashMap::with_max_entries(MAX_IFACES, 0);
#[map]
static RULES: Array<RuleAction> = Array::with_max_entries(MAX_RULES as u32, 0);
/// Class id -> rules satisfied. Class 0 is all zeroes (matches nothing).
#[map]
static BITMAPS: Array<RuleBitmap> = Array::with_max_entries(1, 0);
#[map]
static PROTO_CLASS: Array<u32> = Array::with_max_entries(PROTO_KEYS, 0);
#[map]
static SRC_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1, 0);
#[map]
static SRC_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1, 0);
#[map]
static DST_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1, 0);
#[map]
static DST_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1, 0);
#[map]
static SPORT_CLASS: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static DPORT_CLASS: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static TCP_FLAGS_CLASS: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static ICMP_CLASS: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static VLAN_CLASS: Array<u32> = Array::with_max_entries(1, 0);
/// The last decision (`counter slot << 1 | dropped`), written only when `TRACE` is set.
#[map]
static TRACE_LAST: Array<u32> = Array::with_max_entries(1, 0);

/// `stats_slot` of an interface without an `IFACES` entry: not counted per interface.
const NO_STATS: u32 = u32::MAX;

/// The receiving (or sending) interface's entry; an interface the loader does not
/// know gets the class of rules without `on` and no per-interface counters. A plain
/// value, not an `Option`: a `None`'s undefined payload, copied around, became a read
/// of an uninitialised register that the verifier rejects.
#[inline(always)]
fn iface_of(ifindex: u32) -> IfaceEntry {
    // SAFETY: the value is plain data and only read.
    match unsafe { IFACES.get(&ifindex) } {
        Some(e) => *e,
        None => IfaceEntry { class: IFACE_MISS_CLASS.load(), stats_slot: NO_STATS },
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

#[xdp]
pub fn xdpwall(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let ifindex = ctx.ingress_ifindex() as u32;
    let iface = iface_of(ifindex);
    let len = (end - start) as u64;

    let (pass, counter_slot) = match parse::parse(start, end) {
        Outcome::Ip(fields) => judge(&fields, iface.class, Direction::In, len),
        Outcome::NonIp => (true, slot::NON_IP),
        Outcome::Malformed(reason) => (false, reason.slot()),
    };

    count(counter_slot, len);
    if TRACE.load() != 0 {
        let _ = TRACE_LAST.set(0, counter_slot << 1 | !pass as u32, 0);
    }
    if iface.stats_slot != NO_STATS {
        count_iface(iface.stats_slot, pass, len);
    }
    if pass { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
}

/// Packets the host sends or forwards: judged by `out` rules, and seen by connection
/// tracking so replies to the host's own flows find their state. Nothing else is
/// judged here: non-IP and unparsable packets leave untouched.
#[classifier]
pub fn xdpwall_egress(ctx: TcContext) -> i32 {
    if STATEFUL.load() == 0 && HAS_OUT_RULES.load() == 0 {
        return TC_ACT_OK;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    let Outcome::Ip(fields) = parse::parse(start, end) else { return TC_ACT_OK };
    // SAFETY: `skb` points at the kernel's __sk_buff for the duration of the call.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let iface = iface_of(ifindex);
    let len = (end - start) as u64;
    let (pass, counter_slot) = judge(&fields, iface.class, Direction::Out, len);
    count(counter_slot, len);
    if pass { TC_ACT_OK } else { TC_ACT_SHOT }
}

/// The decision for an IP packet: the flow's state if it has a live one, else the
/// first matching rule (opening a flow for `keep state`), else the default policy
/// (inbound) or pass (outbound).
#[inline(always)]
fn judge(fields: &Fields, iface_class: u32, dir: Direction, len: u64) -> (bool, u32) {
    let stateful = STATEFUL.load() != 0;
    if stateful && ct::track(fields, len) {
        return (true, slot::STATE);
    }
    if dir == Direction::In || HAS_OUT_RULES.load() != 0 {
        if let Some(rule) = first_match(fields, iface_class, dir)
            && let Some(rule) = RULES.get(rule)
        {
            let pass = rule.action == ACTION_PASS;
            if stateful && pass && rule.flags & RULE_KEEP_STATE != 0 {
                ct::open(fields, len, rule.counter);
            }
            return (pass, rule.counter);
        }
    }
    match dir {
        Direction::Out => (true, slot::OUT_UNMATCHED),
        Direction::In if DEFAULT_ACTION.load() == ACTION_PASS => (true, slot::DEFAULT_PASS),
        Direction::In => (false, slot::DEFAULT_BLOCK),
    }
}

#[inline(always)]
fn used(f: u32) -> bool {
    USED_FIELDS.load() & (1 << f) != 0
}

/// The field's class bitmap: `Ok(None)` when no rule uses the field, `Err(())` when
/// its class has no bitmap (class 0, the empty set): then no rule can match.
#[inline(always)]
fn bitmap_of(f: u32, class: impl FnOnce() -> Option<u32>) -> Result<Option<&'static RuleBitmap>, ()> {
    if !used(f) {
        return Ok(None);
    }
    // Always a map value pointer (never a pointer to something else on failure), so
    // the verifier sees one pointer type per field and can prune states.
    let class = class().ok_or(())?;
    BITMAPS.get(class).map(Some).ok_or(())
}

#[inline(always)]
fn lpm_class(v4: &LpmTrie<[u8; 4], u32>, v6: &LpmTrie<[u8; 16], u32>, p: &Fields, addr: *const u8) -> Option<u32> {
    if p.family == FAMILY_V4 {
        v4.get(Key::new(32, Fields::v4(addr))).copied()
    } else {
        v6.get(Key::new(128, p.addr16(addr))).copied()
    }
}

// Out of line: the per-field bitmap pointers need a stack frame of their own.
#[inline(never)]
fn first_match(p: &Fields, iface_class: u32, dir: Direction) -> Option<u32> {
    let b_dir = bitmap_of(field::DIRECTION, || {
        Some(if dir == Direction::In { DIR_IN_CLASS.load() } else { DIR_OUT_CLASS.load() })
    })
    .ok()?;
    let b_iface = bitmap_of(field::IFACE, || Some(iface_class)).ok()?;
    let b_proto = bitmap_of(field::PROTO, || keyed(&PROTO_CLASS, p.proto_key, &PROTO_DEFAULT)).ok()?;
    let b_src = bitmap_of(field::SRC_ADDR, || lpm_class(&SRC_V4, &SRC_V6, p, p.src)).ok()?;
    let b_dst = bitmap_of(field::DST_ADDR, || lpm_class(&DST_V4, &DST_V6, p, p.dst)).ok()?;
    let b_sport = bitmap_of(field::SRC_PORT, || keyed(&SPORT_CLASS, p.sport_key, &SPORT_DEFAULT)).ok()?;
    let b_dport = bitmap_of(field::DST_PORT, || keyed(&DPORT_CLASS, p.dport_key, &DPORT_DEFAULT)).ok()?;
    let b_flags = bitmap_of(field::TCP_FLAGS, || {
        keyed(&TCP_FLAGS_CLASS, p.tcp_flags_key, &TCP_FLAGS_DEFAULT)
    })
    .ok()?;
    let b_icmp = bitmap_of(field::ICMP, || keyed(&ICMP_CLASS, p.icmp_key, &ICMP_DEFAULT)).ok()?;
    let b_vlan = bitmap_of(field::VLAN, || keyed(&VLAN_CLASS, p.vlan_key, &VLAN_DEFAULT)).ok()?;

    let fields = [b_dir, b_iface, b_proto, b_src, b_dst, b_sport, b_dport, b_flags, b_icmp, b_vlan];
    // Words that may hold a match: in use, and non-zero in every field's bitmap.
    let words = RULE_WORDS.load();
    let mut candidates = if words >= 64 { u64::MAX } else { (1u64 << words) - 1 };
    candidates &= and_fields(&fields, |b| b.summary);
    for _ in 0..BITMAP_WORDS {
        if candidates == 0 {
            break;
        }
        // LLVM knows ctz < 64 and would drop the mask; the verifier does not know it
        // (ctz becomes a table lookup), so keep the mask out of LLVM's sight.
        let w = core::hint::black_box(candidates.trailing_zeros() as usize) & (BITMAP_WORDS - 1);
        let acc = and_fields(&fields, |b| b.words[w]);
        if acc != 0 {
            return Some(w as u32 * 64 + acc.trailing_zeros());
        }
        candidates &= candidates - 1;
    }
    None
}

/// The AND of `part` over the fields in use, written out field by field rather than as
/// a loop over `fields.iter().flatten()`: LLVM rotates that loop so it is entered by a
/// jump to its condition, and Linux 6.1's verifier (check_cfg) rejects the resulting
/// back-edge into the condition because it is the fall-through of a plain instruction
/// ("back-edge from insn N to N+1"); later kernels accept it. Straight-line code has no
/// back-edge at all, and the word loop around it is closed by jumps.
#[inline(always)]
fn and_fields(fields: &[Option<&RuleBitmap>; 10], part: impl Fn(&RuleBitmap) -> u64) -> u64 {
    let term = |b: Option<&RuleBitmap>| match b {
        Some(b) => part(b),
        None => u64::MAX,
    };
    term(fields[0])
        & term(fields[1])
        & term(fields[2])
        & term(fields[3])
        & term(fields[4])
        & term(fields[5])
        & term(fields[6])
        & term(fields[7])
        & term(fields[8])
        & term(fields[9])
}

/// Class of `key` in an array field: entries hold class + 1, 0 is the default.
#[inline(always)]
fn keyed(map: &Array<u32>, key: u32, default: &Global<u32>) -> Option<u32> {
    match map.get(key) {
        Some(&0) => Some(default.load()),
        Some(&v) => Some(v - 1),
        None => None,
    }
}

#[inline(always)]
fn count(slot: u32, len: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
}

#[inline(always)]
fn count_iface(slot: u32, pass: bool, len: u64) {
    if let Some(c) = IFACE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: as in `count`.
        let c = unsafe { if pass { &mut (*c).passed } else { &mut (*c).dropped } };
        c.packets += 1;
        c.bytes += len;
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
