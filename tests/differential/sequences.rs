//! Packet sequences through connection tracking: `kernel_agrees_with_model_on_sequences`.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

/// Rulesets per default run of the sequence property.
pub(crate) const SEQ_RULESETS: u32 = 100;
/// Fewest packets one ruleset's sequence has.
pub(crate) const SEQ_MIN_PACKETS: usize = 200;
/// Fewest packets one flow emits (its scenarios are repeated up to this).
pub(crate) const SEQ_MIN_FLOW_PACKETS: usize = 20;

/// The hosts and server ports one sequence case draws from: v4 hosts in two /24s
/// and v6 hosts in two /64s, so that prefixes group some of them.
#[derive(Debug, Clone)]
pub(crate) struct SeqPool {
    pub(crate) v4: Vec<Ipv4Addr>,
    pub(crate) v6: Vec<Ipv6Addr>,
    pub(crate) ports: Vec<u16>,
}

pub(crate) fn seq_pool() -> impl Strategy<Value = SeqPool> {
    let v4 = vec((0u8..2, 1u8..255), 3..5)
        .prop_map(|hs| hs.into_iter().map(|(net, host)| Ipv4Addr::new(10, 77, net, host)).collect());
    let v6 = vec((0u16..2, 1u16..0xffff), 2..4).prop_map(|hs| {
        hs.into_iter().map(|(net, host)| Ipv6Addr::new(0x2001, 0xdb8, 0x77, net, 0, 0, 0, host)).collect()
    });
    let port = prop_oneof![Just(80u16), Just(443), Just(53), Just(22), 1u16..1024, any::<u16>()];
    (v4, v6, vec(port, 2..5)).prop_map(|(v4, v6, ports)| SeqPool { v4, v6, ports })
}

/// An address condition: a host of the pool (either family), as itself or its prefix.
#[derive(Debug, Clone)]
pub(crate) struct SeqAddr {
    pub(crate) negated: bool,
    pub(crate) v6: bool,
    pub(crate) host: Index,
    /// The host itself, else its /24 or /64.
    pub(crate) exact: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum SeqPort {
    Pool(Index),
    /// A range from a pool port, `width` more.
    Range(Index, u16),
    Any(u16),
}

#[derive(Debug, Clone)]
pub(crate) struct SeqRule {
    pub(crate) action: Action,
    /// `keep state` written; otherwise `no state` when `no_state`, else nothing (pf's
    /// default: a pass keeps state, with `flags S/SA` on TCP).
    pub(crate) keep: bool,
    pub(crate) no_state: bool,
    /// With `keep` on a pass rule: `keep state (max-src-states N)`. Small, so that the
    /// sources of a sequence (a few hosts opening dozens of flows) reach it often.
    pub(crate) max_src_states: Option<u32>,
    /// `quick`.
    pub(crate) quick: bool,
    /// No direction (both ways) instead of `in`.
    pub(crate) both: bool,
    pub(crate) out: bool,
    pub(crate) iface: Option<&'static str>,
    pub(crate) family: Option<Family>,
    /// 0 any, 1 tcp, 2 udp, 3 icmp, 4 icmp6, 5 { tcp udp }.
    pub(crate) proto: u8,
    pub(crate) from: Option<SeqAddr>,
    pub(crate) to: Option<SeqAddr>,
    pub(crate) from_port: Option<SeqPort>,
    pub(crate) to_port: Option<SeqPort>,
    pub(crate) flags: Option<&'static str>,
    /// 0 echo request, 1 echo reply, 2 unreachable.
    pub(crate) icmp: Option<u8>,
    pub(crate) vlan: Option<u16>,
    /// Aimed at flow `Index` of the case instead (its protocol, hosts and server
    /// port, each kept with some probability from the bits; bit 0: the other way).
    pub(crate) aim: Option<(Index, u8)>,
}

#[derive(Debug, Clone)]
pub(crate) struct SeqRuleset {
    pub(crate) default: Option<Action>,
    pub(crate) rules: Vec<SeqRule>,
    pub(crate) lo_name: Option<&'static str>,
}

pub(crate) fn seq_addr() -> impl Strategy<Value = SeqAddr> {
    (prop::bool::weighted(0.15), prop::bool::weighted(0.3), any::<Index>(), prop::bool::weighted(0.7))
        .prop_map(|(negated, v6, host, exact)| SeqAddr { negated, v6, host, exact })
}

pub(crate) fn seq_port() -> impl Strategy<Value = SeqPort> {
    prop_oneof![
        6 => any::<Index>().prop_map(SeqPort::Pool),
        2 => (any::<Index>(), 1u16..100).prop_map(|(i, w)| SeqPort::Range(i, w)),
        1 => any::<u16>().prop_map(SeqPort::Any),
    ]
}

pub(crate) fn seq_rule() -> impl Strategy<Value = SeqRule> {
    (
        (
            prop_oneof![4 => Just(Action::Pass), 1 => Just(Action::Block)],
            prop::bool::weighted(0.75),
            prop::bool::weighted(0.08),
            prop_oneof![10 => Just(None), 1 => Just(Some("lo")), 1 => Just(Some("wan0"))],
            prop_oneof![6 => Just(None), 1 => Just(Some(Family::Inet)), 1 => Just(Some(Family::Inet6))],
            prop_oneof![2 => Just(0u8), 4 => Just(1), 3 => Just(2), 2 => Just(3), 2 => Just(4), 1 => Just(5)],
        ),
        (
            prop::option::weighted(0.35, seq_addr()),
            prop::option::weighted(0.35, seq_addr()),
            prop::option::weighted(0.1, seq_port()),
            prop::option::weighted(0.5, seq_port()),
        ),
        (
            prop::option::weighted(0.3, select(vec!["S/SA", "S/S", "A/A", "any", "F/F", "R/R", "SA/SA", "/SA"])),
            prop::option::weighted(0.4, 0u8..3),
            prop::option::weighted(0.05, prop_oneof![Just(0u16), Just(7)]),
        ),
        prop::option::weighted(0.7, (any::<Index>(), any::<u8>())),
        (
            prop::bool::weighted(0.4),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.3),
            prop::option::weighted(0.9, 1u32..=3),
        ),
    )
        .prop_map(
            |(
                (action, keep, out, iface, family, proto),
                (from, to, from_port, to_port),
                (flags, icmp, vlan),
                aim,
                (no_state, quick, both, max_src_states),
            )| {
                SeqRule {
                    action,
                    keep,
                    no_state,
                    max_src_states,
                    quick,
                    both,
                    out,
                    iface,
                    family,
                    proto,
                    from,
                    to,
                    from_port,
                    to_port,
                    flags,
                    icmp,
                    vlan,
                    aim,
                }
            },
        )
}

