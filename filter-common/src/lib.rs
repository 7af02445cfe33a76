//! The ABI shared by the XDP program and the loader: map names, keys, values and
//! reserved counter slots. Everything is `#[repr(C)]` with explicit padding so both
//! sides agree byte for byte.
#![no_std]
#![deny(missing_docs)]

/// Bumped whenever a pinned map's layout changes; recorded in the loader's state so
/// a newer build never misreads maps pinned by an older one.
pub const ABI_VERSION: u32 = 5;

/// Most ordered rules one ruleset may hold (one bit each in a [`RuleBitmap`]).
pub const MAX_RULES: usize = 4096;
/// 64-bit words in a [`RuleBitmap`].
pub const BITMAP_WORDS: usize = MAX_RULES / 64;

/// Set of rules, one bit per rule index (bit `i % 64` of word `i / 64`).
///
/// Every field lookup yields one of these (through an equivalence class); the rule
/// that decides is the lowest bit set in the AND of all of them.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RuleBitmap {
    /// The bits.
    pub words: [u64; BITMAP_WORDS],
    /// Bit `w` set when `words[w]` is not zero: the classifier ANDs the summaries
    /// first and then visits only words that can still hold a match, which keeps the
    /// cost nearly flat as rules grow. Kept by [`RuleBitmap::with_summary`].
    pub summary: u64,
}

/// What a rule does with a packet.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct RuleAction {
    /// [`ACTION_PASS`] or [`ACTION_DROP`].
    pub action: u32,
    /// Slot of this rule's counters in `COUNTERS`; stable across applies so that
    /// counters of unchanged rules carry over.
    pub counter: u32,
    /// [`RULE_KEEP_STATE`], ...
    pub flags: u32,
    /// The rule's number in the file, from 1 (the classifier's bits are in pf's
    /// deciding order, not the file's): what the packet log records.
    pub number: u32,
}

/// `RuleAction::flags`: a pass by this rule creates a flow entry (`keep state`).
pub const RULE_KEEP_STATE: u32 = 1;
/// `RuleAction::flags`: the rule has a rate limit (`rate N/s`, `max-pkt-rate`): its
/// [`RateLimit`] is entry `rule` of `RATE_LIMITS`. While over its rate the rule does not
/// match, and the packet goes on to the next candidate rule.
pub const RULE_RATE: u32 = 2;
/// `RuleAction::flags`: with [`RULE_RATE`], one limiter per source (`per-source`), kept
/// in `SOURCE_RATES`.
pub const RULE_RATE_PER_SOURCE: u32 = 4;

/// `RuleAction::flags`: packets this rule decides are logged (`log`).
pub const RULE_LOG: u32 = 8;

/// Bytes of each logged packet kept, from the Ethernet header on.
pub const LOG_CAPTURE: usize = 128;
/// Size of the pinned log ring buffer (`LOG_RING`), a power of two of pages: about
/// 6000 records before a reader that does not keep up loses some.
pub const LOG_RING_BYTES: u32 = 1 << 20;
/// Default `set log-rate`: records per second (and at once) when the ruleset sets none.
/// A flood of logged packets becomes at most this many records, never a host DoS.
pub const DEFAULT_LOG_RATE: u32 = 1000;

/// `LogRecord::rule` of a packet the default policy decided (`set default block log`).
pub const LOG_RULE_DEFAULT: u32 = 0;

/// One logged packet, as it sits in `LOG_RING`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LogRecord {
    /// When (monotonic clock, ns: CLOCK_MONOTONIC).
    pub time_ns: u64,
    /// Receiving (in) or sending (out) interface.
    pub ifindex: u32,
    /// The deciding rule's number, from 1 in ruleset order; [`LOG_RULE_DEFAULT`] for
    /// the default policy.
    pub rule: u32,
    /// The frame's length on the wire.
    pub packet_len: u32,
    /// Bytes of the frame in `data` (at most [`LOG_CAPTURE`]).
    pub captured: u32,
    /// [`ACTION_PASS`] or [`ACTION_DROP`].
    pub action: u8,
    /// 0: in (XDP), 1: out (TC egress).
    pub direction: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
    /// The first `captured` bytes of the frame.
    pub data: [u8; LOG_CAPTURE],
}

/// The log's counters (per CPU in the pinned `LOG_COUNTERS`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct LogCounters {
    /// Records written to the ring buffer.
    pub written: u64,
    /// Packets not logged because the log was over `set log-rate`.
    pub suppressed: u64,
    /// Records lost because the ring buffer was full (nobody reading, or too slowly).
    pub lost: u64,
}

impl core::ops::Add for LogCounters {
    type Output = LogCounters;

    /// Sums two CPUs' counters.
    fn add(self, o: LogCounters) -> LogCounters {
        LogCounters {
            written: self.written + o.written,
            suppressed: self.suppressed + o.suppressed,
            lost: self.lost + o.lost,
        }
    }
}

/// `RuleAction::flags`: the rule's source is a dynamic table (`from <t>` of a `table <t>
/// persist`), checked against `DYN_SOURCES` (slot `RateLimit::dyn_from`) by the rated
/// classifier; a source not in it makes the rule not match.
pub const RULE_DYN_FROM: u32 = 16;
/// `RuleAction::flags`: with [`RULE_DYN_FROM`], `from !<t>`: a source in it does not match.
pub const RULE_DYN_NEGATED: u32 = 32;

/// Most dynamic tables (`table <t> persist`): one expiry each in a [`DynEntry`].
pub const MAX_DYN_TABLES: usize = 8;
/// Sources the pinned `DYN_SOURCES` holds (all dynamic tables together); the least
/// recently used is forgotten first.
pub const DYN_SOURCES_ENTRIES: u32 = 65_536;

/// Value of `DYN_SOURCES` (key: a [`SourceKey`] with `rule` 0, the whole address): when
/// the source leaves each dynamic table (monotonic ns), 0 when it is not in it,
/// `u64::MAX` for good.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DynEntry {
    /// By table slot.
    pub expires_ns: [u64; MAX_DYN_TABLES],
}

/// An element of the pinned `DYN_NAMES`: which dynamic table a slot holds (its name,
/// NUL-padded; all zero: free). Kept by the loader so that slots outlive applies.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DynName {
    /// The table's name.
    pub name: [u8; 64],
}

