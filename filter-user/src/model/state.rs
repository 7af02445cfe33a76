//! Connection tracking in the reference model: which packets a flow's state passes,
//! and which packets open flows, written from the README's "Connection tracking"
//! section (not from the data plane's `ct.rs`).
//!
//! - A flow is identified by the unordered pair of its endpoints (address, port), its
//!   IP protocol and its family; ICMP/ICMPv6 echo uses the identifier as the port of
//!   both ends. Not by interface, VLAN or direction: a reply matches whichever way it
//!   comes in.
//! - A `pass` rule that keeps state (`keep state`, or pf's default for `pass`) and
//!   decides a packet opens a flow when the packet is
//!   a TCP SYN without ACK and RST, any UDP packet (with ports: not a later fragment),
//!   or an ICMP/ICMPv6 echo request; its sender is the flow's opener. A flow opened
//!   where one exists replaces it (a new connection on the same endpoints). Other
//!   packets passed by such a rule (a mid-stream TCP segment, an echo reply) open
//!   nothing. Blocking rules and the default policy never open flows.
//! - Before any rule, a packet of a tracked flow that its state explains passes
//!   ([`ModelDecision::State`]) and moves the state on; a packet the state does not
//!   explain, or that claims a flow nobody opened, goes through the rules like any
//!   other (and may open a flow there).
//! - TCP: SYN_SENT (the opener's SYN; the same SYN again passes) → SYN_RECEIVED (a
//!   SYN-ACK from the responder; SYN and SYN-ACK retransmissions pass) → ESTABLISHED
//!   (an ACK without SYN from the opener) → CLOSING (a FIN from one side) → FIN_WAIT
//!   (FINs from both). Established and closing flows pass every segment without SYN,
//!   both ways. An RST from either side, in any state but CLOSED, passes and closes the
//!   flow (RST counts before the other flags); after it, nothing passes by state.
//!   Not explained: a SYN on an established (or closing) flow, a SYN-ACK from the
//!   opener, a SYN without ACK from the responder, anything but a SYN-ACK from the
//!   responder or the SYN from the opener before the handshake completes, anything
//!   after RST.
//! - UDP: SINGLE while only the opener has sent, MULTIPLE once the responder has;
//!   every datagram of the flow passes, both ways.
//! - ICMP/ICMPv6 echo: requests from the opener and replies from the responder pass
//!   (same identifier: it is part of the flow's identity); a request from the
//!   responder or a reply from the opener goes through the rules.
//!
//! - Answered flows ([`FlowState::answered`]): a TCP flow whose handshake completed
//!   (until an RST closes it), a UDP flow the responder replied to. ICMP echo flows
//!   never are. The data plane keeps answered flows in a table of their own, so that
//!   flows nobody answers (a spoofed flood) only ever evict each other; which table a
//!   flow is in follows from its state alone.
//!
//! - `max-src-states N` (README "Limits per source"): a source is the address that
//!   opens a flow (the opener), counted per rule. Each flow a source opens through a
//!   rule with the limit takes one of the source's N slots for that rule, and keeps it
//!   until its timeout, which never passes here: the model counts the openings per
//!   (rule, opener address). A flow opened again on the same endpoints (a new
//!   connection replacing the old one) counts again, as does a flow opened after an
//!   RST; [`Tracker::clear`] (`flush states`) frees every slot with the flows. The opening
//!   that would take slot N+1 is refused ([`ModelDecision::SourceLimited`]): the
//!   packet is dropped, no flow is created (one on the same endpoints stays as it
//!   was), and the source's later packets go through the rules again like any packet
//!   of no flow. Packets that open nothing (a mid-stream segment passed by the rule)
//!   take no slot. Another source, or the same source through another rule, counts
//!   on its own.
//!
//! Not modelled: timeouts (every flow lives forever, every slot stays held; the
//! differential sequences are short, far below any timeout) and the table limits with
//! their LRU eviction (every flow and every source is kept; the sequences open a few
//! dozen flows from a few hosts, the tables hold 100000 answered and 50000 unanswered
//! flows and 10000 sources by default). `max-src-conn`, `max-src-conn-rate` and
//! `overload` are not modelled: they judge completed handshakes by their
//! acknowledgement numbers, which the model does not track, and fill dynamic tables.
//! The per-flow counters of `xdpwall states` are not modelled either.