pub(crate) fn seq_ruleset() -> impl Strategy<Value = SeqRuleset> {
    (
        prop_oneof![1 => Just(None), 1 => Just(Some(Action::Pass)), 2 => Just(Some(Action::Block))],
        vec(seq_rule(), 1..7),
        prop_oneof![6 => Just(Some("lo")), 1 => Just(Some("wan0")), 1 => Just(None)],
        prop::bool::weighted(0.3),
    )
        .prop_map(|(default, mut rules, lo_name, limits)| {
            // Limits per source in about one ruleset in five, on most of its keep-state
            // pass rules: a program with them takes about twice as long to load (880
            // against 470 ms here), and loading is nearly all of this property's time.
            if !limits {
                for r in &mut rules {
                    r.max_src_states = None;
                }
            }
            SeqRuleset { default, rules, lo_name }
        })
}

pub(crate) fn seq_port_text(p: &SeqPort, pool: &SeqPool) -> String {
    match p {
        SeqPort::Pool(i) => pool.ports[i.index(pool.ports.len())].to_string(),
        SeqPort::Range(i, w) => {
            let lo = pool.ports[i.index(pool.ports.len())];
            format!("{lo}:{}", lo.saturating_add(*w))
        }
        SeqPort::Any(p) => p.to_string(),
    }
}

pub(crate) fn seq_addr_text(a: &SeqAddr, pool: &SeqPool) -> String {
    let net = if a.v6 {
        let h = pool.v6[a.host.index(pool.v6.len())];
        let len = if a.exact { 128 } else { 64 };
        IpNet::V6(Ipv6Net::new(h, len).expect("len <= 128").trunc())
    } else {
        let h = pool.v4[a.host.index(pool.v4.len())];
        let len = if a.exact { 32 } else { 24 };
        IpNet::V4(Ipv4Net::new(h, len).expect("len <= 32").trunc())
    };
    format!("{}{}", if a.negated { "!" } else { "" }, net_text(&net, true))
}

