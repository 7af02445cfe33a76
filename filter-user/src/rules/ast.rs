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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Arriving on an interface (XDP).
    In,
    /// Sent by the host (TC egress).
    Out,
    /// Both ways: a rule written without `in` or `out` (as in pf).
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

/// One ordered rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Where the rule starts in its file.
    pub pos: Pos,
    /// The rule as written, whitespace collapsed to single spaces (shown by status).
    pub text: String,
    /// pass or block.
    pub action: Action,
    /// in, out, or both when neither is written.
    pub direction: Direction,
    /// `quick`: when this rule matches, it decides at once; otherwise the last matching
    /// rule decides (pf's evaluation).
    #[serde(default)]
    pub quick: bool,
    /// `on IFACE`.
    pub interface: Option<String>,
    /// `on ! IFACE`: every interface but `interface`.
    #[serde(default)]
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
    /// `icmp-type T [code C]` (ICMP or ICMPv6 numbering, by the rule's proto).
    pub icmp: Option<IcmpMatch>,
    /// `vlan N`.
    pub vlan: Option<u16>,
    /// Keeps state: `keep state` or `modulate state`, and every `pass` rule without
    /// `no state` (pf's default).
    pub keep_state: bool,
    /// `log`.
    pub log: bool,
    /// `label "..."`.
    pub label: Option<String>,
    /// `block drop|return|...`: how a `block` rule refuses.
    #[serde(default)]
    pub block_mode: BlockMode,
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
