//! Concrete disagreements found by `kernel_agrees_with_model`, as readable cases. Each
//! states what the documented semantics say (the model) and checks the kernel too.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

/// Loads `src` (lo known as "lo"), runs `frame` through both sides and checks that
/// the model says `want` and that the kernel agrees.
pub(crate) fn agree(src: &str, frame: &[u8], want: ModelDecision) {
    let rs = parse(src).expect("ruleset parses");
    assert_eq!(model::decide(&rs, frame, Some("lo")), want, "the model's answer");
    let mut loaded = Loaded::new(&rs, String::new(), Some("lo")).expect("program loads");
    if let Err(e) = check_frame(&mut loaded, &rs, src, Some("lo"), frame) {
        panic!("{e}");
    }
}

/// An IPv6 packet whose first Fragment header has a non-zero offset is a later
/// fragment, whatever follows: the bytes after it are the middle of the original
/// packet, here shaped as a second Fragment header (offset 0) and a TCP header to port
/// 80. The XDP program let the last Fragment header decide, took the fake TCP header
/// for real and passed the packet by `to port 80`; a later fragment has no ports, so
/// the default (block) decides.
#[test]
pub(crate) fn regression_later_fragment_stays_later_after_another_fragment_header() {
    use xdpwall_tests::packet::{Ipv6Ext, PacketBuilder, TCP_SYN};
    let frame = PacketBuilder::eth()
        .ipv6("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap())
        .ipv6_ext(Ipv6Ext::Fragment { offset: 100, more: true, id: 7 })
        .ipv6_ext(Ipv6Ext::Fragment { offset: 0, more: false, id: 7 })
        .tcp(40000, 80, TCP_SYN)
        .build()
        .bytes;
    agree("set default block\npass in proto tcp to port 80 no state\n", &frame, ModelDecision::Default);
}

/// Runs `frames` in order through a fresh program and a fresh [`Tracker`] for `src`
/// (lo known as "lo"); checks the model's answers against `want` and the kernel's
/// against the model's.
pub(crate) fn agree_sequence(src: &str, frames: &[Vec<u8>], want: &[ModelDecision]) {
    let rs = parse(src).expect("ruleset parses");
    let mut loaded = Loaded::new(&rs, String::new(), Some("lo")).expect("program loads");
    let mut tracker = Tracker::new();
    for (i, (frame, want)) in frames.iter().zip(want).enumerate() {
        let d = tracker.decide(&rs, frame, Some("lo"));
        assert_eq!(d, *want, "the model's answer to packet {i}");
        let got = loaded.bed.program.test_run_traced(frame, Some(LO)).expect("test run");
        assert_eq!(got, expected(&rs, &d), "packet {i}: kernel {}, model {d:?}", describe(&got));
    }
}

/// After an RST closed a flow, anything goes through the rules (README, "Connection
/// tracking": "anything after RST"), a second RST too. The data plane's `advance`
/// checks RST before the CLOSED state, so every further RST passed by state; with
/// `set default block`, a block wins instead.
#[test]
pub(crate) fn regression_rst_after_rst_goes_through_the_rules() {
    use xdpwall_tests::packet::PacketBuilder;
    let (client, server) = ("10.77.0.1".parse().unwrap(), "10.77.0.2".parse().unwrap());
    let tcp = |out: bool, flags: u8| {
        let b = PacketBuilder::eth();
        let b = if out { b.ipv4(client, server) } else { b.ipv4(server, client) };
        let (s, d) = if out { (40000, 80) } else { (80, 40000) };
        b.tcp(s, d, flags).build().bytes
    };
    let frames = vec![
        tcp(true, SYN),
        tcp(false, SYN | ACK),
        tcp(true, ACK),
        tcp(false, RST | ACK),
        tcp(false, RST | ACK),
        tcp(true, RST),
        tcp(true, ACK),
    ];
    use ModelDecision::{Default, Rule, State};
    agree_sequence(
        "set default block\npass in proto tcp to port 80 flags S/SA keep state\n",
        &frames,
        &[Rule(0), State, State, State, Default, Default, Default],
    );
}

/// `max-src-states` counts openings, not live flows (README, "Limits per source": each
/// flow takes a slot until its timeout): a connection reset and opened again on the
/// same ports holds a second slot, so with a limit of 2 the source's next new flow is
/// refused, again on every retry, while another source, and the same source through
/// another rule, count on their own. A model that counted only live flows let the
/// refused SYN through (found by the sequences property, broken on purpose).
#[test]
pub(crate) fn regression_max_src_states_counts_reopened_flows() {
    use xdpwall_tests::packet::PacketBuilder;
    let client = "10.77.0.1".parse().unwrap();
    let other = "10.77.0.3".parse().unwrap();
    let server = "10.77.0.2".parse().unwrap();
    let tcp =
        |src, dst, sport, dport, flags: u8| PacketBuilder::eth().ipv4(src, dst).tcp(sport, dport, flags).build().bytes;
    let udp = |sport| PacketBuilder::eth().ipv4(client, server).udp(sport, 53).build().bytes;
    let frames = vec![
        tcp(client, server, 40000, 80, SYN),
        tcp(server, client, 80, 40000, SYN | ACK),
        tcp(client, server, 40000, 80, ACK),
        tcp(server, client, 80, 40000, RST | ACK),
        tcp(client, server, 40000, 80, SYN),
        tcp(client, server, 40001, 80, SYN),
        tcp(client, server, 40001, 80, SYN),
        tcp(other, server, 40001, 80, SYN),
        udp(5353),
        udp(5354),
        tcp(server, client, 80, 40000, SYN | ACK),
    ];
    use ModelDecision::{Rule, SourceLimited, State};
    agree_sequence(
        "set default block\n\
         pass in proto tcp to port 80 keep state (max-src-states 2)\n\
         pass in proto udp to port 53 keep state (max-src-states 1)\n",
        &frames,
        &[
            Rule(0),
            State,
            State,
            State,
            Rule(0),
            SourceLimited(0),
            SourceLimited(0),
            Rule(0),
            Rule(1),
            SourceLimited(1),
            State,
        ],
    );
}
