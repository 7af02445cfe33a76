//! The ruleset as written: what the parser produces and the compiler consumes.
//! Serde gives it a JSON form for the API.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use super::interfaces::{IfaceAddr, IfaceAddrKind};

/// A whole ruleset: policy, named tables and rules in file order. As in pf, the first
/// matching `quick` rule decides a packet, else the last matching rule, else the
/// default policy (inbound) or pass (outbound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// `set default pass|block`; `Pass` when not set.
    pub default_action: Action,
    /// Tables by name (without the angle brackets).
    pub tables: BTreeMap<String, Table>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// `set limit` and `set timeout` settings.
    #[serde(default)]
    pub options: Options,
}

/// Connection-tracking settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Options {
    /// `set limit states N`: answered flows kept (and half as many unanswered ones, in a
    /// table of their own); taken when the filter is loaded.
    pub state_limit: Option<u32>,
    /// `set timeout NAME SECONDS`, by name (`tcp.established`, ...; see `filter_common::timeout`).
    pub timeouts: BTreeMap<String, u32>,
    /// `set limit src-nodes N`: per-source limiters kept (least recently used forgotten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_nodes: Option<u32>,
    /// `set default ... log`: packets the default policy decides are logged.
    #[serde(default)]
    pub default_log: bool,
    /// `set log-rate N/s`: most log records a second (and at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rate: Option<u32>,
    /// `set block-policy drop|return`: what a plain `block` does.
    #[serde(default)]
    pub block_policy: BlockPolicy,
    /// Tables filled with interface addresses when the ruleset is resolved against the
    /// host (`rules::resolve_interfaces`): a rule's `(em0)`, `em0:network`, `self` (a
    /// table named as written) or an inline table's interface entries.
    #[serde(default)]
    pub interface_tables: BTreeMap<String, Vec<IfaceAddr>>,
    /// `set skip on IF`: interfaces left unfiltered (everything passes, no state).
    #[serde(default)]
    pub skip: Vec<String>,
}

/// `set block-policy`: how a `block` rule without `drop` or `return` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockPolicy {
    /// Drop silently (pf's default).
    #[default]
    Drop,
    /// As `block return`.
    Return,
}

/// How a `block` rule refuses a packet (pf's `block drop|return|return-rst|return-icmp`).
/// Answers are sent from the data plane to inbound packets only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BlockMode {
    /// Plain `block`: as `set block-policy` says (on `pass` rules: unused).
    #[default]
    Policy,
    /// `block drop`: no answer.
    Drop,
    /// `block return`: an RST to TCP, an ICMP/ICMPv6 port unreachable to the rest.
    Return,
    /// `block return-rst`: an RST to TCP; other packets are dropped.
    ReturnRst,
    /// `block return-icmp`, `return-icmp6`, `return-icmp(CODE[, CODE6])`: an ICMP or
    /// ICMPv6 destination unreachable with these codes, to TCP too.
    ReturnIcmp {
        /// The ICMP destination-unreachable code for IPv4 packets.
        icmp: u8,
        /// The ICMPv6 destination-unreachable code for IPv6 packets.
        icmp6: u8,
    },
}

/// Default `set limit states`.
pub const DEFAULT_STATE_LIMIT: u32 = 100_000;

impl Options {
    /// The timeout `name` in seconds: the set value or the default.
    pub fn timeout(&self, name: &str) -> u32 {
        self.timeouts.get(name).copied().unwrap_or_else(|| {
            filter_common::timeout::ALL.iter().find(|t| t.name == name).map_or(0, |t| t.default_secs)
        })
    }
}

/// A named set of addresses and prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Entries; an address is a full-length prefix. Duplicates removed, order kept.
    pub entries: Vec<IpNet>,
    /// Where the entries came from: `None` for an inline `{ ... }` list.
    pub file: Option<String>,
    /// `table <t> persist`: a dynamic table, empty in the ruleset, filled by the data
    /// plane (`overload <t>`) and `xdpwall table`, kept across applies.
    #[serde(default)]
    pub dynamic: bool,
}

/// What a rule (or the default policy) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the packet through.
    Pass,
    /// Drop the packet.
    Block,
}

/// Which packets a rule sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Arriving on an interface (XDP).
    In,
    /// Sent by the host (TC egress).
    Out,
    /// Both ways: a rule written without `in` or `out` (as in pf).
    #[default]
    Both,
}

impl Direction {
    /// Whether a rule with this direction sees packets going `way` (`In` or `Out`).
    pub fn covers(self, way: Direction) -> bool {
        self == Direction::Both || self == way
    }
}

/// Address family restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 only.
    Inet,
    /// IPv6 only.
    Inet6,
}