/// A rule aimed at a flow: its protocol, addresses and server port, mostly.
pub(crate) fn aimed_rule(r: &SeqRule, flow: &FlowSpec, bits: u8, pool: &SeqPool) -> SeqRule {
    let mut r = r.clone();
    r.aim = None;
    r.family = None;
    let reverse = bits & 1 != 0;
    r.proto = match (flow.kind, flow.v6) {
        (FlowKind::Tcp, _) => 1,
        (FlowKind::Udp, _) => 2,
        (FlowKind::Echo, false) => 3,
        (FlowKind::Echo, true) => 4,
    };
    let addr =
        |host: Index, keep: bool| keep.then_some(SeqAddr { negated: false, v6: flow.v6, host, exact: bits & 8 == 0 });
    let (client, server) = (addr(flow.client, bits & 2 != 0), addr(flow.server, bits & 4 != 0));
    (r.from, r.to) = if reverse { (server, client) } else { (client, server) };
    let port = flow.server_port.map_or(SeqPort::Any(flow.server_port(pool)), SeqPort::Pool);
    let port = (bits & 16 != 0).then_some(port);
    (r.from_port, r.to_port) = if reverse { (port, None) } else { (None, port) };
    if bits & 32 == 0 {
        r.flags = None;
    }
    if bits & 64 == 0 {
        r.icmp = None;
    }
    r.vlan = None;
    r
}

pub(crate) fn render_seq_rule(r: &SeqRule, pool: &SeqPool, flows: &[FlowSpec]) -> String {
    if let Some((i, bits)) = r.aim
        && !flows.is_empty()
    {
        let aimed = aimed_rule(r, &flows[i.index(flows.len())], bits, pool);
        return render_seq_rule(&aimed, pool, flows);
    }
    let mut s = String::from(match r.action {
        Action::Pass => "pass",
        Action::Block => "block",
    });
    s.push_str(match (r.out, r.both) {
        (true, _) => " out",
        (false, true) => "",
        (false, false) => " in",
    });
    if r.quick {
        s.push_str(" quick");
    }
    if let Some(name) = r.iface {
        write!(s, " on {name}").unwrap();
    }
    // Drop what the rule language would refuse: a family against the protocol or
    // the addresses, ports without tcp/udp, flags without tcp, a type without icmp.
    let mut family = r.family;
    if matches!((r.proto, family), (3, Some(Family::Inet6)) | (4, Some(Family::Inet))) {
        family = None;
    }
    let fits = |a: &&SeqAddr| family.is_none_or(|f| a.v6 == (f == Family::Inet6));
    let from = r.from.as_ref().filter(fits);
    let to = r.to.as_ref().filter(fits);
    match family {
        Some(Family::Inet) => s.push_str(" inet"),
        Some(Family::Inet6) => s.push_str(" inet6"),
        None => {}
    }
    s.push_str(match r.proto {
        1 => " proto tcp",
        2 => " proto udp",
        3 => " proto icmp",
        4 => " proto icmp6",
        5 => " proto { tcp udp }",
        _ => "",
    });
    let ports_ok = matches!(r.proto, 1 | 2 | 5);
    let endpoint = |a: Option<&SeqAddr>, p: &Option<SeqPort>| {
        let mut e = a.map(|a| seq_addr_text(a, pool)).unwrap_or_default();
        if let Some(p) = p.as_ref().filter(|_| ports_ok) {
            if !e.is_empty() {
                e.push(' ');
            }
            write!(e, "port {}", seq_port_text(p, pool)).unwrap();
        }
        e
    };
    let (f, t) = (endpoint(from, &r.from_port), endpoint(to, &r.to_port));
    if !f.is_empty() {
        write!(s, " from {f}").unwrap();
    }
    if !t.is_empty() {
        write!(s, " to {t}").unwrap();
    }
    if let Some(flags) = r.flags.filter(|_| r.proto == 1) {
        write!(s, " flags {flags}").unwrap();
    }
    match (r.icmp, r.proto) {
        (Some(t), 3) => write!(s, " icmp-type {}", [8, 0, 3][t as usize]).unwrap(),
        (Some(t), 4) => write!(s, " icmp6-type {}", [128, 129, 1][t as usize]).unwrap(),
        _ => {}
    }
    if let Some(v) = r.vlan {
        write!(s, " vlan {v}").unwrap();
    }
    if r.keep && r.action == Action::Pass {
        s.push_str(" keep state");
        // Only the deterministic limit: `max-src-conn`, `max-src-conn-rate` and
        // `overload` judge completed handshakes by their acknowledgement numbers, which
        // the model does not track.
        if let Some(n) = r.max_src_states {
            write!(s, " (max-src-states {n})").unwrap();
        }
    } else if r.no_state && r.action == Action::Pass {
        s.push_str(" no state");
    }
    s
}

pub(crate) fn render_seq(rs: &SeqRuleset, pool: &SeqPool, flows: &[FlowSpec]) -> String {
    let mut s = String::from("# generated by tests/differential.rs (sequences)\n");
    match rs.default {
        Some(Action::Pass) => s.push_str("set default pass\n"),
        Some(Action::Block) => s.push_str("set default block\n"),
        None => {}
    }
    for r in &rs.rules {
        s.push_str(&render_seq_rule(r, pool, flows));
        s.push('\n');
    }
    s
}