use std::collections::HashMap;
use std::net::IpAddr;

use super::ModelDecision;
use super::packet::{self, Dissected, Fields, Transport};
use crate::rules::{Action, Direction, Ruleset};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

use filter_common::wire::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// ICMP echo request and reply (RFC 792), ICMPv6 echo request and reply (RFC 4443).
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// One end of a flow: an address and a port (ICMP echo: the identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Address.
    pub addr: IpAddr,
    /// Port, or the echo identifier.
    pub port: u16,
}

/// What identifies a flow: the unordered pair of endpoints, the protocol, the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol (6, 17, 1 or 58).
    pub protocol: u8,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The two endpoints, the lesser first, so both directions give the same key.
    pub ends: [Endpoint; 2],
}

impl FlowKey {
    /// The key of a flow between `a` and `b`, whichever sent.
    pub fn new(protocol: u8, a: Endpoint, b: Endpoint) -> FlowKey {
        FlowKey { protocol, v6: a.addr.is_ipv6(), ends: if a <= b { [a, b] } else { [b, a] } }
    }
}

/// TCP connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// The opener's SYN seen.
    SynSent,
    /// The responder's SYN-ACK seen.
    SynReceived,
    /// The opener's ACK seen: the handshake is complete.
    Established,
    /// One side sent FIN.
    Closing,
    /// Both sides sent FIN.
    FinWait,
    /// RST seen: nothing more passes by state.
    Closed,
}

/// A flow's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// A TCP connection.
    Tcp(TcpState),
    /// UDP, only the opener has sent.
    UdpSingle,
    /// UDP, both sides have sent.
    UdpMultiple,
    /// ICMP/ICMPv6 echo.
    IcmpEcho,
}

impl FlowState {
    /// Whether the other side has answered: a TCP handshake that completed (a SYN-ACK
    /// alone proves only that a port is open: a listener answers any spoofed SYN) and
    /// no RST since, a UDP flow the responder sent on. ICMP echo never (every host
    /// answers pings; the flows last one exchange).
    pub fn answered(self) -> bool {
        matches!(
            self,
            FlowState::Tcp(TcpState::Established | TcpState::Closing | TcpState::FinWait) | FlowState::UdpMultiple
        )
    }
}

/// A tracked flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The endpoint that sent the opening packet.
    pub opener: Endpoint,
    /// Where the flow stands.
    pub state: FlowState,
    /// TCP: a FIN seen from the opener, from the responder.
    pub fins: [bool; 2],
    /// Index of the rule that opened it.
    pub rule: usize,
}

/// What a packet is, as far as connection tracking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A TCP segment with these flags.
    Tcp(u8),
    /// A UDP datagram.
    Udp,
    EchoRequest,
    EchoReply,
}

/// A packet that belongs to some (possible) flow: its key, its sender, its kind.
struct Seen {
    key: FlowKey,
    from: Endpoint,
    kind: Kind,
}

/// The flow a packet would belong to: TCP and UDP with ports (not a later fragment),
/// ICMP/ICMPv6 echo requests and replies. `None` for everything else.
fn seen(p: &Fields) -> Option<Seen> {
    let (kind, sport, dport) = match p.transport {
        Transport::Ports { src, dst, tcp_flags } => match p.protocol {
            PROTO_TCP => (Kind::Tcp(tcp_flags?), src, dst),
            PROTO_UDP => (Kind::Udp, src, dst),
            // SCTP has ports, but no state.
            _ => return None,
        },
        Transport::Icmp { icmp_type, ident, .. } => {
            // The model's dissector gives ICMP types only for ICMP in IPv4 and ICMPv6
            // in IPv6, so the family says which numbering applies.
            let (request, reply) =
                if p.src.is_ipv6() { (ECHO_REQUEST_V6, ECHO_REPLY_V6) } else { (ECHO_REQUEST_V4, ECHO_REPLY_V4) };
            let kind = match icmp_type {
                t if t == request => Kind::EchoRequest,
                t if t == reply => Kind::EchoReply,
                _ => return None,
            };
            (kind, ident, ident)
        }
        Transport::None => return None,
    };
    let from = Endpoint { addr: p.src, port: sport };
    let to = Endpoint { addr: p.dst, port: dport };
    Some(Seen { key: FlowKey::new(p.protocol, from, to), from, kind })
}