/// Most rules with a rate limit in one ruleset: each can send a packet on to the next
/// candidate once, which bounds the classifier's loop (and the verifier's walk of it).
pub const MAX_RATE_RULES: u32 = 32;
/// Most steps of the rated classifier's loop: the ruleset's 64-rule words plus its
/// rules with a rate limit or a dynamic table as their source. The verifier walks every
/// step; measured on Linux 6.18, 24 words with 32 rate rules (56 steps) verify in about
/// a second and 26 words (58) do not verify at all, so the limit keeps a margin.
pub const MAX_RATED_STEPS: u32 = 48;

/// A rule's rate limiter (an element of `RATE_LIMITS`, indexed by rule): GCRA, the
/// generic cell rate algorithm, on one word. `tat_ns` is the theoretical arrival time
/// of the next packet; a packet conforms when `max(tat, now) - now <= tolerance_ns`, and
/// then moves `tat` to `max(tat, now) + interval_ns` with a compare-and-swap, so that
/// CPUs judging packets of the same rule at once never both spend the same token.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Theoretical arrival time (monotonic ns); 0: the bucket is full. Written by the
    /// program only (per-rule limiters; per-source ones keep theirs in `SOURCE_RATES`).
    pub tat_ns: u64,
    /// Nanoseconds per packet: `1e9 / rate`.
    pub interval_ns: u64,
    /// How far ahead of now `tat` may run: `(burst - 1) * interval_ns`.
    pub tolerance_ns: u64,
    /// Per-source limiters: the IPv4 prefix length sources are grouped by.
    pub mask_v4: u8,
    /// Per-source limiters: the IPv6 prefix length.
    pub mask_v6: u8,
    /// With [`RULE_DYN_FROM`]: the dynamic table (slot) the rule's source must be in.
    pub dyn_from: u8,
    /// `overload <table>`: the slot + 1 of the dynamic table a source over its
    /// per-source rate is put into; 0: none.
    pub overload: u8,
    /// `overload <table> for N`: seconds the source stays; 0: until removed.
    pub overload_secs: u32,
}

/// Key of `SOURCE_RATES` (one limiter per rule and source prefix), `SOURCE_NODES` and
/// `FLUSH_MARKS` (per rule and source address) and `DYN_SOURCES` (per address).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// The source, masked to the rule's prefix length (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// `SOURCE_RATES`: the rule's index in the ruleset. `SOURCE_NODES` and
    /// `FLUSH_MARKS`: the rule's counter slot, which its flows carry across applies
    /// ([`FLUSH_GLOBAL_RULE`]: every rule). `DYN_SOURCES`: 0.
    pub rule: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// Per-rule events besides matches (per CPU in the pinned `RULE_EVENTS`, indexed like
/// `COUNTERS` by the rule's counter slot, so they carry over an apply too).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct RuleEvents {
    /// Packets the rule would have matched but for its rate limit.
    pub over_rate: u64,
    /// Packets the rule logged.
    pub logged: u64,
    /// Packets the rule passed but a limit per source dropped: a new flow over
    /// `max-src-states`, a handshake over `max-src-conn` or `max-src-conn-rate`.
    pub source_limited: u64,
}

impl core::ops::Add for RuleEvents {
    type Output = RuleEvents;

    /// Sums two CPUs' events.
    fn add(self, o: RuleEvents) -> RuleEvents {
        RuleEvents {
            over_rate: self.over_rate + o.over_rate,
            logged: self.logged + o.logged,
            source_limited: self.source_limited + o.source_limited,
        }
    }
}

/// Most flows (`max-src-states`) or connections (`max-src-conn`) a rule may allow one
/// source: the slots of a [`SourceNode`].
pub const SOURCE_SLOTS: usize = 256;

/// A rule's limits per source (element of `SOURCE_LIMITS`, indexed by the rule's
/// counter slot, which the flows it opens carry). A source is the address that opened
/// the flow. Flows hold slots in the source's [`SourceNode`]; connections are counted
/// only once their handshake completed with the acknowledgement number of the
/// responder's SYN-ACK, which a spoofed source never sees.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SourceLimit {
    /// Slots of the node in use: `max-src-states`, else `max-src-conn`; 0 when
    /// neither is set.
    pub slots: u32,
    /// `max-src-states N`: a flow takes a slot when it opens; 0: no limit.
    pub max_states: u32,
    /// `max-src-conn N`: connections (slots marked [`SLOT_CONNECTED`]); 0: no limit.
    pub max_conn: u32,
    /// `overload <t> for N`: seconds the source stays; 0: until removed.
    pub overload_secs: u32,
    /// `max-src-conn-rate N/S` as GCRA (see [`RateLimit`]): ns per connection; 0: none.
    pub conn_interval_ns: u64,
    /// `max-src-conn-rate`: `(N - 1) * conn_interval_ns`.
    pub conn_tolerance_ns: u64,
    /// `overload <t>`: the dynamic table's slot + 1; 0: none.
    pub overload: u8,
    /// `overload ... flush [global]`: one of `FLUSH_*`.
    pub flush: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// [`SourceLimit::flush`]: no `flush`.
pub const FLUSH_NONE: u8 = 0;
/// [`SourceLimit::flush`]: `flush`: end the source's flows that this rule opened.
pub const FLUSH_RULE: u8 = 1;
/// [`SourceLimit::flush`]: `flush global`: end every flow the source opened.
pub const FLUSH_GLOBAL: u8 = 2;
/// [`SourceKey::rule`] of a `FLUSH_MARKS` entry made by `flush global`.
pub const FLUSH_GLOBAL_RULE: u16 = u16::MAX;

/// Value of `SOURCE_NODES`: what one source holds through one rule.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SourceNode {
    /// When the node was made: flows older than it hold no slot in it (the node was
    /// forgotten and made again, or the flow came from an earlier ruleset).
    pub created_ns: u64,
    /// `max-src-conn-rate`: the GCRA theoretical arrival time.
    pub conn_tat_ns: u64,
    /// One per flow the source holds: when the slot frees (monotonic ns, coarse
    /// clock; even), plus [`SLOT_CONNECTED`] once the flow's handshake completed.
    /// Free when in the past. A flow keeps its slot's time at or after its own expiry,
    /// so a slot outlives its flow, never the other way round.
    pub slots: [u64; SOURCE_SLOTS],
}