// ---- flows and their packets ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowKind {
    Tcp,
    Udp,
    Echo,
}

/// One flow: a client and a server of one family, its scripted scenarios (each a
/// little conversation, see [`scenario_steps`]) and mutations of the script.
#[derive(Debug, Clone)]
pub(crate) struct FlowSpec {
    pub(crate) kind: FlowKind,
    pub(crate) v6: bool,
    pub(crate) client: Index,
    pub(crate) server: Index,
    pub(crate) client_port: u16,
    /// A pool port (else `other_port`).
    pub(crate) server_port: Option<Index>,
    pub(crate) other_port: u16,
    /// Echo identifier.
    pub(crate) ident: u16,
    pub(crate) scenarios: Vec<u8>,
    /// TCP: data exchanges in the middle of a scenario.
    pub(crate) data: u8,
    /// (step, what, value): see [`mutate`].
    pub(crate) noise: Vec<(Index, u8, u8)>,
}

/// One packet of a flow's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// From the server to the client.
    pub(crate) back: bool,
    /// TCP flags, or the ICMP type as an echo request (0) / reply (1) / other (2+).
    pub(crate) what: u8,
    /// The sender's port (identifier) off by one: another flow.
    pub(crate) wrong_sport: bool,
    /// The receiver's port off by one.
    pub(crate) wrong_dport: bool,
    /// A VLAN tag (flows do not depend on it).
    pub(crate) vlan: bool,
    /// A later fragment (no ports: no flow).
    pub(crate) later_fragment: bool,
}

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

pub(crate) const ECHO_REQ: u8 = 0;
pub(crate) const ECHO_REP: u8 = 1;
pub(crate) const ECHO_OTHER: u8 = 2;

pub(crate) fn step(back: bool, what: u8) -> Step {
    Step { back, what, wrong_sport: false, wrong_dport: false, vlan: false, later_fragment: false }
}

pub(crate) const TCP_SCENARIOS: u8 = 11;
pub(crate) const UDP_SCENARIOS: u8 = 5;
pub(crate) const ECHO_SCENARIOS: u8 = 5;