/// The state a flow opened by this packet starts in, if the packet opens one.
fn opening(kind: Kind) -> Option<FlowState> {
    match kind {
        Kind::Tcp(flags) if flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN => Some(FlowState::Tcp(TcpState::SynSent)),
        Kind::Udp => Some(FlowState::UdpSingle),
        Kind::EchoRequest => Some(FlowState::IcmpEcho),
        _ => None,
    }
}

impl Flow {
    /// Whether the state explains a packet of this kind from the opener (else from
    /// the responder); if so, the state moves on.
    fn accept(&mut self, by_opener: bool, kind: Kind) -> bool {
        match (self.state, kind) {
            (FlowState::UdpSingle | FlowState::UdpMultiple, Kind::Udp) => {
                if !by_opener {
                    self.state = FlowState::UdpMultiple;
                }
                true
            }
            (FlowState::IcmpEcho, Kind::EchoRequest) => by_opener,
            (FlowState::IcmpEcho, Kind::EchoReply) => !by_opener,
            (FlowState::Tcp(state), Kind::Tcp(flags)) => self.tcp(state, by_opener, flags),
            // The protocol is part of the key: unreachable.
            _ => false,
        }
    }

    fn tcp(&mut self, state: TcpState, by_opener: bool, flags: u8) -> bool {
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        if state == TcpState::Closed {
            // Anything after RST goes through the rules.
            return false;
        }
        if flags & TCP_RST != 0 {
            self.state = FlowState::Tcp(TcpState::Closed);
            return true;
        }
        let opener_syn = by_opener && syn && !ack;
        let responder_syn_ack = !by_opener && syn && ack;
        match state {
            TcpState::SynSent if opener_syn => true,
            TcpState::SynSent if responder_syn_ack => {
                self.state = FlowState::Tcp(TcpState::SynReceived);
                true
            }
            TcpState::SynReceived if opener_syn || responder_syn_ack => true,
            TcpState::SynReceived if by_opener && ack && !syn => {
                self.state = FlowState::Tcp(TcpState::Established);
                self.fin(by_opener, flags);
                true
            }
            TcpState::SynSent | TcpState::SynReceived => false,
            TcpState::Established | TcpState::Closing | TcpState::FinWait => {
                if syn {
                    return false;
                }
                self.fin(by_opener, flags);
                true
            }
            TcpState::Closed => false,
        }
    }

    /// Records a FIN of an established connection: CLOSING after one side's, FIN_WAIT
    /// after both sides'.
    fn fin(&mut self, by_opener: bool, flags: u8) {
        if flags & TCP_FIN != 0 {
            self.fins[usize::from(!by_opener)] = true;
            self.state = FlowState::Tcp(if self.fins == [true, true] { TcpState::FinWait } else { TcpState::Closing });
        }
    }
}

/// The flow table of the reference model: the rules of a [`Ruleset`] plus the flows its
/// stateful pass rules opened, judging a sequence of frames in order. [`Tracker::decide`]
/// takes every frame as arriving through XDP (`in`): the model of a router, where both
/// directions of a flow enter through the filter; [`Tracker::decide_going`] takes the
/// way (TC egress for `out`), with one flow table for both. Timeouts and the table limit are not modelled (see the
/// module documentation): flows never expire and are never evicted, and the slots
/// `max-src-states` counts are never freed.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    flows: HashMap<FlowKey, Flow>,
    /// Flows opened per (rule index, opener address) through rules with
    /// `max-src-states`: the source's slots held for that rule.
    sources: HashMap<(usize, IpAddr), u32>,
}