/// [`SourceNode::slots`]: the flow completed its TCP handshake (a connection).
pub const SLOT_CONNECTED: u64 = 1;

/// Default `set limit src-nodes`: per-source limiters kept (pf's default).
pub const DEFAULT_SRC_NODES: u32 = 10_000;
/// `RuleAction::flags` of a `block` rule: a TCP segment it blocks is answered with an
/// RST (`block return`, `block return-rst`).
pub const RULE_RETURN_RST: u32 = 1 << 6;
/// `RuleAction::flags` of a `block` rule: a packet it blocks is answered with an ICMP
/// or ICMPv6 destination unreachable (`block return`, `return-icmp`, `return-icmp6`;
/// TCP too unless [`RULE_RETURN_RST`] is set), with the codes at
/// [`RULE_ICMP_CODE_SHIFT`] and [`RULE_ICMP6_CODE_SHIFT`].
pub const RULE_RETURN_ICMP: u32 = 1 << 7;
/// `RuleAction::flags` bits 16-23: the ICMP (IPv4) destination-unreachable code.
pub const RULE_ICMP_CODE_SHIFT: u32 = 16;
/// `RuleAction::flags` bits 24-31: the ICMPv6 destination-unreachable code.
pub const RULE_ICMP6_CODE_SHIFT: u32 = 24;
/// Every `RuleAction::flags` bit an answer reads: the `RULE_RETURN_*` flags and codes.
pub const RULE_ANSWER_BITS: u32 = RULE_RETURN_RST | RULE_RETURN_ICMP | 0xffff << RULE_ICMP_CODE_SHIFT;

/// Answers to blocked packets (`block return`), sent from the data plane with XDP_TX.
pub mod answer {
    /// Answers each CPU may send per second: a spoofed flood of blocked packets makes
    /// the box reflect at most this many per CPU (Linux sends 1000 ICMP errors a
    /// second per host by default). The rest are dropped and counted as suppressed.
    pub const RATE_PER_CPU: u64 = 500;
    /// Answers a CPU may send at once after being idle.
    pub const BURST: u64 = 50;
    /// Most bytes of the blocked IPv6 packet an ICMPv6 error quotes: what fits in the
    /// IPv6 minimum MTU (1280) after the IPv6 and ICMPv6 headers (RFC 4443 2.4 (c)).
    pub const ICMP6_QUOTE_MAX: usize = 1280 - 40 - 8;
    /// Bytes of the blocked IPv4 packet's payload an ICMP error quotes after its IP
    /// header (RFC 792; what the BSDs, and so pf, send by default).
    pub const ICMP_QUOTE_PAYLOAD: usize = 8;
    /// TTL / hop limit of answers (the BSDs' and Linux's default).
    pub const TTL: u8 = 64;
}

/// Key of the connection table: a flow's two endpoints in canonical order (`a` is
/// the lower of (address, port)), so both directions find the same entry.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct FlowKey {
    /// Endpoint a's address (IPv4 in the first 4 bytes, rest zero).
    pub addr_a: [u8; 16],
    /// Endpoint b's address.
    pub addr_b: [u8; 16],
    /// Endpoint a's port (ICMP echo: the identifier), host byte order.
    pub port_a: u16,
    /// Endpoint b's port.
    pub port_b: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// Value of the connection table.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct FlowState {
    /// Monotonic time (ns, coarse clock) after which the entry counts as absent.
    pub expires_ns: u64,
    /// When the flow was created.
    pub created_ns: u64,
    /// Packets seen from endpoint a and from endpoint b.
    pub packets: [u64; 2],
    /// Bytes seen from a and from b.
    pub bytes: [u64; 2],
    /// Counter slot of the rule that created the flow.
    pub rule_counter: u32,
    /// One of `flow::*`.
    pub state: u8,
    /// Which endpoint opened the flow: 0 = a, 1 = b.
    pub orig: u8,
    /// TCP: bit 0 = a sent FIN, bit 1 = b sent FIN.
    pub fins: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// TCP: the acknowledgement number that completes the handshake (the responder's
    /// SYN-ACK sequence number + 1): only the real opener has seen it.
    pub ack_expected: u32,
    /// `FLUSH_EPOCH` when the flow was last checked against `FLUSH_MARKS`.
    pub flush_epoch: u32,
    /// When the flow's slot in its source's node frees (`SourceNode::slots`).
    pub slot_until_ns: u64,
    /// The flow's slot in its source's node + 1; 0: none.
    pub source_slot: u16,
    /// Explicit padding.
    pub _pad2: [u8; 6],
}

/// Flow states and the timeout that applies in each.
pub mod flow {
    /// TCP: the opening SYN seen (timeout `tcp.first`).
    pub const TCP_SYN_SENT: u8 = 1;
    /// TCP: SYN-ACK seen (`tcp.opening`).
    pub const TCP_SYN_RECEIVED: u8 = 2;
    /// TCP: the opener's ACK seen (`tcp.established`).
    pub const TCP_ESTABLISHED: u8 = 3;
    /// TCP: one side sent FIN (`tcp.closing`).
    pub const TCP_CLOSING: u8 = 4;
    /// TCP: both sides sent FIN (`tcp.finwait`).
    pub const TCP_FIN_WAIT: u8 = 5;
    /// TCP: RST seen (`tcp.closed`).
    pub const TCP_CLOSED: u8 = 6;
    /// UDP: only the opener has sent (`udp.first`).
    pub const UDP_SINGLE: u8 = 7;
    /// UDP: both sides have sent (`udp.multiple`).
    pub const UDP_MULTIPLE: u8 = 8;
    /// ICMP/ICMPv6 echo (`icmp.first`).
    pub const ICMP_ECHO: u8 = 9;
    /// Number of states + 1 (index 0 unused).
    pub const COUNT: usize = 10;

    /// Name of a state for listings.
    pub const fn name(state: u8) -> &'static str {
        match state {
            TCP_SYN_SENT => "SYN_SENT",
            TCP_SYN_RECEIVED => "SYN_RECEIVED",
            TCP_ESTABLISHED => "ESTABLISHED",
            TCP_CLOSING => "CLOSING",
            TCP_FIN_WAIT => "FIN_WAIT",
            TCP_CLOSED => "CLOSED",
            UDP_SINGLE => "SINGLE",
            UDP_MULTIPLE => "MULTIPLE",
            ICMP_ECHO => "ECHO",
            _ => "?",
        }
    }
}

