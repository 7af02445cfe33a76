//! xdpwall's classifier: XDP for packets arriving, TC egress for packets leaving.
//!
//! Parse the headers into [`Fields`]; a packet of a tracked flow passes on the fast
//! path (`ct`); otherwise look each used field up in its table to get an equivalence
//! class, AND the classes' rule bitmaps and take the lowest set bit: that is the first
//! rule that matches (bpf-iptables' linear bit-vector search). Cost grows with the
//! number of 64-rule words that can still match, never with table sizes.
#![no_std]
#![no_main]
// Atomic compare-and-swap for the rate limiters (the BPF target's atomics have no CAS).
#![feature(core_intrinsics)]
#![allow(internal_features)]

/// A map the loader finds by its name in `filter_common::names`: the name constant
/// must exist and equal the identifier, or this fails to compile.
macro_rules! shared_map {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr;) => {
        $(#[$doc])*
        #[map]
        static $name: $ty = $init;
        const _: () = assert!(filter_common::names::same(filter_common::names::$name, stringify!($name)));
    };
}

/// Checks that the program `$name` is what `filter_common::names::$constant` says.
macro_rules! shared_program {
    ($name:ident, $constant:ident) => {
        const _: () = {
            let _ = $name;
            assert!(filter_common::names::same(filter_common::names::$constant, stringify!($name)));
        };
    };
}

/// A load-time global the loader sets by its name in `filter_common::names` (read-only
/// data: the verifier prunes what its value rules out).
macro_rules! shared_global {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr;) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        static $name: Global<$ty> = Global::new($init);
        const _: () = assert!(filter_common::names::same(filter_common::names::$name, stringify!($name)));
    };
}