/// The packets of scenario `n` of a flow of `kind` (F: client to server, B: back).
pub(crate) fn scenario_steps(kind: FlowKind, n: u8, data: u8) -> Vec<Step> {
    let f = |w| step(false, w);
    let b = |w| step(true, w);
    let exchange = |v: &mut Vec<Step>| {
        for _ in 0..data {
            v.extend([f(PSH | ACK), b(ACK), b(PSH | ACK), f(ACK)]);
        }
    };
    let mut v = Vec::new();
    match kind {
        FlowKind::Tcp => {
            let handshake = [f(SYN), b(SYN | ACK), f(ACK)];
            match n % TCP_SCENARIOS {
                // Open, talk, close both ways.
                0 => {
                    v.extend(handshake);
                    exchange(&mut v);
                    v.extend([f(FIN | ACK), b(ACK), b(FIN | ACK), f(ACK)]);
                }
                // Reset by the server mid-stream; what follows is not explained.
                1 => {
                    v.extend(handshake);
                    exchange(&mut v);
                    v.extend([b(RST | ACK), f(ACK), b(ACK), f(RST)]);
                }
                // Refused, then retried.
                2 => v.extend([f(SYN), b(RST | ACK), f(SYN), b(SYN | ACK), f(ACK), b(PSH | ACK)]),
                // Stray mid-stream segments of a flow nobody opened.
                3 => v.extend([f(ACK), b(ACK), f(PSH | ACK), b(FIN | ACK), f(RST)]),
                // An unsolicited SYN-ACK, then its ACK.
                4 => v.extend([b(SYN | ACK), f(ACK), b(PSH | ACK)]),
                // A new SYN on an established flow, from the client and the server.
                5 => {
                    v.extend(handshake);
                    v.extend([f(SYN), b(SYN | ACK), f(ACK), b(SYN), f(PSH | ACK)]);
                }
                // A SYN-ACK from the opener; a SYN from the responder.
                6 => v.extend([f(SYN), f(SYN | ACK), b(SYN), b(SYN | ACK), f(SYN | ACK), f(ACK)]),
                // Retransmissions everywhere.
                7 => {
                    v.extend([f(SYN), f(SYN), b(SYN | ACK), b(SYN | ACK), f(SYN), f(ACK), f(ACK)]);
                    exchange(&mut v);
                }
                // The server opens (the rules decide whether that is allowed).
                8 => {
                    v.extend([b(SYN), f(SYN | ACK), b(ACK), f(PSH | ACK)]);
                    v.extend([b(FIN | ACK), f(FIN | ACK), b(ACK)]);
                }
                // Half close, data after one FIN, RST after both, RST after RST.
                9 => {
                    v.extend(handshake);
                    v.extend([f(FIN | ACK), b(PSH | ACK), f(ACK), b(FIN | ACK), f(ACK)]);
                    v.extend([f(RST | ACK), b(RST), f(RST), b(ACK)]);
                }
                // Out of order: the ACK before the SYN-ACK, data before the ACK,
                // odd flag combinations.
                _ => v.extend([
                    f(SYN),
                    f(ACK),
                    b(PSH | ACK),
                    b(SYN | ACK),
                    b(PSH | ACK),
                    f(SYN | FIN),
                    f(ACK | FIN),
                    b(0),
                    f(SYN | RST),
                    b(0xff),
                ]),
            }
        }
        FlowKind::Udp => match n % UDP_SCENARIOS {
            0 => v.extend([f(0), b(0), f(0), b(0)]),
            1 => v.extend([b(0), f(0), b(0), b(0)]),
            2 => v.extend([f(0), f(0), f(0), b(0)]),
            3 => {
                let mut wrong = b(0);
                wrong.wrong_sport = true;
                let mut wrong_to = b(0);
                wrong_to.wrong_dport = true;
                v.extend([f(0), wrong, wrong_to, b(0)]);
            }
            _ => v.extend([b(0), f(0), b(0), f(0)]),
        },
        FlowKind::Echo => match n % ECHO_SCENARIOS {
            0 => v.extend([f(ECHO_REQ), b(ECHO_REP), f(ECHO_REQ), b(ECHO_REP)]),
            1 => {
                let mut other_id = b(ECHO_REP);
                other_id.wrong_sport = true;
                v.extend([b(ECHO_REP), f(ECHO_REQ), other_id, b(ECHO_REP)]);
            }
            2 => v.extend([f(ECHO_REQ), f(ECHO_REP), b(ECHO_REQ), b(ECHO_REP), f(ECHO_REP)]),
            3 => v.extend([f(ECHO_REQ), b(ECHO_OTHER), b(ECHO_REP), b(ECHO_REP)]),
            _ => v.extend([b(ECHO_REQ), f(ECHO_REP), b(ECHO_REQ), f(ECHO_REQ), f(ECHO_REP)]),
        },
    }
    v
}

/// Interesting TCP flag combinations for mutations.
pub(crate) const ODD_FLAGS: [u8; 12] =
    [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, FIN, 0, SYN | FIN, SYN | RST, 0xff];

/// Applies one mutation to step `i`: 0-1 other flags / type, 2 the other direction,
/// 3 sent twice, 4 lost, 5 a wrong port or identifier, 6 a VLAN tag, 7 a later
/// fragment.
pub(crate) fn mutate(steps: &mut Vec<Step>, kind: FlowKind, i: usize, what: u8, value: u8) {
    if steps.is_empty() {
        return;
    }
    let s = &mut steps[i];
    match what % 8 {
        0 | 1 => {
            s.what = match kind {
                FlowKind::Tcp if what.is_multiple_of(8) => ODD_FLAGS[value as usize % ODD_FLAGS.len()],
                FlowKind::Tcp => value,
                FlowKind::Udp => 0,
                FlowKind::Echo => value % 4,
            }
        }
        2 => s.back = !s.back,
        3 => {
            let s = *s;
            steps.insert(i, s);
        }
        4 => {
            steps.remove(i);
        }
        5 => {
            if value & 1 == 0 {
                s.wrong_sport = true;
            } else {
                s.wrong_dport = true;
            }
        }
        6 => s.vlan = true,
        _ => s.later_fragment = true,
    }
}

pub(crate) fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        (
            prop_oneof![5 => Just(FlowKind::Tcp), 3 => Just(FlowKind::Udp), 2 => Just(FlowKind::Echo)],
            prop::bool::weighted(0.35),
            any::<Index>(),
            any::<Index>(),
            prop_oneof![4 => 1024u16..=65535, 1 => any::<u16>()],
            prop::option::weighted(0.85, any::<Index>()),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            vec(any::<u8>(), 1..5),
            0u8..3,
            prop_oneof![2 => Just(Vec::new()), 3 => vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..5)],
        ),
    )
        .prop_map(
            |((kind, v6, client, server, client_port, server_port, other_port, ident), (scenarios, data, noise))| {
                FlowSpec {
                    kind,
                    v6,
                    client,
                    server,
                    client_port,
                    server_port,
                    other_port,
                    ident,
                    scenarios,
                    data,
                    noise,
                }
            },
        )
}