/// The packet goes on to the kernel stack.
pub const ACTION_PASS: u32 = 0;
/// The packet is dropped.
pub const ACTION_DROP: u32 = 1;

/// Packets and bytes (per CPU in the map; summed by the loader).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (whole frames, from the Ethernet header on).
    pub bytes: u64,
}

impl core::ops::Add for Counter {
    type Output = Counter;

    /// Sums two counters (the loader sums per-CPU values with this).
    fn add(self, o: Counter) -> Counter {
        Counter { packets: self.packets + o.packets, bytes: self.bytes + o.bytes }
    }
}

/// Per-interface totals (per CPU in the map).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct IfaceCounters {
    /// Packets passed.
    pub passed: Counter,
    /// Packets dropped, by a rule, by the default policy or as malformed.
    pub dropped: Counter,
}

impl core::ops::Add for IfaceCounters {
    type Output = IfaceCounters;

    /// Sums two interfaces' totals field by field.
    fn add(self, o: IfaceCounters) -> IfaceCounters {
        IfaceCounters { passed: self.passed + o.passed, dropped: self.dropped + o.dropped }
    }
}

/// Value of the `IFACES` hash (key: ifindex).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct IfaceEntry {
    /// Class id for the interface field (index into `BITMAPS`).
    pub class: u32,
    /// Slot in `IFACE_COUNTERS`.
    pub stats_slot: u32,
}

/// `IfaceEntry::class` of an interface named by `set skip on`: the programs pass
/// everything on it at once, judge nothing and create no state.
pub const IFACE_SKIPPED: u32 = u32::MAX;

/// Most interfaces one loader manages.
pub const MAX_IFACES: u32 = 64;

/// Reserved slots at the start of `COUNTERS`; rules' slots follow.
pub mod slot {
    /// Packets decided by `set default pass`.
    pub const DEFAULT_PASS: u32 = 0;
    /// Packets decided by `set default block`.
    pub const DEFAULT_BLOCK: u32 = 1;
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, ...): always passed.
    pub const NON_IP: u32 = 2;
    /// Packets passed on the fast path because they belong to a tracked flow.
    pub const STATE: u32 = 3;
    /// Outgoing packets no rule matched (`out` or without direction): passed (the default policy governs
    /// inbound traffic only, so a host never cuts off its own replies).
    pub const OUT_UNMATCHED: u32 = 4;
    /// First of the malformed-packet reasons; see [`super::Malformed`].
    pub const MALFORMED_BASE: u32 = 5;
    /// Packets on an interface named by `set skip on`: passed unjudged.
    pub const SKIPPED: u32 = 29;
    /// Blocked packets answered (`block return`: an RST or an ICMP error sent back).
    pub const ANSWERS_SENT: u32 = 30;
    /// Blocked packets a `block return` rule would have answered, dropped without an
    /// answer because the answers' rate limit was reached.
    pub const ANSWERS_SUPPRESSED: u32 = 31;
    /// Packets a pass rule's limit per source dropped (`max-src-states`,
    /// `max-src-conn`, `max-src-conn-rate`).
    pub const SOURCE_LIMIT: u32 = 28;
    /// Number of reserved slots; the first rule slot. Room for 23 malformed reasons
    /// (raised from 16 with ABI 3, when the reasons outgrew it).
    pub const RESERVED: u32 = 32;
}

/// Why a packet was dropped as malformed (counter slot `MALFORMED_BASE + reason`).
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Malformed {
    /// Frame shorter than an Ethernet header.
    EthTruncated = 0,
    /// A VLAN tag cut short.
    VlanTruncated = 1,
    /// More VLAN tags than the two we look through.
    VlanTooMany = 2,
    /// IPv4 header cut short, or IHL beyond the frame.
    Ipv4Truncated = 3,
    /// IPv4 version or IHL field invalid.
    Ipv4BadHeader = 4,
    /// IPv6 header cut short.
    Ipv6Truncated = 5,
    /// IPv6 version field invalid.
    Ipv6BadHeader = 6,
    /// An IPv6 extension header cut short.
    Ipv6ExtTruncated = 7,
    /// More IPv6 extension headers than the walk is bounded to, or headers longer
    /// than [`super::MAX_HEADER_BYTES`].
    Ipv6ExtTooMany = 8,
    /// TCP/UDP/SCTP/ICMP header cut short in a packet that is not a fragment.
    L4Truncated = 9,
    /// IPv4 Total Length shorter than the header, or longer than the frame: the
    /// packet the kernel would see is not the one the rules would judge.
    Ipv4BadLength = 10,
    /// IPv6 Payload Length longer than the frame.
    Ipv6BadLength = 11,
    /// TCP Data Offset below 5 (a header shorter than its fixed part), or, in a packet
    /// that is not a fragment, pointing past the end of the segment.
    TcpBadDataOffset = 12,
    /// A first fragment too short to hold the whole TCP/UDP/SCTP/ICMP header (or, in
    /// IPv6, the whole header chain up to it): the ports and flags the rules would
    /// match are in a later fragment (RFC 1858, RFC 3128, RFC 8200 4.5).
    FragmentTiny = 13,
    /// A TCP fragment at offset 1 (8 bytes): it overlaps the first fragment's TCP
    /// header and would rewrite its flags on reassembly (RFC 1858).
    FragmentOverlap = 14,
}

impl RuleBitmap {
    /// No rule.
    pub const EMPTY: RuleBitmap = RuleBitmap { words: [0; BITMAP_WORDS], summary: 0 };

    /// The same set with `summary` computed from `words`.
    pub fn with_summary(mut self) -> Self {
        self.summary = 0;
        for (w, word) in self.words.iter().enumerate() {
            if *word != 0 {
                self.summary |= 1 << w;
            }
        }
        self
    }

    /// Adds rule `i`.
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Removes rule `i`.
    pub fn clear(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }

    /// Whether rule `i` is in the set.
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }
}