impl Tracker {
    /// An empty flow table.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Which decides `frame`: the state of its flow, or a rule, or the default; non-IP
    /// and malformed frames as in the stateless [`super::decide`]. Updates the table.
    ///
    /// `iface`: the receiving interface's name as the filter knows it (see
    /// [`super::decide`]); flows do not depend on it.
    pub fn decide(&mut self, rs: &Ruleset, frame: &[u8], iface: Option<&str>) -> ModelDecision {
        match packet::dissect(frame) {
            Dissected::NonIp => ModelDecision::NonIp,
            Dissected::Malformed(reason) => ModelDecision::Malformed(reason),
            Dissected::Ip(fields) => self.decide_fields(rs, &fields, iface),
        }
    }

    /// Which decides an IP packet with these fields arriving; updates the table.
    pub fn decide_fields(&mut self, rs: &Ruleset, p: &Fields, iface: Option<&str>) -> ModelDecision {
        self.decide_fields_going(rs, p, iface, Direction::In)
    }

    /// Which decides `frame` going `way` (`In`: arriving through XDP, `Out`: sent by
    /// the host through TC egress); flows are shared by both ways. Updates the table.
    pub fn decide_going(&mut self, rs: &Ruleset, frame: &[u8], iface: Option<&str>, way: Direction) -> ModelDecision {
        match packet::dissect(frame) {
            Dissected::NonIp => ModelDecision::NonIp,
            Dissected::Malformed(reason) => ModelDecision::Malformed(reason),
            Dissected::Ip(fields) => self.decide_fields_going(rs, &fields, iface, way),
        }
    }

    /// Which decides an IP packet with these fields going `way`; updates the table.
    pub fn decide_fields_going(
        &mut self,
        rs: &Ruleset,
        p: &Fields,
        iface: Option<&str>,
        way: Direction,
    ) -> ModelDecision {
        let seen = seen(p);
        if let Some(s) = &seen
            && let Some(flow) = self.flows.get_mut(&s.key)
        {
            let by_opener = s.from == flow.opener;
            if flow.accept(by_opener, s.kind) {
                return ModelDecision::State;
            }
        }
        let d = super::decide_fields_going(rs, p, iface, way);
        if let (ModelDecision::Rule(i), Some(s)) = (d, seen) {
            let rule = &rs.rules[i];
            if rule.action == Action::Pass
                && rule.keep_state
                && let Some(state) = opening(s.kind)
            {
                if !self.take_source_slot(rs, i, s.from.addr) {
                    return ModelDecision::SourceLimited(i);
                }
                let flow = Flow { opener: s.from, state, fins: [false; 2], rule: i };
                self.flows.insert(s.key, flow);
            }
        }
        d
    }

    /// Whether `source` may open one more flow through rule `rule`: always when the
    /// rule has no `max-src-states`; else while the source holds fewer slots than the
    /// limit, and then the new flow takes one.
    fn take_source_slot(&mut self, rs: &Ruleset, rule: usize, source: IpAddr) -> bool {
        let Some(max) = rs.rules[rule].source_limits.max_states else { return true };
        let held = self.sources.entry((rule, source)).or_insert(0);
        if *held >= max {
            return false;
        }
        *held += 1;
        true
    }

    /// The slots `source` holds through rule `rule` (index): the flows it opened
    /// through it, if the rule has `max-src-states`; 0 otherwise.
    pub fn source_flows(&self, rule: usize, source: IpAddr) -> u32 {
        self.sources.get(&(rule, source)).copied().unwrap_or(0)
    }

    /// The flow with this key, if tracked.
    pub fn flow(&self, key: &FlowKey) -> Option<&Flow> {
        self.flows.get(key)
    }

    /// Every tracked flow, in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        self.flows.iter()
    }

    /// Number of tracked flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Forgets every flow (`xdpwall flush states`), and with them the slots they held
    /// for `max-src-states`, as `flush states` empties the data plane's source nodes.
    pub fn clear(&mut self) {
        self.flows.clear();
        self.sources.clear();
    }
}