impl FlowSpec {
    /// The flow's packets in order: its scenarios, repeated up to
    /// [`SEQ_MIN_FLOW_PACKETS`], then the mutations.
    pub(crate) fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        'fill: loop {
            for &n in &self.scenarios {
                steps.extend(scenario_steps(self.kind, n, self.data));
                if steps.len() >= SEQ_MIN_FLOW_PACKETS {
                    break 'fill;
                }
            }
        }
        for &(i, what, value) in &self.noise {
            let at = i.index(steps.len().max(1));
            mutate(&mut steps, self.kind, at, what, value);
        }
        steps
    }

    /// (client, server) addresses.
    pub(crate) fn hosts(&self, pool: &SeqPool) -> (IpAddr, IpAddr) {
        if self.v6 {
            let n = pool.v6.len();
            (pool.v6[self.client.index(n)].into(), pool.v6[self.server.index(n)].into())
        } else {
            let n = pool.v4.len();
            (pool.v4[self.client.index(n)].into(), pool.v4[self.server.index(n)].into())
        }
    }

    pub(crate) fn server_port(&self, pool: &SeqPool) -> u16 {
        self.server_port.map_or(self.other_port, |i| pool.ports[i.index(pool.ports.len())])
    }
}

/// One step of one flow, as a frame.
pub(crate) fn seq_frame(flow: &FlowSpec, s: &Step, pool: &SeqPool) -> Vec<u8> {
    let (client, server) = flow.hosts(pool);
    let (cport, sport) = match flow.kind {
        FlowKind::Echo => (flow.ident, flow.ident),
        _ => (flow.client_port, flow.server_port(pool)),
    };
    let (src, dst, mut from_port, mut to_port) =
        if s.back { (server, client, sport, cport) } else { (client, server, cport, sport) };
    if s.wrong_sport {
        from_port = from_port.wrapping_add(1);
    }
    if s.wrong_dport {
        to_port = to_port.wrapping_add(1);
    }
    let l4 = match flow.kind {
        FlowKind::Tcp => {
            // Sequence number 1, acknowledgement 2 on every segment: the SYN-ACK's number
            // plus one, so that handshakes complete in the kernel as in the model, which
            // does not track numbers (tests/kernel.rs checks a wrong acknowledgement).
            let mut h = [from_port.to_be_bytes(), to_port.to_be_bytes()].concat();
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0x50, s.what, 0xff, 0xff, 0, 0, 0, 0]);
            h
        }
        FlowKind::Udp => {
            let mut h = [from_port.to_be_bytes(), to_port.to_be_bytes()].concat();
            h.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
            h
        }
        FlowKind::Echo => {
            let types: [u8; 4] = if flow.v6 { [128, 129, 1, 2] } else { [8, 0, 3, 11] };
            // The identifier: the sender's "port"; a reply echoes it.
            let id = if s.wrong_sport || s.wrong_dport { flow.ident.wrapping_add(1) } else { flow.ident };
            let mut h = vec![types[s.what as usize % 4], 0, 0, 0];
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&[0, 1, 0xab, 0xcd]);
            h
        }
    };
    let proto = match (flow.kind, flow.v6) {
        (FlowKind::Tcp, _) => 6,
        (FlowKind::Udp, _) => 17,
        (FlowKind::Echo, false) => 1,
        (FlowKind::Echo, true) => 58,
    };
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    if s.vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    }
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let total = (20 + l4.len()) as u16;
            let frag: u16 = if s.later_fragment { 0x0010 } else { 0x4000 };
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]);
            f.extend_from_slice(&frag.to_be_bytes());
            f.extend_from_slice(&[64, proto, 0, 0]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let ext = if s.later_fragment { 8 } else { 0 };
            let first = if s.later_fragment { 44 } else { proto };
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[first, 64]);
            f.extend_from_slice(&src.octets());
            f.extend_from_slice(&dst.octets());
            if s.later_fragment {
                f.extend_from_slice(&[proto, 0, 0, 0x10 << 3, 0, 0, 0x56, 0x78]);
            }
        }
        _ => unreachable!("one family per flow"),
    }
    f.extend_from_slice(&l4);
    f
}

/// A packet sequence case: a ruleset, flows, and how their packets interleave.
#[derive(Clone)]
pub(crate) struct SeqCase {
    pub(crate) pool: SeqPool,
    pub(crate) ruleset: SeqRuleset,
    pub(crate) flows: Vec<FlowSpec>,
    /// Seeds the interleaving.
    pub(crate) shuffle: u64,
}