impl Malformed {
    /// All reasons, in slot order.
    pub const ALL: [Malformed; 15] = [
        Malformed::EthTruncated,
        Malformed::VlanTruncated,
        Malformed::VlanTooMany,
        Malformed::Ipv4Truncated,
        Malformed::Ipv4BadHeader,
        Malformed::Ipv6Truncated,
        Malformed::Ipv6BadHeader,
        Malformed::Ipv6ExtTruncated,
        Malformed::Ipv6ExtTooMany,
        Malformed::L4Truncated,
        Malformed::Ipv4BadLength,
        Malformed::Ipv6BadLength,
        Malformed::TcpBadDataOffset,
        Malformed::FragmentTiny,
        Malformed::FragmentOverlap,
    ];

    /// Counter slot of this reason.
    pub const fn slot(self) -> u32 {
        slot::MALFORMED_BASE + self as u32
    }

    /// Short name for status output.
    pub const fn name(self) -> &'static str {
        match self {
            Malformed::EthTruncated => "eth-truncated",
            Malformed::VlanTruncated => "vlan-truncated",
            Malformed::VlanTooMany => "vlan-too-many-tags",
            Malformed::Ipv4Truncated => "ipv4-truncated",
            Malformed::Ipv4BadHeader => "ipv4-bad-header",
            Malformed::Ipv6Truncated => "ipv6-truncated",
            Malformed::Ipv6BadHeader => "ipv6-bad-header",
            Malformed::Ipv6ExtTruncated => "ipv6-ext-truncated",
            Malformed::Ipv6ExtTooMany => "ipv6-ext-too-many",
            Malformed::L4Truncated => "l4-truncated",
            Malformed::Ipv4BadLength => "ipv4-bad-length",
            Malformed::Ipv6BadLength => "ipv6-bad-length",
            Malformed::TcpBadDataOffset => "tcp-bad-data-offset",
            Malformed::FragmentTiny => "fragment-tiny",
            Malformed::FragmentOverlap => "fragment-overlap",
        }
    }
}

// Every reason has its counter slot below the first rule's.
const _: () = assert!(slot::MALFORMED_BASE + Malformed::ALL.len() as u32 <= slot::SOURCE_LIMIT);
const _: () = assert!(slot::ANSWERS_SUPPRESSED < slot::RESERVED);

/// IPv6 extension headers walked before a packet counts as malformed.
pub const MAX_IPV6_EXT: u32 = 8;
/// Header bytes (link, network and extension headers) looked through; a packet whose
/// L4 header starts beyond this counts as malformed. Bounds every offset for the verifier.
pub const MAX_HEADER_BYTES: usize = 512;

/// Size of `COUNTERS`: reserved slots plus two per rule, so that an apply can give
/// every new rule a slot that neither the old nor the new ruleset is counting in.
pub const COUNTER_SLOTS: u32 = slot::RESERVED + 2 * MAX_RULES as u32;

/// Keys of the port arrays: a port, or [`PORT_NONE`] for packets without ports
/// (not TCP/UDP/SCTP, or a non-first fragment).
pub const PORT_NONE: u32 = 65536;
/// Keys of the TCP flags array: the flags byte, or [`TCP_FLAGS_NONE`] (not TCP).
pub const TCP_FLAGS_NONE: u32 = 256;
/// Keys of the ICMP array: `type << 8 | code`, or [`ICMP_NONE`] (not ICMP/ICMPv6).
pub const ICMP_NONE: u32 = 65536;
/// Keys of the VLAN array: the VLAN id, or [`VLAN_NONE`] (untagged).
pub const VLAN_NONE: u32 = 4096;
/// Keys of the protocol array: `family * 256 + protocol`.
pub const PROTO_KEYS: u32 = 512;
/// Family index of IPv4 in protocol keys.
pub const FAMILY_V4: u32 = 0;
/// Family index of IPv6 in protocol keys.
pub const FAMILY_V6: u32 = 1;

/// The IPv4 direct array's layout. Address lookups (source and destination alike)
/// each cost a bounded number of memory accesses, however many prefixes a table holds:
/// - IPv4 up to /24: a two-level direct array (`*_DIR4`, DIR-16-8): entry `addr >> 16` of
///   the first [`dir::TOP_ENTRIES`] holds a class, or with [`dir::GROUP`] the index of a
///   256-entry group of the /16, indexed by the third octet, that holds the /24's class.
/// - IPv4 /25 to /32: a group entry with [`dir::LONGER`] holds the index of the /24's
///   [`Long24`] (`*_LONG24`): its own class, which of its 256 addresses a longer prefix
///   covers, and the lengths present; only a covered address pays for hash lookups in
///   `*_PREFIXES`, one per length present in that /24, longest first. A flood of random
///   sources through a list of hosts thus costs three array reads per packet, not a
///   cache-missing hash lookup.
/// - IPv6: the most populated lengths (at most [`V6_HASHED_LENGTHS`], load-time
///   `*_V6_LENGTHS`: one per byte from the lowest, longest first, 0 ending the list)
///   are exact keys in the same hash, looked up longest first, each behind a Bloom
///   filter (`*_BLOOM6`, cache-resident) that turns most misses away before the hash;
///   the rest, always with `::/0`, sit in a
///   small LPM trie (`*_TRIE6`) whose answer carries its prefix length, so that only
///   longer hashed lengths are looked up after it.
pub mod dir {
    /// First-level entries: one per /16.
    pub const TOP_ENTRIES: u32 = 1 << 16;
    /// Entries in a group: one per /24 of the group's /16.
    pub const GROUP_ENTRIES: u32 = 256;
    /// First-level flag: the entry is a group index, not a class.
    pub const GROUP: u32 = 1 << 31;
    /// Group-entry flag: prefixes longer than /24 lie inside this /24; the other bits are
    /// the index of its [`super::Long24`].
    pub const LONGER: u32 = 1 << 31;
    /// The array is read two entries at a time: its values are `[u32; 2]`, since the
    /// kernel rounds every array element up to 8 bytes.
    pub const PER_ELEMENT: u32 = 2;
}

/// Shortest IPv4 prefix length kept in the prefix hash (longer than the direct array).
pub const V4_HASHED_MIN_LEN: u32 = 25;
/// Most IPv6 prefix lengths looked up in the prefix hash (the bytes of a u64).
pub const V6_HASHED_LENGTHS: usize = 8;
/// Largest class id an address lookup can return (the flags take the top bit).
pub const MAX_ADDR_CLASS: u32 = (1 << 31) - 1;