/// Position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, counted in characters.
    pub col: u32,
}

/// One ordered rule, as resolved: pf's defaults that the text leaves implicit (state
/// on `pass`, `flags S/SA` on stateful TCP) are written out in `keep_state` and
/// `tcp_flags`, so the JSON form says exactly what the rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Where the rule starts in its file.
    pub pos: Pos,
    /// The file it is in when that is an included file (`include "FILE"`), as named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The rule as written, whitespace collapsed to single spaces (shown by status).
    pub text: String,
    /// pass or block.
    pub action: Action,
    /// in, out, or both when neither is written (also when JSON leaves it out).
    #[serde(default)]
    pub direction: Direction,
    /// `quick`: when this rule matches, it decides at once; otherwise the last matching
    /// rule decides (pf's evaluation).
    #[serde(default)]
    pub quick: bool,
    /// `on IFACE`, or the first of `on { A B }`.
    pub interface: Option<String>,
    /// The other interfaces of `on { A B ... }`: the rule holds on any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces_also: Vec<String>,
    /// `on ! IFACE` / `on ! { A B }`: the rule holds on every interface but these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interface_negated: bool,
    /// `inet` / `inet6`.
    pub family: Option<Family>,
    /// `proto N` or `proto { tcp udp }`: IP protocol numbers; `None` is any.
    pub protocols: Option<Vec<u8>>,
    /// `from ...`.
    pub from: Endpoint,
    /// `to ...`.
    pub to: Endpoint,
    /// `flags S/SA`: the flags a TCP packet must have to match; packets of other
    /// protocols are not constrained by it (a TCP packet without a TCP header, a later
    /// fragment, only when the rule also names other protocols or none). A `pass` rule
    /// that keeps state gets pf's `flags S/SA` when it names none and not `flags any`.
    pub tcp_flags: Option<TcpFlags>,
    /// `icmp-type T [code C]` (ICMP or ICMPv6 numbering, by the rule's proto), or the
    /// first of `icmp-type { T1 T2 ... }`.
    pub icmp: Option<IcmpMatch>,
    /// The other types of `icmp-type { T1 T2 ... }`: the rule holds for any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmp_also: Vec<IcmpMatch>,
    /// `vlan N`.
    pub vlan: Option<u16>,
    /// Keeps state: `keep state` or `modulate state`, and every `pass` rule without
    /// `no state` (pf's default).
    pub keep_state: bool,
    /// `log`.
    pub log: bool,
    /// `label "..."`.
    pub label: Option<String>,
    /// `rate N/s [burst M] [per-source ...]` or pf's `max-pkt-rate N/S`: while over it,
    /// the rule does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// `overload <table> [for N]`: a source over the rule's per-source rate goes into
    /// the dynamic table (for N seconds; 0: until removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overload: Option<Overload>,
    /// pf's limits per source on a rule that keeps state: `max-src-states`,
    /// `max-src-conn`, `max-src-conn-rate`.
    #[serde(default, skip_serializing_if = "SourceLimits::is_empty")]
    pub source_limits: SourceLimits,
    /// `block drop|return|...`: how a `block` rule refuses.
    #[serde(default)]
    pub block_mode: BlockMode,
}

/// `overload <table> [flush [global]] [for N]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overload {
    /// The dynamic table.
    pub table: String,
    /// Seconds a source stays; 0: until removed.
    pub secs: u32,
    /// `flush`: also end the flows the source holds (only after a connection limit,
    /// which a spoofed source cannot trip).
    #[serde(default, skip_serializing_if = "Flush::is_none")]
    pub flush: Flush,
}

/// Which of an overloaded source's flows `overload ... flush` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flush {
    /// No `flush`: the source's flows live on.
    #[default]
    None,
    /// `flush`: the flows the rule opened for the source.
    Rule,
    /// `flush global`: every flow the source opened, by any rule.
    Global,
}

impl Flush {
    /// Whether this is [`Flush::None`].
    pub fn is_none(&self) -> bool {
        *self == Flush::None
    }
}

/// pf's limits per source address on a rule that keeps state. A source is the address
/// that opened the flow, counted per rule (pf's `source-track rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceLimits {
    /// `max-src-states N`: flows one source may hold open through the rule; its next
    /// new flow is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_states: Option<u32>,
    /// `max-src-conn N`: TCP connections that completed their handshake one source may
    /// hold through the rule; the handshake of the next one is dropped and the source
    /// is overloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conn: Option<u32>,
    /// `max-src-conn-rate N/S`: completed TCP handshakes per source; over it, as with
    /// `max_conn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conn_rate: Option<ConnRate>,
}

impl SourceLimits {
    /// Whether the rule has none of the limits.
    pub fn is_empty(&self) -> bool {
        *self == SourceLimits::default()
    }