mod answer;
mod bench;
mod ct;
mod log;
mod parse;
mod rate;
mod source;

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, map, xdp},
    maps::{Array, BloomFilter, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use filter_common::{
    ACTION_DROP, ACTION_PASS, BITMAP_WORDS, COUNTER_SLOTS, Counter, FAMILY_V4, FAMILY_V6, IFACE_SKIPPED, IfaceCounters,
    IfaceEntry, LOG_RULE_DEFAULT, Long24, MAX_IFACES, MAX_RULES, PROTO_KEYS, PrefixClass, PrefixKey, RULE_ANSWER_BITS,
    RULE_KEEP_STATE, RULE_LOG, RuleAction, RuleBitmap, V4_HASHED_MIN_LEN, V6_HASHED_LENGTHS, dir, field, slot,
};
use parse::{Fields, Outcome};

// Load-time constants (read-only data): the verifier prunes the branches they rule out,
// so a ruleset pays only for the fields it uses.
shared_global! {
    /// Bit `1 << field::X` set when some rule constrains field X.
    USED_FIELDS: u32 = 0;
}
shared_global! {
    /// 64-rule words in use: `ceil(rules / 64)`.
    RULE_WORDS: u32 = 0;
}
shared_global! {
    /// `ACTION_PASS` or `ACTION_DROP` when no rule matches.
    DEFAULT_ACTION: u32 = ACTION_PASS;
}
shared_global! {
    /// Interface-field class of an interface without an `IFACES` entry.
    IFACE_MISS_CLASS: u32 = 0;
}
// Class of every key of an array field whose map entry is 0 (entries hold class + 1,
// so only keys off the most common class are written at apply time).
shared_global! { PROTO_DEFAULT: u32 = 0; }
shared_global! { SPORT_DEFAULT: u32 = 0; }
shared_global! { DPORT_DEFAULT: u32 = 0; }
shared_global! { TCP_FLAGS_DEFAULT: u32 = 0; }
shared_global! { ICMP_DEFAULT: u32 = 0; }
shared_global! { VLAN_DEFAULT: u32 = 0; }
shared_global! {
    /// Non-zero when some rule keeps state: the fast path and flow creation run.
    STATEFUL: u32 = 0;
}
shared_global! {
    /// Direction-field classes of packets arriving (XDP) and leaving (TC egress).
    DIR_IN_CLASS: u32 = 0;
}
shared_global! { DIR_OUT_CLASS: u32 = 0; }
shared_global! {
    /// Non-zero when some rule says `out`: TC egress classifies.
    HAS_OUT_RULES: u32 = 0;
}
shared_global! {
    /// Non-zero when some rule answers what it blocks (`block return`): without one,
    /// the verifier prunes the answer path (it is costly to verify).
    HAS_ANSWERS: u32 = 0;
}
shared_global! {
    /// Which IPv6 prefix lengths each address field hashes (see `filter_common::dir`).
    SRC_V6_LENGTHS: u64 = 0;
}
shared_global! { DST_V6_LENGTHS: u64 = 0; }
shared_global! {
    /// Rules with a rate limit: each may send a packet on to the next candidate once,
    /// so the classifier's loop runs at most this many extra steps.
    RATE_RULES: u32 = 0;
}
shared_global! {
    /// Non-zero when some rule logs or the default policy does: the log code runs.
    LOGGING: u32 = 0;
}
shared_global! {
    /// Non-zero for `set default block log`.
    DEFAULT_LOG: u32 = 0;
}
shared_global! {
    /// Non-zero only in tests: record every decision in `TRACE_LAST` (pruned otherwise).
    TRACE: u32 = 0;
}

// Pinned: they outlive a ruleset, so counters carry over an apply.
shared_map! {
    /// The layout version of the pinned maps (`filter_common::ABI_VERSION`), written by the
    /// loader that created them, so a build of another layout refuses instead of misreading
    /// them. The program never reads it.
    ABI: Array<u32> = Array::pinned(1, 0);
}
shared_map! { COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(COUNTER_SLOTS, 0); }
shared_map! { IFACE_COUNTERS: PerCpuArray<IfaceCounters> = PerCpuArray::pinned(MAX_IFACES, 0); }

// One set per ruleset, filled before the program is attached or swapped in.
shared_map! { IFACES: HashMap<u32, IfaceEntry> = HashMap::with_max_entries(MAX_IFACES, 0); }
shared_map! { RULES: Array<RuleAction> = Array::with_max_entries(MAX_RULES as u32, 0); }
shared_map! {
    /// Class id -> rules satisfied. Class 0 is all zeroes (matches nothing).
    BITMAPS: Array<RuleBitmap> = Array::with_max_entries(1, 0);
}
shared_map! { PROTO_CLASS: Array<u32> = Array::with_max_entries(PROTO_KEYS, 0); }
// Address fields (see `filter_common::dir`): per field, IPv4 up to /24 in a direct
// array filled through mmap, exact prefixes in a hash, the rest of IPv6 in a small trie.
shared_map! { SRC_DIR4: Array<[u32; 2]> = Array::with_max_entries(1, BPF_F_MMAPABLE); }
shared_map! { SRC_LONG24: Array<Long24> = Array::with_max_entries(1, BPF_F_MMAPABLE); }
shared_map! { SRC_PREFIXES: HashMap<PrefixKey, u32> = HashMap::with_max_entries(1, 0); }
shared_map! { SRC_TRIE6: LpmTrie<[u8; 16], PrefixClass> = LpmTrie::with_max_entries(1, 0); }
shared_map! { SRC_BLOOM6: BloomFilter<PrefixKey> = BloomFilter::with_max_entries(1, 0); }
shared_map! { DST_DIR4: Array<[u32; 2]> = Array::with_max_entries(1, BPF_F_MMAPABLE); }
shared_map! { DST_LONG24: Array<Long24> = Array::with_max_entries(1, BPF_F_MMAPABLE); }
shared_map! { DST_PREFIXES: HashMap<PrefixKey, u32> = HashMap::with_max_entries(1, 0); }
shared_map! { DST_TRIE6: LpmTrie<[u8; 16], PrefixClass> = LpmTrie::with_max_entries(1, 0); }
shared_map! { DST_BLOOM6: BloomFilter<PrefixKey> = BloomFilter::with_max_entries(1, 0); }
shared_map! { SPORT_CLASS: Array<u32> = Array::with_max_entries(1, 0); }
shared_map! { DPORT_CLASS: Array<u32> = Array::with_max_entries(1, 0); }
shared_map! { TCP_FLAGS_CLASS: Array<u32> = Array::with_max_entries(1, 0); }
shared_map! { ICMP_CLASS: Array<u32> = Array::with_max_entries(1, 0); }
shared_map! { VLAN_CLASS: Array<u32> = Array::with_max_entries(1, 0); }
shared_map! {
    /// The last decision (`counter slot << 1 | dropped`), written only when `TRACE` is set.
    TRACE_LAST: Array<u32> = Array::with_max_entries(1, 0);
}

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

shared_program!(xdpwall, PROGRAM_XDP);

#[xdp]
pub fn xdpwall(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let ifindex = ctx.ingress_ifindex() as u32;
    let iface = iface_of(ifindex);
    let len = (end - start) as u64;
    if iface.class == IFACE_SKIPPED {
        count(slot::SKIPPED, len);
        count_iface(iface.stats_slot, true, len);
        return xdp_action::XDP_PASS;
    }

    // The blocked packet's answer flags (0: its rule does not answer it).
    let mut answer_flags = 0;
    let (pass, counter_slot, logged) = match parse::parse::<true>(start, end) {
        Outcome::Ip(fields) => {
            let v = judge(&fields, iface.class, Direction::In, len);
            if HAS_ANSWERS.load() != 0 && !v.pass {
                answer_flags = v.answer;
            }
            (v.pass, v.counter_slot, v.logged)
        }
        Outcome::NonIp => (true, slot::NON_IP, NOT_LOGGED),
        Outcome::Malformed(reason) => (false, reason.slot(), NOT_LOGGED),
    };
    if LOGGING.load() != 0 && logged != NOT_LOGGED {
        log_packet(log::Frame::Xdp(ctx.ctx), logged, counter_slot, pass, ifindex, len, Direction::In);
    }

    count(counter_slot, len);
    if TRACE.load() != 0 {
        let _ = TRACE_LAST.set(0, counter_slot << 1 | !pass as u32, 0);
    }
    if iface.stats_slot != NO_STATS {
        count_iface(iface.stats_slot, pass, len);
    }
    if pass {
        return xdp_action::XDP_PASS;
    }
    if answer_flags != 0 {
        answer::tail_call(&ctx, answer_flags);
    }
    xdp_action::XDP_DROP
}

shared_program!(xdpwall_egress, PROGRAM_EGRESS);

/// Packets the host sends or forwards: judged by `out` rules, and seen by connection
/// tracking so replies to the host's own flows find their state. Nothing else is
/// judged here: non-IP and unparsable packets leave untouched. A `block return` rule
/// drops here without an answer: the host's own stack answers its own sockets.

#[classifier]
pub fn xdpwall_egress(ctx: TcContext) -> i32 {
    if STATEFUL.load() == 0 && HAS_OUT_RULES.load() == 0 {
        return TC_ACT_OK;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    // SAFETY: `skb` points at the kernel's __sk_buff for the duration of the call.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let iface = iface_of(ifindex);
    if iface.class == IFACE_SKIPPED {
        return TC_ACT_OK;
    }
    let Outcome::Ip(fields) = parse::parse::<false>(start, end) else { return TC_ACT_OK };
    let len = (end - start) as u64;
    let Verdict { pass, counter_slot, logged, .. } = judge(&fields, iface.class, Direction::Out, len);
    count(counter_slot, len);
    if LOGGING.load() != 0 && logged != NOT_LOGGED {
        log_packet(log::Frame::Skb(ctx.skb.skb), logged, counter_slot, pass, ifindex, len, Direction::Out);
    }
    if pass { TC_ACT_OK } else { TC_ACT_SHOT }
}

/// [`Verdict::logged`] of a packet not to be logged.
const NOT_LOGGED: u32 = u32::MAX;

/// What [`judge`] decided.
struct Verdict {
    pass: bool,
    counter_slot: u32,
    /// The number to log the packet under (`LogRecord::rule`), or [`NOT_LOGGED`]. A
    /// plain value, not an `Option`: a `None`'s undefined payload, copied around,
    /// became a read of a register a call had clobbered, which the verifier rejects.
    logged: u32,
    /// The deciding rule's `RULE_RETURN_*` flags and ICMP codes (0: no answer).
    answer: u32,
}

impl Verdict {
    #[inline(always)]
    fn passed(counter_slot: u32) -> Verdict {
        Verdict { pass: true, counter_slot, logged: NOT_LOGGED, answer: 0 }
    }

    /// A packet the rule with counter slot `rule_counter` passed, dropped by its limit
    /// per source.
    #[inline(always)]
    fn source_limited(rule_counter: u32) -> Verdict {
        rate::count_source_limited(rule_counter);
        Verdict { pass: false, counter_slot: slot::SOURCE_LIMIT, logged: NOT_LOGGED, answer: 0 }
    }
}

/// The decision for an IP packet: the flow's state if it has a live one, else the
/// first matching rule (opening a flow for `keep state`), else the default policy
/// (inbound) or pass (outbound).
#[inline(always)]
fn judge(fields: &Fields, iface_class: u32, dir: Direction, len: u64) -> Verdict {
    let stateful = STATEFUL.load() != 0;
    if stateful {
        let tracked = ct::track(fields, len);
        if tracked == ct::Tracked::PASS {
            return Verdict::passed(slot::STATE);
        }
        if let Some(counter) = tracked.refused_by() {
            return Verdict::source_limited(counter);
        }
    }
    if dir == Direction::In || HAS_OUT_RULES.load() != 0 {
        let matched = if RATE_RULES.load() == 0 {
            first_match(fields, iface_class, dir)
        } else {
            first_match_rated(fields, iface_class, dir)
        };
        if let Some(bit) = matched
            && let Some(rule) = RULES.get(bit)
        {
            let pass = rule.action == ACTION_PASS;
            if stateful && pass && rule.flags & RULE_KEEP_STATE != 0 && !ct::open(fields, len, rule.counter) {
                return Verdict::source_limited(rule.counter);
            }
            let logged = if LOGGING.load() != 0 && rule.flags & RULE_LOG != 0 { rule.number } else { NOT_LOGGED };
            let answer = if pass { 0 } else { rule.flags & RULE_ANSWER_BITS };
            return Verdict { pass, counter_slot: rule.counter, logged, answer };
        }
    }
    match dir {
        Direction::Out => Verdict::passed(slot::OUT_UNMATCHED),
        Direction::In if DEFAULT_ACTION.load() == ACTION_PASS => Verdict::passed(slot::DEFAULT_PASS),
        Direction::In => Verdict {
            pass: false,
            counter_slot: slot::DEFAULT_BLOCK,
            logged: if DEFAULT_LOG.load() != 0 { LOG_RULE_DEFAULT } else { NOT_LOGGED },
            answer: 0,
        },
    }
}

/// Logs a packet decided by rule number `rule` (or the default policy).
#[inline(always)]
fn log_packet(frame: log::Frame, rule: u32, counter_slot: u32, pass: bool, ifindex: u32, len: u64, dir: Direction) {
    let entry = log::Entry {
        rule,
        counter: if rule == LOG_RULE_DEFAULT { u32::MAX } else { counter_slot },
        action: if pass { ACTION_PASS } else { ACTION_DROP },
        ifindex,
        len: len as u32,
        direction: (dir == Direction::Out) as u8,
    };
    log::record(frame, &entry);
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

/// One address field's lookup structures.
struct AddrMaps {
    dir4: &'static Array<[u32; 2]>,
    long24: &'static Array<Long24>,
    prefixes: &'static HashMap<PrefixKey, u32>,
    trie6: &'static LpmTrie<[u8; 16], PrefixClass>,
    bloom6: &'static BloomFilter<PrefixKey>,
    v6_lengths: &'static Global<u64>,
}

impl AddrMaps {
    /// The source (`SRC`) or destination field's maps. Built where used, never
    /// stored: BPF data cannot hold map pointers, and inlined, the references become
    /// direct map loads.
    #[inline(always)]
    fn of<const SRC: bool>() -> Self {
        if SRC {
            AddrMaps {
                dir4: &SRC_DIR4,
                long24: &SRC_LONG24,
                prefixes: &SRC_PREFIXES,
                trie6: &SRC_TRIE6,
                bloom6: &SRC_BLOOM6,
                v6_lengths: &SRC_V6_LENGTHS,
            }
        } else {
            AddrMaps {
                dir4: &DST_DIR4,
                long24: &DST_LONG24,
                prefixes: &DST_PREFIXES,
                trie6: &DST_TRIE6,
                bloom6: &DST_BLOOM6,
                v6_lengths: &DST_V6_LENGTHS,
            }
        }
    }

    /// At most three array reads; then, only for an address a longer prefix covers,
    /// one hash lookup per longer length present in its /24.
    #[inline(always)]
    fn class_v4(&self, ip: u32) -> Option<u32> {
        let top = self.dir_entry(ip >> 16)?;
        let entry = if top & dir::GROUP == 0 {
            top
        } else {
            self.dir_entry(dir::TOP_ENTRIES + (top & !dir::GROUP) * dir::GROUP_ENTRIES + ((ip >> 8) & 0xff))?
        };
        if entry & dir::LONGER == 0 {
            return Some(entry);
        }
        let long = self.long24.get(entry & !dir::LONGER)?;
        let host = ip & 0xff;
        // The mask keeps the word index visibly inside the array for the verifier.
        if long.covered[(host >> 6) as usize & 3] & (1 << (host & 63)) == 0 {
            return Some(long.class);
        }
        if long.covered_class != Long24::MIXED {
            return Some(long.covered_class);
        }
        let lengths = long.lengths;
        let mut key = PrefixKey { addr: [0; 16], len: 0, family: FAMILY_V4 as u8, _pad: [0; 2] };
        // Longest first: the first hit is the longest match.
        let mut len = 32;
        while len >= V4_HASHED_MIN_LEN {
            if lengths & (1 << (len - V4_HASHED_MIN_LEN)) != 0 {
                let masked = ip & (u32::MAX << (32 - len));
                // Bytes one by one: a slice copy here made LLVM spill far past the stack limit.
                key.addr[0] = (masked >> 24) as u8;
                key.addr[1] = (masked >> 16) as u8;
                key.addr[2] = (masked >> 8) as u8;
                key.addr[3] = masked as u8;
                key.len = len as u8;
                if let Some(class) = self.prefix_class(&key) {
                    return Some(class);
                }
            }
            len -= 1;
        }
        Some(long.class)
    }

    #[inline(always)]
    fn prefix_class(&self, key: &PrefixKey) -> Option<u32> {
        // SAFETY: the value is plain data, copied out at once.
        unsafe { self.prefixes.get(key) }.copied()
    }

    #[inline(always)]
    fn dir_entry(&self, i: u32) -> Option<u32> {
        let pair = self.dir4.get(i / dir::PER_ELEMENT)?;
        Some(if i % dir::PER_ELEMENT == 0 { pair[0] } else { pair[1] })
    }

    /// The trie's longest match (it always holds ::/0), then the hashed lengths longer
    /// than that match, longest first.
    #[inline(always)]
    fn class_v6(&self, addr: [u8; 16]) -> Option<u32> {
        let found = *self.trie6.get(Key::new(128, addr))?;
        // Two halves: BPF has no 128-bit shifts.
        let hi = u64::from_be_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7]]);
        let lo = u64::from_be_bytes([addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15]]);
        let mut key = PrefixKey { addr: [0; 16], len: 0, family: FAMILY_V6 as u8, _pad: [0; 2] };
        let mut lengths = self.v6_lengths.load();
        for _ in 0..V6_HASHED_LENGTHS {
            let len = (lengths & 0xff) as u32;
            // The list ends with 0, which no trie match is shorter than.
            if len <= found.len {
                break;
            }
            lengths >>= 8;
            let (h, l) = match len {
                64.. => (hi, if len == 64 { 0 } else { lo & (u64::MAX << (128 - len)) }),
                _ => (hi & (u64::MAX << (64 - len)), 0),
            };
            key.addr[..8].copy_from_slice(&h.to_be_bytes());
            key.addr[8..].copy_from_slice(&l.to_be_bytes());
            key.len = len as u8;
            // Most random sources are in no hashed prefix: the Bloom filter (a bitmap
            // that stays in cache) says so without the hash's cache misses.
            if self.bloom6.contains(&key).is_err() {
                continue;
            }
            if let Some(class) = self.prefix_class(&key) {
                return Some(class);
            }
        }
        Some(found.class)
    }
}