/// A /24 holding prefixes longer than /24 (an element of `*_LONG24`).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Long24 {
    /// The class of the /24's addresses no longer prefix covers.
    pub class: u32,
    /// Bit `len - V4_HASHED_MIN_LEN` set when a /len prefix lies in this /24.
    pub lengths: u32,
    /// The class of every covered address when the longer prefixes here all have the
    /// same class (a blocklist's hosts do), so no hash lookup is needed; else
    /// [`Long24::MIXED`].
    pub covered_class: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Bit `host` (of word `host / 64`) set when a longer prefix covers `x.y.z.host`.
    pub covered: [u64; 4],
}

impl Long24 {
    /// `covered_class` of a /24 whose longer prefixes differ in class.
    pub const MIXED: u32 = u32::MAX;
}

/// Key of a `*_PREFIXES` hash: a prefix, its host bits cleared.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
pub struct PrefixKey {
    /// The address (IPv4 in the first 4 bytes, rest zero), network order.
    pub addr: [u8; 16],
    /// Prefix length.
    pub len: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// Value of an IPv6 `*_TRIE6` entry: its class and its own prefix length.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct PrefixClass {
    /// Class id (index into `BITMAPS`).
    pub class: u32,
    /// The entry's prefix length.
    pub len: u32,
}

/// The classifier's fields. Bit `1 << field` in `USED_FIELDS` says a rule uses it;
/// unused fields are never looked up.
pub mod field {
    /// Receiving interface (`on IFACE`).
    pub const IFACE: u32 = 0;
    /// Address family and IP protocol (`inet`, `proto`).
    pub const PROTO: u32 = 1;
    /// Source address (`from ADDR`).
    pub const SRC_ADDR: u32 = 2;
    /// Destination address (`to ADDR`).
    pub const DST_ADDR: u32 = 3;
    /// Source port.
    pub const SRC_PORT: u32 = 4;
    /// Destination port.
    pub const DST_PORT: u32 = 5;
    /// TCP flags.
    pub const TCP_FLAGS: u32 = 6;
    /// ICMP/ICMPv6 type and code.
    pub const ICMP: u32 = 7;
    /// VLAN id.
    pub const VLAN: u32 = 8;
    /// Direction (`in`: XDP, `out`: TC egress).
    pub const DIRECTION: u32 = 9;
    /// Number of fields.
    pub const COUNT: u32 = 10;

    /// What each field is called in summaries, by field number.
    pub const NAMES: [&str; COUNT as usize] = [
        "interface",
        "family/protocol",
        "source address",
        "destination address",
        "source port",
        "destination port",
        "tcp flags",
        "icmp type/code",
        "vlan",
        "direction",
    ];

    /// A field looked up in an array (one entry per key, holding class + 1; 0 means
    /// the field's default class, a load-time global).
    #[derive(Clone, Copy, Debug)]
    pub struct Keyed {
        /// The field number.
        pub field: u32,
        /// The array's map name.
        pub map: &'static str,
        /// The default class's global name.
        pub default_global: &'static str,
        /// Keys: the array's size.
        pub domain: u32,
    }

    /// Every array-keyed field.
    pub const KEYED: [Keyed; 6] = [
        Keyed {
            field: PROTO,
            map: super::names::PROTO_CLASS,
            default_global: super::names::PROTO_DEFAULT,
            domain: super::PROTO_KEYS,
        },
        Keyed {
            field: SRC_PORT,
            map: super::names::SPORT_CLASS,
            default_global: super::names::SPORT_DEFAULT,
            domain: super::PORT_NONE + 1,
        },
        Keyed {
            field: DST_PORT,
            map: super::names::DPORT_CLASS,
            default_global: super::names::DPORT_DEFAULT,
            domain: super::PORT_NONE + 1,
        },
        Keyed {
            field: TCP_FLAGS,
            map: super::names::TCP_FLAGS_CLASS,
            default_global: super::names::TCP_FLAGS_DEFAULT,
            domain: super::TCP_FLAGS_NONE + 1,
        },
        Keyed {
            field: ICMP,
            map: super::names::ICMP_CLASS,
            default_global: super::names::ICMP_DEFAULT,
            domain: super::ICMP_NONE + 1,
        },
        Keyed {
            field: VLAN,
            map: super::names::VLAN_CLASS,
            default_global: super::names::VLAN_DEFAULT,
            domain: super::VLAN_NONE + 1,
        },
    ];
}

/// Flow timeouts: pf's `set timeout` name, the load-time global that holds it, and pf's
/// default in seconds.
pub mod timeout {
    use super::names;

    /// One timeout.
    #[derive(Clone, Copy, Debug)]
    pub struct Timeout {
        /// The `set timeout` name.
        pub name: &'static str,
        /// The program's global.
        pub global: &'static str,
        /// pf's default, in seconds.
        pub default_secs: u32,
    }

    /// After the opening SYN.
    pub const TCP_FIRST: Timeout = Timeout { name: "tcp.first", global: names::TIMEOUT_TCP_FIRST, default_secs: 120 };
    /// After the SYN-ACK.
    pub const TCP_OPENING: Timeout =
        Timeout { name: "tcp.opening", global: names::TIMEOUT_TCP_OPENING, default_secs: 30 };
    /// Established.
    pub const TCP_ESTABLISHED: Timeout =
        Timeout { name: "tcp.established", global: names::TIMEOUT_TCP_ESTABLISHED, default_secs: 86400 };
    /// After the first FIN.
    pub const TCP_CLOSING: Timeout =
        Timeout { name: "tcp.closing", global: names::TIMEOUT_TCP_CLOSING, default_secs: 900 };
    /// After both FINs.
    pub const TCP_FINWAIT: Timeout =
        Timeout { name: "tcp.finwait", global: names::TIMEOUT_TCP_FINWAIT, default_secs: 45 };
    /// After an RST.
    pub const TCP_CLOSED: Timeout = Timeout { name: "tcp.closed", global: names::TIMEOUT_TCP_CLOSED, default_secs: 90 };
    /// UDP, one side only.
    pub const UDP_FIRST: Timeout = Timeout { name: "udp.first", global: names::TIMEOUT_UDP_FIRST, default_secs: 60 };
    /// UDP, both sides.
    pub const UDP_MULTIPLE: Timeout =
        Timeout { name: "udp.multiple", global: names::TIMEOUT_UDP_MULTIPLE, default_secs: 60 };
    /// ICMP echo.
    pub const ICMP: Timeout = Timeout { name: "icmp.first", global: names::TIMEOUT_ICMP, default_secs: 20 };