    /// Whether a limit judges sources by completed connections (which a spoofed
    /// source cannot make): `max-src-conn` or `max-src-conn-rate`.
    pub fn judges_connections(&self) -> bool {
        self.max_conn.is_some() || self.max_conn_rate.is_some()
    }
}

/// `max-src-conn-rate N/S`: `connections` per `seconds`, `connections` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnRate {
    /// Connections per period.
    pub connections: u32,
    /// The period in seconds.
    pub seconds: u32,
}

/// A rule's rate limit: `packets` per `seconds`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Packets per period.
    pub packets: u32,
    /// The period in seconds (1 for `rate N/s`).
    pub seconds: u32,
    /// Packets that may pass at once after a quiet period (default: `packets`).
    pub burst: u32,
    /// `per-source`: one limiter per source prefix instead of one for the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_source: Option<SourceMask>,
}

/// How `per-source` groups sources: by these prefix lengths (`mask /A [/B]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMask {
    /// IPv4 prefix length, 1-32 (default 32: each address).
    pub v4: u8,
    /// IPv6 prefix length, 1-128 (default 64: each subnet, as hosts pick addresses in it).
    pub v6: u8,
}

impl Default for SourceMask {
    fn default() -> Self {
        SourceMask { v4: 32, v6: 64 }
    }
}

impl Rate {
    /// Nanoseconds between packets at the rate (at least 1).
    pub fn interval_ns(&self) -> u64 {
        (u64::from(self.seconds) * 1_000_000_000 / u64::from(self.packets.max(1))).max(1)
    }

    /// How far ahead of now a limiter may run: `burst - 1` intervals.
    pub fn tolerance_ns(&self) -> u64 {
        u64::from(self.burst.saturating_sub(1)) * self.interval_ns()
    }
}

/// Source or destination of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Endpoint {
    /// Address condition.
    pub addr: AddrMatch,
    /// Port condition (requires proto tcp, udp or sctp); `None` is any port.
    pub ports: Option<Vec<PortRange>>,
}

/// An address condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddrMatch {
    /// `any`, or nothing written.
    #[default]
    Any,
    /// One or more items (`ADDR`, `<table>`, `{ a, b, <t> }`); with `negated`, the
    /// condition holds for any address (of either family) that is in none of them.
    List {
        /// `!` in front.
        negated: bool,
        /// The items.
        items: Vec<AddrItem>,
    },
}

/// One item of an address list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddrItem {
    /// An address (full-length prefix) or prefix.
    Net(IpNet),
    /// A table, by name.
    Table(String),
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

/// `flags SET/MASK`: the packet's flags ANDed with `mask` must equal `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFlags {
    /// Flags that must be set (F=0x01 S=0x02 R=0x04 P=0x08 A=0x10 U=0x20 E=0x40 W=0x80).
    pub set: u8,
    /// Flags that are looked at.
    pub mask: u8,
}

/// `icmp-type T [code C]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpMatch {
    /// ICMP or ICMPv6 type.
    pub icmp_type: u8,
    /// Code; `None` is any code.
    pub code: Option<u8>,
}

impl Rule {
    /// A rule with nothing but its action: both directions, no conditions, no options
    /// (what `pass` or `block` alone means, before pf's state defaults are applied).
    pub fn new(pos: Pos, text: String, action: Action) -> Rule {
        Rule {
            pos,
            file: None,
            text,
            action,
            direction: Direction::Both,
            quick: false,
            interface: None,
            interfaces_also: Vec::new(),
            interface_negated: false,
            family: None,
            protocols: None,
            from: Endpoint::default(),
            to: Endpoint::default(),
            tcp_flags: None,
            icmp: None,
            icmp_also: Vec::new(),
            vlan: None,
            keep_state: false,
            log: false,
            label: None,
            rate: None,
            overload: None,
            source_limits: SourceLimits::default(),
            block_mode: BlockMode::Policy,
        }
    }

    /// The interfaces `on` names (none: the rule holds on every interface).
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.interface.iter().chain(&self.interfaces_also).map(String::as_str)
    }

    /// Whether the rule holds on the interface the filter knows as `name` (`None`: an
    /// interface the filter has no entry for).
    pub fn holds_on(&self, name: Option<&str>) -> bool {
        if self.interface.is_none() {
            return true;
        }
        let listed = name.is_some_and(|n| self.interfaces().any(|i| i == n));
        listed != self.interface_negated
    }

    /// The ICMP types and codes the rule names.
    pub fn icmp_types(&self) -> impl Iterator<Item = &IcmpMatch> {
        self.icmp.iter().chain(&self.icmp_also)
    }
}