/// The class of the packet's source (`SRC`) or destination address. Out of line, a
/// frame per family: the lookup keys would not fit in `first_match`'s frame beside the
/// bitmap pointers (the verifier allows 512 bytes for a whole chain of calls).
#[inline(always)]
fn addr_class<const SRC: bool>(p: &Fields) -> Option<u32> {
    let addr = if SRC { p.src } else { p.dst };
    if p.family == FAMILY_V4 {
        addr_class_v4::<SRC>(u32::from_be_bytes(Fields::v4(addr)))
    } else {
        addr_class_v6::<SRC>(addr)
    }
}

#[inline(never)]
fn addr_class_v4<const SRC: bool>(ip: u32) -> Option<u32> {
    AddrMaps::of::<SRC>().class_v4(ip)
}

/// `addr` points at the 16 address bytes in the packet (a pointer, not a copy: a copy
/// would be passed through the caller's frame).
#[inline(never)]
fn addr_class_v6<const SRC: bool>(addr: *const u8) -> Option<u32> {
    // SAFETY: the parse checked that 16 address bytes lie inside the frame.
    AddrMaps::of::<SRC>().class_v6(unsafe { core::ptr::read_unaligned(addr as *const [u8; 16]) })
}

// Out of line: the per-field bitmap pointers need a stack frame of their own.
#[inline(never)]
fn first_match(p: &Fields, iface_class: u32, dir: Direction) -> Option<u32> {
    let b_dir = bitmap_of(field::DIRECTION, || {
        Some(if dir == Direction::In { DIR_IN_CLASS.load() } else { DIR_OUT_CLASS.load() })
    })
    .ok()?;
    let b_iface = bitmap_of(field::IFACE, || Some(iface_class)).ok()?;
    let b_proto = bitmap_of(field::PROTO, || keyed(&PROTO_CLASS, p.proto_key(), &PROTO_DEFAULT)).ok()?;
    let b_src = bitmap_of(field::SRC_ADDR, || addr_class::<true>(p)).ok()?;
    let b_dst = bitmap_of(field::DST_ADDR, || addr_class::<false>(p)).ok()?;
    let b_sport = bitmap_of(field::SRC_PORT, || keyed(&SPORT_CLASS, p.sport_key, &SPORT_DEFAULT)).ok()?;
    let b_dport = bitmap_of(field::DST_PORT, || keyed(&DPORT_CLASS, p.dport_key, &DPORT_DEFAULT)).ok()?;
    let b_flags = bitmap_of(field::TCP_FLAGS, || keyed(&TCP_FLAGS_CLASS, p.tcp_flags_key, &TCP_FLAGS_DEFAULT)).ok()?;
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

/// What the rated classifier needs of a packet: each used field's class (by field
/// number) and the source address for per-source limiters. Plain memory, so that a
/// global function can take a pointer to it.
#[repr(C)]
pub struct RatedKeys {
    classes: [u32; field::COUNT as usize],
    family: u32,
    _pad: u32,
    src_hi: u64,
    src_lo: u64,
}

/// [`xdpwall_rated_match`]'s answer when no rule matches.
const NO_MATCH: u32 = u32::MAX;

shared_map! {
    /// The rated classifier's keys for the packet at hand (per CPU): in a map, not on
    /// the stack, where the chain of calls down to the rate limiter has no room left.
    RATED_SCRATCH: PerCpuArray<RatedKeys> = PerCpuArray::with_max_entries(1, 0);
}

/// [`first_match`] for rulesets with rate limits: a rule over its rate does not match,
/// and the next candidate decides. The fields' classes are looked up here (the address
/// lookups in frames of their own), the word loop runs in a global function.
#[inline(never)]
fn first_match_rated(p: &Fields, iface_class: u32, dir: Direction) -> Option<u32> {
    let k = RATED_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch value, used only here while the program runs.
    let keys = unsafe { &mut *k };
    (keys.src_hi, keys.src_lo) = addr_halves(p.src, p.family);
    keys.family = p.family;
    keys.classes = [0; field::COUNT as usize];
    keys.classes[field::DIRECTION as usize] =
        if dir == Direction::In { DIR_IN_CLASS.load() } else { DIR_OUT_CLASS.load() };
    keys.classes[field::IFACE as usize] = iface_class;
    if used(field::PROTO) {
        keys.classes[field::PROTO as usize] = keyed(&PROTO_CLASS, p.proto_key(), &PROTO_DEFAULT)?;
    }
    if used(field::SRC_ADDR) {
        keys.classes[field::SRC_ADDR as usize] = addr_class::<true>(p)?;
    }
    if used(field::DST_ADDR) {
        keys.classes[field::DST_ADDR as usize] = addr_class::<false>(p)?;
    }
    if used(field::SRC_PORT) {
        keys.classes[field::SRC_PORT as usize] = keyed(&SPORT_CLASS, p.sport_key, &SPORT_DEFAULT)?;
    }
    if used(field::DST_PORT) {
        keys.classes[field::DST_PORT as usize] = keyed(&DPORT_CLASS, p.dport_key, &DPORT_DEFAULT)?;
    }
    if used(field::TCP_FLAGS) {
        keys.classes[field::TCP_FLAGS as usize] = keyed(&TCP_FLAGS_CLASS, p.tcp_flags_key, &TCP_FLAGS_DEFAULT)?;
    }
    if used(field::ICMP) {
        keys.classes[field::ICMP as usize] = keyed(&ICMP_CLASS, p.icmp_key, &ICMP_DEFAULT)?;
    }
    if used(field::VLAN) {
        keys.classes[field::VLAN as usize] = keyed(&VLAN_CLASS, p.vlan_key, &VLAN_DEFAULT)?;
    }
    let rule = xdpwall_rated_match(k);
    // Masked: the verifier knows nothing of a global function's answer.
    (rule != NO_MATCH).then_some(rule & (MAX_RULES as u32 - 1))
}

/// The rated classifier's word loop: the first candidate rule not over its rate, or
/// [`NO_MATCH`]. A global function (exported, C calling convention): the verifier
/// checks it once, on its own, whatever the paths that lead to it; as a static
/// function it was walked once per distinct state of the parse, and a ruleset with
/// many fields and rate limits ran past the verifier's million instructions.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xdpwall_rated_match(k: *const RatedKeys) -> u32 {
    // SAFETY: the caller passes its keys; the verifier checks the pointer's memory.
    let Some(k) = (unsafe { k.as_ref() }) else { return NO_MATCH };
    let class = |f: u32| Some(k.classes[f as usize]);
    let Ok(b_dir) = bitmap_of(field::DIRECTION, || class(field::DIRECTION)) else { return NO_MATCH };
    let Ok(b_iface) = bitmap_of(field::IFACE, || class(field::IFACE)) else { return NO_MATCH };
    let Ok(b_proto) = bitmap_of(field::PROTO, || class(field::PROTO)) else { return NO_MATCH };
    let Ok(b_src) = bitmap_of(field::SRC_ADDR, || class(field::SRC_ADDR)) else { return NO_MATCH };
    let Ok(b_dst) = bitmap_of(field::DST_ADDR, || class(field::DST_ADDR)) else { return NO_MATCH };
    let Ok(b_sport) = bitmap_of(field::SRC_PORT, || class(field::SRC_PORT)) else { return NO_MATCH };
    let Ok(b_dport) = bitmap_of(field::DST_PORT, || class(field::DST_PORT)) else { return NO_MATCH };
    let Ok(b_flags) = bitmap_of(field::TCP_FLAGS, || class(field::TCP_FLAGS)) else { return NO_MATCH };
    let Ok(b_icmp) = bitmap_of(field::ICMP, || class(field::ICMP)) else { return NO_MATCH };
    let Ok(b_vlan) = bitmap_of(field::VLAN, || class(field::VLAN)) else { return NO_MATCH };

    let fields = [b_dir, b_iface, b_proto, b_src, b_dst, b_sport, b_dport, b_flags, b_icmp, b_vlan];
    let words = RULE_WORDS.load();
    let mut candidates = if words >= 64 { u64::MAX } else { (1u64 << words) - 1 };
    candidates &= and_fields(&fields, |b| b.summary);
    // Rules of the current word that were over their rate.
    let mut skipped = 0u64;
    // One step per candidate word (at most `RULE_WORDS`) plus one per rule over its
    // rate (at most `RATE_RULES`). Both are load-time constants, so the verifier walks
    // no more steps than the ruleset can take: bounded by all 64 words, a ruleset of
    // a few words with many rate limits took it past its million instructions.
    for _ in 0..words.min(BITMAP_WORDS as u32) + RATE_RULES.load() {
        if candidates == 0 {
            break;
        }
        let w = core::hint::black_box(candidates.trailing_zeros() as usize) & (BITMAP_WORDS - 1);
        let acc = and_fields(&fields, |b| b.words[w]) & !skipped;
        if acc != 0 {
            let rule = w as u32 * 64 + acc.trailing_zeros();
            let admitted = rate::xdpwall_rate_admit(rule, k.family, k.src_hi, k.src_lo);
            if admitted != rate::OVER_RATE {
                return admitted;
            }
            skipped |= acc & acc.wrapping_neg();
            continue;
        }
        candidates &= candidates - 1;
        skipped = 0;
    }
    NO_MATCH
}

/// An address in the packet as two big-endian halves (IPv4 in the top 32 bits of the
/// first): scalars, which a global function takes.
#[inline(always)]
fn addr_halves(addr: *const u8, family: u32) -> (u64, u64) {
    if family == FAMILY_V4 {
        return ((u32::from_be_bytes(Fields::v4(addr)) as u64) << 32, 0);
    }
    // SAFETY: the parse checked that 16 address bytes lie inside the frame.
    let a = unsafe { core::ptr::read_unaligned(addr as *const [u8; 16]) };
    (
        u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
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
pub(crate) fn count(slot: u32, len: u64) {
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