    /// Every timeout, in the order `set timeout` lists them.
    pub const ALL: [Timeout; 9] =
        [TCP_FIRST, TCP_OPENING, TCP_ESTABLISHED, TCP_CLOSING, TCP_FINWAIT, TCP_CLOSED, UDP_FIRST, UDP_MULTIPLE, ICMP];
}

/// Numbers on the wire that the program, the reference model and the tests read
/// packets with.
pub mod wire {
    /// EtherType of IPv4.
    pub const ETH_P_IP: u16 = 0x0800;
    /// EtherType of IPv6.
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// EtherType of ARP.
    pub const ETH_P_ARP: u16 = 0x0806;
    /// TPID of an 802.1Q (customer) VLAN tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// TPID of an 802.1ad (service, outer) VLAN tag.
    pub const ETH_P_8021AD: u16 = 0x88a8;

    /// IPv6 hop-by-hop options header.
    pub const IPPROTO_HOPOPTS: u8 = 0;
    /// ICMP.
    pub const IPPROTO_ICMP: u8 = 1;
    /// TCP.
    pub const IPPROTO_TCP: u8 = 6;
    /// UDP.
    pub const IPPROTO_UDP: u8 = 17;
    /// IPv6 routing header.
    pub const IPPROTO_ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const IPPROTO_FRAGMENT: u8 = 44;
    /// IPsec authentication header.
    pub const IPPROTO_AH: u8 = 51;
    /// ICMPv6.
    pub const IPPROTO_ICMPV6: u8 = 58;
    /// No next header.
    pub const IPPROTO_NONE: u8 = 59;
    /// IPv6 destination options header.
    pub const IPPROTO_DSTOPTS: u8 = 60;
    /// SCTP.
    pub const IPPROTO_SCTP: u8 = 132;

    /// TCP FIN flag.
    pub const TCP_FIN: u8 = 0x01;
    /// TCP SYN flag.
    pub const TCP_SYN: u8 = 0x02;
    /// TCP RST flag.
    pub const TCP_RST: u8 = 0x04;
    /// TCP PSH flag.
    pub const TCP_PSH: u8 = 0x08;
    /// TCP ACK flag.
    pub const TCP_ACK: u8 = 0x10;
    /// TCP URG flag.
    pub const TCP_URG: u8 = 0x20;
    /// TCP ECE flag.
    pub const TCP_ECE: u8 = 0x40;
    /// TCP CWR flag.
    pub const TCP_CWR: u8 = 0x80;

    /// The TCP flag pf's `flags` spells with `letter` (F S R P A U E W), if any.
    pub const fn tcp_flag(letter: char) -> Option<u8> {
        Some(match letter {
            'F' => TCP_FIN,
            'S' => TCP_SYN,
            'R' => TCP_RST,
            'P' => TCP_PSH,
            'A' => TCP_ACK,
            'U' => TCP_URG,
            'E' => TCP_ECE,
            'W' => TCP_CWR,
            _ => return None,
        })
    }

    /// ICMP type: destination unreachable.
    pub const ICMP_UNREACH: u8 = 3;
    /// ICMP destination-unreachable code: port unreachable (pf's `return` default).
    pub const ICMP_UNREACH_PORT: u8 = 3;
    /// ICMPv6 type: destination unreachable.
    pub const ICMP6_DST_UNREACH: u8 = 1;
    /// ICMPv6 destination-unreachable code: port unreachable (pf's `return` default).
    pub const ICMP6_DST_UNREACH_NOPORT: u8 = 4;
}