impl fmt::Debug for SeqCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lo known as {:?}", self.ruleset.lo_name)?;
        writeln!(f, "{}", render_seq(&self.ruleset, &self.pool, &self.flows))?;
        write!(f, "({} flows, {} packets)", self.flows.len(), self.sequence().len())
    }
}

impl SeqCase {
    /// Every packet, in order: (flow index, step). Flows take turns at random; a
    /// ruleset's flows are repeated (with their scenarios rotated) up to
    /// [`SEQ_MIN_PACKETS`], so reconnections on the same endpoints are common too.
    pub(crate) fn sequence(&self) -> Vec<(usize, Step)> {
        let mut queues: Vec<(usize, std::collections::VecDeque<Step>)> = Vec::new();
        let mut total = 0;
        let mut round = 0usize;
        while total < SEQ_MIN_PACKETS && !self.flows.is_empty() {
            for (i, flow) in self.flows.iter().enumerate() {
                let mut flow = flow.clone();
                let k = flow.scenarios.len();
                flow.scenarios.rotate_left(round % k);
                let steps = flow.steps();
                total += steps.len();
                match queues.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, q)) => q.extend(steps),
                    None => queues.push((i, steps.into())),
                }
            }
            round += 1;
        }
        let mut bits = Bits::new(self.shuffle);
        let mut out = Vec::with_capacity(total);
        while !queues.is_empty() {
            // Mostly the same flow again for a few packets, else another.
            let q = bits.below(queues.len());
            let burst = 1 + bits.below(3);
            for _ in 0..burst {
                match queues[q].1.pop_front() {
                    Some(s) => out.push((queues[q].0, s)),
                    None => break,
                }
            }
            if queues[q].1.is_empty() {
                queues.swap_remove(q);
            }
        }
        out
    }
}

pub(crate) fn seq_case() -> impl Strategy<Value = SeqCase> {
    (seq_pool(), seq_ruleset(), vec(flow_spec(), 4..12), any::<u64>())
        .prop_map(|(pool, ruleset, flows, shuffle)| SeqCase { pool, ruleset, flows, shuffle })
}

/// One line for a packet of a sequence.
pub(crate) fn describe_step(flow: usize, spec: &FlowSpec, s: &Step, pool: &SeqPool) -> String {
    let frame = seq_frame(spec, s, pool);
    let what = match dissect(&frame) {
        Dissected::Ip(p) => {
            let t = match p.transport {
                model::packet::Transport::Ports { src, dst, tcp_flags } => {
                    let flags = tcp_flags.map_or(String::new(), |f| {
                        format!(" [{}]", if f == 0 { "none".into() } else { flags_text(f) })
                    });
                    format!("{}:{src} -> {}:{dst}{flags}", p.src, p.dst)
                }
                model::packet::Transport::Icmp { icmp_type, ident, .. } => {
                    format!("{} -> {} type {icmp_type} id {ident}", p.src, p.dst)
                }
                model::packet::Transport::None => {
                    format!("{} -> {} (later fragment)", p.src, p.dst)
                }
            };
            let proto = match p.protocol {
                6 => "tcp",
                17 => "udp",
                1 => "icmp",
                58 => "icmp6",
                _ => "?",
            };
            format!("{proto} {t}{}", if s.vlan { " vlan 7" } else { "" })
        }
        other => format!("{other:?}"),
    };
    format!("flow {flow} {}: {what}", if s.back { "server->client" } else { "client->server" })
}

#[derive(Default)]
pub(crate) struct SeqStats {
    pub(crate) rulesets: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) state: AtomicU64,
    pub(crate) rules: AtomicU64,
    pub(crate) default: AtomicU64,
    pub(crate) opened: AtomicU64,
    pub(crate) kept_rules: AtomicU64,
    /// Rules with `max-src-states`, rulesets with one, and packets their limit refused.
    pub(crate) limited_rules: AtomicU64,
    pub(crate) limited_rulesets: AtomicU64,
    pub(crate) source_limited: AtomicU64,
    pub(crate) load_us: AtomicU64,
    pub(crate) run_us: AtomicU64,
}