/// Names of the programs, maps and load-time globals in the eBPF object. The kernel side
/// declares each through `shared_map!`/`shared_global!`, which fail to compile when the
/// declared name has no constant here or a different one; the loader uses only these.
pub mod names {
    /// Whether two names are equal (usable in constant assertions).
    pub const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Declares the name constants, each its own identifier.
    macro_rules! names {
        ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
            $($(#[$doc])* pub const $name: &str = stringify!($name);)*
        };
    }

    /// Program: packets arriving (XDP).
    pub const PROGRAM_XDP: &str = "xdpwall";
    /// Program: packets leaving (TC egress).
    pub const PROGRAM_EGRESS: &str = "xdpwall_egress";
    /// Program: the answer to a blocked packet (`block return`), tail-called by
    /// [`PROGRAM_XDP`] through `ANSWER_PROGS`, verified on its own.
    pub const PROGRAM_ANSWER: &str = "xdpwall_answer";

    names! {
        /// Pinned map: per-rule and reserved counters.
        COUNTERS,
        /// Pinned map: per-interface counters.
        IFACE_COUNTERS,
        /// Pinned map: tracked flows the other side has answered.
        STATES,
        /// Pinned map: tracked flows not answered yet.
        STATES_NEW,
        /// Pinned map: the layout version of the pinned maps.
        ABI,
        /// Map: interface entries by ifindex.
        IFACES,
        /// Map: action and counter slot per rule.
        RULES,
        /// Map: class id -> rules.
        BITMAPS,
        /// Map: protocol key -> class.
        PROTO_CLASS,
        /// Map: source port -> class.
        SPORT_CLASS,
        /// Map: destination port -> class.
        DPORT_CLASS,
        /// Map: TCP flags -> class.
        TCP_FLAGS_CLASS,
        /// Map: ICMP type and code -> class.
        ICMP_CLASS,
        /// Map: VLAN id -> class.
        VLAN_CLASS,
        /// Map: the source's IPv4 direct array.
        SRC_DIR4,
        /// Map: the source's hashed prefixes.
        SRC_PREFIXES,
        /// Map: the source's IPv6 trie.
        SRC_TRIE6,
        /// Map: a Bloom filter of the source's hashed IPv6 prefixes.
        SRC_BLOOM6,
        /// Map: the destination's IPv4 direct array.
        DST_DIR4,
        /// Map: the destination's hashed prefixes.
        DST_PREFIXES,
        /// Map: the destination's IPv6 trie.
        DST_TRIE6,
        /// Map: a Bloom filter of the destination's hashed IPv6 prefixes.
        DST_BLOOM6,
        /// Map: the last decision (tests).
        TRACE_LAST,
        /// Global: bit per used field.
        USED_FIELDS,
        /// Global: 64-rule words in use.
        RULE_WORDS,
        /// Global: the default action.
        DEFAULT_ACTION,
        /// Global: interface class of interfaces without an entry.
        IFACE_MISS_CLASS,
        /// Global: default class of the protocol array.
        PROTO_DEFAULT,
        /// Global: default class of the source-port array.
        SPORT_DEFAULT,
        /// Global: default class of the destination-port array.
        DPORT_DEFAULT,
        /// Global: default class of the TCP flags array.
        TCP_FLAGS_DEFAULT,
        /// Global: default class of the ICMP array.
        ICMP_DEFAULT,
        /// Global: default class of the VLAN array.
        VLAN_DEFAULT,
        /// Global: some rule keeps state.
        STATEFUL,
        /// Global: direction class of packets arriving.
        DIR_IN_CLASS,
        /// Global: direction class of packets leaving.
        DIR_OUT_CLASS,
        /// Global: some rule says `out`.
        HAS_OUT_RULES,
        /// Global: record decisions (tests).
        TRACE,
        /// Map: the source's /24s that hold longer prefixes.
        SRC_LONG24,
        /// Global: the source's hashed IPv6 lengths.
        SRC_V6_LENGTHS,
        /// Map: the destination's /24s that hold longer prefixes.
        DST_LONG24,
        /// Global: the destination's hashed IPv6 lengths.
        DST_V6_LENGTHS,
        /// Global: `set timeout tcp.first`.
        TIMEOUT_TCP_FIRST,
        /// Global: `set timeout tcp.opening`.
        TIMEOUT_TCP_OPENING,
        /// Global: `set timeout tcp.established`.
        TIMEOUT_TCP_ESTABLISHED,
        /// Global: `set timeout tcp.closing`.
        TIMEOUT_TCP_CLOSING,
        /// Global: `set timeout tcp.finwait`.
        TIMEOUT_TCP_FINWAIT,
        /// Global: `set timeout tcp.closed`.
        TIMEOUT_TCP_CLOSED,
        /// Global: `set timeout udp.first`.
        TIMEOUT_UDP_FIRST,
        /// Global: `set timeout udp.multiple`.
        TIMEOUT_UDP_MULTIPLE,
        /// Global: `set timeout icmp.first`.
        TIMEOUT_ICMP,
        /// Map: per-rule rate limiters ([`super::RateLimit`]), by rule index.
        RATE_LIMITS,
        /// Map: per-source rate limiters (LRU, `set limit src-nodes`).
        SOURCE_RATES,
        /// Pinned map: per-rule events ([`super::RuleEvents`]) by counter slot.
        RULE_EVENTS,
        /// Global: rules with a rate limit (bounds the classifier's loop).
        RATE_RULES,
        /// Pinned map: the packet log (ring buffer of [`super::LogRecord`]).
        LOG_RING,
        /// Map: the log's rate limiter (one [`super::RateLimit`]).
        LOG_LIMIT,
        /// Pinned map: the log's counters ([`super::LogCounters`]).
        LOG_COUNTERS,
        /// Global: some rule logs, or the default policy does.
        LOGGING,
        /// Global: `set default block log`.
        DEFAULT_LOG,
        /// Pinned map: sources in dynamic tables ([`super::DynEntry`]).
        DYN_SOURCES,
        /// Pinned map: the dynamic tables' names by slot ([`super::DynName`]).
        DYN_NAMES,
        /// Map: per-CPU scratch for a new `DYN_SOURCES` entry.
        DYN_SCRATCH,
        /// Pinned map: per CPU, when the next answer to a blocked packet may be sent.
        ANSWER_BUCKET,
        /// Pinned map: the answer program, at index 0 (a program array).
        ANSWER_PROGS,
        /// Pinned map: per CPU, what the answer program is to answer (the blocked
        /// packet's offsets and kind, the rule's answer flags).
        ANSWER_ARGS,
        /// Global: some rule answers what it blocks.
        HAS_ANSWERS,
        /// Map: limits per source ([`super::SourceLimit`]) by counter slot.
        SOURCE_LIMITS,
        /// Map: what each source holds per rule ([`super::SourceNode`]; LRU, `set limit
        /// src-nodes`).
        SOURCE_NODES,
        /// Map: sources whose flows `overload ... flush` ended, and when.
        FLUSH_MARKS,
        /// Map: flushes so far (one u64): a flow checks the marks when it changed.
        FLUSH_EPOCH,
        /// Map: per-CPU scratch for a new `SOURCE_NODES` entry.
        SOURCE_SCRATCH,
        /// Map: per-CPU scratch for a new flow's entry.
        FLOW_SCRATCH,
        /// Map: per-CPU scratch for the rated classifier's keys.
        RATED_SCRATCH,
        /// Global: some rule has a limit per source.
        SOURCE_LIMITED,
        /// Global: some rule's overload flushes.
        HAS_FLUSH,
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)] plain integers with no padding.
    unsafe impl aya::Pod for super::RuleBitmap {}
    unsafe impl aya::Pod for super::RuleAction {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceCounters {}
    unsafe impl aya::Pod for super::IfaceEntry {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
    unsafe impl aya::Pod for super::PrefixKey {}
    unsafe impl aya::Pod for super::PrefixClass {}
    unsafe impl aya::Pod for super::Long24 {}
    unsafe impl aya::Pod for super::RateLimit {}
    unsafe impl aya::Pod for super::SourceKey {}
    unsafe impl aya::Pod for super::RuleEvents {}
    unsafe impl aya::Pod for super::LogRecord {}
    unsafe impl aya::Pod for super::LogCounters {}
    unsafe impl aya::Pod for super::DynEntry {}
    unsafe impl aya::Pod for super::DynName {}
    unsafe impl aya::Pod for super::SourceLimit {}
    unsafe impl aya::Pod for super::SourceNode {}
}