#[test]
pub(crate) fn kernel_agrees_with_model_on_sequences() {
    let scale = scale();
    // Every shrink step loads a program: bound the effort.
    let mut runner = TestRunner::new(config(SEQ_RULESETS * scale, 1000));
    let stats = SeqStats::default();
    let started = Instant::now();

    let result = runner.run(&seq_case(), |case| {
        let text = render_seq(&case.ruleset, &case.pool, &case.flows);
        let rs = parse(&text).map_err(TestCaseError::fail)?;
        let lo_name = case.ruleset.lo_name;
        let t = Instant::now();
        // Always a fresh program: its own pin dir, so an empty flow table.
        let mut loaded = Loaded::new(&rs, String::new(), lo_name).map_err(TestCaseError::fail)?;
        stats.load_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.rulesets.fetch_add(1, Ordering::Relaxed);
        stats.kept_rules.fetch_add(
            rs.rules.iter().filter(|r| r.keep_state && r.direction.covers(Direction::In)).count() as u64,
            Ordering::Relaxed,
        );
        // The model knows `max-src-states` only: nothing else may be generated.
        if let Some(r) = rs.rules.iter().find(|r| {
            r.source_limits.max_conn.is_some() || r.source_limits.max_conn_rate.is_some() || r.overload.is_some()
        }) {
            return Err(TestCaseError::fail(format!("generated a limit the model does not know: {}", r.text)));
        }
        let limited = rs.rules.iter().filter(|r| r.source_limits.max_states.is_some()).count() as u64;
        stats.limited_rules.fetch_add(limited, Ordering::Relaxed);
        stats.limited_rulesets.fetch_add(u64::from(limited > 0), Ordering::Relaxed);
        let mut tracker = Tracker::new();
        let mut history: Vec<String> = Vec::new();
        let t = Instant::now();
        let sequence = case.sequence();
        for (n, (flow, s)) in sequence.iter().enumerate() {
            let spec = &case.flows[*flow];
            let frame = seq_frame(spec, s, &case.pool);
            let before = tracker.len();
            let d = tracker.decide(&rs, &frame, lo_name);
            if tracker.len() > before {
                stats.opened.fetch_add(1, Ordering::Relaxed);
            }
            let want = expected(&rs, &d);
            let got = loaded
                .bed
                .program
                .test_run_traced(&frame, Some(LO))
                .map_err(|e| TestCaseError::fail(format!("test run: {e:?}")))?;
            let line = describe_step(*flow, spec, s, &case.pool);
            if got != want {
                return Err(TestCaseError::fail(format!(
                    "kernel and model disagree on packet {n} of the sequence\n\
                     --- ruleset (lo known as {lo_name:?}) ---\n{text}\
                     --- packets before it (model's answer, which the kernel shared) ---\n{}\n\
                     --- the packet ---\n{line}\n{}\n\
                     model:  {d:?}: {}\n\
                     kernel: {}",
                    history.join("\n"),
                    hex(&frame),
                    describe(&want),
                    describe(&got),
                )));
            }
            history.push(format!("{n:4} {line}  => {}", slot_name(want.slot)));
            stats.packets.fetch_add(1, Ordering::Relaxed);
            match d {
                ModelDecision::State => &stats.state,
                ModelDecision::Rule(_) => &stats.rules,
                ModelDecision::SourceLimited(_) => &stats.source_limited,
                _ => &stats.default,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        stats.run_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        flow_tables_agree(&loaded.bed, &tracker).map_err(|e| {
            TestCaseError::fail(format!(
                "kernel and model disagree on the flows after the sequence: {e}\n\
                 --- ruleset (lo known as {lo_name:?}) ---\n{text}\
                 --- packets ---\n{}",
                history.join("\n")
            ))
        })?;
        Ok(())
    });

    let rulesets = stats.rulesets.load(Ordering::Relaxed);
    let packets = stats.packets.load(Ordering::Relaxed);
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let pct = |a: &AtomicU64| 100.0 * n(a) as f64 / packets.max(1) as f64;
    let _ = writeln!(
        std::io::stderr(),
        "differential sequences: {rulesets} rulesets ({} rules keeping state, {} with max-src-states in {} rulesets), \
         {packets} packets checked in {:.1} s ({:.1} s loading programs, {:.1} s running packets)\n\
         differential sequences: passed by state {} ({:.1}%), decided by a rule {:.1}%, \
         refused by max-src-states {} ({:.1}%), default {:.1}%; flows opened {}",
        n(&stats.kept_rules),
        n(&stats.limited_rules),
        n(&stats.limited_rulesets),
        started.elapsed().as_secs_f64(),
        n(&stats.load_us) as f64 / 1e6,
        n(&stats.run_us) as f64 / 1e6,
        n(&stats.state),
        pct(&stats.state),
        pct(&stats.rules),
        n(&stats.source_limited),
        pct(&stats.source_limited),
        pct(&stats.default),
        n(&stats.opened),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(rulesets >= u64::from(SEQ_RULESETS * scale));
    assert!(packets >= u64::from(SEQ_RULESETS * scale) * SEQ_MIN_PACKETS as u64);
}
